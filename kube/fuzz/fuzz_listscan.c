/* kube/fuzz/fuzz_listscan.c: libFuzzer target for the list-page scanner.
 *
 * The first byte picks where the input is cut into chunks; the rest is a
 * list page. The page is scanned twice, in those chunks and whole, and
 * both must agree on the outcome, and on a good page on the items handed
 * over. A page the
 * scanner accepts must also be one object to json-c's own parser (deep
 * enough for its items), with no more items than were handed over (a
 * repeated "items" member is read whole by the scanner, last-wins by
 * json-c).
 */
#include <assert.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kube/kube_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
	size_t items;
	size_t bytes; /* of the items re-serialised, to check both runs saw the same */
};

static int on_item(void *arg, struct json_object *obj)
{
	struct seen *s = arg;
	size_t len = 0;

	assert(json_object_is_type(obj, json_type_object));
	if (!json_object_to_json_string_length(obj, JSON_C_TO_STRING_PLAIN, &len))
		return -12;
	s->items++;
	s->bytes += len;
	return 0;
}

/* Scans `p` in pieces of `step` bytes; returns kube__listscan_end(). */
static int scan(const char *p, size_t n, size_t step, struct seen *s)
{
	struct kube__listscan ls;
	int rc = 0;

	if (kube__listscan_init(&ls, 1u << 20))
		abort();
	for (size_t off = 0; off < n && !rc; off += step)
		rc = kube__listscan_feed(&ls, p + off, n - off < step ? n - off : step, on_item, s);
	rc = kube__listscan_end(&ls);
	kube__listscan_free(&ls);
	return rc;
}

/* What json-c makes of the whole page: -1 when it is not an object, else
 * the length of its "items" array (0 when absent or null). */
static long json_c_items(const char *p, size_t n)
{
	struct json_tokener *tok = json_tokener_new_ex(256);
	struct json_object *o, *items;
	long r = -1;

	if (!tok)
		abort();
	o = json_tokener_parse_ex(tok, p, (int)n);
	if (!o && json_tokener_get_error(tok) == json_tokener_continue)
		o = json_tokener_parse_ex(tok, "", 1); /* a number at the very end */
	if (o && json_object_is_type(o, json_type_object)) {
		r = 0;
		if (json_object_object_get_ex(o, "items", &items) &&
		    json_object_is_type(items, json_type_array))
			r = (long)json_object_array_length(items);
	}
	json_object_put(o);
	json_tokener_free(tok);
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct seen a = {0}, b = {0};
	size_t step;
	int ra, rb;
	long jc;

	if (size < 1 || size > (1u << 20))
		return 0;
	step = (size_t)data[0] % 23 + 1;
	data++;
	size--;
	ra = scan((const char *)data, size, step, &a);
	rb = scan((const char *)data, size, size ? size : 1, &b);
	assert(ra == rb);
	/* After an error, what was handed over depends on where the chunks
	 * fall (a NUL is refused per chunk, before any of it is parsed). */
	if (ra == 0) {
		assert(a.items == b.items && a.bytes == b.bytes);
		jc = json_c_items((const char *)data, size);
		assert(jc >= 0);
		assert((size_t)jc <= a.items);
	}
	return 0;
}
