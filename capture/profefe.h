/* capture/profefe.h: the profefe client and the delivery that loses nothing.
 *
 * The client speaks profefe's HTTP API (DESIGN.md section 6) on the shared
 * loop: push, list, get (one id or several merged), merge a range, services
 * and version. Every call is bounded (connect and total timeouts, a reply
 * size cap) and every error carries profefe's own message, taken from its
 * {"code":N,"error":"..."} reply.
 *
 * The pusher sits on top: it pushes captured profiles and, when profefe
 * refuses connections, times out or answers 5xx, keeps them in a bounded
 * spool (capture/spool.h) and retries with exponential backoff and jitter,
 * replaying the spool in order once profefe answers again. A 4xx is final.
 */
#ifndef CAPTURE_PROFEFE_H
#define CAPTURE_PROFEFE_H

#include "capture/capture.h"
#include "capture/spool.h"

#include <stddef.h>
#include <stdint.h>

struct loop;
struct json_object;
struct cap_profefe;

struct cap_profefe_opts {
	uint32_t connect_timeout_ms; /* 0: 5000 */
	uint32_t timeout_ms;         /* per request; 0: 30000 */
	size_t max_reply_bytes;      /* 0: 64 MiB */
	const char *user_agent;      /* copied; NULL: cap_user_agent() */
};

/* The outcome of one request. Everything is lent until the callback returns. */
struct cap_profefe_reply {
	enum cap_result res; /* OK, REFUSED, TIMEOUT, TRANSPORT, HTTP, TOO_LARGE,
	                        CANCELLED or INTERNAL */
	long http_status;
	const char *message;      /* profefe's own error text, or the transport error; "" on OK */
	const char *id;           /* push: the stored profile's id (NULL when the reply
	                             had none, or one longer than 127 bytes) */
	struct json_object *json; /* the reply's "body" for list, services and version;
	                             NULL otherwise (a push's reply is scanned for its id,
	                             not parsed into a tree) */
	char *body;               /* the raw reply (pprof for get and merge) */
	size_t body_len;
};

/* Called exactly once per request, also on cap_profefe_free() (CANCELLED). */
typedef void (*cap_profefe_fn)(void *arg, struct cap_profefe_reply *r);

/* Creates a client for `base_url` (e.g. "http://127.0.0.1:10100"; copied)
 * on loop `l` (lent). Returns 0 and the client in `*out`, -EINVAL, -ENOMEM. */
int cap_profefe_new(struct loop *l, const char *base_url, const struct cap_profefe_opts *o,
                    struct cap_profefe **out);

/* Cancels all requests (callbacks see CANCELLED; a request they start
 * fails with -ESHUTDOWN) and frees the client. Free a pusher before the
 * client it uses. */
void cap_profefe_free(struct cap_profefe *c);

/* POST /api/0/profiles?service&type&labels&created_at&instance_id with
 * `body` (the raw gzipped pprof; lent until the callback runs). */
int cap_profefe_push(struct cap_profefe *c, const struct cap_push_meta *m, const void *body,
                     size_t len, cap_profefe_fn fn, void *arg);

struct cap_profefe_query {
	const char *service; /* required */
	const char *type;    /* profefe type; may be NULL for list */
	const char *labels;  /* encoded; may be NULL */
	int64_t from_ms, to_ms;
	unsigned limit; /* list only; 0: profefe's default */
};

/* GET /api/0/profiles?... : `json` is the array of profile metadata. profefe
 * answers 404 "nothing found" for no match; that is res HTTP, status 404. */
int cap_profefe_list(struct cap_profefe *c, const struct cap_profefe_query *q, cap_profefe_fn fn,
                     void *arg);

/* GET /api/0/profiles/<id>[+<id>...]: `body` is the pprof, merged when
 * n > 1. Ids are escaped. */
int cap_profefe_get(struct cap_profefe *c, const char *const *ids, size_t n, cap_profefe_fn fn,
                    void *arg);

/* GET /api/0/profiles/merge?service&type&from&to[&labels]: `body` is the pprof. */
int cap_profefe_merge(struct cap_profefe *c, const struct cap_profefe_query *q, cap_profefe_fn fn,
                      void *arg);

/* GET /api/0/services: `json` is an array of strings. */
int cap_profefe_services(struct cap_profefe *c, cap_profefe_fn fn, void *arg);

/* GET /api/0/version: `json` is profefe's version object. */
int cap_profefe_version(struct cap_profefe *c, cap_profefe_fn fn, void *arg);

/* Cancels every request whose callback argument is `arg`; each callback
 * runs now with CANCELLED. Returns how many. */
size_t cap_profefe_cancel_arg(struct cap_profefe *c, const void *arg);

/* Requests running now. */
size_t cap_profefe_inflight(const struct cap_profefe *c);

/* ---- The pusher -------------------------------------------------------- */

struct cap_pusher;
struct cap_spool_budget;

