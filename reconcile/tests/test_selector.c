/* Label selectors: the semantics of k8s.io/apimachinery/pkg/labels, the
 * labelSelector string for list/watch, and validation errors. */
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

#include "reconcile/internal.h"

/* Builds a label set from a JSON object literal. */
static void labels_from(const char *json, struct rec_kvs *out)
{
	struct json_object *o = json_tokener_parse(json);
	struct ppop_kv pairs[16];
	size_t n = 0;

	assert_non_null(o);
	json_object_object_foreach(o, k, v)
	{
		pairs[n].key = k;
		pairs[n++].value = json_object_get_string(v);
	}
	assert_int_equal(rec__kvs_build(out, pairs, n), 0);
	json_object_put(o);
}

static void parse_ok(const char *json, struct rec_selector *s)
{
	struct json_object *o = json_tokener_parse(json);
	struct rec_errs errs = {0};

	assert_non_null(o);
	if (rec_selector_parse(o, "spec.selector", s, &errs) != 0 || errs.n)
		fail_msg("selector %s did not parse: %s", json, errs.n ? errs.v[0].msg : "?");
	json_object_put(o);
}

static void test_selector_matches_like_k8s_labels(void **state)
{
	static const struct {
		const char *sel, *labels;
		int want;
	} c[] = {
	        /* An empty selector selects everything. */
	        {"{}", "{}", 1},
	        {"{}", "{\"x\":\"y\"}", 1},
	        {"{\"matchLabels\":{}}", "{\"x\":\"y\"}", 1},
	        /* matchLabels: equality, every pair. */
	        {"{\"matchLabels\":{\"x\":\"y\"}}", "{\"x\":\"y\"}", 1},
	        {"{\"matchLabels\":{\"x\":\"y\"}}", "{\"x\":\"y\",\"z\":\"w\"}", 1},
	        {"{\"matchLabels\":{\"x\":\"y\"}}", "{\"x\":\"z\"}", 0},
	        {"{\"matchLabels\":{\"x\":\"y\"}}", "{}", 0},
	        {"{\"matchLabels\":{\"x\":\"y\",\"z\":\"w\"}}", "{\"x\":\"y\"}", 0},
	        {"{\"matchLabels\":{\"x\":\"\"}}", "{\"x\":\"\"}", 1},
	        {"{\"matchLabels\":{\"x\":\"\"}}", "{}", 0},
	        /* In: the key must be present with a listed value. */
	        {"{\"matchExpressions\":[{\"key\":\"x\",\"operator\":\"In\",\"values\":[\"a\","
	         "\"b\"]}]}",
	         "{\"x\":\"b\"}", 1},
	        {"{\"matchExpressions\":[{\"key\":\"x\",\"operator\":\"In\",\"values\":[\"a\","
	         "\"b\"]}]}",
	         "{\"x\":\"c\"}", 0},
	        {"{\"matchExpressions\":[{\"key\":\"x\",\"operator\":\"In\",\"values\":[\"a\","
	         "\"b\"]}]}",
	         "{}", 0},
	        /* NotIn: matches when the key is absent. */
	        {"{\"matchExpressions\":[{\"key\":\"x\",\"operator\":\"NotIn\",\"values\":[\"a\"]}]"
	         "}",
	         "{}", 1},
	        {"{\"matchExpressions\":[{\"key\":\"x\",\"operator\":\"NotIn\",\"values\":[\"a\"]}]"
	         "}",
	         "{\"x\":\"b\"}", 1},
	        {"{\"matchExpressions\":[{\"key\":\"x\",\"operator\":\"NotIn\",\"values\":[\"a\"]}]"
	         "}",
	         "{\"x\":\"a\"}", 0},
	        /* Exists / DoesNotExist look at the key only. */
	        {"{\"matchExpressions\":[{\"key\":\"x\",\"operator\":\"Exists\"}]}", "{\"x\":\"\"}",
	         1},
	        {"{\"matchExpressions\":[{\"key\":\"x\",\"operator\":\"Exists\"}]}",
	         "{\"y\":\"x\"}", 0},
	        {"{\"matchExpressions\":[{\"key\":\"x\",\"operator\":\"DoesNotExist\"}]}", "{}", 1},
	        {"{\"matchExpressions\":[{\"key\":\"x\",\"operator\":\"DoesNotExist\"}]}",
	         "{\"x\":\"y\"}", 0},
	        /* Everything is ANDed. */
	        {"{\"matchLabels\":{\"app\":\"web\"},\"matchExpressions\":[{\"key\":\"env\","
	         "\"operator\":\"In\",\"values\":[\"prod\"]}]}",
	         "{\"app\":\"web\",\"env\":\"prod\"}", 1},
	        {"{\"matchLabels\":{\"app\":\"web\"},\"matchExpressions\":[{\"key\":\"env\","
	         "\"operator\":\"In\",\"values\":[\"prod\"]}]}",
	         "{\"app\":\"web\",\"env\":\"dev\"}", 0},
	        /* Two requirements on one key must both hold. */
	        {"{\"matchExpressions\":[{\"key\":\"x\",\"operator\":\"Exists\"},{\"key\":\"x\","
	         "\"operator\":\"NotIn\",\"values\":[\"a\"]}]}",
	         "{\"x\":\"a\"}", 0},
	        {"{\"matchLabels\":{\"example.com/tier\":\"db\"}}", "{\"example.com/tier\":\"db\"}",
	         1},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct rec_selector s;
		struct rec_kvs l;
		parse_ok(c[i].sel, &s);
		labels_from(c[i].labels, &l);
		if (rec_selector_matches(&s, &l) != c[i].want)
			fail_msg("case %zu: %s vs %s: want %d", i, c[i].sel, c[i].labels,
			         c[i].want);
		rec_selector_free(&s);
		rec_kvs_free(&l);
	}
}

