/* capture/internal.h: helpers shared by capture's own files; not an API. */
#ifndef CAPTURE_INTERNAL_H
#define CAPTURE_INTERNAL_H

#include "capture/capture.h"
#include "loop/loop.h"

#include <curl/curl.h>

/* Sets the options every capture/ transfer has: the URL, NOSIGNAL, http(s)
 * only, no redirects, connect and total timeouts, the User-Agent, and a
 * capped body written to `buf`. Returns 0 or -EINVAL when curl refuses one. */
int cap__easy_setup(CURL *e, const char *url, uint32_t connect_ms, uint64_t total_ms,
                    struct loop_buf *buf, char *errbuf, const char *user_agent);

/* Maps a finished transfer to a result kind, for transport-level outcomes;
 * CAP_RES_OK means "a complete HTTP reply came" and the caller judges it. */
enum cap_result cap__classify(CURLcode rc, const struct loop_buf *buf);

/* Copies the first line of `body` into `out`, printable ASCII only and cut
 * to fit. */
void cap__first_line(const char *body, size_t len, char *out, size_t outlen);

#endif
