/* kube/tests/integ_auth.c: authentication against a real kube-apiserver.
 *
 *	kube_integ_auth ADMIN_KUBECONFIG
 *
 * From an admin kubeconfig (client certificate) it derives kubeconfigs for
 * each way in: client certificate files, a ServiceAccount's TokenRequest
 * token in a tokenFile (including the reread after a 401 when the file
 * changes), an exec plugin (including the re-run after a 401), in-cluster
 * config, and TLS checks (tls-server-name, a wrong name, no CA, insecure).
 * The ServiceAccount gets a Role on ConfigMaps in its own namespace only,
 * so a 403 elsewhere proves the request ran as the ServiceAccount.
 */
#include "kube/kube_int.h"
#include "kube/tests/integ_common.h"
#include "loop/loop.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct loop *L;
static struct kube_client *ADMIN;
static struct kube_config *ACFG; /* the admin config, for server and CA */
static char NS[64], DIR_[256];

static void write_file(const char *leaf, const char *text, size_t len, int mode)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", DIR_, leaf);
	f = fopen(path, "w");
	if (!f || fwrite(text, 1, len, f) != len || fclose(f)) {
		perror(path);
		exit(2);
	}
	chmod(path, (mode_t)mode);
}

static void write_str(const char *leaf, const char *text)
{
	write_file(leaf, text, strlen(text), 0600);
}

/* Writes kubeconfig `leaf` with one cluster (extra cluster lines) and one
 * user (user lines). The CA is the admin config's, as a file. */
static void write_kubeconfig(const char *leaf, const char *cluster_extra, const char *user)
{
	char buf[4096];

	snprintf(buf, sizeof(buf),
	         "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n"
	         "  cluster:\n    server: %s\n%s\nusers:\n- name: u\n  user:\n%s\ncontexts:\n"
	         "- name: c\n  context: {cluster: k, user: u, namespace: %s}\n",
	         ACFG->server, cluster_extra, user, NS);
	write_str(leaf, buf);
}

static struct kube_client *client_for(const char *leaf)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", DIR_, leaf);
	return integ_client(L, path, NULL);
}

static long get(struct kube_client *kc, const char *path)
{
	return integ_do(L, kc, "GET", path, NULL, NULL, NULL);
}

static void cm_paths(char *mine, char *other, size_t n)
{
	kube_path(mine, n, "", "v1", NS, "configmaps", NULL, NULL);
	kube_path(other, n, "", "v1", "kube-system", "configmaps", NULL, NULL);
}

/* Creates the ServiceAccount, its Role and binding; returns a token. */
static char *service_account_token(void)
{
	char path[256], body[1024];
	struct json_object *r = NULL, *st, *tok;
	char *out = NULL;

	kube_path(path, sizeof(path), "", "v1", NS, "serviceaccounts", NULL, NULL);
	integ_check(integ_do(L, ADMIN, "POST", path,
	                     "{\"apiVersion\":\"v1\",\"kind\":\"ServiceAccount\",\"metadata\":{"
	                     "\"name\":\"integ-sa\"}}",
	                     NULL, NULL) == 201,
	            "created ServiceAccount integ-sa");
	kube_path(path, sizeof(path), "rbac.authorization.k8s.io", "v1", NS, "roles", NULL, NULL);
	integ_do(L, ADMIN, "POST", path,
	         "{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"Role\",\"metadata\":{"
	         "\"name\":\"cm-reader\"},\"rules\":[{\"apiGroups\":[\"\"],\"resources\":["
	         "\"configmaps\"],\"verbs\":[\"get\",\"list\",\"watch\"]}]}",
	         NULL, NULL);
	kube_path(path, sizeof(path), "rbac.authorization.k8s.io", "v1", NS, "rolebindings", NULL,
	          NULL);
	snprintf(body, sizeof(body),
	         "{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"RoleBinding\","
	         "\"metadata\":{\"name\":\"cm-reader\"},\"roleRef\":{\"apiGroup\":"
	         "\"rbac.authorization.k8s.io\",\"kind\":\"Role\",\"name\":\"cm-reader\"},"
	         "\"subjects\":[{\"kind\":\"ServiceAccount\",\"name\":\"integ-sa\",\"namespace\":"
	         "\"%s\"}]}",
	         NS);
	integ_do(L, ADMIN, "POST", path, body, NULL, NULL);
	kube_path(path, sizeof(path), "", "v1", NS, "serviceaccounts", "integ-sa", "token");
	if (integ_do(L, ADMIN, "POST", path,
	             "{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenRequest\","
	             "\"spec\":{\"expirationSeconds\":3600}}",
	             NULL, &r) == 201 &&
	    json_object_object_get_ex(r, "status", &st) &&
	    json_object_object_get_ex(st, "token", &tok))
		out = strdup(json_object_get_string(tok));
	json_object_put(r);
	integ_check(out != NULL, "TokenRequest returned a token");
	if (!out)
		exit(1);
	return out;
}

