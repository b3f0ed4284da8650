/* kubectl-profefe/cli.c: the command line, as a kubectl user expects it.
 *
 * kubectl (spf13/pflag) takes flags anywhere among the arguments, in the
 * forms --flag=v, --flag v, -n v, -nv and -n=v, and stops at "--". We do
 * the same with one table of flags, each valid for a set of commands, so a
 * flag a command does not use is an error rather than silently ignored.
 */
#include "kubectl-profefe/kp.h"

#include "capture/capture.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define C(x)     (1u << (x))
#define ALL_CMDS 0xffffu
#define PF_CMDS                                                                                    \
	(C(KP_CMD_CAPTURE) | C(KP_CMD_GET_PROFILES) | C(KP_CMD_GET_SERVICES) | C(KP_CMD_LOAD) |    \
	 C(KP_CMD_PPROF) | C(KP_CMD_MERGE))
#define RANGE_CMDS (C(KP_CMD_GET_PROFILES) | C(KP_CMD_MERGE))

enum opt_id {
	O_HELP,
	O_KUBECONFIG,
	O_CONTEXT,
	O_NAMESPACE,
	O_ALL_NS,
	O_SELECTOR,
	O_REQ_TIMEOUT,
	O_PROFEFE_URL,
	O_SERVICE,
	O_TYPE,
	O_FROM,
	O_TO,
	O_LIMIT,
	O_SECONDS,
	O_OUTPUT_DIR,
	O_IGNORE_ANN,
	O_VIA_API,
	O_OUTPUT,
};

struct optdef {
	const char *lng;
	char shrt;
	int takes_value;
	unsigned cmds; /* bit per enum kp_cmd where the flag is valid */
	enum opt_id id;
};

/* kubectl's global flags are accepted by every command, as kubectl does. */
static const struct optdef opts_table[] = {
        {"help", 'h', 0, ALL_CMDS, O_HELP},
        {"kubeconfig", 0, 1, ALL_CMDS, O_KUBECONFIG},
        {"context", 0, 1, ALL_CMDS, O_CONTEXT},
        {"namespace", 'n', 1, ALL_CMDS, O_NAMESPACE},
        {"all-namespaces", 'A', 0, ALL_CMDS, O_ALL_NS},
        {"request-timeout", 0, 1, ALL_CMDS, O_REQ_TIMEOUT},
        {"selector", 'l', 1, C(KP_CMD_CAPTURE) | RANGE_CMDS | C(KP_CMD_LOAD), O_SELECTOR},
        {"profefe-url", 0, 1, PF_CMDS, O_PROFEFE_URL},
        {"service", 0, 1, RANGE_CMDS | C(KP_CMD_LOAD), O_SERVICE},
        {"type", 0, 1, C(KP_CMD_CAPTURE) | RANGE_CMDS | C(KP_CMD_LOAD), O_TYPE},
        {"from", 0, 1, RANGE_CMDS, O_FROM},
        {"to", 0, 1, RANGE_CMDS, O_TO},
        {"limit", 0, 1, C(KP_CMD_GET_PROFILES), O_LIMIT},
        {"seconds", 0, 1, C(KP_CMD_CAPTURE), O_SECONDS},
        {"output-dir", 0, 1, C(KP_CMD_CAPTURE), O_OUTPUT_DIR},
        {"ignore-annotation", 0, 0, C(KP_CMD_CAPTURE), O_IGNORE_ANN},
        {"via-apiserver", 0, 0, C(KP_CMD_CAPTURE), O_VIA_API},
        {"output", 'o', 1,
         C(KP_CMD_GET_PROFILES) | C(KP_CMD_GET_SERVICES) | C(KP_CMD_PPROF) | C(KP_CMD_MERGE),
         O_OUTPUT},
};
#define NOPTS (sizeof(opts_table) / sizeof(opts_table[0]))

