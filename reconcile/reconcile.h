/* reconcile/reconcile.h: the pure logic of profefe-operator.
 *
 * This module turns what the API server says (a ProfilingPolicy, pods) into
 * what the operator does (which pods, which URLs, which labels, when) and
 * what it writes back (the policy's status). It performs no network I/O and
 * never includes curl, so every rule here is unit tested and fuzzed without a
 * cluster. It touches no files either: a time zone arrives as TZif bytes
 * that the caller read (see "Time zones" below).
 *
 * Conventions, as STYLE.md asks:
 *  - Functions return 0 or a negative errno (-EINVAL, -ENOMEM, -ERANGE).
 *  - Every pointer says who owns it. "Lent" means the callee neither keeps
 *    nor frees it beyond the call; "owned by X" means X frees it.
 *  - Times are int64 milliseconds since the Unix epoch, UTC.
 */
#ifndef RECONCILE_RECONCILE_H
#define RECONCILE_RECONCILE_H

#include "common/common.h"

#include <stddef.h>
#include <stdint.h>

struct json_object;

/* ------------------------------------------------------------------ */
/* Errors: one precise problem per entry, as field path plus reason.   */

#define REC_ERRS_MAX 32

/* Which condition an error invalidates (see status below). */
enum rec_err_kind {
	REC_ERR_SPEC = 0,     /* SpecValid=False, reason InvalidSpec */
	REC_ERR_SCHEDULE = 1, /* ScheduleValid=False, reason InvalidSchedule */
	REC_ERR_TIMEZONE = 2, /* ScheduleValid=False, reason UnknownTimeZone */
	REC_ERR_CROSS_NS = 3, /* Ready=False, reason CrossNamespaceNotAllowed */
	REC_ERR_SINK = 4,     /* Ready=False, reason ProfefeURLNotAllowed */
};

struct rec_err {
	enum rec_err_kind kind;
	char path[128]; /* e.g. "spec.profiles[1].seconds" */
	char msg[192];  /* e.g. "must be between 1 and 300" */
};

/* A bounded list of errors. Zero-initialise it. Errors past REC_ERRS_MAX
 * are counted in `dropped`, never silently lost. */
struct rec_errs {
	size_t n;
	size_t dropped;
	struct rec_err v[REC_ERRS_MAX];
};

/* Appends one error (printf-style reason). */
void rec_errs_add(struct rec_errs *e, enum rec_err_kind kind, const char *path, const char *fmt,
                  ...) __attribute__((format(printf, 4, 5)));
/* Number of errors of `kind` (including none dropped; dropped ones count as SPEC). */
size_t rec_errs_count(const struct rec_errs *e, enum rec_err_kind kind);
/* Writes "path: reason; path: reason" for errors of `kind` (or of every kind
 * when kind < 0) into buf, truncating with "..." when it does not fit.
 * Returns the length written. */
size_t rec_errs_format(const struct rec_errs *e, int kind, char *buf, size_t len);

/* ------------------------------------------------------------------ */
/* Key/value lists: labels, annotations. Always sorted by key. The pair
 * is common/'s struct ppop_kv.                                        */

/* An owned, sorted list of key/value pairs. Strings are owned by the list
 * (one allocation per list; see rec_kvs_free). */
struct rec_kvs {
	struct ppop_kv *v;
	size_t n;
	char *store_; /* private: the string arena */
};

/* Looks `key` up by binary search. Returns the value (lent) or NULL. */
const char *rec_kvs_get(const struct rec_kvs *kvs, const char *key);
void rec_kvs_free(struct rec_kvs *kvs);

/* ------------------------------------------------------------------ */
/* Label selectors (metav1.LabelSelector), Kubernetes labels semantics. */

enum rec_sel_op { REC_SEL_IN = 0, REC_SEL_NOT_IN, REC_SEL_EXISTS, REC_SEL_DOES_NOT_EXIST };

struct rec_sel_req {
	char *key;
	enum rec_sel_op op;
	char **values; /* sorted, deduplicated; empty for Exists/DoesNotExist */
	size_t nvalues;
};

/* A selector is the AND of its requirements; matchLabels entries become
 * single-valued In requirements, as LabelSelectorAsSelector() does. Zero
 * requirements match every label set (an empty selector selects all). */
struct rec_selector {
	struct rec_sel_req *reqs; /* sorted by key, then operator */
	size_t n;
};

/* Parses a metav1.LabelSelector object (lent; NULL = empty selector).
 * Problems go to `errs` with paths under `path` (e.g. "spec.selector").
 * Returns 0, -EINVAL when errors were added (the valid requirements are
 * kept), or -ENOMEM. *out is always initialised and owned by the caller:
 * free it with rec_selector_free() whatever the result. */
