/* loop/loop.c: epoll + curl_multi_socket_action + a timer heap.
 *
 * curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when
 * it next wants to be called (CURLMOPT_TIMERFUNCTION); we keep those in
 * epoll and in our own timer heap next to the callers' timers, so one
 * epoll_wait() drives everything.
 */
#include "loop/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* What we register in epoll: a curl socket is stored as (fd << 1) | 1 in
 * epoll_event.data.u64, a caller's loop_fd as its (even) address. Curl
 * sockets carry no pointer because curl may close one while its event is
 * still pending in the batch we are dispatching. */
#define CURL_SOCK_TAG 1u

/* What epoll holds for a curl socket, by fd (l->socks). A socket curl stops
 * watching while it waits for input (a connection going back to curl's
 * cache after its reply) is left in epoll, "parked", instead of deleted:
 * the next transfer on that connection then costs one EPOLL_CTL_MOD, not
 * an ADD and a DEL. An event on a parked socket (the peer closed it while
 * idle) deletes it then, so it cannot wake the loop again. curl may close
 * a parked socket, which takes it out of epoll, and its number may come
 * back as a new socket: a MOD that finds nothing falls back to ADD. */
enum { SOCK_NONE, SOCK_WATCHED, SOCK_PARKED };

/* Idle connections curl's cache keeps for reuse. curl's default is four
 * per transfer running at the moment one ends, so the cache shrank after
 * every burst and the next burst connected again: in the bench's heap
 * window about 0.18 new connections per profile, nearly all to profefe.
 * A fixed cap keeps a burst's connections (profefe's pushes run up to
 * 32 + 32 at once) while bounding the idle sockets; curl still closes one
 * idle for more than CURLOPT_MAXAGE_CONN (118 s) before reusing it. */
#define LOOP_MAX_IDLE_CONNS 64L

/* One running transfer. The loop keeps them on a list so loop_free() can
 * detach every one (curl 7.88 has no curl_multi_get_handles()). */
struct xfer {
	loop_done_fn done;
	void *arg;
	CURL *easy;
	struct xfer *prev, *next;
};

struct loop {
	int epfd;
	CURLM *multi;
	uint64_t now_ms;
	int stop;
	int running;                /* curl's still-running count */
	struct epoll_event evs[64]; /* the batch being dispatched */
	int nevs;
	size_t nxfers;
	struct xfer *xfers;

	struct loop_timer **heap;
	size_t nheap;
	size_t heap_alloc;

	struct loop_timer curl_timer; /* curl's single timeout */
	struct loop_stalls stalls;    /* every iteration's, by bucket */
	uint64_t iter_t0_us;          /* when the current iteration began */
	uint64_t iter_cpu0_us;        /* the thread's CPU time then */

	unsigned char *socks; /* SOCK_* by fd; see CURL_SOCK_TAG */
	size_t nsocks;
	uint32_t *sock_events; /* what epoll has for a parked or watched fd */
};

const uint64_t loop_stall_bounds_us[LOOP_STALL_NBOUNDS] = {
        1000, 5000, 10000, 25000, 50000, 100000, 250000, 1000000, 5000000,
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int64_t loop_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Monotonic microseconds, for the stall gauge only (one vDSO call per
 * iteration). */
static uint64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t loop_max_stall_us(const struct loop *l)
{
	return l->stalls.max_us;
}

uint64_t loop_busy_us(const struct loop *l)
{
	return mono_us() - l->iter_t0_us;
}

int loop_should_yield(const struct loop *l)
{
	return loop_busy_us(l) >= LOOP_YIELD_US;
}

void loop_stalls_get(const struct loop *l, struct loop_stalls *out)
{
	*out = l->stalls;
}

/* The calling thread's CPU time in microseconds (a syscall, not vDSO:
 * two an iteration). */
static uint64_t thread_cpu_us(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static size_t stall_bucket(uint64_t us)
{
	size_t i = 0;

	while (i < LOOP_STALL_NBOUNDS && us > loop_stall_bounds_us[i])
		i++;
	return i;
}

static void stall_record(struct loop *l, uint64_t busy, uint64_t cpu)
{
	l->stalls.counts[stall_bucket(busy)]++;
	l->stalls.sum_us += busy;
	if (busy > l->stalls.max_us)
		l->stalls.max_us = busy;
	l->stalls.cpu_counts[stall_bucket(cpu)]++;
	l->stalls.cpu_sum_us += cpu;
	if (cpu > l->stalls.cpu_max_us)
		l->stalls.cpu_max_us = cpu;
}

uint64_t loop_now_ms(const struct loop *l)
{
	return l->now_ms;
}

void loop_update_time(struct loop *l)
{
	l->now_ms = mono_ms();
}

CURLM *loop_multi(struct loop *l)
{
	return l->multi;
}

/* ---- timer heap (min-heap on due_ms) ---- */

static int timer_less(const struct loop_timer *a, const struct loop_timer *b)
{
	return a->due_ms < b->due_ms;
}

static void heap_swap(struct loop *l, size_t i, size_t j)
{
	struct loop_timer *t = l->heap[i];

	l->heap[i] = l->heap[j];
	l->heap[j] = t;
	l->heap[i]->heap_idx = i;
	l->heap[j]->heap_idx = j;
}

static void heap_up(struct loop *l, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!timer_less(l->heap[i], l->heap[p]))
			break;
		heap_swap(l, i, p);
		i = p;
	}
}

