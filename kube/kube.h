/* kube/kube.h: a small Kubernetes API client for one event loop.
 *
 * It finds its configuration wherever kubectl would (flags, KUBECONFIG with
 * several files merged, the in-cluster service account, ~/.kube/config),
 * authenticates with tokens, token files, client certificates or an exec
 * credential plugin, and runs every request as a non-blocking transfer on
 * the shared loop. On top of requests it offers an informer (paginated list,
 * then watch with bookmarks, relist on 410 Gone, jittered re-watch after a
 * drop, and a cache of caller-shaped values), status and conflict-retried
 * writes, deduplicated Events, and Lease-based leader election.
 *
 * It knows nothing about what the caller does with the objects.
 *
 * Conventions: functions return 0 or a negative errno. json-c objects passed
 * in are lent unless a name ends in _take; objects passed to callbacks are
 * lent for the call's duration (json_object_get() what you keep). Strings
 * returned by accessors are owned by the object they came from.
 */
#ifndef KUBE_KUBE_H
#define KUBE_KUBE_H

#include <stddef.h>
#include <stdint.h>

struct json_object;
struct loop;
struct kube_config;
struct kube_client;
struct kube_call;
struct kube_informer;
struct kube_recorder;
struct kube_leader;

/* ------------------------------------------------------------------ */
/* Configuration                                                       */

/* Where configuration comes from. All fields are optional. */
struct kube_config_opts {
	/* --kubeconfig: load only this file. NULL: $KUBECONFIG (a list of
	 * files merged as kubectl does), else in-cluster, else
	 * ~/.kube/config (controller-runtime's order). */
	const char *kubeconfig;
	/* --context: use this context instead of current-context. */
	const char *context;
	/* The service-account directory for in-cluster config; NULL means
	 * /var/run/secrets/kubernetes.io/serviceaccount. For tests. */
	const char *sa_dir;
	/* Nonzero: never fall back to in-cluster config. */
	int no_in_cluster;
};

/* Loads configuration as described by `opts` (NULL: all defaults).
 * Returns 0 and stores a config the caller frees with kube_config_free(),
 * or a negative errno and one human-readable line in `err` naming the file
 * and the field at fault (e.g. "kubeconfig /x: users[0].user.token: ..."). */
int kube_config_load(const struct kube_config_opts *opts, struct kube_config **out, char *err,
                     size_t errlen);

/* Loads a kubeconfig from `paths`, a colon-separated list merged as
 * kubectl merges KUBECONFIG: for every map key (cluster, user and context
 * names, current-context) the first file to set it wins. `context` may be
 * NULL. Errors as kube_config_load(). */
int kube_config_load_kubeconfig(const char *paths, const char *context, struct kube_config **out,
                                char *err, size_t errlen);

/* Builds the in-cluster config from KUBERNETES_SERVICE_HOST/_PORT and the
 * token, ca.crt and namespace files under `sa_dir` (NULL: the default). */
int kube_config_in_cluster(const char *sa_dir, struct kube_config **out, char *err, size_t errlen);

/* The API server's base URL, e.g. "https://127.0.0.1:6443". */
const char *kube_config_server(const struct kube_config *c);
/* The default namespace: the context's, the service account's, or "default". */
const char *kube_config_namespace(const struct kube_config *c);
/* What the config was loaded from: a file list, or "in-cluster". */
const char *kube_config_source(const struct kube_config *c);
/* Safe on NULL. */
void kube_config_free(struct kube_config *c);

/* ------------------------------------------------------------------ */
/* Client and requests                                                 */

/* Creates a client on loop `l`. Takes ownership of `cfg` whether or not it
 * succeeds. Free every informer, recorder and leader built on the client
 * before freeing the client. */
int kube_client_new_take(struct loop *l, struct kube_config *cfg, struct kube_client **out);
/* Cancels outstanding calls without their callbacks and frees the client.
 * Safe on NULL. */
void kube_client_free(struct kube_client *kc);
/* Sets the User-Agent sent with every request (copied); the API server
 * also uses it as the field manager of non-apply writes. Default
 * "kube-c/0.1". Returns 0 or -ENOMEM. */
