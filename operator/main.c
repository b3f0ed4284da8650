/* operator/main.c: flags, then configuration, then the event loop.
 *
 * As an OpenBSD daemon: main() parses flags, loads and checks the
 * configuration (--check stops there), then enters the loop. Signals are
 * read from a signalfd inside the loop, never handled in signal context.
 */
#include <curl/curl.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "capture/capture.h"
#include "kube/kube.h"
#include "loop/log.h"
#include "loop/loop.h"
#include "operator/controller.h"
#include "operator/flags.h"
#include "operator/httpd.h"
#include "operator/metrics.h"

#ifndef PPOP_VERSION
#define PPOP_VERSION "0.0.0-dev"
#endif

void op_ctl_update_gauges(struct op_ctl *c);

struct daemon {
	struct loop *l;
	struct op_ctl *ctl;
	struct op_metrics *m;
	struct op_httpd *metrics_srv, *health_srv;
	struct op_family *f_peer_shed; /* the listeners' op_httpd_peer_shed() */
	struct loop_fd sig;
	struct loop_timer gauges;
	struct op_family *stall;                /* the loop's longest iteration */
	struct op_family *iter;                 /* every iteration, by its length */
	struct op_family *iter_cpu, *stall_cpu; /* the same in the thread's CPU time */
	int stopping;
	unsigned ticks;
	uint32_t shutdown_ms;
};

/* Mirrors the listeners' own counts into the registry. */
static void listener_metrics(struct daemon *d)
{
	static const char *const metrics[] = {"metrics"}, *const health[] = {"health"};

	if (d->metrics_srv)
		op_metric_set_counter(d->f_peer_shed, metrics,
		                      (double)op_httpd_peer_shed(d->metrics_srv));
	if (d->health_srv)
		op_metric_set_counter(d->f_peer_shed, health,
		                      (double)op_httpd_peer_shed(d->health_srv));
}

/* The event loop's iterations: the longest and all of them, in wall time
 * and in the loop thread's CPU time, as the loop counts them. */
static void loop_metrics(struct daemon *d)
{
	struct loop_stalls st;

	loop_stalls_get(d->l, &st);
	op_metric_set(d->stall, NULL, (double)st.max_us / 1e6);
	op_metric_set_histogram(d->iter, NULL, st.counts, (double)st.sum_us / 1e6);
	op_metric_set(d->stall_cpu, NULL, (double)st.cpu_max_us / 1e6);
	op_metric_set_histogram(d->iter_cpu, NULL, st.cpu_counts, (double)st.cpu_sum_us / 1e6);
}

static void serve(void *arg, const char *path, int *status, const char **ctype,
                  struct loop_buf *body)
{
	struct daemon *d = arg;

	if (strcmp(path, "/metrics") == 0) {
		op_ctl_update_gauges(d->ctl);
		listener_metrics(d);
		loop_metrics(d);
		*ctype = "text/plain; version=0.0.4; charset=utf-8";
		*status = op_metrics_render(d->m, body) == 0 ? 200 : 500;
	} else if (strcmp(path, "/healthz") == 0 || strcmp(path, "/livez") == 0) {
		/* The loop answered, so the process is alive and not wedged. */
		*status = 200;
		loop_buf_append(body, "ok\n", 3);
	} else if (strcmp(path, "/readyz") == 0) {
		int ready = op_ctl_ready(d->ctl) && !d->stopping;
		*status = ready ? 200 : 503;
		if (ready)
			loop_buf_append(body, "ok\n", 3);
		else
			loop_buf_append(body, "caches not synced\n", 18);
	} else {
		*status = 404;
		loop_buf_append(body, "not found\n", 10);
	}
}

static void shutdown_done(void *arg)
{
	struct daemon *d = arg;

	log_info("shutdown complete", NULL);
	loop_stop(d->l);
}

static void on_signal(struct loop_fd *w, uint32_t ev)
{
	struct daemon *d = w->arg;
	struct signalfd_siginfo si;

	(void)ev;
	while (read(w->fd, &si, sizeof(si)) == sizeof(si)) {
		if (d->stopping) {
			log_warn("second signal: exiting now", NULL);
			loop_stop(d->l);
			return;
		}
		d->stopping = 1;
		log_info("signal received: shutting down", "signal", strsignal((int)si.ssi_signo),
		         NULL);
		op_ctl_shutdown(d->ctl, d->shutdown_ms, shutdown_done, d);
	}
}

