/* kube/framer.c: splits a watch stream into JSON values.
 *
 * The API server writes one JSON object per watch event, each followed by
 * a newline, over a chunked response whose chunk boundaries fall anywhere
 * (k8s.io/apimachinery/pkg/util/framer's JSON framer). json-c's
 * incremental tokener keeps its state between calls, so we feed it every
 * chunk as it comes and restart it after each complete value. The framer
 * never copies the stream; memory is bounded by `max_obj` per value.
 */
#include "kube/kube_int.h"

#include <errno.h>
#include <json-c/json.h>
#include <string.h>

/* Watch events nest as deep as the objects in them; CRD schemas go past
 * json-c's default of 32. */
#define FRAMER_MAX_DEPTH 128

int kube__framer_init(struct kube__framer *f, size_t max_obj)
{
	f->tok = json_tokener_new_ex(FRAMER_MAX_DEPTH);
	f->max_obj = max_obj ? max_obj : (16u << 20);
	f->cur = 0;
	return f->tok ? 0 : -ENOMEM;
}

void kube__framer_reset(struct kube__framer *f)
{
	if (f->tok)
		json_tokener_reset(f->tok);
	f->cur = 0;
}

void kube__framer_free(struct kube__framer *f)
{
	if (f->tok)
		json_tokener_free(f->tok);
	f->tok = NULL;
}

/* Skips the whitespace between values, so that the byte count of a value
 * starts at its first byte. */
static size_t skip_ws(const char *p, size_t n)
{
	size_t i = 0;

	while (i < n && (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t'))
		i++;
	return i;
}

int kube__framer_feed(struct kube__framer *f, const char *p, size_t n,
                      int (*emit)(void *arg, struct json_object *obj), void *arg)
{
	/* JSON text never holds a raw NUL, and json-c would stop at one. */
	if (memchr(p, '\0', n))
		return -EBADMSG;
	while (n > 0) {
		struct json_object *obj;
		enum json_tokener_error jerr;
		size_t used, take;
		int rc, fresh = f->cur == 0;

		if (f->cur == 0) {
			size_t ws = skip_ws(p, n);

			p += ws;
			n -= ws;
			if (n == 0)
				break;
		}
		/* Feed at most what keeps the value within its cap. */
		take = n;
		if (take > f->max_obj - f->cur + 1)
			take = f->max_obj - f->cur + 1;
		if (take > 0x7fffffff)
			take = 0x7fffffff;
		obj = json_tokener_parse_ex(f->tok, p, (int)take);
		jerr = json_tokener_get_error(f->tok);
		if (jerr == json_tokener_continue) {
			f->cur += take;
			if (f->cur > f->max_obj)
				return -EFBIG;
			p += take;
			n -= take;
			continue;
		}
		if (jerr != json_tokener_success) {
			json_object_put(obj);
			return -EBADMSG;
		}
		used = json_tokener_get_parse_end(f->tok);
		/* A number ends at the byte after it, which json-c leaves
		 * unconsumed, so a value can end having used nothing of this
		 * chunk; but only if it began in an earlier one. */
		if (used > take || (used == 0 && fresh)) {
			json_object_put(obj);
			return -EBADMSG;
		}
		p += used;
		n -= used;
		json_tokener_reset(f->tok);
		f->cur = 0;
		rc = obj ? emit(arg, obj) : 0;
		json_object_put(obj);
		if (rc)
			return rc;
	}
	return 0;
}
