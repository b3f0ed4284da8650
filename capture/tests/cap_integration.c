/* capture/tests/cap_integration.c: capture/ against a real profefe and real
 * Go pprof targets (e2e/cmd/pproftarget). run_integration.sh starts them and
 * runs each scenario; every scenario prints what it saw and a closing
 * "PASS <name>" or "FAIL <name>: why", and exits non-zero on failure.
 *
 *	cap_integration types|hostile|outage|outage-small|spool-and-die|drain
 *
 * Environment (addresses are host:port on 127.0.0.0/8):
 *	CAP_IT_PROFEFE   profefe base URL
 *	CAP_IT_TARGET    a normal target with -mutex -block
 *	CAP_IT_PLAIN     a normal target without them (empty mutex/block)
 *	CAP_IT_SLOW, CAP_IT_HUNG, CAP_IT_GARBAGE, CAP_IT_HUGE, CAP_IT_500,
 *	CAP_IT_WT (-write-timeout 2s), CAP_IT_DEAD (nothing listens)
 *	CAP_IT_SPOOL     a spool directory
 *	CAP_IT_STOP, CAP_IT_START  shell commands that stop and start profefe
 *	CAP_IT_RUN       a run id, labelled on every profile (default: pid+time)
 *	CAP_IT_N         profiles per stream (default 40)
 */
#include "capture/capture.h"
#include "capture/profefe.h"
#include "loop/log.h"
#include "loop/loop.h"

#include <errno.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct loop *L;
static int failures;
static char run_id[64];

static void check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(int ok, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("  %s ", ok ? "ok  " : "FAIL");
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
	va_end(ap);
	if (!ok)
		failures++;
}

static const char *env(const char *k)
{
	const char *v = getenv(k);
	if (v == NULL || *v == '\0') {
		fprintf(stderr, "cap_integration: %s is not set\n", k);
		exit(2);
	}
	return v;
}

/* Runs the loop until *flag is set or `ms` pass. Returns 1 when set. */
static int run_until(const int *flag, uint64_t ms)
{
	loop_update_time(L);
	uint64_t end = loop_now_ms(L) + ms;
	while (!*flag && loop_now_ms(L) < end)
		loop_run_once(L, 50);
	return *flag;
}

static void run_for(uint64_t ms)
{
	int never = 0;
	run_until(&never, ms);
}

/* ---- captures ---------------------------------------------------------- */

struct cap {
	const char *name;
	enum ppop_ptype type;
	int done;
	struct cap_fetch_result r; /* copied; message copied below */
	char msg[400];
	char *body;
	size_t len;
};

static void on_fetch(void *arg, struct cap_fetch_result *r)
{
	struct cap *c = arg;
	c->r = *r;
	snprintf(c->msg, sizeof(c->msg), "%s", r->message);
	c->r.message = c->msg;
	c->body = cap_fetch_take_body(r, &c->len);
	c->done = 1;
}

/* The URL of a Go pprof endpoint under /debug/pprof (the operator takes
 * its URLs from reconcile's targets). Returns a malloc'd string. */
static char *profile_url(const char *host, unsigned port, enum ppop_ptype t, unsigned seconds)
{
	char *url = NULL;
	int n = t == PPOP_PT_CPU ? asprintf(&url, "http://%s:%u/debug/pprof/profile?seconds=%u",
	                                    host, port, seconds)
	                         : asprintf(&url, "http://%s:%u/debug/pprof/%s", host, port,
	                                    ppop_ptype_name(t));
	return n < 0 ? NULL : url;
}

static void start_cap(struct cap_fetcher *f, struct cap *c, const char *hostport, enum ppop_ptype t,
                      unsigned seconds, uint32_t timeout_ms, const char *key)
{
	char host[64];
	unsigned port;
	memset(c, 0, sizeof(*c));
	c->type = t;
	if (sscanf(hostport, "%63[^:]:%u", host, &port) != 2) {
		fprintf(stderr, "bad address %s\n", hostport);
		exit(2);
	}
	char *url = profile_url(host, port, t, seconds);
	char k[96];
	cap_target_key(host, port, k, sizeof(k));
	struct cap_request req = {
	        .url = url,
	        .target_key = key ? key : k,
	        .type = t,
	        .seconds = seconds,
	        .timeout_ms = timeout_ms,
	};
	if (cap_fetch_start(f, &req, on_fetch, c, NULL) < 0) {
		fprintf(stderr, "cap_fetch_start failed\n");
		exit(2);
	}
	free(url);
}

