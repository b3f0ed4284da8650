/* kube/tests/test_framer.c: the watch-stream framer, whatever the chunk
 * boundaries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/kube_int.h"

/* Three events as the API server writes them, including a string with an
 * escaped newline and braces, and unicode. */
static const char stream[] =
        "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"1\"}}}"
        "\n"
        "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"b}{\\n\\\"\","
        "\"resourceVersion\""
        ":\"2\"},\"x\":[1,2.5,true,null,\"\\u00e9\"]}}\n"
        "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"3\"}}}\n";

struct seen {
	char names[8][64];
	int n;
};

static int collect(void *arg, struct json_object *obj)
{
	struct seen *s = arg;
	struct json_object *t;

	assert_true(json_object_object_get_ex(obj, "type", &t));
	assert_true(s->n < 8);
	snprintf(s->names[s->n++], 64, "%s", json_object_get_string(t));
	return 0;
}

static void check_seen(const struct seen *s)
{
	assert_int_equal(s->n, 3);
	assert_string_equal(s->names[0], "ADDED");
	assert_string_equal(s->names[1], "MODIFIED");
	assert_string_equal(s->names[2], "BOOKMARK");
}

/* Splits the stream in two at every byte boundary. */
static void test_split_at_every_byte(void **state)
{
	size_t len = strlen(stream);

	(void)state;
	for (size_t cut = 0; cut <= len; cut++) {
		struct kube__framer f;
		struct seen s = {0};

		assert_int_equal(kube__framer_init(&f, 0), 0);
		assert_int_equal(kube__framer_feed(&f, stream, cut, collect, &s), 0);
		assert_int_equal(kube__framer_feed(&f, stream + cut, len - cut, collect, &s), 0);
		check_seen(&s);
		kube__framer_free(&f);
	}
}

/* Splits the stream at every pair of boundaries (three chunks). */
static void test_split_three_ways(void **state)
{
	size_t len = strlen(stream);

	(void)state;
	for (size_t a = 0; a <= len; a += 3) {
		for (size_t b = a; b <= len; b++) {
			struct kube__framer f;
			struct seen s = {0};

			assert_int_equal(kube__framer_init(&f, 0), 0);
			assert_int_equal(kube__framer_feed(&f, stream, a, collect, &s), 0);
			assert_int_equal(kube__framer_feed(&f, stream + a, b - a, collect, &s), 0);
			assert_int_equal(kube__framer_feed(&f, stream + b, len - b, collect, &s),
			                 0);
			check_seen(&s);
			kube__framer_free(&f);
		}
	}
}

static void test_byte_at_a_time(void **state)
{
	struct kube__framer f;
	struct seen s = {0};

	(void)state;
	assert_int_equal(kube__framer_init(&f, 0), 0);
	for (size_t i = 0; i < strlen(stream); i++)
		assert_int_equal(kube__framer_feed(&f, stream + i, 1, collect, &s), 0);
	check_seen(&s);
	kube__framer_free(&f);
}

static void test_malformed_is_an_error(void **state)
{
	struct kube__framer f;
	struct seen s = {0};

	(void)state;
	assert_int_equal(kube__framer_init(&f, 0), 0);
	assert_int_equal(kube__framer_feed(&f, "{\"a\":}\n", 7, collect, &s), -EBADMSG);
	kube__framer_free(&f);
	assert_int_equal(kube__framer_init(&f, 0), 0);
	assert_int_equal(kube__framer_feed(&f, "{\"a\"\0:1}", 8, collect, &s), -EBADMSG);
	kube__framer_free(&f);
}

/* A stray sign in a number is an error wherever the stream is cut (json-c
 * alone drops it when the number is split across two feeds), and an
 * exponent's sign is not. */
static void test_number_sign_error_whatever_the_cuts(void **state)
{
	static const char bad[] = "{\"type\":\"ADDED\",\"object\":{\"a\":35-}}\n";
	static const char good[] = "{\"type\":\"ADDED\",\"object\":{\"a\":-1e-5,\"b\":\"3-\"}}\n";
	size_t len = strlen(bad);

	(void)state;
	for (size_t cut = 0; cut <= len; cut++) {
		struct kube__framer f;
		struct seen s = {0};
		int rc;

		assert_int_equal(kube__framer_init(&f, 0), 0);
		rc = kube__framer_feed(&f, bad, cut, collect, &s);
		if (rc == 0)
			rc = kube__framer_feed(&f, bad + cut, len - cut, collect, &s);
		if (rc != -EBADMSG || s.n != 0)
			fail_msg("cut at %zu: rc %d, %d events", cut, rc, s.n);
		kube__framer_free(&f);
	}
	len = strlen(good);
	for (size_t cut = 0; cut <= len; cut++) {
		struct kube__framer f;
		struct seen s = {0};

		assert_int_equal(kube__framer_init(&f, 0), 0);
		assert_int_equal(kube__framer_feed(&f, good, cut, collect, &s), 0);
		assert_int_equal(kube__framer_feed(&f, good + cut, len - cut, collect, &s), 0);
		assert_int_equal(s.n, 1);
		kube__framer_free(&f);
	}
}

static void test_event_over_cap_is_refused(void **state)
{
	struct kube__framer f;
	struct seen s = {0};
	char big[300];

	(void)state;
	memset(big, ' ', sizeof(big));
	memcpy(big, "{\"type\":\"", 9);
	assert_int_equal(kube__framer_init(&f, 100), 0);
	assert_int_equal(kube__framer_feed(&f, "{\"type\":\"ADDED\"}\n", 17, collect, &s), 0);
	assert_int_equal(s.n, 1);
	for (size_t i = 9; i < sizeof(big); i++)
		big[i] = 'x';
	assert_int_equal(kube__framer_feed(&f, big, 60, collect, &s), 0);
	assert_int_equal(kube__framer_feed(&f, big + 60, 60, collect, &s), -EFBIG);
	kube__framer_free(&f);
}

static int stop_after_first(void *arg, struct json_object *obj)
{
	int *n = arg;

	(void)obj;
	return ++*n == 1 ? 7 : 0;
}

static void test_emit_can_stop_feeding(void **state)
{
	struct kube__framer f;
	int n = 0;

	(void)state;
	assert_int_equal(kube__framer_init(&f, 0), 0);
	assert_int_equal(kube__framer_feed(&f, stream, strlen(stream), stop_after_first, &n), 7);
	assert_int_equal(n, 1);
	kube__framer_free(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_split_at_every_byte),
	        cmocka_unit_test(test_split_three_ways),
	        cmocka_unit_test(test_byte_at_a_time),
	        cmocka_unit_test(test_malformed_is_an_error),
	        cmocka_unit_test(test_number_sign_error_whatever_the_cuts),
	        cmocka_unit_test(test_event_over_cap_is_refused),
	        cmocka_unit_test(test_emit_can_stop_feeding),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
