/* operator/tests/test_flags.c: every flag parses, every bad value is one
 * clear error naming the flag. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "operator/flags.h"

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])) - 1)

static void test_defaults_follow_kubebuilder(void **state)
{
	char *argv[] = {"op", NULL};
	struct op_flags f;
	char err[256];

	(void)state;
	assert_int_equal(op_flags_parse(ARGC(argv), argv, &f, err, sizeof(err)), 0);
	assert_string_equal(f.metrics_addr, ":8080");
	assert_string_equal(f.health_addr, ":8081");
	assert_int_equal(f.max_inflight, 256);
	assert_true(f.spool_max_bytes == 256ull << 20);
	assert_true(f.max_profile_bytes == 64ull << 20);
	assert_true(f.max_inflight_bytes == 0); /* the fetcher's: 2 * max_profile_bytes */
	assert_int_equal(f.spread_ms, 10000);
	assert_false(f.leader_elect);
	assert_null(f.ns);
	assert_null(f.kubeconfig);
	assert_null(f.allow_cross_ns); /* a policy reaches its own namespace only */
	assert_null(f.allowed_urls);   /* and the operator's own profefe only */
}

static void test_every_flag_parses(void **state)
{
	char *argv[] = {"op",
	                "--kubeconfig",
	                "/k",
	                "--context=c",
	                "-n",
	                "web",
	                "--profefe-url",
	                "http://p:10100",
	                "--metrics-bind-address",
	                "127.0.0.1:9",
	                "--health-probe-bind-address=:0",
	                "--leader-elect",
	                "--leader-election-namespace",
	                "ops",
	                "--leader-election-id",
	                "lease",
	                "--identity",
	                "me",
	                "--max-inflight",
	                "8",
	                "--spool-dir",
	                "/s",
	                "--spool-max-bytes",
	                "1Gi",
	                "--max-profile-bytes",
	                "512Ki",
	                "--max-inflight-bytes",
	                "1Gi",
	                "--spread-window",
	                "1m30s",
	                "--allow-cross-namespace",
	                "profefe-system,ops",
	                "--allowed-profefe-urls=http://a:1,https://b",
	                "--shutdown-timeout=5s",
	                "--log-format",
	                "json",
	                "-v",
	                "2",
	                "--check",
	                NULL};
	struct op_flags f;
	char err[256];

	(void)state;
	assert_int_equal(op_flags_parse(ARGC(argv), argv, &f, err, sizeof(err)), 0);
	assert_string_equal(f.kubeconfig, "/k");
	assert_string_equal(f.context, "c");
	assert_string_equal(f.ns, "web");
	assert_string_equal(f.profefe_url, "http://p:10100");
	assert_string_equal(f.metrics_addr, "127.0.0.1:9");
	assert_string_equal(f.health_addr, ":0");
	assert_true(f.leader_elect);
	assert_string_equal(f.lease_ns, "ops");
	assert_string_equal(f.lease_name, "lease");
	assert_string_equal(f.identity, "me");
	assert_int_equal(f.max_inflight, 8);
	assert_string_equal(f.spool_dir, "/s");
	assert_true(f.spool_max_bytes == 1ull << 30);
	assert_true(f.max_profile_bytes == 512ull << 10);
	assert_true(f.max_inflight_bytes == 1ull << 30);
	assert_int_equal(f.spread_ms, 90000);
	assert_string_equal(f.allow_cross_ns, "profefe-system,ops");
	assert_string_equal(f.allowed_urls, "http://a:1,https://b");
	assert_int_equal(f.shutdown_ms, 5000);
	assert_true(f.log_json);
	assert_int_equal(f.verbosity, 2);
	assert_true(f.check);
}

static void test_leader_elect_takes_explicit_false(void **state)
{
	char *argv[] = {"op", "--leader-elect=false", NULL};
	struct op_flags f;
	char err[256];

	(void)state;
	assert_int_equal(op_flags_parse(ARGC(argv), argv, &f, err, sizeof(err)), 0);
	assert_false(f.leader_elect);
}

struct bad {
	const char *flag, *value, *want;
};

static void test_bad_values_name_the_flag(void **state)
{
	static const struct bad cases[] = {
	        {"--max-inflight", "0", "--max-inflight"},
	        {"--max-inflight", "lots", "--max-inflight"},
	        {"--spool-max-bytes", "12Xi", "--spool-max-bytes"},
	        {"--spool-max-bytes", "-5", "--spool-max-bytes"},
	        {"--max-inflight-bytes", "12Xi", "--max-inflight-bytes"},
	        {"--max-inflight-bytes", "0", "--max-inflight-bytes"},
	        {"--spread-window", "soon", "--spread-window"},
	        {"--log-format", "xml", "--log-format"},
	        {"--leader-elect", "maybe", "--leader-elect"},
	        {"--profefe-url", "ftp://x", "--profefe-url"},
	        {"--allow-cross-namespace", "Team_A", "--allow-cross-namespace"},
	        {"--allow-cross-namespace", "a,,b", "--allow-cross-namespace"},
	        {"--allowed-profefe-urls", "http://a,ftp://b", "--allowed-profefe-urls"},
	        {"-v", "99", "-v"},
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char flag[64];
		char *argv[3] = {"op", flag, NULL};
		struct op_flags f;
		char err[256] = "";
		snprintf(flag, sizeof(flag), "%s=%s", cases[i].flag, cases[i].value);
		if (strcmp(cases[i].flag, "-v") == 0)
			snprintf(flag, sizeof(flag), "-v%s", cases[i].value);
		assert_int_equal(op_flags_parse(2, argv, &f, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, cases[i].want));
		assert_non_null(strstr(err, cases[i].value));
	}
}

static void test_max_inflight_bytes_holds_one_profile(void **state)
{
	char *small[] = {"op", "--max-inflight-bytes=1Mi", NULL};
	char *both[] = {"op", "--max-inflight-bytes=1Mi", "--max-profile-bytes=1Mi", NULL};
	struct op_flags f;
	char err[256] = "";

	(void)state;
	/* Below the default --max-profile-bytes (64Mi), whatever the order. */
	assert_int_equal(op_flags_parse(ARGC(small), small, &f, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "--max-inflight-bytes"));
	assert_non_null(strstr(err, "1Mi"));
	assert_non_null(strstr(err, "--max-profile-bytes"));
	assert_int_equal(op_flags_parse(ARGC(both), both, &f, err, sizeof(err)), 0);
	assert_true(f.max_inflight_bytes == 1ull << 20);
}

static void test_unknown_flag_missing_value_and_stray_args_fail(void **state)
{
	char *a1[] = {"op", "--bogus", NULL};
	char *a2[] = {"op", "--kubeconfig", NULL};
	char *a3[] = {"op", "extra", NULL};
	struct op_flags f;
	char err[256];

	(void)state;
	assert_int_equal(op_flags_parse(ARGC(a1), a1, &f, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unknown flag --bogus"));
	assert_int_equal(op_flags_parse(ARGC(a2), a2, &f, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "--kubeconfig needs a value"));
	assert_int_equal(op_flags_parse(ARGC(a3), a3, &f, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unexpected argument \"extra\""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_defaults_follow_kubebuilder),
	        cmocka_unit_test(test_every_flag_parses),
	        cmocka_unit_test(test_leader_elect_takes_explicit_false),
	        cmocka_unit_test(test_bad_values_name_the_flag),
	        cmocka_unit_test(test_max_inflight_bytes_holds_one_profile),
	        cmocka_unit_test(test_unknown_flag_missing_value_and_stray_args_fail),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
