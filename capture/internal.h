/* capture/internal.h: helpers shared by capture's own files; not an API. */
#ifndef CAPTURE_INTERNAL_H
#define CAPTURE_INTERNAL_H

#include "capture/capture.h"
#include "loop/loop.h"

#include <curl/curl.h>

/* Sets the options every capture/ transfer has: the URL, NOSIGNAL, http(s)
 * only, no redirects, connect and total timeouts, the User-Agent, and a
 * capped body written to `buf`. `*hdr_done` (zeroed here) becomes 1 when
 * the reply's header block has ended, for cap__header_overflow(). Returns
 * 0 or -EINVAL when curl refuses one. */
int cap__easy_setup(CURL *e, const char *url, uint32_t connect_ms, uint64_t total_ms,
                    struct loop_buf *buf, char *errbuf, const char *user_agent, int *hdr_done);

/* Idle easy handles kept for the next transfer of their owner (a fetcher,
 * a profefe client). curl_easy_init() and curl_easy_cleanup() per request
 * were a quarter of the operator's CPU: each allocates and frees the
 * handle's state and its receive buffer. A kept handle goes through
 * curl_easy_reset(), so nothing one transfer set (options, callbacks,
 * buffers it points into) carries over to the next; cap__easy_setup() sets
 * every bound again. Connections are not in the handle: they stay in the
 * loop's multi. Holding at most CAP__EASY_IDLE handles bounds the memory
 * kept when a burst ends. */
#define CAP__EASY_IDLE 16
struct cap__easy_pool {
	CURL *idle[CAP__EASY_IDLE];
	size_t n;
};

/* A reset idle handle, or a new one; NULL when out of memory. The caller
 * owns it until cap__easy_put(). */
CURL *cap__easy_get(struct cap__easy_pool *p);

/* Takes back `e`, which must not be in a multi: resets and keeps it, or
 * frees it when the pool is full. Safe on NULL. */
void cap__easy_put(struct cap__easy_pool *p, CURL *e);

/* Frees every idle handle. */
void cap__easy_pool_drain(struct cap__easy_pool *p);

/* True when a transfer failed because the peer's reply header passed
 * curl's limit (CURL_MAX_HTTP_HEADER per line): curl 7.x reports that as
 * CURLE_OUT_OF_MEMORY, newer ones as CURLE_TOO_LARGE. An out-of-memory
 * before the header ended is taken for this; a real allocation failure
 * there is far less likely than a hostile or broken peer. */
int cap__header_overflow(CURLcode rc, int hdr_done);

/* Maps a finished transfer to a result kind, for transport-level outcomes;
 * CAP_RES_OK means "a complete HTTP reply came" and the caller judges it. */
enum cap_result cap__classify(CURLcode rc, const struct loop_buf *buf);

/* Copies the first line of `body` into `out`, printable ASCII only and cut
 * to fit. */
void cap__first_line(const char *body, size_t len, char *out, size_t outlen);

struct cap_profefe_reply;
struct json_object;

/* Reads profefe's JSON reply `data` (`len` bytes, lent, untrusted):
 * {"body":...} sets r->json and, for an object body with a string "id",
 * r->id; {"error":"..."} is copied into `msg`, cut to fit. Returns the
 * parsed root, which owns what r points into and which the caller frees
 * with json_object_put(), or NULL when the reply is not a JSON object
 * (r and msg untouched). */
struct json_object *cap__profefe_parse(const char *data, size_t len, struct cap_profefe_reply *r,
                                       char *msg, size_t msglen);

/* Reads profefe's reply to a push, or any error reply, without building a
 * JSON tree: `data` (`len` bytes, lent, untrusted) must hold one JSON
 * object (what follows it is ignored). Copies the object's "error" string
 * into `msg`, cut to fit, and its "body" object's "id" string into `id`
 * when it fits whole (a longer id, or one holding a NUL, gives ""). Both
 * are "" when absent. Returns 0, or -EINVAL when `data` is not a JSON
 * object (`id` and `msg` then ""). */
int cap__profefe_scan(const char *data, size_t len, char *id, size_t idlen, char *msg,
                      size_t msglen);

#endif
