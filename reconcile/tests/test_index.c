/* The pod and policy indexes: what they find, what they cost (how many
 * candidates a pod gets), and that they follow changes. */
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

static struct rec_pod *pod_make(const char *ns, const char *name, const char *labels)
{
	char buf[2048];
	struct rec_pod *pod = NULL;
	struct json_object *o;

	snprintf(buf, sizeof(buf),
	         "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"%s\",\"uid\":\"u-%s\","
	         "\"labels\":{%s},\"annotations\":{\"profefe.com/"
	         "enable\":\"true\"}},\"status\":{\"phase\":\"Running\",\"podIP\":\"10.0.0.1\"}}",
	         name, ns, name, labels);
	o = json_tokener_parse(buf);
	if (!o)
		fail_msg("bad pod JSON: %s", buf);
	assert_int_equal(rec_pod_from_json(o, &pod), 0);
	json_object_put(o);
	return pod;
}

/* spec is the JSON of .spec; ns "" makes a ClusterProfilingPolicy. */
static struct rec_policy *pol_make(const char *ns, const char *name, const char *spec)
{
	char buf[2048];
	struct rec_errs errs = {0};
	struct rec_policy *p = NULL;
	struct json_object *o;

	if (*ns)
		snprintf(buf, sizeof(buf),
		         "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"%s\"},\"spec\":%s}", name,
		         ns, spec);
	else
		snprintf(buf, sizeof(buf), "{\"metadata\":{\"name\":\"%s\"},\"spec\":%s}", name,
		         spec);
	o = json_tokener_parse(buf);
	if (!o)
		fail_msg("bad policy JSON: %s", buf);
	if (*ns)
		rec_policy_parse(o, NULL, NULL, &p, &errs);
	else
		rec_cluster_policy_parse(o, NULL, NULL, &p, &errs);
	assert_non_null(p);
	json_object_put(o);
	return p;
}

#define SEL(x)       "{\"schedule\":\"@every 1m\",\"selector\":" x "}"
#define SEL_NS(x, n) "{\"schedule\":\"@every 1m\",\"selector\":" x ",\"namespaceSelector\":" n "}"

struct hits {
	void *v[64];
	size_t n;
};

static void hit(void *arg, void *owner)
{
	struct hits *h = arg;

	assert_true(h->n < 64);
	h->v[h->n++] = owner;
}

static int has(const struct hits *h, const void *owner)
{
	for (size_t i = 0; i < h->n; i++)
		if (h->v[i] == owner)
			return 1;
	return 0;
}

static struct hits query(struct rec_polidx *x, const struct rec_pod *a, const struct rec_pod *b)
{
	struct hits h = {.n = 0};

	rec_polidx_candidates(x, a, b, hit, &h);
	return h;
}

/* 300 policies, each on its own app: a pod gets only its app's policy
 * and the namespace's unanchored one, not 300 candidates. */
static void test_pod_meets_only_policies_of_its_labels(void **state)
{
	enum { N = 300 };
	struct rec_polidx *x;
	struct rec_policy *p[N + 1];
	struct rec_polidx_ent *e[N + 1] = {0};
	struct rec_pod *pod, *other;
	struct hits h;
	char spec[256], name[32];

	(void)state;
	assert_int_equal(rec_polidx_new(&x), 0);
	for (int i = 0; i < N; i++) {
		snprintf(spec, sizeof(spec), SEL("{\"matchLabels\":{\"app\":\"app-%d\"}}"), i);
		snprintf(name, sizeof(name), "p%d", i);
		p[i] = pol_make("shop", name, spec);
		assert_int_equal(rec_polidx_put(x, &e[i], p[i], p[i]), 0);
	}
	p[N] = pol_make("shop", "all", SEL("{}"));
	assert_int_equal(rec_polidx_put(x, &e[N], p[N], p[N]), 0);

	pod = pod_make("shop", "w1", "\"app\":\"app-17\",\"tier\":\"web\"");
	h = query(x, NULL, pod);
	assert_int_equal(h.n, 2);
	assert_true(has(&h, p[17]));
	assert_true(has(&h, p[N]));
	/* Another namespace: nothing, not even the unanchored policy. */
	other = pod_make("blog", "w2", "\"app\":\"app-17\"");
	h = query(x, NULL, other);
	assert_int_equal(h.n, 0);
	/* A relabel reports the policies of both forms, each once. */
	free(other);
	other = pod_make("shop", "w1", "\"app\":\"app-42\"");
	h = query(x, pod, other);
	assert_int_equal(h.n, 3);
	assert_true(has(&h, p[17]) && has(&h, p[42]) && has(&h, p[N]));

	for (int i = 0; i <= N; i++) {
		rec_polidx_del(x, &e[i]);
		assert_null(e[i]);
		rec_policy_free(p[i]);
	}
	h = query(x, NULL, pod);
	assert_int_equal(h.n, 0);
	rec_polidx_free(x);
	free(pod);
	free(other);
}

