/* kube/tests/integ_watch.c: list + watch against a real kube-apiserver.
 *
 *	kube_integ_watch KUBECONFIG
 *
 * Checks that an informer sees create, update and delete; honours label
 * and field selectors and pagination; relists and repairs its cache after
 * a forced 410 (a watch from a compacted resourceVersion); and, when
 * PPOP_KUBE_INTEG_RESTART_CMD names a command that restarts the
 * apiserver, resumes after the restart with a correct cache.
 */
#include "kube/kube_int.h"
#include "kube/tests/integ_common.h"
#include "loop/loop.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* What the test keeps per ConfigMap: a compact struct, not JSON. */
struct cm {
	char name[64];
	char value[32];
};

struct seen {
	int adds, updates, deletes, synced;
	char last_deleted[64];
};

static int transform(void *arg, struct json_object *obj, void **value)
{
	struct json_object *m, *v, *d;
	struct cm *c = calloc(1, sizeof(*c));

	(void)arg;
	if (!c)
		return -1;
	json_object_object_get_ex(obj, "metadata", &m);
	json_object_object_get_ex(m, "name", &v);
	snprintf(c->name, sizeof(c->name), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(obj, "data", &d) && json_object_object_get_ex(d, "k", &v))
		snprintf(c->value, sizeof(c->value), "%s", json_object_get_string(v));
	*value = c;
	return 0;
}

static void free_value(void *arg, void *v)
{
	(void)arg;
	free(v);
}

static void on_add(void *arg, const char *ns, const char *name, void *v)
{
	(void)ns;
	(void)name;
	(void)v;
	((struct seen *)arg)->adds++;
}

static void on_update(void *arg, const char *ns, const char *name, void *o, void *v)
{
	(void)ns;
	(void)name;
	(void)o;
	(void)v;
	((struct seen *)arg)->updates++;
}

static void on_delete(void *arg, const char *ns, const char *name, void *v)
{
	struct seen *s = arg;

	(void)ns;
	(void)v;
	s->deletes++;
	snprintf(s->last_deleted, sizeof(s->last_deleted), "%s", name);
}

static void on_synced(void *arg)
{
	((struct seen *)arg)->synced++;
}

static const struct kube_informer_ops ops = {transform, free_value, on_add,
                                             on_update, on_delete,  on_synced};

struct want {
	struct kube_informer *inf;
	const char *ns;
	const char *name;
	const char *value; /* NULL: want it absent */
};

static int have(void *arg)
{
	struct want *w = arg;
	struct cm *c = kube_informer_get(w->inf, w->ns, w->name);

	if (!w->value)
		return c == NULL;
	return c && !strcmp(c->value, w->value);
}

static int synced(void *arg)
{
	return kube_informer_synced(arg);
}

static struct loop *L;
static struct kube_client *KC;
static char NS[64];

static long put_cm(const char *method, const char *name, const char *value, const char *labels)
{
	char path[256], body[512];

	snprintf(body, sizeof(body),
	         "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"%s\","
	         "\"labels\":{%s}},\"data\":{\"k\":\"%s\"}}",
	         name, labels ? labels : "", value);
	kube_path(path, sizeof(path), "", "v1", NS, "configmaps",
	          strcmp(method, "POST") ? name : NULL, NULL);
	return integ_do(L, KC, method, path, body, NULL, NULL);
}

static long del_cm(const char *name)
{
	char path[256];

	kube_path(path, sizeof(path), "", "v1", NS, "configmaps", name, NULL);
	return integ_do(L, KC, "DELETE", path, NULL, NULL, NULL);
}

static int wait_cm(struct kube_informer *inf, const char *name, const char *value, int ms)
{
	struct want w = {inf, NS, name, value};

	return integ_wait(L, have, &w, ms);
}

static void basic_watch(struct kube_informer *inf, struct seen *s)
{
	integ_check(put_cm("POST", "a", "1", NULL) == 201, "create configmap a");
	integ_check(wait_cm(inf, "a", "1", 10000) && s->adds == 1, "informer saw the add");
	integ_check(put_cm("PUT", "a", "2", NULL) == 200, "update configmap a");
	integ_check(wait_cm(inf, "a", "2", 10000) && s->updates == 1, "informer saw the update");
	integ_check(put_cm("POST", "b", "1", "\"sel\":\"yes\"") == 201, "create configmap b");
	integ_check(del_cm("a") == 200, "delete configmap a");
	integ_check(wait_cm(inf, "a", NULL, 10000) && s->deletes == 1 &&
	                    !strcmp(s->last_deleted, "a"),
	            "informer saw the delete");
	integ_check(wait_cm(inf, "b", "1", 10000) && kube_informer_count(inf) == 1,
	            "cache holds exactly b");
}

