/* common/tests/test_common.c: the shared vocabulary, table-tested. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

static void test_ptype_names_round_trip(void **state)
{
	static const struct {
		const char *name, *profefe;
		enum ppop_ptype t;
	} c[] = {
	        {"cpu", "cpu", PPOP_PT_CPU},
	        {"heap", "heap", PPOP_PT_HEAP},
	        {"allocs", "heap", PPOP_PT_ALLOCS},
	        {"goroutine", "goroutine", PPOP_PT_GOROUTINE},
	        {"mutex", "mutex", PPOP_PT_MUTEX},
	        {"block", "block", PPOP_PT_BLOCK},
	        {"threadcreate", "threadcreate", PPOP_PT_THREADCREATE},
	};
	enum ppop_ptype t;

	assert_int_equal(sizeof(c) / sizeof(c[0]), PPOP_PT__KNOWN);
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		assert_int_equal(ppop_ptype_parse(c[i].name, &t), 0);
		assert_int_equal(t, c[i].t);
		assert_string_equal(ppop_ptype_name(t), c[i].name);
		assert_string_equal(ppop_ptype_profefe(t), c[i].profefe);
	}
}

static void test_ptype_parse_refuses_the_rest(void **state)
{
	static const char *const bad[] = {"other", "CPU", "profile", "trace", "", "cpu "};
	enum ppop_ptype t = PPOP_PT_HEAP;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(ppop_ptype_parse(bad[i], &t), -EINVAL);
	assert_int_equal(ppop_ptype_parse(NULL, &t), -EINVAL);
	assert_int_equal(t, PPOP_PT_HEAP); /* untouched on failure */
	assert_string_equal(ppop_ptype_name(PPOP_PT_OTHER), "other");
	assert_string_equal(ppop_ptype_name((enum ppop_ptype)99), "other");
}

static void test_query_escape_table(void **state)
{
	static const struct {
		const char *in, *want;
	} c[] = {
	        {"", ""},
	        {"Az09-_.~", "Az09-_.~"},
	        {" ", "%20"},
	        {"/?&=+%,", "%2F%3F%26%3D%2B%25%2C"},
	        {"\xc3\xa9", "%C3%A9"},
	        {"\x01\x7f\xff", "%01%7F%FF"},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		char *e = ppop_query_escape(c[i].in);
		char buf[64];

		assert_non_null(e);
		assert_string_equal(e, c[i].want);
		assert_int_equal(ppop_query_escaped_len(c[i].in), strlen(c[i].want));
		assert_ptr_equal(ppop_query_escape_into(buf, c[i].in), buf + strlen(c[i].want));
		assert_string_equal(buf, c[i].want);
		free(e);
	}
}

static void expect_labels(const struct ppop_kv *l, size_t n, const char *want)
{
	char *got = ppop_labels_encode(l, n);

	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static void test_labels_sorted_no_leading_comma(void **state)
{
	struct ppop_kv l[] = {
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
	struct ppop_kv l[] = {
	        {"a b", "x,y=z"},
	        {"go", "go1.13.4"},
	        {"img", "reg.io/app:v%1"},
	        {"e", ""},
	};
	expect_labels(l, 4, "a%20b=x%2Cy%3Dz,e=,go=go1.13.4,img=reg.io%2Fapp%3Av%251");
}

static void test_labels_skip_empty_keys_and_null_values(void **state)
{
	struct ppop_kv l[] = {{"", "x"}, {NULL, "y"}, {"k", NULL}, {"j", "1"}};
	struct ppop_kv only_empty[] = {{"", "x"}};

	expect_labels(l, 4, "j=1,k=");
	expect_labels(only_empty, 1, "");
}

static void test_labels_equal_keys_sorted_by_value(void **state)
{
	struct ppop_kv l[] = {{"k", "b"}, {"k", "a"}};

	expect_labels(l, 2, "k=a,k=b");
}

/* The published FNV-1a 64 test vectors, and chaining. */
static void test_fnv1a_vectors(void **state)
{
	static const struct {
		const char *in;
		uint64_t want;
	} c[] = {
	        {"", 0xcbf29ce484222325ULL},
	        {"a", 0xaf63dc4c8601ec8cULL},
	        {"foobar", 0x85944171f73967e8ULL},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		assert_true(ppop_fnv1a_str(PPOP_FNV1A_INIT, c[i].in) == c[i].want);
		assert_true(ppop_fnv1a(PPOP_FNV1A_INIT, c[i].in, strlen(c[i].in)) == c[i].want);
	}
	assert_true(ppop_fnv1a_str(ppop_fnv1a_str(PPOP_FNV1A_INIT, "foo"), "bar") ==
	            0x85944171f73967e8ULL);
	assert_true(ppop_fnv1a(PPOP_FNV1A_INIT, "a\0b", 3) !=
	            ppop_fnv1a(PPOP_FNV1A_INIT, "a\0c", 3));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_ptype_names_round_trip),
	        cmocka_unit_test(test_ptype_parse_refuses_the_rest),
	        cmocka_unit_test(test_query_escape_table),
	        cmocka_unit_test(test_labels_sorted_no_leading_comma),
	        cmocka_unit_test(test_labels_escaped),
	        cmocka_unit_test(test_labels_skip_empty_keys_and_null_values),
	        cmocka_unit_test(test_labels_equal_keys_sorted_by_value),
	        cmocka_unit_test(test_fnv1a_vectors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
