/* Policy parsing: defaults from DESIGN §2, and one precise error (field
 * path plus reason) for every validation rule. */
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
#include "reconcile/tests/zonefile.h"

/* A policy object with `spec` (JSON text, or NULL for no spec). */
static struct json_object *policy_obj(const char *spec)
{
	char buf[4096];

	snprintf(buf, sizeof(buf),
	         "{\"apiVersion\":\"profefe.com/v1alpha1\",\"kind\":\"ProfilingPolicy\","
	         "\"metadata\":{\"name\":\"web\",\"namespace\":\"shop\",\"uid\":\"u-1\","
	         "\"generation\":3}%s%s}",
	         spec ? ",\"spec\":" : "", spec ? spec : "");
	struct json_object *o = json_tokener_parse(buf);
	if (o == NULL)
		fail_msg("bad JSON in test: %s", buf);
	return o;
}

static struct rec_policy *parse(const char *spec, struct rec_errs *errs)
{
	struct json_object *o = policy_obj(spec);
	struct rec_policy *p = NULL;

	assert_int_equal(rec_policy_parse(o, rec_test_zone_lookup, NULL, &p, errs), 0);
	json_object_put(o);
	assert_non_null(p);
	return p;
}

static void test_policy_defaults(void **state)
{
	struct rec_errs errs = {0};
	struct rec_policy *p = parse("{\"schedule\":\"*/10 * * * *\"}", &errs);

	assert_int_equal(errs.n, 0);
	assert_true(p->valid);
	assert_string_equal(p->ns, "shop");
	assert_string_equal(p->name, "web");
	assert_string_equal(p->uid, "u-1");
	assert_int_equal(p->generation, 3);
	assert_null(p->time_zone);
	assert_false(p->suspend);
	assert_int_equal(p->selector.n, 0);
	assert_false(p->ns_selector.any);
	assert_int_equal(p->ns_selector.n, 0);
	assert_true(p->pod_annotation_required);
	assert_int_equal(p->nprofiles, 3);
	assert_int_equal(p->profiles[0].type, PPOP_PT_CPU);
	assert_int_equal(p->profiles[0].seconds, 10);
	assert_int_equal(p->profiles[1].type, PPOP_PT_HEAP);
	assert_int_equal(p->profiles[2].type, PPOP_PT_GOROUTINE);
	assert_int_equal(p->port, 6060);
	assert_string_equal(p->path, "/debug/pprof");
	assert_int_equal(p->scheme, REC_SCHEME_HTTP);
	assert_int_equal(p->timeout_seconds, 15);
	assert_null(p->service);
	assert_int_equal(p->labels.n, 0);
	assert_null(p->profefe_url);
	assert_non_null(p->sched);
	assert_int_equal(rec_schedule_period_s(p->sched), 600);
	rec_policy_free(p);
}

static void test_policy_full_spec_round_trips(void **state)
{
	struct rec_errs errs = {0};
	struct rec_policy *p = parse(
	        "{\"schedule\":\"0 */2 * * *\",\"timeZone\":\"Europe/Berlin\",\"suspend\":true,"
	        "\"selector\":{\"matchLabels\":{\"app\":\"influxdb\"}},"
	        "\"namespaceSelector\":{\"matchNames\":[\"web\",\"api\"]},"
	        "\"podAnnotationRequired\":false,"
	        "\"profiles\":[{\"type\":\"cpu\",\"seconds\":30},{\"type\":\"allocs\"},"
	        "{\"type\":\"mutex\"}],"
	        "\"port\":8080,\"path\":\"/pprof/\",\"scheme\":\"https\",\"timeoutSeconds\":5,"
	        "\"service\":\"influx\",\"labels\":{\"env\":\"prod\",\"region\":\"eu\"},"
	        "\"profefeURL\":\"http://profefe.profefe:10100\"}",
	        &errs);

	assert_int_equal(errs.n, 0);
	assert_true(p->valid);
	assert_string_equal(p->time_zone, "Europe/Berlin");
	assert_true(p->suspend);
	assert_int_equal(p->selector.n, 1);
	assert_int_equal(p->ns_selector.n, 2);
	assert_string_equal(p->ns_selector.names[0], "api"); /* sorted */
	assert_false(p->pod_annotation_required);
	assert_int_equal(p->nprofiles, 3);
	assert_int_equal(p->profiles[0].seconds, 30);
	assert_int_equal(p->profiles[1].type, PPOP_PT_ALLOCS);
	assert_int_equal(p->profiles[1].seconds, 0);
	assert_int_equal(p->port, 8080);
	assert_string_equal(p->path, "/pprof"); /* trailing slash dropped */
	assert_int_equal(p->scheme, REC_SCHEME_HTTPS);
	assert_int_equal(p->timeout_seconds, 5);
	assert_string_equal(p->service, "influx");
	assert_string_equal(rec_kvs_get(&p->labels, "env"), "prod");
	assert_string_equal(p->profefe_url, "http://profefe.profefe:10100");
	rec_policy_free(p);
}

