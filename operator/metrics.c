/* operator/metrics.c: families, series hashed by label values, rendering. */
#include "operator/metrics.h"

#include "common/common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct series {
	char *key; /* label values joined by '\x1f'; the hash key */
	char **values;
	double value;     /* counter or gauge */
	uint64_t *counts; /* histogram: one per bucket, not cumulative */
	uint64_t count;
	double sum;
	int used; /* slot holds a live series (0 = empty, -1 = deleted) */
};

struct op_family {
	char *name, *help;
	enum op_metric_type type;
	char **labels;
	size_t nlabels;
	double *buckets;
	size_t nbuckets;
	struct series *slots;        /* open addressing, linear probing */
	size_t nslots, nused, ntomb; /* ntomb: slots of forgotten series */
	struct op_family *next;
};

struct op_metrics {
	struct op_family *first, *last;
};

struct op_metrics *op_metrics_new(void)
{
	return calloc(1, sizeof(struct op_metrics));
}

static void series_clear(struct op_family *f, struct series *s)
{
	size_t i;

	for (i = 0; i < f->nlabels; i++)
		free(s->values[i]);
	free(s->values);
	free(s->key);
	free(s->counts);
	memset(s, 0, sizeof(*s));
}

static void family_free(struct op_family *f)
{
	size_t i;

	for (i = 0; i < f->nslots; i++)
		if (f->slots[i].used == 1)
			series_clear(f, &f->slots[i]);
	for (i = 0; i < f->nlabels; i++)
		free(f->labels[i]);
	free(f->labels);
	free(f->slots);
	free(f->buckets);
	free(f->name);
	free(f->help);
	free(f);
}

void op_metrics_free(struct op_metrics *m)
{
	struct op_family *f, *n;

	if (!m)
		return;
	for (f = m->first; f; f = n) {
		n = f->next;
		family_free(f);
	}
	free(m);
}

struct op_family *op_metrics_family(struct op_metrics *m, const char *name, const char *help,
                                    enum op_metric_type type, const char *const *labels,
                                    size_t nlabels, const double *buckets, size_t nbuckets)
{
	struct op_family *f = calloc(1, sizeof(*f));
	size_t i;

	if (!f)
		return NULL;
	f->name = strdup(name);
	f->help = strdup(help);
	f->type = type;
	f->labels = calloc(nlabels ? nlabels : 1, sizeof(char *));
	f->buckets = calloc(nbuckets ? nbuckets : 1, sizeof(double));
	if (!f->name || !f->help || !f->labels || !f->buckets)
		goto err;
	f->nlabels = nlabels;
	for (i = 0; i < nlabels; i++)
		if (!(f->labels[i] = strdup(labels[i])))
			goto err;
	f->nbuckets = type == OP_HISTOGRAM ? nbuckets : 0;
	if (f->nbuckets)
		memcpy(f->buckets, buckets, nbuckets * sizeof(double));
	if (m->last)
		m->last->next = f;
	else
		m->first = f;
	m->last = f;
	return f;
err:
	family_free(f);
	return NULL;
}

/* FNV-1a over the joined label values. */
static uint64_t hash_key(const char *k)
{
	return ppop_fnv1a_str(PPOP_FNV1A_INIT, k);
}

static char *join_values(const struct op_family *f, const char *const *values)
{
	size_t i, n = 1;
	char *k, *p;

	for (i = 0; i < f->nlabels; i++)
		n += strlen(values[i] ? values[i] : "") + 1;
	if (!(k = malloc(n)))
		return NULL;
	p = k;
	for (i = 0; i < f->nlabels; i++) {
		const char *v = values[i] ? values[i] : "";
		size_t l = strlen(v);
		memcpy(p, v, l);
		p += l;
		*p++ = '\x1f';
	}
	*p = '\0';
	return k;
}

/* The table keeps live series plus tombstones under 3/4 of its slots, so
 * every probe meets an empty slot and ends. */
static int table_full(const struct op_family *f, size_t more)
{
	return (f->nused + f->ntomb + more) * 4 > f->nslots * 3;
}

/* Rebuilds the table without tombstones, sized so that live series fill
 * at most half of it: it grows with the live series and shrinks again
 * when policies go away. Forgotten series thus never accumulate, at an
 * O(slots) cost amortised over the quarter of the table filled since. */
