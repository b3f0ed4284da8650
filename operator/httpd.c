/* operator/httpd.c: accept, read one request head, answer, close. */
#include "operator/httpd.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop/log.h"

#define HTTPD_MAX_CONNS 32
#define HTTPD_REQ_MAX   8192
/* A probe sends its request head at once; a connection that has not done
 * so within HTTPD_HEAD_MS is idle and is closed. Sending the response (a
 * large /metrics to a slow scraper) gets HTTPD_SEND_MS. */
#define HTTPD_HEAD_MS 2000
#define HTTPD_SEND_MS 5000
/* How long the listener rests when accept() fails for want of resources. */
#define HTTPD_PAUSE_MS 100
/* At most one log line per HTTPD_LOG_MS about the per-peer limit, so a
 * flood of connections does not become a flood of log lines. */
#define HTTPD_LOG_MS 10000
/* Over its limit, a peer's idle connection is closed, but not before it
 * has had HTTPD_GRACE_MS to send its request: a client writes its request
 * right after connect(), so a probe that shares an address with a flood
 * of idle connections is read before it can be taken for one of them. */
#define HTTPD_GRACE_MS 100

/* A peer's address without its port. An IPv4-mapped IPv6 address is kept
 * as IPv4, so a dual-stack listener counts one client once. Compared with
 * memcmp(), so always zeroed before it is filled. */
struct peer {
	sa_family_t family;
	uint8_t addr[16];
};

struct conn {
	struct loop_fd w;
	struct loop_timer deadline;
	struct op_httpd *srv;
	char req[HTTPD_REQ_MAX];
	size_t len;
	struct loop_buf out;
	size_t sent;
	uint64_t seq;     /* accept order: the lowest is the oldest */
	uint64_t born_ms; /* loop time of the accept */
	struct peer peer;
	int in_use;
	int ready;      /* the request head is in */
	int responding; /* the response is being sent */
};

struct op_httpd {
	struct loop *l;
	struct loop_fd listener;
	struct loop_timer rearm;  /* restarts the listener's watch after a pause */
	struct loop_timer retrim; /* trim() once an idle one's grace is over */
	int spare;                /* a descriptor held back for EMFILE, or -1 */
	uint64_t accepted;
	uint64_t peer_shed;      /* closed by the per-peer limit, since start */
	uint64_t shed_logged;    /* `peer_shed` when the last line was logged */
	uint64_t quiet_until_ms; /* no refusal is logged before this */
	int port;
	op_http_handler handler;
	void *arg;
	struct conn conns[HTTPD_MAX_CONNS];
};

static void conn_close(struct conn *c)
{
	loop_fd_stop(c->srv->l, &c->w);
	loop_timer_stop(c->srv->l, &c->deadline);
	close(c->w.fd);
	loop_buf_free(&c->out);
	c->in_use = 0;
	c->responding = 0;
}

static void on_deadline(struct loop_timer *t)
{
	conn_close(t->arg);
}

static const char *reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 500:
		return "Internal Server Error";
	default:
		return "Service Unavailable";
	}
}

/* Builds the whole response in c->out, then switches the watch to EPOLLOUT. */
static void respond(struct conn *c)
{
	struct loop_buf body = {.cap_bytes = 256u << 20};
	const char *ctype = "text/plain; charset=utf-8";
	int status = 400;
	char head[256], path[1024];
	int n;

	if (sscanf(c->req, "GET %1023s HTTP/1.", path) == 1) {
		char *q = strchr(path, '?');
		if (q)
			*q = '\0';
		c->srv->handler(c->srv->arg, path, &status, &ctype, &body);
	} else if (strncmp(c->req, "GET ", 4) != 0) {
		status = 405;
		loop_buf_append(&body, "only GET is served\n", 19);
	}
	n = snprintf(head, sizeof(head),
	             "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	             "Connection: close\r\n\r\n",
	             status, reason(status), ctype, body.len);
	c->out.cap_bytes = 257u << 20;
	if (loop_buf_append(&c->out, head, (size_t)n) != 0 ||
	    loop_buf_append(&c->out, body.data ? body.data : "", body.len) != 0) {
		loop_buf_free(&body);
		conn_close(c);
		return;
	}
	loop_buf_free(&body);
	loop_fd_stop(c->srv->l, &c->w);
	c->w.events = EPOLLOUT;
	c->responding = 1;
	if (loop_fd_start(c->srv->l, &c->w) != 0)
		conn_close(c);
	else /* on failure the head deadline stays armed, which also ends it */
		loop_timer_start(c->srv->l, &c->deadline, HTTPD_SEND_MS);
}

