/* capture/spool.c: the bounded, restart-safe FIFO of undelivered profiles.
 *
 * File format, one profile per file "<seq as 16 hex digits>.spool":
 *
 *	PPOPSPOOL1\n
 *	service=<query-escaped>\n   (also type, labels, instance_id, origin, created_ms)
 *	\n
 *	<the gzipped pprof body, as captured>
 *
 * Metadata of every entry stays in memory (a few hundred bytes each); bodies
 * are read back only when an entry is checked out for a push. Files are
 * written with cap_file_write_excl(), so a crash leaves either a whole entry
 * or a temporary file that the next open removes.
 */
#include "capture/spool.h"
#include "capture/capture.h"
#include "capture/dirsink.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC        "PPOPSPOOL1\n"
#define MAX_HEADER   8192
#define DEFAULT_MAX  ((uint64_t)256 << 20)
#define SPOOL_SUFFIX ".spool"

struct sent {
	struct sent *prev, *next;
	uint64_t bytes; /* the file's size (memory: header + body) */
	int out;        /* checked out */
	struct cap_spool_entry e;
};

struct cap_spool_budget {
	uint64_t max_bytes, bytes;
	struct cap_spool *spools; /* the members, linked by `bnext` */
};

struct cap_spool {
	char *dir; /* NULL: in memory */
	uint64_t max_bytes;
	struct cap_spool_budget *budget; /* NULL: max_bytes alone */
	struct cap_spool *bnext;
	cap_spool_drop_fn drop;
	void *arg;
	struct sent *head, *tail;
	uint64_t next_seq;
	struct cap_spool_stats st;
};

static void meta_free(struct cap_push_meta *m)
{
	free((char *)m->service);
	free((char *)m->type);
	free((char *)m->labels);
	free((char *)m->instance_id);
	free((char *)m->origin);
	memset(m, 0, sizeof(*m));
}

static char *dup_or_null(const char *s, int *err)
{
	if (s == NULL)
		return NULL;
	char *d = strdup(s);
	if (d == NULL)
		*err = 1;
	return d;
}

static int meta_copy(struct cap_push_meta *dst, const struct cap_push_meta *src)
{
	int err = 0;
	dst->service = dup_or_null(src->service, &err);
	dst->type = dup_or_null(src->type, &err);
	dst->labels = dup_or_null(src->labels, &err);
	dst->instance_id = dup_or_null(src->instance_id, &err);
	dst->origin = dup_or_null(src->origin, &err);
	dst->created_ms = src->created_ms;
	if (err) {
		meta_free(dst);
		return -ENOMEM;
	}
	return 0;
}

static void entry_path(const struct cap_spool *s, uint64_t seq, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%016" PRIx64 SPOOL_SUFFIX, s->dir, seq);
}

/* The header's fields, in file order; `created` holds created_ms. */
static void header_fields(const struct cap_push_meta *m, char created[32], const char *kv[12])
{
	snprintf(created, 32, "%" PRId64, m->created_ms);
	kv[0] = "service", kv[1] = m->service;
	kv[2] = "type", kv[3] = m->type;
	kv[4] = "labels", kv[5] = m->labels;
	kv[6] = "instance_id", kv[7] = m->instance_id;
	kv[8] = "origin", kv[9] = m->origin;
	kv[10] = "created_ms", kv[11] = created;
}

/* The length of the header for `m`: MAGIC, "key=escaped\n" per field
 * present, the blank line. A memory spool counts it without building it. */
static size_t header_len(const struct cap_push_meta *m)
{
	char created[32];
	const char *kv[12];
	size_t n = sizeof(MAGIC) - 1 + 1;
	header_fields(m, created, kv);
	for (int i = 0; i < 12; i += 2)
		if (kv[i + 1] != NULL)
			n += strlen(kv[i]) + ppop_query_escaped_len(kv[i + 1]) + 2;
	return n;
}

