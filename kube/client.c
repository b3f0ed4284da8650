/* kube/client.c: the client, its credentials, and requests as transfers
 * on the shared loop.
 *
 * Every attempt is a fresh easy handle; connections are still reused,
 * because curl keeps its connection cache in the multi handle. Retries
 * follow client-go's rest.Request: 429 and 5xx are retried only when the
 * server sent Retry-After, and a 401 refreshes credentials (token file,
 * exec plugin) and retries once.
 */
#include "kube/kube_int.h"
#include "loop/log.h"
#include "loop/loop.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_TIMEOUT_MS  30000u
#define DEFAULT_MAX_BODY    (16u << 20)
#define DEFAULT_MAX_RETRIES 5
#define RETRY_AFTER_CAP_S   60
#define TOKEN_REREAD_MS     60000u
#define EXEC_TIMEOUT_MS     30000
#define EXEC_MAX_OUTPUT     (1u << 20)
#define EXEC_EXPIRY_SLACK_S 10
/* A watch with bookmarks hears from the apiserver about once a minute
 * even when nothing changes; silence this long means a dead connection. */
#define WATCH_IDLE_S 180L
#define USER_AGENT   "profefe-operator/0.1 (kube)"
/* Requests in flight per client, watches and urgent requests aside. A
 * burst beyond it (a status write for each of 1,000 policies after a
 * sync) waits its turn instead of opening a TLS connection per request,
 * which cost about 90 KB each and stayed in curl's connection cache. */
#define MAX_INFLIGHT 16

struct kube_client {
	struct loop *loop;
	struct kube_config *cfg;
	char *token;                 /* the bearer token in use (owned) */
	uint64_t token_read_ms;      /* when token_file was last read */
	int token_loaded;            /* token holds the file's or plugin's answer */
	struct kube__exec_cred cred; /* the exec plugin's cached answer */
	char *base;                  /* server URL, host swapped for tls-server-name */
	char *connect_to;            /* CURLOPT_CONNECT_TO entry, or NULL */
	char *user_agent;            /* NULL: USER_AGENT */
	struct kube_call *calls;     /* outstanding calls, for kube_client_free() */
	struct kube__op *ops;        /* outstanding operations, likewise */
	struct exec_job *job;        /* the exec plugin run under way, or NULL */
	struct kube_call *parked;    /* calls waiting for it */
	char exec_err[512];          /* why the last run failed */
	struct kube_call *queue;     /* calls waiting for a slot, oldest first */
	struct kube_call **queue_tail;
	unsigned inflight;      /* calls holding a slot */
	struct loop_timer kick; /* starts queued calls after slots free up */
};

struct kube_call {
	struct kube_client *kc;
	struct kube_call *prev, *next;
	CURL *easy;
	struct curl_slist *hdrs;
	struct curl_slist *connect_to; /* curl keeps pointers to both lists */
	char *method;
	char *path;
	char *body;
	size_t body_len;
	char *content_type;
	struct kube_req_opts opts;
	struct loop_buf resp;
	struct loop_timer retry;
	struct kube_call *park_next; /* waiting for the exec plugin */
	int parked;
	struct kube_call *queue_next; /* waiting for a slot */
	int queued;
	int slot;     /* holds one of the client's MAX_INFLIGHT slots */
	int uncapped; /* a watch or an urgent request: needs no slot */
	int fail_rc;  /* nonzero: the retry timer completes the call with it */
	int attempts;
	int auth_retried;
	kube_done_fn done;
	void *arg;
	kube__stream_fn stream; /* non-NULL: stream a 200 body here */
	void *sarg;
	int stream_failed;
	/* A list read as it arrives yields to the loop: past the iteration's
	 * budget, write_cb pauses the transfer and `resume` carries on next
	 * iteration, taking at least one chunk whatever the budget. */
	int pausable, take_one;
	struct loop_timer resume;
	long low_speed_s; /* nonzero: abort after this long without a byte */
	char errbuf[CURL_ERROR_SIZE];
};

struct exec_job;
static void job_free(struct exec_job *j);

static void call_unlink(struct kube_call *c)
{
	struct kube_client *kc = c->kc;

	if (c->prev)
		c->prev->next = c->next;
	else if (kc->calls == c)
		kc->calls = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
}

static void call_release_easy(struct kube_call *c)
{
	if (c->easy) {
		loop_transfer_cancel(c->kc->loop, c->easy);
		curl_easy_cleanup(c->easy);
		c->easy = NULL;
	}
	curl_slist_free_all(c->hdrs);
	c->hdrs = NULL;
	curl_slist_free_all(c->connect_to);
	c->connect_to = NULL;
}