static const char *const cmd_names[KP_CMD__COUNT] = {
        [KP_CMD_NONE] = "",
        [KP_CMD_CAPTURE] = "capture",
        [KP_CMD_GET_PROFILES] = "get profiles",
        [KP_CMD_GET_SERVICES] = "get services",
        [KP_CMD_LOAD] = "load",
        [KP_CMD_PPROF] = "pprof",
        [KP_CMD_MERGE] = "merge",
        [KP_CMD_VERSION] = "version",
};

const char *kp_cmd_name(enum kp_cmd cmd)
{
	return cmd < KP_CMD__COUNT ? cmd_names[cmd] : "";
}

/* One flag as seen on the command line, kept until the command is known. */
struct seen {
	const struct optdef *def;
	const char *value;
	const char *spelled; /* as typed, e.g. "-n" or "--namespace", for messages */
};

static const struct optdef *find_long(const char *name, size_t len)
{
	for (size_t i = 0; i < NOPTS; i++)
		if (strlen(opts_table[i].lng) == len && strncmp(opts_table[i].lng, name, len) == 0)
			return &opts_table[i];
	return NULL;
}

static const struct optdef *find_short(char c)
{
	for (size_t i = 0; i < NOPTS; i++)
		if (opts_table[i].shrt == c)
			return &opts_table[i];
	return NULL;
}

static void errf(char *err, size_t errlen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Splits argv into flags and positional words. Returns 0 or -EINVAL. */
static int scan(int argc, char **argv, struct seen *seen, size_t *nseen, char **pos, size_t *npos,
                char *err, size_t errlen)
{
	int i, dashdash = 0;

	for (i = 1; i < argc; i++) {
		char *a = argv[i];
		const struct optdef *d;
		const char *val = NULL;

		if (dashdash || a[0] != '-' || a[1] == '\0') {
			pos[(*npos)++] = a;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			dashdash = 1;
			continue;
		}
		if (a[1] == '-') {
			const char *eq = strchr(a + 2, '=');
			size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);

			d = find_long(a + 2, len);
			if (d == NULL) {
				errf(err, errlen, "unknown flag: --%.*s", (int)len, a + 2);
				return -EINVAL;
			}
			if (eq && !d->takes_value) {
				if (strcmp(eq + 1, "true") && strcmp(eq + 1, "false")) {
					errf(err, errlen,
					     "invalid value \"%s\" for --%s: want true or false",
					     eq + 1, d->lng);
					return -EINVAL;
				}
				if (strcmp(eq + 1, "false") == 0)
					continue;
			}
			val = eq ? eq + 1 : NULL;
		} else {
			d = find_short(a[1]);
			if (d == NULL) {
				errf(err, errlen, "unknown shorthand flag: '%c' in %s", a[1], a);
				return -EINVAL;
			}
			if (a[2] != '\0') {
				if (!d->takes_value) {
					errf(err, errlen, "flag -%c takes no value (in %s)", a[1],
					     a);
					return -EINVAL;
				}
				val = a[2] == '=' ? a + 3 : a + 2;
			}
		}
		if (d->takes_value && val == NULL) {
			if (i + 1 >= argc) {
				errf(err, errlen, "flag needs an argument: %s", a);
				return -EINVAL;
			}
			val = argv[++i];
		}
		seen[*nseen] = (struct seen){d, val, a};
		(*nseen)++;
	}
	return 0;
}

