/* capture/profefe_scan.c: profefe's push and error replies, read without a
 * JSON tree.
 *
 * A push answers {"code":200,"body":{"id":...,...}} and an error
 * {"code":N,"error":"..."}; of these only body.id and error are used. A
 * general parser built a tree per push (and json-c took a newlocale() per
 * parse) to read one short string. This scanner checks that the reply is
 * one JSON object (RFC 8259 grammar; bytes inside strings are taken as they
 * come, as json-c does), copies those two strings out, and skips the rest.
 * Nesting is bounded like json-c's default (32 levels), so a hostile reply
 * costs one pass over its bytes and bounded stack. A key given twice counts
 * as its last occurrence, as in json-c.
 */
#include "capture/internal.h"

#include <errno.h>
#include <string.h>

#define MAX_DEPTH 32

enum role { SKIP, ROOT, BODY };

struct scan {
	const char *p, *end;
	int depth;
	char *id, *msg;
	size_t idlen, msglen;
};

static void ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static int peek(const struct scan *s)
{
	return s->p < s->end ? (unsigned char)*s->p : -1;
}

/* Where a decoded string goes: `len` bytes fit in `out` (NUL included);
 * `cut` is set once a byte did not fit or a NUL was decoded. */
struct sink {
	char *out;
	size_t size, n;
	int cut;
};

static void put(struct sink *k, unsigned char c)
{
	if (k->out == NULL || k->cut)
		return;
	if (c == 0 || k->n + 1 >= k->size) {
		k->cut = 1;
		return;
	}
	k->out[k->n++] = (char)c;
	k->out[k->n] = '\0';
}

static int hex4(const char *p, unsigned *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			return -1;
		*v = *v << 4 | d;
	}
	return 0;
}

static void put_utf8(struct sink *k, unsigned cp)
{
	if (cp < 0x80) {
		put(k, (unsigned char)cp);
	} else if (cp < 0x800) {
		put(k, (unsigned char)(0xc0 | cp >> 6));
		put(k, (unsigned char)(0x80 | (cp & 0x3f)));
	} else if (cp < 0x10000) {
		put(k, (unsigned char)(0xe0 | cp >> 12));
		put(k, (unsigned char)(0x80 | (cp >> 6 & 0x3f)));
		put(k, (unsigned char)(0x80 | (cp & 0x3f)));
	} else {
		put(k, (unsigned char)(0xf0 | cp >> 18));
		put(k, (unsigned char)(0x80 | (cp >> 12 & 0x3f)));
		put(k, (unsigned char)(0x80 | (cp >> 6 & 0x3f)));
		put(k, (unsigned char)(0x80 | (cp & 0x3f)));
	}
}

/* Decodes the \u escape at s->p (after the backslash and 'u'), pairing
 * surrogates; an unpaired one is kept as its own code point. */
