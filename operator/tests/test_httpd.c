/* operator/tests/test_httpd.c: the health/metrics listener answers real
 * HTTP clients, rejects non-GET, and neither silent clients nor running
 * out of file descriptors keep it from answering probes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "operator/httpd.h"

static void handler(void *arg, const char *path, int *status, const char **ctype,
                    struct loop_buf *body)
{
	(void)arg;
	if (strcmp(path, "/healthz") == 0) {
		*status = 200;
		loop_buf_append(body, "ok\n", 3);
	} else if (strcmp(path, "/big") == 0) { /* more than a socket holds */
		static char mib[1 << 20];
		*status = 200;
		for (int i = 0; i < 4; i++)
			loop_buf_append(body, mib, sizeof(mib));
	} else {
		*status = 404;
		*ctype = "text/plain";
		loop_buf_append(body, "no\n", 3);
	}
}

struct res {
	int done;
	long status;
	CURLcode rc;
	struct loop_buf body;
};

static void on_done(void *arg, CURL *e, CURLcode rc)
{
	struct res *r = arg;
	r->done = 1;
	r->rc = rc;
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
}

static void fetch(struct loop *l, int port, const char *path, const char *method, struct res *r)
{
	char url[128];
	CURL *e = curl_easy_init();

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 3000L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, loop_buf_curl_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &r->body);
	if (method)
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	assert_int_equal(loop_transfer_start(l, e, on_done, r), 0);
	for (int i = 0; !r->done && i < 200; i++)
		assert_int_equal(loop_run_once(l, 50), 0);
	curl_easy_cleanup(e);
	assert_true(r->done);
}

static void test_serves_get_404_and_405_while_a_client_stalls(void **state)
{
	struct loop *l;
	struct op_httpd *s;
	char err[256];
	struct res a = {0}, b = {0}, c = {0};
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int stall;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(op_httpd_start(l, "127.0.0.1:0", handler, NULL, &s, err, sizeof(err)), 0);
	assert_non_null(s);
	/* A client that connects and says nothing holds one slot only. */
	stall = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_port = htons((uint16_t)op_httpd_port(s));
	assert_int_equal(connect(stall, (struct sockaddr *)&sa, sizeof(sa)), 0);

	fetch(l, op_httpd_port(s), "/healthz?verbose=1", NULL, &a);
	assert_int_equal(a.rc, CURLE_OK);
	assert_int_equal(a.status, 200);
	assert_string_equal(a.body.data, "ok\n");
	fetch(l, op_httpd_port(s), "/nope", NULL, &b);
	assert_int_equal(b.status, 404);
	fetch(l, op_httpd_port(s), "/healthz", "DELETE", &c);
	assert_int_equal(c.status, 405);
	close(stall);
	loop_buf_free(&a.body);
	loop_buf_free(&b.body);
	loop_buf_free(&c.body);
	op_httpd_free(s);
	loop_free(l);
}

static void test_bad_address_is_a_clear_error(void **state)
{
	struct loop *l;
	struct op_httpd *s;
	char err[256] = "";

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	assert_true(op_httpd_start(l, "nonsense", handler, NULL, &s, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "bad listen address nonsense"));
	assert_int_equal(op_httpd_start(l, "0", handler, NULL, &s, err, sizeof(err)), 0);
	assert_null(s);
	loop_free(l);
}

