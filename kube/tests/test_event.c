/* kube/tests/test_event.c: the Event recorder against the scripted server:
 * a series keyed by the caller folds Events whose messages differ (e.g. by
 * a timing), and survives any gap between occurrences. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/kube_int.h"
#include "kube/tests/srv.h"
#include "loop/loop.h"

static char tmpdir[64];

static int script_ok(struct srv *s, int i, const char *m, const char *p, char *resp, size_t n)
{
	(void)s;
	(void)i;
	(void)p;
	srv_reply(resp, n, !strcmp(m, "POST") ? 201 : 200, NULL, "{}");
	return 1;
}

static const struct kube_objref pod = {
        .api_version = "v1", .kind = "Pod", .ns = "shop", .name = "a", .uid = "u-1"};

/* Runs the loop until the server has answered `n` requests in all. */
static void wait_replies(struct loop *l, struct srv *s, int n)
{
	int done = 0;

	for (int i = 0; i < 100 && !done; i++) {
		loop_run_once(l, 50);
		done = s->nreplied >= n;
	}
	if (!done)
		fail_msg("%d replies, want %d", s->nreplied, n);
}

static struct json_object *body(struct srv *s, int i, const char *key)
{
	struct json_object *o = json_tokener_parse(s->bodies[i]), *v = NULL, *copy;

	if (!o || !json_object_object_get_ex(o, key, &v))
		fail_msg("request %d: no %s in %s", i, key, s->bodies[i]);
	copy = json_object_get(v);
	json_object_put(o);
	return copy; /* the caller puts it */
}

/* Expects request `i` to be a PATCH of the Event POSTed first, raising
 * count to `count` and carrying `msg`. */
static void expect_patch(struct srv *s, int i, int count, const char *msg)
{
	struct json_object *meta = body(s, 0, "metadata"), *name = NULL, *v;
	char want[512];

	assert_true(json_object_object_get_ex(meta, "name", &name));
	snprintf(want, sizeof(want), "PATCH /api/v1/namespaces/shop/events/%s|Bearer t",
	         json_object_get_string(name));
	json_object_put(meta);
	if (strcmp(s->reqs[i], want))
		fail_msg("request %d: %s, want %s", i, s->reqs[i], want);
	v = body(s, i, "count");
	assert_int_equal(json_object_get_int(v), count);
	json_object_put(v);
	v = body(s, i, "message");
	assert_string_equal(json_object_get_string(v), msg);
	json_object_put(v);
}

static void test_event_keyed_folds_messages_with_timings(void **state)
{
	struct srv s = {.script = script_ok};
	struct kube_recorder *rec;
	struct kube_client *kc;
	struct loop *l;
	uint64_t creates, patches;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	srv_start(&s, l);
	kc = srv_client(l, tmpdir, s.port, "token: t");
	assert_int_equal(kube_recorder_new(kc, "test", NULL, 0, &rec), 0);
	assert_int_equal(kube_event_keyed(rec, &pod, "Warning", "CaptureFailed",
	                                  "shop/a|heap|timeout", "timed out after 2001 ms"),
	                 0);
	wait_replies(l, &s, 1);
	assert_int_equal(kube_event_keyed(rec, &pod, "Warning", "CaptureFailed",
	                                  "shop/a|heap|timeout", "timed out after 1999 ms"),
	                 0);
	wait_replies(l, &s, 2);
	assert_int_equal(s.nreq, 2);
	assert_non_null(strstr(s.reqs[0], "POST /api/v1/namespaces/shop/events|"));
	expect_patch(&s, 1, 2, "timed out after 1999 ms");
	kube_recorder_counts(rec, &creates, &patches);
	assert_int_equal(creates, 1);
	assert_int_equal(patches, 1);
	kube_recorder_free(rec);
	kube_client_free(kc);
	srv_stop(&s);
	loop_free(l);
}

/* An hourly (or daily) failure still folds into the same Event: a keyed
 * series has no time window, only the LRU bound on the cache. */
