/* Pods and capture targets: the compact pod, policy selection, port/path/
 * scheme/service precedence (DESIGN §3-§4), URLs, labels and spreading. */
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

/* A realistic pod, with fields we must drop (managedFields, other
 * annotations, a second container, env). %s slots: labels, annotations,
 * ownerReferences, phase, podIP. */
#define POD_TMPL                                                                                   \
	"{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"web-7d4b9c8f6-x2x9z\","  \
	"\"namespace\":\"shop\",\"uid\":\"6f1d2a8e-1111-4c1e-9d5e-0123456789ab\","                 \
	"\"resourceVersion\":\"4711\",\"generateName\":\"web-7d4b9c8f6-\","                        \
	"\"labels\":{%s},\"annotations\":{%s},\"ownerReferences\":[%s],"                           \
	"\"managedFields\":[{\"manager\":\"kubelet\",\"operation\":\"Update\",\"fieldsV1\":{\"f:"  \
	"status\":{\"f:conditions\":{}}}}]},"                                                      \
	"\"spec\":{\"nodeName\":\"node-a\",\"containers\":[{\"name\":\"app\",\"image\":"           \
	"\"registry.example.com:5000/shop/web:v1.4.2@sha256:abcdef\",\"env\":[{\"name\":\"X\","    \
	"\"value\":\"y\"}],\"ports\":[{\"containerPort\":6060}]},{\"name\":\"sidecar\","           \
	"\"image\":\"envoy:1.29\"}]},"                                                             \
	"\"status\":{\"phase\":\"%s\",\"podIP\":\"%s\",\"conditions\":[{\"type\":"                 \
	"\"PodScheduled\",\"status\":\"True\"},{\"type\":\"Ready\",\"status\":\"True\"}]}}"

static struct rec_pod *make_pod(const char *labels, const char *ann, const char *owners,
                                const char *phase, const char *ip)
{
	char buf[8192];
	struct rec_pod *pod = NULL;

	snprintf(buf, sizeof(buf), POD_TMPL, labels, ann, owners, phase, ip);
	struct json_object *o = json_tokener_parse(buf);
	if (o == NULL)
		fail_msg("bad pod JSON: %s", buf);
	assert_int_equal(rec_pod_from_json(o, &pod), 0);
	json_object_put(o);
	return pod;
}

#define RS_OWNER                                                                                   \
	"{\"apiVersion\":\"apps/v1\",\"kind\":\"ReplicaSet\",\"name\":\"web-7d4b9c8f6\","          \
	"\"controller\":true}"
#define STD_LABELS "\"app\":\"web\",\"pod-template-hash\":\"7d4b9c8f6\""
#define ENABLED    "\"profefe.com/enable\":\"true\""

static struct rec_policy *make_policy(const char *spec)
{
	char buf[2048];
	struct rec_errs errs = {0};
	struct rec_policy *p = NULL;

	snprintf(buf, sizeof(buf),
	         "{\"metadata\":{\"name\":\"web-prof\",\"namespace\":\"shop\"},\"spec\":%s}", spec);
	struct json_object *o = json_tokener_parse(buf);
	assert_non_null(o);
	assert_int_equal(rec_policy_parse(o, NULL, NULL, &p, &errs), 0);
	if (errs.n)
		fail_msg("policy %s: %s: %s", spec, errs.v[0].path, errs.v[0].msg);
	json_object_put(o);
	return p;
}

