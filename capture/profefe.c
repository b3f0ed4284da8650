/* capture/profefe.c: profefe's HTTP API on the shared loop.
 *
 * profefe answers JSON {"code":200,"body":...} on success and
 * {"code":N,"error":"..."} on failure, except for profile downloads, which
 * are raw pprof. The error text is what a user needs ("malformed profile",
 * "nothing found"), so it is passed through as the reply's message rather
 * than replaced by a generic one (kube-profefe logged every upload error as
 * "unknown profile type").
 */
#include "capture/profefe.h"
#include "capture/internal.h"

#include <errno.h>
#include <limits.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CONNECT_MS 5000
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_REPLY      ((size_t)64 << 20)

/* R_JSON: a tree of the reply for the caller; R_PUSH: the id only, read by
 * cap__profefe_scan(); R_RAW: the bytes (pprof). */
enum reply_kind { R_JSON, R_PUSH, R_RAW };

struct preq {
	struct preq *prev, *next;
	struct cap_profefe *c;
	CURL *easy;
	struct loop_buf buf;
	enum reply_kind kind;
	cap_profefe_fn fn;
	void *arg;
	int hdr_done; /* the reply's header block has ended */
	char errbuf[CURL_ERROR_SIZE];
	char msg[512];
	char id[128]; /* R_PUSH: the stored profile's id; profefe's are 20 bytes */
};

struct cap_profefe {
	struct loop *loop;
	char *base;
	char *user_agent;
	struct cap_profefe_opts o;
	struct curl_slist *post_hdrs; /* the same for every push */
	struct cap__easy_pool easy_pool;
	struct preq *head;
	size_t n;
	int closing; /* in cap_profefe_free: callbacks may not start new requests */
};

int cap_profefe_new(struct loop *l, const char *base_url, const struct cap_profefe_opts *o,
                    struct cap_profefe **out)
{
	if (base_url == NULL || strncmp(base_url, "http", 4) != 0)
		return -EINVAL;
	struct cap_profefe *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	if (o != NULL)
		c->o = *o;
	if (c->o.connect_timeout_ms == 0)
		c->o.connect_timeout_ms = DEFAULT_CONNECT_MS;
	if (c->o.timeout_ms == 0)
		c->o.timeout_ms = DEFAULT_TIMEOUT_MS;
	if (c->o.max_reply_bytes == 0)
		c->o.max_reply_bytes = DEFAULT_REPLY;
	c->loop = l;
	c->base = strdup(base_url);
	c->user_agent = strdup(c->o.user_agent ? c->o.user_agent : cap_user_agent());
	c->post_hdrs = curl_slist_append(NULL, "Content-Type: application/octet-stream");
	if (c->post_hdrs != NULL) {
		/* No "Expect: 100-continue": profefe reads the body at once. */
		struct curl_slist *h = curl_slist_append(c->post_hdrs, "Expect:");
		if (h == NULL) {
			curl_slist_free_all(c->post_hdrs);
			c->post_hdrs = NULL;
		}
	}
	if (c->base == NULL || c->user_agent == NULL || c->post_hdrs == NULL) {
		cap_profefe_free(c);
		return -ENOMEM;
	}
	/* "http://host:port/" and "http://host:port" are the same base. */
	size_t bl = strlen(c->base);
	while (bl > 0 && c->base[bl - 1] == '/')
		c->base[--bl] = '\0';
	c->o.user_agent = c->user_agent;
	*out = c;
	return 0;
}

static void preq_unlink(struct preq *q)
{
	struct cap_profefe *c = q->c;
	if (q->prev)
		q->prev->next = q->next;
	else
		c->head = q->next;
	if (q->next)
		q->next->prev = q->prev;
	c->n--;
}

static void preq_free(struct preq *q)
{
	cap__easy_put(&q->c->easy_pool, q->easy);
	loop_buf_free(&q->buf);
	free(q);
}

