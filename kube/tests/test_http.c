/* kube/tests/test_http.c: requests and the live informer against a
 * scripted HTTP server on 127.0.0.1, in-process on the same loop:
 * Retry-After, body caps, timeouts, the 401 token reread, and an informer
 * through pagination, a dropped watch, a 410 and a relist. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kube/kube_int.h"
#include "kube/tests/srv.h"
#include "loop/loop.h"

static char tmpdir[64];

struct result {
	int done;
	long status;
	int err;
	char body[256];
};

static void on_done(void *arg, const struct kube_response *r)
{
	struct result *res = arg;

	res->done = 1;
	res->status = r->status;
	res->err = r->err;
	snprintf(res->body, sizeof(res->body), "%s", r->body);
}

/* ---- requests ------------------------------------------------------ */

static int script_retry_after(struct srv *s, int i, const char *m, const char *p, char *resp,
                              size_t n)
{
	(void)s;
	(void)m;
	(void)p;
	if (i == 0)
		srv_reply(resp, n, 429, "Retry-After: 1\r\n", "{\"kind\":\"Status\",\"code\":429}");
	else if (i == 1)
		srv_reply(resp, n, 503, "Retry-After: 1\r\n", "{}");
	else
		srv_reply(resp, n, 200, NULL, "{\"ok\":true}");
	return 1;
}

static void test_retry_after_is_honoured(void **state)
{
	struct loop *l;
	struct srv s = {.script = script_retry_after};
	struct result res = {0};
	struct kube_client *kc;
	uint64_t t0;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	srv_start(&s, l);
	kc = srv_client(l, tmpdir, s.port, "token: t");
	t0 = loop_now_ms(l);
	assert_int_equal(kube_request(kc, "GET", "/api/v1/pods", NULL, NULL, on_done, &res, NULL),
	                 0);
	srv_run_until(l, &res.done, 10000);
	assert_true(res.done);
	assert_int_equal(res.status, 200);
	assert_int_equal(s.nreq, 3);
	assert_true(loop_now_ms(l) - t0 >= 1900);
	assert_string_equal(s.reqs[0], "GET /api/v1/pods|Bearer t");
	kube_client_free(kc);
	srv_stop(&s);
	loop_free(l);
}

static int script_503_plain(struct srv *s, int i, const char *m, const char *p, char *resp,
                            size_t n)
{
	(void)s;
	(void)i;
	(void)m;
	(void)p;
	srv_reply(resp, n, 503, NULL, "{\"kind\":\"Status\",\"message\":\"busy\"}");
	return 1;
}

static void test_5xx_without_retry_after_is_returned(void **state)
{
	struct loop *l;
	struct srv s = {.script = script_503_plain};
	struct result res = {0};
	struct kube_client *kc;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	srv_start(&s, l);
	kc = srv_client(l, tmpdir, s.port, "token: t");
	assert_int_equal(kube_request_raw(kc, "POST", "/x", "{}", 2, NULL, on_done, &res, NULL), 0);
	srv_run_until(l, &res.done, 5000);
	assert_int_equal(res.status, 503);
	assert_int_equal(s.nreq, 1);
	kube_client_free(kc);
	srv_stop(&s);
	loop_free(l);
}

static int script_big(struct srv *s, int i, const char *m, const char *p, char *resp, size_t n)
{
	static char body[3000];

	(void)s;
	(void)i;
	(void)m;
	if (!strcmp(p, "/hang"))
		return 0;
	memset(body, 'x', sizeof(body) - 1);
	srv_reply(resp, n, 200, NULL, body);
	return 1;
}

static void test_body_cap_and_timeout(void **state)
{
	struct loop *l;
	struct srv s = {.script = script_big};
	struct result res = {0}, res2 = {0};
	struct kube_req_opts capped = {.max_body = 1000}, quick = {.timeout_ms = 300};
	struct kube_client *kc;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	srv_start(&s, l);
	kc = srv_client(l, tmpdir, s.port, "token: t");
	assert_int_equal(kube_request(kc, "GET", "/big", NULL, &capped, on_done, &res, NULL), 0);
	assert_int_equal(kube_request(kc, "GET", "/hang", NULL, &quick, on_done, &res2, NULL), 0);
	srv_run_until(l, &res.done, 5000);
	srv_run_until(l, &res2.done, 5000);
	assert_int_equal(res.err, -EFBIG);
	assert_int_equal(res2.err, -ETIMEDOUT);
	kube_client_free(kc);
	srv_stop(&s);
	loop_free(l);
}

