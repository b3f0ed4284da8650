/* kube/lease.c: leader election on a coordination.k8s.io/v1 Lease, as
 * client-go's leaderelection package does it.
 *
 * Every retry period a candidate reads the Lease. Clocks differ between
 * machines, so nobody compares renewTime with its own wall clock: a
 * candidate notes on its local monotonic clock when it last saw the Lease
 * record change, and treats the holder as gone only when the record has
 * stood still for leaseDurationSeconds. Taking over increments
 * leaseTransitions.
 *
 * Our own writes are timed from when they were SENT, not answered: the
 * server may have stored the record at any moment in between, and others
 * start counting when they first see it, so only the send time is a safe
 * lower bound (a slow API server must not stretch our lease). A leader
 * stops leading when no write has succeeded within the renew deadline of
 * the last good write's send time, whether or not a request is still in
 * flight, so it stops before its lease can expire elsewhere; and a write
 * answered after that deadline does not make it lead.
 */
#include "kube/kube_int.h"
#include "loop/log.h"
#include "loop/loop.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEASE_REQ_TIMEOUT_MS 5000u

struct kube_leader {
	struct kube_client *kc;
	char *ns, *name, *identity;
	char item[1024];
	char collection[1024];
	uint32_t lease_ms, renew_ms, retry_ms;
	struct kube_leader_ops ops;
	void *arg;
	int leading;
	int stopped; /* kube_leader_release() was called */
	struct loop_timer tick;
	struct loop_timer deadline; /* armed while leading: renewed_ms + renew_ms */
	struct kube_call *call;
	char *obs_record;        /* the Lease spec as last seen, serialized */
	uint64_t obs_ms;         /* local time that record was first seen */
	uint64_t sent_ms;        /* local time the write in flight was sent */
	uint64_t renewed_ms;     /* send time of our last successful write */
	struct json_object *cur; /* the Lease as last read or written */
	void (*release_done)(void *arg);
	void *release_arg;
};

static uint64_t now_ms(struct kube_leader *le)
{
	return loop_now_ms(kube_client_loop(le->kc));
}

static void arm(struct kube_leader *le)
{
	/* client-go adds up to 20% jitter to retries while not leading. */
	uint32_t d = le->retry_ms;

	if (!le->leading)
		d += loop_rand() % (le->retry_ms / 5 + 1);
	loop_timer_start(kube_client_loop(le->kc), &le->tick, d);
}

static void set_leading(struct kube_leader *le, int on)
{
	if (!on)
		loop_timer_stop(kube_client_loop(le->kc), &le->deadline);
	if (le->leading == on)
		return;
	le->leading = on;
	log_info(on ? "kube: became leader" : "kube: stopped leading", "lease", le->name,
	         "identity", le->identity, NULL);
	if (on && le->ops.started)
		le->ops.started(le->arg);
	if (!on && le->ops.stopped)
		le->ops.stopped(le->arg);
}