static void client_cert_files(void)
{
	struct kube_client *kc;
	char user[1024];

	write_file("admin.crt", ACFG->client_cert.data, ACFG->client_cert.len, 0600);
	write_file("admin.key", ACFG->client_key.data, ACFG->client_key.len, 0600);
	write_file("ca.crt", ACFG->ca.data, ACFG->ca.len, 0600);
	snprintf(user, sizeof(user),
	         "    client-certificate: admin.crt\n    client-key: admin.key");
	write_kubeconfig("cert.kubeconfig", "    certificate-authority: ca.crt", user);
	kc = client_for("cert.kubeconfig");
	integ_check(get(kc, "/api/v1/namespaces") == 200,
	            "client certificate from files (relative paths)");
	kube_client_free(kc);
	kc = integ_client(L, kube_config_source(ACFG), NULL);
	integ_check(get(kc, "/api/v1/namespaces") == 200, "client certificate from -data fields");
	kube_client_free(kc);
}

static void token_file(const char *token)
{
	struct kube_client *kc;
	char mine[256], other[256];

	cm_paths(mine, other, sizeof(mine));
	write_str("token", "not-a-valid-token\n");
	write_kubeconfig("token.kubeconfig", "    certificate-authority: ca.crt",
	                 "    tokenFile: token");
	kc = client_for("token.kubeconfig");
	integ_check(get(kc, mine) == 401, "a bad token in the tokenFile gets 401");
	/* The client now holds the bad token; rotate the file as kubelet would. */
	write_str("token", token);
	integ_check(get(kc, mine) == 200,
	            "after rotation, the 401 made the client reread the tokenFile and retry");
	integ_check(get(kc, other) == 403, "as the ServiceAccount: 403 outside its namespace");
	kube_client_free(kc);
}

static int count_lines(const char *leaf)
{
	char path[512];
	FILE *f;
	int n = 0, ch;

	snprintf(path, sizeof(path), "%s/%s", DIR_, leaf);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while ((ch = fgetc(f)) != EOF)
		n += ch == '\n';
	fclose(f);
	return n;
}

static void exec_plugin(const char *token)
{
	static const char script[] =
	        "#!/bin/sh\n"
	        "# Reads the token to hand out from a file next to it.\n"
	        "d=$(dirname \"$0\")\n"
	        "echo run >> \"$d/plugin.runs\"\n"
	        "case \"$KUBERNETES_EXEC_INFO\" in *'\"interactive\":false'*) ;; *) exit 9 ;; "
	        "esac\n"
	        "printf '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":"
	        "\"ExecCredential\",\"status\":{\"token\":\"%s\",\"expirationTimestamp\":"
	        "\"2099-01-01T00:00:00Z\"}}' \"$(cat \"$d/plugin.token\")\"\n";
	struct kube_client *kc;
	char mine[256], other[256];

	cm_paths(mine, other, sizeof(mine));
	write_file("plugin.sh", script, sizeof(script) - 1, 0700);
	write_str("plugin.token", token);
	write_kubeconfig("exec.kubeconfig", "    certificate-authority: ca.crt",
	                 "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n"
	                 "      command: ./plugin.sh\n      interactiveMode: Never");
	kc = client_for("exec.kubeconfig");
	integ_check(get(kc, mine) == 200 && get(kc, mine) == 200,
	            "exec plugin token accepted, twice");
	integ_check(count_lines("plugin.runs") == 1,
	            "plugin ran once: credential cached until expirationTimestamp (%d runs)",
	            count_lines("plugin.runs"));
	integ_check(get(kc, other) == 403, "as the ServiceAccount: 403 outside its namespace");
	kube_client_free(kc);

	/* A cached credential that the server rejects: re-exec on 401. */
	unlink("plugin.runs");
	write_str("plugin.token", "revoked-token");
	kc = client_for("exec.kubeconfig");
	integ_check(get(kc, mine) == 401, "plugin's bad token gets 401");
	write_str("plugin.token", token);
	integ_check(get(kc, mine) == 200, "the next 401 re-ran the plugin and the retry passed");
	kube_client_free(kc);
}

