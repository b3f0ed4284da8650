/* The controller's state machine for one policy, driven by a virtual clock
 * with fake captures and deliveries: table tests for the defects seen in
 * the field, then a seeded random model that checks the invariants of
 * DESIGN §7 after every step. PPOP_MODEL_SEED / PPOP_MODEL_STEPS replay. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "reconcile/internal.h"

#define T0 1772323200000LL /* 2026-03-01T00:00:00Z */

static struct rec_pod *pod_make(const char *name, const char *uid, const char *ip, const char *app,
                                int enabled, const char *port)
{
	char buf[2048], ann[256] = "";
	struct rec_pod *pod = NULL;
	struct json_object *o;

	snprintf(ann, sizeof(ann), "\"profefe.com/enable\":\"%s\"%s%s%s",
	         enabled ? "true" : "false", port ? ",\"profefe.com/port\":\"" : "",
	         port ? port : "", port ? "\"" : "");
	snprintf(
	        buf, sizeof(buf),
	        "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"ns\",\"uid\":\"%s\","
	        "\"labels\":{\"app\":\"%s\"},\"annotations\":{%s}},"
	        "\"spec\":{\"nodeName\":\"n\",\"containers\":[{\"name\":\"c\",\"image\":\"i:1\"}]},"
	        "\"status\":{\"phase\":\"Running\",\"podIP\":\"%s\",\"conditions\":"
	        "[{\"type\":\"Ready\",\"status\":\"True\"}]}}",
	        name, uid, app, ann, ip);
	o = json_tokener_parse(buf);
	if (!o)
		fail_msg("bad pod JSON %s", buf);
	assert_int_equal(rec_pod_from_json(o, &pod), 0);
	json_object_put(o);
	return pod;
}

static struct rec_policy *policy_make(const char *schedule, const char *app, const char *profiles,
                                      int suspend)
{
	char buf[2048];
	struct rec_errs errs = {0};
	struct rec_policy *p = NULL;
	struct json_object *o;

	snprintf(buf, sizeof(buf),
	         "{\"metadata\":{\"name\":\"pol\",\"namespace\":\"ns\",\"uid\":\"pu\","
	         "\"generation\":1},\"spec\":{\"schedule\":\"%s\",\"suspend\":%s,"
	         "\"selector\":{\"matchLabels\":{\"app\":\"%s\"}},\"profiles\":[%s]}}",
	         schedule, suspend ? "true" : "false", app, profiles);
	o = json_tokener_parse(buf);
	if (!o)
		fail_msg("bad policy JSON %s", buf);
	assert_int_equal(rec_policy_parse(o, NULL, NULL, &p, &errs), 0);
	json_object_put(o);
	if (!p->valid)
		fail_msg("policy %s invalid", buf);
	return p;
}

static size_t acts_of(const struct rec_acts *a, enum rec_act_type t)
{
	size_t i, n = 0;

	for (i = 0; i < a->n; i++)
		n += a->v[i].type == t;
	return n;
}

static struct rec_ctl_job *nth_start(const struct rec_acts *a, size_t k)
{
	size_t i;

	for (i = 0; i < a->n; i++)
		if (a->v[i].type == REC_ACT_START && k-- == 0)
			return a->v[i].job;
	fail_msg("no START #%zu", k);
	return NULL;
}

/* lastRound stayed 0/0/0 when captures ended after their round, and
 * counted each capture twice: a round's tally must hold exactly its own
 * results, whenever they arrive. */