static void test_pod_from_json_keeps_only_what_we_use(void **state)
{
	struct rec_pod *pod = make_pod(
	        STD_LABELS ",\"app.kubernetes.io/version\":\"1.4.2\"",
	        ENABLED ",\"profefe.com/port\":\"7070\",\"kubectl.kubernetes.io/last-applied-"
	                "configuration\":\"{...huge...}\",\"prometheus.io/scrape\":\"true\"",
	        "{\"kind\":\"Node\",\"name\":\"node-a\"}," RS_OWNER, "Running", "10.0.0.7");

	assert_string_equal(pod->ns, "shop");
	assert_string_equal(pod->name, "web-7d4b9c8f6-x2x9z");
	assert_string_equal(pod->uid, "6f1d2a8e-1111-4c1e-9d5e-0123456789ab");
	assert_string_equal(pod->node, "node-a");
	assert_string_equal(pod->pod_ip, "10.0.0.7");
	assert_string_equal(pod->owner_kind, "ReplicaSet"); /* the controller, not the first */
	assert_string_equal(pod->owner_name, "web-7d4b9c8f6");
	assert_string_equal(pod->container, "app");
	assert_string_equal(pod->image, "registry.example.com:5000/shop/web:v1.4.2@sha256:abcdef");
	assert_int_equal(pod->phase, REC_POD_RUNNING);
	assert_true(pod->ready);
	assert_int_equal(pod->nlabels, 3);
	assert_string_equal(pod->labels[0].key, "app"); /* sorted */
	assert_string_equal(rec_pod_label(pod, "pod-template-hash"), "7d4b9c8f6");
	assert_int_equal(pod->nann, 2); /* only profefe.com/ annotations */
	assert_string_equal(rec_pod_annotation(pod, REC_ANN_PORT), "7070");
	assert_null(rec_pod_annotation(pod, "prometheus.io/scrape"));
	assert_true(pod->size_bytes <= 1024);
	free(pod);
}

/* The bench's pod (one label, one annotation, the harness's image) in a
 * block of at most 300 bytes: 100,000 of them are cached at once. It was
 * 322 bytes with a 136-byte struct and the resourceVersion kept twice. */
static void test_pod_compact_for_100k(void **state)
{
	const char *js = "{\"metadata\":{\"name\":\"rss-00042\",\"namespace\":\"bench-rss\","
	                 "\"uid\":\"0b6e3f3e-1c1e-4b7e-9d7e-3f5d2a1b9c0d\",\"resourceVersion\":"
	                 "\"1234567\",\"labels\":{\"app\":\"rss\"},\"annotations\":{"
	                 "\"profefe.com/enable\":\"true\"}},\"spec\":{\"nodeName\":\"e2e-node\","
	                 "\"containers\":[{\"name\":\"app\",\"image\":"
	                 "\"example.invalid/pproftarget:v1\"}]},\"status\":{\"phase\":\"Running\","
	                 "\"podIP\":\"127.12.34.56\"}}";
	struct json_object *o = json_tokener_parse(js);
	struct rec_pod *pod = NULL;

	(void)state;
	assert_non_null(o);
	assert_int_equal(rec_pod_from_json(o, &pod), 0);
	json_object_put(o);
	assert_string_equal(pod->image, "example.invalid/pproftarget:v1");
	assert_string_equal(rec_pod_annotation(pod, REC_ANN_ENABLE), "true");
	assert_true(rec_pod_capturable(pod));
	assert_true(pod->size_bytes <= 300);
	free(pod);
}

static void test_pod_default_container_annotation_picks_container(void **state)
{
	struct rec_pod *pod = make_pod(
	        "", "\"kubectl.kubernetes.io/default-container\":\"sidecar\"", "", "Pending", "");

	assert_string_equal(pod->container, "sidecar");
	assert_string_equal(pod->image, "envoy:1.29");
	assert_int_equal(pod->phase, REC_POD_PENDING);
	assert_string_equal(pod->owner_kind, "");
	free(pod);
}

static void test_pod_without_identity_is_refused(void **state)
{
	struct rec_pod *pod = NULL;
	struct json_object *o = json_tokener_parse("{\"metadata\":{\"name\":\"x\"}}");

	assert_int_equal(rec_pod_from_json(o, &pod), -EINVAL);
	assert_null(pod);
	json_object_put(o);
}

