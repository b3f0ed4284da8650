/* loop/tests/test_loop.c: timers, fd watches, capped buffers, backoff, and
 * real curl transfers against an HTTP server the test runs on the same
 * loop (127.0.0.1, an ephemeral port). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loop/loop.h"

struct fired {
	int order[16];
	int n;
};

struct tmr {
	struct loop_timer t;
	struct fired *f;
	int id;
};

static void on_tmr(struct loop_timer *t)
{
	struct tmr *x = t->arg;
	x->f->order[x->f->n++] = x->id;
}

static void test_timers_fire_in_deadline_order(void **state)
{
	struct loop *l;
	struct fired f = {0};
	struct tmr t[5];
	uint64_t delays[5] = {40, 10, 30, 0, 20};
	int i;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	for (i = 0; i < 5; i++) {
		t[i].f = &f;
		t[i].id = i;
		loop_timer_init(&t[i].t, on_tmr, &t[i]);
		assert_int_equal(loop_timer_start(l, &t[i].t, delays[i]), 0);
	}
	while (f.n < 5)
		assert_int_equal(loop_run_once(l, 100), 0);
	assert_int_equal(f.order[0], 3);
	assert_int_equal(f.order[1], 1);
	assert_int_equal(f.order[2], 4);
	assert_int_equal(f.order[3], 2);
	assert_int_equal(f.order[4], 0);
	loop_free(l);
}

struct walltmr {
	struct loop_timer t;
	int64_t fired_at;
};

static void on_walltmr(struct loop_timer *t)
{
	struct walltmr *w = t->arg;
	w->fired_at = loop_wall_ms();
}

/* A capture's slot is a wall-clock time. Armed late in a long iteration
 * (the loop's cached time is stale by then), it must still not fire
 * before that time: the pods saw requests up to 60 ms early. */
static void test_wall_timer_armed_late_in_an_iteration_never_fires_early(void **state)
{
	struct loop *l;
	struct walltmr w = {.fired_at = 0};
	int64_t spin_until, at;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	loop_timer_init(&w.t, on_walltmr, &w);
	/* A long synchronous step: the cached time falls 80 ms behind. */
	spin_until = loop_wall_ms() + 80;
	while (loop_wall_ms() < spin_until)
		;
	at = loop_wall_ms() + 50;
	assert_int_equal(loop_timer_start_wall(l, &w.t, at), 0);
	/* Any other event (a socket, a timer) wakes the loop, which reads
	 * the clock afresh. */
	loop_update_time(l);
	while (!w.fired_at)
		assert_int_equal(loop_run_once(l, 1000), 0);
	if (w.fired_at < at)
		fail_msg("fired %lld ms before its time", (long long)(at - w.fired_at));
	/* A time already past fires on the next turn. */
	w.fired_at = 0;
	assert_int_equal(loop_timer_start_wall(l, &w.t, loop_wall_ms() - 1000), 0);
	assert_int_equal(loop_run_once(l, 1000), 0);
	assert_true(w.fired_at != 0);
	loop_free(l);
}

static void test_timer_stop_and_restart_reschedules(void **state)
{
	struct loop *l;
	struct fired f = {0};
	struct tmr a = {.f = &f, .id = 1}, b = {.f = &f, .id = 2};
	uint64_t start;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	loop_timer_init(&a.t, on_tmr, &a);
	loop_timer_init(&b.t, on_tmr, &b);
	assert_false(loop_timer_active(&a.t));
	assert_int_equal(loop_timer_start(l, &a.t, 5), 0);
	assert_int_equal(loop_timer_start(l, &b.t, 10), 0);
	assert_true(loop_timer_active(&a.t));
	loop_timer_stop(l, &a.t);
	loop_timer_stop(l, &a.t); /* idempotent */
	assert_false(loop_timer_active(&a.t));
	/* Restarting a pending timer moves it, it does not add a second. */
	assert_int_equal(loop_timer_start(l, &b.t, 30), 0);
	assert_int_equal(loop_timer_start(l, &b.t, 30), 0);
	start = loop_now_ms(l);
	while (f.n < 1)
		assert_int_equal(loop_run_once(l, 100), 0);
	assert_true(loop_now_ms(l) - start >= 30);
	for (int i = 0; i < 5; i++)
		assert_int_equal(loop_run_once(l, 10), 0);
	assert_int_equal(f.n, 1);
	assert_int_equal(f.order[0], 2);
	loop_free(l);
}

