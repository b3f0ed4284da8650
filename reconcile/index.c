/* reconcile/index.c: pods by namespace, and policies by namespace and
 * label, so that an event costs what it affects.
 *
 * Pods: one array per namespace; each pod keeps its position in `slot`,
 * so an add, an update and a delete are O(1) whatever the namespace's
 * size (a delete moves the last pod into the hole).
 *
 * Policies: a policy selects only pods that carry what one of its
 * requirements names, so it is filed under that requirement (its
 * anchor), once per namespace it may select in:
 *
 *   matchLabels / In  key, value  ->  (scope, key, value) for each value
 *   Exists            key         ->  (scope, key, *)
 *   neither (empty, or only NotIn / DoesNotExist)  ->  (scope, -, -)
 *
 * where scope is a namespace, or "any" for a policy that selects in every
 * namespace. The In requirement with the fewest values is the anchor; a
 * pod has one value per key, so it meets at most one of them. A pod
 * looks up, for its namespace and for "any", the unanchored term and
 * (key, value) and (key, *) for each of its labels: O(labels) lookups,
 * plus the policies found, whatever the number of policies. Every policy
 * that selects the pod is found (the index errs only on the side of
 * candidates that do not match: NotIn, DoesNotExist, other requirements
 * and the enable annotation are left to rec_pod_selected()).
 */
#include "reconcile/reconcile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- pods by namespace ---------------------------------------------- */

#define NS_BUCKETS 256

struct nsgroup {
	struct nsgroup *next;
	char *ns;
	struct rec_pod **v; /* v[i]->slot == i */
	size_t n, cap;
};

struct rec_podidx {
	struct nsgroup *b[NS_BUCKETS];
	size_t n;
};

static uint32_t hash_str(uint64_t h, const char *s)
{
	h = ppop_fnv1a_str(h, s);
	return (uint32_t)(h ^ (h >> 32));
}

static struct nsgroup **ns_slot(const struct rec_podidx *x, const char *ns)
{
	struct nsgroup **pp = (struct nsgroup **)&x->b[hash_str(PPOP_FNV1A_INIT, ns) % NS_BUCKETS];

	while (*pp && strcmp((*pp)->ns, ns) != 0)
		pp = &(*pp)->next;
	return pp;
}

int rec_podidx_new(struct rec_podidx **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : -ENOMEM;
}

void rec_podidx_free(struct rec_podidx *x)
{
	if (!x)
		return;
	for (size_t i = 0; i < NS_BUCKETS; i++)
		while (x->b[i]) {
			struct nsgroup *g = x->b[i];
			x->b[i] = g->next;
			free(g->ns);
			free(g->v);
			free(g);
		}
	free(x);
}

int rec_podidx_change(struct rec_podidx *x, const struct rec_pod *a, struct rec_pod *b)
{
	struct nsgroup **pp, *g;

	if (!a && !b)
		return 0;
	if (a && b && strcmp(a->ns, b->ns) != 0)
		return -EINVAL;
	pp = ns_slot(x, a ? a->ns : b->ns);
	g = *pp;
	if (a) {
		uint32_t i = a->slot;
		if (!g || i >= g->n || g->v[i] != a)
			return -ENOENT;
		if (b) {
			b->slot = i;
			g->v[i] = b;
			return 0;
		}
		g->v[i] = g->v[--g->n];
		g->v[i]->slot = i;
		x->n--;
		if (g->n == 0) {
			*pp = g->next;
			free(g->ns);
			free(g->v);
			free(g);
		}
		return 0;
	}
	if (!g) {
		g = calloc(1, sizeof(*g));
		if (!g || !(g->ns = strdup(b->ns))) {
			free(g);
			return -ENOMEM;
		}
		g->next = *pp;
		*pp = g;
	}
	if (g->n == g->cap) {
		size_t cap = g->cap ? 2 * g->cap : 8;
		struct rec_pod **v = cap <= UINT32_MAX ? reallocarray(g->v, cap, sizeof(*v)) : NULL;
		if (!v)
			return -ENOMEM;
		g->v = v;
		g->cap = cap;
	}
	b->slot = (uint32_t)g->n;
	g->v[g->n++] = b;
	x->n++;
	return 0;
}

void rec_podidx_foreach_ns(const struct rec_podidx *x, const char *ns,
                           void (*fn)(void *arg, struct rec_pod *pod), void *arg)
{
	const struct nsgroup *g = *ns_slot(x, ns);

	/* By index: `fn` may not change the index, but reads of v[] stay
	 * in bounds even if it did. */
	for (size_t i = 0; g && i < g->n; i++)
		fn(arg, g->v[i]);
}

