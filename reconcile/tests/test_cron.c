/* Schedules: CronJob's cron grammar and next-fire semantics, descriptors,
 * @every, periods, and time zones across DST. Times in the tables are
 * RFC 3339 with the zone's offset, so each row reads as wall-clock time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <cmocka.h>

#include "reconcile/internal.h"
#include "reconcile/tests/zonefile.h"

static int64_t T(const char *s)
{
	int64_t ms;
	if (rec_time_parse(s, &ms) != 0)
		fail_msg("bad time in test table: %s", s);
	return ms;
}

struct next_case {
	const char *spec, *tz, *after, *want; /* want NULL: never */
};

static void run_next(const struct next_case *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct rec_zone *z = NULL;
		struct rec_schedule *s = NULL;
		char err[200] = "", got[40] = "", want[40] = "";
		if (c[i].tz && rec_test_zone_load(c[i].tz, &z) != 0)
			fail_msg("zone %s not loadable", c[i].tz);
		if (rec_schedule_parse(c[i].spec, z, &s, err, sizeof(err)) != 0)
			fail_msg("case %zu \"%s\": parse failed: %s", i, c[i].spec, err);
		int64_t next = rec_schedule_next(s, T(c[i].after));
		if (next >= 0)
			rec_time_format(next, got, sizeof(got));
		if (c[i].want)
			rec_time_format(T(c[i].want), want, sizeof(want));
		if (strcmp(got, want) != 0)
			fail_msg("case %zu \"%s\" tz=%s after %s: got %s, want %s (UTC)", i,
			         c[i].spec, c[i].tz ? c[i].tz : "-", c[i].after, got, want);
		rec_schedule_free(s);
		rec_zone_unref(z);
	}
}

#define RUN(tbl) run_next(tbl, sizeof(tbl) / sizeof(tbl[0]))

static void test_cron_next_is_strictly_after(void **state)
{
	static const struct next_case c[] = {
	        {"0 * * * *", NULL, "2024-01-01T01:00:00Z", "2024-01-01T02:00:00Z"},
	        {"0 * * * *", NULL, "2024-01-01T00:59:59.999Z", "2024-01-01T01:00:00Z"},
	        {"* * * * *", NULL, "2024-01-01T00:00:30Z", "2024-01-01T00:01:00Z"},
	        {"*/15 * * * *", NULL, "2024-01-01T00:07:00Z", "2024-01-01T00:15:00Z"},
	};
	RUN(c);
}

static void test_cron_ranges_steps_and_lists(void **state)
{
	static const struct next_case c[] = {
	        {"0 9-17 * * *", NULL, "2024-01-01T17:30:00Z", "2024-01-02T09:00:00Z"},
	        {"0 1-10/3 * * *", NULL, "2024-01-01T05:00:00Z", "2024-01-01T07:00:00Z"},
	        {"0 1-10/3 * * *", NULL, "2024-01-01T10:00:00Z", "2024-01-02T01:00:00Z"},
	        /* "N/step" means N-max/step, as robfig/cron reads it. */
	        {"5/20 * * * *", NULL, "2024-01-01T00:06:00Z", "2024-01-01T00:25:00Z"},
	        {"5/20 * * * *", NULL, "2024-01-01T00:45:00Z", "2024-01-01T01:05:00Z"},
	        {"0 0 1,15 * *", NULL, "2024-01-02T00:00:00Z", "2024-01-15T00:00:00Z"},
	        {"10,20-22,40 * * * *", NULL, "2024-01-01T00:20:00Z", "2024-01-01T00:21:00Z"},
	        {"  0   12  * *  * ", NULL, "2024-01-01T00:00:00Z", "2024-01-01T12:00:00Z"},
	};
	RUN(c);
}

