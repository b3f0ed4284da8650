/* operator/controller.c: informers -> dirty queue -> reconcile -> rounds ->
 * captures -> delivery -> status. */
#include "operator/controller.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capture/capture.h"
#include "capture/profefe.h"
#include "capture/spool.h"
#include "kube/kube.h"
#include "loop/log.h"
#include "loop/loop.h"
#include "operator/metrics.h"
#include "reconcile/reconcile.h"

#define PPOL_GROUP    "profefe.com"
#define PPOL_VERSION  "v1alpha1"
#define PPOL_RESOURCE "profilingpolicies"
#define PPOL_KIND     "ProfilingPolicy"

struct job;

#define JOB_BUCKETS 64
/* Rounds tracked at once per policy: the one starting, and earlier ones
 * whose captures or deliveries are still out. Older ones are published
 * as they stand when a new round needs their slot. */
#define ROUNDS_KEPT 4

/* One round, named by its scheduled time, until its last capture and
 * delivery are answered. Its tally becomes status.lastRound then. */
struct round {
	int64_t ms;          /* scheduled time; 0: free slot */
	uint32_t jobs;       /* captures not yet ended */
	uint32_t deliveries; /* profiles handed to a sink, no answer yet */
	struct rec_round tally;
};

/* Everything the controller knows about one policy key. It outlives the
 * cached object while captures or a status write still refer to it. */
struct pstate {
	struct op_ctl *ctl;
	char *ns, *name, *key; /* key: "ns/name" */
	char *uid;
	struct rec_policy *pol; /* NULL when unparseable or deleted */
	struct rec_errs errs;
	int64_t generation; /* last generation planned */
	struct rec_status st;
	int st_loaded;
	int gone; /* deleted from the API server */

	struct loop_timer fire;    /* next round */
	struct loop_timer requeue; /* reconcile backoff */
	struct loop_backoff backoff;
	int dirty;
	struct pstate *next_dirty;

	/* Round bookkeeping. */
	struct rec_clock clock;
	struct round rounds[ROUNDS_KEPT];
	int64_t published_ms; /* the round status.lastRound shows */
	struct job *jobs;     /* every live job of this policy */
	int64_t targets;
	struct job *live[JOB_BUCKETS]; /* the jobs above, by pod and type */
	struct loop_timer grace;       /* writes status if deliveries lag a round */

	int status_dirty, status_inflight;
	char *warned_spec; /* the invalid-spec message already sent as an Event */

	struct pstate *next;
};

/* One capture of one profile type from one pod, then its delivery. */
struct job {
	struct pstate *ps; /* NULL once the policy is gone */
	struct job *next, *prev;
	struct job *hnext; /* in ps->live */
	uint32_t h;
	struct loop_timer start; /* the spread offset */
	uint64_t fetch_id;
	int fetching;
	int64_t round_ms;
	char *pod;                       /* "ns/name" */
	char *prof;                      /* "cpu", "allocs", ... */
	char *pod_ns, *pod_uid, *pod_ip; /* the pod as selected, checked at start */
	char *url, *target_key, *service, *labels, *instance;
	enum cap_ptype type;
	uint32_t seconds, timeout_ms;
	int64_t created_ms;
};

/* One profefe sink with its spool; one per distinct URL. */
struct sink {
	struct op_ctl *ctl;
	char *url;
	struct cap_profefe *client;
	struct cap_pusher *pusher;
	struct sink *next;
};

struct op_ctl {
	struct loop *l;
	struct kube_client *kc;
	struct op_metrics *m;
	struct op_ctl_opts o;
	char *ns_copy, *profefe_copy, *spool_copy, *lease_ns_copy, *lease_name_copy, *id_copy;

	struct kube_informer *pols, *pods;
	struct kube_recorder *rec;
	struct kube_leader *leader;
	int leading;

	struct cap_fetcher *fetcher;
	struct sink *sinks;

	struct pstate *states;
	struct pstate *dirty_head, *dirty_tail;
	int planned;         /* every policy was reconciled once after both caches synced */
	struct early *early; /* delivery results held until then, newest first */
	size_t nearly;
	struct loop_timer drain;

	int shutting_down; /* 1 draining, 2 cancelled and flushing, 3 done waiting */
	struct loop_timer shutdown_deadline;
	uint64_t shutdown_end_ms; /* loop_now_ms() at the deadline */
	void (*shutdown_done)(void *arg);
	void *shutdown_arg;

	struct op_family *f_captures, *f_duration, *f_bytes, *f_inflight, *f_spool_bytes,
	        *f_spool_files, *f_spool_drops, *f_watch_restarts, *f_status_writes, *f_leader,
	        *f_policies, *f_targets, *f_pods, *f_deliveries, *f_events;
};

struct early;
static void reconcile(struct pstate *ps);
static void early_apply(struct op_ctl *c);
static void cancel_pod_jobs(struct pstate *ps, const struct rec_pod *pod);
static void status_flush(struct pstate *ps);
static void maybe_finish_shutdown(struct op_ctl *c);
struct sink;
static void sink_flush(struct sink *s);

/* ------------------------------------------------------------------ */
/* Policy states and the dirty queue                                   */

static struct pstate *state_find(struct op_ctl *c, const char *ns, const char *name)
{
	struct pstate *ps;

	for (ps = c->states; ps; ps = ps->next)
		if (strcmp(ps->ns, ns) == 0 && strcmp(ps->name, name) == 0)
			return ps;
	return NULL;
}

static void on_fire(struct loop_timer *t);
static void on_requeue(struct loop_timer *t);
static void on_grace(struct loop_timer *t);
static void job_free(struct job *j);

static struct pstate *state_get(struct op_ctl *c, const char *ns, const char *name)
{
	struct pstate *ps = state_find(c, ns, name);

	if (ps)
		return ps;
	ps = calloc(1, sizeof(*ps));
	if (!ps)
		return NULL;
	ps->ctl = c;
	ps->ns = strdup(ns);
	ps->name = strdup(name);
	if (asprintf(&ps->key, "%s/%s", ns, name) < 0)
		ps->key = NULL;
	if (!ps->ns || !ps->name || !ps->key) {
		free(ps->ns);
		free(ps->name);
		free(ps->key);
		free(ps);
		return NULL;
	}
	rec_status_init(&ps->st);
	ps->generation = -1;
	loop_timer_init(&ps->fire, on_fire, ps);
	loop_timer_init(&ps->requeue, on_requeue, ps);
	loop_timer_init(&ps->grace, on_grace, ps);
	ps->backoff = (struct loop_backoff){.base_ms = 500, .max_ms = 60000};
	ps->next = c->states;
	c->states = ps;
	return ps;
}

static void state_free(struct pstate *ps)
{
	struct op_ctl *c = ps->ctl;
	struct pstate **pp;

	for (pp = &c->states; *pp; pp = &(*pp)->next)
		if (*pp == ps) {
			*pp = ps->next;
			break;
		}
	loop_timer_stop(c->l, &ps->fire);
	loop_timer_stop(c->l, &ps->requeue);
	loop_timer_stop(c->l, &ps->grace);
	rec_policy_free(ps->pol);
	rec_status_free(&ps->st);
	free(ps->warned_spec);
	free(ps->uid);
	free(ps->ns);
	free(ps->name);
	free(ps->key);
	free(ps);
}

static void on_drain(struct loop_timer *t)
{
	struct op_ctl *c = t->arg;

	/* Plans made from half-filled caches would be wrong (no targets yet),
	 * so nothing is reconciled before both caches have synced; the synced
	 * callbacks restart the drain. */
	if (!op_ctl_ready(c))
		return;
	/* Reconciling may mark more keys dirty; they join this same pass. */
	while (c->dirty_head) {
		struct pstate *ps = c->dirty_head;
		c->dirty_head = ps->next_dirty;
		if (!c->dirty_head)
			c->dirty_tail = NULL;
		ps->next_dirty = NULL;
		ps->dirty = 0;
		reconcile(ps);
	}
	if (!c->planned) {
		c->planned = 1;
		early_apply(c);
	}
}

/* Marks a policy dirty; the queue deduplicates, and one zero-delay timer
 * drains it after the current batch of watch events. */