static void test_pod_selection(void **state)
{
	static const struct {
		const char *spec, *labels, *ann;
		int want;
	} c[] = {
	        {"{\"schedule\":\"@hourly\"}", STD_LABELS, ENABLED, 1},
	        /* The opt-in annotation is required by default, and must be "true". */
	        {"{\"schedule\":\"@hourly\"}", STD_LABELS, "", 0},
	        {"{\"schedule\":\"@hourly\"}", STD_LABELS, "\"profefe.com/enable\":\"True\"", 0},
	        {"{\"schedule\":\"@hourly\"}", STD_LABELS, "\"profefe.com/enable\":\"false\"", 0},
	        {"{\"schedule\":\"@hourly\",\"podAnnotationRequired\":false}", STD_LABELS, "", 1},
	        /* Selector. */
	        {"{\"schedule\":\"@hourly\",\"selector\":{\"matchLabels\":{\"app\":\"web\"}}}",
	         STD_LABELS, ENABLED, 1},
	        {"{\"schedule\":\"@hourly\",\"selector\":{\"matchLabels\":{\"app\":\"db\"}}}",
	         STD_LABELS, ENABLED, 0},
	        /* Namespaces: own by default; matchNames; any. The pod is in "shop", the
	         * policy in "shop". */
	        {"{\"schedule\":\"@hourly\",\"namespaceSelector\":{\"matchNames\":[\"api\"]}}",
	         STD_LABELS, ENABLED, 0},
	        {"{\"schedule\":\"@hourly\",\"namespaceSelector\":{\"matchNames\":[\"api\","
	         "\"shop\"]}}",
	         STD_LABELS, ENABLED, 1},
	        {"{\"schedule\":\"@hourly\",\"namespaceSelector\":{\"any\":true}}", STD_LABELS,
	         ENABLED, 1},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct rec_policy *p = make_policy(c[i].spec);
		struct rec_pod *pod =
		        make_pod(c[i].labels, c[i].ann, RS_OWNER, "Running", "10.0.0.7");
		if (rec_pod_selected(p, pod) != c[i].want)
			fail_msg("case %zu: %s / {%s}: want %d", i, c[i].spec, c[i].ann, c[i].want);
		free(pod);
		rec_policy_free(p);
	}
}

static void test_cluster_policy_selects_pods_of_every_namespace(void **state)
{
	struct rec_errs errs = {0};
	struct rec_policy *p = NULL;
	struct json_object *o = json_tokener_parse(
	        "{\"metadata\":{\"name\":\"fleet\"},\"spec\":{\"schedule\":\"@hourly\"}}");
	struct rec_pod *pod = make_pod(STD_LABELS, ENABLED, RS_OWNER, "Running", "10.0.0.7");

	assert_int_equal(rec_cluster_policy_parse(o, NULL, NULL, &p, &errs), 0);
	json_object_put(o);
	assert_true(rec_pod_selected(p, pod));
	pod->ns = "other"; /* the block is ours; point at a literal */
	assert_true(rec_pod_selected(p, pod));
	/* Still opt-in: a pod without the annotation is not its target. */
	free(pod);
	pod = make_pod(STD_LABELS, "", RS_OWNER, "Running", "10.0.0.7");
	assert_false(rec_pod_selected(p, pod));
	free(pod);
	rec_policy_free(p);
}

static void test_pod_in_other_namespace_needs_namespace_selector(void **state)
{
	struct rec_policy *p = make_policy("{\"schedule\":\"@hourly\"}");
	struct rec_pod *pod = make_pod(STD_LABELS, ENABLED, RS_OWNER, "Running", "10.0.0.7");

	pod->ns = "other"; /* the block is ours; point at a literal */
	assert_false(rec_pod_selected(p, pod));
	free(pod);
	rec_policy_free(p);
}

static void test_pod_capturable_only_running_with_ip(void **state)
{
	struct rec_pod *a = make_pod("", "", "", "Running", "10.0.0.1");
	struct rec_pod *b = make_pod("", "", "", "Running", "");
	struct rec_pod *c = make_pod("", "", "", "Pending", "10.0.0.1");
	struct rec_pod *d = make_pod("", "", "", "Succeeded", "10.0.0.1");

	assert_true(rec_pod_capturable(a));
	assert_false(rec_pod_capturable(b));
	assert_false(rec_pod_capturable(c));
	assert_false(rec_pod_capturable(d));
	free(a), free(b), free(c), free(d);
}

struct resolve_case {
	const char *spec, *labels, *ann, *owners;
	int rc;
	const char *url_cpu, *url_heap, *service, *err;
};

