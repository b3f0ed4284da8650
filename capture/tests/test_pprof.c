/* capture/tests/test_pprof.c: the pprof sanity checker and type detection,
 * on real profiles written by Go's runtime/pprof (tests/fixtures-gen). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <zlib.h>

#include "capture/capture.h"
#include "fixture.h"

static enum cap_pprof_verdict check_fixture(const char *name)
{
	size_t n;
	char *b = fixture_read(name, &n);
	enum cap_pprof_verdict v = cap_pprof_check(b, n);
	free(b);
	return v;
}

/* gzips `in` into a malloc'd buffer. */
static unsigned char *gzip_buf(const void *in, size_t n, size_t *outlen)
{
	z_stream zs = {0};
	assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY),
	                 Z_OK);
	size_t cap = deflateBound(&zs, n);
	unsigned char *out = malloc(cap);
	assert_non_null(out);
	zs.next_in = (unsigned char *)in;
	zs.avail_in = (uInt)n;
	zs.next_out = out;
	zs.avail_out = (uInt)cap;
	assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
	*outlen = cap - zs.avail_out;
	deflateEnd(&zs);
	return out;
}

static void test_pprof_real_profiles_have_samples(void **state)
{
	const char *names[] = {"cpu.pb.gz",       "heap.pb.gz",         "allocs.pb.gz",
	                       "goroutine.pb.gz", "threadcreate.pb.gz", "mutex.pb.gz",
	                       "block.pb.gz",     "goroutine.pb"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		print_message("%s\n", names[i]);
		assert_int_equal(check_fixture(names[i]), CAP_PPROF_HAS_SAMPLES);
	}
}

static void test_pprof_disabled_mutex_block_are_empty(void **state)
{
	assert_int_equal(check_fixture("mutex-empty.pb.gz"), CAP_PPROF_EMPTY);
	assert_int_equal(check_fixture("block-empty.pb.gz"), CAP_PPROF_EMPTY);
	/* Plain protobuf is judged the same way. */
	assert_int_equal(check_fixture("mutex-empty.pb"), CAP_PPROF_EMPTY);
}

static void test_pprof_garbage_is_not_profile(void **state)
{
	const char *texts[] = {
	        "",
	        "<html><body>404 page not found</body></html>",
	        "goroutine profile: total 5\n1 @ 0x43\n",
	        "404 page not found\n",
	        "{\"code\":500,\"error\":\"boom\"}",
	};
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		assert_int_equal(cap_pprof_check(texts[i], strlen(texts[i])),
		                 CAP_PPROF_NOT_PROFILE);
	assert_int_equal(cap_pprof_check(NULL, 0), CAP_PPROF_NOT_PROFILE);
	/* gzip of text: the wrapper is right, the content is not. */
	size_t gl;
	unsigned char *gz = gzip_buf(texts[2], strlen(texts[2]), &gl);
	assert_int_equal(cap_pprof_check(gz, gl), CAP_PPROF_NOT_PROFILE);
	free(gz);
	/* Just the magic, and a corrupt deflate stream. */
	const unsigned char magic[] = {0x1f, 0x8b};
	assert_int_equal(cap_pprof_check(magic, sizeof(magic)), CAP_PPROF_NOT_PROFILE);
	const unsigned char bad[] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
	assert_int_equal(cap_pprof_check(bad, sizeof(bad)), CAP_PPROF_NOT_PROFILE);
}

static void test_pprof_truncated_gzip(void **state)
{
	size_t n, raw_n;
	char *b = fixture_read("heap.pb.gz", &n);
	/* Cut inside the gzip header or the first deflate bytes. */
	for (size_t cut = 3; cut < 14; cut++)
		assert_int_equal(cap_pprof_check(b, cut), CAP_PPROF_NOT_PROFILE);
	free(b);
	/* Plain protobuf cut inside its first length-delimited field. */
	char *raw = fixture_read("mutex-empty.pb", &raw_n);
	assert_int_equal(cap_pprof_check(raw, 8), CAP_PPROF_NOT_PROFILE);
	free(raw);
}

/* gzips `a` and flushes to a byte boundary, then appends the raw deflate
 * bytes `tail` (no valid end, no trailer): a gzip stream whose first
 * `na` bytes inflate fine and whose rest is whatever `tail` says. */
static unsigned char *gzip_then_raw(const void *a, size_t na, const unsigned char *tail,
                                    size_t ntail, size_t *outlen)
{
	z_stream zs = {0};
	assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY),
	                 Z_OK);
	size_t cap = deflateBound(&zs, na) + ntail + 64;
	unsigned char *out = malloc(cap);
	assert_non_null(out);
	zs.next_in = (unsigned char *)a;
	zs.avail_in = (uInt)na;
	zs.next_out = out;
	zs.avail_out = (uInt)cap;
	assert_int_equal(deflate(&zs, Z_FULL_FLUSH), Z_OK);
	assert_int_equal(zs.avail_in, 0);
	size_t n = cap - zs.avail_out;
	deflateEnd(&zs);
	memcpy(out + n, tail, ntail);
	*outlen = n + ntail;
	return out;
}