static void mark_dirty(struct pstate *ps)
{
	struct op_ctl *c = ps->ctl;

	if (ps->dirty)
		return;
	ps->dirty = 1;
	if (c->dirty_tail)
		c->dirty_tail->next_dirty = ps;
	else
		c->dirty_head = ps;
	c->dirty_tail = ps;
	if (!loop_timer_active(&c->drain))
		loop_timer_start(c->l, &c->drain, 0);
}

static void mark_all_dirty(struct op_ctl *c)
{
	struct pstate *ps;

	for (ps = c->states; ps; ps = ps->next)
		mark_dirty(ps);
	if (c->dirty_head && !loop_timer_active(&c->drain))
		loop_timer_start(c->l, &c->drain, 0);
}

static void on_requeue(struct loop_timer *t)
{
	mark_dirty(t->arg);
}

/* ------------------------------------------------------------------ */
/* Informer callbacks: update caches, mark dirty, nothing else.       */

static void pol_add(void *arg, const char *ns, const char *name, void *value)
{
	struct pstate *ps = state_get(arg, ns, name);

	(void)value;
	if (ps)
		mark_dirty(ps);
	else
		log_error("out of memory tracking a policy", "policy", name, NULL);
}

static void pol_update(void *arg, const char *ns, const char *name, void *old, void *value)
{
	(void)old;
	pol_add(arg, ns, name, value);
}

static void pol_delete(void *arg, const char *ns, const char *name, void *value)
{
	struct pstate *ps = state_find(arg, ns, name);

	(void)value;
	if (ps)
		mark_dirty(ps);
}

static void pol_synced(void *arg)
{
	log_info("policy cache synced", NULL);
	mark_all_dirty(arg);
}

static int pod_transform(void *arg, struct json_object *obj, void **value)
{
	struct rec_pod *p;

	(void)arg;
	if (rec_pod_from_json(obj, &p) != 0)
		return -1;
	*value = p;
	return 0;
}

static void pod_free(void *arg, void *value)
{
	(void)arg;
	free(value);
}

/* True when `b` is still the pod `a` was, at the same address. */
static int pod_same_target(const struct rec_pod *a, const struct rec_pod *b)
{
	return b && strcmp(a->uid, b->uid) == 0 && a->pod_ip && b->pod_ip &&
	       strcmp(a->pod_ip, b->pod_ip) == 0;
}

/* A pod changed from `a` to `b` (either NULL): every policy that selects
 * either form is dirty, and a policy's captures of a pod that was deleted,
 * changed its IP or left the selection are cancelled at once. */
static void pod_touch(struct op_ctl *c, const struct rec_pod *a, const struct rec_pod *b)
{
	struct pstate *ps;

	for (ps = c->states; ps; ps = ps->next) {
		int sel_a, sel_b;
		if (!ps->pol)
			continue;
		sel_a = a && rec_pod_selected(ps->pol, a);
		sel_b = b && rec_pod_selected(ps->pol, b);
		if (sel_a && (!sel_b || !rec_pod_capturable(b) || !pod_same_target(a, b)))
			cancel_pod_jobs(ps, a);
		if (sel_a || sel_b)
			mark_dirty(ps);
	}
}

static void pod_add(void *arg, const char *ns, const char *name, void *value)
{
	(void)ns;
	(void)name;
	pod_touch(arg, NULL, value);
}

static void pod_update(void *arg, const char *ns, const char *name, void *old, void *value)
{
	(void)ns;
	(void)name;
	pod_touch(arg, old, value);
}

static void pod_delete(void *arg, const char *ns, const char *name, void *value)
{
	(void)ns;
	(void)name;
	pod_touch(arg, value, NULL);
}

static void pod_synced(void *arg)
{
	log_info("pod cache synced", NULL);
	/* Give the list's parse trees back to the system: glibc keeps freed
	 * heap otherwise, and RSS would stay at the start-up peak. */
	malloc_trim(0);
	mark_all_dirty(arg);
}

/* ------------------------------------------------------------------ */
/* Events                                                              */

/* Records an Event on the policy. Events with the same `key` (e.g.
 * "pod|type|error kind") fold into one series with a count, whatever their
 * message says (timings, byte counts) and however far apart they come. */
static void policy_event(struct pstate *ps, const char *type, const char *reason, const char *key,
                         const char *msg)
{
	struct op_ctl *c = ps->ctl;
	struct kube_objref ref = {.api_version = PPOL_GROUP "/" PPOL_VERSION,
	                          .kind = PPOL_KIND,
	                          .ns = ps->ns,
	                          .name = ps->name,
	                          .uid = ps->uid};
	const char *v[] = {type, reason};

	if (!c->rec || (c->o.leader_elect && !c->leading))
		return;
	if (kube_event_keyed(c->rec, &ref, type, reason, key, msg) == 0)
		op_metric_add(c->f_events, v, 1);
}

/* ------------------------------------------------------------------ */
/* Reconcile                                                           */

static int zone_lookup(void *arg, const char *name, struct rec_zone **out)
{
	struct op_ctl *c = arg;

	return rec_zone_load(c->o.zoneinfo_dir, name, out);
}

struct count_ctx {
	struct pstate *ps;
	int64_t n;
};

static void count_pod(void *arg, const char *ns, const char *name, void *value)
{
	struct count_ctx *cc = arg;
	const struct rec_pod *pod = value;

	(void)ns;
	(void)name;
	if (rec_pod_selected(cc->ps->pol, pod) && rec_pod_capturable(pod))
		cc->n++;
}

static int64_t count_targets(struct pstate *ps)
{
	struct count_ctx cc = {.ps = ps};

	if (!ps->pol)
		return 0;
	kube_informer_foreach(ps->ctl->pods, count_pod, &cc);
	return cc.n;
}

/* Cancels everything a deleted policy still has in flight. Profiles that
 * were already captured are still delivered: they are the user's data. */
static void cancel_jobs(struct pstate *ps)
{
	struct job *j, *next;
	int i;

	for (j = ps->jobs; j; j = next) {
		next = j->next;
		j->ps = NULL;
		j->next = j->prev = NULL;
		loop_timer_stop(ps->ctl->l, &j->start);
		if (j->fetching)
			cap_fetch_cancel(ps->ctl->fetcher, j->fetch_id); /* frees j */
		else
			job_free(j); /* waiting on its spread timer */
	}
	ps->jobs = NULL;
	memset(ps->live, 0, sizeof(ps->live));
	/* Their rounds wait only on deliveries now, if on anything. */
	for (i = 0; i < ROUNDS_KEPT; i++) {
		ps->rounds[i].jobs = 0;
		if (ps->rounds[i].deliveries == 0)
			memset(&ps->rounds[i], 0, sizeof(ps->rounds[i]));
	}
}

static void forget_policy(struct pstate *ps)
{
	struct op_ctl *c = ps->ctl;

	if (ps->gone)
		return; /* already forgotten; waiting for its last status write */
	log_info("policy deleted: captures stopped", "policy", ps->key, NULL);
	loop_timer_stop(c->l, &ps->fire);
	loop_timer_stop(c->l, &ps->grace);
	rec_policy_free(ps->pol);
	ps->pol = NULL;
	ps->generation = -1;
	cancel_jobs(ps);
	op_metric_forget(c->f_captures, 0, ps->key);
	op_metric_forget(c->f_targets, 0, ps->key);
	if (!ps->status_inflight)
		state_free(ps);
	else
		ps->gone = 1; /* freed when the write returns */
}

/* The schedule rounds follow now: NULL when the policy may not run. */
static const struct rec_schedule *active_sched(const struct pstate *ps)
{
	if (!ps->pol || !ps->pol->valid || ps->pol->suspend)
		return NULL;
	return ps->pol->sched;
}

/* Arms the round timer for the clock's next scheduled time. The delay is
 * taken against a fresh wall-clock reading; if the timer still fires a
 * little early, on_fire() re-arms it (the clock decides, not the timer). */
static void arm_fire(struct pstate *ps)
{
	struct op_ctl *c = ps->ctl;
	int64_t delay;

	loop_timer_stop(c->l, &ps->fire);
	ps->st.next_schedule_ms = ps->clock.next_ms;
	if (ps->clock.next_ms <= 0)
		return;
	delay = ps->clock.next_ms - loop_wall_ms();
	if (loop_timer_start(c->l, &ps->fire, delay > 0 ? (uint64_t)delay : 0) != 0)
		loop_timer_start(c->l, &ps->requeue, loop_backoff_next(&ps->backoff));
}

