/* capture/tests/test_pusher.c: the pusher and the profefe client against a
 * fake profefe (a thread of this test on 127.0.0.1) that can be told to
 * answer 200, 503 or 400: retries keep order, 4xx is final, a full spool
 * reports drops, and a clean shutdown spools what was in flight. The real
 * profefe runs in cap_integration. */
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

#include "capture/profefe.h"
#include "loop/loop.h"

enum { MODE_OK, MODE_503, MODE_400, MODE_SLOW, MODE_HANG };
static atomic_int mode;
static int srv_fd;
static unsigned srv_port;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char received[256][32]; /* instance_id of each stored push, in order */
static int nreceived;
static char last_ua[128], last_query[1024];

static void *serve_one(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char req[65536];
	size_t n = 0;
	char *hend = NULL;
	while (n < sizeof(req) - 1 && hend == NULL) {
		ssize_t r = recv(fd, req + n, sizeof(req) - 1 - n, 0);
		if (r <= 0)
			goto out;
		n += (size_t)r;
		req[n] = '\0';
		hend = strstr(req, "\r\n\r\n");
	}
	char *cl = strcasestr(req, "Content-Length:");
	size_t want = cl ? strtoul(cl + 15, NULL, 10) : 0;
	while (hend && n - (size_t)(hend + 4 - req) < want && n < sizeof(req) - 1) {
		ssize_t r = recv(fd, req + n, sizeof(req) - 1 - n, 0);
		if (r <= 0)
			goto out;
		n += (size_t)r;
	}
	req[n] = '\0';
	int m = atomic_load(&mode);
	char body[256], hdr[512];
	int code = 200;
	pthread_mutex_lock(&mu);
	char *ua = strcasestr(req, "User-Agent: ");
	if (ua)
		sscanf(ua + 12, "%127[^\r]", last_ua);
	sscanf(req, "%*s %1023s", last_query);
	pthread_mutex_unlock(&mu);
	if (m == MODE_SLOW)
		usleep(300 * 1000);
	if (m == MODE_HANG) {
		/* Accept the push and never answer: wait for the client to
		 * give up and close. */
		char c;
		while (recv(fd, &c, 1, 0) > 0)
			;
		goto out;
	}
	if (m == MODE_503) {
		code = 503;
		snprintf(body, sizeof(body), "{\"code\":503,\"error\":\"storage unavailable\"}");
	} else if (m == MODE_400) {
		code = 400;
		snprintf(body, sizeof(body), "{\"code\":400,\"error\":\"malformed profile\"}");
	} else {
		char inst[32] = "";
		char *p = strstr(req, "instance_id=");
		if (p)
			sscanf(p + 12, "%31[^& ]", inst);
		pthread_mutex_lock(&mu);
		snprintf(received[nreceived % 256], sizeof(received[0]), "%s", inst);
		int id = nreceived++;
		pthread_mutex_unlock(&mu);
		snprintf(body, sizeof(body),
		         "{\"code\":200,\"body\":{\"id\":\"id-%d\",\"type\":\"heap\",\"service\":"
		         "\"s\"}}",
		         id);
	}
	snprintf(hdr, sizeof(hdr),
	         "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
	         "Connection: close\r\n\r\n",
	         code, strlen(body));
	send(fd, hdr, strlen(hdr), MSG_NOSIGNAL);
	send(fd, body, strlen(body), MSG_NOSIGNAL);
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

struct env {
	struct loop *l;
	struct cap_profefe *c;
	char dir[64];
};

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	char url[64];
	snprintf(e->dir, sizeof(e->dir), "/tmp/cap-pusher-XXXXXX");
	if (mkdtemp(e->dir) == NULL || loop_new(&e->l) < 0)
		return -1;
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/", srv_port);
	if (cap_profefe_new(e->l, url, NULL, &e->c) < 0)
		return -1;
	pthread_mutex_lock(&mu);
	nreceived = 0;
	pthread_mutex_unlock(&mu);
	atomic_store(&mode, MODE_OK);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;
	char cmd[128];
	cap_profefe_free(e->c);
	loop_free(e->l);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
	free(e);
	return system(cmd) == 0 ? 0 : -1;
}

