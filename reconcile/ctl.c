/* reconcile/ctl.c: one policy's controller state machine (DESIGN §7).
 *
 * Rounds are named by their scheduled time (round.c decides when). A round
 * is tracked until every capture it started and every delivery of what it
 * captured has been answered; then its tally becomes status.lastRound and
 * the status is written: one write per round. Results of an earlier round
 * count in that round, never in the one running now. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconcile/internal.h"

/* Profefe slow or down: a round whose captures ended is written this long
 * after, with its deliveries as they stand; late answers follow later. */
#define GRACE_MS 5000

/* ------------------------------------------------------------------ */
/* Actions                                                             */

void rec_acts_clear(struct rec_acts *a)
{
	size_t i;

	for (i = 0; i < a->n; i++) {
		free(a->v[i].key);
		free(a->v[i].msg);
	}
	a->n = 0;
	a->oom = 0;
}

void rec_acts_free(struct rec_acts *a)
{
	rec_acts_clear(a);
	free(a->v);
	a->v = NULL;
	a->cap = 0;
}

static struct rec_act *act_add(struct rec_acts *a, enum rec_act_type type)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 16;
		struct rec_act *v = realloc(a->v, cap * sizeof(*v));
		if (!v) {
			a->oom = 1;
			return NULL;
		}
		a->v = v;
		a->cap = cap;
	}
	a->v[a->n] = (struct rec_act){.type = type};
	return &a->v[a->n++];
}

static void act_simple(struct rec_acts *a, enum rec_act_type type, int64_t at,
                       struct rec_ctl_job *j)
{
	struct rec_act *x = act_add(a, type);

	if (x) {
		x->at_ms = at;
		x->job = j;
	}
}

static void act_text(struct rec_acts *a, enum rec_act_type type, const char *reason,
                     const char *key, const char *msg)
{
	struct rec_act *x = act_add(a, type);

	if (!x)
		return;
	x->reason = reason;
	x->key = key ? strdup(key) : NULL;
	x->msg = msg ? strdup(msg) : NULL;
	if ((key && !x->key) || (msg && !x->msg))
		a->oom = 1;
}

/* ------------------------------------------------------------------ */
/* Jobs, by (pod, type)                                                */

static uint32_t job_hash(const char *pod, enum ppop_ptype t)
{
	return (uint32_t)ppop_fnv1a_str(ppop_fnv1a(PPOP_FNV1A_INIT, &t, sizeof(t)), pod);
}

static struct rec_ctl_job *job_live(const struct rec_ctl *c, const char *pod, enum ppop_ptype t)
{
	uint32_t h;
	struct rec_ctl_job *j;

	if (!c->ntab)
		return NULL;
	h = job_hash(pod, t);
	for (j = c->tab[h & (c->ntab - 1)]; j; j = j->hnext)
		if (j->h == h && j->type == t && strcmp(j->pod, pod) == 0)
			return j;
	return NULL;
}

/* Keeps the table at most one job per bucket on average. */
static int tab_grow(struct rec_ctl *c)
{
	size_t n = c->ntab ? c->ntab * 2 : 64, i;
	struct rec_ctl_job **tab, *j;

	if (c->njobs < c->ntab)
		return 0;
	tab = calloc(n, sizeof(*tab));
	if (!tab)
		return -ENOMEM;
	for (i = 0; i < c->ntab; i++)
		while ((j = c->tab[i])) {
			c->tab[i] = j->hnext;
			j->hnext = tab[j->h & (n - 1)];
			tab[j->h & (n - 1)] = j;
		}
	free(c->tab);
	c->tab = tab;
	c->ntab = n;
	return 0;
}

static void job_free(struct rec_ctl_job *j)
{
	free(j->pod);
	free(j->ns);
	free(j->name);
	free(j->uid);
	free(j->ip);
	free(j);
}

static struct rec_ctl_job *job_new(struct rec_ctl *c, int64_t round, const struct rec_pod *pod,
                                   enum ppop_ptype t)
{
	struct rec_ctl_job *j;

	if (tab_grow(c) != 0 || !(j = calloc(1, sizeof(*j))))
		return NULL;
	j->round_ms = round;
	j->type = t;
	j->ns = strdup(pod->ns);
	j->name = strdup(pod->name);
	j->uid = strdup(pod->uid);
	j->ip = strdup(pod->pod_ip ? pod->pod_ip : "");
	if (asprintf(&j->pod, "%s/%s", pod->ns, pod->name) < 0)
		j->pod = NULL;
	if (!j->ns || !j->name || !j->uid || !j->ip || !j->pod) {
		job_free(j);
		return NULL;
	}
	j->h = job_hash(j->pod, t);
	j->hnext = c->tab[j->h & (c->ntab - 1)];
	c->tab[j->h & (c->ntab - 1)] = j;
	j->next = c->jobs;
	if (c->jobs)
		c->jobs->prev = j;
	c->jobs = j;
	c->njobs++;
	return j;
}

