/* Rounds: the clock that decides when a policy's round runs, driven by a
 * virtual wall clock. Table tests for the cases seen in the field, then a
 * seeded random model that checks the invariants after every step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "reconcile/internal.h"

static int64_t T(const char *s)
{
	int64_t ms;
	if (rec_time_parse(s, &ms) != 0)
		fail_msg("bad time in test: %s", s);
	return ms;
}

static struct rec_schedule *sched(const char *spec)
{
	struct rec_schedule *s = NULL;
	char err[200];
	if (rec_schedule_parse(spec, NULL, &s, err, sizeof(err)) != 0)
		fail_msg("schedule %s: %s", spec, err);
	return s;
}

/* Two @every 1s rounds were seen at :00.991 and :01.006: the first came
 * from a timer that fired before the wall clock reached :01. */
static void test_round_never_before_its_time_every(void **state)
{
	struct rec_schedule *s = sched("@every 1s");
	struct rec_clock c = {0};
	(void)state;

	assert_int_equal(rec_clock_plan(&c, s, T("2026-01-01T00:00:00.500Z")),
	                 T("2026-01-01T00:00:01Z"));
	assert_int_equal(rec_clock_fire(&c, s, T("2026-01-01T00:00:00.991Z")), 0);
	assert_int_equal(c.next_ms, T("2026-01-01T00:00:01Z"));
	assert_int_equal(rec_clock_fire(&c, s, T("2026-01-01T00:00:01.006Z")),
	                 T("2026-01-01T00:00:01Z"));
	assert_int_equal(c.next_ms, T("2026-01-01T00:00:02Z"));
	/* A second timer for the same time runs nothing. */
	assert_int_equal(rec_clock_fire(&c, s, T("2026-01-01T00:00:01.010Z")), 0);
	rec_schedule_free(s);
}

/* An @hourly policy fired at 59:59.997 and again at 00:00.010. */
static void test_round_never_before_its_time_hourly(void **state)
{
	struct rec_schedule *s = sched("@hourly");
	struct rec_clock c = {0};
	(void)state;

	rec_clock_plan(&c, s, T("2026-01-01T09:10:00Z"));
	assert_int_equal(c.next_ms, T("2026-01-01T10:00:00Z"));
	assert_int_equal(rec_clock_fire(&c, s, T("2026-01-01T09:59:59.997Z")), 0);
	assert_int_equal(rec_clock_fire(&c, s, T("2026-01-01T10:00:00.010Z")),
	                 T("2026-01-01T10:00:00Z"));
	assert_int_equal(rec_clock_fire(&c, s, T("2026-01-01T10:00:00.020Z")), 0);
	assert_int_equal(c.next_ms, T("2026-01-01T11:00:00Z"));
	rec_schedule_free(s);
}

/* An edit within the second (or minute) of a round does not run that
 * scheduled time again; an edit to a shorter schedule takes effect at once. */
static void test_round_edit_never_repeats_a_round(void **state)
{
	struct rec_schedule *every = sched("@every 1s"), *minute = sched("* * * * *");
	struct rec_schedule *hour = sched("@every 1h"), *five = sched("@every 5s");
	struct rec_clock c = {0};
	(void)state;

	rec_clock_plan(&c, minute, T("2026-01-01T00:00:30Z"));
	assert_int_equal(rec_clock_fire(&c, minute, T("2026-01-01T00:01:00.004Z")),
	                 T("2026-01-01T00:01:00Z"));
	rec_clock_plan(&c, every, T("2026-01-01T00:01:00.005Z"));
	assert_int_equal(c.next_ms, T("2026-01-01T00:01:01Z"));
	rec_clock_plan(&c, minute, T("2026-01-01T00:01:00.006Z"));
	assert_int_equal(c.next_ms, T("2026-01-01T00:02:00Z"));

	c = (struct rec_clock){0};
	rec_clock_plan(&c, hour, T("2026-01-01T00:00:00Z"));
	assert_int_equal(c.next_ms, T("2026-01-01T01:00:00Z"));
	rec_clock_plan(&c, five, T("2026-01-01T00:00:07.300Z"));
	assert_int_equal(c.next_ms, T("2026-01-01T00:00:12Z"));
	rec_schedule_free(every);
	rec_schedule_free(minute);
	rec_schedule_free(hour);
	rec_schedule_free(five);
}

