/* kube/tests/test_lease.c: leader election against the scripted server
 * with slow answers. A lease is good for leaseDuration from when the write
 * was SENT (the server may have stored it any time after), and a leader
 * whose renewal has not succeeded within renewDeadline of the last good
 * write's send time stops leading, and a late success does not revive it.
 * Both are seen as a candidate sees them: `started` and `stopped`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/kube.h"
#include "kube/tests/srv.h"
#include "loop/loop.h"

static char tmpdir[64];

struct cand {
	struct loop *l;
	struct srv *s;
	int started, stopped;
	uint64_t started_ms, stopped_ms;
	int replied_at_stop; /* answers the server had written when it stopped */
};

static void on_started(void *arg)
{
	struct cand *c = arg;

	c->started++;
	c->started_ms = loop_now_ms(c->l);
}

static void on_stopped(void *arg)
{
	struct cand *c = arg;

	c->stopped++;
	c->stopped_ms = loop_now_ms(c->l);
	c->replied_at_stop = c->s->nreplied;
}

static const struct kube_leader_ops ops = {on_started, on_stopped};

/* Answers a write with the object written, as the API server does. */
static void echo(struct srv *s, int i, int status, char *resp, size_t n)
{
	srv_reply(resp, n, status, NULL, s->bodies[i]);
}

/* GET: absent. POST (create): answered after 1.5 s. Then nothing. */
static int script_slow_create(struct srv *s, int i, const char *m, const char *p, char *resp,
                              size_t n)
{
	(void)m;
	(void)p;
	if (i == 0) {
		srv_reply(resp, n, 404, NULL, "{\"kind\":\"Status\",\"code\":404}");
		return 1;
	}
	if (i == 1) {
		s->delay_ms = 1500;
		echo(s, i, 201, resp, n);
		return 1;
	}
	return 0;
}

/* The create is answered 1.5 s after it was sent, and no renew is ever
 * answered: the leader stops at the create's send time + renew deadline
 * (+ a retry tick), 1.5 s before the answer + renew deadline would be. */
static void test_lease_deadline_counts_from_the_send_time(void **state)
{
	struct kube_leader_opts o = {.ns = "ns",
	                             .name = "lock",
	                             .identity = "me",
	                             .lease_ms = 4000,
	                             .renew_deadline_ms = 3000,
	                             .retry_ms = 500};
	struct srv s = {.script = script_slow_create};
	struct kube_leader *le;
	struct kube_client *kc;
	struct cand c = {0};
	struct loop *l;
	uint64_t t_before;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	c.l = l;
	c.s = &s;
	srv_start(&s, l);
	kc = srv_client(l, tmpdir, s.port, "token: t");
	loop_update_time(l);
	t_before = loop_now_ms(l);
	assert_int_equal(kube_leader_start(kc, &o, &ops, &c, &le), 0);
	srv_run_until(l, &c.started, 5000);
	assert_int_equal(c.started, 1);
	assert_true(kube_leader_is_leader(le));
	assert_string_equal(s.reqs[1],
	                    "POST /apis/coordination.k8s.io/v1/namespaces/ns/leases|Bearer t");
	if (c.started_ms < t_before + 1500)
		fail_msg("started %llu ms after the create was sent, before its 1.5 s answer",
		         (unsigned long long)(c.started_ms - t_before));
	srv_run_until(l, &c.stopped, 5000);
	assert_int_equal(c.stopped, 1);
	assert_false(kube_leader_is_leader(le));
	if (c.stopped_ms < t_before + 3000 || c.stopped_ms > c.started_ms + 3000 - 1500 + 500 + 100)
		fail_msg("stopped %llu ms after the create was sent; want its send time + 3000 "
		         "(+ a 500 ms tick), %llu ms after the answer",
		         (unsigned long long)(c.stopped_ms - t_before),
		         (unsigned long long)(c.stopped_ms - c.started_ms));
	kube_leader_free(le);
	kube_client_free(kc);
	srv_stop(&s);
	loop_free(l);
}

/* GET: absent. POST: answered after 0.6 s. GET: ours. PUT (renew):
 * answered after 1.5 s, past the 1 s renew deadline. Then nothing. */
static int script_slow_renew(struct srv *s, int i, const char *m, const char *p, char *resp,
                             size_t n)
{
	(void)m;
	(void)p;
	switch (i) {
	case 0:
		srv_reply(resp, n, 404, NULL, "{\"kind\":\"Status\",\"code\":404}");
		return 1;
	case 1:
		s->delay_ms = 600;
		echo(s, 1, 201, resp, n);
		return 1;
	case 2:
		echo(s, 1, 200, resp, n);
		return 1;
	case 3:
		s->delay_ms = 1500;
		echo(s, 3, 200, resp, n);
		return 1;
	default:
		return 0;
	}
}

static void test_lease_slow_renew_stops_leading(void **state)
{
	struct kube_leader_opts o = {.ns = "ns",
	                             .name = "lock",
	                             .identity = "me",
	                             .lease_ms = 3000,
	                             .renew_deadline_ms = 1000,
	                             .retry_ms = 200};
	struct srv s = {.script = script_slow_renew};
	struct kube_leader *le;
	struct kube_client *kc;
	struct cand c = {0};
	struct loop *l;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	c.l = l;
	c.s = &s;
	srv_start(&s, l);
	kc = srv_client(l, tmpdir, s.port, "token: t");
	assert_int_equal(kube_leader_start(kc, &o, &ops, &c, &le), 0);
	/* Wait until the late renew answer has been handled: the candidate
	 * has sent its next request since. */
	SRV_RUN_WHILE_NOT(l, s.nreq >= 5, 30000);
	assert_true(s.nreq >= 5);
	assert_non_null(
	        strstr(s.reqs[3], "PUT /apis/coordination.k8s.io/v1/namespaces/ns/leases/lock|"));
	assert_int_equal(c.started, 1);
	assert_int_equal(c.stopped, 1);
	/* It stopped while the renew was still unanswered, within the renew
	 * deadline of the create's send time (0.6 s before it started
	 * leading) plus one retry tick, not 1 s after it started leading. */
	assert_int_equal(c.replied_at_stop, 3); /* GET, POST, GET; not the PUT */
	if (c.stopped_ms >= c.started_ms + 1000 - 600 + 200 + 100)
		fail_msg("stopped %llu ms after starting; the deadline ran from the answer",
		         (unsigned long long)(c.stopped_ms - c.started_ms));
	/* The renew's late success does not make it lead again. */
	assert_false(kube_leader_is_leader(le));
	kube_leader_free(le);
	kube_client_free(kc);
	srv_stop(&s);
	loop_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_lease_deadline_counts_from_the_send_time),
	        cmocka_unit_test(test_lease_slow_renew_stops_leading),
	};
	int rc;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/kube-test-lease-XXXXXX");
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
