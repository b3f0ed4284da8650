/* capture/tests/test_profefe_scan.c: reading profefe's push and error
 * replies without a JSON tree (cap__profefe_scan), table-driven. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "capture/internal.h"

struct scan_case {
	const char *reply;
	int rc;
	const char *id, *msg;
};

static const struct scan_case cases[] = {
        /* What profefe sends. */
        {"{\"code\":200,\"body\":{\"id\":\"bq3bqc5rp0gtn6o2m9kg\",\"type\":\"heap\","
         "\"service\":\"svc\",\"labels\":[{\"key\":\"pod\",\"value\":\"p-1\"}],"
         "\"created_at\":\"2026-12-02T10:00:00Z\"}}\n",
         0, "bq3bqc5rp0gtn6o2m9kg", ""},
        {"{\"code\":400,\"error\":\"malformed profile\"}", 0, "", "malformed profile"},
        {" \r\n\t{ \"body\" : { \"id\" : \"x\" } } ", 0, "x", ""},
        /* Escapes are decoded, surrogate pairs joined. */
        {"{\"body\":{\"id\":\"a\\\"b\\\\c\\/d\\u00e9\\ud83d\\ude00\"}}", 0,
         "a\"b\\c/d\xc3\xa9\xf0\x9f\x98\x80", ""},
        {"{\"error\":\"line\\nnext\\ttab\"}", 0, "", "line\nnext\ttab"},
        /* Only body.id counts: not a nested id, not a root id. */
        {"{\"body\":{\"meta\":{\"id\":\"wrong\"},\"id\":\"right\"}}", 0, "right", ""},
        {"{\"body\":{\"x\":{\"id\":\"no\"},\"y\":[{\"id\":\"no\"}]}}", 0, "", ""},
        {"{\"id\":\"root\",\"x\":{\"body\":{\"id\":\"deep\"}}}", 0, "", ""},
        {"{\"code\":200,\"body\":{}}", 0, "", ""},
        {"{\"body\":\"id\"}", 0, "", ""},
        {"{\"body\":{\"id\":5}}", 0, "", ""},
        {"{\"body\":{\"id\":null},\"error\":[\"x\"]}", 0, "", ""},
        {"{}", 0, "", ""},
        /* A key given twice counts as its last occurrence. */
        {"{\"body\":{\"id\":\"a\"},\"body\":{}}", 0, "", ""},
        {"{\"body\":{\"id\":\"a\",\"id\":\"b\"}}", 0, "b", ""},
        {"{\"error\":\"a\",\"error\":1}", 0, "", ""},
        /* A NUL in an id makes it no id; in a message it ends it. */
        {"{\"body\":{\"id\":\"a\\u0000b\"}}", 0, "", ""},
        {"{\"error\":\"a\\u0000b\"}", 0, "", "a"},
        /* Every JSON value kind, skipped. */
        {"{\"a\":[true,false,null,-0.5e+3,0,12,\"s\",{},[]],\"body\":{\"n\":1E2,\"id\":\"k\"}}", 0,
         "k", ""},
        /* What follows the object is not read. */
        {"{\"body\":{\"id\":\"t\"}} trailing", 0, "t", ""},
        /* Not a JSON object. */
        {"", -EINVAL, "", ""},
        {"   ", -EINVAL, "", ""},
        {"<html>502 Bad Gateway</html>", -EINVAL, "", ""},
        {"[{\"body\":{\"id\":\"x\"}}]", -EINVAL, "", ""},
        {"\"str\"", -EINVAL, "", ""},
        {"{", -EINVAL, "", ""},
        {"{\"error\":\"unterminated", -EINVAL, "", ""},
        {"{\"error\":\"ok\",\"body\":{\"id\":\"x\"}", -EINVAL, "", ""},
        {"{\"a\":}", -EINVAL, "", ""},
        {"{\"a\" 1}", -EINVAL, "", ""},
        {"{\"a\":1,}", -EINVAL, "", ""},
        {"{\"a\":tru}", -EINVAL, "", ""},
        {"{\"a\":01}", -EINVAL, "", ""},
        {"{\"a\":1.}", -EINVAL, "", ""},
        {"{\"a\":-}", -EINVAL, "", ""},
        {"{\"a\":[1,]}", -EINVAL, "", ""},
        {"{'a':1}", -EINVAL, "", ""},
        {"{a:1}", -EINVAL, "", ""},
        {"{\"a\":\"\\x\"}", -EINVAL, "", ""},
        {"{\"a\":\"\\u12g4\"}", -EINVAL, "", ""},
        {"{\"a\":\"\\u12\"}", -EINVAL, "", ""},
        {"{\"error\":\"half\\", -EINVAL, "", ""},
};

