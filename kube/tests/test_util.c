/* kube/tests/test_util.c: query encoding, paths, base64 and timestamps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kube/kube_int.h"

static void test_query_selector_encoding(void **state)
{
	char buf[512] = "/api/v1/pods";

	(void)state;
	assert_int_equal(
	        kube_query_add(buf, sizeof(buf), "labelSelector", "app=web,tier in (a,b),!canary"),
	        0);
	assert_string_equal(buf, "/api/v1/pods?labelSelector=app%3Dweb%2Ctier%20in%20%28a%2Cb%29"
	                         "%2C%21canary");
	assert_int_equal(kube_query_add(buf, sizeof(buf), "fieldSelector",
	                                "status.phase!=Failed,spec.nodeName=n-1.x_y~z"),
	                 0);
	assert_non_null(strstr(buf, "&fieldSelector=status.phase%21%3DFailed%2Cspec.nodeName%3D"
	                            "n-1.x_y~z"));
}

static void test_query_null_value_appends_nothing(void **state)
{
	char buf[64] = "/x";

	(void)state;
	assert_int_equal(kube_query_add(buf, sizeof(buf), "k", NULL), 0);
	assert_string_equal(buf, "/x");
}

static void test_query_too_long_leaves_buffer(void **state)
{
	char buf[16] = "/api/v1/pods";

	(void)state;
	assert_int_equal(kube_query_add(buf, sizeof(buf), "labelSelector", "a=b"), -ENAMETOOLONG);
	assert_string_equal(buf, "/api/v1/pods");
}

static void test_query_utf8_and_plus(void **state)
{
	char buf[128] = "";

	(void)state;
	assert_int_equal(kube_query_add(buf, sizeof(buf), "continue", "a+b/c=\xc3\xa9"), 0);
	assert_string_equal(buf, "?continue=a%2Bb%2Fc%3D%C3%A9");
}

static void test_path_core_and_group(void **state)
{
	char buf[256];

	(void)state;
	assert_int_equal(kube_path(buf, sizeof(buf), "", "v1", "web", "pods", "p-1", "status"), 0);
	assert_string_equal(buf, "/api/v1/namespaces/web/pods/p-1/status");
	assert_int_equal(kube_path(buf, sizeof(buf), "coordination.k8s.io", "v1", "kube-system",
	                           "leases", "x", NULL),
	                 0);
	assert_string_equal(buf, "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/x");
	assert_int_equal(kube_path(buf, sizeof(buf), NULL, "v1", NULL, "namespaces", NULL, NULL),
	                 0);
	assert_string_equal(buf, "/api/v1/namespaces");
	assert_int_equal(kube_path(buf, 10, "", "v1", "web", "pods", NULL, NULL), -ENAMETOOLONG);
}

static void test_informer_urls(void **state)
{
	struct kube_informer_opts o = {.group = "profefe.com",
	                               .version = "v1alpha1",
	                               .resource = "profilingpolicies",
	                               .ns = "web",
	                               .label_selector = "a=b",
	                               .page_size = 50};
	char buf[512];

	(void)state;
	assert_int_equal(kube__informer_list_url(&o, "tok/1", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/apis/profefe.com/v1alpha1/namespaces/web/profilingpolicies"
	                         "?limit=50&continue=tok%2F1&labelSelector=a%3Db");
	o.ns = NULL;
	o.label_selector = NULL;
	o.field_selector = "metadata.name=x";
	assert_int_equal(kube__informer_watch_url(&o, "123", 421, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/apis/profefe.com/v1alpha1/profilingpolicies?watch=1"
	                         "&resourceVersion=123&allowWatchBookmarks=true&timeoutSeconds=421"
	                         "&fieldSelector=metadata.name%3Dx");
}

/* Vectors from RFC 4648 section 10, with and without padding, folded,
 * and the malformed inputs EVP_DecodeBlock() alone would let through. */