static void job_unlink(struct rec_ctl *c, struct rec_ctl_job *j)
{
	struct rec_ctl_job **pp;

	for (pp = &c->tab[j->h & (c->ntab - 1)]; *pp; pp = &(*pp)->hnext)
		if (*pp == j) {
			*pp = j->hnext;
			break;
		}
	if (j->prev)
		j->prev->next = j->next;
	else
		c->jobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
	c->njobs--;
}

/* ------------------------------------------------------------------ */
/* Rounds                                                              */

static struct rec_ctl_round *round_find(struct rec_ctl *c, int64_t ms)
{
	int i;

	if (ms <= 0)
		return NULL;
	for (i = 0; i < REC_CTL_ROUNDS; i++)
		if (c->rounds[i].ms == ms)
			return &c->rounds[i];
	return NULL;
}

/* The oldest slot (a free one first): a round still waiting on answers
 * when REC_CTL_ROUNDS newer ones started is let go; its late answers then
 * count only in the cumulative counters. */
static struct rec_ctl_round *round_begin(struct rec_ctl *c, int64_t ms)
{
	struct rec_ctl_round *r = &c->rounds[0];
	int i;

	for (i = 1; i < REC_CTL_ROUNDS; i++)
		if (c->rounds[i].ms < r->ms)
			r = &c->rounds[i];
	memset(r, 0, sizeof(*r));
	r->ms = ms;
	return r;
}

/* Makes `r`'s tally status.lastRound, unless a later round shows already. */
static void round_publish(struct rec_ctl *c, const struct rec_ctl_round *r)
{
	if (r->ms < c->published_ms)
		return;
	c->published_ms = r->ms;
	c->st.last_round = r->tally;
	c->st.last_round.started_ms = r->ms;
	c->dirty = 1;
}

/* A capture or delivery of `r` was answered: a round with nothing left
 * out is published, written and let go; one whose captures ended but whose
 * deliveries lag is written after GRACE_MS. */
static void round_settle(struct rec_ctl *c, struct rec_ctl_round *r, int64_t now,
                         struct rec_acts *a)
{
	if (r->jobs > 0)
		return;
	if (r->deliveries == 0) {
		int i, lagging = 0;
		round_publish(c, r);
		memset(r, 0, sizeof(*r));
		act_simple(a, REC_ACT_WRITE, 0, NULL);
		/* No other round waits on deliveries: the grace timer is moot. */
		for (i = 0; i < REC_CTL_ROUNDS; i++)
			lagging |= c->rounds[i].ms > 0 && c->rounds[i].jobs == 0;
		if (c->grace && !lagging) {
			c->grace = 0;
			act_simple(a, REC_ACT_GRACE, 0, NULL);
		}
	} else if (!c->grace) {
		c->grace = 1;
		act_simple(a, REC_ACT_GRACE, now + GRACE_MS, NULL);
	}
}

/* Counts one outcome in the cumulative status and in its round's tally.
 * The tallies are this file's alone (rec_status_add_* leave lastRound be):
 * status.lastRound shows one whole round's tally, never a mix, and is
 * changed only by round_publish(). */
static void count(struct rec_ctl *c, struct rec_ctl_round *r, const char *pod, const char *prof,
                  enum rec_outcome out, const char *kind, const char *msg, const char *id,
                  int64_t now)
{
	switch (out) {
	case REC_OUT_STORED:
		rec_status_add_success(&c->st, now, pod, prof, id ? id : "");
		c->st.last_capture_ms = now;
		if (r)
			r->tally.succeeded++;
		break;
	case REC_OUT_EMPTY:
		rec_status_add_skipped(&c->st);
		if (r)
			r->tally.skipped++;
		break;
	case REC_OUT_FAILED:
		rec_status_add_failure_kind(&c->st, now, pod, prof, kind, msg ? msg : "");
		if (r)
			r->tally.failed++;
		break;
	default:
		return;
	}
	c->dirty = 1;
	if (r && r->ms == c->published_ms)
		round_publish(c, r);
}

/* A failed capture or delivery is a Warning Event on the policy, one
 * series per pod, profile type and error kind however often it repeats. */
