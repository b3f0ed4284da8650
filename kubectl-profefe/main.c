/* kubectl-profefe/main.c: parse the flags, then run one command.
 *
 * Every command runs on one event loop (loop/), as the operator does, so a
 * capture of 100 pods is 100 concurrent transfers on one thread. Errors are
 * one line on stderr and exit status 1; usage errors likewise.
 */
#include "kubectl-profefe/kp.h"

#include "capture/profefe.h"
#include "kube/kube.h"
#include "loop/log.h"
#include "loop/loop.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_PROFEFE_URL "http://localhost:10100"

void kp_err(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	for (char *p = buf; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fflush(stdout);
	fprintf(stderr, "error: %s\n", buf);
}

const char *kp_profefe_url(const struct kp_opts *o)
{
	const char *env = getenv("PROFEFE_URL");

	if (o->profefe_url)
		return o->profefe_url;
	return env && env[0] ? env : DEFAULT_PROFEFE_URL;
}

uint32_t kp_request_timeout_ms(const struct kp_opts *o)
{
	if (o->request_timeout_ms <= 0)
		return 0;
	return o->request_timeout_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)o->request_timeout_ms;
}

int kp_rt_init(struct kp_rt *rt)
{
	int rc;

	memset(rt, 0, sizeof(*rt));
	rc = loop_new(&rt->l);
	if (rc < 0) {
		kp_err("cannot create the event loop: %s", strerror(-rc));
		return 1;
	}
	return 0;
}

int kp_rt_kube(struct kp_rt *rt, const struct kp_opts *o)
{
	struct kube_config_opts ko = {.kubeconfig = o->kubeconfig, .context = o->context};
	struct kube_config *cfg = NULL;
	char err[512] = "";
	int rc;

	rc = kube_config_load(&ko, &cfg, err, sizeof(err));
	if (rc < 0) {
		kp_err("%s", err[0] ? err : strerror(-rc));
		return 1;
	}
	rc = kube_client_new_take(rt->l, cfg, &rt->kc);
	if (rc < 0) {
		kp_err("cannot create the Kubernetes client: %s", strerror(-rc));
		return 1;
	}
	rt->ns = kp_namespace(o, kube_client_namespace(rt->kc));
	return 0;
}

int kp_rt_profefe(struct kp_rt *rt, const struct kp_opts *o)
{
	struct cap_profefe_opts po = {
	        .timeout_ms = kp_request_timeout_ms(o),
	        .user_agent = "kubectl-profefe/" KP_VERSION_STR,
	};
	const char *url = kp_profefe_url(o);
	int rc = cap_profefe_new(rt->l, url, &po, &rt->pf);

	if (rc < 0) {
		kp_err("invalid profefe URL \"%s\": %s", url, strerror(-rc));
		return 1;
	}
	return 0;
}

int kp_rt_wait(struct kp_rt *rt)
{
	while (rt->pending > 0) {
		int rc = loop_run_once(rt->l, 1000);

		if (rc < 0) {
			kp_err("event loop failed: %s", strerror(-rc));
			return 1;
		}
	}
	return 0;
}

void kp_rt_free(struct kp_rt *rt)
{
	/* profefe callbacks see CANCELLED on free; none are pending here. */
	if (rt->pf)
		cap_profefe_free(rt->pf);
	kube_client_free(rt->kc);
	loop_free(rt->l);
	memset(rt, 0, sizeof(*rt));
}

static int run(const struct kp_opts *o)
{
	switch (o->cmd) {
	case KP_CMD_CAPTURE:
		return kp_cmd_capture(o);
	case KP_CMD_GET_PROFILES:
		return kp_cmd_get_profiles(o);
	case KP_CMD_GET_SERVICES:
		return kp_cmd_get_services(o);
	case KP_CMD_LOAD:
		return kp_cmd_load(o);
	case KP_CMD_PPROF:
	case KP_CMD_MERGE:
		return kp_cmd_download(o);
	case KP_CMD_VERSION:
		printf("kubectl-profefe %s\n", KP_VERSION_STR);
		return 0;
	default:
		kp_usage(stdout, KP_CMD_NONE);
		return 0;
	}
}

int main(int argc, char **argv)
{
	struct kp_opts o;
	char err[512];
	int status;

	if (kp_parse_args(argc, argv, &o, err, sizeof(err)) < 0) {
		kp_err("%s", err);
		return 1;
	}
	if (o.help) {
		kp_usage(stdout, o.cmd);
		kp_opts_free(&o);
		return 0;
	}
	/* Library logs (kube/, capture/) are for debugging; the user sees our
	 * one-line errors. KUBECTL_PROFEFE_DEBUG=1 shows them. */
	log_setup(LOG_FMT_TEXT, getenv("KUBECTL_PROFEFE_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_ERROR);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		kp_err("cannot initialise libcurl");
		kp_opts_free(&o);
		return 1;
	}
	status = run(&o);
	curl_global_cleanup();
	kp_opts_free(&o);
	if (fflush(stdout) != 0 && status == 0) {
		kp_err("writing to stdout: %s", strerror(errno));
		status = 1;
	}
	return status;
}