struct tally {
	int ok, http, dropped, other;
	long last_status;
	char last_msg[128], last_id[32];
};

static void on_result(void *arg, const struct cap_push_meta *m, enum cap_result res, long status,
                      const char *message, const char *id)
{
	struct tally *t = arg;
	if (res == CAP_RES_OK)
		t->ok++;
	else if (res == CAP_RES_HTTP)
		t->http++;
	else if (res == CAP_RES_DROPPED)
		t->dropped++;
	else
		t->other++;
	t->last_status = status;
	snprintf(t->last_msg, sizeof(t->last_msg), "%s", message ? message : "");
	snprintf(t->last_id, sizeof(t->last_id), "%s", id ? id : "");
}

static void submit(struct cap_pusher *p, int i)
{
	char inst[16];
	snprintf(inst, sizeof(inst), "i%d", i);
	struct cap_push_meta m = {.service = "svc",
	                          .type = "heap",
	                          .labels = "a=b,c=d%2Ce",
	                          .instance_id = inst,
	                          .origin = inst,
	                          .created_ms = 1136214245000};
	char *body = malloc(100);
	memset(body, 'p', 100);
	assert_int_equal(cap_pusher_submit_take(p, &m, body, 100), 0);
}

static void run_until(struct loop *l, int (*done)(void *), void *arg, int ms)
{
	for (int i = 0; i < ms / 10 && !done(arg); i++)
		loop_run_once(l, 10);
}

static int is_idle(void *p)
{
	return cap_pusher_idle(p);
}

static void test_pusher_direct_push(void **state)
{
	struct env *e = *state;
	struct cap_pusher *p;
	struct tally t = {0};
	struct cap_pusher_opts o = {.spool_dir = e->dir};
	assert_int_equal(cap_pusher_new(e->l, e->c, &o, on_result, &t, &p), 0);
	submit(p, 0);
	run_until(e->l, is_idle, p, 3000);
	assert_int_equal(t.ok, 1);
	assert_string_equal(t.last_id, "id-0");
	/* The query: every parameter escaped once more, labels included. */
	assert_string_equal(last_query,
	                    "/api/0/profiles?service=svc&type=heap&labels=a%3Db%2Cc%3Dd%252Ce"
	                    "&created_at=2006-01-02T15%3A04%3A05&instance_id=i0");
	assert_true(strncmp(last_ua, "profefe-operator/", 17) == 0);
	struct cap_pusher_stats st;
	cap_pusher_stats(p, &st);
	assert_int_equal(st.delivered, 1);
	assert_int_equal(st.retries, 0);
	cap_pusher_free(p);
}

static void test_pusher_5xx_spools_and_replays_in_order(void **state)
{
	struct env *e = *state;
	struct cap_pusher *p;
	struct tally t = {0};
	struct cap_pusher_opts o = {.spool_dir = e->dir,
	                            .backoff_base_ms = 50,
	                            .backoff_max_ms = 200,
	                            .replay_inflight = 1};
	struct cap_pusher_stats st;
	assert_int_equal(cap_pusher_new(e->l, e->c, &o, on_result, &t, &p), 0);
	atomic_store(&mode, MODE_503);
	for (int i = 0; i < 8; i++) {
		submit(p, i);
		loop_run_once(e->l, 5);
	}
	for (int i = 0; i < 60; i++)
		loop_run_once(e->l, 10);
	cap_pusher_stats(p, &st);
	assert_int_equal(st.spool_files, 8);
	assert_int_equal(t.ok + t.http + t.other, 0);
	assert_true(st.retries > 0);
	/* Waiting for the retry timer, or a probe in flight. */
	assert_true(st.profefe_down || st.inflight == 1);
	atomic_store(&mode, MODE_OK);
	run_until(e->l, is_idle, p, 5000);
	assert_int_equal(t.ok, 8);
	/* One replay at a time: exactly the order they were captured in. */
	char got[8][32];
	int n;
	pthread_mutex_lock(&mu);
	n = nreceived;
	memcpy(got, received, sizeof(got));
	pthread_mutex_unlock(&mu);
	for (int i = 0; i < n && i < 8; i++)
		print_message("received %s\n", got[i]);
	assert_int_equal(n, 8);
	for (int i = 0; i < 8; i++) {
		char want[16];
		snprintf(want, sizeof(want), "i%d", i);
		assert_string_equal(got[i], want);
	}
	cap_pusher_free(p);
}

