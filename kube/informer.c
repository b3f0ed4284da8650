/* kube/informer.c: list + watch of one resource into a cache, as
 * client-go's reflector and informer do it.
 *
 * A paginated list (limit/continue) fills a staging table; only when the
 * last page is in is it swapped for the cache, so callers never see a
 * half-applied relist. Then a watch streams changes from the list's
 * resourceVersion with bookmarks on and a random timeoutSeconds in
 * [300, 600], so that many clients do not reconnect in step. 410 Gone (as
 * an HTTP status or an ERROR event) means our resourceVersion was
 * compacted away: relist. A dropped connection re-watches from the last
 * resourceVersion after a jittered backoff (800 ms .. 30 s, as client-go).
 *
 * A list page is read as it arrives: the list scanner hands each item
 * over as soon as it is complete, and the item's tree is transformed,
 * staged and freed before the next is parsed, so neither the page's bytes
 * nor its trees are ever held whole (a page of 500 policies is about 27 MB
 * of json-c trees). This runs inside curl's write callback; it calls only
 * `transform`, never the cache callbacks, which come from swap_in() after
 * the transfer has ended.
 *
 * Watch bytes also arrive inside curl's write callback, where libcurl
 * forbids starting other transfers; callers' cache callbacks often do
 * exactly that, so those bytes are queued and parsed from a zero-delay
 * timer instead.
 */
#include "common/common.h"
#include "kube/kube_int.h"
#include "loop/log.h"
#include "loop/loop.h"

#include <errno.h>
#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define URL_MAX             8192
#define DEFAULT_PAGE        500
#define LIST_TIMEOUT_MS     60000u
#define WATCH_SLACK_S       30u
#define DEFAULT_EVENT_BYTES (16u << 20)
#define DEFAULT_PAGE_BYTES  (64u << 20)

enum entry_state { E_KEEP = 0, E_ADDED, E_UPDATED };

/* One cached object, in one allocation with its key and resourceVersion:
 * a cache holds one per object (100,000 pods: 100,000 entries), so three
 * mallocs each cost 64 bytes an object more than one. */
struct entry {
	struct entry *next;
	void *value;
	void *prev_value; /* during a relist swap: the replaced value */
	uint32_t hash;
	uint16_t ns_len;     /* key is "ns/name"; ns is key[0..ns_len) */
	uint16_t rv_off;     /* the resourceVersion is at key + rv_off */
	unsigned char state; /* enum entry_state */
	char key[];          /* "ns/name", NUL, resourceVersion, NUL */
};

#define ENTRY_KEY_MAX 4096 /* names are at most 253 bytes, namespaces 63 */

static const char *entry_rv(const struct entry *e)
{
	return e->key + e->rv_off;
}

struct table {
	struct entry **b;
	size_t nb;
	size_t n;
};

struct kube_informer {
	struct kube_client *kc; /* NULL when detached (unit tests) */
	struct kube_informer_opts o;
	char *strs[6]; /* owned copies of the strings in `o` */
	struct kube_informer_ops ops;
	void *arg;
	struct table cache;
	struct table staging;
	int listing;
	char *rv;
	char *cont;
	int synced;
	int relist_410;           /* the list under way was forced by 410 */
	struct kube__listscan ls; /* the list page under way */
	size_t page_bytes;        /* bytes of it read so far */
	struct kube__framer fr;
	struct kube_call *call;
	struct loop_timer timer; /* backoff, relist and re-watch */
	int timer_lists;         /* the timer starts a list, not a watch */
	struct loop_timer drain; /* parses queued watch bytes */
	struct loop_buf pending;
	size_t pending_off; /* bytes of it parsed already */
	/* A list's differences being delivered, a slice per loop iteration:
	 * the vanished entries still to report, then a cursor over the cache
	 * (bucket, next entry in it; NULL: the bucket's first). Watch events
	 * wait until it ends, and so does on_synced when it is due. */
	int emitting, sync_after;
	/* The last slice of each kind yielded before doing anything: the next
	 * one does one unit whatever the budget, so that other work filling
	 * every iteration cannot starve it. */
	int emit_starved, drain_starved;
	struct entry *gone;
	size_t emit_b;
	struct entry *emit_e;
	struct loop_timer emit;
	int action; /* strongest enum kube__watch_action seen this watch */
	int watch_events;
	struct loop_backoff bo;
	struct kube_informer_stats st;
};

/* ---- the table ---------------------------------------------------- */

static uint32_t key_hash(const char *key)
{
	return (uint32_t)ppop_fnv1a_str(PPOP_FNV1A_INIT, key);
}

static struct entry **table_slot(const struct table *t, const char *key, uint32_t h)
{
	struct entry **pp;

