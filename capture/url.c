/* capture/url.c: names, target keys and profefe's time format.
 *
 * Pure string work shared by the fetcher, the profefe client and the
 * plugin. Query escaping and profefe's labels are common/'s.
 */
#include "capture/capture.h"

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