static void test_pusher_4xx_is_final(void **state)
{
	struct env *e = *state;
	struct cap_pusher *p;
	struct tally t = {0};
	struct cap_pusher_opts o = {.spool_dir = e->dir};
	struct cap_pusher_stats st;
	assert_int_equal(cap_pusher_new(e->l, e->c, &o, on_result, &t, &p), 0);
	atomic_store(&mode, MODE_400);
	submit(p, 0);
	run_until(e->l, is_idle, p, 3000);
	assert_int_equal(t.http, 1);
	assert_int_equal(t.last_status, 400);
	assert_string_equal(t.last_msg, "malformed profile");
	cap_pusher_stats(p, &st);
	assert_int_equal(st.rejected, 1);
	assert_int_equal(st.spool_files, 0);
	assert_int_equal(st.retries, 0);
	cap_pusher_free(p);
}

static void test_pusher_full_spool_reports_drops(void **state)
{
	struct env *e = *state;
	struct cap_pusher *p;
	struct tally t = {0};
	/* Room for two ~250-byte entries. */
	struct cap_pusher_opts o = {
	        .spool_dir = e->dir, .spool_max_bytes = 600, .backoff_base_ms = 5000};
	struct cap_pusher_stats st;
	assert_int_equal(cap_pusher_new(e->l, e->c, &o, on_result, &t, &p), 0);
	atomic_store(&mode, MODE_503);
	submit(p, 0);
	for (int i = 0; i < 30; i++)
		loop_run_once(e->l, 10);
	for (int i = 1; i < 5; i++)
		submit(p, i);
	cap_pusher_stats(p, &st);
	assert_int_equal(st.spool_files, 2);
	assert_int_equal(st.drops, 3);
	/* Reported from the loop, not from inside submit. */
	for (int i = 0; i < 100 && t.dropped < 3; i++)
		loop_run_once(e->l, 10);
	assert_int_equal(t.dropped, 3);
	cap_pusher_free(p);
}

static void test_pusher_free_spools_inflight_and_restart_delivers(void **state)
{
	struct env *e = *state;
	struct cap_pusher *p;
	struct tally t = {0};
	struct cap_pusher_opts o = {.spool_dir = e->dir};
	struct cap_pusher_stats st;
	atomic_store(&mode, MODE_SLOW);
	assert_int_equal(cap_pusher_new(e->l, e->c, &o, on_result, &t, &p), 0);
	submit(p, 0);
	submit(p, 1);
	loop_run_once(e->l, 20);
	cap_pusher_stats(p, &st);
	assert_int_equal(st.inflight, 2);
	cap_pusher_free(p); /* shutdown while pushes run */
	assert_int_equal(t.ok + t.http + t.other + t.dropped, 0);
	atomic_store(&mode, MODE_OK);
	assert_int_equal(cap_pusher_new(e->l, e->c, &o, on_result, &t, &p), 0);
	cap_pusher_stats(p, &st);
	assert_int_equal(st.spool_files, 2);
	run_until(e->l, is_idle, p, 5000);
	/* At least once: the slow server may have stored them before the cancel. */
	assert_int_equal(t.ok, 2);
	cap_pusher_free(p);
}