static void test_scan_table(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct scan_case *c = &cases[i];
		char id[64], msg[64];
		print_message("%zu: %s\n", i, c->reply);
		memset(id, 'x', sizeof(id));
		memset(msg, 'x', sizeof(msg));
		assert_int_equal(cap__profefe_scan(c->reply, strlen(c->reply), id, sizeof(id), msg,
		                                   sizeof(msg)),
		                 c->rc);
		assert_string_equal(id, c->id);
		assert_string_equal(msg, c->msg);
	}
}

/* A reply of `n` bytes: {"error":"<m x 'e'>","body":{"id":"<k x 'i'>"}}. */
static char *long_reply(size_t m, size_t k, size_t *n)
{
	char *b = malloc(m + k + 64);
	size_t l = 0;
	assert_non_null(b);
	l += (size_t)sprintf(b + l, "{\"error\":\"");
	memset(b + l, 'e', m);
	l += m;
	l += (size_t)sprintf(b + l, "\",\"body\":{\"id\":\"");
	memset(b + l, 'i', k);
	l += k;
	l += (size_t)sprintf(b + l, "\"}}");
	*n = l;
	return b;
}

static void test_scan_bounds_id_and_message(void **state)
{
	char id[16], msg[16];
	size_t n;
	/* An id that fits exactly is taken; one byte more and it is no id. A
	 * message is cut to fit. */
	char *b = long_reply(100, 15, &n);
	assert_int_equal(cap__profefe_scan(b, n, id, sizeof(id), msg, sizeof(msg)), 0);
	assert_string_equal(id, "iiiiiiiiiiiiiii");
	assert_string_equal(msg, "eeeeeeeeeeeeeee");
	free(b);
	b = long_reply(3, 16, &n);
	assert_int_equal(cap__profefe_scan(b, n, id, sizeof(id), msg, sizeof(msg)), 0);
	assert_string_equal(id, "");
	assert_string_equal(msg, "eee");
	free(b);
	/* A huge id (1 MiB) is read through and dropped. */
	b = long_reply(0, 1u << 20, &n);
	assert_int_equal(cap__profefe_scan(b, n, id, sizeof(id), msg, sizeof(msg)), 0);
	assert_string_equal(id, "");
	free(b);
	assert_int_equal(cap__profefe_scan("{}", 2, id, 0, msg, sizeof(msg)), -EINVAL);
	assert_int_equal(cap__profefe_scan(NULL, 0, id, sizeof(id), msg, sizeof(msg)), -EINVAL);
}

/* {"a": <d levels of [ ]> } */
static int scan_depth(int d)
{
	char b[512], id[8], msg[8];
	size_t n = 0;
	n += (size_t)sprintf(b, "{\"a\":");
	for (int i = 0; i < d; i++)
		b[n++] = '[';
	for (int i = 0; i < d; i++)
		b[n++] = ']';
	b[n++] = '}';
	return cap__profefe_scan(b, n, id, sizeof(id), msg, sizeof(msg));
}

static void test_scan_depth_is_bounded(void **state)
{
	/* The object itself is one level, as in json-c's default of 32. */
	assert_int_equal(scan_depth(31), 0);
	assert_int_equal(scan_depth(32), -EINVAL);
	assert_int_equal(scan_depth(200), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_scan_table),
	        cmocka_unit_test(test_scan_bounds_id_and_message),
	        cmocka_unit_test(test_scan_depth_is_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