int kube_client_set_user_agent(struct kube_client *kc, const char *ua);
/* The config's default namespace. */
const char *kube_client_namespace(const struct kube_client *kc);
/* The loop the client runs on (lent). */
struct loop *kube_client_loop(const struct kube_client *kc);

/* The outcome of one request, lent to the completion callback. */
struct kube_response {
	long status;              /* HTTP status; 0 when no response arrived */
	int err;                  /* 0, or a negative errno: no response, timeout, body cap */
	const char *body;         /* NUL-terminated; "" when empty */
	size_t body_len;          /* bytes in body */
	struct json_object *json; /* the parsed body, or NULL when not JSON */
	const char *message;      /* a one-line summary for logs: Status.message, curl error */
};

/* Called exactly once per request unless the call is cancelled first. */
typedef void (*kube_done_fn)(void *arg, const struct kube_response *r);

/* Per-request knobs; zero fields take the defaults. */
struct kube_req_opts {
	const char *content_type; /* default "application/json" */
	uint32_t timeout_ms;      /* whole-transfer timeout, default 30 s */
	size_t max_body;          /* response body cap, default 16 MiB */
	int max_retries;          /* retries after 429/5xx with Retry-After (default 5); -1: none */
	int urgent;               /* nonzero: never waits for a slot (leader election) */
};

/* Starts `method` on `path` (with any query, e.g. "/api/v1/pods?limit=5").
 * `body` (lent, may be NULL) is serialized before this returns. A 401 makes
 * the client reread its token file or re-run its exec plugin and retry
 * once. 429 and 5xx answers carrying Retry-After are retried after the
 * delay it names (capped at 60 s). If `out` is non-NULL it receives a
 * handle valid until `done` runs, for kube_call_cancel().
 * At most 16 requests per client are in flight at once (watches and
 * `urgent` ones aside); more wait in order for a slot, and their timeout
 * starts when they do. */
int kube_request(struct kube_client *kc, const char *method, const char *path,
                 struct json_object *body, const struct kube_req_opts *opts, kube_done_fn done,
                 void *arg, struct kube_call **out);
/* As kube_request() with a raw body of `len` bytes (copied). */
int kube_request_raw(struct kube_client *kc, const char *method, const char *path, const char *body,
                     size_t len, const struct kube_req_opts *opts, kube_done_fn done, void *arg,
                     struct kube_call **out);
/* Cancels a call: `done` will not run. Safe on NULL. */
void kube_call_cancel(struct kube_call *c);

/* Builds "/api/v1/namespaces/NS/RESOURCE/NAME/SUB" (core, group "") or
 * "/apis/GROUP/VERSION/...". `ns`, `name` and `sub` may be NULL. Segments
 * are percent-encoded. Returns 0 or -ENAMETOOLONG. */
int kube_path(char *buf, size_t n, const char *group, const char *version, const char *ns,
              const char *resource, const char *name, const char *sub);

/* Appends "?key=value" or "&key=value" to the NUL-terminated `buf` of size
 * `n`, percent-encoding `value` (RFC 3986 unreserved characters are kept).
 * A NULL value appends nothing. Returns 0 or -ENAMETOOLONG (buf unchanged). */
int kube_query_add(char *buf, size_t n, const char *key, const char *value);

/* Reads the file at `path` whole, as kube reads kubeconfigs, token and CA
 * files: at most `cap` bytes, bounded as every read here is. Returns 0 and
 * a malloc'd, NUL-terminated buffer in *out (the caller frees it) with its
 * length in *out_len; or a negative errno: -EFBIG past `cap`, -EISDIR for a
 * directory, -ENOENT, -ENOMEM. On failure *out is untouched. */
int kube_read_file(const char *path, size_t cap, char **out, size_t *out_len);

/* ------------------------------------------------------------------ */
/* Informer: list + watch into a cache of caller-shaped values          */

struct kube_informer_opts {
	const char *group;          /* "" or NULL for the core group */
	const char *version;        /* e.g. "v1" */
	const char *resource;       /* plural, e.g. "pods" */
	const char *ns;             /* one namespace, or NULL/"" for all */
	const char *label_selector; /* NULL: everything */
	const char *field_selector; /* NULL: everything */
	uint32_t page_size;         /* list page limit; default 500 */
	size_t max_event_bytes;     /* cap on one watch event; default 16 MiB */
	size_t max_page_bytes;      /* cap on one list page; default 64 MiB */
};