static void test_target_resolution_precedence(void **state)
{
	static const struct resolve_case c[] = {
	        /* Defaults: spec port/path, Deployment name through the ReplicaSet. */
	        {"{\"schedule\":\"@hourly\"}", STD_LABELS, ENABLED, RS_OWNER, 0,
	         "http://10.0.0.7:6060/debug/pprof/profile?seconds=10",
	         "http://10.0.0.7:6060/debug/pprof/heap", "web", NULL},
	        /* Spec fields. */
	        {"{\"schedule\":\"@hourly\",\"port\":8080,\"path\":\"/internal/pprof\","
	         "\"scheme\":\"https\",\"service\":\"shop-web\"}",
	         STD_LABELS, ENABLED, RS_OWNER, 0,
	         "https://10.0.0.7:8080/internal/pprof/profile?seconds=10",
	         "https://10.0.0.7:8080/internal/pprof/heap", "shop-web", NULL},
	        /* Annotations beat the spec, each on its own. */
	        {"{\"schedule\":\"@hourly\",\"port\":8080,\"service\":\"shop-web\"}", STD_LABELS,
	         ENABLED ",\"profefe.com/port\":\"7070\"", RS_OWNER, 0,
	         "http://10.0.0.7:7070/debug/pprof/profile?seconds=10",
	         "http://10.0.0.7:7070/debug/pprof/heap", "shop-web", NULL},
	        {"{\"schedule\":\"@hourly\",\"path\":\"/a\"}", STD_LABELS,
	         ENABLED ",\"profefe.com/path\":\"/b/\"", RS_OWNER, 0,
	         "http://10.0.0.7:6060/b/profile?seconds=10", "http://10.0.0.7:6060/b/heap", "web",
	         NULL},
	        {"{\"schedule\":\"@hourly\",\"service\":\"shop-web\"}", STD_LABELS,
	         ENABLED ",\"profefe.com/service\":\"checkout\"", RS_OWNER, 0, NULL, NULL,
	         "checkout", NULL},
	        {"{\"schedule\":\"@hourly\"}", STD_LABELS,
	         ENABLED ",\"profefe.com/scheme\":\"https\"", RS_OWNER, 0, NULL,
	         "https://10.0.0.7:6060/debug/pprof/heap", "web", NULL},
	        {"{\"schedule\":\"@hourly\",\"port\":8080,\"path\":\"/a\",\"service\":\"s\"}",
	         STD_LABELS,
	         ENABLED ",\"profefe.com/port\":\"9090\",\"profefe.com/path\":\"/z\","
	                 "\"profefe.com/service\":\"t\"",
	         RS_OWNER, 0, "http://10.0.0.7:9090/z/profile?seconds=10",
	         "http://10.0.0.7:9090/z/heap", "t", NULL},
	        /* An empty service annotation falls through to the spec. */
	        {"{\"schedule\":\"@hourly\",\"service\":\"s\"}", STD_LABELS,
	         ENABLED ",\"profefe.com/service\":\"\"", RS_OWNER, 0, NULL, NULL, "s", NULL},
	        /* Owners. */
	        {"{\"schedule\":\"@hourly\"}", "\"app\":\"web\"", ENABLED, RS_OWNER, 0, NULL, NULL,
	         "web-7d4b9c8f6", NULL}, /* bare ReplicaSet: no pod-template-hash */
	        {"{\"schedule\":\"@hourly\"}", "\"pod-template-hash\":\"zzz\"", ENABLED, RS_OWNER,
	         0, NULL, NULL, "web-7d4b9c8f6", NULL},
	        {"{\"schedule\":\"@hourly\"}", "", ENABLED,
	         "{\"kind\":\"StatefulSet\",\"name\":\"db\",\"controller\":true}", 0, NULL, NULL,
	         "db", NULL},
	        {"{\"schedule\":\"@hourly\"}", "", ENABLED,
	         "{\"kind\":\"DaemonSet\",\"name\":\"agent\",\"controller\":true}", 0, NULL, NULL,
	         "agent", NULL},
	        {"{\"schedule\":\"@hourly\"}", "", ENABLED,
	         "{\"kind\":\"Job\",\"name\":\"backup-28400\",\"controller\":true}", 0, NULL, NULL,
	         "backup-28400", NULL},
	        {"{\"schedule\":\"@hourly\"}", "", ENABLED,
	         "{\"kind\":\"Node\",\"name\":\"node-a\",\"controller\":true}", 0, NULL, NULL,
	         "web-7d4b9c8f6-x2x9z", NULL}, /* static pod: the pod name */
	        {"{\"schedule\":\"@hourly\"}", "", ENABLED, "", 0, NULL, NULL,
	         "web-7d4b9c8f6-x2x9z", NULL},
	        /* An invalid annotation is an error on the pod, never a default. */
	        {"{\"schedule\":\"@hourly\"}", "", ENABLED ",\"profefe.com/port\":\"http\"", "",
	         -EINVAL, NULL, NULL, NULL,
	         "invalid profefe.com/port annotation \"http\": must be an integer between 1 and "
	         "65535"},
	        {"{\"schedule\":\"@hourly\"}", "", ENABLED ",\"profefe.com/port\":\"0\"", "",
	         -EINVAL, NULL, NULL, NULL, "invalid profefe.com/port annotation \"0\""},
	        {"{\"schedule\":\"@hourly\"}", "", ENABLED ",\"profefe.com/port\":\"65536\"", "",
	         -EINVAL, NULL, NULL, NULL, "invalid profefe.com/port annotation \"65536\""},
	        {"{\"schedule\":\"@hourly\"}", "", ENABLED ",\"profefe.com/port\":\"\"", "",
	         -EINVAL, NULL, NULL, NULL, "invalid profefe.com/port annotation \"\""},
	        {"{\"schedule\":\"@hourly\"}", "", ENABLED ",\"profefe.com/port\":\" 6060\"", "",
	         -EINVAL, NULL, NULL, NULL, "invalid profefe.com/port"},
	        {"{\"schedule\":\"@hourly\"}", "", ENABLED ",\"profefe.com/port\":\"-1\"", "",
	         -EINVAL, NULL, NULL, NULL, "invalid profefe.com/port"},
	        {"{\"schedule\":\"@hourly\"}", "", ENABLED ",\"profefe.com/port\":\"6060x\"", "",
	         -EINVAL, NULL, NULL, NULL, "invalid profefe.com/port"},
	        {"{\"schedule\":\"@hourly\"}", "", ENABLED ",\"profefe.com/path\":\"debug\"", "",
	         -EINVAL, NULL, NULL, NULL, "invalid profefe.com/path annotation \"debug\""},
	        {"{\"schedule\":\"@hourly\"}", "", ENABLED ",\"profefe.com/scheme\":\"h2c\"", "",
	         -EINVAL, NULL, NULL, NULL, "invalid profefe.com/scheme annotation \"h2c\""},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct rec_policy *p = make_policy(c[i].spec);
		struct rec_pod *pod =
		        make_pod(c[i].labels, c[i].ann, c[i].owners, "Running", "10.0.0.7");
		struct rec_target t;
		struct rec_profile cpu = {PPOP_PT_CPU, 10}, heap = {PPOP_PT_HEAP, 0};
		char err[256] = "", url[REC_URL_MAX];
		int rc = rec_target_resolve(p, pod, &t, err, sizeof(err));
		if (rc != c[i].rc)
			fail_msg("case %zu (%s): rc %d (%s), want %d", i, c[i].ann, rc, err,
			         c[i].rc);
		if (rc == 0) {
			if (strcmp(t.service, c[i].service) != 0)
				fail_msg("case %zu: service %s, want %s", i, t.service,
				         c[i].service);
			assert_int_equal(rec_target_url(&t, &cpu, url, sizeof(url)), 0);
			if (c[i].url_cpu && strcmp(url, c[i].url_cpu) != 0)
				fail_msg("case %zu: cpu url %s, want %s", i, url, c[i].url_cpu);
			assert_int_equal(rec_target_url(&t, &heap, url, sizeof(url)), 0);
			if (c[i].url_heap && strcmp(url, c[i].url_heap) != 0)
				fail_msg("case %zu: heap url %s, want %s", i, url, c[i].url_heap);
		} else if (strstr(err, c[i].err) == NULL) {
			fail_msg("case %zu: error \"%s\", want \"%s\"", i, err, c[i].err);
		}
		free(pod);
		rec_policy_free(p);
	}
}