/* Refreshes gauges now and then so /metrics is cheap and logs stay honest. */
static void on_gauges(struct loop_timer *t)
{
	struct daemon *d = t->arg;

	op_ctl_update_gauges(d->ctl);
	/* Watch events are parsed into short-lived json-c trees; return
	 * the freed pages now and then so RSS tracks what the caches hold. */
	if (++d->ticks % 6 == 0)
		malloc_trim(0);
	loop_timer_start(d->l, t, 5000);
}

static int setup_signals(struct daemon *d)
{
	sigset_t set;
	int fd;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	signal(SIGPIPE, SIG_IGN);
	fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	d->sig = (struct loop_fd){.fd = fd, .events = EPOLLIN, .cb = on_signal, .arg = d};
	return loop_fd_start(d->l, &d->sig);
}

static void default_identity(char *buf, size_t len)
{
	char host[256] = "profefe-operator";

	gethostname(host, sizeof(host) - 1);
	snprintf(buf, len, "%s_%08x", host, loop_rand());
}

static int run(const struct op_flags *f, struct kube_config *cfg)
{
	struct daemon d = {.shutdown_ms = f->shutdown_ms};
	struct kube_client *kc = NULL;
	struct op_ctl_opts co = {.ns = f->ns,
	                         .profefe_url = f->profefe_url,
	                         .max_inflight = f->max_inflight,
	                         .max_profile_bytes = f->max_profile_bytes,
	                         .max_inflight_bytes = f->max_inflight_bytes,
	                         .spool_dir = f->spool_dir,
	                         .spool_max_bytes = f->spool_max_bytes,
	                         .spread_ms = f->spread_ms,
	                         .leader_elect = f->leader_elect,
	                         .lease_ns = f->lease_ns,
	                         .lease_name = f->lease_name,
	                         .identity = f->identity,
	                         .allow_cross_ns = f->allow_cross_ns,
	                         .allowed_urls = f->allowed_urls};
	char err[512] = "", ident[300];
	int rc;

	rc = loop_new(&d.l);
	if (rc)
		goto out;
	rc = kube_client_new_take(d.l, cfg, &kc);
	if (rc) {
		snprintf(err, sizeof(err), "cannot create the API client: %s", strerror(-rc));
		goto out;
	}
	if (!co.lease_ns)
		co.lease_ns = kube_client_namespace(kc);
	if (!co.identity) {
		default_identity(ident, sizeof(ident));
		co.identity = ident;
	}
	d.m = op_metrics_new();
	if (d.m)
		d.f_peer_shed = op_metrics_family(
		        d.m, "profefe_operator_http_peer_limit_closed_total",
		        "Connections to the metrics or health listener closed because their peer "
		        "address held its limit.",
		        OP_COUNTER, (const char *const[]){"listener"}, 1, NULL, 0);
	if (!d.m || !d.f_peer_shed) {
		rc = -ENOMEM;
		goto out;
	}
	/* The worst case is the figure that matters (a probe or a watch kept
	 * waiting), so it has its own gauge; the histogram below tells how
	 * often, and over a window (a relist) as the difference of two
	 * scrapes. Both cost two clock reads an iteration. */
	d.stall = op_metrics_family(d.m, "profefe_operator_loop_max_stall_seconds",
	                            "Longest time one event-loop iteration has kept every other "
	                            "handle waiting since start.",
	                            OP_GAUGE, NULL, 0, NULL, 0);
	{
		double b[LOOP_STALL_NBOUNDS];
		for (size_t i = 0; i < LOOP_STALL_NBOUNDS; i++)
			b[i] = (double)loop_stall_bounds_us[i] / 1e6;
		d.iter = op_metrics_family(
		        d.m, "profefe_operator_loop_iteration_seconds",
		        "Time each event-loop iteration kept every other handle waiting: "
		        "the distribution of what profefe_operator_loop_max_stall_seconds "
		        "is the maximum of.",
		        OP_HISTOGRAM, NULL, 0, b, LOOP_STALL_NBOUNDS);
		d.iter_cpu = op_metrics_family(
		        d.m, "profefe_operator_loop_iteration_cpu_seconds",
		        "CPU time each event-loop iteration used: the same iterations as "
		        "profefe_operator_loop_iteration_seconds without the time the machine kept "
		        "the process off the CPU.",
		        OP_HISTOGRAM, NULL, 0, b, LOOP_STALL_NBOUNDS);
	}
	d.stall_cpu = op_metrics_family(d.m, "profefe_operator_loop_max_stall_cpu_seconds",
	                                "Most CPU time one event-loop iteration has used since "
	                                "start: the longest stall the operator's own work caused.",
	                                OP_GAUGE, NULL, 0, NULL, 0);
	if (!d.stall || !d.iter || !d.iter_cpu || !d.stall_cpu) {
		rc = -ENOMEM;
		goto out;
	}
	rc = op_ctl_new(d.l, kc, d.m, &co, &d.ctl, err, sizeof(err));
	if (rc)
		goto out;
	rc = op_httpd_start(d.l, f->metrics_addr, serve, &d, &d.metrics_srv, err, sizeof(err));
	if (rc)
		goto out;
	rc = op_httpd_start(d.l, f->health_addr, serve, &d, &d.health_srv, err, sizeof(err));
	if (rc)
		goto out;
	rc = setup_signals(&d);
	if (rc) {
		snprintf(err, sizeof(err), "cannot set up signal handling: %s", strerror(-rc));
		goto out;
	}
	rc = op_ctl_start(d.ctl);
	if (rc) {
		snprintf(err, sizeof(err), "cannot start watching: %s", strerror(-rc));
		goto out;
	}
	loop_timer_init(&d.gauges, on_gauges, &d);
	loop_timer_start(d.l, &d.gauges, 5000);
	log_info("profefe-operator started", "version", PPOP_VERSION, "namespace",
	         f->ns ? f->ns : "(all)", "profefe",
	         f->profefe_url ? f->profefe_url : "(per policy)", "leader_elect",
	         f->leader_elect ? "true" : "false", "identity", co.identity, NULL);
	rc = loop_run(d.l);
out:
	if (rc && err[0])
		log_error(err, NULL);
	else if (rc)
		log_error("fatal error", "error", strerror(-rc), NULL);
	if (d.l)
		loop_timer_stop(d.l, &d.gauges);
	op_ctl_free(d.ctl);
	op_httpd_free(d.metrics_srv);
	op_httpd_free(d.health_srv);
	if (d.sig.fd > 0) {
		loop_fd_stop(d.l, &d.sig);
		close(d.sig.fd);
	}
	kube_client_free(kc);
	op_metrics_free(d.m);
	loop_free(d.l);
	return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct op_flags f;
	struct kube_config_opts ko = {0};
	struct kube_config *cfg = NULL;
	char err[512];
	int rc;

	if (op_flags_parse(argc, argv, &f, err, sizeof(err)) != 0) {
		fprintf(stderr, "profefe-operator: %s\n", err);
		return 2;
	}
	if (f.help) {
		op_flags_usage(stdout);
		return 0;
	}
	if (f.version) {
		printf("profefe-operator %s\n", PPOP_VERSION);
		return 0;
	}
	log_setup(f.log_json ? LOG_FMT_JSON : LOG_FMT_TEXT,
	          f.verbosity > 0 ? LOG_LVL_DEBUG : LOG_LVL_INFO);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_error("cannot initialise libcurl", NULL);
		return 1;
	}
	ko.kubeconfig = f.kubeconfig;
	ko.context = f.context;
	rc = kube_config_load(&ko, &cfg, err, sizeof(err));
	if (rc) {
		log_error("cannot load the Kubernetes configuration", "error", err, NULL);
		return 1;
	}
	if (f.check) {
		printf("configuration ok: API server %s (from %s), namespace %s, profefe %s, "
		       "cross-namespace policies from %s, other profefe URLs %s\n",
		       kube_config_server(cfg), kube_config_source(cfg), f.ns ? f.ns : "(all)",
		       f.profefe_url ? f.profefe_url : "(per policy)",
		       f.allow_cross_ns ? f.allow_cross_ns : "(none)",
		       f.allowed_urls ? f.allowed_urls : "(none)");
		kube_config_free(cfg);
		return 0;
	}
	rc = run(&f, cfg);
	curl_global_cleanup();
	return rc;
}