static void test_ctl_round_tally_is_its_own(void **state)
{
	struct rec_policy *p = policy_make("@every 1s", "web", "{\"type\":\"heap\"}", 0);
	struct rec_pod *a = pod_make("a", "ua", "10.0.0.1", "web", 1, NULL);
	struct rec_pod *b = pod_make("b", "ub", "10.0.0.2", "web", 1, NULL);
	const struct rec_pod *pods[] = {a, b};
	struct rec_ctl c;
	struct rec_acts x = {0};
	struct rec_ctl_job *ja, *jb;
	int64_t r1;
	(void)state;

	rec_ctl_init(&c);
	rec_ctl_plan(&c, p->sched, T0 + 500, &x);
	rec_acts_clear(&x);
	r1 = rec_ctl_fire(&c, p, pods, 2, 10000, 1, T0 + 1003, &x);
	assert_int_equal(r1, T0 + 1000);
	assert_int_equal(acts_of(&x, REC_ACT_START), 2);
	ja = nth_start(&x, 0);
	jb = nth_start(&x, 1);
	/* The window is half the period: both start within 500 ms. */
	for (size_t i = 0; i < x.n; i++)
		if (x.v[i].type == REC_ACT_START)
			assert_true(x.v[i].at_ms < T0 + 1500);
	rec_acts_clear(&x);
	rec_ctl_captured(&c, ja, REC_OUT_CAPTURED, NULL, NULL, T0 + 1100, &x);
	rec_ctl_captured(&c, jb, REC_OUT_FAILED, "timeout", "timed out after 2001 ms", T0 + 1200,
	                 &x);
	assert_int_equal(acts_of(&x, REC_ACT_WRITE), 0); /* a's delivery is out */
	/* The next round starts before round 1's delivery is answered. */
	rec_acts_clear(&x);
	assert_int_equal(rec_ctl_fire(&c, p, pods, 2, 10000, 1, T0 + 2001, &x), T0 + 2000);
	rec_acts_clear(&x);
	rec_ctl_delivered(&c, r1, "ns/a", "heap", REC_OUT_STORED, NULL, NULL, "id-1", T0 + 2100,
	                  &x);
	assert_int_equal(acts_of(&x, REC_ACT_WRITE), 1);
	assert_int_equal(c.st.last_round.started_ms, r1);
	assert_int_equal(c.st.last_round.succeeded, 1);
	assert_int_equal(c.st.last_round.failed, 1);
	assert_int_equal(c.st.last_round.skipped, 0);
	assert_int_equal(c.st.captures_succeeded, 1);
	assert_int_equal(c.st.captures_failed, 1);
	assert_int_equal(c.st.last_capture_ms, T0 + 2100);
	rec_acts_clear(&x);
	rec_ctl_cancel_all(&c, &x);
	for (size_t i = 0; i < x.n; i++)
		if (x.v[i].type == REC_ACT_CANCEL)
			rec_ctl_captured(&c, x.v[i].job, REC_OUT_CANCELLED, NULL, NULL, T0 + 2200,
			                 &x);
	/* Cancelled captures are no failures. */
	assert_int_equal(c.st.captures_failed, 1);
	rec_acts_free(&x);
	rec_ctl_free(&c);
	rec_policy_free(p);
	free(a);
	free(b);
}

/* The controller alone keeps lastRound (rec_status_add_* leave it be):
 * each outcome counts once in its round's tally, whether it ends at the
 * capture (failed, empty) or at the delivery (stored). */
