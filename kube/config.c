/* kube/config.c: where the client's configuration comes from: kubeconfig
 * files (parsed with libyaml, merged as kubectl merges KUBECONFIG) or the
 * in-cluster service account.
 *
 * Merging follows client-go's clientcmd loading rules: files are read in
 * order and, for each named cluster, user and context and for
 * current-context, the first file to set it wins. Only the selected
 * context, cluster and user are validated, so an unrelated broken entry in
 * someone's kubeconfig does not stop us, as it does not stop kubectl.
 */
#include "kube/kube_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#define KUBECONFIG_MAX_BYTES (4u << 20)
#define DEFAULT_SA_DIR       "/var/run/secrets/kubernetes.io/serviceaccount"

/* One parsed kubeconfig file. */
struct kc_file {
	const char *name; /* path, for errors and relative paths */
	yaml_document_t doc;
	int loaded;
};

/* A failure message under construction. */
struct cerr {
	char *buf;
	size_t len;
};

static int fail(struct cerr *e, int rc, const struct kc_file *f, const yaml_node_t *n,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Writes "kubeconfig FILE: line N: <message>" and returns `rc`. */
static int fail(struct cerr *e, int rc, const struct kc_file *f, const yaml_node_t *n,
                const char *fmt, ...)
{
	char msg[384];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!e->buf || !e->len)
		return rc;
	if (f && n)
		snprintf(e->buf, e->len, "kubeconfig %s: line %lu: %s", f->name,
		         (unsigned long)n->start_mark.line + 1, msg);
	else if (f)
		snprintf(e->buf, e->len, "kubeconfig %s: %s", f->name, msg);
	else
		snprintf(e->buf, e->len, "%s", msg);
	return rc;
}

/* Wraps yaml_parser_load(), which returns 1 on success. */
static int load_yaml(struct kc_file *f, const char *buf, size_t len, struct cerr *e)
{
	yaml_parser_t p;
	int rc = 0;

	if (!yaml_parser_initialize(&p))
		return fail(e, -ENOMEM, f, NULL, "cannot initialise the YAML parser");
	yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
	if (!yaml_parser_load(&p, &f->doc)) {
		rc = fail(e, -EINVAL, f, NULL, "line %lu: invalid YAML: %s",
		          (unsigned long)p.problem_mark.line + 1,
		          p.problem ? p.problem : "parse error");
		goto out;
	}
	f->loaded = 1;
out:
	yaml_parser_delete(&p);
	return rc;
}

static yaml_node_t *root(struct kc_file *f)
{
	return f->loaded ? yaml_document_get_root_node(&f->doc) : NULL;
}

static yaml_node_t *node_at(struct kc_file *f, int idx)
{
	return yaml_document_get_node(&f->doc, idx);
}

/* The value under `key` in mapping `m`, or NULL. */
static yaml_node_t *map_get(struct kc_file *f, yaml_node_t *m, const char *key)
{
	if (!m || m->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = node_at(f, p->key);

		if (k && k->type == YAML_SCALAR_NODE && k->data.scalar.length == strlen(key) &&
		    memcmp(k->data.scalar.value, key, k->data.scalar.length) == 0)
			return node_at(f, p->value);
	}
	return NULL;
}

/* A YAML null: absent, "~", "null" or an empty plain scalar. */
static int is_null(const yaml_node_t *n)
{
	const char *v;

	if (!n)
		return 1;
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return 0;
	v = (const char *)n->data.scalar.value;
	return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
	       !strcmp(v, "NULL");
}

/* Reads an optional string field into *out (a copy, NULL when absent). */
static int get_str(struct kc_file *f, yaml_node_t *m, const char *key, const char *where,
                   char **out, struct cerr *e)
{
	yaml_node_t *n = map_get(f, m, key);

	*out = NULL;
	if (is_null(n))
		return 0;
	if (n->type != YAML_SCALAR_NODE)
		return fail(e, -EINVAL, f, n, "%s.%s: must be a string", where, key);
	if (strlen((const char *)n->data.scalar.value) != n->data.scalar.length)
		return fail(e, -EINVAL, f, n, "%s.%s: contains a NUL byte", where, key);
	*out = strdup((const char *)n->data.scalar.value);
	return *out ? 0 : -ENOMEM;
}

