/* libFuzzer target: the reading of profefe's replies, which come from a
 * server named by an admin's URL but reached over the network. A reply
 * that is not a JSON object must be refused; one that is must yield an id
 * and a message that are NUL-terminated strings, and the message must fit
 * its buffer. The first-line copy used for non-JSON error replies is run
 * over the same bytes.
 *
 * Push and error replies are read by cap__profefe_scan(), not json-c: where
 * both take the bytes for a JSON object they must agree on the message and
 * on the id (when it fits), unless a \u escape is in play (json-c's reading
 * of unpaired surrogates and NULs differs) or json-c hit its depth limit. */
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
	char msg[64], line[64], smsg[64], sid[32];
	const char *d = (const char *)data;

	memset(msg, 0, sizeof(msg));
	root = cap__profefe_parse(d, size, &r, msg, sizeof(msg));
	if (root == NULL && (r.json != NULL || r.id != NULL || msg[0] != '\0'))
		abort();
	if (msg[sizeof(msg) - 1] != '\0')
		abort();
	if (r.id != NULL && strlen(r.id) > size)
		abort();

	memset(smsg, 'x', sizeof(smsg));
	memset(sid, 'x', sizeof(sid));
	int rc = cap__profefe_scan(d, size, sid, sizeof(sid), smsg, sizeof(smsg));
	if (!memchr(smsg, '\0', sizeof(smsg)) || !memchr(sid, '\0', sizeof(sid)))
		abort();
	if (rc < 0 && (sid[0] != '\0' || smsg[0] != '\0'))
		abort();
	if (rc == 0 && root != NULL && !memmem(d, size, "\\u", 2)) {
		if (strcmp(smsg, msg) != 0)
			abort();
		const char *want = r.id ? r.id : "";
		if (strlen(want) < sizeof(sid) && strcmp(sid, want) != 0)
			abort();
	}
	json_object_put(root);
	cap__first_line(d, size, line, sizeof(line));
	if (!memchr(line, '\0', sizeof(line)))
		abort();
	return 0;
}