static void test_ctl_round_tally_counts_each_outcome_once(void **state)
{
	struct rec_policy *p = policy_make("@every 10s", "web", "{\"type\":\"heap\"}", 0);
	struct rec_pod *a = pod_make("a", "ua", "10.0.0.1", "web", 1, NULL);
	struct rec_pod *b = pod_make("b", "ub", "10.0.0.2", "web", 1, NULL);
	struct rec_pod *e = pod_make("e", "ue", "10.0.0.3", "web", 1, NULL);
	const struct rec_pod *pods[] = {a, b, e};
	struct rec_ctl c;
	struct rec_acts x = {0};
	struct rec_ctl_job *ja, *jb, *je;
	int64_t r;
	(void)state;

	rec_ctl_init(&c);
	rec_ctl_plan(&c, p->sched, T0, &x);
	rec_acts_clear(&x);
	r = rec_ctl_fire(&c, p, pods, 3, 100, 1, T0 + 10000, &x);
	assert_int_equal(acts_of(&x, REC_ACT_START), 3);
	ja = nth_start(&x, 0);
	jb = nth_start(&x, 1);
	je = nth_start(&x, 2);
	rec_acts_clear(&x);
	rec_ctl_captured(&c, jb, REC_OUT_FAILED, "timeout", "timed out", T0 + 10100, &x);
	rec_ctl_captured(&c, je, REC_OUT_EMPTY, NULL, NULL, T0 + 10200, &x);
	rec_ctl_captured(&c, ja, REC_OUT_CAPTURED, NULL, NULL, T0 + 10300, &x);
	/* Nothing of an unfinished round shows, its counts included. */
	assert_int_equal(c.st.last_round.started_ms, 0);
	assert_int_equal(c.st.last_round.failed + c.st.last_round.skipped, 0);
	rec_ctl_delivered(&c, r, "ns/a", "heap", REC_OUT_STORED, NULL, NULL, "id-1", T0 + 10400,
	                  &x);
	assert_int_equal(c.st.last_round.started_ms, r);
	assert_int_equal(c.st.last_round.succeeded, 1);
	assert_int_equal(c.st.last_round.failed, 1);
	assert_int_equal(c.st.last_round.skipped, 1);
	assert_int_equal(c.st.captures_succeeded, 1);
	assert_int_equal(c.st.captures_failed, 1);
	assert_int_equal(c.st.captures_skipped, 1);
	rec_acts_free(&x);
	rec_ctl_free(&c);
	rec_policy_free(p);
	free(a);
	free(b);
	free(e);
}

/* Deliveries lag (profefe down): the round is written after the grace
 * period as it stands, and late answers update it. */
static void test_ctl_grace_writes_a_lagging_round(void **state)
{
	struct rec_policy *p = policy_make("@every 10s", "web", "{\"type\":\"heap\"}", 0);
	struct rec_pod *a = pod_make("a", "ua", "10.0.0.1", "web", 1, NULL);
	const struct rec_pod *pods[] = {a};
	struct rec_ctl c;
	struct rec_acts x = {0};
	int64_t r;
	size_t i;
	(void)state;

	rec_ctl_init(&c);
	rec_ctl_plan(&c, p->sched, T0, &x);
	rec_acts_clear(&x);
	r = rec_ctl_fire(&c, p, pods, 1, 100, 1, T0 + 10000, &x);
	rec_ctl_captured(&c, nth_start(&x, 0), REC_OUT_CAPTURED, NULL, NULL, T0 + 10050, &x);
	assert_int_equal(acts_of(&x, REC_ACT_GRACE), 1);
	for (i = 0; i < x.n; i++)
		if (x.v[i].type == REC_ACT_GRACE)
			assert_int_equal(x.v[i].at_ms, T0 + 15050);
	rec_acts_clear(&x);
	rec_ctl_grace(&c, T0 + 15050, &x);
	assert_int_equal(acts_of(&x, REC_ACT_WRITE), 1);
	assert_int_equal(c.st.last_round.started_ms, r);
	assert_int_equal(c.st.last_round.succeeded, 0);
	rec_acts_clear(&x);
	rec_ctl_delivered(&c, r, "ns/a", "heap", REC_OUT_STORED, NULL, NULL, "id", T0 + 16000, &x);
	assert_int_equal(c.st.last_round.succeeded, 1);
	assert_int_equal(acts_of(&x, REC_ACT_WRITE), 1);
	rec_acts_free(&x);
	rec_ctl_free(&c);
	rec_policy_free(p);
	free(a);
}

/* A capture queued before the pod opted out, was deleted or changed its
 * IP must not run: it is cancelled, or refused when it would start. */
