/* capture/fetch.c: many captures at once on the shared curl multi.
 *
 * Captures wait in one FIFO queue until a slot is free (max_inflight) and,
 * for CPU, until no other CPU capture of the same target runs: Go's pprof
 * serves one CPU profile per process and answers a second with HTTP 500.
 * A capture blocked on its target does not block the captures behind it.
 *
 * With max_per_target set, a target also runs at most that many non-CPU
 * captures at once, so one pod is not hit by every profile type together.
 *
 * Costs, said plainly: cancelling by id and finding the next runnable job
 * are linear scans, O(queued + in flight); the in-flight set is bounded by
 * max_inflight and the queue holds at most one round of captures. What runs
 * per target is counted in a small hash table; each job holds its target's
 * entry from enqueue to end, so the scan asks O(1) per job without hashing.
 */
#include "capture/internal.h"
#include "common/common.h"
#include "loop/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_INFLIGHT   256
#define DEFAULT_BODY       ((size_t)64 << 20)
#define DEFAULT_CONNECT_MS 5000
#define DEFAULT_TIMEOUT_MS 15000
/* A body's first allocation is sized from the last body of its type, at
 * most this much, so a typical profile needs no realloc (and no copy) as
 * it arrives, and a big one does not make every later one allocate big. */
#define SIZE_HINT_MAX ((size_t)64 << 10)

enum job_state { JOB_QUEUED, JOB_RUNNING };

struct job {
	struct job *prev, *next;
	struct cap_fetcher *f;
	uint64_t id;
	enum job_state state;
	char *url, *key;
	struct tgt *tgt; /* its target's counts, held while queued or running */
	enum ppop_ptype type;
	uint32_t seconds, timeout_ms;
	cap_fetch_done_fn done;
	void *arg;
	CURL *easy;
	struct loop_buf buf;
	uint64_t enq_ms, start_ms;
	int hdr_done;          /* the reply's header block has ended */
	int over_budget;       /* a write would have passed max_inflight_bytes */
	size_t budget_held_by; /* then: bytes the other captures held */
	char errbuf[CURL_ERROR_SIZE];
	char msg[320];
	char strs[]; /* url and key, in the same allocation */
};

/* A doubly linked list with head and tail. */
struct jlist {
	struct job *head, *tail;
	size_t n;
};

/* What runs now against one target key, and how many jobs wait for it.
 * Freed when all three counts are 0. */
struct tgt {
	struct tgt *next;
	unsigned cpu, other, queued;
	char key[];
};

#define TGT_BUCKETS 1024

struct cap_fetcher {
	struct loop *loop;
	struct cap_fetcher_opts o;
	char *user_agent;
	struct jlist queue, running;
	struct tgt *tgts[TGT_BUCKETS];
	uint64_t next_id;
	int dispatching;
	size_t inflight_bytes; /* the sum of buf.len over running jobs */
	struct cap_pprof_checker *checker;
	struct cap__easy_pool easy_pool;
	size_t size_hint[PPOP_PT__COUNT]; /* first allocation of a body, by type */
	struct cap_fetcher_stats st;
};

static void jlist_push(struct jlist *l, struct job *j)
{
	j->next = NULL;
	j->prev = l->tail;
	if (l->tail)
		l->tail->next = j;
	else
		l->head = j;
	l->tail = j;
	l->n++;
}

static void jlist_del(struct jlist *l, struct job *j)
{
	if (j->prev)
		j->prev->next = j->next;
	else
		l->head = j->next;
	if (j->next)
		j->next->prev = j->prev;
	else
		l->tail = j->prev;
	j->prev = j->next = NULL;
	l->n--;
}

static void job_free(struct job *j)
{
	cap__easy_put(&j->f->easy_pool, j->easy);
	loop_buf_free(&j->buf);
	free(j);
}