/* Finds the command in the positional words; the rest become o->args. */
static int pick_command(char **pos, size_t npos, struct kp_opts *o, int *help_cmd, char *err,
                        size_t errlen)
{
	size_t first = 1;

	*help_cmd = 0;
	if (npos == 0)
		return 0;
	if (strcmp(pos[0], "help") == 0) {
		*help_cmd = 1;
		pos++;
		npos--;
		if (npos == 0)
			return 0;
	}
	if (strcmp(pos[0], "capture") == 0)
		o->cmd = KP_CMD_CAPTURE;
	else if (strcmp(pos[0], "load") == 0)
		o->cmd = KP_CMD_LOAD;
	else if (strcmp(pos[0], "pprof") == 0)
		o->cmd = KP_CMD_PPROF;
	else if (strcmp(pos[0], "merge") == 0)
		o->cmd = KP_CMD_MERGE;
	else if (strcmp(pos[0], "version") == 0)
		o->cmd = KP_CMD_VERSION;
	else if (strcmp(pos[0], "get") == 0) {
		const char *r = npos > 1 ? pos[1] : NULL;

		first = 2;
		if (r && (!strcmp(r, "profiles") || !strcmp(r, "profile")))
			o->cmd = KP_CMD_GET_PROFILES;
		else if (r && (!strcmp(r, "services") || !strcmp(r, "service")))
			o->cmd = KP_CMD_GET_SERVICES;
		else if (*help_cmd && r == NULL)
			o->cmd = KP_CMD_GET_PROFILES;
		else {
			errf(err, errlen, "get needs a resource: profiles or services%s%s%s",
			     r ? " (not \"" : "", r ? r : "", r ? "\")" : "");
			return -EINVAL;
		}
	} else {
		errf(err, errlen, "unknown command \"%s\" for kubectl profefe (try -h)", pos[0]);
		return -EINVAL;
	}
	for (size_t i = first; i < npos; i++)
		o->args[o->nargs++] = pos[i];
	return 0;
}