static void test_ctl_pod_leaving_cancels_its_captures(void **state)
{
	struct rec_policy *p =
	        policy_make("@every 1s", "web", "{\"type\":\"heap\"},{\"type\":\"goroutine\"}", 0);
	struct rec_pod *a = pod_make("a", "ua", "10.0.0.1", "web", 1, NULL);
	struct rec_pod *off = pod_make("a", "ua", "10.0.0.1", "web", 0, NULL);
	struct rec_pod *moved = pod_make("a", "ua", "10.0.0.9", "web", 1, NULL);
	struct rec_pod *other = pod_make("a", "u2", "10.0.0.1", "web", 1, NULL);
	const struct rec_pod *pods[] = {a};
	struct rec_ctl c;
	struct rec_acts x = {0};
	struct rec_ctl_job *j;
	(void)state;

	rec_ctl_init(&c);
	rec_ctl_plan(&c, p->sched, T0, &x);
	rec_acts_clear(&x);
	rec_ctl_fire(&c, p, pods, 1, 0, 1, T0 + 1000, &x);
	j = nth_start(&x, 0);
	assert_true(rec_ctl_may_start(p, j, a));
	assert_false(rec_ctl_may_start(p, j, off));
	assert_false(rec_ctl_may_start(p, j, moved));
	assert_false(rec_ctl_may_start(p, j, other)); /* IP reused by another pod */
	assert_false(rec_ctl_may_start(p, j, NULL));
	rec_acts_clear(&x);
	rec_ctl_pod_changed(&c, p, a, a, &x); /* unchanged: nothing */
	assert_int_equal(x.n, 0);
	rec_ctl_pod_changed(&c, p, a, off, &x);
	assert_int_equal(acts_of(&x, REC_ACT_CANCEL), 2);
	rec_ctl_pod_changed(&c, p, a, NULL, &x); /* asked once only */
	assert_int_equal(acts_of(&x, REC_ACT_CANCEL), 2);
	rec_acts_free(&x);
	rec_ctl_cancel_all(&c, &x);
	assert_int_equal(x.n, 0); /* already cancelling */
	rec_acts_free(&x);
	rec_ctl_free(&c);
	rec_policy_free(p);
	free(a);
	free(off);
	free(moved);
	free(other);
}

/* A capture still running when the next round comes is not stacked: it
 * is skipped as busy with one RoundOverlap Event. A bad port annotation is
 * one failure of the pod, with its Event. */
static void test_ctl_busy_and_invalid_targets(void **state)
{
	struct rec_policy *p = policy_make("@every 1s", "web", "{\"type\":\"heap\"}", 0);
	struct rec_pod *a = pod_make("a", "ua", "10.0.0.1", "web", 1, NULL);
	struct rec_pod *bad = pod_make("bad", "ub", "10.0.0.2", "web", 1, "http");
	const struct rec_pod *pods[] = {a, bad};
	struct rec_ctl c;
	struct rec_acts x = {0};
	size_t i, busy = 0;
	(void)state;

	rec_ctl_init(&c);
	rec_ctl_plan(&c, p->sched, T0, &x);
	rec_acts_clear(&x);
	rec_ctl_fire(&c, p, pods, 2, 0, 1, T0 + 1000, &x);
	assert_int_equal(acts_of(&x, REC_ACT_START), 1);
	assert_int_equal(acts_of(&x, REC_ACT_EVENT), 1); /* InvalidTarget */
	assert_int_equal(c.st.captures_failed, 1);
	assert_int_equal(c.targets, 2);
	rec_acts_clear(&x);
	rec_ctl_fire(&c, p, pods, 2, 0, 1, T0 + 2000, &x);
	assert_int_equal(acts_of(&x, REC_ACT_START), 0);
	for (i = 0; i < x.n; i++)
		if (x.v[i].type == REC_ACT_COUNT && strcmp(x.v[i].reason, "busy") == 0)
			busy++;
	assert_int_equal(busy, 1);
	assert_int_equal(acts_of(&x, REC_ACT_EVENT), 2); /* InvalidTarget, RoundOverlap */
	rec_acts_free(&x);
	rec_ctl_free(&c);
	rec_policy_free(p);
	free(a);
	free(bad);
}