static void selectors_and_pages(void)
{
	struct kube_informer_opts lo = {.version = "v1",
	                                .resource = "configmaps",
	                                .ns = NS,
	                                .label_selector = "sel in (yes,maybe)"};
	struct kube_informer_opts fo = {.version = "v1",
	                                .resource = "configmaps",
	                                .ns = NS,
	                                .field_selector = "metadata.name=p3"};
	struct kube_informer_opts po = {
	        .version = "v1", .resource = "configmaps", .ns = NS, .page_size = 2};
	struct kube_informer *li, *fi, *pi;
	struct seen ls = {0}, fs = {0}, ps = {0};
	char name[16];

	for (int i = 0; i < 7; i++) {
		snprintf(name, sizeof(name), "p%d", i);
		put_cm("POST", name, "x", i == 5 ? "\"sel\":\"maybe\"" : NULL);
	}
	kube_informer_start(KC, &lo, &ops, &ls, &li);
	kube_informer_start(KC, &fo, &ops, &fs, &fi);
	kube_informer_start(KC, &po, &ops, &ps, &pi);
	integ_check(integ_wait(L, synced, li, 10000) && integ_wait(L, synced, fi, 10000) &&
	                    integ_wait(L, synced, pi, 10000),
	            "three more informers synced");
	integ_check(kube_informer_count(li) == 2 && kube_informer_get(li, NS, "b") &&
	                    kube_informer_get(li, NS, "p5"),
	            "label selector \"sel in (yes,maybe)\" sees b and p5 (got %zu)",
	            kube_informer_count(li));
	integ_check(kube_informer_count(fi) == 1 && kube_informer_get(fi, NS, "p3"),
	            "field selector metadata.name=p3 sees only p3 (got %zu)",
	            kube_informer_count(fi));
	integ_check(kube_informer_count(pi) == 8 && ps.adds == 8,
	            "paginated list (limit=2) delivered all 8 objects once (got %zu, adds %d)",
	            kube_informer_count(pi), ps.adds);
	kube_informer_free(li);
	kube_informer_free(fi);
	kube_informer_free(pi);
}

static int relisted(void *arg)
{
	struct kube_informer_stats st;

	kube_informer_stats(arg, &st);
	return st.relists_410 >= 1;
}

/* Stops the watch, changes things behind its back, then watches from
 * resourceVersion 1. After an apiserver restart that is older than the new
 * watch cache and compacted in etcd, so the server answers 410 and the
 * informer must relist and repair its cache (a delete for what vanished).
 * A server whose watch cache still reaches back that far replays history
 * instead, which must leave the cache just as correct. */
static void forced_410(struct kube_informer *inf, struct seen *s, int expect_410)
{
	kube__informer_pause(inf);
	put_cm("POST", "c", "1", NULL);
	del_cm("b");
	integ_note("watching from resourceVersion 1");
	kube__informer_rewatch_from(inf, "1");
	if (expect_410)
		integ_check(integ_wait(L, relisted, inf, 20000), "410 Gone led to a relist");
	integ_check(wait_cm(inf, "b", NULL, 10000) && !strcmp(s->last_deleted, "b"),
	            "b, deleted while we were away, was deleted from the cache");
	integ_check(wait_cm(inf, "c", "1", 5000), "c, created while away, is in the cache");
	integ_check(put_cm("PUT", "c", "2", NULL) == 200 && wait_cm(inf, "c", "2", 10000),
	            "watch resumed after the relist");
	integ_check(kube_informer_count(inf) == (expect_410 ? 9u : 8u),
	            "cache holds exactly the live objects (%zu)", kube_informer_count(inf));
}

static int watch_restarted(void *arg)
{
	struct kube_informer_stats st;

	kube_informer_stats(arg, &st);
	return st.watches >= 3;
}

static int child_status;

