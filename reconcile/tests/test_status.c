/* Status: conditions per the API conventions (transitions, reasons,
 * observedGeneration), bounded lists, counters and the /status patch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "reconcile/reconcile.h"

#define T0  1717200000000LL /* 2024-06-01T00:00:00Z */
#define MIN 60000LL

static struct rec_policy *policy(const char *spec, struct rec_errs *errs)
{
	char buf[1024];
	struct rec_policy *p = NULL;

	snprintf(buf, sizeof(buf),
	         "{\"metadata\":{\"name\":\"web\",\"namespace\":\"shop\",\"generation\":7},"
	         "\"spec\":%s}",
	         spec);
	struct json_object *o = json_tokener_parse(buf);
	assert_non_null(o);
	assert_int_equal(rec_policy_parse(o, NULL, NULL, &p, errs), 0);
	json_object_put(o);
	return p;
}

static void expect_cond(const struct rec_status *st, const char *type, const char *status,
                        const char *reason)
{
	const struct rec_condition *c = rec_status_condition(st, type);

	if (c == NULL)
		fail_msg("no %s condition", type);
	if (strcmp(c->status, status) != 0 || strcmp(c->reason, reason) != 0)
		fail_msg("%s: %s/%s (%s), want %s/%s", type, c->status, c->reason, c->message,
		         status, reason);
}

/* Shows a round as the controller publishes it (rec_ctl owns lastRound):
 * lastScheduleTime and the round's tally. */
static void show_round(struct rec_status *st, int64_t ms, uint32_t succeeded, uint32_t failed,
                       uint32_t skipped)
{
	st->last_schedule_ms = ms;
	st->last_round = (struct rec_round){
	        .started_ms = ms, .succeeded = succeeded, .failed = failed, .skipped = skipped};
}

static void test_condition_transition_time_moves_only_on_status_change(void **state)
{
	struct rec_status st;
	const struct rec_condition *c;

	rec_status_init(&st);
	assert_int_equal(
	        rec_status_set_condition(&st, "Ready", "True", "Capturing", "3 targets", 1, T0), 0);
	c = rec_status_condition(&st, "Ready");
	assert_int_equal(c->last_transition_ms, T0);
	/* Same status, new reason and generation: no transition. */
	rec_status_set_condition(&st, "Ready", "True", "NoTargets", "none", 2, T0 + MIN);
	assert_int_equal(c->last_transition_ms, T0);
	assert_string_equal(c->reason, "NoTargets");
	assert_string_equal(c->message, "none");
	assert_int_equal(c->observed_generation, 2);
	/* A status change is a transition. */
	rec_status_set_condition(&st, "Ready", "False", "InvalidSpec", "x", 3, T0 + 2 * MIN);
	assert_int_equal(c->last_transition_ms, T0 + 2 * MIN);
	assert_int_equal(st.nconds, 1);
	/* The set of types is bounded. */
	assert_int_equal(rec_status_set_condition(&st, "A", "True", "R", "", 1, T0), 0);
	assert_int_equal(rec_status_set_condition(&st, "B", "True", "R", "", 1, T0), 0);
	assert_int_equal(rec_status_set_condition(&st, "C", "True", "R", "", 1, T0), 0);
	assert_int_equal(rec_status_set_condition(&st, "D", "True", "R", "", 1, T0), -ENOSPC);
	rec_status_free(&st);
}

/* A quiet policy's status holds what it says and no more: 10,000
 * policies are 10,000 of them. No event list until the first entry, no
 * message string for a condition without a message, the same string kept
 * when a recompute says the same thing, and a message cut to 255 bytes
 * on a UTF-8 boundary. */
