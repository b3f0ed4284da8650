/* capture/tests/test_spool.c: the spool keeps order, stays within its cap,
 * counts what it drops, and survives a restart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capture/spool.h"

struct drops {
	int n;
	char origins[16][32];
};

static void on_drop(void *arg, const struct cap_push_meta *m, uint64_t seq)
{
	struct drops *d = arg;
	if (d->n < 16)
		snprintf(d->origins[d->n], sizeof(d->origins[0]), "%s", m->origin ? m->origin : "");
	d->n++;
}

static int setup(void **state)
{
	char *d = strdup("/tmp/cap-spool-XXXXXX");
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

static void put(struct cap_spool *s, const char *origin, const char *body)
{
	struct cap_push_meta m = {
	        .service = "svc",
	        .type = "heap",
	        .labels = "namespace=ns,pod=p%2C1",
	        .instance_id = "i-1",
	        .origin = origin,
	        .created_ms = 1136214245000LL,
	};
	assert_int_equal(cap_spool_put(s, &m, body, strlen(body)), 0);
}

/* Checks out the next entry and checks its origin and body. */
static struct cap_spool_entry *expect_next(struct cap_spool *s, const char *origin,
                                           const char *body)
{
	struct cap_spool_entry *e = NULL;
	assert_int_equal(cap_spool_checkout(s, &e), 0);
	assert_string_equal(e->meta.origin, origin);
	assert_int_equal(e->len, strlen(body));
	assert_memory_equal(e->body, body, e->len);
	return e;
}

static void run_fifo(const char *dir)
{
	struct cap_spool *s;
	struct cap_spool_entry *a, *b, *e;
	assert_int_equal(cap_spool_open(dir, 0, NULL, NULL, &s), 0);
	put(s, "a", "AAAA");
	put(s, "b", "BBBB");
	put(s, "c", "CCCC");
	a = expect_next(s, "a", "AAAA");
	b = expect_next(s, "b", "BBBB");
	/* A released entry keeps its place ahead of later ones. */
	cap_spool_release(s, a);
	e = expect_next(s, "a", "AAAA");
	cap_spool_ack(s, e);
	cap_spool_ack(s, b);
	e = expect_next(s, "c", "CCCC");
	assert_string_equal(e->meta.service, "svc");
	assert_string_equal(e->meta.labels, "namespace=ns,pod=p%2C1");
	assert_string_equal(e->meta.instance_id, "i-1");
	assert_int_equal(e->meta.created_ms, 1136214245000LL);
	cap_spool_ack(s, e);
	assert_int_equal(cap_spool_checkout(s, &e), -ENOENT);
	struct cap_spool_stats st;
	cap_spool_stats(s, &st);
	assert_int_equal(st.files, 0);
	assert_int_equal(st.bytes, 0);
	cap_spool_close(s);
}

static void test_spool_fifo_disk(void **state)
{
	run_fifo(*state);
}

static void test_spool_fifo_memory(void **state)
{
	run_fifo(NULL);
}