static int all_done(struct cap *c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!c[i].done)
			return 0;
	return 1;
}

static void wait_caps(struct cap *c, size_t n, uint64_t ms)
{
	loop_update_time(L);
	uint64_t end = loop_now_ms(L) + ms;
	while (!all_done(c, n) && loop_now_ms(L) < end)
		loop_run_once(L, 50);
}

/* ---- synchronous profefe calls ----------------------------------------- */

struct sync_reply {
	int done;
	enum cap_result res;
	long status;
	char msg[400];
	char id[128];
	struct json_object *json; /* owned */
	char *body;
	size_t len;
};

static void on_reply(void *arg, struct cap_profefe_reply *r)
{
	struct sync_reply *s = arg;
	s->res = r->res;
	s->status = r->http_status;
	snprintf(s->msg, sizeof(s->msg), "%s", r->message ? r->message : "");
	if (r->id)
		snprintf(s->id, sizeof(s->id), "%s", r->id);
	s->json = r->json ? json_object_get(r->json) : NULL;
	if (r->body) {
		s->body = malloc(r->body_len + 1);
		memcpy(s->body, r->body, r->body_len);
		s->len = r->body_len;
	}
	s->done = 1;
}

static void sync_free(struct sync_reply *s)
{
	json_object_put(s->json);
	free(s->body);
}

static const char *label_of(struct json_object *meta, const char *key);

/* Keeps the profiles whose label `key` is `val`. */
static struct json_object *filter_label(struct json_object *arr, const char *key, const char *val)
{
	struct json_object *out = json_object_new_array();
	for (size_t i = 0; arr && i < json_object_array_length(arr); i++) {
		struct json_object *m = json_object_array_get_idx(arr, i);
		const char *v = label_of(m, key);
		if (v && strcmp(v, val) == 0)
			json_object_array_add(out, json_object_get(m));
	}
	return out;
}

/* Lists profiles of this run with `type`, optionally with one more label
 * "k=v". profefe's badger store answers label-filtered lists unreliably
 * (404 for some types whose profiles carry the label), so the labels are
 * filtered here; the service is unique per run anyway. */
static struct json_object *list_run(struct cap_profefe *pc, const char *service, const char *type,
                                    const char *extra_label, long *status)
{
	struct sync_reply s = {0};
	int64_t now = loop_wall_ms();
	struct cap_profefe_query q = {
	        .service = service,
	        .type = type,
	        .from_ms = now - 3600 * 1000,
	        .to_ms = now + 3600 * 1000,
	        .limit = 10000,
	};
	if (cap_profefe_list(pc, &q, on_reply, &s) < 0 || !run_until(&s.done, 30000)) {
		*status = -1;
		return NULL;
	}
	*status = s.status;
	if (s.res != CAP_RES_OK) {
		printf("    list %s/%s: %s %ld %s\n", service, type, cap_result_name(s.res),
		       s.status, s.msg);
		sync_free(&s);
		return NULL;
	}
	struct json_object *j = filter_label(s.json, "run", run_id);
	sync_free(&s);
	if (extra_label != NULL) {
		char k[64];
		const char *eq = strchr(extra_label, '=');
		snprintf(k, sizeof(k), "%.*s", (int)(eq - extra_label), extra_label);
		struct json_object *j2 = filter_label(j, k, eq + 1);
		json_object_put(j);
		j = j2;
	}
	return j;
}

/* The value of label `key` in one listed profile's metadata, or NULL. */
static const char *label_of(struct json_object *meta, const char *key)
{
	struct json_object *labels, *k, *v;
	if (!json_object_object_get_ex(meta, "labels", &labels) ||
	    !json_object_is_type(labels, json_type_array))
		return NULL;
	for (size_t i = 0; i < json_object_array_length(labels); i++) {
		struct json_object *l = json_object_array_get_idx(labels, i);
		if (json_object_object_get_ex(l, "key", &k) &&
		    json_object_object_get_ex(l, "value", &v) &&
		    strcmp(json_object_get_string(k), key) == 0)
			return json_object_get_string(v);
	}
	return NULL;
}