struct many {
	struct loop_timer t;
	int *order, *n, id;
};

static void on_many(struct loop_timer *t)
{
	struct many *x = t->arg;
	x->order[(*x->n)++] = x->id;
}

/* Re-arming a pending timer moves it within the heap and never needs
 * memory, even when the heap's array is exactly full, so it cannot fail
 * half-way and leave the timer disarmed. The timers still fire once each,
 * in deadline order. */
static void test_restart_in_a_full_heap_moves_the_timer(void **state)
{
	struct loop *l;
	struct many t[64];
	int order[128], n = 0, i;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	for (i = 0; i < 64; i++) { /* 64 fills the heap's first allocation */
		t[i] = (struct many){.order = order, .n = &n, .id = i};
		loop_timer_init(&t[i].t, on_many, &t[i]);
		assert_int_equal(loop_timer_start(l, &t[i].t, 10 + (uint64_t)i), 0);
	}
	assert_int_equal(loop_timer_start(l, &t[63].t, 0), 0);  /* to the front */
	assert_int_equal(loop_timer_start(l, &t[0].t, 100), 0); /* to the back */
	assert_int_equal(loop_timer_start(l, &t[32].t, 42), 0); /* in place */
	for (i = 0; i < 64; i++)
		assert_true(loop_timer_active(&t[i].t));
	for (i = 0; n < 64 && i < 1000; i++)
		assert_int_equal(loop_run_once(l, 50), 0);
	assert_int_equal(n, 64);
	assert_int_equal(order[0], 63);
	for (i = 1; i < 63; i++)
		assert_int_equal(order[i], i);
	assert_int_equal(order[63], 0);
	loop_free(l);
}

static void test_buf_cap_rejects_and_keeps_contents(void **state)
{
	struct loop_buf b = {.cap_bytes = 8};
	size_t len;
	char *d;

	(void)state;
	assert_int_equal(loop_buf_append(&b, "abcd", 4), 0);
	assert_int_equal(loop_buf_append(&b, "efgh", 4), 0);
	assert_int_equal(loop_buf_append(&b, "i", 1), -EFBIG);
	assert_true(b.overflow);
	assert_int_equal(b.len, 8);
	assert_string_equal(b.data, "abcdefgh");
	/* The curl write callback reports the overflow as a short write. */
	assert_int_equal(loop_buf_curl_write("xy", 1, 2, &b), 0);
	loop_buf_reset(&b);
	assert_false(b.overflow);
	assert_int_equal(loop_buf_curl_write("xy", 1, 2, &b), 2);
	d = loop_buf_take(&b, &len);
	assert_int_equal(len, 2);
	assert_string_equal(d, "xy");
	assert_null(b.data);
	free(d);
	loop_buf_free(&b);
}

static void test_backoff_doubles_within_jitter_and_caps(void **state)
{
	struct loop_backoff b = {.base_ms = 100, .max_ms = 1000};
	uint32_t lo[] = {50, 100, 200, 400, 500, 500};
	uint32_t hi[] = {100, 200, 400, 800, 1000, 1000};

	(void)state;
	for (int round = 0; round < 50; round++) {
		loop_backoff_reset(&b);
		for (int i = 0; i < 6; i++) {
			uint32_t d = loop_backoff_next(&b);
			assert_in_range(d, lo[i], hi[i]);
		}
	}
}

/* ---- a tiny HTTP server on the loop, for real transfers ---- */

struct srv {
	struct loop_fd lfd;
	struct loop_fd conns[16];
	int nconns;
	struct loop *l;
	int port;
	int hang;      /* accept and never answer */
	int keepalive; /* answer without closing; srv_close_conns() closes */
};