static int script_60k(struct srv *s, int i, const char *m, const char *p, char *resp, size_t n)
{
	static char body[60000];

	(void)s;
	(void)i;
	(void)m;
	(void)p;
	memset(body, 'x', sizeof(body) - 1);
	srv_reply(resp, n, 200, NULL, body);
	return 1;
}

struct slow_stream {
	struct loop *l;
	uint64_t iters[64]; /* the loop iteration of each call */
	int calls;
	size_t bytes;
};

/* How many iterations the loop has run: each is counted in one bucket. */
static uint64_t loop_iterations(struct loop *l)
{
	struct loop_stalls st;
	uint64_t n = 0;

	loop_stalls_get(l, &st);
	for (size_t i = 0; i <= LOOP_STALL_NBOUNDS; i++)
		n += st.counts[i];
	return n;
}

/* Keeps the CPU busy for `ms`: work a callback cannot yield in. */
static void spin_ms(long ms)
{
	struct timespec a, b;

	clock_gettime(CLOCK_MONOTONIC, &a);
	do
		clock_gettime(CLOCK_MONOTONIC, &b);
	while ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) < ms * 1000000L);
}

/* Each chunk costs 12 ms, more than the loop's yield budget. */
static int slow_chunk(void *arg, const char *p, size_t n)
{
	struct slow_stream *ss = arg;

	(void)p;
	if (ss->calls < 64)
		ss->iters[ss->calls] = loop_iterations(ss->l);
	ss->calls++;
	ss->bytes += n;
	spin_ms(12);
	return 0;
}

/* A list read as it arrives yields to the loop: once an iteration has
 * been busy past its budget, the rest of the body waits for the next one,
 * so every chunk of a slow consumer gets an iteration of its own. */
static void test_list_stream_yields_to_the_loop(void **state)
{
	struct loop *l;
	struct srv s = {.script = script_60k};
	struct result res = {0};
	struct slow_stream ss = {0};
	struct kube_req_opts o = {.timeout_ms = 20000};
	struct kube_client *kc;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	ss.l = l;
	srv_start(&s, l);
	kc = srv_client(l, tmpdir, s.port, "token: t");
	assert_int_equal(kube__request_stream_opts(kc, "/api/v1/pods?limit=500", &o, slow_chunk,
	                                           &ss, on_done, &res, NULL),
	                 0);
	srv_run_until(l, &res.done, 20000);
	assert_int_equal(res.status, 200);
	assert_int_equal(ss.bytes, 59999);
	assert_true(ss.calls >= 2 && ss.calls <= 64);
	for (int i = 1; i < ss.calls; i++)
		if (ss.iters[i] == ss.iters[i - 1])
			fail_msg("chunks %d and %d (of %d) ran in one loop iteration", i - 1, i,
			         ss.calls);
	kube_client_free(kc);
	srv_stop(&s);
	loop_free(l);
}

static int script_auth(struct srv *s, int i, const char *m, const char *p, char *resp, size_t n)
{
	(void)i;
	(void)m;
	(void)p;
	if (strstr(s->reqs[s->nreq - 1], "Bearer new"))
		srv_reply(resp, n, 200, NULL, "{}");
	else
		srv_reply(resp, n, 401, NULL, "{\"kind\":\"Status\",\"code\":401}");
	return 1;
}

static void test_401_rereads_token_file(void **state)
{
	struct loop *l;
	struct srv s = {.script = script_auth};
	struct result res = {0};
	struct kube_client *kc;
	char tf[128], user[200];
	FILE *f;

	(void)state;
	snprintf(tf, sizeof(tf), "%s/token", tmpdir);
	f = fopen(tf, "w");
	fputs("old\n", f);
	fclose(f);
	assert_int_equal(loop_new(&l), 0);
	srv_start(&s, l);
	snprintf(user, sizeof(user), "tokenFile: '%s'", tf);
	kc = srv_client(l, tmpdir, s.port, user);
	assert_string_equal(kube__client_token(kc), "old");
	f = fopen(tf, "w");
	fputs("new\n", f);
	fclose(f);
	assert_int_equal(kube_request(kc, "GET", "/x", NULL, NULL, on_done, &res, NULL), 0);
	srv_run_until(l, &res.done, 5000);
	assert_int_equal(res.status, 200);
	assert_int_equal(s.nreq, 2);
	assert_string_equal(s.reqs[0], "GET /x|Bearer old");
	assert_string_equal(s.reqs[1], "GET /x|Bearer new");
	kube_client_free(kc);
	srv_stop(&s);
	loop_free(l);
}

