/* capture/pusher.c: delivery to profefe that survives outages and restarts.
 *
 * While profefe answers, profiles go straight from memory to profefe: the
 * hot path never touches the disk. The first retryable failure (refused,
 * timeout, a broken reply, 5xx, 408, 429) spools that profile, marks
 * profefe down and arms a backoff timer; from then on new profiles go to the
 * spool's tail, so the order is kept. When the timer fires one spooled
 * profile is tried as a probe. profefe stays marked down while the probe
 * runs: only an answer from profefe (a success, or a 4xx, which is its
 * final word on that profile and is reported, not retried) clears the mark,
 * resets the backoff and replays the spool, oldest first, a few at a time.
 *
 * Results reach the caller only from the loop, through a queue drained by
 * a zero-delay timer: a drop or failure found inside a call into the
 * pusher (a submit that overflows the spool) is reported after that call
 * has returned, so the caller has counted the submission by then.
 *
 * Delivery is at least once: a push that profefe stored but whose reply was
 * lost (our timeout) is sent again. Refused connections, the common case of
 * an outage, never cause duplicates.
 */
#include "capture/profefe.h"
#include "loop/log.h"
#include "loop/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_BASE_MS  500
#define DEFAULT_MAX_MS   30000
#define DEFAULT_INFLIGHT 32
#define DEFAULT_REPLAY   4

struct push {
	struct push *prev, *next;
	struct cap_pusher *p;
	struct cap_spool_entry *e; /* a replay: the checked-out entry */
	uint64_t seq;              /* a direct push: its place in the spool's order */
	/* A direct push owns its copy of the metadata and body. */
	struct cap_push_meta meta;
	char *strs[5];
	char *body;
	size_t len;
};

/* A result waiting for the loop, with its own copies of everything. */
struct pres {
	struct pres *next;
	struct cap_push_meta meta;
	char *strs[5];
	enum cap_result res;
	long http_status;
	char *message, *id;
};

struct cap_pusher {
	struct loop *loop;
	struct cap_profefe *c;
	struct cap_pusher_opts o;
	cap_pusher_result_fn fn;
	void *arg;
	struct cap_spool *spool;
	struct push *head;
	size_t n_direct, n_replay;
	struct loop_timer timer;
	struct loop_backoff bo;
	struct pres *res_head, **res_tail; /* results not yet reported */
	struct loop_timer res_timer;
	int mem_spool; /* the spool is in memory: free() would lose it */
	int flushing;  /* cap_pusher_flush() waits */
	uint64_t flush_deadline_ms;
	struct loop_timer flush_timer;
	cap_pusher_flush_fn flush_fn;
	void *flush_arg;
	int down;    /* profefe failed and has not answered since */
	int probing; /* while down: the timer fired, one probe may run */
	int freeing;
	uint64_t retries, delivered, rejected;
};

static void pump(struct cap_pusher *p);
static void flush_poll(struct cap_pusher *p);

/* Copies `m` into `dst`, its strings into one allocation held in strs[0]
 * (strs[1..4] stay NULL; the caller frees all five, also on failure), so a
 * profile's metadata costs one malloc, not five. Returns 0 or -ENOMEM. */
static int meta_copy(struct cap_push_meta *dst, char *strs[5], const struct cap_push_meta *m)
{
	const char *src[5] = {m->service, m->type, m->labels, m->instance_id, m->origin};
	const char *out[5] = {NULL};
	size_t len[5], total = 0;
	for (int i = 0; i < 5; i++) {
		len[i] = src[i] != NULL ? strlen(src[i]) + 1 : 0;
		total += len[i];
	}
	char *p = strs[0] = malloc(total ? total : 1);
	if (p == NULL)
		return -ENOMEM;
	for (int i = 0; i < 5; i++) {
		if (src[i] == NULL)
			continue;
		out[i] = memcpy(p, src[i], len[i]);
		p += len[i];
	}
	*dst = (struct cap_push_meta){out[0], out[1], out[2], out[3], out[4], m->created_ms};
	return 0;
}

static void pres_free(struct pres *x)
{
	if (x == NULL)
		return;
	for (int i = 0; i < 5; i++)
		free(x->strs[i]);
	free(x->message);
	free(x->id);
	free(x);
}

/* Reports the results queued so far, oldest first. Those the callbacks
 * cause wait for the next turn. */
static void deliver(struct cap_pusher *p)
{
	struct pres *x = p->res_head;
	p->res_head = NULL;
	p->res_tail = &p->res_head;
	while (x != NULL) {
		struct pres *next = x->next;
		if (p->fn)
			p->fn(p->arg, &x->meta, x->res, x->http_status, x->message, x->id);
		pres_free(x);
		x = next;
	}
}