int rec_selector_parse(const struct json_object *obj, const char *path, struct rec_selector *out,
                       struct rec_errs *errs);
/* True when `labels` satisfies every requirement. In: key present with a
 * listed value. NotIn: key absent, or value not listed. Exists: key present.
 * DoesNotExist: key absent. */
int rec_selector_matches(const struct rec_selector *s, const struct rec_kvs *labels);
/* Renders the selector as the labelSelector query parameter of a list/watch
 * ("app=web,tier in (a,b),!legacy"), unescaped. Returns a malloc'd string,
 * "" for the empty selector, or NULL on ENOMEM. */
char *rec_selector_string(const struct rec_selector *s);
void rec_selector_free(struct rec_selector *s);

/* ------------------------------------------------------------------ */
/* Time zones.
 *
 * A zone is parsed from TZif (RFC 8536, v1-v4) including its POSIX TZ
 * footer, so times past the last listed transition follow the footer rule.
 * We parse TZif ourselves rather than switching TZ and calling
 * localtime_r(): setenv("TZ") is process-global state in a program with
 * one event loop, and tzset() rereads files behind our back. A zone's data
 * never changes after parsing and zones are reference counted, so any
 * number of schedules share one. */

struct rec_zone;

/* The UTC zone. Static; ref/unref are no-ops on it. */
const struct rec_zone *rec_zone_utc(void);
/* Parses TZif bytes (lent). `name` is copied for messages. */
int rec_zone_from_tzif(const char *name, const void *data, size_t len, struct rec_zone **out);
/* The zones that need no file: the UTC zone for "UTC" and "Etc/UTC", so
 * they work on a host without zoneinfo; NULL for every other name. */
const struct rec_zone *rec_zone_builtin(const char *name);
/* Syntax check for an IANA name ("Europe/Berlin"): 1 or 0. Refuses "..",
 * absolute paths, empty components and odd characters, so a name taken
 * from a policy cannot leave the zoneinfo directory. */
int rec_zone_name_valid(const char *name);

#define REC_ZONEINFO_DIR "/usr/share/zoneinfo"

/* Where the TZif file for `name` lives: writes "<dir>/<name>" (dir NULL:
 * REC_ZONEINFO_DIR) to `buf` of `len` bytes. Builds a string only; the
 * caller reads the file and hands the bytes to rec_zone_from_tzif().
 * Returns 0, -EINVAL when rec_zone_name_valid() refuses `name`, or
 * -ENAMETOOLONG when the path does not fit. */
int rec_zone_path(const char *dir, const char *name, char *buf, size_t len);
/* Takes a reference, which the caller drops with rec_zone_unref(). Returns z.
 * Both are safe on NULL and no-ops on the static UTC zone. */
struct rec_zone *rec_zone_ref(const struct rec_zone *z);
void rec_zone_unref(const struct rec_zone *z);
const char *rec_zone_name(const struct rec_zone *z);
/* The UTC offset in seconds in force at `t` (Unix seconds). */
int32_t rec_zone_offset(const struct rec_zone *z, int64_t t);

/* A caller-provided zone lookup, so the policy parser stays pure: return 0
 * and a new reference in *out, -ENOENT for an unknown zone. */
typedef int (*rec_zone_lookup_fn)(void *arg, const char *name, struct rec_zone **out);

/* ------------------------------------------------------------------ */
/* Schedules: CronJob's cron (robfig/cron v3 standard parser), plus
 * descriptors and "@every <Go duration>".
 *
 * Cron fields: minute hour day-of-month month day-of-week. Each is a list
 * of "*", "?", N, N-M, with an optional "/step" ("N/step" means N-max).
 * Month and weekday names (jan, sun; any case) work; weekday 7 is Sunday
 * as in Vixie cron. When both day fields are restricted a day matches if
 * EITHER matches; a field starting with "*" or "?" (without a step > 1)
 * is unrestricted, exactly as robfig/cron does.
 *
 * In a zone with DST a cron schedule fires at every instant whose local
 * wall-clock time matches, which is what CronJob (robfig) does: a time
 * skipped by spring-forward does not fire that day, and a time repeated by
 * fall-back fires twice. @every is a fixed period in absolute time, rounded
 * down to whole seconds; below one second is an error. */

struct rec_schedule;

/* Parses `spec` in `zone` (lent, reffed by the schedule; NULL = UTC).
 * Returns 0 and *out (free with rec_schedule_free), or -EINVAL with a
 * one-line reason in err, or -ENOMEM. Schedules that can never fire
 * ("0 0 30 2 *") are refused. */
