/* capture/pprof.c: the pprof sanity checker and type detection.
 *
 * The checker runs on every captured profile, so it never decompresses more
 * than it needs: it inflates in 4 KiB steps and walks the top-level protobuf
 * fields of the Profile message until the first sample (field 2). Go's
 * runtime/pprof writes period/sample types, then each sample (with the
 * locations and functions it first references), and only then mappings
 * (field 3) and the string table (field 6). So a mapping or string table
 * before any sample means the profile is empty.
 */
#include "capture/capture.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Protobuf wire types. */
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* Top-level fields of perftools.profiles.Profile. */
enum {
	F_SAMPLE_TYPE = 1,
	F_SAMPLE = 2,
	F_MAPPING = 3,
	F_LOCATION = 4,
	F_FUNCTION = 5,
	F_STRING_TABLE = 6,
	F_PERIOD_TYPE = 11,
	F_COMMENT = 13,
	F_DEFAULT_SAMPLE_TYPE = 14,
	F_MAX = 14
};

/* End of stream, corrupt input, and the scan bound, as src_byte() returns them. */
enum { SRC_EOF = -1, SRC_BAD = -2, SRC_BOUND = -3 };

/* A byte source over plain or gzipped input, bounded to CAP_PPROF_SCAN_MAX
 * bytes of protobuf. */
struct src {
	const unsigned char *in;
	size_t in_len;
	size_t pos; /* plain input: next byte */
	int gz;
	int gz_end; /* inflate() said Z_STREAM_END */
	z_stream zs;
	unsigned char win[4096];
	size_t win_len, win_pos;
	size_t consumed;
	size_t bound;
};

static int src_init(struct src *s, const void *data, size_t len, size_t bound)
{
	memset(s, 0, sizeof(*s));
	s->in = data;
	s->in_len = len;
	s->bound = bound;
	if (len >= 2 && s->in[0] == 0x1f && s->in[1] == 0x8b) {
		s->gz = 1;
		s->zs.next_in = (unsigned char *)s->in;
		s->zs.avail_in = len > UINT32_MAX ? UINT32_MAX : (uInt)len;
		/* 16 + MAX_WBITS: a gzip wrapper only. */
		if (inflateInit2(&s->zs, 16 + MAX_WBITS) != Z_OK)
			return -ENOMEM;
	}
	return 0;
}

static void src_end(struct src *s)
{
	if (s->gz)
		inflateEnd(&s->zs);
}

/* Refills the window from inflate. Returns 0, SRC_EOF or SRC_BAD. */
static int src_fill(struct src *s)
{
	s->win_pos = 0;
	s->win_len = 0;
	while (s->win_len == 0) {
		if (s->gz_end)
			return SRC_EOF;
		s->zs.next_out = s->win;
		s->zs.avail_out = sizeof(s->win);
		uInt before = s->zs.avail_in;
		int zrc = inflate(&s->zs, Z_NO_FLUSH);
		s->win_len = sizeof(s->win) - s->zs.avail_out;
		if (zrc == Z_STREAM_END)
			s->gz_end = 1;
		else if (zrc != Z_OK)
			return SRC_BAD; /* corrupt, or truncated: input ran out first */
		else if (s->win_len == 0 && (s->zs.avail_in == 0 || s->zs.avail_in == before))
			return SRC_BAD;
	}
	return 0;
}

static int src_byte(struct src *s)
{
	if (s->consumed >= s->bound)
		return SRC_BOUND;
	if (!s->gz) {
		if (s->pos >= s->in_len)
			return SRC_EOF;
		s->consumed++;
		return s->in[s->pos++];
	}
	if (s->win_pos == s->win_len) {
		int rc = src_fill(s);
		if (rc < 0)
			return rc;
	}
	s->consumed++;
	return s->win[s->win_pos++];
}

/* Skips `n` bytes. Returns 0, or SRC_BAD when the input ends first, or
 * SRC_BOUND past the bound. */
