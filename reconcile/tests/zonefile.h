/* reconcile/tests/zonefile.h: zones for reconcile/'s tests and fuzz
 * targets, read from the host's zoneinfo by the test itself, since
 * reconcile/ touches no files (the daemon's loader is operator/zoneinfo.c). */
#ifndef RECONCILE_TESTS_ZONEFILE_H
#define RECONCILE_TESTS_ZONEFILE_H

#include "reconcile/reconcile.h"

/* Loads `name` from REC_ZONEINFO_DIR ("UTC" needs no file). Returns 0 and
 * a new reference in *out, or a negative errno (-ENOENT: no such file). */
int rec_test_zone_load(const char *name, struct rec_zone **out);
/* The same as a rec_zone_lookup_fn; `arg` is ignored. */
int rec_test_zone_lookup(void *arg, const char *name, struct rec_zone **out);

#endif