int rec_schedule_parse(const char *spec, const struct rec_zone *zone, struct rec_schedule **out,
                       char *err, size_t errlen);
/* The first fire time strictly after `after_ms`, in ms, or -1 when there is
 * none within nine years (enough for Feb 29 across 2100). Cron fires on
 * whole minutes; @every fires at after (floored to the second) + period. */
int64_t rec_schedule_next(const struct rec_schedule *s, int64_t after_ms);
/* The shortest gap in seconds between two fires, for checking a CPU
 * profile's duration against it (computed in UTC, so DST is ignored). */
int64_t rec_schedule_period_s(const struct rec_schedule *s);
void rec_schedule_free(struct rec_schedule *s);

/* Parses a Go duration ("1h30m", "90s", "1.5m", "500ms") into ms.
 * Returns 0 or -EINVAL (negative, empty, unknown unit, overflow). */
int rec_go_duration_ms(const char *s, int64_t *out_ms);

/* ------------------------------------------------------------------ */
/* The policy. */

/* Profile types are common/'s enum ppop_ptype; a policy names the first
 * PPOP_PT__KNOWN. */

#define REC_DEFAULT_CPU_SECONDS 10
#define REC_MAX_CPU_SECONDS     300
#define REC_DEFAULT_PORT        6060
#define REC_DEFAULT_PATH        "/debug/pprof"
#define REC_DEFAULT_TIMEOUT_S   15
#define REC_MAX_TIMEOUT_S       300
#define REC_MAX_LABELS          32

struct rec_profile {
	enum ppop_ptype type;
	int32_t seconds; /* cpu: the duration (defaulted to 10); others: 0 */
};

enum rec_scheme { REC_SCHEME_HTTP = 0, REC_SCHEME_HTTPS = 1 };

struct rec_ns_selector {
	int any;      /* every namespace */
	char **names; /* matchNames, sorted; none and !any = own namespace */
	size_t n;
};

/* A parsed policy with defaults applied. Owned by the caller of
 * rec_policy_parse(); every string inside is owned by the policy. */
struct rec_policy {
	char *ns, *name, *uid; /* ns is "" for a ClusterProfilingPolicy */
	int64_t generation;
	int cluster; /* a ClusterProfilingPolicy: cluster-scoped, admin-owned */

	char *schedule;  /* as written */
	char *time_zone; /* NULL when unset */
	int suspend;
	struct rec_selector selector;
	struct rec_ns_selector ns_selector;
	int pod_annotation_required;
	struct rec_profile profiles[PPOP_PT__KNOWN];
	size_t nprofiles;
	int port;
	char *path; /* never NULL; no trailing '/' */
	enum rec_scheme scheme;
	int timeout_seconds;
	char *service; /* NULL when unset or "" */
	struct rec_kvs labels;
	char *profefe_url; /* NULL: the operator's --profefe-url */

	/* Derived. `sched` is NULL when the schedule or zone is invalid. */
	struct rec_schedule *sched;
	int valid; /* no errors at all: the policy may capture */
};

/* Parses a whole ProfilingPolicy object as the API server returns it (lent).
 * Applies the defaults of DESIGN §2 and validates everything, adding one
 * error per problem to `errs` (all problems, not only the first).
 * `lookup` resolves spec.timeZone (NULL: only UTC names are known).
 * Returns 0 and *out even when the spec has errors (p->valid tells), so the
 * caller can still write a status naming them; returns -EINVAL without *out
 * only when the object has no metadata.name/namespace, or -ENOMEM. */
int rec_policy_parse(const struct json_object *obj, rec_zone_lookup_fn lookup, void *lookup_arg,
                     struct rec_policy **out, struct rec_errs *errs);

/* The same for a ClusterProfilingPolicy: the same spec on a cluster-scoped
 * object, which only cluster admins may write (RBAC). Its ns is "" and its
 * namespaceSelector defaults to every namespace. The scope is the
 * caller's to say (which resource the object came from), never the
 * object's: an object with a metadata.namespace is -EINVAL here, as one
 * without is for rec_policy_parse(). */
int rec_cluster_policy_parse(const struct json_object *obj, rec_zone_lookup_fn lookup,
                             void *lookup_arg, struct rec_policy **out, struct rec_errs *errs);
void rec_policy_free(struct rec_policy *p);

/* What the cluster admin allows policies, from the operator's flags. A
 * policy is written by whoever may edit policies in its namespace (the
 * editor role is aggregated into "edit"), so what it may reach beyond its
 * own namespace, and where its profiles may go, is not the policy's to say.
 * Lists are lent. */