/* Reads an optional boolean as Go's YAML 1.1 decoder accepts it. */
static int get_bool(struct kc_file *f, yaml_node_t *m, const char *key, const char *where, int *out,
                    struct cerr *e)
{
	static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "on", "On"};
	static const char *const no[] = {"false", "False", "FALSE", "no", "No", "off", "Off"};
	yaml_node_t *n = map_get(f, m, key);
	const char *v;

	*out = 0;
	if (is_null(n))
		return 0;
	if (n->type != YAML_SCALAR_NODE)
		return fail(e, -EINVAL, f, n, "%s.%s: must be true or false", where, key);
	v = (const char *)n->data.scalar.value;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcmp(v, yes[i])) {
			*out = 1;
			return 0;
		}
		if (!strcmp(v, no[i]))
			return 0;
	}
	return fail(e, -EINVAL, f, n, "%s.%s: must be true or false, not \"%.40s\"", where, key, v);
}

/* Finds the entry named `name` in the list `list` ("clusters", "users",
 * "contexts") of file `f`; stores its inner mapping (under `inner`) and its
 * index. Returns 1 when found, 0 when not, or a negative errno. */
static int find_named(struct kc_file *f, const char *list, const char *inner, const char *name,
                      yaml_node_t **out, int *idx, struct cerr *e)
{
	yaml_node_t *seq = map_get(f, root(f), list);
	int i = 0;

	if (is_null(seq))
		return 0;
	if (seq->type != YAML_SEQUENCE_NODE)
		return fail(e, -EINVAL, f, seq, "%s: must be a list", list);
	for (yaml_node_item_t *it = seq->data.sequence.items.start;
	     it < seq->data.sequence.items.top; it++, i++) {
		yaml_node_t *ent = node_at(f, *it), *nm = map_get(f, ent, "name");

		if (!nm || nm->type != YAML_SCALAR_NODE ||
		    strcmp((const char *)nm->data.scalar.value, name))
			continue;
		*out = map_get(f, ent, inner);
		*idx = i;
		if (!*out || (*out)->type != YAML_MAPPING_NODE)
			return fail(e, -EINVAL, f, ent, "%s[%d].%s: missing or not a mapping", list,
			            i, inner);
		return 1;
	}
	return 0;
}

/* Resolves `path` against the directory of `file` unless it is absolute. */
static char *resolve_path(const char *file, const char *path)
{
	const char *slash = strrchr(file, '/');
	char *out;

	if (path[0] == '/' || !slash)
		return strdup(path);
	if (asprintf(&out, "%.*s/%s", (int)(slash - file), file, path) < 0)
		return NULL;
	return out;
}

/* Context for reading one section: the file, a "clusters[3].cluster"
 * label for errors, and whether file references may be followed. */
struct sect {
	struct kc_file *f;
	yaml_node_t *m;
	char where[64];
	int allow_files;
	struct cerr *e;
};

/* Reads a "<key>-data" base64 field or a "<key>" file path into `blob`. */
static int get_pem(struct sect *s, const char *key, struct kube__blob *blob, char **path_out)
{
	char data_key[64], *data = NULL, *path = NULL;
	int rc;

	snprintf(data_key, sizeof(data_key), "%s-data", key);
	rc = get_str(s->f, s->m, data_key, s->where, &data, s->e);
	if (rc)
		return rc;
	if (data) {
		rc = kube__b64_decode(data, strlen(data), blob);
		free(data);
		if (rc)
			return fail(s->e, rc, s->f, map_get(s->f, s->m, data_key),
			            "%s.%s: not valid base64", s->where, data_key);
		return 0;
	}
	rc = get_str(s->f, s->m, key, s->where, &path, s->e);
	if (rc || !path)
		return rc;
	if (!s->allow_files) {
		free(path);
		return fail(s->e, -EPERM, s->f, NULL, "%s.%s: file references not allowed here",
		            s->where, key);
	}
	{
		char *full = resolve_path(s->f->name, path);

		free(path);
		if (!full)
			return -ENOMEM;
		if (path_out) {
			*path_out = full;
			return 0;
		}
		rc = kube__read_file(full, KUBECONFIG_MAX_BYTES, blob);
		if (rc)
			fail(s->e, rc, s->f, map_get(s->f, s->m, key), "%s.%s: cannot read %s: %s",
			     s->where, key, full, strerror(-rc));
		free(full);
	}
	return rc;
}