static int script_hang(struct srv *s, int i, const char *m, const char *p, char *resp, size_t n)
{
	(void)s;
	(void)i;
	(void)m;
	(void)p;
	(void)resp;
	(void)n;
	return 0;
}

static struct json_object *never_called(void *arg, struct json_object *cur)
{
	(void)arg;
	(void)cur;
	fail_msg("mutate ran");
	return NULL;
}

static void must_not_run(void *arg, const struct kube_response *r)
{
	(void)arg;
	(void)r;
	fail_msg("callback ran after the client was freed");
}

/* Freeing the client abandons calls and multi-request operations without
 * their callbacks, and leaks nothing (checked under ASan). */
static void test_client_free_abandons_everything(void **state)
{
	struct loop *l;
	struct srv s = {.script = script_hang};
	struct kube_client *kc;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	srv_start(&s, l);
	kc = srv_client(l, tmpdir, s.port, "token: t");
	assert_int_equal(kube_request(kc, "GET", "/a", NULL, NULL, must_not_run, NULL, NULL), 0);
	assert_int_equal(kube_create_or_update(kc, "/api/v1/namespaces/n/configmaps", "x",
	                                       never_called, NULL, must_not_run, NULL),
	                 0);
	SRV_RUN_WHILE_NOT(l, s.nreq >= 2, 30000);
	assert_int_equal(s.nreq, 2);
	kube_client_free(kc);
	for (int i = 0; i < 5; i++)
		loop_run_once(l, 10);
	srv_stop(&s);
	loop_free(l);
}

static int script_echo_ok(struct srv *s, int i, const char *m, const char *p, char *resp, size_t n)
{
	(void)s;
	(void)i;
	(void)m;
	(void)p;
	srv_reply(resp, n, 200, NULL, "{}");
	return 1;
}

static void tick(struct loop_timer *t)
{
	(*(int *)t->arg)++;
}

/* The exec plugin runs without blocking the loop: a timer fires while the
 * (slow) plugin works, requests wait for its credential, and all of them
 * share one run. */
static void test_exec_plugin_is_asynchronous(void **state)
{
	static const char script[] =
	        "#!/bin/sh\nsleep 0.5\necho run >> \"$(dirname \"$0\")/runs\"\n"
	        "echo '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":"
	        "\"ExecCredential\",\"status\":{\"token\":\"from-plugin\"}}'\n";
	struct loop *l;
	struct srv s = {.script = script_echo_ok};
	struct result a = {0}, b = {0};
	struct loop_timer t;
	struct kube_client *kc;
	char path[128], user[300];
	int ticks = 0;
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/plugin.sh", tmpdir);
	f = fopen(path, "w");
	fputs(script, f);
	fclose(f);
	chmod(path, 0700);
	assert_int_equal(loop_new(&l), 0);
	srv_start(&s, l);
	snprintf(user, sizeof(user),
	         "exec: {apiVersion: client.authentication.k8s.io/v1, command: '%s'}", path);
	kc = srv_client(l, tmpdir, s.port, user);
	loop_timer_init(&t, tick, &ticks);
	loop_timer_start(l, &t, 100);
	assert_int_equal(kube_request(kc, "GET", "/a", NULL, NULL, on_done, &a, NULL), 0);
	assert_int_equal(kube_request(kc, "GET", "/b", NULL, NULL, on_done, &b, NULL), 0);
	assert_int_equal(ticks, 0);
	srv_run_until(l, &b.done, 10000);
	srv_run_until(l, &a.done, 10000);
	assert_int_equal(ticks, 1);
	assert_int_equal(a.status, 200);
	assert_int_equal(b.status, 200);
	assert_int_equal(s.nreq, 2);
	assert_non_null(strstr(s.reqs[0], "|Bearer from-plugin"));
	assert_non_null(strstr(s.reqs[1], "|Bearer from-plugin"));
	snprintf(path, sizeof(path), "%s/runs", tmpdir);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(user, sizeof(user), f));
	assert_null(fgets(user, sizeof(user), f)); /* exactly one run */
	fclose(f);
	kube_client_free(kc);
	srv_stop(&s);
	loop_free(l);
}