/* Reports queued results; also resumes replays after a flush. */
static void on_res_timer(struct loop_timer *t)
{
	struct cap_pusher *p = t->arg;
	deliver(p);
	pump(p);
	flush_poll(p);
}

/* Queues a result for the loop; the callback never runs from here. */
static void report_later(struct cap_pusher *p, const struct cap_push_meta *m, enum cap_result res,
                         long http_status, const char *message, const char *id)
{
	struct pres *x = calloc(1, sizeof(*x));
	if (x == NULL || meta_copy(&x->meta, x->strs, m) < 0 ||
	    (message != NULL && (x->message = strdup(message)) == NULL) ||
	    (id != NULL && (x->id = strdup(id)) == NULL)) {
		log_error("out of memory: a delivery result is lost", "origin", m->origin, "result",
		          cap_result_name(res), NULL);
		pres_free(x);
		return;
	}
	x->res = res;
	x->http_status = http_status;
	*p->res_tail = x;
	p->res_tail = &x->next;
	/* When the timer cannot start, the next result or free() tries again. */
	if (!p->freeing && !loop_timer_active(&p->res_timer) &&
	    loop_timer_start(p->loop, &p->res_timer, 0) < 0)
		log_error("cannot arm the delivery result timer", NULL);
}

static void on_drop(void *arg, const struct cap_push_meta *m, uint64_t seq)
{
	struct cap_pusher *p = arg;
	(void)seq;
	log_warn("spool full: dropped the oldest profile", "service", m->service, "type", m->type,
	         "origin", m->origin, NULL);
	report_later(p, m, CAP_RES_DROPPED, 0, "dropped from a full spool", NULL);
}

static void push_link(struct cap_pusher *p, struct push *x)
{
	x->p = p;
	x->prev = NULL;
	x->next = p->head;
	if (p->head)
		p->head->prev = x;
	p->head = x;
	if (x->e)
		p->n_replay++;
	else
		p->n_direct++;
}

static void push_unlink(struct cap_pusher *p, struct push *x)
{
	if (x->prev)
		x->prev->next = x->next;
	else
		p->head = x->next;
	if (x->next)
		x->next->prev = x->prev;
	if (x->e)
		p->n_replay--;
	else
		p->n_direct--;
}

static void push_free(struct push *x)
{
	for (size_t i = 0; i < sizeof(x->strs) / sizeof(x->strs[0]); i++)
		free(x->strs[i]);
	free(x->body);
	free(x);
}

/* True for outcomes worth another try later. */
static int retryable(const struct cap_profefe_reply *r)
{
	switch (r->res) {
	case CAP_RES_REFUSED:
	case CAP_RES_TIMEOUT:
	case CAP_RES_TRANSPORT:
	case CAP_RES_INTERNAL:
		return 1;
	case CAP_RES_HTTP:
		return r->http_status >= 500 || r->http_status == 408 || r->http_status == 429;
	default:
		return 0;
	}
}

/* The backoff has passed: allow one probe. profefe stays marked down
 * until the probe (or any push) gets an answer. */
static void on_timer(struct loop_timer *t)
{
	struct cap_pusher *p = t->arg;
	if (!p->down)
		return;
	p->probing = 1;
	pump(p);
}

/* Marks profefe down and arms the retry timer, once per outage step. */
static void mark_down(struct cap_pusher *p, const struct cap_profefe_reply *r)
{
	p->probing = 0;
	if (p->down && loop_timer_active(&p->timer))
		return;
	p->down = 1;
	uint32_t delay = loop_backoff_next(&p->bo);
	char ms[16];
	snprintf(ms, sizeof(ms), "%u", delay);
	log_warn("profefe unavailable, spooling", "result", cap_result_name(r->res), "error",
	         r->message, "retry_ms", ms, NULL);
	if (loop_timer_start(p->loop, &p->timer, delay) < 0)
		p->probing = 1; /* no timer: the next submit probes instead */
}

/* profefe answered (stored a profile, or refused one for good): it is up. */
static void on_up(struct cap_pusher *p)
{
	if (p->down)
		log_info("profefe answers again, replaying the spool", NULL);
	p->down = 0;
	p->probing = 0;
	loop_timer_stop(p->loop, &p->timer);
	loop_backoff_reset(&p->bo);
}

static void report(struct cap_pusher *p, const struct cap_push_meta *m,
                   const struct cap_profefe_reply *r)
{
	if (r->res == CAP_RES_OK)
		p->delivered++;
	else if (r->res == CAP_RES_HTTP)
		p->rejected++;
	report_later(p, m, r->res, r->http_status, r->message, r->id);
}

