/* loop/log.c: one line per record, text or JSON, on stderr. */
#include "loop/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum log_format log_fmt = LOG_FMT_TEXT;
static enum log_level log_max = LOG_LVL_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_setup(enum log_format fmt, enum log_level max_level)
{
	log_fmt = fmt;
	log_max = max_level;
}

int log_enabled(enum log_level lvl)
{
	return lvl <= log_max;
}

/* Writes `s` as a JSON string body: quotes, backslashes and control bytes
 * are escaped, so no value can break out of its field. */
static void put_json(FILE *f, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
}

/* Writes a logfmt value, quoted when it has spaces, quotes or '='. */
static void put_text(FILE *f, const char *s)
{
	if (*s && !strpbrk(s, " \"=\t\n\r\\")) {
		const char *p;
		for (p = s; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				break;
		if (!*p) {
			fputs(s, f);
			return;
		}
	}
	fputc('"', f);
	put_json(f, s);
	fputc('"', f);
}

void log_kv(enum log_level lvl, const char *msg, ...)
{
	char ts[64];
	struct timespec now;
	struct tm tm;
	va_list ap;
	const char *k, *v;
	FILE *f = stderr;

	if (!log_enabled(lvl))
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	         (long)(now.tv_nsec / 1000000) % 1000);
	flockfile(f);
	if (log_fmt == LOG_FMT_JSON)
		fprintf(f, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts, level_names[lvl]);
	else
		fprintf(f, "ts=%s level=%s msg=", ts, level_names[lvl]);
	if (log_fmt == LOG_FMT_JSON) {
		put_json(f, msg);
		fputc('"', f);
	} else {
		put_text(f, msg);
	}
	va_start(ap, msg);
	while ((k = va_arg(ap, const char *))) {
		v = va_arg(ap, const char *);
		if (!v)
			v = "";
		if (log_fmt == LOG_FMT_JSON) {
			fputs(",\"", f);
			put_json(f, k);
			fputs("\":\"", f);
			put_json(f, v);
			fputc('"', f);
		} else {
			fprintf(f, " %s=", k);
			put_text(f, v);
		}
	}
	va_end(ap);
	fputs(log_fmt == LOG_FMT_JSON ? "}\n" : "\n", f);
	funlockfile(f);
	fflush(f);
}
