/* kube/event.c: core/v1 Events with client-go's aggregation.
 *
 * An Event that repeats is not created again: the first one's count,
 * lastTimestamp and message are PATCHed instead, as client-go's
 * EventCorrelator does, so one failing pod costs one Event object however
 * many rounds it fails. What "repeats" means: the same object (kind,
 * namespace, name, uid), type and reason, plus either the caller's dedup
 * key (messages may differ, e.g. by a timing) or, without one, the
 * message itself. While a write for a series is in flight, further
 * occurrences are only counted, and one PATCH follows when it returns.
 *
 * Keyed series never expire by age: an hourly failure folds into the same
 * Event for as long as the recorder remembers it. Message series expire
 * after the recorder's window, as before. The table holds at most
 * KUBE__EVENT_SERIES_MAX series and forgets the least recently used; it is
 * a small array searched linearly, O(n) per Event, which is fine at the
 * rate Events are worth writing.
 */
#include "kube/kube_int.h"
#include "loop/log.h"
#include "loop/loop.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SERIES_MAX KUBE__EVENT_SERIES_MAX

struct series {
	struct kube_recorder *rec;
	char *key;
	char *ns;
	char *name;             /* the Event object's name */
	struct json_object *ev; /* the Event to create, with the latest message */
	int keyed;              /* identity by the caller's key: no age expiry */
	uint64_t used;          /* the recorder's use tick when last recorded */
	uint32_t count;
	uint32_t sent_count;
	int64_t first_ms, last_ms;
	int created;
	struct kube_call *call;
};

struct kube_recorder {
	struct kube_client *kc;
	char *component;
	char *host;
	uint64_t window_ms;
	struct series *s[SERIES_MAX];
	size_t n;
	uint64_t creates, patches;
	uint64_t tick;   /* advances on every recorded Event, for LRU */
	int64_t skew_ms; /* added to the wall clock, for tests */
};

int kube_recorder_new(struct kube_client *kc, const char *component, const char *host,
                      uint32_t window_s, struct kube_recorder **out)
{
	struct kube_recorder *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->kc = kc;
	r->window_ms = (uint64_t)(window_s ? window_s : 600) * 1000;
	r->component = strdup(component ? component : "kube");
	r->host = host ? strdup(host) : NULL;
	if (!r->component || (host && !r->host)) {
		kube_recorder_free(r);
		return -ENOMEM;
	}
	*out = r;
	return 0;
}

static void series_free(struct series *s)
{
	kube_call_cancel(s->call);
	json_object_put(s->ev);
	free(s->key);
	free(s->ns);
	free(s->name);
	free(s);
}

void kube_recorder_free(struct kube_recorder *rec)
{
	if (!rec)
		return;
	for (size_t i = 0; i < rec->n; i++)
		series_free(rec->s[i]);
	free(rec->component);
	free(rec->host);
	free(rec);
}

void kube_recorder_counts(const struct kube_recorder *rec, uint64_t *creates, uint64_t *patches)
{
	*creates = rec->creates;
	*patches = rec->patches;
}

/* Builds the Event object for a new series, or NULL without memory. */
static struct json_object *build_event(struct kube_recorder *rec, struct series *s,
                                       const struct kube_objref *obj, const char *type,
                                       const char *reason, const char *message)
{
	struct json_object *ev = json_object_new_object(), *meta = json_object_new_object();
	struct json_object *inv = json_object_new_object(), *src = json_object_new_object();
	char ts[40];
	int rc = 0;

	kube__format_time(s->first_ms, 0, ts, sizeof(ts));
	rc |= kube__jadd_str(meta, "name", s->name);
	rc |= kube__jadd_str(meta, "namespace", s->ns);
	rc |= kube__jadd_str(inv, "apiVersion", obj->api_version);
	rc |= kube__jadd_str(inv, "kind", obj->kind);
	rc |= kube__jadd_str(inv, "namespace", obj->ns);
	rc |= kube__jadd_str(inv, "name", obj->name);
	rc |= kube__jadd_str(inv, "uid", obj->uid);
	rc |= kube__jadd_str(inv, "resourceVersion", obj->resource_version);
	rc |= kube__jadd_str(src, "component", rec->component);
	rc |= kube__jadd_str(src, "host", rec->host);
	rc |= kube__jadd_str(ev, "apiVersion", "v1");
	rc |= kube__jadd_str(ev, "kind", "Event");
	rc |= kube__jadd(ev, "metadata", meta);
	rc |= kube__jadd(ev, "involvedObject", inv);
	rc |= kube__jadd(ev, "source", src);
	rc |= kube__jadd_str(ev, "type", type);
	rc |= kube__jadd_str(ev, "reason", reason);
	rc |= kube__jadd_str(ev, "message", message);
	rc |= kube__jadd_str(ev, "reportingComponent", rec->component);
	rc |= kube__jadd_str(ev, "reportingInstance", rec->host ? rec->host : rec->component);
	rc |= kube__jadd_str(ev, "firstTimestamp", ts);
	rc |= kube__jadd_str(ev, "lastTimestamp", ts);
	rc |= kube__jadd(ev, "count", json_object_new_int(1));
	if (rc) {
		json_object_put(ev);
		return NULL;
	}
	return ev;
}

static void series_send(struct series *s);

static void written(void *arg, const struct kube_response *r)
{
	struct series *s = arg;
	int was_create = !s->created;

	s->call = NULL;
	if (r->status == 404 && !was_create) {
		/* The Event expired (events have a TTL): start a new object. */
		s->created = 0;
		series_send(s);
		return;
	}
	if (r->err || r->status >= 300) {
		log_warn("kube: cannot write event", "name", s->name, "error", r->message, NULL);
		return;
	}
	s->created = 1;
	if (s->count != s->sent_count)
		series_send(s);
}

