/* reconcile/policy.c: a ProfilingPolicy object (json-c) into struct
 * rec_policy, with DESIGN §2's defaults and one error per problem.
 *
 * The CRD's schema and CEL rules already reject most bad input at the API
 * server; this parser checks everything again (a CRD can be installed at an
 * older version, and kubectl-profefe reads files) plus what CEL cannot
 * judge: cron syntax, the zone, and a CPU duration against the period. */
#include "reconcile/internal.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const reserved_labels[] = {"namespace", "pod",     "node",       "policy",
                                              "container", "version", "pprof_type", NULL};

static struct json_object *get(const struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	if (o && json_object_object_get_ex(o, key, &v) && !json_object_is_type(v, json_type_null))
		return v;
	return NULL;
}

/* Reads an optional string; 1 when present and a string, 0 when absent,
 * -1 (error added) when of another type. */
static int get_str(const struct json_object *o, const char *key, const char *path,
                   struct rec_errs *errs, const char **out)
{
	struct json_object *v = get(o, key);

	if (v == NULL)
		return 0;
	if (!json_object_is_type(v, json_type_string)) {
		rec_errs_add(errs, REC_ERR_SPEC, path, "must be a string");
		return -1;
	}
	*out = json_object_get_string(v);
	return 1;
}

static int get_bool(const struct json_object *o, const char *key, const char *path,
                    struct rec_errs *errs, int *out)
{
	struct json_object *v = get(o, key);

	if (v == NULL)
		return 0;
	if (!json_object_is_type(v, json_type_boolean)) {
		rec_errs_add(errs, REC_ERR_SPEC, path, "must be a boolean");
		return -1;
	}
	*out = json_object_get_boolean(v);
	return 1;
}

/* Reads an optional integer within [min, max]. */
static int get_int(const struct json_object *o, const char *key, const char *path, int64_t min,
                   int64_t max, struct rec_errs *errs, int64_t *out)
{
	struct json_object *v = get(o, key);
	int64_t x;

	if (v == NULL)
		return 0;
	if (!json_object_is_type(v, json_type_int)) {
		rec_errs_add(errs, REC_ERR_SPEC, path, "must be an integer");
		return -1;
	}
	x = json_object_get_int64(v);
	if (x < min || x > max) {
		rec_errs_add(errs, REC_ERR_SPEC, path, "must be between %lld and %lld, got %lld",
		             (long long)min, (long long)max, (long long)x);
		return -1;
	}
	*out = x;
	return 1;
}

static int parse_schedule(struct rec_policy *p, const struct json_object *spec,
                          rec_zone_lookup_fn lookup, void *arg, struct rec_errs *errs)
{
	struct rec_zone *zone = NULL;
	const char *s = NULL, *tz = NULL;
	char err[160];
	int rc, zone_ok = 1;

	if (get_str(spec, "timeZone", "spec.timeZone", errs, &tz) > 0) {
		if ((p->time_zone = strdup(tz)) == NULL)
			return -ENOMEM;
		if (!rec_zone_name_valid(tz)) {
			rec_errs_add(errs, REC_ERR_TIMEZONE, "spec.timeZone",
			             "\"%.64s\" is not an IANA time zone name", tz);
			zone_ok = 0;
		} else if (lookup) {
			rc = lookup(arg, tz, &zone);
			if (rc == -ENOMEM)
				return rc;
			if (rc < 0) {
				rec_errs_add(errs, REC_ERR_TIMEZONE, "spec.timeZone",
				             "unknown time zone \"%.64s\"", tz);
				zone_ok = 0;
			}
		} else if (rec_zone_builtin(tz) == NULL) {
			rec_errs_add(errs, REC_ERR_TIMEZONE, "spec.timeZone",
			             "unknown time zone \"%.64s\"", tz);
			zone_ok = 0;
		}
	}
	rc = get_str(spec, "schedule", "spec.schedule", errs, &s);
	if (rc == 0)
		rec_errs_add(errs, REC_ERR_SCHEDULE, "spec.schedule", "is required");
	if (rc <= 0) {
		rc = 0;
		goto out;
	}
	if ((p->schedule = strdup(s)) == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	rc = rec_schedule_parse(s, zone, &p->sched, err, sizeof(err));
	if (rc == -ENOMEM)
		goto out;
	if (rc < 0)
		rec_errs_add(errs, REC_ERR_SCHEDULE, "spec.schedule", "%s", err);
	if (!zone_ok) {
		rec_schedule_free(p->sched);
		p->sched = NULL;
	}
	rc = 0;
out:
	rec_zone_unref(zone);
	return rc;
}

static int ns_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int parse_ns_selector(struct rec_policy *p, const struct json_object *spec,
                             struct rec_errs *errs)
{
	struct json_object *ns = get(spec, "namespaceSelector"), *names;
	char path[128];
	size_t i, n;

	if (ns == NULL)
		return 0;
	if (!json_object_is_type(ns, json_type_object)) {
		rec_errs_add(errs, REC_ERR_SPEC, "spec.namespaceSelector", "must be an object");
		return 0;
	}
	get_bool(ns, "any", "spec.namespaceSelector.any", errs, &p->ns_selector.any);
	names = get(ns, "matchNames");
	if (names == NULL)
		return 0;
	if (!json_object_is_type(names, json_type_array)) {
		rec_errs_add(errs, REC_ERR_SPEC, "spec.namespaceSelector.matchNames",
		             "must be a list of namespace names");
		return 0;
	}
	n = json_object_array_length(names);
	if (n && p->ns_selector.any)
		rec_errs_add(errs, REC_ERR_SPEC, "spec.namespaceSelector",
		             "any and matchNames are mutually exclusive");
	if (n && (p->ns_selector.names = calloc(n, sizeof(char *))) == NULL)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		struct json_object *v = json_object_array_get_idx(names, i);
		const char *s = json_object_get_string(v);
		snprintf(path, sizeof(path), "spec.namespaceSelector.matchNames[%zu]", i);
		if (!json_object_is_type(v, json_type_string) || !rec__dns_label_valid(s)) {
			rec_errs_add(errs, REC_ERR_SPEC, path,
			             "must be a namespace name (RFC 1123 label)");
			continue;
		}
		if ((p->ns_selector.names[p->ns_selector.n++] = strdup(s)) == NULL)
			return -ENOMEM;
	}
	qsort(p->ns_selector.names, p->ns_selector.n, sizeof(char *), ns_cmp);
	return 0;
}