static void test_listen_address_table(void **state)
{
	static const struct {
		const char *addr;
		int rc;
		const char *host, *port;
	} c[] = {
	        {":8080", 0, "", "8080"}, /* every address */
	        {"127.0.0.1:0", 0, "127.0.0.1", "0"},
	        {"[::1]:8081", 0, "::1", "8081"},
	        {"localhost:8080", 0, "localhost", "8080"},
	        {"0.0.0.0:65535", 0, "0.0.0.0", "65535"},
	        {"[::]:9090", 0, "::", "9090"},
	        {"[fe80::1%25eth0]:80", 0, "fe80::1%eth0", "80"},
	        {"1.2.3.4", -EINVAL, NULL, NULL},
	        {"1.2.3.4:99999", -EINVAL, NULL, NULL},
	        {"1.2.3.4:65536", -EINVAL, NULL, NULL},
	        {"[::1", -EINVAL, NULL, NULL},
	        {"::1:8080", -EINVAL, NULL, NULL},
	        {"host:abc", -EINVAL, NULL, NULL},
	        {"host:", -EINVAL, NULL, NULL},
	        {"host:-1", -EINVAL, NULL, NULL},
	        {"", -EINVAL, NULL, NULL},
	        {":", -EINVAL, NULL, NULL},
	        {"::8080", -EINVAL, NULL, NULL},
	        {"ho st:80", -EINVAL, NULL, NULL},
	        {"user@host:80", -EINVAL, NULL, NULL},
	        {"host:80/metrics", -EINVAL, NULL, NULL},
	        {"host:80?x", -EINVAL, NULL, NULL},
	        {"http://host:80", -EINVAL, NULL, NULL},
	};
	char host[64], port[16];

	(void)state;
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		int rc = op_httpd_parse_addr(c[i].addr, host, sizeof(host), port, sizeof(port));
		if (rc != c[i].rc)
			fail_msg("\"%s\": rc %d, want %d", c[i].addr, rc, c[i].rc);
		if (rc == 0 && (strcmp(host, c[i].host) != 0 || strcmp(port, c[i].port) != 0))
			fail_msg("\"%s\": host \"%s\" port \"%s\", want \"%s\" \"%s\"", c[i].addr,
			         host, port, c[i].host, c[i].port);
	}
	/* A host that does not fit the caller's buffer is refused, not cut. */
	assert_int_equal(op_httpd_parse_addr("localhost:8080", host, 9, port, sizeof(port)),
	                 -EINVAL);
	assert_int_equal(op_httpd_parse_addr("localhost:8080", host, 10, port, sizeof(port)), 0);
}

static void test_listens_on_every_address_and_on_ipv6(void **state)
{
	struct loop *l;
	struct op_httpd *s;
	char err[256] = "";
	int rc;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(op_httpd_start(l, ":0", handler, NULL, &s, err, sizeof(err)), 0);
	assert_true(op_httpd_port(s) > 0);
	op_httpd_free(s);
	/* A host without IPv6 cannot bind ::1; that is not the parser's fault. */
	rc = op_httpd_start(l, "[::1]:0", handler, NULL, &s, err, sizeof(err));
	if (rc != -EADDRNOTAVAIL && rc != -EAFNOSUPPORT) {
		assert_int_equal(rc, 0);
		assert_true(op_httpd_port(s) > 0);
		op_httpd_free(s);
	}
	loop_free(l);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A blocking TCP connection to the listener; the kernel completes it from
 * the listen backlog, before the server accepts. */
static int connect_to(const struct op_httpd *s)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	                         .sin_port = htons((uint16_t)op_httpd_port(s))};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Kubelet probes keep being answered while idle connections hold every
 * slot: a connection that has not sent its request head makes way for a
 * new one. Before, 40 idle connections left /healthz refused. */
static void test_healthz_answered_while_40_idle_connections_are_open(void **state)
{
	struct loop *l;
	struct op_httpd *s;
	char err[256];
	struct res a = {0};
	int idle[40], i;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(op_httpd_start(l, "127.0.0.1:0", handler, NULL, &s, err, sizeof(err)), 0);
	for (i = 0; i < 40; i++)
		idle[i] = connect_to(s);
	/* Let the server accept them all before the probe arrives. */
	for (i = 0; i < 5; i++)
		assert_int_equal(loop_run_once(l, 10), 0);
	fetch(l, op_httpd_port(s), "/healthz", NULL, &a);
	assert_int_equal(a.rc, CURLE_OK);
	assert_int_equal(a.status, 200);
	assert_string_equal(a.body.data, "ok\n");
	for (i = 0; i < 40; i++)
		close(idle[i]);
	loop_buf_free(&a.body);
	op_httpd_free(s);
	loop_free(l);
}