struct err_case {
	const char *spec;
	const char *path, *msg;
	enum rec_err_kind kind;
};

static void test_policy_every_validation_error(void **state)
{
	static const struct err_case c[] = {
	        {"{}", "spec.schedule", "is required", REC_ERR_SCHEDULE},
	        {"{\"schedule\":5}", "spec.schedule", "must be a string", REC_ERR_SPEC},
	        {"{\"schedule\":\"61 * * * *\"}", "spec.schedule",
	         "minute field: 61 is above the maximum 59", REC_ERR_SCHEDULE},
	        {"{\"schedule\":\"@every 100ms\"}", "spec.schedule",
	         "shorter than the minimum of 1s", REC_ERR_SCHEDULE},
	        {"{\"schedule\":\"@hourly\",\"timeZone\":\"Mars/Base\"}", "spec.timeZone",
	         "unknown time zone \"Mars/Base\"", REC_ERR_TIMEZONE},
	        {"{\"schedule\":\"@hourly\",\"timeZone\":\"../../etc/passwd\"}", "spec.timeZone",
	         "is not an IANA time zone name", REC_ERR_TIMEZONE},
	        {"{\"schedule\":\"@hourly\",\"suspend\":\"yes\"}", "spec.suspend",
	         "must be a boolean", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"selector\":{\"matchExpressions\":[{\"key\":\"a\","
	         "\"operator\":\"Has\"}]}}",
	         "spec.selector.matchExpressions[0].operator", "must be one of", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"namespaceSelector\":{\"any\":true,\"matchNames\":["
	         "\"a\"]}}",
	         "spec.namespaceSelector", "any and matchNames are mutually exclusive",
	         REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"namespaceSelector\":{\"matchNames\":[\"Bad_NS\"]}}",
	         "spec.namespaceSelector.matchNames[0]", "must be a namespace name", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"namespaceSelector\":{\"matchNames\":\"web\"}}",
	         "spec.namespaceSelector.matchNames", "must be a list", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"namespaceSelector\":{\"any\":1}}",
	         "spec.namespaceSelector.any", "must be a boolean", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"podAnnotationRequired\":\"true\"}",
	         "spec.podAnnotationRequired", "must be a boolean", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"profiles\":[]}", "spec.profiles",
	         "must list at least one profile", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"profiles\":\"cpu\"}", "spec.profiles",
	         "must be a list", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"profiles\":[\"cpu\"]}", "spec.profiles[0]",
	         "must be an object", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"profiles\":[{\"type\":\"wall\"}]}",
	         "spec.profiles[0].type", "unsupported value \"wall\"", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"profiles\":[{}]}", "spec.profiles[0].type",
	         "is required", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"profiles\":[{\"type\":\"heap\",\"seconds\":5}]}",
	         "spec.profiles[0].seconds", "applies only to type cpu", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"profiles\":[{\"type\":\"cpu\",\"seconds\":0}]}",
	         "spec.profiles[0].seconds", "must be between 1 and 300, got 0", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"profiles\":[{\"type\":\"cpu\",\"seconds\":301}]}",
	         "spec.profiles[0].seconds", "must be between 1 and 300, got 301", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"profiles\":[{\"type\":\"cpu\",\"seconds\":\"10\"}]}",
	         "spec.profiles[0].seconds", "must be an integer", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"profiles\":[{\"type\":\"heap\"},{\"type\":\"heap\"}]"
	         "}",
	         "spec.profiles[1].type", "duplicate profile type \"heap\"", REC_ERR_SPEC},
	        {"{\"schedule\":\"* * * * *\",\"profiles\":[{\"type\":\"cpu\",\"seconds\":60}]}",
	         "spec.profiles[0].seconds", "60s must be shorter than the schedule's period (60s)",
	         REC_ERR_SPEC},
	        {"{\"schedule\":\"@every 5s\"}", "spec.profiles",
	         "the default cpu profile (10s) must be shorter", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"port\":0}", "spec.port",
	         "must be between 1 and 65535", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"port\":65536}", "spec.port",
	         "must be between 1 and 65535, got 65536", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"port\":\"6060\"}", "spec.port", "must be an integer",
	         REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"path\":\"debug/pprof\"}", "spec.path",
	         "must start with '/'", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"path\":\"/debug pprof\"}", "spec.path", "no spaces",
	         REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"path\":\"/x?debug=1\"}", "spec.path", "'?'",
	         REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"scheme\":\"ftp\"}", "spec.scheme",
	         "unsupported value \"ftp\": must be http or https", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"timeoutSeconds\":0}", "spec.timeoutSeconds",
	         "must be between 1 and 300", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"timeoutSeconds\":301}", "spec.timeoutSeconds",
	         "must be between 1 and 300", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"service\":7}", "spec.service", "must be a string",
	         REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"labels\":{\"pod\":\"x\"}}", "spec.labels.pod",
	         "is reserved", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"labels\":{\"pprof_type\":\"x\"}}",
	         "spec.labels.pprof_type", "is reserved", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"labels\":{\"bad key\":\"x\"}}", "spec.labels.bad key",
	         "is not a valid label key", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"labels\":{\"env\":1}}", "spec.labels.env",
	         "must be a string", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"labels\":[]}", "spec.labels", "must be an object",
	         REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"profefeURL\":\"ftp://x\"}", "spec.profefeURL",
	         "must be an http:// or https:// URL", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"profefeURL\":\"http://\"}", "spec.profefeURL",
	         "with a host", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"selector\":[]}", "spec.selector",
	         "must be a label selector object", REC_ERR_SPEC},
	        {"{\"schedule\":\"@hourly\",\"namespaceSelector\":[]}", "spec.namespaceSelector",
	         "must be an object", REC_ERR_SPEC},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct rec_errs errs = {0};
		struct rec_policy *p = parse(c[i].spec, &errs);
		if (errs.n != 1 || strcmp(errs.v[0].path, c[i].path) != 0 ||
		    strstr(errs.v[0].msg, c[i].msg) == NULL || errs.v[0].kind != c[i].kind)
			fail_msg("%s: %zu errors, first [%d] \"%s: %s\"; want [%d] \"%s: %s\"",
			         c[i].spec, errs.n, errs.n ? (int)errs.v[0].kind : -1,
			         errs.n ? errs.v[0].path : "", errs.n ? errs.v[0].msg : "",
			         (int)c[i].kind, c[i].path, c[i].msg);
		assert_false(p->valid);
		rec_policy_free(p);
	}
}

