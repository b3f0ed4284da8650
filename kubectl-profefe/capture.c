/* kubectl-profefe/capture.c: `kubectl profefe capture`, an ad-hoc round.
 *
 * The pods come from the API server (by name, or listed by selector in one
 * namespace or all). Each pod becomes a target exactly as the operator
 * would see it: reconcile/ resolves port, path, scheme and service from the
 * profefe.com/ annotations (an invalid annotation is an error on that pod,
 * never a silent default) and computes the labels. Directly, the captures
 * run on capture/'s fetcher, which keeps one CPU profile per pod at a time
 * and checks every body; with --via-apiserver they go through the API
 * server's pod proxy with the user's credentials, one request per pod at a
 * time. Profiles land in the directory sink or are pushed to profefe.
 */
#include "kubectl-profefe/kp.h"

#include "capture/capture.h"
#include "capture/dirsink.h"
#include "capture/profefe.h"
#include "kube/kube.h"
#include "loop/loop.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#define CAPTURE_TIMEOUT_MS 15000u
#define MAX_BODY           ((size_t)64 << 20)
#define PATH_MAX_LEN       2048

struct cx;

/* One pod to capture. */
struct target {
	struct cx *cx;
	struct rec_pod *pod;
	struct rec_target tgt;
	size_t next; /* --via-apiserver: the next type to request */
};

/* One profile of one pod. */
struct job {
	struct target *t;
	struct rec_profile prof;
	int64_t wall_ms; /* when the capture started */
	char *body;      /* owned while pushing */
};

struct cx {
	const struct kp_opts *o;
	struct kp_rt rt;
	struct cap_fetcher *fetcher;
	struct rec_policy pol; /* the defaults a policy would give */
	struct target *t;
	size_t nt, alloc;
	int failed;
	size_t skipped; /* listed pods left out: not annotated, not Running */
	int list_failed;
	int unreachable_said;
};

static const char *pod_phase_name(enum rec_pod_phase p)
{
	static const char *const names[] = {"Pending", "Running", "Succeeded", "Failed", "Unknown"};
	return (unsigned)p < sizeof(names) / sizeof(names[0]) ? names[p] : "Unknown";
}

/* Adds a pod from the API server. `named`: the user asked for it by name,
 * so a pod we will not capture is an error rather than skipped. */
static void add_pod(struct cx *cx, struct json_object *obj, int named)
{
	struct rec_pod *pod = NULL;
	struct target *t;
	const char *en;
	char err[256];

	if (rec_pod_from_json(obj, &pod) < 0) {
		kp_err("the API server sent a pod without metadata");
		cx->failed++;
		return;
	}
	en = rec_pod_annotation(pod, REC_ANN_ENABLE);
	if (!cx->o->ignore_annotation && (en == NULL || strcmp(en, "true") != 0)) {
		if (named) {
			kp_err("pod %s/%s is not annotated %s=true (capture it anyway with "
			       "--ignore-annotation)",
			       pod->ns, pod->name, REC_ANN_ENABLE);
			cx->failed++;
		} else
			cx->skipped++;
		goto out_free;
	}
	if (!rec_pod_capturable(pod)) {
		if (named) {
			kp_err("pod %s/%s is not Running with a pod IP (phase %s)", pod->ns,
			       pod->name, pod_phase_name(pod->phase));
			cx->failed++;
		} else
			cx->skipped++;
		goto out_free;
	}
	if (cx->nt == cx->alloc) {
		size_t na = cx->alloc ? cx->alloc * 2 : 16;
		struct target *nt = realloc(cx->t, na * sizeof(*nt));

		if (nt == NULL) {
			kp_err("out of memory");
			cx->failed++;
			goto out_free;
		}
		cx->t = nt;
		cx->alloc = na;
	}
	t = &cx->t[cx->nt];
	memset(t, 0, sizeof(*t));
	if (rec_target_resolve(&cx->pol, pod, &t->tgt, err, sizeof(err)) < 0) {
		kp_err("pod %s/%s: %s", pod->ns, pod->name, err);
		cx->failed++;
		goto out_free;
	}
	t->cx = cx;
	t->pod = pod;
	cx->nt++;
	return;
out_free:
	free(pod);
}