/* Builds the header for `m` in one allocation; the caller frees it. */
static int header_build(const struct cap_push_meta *m, char **out, size_t *len)
{
	char created[32];
	const char *kv[12];
	size_t n = header_len(m);
	char *h = malloc(n + 1), *p = h;
	if (h == NULL)
		return -ENOMEM;
	header_fields(m, created, kv);
	memcpy(p, MAGIC, sizeof(MAGIC) - 1);
	p += sizeof(MAGIC) - 1;
	for (int i = 0; i < 12; i += 2) {
		if (kv[i + 1] == NULL)
			continue;
		size_t kl = strlen(kv[i]);
		memcpy(p, kv[i], kl);
		p[kl] = '=';
		p = ppop_query_escape_into(p + kl + 1, kv[i + 1]);
		*p++ = '\n';
	}
	/* The blank line that ends the header. */
	*p++ = '\n';
	*p = '\0';
	*out = h;
	*len = n;
	return 0;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decodes `s` of length `n` into a new string. */
static char *unescape(const char *s, size_t n)
{
	char *out = malloc(n + 1), *p = out;
	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		int hi, lo;
		if (s[i] == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 &&
		    (lo = hexval(s[i + 2])) >= 0) {
			*p++ = (char)(hi * 16 + lo);
			i += 2;
		} else {
			*p++ = s[i];
		}
	}
	*p = '\0';
	return out;
}

/* Parses a header from `buf` (`n` bytes, possibly more than the header).
 * Returns 0 and the header's length in `*hlen`, or -EINVAL. */
static int header_parse(const char *buf, size_t n, struct cap_push_meta *m, size_t *hlen)
{
	size_t ml = sizeof(MAGIC) - 1, pos = ml;
	memset(m, 0, sizeof(*m));
	if (n < ml || memcmp(buf, MAGIC, ml) != 0)
		return -EINVAL;
	for (;;) {
		const char *nl = memchr(buf + pos, '\n', n - pos);
		if (nl == NULL)
			goto bad;
		size_t ll = (size_t)(nl - (buf + pos));
		if (ll == 0) {
			*hlen = pos + 1;
			break;
		}
		const char *line = buf + pos, *eq = memchr(line, '=', ll);
		if (eq == NULL)
			goto bad;
		size_t kl = (size_t)(eq - line);
		char *val = unescape(eq + 1, ll - kl - 1);
		if (val == NULL)
			goto bad;
		const char **slot = NULL;
		if (kl == 7 && memcmp(line, "service", 7) == 0)
			slot = &m->service;
		else if (kl == 4 && memcmp(line, "type", 4) == 0)
			slot = &m->type;
		else if (kl == 6 && memcmp(line, "labels", 6) == 0)
			slot = &m->labels;
		else if (kl == 11 && memcmp(line, "instance_id", 11) == 0)
			slot = &m->instance_id;
		else if (kl == 6 && memcmp(line, "origin", 6) == 0)
			slot = &m->origin;
		else if (kl == 10 && memcmp(line, "created_ms", 10) == 0)
			m->created_ms = strtoll(val, NULL, 10);
		if (slot != NULL && *slot == NULL) {
			*slot = val;
			val = NULL;
		}
		free(val);
		pos += ll + 1;
	}
	if (m->service == NULL || m->type == NULL)
		goto bad;
	return 0;
bad:
	meta_free(m);
	return -EINVAL;
}

static void list_append(struct cap_spool *s, struct sent *x)
{
	x->next = NULL;
	x->prev = s->tail;
	if (s->tail)
		s->tail->next = x;
	else
		s->head = x;
	s->tail = x;
	s->st.files++;
	s->st.bytes += x->bytes;
	if (s->budget)
		s->budget->bytes += x->bytes;
}

/* Inserts `x` in sequence order; new entries usually belong at the tail. */
static void list_insert(struct cap_spool *s, struct sent *x)
{
	struct sent *after = s->tail;
	while (after != NULL && after->e.seq > x->e.seq)
		after = after->prev;
	if (after == s->tail) {
		list_append(s, x);
		return;
	}
	x->prev = after;
	x->next = after ? after->next : s->head;
	x->next->prev = x;
	if (after)
		after->next = x;
	else
		s->head = x;
	s->st.files++;
	s->st.bytes += x->bytes;
	if (s->budget)
		s->budget->bytes += x->bytes;
}

static void list_remove(struct cap_spool *s, struct sent *x)
{
	if (x->prev)
		x->prev->next = x->next;
	else
		s->head = x->next;
	if (x->next)
		x->next->prev = x->prev;
	else
		s->tail = x->prev;
	s->st.files--;
	s->st.bytes -= x->bytes;
	if (s->budget)
		s->budget->bytes -= x->bytes;
}