struct rec_grants {
	/* Namespaces whose policies may select pods in other namespaces
	 * (spec.namespaceSelector.any or matchNames naming another one);
	 * "*" allows every namespace. Empty: no policy reaches further than
	 * its own namespace. */
	const char *const *cross_ns;
	size_t ncross_ns;
	/* Values spec.profefeURL may take besides `default_url`; "*" allows
	 * any. A trailing '/' is ignored on both sides. */
	const char *const *urls;
	size_t nurls;
	const char *default_url; /* --profefe-url (NULL: none); always allowed */
};

/* Checks a parsed policy against what the admin allows, adding one
 * REC_ERR_CROSS_NS error for a namespace selector reaching beyond the
 * policy's namespace and one REC_ERR_SINK error for a profefeURL not
 * allowed, and clearing p->valid when it adds any: such a policy selects
 * nothing and sends nothing. The messages never list what other
 * namespaces or URLs are allowed. A ClusterProfilingPolicy is the admin's
 * own grant of cross-namespace reach; its profefeURL is checked all the
 * same. Returns the number of errors added. */
size_t rec_policy_authorize(struct rec_policy *p, const struct rec_grants *g,
                            struct rec_errs *errs);

/* ------------------------------------------------------------------ */
/* Pods: the cache's compact form. */

#define REC_ANN_ENABLE  "profefe.com/enable"
#define REC_ANN_PORT    "profefe.com/port"
#define REC_ANN_PATH    "profefe.com/path"
#define REC_ANN_SERVICE "profefe.com/service"
#define REC_ANN_SCHEME  "profefe.com/scheme"

enum rec_pod_phase {
	REC_POD_PENDING = 0,
	REC_POD_RUNNING,
	REC_POD_SUCCEEDED,
	REC_POD_FAILED,
	REC_POD_UNKNOWN
};

/* What the operator keeps of a pod: one malloc'd block (struct plus
 * strings), typically a few hundred bytes; a cache holds 100,000 of them,
 * so the counts are 32-bit and the resourceVersion is left to the cache's
 * entry. Strings are never NULL ("" when absent). Only the profefe.com/
 * annotations are kept, in `ann`. */
struct rec_pod {
	const char *ns, *name, *uid;
	const char *node, *pod_ip;
	const char *owner_kind, *owner_name; /* the controller ownerReference */
	const char *container, *image;       /* the profiled container */
	struct ppop_kv *labels;
	struct ppop_kv *ann; /* the profefe.com/ annotations */
	enum rec_pod_phase phase;
	int ready; /* condition Ready is "True" */
	uint32_t nlabels, nann;
	uint32_t size_bytes; /* the whole block, for memory accounting */
	uint32_t slot;       /* the cache owner's: where its index keeps the pod */
};

/* Extracts the compact form from a v1 Pod json-c object (lent). The
 * container is the one named by kubectl.kubernetes.io/default-container,
 * else the first. Returns 0 and *out (free() it), -EINVAL when the object
 * lacks metadata.name/namespace, or -ENOMEM. */
int rec_pod_from_json(const struct json_object *obj, struct rec_pod **out);
const char *rec_pod_label(const struct rec_pod *p, const char *key);
const char *rec_pod_annotation(const struct rec_pod *p, const char *key);

/* True when the policy selects the pod: namespace (own / matchNames / any),
 * label selector, and profefe.com/enable == "true" when required. Says
 * nothing about whether the pod can be captured now; see below. */
int rec_pod_selected(const struct rec_policy *p, const struct rec_pod *pod);
/* True when the pod is Running with a podIP: a round captures it. */
int rec_pod_capturable(const struct rec_pod *pod);

/* ------------------------------------------------------------------ */
/* Indexes, so that a pod or policy event costs what it affects, not
 * O(all policies x all pods). See index.c. Neither copies pods or
 * policies: the caller keeps them alive while they are indexed. */

/* Pods by namespace. A pod's `slot` belongs to the index while it is in. */
struct rec_podidx;
int rec_podidx_new(struct rec_podidx **out);
void rec_podidx_free(struct rec_podidx *x);
/* The cache replaced `a` by `b` (either NULL; both of one namespace).
 * O(1). Returns 0, -ENOENT when `a` is not in the index, -EINVAL when the
 * namespaces differ, or -ENOMEM (the index is then incomplete). */
int rec_podidx_change(struct rec_podidx *x, const struct rec_pod *a, struct rec_pod *b);
/* Calls `fn` for every pod of `ns`; `fn` must not change the index. */
void rec_podidx_foreach_ns(const struct rec_podidx *x, const char *ns,
                           void (*fn)(void *arg, struct rec_pod *pod), void *arg);
