/* reconcile/cron.c: CronJob schedules.
 *
 * The grammar is robfig/cron v3's standard parser, which Kubernetes'
 * CronJob controller uses, plus weekday 7 = Sunday from Vixie cron. Next
 * fire times are computed on local wall-clock time, stepping whole fields
 * at a time and never across a zone transition in one step, so every step
 * between transitions is exact. See reconcile.h for the DST semantics. */
#include "reconcile/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HORIZON_S (9LL * 366 * 86400) /* covers Feb 29 across 2100 */

enum { SCHED_CRON = 0, SCHED_EVERY = 1 };

struct rec_schedule {
	int kind;
	uint64_t minute; /* bit per allowed value */
	uint64_t hour;
	uint64_t dom;
	uint64_t month;
	uint64_t dow;
	int dom_star, dow_star;
	int64_t every_ms;
	int64_t period_s;
	const struct rec_zone *zone; /* reffed */
};

struct field_def {
	const char *name;
	int min, max;
	int star_max; /* the top of "*" and "N/step": 6 for weekdays, where 7 is an alias */
	const char *const *names; /* 3-letter names for min.. */
	int names_base;
};

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul",
                                          "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const dow_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const struct field_def fields[5] = {
        {"minute", 0, 59, 59, NULL, 0},         {"hour", 0, 23, 23, NULL, 0},
        {"day-of-month", 1, 31, 31, NULL, 0},   {"month", 1, 12, 12, month_names, 1},
        {"day-of-week", 0, 7, 6, dow_names, 0},
};

/* Parses a number or (case-insensitive) name of exactly `n` bytes. */
static int parse_value(const struct field_def *f, const char *s, size_t n, int *out, char *err,
                       size_t errlen)
{
	size_t i;
	int v = 0;

	if (f->names && n == 3) {
		for (i = 0; f->names[i]; i++)
			if (strncasecmp(s, f->names[i], 3) == 0) {
				*out = (int)i + f->names_base;
				return 0;
			}
	}
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9' || i >= 4)
			goto bad;
		v = v * 10 + (s[i] - '0');
	}
	if (n == 0)
		goto bad;
	*out = v;
	return 0;
bad:
	snprintf(err, errlen, "%s field: cannot parse \"%.*s\" as a number%s", f->name, (int)n, s,
	         f->names ? " or name" : "");
	return -EINVAL;
}

/* The positive step after the '/' at `slash` in the element s[0..n). */
static int parse_step(const struct field_def *f, const char *s, size_t n, const char *slash,
                      int *step, char *err, size_t errlen)
{
	size_t sn = n - (size_t)(slash - s) - 1, i;
	int v = 0;

	for (i = 0; i < sn && i < 4; i++) {
		if (slash[1 + i] < '0' || slash[1 + i] > '9')
			break;
		v = v * 10 + (slash[1 + i] - '0');
	}
	if (sn == 0 || i < sn || v == 0) {
		snprintf(err, errlen, "%s field: step must be a positive number in \"%.*s\"",
		         f->name, (int)n, s);
		return -EINVAL;
	}
	*step = v;
	return 0;
}

/* One comma-separated element: "*", "?", "N", "N-M", each with "/step". */
static int parse_range(const struct field_def *f, const char *s, size_t n, uint64_t *bits,
                       int *star, char *err, size_t errlen)
{
	const char *slash = memchr(s, '/', n), *dash;
	size_t rn = slash ? (size_t)(slash - s) : n;
	int start, end, step = 1, is_star = 0, single = 0;

	if (slash && memchr(slash + 1, '/', n - rn - 1)) {
		snprintf(err, errlen, "%s field: too many slashes in \"%.*s\"", f->name, (int)n, s);
		return -EINVAL;
	}
	dash = memchr(s, '-', rn);
	if (rn == 1 && (s[0] == '*' || s[0] == '?')) {
		start = f->min;
		end = f->star_max;
		is_star = 1;
	} else if (dash) {
		if (memchr(dash + 1, '-', rn - (size_t)(dash - s) - 1)) {
			snprintf(err, errlen, "%s field: too many hyphens in \"%.*s\"", f->name,
			         (int)n, s);
			return -EINVAL;
		}
		if (parse_value(f, s, (size_t)(dash - s), &start, err, errlen) ||
		    parse_value(f, dash + 1, rn - (size_t)(dash - s) - 1, &end, err, errlen))
			return -EINVAL;
	} else {
		if (parse_value(f, s, rn, &start, err, errlen))
			return -EINVAL;
		end = start;
		single = 1;
	}
	if (slash) {
		if (parse_step(f, s, n, slash, &step, err, errlen))
			return -EINVAL;
		if (single)
			end = start > f->star_max ? start : f->star_max; /* "N/step" = N-max */
		if (step > 1)
			is_star = 0; /* robfig: "*\/2" restricts the field */
	}
	if (start < f->min) {
		snprintf(err, errlen, "%s field: %d is below the minimum %d", f->name, start,
		         f->min);
		return -EINVAL;
	}
	if (end > f->max) {
		snprintf(err, errlen, "%s field: %d is above the maximum %d", f->name, end, f->max);
		return -EINVAL;
	}
	if (start > end) {
		snprintf(err, errlen, "%s field: range start %d is after its end %d", f->name,
		         start, end);
		return -EINVAL;
	}
	for (int v = start; v <= end; v += step)
		*bits |= 1ULL << (v == 7 && f->max == 7 ? 0 : v);
	*star |= is_star;
	return 0;
}

