/* capture/tests/test_labels.c: labels, URLs, names and times: the strings
 * that profefe and Go's pprof server parse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "capture/capture.h"

static void expect_labels(const struct cap_label *l, size_t n, const char *want)
{
	char *got = cap_labels_encode(l, n);
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static void test_labels_sorted_no_leading_comma(void **state)
{
	struct cap_label l[] = {
	        {"pod", "web-1"},
	        {"namespace", "prod"},
	        {"version", "1.2.3"},
	        {"node", "n1"},
	};
	expect_labels(l, 4, "namespace=prod,node=n1,pod=web-1,version=1.2.3");
	expect_labels(l, 1, "pod=web-1");
	expect_labels(NULL, 0, "");
}

static void test_labels_escaped(void **state)
{
	/* profefe splits on ',' and '=' and then unescapes each part, so
	 * these must be escaped to survive. */
	struct cap_label l[] = {
	        {"a b", "x,y=z"},
	        {"go", "go1.13.4"},
	        {"img", "reg.io/app:v%1"},
	        {"e", ""},
	};
	expect_labels(l, 4, "a%20b=x%2Cy%3Dz,e=,go=go1.13.4,img=reg.io%2Fapp%3Av%251");
}

static void test_labels_skip_empty_keys_and_null_values(void **state)
{
	struct cap_label l[] = {{"", "x"}, {NULL, "y"}, {"k", NULL}, {"j", "1"}};
	expect_labels(l, 4, "j=1,k=");
	struct cap_label only_empty[] = {{"", "x"}};
	expect_labels(only_empty, 1, "");
}

static void test_labels_equal_keys_sorted_by_value(void **state)
{
	struct cap_label l[] = {{"k", "b"}, {"k", "a"}};
	expect_labels(l, 2, "k=a,k=b");
}

static void test_query_escape(void **state)
{
	char *e = cap_query_escape("Az09-_.~ /?&=+%\xc3\xa9");
	assert_string_equal(e, "Az09-_.~%20%2F%3F%26%3D%2B%25%C3%A9");
	free(e);
}

static void test_target_key(void **state)
{
	char k[64];
	assert_int_equal(cap_target_key("127.0.0.2", 6060, k, sizeof(k)), 0);
	assert_string_equal(k, "127.0.0.2:6060");
	assert_int_equal(cap_target_key("::1", 6060, k, sizeof(k)), 0);
	assert_string_equal(k, "[::1]:6060");
	assert_int_equal(cap_target_key("127.0.0.2", 6060, k, 5), -ENOSPC);
}

static void test_ptype_names(void **state)
{
	enum cap_ptype t;
	const char *names[] = {"cpu",   "heap",  "allocs",      "goroutine",
	                       "mutex", "block", "threadcreate"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		assert_int_equal(cap_ptype_parse(names[i], &t), 0);
		assert_string_equal(cap_ptype_name(t), names[i]);
	}
	assert_int_equal(cap_ptype_parse("profile", &t), 0);
	assert_int_equal(t, CAP_PT_CPU);
	assert_int_equal(cap_ptype_parse("trace", &t), -EINVAL);
	/* profefe has no allocs type: allocs is stored as heap. */
	assert_string_equal(cap_ptype_profefe(CAP_PT_ALLOCS), "heap");
	assert_string_equal(cap_ptype_profefe(CAP_PT_MUTEX), "mutex");
	assert_string_equal(cap_result_name(CAP_RES_EMPTY), "empty");
	assert_string_equal(cap_result_name(CAP_RES_TOO_LARGE), "too_large");
}

static void test_format_time_utc(void **state)
{
	char b[32];
	assert_int_equal(cap_format_time(1136214245000, b, sizeof(b)), 0);
	assert_string_equal(b, "2006-01-02T15:04:05");
	assert_int_equal(cap_format_time(1136214245999, b, sizeof(b)), 0);
	assert_string_equal(b, "2006-01-02T15:04:05");
	assert_int_equal(cap_format_time(0, b, 5), -ENOSPC);
}

static void test_user_agent(void **state)
{
	assert_true(strncmp(cap_user_agent(), "profefe-operator/", 17) == 0);
	assert_true(strlen(cap_user_agent()) > 17);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_labels_sorted_no_leading_comma),
	        cmocka_unit_test(test_labels_escaped),
	        cmocka_unit_test(test_labels_skip_empty_keys_and_null_values),
	        cmocka_unit_test(test_labels_equal_keys_sorted_by_value),
	        cmocka_unit_test(test_query_escape),
	        cmocka_unit_test(test_target_key),
	        cmocka_unit_test(test_ptype_names),
	        cmocka_unit_test(test_format_time_utc),
	        cmocka_unit_test(test_user_agent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