/* Hands the result to the caller and frees the job, which is on no list. */
static void job_finish(struct job *j, enum cap_result res, long status)
{
	struct cap_fetcher *f = j->f;
	struct cap_fetch_result r = {
	        .res = res,
	        .http_status = status,
	        .message = j->msg,
	        .body = j->buf.data,
	        .body_len = j->buf.len,
	        .id = j->id,
	};
	uint64_t now = loop_now_ms(f->loop);
	r.queued_ms = (j->start_ms ? j->start_ms : now) - j->enq_ms;
	r.elapsed_ms = j->start_ms ? now - j->start_ms : 0;
	f->st.finished[res]++;
	j->done(j->arg, &r);
	/* The callback may have taken the body. */
	j->buf.data = r.body;
	j->buf.len = r.body_len;
	job_free(j);
}

static struct tgt **tgt_slot(struct cap_fetcher *f, const char *key)
{
	uint64_t h = ppop_fnv1a_str(PPOP_FNV1A_INIT, key);
	struct tgt **pp;

	for (pp = &f->tgts[h % TGT_BUCKETS]; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->key, key) == 0)
			break;
	return pp;
}

/* The counts for `key`, created at zero when `create` is set; NULL when
 * absent (or out of memory). */
static struct tgt *tgt_get(struct cap_fetcher *f, const char *key, int create)
{
	struct tgt **pp = tgt_slot(f, key);
	size_t n;

	if (*pp || !create)
		return *pp;
	n = strlen(key);
	*pp = calloc(1, sizeof(**pp) + n + 1);
	if (*pp)
		memcpy((*pp)->key, key, n + 1);
	return *pp;
}

/* Frees `t` when no job runs or waits for it. */
static void tgt_put(struct cap_fetcher *f, struct tgt *t)
{
	struct tgt **pp;

	if (t->cpu != 0 || t->other != 0 || t->queued != 0)
		return;
	for (pp = tgt_slot(f, t->key); *pp && *pp != t; pp = &(*pp)->next)
		;
	if (*pp == t) {
		*pp = t->next;
		free(t);
	}
}

/* Counts the running `j` out of its target and lets go of the entry. */
static void tgt_leave(struct cap_fetcher *f, struct job *j)
{
	struct tgt *t = j->tgt;

	if (t == NULL)
		return;
	j->tgt = NULL;
	if (j->type == PPOP_PT_CPU && t->cpu > 0)
		t->cpu--;
	else if (j->type != PPOP_PT_CPU && t->other > 0)
		t->other--;
	tgt_put(f, t);
}

/* Lets go of the entry of `j`, which was queued and never ran. */
static void tgt_unqueue(struct cap_fetcher *f, struct job *j)
{
	struct tgt *t = j->tgt;

	if (t == NULL)
		return;
	j->tgt = NULL;
	if (t->queued > 0)
		t->queued--;
	tgt_put(f, t);
}

/* True when `j` must wait for its target: a CPU capture already runs on
 * it (Go serves one per process), or max_per_target others do. */
static int target_busy(struct cap_fetcher *f, const struct job *j)
{
	const struct tgt *t = j->tgt;

	if (j->type == PPOP_PT_CPU)
		return t->cpu > 0;
	return f->o.max_per_target > 0 && t->other >= f->o.max_per_target;
}

static void on_done(void *arg, CURL *easy, CURLcode rc);

/* The CURLOPT_WRITEFUNCTION of a capture: appends to its capped buffer
 * within the fetcher's budget. Returning short makes curl fail the
 * transfer with CURLE_WRITE_ERROR; the job's flags tell why. */
static size_t job_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct job *j = userdata;
	struct cap_fetcher *f = j->f;
	size_t n = size * nmemb;

	/* Past its own cap it is the pod's fault (TOO_LARGE), not the budget's. */
	if (j->buf.len + n <= j->buf.cap_bytes && n > f->o.max_inflight_bytes - f->inflight_bytes) {
		j->over_budget = 1;
		j->budget_held_by = f->inflight_bytes - j->buf.len;
		return 0;
	}
	if (j->buf.data == NULL && f->size_hint[j->type] > n + 1) {
		/* loop_buf_append() grows from here if the body is bigger. */
		j->buf.data = malloc(f->size_hint[j->type]);
		if (j->buf.data != NULL)
			j->buf.alloc = f->size_hint[j->type];
	}
	if (loop_buf_append(&j->buf, ptr, n) != 0)
		return 0;
	f->inflight_bytes += n;
	if (f->inflight_bytes > f->st.inflight_bytes_peak)
		f->st.inflight_bytes_peak = f->inflight_bytes;
	return n;
}