static void call_unpark(struct kube_call *c)
{
	struct kube_call **pp;

	if (!c->parked)
		return;
	for (pp = &c->kc->parked; *pp; pp = &(*pp)->park_next)
		if (*pp == c) {
			*pp = c->park_next;
			break;
		}
	c->parked = 0;
}

static void call_unqueue(struct kube_call *c)
{
	struct kube_client *kc = c->kc;
	struct kube_call **pp;

	if (!c->queued)
		return;
	for (pp = &kc->queue; *pp; pp = &(*pp)->queue_next)
		if (*pp == c) {
			*pp = c->queue_next;
			break;
		}
	kc->queue_tail = &kc->queue;
	while (*kc->queue_tail)
		kc->queue_tail = &(*kc->queue_tail)->queue_next;
	c->queue_next = NULL;
	c->queued = 0;
}

/* Gives the call's slot back; queued calls start from the kick timer,
 * never from here, which may be inside a callback of the caller's. */
static void call_release_slot(struct kube_call *c)
{
	struct kube_client *kc = c->kc;

	if (!c->slot)
		return;
	c->slot = 0;
	kc->inflight--;
	if (kc->queue && !loop_timer_active(&kc->kick))
		loop_timer_start(kc->loop, &kc->kick, 0);
}

/* Starts queued calls while slots are free: each gets a slot now and
 * starts from its own zero timer, as unpark_all() does, so a callback
 * that frees the client cannot pull the queue out from under us. */
static void kick_fire(struct loop_timer *t)
{
	struct kube_client *kc = t->arg;

	while (kc->queue && kc->inflight < MAX_INFLIGHT) {
		struct kube_call *c = kc->queue;

		kc->queue = c->queue_next;
		if (!kc->queue)
			kc->queue_tail = &kc->queue;
		c->queue_next = NULL;
		c->queued = 0;
		c->slot = 1;
		kc->inflight++;
		if (loop_timer_start(kc->loop, &c->retry, 0))
			c->fail_rc = -ENOMEM; /* stays idle; freed with the client */
	}
}

static void call_free(struct kube_call *c)
{
	call_unqueue(c);
	call_release_slot(c);
	call_unpark(c);
	call_release_easy(c);
	loop_timer_stop(c->kc->loop, &c->retry);
	loop_timer_stop(c->kc->loop, &c->resume);
	call_unlink(c);
	loop_buf_free(&c->resp);
	free(c->method);
	free(c->path);
	free(c->body);
	free(c->content_type);
	free(c);
}

void kube_call_cancel(struct kube_call *c)
{
	if (c)
		call_free(c);
}

/* Frees what curl_url_get() handed out, and the handle. */
static void url_parts_free(CURLU *u, char **parts, size_t n)
{
	for (size_t i = 0; i < n; i++)
		curl_free(parts[i]);
	curl_url_cleanup(u);
}

int kube__server_name_urls(const char *server, const char *tls_name, char **base, char **connect_to)
{
	enum { SCHEME, HOST, PORT, PATH, QUERY, NPARTS };
	static const CURLUPart which[NPARTS] = {CURLUPART_SCHEME, CURLUPART_HOST, CURLUPART_PORT,
	                                        CURLUPART_PATH, CURLUPART_QUERY};
	char *part[NPARTS] = {0};
	CURLU *u = curl_url();
	int rc = -EINVAL;

	*base = *connect_to = NULL;
	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, server, 0) != CURLUE_OK)
		goto out;
	for (int i = 0; i < NPARTS; i++) {
		CURLUcode uc =
		        curl_url_get(u, which[i], &part[i], i == PORT ? CURLU_DEFAULT_PORT : 0);

		if (uc == CURLUE_OUT_OF_MEMORY) {
			rc = -ENOMEM;
			goto out;
		}
		if (uc != CURLUE_OK && i != QUERY)
			goto out;
	}
	rc = -ENOMEM;
	/* The host keeps curl's brackets around an IPv6 literal, as
	 * CURLOPT_CONNECT_TO wants it. A path of just "/" is no path. */
	if (asprintf(base, "%s://%s:%s%s%s%s", part[SCHEME], tls_name, part[PORT],
	             strcmp(part[PATH], "/") ? part[PATH] : "", part[QUERY] ? "?" : "",
	             part[QUERY] ? part[QUERY] : "") < 0) {
		*base = NULL;
		goto out;
	}
	if (asprintf(connect_to, "%s:%s:%s:%s", tls_name, part[PORT], part[HOST], part[PORT]) < 0) {
		*connect_to = NULL;
		free(*base);
		*base = NULL;
		goto out;
	}
	rc = 0;
