/* operator/controller.c: informers -> dirty queue -> reconcile -> rounds ->
 * captures -> delivery -> status. */
#include "operator/controller.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capture/capture.h"
#include "capture/profefe.h"
#include "capture/spool.h"
#include "common/common.h"
#include "kube/kube.h"
#include "loop/log.h"
#include "loop/loop.h"
#include "operator/metrics.h"
#include "operator/zoneinfo.h"
#include "reconcile/reconcile.h"

#define PPOL_GROUP    "profefe.com"
#define PPOL_VERSION  "v1alpha1"
#define PPOL_RESOURCE "profilingpolicies"
#define PPOL_KIND     "ProfilingPolicy"
/* The cluster-scoped kind: the same spec, written by cluster admins only.
 * Its state has ns "" and its key is its name. */
#define CPOL_RESOURCE "clusterprofilingpolicies"
#define CPOL_KIND     "ClusterProfilingPolicy"

/* A policy's spec as parsed at one generation: shared (counted) by the
 * cached values of that generation and by the pstate that runs it, so the
 * operator's own status writes, which change the object but not its
 * generation, neither re-parse it nor copy it. */
struct pspec {
	unsigned refs;
	struct rec_policy *pol;      /* NULL when unparseable */
	const struct rec_errs *errs; /* fitted to its entries (errs_fit); never NULL */
};

/* The policy cache's compact value (DESIGN §7: no json-c tree outlives
 * the event that carried it). The status is kept serialised, not parsed:
 * it is read only to reload counters (start, failover, a new uid, a
 * replica that does not lead), it costs what it holds (a few hundred
 * bytes for a quiet policy, where a struct rec_status is 2.5 KB whatever
 * it holds), and serialising is as cheap as parsing it on every event. */
struct pval {
	char *uid; /* "" when absent */
	int64_t generation;
	struct pspec *spec; /* NULL: parsing it ran out of memory */
	char *status;       /* the status object as JSON, or NULL when absent */
};

/* Everything the controller knows about one policy key. It outlives the
 * cached object while a status write still refers to it. What to do with
 * the policy is decided by reconcile/'s state machine (`ctl`); this file
 * carries it out. */
struct pstate {
	struct op_ctl *ctl;
	char *ns, *name, *key; /* key: "ns/name" */
	char *uid;
	struct pspec *spec;     /* the spec planned (a reference); NULL when deleted */
	struct rec_policy *pol; /* spec->pol: NULL when unparseable or deleted */
	int64_t generation;     /* last generation planned */
	struct rec_ctl sm;      /* the state machine, and the status it keeps */
	int st_loaded;
	int gone; /* deleted from the API server */

	struct loop_timer fire;    /* next round */
	struct loop_timer requeue; /* reconcile backoff */
	struct loop_timer grace;   /* deliveries lag: write the round anyway */
	struct loop_timer late;    /* late news waits at most this long for a write */
	struct loop_backoff backoff;
	int dirty;
	struct pstate *next_dirty;
	int64_t targets;      /* as last reported */
	int64_t live_targets; /* pods selected and capturable now (pod_touch keeps it) */
	struct job *jobs;     /* captures started and not yet answered */
	/* Its place in the pod-event index (pol_index); NULL when it is in
	 * none (no spec). */
	struct rec_polidx_ent *idx;

	int status_dirty, status_inflight;
	int targets_pending; /* a target count moved; `late` writes it */
	char *warned_spec;   /* the invalid-spec message already sent as an Event */

	struct pstate *next, **pprev; /* every state, in c->states */
	struct pstate *hnext;         /* the same bucket of c->by_key */
	uint32_t hash;
};

/* The I/O side of one rec_ctl_job: its spread timer, then its capture. */
struct job {
	struct pstate *ps;
	struct rec_ctl_job *cj;
	struct job *next, *prev;
	struct loop_timer start;
	uint64_t fetch_id;
	int fetching;
	const char *prof_name; /* static */
	char *url, *target_key, *service, *labels;
	enum ppop_ptype type;
	uint32_t seconds, timeout_ms;
	int64_t planned_ms; /* the spread slot the state machine chose */
	int64_t created_ms; /* when the timer ran and the fetch was asked for */
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
	struct rec_grants grants; /* its lists point into grant_buf */
	char *grant_buf[2];

	struct kube_informer *pols, *cpols, *pods;
	/* The ClusterProfilingPolicy CRD may be missing (an install that
	 * predates it): then cluster policies are not watched, readiness does
	 * not wait for them, and the operator looks again now and then. */
	struct loop_timer cpol_probe;
	struct loop_backoff cpol_backoff;
	struct kube_call *cpol_call;
	int cpols_absent; /* 0, or the probe's answer: 404 or 403 */
	struct kube_recorder *rec;
	struct kube_leader *leader;
	int leading;

	struct cap_fetcher *fetcher;
	struct sink *sinks;
	struct cap_spool_budget *spool_budget; /* --spool-max-bytes, across all sinks */

	struct pstate *states;
	/* The same states by namespace and name: a policy event finds its
	 * state in O(1), not by walking 10,000 of them. */
	struct pstate **by_key;
	size_t nby_key, nstates;
	/* Which policies a pod event concerns: by the namespaces they
	 * select in and one label every pod they select carries. */
	struct rec_polidx *pol_idx;
	/* The cached pods by namespace (pointers to the informer's values),
	 * so a policy that selects in its own namespace or in named ones
	 * walks those pods only, at each round and when it counts targets. */
	struct rec_podidx *pod_idx;
	int pod_idx_broken; /* out of memory once: walk the whole cache */
	struct pstate *dirty_head, *dirty_tail;
	int planned;         /* every policy was reconciled once after both caches synced */
	struct early *early; /* delivery results held until then, newest first */
	size_t nearly;
	struct loop_timer drain;

	int shutting_down; /* 1 draining, 2 cancelled and flushing, 3 done waiting */
	int freeing;       /* op_ctl_free() runs: nothing new is sent */
	struct loop_timer shutdown_deadline;
	uint64_t shutdown_end_ms; /* loop_now_ms() at the deadline */
	void (*shutdown_done)(void *arg);
	void *shutdown_arg;

	struct op_family *f_captures, *f_duration, *f_start_delay, *f_bytes, *f_inflight,
	        *f_spool_bytes, *f_spool_files, *f_spool_drops, *f_watch_restarts, *f_lists,
	        *f_status_writes, *f_leader, *f_policies, *f_targets, *f_pods, *f_deliveries,
	        *f_events;
};

struct early;
static void reconcile(struct pstate *ps);
static void early_apply(struct op_ctl *c);
static void ctl_apply(struct pstate *ps, struct rec_acts *a);
static void status_flush(struct pstate *ps);
static void maybe_finish_shutdown(struct op_ctl *c);
struct sink;
static void sink_flush(struct sink *s);

/* ------------------------------------------------------------------ */
/* Policy specs                                                        */

static const struct rec_errs no_errs;

/* A copy of `e` holding only its entries: struct rec_errs has room for
 * REC_ERRS_MAX (10 KB) and a valid policy has none. Readers only touch
 * v[0..n-1]. Returns NULL when out of memory. */