static void test_policy_reports_all_problems_not_just_first(void **state)
{
	struct rec_errs errs = {0};
	char buf[512];
	struct rec_policy *p = parse(
	        "{\"schedule\":\"* * *\",\"port\":0,\"scheme\":\"gopher\",\"profiles\":[]}", &errs);

	assert_int_equal(errs.n, 4);
	assert_false(p->valid);
	assert_null(p->sched);
	assert_int_equal(rec_errs_count(&errs, REC_ERR_SCHEDULE), 1);
	assert_int_equal(rec_errs_count(&errs, REC_ERR_SPEC), 3);
	rec_errs_format(&errs, REC_ERR_SPEC, buf, sizeof(buf));
	assert_non_null(strstr(buf, "spec.port: must be between 1 and 65535, got 0; "));
	assert_non_null(strstr(buf, "spec.scheme: unsupported value \"gopher\""));
	assert_non_null(strstr(buf, "spec.profiles: must list at least one profile"));
	rec_policy_free(p);
}

static void test_policy_error_list_is_bounded(void **state)
{
	struct rec_errs errs = {0};
	char spec[4096], *w = spec;

	w += sprintf(w, "{\"schedule\":\"@hourly\",\"labels\":{");
	for (int i = 0; i < 30; i++)
		w += sprintf(w, "%s\"bad key %d\":\"x\"", i ? "," : "", i);
	w += sprintf(w, "},\"namespaceSelector\":{\"matchNames\":[");
	for (int i = 0; i < 10; i++)
		w += sprintf(w, "%s\"BAD%d\"", i ? "," : "", i);
	sprintf(w, "]}}");
	struct rec_policy *p = parse(spec, &errs);
	assert_int_equal(errs.n, REC_ERRS_MAX);
	assert_int_equal(errs.dropped, 40 - REC_ERRS_MAX);
	assert_int_equal(rec_errs_count(&errs, REC_ERR_SPEC), 40);
	char buf[128];
	rec_errs_format(&errs, -1, buf, sizeof(buf));
	assert_int_equal(strlen(buf), sizeof(buf) - 1);
	assert_string_equal(buf + sizeof(buf) - 4, "...");
	rec_policy_free(p);
}