/* (Re)plans the next round from the schedule, now: edits apply at once. */
static void plan_next(struct pstate *ps, int64_t now_ms)
{
	rec_clock_plan(&ps->clock, active_sched(ps), now_ms);
	arm_fire(ps);
}

/* Recomputes the derived status fields and conditions from the plan. */
static void status_recompute(struct pstate *ps, int64_t now)
{
	rec_status_compute(&ps->st, ps->pol, &ps->errs, ps->targets,
	                   ps->st.next_schedule_ms ? ps->st.next_schedule_ms : -1, now);
}

static void reconcile(struct pstate *ps)
{
	struct op_ctl *c = ps->ctl;
	struct json_object *obj = kube_informer_get(c->pols, ps->ns, ps->name);
	struct json_object *meta, *v;
	int64_t now = loop_wall_ms(), gen = 0, targets;
	int spec_changed;

	if (!obj) {
		forget_policy(ps);
		return;
	}
	/* Deleted and created again while the old one's last status write
	 * was in flight: the state is live again, not to be freed. */
	ps->gone = 0;
	if (json_object_object_get_ex(obj, "metadata", &meta)) {
		if (json_object_object_get_ex(meta, "generation", &v))
			gen = json_object_get_int64(v);
		if (json_object_object_get_ex(meta, "uid", &v) &&
		    (!ps->uid || strcmp(ps->uid, json_object_get_string(v)) != 0)) {
			/* A new object under an old name starts from scratch:
			 * the old one's captures and rounds are not its own. */
			free(ps->uid);
			ps->uid = strdup(json_object_get_string(v));
			ps->generation = -1;
			ps->st_loaded = 0;
			cancel_jobs(ps);
			memset(ps->rounds, 0, sizeof(ps->rounds));
			ps->clock = (struct rec_clock){0};
			ps->published_ms = 0;
		}
	}
	/* A replica that does not lead follows the status the leader writes,
	 * so when it takes over it continues from there: counters never go
	 * backwards and lastErrors/recentProfiles never revert. */
	if (c->o.leader_elect && !c->leading)
		ps->st_loaded = 0;
	if (!ps->st_loaded) {
		struct json_object *st = NULL;
		rec_status_free(&ps->st);
		rec_status_init(&ps->st);
		json_object_object_get_ex(obj, "status", &st);
		rec_status_from_json(st, &ps->st);
		ps->st.next_schedule_ms = ps->clock.next_ms;
		ps->st_loaded = 1;
	}
	spec_changed = gen != ps->generation;
	if (spec_changed) {
		rec_policy_free(ps->pol);
		ps->pol = NULL;
		memset(&ps->errs, 0, sizeof(ps->errs));
		if (rec_policy_parse(obj, zone_lookup, c, &ps->pol, &ps->errs) == -ENOMEM) {
			loop_timer_start(c->l, &ps->requeue, loop_backoff_next(&ps->backoff));
			return;
		}
		ps->generation = gen;
		plan_next(ps, now);
		if (ps->pol && !ps->pol->valid) {
			char msg[1024];
			rec_errs_format(&ps->errs, -1, msg, sizeof(msg));
			log_warn("invalid policy", "policy", ps->key, "error", msg, NULL);
			if (!ps->warned_spec || strcmp(ps->warned_spec, msg) != 0) {
				policy_event(
				        ps, "Warning",
				        rec_errs_count(&ps->errs, REC_ERR_SCHEDULE) ||
				                        rec_errs_count(&ps->errs, REC_ERR_TIMEZONE)
				                ? "InvalidSchedule"
				                : "InvalidSpec",
				        NULL, msg);
				free(ps->warned_spec);
				ps->warned_spec = strdup(msg);
			}
		} else {
			log_info("policy planned", "policy", ps->key, "schedule",
			         ps->pol ? ps->pol->schedule : "", NULL);
		}
	}
	targets = count_targets(ps);
	if (targets != ps->targets) {
		char n[32];
		const char *lv[] = {ps->key};
		snprintf(n, sizeof(n), "%" PRId64, targets);
		log_info("targets changed", "policy", ps->key, "targets", n, NULL);
		op_metric_set(c->f_targets, lv, (double)targets);
	}
	ps->targets = targets;
	if (!loop_timer_active(&ps->fire) && ps->clock.next_ms > 0)
		arm_fire(ps); /* arming failed before */
	status_recompute(ps, now);
	if (spec_changed)
		ps->status_dirty = 1;
	status_flush(ps);
}

/* ------------------------------------------------------------------ */
/* Status writes                                                       */

static void status_written(void *arg, const struct kube_response *r)
{
	struct pstate *ps = arg;
	struct op_ctl *c = ps->ctl;
	const char *ok[] = {"success"}, *bad[] = {"error"};

	ps->status_inflight = 0;
	if (ps->gone) {
		state_free(ps);
		maybe_finish_shutdown(c);
		return;
	}
	if (r->status >= 200 && r->status < 300) {
		op_metric_add(c->f_status_writes, ok, 1);
		loop_backoff_reset(&ps->backoff);
	} else if (r->status == 404) {
		/* Deleted meanwhile: the delete event will clean up. */
		op_metric_add(c->f_status_writes, bad, 1);
	} else {
		char code[16];
		snprintf(code, sizeof(code), "%ld", r->status);
		op_metric_add(c->f_status_writes, bad, 1);
		log_warn("status write failed; retrying", "policy", ps->key, "status", code,
		         "error", r->message, NULL);
		ps->status_dirty = 1;
		loop_timer_start(c->l, &ps->requeue, loop_backoff_next(&ps->backoff));
	}
	if (ps->status_dirty && !loop_timer_active(&ps->requeue))
		status_flush(ps);
	maybe_finish_shutdown(c);
}

/* Writes the status if it changed and no write is in flight. Only the
 * leader writes, so two replicas never fight over the same fields. */
static void status_flush(struct pstate *ps)
{
	struct op_ctl *c = ps->ctl;
	struct kube_req_opts ro = {.content_type = "application/merge-patch+json"};
	char path[512];
	char *body;

	if (!ps->status_dirty || ps->status_inflight || (c->o.leader_elect && !c->leading))
		return;
	if (kube_path(path, sizeof(path), PPOL_GROUP, PPOL_VERSION, ps->ns, PPOL_RESOURCE, ps->name,
	              "status") != 0)
		return;
	body = rec_status_patch_body(&ps->st);
	if (!body)
		return;
	if (kube_request_raw(c->kc, "PATCH", path, body, strlen(body), &ro, status_written, ps,
	                     NULL) == 0) {
		ps->status_inflight = 1;
		ps->status_dirty = 0;
	}
	free(body);
}

/* ------------------------------------------------------------------ */
/* Rounds and captures                                                 */

static uint32_t job_hash(const char *pod, const char *prof)
{
	uint32_t h = 2166136261u;

	for (; *pod; pod++)
		h = (h ^ (unsigned char)*pod) * 16777619u;
	for (; *prof; prof++)
		h = (h ^ (unsigned char)*prof) * 16777619u;
	return h;
}

/* The live job capturing `prof` from `pod` for this policy, if any. */
static struct job *job_live(const struct pstate *ps, const char *pod, const char *prof)
{
	uint32_t h = job_hash(pod, prof);
	struct job *j;

	for (j = ps->live[h % JOB_BUCKETS]; j; j = j->hnext)
		if (j->h == h && strcmp(j->pod, pod) == 0 && strcmp(j->prof, prof) == 0)
			return j;
	return NULL;
}

static void job_unlink(struct job *j)
{
	struct pstate *ps = j->ps;
	struct job **pp;

	if (!ps)
		return;
	for (pp = &ps->live[j->h % JOB_BUCKETS]; *pp; pp = &(*pp)->hnext)
		if (*pp == j) {
			*pp = j->hnext;
			break;
		}
	if (j->prev)
		j->prev->next = j->next;
	else
		ps->jobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
	j->next = j->prev = NULL;
}

static void job_free(struct job *j)
{
	free(j->pod);
	free(j->prof);
	free(j->url);
	free(j->target_key);
	free(j->service);
	free(j->labels);
	free(j->instance);
	free(j->pod_ns);
	free(j->pod_uid);
	free(j->pod_ip);
	free(j);
}