out:
	url_parts_free(u, part, NPARTS);
	return rc;
}

/* With tls-server-name set, that name must be both the one we verify and
 * the SNI we send while we connect to the real server: the base URL names
 * tls-server-name and CURLOPT_CONNECT_TO maps it to the server. */
static int setup_server_name(struct kube_client *kc)
{
	if (!kc->cfg->tls_server_name || !*kc->cfg->tls_server_name)
		return (kc->base = strdup(kc->cfg->server)) ? 0 : -ENOMEM;
	return kube__server_name_urls(kc->cfg->server, kc->cfg->tls_server_name, &kc->base,
	                              &kc->connect_to);
}

int kube_client_new_take(struct loop *l, struct kube_config *cfg, struct kube_client **out)
{
	struct kube_client *kc = calloc(1, sizeof(*kc));
	int rc;

	if (!kc) {
		kube_config_free(cfg);
		return -ENOMEM;
	}
	kc->loop = l;
	kc->queue_tail = &kc->queue;
	loop_timer_init(&kc->kick, kick_fire, kc);
	kc->cfg = cfg;
	rc = setup_server_name(kc);
	if (rc) {
		kube_client_free(kc);
		return rc;
	}
	*out = kc;
	return 0;
}

void kube_client_free(struct kube_client *kc)
{
	if (!kc)
		return;
	while (kc->ops)
		kc->ops->cancel(kc->ops); /* unlinks itself */
	while (kc->calls)
		call_free(kc->calls);
	loop_timer_stop(kc->loop, &kc->kick);
	if (kc->job)
		job_free(kc->job);
	free(kc->token);
	kube__exec_cred_free(&kc->cred);
	free(kc->base);
	free(kc->connect_to);
	free(kc->user_agent);
	kube_config_free(kc->cfg);
	free(kc);
}

void kube__op_link(struct kube_client *kc, struct kube__op *op)
{
	op->prev = NULL;
	op->next = kc->ops;
	if (kc->ops)
		kc->ops->prev = op;
	kc->ops = op;
}

void kube__op_unlink(struct kube_client *kc, struct kube__op *op)
{
	if (op->prev)
		op->prev->next = op->next;
	else if (kc->ops == op)
		kc->ops = op->next;
	if (op->next)
		op->next->prev = op->prev;
	op->prev = op->next = NULL;
}

int kube_client_set_user_agent(struct kube_client *kc, const char *ua)
{
	char *n = strdup(ua);

	if (!n)
		return -ENOMEM;
	free(kc->user_agent);
	kc->user_agent = n;
	return 0;
}

const char *kube_client_namespace(const struct kube_client *kc)
{
	return kube_config_namespace(kc->cfg);
}

struct loop *kube_client_loop(const struct kube_client *kc)
{
	return kc->loop;
}

void kube__client_invalidate_auth(struct kube_client *kc)
{
	kc->token_loaded = 0;
	kube__exec_cred_free(&kc->cred);
}

/* Rereads the token file; keeps the old token if the read fails, since
 * kubelet replaces the file atomically and a failure is transient. */
static void reload_token_file(struct kube_client *kc)
{
	struct kube__blob b = {0};
	int rc = kube__read_file(kc->cfg->token_file, 1 << 20, &b);

	kc->token_read_ms = loop_now_ms(kc->loop);
	if (rc) {
		log_warn("kube: cannot read token file", "path", kc->cfg->token_file, "error",
		         strerror(-rc), NULL);
		return;
	}
	while (b.len && strchr(" \t\r\n", b.data[b.len - 1]))
		b.data[--b.len] = '\0';
	free(kc->token);
	kc->token = b.data;
	kc->token_loaded = 1;
}

/* One asynchronous run of the exec plugin: its pipes are loop fd watches,
 * and a timer enforces the deadline and polls for the exit status. */
struct exec_job {
	struct kube_client *kc;
	pid_t pid;
	struct loop_fd out, err;
	struct kube__blob output;
	size_t alloc;
	char errtxt[512];
	size_t errlen;
	struct loop_timer timer;
	uint64_t deadline_ms;
	int status;
};