static void test_exec_plugin_failure_fails_requests(void **state)
{
	struct loop *l;
	struct srv s = {.script = script_echo_ok};
	struct result a = {0};
	struct kube_client *kc;
	char user[300];

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	srv_start(&s, l);
	snprintf(user, sizeof(user),
	         "exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/false}");
	kc = srv_client(l, tmpdir, s.port, user);
	assert_int_equal(kube_request(kc, "GET", "/a", NULL, NULL, on_done, &a, NULL), 0);
	srv_run_until(l, &a.done, 10000);
	assert_true(a.done);
	assert_int_equal(a.err, -EACCES);
	assert_int_equal(s.nreq, 0);
	kube_client_free(kc);
	srv_stop(&s);
	loop_free(l);
}

/* Every answer comes 60 ms late; `step` keeps the most requests the
 * server has held unanswered at once. */
static int script_slow(struct srv *s, int i, const char *m, const char *p, char *resp, size_t n)
{
	(void)m;
	(void)p;
	if (i + 1 - s->nreplied > s->step)
		s->step = i + 1 - s->nreplied;
	s->delay_ms = 60;
	srv_reply(resp, n, 200, NULL, "{}");
	return 1;
}

/* A burst of requests is bounded: at most 16 are in flight and the rest
 * wait their turn (each on a connection of its own here, as HTTP/1.1
 * without keep-alive gives). An urgent request (leader election) skips
 * the wait. */
static void test_burst_waits_for_slots(void **state)
{
	struct kube_req_opts urgent = {.urgent = 1};
	struct srv s = {.script = script_slow};
	struct result res[24] = {{0}}, ures = {0};
	struct kube_client *kc;
	struct loop *l;
	char path[64];
	int all = 0, seen = -1;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	srv_start(&s, l);
	kc = srv_client(l, tmpdir, s.port, "token: t");
	for (int i = 0; i < 24; i++) {
		snprintf(path, sizeof(path), "/api/v1/namespaces/n%d/pods", i);
		assert_int_equal(kube_request(kc, "GET", path, NULL, NULL, on_done, &res[i], NULL),
		                 0);
	}
	assert_int_equal(kube_request(kc, "GET", "/urgent", NULL, &urgent, on_done, &ures, NULL),
	                 0);
	for (int t = 0; t < 400 && !all; t++) {
		loop_run_once(l, 20);
		all = ures.done;
		for (int i = 0; i < 24; i++)
			all &= res[i].done;
	}
	assert_true(all);
	for (int i = 0; i < 24; i++)
		assert_int_equal(res[i].status, 200);
	assert_int_equal(s.nreq, 25);
	for (int i = 0; i < 25; i++)
		if (!strncmp(s.reqs[i], "GET /urgent", 11))
			seen = i;
	printf("requests held unanswered at once: %d; the urgent one was request %d\n", s.step,
	       seen);
	assert_int_equal(s.step, 17);
	assert_true(seen >= 0 && seen <= 16);
	kube_client_free(kc);
	srv_stop(&s);
	loop_free(l);
}

/* Freeing a client with queued requests calls none of them back. */
static void test_free_with_queued_requests(void **state)
{
	struct srv s = {.script = script_slow};
	struct result res[20] = {{0}};
	struct kube_call *calls[20];
	struct kube_client *kc;
	struct loop *l;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	srv_start(&s, l);
	kc = srv_client(l, tmpdir, s.port, "token: t");
	for (int i = 0; i < 20; i++)
		assert_int_equal(
		        kube_request(kc, "GET", "/x", NULL, NULL, must_not_run, &res[i], &calls[i]),
		        0);
	/* Cancel one running and one queued; free the client with the rest. */
	kube_call_cancel(calls[0]);
	kube_call_cancel(calls[19]);
	kube_call_cancel(calls[17]);
	for (int t = 0; t < 3; t++)
		loop_run_once(l, 10);
	kube_client_free(kc);
	for (int t = 0; t < 10; t++)
		loop_run_once(l, 10);
	srv_stop(&s);
	loop_free(l);
}

/* ---- the live informer ---------------------------------------------- */

#define POD(name, rv)                                                                              \
	"{\"metadata\":{\"namespace\":\"ns\",\"name\":\"" name "\",\"resourceVersion\":\"" rv "\"" \
	"}}"