static void test_event_keyed_series_outlives_long_gaps(void **state)
{
	struct srv s = {.script = script_ok};
	struct kube_recorder *rec;
	struct kube_client *kc;
	struct loop *l;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	srv_start(&s, l);
	kc = srv_client(l, tmpdir, s.port, "token: t");
	assert_int_equal(kube_recorder_new(kc, "test", NULL, 0, &rec), 0);
	assert_int_equal(kube_event_keyed(rec, &pod, "Warning", "CaptureFailed",
	                                  "shop/a|heap|timeout", "timed out"),
	                 0);
	wait_replies(l, &s, 1);
	kube__recorder_advance(rec, 3600 * 1000);
	assert_int_equal(kube_event_keyed(rec, &pod, "Warning", "CaptureFailed",
	                                  "shop/a|heap|timeout", "timed out"),
	                 0);
	wait_replies(l, &s, 2);
	kube__recorder_advance(rec, 24 * 3600 * 1000);
	assert_int_equal(kube_event_keyed(rec, &pod, "Warning", "CaptureFailed",
	                                  "shop/a|heap|timeout", "timed out again"),
	                 0);
	wait_replies(l, &s, 3);
	assert_int_equal(s.nreq, 3);
	expect_patch(&s, 1, 2, "timed out");
	expect_patch(&s, 2, 3, "timed out again");
	kube_recorder_free(rec);
	kube_client_free(kc);
	srv_stop(&s);
	loop_free(l);
}

/* Different keys are different Events; the cache forgets the least
 * recently used series first. */
static void test_event_keys_separate_and_lru_bounds(void **state)
{
	struct srv s = {.script = script_ok};
	struct kube_recorder *rec;
	struct kube_client *kc;
	struct loop *l;
	uint64_t creates, patches;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	srv_start(&s, l);
	kc = srv_client(l, tmpdir, s.port, "token: t");
	assert_int_equal(kube_recorder_new(kc, "test", NULL, 0, &rec), 0);
	assert_int_equal(kube_event_keyed(rec, &pod, "Warning", "R", "k-old", "x"), 0);
	wait_replies(l, &s, 1);
	assert_int_equal(kube_event_keyed(rec, &pod, "Warning", "R", "k-hot", "x"), 0);
	wait_replies(l, &s, 2);
	/* Fill the cache; k-hot stays recently used, k-old does not. */
	for (int i = 0; i < KUBE__EVENT_SERIES_MAX - 1; i++) {
		char key[32];

		snprintf(key, sizeof(key), "k%d", i);
		assert_int_equal(kube_event_keyed(rec, &pod, "Warning", "R", "k-hot", "x"), 0);
		assert_int_equal(kube_event_keyed(rec, &pod, "Warning", "R", key, "x"), 0);
		wait_replies(l, &s, 4 + 2 * i);
	}
	kube_recorder_counts(rec, &creates, &patches);
	assert_int_equal(creates, 1 + KUBE__EVENT_SERIES_MAX);
	/* k-hot is still known: a PATCH. k-old was evicted: a new Event. */
	assert_int_equal(kube_event_keyed(rec, &pod, "Warning", "R", "k-hot", "x"), 0);
	assert_int_equal(kube_event_keyed(rec, &pod, "Warning", "R", "k-old", "x"), 0);
	wait_replies(l, &s, 2 * KUBE__EVENT_SERIES_MAX + 2);
	kube_recorder_counts(rec, &creates, &patches);
	assert_int_equal(creates, 2 + KUBE__EVENT_SERIES_MAX);
	kube_recorder_free(rec);
	kube_client_free(kc);
	srv_stop(&s);
	loop_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_event_keyed_folds_messages_with_timings),
	        cmocka_unit_test(test_event_keyed_series_outlives_long_gaps),
	        cmocka_unit_test(test_event_keys_separate_and_lru_bounds),
	};
	int rc;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/kube-test-event-XXXXXX");
	if (!mkdtemp(tmpdir))
		return 1;
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd))
			rc = rc ? rc : 1;
	}
	return rc;
}