static void on_conn(struct loop_fd *w, uint32_t ev)
{
	struct srv *s = w->arg;
	char buf[2048];
	ssize_t n = read(w->fd, buf, sizeof(buf) - 1);
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
	                           "Connection: close\r\n\r\nhello";
	static const char kept[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

	(void)ev;
	if (n <= 0 || s->hang) {
		if (n <= 0) {
			loop_fd_stop(s->l, w);
			close(w->fd);
			w->fd = -1;
		}
		return;
	}
	if (s->keepalive) {
		if (write(w->fd, kept, sizeof(kept) - 1) < 0)
			fail();
		return;
	}
	if (write(w->fd, resp, sizeof(resp) - 1) < 0)
		fail();
	loop_fd_stop(s->l, w);
	close(w->fd);
}

/* Closes the connections a keep-alive server still holds. */
static void srv_close_conns(struct srv *s)
{
	for (int i = 0; i < s->nconns; i++) {
		if (s->conns[i].fd < 0)
			continue;
		loop_fd_stop(s->l, &s->conns[i]);
		close(s->conns[i].fd);
		s->conns[i].fd = -1;
	}
}

static void on_accept(struct loop_fd *w, uint32_t ev)
{
	struct srv *s = w->arg;
	int c = accept(w->fd, NULL, NULL);

	(void)ev;
	assert_true(c >= 0);
	assert_true(s->nconns < 16);
	s->conns[s->nconns] = (struct loop_fd){.fd = c, .events = EPOLLIN, .cb = on_conn, .arg = s};
	assert_int_equal(loop_fd_start(s->l, &s->conns[s->nconns]), 0);
	s->nconns++;
}

static void srv_start(struct loop *l, struct srv *s)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	s->port = ntohs(a.sin_port);
	s->l = l;
	s->lfd = (struct loop_fd){.fd = fd, .events = EPOLLIN, .cb = on_accept, .arg = s};
	assert_int_equal(loop_fd_start(l, &s->lfd), 0);
}

static void srv_stop(struct srv *s)
{
	loop_fd_stop(s->l, &s->lfd);
	close(s->lfd.fd);
}

struct result {
	int done;
	CURLcode rc;
	long status;
	struct loop_buf body;
};

static void on_done(void *arg, CURL *easy, CURLcode rc)
{
	struct result *r = arg;

	r->done++;
	r->rc = rc;
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r->status);
}

static CURL *mk_easy(int port, struct result *r, long timeout_ms)
{
	char url[64];
	CURL *e = curl_easy_init();

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", port);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, loop_buf_curl_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &r->body);
	return e;
}

static void test_transfers_complete_concurrently(void **state)
{
	struct loop *l;
	struct srv s = {0};
	struct result r[4] = {0};
	CURL *e[4];
	int i, left = 4;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	srv_start(l, &s);
	for (i = 0; i < 4; i++) {
		e[i] = mk_easy(s.port, &r[i], 5000);
		assert_int_equal(loop_transfer_start(l, e[i], on_done, &r[i]), 0);
	}
	assert_int_equal(loop_transfers_running(l), 4);
	for (int iter = 0; left && iter < 1000; iter++) {
		assert_int_equal(loop_run_once(l, 100), 0);
		for (left = 0, i = 0; i < 4; i++)
			left += !r[i].done;
	}
	assert_int_equal(left, 0);
	assert_int_equal(loop_transfers_running(l), 0);
	for (i = 0; i < 4; i++) {
		assert_int_equal(r[i].done, 1);
		assert_int_equal(r[i].rc, CURLE_OK);
		assert_int_equal(r[i].status, 200);
		assert_string_equal(r[i].body.data, "hello");
		curl_easy_cleanup(e[i]);
		loop_buf_free(&r[i].body);
	}
	srv_stop(&s);
	loop_free(l);
}

