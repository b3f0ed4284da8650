/* kubectl-profefe/query.c: the profefe commands: get profiles, get services,
 * load, pprof and merge.
 *
 * They speak to profefe through capture/'s client (capture/profefe.h), so
 * timeouts, size caps and profefe's own error messages come for free. The
 * one profefe quirk a CLI must know: a query that matches nothing answers
 * 404 "nothing found", which is an empty result, not an error.
 */
#include "kubectl-profefe/kp.h"

#include "capture/capture.h"
#include "capture/profefe.h"
#include "kube/kube.h"
#include "loop/loop.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILE ((size_t)64 << 20)

/* One request's context. */
struct q {
	const struct kp_opts *o;
	struct kp_rt *rt;
	int status; /* exit status so far */
	const char *what;
	char *body; /* load: the file, lent to the push */
	size_t len;
	char *labels;
	const char *type;
};

/* Reports a failed profefe request as one line. */
static void pf_error(const struct q *q, const struct cap_profefe_reply *r)
{
	if (r->res == CAP_RES_HTTP)
		kp_err("%s: profefe answered HTTP %ld: %s", q->what, r->http_status,
		       r->message && r->message[0] ? r->message : "(no message)");
	else
		kp_err("%s: cannot reach profefe at %s: %s", q->what, kp_profefe_url(q->o),
		       r->message && r->message[0] ? r->message : cap_result_name(r->res));
}

/* Parses --from/--to (defaults -1h and now) into a range profefe takes:
 * whole seconds, `to` rounded up so a profile stored this second counts. */
static int time_range(const struct kp_opts *o, int64_t *from, int64_t *to)
{
	int64_t now = loop_wall_ms();
	const char *f = o->from ? o->from : "-1h", *t = o->to ? o->to : "now";

	if (kp_parse_time_arg(f, now, from) < 0) {
		kp_err("invalid --from \"%s\": want a duration ago (1h, -30m), an RFC 3339 time "
		       "or now",
		       f);
		return -EINVAL;
	}
	if (kp_parse_time_arg(t, now, to) < 0) {
		kp_err("invalid --to \"%s\": want a duration ago (1h, -30m), an RFC 3339 time or "
		       "now",
		       t);
		return -EINVAL;
	}
	*to = (*to + 999) / 1000 * 1000;
	if (*from > *to) {
		char a[40], b[40];

		kp_err("--from %s is after --to %s", rec_time_format(*from, a, sizeof(a)),
		       rec_time_format(*to, b, sizeof(b)));
		return -EINVAL;
	}
	return 0;
}

/* Sets up the loop and the profefe client; 0 or 1 (printed). */
static int pf_start(struct kp_rt *rt, const struct kp_opts *o)
{
	if (kp_rt_init(rt))
		return 1;
	return kp_rt_profefe(rt, o);
}

/* ---- get profiles / get services ------------------------------------------ */

static void on_list(void *arg, struct cap_profefe_reply *r)
{
	struct q *q = arg;
	struct json_object *arr = NULL;

	q->rt->pending--;
	if (r->res == CAP_RES_OK)
		arr = r->json;
	else if (!(r->res == CAP_RES_HTTP && r->http_status == 404)) {
		pf_error(q, r);
		q->status = 1;
		return;
	}
	if (q->o->cmd == KP_CMD_GET_PROFILES) {
		struct json_object *kept = kp_filter_profiles(arr, q->o->selector, q->o->limit);

		if (kept == NULL) {
			kp_err("get profiles: out of memory");
			q->status = 1;
			return;
		}
		if (kp_render_profiles(stdout, kept, q->o->fmt, loop_wall_ms()) == 0 &&
		    q->o->fmt <= KP_FMT_WIDE)
			fprintf(stderr, "No profiles found.\n");
		json_object_put(kept);
	} else if (kp_render_services(stdout, arr, q->o->fmt) == 0 && q->o->fmt <= KP_FMT_WIDE)
		fprintf(stderr, "No services found.\n");
	q->status = 0;
}

int kp_cmd_get_profiles(const struct kp_opts *o)
{
	struct kp_rt rt;
	struct q q = {.o = o, .rt = &rt, .status = 1, .what = "get profiles"};
	/* Labels and the limit are applied here, not by profefe: see
	 * kp_filter_profiles(). */
	struct cap_profefe_query pq = {.service = o->service, .type = o->type};
	char err[256];
	int rc;

	if (time_range(o, &pq.from_ms, &pq.to_ms) < 0)
		return 1;
	if ((rc = kp_labels_arg(o->selector, &q.labels, err, sizeof(err))) < 0) {
		kp_err("%s", rc == -ENOMEM ? "out of memory" : err);
		return 1;
	}
	if (pf_start(&rt, o) == 0) {
		rc = cap_profefe_list(rt.pf, &pq, on_list, &q);
		if (rc < 0)
			kp_err("get profiles: %s", strerror(-rc));
		else {
			rt.pending++;
			if (kp_rt_wait(&rt))
				q.status = 1;
		}
	}
	kp_rt_free(&rt);
	free(q.labels);
	return q.status;
}