/* ------------------------------------------------------------------ */
/* Rounds: tallies, publication, and the one status write per round    */

/* The tracked round named `ms`, or NULL once it has been let go. */
static struct round *round_find(struct pstate *ps, int64_t ms)
{
	int i;

	if (ms <= 0)
		return NULL;
	for (i = 0; i < ROUNDS_KEPT; i++)
		if (ps->rounds[i].ms == ms)
			return &ps->rounds[i];
	return NULL;
}

/* A slot for the round starting at `ms`. When every slot still waits on
 * captures or deliveries, the oldest round is let go: its late answers
 * then count only in the cumulative counters. */
static struct round *round_begin(struct pstate *ps, int64_t ms)
{
	struct round *r = NULL;
	int i;

	for (i = 0; i < ROUNDS_KEPT; i++)
		if (!r || ps->rounds[i].ms < r->ms)
			r = &ps->rounds[i];
	memset(r, 0, sizeof(*r));
	r->ms = ms;
	return r;
}

/* Makes `r`'s tally status.lastRound, unless a later round shows already. */
static void round_publish(struct pstate *ps, const struct round *r)
{
	if (r->ms < ps->published_ms)
		return;
	ps->published_ms = r->ms;
	ps->st.last_round = r->tally;
	ps->st.last_round.started_ms = r->ms;
	ps->status_dirty = 1;
}

static const char *policy_url(const struct pstate *ps)
{
	return ps->pol && ps->pol->profefe_url ? ps->pol->profefe_url : ps->ctl->o.profefe_url;
}

static struct sink *sink_find(struct op_ctl *c, const char *url)
{
	struct sink *s;

	for (s = c->sinks; url && s; s = s->next)
		if (strcmp(s->url, url) == 0)
			return s;
	return NULL;
}

/* Computes status and writes it. Delivery figures and the Degraded
 * condition come from the policy's own sink only. */
static void round_write(struct pstate *ps)
{
	struct op_ctl *c = ps->ctl;
	struct sink *s = sink_find(c, policy_url(ps));
	int64_t now = loop_wall_ms();

	loop_timer_stop(c->l, &ps->grace);
	status_recompute(ps, now);
	/* Delivery trouble is degradation, not failure: profiles wait in the
	 * spool and nothing is lost until it overflows. */
	ps->st.spool_bytes = 0;
	ps->st.spool_dropped = 0;
	if (s) {
		struct cap_pusher_stats st;
		cap_pusher_stats(s->pusher, &st);
		ps->st.spool_bytes = (int64_t)st.spool_bytes;
		ps->st.spool_dropped = (int64_t)st.drops;
		if (st.profefe_down) {
			char msg[256];
			snprintf(msg, sizeof(msg),
			         "profefe at %s is unreachable; %llu profiles (%llu bytes) are "
			         "spooled and will be delivered when it returns",
			         s->url, (unsigned long long)st.spool_files,
			         (unsigned long long)st.spool_bytes);
			rec_status_set_condition(&ps->st, "Degraded", "True", "ProfefeUnavailable",
			                         msg, ps->generation, now);
		}
	}
	ps->status_dirty = 1;
	status_flush(ps);
}

/* Deliveries lag (profefe slow or down): publish the newest round whose
 * captures have all ended, as it stands, and write. Its late answers
 * update it in a later write. */
static void grace_write(struct pstate *ps)
{
	struct round *best = NULL;
	int i;

	for (i = 0; i < ROUNDS_KEPT; i++) {
		struct round *r = &ps->rounds[i];
		if (r->ms > 0 && r->jobs == 0 && (!best || r->ms > best->ms))
			best = r;
	}
	if (best)
		round_publish(ps, best);
	round_write(ps);
}

static void on_grace(struct loop_timer *t)
{
	grace_write(t->arg);
}

/* A capture or delivery of round `r` ended. A round with nothing left
 * out is published and written at once and lets go of its slot; one whose
 * captures ended but whose deliveries lag is written after a grace period. */
static void round_settle(struct pstate *ps, struct round *r)
{
	if (r->jobs > 0)
		return;
	if (r->deliveries == 0) {
		round_publish(ps, r);
		memset(r, 0, sizeof(*r));
		round_write(ps);
	} else if (!loop_timer_active(&ps->grace)) {
		loop_timer_start(ps->ctl->l, &ps->grace, 5000);
	}
}

/* Ends a job: off its policy's lists, counted down in its round, freed.
 * Safe for a job whose policy is gone (j->ps NULL). */
static void job_end(struct job *j)
{
	struct pstate *ps = j->ps;
	struct round *r = ps ? round_find(ps, j->round_ms) : NULL;

	job_unlink(j);
	job_free(j);
	if (r && r->jobs > 0) {
		r->jobs--;
		round_settle(ps, r);
	}
}

/* Counts one result: in the cumulative status (counters and lists), in
 * the metrics, and in the tally of its round (0 or a round let go: the
 * cumulative counters only). */
static void record(struct pstate *ps, int64_t round_ms, const char *pod, const char *prof,
                   enum cap_result res, const char *msg, const char *id)
{
	struct op_ctl *c = ps->ctl;
	const char *lv[3] = {ps->key, prof, cap_result_name(res)};
	struct round *r = round_find(ps, round_ms);
	struct rec_round shown = ps->st.last_round;
	int64_t now = loop_wall_ms();

	op_metric_add(c->f_captures, lv, 1);
	if (res == CAP_RES_OK) {
		rec_status_add_success(&ps->st, now, pod, prof, id ? id : "");
		ps->st.last_capture_ms = now;
		if (r)
			r->tally.succeeded++;
		log_debug("profile stored", "policy", ps->key, "pod", pod, "type", prof, "id", id,
		          NULL);
	} else if (res == CAP_RES_EMPTY) {
		rec_status_add_skipped(&ps->st);
		if (r)
			r->tally.skipped++;
		log_debug("empty profile skipped", "policy", ps->key, "pod", pod, "type", prof,
		          NULL);
	} else if (res != CAP_RES_CANCELLED) {
		char text[1024];
		char key[600];
		rec_status_add_failure_kind(&ps->st, now, pod, prof, cap_result_name(res), msg);
		if (r)
			r->tally.failed++;
		log_warn("capture failed", "policy", ps->key, "pod", pod, "type", prof, "result",
		         cap_result_name(res), "error", msg, NULL);
		snprintf(text, sizeof(text), "pod %s, profile %s: %s", pod, prof, msg);
		snprintf(key, sizeof(key), "%s|%s|%s", pod, prof, cap_result_name(res));
		policy_event(ps, "Warning", "CaptureFailed", key, text);
	}
	/* status.lastRound shows one whole round's tally, never a mix. */
	ps->st.last_round = shown;
	if (r && r->ms == ps->published_ms)
		round_publish(ps, r);
}

/* The origin we give each profile, so its delivery result (possibly after
 * a restart, from the spool) finds its policy and round:
 * "ns/policy|ns/pod|type|uid|round-ms". Kubernetes names never contain '|'. */
static char *origin_make(const struct pstate *ps, const struct job *j)
{
	char *o;

	if (asprintf(&o, "%s|%s|%s|%s|%" PRId64, ps->key, j->pod, j->prof, ps->uid ? ps->uid : "",
	             j->round_ms) < 0)
		return NULL;
	return o;
}

/* One delivery result that arrived before the caches synced. */
struct early {
	char *origin, *message, *id;
	enum cap_result res;
	struct early *next;
};

#define EARLY_MAX 100000

static void push_result_apply(struct op_ctl *c, const char *origin, enum cap_result res,
                              const char *message, const char *id)
{
	char buf[1024], *f[5], *save = NULL;
	struct pstate *ps;
	struct round *r;
	int64_t round_ms;
	char *slash;
	int i;

	if (!origin || strlen(origin) >= sizeof(buf))
		return;
	strcpy(buf, origin);
	for (i = 0; i < 5; i++)
		f[i] = strtok_r(i ? NULL : buf, "|", &save);
	if (!f[0] || !f[1] || !f[2] || !(slash = strchr(f[0], '/')))
		return;
	*slash = '\0';
	ps = state_find(c, f[0], slash + 1);
	if (!ps || ps->gone || !ps->pol || (f[3] && ps->uid && strcmp(f[3], ps->uid) != 0)) {
		log_info("profile delivered for a policy that is gone", "origin", origin, "result",
		         cap_result_name(res), NULL);
		return;
	}
	round_ms = f[4] ? strtoll(f[4], NULL, 10) : 0;
	record(ps, round_ms, f[1], f[2], res, message, id);
	r = round_find(ps, round_ms);
	if (r && r->deliveries > 0) {
		r->deliveries--;
		round_settle(ps, r);
	} else {
		ps->status_dirty = 1; /* late news: goes out with the next write */
	}
}