/* The same for every pod of every namespace. */
void rec_podidx_foreach(const struct rec_podidx *x, void (*fn)(void *arg, struct rec_pod *pod),
                        void *arg);
/* Pods of `ns`, or of every namespace when ns is NULL. */
size_t rec_podidx_count(const struct rec_podidx *x, const char *ns);

/* Policies by the namespaces they select in and one label requirement
 * every pod they select must meet. `owner` is the caller's handle. */
struct rec_polidx;
struct rec_polidx_ent;
int rec_polidx_new(struct rec_polidx **out);
/* Frees the index. Delete every entry first (rec_polidx_del()). */
void rec_polidx_free(struct rec_polidx *x);
/* Files (or re-files, after its spec changed) the policy `p` (lent; only
 * read during the call) under *ent, which starts NULL. p == NULL removes
 * it. Returns 0 or -ENOMEM (the policy is then filed nowhere). */
int rec_polidx_put(struct rec_polidx *x, struct rec_polidx_ent **ent, const struct rec_policy *p,
                   void *owner);
/* Removes *ent and sets it to NULL. Safe on a NULL *ent. */
void rec_polidx_del(struct rec_polidx *x, struct rec_polidx_ent **ent);
/* Calls fn(arg, owner) once for each policy that may select pod `a` or
 * pod `b` (either NULL): every policy that selects either is reported,
 * and a few that do not may be; rec_pod_selected() decides. O(labels of
 * a and b + policies reported). `fn` must not change the index. */
void rec_polidx_candidates(struct rec_polidx *x, const struct rec_pod *a, const struct rec_pod *b,
                           void (*fn)(void *arg, void *owner), void *arg);

/* ------------------------------------------------------------------ */
/* Targets: where and how to capture one pod under one policy. */

#define REC_URL_MAX 512

struct rec_target {
	int port;
	enum rec_scheme scheme;
	char path[256];    /* no trailing '/' */
	char service[254]; /* profefe service name */
	char host[64];     /* podIP, bracketed when IPv6 */
};

/* Resolves port, path, scheme and service, each from the annotation, else
 * the spec, else (service only) the owning workload, else the pod name.
 * An invalid profefe.com/port (or path/scheme) annotation is an error on
 * this pod (-EINVAL, reason in err), never a silent default. */
int rec_target_resolve(const struct rec_policy *p, const struct rec_pod *pod,
                       struct rec_target *out, char *err, size_t errlen);
/* The service implied by the owner: a ReplicaSet named
 * "<deployment>-<pod-template-hash>" gives the Deployment; StatefulSet,
 * DaemonSet, Job and a bare ReplicaSet give their own name; else NULL.
 * Writes into buf. */
const char *rec_owner_service(const struct rec_pod *pod, char *buf, size_t len);
/* Writes the capture URL for one profile: CPU is
 * "<scheme>://<host>:<port><path>/profile?seconds=N", every other type
 * "<path>/<type>" (binary proto, no debug=). Returns 0 or -ERANGE. */
int rec_target_url(const struct rec_target *t, const struct rec_profile *prof, char *buf,
                   size_t len);
/* The labels stored with a profile: namespace, pod, node, policy,
 * container (when known), version (pod label app.kubernetes.io/version,
 * else the image tag), pprof_type=allocs for allocs, then spec.labels.
 * Sorted by key; empty values are left out. Fills *out (free with
 * rec_kvs_free). Returns 0 or -ENOMEM. */
int rec_target_labels(const struct rec_policy *p, const struct rec_pod *pod,
                      const struct rec_profile *prof, struct rec_kvs *out);
/* The image tag of "repo/name:tag@sha256:..." ("" when untagged). */
const char *rec_image_tag(const char *image, char *buf, size_t len);
/* A stable offset in [0, window_ms) from the pod's uid, so a round's
 * captures spread over the window and a pod keeps its slot across rounds. */
uint32_t rec_spread_offset_ms(const char *uid, uint32_t window_ms);

/* ------------------------------------------------------------------ */
/* Rounds: when they run (DESIGN §7). A round is named by its scheduled
 * time. The clock guarantees that a round runs at or after its scheduled
 * time (never before: a timer that fires early is re-armed) and at most
 * once per scheduled time, across schedule edits too. */

struct rec_clock {
	int64_t next_ms; /* the scheduled time the timer waits for; 0: none */
	int64_t last_ms; /* the scheduled time of the last round run; 0: none */
};