/* Re-filing after a spec change moves the policy; deleting takes it out. */
static void test_refiled_policy_follows_its_new_selector(void **state)
{
	struct rec_polidx *x;
	struct rec_policy *p1 = pol_make("shop", "p", SEL("{\"matchLabels\":{\"app\":\"a\"}}"));
	struct rec_policy *p2 = pol_make("shop", "p", SEL("{\"matchLabels\":{\"app\":\"b\"}}"));
	struct rec_polidx_ent *e = NULL;
	struct rec_pod *pa = pod_make("shop", "x", "\"app\":\"a\"");
	struct rec_pod *pb = pod_make("shop", "y", "\"app\":\"b\"");
	int owner;

	(void)state;
	assert_int_equal(rec_polidx_new(&x), 0);
	assert_int_equal(rec_polidx_put(x, &e, p1, &owner), 0);
	assert_int_equal(query(x, NULL, pa).n, 1);
	assert_int_equal(query(x, NULL, pb).n, 0);
	assert_int_equal(rec_polidx_put(x, &e, p2, &owner), 0);
	assert_int_equal(query(x, NULL, pa).n, 0);
	assert_int_equal(query(x, NULL, pb).n, 1);
	assert_ptr_equal(query(x, NULL, pb).v[0], &owner);
	assert_int_equal(rec_polidx_put(x, &e, NULL, &owner), 0);
	assert_null(e);
	assert_int_equal(query(x, NULL, pb).n, 0);
	rec_polidx_free(x);
	rec_policy_free(p1);
	rec_policy_free(p2);
	free(pa);
	free(pb);
}

/* In with several values, Exists, matchNames and cluster policies. */
static void test_anchors_in_exists_names_and_any(void **state)
{
	struct rec_polidx *x;
	struct rec_policy *in = pol_make("shop", "in",
	                                 SEL("{\"matchExpressions\":[{\"key\":\"tier\","
	                                     "\"operator\":\"In\",\"values\":[\"a\","
	                                     "\"b\"]}]}"));
	struct rec_policy *ex = pol_make(
	        "shop", "ex",
	        SEL("{\"matchExpressions\":[{\"key\":\"team\",\"operator\":\"Exists\"}]}"));
	struct rec_policy *names =
	        pol_make("shop", "names", SEL_NS("{}", "{\"matchNames\":[\"blog\",\"mail\"]}"));
	struct rec_policy *cl = pol_make("", "cl", SEL("{\"matchLabels\":{\"app\":\"web\"}}"));
	struct rec_policy *notin = pol_make(
	        "shop", "notin",
	        SEL("{\"matchExpressions\":[{\"key\":\"tier\",\"operator\":\"NotIn\",\"values\":["
	            "\"a\"]}]}"));
	struct rec_polidx_ent *e[5] = {0};
	struct rec_pod *p1 = pod_make("shop", "1", "\"tier\":\"b\",\"team\":\"x\"");
	struct rec_pod *p2 = pod_make("mail", "2", "\"app\":\"web\"");
	struct rec_pod *p3 = pod_make("shop", "3", "\"tier\":\"c\"");
	struct hits h;

	(void)state;
	assert_int_equal(rec_polidx_new(&x), 0);
	assert_int_equal(rec_polidx_put(x, &e[0], in, in), 0);
	assert_int_equal(rec_polidx_put(x, &e[1], ex, ex), 0);
	assert_int_equal(rec_polidx_put(x, &e[2], names, names), 0);
	assert_int_equal(rec_polidx_put(x, &e[3], cl, cl), 0);
	assert_int_equal(rec_polidx_put(x, &e[4], notin, notin), 0);
	h = query(x, NULL, p1);
	assert_int_equal(h.n, 3); /* in (tier=b), ex (team), notin (unanchored) */
	assert_true(has(&h, in) && has(&h, ex) && has(&h, notin));
	h = query(x, NULL, p2);
	assert_int_equal(h.n, 2); /* names (mail), cl (any namespace, app=web) */
	assert_true(has(&h, names) && has(&h, cl));
	h = query(x, NULL, p3);
	assert_int_equal(h.n, 1);
	assert_true(has(&h, notin));
	for (int i = 0; i < 5; i++)
		rec_polidx_del(x, &e[i]);
	rec_polidx_free(x);
	rec_policy_free(in);
	rec_policy_free(ex);
	rec_policy_free(names);
	rec_policy_free(cl);
	rec_policy_free(notin);
	free(p1);
	free(p2);
	free(p3);
}