static void job_close_fd(struct exec_job *j, struct loop_fd *w)
{
	if (w->fd < 0)
		return;
	loop_fd_stop(j->kc->loop, w);
	close(w->fd);
	w->fd = -1;
}

/* Frees the job; kills and reaps the child if it still runs. */
static void job_free(struct exec_job *j)
{
	job_close_fd(j, &j->out);
	job_close_fd(j, &j->err);
	loop_timer_stop(j->kc->loop, &j->timer);
	if (j->pid > 0) {
		kill(j->pid, SIGKILL);
		while (waitpid(j->pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	kube__blob_free(&j->output);
	free(j);
}

/* Wakes every parked call: each restarts (or fails) from its own zero
 * timer, so a callback that frees the client cannot pull the list out
 * from under us. */
static void unpark_all(struct kube_client *kc, int fail_rc)
{
	while (kc->parked) {
		struct kube_call *c = kc->parked;

		kc->parked = c->park_next;
		c->park_next = NULL;
		c->parked = 0;
		c->fail_rc = fail_rc;
		if (loop_timer_start(kc->loop, &c->retry, 0))
			c->fail_rc = -ENOMEM; /* stays idle; freed with the client */
	}
}

/* Ends the run: judges the output, caches the credential, wakes calls. */
static void job_done(struct exec_job *j, int rc)
{
	struct kube_client *kc = j->kc;
	struct kube__exec_cred c;

	if (rc == 0) {
		j->pid = 0;
		rc = kube__exec_finish(kc->cfg->exec, j->status, &j->output, j->errtxt, &c,
		                       kc->exec_err, sizeof(kc->exec_err));
	} else {
		snprintf(kc->exec_err, sizeof(kc->exec_err), "exec plugin %s: %s",
		         kc->cfg->exec->command, rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
	}
	kc->job = NULL;
	job_free(j);
	if (rc) {
		log_error("kube: exec credential plugin failed", "error", kc->exec_err, NULL);
		unpark_all(kc, -EACCES);
		return;
	}
	kube__exec_cred_free(&kc->cred);
	kc->cred = c;
	free(kc->token);
	kc->token = c.token ? strdup(c.token) : NULL;
	kc->token_loaded = 1;
	unpark_all(kc, 0);
}

/* Reaps the child once both pipes are closed, polling until the deadline. */
static void job_try_reap(struct exec_job *j)
{
	pid_t r = waitpid(j->pid, &j->status, WNOHANG);

	if (r == j->pid) {
		job_done(j, 0);
		return;
	}
	if (loop_now_ms(j->kc->loop) >= j->deadline_ms) {
		job_done(j, -ETIMEDOUT);
		return;
	}
	loop_timer_start(j->kc->loop, &j->timer, 10);
}

static void job_on_timer(struct loop_timer *t)
{
	struct exec_job *j = t->arg;

	if (j->out.fd < 0 && j->err.fd < 0)
		job_try_reap(j);
	else
		job_done(j, -ETIMEDOUT);
}

static void job_on_fd(struct loop_fd *w, uint32_t events)
{
	struct exec_job *j = w->arg;
	char buf[4096];
	ssize_t r;

	(void)events;
	r = read(w->fd, buf, sizeof(buf));
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0) {
		job_close_fd(j, w);
		if (j->out.fd < 0 && j->err.fd < 0)
			job_try_reap(j);
		return;
	}
	if (w == &j->err) {
		size_t take = (size_t)r < sizeof(j->errtxt) - 1 - j->errlen
		                      ? (size_t)r
		                      : sizeof(j->errtxt) - 1 - j->errlen;

		memcpy(j->errtxt + j->errlen, buf, take);
		j->errlen += take;
		j->errtxt[j->errlen] = '\0';
		return;
	}
	if (j->output.len + (size_t)r > EXEC_MAX_OUTPUT) {
		job_done(j, -EFBIG);
		return;
	}
	if (j->output.len + (size_t)r + 1 > j->alloc) {
		char *nb = realloc(j->output.data, (j->output.len + (size_t)r + 1) * 2);

		if (!nb) {
			job_done(j, -ENOMEM);
			return;
		}
		j->output.data = nb;
		j->alloc = (j->output.len + (size_t)r + 1) * 2;
	}
	memcpy(j->output.data + j->output.len, buf, (size_t)r);
	j->output.len += (size_t)r;
	j->output.data[j->output.len] = '\0';
}

/* Starts the plugin with its pipes on the loop. */
static int job_start(struct kube_client *kc)
{
	struct exec_job *j = calloc(1, sizeof(*j));
	int rc;

	if (!j)
		return -ENOMEM;
	j->kc = kc;
	j->out.fd = j->err.fd = -1;
	loop_timer_init(&j->timer, job_on_timer, j);
	rc = kube__exec_spawn(kc->cfg->exec, kc->cfg, &j->pid, &j->out.fd, &j->err.fd);
	if (rc) {
		j->pid = 0;
		job_free(j);
		return rc;
	}
	for (struct loop_fd *w = &j->out; w; w = w == &j->out ? &j->err : NULL) {
		fcntl(w->fd, F_SETFL, fcntl(w->fd, F_GETFL) | O_NONBLOCK);
		w->events = EPOLLIN;
		w->cb = job_on_fd;
		w->arg = j;
		rc = loop_fd_start(kc->loop, w);
		if (rc) {
			job_free(j);
			return rc;
		}
	}
	loop_update_time(kc->loop);
	j->deadline_ms = loop_now_ms(kc->loop) + EXEC_TIMEOUT_MS;
	loop_timer_start(kc->loop, &j->timer, EXEC_TIMEOUT_MS);
	kc->job = j;
	return 0;
}

/* True when the exec plugin's credential can be used now. */
static int exec_cred_fresh(struct kube_client *kc)
{
	return kc->token_loaded &&
	       (!kc->cred.expires ||
	        (int64_t)kc->cred.expires - EXEC_EXPIRY_SLACK_S > loop_wall_ms() / 1000);
}

/* Parks `c` until the plugin has answered, starting it if needed. */
static int park(struct kube_call *c)
{
	struct kube_client *kc = c->kc;
	int rc = kc->job ? 0 : job_start(kc);

	if (rc) {
		snprintf(kc->exec_err, sizeof(kc->exec_err), "exec plugin %s: %s",
		         kc->cfg->exec->command, strerror(-rc));
		return rc;
	}
	c->park_next = kc->parked;
	kc->parked = c;
	c->parked = 1;
	return 0;
}

/* Runs the exec plugin synchronously when nothing is cached or the credential is about
 * to expire. Returns 0 or a negative errno (logged). */
static int refresh_exec(struct kube_client *kc)
{
	char err[512];
	struct kube__exec_cred c;
	int rc;

	if (exec_cred_fresh(kc))
		return 0;
	rc = kube__exec_run(kc->cfg->exec, kc->cfg, EXEC_TIMEOUT_MS, &c, err, sizeof(err));
	loop_update_time(kc->loop);
	if (rc) {
		log_error("kube: exec credential plugin failed", "error", err, NULL);
		return rc;
	}
	kube__exec_cred_free(&kc->cred);
	kc->cred = c;
	free(kc->token);
	kc->token = c.token ? strdup(c.token) : NULL;
	kc->token_loaded = 1;
	return 0;
}

/* The bearer token to send now, or NULL for none. */
static const char *current_token(struct kube_client *kc)
{
	if (kc->cfg->exec)
		return kc->token_loaded ? kc->token : NULL;
	if (kc->cfg->token_file) {
		if (!kc->token_loaded ||
		    loop_now_ms(kc->loop) - kc->token_read_ms >= TOKEN_REREAD_MS)
			reload_token_file(kc);
		if (kc->token)
			return kc->token;
	}
	return kc->cfg->token;
}

const char *kube__client_token(struct kube_client *kc)
{
	const char *t;

	if (kc->cfg->exec && refresh_exec(kc))
		return "";
	t = current_token(kc);

	return t ? t : "";
}

/* Applies TLS settings: verification on unless insecure, CA and client
 * certificate blobs. */
static int setup_tls(struct kube_client *kc, CURL *e)
{
	struct kube_config *cfg = kc->cfg;
	const struct kube__blob *cert = kc->cred.cert.data ? &kc->cred.cert : &cfg->client_cert;
	const struct kube__blob *key = kc->cred.key.data ? &kc->cred.key : &cfg->client_key;
	CURLcode r = CURLE_OK;

	r |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, cfg->insecure ? 0L : 1L);
	r |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, cfg->insecure ? 0L : 2L);
	if (cfg->ca.data) {
		struct curl_blob b = {cfg->ca.data, cfg->ca.len, CURL_BLOB_COPY};

		r |= curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &b);
	} else if (cfg->ca_file) {
		r |= curl_easy_setopt(e, CURLOPT_CAINFO, cfg->ca_file);
	}
	if (cert->data && key->data) {
		struct curl_blob cb = {cert->data, cert->len, CURL_BLOB_COPY};
		struct curl_blob kb = {key->data, key->len, CURL_BLOB_COPY};

		r |= curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &cb);
		r |= curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
		r |= curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &kb);
		r |= curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
	}
	return r == CURLE_OK ? 0 : -EINVAL;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct kube_call *c = ud;
	size_t n = size * nmemb;
	long status = 0;

	if (c->stream && curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK) {
		if (status == 200) {
			if (c->pausable && !c->take_one && loop_should_yield(c->kc->loop) &&
			    loop_timer_start(c->kc->loop, &c->resume, 1) == 0)
				return CURL_WRITEFUNC_PAUSE; /* this chunk comes again */
			c->take_one = 0;
			if (c->stream(c->sarg, ptr, n)) {
				c->stream_failed = 1;
				return 0;
			}
			return n;
		}
	}
	return loop_buf_curl_write(ptr, size, nmemb, &c->resp);
}