/* Deletes an entry's file (if any) and frees it; it is on no list. */
static void sent_destroy(struct cap_spool *s, struct sent *x)
{
	if (s->dir != NULL) {
		char path[PATH_MAX];
		entry_path(s, x->e.seq, path, sizeof(path));
		unlink(path);
	}
	meta_free(&x->e.meta);
	free(x->e.body);
	free(x);
}

static void drop_entry(struct cap_spool *s, struct sent *x)
{
	list_remove(s, x);
	s->st.drops++;
	if (s->drop)
		s->drop(s->arg, &x->e.meta, x->e.seq);
	sent_destroy(s, x);
}

/* Reads one file's header. Returns the entry, or NULL when unreadable. */
static struct sent *load_one(struct cap_spool *s, uint64_t seq)
{
	char path[PATH_MAX], buf[MAX_HEADER];
	struct stat sb;
	size_t hlen;
	entry_path(s, seq, path, sizeof(path));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	ssize_t n = read(fd, buf, sizeof(buf));
	int ok = n > 0 && fstat(fd, &sb) == 0;
	close(fd);
	struct sent *x = ok ? calloc(1, sizeof(*x)) : NULL;
	if (x == NULL)
		return NULL;
	if (header_parse(buf, (size_t)n, &x->e.meta, &hlen) < 0) {
		free(x);
		return NULL;
	}
	x->e.seq = seq;
	x->bytes = (uint64_t)sb.st_size;
	return x;
}

static int seq_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Lists "<seq>.spool" files in order and removes temporary leftovers. */
static int scan_dir(struct cap_spool *s, uint64_t **seqs, size_t *n)
{
	DIR *d = opendir(s->dir);
	size_t alloc = 0;
	struct dirent *de;
	*seqs = NULL;
	*n = 0;
	if (d == NULL)
		return -errno;
	while ((de = readdir(d)) != NULL) {
		char *end;
		if (strncmp(de->d_name, ".tmp-", 5) == 0) {
			(void)unlinkat(dirfd(d), de->d_name, 0);
			continue;
		}
		uint64_t seq = strtoull(de->d_name, &end, 16);
		if (end != de->d_name + 16 || strcmp(end, SPOOL_SUFFIX) != 0)
			continue;
		if (*n == alloc) {
			size_t na = alloc ? alloc * 2 : 64;
			uint64_t *ns = realloc(*seqs, na * sizeof(*ns));
			if (ns == NULL) {
				closedir(d);
				free(*seqs);
				*seqs = NULL;
				return -ENOMEM;
			}
			*seqs = ns;
			alloc = na;
		}
		(*seqs)[(*n)++] = seq;
	}
	closedir(d);
	if (*n > 1)
		qsort(*seqs, *n, sizeof(**seqs), seq_cmp);
	return 0;
}

/* Loads what an earlier run left, oldest first. */
static int load_existing(struct cap_spool *s)
{
	uint64_t *seqs;
	size_t n;
	int rc = scan_dir(s, &seqs, &n);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		struct sent *x = load_one(s, seqs[i]);
		if (x == NULL) {
			char path[PATH_MAX];
			entry_path(s, seqs[i], path, sizeof(path));
			unlink(path);
			s->st.drops++;
		} else {
			list_append(s, x);
		}
		s->next_seq = seqs[i] + 1;
	}
	free(seqs);
	return 0;
}

int cap_spool_open(const char *dir, uint64_t max_bytes, cap_spool_drop_fn drop, void *arg,
                   struct cap_spool **out)
{
	struct cap_spool *s = calloc(1, sizeof(*s));
	int rc;
	if (s == NULL)
		return -ENOMEM;
	s->max_bytes = max_bytes ? max_bytes : DEFAULT_MAX;
	s->drop = drop;
	s->arg = arg;
	s->next_seq = 1;
	if (dir != NULL) {
		s->dir = strdup(dir);
		if (s->dir == NULL) {
			rc = -ENOMEM;
			goto out_free;
		}
		if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
			rc = -errno;
			goto out_free;
		}
		rc = load_existing(s);
		if (rc < 0)
			goto out_free;
	}
	*out = s;
	return 0;