static int parse_field(const struct field_def *f, const char *s, size_t n, uint64_t *bits,
                       int *star, char *err, size_t errlen)
{
	const char *end = s + n;

	*bits = 0;
	*star = 0;
	while (s <= end) {
		const char *comma = memchr(s, ',', (size_t)(end - s));
		size_t len = comma ? (size_t)(comma - s) : (size_t)(end - s);
		if (len == 0) {
			snprintf(err, errlen, "%s field: empty list element", f->name);
			return -EINVAL;
		}
		if (parse_range(f, s, len, bits, star, err, errlen))
			return -EINVAL;
		if (comma == NULL)
			break;
		s = comma + 1;
	}
	return 0;
}

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int parse_cron(struct rec_schedule *s, const char *spec, char *err, size_t errlen)
{
	const char *starts[6];
	size_t lens[6], nf = 0;
	const char *p = spec;
	uint64_t *dst[5] = {&s->minute, &s->hour, &s->dom, &s->month, &s->dow};
	int star, rc;

	while (*p) {
		while (is_space(*p))
			p++;
		if (*p == '\0')
			break;
		const char *b = p;
		while (*p && !is_space(*p))
			p++;
		if (nf < 6) {
			starts[nf] = b;
			lens[nf] = (size_t)(p - b);
		}
		nf++;
	}
	if (nf != 5) {
		snprintf(err, errlen,
		         "expected exactly 5 fields (minute hour day-of-month month day-of-week), "
		         "found %zu",
		         nf);
		return -EINVAL;
	}
	for (size_t i = 0; i < 5; i++) {
		rc = parse_field(&fields[i], starts[i], lens[i], dst[i], &star, err, errlen);
		if (rc)
			return rc;
		if (i == 2)
			s->dom_star = star;
		if (i == 4)
			s->dow_star = star;
	}
	return 0;
}

int rec_go_duration_ms(const char *s, int64_t *out_ms)
{
	static const struct {
		const char *u;
		int64_t ns;
	} units[] = {
	        {"ns", 1},       {"us", 1000},        {"\xc2\xb5s", 1000},  {"\xce\xbcs", 1000},
	        {"ms", 1000000}, {"s", 1000000000LL}, {"m", 60000000000LL}, {"h", 3600000000000LL}};
	const double max_ns = 9.2e18;
	double total = 0;

	if (s == NULL || *s == '\0' || *s == '-')
		return -EINVAL;
	if (*s == '+')
		s++;
	if (strcmp(s, "0") == 0) {
		*out_ms = 0;
		return 0;
	}
	while (*s) {
		double v = 0, scale = 1;
		int nd = 0, fd = 0;
		size_t i, best = 0, bi = 0;
		for (; *s >= '0' && *s <= '9'; s++, nd++)
			v = v * 10 + (*s - '0');
		if (*s == '.')
			for (s++; *s >= '0' && *s <= '9'; s++, fd++)
				v += (*s - '0') * (scale /= 10);
		if (nd + fd == 0 || nd > 20)
			return -EINVAL;
		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
			size_t ul = strlen(units[i].u);
			if (strncmp(s, units[i].u, ul) == 0 && ul > best) {
				best = ul;
				bi = i;
			}
		}
		if (best == 0)
			return -EINVAL;
		s += best;
		total += v * (double)units[bi].ns;
		if (total > max_ns)
			return -EINVAL;
	}
	*out_ms = (int64_t)(total / 1e6);
	return 0;
}

