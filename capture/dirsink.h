/* capture/dirsink.h: the directory sink, for kubectl-profefe --output-dir and
 * for an operator without profefe.
 *
 * A profile lands as DIR/<namespace>/<pod>/<type>-<UTC time>.pb.gz. The
 * write is atomic (a temporary file, fsync, then a hard link to the final
 * name) and never replaces or appends to an existing file: a name that is
 * taken gets a "-1", "-2", ... suffix instead. A reader therefore never sees
 * a half-written profile, and two captures in the same second both survive.
 */
#ifndef CAPTURE_DIRSINK_H
#define CAPTURE_DIRSINK_H

#include <stddef.h>
#include <stdint.h>

/* Writes `body` for (`ns`, `pod`, `type`) taken at `wall_ms` (ms since the
 * epoch). Missing directories are created (0755). `ns`, `pod` and `type`
 * must be non-empty and contain no '/' and not be "." or "..".
 * Returns 0, and the final path in `*path` (malloc'd, the caller frees it)
 * when `path` is non-NULL; or -EINVAL, or a negative errno from the file
 * system. On failure nothing is left behind. */
int cap_dir_write(const char *dir, const char *ns, const char *pod, const char *type,
                  int64_t wall_ms, const void *body, size_t len, char **path);

/* Writes `len` bytes to a new file `path` atomically: never overwriting,
 * -EEXIST when it exists. Used by the sink and the spool. */
int cap_file_write_excl(const char *path, const void *body, size_t len);

#endif
