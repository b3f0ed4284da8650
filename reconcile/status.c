/* reconcile/status.c: a policy's status, per the Kubernetes API
 * conventions: metav1.Condition entries whose lastTransitionTime moves only
 * when the status does, observedGeneration, and bounded lists.
 *
 * lastErrors folds repeats as Kubernetes' EventCorrelator folds Events: one
 * entry per (pod, profile, error kind) with a count, so one pod failing
 * every round cannot push every other failing pod out of the list. */
#include "reconcile/internal.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The message of a condition without one: shared, never freed. */
static char no_message[] = "";

void rec_status_init(struct rec_status *st)
{
	memset(st, 0, sizeof(*st));
	st->spool_bytes = -1;
	st->spool_dropped = -1;
}

static void event_free(struct rec_event *e)
{
	free(e->pod);
	free(e->profile);
	free(e->text);
	free(e->kind);
	memset(e, 0, sizeof(*e));
}

void rec_status_free(struct rec_status *st)
{
	size_t i;

	if (st == NULL)
		return;
	for (i = 0; i < st->nerrors; i++)
		event_free(&st->errors[i]);
	for (i = 0; i < st->nrecent; i++)
		event_free(&st->recent[i]);
	free(st->errors);
	free(st->recent);
	st->errors = st->recent = NULL;
	st->nerrors = st->nrecent = 0;
	for (i = 0; i < st->nconds; i++) {
		if (st->conds[i].message != no_message)
			free(st->conds[i].message);
		st->conds[i].message = no_message;
	}
}

/* Puts an event at the front of a newest-first list of at most
 * REC_STATUS_LIST_MAX (allocated at its first entry), dropping the
 * oldest. Copies the strings; `kind` may be NULL (recentProfiles). */
static int push_event(struct rec_event **lp, size_t *n, int64_t t, const char *pod,
                      const char *profile, const char *text, const char *kind, int64_t count)
{
	struct rec_event e = {t,
	                      strdup(pod ? pod : ""),
	                      strdup(profile ? profile : ""),
	                      strdup(text ? text : ""),
	                      kind ? strdup(kind) : NULL,
	                      count < 1 ? 1 : count};
	struct rec_event *list = *lp;

	if (e.pod == NULL || e.profile == NULL || e.text == NULL || (kind && e.kind == NULL))
		goto out_nomem;
	if (list == NULL && (list = *lp = calloc(REC_STATUS_LIST_MAX, sizeof(*list))) == NULL)
		goto out_nomem;
	if (*n == REC_STATUS_LIST_MAX)
		event_free(&list[--*n]);
	memmove(list + 1, list, *n * sizeof(*list));
	list[0] = e;
	(*n)++;
	return 0;
out_nomem:
	event_free(&e);
	return -ENOMEM;
}

/* Adds `count` failures of (pod, profile, kind) at time `t` to the error
 * list: a repeat takes the newer time and message, adds to the count and
 * moves to the front; anything else is pushed. A NULL kind is "". */
static int fold_error(struct rec_status *st, int64_t t, const char *pod, const char *profile,
                      const char *kind, const char *text, int64_t count)
{
	struct rec_event *list = st->errors, e;
	size_t i;
	char *copy;

	pod = pod ? pod : "";
	profile = profile ? profile : "";
	kind = kind ? kind : "";
	count = count < 1 ? 1 : count;
	for (i = 0; i < st->nerrors; i++)
		if (!strcmp(list[i].pod, pod) && !strcmp(list[i].profile, profile) &&
		    !strcmp(list[i].kind ? list[i].kind : "", kind))
			break;
	if (i == st->nerrors)
		return push_event(&st->errors, &st->nerrors, t, pod, profile, text, kind, count);
	copy = strdup(text ? text : "");
	if (copy == NULL)
		return -ENOMEM;
	e = list[i];
	free(e.text);
	e.text = copy;
	if (t > e.time_ms)
		e.time_ms = t;
	e.count = count > INT64_MAX - e.count ? INT64_MAX : e.count + count;
	memmove(list + 1, list, i * sizeof(*list));
	list[0] = e;
	return 0;
}

static void bump(int64_t *c)
{
	if (*c < INT64_MAX)
		(*c)++;
}