static void test_cron_month_and_day_names(void **state)
{
	static const struct next_case c[] = {
	        {"0 0 1 jan,JUL *", NULL, "2024-02-01T00:00:00Z", "2024-07-01T00:00:00Z"},
	        {"0 0 1 Mar-May *", NULL, "2024-05-02T00:00:00Z", "2025-03-01T00:00:00Z"},
	        /* 2024-01-06 is a Saturday. */
	        {"0 12 * * mon-fri", NULL, "2024-01-06T00:00:00Z", "2024-01-08T12:00:00Z"},
	        {"0 0 ? * MON", NULL, "2024-01-02T00:00:00Z", "2024-01-08T00:00:00Z"},
	};
	RUN(c);
}

static void test_cron_vixie_day_or(void **state)
{
	static const struct next_case c[] = {
	        /* Both restricted: the 13th OR a Friday. 2024-01-01 is a Monday. */
	        {"0 0 13 * 5", NULL, "2024-01-01T00:00:00Z", "2024-01-05T00:00:00Z"},
	        {"0 0 13 * 5", NULL, "2024-01-12T00:00:00Z", "2024-01-13T00:00:00Z"},
	        /* Day-of-month "*": weekday alone decides. */
	        {"0 0 * * 1", NULL, "2024-01-01T00:00:00Z", "2024-01-08T00:00:00Z"},
	        /* Day-of-week "*": day-of-month alone decides. */
	        {"0 0 13 * *", NULL, "2024-01-01T00:00:00Z", "2024-01-13T00:00:00Z"},
	        /* "?" is unrestricted like "*". */
	        {"0 0 13 * ?", NULL, "2024-01-01T00:00:00Z", "2024-01-13T00:00:00Z"},
	};
	RUN(c);
}

static void test_cron_star_step_restricts_day_field(void **state)
{
	/* robfig clears the star bit for a step > 1, so "*\/2" in the day of
	 * month counts as restricted and the OR rule applies: odd days OR
	 * Mondays. Jan 3 is odd; the AND reading would skip to Jan 15. */
	static const struct next_case c[] = {
	        {"0 0 */2 * 1", NULL, "2024-01-01T00:00:00Z", "2024-01-03T00:00:00Z"},
	        /* "*\/1" keeps the star: Mondays only. */
	        {"0 0 */1 * 1", NULL, "2024-01-01T00:00:00Z", "2024-01-08T00:00:00Z"},
	};
	RUN(c);
}

static void test_cron_weekday_seven_is_sunday(void **state)
{
	static const struct next_case c[] = {
	        {"0 0 * * 7", NULL, "2024-01-01T00:00:00Z", "2024-01-07T00:00:00Z"},
	        {"0 0 * * 5-7", NULL, "2024-01-06T00:00:00Z", "2024-01-07T00:00:00Z"},
	        {"0 0 * * 0", NULL, "2024-01-01T00:00:00Z", "2024-01-07T00:00:00Z"},
	        {"0 0 * * sun", NULL, "2024-01-01T00:00:00Z", "2024-01-07T00:00:00Z"},
	};
	RUN(c);
}

static void test_cron_end_of_month_and_leap_years(void **state)
{
	static const struct next_case c[] = {
	        /* April has 30 days: the 31st skips to May. */
	        {"0 0 31 * *", NULL, "2024-04-01T00:00:00Z", "2024-05-31T00:00:00Z"},
	        {"0 0 30 * *", NULL, "2024-02-01T00:00:00Z", "2024-03-30T00:00:00Z"},
	        /* Feb 29 only in leap years; 2100 is not one, 2000 was. */
	        {"0 0 29 2 *", NULL, "2024-03-01T00:00:00Z", "2028-02-29T00:00:00Z"},
	        {"0 0 29 2 *", NULL, "2023-01-01T00:00:00Z", "2024-02-29T00:00:00Z"},
	        {"0 0 29 2 *", NULL, "2096-03-01T00:00:00Z", "2104-02-29T00:00:00Z"},
	        {"0 0 29 2 *", NULL, "1999-03-01T00:00:00Z", "2000-02-29T00:00:00Z"},
	        {"59 23 31 12 *", NULL, "2024-12-31T23:59:00Z", "2025-12-31T23:59:00Z"},
	};
	RUN(c);
}

