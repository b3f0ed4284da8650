/* Unit tests of kubectl-profefe's command line: flags as kubectl takes
 * them, --from/--to and --request-timeout values, label arguments, and the
 * namespace default from the kubeconfig context. */
#include "kubectl-profefe/kp.h"

#include "kube/kube.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define MAXARGS 32

/* Parses a NULL-terminated list of words after the program name. */
static int parse(struct kp_opts *o, char *err, size_t errlen, ...)
{
	static char *argv[MAXARGS];
	va_list ap;
	int argc = 0;
	char *a;

	argv[argc++] = "kubectl-profefe";
	va_start(ap, errlen);
	while ((a = va_arg(ap, char *)) != NULL && argc < MAXARGS)
		argv[argc++] = a;
	va_end(ap);
	err[0] = '\0';
	return kp_parse_args(argc, argv, o, err, errlen);
}

static void test_flags_anywhere_in_kubectl_forms(void **state)
{
	struct kp_opts o;
	char err[256];

	(void)state;
	assert_int_equal(parse(&o, err, sizeof(err), "--kubeconfig=/k", "capture", "-nweb", "-l",
	                       "app=x", "--context", "ctx", "--request-timeout=5s", NULL),
	                 0);
	assert_int_equal(o.cmd, KP_CMD_CAPTURE);
	assert_string_equal(o.kubeconfig, "/k");
	assert_string_equal(o.ns, "web");
	assert_string_equal(o.selector, "app=x");
	assert_string_equal(o.context, "ctx");
	assert_int_equal(o.request_timeout_ms, 5000);
	kp_opts_free(&o);

	assert_int_equal(parse(&o, err, sizeof(err), "capture", "pod-a", "-n=ns1", "pod-b",
	                       "--namespace", "ns2", "--", "-weird-pod", NULL),
	                 0);
	assert_string_equal(o.ns, "ns2"); /* the last one wins, as in pflag */
	assert_int_equal(o.nargs, 3);
	assert_string_equal(o.args[0], "pod-a");
	assert_string_equal(o.args[1], "pod-b");
	assert_string_equal(o.args[2], "-weird-pod");
	kp_opts_free(&o);

	assert_int_equal(parse(&o, err, sizeof(err), "capture", "-A", "-l", "app=x", NULL), 0);
	assert_true(o.all_ns);
	kp_opts_free(&o);
	assert_int_equal(parse(&o, err, sizeof(err), "capture", "--all-namespaces=false", NULL), 0);
	assert_false(o.all_ns);
	kp_opts_free(&o);
}

static void test_capture_type_defaults_repeats_and_dedupes(void **state)
{
	struct kp_opts o;
	char err[256];

	(void)state;
	assert_int_equal(parse(&o, err, sizeof(err), "capture", NULL), 0);
	assert_int_equal(o.ntypes, 3);
	assert_int_equal(o.types[0], PPOP_PT_CPU);
	assert_int_equal(o.types[1], PPOP_PT_HEAP);
	assert_int_equal(o.types[2], PPOP_PT_GOROUTINE);
	assert_int_equal(o.seconds, REC_DEFAULT_CPU_SECONDS);
	assert_null(o.output_dir);
	kp_opts_free(&o);

	assert_int_equal(parse(&o, err, sizeof(err), "capture", "--type", "heap",
	                       "--type=mutex,block", "--type", "heap", "--seconds", "3", NULL),
	                 0);
	assert_int_equal(o.ntypes, 3);
	assert_int_equal(o.types[0], PPOP_PT_HEAP);
	assert_int_equal(o.types[1], PPOP_PT_MUTEX);
	assert_int_equal(o.types[2], PPOP_PT_BLOCK);
	assert_int_equal(o.seconds, 3);
	kp_opts_free(&o);
}