/* The property the controller relies on, over random policies and pods:
 * every policy that selects a pod is among its candidates. */
static void test_every_selecting_policy_is_a_candidate(void **state)
{
	enum { NP = 60, NPODS = 200 };
	static const char *const nss[] = {"a", "b", "c"};
	static const char *const keys[] = {"app", "tier", "team"};
	static const char *const vals[] = {"x", "y", "z"};
	static const char *const ops[] = {"In", "NotIn", "Exists", "DoesNotExist"};
	struct rec_polidx *x;
	struct rec_policy *p[NP];
	struct rec_polidx_ent *e[NP] = {0};
	unsigned seed = 12345;
	size_t selected = 0;

	(void)state;
	assert_int_equal(rec_polidx_new(&x), 0);
	for (int i = 0; i < NP; i++) {
		char sel[512] = "{\"matchExpressions\":[", spec[768], name[16];
		int nreq = (int)(rand_r(&seed) % 3);
		for (int r = 0; r < nreq; r++) {
			const char *op = ops[rand_r(&seed) % 4];
			char req[128];
			if (!strcmp(op, "In") || !strcmp(op, "NotIn"))
				snprintf(req, sizeof(req),
				         "%s{\"key\":\"%s\",\"operator\":\"%s\",\"values\":[\"%s\","
				         "\"%s\"]}",
				         r ? "," : "", keys[rand_r(&seed) % 3], op,
				         vals[rand_r(&seed) % 3], vals[rand_r(&seed) % 3]);
			else
				snprintf(req, sizeof(req), "%s{\"key\":\"%s\",\"operator\":\"%s\"}",
				         r ? "," : "", keys[rand_r(&seed) % 3], op);
			strcat(sel, req);
		}
		strcat(sel, "]}");
		switch (rand_r(&seed) % 3) {
		case 0:
			snprintf(spec, sizeof(spec), "{\"schedule\":\"@every 1m\",\"selector\":%s}",
			         sel);
			break;
		case 1:
			snprintf(
			        spec, sizeof(spec),
			        "{\"schedule\":\"@every 1m\",\"selector\":%s,\"namespaceSelector\":"
			        "{\"matchNames\":[\"%s\"]}}",
			        sel, nss[rand_r(&seed) % 3]);
			break;
		default:
			snprintf(
			        spec, sizeof(spec),
			        "{\"schedule\":\"@every 1m\",\"selector\":%s,\"namespaceSelector\":"
			        "{\"any\":true}}",
			        sel);
		}
		snprintf(name, sizeof(name), "p%d", i);
		p[i] = pol_make(nss[rand_r(&seed) % 3], name, spec);
		assert_int_equal(rec_polidx_put(x, &e[i], p[i], p[i]), 0);
	}
	for (int k = 0; k < NPODS; k++) {
		char labels[256] = "", name[16];
		for (int j = 0; j < 3; j++)
			if (rand_r(&seed) % 2) {
				char kv[64];
				snprintf(kv, sizeof(kv), "%s\"%s\":\"%s\"", *labels ? "," : "",
				         keys[j], vals[rand_r(&seed) % 3]);
				strcat(labels, kv);
			}
		snprintf(name, sizeof(name), "pod%d", k);
		struct rec_pod *pod = pod_make(nss[rand_r(&seed) % 3], name, labels);
		struct hits h = query(x, pod, NULL);
		for (size_t i = 0; i < h.n; i++)
			for (size_t j = i + 1; j < h.n; j++)
				assert_ptr_not_equal(h.v[i], h.v[j]); /* each at most once */
		for (int i = 0; i < NP; i++)
			if (rec_pod_selected(p[i], pod)) {
				selected++;
				if (!has(&h, p[i]))
					fail_msg("policy p%d selects %s/{%s} but is no candidate",
					         i, pod->ns, labels);
			}
		free(pod);
	}
	assert_true(selected > 100); /* the draw exercised selection at all */
	for (int i = 0; i < NP; i++) {
		rec_polidx_del(x, &e[i]);
		rec_policy_free(p[i]);
	}
	rec_polidx_free(x);
}

