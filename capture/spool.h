/* capture/spool.h: a bounded FIFO of profiles waiting for profefe.
 *
 * When profefe is down or slow, captured profiles wait here instead of being
 * lost. With a directory, each profile is one file, "<seq>.spool" (16 hex
 * digits), holding a short text header of metadata and then the body, and
 * written atomically; the spool survives a restart and is replayed in
 * sequence order. Without a directory the same FIFO lives in memory (for
 * kubectl-profefe). Either way it is bounded: past max_bytes the oldest
 * profile that is not being pushed right now is dropped, and counted.
 */
#ifndef CAPTURE_SPOOL_H
#define CAPTURE_SPOOL_H

#include <stddef.h>
#include <stdint.h>

/* What profefe needs to store a profile, plus the caller's own tag. */
struct cap_push_meta {
	const char *service; /* required */
	const char *type;    /* profefe type: cpu heap block mutex goroutine threadcreate other */
	const char *labels;  /* encoded, see cap_labels_encode(); may be NULL */
	const char *instance_id; /* may be NULL */
	const char *origin;      /* opaque to capture/, e.g. "ns/policy|pod|type"; may be NULL */
	int64_t created_ms;      /* when the profile was taken, ms since the epoch */
};

struct cap_spool;

/* One spooled profile, checked out for a push. Owned by the spool; the
 * caller gives it back with cap_spool_ack() or cap_spool_release(). */
struct cap_spool_entry {
	uint64_t seq;
	struct cap_push_meta meta; /* strings owned by the entry */
	char *body;
	size_t len;
};

/* Called for each profile the spool drops; `m` is lent for the call. */
typedef void (*cap_spool_drop_fn)(void *arg, const struct cap_push_meta *m, uint64_t seq);

/* Opens a spool in `dir` (created if missing; NULL: in memory) holding at
 * most `max_bytes` (0: 256 MiB) of files. Existing "<seq>.spool" files are
 * loaded in order (a restart); leftover temporary files are removed; files
 * that cannot be read as spool entries are removed and counted as drops.
 * `drop` (may be NULL) hears about every dropped profile. Returns 0 and the
 * spool in `*out`, or a negative errno. */
int cap_spool_open(const char *dir, uint64_t max_bytes, cap_spool_drop_fn drop, void *arg,
                   struct cap_spool **out);

/* Frees the spool; what is on disk stays for the next start. Entries still
 * checked out are released first. Safe on NULL. */
void cap_spool_close(struct cap_spool *s);

/* Appends a profile (metadata and body are copied or written out). Drops
 * the oldest entries not checked out while the spool would pass its cap;
 * when even that is not enough, the new profile itself is dropped (and
 * counted). Returns 0 (also when dropped; see the drop callback), or a
 * negative errno when the file cannot be written. */
int cap_spool_put(struct cap_spool *s, const struct cap_push_meta *m, const void *body, size_t len);

/* Reserves the next sequence number, for a profile that may be spooled
 * later with cap_spool_put_seq(): the pusher takes one per submitted
 * profile, so profiles that fail out of order still replay in the order
 * they were submitted. */
uint64_t cap_spool_reserve(struct cap_spool *s);

/* As cap_spool_put(), with a number from cap_spool_reserve(); the entry
 * takes its place in sequence order. */
int cap_spool_put_seq(struct cap_spool *s, uint64_t seq, const struct cap_push_meta *m,
                      const void *body, size_t len);

/* As cap_spool_put_seq(), taking `body` (malloc'd, not NULL): a memory
 * spool keeps it as the entry's body instead of a copy; it is freed on
 * every other path, failures included. */
int cap_spool_put_take(struct cap_spool *s, uint64_t seq, const struct cap_push_meta *m, char *body,
                       size_t len);

/* Checks out the oldest entry not checked out, reading it from disk when
 * needed. Returns 0, -ENOENT when there is none, or a negative errno (the
 * unreadable entry is then dropped). */
int cap_spool_checkout(struct cap_spool *s, struct cap_spool_entry **out);

/* Removes a checked-out entry for good (delivered, or refused for good). */
void cap_spool_ack(struct cap_spool *s, struct cap_spool_entry *e);

/* Gives a checked-out entry back; it keeps its place in the order. */
void cap_spool_release(struct cap_spool *s, struct cap_spool_entry *e);

/* One byte budget shared by several spools (one per profefe URL), so the
 * operator's --spool-max-bytes bounds them all together: a spool that
 * needs room drops the oldest idle profile of all its budget's spools (by
 * created_ms, then sequence), and the drop is counted by the spool that
 * held it. A spool joins with cap_spool_share() and leaves when closed. */
struct cap_spool_budget;

/* Creates a budget of `max_bytes` (0: 256 MiB). Returns 0 or -ENOMEM. */
int cap_spool_budget_new(uint64_t max_bytes, struct cap_spool_budget **out);
/* Frees it; every spool sharing it must have been closed. Safe on NULL. */
void cap_spool_budget_free(struct cap_spool_budget *b);
/* Bytes held by all its spools now. */
uint64_t cap_spool_budget_bytes(const struct cap_spool_budget *b);

/* Makes `s` count against `b` (lent; it must outlive the spool) instead of
 * its own max_bytes, bringing what it already holds (a restart's files).
 * Call once, before the first put. */
void cap_spool_share(struct cap_spool *s, struct cap_spool_budget *b);

struct cap_spool_stats {
	uint64_t bytes; /* on disk (or in memory) now */
	uint64_t files; /* entries now, checked out or not */
	uint64_t drops; /* profiles dropped since open */
	size_t checked_out;
};
void cap_spool_stats(const struct cap_spool *s, struct cap_spool_stats *out);

#endif