/* A deflate block header with BTYPE 11, which RFC 1951 reserves: inflate
 * fails there ("invalid block type"), then junk. */
static const unsigned char corrupt_block[] = {0x07, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x11};

/* sample_type, a small location, then the first sample. */
static const unsigned char head_with_sample[] = {0x0a, 0x04, 0x08, 0x01, 0x10, 0x02, 0x22,
                                                 0x02, 0x08, 0x01, 0x12, 0x02, 0x08, 0x01};

static void test_pprof_corrupt_tail_after_first_sample_is_accepted(void **state)
{
	/* The verdict needs the first sample only: what the body holds after
	 * it (here a corrupt deflate block) is profefe's to judge, and the
	 * checker must not have inflated that far. */
	size_t gl;
	unsigned char *gz = gzip_then_raw(head_with_sample, sizeof(head_with_sample), corrupt_block,
	                                  sizeof(corrupt_block), &gl);
	assert_int_equal(cap_pprof_check(gz, gl), CAP_PPROF_HAS_SAMPLES);
	free(gz);
	/* The same corruption before the sample is still caught. */
	gz = gzip_then_raw(head_with_sample, 6, corrupt_block, sizeof(corrupt_block), &gl);
	assert_int_equal(cap_pprof_check(gz, gl), CAP_PPROF_NOT_PROFILE);
	free(gz);
}

static void test_pprof_inflates_little_past_first_sample(void **state)
{
	/* The first sample, then 1500 bytes of string table, then a corrupt
	 * block: a checker that inflated in 4 KiB steps reached the corruption
	 * and refused the profile; one that stops near the sample never sees
	 * it. */
	unsigned char raw[sizeof(head_with_sample) + 1500];
	size_t n = sizeof(head_with_sample);
	memcpy(raw, head_with_sample, n);
	while (n + 3 + 20 <= sizeof(raw)) {
		raw[n++] = (6 << 3) | 2; /* string_table, LEN 20 */
		raw[n++] = 20;
		for (size_t i = 0; i < 20; i++, n++)
			raw[n] = (unsigned char)('a' + (n * 7 + i) % 26);
	}
	size_t gl;
	unsigned char *gz = gzip_then_raw(raw, n, corrupt_block, sizeof(corrupt_block), &gl);
	assert_int_equal(cap_pprof_check(gz, gl), CAP_PPROF_HAS_SAMPLES);
	free(gz);
}

static void test_pprof_checker_reused_across_profiles(void **state)
{
	/* One checker over every fixture, twice, interleaved with failures
	 * that leave its inflate state mid-stream: the verdicts are
	 * cap_pprof_check()'s each time. */
	const char *names[] = {"cpu.pb.gz",         "heap.pb.gz",         "allocs.pb.gz",
	                       "goroutine.pb.gz",   "threadcreate.pb.gz", "mutex.pb.gz",
	                       "block.pb.gz",       "goroutine.pb",       "mutex-empty.pb.gz",
	                       "block-empty.pb.gz", "mutex-empty.pb"};
	const unsigned char bad[] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
	struct cap_pprof_checker *c;
	assert_int_equal(cap_pprof_checker_new(&c), 0);
	for (int round = 0; round < 2; round++)
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			size_t n;
			char *b = fixture_read(names[i], &n);
			assert_int_equal(cap_pprof_checker_run(c, b, n), cap_pprof_check(b, n));
			assert_int_equal(cap_pprof_checker_run(c, b, n / 2),
			                 cap_pprof_check(b, n / 2));
			assert_int_equal(cap_pprof_checker_run(c, bad, sizeof(bad)),
			                 CAP_PPROF_NOT_PROFILE);
			free(b);
		}
	assert_int_equal(cap_pprof_checker_run(c, NULL, 0), CAP_PPROF_NOT_PROFILE);
	cap_pprof_checker_free(c);
	cap_pprof_checker_free(NULL);
}

static void test_pprof_gzip_header_fields(void **state)
{
	/* RFC 1952's optional header fields (extra, name, comment, header
	 * CRC) are skipped; a header cut inside one, or with reserved flags,
	 * is not a profile. */
	size_t gl;
	unsigned char *gz = gzip_buf(head_with_sample, sizeof(head_with_sample), &gl);
	const unsigned char opt[] = {3,   0,   'x', 'y', 'z', 'n',  'a',
	                             'm', 'e', 0,   'c', 0,   0xaa, 0xbb};
	unsigned char *full = malloc(gl + sizeof(opt));
	assert_non_null(full);
	memcpy(full, gz, 10);
	full[3] = 2 | 4 | 8 | 16; /* FHCRC, FEXTRA, FNAME, FCOMMENT */
	memcpy(full + 10, opt, sizeof(opt));
	memcpy(full + 10 + sizeof(opt), gz + 10, gl - 10);
	size_t fl = gl + sizeof(opt);
	assert_int_equal(cap_pprof_check(full, fl), CAP_PPROF_HAS_SAMPLES);
	for (size_t cut = 10; cut < 10 + sizeof(opt); cut++)
		assert_int_equal(cap_pprof_check(full, cut), CAP_PPROF_NOT_PROFILE);
	full[3] |= 0x20;
	assert_int_equal(cap_pprof_check(full, fl), CAP_PPROF_NOT_PROFILE);
	free(full);
	gz[2] = 7; /* not deflate */
	assert_int_equal(cap_pprof_check(gz, gl), CAP_PPROF_NOT_PROFILE);
	free(gz);
}

