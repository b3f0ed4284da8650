/* operator/controller.h: the ProfilingPolicy controller.
 *
 * Level-based, as controller-runtime does it: watch events only update the
 * informers' caches and mark affected policies dirty in a deduplicating
 * queue; reconcile(policy) recomputes the whole plan (targets, next fire
 * time, status) from the caches. Missed or reordered events cannot leave a
 * wrong schedule, and a relist is just "everything is dirty".
 *
 * A round = every selected Running pod x every profile type, spread over a
 * window by a stable per-pod offset. Captured profiles go to the delivery
 * queue (capture/), results come back into the policy's status, which is
 * written at most once per round and on spec changes.
 */
#ifndef OPERATOR_CONTROLLER_H
#define OPERATOR_CONTROLLER_H

#include <stddef.h>
#include <stdint.h>

struct loop;
struct kube_client;
struct op_metrics;
struct op_ctl;

struct op_ctl_opts {
	const char *ns;          /* watch scope; NULL = all namespaces */
	const char *profefe_url; /* default sink; a policy's profefeURL wins */
	size_t max_inflight;
	uint64_t max_profile_bytes;
	uint64_t max_inflight_bytes; /* all capture bodies at once; 0: the fetcher's default */
	const char *spool_dir;       /* NULL: in memory */
	uint64_t spool_max_bytes;
	uint32_t spread_ms;
	int leader_elect;
	const char *lease_ns, *lease_name, *identity;
	const char *zoneinfo_dir; /* NULL: /usr/share/zoneinfo */
	/* The cluster admin's grants (reconcile/'s struct rec_grants), as
	 * comma lists: namespaces whose policies may select pods elsewhere,
	 * and profefe URLs a policy may name besides profefe_url. NULL: none. */
	const char *allow_cross_ns;
	const char *allowed_urls;
};

/* Creates the controller. `l`, `kc` and `m` are lent and must outlive it.
 * Returns 0 or a negative errno with a message in `err`. */
int op_ctl_new(struct loop *l, struct kube_client *kc, struct op_metrics *m,
               const struct op_ctl_opts *o, struct op_ctl **out, char *err, size_t errlen);

/* Starts the informers and, with leader election, the campaign. */
int op_ctl_start(struct op_ctl *c);

/* 1 once both caches have synced (for /readyz). */
int op_ctl_ready(const struct op_ctl *c);

/* Starts a graceful stop: no new rounds; captures in flight get until
 * `deadline_ms` to finish, then are cancelled; final status writes are
 * flushed and the Lease released. `done` runs once all that is over. */
void op_ctl_shutdown(struct op_ctl *c, uint32_t deadline_ms, void (*done)(void *arg), void *arg);

/* Frees everything. Safe on NULL. */
void op_ctl_free(struct op_ctl *c);

#endif