/* ------------------------------------------------------------------ */
/* The model                                                           */

#define MPODS 6

struct mjob { /* a START the model has seen and not yet answered */
	struct rec_ctl_job *j;
	int64_t at;
	int running;
	int cancel;
};

struct mdel { /* a captured profile whose delivery is not answered */
	int64_t round;
	char pod[64], prof[32];
};

struct model {
	uint64_t rng, seed;
	int step;
	int64_t now, fire_at, grace_at, last_round;
	struct rec_ctl c;
	struct rec_policy *p;
	struct rec_pod *pods[MPODS];
	int uidgen;
	struct mjob jobs[512];
	size_t njobs;
	struct mdel dels[512];
	size_t ndels;
	int leading;
	int64_t stored, failed, skipped; /* every outcome reported */
	int64_t prev_ok, prev_failed, prev_skipped;
	struct rec_acts x;
};

static uint32_t rnd(struct model *m, uint32_t n)
{
	m->rng ^= m->rng << 13;
	m->rng ^= m->rng >> 7;
	m->rng ^= m->rng << 17;
	return (uint32_t)(m->rng % n);
}

#define MFAIL(m, ...)                                                                              \
	do {                                                                                       \
		char why_[512];                                                                    \
		snprintf(why_, sizeof(why_), __VA_ARGS__);                                         \
		fail_msg("seed %llu step %d: %s", (unsigned long long)(m)->seed, (m)->step, why_); \
	} while (0)

static struct mjob *mjob_find(struct model *m, const struct rec_ctl_job *j)
{
	for (size_t i = 0; i < m->njobs; i++)
		if (m->jobs[i].j == j)
			return &m->jobs[i];
	return NULL;
}

static void mjob_drop(struct model *m, struct mjob *mj)
{
	*mj = m->jobs[--m->njobs];
}

/* Carries out the actions of the last step, as operator/ would. */
static void apply(struct model *m)
{
	for (size_t i = 0; i < m->x.n; i++) {
		struct rec_act *a = &m->x.v[i];
		struct mjob *mj;
		switch (a->type) {
		case REC_ACT_FIRE:
			m->fire_at = a->at_ms;
			break;
		case REC_ACT_GRACE:
			m->grace_at = a->at_ms;
			break;
		case REC_ACT_START:
			if (mjob_find(m, a->job))
				MFAIL(m, "job started twice");
			if (m->njobs == sizeof(m->jobs) / sizeof(m->jobs[0]))
				MFAIL(m, "jobs unbounded: %zu", m->njobs);
			m->jobs[m->njobs++] = (struct mjob){.j = a->job, .at = a->at_ms};
			break;
		case REC_ACT_CANCEL:
			if (!(mj = mjob_find(m, a->job)))
				MFAIL(m, "cancel of a job that is not live");
			mj->cancel = 1;
			break;
		default:
			break;
		}
	}
	rec_acts_clear(&m->x);
}

static const struct rec_pod *mpod_named(struct model *m, const char *ns, const char *name)
{
	for (int i = 0; i < MPODS; i++)
		if (m->pods[i] && strcmp(m->pods[i]->ns, ns) == 0 &&
		    strcmp(m->pods[i]->name, name) == 0)
			return m->pods[i];
	return NULL;
}

