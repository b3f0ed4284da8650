/* kube/tests/srv.h: a scripted HTTP/1.1 server on 127.0.0.1 for the kube
 * tests, run in-process on the test's loop, and a client pointed at it.
 *
 * Each connection carries one request. When a request (headers and any
 * Content-Length body) has arrived, the test's script fills the answer;
 * the server writes it at once, or `delay_ms` later when the script set
 * that field, or never (the script returned 0: the request hangs until the
 * client gives up or srv_stop() runs). Every request is recorded.
 */
#ifndef KUBE_TESTS_SRV_H
#define KUBE_TESTS_SRV_H

#include <stddef.h>
#include <stdint.h>

#include "loop/loop.h"

struct kube_client;
struct srv_conn;

#define SRV_MAX_REQS 32

struct srv {
	struct loop *l;
	struct loop_fd lw;
	int port;
	struct srv_conn *conns;
	/* Requests seen: "METHOD path|Authorization" lines, and their bodies. */
	char reqs[SRV_MAX_REQS][1200];
	char bodies[SRV_MAX_REQS][2048];
	int nreq;
	/* Replies written so far (immediate and delayed). */
	int nreplied;
	/* The test's script: fills `resp` for request number `i`; returns 0
	 * to leave the connection hanging with no answer. It may set
	 * `delay_ms` to hold this one answer back for that long. */
	int (*script)(struct srv *s, int i, const char *method, const char *path, char *resp,
	              size_t n);
	uint32_t delay_ms;
	/* The script may set this to write this one answer and keep the
	 * connection open after it (a watch stream that goes on). */
	int keep_open;
	int step; /* free for the script */
};

/* Listens on an ephemeral loopback port on `l`; fails the test on error. */
void srv_start(struct srv *s, struct loop *l);
/* Closes every connection (pending delayed answers are dropped) and the
 * listener. */
void srv_stop(struct srv *s);
/* Formats a whole response with a JSON body and Connection: close.
 * `extra` holds more header lines ("Name: value\r\n"), or NULL. */
void srv_reply(char *resp, size_t n, int status, const char *extra, const char *body);

/* A kube client for the server, configured through a kubeconfig written
 * under `dir` whose user section is `user` (e.g. "token: t"). */
struct kube_client *srv_client(struct loop *l, const char *dir, int port, const char *user);

/* Runs the loop until `*flag` is nonzero or `ms` have passed. */
void srv_run_until(struct loop *l, const int *flag, int ms);

/* Runs the loop until `cond` holds or `ms` of loop time have passed. The
 * bound is time, not a count of turns: a turn ends early whenever a
 * socket is ready, so a count runs out quickly on a loaded machine. */
#define SRV_RUN_WHILE_NOT(l, cond, ms)                                                             \
	do {                                                                                       \
		uint64_t srv_end_;                                                                 \
		loop_update_time(l);                                                               \
		srv_end_ = loop_now_ms(l) + (uint64_t)(ms);                                        \
		while (!(cond) && loop_now_ms(l) < srv_end_)                                       \
			loop_run_once((l), 50);                                                    \
	} while (0)

#endif
