/* capture/pprof.c: the pprof sanity checker and type detection.
 *
 * The checker runs on every captured profile, so it never decompresses more
 * than it needs: it inflates in small steps and walks the top-level protobuf
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

/* Inflated bytes per step of the checker. Go's first sample comes a few
 * hundred bytes in (after the locations and functions of its stack), so
 * small steps stop the inflating close to it. */
#define CHECK_STEP 512

/* A byte source over plain or gzipped input, bounded to `bound` bytes of
 * protobuf. A gzipped source inflates into `win`, one window at a time. */
struct src {
	const unsigned char *in;
	size_t in_len;
	size_t pos; /* plain input: next byte */
	int gz;
	int gz_end; /* inflate() said Z_STREAM_END */
	int gz_bad; /* inflate() failed after the bytes now in the window */
	z_stream *zs;
	unsigned char *win;
	size_t win_size, win_len, win_pos;
	size_t consumed;
	size_t bound;
};

struct cap_pprof_checker {
	z_stream zs;
	int zs_ready; /* zs is set up for raw deflate */
	unsigned char win[CHECK_STEP];
};

static int is_gzip(const unsigned char *p, size_t len)
{
	return len >= 2 && p[0] == 0x1f && p[1] == 0x8b;
}

static void src_plain(struct src *s, const void *data, size_t len, size_t bound)
{
	memset(s, 0, sizeof(*s));
	s->in = data;
	s->in_len = len;
	s->bound = bound;
}

/* Reads gzipped input through `zs`, which is set up already (and reset)
 * for the stream `in` starts. */
static void src_gz(struct src *s, z_stream *zs, const unsigned char *in, size_t len,
                   unsigned char *win, size_t win_size, size_t bound)
{
	src_plain(s, in, len, bound);
	s->gz = 1;
	s->zs = zs;
	s->win = win;
	s->win_size = win_size;
	zs->next_in = (unsigned char *)in;
	zs->avail_in = len > UINT32_MAX ? UINT32_MAX : (uInt)len;
}

/* The length of the gzip member header (RFC 1952) `p` starts with, or 0
 * when it is malformed or cut short. The checker inflates the deflate data
 * after it as raw deflate: it stops long before the trailer, so the CRC
 * that a gzip-wrapped inflate computes over every byte would be wasted. */
static size_t gzip_header_len(const unsigned char *p, size_t n)
{
	enum { FHCRC = 2, FEXTRA = 4, FNAME = 8, FCOMMENT = 16, FRESERVED = 0xe0 };
	size_t i = 10;
	if (n < 10 || !is_gzip(p, n) || p[2] != Z_DEFLATED || (p[3] & FRESERVED))
		return 0;
	if (p[3] & FEXTRA) {
		if (n - i < 2)
			return 0;
		size_t xlen = p[i] | (size_t)p[i + 1] << 8;
		i += 2;
		if (n - i < xlen)
			return 0;
		i += xlen;
	}
	for (unsigned flag = FNAME; flag <= FCOMMENT; flag <<= 1) {
		if (!(p[3] & flag))
			continue;
		const unsigned char *z = memchr(p + i, 0, n - i);
		if (z == NULL)
			return 0;
		i = (size_t)(z - p) + 1;
	}
	if (p[3] & FHCRC) {
		if (n - i < 2)
			return 0;
		i += 2;
	}
	return i;
}

/* Refills the window from inflate. Returns 0, SRC_EOF or SRC_BAD. Bytes
 * inflated before a fault are handed out first: a fault past the point
 * where the verdict is known does not matter. */
static int src_fill(struct src *s)
{
	s->win_pos = 0;
	s->win_len = 0;
	while (s->win_len == 0) {
		if (s->gz_end)
			return SRC_EOF;
		if (s->gz_bad)
			return SRC_BAD;
		s->zs->next_out = s->win;
		s->zs->avail_out = (uInt)s->win_size;
		uInt before = s->zs->avail_in;
		int zrc = inflate(s->zs, Z_NO_FLUSH);
		s->win_len = s->win_size - s->zs->avail_out;
		if (zrc == Z_STREAM_END)
			s->gz_end = 1;
		else if (zrc != Z_OK) /* corrupt, or truncated: input ran out first */
			s->gz_bad = 1;
		else if (s->win_len == 0 && (s->zs->avail_in == 0 || s->zs->avail_in == before))
			s->gz_bad = 1;
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

int cap_pprof_checker_new(struct cap_pprof_checker **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : -ENOMEM;
}

void cap_pprof_checker_free(struct cap_pprof_checker *c)
{
	if (c == NULL)
		return;
	if (c->zs_ready)
		inflateEnd(&c->zs);
	free(c);
}

enum cap_pprof_verdict cap_pprof_checker_run(struct cap_pprof_checker *c, const void *data,
                                             size_t len)
{
	const unsigned char *in = data;
	struct src s;
	if (data == NULL || len == 0)
		return CAP_PPROF_NOT_PROFILE;
	if (!is_gzip(in, len)) {
		src_plain(&s, data, len, CAP_PPROF_SCAN_MAX);
		return walk(&s);
	}
	size_t hl = gzip_header_len(in, len);
	if (hl == 0)
		return CAP_PPROF_NOT_PROFILE;
	/* One inflate state for every profile: set up once (its 32 KiB
	 * window is allocated on first use), reset after. */
	if (!c->zs_ready) {
		if (inflateInit2(&c->zs, -MAX_WBITS) != Z_OK)
			return CAP_PPROF_NOT_PROFILE;
		c->zs_ready = 1;
	} else if (inflateReset(&c->zs) != Z_OK) {
		return CAP_PPROF_NOT_PROFILE;
	}
	src_gz(&s, &c->zs, in + hl, len - hl, c->win, sizeof(c->win), CAP_PPROF_SCAN_MAX);
	return walk(&s);
}

enum cap_pprof_verdict cap_pprof_check(const void *data, size_t len)
{
	struct cap_pprof_checker c;
	c.zs_ready = 0;
	memset(&c.zs, 0, sizeof(c.zs));
	enum cap_pprof_verdict v = cap_pprof_checker_run(&c, data, len);
	if (c.zs_ready)
		inflateEnd(&c.zs);
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
	if (!is_gzip(data, len)) {
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
	unsigned char *buf = NULL, win[4096];
	z_stream zs;
	int rc = 0;
	memset(&zs, 0, sizeof(zs));
	/* 16 + MAX_WBITS: a gzip wrapper, checked to its CRC. */
	if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
		return -ENOMEM;
	src_gz(&s, &zs, data, len, win, sizeof(win), max + 1);
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
	inflateEnd(&zs);
	*out = buf;
	*olen = n;
	return 0;
out_free:
	inflateEnd(&zs);
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