/* Takes a job off the running list and its bytes off the budget. */
static void job_stop_running(struct cap_fetcher *f, struct job *j)
{
	jlist_del(&f->running, j);
	tgt_leave(f, j);
	f->inflight_bytes -= j->buf.len;
}

/* Starts the transfer of a job taken off the queue. */
static int job_begin(struct cap_fetcher *f, struct job *j)
{
	uint64_t total = j->timeout_ms;
	if (j->type == PPOP_PT_CPU)
		total += (uint64_t)j->seconds * 1000;
	struct tgt *t = j->tgt;
	j->easy = cap__easy_get(&f->easy_pool);
	if (j->easy == NULL)
		return -ENOMEM;
	int rc = cap__easy_setup(j->easy, j->url, f->o.connect_timeout_ms, total, &j->buf,
	                         j->errbuf, f->user_agent, &j->hdr_done);
	if (rc == 0 && (curl_easy_setopt(j->easy, CURLOPT_WRITEFUNCTION, job_write) != CURLE_OK ||
	                curl_easy_setopt(j->easy, CURLOPT_WRITEDATA, j) != CURLE_OK))
		rc = -EINVAL;
	if (rc == 0 && f->o.insecure_tls &&
	    (curl_easy_setopt(j->easy, CURLOPT_SSL_VERIFYPEER, 0L) != CURLE_OK ||
	     curl_easy_setopt(j->easy, CURLOPT_SSL_VERIFYHOST, 0L) != CURLE_OK))
		rc = -EINVAL;
	if (rc == 0)
		rc = loop_transfer_start(f->loop, j->easy, on_done, j);
	if (rc < 0)
		return rc;
	j->state = JOB_RUNNING;
	j->start_ms = loop_now_ms(f->loop);
	jlist_push(&f->running, j);
	t->queued--;
	if (j->type == PPOP_PT_CPU)
		t->cpu++;
	else
		t->other++;
	f->st.started++;
	return 0;
}

/* Starts queued jobs, oldest first, while slots are free. Re-entrant calls
 * (from a callback run here) return at once; the outer call continues. */
static void dispatch(struct cap_fetcher *f)
{
	if (f->dispatching)
		return;
	f->dispatching = 1;
	struct job *j = f->queue.head;
	while (j != NULL && f->running.n < f->o.max_inflight) {
		struct job *next = j->next;
		if (target_busy(f, j)) {
			j = next;
			continue;
		}
		jlist_del(&f->queue, j);
		int rc = job_begin(f, j);
		if (rc < 0) {
			tgt_unqueue(f, j);
			snprintf(j->msg, sizeof(j->msg), "cannot start transfer: %s",
			         strerror(-rc));
			job_finish(j, CAP_RES_INTERNAL, 0);
			/* The callback may have cancelled `next`: restart. */
			next = f->queue.head;
		}
		j = next;
	}
	f->dispatching = 0;
}

/* Judges a complete 2xx reply. */
static enum cap_result judge_body(struct job *j)
{
	switch (cap_pprof_checker_run(j->f->checker, j->buf.data, j->buf.len)) {
	case CAP_PPROF_HAS_SAMPLES:
		return CAP_RES_OK;
	case CAP_PPROF_EMPTY:
		snprintf(j->msg, sizeof(j->msg), "empty %s profile (0 samples)",
		         ppop_ptype_name(j->type));
		return CAP_RES_EMPTY;
	default:
		snprintf(j->msg, sizeof(j->msg), "not a pprof profile (%zu bytes)", j->buf.len);
		return CAP_RES_NOT_PROFILE;
	}
}

