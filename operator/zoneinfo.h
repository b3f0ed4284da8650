/* operator/zoneinfo.h: time zones for policies, loaded from the host's
 * zoneinfo directory.
 *
 * reconcile/ parses TZif and checks zone names but touches no files
 * (DESIGN §7); this is the small piece of I/O in between. A zone is read
 * once per policy parse, bounded in size, and handed to reconcile/ as a
 * parsed, reference-counted object.
 */
#ifndef OPERATOR_ZONEINFO_H
#define OPERATOR_ZONEINFO_H

#include "reconcile/reconcile.h"

/* The largest TZif file we read. Real zones are under 4 KB. */
#define OP_ZONE_MAX_BYTES (1 << 20)

/* Loads zone `name` from `dir` (NULL: REC_ZONEINFO_DIR). "UTC" and
 * "Etc/UTC" need no file. Returns 0 and a new reference in *out (the
 * caller drops it with rec_zone_unref()); -EINVAL for a name that is not
 * an IANA zone name and -ENAMETOOLONG for an overlong `dir`
 * (rec_zone_path()); -ENOENT for a zone that does not
 * exist, a directory, or a file that is not TZif (e.g. "zone.tab");
 * -EFBIG for a file over OP_ZONE_MAX_BYTES; -ENOMEM or another negative
 * errno from reading. Fits rec_zone_lookup_fn when wrapped. */
int op_zone_load(const char *dir, const char *name, struct rec_zone **out);

#endif
