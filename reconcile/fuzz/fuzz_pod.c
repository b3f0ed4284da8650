/* libFuzzer target: pod JSON through the compact pod extractor. */
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>

#include "reconcile/reconcile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_tokener *tok = json_tokener_new_ex(32);
	struct json_object *o;
	struct rec_pod *pod = NULL;
	char buf[256];

	if (tok == NULL)
		return 0;
	o = json_tokener_parse_ex(tok, (const char *)data, (int)size);
	json_tokener_free(tok);
	if (o == NULL)
		return 0;
	if (rec_pod_from_json(o, &pod) == 0) {
		(void)rec_pod_capturable(pod);
		(void)rec_owner_service(pod, buf, sizeof(buf));
		(void)rec_image_tag(pod->image, buf, sizeof(buf));
		(void)rec_spread_offset_ms(pod->uid, 30000);
		free(pod);
	}
	json_object_put(o);
	return 0;
}