/* Every usage error is one line naming what is wrong. */
static void expect_error(const char *want, ...)
{
	static char *argv[MAXARGS];
	struct kp_opts o;
	char err[256] = "";
	va_list ap;
	int argc = 0;
	char *a;

	argv[argc++] = "kubectl-profefe";
	va_start(ap, want);
	while ((a = va_arg(ap, char *)) != NULL && argc < MAXARGS)
		argv[argc++] = a;
	va_end(ap);
	assert_int_equal(kp_parse_args(argc, argv, &o, err, sizeof(err)), -EINVAL);
	if (strstr(err, want) == NULL)
		fail_msg("error \"%s\" does not contain \"%s\"", err, want);
	assert_null(strchr(err, '\n'));
	assert_null(o.args);
}

static void test_bad_flags_are_one_clear_line(void **state)
{
	(void)state;
	expect_error("unknown flag: --bogus", "capture", "--bogus", NULL);
	expect_error("unknown shorthand flag: 'z'", "get", "profiles", "-z", NULL);
	expect_error("unknown flag --seconds for \"get profiles\"", "get", "profiles", "--service",
	             "s", "--seconds", "3", NULL);
	expect_error("flag needs an argument: -n", "capture", "-n", NULL);
	expect_error("invalid --type \"wall\"", "capture", "--type", "wall", NULL);
	expect_error("invalid --seconds \"0\"", "capture", "--seconds", "0", NULL);
	expect_error("invalid --seconds \"301\"", "capture", "--seconds", "301", NULL);
	expect_error("invalid --seconds \"5s\"", "capture", "--seconds", "5s", NULL);
	expect_error("across all namespaces", "capture", "-A", "pod-a", NULL);
	expect_error("not both", "capture", "pod-a", "-l", "app=x", NULL);
	expect_error("exclude each other", "capture", "--output-dir", "d", "--profefe-url",
	             "http://127.0.0.1:1", NULL);
	expect_error("invalid --profefe-url", "get", "services", "--profefe-url", "localhost:1",
	             NULL);
	expect_error("unknown command \"snapshot\"", "snapshot", NULL);
	expect_error("get needs a resource", "get", NULL);
	expect_error("not \"pods\"", "get", "pods", NULL);
	expect_error("needs --service", "get", "profiles", NULL);
	expect_error("unable to match a printer for -o \"xml\"", "get", "services", "-o", "xml",
	             NULL);
	expect_error("invalid --type \"allocs\"", "get", "profiles", "--service", "s", "--type",
	             "allocs", NULL);
	expect_error("--type may be given once", "get", "profiles", "--service", "s", "--type",
	             "cpu", "--type", "heap", NULL);
	expect_error("load needs at least one FILE", "load", "--service", "s", NULL);
	expect_error("load needs --service", "load", "f.pb.gz", NULL);
	expect_error("pprof needs at least one profile ID", "pprof", NULL);
	expect_error("invalid profile ID \"a+b\"", "pprof", "a+b", NULL);
	expect_error("merge needs --service and --type", "merge", "--service", "s", NULL);
	expect_error("invalid --request-timeout \"soon\"", "capture", "--request-timeout", "soon",
	             NULL);
	expect_error("invalid --limit", "get", "profiles", "--service", "s", "--limit", "-1", NULL);
	expect_error("needs a command first", "--seconds", "3", NULL);
}

static void test_help_on_every_command(void **state)
{
	static const char *const cmds[][2] = {{"capture", NULL},   {"get", "profiles"},
	                                      {"get", "services"}, {"load", NULL},
	                                      {"pprof", NULL},     {"merge", NULL}};
	struct kp_opts o;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		/* -h wins over missing required flags, as in kubectl */
		assert_int_equal(parse(&o, err, sizeof(err), cmds[i][0], "-h", cmds[i][1], NULL),
		                 0);
		assert_true(o.help);
		assert_int_not_equal(o.cmd, KP_CMD_NONE);
		kp_opts_free(&o);
	}
	assert_int_equal(parse(&o, err, sizeof(err), "help", "merge", NULL), 0);
	assert_true(o.help);
	assert_int_equal(o.cmd, KP_CMD_MERGE);
	kp_opts_free(&o);
	assert_int_equal(parse(&o, err, sizeof(err), "--help", NULL), 0);
	assert_true(o.help);
	assert_int_equal(o.cmd, KP_CMD_NONE);
	kp_opts_free(&o);
}

