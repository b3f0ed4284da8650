/* kube/tests/test_informer.c: the informer's cache without a server: list
 * pages, watch events through the framer, BOOKMARK and ERROR/410, relist
 * replacement, and caller-shaped compact values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/kube_int.h"

/* The caller's compact value: what an operator would keep of a pod. */
struct pod {
	char ns[64], name[64], ip[48];
	int live; /* to catch double frees and leaks */
};

struct log {
	char lines[64][128];
	int n;
	int synced;
	int live_values;
};

static int transform(void *arg, struct json_object *obj, void **value)
{
	struct log *l = arg;
	struct json_object *m, *v, *st;
	struct pod *p = calloc(1, sizeof(*p));

	assert_non_null(p);
	json_object_object_get_ex(obj, "metadata", &m);
	if (json_object_object_get_ex(m, "namespace", &v))
		snprintf(p->ns, sizeof(p->ns), "%s", json_object_get_string(v));
	json_object_object_get_ex(m, "name", &v);
	snprintf(p->name, sizeof(p->name), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(obj, "status", &st) &&
	    json_object_object_get_ex(st, "podIP", &v))
		snprintf(p->ip, sizeof(p->ip), "%s", json_object_get_string(v));
	if (!strcmp(p->name, "skip-me")) {
		free(p);
		return -1;
	}
	p->live = 1;
	l->live_values++;
	*value = p;
	return 0;
}

static void free_value(void *arg, void *value)
{
	struct log *l = arg;
	struct pod *p = value;

	assert_int_equal(p->live, 1);
	p->live = 0;
	l->live_values--;
	free(p);
}

