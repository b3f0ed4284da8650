/* common/common.h: the small vocabulary every folder shares and none owns.
 *
 * Four things live here because more than one of loop/'s users needs the
 * same answer and no one of them may depend on another (capture/ must not
 * know reconcile/, reconcile/ must not link curl):
 *  - the pprof profile types Go serves under /debug/pprof/, with their
 *    endpoint and profefe names;
 *  - query escaping as Go's url.QueryEscape reads it back;
 *  - profefe's `labels` parameter, built from key/value pairs;
 *  - FNV-1a, the one hash for string-keyed tables and stable slots.
 *
 * Everything here is pure: no I/O, no allocation but where a function says
 * it returns a malloc'd string, and no library beyond libc. The prefix is
 * ppop_, the project's own.
 */
#ifndef COMMON_COMMON_H
#define COMMON_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* ---- Profile types ------------------------------------------------------ */

/* The pprof profile types Go serves under /debug/pprof/. A policy and the
 * plugin name only the first PPOP_PT__KNOWN; PPOP_PT_OTHER is what a
 * stored profile of none of them detects as. */
enum ppop_ptype {
	PPOP_PT_CPU = 0,
	PPOP_PT_HEAP,
	PPOP_PT_ALLOCS,
	PPOP_PT_GOROUTINE,
	PPOP_PT_MUTEX,
	PPOP_PT_BLOCK,
	PPOP_PT_THREADCREATE,
	PPOP_PT_OTHER,
	PPOP_PT__COUNT
};

/* The types a policy or the plugin may name (every one but OTHER). */
#define PPOP_PT__KNOWN PPOP_PT_OTHER

/* The pprof and CRD name ("cpu", "allocs", ...); "other" for OTHER and
 * out-of-range values. A static string. */
const char *ppop_ptype_name(enum ppop_ptype t);
/* The type profefe stores it as: allocs is stored as "heap" (profefe has
 * no allocs type; DESIGN §4). A static string. */
const char *ppop_ptype_profefe(enum ppop_ptype t);
/* Parses one of the PPOP_PT__KNOWN names, exactly as written (lower case).
 * Returns 0 and sets *out, or -EINVAL ("other", "CPU" and NULL too). */
int ppop_ptype_parse(const char *name, enum ppop_ptype *out);

/* ---- Query escaping and profefe labels ----------------------------------- */

/* The length `s` has once query-escaped, without the terminating NUL. */
size_t ppop_query_escaped_len(const char *s);
/* Writes `s` query-escaped at `out`, which has room for
 * ppop_query_escaped_len(s) + 1 bytes: RFC 3986 unreserved bytes
 * (A-Z a-z 0-9 - . _ ~) are kept, every other byte becomes %XX (a space
 * too, which Go's url.QueryUnescape reads back the same). NUL-terminates
 * and returns the position of the NUL. */
char *ppop_query_escape_into(char *out, const char *s);
/* The same into a malloc'd string (the caller frees it), or NULL. */
char *ppop_query_escape(const char *s);

/* A key/value pair; both strings lent. */
struct ppop_kv {
	const char *key;
	const char *value;
};

/* Encodes pairs as profefe's `labels` parameter, "k=v,k2=v2": sorted by
 * key then value, each key and value query-escaped (profefe splits on ','
 * and '=' and then url.QueryUnescape()s each part, so any value
 * round-trips), never a leading or trailing comma. Pairs with a NULL or
 * empty key are skipped; a NULL value is "". The result still has to be
 * query-escaped once more as a whole when it goes into a URL. Returns a
 * malloc'd string (the caller frees it; "" for no pairs) or NULL when out
 * of memory. */
char *ppop_labels_encode(const struct ppop_kv *v, size_t n);

/* ---- FNV-1a --------------------------------------------------------------- */

/* 64-bit FNV-1a's offset basis: the `h` to start a hash with. */
#define PPOP_FNV1A_INIT 14695981039346656037ULL

/* Folds `n` bytes at `p` into the 64-bit FNV-1a hash `h`; chain calls to
 * hash several pieces as one. Not for anything an attacker must not
 * collide: tables keyed by it must stay correct (if slower) on collisions.
 * FNV's low bits mix poorly for short keys; a caller that reduces the
 * hash modulo a small number may want to fold the high bits in first. */
uint64_t ppop_fnv1a(uint64_t h, const void *p, size_t n);
/* ppop_fnv1a() over the bytes of NUL-terminated `s`. */
uint64_t ppop_fnv1a_str(uint64_t h, const char *s);

#endif