/* kube/'s one-line summary of an answer, without the "403: " it starts
 * with when we print the status ourselves. */
static const char *kube_msg(const struct kube_response *r)
{
	const char *m = r->message ? r->message : "";
	size_t d = strspn(m, "0123456789");

	return d > 0 && m[d] == ':' && m[d + 1] == ' ' ? m + d + 2 : m;
}

/* A GET of one named pod. */
struct podreq {
	struct cx *cx;
	const char *name; /* lent from argv */
};

static void on_pod(void *arg, const struct kube_response *r)
{
	struct podreq *pr = arg;
	struct cx *cx = pr->cx;

	cx->rt.pending--;
	if (r->err == 0 && r->status == 200 && r->json)
		add_pod(cx, r->json, 1);
	else {
		cx->failed++;
		if (r->err) {
			if (!cx->unreachable_said++) /* one line, however many pods */
				kp_err("cannot reach the API server: %s", r->message);
		} else if (r->status == 404)
			kp_err("pod \"%s\" not found in namespace \"%s\"", pr->name, cx->rt.ns);
		else
			kp_err("getting pod \"%s\": HTTP %ld: %s", pr->name, r->status,
			       kube_msg(r));
	}
	free(pr);
}

static int list_pods(struct cx *cx, const char *cont);

static void on_list(void *arg, const struct kube_response *r)
{
	struct cx *cx = arg;
	struct json_object *items, *meta, *c;

	cx->rt.pending--;
	if (r->err || r->status != 200 || !r->json ||
	    !json_object_object_get_ex(r->json, "items", &items) ||
	    !json_object_is_type(items, json_type_array)) {
		if (r->err)
			kp_err("cannot reach the API server: %s", r->message);
		else if (r->status == 200)
			kp_err("listing pods: the API server sent no pod list");
		else
			kp_err("listing pods: HTTP %ld: %s", r->status, kube_msg(r));
		cx->list_failed = 1;
		return;
	}
	for (size_t i = 0; i < json_object_array_length(items); i++)
		add_pod(cx, json_object_array_get_idx(items, i), 0);
	if (json_object_object_get_ex(r->json, "metadata", &meta) &&
	    json_object_object_get_ex(meta, "continue", &c) &&
	    json_object_is_type(c, json_type_string) && json_object_get_string_len(c) > 0 &&
	    list_pods(cx, json_object_get_string(c)) < 0)
		cx->list_failed = 1;
}

/* Lists one page of pods (the first when `cont` is NULL). */
static int list_pods(struct cx *cx, const char *cont)
{
	struct kube_req_opts ro = {.timeout_ms = kp_request_timeout_ms(cx->o)};
	char path[PATH_MAX_LEN];
	int rc;

	rc = kube_path(path, sizeof(path), NULL, "v1", cx->o->all_ns ? NULL : cx->rt.ns, "pods",
	               NULL, NULL);
	if (rc == 0)
		rc = kube_query_add(path, sizeof(path), "labelSelector", cx->o->selector);
	if (rc == 0)
		rc = kube_query_add(path, sizeof(path), "limit", "500");
	if (rc == 0)
		rc = kube_query_add(path, sizeof(path), "continue", cont);
	if (rc == 0)
		rc = kube_request(cx->rt.kc, "GET", path, NULL, &ro, on_list, cx, NULL);
	if (rc < 0) {
		kp_err("listing pods: %s", strerror(-rc));
		return rc;
	}
	cx->rt.pending++;
	return 0;
}

/* Finds the pods to capture. Returns 0, or 1 when listing failed. */
static int find_pods(struct cx *cx)
{
	struct kube_req_opts ro = {.timeout_ms = kp_request_timeout_ms(cx->o)};
	char path[PATH_MAX_LEN];

	if (cx->o->nargs == 0) {
		if (list_pods(cx, NULL) < 0)
			return 1;
	}
	for (size_t i = 0; i < cx->o->nargs; i++) {
		struct podreq *pr = malloc(sizeof(*pr));
		int rc = pr ? kube_path(path, sizeof(path), NULL, "v1", cx->rt.ns, "pods",
		                        cx->o->args[i], NULL)
		            : -ENOMEM;

		if (rc == 0) {
			*pr = (struct podreq){cx, cx->o->args[i]};
			rc = kube_request(cx->rt.kc, "GET", path, NULL, &ro, on_pod, pr, NULL);
		}
		if (rc < 0) {
			kp_err("getting pod \"%s\": %s", cx->o->args[i], strerror(-rc));
			cx->failed++;
			free(pr);
			continue;
		}
		cx->rt.pending++;
	}
	if (kp_rt_wait(&cx->rt))
		return 1;
	return cx->list_failed;
}

