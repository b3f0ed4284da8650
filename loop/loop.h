/* loop/loop.h: the one event loop every part of the program shares.
 *
 * A loop owns one curl multi handle driven by curl_multi_socket_action()
 * and epoll, a binary heap of timers, and plain fd watches (signalfd, the
 * metrics listener). Everything runs on one thread, so nothing here locks.
 * The loop knows nothing about Kubernetes or profiles: callers hand it
 * curl easy handles and get one completion callback per transfer.
 *
 * Ownership: the loop never frees what it is lent. Timers and fd watches
 * are caller-owned structs (embed them); easy handles stay the caller's.
 */
#ifndef LOOP_LOOP_H
#define LOOP_LOOP_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

struct loop;

/* A one-shot timer. Embed it, loop_timer_init() it once, then start and
 * stop it as often as needed. Restarting a pending timer reschedules it. */
struct loop_timer {
	uint64_t due_ms; /* monotonic deadline; private */
	size_t heap_idx; /* position in the heap, SIZE_MAX when idle; private */
	void (*cb)(struct loop_timer *t);
	void *arg; /* the caller's, untouched by the loop */
};

/* A watch on a file descriptor the caller owns. The struct must stay put
 * (and be at least 2-byte aligned, as every struct is) while watched. */
struct loop_fd {
	int fd;
	uint32_t events; /* EPOLLIN and/or EPOLLOUT */
	void (*cb)(struct loop_fd *w, uint32_t revents);
	void *arg;
};

/* Called once when a transfer ends, whatever the outcome. `rc` is curl's
 * result; the HTTP status is on the easy handle (CURLINFO_RESPONSE_CODE).
 * The easy handle has already been removed from the multi: the callback may
 * free it, or reuse it with loop_transfer_start(). */
typedef void (*loop_done_fn)(void *arg, CURL *easy, CURLcode rc);

/* Creates a loop. Returns 0 and stores it in `*out`, or a negative errno. */
int loop_new(struct loop **out);

/* Frees the loop. Transfers still running are removed from the multi
 * without their callbacks; the caller frees their easy handles. Safe on NULL. */
void loop_free(struct loop *l);

/* Runs until loop_stop() is called. Returns 0, or a negative errno when
 * epoll itself fails. */
int loop_run(struct loop *l);

/* Makes loop_run() return after the current iteration. */
void loop_stop(struct loop *l);

/* Runs one iteration, waiting at most `max_wait_ms` (-1: until something
 * happens). Returns 0 or a negative errno. For tests and simple tools. */
int loop_run_once(struct loop *l, int max_wait_ms);

/* Monotonic milliseconds, cached per iteration (CLOCK_MONOTONIC). */
uint64_t loop_now_ms(const struct loop *l);

/* The longest time one iteration has spent dispatching its events and
 * timers since the loop was created, in microseconds: the worst wait the
 * loop has imposed on every other handle (a watch, a probe, a timer). */
uint64_t loop_max_stall_us(const struct loop *l);

/* Microseconds the current iteration has been busy so far. Work that can
 * be resumed later (a list page, an event queue) stops once
 * loop_should_yield() says so and carries on from a timer, so that one
 * iteration keeps every other handle waiting about LOOP_YIELD_US at most,
 * whatever mix of such work it runs. */
#define LOOP_YIELD_US 10000u
uint64_t loop_busy_us(const struct loop *l);
int loop_should_yield(const struct loop *l);

/* Iterations by their busy time, as loop_max_stall_us() measures it:
 * counts[i] holds those of at most loop_stall_bounds_us[i] (and above the
 * bound before), counts[LOOP_STALL_NBOUNDS] those above the last bound.
 * Not cumulative. `sum_us` is the busy time of all of them. The cpu_
 * fields count the same iterations by the CPU time the loop's thread used
 * in them: wall time includes the moments the machine kept the process
 * off the CPU, CPU time is what the operator's own work costs. */
#define LOOP_STALL_NBOUNDS 9
extern const uint64_t loop_stall_bounds_us[LOOP_STALL_NBOUNDS];
struct loop_stalls {
	uint64_t counts[LOOP_STALL_NBOUNDS + 1];
	uint64_t sum_us;
	uint64_t max_us; /* loop_max_stall_us() */
	uint64_t cpu_counts[LOOP_STALL_NBOUNDS + 1];
	uint64_t cpu_sum_us;
	uint64_t cpu_max_us;
};
void loop_stalls_get(const struct loop *l, struct loop_stalls *out);

