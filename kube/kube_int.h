/* kube/kube_int.h: what the kube sources share with each other and with the
 * module's own tests and fuzz targets. Not for other modules.
 */
#ifndef KUBE_KUBE_INT_H
#define KUBE_KUBE_INT_H

#include "kube/kube.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct json_object;
struct json_tokener;

/* A byte blob read from a file or decoded from base64 (PEM text). */
struct kube__blob {
	char *data;
	size_t len;
};

/* One name=value pair for an exec plugin's environment. */
struct kube__env {
	char *name;
	char *value;
};

/* The exec credential plugin section of a user (client.authentication.k8s.io). */
struct kube__exec {
	char *api_version;
	char *command; /* resolved against the kubeconfig's directory if relative with '/' */
	char **args;   /* NULL-terminated */
	struct kube__env *env;
	size_t n_env;
	int provide_cluster_info;
};

struct kube_config {
	char *source; /* file list or "in-cluster" */
	char *server; /* base URL without a trailing slash */
	char *tls_server_name;
	int insecure;
	char *ca_file;                 /* certificate-authority path */
	struct kube__blob ca;          /* certificate-authority-data, decoded PEM */
	char *token;                   /* a static bearer token */
	char *token_file;              /* reread at least every 60 s and after a 401 */
	struct kube__blob client_cert; /* PEM, from -data or the file */
	struct kube__blob client_key;
	struct kube__exec *exec;
	char *ns; /* default namespace */
	int in_cluster;
};

/* Parses kubeconfig documents already in memory. `names[i]` labels
 * `bufs[i]` in errors and anchors its relative paths. With `allow_files`
 * zero, any reference to another file is an error (for fuzzing). */
int kube__kubeconfig_parse(const char *const *names, const char *const *bufs, const size_t *lens,
                           size_t n, const char *context, int allow_files, struct kube_config **out,
                           char *err, size_t errlen);

/* For a kubeconfig's tls-server-name: parses `server` with curl_url() and
 * writes the base URL with the host replaced by `tls_name` (port made
 * explicit, path and query kept) and the CURLOPT_CONNECT_TO entry
 * "tls_name:port:host:port" that sends it to the real host. Both are
 * malloc'd (the caller frees them). Returns 0, -EINVAL for a URL curl
 * refuses (bad port, unclosed '[', no host), or -ENOMEM; on failure both
 * are NULL. */
int kube__server_name_urls(const char *server, const char *tls_name, char **base,
                           char **connect_to);

/* Base64 (standard alphabet, padding optional, whitespace ignored).
 * Returns 0 and a malloc'd buffer, or -EINVAL / -ENOMEM. */
int kube__b64_decode(const char *in, size_t n, struct kube__blob *out);
/* Adds `v_take` to object `o` under `k`, taking ownership of it either
 * way. Returns 0, or -ENOMEM when `v_take` is NULL or the add fails, so a
 * builder can OR the results together and check once. */
int kube__jadd(struct json_object *o, const char *k, struct json_object *v_take);
/* As kube__jadd() with a new string; a NULL `s` adds nothing. */
int kube__jadd_str(struct json_object *o, const char *k, const char *s);

/* kube_read_file() into a blob. */
static inline int kube__read_file(const char *path, size_t cap, struct kube__blob *out)
{
	return kube_read_file(path, cap, &out->data, &out->len);
}
void kube__blob_free(struct kube__blob *b);
/* Parses an RFC 3339 timestamp ("2026-01-02T03:04:05Z", fractions and
 * offsets allowed) into seconds since the epoch. Returns 0 or -EINVAL. */
int kube__parse_time(const char *s, time_t *out);
/* Formats `ms` since the epoch as RFC 3339 in UTC: with microseconds
 * (metav1.MicroTime) when `micro`, else whole seconds (metav1.Time). */
void kube__format_time(int64_t ms, int micro, char *buf, size_t n);

/* The exec plugin's answer. */
struct kube__exec_cred {
	char *token;
	struct kube__blob cert;
	struct kube__blob key;
	time_t expires; /* 0: no expiry given */
};
/* Runs the plugin synchronously, bounded by `timeout_ms`, and parses its
 * ExecCredential. `server` feeds KUBERNETES_EXEC_INFO's cluster when the
 * plugin asks for cluster info. On failure writes a line to `err`. */
