/* libFuzzer target: the spool's reader, which loads what an earlier run
 * left in --spool-dir. Those files may be truncated by a crash, or written
 * by an older or newer version: each must be loaded or dropped, never read
 * past its end. The input is up to four spool files separated by "\n%%\n";
 * they are written as entries 1..4 of a fresh spool directory, which is
 * opened with a small cap, given one new profile (so loaded entries may be
 * dropped to make room), and drained. The directory is on /dev/shm
 * unless TMPDIR says otherwise. Every entry checked out must have
 * its service and type. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capture/spool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

/* Removes what the spool left in `dir`, so inputs do not meet. */
static void empty_dir(void)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (d == NULL)
		abort();
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.' || strncmp(de->d_name, ".tmp-", 5) == 0)
			(void)unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
}

static void remove_dir(void)
{
	empty_dir();
	rmdir(dir);
}

static void write_entry(unsigned seq, const uint8_t *p, size_t n)
{
	char path[128];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%016x.spool", dir, seq);
	if ((fp = fopen(path, "wb")) == NULL || fwrite(p, 1, n, fp) != n || fclose(fp) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char sep[] = "\n%%\n";
	const struct cap_push_meta m = {.service = "svc", .type = "heap", .created_ms = 1};
	struct cap_spool_entry *e;
	struct cap_spool *s;
	unsigned seq = 1;
	int rc;

	if (dir[0] == '\0') {
		/* tmpfs: a disk's metadata updates would make this 10x slower. */
		const char *tmp = getenv("TMPDIR");
		if (tmp == NULL)
			tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
		snprintf(dir, sizeof(dir), "%s/fuzz-spool-XXXXXX", tmp);
		if (mkdtemp(dir) == NULL)
			abort();
		atexit(remove_dir);
	}
	if (size > 64 * 1024)
		return 0;
	while (seq <= 4) {
		const uint8_t *cut = memmem(data, size, sep, sizeof(sep) - 1);
		size_t n = cut ? (size_t)(cut - data) : size;
		write_entry(seq++, data, n);
		if (!cut)
			break;
		data += n + sizeof(sep) - 1;
		size -= n + sizeof(sep) - 1;
	}
	if (cap_spool_open(dir, 4096, NULL, NULL, &s) != 0)
		abort();
	(void)cap_spool_put(s, &m, "body", 4);
	while ((rc = cap_spool_checkout(s, &e)) != -ENOENT) {
		if (rc < 0) /* unreadable: dropped, the next one is tried */
			continue;
		if (e->meta.service == NULL || e->meta.type == NULL)
			abort();
		cap_spool_ack(s, e);
	}
	cap_spool_close(s);
	empty_dir();
	return 0;
}