static int read_cluster(struct sect *s, struct kube_config *c)
{
	int rc;

	rc = get_str(s->f, s->m, "server", s->where, &c->server, s->e);
	if (rc)
		return rc;
	if (!c->server || !*c->server)
		return fail(s->e, -EINVAL, s->f, s->m, "%s.server: missing", s->where);
	if (strncmp(c->server, "https://", 8) && strncmp(c->server, "http://", 7))
		return fail(s->e, -EINVAL, s->f, map_get(s->f, s->m, "server"),
		            "%s.server: \"%.80s\" is not an http(s) URL", s->where, c->server);
	while (strlen(c->server) > 8 && c->server[strlen(c->server) - 1] == '/')
		c->server[strlen(c->server) - 1] = '\0';
	rc = get_bool(s->f, s->m, "insecure-skip-tls-verify", s->where, &c->insecure, s->e);
	if (rc)
		return rc;
	rc = get_str(s->f, s->m, "tls-server-name", s->where, &c->tls_server_name, s->e);
	if (rc)
		return rc;
	rc = get_pem(s, "certificate-authority", &c->ca, &c->ca_file);
	if (rc)
		return rc;
	if (c->ca_file && s->allow_files) {
		/* Read once now so a wrong path fails at startup, not on first use. */
		struct kube__blob tmp = {0};

		rc = kube__read_file(c->ca_file, KUBECONFIG_MAX_BYTES, &tmp);
		if (rc)
			return fail(s->e, rc, s->f, map_get(s->f, s->m, "certificate-authority"),
			            "%s.certificate-authority: cannot read %s: %s", s->where,
			            c->ca_file, strerror(-rc));
		kube__blob_free(&tmp);
	}
	if (c->insecure && (c->ca.data || c->ca_file))
		return fail(s->e, -EINVAL, s->f, s->m,
		            "%s: insecure-skip-tls-verify cannot be combined with a certificate "
		            "authority",
		            s->where);
	return 0;
}

/* Reads the `env` list of an exec section. */
static int read_exec_env(struct sect *s, yaml_node_t *envn, struct kube__exec *x)
{
	size_t n;
	int i = 0;

	if (is_null(envn))
		return 0;
	if (envn->type != YAML_SEQUENCE_NODE)
		return fail(s->e, -EINVAL, s->f, envn, "%s.exec.env: must be a list", s->where);
	n = (size_t)(envn->data.sequence.items.top - envn->data.sequence.items.start);
	x->env = calloc(n ? n : 1, sizeof(*x->env));
	if (!x->env)
		return -ENOMEM;
	for (yaml_node_item_t *it = envn->data.sequence.items.start;
	     it < envn->data.sequence.items.top; it++, i++) {
		yaml_node_t *ent = node_at(s->f, *it);
		struct kube__env *ev = &x->env[x->n_env];
		char w[112];
		int rc;

		snprintf(w, sizeof(w), "%s.exec.env[%d]", s->where, i);
		if (!ent || ent->type != YAML_MAPPING_NODE)
			return fail(s->e, -EINVAL, s->f, ent, "%s: must be a mapping", w);
		x->n_env++;
		rc = get_str(s->f, ent, "name", w, &ev->name, s->e);
		if (!rc)
			rc = get_str(s->f, ent, "value", w, &ev->value, s->e);
		if (rc)
			return rc;
		if (!ev->name || !*ev->name || strchr(ev->name, '='))
			return fail(s->e, -EINVAL, s->f, ent, "%s.name: missing or invalid", w);
		if (!ev->value && !(ev->value = strdup("")))
			return -ENOMEM;
	}
	return 0;
}