static int rehash(struct op_family *f)
{
	size_t n = 16, i;
	struct series *old = f->slots, *s;

	while ((f->nused + 1) * 2 > n)
		n *= 2;
	s = calloc(n, sizeof(*s));
	if (!s)
		return -ENOMEM;
	for (i = 0; i < f->nslots; i++) {
		size_t j;
		if (old[i].used != 1)
			continue;
		j = hash_key(old[i].key) & (n - 1);
		while (s[j].used)
			j = (j + 1) & (n - 1);
		s[j] = old[i];
	}
	free(old);
	f->slots = s;
	f->nslots = n;
	f->ntomb = 0;
	return 0;
}

/* Returns the live series stored under `key`, or NULL and, in `*slot`, the
 * slot a new series for `key` should take (the first tombstone on the
 * probe path, else the empty slot that ended it; NULL without a table). */
static struct series *find(struct op_family *f, const char *key, struct series **slot)
{
	struct series *tomb = NULL;
	size_t j;

	*slot = NULL;
	if (!f->nslots)
		return NULL;
	for (j = hash_key(key) & (f->nslots - 1); f->slots[j].used; j = (j + 1) & (f->nslots - 1)) {
		if (f->slots[j].used == -1) {
			if (!tomb)
				tomb = &f->slots[j];
		} else if (strcmp(f->slots[j].key, key) == 0) {
			return &f->slots[j];
		}
	}
	*slot = tomb ? tomb : &f->slots[j];
	return NULL;
}

/* Fills the free slot `s` with a new series for `values`, taking `key`.
 * Returns 0, or -ENOMEM with `s` as it was and `key` still the caller's. */
static int series_init(struct op_family *f, struct series *s, const char *const *values, char *key)
{
	int was_tomb = s->used == -1;
	size_t i;

	memset(s, 0, sizeof(*s));
	s->values = calloc(f->nlabels ? f->nlabels : 1, sizeof(char *));
	s->counts = f->nbuckets ? calloc(f->nbuckets, sizeof(uint64_t)) : NULL;
	if (!s->values || (f->nbuckets && !s->counts))
		goto out_free;
	for (i = 0; i < f->nlabels; i++)
		if (!(s->values[i] = strdup(values[i] ? values[i] : "")))
			goto out_free;
	s->key = key;
	s->used = 1;
	f->nused++;
	if (was_tomb)
		f->ntomb--;
	return 0;
out_free:
	for (i = 0; s->values && i < f->nlabels; i++)
		free(s->values[i]);
	free(s->values);
	free(s->counts);
	memset(s, 0, sizeof(*s));
	s->used = was_tomb ? -1 : 0;
	return -ENOMEM;
}

/* Finds the series for `values`, creating it when `create` is set. Returns
 * NULL when absent (and not created) or out of memory: a metric that cannot
 * be recorded is dropped rather than failing the capture it describes. */
static struct series *lookup(struct op_family *f, const char *const *values, int create)
{
	char *key = join_values(f, values);
	struct series *s, *slot;

	if (!key)
		return NULL;
	s = find(f, key, &slot);
	if (s || !create)
		goto out;
	/* Reusing a tombstone leaves the count of occupied slots unchanged;
	 * taking an empty slot must keep the table under its load factor. */
	if (!slot || (slot->used == 0 && table_full(f, 1))) {
		if (rehash(f) != 0)
			goto out;
		find(f, key, &slot);
	}
	if (series_init(f, slot, values, key) != 0)
		goto out;
	return slot;
out:
	free(key);
	return s;
}

void op_metric_add(struct op_family *f, const char *const *values, double v)
{
	struct series *s;

	if (f->type == OP_COUNTER && !(v >= 0))
		return;
	s = lookup(f, values, 1);
	if (s)
		s->value += v;
}

void op_metric_set_counter(struct op_family *f, const char *const *values, double total)
{
	struct series *s = lookup(f, values, 1);

	if (s && (f->type != OP_COUNTER || total > s->value))
		s->value = total;
}

void op_metric_set(struct op_family *f, const char *const *values, double v)
{
	op_metric_set_counter(f, values, v);
}

void op_metric_observe(struct op_family *f, const char *const *values, double v)
{
	struct series *s = lookup(f, values, 1);
	size_t i;

	if (!s)
		return;
	s->count++;
	s->sum += v;
	for (i = 0; i < f->nbuckets; i++)
		if (v <= f->buckets[i]) {
			s->counts[i]++;
			break;
		}
}

void op_metric_set_histogram(struct op_family *f, const char *const *values, const uint64_t *counts,
                             double sum)
{
	struct series *s = f->type == OP_HISTOGRAM ? lookup(f, values, 1) : NULL;
	size_t i;

	if (!s)
		return;
	s->count = 0;
	for (i = 0; i <= f->nbuckets; i++) {
		if (i < f->nbuckets)
			s->counts[i] = counts[i];
		s->count += counts[i];
	}
	s->sum = sum;
}

