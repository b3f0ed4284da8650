/* common/common.c: profile types, query escaping, profefe labels, FNV-1a. */
#include "common/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const ptype_names[PPOP_PT__COUNT] = {
        [PPOP_PT_CPU] = "cpu",
        [PPOP_PT_HEAP] = "heap",
        [PPOP_PT_ALLOCS] = "allocs",
        [PPOP_PT_GOROUTINE] = "goroutine",
        [PPOP_PT_MUTEX] = "mutex",
        [PPOP_PT_BLOCK] = "block",
        [PPOP_PT_THREADCREATE] = "threadcreate",
        [PPOP_PT_OTHER] = "other",
};

const char *ppop_ptype_name(enum ppop_ptype t)
{
	return (unsigned)t < PPOP_PT__COUNT ? ptype_names[t] : "other";
}

const char *ppop_ptype_profefe(enum ppop_ptype t)
{
	return t == PPOP_PT_ALLOCS ? "heap" : ppop_ptype_name(t);
}

int ppop_ptype_parse(const char *name, enum ppop_ptype *out)
{
	if (name == NULL)
		return -EINVAL;
	for (int i = 0; i < PPOP_PT__KNOWN; i++) {
		if (strcmp(name, ptype_names[i]) == 0) {
			*out = (enum ppop_ptype)i;
			return 0;
		}
	}
	return -EINVAL;
}

/* Bytes Go's url.QueryEscape leaves alone. */
static int unreserved(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.' || c == '~';
}

size_t ppop_query_escaped_len(const char *s)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		n += unreserved(*p) ? 1 : 3;
	return n;
}

char *ppop_query_escape_into(char *out, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (unreserved(*p)) {
			*out++ = (char)*p;
		} else {
			*out++ = '%';
			*out++ = hex[*p >> 4];
			*out++ = hex[*p & 15];
		}
	}
	*out = '\0';
	return out;
}

char *ppop_query_escape(const char *s)
{
	char *out = malloc(ppop_query_escaped_len(s) + 1);

	if (out != NULL)
		ppop_query_escape_into(out, s);
	return out;
}

static int kv_cmp(const void *a, const void *b)
{
	const struct ppop_kv *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	return c != 0 ? c : strcmp(x->value, y->value);
}

/* Sorts a copy, because callers lend const arrays (reconcile's are
 * already sorted; the plugin's are in command-line order). */
char *ppop_labels_encode(const struct ppop_kv *v, size_t n)
{
	struct ppop_kv *kv = NULL;
	size_t m = 0, total = 1;
	char *out, *p;

	if (n > 0 && (kv = malloc(n * sizeof(*kv))) == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (v[i].key == NULL || v[i].key[0] == '\0')
			continue;
		kv[m].key = v[i].key;
		kv[m].value = v[i].value ? v[i].value : "";
		total +=
		        ppop_query_escaped_len(kv[m].key) + ppop_query_escaped_len(kv[m].value) + 2;
		m++;
	}
	if (m > 1)
		qsort(kv, m, sizeof(*kv), kv_cmp);
	if ((out = malloc(total)) == NULL)
		goto out_free_kv;
	p = out;
	*p = '\0';
	for (size_t i = 0; i < m; i++) {
		if (i > 0)
			*p++ = ',';
		p = ppop_query_escape_into(p, kv[i].key);
		*p++ = '=';
		p = ppop_query_escape_into(p, kv[i].value);
	}
out_free_kv:
	free(kv);
	return out;
}

uint64_t ppop_fnv1a(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ULL;
	return h;
}

uint64_t ppop_fnv1a_str(uint64_t h, const char *s)
{
	return ppop_fnv1a(h, s, strlen(s));
}