static int read_exec_args(struct sect *s, yaml_node_t *argn, struct kube__exec *x)
{
	size_t n = 0;
	int i = 0;

	if (!is_null(argn) && argn->type != YAML_SEQUENCE_NODE)
		return fail(s->e, -EINVAL, s->f, argn, "%s.exec.args: must be a list", s->where);
	if (!is_null(argn))
		n = (size_t)(argn->data.sequence.items.top - argn->data.sequence.items.start);
	x->args = calloc(n + 1, sizeof(char *));
	if (!x->args)
		return -ENOMEM;
	for (i = 0; (size_t)i < n; i++) {
		yaml_node_t *a = node_at(s->f, argn->data.sequence.items.start[i]);

		if (!a || a->type != YAML_SCALAR_NODE)
			return fail(s->e, -EINVAL, s->f, argn, "%s.exec.args[%d]: must be a string",
			            s->where, i);
		x->args[i] = strdup((const char *)a->data.scalar.value);
		if (!x->args[i])
			return -ENOMEM;
	}
	return 0;
}

static void exec_free(struct kube__exec *x)
{
	if (!x)
		return;
	free(x->api_version);
	free(x->command);
	for (char **a = x->args; a && *a; a++)
		free(*a);
	free(x->args);
	for (size_t i = 0; i < x->n_env; i++) {
		free(x->env[i].name);
		free(x->env[i].value);
	}
	free(x->env);
	free(x);
}

static int read_exec(struct sect *s, yaml_node_t *xn, struct kube_config *c)
{
	struct kube__exec *x;
	char w[80];
	char *cmd = NULL;
	int rc;

	if (xn->type != YAML_MAPPING_NODE)
		return fail(s->e, -EINVAL, s->f, xn, "%s.exec: must be a mapping", s->where);
	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	c->exec = x;
	snprintf(w, sizeof(w), "%s.exec", s->where);
	rc = get_str(s->f, xn, "apiVersion", w, &x->api_version, s->e);
	if (rc)
		return rc;
	if (!x->api_version || (strcmp(x->api_version, "client.authentication.k8s.io/v1") &&
	                        strcmp(x->api_version, "client.authentication.k8s.io/v1beta1")))
		return fail(s->e, -EINVAL, s->f, xn,
		            "%s.apiVersion: must be client.authentication.k8s.io/v1 (or v1beta1)",
		            w);
	rc = get_str(s->f, xn, "command", w, &cmd, s->e);
	if (rc)
		return rc;
	if (!cmd || !*cmd) {
		free(cmd);
		return fail(s->e, -EINVAL, s->f, xn, "%s.command: missing", w);
	}
	/* client-go resolves a command containing a slash against the
	 * kubeconfig's directory and looks bare names up in $PATH. */
	x->command = strchr(cmd, '/') ? resolve_path(s->f->name, cmd) : strdup(cmd);
	free(cmd);
	if (!x->command)
		return -ENOMEM;
	rc = get_bool(s->f, xn, "provideClusterInfo", w, &x->provide_cluster_info, s->e);
	if (!rc)
		rc = read_exec_args(s, map_get(s->f, xn, "args"), x);
	if (!rc)
		rc = read_exec_env(s, map_get(s->f, xn, "env"), x);
	return rc;
}

