/* kubectl-profefe/kp.h: the plugin's internal header (prefix kp_).
 *
 * kubectl-profefe is a thin CLI over the project's modules: kube/ finds and
 * talks to the API server, reconcile/ turns a pod into a capture target
 * (annotations, service name, labels), and capture/ fetches, checks, stores
 * and queries profiles. What lives here is only what a CLI adds: flag
 * parsing as kubectl users expect it, --from/--to parsing, and rendering
 * tables, JSON and YAML. Those parts are pure and unit tested
 * (kubectl-profefe/tests/); the commands themselves are proven end to end
 * (e2e/plugin_test.go).
 *
 * Every command reports an error as one line on stderr ("error: ...") and
 * exits 1; it never crashes, whatever the API server or profefe answer.
 */
#ifndef KUBECTL_PROFEFE_KP_H
#define KUBECTL_PROFEFE_KP_H

#include "reconcile/reconcile.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct json_object;

#define KP_VERSION_STR "0.1.0"

enum kp_cmd {
	KP_CMD_NONE = 0, /* no command: print the overview */
	KP_CMD_CAPTURE,
	KP_CMD_GET_PROFILES,
	KP_CMD_GET_SERVICES,
	KP_CMD_LOAD,
	KP_CMD_PPROF,
	KP_CMD_MERGE,
	KP_CMD_VERSION,
	KP_CMD__COUNT
};

/* Output formats of the get commands (-o). */
enum kp_fmt { KP_FMT_TABLE = 0, KP_FMT_WIDE, KP_FMT_JSON, KP_FMT_YAML };

/* The parsed command line. Strings point into argv (lent for the life of
 * the process); `args` is owned (free with kp_opts_free). */
struct kp_opts {
	enum kp_cmd cmd;
	int help; /* -h/--help (or "help CMD"): print the command's usage */

	/* kubectl's flags */
	const char *kubeconfig;
	const char *context;
	const char *ns; /* NULL: the context's namespace (kp_namespace) */
	int all_ns;
	const char *selector;       /* -l: pod selector (capture) or profefe labels */
	int64_t request_timeout_ms; /* --request-timeout; 0: the clients' defaults */

	/* profefe */
	const char *profefe_url; /* NULL: $PROFEFE_URL, else http://localhost:10100 */
	const char *service;
	const char *type;                      /* get/load/merge: one profefe type */
	enum ppop_ptype types[PPOP_PT__KNOWN]; /* capture: --type, deduplicated */
	size_t ntypes;
	const char *from, *to;
	unsigned limit;

	/* capture */
	int seconds; /* CPU profile duration */
	const char *output_dir;
	int ignore_annotation;
	int via_apiserver;

	/* -o: get's format, or the file pprof/merge write */
	const char *output;
	enum kp_fmt fmt;

	char **args; /* positional arguments after the command words */
	size_t nargs;
};

/* Parses argv (argv[0] is the program). Flags may come before or after the
 * command words, as kubectl allows; "--" ends the flags. Accepts --flag=v,
 * --flag v, -n v and -nv. Returns 0, or -EINVAL with one line (no "error:"
 * prefix, no newline) in err. On success with o->help set, the caller prints
 * usage and exits 0 without validating the rest. */
int kp_parse_args(int argc, char **argv, struct kp_opts *o, char *err, size_t errlen);
void kp_opts_free(struct kp_opts *o);

/* The usage text of `cmd` (KP_CMD_NONE: the overview). */
void kp_usage(FILE *f, enum kp_cmd cmd);
/* "capture", "get profiles", ... */
const char *kp_cmd_name(enum kp_cmd cmd);

/* The namespace a namespaced command works in: -n when given, else the
 * kubeconfig context's namespace `ctx_ns`, else "default". Lent. */
const char *kp_namespace(const struct kp_opts *o, const char *ctx_ns);

/* Parses a --from/--to value relative to `now_ms`: "now"; a Go duration
 * meaning that long ago ("1h", "-1h", "30m", "1h30m"); "+D" for the future;
 * RFC 3339 ("2026-01-02T15:04:05Z", "...+01:00"); or profefe's own
 * "2026-01-02T15:04:05", read as UTC. Returns 0 or -EINVAL. */