out_free:
	cap_spool_close(s);
	return rc;
}

void cap_spool_close(struct cap_spool *s)
{
	if (s == NULL)
		return;
	if (s->budget) {
		/* What stays on disk no longer counts against the others. */
		struct cap_spool **pp = &s->budget->spools;
		while (*pp && *pp != s)
			pp = &(*pp)->bnext;
		if (*pp)
			*pp = s->bnext;
		s->budget->bytes -= s->st.bytes;
	}
	struct sent *x = s->head;
	while (x != NULL) {
		struct sent *next = x->next;
		meta_free(&x->e.meta);
		free(x->e.body);
		free(x);
		x = next;
	}
	free(s->dir);
	free(s);
}

int cap_spool_budget_new(uint64_t max_bytes, struct cap_spool_budget **out)
{
	struct cap_spool_budget *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return -ENOMEM;
	b->max_bytes = max_bytes ? max_bytes : DEFAULT_MAX;
	*out = b;
	return 0;
}

void cap_spool_budget_free(struct cap_spool_budget *b)
{
	free(b);
}

uint64_t cap_spool_budget_bytes(const struct cap_spool_budget *b)
{
	return b->bytes;
}

void cap_spool_share(struct cap_spool *s, struct cap_spool_budget *b)
{
	if (s->budget || b == NULL)
		return;
	s->budget = b;
	s->bnext = b->spools;
	b->spools = s;
	b->bytes += s->st.bytes;
}

/* The spool's oldest entry not checked out, or NULL. */
static struct sent *oldest_idle(const struct cap_spool *s)
{
	struct sent *x = s->head;

	while (x != NULL && x->out)
		x = x->next;
	return x;
}

/* The oldest idle entry among the spools sharing s's budget (s alone
 * without one): each spool's head is its oldest, so compare the heads by
 * when they were taken. */
static struct sent *victim(struct cap_spool *s, struct cap_spool **owner)
{
	struct cap_spool *m = s->budget ? s->budget->spools : s;
	struct sent *best = NULL;

	for (; m != NULL; m = s->budget ? m->bnext : NULL) {
		struct sent *x = oldest_idle(m);
		if (x &&
		    (!best || x->e.meta.created_ms < best->e.meta.created_ms ||
		     (x->e.meta.created_ms == best->e.meta.created_ms && x->e.seq < best->e.seq))) {
			best = x;
			*owner = m;
		}
	}
	return best;
}

/* Makes room for `need` bytes by dropping the oldest idle entries, of all
 * the spools sharing the budget. Returns 0, or -ENOSPC when it cannot. */
static int make_room(struct cap_spool *s, uint64_t need)
{
	uint64_t max = s->budget ? s->budget->max_bytes : s->max_bytes;
	const uint64_t *used = s->budget ? &s->budget->bytes : &s->st.bytes;

	if (need > max)
		return -ENOSPC;
	while (*used + need > max) {
		struct cap_spool *owner = s;
		struct sent *x = victim(s, &owner);
		if (x == NULL)
			return -ENOSPC;
		drop_entry(owner, x);
	}
	return 0;
}

/* Writes header + body to the entry's file. */
static int write_file(struct cap_spool *s, uint64_t seq, const char *hdr, size_t hlen,
                      const void *body, size_t len)
{
	char path[PATH_MAX];
	char *all = malloc(hlen + len + 1);
	if (all == NULL)
		return -ENOMEM;
	memcpy(all, hdr, hlen);
	if (len)
		memcpy(all + hlen, body, len);
	entry_path(s, seq, path, sizeof(path));
	int rc = cap_file_write_excl(path, all, hlen + len);
	free(all);
	return rc;
}

uint64_t cap_spool_reserve(struct cap_spool *s)
{
	return s->next_seq++;
}

/* Appends an entry. `owned` non-NULL is `body`, malloc'd and taken: kept
 * as the entry's body in memory, else freed here. */
