/* kube/tests/test_config.c: kubeconfig shapes, KUBECONFIG merging, bad
 * files, in-cluster config and the exec credential plugin. Fixtures live
 * in kube/tests/data. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kube/kube_int.h"
#include "loop/loop.h"

static char datadir[1024];

static const char *data(const char *leaf)
{
	static char buf[4][1200];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", datadir, leaf);
	return buf[i];
}

static struct kube_config *load_ctx(const char *file, const char *ctx)
{
	struct kube_config *c = NULL;
	char err[512];
	int rc = kube_config_load_kubeconfig(data(file), ctx, &c, err, sizeof(err));

	if (rc)
		fail_msg("load %s/%s: %d %s", file, ctx ? ctx : "-", rc, err);
	return c;
}

static void test_current_context_token_and_ca_data(void **state)
{
	struct kube_config *c = load_ctx("full.yaml", NULL);

	(void)state;
	assert_string_equal(kube_config_server(c), "https://127.0.0.1:6443");
	assert_string_equal(kube_config_namespace(c), "web");
	assert_string_equal(c->token, "static-token");
	assert_string_equal(c->tls_server_name, "kubernetes.default.svc");
	assert_non_null(c->ca.data);
	assert_non_null(strstr(c->ca.data, "BEGIN CERTIFICATE"));
	assert_false(c->insecure);
	assert_null(c->exec);
	kube_config_free(c);
}

static void test_token_file_and_ca_file_are_relative(void **state)
{
	struct kube_config *c = load_ctx("full.yaml", "token-file-ctx");

	(void)state;
	assert_string_equal(c->token_file, data("token.txt"));
	assert_string_equal(c->ca_file, data("ca.crt"));
	assert_string_equal(kube_config_namespace(c), "default");
	kube_config_free(c);
}

static void test_client_cert_data_and_insecure(void **state)
{
	struct kube_config *c = load_ctx("full.yaml", "cert-data-ctx");

	(void)state;
	assert_string_equal(kube_config_server(c), "https://[::1]:6443");
	assert_true(c->insecure);
	assert_non_null(strstr(c->client_cert.data, "BEGIN CERTIFICATE"));
	assert_non_null(strstr(c->client_key.data, "BEGIN PRIVATE KEY"));
	assert_string_equal(kube_config_namespace(c), "api");
	kube_config_free(c);
}

static void test_client_cert_files(void **state)
{
	struct kube_config *c = load_ctx("full.yaml", "cert-file-ctx");

	(void)state;
	assert_non_null(strstr(c->client_cert.data, "Q0xJRU5ULUNFUlQ="));
	assert_non_null(strstr(c->client_key.data, "Q0xJRU5ULUtFWQ=="));
	kube_config_free(c);
}

static void test_exec_section(void **state)
{
	struct kube_config *c = load_ctx("full.yaml", "exec-ctx");

	(void)state;
	assert_non_null(c->exec);
	assert_string_equal(c->exec->api_version, "client.authentication.k8s.io/v1");
	assert_string_equal(c->exec->command, data("./exec-plugin.sh"));
	assert_string_equal(c->exec->args[0], "token");
	assert_string_equal(c->exec->args[1], "--flag=x");
	assert_null(c->exec->args[2]);
	assert_int_equal(c->exec->n_env, 1);
	assert_string_equal(c->exec->env[0].name, "PLUGIN_SUFFIX");
	assert_true(c->exec->provide_cluster_info);
	kube_config_free(c);
}

static void test_context_without_user(void **state)
{
	struct kube_config *c = load_ctx("full.yaml", "no-user-ctx");

	(void)state;
	assert_null(c->token);
	assert_null(c->client_cert.data);
	kube_config_free(c);
}

static void test_merge_first_file_wins(void **state)
{
	struct kube_config *c = NULL;
	char paths[2600], err[512];

	(void)state;
	snprintf(paths, sizeof(paths), "%s:%s", data("merge-a.yaml"), data("merge-b.yaml"));
	/* current-context from a; a-ctx, cluster and user "shared" from a. */
	assert_int_equal(kube_config_load_kubeconfig(paths, NULL, &c, err, sizeof(err)), 0);
	assert_string_equal(kube_config_server(c), "https://127.0.0.10:6443");
	assert_string_equal(c->token, "from-a");
	assert_string_equal(kube_config_namespace(c), "ns-a");
	assert_string_equal(kube_config_source(c), paths);
	kube_config_free(c);
	/* b-ctx exists only in b, but its user "shared" still comes from a. */
	assert_int_equal(kube_config_load_kubeconfig(paths, "b-ctx", &c, err, sizeof(err)), 0);
	assert_string_equal(kube_config_server(c), "https://127.0.0.11:6443");
	assert_string_equal(c->token, "from-a");
	kube_config_free(c);
	/* Reversed order: b wins everything it defines. */
	snprintf(paths, sizeof(paths), "%s:%s", data("merge-b.yaml"), data("merge-a.yaml"));
	assert_int_equal(kube_config_load_kubeconfig(paths, NULL, &c, err, sizeof(err)), 0);
	assert_string_equal(c->token, "from-b");
	kube_config_free(c);
	assert_int_equal(kube_config_load_kubeconfig(paths, "a-ctx", &c, err, sizeof(err)), 0);
	assert_string_equal(c->token, "b-token");
	kube_config_free(c);
}