static void on_push_result(void *arg, const struct cap_push_meta *m, enum cap_result res,
                           long http_status, const char *message, const char *id)
{
	struct sink *s = arg;
	struct op_ctl *c = s->ctl;
	const char *rv[] = {cap_result_name(res)};
	struct early *e;

	(void)http_status;
	op_metric_add(c->f_deliveries, rv, 1);
	if (c->planned) {
		push_result_apply(c, m->origin, res, message, id);
		return;
	}
	/* Spooled profiles of an earlier run are answered before the
	 * policies are known: hold the answers until they are planned. */
	e = c->nearly < EARLY_MAX ? calloc(1, sizeof(*e)) : NULL;
	if (e && m->origin && (e->origin = strdup(m->origin)) &&
	    (!message || (e->message = strdup(message))) && (!id || (e->id = strdup(id)))) {
		e->res = res;
		e->next = c->early;
		c->early = e;
		c->nearly++;
		return;
	}
	if (e) {
		free(e->origin);
		free(e->message);
		free(e);
	}
	log_warn("delivery result not credited to its policy: too many before start-up", "origin",
	         m->origin, NULL);
}

/* Credits the delivery results held since start-up, oldest first. */
static void early_apply(struct op_ctl *c)
{
	struct early *e, *rev = NULL, *next;

	for (e = c->early; e; e = next) {
		next = e->next;
		e->next = rev;
		rev = e;
	}
	c->early = NULL;
	c->nearly = 0;
	for (e = rev; e; e = next) {
		next = e->next;
		push_result_apply(c, e->origin, e->res, e->message, e->id);
		free(e->origin);
		free(e->message);
		free(e->id);
		free(e);
	}
}

/* The sink for `url`: one profefe client and pusher (with its own spool
 * directory under --spool-dir) per distinct URL. */
static struct sink *sink_for(struct op_ctl *c, const char *url)
{
	/* Replays may use as many slots as direct pushes: when the spool
	 * filled only because profefe was slower than the pods for a while,
	 * it should drain at full speed, not 4 at a time. Replays still start
	 * in spool order; profefe orders profiles by their own timestamps. */
	struct cap_pusher_opts po = {
	        .spool_max_bytes = c->o.spool_max_bytes, .max_inflight = 32, .replay_inflight = 32};
	char *dir = NULL;
	struct sink *s;
	size_t i, n;
	int rc = 0;

	if ((s = sink_find(c, url)))
		return s;
	s = calloc(1, sizeof(*s));
	if (!s || !(s->url = strdup(url)))
		goto err;
	s->ctl = c;
	if (c->o.spool_dir) {
		/* The URL made safe as one path component. */
		if (asprintf(&dir, "%s/%s", c->o.spool_dir, url) < 0) {
			dir = NULL;
			goto err;
		}
		for (i = strlen(c->o.spool_dir) + 1, n = strlen(dir); i < n; i++)
			if (!isalnum((unsigned char)dir[i]) && dir[i] != '.' && dir[i] != '-')
				dir[i] = '_';
		po.spool_dir = dir;
	}
	rc = cap_profefe_new(c->l, url, NULL, &s->client);
	if (rc == 0)
		rc = cap_pusher_new(c->l, s->client, &po, on_push_result, s, &s->pusher);
	if (rc != 0)
		goto err;
	free(dir);
	s->next = c->sinks;
	c->sinks = s;
	return s;
err:
	log_error("cannot set up delivery to profefe", "url", url, "spool", dir ? dir : "(memory)",
	          "error", strerror(rc ? -rc : ENOMEM), NULL);
	if (s) {
		cap_profefe_free(s->client);
		free(s->url);
	}
	free(s);
	free(dir);
	return NULL;
}

/* Hands a captured profile to its sink. The result comes back through
 * on_push_result(); the job's round counts the delivery until then.
 * Takes `body`. */
static void deliver(struct job *j, char *body, size_t len)
{
	struct pstate *ps = j->ps;
	struct op_ctl *c = ps->ctl;
	const char *url = policy_url(ps);
	struct cap_push_meta meta = {.service = j->service,
	                             .type = cap_ptype_profefe(j->type),
	                             .labels = j->labels,
	                             .instance_id = j->instance,
	                             .created_ms = j->created_ms};
	struct round *r = round_find(ps, j->round_ms);
	struct sink *s;
	char *origin;

	if (!url) {
		free(body);
		record(ps, j->round_ms, j->pod, j->prof, CAP_RES_INTERNAL,
		       "no profefe URL: set spec.profefeURL or --profefe-url", NULL);
		return;
	}
	s = sink_for(c, url);
	origin = origin_make(ps, j);
	if (!s || !origin) {
		free(body);
		free(origin);
		record(ps, j->round_ms, j->pod, j->prof, CAP_RES_INTERNAL, "cannot set up delivery",
		       NULL);
		return;
	}
	meta.origin = origin;
	/* Counted before the submit: a result may be reported from inside it. */
	if (r)
		r->deliveries++;
	if (cap_pusher_submit_take(s->pusher, &meta, body, len) != 0) {
		if (r)
			r->deliveries--;
		record(ps, j->round_ms, j->pod, j->prof, CAP_RES_INTERNAL,
		       "cannot queue the profile for delivery (spool not writable?)", NULL);
	} else if (c->shutting_down) {
		sink_flush(s); /* shutdown waits for this push too */
	}
	free(origin);
}

static void on_fetched(void *arg, struct cap_fetch_result *r)
{
	struct job *j = arg;
	struct pstate *ps = j->ps;
	const char *tv[] = {j->prof};
	char *body;
	size_t len;

	j->fetching = 0;
	if (ps) {
		op_metric_observe(ps->ctl->f_duration, tv, (double)r->elapsed_ms / 1000.0);
		op_metric_add(ps->ctl->f_bytes, tv, (double)r->body_len);
	}
	if (!ps || r->res == CAP_RES_CANCELLED) {
		job_end(j);
		return;
	}
	if (r->res == CAP_RES_OK) {
		body = cap_fetch_take_body(r, &len);
		deliver(j, body, len);
	} else {
		record(ps, j->round_ms, j->pod, j->prof, r->res, r->message, NULL);
	}
	job_end(j);
}

/* True when the job's pod is, now, the pod it was planned for (same uid
 * and IP) and the policy still selects it: a capture must never reach a
 * pod that left, or another pod that took over its IP. */
static int job_target_current(const struct job *j)
{
	const struct pstate *ps = j->ps;
	const struct rec_pod *pod = kube_informer_get(ps->ctl->pods, j->pod_ns, j->instance);

	return pod && ps->pol && strcmp(pod->uid, j->pod_uid) == 0 && pod->pod_ip &&
	       strcmp(pod->pod_ip, j->pod_ip) == 0 && rec_pod_selected(ps->pol, pod) &&
	       rec_pod_capturable(pod);
}

static void on_job_start(struct loop_timer *t)
{
	struct job *j = t->arg;
	struct pstate *ps = j->ps;
	struct cap_request req = {.url = j->url,
	                          .target_key = j->target_key,
	                          .type = j->type,
	                          .seconds = j->seconds,
	                          .timeout_ms = j->timeout_ms,
	                          .owner = ps};

	if (!job_target_current(j)) {
		const char *lv[] = {ps->key, j->prof, "target_gone"};
		op_metric_add(ps->ctl->f_captures, lv, 1);
		log_debug("capture not started: the pod left the selection", "policy", ps->key,
		          "pod", j->pod, "type", j->prof, NULL);
		job_end(j);
		return;
	}
	j->created_ms = loop_wall_ms();
	j->fetching = 1;
	if (cap_fetch_start(ps->ctl->fetcher, &req, on_fetched, j, &j->fetch_id) != 0) {
		j->fetching = 0;
		record(ps, j->round_ms, j->pod, j->prof, CAP_RES_INTERNAL,
		       "cannot start the capture", NULL);
		job_end(j);
	}
}