static void test_cron_descriptors(void **state)
{
	static const struct next_case c[] = {
	        {"@yearly", NULL, "2024-06-15T10:00:00Z", "2025-01-01T00:00:00Z"},
	        {"@annually", NULL, "2024-06-15T10:00:00Z", "2025-01-01T00:00:00Z"},
	        {"@monthly", NULL, "2024-06-15T10:00:00Z", "2024-07-01T00:00:00Z"},
	        {"@weekly", NULL, "2024-06-15T10:00:00Z", "2024-06-16T00:00:00Z"},
	        {"@daily", NULL, "2024-06-15T10:00:00Z", "2024-06-16T00:00:00Z"},
	        {"@midnight", NULL, "2024-06-15T10:00:00Z", "2024-06-16T00:00:00Z"},
	        {"@hourly", NULL, "2024-06-15T10:00:00Z", "2024-06-15T11:00:00Z"},
	        {"@daily", "Europe/Berlin", "2024-06-15T10:00:00+02:00",
	         "2024-06-16T00:00:00+02:00"},
	};
	RUN(c);
}

static void test_every_adds_period_to_whole_second(void **state)
{
	static const struct next_case c[] = {
	        {"@every 90s", NULL, "2024-01-01T00:00:00.500Z", "2024-01-01T00:01:30Z"},
	        {"@every 1h30m", NULL, "2024-01-01T00:00:00Z", "2024-01-01T01:30:00Z"},
	        /* Sub-second parts round down, as robfig's Every() does. */
	        {"@every 1.9s", NULL, "2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z"},
	        {"@every 1s", NULL, "2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z"},
	        /* @every is absolute time: DST does not stretch it. */
	        {"@every 1h", "America/New_York", "2024-03-10T01:30:00-05:00",
	         "2024-03-10T03:30:00-04:00"},
	};
	RUN(c);
}

static void test_cron_dst_spring_forward_new_york(void **state)
{
	/* 2024-03-10 02:00 EST jumps to 03:00 EDT. */
	static const struct next_case c[] = {
	        /* 02:30 does not exist that day, so it does not fire (robfig). */
	        {"30 2 * * *", "America/New_York", "2024-03-10T00:00:00-05:00",
	         "2024-03-11T02:30:00-04:00"},
	        /* Hourly keeps one fire per real hour: 01:00 EST, then 03:00 EDT. */
	        {"0 * * * *", "America/New_York", "2024-03-10T01:00:00-05:00",
	         "2024-03-10T03:00:00-04:00"},
	        /* 03:00 exists and fires at the transition instant. */
	        {"0 3 * * *", "America/New_York", "2024-03-10T00:00:00-05:00",
	         "2024-03-10T03:00:00-04:00"},
	        {"0 0 * * *", "America/New_York", "2024-03-10T00:00:00-05:00",
	         "2024-03-11T00:00:00-04:00"},
	        {"0 12 * * *", "America/New_York", "2024-03-09T12:00:00-05:00",
	         "2024-03-10T12:00:00-04:00"},
	};
	RUN(c);
}

static void test_cron_dst_fall_back_new_york(void **state)
{
	/* 2024-11-03 02:00 EDT falls back to 01:00 EST: 01:xx happens twice
	 * and a matching time fires at both instants (robfig). */
	static const struct next_case c[] = {
	        {"30 1 * * *", "America/New_York", "2024-11-03T00:00:00-04:00",
	         "2024-11-03T01:30:00-04:00"},
	        {"30 1 * * *", "America/New_York", "2024-11-03T01:30:00-04:00",
	         "2024-11-03T01:30:00-05:00"},
	        {"30 1 * * *", "America/New_York", "2024-11-03T01:30:00-05:00",
	         "2024-11-04T01:30:00-05:00"},
	        {"*/15 * * * *", "America/New_York", "2024-11-03T01:45:00-04:00",
	         "2024-11-03T01:00:00-05:00"},
	        {"0 3 * * *", "America/New_York", "2024-11-03T00:00:00-04:00",
	         "2024-11-03T03:00:00-05:00"},
	};
	RUN(c);
}

