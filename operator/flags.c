/* operator/flags.c: getopt_long over kubebuilder-style flags. */
#include "operator/flags.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "reconcile/reconcile.h"

enum {
	F_KUBECONFIG = 256,
	F_CONTEXT,
	F_PROFEFE,
	F_METRICS,
	F_HEALTH,
	F_LEADER,
	F_LEASE_NS,
	F_LEASE_NAME,
	F_IDENTITY,
	F_INFLIGHT,
	F_SPOOL_DIR,
	F_SPOOL_MAX,
	F_MAX_PROFILE,
	F_MAX_INFLIGHT_BYTES,
	F_SPREAD,
	F_SHUTDOWN,
	F_ALLOW_CROSS_NS,
	F_ALLOWED_URLS,
	F_LOG_FORMAT,
	F_CHECK,
	F_VERSION,
};

static const struct option longopts[] = {
        {"kubeconfig", required_argument, NULL, F_KUBECONFIG},
        {"context", required_argument, NULL, F_CONTEXT},
        {"namespace", required_argument, NULL, 'n'},
        {"profefe-url", required_argument, NULL, F_PROFEFE},
        {"metrics-bind-address", required_argument, NULL, F_METRICS},
        {"health-probe-bind-address", required_argument, NULL, F_HEALTH},
        {"leader-elect", optional_argument, NULL, F_LEADER},
        {"leader-election-namespace", required_argument, NULL, F_LEASE_NS},
        {"leader-election-id", required_argument, NULL, F_LEASE_NAME},
        {"identity", required_argument, NULL, F_IDENTITY},
        {"max-inflight", required_argument, NULL, F_INFLIGHT},
        {"spool-dir", required_argument, NULL, F_SPOOL_DIR},
        {"spool-max-bytes", required_argument, NULL, F_SPOOL_MAX},
        {"max-profile-bytes", required_argument, NULL, F_MAX_PROFILE},
        {"max-inflight-bytes", required_argument, NULL, F_MAX_INFLIGHT_BYTES},
        {"spread-window", required_argument, NULL, F_SPREAD},
        {"allow-cross-namespace", required_argument, NULL, F_ALLOW_CROSS_NS},
        {"allowed-profefe-urls", required_argument, NULL, F_ALLOWED_URLS},
        {"shutdown-timeout", required_argument, NULL, F_SHUTDOWN},
        {"log-format", required_argument, NULL, F_LOG_FORMAT},
        {"check", no_argument, NULL, F_CHECK},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, F_VERSION},
        {NULL, 0, NULL, 0},
};

void op_flags_usage(FILE *out)
{
	fputs("Usage: profefe-operator [flags]\n"
	      "\n"
	      "Captures pprof profiles from Go pods selected by ProfilingPolicy resources\n"
	      "and stores them in profefe.\n"
	      "\n"
	      "Flags:\n"
	      "  --kubeconfig PATH                  kubeconfig file (default: $KUBECONFIG, "
	      "in-cluster, ~/.kube/config)\n"
	      "  --context NAME                     kubeconfig context to use\n"
	      "  -n, --namespace NS                 watch only this namespace (default: all)\n"
	      "  --profefe-url URL                  profefe collector, e.g. "
	      "http://profefe-collector.profefe:10100\n"
	      "                                     (a policy's spec.profefeURL wins)\n"
	      "  --metrics-bind-address ADDR        /metrics listener (default :8080; 0 disables)\n"
	      "  --health-probe-bind-address ADDR   /healthz and /readyz listener (default :8081; "
	      "0 disables)\n"
	      "  --leader-elect[=true|false]        elect a leader via a Lease; only the leader "
	      "captures\n"
	      "  --leader-election-namespace NS     the Lease's namespace (default: the config's "
	      "namespace)\n"
	      "  --leader-election-id NAME          the Lease's name (default "
	      "profefe-operator-leader)\n"
	      "  --identity ID                      this replica's leader identity (default "
	      "hostname_random)\n"
	      "  --max-inflight N                   captures in flight at once (default 256)\n"
	      "  --spool-dir DIR                    keep undelivered profiles here across "
	      "restarts\n"
	      "                                     (default: in memory)\n"
	      "  --spool-max-bytes SIZE             spool cap, e.g. 512Mi (default 256Mi)\n"
	      "  --max-profile-bytes SIZE           largest profile accepted from a pod (default "
	      "64Mi)\n"
	      "  --max-inflight-bytes SIZE          memory all captures in flight may hold "
	      "together;\n"
	      "                                     past it a capture fails as over_budget "
	      "(default:\n"
	      "                                     twice --max-profile-bytes)\n"
	      "  --allow-cross-namespace NS[,NS]    namespaces whose policies may select pods in\n"
	      "                                     other namespaces (\"*\": every namespace's);\n"
	      "                                     default none: a policy reaches its own "
	      "namespace only\n"
	      "  --allowed-profefe-urls URL[,URL]   values spec.profefeURL may take besides\n"
	      "                                     --profefe-url (\"*\": any); default none\n"
	      "  --spread-window DURATION           spread a round's captures over this window "
	      "(default 10s)\n"
	      "  --shutdown-timeout DURATION        on SIGTERM, wait this long for captures "
	      "(default 15s)\n"
	      "  --log-format text|json             log format (default text)\n"
	      "  -v N                               log verbosity: 0 info, 1+ debug\n"
	      "  --check                            validate flags and configuration, then exit\n"
	      "  -h, --help                         show this help\n"
	      "  --version                          print the version\n",
	      out);
}