static int src_skip(struct src *s, uint64_t n)
{
	while (n > 0) {
		if (s->consumed >= s->bound || n > s->bound - s->consumed)
			return SRC_BOUND;
		if (!s->gz) {
			if (n > s->in_len - s->pos)
				return SRC_BAD;
			s->pos += n;
			s->consumed += n;
			return 0;
		}
		if (s->win_pos == s->win_len) {
			int rc = src_fill(s);
			if (rc < 0)
				return rc == SRC_EOF ? SRC_BAD : rc;
		}
		size_t take = s->win_len - s->win_pos;
		if (take > n)
			take = (size_t)n;
		s->win_pos += take;
		s->consumed += take;
		n -= take;
	}
	return 0;
}

/* Reads a varint. Returns 0, SRC_EOF at a clean end before its first byte,
 * SRC_BAD for a truncated or over-long varint, or SRC_BOUND. */
static int src_varint(struct src *s, uint64_t *v)
{
	*v = 0;
	for (int i = 0; i < 10; i++) {
		int c = src_byte(s);
		if (c < 0)
			return (c == SRC_EOF && i > 0) ? SRC_BAD : c;
		*v |= (uint64_t)(c & 0x7f) << (7 * i);
		if (!(c & 0x80))
			return 0;
	}
	return SRC_BAD;
}

/* The wire type each top-level field must have; -1 for a field number
 * pprof does not define. Comments (13) may also come packed. */
static int field_wire_type(uint64_t field)
{
	switch (field) {
	case 1:
	case 2:
	case 3:
	case 4:
	case 5:
	case 6:
	case 11:
		return WT_LEN;
	case 7:
	case 8:
	case 9:
	case 10:
	case 12:
	case 13:
	case 14:
		return WT_VARINT;
	default:
		return -1;
	}
}

/* Walks top-level fields until the verdict is known. */
static enum cap_pprof_verdict walk(struct src *s)
{
	int seen_sample_type = 0;
	for (;;) {
		uint64_t tag, v;
		int rc = src_varint(s, &tag);
		if (rc == SRC_EOF)
			return seen_sample_type ? CAP_PPROF_EMPTY : CAP_PPROF_NOT_PROFILE;
		if (rc < 0)
			return CAP_PPROF_NOT_PROFILE;
		uint64_t field = tag >> 3;
		int wt = (int)(tag & 7);
		int want = field == 0 || field > F_MAX ? -1 : field_wire_type(field);
		if (want < 0 || (wt != want && !(field == F_COMMENT && wt == WT_LEN)))
			return CAP_PPROF_NOT_PROFILE;
		if (field == F_SAMPLE)
			return seen_sample_type ? CAP_PPROF_HAS_SAMPLES : CAP_PPROF_NOT_PROFILE;
		if (field == F_MAPPING || field == F_STRING_TABLE)
			return seen_sample_type ? CAP_PPROF_EMPTY : CAP_PPROF_NOT_PROFILE;
		if (src_varint(s, &v) < 0)
			return CAP_PPROF_NOT_PROFILE;
		if (wt == WT_LEN) {
			if (field == F_SAMPLE_TYPE) {
				/* A ValueType is two small varints: 2..22 bytes. */
				if (v < 2 || v > 22)
					return CAP_PPROF_NOT_PROFILE;
				seen_sample_type = 1;
			}
			if (src_skip(s, v) < 0)
				return CAP_PPROF_NOT_PROFILE;
		}
	}
}

enum cap_pprof_verdict cap_pprof_check(const void *data, size_t len)
{
	struct src s;
	if (data == NULL || len == 0)
		return CAP_PPROF_NOT_PROFILE;
	if (src_init(&s, data, len, CAP_PPROF_SCAN_MAX) < 0)
		return CAP_PPROF_NOT_PROFILE;
	enum cap_pprof_verdict v = walk(&s);
	src_end(&s);
	return v;
}

/* ---- Type detection: a full, bounded decode -------------------------------- */