static int child_exited(void *arg)
{
	pid_t *pid = arg;

	return waitpid(*pid, &child_status, WNOHANG) == *pid;
}

static void restart(struct kube_informer *inf, const char *cmd)
{
	struct kube_informer_stats before, after;
	long st = 0;
	pid_t child;

	kube_informer_stats(inf, &before);
	integ_note("restarting the apiserver in the background: %s", cmd);
	/* The loop keeps running meanwhile, so the informer really sees the
	 * drop and the refused reconnects, and backs off. */
	child = fork();
	if (child == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	integ_check(child > 0 && integ_wait(L, child_exited, &child, 120000) &&
	                    WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0,
	            "apiserver restarted");
	for (int i = 0; i < 40 && st != 201; i++) {
		st = put_cm("POST", "d", "1", NULL);
		if (st != 201)
			integ_sleep(L, 500);
	}
	integ_check(st == 201, "created d after the restart");
	integ_check(wait_cm(inf, "d", "1", 40000), "informer saw d after the restart");
	integ_check(put_cm("PUT", "b", "3", NULL) == 200 && wait_cm(inf, "b", "3", 10000),
	            "and later updates");
	integ_wait(L, watch_restarted, inf, 1000);
	kube_informer_stats(inf, &after);
	integ_note("stats: lists %llu->%llu, watches %llu->%llu, restarts %llu->%llu",
	           (unsigned long long)before.lists, (unsigned long long)after.lists,
	           (unsigned long long)before.watches, (unsigned long long)after.watches,
	           (unsigned long long)before.restarts, (unsigned long long)after.restarts);
	/* A restarted apiserver's watch cache starts at its current revision,
	 * so the last resourceVersion we saw may already be "too old": then
	 * the informer relists (as client-go does); else it just re-watches. */
	integ_check(after.restarts > before.restarts,
	            "the drop and the refused reconnects were retried with backoff (%llu)",
	            (unsigned long long)(after.restarts - before.restarts));
	integ_check(after.watches > before.watches, "a new watch was started after the drop (%s)",
	            after.relists_410 > before.relists_410
	                    ? "the old resourceVersion was 410 Gone, so it relisted"
	                    : "resumed from the last resourceVersion");
	integ_check(kube_informer_count(inf) == 9, "cache has b, d and p0..p6 (%zu)",
	            kube_informer_count(inf));
}

int main(int argc, char **argv)
{
	struct kube_informer_opts o = {.version = "v1", .resource = "configmaps"};
	struct kube_informer *inf;
	struct kube_informer_stats st;
	struct seen s = {0};
	const char *cmd = getenv("PPOP_KUBE_INTEG_RESTART_CMD");

	if (argc < 2) {
		fprintf(stderr, "usage: %s KUBECONFIG\n", argv[0]);
		return 2;
	}
	if (loop_new(&L))
		return 2;
	KC = integ_client(L, argv[1], NULL);
	integ_namespace(L, KC, "kube-integ-watch", NS, sizeof(NS));
	integ_note("namespace %s", NS);
	o.ns = NS;
	integ_check(kube_informer_start(KC, &o, &ops, &s, &inf) == 0, "informer started");
	integ_check(integ_wait(L, synced, inf, 10000) && s.synced == 1 &&
	                    kube_informer_count(inf) == 0,
	            "initial list synced, empty");
	basic_watch(inf, &s);
	selectors_and_pages();
	if (cmd && *cmd)
		restart(inf, cmd);
	else
		integ_note("PPOP_KUBE_INTEG_RESTART_CMD unset: skipping the apiserver restart");
	forced_410(inf, &s, cmd && *cmd);
	kube_informer_stats(inf, &st);
	integ_note("final stats: lists %llu relists_410 %llu watches %llu restarts %llu events "
	           "%llu bookmarks %llu rv %s",
	           (unsigned long long)st.lists, (unsigned long long)st.relists_410,
	           (unsigned long long)st.watches, (unsigned long long)st.restarts,
	           (unsigned long long)st.events, (unsigned long long)st.bookmarks,
	           kube_informer_resource_version(inf));
	kube_informer_free(inf);
	kube_client_free(KC);
	loop_free(L);
	printf("%s: %d failure(s)\n", argv[0], integ_failures);
	return integ_failures ? 1 : 0;
}