static void test_cron_dst_europe_berlin(void **state)
{
	static const struct next_case c[] = {
	        /* 2024-03-31 02:00 CET jumps to 03:00 CEST. */
	        {"30 2 * * *", "Europe/Berlin", "2024-03-31T00:00:00+01:00",
	         "2024-04-01T02:30:00+02:00"},
	        {"0 3 * * *", "Europe/Berlin", "2024-03-31T00:00:00+01:00",
	         "2024-03-31T03:00:00+02:00"},
	        /* 2024-10-27 03:00 CEST falls back to 02:00 CET. */
	        {"30 2 * * *", "Europe/Berlin", "2024-10-27T00:00:00+02:00",
	         "2024-10-27T02:30:00+02:00"},
	        {"30 2 * * *", "Europe/Berlin", "2024-10-27T02:30:00+02:00",
	         "2024-10-27T02:30:00+01:00"},
	        {"0 9 * * mon-fri", "Europe/Berlin", "2024-10-25T09:00:00+02:00",
	         "2024-10-28T09:00:00+01:00"},
	};
	RUN(c);
}

static void test_zone_footer_rule_governs_far_future(void **state)
{
	/* Past the TZif table (2037) the POSIX footer rule applies. */
	static const struct next_case c[] = {
	        {"0 12 * * *", "America/New_York", "2050-07-01T00:00:00Z",
	         "2050-07-01T12:00:00-04:00"},
	        {"0 12 * * *", "America/New_York", "2050-01-01T00:00:00Z",
	         "2050-01-01T12:00:00-05:00"},
	        {"30 2 * * *", "America/New_York", "2050-03-13T00:00:00-05:00",
	         "2050-03-14T02:30:00-04:00"},
	        {"0 12 * * *", "Australia/Sydney", "2050-07-01T00:00:00Z",
	         "2050-07-01T12:00:00+10:00"},
	        {"0 12 * * *", "Australia/Sydney", "2050-01-01T00:00:00Z",
	         "2050-01-01T12:00:00+11:00"},
	};
	RUN(c);
}

static void test_zone_offsets(void **state)
{
	static const struct {
		const char *tz, *at;
		int32_t off;
	} c[] = {
	        {"America/New_York", "2024-01-15T12:00:00Z", -18000},
	        {"America/New_York", "2024-07-15T12:00:00Z", -14400},
	        {"America/New_York", "2024-03-10T06:59:59Z", -18000},
	        {"America/New_York", "2024-03-10T07:00:00Z", -14400},
	        {"Europe/Berlin", "2024-10-27T00:59:59Z", 7200},
	        {"Europe/Berlin", "2024-10-27T01:00:00Z", 3600},
	        {"Asia/Kolkata", "2024-01-01T00:00:00Z", 19800},
	        {"America/Sao_Paulo", "2024-01-01T00:00:00Z", -10800},
	        {"UTC", "2024-01-01T00:00:00Z", 0},
	        {"Etc/UTC", "2024-01-01T00:00:00Z", 0},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct rec_zone *z;
		assert_int_equal(rec_test_zone_load(c[i].tz, &z), 0);
		int32_t got = rec_zone_offset(z, T(c[i].at) / 1000);
		if (got != c[i].off)
			fail_msg("%s at %s: offset %d, want %d", c[i].tz, c[i].at, got, c[i].off);
		rec_zone_unref(z);
	}
}

