/* kube/tests/integ_writes.c: writes against a real kube-apiserver.
 *
 *	kube_integ_writes KUBECONFIG
 *
 * Status merge patch and server-side apply on pods/status, create-or-update
 * with conflict retry under contention, and Event deduplication (one Event
 * object whose count grows).
 */
#include "kube/kube_int.h"
#include "kube/tests/integ_common.h"
#include "loop/loop.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct loop *L;
static struct kube_client *KC;
static char NS[64];

struct res {
	int n;
	long status[8];
};

static void done(void *arg, const struct kube_response *r)
{
	struct res *s = arg;

	if (s->n < 8)
		s->status[s->n] = r->status;
	if (r->status == 0 || r->status >= 300)
		integ_note("write answered %ld: %s", r->status, r->message);
	s->n++;
}

static int n_is(void *arg)
{
	struct res *s = arg;

	return s->n >= s->status[7];
}

static int wait_n(struct res *s, int n)
{
	s->status[7] = n;
	return integ_wait(L, n_is, s, 20000);
}

static const char *str_at(struct json_object *o, const char *a, const char *b)
{
	struct json_object *x, *y;

	if (!json_object_object_get_ex(o, a, &x) || !json_object_object_get_ex(x, b, &y))
		return "";
	return json_object_get_string(y);
}

static void status_writes(void)
{
	char path[256];
	struct json_object *patch, *r = NULL;
	struct res s = {0};

	kube_path(path, sizeof(path), "", "v1", NS, "pods", NULL, NULL);
	integ_check(
	        integ_do(L, KC, "POST", path,
	                 "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\"},"
	                 "\"spec\":{\"containers\":[{\"name\":\"c\",\"image\":\"x\"}]}}",
	                 NULL, NULL) == 201,
	        "created pod p");
	kube_path(path, sizeof(path), "", "v1", NS, "pods", "p", NULL);
	patch = json_tokener_parse("{\"status\":{\"phase\":\"Running\",\"podIP\":\"127.0.0.9\"}}");
	integ_check(kube_patch_status(KC, path, patch, done, &s) == 0 && wait_n(&s, 1),
	            "merge patch of pods/status sent");
	integ_check(s.status[0] == 200, "answered %ld", s.status[0]);
	json_object_put(patch);
	integ_do(L, KC, "GET", path, NULL, NULL, &r);
	integ_check(!strcmp(str_at(r, "status", "phase"), "Running") &&
	                    !strcmp(str_at(r, "status", "podIP"), "127.0.0.9"),
	            "status now phase=%s podIP=%s", str_at(r, "status", "phase"),
	            str_at(r, "status", "podIP"));
	json_object_put(r);
	patch = json_tokener_parse("{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":"
	                           "\"p\"},\"status\":{\"message\":\"applied\"}}");
	integ_check(kube_apply_status(KC, path, patch, "kube-integ", done, &s) == 0 &&
	                    wait_n(&s, 2),
	            "server-side apply of pods/status with a fieldManager sent");
	integ_check(s.status[1] == 200, "answered %ld", s.status[1]);
	json_object_put(patch);
	r = NULL;
	integ_do(L, KC, "GET", path, NULL, NULL, &r);
	integ_check(!strcmp(str_at(r, "status", "message"), "applied") &&
	                    strstr(json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN),
	                           "\"manager\":\"kube-integ\""),
	            "applied field set, managed by kube-integ");
	json_object_put(r);
}

/* Appends one "x" to data.v: concurrent callers conflict on resourceVersion. */
static struct json_object *append_x(void *arg, struct json_object *cur)
{
	struct json_object *want = NULL, *d, *v;
	char buf[64];

	(void)arg;
	if (!cur)
		return json_tokener_parse("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\","
		                          "\"metadata\":{\"name\":\"counter\"},\"data\":{\"v\":"
		                          "\"x\"}}");
	if (json_object_deep_copy(cur, &want, NULL))
		return NULL;
	json_object_object_get_ex(want, "data", &d);
	json_object_object_get_ex(d, "v", &v);
	snprintf(buf, sizeof(buf), "%sx", json_object_get_string(v));
	json_object_object_add(d, "v", json_object_new_string(buf));
	return want;
}