static void test_merge_skips_missing_and_empty(void **state)
{
	struct kube_config *c = NULL;
	char paths[4000], err[512];

	(void)state;
	snprintf(paths, sizeof(paths), "%s:%s:%s", data("nope.yaml"), data("merge-nocontext.yaml"),
	         data("merge-b.yaml"));
	assert_int_equal(kube_config_load_kubeconfig(paths, NULL, &c, err, sizeof(err)), 0);
	assert_string_equal(kube_config_server(c), "https://127.0.0.11:6443");
	assert_string_equal(c->token, "from-b");
	kube_config_free(c);
}

static void test_load_order_flag_env_incluster(void **state)
{
	struct kube_config_opts o = {0};
	struct kube_config *c = NULL;
	char err[512];

	(void)state;
	setenv("KUBECONFIG", data("merge-b.yaml"), 1);
	o.kubeconfig = data("merge-a.yaml");
	assert_int_equal(kube_config_load(&o, &c, err, sizeof(err)), 0);
	assert_string_equal(c->token, "from-a");
	kube_config_free(c);
	o.kubeconfig = NULL;
	o.context = "a-ctx";
	assert_int_equal(kube_config_load(&o, &c, err, sizeof(err)), 0);
	assert_string_equal(c->token, "b-token");
	kube_config_free(c);
	unsetenv("KUBECONFIG");
	setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
	o.context = NULL;
	o.sa_dir = data("sa");
	assert_int_equal(kube_config_load(&o, &c, err, sizeof(err)), 0);
	assert_true(c->in_cluster);
	assert_string_equal(kube_config_server(c), "https://127.0.0.1:6443");
	assert_string_equal(kube_config_namespace(c), "profefe");
	assert_string_equal(c->token_file, data("sa/token"));
	assert_string_equal(c->ca_file, data("sa/ca.crt"));
	assert_string_equal(kube_config_source(c), "in-cluster");
	kube_config_free(c);
	setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
	assert_int_equal(kube_config_in_cluster(data("sa"), &c, err, sizeof(err)), 0);
	assert_string_equal(kube_config_server(c), "https://[fd00::1]:6443");
	kube_config_free(c);
	assert_int_equal(kube_config_in_cluster(data("nope"), &c, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "nope/token"));
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
}