/* Ends a job now: its spread timer stopped, its capture cancelled. */
static void job_cancel(struct job *j)
{
	loop_timer_stop(j->ps->ctl->l, &j->start);
	if (j->fetching)
		cap_fetch_cancel(j->ps->ctl->fetcher, j->fetch_id); /* ends j */
	else
		job_end(j);
}

/* Cancels a policy's captures of `pod`, waiting or running: the pod was
 * deleted, changed its IP or left the selection. */
static void cancel_pod_jobs(struct pstate *ps, const struct rec_pod *pod)
{
	char key[512];
	int t;

	if (!ps->jobs ||
	    snprintf(key, sizeof(key), "%s/%s", pod->ns, pod->name) >= (int)sizeof(key))
		return;
	for (t = 0; t < REC_PROF__COUNT; t++) {
		struct job *j = job_live(ps, key, rec_profile_name((enum rec_profile_type)t));
		if (j && strcmp(j->pod_uid, pod->uid) == 0)
			job_cancel(j);
	}
}

static int job_add(struct pstate *ps, struct round *r, const struct rec_pod *pod,
                   const struct rec_target *t, const struct rec_profile *prof, uint32_t delay_ms)
{
	struct op_ctl *c = ps->ctl;
	struct job *j = calloc(1, sizeof(*j));
	struct rec_kvs kvs = {0};
	char url[REC_URL_MAX], key[128];
	enum cap_ptype type;

	if (!j)
		return -ENOMEM;
	if (rec_target_url(t, prof, url, sizeof(url)) != 0 ||
	    cap_target_key(t->host, (unsigned)t->port, key, sizeof(key)) != 0 ||
	    cap_ptype_parse(rec_profile_name(prof->type), &type) != 0 ||
	    rec_target_labels(ps->pol, pod, prof, &kvs) != 0)
		goto err;
	j->labels = rec_labels_encode(kvs.v, kvs.n);
	rec_kvs_free(&kvs);
	j->url = strdup(url);
	j->target_key = strdup(key);
	j->service = strdup(t->service);
	j->prof = strdup(rec_profile_name(prof->type));
	j->instance = strdup(pod->name);
	j->pod_ns = strdup(pod->ns);
	j->pod_uid = strdup(pod->uid);
	j->pod_ip = strdup(pod->pod_ip ? pod->pod_ip : "");
	if (asprintf(&j->pod, "%s/%s", pod->ns, pod->name) < 0)
		j->pod = NULL;
	if (!j->labels || !j->url || !j->target_key || !j->service || !j->prof || !j->instance ||
	    !j->pod || !j->pod_ns || !j->pod_uid || !j->pod_ip)
		goto err;
	j->type = type;
	j->seconds = prof->type == REC_PROF_CPU ? (uint32_t)prof->seconds : 0;
	j->timeout_ms = (uint32_t)ps->pol->timeout_seconds * 1000u;
	j->round_ms = r->ms;
	loop_timer_init(&j->start, on_job_start, j);
	if (loop_timer_start(c->l, &j->start, delay_ms) != 0)
		goto err;
	j->ps = ps;
	j->next = ps->jobs;
	if (ps->jobs)
		ps->jobs->prev = j;
	ps->jobs = j;
	j->h = job_hash(j->pod, j->prof);
	j->hnext = ps->live[j->h % JOB_BUCKETS];
	ps->live[j->h % JOB_BUCKETS] = j;
	r->jobs++;
	return 0;
err:
	job_free(j);
	return -ENOMEM;
}

struct round_ctx {
	struct pstate *ps;
	struct round *r;
	int64_t now;
	uint32_t window; /* spread window of this round */
	int64_t n;
	int64_t busy; /* captures skipped: the previous one still runs */
};

/* A pod whose target cannot be resolved (a bad annotation): one failure
 * for the round, in status, metrics, log and a Warning Event. */
static void round_bad_target(struct round_ctx *rc, const char *podkey, const char *err)
{
	struct pstate *ps = rc->ps;
	const char *lv[] = {ps->key, "all", "invalid_target"};
	struct rec_round shown = ps->st.last_round;
	char text[1024];

	rec_status_add_failure_kind(&ps->st, rc->now, podkey, "all", "invalid_target", err);
	ps->st.last_round = shown;
	rc->r->tally.failed++;
	op_metric_add(ps->ctl->f_captures, lv, 1);
	log_warn("pod cannot be captured", "policy", ps->key, "pod", podkey, "error", err, NULL);
	snprintf(text, sizeof(text), "pod %s: %s", podkey, err);
	policy_event(ps, "Warning", "InvalidTarget", podkey, text);
}

static void round_pod(void *arg, const char *ns, const char *name, void *value)
{
	struct round_ctx *rc = arg;
	struct pstate *ps = rc->ps;
	const struct rec_pod *pod = value;
	struct rec_target t;
	char err[256], podkey[512];
	int64_t at;
	uint32_t delay;
	size_t i;

	(void)ns;
	(void)name;
	if (!rec_pod_selected(ps->pol, pod) || !rec_pod_capturable(pod))
		return;
	rc->n++;
	snprintf(podkey, sizeof(podkey), "%s/%s", pod->ns, pod->name);
	if (rec_target_resolve(ps->pol, pod, &t, err, sizeof(err)) != 0) {
		round_bad_target(rc, podkey, err);
		return;
	}
	/* The pod's slot in the window counts from the scheduled time. */
	at = rc->r->ms + rec_spread_offset_ms(pod->uid, rc->window);
	delay = at > rc->now ? (uint32_t)(at - rc->now) : 0;
	for (i = 0; i < ps->pol->nprofiles; i++) {
		const char *prof = rec_profile_name(ps->pol->profiles[i].type);
		/* The previous round's capture of this pod and type still
		 * runs or waits: skip, rather than let an overloaded schedule
		 * pile up an unbounded queue (CronJob's concurrencyPolicy
		 * Forbid, per capture). */
		if (job_live(ps, podkey, prof)) {
			const char *lv[] = {ps->key, prof, "busy"};
			op_metric_add(ps->ctl->f_captures, lv, 1);
			rc->busy++;
			continue;
		}
		if (job_add(ps, rc->r, pod, &t, &ps->pol->profiles[i], delay) != 0)
			log_error("out of memory planning a capture", "policy", ps->key, NULL);
	}
}

static void on_fire(struct loop_timer *t)
{
	struct pstate *ps = t->arg;
	struct op_ctl *c = ps->ctl;
	struct round_ctx rc = {.ps = ps, .now = loop_wall_ms()};
	int64_t round = rec_clock_fire(&ps->clock, active_sched(ps), rc.now);

	arm_fire(ps); /* early: re-armed for the same time; else the next */
	if (round == 0 || c->shutting_down)
		return;
	if (c->o.leader_elect && !c->leading)
		return;
	/* The previous round still waits on deliveries (profefe slow or
	 * down): write its status now, so every round gets its one write. */
	if (loop_timer_active(&ps->grace))
		grace_write(ps);
	rc.r = round_begin(ps, round);
	rc.window = rec_round_window_ms(c->o.spread_ms, round, ps->clock.next_ms);
	ps->st.last_schedule_ms = round;
	kube_informer_foreach(c->pods, round_pod, &rc);
	ps->targets = rc.n;
	if (rc.busy > 0) {
		char n[32];
		snprintf(n, sizeof(n), "%" PRId64, rc.busy);
		log_warn("captures skipped: the previous round's are still running", "policy",
		         ps->key, "skipped", n, NULL);
		policy_event(ps, "Warning", "RoundOverlap", NULL,
		             "captures skipped because the previous round's captures of the same "
		             "pods are still running; lengthen spec.schedule or lower "
		             "spec.timeoutSeconds");
	}
	log_debug("round started", "policy", ps->key, NULL);
	round_settle(ps, rc.r); /* nothing to capture: still say the round happened */
}

/* ------------------------------------------------------------------ */
/* Leader election                                                     */