static int put(struct cap_spool *s, uint64_t seq, const struct cap_push_meta *m, const void *body,
               size_t len, char *owned)
{
	char *hdr = NULL;
	size_t hlen;
	int rc = 0;
	if (s->dir != NULL)
		rc = header_build(m, &hdr, &hlen);
	else
		hlen = header_len(m);
	if (rc < 0)
		goto out_owned;
	struct sent *x = calloc(1, sizeof(*x));
	if (x == NULL || meta_copy(&x->e.meta, m) < 0) {
		rc = -ENOMEM;
		goto out_free;
	}
	x->e.seq = seq;
	x->bytes = hlen + len;
	if (make_room(s, x->bytes) < 0) {
		/* Too big for the spool even when emptied of idle entries. */
		s->st.drops++;
		if (s->drop)
			s->drop(s->arg, m, x->e.seq);
		rc = 0;
		goto out_free;
	}
	if (s->dir != NULL) {
		rc = write_file(s, x->e.seq, hdr, hlen, body, len);
		if (rc < 0)
			goto out_free;
	} else if (owned != NULL) {
		x->e.body = owned;
		owned = NULL;
		x->e.len = len;
	} else {
		x->e.body = malloc(len ? len : 1);
		if (x->e.body == NULL) {
			rc = -ENOMEM;
			goto out_free;
		}
		memcpy(x->e.body, body, len);
		x->e.len = len;
	}
	free(hdr);
	free(owned);
	list_insert(s, x);
	return 0;
out_free:
	if (x != NULL) {
		meta_free(&x->e.meta);
		free(x->e.body);
		free(x);
	}
	free(hdr);
out_owned:
	free(owned);
	return rc;
}

int cap_spool_put(struct cap_spool *s, const struct cap_push_meta *m, const void *body, size_t len)
{
	return put(s, cap_spool_reserve(s), m, body, len, NULL);
}

int cap_spool_put_seq(struct cap_spool *s, uint64_t seq, const struct cap_push_meta *m,
                      const void *body, size_t len)
{
	return put(s, seq, m, body, len, NULL);
}

int cap_spool_put_take(struct cap_spool *s, uint64_t seq, const struct cap_push_meta *m, char *body,
                       size_t len)
{
	if (body == NULL)
		return -EINVAL;
	return put(s, seq, m, body, len, body);
}

/* Reads the body of a disk entry. */
static int read_body(struct cap_spool *s, struct sent *x)
{
	char path[PATH_MAX];
	struct cap_push_meta m;
	size_t hlen;
	entry_path(s, x->e.seq, path, sizeof(path));
	FILE *fp = fopen(path, "rbe");
	if (fp == NULL)
		return -errno;
	char *buf = malloc(x->bytes + 1);
	size_t n = buf ? fread(buf, 1, x->bytes + 1, fp) : 0;
	fclose(fp);
	if (buf == NULL)
		return -ENOMEM;
	if (n != x->bytes || header_parse(buf, n, &m, &hlen) < 0) {
		free(buf);
		return -EINVAL;
	}
	meta_free(&m);
	memmove(buf, buf + hlen, n - hlen);
	x->e.body = buf;
	x->e.len = n - hlen;
	return 0;
}

int cap_spool_checkout(struct cap_spool *s, struct cap_spool_entry **out)
{
	struct sent *x = s->head;
	while (x != NULL && x->out)
		x = x->next;
	if (x == NULL)
		return -ENOENT;
	if (s->dir != NULL) {
		int rc = read_body(s, x);
		if (rc < 0) {
			drop_entry(s, x);
			return rc;
		}
	}
	x->out = 1;
	s->st.checked_out++;
	*out = &x->e;
	return 0;
}

static struct sent *sent_of(struct cap_spool_entry *e)
{
	return (struct sent *)((char *)e - offsetof(struct sent, e));
}

void cap_spool_ack(struct cap_spool *s, struct cap_spool_entry *e)
{
	struct sent *x = sent_of(e);
	s->st.checked_out--;
	list_remove(s, x);
	sent_destroy(s, x);
}

void cap_spool_release(struct cap_spool *s, struct cap_spool_entry *e)
{
	struct sent *x = sent_of(e);
	s->st.checked_out--;
	x->out = 0;
	if (s->dir != NULL) {
		free(x->e.body);
		x->e.body = NULL;
		x->e.len = 0;
	}
}

void cap_spool_stats(const struct cap_spool *s, struct cap_spool_stats *out)
{
	*out = s->st;
}
