/* operator/metrics.h: a small Prometheus metrics registry.
 *
 * Families of counters, gauges and histograms, each with a fixed list of
 * label names; series are found by their label values through a hash, so
 * recording costs O(1) whatever the number of policies. The registry
 * renders the text exposition format (version 0.0.4) for /metrics.
 *
 * Ownership: the registry owns families and series; callers keep the
 * struct op_family pointers it returns (valid until op_metrics_free()).
 * Label value arrays are lent for the call and copied when a series is new.
 */
#ifndef OPERATOR_METRICS_H
#define OPERATOR_METRICS_H

#include <stddef.h>

#include "loop/loop.h"

enum op_metric_type { OP_COUNTER, OP_GAUGE, OP_HISTOGRAM };

struct op_metrics;
struct op_family;

/* Returns a new registry, or NULL when out of memory. */
struct op_metrics *op_metrics_new(void);
/* Frees the registry and every family. Safe on NULL. */
void op_metrics_free(struct op_metrics *m);

/* Registers a family. `labels` (nlabels names) and `buckets` (upper bounds,
 * ascending, histograms only) are copied. Returns NULL when out of memory. */
struct op_family *op_metrics_family(struct op_metrics *m, const char *name, const char *help,
                                    enum op_metric_type type, const char *const *labels,
                                    size_t nlabels, const double *buckets, size_t nbuckets);

/* Adds `v` to a counter or gauge series (created at 0 on first use).
 * A counter only counts up: a negative `v` is ignored on an OP_COUNTER. */
void op_metric_add(struct op_family *f, const char *const *values, double v);
/* Sets a gauge series. On an OP_COUNTER family it is op_metric_set_counter(). */
void op_metric_set(struct op_family *f, const char *const *values, double v);
/* Mirrors into a counter series a cumulative `total` kept elsewhere (e.g.
 * the spool's drops since open): the series is raised to `total` when that
 * is higher, and a lower `total` is ignored, because a Prometheus counter
 * must never go backwards (a decrease reads as a reset to rate()). The
 * cost: after a source restarts from zero, its increments are not shown
 * until it passes the old total; a source that can restart should feed
 * increments with op_metric_add() instead. On a gauge it just sets. */
void op_metric_set_counter(struct op_family *f, const char *const *values, double total);
/* Records one observation in a histogram series. */
void op_metric_observe(struct op_family *f, const char *const *values, double v);
/* Mirrors into a histogram series counts kept elsewhere: `counts` holds
 * nbuckets + 1 entries, one per bucket and the last for +Inf, not
 * cumulative, and `sum` the sum of the observations. */
void op_metric_set_histogram(struct op_family *f, const char *const *values, const uint64_t *counts,
                             double sum);
/* Removes every series whose label `label_idx` equals `value`, e.g. all the
 * series of a deleted policy, so /metrics does not grow without bound. */
void op_metric_forget(struct op_family *f, size_t label_idx, const char *value);
/* Reads a counter or gauge series; 0 when it does not exist. For tests. */
double op_metric_get(struct op_family *f, const char *const *values);

/* Appends the whole registry in the Prometheus text format to `out`.
 * Returns 0 or a negative errno. */
int op_metrics_render(const struct op_metrics *m, struct loop_buf *out);

#endif