static void test_pusher_stays_down_while_probes_hang(void **state)
{
	struct env *e = *state;
	struct cap_profefe *c;
	struct cap_pusher *p;
	struct tally t = {0};
	struct cap_profefe_opts co = {.timeout_ms = 300};
	struct cap_pusher_opts o = {
	        .spool_dir = e->dir, .backoff_base_ms = 40, .backoff_max_ms = 80};
	struct cap_pusher_stats st;
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/", srv_port);
	assert_int_equal(cap_profefe_new(e->l, url, &co, &c), 0);
	assert_int_equal(cap_pusher_new(e->l, c, &o, on_result, &t, &p), 0);
	atomic_store(&mode, MODE_HANG);
	submit(p, 0);
	/* The first push times out: profefe is down. */
	for (int i = 0; i < 300; i++) {
		cap_pusher_stats(p, &st);
		if (st.profefe_down)
			break;
		loop_run_once(e->l, 10);
	}
	assert_int_equal(st.profefe_down, 1);
	/* Retry probes start and hang in turn; profefe stays down throughout. */
	uint64_t r0 = st.retries;
	for (int i = 0; i < 500 && st.retries < r0 + 2; i++) {
		loop_run_once(e->l, 10);
		cap_pusher_stats(p, &st);
		assert_int_equal(st.profefe_down, 1);
	}
	assert_true(st.retries >= r0 + 2);
	assert_int_equal(t.ok, 0);
	/* profefe answers again: the next probe delivers and clears the flag. */
	atomic_store(&mode, MODE_OK);
	for (int i = 0; i < 500; i++) {
		cap_pusher_stats(p, &st);
		if (!st.profefe_down && t.ok == 1)
			break;
		loop_run_once(e->l, 10);
	}
	assert_int_equal(st.profefe_down, 0);
	assert_int_equal(t.ok, 1);
	assert_int_equal(st.spool_files, 0);
	cap_pusher_free(p);
	cap_profefe_free(c);
}

static void test_pusher_result_never_runs_inside_submit(void **state)
{
	struct env *e = *state;
	struct cap_pusher *p;
	struct tally t = {0};
	/* Room for two ~250-byte entries; no retry during the test. */
	struct cap_pusher_opts o = {
	        .spool_dir = e->dir, .spool_max_bytes = 600, .backoff_base_ms = 5000};
	struct cap_pusher_stats st;
	assert_int_equal(cap_pusher_new(e->l, e->c, &o, on_result, &t, &p), 0);
	atomic_store(&mode, MODE_503);
	submit(p, 0);
	for (int i = 0; i < 300; i++) {
		cap_pusher_stats(p, &st);
		if (st.spool_files == 1)
			break;
		loop_run_once(e->l, 10);
	}
	assert_int_equal(st.spool_files, 1);
	submit(p, 1);
	assert_int_equal(t.dropped, 0);
	/* The third profile drops the oldest from the spool, inside submit:
	 * the caller has not counted its submission yet, so the result must
	 * wait for the loop. */
	submit(p, 2);
	cap_pusher_stats(p, &st);
	assert_int_equal(st.drops, 1);
	assert_int_equal(t.dropped, 0);
	for (int i = 0; i < 100 && t.dropped == 0; i++)
		loop_run_once(e->l, 10);
	assert_int_equal(t.dropped, 1);
	assert_int_equal(t.ok + t.http + t.other, 0);
	cap_pusher_free(p);
}

struct flushed {
	int calls, flushed;
};

static void on_flushed(void *arg, int flushed)
{
	struct flushed *f = arg;
	f->calls++;
	f->flushed = flushed;
}

static void run_until_flushed(struct loop *l, struct flushed *f, int ms)
{
	for (int i = 0; i < ms / 10 && f->calls == 0; i++)
		loop_run_once(l, 10);
}