static void on_done(void *arg, CURL *easy, CURLcode rc)
{
	struct job *j = arg;
	struct cap_fetcher *f = j->f;
	long status = 0;
	char line[200];
	(void)curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	job_stop_running(f, j);
	f->st.bytes += j->buf.len;
	enum cap_result res = cap__classify(rc, &j->buf);
	if (rc == CURLE_WRITE_ERROR && j->over_budget) {
		/* Said from the operator's side: its limit, not the pod's. */
		snprintf(j->msg, sizeof(j->msg),
		         "over the memory budget of %zu bytes for all captures in flight "
		         "(%zu held by this capture, %zu by others)",
		         f->o.max_inflight_bytes, j->buf.len, j->budget_held_by);
		res = CAP_RES_OVER_BUDGET;
		f->st.budget_refusals++;
	} else if (cap__header_overflow(rc, j->hdr_done)) {
		/* The pod's fault, not the operator's memory. */
		snprintf(j->msg, sizeof(j->msg), "response header from the pod exceeds %d bytes",
		         CURL_MAX_HTTP_HEADER);
		res = CAP_RES_TOO_LARGE;
	} else if (res == CAP_RES_OK && (status < 200 || status > 299)) {
		cap__first_line(j->buf.data, j->buf.len, line, sizeof(line));
		snprintf(j->msg, sizeof(j->msg), "HTTP %ld: %s", status, line);
		res = CAP_RES_HTTP;
	} else if (res == CAP_RES_OK) {
		res = judge_body(j);
		size_t hint = j->buf.len + j->buf.len / 4 + 1;
		if (hint > SIZE_HINT_MAX)
			hint = SIZE_HINT_MAX;
		f->size_hint[j->type] = hint < j->buf.cap_bytes + 1 ? hint : j->buf.cap_bytes + 1;
	} else if (res == CAP_RES_TOO_LARGE) {
		snprintf(j->msg, sizeof(j->msg), "body larger than %zu bytes", f->o.max_body_bytes);
	} else if (res == CAP_RES_TIMEOUT) {
		snprintf(j->msg, sizeof(j->msg), "timed out after %llu ms: %s",
		         (unsigned long long)(loop_now_ms(f->loop) - j->start_ms),
		         j->errbuf[0] ? j->errbuf : curl_easy_strerror(rc));
	} else {
		snprintf(j->msg, sizeof(j->msg), "%s",
		         j->errbuf[0] ? j->errbuf : curl_easy_strerror(rc));
	}
	if (res != CAP_RES_OK && res != CAP_RES_EMPTY) {
		/* A failed capture's partial body is of no use to anyone. */
		loop_buf_free(&j->buf);
	}
	/* Free the slot before the callback, so the callback's own new
	 * captures and the queue both see it. */
	dispatch(f);
	job_finish(j, res, status);
	dispatch(f);
}

int cap_fetcher_new(struct loop *l, const struct cap_fetcher_opts *o, struct cap_fetcher **out)
{
	struct cap_fetcher *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -ENOMEM;
	f->loop = l;
	if (o != NULL)
		f->o = *o;
	if (f->o.max_inflight == 0)
		f->o.max_inflight = DEFAULT_INFLIGHT;
	if (f->o.max_body_bytes == 0)
		f->o.max_body_bytes = DEFAULT_BODY;
	if (f->o.max_inflight_bytes == 0)
		f->o.max_inflight_bytes = 2 * f->o.max_body_bytes;
	if (f->o.max_inflight_bytes < f->o.max_body_bytes) {
		free(f);
		return -EINVAL;
	}
	if (f->o.connect_timeout_ms == 0)
		f->o.connect_timeout_ms = DEFAULT_CONNECT_MS;
	f->user_agent = strdup(f->o.user_agent ? f->o.user_agent : cap_user_agent());
	if (f->user_agent == NULL || cap_pprof_checker_new(&f->checker) < 0) {
		free(f->user_agent);
		free(f);
		return -ENOMEM;
	}
	f->o.user_agent = f->user_agent;
	f->next_id = 1;
	*out = f;
	return 0;
}