static void check(struct model *m)
{
	const struct rec_status *st = &m->c.st;

	if (st->captures_succeeded < m->prev_ok || st->captures_failed < m->prev_failed ||
	    st->captures_skipped < m->prev_skipped)
		MFAIL(m, "a counter went backwards");
	m->prev_ok = st->captures_succeeded;
	m->prev_failed = st->captures_failed;
	m->prev_skipped = st->captures_skipped;
	if (st->captures_succeeded != m->stored || st->captures_failed != m->failed ||
	    st->captures_skipped != m->skipped)
		MFAIL(m, "status %lld/%lld/%lld, results %lld/%lld/%lld",
		      (long long)st->captures_succeeded, (long long)st->captures_failed,
		      (long long)st->captures_skipped, (long long)m->stored, (long long)m->failed,
		      (long long)m->skipped);
	if (m->c.njobs != m->njobs)
		MFAIL(m, "%zu jobs live, %zu started and not answered", m->c.njobs, m->njobs);
	if (m->c.njobs > MPODS * PPOP_PT__KNOWN)
		MFAIL(m, "%zu jobs for %d pods", m->c.njobs, MPODS);
	/* No round waits unwritten: one whose captures all ended is settled,
	 * or has the grace timer coming, or was written as it stood. */
	for (int i = 0; i < REC_CTL_ROUNDS; i++) {
		const struct rec_ctl_round *r = &m->c.rounds[i];
		if (r->ms > 0 && r->jobs == 0 && r->deliveries == 0)
			MFAIL(m, "round %lld ended but was not settled", (long long)r->ms);
		if (r->ms > 0 && r->jobs == 0 && !m->grace_at && r->ms > m->c.published_ms)
			MFAIL(m, "round %lld waits on deliveries with no grace timer",
			      (long long)r->ms);
	}
	if (st->last_round.started_ms > m->last_round)
		MFAIL(m, "lastRound names a round that never ran");
	if (st->last_round.succeeded + st->last_round.failed + st->last_round.skipped >
	    (uint32_t)(MPODS * PPOP_PT__KNOWN))
		MFAIL(m, "lastRound counts more than a round can hold");
}

/* Counts what the model reports, as the status must. */
static void tally(struct model *m, enum rec_outcome out)
{
	m->stored += out == REC_OUT_STORED;
	m->failed += out == REC_OUT_FAILED;
	m->skipped += out == REC_OUT_EMPTY;
}

static void step_fire(struct model *m)
{
	const struct rec_pod *pods[MPODS];
	size_t n = 0;
	int64_t round;

	for (int i = 0; i < MPODS; i++)
		if (m->pods[i])
			pods[n++] = m->pods[i];
	round = rec_ctl_fire(&m->c, m->p, pods, n, 10000, m->leading, m->now, &m->x);
	/* Invalid targets fail at planning time. */
	for (size_t i = 0; i < m->x.n; i++)
		if (m->x.v[i].type == REC_ACT_COUNT &&
		    strcmp(m->x.v[i].reason, "invalid_target") == 0)
			m->failed++;
	if (round) {
		if (round > m->now)
			MFAIL(m, "round %lld started early at %lld", (long long)round,
			      (long long)m->now);
		if (round <= m->last_round)
			MFAIL(m, "round %lld ran again (last %lld)", (long long)round,
			      (long long)m->last_round);
		m->last_round = round;
	}
	apply(m);
}