static const struct rec_errs *errs_fit(const struct rec_errs *e)
{
	size_t sz = offsetof(struct rec_errs, v) + e->n * sizeof(e->v[0]);
	void *f;

	if (e->n == 0 && e->dropped == 0)
		return &no_errs;
	f = malloc(sz);
	if (f)
		memcpy(f, e, sz);
	return f;
}

static void pspec_put(struct pspec *s)
{
	if (!s || --s->refs > 0)
		return;
	rec_policy_free(s->pol);
	if (s->errs != &no_errs)
		free((void *)s->errs);
	free(s);
}

static int zone_lookup(void *arg, const char *name, struct rec_zone **out);

/* Parses and authorizes a policy object (lent), of the scope its
 * resource has. Returns a spec with one reference, or NULL when out of
 * memory. */
static struct pspec *pspec_parse(struct op_ctl *c, const struct json_object *obj, int cluster)
{
	struct rec_errs *e = calloc(1, sizeof(*e));
	struct pspec *s = calloc(1, sizeof(*s));

	if (!e || !s)
		goto err;
	s->refs = 1;
	if ((cluster ? rec_cluster_policy_parse : rec_policy_parse)(obj, zone_lookup, c, &s->pol,
	                                                            e) == -ENOMEM)
		goto err;
	/* What the policy may reach is the admin's to say, not its own. */
	if (s->pol)
		rec_policy_authorize(s->pol, &c->grants, e);
	s->errs = errs_fit(e);
	if (!s->errs)
		goto err;
	free(e);
	return s;
err:
	if (s)
		rec_policy_free(s->pol);
	free(s);
	free(e);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Policy states and the dirty queue                                   */

static uint32_t state_hash(const char *ns, const char *name)
{
	static const char sep = '/';
	uint64_t h = ppop_fnv1a_str(PPOP_FNV1A_INIT, ns);

	h = ppop_fnv1a(h, &sep, 1);
	h = ppop_fnv1a_str(h, name);
	return (uint32_t)(h ^ (h >> 32));
}

static struct pstate *state_find(struct op_ctl *c, const char *ns, const char *name)
{
	uint32_t h = state_hash(ns, name);
	struct pstate *ps;

	if (!c->nby_key)
		return NULL;
	for (ps = c->by_key[h & (c->nby_key - 1)]; ps; ps = ps->hnext)
		if (ps->hash == h && strcmp(ps->ns, ns) == 0 && strcmp(ps->name, name) == 0)
			return ps;
	return NULL;
}

/* Doubles the key table when it holds as many states as buckets. */
static int state_table_fit(struct op_ctl *c)
{
	size_t nb = c->nby_key ? 2 * c->nby_key : 64;
	struct pstate **b;

	if (c->nstates < c->nby_key)
		return 0;
	b = calloc(nb, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < c->nby_key; i++)
		while (c->by_key[i]) {
			struct pstate *ps = c->by_key[i];
			c->by_key[i] = ps->hnext;
			ps->hnext = b[ps->hash & (nb - 1)];
			b[ps->hash & (nb - 1)] = ps;
		}
	free(c->by_key);
	c->by_key = b;
	c->nby_key = nb;
	return 0;
}

static void on_fire(struct loop_timer *t);
static void on_requeue(struct loop_timer *t);
static void on_grace(struct loop_timer *t);
static void on_late(struct loop_timer *t);
static void cpol_probe(struct loop_timer *t);
static void job_free(struct job *j);

static struct pstate *state_get(struct op_ctl *c, const char *ns, const char *name)
{
	struct pstate *ps = state_find(c, ns, name);