int kp_cmd_get_services(const struct kp_opts *o)
{
	struct kp_rt rt;
	struct q q = {.o = o, .rt = &rt, .status = 1, .what = "get services"};
	int rc;

	if (pf_start(&rt, o) == 0) {
		rc = cap_profefe_services(rt.pf, on_list, &q);
		if (rc < 0)
			kp_err("get services: %s", strerror(-rc));
		else {
			rt.pending++;
			if (kp_rt_wait(&rt))
				q.status = 1;
		}
	}
	kp_rt_free(&rt);
	return q.status;
}

/* ---- load ----------------------------------------------------------------- */

static void on_loaded(void *arg, struct cap_profefe_reply *r)
{
	struct q *q = arg;

	q->rt->pending--;
	if (r->res == CAP_RES_OK && r->id) {
		printf("%s %s id=%s service=%s\n", q->what, q->type, r->id, q->o->service);
		q->status = 0;
	} else {
		pf_error(q, r);
		q->status = 1;
	}
}

/* Works out the profefe type of a file and the labels to store with it. */
static int load_type(struct q *q)
{
	const char *name = q->o->type;
	enum ppop_ptype t = PPOP_PT_OTHER;
	char err[256], *extra = NULL;
	int rc;

	switch (cap_pprof_check(q->body, q->len)) {
	case CAP_PPROF_NOT_PROFILE:
		kp_err("%s: not a pprof profile", q->what);
		return -EINVAL;
	case CAP_PPROF_EMPTY:
		kp_err("%s: the profile has no samples, and profefe refuses empty profiles",
		       q->what);
		return -EINVAL;
	default:
		break;
	}
	if (name == NULL) {
		rc = cap_pprof_detect_type(q->body, q->len, MAX_FILE, &t);
		if (rc < 0 || t == PPOP_PT_OTHER) {
			kp_err("%s: cannot tell the profile type from its sample types; give "
			       "--type",
			       q->what);
			return -EINVAL;
		}
		name = ppop_ptype_name(t);
	}
	if (strcmp(name, "allocs") == 0) {
		/* profefe has no allocs type: heap, labelled (DESIGN section 4) */
		if (asprintf(&extra, "%s%spprof_type=allocs", q->o->selector ? q->o->selector : "",
		             q->o->selector && q->o->selector[0] ? "," : "") < 0)
			return -ENOMEM;
		name = "heap";
	}
	q->type = name;
	rc = kp_labels_arg(extra ? extra : q->o->selector, &q->labels, err, sizeof(err));
	free(extra);
	if (rc < 0) {
		kp_err("%s", rc == -ENOMEM ? "out of memory" : err);
		return rc;
	}
	return 0;
}

/* Starts the upload of one file; returns 0 when the push is running. */
static int load_one(struct q *q)
{
	struct cap_push_meta m = {0};
	int rc = kube_read_file(q->what, MAX_FILE, &q->body, &q->len);

	if (rc < 0) {
		kp_err("%s: %s", q->what, strerror(-rc));
		return rc;
	}
	if ((rc = load_type(q)) < 0)
		return rc;
	m.service = q->o->service;
	m.type = q->type;
	m.labels = q->labels;
	rc = cap_profefe_push(q->rt->pf, &m, q->body, q->len, on_loaded, q);
	if (rc < 0) {
		kp_err("%s: %s", q->what, strerror(-rc));
		return rc;
	}
	q->rt->pending++;
	return 0;
}

int kp_cmd_load(const struct kp_opts *o)
{
	struct kp_rt rt;
	struct q *qs;
	int status = 0;

	qs = calloc(o->nargs, sizeof(*qs));
	if (qs == NULL) {
		kp_err("out of memory");
		return 1;
	}
	if (pf_start(&rt, o) == 0) {
		for (size_t i = 0; i < o->nargs; i++) {
			qs[i] = (struct q){.o = o, .rt = &rt, .status = 1, .what = o->args[i]};
			load_one(&qs[i]);
		}
		if (kp_rt_wait(&rt))
			status = 1;
	} else
		status = 1;
	kp_rt_free(&rt);
	for (size_t i = 0; i < o->nargs; i++) {
		status |= qs[i].status;
		free(qs[i].body);
		free(qs[i].labels);
	}
	free(qs);
	return status;
}

/* ---- pprof and merge ------------------------------------------------------ */

/* Writes `len` bytes to `path` through a temporary file, so a failed write
 * never leaves half a profile under the name the user asked for. */
static int write_out(const char *path, const char *body, size_t len)
{
	char *tmp = NULL;
	size_t off = 0;
	int fd, rc = 0;

	if (asprintf(&tmp, "%s.tmp-%d", path, (int)getpid()) < 0)
		return -ENOMEM;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	while (off < len && rc == 0) {
		ssize_t w = write(fd, body + off, len - off);

		if (w < 0 && errno != EINTR)
			rc = -errno;
		else if (w > 0)
			off += (size_t)w;
	}
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc)
		unlink(tmp);
