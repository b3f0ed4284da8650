/* capture/tests/test_labels.c: target keys, names and times: the strings
 * that profefe and Go's pprof server parse. (Labels and query escaping
 * are common/'s, tested in common/tests/test_common.c.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "capture/capture.h"

static void test_target_key(void **state)
{
	char k[64];
	assert_int_equal(cap_target_key("127.0.0.2", 6060, k, sizeof(k)), 0);
	assert_string_equal(k, "127.0.0.2:6060");
	assert_int_equal(cap_target_key("::1", 6060, k, sizeof(k)), 0);
	assert_string_equal(k, "[::1]:6060");
	assert_int_equal(cap_target_key("127.0.0.2", 6060, k, 5), -ENOSPC);
}

static void test_result_names(void **state)
{
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
	        cmocka_unit_test(test_target_key),
	        cmocka_unit_test(test_result_names),
	        cmocka_unit_test(test_format_time_utc),
	        cmocka_unit_test(test_user_agent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