static void conflicts(void)
{
	char coll[256], path[256];
	struct res s = {0};
	struct json_object *r = NULL;
	int ok = 1;

	kube_path(coll, sizeof(coll), "", "v1", NS, "configmaps", NULL, NULL);
	/* Four concurrent writers: one creates, the rest hit AlreadyExists or
	 * conflicts and retry with a fresh GET. */
	for (int i = 0; i < 4; i++)
		ok &= kube_create_or_update(KC, coll, "counter", append_x, NULL, done, &s) == 0;
	integ_check(ok && wait_n(&s, 4), "four concurrent create-or-updates finished");
	for (int i = 0; i < 4; i++)
		ok &= s.status[i] == 200 || s.status[i] == 201;
	integ_check(ok, "all succeeded: %ld %ld %ld %ld", s.status[0], s.status[1], s.status[2],
	            s.status[3]);
	kube_path(path, sizeof(path), "", "v1", NS, "configmaps", "counter", NULL);
	integ_do(L, KC, "GET", path, NULL, NULL, &r);
	integ_check(!strcmp(str_at(r, "data", "v"), "xxxx"), "no update was lost: data.v=\"%s\"",
	            str_at(r, "data", "v"));
	json_object_put(r);
}

static int writes_done(void *arg)
{
	(void)arg;
	return loop_transfers_running(L) == 0;
}

static void events(void)
{
	struct kube_recorder *rec;
	struct kube_objref ref = {.api_version = "v1", .kind = "Pod", .ns = NS, .name = "p"};
	struct json_object *r = NULL, *items, *ev, *v;
	uint64_t creates, patches;
	char path[256];

	integ_check(kube_recorder_new(KC, "kube-integ", "host-1", 0, &rec) == 0, "recorder");
	for (int i = 0; i < 5; i++) {
		kube_event_keyed(rec, &ref, "Warning", "CaptureFailed", "p|heap|refused",
		                 "connection refused");
		integ_wait(L, writes_done, NULL, 5000);
	}
	kube_event_keyed(rec, &ref, "Warning", "CaptureFailed", "p|heap|timeout", "timeout");
	integ_wait(L, writes_done, NULL, 5000);
	kube_recorder_counts(rec, &creates, &patches);
	integ_check(creates == 2 && patches == 4,
	            "6 occurrences, 2 distinct: %llu creates, %llu "
	            "count patches",
	            (unsigned long long)creates, (unsigned long long)patches);
	kube_path(path, sizeof(path), "", "v1", NS, "events", NULL, NULL);
	integ_do(L, KC, "GET", path, NULL, NULL, &r);
	json_object_object_get_ex(r, "items", &items);
	integ_check(items && json_object_array_length(items) == 2, "2 Event objects in %s", NS);
	for (size_t i = 0; items && i < json_object_array_length(items); i++) {
		ev = json_object_array_get_idx(items, i);
		json_object_object_get_ex(ev, "message", &v);
		if (strcmp(json_object_get_string(v), "connection refused"))
			continue;
		json_object_object_get_ex(ev, "count", &v);
		integ_check(json_object_get_int(v) == 5 &&
		                    !strcmp(str_at(ev, "involvedObject", "name"), "p") &&
		                    !strcmp(str_at(ev, "source", "component"), "kube-integ"),
		            "the repeated Event has count %d, involvedObject p, source kube-integ",
		            json_object_get_int(v));
	}
	json_object_put(r);
	kube_recorder_free(rec);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s KUBECONFIG\n", argv[0]);
		return 2;
	}
	if (loop_new(&L))
		return 2;
	KC = integ_client(L, argv[1], NULL);
	integ_namespace(L, KC, "kube-integ-writes", NS, sizeof(NS));
	integ_note("namespace %s", NS);
	status_writes();
	conflicts();
	events();
	kube_client_free(KC);
	loop_free(L);
	printf("%s: %d failure(s)\n", argv[0], integ_failures);
	return integ_failures ? 1 : 0;
}
