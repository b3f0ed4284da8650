/* capture/tests/test_fetch.c: the fetcher's queueing, CPU exclusivity,
 * cancellation and error kinds, against a small HTTP server on 127.0.0.1
 * run by a thread of this test (the real Go targets are in
 * cap_integration). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "capture/capture.h"
#include "fixture.h"
#include "loop/loop.h"

static int srv_fd;
static unsigned srv_port;
static char *heap_body;
static size_t heap_len;
static atomic_int active, max_active, served;

/* Paths: /d/<ms>/<anything>: wait ms, then send the heap fixture;
 * /status/<code>: that status with a message line; /big: 1 MiB of 'x';
 * /hugehdr: a 4 MiB response header line; /endless: a body without end. */
static void *serve_one(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char req[2048];
	ssize_t n = recv(fd, req, sizeof(req) - 1, 0);
	if (n <= 0)
		goto out;
	req[n] = '\0';
	int now = atomic_fetch_add(&active, 1) + 1;
	int m = atomic_load(&max_active);
	while (now > m && !atomic_compare_exchange_weak(&max_active, &m, now))
		;
	char hdr[256];
	unsigned ms = 0, code = 0;
	if (sscanf(req, "GET /d/%u/", &ms) == 1) {
		usleep(ms * 1000);
		/* Leave before the reply: once it is sent the client may start
		 * the next request before this thread runs again. */
		atomic_fetch_sub(&active, 1);
		now = -1;
		snprintf(hdr, sizeof(hdr),
		         "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
		         heap_len);
		send(fd, hdr, strlen(hdr), MSG_NOSIGNAL);
		send(fd, heap_body, heap_len, MSG_NOSIGNAL);
	} else if (sscanf(req, "GET /status/%u", &code) == 1) {
		const char *msg = "Could not enable CPU profiling: cpu profiling already in use\n";
		snprintf(hdr, sizeof(hdr),
		         "HTTP/1.1 %u X\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
		         code, strlen(msg), msg);
		send(fd, hdr, strlen(hdr), MSG_NOSIGNAL);
	} else if (strncmp(req, "GET /big", 8) == 0) {
		static char big[1 << 16];
		memset(big, 'x', sizeof(big));
		snprintf(hdr, sizeof(hdr), "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
		send(fd, hdr, strlen(hdr), MSG_NOSIGNAL);
		for (int i = 0; i < 16; i++)
			if (send(fd, big, sizeof(big), MSG_NOSIGNAL) < 0)
				break;
	} else if (strncmp(req, "GET /endless", 12) == 0) {
		/* Paced, so that several such bodies grow side by side. */
		static char chunk[1 << 14];
		memset(chunk, 'e', sizeof(chunk));
		snprintf(hdr, sizeof(hdr), "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
		send(fd, hdr, strlen(hdr), MSG_NOSIGNAL);
		while (send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL) >= 0)
			usleep(2000);
	} else if (strncmp(req, "GET /hugehdr", 12) == 0) {
		static char big[1 << 16];
		memset(big, 'a', sizeof(big));
		snprintf(hdr, sizeof(hdr), "HTTP/1.1 200 OK\r\nX-Big: ");
		send(fd, hdr, strlen(hdr), MSG_NOSIGNAL);
		for (int i = 0; i < 64; i++)
			if (send(fd, big, sizeof(big), MSG_NOSIGNAL) < 0)
				break;
		send(fd, "\r\n\r\n", 4, MSG_NOSIGNAL);
	} else {
		snprintf(hdr, sizeof(hdr),
		         "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
		send(fd, hdr, strlen(hdr), MSG_NOSIGNAL);
	}
	if (now >= 0)
		atomic_fetch_sub(&active, 1);
	atomic_fetch_add(&served, 1);
out:
	close(fd);
	return NULL;
}

static void *accept_loop(void *arg)
{
	for (;;) {
		int fd = accept(srv_fd, NULL, NULL);
		if (fd < 0)
			return NULL;
		pthread_t t;
		pthread_create(&t, NULL, serve_one, (void *)(intptr_t)fd);
		pthread_detach(t);
	}
}

static int group_setup(void **state)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	heap_body = fixture_read("heap.pb.gz", &heap_len);
	srv_fd = socket(AF_INET, SOCK_STREAM, 0);
	if (bind(srv_fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(srv_fd, 64) < 0 ||
	    getsockname(srv_fd, (struct sockaddr *)&a, &al) < 0)
		return -1;
	srv_port = ntohs(a.sin_port);
	pthread_t t;
	pthread_create(&t, NULL, accept_loop, NULL);
	pthread_detach(t);
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

struct got {
	int calls;
	enum cap_result res;
	long status;
	char msg[256];
	uint64_t queued_ms, elapsed_ms;
	int order; /* completion order */
};
static int completions;

static void on_done(void *arg, struct cap_fetch_result *r)
{
	struct got *g = arg;
	g->calls++;
	g->res = r->res;
	g->status = r->http_status;
	g->queued_ms = r->queued_ms;
	g->elapsed_ms = r->elapsed_ms;
	g->order = ++completions;
	snprintf(g->msg, sizeof(g->msg), "%s", r->message);
}

static uint64_t start(struct cap_fetcher *f, const char *path, enum ppop_ptype t, const char *key,
                      const void *owner, struct got *g)
{
	char url[256];
	uint64_t id = 0;
	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", srv_port, path);
	struct cap_request req = {.url = url,
	                          .target_key = key,
	                          .type = t,
	                          .seconds = 1,
	                          .timeout_ms = 3000,
	                          .owner = owner};
	memset(g, 0, sizeof(*g));
	assert_int_equal(cap_fetch_start(f, &req, on_done, g, &id), 0);
	return id;
}

static void run_until_done(struct loop *l, struct got *g, size_t n)
{
	for (int i = 0; i < 400; i++) {
		size_t done = 0;
		for (size_t k = 0; k < n; k++)
			done += g[k].calls > 0;
		if (done == n)
			return;
		loop_run_once(l, 25);
	}
}

static void test_fetch_inflight_cap_and_fifo(void **state)
{
	struct loop *l;
	struct cap_fetcher *f;
	struct cap_fetcher_opts o = {.max_inflight = 2};
	struct got g[6];
	struct cap_fetcher_stats st;
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(cap_fetcher_new(l, &o, &f), 0);
	atomic_store(&max_active, 0);
	completions = 0;
	for (int i = 0; i < 6; i++) {
		char path[32], key[16];
		snprintf(path, sizeof(path), "/d/150/%d", i);
		snprintf(key, sizeof(key), "k%d", i);
		start(f, path, PPOP_PT_HEAP, key, NULL, &g[i]);
	}
	cap_fetcher_stats(f, &st);
	assert_int_equal(st.inflight, 2);
	assert_int_equal(st.queued, 4);
	run_until_done(l, g, 6);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(g[i].calls, 1);
		assert_int_equal(g[i].res, CAP_RES_OK);
	}
	assert_true(atomic_load(&max_active) <= 2);
	/* FIFO: the last two queued waited for two rounds. */
	assert_true(g[4].queued_ms >= 250);
	assert_true(g[0].queued_ms < 50);
	cap_fetcher_stats(f, &st);
	assert_int_equal(st.finished[CAP_RES_OK], 6);
	cap_fetcher_free(f);
	loop_free(l);
}

static void test_fetch_one_cpu_per_target(void **state)
{
	struct loop *l;
	struct cap_fetcher *f;
	struct got g[4];
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(cap_fetcher_new(l, NULL, &f), 0);
	completions = 0;
	/* Two CPU captures of one target, one of another, and a heap of the first. */
	start(f, "/d/200/a", PPOP_PT_CPU, "10.0.0.1:6060", NULL, &g[0]);
	start(f, "/d/200/b", PPOP_PT_CPU, "10.0.0.1:6060", NULL, &g[1]);
	start(f, "/d/200/c", PPOP_PT_CPU, "10.0.0.2:6060", NULL, &g[2]);
	start(f, "/d/10/d", PPOP_PT_HEAP, "10.0.0.1:6060", NULL, &g[3]);
	run_until_done(l, g, 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(g[i].res, CAP_RES_OK);
	assert_true(g[1].queued_ms >= 180); /* waited for the first */
	assert_true(g[2].queued_ms < 50);   /* another target: at once */
	assert_true(g[3].queued_ms < 50);   /* not CPU: at once */
	assert_true(g[1].order > g[0].order);
	cap_fetcher_free(f);
	loop_free(l);
}

static void test_fetch_max_per_target_serializes_one_pods_profiles(void **state)
{
	struct loop *l;
	struct cap_fetcher *f;
	struct cap_fetcher_opts o = {.max_per_target = 1};
	struct got g[5];
	struct cap_fetcher_stats st;
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(cap_fetcher_new(l, &o, &f), 0);
	completions = 0;
	/* Three non-CPU captures of one pod, one of another pod, and a CPU
	 * capture of the first pod, which is counted apart. */
	start(f, "/d/150/a", PPOP_PT_HEAP, "10.0.0.1:6060", NULL, &g[0]);
	start(f, "/d/150/b", PPOP_PT_GOROUTINE, "10.0.0.1:6060", NULL, &g[1]);
	start(f, "/d/150/c", PPOP_PT_ALLOCS, "10.0.0.1:6060", NULL, &g[2]);
	start(f, "/d/150/d", PPOP_PT_HEAP, "10.0.0.2:6060", NULL, &g[3]);
	start(f, "/d/150/e", PPOP_PT_CPU, "10.0.0.1:6060", NULL, &g[4]);
	cap_fetcher_stats(f, &st);
	assert_int_equal(st.inflight, 3); /* a, d and e; b and c wait for a */
	assert_int_equal(st.queued, 2);
	run_until_done(l, g, 5);
	for (int i = 0; i < 5; i++)
		assert_int_equal(g[i].res, CAP_RES_OK);
	assert_true(g[1].queued_ms >= 130); /* after a */
	assert_true(g[2].queued_ms >= 280); /* after a and b */
	assert_true(g[2].order > g[1].order && g[1].order > g[0].order);
	assert_true(g[3].queued_ms < 50); /* another pod: at once */
	assert_true(g[4].queued_ms < 50); /* CPU is not held back by the others */
	cap_fetcher_free(f);
	loop_free(l);
}

static void test_fetch_cancel(void **state)
{
	struct loop *l;
	struct cap_fetcher *f;
	struct cap_fetcher_opts o = {.max_inflight = 1};
	struct got g[4];
	static const int owner_a = 1, owner_b = 2;
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(cap_fetcher_new(l, &o, &f), 0);
	uint64_t id0 = start(f, "/d/300/0", PPOP_PT_HEAP, "a", &owner_a, &g[0]);
	uint64_t id1 = start(f, "/d/10/1", PPOP_PT_HEAP, "b", &owner_b, &g[1]);
	uint64_t id2 = start(f, "/d/10/2", PPOP_PT_HEAP, "c", &owner_a, &g[2]);
	start(f, "/d/10/3", PPOP_PT_HEAP, "d", &owner_b, &g[3]);
	loop_run_once(l, 20);
	/* Cancel a running one: its callback runs now, the next starts. */
	assert_int_equal(cap_fetch_cancel(f, id0), 0);
	assert_int_equal(g[0].calls, 1);
	assert_int_equal(g[0].res, CAP_RES_CANCELLED);
	assert_int_equal(cap_fetch_cancel(f, id0), -ENOENT);
	/* Cancel a queued one. */
	assert_int_equal(cap_fetch_cancel(f, id2), 0);
	assert_int_equal(g[2].res, CAP_RES_CANCELLED);
	run_until_done(l, g, 4);
	assert_int_equal(g[1].res, CAP_RES_OK);
	assert_int_equal(g[3].res, CAP_RES_OK);
	assert_int_equal(cap_fetch_cancel(f, id1), -ENOENT);
	for (int i = 0; i < 4; i++)
		assert_int_equal(g[i].calls, 1);
	/* Freeing with work pending cancels it, once. */
	start(f, "/d/300/5", PPOP_PT_HEAP, "e", NULL, &g[0]);
	start(f, "/d/300/6", PPOP_PT_HEAP, "f", NULL, &g[1]);
	cap_fetcher_free(f);
	assert_int_equal(g[0].calls, 1);
	assert_int_equal(g[1].calls, 1);
	assert_int_equal(g[1].res, CAP_RES_CANCELLED);
	loop_free(l);
}

static void test_fetch_error_kinds(void **state)
{
	struct loop *l;
	struct cap_fetcher *f;
	struct cap_fetcher_opts o = {.max_body_bytes = 100000};
	struct got g[5];
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(cap_fetcher_new(l, &o, &f), 0);
	start(f, "/status/500", PPOP_PT_CPU, "x", NULL, &g[0]);
	start(f, "/big", PPOP_PT_HEAP, "y", NULL, &g[1]);
	start(f, "/hello", PPOP_PT_HEAP, "z", NULL, &g[2]);
	/* Nothing listens on port 1 of 127.0.0.1. */
	char url[] = "http://127.0.0.1:1/debug/pprof/heap";
	struct cap_request req = {.url = url, .type = PPOP_PT_HEAP, .timeout_ms = 2000};
	memset(&g[3], 0, sizeof(g[3]));
	assert_int_equal(cap_fetch_start(f, &req, on_done, &g[3], NULL), 0);
	/* A total timeout: 300 ms for a reply that takes 2 s. */
	char url2[128];
	snprintf(url2, sizeof(url2), "http://127.0.0.1:%u/d/2000/t", srv_port);
	struct cap_request req2 = {.url = url2, .type = PPOP_PT_HEAP, .timeout_ms = 300};
	memset(&g[4], 0, sizeof(g[4]));
	assert_int_equal(cap_fetch_start(f, &req2, on_done, &g[4], NULL), 0);
	run_until_done(l, g, 5);
	assert_int_equal(g[0].res, CAP_RES_HTTP);
	assert_int_equal(g[0].status, 500);
	assert_string_equal(
	        g[0].msg, "HTTP 500: Could not enable CPU profiling: cpu profiling already in use");
	assert_int_equal(g[1].res, CAP_RES_TOO_LARGE);
	assert_int_equal(g[2].res, CAP_RES_NOT_PROFILE);
	assert_int_equal(g[3].res, CAP_RES_REFUSED);
	assert_int_equal(g[4].res, CAP_RES_TIMEOUT);
	assert_true(g[4].elapsed_ms < 1000);
	cap_fetcher_free(f);
	loop_free(l);
}

static void test_fetch_huge_header_is_the_pods_fault(void **state)
{
	struct loop *l;
	struct cap_fetcher *f;
	struct got g;
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(cap_fetcher_new(l, NULL, &f), 0);
	start(f, "/hugehdr", PPOP_PT_HEAP, "h", NULL, &g);
	run_until_done(l, &g, 1);
	assert_int_equal(g.calls, 1);
	print_message("result %d: %s\n", g.res, g.msg);
	/* Not "internal: Out of memory", which points at the operator. */
	assert_int_equal(g.res, CAP_RES_TOO_LARGE);
	assert_non_null(strstr(g.msg, "response header from the pod exceeds"));
	cap_fetcher_free(f);
	loop_free(l);
}

static void test_fetch_budget_bounds_bytes_in_flight(void **state)
{
	struct loop *l;
	struct cap_fetcher *f;
	/* Five endless bodies, each allowed 1 MiB, share a 2 MiB budget. */
	const size_t budget = 2u << 20;
	struct cap_fetcher_opts o = {.max_body_bytes = 1u << 20, .max_inflight_bytes = budget};
	struct cap_fetcher_opts bad = {.max_body_bytes = 1u << 20, .max_inflight_bytes = 1000};
	struct got g[5];
	struct cap_fetcher_stats st;
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(cap_fetcher_new(l, &bad, &f), -EINVAL);
	assert_int_equal(cap_fetcher_new(l, &o, &f), 0);
	for (int i = 0; i < 5; i++) {
		char key[16];
		snprintf(key, sizeof(key), "e%d", i);
		start(f, "/endless", PPOP_PT_HEAP, key, NULL, &g[i]);
	}
	for (int i = 0; i < 400; i++) {
		size_t done = 0;
		for (int k = 0; k < 5; k++)
			done += g[k].calls > 0;
		cap_fetcher_stats(f, &st);
		assert_true(st.inflight_bytes <= budget);
		if (done == 5)
			break;
		loop_run_once(l, 25);
	}
	uint64_t over = 0;
	for (int k = 0; k < 5; k++) {
		assert_int_equal(g[k].calls, 1);
		assert_true(g[k].res == CAP_RES_TOO_LARGE || g[k].res == CAP_RES_OVER_BUDGET);
		if (g[k].res == CAP_RES_OVER_BUDGET) {
			over++;
			print_message("%s\n", g[k].msg);
			assert_non_null(strstr(g[k].msg, "budget"));
		}
	}
	cap_fetcher_stats(f, &st);
	print_message("peak %llu, refusals %llu\n", (unsigned long long)st.inflight_bytes_peak,
	              (unsigned long long)st.budget_refusals);
	/* The high-water mark held too, between the loop's turns as well. */
	assert_true(st.inflight_bytes_peak <= budget);
	assert_true(st.inflight_bytes_peak > (1u << 20));
	assert_true(over >= 1);
	assert_int_equal(st.budget_refusals, over);
	assert_int_equal(st.finished[CAP_RES_OVER_BUDGET], over);
	assert_int_equal(st.inflight_bytes, 0);
	assert_string_equal(cap_result_name(CAP_RES_OVER_BUDGET), "over_budget");
	/* The budget is free again: a normal capture goes through. */
	start(f, "/d/10/after", PPOP_PT_HEAP, "n", NULL, &g[0]);
	run_until_done(l, g, 1);
	assert_int_equal(g[0].res, CAP_RES_OK);
	cap_fetcher_stats(f, &st);
	assert_int_equal(st.inflight_bytes, 0);
	cap_fetcher_free(f);
	loop_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_fetch_inflight_cap_and_fifo),
	        cmocka_unit_test(test_fetch_one_cpu_per_target),
	        cmocka_unit_test(test_fetch_max_per_target_serializes_one_pods_profiles),
	        cmocka_unit_test(test_fetch_cancel),
	        cmocka_unit_test(test_fetch_error_kinds),
	        cmocka_unit_test(test_fetch_huge_header_is_the_pods_fault),
	        cmocka_unit_test(test_fetch_budget_bounds_bytes_in_flight),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