/* Each bad file fails with one line naming the file and the field. */
static void test_bad_files_name_file_and_field(void **state)
{
	static const struct {
		const char *file;
		const char *ctx;
		const char *want;
	} cases[] = {
	        {"bad-yaml.yaml", NULL, "invalid YAML"},
	        {"bad-noserver.yaml", NULL, "clusters[0].cluster.server: missing"},
	        {"bad-base64.yaml", NULL, "certificate-authority-data: not valid base64"},
	        {"bad-tokenfile.yaml", NULL, "users[0].user.tokenFile: cannot read"},
	        {"bad-exec.yaml", NULL, "users[0].user.exec.apiVersion: must be"},
	        {"bad-insecure-ca.yaml", NULL, "cannot be combined"},
	        {"bad-types.yaml", NULL, "clusters[0].cluster.server: must be a string"},
	        {"bad-bool.yaml", NULL, "insecure-skip-tls-verify: must be true or false"},
	        {"bad-nocluster.yaml", NULL, "cluster \"missing\" not found"},
	        {"full.yaml", "no-such-ctx", "context \"no-such-ctx\" not found"},
	        {"does-not-exist.yaml", NULL, "cannot read"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct kube_config *c = NULL;
		char err[512] = "";
		int rc = kube_config_load_kubeconfig(data(cases[i].file), cases[i].ctx, &c, err,
		                                     sizeof(err));

		if (rc == 0 || !strstr(err, cases[i].want) || !strstr(err, cases[i].file) ||
		    strchr(err, '\n'))
			fail_msg("%s: rc=%d err=\"%s\", want \"%s\"", cases[i].file, rc, err,
			         cases[i].want);
		assert_null(c);
	}
}

static void test_parse_in_memory_without_files(void **state)
{
	const char *names[] = {"mem"};
	const char *bufs[] = {"current-context: c\nclusters: [{name: x, cluster: {server: "
	                      "'https://h', certificate-authority: /etc/passwd}}]\ncontexts: "
	                      "[{name: c, context: {cluster: x}}]\n"};
	size_t lens[] = {strlen(bufs[0])};
	struct kube_config *c = NULL;
	char err[256];

	(void)state;
	assert_int_equal(
	        kube__kubeconfig_parse(names, bufs, lens, 1, NULL, 0, &c, err, sizeof(err)),
	        -EPERM);
	assert_non_null(strstr(err, "not allowed"));
}

/* ---- exec plugin ----------------------------------------------------- */

static char plugin_log[256];

static int count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	int n = 0, ch;

	if (!f)
		return 0;
	while ((ch = fgetc(f)) != EOF)
		n += ch == '\n';
	fclose(f);
	return n;
}

static int exec_setup(void **state)
{
	(void)state;
	snprintf(plugin_log, sizeof(plugin_log), "/tmp/kube-test-plugin-%d.log", (int)getpid());
	unlink(plugin_log);
	setenv("PLUGIN_LOG", plugin_log, 1);
	unsetenv("PLUGIN_MODE");
	unsetenv("PLUGIN_EXPIRY");
	return 0;
}

static int exec_teardown(void **state)
{
	(void)state;
	unlink(plugin_log);
	return 0;
}

static void test_exec_plugin_gets_env_args_and_info(void **state)
{
	struct kube_config *c = load_ctx("full.yaml", "exec-ctx");
	struct kube__exec_cred cred;
	char err[512], line[2048];
	FILE *f;

	(void)state;
	assert_int_equal(kube__exec_run(c->exec, c, 5000, &cred, err, sizeof(err)), 0);
	assert_string_equal(cred.token, "tok-abc-1");
	assert_int_equal(cred.expires, 0);
	kube__exec_cred_free(&cred);
	f = fopen(plugin_log, "r");
	assert_non_null(f);
	assert_non_null(fgets(line, sizeof(line), f));
	fclose(f);
	assert_int_equal(strncmp(line, "token|--flag=x|abc|", 19), 0);
	assert_non_null(strstr(line, "\"apiVersion\":\"client.authentication.k8s.io/v1\""));
	assert_non_null(strstr(line, "\"kind\":\"ExecCredential\""));
	assert_non_null(strstr(line, "\"interactive\":false"));
	assert_non_null(strstr(line, "\"server\":\"https://127.0.0.1:6443\""));
	assert_non_null(strstr(line, "certificate-authority-data"));
	kube_config_free(c);
}