static void test_zone_path_validates_names(void **state)
{
	static const struct {
		const char *dir, *name;
		size_t len;
		int rc;
		const char *want;
	} c[] = {
	        {NULL, "Europe/Berlin", 64, 0, "/usr/share/zoneinfo/Europe/Berlin"},
	        {"/zi", "America/Argentina/Buenos_Aires", 64, 0,
	         "/zi/America/Argentina/Buenos_Aires"},
	        {"/zi", "Etc/GMT+5", 64, 0, "/zi/Etc/GMT+5"},
	        {"/zi", "Etc/GMT-14", 64, 0, "/zi/Etc/GMT-14"},
	        {"/zi", "UTC", 64, 0, "/zi/UTC"}, /* a path like any; rec_zone_builtin() knows it */
	        {"/zi", "zone.tab", 64, 0, "/zi/zone.tab"}, /* a name; the loader finds no TZif */
	        {"/zi", "..", 64, -EINVAL, NULL},
	        {"/zi", "../../etc/passwd", 64, -EINVAL, NULL},
	        {"/zi", "America/../../etc/passwd", 64, -EINVAL, NULL},
	        {"/zi", "America/..", 64, -EINVAL, NULL},
	        {"/zi", "/etc/localtime", 64, -EINVAL, NULL},
	        {"/zi", "", 64, -EINVAL, NULL},
	        {"/zi", NULL, 64, -EINVAL, NULL},
	        {"/zi", "Europe/Berlin/", 64, -EINVAL, NULL},
	        {"/zi", "Europe//Berlin", 64, -EINVAL, NULL},
	        {"/zi", "Europe/Ber lin", 64, -EINVAL, NULL},
	        {"/zi", "Europe\\Berlin", 64, -EINVAL, NULL},
	        {"/zi", "Europe/Berlin\n", 64, -EINVAL, NULL},
	        {"/zi", "A234567890123456789012345678901234567890123456789012345678901234", 128,
	         -EINVAL, NULL}, /* 64 characters: longer than any IANA name */
	        {"/zi", "Europe/Berlin", 18, 0, "/zi/Europe/Berlin"},
	        {"/zi", "Europe/Berlin", 17, -ENAMETOOLONG, NULL},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		char buf[128] = "";
		int rc = rec_zone_path(c[i].dir, c[i].name, buf, c[i].len);
		if (rc != c[i].rc || (c[i].want && strcmp(buf, c[i].want) != 0))
			fail_msg("case %zu \"%s\": rc %d path \"%s\", want %d \"%s\"", i,
			         c[i].name ? c[i].name : "(null)", rc, buf, c[i].rc,
			         c[i].want ? c[i].want : "");
		assert_int_equal(rec_zone_name_valid(c[i].name), c[i].rc != -EINVAL);
	}
}

static void test_zone_builtin_is_utc_only(void **state)
{
	struct rec_zone *z = NULL;

	assert_ptr_equal(rec_zone_builtin("UTC"), rec_zone_utc());
	assert_ptr_equal(rec_zone_builtin("Etc/UTC"), rec_zone_utc());
	assert_null(rec_zone_builtin("utc"));
	assert_null(rec_zone_builtin("Europe/Berlin"));
	assert_null(rec_zone_builtin(NULL));
	assert_int_equal(rec_zone_from_tzif("x", "TZif2garbage", 12, &z), -EINVAL);
	assert_null(z);
}

