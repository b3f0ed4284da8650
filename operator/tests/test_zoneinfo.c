/* operator/tests/test_zoneinfo.c: the zone loader's answers for a real
 * zone, a missing one, a directory, a file that is not TZif, a file over
 * the size cap and a bad name; with the system's zoneinfo and with a
 * --zoneinfo-dir of the test's own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "operator/zoneinfo.h"

/* 2024-07-15T12:00:00Z and 2024-01-15T12:00:00Z */
#define SUMMER 1721044800
#define WINTER 1705320000

static int setup(void **state)
{
	char *d = strdup("/tmp/op-zoneinfo-XXXXXX");
	if (d == NULL || mkdtemp(d) == NULL)
		return -1;
	*state = d;
	return 0;
}

static int teardown(void **state)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", (char *)*state);
	free(*state);
	return system(cmd) == 0 ? 0 : -1;
}

/* Writes `n` bytes of `data` to `<dir>/<name>`, making one parent dir. */
static void put(const char *dir, const char *name, const void *data, size_t n)
{
	char path[512];
	const char *slash = strchr(name, '/');
	FILE *f;

	if (slash) {
		snprintf(path, sizeof(path), "%s/%.*s", dir, (int)(slash - name), name);
		mkdir(path, 0755);
	}
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_non_null(f = fopen(path, "wb"));
	assert_int_equal(fwrite(data, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

static void test_zone_load_reads_the_system_zoneinfo(void **state)
{
	struct rec_zone *z = NULL;

	assert_int_equal(op_zone_load(NULL, "Europe/Berlin", &z), 0);
	assert_string_equal(rec_zone_name(z), "Europe/Berlin");
	assert_int_equal(rec_zone_offset(z, SUMMER), 7200);
	assert_int_equal(rec_zone_offset(z, WINTER), 3600);
	rec_zone_unref(z);
	assert_int_equal(op_zone_load(NULL, "America/New_York", &z), 0);
	assert_int_equal(rec_zone_offset(z, SUMMER), -14400);
	rec_zone_unref(z);
}

static void test_zone_load_refuses_missing_and_odd_files(void **state)
{
	struct rec_zone *z = NULL;

	assert_int_equal(op_zone_load(NULL, "Mars/Olympus_Mons", &z), -ENOENT);
	assert_int_equal(op_zone_load(NULL, "America", &z), -ENOENT);  /* a directory */
	assert_int_equal(op_zone_load(NULL, "zone.tab", &z), -ENOENT); /* not TZif */
	assert_int_equal(op_zone_load(NULL, "Europe/Berlin/x", &z), -ENOENT);
	assert_int_equal(op_zone_load(NULL, "../../etc/passwd", &z), -EINVAL);
	assert_int_equal(op_zone_load(NULL, "/etc/localtime", &z), -EINVAL);
	assert_int_equal(op_zone_load(NULL, "", &z), -EINVAL);
	assert_null(z);
}

static void test_zone_load_honours_zoneinfo_dir(void **state)
{
	const char *dir = *state;
	struct rec_zone *z = NULL;
	char *tzif = NULL;
	size_t n = 0;
	FILE *f;

	/* A copy of a real zone under another name works from `dir` only. */
	assert_non_null(f = fopen("/usr/share/zoneinfo/Asia/Kolkata", "rb"));
	assert_non_null(tzif = malloc(1 << 16));
	n = fread(tzif, 1, 1 << 16, f);
	fclose(f);
	put(dir, "Test/Kolkata", tzif, n);
	free(tzif);
	assert_int_equal(op_zone_load(dir, "Test/Kolkata", &z), 0);
	assert_int_equal(rec_zone_offset(z, SUMMER), 19800);
	rec_zone_unref(z);
	z = NULL;
	assert_int_equal(op_zone_load(NULL, "Test/Kolkata", &z), -ENOENT);
	assert_int_equal(op_zone_load(dir, "Europe/Berlin", &z), -ENOENT);
	/* UTC needs no file, so an empty zoneinfo still knows it. */
	assert_int_equal(op_zone_load(dir, "Etc/UTC", &z), 0);
	assert_ptr_equal(z, rec_zone_utc());
	rec_zone_unref(z);
}

static void test_zone_load_refuses_non_tzif_and_oversized_files(void **state)
{
	const char *dir = *state;
	struct rec_zone *z = NULL;
	const char *text = "# tzdb zone.tab\nDE\t+5230+01322\tEurope/Berlin\n";
	char *big = calloc(1, OP_ZONE_MAX_BYTES + 1);

	assert_non_null(big);
	put(dir, "Text/Zone", text, strlen(text));
	assert_int_equal(op_zone_load(dir, "Text/Zone", &z), -ENOENT);
	put(dir, "Empty/Zone", "", 0);
	assert_int_equal(op_zone_load(dir, "Empty/Zone", &z), -ENOENT);
	memcpy(big, "TZif2", 5);
	put(dir, "Big/AtCap", big, OP_ZONE_MAX_BYTES); /* read, then refused as TZif */
	assert_int_equal(op_zone_load(dir, "Big/AtCap", &z), -ENOENT);
	put(dir, "Big/OverCap", big, OP_ZONE_MAX_BYTES + 1);
	assert_int_equal(op_zone_load(dir, "Big/OverCap", &z), -EFBIG);
	assert_null(z);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_zone_load_reads_the_system_zoneinfo),
	        cmocka_unit_test(test_zone_load_refuses_missing_and_odd_files),
	        cmocka_unit_test_setup_teardown(test_zone_load_honours_zoneinfo_dir, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_zone_load_refuses_non_tzif_and_oversized_files,
	                                        setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
