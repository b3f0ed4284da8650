/* reconcile/selector.c: metav1.LabelSelector with the semantics of
 * k8s.io/apimachinery/pkg/labels (LabelSelectorAsSelector + Matches). */
#include "reconcile/internal.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[] = {"In", "NotIn", "Exists", "DoesNotExist"};

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int req_cmp(const void *a, const void *b)
{
	const struct rec_sel_req *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	if (c)
		return c;
	if (x->op != y->op)
		return (int)x->op - (int)y->op;
	if (x->nvalues && y->nvalues)
		return strcmp(x->values[0], y->values[0]);
	return (int)x->nvalues - (int)y->nvalues;
}

static void req_free(struct rec_sel_req *r)
{
	size_t i;

	free(r->key);
	for (i = 0; i < r->nvalues; i++)
		free(r->values[i]);
	free(r->values);
}

void rec_selector_free(struct rec_selector *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < s->n; i++)
		req_free(&s->reqs[i]);
	free(s->reqs);
	s->reqs = NULL;
	s->n = 0;
}

/* Appends a requirement, taking ownership of key and values. */
static int add_req(struct rec_selector *s, char *key, enum rec_sel_op op, char **values, size_t nv)
{
	struct rec_sel_req *r = realloc(s->reqs, (s->n + 1) * sizeof(*r));
	size_t i, k = 0;

	if (r == NULL)
		return -ENOMEM;
	s->reqs = r;
	if (nv > 1) { /* sort and deduplicate */
		qsort(values, nv, sizeof(*values), str_cmp);
		for (i = 0; i < nv; i++) {
			if (k > 0 && strcmp(values[k - 1], values[i]) == 0)
				free(values[i]);
			else
				values[k++] = values[i];
		}
		nv = k;
	}
	s->reqs[s->n++] = (struct rec_sel_req){key, op, values, nv};
	return 0;
}

static int parse_match_labels(const struct json_object *ml, const char *path,
                              struct rec_selector *out, struct rec_errs *errs)
{
	char p[128];
	int bad = 0;

	snprintf(p, sizeof(p), "%.80s.matchLabels", path);
	if (!json_object_is_type(ml, json_type_object)) {
		rec_errs_add(errs, REC_ERR_SPEC, p, "must be an object of label key: value");
		return -EINVAL;
	}
	json_object_object_foreach((struct json_object *)ml, key, val)
	{
		const char *v = json_object_get_string(val);
		char **values;
		char *k;

		if (!json_object_is_type(val, json_type_string)) {
			rec_errs_add(errs, REC_ERR_SPEC, p, "value of \"%.40s\" must be a string",
			             key);
			bad = 1;
			continue;
		}
		if (!rec__label_key_valid(key)) {
			rec_errs_add(errs, REC_ERR_SPEC, p, "invalid label key \"%.60s\"", key);
			bad = 1;
			continue;
		}
		if (!rec__label_value_valid(v)) {
			rec_errs_add(errs, REC_ERR_SPEC, p,
			             "invalid label value \"%.60s\" for \"%.40s\"", v, key);
			bad = 1;
			continue;
		}
		k = strdup(key);
		values = malloc(sizeof(*values));
		if (k == NULL || values == NULL || (values[0] = strdup(v)) == NULL ||
		    add_req(out, k, REC_SEL_IN, values, 1) < 0) {
			free(k);
			if (values)
				free(values[0]);
			free(values);
			return -ENOMEM;
		}
	}
	return bad ? -EINVAL : 0;
}

/* Copies one validated expression into the selector. */
static int store_expression(struct rec_selector *out, const char *key, enum rec_sel_op op,
                            const struct json_object *jv, size_t nv)
{
	char **values = NULL, *k;
	size_t i;

	if (nv && (values = calloc(nv, sizeof(*values))) == NULL)
		return -ENOMEM;
	for (i = 0; i < nv; i++) {
		values[i] = strdup(json_object_get_string(json_object_array_get_idx(jv, i)));
		if (values[i] == NULL)
			goto out_free;
	}
	k = strdup(key);
	if (k == NULL || add_req(out, k, op, values, nv) < 0) {
		free(k);
		goto out_free;
	}
	return 0;
out_free:
	for (i = 0; i < nv; i++)
		free(values[i]);
	free(values);
	return -ENOMEM;
}

/* Parses matchExpressions[i]; returns -EINVAL after adding its errors. */
static int parse_expression(const struct json_object *e, const char *path, struct rec_selector *out,
                            struct rec_errs *errs)
{
	struct json_object *jk = NULL, *jop = NULL, *jv = NULL;
	const char *key, *opn;
	char p[128];
	size_t nv = 0, i;
	int op = -1, bad = 0;