static void test_cron_parse_errors_name_the_problem(void **state)
{
	static const struct {
		const char *spec, *want;
	} c[] = {
	        {"", "schedule is empty"},
	        {"   ", "schedule is empty"},
	        {"* * * *", "expected exactly 5 fields"},
	        {"0 * * * * *", "expected exactly 5 fields"},
	        {"60 * * * *", "minute field: 60 is above the maximum 59"},
	        {"* 24 * * *", "hour field: 24 is above the maximum 23"},
	        {"* * 0 * *", "day-of-month field: 0 is below the minimum 1"},
	        {"* * 32 * *", "day-of-month field: 32 is above the maximum 31"},
	        {"* * * 13 *", "month field: 13 is above the maximum 12"},
	        {"* * * 0 *", "month field: 0 is below the minimum 1"},
	        {"* * * * 8", "day-of-week field: 8 is above the maximum 7"},
	        {"5-1 * * * *", "minute field: range start 5 is after its end 1"},
	        {"*/0 * * * *", "minute field: step must be a positive number"},
	        {"*/ * * * *", "minute field: step must be a positive number"},
	        {"*/x * * * *", "minute field: step must be a positive number"},
	        {"1-2-3 * * * *", "minute field: too many hyphens"},
	        {"*/2/3 * * * *", "minute field: too many slashes"},
	        {"a * * * *", "minute field: cannot parse \"a\" as a number"},
	        {"* * * foo *", "month field: cannot parse \"foo\" as a number or name"},
	        {"* * * * monday", "day-of-week field: cannot parse \"monday\""},
	        {"* * * jan-foo *", "month field: cannot parse \"foo\""},
	        {"1,,2 * * * *", "minute field: empty list element"},
	        {"1, * * * *", "minute field: empty list element"},
	        {"-5 * * * *", "minute field: cannot parse \"\""},
	        {"@every 500ms", "shorter than the minimum of 1s"},
	        {"@every 0s", "shorter than the minimum of 1s"},
	        {"@every -5s", "@every needs a Go duration"},
	        {"@every 5x", "@every needs a Go duration"},
	        {"@every 5", "@every needs a Go duration"},
	        {"@every", "unknown descriptor"},
	        {"@fortnightly", "unknown descriptor \"@fortnightly\""},
	        {"@DAILY", "unknown descriptor"},
	        {"TZ=UTC 0 * * * *", "set spec.timeZone instead"},
	        {"CRON_TZ=Europe/Berlin 0 * * * *", "set spec.timeZone instead"},
	        {"0 0 30 2 *", "never fires"},
	        {"0 0 31 4,6,9,11 *", "never fires"},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct rec_schedule *s = NULL;
		char err[200] = "";
		int rc = rec_schedule_parse(c[i].spec, NULL, &s, err, sizeof(err));
		if (rc != -EINVAL || strstr(err, c[i].want) == NULL)
			fail_msg("\"%s\": rc %d err \"%s\", want -EINVAL and \"%s\"", c[i].spec, rc,
			         err, c[i].want);
		assert_null(s);
	}
}

static void test_schedule_period(void **state)
{
	static const struct {
		const char *spec;
		int64_t period;
	} c[] = {
	        {"*/10 * * * *", 600},        {"* * * * *", 60},
	        {"0 * * * *", 3600},          {"0,1 * * * *", 60},
	        {"0 0 * * *", 86400},         {"@weekly", 604800},
	        {"@monthly", 28 * 86400},     {"@every 1h30m", 5400},
	        {"@every 45s", 45},           {"0 0,12 * * *", 43200},
	        {"0 0 29 2 *", 1461 * 86400}, {"0 0 * * 1,2", 86400},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct rec_schedule *s;
		char err[200];
		assert_int_equal(rec_schedule_parse(c[i].spec, NULL, &s, err, sizeof(err)), 0);
		if (rec_schedule_period_s(s) != c[i].period)
			fail_msg("%s: period %lld, want %lld", c[i].spec,
			         (long long)rec_schedule_period_s(s), (long long)c[i].period);
		rec_schedule_free(s);
	}
}

