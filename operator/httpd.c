/* operator/httpd.c: accept, read one request head, answer, close. */
#include "operator/httpd.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define HTTPD_MAX_CONNS 32
#define HTTPD_REQ_MAX   8192
/* A probe sends its request head at once; a connection that has not done
 * so within HTTPD_HEAD_MS is idle and is closed. Sending the response (a
 * large /metrics to a slow scraper) gets HTTPD_SEND_MS. */
#define HTTPD_HEAD_MS 2000
#define HTTPD_SEND_MS 5000
/* How long the listener rests when accept() fails for want of resources. */
#define HTTPD_PAUSE_MS 100

struct conn {
	struct loop_fd w;
	struct loop_timer deadline;
	struct op_httpd *srv;
	char req[HTTPD_REQ_MAX];
	size_t len;
	struct loop_buf out;
	size_t sent;
	uint64_t seq; /* accept order: the lowest is the oldest */
	int in_use;
	int responding; /* the request head is in; the response is being sent */
};

struct op_httpd {
	struct loop *l;
	struct loop_fd listener;
	struct loop_timer rearm; /* restarts the listener's watch after a pause */
	int spare;               /* a descriptor held back for EMFILE, or -1 */
	uint64_t accepted;
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

static void on_conn(struct loop_fd *w, uint32_t ev)
{
	struct conn *c = w->arg;
	ssize_t n;

	if (w->events & EPOLLOUT) {
		n = write(w->fd, c->out.data + c->sent, c->out.len - c->sent);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0 || (c->sent += (size_t)n) == c->out.len)
			conn_close(c);
		return;
	}
	n = read(w->fd, c->req + c->len, sizeof(c->req) - 1 - c->len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(c);
		return;
	}
	c->len += (size_t)n;
	c->req[c->len] = '\0';
	if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n") || c->len == sizeof(c->req) - 1)
		respond(c);
	(void)ev;
}

/* Returns a free slot for a new connection. When all are taken, the oldest
 * connection still waiting for its request head makes way: an idle client
 * must not keep a probe out. NULL when every slot is sending a response. */
static struct conn *conn_slot(struct op_httpd *s)
{
	struct conn *victim = NULL;
	int i;

	for (i = 0; i < HTTPD_MAX_CONNS; i++) {
		struct conn *c = &s->conns[i];
		if (!c->in_use)
			return c;
		if (!c->responding && (!victim || c->seq < victim->seq))
			victim = c;
	}
	if (victim)
		conn_close(victim);
	return victim;
}

/* Starts serving the accepted socket `fd`, or closes it. */
static void conn_open(struct op_httpd *s, int fd)
{
	struct conn *c = conn_slot(s);

	if (!c) { /* every slot is answering: shed load rather than queue it */
		close(fd);
		return;
	}
	memset(c, 0, sizeof(*c));
	c->in_use = 1;
	c->srv = s;
	c->seq = s->accepted++;
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

static void on_accept(struct loop_fd *w, uint32_t ev)
{
	struct op_httpd *s = w->arg;
	int fd, shed;

	(void)ev;
	if (s->spare < 0)
		s->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	for (;;) {
		fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			conn_open(s, fd);
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
	close(s->listener.fd);
	if (s->spare >= 0)
		close(s->spare);
	free(s);
}