static void failed_event(struct rec_acts *a, const char *pod, const char *prof, const char *kind,
                         const char *msg)
{
	char key[600], text[1024];

	snprintf(key, sizeof(key), "%s|%s|%s", pod, prof, kind ? kind : "");
	snprintf(text, sizeof(text), "pod %s, profile %s: %s", pod, prof, msg ? msg : "failed");
	act_text(a, REC_ACT_EVENT, "CaptureFailed", key, text);
}

/* ------------------------------------------------------------------ */
/* Steps                                                               */

void rec_ctl_init(struct rec_ctl *c)
{
	memset(c, 0, sizeof(*c));
	rec_status_init(&c->st);
}

void rec_ctl_free(struct rec_ctl *c)
{
	struct rec_ctl_job *j, *next;

	for (j = c->jobs; j; j = next) {
		next = j->next;
		job_free(j);
	}
	free(c->tab);
	rec_status_free(&c->st);
	memset(c, 0, sizeof(*c));
}

void rec_ctl_cancel_all(struct rec_ctl *c, struct rec_acts *a)
{
	struct rec_ctl_job *j;

	for (j = c->jobs; j; j = j->next)
		if (!j->cancelling) {
			j->cancelling = 1;
			act_simple(a, REC_ACT_CANCEL, 0, j);
		}
}

void rec_ctl_reset(struct rec_ctl *c, struct rec_acts *a)
{
	rec_ctl_cancel_all(c, a);
	memset(c->rounds, 0, sizeof(c->rounds));
	c->clock = (struct rec_clock){0};
	c->published_ms = 0;
	c->grace = 0;
	act_simple(a, REC_ACT_FIRE, 0, NULL);
}

void rec_ctl_plan(struct rec_ctl *c, const struct rec_schedule *s, int64_t now_ms,
                  struct rec_acts *a)
{
	c->st.next_schedule_ms = rec_clock_plan(&c->clock, s, now_ms);
	act_simple(a, REC_ACT_FIRE, c->clock.next_ms, NULL);
}

static const struct rec_schedule *active(const struct rec_policy *p)
{
	return p && p->valid && !p->suspend ? p->sched : NULL;
}

/* Plans one pod's captures for round `r`: one per profile type, unless
 * the same pod's capture of that type still runs (skipped as busy, as
 * CronJob's concurrencyPolicy Forbid, so an overloaded schedule cannot
 * pile up an unbounded queue). Returns the number skipped. */
static int plan_pod(struct rec_ctl *c, const struct rec_policy *p, const struct rec_pod *pod,
                    struct rec_ctl_round *r, uint32_t window, int64_t now, struct rec_acts *a)
{
	int64_t at = r->ms + rec_spread_offset_ms(pod->uid, window);
	char key[512], err[256];
	struct rec_target t;
	int busy = 0;
	size_t i;

	snprintf(key, sizeof(key), "%s/%s", pod->ns, pod->name);
	if (rec_target_resolve(p, pod, &t, err, sizeof(err)) != 0) {
		char text[1024];
		count(c, r, key, "all", REC_OUT_FAILED, "invalid_target", err, NULL, now);
		act_text(a, REC_ACT_COUNT, "invalid_target", key, "all");
		snprintf(text, sizeof(text), "pod %s: %s", key, err);
		act_text(a, REC_ACT_EVENT, "InvalidTarget", key, text);
		return 0;
	}
	for (i = 0; i < p->nprofiles; i++) {
		enum ppop_ptype type = p->profiles[i].type;
		struct rec_ctl_job *j;
		if (job_live(c, key, type)) {
			act_text(a, REC_ACT_COUNT, "busy", key, ppop_ptype_name(type));
			busy++;
			continue;
		}
		if (!(j = job_new(c, r->ms, pod, type))) {
			a->oom = 1;
			continue;
		}
		r->jobs++;
		act_simple(a, REC_ACT_START, at > now ? at : now, j);
	}
	return busy;
}