static void test_policy_without_identity_is_refused(void **state)
{
	struct rec_errs errs = {0};
	struct rec_policy *p = NULL;
	struct json_object *o = json_tokener_parse("{\"metadata\":{\"name\":\"x\"},\"spec\":{}}");

	assert_int_equal(rec_policy_parse(o, NULL, NULL, &p, &errs), -EINVAL);
	assert_null(p);
	json_object_put(o);
	o = json_tokener_parse("[1]");
	assert_int_equal(rec_policy_parse(o, NULL, NULL, &p, &errs), -EINVAL);
	json_object_put(o);
}

/* Issue 12: a namespace editor's policy reaches its own namespace and the
 * operator's profefe only, unless the cluster admin grants more. */
static void test_policy_authorize_confines_to_own_namespace_by_default(void **state)
{
	static const struct rec_grants none = {.default_url = "http://profefe:10100"};
	struct rec_errs errs = {0};
	struct rec_policy *p;

	/* Staying at home is always allowed, also when named explicitly. */
	p = parse("{\"schedule\":\"@hourly\",\"namespaceSelector\":{\"matchNames\":[\"shop\"]},"
	          "\"profefeURL\":\"http://profefe:10100/\"}",
	          &errs);
	assert_int_equal(rec_policy_authorize(p, &none, &errs), 0);
	assert_true(p->valid);
	rec_policy_free(p);

	p = parse("{\"schedule\":\"@hourly\",\"namespaceSelector\":{\"any\":true}}", &errs);
	assert_int_equal(rec_policy_authorize(p, &none, &errs), 1);
	assert_false(p->valid);
	assert_int_equal(errs.v[0].kind, REC_ERR_CROSS_NS);
	assert_string_equal(errs.v[0].path, "spec.namespaceSelector.any");
	assert_non_null(strstr(errs.v[0].msg, "--allow-cross-namespace"));
	rec_policy_free(p);

	memset(&errs, 0, sizeof(errs));
	p = parse("{\"schedule\":\"@hourly\",\"namespaceSelector\":{\"matchNames\":[\"shop\","
	          "\"team-b\"]},\"profefeURL\":\"http://evil.example:80\"}",
	          &errs);
	assert_int_equal(rec_policy_authorize(p, &none, &errs), 2);
	assert_false(p->valid);
	assert_int_equal(errs.v[0].kind, REC_ERR_CROSS_NS);
	assert_non_null(strstr(errs.v[0].msg, "team-b"));
	assert_int_equal(errs.v[1].kind, REC_ERR_SINK);
	assert_string_equal(errs.v[1].path, "spec.profefeURL");
	assert_int_equal(rec_errs_count(&errs, REC_ERR_SPEC), 0);
	rec_policy_free(p);
}

