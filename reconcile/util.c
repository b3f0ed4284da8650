/* reconcile/util.c: error lists, sorted key/value lists, civil-date arithmetic and RFC 3339 times.
 */
#include "reconcile/internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rec_errs_add(struct rec_errs *e, enum rec_err_kind kind, const char *path, const char *fmt,
                  ...)
{
	va_list ap;
	struct rec_err *r;

	if (e == NULL)
		return;
	if (e->n >= REC_ERRS_MAX) {
		e->dropped++;
		return;
	}
	r = &e->v[e->n++];
	r->kind = kind;
	snprintf(r->path, sizeof(r->path), "%s", path);
	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
}

size_t rec_errs_count(const struct rec_errs *e, enum rec_err_kind kind)
{
	size_t i, c = 0;

	for (i = 0; i < e->n; i++)
		if (e->v[i].kind == kind)
			c++;
	if (kind == REC_ERR_SPEC)
		c += e->dropped;
	return c;
}

size_t rec_errs_format(const struct rec_errs *e, int kind, char *buf, size_t len)
{
	size_t i, off = 0;
	int w;

	if (len == 0)
		return 0;
	buf[0] = '\0';
	for (i = 0; i < e->n; i++) {
		if (kind >= 0 && (int)e->v[i].kind != kind)
			continue;
		w = snprintf(buf + off, len - off, "%s%s: %s", off ? "; " : "", e->v[i].path,
		             e->v[i].msg);
		if (w < 0 || (size_t)w >= len - off)
			goto truncated;
		off += (size_t)w;
	}
	if (e->dropped && (kind < 0 || kind == REC_ERR_SPEC)) {
		w = snprintf(buf + off, len - off, "%s(%zu more)", off ? "; " : "", e->dropped);
		if (w < 0 || (size_t)w >= len - off)
			goto truncated;
		off += (size_t)w;
	}
	return off;
truncated:
	if (len >= 4)
		memcpy(buf + len - 4, "...", 4);
	return strlen(buf);
}

char *rec__strdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int kv_cmp(const void *a, const void *b)
{
	const struct ppop_kv *x = a, *y = b;
	return strcmp(x->key, y->key);
}

/* Builds the list in two passes over the input: size, then copy. A stable
 * sort is not available, so duplicates are resolved before sorting by
 * keeping the last occurrence. */
int rec__kvs_build(struct rec_kvs *out, const struct ppop_kv *pairs, size_t n)
{
	size_t i, j, total = 0, k = 0;
	char *p;

	memset(out, 0, sizeof(*out));
	if (n == 0)
		return 0;
	for (i = 0; i < n; i++)
		total += strlen(pairs[i].key) + strlen(pairs[i].value) + 2;
	out->v = calloc(n, sizeof(*out->v));
	out->store_ = malloc(total);
	if (out->v == NULL || out->store_ == NULL)
		goto out_free;
	p = out->store_;
	for (i = 0; i < n; i++) {
		for (j = i + 1; j < n; j++)
			if (strcmp(pairs[i].key, pairs[j].key) == 0)
				break;
		if (j < n)
			continue; /* a later entry wins */
		size_t kl = strlen(pairs[i].key) + 1, vl = strlen(pairs[i].value) + 1;
		memcpy(p, pairs[i].key, kl);
		out->v[k].key = p;
		p += kl;
		memcpy(p, pairs[i].value, vl);
		out->v[k].value = p;
		p += vl;
		k++;
	}
	out->n = k;
	qsort(out->v, out->n, sizeof(*out->v), kv_cmp);
	return 0;
out_free:
	free(out->v);
	free(out->store_);
	memset(out, 0, sizeof(*out));
	return -ENOMEM;
}

const char *rec_kvs_get(const struct rec_kvs *kvs, const char *key)
{
	struct ppop_kv k = {.key = key}, *r;

	if (kvs == NULL || kvs->n == 0)
		return NULL;
	r = bsearch(&k, kvs->v, kvs->n, sizeof(k), kv_cmp);
	return r ? r->value : NULL;
}