static void test_query_commands(void **state)
{
	struct kp_opts o;
	char err[256];

	(void)state;
	assert_int_equal(parse(&o, err, sizeof(err), "get", "profiles", "--service", "web", "-o",
	                       "wide", "--from", "2h", "--to=now", "-l", "a=b", NULL),
	                 0);
	assert_int_equal(o.cmd, KP_CMD_GET_PROFILES);
	assert_int_equal(o.fmt, KP_FMT_WIDE);
	assert_string_equal(o.from, "2h");
	assert_string_equal(o.to, "now");
	assert_string_equal(o.selector, "a=b");
	kp_opts_free(&o);
	assert_int_equal(parse(&o, err, sizeof(err), "get", "services", "-oyaml", NULL), 0);
	assert_int_equal(o.fmt, KP_FMT_YAML);
	kp_opts_free(&o);
	assert_int_equal(
	        parse(&o, err, sizeof(err), "pprof", "id1", "id2", "-o", "out.pb.gz", NULL), 0);
	assert_int_equal(o.cmd, KP_CMD_PPROF);
	assert_int_equal(o.nargs, 2);
	assert_string_equal(o.output, "out.pb.gz");
	kp_opts_free(&o);
	assert_int_equal(parse(&o, err, sizeof(err), "load", "a.pb.gz", "b.pb", "--service", "s",
	                       "--type", "allocs", NULL),
	                 0);
	assert_string_equal(o.type, "allocs");
	kp_opts_free(&o);
}

static void test_time_args(void **state)
{
	const int64_t now = 1767225600000; /* 2026-01-01T00:00:00Z */
	int64_t t;

	(void)state;
	assert_int_equal(kp_parse_time_arg("now", now, &t), 0);
	assert_int_equal(t, now);
	assert_int_equal(kp_parse_time_arg("-1h", now, &t), 0);
	assert_int_equal(t, now - 3600000);
	assert_int_equal(kp_parse_time_arg("1h", now, &t), 0); /* a duration means "ago" */
	assert_int_equal(t, now - 3600000);
	assert_int_equal(kp_parse_time_arg("30m", now, &t), 0);
	assert_int_equal(t, now - 1800000);
	assert_int_equal(kp_parse_time_arg("1h30m", now, &t), 0);
	assert_int_equal(t, now - 5400000);
	assert_int_equal(kp_parse_time_arg("+5m", now, &t), 0);
	assert_int_equal(t, now + 300000);
	assert_int_equal(kp_parse_time_arg("2025-12-31T23:00:00Z", now, &t), 0);
	assert_int_equal(t, now - 3600000);
	assert_int_equal(kp_parse_time_arg("2026-01-01T01:00:00+01:00", now, &t), 0);
	assert_int_equal(t, now);
	assert_int_equal(kp_parse_time_arg("2025-12-31T23:30:00", now, &t), 0); /* profefe's, UTC */
	assert_int_equal(t, now - 1800000);
	assert_int_equal(kp_parse_time_arg("", now, &t), -EINVAL);
	assert_int_equal(kp_parse_time_arg("yesterday", now, &t), -EINVAL);
	assert_int_equal(kp_parse_time_arg("-", now, &t), -EINVAL);
	assert_int_equal(kp_parse_time_arg("1x", now, &t), -EINVAL);
	assert_int_equal(kp_parse_time_arg("2026-13-01T00:00:00Z", now, &t), -EINVAL);
}

static void test_request_timeout(void **state)
{
	int64_t ms;

	(void)state;
	assert_int_equal(kp_parse_timeout("0", &ms), 0);
	assert_int_equal(ms, 0);
	assert_int_equal(kp_parse_timeout("30", &ms), 0); /* kubectl: bare seconds */
	assert_int_equal(ms, 30000);
	assert_int_equal(kp_parse_timeout("1m", &ms), 0);
	assert_int_equal(ms, 60000);
	assert_int_equal(kp_parse_timeout("1500ms", &ms), 0);
	assert_int_equal(ms, 1500);
	assert_int_equal(kp_parse_timeout("soon", &ms), -EINVAL);
	assert_int_equal(kp_parse_timeout("", &ms), -EINVAL);
}