static void test_exec_plugin_failures(void **state)
{
	struct kube_config *c = load_ctx("full.yaml", "exec-ctx");
	struct kube__exec_cred cred;
	char err[512];

	(void)state;
	setenv("PLUGIN_MODE", "fail", 1);
	assert_int_equal(kube__exec_run(c->exec, c, 5000, &cred, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "exited with status 3: plugin says no"));
	setenv("PLUGIN_MODE", "garbage", 1);
	assert_int_equal(kube__exec_run(c->exec, c, 5000, &cred, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a JSON object"));
	setenv("PLUGIN_MODE", "cert", 1);
	assert_int_equal(kube__exec_run(c->exec, c, 5000, &cred, err, sizeof(err)), 0);
	assert_string_equal(cred.cert.data, "CERT");
	assert_string_equal(cred.key.data, "KEY");
	kube__exec_cred_free(&cred);
	unsetenv("PLUGIN_MODE");
	kube_config_free(c);
}

/* The client caches the credential until expirationTimestamp and re-runs
 * the plugin after a 401. */
static void test_exec_cache_and_reexec(void **state)
{
	struct loop *l;
	struct kube_client *kc;
	char exp[40];

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	kube__format_time(((int64_t)time(NULL) + 3600) * 1000, 0, exp, sizeof(exp));
	setenv("PLUGIN_EXPIRY", exp, 1);
	assert_int_equal(kube_client_new_take(l, load_ctx("full.yaml", "exec-ctx"), &kc), 0);
	assert_string_equal(kube__client_token(kc), "tok-abc-1");
	assert_string_equal(kube__client_token(kc), "tok-abc-1");
	assert_int_equal(count_lines(plugin_log), 1);
	kube__client_invalidate_auth(kc); /* what a 401 does */
	assert_string_equal(kube__client_token(kc), "tok-abc-2");
	assert_int_equal(count_lines(plugin_log), 2);
	kube_client_free(kc);

	/* Already expired: every use runs the plugin again. */
	setenv("PLUGIN_EXPIRY", "2001-01-01T00:00:00Z", 1);
	assert_int_equal(kube_client_new_take(l, load_ctx("full.yaml", "exec-ctx"), &kc), 0);
	assert_string_equal(kube__client_token(kc), "tok-abc-3");
	assert_string_equal(kube__client_token(kc), "tok-abc-4");
	kube_client_free(kc);
	unsetenv("PLUGIN_EXPIRY");
	loop_free(l);
}

static void test_token_file_reread_after_401(void **state)
{
	struct loop *l;
	struct kube_client *kc;
	struct kube_config *c;
	char tf[256], err[512];
	FILE *f;

	(void)state;
	snprintf(tf, sizeof(tf), "/tmp/kube-test-token-%d", (int)getpid());
	f = fopen(tf, "w");
	fputs("first\n", f);
	fclose(f);
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(kube_config_load_kubeconfig(data("full.yaml"), "token-file-ctx", &c, err,
	                                             sizeof(err)),
	                 0);
	free(c->token_file);
	c->token_file = strdup(tf);
	assert_int_equal(kube_client_new_take(l, c, &kc), 0);
	assert_string_equal(kube__client_token(kc), "first");
	f = fopen(tf, "w");
	fputs("second\n", f);
	fclose(f);
	/* Cached until 60 s pass or a 401 arrives. */
	assert_string_equal(kube__client_token(kc), "first");
	kube__client_invalidate_auth(kc);
	assert_string_equal(kube__client_token(kc), "second");
	kube_client_free(kc);
	loop_free(l);
	unlink(tf);
}

int main(void)
{
	const char *src = getenv("SRCDIR");
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_current_context_token_and_ca_data),
	        cmocka_unit_test(test_token_file_and_ca_file_are_relative),
	        cmocka_unit_test(test_client_cert_data_and_insecure),
	        cmocka_unit_test(test_client_cert_files),
	        cmocka_unit_test(test_exec_section),
	        cmocka_unit_test(test_context_without_user),
	        cmocka_unit_test(test_merge_first_file_wins),
	        cmocka_unit_test(test_merge_skips_missing_and_empty),
	        cmocka_unit_test(test_load_order_flag_env_incluster),
	        cmocka_unit_test(test_bad_files_name_file_and_field),
	        cmocka_unit_test(test_parse_in_memory_without_files),
	        cmocka_unit_test_setup_teardown(test_exec_plugin_gets_env_args_and_info, exec_setup,
	                                        exec_teardown),
	        cmocka_unit_test_setup_teardown(test_exec_plugin_failures, exec_setup,
	                                        exec_teardown),
	        cmocka_unit_test_setup_teardown(test_exec_cache_and_reexec, exec_setup,
	                                        exec_teardown),
	        cmocka_unit_test(test_token_file_reread_after_401),
	};

	snprintf(datadir, sizeof(datadir), "%s/tests/data", src ? src : ".");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