	if (!json_object_is_type(e, json_type_object)) {
		rec_errs_add(errs, REC_ERR_SPEC, path, "must be an object");
		return -EINVAL;
	}
	json_object_object_get_ex(e, "key", &jk);
	json_object_object_get_ex(e, "operator", &jop);
	json_object_object_get_ex(e, "values", &jv);
	key = json_object_is_type(jk, json_type_string) ? json_object_get_string(jk) : NULL;
	opn = json_object_is_type(jop, json_type_string) ? json_object_get_string(jop) : NULL;
	snprintf(p, sizeof(p), "%.80s.key", path);
	if (key == NULL || !rec__label_key_valid(key)) {
		if (key)
			rec_errs_add(errs, REC_ERR_SPEC, p, "invalid label key \"%.60s\"", key);
		else
			rec_errs_add(errs, REC_ERR_SPEC, p, "is required");
		bad = 1;
	}
	for (i = 0; opn && i < 4; i++)
		if (strcmp(opn, op_names[i]) == 0)
			op = (int)i;
	snprintf(p, sizeof(p), "%.80s.operator", path);
	if (op < 0) {
		rec_errs_add(errs, REC_ERR_SPEC, p,
		             "must be one of In, NotIn, Exists, DoesNotExist");
		return -EINVAL;
	}
	snprintf(p, sizeof(p), "%.80s.values", path);
	if (jv && !json_object_is_type(jv, json_type_null) &&
	    !json_object_is_type(jv, json_type_array)) {
		rec_errs_add(errs, REC_ERR_SPEC, p, "must be a list of strings");
		return -EINVAL;
	}
	nv = json_object_is_type(jv, json_type_array) ? json_object_array_length(jv) : 0;
	if ((op == REC_SEL_IN || op == REC_SEL_NOT_IN) && nv == 0) {
		rec_errs_add(errs, REC_ERR_SPEC, p, "must be non-empty when operator is %s", opn);
		return -EINVAL;
	}
	if ((op == REC_SEL_EXISTS || op == REC_SEL_DOES_NOT_EXIST) && nv > 0) {
		rec_errs_add(errs, REC_ERR_SPEC, p, "must be empty when operator is %s", opn);
		return -EINVAL;
	}
	for (i = 0; i < nv; i++) {
		struct json_object *v = json_object_array_get_idx(jv, i);
		if (!json_object_is_type(v, json_type_string) ||
		    !rec__label_value_valid(json_object_get_string(v))) {
			snprintf(p, sizeof(p), "%.80s.values[%zu]", path, i);
			rec_errs_add(errs, REC_ERR_SPEC, p, "must be a valid label value");
			bad = 1;
		}
	}
	return bad ? -EINVAL : store_expression(out, key, (enum rec_sel_op)op, jv, nv);
}

int rec_selector_parse(const struct json_object *obj, const char *path, struct rec_selector *out,
                       struct rec_errs *errs)
{
	struct json_object *ml = NULL, *me = NULL;
	char p[128];
	int rc = 0, r;
	size_t i;

	memset(out, 0, sizeof(*out));
	if (obj == NULL || json_object_is_type(obj, json_type_null))
		return 0;
	if (!json_object_is_type(obj, json_type_object)) {
		rec_errs_add(errs, REC_ERR_SPEC, path, "must be a label selector object");
		return -EINVAL;
	}
	if (json_object_object_get_ex(obj, "matchLabels", &ml) && ml != NULL) {
		r = parse_match_labels(ml, path, out, errs);
		if (r == -ENOMEM)
			goto out_nomem;
		rc = rc ? rc : r;
	}
	if (json_object_object_get_ex(obj, "matchExpressions", &me) && me != NULL) {
		snprintf(p, sizeof(p), "%.80s.matchExpressions", path);
		if (!json_object_is_type(me, json_type_array)) {
			rec_errs_add(errs, REC_ERR_SPEC, p, "must be a list");
			rc = -EINVAL;
		}
		for (i = 0;
		     json_object_is_type(me, json_type_array) && i < json_object_array_length(me);
		     i++) {
			snprintf(p, sizeof(p), "%.80s.matchExpressions[%zu]", path, i);
			r = parse_expression(json_object_array_get_idx(me, i), p, out, errs);
			if (r == -ENOMEM)
				goto out_nomem;
			rc = rc ? rc : r;
		}
	}
	if (out->n > 1)
		qsort(out->reqs, out->n, sizeof(*out->reqs), req_cmp);
	return rc;
out_nomem:
	rec_selector_free(out);
	return -ENOMEM;
}

static int has_value(const struct rec_sel_req *r, const char *v)
{
	return bsearch(&v, r->values, r->nvalues, sizeof(*r->values), str_cmp) != NULL;
}

int rec_selector_matches(const struct rec_selector *s, const struct rec_kvs *labels)
{
	size_t i;

	for (i = 0; i < s->n; i++) {
		const struct rec_sel_req *r = &s->reqs[i];
		const char *v = rec_kvs_get(labels, r->key);
		int ok;
		switch (r->op) {
		case REC_SEL_IN:
			ok = v != NULL && has_value(r, v);
			break;
		case REC_SEL_NOT_IN:
			ok = v == NULL || !has_value(r, v);
			break;
		case REC_SEL_EXISTS:
			ok = v != NULL;
			break;
		default:
			ok = v == NULL;
			break;
		}
		if (!ok)
			return 0;
	}
	return 1;
}

char *rec_selector_string(const struct rec_selector *s)
{
	size_t i, j, total = 1;
	char *out, *p;

	for (i = 0; i < s->n; i++) {
		total += strlen(s->reqs[i].key) + 16;
		for (j = 0; j < s->reqs[i].nvalues; j++)
			total += strlen(s->reqs[i].values[j]) + 1;
	}
	if ((out = malloc(total)) == NULL)
		return NULL;
	p = out;
	for (i = 0; i < s->n; i++) {
		const struct rec_sel_req *r = &s->reqs[i];
		if (i)
			*p++ = ',';
		if (r->op == REC_SEL_DOES_NOT_EXIST)
			*p++ = '!';
		p = stpcpy(p, r->key);
		if (r->op == REC_SEL_IN && r->nvalues == 1) {
			*p++ = '=';
			p = stpcpy(p, r->values[0]);
			continue;
		}
		if (r->op == REC_SEL_EXISTS || r->op == REC_SEL_DOES_NOT_EXIST)
			continue;
		p = stpcpy(p, r->op == REC_SEL_IN ? " in (" : " notin (");
		for (j = 0; j < r->nvalues; j++) {
			if (j)
				*p++ = ',';
			p = stpcpy(p, r->values[j]);
		}
		*p++ = ')';
	}
	*p = '\0';
	return out;
}
