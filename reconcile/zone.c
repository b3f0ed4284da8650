/* reconcile/zone.c: IANA time zones from TZif files (RFC 8536).
 *
 * A zone is its transition table plus the POSIX TZ rule from the file's
 * footer, which governs every time after the last transition. Parsing our
 * own copy keeps conversions pure and free of the process-global TZ
 * variable (see reconcile.h). Leap-second records are skipped: Kubernetes
 * and Go's time package ignore them too. */
#include "reconcile/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One end of a DST period in a POSIX TZ rule. */
struct tz_rule_date {
	char kind;    /* 'J' (1..365, no Feb 29), 'D' (0..365), 'M' */
	int day;      /* J/D: the day; M: weekday 0..6 */
	int week;     /* M: 1..5, 5 = last */
	int month;    /* M: 1..12 */
	int32_t time; /* seconds after local midnight; may be negative or > 24h */
};

struct tz_rule {
	int present;
	int has_dst;
	int32_t std_off, dst_off; /* UTC offsets, east positive */
	struct tz_rule_date start, end;
};

struct rec_zone {
	int refs; /* -1: static */
	char name[64];
	size_t ntrans;
	int64_t *trans;  /* sorted Unix seconds */
	int32_t *offs;   /* offset in force from trans[i] */
	int32_t initial; /* offset before the first transition */
	struct tz_rule rule;
};

static struct rec_zone utc_zone = {.refs = -1, .name = "UTC"};

const struct rec_zone *rec_zone_utc(void)
{
	return &utc_zone;
}

struct rec_zone *rec_zone_ref(const struct rec_zone *z)
{
	struct rec_zone *m = (struct rec_zone *)z;

	if (m && m->refs > 0)
		m->refs++;
	return m;
}

void rec_zone_unref(const struct rec_zone *z)
{
	struct rec_zone *m = (struct rec_zone *)z;

	if (m == NULL || m->refs < 0)
		return;
	if (--m->refs > 0)
		return;
	free(m->trans);
	free(m->offs);
	free(m);
}

const char *rec_zone_name(const struct rec_zone *z)
{
	return z ? z->name : "UTC";
}

/* ---- POSIX TZ strings ("EST5EDT,M3.2.0,M11.1.0") ---- */

static const char *tz_name(const char *p)
{
	const char *s = p;

	if (*p == '<') {
		while (*p && *p != '>')
			p++;
		return *p == '>' && p - s >= 4 ? p + 1 : NULL;
	}
	while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'))
		p++;
	return p - s >= 3 ? p : NULL;
}

static const char *tz_num(const char *p, int max, int *out)
{
	int v = 0, n = 0;

	while (*p >= '0' && *p <= '9' && n < 4) {
		v = v * 10 + (*p++ - '0');
		n++;
	}
	if (n == 0 || v > max)
		return NULL;
	*out = v;
	return p;
}

/* [+-]hh[:mm[:ss]] in seconds; hours up to 167 as POSIX.1-2024 allows. */
static const char *tz_hms(const char *p, int32_t *out)
{
	int sign = 1, h = 0, m = 0, s = 0;

	if (*p == '+' || *p == '-')
		sign = *p++ == '-' ? -1 : 1;
	if ((p = tz_num(p, 167, &h)) == NULL)
		return NULL;
	if (*p == ':' && (p = tz_num(p + 1, 59, &m)) != NULL && *p == ':')
		p = tz_num(p + 1, 59, &s);
	if (p == NULL)
		return NULL;
	*out = sign * (h * 3600 + m * 60 + s);
	return p;
}

static const char *tz_date(const char *p, struct tz_rule_date *d)
{
	d->time = 7200;
	if (*p == 'M') {
		d->kind = 'M';
		if ((p = tz_num(p + 1, 12, &d->month)) == NULL || d->month < 1 || *p != '.' ||
		    (p = tz_num(p + 1, 5, &d->week)) == NULL || d->week < 1 || *p != '.' ||
		    (p = tz_num(p + 1, 6, &d->day)) == NULL)
			return NULL;
	} else if (*p == 'J') {
		d->kind = 'J';
		if ((p = tz_num(p + 1, 365, &d->day)) == NULL || d->day < 1)
			return NULL;
	} else {
		d->kind = 'D';
		if ((p = tz_num(p, 365, &d->day)) == NULL)
			return NULL;
	}
	if (*p == '/')
		p = tz_hms(p + 1, &d->time);
	return p;
}

static int tz_rule_parse(const char *p, struct tz_rule *r)
{
	int32_t off;

	memset(r, 0, sizeof(*r));
	if ((p = tz_name(p)) == NULL || (p = tz_hms(p, &off)) == NULL)
		return -EINVAL;
	r->std_off = -off; /* POSIX offsets are west-positive */
	r->present = 1;
	if (*p == '\0')
		return 0;
	if ((p = tz_name(p)) == NULL)
		return -EINVAL;
	r->has_dst = 1;
	r->dst_off = r->std_off + 3600;
	if (*p != ',' && *p != '\0') {
		if ((p = tz_hms(p, &off)) == NULL)
			return -EINVAL;
		r->dst_off = -off;
	}
	if (*p == '\0') { /* no rule given: the US rules, as glibc assumes */
		r->start = (struct tz_rule_date){'M', 0, 2, 3, 7200};
		r->end = (struct tz_rule_date){'M', 0, 1, 11, 7200};
		return 0;
	}
	if (*p != ',' || (p = tz_date(p + 1, &r->start)) == NULL || *p != ',' ||
	    (p = tz_date(p + 1, &r->end)) == NULL || *p != '\0')
		return -EINVAL;
	return 0;
}