static void on_done(void *arg, CURL *easy, CURLcode rc);

static void resume_fire(struct loop_timer *t)
{
	struct kube_call *c = t->arg;

	c->take_one = 1;
	/* May call write_cb, and on_done, before it returns: nothing of `c`
	 * is touched after it. */
	if (c->easy)
		curl_easy_pause(c->easy, CURLPAUSE_CONT);
}

/* Builds the headers list: Accept, Content-Type, Authorization. */
static int build_headers(struct kube_call *c, struct curl_slist **out)
{
	struct curl_slist *h = NULL, *n;
	const char *tok = current_token(c->kc);
	char line[256];

	if (c->kc->cfg->exec && !c->kc->token_loaded)
		return -EACCES;
	n = curl_slist_append(h, "Accept: application/json");
	if (n && c->body) {
		snprintf(line, sizeof(line), "Content-Type: %s", c->content_type);
		h = n;
		n = curl_slist_append(h, line);
	}
	if (n && tok && *tok) {
		char *auth = NULL;

		h = n;
		if (asprintf(&auth, "Authorization: Bearer %s", tok) < 0)
			n = NULL;
		else
			n = curl_slist_append(h, auth);
		free(auth);
	}
	if (!n) {
		curl_slist_free_all(h);
		return -ENOMEM;
	}
	*out = n;
	return 0;
}