static void lead_started(void *arg)
{
	struct op_ctl *c = arg;

	c->leading = 1;
	op_metric_set(c->f_leader, NULL, 1);
	log_info("became leader: capturing", "identity", c->o.identity, NULL);
	mark_all_dirty(c);
	{
		struct pstate *ps;
		for (ps = c->states; ps; ps = ps->next) {
			ps->st_loaded = 0; /* continue from the status the last leader wrote */
			ps->status_dirty = 1;
		}
	}
}

static void lead_stopped(void *arg)
{
	struct op_ctl *c = arg;
	struct pstate *ps;

	if (!c->leading)
		return;
	c->leading = 0;
	op_metric_set(c->f_leader, NULL, 0);
	log_warn("lost leadership: captures stopped", "identity", c->o.identity, NULL);
	for (ps = c->states; ps; ps = ps->next)
		cancel_jobs(ps);
}

/* ------------------------------------------------------------------ */
/* Life cycle                                                          */

static int register_metrics(struct op_ctl *c)
{
	static const char *const pol_type_res[] = {"policy", "type", "result"};
	static const char *const type_only[] = {"type"};
	static const char *const res_only[] = {"result"};
	static const char *const resource[] = {"resource"};
	static const char *const policy[] = {"policy"};
	static const char *const ev[] = {"type", "reason"};
	static const double secs[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
	struct op_metrics *m = c->m;

	c->f_captures = op_metrics_family(m, "profefe_operator_captures_total",
	                                  "Captures by policy, profile type and result.",
	                                  OP_COUNTER, pol_type_res, 3, NULL, 0);
	c->f_duration = op_metrics_family(m, "profefe_operator_capture_duration_seconds",
	                                  "Time to fetch one profile from a pod.", OP_HISTOGRAM,
	                                  type_only, 1, secs, sizeof(secs) / sizeof(secs[0]));
	c->f_bytes = op_metrics_family(m, "profefe_operator_capture_bytes_total",
	                               "Profile bytes fetched from pods.", OP_COUNTER, type_only, 1,
	                               NULL, 0);
	c->f_inflight = op_metrics_family(m, "profefe_operator_captures_inflight",
	                                  "Captures in flight now.", OP_GAUGE, NULL, 0, NULL, 0);
	c->f_spool_bytes = op_metrics_family(m, "profefe_operator_spool_bytes",
	                                     "Bytes of profiles waiting for profefe.", OP_GAUGE,
	                                     NULL, 0, NULL, 0);
	c->f_spool_files =
	        op_metrics_family(m, "profefe_operator_spool_profiles",
	                          "Profiles waiting for profefe.", OP_GAUGE, NULL, 0, NULL, 0);
	c->f_spool_drops = op_metrics_family(m, "profefe_operator_spool_dropped_total",
	                                     "Profiles dropped because the spool was full.",
	                                     OP_COUNTER, NULL, 0, NULL, 0);
	c->f_deliveries =
	        op_metrics_family(m, "profefe_operator_deliveries_total",
	                          "Pushes to profefe by result.", OP_COUNTER, res_only, 1, NULL, 0);
	c->f_watch_restarts = op_metrics_family(m, "profefe_operator_watch_restarts_total",
	                                        "Watches that ended in an error or a drop.",
	                                        OP_COUNTER, resource, 1, NULL, 0);
	c->f_status_writes = op_metrics_family(m, "profefe_operator_status_writes_total",
	                                       "Policy status writes by result.", OP_COUNTER,
	                                       res_only, 1, NULL, 0);
	c->f_leader = op_metrics_family(m, "profefe_operator_leader",
	                                "1 when this replica leads (or runs without election).",
	                                OP_GAUGE, NULL, 0, NULL, 0);
	c->f_policies = op_metrics_family(m, "profefe_operator_policies", "Policies known.",
	                                  OP_GAUGE, NULL, 0, NULL, 0);
	c->f_targets =
	        op_metrics_family(m, "profefe_operator_targets", "Pods a policy captures from.",
	                          OP_GAUGE, policy, 1, NULL, 0);
	c->f_pods = op_metrics_family(m, "profefe_operator_pods_cached", "Pods in the cache.",
	                              OP_GAUGE, NULL, 0, NULL, 0);
	c->f_events = op_metrics_family(m, "profefe_operator_events_total",
	                                "Kubernetes Events recorded.", OP_COUNTER, ev, 2, NULL, 0);
	return c->f_captures && c->f_duration && c->f_bytes && c->f_inflight && c->f_spool_bytes &&
	                       c->f_spool_files && c->f_spool_drops && c->f_deliveries &&
	                       c->f_watch_restarts && c->f_status_writes && c->f_leader &&
	                       c->f_policies && c->f_targets && c->f_pods && c->f_events
	               ? 0
	               : -ENOMEM;
}

/* Creates `path` and its missing parents (0700: profiles are user data). */
static int mkdir_p(const char *path)
{
	char buf[4096];
	size_t i, n = strlen(path);

	if (n == 0 || n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0700) < 0 && errno != EEXIST)
			return -errno;
		buf[i] = path[i];
	}
	return 0;
}

static char *dup_opt(const char *s)
{
	return s ? strdup(s) : NULL;
}

int op_ctl_new(struct loop *l, struct kube_client *kc, struct op_metrics *m,
               const struct op_ctl_opts *o, struct op_ctl **out, char *err, size_t errlen)
{
	struct op_ctl *c = calloc(1, sizeof(*c));
	struct cap_fetcher_opts fo = {0};
	int rc;

	if (!c)
		return -ENOMEM;
	c->l = l;
	c->kc = kc;
	c->m = m;
	c->o = *o;
	c->o.ns = c->ns_copy = dup_opt(o->ns);
	c->o.profefe_url = c->profefe_copy = dup_opt(o->profefe_url);
	c->o.spool_dir = c->spool_copy = dup_opt(o->spool_dir);
	c->o.lease_ns = c->lease_ns_copy = dup_opt(o->lease_ns);
	c->o.lease_name = c->lease_name_copy = dup_opt(o->lease_name);
	c->o.identity = c->id_copy = dup_opt(o->identity);
	loop_timer_init(&c->drain, on_drain, c);
	rc = register_metrics(c);
	if (rc)
		goto err;
	fo.max_inflight = o->max_inflight;
	/* Be gentle with pods: one profile at a time per pod, plus its CPU
	 * profile (which Go allows only once per process anyway). A round's
	 * types for one pod then follow each other instead of piling up. */
	fo.max_per_target = 1;
	fo.max_body_bytes = (size_t)o->max_profile_bytes;
	/* One hostile pod (an endless body, a gzip bomb) must not multiply
	 * the operator's memory by the captures in flight. */
	fo.max_inflight_bytes = (size_t)o->max_inflight_bytes;
	rc = cap_fetcher_new(l, &fo, &c->fetcher);
	if (rc) {
		snprintf(err, errlen, "cannot create the capture fetcher: %s", strerror(-rc));
		goto err;
	}
	if (o->spool_dir && (rc = mkdir_p(o->spool_dir)) != 0) {
		snprintf(err, errlen, "cannot create the spool directory %s: %s", o->spool_dir,
		         strerror(-rc));
		goto err;
	}
	/* Open the default sink now, so profiles spooled by an earlier run
	 * start replaying at once and a bad spool directory fails start-up. */
	if (c->o.profefe_url && !sink_for(c, c->o.profefe_url)) {
		snprintf(err, errlen, "cannot set up delivery to %s (spool directory %s)",
		         c->o.profefe_url, o->spool_dir ? o->spool_dir : "(memory)");
		rc = -EIO;
		goto err;
	}
	rc = kube_recorder_new(kc, "profefe-operator", NULL, 0, &c->rec);
	if (rc) {
		snprintf(err, errlen, "cannot create the event recorder: %s", strerror(-rc));
		goto err;
	}
	op_metric_set(c->f_leader, NULL, o->leader_elect ? 0 : 1);
	*out = c;
	return 0;
err:
	if (!err[0])
		snprintf(err, errlen, "out of memory");
	op_ctl_free(c);
	return rc ? rc : -ENOMEM;
}