/* A loop stalled past several scheduled times runs one round, then keeps
 * to the schedule; a late start does not shift @every's grid. */
static void test_round_after_a_stall(void **state)
{
	struct rec_schedule *s = sched("@every 1s");
	struct rec_clock c = {0};
	(void)state;

	rec_clock_plan(&c, s, T("2026-01-01T00:00:00.200Z"));
	assert_int_equal(rec_clock_fire(&c, s, T("2026-01-01T00:00:04.500Z")),
	                 T("2026-01-01T00:00:01Z"));
	assert_int_equal(c.next_ms, T("2026-01-01T00:00:05Z"));
	/* 300 ms late: the next is still on the grid. */
	assert_int_equal(rec_clock_fire(&c, s, T("2026-01-01T00:00:05.300Z")),
	                 T("2026-01-01T00:00:05Z"));
	assert_int_equal(c.next_ms, T("2026-01-01T00:00:06Z"));
	rec_schedule_free(s);
}

static void test_round_suspended_or_invalid_plans_nothing(void **state)
{
	struct rec_clock c = {.next_ms = 5, .last_ms = 1};
	(void)state;

	assert_int_equal(rec_clock_plan(&c, NULL, 1000), 0);
	assert_int_equal(c.next_ms, 0);
	assert_int_equal(rec_clock_fire(&c, NULL, 10000), 0);
}

/* The spread window: the flag, but at most half the gap to the next round.
 * With the default 10 s, @every 1s captured a pod only every ~4 s. */
static void test_round_window_bounded_by_period(void **state)
{
	(void)state;
	assert_int_equal(rec_round_window_ms(10000, 1000, 2000), 500);
	assert_int_equal(rec_round_window_ms(10000, 0, 5000), 2500);
	assert_int_equal(rec_round_window_ms(10000, 0, 3600000), 10000);
	assert_int_equal(rec_round_window_ms(0, 0, 1000), 0);
	assert_int_equal(rec_round_window_ms(10000, 5000, 0), 10000); /* no next round */
	for (int i = 0; i < 1000; i++) {
		char uid[32];
		snprintf(uid, sizeof(uid), "uid-%d", i);
		assert_true(rec_spread_offset_ms(uid, rec_round_window_ms(10000, 0, 1000)) < 500);
	}
}

/* ------------------------------------------------------------------ */
/* The model: a policy's clock under random edits, suspensions, clock
 * steps, and timers that fire early, on time or late. */

struct model {
	uint64_t rng;
	int64_t now;
	struct rec_clock c;
	const struct rec_schedule *s; /* NULL: suspended */
	int si;
	int64_t last_round;
	int64_t rounds;
};

static const char *const model_specs[] = {"@every 1s", "@every 2s",   "@every 5s",
                                          "* * * * *", "*/2 * * * *", "@hourly"};
enum { NSPECS = sizeof(model_specs) / sizeof(model_specs[0]) };

static uint32_t rnd(struct model *m, uint32_t n)
{
	m->rng ^= m->rng << 13;
	m->rng ^= m->rng >> 7;
	m->rng ^= m->rng << 17;
	return (uint32_t)(m->rng % n);
}