struct json_object *cap__profefe_parse(const char *data, size_t len, struct cap_profefe_reply *r,
                                       char *msg, size_t msglen)
{
	struct json_object *root = NULL, *v;
	if (data == NULL || len == 0 || len > INT_MAX)
		return NULL;
	struct json_tokener *tok = json_tokener_new();
	if (tok == NULL)
		return NULL;
	root = json_tokener_parse_ex(tok, data, (int)len);
	json_tokener_free(tok);
	if (root == NULL || !json_object_is_type(root, json_type_object)) {
		json_object_put(root);
		return NULL;
	}
	if (json_object_object_get_ex(root, "error", &v) &&
	    json_object_is_type(v, json_type_string))
		snprintf(msg, msglen, "%s", json_object_get_string(v));
	if (json_object_object_get_ex(root, "body", &v)) {
		r->json = v;
		struct json_object *id;
		if (json_object_is_type(v, json_type_object) &&
		    json_object_object_get_ex(v, "id", &id) &&
		    json_object_is_type(id, json_type_string))
			r->id = json_object_get_string(id);
	}
	return root;
}

static void on_done(void *arg, CURL *easy, CURLcode rc)
{
	struct preq *q = arg;
	struct cap_profefe_reply r = {0};
	struct json_object *root = NULL;
	long status = 0;
	(void)curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	preq_unlink(q);
	r.http_status = status;
	r.res = cap__classify(rc, &q->buf);
	if (cap__header_overflow(rc, q->hdr_done)) {
		r.res = CAP_RES_TOO_LARGE;
		snprintf(q->msg, sizeof(q->msg), "response header from profefe exceeds %d bytes",
		         CURL_MAX_HTTP_HEADER);
	} else if (r.res == CAP_RES_OK) {
		int ok = status >= 200 && status <= 299, scanned = -EINVAL;
		if (ok && q->kind == R_JSON)
			root = cap__profefe_parse(q->buf.data, q->buf.len, &r, q->msg,
			                          sizeof(q->msg));
		else if (q->kind == R_PUSH || !ok)
			scanned = cap__profefe_scan(q->buf.data, q->buf.len, q->id, sizeof(q->id),
			                            q->msg, sizeof(q->msg));
		if (!ok) {
			r.res = CAP_RES_HTTP;
			if (q->msg[0] == '\0')
				cap__first_line(q->buf.data, q->buf.len, q->msg, sizeof(q->msg));
		} else if ((q->kind == R_JSON && root == NULL) ||
		           (q->kind == R_PUSH && scanned < 0)) {
			r.res = CAP_RES_TRANSPORT;
			snprintf(q->msg, sizeof(q->msg), "profefe sent a reply that is not JSON");
		} else if (q->kind == R_PUSH && q->id[0] != '\0') {
			r.id = q->id;
		}
	} else if (r.res == CAP_RES_TOO_LARGE) {
		snprintf(q->msg, sizeof(q->msg), "reply larger than %zu bytes",
		         q->c->o.max_reply_bytes);
	} else {
		snprintf(q->msg, sizeof(q->msg), "%s",
		         q->errbuf[0] ? q->errbuf : curl_easy_strerror(rc));
	}
	r.message = q->msg;
	r.body = q->buf.data;
	r.body_len = q->buf.len;
	q->fn(q->arg, &r);
	json_object_put(root);
	preq_free(q);
}

/* Starts a request for `url` (taken: freed here). `body` non-NULL makes it
 * a POST of that lent body. */