static void test_go_duration(void **state)
{
	static const struct {
		const char *s;
		int rc;
		int64_t ms;
	} c[] = {
	        {"1h30m", 0, 5400000},
	        {"90s", 0, 90000},
	        {"1.5m", 0, 90000},
	        {"500ms", 0, 500},
	        {"2h45m30.5s", 0, 9930500},
	        {"0", 0, 0},
	        {"1000000us", 0, 1000},
	        {"+3s", 0, 3000},
	        {"", -EINVAL, 0},
	        {"5", -EINVAL, 0},
	        {"-1s", -EINVAL, 0},
	        {"1d", -EINVAL, 0},
	        {"s", -EINVAL, 0},
	        {"1h 30m", -EINVAL, 0},
	        {"99999999999999999999h", -EINVAL, 0},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		int64_t ms = -1;
		int rc = rec_go_duration_ms(c[i].s, &ms);
		if (rc != c[i].rc || (rc == 0 && ms != c[i].ms))
			fail_msg("\"%s\": rc %d ms %lld, want rc %d ms %lld", c[i].s, rc,
			         (long long)ms, c[i].rc, (long long)c[i].ms);
	}
}

static void test_time_format_and_parse_roundtrip(void **state)
{
	char buf[40];
	int64_t ms;

	assert_string_equal(rec_time_format(0, buf, sizeof(buf)), "1970-01-01T00:00:00Z");
	assert_string_equal(rec_time_format(951782400000LL, buf, sizeof(buf)),
	                    "2000-02-29T00:00:00Z");
	assert_string_equal(rec_time_format(1730615400999LL, buf, sizeof(buf)),
	                    "2024-11-03T06:30:00Z");
	assert_int_equal(rec_time_parse("2024-11-03T01:30:00-05:00", &ms), 0);
	assert_int_equal(ms, 1730615400000LL);
	assert_int_equal(rec_time_parse("2024-11-03T06:30:00.250Z", &ms), 0);
	assert_int_equal(ms, 1730615400250LL);
	assert_int_equal(rec_time_parse("2023-02-29T00:00:00Z", &ms), -EINVAL);
	assert_int_equal(rec_time_parse("2024-01-01 00:00:00Z", &ms), -EINVAL);
	assert_int_equal(rec_time_parse("2024-01-01T00:00:00", &ms), -EINVAL);
}