int rec_status_add_success(struct rec_status *st, int64_t now_ms, const char *pod,
                           const char *profile, const char *id)
{
	bump(&st->captures_succeeded);
	if (now_ms > st->last_capture_ms)
		st->last_capture_ms = now_ms;
	if (id && strlen(id) > REC_PROFILE_ID_MAX)
		return -EINVAL;
	return push_event(&st->recent, &st->nrecent, now_ms, pod, profile, id, NULL, 1);
}

/* Drops a multi-byte UTF-8 sequence cut short by truncation at the end of
 * `s`, so a long error body never makes the status patch invalid UTF-8. */
static void utf8_trim(char *s)
{
	size_t n = strlen(s), i = n, need;

	while (i > 0 && n - i < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
		i--;
	if (i == 0 || ((unsigned char)s[i - 1] & 0x80) == 0)
		return;
	unsigned char lead = (unsigned char)s[i - 1];
	need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
	if (n - (i - 1) < need)
		s[i - 1] = '\0';
}

int rec_status_add_failure_kind(struct rec_status *st, int64_t now_ms, const char *pod,
                                const char *profile, const char *kind, const char *message)
{
	char msg[512];

	bump(&st->captures_failed);
	snprintf(msg, sizeof(msg), "%s", message ? message : "");
	utf8_trim(msg);
	return fold_error(st, now_ms, pod, profile, kind, msg, 1);
}

void rec_status_add_skipped(struct rec_status *st)
{
	bump(&st->captures_skipped);
}

const struct rec_condition *rec_status_condition(const struct rec_status *st, const char *type)
{
	size_t i;

	for (i = 0; i < st->nconds; i++)
		if (strcmp(st->conds[i].type, type) == 0)
			return &st->conds[i];
	return NULL;
}

/* Sets c->message to `message` cut to 255 bytes (on a UTF-8 boundary).
 * An empty message is the shared no_message. On -ENOMEM the old one stays. */
static int set_message(struct rec_condition *c, const char *message)
{
	char buf[256], *copy = no_message;

	snprintf(buf, sizeof(buf), "%s", message ? message : "");
	utf8_trim(buf);
	if (strcmp(c->message, buf) == 0)
		return 0;
	if (buf[0] != '\0' && (copy = strdup(buf)) == NULL)
		return -ENOMEM;
	if (c->message != no_message)
		free(c->message);
	c->message = copy;
	return 0;
}

int rec_status_set_condition(struct rec_status *st, const char *type, const char *status,
                             const char *reason, const char *message, int64_t generation,
                             int64_t now_ms)
{
	struct rec_condition *c = (struct rec_condition *)rec_status_condition(st, type);

	if (c == NULL) {
		if (st->nconds == REC_COND_MAX)
			return -ENOSPC;
		c = &st->conds[st->nconds++];
		memset(c, 0, sizeof(*c));
		c->message = no_message;
		snprintf(c->type, sizeof(c->type), "%s", type);
	}
	if (strcmp(c->status, status) != 0 || c->last_transition_ms == 0) {
		snprintf(c->status, sizeof(c->status), "%s", status);
		c->last_transition_ms = now_ms;
	}
	snprintf(c->reason, sizeof(c->reason), "%s", reason);
	c->observed_generation = generation;
	return set_message(c, message);
}

/* Ready's reason and status, from the most severe problem down. */
static void ready_summary(const struct rec_status *st, const struct rec_policy *p,
                          const struct rec_errs *errs, int64_t targets, const char **status,
                          const char **reason, char *msg, size_t len)
{
	const struct rec_round *r = &st->last_round;

	*status = "False";
	if (p == NULL || rec_errs_count(errs, REC_ERR_TIMEZONE) > 0) {
		*reason = p == NULL ? "InvalidSpec" : "UnknownTimeZone";
		rec_errs_format(errs, p == NULL ? -1 : REC_ERR_TIMEZONE, msg, len);
	} else if (rec_errs_count(errs, REC_ERR_SCHEDULE) > 0) {
		*reason = "InvalidSchedule";
		rec_errs_format(errs, REC_ERR_SCHEDULE, msg, len);
	} else if (rec_errs_count(errs, REC_ERR_SPEC) > 0) {
		*reason = "InvalidSpec";
		rec_errs_format(errs, REC_ERR_SPEC, msg, len);
	} else if (rec_errs_count(errs, REC_ERR_CROSS_NS) > 0) {
		*reason = "CrossNamespaceNotAllowed";
		rec_errs_format(errs, -1, msg, len);
	} else if (rec_errs_count(errs, REC_ERR_SINK) > 0) {
		*reason = "ProfefeURLNotAllowed";
		rec_errs_format(errs, REC_ERR_SINK, msg, len);
	} else if (p->suspend) {
		*status = "True";
		*reason = "Suspended";
		snprintf(msg, len, "spec.suspend is true: no new rounds start");
	} else if (targets == 0) {
		*status = "True";
		*reason = "NoTargets";
		snprintf(msg, len, "no Running pod matches the selector%s",
		         p->pod_annotation_required ? " and has profefe.com/enable: \"true\"" : "");
	} else if (r->failed > 0 && r->succeeded == 0 && r->skipped == 0) {
		*reason = "AllCapturesFailing";
		snprintf(msg, len, "every capture of the last round failed (%u); see lastErrors",
		         r->failed);
	} else {
		*status = "True";
		*reason = r->failed ? "CapturingWithErrors" : "Capturing";
		snprintf(msg, len, "%lld target%s", (long long)targets, targets == 1 ? "" : "s");
	}
}

void rec_status_compute(struct rec_status *st, const struct rec_policy *p,
                        const struct rec_errs *errs, int64_t targets, int64_t next_ms,
                        int64_t now_ms)
{
	static const struct rec_errs none;
	const char *status, *reason;
	char msg[256];
	int64_t gen = p ? p->generation : st->observed_generation;
	size_t tz, sch;

	if (errs == NULL)
		errs = &none;
	st->observed_generation = gen;
	st->targets = p && p->valid ? targets : 0;
	st->next_schedule_ms = p && p->valid && !p->suspend && next_ms > 0 ? next_ms : 0;

	msg[0] = '\0';
	if (rec_errs_count(errs, REC_ERR_SPEC) > 0 || p == NULL) {
		rec_errs_format(errs, REC_ERR_SPEC, msg, sizeof(msg));
		rec_status_set_condition(st, "SpecValid", "False", "InvalidSpec", msg, gen, now_ms);
	} else {
		rec_status_set_condition(st, "SpecValid", "True", "Valid", "", gen, now_ms);
	}
	tz = rec_errs_count(errs, REC_ERR_TIMEZONE);
	sch = rec_errs_count(errs, REC_ERR_SCHEDULE);
	if (tz || sch) {
		rec_errs_format(errs, tz ? REC_ERR_TIMEZONE : REC_ERR_SCHEDULE, msg, sizeof(msg));
		rec_status_set_condition(st, "ScheduleValid", "False",
		                         tz ? "UnknownTimeZone" : "InvalidSchedule", msg, gen,
		                         now_ms);
	} else if (p != NULL) {
		rec_status_set_condition(st, "ScheduleValid", "True", "Valid", "", gen, now_ms);
	}
	if (st->last_round.failed > 0) {
		snprintf(msg, sizeof(msg), "%u of %u captures in the last round failed",
		         st->last_round.failed,
		         st->last_round.succeeded + st->last_round.failed + st->last_round.skipped);
		rec_status_set_condition(st, "Degraded", "True", "CapturesFailing", msg, gen,
		                         now_ms);
	} else {
		rec_status_set_condition(st, "Degraded", "False", "AsExpected", "", gen, now_ms);
	}
	ready_summary(st, p, errs, targets, &status, &reason, msg, sizeof(msg));
	rec_status_set_condition(st, "Ready", status, reason, msg, gen, now_ms);
}

/* ---- JSON in and out ---- */

static int add_time(struct json_object *o, const char *key, int64_t ms)
{
	char buf[40];

	if (ms <= 0)
		return json_object_object_add(o, key, NULL);
	return json_object_object_add(
	        o, key, json_object_new_string(rec_time_format(ms, buf, sizeof(buf))));
}

/* lastErrors' fold fields: count, and the kind when there is one. */
static int add_fold(struct json_object *e, const struct rec_event *v)
{
	if (json_object_object_add(e, "count", json_object_new_int64(v->count)))
		return -1;
	if (v->kind == NULL || v->kind[0] == '\0')
		return 0;
	return json_object_object_add(e, "errorKind", json_object_new_string(v->kind));
}

static struct json_object *events_json(const struct rec_event *v, size_t n, const char *textkey,
                                       int errors)
{
	struct json_object *arr = json_object_new_array();
	size_t i;

	for (i = 0; arr && i < n; i++) {
		struct json_object *e = json_object_new_object();
		if (e == NULL || add_time(e, "time", v[i].time_ms) ||
		    json_object_object_add(e, "pod", json_object_new_string(v[i].pod)) ||
		    json_object_object_add(e, "profile", json_object_new_string(v[i].profile)) ||
		    json_object_object_add(e, textkey, json_object_new_string(v[i].text)) ||
		    (errors && add_fold(e, &v[i])) || json_object_array_add(arr, e)) {
			json_object_put(e);
			json_object_put(arr);
			return NULL;
		}
	}
	return arr;
}

static struct json_object *conds_json(const struct rec_status *st)
{
	struct json_object *arr = json_object_new_array();
	size_t i;

	for (i = 0; arr && i < st->nconds; i++) {
		const struct rec_condition *c = &st->conds[i];
		struct json_object *o = json_object_new_object();
		if (o == NULL ||
		    json_object_object_add(o, "type", json_object_new_string(c->type)) ||
		    json_object_object_add(o, "status", json_object_new_string(c->status)) ||
		    json_object_object_add(o, "reason", json_object_new_string(c->reason)) ||
		    json_object_object_add(o, "message", json_object_new_string(c->message)) ||
		    add_time(o, "lastTransitionTime", c->last_transition_ms) ||
		    json_object_object_add(o, "observedGeneration",
		                           json_object_new_int64(c->observed_generation)) ||
		    json_object_array_add(arr, o)) {
			json_object_put(o);
			json_object_put(arr);
			return NULL;
		}
	}
	return arr;
}

/* The last round's tallies, so Degraded and Ready survive a restart. */
static int add_round(struct json_object *s, const struct rec_round *r)
{
	struct json_object *o = json_object_new_object();

	if (o == NULL || json_object_object_add(s, "lastRound", o))
		return json_object_put(o), -1;
	return json_object_object_add(o, "succeeded", json_object_new_int64(r->succeeded)) ||
	       json_object_object_add(o, "failed", json_object_new_int64(r->failed)) ||
	       json_object_object_add(o, "skipped", json_object_new_int64(r->skipped));
}

char *rec_status_patch_body(const struct rec_status *st)
{
	struct json_object *root = json_object_new_object(), *s = json_object_new_object();
	struct json_object *errs, *recent, *conds;
	char *out = NULL;

	if (root == NULL || s == NULL || json_object_object_add(root, "status", s)) {
		json_object_put(s);
		goto out;
	}
	errs = events_json(st->errors, st->nerrors, "message", 1);
	recent = events_json(st->recent, st->nrecent, "id", 0);
	conds = conds_json(st);
	if (json_object_object_add(s, "lastErrors", errs) ||
	    json_object_object_add(s, "recentProfiles", recent) ||
	    json_object_object_add(s, "conditions", conds) || !errs || !recent || !conds ||
	    json_object_object_add(s, "observedGeneration",
	                           json_object_new_int64(st->observed_generation)) ||
	    json_object_object_add(s, "targets", json_object_new_int64(st->targets)) ||
	    add_time(s, "lastScheduleTime", st->last_schedule_ms) ||
	    add_time(s, "nextScheduleTime", st->next_schedule_ms) ||
	    add_time(s, "lastCaptureTime", st->last_capture_ms) ||
	    json_object_object_add(s, "capturesSucceeded",
	                           json_object_new_int64(st->captures_succeeded)) ||
	    json_object_object_add(s, "capturesFailed",
	                           json_object_new_int64(st->captures_failed)) ||
	    json_object_object_add(s, "capturesSkipped",
	                           json_object_new_int64(st->captures_skipped)))
		goto out;
	if (add_round(s, &st->last_round))
		goto out;
	if (st->spool_bytes >= 0 &&
	    json_object_object_add(s, "spoolBytes", json_object_new_int64(st->spool_bytes)))
		goto out;
	if (st->spool_dropped >= 0 &&
	    json_object_object_add(s, "spoolDropped", json_object_new_int64(st->spool_dropped)))
		goto out;
	out = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN |
	                                                          JSON_C_TO_STRING_NOSLASHESCAPE));