static void default_profiles(struct rec_policy *p)
{
	p->profiles[0] = (struct rec_profile){PPOP_PT_CPU, REC_DEFAULT_CPU_SECONDS};
	p->profiles[1] = (struct rec_profile){PPOP_PT_HEAP, 0};
	p->profiles[2] = (struct rec_profile){PPOP_PT_GOROUTINE, 0};
	p->nprofiles = 3;
}

static void parse_profile(struct rec_policy *p, const struct json_object *e, size_t i,
                          unsigned *seen, struct rec_errs *errs)
{
	char path[128], spath[128];
	const char *tn = NULL;
	enum ppop_ptype t;
	int64_t secs = 0;
	int has_secs;

	snprintf(path, sizeof(path), "spec.profiles[%zu]", i);
	snprintf(spath, sizeof(spath), "spec.profiles[%zu].seconds", i);
	if (!json_object_is_type(e, json_type_object)) {
		rec_errs_add(errs, REC_ERR_SPEC, path, "must be an object with a type");
		return;
	}
	snprintf(path, sizeof(path), "spec.profiles[%zu].type", i);
	if (get_str(e, "type", path, errs, &tn) == 0)
		rec_errs_add(errs, REC_ERR_SPEC, path, "is required");
	if (tn == NULL)
		return;
	if (ppop_ptype_parse(tn, &t) < 0) {
		rec_errs_add(errs, REC_ERR_SPEC, path,
		             "unsupported value \"%.32s\": must be one of cpu, heap, allocs, "
		             "goroutine, mutex, block, threadcreate",
		             tn);
		return;
	}
	if (*seen & (1u << t)) {
		rec_errs_add(errs, REC_ERR_SPEC, path, "duplicate profile type \"%s\"", tn);
		return;
	}
	*seen |= 1u << t;
	has_secs = get(e, "seconds") != NULL;
	if (has_secs && t != PPOP_PT_CPU) {
		rec_errs_add(errs, REC_ERR_SPEC, spath, "applies only to type cpu");
		return;
	}
	if (t == PPOP_PT_CPU) {
		secs = REC_DEFAULT_CPU_SECONDS;
		get_int(e, "seconds", spath, 1, REC_MAX_CPU_SECONDS, errs, &secs);
		if (p->sched && secs >= rec_schedule_period_s(p->sched))
			rec_errs_add(errs, REC_ERR_SPEC, spath,
			             "%llds must be shorter than the schedule's period (%llds)",
			             (long long)secs, (long long)rec_schedule_period_s(p->sched));
	}
	p->profiles[p->nprofiles++] = (struct rec_profile){t, (int32_t)secs};
}

static void parse_profiles(struct rec_policy *p, const struct json_object *spec,
                           struct rec_errs *errs)
{
	struct json_object *arr = get(spec, "profiles");
	unsigned seen = 0;
	size_t i, n;