static void heap_down(struct loop *l, size_t i)
{
	for (;;) {
		size_t c = 2 * i + 1, m = i;
		if (c < l->nheap && timer_less(l->heap[c], l->heap[m]))
			m = c;
		if (c + 1 < l->nheap && timer_less(l->heap[c + 1], l->heap[m]))
			m = c + 1;
		if (m == i)
			break;
		heap_swap(l, i, m);
		i = m;
	}
}

void loop_timer_init(struct loop_timer *t, void (*cb)(struct loop_timer *t), void *arg)
{
	memset(t, 0, sizeof(*t));
	t->heap_idx = SIZE_MAX;
	t->cb = cb;
	t->arg = arg;
}

int loop_timer_active(const struct loop_timer *t)
{
	return t->heap_idx != SIZE_MAX;
}

int loop_timer_start_wall(struct loop *l, struct loop_timer *t, int64_t at_ms)
{
	int64_t delay;

	/* The delay is measured now, so it must count from now, not from
	 * the start of this iteration. */
	loop_update_time(l);
	delay = at_ms - loop_wall_ms();
	return loop_timer_start(l, t, delay > 0 ? (uint64_t)delay : 0);
}

void loop_timer_stop(struct loop *l, struct loop_timer *t)
{
	size_t i = t->heap_idx;

	if (i == SIZE_MAX)
		return;
	t->heap_idx = SIZE_MAX;
	l->nheap--;
	if (i == l->nheap)
		return;
	l->heap[i] = l->heap[l->nheap];
	l->heap[i]->heap_idx = i;
	heap_down(l, i);
	heap_up(l, i);
}

/* A pending timer is moved within the heap, which needs no memory. An idle
 * one needs a slot, and the heap grows before anything else changes: on
 * -ENOMEM the timer and the heap are as they were. */
int loop_timer_start(struct loop *l, struct loop_timer *t, uint64_t delay_ms)
{
	if (loop_timer_active(t)) {
		t->due_ms = l->now_ms + delay_ms;
		heap_down(l, t->heap_idx);
		heap_up(l, t->heap_idx);
		return 0;
	}
	if (l->nheap == l->heap_alloc) {
		size_t n = l->heap_alloc ? l->heap_alloc * 2 : 64;
		struct loop_timer **h = realloc(l->heap, n * sizeof(*h));
		if (!h)
			return -ENOMEM;
		l->heap = h;
		l->heap_alloc = n;
	}
	t->due_ms = l->now_ms + delay_ms;
	t->heap_idx = l->nheap;
	l->heap[l->nheap++] = t;
	heap_up(l, t->heap_idx);
	return 0;
}

/* Fires every timer due by now. A callback may start or stop any timer,
 * itself included; we re-read the heap top each time. */
static void run_timers(struct loop *l)
{
	while (l->nheap > 0 && l->heap[0]->due_ms <= l->now_ms) {
		struct loop_timer *t = l->heap[0];
		loop_timer_stop(l, t);
		t->cb(t);
	}
}