static int parse_uint(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if (s == NULL || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Adds one capture --type value, which may be a comma-separated list. */
static int add_capture_types(struct kp_opts *o, const char *v, char *err, size_t errlen)
{
	char buf[256];
	char *save = NULL, *tok;

	if (strlen(v) >= sizeof(buf) || v[0] == '\0') {
		errf(err, errlen, "invalid --type \"%.64s\"", v);
		return -EINVAL;
	}
	memcpy(buf, v, strlen(v) + 1);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		enum ppop_ptype t;
		size_t i;

		if (ppop_ptype_parse(tok, &t) < 0) {
			errf(err, errlen,
			     "invalid --type \"%s\": want cpu, heap, allocs, goroutine, mutex, "
			     "block "
			     "or threadcreate",
			     tok);
			return -EINVAL;
		}
		for (i = 0; i < o->ntypes && o->types[i] != t; i++)
			;
		if (i == o->ntypes)
			o->types[o->ntypes++] = t;
	}
	return 0;
}

/* Applies one flag that the command accepts. */
static int apply(struct kp_opts *o, const struct seen *s, char *err, size_t errlen)
{
	long v;

	switch (s->def->id) {
	case O_HELP:
		o->help = 1;
		break;
	case O_KUBECONFIG:
		o->kubeconfig = s->value;
		break;
	case O_CONTEXT:
		o->context = s->value;
		break;
	case O_NAMESPACE:
		if (s->value[0] == '\0') {
			errf(err, errlen, "%s needs a namespace name", s->spelled);
			return -EINVAL;
		}
		o->ns = s->value;
		break;
	case O_ALL_NS:
		o->all_ns = 1;
		break;
	case O_SELECTOR:
		o->selector = s->value;
		break;
	case O_REQ_TIMEOUT:
		if (kp_parse_timeout(s->value, &o->request_timeout_ms) < 0) {
			errf(err, errlen,
			     "invalid --request-timeout \"%s\": want a duration such as 30s or 1m, "
			     "or 0",
			     s->value);
			return -EINVAL;
		}
		break;
	case O_PROFEFE_URL:
		if (strncmp(s->value, "http://", 7) && strncmp(s->value, "https://", 8)) {
			errf(err, errlen, "invalid --profefe-url \"%s\": want http://HOST:PORT",
			     s->value);
			return -EINVAL;
		}
		o->profefe_url = s->value;
		break;
	case O_SERVICE:
		o->service = s->value;
		break;
	case O_TYPE:
		if (o->cmd == KP_CMD_CAPTURE)
			return add_capture_types(o, s->value, err, errlen);
		if (o->type) {
			errf(err, errlen, "--type may be given once for %s", kp_cmd_name(o->cmd));
			return -EINVAL;
		}
		o->type = s->value;
		break;
	case O_FROM:
		o->from = s->value;
		break;
	case O_TO:
		o->to = s->value;
		break;
	case O_LIMIT:
		if (parse_uint(s->value, 1, 1000000, &v) < 0) {
			errf(err, errlen, "invalid --limit \"%s\": want a positive integer",
			     s->value);
			return -EINVAL;
		}
		o->limit = (unsigned)v;
		break;
	case O_SECONDS:
		if (parse_uint(s->value, 1, REC_MAX_CPU_SECONDS, &v) < 0) {
			errf(err, errlen, "invalid --seconds \"%s\": want an integer from 1 to %d",
			     s->value, REC_MAX_CPU_SECONDS);
			return -EINVAL;
		}
		o->seconds = (int)v;
		break;
	case O_OUTPUT_DIR:
		if (s->value[0] == '\0') {
			errf(err, errlen, "--output-dir needs a directory");
			return -EINVAL;
		}
		o->output_dir = s->value;
		break;
	case O_IGNORE_ANN:
		o->ignore_annotation = 1;
		break;
	case O_VIA_API:
		o->via_apiserver = 1;
		break;
	case O_OUTPUT:
		o->output = s->value;
		break;
	}
	return 0;
}

/* The profefe type given with --type, if any, must be one profefe knows:
 * a pprof type other than allocs (load also takes allocs, stored as
 * heap), or "other". */
static int validate_type(const struct kp_opts *o, char *err, size_t errlen)
{
	enum ppop_ptype t;

	if (o->type == NULL || strcmp(o->type, ppop_ptype_name(PPOP_PT_OTHER)) == 0)
		return 0;
	if (ppop_ptype_parse(o->type, &t) == 0 && (t != PPOP_PT_ALLOCS || o->cmd == KP_CMD_LOAD))
		return 0;
	errf(err, errlen,
	     "invalid --type \"%s\": want cpu, heap, block, mutex, goroutine, threadcreate or "
	     "other%s",
	     o->type, o->cmd == KP_CMD_LOAD ? " (or allocs)" : "");
	return -EINVAL;
}

/* capture: pods by name or selector, one sink, and the defaults. */
static int validate_capture(struct kp_opts *o, char *err, size_t errlen)
{
	if (o->all_ns && o->nargs > 0) {
		errf(err, errlen,
		     "a pod cannot be chosen by name across all namespaces (drop -A, "
		     "or use -l)");
		return -EINVAL;
	}
	if (o->nargs > 0 && o->selector) {
		errf(err, errlen, "choose pods by name or by -l selector, not both");
		return -EINVAL;
	}
	if (o->output_dir && o->profefe_url) {
		errf(err, errlen, "--output-dir and --profefe-url exclude each other");
		return -EINVAL;
	}
	if (o->ntypes == 0) {
		o->types[o->ntypes++] = PPOP_PT_CPU;
		o->types[o->ntypes++] = PPOP_PT_HEAP;
		o->types[o->ntypes++] = PPOP_PT_GOROUTINE;
	}
	if (o->seconds == 0)
		o->seconds = REC_DEFAULT_CPU_SECONDS;
	return 0;
}

/* get profiles / get services: no arguments, a known -o, and a service. */
static int validate_get(struct kp_opts *o, char *err, size_t errlen)
{
	static const struct {
		const char *name;
		enum kp_fmt fmt;
	} fmts[] = {{"", KP_FMT_TABLE},
	            {"wide", KP_FMT_WIDE},
	            {"json", KP_FMT_JSON},
	            {"yaml", KP_FMT_YAML}};
	size_t i;

	if (o->nargs > 0) {
		errf(err, errlen, "unexpected argument \"%s\" for %s", o->args[0],
		     kp_cmd_name(o->cmd));
		return -EINVAL;
	}
	for (i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++)
		if (strcmp(o->output ? o->output : "", fmts[i].name) == 0)
			break;
	if (i == sizeof(fmts) / sizeof(fmts[0])) {
		errf(err, errlen,
		     "unable to match a printer for -o \"%s\": want json, yaml or wide", o->output);
		return -EINVAL;
	}
	o->fmt = fmts[i].fmt;
	if (o->cmd == KP_CMD_GET_PROFILES && (o->service == NULL || !o->service[0])) {
		errf(err, errlen,
		     "get profiles needs --service (see kubectl profefe get services)");
		return -EINVAL;
	}
	return 0;
}

/* load, pprof and merge: what each must be given. */
static int validate_transfer(const struct kp_opts *o, char *err, size_t errlen)
{
	int has_service = o->service && o->service[0];

	if (o->cmd == KP_CMD_LOAD && o->nargs == 0) {
		errf(err, errlen, "load needs at least one FILE");
		return -EINVAL;
	}
	if (o->cmd == KP_CMD_LOAD && !has_service) {
		errf(err, errlen, "load needs --service, the profefe service to store under");
		return -EINVAL;
	}
	if (o->cmd == KP_CMD_PPROF && o->nargs == 0) {
		errf(err, errlen,
		     "pprof needs at least one profile ID (see kubectl profefe get "
		     "profiles)");
		return -EINVAL;
	}
	for (size_t i = 0; o->cmd == KP_CMD_PPROF && i < o->nargs; i++)
		if (o->args[i][0] == '\0' || strpbrk(o->args[i], "+/?#% ")) {
			errf(err, errlen, "invalid profile ID \"%s\"", o->args[i]);
			return -EINVAL;
		}
	if (o->cmd == KP_CMD_MERGE && o->nargs > 0) {
		errf(err, errlen,
		     "unexpected argument \"%s\" for merge (to merge IDs, use pprof "
		     "ID...)",
		     o->args[0]);
		return -EINVAL;
	}
	if (o->cmd == KP_CMD_MERGE && (!has_service || o->type == NULL)) {
		errf(err, errlen, "merge needs --service and --type");
		return -EINVAL;
	}
	return 0;
}

/* Checks what only makes sense once every flag is known. */
static int validate(struct kp_opts *o, char *err, size_t errlen)
{
	if (validate_type(o, err, errlen) < 0)
		return -EINVAL;
	switch (o->cmd) {
	case KP_CMD_CAPTURE:
		return validate_capture(o, err, errlen);
	case KP_CMD_GET_PROFILES:
	case KP_CMD_GET_SERVICES:
		return validate_get(o, err, errlen);
	case KP_CMD_LOAD:
	case KP_CMD_PPROF:
	case KP_CMD_MERGE:
		return validate_transfer(o, err, errlen);
	default:
		return 0;
	}
}

int kp_parse_args(int argc, char **argv, struct kp_opts *o, char *err, size_t errlen)
{
	struct seen *seen = NULL;
	char **pos = NULL;
	size_t nseen = 0, npos = 0;
	int help_cmd = 0, rc = -ENOMEM;

	memset(o, 0, sizeof(*o));
	if (argc < 1)
		argc = 1;
	seen = calloc((size_t)argc, sizeof(*seen));
	pos = calloc((size_t)argc, sizeof(*pos));
	o->args = calloc((size_t)argc, sizeof(*o->args));
	if (!seen || !pos || !o->args) {
		errf(err, errlen, "out of memory");
		goto out;
	}
	rc = scan(argc, argv, seen, &nseen, pos, &npos, err, errlen);
	if (rc == 0)
		rc = pick_command(pos, npos, o, &help_cmd, err, errlen);
	if (rc)
		goto out;
	for (size_t i = 0; i < nseen; i++) {
		if (!(seen[i].def->cmds & C(o->cmd))) {
			if (o->cmd == KP_CMD_NONE)
				errf(err, errlen, "flag %s needs a command first (try -h)",
				     seen[i].spelled);
			else
				errf(err, errlen,
				     "unknown flag %s for \"%s\" (try kubectl profefe %s -h)",
				     seen[i].spelled, kp_cmd_name(o->cmd), kp_cmd_name(o->cmd));
			rc = -EINVAL;
			goto out;
		}
		if ((rc = apply(o, &seen[i], err, errlen)) < 0)
			goto out;
	}
	if (help_cmd)
		o->help = 1;
	if (!o->help)
		rc = validate(o, err, errlen);
out:
	free(seen);
	free(pos);
	if (rc) {
		free(o->args);
		o->args = NULL;
		o->nargs = 0;
	}
	return rc;
}

void kp_opts_free(struct kp_opts *o)
{
	free(o->args);
	o->args = NULL;
	o->nargs = 0;
}

const char *kp_namespace(const struct kp_opts *o, const char *ctx_ns)
{
	if (o->ns && o->ns[0])
		return o->ns;
	if (ctx_ns && ctx_ns[0])
		return ctx_ns;
	return "default";
}

int kp_parse_time_arg(const char *s, int64_t now_ms, int64_t *out_ms)
{
	int64_t d;
	char buf[64];
	size_t n;

	if (s == NULL || s[0] == '\0')
		return -EINVAL;
	if (strcmp(s, "now") == 0) {
		*out_ms = now_ms;
		return 0;
	}
	if (s[0] == '-' || s[0] == '+' || !isdigit((unsigned char)s[0]) || strchr(s, 'T') == NULL) {
		const char *p = s[0] == '-' || s[0] == '+' ? s + 1 : s;

		if (rec_go_duration_ms(p, &d) < 0)
			return -EINVAL;
		*out_ms = s[0] == '+' ? now_ms + d : now_ms - d;
		return 0;
	}
	if (rec_time_parse(s, out_ms) == 0)
		return 0;
	/* profefe's own zone-less format, read as UTC */
	n = strlen(s);
	if (n == 19 && n + 2 <= sizeof(buf)) {
		memcpy(buf, s, n);
		buf[n] = 'Z';
		buf[n + 1] = '\0';
		return rec_time_parse(buf, out_ms) == 0 ? 0 : -EINVAL;
	}
	return -EINVAL;
}

int kp_parse_timeout(const char *s, int64_t *out_ms)
{
	long v;

	if (s == NULL || s[0] == '\0')
		return -EINVAL;
	if (parse_uint(s, 0, 86400 * 365, &v) == 0) {
		*out_ms = (int64_t)v * 1000;
		return 0;
	}
	return rec_go_duration_ms(s, out_ms);
}

int kp_labels_arg(const char *s, char **out, char *err, size_t errlen)
{
	struct ppop_kv *labels = NULL;
	char *copy, *save = NULL, *tok;
	size_t n = 0, max = 1;
	int rc = -EINVAL;

	*out = NULL;
	if (s == NULL)
		s = "";
	for (const char *p = s; *p; p++)
		max += *p == ',';
	copy = strdup(s);
	labels = calloc(max, sizeof(*labels));
	if (!copy || !labels) {
		rc = -ENOMEM;
		goto out;
	}
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');

		if (eq == NULL || eq == tok) {
			errf(err, errlen, "invalid label \"%s\": want key=value", tok);
			goto out;
		}
		*eq = '\0';
		labels[n++] = (struct ppop_kv){tok, eq + 1};
	}
	*out = ppop_labels_encode(labels, n);
	rc = *out ? 0 : -ENOMEM;
out:
	free(labels);
	free(copy);
	return rc;
}