/* Reads what `c` has been sent. Returns 1 once its request head is in (it
 * is then c->ready, to be answered), 0 while it is not, and -1 when the
 * client is gone (`c` is then closed). */
static int conn_read(struct conn *c)
{
	ssize_t n;

	if (c->ready)
		return 1;
	n = read(c->w.fd, c->req + c->len, sizeof(c->req) - 1 - c->len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0) {
		conn_close(c);
		return -1;
	}
	c->len += (size_t)n;
	c->req[c->len] = '\0';
	c->ready = strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n") ||
	           c->len == sizeof(c->req) - 1;
	return c->ready;
}

/* Reads the peer address of an accepted socket into `p`. */
static void peer_of(const struct sockaddr_storage *ss, struct peer *p)
{
	memset(p, 0, sizeof(*p));
	p->family = ss->ss_family;
	if (ss->ss_family == AF_INET) {
		memcpy(p->addr, &((const struct sockaddr_in *)ss)->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a)) {
			p->family = AF_INET;
			memcpy(p->addr, &a->s6_addr[12], 4);
		} else {
			memcpy(p->addr, a, 16);
		}
	}
}

static int same_peer(const struct conn *c, const struct peer *p)
{
	return memcmp(&c->peer, p, sizeof(*p)) == 0;
}

/* The number of open connections from `p`. */
static int peer_count(const struct op_httpd *s, const struct peer *p)
{
	int i, n = 0;

	for (i = 0; i < HTTPD_MAX_CONNS; i++)
		n += s->conns[i].in_use && same_peer(&s->conns[i], p);
	return n;
}

static struct conn *free_slot(struct op_httpd *s)
{
	int i;

	for (i = 0; i < HTTPD_MAX_CONNS; i++)
		if (!s->conns[i].in_use)
			return &s->conns[i];
	return NULL;
}

/* Which connections idle_victim() may pick. */
enum pick {
	PICK_PEER,    /* those from `p` */
	PICK_CROWDED, /* those from a peer that holds OP_HTTPD_MAX_PER_PEER or more */
	PICK_ANY,
};

/* Returns the oldest connection of the kind `how` names that is idle: it
 * has not sent its request head, even once read now. One whose head has
 * come is no idle client and is passed over (it is left c->ready), as is
 * one whose client turns out gone (it is closed). NULL when none is idle.
 * PICK_CROWDED costs HTTPD_MAX_CONNS^2 compares, about a thousand. */
static struct conn *idle_victim(struct op_httpd *s, enum pick how, const struct peer *p)
{
	struct conn *v;
	int i;

	do { /* each turn ends with v idle, or takes one candidate away */
		v = NULL;
		for (i = 0; i < HTTPD_MAX_CONNS; i++) {
			struct conn *c = &s->conns[i];
			if (!c->in_use || c->responding || c->ready || (v && c->seq > v->seq))
				continue;
			if (how == PICK_PEER      ? !same_peer(c, p)
			    : how == PICK_CROWDED ? peer_count(s, &c->peer) < OP_HTTPD_MAX_PER_PEER
			                          : 0)
				continue;
			v = c;
		}
	} while (v && conn_read(v) != 0);
	return v;
}

/* Counts a connection closed because its peer `p` was at its limit, and
 * logs at most once per HTTPD_LOG_MS: the peer of the first one in the
 * window, and how many (from any peer) since the last line. */