/* Runs `l` until `r` is done (bounded), and checks it got "hello". */
static void run_until_done(struct loop *l, struct result *r)
{
	for (int iter = 0; !r->done && iter < 100; iter++)
		assert_int_equal(loop_run_once(l, 100), 0);
	assert_int_equal(r->done, 1);
	assert_int_equal(r->rc, CURLE_OK);
	assert_string_equal(r->body.data, "hello");
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A kept-alive connection stays in epoll between transfers (parked) and
 * carries the next one; when the peer closes it while idle, it wakes the
 * loop once, not on every turn; a transfer after that connects anew, also
 * when its socket gets the number of the parked one. */
static void test_kept_alive_connection_parks_between_transfers(void **state)
{
	struct loop *l;
	struct srv s = {.keepalive = 1};
	struct result r[3] = {0};
	CURL *e;
	long connects = -1;
	uint64_t t0;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	srv_start(l, &s);
	e = mk_easy(s.port, &r[0], 5000);
	assert_int_equal(loop_transfer_start(l, e, on_done, &r[0]), 0);
	run_until_done(l, &r[0]);
	/* The same handle again: curl reuses the connection. */
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &r[1].body);
	assert_int_equal(loop_transfer_start(l, e, on_done, &r[1]), 0);
	run_until_done(l, &r[1]);
	curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &connects);
	assert_int_equal(connects, 0);
	assert_int_equal(s.nconns, 1);
	/* The peer closes the idle connection: the loop must go back to
	 * sleeping, not wake up for the readable EOF again and again. */
	srv_close_conns(&s);
	t0 = now_ms();
	for (int i = 0; i < 5; i++)
		assert_int_equal(loop_run_once(l, 100), 0);
	assert_true(now_ms() - t0 >= 300);
	/* A new connection now (curl finds the old one dead). */
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &r[2].body);
	assert_int_equal(loop_transfer_start(l, e, on_done, &r[2]), 0);
	run_until_done(l, &r[2]);
	curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &connects);
	assert_int_equal(connects, 1);
	curl_easy_cleanup(e);
	for (int i = 0; i < 3; i++)
		loop_buf_free(&r[i].body);
	srv_close_conns(&s);
	srv_stop(&s);
	loop_free(l);
}

/* The same, but the peer closes the parked connection and a new transfer
 * starts before the loop runs again: curl closes the dead socket and its
 * new one may take the same number, which epoll no longer holds. */
static void test_parked_socket_closed_and_reused_by_number(void **state)
{
	struct loop *l;
	struct srv s = {.keepalive = 1};
	struct result r[4] = {0};
	CURL *e;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	srv_start(l, &s);
	e = mk_easy(s.port, &r[0], 5000);
	assert_int_equal(loop_transfer_start(l, e, on_done, &r[0]), 0);
	run_until_done(l, &r[0]);
	for (int i = 1; i < 4; i++) {
		int running;

		/* On loopback the FIN is queued by the time close() returns. */
		srv_close_conns(&s);
		curl_easy_setopt(e, CURLOPT_WRITEDATA, &r[i].body);
		assert_int_equal(loop_transfer_start(l, e, on_done, &r[i]), 0);
		/* curl starts the transfer before the loop sees the EOF: it
		 * closes the parked socket and opens its new one, usually under
		 * the same number, while that number is still marked parked. */
		curl_multi_socket_action(loop_multi(l), CURL_SOCKET_TIMEOUT, 0, &running);
		run_until_done(l, &r[i]);
	}
	curl_easy_cleanup(e);
	for (int i = 0; i < 4; i++)
		loop_buf_free(&r[i].body);
	srv_close_conns(&s);
	srv_stop(&s);
	loop_free(l);
}

/* Connections of a burst stay for the next burst: 8 transfers at once,
 * then 8 more, over the same 8 connections (curl's default cache keeps
 * four per transfer still running, so it had closed all but a few). */
