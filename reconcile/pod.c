/* reconcile/pod.c: the compact pod, selection, and capture targets
 * (DESIGN §3-§4). */
#include "common/common.h"
#include "reconcile/internal.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POD_MAX_PAIRS 256 /* labels or annotations kept per pod */
#define POD_STRS      9

static struct json_object *get(const struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	if (o && json_object_object_get_ex(o, key, &v) && !json_object_is_type(v, json_type_null))
		return v;
	return NULL;
}

static const char *get_s(const struct json_object *o, const char *key)
{
	struct json_object *v = get(o, key);

	return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
}

/* The strings of a pod before they are packed into one block. */
struct pod_src {
	const char *str[POD_STRS]; /* ns name uid node ip okind oname container image */
	struct ppop_kv labels[POD_MAX_PAIRS], ann[POD_MAX_PAIRS];
	size_t nlabels, nann;
	enum rec_pod_phase phase;
	int ready;
};

static int kv_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ppop_kv *)a)->key, ((const struct ppop_kv *)b)->key);
}

static void collect_meta(struct pod_src *s, const struct json_object *md, const char **defc)
{
	struct json_object *labels = get(md, "labels"), *ann = get(md, "annotations");
	struct json_object *owners = get(md, "ownerReferences");
	size_t i, n;

	if (json_object_is_type(labels, json_type_object)) {
		json_object_object_foreach((struct json_object *)labels, k, v)
		{
			if (s->nlabels < POD_MAX_PAIRS && json_object_is_type(v, json_type_string))
				s->labels[s->nlabels++] =
				        (struct ppop_kv){k, json_object_get_string(v)};
		}
	}
	if (json_object_is_type(ann, json_type_object)) {
		json_object_object_foreach((struct json_object *)ann, k, v)
		{
			if (!json_object_is_type(v, json_type_string))
				continue;
			if (strcmp(k, "kubectl.kubernetes.io/default-container") == 0)
				*defc = json_object_get_string(v);
			if (strncmp(k, "profefe.com/", 12) == 0 && s->nann < POD_MAX_PAIRS)
				s->ann[s->nann++] = (struct ppop_kv){k, json_object_get_string(v)};
		}
	}
	n = json_object_is_type(owners, json_type_array) ? json_object_array_length(owners) : 0;
	for (i = 0; i < n; i++) {
		struct json_object *o = json_object_array_get_idx(owners, i),
		                   *c = get(o, "controller");
		if (i == 0 ||
		    (json_object_is_type(c, json_type_boolean) && json_object_get_boolean(c))) {
			s->str[5] = get_s(o, "kind");
			s->str[6] = get_s(o, "name");
		}
	}
}

static void collect_spec_status(struct pod_src *s, const struct json_object *spec,
                                const struct json_object *st, const char *defc)
{
	static const char *const phases[] = {"Pending", "Running", "Succeeded", "Failed"};
	struct json_object *cs = get(spec, "containers"), *conds = get(st, "conditions");
	const char *phase = get_s(st, "phase");
	size_t i, n;

	s->str[3] = get_s(spec, "nodeName");
	s->str[4] = get_s(st, "podIP");
	n = json_object_is_type(cs, json_type_array) ? json_object_array_length(cs) : 0;
	for (i = 0; i < n; i++) {
		struct json_object *c = json_object_array_get_idx(cs, i);
		if (i == 0 || (defc && strcmp(get_s(c, "name"), defc) == 0)) {
			s->str[7] = get_s(c, "name");
			s->str[8] = get_s(c, "image");
		}
	}
	s->phase = REC_POD_UNKNOWN;
	for (i = 0; i < 4; i++)
		if (strcmp(phase, phases[i]) == 0)
			s->phase = (enum rec_pod_phase)i;
	n = json_object_is_type(conds, json_type_array) ? json_object_array_length(conds) : 0;
	for (i = 0; i < n; i++) {
		struct json_object *c = json_object_array_get_idx(conds, i);
		if (strcmp(get_s(c, "type"), "Ready") == 0)
			s->ready = strcmp(get_s(c, "status"), "True") == 0;
	}
}