/* A blocking TCP connection to the listener from source address `src`
 * (any 127/8 address is local on Linux), so one process can play several
 * peers. */
static int connect_from(const struct op_httpd *s, const char *src)
{
	struct sockaddr_in from = {.sin_family = AF_INET};
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	                         .sin_port = htons((uint16_t)op_httpd_port(s))};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(inet_pton(AF_INET, src, &from.sin_addr), 1);
	assert_int_equal(bind(fd, (struct sockaddr *)&from, sizeof(from)), 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* True when the server has closed `fd` by now (EOF or reset is readable).
 * A server close in this process reaches a loopback peer before close()
 * returns, so no waiting is needed once the loop has run. */
static int is_closed(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	ssize_t n;
	char c;

	if (poll(&p, 1, 0) != 1)
		return 0;
	n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* How many of `fd` (-1 entries skipped) the server has not closed. */
static int count_open(const int *fd, int n)
{
	int i, open = 0;

	for (i = 0; i < n; i++)
		open += fd[i] >= 0 && !is_closed(fd[i]);
	return open;
}

/* Runs the loop until at most `want` of `fd` are open, for at most
 * `within_ms`. Returns how many are open. */
static int wait_open(struct loop *l, const int *fd, int n, int want, uint64_t within_ms)
{
	uint64_t end = now_ms() + within_ms;
	int open;

	while ((open = count_open(fd, n)) > want && now_ms() < end)
		assert_int_equal(loop_run_once(l, 20), 0);
	return open;
}

/* Sends a /healthz request on `fd`, which may not have been accepted yet
 * (the kernel queues it). */
static void send_probe(int fd)
{
	static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

	assert_int_equal(write(fd, req, sizeof(req) - 1), (ssize_t)(sizeof(req) - 1));
}

/* Runs the loop until the whole response to send_probe() is in or the
 * server closes `fd`, for at most `within_ms`. Returns 1 for a 200 with
 * "ok", 0 otherwise. */
static int probe_answered(struct loop *l, int fd, uint64_t within_ms)
{
	uint64_t end = now_ms() + within_ms;
	char resp[512];
	size_t len = 0;

	while (now_ms() < end && len < sizeof(resp) - 1) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t n;

		assert_int_equal(loop_run_once(l, 20), 0);
		if (poll(&p, 1, 0) != 1)
			continue;
		n = read(fd, resp + len, sizeof(resp) - 1 - len);
		if (n <= 0)
			break; /* closed: answered in full, or refused */
		len += (size_t)n;
	}
	resp[len] = '\0';
	return strncmp(resp, "HTTP/1.1 200 ", 13) == 0 && strstr(resp, "\r\n\r\nok\n") != NULL;
}

/* One peer cannot hold more than OP_HTTPD_MAX_PER_PEER connections: past
 * that its own idle ones are closed (when slots run out at once, else once
 * their grace is over), and nobody else's is touched. Before, client A's
 * 40 idle connections filled every slot and pushed out client B's probe,
 * whose request was already sent, as the oldest idle connection; and A
 * kept 32. */
static void test_one_peer_cannot_crowd_out_probes_from_another(void **state)
{
	struct loop *l;
	struct op_httpd *s;
	char err[256];
	int a[3 * 40], na = 0, open_a = 0, i, round, again;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(op_httpd_start(l, "127.0.0.1:0", handler, NULL, &s, err, sizeof(err)), 0);
	for (round = 0; round < 3; round++) {
		/* B's probe is in the backlog, request sent, before A's flood. */
		int b = connect_from(s, "127.0.0.3");

		send_probe(b);
		for (i = 0; i < 40; i++)
			a[na++] = connect_from(s, "127.0.0.2");
		if (!probe_answered(l, b, 1000))
			fail_msg("round %d: B's /healthz was not answered", round);
		close(b);
	}
	open_a = wait_open(l, a, na, OP_HTTPD_MAX_PER_PEER, 1000);
	print_message("A: %d of %d connections left open\n", open_a, na);
	assert_int_equal(open_a, OP_HTTPD_MAX_PER_PEER);
	assert_int_equal(op_httpd_peer_shed(s), (uint64_t)(na - OP_HTTPD_MAX_PER_PEER));

	/* A probe from A's own address is let in too: A's oldest idle
	 * connection makes way, and A still holds no more than its limit. */
	again = connect_from(s, "127.0.0.2");
	send_probe(again);
	assert_true(probe_answered(l, again, 1000));
	close(again);
	assert_int_equal(count_open(a, na), OP_HTTPD_MAX_PER_PEER - 1);
	for (i = 0; i < na; i++)
		close(a[i]);
	op_httpd_free(s);
	loop_free(l);
}

/* A connection whose request head is already in its socket is no idle
 * client. Here A sends a request and then opens 40 more connections, all
 * before the server runs, so it accepts them in one turn, before it has
 * read anything, and runs out of slots: A's request is read, found whole,
 * and answered, and A's idle ones make way instead. */
static void test_request_already_sent_is_answered_not_evicted(void **state)
{
	struct loop *l;
	struct op_httpd *s;
	char err[256];
	int a[41], i;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(op_httpd_start(l, "127.0.0.1:0", handler, NULL, &s, err, sizeof(err)), 0);
	a[0] = connect_from(s, "127.0.0.2");
	send_probe(a[0]); /* the oldest, and the only one with a request */
	for (i = 1; i < 41; i++)
		a[i] = connect_from(s, "127.0.0.2");
	assert_true(probe_answered(l, a[0], 1000));
	close(a[0]);
	a[0] = -1;
	assert_int_equal(wait_open(l, a, 41, OP_HTTPD_MAX_PER_PEER, 1000), OP_HTTPD_MAX_PER_PEER);
	assert_int_equal(op_httpd_peer_shed(s), 40 - OP_HTTPD_MAX_PER_PEER);
	for (i = 1; i < 41; i++)
		close(a[i]);
	op_httpd_free(s);
	loop_free(l);
}

/* A connection that cannot take its response: a small receive buffer and
 * nobody reading. */
static int connect_slow_reader(const struct op_httpd *s, const char *src)
{
	int fd, small = 4096;
	struct sockaddr_in from = {.sin_family = AF_INET};
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	                         .sin_port = htons((uint16_t)op_httpd_port(s))};

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
	assert_int_equal(inet_pton(AF_INET, src, &from.sin_addr), 1);
	assert_int_equal(bind(fd, (struct sockaddr *)&from, sizeof(from)), 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* When every one of a peer's connections is sending a response, there is
 * nothing of its own to make way, so its next connection is closed at
 * accept; others still get in, and once one of its connections ends the
 * peer may connect again. */
static void test_peer_at_limit_mid_response_is_refused_until_one_ends(void **state)
{
	static const char big[] = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
	struct loop *l;
	struct op_httpd *s;
	char err[256];
	int a[OP_HTTPD_MAX_PER_PEER], extra, b, i, started = 0, answered = 0;
	uint64_t end;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(op_httpd_start(l, "127.0.0.1:0", handler, NULL, &s, err, sizeof(err)), 0);
	for (i = 0; i < OP_HTTPD_MAX_PER_PEER; i++) {
		a[i] = connect_slow_reader(s, "127.0.0.2");
		assert_int_equal(write(a[i], big, sizeof(big) - 1), (ssize_t)(sizeof(big) - 1));
	}
	/* Each is answering once its first response bytes arrive. */
	for (end = now_ms() + 2000; started < OP_HTTPD_MAX_PER_PEER && now_ms() < end;) {
		assert_int_equal(loop_run_once(l, 20), 0);
		for (i = 0, started = 0; i < OP_HTTPD_MAX_PER_PEER; i++) {
			struct pollfd p = {.fd = a[i], .events = POLLIN};
			started += poll(&p, 1, 0) == 1;
		}
	}
	assert_int_equal(started, OP_HTTPD_MAX_PER_PEER);

	extra = connect_from(s, "127.0.0.2");
	send_probe(extra);
	assert_false(probe_answered(l, extra, 1000));
	close(extra);
	assert_int_equal(op_httpd_peer_shed(s), 1);
	b = connect_from(s, "127.0.0.3");
	send_probe(b);
	assert_true(probe_answered(l, b, 1000));
	close(b);

	/* One of A's ends; the server sees it on its next turn, so A retries
	 * (bounded) until it is let in. */
	close(a[0]);
	for (end = now_ms() + 1000; !answered && now_ms() < end;) {
		extra = connect_from(s, "127.0.0.2");
		send_probe(extra);
		answered = probe_answered(l, extra, 500);
		close(extra);
	}
	assert_true(answered);
	for (i = 1; i < OP_HTTPD_MAX_PER_PEER; i++)
		close(a[i]);
	op_httpd_free(s);
	loop_free(l);
}

/* Waits (bounded) until the server has closed `fd`: EOF or a reset. */
static int closed_by_peer(struct loop *l, int fd, uint64_t within_ms)
{
	uint64_t end = now_ms() + within_ms;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char c;

	while (now_ms() < end) {
		assert_int_equal(loop_run_once(l, 20), 0);
		if (poll(&p, 1, 0) == 1) {
			ssize_t n = read(fd, &c, 1);
			return n == 0 || (n < 0 && errno == ECONNRESET);
		}
	}
	return 0;
}

/* With the process out of file descriptors, a pending connection is shed
 * (accepted and closed) rather than left in the backlog, where it would
 * keep the level-triggered listener readable and the loop at 100% CPU.
 * Once descriptors are back, probes are answered again. */
static void test_listener_does_not_spin_when_descriptors_run_out(void **state)
{
	struct loop *l;
	struct op_httpd *s;
	char err[256];
	struct res a = {0};
	struct rlimit old, low;
	int client, fills[256], nfill = 0, iters = 0, fd;
	uint64_t end;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	assert_int_equal(op_httpd_start(l, "127.0.0.1:0", handler, NULL, &s, err, sizeof(err)), 0);
	client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(client >= 0 && client < 100);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = 128;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	while ((fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0) {
		assert_true(nfill < 256);
		fills[nfill++] = fd;
	}
	assert_int_equal(errno, EMFILE);
	{
		struct sockaddr_in sa = {.sin_family = AF_INET,
		                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
		                         .sin_port = htons((uint16_t)op_httpd_port(s))};
		assert_int_equal(connect(client, (struct sockaddr *)&sa, sizeof(sa)), 0);
	}
	/* An idle loop waits in epoll; a spinning one returns at once. */
	for (end = now_ms() + 300; now_ms() < end; iters++)
		assert_int_equal(loop_run_once(l, 50), 0);
	print_message("loop iterations in 300 ms at EMFILE: %d\n", iters);
	assert_true(iters <= 20);
	assert_true(closed_by_peer(l, client, 2000));
	close(client);

	while (nfill > 0)
		close(fills[--nfill]);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	fetch(l, op_httpd_port(s), "/healthz", NULL, &a);
	assert_int_equal(a.rc, CURLE_OK);
	assert_int_equal(a.status, 200);
	loop_buf_free(&a.body);
	op_httpd_free(s);
	loop_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_serves_get_404_and_405_while_a_client_stalls),
	        cmocka_unit_test(test_bad_address_is_a_clear_error),
	        cmocka_unit_test(test_listen_address_table),
	        cmocka_unit_test(test_listens_on_every_address_and_on_ipv6),
	        cmocka_unit_test(test_healthz_answered_while_40_idle_connections_are_open),
	        cmocka_unit_test(test_listener_does_not_spin_when_descriptors_run_out),
	        cmocka_unit_test(test_one_peer_cannot_crowd_out_probes_from_another),
	        cmocka_unit_test(test_request_already_sent_is_answered_not_evicted),
	        cmocka_unit_test(test_peer_at_limit_mid_response_is_refused_until_one_ends),
	};
	curl_global_init(CURL_GLOBAL_DEFAULT);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