/* Plans the next round now (at start, and after every spec change, so an
 * edit takes effect at once): the first scheduled time after `now_ms` and
 * strictly after the last round. `s` NULL (invalid, suspended) clears it.
 * Returns next_ms (0: none). */
int64_t rec_clock_plan(struct rec_clock *c, const struct rec_schedule *s, int64_t now_ms);
/* The round timer fired with the wall clock at `now_ms`. Returns the
 * scheduled time of the round to run now, or 0 when none is due (fired
 * early: re-arm for next_ms - now_ms; or nothing planned). On a round the
 * clock moves on: last_ms is the round, next_ms the one after it. */
int64_t rec_clock_fire(struct rec_clock *c, const struct rec_schedule *s, int64_t now_ms);
/* The window a round's captures spread over: `spread_ms`, but at most half
 * the gap to the next round, so a schedule runs at its own rate. */
uint32_t rec_round_window_ms(uint32_t spread_ms, int64_t round_ms, int64_t next_ms);

/* ------------------------------------------------------------------ */
/* Status (DESIGN §2), per the Kubernetes API conventions on conditions. */

#define REC_STATUS_LIST_MAX 10
#define REC_COND_MAX        4
#define REC_PROFILE_ID_MAX  128 /* bytes; the CRD's recentProfiles[].id maxLength */

struct rec_condition {
	char type[24];   /* Ready, SpecValid, ScheduleValid, Degraded */
	char status[8];  /* "True", "False", "Unknown" */
	char reason[48]; /* CamelCase */
	char *message;   /* owned by the status, at most 255 bytes; never NULL once set */
	int64_t last_transition_ms;
	int64_t observed_generation;
};

/* One failed capture (or several folded into one), or one stored profile.
 * Strings owned by the status. */
struct rec_event {
	int64_t time_ms;
	char *pod; /* "namespace/name" */
	char *profile;
	char *text;    /* lastErrors: the message; recentProfiles: profefe's id */
	char *kind;    /* lastErrors: the error kind ("" unclassified); else NULL */
	int64_t count; /* lastErrors: failures folded into this entry, >= 1 */
};

/* The outcome of one round, fed to rec_status_compute(). */
struct rec_round {
	int64_t started_ms;
	uint32_t succeeded, failed, skipped;
};

struct rec_status {
	int64_t observed_generation;
	int64_t targets;
	int64_t last_schedule_ms, next_schedule_ms, last_capture_ms; /* 0 = unset */
	int64_t captures_succeeded, captures_failed, captures_skipped;
	/* Newest first, REC_STATUS_LIST_MAX at most each; allocated at the
	 * first entry (NULL while empty), since most policies have no errors
	 * and 10,000 policies are 10,000 statuses. */
	struct rec_event *errors;
	size_t nerrors;
	struct rec_event *recent;
	size_t nrecent;
	struct rec_condition conds[REC_COND_MAX];
	size_t nconds;
	struct rec_round last_round;        /* the round shown; kept by rec_ctl alone */
	int64_t spool_bytes, spool_dropped; /* delivery; -1 = unknown */
};

/* Zero-initialises a status. */
void rec_status_init(struct rec_status *st);
/* Loads a status object (lent; NULL ok) as written before, so counters and
 * transition times survive an operator restart. Unknown fields are ignored,
 * malformed ones skipped. Returns 0 or -ENOMEM. */
int rec_status_from_json(const struct json_object *obj, struct rec_status *st);
void rec_status_free(struct rec_status *st);

/* Records one capture's outcome in the cumulative counters (saturating at
 * INT64_MAX) and the lists. They leave last_round alone: which round it
 * shows, and its tallies, are the controller's (rec_ctl) to keep. */

/* A stored profile: lastCaptureTime, and an entry at the front of
 * recentProfiles (the REC_STATUS_LIST_MAX newest). An `id` longer than
 * REC_PROFILE_ID_MAX bytes is not listed (the CRD would refuse the whole
 * status), but the success is still counted; returns -EINVAL for it so
 * the caller can log it. Otherwise returns 0 or -ENOMEM. */
int rec_status_add_success(struct rec_status *st, int64_t now_ms, const char *pod,
                           const char *profile, const char *id);
/* A failed capture of `profile` from `pod` ("namespace/name"), of error
 * `kind`, a short stable name such as "timeout", "http_500" or
 * "invalid_target" (copied; NULL or "" is unclassified). lastErrors keeps
 * one entry per (pod, profile, kind): a repeat takes the new time and
 * `message` (cut to 511 bytes on a UTF-8 boundary), adds one to the
 * entry's count and moves it to the front; a new one is pushed at the
 * front. The list holds the REC_STATUS_LIST_MAX most recently failing
 * entries, newest first. Returns 0 or -ENOMEM (counted either way). */