static void peer_shed(struct op_httpd *s, const struct peer *p)
{
	char addr[INET6_ADDRSTRLEN] = "?", limit[16], n[24];
	uint64_t now = loop_now_ms(s->l);

	s->peer_shed++;
	if (now < s->quiet_until_ms)
		return;
	s->quiet_until_ms = now + HTTPD_LOG_MS;
	if (p->family == AF_INET || p->family == AF_INET6)
		inet_ntop(p->family, p->addr, addr, sizeof(addr));
	snprintf(limit, sizeof(limit), "%d", OP_HTTPD_MAX_PER_PEER);
	snprintf(n, sizeof(n), "%" PRIu64, s->peer_shed - s->shed_logged);
	s->shed_logged = s->peer_shed;
	log_warn("http: a peer is at its connection limit; closing its extra connections", "peer",
	         addr, "limit", limit, "closed_since_last_log", n, NULL);
}

/* Returns a slot for a new connection from `p`, or NULL to refuse it. A
 * free slot is taken first, whatever the peer: a peer's extra connections
 * are closed by trim() after the turn's accepts, once their grace is
 * over. When every slot is taken, the oldest idle connection of a peer at
 * its limit makes way, grace or not; when no such peer has an idle one, a
 * new connection from a peer at its limit is refused, and one from any
 * other peer takes the oldest idle connection's slot (an idle client must
 * not keep a probe out). NULL when every slot is answering. */
static struct conn *conn_slot(struct op_httpd *s, const struct peer *p)
{
	struct conn *c = free_slot(s);

	if (c)
		return c;
	if ((c = idle_victim(s, PICK_CROWDED, NULL)) != NULL) {
		peer_shed(s, &c->peer);
	} else if (peer_count(s, p) >= OP_HTTPD_MAX_PER_PEER) {
		peer_shed(s, p);
		return NULL;
	} else if ((c = idle_victim(s, PICK_ANY, NULL)) == NULL) {
		return free_slot(s); /* one may have closed while being read */
	}
	conn_close(c);
	return c;
}

/* The number of connections from `p` sending a response. */
static int peer_answering(const struct op_httpd *s, const struct peer *p)
{
	int i, n = 0;

	for (i = 0; i < HTTPD_MAX_CONNS; i++)
		n += s->conns[i].responding && same_peer(&s->conns[i], p);
	return n;
}

/* Answers `c`, whose request head is in, unless its peer is already being
 * sent OP_HTTPD_MAX_PER_PEER responses (a slow reader holds a slot up to
 * HTTPD_SEND_MS): then `c` is closed unanswered. */
static void answer(struct conn *c)
{
	if (peer_answering(c->srv, &c->peer) < OP_HTTPD_MAX_PER_PEER) {
		respond(c);
		return;
	}
	peer_shed(c->srv, &c->peer);
	conn_close(c);
}

static void on_conn(struct loop_fd *w, uint32_t ev)
{
	struct conn *c = w->arg;
	ssize_t n;

	(void)ev;
	if (w->events & EPOLLOUT) {
		n = write(w->fd, c->out.data + c->sent, c->out.len - c->sent);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0 || (c->sent += (size_t)n) == c->out.len)
			conn_close(c);
		return;
	}
	if (conn_read(c) == 1)
		answer(c);
}

/* Ends a turn of accepts. Each peer over OP_HTTPD_MAX_PER_PEER loses its
 * idle connections, oldest first, down to the limit; each is read first,
 * so a request already sent is not taken for an idle client, and none is
 * closed within HTTPD_GRACE_MS of its accept (s->retrim comes back for
 * it). Then every request read meanwhile is answered. About
 * HTTPD_MAX_CONNS^2 compares per turn: a thousand, against a syscall each
 * for the accepts it follows. */