/* Creates and starts the easy handle for one attempt. */
static int call_start(struct kube_call *c)
{
	struct kube_client *kc = c->kc;
	char *url = NULL;
	CURLcode r = CURLE_OK;
	int rc;

	if (kc->cfg->exec && !exec_cred_fresh(kc))
		return park(c);
	if (!c->uncapped && !c->slot) {
		if (kc->inflight >= MAX_INFLIGHT) {
			c->queued = 1;
			*kc->queue_tail = c;
			kc->queue_tail = &c->queue_next;
			return 0;
		}
		c->slot = 1;
		kc->inflight++;
	}
	loop_buf_reset(&c->resp);
	c->stream_failed = 0;
	c->errbuf[0] = '\0';
	rc = build_headers(c, &c->hdrs);
	if (rc)
		return rc;
	c->easy = curl_easy_init();
	if (!c->easy || asprintf(&url, "%s%s", kc->base, c->path) < 0)
		return -ENOMEM;
	r |= curl_easy_setopt(c->easy, CURLOPT_URL, url);
	free(url);
	r |= curl_easy_setopt(c->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	r |= curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
	r |= curl_easy_setopt(c->easy, CURLOPT_USERAGENT,
	                      kc->user_agent ? kc->user_agent : USER_AGENT);
	r |= curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->hdrs);
	r |= curl_easy_setopt(c->easy, CURLOPT_ACCEPT_ENCODING, "");
	r |= curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, (long)c->opts.timeout_ms);
	r |= curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	r |= curl_easy_setopt(c->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	r |= curl_easy_setopt(c->easy, CURLOPT_TCP_KEEPIDLE, 30L);
	r |= curl_easy_setopt(c->easy, CURLOPT_TCP_KEEPINTVL, 15L);
	r |= curl_easy_setopt(c->easy, CURLOPT_ERRORBUFFER, c->errbuf);
	if (c->low_speed_s) {
		r |= curl_easy_setopt(c->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
		r |= curl_easy_setopt(c->easy, CURLOPT_LOW_SPEED_TIME, c->low_speed_s);
	}
	r |= curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, write_cb);
	r |= curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
	if (strcmp(c->method, "GET"))
		r |= curl_easy_setopt(c->easy, CURLOPT_CUSTOMREQUEST, c->method);
	if (c->body) {
		r |= curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, c->body);
		r |= curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE_LARGE,
		                      (curl_off_t)c->body_len);
	}
	if (kc->connect_to) {
		c->connect_to = curl_slist_append(NULL, kc->connect_to);
		if (!c->connect_to)
			return -ENOMEM;
		r |= curl_easy_setopt(c->easy, CURLOPT_CONNECT_TO, c->connect_to);
	}
	rc = setup_tls(kc, c->easy);
	if (r != CURLE_OK || rc)
		return rc ? rc : -EINVAL;
	rc = loop_transfer_start(kc->loop, c->easy, on_done, c);
	return rc;
}