/* Local seconds since the epoch (as if UTC) at which `d` happens in `y`. */
static int64_t tz_rule_local(const struct tz_rule_date *d, int64_t y)
{
	int64_t days;

	if (d->kind == 'J') {
		days = rec__days_from_civil(y, 1, 1) + d->day - 1;
		if (rec__is_leap(y) && d->day >= 60)
			days++;
	} else if (d->kind == 'D') {
		days = rec__days_from_civil(y, 1, 1) + d->day;
	} else {
		int64_t first = rec__days_from_civil(y, (unsigned)d->month, 1);
		unsigned wd = rec__weekday(first);
		int64_t day = first + (int64_t)((d->day - (int)wd + 7) % 7) + (d->week - 1) * 7;
		unsigned dim = rec__days_in_month(y, (unsigned)d->month);
		while (day >= first + dim)
			day -= 7;
		days = day;
	}
	return days * 86400 + d->time;
}

/* The rule's transitions in years y-1..y+1, as (instant, offset after). */
static size_t tz_rule_events(const struct tz_rule *r, int64_t y, int64_t *at, int32_t *off)
{
	size_t n = 0, i, j;

	for (int64_t yy = y - 1; yy <= y + 1; yy++) {
		at[n] = tz_rule_local(&r->start, yy) - r->std_off;
		off[n++] = r->dst_off;
		at[n] = tz_rule_local(&r->end, yy) - r->dst_off;
		off[n++] = r->std_off;
	}
	for (i = 1; i < n; i++) /* insertion sort of six */
		for (j = i; j > 0 && at[j] < at[j - 1]; j--) {
			int64_t ta = at[j];
			int32_t to = off[j];
			at[j] = at[j - 1];
			off[j] = off[j - 1];
			at[j - 1] = ta;
			off[j - 1] = to;
		}
	return n;
}

static int64_t year_of(int64_t t)
{
	int64_t y, days = t / 86400 - (t % 86400 < 0);
	unsigned m, d;

	rec__civil_from_days(days, &y, &m, &d);
	return y;
}

static int32_t tz_rule_offset(const struct tz_rule *r, int64_t t)
{
	int64_t at[6];
	int32_t off[6], cur;
	size_t n, i;

	if (!r->has_dst)
		return r->std_off;
	n = tz_rule_events(r, year_of(t), at, off);
	cur = off[0] == r->dst_off ? r->std_off : r->dst_off;
	for (i = 0; i < n && at[i] <= t; i++)
		cur = off[i];
	return cur;
}

static int64_t tz_rule_next(const struct tz_rule *r, int64_t t)
{
	int64_t at[6], y;
	int32_t off[6];
	size_t n, i;

	if (!r->present || !r->has_dst)
		return INT64_MAX;
	for (y = year_of(t); y <= year_of(t) + 2; y++) {
		n = tz_rule_events(r, y, at, off);
		for (i = 0; i < n; i++)
			if (at[i] > t)
				return at[i];
	}
	return INT64_MAX;
}

int32_t rec_zone_offset(const struct rec_zone *z, int64_t t)
{
	size_t lo = 0, hi;

	if (z == NULL)
		return 0;
	if (z->ntrans == 0)
		return z->rule.present ? tz_rule_offset(&z->rule, t) : z->initial;
	if (t < z->trans[0])
		return z->initial;
	if (t >= z->trans[z->ntrans - 1] && z->rule.present)
		return tz_rule_offset(&z->rule, t);
	hi = z->ntrans; /* find the last trans <= t */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (z->trans[mid] <= t)
			lo = mid;
		else
			hi = mid;
	}
	return z->offs[lo];
}

int64_t rec__zone_next_transition(const struct rec_zone *z, int64_t t)
{
	size_t lo = 0, hi;

	if (z == NULL)
		return INT64_MAX;
	if (z->ntrans == 0 || t >= z->trans[z->ntrans - 1])
		return tz_rule_next(&z->rule, t);
	if (t < z->trans[0])
		return z->trans[0];
	hi = z->ntrans;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (z->trans[mid] <= t)
			lo = mid;
		else
			hi = mid;
	}
	return z->trans[lo + 1];
}

/* ---- TZif ---- */

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
	return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

struct tzif_hdr {
	int version;
	uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
};