out:
	json_object_put(root);
	return out;
}

static int64_t int_field(const struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_int))
		return json_object_get_int64(v);
	return 0;
}

static uint32_t u32_field(const struct json_object *o, const char *key)
{
	int64_t v = int_field(o, key);

	return v < 0 ? 0 : v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static int64_t time_field(const struct json_object *o, const char *key)
{
	struct json_object *v = NULL;
	int64_t ms;

	if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) &&
	    rec_time_parse(json_object_get_string(v), &ms) == 0)
		return ms;
	return 0;
}

static const char *str_field(const struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return NULL;
}

/* Loads a list written newest first, keeping that order. lastErrors
 * entries are folded as they load, so a list written before entries had
 * counts (one entry per failure) comes back as one entry per kind. */
static int events_from_json(const struct json_object *arr, struct rec_status *st, int errors)
{
	size_t i, len;

	if (!json_object_is_type(arr, json_type_array))
		return 0;
	len = json_object_array_length(arr);
	if (len > REC_STATUS_LIST_MAX)
		len = REC_STATUS_LIST_MAX;
	for (i = len; i-- > 0;) {
		struct json_object *e = json_object_array_get_idx(arr, i);
		int rc;
		if (!json_object_is_type(e, json_type_object))
			continue;
		if (errors)
			rc = fold_error(st, time_field(e, "time"), str_field(e, "pod"),
			                str_field(e, "profile"), str_field(e, "errorKind"),
			                str_field(e, "message"), int_field(e, "count"));
		else if (str_field(e, "id") && strlen(str_field(e, "id")) > REC_PROFILE_ID_MAX)
			continue; /* the CRD would refuse the whole status */
		else
			rc = push_event(&st->recent, &st->nrecent, time_field(e, "time"),
			                str_field(e, "pod"), str_field(e, "profile"),
			                str_field(e, "id"), NULL, 1);
		if (rc < 0)
			return -ENOMEM;
	}
	return 0;
}