	if (arr == NULL) {
		default_profiles(p);
		if (p->sched && REC_DEFAULT_CPU_SECONDS >= rec_schedule_period_s(p->sched))
			rec_errs_add(errs, REC_ERR_SPEC, "spec.profiles",
			             "the default cpu profile (%ds) must be shorter than the "
			             "schedule's period (%llds); list profiles explicitly",
			             REC_DEFAULT_CPU_SECONDS,
			             (long long)rec_schedule_period_s(p->sched));
		return;
	}
	if (!json_object_is_type(arr, json_type_array)) {
		rec_errs_add(errs, REC_ERR_SPEC, "spec.profiles", "must be a list");
		return;
	}
	n = json_object_array_length(arr);
	if (n == 0)
		rec_errs_add(errs, REC_ERR_SPEC, "spec.profiles", "must list at least one profile");
	for (i = 0; i < n; i++) /* duplicates are refused, so at most 7 are kept */
		parse_profile(p, json_object_array_get_idx(arr, i), i, &seen, errs);
}

static int parse_labels(struct rec_policy *p, const struct json_object *spec, struct rec_errs *errs)
{
	struct json_object *l = get(spec, "labels");
	struct ppop_kv pairs[REC_MAX_LABELS];
	char path[128];
	size_t n = 0, i;

	if (l == NULL)
		return 0;
	if (!json_object_is_type(l, json_type_object)) {
		rec_errs_add(errs, REC_ERR_SPEC, "spec.labels", "must be an object of key: value");
		return 0;
	}
	if (json_object_object_length(l) > REC_MAX_LABELS) {
		rec_errs_add(errs, REC_ERR_SPEC, "spec.labels", "must have at most %d entries",
		             REC_MAX_LABELS);
		return 0;
	}
	json_object_object_foreach((struct json_object *)l, key, val)
	{
		snprintf(path, sizeof(path), "spec.labels.%.100s", key);
		if (!rec__label_key_valid(key)) {
			rec_errs_add(errs, REC_ERR_SPEC, path, "is not a valid label key");
			continue;
		}
		for (i = 0; reserved_labels[i]; i++)
			if (strcmp(key, reserved_labels[i]) == 0)
				break;
		if (reserved_labels[i]) {
			rec_errs_add(errs, REC_ERR_SPEC, path, "is reserved: the operator sets it");
			continue;
		}
		if (!json_object_is_type(val, json_type_string) ||
		    strlen(json_object_get_string(val)) > 253) {
			rec_errs_add(errs, REC_ERR_SPEC, path,
			             "must be a string of at most 253 bytes");
			continue;
		}
		pairs[n].key = key;
		pairs[n++].value = json_object_get_string(val);
	}
	return rec__kvs_build(&p->labels, pairs, n);
}

static int path_valid(const char *s)
{
	if (s[0] != '/' || strlen(s) > 200)
		return 0;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == '?' || *s == '#' || *s == '%' || *s == 0x7f)
			return 0;
	return 1;
}

static int url_valid(const char *s)
{
	size_t n = strlen(s);
	const char *host;

	if (n > 2048)
		return 0;
	if (strncmp(s, "http://", 7) == 0)
		host = s + 7;
	else if (strncmp(s, "https://", 8) == 0)
		host = s + 8;
	else
		return 0;
	if (*host == '\0' || *host == '/')
		return 0;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f)
			return 0;
	return 1;
}

/* The plain scalar fields: suspend, podAnnotationRequired, port, path,
 * scheme, timeoutSeconds, service, profefeURL. */
static int parse_scalars(struct rec_policy *p, const struct json_object *spec,
                         struct rec_errs *errs)
{
	const char *s;
	int64_t v;

	get_bool(spec, "suspend", "spec.suspend", errs, &p->suspend);
	get_bool(spec, "podAnnotationRequired", "spec.podAnnotationRequired", errs,
	         &p->pod_annotation_required);
	if (get_int(spec, "port", "spec.port", 1, 65535, errs, &v) > 0)
		p->port = (int)v;
	if (get_int(spec, "timeoutSeconds", "spec.timeoutSeconds", 1, REC_MAX_TIMEOUT_S, errs, &v) >
	    0)
		p->timeout_seconds = (int)v;
	s = REC_DEFAULT_PATH;
	if (get_str(spec, "path", "spec.path", errs, &s) > 0 && !path_valid(s)) {
		rec_errs_add(errs, REC_ERR_SPEC, "spec.path",
		             "must start with '/' and hold no spaces, '?', '#' or '%%'");
		s = REC_DEFAULT_PATH;
	}
	if ((p->path = strdup(s)) == NULL)
		return -ENOMEM;
	for (size_t n = strlen(p->path); n > 0 && p->path[n - 1] == '/'; n--)
		p->path[n - 1] = '\0';
	if (get_str(spec, "scheme", "spec.scheme", errs, &s) > 0) {
		if (strcmp(s, "https") == 0)
			p->scheme = REC_SCHEME_HTTPS;
		else if (strcmp(s, "http") != 0)
			rec_errs_add(errs, REC_ERR_SPEC, "spec.scheme",
			             "unsupported value \"%.16s\": must be http or https", s);
	}
	if (get_str(spec, "service", "spec.service", errs, &s) > 0 && s[0]) {
		if (strlen(s) > 253)
			rec_errs_add(errs, REC_ERR_SPEC, "spec.service",
			             "must be at most 253 bytes");
		else if ((p->service = strdup(s)) == NULL)
			return -ENOMEM;
	}
	if (get_str(spec, "profefeURL", "spec.profefeURL", errs, &s) > 0 && s[0]) {
		if (!url_valid(s))
			rec_errs_add(errs, REC_ERR_SPEC, "spec.profefeURL",
			             "must be an http:// or https:// URL with a host");
		else if ((p->profefe_url = strdup(s)) == NULL)
			return -ENOMEM;
	}
	return 0;
}