/* ---- results ------------------------------------------------------------- */

static void job_done(struct job *j)
{
	free(j->body);
	free(j);
}

static void fail(struct job *j, const char *what, const char *msg)
{
	const struct rec_pod *p = j->t->pod;

	kp_err("%s/%s %s: %s%s%s", p->ns, p->name, ppop_ptype_name(j->prof.type), what,
	       msg && msg[0] ? ": " : "", msg ? msg : "");
	j->t->cx->failed++;
}

static void on_pushed(void *arg, struct cap_profefe_reply *r)
{
	struct job *j = arg;
	const struct rec_pod *p = j->t->pod;

	j->t->cx->rt.pending--;
	if (r->res == CAP_RES_OK && r->id)
		printf("%s/%s %s id=%s service=%s\n", p->ns, p->name, ppop_ptype_name(j->prof.type),
		       r->id, j->t->tgt.service);
	else if (r->res == CAP_RES_HTTP) {
		char what[64];

		snprintf(what, sizeof(what), "profefe refused the profile (HTTP %ld)",
		         r->http_status);
		fail(j, what, r->message);
	} else
		fail(j, "cannot push to profefe", r->message);
	job_done(j);
}

/* Pushes the profile (taking `body`) to profefe. */
static void push(struct job *j, char *body, size_t len)
{
	struct cx *cx = j->t->cx;
	struct rec_kvs kvs = {0};
	struct cap_push_meta m = {0};
	char *labels = NULL;
	int rc;

	j->body = body;
	rc = rec_target_labels(&cx->pol, j->t->pod, &j->prof, &kvs);
	if (rc == 0 && (labels = ppop_labels_encode(kvs.v, kvs.n)) == NULL)
		rc = -ENOMEM;
	m.service = j->t->tgt.service;
	m.type = ppop_ptype_profefe(j->prof.type);
	m.labels = labels;
	m.created_ms = j->wall_ms;
	if (rc == 0)
		rc = cap_profefe_push(cx->rt.pf, &m, body, len, on_pushed, j);
	free(labels);
	rec_kvs_free(&kvs);
	if (rc < 0) {
		fail(j, "cannot push to profefe", strerror(-rc));
		job_done(j);
		return;
	}
	cx->rt.pending++;
}

/* A profile arrived: store it (taking `body`), or push it. */
static void got_profile(struct job *j, char *body, size_t len)
{
	struct cx *cx = j->t->cx;
	const struct rec_pod *p = j->t->pod;
	char *path = NULL;
	int rc;

	if (cx->o->profefe_url) {
		push(j, body, len);
		return;
	}
	rc = cap_dir_write(cx->o->output_dir ? cx->o->output_dir : ".", p->ns, p->name,
	                   ppop_ptype_name(j->prof.type), j->wall_ms, body, len, &path);
	free(body);
	if (rc < 0)
		fail(j, "cannot write the profile", strerror(-rc));
	else
		printf("%s/%s %s %s\n", p->ns, p->name, ppop_ptype_name(j->prof.type), path);
	free(path);
	job_done(j);
}

static void got_empty(struct job *j)
{
	const struct rec_pod *p = j->t->pod;

	printf("%s/%s %s skipped: the profile has no samples (is the %s profiler enabled?)\n",
	       p->ns, p->name, ppop_ptype_name(j->prof.type), ppop_ptype_name(j->prof.type));
	job_done(j);
}

/* ---- direct capture (the fetcher) ----------------------------------------- */