static void test_status_quiet_policy_holds_little(void **state)
{
	struct rec_errs errs = {0};
	struct rec_policy *p = policy("{\"schedule\":\"@hourly\",\"suspend\":true}", &errs);
	struct rec_status st;
	const struct rec_condition *c;
	const char *msg;
	char lng[400];

	(void)state;
	assert_true(sizeof(struct rec_status) <= 1024);
	rec_status_init(&st);
	rec_status_compute(&st, p, &errs, 0, 0, T0);
	expect_cond(&st, "Ready", "True", "Suspended");
	assert_null(st.errors);
	assert_null(st.recent);
	assert_string_equal(rec_status_condition(&st, "SpecValid")->message, "");
	msg = rec_status_condition(&st, "Ready")->message;
	rec_status_compute(&st, p, &errs, 0, 0, T0 + MIN);
	assert_ptr_equal(rec_status_condition(&st, "Ready")->message, msg);

	assert_int_equal(rec_status_add_failure_kind(&st, T0, "shop/a", "heap", "timeout", "t"), 0);
	assert_non_null(st.errors);
	assert_null(st.recent);
	rec_status_free(&st);
	assert_null(st.errors);
	assert_int_equal(st.nerrors, 0);

	rec_status_init(&st);
	memset(lng, 'x', sizeof(lng));
	memcpy(lng + 254, "\xc3\xa9", 2); /* U+00E9 across the 255th byte */
	lng[sizeof(lng) - 1] = '\0';
	assert_int_equal(rec_status_set_condition(&st, "Ready", "True", "R", lng, 1, T0), 0);
	c = rec_status_condition(&st, "Ready");
	assert_int_equal(strlen(c->message), 254);
	assert_int_equal(rec_status_set_condition(&st, "Ready", "True", "R", "", 1, T0), 0);
	assert_string_equal(c->message, "");
	rec_status_free(&st);
	rec_policy_free(p);
}

static void test_status_valid_policy_is_ready_and_capturing(void **state)
{
	struct rec_errs errs = {0};
	struct rec_policy *p = policy("{\"schedule\":\"*/10 * * * *\"}", &errs);
	struct rec_status st;

	rec_status_init(&st);
	rec_status_compute(&st, p, &errs, 3, T0 + 10 * MIN, T0);
	assert_int_equal(st.observed_generation, 7);
	assert_int_equal(st.targets, 3);
	assert_int_equal(st.next_schedule_ms, T0 + 10 * MIN);
	expect_cond(&st, "SpecValid", "True", "Valid");
	expect_cond(&st, "ScheduleValid", "True", "Valid");
	expect_cond(&st, "Degraded", "False", "AsExpected");
	expect_cond(&st, "Ready", "True", "Capturing");
	assert_int_equal(rec_status_condition(&st, "Ready")->observed_generation, 7);
	rec_status_free(&st);
	rec_policy_free(p);
}

static void test_status_reasons_for_bad_specs(void **state)
{
	static const struct {
		const char *spec;
		const char *spec_valid, *spec_reason, *sched_valid, *sched_reason, *ready_reason;
		const char *msg; /* in Ready's message */
	} c[] = {
	        {"{\"schedule\":\"@hourly\",\"port\":0}", "False", "InvalidSpec", "True", "Valid",
	         "InvalidSpec", "spec.port: must be between 1 and 65535"},
	        {"{\"schedule\":\"61 * * * *\"}", "True", "Valid", "False", "InvalidSchedule",
	         "InvalidSchedule", "spec.schedule: minute field: 61 is above the maximum 59"},
	        {"{\"schedule\":\"@hourly\",\"timeZone\":\"Mars/Base\"}", "True", "Valid", "False",
	         "UnknownTimeZone", "UnknownTimeZone", "spec.timeZone: unknown time zone"},
	        {"{\"schedule\":\"bad\",\"scheme\":\"ftp\"}", "False", "InvalidSpec", "False",
	         "InvalidSchedule", "InvalidSchedule", "expected exactly 5 fields"},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct rec_errs errs = {0};
		struct rec_policy *p = policy(c[i].spec, &errs);
		struct rec_status st;
		rec_status_init(&st);
		rec_status_compute(&st, p, &errs, 5, T0 + MIN, T0);
		expect_cond(&st, "SpecValid", c[i].spec_valid, c[i].spec_reason);
		expect_cond(&st, "ScheduleValid", c[i].sched_valid, c[i].sched_reason);
		expect_cond(&st, "Ready", "False", c[i].ready_reason);
		if (!strstr(rec_status_condition(&st, "Ready")->message, c[i].msg))
			fail_msg("%s: Ready message \"%s\" lacks \"%s\"", c[i].spec,
			         rec_status_condition(&st, "Ready")->message, c[i].msg);
		assert_int_equal(st.targets, 0);          /* an invalid policy captures nothing */
		assert_int_equal(st.next_schedule_ms, 0); /* and has no next round */
		assert_int_equal(st.observed_generation, 7);
		rec_status_free(&st);
		rec_policy_free(p);
	}
}