static void test_selector_null_is_empty_and_selects_all(void **state)
{
	struct rec_selector s;
	struct rec_errs errs = {0};
	struct rec_kvs l;
	char *str;

	assert_int_equal(rec_selector_parse(NULL, "spec.selector", &s, &errs), 0);
	assert_int_equal(s.n, 0);
	labels_from("{\"a\":\"b\"}", &l);
	assert_true(rec_selector_matches(&s, &l));
	str = rec_selector_string(&s);
	assert_string_equal(str, "");
	free(str);
	rec_kvs_free(&l);
}

static void test_selector_string_sorted_like_labels_selector(void **state)
{
	static const struct {
		const char *sel, *want;
	} c[] = {
	        {"{\"matchLabels\":{\"tier\":\"db\",\"app\":\"web\"}}", "app=web,tier=db"},
	        {"{\"matchExpressions\":[{\"key\":\"env\",\"operator\":\"In\",\"values\":[\"prod\","
	         "\"canary\",\"prod\"]}]}",
	         "env in (canary,prod)"},
	        {"{\"matchExpressions\":[{\"key\":\"env\",\"operator\":\"NotIn\",\"values\":[\"b\","
	         "\"a\"]}]}",
	         "env notin (a,b)"},
	        {"{\"matchLabels\":{\"app\":\"web\"},\"matchExpressions\":[{\"key\":\"legacy\","
	         "\"operator\":\"DoesNotExist\"},{\"key\":\"canary\",\"operator\":\"Exists\"}]}",
	         "app=web,canary,!legacy"},
	        {"{\"matchExpressions\":[{\"key\":\"x\",\"operator\":\"In\",\"values\":[\"1\"]}]}",
	         "x=1"},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct rec_selector s;
		parse_ok(c[i].sel, &s);
		char *str = rec_selector_string(&s);
		if (strcmp(str, c[i].want) != 0)
			fail_msg("%s: got \"%s\", want \"%s\"", c[i].sel, str, c[i].want);
		free(str);
		rec_selector_free(&s);
	}
}