static int next_timeout(const struct loop *l)
{
	uint64_t d;

	if (l->nheap == 0)
		return -1;
	if (l->heap[0]->due_ms <= l->now_ms)
		return 0;
	d = l->heap[0]->due_ms - l->now_ms;
	return d > 60000 ? 60000 : (int)d;
}

/* ---- curl glue ---- */

/* Removes `x` from the multi and the list, and frees it. */
static void xfer_detach(struct loop *l, struct xfer *x)
{
	curl_multi_remove_handle(l->multi, x->easy);
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, NULL);
	if (x->prev)
		x->prev->next = x->next;
	else
		l->xfers = x->next;
	if (x->next)
		x->next->prev = x->prev;
	l->nxfers--;
	free(x);
}

/* Delivers finished transfers to their owners. */
static void check_multi_info(struct loop *l)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(l->multi, &left))) {
		CURL *easy;
		struct xfer *x = NULL;
		CURLcode rc;

		if (msg->msg != CURLMSG_DONE)
			continue;
		easy = msg->easy_handle;
		rc = msg->data.result;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
		if (!x)
			continue; /* not ours: cancelled already */
		{
			loop_done_fn done = x->done;
			void *arg = x->arg;
			xfer_detach(l, x);
			done(arg, easy, rc);
		}
	}
}

static void curl_timer_cb(struct loop_timer *t)
{
	struct loop *l = t->arg;

	curl_multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &l->running);
	check_multi_info(l);
}

static int curl_timer_fn(CURLM *multi, long timeout_ms, void *userp)
{
	struct loop *l = userp;

	(void)multi;
	if (timeout_ms < 0) {
		loop_timer_stop(l, &l->curl_timer);
		return 0;
	}
	return loop_timer_start(l, &l->curl_timer, (uint64_t)timeout_ms) ? -1 : 0;
}

/* Makes room for fd `s` in l->socks; -1 when out of memory. */
static int socks_reserve(struct loop *l, curl_socket_t s)
{
	size_t n = l->nsocks ? l->nsocks : 64;
	unsigned char *st;
	uint32_t *ev;

	if (s < 0)
		return -1;
	if ((size_t)s < l->nsocks)
		return 0;
	while (n <= (size_t)s)
		n *= 2;
	ev = realloc(l->sock_events, n * sizeof(*ev));
	if (!ev)
		return -1;
	l->sock_events = ev;
	st = realloc(l->socks, n);
	if (!st)
		return -1;
	memset(st + l->nsocks, SOCK_NONE, n - l->nsocks);
	l->socks = st;
	l->nsocks = n;
	return 0;
}

static int curl_socket_fn(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct loop *l = userp;
	struct epoll_event ev = {0};
	int rc;

	(void)easy;
	(void)socketp;
	if (what == CURL_POLL_REMOVE) {
		if (s < 0 || (size_t)s >= l->nsocks || l->socks[s] != SOCK_WATCHED)
			return 0;
		/* Waiting for input only: park it. Writable would wake us. */
		if (l->sock_events[s] == EPOLLIN) {
			l->socks[s] = SOCK_PARKED;
			return 0;
		}
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, s, NULL);
		l->socks[s] = SOCK_NONE;
		return 0;
	}
	if (socks_reserve(l, s) < 0)
		return -1;
	if (what & CURL_POLL_IN)
		ev.events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev.events |= EPOLLOUT;
	ev.data.u64 = ((uint64_t)s << 1) | CURL_SOCK_TAG;
	if (l->socks[s] == SOCK_WATCHED && l->sock_events[s] == ev.events)
		return 0;
	if (l->socks[s] == SOCK_NONE) {
		rc = epoll_ctl(l->epfd, EPOLL_CTL_ADD, s, &ev);
		if (rc < 0 && errno == EEXIST)
			rc = epoll_ctl(l->epfd, EPOLL_CTL_MOD, s, &ev);
	} else {
		/* A parked fd may have been closed (and reused) meanwhile. */
		rc = epoll_ctl(l->epfd, EPOLL_CTL_MOD, s, &ev);
		if (rc < 0 && errno == ENOENT)
			rc = epoll_ctl(l->epfd, EPOLL_CTL_ADD, s, &ev);
	}
	if (rc < 0) {
		l->socks[s] = SOCK_NONE;
		return -1;
	}
	l->socks[s] = SOCK_WATCHED;
	l->sock_events[s] = ev.events;
	return 0;
}