static void test_target_urls_per_profile_type_and_ipv6(void **state)
{
	static const struct {
		enum ppop_ptype type;
		int seconds;
		const char *ip, *want;
	} c[] = {
	        {PPOP_PT_CPU, 30, "10.0.0.7",
	         "http://10.0.0.7:6060/debug/pprof/profile?seconds=30"},
	        {PPOP_PT_HEAP, 0, "10.0.0.7", "http://10.0.0.7:6060/debug/pprof/heap"},
	        /* allocs is fetched from its own endpoint; it is stored as heap. */
	        {PPOP_PT_ALLOCS, 0, "10.0.0.7", "http://10.0.0.7:6060/debug/pprof/allocs"},
	        {PPOP_PT_GOROUTINE, 0, "10.0.0.7", "http://10.0.0.7:6060/debug/pprof/goroutine"},
	        {PPOP_PT_MUTEX, 0, "10.0.0.7", "http://10.0.0.7:6060/debug/pprof/mutex"},
	        {PPOP_PT_BLOCK, 0, "10.0.0.7", "http://10.0.0.7:6060/debug/pprof/block"},
	        {PPOP_PT_THREADCREATE, 0, "10.0.0.7",
	         "http://10.0.0.7:6060/debug/pprof/threadcreate"},
	        {PPOP_PT_CPU, 5, "fd00::7", "http://[fd00::7]:6060/debug/pprof/profile?seconds=5"},
	        {PPOP_PT_HEAP, 0, "2001:db8::1", "http://[2001:db8::1]:6060/debug/pprof/heap"},
	};
	struct rec_policy *p = make_policy("{\"schedule\":\"@hourly\"}");

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct rec_pod *pod = make_pod("", ENABLED, "", "Running", c[i].ip);
		struct rec_target t;
		struct rec_profile prof = {c[i].type, c[i].seconds};
		char err[128], url[REC_URL_MAX];
		assert_int_equal(rec_target_resolve(p, pod, &t, err, sizeof(err)), 0);
		assert_int_equal(rec_target_url(&t, &prof, url, sizeof(url)), 0);
		assert_string_equal(url, c[i].want);
		free(pod);
	}
	rec_policy_free(p);
}