int op_ctl_start(struct op_ctl *c)
{
	static const struct kube_informer_ops pol_ops = {.on_add = pol_add,
	                                                 .on_update = pol_update,
	                                                 .on_delete = pol_delete,
	                                                 .on_synced = pol_synced};
	static const struct kube_informer_ops pod_ops = {.transform = pod_transform,
	                                                 .free_value = pod_free,
	                                                 .on_add = pod_add,
	                                                 .on_update = pod_update,
	                                                 .on_delete = pod_delete,
	                                                 .on_synced = pod_synced};
	struct kube_informer_opts po = {.group = PPOL_GROUP,
	                                .version = PPOL_VERSION,
	                                .resource = PPOL_RESOURCE,
	                                .ns = c->o.ns};
	/* Small pages: a list page is parsed whole into a json-c tree before
	 * the compact pods are taken from it, so the page size bounds the
	 * start-up peak (about 25 KB per pod of JSON while a page lives). */
	struct kube_informer_opts pd = {
	        .version = "v1", .resource = "pods", .ns = c->o.ns, .page_size = 100};
	int rc;

	rc = kube_informer_start(c->kc, &po, &pol_ops, c, &c->pols);
	if (rc)
		return rc;
	rc = kube_informer_start(c->kc, &pd, &pod_ops, c, &c->pods);
	if (rc)
		return rc;
	if (c->o.leader_elect) {
		static const struct kube_leader_ops lops = {.started = lead_started,
		                                            .stopped = lead_stopped};
		struct kube_leader_opts lo = {
		        .ns = c->o.lease_ns, .name = c->o.lease_name, .identity = c->o.identity};
		rc = kube_leader_start(c->kc, &lo, &lops, c, &c->leader);
	}
	return rc;
}

int op_ctl_ready(const struct op_ctl *c)
{
	return c->pols && c->pods && kube_informer_synced(c->pols) && kube_informer_synced(c->pods);
}

/* Refreshes gauges that are cheaper to read than to track. */
void op_ctl_update_gauges(struct op_ctl *c);
void op_ctl_update_gauges(struct op_ctl *c)
{
	struct cap_fetcher_stats fs;
	struct kube_informer_stats is;
	const char *pv[] = {"profilingpolicies"}, *dv[] = {"pods"};
	size_t n = 0;
	struct pstate *ps;

	cap_fetcher_stats(c->fetcher, &fs);
	op_metric_set(c->f_inflight, NULL, (double)fs.inflight);
	{
		struct cap_pusher_stats st;
		struct sink *s;
		uint64_t bytes = 0, files = 0, drops = 0;
		for (s = c->sinks; s; s = s->next) {
			cap_pusher_stats(s->pusher, &st);
			bytes += st.spool_bytes;
			files += st.spool_files;
			drops += st.drops;
		}
		op_metric_set(c->f_spool_bytes, NULL, (double)bytes);
		op_metric_set(c->f_spool_files, NULL, (double)files);
		op_metric_set_counter(c->f_spool_drops, NULL, (double)drops);
	}
	for (ps = c->states; ps; ps = ps->next)
		n += !ps->gone;
	op_metric_set(c->f_policies, NULL, (double)n);
	if (c->pods) {
		op_metric_set(c->f_pods, NULL, (double)kube_informer_count(c->pods));
		kube_informer_stats(c->pods, &is);
		op_metric_set_counter(c->f_watch_restarts, dv, (double)is.restarts);
	}
	if (c->pols) {
		kube_informer_stats(c->pols, &is);
		op_metric_set_counter(c->f_watch_restarts, pv, (double)is.restarts);
	}
}

/* True while shutting down would lose or repeat something: a capture or
 * status write in flight, or a push not yet answered (with the in-memory
 * spool, a profile not yet delivered). */
static int busy(const struct op_ctl *c)
{
	const struct pstate *ps;
	const struct sink *s;

	for (ps = c->states; ps; ps = ps->next)
		if (ps->status_inflight || ps->jobs)
			return 1;
	for (s = c->sinks; s; s = s->next)
		if (!cap_pusher_flushed(s->pusher))
			return 1;
	return 0;
}

static void sink_flushed(void *arg, int flushed);

/* Waits, on the loop, for the sink's pushes in flight to be answered. */
static void sink_flush(struct sink *s)
{
	struct op_ctl *c = s->ctl;
	uint64_t now = loop_now_ms(c->l), end = c->shutdown_end_ms;

	if (c->shutting_down >= 3 || cap_pusher_flushed(s->pusher))
		return;
	if (cap_pusher_flush(s->pusher, end > now ? (uint32_t)(end - now) : 0, sink_flushed, s) !=
	    0)
		log_warn("shutdown: cannot wait for pushes in flight", "url", s->url, NULL);
}

static void sink_flushed(void *arg, int flushed)
{
	struct sink *s = arg;

	/* Captures that ended meanwhile may have submitted more. */
	if (flushed)
		sink_flush(s);
	maybe_finish_shutdown(s->ctl);
}

static void lease_released(void *arg)
{
	struct op_ctl *c = arg;
	void (*done)(void *) = c->shutdown_done;

	c->shutdown_done = NULL;
	if (done)
		done(c->shutdown_arg);
}

static void maybe_finish_shutdown(struct op_ctl *c)
{
	if (!c->shutting_down || !c->shutdown_done)
		return;
	if (c->shutting_down < 3 && busy(c))
		return;
	loop_timer_stop(c->l, &c->shutdown_deadline);
	if (c->leader && c->leading)
		kube_leader_release(c->leader, lease_released, c);
	else
		lease_released(c);
}

/* The deadline passed: cancel what is still capturing, flush the status
 * those cancellations produce, and give the writes a short grace period
 * before finishing regardless. */
static void on_shutdown_deadline(struct loop_timer *t)
{
	struct op_ctl *c = t->arg;
	struct pstate *ps;

	if (c->shutting_down == 2) {
		log_warn("shutdown: status writes still in flight; exiting anyway", NULL);
		c->shutting_down = 3;
		maybe_finish_shutdown(c);
		return;
	}
	log_warn("shutdown deadline reached: cancelling captures in flight", NULL);
	for (ps = c->states; ps; ps = ps->next) {
		cancel_jobs(ps);
		ps->status_dirty = 1;
		status_flush(ps);
	}
	c->shutting_down = 2;
	loop_timer_start(c->l, &c->shutdown_deadline, 2000);
	if (!busy(c))
		maybe_finish_shutdown(c);
}

void op_ctl_shutdown(struct op_ctl *c, uint32_t deadline_ms, void (*done)(void *arg), void *arg)
{
	struct pstate *ps;
	struct sink *s;

	c->shutting_down = 1;
	c->shutdown_done = done;
	c->shutdown_arg = arg;
	for (ps = c->states; ps; ps = ps->next) {
		struct job *j, *next;
		loop_timer_stop(c->l, &ps->fire);
		/* Captures not yet started will not be. */
		for (j = ps->jobs; j; j = next) {
			next = j->next;
			if (!j->fetching) {
				loop_timer_stop(c->l, &j->start);
				job_end(j);
			}
		}
		ps->status_dirty = 1;
		status_flush(ps);
	}
	loop_timer_init(&c->shutdown_deadline, on_shutdown_deadline, c);
	loop_timer_start(c->l, &c->shutdown_deadline, deadline_ms);
	c->shutdown_end_ms = loop_now_ms(c->l) + deadline_ms;
	for (s = c->sinks; s; s = s->next)
		sink_flush(s);
	maybe_finish_shutdown(c);
}

void op_ctl_free(struct op_ctl *c)
{
	struct sink *s, *sn;

	if (!c)
		return;
	while (c->states) {
		cancel_jobs(c->states);
		state_free(c->states);
	}
	c->planned = 1;
	while (c->early) {
		struct early *e = c->early;
		c->early = e->next;
		free(e->origin);
		free(e->message);
		free(e->id);
		free(e);
	}
	loop_timer_stop(c->l, &c->drain);
	loop_timer_stop(c->l, &c->shutdown_deadline);
	kube_leader_free(c->leader);
	kube_informer_free(c->pols);
	kube_informer_free(c->pods);
	kube_recorder_free(c->rec);
	cap_fetcher_free(c->fetcher);
	for (s = c->sinks; s; s = sn) {
		sn = s->next;
		cap_pusher_free(s->pusher);
		cap_profefe_free(s->client);
		free(s->url);
		free(s);
	}
	free(c->ns_copy);
	free(c->profefe_copy);
	free(c->spool_copy);
	free(c->lease_ns_copy);
	free(c->lease_name_copy);
	free(c->id_copy);
	free(c);
}
