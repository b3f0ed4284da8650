/* kube/tests/test_informer.c: the informer's cache without a server: list
 * pages (read item by item as their bytes arrive), watch events through
 * the framer, BOOKMARK and ERROR/410, relist replacement, and
 * caller-shaped compact values. */
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
	int transforms;
	int live_trees; /* trees handed to transform and not yet freed */
	int peak_trees;
};

/* json-c calls this when the tree it was set on is freed. */
static void tree_gone(struct json_object *obj, void *ud)
{
	(void)obj;
	((struct log *)ud)->live_trees--;
}

static int transform(void *arg, struct json_object *obj, void **value)
{
	struct log *l = arg;
	struct json_object *m, *v, *st;
	struct pod *p = calloc(1, sizeof(*p));

	assert_non_null(p);
	l->transforms++;
	if (++l->live_trees > l->peak_trees)
		l->peak_trees = l->live_trees;
	json_object_set_userdata(obj, l, tree_gone);
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

struct seen {
	char ns[80], name[300];
	int n;
};

static void see(void *arg, const char *ns, const char *name, void *value)
{
	struct seen *s = arg;

	(void)value;
	snprintf(s->ns, sizeof(s->ns), "%s", ns);
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->n++;
}

/* An entry holds its key and resourceVersion in one block: the longest
 * namespace (63) and name (253) the API server allows come back whole, a
 * relist at the same resourceVersion changes nothing and at another one
 * is an update; a name longer than any the API server sends is refused
 * before it is transformed. */
static void test_entry_keeps_longest_key_and_rv(void **state)
{
	struct log l = {0};
	struct kube_informer *inf;
	struct seen seen = {0};
	char ns[64], name[254], big[5000], buf[6000];
	struct json_object *same[1], *other[1], *list;
	int n;

	(void)state;
	memset(ns, 'n', 63);
	ns[63] = '\0';
	memset(name, 'a', 253);
	name[253] = '\0';
	assert_int_equal(kube__informer_new_detached(&ops, &l, &inf), 0);
	n = snprintf(buf, sizeof(buf),
	             "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"namespace\":\"%s\",\"name\":"
	             "\"%s\",\"resourceVersion\":\"123456789012345678901\"}}}\n",
	             ns, name);
	assert_int_equal(kube__informer_feed(inf, buf, (size_t)n), KUBE__WATCH_OK);
	assert_non_null(kube_informer_get(inf, ns, name));
	kube_informer_foreach(inf, see, &seen);
	assert_int_equal(seen.n, 1);
	assert_string_equal(seen.ns, ns);
	assert_string_equal(seen.name, name);

	same[0] = pod(ns, name, "123456789012345678901", "127.0.0.1");
	list = list_of("30", 1, same);
	assert_int_equal(kube__informer_list_page(inf, list, 1), 0);
	json_object_put(list);
	assert_int_equal(l.n, 1); /* the add only */
	other[0] = pod(ns, name, "123456789012345678902", "127.0.0.2");
	list = list_of("31", 1, other);
	assert_int_equal(kube__informer_list_page(inf, list, 1), 0);
	json_object_put(list);
	assert_int_equal(l.n, 2);
	assert_memory_equal(l.lines[1], "update ", 7);

	memset(big, 'b', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	n = snprintf(buf, sizeof(buf),
	             "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"namespace\":\"x\",\"name\":"
	             "\"%s\",\"resourceVersion\":\"40\"}}}\n",
	             big);
	l.transforms = 0;
	assert_int_equal(kube__informer_feed(inf, buf, (size_t)n), KUBE__WATCH_OK);
	assert_int_equal(l.transforms, 0);
	assert_null(kube_informer_get(inf, "x", big));
	assert_int_equal(kube_informer_count(inf), 1);
	kube_informer_free(inf);
	assert_int_equal(l.live_values, 0);
}

/* ---- list pages read as they arrive ---------------------------------- */

#define LPOD(name, rv, ip)                                                                         \
	"{\"metadata\":{\"namespace\":\"web\",\"name\":\"" name "\",\"resourceVersion\":\"" rv     \
	"\"},\"status\":{\"podIP\":\"" ip "\"}}"

/* Feeds `page` in pieces of `step` bytes and ends it; returns the first
 * error, or list_end's result. */
static int feed_page(struct kube_informer *inf, const char *page, size_t step, int last)
{
	size_t len = strlen(page);
	int rc = 0;

	for (size_t off = 0; off < len && !rc; off += step)
		rc = kube__informer_list_feed(inf, page + off, len - off < step ? len - off : step);
	if (rc) {
		/* The error sticks: ending the page reports it and drops it. */
		assert_int_equal(kube__informer_list_end(inf, last), rc);
		return rc;
	}
	return kube__informer_list_end(inf, last);
}

/* A page of 40 items fed one byte at a time: each item is transformed as
 * soon as its closing brace has arrived, and its tree is freed before the
 * next item is parsed. Nothing reaches the cache before the page ends. */
static void test_list_page_item_by_item(void **state)
{
	char page[8192], *w = page;
	size_t ends[40];
	struct log l = {0};
	struct kube_informer *inf;
	int done = 0;

	(void)state;
	w += sprintf(w, "{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":"
	                "{\"resourceVersion\":\"99\"},\"items\":[");
	for (int i = 0; i < 40; i++) {
		w += sprintf(w,
		             "%s{\"metadata\":{\"namespace\":\"web\",\"name\":\"p%d\","
		             "\"resourceVersion\":\"%d\"},\"status\":{\"podIP\":\"10.0.0.%d\"}}",
		             i ? ", " : "", i, i + 1, i);
		ends[i] = (size_t)(w - page);
	}
	sprintf(w, "]}\n");
	assert_int_equal(kube__informer_new_detached(&ops, &l, &inf), 0);
	for (size_t off = 0; page[off]; off++) {
		assert_int_equal(kube__informer_list_feed(inf, page + off, 1), 0);
		while (done < 40 && ends[done] <= off + 1)
			done++;
		assert_int_equal(l.transforms, done);
		assert_int_equal(l.live_trees, 0);
	}
	assert_int_equal(l.peak_trees, 1);
	assert_int_equal(kube_informer_count(inf), 0);
	assert_int_equal(kube__informer_list_end(inf, 1), 0);
	assert_int_equal(kube_informer_count(inf), 40);
	assert_int_equal(l.synced, 1);
	assert_string_equal(kube_informer_resource_version(inf), "99");
	assert_string_equal(((struct pod *)kube_informer_get(inf, "web", "p39"))->ip, "10.0.0.39");
	kube_informer_free(inf);
	assert_int_equal(l.live_values, 0);
}

/* Even a whole page handed over as one tree is transformed one item tree
 * at a time: the informer never holds a page's items as trees at once. */
static void test_list_page_one_tree_alive(void **state)
{
	struct log l = {0};
	struct kube_informer *inf;
	struct json_object *items[] = {pod("web", "a", "10", "127.0.0.1"),
	                               pod("web", "b", "11", "127.0.0.2"),
	                               pod("web", "c", "12", "127.0.0.3")};
	struct json_object *list = list_of("20", 3, items);

	(void)state;
	assert_int_equal(kube__informer_new_detached(&ops, &l, &inf), 0);
	assert_int_equal(kube__informer_list_page(inf, list, 1), 0);
	assert_int_equal(kube_informer_count(inf), 3);
	assert_int_equal(l.transforms, 3);
	assert_int_equal(l.peak_trees, 1);
	assert_int_equal(l.live_trees, 0);
	json_object_put(list);
	kube_informer_free(inf);
}

/* The same page gives the same cache wherever the chunks are cut, with
 * members in any order, strings holding brackets, quotes and escapes, an
 * item holding its own "items", and whitespace everywhere. */
static void test_list_page_split_anywhere(void **state)
{
	const char *page = " {\n \"items\" : [ " LPOD("a", "1", "x]}\\\"[{") " ,\n" LPOD(
	        "b", "2",
	        "\\u0041") ","
	                   "{\"metadata\":{\"namespace\":\"web\",\"name\":\"c\","
	                   "\"resourceVersion\":\"3\"},"
	                   "\"items\":[1,{\"items\":[]}],\"status\":{\"podIP\":\"c\"}} ] ,"
	                   "\"kind\":\"PodList\",\"n\":12,\"metadata\":{\"continue\":\"\","
	                   "\"resourceVersion\":\"42\",\"remainingItemCount\":0},\"x\":[\"]\",{"
	                   "\"a\":null}],"
	                   "\"z\":-1.5e3 } \n";
	size_t len = strlen(page);

	(void)state;
	for (size_t step = 1; step <= len; step++) {
		struct log l = {0};
		struct kube_informer *inf;

		assert_int_equal(kube__informer_new_detached(&ops, &l, &inf), 0);
		assert_int_equal(feed_page(inf, page, step, 1), 0);
		assert_int_equal(kube_informer_count(inf), 3);
		assert_string_equal(((struct pod *)kube_informer_get(inf, "web", "a"))->ip,
		                    "x]}\"[{");
		assert_string_equal(((struct pod *)kube_informer_get(inf, "web", "b"))->ip, "A");
		assert_string_equal(((struct pod *)kube_informer_get(inf, "web", "c"))->ip, "c");
		assert_string_equal(kube_informer_resource_version(inf), "42");
		assert_int_equal(l.peak_trees, 1);
		kube_informer_free(inf);
		assert_int_equal(l.live_values, 0);
	}
}

/* Bad pages: each is an error, whatever the chunking, and the list under
 * way is dropped with the cache left as the last good list made it. */
static void test_list_page_errors_keep_cache(void **state)
{
	static const struct {
		const char *page;
		int rc;
		int transforms; /* items transformed before the error */
	} cases[] = {
	        /* garbage in item 2: items 0 and 1 were read, then dropped */
	        {"{\"items\":[" LPOD("x", "1", "") "," LPOD("y", "2",
	                                                    "") ",{\"metadata\":{"
	                                                        "\"name\":\"z\"}, garbage}]}",
	         -EBADMSG, 2},
	        {"{\"items\":[" LPOD("x", "1", "") "]", -EBADMSG, 1},   /* cut short */
	        {"{\"items\":[" LPOD("x", "1", "") "]}}", -EBADMSG, 1}, /* trailing byte */
	        {"{\"items\":[" LPOD("x", "1", "") "]} {}", -EBADMSG, 1},
	        {"{\"items\":[" LPOD("x", "1", "") ",]}", -EBADMSG, 1},
	        {"{\"items\":[" LPOD("x", "1", "") " " LPOD("y", "2", "") "]}", -EBADMSG, 1},
	        {"{\"items\":[\"str\"]}", -EBADMSG, 0},           /* an item not an object */
	        {"{\"items\":[{\"metadata\":{}}]}", -EBADMSG, 0}, /* no name */
	        {"{\"items\":{}}", -EBADMSG, 0},
	        {"{\"items\" [] }", -EBADMSG, 0},
	        {"{items:[]}", -EBADMSG, 0},
	        {"[]", -EBADMSG, 0},
	        {"", -EBADMSG, 0},
	        {"<html>502 Bad Gateway</html>", -EBADMSG, 0},
	};
	struct log l = {0};
	struct kube_informer *inf;

	(void)state;
	assert_int_equal(kube__informer_new_detached(&ops, &l, &inf), 0);
	initial_list(inf, &l);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (size_t step = 1; step <= 64; step *= 4) {
			int t0 = l.transforms;

			assert_int_equal(feed_page(inf, cases[i].page, step, 1), cases[i].rc);
			assert_int_equal(l.transforms - t0, cases[i].transforms);
			assert_int_equal(l.live_trees, 0);
			assert_int_equal(l.live_values, 3);
			assert_int_equal(l.n, 3);
			assert_int_equal(l.synced, 1);
			assert_int_equal(kube_informer_count(inf), 3);
			assert_string_equal(kube_informer_resource_version(inf), "20");
		}
	}
	/* A raw NUL: json-c would stop at it. */
	assert_int_equal(kube__informer_list_feed(inf, "{\"items\":[\0]}", 13), -EBADMSG);
	assert_int_equal(kube__informer_list_end(inf, 1), -EBADMSG);
	assert_int_equal(kube_informer_count(inf), 3);
	/* A good list after the bad ones applies as usual. */
	assert_int_equal(feed_page(inf, "{\"items\":[" LPOD("a", "10", "127.0.0.1") "]}", 7, 1), 0);
	assert_int_equal(kube_informer_count(inf), 1);
	assert_int_equal(l.synced, 2);
	kube_informer_free(inf);
	assert_int_equal(l.live_values, 0);
}

static int count_item(void *arg, struct json_object *obj)
{
	(void)obj;
	(*(int *)arg)++;
	return 0;
}

/* Whether a page parses must not depend on where the network cuts it.
 * json-c drops a stray sign from a number split across two feeds ("35",
 * then "-"); the scanner refuses it in every cut, as json-c does whole.
 * Found by fuzz_listscan. */
static void test_listscan_outcome_does_not_depend_on_the_cuts(void **state)
{
	static const char *const pages[] = {
	        "{\"items\":[{\"a\":35-}]}",
	        "{\"items\":[], \"n\" :35-\t\t}",
	        "{\"items\":[{\"a\":1e+5,\"b\":-2.5E-3,\"c\":\"35-\\\"-\"}]}",
	};
	static const int want[] = {-EBADMSG, -EBADMSG, 0};

	(void)state;
	for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++) {
		size_t len = strlen(pages[i]);
		for (size_t step = 1; step <= len; step++) {
			struct kube__listscan ls;
			int n = 0, rc = 0;
			assert_int_equal(kube__listscan_init(&ls, 1024), 0);
			for (size_t off = 0; off < len && !rc; off += step)
				rc = kube__listscan_feed(&ls, pages[i] + off,
				                         len - off < step ? len - off : step,
				                         count_item, &n);
			rc = kube__listscan_end(&ls);
			if (rc != want[i])
				fail_msg("page %zu in pieces of %zu: %d, want %d", i, step, rc,
				         want[i]);
			kube__listscan_free(&ls);
		}
	}
}