static int start(struct cap_profefe *c, char *url, const void *body, size_t len,
                 enum reply_kind kind, cap_profefe_fn fn, void *arg)
{
	int rc = -ENOMEM;
	if (c->closing) {
		free(url);
		return -ESHUTDOWN;
	}
	if (url == NULL)
		return -ENOMEM;
	struct preq *q = calloc(1, sizeof(*q));
	if (q == NULL)
		goto out_url;
	q->c = c;
	q->kind = kind;
	q->fn = fn;
	q->arg = arg;
	q->buf.cap_bytes = c->o.max_reply_bytes;
	q->easy = cap__easy_get(&c->easy_pool);
	if (q->easy == NULL)
		goto out_q;
	rc = cap__easy_setup(q->easy, url, c->o.connect_timeout_ms, c->o.timeout_ms, &q->buf,
	                     q->errbuf, c->user_agent, &q->hdr_done);
	if (rc == 0 && body != NULL &&
	    (curl_easy_setopt(q->easy, CURLOPT_HTTPHEADER, c->post_hdrs) != CURLE_OK ||
	     curl_easy_setopt(q->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len) != CURLE_OK ||
	     curl_easy_setopt(q->easy, CURLOPT_POSTFIELDS, body) != CURLE_OK))
		rc = -ENOMEM;
	if (rc == 0)
		rc = loop_transfer_start(c->loop, q->easy, on_done, q);
	if (rc < 0)
		goto out_q;
	free(url);
	q->next = c->head;
	if (c->head)
		c->head->prev = q;
	c->head = q;
	c->n++;
	return 0;
out_q:
	cap__easy_put(&c->easy_pool, q->easy);
	free(q);
out_url:
	free(url);
	return rc;
}

/* A small string builder for query strings. */
struct sb {
	char *p;
	size_t n, alloc;
	int err;
};

static void sb_add(struct sb *b, const char *s)
{
	size_t l = strlen(s);
	if (b->err)
		return;
	if (b->n + l + 1 > b->alloc) {
		size_t na = (b->n + l + 1) * 2;
		char *np = realloc(b->p, na);
		if (np == NULL) {
			b->err = 1;
			return;
		}
		b->p = np;
		b->alloc = na;
	}
	memcpy(b->p + b->n, s, l + 1);
	b->n += l;
}

/* Adds "&key=escaped(val)" ("?" first); skips NULL values. */
static void sb_param(struct sb *b, const char *key, const char *val)
{
	if (val == NULL)
		return;
	char *esc = ppop_query_escape(val);
	if (esc == NULL) {
		b->err = 1;
		return;
	}
	sb_add(b, strchr(b->p ? b->p : "", '?') ? "&" : "?");
	sb_add(b, key);
	sb_add(b, "=");
	sb_add(b, esc);
	free(esc);
}

static void sb_time(struct sb *b, const char *key, int64_t ms)
{
	char t[32];
	if (cap_format_time(ms, t, sizeof(t)) < 0)
		b->err = 1;
	else
		sb_param(b, key, t);
}

static char *sb_take(struct sb *b)
{
	if (b->err) {
		free(b->p);
		return NULL;
	}
	return b->p;
}

int cap_profefe_push(struct cap_profefe *c, const struct cap_push_meta *m, const void *body,
                     size_t len, cap_profefe_fn fn, void *arg)
{
	struct sb b = {0};
	if (m == NULL || m->service == NULL || m->type == NULL || body == NULL || fn == NULL)
		return -EINVAL;
	sb_add(&b, c->base);
	sb_add(&b, "/api/0/profiles");
	sb_param(&b, "service", m->service);
	sb_param(&b, "type", m->type);
	if (m->labels != NULL && m->labels[0] != '\0')
		sb_param(&b, "labels", m->labels);
	if (m->created_ms > 0)
		sb_time(&b, "created_at", m->created_ms);
	sb_param(&b, "instance_id", m->instance_id);
	return start(c, sb_take(&b), body, len, R_PUSH, fn, arg);
}

static void query_params(struct sb *b, const struct cap_profefe_query *q)
{
	sb_param(b, "service", q->service);
	sb_param(b, "type", q->type);
	if (q->labels != NULL && q->labels[0] != '\0')
		sb_param(b, "labels", q->labels);
	sb_time(b, "from", q->from_ms);
	sb_time(b, "to", q->to_ms);
}

