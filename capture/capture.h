/* capture/capture.h: taking pprof profiles from Go services, cheaply and safely.
 *
 * This header covers what every user of capture/ needs: target keys, the results a capture can
 * have, the pprof sanity checker, profefe's time format, and the fetcher that runs many captures at
 * once on the shared loop. The profefe client and the delivery spool are in capture/profefe.h and
 * capture/spool.h; the directory sink in capture/dirsink.h.
 *
 * Nothing here knows about Kubernetes: a capture is a URL, a profile type,
 * a target key and some bounds. The facts it relies on are Go's (DESIGN.md
 * section 4): one CPU profile at a time per process, allocs is heap data,
 * mutex/block profiles are empty unless enabled, and Go writes samples
 * before mappings and the string table.
 */
#ifndef CAPTURE_CAPTURE_H
#define CAPTURE_CAPTURE_H

#include "common/common.h"

#include <stddef.h>
#include <stdint.h>

struct loop;

/* Profile types are common/'s enum ppop_ptype. */

/* What became of one capture or push. Errors are distinct so that status
 * and metrics can say which bound or fault was hit. */
enum cap_result {
	CAP_RES_OK = 0,      /* a profile with at least one sample */
	CAP_RES_EMPTY,       /* skipped: a valid profile with no samples; not an error */
	CAP_RES_REFUSED,     /* connection refused, host unreachable, name not resolved */
	CAP_RES_TIMEOUT,     /* connect or total timeout */
	CAP_RES_TRANSPORT,   /* connection reset, or a reply that is not HTTP */
	CAP_RES_HTTP,        /* non-2xx status; the message holds the body's first line */
	CAP_RES_TOO_LARGE,   /* the body passed its size cap, or the reply header curl's */
	CAP_RES_NOT_PROFILE, /* 2xx, but the body is not a pprof profile */
	CAP_RES_CANCELLED,   /* cancelled by the caller (e.g. its policy was deleted) */
	CAP_RES_DROPPED,     /* delivery only: dropped from a full spool */
	CAP_RES_INTERNAL,    /* out of memory, or a curl setup failure */
	CAP_RES_OVER_BUDGET, /* the captures in flight together held max_inflight_bytes */
	CAP_RES__COUNT
};

/* A short stable name ("ok", "empty", "refused", "timeout", "http",
 * "transport", "too_large", "not_profile", "cancelled", "dropped", "internal",
 * "over_budget"), for metric labels. A static string. */
const char *cap_result_name(enum cap_result r);

/* ---- URLs ---------------------------------------------------------------- */

/* Writes the target key "host:port" ("[v6]:port" for IPv6) that keeps CPU
 * captures exclusive per process. Returns 0, or -ENOSPC when it does not fit. */
int cap_target_key(const char *host, unsigned port, char *buf, size_t len);

/* ---- The pprof sanity checker (pure, no I/O) -------------------------------- */

enum cap_pprof_verdict {
	CAP_PPROF_HAS_SAMPLES = 0,
	CAP_PPROF_EMPTY,       /* sample_type present, no sample */
	CAP_PPROF_NOT_PROFILE, /* not gzip+protobuf, not protobuf, or not a profile */
};

/* Inflated bytes the checker looks at, at most. Go emits a profile's first
 * sample after a handful of locations, so a few KB decide in practice. */
#define CAP_PPROF_SCAN_MAX (256u * 1024u)

/* Decides, without trusting the data, whether `data` is a pprof profile
 * holding at least one sample. Accepts gzip (checked by magic) or plain
 * protobuf. Inflates at most CAP_PPROF_SCAN_MAX bytes, in small steps, and
 * stops at the first sample: what comes after it is not inflated, so a
 * fault there (a corrupt block, a cut, a wrong CRC) is not seen. A profile
 * whose mappings or string table come before any sample is EMPTY: Go
 * writes every sample first. */
enum cap_pprof_verdict cap_pprof_check(const void *data, size_t len);

/* The same check with inflate state kept from one profile to the next, for
 * the hot path: cap_pprof_check() sets up and tears down zlib per call. */
struct cap_pprof_checker;

/* Returns 0 and a checker in `*out` (free it with cap_pprof_checker_free()),
 * or -ENOMEM. */
int cap_pprof_checker_new(struct cap_pprof_checker **out);

/* Frees `c` and its inflate state. Safe on NULL. */
void cap_pprof_checker_free(struct cap_pprof_checker *c);

/* cap_pprof_check() of `data` (lent) with `c`'s inflate state. */
enum cap_pprof_verdict cap_pprof_checker_run(struct cap_pprof_checker *c, const void *data,
                                             size_t len);

/* Detects a profile's type from its sample types, period type and default
 * sample type; for `kubectl profefe load`, not the hot path: it inflates the
 * whole profile, up to `max_bytes` (0: 64 MiB). Go writes block and mutex
 * profiles identically (contentions/count + delay/nanoseconds); those come
 * back as PPOP_PT_BLOCK unless a sample's stack names sync.(*Mutex).Unlock or
 * sync.(*RWMutex).Unlock, which only the mutex profiler records.
 * Returns 0 and the type, -EINVAL when it is not a profile, -EFBIG past the
 * cap, -ENOMEM. An unrecognised profile is PPOP_PT_OTHER. */
