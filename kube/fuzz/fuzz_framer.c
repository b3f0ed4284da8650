/* kube/fuzz/fuzz_framer.c: libFuzzer target for the watch-stream framer
 * and the informer's event handling behind it.
 *
 * The first byte picks where the input is cut into chunks, so that chunk
 * boundaries fall everywhere; the rest is the stream. Every complete value
 * goes through the informer's event handler into a cache with a compact
 * transform, as in production.
 */
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kube/kube_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int transform(void *arg, struct json_object *obj, void **value)
{
	(void)arg;
	*value = strdup(json_object_get_type(obj) == json_type_object ? "o" : "x");
	return *value ? 0 : -1;
}

static void free_value(void *arg, void *value)
{
	(void)arg;
	free(value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kube_informer_ops ops = {.transform = transform, .free_value = free_value};
	struct kube_informer *inf;
	size_t step, off = 0;

	if (size < 1)
		return 0;
	step = (size_t)data[0] % 17 + 1;
	data++;
	size--;
	if (kube__informer_new_detached(&ops, NULL, &inf))
		return 0;
	while (off < size) {
		size_t n = size - off < step ? size - off : step;
		int rc = kube__informer_feed(inf, (const char *)data + off, n);

		if (rc != 0)
			break; /* error or relist: the informer would reconnect */
		off += n;
	}
	kube_informer_free(inf);
	return 0;
}