/* A deterministic generator for the property test below. */
static uint32_t prng(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

/* Writes a random field over [lo, hi] into buf and its value set into
 * *bits; returns 1 when the field counts as unrestricted ("*"). */
static int random_field(uint32_t *r, int lo, int hi, char *buf, uint64_t *bits)
{
	int star = 0, n = 1 + (int)(prng(r) % 3);

	*bits = 0;
	buf[0] = '\0';
	for (int i = 0; i < n; i++) {
		int a = lo + (int)(prng(r) % (unsigned)(hi - lo + 1)), b = a, step = 1;
		switch (prng(r) % 5) {
		case 0:
			a = lo, b = hi, star = 1;
			sprintf(buf + strlen(buf), "%s*", i ? "," : "");
			break;
		case 1:
			a = lo, b = hi, step = 2 + (int)(prng(r) % 6);
			sprintf(buf + strlen(buf), "%s*/%d", i ? "," : "", step);
			break;
		case 2:
			b = a + (int)(prng(r) % (unsigned)(hi - a + 1));
			sprintf(buf + strlen(buf), "%s%d-%d", i ? "," : "", a, b);
			break;
		default:
			sprintf(buf + strlen(buf), "%s%d", i ? "," : "", a);
			break;
		}
		for (int v = a; v <= b; v += step)
			*bits |= 1ULL << v;
	}
	return star;
}

/* Brute force: steps minute by minute through local wall-clock time and
 * applies CronJob's matching rules directly. */
static int64_t brute_next(const struct rec_zone *z, const uint64_t *f, int dom_star, int dow_star,
                          int64_t after_ms, int days)
{
	int64_t t = (after_ms / 60000) * 60 + 60;

	for (int64_t k = 0; k < (int64_t)days * 1440; k++, t += 60) {
		int64_t l = t + rec_zone_offset(z, t), d = l / 86400, y;
		unsigned mo, dd, sod = (unsigned)(l - d * 86400);
		rec__civil_from_days(d, &y, &mo, &dd);
		if (!((f[0] >> (sod / 60 % 60)) & 1) || !((f[1] >> (sod / 3600)) & 1) ||
		    !((f[3] >> mo) & 1) || sod % 60)
			continue;
		int dm = (f[2] >> dd) & 1, wm = (f[4] >> rec__weekday(d)) & 1;
		if ((dom_star || dow_star) ? (dm && wm) : (dm || wm))
			return t * 1000;
	}
	return -1;
}

static void test_cron_next_matches_brute_force(void **state)
{
	static const char *const zones[] = {"America/New_York", "Europe/Berlin", "Pacific/Chatham",
	                                    "Australia/Lord_Howe", "UTC"};
	static const int lo[5] = {0, 0, 1, 1, 0}, hi[5] = {59, 23, 31, 12, 6};
	uint32_t r = 12345;

	for (int i = 0; i < 400; i++) {
		char fields[5][64], spec[340], err[200];
		uint64_t bits[5];
		int star[5];
		struct rec_zone *z;
		struct rec_schedule *s;
		for (int k = 0; k < 5; k++)
			star[k] = random_field(&r, lo[k], hi[k], fields[k], &bits[k]);
		snprintf(spec, sizeof(spec), "%s %s %s %s %s", fields[0], fields[1], fields[2],
		         fields[3], fields[4]);
		assert_int_equal(rec_test_zone_load(zones[i % 5], &z), 0);
		if (rec_schedule_parse(spec, z, &s, err, sizeof(err)) != 0) {
			rec_zone_unref(z);
			continue; /* e.g. never fires */
		}
		/* Around the 2024 DST changes of both hemispheres. */
		int64_t after = 1704067200000LL + (int64_t)(prng(&r) % 366) * 86400000LL +
		                (int64_t)(prng(&r) % 86400000);
		int64_t want = brute_next(z, bits, star[2], star[4], after, 62);
		int64_t got = rec_schedule_next(s, after);
		if (want >= 0 && got != want)
			fail_msg("\"%s\" in %s after %lld: got %lld, want %lld", spec, zones[i % 5],
			         (long long)after, (long long)got, (long long)want);
		if (want < 0 && got >= 0 && got < after + 62 * 86400000LL)
			fail_msg("\"%s\" in %s: got %lld, brute force found none", spec,
			         zones[i % 5], (long long)got);
		rec_schedule_free(s);
		rec_zone_unref(z);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_cron_next_is_strictly_after),
	        cmocka_unit_test(test_cron_ranges_steps_and_lists),
	        cmocka_unit_test(test_cron_month_and_day_names),
	        cmocka_unit_test(test_cron_vixie_day_or),
	        cmocka_unit_test(test_cron_star_step_restricts_day_field),
	        cmocka_unit_test(test_cron_weekday_seven_is_sunday),
	        cmocka_unit_test(test_cron_end_of_month_and_leap_years),
	        cmocka_unit_test(test_cron_descriptors),
	        cmocka_unit_test(test_every_adds_period_to_whole_second),
	        cmocka_unit_test(test_cron_dst_spring_forward_new_york),
	        cmocka_unit_test(test_cron_dst_fall_back_new_york),
	        cmocka_unit_test(test_cron_dst_europe_berlin),
	        cmocka_unit_test(test_zone_footer_rule_governs_far_future),
	        cmocka_unit_test(test_zone_offsets),
	        cmocka_unit_test(test_zone_path_validates_names),
	        cmocka_unit_test(test_zone_builtin_is_utc_only),
	        cmocka_unit_test(test_cron_parse_errors_name_the_problem),
	        cmocka_unit_test(test_schedule_period),
	        cmocka_unit_test(test_go_duration),
	        cmocka_unit_test(test_time_format_and_parse_roundtrip),
	        cmocka_unit_test(test_cron_next_matches_brute_force),
	};
	return cmocka_run_group_tests_name("reconcile_cron", tests, NULL, NULL);
}