/* A length-delimited slice of the decoded message. */
struct span {
	const unsigned char *p;
	size_t n;
};

/* Reads a varint from a span. Returns 0 or -1. */
static int span_varint(struct span *s, uint64_t *v)
{
	*v = 0;
	for (int i = 0; i < 10 && s->n > 0; i++) {
		unsigned char c = *s->p++;
		s->n--;
		*v |= (uint64_t)(c & 0x7f) << (7 * i);
		if (!(c & 0x80))
			return 0;
	}
	return -1;
}

/* Reads one field header and, for LEN fields, the payload span. For
 * varints `*v` holds the value. Returns 0, 1 at the end, or -1. */
static int span_field(struct span *s, uint64_t *field, int *wt, uint64_t *v, struct span *payload)
{
	uint64_t tag;
	if (s->n == 0)
		return 1;
	if (span_varint(s, &tag) < 0)
		return -1;
	*field = tag >> 3;
	*wt = (int)(tag & 7);
	switch (*wt) {
	case WT_VARINT:
		return span_varint(s, v);
	case WT_LEN:
		if (span_varint(s, v) < 0 || *v > s->n)
			return -1;
		payload->p = s->p;
		payload->n = (size_t)*v;
		s->p += *v;
		s->n -= (size_t)*v;
		return 0;
	case WT_I64:
	case WT_I32: {
		size_t k = *wt == WT_I64 ? 8 : 4;
		if (s->n < k)
			return -1;
		s->p += k;
		s->n -= k;
		return 0;
	}
	default:
		return -1;
	}
}

/* Inflates all of `data` (or copies it when plain) into a malloc'd buffer
 * of at most `max` bytes. */
static int inflate_all(const void *data, size_t len, size_t max, unsigned char **out, size_t *olen)
{
	const unsigned char *in = data;
	if (!(len >= 2 && in[0] == 0x1f && in[1] == 0x8b)) {
		if (len > max)
			return -EFBIG;
		*out = malloc(len ? len : 1);
		if (*out == NULL)
			return -ENOMEM;
		memcpy(*out, data, len);
		*olen = len;
		return 0;
	}
	struct src s;
	size_t alloc = 0, n = 0;
	unsigned char *buf = NULL;
	int rc = src_init(&s, data, len, max + 1);
	if (rc < 0)
		return rc;
	for (;;) {
		int c = src_byte(&s);
		if (c == SRC_EOF)
			break;
		if (c < 0) {
			rc = c == SRC_BOUND ? -EFBIG : -EINVAL;
			goto out_free;
		}
		if (n == alloc) {
			size_t na = alloc ? alloc * 2 : 16384;
			unsigned char *nb = realloc(buf, na);
			if (nb == NULL) {
				rc = -ENOMEM;
				goto out_free;
			}
			buf = nb;
			alloc = na;
		}
		buf[n++] = (unsigned char)c;
		if (n > max) {
			rc = -EFBIG;
			goto out_free;
		}
	}
	src_end(&s);
	*out = buf;
	*olen = n;
	return 0;
out_free:
	src_end(&s);
	free(buf);
	return rc;
}

#define MAX_VT 16 /* sample types we look at */

struct vt {
	uint64_t type, unit;
};

struct decoded {
	struct vt st[MAX_VT];
	size_t nst;
	struct vt period;
	int has_period;
	uint64_t default_st;
	struct span *strs;
	size_t nstrs, astrs;
};

static int decode_vt(struct span p, struct vt *vt)
{
	uint64_t field, v;
	int wt, rc;
	struct span pl;
	memset(vt, 0, sizeof(*vt));
	while ((rc = span_field(&p, &field, &wt, &v, &pl)) == 0) {
		if (field == 1 && wt == WT_VARINT)
			vt->type = v;
		else if (field == 2 && wt == WT_VARINT)
			vt->unit = v;
	}
	return rc < 0 ? -1 : 0;
}