struct cap_pusher_opts {
	const char *spool_dir;    /* NULL: an in-memory spool */
	uint64_t spool_max_bytes; /* 0: 256 MiB */
	/* Shared with other pushers' spools instead of spool_max_bytes (lent;
	 * must outlive the pusher). NULL: this spool's own cap. */
	struct cap_spool_budget *spool_budget;
	uint32_t backoff_base_ms; /* 0: 500 */
	uint32_t backoff_max_ms;  /* 0: 30000 */
	size_t max_inflight;      /* direct pushes at once; more wait in the spool. 0: 32 */
	size_t replay_inflight;   /* spool replays at once, started in order; 0: 4 */
};

/* The final word on one profile: delivered (res OK, `id` set), refused for
 * good (HTTP 4xx, profefe's message), or dropped from a full spool
 * (DROPPED). Every submitted profile gets exactly one, possibly in a later
 * run of the process when it was spooled; `m->origin` tells whose it was.
 * Everything is lent for the call.
 *
 * The callback runs from the loop, on a turn of its own (a zero-delay
 * timer), never from inside a call into the pusher: a submit that drops a
 * profile from a full spool returns first, so the caller can count the
 * submission before it hears of any result. The one exception is
 * cap_pusher_free(), which reports what is still pending before it returns;
 * callbacks run from there must not call into the pusher. */
typedef void (*cap_pusher_result_fn)(void *arg, const struct cap_push_meta *m, enum cap_result res,
                                     long http_status, const char *message, const char *id);

/* Creates a pusher that sends through `c` (lent) and opens its spool, which
 * may hold profiles from an earlier run: their replay starts at once.
 * Returns 0 and the pusher in `*out`, or a negative errno. */
int cap_pusher_new(struct loop *l, struct cap_profefe *c, const struct cap_pusher_opts *o,
                   cap_pusher_result_fn fn, void *arg, struct cap_pusher **out);

/* Stops the pusher. Profiles being pushed directly are written to the spool
 * first, so a clean shutdown loses nothing; their pushes are cancelled
 * (a push that profefe already stored may then be sent again after the
 * restart). Results not reported yet are reported before it returns.
 * Must not be called from a result callback. Safe on NULL. */
void cap_pusher_free(struct cap_pusher *p);

/* Submits a profile; takes `body` (malloc'd; freed by the pusher, also on
 * failure). `m` is copied. Returns 0, or a negative errno when it could
 * neither be pushed nor spooled (the result callback is then not called).
 * Never runs the result callback itself, for this profile or any other:
 * results found here (e.g. the spool dropping its oldest profile) are
 * reported on a later turn of the loop. */
int cap_pusher_submit_take(struct cap_pusher *p, const struct cap_push_meta *m, char *body,
                           size_t len);

struct cap_pusher_stats {
	uint64_t spool_bytes;
	uint64_t spool_files;
	uint64_t drops;     /* profiles dropped from a full spool */
	uint64_t retries;   /* push attempts after a failure */
	uint64_t delivered; /* stored in profefe */
	uint64_t rejected;  /* refused for good (4xx) */
	size_t inflight;    /* pushes running now */
	int profefe_down;   /* 1 from a retryable failure until profefe answers again;
	                       retry probes in flight do not clear it */
};
void cap_pusher_stats(const struct cap_pusher *p, struct cap_pusher_stats *out);

/* 1 when nothing is in flight, spooled, or waiting to be reported. */
int cap_pusher_idle(const struct cap_pusher *p);

/* 1 when cap_pusher_free() now would lose nothing and send nothing twice:
 * no push is in flight, no result waits to be reported and, for an
 * in-memory spool, nothing is spooled. An on-disk spool may still hold
 * profiles: they survive the restart and are replayed then. */
int cap_pusher_flushed(const struct cap_pusher *p);

/* Told how a flush ended: `flushed` is 1 when cap_pusher_flushed() held,
 * 0 when the timeout passed first. */
typedef void (*cap_pusher_flush_fn)(void *arg, int flushed);

/* For a graceful shutdown: waits, on the loop, for cap_pusher_flushed().
 * Meanwhile submits are still accepted, pushes in flight run to their end,
 * an in-memory spool keeps being replayed, and an on-disk spool starts no
 * new replays (it is left for the next run). `fn` runs once, from the loop
 * (never inside this call, also when the pusher is flushed already), with
 * 1 as soon as the pusher is flushed and after every pending result has
 * been reported, or with 0 after `timeout_ms`. `fn` may free the pusher;
 * otherwise held-back replays resume. If the pusher is freed before the
 * flush ends, `fn` is not called. Returns 0, -EBUSY while
 * another flush waits, -EINVAL without `fn`, or -ENOMEM. */
int cap_pusher_flush(struct cap_pusher *p, uint32_t timeout_ms, cap_pusher_flush_fn fn, void *arg);

#endif