void rec_podidx_foreach(const struct rec_podidx *x, void (*fn)(void *arg, struct rec_pod *pod),
                        void *arg)
{
	for (size_t b = 0; b < NS_BUCKETS; b++)
		for (const struct nsgroup *g = x->b[b]; g; g = g->next)
			for (size_t i = 0; i < g->n; i++)
				fn(arg, g->v[i]);
}

size_t rec_podidx_count(const struct rec_podidx *x, const char *ns)
{
	const struct nsgroup *g;

	if (!ns)
		return x->n;
	g = *ns_slot(x, ns);
	return g ? g->n : 0;
}

/* ---- policies by namespace and label -------------------------------- */

/* One (scope, key, value) and the policies filed under it. key == NULL:
 * unanchored; val == NULL: Exists. scope == NULL: every namespace. */
struct term {
	struct term *next;
	uint32_t hash;
	char *scope, *key, *val;
	struct rec_polidx_ent **v;
	size_t n, cap;
};

struct rec_polidx_ent {
	void *owner;
	uint64_t stamp;   /* the last query that reported it */
	struct term **ts; /* the terms it is filed under */
	size_t nts;
};

struct rec_polidx {
	struct term **b;
	size_t nb, nterms;
	uint64_t stamp;
};

static int str_eq(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* NULL and "" hash differently: a separator byte goes in after each part,
 * and a NULL part adds a second one. */
static uint32_t term_hash(const char *scope, const char *key, const char *val)
{
	static const char sep = '\x1f';
	uint64_t h = PPOP_FNV1A_INIT;
	const char *parts[3] = {scope, key, val};

	for (int i = 0; i < 3; i++) {
		if (parts[i])
			h = ppop_fnv1a_str(h, parts[i]);
		else
			h = ppop_fnv1a(h, &sep, 1);
		h = ppop_fnv1a(h, &sep, 1);
	}
	return (uint32_t)(h ^ (h >> 32));
}

static struct term *term_find(const struct rec_polidx *x, const char *scope, const char *key,
                              const char *val)
{
	uint32_t h;

	if (!x->nb)
		return NULL;
	h = term_hash(scope, key, val);
	for (struct term *t = x->b[h & (x->nb - 1)]; t; t = t->next)
		if (t->hash == h && str_eq(t->scope, scope) && str_eq(t->key, key) &&
		    str_eq(t->val, val))
			return t;
	return NULL;
}

static void term_free(struct term *t)
{
	free(t->scope);
	free(t->key);
	free(t->val);
	free(t->v);
	free(t);
}

static int grow(struct rec_polidx *x)
{
	size_t nb = x->nb ? 2 * x->nb : 64;
	struct term **b = calloc(nb, sizeof(*b));

	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < x->nb; i++)
		while (x->b[i]) {
			struct term *t = x->b[i];
			x->b[i] = t->next;
			t->next = b[t->hash & (nb - 1)];
			b[t->hash & (nb - 1)] = t;
		}
	free(x->b);
	x->b = b;
	x->nb = nb;
	return 0;
}

static char *dup_or_null(const char *s, int *oom)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		*oom = 1;
	return d;
}

static struct term *term_get(struct rec_polidx *x, const char *scope, const char *key,
                             const char *val)
{
	struct term *t = term_find(x, scope, key, val);
	int oom = 0;

	if (t)
		return t;
	if (x->nterms >= x->nb && grow(x))
		return NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->scope = dup_or_null(scope, &oom);
	t->key = dup_or_null(key, &oom);
	t->val = dup_or_null(val, &oom);
	if (oom) {
		term_free(t);
		return NULL;
	}
	t->hash = term_hash(scope, key, val);
	t->next = x->b[t->hash & (x->nb - 1)];
	x->b[t->hash & (x->nb - 1)] = t;
	x->nterms++;
	return t;
}

/* Unlinks an emptied term from its chain and frees it. */
static void term_drop(struct rec_polidx *x, struct term *t)
{
	struct term **pp = &x->b[t->hash & (x->nb - 1)];

	while (*pp != t)
		pp = &(*pp)->next;
	*pp = t->next;
	x->nterms--;
	term_free(t);
}

int rec_polidx_new(struct rec_polidx **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : -ENOMEM;
}

/* Takes the entry out of every term it is filed under. */
static void unfile(struct rec_polidx *x, struct rec_polidx_ent *e)
{
	for (size_t i = 0; i < e->nts; i++) {
		struct term *t = e->ts[i];
		for (size_t k = 0; k < t->n; k++)
			if (t->v[k] == e) {
				t->v[k] = t->v[--t->n];
				break;
			}
		if (t->n == 0)
			term_drop(x, t);
	}
	free(e->ts);
	e->ts = NULL;
	e->nts = 0;
}