static const char *str_of(struct json_object *o, const char *key)
{
	struct json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

/* ---- the pusher ---------------------------------------------------------- */

struct push_tally {
	int ok, rejected, dropped, other;
	int seen[4096]; /* results per seq */
};

static void on_push_result(void *arg, const struct cap_push_meta *m, enum cap_result res,
                           long status, const char *message, const char *id)
{
	struct push_tally *t = arg;
	int seq = m->origin ? atoi(m->origin) : -1;
	if (seq >= 0 && seq < 4096)
		t->seen[seq]++;
	if (res == CAP_RES_OK)
		t->ok++;
	else if (res == CAP_RES_DROPPED)
		t->dropped++;
	else if (res == CAP_RES_HTTP)
		t->rejected++;
	else
		t->other++;
	if (res != CAP_RES_OK && log_enabled(LOG_LVL_DEBUG))
		printf("    push %s: %s %ld %s\n", m->origin, cap_result_name(res), status,
		       message);
}

static struct cap_profefe *new_client(void)
{
	struct cap_profefe *pc;
	struct cap_profefe_opts o = {.timeout_ms = 10000, .connect_timeout_ms = 2000};
	if (cap_profefe_new(L, env("CAP_IT_PROFEFE"), &o, &pc) < 0)
		exit(2);
	return pc;
}

/* ---- scenario: every type lands with the right service, type, labels ---- */

static void push_one(struct cap_pusher *p, const char *service, enum ppop_ptype t, const char *pod,
                     char *body, size_t len, const char *origin)
{
	struct ppop_kv l[] = {
	        {"namespace", "it"},
	        {"pod", pod},
	        {"policy", "it-policy"},
	        {"run", run_id},
	        {"version", "go1.26 build,1"},
	        {t == PPOP_PT_ALLOCS ? "pprof_type" : "", t == PPOP_PT_ALLOCS ? "allocs" : ""},
	};
	char *labels = ppop_labels_encode(l, sizeof(l) / sizeof(l[0]));
	struct cap_push_meta m = {
	        .service = service,
	        .type = ppop_ptype_profefe(t),
	        .labels = labels,
	        .instance_id = pod,
	        .origin = origin,
	        .created_ms = loop_wall_ms(),
	};
	if (cap_pusher_submit_take(p, &m, body, len) < 0)
		check(0, "submit %s", origin);
	free(labels);
}

static void scenario_types(void)
{
	struct cap_fetcher *f;
	struct cap_profefe *pc = new_client();
	struct cap_pusher *p;
	struct push_tally *tally = calloc(1, sizeof(*tally));
	const enum ppop_ptype types[] = {PPOP_PT_CPU,         PPOP_PT_HEAP,  PPOP_PT_ALLOCS,
	                                 PPOP_PT_GOROUTINE,   PPOP_PT_MUTEX, PPOP_PT_BLOCK,
	                                 PPOP_PT_THREADCREATE};
	enum { NT = sizeof(types) / sizeof(types[0]) };
	struct cap caps[2 * NT];
	char service[96];
	snprintf(service, sizeof(service), "it-types-%s", run_id);
	cap_fetcher_new(L, NULL, &f);
	cap_pusher_new(L, pc, NULL, on_push_result, tally, &p);
	for (size_t i = 0; i < NT; i++) {
		start_cap(f, &caps[i], env("CAP_IT_TARGET"), types[i], 1, 10000, NULL);
		start_cap(f, &caps[NT + i], env("CAP_IT_PLAIN"), types[i], 1, 10000, NULL);
	}
	wait_caps(caps, 2 * NT, 30000);
	int expect_pushed = 0;
	for (size_t i = 0; i < 2 * NT; i++) {
		struct cap *c = &caps[i];
		int plain = i >= NT;
		enum ppop_ptype t = types[i % NT];
		int want_empty = plain && (t == PPOP_PT_MUTEX || t == PPOP_PT_BLOCK);
		enum cap_result want = want_empty ? CAP_RES_EMPTY : CAP_RES_OK;
		check(c->done && c->r.res == want, "%s %-12s -> %s (%zu bytes, %llu ms) %s",
		      plain ? "plain " : "target", ppop_ptype_name(t), cap_result_name(c->r.res),
		      c->len, (unsigned long long)c->r.elapsed_ms, c->msg);
		if (c->r.res == CAP_RES_OK && !plain) {
			char origin[32];
			snprintf(origin, sizeof(origin), "%zu", i);
			push_one(p, service, t, "pod-a", c->body, c->len, origin);
			c->body = NULL;
			expect_pushed++;
		}
		free(c->body);
	}
	loop_update_time(L);
	uint64_t end = loop_now_ms(L) + 30000;
	while (tally->ok + tally->rejected + tally->other < expect_pushed && loop_now_ms(L) < end)
		loop_run_once(L, 50);
	check(tally->ok == expect_pushed, "pushed %d of %d (rejected %d, other %d)", tally->ok,
	      expect_pushed, tally->rejected, tally->other);

	/* What landed: one per type, right labels; allocs as heap+pprof_type. */
	const char *ptypes[] = {"cpu", "heap", "goroutine", "mutex", "block", "threadcreate"};
	for (size_t i = 0; i < sizeof(ptypes) / sizeof(ptypes[0]); i++) {
		long st;
		struct json_object *arr = list_run(pc, service, ptypes[i], NULL, &st);
		size_t n = arr && json_object_is_type(arr, json_type_array)
		                   ? json_object_array_length(arr)
		                   : 0;
		size_t want = strcmp(ptypes[i], "heap") == 0 ? 2 : 1;
		check(n == want, "profefe has %zu %s profile(s) for %s (want %zu)", n, ptypes[i],
		      service, want);
		for (size_t k = 0; k < n; k++) {
			struct json_object *meta = json_object_array_get_idx(arr, k);
			const char *pt = label_of(meta, "pprof_type");
			const char *ver = label_of(meta, "version");
			check(str_of(meta, "service") &&
			              strcmp(str_of(meta, "service"), service) == 0 &&
			              strcmp(str_of(meta, "type"), ptypes[i]) == 0 &&
			              label_of(meta, "pod") &&
			              strcmp(label_of(meta, "pod"), "pod-a") == 0 && ver &&
			              strcmp(ver, "go1.26 build,1") == 0,
			      "  %s id=%s labels ok (version=%s pprof_type=%s)", ptypes[i],
			      str_of(meta, "id"), ver ? ver : "-", pt ? pt : "-");
			/* Fetch it back and parse it. */
			struct sync_reply s = {0};
			const char *id = str_of(meta, "id");
			cap_profefe_get(pc, &id, 1, on_reply, &s);
			run_until(&s.done, 10000);
			enum ppop_ptype dt = PPOP_PT_OTHER;
			int rc = cap_pprof_detect_type(s.body, s.len, 0, &dt);
			check(s.res == CAP_RES_OK && rc == 0 &&
			              cap_pprof_check(s.body, s.len) == CAP_PPROF_HAS_SAMPLES,
			      "  get %s: %zu bytes, parses as %s", id, s.len, ppop_ptype_name(dt));
			sync_free(&s);
		}
		/* allocs: exactly one heap profile carries pprof_type=allocs. */
		if (strcmp(ptypes[i], "heap") == 0) {
			struct json_object *a =
			        list_run(pc, service, "heap", "pprof_type=allocs", &st);
			size_t na = a ? json_object_array_length(a) : 0;
			check(na == 1, "allocs stored as heap with pprof_type=allocs: %zu", na);
			json_object_put(a);
		}
		json_object_put(arr);
	}
	/* The rest of the API: services, version, merge, merged get, errors. */
	struct sync_reply s = {0};
	cap_profefe_services(pc, on_reply, &s);
	run_until(&s.done, 10000);
	check(s.res == CAP_RES_OK && s.json && strstr(json_object_to_json_string(s.json), service),
	      "services lists %s", service);
	sync_free(&s);
	memset(&s, 0, sizeof(s));
	cap_profefe_version(pc, on_reply, &s);
	run_until(&s.done, 10000);
	check(s.res == CAP_RES_OK && s.json, "version: %s",
	      s.json ? json_object_to_json_string(s.json) : s.msg);
	sync_free(&s);
	memset(&s, 0, sizeof(s));
	int64_t now = loop_wall_ms();
	struct cap_profefe_query q = {.service = service,
	                              .type = "heap",
	                              .from_ms = now - 3600000,
	                              .to_ms = now + 3600000};
	cap_profefe_merge(pc, &q, on_reply, &s);
	run_until(&s.done, 10000);
	check(s.res == CAP_RES_OK && cap_pprof_check(s.body, s.len) == CAP_PPROF_HAS_SAMPLES,
	      "merge heap range: %zu bytes", s.len);
	sync_free(&s);
	long st;
	struct json_object *heaps = list_run(pc, service, "heap", NULL, &st);
	if (heaps && json_object_array_length(heaps) == 2) {
		const char *ids[2] = {str_of(json_object_array_get_idx(heaps, 0), "id"),
		                      str_of(json_object_array_get_idx(heaps, 1), "id")};
		memset(&s, 0, sizeof(s));
		cap_profefe_get(pc, ids, 2, on_reply, &s);
		run_until(&s.done, 10000);
		check(s.res == CAP_RES_OK && s.len > 0, "get %s+%s merged: %zu bytes", ids[0],
		      ids[1], s.len);
		sync_free(&s);
	}
	json_object_put(heaps);
	struct json_object *none = list_run(pc, "no-such-service", "heap", NULL, &st);
	check(none == NULL && st == 404, "list of nothing: HTTP %ld", st);
	/* The label filter itself: profefe answers, whatever it finds. */
	memset(&s, 0, sizeof(s));
	char lf[96];
	snprintf(lf, sizeof(lf), "run=%s", run_id);
	struct cap_profefe_query ql = {.service = service,
	                               .type = "goroutine",
	                               .labels = lf,
	                               .from_ms = now - 3600000,
	                               .to_ms = now + 3600000};
	cap_profefe_list(pc, &ql, on_reply, &s);
	run_until(&s.done, 10000);
	check(s.res == CAP_RES_OK || s.status == 404, "list with labels=%s: %s %ld (%zu found)", lf,
	      cap_result_name(s.res), s.status,
	      s.json && json_object_is_type(s.json, json_type_array)
	              ? json_object_array_length(s.json)
	              : (size_t)0);
	sync_free(&s);
	/* profefe's own message for a profile it refuses (an empty one). */
	memset(&s, 0, sizeof(s));
	struct cap_push_meta bad = {.service = service, .type = "mutex", .labels = "run=x"};
	cap_profefe_push(pc, &bad, "not a profile", 13, on_reply, &s);
	run_until(&s.done, 10000);
	check(s.res == CAP_RES_HTTP && s.status == 400 && s.msg[0] != '\0',
	      "push of garbage: HTTP %ld \"%s\"", s.status, s.msg);
	sync_free(&s);
	cap_pusher_free(p);
	cap_fetcher_free(f);
	cap_profefe_free(pc);
	free(tally);
}

/* ---- scenario: hostile targets ------------------------------------------ */

struct hostile {
	const char *name, *envvar;
	enum ppop_ptype type;
	unsigned seconds;
	enum cap_result want;
	const char *msg_has;
	uint64_t max_ms; /* from start to result */
};

static void scenario_hostile(void)
{
	struct cap_fetcher *f;
	struct cap_fetcher_opts o = {
	        .max_body_bytes = 4u << 20, .connect_timeout_ms = 1000, .max_inflight = 64};
	const struct hostile hs[] = {
	        {"slow", "CAP_IT_SLOW", PPOP_PT_HEAP, 0, CAP_RES_TIMEOUT, "timed out", 3500},
	        {"hung", "CAP_IT_HUNG", PPOP_PT_GOROUTINE, 0, CAP_RES_TIMEOUT, "timed out", 3500},
	        {"hung cpu", "CAP_IT_HUNG", PPOP_PT_CPU, 1, CAP_RES_TIMEOUT, "timed out", 4500},
	        {"garbage", "CAP_IT_GARBAGE", PPOP_PT_HEAP, 0, CAP_RES_NOT_PROFILE, "not a pprof",
	         2000},
	        {"huge", "CAP_IT_HUGE", PPOP_PT_HEAP, 0, CAP_RES_TOO_LARGE, "larger than", 3000},
	        {"500", "CAP_IT_500", PPOP_PT_HEAP, 0, CAP_RES_HTTP, "injected failure", 2000},
	        {"wrong port", "CAP_IT_DEAD", PPOP_PT_HEAP, 0, CAP_RES_REFUSED, "", 2000},
	        {"write timeout", "CAP_IT_WT", PPOP_PT_CPU, 3, CAP_RES_HTTP, "WriteTimeout", 2000},
	};
	enum { NH = sizeof(hs) / sizeof(hs[0]) };
	struct cap caps[NH + 4];
	cap_fetcher_new(L, &o, &f);
	loop_update_time(L);
	uint64_t t0 = loop_now_ms(L);
	for (size_t i = 0; i < NH; i++)
		start_cap(f, &caps[i], env(hs[i].envvar), hs[i].type, hs[i].seconds, 2000, NULL);
	/* Meanwhile a healthy target answers at once. */
	start_cap(f, &caps[NH], env("CAP_IT_PLAIN"), PPOP_PT_GOROUTINE, 0, 2000, NULL);
	/* Two CPU captures of one target under different keys: Go refuses the
	 * second ("cpu profiling already in use"). */
	start_cap(f, &caps[NH + 1], env("CAP_IT_PLAIN"), PPOP_PT_CPU, 2, 5000, "key-a");
	run_for(300);
	start_cap(f, &caps[NH + 2], env("CAP_IT_PLAIN"), PPOP_PT_CPU, 2, 5000, "key-b");
	wait_caps(caps, NH + 3, 15000);
	for (size_t i = 0; i < NH; i++) {
		struct cap *c = &caps[i];
		uint64_t took = c->r.queued_ms + c->r.elapsed_ms;
		check(c->done && c->r.res == hs[i].want && strstr(c->msg, hs[i].msg_has) &&
		              took <= hs[i].max_ms,
		      "%-13s -> %-11s in %5llu ms (bound %llu): %s", hs[i].name,
		      cap_result_name(c->r.res), (unsigned long long)took,
		      (unsigned long long)hs[i].max_ms, c->msg);
		free(c->body);
	}
	check(caps[NH].r.res == CAP_RES_OK && caps[NH].r.elapsed_ms < 1500,
	      "healthy capture alongside: %s in %llu ms", cap_result_name(caps[NH].r.res),
	      (unsigned long long)caps[NH].r.elapsed_ms);
	check(caps[NH + 1].r.res == CAP_RES_OK, "first cpu: %s",
	      cap_result_name(caps[NH + 1].r.res));
	check(caps[NH + 2].r.res == CAP_RES_HTTP && strstr(caps[NH + 2].msg, "already in use"),
	      "second concurrent cpu (other key): %s", caps[NH + 2].msg);
	for (size_t i = NH; i < NH + 3; i++)
		free(caps[i].body);

	/* The fetcher itself never sends the second: same key queues. */
	struct cap two[3];
	loop_update_time(L);
	t0 = loop_now_ms(L);
	start_cap(f, &two[0], env("CAP_IT_PLAIN"), PPOP_PT_CPU, 1, 5000, NULL);
	start_cap(f, &two[1], env("CAP_IT_PLAIN"), PPOP_PT_CPU, 1, 5000, NULL);
	start_cap(f, &two[2], env("CAP_IT_PLAIN"), PPOP_PT_HEAP, 0, 5000, NULL);
	wait_caps(two, 3, 15000);
	/* An idle process may give a CPU profile without samples: empty. */
	check((two[0].r.res == CAP_RES_OK || two[0].r.res == CAP_RES_EMPTY) &&
	              (two[1].r.res == CAP_RES_OK || two[1].r.res == CAP_RES_EMPTY) &&
	              two[1].r.queued_ms >= 900,
	      "two cpu captures, same target: %s, %s (second queued %llu ms)",
	      cap_result_name(two[0].r.res), cap_result_name(two[1].r.res),
	      (unsigned long long)two[1].r.queued_ms);
	check(two[2].r.res == CAP_RES_OK && two[2].r.queued_ms < 100,
	      "heap capture not held back by the cpu queue: queued %llu ms",
	      (unsigned long long)two[2].r.queued_ms);
	for (int i = 0; i < 3; i++)
		free(two[i].body);

	/* Cancellation: a hung capture ends at once as cancelled. */
	struct cap hc;
	memset(&hc, 0, sizeof(hc));
	char host[64];
	unsigned port;
	sscanf(env("CAP_IT_HUNG"), "%63[^:]:%u", host, &port);
	char *url = profile_url(host, port, PPOP_PT_HEAP, 0);
	struct cap_request req = {
	        .url = url, .type = PPOP_PT_HEAP, .timeout_ms = 60000, .target_key = "h"};
	uint64_t hid = 0;
	cap_fetch_start(f, &req, on_fetch, &hc, &hid);
	free(url);
	run_for(300);
	int crc = cap_fetch_cancel(f, hid);
	check(crc == 0 && hc.done && hc.r.res == CAP_RES_CANCELLED, "cancel: %d, %s", crc,
	      cap_result_name(hc.r.res));
	(void)t0;
	cap_fetcher_free(f);
}

/* ---- scenario: profefe outage during a stream -------------------------- */

static int count_landed(struct cap_profefe *pc, const char *service, int n, int *dups)
{
	long st;
	struct json_object *arr = list_run(pc, service, "goroutine", NULL, &st);
	int *seen = calloc((size_t)n + 1, sizeof(int)), landed = 0;
	*dups = 0;
	for (size_t i = 0; arr && i < json_object_array_length(arr); i++) {
		const char *s = label_of(json_object_array_get_idx(arr, i), "seq");
		int k = s ? atoi(s) : -1;
		if (k >= 0 && k < n) {
			if (seen[k]++)
				(*dups)++;
			else
				landed++;
		}
	}
	json_object_put(arr);
	free(seen);
	return landed;
}

static void stream(struct cap_pusher *p, struct cap_fetcher *f, const char *service, int n,
                   int stop_at, int start_at, int interval_ms)
{
	for (int i = 0; i < n; i++) {
		if (i == stop_at) {
			printf("    [%d] stopping profefe\n", i);
			fflush(stdout);
			if (system(env("CAP_IT_STOP")) != 0)
				check(0, "stop command");
		}
		if (i == start_at) {
			printf("    [%d] starting profefe\n", i);
			fflush(stdout);
			if (system(env("CAP_IT_START")) != 0)
				check(0, "start command");
		}
		struct cap c;
		start_cap(f, &c, env("CAP_IT_PLAIN"), PPOP_PT_GOROUTINE, 0, 5000, NULL);
		wait_caps(&c, 1, 10000);
		if (c.r.res != CAP_RES_OK) {
			check(0, "capture %d: %s", i, c.msg);
			free(c.body);
			continue;
		}
		char seq[16], origin[16];
		snprintf(seq, sizeof(seq), "%d", i);
		snprintf(origin, sizeof(origin), "%d", i);
		struct ppop_kv l[] = {{"run", run_id}, {"seq", seq}};
		char *labels = ppop_labels_encode(l, 2);
		struct cap_push_meta m = {.service = service,
		                          .type = "goroutine",
		                          .labels = labels,
		                          .origin = origin,
		                          .created_ms = loop_wall_ms()};
		if (cap_pusher_submit_take(p, &m, c.body, c.len) < 0)
			check(0, "submit %d", i);
		free(labels);
		run_for((uint64_t)interval_ms);
	}
}

static void wait_idle(struct cap_pusher *p, uint64_t ms)
{
	loop_update_time(L);
	uint64_t end = loop_now_ms(L) + ms;
	while (!cap_pusher_idle(p) && loop_now_ms(L) < end)
		loop_run_once(L, 50);
}

static void scenario_outage(int small)
{
	struct cap_fetcher *f;
	struct cap_profefe *pc = new_client();
	struct cap_pusher *p;
	struct push_tally *tally = calloc(1, sizeof(*tally));
	const char *n_env = getenv("CAP_IT_N");
	int n = n_env ? atoi(n_env) : 40;
	char service[96];
	struct cap_pusher_stats st;
	snprintf(service, sizeof(service), "it-outage%s-%s", small ? "-small" : "", run_id);
	struct cap_pusher_opts po = {
	        .spool_dir = env("CAP_IT_SPOOL"),
	        /* A goroutine profile is ~1-3 KiB here: room for about 5. */
	        .spool_max_bytes = small ? 5 * 3000 : 0,
	        .backoff_base_ms = 200,
	        .backoff_max_ms = 1000,
	};
	cap_fetcher_new(L, NULL, &f);
	if (cap_pusher_new(L, pc, &po, on_push_result, tally, &p) < 0)
		exit(2);
	stream(p, f, service, n, n / 4, n * 3 / 4, 100);
	cap_pusher_stats(p, &st);
	printf("    after stream: spool %llu files %llu bytes, drops %llu, retries %llu\n",
	       (unsigned long long)st.spool_files, (unsigned long long)st.spool_bytes,
	       (unsigned long long)st.drops, (unsigned long long)st.retries);
	wait_idle(p, 60000);
	cap_pusher_stats(p, &st);
	int dups, landed = count_landed(pc, service, n, &dups);
	int once = 1;
	for (int i = 0; i < n; i++)
		once &= tally->seen[i] == 1;
	printf("    delivered %d, dropped %d, rejected %d; profefe has %d (dups %d); retries "
	       "%llu\n",
	       tally->ok, tally->dropped, tally->rejected, landed, dups,
	       (unsigned long long)st.retries);
	check(once, "every profile got exactly one final result");
	check(dups == 0, "no profile stored twice");
	check(st.retries > 0, "retries were counted (%llu)", (unsigned long long)st.retries);
	if (!small) {
		check(landed == n && tally->ok == n, "all %d profiles arrived exactly once", n);
		check(st.drops == 0, "no drops");
	} else {
		check(st.drops > 0 && (int)st.drops == tally->dropped,
		      "drops counted: %llu (callback %d)", (unsigned long long)st.drops,
		      tally->dropped);
		check(landed == tally->ok && landed + tally->dropped == n,
		      "landed %d + dropped %d == %d", landed, tally->dropped, n);
	}
	cap_pusher_free(p);
	cap_fetcher_free(f);
	cap_profefe_free(pc);
	free(tally);
}

/* ---- scenario: kill -9 with a spool, then a new process drains it ------- */

static void scenario_spool_and_die(void)
{
	struct cap_fetcher *f;
	struct cap_profefe *pc = new_client();
	struct cap_pusher *p;
	struct push_tally *tally = calloc(1, sizeof(*tally));
	const char *n_env = getenv("CAP_IT_N");
	int n = n_env ? atoi(n_env) : 20;
	char service[96];
	struct cap_pusher_stats st;
	snprintf(service, sizeof(service), "it-kill-%s", run_id);
	struct cap_pusher_opts po = {
	        .spool_dir = env("CAP_IT_SPOOL"), .backoff_base_ms = 200, .backoff_max_ms = 1000};
	cap_fetcher_new(L, NULL, &f);
	cap_pusher_new(L, pc, &po, on_push_result, tally, &p);
	/* profefe is down for this whole phase. */
	stream(p, f, service, n, -1, -1, 20);
	run_for(500);
	cap_pusher_stats(p, &st);
	printf("    spooled %llu files (%llu bytes); killing myself\n",
	       (unsigned long long)st.spool_files, (unsigned long long)st.spool_bytes);
	check(st.spool_files == (uint64_t)n, "all %d in the spool", n);
	fflush(stdout);
	raise(SIGKILL);
}

static void scenario_drain(void)
{
	struct cap_profefe *pc = new_client();
	struct cap_pusher *p;
	struct push_tally *tally = calloc(1, sizeof(*tally));
	const char *n_env = getenv("CAP_IT_N");
	int n = n_env ? atoi(n_env) : 20;
	char service[96];
	struct cap_pusher_stats st;
	snprintf(service, sizeof(service), "it-kill-%s", run_id);
	struct cap_pusher_opts po = {.spool_dir = env("CAP_IT_SPOOL")};
	cap_pusher_new(L, pc, &po, on_push_result, tally, &p);
	cap_pusher_stats(p, &st);
	printf("    restarted with %llu spooled files\n", (unsigned long long)st.spool_files);
	wait_idle(p, 60000);
	int dups, landed = count_landed(pc, service, n, &dups);
	check(landed == n && dups == 0 && tally->ok == n,
	      "spool from the killed process delivered: %d of %d (dups %d)", landed, n, dups);
	cap_pusher_free(p);
	cap_profefe_free(pc);
	free(tally);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: cap_integration types|hostile|outage|outage-small|"
		                "spool-and-die|drain\n");
		return 2;
	}
	log_setup(LOG_FMT_TEXT, getenv("CAP_IT_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_WARN);
	signal(SIGPIPE, SIG_IGN);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || loop_new(&L) < 0)
		return 2;
	const char *rid = getenv("CAP_IT_RUN");
	if (rid)
		snprintf(run_id, sizeof(run_id), "%s", rid);
	else
		snprintf(run_id, sizeof(run_id), "%d-%lld", (int)getpid(),
		         (long long)loop_wall_ms());
	printf("== %s (run %s)\n", argv[1], run_id);
	const char *s = argv[1];
	if (strcmp(s, "types") == 0)
		scenario_types();
	else if (strcmp(s, "hostile") == 0)
		scenario_hostile();
	else if (strcmp(s, "outage") == 0)
		scenario_outage(0);
	else if (strcmp(s, "outage-small") == 0)
		scenario_outage(1);
	else if (strcmp(s, "spool-and-die") == 0)
		scenario_spool_and_die();
	else if (strcmp(s, "drain") == 0)
		scenario_drain();
	else {
		fprintf(stderr, "unknown scenario %s\n", s);
		return 2;
	}
	loop_free(L);
	curl_global_cleanup();
	printf(failures ? "FAIL %s: %d check(s) failed\n" : "PASS %s\n", s, failures);
	return failures ? 1 : 0;
}
