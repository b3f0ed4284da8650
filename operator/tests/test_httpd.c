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
	};
	curl_global_init(CURL_GLOBAL_DEFAULT);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