int kube__exec_run(const struct kube__exec *ex, const struct kube_config *cfg, int timeout_ms,
                   struct kube__exec_cred *out, char *err, size_t errlen);
void kube__exec_cred_free(struct kube__exec_cred *c);
/* Starts the plugin without waiting: the child's pid and the read ends of
 * its stdout and stderr (close-on-exec; the caller closes them and reaps
 * the child). Returns 0 or a negative errno. */
int kube__exec_spawn(const struct kube__exec *ex, const struct kube_config *cfg, pid_t *pid,
                     int *out_fd, int *err_fd);
/* Judges a finished run from its wait status, stdout and stderr text (which
 * it may rewrite). Returns 0 and the credential, or a negative errno and a
 * line in `err`. */
int kube__exec_finish(const struct kube__exec *ex, int status, const struct kube__blob *out,
                      char *errtxt, struct kube__exec_cred *cred, char *err, size_t errlen);

/* The watch-stream framer: turns a byte stream of concatenated JSON
 * values (newline-delimited in practice) into whole objects, whatever the
 * chunk boundaries. */
/* The number check beside json-c's tokener (framer.c): its state in the
 * value being parsed. */
struct kube__numlex {
	int st;
	char prev; /* the number's previous byte */
};

struct kube__framer {
	struct json_tokener *tok;
	size_t max_obj; /* bytes one value may span */
	size_t cur;     /* bytes fed into the value being parsed */
	struct kube__numlex lex;
};
int kube__framer_init(struct kube__framer *f, size_t max_obj);
void kube__framer_reset(struct kube__framer *f);
void kube__framer_free(struct kube__framer *f);
/* Feeds `n` bytes. For each complete value calls `emit` with it (lent);
 * a nonzero return from `emit` stops feeding and is returned. Returns 0,
 * -EBADMSG on malformed input, -EFBIG past max_obj, or emit's value. */
int kube__framer_feed(struct kube__framer *f, const char *p, size_t n,
                      int (*emit)(void *arg, struct json_object *obj), void *arg);

/* The list-page scanner: reads a *List object ({"metadata":{..},
 * "items":[..]}) as a byte stream and hands over each element of "items"
 * as soon as it is complete, so that a page never exists as one tree and
 * at most one item's tree is alive at a time. It keeps metadata's
 * resourceVersion and continue. Members other than "items" are parsed
 * one at a time and dropped; a repeated "items" is read too. */
struct kube__listscan {
	struct json_tokener *tok;
	size_t max_val; /* bytes one item (or any other member's value) may span */
	size_t cur;     /* bytes fed into the value being parsed */
	struct kube__numlex lex;
	int state;
	int member;   /* which top-level member's value is next */
	int err;      /* the first error; sticky until reset */
	size_t items; /* items handed over */
	uint64_t off; /* bytes consumed, for error messages */
	char *rv;     /* metadata.resourceVersion, or NULL (owned) */
	char *cont;   /* metadata.continue, or NULL (owned) */
};
int kube__listscan_init(struct kube__listscan *s, size_t max_val);
/* Forgets the page under way and its metadata, ready for the next. */
void kube__listscan_reset(struct kube__listscan *s);
void kube__listscan_free(struct kube__listscan *s);
/* Feeds `n` bytes. For each complete item calls `item` with it (lent,
 * freed right after the call); a negative return from `item` stops
 * feeding. Returns 0 or a negative errno, which sticks until reset:
 * -EBADMSG for malformed JSON or an item that is not an object, -EFBIG
 * past max_val, or item's value. */
int kube__listscan_feed(struct kube__listscan *s, const char *p, size_t n,
                        int (*item)(void *arg, struct json_object *obj), void *arg);
/* Says whether the page is whole: 0 once its closing brace has been read
 * (and nothing but whitespace after it), the sticky error, or -EBADMSG for
 * a page cut short. */
int kube__listscan_end(const struct kube__listscan *s);

/* What a watch event asks of the informer. */
enum kube__watch_action {
	KUBE__WATCH_OK = 0,
	KUBE__WATCH_RELIST = 1,  /* 410 Gone: list again and replace the cache */
	KUBE__WATCH_RESTART = 2, /* another ERROR: re-watch after a backoff */
};