static void model_check_fire(struct model *m, struct rec_schedule *const *all, uint64_t seed,
                             int step)
{
	int64_t due = m->c.next_ms, round;

	round = rec_clock_fire(&m->c, m->s, m->now);
	if (round == 0) {
		if (m->s && due > 0 && m->now >= due)
			fail_msg("seed %llu step %d: due %lld at %lld but no round",
			         (unsigned long long)seed, step, (long long)due, (long long)m->now);
		return;
	}
	if (round > m->now)
		fail_msg("seed %llu step %d: round %lld started early at %lld",
		         (unsigned long long)seed, step, (long long)round, (long long)m->now);
	if (round <= m->last_round)
		fail_msg("seed %llu step %d: round %lld not after the last one %lld",
		         (unsigned long long)seed, step, (long long)round,
		         (long long)m->last_round);
	if (round != due)
		fail_msg("seed %llu step %d: ran %lld, planned %lld", (unsigned long long)seed,
		         step, (long long)round, (long long)due);
	if (m->c.next_ms <= m->now || m->c.next_ms <= round)
		fail_msg("seed %llu step %d: next %lld not after now %lld",
		         (unsigned long long)seed, step, (long long)m->c.next_ms,
		         (long long)m->now);
	/* A timely fire keeps the schedule's rate: the next round is the
	 * schedule's next time after this one. */
	if (m->now < rec_schedule_next(m->s, round) &&
	    m->c.next_ms != rec_schedule_next(m->s, round))
		fail_msg("seed %llu step %d: next %lld, schedule says %lld",
		         (unsigned long long)seed, step, (long long)m->c.next_ms,
		         (long long)rec_schedule_next(m->s, round));
	(void)all;
	m->last_round = round;
	m->rounds++;
}

static void model_run(uint64_t seed, int steps, struct rec_schedule *const *all)
{
	struct model m = {.rng = seed * 2654435761u + 1, .now = T("2026-03-01T00:00:00Z")};

	m.si = 0;
	m.s = all[0];
	rec_clock_plan(&m.c, m.s, m.now);
	for (int step = 0; step < steps; step++) {
		uint32_t r = rnd(&m, 100);
		if (r < 70) {
			/* The timer fires around the planned time: early by up
			 * to 50 ms, or late by up to 1.5 s. */
			int64_t due = m.c.next_ms > 0 ? m.c.next_ms : m.now + 1000;
			int64_t at = due - 50 + (int64_t)rnd(&m, 1551);
			if (at > m.now)
				m.now = at;
			model_check_fire(&m, all, seed, step);
		} else if (r < 85) {
			m.now += rnd(&m, 3000); /* time passes, no timer */
			model_check_fire(&m, all, seed, step);
		} else if (r < 95) {
			m.si = (int)rnd(&m, NSPECS); /* an edit */
			m.s = all[m.si];
			rec_clock_plan(&m.c, m.s, m.now);
			if (m.c.next_ms <= m.now || m.c.next_ms <= m.last_round)
				fail_msg("seed %llu step %d: planned %lld at %lld (last %lld)",
				         (unsigned long long)seed, step, (long long)m.c.next_ms,
				         (long long)m.now, (long long)m.last_round);
		} else {
			/* Suspend, or resume. */
			m.s = m.s ? NULL : all[m.si];
			rec_clock_plan(&m.c, m.s, m.now);
		}
	}
	if (m.rounds < steps / 4)
		fail_msg("seed %llu: only %lld rounds in %d steps", (unsigned long long)seed,
		         (long long)m.rounds, steps);
}

static void test_round_model_random(void **state)
{
	struct rec_schedule *all[NSPECS];
	const char *env = getenv("PPOP_MODEL_SEED");
	int steps = getenv("PPOP_MODEL_STEPS") ? atoi(getenv("PPOP_MODEL_STEPS")) : 20000;
	(void)state;

	for (int i = 0; i < NSPECS; i++)
		all[i] = sched(model_specs[i]);
	if (env) {
		model_run(strtoull(env, NULL, 10), steps, all);
	} else {
		for (uint64_t seed = 1; seed <= 8; seed++)
			model_run(seed, steps, all);
	}
	for (int i = 0; i < NSPECS; i++)
		rec_schedule_free(all[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_round_never_before_its_time_every),
	        cmocka_unit_test(test_round_never_before_its_time_hourly),
	        cmocka_unit_test(test_round_edit_never_repeats_a_round),
	        cmocka_unit_test(test_round_after_a_stall),
	        cmocka_unit_test(test_round_suspended_or_invalid_plans_nothing),
	        cmocka_unit_test(test_round_window_bounded_by_period),
	        cmocka_unit_test(test_round_model_random),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