static void test_pprof_huge_field_hits_bound(void **state)
{
	/* sample_type, then an 8 MiB location, then a sample: the checker
	 * gives up at CAP_PPROF_SCAN_MAX instead of inflating 8 MiB. */
	size_t big = 8u << 20;
	unsigned char *p = calloc(1, big + 64);
	size_t n = 0;
	const unsigned char st[] = {0x0a, 0x04, 0x08, 0x01, 0x10, 0x02};
	memcpy(p, st, sizeof(st));
	n = sizeof(st);
	p[n++] = (4 << 3) | 2; /* location, LEN */
	size_t v = big;
	while (v >= 0x80) {
		p[n++] = (unsigned char)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (unsigned char)v;
	n += big;
	p[n++] = (2 << 3) | 2; /* sample */
	p[n++] = 0;
	size_t gl;
	unsigned char *gz = gzip_buf(p, n, &gl);
	assert_int_equal(cap_pprof_check(gz, gl), CAP_PPROF_NOT_PROFILE);
	/* The same with a small location is fine. */
	unsigned char small[] = {0x0a, 0x04, 0x08, 0x01, 0x10, 0x02,
	                         0x22, 0x02, 0x08, 0x01, 0x12, 0x00};
	assert_int_equal(cap_pprof_check(small, sizeof(small)), CAP_PPROF_HAS_SAMPLES);
	/* A sample before any sample_type is not a profile. */
	assert_int_equal(cap_pprof_check(small + 6, sizeof(small) - 6), CAP_PPROF_NOT_PROFILE);
	free(gz);
	free(p);
}

static void test_pprof_detect_type(void **state)
{
	struct {
		const char *file;
		enum ppop_ptype want;
	} cases[] = {
	        {"cpu.pb.gz", PPOP_PT_CPU},
	        {"heap.pb.gz", PPOP_PT_HEAP},
	        {"allocs.pb.gz", PPOP_PT_ALLOCS},
	        {"goroutine.pb.gz", PPOP_PT_GOROUTINE},
	        {"goroutine.pb", PPOP_PT_GOROUTINE},
	        {"threadcreate.pb.gz", PPOP_PT_THREADCREATE},
	        {"mutex.pb.gz", PPOP_PT_MUTEX},
	        {"block.pb.gz", PPOP_PT_BLOCK},
	        /* Empty: nothing tells mutex from block, and Go writes them alike. */
	        {"mutex-empty.pb.gz", PPOP_PT_BLOCK},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n;
		enum ppop_ptype t = PPOP_PT_OTHER;
		char *b = fixture_read(cases[i].file, &n);
		print_message("%s\n", cases[i].file);
		assert_int_equal(cap_pprof_detect_type(b, n, 0, &t), 0);
		assert_string_equal(ppop_ptype_name(t), ppop_ptype_name(cases[i].want));
		free(b);
	}
}

static void test_pprof_detect_type_rejects_garbage_and_caps(void **state)
{
	enum ppop_ptype t;
	assert_int_equal(cap_pprof_detect_type("hello", 5, 0, &t), -EINVAL);
	size_t n;
	char *b = fixture_read("heap.pb.gz", &n);
	assert_int_equal(cap_pprof_detect_type(b, n, 1024, &t), -EFBIG);
	assert_int_equal(cap_pprof_detect_type(b, 40, 0, &t), -EINVAL);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_pprof_real_profiles_have_samples),
	        cmocka_unit_test(test_pprof_disabled_mutex_block_are_empty),
	        cmocka_unit_test(test_pprof_garbage_is_not_profile),
	        cmocka_unit_test(test_pprof_truncated_gzip),
	        cmocka_unit_test(test_pprof_huge_field_hits_bound),
	        cmocka_unit_test(test_pprof_corrupt_tail_after_first_sample_is_accepted),
	        cmocka_unit_test(test_pprof_inflates_little_past_first_sample),
	        cmocka_unit_test(test_pprof_checker_reused_across_profiles),
	        cmocka_unit_test(test_pprof_gzip_header_fields),
	        cmocka_unit_test(test_pprof_detect_type),
	        cmocka_unit_test(test_pprof_detect_type_rejects_garbage_and_caps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