int rec_status_from_json(const struct json_object *obj, struct rec_status *st)
{
	struct json_object *v = NULL;
	size_t i, n;

	rec_status_init(st);
	if (!json_object_is_type(obj, json_type_object))
		return 0;
	st->observed_generation = int_field(obj, "observedGeneration");
	st->targets = int_field(obj, "targets");
	st->last_schedule_ms = time_field(obj, "lastScheduleTime");
	st->next_schedule_ms = time_field(obj, "nextScheduleTime");
	st->last_capture_ms = time_field(obj, "lastCaptureTime");
	st->captures_succeeded = int_field(obj, "capturesSucceeded");
	st->captures_failed = int_field(obj, "capturesFailed");
	st->captures_skipped = int_field(obj, "capturesSkipped");
	if (json_object_object_get_ex(obj, "lastRound", &v) &&
	    json_object_is_type(v, json_type_object)) {
		st->last_round.started_ms = st->last_schedule_ms;
		st->last_round.succeeded = u32_field(v, "succeeded");
		st->last_round.failed = u32_field(v, "failed");
		st->last_round.skipped = u32_field(v, "skipped");
	}
	if (json_object_object_get_ex(obj, "lastErrors", &v) && events_from_json(v, st, 1) < 0)
		goto out_nomem;
	if (json_object_object_get_ex(obj, "recentProfiles", &v) && events_from_json(v, st, 0) < 0)
		goto out_nomem;
	if (!json_object_object_get_ex(obj, "conditions", &v) ||
	    !json_object_is_type(v, json_type_array))
		return 0;
	n = json_object_array_length(v);
	for (i = 0; i < n && st->nconds < REC_COND_MAX; i++) {
		struct json_object *c = json_object_array_get_idx(v, i);
		const char *type = str_field(c, "type"), *status = str_field(c, "status");
		const char *reason = str_field(c, "reason"), *msg = str_field(c, "message");
		if (type == NULL || status == NULL || rec_status_condition(st, type))
			continue;
		rec_status_set_condition(st, type, status, reason ? reason : "", msg,
		                         int_field(c, "observedGeneration"),
		                         time_field(c, "lastTransitionTime"));
	}
	return 0;
out_nomem:
	rec_status_free(st);
	return -ENOMEM;
}