static void step_job(struct model *m)
{
	struct mjob *mj = &m->jobs[rnd(m, (uint32_t)m->njobs)];
	struct rec_ctl_job *j = mj->j;
	enum rec_outcome out;

	if (mj->cancel) {
		mjob_drop(m, mj);
		rec_ctl_captured(&m->c, j, REC_OUT_CANCELLED, NULL, NULL, m->now, &m->x);
		apply(m);
		return;
	}
	if (!mj->running) {
		const struct rec_pod *now = mpod_named(m, j->ns, j->name);
		if (m->now < mj->at)
			m->now = mj->at;
		if (!rec_ctl_may_start(m->p, j, now)) {
			mjob_drop(m, mj);
			rec_ctl_captured(&m->c, j, REC_OUT_CANCELLED, "target_gone", NULL, m->now,
			                 &m->x);
			apply(m);
			return;
		}
		/* The invariant, checked independently of may_start. */
		if (!now || strcmp(now->uid, j->uid) != 0 || strcmp(now->pod_ip, j->ip) != 0 ||
		    !rec_pod_selected(m->p, now) || !rec_pod_capturable(now))
			MFAIL(m, "capture of %s started while not selected", j->pod);
		mj->running = 1;
		return;
	}
	switch (rnd(m, 4)) {
	case 0:
		out = REC_OUT_FAILED;
		break;
	case 1:
		out = REC_OUT_EMPTY;
		break;
	default:
		out = REC_OUT_CAPTURED;
		break;
	}
	if (out == REC_OUT_CAPTURED) {
		struct mdel *d = &m->dels[m->ndels++];
		d->round = j->round_ms;
		snprintf(d->pod, sizeof(d->pod), "%s", j->pod);
		snprintf(d->prof, sizeof(d->prof), "%s", ppop_ptype_name(j->type));
	}
	tally(m, out);
	mjob_drop(m, mj);
	rec_ctl_captured(&m->c, j, out, "timeout", "timed out after 2001 ms", m->now, &m->x);
	apply(m);
}

static void step_delivery(struct model *m)
{
	size_t k = rnd(m, (uint32_t)m->ndels);
	struct mdel d = m->dels[k];
	enum rec_outcome out = rnd(m, 5) ? REC_OUT_STORED : REC_OUT_FAILED;

	m->dels[k] = m->dels[--m->ndels];
	tally(m, out);
	rec_ctl_delivered(&m->c, d.round, d.pod, d.prof, out, "dropped", "spool full", "id", m->now,
	                  &m->x);
	apply(m);
}

static void step_pod(struct model *m)
{
	int i = (int)rnd(m, MPODS);
	struct rec_pod *old = m->pods[i], *now = NULL;
	char name[16], uid[32], ip[32];
	const char *app = rnd(m, 2) ? "a" : "b";

	snprintf(name, sizeof(name), "p%d", i);
	snprintf(ip, sizeof(ip), "10.0.0.%u", 1 + rnd(m, 8)); /* IPs get reused */
	switch (rnd(m, 5)) {
	case 0: /* deleted */
		break;
	case 1: /* a new pod under the name */
		snprintf(uid, sizeof(uid), "u%d", ++m->uidgen);
		now = pod_make(name, uid, ip, app, (int)rnd(m, 4) != 0, rnd(m, 8) ? NULL : "http");
		break;
	default: /* the same pod, relabelled, opted in or out, or moved */
		if (!old)
			return;
		now = pod_make(name, old->uid, rnd(m, 3) ? old->pod_ip : ip, app,
		               (int)rnd(m, 3) != 0, NULL);
		break;
	}
	rec_ctl_pod_changed(&m->c, m->p, old, now, &m->x);
	m->pods[i] = now;
	free(old);
	apply(m);
}

static const char *const mspecs[] = {"@every 1s", "@every 2s", "@every 5s", "* * * * *"};
static const char *const mprofs[] = {"{\"type\":\"heap\"}",
                                     "{\"type\":\"heap\"},{\"type\":\"goroutine\"}",
                                     "{\"type\":\"cpu\",\"seconds\":1},{\"type\":\"mutex\"}"};

static void step_edit(struct model *m)
{
	int si = (int)rnd(m, 4), pi = (int)rnd(m, 3);

	if (pi == 2 && si == 0)
		si = 1; /* a CPU profile must be shorter than the period */
	rec_policy_free(m->p);
	m->p = policy_make(mspecs[si], rnd(m, 2) ? "a" : "b", mprofs[pi], rnd(m, 6) == 0);
	rec_ctl_plan(&m->c, m->p->valid && !m->p->suspend ? m->p->sched : NULL, m->now, &m->x);
	apply(m);
}

/* The operator restarts: captures in flight are lost with the process,
 * the status survives in the API server, and spooled profiles are
 * answered to the new run (their rounds unknown to it). */