static void logf_(struct log *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(struct log *l, const char *fmt, ...)
{
	va_list ap;

	assert_true(l->n < 64);
	va_start(ap, fmt);
	vsnprintf(l->lines[l->n++], 128, fmt, ap);
	va_end(ap);
}

static void on_add(void *arg, const char *ns, const char *name, void *v)
{
	logf_(arg, "add %s/%s %s", ns, name, ((struct pod *)v)->ip);
}

static void on_update(void *arg, const char *ns, const char *name, void *o, void *v)
{
	logf_(arg, "update %s/%s %s->%s", ns, name, ((struct pod *)o)->ip, ((struct pod *)v)->ip);
}

static void on_delete(void *arg, const char *ns, const char *name, void *v)
{
	logf_(arg, "delete %s/%s %s", ns, name, ((struct pod *)v)->ip);
}

static void on_synced(void *arg)
{
	((struct log *)arg)->synced++;
}

static const struct kube_informer_ops ops = {transform, free_value, on_add,
                                             on_update, on_delete,  on_synced};

static struct json_object *pod(const char *ns, const char *name, const char *rv, const char *ip)
{
	char buf[512];

	snprintf(buf, sizeof(buf),
	         "{\"metadata\":{\"namespace\":\"%s\",\"name\":\"%s\",\"resourceVersion\":\"%s\"},"
	         "\"status\":{\"podIP\":\"%s\"}}",
	         ns, name, rv, ip);
	return json_tokener_parse(buf);
}

static struct json_object *list_of(const char *rv, int n, struct json_object **items)
{
	struct json_object *l = json_object_new_object(), *m = json_object_new_object();
	struct json_object *a = json_object_new_array();

	json_object_object_add(m, "resourceVersion", json_object_new_string(rv));
	json_object_object_add(l, "metadata", m);
	for (int i = 0; i < n; i++)
		json_object_array_add(a, items[i]);
	json_object_object_add(l, "items", a);
	return l;
}

/* Lists two pages: nothing is visible until the last page is in. */
static void initial_list(struct kube_informer *inf, struct log *l)
{
	struct json_object *p1[] = {pod("web", "a", "10", "127.0.0.1"),
	                            pod("web", "b", "11", "127.0.0.2")};
	struct json_object *p2[] = {pod("api", "c", "12", "127.0.0.3"),
	                            pod("api", "skip-me", "13", "")};
	struct json_object *page1 = list_of("20", 2, p1), *page2 = list_of("20", 2, p2);

	assert_int_equal(kube__informer_list_page(inf, page1, 0), 0);
	assert_int_equal(kube_informer_count(inf), 0);
	assert_int_equal(l->n, 0);
	assert_int_equal(kube__informer_list_page(inf, page2, 1), 0);
	assert_int_equal(kube_informer_count(inf), 3);
	assert_int_equal(l->n, 3);
	assert_int_equal(l->synced, 1);
	assert_string_equal(kube_informer_resource_version(inf), "20");
	json_object_put(page1);
	json_object_put(page2);
}

static void test_list_then_events(void **state)
{
	struct log l = {0};
	struct kube_informer *inf2;
	const char *ev = "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"namespace\":\"web\","
	                 "\"name\":\"a\",\"resourceVersion\":\"21\"},\"status\":{\"podIP\":"
	                 "\"127.0.0.9\"}}}\n"
	                 "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"namespace\":\"web\","
	                 "\"name\":\"b\",\"resourceVersion\":\"22\"}}}\n"
	                 "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"namespace\":\"x\","
	                 "\"name\":\"d\",\"resourceVersion\":\"23\"},\"status\":{}}}\n";
	struct pod *p;

	(void)state;
	assert_int_equal(kube__informer_new_detached(&ops, &l, &inf2), 0);
	initial_list(inf2, &l);
	assert_int_equal(kube__informer_feed(inf2, ev, strlen(ev)), KUBE__WATCH_OK);
	assert_int_equal(kube_informer_count(inf2), 3);
	assert_string_equal(l.lines[3], "update web/a 127.0.0.1->127.0.0.9");
	assert_string_equal(l.lines[4], "delete web/b 127.0.0.2");
	assert_string_equal(l.lines[5], "add x/d ");
	p = kube_informer_get(inf2, "web", "a");
	assert_non_null(p);
	assert_string_equal(p->ip, "127.0.0.9");
	assert_null(kube_informer_get(inf2, "web", "b"));
	assert_string_equal(kube_informer_resource_version(inf2), "23");
	kube_informer_free(inf2);
	assert_int_equal(l.live_values, 0);
}

/* The same watch stream gives the same cache whatever the byte boundary. */
static void test_events_split_at_every_byte(void **state)
{
	const char *ev = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"namespace\":\"n\","
	                 "\"name\":\"e\",\"resourceVersion\":\"30\"},\"status\":{\"podIP\":"
	                 "\"1\"}}}\n{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Pod\","
	                 "\"metadata\":{\"resourceVersion\":\"31\"}}}\n"
	                 "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"namespace\":\"n\","
	                 "\"name\":\"e\",\"resourceVersion\":\"32\"},\"status\":{\"podIP\":"
	                 "\"2\"}}}\n";
	size_t len = strlen(ev);

	(void)state;
	for (size_t cut = 0; cut <= len; cut++) {
		struct log l = {0};
		struct kube_informer *inf;
		struct pod *p;

		assert_int_equal(kube__informer_new_detached(&ops, &l, &inf), 0);
		assert_int_equal(kube__informer_feed(inf, ev, cut), KUBE__WATCH_OK);
		assert_int_equal(kube__informer_feed(inf, ev + cut, len - cut), KUBE__WATCH_OK);
		assert_int_equal(l.n, 2);
		p = kube_informer_get(inf, "n", "e");
		assert_non_null(p);
		assert_string_equal(p->ip, "2");
		assert_string_equal(kube_informer_resource_version(inf), "32");
		kube_informer_free(inf);
		assert_int_equal(l.live_values, 0);
	}
}

static void test_bookmark_moves_rv_only(void **state)
{
	struct log l = {0};
	struct kube_informer *inf;
	const char *bm =
	        "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Pod\",\"apiVersion\":\"v1\","
	        "\"metadata\":{\"resourceVersion\":\"77\",\"annotations\":{"
	        "\"k8s.io/initial-events-end\":\"true\"}}}}\n";
	struct kube_informer_stats st;

	(void)state;
	assert_int_equal(kube__informer_new_detached(&ops, &l, &inf), 0);
	initial_list(inf, &l);
	assert_int_equal(kube__informer_feed(inf, bm, strlen(bm)), KUBE__WATCH_OK);
	assert_int_equal(l.n, 3);
	assert_int_equal(kube_informer_count(inf), 3);
	assert_string_equal(kube_informer_resource_version(inf), "77");
	kube_informer_stats(inf, &st);
	assert_int_equal(st.bookmarks, 1);
	kube_informer_free(inf);
}

static void test_error_410_asks_relist(void **state)
{
	struct log l = {0};
	struct kube_informer *inf;
	const char *gone = "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":"
	                   "\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":"
	                   "\"too old resource version: 5 (20)\",\"reason\":\"Expired\","
	                   "\"code\":410}}\n"
	                   "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"late\"}}}\n";
	const char *other = "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":500,"
	                    "\"reason\":\"InternalError\"}}\n";

	(void)state;
	assert_int_equal(kube__informer_new_detached(&ops, &l, &inf), 0);
	initial_list(inf, &l);
	assert_int_equal(kube__informer_feed(inf, gone, strlen(gone)), KUBE__WATCH_RELIST);
	/* Nothing after the error is applied. */
	assert_null(kube_informer_get(inf, "", "late"));
	kube_informer_free(inf);

	assert_int_equal(kube__informer_new_detached(&ops, &l, &inf), 0);
	assert_int_equal(kube__informer_feed(inf, other, strlen(other)), KUBE__WATCH_RESTART);
	kube_informer_free(inf);
}

/* A relist replaces the cache: vanished objects get deletes, changed ones
 * updates, new ones adds, unchanged ones nothing. */
static void test_relist_replaces_cache(void **state)
{
	struct log l = {0};
	struct kube_informer *inf;
	struct json_object *items[] = {pod("web", "a", "10", "127.0.0.1"),
	                               pod("api", "c", "40", "127.0.0.33"),
	                               pod("new", "z", "41", "127.0.0.50")};
	struct json_object *list = list_of("50", 3, items);

	(void)state;
	assert_int_equal(kube__informer_new_detached(&ops, &l, &inf), 0);
	initial_list(inf, &l);
	assert_int_equal(kube__informer_list_page(inf, list, 1), 0);
	assert_int_equal(l.synced, 2);
	assert_int_equal(l.n, 6);
	/* Order: deletes first, then adds and updates in table order. */
	assert_string_equal(l.lines[3], "delete web/b 127.0.0.2");
	{
		int saw_update = 0, saw_add = 0;

		for (int i = 4; i < 6; i++) {
			saw_update |= !strcmp(l.lines[i], "update api/c 127.0.0.3->127.0.0.33");
			saw_add |= !strcmp(l.lines[i], "add new/z 127.0.0.50");
		}
		assert_true(saw_update && saw_add);
	}
	assert_int_equal(kube_informer_count(inf), 3);
	assert_string_equal(kube_informer_resource_version(inf), "50");
	json_object_put(list);
	kube_informer_free(inf);
	assert_int_equal(l.live_values, 0);
}

static void test_without_transform_keeps_json(void **state)
{
	struct kube_informer_ops raw = {0};
	struct kube_informer *inf;
	const char *ev = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"ns1\","
	                 "\"resourceVersion\":\"1\"}}}\n";
	struct json_object *o;

	(void)state;
	assert_int_equal(kube__informer_new_detached(&raw, NULL, &inf), 0);
	assert_int_equal(kube__informer_feed(inf, ev, strlen(ev)), KUBE__WATCH_OK);
	o = kube_informer_get(inf, "", "ns1");
	assert_non_null(o);
	assert_true(json_object_is_type(o, json_type_object));
	kube_informer_free(inf);
}

static void test_many_objects_grow_table(void **state)
{
	struct log l = {0};
	struct kube_informer *inf;
	char buf[256];

	(void)state;
	assert_int_equal(kube__informer_new_detached(&ops, &l, &inf), 0);
	for (int i = 0; i < 5000; i++) {
		int n = snprintf(buf, sizeof(buf),
		                 "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"namespace\":"
		                 "\"n%d\",\"name\":\"p%d\",\"resourceVersion\":\"%d\"}}}\n",
		                 i % 7, i, i + 1);
		l.n = 0;
		assert_int_equal(kube__informer_feed(inf, buf, (size_t)n), KUBE__WATCH_OK);
	}
	assert_int_equal(kube_informer_count(inf), 5000);
	assert_non_null(kube_informer_get(inf, "n1", "p4999"));
	kube_informer_free(inf);
	assert_int_equal(l.live_values, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_list_then_events),
	        cmocka_unit_test(test_events_split_at_every_byte),
	        cmocka_unit_test(test_bookmark_moves_rv_only),
	        cmocka_unit_test(test_error_410_asks_relist),
	        cmocka_unit_test(test_relist_replaces_cache),
	        cmocka_unit_test(test_without_transform_keeps_json),
	        cmocka_unit_test(test_many_objects_grow_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
