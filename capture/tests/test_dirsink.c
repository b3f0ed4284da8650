/* capture/tests/test_dirsink.c: the directory sink's names and its
 * promise never to overwrite. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capture/dirsink.h"

/* 2006-01-02T15:04:05Z */
#define T0 1136214245000LL

static int setup(void **state)
{
	char *d = strdup("/tmp/cap-dirsink-XXXXXX");
	if (mkdtemp(d) == NULL)
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

static char *slurp(const char *path)
{
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	char *b = calloc(1, 4096);
	size_t n = fread(b, 1, 4095, fp);
	b[n] = '\0';
	fclose(fp);
	return b;
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *de;
	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.' || (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")))
			n++;
	closedir(d);
	return n;
}

static void test_dirsink_layout_and_name(void **state)
{
	const char *dir = *state;
	char *path = NULL, want[512];
	assert_int_equal(cap_dir_write(dir, "web", "web-7d9f-abc", "heap", T0, "one", 3, &path), 0);
	snprintf(want, sizeof(want), "%s/web/web-7d9f-abc/heap-20060102T150405Z.pb.gz", dir);
	assert_string_equal(path, want);
	char *got = slurp(path);
	assert_string_equal(got, "one");
	free(got);
	free(path);
}

static void test_dirsink_never_overwrites(void **state)
{
	const char *dir = *state;
	char *p1, *p2, *p3, want[512], sub[512];
	assert_int_equal(cap_dir_write(dir, "ns", "pod", "cpu", T0, "first", 5, &p1), 0);
	assert_int_equal(cap_dir_write(dir, "ns", "pod", "cpu", T0 + 400, "second", 6, &p2), 0);
	assert_int_equal(cap_dir_write(dir, "ns", "pod", "cpu", T0, "third", 5, &p3), 0);
	snprintf(want, sizeof(want), "%s/ns/pod/cpu-20060102T150405Z-1.pb.gz", dir);
	assert_string_equal(p2, want);
	snprintf(want, sizeof(want), "%s/ns/pod/cpu-20060102T150405Z-2.pb.gz", dir);
	assert_string_equal(p3, want);
	char *got = slurp(p1);
	assert_string_equal(got, "first");
	free(got);
	got = slurp(p2);
	assert_string_equal(got, "second");
	free(got);
	/* Three files, and no temporary left behind. */
	snprintf(sub, sizeof(sub), "%s/ns/pod", dir);
	assert_int_equal(count_entries(sub), 3);
	free(p1);
	free(p2);
	free(p3);
}

static void test_dirsink_rejects_bad_components(void **state)
{
	const char *dir = *state;
	assert_int_equal(cap_dir_write(dir, "..", "pod", "heap", T0, "x", 1, NULL), -EINVAL);
	assert_int_equal(cap_dir_write(dir, "ns", "a/b", "heap", T0, "x", 1, NULL), -EINVAL);
	assert_int_equal(cap_dir_write(dir, "ns", "pod", "", T0, "x", 1, NULL), -EINVAL);
	assert_int_equal(cap_dir_write(dir, "ns", ".", "heap", T0, "x", 1, NULL), -EINVAL);
	assert_int_equal(cap_dir_write(NULL, "ns", "p", "heap", T0, "x", 1, NULL), -EINVAL);
	assert_int_equal(count_entries(dir), 0);
}

static void test_file_write_excl(void **state)
{
	const char *dir = *state;
	char path[512];
	snprintf(path, sizeof(path), "%s/f", dir);
	assert_int_equal(cap_file_write_excl(path, "a", 1), 0);
	assert_int_equal(cap_file_write_excl(path, "b", 1), -EEXIST);
	char *got = slurp(path);
	assert_string_equal(got, "a");
	free(got);
	assert_int_equal(count_entries(dir), 1);
}

static void test_dirsink_unwritable_dir(void **state)
{
	if (geteuid() == 0)
		skip(); /* root writes anywhere */
	const char *dir = *state;
	char ro[512];
	snprintf(ro, sizeof(ro), "%s/ro", dir);
	assert_int_equal(mkdir(ro, 0500), 0);
	assert_true(cap_dir_write(ro, "ns", "p", "heap", T0, "x", 1, NULL) < 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_dirsink_layout_and_name, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_dirsink_never_overwrites, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_dirsink_rejects_bad_components, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_file_write_excl, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_dirsink_unwritable_dir, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