static void test_status_unparseable_policy_is_not_ready(void **state)
{
	struct rec_errs errs = {0};
	struct rec_status st;

	rec_errs_add(&errs, REC_ERR_SPEC, "spec", "is required and must be an object");
	rec_status_init(&st);
	st.observed_generation = 4;
	rec_status_compute(&st, NULL, &errs, 0, -1, T0);
	expect_cond(&st, "Ready", "False", "InvalidSpec");
	expect_cond(&st, "SpecValid", "False", "InvalidSpec");
	assert_int_equal(st.observed_generation, 4);
	rec_status_free(&st);
}

static void test_status_suspended_and_no_targets(void **state)
{
	struct rec_errs errs = {0};
	struct rec_policy *p = policy("{\"schedule\":\"@hourly\",\"suspend\":true}", &errs);
	struct rec_status st;

	rec_status_init(&st);
	rec_status_compute(&st, p, &errs, 4, T0 + MIN, T0);
	expect_cond(&st, "Ready", "True", "Suspended");
	assert_int_equal(st.next_schedule_ms, 0); /* suspended: no next round */
	p->suspend = 0;
	rec_status_compute(&st, p, &errs, 0, T0 + MIN, T0 + MIN);
	expect_cond(&st, "Ready", "True", "NoTargets");
	assert_non_null(strstr(rec_status_condition(&st, "Ready")->message,
	                       "profefe.com/enable: \"true\""));
	assert_int_equal(rec_status_condition(&st, "Ready")->last_transition_ms, T0);
	rec_status_free(&st);
	rec_policy_free(p);
}

static void test_status_refused_grants_are_not_ready(void **state)
{
	static const struct rec_grants g = {.default_url = "http://profefe:10100"};
	struct rec_errs errs = {0};
	struct rec_policy *p = policy("{\"schedule\":\"@hourly\",\"namespaceSelector\":"
	                              "{\"any\":true},\"profefeURL\":\"http://x:1\"}",
	                              &errs);
	struct rec_status st;

	rec_policy_authorize(p, &g, &errs);
	rec_status_init(&st);
	rec_status_compute(&st, p, &errs, 4, T0 + MIN, T0);
	expect_cond(&st, "Ready", "False", "CrossNamespaceNotAllowed");
	expect_cond(&st, "SpecValid", "True", "Valid");
	assert_non_null(strstr(rec_status_condition(&st, "Ready")->message, "spec.profefeURL"));
	assert_int_equal(st.targets, 0); /* no count of other namespaces' pods */
	assert_int_equal(st.next_schedule_ms, 0);
	rec_status_free(&st);
	rec_policy_free(p);

	memset(&errs, 0, sizeof(errs));
	p = policy("{\"schedule\":\"@hourly\",\"profefeURL\":\"http://x:1\"}", &errs);
	rec_policy_authorize(p, &g, &errs);
	rec_status_init(&st);
	rec_status_compute(&st, p, &errs, 4, T0 + MIN, T0);
	expect_cond(&st, "Ready", "False", "ProfefeURLNotAllowed");
	rec_status_free(&st);
	rec_policy_free(p);
}

