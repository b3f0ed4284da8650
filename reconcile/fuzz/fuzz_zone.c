/* libFuzzer target: the TZif parser (RFC 8536, v1-v4, with its POSIX TZ
 * footer). Zone files come from the image's zoneinfo or a mounted volume,
 * which an admin, not this program, controls: a truncated or hostile file
 * must be refused or parsed, never read past its end. An accepted zone
 * must answer offsets at any instant and drive a cron schedule whose fire
 * times strictly increase. */
#include <stdint.h>
#include <stdlib.h>

#include "reconcile/reconcile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int64_t at[] = {INT64_MIN / 2, -2208988800LL, 0, 1711846800LL, 1729990800LL,
	                             4102444800LL,  INT64_MAX / 4};
	struct rec_schedule *s = NULL;
	struct rec_zone *z = NULL;
	char err[256];
	int64_t t, next;

	if (size > (1u << 16) || rec_zone_from_tzif("fuzz", data, size, &z) != 0)
		return 0;
	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++)
		(void)rec_zone_offset(z, at[i]);
	if (rec_schedule_parse("30 2 * * *", z, &s, err, sizeof(err)) == 0) {
		t = 1704067200000LL; /* 2024-01-01 */
		for (int i = 0; i < 16; i++) {
			next = rec_schedule_next(s, t);
			if (next < 0)
				break;
			if (next <= t)
				abort();
			t = next + 86400000LL * 20;
		}
		rec_schedule_free(s);
	}
	rec_zone_unref(z);
	return 0;
}
