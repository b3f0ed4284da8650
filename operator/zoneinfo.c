/* operator/zoneinfo.c: reads TZif files for reconcile/'s zone parser. */
#include "operator/zoneinfo.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "kube/kube.h"

int op_zone_load(const char *dir, const char *name, struct rec_zone **out)
{
	const struct rec_zone *builtin = rec_zone_builtin(name);
	char path[PATH_MAX], *data;
	size_t len;
	int rc;

	if (builtin) {
		*out = rec_zone_ref(builtin);
		return 0;
	}
	if ((rc = rec_zone_path(dir, name, path, sizeof(path))) < 0)
		return rc;
	rc = kube_read_file(path, OP_ZONE_MAX_BYTES, &data, &len);
	if (rc == -ENOTDIR || rc == -EISDIR)
		return -ENOENT; /* "Europe/Berlin/x", or a region like "America" */
	if (rc < 0)
		return rc;
	rc = rec_zone_from_tzif(name, data, len, out);
	free(data);
	return rc == -EINVAL ? -ENOENT : rc; /* a file that is not a zone */
}
