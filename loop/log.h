/* loop/log.h: the small structured logging API every module uses.
 *
 * A record is a level, a message and key/value string pairs, written to
 * stderr as one line: logfmt-style text ("level=info msg=... k=v") or one
 * JSON object, as --log-format chooses. Values are escaped, so a hostile
 * pod's error body cannot forge log lines.
 *
 *	log_info("capture stored", "pod", pod, "type", type, NULL);
 *
 * The argument list is key, value, key, value, ..., NULL. A NULL value
 * prints as an empty string.
 */
#ifndef LOOP_LOG_H
#define LOOP_LOG_H

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN = 1, LOG_LVL_INFO = 2, LOG_LVL_DEBUG = 3 };
enum log_format { LOG_FMT_TEXT = 0, LOG_FMT_JSON = 1 };

/* Sets the format and the most verbose level printed (default: text, info). */
void log_setup(enum log_format fmt, enum log_level max_level);
/* Returns 1 when records at `lvl` are printed. */
int log_enabled(enum log_level lvl);

void log_kv(enum log_level lvl, const char *msg, ...) __attribute__((sentinel));

#define log_error(...) log_kv(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_kv(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_kv(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_kv(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