double op_metric_get(struct op_family *f, const char *const *values)
{
	struct series *s = lookup(f, values, 0);

	return s ? s->value : 0;
}

void op_metric_forget(struct op_family *f, size_t label_idx, const char *value)
{
	size_t i;

	if (label_idx >= f->nlabels)
		return;
	for (i = 0; i < f->nslots; i++) {
		struct series *s = &f->slots[i];
		if (s->used == 1 && strcmp(s->values[label_idx], value) == 0) {
			series_clear(f, s);
			s->used = -1;
			f->nused--;
			f->ntomb++;
		}
	}
}

/* Appends printf-style text; -ENOMEM or -EFBIG on failure. */
__attribute__((format(printf, 2, 3))) static int put(struct loop_buf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= sizeof(tmp))
		n = sizeof(tmp) - 1;
	return loop_buf_append(b, tmp, (size_t)n);
}

/* Appends a label value escaped as the exposition format requires. */
static int put_escaped(struct loop_buf *b, const char *v)
{
	int err = 0;

	for (; *v && !err; v++) {
		if (*v == '\\')
			err = loop_buf_append(b, "\\\\", 2);
		else if (*v == '"')
			err = loop_buf_append(b, "\\\"", 2);
		else if (*v == '\n')
			err = loop_buf_append(b, "\\n", 2);
		else
			err = loop_buf_append(b, v, 1);
	}
	return err;
}

/* Appends `{a="x",b="y"` (no closing brace), plus an optional `le`. */
static int put_labels(struct loop_buf *b, const struct op_family *f, const struct series *s,
                      const char *le)
{
	size_t i;
	int err = 0;

	if (!f->nlabels && !le)
		return 0;
	err = loop_buf_append(b, "{", 1);
	for (i = 0; i < f->nlabels && !err; i++) {
		err = put(b, "%s%s=\"", i ? "," : "", f->labels[i]);
		if (!err)
			err = put_escaped(b, s->values[i]);
		if (!err)
			err = loop_buf_append(b, "\"", 1);
	}
	if (!err && le)
		err = put(b, "%sle=\"%s\"", f->nlabels ? "," : "", le);
	if (!err)
		err = loop_buf_append(b, "}", 1);
	return err;
}

static int render_series(struct loop_buf *b, const struct op_family *f, const struct series *s)
{
	uint64_t cum = 0;
	size_t i;
	int err = 0;
	char le[32];

	if (f->type != OP_HISTOGRAM) {
		err = put(b, "%s", f->name);
		if (!err)
			err = put_labels(b, f, s, NULL);
		return err ? err : put(b, " %.17g\n", s->value);
	}
	for (i = 0; i <= f->nbuckets && !err; i++) {
		if (i < f->nbuckets) {
			cum += s->counts[i];
			snprintf(le, sizeof(le), "%g", f->buckets[i]);
		} else {
			cum = s->count;
			snprintf(le, sizeof(le), "+Inf");
		}
		err = put(b, "%s_bucket", f->name);
		if (!err)
			err = put_labels(b, f, s, le);
		if (!err)
			err = put(b, " %llu\n", (unsigned long long)cum);
	}
	if (!err)
		err = put(b, "%s_sum", f->name);
	if (!err)
		err = put_labels(b, f, s, NULL);
	if (!err)
		err = put(b, " %.17g\n%s_count", s->sum, f->name);
	if (!err)
		err = put_labels(b, f, s, NULL);
	return err ? err : put(b, " %llu\n", (unsigned long long)s->count);
}

int op_metrics_render(const struct op_metrics *m, struct loop_buf *out)
{
	static const char *const types[] = {"counter", "gauge", "histogram"};
	const struct op_family *f;
	size_t i;
	int err = 0;

	for (f = m->first; f && !err; f = f->next) {
		err = put(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
		          types[f->type]);
		/* A family without labels always shows its single series, even
		 * before anything was recorded: absent and zero differ for alerts. */
		if (!err && f->nlabels == 0 && f->nused == 0)
			err = f->type == OP_HISTOGRAM ? 0 : put(out, "%s 0\n", f->name);
		for (i = 0; i < f->nslots && !err; i++)
			if (f->slots[i].used == 1)
				err = render_series(out, f, &f->slots[i]);
	}
	return err;
}