static void on_fetched(void *arg, struct cap_fetch_result *r)
{
	struct job *j = arg;
	char what[64];
	char *body;
	size_t len;

	j->t->cx->rt.pending--;
	switch (r->res) {
	case CAP_RES_OK:
		body = cap_fetch_take_body(r, &len);
		if (body == NULL) {
			fail(j, "capture failed", "empty body");
			job_done(j);
			return;
		}
		got_profile(j, body, len);
		return;
	case CAP_RES_EMPTY:
		got_empty(j);
		return;
	case CAP_RES_HTTP:
		snprintf(what, sizeof(what), "capture failed (HTTP %ld)", r->http_status);
		fail(j, what, r->message);
		break;
	default:
		snprintf(what, sizeof(what), "capture failed (%s)", cap_result_name(r->res));
		fail(j, what, r->message);
		break;
	}
	job_done(j);
}

static struct job *job_new(struct target *t, enum ppop_ptype type)
{
	struct job *j = calloc(1, sizeof(*j));

	if (j == NULL)
		return NULL;
	j->t = t;
	j->prof.type = type;
	j->prof.seconds = type == PPOP_PT_CPU ? t->cx->o->seconds : 0;
	j->wall_ms = loop_wall_ms();
	return j;
}

static void start_direct(struct target *t, enum ppop_ptype type)
{
	struct cx *cx = t->cx;
	struct job *j = job_new(t, type);
	struct cap_request req = {0};
	char url[REC_URL_MAX], key[96];
	int rc = -ENOMEM;

	if (j == NULL)
		goto err;
	rc = rec_target_url(&t->tgt, &j->prof, url, sizeof(url));
	if (rc == 0)
		rc = cap_target_key(t->tgt.host, (unsigned)t->tgt.port, key, sizeof(key));
	if (rc < 0)
		goto err;
	req.url = url;
	req.target_key = key;
	req.type = type;
	req.seconds = (uint32_t)j->prof.seconds;
	req.timeout_ms = CAPTURE_TIMEOUT_MS;
	rc = cap_fetch_start(cx->fetcher, &req, on_fetched, j, NULL);
	if (rc < 0)
		goto err;
	cx->rt.pending++;
	return;
err:
	kp_err("%s/%s %s: cannot start the capture: %s", t->pod->ns, t->pod->name,
	       ppop_ptype_name(type), strerror(-rc));
	cx->failed++;
	free(j);
}

/* ---- capture through the API server's pod proxy ---------------------------- */

static void start_proxied(struct target *t);

static void on_proxied(void *arg, const struct kube_response *r)
{
	struct job *j = arg;
	struct target *t = j->t;
	char what[64], line[160];
	char *body;

	t->cx->rt.pending--;
	if (r->err) {
		fail(j, "capture through the API server failed", r->message);
		job_done(j);
	} else if (r->status != 200) {
		/* The pod's own error text (e.g. Go's "cpu profiling already in
		 * use") comes as the body; the API server's as a Status. */
		size_t n = strcspn(r->body, "\r\n");

		snprintf(line, sizeof(line), "%.*s", (int)(n < 159 ? n : 159), r->body);
		snprintf(what, sizeof(what), "capture through the API server failed (HTTP %ld)",
		         r->status);
		fail(j, what, r->json ? kube_msg(r) : line);
		job_done(j);
	} else {
		switch (cap_pprof_check(r->body, r->body_len)) {
		case CAP_PPROF_HAS_SAMPLES:
			body = malloc(r->body_len ? r->body_len : 1);
			if (body == NULL) {
				fail(j, "capture failed", "out of memory");
				job_done(j);
				break;
			}
			memcpy(body, r->body, r->body_len);
			got_profile(j, body, r->body_len);
			break;
		case CAP_PPROF_EMPTY:
			got_empty(j);
			break;
		default:
			fail(j, "capture failed", "the reply is not a pprof profile");
			job_done(j);
			break;
		}
	}
	start_proxied(t);
}

/* Starts the pod's next capture; one at a time per pod, so a CPU profile
 * never overlaps another on the same process. */