/* The cache's callbacks. `value` pointers are the cache's: valid during the
 * call and until the object is updated or deleted. All may be NULL except
 * that `transform` and `free_value` go together. */
struct kube_informer_ops {
	/* Turns a lent object into the caller's compact value, so the cache
	 * never holds JSON trees. Return 0 and set *value, or a negative
	 * number to leave the object out of the cache (as if absent).
	 * NULL: the cache keeps a reference to the json_object itself.
	 * While a list page arrives, it is called from inside the list
	 * transfer's write callback, item by item: it must not start or
	 * cancel requests (the cache callbacks below never run there). */
	int (*transform)(void *arg, struct json_object *obj, void **value);
	void (*free_value)(void *arg, void *value);
	void (*on_add)(void *arg, const char *ns, const char *name, void *value);
	void (*on_update)(void *arg, const char *ns, const char *name, void *old_value,
	                  void *value);
	/* `value` is freed right after this returns. */
	void (*on_delete)(void *arg, const char *ns, const char *name, void *value);
	/* A full list has been applied (first sync, and after each relist). */
	void (*on_synced)(void *arg);
};

/* Counters for metrics. */
struct kube_informer_stats {
	uint64_t lists;       /* full lists completed */
	uint64_t relists_410; /* lists forced by 410 Gone */
	uint64_t watches;     /* watch requests started */
	uint64_t restarts;    /* watches that ended in an error or a drop */
	uint64_t events;      /* watch events applied */
	uint64_t bookmarks;   /* BOOKMARK events seen */
};

/* Starts listing and watching. Returns 0 and a handle freed with
 * kube_informer_free(), or a negative errno. Strings in `opts` are copied. */
int kube_informer_start(struct kube_client *kc, const struct kube_informer_opts *opts,
                        const struct kube_informer_ops *ops, void *arg, struct kube_informer **out);
/* Stops the informer, frees every cached value (without on_delete) and the
 * informer. Safe on NULL. */
void kube_informer_free(struct kube_informer *inf);
/* The cached value for ns/name (ns "" for cluster-scoped), or NULL. */
void *kube_informer_get(const struct kube_informer *inf, const char *ns, const char *name);
/* Number of cached objects. */
size_t kube_informer_count(const struct kube_informer *inf);
/* 1 once a full list has been applied. */
int kube_informer_synced(const struct kube_informer *inf);
/* Calls `fn` for every cached object, in no particular order. `fn` must not
 * change the cache. */
void kube_informer_foreach(const struct kube_informer *inf,
                           void (*fn)(void *arg, const char *ns, const char *name, void *value),
                           void *arg);
/* The last resourceVersion seen (lent), "" before the first list. */
const char *kube_informer_resource_version(const struct kube_informer *inf);
void kube_informer_stats(const struct kube_informer *inf, struct kube_informer_stats *st);

/* ------------------------------------------------------------------ */
/* Writes                                                              */

/* PATCHes `obj_path` + "/status" with `patch` as a JSON merge patch
 * (RFC 7386, application/merge-patch+json). */
int kube_patch_status(struct kube_client *kc, const char *obj_path, struct json_object *patch,
                      kube_done_fn done, void *arg);
/* Server-side apply of `obj` to `obj_path` + "/status" as `field_manager`,
 * with force=true (the caller owns those fields). */
int kube_apply_status(struct kube_client *kc, const char *obj_path, struct json_object *obj,
                      const char *field_manager, kube_done_fn done, void *arg);
/* A JSON merge patch of the object itself. */
int kube_patch_merge(struct kube_client *kc, const char *obj_path, struct json_object *patch,
                     kube_done_fn done, void *arg);

/* Given the current object (lent; NULL when it does not exist), returns
 * the desired object, owned by the caller of the callback (the client puts
 * it), or NULL to give up. An update must keep metadata.resourceVersion
 * from `current` so the server can detect conflicts. */
typedef struct json_object *(*kube_mutate_fn)(void *arg, struct json_object *current);

/* Create-or-update with conflict retry: GETs collection/name, asks
 * `mutate` for the desired object, then POSTs (when absent) or PUTs it.
 * A 409 (conflict, or AlreadyExists on create) starts over with a fresh
 * GET, up to 5 times with jittered backoff. `done` sees the final answer. */