static int tzif_header(const unsigned char *p, size_t len, struct tzif_hdr *h)
{
	if (len < 44 || memcmp(p, "TZif", 4) != 0)
		return -EINVAL;
	h->version = p[4] ? p[4] - '0' : 1;
	h->isutcnt = be32(p + 20);
	h->isstdcnt = be32(p + 24);
	h->leapcnt = be32(p + 28);
	h->timecnt = be32(p + 32);
	h->typecnt = be32(p + 36);
	h->charcnt = be32(p + 40);
	if (h->typecnt == 0 || h->typecnt > 256 || h->timecnt > 100000 || h->leapcnt > 10000 ||
	    h->charcnt > 100000 || h->isutcnt > 256 || h->isstdcnt > 256)
		return -EINVAL;
	return 0;
}

static size_t tzif_block_len(const struct tzif_hdr *h, size_t tsize)
{
	return h->timecnt * tsize + h->timecnt + h->typecnt * 6 + h->charcnt +
	       h->leapcnt * (tsize + 4) + h->isstdcnt + h->isutcnt;
}

/* Fills the zone's table from one data block with `tsize`-byte times. */
static int tzif_block(struct rec_zone *z, const struct tzif_hdr *h, const unsigned char *p,
                      size_t tsize)
{
	const unsigned char *idx = p + h->timecnt * tsize, *types = idx + h->timecnt;
	size_t i;

	z->ntrans = h->timecnt;
	if (z->ntrans) {
		z->trans = calloc(z->ntrans, sizeof(*z->trans));
		z->offs = calloc(z->ntrans, sizeof(*z->offs));
		if (z->trans == NULL || z->offs == NULL)
			return -ENOMEM;
	}
	for (i = 0; i < z->ntrans; i++) {
		z->trans[i] = tsize == 8 ? be64(p + 8 * i) : (int32_t)be32(p + 4 * i);
		if (idx[i] >= h->typecnt || (i > 0 && z->trans[i] <= z->trans[i - 1]))
			return -EINVAL;
		z->offs[i] = (int32_t)be32(types + 6 * idx[i]);
	}
	z->initial = (int32_t)be32(types);
	for (i = 0; i < 6 * h->typecnt; i += 6) {
		int32_t o = (int32_t)be32(types + i);
		if (o < -26 * 3600 || o > 26 * 3600)
			return -EINVAL;
	}
	return 0;
}

static int tzif_parse(struct rec_zone *z, const unsigned char *p, size_t len)
{
	struct tzif_hdr h;
	size_t blen, tsize = 4;
	const unsigned char *end = p + len;
	int rc;

	if ((rc = tzif_header(p, len, &h)) < 0)
		return rc;
	blen = tzif_block_len(&h, 4);
	if (44 + blen > len)
		return -EINVAL;
	if (h.version >= 2) { /* skip v1, use the 64-bit block */
		p += 44 + blen;
		len -= 44 + blen;
		if ((rc = tzif_header(p, len, &h)) < 0)
			return rc;
		tsize = 8;
		blen = tzif_block_len(&h, 8);
		if (44 + blen > len)
			return -EINVAL;
	}
	if ((rc = tzif_block(z, &h, p + 44, tsize)) < 0)
		return rc;
	p += 44 + blen;
	if (h.version >= 2 && p < end && *p == '\n') {
		char footer[128];
		const unsigned char *nl = memchr(p + 1, '\n', (size_t)(end - p - 1));
		size_t fl = nl ? (size_t)(nl - p - 1) : 0;
		if (nl == NULL || fl >= sizeof(footer))
			return -EINVAL;
		memcpy(footer, p + 1, fl);
		footer[fl] = '\0';
		if (fl > 0 && tz_rule_parse(footer, &z->rule) < 0)
			return -EINVAL;
	}
	return 0;
}

int rec_zone_from_tzif(const char *name, const void *data, size_t len, struct rec_zone **out)
{
	struct rec_zone *z = calloc(1, sizeof(*z));
	int rc;

	if (z == NULL)
		return -ENOMEM;
	z->refs = 1;
	snprintf(z->name, sizeof(z->name), "%s", name ? name : "");
	rc = tzif_parse(z, data, len);
	if (rc < 0) {
		rec_zone_unref(z);
		return rc;
	}
	*out = z;
	return 0;
}

int rec_zone_name_valid(const char *name)
{
	const char *p;

	if (name == NULL || name[0] == '\0' || name[0] == '/' || strlen(name) > 63)
		return 0;
	for (p = name; *p; p++) {
		char c = *p;
		int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		         (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '+' || c == '/' ||
		         c == '.';
		if (!ok || (c == '/' && p[1] == '/'))
			return 0;
		if (c == '.' && (p == name || p[-1] == '/') && p[1] == '.')
			return 0; /* a ".." component */
	}
	return p[-1] != '/';
}

const struct rec_zone *rec_zone_builtin(const char *name)
{
	if (name && (strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0))
		return &utc_zone;
	return NULL;
}

int rec_zone_path(const char *dir, const char *name, char *buf, size_t len)
{
	int n;

	if (!rec_zone_name_valid(name))
		return -EINVAL;
	n = snprintf(buf, len, "%s/%s", dir ? dir : REC_ZONEINFO_DIR, name);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}
