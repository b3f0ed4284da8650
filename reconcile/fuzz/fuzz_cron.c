/* libFuzzer target: the schedule parser and next-fire computation.
 * Input: a schedule string; the first byte picks a zone and a start time,
 * so DST paths in the zone code are exercised too. Every accepted
 * schedule must produce strictly increasing fire times. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reconcile/reconcile.h"
#include "reconcile/tests/zonefile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const zones[] = {"UTC",           "America/New_York",
                                    "Europe/Berlin", "Australia/Sydney",
                                    "Asia/Kolkata",  "Pacific/Chatham"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct rec_zone *loaded[6];
	struct rec_schedule *s = NULL;
	char spec[300], err[256];
	unsigned sel;
	int64_t t, next;

	if (size < 1 || size > sizeof(spec))
		return 0;
	sel = data[0];
	if (loaded[sel % 6] == NULL && rec_test_zone_load(zones[sel % 6], &loaded[sel % 6]) != 0)
		return 0;
	memcpy(spec, data + 1, size - 1);
	spec[size - 1] = '\0';
	if (rec_schedule_parse(spec, loaded[sel % 6], &s, err, sizeof(err)) != 0)
		return 0;
	if (rec_schedule_period_s(s) < 1)
		abort();
	t = 1704067200000LL + (int64_t)(sel >> 3) * 86400000LL * 45; /* 2024 + up to ~4 years */
	for (int i = 0; i < 8; i++) {
		next = rec_schedule_next(s, t);
		if (next < 0)
			break;
		if (next <= t)
			abort();
		t = next;
	}
	rec_schedule_free(s);
	return 0;
}