int kp_parse_time_arg(const char *s, int64_t now_ms, int64_t *out_ms);

/* Parses --request-timeout as kubectl does: "0" (no override), a plain
 * number of seconds, or a Go duration ("30s", "1m"). 0 or -EINVAL. */
int kp_parse_timeout(const char *s, int64_t *out_ms);

/* Parses "k=v,k2=v2" (profefe label filters or labels to attach) and
 * encodes them for profefe's labels parameter (sorted, escaped). Returns 0
 * and a malloc'd string in *out ("" for an empty list), or -EINVAL with a
 * reason in err, or -ENOMEM. */
int kp_labels_arg(const char *s, char **out, char *err, size_t errlen);

/* Keeps the profiles of profefe's list reply (an array, lent; NULL = none)
 * that carry every label of `selector` ("k=v,k2=v2"; NULL or "" keeps all),
 * then the newest `limit` of them (0: all), as profefe's limit would.
 * Returns a new array (the caller puts it), or NULL when out of memory or
 * when the selector is malformed.
 *
 * Why not let profefe filter: its badger store intersects the index lists
 * as if they were sorted by profile ID, but they are sorted by created_at,
 * so a label query misses profiles whose created_at order differs from
 * their arrival order (two pods captured in the same second, say). */
struct json_object *kp_filter_profiles(struct json_object *arr, const char *selector,
                                       unsigned limit);

/* Renders profefe's list reply (an array of profile metadata, lent) as the
 * table (ID SERVICE TYPE CREATED LABELS), the wide table (plus AGE, labels
 * never shortened), JSON or YAML. `now_ms` is for AGE. Returns the number
 * of profiles printed. */
size_t kp_render_profiles(FILE *f, struct json_object *arr, enum kp_fmt fmt, int64_t now_ms);
/* Renders the services reply (an array of strings, lent). */
size_t kp_render_services(FILE *f, struct json_object *arr, enum kp_fmt fmt);
/* Writes any JSON value as block-style YAML. */
void kp_yaml_write(FILE *f, struct json_object *v);
/* kubectl's short age: "45s", "12m", "5h", "3d". */
char *kp_age(int64_t ms, char *buf, size_t len);

/* What a command runs on: one loop, and the clients it asked for. */
struct kp_rt {
	struct loop *l;
	struct kube_client *kc; /* kp_rt_kube() */
	struct cap_profefe *pf; /* kp_rt_profefe() */
	const char *ns;         /* kp_namespace() once the kubeconfig is loaded */
	int pending;            /* requests whose callbacks have not run yet */
};

/* Creates the loop. Returns 0, or 1 after printing the error. */
int kp_rt_init(struct kp_rt *rt);
/* Loads the kubeconfig (--kubeconfig, --context) and makes the API client;
 * sets rt->ns. Returns 0, or 1 after printing the error. */
int kp_rt_kube(struct kp_rt *rt, const struct kp_opts *o);
/* Makes the profefe client. Returns 0, or 1 after printing the error. */
int kp_rt_profefe(struct kp_rt *rt, const struct kp_opts *o);
/* Runs the loop until rt->pending drops to 0. Returns 0, or 1 when the
 * loop itself failed (printed). */
int kp_rt_wait(struct kp_rt *rt);
void kp_rt_free(struct kp_rt *rt);
/* The per-request timeout for API and profefe requests (0: defaults). */
uint32_t kp_request_timeout_ms(const struct kp_opts *o);

/* The commands. Each returns the process exit status. */
int kp_cmd_capture(const struct kp_opts *o);
int kp_cmd_get_profiles(const struct kp_opts *o);
int kp_cmd_get_services(const struct kp_opts *o);
int kp_cmd_load(const struct kp_opts *o);
int kp_cmd_download(const struct kp_opts *o); /* pprof and merge */

/* Prints "error: <msg>" on stderr as one line (newlines in the message are
 * folded into spaces, so a hostile reply cannot add lines). */
void kp_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The profefe base URL to use (flag, $PROFEFE_URL, or the default). */
const char *kp_profefe_url(const struct kp_opts *o);

#endif