static int parse_metadata(struct rec_policy *p, const struct json_object *obj)
{
	struct json_object *md = get(obj, "metadata"), *v;
	const char *ns = "", *name = NULL, *uid = "";
	int has_ns;

	if (md == NULL || get_str(md, "name", "", NULL, &name) <= 0 || !name[0])
		return -EINVAL;
	has_ns = get_str(md, "namespace", "", NULL, &ns) > 0 && ns[0];
	if (has_ns == p->cluster)
		return -EINVAL; /* not the scope its resource has */
	get_str(md, "uid", "", NULL, &uid);
	if ((v = get(md, "generation")) && json_object_is_type(v, json_type_int))
		p->generation = json_object_get_int64(v);
	p->ns = strdup(ns);
	p->name = strdup(name);
	p->uid = strdup(uid);
	return p->ns && p->name && p->uid ? 0 : -ENOMEM;
}

static int parse(const struct json_object *obj, int cluster, rec_zone_lookup_fn lookup,
                 void *lookup_arg, struct rec_policy **out, struct rec_errs *errs)
{
	struct rec_policy *p = calloc(1, sizeof(*p));
	struct json_object *spec;
	size_t before = errs->n + errs->dropped;
	int rc;

	if (p == NULL)
		return -ENOMEM;
	p->cluster = cluster;
	p->pod_annotation_required = 1;
	p->port = REC_DEFAULT_PORT;
	p->timeout_seconds = REC_DEFAULT_TIMEOUT_S;
	if (!json_object_is_type(obj, json_type_object)) {
		rc = -EINVAL;
		goto out_free;
	}
	if ((rc = parse_metadata(p, obj)) < 0)
		goto out_free;
	spec = get(obj, "spec");
	if (spec == NULL || !json_object_is_type(spec, json_type_object)) {
		rec_errs_add(errs, REC_ERR_SCHEDULE, "spec", "is required and must be an object");
		spec = NULL;
	}
	if ((rc = parse_schedule(p, spec, lookup, lookup_arg, errs)) < 0 ||
	    (rc = rec_selector_parse(get(spec, "selector"), "spec.selector", &p->selector, errs)) ==
	            -ENOMEM ||
	    (rc = parse_ns_selector(p, spec, errs)) < 0 ||
	    (rc = parse_scalars(p, spec, errs)) < 0 || (rc = parse_labels(p, spec, errs)) < 0)
		goto out_free;
	parse_profiles(p, spec, errs);
	/* A cluster policy has no namespace of its own to default to. */
	if (p->cluster && p->ns_selector.n == 0)
		p->ns_selector.any = 1;
	p->valid = errs->n + errs->dropped == before;
	*out = p;
	return 0;
out_free:
	rec_policy_free(p);
	return rc;
}

int rec_policy_parse(const struct json_object *obj, rec_zone_lookup_fn lookup, void *lookup_arg,
                     struct rec_policy **out, struct rec_errs *errs)
{
	return parse(obj, 0, lookup, lookup_arg, out, errs);
}

int rec_cluster_policy_parse(const struct json_object *obj, rec_zone_lookup_fn lookup,
                             void *lookup_arg, struct rec_policy **out, struct rec_errs *errs)
{
	return parse(obj, 1, lookup, lookup_arg, out, errs);
}

void rec_policy_free(struct rec_policy *p)
{
	size_t i;

	if (p == NULL)
		return;
	free(p->ns);
	free(p->name);
	free(p->uid);
	free(p->schedule);
	free(p->time_zone);
	rec_selector_free(&p->selector);
	for (i = 0; i < p->ns_selector.n; i++)
		free(p->ns_selector.names[i]);
	free(p->ns_selector.names);
	free(p->path);
	free(p->service);
	rec_kvs_free(&p->labels);
	free(p->profefe_url);
	rec_schedule_free(p->sched);
	free(p);
}