int rec_status_add_failure_kind(struct rec_status *st, int64_t now_ms, const char *pod,
                                const char *profile, const char *kind, const char *message);
/* An empty profile, skipped: not a failure. */
void rec_status_add_skipped(struct rec_status *st);

/* Sets one condition. lastTransitionTime moves only when `status` changes;
 * reason, message and observedGeneration are always updated. Returns 0, or
 * -ENOSPC when REC_COND_MAX types are already present. */
int rec_status_set_condition(struct rec_status *st, const char *type, const char *status,
                             const char *reason, const char *message, int64_t generation,
                             int64_t now_ms);
const struct rec_condition *rec_status_condition(const struct rec_status *st, const char *type);

/* Recomputes observedGeneration, targets, nextScheduleTime and the
 * conditions from the parsed policy (NULL when unparseable), its errors,
 * the number of matched targets and the last round:
 *  - SpecValid: False/InvalidSpec with the errors, else True/Valid.
 *  - ScheduleValid: False/InvalidSchedule or UnknownTimeZone, else True/Valid.
 *  - Degraded: True/CapturesFailing when the last round had failures.
 *  - Ready: the summary: False/InvalidSpec, InvalidSchedule, UnknownTimeZone,
 *    CrossNamespaceNotAllowed, ProfefeURLNotAllowed (rec_policy_authorize)
 *    or AllCapturesFailing; True/Suspended, NoTargets, Capturing or
 *    CapturingWithErrors.
 * `next_ms` is the next fire time or -1. */
void rec_status_compute(struct rec_status *st, const struct rec_policy *p,
                        const struct rec_errs *errs, int64_t targets, int64_t next_ms,
                        int64_t now_ms);

/* The JSON merge-patch body for the /status subresource:
 * {"status":{...every field...}}. Lists are written whole (a merge patch
 * replaces lists). Returns a malloc'd string (caller frees) or NULL. */
char *rec_status_patch_body(const struct rec_status *st);

/* Formats ms since the epoch as RFC 3339 UTC with second precision
 * ("2006-01-02T15:04:05Z"), as metav1.Time does. Returns buf. */
char *rec_time_format(int64_t ms, char *buf, size_t len);
/* Parses RFC 3339 ("...Z" or "+hh:mm", optional fraction). 0 or -EINVAL. */
int rec_time_parse(const char *s, int64_t *out_ms);

/* ------------------------------------------------------------------ */
/* The controller's state machine for one policy (DESIGN §7).
 *
 * reconcile/ decides, operator/ carries out. Each step takes what happened
 * (a timer fired, a capture or delivery ended, a pod changed, the spec
 * changed, leadership was lost) and the wall clock as arguments, changes
 * the policy's state, and appends the actions to carry out to a list: arm
 * the round timer, start or cancel a capture, write the status, emit an
 * Event, count a metric. Nothing here does I/O, so unit tests drive the
 * whole thing with a virtual clock and fake captures and deliveries.
 *
 * Protocol: every START is answered exactly once by rec_ctl_captured()
 * (CANCELLED included), and every capture answered CAPTURED is answered
 * exactly once by rec_ctl_delivered() for the same round, pod and type. */

#define REC_CTL_ROUNDS 4 /* rounds tracked at once; older ones are let go */

/* One round, named by its scheduled time, until its last capture and
 * delivery are answered. */
struct rec_ctl_round {
	int64_t ms;          /* 0: free slot */
	uint32_t jobs;       /* captures not yet answered */
	uint32_t deliveries; /* captured profiles whose delivery is not answered */
	struct rec_round tally;
};

/* One capture of one profile type from one pod, for one round. Lent to
 * the caller from START until its rec_ctl_captured() answer. */
struct rec_ctl_job {
	int64_t round_ms;
	enum ppop_ptype type;
	char *pod;                  /* "ns/name" */
	char *ns, *name, *uid, *ip; /* the pod as planned */
	int cancelling;             /* CANCEL was asked for */
	void *user;                 /* the caller's handle */
	/* Private. */
	uint32_t h;
	struct rec_ctl_job *hnext, *next, *prev;
};

struct rec_ctl {
	struct rec_status st;
	struct rec_clock clock;
	struct rec_ctl_round rounds[REC_CTL_ROUNDS];
	int64_t published_ms; /* the round status.lastRound shows */
	int64_t targets;      /* pods selected and capturable at the last round */
	int grace;            /* a GRACE action is outstanding */
	int dirty;            /* st changed since the caller last wrote it */
	/* Private: live jobs, and the same jobs by (pod, type). */
	struct rec_ctl_job *jobs;
	struct rec_ctl_job **tab;
	size_t njobs, ntab;
};