static void on_push_done(void *arg, struct cap_profefe_reply *r)
{
	struct push *x = arg;
	struct cap_pusher *p = x->p;
	push_unlink(p, x);
	if (r->res == CAP_RES_CANCELLED || retryable(r)) {
		if (x->e != NULL) {
			cap_spool_release(p->spool, x->e);
		} else {
			/* The spool takes the body, also when it fails. */
			int rc = cap_spool_put_take(p->spool, x->seq, &x->meta, x->body, x->len);
			x->body = NULL;
			if (rc < 0) {
				log_error("cannot spool a profile: lost", "service",
				          x->meta.service, "origin", x->meta.origin, NULL);
				struct cap_profefe_reply lost = *r;
				lost.res = CAP_RES_DROPPED;
				lost.message = "could not be written to the spool";
				report(p, &x->meta, &lost);
			}
		}
		if (r->res != CAP_RES_CANCELLED)
			mark_down(p, r);
	} else {
		on_up(p);
		if (r->res != CAP_RES_OK)
			log_warn("profefe refused a profile", "status", r->message, "service",
			         x->e ? x->e->meta.service : x->meta.service, NULL);
		report(p, x->e ? &x->e->meta : &x->meta, r);
		if (x->e != NULL)
			cap_spool_ack(p->spool, x->e);
	}
	push_free(x);
	if (!p->freeing) {
		pump(p);
		flush_poll(p);
	}
}

/* Starts replays, oldest first, while profefe is up and slots are free;
 * while it is down, only the one probe the timer allowed. */
static void pump(struct cap_pusher *p)
{
	/* A flush leaves an on-disk spool for the next run. */
	if (p->flushing && !p->mem_spool)
		return;
	while (!p->freeing && (!p->down || p->probing)) {
		size_t cap = p->down ? 1 : p->o.replay_inflight;
		struct cap_spool_entry *e;
		if (p->n_replay >= cap)
			return;
		int rc = cap_spool_checkout(p->spool, &e);
		if (rc == -ENOENT)
			return;
		if (rc < 0)
			continue; /* the spool dropped the unreadable entry */
		struct push *x = calloc(1, sizeof(*x));
		if (x == NULL) {
			cap_spool_release(p->spool, e);
			return;
		}
		x->e = e;
		push_link(p, x);
		p->retries++;
		rc = cap_profefe_push(p->c, &e->meta, e->body, e->len, on_push_done, x);
		if (rc < 0) {
			push_unlink(p, x);
			cap_spool_release(p->spool, e);
			free(x);
			return;
		}
	}
}

/* Ends a flush when the pusher is flushed or the deadline has passed;
 * otherwise waits for the deadline (or an earlier poll). */
static void on_flush_timer(struct loop_timer *t)
{
	struct cap_pusher *p = t->arg;
	int flushed = cap_pusher_flushed(p);
	uint64_t now = loop_now_ms(p->loop);
	if (!flushed && now < p->flush_deadline_ms) {
		if (loop_timer_start(p->loop, &p->flush_timer, p->flush_deadline_ms - now) == 0)
			return;
	}
	p->flushing = 0;
	/* Replays held back by the flush resume on the next turn, unless the
	 * callback, the last thing here, frees the pusher. */
	(void)loop_timer_start(p->loop, &p->res_timer, 0);
	p->flush_fn(p->flush_arg, flushed);
}

/* During a flush, ends it on a turn of its own once the pusher is flushed. */
static void flush_poll(struct cap_pusher *p)
{
	if (p->flushing && !p->freeing && cap_pusher_flushed(p))
		(void)loop_timer_start(p->loop, &p->flush_timer, 0);
}

int cap_pusher_flush(struct cap_pusher *p, uint32_t timeout_ms, cap_pusher_flush_fn fn, void *arg)
{
	if (fn == NULL)
		return -EINVAL;
	if (p->flushing)
		return -EBUSY;
	p->flush_deadline_ms = loop_now_ms(p->loop) + timeout_ms;
	int rc = loop_timer_start(p->loop, &p->flush_timer,
	                          cap_pusher_flushed(p) ? 0 : (uint64_t)timeout_ms);
	if (rc < 0)
		return rc;
	p->flushing = 1;
	p->flush_fn = fn;
	p->flush_arg = arg;
	return 0;
}

int cap_pusher_flushed(const struct cap_pusher *p)
{
	struct cap_spool_stats ss;
	cap_spool_stats(p->spool, &ss);
	return p->head == NULL && p->res_head == NULL && (!p->mem_spool || ss.files == 0);
}