/* Issue 12: a ClusterProfilingPolicy is the admin's cross-namespace grant.
 * Its scope comes from the resource it was read from, never from the
 * object: a namespaced object is not a cluster policy, nor the reverse. */
static void test_cluster_policy_reaches_every_namespace_by_default(void **state)
{
	static const struct rec_grants none = {.default_url = "http://profefe:10100"};
	struct rec_errs errs = {0};
	struct rec_policy *p = NULL;
	struct json_object *o =
	        json_tokener_parse("{\"metadata\":{\"name\":\"fleet\",\"uid\":\"u1\"},"
	                           "\"spec\":{\"schedule\":\"@hourly\"}}");

	assert_int_equal(rec_cluster_policy_parse(o, NULL, NULL, &p, &errs), 0);
	assert_true(p->cluster);
	assert_string_equal(p->ns, "");
	assert_string_equal(p->name, "fleet");
	assert_true(p->ns_selector.any);
	/* No --allow-cross-namespace needed. */
	assert_int_equal(rec_policy_authorize(p, &none, &errs), 0);
	assert_true(p->valid);
	rec_policy_free(p);
	/* The same object read as a namespaced policy has no namespace. */
	p = NULL;
	assert_int_equal(rec_policy_parse(o, NULL, NULL, &p, &errs), -EINVAL);
	assert_null(p);
	json_object_put(o);

	/* A namespaced object is never taken for a cluster policy. */
	o = json_tokener_parse("{\"metadata\":{\"name\":\"x\",\"namespace\":\"team-a\"},"
	                       "\"spec\":{\"schedule\":\"@hourly\"}}");
	assert_int_equal(rec_cluster_policy_parse(o, NULL, NULL, &p, &errs), -EINVAL);
	assert_null(p);
	json_object_put(o);

	/* matchNames narrows it; profefeURL is still the admin's list. */
	o = json_tokener_parse("{\"metadata\":{\"name\":\"two\"},\"spec\":{\"schedule\":"
	                       "\"@hourly\",\"namespaceSelector\":{\"matchNames\":[\"b\",\"a\"]},"
	                       "\"profefeURL\":\"http://evil.example:80\"}}");
	assert_int_equal(rec_cluster_policy_parse(o, NULL, NULL, &p, &errs), 0);
	json_object_put(o);
	assert_false(p->ns_selector.any);
	assert_int_equal(p->ns_selector.n, 2);
	assert_int_equal(rec_policy_authorize(p, &none, &errs), 1);
	assert_int_equal(errs.v[errs.n - 1].kind, REC_ERR_SINK);
	assert_false(p->valid);
	rec_policy_free(p);
}

static void test_policy_authorize_follows_the_admins_grants(void **state)
{
	static const char *const ns[] = {"profefe-system"}, *const star[] = {"*"};
	static const char *const urls[] = {"http://mirror:10100/"};
	struct rec_grants g = {.cross_ns = ns, .ncross_ns = 1, .urls = urls, .nurls = 1};
	struct rec_errs errs = {0};
	struct rec_policy *p;
	struct json_object *o = json_tokener_parse(
	        "{\"metadata\":{\"name\":\"fleet\",\"namespace\":\"profefe-system\"},"
	        "\"spec\":{\"schedule\":\"@hourly\",\"namespaceSelector\":{\"any\":true},"
	        "\"profefeURL\":\"http://mirror:10100\"}}");

	assert_int_equal(rec_policy_parse(o, NULL, NULL, &p, &errs), 0);
	json_object_put(o);
	assert_int_equal(rec_policy_authorize(p, &g, &errs), 0);
	assert_true(p->valid);
	rec_policy_free(p);

	/* The same spec in a tenant's namespace is refused. */
	p = parse("{\"schedule\":\"@hourly\",\"namespaceSelector\":{\"any\":true},"
	          "\"profefeURL\":\"http://mirror:10100\"}",
	          &errs);
	assert_int_equal(rec_policy_authorize(p, &g, &errs), 1);
	assert_int_equal(errs.v[0].kind, REC_ERR_CROSS_NS);
	rec_policy_free(p);

	/* "*" restores the single-tenant behaviour. */
	memset(&errs, 0, sizeof(errs));
	g.cross_ns = star;
	g.urls = star;
	p = parse("{\"schedule\":\"@hourly\",\"namespaceSelector\":{\"any\":true},"
	          "\"profefeURL\":\"https://anything:443\"}",
	          &errs);
	assert_int_equal(rec_policy_authorize(p, &g, &errs), 0);
	assert_true(p->valid);
	rec_policy_free(p);
}