static void test_status_degraded_when_captures_fail(void **state)
{
	struct rec_errs errs = {0};
	struct rec_policy *p = policy("{\"schedule\":\"@hourly\"}", &errs);
	struct rec_status st;

	rec_status_init(&st);
	show_round(&st, T0, 1, 1, 1);
	rec_status_add_success(&st, T0 + 1000, "shop/a", "heap", "id-1");
	rec_status_add_failure_kind(&st, T0 + 2000, "shop/b", "cpu", NULL,
	                            "HTTP 500: cpu profiling already in use");
	rec_status_add_skipped(&st);
	rec_status_compute(&st, p, &errs, 2, T0 + 60 * MIN, T0 + 3000);
	expect_cond(&st, "Degraded", "True", "CapturesFailing");
	assert_string_equal(rec_status_condition(&st, "Degraded")->message,
	                    "1 of 3 captures in the last round failed");
	expect_cond(&st, "Ready", "True", "CapturingWithErrors");

	/* Every capture failing makes the policy not Ready. */
	show_round(&st, T0 + 60 * MIN, 0, 2, 0);
	rec_status_add_failure_kind(&st, T0 + 61 * MIN, "shop/a", "heap", NULL,
	                            "connection refused");
	rec_status_add_failure_kind(&st, T0 + 61 * MIN, "shop/b", "heap", NULL,
	                            "connection refused");
	rec_status_compute(&st, p, &errs, 2, T0 + 120 * MIN, T0 + 61 * MIN);
	expect_cond(&st, "Ready", "False", "AllCapturesFailing");
	assert_int_equal(rec_status_condition(&st, "Ready")->last_transition_ms, T0 + 61 * MIN);
	assert_int_equal(rec_status_condition(&st, "Degraded")->last_transition_ms, T0 + 3000);

	/* A clean round clears Degraded. */
	show_round(&st, T0 + 120 * MIN, 1, 0, 0);
	rec_status_add_success(&st, T0 + 121 * MIN, "shop/a", "heap", "id-2");
	rec_status_compute(&st, p, &errs, 2, T0 + 180 * MIN, T0 + 121 * MIN);
	expect_cond(&st, "Degraded", "False", "AsExpected");
	expect_cond(&st, "Ready", "True", "Capturing");
	assert_int_equal(rec_status_condition(&st, "Degraded")->last_transition_ms, T0 + 121 * MIN);
	assert_int_equal(st.captures_succeeded, 2);
	assert_int_equal(st.captures_failed, 3);
	assert_int_equal(st.captures_skipped, 1);
	assert_int_equal(st.last_capture_ms, T0 + 121 * MIN);
	rec_status_free(&st);
	rec_policy_free(p);
}

static void test_status_empty_profiles_are_skipped_not_failed(void **state)
{
	struct rec_errs errs = {0};
	struct rec_policy *p = policy("{\"schedule\":\"@hourly\"}", &errs);
	struct rec_status st;

	rec_status_init(&st);
	show_round(&st, T0, 0, 0, 2);
	rec_status_add_skipped(&st);
	rec_status_add_skipped(&st);
	rec_status_compute(&st, p, &errs, 1, T0 + MIN, T0);
	expect_cond(&st, "Degraded", "False", "AsExpected");
	expect_cond(&st, "Ready", "True", "Capturing");
	assert_int_equal(st.captures_failed, 0);
	assert_int_equal(st.nerrors, 0);
	rec_status_free(&st);
	rec_policy_free(p);
}

static void test_status_lists_keep_ten_newest_first(void **state)
{
	struct rec_status st;
	char pod[32], id[32];

	rec_status_init(&st);
	for (int i = 0; i < 15; i++) {
		snprintf(pod, sizeof(pod), "shop/p%d", i);
		snprintf(id, sizeof(id), "id%d", i);
		assert_int_equal(
		        rec_status_add_failure_kind(&st, T0 + i, pod, "heap", NULL, "boom"), 0);
		assert_int_equal(rec_status_add_success(&st, T0 + i, pod, "heap", id), 0);
	}
	assert_int_equal(st.nerrors, REC_STATUS_LIST_MAX);
	assert_int_equal(st.nrecent, REC_STATUS_LIST_MAX);
	assert_string_equal(st.errors[0].pod, "shop/p14");
	assert_string_equal(st.errors[9].pod, "shop/p5");
	assert_string_equal(st.recent[0].text, "id14");
	assert_int_equal(st.recent[0].time_ms, T0 + 14);
	assert_int_equal(st.captures_failed, 15);
	assert_int_equal(st.captures_succeeded, 15);
	rec_status_free(&st);
}

