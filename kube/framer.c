/* kube/framer.c: splits a watch stream into JSON values, and a list page
 * into its items.
 *
 * The API server writes one JSON object per watch event, each followed by
 * a newline, over a chunked response whose chunk boundaries fall anywhere
 * (k8s.io/apimachinery/pkg/util/framer's JSON framer). json-c's
 * incremental tokener keeps its state between calls, so we feed it every
 * chunk as it comes and restart it after each complete value. The framer
 * never copies the stream; memory is bounded by `max_obj` per value.
 *
 * A list page is one JSON object whose "items" may hold thousands of
 * objects (tens of MB as json-c trees). The list scanner walks the page's
 * outer object and its "items" array itself (only punctuation and
 * whitespace at those two levels) and hands each member key, member value
 * and item to the same incremental tokener, one value at a time. So the
 * largest tree alive is one item, whatever the page size.
 */
#include "kube/kube_int.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

/* Watch events nest as deep as the objects in them; CRD schemas go past
 * json-c's default of 32. */
#define FRAMER_MAX_DEPTH 128

enum numlex_state { LX_OUT, LX_STR, LX_ESC, LX_NUM };

/* json-c's tokener takes a '+' or '-' anywhere in a number when the
 * number is split across two feeds ("35" then "-") and drops it, while
 * the same bytes fed at once are an error: so whether a page or a watch
 * event parsed would depend on where the network cut it. The bytes a
 * value is fed are checked here, so a sign only follows an 'e' or 'E' (or
 * starts the number), whatever the chunks. Returns 0 or -EBADMSG. */
static int numlex(struct kube__numlex *x, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		switch (x->st) {
		case LX_STR:
			x->st = c == '\\' ? LX_ESC : c == '"' ? LX_OUT : LX_STR;
			continue;
		case LX_ESC:
			x->st = LX_STR;
			continue;
		case LX_NUM:
			if (c == '+' || c == '-') {
				if (x->prev != 'e' && x->prev != 'E')
					return -EBADMSG;
				x->prev = c;
				continue;
			}
			if ((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E') {
				x->prev = c;
				continue;
			}
			x->st = LX_OUT;
			/* the byte after a number */
			__attribute__((fallthrough));
		default:
			if (c == '"')
				x->st = LX_STR;
			else if (c == '-' || (c >= '0' && c <= '9'))
				x->st = LX_NUM, x->prev = c;
		}
	}
	return 0;
}

int kube__framer_init(struct kube__framer *f, size_t max_obj)
{
	f->tok = json_tokener_new_ex(FRAMER_MAX_DEPTH);
	f->max_obj = max_obj ? max_obj : (16u << 20);
	f->cur = 0;
	f->lex = (struct kube__numlex){LX_OUT, 0};
	return f->tok ? 0 : -ENOMEM;
}

void kube__framer_reset(struct kube__framer *f)
{
	if (f->tok)
		json_tokener_reset(f->tok);
	f->cur = 0;
	f->lex.st = LX_OUT;
}

void kube__framer_free(struct kube__framer *f)
{
	if (f->tok)
		json_tokener_free(f->tok);
	f->tok = NULL;
}

/* Skips the whitespace between values, so that the byte count of a value
 * starts at its first byte. */