void rec_polidx_free(struct rec_polidx *x)
{
	if (!x)
		return;
	for (size_t i = 0; i < x->nb; i++)
		while (x->b[i]) {
			struct term *t = x->b[i];
			x->b[i] = t->next;
			term_free(t);
		}
	free(x->b);
	free(x);
}

/* The requirement a policy is filed under: the In with the fewest
 * values, else the first Exists, else none (NULL). */
static const struct rec_sel_req *anchor(const struct rec_selector *s)
{
	const struct rec_sel_req *best = NULL;

	for (size_t i = 0; i < s->n; i++)
		if (s->reqs[i].op == REC_SEL_IN &&
		    (!best || best->op != REC_SEL_IN || s->reqs[i].nvalues < best->nvalues))
			best = &s->reqs[i];
		else if (s->reqs[i].op == REC_SEL_EXISTS && !best)
			best = &s->reqs[i];
	return best;
}

static int file_under(struct rec_polidx *x, struct rec_polidx_ent *e, const char *scope,
                      const char *key, const char *val, size_t *cap)
{
	struct term *t = term_get(x, scope, key, val);

	if (!t)
		return -ENOMEM;
	if (t->n == t->cap) {
		size_t c = t->cap ? 2 * t->cap : 4;
		struct rec_polidx_ent **v = reallocarray(t->v, c, sizeof(*v));
		if (!v)
			goto oom;
		t->v = v;
		t->cap = c;
	}
	if (e->nts == *cap) {
		size_t c = *cap ? 2 * *cap : 2;
		struct term **ts = reallocarray(e->ts, c, sizeof(*ts));
		if (!ts)
			goto oom;
		e->ts = ts;
		*cap = c;
	}
	t->v[t->n++] = e;
	e->ts[e->nts++] = t;
	return 0;
oom:
	if (t->n == 0)
		term_drop(x, t);
	return -ENOMEM;
}

int rec_polidx_put(struct rec_polidx *x, struct rec_polidx_ent **ent, const struct rec_policy *p,
                   void *owner)
{
	struct rec_polidx_ent *e = *ent;
	const struct rec_sel_req *r;
	size_t nscopes, cap = 0;
	int rc = 0;

	if (e)
		unfile(x, e);
	if (!p) {
		rec_polidx_del(x, ent);
		return 0;
	}
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e)
			return -ENOMEM;
		*ent = e;
	}
	e->owner = owner;
	r = anchor(&p->selector);
	nscopes = p->ns_selector.any ? 1 : p->ns_selector.n ? p->ns_selector.n : 1;
	for (size_t i = 0; i < nscopes && !rc; i++) {
		const char *scope = p->ns_selector.any ? NULL
		                    : p->ns_selector.n ? p->ns_selector.names[i]
		                                       : p->ns;
		if (!r)
			rc = file_under(x, e, scope, NULL, NULL, &cap);
		else if (r->op == REC_SEL_EXISTS)
			rc = file_under(x, e, scope, r->key, NULL, &cap);
		else
			for (size_t k = 0; k < r->nvalues && !rc; k++)
				rc = file_under(x, e, scope, r->key, r->values[k], &cap);
	}
	if (rc)
		unfile(x, e); /* filed nowhere rather than in part */
	return rc;
}

void rec_polidx_del(struct rec_polidx *x, struct rec_polidx_ent **ent)
{
	if (!*ent)
		return;
	unfile(x, *ent);
	free(*ent);
	*ent = NULL;
}

static void report(const struct term *t, uint64_t stamp, void (*fn)(void *arg, void *owner),
                   void *arg)
{
	if (!t)
		return;
	/* `fn` may not change the index. */
	for (size_t i = 0; i < t->n; i++)
		if (t->v[i]->stamp != stamp) {
			t->v[i]->stamp = stamp;
			fn(arg, t->v[i]->owner);
		}
}

static void lookup_pod(struct rec_polidx *x, const struct rec_pod *pod,
                       void (*fn)(void *arg, void *owner), void *arg)
{
	const char *scopes[2] = {pod->ns, NULL};

	for (int s = 0; s < 2; s++) {
		report(term_find(x, scopes[s], NULL, NULL), x->stamp, fn, arg);
		for (size_t i = 0; i < pod->nlabels; i++) {
			report(term_find(x, scopes[s], pod->labels[i].key, pod->labels[i].value),
			       x->stamp, fn, arg);
			report(term_find(x, scopes[s], pod->labels[i].key, NULL), x->stamp, fn,
			       arg);
		}
	}
}

void rec_polidx_candidates(struct rec_polidx *x, const struct rec_pod *a, const struct rec_pod *b,
                           void (*fn)(void *arg, void *owner), void *arg)
{
	if (!x->nterms)
		return;
	x->stamp++;
	if (a)
		lookup_pod(x, a, fn, arg);
	if (b)
		lookup_pod(x, b, fn, arg);
}