static char *pack(char **p, const char *s)
{
	size_t n = strlen(s) + 1;
	char *r = *p;

	memcpy(r, s, n);
	*p += n;
	return r;
}

static void pack_pairs(char **p, struct ppop_kv *dst, const struct ppop_kv *src, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		dst[i].key = pack(p, src[i].key);
		dst[i].value = pack(p, src[i].value);
	}
}

int rec_pod_from_json(const struct json_object *obj, struct rec_pod **out)
{
	struct json_object *md = get(obj, "metadata");
	struct pod_src *s;
	struct rec_pod *pod;
	const char *defc = NULL, **dst[POD_STRS];
	size_t i, size;
	char *p;
	int rc = 0;

	if (!json_object_is_type(md, json_type_object) || !get_s(md, "name")[0] ||
	    !get_s(md, "namespace")[0])
		return -EINVAL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return -ENOMEM;
	s->str[0] = get_s(md, "namespace");
	s->str[1] = get_s(md, "name");
	s->str[2] = get_s(md, "uid");
	for (i = 3; i < POD_STRS; i++)
		s->str[i] = "";
	collect_meta(s, md, &defc);
	collect_spec_status(s, get(obj, "spec"), get(obj, "status"), defc);
	qsort(s->labels, s->nlabels, sizeof(struct ppop_kv), kv_cmp);
	qsort(s->ann, s->nann, sizeof(struct ppop_kv), kv_cmp);

	size = sizeof(*pod) + (s->nlabels + s->nann) * sizeof(struct ppop_kv);
	for (i = 0; i < POD_STRS; i++)
		size += strlen(s->str[i]) + 1;
	for (i = 0; i < s->nlabels; i++)
		size += strlen(s->labels[i].key) + strlen(s->labels[i].value) + 2;
	for (i = 0; i < s->nann; i++)
		size += strlen(s->ann[i].key) + strlen(s->ann[i].value) + 2;
	if ((pod = malloc(size)) == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	memset(pod, 0, sizeof(*pod));
	pod->labels = (struct ppop_kv *)(pod + 1);
	pod->ann = pod->labels + s->nlabels;
	p = (char *)(pod->ann + s->nann);
	dst[0] = &pod->ns, dst[1] = &pod->name, dst[2] = &pod->uid;
	dst[3] = &pod->node, dst[4] = &pod->pod_ip;
	dst[5] = &pod->owner_kind, dst[6] = &pod->owner_name, dst[7] = &pod->container;
	dst[8] = &pod->image;
	for (i = 0; i < POD_STRS; i++)
		*dst[i] = pack(&p, s->str[i]);
	pack_pairs(&p, pod->labels, s->labels, s->nlabels);
	pack_pairs(&p, pod->ann, s->ann, s->nann);
	pod->nlabels = (uint32_t)s->nlabels;
	pod->nann = (uint32_t)s->nann;
	pod->phase = s->phase;
	pod->ready = s->ready;
	pod->size_bytes = (uint32_t)size;
	*out = pod;
out:
	free(s);
	return rc;
}

static const char *pairs_get(const struct ppop_kv *v, size_t n, const char *key)
{
	struct ppop_kv k = {.key = key}, *r;

	if (n == 0)
		return NULL;
	r = bsearch(&k, v, n, sizeof(k), kv_cmp);
	return r ? r->value : NULL;
}

const char *rec_pod_label(const struct rec_pod *p, const char *key)
{
	return pairs_get(p->labels, p->nlabels, key);
}

const char *rec_pod_annotation(const struct rec_pod *p, const char *key)
{
	return pairs_get(p->ann, p->nann, key);
}

static int ns_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int rec_pod_selected(const struct rec_policy *p, const struct rec_pod *pod)
{
	struct rec_kvs labels = {.v = pod->labels, .n = pod->nlabels};
	const char *en;

	if (!p->ns_selector.any) {
		if (p->ns_selector.n == 0 && strcmp(pod->ns, p->ns) != 0)
			return 0;
		if (p->ns_selector.n > 0 && !bsearch(&pod->ns, p->ns_selector.names,
		                                     p->ns_selector.n, sizeof(char *), ns_cmp))
			return 0;
	}
	if (p->pod_annotation_required) {
		en = rec_pod_annotation(pod, REC_ANN_ENABLE);
		if (en == NULL || strcmp(en, "true") != 0)
			return 0;
	}
	return rec_selector_matches(&p->selector, &labels);
}

int rec_pod_capturable(const struct rec_pod *pod)
{
	return pod->phase == REC_POD_RUNNING && pod->pod_ip[0] != '\0';
}

const char *rec_owner_service(const struct rec_pod *pod, char *buf, size_t len)
{
	const char *k = pod->owner_kind, *hash;
	size_t n = strlen(pod->owner_name), hl;

	if (n == 0)
		return NULL;
	if (strcmp(k, "ReplicaSet") == 0) {
		/* The Deployment controller names a ReplicaSet
		 * "<deployment>-<pod-template-hash>" and labels its pods with
		 * the hash; a bare ReplicaSet has no such label. */
		hash = rec_pod_label(pod, "pod-template-hash");
		hl = hash ? strlen(hash) : 0;
		if (hl > 0 && n > hl + 1 && pod->owner_name[n - hl - 1] == '-' &&
		    strcmp(pod->owner_name + n - hl, hash) == 0)
			n -= hl + 1;
	} else if (strcmp(k, "StatefulSet") != 0 && strcmp(k, "DaemonSet") != 0 &&
	           strcmp(k, "Job") != 0) {
		return NULL;
	}
	snprintf(buf, len, "%.*s", (int)n, pod->owner_name);
	return buf;
}

static int parse_port(const char *s, int *out)
{
	int v = 0;

	if (*s == '\0' || strlen(s) > 5)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		v = v * 10 + (*s - '0');
	}
	if (v < 1 || v > 65535)
		return -EINVAL;
	*out = v;
	return 0;
}