/* One pod failing every round must not hide the others: repeats of
 * (pod, profile, error kind) fold into one entry with a count. */
static void test_status_errors_fold_by_pod_profile_and_kind(void **state)
{
	struct rec_status st;
	char msg[64];
	int64_t t = T0;

	rec_status_init(&st);
	for (int i = 0; i < 30; i++) {
		snprintf(msg, sizeof(msg), "timed out after %d ms", 2000 + i);
		assert_int_equal(
		        rec_status_add_failure_kind(&st, t++, "shop/a", "heap", "timeout", msg), 0);
		if (i == 9)
			rec_status_add_failure_kind(&st, t++, "shop/b", "heap", "http_500",
			                            "HTTP 500");
		if (i == 19)
			rec_status_add_failure_kind(&st, t++, "shop/c", "cpu", "timeout",
			                            "timed out");
	}
	rec_status_add_failure_kind(&st, t++, "shop/d", "heap", "invalid_target", "bad port");
	assert_int_equal(st.nerrors, 4);
	assert_string_equal(st.errors[0].pod, "shop/d");
	assert_string_equal(st.errors[1].pod, "shop/a");
	assert_int_equal(st.errors[1].count, 30);
	assert_string_equal(st.errors[1].text, "timed out after 2029 ms");
	assert_int_equal(st.errors[1].time_ms, T0 + 31);
	assert_string_equal(st.errors[2].pod, "shop/c");
	assert_string_equal(st.errors[3].pod, "shop/b");
	for (size_t i = 0; i < st.nerrors; i++)
		if (i != 1)
			assert_int_equal(st.errors[i].count, 1);
	assert_int_equal(st.captures_failed, 33);
	/* A different kind for the same pod and profile is its own entry. */
	rec_status_add_failure_kind(&st, t++, "shop/a", "heap", "http_500", "HTTP 500");
	assert_int_equal(st.nerrors, 5);
	assert_int_equal(st.errors[0].count, 1);
	rec_status_free(&st);
}

/* Without a kind, repeats fold by pod and profile alone (the newest
 * message wins), so the old entry point cannot flood the list either. */
static void test_status_unclassified_errors_fold_by_pod_and_profile(void **state)
{
	struct rec_status st;

	rec_status_init(&st);
	for (int i = 0; i < 15; i++)
		rec_status_add_failure_kind(&st, T0 + i, "shop/a", "all", NULL,
		                            i % 2 ? "bad annotation port" : "bad annotation path");
	rec_status_add_failure_kind(&st, T0 + 20, "shop/b", "all", NULL, "bad annotation port");
	assert_int_equal(st.nerrors, 2);
	assert_string_equal(st.errors[1].pod, "shop/a");
	assert_int_equal(st.errors[1].count, 15);
	assert_string_equal(st.errors[1].text, "bad annotation path");
	rec_status_free(&st);
}

/* An id longer than the CRD allows would make every status write fail:
 * it is counted as a success but not listed. */