static void test_target_url_too_small_buffer_is_erange(void **state)
{
	struct rec_target t = {.port = 6060, .path = "/debug/pprof", .host = "10.0.0.7"};
	struct rec_profile heap = {PPOP_PT_HEAP, 0};
	char url[16];

	assert_int_equal(rec_target_url(&t, &heap, url, sizeof(url)), -ERANGE);
}

static void test_target_without_pod_ip_is_an_error(void **state)
{
	struct rec_policy *p = make_policy("{\"schedule\":\"@hourly\"}");
	struct rec_pod *pod = make_pod("", ENABLED, "", "Running", "");
	struct rec_target t;
	char err[128];

	assert_int_equal(rec_target_resolve(p, pod, &t, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "podIP"));
	free(pod);
	rec_policy_free(p);
}

static char *labels_string(const char *spec, const char *pod_labels, enum ppop_ptype type)
{
	struct rec_policy *p = make_policy(spec);
	struct rec_pod *pod = make_pod(pod_labels, ENABLED, RS_OWNER, "Running", "10.0.0.7");
	struct rec_profile prof = {type, 0};
	struct rec_kvs kvs;

	assert_int_equal(rec_target_labels(p, pod, &prof, &kvs), 0);
	for (size_t i = 1; i < kvs.n; i++)
		assert_true(strcmp(kvs.v[i - 1].key, kvs.v[i].key) < 0);
	char *s = ppop_labels_encode(kvs.v, kvs.n);
	rec_kvs_free(&kvs);
	free(pod);
	rec_policy_free(p);
	return s;
}