static int ann_path_valid(const char *s)
{
	if (s[0] != '/' || strlen(s) >= 200)
		return 0;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == '?' || *s == '#' || *s == '%' || *s == 0x7f)
			return 0;
	return 1;
}

int rec_target_resolve(const struct rec_policy *p, const struct rec_pod *pod,
                       struct rec_target *out, char *err, size_t errlen)
{
	const char *a, *svc;
	char owner[254];
	size_t n;

	memset(out, 0, sizeof(*out));
	out->port = p->port;
	out->scheme = p->scheme;
	snprintf(out->path, sizeof(out->path), "%s", p->path ? p->path : REC_DEFAULT_PATH);
	if ((a = rec_pod_annotation(pod, REC_ANN_PORT)) != NULL && parse_port(a, &out->port) < 0) {
		snprintf(err, errlen,
		         "invalid %s annotation \"%.32s\": must be an integer between 1 and 65535",
		         REC_ANN_PORT, a);
		return -EINVAL;
	}
	if ((a = rec_pod_annotation(pod, REC_ANN_PATH)) != NULL) {
		if (!ann_path_valid(a)) {
			snprintf(err, errlen,
			         "invalid %s annotation \"%.64s\": must start with '/' and hold no "
			         "spaces, '?', '#' or '%%'",
			         REC_ANN_PATH, a);
			return -EINVAL;
		}
		snprintf(out->path, sizeof(out->path), "%s", a);
	}
	for (n = strlen(out->path); n > 0 && out->path[n - 1] == '/'; n--)
		out->path[n - 1] = '\0';
	if ((a = rec_pod_annotation(pod, REC_ANN_SCHEME)) != NULL) {
		if (strcmp(a, "http") != 0 && strcmp(a, "https") != 0) {
			snprintf(err, errlen,
			         "invalid %s annotation \"%.16s\": must be http or https",
			         REC_ANN_SCHEME, a);
			return -EINVAL;
		}
		out->scheme = a[4] == 's' ? REC_SCHEME_HTTPS : REC_SCHEME_HTTP;
	}
	if (pod->pod_ip[0] == '\0' || strlen(pod->pod_ip) > 45) {
		snprintf(err, errlen, "pod has no usable status.podIP");
		return -EINVAL;
	}
	snprintf(out->host, sizeof(out->host), strchr(pod->pod_ip, ':') ? "[%s]" : "%s",
	         pod->pod_ip);
	svc = rec_pod_annotation(pod, REC_ANN_SERVICE);
	if (svc == NULL || svc[0] == '\0')
		svc = p->service;
	if (svc == NULL || svc[0] == '\0')
		svc = rec_owner_service(pod, owner, sizeof(owner));
	if (svc == NULL || svc[0] == '\0')
		svc = pod->name;
	snprintf(out->service, sizeof(out->service), "%s", svc);
	return 0;
}