static void step_restart(struct model *m)
{
	char *body = rec_status_patch_body(&m->c.st);
	struct json_object *o = body ? json_tokener_parse(body) : NULL, *st = NULL;
	struct rec_acts x = {0};

	if (!o || !json_object_object_get_ex(o, "status", &st))
		MFAIL(m, "status does not round-trip: %s", body ? body : "(null)");
	rec_ctl_cancel_all(&m->c, &x);
	rec_acts_free(&x);
	rec_ctl_free(&m->c);
	rec_ctl_init(&m->c);
	assert_int_equal(rec_status_from_json(st, &m->c.st), 0);
	json_object_put(o);
	free(body);
	m->njobs = 0;
	m->last_round = m->last_round; /* rounds already run stay run */
	m->c.clock.last_ms = m->last_round;
	rec_ctl_plan(&m->c, m->p->valid && !m->p->suspend ? m->p->sched : NULL, m->now, &m->x);
	m->fire_at = 0;
	apply(m);
}

static void model_run(uint64_t seed, int steps)
{
	struct model m = {.rng = seed * 2654435761u + 7, .seed = seed, .now = T0, .leading = 1};

	rec_ctl_init(&m.c);
	m.p = policy_make("@every 1s", "a", mprofs[1], 0);
	rec_ctl_plan(&m.c, m.p->sched, m.now, &m.x);
	apply(&m);
	for (m.step = 0; m.step < steps; m.step++) {
		uint32_t r = rnd(&m, 100);
		if (r < 25) {
			/* The round timer fires: early by up to 50 ms, or late. */
			int64_t at = (m.fire_at ? m.fire_at : m.now + 1000) - 50 + rnd(&m, 600);
			if (at > m.now)
				m.now = at;
			step_fire(&m);
		} else if (r < 55 && m.njobs) {
			step_job(&m);
		} else if (r < 70 && m.ndels) {
			step_delivery(&m);
		} else if (r < 82) {
			step_pod(&m);
		} else if (r < 86) {
			step_edit(&m);
		} else if (r < 89 && m.grace_at) {
			if (m.now < m.grace_at)
				m.now = m.grace_at;
			m.grace_at = 0;
			rec_ctl_grace(&m.c, m.now, &m.x);
			apply(&m);
		} else if (r < 91) {
			/* Leadership lost (captures cancelled) or won back. */
			m.leading = !m.leading;
			if (!m.leading)
				rec_ctl_cancel_all(&m.c, &m.x);
			apply(&m);
		} else if (r < 92) {
			step_restart(&m);
		} else {
			m.now += rnd(&m, 500);
		}
		check(&m);
	}
	for (int i = 0; i < MPODS; i++)
		free(m.pods[i]);
	rec_ctl_free(&m.c);
	rec_policy_free(m.p);
	rec_acts_free(&m.x);
	if (m.last_round == 0)
		fail_msg("seed %llu: no round ran", (unsigned long long)seed);
}

static void test_ctl_model_random(void **state)
{
	const char *env = getenv("PPOP_MODEL_SEED");
	int steps = getenv("PPOP_MODEL_STEPS") ? atoi(getenv("PPOP_MODEL_STEPS")) : 10000;
	(void)state;

	if (env) {
		model_run(strtoull(env, NULL, 10), steps);
		return;
	}
	for (uint64_t seed = 1; seed <= 4; seed++)
		model_run(seed, steps);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_ctl_round_tally_is_its_own),
	        cmocka_unit_test(test_ctl_round_tally_counts_each_outcome_once),
	        cmocka_unit_test(test_ctl_grace_writes_a_lagging_round),
	        cmocka_unit_test(test_ctl_pod_leaving_cancels_its_captures),
	        cmocka_unit_test(test_ctl_busy_and_invalid_targets),
	        cmocka_unit_test(test_ctl_model_random),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