/* Parses "512", "64Ki", "256Mi", "1Gi" (Kubernetes quantity suffixes). */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	uint64_t v, mul = 1;

	if (!*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	if (strcmp(end, "Ki") == 0)
		mul = 1ull << 10;
	else if (strcmp(end, "Mi") == 0)
		mul = 1ull << 20;
	else if (strcmp(end, "Gi") == 0)
		mul = 1ull << 30;
	else if (*end)
		return -EINVAL;
	if (v > UINT64_MAX / mul)
		return -EINVAL;
	*out = v * mul;
	return 0;
}

static int parse_duration(const char *s, uint32_t *out)
{
	int64_t ms;

	if (rec_go_duration_ms(s, &ms) != 0 || ms > UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)ms;
	return 0;
}

static int parse_bool(const char *s, int *out)
{
	if (!s || strcmp(s, "true") == 0 || strcmp(s, "1") == 0)
		*out = 1;
	else if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0)
		*out = 0;
	else
		return -EINVAL;
	return 0;
}

/* A comma list whose every item is "*" or passes `ok`. */
static int list_valid(const char *s, int (*ok)(const char *item, size_t n))
{
	const char *end;

	if (!*s)
		return 0;
	for (;; s = end + 1) {
		size_t n;
		end = strchr(s, ',');
		n = end ? (size_t)(end - s) : strlen(s);
		if (n == 0 || !((n == 1 && *s == '*') || ok(s, n)))
			return 0;
		if (!end)
			return 1;
	}
}

/* An RFC 1123 label: what a namespace name is. */
static int ns_ok(const char *s, size_t n)
{
	size_t i;

	if (n > 63 || s[0] == '-' || s[n - 1] == '-')
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return 0;
	return 1;
}

static int url_ok(const char *s, size_t n)
{
	size_t i;

	if (!((n > 7 && strncmp(s, "http://", 7) == 0) ||
	      (n > 8 && strncmp(s, "https://", 8) == 0)))
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			return 0;
	return 1;
}