/* Pods by namespace: O(1) changes that keep every other pod findable. */
struct seen {
	const struct rec_pod *v[16];
	size_t n;
};

static void see(void *arg, struct rec_pod *pod)
{
	struct seen *s = arg;

	assert_true(s->n < 16);
	s->v[s->n++] = pod;
}

static int seen_has(const struct seen *s, const struct rec_pod *pod)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i] == pod)
			return 1;
	return 0;
}

static void test_pods_by_namespace_follow_adds_updates_deletes(void **state)
{
	struct rec_podidx *x;
	struct rec_pod *p[5], *p1b;
	struct seen s = {.n = 0};

	(void)state;
	assert_int_equal(rec_podidx_new(&x), 0);
	for (int i = 0; i < 4; i++) {
		char name[8];
		snprintf(name, sizeof(name), "p%d", i);
		p[i] = pod_make("shop", name, "");
		assert_int_equal(rec_podidx_change(x, NULL, p[i]), 0);
	}
	p[4] = pod_make("blog", "q", "");
	assert_int_equal(rec_podidx_change(x, NULL, p[4]), 0);
	assert_int_equal(rec_podidx_count(x, "shop"), 4);
	assert_int_equal(rec_podidx_count(x, NULL), 5);

	/* Delete from the middle: the last pod moves into the hole and
	 * must still be found, updated and deleted by its new slot. */
	assert_int_equal(rec_podidx_change(x, p[1], NULL), 0);
	free(p[1]);
	p1b = pod_make("shop", "p3", "\"v\":\"2\"");
	assert_int_equal(rec_podidx_change(x, p[3], p1b), 0);
	free(p[3]);
	p[3] = p1b;
	rec_podidx_foreach_ns(x, "shop", see, &s);
	assert_int_equal(s.n, 3);
	assert_true(seen_has(&s, p[0]) && seen_has(&s, p[2]) && seen_has(&s, p[3]));
	s.n = 0;
	rec_podidx_foreach(x, see, &s);
	assert_int_equal(s.n, 4);
	assert_true(seen_has(&s, p[4]) && seen_has(&s, p[3]));
	/* A pod not in the index, and a namespace change, are refused. */
	assert_int_equal(rec_podidx_change(x, p[4], NULL), 0);
	assert_int_equal(rec_podidx_change(x, p[4], NULL), -ENOENT);
	assert_int_equal(rec_podidx_change(x, p[0], p[4]), -EINVAL);
	for (int i = 0; i < 4; i++)
		if (i != 1)
			assert_int_equal(rec_podidx_change(x, p[i], NULL), 0);
	assert_int_equal(rec_podidx_count(x, NULL), 0);
	s.n = 0;
	rec_podidx_foreach_ns(x, "shop", see, &s);
	assert_int_equal(s.n, 0);
	rec_podidx_free(x);
	for (int i = 0; i < 5; i++)
		if (i != 1)
			free(p[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_pod_meets_only_policies_of_its_labels),
	        cmocka_unit_test(test_refiled_policy_follows_its_new_selector),
	        cmocka_unit_test(test_anchors_in_exists_names_and_any),
	        cmocka_unit_test(test_every_selecting_policy_is_a_candidate),
	        cmocka_unit_test(test_pods_by_namespace_follow_adds_updates_deletes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
