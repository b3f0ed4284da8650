/* Unit tests of kubectl-profefe's printers: the kubectl-style table, -o
 * wide, JSON, YAML, and the empty results. */
#include "kubectl-profefe/kp.h"

#include <json-c/json.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* What profefe's list answers, as capture/'s client hands it over. */
static const char list_json[] =
        "[{\"id\":\"cnb1\",\"type\":\"cpu\",\"service\":\"web\","
        "\"labels\":[{\"key\":\"namespace\",\"value\":\"prod\"},{\"key\":\"pod\",\"value\":"
        "\"web-5d4c8-x7k2q\"}],\"created_at\":\"2026-01-01T00:00:00Z\"},"
        "{\"id\":\"cnb22\",\"type\":\"heap\",\"service\":\"web\","
        "\"created_at\":\"2025-12-31T22:00:00+00:00\"}]";

static const int64_t now = 1767225630000; /* 2026-01-01T00:00:30Z */

/* Renders into a string (caller frees). */
static char *render(int services, const char *json, enum kp_fmt fmt, size_t *n)
{
	struct json_object *v = json ? json_tokener_parse(json) : NULL;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	*n = services ? kp_render_services(f, v, fmt) : kp_render_profiles(f, v, fmt, now);
	fclose(f);
	json_object_put(v);
	return buf;
}

static void test_table_is_kubectl_style(void **state)
{
	size_t n;
	char *s = render(0, list_json, KP_FMT_TABLE, &n);

	(void)state;
	assert_int_equal(n, 2);
	assert_string_equal(s, "ID      SERVICE   TYPE   CREATED                LABELS\n"
	                       "cnb1    web       cpu    2026-01-01T00:00:00Z   "
	                       "namespace=prod,pod=web-5d4c8-x7k2q\n"
	                       "cnb22   web       heap   2025-12-31T22:00:00Z   <none>\n");
	free(s);
}

static void test_table_shortens_long_labels_but_wide_does_not(void **state)
{
	const char *json = "[{\"id\":\"a\",\"type\":\"cpu\",\"service\":\"s\",\"labels\":["
	                   "{\"key\":\"k\",\"value\":\"0123456789012345678901234567890123456789"
	                   "0123456789012345678901234567890123456789\"}],"
	                   "\"created_at\":\"2026-01-01T00:00:00Z\"}]";
	size_t n;
	char *s = render(0, json, KP_FMT_TABLE, &n), *w;

	(void)state;
	assert_non_null(
	        strstr(s, "k=0123456789012345678901234567890123456789012345678901234...\n"));
	w = render(0, json, KP_FMT_WIDE, &n);
	assert_string_equal(w, "ID   SERVICE   TYPE   CREATED                AGE   LABELS\n"
	                       "a    s         cpu    2026-01-01T00:00:00Z   30s   "
	                       "k=01234567890123456789012345678901234567890123456789012345678901"
	                       "234567890123456789\n");
	free(s);
	free(w);
}

static void test_json_is_profefes_reply(void **state)
{
	size_t n;
	char *s = render(0, list_json, KP_FMT_JSON, &n);
	struct json_object *back = json_tokener_parse(s), *orig = json_tokener_parse(list_json);

	(void)state;
	assert_non_null(back);
	assert_true(json_object_equal(back, orig));
	json_object_put(back);
	json_object_put(orig);
	free(s);
}

static void test_yaml_block_style(void **state)
{
	size_t n;
	char *s = render(0, list_json, KP_FMT_YAML, &n);

	(void)state;
	assert_string_equal(s, "- id: cnb1\n"
	                       "  type: cpu\n"
	                       "  service: web\n"
	                       "  labels:\n"
	                       "  - key: namespace\n"
	                       "    value: prod\n"
	                       "  - key: pod\n"
	                       "    value: web-5d4c8-x7k2q\n"
	                       "  created_at: \"2026-01-01T00:00:00Z\"\n"
	                       "- id: cnb22\n"
	                       "  type: heap\n"
	                       "  service: web\n"
	                       "  created_at: \"2025-12-31T22:00:00+00:00\"\n");
	free(s);
}

static void test_yaml_quotes_what_would_change_meaning(void **state)
{
	const char *json = "{\"a\":\"true\",\"b\":\"1.20\",\"c\":\"x: y\",\"d\":\"\",\"e\":[],"
	                   "\"f\":{},\"g\":12,\"h\":null,\"i\":\"#x\",\"j\":[[1]],\"k\":\"plain\"}";
	struct json_object *v = json_tokener_parse(json);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	(void)state;
	kp_yaml_write(f, v);
	fclose(f);
	assert_string_equal(buf, "a: \"true\"\n"
	                         "b: \"1.20\"\n"
	                         "c: \"x: y\"\n"
	                         "d: \"\"\n"
	                         "e: []\n"
	                         "f: {}\n"
	                         "g: 12\n"
	                         "h: null\n"
	                         "i: \"#x\"\n"
	                         "j:\n"
	                         "-\n"
	                         "  - 1\n"
	                         "k: plain\n");
	json_object_put(v);
	free(buf);
}