int kube_create_or_update(struct kube_client *kc, const char *collection, const char *name,
                          kube_mutate_fn mutate, void *mutate_arg, kube_done_fn done, void *arg);

/* ------------------------------------------------------------------ */
/* Events (core/v1)                                                    */

/* The object an Event is about. Every field but kind and name may be NULL. */
struct kube_objref {
	const char *api_version;
	const char *kind;
	const char *ns;
	const char *name;
	const char *uid;
	const char *resource_version;
};

/* Creates a recorder that writes Events as `component` (source.component
 * and reportingController) on `host` (may be NULL). An Event that repeats
 * one already recorded is folded into it: its count, lastTimestamp and
 * message are PATCHed, as client-go's EventCorrelator does. An unkeyed
 * Event repeats another with the same object, type, reason and message
 * within `window_s` seconds (0: 600) of the last occurrence. The recorder
 * remembers the 256 most recently used series. */
int kube_recorder_new(struct kube_client *kc, const char *component, const char *host,
                      uint32_t window_s, struct kube_recorder **out);
/* Records an Event ("Normal" or "Warning"). Fire-and-forget: failures are
 * logged. Returns 0 or a negative errno for a request that could not
 * start. The caller's `dedup_key` (copied; e.g. "pod-uid|heap|timeout")
 * names the series: Events with the same object (kind, namespace, name,
 * uid), type, reason and dedup key are one series however their messages
 * differ (e.g. "timed out after 2001 ms"), and the newest message is the
 * Event's. A keyed series never expires by age (window_s does not apply);
 * it is forgotten only when 256 more recently used series push it out, and
 * the next occurrence then creates a new Event. With a NULL `dedup_key`
 * the message names the series, within window_s as described above. */
int kube_event_keyed(struct kube_recorder *rec, const struct kube_objref *obj, const char *type,
                     const char *reason, const char *dedup_key, const char *message);
/* Writes issued, for tests and metrics: creates and count PATCHes. */
void kube_recorder_counts(const struct kube_recorder *rec, uint64_t *creates, uint64_t *patches);
/* Cancels in-flight writes and frees. Safe on NULL. */
void kube_recorder_free(struct kube_recorder *rec);

/* ------------------------------------------------------------------ */
/* Leader election on a coordination.k8s.io/v1 Lease                   */

struct kube_leader_opts {
	const char *ns;       /* the Lease's namespace */
	const char *name;     /* the Lease's name */
	const char *identity; /* this candidate, e.g. pod name + "_" + random */
	/* Timings as client-go's LeaseDuration, RenewDeadline and
	 * RetryPeriod; 0 takes the default. lease_ms is written to the Lease
	 * in whole seconds. Keep retry_ms < renew_deadline_ms < lease_ms. */
	uint32_t lease_ms;          /* default 15000 */
	uint32_t renew_deadline_ms; /* default 10000 */
	uint32_t retry_ms;          /* default 2000 */
};

struct kube_leader_ops {
	void (*started)(void *arg); /* this candidate now leads */
	void (*stopped)(void *arg); /* it lost the lease, or released it */
};

/* Starts campaigning. Returns 0 and a handle, or a negative errno. */
int kube_leader_start(struct kube_client *kc, const struct kube_leader_opts *opts,
                      const struct kube_leader_ops *ops, void *arg, struct kube_leader **out);
/* 1 while leading. Leading lasts until renew_deadline_ms past the SEND
 * time of the last successful acquire or renew, not its answer: the server
 * stored the write at some moment after we sent it, and others count
 * leaseDuration from when they saw it, as client-go bounds observedTime.
 * Past that, `stopped` is called even with a renew still in flight. */
int kube_leader_is_leader(const struct kube_leader *le);
/* Stops campaigning. When leading, releases the Lease (holderIdentity ""
 * and leaseDurationSeconds 1, as client-go's ReleaseOnCancel) so another
 * candidate takes over at once, calls `stopped`, then `done` (may be NULL)
 * when the write has finished or failed. Otherwise calls `done` at once. */
void kube_leader_release(struct kube_leader *le, void (*done)(void *arg), void *arg);
/* Stops without releasing and frees. Safe on NULL. */
void kube_leader_free(struct kube_leader *le);

#endif