static size_t skip_ws(const char *p, size_t n)
{
	size_t i = 0;

	while (i < n && (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t'))
		i++;
	return i;
}

int kube__framer_feed(struct kube__framer *f, const char *p, size_t n,
                      int (*emit)(void *arg, struct json_object *obj), void *arg)
{
	/* JSON text never holds a raw NUL, and json-c would stop at one. */
	if (memchr(p, '\0', n))
		return -EBADMSG;
	while (n > 0) {
		struct json_object *obj;
		enum json_tokener_error jerr;
		size_t used, take;
		int rc, fresh = f->cur == 0;

		if (f->cur == 0) {
			size_t ws = skip_ws(p, n);

			p += ws;
			n -= ws;
			if (n == 0)
				break;
		}
		/* Feed at most what keeps the value within its cap. */
		take = n;
		if (take > f->max_obj - f->cur + 1)
			take = f->max_obj - f->cur + 1;
		if (take > 0x7fffffff)
			take = 0x7fffffff;
		obj = json_tokener_parse_ex(f->tok, p, (int)take);
		jerr = json_tokener_get_error(f->tok);
		if (jerr == json_tokener_continue) {
			f->cur += take;
			if (f->cur > f->max_obj)
				return -EFBIG;
			if (numlex(&f->lex, p, take) != 0)
				return -EBADMSG;
			p += take;
			n -= take;
			continue;
		}
		if (jerr != json_tokener_success) {
			json_object_put(obj);
			return -EBADMSG;
		}
		used = json_tokener_get_parse_end(f->tok);
		/* A number ends at the byte after it, which json-c leaves
		 * unconsumed, so a value can end having used nothing of this
		 * chunk; but only if it began in an earlier one. */
		if (used > take || (used == 0 && fresh) || numlex(&f->lex, p, used) != 0) {
			json_object_put(obj);
			return -EBADMSG;
		}
		p += used;
		n -= used;
		json_tokener_reset(f->tok);
		f->cur = 0;
		f->lex.st = LX_OUT;
		rc = obj ? emit(arg, obj) : 0;
		json_object_put(obj);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- the list-page scanner ------------------------------------------ */

enum ls_state {
	LS_START,       /* before the page's '{' */
	LS_KEY_FIRST,   /* a key or '}' */
	LS_KEY,         /* a key after ',' */
	LS_COLON,       /* ':' after a key */
	LS_VALUE,       /* a member's value */
	LS_NEXT_MEMBER, /* ',' or '}' */
	LS_ITEM_FIRST,  /* an item or ']' */
	LS_ITEM,        /* an item after ',' */
	LS_NEXT_ITEM,   /* ',' or ']' */
	LS_DONE,        /* after the page's '}': whitespace only */
	LS_IN_KEY,      /* the tokener holds part of a key */
	LS_IN_VALUE,    /* ... of a member's value */
	LS_IN_ITEM,     /* ... of an item */
};

enum ls_member { M_OTHER, M_ITEMS, M_META };

int kube__listscan_init(struct kube__listscan *s, size_t max_val)
{
	memset(s, 0, sizeof(*s));
	s->tok = json_tokener_new_ex(FRAMER_MAX_DEPTH);
	s->max_val = max_val ? max_val : (64u << 20);
	return s->tok ? 0 : -ENOMEM;
}

void kube__listscan_reset(struct kube__listscan *s)
{
	if (s->tok)
		json_tokener_reset(s->tok);
	free(s->rv);
	free(s->cont);
	s->rv = s->cont = NULL;
	s->cur = 0;
	s->lex.st = LX_OUT;
	s->state = LS_START;
	s->member = M_OTHER;
	s->err = 0;
	s->items = 0;
	s->off = 0;
}

void kube__listscan_free(struct kube__listscan *s)
{
	kube__listscan_reset(s);
	if (s->tok)
		json_tokener_free(s->tok);
	s->tok = NULL;
}

/* Feeds the tokener from `*p`. Returns 1 with the complete value in
 * `*out` (owned; NULL for JSON null), 0 when all of `*n` went into a value
 * still open, or a negative errno. Advances `*p` and `*n` past what it
 * used. */
static int ls_token(struct kube__listscan *s, const char **p, size_t *n, struct json_object **out)
{
	size_t take = *n, used;
	int fresh = s->cur == 0;
	struct json_object *obj;
	enum json_tokener_error jerr;

	if (take > s->max_val - s->cur + 1)
		take = s->max_val - s->cur + 1;
	if (take > 0x7fffffff)
		take = 0x7fffffff;
	obj = json_tokener_parse_ex(s->tok, *p, (int)take);
	jerr = json_tokener_get_error(s->tok);
	if (jerr == json_tokener_continue) {
		s->cur += take;
		if (s->cur > s->max_val)
			return -EFBIG;
		if (numlex(&s->lex, *p, take) != 0)
			return -EBADMSG;
		*p += take;
		*n -= take;
		return 0;
	}
	used = json_tokener_get_parse_end(s->tok);
	/* A number ends at the byte after it, which json-c leaves unused, so
	 * a value may end having used nothing of this chunk, but only if it
	 * began in an earlier one. */
	if (jerr != json_tokener_success || used > take || (used == 0 && fresh) ||
	    numlex(&s->lex, *p, used) != 0) {
		json_object_put(obj);
		return -EBADMSG;
	}
	s->lex.st = LX_OUT;
	*p += used;
	*n -= used;
	json_tokener_reset(s->tok);
	s->cur = 0;
	*out = obj;
	return 1;
}

/* Replaces `*dst` with a copy of the string member `key` of `o`, if any. */
static int ls_keep(struct json_object *o, const char *key, char **dst)
{
	struct json_object *v;
	char *c;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return 0;
	c = strdup(json_object_get_string(v));
	if (!c)
		return -ENOMEM;
	free(*dst);
	*dst = c;
	return 0;
}

/* Acts on a complete key, member value or item (`obj`, owned). */
static int ls_value(struct kube__listscan *s, struct json_object *obj,
                    int (*item)(void *arg, struct json_object *obj), void *arg)
{
	int rc = 0;

	switch (s->state) {
	case LS_IN_KEY:
		if (!json_object_is_type(obj, json_type_string)) {
			rc = -EBADMSG;
			break;
		}
		s->member = !strcmp(json_object_get_string(obj), "items")      ? M_ITEMS
		            : !strcmp(json_object_get_string(obj), "metadata") ? M_META
		                                                               : M_OTHER;
		s->state = LS_COLON;
		break;
	case LS_IN_VALUE:
		/* "items" is an array (read item by item) or null. */
		if (s->member == M_ITEMS && obj)
			rc = -EBADMSG;
		if (s->member == M_META && json_object_is_type(obj, json_type_object)) {
			rc = ls_keep(obj, "resourceVersion", &s->rv);
			if (!rc)
				rc = ls_keep(obj, "continue", &s->cont);
		}
		s->state = LS_NEXT_MEMBER;
		break;
	default: /* LS_IN_ITEM */
		if (!json_object_is_type(obj, json_type_object)) {
			rc = -EBADMSG;
			break;
		}
		rc = item(arg, obj);
		if (rc > 0)
			rc = 0;
		if (!rc)
			s->items++;
		s->state = LS_NEXT_ITEM;
		break;
	}
	json_object_put(obj);
	return rc;
}

/* Moves past one byte of structure; returns the new state or -EBADMSG. */
static int ls_punct(const struct kube__listscan *s, char c)
{
	switch (s->state) {
	case LS_START:
		return c == '{' ? LS_KEY_FIRST : -EBADMSG;
	case LS_COLON:
		return c == ':' ? LS_VALUE : -EBADMSG;
	case LS_NEXT_MEMBER:
		return c == ',' ? LS_KEY : c == '}' ? LS_DONE : -EBADMSG;
	case LS_NEXT_ITEM:
		return c == ',' ? LS_ITEM : c == ']' ? LS_NEXT_MEMBER : -EBADMSG;
	default:
		return -EBADMSG;
	}
}

/* One step at the outer two levels: whitespace, punctuation, or the first
 * byte of a value, which only switches to a tokener state. Returns the
 * bytes used (0 or 1) or a negative errno. */
static int ls_step(struct kube__listscan *s, char c)
{
	int st;

	if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
		return 1;
	switch (s->state) {
	case LS_KEY_FIRST:
	case LS_KEY:
		if (c == '}' && s->state == LS_KEY_FIRST) {
			s->state = LS_DONE;
			return 1;
		}
		if (c != '"')
			return -EBADMSG;
		s->state = LS_IN_KEY;
		return 0;
	case LS_VALUE:
		if (s->member == M_ITEMS && c == '[') {
			s->state = LS_ITEM_FIRST;
			return 1;
		}
		s->state = LS_IN_VALUE;
		return 0;
	case LS_ITEM_FIRST:
	case LS_ITEM:
		if (c == ']' && s->state == LS_ITEM_FIRST) {
			s->state = LS_NEXT_MEMBER;
			return 1;
		}
		s->state = LS_IN_ITEM;
		return 0;
	default:
		st = ls_punct(s, c);
		if (st < 0)
			return st;
		s->state = st;
		return 1;
	}
}

int kube__listscan_feed(struct kube__listscan *s, const char *p, size_t n,
                        int (*item)(void *arg, struct json_object *obj), void *arg)
{
	/* JSON text never holds a raw NUL, and json-c would stop at one. */
	if (!s->err && memchr(p, '\0', n))
		s->err = -EBADMSG;
	while (!s->err && n > 0) {
		struct json_object *obj = NULL;
		size_t before = n;
		int rc;

		if (s->state >= LS_IN_KEY) {
			rc = ls_token(s, &p, &n, &obj);
			if (rc == 1)
				rc = ls_value(s, obj, item, arg);
		} else {
			rc = ls_step(s, *p);
			if (rc > 0) {
				p++;
				n--;
			}
		}
		s->off += before - n;
		if (rc < 0)
			s->err = rc;
	}
	return s->err;
}

int kube__listscan_end(const struct kube__listscan *s)
{
	if (s->err)
		return s->err;
	return s->state == LS_DONE ? 0 : -EBADMSG;
}
