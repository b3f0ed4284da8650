/* reconcile/round.c: when a policy's rounds run.
 *
 * A round is named by its scheduled time, never by the moment its timer
 * happened to fire: the loop's timers run on a cached monotonic clock and
 * can fire a little before the wall clock reaches the scheduled time, or
 * late when the loop was busy. Deciding here, from the wall clock passed
 * in, is what makes "at or after its scheduled time, and at most once" a
 * property of pure code that unit tests drive with a virtual clock. */
#include "reconcile/internal.h"

static int64_t max64(int64_t a, int64_t b)
{
	return a > b ? a : b;
}

int64_t rec_clock_plan(struct rec_clock *c, const struct rec_schedule *s, int64_t now_ms)
{
	int64_t next;

	c->next_ms = 0;
	if (!s)
		return 0;
	/* Counted from the last round when that is still ahead of now, so
	 * @every keeps its grid (a round that started a little late does not
	 * push every later one back); otherwise from now. Strictly after the
	 * last round either way: an edit made in the same second as a round
	 * must not run that scheduled time again. */
	next = c->last_ms > 0 ? rec_schedule_next(s, c->last_ms) : -1;
	if (next <= now_ms)
		next = rec_schedule_next(s, max64(now_ms, c->last_ms));
	c->next_ms = next > 0 ? next : 0;
	return c->next_ms;
}

int64_t rec_clock_fire(struct rec_clock *c, const struct rec_schedule *s, int64_t now_ms)
{
	int64_t round;

	if (!s || c->next_ms <= 0)
		return 0;
	if (now_ms < c->next_ms)
		return 0; /* early: the caller re-arms for next_ms */
	round = c->next_ms;
	c->last_ms = round;
	/* After both the round and now: when the loop stalled past several
	 * scheduled times, one round runs for the first of them and the rest
	 * are skipped, as CronJob skips missed runs, rather than firing a
	 * burst of late rounds. */
	rec_clock_plan(c, s, now_ms);
	return round;
}

uint32_t rec_round_window_ms(uint32_t spread_ms, int64_t round_ms, int64_t next_ms)
{
	int64_t half;

	if (next_ms <= round_ms)
		return spread_ms;
	half = (next_ms - round_ms) / 2;
	return half < (int64_t)spread_ms ? (uint32_t)half : spread_ms;
}