uint32_t kube__retry_delay_ms(long retry_after_s)
{
	if (retry_after_s <= 0)
		return 0;
	if (retry_after_s > RETRY_AFTER_CAP_S)
		retry_after_s = RETRY_AFTER_CAP_S;
	return (uint32_t)retry_after_s * 1000u;
}

static int curl_to_errno(CURLcode rc, const struct kube_call *c)
{
	switch (rc) {
	case CURLE_OK:
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_WRITE_ERROR:
		return c->resp.overflow ? -EFBIG : -ECANCELED;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
		return -EHOSTUNREACH;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CACERT_BADFILE:
		return -EPROTO;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

/* Fills `r` from the finished attempt; `msg` receives the summary. */
static void fill_response(struct kube_call *c, CURLcode rc, struct kube_response *r, char *msg,
                          size_t msglen)
{
	struct json_object *v;

	if (curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &r->status) != CURLE_OK)
		r->status = 0;
	r->err = curl_to_errno(rc, c);
	r->body = c->resp.data ? c->resp.data : "";
	r->body_len = c->resp.len;
	r->json = NULL;
	if (r->body_len && (r->body[0] == '{' || r->body[0] == '['))
		r->json = json_tokener_parse(r->body);
	if (r->err)
		snprintf(msg, msglen, "%s", c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
	else if (r->json && json_object_object_get_ex(r->json, "message", &v) &&
	         json_object_is_type(v, json_type_string))
		snprintf(msg, msglen, "%ld: %s", r->status, json_object_get_string(v));
	else
		snprintf(msg, msglen, "HTTP %ld", r->status);
	r->message = msg;
}

static void retry_fire(struct loop_timer *t)
{
	struct kube_call *c = t->arg;
	int rc = c->fail_rc ? c->fail_rc : call_start(c);

	if (rc) {
		struct kube_response r = {.err = rc,
		                          .body = "",
		                          .message = rc == -EACCES && c->kc->cfg->exec
		                                             ? c->kc->exec_err
		                                             : strerror(-rc)};
		kube_done_fn done = c->done;
		void *arg = c->arg;

		call_free(c);
		done(arg, &r);
	}
}

/* Decides whether this attempt should be retried: returns the delay in ms,
 * or -1 to finish. */
static long retry_delay(struct kube_call *c, CURLcode rc, long status)
{
	curl_off_t ra = 0;

	if (status == 401 && !c->auth_retried && (c->kc->cfg->token_file || c->kc->cfg->exec)) {
		c->auth_retried = 1;
		kube__client_invalidate_auth(c->kc);
		return 0;
	}
	if (rc != CURLE_OK || c->opts.max_retries < 0 || c->attempts > c->opts.max_retries)
		return -1;
	if (status != 429 && status < 500)
		return -1;
	if (curl_easy_getinfo(c->easy, CURLINFO_RETRY_AFTER, &ra) != CURLE_OK || ra <= 0)
		return -1;
	return (long)kube__retry_delay_ms((long)ra);
}

static void on_done(void *arg, CURL *easy, CURLcode rc)
{
	struct kube_call *c = arg;
	struct kube_response r = {0};
	char msg[512];
	long status = 0, delay;

	(void)easy;
	if (curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
		status = 0;
	delay = retry_delay(c, rc, status);
	if (delay >= 0) {
		log_debug("kube: retrying request", "method", c->method, "path", c->path, NULL);
		c->attempts++;
		if (loop_timer_start(c->kc->loop, &c->retry, (uint64_t)delay) == 0) {
			call_release_easy(c);
			return;
		}
	}
	fill_response(c, rc, &r, msg, sizeof(msg));
	/* Detach first: `done` may free the client, and with it the loop. */
	call_release_easy(c);
	call_release_slot(c);
	call_unlink(c);
	c->done(c->arg, &r);
	json_object_put(r.json);
	loop_buf_free(&c->resp);
	free(c->method);
	free(c->path);
	free(c->body);
	free(c->content_type);
	free(c);
}

/* Allocates a call and links it into the client. */
static struct kube_call *call_new(struct kube_client *kc, const char *method, const char *path,
                                  const struct kube_req_opts *opts, kube_done_fn done, void *arg)
{
	struct kube_call *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->kc = kc;
	if (opts)
		c->opts = *opts;
	c->uncapped = c->opts.urgent;
	if (!c->opts.timeout_ms)
		c->opts.timeout_ms = DEFAULT_TIMEOUT_MS;
	if (!c->opts.max_body)
		c->opts.max_body = DEFAULT_MAX_BODY;
	if (!c->opts.max_retries)
		c->opts.max_retries = DEFAULT_MAX_RETRIES;
	c->resp.cap_bytes = c->opts.max_body;
	c->method = strdup(method);
	c->path = strdup(path);
	c->content_type = strdup(c->opts.content_type ? c->opts.content_type : "application/json");
	c->done = done;
	c->arg = arg;
	loop_timer_init(&c->retry, retry_fire, c);
	loop_timer_init(&c->resume, resume_fire, c);
	c->next = kc->calls;
	if (kc->calls)
		kc->calls->prev = c;
	kc->calls = c;
	if (!c->method || !c->path || !c->content_type) {
		call_free(c);
		return NULL;
	}
	return c;
}

static int call_go(struct kube_call *c, struct kube_call **out)
{
	int rc = call_start(c);

	if (rc) {
		call_free(c);
		return rc;
	}
	if (out)
		*out = c;
	return 0;
}

int kube_request_raw(struct kube_client *kc, const char *method, const char *path, const char *body,
                     size_t len, const struct kube_req_opts *opts, kube_done_fn done, void *arg,
                     struct kube_call **out)
{
	struct kube_call *c = call_new(kc, method, path, opts, done, arg);

	if (!c)
		return -ENOMEM;
	if (body) {
		c->body = malloc(len + 1);
		if (!c->body) {
			call_free(c);
			return -ENOMEM;
		}
		memcpy(c->body, body, len);
		c->body[len] = '\0';
		c->body_len = len;
	}
	return call_go(c, out);
}

int kube_request(struct kube_client *kc, const char *method, const char *path,
                 struct json_object *body, const struct kube_req_opts *opts, kube_done_fn done,
                 void *arg, struct kube_call **out)
{
	size_t len = 0;
	const char *s =
	        body ? json_object_to_json_string_length(body, JSON_C_TO_STRING_PLAIN, &len) : NULL;

	if (body && !s)
		return -ENOMEM;
	return kube_request_raw(kc, method, path, s, len, opts, done, arg, out);
}

/* Builds a streaming GET; `idle_s` nonzero aborts it after that long
 * without a byte (a watch); zero makes it a list, which yields to the
 * loop (write_cb). */
static int request_stream(struct kube_client *kc, const char *path,
                          const struct kube_req_opts *opts, long idle_s, kube__stream_fn fn,
                          void *sarg, kube_done_fn done, void *arg, struct kube_call **out)
{
	struct kube_call *c = call_new(kc, "GET", path, opts, done, arg);

	if (!c)
		return -ENOMEM;
	c->stream = fn;
	c->sarg = sarg;
	c->low_speed_s = idle_s;
	c->pausable = idle_s == 0;
	/* A watch lasts minutes: it must not hold a slot meant for requests. */
	c->uncapped |= idle_s != 0;
	return call_go(c, out);
}

int kube__request_stream(struct kube_client *kc, const char *path, uint32_t timeout_ms,
                         kube__stream_fn fn, void *sarg, kube_done_fn done, void *arg,
                         struct kube_call **out)
{
	struct kube_req_opts o = {
	        .timeout_ms = timeout_ms, .max_retries = -1, .max_body = 1u << 20};

	return request_stream(kc, path, &o, WATCH_IDLE_S, fn, sarg, done, arg, out);
}

int kube__request_stream_opts(struct kube_client *kc, const char *path,
                              const struct kube_req_opts *opts, kube__stream_fn fn, void *sarg,
                              kube_done_fn done, void *arg, struct kube_call **out)
{
	return request_stream(kc, path, opts, 0, fn, sarg, done, arg, out);
}
