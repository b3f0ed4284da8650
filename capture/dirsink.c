/* capture/dirsink.c: atomic, never-overwriting profile files.
 *
 * rename() would replace an existing file, so the final step is link(),
 * which fails with EEXIST instead; the temporary name is then unlinked.
 * File systems without hard links fall back to renameat2(RENAME_NOREPLACE).
 */
#include "capture/dirsink.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Suffixes tried for a taken name before giving up. */
#define MAX_SUFFIX 1000

static int bad_component(const char *s)
{
	return s == NULL || *s == '\0' || strchr(s, '/') != NULL || strcmp(s, ".") == 0 ||
	       strcmp(s, "..") == 0;
}

/* mkdir -p for `path`, which it may modify temporarily. */
static int mkdir_p(char *path)
{
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		int rc = mkdir(path, 0755);
		*p = '/';
		if (rc < 0 && errno != EEXIST)
			return -errno;
	}
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int write_all(int fd, const void *body, size_t len)
{
	const char *p = body;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* fsyncs the directory holding `path`, so the new name is durable. */
static void fsync_parent(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	size_t n = slash ? (size_t)(slash - path) : 1;
	if (n == 0)
		n = 1;
	if (n >= sizeof(dir))
		return;
	memcpy(dir, slash ? path : ".", n);
	dir[n] = '\0';
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

/* Writes a temporary file next to `path` and returns its name in `tmp`. */
static int write_temp(const char *path, const void *body, size_t len, char *tmp, size_t tmplen)
{
	const char *slash = strrchr(path, '/');
	int n = slash ? snprintf(tmp, tmplen, "%.*s/.tmp-XXXXXX", (int)(slash - path), path)
	              : snprintf(tmp, tmplen, ".tmp-XXXXXX");
	if (n < 0 || (size_t)n >= tmplen)
		return -ENAMETOOLONG;
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = write_all(fd, body, len);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc < 0)
		unlink(tmp);
	return rc;
}

/* Gives `tmp` the name `path` unless that exists. */
static int publish(const char *tmp, const char *path)
{
	if (link(tmp, path) == 0)
		return 0;
	if (errno == EEXIST)
		return -EEXIST;
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
		return 1; /* tmp is gone already */
	return -errno;
}

int cap_file_write_excl(const char *path, const void *body, size_t len)
{
	char tmp[PATH_MAX];
	int rc = write_temp(path, body, len, tmp, sizeof(tmp));
	if (rc < 0)
		return rc;
	rc = publish(tmp, path);
	if (rc != 1)
		unlink(tmp);
	if (rc >= 0)
		fsync_parent(path);
	return rc < 0 ? rc : 0;
}

int cap_dir_write(const char *dir, const char *ns, const char *pod, const char *type,
                  int64_t wall_ms, const void *body, size_t len, char **path)
{
	char d[PATH_MAX], final[PATH_MAX], tmp[PATH_MAX], stamp[32];
	struct tm tm;
	time_t t = (time_t)(wall_ms / 1000);
	int rc, n;
	if (dir == NULL || *dir == '\0' || bad_component(ns) || bad_component(pod) ||
	    bad_component(type))
		return -EINVAL;
	if (gmtime_r(&t, &tm) == NULL || strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm) == 0)
		return -EINVAL;
	n = snprintf(d, sizeof(d), "%s/%s/%s", dir, ns, pod);
	if (n < 0 || (size_t)n >= sizeof(d))
		return -ENAMETOOLONG;
	rc = mkdir_p(d);
	if (rc < 0)
		return rc;
	n = snprintf(final, sizeof(final), "%s/%s-%s.pb.gz", d, type, stamp);
	if (n < 0 || (size_t)n >= sizeof(final))
		return -ENAMETOOLONG;
	rc = write_temp(final, body, len, tmp, sizeof(tmp));
	if (rc < 0)
		return rc;
	for (int i = 1; (rc = publish(tmp, final)) == -EEXIST && i <= MAX_SUFFIX; i++) {
		n = snprintf(final, sizeof(final), "%s/%s-%s-%d.pb.gz", d, type, stamp, i);
		if (n < 0 || (size_t)n >= sizeof(final)) {
			rc = -ENAMETOOLONG;
			break;
		}
	}
	if (rc != 1)
		unlink(tmp);
	if (rc < 0)
		return rc;
	fsync_parent(final);
	if (path != NULL && (*path = strdup(final)) == NULL) {
		unlink(final);
		return -ENOMEM;
	}
	return 0;
}