static void test_empty_results_print_nothing_in_tables(void **state)
{
	size_t n;
	char *s;

	(void)state;
	s = render(0, NULL, KP_FMT_TABLE, &n); /* profefe's 404 "nothing found" */
	assert_int_equal(n, 0);
	assert_string_equal(s, "");
	free(s);
	s = render(0, "[]", KP_FMT_WIDE, &n);
	assert_string_equal(s, "");
	free(s);
	s = render(0, NULL, KP_FMT_JSON, &n);
	assert_string_equal(s, "[\n]\n");
	free(s);
	s = render(0, NULL, KP_FMT_YAML, &n);
	assert_string_equal(s, "[]\n");
	free(s);
	s = render(1, NULL, KP_FMT_TABLE, &n);
	assert_string_equal(s, "");
	free(s);
}

static void test_services(void **state)
{
	size_t n;
	char *s = render(1, "[\"api\",\"web\"]", KP_FMT_TABLE, &n);

	(void)state;
	assert_int_equal(n, 2);
	assert_string_equal(s, "SERVICE\napi\nweb\n");
	free(s);
	s = render(1, "[\"api\",\"web\"]", KP_FMT_YAML, &n);
	assert_string_equal(s, "- api\n- web\n");
	free(s);
}

/* profefe's own label filter misses profiles (see kp.h), so -l and --limit
 * are applied to the list: every label must match, newest N kept. */
static void test_filter_profiles_by_labels_then_limit(void **state)
{
	const char *json = "[{\"id\":\"a\",\"labels\":[{\"key\":\"pod\",\"value\":\"p1\"},{\"key\":"
	                   "\"v\",\"value\":\"1\"}]},"
	                   "{\"id\":\"b\",\"labels\":[{\"key\":\"pod\",\"value\":\"p2\"}]},"
	                   "{\"id\":\"c\",\"labels\":[{\"key\":\"pod\",\"value\":\"p1\"}]},"
	                   "{\"id\":\"d\"}]";
	struct json_object *arr = json_tokener_parse(json), *f;

	(void)state;
	f = kp_filter_profiles(arr, "pod=p1", 0);
	assert_int_equal(json_object_array_length(f), 2);
	assert_string_equal(json_object_to_json_string_ext(f, JSON_C_TO_STRING_PLAIN),
	                    "[{\"id\":\"a\",\"labels\":[{\"key\":\"pod\",\"value\":\"p1\"},{"
	                    "\"key\":\"v\",\"value\":\"1\"}]},{\"id\":\"c\",\"labels\":[{"
	                    "\"key\":\"pod\",\"value\":\"p1\"}]}]");
	json_object_put(f);
	f = kp_filter_profiles(arr, "pod=p1,v=1", 0);
	assert_int_equal(json_object_array_length(f), 1);
	json_object_put(f);
	f = kp_filter_profiles(arr, "pod=p", 0); /* values match whole */
	assert_int_equal(json_object_array_length(f), 0);
	json_object_put(f);
	f = kp_filter_profiles(arr, NULL, 3); /* the newest three: b, c, d */
	assert_int_equal(json_object_array_length(f), 3);
	assert_string_equal(json_object_get_string(
	                            json_object_object_get(json_object_array_get_idx(f, 0), "id")),
	                    "b");
	json_object_put(f);
	f = kp_filter_profiles(NULL, "pod=p1", 0); /* profefe's 404 */
	assert_int_equal(json_object_array_length(f), 0);
	json_object_put(f);
	assert_null(kp_filter_profiles(arr, "pod", 0));
	json_object_put(arr);
}

static void test_age(void **state)
{
	char b[16];

	(void)state;
	assert_string_equal(kp_age(-5, b, sizeof(b)), "0s");
	assert_string_equal(kp_age(45000, b, sizeof(b)), "45s");
	assert_string_equal(kp_age(12 * 60000, b, sizeof(b)), "12m");
	assert_string_equal(kp_age(5 * 3600000LL, b, sizeof(b)), "5h");
	assert_string_equal(kp_age(3 * 86400000LL, b, sizeof(b)), "3d");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_table_is_kubectl_style),
	        cmocka_unit_test(test_table_shortens_long_labels_but_wide_does_not),
	        cmocka_unit_test(test_json_is_profefes_reply),
	        cmocka_unit_test(test_yaml_block_style),
	        cmocka_unit_test(test_yaml_quotes_what_would_change_meaning),
	        cmocka_unit_test(test_empty_results_print_nothing_in_tables),
	        cmocka_unit_test(test_services),
	        cmocka_unit_test(test_filter_profiles_by_labels_then_limit),
	        cmocka_unit_test(test_age),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
