/* kube/tests/integ_leader.c: Lease leader election between two clients
 * against a real kube-apiserver.
 *
 *	kube_integ_leader KUBECONFIG
 *
 * One candidate leads; the other waits. When the leader dies without
 * releasing, the other takes over only after the lease duration has passed
 * on its own clock, and leaseTransitions goes up. A released Lease is taken
 * over at once. A leader whose Lease is taken from under it stops leading.
 */
#include "kube/kube_int.h"
#include "kube/tests/integ_common.h"
#include "loop/loop.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct loop *L;
static struct kube_client *ADMIN;
static char NS[64], LEASE_PATH[256];

struct cand {
	const char *id;
	struct kube_client *kc;
	struct kube_leader *le;
	int started, stopped;
	uint64_t started_ms;
};

static void on_started(void *arg)
{
	struct cand *c = arg;

	c->started++;
	c->started_ms = loop_now_ms(L);
	integ_note("%s started leading", c->id);
}

static void on_stopped(void *arg)
{
	struct cand *c = arg;

	c->stopped++;
	integ_note("%s stopped leading", c->id);
}

static const struct kube_leader_ops ops = {on_started, on_stopped};

static void campaign(struct cand *c)
{
	struct kube_leader_opts o = {.ns = NS, .name = "integ-lock", .identity = c->id};

	integ_check(kube_leader_start(c->kc, &o, &ops, c, &c->le) == 0, "%s campaigns", c->id);
}

static int leads(void *arg)
{
	struct cand *c = arg;

	return c->le && kube_leader_is_leader(c->le);
}

/* Reads holderIdentity, leaseTransitions and leaseDurationSeconds. */
static void lease_state(char *holder, size_t n, int *transitions, int *duration)
{
	struct json_object *r = NULL, *spec, *v;

	*transitions = *duration = -1;
	holder[0] = '\0';
	if (integ_do(L, ADMIN, "GET", LEASE_PATH, NULL, NULL, &r) != 200 ||
	    !json_object_object_get_ex(r, "spec", &spec)) {
		json_object_put(r);
		return;
	}
	if (json_object_object_get_ex(spec, "holderIdentity", &v))
		snprintf(holder, n, "%s", json_object_get_string(v));
	*transitions = json_object_object_get_ex(spec, "leaseTransitions", &v)
	                       ? json_object_get_int(v)
	                       : 0;
	if (json_object_object_get_ex(spec, "leaseDurationSeconds", &v))
		*duration = json_object_get_int(v);
	json_object_put(r);
}

static int released;

static void on_released(void *arg)
{
	(void)arg;
	released = 1;
}

static int is_released(void *arg)
{
	(void)arg;
	return released;
}

static void steal(void)
{
	char body[1024], now[40];
	struct json_object *r = NULL, *spec;

	integ_do(L, ADMIN, "GET", LEASE_PATH, NULL, NULL, &r);
	kube__format_time(loop_wall_ms(), 1, now, sizeof(now));
	json_object_object_get_ex(r, "spec", &spec);
	json_object_object_add(spec, "holderIdentity", json_object_new_string("intruder"));
	json_object_object_add(spec, "renewTime", json_object_new_string(now));
	json_object_object_add(spec, "leaseDurationSeconds", json_object_new_int(60));
	snprintf(body, sizeof(body), "%s", json_object_to_json_string(r));
	integ_check(integ_do(L, ADMIN, "PUT", LEASE_PATH, body, NULL, NULL) == 200,
	            "an intruder overwrote the Lease");
	json_object_put(r);
}

int main(int argc, char **argv)
{
	struct cand a = {.id = "cand-a"}, b = {.id = "cand-b"};
	char holder[64];
	int trans, dur;
	uint64_t t0, waited;

	if (argc < 2) {
		fprintf(stderr, "usage: %s KUBECONFIG\n", argv[0]);
		return 2;
	}
	if (loop_new(&L))
		return 2;
	ADMIN = integ_client(L, argv[1], NULL);
	a.kc = integ_client(L, argv[1], NULL);
	b.kc = integ_client(L, argv[1], NULL);
	integ_namespace(L, ADMIN, "kube-integ-leader", NS, sizeof(NS));
	kube_path(LEASE_PATH, sizeof(LEASE_PATH), "coordination.k8s.io", "v1", NS, "leases",
	          "integ-lock", NULL);
	integ_note("namespace %s", NS);

	campaign(&a);
	integ_check(integ_wait(L, leads, &a, 5000), "cand-a leads (created the Lease)");
	campaign(&b);
	integ_sleep(L, 6000);
	integ_check(!kube_leader_is_leader(b.le) && kube_leader_is_leader(a.le),
	            "after 6 s cand-b still waits while cand-a renews");
	lease_state(holder, sizeof(holder), &trans, &dur);
	integ_check(!strcmp(holder, "cand-a") && trans == 0 && dur == 15,
	            "Lease: holder %s, transitions %d, duration %d s", holder, trans, dur);

	integ_note("cand-a dies without releasing");
	kube_leader_free(a.le);
	a.le = NULL;
	t0 = loop_now_ms(L);
	integ_check(integ_wait(L, leads, &b, 25000), "cand-b took over");
	waited = loop_now_ms(L) - t0;
	integ_check(waited >= 12000 && waited <= 22000,
	            "only once the lease had expired on cand-b's clock (%llu ms after the holder "
	            "died; lease 15 s)",
	            (unsigned long long)waited);
	lease_state(holder, sizeof(holder), &trans, &dur);
	integ_check(!strcmp(holder, "cand-b") && trans == 1, "Lease: holder %s, transitions %d",
	            holder, trans);

	campaign(&a);
	integ_sleep(L, 3000);
	integ_check(!kube_leader_is_leader(a.le), "restarted cand-a waits");

	integ_note("cand-b releases the Lease (shutdown)");
	t0 = loop_now_ms(L);
	kube_leader_release(b.le, on_released, NULL);
	integ_check(integ_wait(L, is_released, NULL, 5000) && b.stopped == 1,
	            "release finished and cand-b's stopped callback ran");
	lease_state(holder, sizeof(holder), &trans, &dur);
	integ_check(integ_wait(L, leads, &a, 6000), "cand-a took over the released Lease");
	waited = loop_now_ms(L) - t0;
	integ_check(waited < 5000, "without waiting out the lease (%llu ms)",
	            (unsigned long long)waited);
	lease_state(holder, sizeof(holder), &trans, &dur);
	integ_check(!strcmp(holder, "cand-a") && trans == 2, "Lease: holder %s, transitions %d",
	            holder, trans);

	steal();
	integ_check(integ_wait(L, leads, &a, 1) == 1, "cand-a still thinks it leads");
	{
		int stopped_before = a.stopped;
		struct cand *pa = &a;

		for (int i = 0; i < 60 && a.stopped == stopped_before; i++)
			integ_sleep(L, 100);
		integ_check(a.stopped == stopped_before + 1 && !kube_leader_is_leader(pa->le),
		            "cand-a noticed the Lease changed hands and stopped leading");
	}
	kube_leader_free(a.le);
	kube_leader_free(b.le);
	kube_client_free(a.kc);
	kube_client_free(b.kc);
	kube_client_free(ADMIN);
	loop_free(L);
	printf("%s: %d failure(s)\n", argv[0], integ_failures);
	return integ_failures ? 1 : 0;
}