static void test_labels_arg_sorted_and_escaped(void **state)
{
	char err[128], *s;

	(void)state;
	assert_int_equal(kp_labels_arg("version=1.2,app=web", &s, err, sizeof(err)), 0);
	assert_string_equal(s, "app=web,version=1.2");
	free(s);
	assert_int_equal(kp_labels_arg("k=a b", &s, err, sizeof(err)), 0);
	assert_string_equal(s, "k=a%20b");
	free(s);
	assert_int_equal(kp_labels_arg(NULL, &s, err, sizeof(err)), 0);
	assert_string_equal(s, "");
	free(s);
	assert_int_equal(kp_labels_arg("app", &s, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "invalid label \"app\""));
	assert_int_equal(kp_labels_arg("=x", &s, err, sizeof(err)), -EINVAL);
}

static void test_namespace_flag_then_context_then_default(void **state)
{
	struct kp_opts o = {0};

	(void)state;
	assert_string_equal(kp_namespace(&o, NULL), "default");
	assert_string_equal(kp_namespace(&o, ""), "default");
	assert_string_equal(kp_namespace(&o, "team-a"), "team-a");
	o.ns = "web";
	assert_string_equal(kp_namespace(&o, "team-a"), "web");
}

/* The context's namespace comes through kube/'s kubeconfig loader, as the
 * plugin uses it (kube-profefe ignored it). */
static void test_namespace_from_kubeconfig_context(void **state)
{
	static const char cfg[] = "apiVersion: v1\n"
	                          "kind: Config\n"
	                          "clusters:\n"
	                          "- name: c\n"
	                          "  cluster: {server: \"https://127.0.0.1:1\"}\n"
	                          "users:\n"
	                          "- name: u\n"
	                          "  user: {token: abc}\n"
	                          "contexts:\n"
	                          "- name: with-ns\n"
	                          "  context: {cluster: c, user: u, namespace: team-a}\n"
	                          "- name: without-ns\n"
	                          "  context: {cluster: c, user: u}\n"
	                          "current-context: with-ns\n";
	char path[] = "/tmp/kp-test-kubeconfig-XXXXXX";
	struct kube_config_opts ko = {.kubeconfig = path, .no_in_cluster = 1};
	struct kube_config *c = NULL;
	struct kp_opts o = {0};
	char err[256];
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, cfg, sizeof(cfg) - 1), (ssize_t)(sizeof(cfg) - 1));
	close(fd);
	assert_int_equal(kube_config_load(&ko, &c, err, sizeof(err)), 0);
	assert_string_equal(kp_namespace(&o, kube_config_namespace(c)), "team-a");
	o.ns = "other";
	assert_string_equal(kp_namespace(&o, kube_config_namespace(c)), "other");
	kube_config_free(c);
	o.ns = NULL;
	ko.context = "without-ns";
	assert_int_equal(kube_config_load(&ko, &c, err, sizeof(err)), 0);
	assert_string_equal(kp_namespace(&o, kube_config_namespace(c)), "default");
	kube_config_free(c);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_flags_anywhere_in_kubectl_forms),
	        cmocka_unit_test(test_capture_type_defaults_repeats_and_dedupes),
	        cmocka_unit_test(test_bad_flags_are_one_clear_line),
	        cmocka_unit_test(test_help_on_every_command),
	        cmocka_unit_test(test_query_commands),
	        cmocka_unit_test(test_time_args),
	        cmocka_unit_test(test_request_timeout),
	        cmocka_unit_test(test_labels_arg_sorted_and_escaped),
	        cmocka_unit_test(test_namespace_flag_then_context_then_default),
	        cmocka_unit_test(test_namespace_from_kubeconfig_context),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
