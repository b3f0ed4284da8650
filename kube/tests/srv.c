/* kube/tests/srv.c: the scripted HTTP server of srv.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kube/kube.h"
#include "kube/tests/srv.h"

struct srv_conn {
	struct loop_fd w; /* first: the fd callback casts back */
	struct srv *s;
	char buf[8192];
	size_t len;
	int answered;
	char *late;              /* a delayed answer, written when `timer` fires */
	struct loop_timer timer; /* idle unless an answer is delayed */
	struct srv_conn *next;
};

static void conn_close(struct srv *s, struct srv_conn *c)
{
	struct srv_conn **pp;

	loop_timer_stop(s->l, &c->timer);
	loop_fd_stop(s->l, &c->w);
	close(c->w.fd);
	for (pp = &s->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	free(c->late);
	free(c);
}

static void header(const char *req, const char *name, char *out, size_t n)
{
	const char *p = strcasestr(req, name);

	out[0] = '\0';
	if (p) {
		p += strlen(name);
		while (*p == ' ')
			p++;
		snprintf(out, n, "%.*s", (int)strcspn(p, "\r\n"), p);
	}
}

static void send_and_close(struct srv *s, struct srv_conn *c, const char *resp)
{
	if (write(c->w.fd, resp, strlen(resp)) < 0)
		fail_msg("server write failed");
	s->nreplied++;
	conn_close(s, c);
}

static void on_late(struct loop_timer *t)
{
	struct srv_conn *c = t->arg;

	send_and_close(c->s, c, c->late);
}

/* 1 once the headers and the Content-Length body have arrived. */
static int request_complete(const struct srv_conn *c, const char **body)
{
	const char *end = strstr(c->buf, "\r\n\r\n");
	char cl[32];

	if (!end)
		return 0;
	*body = end + 4;
	header(c->buf, "Content-Length:", cl, sizeof(cl));
	return (size_t)(*body - c->buf) + strtoul(cl, NULL, 10) <= c->len;
}

static void on_conn(struct loop_fd *w, uint32_t ev)
{
	struct srv_conn *c = (struct srv_conn *)w;
	struct srv *s = c->s;
	static char resp[65536];
	char method[16], path[900], auth[256];
	const char *body;
	ssize_t r;
	int i;

	(void)ev;
	r = read(w->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
	if (r <= 0) {
		conn_close(s, c);
		return;
	}
	c->len += (size_t)r;
	c->buf[c->len] = '\0';
	if (c->answered || !request_complete(c, &body))
		return;
	c->answered = 1;
	sscanf(c->buf, "%15s %899s", method, path);
	header(c->buf, "Authorization:", auth, sizeof(auth));
	i = s->nreq;
	if (s->nreq < SRV_MAX_REQS) {
		snprintf(s->reqs[s->nreq], sizeof(s->reqs[0]), "%s %s|%s", method, path, auth);
		snprintf(s->bodies[s->nreq], sizeof(s->bodies[0]), "%s", body);
		s->nreq++;
	}
	s->delay_ms = 0;
	s->keep_open = 0;
	if (!s->script(s, i, method, path, resp, sizeof(resp)))
		return; /* hang */
	if (s->keep_open) {
		if (write(c->w.fd, resp, strlen(resp)) < 0)
			fail_msg("server write failed");
		s->nreplied++;
		return;
	}
	if (!s->delay_ms) {
		send_and_close(s, c, resp);
		return;
	}
	c->late = strdup(resp);
	assert_non_null(c->late);
	assert_int_equal(loop_timer_start(s->l, &c->timer, s->delay_ms), 0);
}

static void on_accept(struct loop_fd *w, uint32_t ev)
{
	struct srv *s = w->arg;
	struct srv_conn *c;
	int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	(void)ev;
	if (fd < 0)
		return;
	c = calloc(1, sizeof(*c));
	assert_non_null(c);
	c->s = s;
	c->w.fd = fd;
	c->w.events = EPOLLIN;
	c->w.cb = on_conn;
	c->w.arg = s;
	loop_timer_init(&c->timer, on_late, c);
	c->next = s->conns;
	s->conns = c;
	assert_int_equal(loop_fd_start(s->l, &c->w), 0);
}

void srv_start(struct srv *s, struct loop *l)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 16), 0);
	getsockname(fd, (struct sockaddr *)&a, &al);
	s->l = l;
	s->port = ntohs(a.sin_port);
	s->lw.fd = fd;
	s->lw.events = EPOLLIN;
	s->lw.cb = on_accept;
	s->lw.arg = s;
	assert_int_equal(loop_fd_start(l, &s->lw), 0);
}

void srv_stop(struct srv *s)
{
	while (s->conns)
		conn_close(s, s->conns);
	loop_fd_stop(s->l, &s->lw);
	close(s->lw.fd);
}

void srv_reply(char *resp, size_t n, int status, const char *extra, const char *body)
{
	snprintf(resp, n,
	         "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
	         "Connection: close\r\n%s\r\n%s",
	         status, strlen(body), extra ? extra : "", body);
}

struct kube_client *srv_client(struct loop *l, const char *dir, int port, const char *user)
{
	char path[256], text[1024];
	struct kube_config *cfg;
	struct kube_client *kc;
	char err[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/kubeconfig", dir);
	snprintf(text, sizeof(text),
	         "current-context: c\nclusters: [{name: k, cluster: {server: "
	         "'http://127.0.0.1:%d'}}]\nusers: [{name: u, user: {%s}}]\ncontexts: [{name: c, "
	         "context: {cluster: k, user: u}}]\n",
	         port, user);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	if (kube_config_load_kubeconfig(path, NULL, &cfg, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(kube_client_new_take(l, cfg, &kc), 0);
	return kc;
}

void srv_run_until(struct loop *l, const int *flag, int ms)
{
	uint64_t end;

	loop_update_time(l);
	end = loop_now_ms(l) + (uint64_t)ms;
	while (!*flag && loop_now_ms(l) < end)
		loop_run_once(l, 50);
}