static void trim(struct op_httpd *s)
{
	uint64_t now = loop_now_ms(s->l), next = UINT64_MAX, due;
	struct conn *v;
	struct peer p;
	int i;

	for (i = 0; i < HTTPD_MAX_CONNS; i++) {
		if (!s->conns[i].in_use)
			continue;
		p = s->conns[i].peer;
		while (peer_count(s, &p) > OP_HTTPD_MAX_PER_PEER &&
		       (v = idle_victim(s, PICK_PEER, &p)) != NULL) {
			due = v->born_ms + HTTPD_GRACE_MS;
			if (due > now) { /* the rest are younger still */
				next = due < next ? due : next;
				break;
			}
			peer_shed(s, &p);
			conn_close(v);
		}
	}
	for (i = 0; i < HTTPD_MAX_CONNS; i++)
		if (s->conns[i].in_use && s->conns[i].ready && !s->conns[i].responding)
			answer(&s->conns[i]);
	if (next != UINT64_MAX)
		loop_timer_start(s->l, &s->retrim, next - now);
}

static void on_retrim(struct loop_timer *t)
{
	trim(t->arg);
}

/* Starts serving the accepted socket `fd` from `p`, or closes it. */
static void conn_open(struct op_httpd *s, int fd, const struct peer *p)
{
	struct conn *c = conn_slot(s, p);

	if (!c) { /* every slot (or every one of the peer's) is answering */
		close(fd);
		return;
	}
	memset(c, 0, sizeof(*c));
	c->in_use = 1;
	c->srv = s;
	c->seq = s->accepted++;
	c->peer = *p;
	c->born_ms = loop_now_ms(s->l);
	c->w = (struct loop_fd){.fd = fd, .events = EPOLLIN, .cb = on_conn, .arg = c};
	loop_timer_init(&c->deadline, on_deadline, c);
	if (loop_fd_start(s->l, &c->w) != 0 ||
	    loop_timer_start(s->l, &c->deadline, HTTPD_HEAD_MS) != 0) {
		loop_fd_stop(s->l, &c->w);
		close(fd);
		c->in_use = 0;
	}
}

/* Out of descriptors, a pending connection would stay in the backlog and
 * keep the level-triggered listener readable: the loop would spin. So we
 * spend the spare descriptor to accept it and close it at once (the client
 * sees a reset rather than a hang), as libev and nginx advise. Returns 1
 * when one was shed, 0 when none was pending, -1 without a spare. */
