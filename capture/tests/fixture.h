/* capture/tests/fixture.h: reading test fixtures from $SRCDIR/tests/fixtures. */
#ifndef CAPTURE_TESTS_FIXTURE_H
#define CAPTURE_TESTS_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>

/* Reads a fixture into a malloc'd buffer; aborts the test run if missing. */
static inline char *fixture_read(const char *name, size_t *len)
{
	char path[4096];
	const char *src = getenv("SRCDIR");
	snprintf(path, sizeof(path), "%s/tests/fixtures/%s", src ? src : "capture", name);
	FILE *fp = fopen(path, "rb");
	if (fp == NULL) {
		fprintf(stderr, "missing fixture %s\n", path);
		abort();
	}
	size_t alloc = 4096, n = 0;
	char *buf = malloc(alloc);
	size_t got;
	while (buf && (got = fread(buf + n, 1, alloc - n, fp)) > 0) {
		n += got;
		if (n == alloc)
			buf = realloc(buf, alloc *= 2);
	}
	fclose(fp);
	if (buf == NULL)
		abort();
	*len = n;
	return buf;
}

#endif