static void test_burst_connections_are_kept_for_the_next_burst(void **state)
{
	struct loop *l;
	struct srv s = {.keepalive = 1};
	struct result r[2][8];
	CURL *e[8];
	long connects, total = 0;

	(void)state;
	memset(r, 0, sizeof(r));
	assert_int_equal(loop_new(&l), 0);
	srv_start(l, &s);
	for (int b = 0; b < 2; b++) {
		for (int i = 0; i < 8; i++) {
			if (b == 0)
				e[i] = mk_easy(s.port, &r[b][i], 5000);
			else
				curl_easy_setopt(e[i], CURLOPT_WRITEDATA, &r[b][i].body);
			assert_int_equal(loop_transfer_start(l, e[i], on_done, &r[b][i]), 0);
		}
		for (int i = 0; i < 8; i++)
			run_until_done(l, &r[b][i]);
		if (b == 1)
			for (int i = 0; i < 8; i++) {
				curl_easy_getinfo(e[i], CURLINFO_NUM_CONNECTS, &connects);
				total += connects;
			}
	}
	assert_int_equal(total, 0);
	assert_int_equal(s.nconns, 8);
	for (int i = 0; i < 8; i++) {
		curl_easy_cleanup(e[i]);
		loop_buf_free(&r[0][i].body);
		loop_buf_free(&r[1][i].body);
	}
	srv_close_conns(&s);
	srv_stop(&s);
	loop_free(l);
}

static void test_hung_peer_times_out_and_cancel_skips_callback(void **state)
{
	struct loop *l;
	struct srv s = {.hang = 1};
	struct result slow = {0}, cancelled = {0};
	CURL *a, *b;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	srv_start(l, &s);
	a = mk_easy(s.port, &slow, 200);
	b = mk_easy(s.port, &cancelled, 200);
	assert_int_equal(loop_transfer_start(l, a, on_done, &slow), 0);
	assert_int_equal(loop_transfer_start(l, b, on_done, &cancelled), 0);
	loop_transfer_cancel(l, b);
	loop_transfer_cancel(l, b); /* safe twice */
	for (int iter = 0; !slow.done && iter < 100; iter++)
		assert_int_equal(loop_run_once(l, 50), 0);
	assert_int_equal(slow.done, 1);
	assert_int_equal(slow.rc, CURLE_OPERATION_TIMEDOUT);
	assert_int_equal(cancelled.done, 0);
	curl_easy_cleanup(a);
	curl_easy_cleanup(b);
	for (int i = 0; i < s.nconns; i++)
		close(s.conns[i].fd);
	srv_stop(&s);
	loop_free(l);
}

/* A callback that keeps the loop busy shows as the longest stall; waiting
 * in epoll does not count. */
static void on_busy(struct loop_timer *t)
{
	struct timespec a, b;

	(void)t;
	clock_gettime(CLOCK_MONOTONIC, &a);
	do
		clock_gettime(CLOCK_MONOTONIC, &b);
	while ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) < 30000000L);
}

static void test_max_stall_is_the_longest_iteration(void **state)
{
	struct loop *l;
	struct loop_timer t;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(loop_max_stall_us(l), 0);
	assert_int_equal(loop_run_once(l, 50), 0);
	loop_timer_init(&t, on_busy, NULL);
	assert_int_equal(loop_timer_start(l, &t, 0), 0);
	assert_int_equal(loop_run_once(l, 100), 0);
	assert_true(loop_max_stall_us(l) >= 30000);
	assert_true(loop_max_stall_us(l) < 10000000);
	loop_free(l);
}

struct yield_probe {
	struct loop *l;
	int *seq, order;
	int at_start, after_busy;
	uint64_t busy_at_start, busy_after;
};

static void on_probe_yield(struct loop_timer *t)
{
	struct yield_probe *y = t->arg;

	y->order = ++*y->seq;
	y->busy_at_start = loop_busy_us(y->l);
	y->at_start = loop_should_yield(y->l);
	on_busy(t);
	y->after_busy = loop_should_yield(y->l);
	y->busy_after = loop_busy_us(y->l);
}