int rec_target_url(const struct rec_target *t, const struct rec_profile *prof, char *buf,
                   size_t len)
{
	const char *scheme = t->scheme == REC_SCHEME_HTTPS ? "https" : "http";
	int n;

	if (prof->type == PPOP_PT_CPU)
		n = snprintf(buf, len, "%s://%s:%d%s/profile?seconds=%d", scheme, t->host, t->port,
		             t->path, prof->seconds > 0 ? prof->seconds : REC_DEFAULT_CPU_SECONDS);
	else
		n = snprintf(buf, len, "%s://%s:%d%s/%s", scheme, t->host, t->port, t->path,
		             ppop_ptype_name(prof->type));
	return n < 0 || (size_t)n >= len ? -ERANGE : 0;
}

const char *rec_image_tag(const char *image, char *buf, size_t len)
{
	const char *at = strchr(image, '@'), *slash, *colon;
	size_t n = at ? (size_t)(at - image) : strlen(image);

	buf[0] = '\0';
	slash = memrchr(image, '/', n);
	colon = memrchr(image, ':', n);
	if (colon && (slash == NULL || colon > slash))
		snprintf(buf, len, "%.*s", (int)(n - (size_t)(colon - image) - 1), colon + 1);
	return buf;
}

int rec_target_labels(const struct rec_policy *p, const struct rec_pod *pod,
                      const struct rec_profile *prof, struct rec_kvs *out)
{
	struct ppop_kv pairs[8 + REC_MAX_LABELS];
	char tag[128];
	const char *version = rec_pod_label(pod, "app.kubernetes.io/version");
	size_t n = 0, i;

	if (version == NULL || version[0] == '\0')
		version = rec_image_tag(pod->image, tag, sizeof(tag));
	pairs[n++] = (struct ppop_kv){"namespace", pod->ns};
	pairs[n++] = (struct ppop_kv){"pod", pod->name};
	pairs[n++] = (struct ppop_kv){"node", pod->node};
	pairs[n++] = (struct ppop_kv){"policy", p->name};
	pairs[n++] = (struct ppop_kv){"container", pod->container};
	pairs[n++] = (struct ppop_kv){"version", version};
	if (prof->type == PPOP_PT_ALLOCS)
		pairs[n++] = (struct ppop_kv){"pprof_type", "allocs"};
	for (i = 0; i < p->labels.n && i < REC_MAX_LABELS; i++)
		pairs[n++] = p->labels.v[i];
	for (i = 0; i < n;) /* leave empty values out */
		if (pairs[i].value == NULL || pairs[i].value[0] == '\0')
			pairs[i] = pairs[--n];
		else
			i++;
	return rec__kvs_build(out, pairs, n);
}

uint32_t rec_spread_offset_ms(const char *uid, uint32_t window_ms)
{
	uint64_t h;

	if (window_ms == 0)
		return 0;
	h = ppop_fnv1a_str(PPOP_FNV1A_INIT, uid);
	h ^= h >> 33; /* FNV's low bits mix poorly for short keys */
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return (uint32_t)(h % window_ms);
}