static int read_user(struct sect *s, struct kube_config *c)
{
	yaml_node_t *xn;
	char *tf = NULL;
	int rc;

	if (map_get(s->f, s->m, "auth-provider"))
		return fail(s->e, -ENOTSUP, s->f, map_get(s->f, s->m, "auth-provider"),
		            "%s.auth-provider: not supported; use an exec plugin", s->where);
	rc = get_str(s->f, s->m, "token", s->where, &c->token, s->e);
	if (!rc)
		rc = get_str(s->f, s->m, "tokenFile", s->where, &tf, s->e);
	if (rc)
		return rc;
	if (tf) {
		struct kube__blob tmp = {0};

		c->token_file = s->allow_files ? resolve_path(s->f->name, tf) : NULL;
		free(tf);
		if (!s->allow_files)
			return fail(s->e, -EPERM, s->f, NULL, "%s.tokenFile: not allowed here",
			            s->where);
		if (!c->token_file)
			return -ENOMEM;
		rc = kube__read_file(c->token_file, 1 << 20, &tmp);
		if (rc)
			return fail(s->e, rc, s->f, map_get(s->f, s->m, "tokenFile"),
			            "%s.tokenFile: cannot read %s: %s", s->where, c->token_file,
			            strerror(-rc));
		kube__blob_free(&tmp);
	}
	rc = get_pem(s, "client-certificate", &c->client_cert, NULL);
	if (!rc)
		rc = get_pem(s, "client-key", &c->client_key, NULL);
	if (rc)
		return rc;
	if (!c->client_cert.data != !c->client_key.data)
		return fail(s->e, -EINVAL, s->f, s->m,
		            "%s: client-certificate and client-key must be given together",
		            s->where);
	xn = map_get(s->f, s->m, "exec");
	if (!is_null(xn))
		return read_exec(s, xn, c);
	return 0;
}

/* Locates the first file defining `name` in `list` and reads it with `fn`.
 * Returns fn's result, or 1 when no file defines `name`. */
static int read_section(struct kc_file *files, size_t nf, const char *list, const char *inner,
                        const char *name, int allow_files, struct kube_config *c,
                        int (*fn)(struct sect *, struct kube_config *), struct cerr *e,
                        struct sect *found)
{
	for (size_t i = 0; i < nf; i++) {
		struct sect s = {.f = &files[i], .allow_files = allow_files, .e = e};
		int idx = 0;
		int rc = find_named(&files[i], list, inner, name, &s.m, &idx, e);

		if (rc < 0)
			return rc;
		if (rc == 0)
			continue;
		snprintf(s.where, sizeof(s.where), "%s[%d].%s", list, idx, inner);
		if (found)
			*found = s;
		return fn ? fn(&s, c) : 0;
	}
	return 1; /* not defined in any file */
}

/* Picks current-context (or `context`), then its cluster and user. */
static int build(struct kc_file *files, size_t nf, const char *context, int allow_files,
                 struct kube_config *c, struct cerr *e)
{
	char *cur = NULL, *cluster = NULL, *user = NULL;
	struct sect ctx;
	int rc = 0;

	for (size_t i = 0; i < nf && !context && !cur; i++) {
		rc = get_str(&files[i], root(&files[i]), "current-context", "", &cur, e);
		if (rc)
			return rc;
		if (cur && !*cur) {
			free(cur);
			cur = NULL;
		}
	}
	if (!context && !cur)
		return fail(e, -ENOENT, &files[0], NULL, "current-context: not set");
	if (!context)
		context = cur;
	rc = read_section(files, nf, "contexts", "context", context, allow_files, c, NULL, e, &ctx);
	if (rc == 1)
		rc = fail(e, -ENOENT, &files[0], NULL, "context \"%s\" not found", context);
	if (rc)
		goto out;
	rc = get_str(ctx.f, ctx.m, "cluster", ctx.where, &cluster, e);
	if (!rc)
		rc = get_str(ctx.f, ctx.m, "user", ctx.where, &user, e);
	if (!rc)
		rc = get_str(ctx.f, ctx.m, "namespace", ctx.where, &c->ns, e);
	if (rc)
		goto out;
	if (!cluster) {
		rc = fail(e, -EINVAL, ctx.f, ctx.m, "%s.cluster: missing", ctx.where);
		goto out;
	}
	rc = read_section(files, nf, "clusters", "cluster", cluster, allow_files, c, read_cluster,
	                  e, NULL);
	if (rc == 1)
		rc = fail(e, -ENOENT, ctx.f, ctx.m, "%s.cluster: cluster \"%s\" not found",
		          ctx.where, cluster);
	if (rc || !user)
		goto out;
	rc = read_section(files, nf, "users", "user", user, allow_files, c, read_user, e, NULL);
	if (rc == 1)
		rc = fail(e, -ENOENT, ctx.f, ctx.m, "%s.user: user \"%s\" not found", ctx.where,
		          user);
out:
	free(cur);
	free(cluster);
	free(user);
	return rc;
}