static const char *spec_str(struct json_object *spec, const char *k)
{
	struct json_object *v;

	if (!json_object_object_get_ex(spec, k, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static int64_t spec_int(struct json_object *spec, const char *k, int64_t dflt)
{
	struct json_object *v;

	if (!json_object_object_get_ex(spec, k, &v) || !json_object_is_type(v, json_type_int))
		return dflt;
	return json_object_get_int64(v);
}

/* Notes the record and, when it changed, the local time it changed. */
static void observe(struct kube_leader *le, struct json_object *lease)
{
	struct json_object *spec = NULL;
	const char *rec;

	json_object_object_get_ex(lease, "spec", &spec);
	rec = spec ? json_object_to_json_string_ext(spec, JSON_C_TO_STRING_PLAIN) : "";
	if (!le->obs_record || strcmp(le->obs_record, rec)) {
		free(le->obs_record);
		le->obs_record = strdup(rec);
		le->obs_ms = now_ms(le);
	}
	json_object_put(le->cur);
	le->cur = json_object_get(lease);
}

/* Builds the spec we write: ours, keeping acquireTime and transitions
 * when we already hold it. `old` may be NULL (creating). */
static struct json_object *our_spec(struct kube_leader *le, struct json_object *old, int release)
{
	struct json_object *s = json_object_new_object();
	const char *holder = old ? spec_str(old, "holderIdentity") : NULL;
	const char *acquired = old ? spec_str(old, "acquireTime") : NULL;
	int ours = holder && !strcmp(holder, le->identity);
	int64_t trans = old ? spec_int(old, "leaseTransitions", 0) : 0;
	char now[40];
	int rc = 0;

	kube__format_time(loop_wall_ms(), 1, now, sizeof(now));
	rc |= kube__jadd_str(s, "holderIdentity", release ? "" : le->identity);
	rc |= kube__jadd(s, "leaseDurationSeconds",
	                 json_object_new_int(release ? 1 : (int32_t)(le->lease_ms / 1000)));
	rc |= kube__jadd_str(s, "acquireTime", ours && acquired && !release ? acquired : now);
	rc |= kube__jadd_str(s, "renewTime", now);
	rc |= kube__jadd(s, "leaseTransitions",
	                 json_object_new_int64(old && !ours && !release ? trans + 1 : trans));
	if (rc) {
		json_object_put(s);
		return NULL;
	}
	return s;
}

/* Fires when the renew deadline has passed without a successful write. */
static void on_deadline(struct loop_timer *t)
{
	struct kube_leader *le = t->arg;

	log_warn("kube: lease not renewed within the renew deadline", "lease", le->name, NULL);
	set_leading(le, 0);
}

/* A write sent at sent_ms succeeded: lead until the renew deadline from
 * that send time, unless it has passed already. */
static void renewed(struct kube_leader *le)
{
	uint64_t now = now_ms(le);

	if (now - le->sent_ms >= le->renew_ms) {
		log_warn("kube: lease write answered after the renew deadline", "lease", le->name,
		         NULL);
		set_leading(le, 0);
		return;
	}
	le->renewed_ms = le->sent_ms;
	loop_timer_start(kube_client_loop(le->kc), &le->deadline,
	                 le->renewed_ms + le->renew_ms - now);
	set_leading(le, 1);
}

static void written(void *arg, const struct kube_response *r)
{
	struct kube_leader *le = arg;

	le->call = NULL;
	if ((r->status == 200 || r->status == 201) && r->json) {
		observe(le, r->json);
		renewed(le);
	} else {
		log_debug("kube: lease write failed", "lease", le->name, "error", r->message, NULL);
		if (le->leading && now_ms(le) - le->renewed_ms > le->renew_ms)
			set_leading(le, 0);
	}
	arm(le);
}

static void write_lease(struct kube_leader *le, struct json_object *lease_take, int create)
{
	struct kube_req_opts o = {
	        .timeout_ms = LEASE_REQ_TIMEOUT_MS, .max_retries = -1, .urgent = 1};
	int rc;

	le->sent_ms = now_ms(le);
	rc = kube_request(le->kc, create ? "POST" : "PUT", create ? le->collection : le->item,
	                  lease_take, &o, written, le, &le->call);

	json_object_put(lease_take);
	if (rc) {
		le->call = NULL;
		arm(le);
	}
}

static void create_lease(struct kube_leader *le)
{
	struct json_object *l = json_object_new_object(), *m = json_object_new_object();
	int rc = 0;

	rc |= kube__jadd_str(m, "name", le->name);
	rc |= kube__jadd_str(m, "namespace", le->ns);
	rc |= kube__jadd_str(l, "apiVersion", "coordination.k8s.io/v1");
	rc |= kube__jadd_str(l, "kind", "Lease");
	rc |= kube__jadd(l, "metadata", m);
	rc |= kube__jadd(l, "spec", our_spec(le, NULL, 0));
	if (rc) {
		json_object_put(l);
		arm(le);
		return;
	}
	write_lease(le, l, 1);
}

static void got(void *arg, const struct kube_response *r)
{
	struct kube_leader *le = arg;
	struct json_object *spec = NULL, *copy = NULL;
	const char *holder;
	int64_t dur_ms;

	le->call = NULL;
	if (r->status == 404) {
		create_lease(le);
		return;
	}
	if (r->status != 200 || !r->json) {
		if (le->leading && now_ms(le) - le->renewed_ms > le->renew_ms)
			set_leading(le, 0);
		arm(le);
		return;
	}
	observe(le, r->json);
	json_object_object_get_ex(r->json, "spec", &spec);
	holder = spec ? spec_str(spec, "holderIdentity") : NULL;
	dur_ms = spec_int(spec, "leaseDurationSeconds", le->lease_ms / 1000) * 1000;
	if (holder && *holder && strcmp(holder, le->identity) &&
	    le->obs_ms + (uint64_t)dur_ms > now_ms(le)) {
		set_leading(le, 0); /* someone else holds a live lease */
		arm(le);
		return;
	}
	if (json_object_deep_copy(r->json, &copy, NULL) || !copy) {
		arm(le);
		return;
	}
	if (kube__jadd(copy, "spec", our_spec(le, spec, 0))) {
		json_object_put(copy);
		arm(le);
		return;
	}
	write_lease(le, copy, 0);
}

static void on_tick(struct loop_timer *t)
{
	struct kube_leader *le = t->arg;
	struct kube_req_opts o = {
	        .timeout_ms = LEASE_REQ_TIMEOUT_MS, .max_retries = -1, .urgent = 1};

	if (le->leading && now_ms(le) - le->renewed_ms > le->renew_ms)
		set_leading(le, 0);
	if (le->call) {
		arm(le);
		return;
	}
	if (kube_request(le->kc, "GET", le->item, NULL, &o, got, le, &le->call)) {
		le->call = NULL;
		arm(le);
	}
}

int kube_leader_start(struct kube_client *kc, const struct kube_leader_opts *opts,
                      const struct kube_leader_ops *ops, void *arg, struct kube_leader **out)
{
	struct kube_leader *le;

	if (!opts || !opts->ns || !opts->name || !opts->identity || !*opts->identity)
		return -EINVAL;
	le = calloc(1, sizeof(*le));
	if (!le)
		return -ENOMEM;
	le->kc = kc;
	le->ns = strdup(opts->ns);
	le->name = strdup(opts->name);
	le->identity = strdup(opts->identity);
	le->lease_ms = opts->lease_ms ? opts->lease_ms : 15000;
	le->renew_ms = opts->renew_deadline_ms ? opts->renew_deadline_ms : 10000;
	le->retry_ms = opts->retry_ms ? opts->retry_ms : 2000;
	if (ops)
		le->ops = *ops;
	le->arg = arg;
	loop_timer_init(&le->tick, on_tick, le);
	loop_timer_init(&le->deadline, on_deadline, le);
	if (!le->ns || !le->name || !le->identity ||
	    kube_path(le->item, sizeof(le->item), "coordination.k8s.io", "v1", le->ns, "leases",
	              le->name, NULL) ||
	    kube_path(le->collection, sizeof(le->collection), "coordination.k8s.io", "v1", le->ns,
	              "leases", NULL, NULL)) {
		kube_leader_free(le);
		return -ENOMEM;
	}
	on_tick(&le->tick);
	*out = le;
	return 0;
}

int kube_leader_is_leader(const struct kube_leader *le)
{
	return le->leading;
}

static void released(void *arg, const struct kube_response *r)
{
	struct kube_leader *le = arg;

	le->call = NULL;
	if (r->status != 200)
		log_warn("kube: lease release failed", "lease", le->name, "error", r->message,
		         NULL);
	if (le->release_done)
		le->release_done(le->release_arg);
}

void kube_leader_release(struct kube_leader *le, void (*done)(void *arg), void *arg)
{
	struct kube_req_opts o = {
	        .timeout_ms = LEASE_REQ_TIMEOUT_MS, .max_retries = -1, .urgent = 1};
	struct json_object *copy = NULL, *spec = NULL;
	int was = le->leading;

	le->stopped = 1;
	loop_timer_stop(kube_client_loop(le->kc), &le->tick);
	kube_call_cancel(le->call);
	le->call = NULL;
	set_leading(le, 0);
	le->release_done = done;
	le->release_arg = arg;
	if (!was || !le->cur || json_object_deep_copy(le->cur, &copy, NULL) || !copy) {
		if (done)
			done(arg);
		return;
	}
	json_object_object_get_ex(le->cur, "spec", &spec);
	if (kube__jadd(copy, "spec", our_spec(le, spec, 1)) ||
	    kube_request(le->kc, "PUT", le->item, copy, &o, released, le, &le->call)) {
		le->call = NULL;
		if (done)
			done(arg);
	}
	json_object_put(copy);
}

void kube_leader_free(struct kube_leader *le)
{
	if (!le)
		return;
	kube_call_cancel(le->call);
	loop_timer_stop(kube_client_loop(le->kc), &le->tick);
	loop_timer_stop(kube_client_loop(le->kc), &le->deadline);
	json_object_put(le->cur);
	free(le->obs_record);
	free(le->ns);
	free(le->name);
	free(le->identity);
	free(le);
}
