/* libFuzzer target: the reading of profefe's replies, which come from a
 * server named by an admin's URL but reached over the network. A reply
 * that is not a JSON object must be refused; one that is must yield an id
 * and a message that are NUL-terminated strings, and the message must fit
 * its buffer. The first-line copy used for non-JSON error replies is run
 * over the same bytes. */
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "capture/internal.h"
#include "capture/profefe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cap_profefe_reply r = {0};
	struct json_object *root;
	char msg[64], line[64];

	memset(msg, 0, sizeof(msg));
	root = cap__profefe_parse((const char *)data, size, &r, msg, sizeof(msg));
	if (root == NULL && (r.json != NULL || r.id != NULL || msg[0] != '\0'))
		abort();
	if (msg[sizeof(msg) - 1] != '\0')
		abort();
	if (r.id != NULL && strlen(r.id) > size)
		abort();
	json_object_put(root);
	cap__first_line((const char *)data, size, line, sizeof(line));
	if (!memchr(line, '\0', sizeof(line)))
		abort();
	return 0;
}