/* list page 1 (continue) -> page 2 -> watch that drops mid-stream -> watch
 * from the last RV answered 410 -> relist -> watch that hangs. */
static int script_informer(struct srv *s, int i, const char *m, const char *p, char *resp, size_t n)
{
	(void)s;
	(void)m;
	(void)p;
	switch (i) {
	case 0:
		srv_reply(resp, n, 200, NULL,
		          "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"10\","
		          "\"continue\":"
		          "\"c1\"},\"items\":[" POD("a", "5") "]}");
		return 1;
	case 1:
		srv_reply(
		        resp, n, 200, NULL,
		        "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"10\"},\"items\":"
		        "[" POD("b", "6") "]}");
		return 1;
	case 2: /* chunked, split mid-event, then the connection drops */
		snprintf(resp, n,
		         "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: "
		         "chunked\r\n\r\n%x\r\n%s\r\n%x\r\n%s\r\n",
		         (unsigned)strlen(
		                 "{\"type\":\"ADDED\",\"object\":" POD("c", "11") "}\n{\"ty"),
		         "{\"type\":\"ADDED\",\"object\":" POD("c", "11") "}\n{\"ty",
		         (unsigned)strlen("pe\":\"DELETED\",\"object\":" POD("a", "12") "}\n"),
		         "pe\":\"DELETED\",\"object\":" POD("a", "12") "}\n");
		return 1;
	case 3:
		srv_reply(resp, n, 410, NULL,
		          "{\"kind\":\"Status\",\"code\":410,\"reason\":\"Expired\"}");
		return 1;
	case 4:
		srv_reply(
		        resp, n, 200, NULL,
		        "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"20\"},\"items\":"
		        "[" POD("c", "11") "," POD("d", "19") "]}");
		return 1;
	default:
		return 0;
	}
}

struct inf_log {
	int adds, updates, deletes, synced;
	char deleted[8][16];
};

static void l_add(void *arg, const char *ns, const char *name, void *v)
{
	(void)ns;
	(void)name;
	(void)v;
	((struct inf_log *)arg)->adds++;
}

static void l_update(void *arg, const char *ns, const char *name, void *o, void *v)
{
	(void)ns;
	(void)name;
	(void)o;
	(void)v;
	((struct inf_log *)arg)->updates++;
}

static void l_delete(void *arg, const char *ns, const char *name, void *v)
{
	struct inf_log *lg = arg;

	(void)ns;
	(void)v;
	if (lg->deletes < 8)
		snprintf(lg->deleted[lg->deletes], 16, "%s", name);
	lg->deletes++;
}

static void l_synced(void *arg)
{
	((struct inf_log *)arg)->synced++;
}

static void test_informer_drop_410_relist(void **state)
{
	struct kube_informer_ops ops = {NULL, NULL, l_add, l_update, l_delete, l_synced};
	struct kube_informer_opts o = {.version = "v1",
	                               .resource = "pods",
	                               .ns = "ns",
	                               .page_size = 1,
	                               .label_selector = "app=x"};
	struct srv s = {.script = script_informer};
	struct inf_log lg = {0};
	struct kube_informer_stats st;
	struct kube_informer *inf;
	struct kube_client *kc;
	struct loop *l;
	int five = 0;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	srv_start(&s, l);
	kc = srv_client(l, tmpdir, s.port, "token: t");
	assert_int_equal(kube_informer_start(kc, &o, &ops, &lg, &inf), 0);
	for (int i = 0; i < 200 && !five; i++) {
		loop_run_once(l, 50);
		five = s.nreq >= 6 && lg.synced == 2;
	}
	assert_true(five);
	assert_string_equal(
	        s.reqs[0], "GET /api/v1/namespaces/ns/pods?limit=1&labelSelector=app%3Dx|Bearer t");
	assert_string_equal(s.reqs[1], "GET /api/v1/namespaces/ns/pods?limit=1&continue=c1"
	                               "&labelSelector=app%3Dx|Bearer t");
	assert_non_null(strstr(s.reqs[2], "?watch=1&resourceVersion=10&allowWatchBookmarks=true"
	                                  "&timeoutSeconds="));
	/* After the drop: re-watch from the last RV seen in the stream. */
	assert_non_null(strstr(s.reqs[3], "?watch=1&resourceVersion=12&"));
	/* After the 410: a fresh list with no resourceVersion. */
	assert_string_equal(
	        s.reqs[4], "GET /api/v1/namespaces/ns/pods?limit=1&labelSelector=app%3Dx|Bearer t");
	assert_non_null(strstr(s.reqs[5], "resourceVersion=20&"));
	/* Cache: a, b listed; c added, a deleted by the stream; relist {c, d}
	 * deletes b and adds d, and leaves c alone (same resourceVersion). */
	assert_int_equal(lg.adds, 4);
	assert_int_equal(lg.updates, 0);
	assert_int_equal(lg.deletes, 2);
	assert_string_equal(lg.deleted[0], "a");
	assert_string_equal(lg.deleted[1], "b");
	assert_int_equal(kube_informer_count(inf), 2);
	assert_non_null(kube_informer_get(inf, "ns", "c"));
	assert_non_null(kube_informer_get(inf, "ns", "d"));
	kube_informer_stats(inf, &st);
	assert_int_equal(st.lists, 2);
	assert_int_equal(st.relists_410, 1);
	assert_int_equal(st.restarts, 1);
	assert_int_equal(st.watches, 3);
	kube_informer_free(inf);
	kube_client_free(kc);
	srv_stop(&s);
	loop_free(l);
}