static void test_selector_errors_name_field_and_reason(void **state)
{
	static const struct {
		const char *sel, *path, *msg;
	} c[] = {
	        {"{\"matchExpressions\":[{\"key\":\"x\",\"operator\":\"In\",\"values\":[]}]}",
	         "spec.selector.matchExpressions[0].values",
	         "must be non-empty when operator is In"},
	        {"{\"matchExpressions\":[{\"key\":\"x\",\"operator\":\"NotIn\"}]}",
	         "spec.selector.matchExpressions[0].values",
	         "must be non-empty when operator is NotIn"},
	        {"{\"matchExpressions\":[{\"key\":\"x\",\"operator\":\"Exists\",\"values\":[\"a\"]}"
	         "]}",
	         "spec.selector.matchExpressions[0].values",
	         "must be empty when operator is Exists"},
	        {"{\"matchExpressions\":[{\"key\":\"x\",\"operator\":\"Equals\",\"values\":[\"a\"]}"
	         "]}",
	         "spec.selector.matchExpressions[0].operator", "must be one of In, NotIn"},
	        {"{\"matchExpressions\":[{\"operator\":\"Exists\"}]}",
	         "spec.selector.matchExpressions[0].key", "is required"},
	        {"{\"matchExpressions\":[{\"key\":\"-bad\",\"operator\":\"Exists\"}]}",
	         "spec.selector.matchExpressions[0].key", "invalid label key \"-bad\""},
	        {"{\"matchExpressions\":[{\"key\":\"x\",\"operator\":\"In\",\"values\":[\"a "
	         "b\"]}]}",
	         "spec.selector.matchExpressions[0].values[0]", "must be a valid label value"},
	        {"{\"matchExpressions\":{}}", "spec.selector.matchExpressions", "must be a list"},
	        {"{\"matchLabels\":{\"app\":1}}", "spec.selector.matchLabels",
	         "value of \"app\" must be a string"},
	        {"{\"matchLabels\":{\"a/b/c\":\"x\"}}", "spec.selector.matchLabels",
	         "invalid label key \"a/b/c\""},
	        {"{\"matchLabels\":{\"app\":\"-x-\"}}", "spec.selector.matchLabels",
	         "invalid label value \"-x-\""},
	        {"{\"matchLabels\":[]}", "spec.selector.matchLabels", "must be an object"},
	        {"[]", "spec.selector", "must be a label selector object"},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct json_object *o = json_tokener_parse(c[i].sel);
		struct rec_errs errs = {0};
		struct rec_selector s;
		int rc = rec_selector_parse(o, "spec.selector", &s, &errs);
		if (rc != -EINVAL || errs.n != 1 || strcmp(errs.v[0].path, c[i].path) != 0 ||
		    strstr(errs.v[0].msg, c[i].msg) == NULL)
			fail_msg("%s: rc %d, %zu errors, first \"%s: %s\"; want \"%s: %s\"",
			         c[i].sel, rc, errs.n, errs.n ? errs.v[0].path : "",
			         errs.n ? errs.v[0].msg : "", c[i].path, c[i].msg);
		rec_selector_free(&s);
		json_object_put(o);
	}
}

static void test_selector_reports_every_problem(void **state)
{
	struct json_object *o = json_tokener_parse(
	        "{\"matchLabels\":{\"-a\":\"b\"},\"matchExpressions\":[{\"key\":\"x\",\"operator\":"
	        "\"Bad\"},{\"key\":\"y\",\"operator\":\"In\"}]}");
	struct rec_errs errs = {0};
	struct rec_selector s;

	assert_int_equal(rec_selector_parse(o, "spec.selector", &s, &errs), -EINVAL);
	assert_int_equal(errs.n, 3);
	assert_string_equal(errs.v[0].path, "spec.selector.matchLabels");
	assert_string_equal(errs.v[1].path, "spec.selector.matchExpressions[0].operator");
	assert_string_equal(errs.v[2].path, "spec.selector.matchExpressions[1].values");
	rec_selector_free(&s);
	json_object_put(o);
}

static void test_label_key_and_value_syntax(void **state)
{
	assert_true(rec__label_key_valid("app"));
	assert_true(rec__label_key_valid("app.kubernetes.io/name"));
	assert_true(rec__label_key_valid("a_b-c.d"));
	assert_false(rec__label_key_valid(""));
	assert_false(rec__label_key_valid("/name"));
	assert_false(rec__label_key_valid("Example.com/name"));
	assert_false(rec__label_key_valid("name-"));
	assert_false(rec__label_key_valid(
	        "a234567890123456789012345678901234567890123456789012345678901234"));
	assert_true(rec__label_value_valid(""));
	assert_true(rec__label_value_valid("v1.2.3"));
	assert_false(rec__label_value_valid("v1 2"));
	assert_false(rec__label_value_valid("_x"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_selector_matches_like_k8s_labels),
	        cmocka_unit_test(test_selector_null_is_empty_and_selects_all),
	        cmocka_unit_test(test_selector_string_sorted_like_labels_selector),
	        cmocka_unit_test(test_selector_errors_name_field_and_reason),
	        cmocka_unit_test(test_selector_reports_every_problem),
	        cmocka_unit_test(test_label_key_and_value_syntax),
	};
	return cmocka_run_group_tests_name("reconcile_selector", tests, NULL, NULL);
}