enum rec_act_type {
	REC_ACT_FIRE,   /* arm the round timer for at_ms (0: disarm) */
	REC_ACT_START,  /* start `job`'s capture at at_ms (its spread slot) */
	REC_ACT_CANCEL, /* cancel `job`'s capture; answer CANCELLED */
	REC_ACT_GRACE,  /* call rec_ctl_grace() at at_ms (0: disarm) */
	REC_ACT_WRITE,  /* write st now: a round ended */
	REC_ACT_EVENT,  /* a Warning Event: reason, key (dedup), msg */
	REC_ACT_COUNT,  /* count a capture result: pod, profile, result */
};

struct rec_act {
	enum rec_act_type type;
	int64_t at_ms;
	struct rec_ctl_job *job;
	const char *reason; /* static: EVENT reason, COUNT result */
	char *key, *msg;    /* owned by the list: EVENT key/message, COUNT profile */
};

struct rec_acts {
	struct rec_act *v;
	size_t n, cap;
	int oom; /* an action could not be added: the caller should requeue */
};

/* Empties the list (frees its strings), keeping its storage. */
void rec_acts_clear(struct rec_acts *a);
void rec_acts_free(struct rec_acts *a);

/* What a capture or delivery came to. */
enum rec_outcome {
	REC_OUT_CAPTURED,  /* capture: a profile in hand; its delivery follows */
	REC_OUT_STORED,    /* delivery: stored; `id` is profefe's */
	REC_OUT_EMPTY,     /* a valid profile without samples: skipped */
	REC_OUT_FAILED,    /* `kind` says how (e.g. "timeout"), `msg` the detail */
	REC_OUT_CANCELLED, /* not counted anywhere */
};

void rec_ctl_init(struct rec_ctl *c);
/* Frees the jobs (the caller must have stopped its captures) and status. */
void rec_ctl_free(struct rec_ctl *c);
/* Forgets rounds, clock and jobs, appending CANCEL for each live job: a
 * new object under the same name starts from scratch. */
void rec_ctl_reset(struct rec_ctl *c, struct rec_acts *a);

/* The spec changed (or the policy is new): plan the next round now.
 * `s` NULL: the policy may not run (invalid, suspended). */
void rec_ctl_plan(struct rec_ctl *c, const struct rec_schedule *s, int64_t now_ms,
                  struct rec_acts *a);

/* The round timer fired. `pods` are every cached pod (lent); the policy
 * selects among them. `capture` is 0 when this replica may not capture
 * (not leading, shutting down): the clock still moves on. Returns the
 * round's scheduled time, or 0 when none was due. */
int64_t rec_ctl_fire(struct rec_ctl *c, const struct rec_policy *p,
                     const struct rec_pod *const *pods, size_t npods, uint32_t spread_ms,
                     int capture, int64_t now_ms, struct rec_acts *a);

/* True when `pod` (the cached pod under the job's name now, or NULL) is
 * the pod the job was planned for, at the same IP, and `p` still selects
 * it: a capture must start only then. */
int rec_ctl_may_start(const struct rec_policy *p, const struct rec_ctl_job *j,
                      const struct rec_pod *pod);

/* A job's capture ended. The job is freed. */
void rec_ctl_captured(struct rec_ctl *c, struct rec_ctl_job *j, enum rec_outcome out,
                      const char *kind, const char *msg, int64_t now_ms, struct rec_acts *a);
/* A delivery ended: round 0 or a round let go counts only in the
 * cumulative counters (a spool replayed after a restart). */
void rec_ctl_delivered(struct rec_ctl *c, int64_t round_ms, const char *pod, const char *profile,
                       enum rec_outcome out, const char *kind, const char *msg, const char *id,
                       int64_t now_ms, struct rec_acts *a);
/* The grace timer fired: deliveries lag; publish the newest round whose
 * captures have all ended, as it stands, and write. */
void rec_ctl_grace(struct rec_ctl *c, int64_t now_ms, struct rec_acts *a);

/* A pod changed from `old` to `now` (either NULL). Captures of a pod that
 * was deleted, changed its IP or left the selection are cancelled. */
void rec_ctl_pod_changed(struct rec_ctl *c, const struct rec_policy *p, const struct rec_pod *old,
                         const struct rec_pod *now, struct rec_acts *a);
/* Cancels every live capture (policy deleted, leadership lost, shutdown). */
void rec_ctl_cancel_all(struct rec_ctl *c, struct rec_acts *a);

#endif