void rec_kvs_free(struct rec_kvs *kvs)
{
	if (kvs == NULL)
		return;
	free(kvs->v);
	free(kvs->store_);
	memset(kvs, 0, sizeof(*kvs));
}

/* Howard Hinnant's days_from_civil / civil_from_days. */
int64_t rec__days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

void rec__civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

unsigned rec__weekday(int64_t days)
{
	return (unsigned)(days >= -4 ? (days + 4) % 7 : (days + 5) % 7 + 6);
}

int rec__is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

unsigned rec__days_in_month(int64_t y, unsigned m)
{
	static const unsigned dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (m == 2 && rec__is_leap(y))
		return 29;
	return dim[(m - 1) % 12];
}

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

char *rec_time_format(int64_t ms, char *buf, size_t len)
{
	int64_t s = floor_div(ms, 1000), days = floor_div(s, 86400), y;
	int64_t sod = s - days * 86400;
	unsigned m, d;

	rec__civil_from_days(days, &y, &m, &d);
	snprintf(buf, len, "%04lld-%02u-%02uT%02u:%02u:%02uZ", (long long)y, m, d,
	         (unsigned)(sod / 3600), (unsigned)(sod / 60 % 60), (unsigned)(sod % 60));
	return buf;
}

static int digits(const char *s, int n, int *out)
{
	int i, v = 0;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

int rec_time_parse(const char *s, int64_t *out_ms)
{
	int y, mo, d, h, mi, sec, ms = 0, oh, om, scale = 100;
	int64_t t;
	const char *p;

	if (s == NULL || strlen(s) < 20 || digits(s, 4, &y) || s[4] != '-' ||
	    digits(s + 5, 2, &mo) || s[7] != '-' || digits(s + 8, 2, &d) ||
	    (s[10] != 'T' && s[10] != 't') || digits(s + 11, 2, &h) || s[13] != ':' ||
	    digits(s + 14, 2, &mi) || s[16] != ':' || digits(s + 17, 2, &sec))
		return -EINVAL;
	if (mo < 1 || mo > 12 || d < 1 || (unsigned)d > rec__days_in_month(y, (unsigned)mo) ||
	    h > 23 || mi > 59 || sec > 60)
		return -EINVAL;
	p = s + 19;
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++) {
			ms += (*p - '0') * scale;
			scale /= 10;
		}
	}
	t = rec__days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec;
	if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
		*out_ms = t * 1000 + ms;
		return 0;
	}
	if ((*p == '+' || *p == '-') && strlen(p) == 6 && !digits(p + 1, 2, &oh) && p[3] == ':' &&
	    !digits(p + 4, 2, &om)) {
		int64_t off = (int64_t)oh * 3600 + om * 60;
		t -= *p == '+' ? off : -off;
		*out_ms = t * 1000 + ms;
		return 0;
	}
	return -EINVAL;
}

static int name_part_valid(const char *s, size_t n, size_t max)
{
	size_t i;

	if (n == 0 || n > max)
		return 0;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		int alnum =
		        (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (!alnum && ((i == 0 || i == n - 1) || (c != '-' && c != '_' && c != '.')))
			return 0;
	}
	return 1;
}

static int dns_subdomain_valid(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > 253)
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];
		int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (!alnum && ((i == 0 || i == n - 1) || (c != '-' && c != '.')))
			return 0;
	}
	return 1;
}

/* A qualified name: [prefix/]name, prefix a DNS subdomain, name <= 63. */
int rec__label_key_valid(const char *k)
{
	const char *slash = strchr(k, '/');

	if (slash == NULL)
		return name_part_valid(k, strlen(k), 63);
	return dns_subdomain_valid(k, (size_t)(slash - k)) &&
	       name_part_valid(slash + 1, strlen(slash + 1), 63);
}

int rec__label_value_valid(const char *v)
{
	return v[0] == '\0' || name_part_valid(v, strlen(v), 63);
}

int rec__dns_label_valid(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > 63)
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];
		int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (!alnum && ((i == 0 || i == n - 1) || c != '-'))
			return 0;
	}
	return 1;
}