static void in_cluster(const char *token)
{
	struct kube_config *cfg;
	struct kube_client *kc;
	char sa[512], err[512], mine[256], other[256], host[64], port[16];

	cm_paths(mine, other, sizeof(mine));
	snprintf(sa, sizeof(sa), "%s/sa", DIR_);
	mkdir(sa, 0700);
	write_str("sa/token", token);
	write_file("sa/ca.crt", ACFG->ca.data, ACFG->ca.len, 0600);
	write_str("sa/namespace", NS);
	sscanf(ACFG->server, "https://%63[^:]:%15s", host, port);
	setenv("KUBERNETES_SERVICE_HOST", host, 1);
	setenv("KUBERNETES_SERVICE_PORT", port, 1);
	err[0] = '\0';
	integ_check(kube_config_in_cluster(sa, &cfg, err, sizeof(err)) == 0,
	            "in-cluster config from KUBERNETES_SERVICE_HOST/PORT and %s %s", sa, err);
	integ_check(kube_client_new_take(L, cfg, &kc) == 0, "in-cluster client");
	integ_check(!strcmp(kube_client_namespace(kc), NS), "namespace from the namespace file");
	integ_check(get(kc, mine) == 200, "in-cluster ServiceAccount token accepted");
	integ_check(get(kc, other) == 403, "and it is the ServiceAccount (403 elsewhere)");
	kube_client_free(kc);
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
}

static void tls(void)
{
	struct kube_client *kc;
	const char *user = "    client-certificate: admin.crt\n    client-key: admin.key";

	write_kubeconfig("sni.kubeconfig",
	                 "    certificate-authority: ca.crt\n"
	                 "    tls-server-name: kubernetes.default.svc",
	                 user);
	kc = client_for("sni.kubeconfig");
	integ_check(get(kc, "/api/v1/namespaces") == 200,
	            "tls-server-name kubernetes.default.svc verifies against the serving cert");
	kube_client_free(kc);
	write_kubeconfig("badsni.kubeconfig",
	                 "    certificate-authority: ca.crt\n"
	                 "    tls-server-name: wrong.example.com",
	                 user);
	kc = client_for("badsni.kubeconfig");
	integ_check(get(kc, "/api/v1/namespaces") == 0, "a wrong tls-server-name is refused");
	kube_client_free(kc);
	write_kubeconfig("noca.kubeconfig", "", user);
	kc = client_for("noca.kubeconfig");
	integ_check(get(kc, "/api/v1/namespaces") == 0,
	            "without the cluster CA, verification fails (it is on by default)");
	kube_client_free(kc);
	write_kubeconfig("insecure.kubeconfig", "    insecure-skip-tls-verify: true", user);
	kc = client_for("insecure.kubeconfig");
	integ_check(get(kc, "/api/v1/namespaces") == 200, "insecure-skip-tls-verify connects");
	kube_client_free(kc);
}

int main(int argc, char **argv)
{
	char err[512], *token;

	if (argc < 2) {
		fprintf(stderr, "usage: %s ADMIN_KUBECONFIG\n", argv[0]);
		return 2;
	}
	if (loop_new(&L))
		return 2;
	if (kube_config_load_kubeconfig(argv[1], NULL, &ACFG, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 2;
	}
	if (!ACFG->client_cert.data || !ACFG->ca.data) {
		fprintf(stderr, "need an admin kubeconfig with client-certificate-data and "
		                "certificate-authority-data\n");
		return 2;
	}
	snprintf(DIR_, sizeof(DIR_), "/tmp/kube-integ-auth-%d", (int)getpid());
	mkdir(DIR_, 0700);
	if (chdir(DIR_))
		return 2;
	ADMIN = integ_client(L, argv[1], NULL);
	integ_namespace(L, ADMIN, "kube-integ-auth", NS, sizeof(NS));
	integ_note("namespace %s, files in %s", NS, DIR_);
	client_cert_files();
	token = service_account_token();
	token_file(token);
	exec_plugin(token);
	in_cluster(token);
	tls();
	free(token);
	snprintf(err, sizeof(err), "rm -rf '%s'", DIR_);
	if (system(err))
		integ_note("could not remove %s", DIR_);
	kube_client_free(ADMIN);
	kube_config_free(ACFG);
	loop_free(L);
	printf("%s: %d failure(s)\n", argv[0], integ_failures);
	return integ_failures ? 1 : 0;
}