static void test_target_labels_sorted_with_version_and_allocs(void **state)
{
	char *s;

	/* version from the image tag when the pod has no version label. */
	s = labels_string("{\"schedule\":\"@hourly\"}", STD_LABELS, PPOP_PT_HEAP);
	assert_string_equal(s, "container=app,namespace=shop,node=node-a,pod=web-7d4b9c8f6-x2x9z,"
	                       "policy=web-prof,version=v1.4.2");
	free(s);
	/* app.kubernetes.io/version wins; allocs adds pprof_type; spec.labels join. */
	s = labels_string("{\"schedule\":\"@hourly\",\"labels\":{\"env\":\"prod\",\"zone\":\"a\"}}",
	                  STD_LABELS ",\"app.kubernetes.io/version\":\"1.4.2-go1.13.4\"",
	                  PPOP_PT_ALLOCS);
	assert_string_equal(s, "container=app,env=prod,namespace=shop,node=node-a,"
	                       "pod=web-7d4b9c8f6-x2x9z,policy=web-prof,pprof_type=allocs,"
	                       "version=1.4.2-go1.13.4,zone=a");
	free(s);
}

static void test_labels_encode_escapes_and_never_leads_with_comma(void **state)
{
	static const struct ppop_kv kv[] = {
	        {"a", "x,y=z"},
	        {"b", "sp ace+plus%"},
	        {"c/d", "ü"},
	        {"e", ""},
	};
	char *s = ppop_labels_encode(kv, 4);

	assert_string_equal(s, "a=x%2Cy%3Dz,b=sp%20ace%2Bplus%25,c%2Fd=%C3%BC,e=");
	free(s);
	s = ppop_labels_encode(kv, 0);
	assert_string_equal(s, "");
	free(s);
	s = ppop_labels_encode(kv, 1);
	assert_string_equal(s, "a=x%2Cy%3Dz");
	free(s);
}

static void test_image_tag(void **state)
{
	static const struct {
		const char *image, *tag;
	} c[] = {
	        {"nginx", ""},
	        {"nginx:1.25", "1.25"},
	        {"registry:5000/app", ""},
	        {"registry:5000/app:v2", "v2"},
	        {"ghcr.io/a/b:v1@sha256:0123", "v1"},
	        {"ghcr.io/a/b@sha256:0123", ""},
	        {"", ""},
	};
	char buf[64];

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
		assert_string_equal(rec_image_tag(c[i].image, buf, sizeof(buf)), c[i].tag);
}

static void test_spread_offset_is_stable_and_spread(void **state)
{
	unsigned buckets[10] = {0};
	char uid[64];

	assert_int_equal(rec_spread_offset_ms("abc", 0), 0);
	assert_int_equal(rec_spread_offset_ms("abc", 5000), rec_spread_offset_ms("abc", 5000));
	for (int i = 0; i < 1000; i++) {
		snprintf(uid, sizeof(uid), "6f1d2a8e-%04d-4c1e-9d5e-0123456789ab", i);
		uint32_t off = rec_spread_offset_ms(uid, 10000);
		assert_true(off < 10000);
		buckets[off / 1000]++;
	}
	for (int i = 0; i < 10; i++) /* roughly uniform: each tenth gets 50-150 of 1000 */
		if (buckets[i] < 50 || buckets[i] > 150)
			fail_msg("bucket %d has %u of 1000", i, buckets[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_pod_from_json_keeps_only_what_we_use),
	        cmocka_unit_test(test_pod_compact_for_100k),
	        cmocka_unit_test(test_pod_default_container_annotation_picks_container),
	        cmocka_unit_test(test_pod_without_identity_is_refused),
	        cmocka_unit_test(test_pod_selection),
	        cmocka_unit_test(test_pod_in_other_namespace_needs_namespace_selector),
	        cmocka_unit_test(test_cluster_policy_selects_pods_of_every_namespace),
	        cmocka_unit_test(test_pod_capturable_only_running_with_ip),
	        cmocka_unit_test(test_target_resolution_precedence),
	        cmocka_unit_test(test_target_urls_per_profile_type_and_ipv6),
	        cmocka_unit_test(test_target_url_too_small_buffer_is_erange),
	        cmocka_unit_test(test_target_without_pod_ip_is_an_error),
	        cmocka_unit_test(test_target_labels_sorted_with_version_and_allocs),
	        cmocka_unit_test(test_labels_encode_escapes_and_never_leads_with_comma),
	        cmocka_unit_test(test_image_tag),
	        cmocka_unit_test(test_spread_offset_is_stable_and_spread),
	};
	return cmocka_run_group_tests_name("reconcile_target", tests, NULL, NULL);
}