/* The yield clock counts from the iteration's start, across callbacks. */
static void test_should_yield_after_the_iteration_ran_long(void **state)
{
	struct loop *l;
	struct loop_timer t1, t2;
	int seq = 0;
	struct yield_probe y1 = {.seq = &seq}, y2 = {.seq = &seq}, *later;
	uint64_t first_after;

	/* Only orderings are asserted, never that something is quick: a
	 * loaded machine may deschedule the test anywhere. */
	(void)state;
	assert_int_equal(loop_new(&l), 0);
	y1.l = y2.l = l;
	loop_timer_init(&t1, on_probe_yield, &y1);
	loop_timer_init(&t2, on_probe_yield, &y2);
	assert_int_equal(loop_timer_start(l, &t1, 0), 0);
	assert_int_equal(loop_run_once(l, 100), 0);
	assert_true(y1.after_busy); /* 30 ms spun: past the 10 ms budget */
	assert_true(y1.busy_after >= 30000);
	first_after = y1.busy_after;
	/* Two in one iteration: the later starts past the budget, counted
	 * from the iteration's start, not from its own; the next iteration
	 * counts from zero again. */
	assert_int_equal(loop_timer_start(l, &t1, 0), 0);
	assert_int_equal(loop_timer_start(l, &t2, 0), 0);
	assert_int_equal(loop_run_once(l, 100), 0);
	later = y1.order > y2.order ? &y1 : &y2;
	assert_true(later->at_start);
	assert_true(later->busy_at_start >= 30000);
	assert_true((later == &y1 ? y2 : y1).busy_at_start < first_after);
	loop_free(l);
}

/* Each iteration lands in the bucket of its busy time, once. */
static void test_stalls_count_iterations_by_busy_time(void **state)
{
	struct loop *l;
	struct loop_timer t;
	struct loop_stalls st;
	uint64_t n = 0;
	size_t i, b30 = 0;

	(void)state;
	while (loop_stall_bounds_us[b30] < 30000)
		b30++;
	assert_int_equal(loop_new(&l), 0);
	loop_stalls_get(l, &st);
	for (i = 0; i <= LOOP_STALL_NBOUNDS; i++)
		assert_int_equal(st.counts[i], 0);
	assert_int_equal(loop_run_once(l, 0), 0);
	loop_timer_init(&t, on_busy, NULL);
	assert_int_equal(loop_timer_start(l, &t, 0), 0);
	assert_int_equal(loop_run_once(l, 100), 0);
	loop_stalls_get(l, &st);
	for (i = 0; i <= LOOP_STALL_NBOUNDS; i++)
		n += st.counts[i];
	assert_int_equal(n, 2);
	/* The busy one is above 30 ms: in a bucket past 25 ms (the idle one
	 * too, if the machine kept the test off the CPU that long). */
	for (i = b30, n = 0; i <= LOOP_STALL_NBOUNDS; i++)
		n += st.counts[i];
	assert_true(n >= 1);
	assert_true(st.sum_us >= 30000);
	assert_true(st.sum_us >= loop_max_stall_us(l));
	/* The busy wait spins on the CPU: its CPU time is counted too. */
	for (i = 0, n = 0; i <= LOOP_STALL_NBOUNDS; i++)
		n += st.cpu_counts[i];
	assert_int_equal(n, 2);
	assert_true(st.cpu_max_us > 0 && st.cpu_max_us <= loop_max_stall_us(l) + 1000);
	assert_true(st.cpu_sum_us >= st.cpu_max_us);
	loop_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_timers_fire_in_deadline_order),
	        cmocka_unit_test(test_timer_stop_and_restart_reschedules),
	        cmocka_unit_test(test_wall_timer_armed_late_in_an_iteration_never_fires_early),
	        cmocka_unit_test(test_restart_in_a_full_heap_moves_the_timer),
	        cmocka_unit_test(test_buf_cap_rejects_and_keeps_contents),
	        cmocka_unit_test(test_backoff_doubles_within_jitter_and_caps),
	        cmocka_unit_test(test_transfers_complete_concurrently),
	        cmocka_unit_test(test_hung_peer_times_out_and_cancel_skips_callback),
	        cmocka_unit_test(test_kept_alive_connection_parks_between_transfers),
	        cmocka_unit_test(test_parked_socket_closed_and_reused_by_number),
	        cmocka_unit_test(test_burst_connections_are_kept_for_the_next_burst),
	        cmocka_unit_test(test_max_stall_is_the_longest_iteration),
	        cmocka_unit_test(test_stalls_count_iterations_by_busy_time),
	        cmocka_unit_test(test_should_yield_after_the_iteration_ran_long),
	};

	curl_global_init(CURL_GLOBAL_DEFAULT);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