static int decode_top(struct span s, struct decoded *d)
{
	uint64_t field, v;
	int wt, rc;
	struct span pl;
	while ((rc = span_field(&s, &field, &wt, &v, &pl)) == 0) {
		int want = field == 0 || field > F_MAX ? -1 : field_wire_type(field);
		if (want < 0 || (wt != want && !(field == F_COMMENT && wt == WT_LEN)))
			return -EINVAL;
		if (field == F_SAMPLE_TYPE && d->nst < MAX_VT) {
			if (decode_vt(pl, &d->st[d->nst++]) < 0)
				return -EINVAL;
		} else if (field == F_PERIOD_TYPE) {
			if (decode_vt(pl, &d->period) < 0)
				return -EINVAL;
			d->has_period = 1;
		} else if (field == F_DEFAULT_SAMPLE_TYPE) {
			d->default_st = v;
		} else if (field == F_STRING_TABLE) {
			if (d->nstrs == d->astrs) {
				size_t na = d->astrs ? d->astrs * 2 : 64;
				struct span *ns = realloc(d->strs, na * sizeof(*ns));
				if (ns == NULL)
					return -ENOMEM;
				d->strs = ns;
				d->astrs = na;
			}
			d->strs[d->nstrs++] = pl;
		}
	}
	if (rc < 0)
		return -EINVAL;
	/* A profile's string table starts with "". */
	if (d->nst == 0 || d->nstrs == 0 || d->strs[0].n != 0)
		return -EINVAL;
	return 0;
}

static int str_is(const struct decoded *d, uint64_t idx, const char *want)
{
	size_t n = strlen(want);
	return idx < d->nstrs && d->strs[idx].n == n && memcmp(d->strs[idx].p, want, n) == 0;
}

static int has_vt(const struct decoded *d, const char *type, const char *unit)
{
	for (size_t i = 0; i < d->nst; i++)
		if (str_is(d, d->st[i].type, type) && str_is(d, d->st[i].unit, unit))
			return 1;
	return 0;
}

static int has_string(const struct decoded *d, const char *want)
{
	for (size_t i = 0; i < d->nstrs; i++)
		if (str_is(d, i, want))
			return 1;
	return 0;
}

static enum ppop_ptype classify(const struct decoded *d)
{
	if (has_vt(d, "cpu", "nanoseconds"))
		return PPOP_PT_CPU;
	if (has_vt(d, "alloc_space", "bytes") || has_vt(d, "inuse_space", "bytes"))
		return str_is(d, d->default_st, "alloc_space") ? PPOP_PT_ALLOCS : PPOP_PT_HEAP;
	if (has_vt(d, "goroutine", "count"))
		return PPOP_PT_GOROUTINE;
	if (has_vt(d, "threadcreate", "count"))
		return PPOP_PT_THREADCREATE;
	if (has_vt(d, "contentions", "count") && has_vt(d, "delay", "nanoseconds")) {
		/* Only the mutex profiler records stacks at the unlock. */
		if (has_string(d, "sync.(*Mutex).Unlock") ||
		    has_string(d, "sync.(*RWMutex).Unlock") ||
		    has_string(d, "sync.(*RWMutex).RUnlock") || has_string(d, "runtime.unlock"))
			return PPOP_PT_MUTEX;
		return PPOP_PT_BLOCK;
	}
	return PPOP_PT_OTHER;
}

int cap_pprof_detect_type(const void *data, size_t len, size_t max_bytes, enum ppop_ptype *out)
{
	unsigned char *buf = NULL;
	size_t n = 0;
	struct decoded d;
	int rc;
	if (data == NULL || len == 0 || out == NULL)
		return -EINVAL;
	rc = inflate_all(data, len, max_bytes ? max_bytes : (size_t)64 << 20, &buf, &n);
	if (rc < 0)
		return rc;
	memset(&d, 0, sizeof(d));
	rc = decode_top((struct span){buf, n}, &d);
	if (rc == 0)
		*out = classify(&d);
	free(d.strs);
	free(buf);
	return rc;
}
