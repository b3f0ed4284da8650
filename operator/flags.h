/* operator/flags.h: the daemon's command line, kubebuilder's names.
 *
 * Parsing is pure (no I/O) so every flag and every bad value is unit
 * tested; main() only acts on the result.
 */
#ifndef OPERATOR_FLAGS_H
#define OPERATOR_FLAGS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct op_flags {
	const char *kubeconfig;      /* --kubeconfig; NULL: KUBECONFIG/in-cluster */
	const char *context;         /* --context */
	const char *ns;              /* --namespace: watch scope; NULL = all */
	const char *profefe_url;     /* --profefe-url */
	const char *metrics_addr;    /* --metrics-bind-address, default ":8080" */
	const char *health_addr;     /* --health-probe-bind-address, default ":8081" */
	int leader_elect;            /* --leader-elect */
	const char *lease_ns;        /* --leader-election-namespace; default: config's */
	const char *lease_name;      /* --leader-election-id */
	const char *identity;        /* --identity; default: hostname_random */
	size_t max_inflight;         /* --max-inflight, default 256 */
	const char *spool_dir;       /* --spool-dir; NULL: in memory */
	uint64_t spool_max_bytes;    /* --spool-max-bytes, default 256 MiB */
	uint64_t max_profile_bytes;  /* --max-profile-bytes, default 64 MiB */
	uint64_t max_inflight_bytes; /* --max-inflight-bytes: body bytes all captures in flight
	                                may hold together; 0 (default): the fetcher's,
	                                2 * max_profile_bytes. Never below max_profile_bytes. */
	const char *max_inflight_bytes_arg; /* its text as given, for messages; NULL if not given */
	const char *allow_cross_ns;         /* --allow-cross-namespace: comma list of namespaces
	                                       whose policies may select pods elsewhere ("*":
	                                       all); NULL (default): none */
	const char *allowed_urls;           /* --allowed-profefe-urls: comma list of values
	                                       spec.profefeURL may take besides --profefe-url
	                                       ("*": any); NULL (default): none */
	uint32_t spread_ms;                 /* --spread-window, default 10s */
	uint32_t shutdown_ms;               /* --shutdown-timeout, default 15s */
	int log_json;                       /* --log-format=json */
	int verbosity;                      /* -v N */
	int check;                          /* --check */
	int help, version;
};

/* Parses argv into `f` (defaults first). Returns 0, or -EINVAL with one
 * line naming the flag and the problem in `err`. Strings in `f` point into
 * argv or static defaults. */
int op_flags_parse(int argc, char **argv, struct op_flags *f, char *err, size_t errlen);

/* Writes the --help text. */
void op_flags_usage(FILE *out);

#endif