int cap_pprof_detect_type(const void *data, size_t len, size_t max_bytes, enum ppop_ptype *out);

/* Formats `wall_ms` (ms since the epoch) as profefe's UTC time,
 * "2006-01-02T15:04:05". `buf` needs 20 bytes. Returns 0 or -ENOSPC. */
int cap_format_time(int64_t wall_ms, char *buf, size_t len);

/* ---- The fetcher ---------------------------------------------------------- */

struct cap_fetcher;

struct cap_fetcher_opts {
	size_t max_inflight;         /* captures in flight at once; 0: 256 */
	size_t max_per_target;       /* non-CPU captures of one target at once; 0: no limit
	                                (CPU captures are always one per target) */
	size_t max_body_bytes;       /* per body; 0: 64 MiB */
	size_t max_inflight_bytes;   /* body bytes buffered by all captures in flight together;
	                                0: 2 * max_body_bytes (128 MiB by default). At least
	                                max_body_bytes, or cap_fetcher_new() fails. */
	uint32_t connect_timeout_ms; /* 0: 5000 */
	const char *user_agent;      /* copied; NULL: "profefe-operator/<version>" */
	int insecure_tls;            /* 1: skip TLS verification for https targets */
};

struct cap_request {
	const char *url;        /* copied; e.g. reconcile's target URL */
	const char *target_key; /* copied; "host:port", the CPU exclusivity key */
	enum ppop_ptype type;
	uint32_t seconds;    /* CPU only: the profile's duration */
	uint32_t timeout_ms; /* per capture; a CPU capture gets seconds*1000 + this; 0: 15000 */
	const void *owner;   /* unused; kept so that callers setting it still compile */
};

struct cap_fetch_result {
	enum cap_result res;
	long http_status;    /* 0 when no response came */
	const char *message; /* lent until the callback returns; "" on success */
	char *body;          /* lent until the callback returns; see cap_fetch_take_body() */
	size_t body_len;
	uint64_t queued_ms;  /* time spent waiting for a slot or for the target's CPU */
	uint64_t elapsed_ms; /* time on the wire */
	uint64_t id;         /* the id cap_fetch_start() returned */
};

/* Called exactly once per started capture, on the loop's thread, also when
 * it is cancelled (res CAP_RES_CANCELLED, from inside the cancel call). The
 * callback may start and cancel captures. */
typedef void (*cap_fetch_done_fn)(void *arg, struct cap_fetch_result *r);

/* Creates a fetcher on loop `l` (lent; it must outlive the fetcher). `o` may
 * be NULL for the defaults. Returns 0 and stores it in `*out`, -EINVAL when
 * max_inflight_bytes is below max_body_bytes, or -ENOMEM.
 *
 * The budget: max_body_bytes bounds one hostile pod (an endless body), and
 * max_inflight_bytes bounds them all, so memory does not grow with
 * max_inflight times max_body_bytes. A capture whose next bytes would pass
 * the budget fails with CAP_RES_OVER_BUDGET (counted in budget_refusals)
 * and frees its share at once. The default, two bodies' worth, lets one
 * pod reach its own cap while the others still have a full body's room;
 * a few hundred typical profiles of tens to hundreds of KB fit in that.
 * Buffers grow by doubling, so allocated memory can be up to twice the
 * bytes counted. */
int cap_fetcher_new(struct loop *l, const struct cap_fetcher_opts *o, struct cap_fetcher **out);

/* Cancels everything (each callback sees CAP_RES_CANCELLED) and frees the
 * fetcher. Safe on NULL. Must not be called from a fetch callback. */
void cap_fetcher_free(struct cap_fetcher *f);

/* Starts a capture, or queues it (FIFO) when max_inflight captures are in
 * flight or a CPU capture of the same target is running. On a 2xx reply the
 * body is sanity-checked: the result is OK, EMPTY or NOT_PROFILE. Returns 0
 * and the capture's id in `*id` (may be NULL), -EINVAL, or -ENOMEM; on
 * failure `done` is never called. */
int cap_fetch_start(struct cap_fetcher *f, const struct cap_request *req, cap_fetch_done_fn done,
                    void *arg, uint64_t *id);

/* Cancels one capture, queued or in flight. Its callback runs now with
 * CAP_RES_CANCELLED. Returns 0, or -ENOENT when it has already finished. */
int cap_fetch_cancel(struct cap_fetcher *f, uint64_t id);

/* Takes the body out of a result (the caller frees it); NULL when none. */
char *cap_fetch_take_body(struct cap_fetch_result *r, size_t *len);

struct cap_fetcher_stats {
	size_t inflight;
	size_t queued;
	uint64_t started;
	uint64_t finished[CAP_RES__COUNT]; /* by result */
	uint64_t bytes;                    /* body bytes received */
	uint64_t inflight_bytes;           /* body bytes buffered by captures in flight now */
	uint64_t inflight_bytes_peak;      /* the most inflight_bytes has been */
	uint64_t budget_refusals;          /* captures failed with CAP_RES_OVER_BUDGET */
};
void cap_fetcher_stats(const struct cap_fetcher *f, struct cap_fetcher_stats *out);

/* The User-Agent sent on every request: "profefe-operator/<version>". */
const char *cap_user_agent(void);

#endif