int cap_pusher_new(struct loop *l, struct cap_profefe *c, const struct cap_pusher_opts *o,
                   cap_pusher_result_fn fn, void *arg, struct cap_pusher **out)
{
	struct cap_pusher *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	if (o != NULL)
		p->o = *o;
	if (p->o.max_inflight == 0)
		p->o.max_inflight = DEFAULT_INFLIGHT;
	if (p->o.replay_inflight == 0)
		p->o.replay_inflight = DEFAULT_REPLAY;
	p->bo.base_ms = p->o.backoff_base_ms ? p->o.backoff_base_ms : DEFAULT_BASE_MS;
	p->bo.max_ms = p->o.backoff_max_ms ? p->o.backoff_max_ms : DEFAULT_MAX_MS;
	p->loop = l;
	p->c = c;
	p->fn = fn;
	p->arg = arg;
	p->o.spool_dir = NULL; /* lent only for the open below */
	loop_timer_init(&p->timer, on_timer, p);
	loop_timer_init(&p->res_timer, on_res_timer, p);
	loop_timer_init(&p->flush_timer, on_flush_timer, p);
	p->mem_spool = o == NULL || o->spool_dir == NULL;
	p->res_tail = &p->res_head;
	int rc = cap_spool_open(o ? o->spool_dir : NULL, p->o.spool_max_bytes, on_drop, p,
	                        &p->spool);
	if (rc < 0) {
		free(p);
		return rc;
	}
	cap_spool_share(p->spool, o ? o->spool_budget : NULL);
	p->o.spool_budget = NULL; /* lent to the spool */
	*out = p;
	pump(p); /* what an earlier run left behind */
	return 0;
}

void cap_pusher_free(struct cap_pusher *p)
{
	if (p == NULL)
		return;
	p->freeing = 1;
	loop_timer_stop(p->loop, &p->timer);
	loop_timer_stop(p->loop, &p->flush_timer);
	/* Each cancel spools a direct push or releases a replay. */
	while (p->head != NULL)
		if (cap_profefe_cancel_arg(p->c, p->head) == 0)
			break;
	cap_spool_close(p->spool);
	/* What was found on the way out, or not reported yet, is final:
	 * report it now rather than lose it. */
	loop_timer_stop(p->loop, &p->res_timer);
	deliver(p);
	free(p);
}

int cap_pusher_submit_take(struct cap_pusher *p, const struct cap_push_meta *m, char *body,
                           size_t len)
{
	struct cap_spool_stats ss;
	int rc;
	if (m == NULL || m->service == NULL || m->type == NULL || body == NULL) {
		free(body);
		return -EINVAL;
	}
	cap_spool_stats(p->spool, &ss);
	if (p->down || ss.files > 0 || p->n_direct >= p->o.max_inflight) {
		/* Keep the order: behind what already waits. The spool takes
		 * the body. */
		rc = cap_spool_put_take(p->spool, cap_spool_reserve(p->spool), m, body, len);
		pump(p);
		return rc;
	}
	struct push *x = calloc(1, sizeof(*x));
	if (x == NULL || meta_copy(&x->meta, x->strs, m) < 0) {
		rc = -ENOMEM;
		goto out_free;
	}
	x->body = body;
	x->len = len;
	x->seq = cap_spool_reserve(p->spool);
	body = NULL;
	push_link(p, x);
	rc = cap_profefe_push(p->c, &x->meta, x->body, x->len, on_push_done, x);
	if (rc < 0) {
		push_unlink(p, x);
		rc = cap_spool_put_take(p->spool, x->seq, m, x->body, x->len);
		x->body = NULL;
		goto out_free;
	}
	return 0;
out_free:
	if (x != NULL)
		push_free(x);
	free(body);
	return rc;
}

void cap_pusher_stats(const struct cap_pusher *p, struct cap_pusher_stats *out)
{
	struct cap_spool_stats ss;
	cap_spool_stats(p->spool, &ss);
	*out = (struct cap_pusher_stats){
	        .spool_bytes = ss.bytes,
	        .spool_files = ss.files,
	        .drops = ss.drops,
	        .retries = p->retries,
	        .delivered = p->delivered,
	        .rejected = p->rejected,
	        .inflight = p->n_direct + p->n_replay,
	        .profefe_down = p->down,
	};
}

int cap_pusher_idle(const struct cap_pusher *p)
{
	struct cap_spool_stats ss;
	cap_spool_stats(p->spool, &ss);
	return p->head == NULL && ss.files == 0 && p->res_head == NULL;
}
