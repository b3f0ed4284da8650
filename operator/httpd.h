/* operator/httpd.h: the minimal HTTP/1.1 server behind /metrics, /healthz
 * and /readyz.
 *
 * It serves GET requests on the shared loop, one response per connection
 * (Connection: close). Every connection has a deadline and a request-size
 * cap, and the number of open connections is capped, so a slow or hostile
 * scraper costs one slot and one timeout, never the loop. When every slot
 * is taken, the oldest connection that has not yet sent its request head
 * makes way for the new one, so idle clients cannot keep probes out.
 * One peer address holds at most OP_HTTPD_MAX_PER_PEER connections, so a
 * client holding many idle connections can never push out, or keep out, a
 * probe from another address. Past the limit the peer's own idle ones are
 * closed, oldest first: at once when the slots run out, else once each has
 * had 100 ms to send its request (so a probe sharing the address of a
 * flood is read, not taken for part of it). A request from a peer already
 * being sent that many responses is closed unanswered.
 */
#ifndef OPERATOR_HTTPD_H
#define OPERATOR_HTTPD_H

#include <stdint.h>

#include "loop/loop.h"

/* The most connections open at once from one peer address. A kubelet or a
 * scraper uses one at a time; 8 leaves room for overlap and retries. */
#define OP_HTTPD_MAX_PER_PEER 8

struct op_httpd;

/* Answers one request for `path` (query string removed). Sets *status and
 * *content_type (static strings) and appends the body to `body`. */
typedef void (*op_http_handler)(void *arg, const char *path, int *status, const char **content_type,
                                struct loop_buf *body);

/* Listens on `addr` ("host:port", ":port", or "0" to disable). Returns 0
 * and stores the server in `*out` (NULL when disabled), or a negative errno
 * with a message in `err`. */
int op_httpd_start(struct loop *l, const char *addr, op_http_handler h, void *arg,
                   struct op_httpd **out, char *err, size_t errlen);

/* Splits a listen address as op_httpd_start() reads it: "host:port",
 * "[v6]:port" or ":port" (every address). curl_url() parses it as the
 * authority of an http URL, so the rules are curl's (port 0..65535 in
 * digits, brackets balanced); a user, path, query or fragment is refused.
 * Writes the host for getaddrinfo() to `host` ("" for every address; an
 * IPv6 literal without brackets) and the port to `port`. Returns 0,
 * -EINVAL (a bad address, or one that does not fit), or -ENOMEM. */
int op_httpd_parse_addr(const char *addr, char *host, size_t hl, char *port, size_t pl);

/* The port actually bound (useful with port 0 in tests). */
int op_httpd_port(const struct op_httpd *s);

/* Connections closed since start because their peer address was at
 * OP_HTTPD_MAX_PER_PEER: one per accept from a peer at its limit (a
 * cumulative count, for a counter metric). */
uint64_t op_httpd_peer_shed(const struct op_httpd *s);

/* Closes the listener and every open connection. Safe on NULL. */
void op_httpd_free(struct op_httpd *s);

#endif