static void test_spool_full_drops_oldest_and_counts(void **state)
{
	struct cap_spool *s;
	struct drops d = {0};
	struct cap_spool_stats st;
	/* Room for about three entries of ~100 bytes of header + 100 of body. */
	char body[101];
	memset(body, 'x', 100);
	body[100] = '\0';
	assert_int_equal(cap_spool_open(*state, 700, on_drop, &d, &s), 0);
	put(s, "1", body);
	put(s, "2", body);
	put(s, "3", body);
	cap_spool_stats(s, &st);
	assert_int_equal(st.files, 3);
	assert_int_equal(d.n, 0);
	put(s, "4", body);
	put(s, "5", body);
	cap_spool_stats(s, &st);
	assert_int_equal(st.files, 3);
	assert_true(st.bytes <= 700);
	assert_int_equal(st.drops, 2);
	assert_int_equal(d.n, 2);
	assert_string_equal(d.origins[0], "1");
	assert_string_equal(d.origins[1], "2");
	/* A checked-out entry is never dropped: the next oldest goes. */
	struct cap_spool_entry *e = expect_next(s, "3", body);
	put(s, "6", body);
	assert_string_equal(d.origins[2], "4");
	cap_spool_ack(s, e);
	/* A profile bigger than the whole spool is dropped itself. */
	char big[1024];
	memset(big, 'y', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	put(s, "big", big);
	assert_string_equal(d.origins[3], "big");
	cap_spool_stats(s, &st);
	assert_int_equal(st.drops, 4);
	e = expect_next(s, "5", body);
	cap_spool_ack(s, e);
	e = expect_next(s, "6", body);
	cap_spool_ack(s, e);
	cap_spool_close(s);
}

static void put_at(struct cap_spool *s, const char *origin, int64_t created_ms, size_t len)
{
	char body[512];
	struct cap_push_meta m = {
	        .service = "svc", .type = "heap", .origin = origin, .created_ms = created_ms};

	assert_true(len <= sizeof(body));
	memset(body, 'x', len);
	assert_int_equal(cap_spool_put(s, &m, body, len), 0);
}

/* Issue 12: --spool-max-bytes bounds every sink's spool together; the
 * oldest profile of any of them goes first, and the spool that held it
 * counts the drop. */
static void test_spool_budget_is_shared_oldest_first(void **state)
{
	char da[300], db[300];
	struct drops dropa = {0}, dropb = {0};
	struct cap_spool_budget *b;
	struct cap_spool *a, *c;
	struct cap_spool_stats sa, sb;

	snprintf(da, sizeof(da), "%s/a", (char *)*state);
	snprintf(db, sizeof(db), "%s/b", (char *)*state);
	assert_int_equal(cap_spool_budget_new(2000, &b), 0);
	assert_int_equal(cap_spool_open(da, 1 << 20, on_drop, &dropa, &a), 0);
	assert_int_equal(cap_spool_open(db, 1 << 20, on_drop, &dropb, &c), 0);
	cap_spool_share(a, b);
	cap_spool_share(c, b);
	/* a's profiles are older: taken at 1..4, b's at 10..13. */
	put_at(a, "a1", 1, 400);
	put_at(a, "a2", 2, 400);
	put_at(c, "b1", 10, 400);
	put_at(c, "b2", 11, 400);
	assert_int_equal(dropa.n + dropb.n, 0);
	put_at(c, "b3", 12, 400); /* over 2000 with headers: a's oldest go */
	assert_true(cap_spool_budget_bytes(b) <= 2000);
	assert_true(dropa.n >= 1);
	assert_string_equal(dropa.origins[0], "a1");
	assert_int_equal(dropb.n, 0);
	put_at(a, "a3", 13, 400);
	assert_true(cap_spool_budget_bytes(b) <= 2000);
	cap_spool_stats(a, &sa);
	cap_spool_stats(c, &sb);
	assert_int_equal(sa.drops, (uint64_t)dropa.n);
	assert_int_equal(sb.drops, (uint64_t)dropb.n);
	assert_int_equal(sa.bytes + sb.bytes, cap_spool_budget_bytes(b));
	/* A closed spool keeps its files but leaves the budget. */
	cap_spool_close(a);
	assert_int_equal(cap_spool_budget_bytes(b), sb.bytes);
	cap_spool_close(c);
	assert_int_equal(cap_spool_budget_bytes(b), 0);
	cap_spool_budget_free(b);
	/* Reopened and shared again, its files count at once. */
	assert_int_equal(cap_spool_budget_new(2000, &b), 0);
	assert_int_equal(cap_spool_open(da, 1 << 20, NULL, NULL, &a), 0);
	cap_spool_share(a, b);
	assert_int_equal(cap_spool_budget_bytes(b), sa.bytes);
	cap_spool_close(a);
	cap_spool_budget_free(b);
}

static void test_spool_survives_restart(void **state)
{
	const char *dir = *state;
	struct cap_spool *s;
	struct cap_spool_stats st;
	char path[512];
	assert_int_equal(cap_spool_open(dir, 0, NULL, NULL, &s), 0);
	for (int i = 0; i < 12; i++) {
		char o[8], b[16];
		snprintf(o, sizeof(o), "%d", i);
		snprintf(b, sizeof(b), "body-%d", i);
		put(s, o, b);
	}
	/* Deliver the first one; the process then dies with 11 spooled. */
	struct cap_spool_entry *e = expect_next(s, "0", "body-0");
	cap_spool_ack(s, e);
	e = expect_next(s, "1", "body-1"); /* in flight when killed */
	cap_spool_close(s);

	/* A crash mid-write leaves a temporary file, and a stray file is not ours. */
	snprintf(path, sizeof(path), "%s/.tmp-abc123", dir);
	close(open(path, O_CREAT | O_WRONLY, 0600));
	snprintf(path, sizeof(path), "%s/notes.txt", dir);
	close(open(path, O_CREAT | O_WRONLY, 0600));

	assert_int_equal(cap_spool_open(dir, 0, NULL, NULL, &s), 0);
	cap_spool_stats(s, &st);
	assert_int_equal(st.files, 11);
	assert_int_equal(st.drops, 0);
	for (int i = 1; i < 12; i++) {
		char o[8], b[16];
		snprintf(o, sizeof(o), "%d", i);
		snprintf(b, sizeof(b), "body-%d", i);
		e = expect_next(s, o, b);
		cap_spool_ack(s, e);
	}
	/* New entries continue the sequence after the loaded ones. */
	put(s, "new", "n");
	e = expect_next(s, "new", "n");
	assert_true(e->seq > 12);
	cap_spool_ack(s, e);
	cap_spool_close(s);
	snprintf(path, sizeof(path), "%s/.tmp-abc123", dir);
	assert_int_equal(access(path, F_OK), -1);
}

static void test_spool_corrupt_file_dropped(void **state)
{
	const char *dir = *state;
	struct cap_spool *s;
	struct cap_spool_stats st;
	char path[512];
	assert_int_equal(cap_spool_open(dir, 0, NULL, NULL, &s), 0);
	put(s, "a", "A");
	put(s, "b", "B");
	cap_spool_close(s);
	snprintf(path, sizeof(path), "%s/%016x.spool", dir, 1);
	FILE *fp = fopen(path, "w");
	fputs("garbage\n", fp);
	fclose(fp);
	assert_int_equal(cap_spool_open(dir, 0, NULL, NULL, &s), 0);
	cap_spool_stats(s, &st);
	assert_int_equal(st.files, 1);
	assert_int_equal(st.drops, 1);
	struct cap_spool_entry *e = expect_next(s, "b", "B");
	cap_spool_ack(s, e);
	cap_spool_close(s);
}

static void test_spool_reserved_seq_keeps_submit_order(void **state)
{
	struct cap_spool *s;
	struct cap_spool_entry *e;
	struct cap_push_meta m = {.service = "svc", .type = "heap", .origin = "x"};
	assert_int_equal(cap_spool_open(*state, 0, NULL, NULL, &s), 0);
	/* Three pushes in flight fail in the order 3, 1, 2. */
	uint64_t s1 = cap_spool_reserve(s), s2 = cap_spool_reserve(s), s3 = cap_spool_reserve(s);
	m.origin = "3";
	assert_int_equal(cap_spool_put_seq(s, s3, &m, "c", 1), 0);
	m.origin = "1";
	assert_int_equal(cap_spool_put_seq(s, s1, &m, "a", 1), 0);
	put(s, "4", "d");
	m.origin = "2";
	assert_int_equal(cap_spool_put_seq(s, s2, &m, "b", 1), 0);
	const char *want[] = {"1", "2", "3", "4"}, *body[] = {"a", "b", "c", "d"};
	for (int i = 0; i < 4; i++) {
		e = expect_next(s, want[i], body[i]);
		cap_spool_ack(s, e);
	}
	cap_spool_close(s);
}

/* A memory spool keeps a taken body as is, no copy, and counts the same
 * bytes as the file a disk spool writes for the same profile. A disk spool
 * frees the body it takes (ASan/valgrind catch a leak or a double free). */
static void test_spool_put_take_keeps_body_and_counts_file_bytes(void **state)
{
	struct cap_spool *mem, *disk;
	struct cap_spool_entry *e;
	struct cap_spool_stats sm, sd;
	struct cap_push_meta m = {
	        .service = "svc one",
	        .type = "heap",
	        .labels = "namespace=ns,pod=p%2C1",
	        .instance_id = "i-1",
	        .origin = "ns/pol/1",
	        .created_ms = 1136214245000LL,
	};
	char path[512];
	struct stat st;
	char *b1 = strdup("body-1"), *b2 = strdup("body-1");
	assert_non_null(b1);
	assert_non_null(b2);
	assert_int_equal(cap_spool_open(NULL, 0, NULL, NULL, &mem), 0);
	assert_int_equal(cap_spool_open(*state, 0, NULL, NULL, &disk), 0);
	assert_int_equal(cap_spool_put_take(mem, cap_spool_reserve(mem), &m, b1, 6), 0);
	uint64_t seq = cap_spool_reserve(disk);
	assert_int_equal(cap_spool_put_take(disk, seq, &m, b2, 6), 0);
	cap_spool_stats(mem, &sm);
	cap_spool_stats(disk, &sd);
	assert_int_equal(sm.files, 1);
	assert_int_equal(sd.files, 1);
	snprintf(path, sizeof(path), "%s/%016llx.spool", (char *)*state, (unsigned long long)seq);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(sd.bytes, (uint64_t)st.st_size);
	assert_int_equal(sm.bytes, sd.bytes);
	assert_int_equal(cap_spool_checkout(mem, &e), 0);
	assert_ptr_equal(e->body, b1);
	assert_int_equal(e->len, 6);
	assert_string_equal(e->meta.service, "svc one");
	cap_spool_ack(mem, e);
	e = expect_next(disk, "ns/pol/1", "body-1");
	assert_string_equal(e->meta.service, "svc one");
	assert_string_equal(e->meta.labels, "namespace=ns,pod=p%2C1");
	assert_int_equal(e->meta.created_ms, 1136214245000LL);
	cap_spool_ack(disk, e);
	assert_int_equal(cap_spool_put_take(mem, 0, &m, NULL, 0), -EINVAL);
	cap_spool_close(mem);
	cap_spool_close(disk);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_spool_fifo_disk, setup, teardown),
	        cmocka_unit_test(test_spool_fifo_memory),
	        cmocka_unit_test_setup_teardown(test_spool_full_drops_oldest_and_counts, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_spool_survives_restart, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_spool_budget_is_shared_oldest_first, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_spool_corrupt_file_dropped, setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_spool_put_take_keeps_body_and_counts_file_bytes, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_spool_reserved_seq_keeps_submit_order, setup,
	                                        teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