	if (!t->nb)
		return NULL;
	for (pp = &t->b[h & (t->nb - 1)]; *pp; pp = &(*pp)->next)
		if ((*pp)->hash == h && !strcmp((*pp)->key, key))
			return pp;
	return pp;
}

static int table_grow(struct table *t)
{
	size_t nb = t->nb ? t->nb * 2 : 64;
	struct entry **b = calloc(nb, sizeof(*b));

	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < t->nb; i++) {
		struct entry *e = t->b[i], *next;

		for (; e; e = next) {
			next = e->next;
			e->next = b[e->hash & (nb - 1)];
			b[e->hash & (nb - 1)] = e;
		}
	}
	free(t->b);
	t->b = b;
	t->nb = nb;
	return 0;
}

static struct entry *table_find(const struct table *t, const char *key)
{
	struct entry **pp = table_slot(t, key, key_hash(key));

	return pp ? *pp : NULL;
}

/* Unlinks and returns the entry for `key`, or NULL. */
static struct entry *table_take(struct table *t, const char *key)
{
	struct entry **pp = table_slot(t, key, key_hash(key)), *e;

	if (!pp || !*pp)
		return NULL;
	e = *pp;
	*pp = e->next;
	e->next = NULL;
	t->n--;
	return e;
}

/* Links `e` (whose key is not present). */
static int table_put(struct table *t, struct entry *e)
{
	struct entry **pp;

	if (t->n >= t->nb && table_grow(t))
		return -ENOMEM;
	e->hash = key_hash(e->key);
	pp = &t->b[e->hash & (t->nb - 1)];
	e->next = *pp;
	*pp = e;
	t->n++;
	return 0;
}

static void free_value(struct kube_informer *inf, void *v)
{
	if (!v)
		return;
	if (inf->ops.transform)
		inf->ops.free_value(inf->arg, v);
	else
		json_object_put(v);
}

static void entry_free(struct kube_informer *inf, struct entry *e)
{
	free_value(inf, e->value);
	free_value(inf, e->prev_value);
	free(e);
}

static void table_clear(struct kube_informer *inf, struct table *t)
{
	for (size_t i = 0; i < t->nb; i++) {
		struct entry *e = t->b[i], *next;

		for (; e; e = next) {
			next = e->next;
			entry_free(inf, e);
		}
	}
	free(t->b);
	memset(t, 0, sizeof(*t));
}

/* ---- objects -------------------------------------------------------- */