void kube_config_free(struct kube_config *c)
{
	if (!c)
		return;
	free(c->source);
	free(c->server);
	free(c->tls_server_name);
	free(c->ca_file);
	kube__blob_free(&c->ca);
	free(c->token);
	free(c->token_file);
	kube__blob_free(&c->client_cert);
	kube__blob_free(&c->client_key);
	exec_free(c->exec);
	free(c->ns);
	free(c);
}

int kube__kubeconfig_parse(const char *const *names, const char *const *bufs, const size_t *lens,
                           size_t n, const char *context, int allow_files, struct kube_config **out,
                           char *err, size_t errlen)
{
	struct cerr e = {err, errlen};
	struct kc_file *files = calloc(n ? n : 1, sizeof(*files));
	struct kube_config *c = calloc(1, sizeof(*c));
	int rc = -ENOMEM;

	if (err && errlen)
		err[0] = '\0';
	if (!files || !c)
		goto out;
	for (size_t i = 0; i < n; i++) {
		files[i].name = names[i];
		rc = load_yaml(&files[i], bufs[i], lens[i], &e);
		if (rc)
			goto out;
		if (root(&files[i]) && root(&files[i])->type != YAML_MAPPING_NODE) {
			rc = fail(&e, -EINVAL, &files[i], root(&files[i]),
			          "top level must be a mapping");
			goto out;
		}
	}
	rc = n ? build(files, n, context, allow_files, c, &e) : -ENOENT;
	if (rc)
		goto out;
	if (!c->ns && !(c->ns = strdup("default")))
		rc = -ENOMEM;
out:
	for (size_t i = 0; files && i < n; i++)
		if (files[i].loaded)
			yaml_document_delete(&files[i].doc);
	free(files);
	if (rc)
		kube_config_free(c);
	else
		*out = c;
	return rc;
}

int kube_config_load_kubeconfig(const char *paths, const char *context, struct kube_config **out,
                                char *err, size_t errlen)
{
	char *list = strdup(paths ? paths : ""), *save = NULL;
	const char **names = NULL, **bufs = NULL;
	size_t *lens = NULL, n = 0, cap = 1;
	struct kube__blob *blobs = NULL;
	int rc = -ENOMEM;

	if (err && errlen)
		err[0] = '\0';
	if (!list)
		return -ENOMEM;
	for (const char *p = list; *p; p++)
		cap += *p == ':';
	names = calloc(cap, sizeof(*names));
	bufs = calloc(cap, sizeof(*bufs));
	lens = calloc(cap, sizeof(*lens));
	blobs = calloc(cap, sizeof(*blobs));
	if (!names || !bufs || !lens || !blobs)
		goto out;
	for (char *p = strtok_r(list, ":", &save); p; p = strtok_r(NULL, ":", &save)) {
		int dup = 0;

		for (size_t i = 0; i < n; i++)
			dup |= !strcmp(names[i], p);
		if (dup)
			continue;
		blobs[n].data = NULL;
		rc = kube__read_file(p, KUBECONFIG_MAX_BYTES, &blobs[n]);
		/* kubectl skips missing KUBECONFIG entries, but not a single --kubeconfig. */
		if (rc == -ENOENT && strchr(paths, ':'))
			continue;
		if (rc) {
			if (err && errlen)
				snprintf(err, errlen, "kubeconfig %s: cannot read: %s", p,
				         strerror(-rc));
			goto out;
		}
		names[n] = p;
		bufs[n] = blobs[n].data;
		lens[n] = blobs[n].len;
		n++;
	}
	if (n == 0) {
		rc = -ENOENT;
		if (err && errlen)
			snprintf(err, errlen, "kubeconfig: no readable file in \"%s\"", paths);
		goto out;
	}
	rc = kube__kubeconfig_parse(names, bufs, lens, n, context, 1, out, err, errlen);
	if (!rc && !((*out)->source = strdup(paths))) {
		kube_config_free(*out);
		rc = -ENOMEM;
	}
out:
	for (size_t i = 0; i < n; i++)
		kube__blob_free(&blobs[i]);
	free(blobs);
	free(names);
	free(bufs);
	free(lens);
	free(list);
	return rc;
}

