/* kube/tests/integ_common.c: synchronous helpers over the loop for the
 * integration programs. */
#include "kube/tests/integ_common.h"
#include "loop/loop.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int integ_failures;

void integ_check(int cond, const char *fmt, ...)
{
	va_list ap;

	printf("%s - ", cond ? "ok" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!cond)
		integ_failures++;
}

void integ_note(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

struct kube_client *integ_client(struct loop *l, const char *kubeconfig, const char *context)
{
	struct kube_config_opts o = {.kubeconfig = kubeconfig, .context = context};
	struct kube_config *cfg;
	struct kube_client *kc;
	char err[512];

	if (kube_config_load(&o, &cfg, err, sizeof(err))) {
		fprintf(stderr, "config: %s\n", err);
		exit(2);
	}
	if (kube_client_new_take(l, cfg, &kc)) {
		fprintf(stderr, "client: cannot create\n");
		exit(2);
	}
	return kc;
}

struct sync_req {
	int done;
	long status;
	struct json_object *json;
	char msg[256];
};

static void sync_done(void *arg, const struct kube_response *r)
{
	struct sync_req *s = arg;

	s->done = 1;
	s->status = r->status;
	s->json = r->json ? json_object_get(r->json) : NULL;
	snprintf(s->msg, sizeof(s->msg), "%s", r->message ? r->message : "");
}

static int sync_is_done(void *arg)
{
	return ((struct sync_req *)arg)->done;
}

long integ_do(struct loop *l, struct kube_client *kc, const char *method, const char *path,
              const char *body, const char *content_type, struct json_object **out)
{
	struct kube_req_opts o = {.content_type = content_type};
	struct sync_req s = {0};

	if (kube_request_raw(kc, method, path, body, body ? strlen(body) : 0, &o, sync_done, &s,
	                     NULL))
		return 0;
	if (!integ_wait(l, sync_is_done, &s, 40000))
		return 0;
	if (s.status >= 300 || s.status == 0)
		integ_note("%s %s -> %ld %s", method, path, s.status, s.msg);
	if (out)
		*out = s.json;
	else
		json_object_put(s.json);
	return s.status;
}

int integ_wait(struct loop *l, int (*cond)(void *arg), void *arg, int timeout_ms)
{
	uint64_t end;

	loop_update_time(l);
	end = loop_now_ms(l) + (uint64_t)timeout_ms;
	while (!cond(arg)) {
		if (loop_now_ms(l) >= end)
			return 0;
		loop_run_once(l, 100);
		loop_update_time(l);
	}
	return 1;
}

static int never(void *arg)
{
	(void)arg;
	return 0;
}

void integ_sleep(struct loop *l, int ms)
{
	integ_wait(l, never, NULL, ms);
}

void integ_namespace(struct loop *l, struct kube_client *kc, const char *prefix, char *out,
                     size_t n)
{
	char body[256];
	long st;

	snprintf(out, n, "%s-%08x", prefix, loop_rand());
	snprintf(body, sizeof(body),
	         "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{"
	         "\"name\":\"%s\"}}",
	         out);
	st = integ_do(l, kc, "POST", "/api/v1/namespaces", body, NULL, NULL);
	if (st != 201) {
		fprintf(stderr, "cannot create namespace %s: %ld\n", out, st);
		exit(2);
	}
}