static void test_status_overlong_profile_id_is_not_listed(void **state)
{
	struct rec_status st;
	char id[REC_PROFILE_ID_MAX + 2];

	memset(id, 'x', sizeof(id) - 1);
	id[sizeof(id) - 1] = '\0';
	rec_status_init(&st);
	assert_int_equal(rec_status_add_success(&st, T0, "shop/a", "heap", id), -EINVAL);
	assert_int_equal(st.nrecent, 0);
	assert_int_equal(st.captures_succeeded, 1);
	assert_int_equal(st.last_round.succeeded, 0); /* the controller's to count */
	assert_int_equal(st.last_capture_ms, T0);
	id[REC_PROFILE_ID_MAX] = '\0'; /* exactly the maximum is fine */
	assert_int_equal(rec_status_add_success(&st, T0, "shop/a", "heap", id), 0);
	assert_int_equal(st.nrecent, 1);
	rec_status_free(&st);
}

static void test_status_long_error_is_cut_on_a_utf8_boundary(void **state)
{
	struct rec_status st;
	char msg[601];

	for (int i = 0; i < 300; i++)
		memcpy(msg + 2 * i, "\xc3\xa9", 2); /* U+00E9, two bytes */
	msg[600] = '\0';
	rec_status_init(&st);
	rec_status_add_failure_kind(&st, T0, "shop/a", "heap", NULL, msg);
	assert_int_equal(strlen(st.errors[0].text), 510); /* not 511: no half character */
	rec_status_free(&st);
}

static void test_status_counters_saturate(void **state)
{
	struct rec_status st;

	rec_status_init(&st);
	st.captures_failed = INT64_MAX;
	st.captures_skipped = INT64_MAX;
	rec_status_add_failure_kind(&st, T0, "shop/a", "cpu", NULL, "x");
	rec_status_add_skipped(&st);
	assert_true(st.captures_failed == INT64_MAX);
	assert_true(st.captures_skipped == INT64_MAX);
	rec_status_free(&st);
}

static struct json_object *field(struct json_object *o, const char *k)
{
	struct json_object *v = NULL;
	if (!json_object_object_get_ex(o, k, &v))
		fail_msg("no field %s in %s", k, json_object_to_json_string(o));
	return v;
}

static void test_status_patch_body_is_a_merge_patch(void **state)
{
	struct rec_errs errs = {0};
	struct rec_policy *p = policy("{\"schedule\":\"@hourly\"}", &errs);
	struct rec_status st;
	char *body;

	rec_status_init(&st);
	show_round(&st, T0, 1, 1, 0);
	rec_status_add_success(&st, T0 + 1000, "shop/a", "heap", "bq3kbj6a0t0g00dm7qpg");
	rec_status_add_failure_kind(&st, T0 + 2000, "shop/b", "cpu", NULL,
	                            "HTTP 400: \"seconds\" too long");
	st.captures_succeeded = 9007199254740993LL; /* above 2^53: must stay exact */
	rec_status_compute(&st, p, &errs, 2, -1, T0 + 3000);
	body = rec_status_patch_body(&st);
	assert_non_null(body);

	struct json_object *o = json_tokener_parse(body), *s = field(o, "status"), *v;
	assert_non_null(o);
	assert_int_equal(json_object_object_length(o), 1); /* only status */
	assert_true(json_object_get_int64(field(s, "capturesSucceeded")) == 9007199254740993LL);
	assert_int_equal(json_object_get_int64(field(s, "capturesFailed")), 1);
	assert_int_equal(json_object_get_int64(field(s, "capturesSkipped")), 0);
	assert_int_equal(json_object_get_int64(field(s, "observedGeneration")), 7);
	assert_int_equal(json_object_get_int64(field(s, "targets")), 2);
	assert_string_equal(json_object_get_string(field(s, "lastScheduleTime")),
	                    "2024-06-01T00:00:00Z");
	assert_string_equal(json_object_get_string(field(s, "lastCaptureTime")),
	                    "2024-06-01T00:00:01Z");
	/* Unset times are null, which a merge patch reads as "remove". */
	assert_true(json_object_is_type(field(s, "nextScheduleTime"), json_type_null));
	v = json_object_array_get_idx(field(s, "recentProfiles"), 0);
	assert_string_equal(json_object_get_string(field(v, "id")), "bq3kbj6a0t0g00dm7qpg");
	assert_string_equal(json_object_get_string(field(v, "pod")), "shop/a");
	assert_string_equal(json_object_get_string(field(v, "profile")), "heap");
	assert_false(json_object_object_get_ex(v, "count", NULL));
	v = json_object_array_get_idx(field(s, "lastErrors"), 0);
	assert_string_equal(json_object_get_string(field(v, "message")),
	                    "HTTP 400: \"seconds\" too long");
	assert_string_equal(json_object_get_string(field(v, "time")), "2024-06-01T00:00:02Z");
	assert_int_equal(json_object_get_int64(field(v, "count")), 1);
	v = field(s, "conditions");
	assert_int_equal(json_object_array_length(v), 4);
	for (size_t i = 0; i < 4; i++) {
		struct json_object *c = json_object_array_get_idx(v, i);
		field(c, "type"), field(c, "status"), field(c, "reason"), field(c, "message");
		assert_string_equal(json_object_get_string(field(c, "lastTransitionTime")),
		                    "2024-06-01T00:00:03Z");
		assert_int_equal(json_object_get_int64(field(c, "observedGeneration")), 7);
	}
	assert_false(json_object_object_get_ex(s, "spoolBytes", NULL)); /* unknown: left out */
	json_object_put(o);
	free(body);
	rec_status_free(&st);
	rec_policy_free(p);
}