/* A new reference to the message of the series' latest occurrence. */
static struct json_object *latest_message(struct series *s)
{
	struct json_object *m = NULL;

	json_object_object_get_ex(s->ev, "message", &m);
	return m ? json_object_get(m) : json_object_new_string("");
}

/* Writes the series' current state: POST when not yet created, else a
 * merge PATCH of count, lastTimestamp and message. */
static void series_send(struct series *s)
{
	struct kube_recorder *rec = s->rec;
	char path[1024], ts[40];
	struct json_object *body;
	int rc;

	kube__format_time(s->last_ms, 0, ts, sizeof(ts));
	body = s->created ? json_object_new_object() : json_object_get(s->ev);
	if (kube__jadd(body, "count", json_object_new_int((int32_t)s->count)) ||
	    kube__jadd_str(body, "lastTimestamp", ts) ||
	    (s->created && kube__jadd(body, "message", latest_message(s)))) {
		json_object_put(body);
		log_warn("kube: cannot build event", "name", s->name, NULL);
		return;
	}
	if (!s->created) {
		kube_path(path, sizeof(path), "", "v1", s->ns, "events", NULL, NULL);
		rc = kube_request(rec->kc, "POST", path, body, NULL, written, s, &s->call);
		rec->creates++;
	} else {
		struct kube_req_opts o = {.content_type = "application/merge-patch+json"};

		kube_path(path, sizeof(path), "", "v1", s->ns, "events", s->name, NULL);
		rc = kube_request(rec->kc, "PATCH", path, body, &o, written, s, &s->call);
		rec->patches++;
	}
	json_object_put(body);
	s->sent_count = s->count;
	if (rc) {
		s->call = NULL;
		log_warn("kube: cannot start event write", "error", strerror(-rc), NULL);
	}
}

static struct series *find(struct kube_recorder *rec, const char *key)
{
	for (size_t i = 0; i < rec->n; i++)
		if (!strcmp(rec->s[i]->key, key))
			return rec->s[i];
	return NULL;
}

static void forget(struct kube_recorder *rec, struct series *s)
{
	for (size_t i = 0; i < rec->n; i++)
		if (rec->s[i] == s) {
			rec->s[i] = rec->s[--rec->n];
			break;
		}
	series_free(s);
}

/* Makes room by dropping the least recently used series. */
static void evict(struct kube_recorder *rec)
{
	size_t old = 0;

	for (size_t i = 1; i < rec->n; i++)
		if (rec->s[i]->used < rec->s[old]->used)
			old = i;
	forget(rec, rec->s[old]);
}

static struct series *series_new(struct kube_recorder *rec, const char *key,
                                 const struct kube_objref *obj, int64_t now)
{
	struct series *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->rec = rec;
	s->first_ms = s->last_ms = now;
	s->key = strdup(key);
	s->ns = strdup(obj->ns && *obj->ns ? obj->ns : "default");
	if (asprintf(&s->name, "%.200s.%llx", obj->name,
	             (unsigned long long)now * 1000000ull + (loop_rand() % 1000000u)) < 0)
		s->name = NULL;
	if (!s->key || !s->ns || !s->name) {
		series_free(s);
		return NULL;
	}
	if (rec->n == SERIES_MAX)
		evict(rec);
	rec->s[rec->n++] = s;
	return s;
}

/* The series' identity: the object, type, reason, and the dedup key or
 * else the message. The prefix keeps a key from matching a message. */
static char *identity(const struct kube_objref *obj, const char *type, const char *reason,
                      const char *dedup_key, const char *message)
{
	char *key;

	if (asprintf(&key, "%s\n%s\n%s\n%s\n%s\n%s\n%c:%s", obj->kind, obj->ns ? obj->ns : "",
	             obj->name, obj->uid ? obj->uid : "", type, reason, dedup_key ? 'k' : 'm',
	             dedup_key ? dedup_key : message) < 0)
		return NULL;
	return key;
}

/* Counts one more occurrence of a known series and writes it unless a
 * write is in flight (written() sends the rest when it returns). */
static int series_repeat(struct series *s, int64_t now, const char *message)
{
	if (kube__jadd_str(s->ev, "message", message))
		return -ENOMEM;
	if (s->count < INT32_MAX)
		s->count++;
	s->last_ms = now;
	if (!s->call)
		series_send(s);
	return 0;
}

int kube_event_keyed(struct kube_recorder *rec, const struct kube_objref *obj, const char *type,
                     const char *reason, const char *dedup_key, const char *message)
{
	int64_t now = loop_wall_ms() + rec->skew_ms;
	struct series *s;
	char *key;

	if (!obj || !obj->kind || !obj->name || !type || !reason)
		return -EINVAL;
	if (!message)
		message = "";
	key = identity(obj, type, reason, dedup_key, message);
	if (!key)
		return -ENOMEM;
	s = find(rec, key);
	if (s && !s->keyed && (uint64_t)(now - s->last_ms) > rec->window_ms) {
		/* A message series outside the window starts over. */
		forget(rec, s);
		s = NULL;
	}
	if (s) {
		free(key);
		s->used = ++rec->tick;
		return series_repeat(s, now, message);
	}
	s = series_new(rec, key, obj, now);
	free(key);
	if (!s)
		return -ENOMEM;
	s->keyed = dedup_key != NULL;
	s->used = ++rec->tick;
	s->count = 1;
	s->ev = build_event(rec, s, obj, type, reason, message);
	if (!s->ev) {
		forget(rec, s);
		return -ENOMEM;
	}
	series_send(s);
	return 0;
}

void kube__recorder_advance(struct kube_recorder *rec, int64_t ms)
{
	rec->skew_ms += ms;
}