static const char *meta_str(struct json_object *obj, const char *field)
{
	struct json_object *m, *v;

	if (!json_object_object_get_ex(obj, "metadata", &m) ||
	    !json_object_object_get_ex(m, field, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* Builds an entry for `obj`: key, rv and the transformed value. Returns
 * 0, 1 when the transform leaves the object out, or a negative errno
 * (-EBADMSG: no name, or a name, namespace or resourceVersion longer than
 * any the API server sends). */
static int entry_from(struct kube_informer *inf, struct json_object *obj, struct entry **out)
{
	const char *ns = meta_str(obj, "namespace"), *name = meta_str(obj, "name");
	const char *rv = meta_str(obj, "resourceVersion");
	size_t nl, kl, rl;
	struct entry *e;
	void *v = NULL;

	if (!name || !*name)
		return -EBADMSG;
	if (!ns)
		ns = "";
	if (!rv)
		rv = "";
	nl = strlen(ns);
	kl = nl + 1 + strlen(name);
	rl = strlen(rv);
	if (kl >= ENTRY_KEY_MAX || rl >= ENTRY_KEY_MAX)
		return -EBADMSG;
	if (inf->ops.transform) {
		if (inf->ops.transform(inf->arg, obj, &v) < 0)
			return 1;
	} else {
		v = json_object_get(obj);
	}
	e = malloc(offsetof(struct entry, key) + kl + 1 + rl + 1);
	if (!e) {
		free_value(inf, v);
		return -ENOMEM;
	}
	memset(e, 0, offsetof(struct entry, key));
	memcpy(e->key, ns, nl);
	e->key[nl] = '/';
	memcpy(e->key + nl + 1, name, kl - nl);
	memcpy(e->key + kl + 1, rv, rl + 1);
	e->ns_len = (uint16_t)nl;
	e->rv_off = (uint16_t)(kl + 1);
	e->value = v;
	*out = e;
	return 0;
}

/* Calls a callback with the entry's namespace and name split out. */
static void split_key(const struct entry *e, char *ns, size_t n, const char **name)
{
	size_t l = e->ns_len < n ? e->ns_len : n - 1;

	memcpy(ns, e->key, l);
	ns[l] = '\0';
	*name = e->key + e->ns_len + 1;
}

static void emit_add(struct kube_informer *inf, struct entry *e)
{
	char ns[256];
	const char *name;

	if (!inf->ops.on_add)
		return;
	split_key(e, ns, sizeof(ns), &name);
	inf->ops.on_add(inf->arg, ns, name, e->value);
}

static void emit_update(struct kube_informer *inf, struct entry *e, void *old)
{
	char ns[256];
	const char *name;

	if (!inf->ops.on_update)
		return;
	split_key(e, ns, sizeof(ns), &name);
	inf->ops.on_update(inf->arg, ns, name, old, e->value);
}

/* Calls on_delete and frees the entry. */
static void emit_delete(struct kube_informer *inf, struct entry *e)
{
	char ns[256];
	const char *name;

	if (inf->ops.on_delete) {
		split_key(e, ns, sizeof(ns), &name);
		inf->ops.on_delete(inf->arg, ns, name, e->value);
	}
	entry_free(inf, e);
}

/* ---- watch events ------------------------------------------------- */

static void set_rv(struct kube_informer *inf, const char *rv)
{
	char *n;

	if (!rv || !*rv || (inf->rv && !strcmp(inf->rv, rv)))
		return;
	n = strdup(rv);
	if (!n)
		return;
	free(inf->rv);
	inf->rv = n;
}

/* ADDED or MODIFIED: insert or replace. */
static int apply_upsert(struct kube_informer *inf, struct json_object *obj)
{
	struct entry *e = NULL, *old;
	int rc = entry_from(inf, obj, &e);
	char key[600];

	if (rc < 0)
		return rc;
	if (rc == 1) {
		/* The transform left it out: it is now absent. */
		const char *ns = meta_str(obj, "namespace");

		snprintf(key, sizeof(key), "%s/%s", ns ? ns : "", meta_str(obj, "name"));
		old = table_take(&inf->cache, key);
		if (old)
			emit_delete(inf, old);
		return 0;
	}
	old = table_take(&inf->cache, e->key);
	if (table_put(&inf->cache, e)) {
		entry_free(inf, e);
		if (old)
			emit_delete(inf, old);
		return -ENOMEM;
	}
	if (old) {
		emit_update(inf, e, old->value);
		entry_free(inf, old);
	} else {
		emit_add(inf, e);
	}
	return 0;
}

static int apply_delete(struct kube_informer *inf, struct json_object *obj)
{
	const char *ns = meta_str(obj, "namespace"), *name = meta_str(obj, "name");
	struct entry *old;
	char *key;

	if (!name)
		return -EBADMSG;
	if (asprintf(&key, "%s/%s", ns ? ns : "", name) < 0)
		return -ENOMEM;
	old = table_take(&inf->cache, key);
	free(key);
	if (old)
		emit_delete(inf, old);
	return 0;
}

/* An ERROR event carries a metav1.Status; 410 (reason Expired or Gone)
 * means the watch's resourceVersion is too old. */
static int error_action(struct json_object *status)
{
	struct json_object *v;

	if (json_object_object_get_ex(status, "code", &v) && json_object_get_int(v) == 410)
		return KUBE__WATCH_RELIST;
	if (json_object_object_get_ex(status, "reason", &v) &&
	    (!strcmp(json_object_get_string(v), "Expired") ||
	     !strcmp(json_object_get_string(v), "Gone")))
		return KUBE__WATCH_RELIST;
	return KUBE__WATCH_RESTART;
}

int kube__informer_event(struct kube_informer *inf, struct json_object *ev)
{
	struct json_object *tv, *obj;
	const char *type;
	int rc = 0;

	if (!json_object_object_get_ex(ev, "type", &tv) ||
	    !json_object_object_get_ex(ev, "object", &obj) ||
	    !json_object_is_type(obj, json_type_object))
		return KUBE__WATCH_RESTART;
	type = json_object_get_string(tv);
	if (!strcmp(type, "ERROR")) {
		log_warn("kube: watch error event", "resource", inf->o.resource, "body",
		         json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN), NULL);
		return error_action(obj);
	}
	if (!strcmp(type, "BOOKMARK")) {
		inf->st.bookmarks++;
	} else if (!strcmp(type, "ADDED") || !strcmp(type, "MODIFIED")) {
		rc = apply_upsert(inf, obj);
	} else if (!strcmp(type, "DELETED")) {
		rc = apply_delete(inf, obj);
	} else {
		return KUBE__WATCH_RESTART;
	}
	if (rc == -ENOMEM)
		return KUBE__WATCH_RELIST;
	inf->st.events++;
	inf->watch_events++;
	set_rv(inf, meta_str(obj, "resourceVersion"));
	return KUBE__WATCH_OK;
}

static int on_frame(void *arg, struct json_object *obj)
{
	struct kube_informer *inf = arg;
	int a = kube__informer_event(inf, obj);

	if (a > inf->action)
		inf->action = a;
	/* Stop at the first error: what follows it is not to be trusted. */
	return a != KUBE__WATCH_OK;
}

int kube__informer_feed(struct kube_informer *inf, const char *p, size_t n)
{
	int rc = kube__framer_feed(&inf->fr, p, n, on_frame, inf);

	if (rc < 0)
		return rc;
	return inf->action;
}

/* ---- lists ---------------------------------------------------------- */

/* Moves staged entries into the cache and emits the differences: adds,
 * updates (only when resourceVersion changed) and deletes of vanished
 * objects, in that order, once the new cache is in place. */
static void swap_in(struct kube_informer *inf)
{
	struct table old = inf->cache;
	struct entry *gone = NULL;

	for (size_t i = 0; i < inf->staging.nb; i++) {
		for (struct entry *e = inf->staging.b[i]; e; e = e->next) {
			struct entry *o = table_take(&old, e->key);

			e->state = E_ADDED;
			if (!o)
				continue;
			if (!strcmp(entry_rv(o), entry_rv(e)) && *entry_rv(e)) {
				free_value(inf, e->value);
				e->value = o->value;
				e->state = E_KEEP;
			} else {
				e->prev_value = o->value;
				e->state = E_UPDATED;
			}
			o->value = NULL;
			entry_free(inf, o);
		}
	}
	for (size_t i = 0; i < old.nb; i++) {
		struct entry *e = old.b[i], *next;

		for (; e; e = next) {
			next = e->next;
			e->next = gone;
			gone = e;
		}
	}
	free(old.b);
	inf->cache = inf->staging;
	memset(&inf->staging, 0, sizeof(inf->staging));
	inf->listing = 0;
	inf->gone = gone;
	inf->emit_b = 0;
	inf->emit_e = NULL;
	inf->emitting = 1;
}

/* True when a live informer should leave the rest for the next loop
 * iteration; a detached one (unit tests) never does. */
static int should_yield(const struct kube_informer *inf)
{
	return inf->kc && loop_should_yield(kube_client_loop(inf->kc));
}

/* Delivers the list's differences: deletes, then adds and updates, until
 * done (returns 1) or, unless `all`, until the loop should yield (0). */
static int emit_some(struct kube_informer *inf, int all)
{
	int done = 0;

	while (inf->gone) {
		struct entry *e = inf->gone;
		if (!all && (done || !inf->emit_starved) && should_yield(inf)) {
			inf->emit_starved = !done;
			return 0;
		}
		inf->gone = e->next;
		emit_delete(inf, e);
		done++;
	}
	while (inf->emit_b < inf->cache.nb) {
		struct entry *e = inf->emit_e ? inf->emit_e : inf->cache.b[inf->emit_b];
		if (!e) {
			inf->emit_b++;
			continue;
		}
		if (e->state != E_KEEP) {
			if (!all && (done || !inf->emit_starved) && should_yield(inf)) {
				inf->emit_starved = !done;
				inf->emit_e = e;
				return 0;
			}
			done++;
			if (e->state == E_ADDED) {
				emit_add(inf, e);
			} else {
				emit_update(inf, e, e->prev_value);
				free_value(inf, e->prev_value);
				e->prev_value = NULL;
			}
			e->state = E_KEEP;
		}
		inf->emit_e = e->next;
		if (!inf->emit_e)
			inf->emit_b++;
	}
	inf->emit_starved = 0;
	return 1;
}

static void drain(struct kube_informer *inf, int all);

/* The differences are all out: the cache is synced if this list made it
 * so, and watch events queued meanwhile are next. */
static void emit_end(struct kube_informer *inf)
{
	inf->emitting = 0;
	if (inf->kc)
		loop_timer_stop(kube_client_loop(inf->kc), &inf->emit);
	if (inf->sync_after) {
		inf->sync_after = 0;
		inf->synced = 1;
		inf->st.lists++;
		if (inf->ops.on_synced)
			inf->ops.on_synced(inf->arg);
	}
	if (inf->kc && inf->pending.len > inf->pending_off && !loop_timer_active(&inf->drain))
		loop_timer_start(kube_client_loop(inf->kc), &inf->drain, 0);
}

/* Before anything else touches the cache (a new list, a watch that
 * ended): the differences still owed go out at once. */
static void emit_finish(struct kube_informer *inf)
{
	if (!inf->emitting)
		return;
	emit_some(inf, 1);
	emit_end(inf);
}

/* Delivers a slice of the differences; the rest follows from a timer.
 * 1 ms, not 0: a timer due now would run in this same iteration. */
static void emit_slice(struct kube_informer *inf)
{
	if (emit_some(inf, 0))
		emit_end(inf);
	else if (loop_timer_start(kube_client_loop(inf->kc), &inf->emit, 1))
		emit_finish(inf); /* no timer: deliver the rest now */
}

static void on_emit(struct loop_timer *t)
{
	emit_slice(t->arg);
}

/* Drops the list under way: what was staged, the page being read and the
 * continue token. The cache is left as it was. */
static void list_abandon(struct kube_informer *inf)
{
	table_clear(inf, &inf->staging);
	inf->listing = 0;
	kube__listscan_reset(&inf->ls);
	inf->page_bytes = 0;
	free(inf->cont);
	inf->cont = NULL;
}

/* The list scanner's item callback: stages one item. */
static int list_item(void *arg, struct json_object *obj)
{
	struct kube_informer *inf = arg;
	struct entry *e = NULL, *dup;
	int rc = entry_from(inf, obj, &e);

	if (rc < 0)
		return rc;
	if (rc == 1)
		return 0;
	dup = table_take(&inf->staging, e->key);
	if (dup)
		entry_free(inf, dup);
	if (table_put(&inf->staging, e)) {
		entry_free(inf, e);
		return -ENOMEM;
	}
	return 0;
}

int kube__informer_list_feed(struct kube_informer *inf, const char *p, size_t n)
{
	if (!inf->listing) {
		table_clear(inf, &inf->staging);
		inf->listing = 1;
	}
	if (!inf->ls.err && n > inf->o.max_page_bytes - inf->page_bytes)
		inf->ls.err = -EFBIG;
	inf->page_bytes += n;
	return kube__listscan_feed(&inf->ls, p, n, list_item, inf);
}

int kube__informer_list_end(struct kube_informer *inf, int last)
{
	int rc;

	if (!inf->listing) {
		table_clear(inf, &inf->staging);
		inf->listing = 1;
	}
	rc = kube__listscan_end(&inf->ls);
	if (rc) {
		list_abandon(inf);
		return rc;
	}
	set_rv(inf, inf->ls.rv);
	kube__listscan_reset(&inf->ls);
	inf->page_bytes = 0;
	if (!last)
		return 0;
	emit_finish(inf);
	swap_in(inf);
	inf->sync_after = 1;
	emit_slice(inf);
	return 0;
}

int kube__informer_list_page(struct kube_informer *inf, struct json_object *list, int last)
{
	size_t len = 0;
	const char *s = json_object_to_json_string_length(list, JSON_C_TO_STRING_PLAIN, &len);

	if (!s)
		return -ENOMEM;
	/* An error sticks to the page; kube__informer_list_end() returns it. */
	(void)kube__informer_list_feed(inf, s, len);
	return kube__informer_list_end(inf, last);
}

/* ---- URLs ----------------------------------------------------------- */

static int base_url(const struct kube_informer_opts *o, char *buf, size_t n)
{
	return kube_path(buf, n, o->group, o->version, o->ns, o->resource, NULL, NULL);
}

int kube__informer_list_url(const struct kube_informer_opts *o, const char *cont, char *buf,
                            size_t n)
{
	char lim[16];
	int rc = base_url(o, buf, n);

	snprintf(lim, sizeof(lim), "%u", o->page_size ? o->page_size : DEFAULT_PAGE);
	if (!rc)
		rc = kube_query_add(buf, n, "limit", lim);
	if (!rc)
		rc = kube_query_add(buf, n, "continue", cont && *cont ? cont : NULL);
	if (!rc)
		rc = kube_query_add(buf, n, "labelSelector", o->label_selector);
	if (!rc)
		rc = kube_query_add(buf, n, "fieldSelector", o->field_selector);
	return rc;
}

int kube__informer_watch_url(const struct kube_informer_opts *o, const char *rv, unsigned timeout_s,
                             char *buf, size_t n)
{
	char ts[16];
	int rc = base_url(o, buf, n);

	snprintf(ts, sizeof(ts), "%u", timeout_s);
	if (!rc)
		rc = kube_query_add(buf, n, "watch", "1");
	if (!rc)
		rc = kube_query_add(buf, n, "resourceVersion", rv);
	if (!rc)
		rc = kube_query_add(buf, n, "allowWatchBookmarks", "true");
	if (!rc)
		rc = kube_query_add(buf, n, "timeoutSeconds", ts);
	if (!rc)
		rc = kube_query_add(buf, n, "labelSelector", o->label_selector);
	if (!rc)
		rc = kube_query_add(buf, n, "fieldSelector", o->field_selector);
	return rc;
}

/* ---- the live informer ---------------------------------------------- */

static void start_list(struct kube_informer *inf);
static void start_watch(struct kube_informer *inf);

/* Schedules the next list or watch after `delay_ms`. */
static void schedule(struct kube_informer *inf, int list, uint32_t delay_ms)
{
	inf->timer_lists = list;
	if (loop_timer_start(kube_client_loop(inf->kc), &inf->timer, delay_ms))
		log_error("kube: cannot arm informer timer", "resource", inf->o.resource, NULL);
}

static void on_timer(struct loop_timer *t)
{
	struct kube_informer *inf = t->arg;

	if (inf->timer_lists)
		start_list(inf);
	else
		start_watch(inf);
}

static void retry_later(struct kube_informer *inf, int list, const char *why)
{
	uint32_t d = loop_backoff_next(&inf->bo);
	char ms[16];

	snprintf(ms, sizeof(ms), "%u", d);
	log_warn("kube: informer retrying", "resource", inf->o.resource, "reason", why, "delay_ms",
	         ms, NULL);
	inf->st.restarts++;
	schedule(inf, list, d);
}

/* Logs why a list page was dropped: where in the page, and what. */
static void log_bad_page(struct kube_informer *inf, int rc)
{
	char item[24], off[24];

	snprintf(item, sizeof(item), "%zu", inf->ls.items);
	snprintf(off, sizeof(off), "%llu", (unsigned long long)inf->ls.off);
	log_warn("kube: bad list page", "resource", inf->o.resource, "error",
	         rc == -EBADMSG ? "malformed JSON" : strerror(-rc), "item", item, "offset", off,
	         NULL);
}

static void list_done(void *arg, const struct kube_response *r)
{
	struct kube_informer *inf = arg;
	int rc;

	inf->call = NULL;
	if (r->status == 410 && inf->cont) {
		/* The continue token expired mid-list: start over. */
		list_abandon(inf);
		schedule(inf, 1, 0);
		return;
	}
	if (inf->ls.err || (!r->err && r->status == 200 && kube__listscan_end(&inf->ls))) {
		log_bad_page(inf, kube__listscan_end(&inf->ls));
		list_abandon(inf);
		retry_later(inf, 1, "bad list page");
		return;
	}
	if (r->err || r->status != 200) {
		list_abandon(inf);
		retry_later(inf, 1, r->message);
		return;
	}
	free(inf->cont);
	inf->cont = inf->ls.cont && *inf->ls.cont ? strdup(inf->ls.cont) : NULL;
	rc = inf->ls.cont && *inf->ls.cont && !inf->cont ? -ENOMEM : 0;
	if (!rc)
		rc = kube__informer_list_end(inf, !inf->cont);
	if (rc) {
		list_abandon(inf);
		retry_later(inf, 1, strerror(-rc));
		return;
	}
	if (inf->cont) {
		start_list(inf);
		return;
	}
	if (inf->relist_410)
		inf->st.relists_410++;
	inf->relist_410 = 0;
	start_watch(inf);
}

/* The list transfer's write callback: feeds the page to the scanner. A
 * nonzero return aborts the transfer; list_done() reports why. */
static int on_list_stream(void *arg, const char *p, size_t n)
{
	struct kube_informer *inf = arg;

	return kube__informer_list_feed(inf, p, n) != 0;
}

static void start_list(struct kube_informer *inf)
{
	struct kube_req_opts o = {.timeout_ms = LIST_TIMEOUT_MS, .max_body = 1u << 20};
	char url[URL_MAX];
	int rc;

	if (!inf->cont) {
		table_clear(inf, &inf->staging);
		inf->listing = 0;
	}
	kube__listscan_reset(&inf->ls);
	inf->page_bytes = 0;
	rc = kube__informer_list_url(&inf->o, inf->cont, url, sizeof(url));
	if (!rc)
		rc = kube__request_stream_opts(inf->kc, url, &o, on_list_stream, inf, list_done,
		                               inf, &inf->call);
	if (rc) {
		inf->call = NULL;
		retry_later(inf, 1, strerror(-rc));
	}
}

/* Bytes of queued watch stream parsed between two checks of the loop's
 * budget: a handful of events. */
#define DRAIN_PIECE 1024
/* A drained buffer bigger than this is freed; parsed bytes are moved out
 * once they pass it and half the buffer. */
#define PENDING_KEEP (256u << 10)

/* Parses the bytes queued by the write callback: all of them, or, unless
 * `all`, pieces until the loop should yield. Nothing
 * is parsed while a list's differences are still going out, unless
 * `all`: then those go first. */
static void drain(struct kube_informer *inf, int all)
{
	size_t off;
	int rc = 0;

	if (inf->emitting) {
		if (!all)
			return; /* emit_end() starts the drain again */
		emit_finish(inf);
	}
	off = inf->pending_off;
	while (off < inf->pending.len && inf->action == KUBE__WATCH_OK && rc >= 0) {
		size_t n = inf->pending.len - off;
		if (!all && (off > inf->pending_off || !inf->drain_starved) && should_yield(inf))
			break;
		if (!all && n > DRAIN_PIECE)
			n = DRAIN_PIECE;
		rc = kube__informer_feed(inf, inf->pending.data + off, n);
		off += n;
	}
	inf->drain_starved = off == inf->pending_off && off < inf->pending.len;
	if (off == inf->pending.len || inf->action != KUBE__WATCH_OK || rc < 0) {
		/* A burst's backlog is not kept as the buffer's size. */
		if (inf->pending.alloc > PENDING_KEEP)
			loop_buf_free(&inf->pending);
		loop_buf_reset(&inf->pending);
		off = 0;
	} else if (off > PENDING_KEEP && off > inf->pending.len / 2) {
		memmove(inf->pending.data, inf->pending.data + off, inf->pending.len - off);
		inf->pending.len -= off;
		inf->pending.data[inf->pending.len] = '\0';
		off = 0;
	}
	inf->pending_off = off;
	if (rc < 0) {
		log_warn("kube: bad watch stream", "resource", inf->o.resource, "error",
		         strerror(-rc), NULL);
		inf->action = KUBE__WATCH_RESTART;
	}
	if (!all && inf->pending.len > inf->pending_off && !loop_timer_active(&inf->drain) &&
	    loop_timer_start(kube_client_loop(inf->kc), &inf->drain, 1))
		drain(inf, 1); /* no timer: parse the rest now */
}

static void on_drain(struct loop_timer *t)
{
	struct kube_informer *inf = t->arg;

	drain(inf, 0);
	if (inf->action != KUBE__WATCH_OK && inf->call) {
		/* Close the watch and act as if it had ended. */
		kube_call_cancel(inf->call);
		inf->call = NULL;
		if (inf->action == KUBE__WATCH_RELIST) {
			inf->relist_410 = 1;
			schedule(inf, 1, 0);
		} else {
			retry_later(inf, 0, "watch error event");
		}
	}
}

static int on_stream(void *arg, const char *p, size_t n)
{
	struct kube_informer *inf = arg;

	if (inf->action != KUBE__WATCH_OK)
		return 1;
	if (loop_buf_append(&inf->pending, p, n))
		return 1;
	if (!loop_timer_active(&inf->drain))
		loop_timer_start(kube_client_loop(inf->kc), &inf->drain, 0);
	return 0;
}

static void watch_done(void *arg, const struct kube_response *r)
{
	struct kube_informer *inf = arg;

	inf->call = NULL;
	loop_timer_stop(kube_client_loop(inf->kc), &inf->drain);
	drain(inf, 1);
	if (inf->action == KUBE__WATCH_RELIST || r->status == 410) {
		inf->relist_410 = 1;
		schedule(inf, 1, 0);
		return;
	}
	if (inf->action == KUBE__WATCH_RESTART || r->status != 200 ||
	    (r->err && r->err != -ETIMEDOUT)) {
		retry_later(inf, 0, r->err || r->status != 200 ? r->message : "watch error");
		return;
	}
	/* The server closed the watch at timeoutSeconds (or our slack timer
	 * fired): a normal end. Re-watch at once. */
	if (inf->watch_events)
		loop_backoff_reset(&inf->bo);
	schedule(inf, 0, 0);
}

static void start_watch(struct kube_informer *inf)
{
	unsigned ts = 300 + loop_rand() % 301;
	char url[URL_MAX];
	int rc;

	kube__framer_reset(&inf->fr);
	loop_buf_reset(&inf->pending);
	inf->pending_off = 0;
	inf->action = KUBE__WATCH_OK;
	inf->watch_events = 0;
	rc = kube__informer_watch_url(&inf->o, inf->rv, ts, url, sizeof(url));
	if (!rc)
		rc = kube__request_stream(inf->kc, url, (ts + WATCH_SLACK_S) * 1000u, on_stream,
		                          inf, watch_done, inf, &inf->call);
	if (rc) {
		inf->call = NULL;
		retry_later(inf, 0, strerror(-rc));
		return;
	}
	inf->st.watches++;
}

void kube__informer_pause(struct kube_informer *inf)
{
	kube_call_cancel(inf->call);
	inf->call = NULL;
	loop_timer_stop(kube_client_loop(inf->kc), &inf->timer);
	loop_timer_stop(kube_client_loop(inf->kc), &inf->drain);
}

void kube__informer_rewatch_from(struct kube_informer *inf, const char *rv)
{
	kube__informer_pause(inf);
	free(inf->rv);
	inf->rv = strdup(rv);
	start_watch(inf);
}

static int copy_opts(struct kube_informer *inf, const struct kube_informer_opts *o)
{
	const char *src[6] = {o->group, o->version,        o->resource,
	                      o->ns,    o->label_selector, o->field_selector};

	inf->o = *o;
	for (int i = 0; i < 6; i++) {
		if (src[i] && !(inf->strs[i] = strdup(src[i])))
			return -ENOMEM;
	}
	inf->o.group = inf->strs[0];
	inf->o.version = inf->strs[1];
	inf->o.resource = inf->strs[2];
	inf->o.ns = inf->strs[3];
	inf->o.label_selector = inf->strs[4];
	inf->o.field_selector = inf->strs[5];
	if (!inf->o.max_event_bytes)
		inf->o.max_event_bytes = DEFAULT_EVENT_BYTES;
	if (!inf->o.max_page_bytes)
		inf->o.max_page_bytes = DEFAULT_PAGE_BYTES;
	return 0;
}

static int informer_alloc(const struct kube_informer_opts *o, const struct kube_informer_ops *ops,
                          void *arg, struct kube_informer **out)
{
	struct kube_informer *inf;
	int rc;

	if ((ops->transform != NULL) != (ops->free_value != NULL))
		return -EINVAL;
	inf = calloc(1, sizeof(*inf));
	if (!inf)
		return -ENOMEM;
	inf->ops = *ops;
	inf->arg = arg;
	inf->bo.base_ms = 800;
	inf->bo.max_ms = 30000;
	loop_timer_init(&inf->timer, on_timer, inf);
	loop_timer_init(&inf->drain, on_drain, inf);
	loop_timer_init(&inf->emit, on_emit, inf);
	rc = copy_opts(inf, o);
	if (!rc)
		rc = kube__framer_init(&inf->fr, inf->o.max_event_bytes);
	if (!rc)
		rc = kube__listscan_init(&inf->ls, inf->o.max_page_bytes);
	inf->pending.cap_bytes = inf->o.max_event_bytes * 2;
	if (rc) {
		kube_informer_free(inf);
		return rc;
	}
	*out = inf;
	return 0;
}

int kube__informer_new_detached(const struct kube_informer_ops *ops, void *arg,
                                struct kube_informer **out)
{
	struct kube_informer_opts o = {.version = "v1", .resource = "pods"};

	return informer_alloc(&o, ops, arg, out);
}

int kube_informer_start(struct kube_client *kc, const struct kube_informer_opts *opts,
                        const struct kube_informer_ops *ops, void *arg, struct kube_informer **out)
{
	struct kube_informer *inf;
	int rc;

	if (!opts || !opts->version || !opts->resource)
		return -EINVAL;
	rc = informer_alloc(opts, ops, arg, &inf);
	if (rc)
		return rc;
	inf->kc = kc;
	start_list(inf);
	*out = inf;
	return 0;
}

void kube_informer_free(struct kube_informer *inf)
{
	if (!inf)
		return;
	if (inf->kc) {
		kube_call_cancel(inf->call);
		loop_timer_stop(kube_client_loop(inf->kc), &inf->timer);
		loop_timer_stop(kube_client_loop(inf->kc), &inf->drain);
		loop_timer_stop(kube_client_loop(inf->kc), &inf->emit);
	}
	while (inf->gone) {
		struct entry *e = inf->gone;
		inf->gone = e->next;
		entry_free(inf, e);
	}
	table_clear(inf, &inf->cache);
	table_clear(inf, &inf->staging);
	kube__framer_free(&inf->fr);
	kube__listscan_free(&inf->ls);
	loop_buf_free(&inf->pending);
	free(inf->rv);
	free(inf->cont);
	for (int i = 0; i < 6; i++)
		free(inf->strs[i]);
	free(inf);
}

void *kube_informer_get(const struct kube_informer *inf, const char *ns, const char *name)
{
	char key[600];
	struct entry *e;

	snprintf(key, sizeof(key), "%s/%s", ns ? ns : "", name);
	e = table_find(&inf->cache, key);
	return e ? e->value : NULL;
}

size_t kube_informer_count(const struct kube_informer *inf)
{
	return inf->cache.n;
}

int kube_informer_synced(const struct kube_informer *inf)
{
	return inf->synced;
}

void kube_informer_foreach(const struct kube_informer *inf,
                           void (*fn)(void *arg, const char *ns, const char *name, void *value),
                           void *arg)
{
	for (size_t i = 0; i < inf->cache.nb; i++) {
		for (struct entry *e = inf->cache.b[i]; e; e = e->next) {
			char ns[256];
			const char *name;

			split_key(e, ns, sizeof(ns), &name);
			fn(arg, ns, name, e->value);
		}
	}
}

const char *kube_informer_resource_version(const struct kube_informer *inf)
{
	return inf->rv ? inf->rv : "";
}

void kube_informer_stats(const struct kube_informer *inf, struct kube_informer_stats *st)
{
	*st = inf->st;
}