static void test_status_survives_restart_via_json(void **state)
{
	struct rec_errs errs = {0};
	struct rec_policy *p = policy("{\"schedule\":\"@hourly\"}", &errs);
	struct rec_status a, b;
	char *body, *body2;

	rec_status_init(&a);
	for (int i = 0; i < 12; i++)
		rec_status_add_failure_kind(&a, T0 + i * 1000, "shop/x", "cpu", NULL, "refused");
	rec_status_add_failure_kind(&a, T0 + 12000, "shop/y", "cpu", "timeout", "timed out");
	rec_status_add_success(&a, T0 + 20000, "shop/x", "heap", "id-9");
	a.spool_bytes = 4096;
	a.spool_dropped = 0;
	rec_status_compute(&a, p, &errs, 1, T0 + MIN, T0 + 30000);
	body = rec_status_patch_body(&a);

	struct json_object *o = json_tokener_parse(body), *s = NULL;
	assert_true(json_object_object_get_ex(o, "status", &s));
	assert_int_equal(rec_status_from_json(s, &b), 0);
	assert_int_equal(b.captures_failed, 13);
	assert_int_equal(b.nerrors, 2);
	assert_int_equal(b.errors[0].time_ms, T0 + 12000); /* still newest first */
	assert_string_equal(b.errors[0].kind, "timeout");
	assert_int_equal(b.errors[1].time_ms, T0 + 11000);
	assert_int_equal(b.errors[1].count, 12);
	/* The kind survives too: a repeat after the restart still folds. */
	rec_status_add_failure_kind(&b, T0 + 13000, "shop/y", "cpu", "timeout", "timed out");
	assert_int_equal(b.nerrors, 2);
	assert_int_equal(b.errors[0].count, 2);
	assert_int_equal(b.nrecent, 1);
	assert_int_equal(b.last_capture_ms, T0 + 20000);
	/* After a restart the conditions keep their transition times. */
	rec_status_compute(&b, p, &errs, 1, T0 + MIN, T0 + 10 * MIN);
	assert_int_equal(rec_status_condition(&b, "Ready")->last_transition_ms, T0 + 30000);
	b.spool_bytes = 4096;
	b.spool_dropped = 0;
	body2 = rec_status_patch_body(&b);
	assert_non_null(strstr(body2, "\"count\":2"));
	free(body2);
	/* Written again without the repeat, the status is unchanged. */
	rec_status_free(&b);
	assert_int_equal(rec_status_from_json(s, &b), 0);
	rec_status_compute(&b, p, &errs, 1, T0 + MIN, T0 + 10 * MIN);
	b.spool_bytes = 4096;
	b.spool_dropped = 0;
	body2 = rec_status_patch_body(&b);
	assert_string_equal(body, body2);
	json_object_put(o);
	free(body);
	free(body2);
	rec_status_free(&a);
	rec_status_free(&b);
	rec_policy_free(p);
}

