/* kube/exec.c: the client.authentication.k8s.io exec credential plugin.
 *
 * The plugin is run as client-go runs it: the user's command and args, the
 * caller's environment plus the kubeconfig's env entries, and
 * KUBERNETES_EXEC_INFO describing the request (never interactive: our
 * stdin is /dev/null). Its stdout must be one ExecCredential.
 *
 * The client runs plugins asynchronously (kube__exec_spawn() plus its own
 * fd watches); kube__exec_run() is the synchronous form, for tests and
 * tools.
 */
#include "kube/kube_int.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXEC_MAX_OUTPUT (1u << 20)

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The spec.cluster of KUBERNETES_EXEC_INFO, for provideClusterInfo. */
static struct json_object *cluster_info(const struct kube_config *cfg)
{
	struct json_object *cl = json_object_new_object();
	int rc = 0;

	rc |= kube__jadd_str(cl, "server", cfg->server);
	rc |= kube__jadd_str(cl, "tls-server-name", cfg->tls_server_name);
	if (cfg->insecure)
		rc |= kube__jadd(cl, "insecure-skip-tls-verify", json_object_new_boolean(1));
	if (cfg->ca.data && cfg->ca.len < (1u << 22)) {
		char *b64 = malloc(cfg->ca.len / 3 * 4 + 8);

		if (b64)
			EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)cfg->ca.data,
			                (int)cfg->ca.len);
		rc |= b64 ? kube__jadd_str(cl, "certificate-authority-data", b64) : -ENOMEM;
		free(b64);
	}
	if (rc) {
		json_object_put(cl);
		return NULL;
	}
	return cl;
}

/* Builds the KUBERNETES_EXEC_INFO JSON. Returns a malloc'd string. */
static char *exec_info(const struct kube__exec *ex, const struct kube_config *cfg)
{
	struct json_object *o = json_object_new_object(), *spec = json_object_new_object();
	const char *txt;
	char *s = NULL;
	int rc = 0;

	rc |= kube__jadd_str(o, "apiVersion", ex->api_version);
	rc |= kube__jadd_str(o, "kind", "ExecCredential");
	rc |= kube__jadd(spec, "interactive", json_object_new_boolean(0));
	if (ex->provide_cluster_info && cfg)
		rc |= kube__jadd(spec, "cluster", cluster_info(cfg));
	rc |= kube__jadd(o, "spec", json_object_get(spec));
	txt = rc ? NULL
	         : json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
	                                                     JSON_C_TO_STRING_NOSLASHESCAPE);
	if (txt)
		s = strdup(txt);
	json_object_put(spec);
	json_object_put(o);
	return s;
}

/* In the child: sets up stdio and the environment, then execs. */
static void child(const struct kube__exec *ex, const char *info, int out_fd, int err_fd)
{
	int devnull = open("/dev/null", O_RDONLY);
	char *argv0[] = {ex->command, NULL};
	char **argv;
	size_t n = 0;

	if (devnull >= 0)
		dup2(devnull, 0);
	dup2(out_fd, 1);
	dup2(err_fd, 2);
	for (size_t i = 0; i < ex->n_env; i++)
		setenv(ex->env[i].name, ex->env[i].value, 1);
	setenv("KUBERNETES_EXEC_INFO", info, 1);
	while (ex->args && ex->args[n])
		n++;
	argv = calloc(n + 2, sizeof(char *));
	if (!argv) {
		argv = argv0;
	} else {
		argv[0] = ex->command;
		for (size_t i = 0; i < n; i++)
			argv[i + 1] = ex->args[i];
	}
	execvp(ex->command, argv);
	dprintf(2, "exec %s: %s", ex->command, strerror(errno));
	_exit(127);
}

/* Reads both pipes until EOF or the deadline. Returns 0 or -ETIMEDOUT. */
static int collect(int out_fd, int err_fd, int timeout_ms, struct kube__blob *out, char *errtxt,
                   size_t errcap)
{
	int64_t deadline = mono_ms() + timeout_ms;
	size_t errlen = 0, alloc = 0;
	int open_fds = 2;
	struct pollfd p[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};

	while (open_fds > 0) {
		int64_t left = deadline - mono_ms();
		char buf[4096];

		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(p, 2, (int)left) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int i = 0; i < 2; i++) {
			ssize_t r;

			if (p[i].fd < 0 || !p[i].revents)
				continue;
			r = read(p[i].fd, buf, sizeof(buf));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				p[i].fd = -1;
				open_fds--;
				continue;
			}
			if (i == 1) {
				size_t take = (size_t)r < errcap - 1 - errlen ? (size_t)r
				                                              : errcap - 1 - errlen;
				memcpy(errtxt + errlen, buf, take);
				errlen += take;
				errtxt[errlen] = '\0';
				continue;
			}
			if (out->len + (size_t)r > EXEC_MAX_OUTPUT)
				return -EFBIG;
			if (out->len + (size_t)r + 1 > alloc) {
				char *nb;

				alloc = (out->len + (size_t)r + 1) * 2;
				nb = realloc(out->data, alloc);
				if (!nb)
					return -ENOMEM;
				out->data = nb;
			}
			memcpy(out->data + out->len, buf, (size_t)r);
			out->len += (size_t)r;
			out->data[out->len] = '\0';
		}
	}
	return 0;
}