static void start_proxied(struct target *t)
{
	struct cx *cx = t->cx;
	struct kube_req_opts ro = {.max_body = MAX_BODY, .max_retries = -1};
	char path[PATH_MAX_LEN], seg[320], sec[16];
	enum ppop_ptype type;
	struct job *j;
	int rc = -ENOMEM;

	if (t->next >= cx->o->ntypes)
		return;
	type = cx->o->types[t->next++];
	j = job_new(t, type);
	if (j == NULL)
		goto err;
	/* pods/[https:]NAME:PORT/proxy/PATH/TYPE, as `kubectl get --raw` would */
	snprintf(seg, sizeof(seg), "%s%s:%d", t->tgt.scheme == REC_SCHEME_HTTPS ? "https:" : "",
	         t->pod->name, t->tgt.port);
	rc = kube_path(path, sizeof(path), NULL, "v1", t->pod->ns, "pods", seg, "proxy");
	if (rc == 0 && strlen(path) + strlen(t->tgt.path) + 32 >= sizeof(path))
		rc = -ENAMETOOLONG;
	if (rc < 0)
		goto err;
	strcat(path, t->tgt.path);
	strcat(path, "/");
	strcat(path, type == PPOP_PT_CPU ? "profile" : ppop_ptype_name(type));
	if (type == PPOP_PT_CPU) {
		snprintf(sec, sizeof(sec), "%d", j->prof.seconds);
		rc = kube_query_add(path, sizeof(path), "seconds", sec);
	}
	ro.timeout_ms = CAPTURE_TIMEOUT_MS + (uint32_t)j->prof.seconds * 1000u;
	if (rc == 0)
		rc = kube_request(cx->rt.kc, "GET", path, NULL, &ro, on_proxied, j, NULL);
	if (rc < 0)
		goto err;
	cx->rt.pending++;
	return;
err:
	kp_err("%s/%s %s: cannot start the capture: %s", t->pod->ns, t->pod->name,
	       ppop_ptype_name(type), strerror(-rc));
	cx->failed++;
	free(j);
	start_proxied(t);
}

/* ---- the command ---------------------------------------------------------- */

static int make_sinks(struct cx *cx)
{
	struct cap_fetcher_opts fo = {
	        .max_inflight = 64,
	        .max_body_bytes = MAX_BODY,
	        .user_agent = "kubectl-profefe/" KP_VERSION_STR,
	};
	int rc;

	if (cx->o->profefe_url && kp_rt_profefe(&cx->rt, cx->o))
		return 1;
	if (cx->o->via_apiserver)
		return 0;
	rc = cap_fetcher_new(cx->rt.l, &fo, &cx->fetcher);
	if (rc < 0) {
		kp_err("cannot create the fetcher: %s", strerror(-rc));
		return 1;
	}
	return 0;
}

static void no_pods_error(const struct cx *cx)
{
	char where[256];

	if (cx->o->all_ns)
		snprintf(where, sizeof(where), "in any namespace");
	else
		snprintf(where, sizeof(where), "in namespace %s", cx->rt.ns);
	kp_err("no Running pods%s %s%s%s%s (%zu other pods skipped)",
	       cx->o->ignore_annotation ? "" : " annotated " REC_ANN_ENABLE "=true", where,
	       cx->o->selector ? " matching \"" : "", cx->o->selector ? cx->o->selector : "",
	       cx->o->selector ? "\"" : "", cx->skipped);
}

int kp_cmd_capture(const struct kp_opts *o)
{
	struct cx cx = {.o = o};
	int status = 1;

	cx.pol.port = REC_DEFAULT_PORT;
	cx.pol.path = (char *)REC_DEFAULT_PATH;
	cx.pol.scheme = REC_SCHEME_HTTP;
	cx.pol.timeout_seconds = REC_DEFAULT_TIMEOUT_S;
	if (kp_rt_init(&cx.rt) || kp_rt_kube(&cx.rt, o) || find_pods(&cx))
		goto out;
	if (cx.nt == 0) {
		if (cx.failed == 0)
			no_pods_error(&cx);
		goto out;
	}
	if (make_sinks(&cx))
		goto out;
	for (size_t i = 0; i < cx.nt; i++) {
		if (o->via_apiserver)
			start_proxied(&cx.t[i]);
		else
			for (size_t k = 0; k < o->ntypes; k++)
				start_direct(&cx.t[i], o->types[k]);
	}
	if (kp_rt_wait(&cx.rt))
		goto out;
	status = cx.failed ? 1 : 0;
out:
	cap_fetcher_free(cx.fetcher);
	kp_rt_free(&cx.rt);
	for (size_t i = 0; i < cx.nt; i++)
		free(cx.t[i].pod);
	free(cx.t);
	return status;
}