static void test_b64(void **state)
{
	static const struct {
		const char *in;
		int rc;
		const char *want;
	} c[] = {
	        {"", 0, ""},
	        {"Zg==", 0, "f"},
	        {"Zm8=", 0, "fo"},
	        {"Zm9v", 0, "foo"},
	        {"Zm9vYg==", 0, "foob"},
	        {"Zm9vYmE=", 0, "fooba"},
	        {"Zm9vYmFy", 0, "foobar"},
	        {"Zg", 0, "f"}, /* padding left out */
	        {"Zm8", 0, "fo"},
	        {"aGVs\nbG8", 0, "hello"}, /* folded by YAML */
	        {" aGVs bG8=\r\n", 0, "hello"},
	        {"AP8=", 0, "\x00\xff"},
	        {"aGV*bG8=", -EINVAL, NULL}, /* not the alphabet */
	        {"aGVsbG8-", -EINVAL, NULL}, /* the URL alphabet */
	        {"aG=Vs", -EINVAL, NULL},    /* '=' inside */
	        {"Zg=", -EINVAL, NULL},      /* padding short of a quantum */
	        {"Zg===", -EINVAL, NULL},    /* three '=' */
	        {"Zm9v====", -EINVAL, NULL}, /* padding a whole quantum */
	        {"=", -EINVAL, NULL},
	        {"a", -EINVAL, NULL}, /* six bits are not a byte */
	        {"Zm9vY", -EINVAL, NULL},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct kube__blob b = {0};
		int rc = kube__b64_decode(c[i].in, strlen(c[i].in), &b);

		if (rc != c[i].rc)
			fail_msg("%s: rc %d, want %d", c[i].in, rc, c[i].rc);
		if (rc == 0) {
			size_t wl = c[i].want[0] ? strlen(c[i].want) : 0;

			if (strcmp(c[i].in, "AP8=") == 0)
				wl = 2;
			assert_int_equal(b.len, wl);
			assert_memory_equal(b.data, c[i].want, wl);
			assert_int_equal(b.data[b.len], '\0');
		}
		kube__blob_free(&b);
	}
}

/* tls-server-name: the server's host:port forms as curl_url() reads them. */
static void test_server_name_urls(void **state)
{
	static const struct {
		const char *server;
		int rc;
		const char *base, *connect_to;
	} c[] = {
	        {"https://10.0.0.1:6443", 0, "https://k8s:6443", "k8s:6443:10.0.0.1:6443"},
	        {"https://api.example.com", 0, "https://k8s:443",
	         "k8s:443:api.example.com:443"}, /* missing port: the scheme's */
	        {"http://api", 0, "http://k8s:80", "k8s:80:api:80"},
	        {"https://[fd00::1]:6443", 0, "https://k8s:6443", "k8s:6443:[fd00::1]:6443"},
	        {"https://[::1]", 0, "https://k8s:443", "k8s:443:[::1]:443"},
	        {"https://h:6443/prefix/k8s", 0, "https://k8s:6443/prefix/k8s", "k8s:6443:h:6443"},
	        {"https://h:6443/p?x=1", 0, "https://k8s:6443/p?x=1", "k8s:6443:h:6443"},
	        {"https://h:99999", -EINVAL, NULL, NULL},   /* port out of range */
	        {"https://h:6443x", -EINVAL, NULL, NULL},   /* port not a number */
	        {"https://[::1:6443", -EINVAL, NULL, NULL}, /* unclosed bracket */
	        {"https://:6443", -EINVAL, NULL, NULL},     /* no host */
	        {"not a url", -EINVAL, NULL, NULL},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		char *base = (char *)"x", *ct = (char *)"x";
		int rc = kube__server_name_urls(c[i].server, "k8s", &base, &ct);

		if (rc != c[i].rc)
			fail_msg("%s: rc %d, want %d", c[i].server, rc, c[i].rc);
		if (rc == 0) {
			assert_string_equal(base, c[i].base);
			assert_string_equal(ct, c[i].connect_to);
		} else {
			assert_null(base);
			assert_null(ct);
		}
		free(base);
		free(ct);
	}
}

static void test_time_parse_and_format(void **state)
{
	time_t t;
	char buf[40];

	(void)state;
	assert_int_equal(kube__parse_time("2026-01-02T03:04:05Z", &t), 0);
	assert_int_equal((long long)t, 1767323045LL);
	assert_int_equal(kube__parse_time("2026-01-02T04:04:05.123+01:00", &t), 0);
	assert_int_equal((long long)t, 1767323045LL);
	assert_int_equal(kube__parse_time("2026-01-02 03:04:05", &t), -EINVAL);
	assert_int_equal(kube__parse_time("yesterday", &t), -EINVAL);
	kube__format_time(1767323045123LL, 1, buf, sizeof(buf));
	assert_string_equal(buf, "2026-01-02T03:04:05.123000Z");
	kube__format_time(1767323045123LL, 0, buf, sizeof(buf));
	assert_string_equal(buf, "2026-01-02T03:04:05Z");
}

static void test_retry_after_capped(void **state)
{
	(void)state;
	assert_int_equal(kube__retry_delay_ms(0), 0);
	assert_int_equal(kube__retry_delay_ms(2), 2000);
	assert_int_equal(kube__retry_delay_ms(3600), 60000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_query_selector_encoding),
	        cmocka_unit_test(test_query_null_value_appends_nothing),
	        cmocka_unit_test(test_query_too_long_leaves_buffer),
	        cmocka_unit_test(test_query_utf8_and_plus),
	        cmocka_unit_test(test_path_core_and_group),
	        cmocka_unit_test(test_informer_urls),
	        cmocka_unit_test(test_b64),
	        cmocka_unit_test(test_server_name_urls),
	        cmocka_unit_test(test_time_parse_and_format),
	        cmocka_unit_test(test_retry_after_capped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