/* Applies one option; -EINVAL with `err` set when its value is bad. */
static int apply(struct op_flags *f, int c, const char *arg, char *err, size_t errlen)
{
	uint64_t n;
	const char *name = NULL;

	switch (c) {
	case F_KUBECONFIG:
		f->kubeconfig = arg;
		return 0;
	case F_CONTEXT:
		f->context = arg;
		return 0;
	case 'n':
		f->ns = *arg ? arg : NULL;
		return 0;
	case F_PROFEFE:
		f->profefe_url = arg;
		return 0;
	case F_METRICS:
		f->metrics_addr = arg;
		return 0;
	case F_HEALTH:
		f->health_addr = arg;
		return 0;
	case F_LEASE_NS:
		f->lease_ns = arg;
		return 0;
	case F_LEASE_NAME:
		f->lease_name = arg;
		return 0;
	case F_IDENTITY:
		f->identity = arg;
		return 0;
	case F_SPOOL_DIR:
		f->spool_dir = arg;
		return 0;
	case F_CHECK:
		f->check = 1;
		return 0;
	case 'h':
		f->help = 1;
		return 0;
	case F_VERSION:
		f->version = 1;
		return 0;
	case F_LEADER:
		if (parse_bool(arg, &f->leader_elect) == 0)
			return 0;
		name = "--leader-elect";
		break;
	case F_INFLIGHT:
		if (parse_size(arg, &n) == 0 && n >= 1 && n <= 100000) {
			f->max_inflight = (size_t)n;
			return 0;
		}
		name = "--max-inflight (want 1..100000)";
		break;
	case F_SPOOL_MAX:
		if (parse_size(arg, &f->spool_max_bytes) == 0 && f->spool_max_bytes >= 1024)
			return 0;
		name = "--spool-max-bytes (want a size of at least 1Ki, e.g. 256Mi)";
		break;
	case F_MAX_PROFILE:
		if (parse_size(arg, &f->max_profile_bytes) == 0 && f->max_profile_bytes >= 1024)
			return 0;
		name = "--max-profile-bytes (want a size of at least 1Ki, e.g. 64Mi)";
		break;
	case F_MAX_INFLIGHT_BYTES:
		if (parse_size(arg, &f->max_inflight_bytes) == 0 && f->max_inflight_bytes >= 1024) {
			f->max_inflight_bytes_arg = arg;
			return 0;
		}
		name = "--max-inflight-bytes (want a size of at least 1Ki, e.g. 128Mi)";
		break;
	case F_ALLOW_CROSS_NS:
		if (list_valid(arg, ns_ok)) {
			f->allow_cross_ns = arg;
			return 0;
		}
		name = "--allow-cross-namespace (want namespace names separated by commas, or *)";
		break;
	case F_ALLOWED_URLS:
		if (list_valid(arg, url_ok)) {
			f->allowed_urls = arg;
			return 0;
		}
		name = "--allowed-profefe-urls (want http:// or https:// URLs separated by commas, "
		       "or *)";
		break;
	case F_SPREAD:
		if (parse_duration(arg, &f->spread_ms) == 0)
			return 0;
		name = "--spread-window (want a duration, e.g. 10s)";
		break;
	case F_SHUTDOWN:
		if (parse_duration(arg, &f->shutdown_ms) == 0)
			return 0;
		name = "--shutdown-timeout (want a duration, e.g. 15s)";
		break;
	case F_LOG_FORMAT:
		if (strcmp(arg, "json") == 0 || strcmp(arg, "text") == 0) {
			f->log_json = strcmp(arg, "json") == 0;
			return 0;
		}
		name = "--log-format (want text or json)";
		break;
	case 'v':
		if (parse_size(arg, &n) == 0 && n <= 10) {
			f->verbosity = (int)n;
			return 0;
		}
		name = "-v (want 0..10)";
		break;
	default:
		snprintf(err, errlen, "unknown flag; see --help");
		return -EINVAL;
	}
	snprintf(err, errlen, "invalid value \"%s\" for %s", arg ? arg : "", name);
	return -EINVAL;
}

int op_flags_parse(int argc, char **argv, struct op_flags *f, char *err, size_t errlen)
{
	int c, rc;

	memset(f, 0, sizeof(*f));
	f->metrics_addr = ":8080";
	f->health_addr = ":8081";
	f->lease_name = "profefe-operator-leader";
	f->max_inflight = 256;
	f->spool_max_bytes = 256ull << 20;
	f->max_profile_bytes = 64ull << 20;
	f->spread_ms = 10000;
	f->shutdown_ms = 15000;

	optind = 0; /* reset getopt, so tests may parse several times */
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":n:v:h", longopts, NULL)) != -1) {
		if (c == '?') {
			snprintf(err, errlen, "unknown flag %s; see --help", argv[optind - 1]);
			return -EINVAL;
		}
		if (c == ':') {
			snprintf(err, errlen, "flag %s needs a value", argv[optind - 1]);
			return -EINVAL;
		}
		rc = apply(f, c, optarg, err, errlen);
		if (rc)
			return rc;
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument \"%s\"; see --help", argv[optind]);
		return -EINVAL;
	}
	/* Checked after all flags, so that their order does not matter. */
	if (f->max_inflight_bytes != 0 && f->max_inflight_bytes < f->max_profile_bytes) {
		snprintf(err, errlen,
		         "invalid value \"%s\" for --max-inflight-bytes (want at least "
		         "--max-profile-bytes, %" PRIu64 " bytes)",
		         f->max_inflight_bytes_arg, f->max_profile_bytes);
		return -EINVAL;
	}
	if (f->profefe_url && strncmp(f->profefe_url, "http://", 7) != 0 &&
	    strncmp(f->profefe_url, "https://", 8) != 0) {
		snprintf(err, errlen,
		         "invalid value \"%s\" for --profefe-url (want http:// or https://)",
		         f->profefe_url);
		return -EINVAL;
	}
	return 0;
}