static int shed_one(struct op_httpd *s)
{
	int fd;

	if (s->spare < 0)
		return -1;
	close(s->spare);
	fd = accept4(s->listener.fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd >= 0)
		close(fd);
	s->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return fd >= 0 ? 1 : (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
}

static void on_rearm(struct loop_timer *t)
{
	struct op_httpd *s = t->arg;

	if (loop_fd_start(s->l, &s->listener) != 0)
		loop_timer_start(s->l, &s->rearm, HTTPD_PAUSE_MS);
}

/* Stops watching the listener for HTTPD_PAUSE_MS, when accept() fails in a
 * way only time can mend. Pending clients wait in the backlog meanwhile. */
static void pause_listener(struct op_httpd *s)
{
	loop_fd_stop(s->l, &s->listener);
	if (loop_timer_start(s->l, &s->rearm, HTTPD_PAUSE_MS) != 0)
		on_rearm(&s->rearm); /* better busy than deaf for good */
}

/* Accepts every pending connection. */
static void accept_all(struct op_httpd *s)
{
	struct sockaddr_storage ss;
	struct peer p;
	socklen_t sl;
	int fd, shed;

	if (s->spare < 0)
		s->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	for (;;) {
		sl = sizeof(ss);
		memset(&ss, 0, sizeof(ss));
		fd = accept4(s->listener.fd, (struct sockaddr *)&ss, &sl,
		             SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			peer_of(&ss, &p);
			conn_open(s, fd, &p);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		if (errno == EMFILE || errno == ENFILE) {
			shed = shed_one(s);
			if (shed > 0)
				continue;
			if (shed == 0)
				return;
		}
		/* ENOBUFS, ENOMEM, or EMFILE without a spare. */
		pause_listener(s);
		return;
	}
}

static void on_accept(struct loop_fd *w, uint32_t ev)
{
	struct op_httpd *s = w->arg;

	(void)ev;
	accept_all(s);
	trim(s);
}

/* curl_url() does the parsing. It refuses an empty host, so ":port" gets a
 * stand-in that is dropped again. */
int op_httpd_parse_addr(const char *addr, char *host, size_t hl, char *port, size_t pl)
{
	char url[300], *h = NULL, *p = NULL, *z = NULL;
	int any = addr[0] == ':', rc = -EINVAL, n;
	CURLUcode uc;
	CURLU *u;

	/* Only an authority: curl would read the rest as user, path, query. */
	if (strpbrk(addr, "@/?#") || (size_t)snprintf(url, sizeof(url), "http://%s%s",
	                                              any ? "any" : "", addr) >= sizeof(url))
		return -EINVAL;
	if ((u = curl_url()) == NULL)
		return -ENOMEM;
	uc = curl_url_set(u, CURLUPART_URL, url, 0);
	if (uc == CURLUE_OUT_OF_MEMORY)
		rc = -ENOMEM;
	if (uc != CURLUE_OK || curl_url_get(u, CURLUPART_HOST, &h, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &p, 0) != CURLUE_OK)
		goto out;
	if (curl_url_get(u, CURLUPART_ZONEID, &z, 0) != CURLUE_OK)
		z = NULL;
	if (any)
		n = snprintf(host, hl, "%s", "");
	else if (h[0] == '[') /* getaddrinfo() wants an IPv6 literal bare */
		n = snprintf(host, hl, "%.*s%s%s", (int)strlen(h) - 2, h + 1, z ? "%" : "",
		             z ? z : "");
	else
		n = snprintf(host, hl, "%s", h);
	if (n < 0 || (size_t)n >= hl || (size_t)snprintf(port, pl, "%s", p) >= pl)
		goto out;
	rc = 0;
out:
	curl_free(h);
	curl_free(p);
	curl_free(z);
	curl_url_cleanup(u);
	return rc;
}

static int listen_on(const char *addr, int *port_out, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
	                         .ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *ai;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[256], port[16];
	int fd, one = 1, rc;

	if (op_httpd_parse_addr(addr, host, sizeof(host), port, sizeof(port)) != 0) {
		snprintf(err, errlen, "bad listen address %s: want host:port, [v6]:port or :port",
		         addr);
		return -EINVAL;
	}
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
	if (rc != 0) {
		snprintf(err, errlen, "bad listen address %s: %s", addr, gai_strerror(rc));
		return -EINVAL;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		rc = -errno;
		snprintf(err, errlen, "listen on %s: %s", addr, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return rc;
	}
	freeaddrinfo(ai);
	*port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
	                                           : ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

int op_httpd_start(struct loop *l, const char *addr, op_http_handler h, void *arg,
                   struct op_httpd **out, char *err, size_t errlen)
{
	struct op_httpd *s;
	int fd;

	*out = NULL;
	if (strcmp(addr, "0") == 0)
		return 0;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	fd = listen_on(addr, &s->port, err, errlen);
	if (fd < 0) {
		free(s);
		return fd;
	}
	s->l = l;
	s->handler = h;
	s->arg = arg;
	s->listener = (struct loop_fd){.fd = fd, .events = EPOLLIN, .cb = on_accept, .arg = s};
	loop_timer_init(&s->rearm, on_rearm, s);
	loop_timer_init(&s->retrim, on_retrim, s);
	s->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (loop_fd_start(l, &s->listener) != 0) {
		if (s->spare >= 0)
			close(s->spare);
		close(fd);
		free(s);
		snprintf(err, errlen, "cannot watch listener for %s", addr);
		return -EIO;
	}
	*out = s;
	return 0;
}

int op_httpd_port(const struct op_httpd *s)
{
	return s->port;
}

uint64_t op_httpd_peer_shed(const struct op_httpd *s)
{
	return s->peer_shed;
}

void op_httpd_free(struct op_httpd *s)
{
	int i;

	if (!s)
		return;
	for (i = 0; i < HTTPD_MAX_CONNS; i++)
		if (s->conns[i].in_use)
			conn_close(&s->conns[i]);
	loop_fd_stop(s->l, &s->listener);
	loop_timer_stop(s->l, &s->rearm);
	loop_timer_stop(s->l, &s->retrim);
	close(s->listener.fd);
	if (s->spare >= 0)
		close(s->spare);
	free(s);
}