static int parse_descriptor(struct rec_schedule *s, const char *spec, char *err, size_t errlen)
{
	static const struct {
		const char *name, *cron;
	} desc[] = {{"@yearly", "0 0 1 1 *"},  {"@annually", "0 0 1 1 *"},
	            {"@monthly", "0 0 1 * *"}, {"@weekly", "0 0 * * 0"},
	            {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
	            {"@hourly", "0 * * * *"}};
	size_t i;

	if (strncmp(spec, "@every", 6) == 0 && is_space(spec[6])) {
		const char *d = spec + 7;
		int64_t ms;
		while (is_space(*d))
			d++;
		if (rec_go_duration_ms(d, &ms) < 0) {
			snprintf(err, errlen,
			         "@every needs a Go duration such as 30s, 5m or 1h30m, got "
			         "\"%.40s\"",
			         d);
			return -EINVAL;
		}
		if (ms < 1000) {
			snprintf(err, errlen, "@every %.40s is shorter than the minimum of 1s", d);
			return -EINVAL;
		}
		s->kind = SCHED_EVERY;
		s->every_ms = ms - ms % 1000;
		return 0;
	}
	for (i = 0; i < sizeof(desc) / sizeof(desc[0]); i++)
		if (strcmp(spec, desc[i].name) == 0)
			return parse_cron(s, desc[i].cron, err, errlen);
	snprintf(err, errlen,
	         "unknown descriptor \"%.40s\" (use @yearly, @annually, @monthly, @weekly, @daily, "
	         "@midnight, @hourly or @every <duration>)",
	         spec);
	return -EINVAL;
}

static int day_matches(const struct rec_schedule *s, int64_t days, unsigned d)
{
	int dom = (s->dom >> d) & 1, dow = (s->dow >> rec__weekday(days)) & 1;

	if (s->dom_star || s->dow_star)
		return dom && dow;
	return dom || dow;
}

static int next_bit(uint64_t bits, unsigned from, unsigned max)
{
	for (unsigned v = from; v <= max; v++)
		if ((bits >> v) & 1)
			return (int)v;
	return -1;
}

/* The local wall time (seconds, as if UTC) of the next candidate at or
 * after local time `l`; returns l itself when l matches. */
static int64_t next_candidate(const struct rec_schedule *s, int64_t l)
{
	int64_t days = l / 86400 - (l % 86400 < 0), sod = l - days * 86400, y;
	unsigned m, d, h = (unsigned)(sod / 3600), mi = (unsigned)(sod / 60 % 60);
	int nb;

	if (sod % 60)
		return l - sod % 60 + 60;
	rec__civil_from_days(days, &y, &m, &d);
	if (!((s->month >> m) & 1)) {
		nb = next_bit(s->month, m + 1, 12);
		if (nb < 0)
			return rec__days_from_civil(y + 1, (unsigned)next_bit(s->month, 1, 12), 1) *
			       86400;
		return rec__days_from_civil(y, (unsigned)nb, 1) * 86400;
	}
	if (!day_matches(s, days, d))
		return (days + 1) * 86400;
	if (!((s->hour >> h) & 1)) {
		nb = next_bit(s->hour, h + 1, 23);
		return nb < 0 ? (days + 1) * 86400 : days * 86400 + nb * 3600;
	}
	if (!((s->minute >> mi) & 1)) {
		nb = next_bit(s->minute, mi + 1, 59);
		return nb < 0 ? days * 86400 + (h + 1) * 3600 : days * 86400 + h * 3600 + nb * 60;
	}
	return l;
}

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t cron_next(const struct rec_schedule *s, int64_t after_ms)
{
	int64_t t = floor_div(after_ms, 60000) * 60 + 60, limit = t + HORIZON_S;

	while (t <= limit) {
		int64_t l = t + rec_zone_offset(s->zone, t), c = next_candidate(s, l);
		int64_t tr;
		if (c == l)
			return t * 1000;
		tr = rec__zone_next_transition(s->zone, t);
		t = tr <= t + (c - l) ? tr : t + (c - l);
	}
	return -1;
}

int64_t rec_schedule_next(const struct rec_schedule *s, int64_t after_ms)
{
	if (after_ms > INT64_MAX / 2 || after_ms < INT64_MIN / 2)
		return -1;
	if (s->kind == SCHED_EVERY)
		return floor_div(after_ms, 1000) * 1000 + s->every_ms;
	if (after_ms > INT64_MAX / 2 || after_ms < INT64_MIN / 2)
		return -1;
	return cron_next(s, after_ms);
}

/* The smallest cyclic gap between set bits in [0, n), or n for one bit. */
static int64_t cyclic_gap(uint64_t bits, int n)
{
	int first = -1, last = -1, gap = n;

	for (int v = 0; v < n; v++) {
		if (!((bits >> v) & 1))
			continue;
		if (last >= 0 && v - last < gap)
			gap = v - last;
		if (first < 0)
			first = v;
		last = v;
	}
	if (first >= 0 && first + n - last < gap)
		gap = first + n - last;
	return gap;
}

/* A lower bound on the gap between two fires, in ms: a gap is at least the
 * tightest minute spacing, or with one minute the tightest hour spacing,
 * or with one minute and one hour the tightest day spacing (weekdays
 * cyclic over 7, days of the month over the shortest month, 28 days).
 * Lets cron_period stop as soon as a gap meets it. */
static int64_t cron_gap_bound(const struct rec_schedule *s)
{
	int64_t m = cyclic_gap(s->minute, 60), d = 1;

	if (m < 60)
		return m * 60000;
	m = cyclic_gap(s->hour, 24);
	if (m < 24)
		return m * 3600000;
	if (s->dom_star && !s->dow_star) {
		d = cyclic_gap(s->dow & 0x7f, 7);
	} else if (s->dow_star && !s->dom_star) {
		int first = next_bit(s->dom, 1, 31), last = first;
		d = 28;
		for (int v = first + 1; v <= 31; v++)
			if ((s->dom >> v) & 1) {
				d = v - last < d ? v - last : d;
				last = v;
			}
		d = first + 28 - last < d ? first + 28 - last : d;
		d = d < 1 ? 1 : d;
	}
	return d * 86400000;
}

/* Enumerates fires in UTC from 2024-01-01 and keeps the smallest gap,
 * stopping once a gap meets the lower bound. */
static int64_t cron_period(const struct rec_schedule *s)
{
	struct rec_schedule u = *s;
	int64_t ref = 1704067200000LL, prev, next, best = -1, bound = cron_gap_bound(s);
	int i;

	u.zone = rec_zone_utc();
	prev = rec_schedule_next(&u, ref - 1);
	for (i = 0; i < 1000 && prev >= 0 && prev < ref + 8 * 366 * 86400000LL; i++) {
		next = rec_schedule_next(&u, prev);
		if (next < 0)
			break;
		if (best < 0 || next - prev < best)
			best = next - prev;
		if (best <= bound)
			break;
		prev = next;
	}
	return best < 0 ? -1 : best / 1000;
}

int rec_schedule_parse(const char *spec, const struct rec_zone *zone, struct rec_schedule **out,
                       char *err, size_t errlen)
{
	struct rec_schedule *s;
	int rc;

	if (spec == NULL || strlen(spec) > 256) {
		snprintf(err, errlen, "schedule must be 1 to 256 characters");
		return -EINVAL;
	}
	while (is_space(*spec))
		spec++;
	if (*spec == '\0') {
		snprintf(err, errlen, "schedule is empty");
		return -EINVAL;
	}
	if (strncmp(spec, "TZ=", 3) == 0 || strncmp(spec, "CRON_TZ=", 8) == 0) {
		snprintf(err, errlen,
		         "TZ= and CRON_TZ= are not supported in the schedule; "
		         "set spec.timeZone instead");
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->zone = zone ? zone : rec_zone_utc();
	rc = spec[0] == '@' ? parse_descriptor(s, spec, err, errlen)
	                    : parse_cron(s, spec, err, errlen);
	if (rc)
		goto out_free;
	if (s->kind == SCHED_EVERY) {
		s->period_s = s->every_ms / 1000;
	} else {
		s->period_s = cron_period(s);
		if (s->period_s < 0) {
			snprintf(err, errlen, "schedule never fires (no such day in any month)");
			rc = -EINVAL;
			goto out_free;
		}
	}
	rec_zone_ref(s->zone);
	*out = s;
	return 0;
out_free:
	free(s);
	return rc;
}

int64_t rec_schedule_period_s(const struct rec_schedule *s)
{
	return s->period_s;
}

void rec_schedule_free(struct rec_schedule *s)
{
	if (s == NULL)
		return;
	rec_zone_unref(s->zone);
	free(s);
}