int loop_new(struct loop **out)
{
	struct loop *l = calloc(1, sizeof(*l));
	int err = -ENOMEM;

	if (!l)
		return -ENOMEM;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		err = -errno;
		goto out_free;
	}
	l->iter_t0_us = mono_us();
	l->multi = curl_multi_init();
	if (!l->multi)
		goto out_close;
	if (curl_multi_setopt(l->multi, CURLMOPT_SOCKETFUNCTION, curl_socket_fn) != CURLM_OK ||
	    curl_multi_setopt(l->multi, CURLMOPT_SOCKETDATA, l) != CURLM_OK ||
	    curl_multi_setopt(l->multi, CURLMOPT_TIMERFUNCTION, curl_timer_fn) != CURLM_OK ||
	    curl_multi_setopt(l->multi, CURLMOPT_TIMERDATA, l) != CURLM_OK ||
	    curl_multi_setopt(l->multi, CURLMOPT_MAXCONNECTS, LOOP_MAX_IDLE_CONNS) != CURLM_OK) {
		err = -EINVAL;
		goto out_multi;
	}
	loop_timer_init(&l->curl_timer, curl_timer_cb, l);
	l->now_ms = mono_ms();
	*out = l;
	return 0;

out_multi:
	curl_multi_cleanup(l->multi);
out_close:
	close(l->epfd);
out_free:
	free(l);
	return err;
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	/* Detach the remaining transfers without calling their owners: they are
	 * being torn down with us. */
	while (l->xfers)
		xfer_detach(l, l->xfers);
	curl_multi_cleanup(l->multi);
	close(l->epfd);
	free(l->heap);
	free(l->socks);
	free(l->sock_events);
	free(l);
}

int loop_transfer_start(struct loop *l, CURL *easy, loop_done_fn done, void *arg)
{
	struct xfer *x = malloc(sizeof(*x));

	if (!x)
		return -ENOMEM;
	x->done = done;
	x->arg = arg;
	x->easy = easy;
	if (curl_easy_setopt(easy, CURLOPT_PRIVATE, x) != CURLE_OK) {
		free(x);
		return -EINVAL;
	}
	if (curl_multi_add_handle(l->multi, easy) != CURLM_OK) {
		curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
		free(x);
		return -EINVAL;
	}
	x->prev = NULL;
	x->next = l->xfers;
	if (l->xfers)
		l->xfers->prev = x;
	l->xfers = x;
	l->nxfers++;
	return 0;
}

void loop_transfer_cancel(struct loop *l, CURL *easy)
{
	struct xfer *x = NULL;

	if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x) != CURLE_OK || !x)
		return;
	xfer_detach(l, x);
}

size_t loop_transfers_running(const struct loop *l)
{
	return l->nxfers;
}

/* ---- fd watches ---- */

int loop_fd_start(struct loop *l, struct loop_fd *w)
{
	struct epoll_event ev = {.events = w->events, .data.ptr = w};

	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, w->fd, &ev) < 0)
		return -errno;
	return 0;
}

void loop_fd_stop(struct loop *l, struct loop_fd *w)
{
	int i;

	epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
	/* Forget events for `w` still pending in this batch: the caller may
	 * free it as soon as we return. */
	for (i = 0; i < l->nevs; i++)
		if (l->evs[i].data.ptr == w)
			l->evs[i].data.u64 = 0;
}

/* ---- running ---- */

static void dispatch(struct loop *l, struct epoll_event *ev)
{
	if (ev->data.u64 & CURL_SOCK_TAG) {
		curl_socket_t fd = (curl_socket_t)(ev->data.u64 >> 1);
		int what = 0;

		if (ev->events & EPOLLIN)
			what |= CURL_CSELECT_IN;
		if (ev->events & EPOLLOUT)
			what |= CURL_CSELECT_OUT;
		if (ev->events & (EPOLLERR | EPOLLHUP))
			what |= CURL_CSELECT_ERR;
		if ((size_t)fd < l->nsocks && l->socks[fd] == SOCK_PARKED) {
			/* curl does not watch it: the peer closed an idle
			 * connection, or sent what nobody asked for. curl finds
			 * out when it next tries the connection. */
			epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
			l->socks[fd] = SOCK_NONE;
			return;
		}
		curl_multi_socket_action(l->multi, fd, what, &l->running);
		check_multi_info(l);
	} else {
		struct loop_fd *w = ev->data.ptr;
		w->cb(w, ev->events);
	}
}

