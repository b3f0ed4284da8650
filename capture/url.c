/* capture/url.c: names, URLs, profefe's labels and time format.
 *
 * Pure string work shared by the fetcher, the profefe client and the
 * plugin. kube-profefe's labels string was unsorted, unescaped and began with
 * a comma; profefe splits it on ',' and '=' and then query-unescapes each
 * key and value, so escaping both is what makes any value round-trip.
 */
#include "capture/capture.h"
#include "reconcile/reconcile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef PPOP_VERSION
#define PPOP_VERSION "0.0.0"
#endif

static const char *const ptype_names[CAP_PT__COUNT] = {
        [CAP_PT_CPU] = "cpu",
        [CAP_PT_HEAP] = "heap",
        [CAP_PT_ALLOCS] = "allocs",
        [CAP_PT_GOROUTINE] = "goroutine",
        [CAP_PT_MUTEX] = "mutex",
        [CAP_PT_BLOCK] = "block",
        [CAP_PT_THREADCREATE] = "threadcreate",
        [CAP_PT_OTHER] = "other",
};

static const char *const result_names[CAP_RES__COUNT] = {
        [CAP_RES_OK] = "ok",
        [CAP_RES_EMPTY] = "empty",
        [CAP_RES_REFUSED] = "refused",
        [CAP_RES_TIMEOUT] = "timeout",
        [CAP_RES_TRANSPORT] = "transport",
        [CAP_RES_HTTP] = "http",
        [CAP_RES_TOO_LARGE] = "too_large",
        [CAP_RES_NOT_PROFILE] = "not_profile",
        [CAP_RES_CANCELLED] = "cancelled",
        [CAP_RES_DROPPED] = "dropped",
        [CAP_RES_INTERNAL] = "internal",
        [CAP_RES_OVER_BUDGET] = "over_budget",
};

const char *cap_ptype_name(enum cap_ptype t)
{
	return (unsigned)t < CAP_PT__COUNT ? ptype_names[t] : "other";
}

const char *cap_ptype_profefe(enum cap_ptype t)
{
	return t == CAP_PT_ALLOCS ? "heap" : cap_ptype_name(t);
}

int cap_ptype_parse(const char *name, enum cap_ptype *out)
{
	if (name == NULL)
		return -EINVAL;
	for (int i = 0; i < CAP_PT__COUNT; i++) {
		if (strcmp(name, ptype_names[i]) == 0) {
			*out = (enum cap_ptype)i;
			return 0;
		}
	}
	if (strcmp(name, "profile") == 0) { /* the CPU endpoint's own name */
		*out = CAP_PT_CPU;
		return 0;
	}
	return -EINVAL;
}

const char *cap_result_name(enum cap_result r)
{
	return (unsigned)r < CAP_RES__COUNT ? result_names[r] : "internal";
}

const char *cap_user_agent(void)
{
	return "profefe-operator/" PPOP_VERSION;
}

int cap_target_key(const char *host, unsigned port, char *buf, size_t len)
{
	int v6 = strchr(host, ':') != NULL && host[0] != '[';
	int n = snprintf(buf, len, v6 ? "[%s]:%u" : "%s:%u", host, port);
	return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

/* Bytes Go's url.QueryEscape leaves alone. */
static int unreserved(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.' || c == '~';
}

/* Appends the escaped `s` at `out` (which has room) and returns the end. */
static char *escape_into(char *out, const char *s)
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

char *cap_query_escape(const char *s)
{
	char *out = malloc(strlen(s) * 3 + 1);
	if (out != NULL)
		escape_into(out, s);
	return out;
}

static int label_cmp(const void *a, const void *b)
{
	const struct rec_kv *x = a, *y = b;
	int c = strcmp(x->key, y->key);
	return c != 0 ? c : strcmp(x->value, y->value);
}

/* The encoding itself is reconcile's (rec_labels_encode), so the operator,
 * which encodes a target's labels there, and the plugin, which comes here
 * with unsorted labels, send byte-identical strings. */
char *cap_labels_encode(const struct cap_label *labels, size_t n)
{
	struct rec_kv *kv = NULL;
	size_t m = 0;
	char *out;
	if (n > 0 && (kv = malloc(n * sizeof(*kv))) == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (labels[i].key == NULL || labels[i].key[0] == '\0')
			continue;
		kv[m].key = labels[i].key;
		kv[m].value = labels[i].value ? labels[i].value : "";
		m++;
	}
	if (m > 1)
		qsort(kv, m, sizeof(*kv), label_cmp);
	out = rec_labels_encode(kv, m);
	free(kv);
	return out;
}

int cap_format_time(int64_t wall_ms, char *buf, size_t len)
{
	struct tm tm;
	time_t t = (time_t)(wall_ms / 1000);
	if (gmtime_r(&t, &tm) == NULL)
		return -EINVAL;
	if (strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		return -ENOSPC;
	return 0;
}