int64_t rec_ctl_fire(struct rec_ctl *c, const struct rec_policy *p,
                     const struct rec_pod *const *pods, size_t npods, uint32_t spread_ms,
                     int capture, int64_t now_ms, struct rec_acts *a)
{
	int64_t round = rec_clock_fire(&c->clock, active(p), now_ms), targets = 0;
	struct rec_ctl_round *r;
	uint32_t window;
	int busy = 0;
	size_t i;

	/* Early: re-armed for the same time; else for the next. */
	c->st.next_schedule_ms = c->clock.next_ms;
	act_simple(a, REC_ACT_FIRE, c->clock.next_ms, NULL);
	if (round == 0 || !capture)
		return round;
	/* The previous round still waits on deliveries: write it now, so
	 * every round gets its write. */
	if (c->grace)
		rec_ctl_grace(c, now_ms, a);
	r = round_begin(c, round);
	window = rec_round_window_ms(spread_ms, round, c->clock.next_ms);
	c->st.last_schedule_ms = round;
	c->dirty = 1;
	for (i = 0; i < npods; i++) {
		if (!rec_pod_selected(p, pods[i]) || !rec_pod_capturable(pods[i]))
			continue;
		targets++;
		busy += plan_pod(c, p, pods[i], r, window, now_ms, a);
	}
	c->targets = targets;
	if (busy > 0)
		act_text(a, REC_ACT_EVENT, "RoundOverlap", NULL,
		         "captures skipped because the previous round's captures of the same pods "
		         "are still running; lengthen spec.schedule or lower spec.timeoutSeconds");
	round_settle(c, r, now_ms, a); /* nothing to capture: still say the round happened */
	return round;
}

int rec_ctl_may_start(const struct rec_policy *p, const struct rec_ctl_job *j,
                      const struct rec_pod *pod)
{
	return p && pod && strcmp(pod->uid, j->uid) == 0 && pod->pod_ip &&
	       strcmp(pod->pod_ip, j->ip) == 0 && rec_pod_selected(p, pod) &&
	       rec_pod_capturable(pod);
}

void rec_ctl_captured(struct rec_ctl *c, struct rec_ctl_job *j, enum rec_outcome out,
                      const char *kind, const char *msg, int64_t now_ms, struct rec_acts *a)
{
	struct rec_ctl_round *r = round_find(c, j->round_ms);

	if (out == REC_OUT_CAPTURED) {
		if (r)
			r->deliveries++; /* before the job ends: the round is not over */
	} else {
		count(c, r, j->pod, ppop_ptype_name(j->type), out, kind, msg, NULL, now_ms);
		if (out == REC_OUT_FAILED)
			failed_event(a, j->pod, ppop_ptype_name(j->type), kind, msg);
	}
	job_unlink(c, j);
	job_free(j);
	if (r && r->jobs > 0) {
		r->jobs--;
		round_settle(c, r, now_ms, a);
	}
}

void rec_ctl_delivered(struct rec_ctl *c, int64_t round_ms, const char *pod, const char *profile,
                       enum rec_outcome out, const char *kind, const char *msg, const char *id,
                       int64_t now_ms, struct rec_acts *a)
{
	struct rec_ctl_round *r = round_find(c, round_ms);

	count(c, r, pod, profile, out, kind, msg, id, now_ms);
	if (out == REC_OUT_FAILED)
		failed_event(a, pod, profile, kind, msg);
	if (r && r->deliveries > 0) {
		r->deliveries--;
		round_settle(c, r, now_ms, a);
	}
}

void rec_ctl_grace(struct rec_ctl *c, int64_t now_ms, struct rec_acts *a)
{
	struct rec_ctl_round *best = NULL;
	int i;

	(void)now_ms;
	c->grace = 0;
	for (i = 0; i < REC_CTL_ROUNDS; i++) {
		struct rec_ctl_round *r = &c->rounds[i];
		if (r->ms > 0 && r->jobs == 0 && (!best || r->ms > best->ms))
			best = r;
	}
	if (best)
		round_publish(c, best);
	act_simple(a, REC_ACT_WRITE, 0, NULL);
}

/* True when `b` is still the pod `a` was, at the same address. */
static int same_target(const struct rec_pod *a, const struct rec_pod *b)
{
	return b && strcmp(a->uid, b->uid) == 0 && a->pod_ip && b->pod_ip &&
	       strcmp(a->pod_ip, b->pod_ip) == 0;
}

void rec_ctl_pod_changed(struct rec_ctl *c, const struct rec_policy *p, const struct rec_pod *old,
                         const struct rec_pod *now, struct rec_acts *a)
{
	char key[512];
	int t;

	if (!c->njobs || !p || !old || !rec_pod_selected(p, old))
		return;
	if (now && rec_pod_selected(p, now) && rec_pod_capturable(now) && same_target(old, now))
		return;
	snprintf(key, sizeof(key), "%s/%s", old->ns, old->name);
	for (t = 0; t < PPOP_PT__KNOWN; t++) {
		struct rec_ctl_job *j = job_live(c, key, (enum ppop_ptype)t);
		if (j && !j->cancelling && strcmp(j->uid, old->uid) == 0) {
			j->cancelling = 1;
			act_simple(a, REC_ACT_CANCEL, 0, j);
		}
	}
}