out:
	free(tmp);
	return rc;
}

static void on_download(void *arg, struct cap_profefe_reply *r)
{
	struct q *q = arg;
	const char *out = q->o->output;
	int rc;

	q->rt->pending--;
	if (r->res == CAP_RES_HTTP && r->http_status == 404) {
		if (q->o->cmd == KP_CMD_MERGE)
			kp_err("merge: no %s profiles of service %s in that time range", q->o->type,
			       q->o->service);
		else
			kp_err("pprof: no such profile in profefe: %s", r->message);
		return;
	}
	if (r->res != CAP_RES_OK) {
		pf_error(q, r);
		return;
	}
	if (cap_pprof_check(r->body, r->body_len) == CAP_PPROF_NOT_PROFILE) {
		kp_err("%s: profefe's reply is not a pprof profile", q->what);
		return;
	}
	if (out == NULL || strcmp(out, "-") == 0) {
		if (fwrite(r->body, 1, r->body_len, stdout) != r->body_len || fflush(stdout)) {
			kp_err("%s: writing to stdout: %s", q->what, strerror(errno));
			return;
		}
	} else if ((rc = write_out(out, r->body, r->body_len)) < 0) {
		kp_err("%s: cannot write %s: %s", q->what, out, strerror(-rc));
		return;
	} else
		fprintf(stderr, "wrote %zu bytes to %s (open it with: go tool pprof %s)\n",
		        r->body_len, out, out);
	q->status = 0;
}

/* merge -l: the profiles of the range, filtered here (kp_filter_profiles()
 * says why), then fetched merged by ID. */
static void on_merge_list(void *arg, struct cap_profefe_reply *r)
{
	struct q *q = arg;
	struct json_object *kept = NULL;
	const char **ids = NULL;
	size_t n = 0;
	int rc = -ENOMEM;

	q->rt->pending--;
	if (r->res != CAP_RES_OK && !(r->res == CAP_RES_HTTP && r->http_status == 404)) {
		pf_error(q, r);
		return;
	}
	kept = kp_filter_profiles(r->res == CAP_RES_OK ? r->json : NULL, q->o->selector, 0);
	if (kept)
		n = json_object_array_length(kept);
	if (kept && n == 0) {
		kp_err("merge: no %s profiles of service %s with labels %s in that time range",
		       q->o->type, q->o->service, q->o->selector);
		goto out;
	}
	if (kept && (ids = calloc(n, sizeof(*ids))) != NULL) {
		size_t m = 0;

		for (size_t i = 0; i < n; i++) {
			struct json_object *id = NULL;

			if (json_object_object_get_ex(json_object_array_get_idx(kept, i), "id",
			                              &id) &&
			    json_object_is_type(id, json_type_string))
				ids[m++] = json_object_get_string(id);
		}
		rc = m ? cap_profefe_get(q->rt->pf, ids, m, on_download, q) : -EPROTO;
	}
	if (rc < 0)
		kp_err("merge: %s", strerror(-rc));
	else
		q->rt->pending++;
out:
	free(ids);
	json_object_put(kept);
}

int kp_cmd_download(const struct kp_opts *o)
{
	struct kp_rt rt;
	struct q q = {.o = o, .rt = &rt, .status = 1, .what = kp_cmd_name(o->cmd)};
	struct cap_profefe_query pq = {.service = o->service, .type = o->type};
	char err[256];
	int rc = 0;

	if ((o->output == NULL || strcmp(o->output, "-") == 0) && isatty(STDOUT_FILENO)) {
		kp_err("refusing to write a binary profile to a terminal: use -o FILE, or "
		       "redirect stdout");
		return 1;
	}
	if (o->cmd == KP_CMD_MERGE) {
		if (time_range(o, &pq.from_ms, &pq.to_ms) < 0)
			return 1;
		if ((rc = kp_labels_arg(o->selector, &q.labels, err, sizeof(err))) < 0) {
			kp_err("%s", rc == -ENOMEM ? "out of memory" : err);
			return 1;
		}
	}
	if (pf_start(&rt, o) == 0) {
		if (o->cmd == KP_CMD_MERGE && o->selector && o->selector[0])
			rc = cap_profefe_list(rt.pf, &pq, on_merge_list, &q);
		else if (o->cmd == KP_CMD_MERGE)
			rc = cap_profefe_merge(rt.pf, &pq, on_download, &q);
		else
			rc = cap_profefe_get(rt.pf, (const char *const *)o->args, o->nargs,
			                     on_download, &q);
		if (rc < 0)
			kp_err("%s: %s", q.what, strerror(-rc));
		else {
			rt.pending++;
			if (kp_rt_wait(&rt))
				q.status = 1;
		}
	}
	kp_rt_free(&rt);
	free(q.labels);
	return q.status;
}
