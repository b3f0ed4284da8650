/* kube/util.c: small helpers: base64, whole-file reads, timestamps, and
 * URL path and query building.
 */
#include "common/common.h"
#include "kube/kube_int.h"

#include <errno.h>
#include <json-c/json.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Decodes standard base64 as Go's encoding/base64 StdEncoding accepts it in
 * kubeconfig "-data" fields, tolerating line breaks from YAML folding and
 * missing padding. OpenSSL's EVP_DecodeBlock() does the decoding; it wants
 * whole quanta, reads '=' as zero bits anywhere and counts the padding's
 * zero bytes in its result, so the padding is checked and restored here. */
int kube__b64_decode(const char *in, size_t n, struct kube__blob *out)
{
	char *clean = malloc(n + 4), *buf = NULL;
	size_t m = 0, pad = 0;
	int len, rc = -EINVAL;

	if (!clean)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (in[i] != ' ' && in[i] != '\n' && in[i] != '\r' && in[i] != '\t')
			clean[m++] = in[i];
	while (pad < m && clean[m - 1 - pad] == '=')
		pad++;
	/* '=' only at the end, at most two, and then only to a whole quantum. */
	if (pad > 2 || memchr(clean, '=', m - pad) || (pad && m % 4) || (m - pad) % 4 == 1)
		goto out_free_clean;
	m -= pad;
	for (pad = 0; (m + pad) % 4; pad++)
		clean[m + pad] = '=';
	m += pad;
	if (m > INT_MAX || !(buf = malloc(m / 4 * 3 + 1))) {
		rc = -ENOMEM;
		goto out_free_clean;
	}
	len = EVP_DecodeBlock((unsigned char *)buf, (const unsigned char *)clean, (int)m);
	if (len < 0 || (size_t)len < pad) {
		free(buf);
		goto out_free_clean;
	}
	buf[len - (int)pad] = '\0';
	out->data = buf;
	out->len = (size_t)len - pad;
	rc = 0;
out_free_clean:
	free(clean);
	return rc;
}

/* Reads `path` whole, refusing files larger than `cap`. Public so that the
 * daemon's other bounded reads (zoneinfo) use this one reader. */
int kube_read_file(const char *path, size_t cap, char **out, size_t *out_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf = NULL;
	size_t len = 0, alloc = 0;
	int rc = 0;

	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t r;

		if (alloc - len < 4096) {
			char *nb;

			alloc = alloc ? alloc * 2 : 8192;
			nb = realloc(buf, alloc + 1);
			if (!nb) {
				rc = -ENOMEM;
				goto out_free;
			}
			buf = nb;
		}
		r = read(fd, buf + len, alloc - len);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto out_free;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len > cap) {
			rc = -EFBIG;
			goto out_free;
		}
	}
	if (!buf) {
		buf = malloc(1);
		if (!buf) {
			rc = -ENOMEM;
			goto out_close;
		}
	}
	buf[len] = '\0';
	*out = buf;
	*out_len = len;
	goto out_close;
out_free:
	free(buf);
out_close:
	close(fd);
	return rc;
}

void kube__blob_free(struct kube__blob *b)
{
	if (!b)
		return;
	free(b->data);
	b->data = NULL;
	b->len = 0;
}

static int digits(const char **s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if ((*s)[i] < '0' || (*s)[i] > '9')
			return -EINVAL;
		v = v * 10 + ((*s)[i] - '0');
	}
	*s += n;
	*out = v;
	return 0;
}

/* Parses RFC 3339, the format of metav1.Time and ExecCredential's
 * expirationTimestamp. */