static void test_policy_missing_spec_is_an_error(void **state)
{
	struct rec_errs errs = {0};
	struct rec_policy *p = parse(NULL, &errs);

	assert_false(p->valid);
	assert_string_equal(errs.v[0].path, "spec");
	rec_policy_free(p);
}

static void test_policy_time_zone_without_lookup_knows_only_utc(void **state)
{
	struct rec_errs errs = {0};
	struct rec_policy *p = NULL;
	struct json_object *o =
	        policy_obj("{\"schedule\":\"@daily\",\"timeZone\":\"Etc/UTC\",\"profiles\":["
	                   "{\"type\":\"heap\"}]}");

	assert_int_equal(rec_policy_parse(o, NULL, NULL, &p, &errs), 0);
	assert_int_equal(errs.n, 0);
	rec_policy_free(p);
	json_object_put(o);
	o = policy_obj("{\"schedule\":\"@daily\",\"timeZone\":\"Europe/Berlin\"}");
	assert_int_equal(rec_policy_parse(o, NULL, NULL, &p, &errs), 0);
	assert_int_equal(errs.n, 1);
	assert_int_equal(errs.v[0].kind, REC_ERR_TIMEZONE);
	assert_null(p->sched);
	rec_policy_free(p);
	json_object_put(o);
}

static void test_policy_schedule_uses_time_zone(void **state)
{
	struct rec_errs errs = {0};
	struct rec_policy *p =
	        parse("{\"schedule\":\"0 9 * * *\",\"timeZone\":\"Asia/Kolkata\"}", &errs);
	int64_t after, next;

	assert_int_equal(errs.n, 0);
	assert_int_equal(rec_time_parse("2024-01-01T00:00:00Z", &after), 0);
	assert_int_equal(rec_time_parse("2024-01-01T09:00:00+05:30", &next), 0);
	assert_int_equal(rec_schedule_next(p->sched, after), next);
	rec_policy_free(p);
}

static void test_profile_names_and_store_types(void **state)
{
	enum ppop_ptype t;

	assert_string_equal(ppop_ptype_profefe(PPOP_PT_ALLOCS), "heap");
	assert_string_equal(ppop_ptype_name(PPOP_PT_ALLOCS), "allocs");
	assert_string_equal(ppop_ptype_profefe(PPOP_PT_THREADCREATE), "threadcreate");
	assert_int_equal(ppop_ptype_parse("goroutine", &t), 0);
	assert_int_equal(t, PPOP_PT_GOROUTINE);
	assert_int_equal(ppop_ptype_parse("CPU", &t), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_policy_defaults),
	        cmocka_unit_test(test_policy_full_spec_round_trips),
	        cmocka_unit_test(test_policy_every_validation_error),
	        cmocka_unit_test(test_policy_reports_all_problems_not_just_first),
	        cmocka_unit_test(test_policy_error_list_is_bounded),
	        cmocka_unit_test(test_policy_without_identity_is_refused),
	        cmocka_unit_test(test_policy_missing_spec_is_an_error),
	        cmocka_unit_test(test_policy_authorize_confines_to_own_namespace_by_default),
	        cmocka_unit_test(test_policy_authorize_follows_the_admins_grants),
	        cmocka_unit_test(test_cluster_policy_reaches_every_namespace_by_default),
	        cmocka_unit_test(test_policy_time_zone_without_lookup_knows_only_utc),
	        cmocka_unit_test(test_policy_schedule_uses_time_zone),
	        cmocka_unit_test(test_profile_names_and_store_types),
	};
	return cmocka_run_group_tests_name("reconcile_policy", tests, NULL, NULL);
}
