/* capture/common.c: transfer set-up and outcome mapping shared by the
 * fetcher and the profefe client. */
#include "capture/internal.h"

#include <errno.h>
#include <string.h>

/* A CURLOPT_HEADERFUNCTION that only notes the blank line ending a header
 * block. */
static size_t header_cb(char *b, size_t size, size_t n, void *userdata)
{
	size_t len = size * n;
	if ((len == 2 && b[0] == '\r' && b[1] == '\n') || (len == 1 && b[0] == '\n'))
		*(int *)userdata = 1;
	return len;
}

int cap__header_overflow(CURLcode rc, int hdr_done)
{
#if LIBCURL_VERSION_NUM >= 0x080600
	if (rc == CURLE_TOO_LARGE)
		return !hdr_done;
#endif
	return rc == CURLE_OUT_OF_MEMORY && !hdr_done;
}

int cap__easy_setup(CURL *e, const char *url, uint32_t connect_ms, uint64_t total_ms,
                    struct loop_buf *buf, char *errbuf, const char *user_agent, int *hdr_done)
{
	CURLcode rc = CURLE_OK;
	errbuf[0] = '\0';
	*hdr_done = 0;
	/* Each setopt result is checked: a refused option means a build
	 * without a feature we rely on. */
	if ((rc = curl_easy_setopt(e, CURLOPT_URL, url)) != CURLE_OK ||
	    (rc = curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L)) != CURLE_OK ||
	    (rc = curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https")) != CURLE_OK ||
	    (rc = curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L)) != CURLE_OK ||
	    (rc = curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms)) != CURLE_OK ||
	    (rc = curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)total_ms)) != CURLE_OK ||
	    (rc = curl_easy_setopt(e, CURLOPT_USERAGENT, user_agent)) != CURLE_OK ||
	    (rc = curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf)) != CURLE_OK ||
	    (rc = curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, loop_buf_curl_write)) != CURLE_OK ||
	    (rc = curl_easy_setopt(e, CURLOPT_WRITEDATA, buf)) != CURLE_OK ||
	    (rc = curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb)) != CURLE_OK ||
	    (rc = curl_easy_setopt(e, CURLOPT_HEADERDATA, hdr_done)) != CURLE_OK ||
	    (rc = curl_easy_setopt(
	             e, CURLOPT_MAXFILESIZE_LARGE,
	             (curl_off_t)(buf->cap_bytes ? buf->cap_bytes : (size_t)64 << 20))) != CURLE_OK)
		return -EINVAL;
	return 0;
}

CURL *cap__easy_get(struct cap__easy_pool *p)
{
	if (p->n > 0)
		return p->idle[--p->n];
	return curl_easy_init();
}

void cap__easy_put(struct cap__easy_pool *p, CURL *e)
{
	if (e == NULL)
		return;
	if (p->n == CAP__EASY_IDLE) {
		curl_easy_cleanup(e);
		return;
	}
	curl_easy_reset(e);
	p->idle[p->n++] = e;
}

void cap__easy_pool_drain(struct cap__easy_pool *p)
{
	while (p->n > 0)
		curl_easy_cleanup(p->idle[--p->n]);
}

enum cap_result cap__classify(CURLcode rc, const struct loop_buf *buf)
{
	switch (rc) {
	case CURLE_OK:
		return CAP_RES_OK;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return CAP_RES_REFUSED;
	case CURLE_OPERATION_TIMEDOUT:
		return CAP_RES_TIMEOUT;
	case CURLE_FILESIZE_EXCEEDED:
		return CAP_RES_TOO_LARGE;
	case CURLE_WRITE_ERROR:
		return buf->overflow ? CAP_RES_TOO_LARGE : CAP_RES_INTERNAL;
	case CURLE_OUT_OF_MEMORY:
		return CAP_RES_INTERNAL;
	default:
		return CAP_RES_TRANSPORT;
	}
}

void cap__first_line(const char *body, size_t len, char *out, size_t outlen)
{
	size_t n = 0;
	if (outlen == 0)
		return;
	for (size_t i = 0; i < len && n + 1 < outlen; i++) {
		unsigned char c = (unsigned char)body[i];
		if (c == '\n' || c == '\r')
			break;
		out[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	/* Trailing spaces say nothing. */
	while (n > 0 && out[n - 1] == ' ')
		n--;
	out[n] = '\0';
}