/* Refreshes the cached time; call after a long synchronous step. */
void loop_update_time(struct loop *l);

/* Wall-clock time in milliseconds since the epoch (CLOCK_REALTIME). */
int64_t loop_wall_ms(void);

/* The multi handle, e.g. to set CURLMOPT_MAX_TOTAL_CONNECTIONS. Lent. */
CURLM *loop_multi(struct loop *l);

void loop_timer_init(struct loop_timer *t, void (*cb)(struct loop_timer *t), void *arg);
/* (Re)arms `t` to fire `delay_ms` from now. Returns 0 or -ENOMEM, and on
 * failure leaves `t` as it was; re-arming a pending timer never fails. */
int loop_timer_start(struct loop *l, struct loop_timer *t, uint64_t delay_ms);
/* Arms `t` to fire at wall-clock time `at_ms` (loop_wall_ms()), or at once
 * when that is past. Both clocks are read afresh: a timer armed late in a
 * long loop iteration does not fire early by the iteration's length, as a
 * delay taken against the cached time would. Returns as loop_timer_start. */
int loop_timer_start_wall(struct loop *l, struct loop_timer *t, int64_t at_ms);
/* Disarms `t`. Safe on an idle timer. */
void loop_timer_stop(struct loop *l, struct loop_timer *t);
/* True while `t` is armed. */
int loop_timer_active(const struct loop_timer *t);

/* Starts watching `w->fd` for `w->events`. Returns 0 or a negative errno. */
int loop_fd_start(struct loop *l, struct loop_fd *w);
/* Stops watching. Safe to call from inside the watch's own callback. */
void loop_fd_stop(struct loop *l, struct loop_fd *w);

/* Adds a configured easy handle to the multi. `done` is called exactly once,
 * unless loop_transfer_cancel() is called first. The loop uses
 * CURLOPT_PRIVATE; callers must not. Returns 0 or a negative errno, and on
 * failure `done` is never called. */
int loop_transfer_start(struct loop *l, CURL *easy, loop_done_fn done, void *arg);

/* Cancels a running transfer: removes it without calling `done`.
 * The caller still owns (and frees) `easy`. Safe on a finished transfer. */
void loop_transfer_cancel(struct loop *l, CURL *easy);

/* Number of transfers running now. */
size_t loop_transfers_running(const struct loop *l);

/* A growable byte buffer with a hard cap, for response bodies. */
struct loop_buf {
	char *data; /* NUL-terminated when non-NULL */
	size_t len;
	size_t cap_bytes; /* the most we accept; 0 means 64 MiB */
	size_t alloc;
	int overflow; /* set when a write would have passed cap_bytes */
};

/* Appends `n` bytes. Returns 0, -ENOMEM, or -EFBIG past cap_bytes (and sets
 * overflow). The buffer is unchanged on failure. */
int loop_buf_append(struct loop_buf *b, const void *p, size_t n);
/* Empties the buffer, keeping its allocation and cap. */
void loop_buf_reset(struct loop_buf *b);
/* Frees the data. The struct itself is the caller's. */
void loop_buf_free(struct loop_buf *b);
/* Hands the data to the caller (free() it) and empties the buffer. */
char *loop_buf_take(struct loop_buf *b, size_t *len);

/* A CURLOPT_WRITEFUNCTION that appends to the struct loop_buf given as
 * CURLOPT_WRITEDATA, and aborts the transfer (CURLE_WRITE_ERROR) past its cap. */
size_t loop_buf_curl_write(char *ptr, size_t size, size_t nmemb, void *userdata);

/* Exponential backoff with full jitter, as client-go's wait.Backoff:
 * each step doubles the ceiling from base_ms up to max_ms, and the delay is
 * drawn uniformly from [ceiling/2, ceiling]. */
struct loop_backoff {
	uint32_t base_ms;
	uint32_t max_ms;
	uint32_t attempt; /* steps taken since the last reset */
};

/* Returns the next delay in milliseconds and advances the attempt count. */
uint32_t loop_backoff_next(struct loop_backoff *b);
/* Starts over from base_ms, e.g. after a success. */
void loop_backoff_reset(struct loop_backoff *b);

/* A uniformly distributed random 32-bit value from a per-process
 * xorshift generator seeded from getrandom(). Not for secrets. */
uint32_t loop_rand(void);

#endif