/* Builds an informer that is not connected to any server, for unit tests:
 * events are fed with kube__informer_event() and lists with
 * kube__informer_list_page(). */
int kube__informer_new_detached(const struct kube_informer_ops *ops, void *arg,
                                struct kube_informer **out);
/* Applies one decoded watch event. Returns an enum kube__watch_action. */
int kube__informer_event(struct kube_informer *inf, struct json_object *ev);
/* Feeds bytes of the list page under way (a *List object), as the live
 * informer does from the transfer's write callback: each item is
 * transformed and staged as soon as it has arrived, and its tree freed
 * before the next is parsed. Returns 0 or a negative errno (see
 * kube__listscan_feed()); after an error, the page is dropped at its end. */
int kube__informer_list_feed(struct kube_informer *inf, const char *p, size_t n);
/* Ends the page fed so far. `last` nonzero ends the list and swaps the new
 * contents in. On error (a page cut short, or an error while feeding) the
 * whole list under way is dropped and the cache left as it was. Returns 0
 * or a negative errno. */
int kube__informer_list_end(struct kube_informer *inf, int last);
/* Applies one whole list page given as a tree: serialises it and feeds it
 * through the two calls above. Returns 0 or a negative errno. */
int kube__informer_list_page(struct kube_informer *inf, struct json_object *list, int last);
/* Feeds raw watch-stream bytes through the framer into the event handler.
 * Returns the strongest action asked for, or a negative errno. */
int kube__informer_feed(struct kube_informer *inf, const char *p, size_t n);

/* Integration-test hooks. pause stops the informer's list or watch and
 * its timers; rewatch_from restarts the watch from `rv` at once, as if
 * that had been the last resourceVersion seen (a stale one forces 410). */
void kube__informer_pause(struct kube_informer *inf);
void kube__informer_rewatch_from(struct kube_informer *inf, const char *rv);

/* Builds the informer's list and watch query strings, for tests. */
int kube__informer_list_url(const struct kube_informer_opts *o, const char *cont, char *buf,
                            size_t n);
int kube__informer_watch_url(const struct kube_informer_opts *o, const char *rv, unsigned timeout_s,
                             char *buf, size_t n);

/* Streams a GET's 200 body to `fn` as it arrives (nonzero from `fn`
 * aborts the transfer); any other status is buffered and handed to `done`
 * like a normal response. No Retry-After retries: the caller owns its own
 * backoff. `timeout_ms` bounds the whole transfer. */
typedef int (*kube__stream_fn)(void *arg, const char *p, size_t n);
int kube__request_stream(struct kube_client *kc, const char *path, uint32_t timeout_ms,
                         kube__stream_fn fn, void *sarg, kube_done_fn done, void *arg,
                         struct kube_call **out);
/* As kube__request_stream() for a GET with `opts` (timeout, the cap on a
 * non-200 body, Retry-After retries of 429 and 5xx answers, which never
 * carry a streamed body) and no idle limit: a list read as it arrives. */
int kube__request_stream_opts(struct kube_client *kc, const char *path,
                              const struct kube_req_opts *opts, kube__stream_fn fn, void *sarg,
                              kube_done_fn done, void *arg, struct kube_call **out);

/* A multi-request operation (create-or-update) the client must be able to
 * abandon when it is freed. Embed it; `cancel` frees the operation
 * without calling its callback. */
struct kube__op {
	struct kube__op *prev, *next;
	void (*cancel)(struct kube__op *op);
};
void kube__op_link(struct kube_client *kc, struct kube__op *op);
void kube__op_unlink(struct kube_client *kc, struct kube__op *op);

/* Milliseconds from a Retry-After the server sent, for tests. */
uint32_t kube__retry_delay_ms(long retry_after_s);

/* Event series an Event recorder remembers; past this, the least recently
 * used is forgotten. */
#define KUBE__EVENT_SERIES_MAX 256
/* Moves the recorder's clock `ms` forward, for tests of long gaps. */
void kube__recorder_advance(struct kube_recorder *rec, int64_t ms);

/* The bearer token the client would send now ("" for none), for tests. */
const char *kube__client_token(struct kube_client *kc);
/* Forgets cached credentials, as after a 401. */
void kube__client_invalidate_auth(struct kube_client *kc);

#endif
