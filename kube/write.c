/* kube/write.c: writes: status patches, server-side apply, and
 * create-or-update with optimistic-concurrency retry (client-go's
 * retry.RetryOnConflict).
 */
#include "kube/kube_int.h"
#include "loop/loop.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFLICT_RETRIES 5

static int patch_to(struct kube_client *kc, const char *path, const char *ctype,
                    struct json_object *body, kube_done_fn done, void *arg)
{
	struct kube_req_opts o = {.content_type = ctype};

	return kube_request(kc, "PATCH", path, body, &o, done, arg, NULL);
}

int kube_patch_status(struct kube_client *kc, const char *obj_path, struct json_object *patch,
                      kube_done_fn done, void *arg)
{
	char path[4096];

	if ((size_t)snprintf(path, sizeof(path), "%s/status", obj_path) >= sizeof(path))
		return -ENAMETOOLONG;
	return patch_to(kc, path, "application/merge-patch+json", patch, done, arg);
}

int kube_patch_merge(struct kube_client *kc, const char *obj_path, struct json_object *patch,
                     kube_done_fn done, void *arg)
{
	return patch_to(kc, obj_path, "application/merge-patch+json", patch, done, arg);
}

int kube_apply_status(struct kube_client *kc, const char *obj_path, struct json_object *obj,
                      const char *field_manager, kube_done_fn done, void *arg)
{
	char path[4096];

	if ((size_t)snprintf(path, sizeof(path), "%s/status", obj_path) >= sizeof(path))
		return -ENAMETOOLONG;
	if (kube_query_add(path, sizeof(path), "fieldManager", field_manager) ||
	    kube_query_add(path, sizeof(path), "force", "true"))
		return -ENAMETOOLONG;
	/* JSON is YAML, so the apply body can be the object as JSON. */
	return patch_to(kc, path, "application/apply-patch+yaml", obj, done, arg);
}

/* One create-or-update in progress. */
struct cou {
	struct kube__op op; /* first: the client may cancel us */
	struct kube_client *kc;
	struct kube_call *call;
	char *collection;
	char *item;
	kube_mutate_fn mutate;
	void *mutate_arg;
	kube_done_fn done;
	void *arg;
	int attempts;
	struct loop_timer retry;
};

static void cou_get(struct cou *u);

static void cou_free(struct cou *u)
{
	kube__op_unlink(u->kc, &u->op);
	kube_call_cancel(u->call);
	loop_timer_stop(kube_client_loop(u->kc), &u->retry);
	free(u->collection);
	free(u->item);
	free(u);
}

static void cou_cancel(struct kube__op *op)
{
	cou_free((struct cou *)op);
}

static void cou_finish(struct cou *u, const struct kube_response *r)
{
	kube_done_fn done = u->done;
	void *arg = u->arg;

	u->call = NULL;
	cou_free(u);
	done(arg, r);
}

static void cou_fail(struct cou *u, int err, const char *msg)
{
	struct kube_response r = {.err = err, .body = "", .message = msg};

	cou_finish(u, &r);
}

static void cou_retry(struct loop_timer *t)
{
	cou_get(t->arg);
}

static void cou_written(void *arg, const struct kube_response *r)
{
	struct cou *u = arg;
	struct loop_backoff bo = {.base_ms = 50, .max_ms = 1000, .attempt = (uint32_t)u->attempts};

	u->call = NULL;
	if (r->status == 409 && u->attempts < CONFLICT_RETRIES) {
		u->attempts++;
		if (!loop_timer_start(kube_client_loop(u->kc), &u->retry, loop_backoff_next(&bo)))
			return;
	}
	cou_finish(u, r);
}

static void cou_got(void *arg, const struct kube_response *r)
{
	struct cou *u = arg;
	struct json_object *cur = NULL, *want;
	int rc;

	u->call = NULL;
	if (r->status == 200 && r->json)
		cur = r->json;
	else if (r->status != 404) {
		cou_finish(u, r);
		return;
	}
	want = u->mutate(u->mutate_arg, cur);
	if (!want) {
		cou_fail(u, -ECANCELED, "mutate declined");
		return;
	}
	if (cur)
		rc = kube_request(u->kc, "PUT", u->item, want, NULL, cou_written, u, &u->call);
	else
		rc = kube_request(u->kc, "POST", u->collection, want, NULL, cou_written, u,
		                  &u->call);
	json_object_put(want);
	if (rc)
		cou_fail(u, rc, strerror(-rc));
}

static void cou_get(struct cou *u)
{
	int rc = kube_request(u->kc, "GET", u->item, NULL, NULL, cou_got, u, &u->call);

	if (rc)
		cou_fail(u, rc, strerror(-rc));
}

int kube_create_or_update(struct kube_client *kc, const char *collection, const char *name,
                          kube_mutate_fn mutate, void *mutate_arg, kube_done_fn done, void *arg)
{
	struct cou *u = calloc(1, sizeof(*u));
	int rc;

	if (!u)
		return -ENOMEM;
	u->kc = kc;
	u->mutate = mutate;
	u->mutate_arg = mutate_arg;
	u->done = done;
	u->arg = arg;
	loop_timer_init(&u->retry, cou_retry, u);
	u->op.cancel = cou_cancel;
	kube__op_link(kc, &u->op);
	u->collection = strdup(collection);
	if (!u->collection || asprintf(&u->item, "%s/%s", collection, name) < 0) {
		u->item = NULL;
		cou_free(u);
		return -ENOMEM;
	}
	rc = kube_request(kc, "GET", u->item, NULL, NULL, cou_got, u, &u->call);
	if (rc) {
		u->call = NULL;
		cou_free(u);
	}
	return rc;
}