static void test_pusher_flush_waits_for_pushes_in_flight(void **state)
{
	struct env *e = *state;
	struct cap_pusher *p;
	struct tally t = {0};
	struct flushed fl = {0}, fl2 = {0};
	struct cap_pusher_stats st;
	/* An in-memory spool: what is in flight at free() would be lost. */
	assert_int_equal(cap_pusher_new(e->l, e->c, NULL, on_result, &t, &p), 0);
	atomic_store(&mode, MODE_SLOW);
	submit(p, 0);
	submit(p, 1);
	cap_pusher_stats(p, &st);
	assert_int_equal(st.inflight, 2);
	assert_int_equal(cap_pusher_flushed(p), 0);
	assert_int_equal(cap_pusher_flush(p, 5000, on_flushed, &fl), 0);
	assert_int_equal(cap_pusher_flush(p, 5000, on_flushed, &fl2), -EBUSY);
	assert_int_equal(fl.calls, 0);
	run_until_flushed(e->l, &fl, 5000);
	assert_int_equal(fl.calls, 1);
	assert_int_equal(fl.flushed, 1);
	assert_int_equal(cap_pusher_flushed(p), 1);
	/* Both delivered and reported before the flush said so. */
	assert_int_equal(t.ok, 2);
	/* Already flushed: the callback still comes from the loop. */
	memset(&fl, 0, sizeof(fl));
	assert_int_equal(cap_pusher_flush(p, 5000, on_flushed, &fl), 0);
	assert_int_equal(fl.calls, 0);
	run_until_flushed(e->l, &fl, 1000);
	assert_int_equal(fl.calls, 1);
	assert_int_equal(fl.flushed, 1);
	assert_int_equal(fl2.calls, 0);
	cap_pusher_free(p);
}

static void test_pusher_flush_deadline_and_disk_spool(void **state)
{
	struct env *e = *state;
	struct cap_pusher *p;
	struct tally t = {0};
	struct flushed fl = {0};
	struct cap_pusher_stats st;
	struct cap_pusher_opts o = {.backoff_base_ms = 5000};
	atomic_store(&mode, MODE_503);
	/* In memory: a spooled profile keeps the pusher from being flushed,
	 * so the flush ends at its deadline. */
	assert_int_equal(cap_pusher_new(e->l, e->c, &o, on_result, &t, &p), 0);
	submit(p, 0);
	for (int i = 0; i < 300; i++) {
		cap_pusher_stats(p, &st);
		if (st.spool_files == 1 && st.inflight == 0)
			break;
		loop_run_once(e->l, 10);
	}
	assert_int_equal(st.spool_files, 1);
	assert_int_equal(cap_pusher_flushed(p), 0);
	assert_int_equal(cap_pusher_flush(p, 200, on_flushed, &fl), 0);
	run_until_flushed(e->l, &fl, 3000);
	assert_int_equal(fl.calls, 1);
	assert_int_equal(fl.flushed, 0);
	cap_pusher_free(p);
	/* On disk: the spooled profile survives a restart, so it does not
	 * hold the flush back. */
	o.spool_dir = e->dir;
	memset(&fl, 0, sizeof(fl));
	assert_int_equal(cap_pusher_new(e->l, e->c, &o, on_result, &t, &p), 0);
	submit(p, 1);
	assert_int_equal(cap_pusher_flush(p, 5000, on_flushed, &fl), 0);
	run_until_flushed(e->l, &fl, 5000);
	assert_int_equal(fl.calls, 1);
	assert_int_equal(fl.flushed, 1);
	cap_pusher_stats(p, &st);
	assert_int_equal(st.spool_files, 1);
	assert_int_equal(st.inflight, 0);
	cap_pusher_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_pusher_direct_push, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_pusher_5xx_spools_and_replays_in_order, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_pusher_4xx_is_final, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_pusher_full_spool_reports_drops, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(
	                test_pusher_free_spools_inflight_and_restart_delivers, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_pusher_stays_down_while_probes_hang, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_pusher_result_never_runs_inside_submit, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_pusher_flush_waits_for_pushes_in_flight, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_pusher_flush_deadline_and_disk_spool, setup,
	                                        teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