int cap_profefe_list(struct cap_profefe *c, const struct cap_profefe_query *q, cap_profefe_fn fn,
                     void *arg)
{
	struct sb b = {0};
	char lim[16];
	if (q == NULL || q->service == NULL || fn == NULL)
		return -EINVAL;
	sb_add(&b, c->base);
	sb_add(&b, "/api/0/profiles");
	query_params(&b, q);
	if (q->limit > 0) {
		snprintf(lim, sizeof(lim), "%u", q->limit);
		sb_param(&b, "limit", lim);
	}
	return start(c, sb_take(&b), NULL, 0, R_JSON, fn, arg);
}

int cap_profefe_get(struct cap_profefe *c, const char *const *ids, size_t n, cap_profefe_fn fn,
                    void *arg)
{
	struct sb b = {0};
	if (ids == NULL || n == 0 || fn == NULL)
		return -EINVAL;
	sb_add(&b, c->base);
	sb_add(&b, "/api/0/profiles/");
	for (size_t i = 0; i < n; i++) {
		char *esc = ppop_query_escape(ids[i]);
		if (esc == NULL || ids[i][0] == '\0') {
			free(esc);
			free(b.p);
			return esc == NULL ? -ENOMEM : -EINVAL;
		}
		if (i > 0)
			sb_add(&b, "+");
		sb_add(&b, esc);
		free(esc);
	}
	return start(c, sb_take(&b), NULL, 0, R_RAW, fn, arg);
}

int cap_profefe_merge(struct cap_profefe *c, const struct cap_profefe_query *q, cap_profefe_fn fn,
                      void *arg)
{
	struct sb b = {0};
	if (q == NULL || q->service == NULL || q->type == NULL || fn == NULL)
		return -EINVAL;
	sb_add(&b, c->base);
	sb_add(&b, "/api/0/profiles/merge");
	query_params(&b, q);
	return start(c, sb_take(&b), NULL, 0, R_RAW, fn, arg);
}

static int simple_get(struct cap_profefe *c, const char *path, cap_profefe_fn fn, void *arg)
{
	struct sb b = {0};
	if (fn == NULL)
		return -EINVAL;
	sb_add(&b, c->base);
	sb_add(&b, path);
	return start(c, sb_take(&b), NULL, 0, R_JSON, fn, arg);
}

int cap_profefe_services(struct cap_profefe *c, cap_profefe_fn fn, void *arg)
{
	return simple_get(c, "/api/0/services", fn, arg);
}

int cap_profefe_version(struct cap_profefe *c, cap_profefe_fn fn, void *arg)
{
	return simple_get(c, "/api/0/version", fn, arg);
}

size_t cap_profefe_inflight(const struct cap_profefe *c)
{
	return c->n;
}

static void cancel_one(struct cap_profefe *c, struct preq *q)
{
	struct cap_profefe_reply r = {.res = CAP_RES_CANCELLED, .message = "cancelled"};
	preq_unlink(q);
	loop_transfer_cancel(c->loop, q->easy);
	q->fn(q->arg, &r);
	preq_free(q);
}

size_t cap_profefe_cancel_arg(struct cap_profefe *c, const void *arg)
{
	size_t n = 0;
	struct preq *q;
	/* A callback may start or cancel requests: search from the start. */
	for (;;) {
		for (q = c->head; q != NULL && q->arg != arg; q = q->next)
			;
		if (q == NULL)
			return n;
		cancel_one(c, q);
		n++;
	}
}

void cap_profefe_free(struct cap_profefe *c)
{
	if (c == NULL)
		return;
	c->closing = 1;
	while (c->head != NULL)
		cancel_one(c, c->head);
	cap__easy_pool_drain(&c->easy_pool);
	curl_slist_free_all(c->post_hdrs);
	free(c->base);
	free(c->user_agent);
	free(c);
}