/* A list written before entries had counts (one entry per failure) is
 * folded on load; a count below 1 reads as 1. */
static void test_status_from_json_folds_uncounted_repeats(void **state)
{
	struct rec_status st;
	struct json_object *o = json_tokener_parse(
	        "{\"lastErrors\":["
	        "{\"time\":\"2024-06-01T00:00:03Z\",\"pod\":\"shop/a\",\"profile\":\"heap\","
	        "\"message\":\"new\"},"
	        "{\"time\":\"2024-06-01T00:00:02Z\",\"pod\":\"shop/b\",\"profile\":\"heap\","
	        "\"message\":\"b\",\"count\":0},"
	        "{\"time\":\"2024-06-01T00:00:01Z\",\"pod\":\"shop/a\",\"profile\":\"heap\","
	        "\"message\":\"old\",\"count\":4}]}");

	assert_int_equal(rec_status_from_json(o, &st), 0);
	assert_int_equal(st.nerrors, 2);
	assert_string_equal(st.errors[0].pod, "shop/a");
	assert_string_equal(st.errors[0].text, "new");
	assert_int_equal(st.errors[0].count, 5);
	assert_int_equal(st.errors[0].time_ms, T0 + 3000);
	assert_int_equal(st.errors[1].count, 1);
	rec_status_free(&st);
	json_object_put(o);
}

static void test_status_from_json_tolerates_garbage(void **state)
{
	struct rec_status st;
	struct json_object *o = json_tokener_parse(
	        "{\"capturesFailed\":\"many\",\"lastErrors\":[1,{\"time\":\"yesterday\"}],"
	        "\"conditions\":[{\"type\":\"Ready\"},{\"status\":\"True\"},7],"
	        "\"recentProfiles\":{}}");

	assert_int_equal(rec_status_from_json(o, &st), 0);
	assert_int_equal(st.captures_failed, 0);
	assert_int_equal(st.nerrors, 1);
	assert_int_equal(st.errors[0].time_ms, 0);
	assert_int_equal(st.nconds, 0);
	rec_status_free(&st);
	json_object_put(o);
	assert_int_equal(rec_status_from_json(NULL, &st), 0);
	rec_status_free(&st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_condition_transition_time_moves_only_on_status_change),
	        cmocka_unit_test(test_status_quiet_policy_holds_little),
	        cmocka_unit_test(test_status_valid_policy_is_ready_and_capturing),
	        cmocka_unit_test(test_status_reasons_for_bad_specs),
	        cmocka_unit_test(test_status_unparseable_policy_is_not_ready),
	        cmocka_unit_test(test_status_suspended_and_no_targets),
	        cmocka_unit_test(test_status_refused_grants_are_not_ready),
	        cmocka_unit_test(test_status_degraded_when_captures_fail),
	        cmocka_unit_test(test_status_empty_profiles_are_skipped_not_failed),
	        cmocka_unit_test(test_status_lists_keep_ten_newest_first),
	        cmocka_unit_test(test_status_errors_fold_by_pod_profile_and_kind),
	        cmocka_unit_test(test_status_unclassified_errors_fold_by_pod_and_profile),
	        cmocka_unit_test(test_status_overlong_profile_id_is_not_listed),
	        cmocka_unit_test(test_status_long_error_is_cut_on_a_utf8_boundary),
	        cmocka_unit_test(test_status_counters_saturate),
	        cmocka_unit_test(test_status_patch_body_is_a_merge_patch),
	        cmocka_unit_test(test_status_survives_restart_via_json),
	        cmocka_unit_test(test_status_from_json_folds_uncounted_repeats),
	        cmocka_unit_test(test_status_from_json_tolerates_garbage),
	};
	return cmocka_run_group_tests_name("reconcile_status", tests, NULL, NULL);
}