/* Two pages of 150 pods each, then a watch that hangs. */
static int script_big_list(struct srv *s, int i, const char *m, const char *p, char *resp, size_t n)
{
	char body[32768], *w = body;

	(void)s;
	(void)m;
	(void)p;
	if (i > 1)
		return 0;
	w += sprintf(w,
	             "{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":{"
	             "\"resourceVersion\":\"30\"%s},\"items\":[",
	             i == 0 ? ",\"continue\":\"c1\"" : "");
	for (int k = 0; k < 150; k++)
		w += sprintf(w,
		             "%s{\"metadata\":{\"namespace\":\"ns\",\"name\":\"p%d\","
		             "\"resourceVersion\":\"%d\"},\"status\":{\"phase\":\"Running\"}}",
		             k ? "," : "", i * 150 + k, i * 150 + k + 1);
	sprintf(w, "]}");
	srv_reply(resp, n, 200, NULL, body);
	return 1;
}

/* What a list costs in trees: the transform marks each tree it is handed
 * and json-c unmarks it when the tree is freed. */
struct tree_log {
	struct inf_log lg;
	int transforms, live, peak;
};

static void tree_gone(struct json_object *obj, void *ud)
{
	(void)obj;
	((struct tree_log *)ud)->live--;
}

static int tree_transform(void *arg, struct json_object *obj, void **value)
{
	struct tree_log *t = arg;

	t->transforms++;
	if (++t->live > t->peak)
		t->peak = t->live;
	json_object_set_userdata(obj, t, tree_gone);
	*value = strdup("v");
	return *value ? 0 : -1;
}

static void free_str(void *arg, void *value)
{
	(void)arg;
	free(value);
}

/* A live list is transformed item by item as the page arrives: at most one
 * item's tree is alive at a time, never a page of them. */
static void test_informer_list_one_tree_at_a_time(void **state)
{
	struct kube_informer_ops ops = {tree_transform, free_str, l_add,
	                                l_update,       l_delete, l_synced};
	struct kube_informer_opts o = {.version = "v1", .resource = "pods", .page_size = 150};
	struct srv s = {.script = script_big_list};
	struct tree_log t = {0};
	struct kube_informer *inf;
	struct kube_client *kc;
	struct loop *l;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	srv_start(&s, l);
	kc = srv_client(l, tmpdir, s.port, "token: t");
	assert_int_equal(kube_informer_start(kc, &o, &ops, &t, &inf), 0);
	SRV_RUN_WHILE_NOT(l, t.lg.synced && s.nreq >= 3, 30000);
	assert_int_equal(t.lg.synced, 1);
	assert_string_equal(s.reqs[1], "GET /api/v1/pods?limit=150&continue=c1|Bearer t");
	assert_int_equal(kube_informer_count(inf), 300);
	assert_int_equal(t.lg.adds, 300);
	assert_int_equal(t.transforms, 300);
	printf("list of 2 pages x 150 items: peak item trees alive at once %d\n", t.peak);
	assert_int_equal(t.peak, 1);
	assert_int_equal(t.live, 0);
	kube_informer_free(inf);
	kube_client_free(kc);
	srv_stop(&s);
	loop_free(l);
}

/* A list of 40 pods, then a watch that stays open after 40 MODIFIED
 * events of about 1 KB each. */
static int script_sliced(struct srv *s, int i, const char *m, const char *p, char *resp, size_t n)
{
	static char body[60000], pad[900];
	char *w = body;

	(void)m;
	(void)p;
	memset(pad, 'x', sizeof(pad) - 1);
	if (i == 0) {
		w += sprintf(w, "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"100\"},"
		                "\"items\":[");
		for (int k = 0; k < 40; k++)
			w += sprintf(w,
			             "%s{\"metadata\":{\"namespace\":\"ns\",\"name\":\"p%d\","
			             "\"resourceVersion\":\"%d\"}}",
			             k ? "," : "", k, k + 1);
		sprintf(w, "]}");
		srv_reply(resp, n, 200, NULL, body);
		return 1;
	}
	if (i == 1) {
		for (int k = 0; k < 40; k++)
			w += sprintf(
			        w,
			        "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"namespace\":"
			        "\"ns\",\"name\":\"p%d\",\"resourceVersion\":\"%d\","
			        "\"annotations\":{\"a\":\"%s\"}}}}\n",
			        k, 101 + k, pad);
		snprintf(resp, n, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n%s",
		         body);
		s->keep_open = 1;
		return 1;
	}
	return 0;
}

/* What the cache callbacks saw: the order, and the loop iteration of each. */
struct sliced_log {
	struct loop *l;
	int adds, updates, synced_at_adds, updates_before_sync;
	int per_iter_max;
	uint64_t cur_iter;
	int cur_n;
};

/* Each callback costs 3 ms, so a 10 ms budget holds about four. */
static void sliced_cost(struct sliced_log *g)
{
	uint64_t it = loop_iterations(g->l);

	if (it != g->cur_iter) {
		g->cur_iter = it;
		g->cur_n = 0;
	}
	if (++g->cur_n > g->per_iter_max)
		g->per_iter_max = g->cur_n;
	spin_ms(3);
}

static void sl_add(void *arg, const char *ns, const char *name, void *v)
{
	struct sliced_log *g = arg;

	(void)ns;
	(void)name;
	(void)v;
	g->adds++;
	sliced_cost(g);
}

static void sl_update(void *arg, const char *ns, const char *name, void *o, void *v)
{
	struct sliced_log *g = arg;

	(void)ns;
	(void)name;
	(void)o;
	(void)v;
	g->updates++;
	if (!g->synced_at_adds)
		g->updates_before_sync++;
	sliced_cost(g);
}

static void sl_synced(void *arg)
{
	struct sliced_log *g = arg;

	g->synced_at_adds = g->adds;
}

/* A list's differences and a burst of watch events are delivered a slice
 * per loop iteration, in order: every add before on_synced, every watch
 * event after it. Without slicing all 40 adds, then all 40 updates, ran
 * in one iteration each. */
static void test_informer_delivers_in_slices(void **state)
{
	struct kube_informer_ops ops = {NULL, NULL, sl_add, sl_update, NULL, sl_synced};
	struct kube_informer_opts o = {.version = "v1", .resource = "pods"};
	struct srv s = {.script = script_sliced};
	struct sliced_log g = {0};
	struct kube_informer *inf;
	struct kube_client *kc;
	struct loop *l;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	g.l = l;
	srv_start(&s, l);
	kc = srv_client(l, tmpdir, s.port, "token: t");
	assert_int_equal(kube_informer_start(kc, &o, &ops, &g, &inf), 0);
	SRV_RUN_WHILE_NOT(l, g.updates == 40, 30000);
	assert_int_equal(g.adds, 40);
	assert_int_equal(g.updates, 40);
	assert_int_equal(g.synced_at_adds, 40);
	assert_int_equal(g.updates_before_sync, 0);
	assert_true(kube_informer_synced(inf));
	printf("most cache callbacks in one loop iteration: %d (of 80, 3 ms each)\n",
	       g.per_iter_max);
	assert_true(g.per_iter_max <= 8);
	kube_informer_free(inf);
	kube_client_free(kc);
	srv_stop(&s);
	loop_free(l);
}

/* list {a, b} -> watch answered 410 -> relist whose page has garbage in
 * item 1 -> (after a backoff) relist {a, d} -> watch that hangs. */
static int script_bad_page(struct srv *s, int i, const char *m, const char *p, char *resp, size_t n)
{
	(void)m;
	(void)p;
	s->step = i;
	switch (i) {
	case 0:
		srv_reply(resp, n, 200, NULL,
		          "{\"metadata\":{\"resourceVersion\":\"10\"},\"items\":[" POD(
		                  "a", "5") "," POD("b", "6") "]}");
		return 1;
	case 1:
		srv_reply(resp, n, 410, NULL, "{\"kind\":\"Status\",\"code\":410}");
		return 1;
	case 2:
		srv_reply(resp, n, 200, NULL,
		          "{\"metadata\":{\"resourceVersion\":\"20\"},\"items\":[" POD(
		                  "c", "7") ","
		                            "{\"metadata\":{\"name\":\"x\"} \"spec\":{}}," POD(
		                                    "e", "8") "]}");
		return 1;
	case 3:
		srv_reply(resp, n, 200, NULL,
		          "{\"metadata\":{\"resourceVersion\":\"21\"},\"items\":[" POD(
		                  "a", "5") "," POD("d", "9") "]}");
		return 1;
	default:
		return 0;
	}
}

/* A list page with garbage in it is an error: the relist under way is
 * dropped, the cache keeps what the last good list gave it (no deletes),
 * and the list is retried after a backoff. */
static void test_informer_bad_page_keeps_cache(void **state)
{
	struct kube_informer_ops ops = {tree_transform, free_str, l_add,
	                                l_update,       l_delete, l_synced};
	struct kube_informer_opts o = {.version = "v1", .resource = "pods"};
	struct srv s = {.script = script_bad_page};
	struct tree_log t = {0};
	struct kube_informer_stats st;
	struct kube_informer *inf;
	struct kube_client *kc;
	struct loop *l;

	(void)state;
	assert_int_equal(loop_new(&l), 0);
	srv_start(&s, l);
	kc = srv_client(l, tmpdir, s.port, "token: t");
	assert_int_equal(kube_informer_start(kc, &o, &ops, &t, &inf), 0);
	SRV_RUN_WHILE_NOT(l, s.nreplied >= 3, 30000);
	for (int i = 0; i < 4; i++)
		loop_run_once(l, 20);
	assert_int_equal(s.nreq, 3);
	/* The bad page: c was read, then the garbage; nothing applied. */
	assert_int_equal(t.lg.synced, 1);
	assert_int_equal(t.lg.adds, 2);
	assert_int_equal(t.lg.deletes, 0);
	assert_int_equal(kube_informer_count(inf), 2);
	assert_non_null(kube_informer_get(inf, "ns", "a"));
	assert_non_null(kube_informer_get(inf, "ns", "b"));
	assert_string_equal(kube_informer_resource_version(inf), "10");
	kube_informer_stats(inf, &st);
	assert_int_equal(st.restarts, 1);
	SRV_RUN_WHILE_NOT(l, t.lg.synced >= 2, 30000);
	assert_int_equal(t.lg.synced, 2);
	assert_int_equal(t.lg.deletes, 1);
	assert_string_equal(t.lg.deleted[0], "b");
	assert_int_equal(kube_informer_count(inf), 2);
	assert_non_null(kube_informer_get(inf, "ns", "d"));
	assert_string_equal(kube_informer_resource_version(inf), "21");
	assert_int_equal(t.live, 0);
	kube_informer_free(inf);
	kube_client_free(kc);
	srv_stop(&s);
	loop_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_retry_after_is_honoured),
	        cmocka_unit_test(test_5xx_without_retry_after_is_returned),
	        cmocka_unit_test(test_body_cap_and_timeout),
	        cmocka_unit_test(test_401_rereads_token_file),
	        cmocka_unit_test(test_client_free_abandons_everything),
	        cmocka_unit_test(test_exec_plugin_is_asynchronous),
	        cmocka_unit_test(test_exec_plugin_failure_fails_requests),
	        cmocka_unit_test(test_burst_waits_for_slots),
	        cmocka_unit_test(test_free_with_queued_requests),
	        cmocka_unit_test(test_informer_drop_410_relist),
	        cmocka_unit_test(test_informer_list_one_tree_at_a_time),
	        cmocka_unit_test(test_informer_bad_page_keeps_cache),
	        cmocka_unit_test(test_list_stream_yields_to_the_loop),
	        cmocka_unit_test(test_informer_delivers_in_slices),
	};
	int rc;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/kube-test-http-XXXXXX");
	if (!mkdtemp(tmpdir))
		return 1;
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd))
			rc = rc ? rc : 1;
	}
	return rc;
}