static int dup_str_field(struct json_object *o, const char *key, char **out)
{
	struct json_object *v;

	*out = NULL;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return 0;
	*out = strdup(json_object_get_string(v));
	return *out ? 0 : -ENOMEM;
}

/* Parses an ExecCredential; the apiVersion must match what we asked for. */
static int parse_cred(const struct kube__exec *ex, const struct kube__blob *b,
                      struct kube__exec_cred *c, char *err, size_t errlen)
{
	struct json_object *o = json_tokener_parse(b->data ? b->data : ""), *st, *v;
	char *cert = NULL, *key = NULL, *exp = NULL;
	int rc = -EINVAL;

	if (!o || !json_object_is_type(o, json_type_object)) {
		snprintf(err, errlen, "exec plugin %s: output is not a JSON object", ex->command);
		goto out;
	}
	if (!json_object_object_get_ex(o, "apiVersion", &v) ||
	    strcmp(json_object_get_string(v), ex->api_version)) {
		snprintf(err, errlen, "exec plugin %s: apiVersion must be %s", ex->command,
		         ex->api_version);
		goto out;
	}
	if (!json_object_object_get_ex(o, "status", &st) ||
	    !json_object_is_type(st, json_type_object)) {
		snprintf(err, errlen, "exec plugin %s: no status in ExecCredential", ex->command);
		goto out;
	}
	if (dup_str_field(st, "token", &c->token) ||
	    dup_str_field(st, "clientCertificateData", &cert) ||
	    dup_str_field(st, "clientKeyData", &key) ||
	    dup_str_field(st, "expirationTimestamp", &exp)) {
		rc = -ENOMEM;
		goto out;
	}
	if (!c->token && !(cert && key)) {
		snprintf(err, errlen, "exec plugin %s: status has neither token nor client cert",
		         ex->command);
		goto out;
	}
	if (exp && kube__parse_time(exp, &c->expires)) {
		snprintf(err, errlen, "exec plugin %s: bad expirationTimestamp \"%.40s\"",
		         ex->command, exp);
		goto out;
	}
	if (cert && key) {
		c->cert.data = cert;
		c->cert.len = strlen(cert);
		c->key.data = key;
		c->key.len = strlen(key);
		cert = key = NULL;
	}
	rc = 0;
out:
	free(cert);
	free(key);
	free(exp);
	json_object_put(o);
	if (rc)
		kube__exec_cred_free(c);
	return rc;
}

int kube__exec_spawn(const struct kube__exec *ex, const struct kube_config *cfg, pid_t *pid,
                     int *out_fd, int *err_fd)
{
	int po[2] = {-1, -1}, pe[2] = {-1, -1}, rc = 0;
	char *info = exec_info(ex, cfg);

	if (!info)
		return -ENOMEM;
	if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC)) {
		rc = -errno;
		goto err;
	}
	*pid = fork();
	if (*pid < 0) {
		rc = -errno;
		goto err;
	}
	if (*pid == 0)
		child(ex, info, po[1], pe[1]);
	close(po[1]);
	close(pe[1]);
	*out_fd = po[0];
	*err_fd = pe[0];
	free(info);
	return 0;
err:
	for (int i = 0; i < 2; i++) {
		if (po[i] >= 0)
			close(po[i]);
		if (pe[i] >= 0)
			close(pe[i]);
	}
	free(info);
	return rc;
}

int kube__exec_finish(const struct kube__exec *ex, int status, const struct kube__blob *out,
                      char *errtxt, struct kube__exec_cred *cred, char *err, size_t errlen)
{
	memset(cred, 0, sizeof(*cred));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		for (char *p = errtxt; *p; p++)
			if (*p == '\n' || *p == '\r')
				*p = ' ';
		snprintf(err, errlen, "exec plugin %s: exited with status %d: %s", ex->command,
		         WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), errtxt);
		return -EPERM;
	}
	return parse_cred(ex, out, cred, err, errlen);
}

int kube__exec_run(const struct kube__exec *ex, const struct kube_config *cfg, int timeout_ms,
                   struct kube__exec_cred *out, char *err, size_t errlen)
{
	struct kube__blob output = {0};
	char errtxt[512] = "";
	int out_fd, err_fd, status = 0, rc;
	pid_t pid;

	memset(out, 0, sizeof(*out));
	rc = kube__exec_spawn(ex, cfg, &pid, &out_fd, &err_fd);
	if (rc) {
		snprintf(err, errlen, "exec plugin %s: %s", ex->command, strerror(-rc));
		return rc;
	}
	rc = collect(out_fd, err_fd, timeout_ms, &output, errtxt, sizeof(errtxt));
	if (rc)
		kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	close(out_fd);
	close(err_fd);
	if (rc)
		snprintf(err, errlen, "exec plugin %s: %s", ex->command,
		         rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
	else
		rc = kube__exec_finish(ex, status, &output, errtxt, out, err, errlen);
	kube__blob_free(&output);
	return rc;
}

void kube__exec_cred_free(struct kube__exec_cred *c)
{
	free(c->token);
	c->token = NULL;
	kube__blob_free(&c->cert);
	kube__blob_free(&c->key);
	c->expires = 0;
}