/* Takes `j` off its list and ends it as cancelled. */
static void job_cancel(struct cap_fetcher *f, struct job *j)
{
	if (j->state == JOB_RUNNING) {
		job_stop_running(f, j);
		loop_transfer_cancel(f->loop, j->easy);
	} else {
		jlist_del(&f->queue, j);
		tgt_unqueue(f, j);
	}
	loop_buf_free(&j->buf);
	snprintf(j->msg, sizeof(j->msg), "cancelled");
	job_finish(j, CAP_RES_CANCELLED, 0);
}

void cap_fetcher_free(struct cap_fetcher *f)
{
	if (f == NULL)
		return;
	f->dispatching = 1; /* nothing new starts while we tear down */
	while (f->running.head)
		job_cancel(f, f->running.head);
	while (f->queue.head)
		job_cancel(f, f->queue.head);
	for (size_t i = 0; i < TGT_BUCKETS; i++) /* none should be left; be safe */
		while (f->tgts[i]) {
			struct tgt *t = f->tgts[i];
			f->tgts[i] = t->next;
			free(t);
		}
	cap__easy_pool_drain(&f->easy_pool);
	cap_pprof_checker_free(f->checker);
	free(f->user_agent);
	free(f);
}

int cap_fetch_start(struct cap_fetcher *f, const struct cap_request *req, cap_fetch_done_fn done,
                    void *arg, uint64_t *id)
{
	if (f == NULL || req == NULL || req->url == NULL || done == NULL ||
	    (unsigned)req->type >= PPOP_PT__COUNT)
		return -EINVAL;
	const char *key = req->target_key ? req->target_key : req->url;
	size_t ul = strlen(req->url) + 1, kl = strlen(key) + 1;
	struct job *j = calloc(1, sizeof(*j) + ul + kl);
	if (j == NULL)
		return -ENOMEM;
	j->url = memcpy(j->strs, req->url, ul);
	j->key = memcpy(j->strs + ul, key, kl);
	j->tgt = tgt_get(f, key, 1);
	if (j->tgt == NULL) {
		free(j);
		return -ENOMEM;
	}
	j->tgt->queued++;
	j->f = f;
	j->id = f->next_id++;
	j->type = req->type;
	j->seconds = req->seconds;
	j->timeout_ms = req->timeout_ms ? req->timeout_ms : DEFAULT_TIMEOUT_MS;
	j->done = done;
	j->arg = arg;
	j->buf.cap_bytes = f->o.max_body_bytes;
	j->enq_ms = loop_now_ms(f->loop);
	j->state = JOB_QUEUED;
	jlist_push(&f->queue, j);
	if (id != NULL)
		*id = j->id;
	dispatch(f);
	return 0;
}

static struct job *find(struct jlist *l, uint64_t id)
{
	for (struct job *j = l->head; j; j = j->next)
		if (j->id == id)
			return j;
	return NULL;
}

int cap_fetch_cancel(struct cap_fetcher *f, uint64_t id)
{
	struct job *j = find(&f->running, id);
	if (j == NULL)
		j = find(&f->queue, id);
	if (j == NULL)
		return -ENOENT;
	job_cancel(f, j);
	dispatch(f);
	return 0;
}

char *cap_fetch_take_body(struct cap_fetch_result *r, size_t *len)
{
	char *b = r->body;
	if (len != NULL)
		*len = b ? r->body_len : 0;
	r->body = NULL;
	r->body_len = 0;
	return b;
}

void cap_fetcher_stats(const struct cap_fetcher *f, struct cap_fetcher_stats *out)
{
	*out = f->st;
	out->inflight_bytes = f->inflight_bytes;
	out->inflight = f->running.n;
	out->queued = f->queue.n;
}
