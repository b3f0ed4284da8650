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