static int unicode_escape(struct scan *s, struct sink *k)
{
	unsigned cp, lo;
	if (s->end - s->p < 4 || hex4(s->p, &cp) < 0)
		return -1;
	s->p += 4;
	if (cp >= 0xd800 && cp < 0xdc00 && s->end - s->p >= 6 && s->p[0] == '\\' &&
	    s->p[1] == 'u' && hex4(s->p + 2, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
		s->p += 6;
	}
	put_utf8(k, cp);
	return 0;
}

/* Reads the string at s->p (its opening quote) into `k`. Returns 0 or -1. */
static int string(struct scan *s, struct sink *k)
{
	s->p++;
	while (s->p < s->end) {
		unsigned char c = (unsigned char)*s->p++;
		if (c == '"')
			return 0;
		if (c != '\\') {
			put(k, c);
			continue;
		}
		if (s->p >= s->end)
			return -1;
		c = (unsigned char)*s->p++;
		switch (c) {
		case '"':
		case '\\':
		case '/':
			put(k, c);
			break;
		case 'b':
			put(k, '\b');
			break;
		case 'f':
			put(k, '\f');
			break;
		case 'n':
			put(k, '\n');
			break;
		case 'r':
			put(k, '\r');
			break;
		case 't':
			put(k, '\t');
			break;
		case 'u':
			if (unicode_escape(s, k) < 0)
				return -1;
			break;
		default:
			return -1;
		}
	}
	return -1;
}

static int digits(struct scan *s)
{
	const char *start = s->p;
	while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
		s->p++;
	return s->p > start ? 0 : -1;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int number(struct scan *s)
{
	if (peek(s) == '-')
		s->p++;
	if (peek(s) == '0')
		s->p++;
	else if (digits(s) < 0)
		return -1;
	if (peek(s) == '.') {
		s->p++;
		if (digits(s) < 0)
			return -1;
	}
	if (peek(s) == 'e' || peek(s) == 'E') {
		s->p++;
		if (peek(s) == '+' || peek(s) == '-')
			s->p++;
		if (digits(s) < 0)
			return -1;
	}
	return 0;
}

static int literal(struct scan *s, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
		return -1;
	s->p += n;
	return 0;
}

static int value(struct scan *s, enum role role);

static int array(struct scan *s)
{
	s->p++;
	ws(s);
	if (peek(s) == ']') {
		s->p++;
		return 0;
	}
	for (;;) {
		if (value(s, SKIP) < 0)
			return -1;
		ws(s);
		if (peek(s) == ']') {
			s->p++;
			return 0;
		}
		if (peek(s) != ',')
			return -1;
		s->p++;
	}
}

/* The sink for the value of `key` in an object playing `role`, or NULL
 * when that value is skipped. A key seen again clears what the earlier
 * one gave. */
static struct sink *member(struct scan *s, enum role role, const struct sink *key, struct sink *out,
                           enum role *sub)
{
	*sub = SKIP;
	if (key->cut)
		return NULL;
	if (role == ROOT && strcmp(key->out, "error") == 0) {
		s->msg[0] = '\0';
		*out = (struct sink){s->msg, s->msglen, 0, 0};
		return out;
	}
	if (role == ROOT && strcmp(key->out, "body") == 0) {
		s->id[0] = '\0';
		*sub = BODY;
		return NULL;
	}
	if (role == BODY && strcmp(key->out, "id") == 0) {
		s->id[0] = '\0';
		*out = (struct sink){s->id, s->idlen, 0, 0};
		return out;
	}
	return NULL;
}

static int object(struct scan *s, enum role role)
{
	s->p++;
	ws(s);
	if (peek(s) == '}') {
		s->p++;
		return 0;
	}
	for (;;) {
		char kbuf[8] = "";
		struct sink key = {kbuf, sizeof(kbuf), 0, 0}, out, *vs;
		enum role sub;
		ws(s);
		if (peek(s) != '"' || string(s, &key) < 0)
			return -1;
		ws(s);
		if (peek(s) != ':')
			return -1;
		s->p++;
		ws(s);
		vs = member(s, role, &key, &out, &sub);
		if (vs != NULL && peek(s) == '"') {
			if (string(s, vs) < 0)
				return -1;
			if (vs->cut && vs->out == s->id)
				s->id[0] = '\0'; /* an id cut short is no id; a message is cut to
				                    fit */
		} else if (value(s, sub) < 0) {
			return -1;
		}
		ws(s);
		if (peek(s) == '}') {
			s->p++;
			return 0;
		}
		if (peek(s) != ',')
			return -1;
		s->p++;
	}
}

/* Reads one value; an object read as ROOT or BODY yields its fields. */
static int value(struct scan *s, enum role role)
{
	struct sink none = {0};
	int rc;
	ws(s);
	switch (peek(s)) {
	case '{':
		if (++s->depth > MAX_DEPTH)
			return -1;
		rc = object(s, role);
		s->depth--;
		return rc;
	case '[':
		if (++s->depth > MAX_DEPTH)
			return -1;
		rc = array(s);
		s->depth--;
		return rc;
	case '"':
		return string(s, &none);
	case 't':
		return literal(s, "true");
	case 'f':
		return literal(s, "false");
	case 'n':
		return literal(s, "null");
	default:
		return number(s);
	}
}

int cap__profefe_scan(const char *data, size_t len, char *id, size_t idlen, char *msg,
                      size_t msglen)
{
	struct scan s = {data, data + len, 0, id, msg, idlen, msglen};
	if (idlen == 0 || msglen == 0)
		return -EINVAL;
	id[0] = '\0';
	msg[0] = '\0';
	if (data == NULL)
		return -EINVAL;
	ws(&s);
	if (peek(&s) != '{' || value(&s, ROOT) < 0) {
		id[0] = '\0';
		msg[0] = '\0';
		return -EINVAL;
	}
	return 0;
}