/* Reads a small file and trims trailing whitespace. */
static int read_trimmed(const char *dir, const char *leaf, char **out)
{
	struct kube__blob b = {0};
	char path[4096];
	int rc;

	snprintf(path, sizeof(path), "%s/%s", dir, leaf);
	rc = kube__read_file(path, 1 << 20, &b);
	if (rc)
		return rc;
	while (b.len && strchr(" \t\r\n", b.data[b.len - 1]))
		b.data[--b.len] = '\0';
	*out = b.data;
	return 0;
}

int kube_config_in_cluster(const char *sa_dir, struct kube_config **out, char *err, size_t errlen)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	struct kube_config *c;
	char *tok = NULL;
	int rc;

	if (!sa_dir)
		sa_dir = DEFAULT_SA_DIR;
	if (!host || !*host || !port || !*port) {
		snprintf(err, errlen, "in-cluster: KUBERNETES_SERVICE_HOST/PORT not set");
		return -ENOENT;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->in_cluster = 1;
	rc = asprintf(&c->server, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
	              port) < 0
	             ? -ENOMEM
	             : 0;
	if (!rc &&
	    (asprintf(&c->token_file, "%s/token", sa_dir) < 0 ||
	     asprintf(&c->ca_file, "%s/ca.crt", sa_dir) < 0 || !(c->source = strdup("in-cluster"))))
		rc = -ENOMEM;
	if (rc)
		goto err;
	rc = read_trimmed(sa_dir, "token", &tok);
	free(tok);
	if (rc) {
		snprintf(err, errlen, "in-cluster: cannot read %s: %s", c->token_file,
		         strerror(-rc));
		goto err;
	}
	if (read_trimmed(sa_dir, "namespace", &c->ns) && !(c->ns = strdup("default"))) {
		rc = -ENOMEM;
		goto err;
	}
	*out = c;
	return 0;
err:
	kube_config_free(c);
	return rc;
}

int kube_config_load(const struct kube_config_opts *opts, struct kube_config **out, char *err,
                     size_t errlen)
{
	struct kube_config_opts none = {0};
	const char *env = getenv("KUBECONFIG"), *home = getenv("HOME");
	char path[4096];
	int rc;

	if (!opts)
		opts = &none;
	if (opts->kubeconfig && *opts->kubeconfig)
		return kube_config_load_kubeconfig(opts->kubeconfig, opts->context, out, err,
		                                   errlen);
	if (env && *env)
		return kube_config_load_kubeconfig(env, opts->context, out, err, errlen);
	if (!opts->no_in_cluster && getenv("KUBERNETES_SERVICE_HOST")) {
		rc = kube_config_in_cluster(opts->sa_dir, out, err, errlen);
		if (rc != -ENOENT)
			return rc;
	}
	if (!home) {
		snprintf(err, errlen, "no kubeconfig: set --kubeconfig or KUBECONFIG");
		return -ENOENT;
	}
	snprintf(path, sizeof(path), "%s/.kube/config", home);
	return kube_config_load_kubeconfig(path, opts->context, out, err, errlen);
}

const char *kube_config_server(const struct kube_config *c)
{
	return c->server;
}

const char *kube_config_namespace(const struct kube_config *c)
{
	return c->ns ? c->ns : "default";
}

const char *kube_config_source(const struct kube_config *c)
{
	return c->source ? c->source : "";
}
