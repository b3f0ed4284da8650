/* reconcile/grant.c: what a policy may reach, as the cluster admin allows.
 *
 * RBAC decides who may write a ProfilingPolicy in a namespace; it cannot
 * see inside the spec. A namespace editor who could name other namespaces
 * in spec.namespaceSelector, or any URL in spec.profefeURL, could have
 * other tenants' profiles sent to a server of their own. So both are
 * checked here against the admin's grants (operator flags), the way
 * prometheus-operator lets the admin-owned Prometheus object decide
 * (ignoreNamespaceSelectors) rather than the tenant's ServiceMonitor. */
#include "reconcile/internal.h"

#include <string.h>

static int listed(const char *const *v, size_t n, const char *s)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (v[i] && (strcmp(v[i], "*") == 0 || strcmp(v[i], s) == 0))
			return 1;
	return 0;
}

/* URLs compare equal up to one trailing '/'. */
static int url_eq(const char *a, const char *b)
{
	size_t na = strlen(a), nb = strlen(b);

	if (na && a[na - 1] == '/')
		na--;
	if (nb && b[nb - 1] == '/')
		nb--;
	return na == nb && strncmp(a, b, na) == 0;
}

static int url_allowed(const struct rec_grants *g, const char *url)
{
	size_t i;

	if (g->default_url && url_eq(g->default_url, url))
		return 1;
	for (i = 0; i < g->nurls; i++)
		if (g->urls[i] && (strcmp(g->urls[i], "*") == 0 || url_eq(g->urls[i], url)))
			return 1;
	return 0;
}

/* The first namespace the selector names besides the policy's own, or
 * NULL when it stays at home. */
static const char *foreign_ns(const struct rec_policy *p)
{
	size_t i;

	if (p->ns_selector.any)
		return "*";
	for (i = 0; i < p->ns_selector.n; i++)
		if (strcmp(p->ns_selector.names[i], p->ns) != 0)
			return p->ns_selector.names[i];
	return NULL;
}

size_t rec_policy_authorize(struct rec_policy *p, const struct rec_grants *g, struct rec_errs *errs)
{
	size_t added = 0;
	/* A ClusterProfilingPolicy is the admin's own grant. */
	const char *ns = p->cluster ? NULL : foreign_ns(p);

	if (ns && !listed(g->cross_ns, g->ncross_ns, p->ns)) {
		if (strcmp(ns, "*") == 0)
			rec_errs_add(errs, REC_ERR_CROSS_NS, "spec.namespaceSelector.any",
			             "a policy selects pods in its own namespace only, unless the "
			             "cluster admin allows more (--allow-cross-namespace)");
		else
			rec_errs_add(errs, REC_ERR_CROSS_NS, "spec.namespaceSelector.matchNames",
			             "%.63s is not this policy's namespace; reaching other "
			             "namespaces is for the cluster admin to allow "
			             "(--allow-cross-namespace)",
			             ns);
		added++;
	}
	if (p->profefe_url && !url_allowed(g, p->profefe_url)) {
		rec_errs_add(errs, REC_ERR_SINK, "spec.profefeURL",
		             "%.80s is not a profefe URL the cluster admin allows "
		             "(--allowed-profefe-urls); leave it unset for the operator's",
		             p->profefe_url);
		added++;
	}
	if (added)
		p->valid = 0;
	return added;
}