int kube__parse_time(const char *s, time_t *out)
{
	struct tm tm = {0};
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
	time_t t;

	if (!s || digits(&s, 4, &y) || *s++ != '-' || digits(&s, 2, &mo) || *s++ != '-' ||
	    digits(&s, 2, &d) || (*s != 'T' && *s != 't' && *s != ' ') || !*s++ ||
	    digits(&s, 2, &h) || *s++ != ':' || digits(&s, 2, &mi) || *s++ != ':' ||
	    digits(&s, 2, &sec))
		return -EINVAL;
	if (*s == '.') {
		s++;
		if (*s < '0' || *s > '9')
			return -EINVAL;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	if (*s == 'Z' || *s == 'z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		sign = *s++ == '-' ? -1 : 1;
		if (digits(&s, 2, &oh) || *s++ != ':' || digits(&s, 2, &om))
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	if (*s || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -EINVAL;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	*out = t - sign * (oh * 3600 + om * 60);
	return 0;
}

void kube__format_time(int64_t ms, int micro, char *buf, size_t n)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char base[32];

	gmtime_r(&t, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	if (micro)
		snprintf(buf, n, "%s.%06dZ", base, (int)(ms % 1000) * 1000);
	else
		snprintf(buf, n, "%sZ", base);
}

/* Appends `s` percent-encoded at buf+*len; leaves *len past the end. */
static int append_escaped(char *buf, size_t n, size_t *len, const char *s)
{
	size_t need = ppop_query_escaped_len(s);

	if (*len + need >= n)
		return -ENAMETOOLONG;
	*len = (size_t)(ppop_query_escape_into(buf + *len, s) - buf);
	return 0;
}

static int append_raw(char *buf, size_t n, size_t *len, const char *s)
{
	size_t sl = strlen(s);

	if (*len + sl >= n)
		return -ENAMETOOLONG;
	memcpy(buf + *len, s, sl + 1);
	*len += sl;
	return 0;
}

int kube_query_add(char *buf, size_t n, const char *key, const char *value)
{
	size_t len = strnlen(buf, n), start = len;

	if (!value)
		return 0;
	if (len >= n)
		return -ENAMETOOLONG;
	if (append_raw(buf, n, &len, strchr(buf, '?') ? "&" : "?") ||
	    append_escaped(buf, n, &len, key) || append_raw(buf, n, &len, "=") ||
	    append_escaped(buf, n, &len, value)) {
		buf[start] = '\0';
		return -ENAMETOOLONG;
	}
	return 0;
}

/* One piece of a path: literal text or a segment to percent-encode. */
struct piece {
	const char *s;
	int escape;
};

int kube_path(char *buf, size_t n, const char *group, const char *version, const char *ns,
              const char *resource, const char *name, const char *sub)
{
	struct piece p[12];
	size_t np = 0, len = 0;
	int has_group = group && *group;

	if (n == 0)
		return -ENAMETOOLONG;
	buf[0] = '\0';
	p[np++] = (struct piece){has_group ? "/apis/" : "/api/", 0};
	if (has_group) {
		p[np++] = (struct piece){group, 1};
		p[np++] = (struct piece){"/", 0};
	}
	p[np++] = (struct piece){version, 1};
	if (ns && *ns) {
		p[np++] = (struct piece){"/namespaces/", 0};
		p[np++] = (struct piece){ns, 1};
	}
	p[np++] = (struct piece){"/", 0};
	p[np++] = (struct piece){resource, 1};
	if (name && *name) {
		p[np++] = (struct piece){"/", 0};
		p[np++] = (struct piece){name, 1};
	}
	if (sub && *sub) {
		p[np++] = (struct piece){"/", 0};
		p[np++] = (struct piece){sub, 1};
	}
	for (size_t i = 0; i < np; i++) {
		int rc = p[i].escape ? append_escaped(buf, n, &len, p[i].s)
		                     : append_raw(buf, n, &len, p[i].s);

		if (rc) {
			buf[0] = '\0';
			return rc;
		}
	}
	return 0;
}

int kube__jadd(struct json_object *o, const char *k, struct json_object *v_take)
{
	if (!o || !v_take)
		goto err;
	if (json_object_object_add(o, k, v_take) == 0)
		return 0;
err:
	json_object_put(v_take);
	return -ENOMEM;
}

int kube__jadd_str(struct json_object *o, const char *k, const char *s)
{
	return s ? kube__jadd(o, k, json_object_new_string(s)) : 0;
}