int loop_run_once(struct loop *l, int max_wait_ms)
{
	int n, i, tmo = next_timeout(l);
	uint64_t t0, busy;

	if (max_wait_ms >= 0 && (tmo < 0 || tmo > max_wait_ms))
		tmo = max_wait_ms;
	n = epoll_wait(l->epfd, l->evs, 64, tmo);
	if (n < 0 && errno != EINTR)
		return -errno;
	t0 = mono_us();
	l->iter_t0_us = t0;
	l->iter_cpu0_us = thread_cpu_us();
	l->now_ms = t0 / 1000u;
	l->nevs = n > 0 ? n : 0;
	for (i = 0; i < l->nevs; i++)
		if (l->evs[i].data.u64 != 0)
			dispatch(l, &l->evs[i]);
	l->nevs = 0;
	run_timers(l);
	busy = mono_us() - t0;
	stall_record(l, busy, thread_cpu_us() - l->iter_cpu0_us);
	return 0;
}

int loop_run(struct loop *l)
{
	int err = 0;

	l->stop = 0;
	while (!l->stop && !err)
		err = loop_run_once(l, -1);
	return err;
}

void loop_stop(struct loop *l)
{
	l->stop = 1;
}

/* ---- capped buffers ---- */

#define LOOP_BUF_DEFAULT_CAP (64u << 20)

int loop_buf_append(struct loop_buf *b, const void *p, size_t n)
{
	size_t cap = b->cap_bytes ? b->cap_bytes : LOOP_BUF_DEFAULT_CAP;

	if (n > cap || b->len > cap - n) {
		b->overflow = 1;
		return -EFBIG;
	}
	if (b->len + n + 1 > b->alloc) {
		size_t want = b->alloc ? b->alloc : 4096;
		char *d;
		while (want < b->len + n + 1)
			want *= 2;
		if (want > cap + 1)
			want = cap + 1;
		d = realloc(b->data, want);
		if (!d)
			return -ENOMEM;
		b->data = d;
		b->alloc = want;
	}
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

void loop_buf_reset(struct loop_buf *b)
{
	b->len = 0;
	b->overflow = 0;
	if (b->data)
		b->data[0] = '\0';
}

void loop_buf_free(struct loop_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->alloc = 0;
	b->overflow = 0;
}

char *loop_buf_take(struct loop_buf *b, size_t *len)
{
	char *d = b->data;

	if (len)
		*len = b->len;
	b->data = NULL;
	b->len = b->alloc = 0;
	return d;
}

size_t loop_buf_curl_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	size_t n = size * nmemb;

	/* Returning less than n makes curl fail the transfer with
	 * CURLE_WRITE_ERROR; the caller sees why in b->overflow. */
	if (loop_buf_append(userdata, ptr, n) != 0)
		return 0;
	return n;
}

/* ---- backoff and randomness ---- */

static uint64_t rng_state;

uint32_t loop_rand(void)
{
	uint64_t x;

	if (rng_state == 0) {
		if (getrandom(&rng_state, sizeof(rng_state), 0) != sizeof(rng_state) ||
		    rng_state == 0)
			rng_state = mono_ms() ^ 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
	}
	/* xorshift64* */
	x = rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return (uint32_t)((x * 0x2545f4914f6cdd1dull) >> 32);
}

uint32_t loop_backoff_next(struct loop_backoff *b)
{
	uint64_t ceil = b->base_ms ? b->base_ms : 1;
	uint32_t i;

	for (i = 0; i < b->attempt && ceil < b->max_ms; i++)
		ceil *= 2;
	if (b->max_ms && ceil > b->max_ms)
		ceil = b->max_ms;
	if (b->attempt < UINT32_MAX)
		b->attempt++;
	return (uint32_t)(ceil / 2 + loop_rand() % (ceil - ceil / 2 + 1));
}

void loop_backoff_reset(struct loop_backoff *b)
{
	b->attempt = 0;
}