	if (ps)
		return ps;
	if (state_table_fit(c))
		return NULL;
	ps = calloc(1, sizeof(*ps));
	if (!ps)
		return NULL;
	ps->ctl = c;
	ps->ns = strdup(ns);
	ps->name = strdup(name);
	if (asprintf(&ps->key, "%s%s%s", ns, *ns ? "/" : "", name) < 0)
		ps->key = NULL;
	if (!ps->ns || !ps->name || !ps->key) {
		free(ps->ns);
		free(ps->name);
		free(ps->key);
		free(ps);
		return NULL;
	}
	rec_ctl_init(&ps->sm);
	ps->generation = -1;
	loop_timer_init(&ps->fire, on_fire, ps);
	loop_timer_init(&ps->requeue, on_requeue, ps);
	loop_timer_init(&ps->grace, on_grace, ps);
	loop_timer_init(&ps->late, on_late, ps);
	ps->backoff = (struct loop_backoff){.base_ms = 500, .max_ms = 60000};
	ps->next = c->states;
	if (c->states)
		c->states->pprev = &ps->next;
	c->states = ps;
	ps->pprev = &c->states;
	ps->hash = state_hash(ns, name);
	ps->hnext = c->by_key[ps->hash & (c->nby_key - 1)];
	c->by_key[ps->hash & (c->nby_key - 1)] = ps;
	c->nstates++;
	return ps;
}

/* Files the policy where pod events look for it, after its spec changed.
 * A policy without a spec selects nothing and is filed nowhere. Out of
 * memory, it is filed nowhere either, and says so: pod events then miss
 * it until its next reconcile, which recounts its targets. */
static void pol_index(struct pstate *ps)
{
	if (rec_polidx_put(ps->ctl->pol_idx, &ps->idx, ps->pol, ps) != 0)
		log_error("out of memory indexing a policy; pod events miss it until it is "
		          "reconciled again",
		          "policy", ps->key, NULL);
}

static void state_free(struct pstate *ps)
{
	struct op_ctl *c = ps->ctl;
	struct pstate **pp;

	*ps->pprev = ps->next;
	if (ps->next)
		ps->next->pprev = ps->pprev;
	for (pp = &c->by_key[ps->hash & (c->nby_key - 1)]; *pp; pp = &(*pp)->hnext)
		if (*pp == ps) {
			*pp = ps->hnext;
			break;
		}
	c->nstates--;
	loop_timer_stop(c->l, &ps->fire);
	loop_timer_stop(c->l, &ps->requeue);
	loop_timer_stop(c->l, &ps->grace);
	loop_timer_stop(c->l, &ps->late);
	rec_polidx_del(c->pol_idx, &ps->idx);
	pspec_put(ps->spec);
	rec_ctl_free(&ps->sm);
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
	/* Reconciling may mark more keys dirty; they join this same pass. A
	 * pass reconciles one policy at least, then yields once the loop's
	 * iteration has used its budget (loop_should_yield(), shared with
	 * the informers' slices), so a burst (every policy at start, each
	 * counting its targets over every pod) never holds up probes,
	 * watches and capture timers for long. */
	while (c->dirty_head) {
		struct pstate *ps = c->dirty_head;
		c->dirty_head = ps->next_dirty;
		if (!c->dirty_head)
			c->dirty_tail = NULL;
		ps->next_dirty = NULL;
		ps->dirty = 0;
		reconcile(ps);
		loop_update_time(c->l);
		if (c->dirty_head && loop_should_yield(c->l)) {
			/* 1 ms, not 0: a timer due now would run again in this
			 * same pass over the timers, without yielding. */
			loop_timer_start(c->l, &c->drain, 1);
			return;
		}
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

/* The policy cache's transform: what reconcile() needs, no JSON tree.
 * It runs on every update, the operator's own status writes included, so
 * a value whose uid and generation match the cached one shares its spec
 * rather than parsing it again. */
static int pol_transform_scoped(struct op_ctl *c, struct json_object *obj, void **value,
                                int cluster)
{
	struct json_object *meta, *v;
	const char *ns = "", *name = "", *uid = "";
	struct pval *pv = calloc(1, sizeof(*pv)), *old;

	if (!pv)
		return -ENOMEM;
	if (json_object_object_get_ex(obj, "metadata", &meta)) {
		if (json_object_object_get_ex(meta, "namespace", &v) && json_object_get_string(v))
			ns = json_object_get_string(v);
		if (json_object_object_get_ex(meta, "name", &v) && json_object_get_string(v))
			name = json_object_get_string(v);
		if (json_object_object_get_ex(meta, "uid", &v) && json_object_get_string(v))
			uid = json_object_get_string(v);
		if (json_object_object_get_ex(meta, "generation", &v))
			pv->generation = json_object_get_int64(v);
	}
	/* The resource decides the scope; an object of the other scope (no
	 * such thing from a real API server) is left out of the cache. */
	if ((*ns == 0) != cluster) {
		free(pv);
		return -EINVAL;
	}
	pv->uid = strdup(uid);
	if (!pv->uid)
		goto err;
	if (json_object_object_get_ex(obj, "status", &v) && v) {
		pv->status = strdup(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
		if (!pv->status)
			goto err;
	}
	old = cluster ? (c->cpols ? kube_informer_get(c->cpols, ns, name) : NULL)
	              : (c->pols ? kube_informer_get(c->pols, ns, name) : NULL);
	if (old && old->spec && old->generation == pv->generation &&
	    strcmp(old->uid, pv->uid) == 0) {
		pv->spec = old->spec;
		pv->spec->refs++;
	} else {
		/* NULL when out of memory: reconcile() retries after the next
		 * event, which parses again (no spec to share). */
		pv->spec = pspec_parse(c, obj, cluster);
	}
	*value = pv;
	return 0;
err:
	free(pv->uid);
	free(pv);
	return -ENOMEM;
}

static int pol_transform(void *arg, struct json_object *obj, void **value)
{
	return pol_transform_scoped(arg, obj, value, 0);
}

static int cpol_transform(void *arg, struct json_object *obj, void **value)
{
	return pol_transform_scoped(arg, obj, value, 1);
}

static void pol_free(void *arg, void *value)
{
	struct pval *pv = value;

	(void)arg;
	pspec_put(pv->spec);
	free(pv->uid);
	free(pv->status);
	free(pv);
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

struct each_pod {
	void (*fn)(void *arg, struct rec_pod *pod);
	void *arg;
};

static void each_cached_pod(void *arg, const char *ns, const char *name, void *value)
{
	struct each_pod *ep = arg;

	(void)ns;
	(void)name;
	ep->fn(ep->arg, value);
}

/* Calls `fn` for every cached pod the policy may select by namespace:
 * those of its own namespace or of the ones it names, else all. */
static void policy_pods_foreach(struct pstate *ps, void (*fn)(void *arg, struct rec_pod *pod),
                                void *arg)
{
	struct op_ctl *c = ps->ctl;
	const struct rec_policy *p = ps->pol;
	size_t k;

	if (!p)
		return;
	/* The index follows the cache's events, as the live target counts
	 * do: a relist's differences reach both in slices, so the cache
	 * itself can be ahead of them. Only an index broken by a failed
	 * allocation sends a walk to the cache. */
	if (c->pod_idx_broken) {
		struct each_pod ep = {fn, arg};
		kube_informer_foreach(c->pods, each_cached_pod, &ep);
		return;
	}
	if (p->ns_selector.any) {
		rec_podidx_foreach(c->pod_idx, fn, arg);
		return;
	}
	for (k = 0; k < (p->ns_selector.n ? p->ns_selector.n : 1); k++)
		rec_podidx_foreach_ns(c->pod_idx,
		                      p->ns_selector.n ? p->ns_selector.names[k] : p->ns, fn, arg);
}

/* A pod changed from `a` to `b` (either NULL), for one policy that may
 * select it: the state machine cancels captures of a pod that was
 * deleted, changed its IP or left the selection; the live target count
 * follows; the policy is dirty when it selects either form. */
static void pod_touch_one(struct pstate *ps, const struct rec_pod *a, const struct rec_pod *b)
{
	struct rec_acts acts = {0};
	int was, is;

	rec_ctl_pod_changed(&ps->sm, ps->pol, a, b, &acts);
	if (acts.n)
		ctl_apply(ps, &acts);
	rec_acts_free(&acts);
	was = a && rec_pod_selected(ps->pol, a);
	is = b && rec_pod_selected(ps->pol, b);
	if (ps->pol->valid)
		ps->live_targets += (is && rec_pod_capturable(b)) - (was && rec_pod_capturable(a));
	if (was || is)
		mark_dirty(ps);
}

struct touch {
	const struct rec_pod *a, *b;
};

static void touch_candidate(void *arg, void *owner)
{
	struct touch *t = arg;

	pod_touch_one(owner, t->a, t->b);
}

/* A pod changed: only the policies that may select either form of it are
 * looked at, found by namespace and label (reconcile/index.c). The cost
 * is O(the pod's labels + those policies), not O(all policies). */
static void pod_touch(struct op_ctl *c, const struct rec_pod *a, struct rec_pod *b)
{
	struct touch t = {a, b};

	if (!c->pod_idx_broken) {
		int rc = rec_podidx_change(c->pod_idx, a, b);
		if (rc) {
			log_error("cannot index pods by namespace; rounds walk every pod", "error",
			          strerror(-rc), NULL);
			c->pod_idx_broken = 1;
		}
	}
	rec_polidx_candidates(c->pol_idx, a, b, touch_candidate, &t);
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
	/* A cluster policy's Events go to "default", as kubectl looks for
	 * the Events of cluster-scoped objects there. */
	struct kube_objref ref = {.api_version = PPOL_GROUP "/" PPOL_VERSION,
	                          .kind = *ps->ns ? PPOL_KIND : CPOL_KIND,
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

	return op_zone_load(c->o.zoneinfo_dir, name, out);
}

struct count_ctx {
	struct pstate *ps;
	int64_t n;
};

static void count_pod(void *arg, struct rec_pod *pod)
{
	struct count_ctx *cc = arg;

	if (rec_pod_selected(cc->ps->pol, pod) && rec_pod_capturable(pod))
		cc->n++;
}

/* Counts the policy's targets over every cached pod: O(pods), so only
 * when its spec changes; pod events keep the count from then on. */
static int64_t count_targets(struct pstate *ps)
{
	struct count_ctx cc = {.ps = ps};

	/* A policy that may not run has no targets: a refused cross-namespace
	 * selection must not tell its author how many pods it would reach. */
	if (!ps->pol || !ps->pol->valid)
		return 0;
	policy_pods_foreach(ps, count_pod, &cc);
	return cc.n;
}

static void ctl_apply(struct pstate *ps, struct rec_acts *a);

/* Cancels every capture of the policy, waiting or running (policy deleted,
 * leadership lost, shutdown). Profiles already captured are still
 * delivered: they are the user's data. */
static void cancel_jobs(struct pstate *ps)
{
	struct rec_acts a = {0};

	rec_ctl_cancel_all(&ps->sm, &a);
	ctl_apply(ps, &a);
	rec_acts_free(&a);
}

static void forget_policy(struct pstate *ps)
{
	struct op_ctl *c = ps->ctl;

	if (ps->gone)
		return; /* already forgotten; waiting for its last status write */
	log_info("policy deleted: captures stopped", "policy", ps->key, NULL);
	ps->gone = 1; /* no more status writes */
	loop_timer_stop(c->l, &ps->fire);
	loop_timer_stop(c->l, &ps->grace);
	loop_timer_stop(c->l, &ps->late);
	cancel_jobs(ps);
	pspec_put(ps->spec);
	ps->spec = NULL;
	ps->pol = NULL;
	rec_polidx_del(c->pol_idx, &ps->idx);
	ps->generation = -1;
	op_metric_forget(c->f_captures, 0, ps->key);
	op_metric_forget(c->f_targets, 0, ps->key);
	if (!ps->status_inflight)
		state_free(ps); /* else freed when the write returns */
}

/* The schedule rounds follow now: NULL when the policy may not run. */
static const struct rec_schedule *active_sched(const struct pstate *ps)
{
	if (!ps->pol || !ps->pol->valid || ps->pol->suspend)
		return NULL;
	return ps->pol->sched;
}

/* Arms the round timer for `at_ms` (0: disarms), against fresh clock
 * readings; a timer that still fires a little early (the wall clock
 * stepped) is re-armed by the state machine (the clock decides, not the
 * timer). */
static void arm_fire(struct pstate *ps, int64_t at_ms)
{
	struct op_ctl *c = ps->ctl;

	loop_timer_stop(c->l, &ps->fire);
	if (at_ms <= 0)
		return;
	if (loop_timer_start_wall(c->l, &ps->fire, at_ms) != 0)
		loop_timer_start(c->l, &ps->requeue, loop_backoff_next(&ps->backoff));
}

/* (Re)plans the next round from the schedule, now: edits apply at once. */
static void plan_next(struct pstate *ps, int64_t now_ms)
{
	struct rec_acts a = {0};

	rec_ctl_plan(&ps->sm, active_sched(ps), now_ms, &a);
	ctl_apply(ps, &a);
	rec_acts_free(&a);
}

/* Recomputes the derived status fields and conditions from the plan. */
static void status_recompute(struct pstate *ps, int64_t now)
{
	struct rec_status *st = &ps->sm.st;

	rec_status_compute(st, ps->pol, ps->spec ? ps->spec->errs : &no_errs, ps->targets,
	                   st->next_schedule_ms ? st->next_schedule_ms : -1, now);
}

/* The Event reason for a policy that may not run. */
static const char *invalid_reason(const struct rec_errs *e)
{
	if (rec_errs_count(e, REC_ERR_SCHEDULE) || rec_errs_count(e, REC_ERR_TIMEZONE))
		return "InvalidSchedule";
	if (rec_errs_count(e, REC_ERR_SPEC))
		return "InvalidSpec";
	if (rec_errs_count(e, REC_ERR_CROSS_NS))
		return "CrossNamespaceNotAllowed";
	return "ProfefeURLNotAllowed";
}

/* Reloads the status as last written (the leader's, when this replica
 * does not lead), so counters never go backwards. Returns 0 or -ENOMEM. */
static int status_reload(struct pstate *ps, const struct pval *pv)
{
	struct json_object *st = NULL;

	if (pv->status) {
		st = json_tokener_parse(pv->status);
		if (!st)
			return -ENOMEM; /* it was valid JSON when it was written */
	}
	rec_status_free(&ps->sm.st);
	rec_status_init(&ps->sm.st);
	rec_status_from_json(st, &ps->sm.st);
	json_object_put(st);
	ps->sm.st.next_schedule_ms = ps->sm.clock.next_ms;
	ps->st_loaded = 1;
	return 0;
}

/* Takes the cached value's spec as the one to run, and plans it. */
static void spec_apply(struct pstate *ps, const struct pval *pv, int64_t now)
{
	const struct rec_errs *errs = pv->spec->errs;

	pv->spec->refs++;
	pspec_put(ps->spec);
	ps->spec = pv->spec;
	ps->pol = ps->spec->pol;
	ps->generation = pv->generation;
	pol_index(ps);
	ps->live_targets = count_targets(ps);
	plan_next(ps, now);
	if (ps->pol && !ps->pol->valid) {
		char msg[1024];
		rec_errs_format(errs, -1, msg, sizeof(msg));
		log_warn("invalid policy", "policy", ps->key, "error", msg, NULL);
		if (!ps->warned_spec || strcmp(ps->warned_spec, msg) != 0) {
			policy_event(ps, "Warning", invalid_reason(errs), NULL, msg);
			free(ps->warned_spec);
			ps->warned_spec = strdup(msg);
		}
	} else {
		log_info("policy planned", "policy", ps->key, "schedule",
		         ps->pol ? ps->pol->schedule : "", NULL);
	}
}

/* How long a moved target count may wait for a status write. */
#define TARGETS_WRITE_MS 2000

static void reconcile(struct pstate *ps)
{
	struct op_ctl *c = ps->ctl;
	const struct pval *pv = kube_informer_get(*ps->ns ? c->pols : c->cpols, ps->ns, ps->name);
	int64_t now = loop_wall_ms(), targets;
	int spec_changed, targets_changed;

	if (!pv) {
		forget_policy(ps);
		return;
	}
	/* Deleted and created again while the old one's last status write
	 * was in flight: the state is live again, not to be freed. */
	ps->gone = 0;
	if (*pv->uid && (!ps->uid || strcmp(ps->uid, pv->uid) != 0)) {
		/* A new object under an old name starts from scratch: the old
		 * one's captures and rounds are not its own. */
		struct rec_acts a = {0};
		free(ps->uid);
		ps->uid = strdup(pv->uid);
		ps->generation = -1;
		ps->st_loaded = 0;
		rec_ctl_reset(&ps->sm, &a);
		ctl_apply(ps, &a);
		rec_acts_free(&a);
	}
	/* A replica that does not lead follows the status the leader writes,
	 * so when it takes over it continues from there: counters never go
	 * backwards and lastErrors/recentProfiles never revert. */
	if (c->o.leader_elect && !c->leading)
		ps->st_loaded = 0;
	spec_changed = pv->generation != ps->generation;
	if ((!ps->st_loaded && status_reload(ps, pv) != 0) || (spec_changed && !pv->spec)) {
		loop_timer_start(c->l, &ps->requeue, loop_backoff_next(&ps->backoff));
		return;
	}
	if (spec_changed)
		spec_apply(ps, pv, now);
	targets = ps->pol && ps->pol->valid ? ps->live_targets : 0;
	assert(targets == count_targets(ps)); /* Debug builds check the count */
	targets_changed = targets != ps->targets;
	if (targets_changed) {
		char n[32];
		const char *lv[] = {ps->key};
		snprintf(n, sizeof(n), "%" PRId64, targets);
		/* Debug: with thousands of policies over churning pods, one
		 * line per policy per change would drown the log. */
		log_debug("targets changed", "policy", ps->key, "targets", n, NULL);
		op_metric_set(c->f_targets, lv, (double)targets);
	}
	ps->targets = targets;
	if (!loop_timer_active(&ps->fire) && ps->sm.clock.next_ms > 0)
		arm_fire(ps, ps->sm.clock.next_ms); /* arming failed before */
	status_recompute(ps, now);
	if (spec_changed)
		ps->status_dirty = 1;
	/* The targets (and Ready's NoTargets) follow the pods within
	 * TARGETS_WRITE_MS, not at the next round: an hourly policy would
	 * show them an hour stale. One write carries a burst of pod changes:
	 * 10,000 policies over pods being created would otherwise write a
	 * status per policy per pod. Any write before then carries it too. */
	if (targets_changed && !spec_changed) {
		ps->targets_pending = 1;
		if (!loop_timer_active(&ps->late))
			loop_timer_start(c->l, &ps->late, TARGETS_WRITE_MS);
	}
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

	if (!ps->status_dirty || ps->status_inflight || ps->gone || c->freeing ||
	    (c->o.leader_elect && !c->leading))
		return;
	if (kube_path(path, sizeof(path), PPOL_GROUP, PPOL_VERSION, ps->ns,
	              *ps->ns ? PPOL_RESOURCE : CPOL_RESOURCE, ps->name, "status") != 0)
		return;
	body = rec_status_patch_body(&ps->sm.st);
	if (!body)
		return;
	if (kube_request_raw(c->kc, "PATCH", path, body, strlen(body), &ro, status_written, ps,
	                     NULL) == 0) {
		ps->status_inflight = 1;
		ps->status_dirty = 0;
		ps->targets_pending = 0; /* the body carries the count */
	}
	free(body);
}

/* ------------------------------------------------------------------ */
/* Rounds and captures: carrying out what the state machine decided     */

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
	struct rec_status *rs = &ps->sm.st;
	struct sink *s = sink_find(c, policy_url(ps));
	int64_t now = loop_wall_ms();

	status_recompute(ps, now);
	/* Delivery trouble is degradation, not failure: profiles wait in the
	 * spool and nothing is lost until it overflows. */
	rs->spool_bytes = 0;
	rs->spool_dropped = 0;
	if (s) {
		struct cap_pusher_stats st;
		cap_pusher_stats(s->pusher, &st);
		rs->spool_bytes = (int64_t)st.spool_bytes;
		rs->spool_dropped = (int64_t)st.drops;
		if (st.profefe_down) {
			char msg[256];
			snprintf(msg, sizeof(msg),
			         "profefe at %s is unreachable; %llu profiles (%llu bytes) are "
			         "spooled and will be delivered when it returns",
			         s->url, (unsigned long long)st.spool_files,
			         (unsigned long long)st.spool_bytes);
			rec_status_set_condition(rs, "Degraded", "True", "ProfefeUnavailable", msg,
			                         ps->generation, now);
		}
	}
	ps->status_dirty = 1;
	status_flush(ps);
}

static void on_late(struct loop_timer *t)
{
	struct pstate *ps = t->arg;

	if (ps->status_dirty || ps->targets_pending)
		round_write(ps);
}

static void on_grace(struct loop_timer *t)
{
	struct pstate *ps = t->arg;
	struct rec_acts a = {0};

	rec_ctl_grace(&ps->sm, loop_wall_ms(), &a);
	ctl_apply(ps, &a);
	rec_acts_free(&a);
}

static void job_free(struct job *j)
{
	free(j->url);
	free(j->target_key);
	free(j->service);
	free(j->labels);
	free(j);
}

static void job_unlink(struct job *j)
{
	struct pstate *ps = j->ps;

	if (j->prev)
		j->prev->next = j->next;
	else
		ps->jobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
}

/* Answers a job to the state machine and frees it: the one way a job
 * ends. `kind`/`msg` describe a failure. */
static void job_answer(struct job *j, enum rec_outcome out, const char *kind, const char *msg)
{
	struct pstate *ps = j->ps;
	struct rec_acts a = {0};

	loop_timer_stop(ps->ctl->l, &j->start);
	job_unlink(j);
	rec_ctl_captured(&ps->sm, j->cj, out, kind, msg, loop_wall_ms(), &a);
	job_free(j);
	ctl_apply(ps, &a);
	rec_acts_free(&a);
}

/* Counts one capture result in the metrics and the log. */
static void count_result(struct pstate *ps, const char *pod, const char *prof, enum cap_result res,
                         const char *msg, const char *id)
{
	const char *lv[3] = {ps->key, prof, cap_result_name(res)};

	op_metric_add(ps->ctl->f_captures, lv, 1);
	if (res == CAP_RES_OK)
		log_debug("profile stored", "policy", ps->key, "pod", pod, "type", prof, "id", id,
		          NULL);
	else if (res == CAP_RES_EMPTY)
		log_debug("empty profile skipped", "policy", ps->key, "pod", pod, "type", prof,
		          NULL);
	else if (res != CAP_RES_CANCELLED)
		log_warn("capture failed", "policy", ps->key, "pod", pod, "type", prof, "result",
		         cap_result_name(res), "error", msg, NULL);
}

static enum rec_outcome outcome_of(enum cap_result res)
{
	switch (res) {
	case CAP_RES_OK:
		return REC_OUT_STORED;
	case CAP_RES_EMPTY:
		return REC_OUT_EMPTY;
	case CAP_RES_CANCELLED:
		return REC_OUT_CANCELLED;
	default:
		return REC_OUT_FAILED;
	}
}

/* The origin we give each profile, so its delivery result (possibly after
 * a restart, from the spool) finds its policy and round:
 * "ns/policy|ns/pod|type|uid|round-ms". Kubernetes names never contain '|'. */
static char *origin_make(const struct pstate *ps, const struct rec_ctl_job *cj)
{
	char *o;

	if (asprintf(&o, "%s|%s|%s|%s|%" PRId64, ps->key, cj->pod, ppop_ptype_name(cj->type),
	             ps->uid ? ps->uid : "", cj->round_ms) < 0)
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
	struct rec_acts a = {0};
	struct pstate *ps;
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
	count_result(ps, f[1], f[2], res, message, id);
	rec_ctl_delivered(&ps->sm, f[4] ? strtoll(f[4], NULL, 10) : 0, f[1], f[2], outcome_of(res),
	                  cap_result_name(res), message, id, loop_wall_ms(), &a);
	ctl_apply(ps, &a);
	rec_acts_free(&a);
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
	struct cap_pusher_opts po = {.spool_max_bytes = c->o.spool_max_bytes,
	                             .spool_budget = c->spool_budget,
	                             .max_inflight = 32,
	                             .replay_inflight = 32};
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

/* Hands a captured profile to its sink; the result comes back through
 * on_push_result(). Takes `body`. Returns 0, or -1 when it could not be
 * handed over (the failure is then the caller's to answer). */
static int deliver(struct job *j, char *body, size_t len, const char **why)
{
	struct pstate *ps = j->ps;
	struct op_ctl *c = ps->ctl;
	const char *url = policy_url(ps);
	struct cap_push_meta meta = {.service = j->service,
	                             .type = ppop_ptype_profefe(j->type),
	                             .labels = j->labels,
	                             .instance_id = j->cj->name,
	                             .created_ms = j->created_ms};
	struct sink *s;
	char *origin;
	int rc;

	*why = "cannot set up delivery";
	if (!url) {
		free(body);
		*why = "no profefe URL: set spec.profefeURL or --profefe-url";
		return -1;
	}
	s = sink_for(c, url);
	origin = origin_make(ps, j->cj);
	if (!s || !origin) {
		free(body);
		free(origin);
		return -1;
	}
	meta.origin = origin;
	rc = cap_pusher_submit_take(s->pusher, &meta, body, len);
	free(origin);
	if (rc != 0) {
		*why = "cannot queue the profile for delivery (spool not writable?)";
		return -1;
	}
	if (c->shutting_down)
		sink_flush(s); /* shutdown waits for this push too */
	return 0;
}

static void on_fetched(void *arg, struct cap_fetch_result *r)
{
	struct job *j = arg;
	struct pstate *ps = j->ps;
	const char *tv[] = {j->prof_name};
	const char *why;
	char *body;
	size_t len;

	j->fetching = 0;
	op_metric_observe(ps->ctl->f_duration, tv, (double)r->elapsed_ms / 1000.0);
	/* From the slot to the request on the wire: the timer's lateness (a
	 * busy loop turn) plus the wait for a fetch slot or the pod's CPU. */
	if (r->res != CAP_RES_CANCELLED) {
		int64_t late = j->created_ms - j->planned_ms;
		op_metric_observe(ps->ctl->f_start_delay, tv,
		                  (double)((late > 0 ? (uint64_t)late : 0) + r->queued_ms) /
		                          1000.0);
	}
	op_metric_add(ps->ctl->f_bytes, tv, (double)r->body_len);
	if (r->res != CAP_RES_OK) {
		if (r->res != CAP_RES_CANCELLED)
			count_result(ps, j->cj->pod, j->prof_name, r->res, r->message, NULL);
		job_answer(j, outcome_of(r->res), cap_result_name(r->res), r->message);
		return;
	}
	/* Captured: the round now waits on the delivery, answered by
	 * on_push_result(); a profile that cannot be handed over is a
	 * failure of this capture. */
	body = cap_fetch_take_body(r, &len);
	if (deliver(j, body, len, &why) == 0) {
		job_answer(j, REC_OUT_CAPTURED, NULL, NULL);
		return;
	}
	count_result(ps, j->cj->pod, j->prof_name, CAP_RES_INTERNAL, why, NULL);
	job_answer(j, REC_OUT_FAILED, "internal", why);
}

/* The job's spread slot came: start the capture if its pod is still the
 * one planned (uid, IP) and still selected; a capture must never reach a
 * pod that left, or another pod that took over its IP. */
static void on_job_start(struct loop_timer *t)
{
	struct job *j = t->arg;
	struct pstate *ps = j->ps;
	const struct rec_pod *pod = kube_informer_get(ps->ctl->pods, j->cj->ns, j->cj->name);
	struct cap_request req = {.url = j->url,
	                          .target_key = j->target_key,
	                          .type = j->type,
	                          .seconds = j->seconds,
	                          .timeout_ms = j->timeout_ms};

	if (!rec_ctl_may_start(ps->pol, j->cj, pod)) {
		const char *lv[] = {ps->key, j->prof_name, "target_gone"};
		op_metric_add(ps->ctl->f_captures, lv, 1);
		log_debug("capture not started: the pod left the selection", "policy", ps->key,
		          "pod", j->cj->pod, "type", j->prof_name, NULL);
		job_answer(j, REC_OUT_CANCELLED, "target_gone", NULL);
		return;
	}
	j->created_ms = loop_wall_ms();
	j->fetching = 1;
	if (cap_fetch_start(ps->ctl->fetcher, &req, on_fetched, j, &j->fetch_id) != 0) {
		j->fetching = 0;
		count_result(ps, j->cj->pod, j->prof_name, CAP_RES_INTERNAL,
		             "cannot start the capture", NULL);
		job_answer(j, REC_OUT_FAILED, "internal", "cannot start the capture");
	}
}

/* START: the I/O side of a job the state machine planned, armed for its
 * spread slot. Failing that, the job is answered as failed at once. */
static void job_start(struct pstate *ps, struct rec_ctl_job *cj, int64_t at_ms)
{
	struct op_ctl *c = ps->ctl;
	const struct rec_pod *pod = kube_informer_get(c->pods, cj->ns, cj->name);
	const struct rec_profile *prof = NULL;
	struct job *j = calloc(1, sizeof(*j));
	struct rec_kvs kvs = {0};
	char url[REC_URL_MAX], key[128], err[256];
	struct rec_target t;
	size_t i;

	for (i = 0; ps->pol && i < ps->pol->nprofiles; i++)
		if (ps->pol->profiles[i].type == cj->type)
			prof = &ps->pol->profiles[i];
	if (!j) {
		struct rec_acts a = {0};
		rec_ctl_captured(&ps->sm, cj, REC_OUT_FAILED, "internal", "out of memory",
		                 loop_wall_ms(), &a);
		ctl_apply(ps, &a);
		rec_acts_free(&a);
		return;
	}
	j->ps = ps;
	j->cj = cj;
	cj->user = j;
	j->prof_name = ppop_ptype_name(cj->type);
	j->type = cj->type;
	loop_timer_init(&j->start, on_job_start, j);
	j->next = ps->jobs;
	if (ps->jobs)
		ps->jobs->prev = j;
	ps->jobs = j;
	if (!pod || !prof || rec_target_resolve(ps->pol, pod, &t, err, sizeof(err)) != 0 ||
	    rec_target_url(&t, prof, url, sizeof(url)) != 0 ||
	    cap_target_key(t.host, (unsigned)t.port, key, sizeof(key)) != 0 ||
	    rec_target_labels(ps->pol, pod, prof, &kvs) != 0)
		goto fail;
	j->labels = ppop_labels_encode(kvs.v, kvs.n);
	rec_kvs_free(&kvs);
	j->url = strdup(url);
	j->target_key = strdup(key);
	j->service = strdup(t.service);
	if (!j->labels || !j->url || !j->target_key || !j->service)
		goto fail;
	j->seconds = prof->type == PPOP_PT_CPU ? (uint32_t)prof->seconds : 0;
	j->timeout_ms = (uint32_t)ps->pol->timeout_seconds * 1000u;
	j->planned_ms = at_ms;
	if (loop_timer_start_wall(c->l, &j->start, at_ms) != 0)
		goto fail;
	return;
fail:
	rec_kvs_free(&kvs);
	log_error("cannot plan a capture", "policy", ps->key, "pod", cj->pod, NULL);
	job_answer(j, REC_OUT_FAILED, "internal", "cannot plan the capture");
}

/* CANCEL: a running capture is cancelled (its callback answers it); one
 * waiting for its spread slot is answered here. */
static void job_cancel(struct rec_ctl_job *cj)
{
	struct job *j = cj->user;

	if (j->fetching)
		cap_fetch_cancel(j->ps->ctl->fetcher, j->fetch_id); /* answers j */
	else
		job_answer(j, REC_OUT_CANCELLED, NULL, NULL);
}

/* Carries out the state machine's actions, in order. Steps taken while
 * carrying them out (a cancelled capture answering) use lists of their
 * own. */
static void ctl_apply(struct pstate *ps, struct rec_acts *a)
{
	struct op_ctl *c = ps->ctl;
	size_t i;

	for (i = 0; i < a->n; i++) {
		struct rec_act *x = &a->v[i];
		switch (x->type) {
		case REC_ACT_FIRE:
			arm_fire(ps, x->at_ms);
			break;
		case REC_ACT_START:
			job_start(ps, x->job, x->at_ms);
			break;
		case REC_ACT_CANCEL:
			job_cancel(x->job);
			break;
		case REC_ACT_GRACE:
			if (x->at_ms <= 0)
				loop_timer_stop(c->l, &ps->grace);
			else
				loop_timer_start_wall(c->l, &ps->grace, x->at_ms);
			break;
		case REC_ACT_WRITE:
			round_write(ps);
			break;
		case REC_ACT_EVENT:
			policy_event(ps, "Warning", x->reason, x->key, x->msg);
			break;
		case REC_ACT_COUNT: {
			const char *lv[] = {ps->key, x->msg, x->reason};
			op_metric_add(c->f_captures, lv, 1);
			if (strcmp(x->reason, "invalid_target") == 0)
				log_warn("pod cannot be captured", "policy", ps->key, "pod", x->key,
				         NULL);
			break;
		}
		}
	}
	if (a->oom) {
		log_error("out of memory carrying out a decision; retrying", "policy", ps->key,
		          NULL);
		loop_timer_start(c->l, &ps->requeue, loop_backoff_next(&ps->backoff));
	}
	/* Late news (a delivery of a round let go, e.g. a spool replayed
	 * after a restart) goes out with the next write, or within a second
	 * when none comes (a suspended policy has no more rounds). */
	if (ps->sm.dirty) {
		ps->sm.dirty = 0;
		ps->status_dirty = 1;
		if (!loop_timer_active(&ps->late))
			loop_timer_start(c->l, &ps->late, 1000);
	}
}

struct pods_ctx {
	const struct rec_policy *pol;
	const struct rec_pod **v;
	size_t n, cap;
	int oom;
};

/* Collects the round's targets only: the array is as long as the
 * policy's targets, not the whole pod cache. */
static void collect_pod(void *arg, struct rec_pod *pod)
{
	struct pods_ctx *pc = arg;

	if (pc->oom || !rec_pod_selected(pc->pol, pod) || !rec_pod_capturable(pod))
		return;
	if (pc->n == pc->cap) {
		size_t cap = pc->cap ? 2 * pc->cap : 64;
		const struct rec_pod **v = reallocarray(pc->v, cap, sizeof(*v));
		if (!v) {
			pc->oom = 1;
			return;
		}
		pc->v = v;
		pc->cap = cap;
	}
	pc->v[pc->n++] = pod;
}

static void on_fire(struct loop_timer *t)
{
	struct pstate *ps = t->arg;
	struct op_ctl *c = ps->ctl;
	struct pods_ctx pc = {.pol = ps->pol};
	struct rec_acts a = {0};
	int capture = !c->shutting_down && (!c->o.leader_elect || c->leading);
	char at[32];
	int64_t round;

	/* A policy that may not run selects nothing; the state machine still
	 * plans its next round (none) from an empty list. */
	if (ps->pol && ps->pol->valid)
		policy_pods_foreach(ps, collect_pod, &pc);
	if (pc.oom) {
		free(pc.v);
		arm_fire(ps, loop_wall_ms() + 1000); /* try again in a second */
		return;
	}
	round = rec_ctl_fire(&ps->sm, ps->pol, pc.v, pc.n, c->o.spread_ms, capture, loop_wall_ms(),
	                     &a);
	/* The round's name, its scheduled time, next to the log's own time
	 * shows how late it started (a stalled loop) and that it never
	 * started early. */
	if (round > 0 && capture)
		log_debug("round started", "policy", ps->key, "scheduled",
		          rec_time_format(round, at, sizeof(at)), NULL);
	free(pc.v);
	ctl_apply(ps, &a);
	rec_acts_free(&a);
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
	static const double delay_secs[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5};
	struct op_metrics *m = c->m;

	c->f_captures = op_metrics_family(m, "profefe_operator_captures_total",
	                                  "Captures by policy, profile type and result.",
	                                  OP_COUNTER, pol_type_res, 3, NULL, 0);
	c->f_duration = op_metrics_family(m, "profefe_operator_capture_duration_seconds",
	                                  "Time to fetch one profile from a pod.", OP_HISTOGRAM,
	                                  type_only, 1, secs, sizeof(secs) / sizeof(secs[0]));
	c->f_start_delay = op_metrics_family(
	        m, "profefe_operator_capture_start_delay_seconds",
	        "Time from a capture's planned slot in its round to its request being sent: "
	        "the event loop's lateness plus the wait for a fetch slot or the pod's CPU.",
	        OP_HISTOGRAM, type_only, 1, delay_secs, sizeof(delay_secs) / sizeof(delay_secs[0]));
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
	c->f_lists = op_metrics_family(m, "profefe_operator_lists_total",
	                               "Full lists read into a cache: the first, then each relist "
	                               "(after 410 Gone, its resourceVersion compacted away).",
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
	return c->f_captures && c->f_duration && c->f_start_delay && c->f_bytes && c->f_inflight &&
	                       c->f_spool_bytes && c->f_spool_files && c->f_spool_drops &&
	                       c->f_deliveries && c->f_watch_restarts && c->f_lists &&
	                       c->f_status_writes && c->f_leader && c->f_policies && c->f_targets &&
	                       c->f_pods && c->f_events
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

/* Splits a copy of the comma list `s` (NULL: empty) into *v, *n; the
 * strings live in *buf. Returns 0 or -ENOMEM. */
static int split_list(const char *s, char **buf, const char *const **v, size_t *n)
{
	const char **out, *q;
	size_t k = 1;
	char *p, *save = NULL;

	*v = NULL;
	*n = 0;
	if (!s)
		return 0;
	for (q = s; *q; q++)
		k += *q == ',';
	if (!(*buf = strdup(s)) || !(out = calloc(k, sizeof(*out))))
		return -ENOMEM;
	for (p = strtok_r(*buf, ",", &save); p; p = strtok_r(NULL, ",", &save))
		out[(*n)++] = p;
	*v = out;
	return 0;
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
	loop_timer_init(&c->cpol_probe, cpol_probe, c);
	/* Soon after an install that adds the CRD, then every 30 s. */
	c->cpol_backoff = (struct loop_backoff){.base_ms = 1000, .max_ms = 30000};
	c->grants.default_url = c->o.profefe_url;
	rc = register_metrics(c);
	if (!rc)
		rc = rec_polidx_new(&c->pol_idx);
	if (!rc)
		rc = rec_podidx_new(&c->pod_idx);
	if (!rc)
		rc = split_list(o->allow_cross_ns, &c->grant_buf[0], &c->grants.cross_ns,
		                &c->grants.ncross_ns);
	if (!rc)
		rc = split_list(o->allowed_urls, &c->grant_buf[1], &c->grants.urls,
		                &c->grants.nurls);
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
	/* One budget for every sink's spool: a tenant's dead profefeURL must
	 * not multiply the disk the operator may fill. */
	rc = cap_spool_budget_new(o->spool_max_bytes, &c->spool_budget);
	if (rc)
		goto err;
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

static int cpols_start(struct op_ctl *c)
{
	static const struct kube_informer_ops cpol_ops = {.transform = cpol_transform,
	                                                  .free_value = pol_free,
	                                                  .on_add = pol_add,
	                                                  .on_update = pol_update,
	                                                  .on_delete = pol_delete,
	                                                  .on_synced = pol_synced};
	/* Watched even with --namespace: a cluster policy reaches only the
	 * pods the operator watches. */
	struct kube_informer_opts o = {
	        .group = PPOL_GROUP, .version = PPOL_VERSION, .resource = CPOL_RESOURCE};

	return kube_informer_start(c->kc, &o, &cpol_ops, c, &c->cpols);
}

static void cpol_probed(void *arg, const struct kube_response *r)
{
	struct op_ctl *c = arg;

	c->cpol_call = NULL;
	/* Missing, or not ours to read (a new image on an older install's
	 * RBAC): run without cluster policies rather than never be ready. */
	if (r->status == 404 || r->status == 403) {
		if (c->cpols_absent != (int)r->status && r->status == 404)
			log_warn(
			        "the ClusterProfilingPolicy CRD is not installed; cluster policies "
			        "are not watched until it is (kubectl apply -f "
			        "crd/clusterprofilingpolicies.profefe.com.yaml)",
			        NULL);
		else if (c->cpols_absent != (int)r->status)
			log_warn("the operator may not list ClusterProfilingPolicies; cluster "
			         "policies are not watched until its RBAC allows it (kubectl apply "
			         "-k config/rbac)",
			         "error", r->message, NULL);
		c->cpols_absent = (int)r->status;
		loop_timer_start(c->l, &c->cpol_probe, loop_backoff_next(&c->cpol_backoff));
		return;
	}
	/* Anything else, errors included, is the informer's to retry. */
	c->cpols_absent = 0;
	if (cpols_start(c) != 0) {
		log_error("cannot watch ClusterProfilingPolicies; retrying", NULL);
		loop_timer_start(c->l, &c->cpol_probe, loop_backoff_next(&c->cpol_backoff));
	}
}

/* Asks whether the resource exists before watching it, so an informer
 * never retries a 404 forever while readiness waits on it. */
static void cpol_probe(struct loop_timer *t)
{
	struct op_ctl *c = t->arg;
	char path[256];

	if (c->cpols || c->cpol_call || c->freeing)
		return;
	if (kube_path(path, sizeof(path), PPOL_GROUP, PPOL_VERSION, NULL, CPOL_RESOURCE, NULL,
	              NULL) != 0 ||
	    strlen(path) + sizeof("?limit=1") > sizeof(path))
		return;
	strcat(path, "?limit=1");
	if (kube_request_raw(c->kc, "GET", path, NULL, 0, NULL, cpol_probed, c, &c->cpol_call) != 0)
		loop_timer_start(c->l, &c->cpol_probe, loop_backoff_next(&c->cpol_backoff));
}

int op_ctl_start(struct op_ctl *c)
{
	static const struct kube_informer_ops pol_ops = {.transform = pol_transform,
	                                                 .free_value = pol_free,
	                                                 .on_add = pol_add,
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
	cpol_probe(&c->cpol_probe);
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
	return c->pols && c->pods && kube_informer_synced(c->pols) &&
	       kube_informer_synced(c->pods) &&
	       (c->cpols_absent || (c->cpols && kube_informer_synced(c->cpols)));
}

/* True when the operator's default sink or a policy that may run sends
 * to `s`. */
static int sink_used(const struct op_ctl *c, const struct sink *s)
{
	const struct pstate *ps;

	if (c->o.profefe_url && strcmp(c->o.profefe_url, s->url) == 0)
		return 1;
	for (ps = c->states; ps; ps = ps->next) {
		const char *u = policy_url(ps);
		if (!ps->gone && ps->pol && ps->pol->valid && u && strcmp(u, s->url) == 0)
			return 1;
	}
	return 0;
}

/* Frees the sinks no policy sends to any more, once they hold nothing:
 * a spooled profile stays (and counts against the budget) until it is
 * delivered or dropped. */
static void sinks_gc(struct op_ctl *c)
{
	struct sink **pp = &c->sinks, *s;

	if (c->shutting_down || c->freeing)
		return;
	while ((s = *pp)) {
		if (sink_used(c, s) || !cap_pusher_idle(s->pusher)) {
			pp = &s->next;
			continue;
		}
		*pp = s->next;
		log_info("profefe sink unused: freed", "url", s->url, NULL);
		cap_pusher_free(s->pusher);
		cap_profefe_free(s->client);
		free(s->url);
		free(s);
	}
}

/* Refreshes gauges that are cheaper to read than to track, and frees the
 * sinks nothing uses. */
void op_ctl_update_gauges(struct op_ctl *c);
void op_ctl_update_gauges(struct op_ctl *c)
{
	struct cap_fetcher_stats fs;
	struct kube_informer_stats is;
	const char *pv[] = {PPOL_RESOURCE}, *cv[] = {CPOL_RESOURCE}, *dv[] = {"pods"};
	size_t n = 0;
	struct pstate *ps;

	sinks_gc(c);
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
		op_metric_set_counter(c->f_lists, dv, (double)is.lists);
	}
	if (c->pols) {
		kube_informer_stats(c->pols, &is);
		op_metric_set_counter(c->f_watch_restarts, pv, (double)is.restarts);
		op_metric_set_counter(c->f_lists, pv, (double)is.lists);
	}
	if (c->cpols) {
		kube_informer_stats(c->cpols, &is);
		op_metric_set_counter(c->f_watch_restarts, cv, (double)is.restarts);
		op_metric_set_counter(c->f_lists, cv, (double)is.lists);
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
			if (!j->fetching)
				job_answer(j, REC_OUT_CANCELLED, NULL, NULL);
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
	c->freeing = 1;
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
	kube_informer_free(c->cpols);
	kube_call_cancel(c->cpol_call);
	loop_timer_stop(c->l, &c->cpol_probe);
	kube_informer_free(c->pods);
	free(c->by_key);
	rec_podidx_free(c->pod_idx);
	rec_polidx_free(c->pol_idx);
	kube_recorder_free(c->rec);
	cap_fetcher_free(c->fetcher);
	for (s = c->sinks; s; s = sn) {
		sn = s->next;
		cap_pusher_free(s->pusher);
		cap_profefe_free(s->client);
		free(s->url);
		free(s);
	}
	cap_spool_budget_free(c->spool_budget);
	free(c->ns_copy);
	free(c->profefe_copy);
	free(c->spool_copy);
	free(c->lease_ns_copy);
	free(c->lease_name_copy);
	free(c->id_copy);
	free((void *)c->grants.cross_ns);
	free((void *)c->grants.urls);
	free(c->grant_buf[0]);
	free(c->grant_buf[1]);
	free(c);
}