/* The scanner bounds each value it parses, items included, as it goes. */
static void test_listscan_value_cap(void **state)
{
	const char *page = "{\"items\":[{\"a\":\"0123456789\"},{\"a\":\"0123456789abcdef\"}]}";
	struct kube__listscan ls;
	int n = 0;

	(void)state;
	assert_int_equal(kube__listscan_init(&ls, 20), 0);
	assert_int_equal(kube__listscan_feed(&ls, page, strlen(page), count_item, &n), -EFBIG);
	assert_int_equal(n, 1);
	assert_int_equal(kube__listscan_end(&ls), -EFBIG);
	kube__listscan_reset(&ls);
	n = 0;
	assert_int_equal(kube__listscan_feed(&ls, page, 30, count_item, &n), 0);
	assert_int_equal(n, 1);
	kube__listscan_free(&ls);
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
	        cmocka_unit_test(test_entry_keeps_longest_key_and_rv),
	        cmocka_unit_test(test_list_page_item_by_item),
	        cmocka_unit_test(test_list_page_one_tree_alive),
	        cmocka_unit_test(test_list_page_split_anywhere),
	        cmocka_unit_test(test_list_page_errors_keep_cache),
	        cmocka_unit_test(test_listscan_value_cap),
	        cmocka_unit_test(test_listscan_outcome_does_not_depend_on_the_cuts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
