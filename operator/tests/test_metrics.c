/* operator/tests/test_metrics.c: the registry renders what Prometheus
 * parses: HELP/TYPE lines, escaped label values, cumulative buckets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "operator/metrics.h"

static char *render(struct op_metrics *m)
{
	struct loop_buf b = {0};

	assert_int_equal(op_metrics_render(m, &b), 0);
	return loop_buf_take(&b, NULL);
}

static void test_counter_series_by_labels_render_with_help_and_type(void **state)
{
	struct op_metrics *m = op_metrics_new();
	const char *labels[] = {"policy", "type", "result"};
	struct op_family *f = op_metrics_family(m, "ppop_captures_total", "Captures.", OP_COUNTER,
	                                        labels, 3, NULL, 0);
	const char *a[] = {"web/p", "heap", "success"}, *b[] = {"web/p", "cpu", "error"};
	char *out;

	(void)state;
	op_metric_add(f, a, 1);
	op_metric_add(f, a, 2);
	op_metric_add(f, b, 1);
	assert_true(op_metric_get(f, a) == 3);
	out = render(m);
	assert_non_null(strstr(out, "# HELP ppop_captures_total Captures.\n"));
	assert_non_null(strstr(out, "# TYPE ppop_captures_total counter\n"));
	assert_non_null(strstr(
	        out, "ppop_captures_total{policy=\"web/p\",type=\"heap\",result=\"success\"} 3\n"));
	assert_non_null(strstr(
	        out, "ppop_captures_total{policy=\"web/p\",type=\"cpu\",result=\"error\"} 1\n"));
	free(out);
	op_metrics_free(m);
}

static void test_label_values_are_escaped(void **state)
{
	struct op_metrics *m = op_metrics_new();
	const char *labels[] = {"pod"};
	struct op_family *f = op_metrics_family(m, "g", "G.", OP_GAUGE, labels, 1, NULL, 0);
	const char *v[] = {"a\"b\\c\nd"};
	char *out;

	(void)state;
	op_metric_set(f, v, 7);
	out = render(m);
	assert_non_null(strstr(out, "g{pod=\"a\\\"b\\\\c\\nd\"} 7\n"));
	free(out);
	op_metrics_free(m);
}

static void test_histogram_buckets_are_cumulative_with_inf_sum_count(void **state)
{
	struct op_metrics *m = op_metrics_new();
	const double buckets[] = {0.1, 1, 10};
	struct op_family *f =
	        op_metrics_family(m, "d_seconds", "D.", OP_HISTOGRAM, NULL, 0, buckets, 3);
	char *out;

	(void)state;
	op_metric_observe(f, NULL, 0.05);
	op_metric_observe(f, NULL, 0.5);
	op_metric_observe(f, NULL, 5);
	op_metric_observe(f, NULL, 50);
	out = render(m);
	assert_non_null(strstr(out, "d_seconds_bucket{le=\"0.1\"} 1\n"));
	assert_non_null(strstr(out, "d_seconds_bucket{le=\"1\"} 2\n"));
	assert_non_null(strstr(out, "d_seconds_bucket{le=\"10\"} 3\n"));
	assert_non_null(strstr(out, "d_seconds_bucket{le=\"+Inf\"} 4\n"));
	assert_non_null(strstr(out, "d_seconds_sum 55.549999999999997\n"));
	assert_non_null(strstr(out, "d_seconds_count 4\n"));
	free(out);
	op_metrics_free(m);
}

/* Counts kept elsewhere replace the series' counts; they never add up. */
static void test_histogram_set_from_counts_kept_elsewhere(void **state)
{
	struct op_metrics *m = op_metrics_new();
	const double buckets[] = {0.1, 1};
	const uint64_t c1[] = {3, 0, 1}, c2[] = {5, 2, 1};
	struct op_family *f =
	        op_metrics_family(m, "e_seconds", "E.", OP_HISTOGRAM, NULL, 0, buckets, 2);
	char *out;

	(void)state;
	op_metric_set_histogram(f, NULL, c1, 2.5);
	op_metric_set_histogram(f, NULL, c2, 4.25);
	out = render(m);
	assert_non_null(strstr(out, "e_seconds_bucket{le=\"0.1\"} 5\n"));
	assert_non_null(strstr(out, "e_seconds_bucket{le=\"1\"} 7\n"));
	assert_non_null(strstr(out, "e_seconds_bucket{le=\"+Inf\"} 8\n"));
	assert_non_null(strstr(out, "e_seconds_sum 4.25\n"));
	assert_non_null(strstr(out, "e_seconds_count 8\n"));
	free(out);
	op_metrics_free(m);
}

static void test_unlabelled_family_renders_zero_before_first_use(void **state)
{
	struct op_metrics *m = op_metrics_new();
	char *out;

	(void)state;
	op_metrics_family(m, "leader", "L.", OP_GAUGE, NULL, 0, NULL, 0);
	out = render(m);
	assert_non_null(strstr(out, "\nleader 0\n"));
	free(out);
	op_metrics_free(m);
}

static void test_forget_drops_a_deleted_policys_series_and_survives_growth(void **state)
{
	struct op_metrics *m = op_metrics_new();
	const char *labels[] = {"policy", "n"};
	struct op_family *f = op_metrics_family(m, "c", "C.", OP_COUNTER, labels, 2, NULL, 0);
	char pol[32], n[32];
	char *out;
	int i;

	(void)state;
	for (i = 0; i < 1000; i++) {
		const char *v[2] = {pol, n};
		snprintf(pol, sizeof(pol), "ns/p%d", i % 10);
		snprintf(n, sizeof(n), "%d", i);
		op_metric_add(f, v, 1);
	}
	op_metric_forget(f, 0, "ns/p3");
	for (i = 0; i < 1000; i++) {
		const char *v[2] = {pol, n};
		snprintf(pol, sizeof(pol), "ns/p%d", i % 10);
		snprintf(n, sizeof(n), "%d", i);
		assert_true(op_metric_get(f, v) == (i % 10 == 3 ? 0 : 1));
	}
	out = render(m);
	assert_null(strstr(out, "ns/p3\""));
	assert_non_null(strstr(out, "c{policy=\"ns/p4\",n=\"4\"} 1\n"));
	free(out);
	/* Re-adding after a forget reuses tombstones without duplicating. */
	{
		const char *v[2] = {"ns/p3", "3"};
		op_metric_add(f, v, 5);
		op_metric_add(f, v, 5);
		assert_true(op_metric_get(f, v) == 10);
	}
	op_metrics_free(m);
}

/* Counts the lines of `out` that are samples of family `name`. */
static size_t count_samples(const char *out, const char *name)
{
	size_t n = 0, l = strlen(name);
	const char *p;

	for (p = out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, name, l) == 0 && (p[l] == '{' || p[l] == ' '))
			n++;
	return n;
}

/* A policy deleted and another created, thousands of times over: forgotten
 * series must not fill the table with tombstones until lookups never end.
 * alarm() turns a hang into a failure instead of a stuck CI job. */
static void test_forget_and_create_cycles_never_hang(void **state)
{
	struct op_metrics *m = op_metrics_new();
	const char *labels[] = {"policy"};
	struct op_family *f = op_metrics_family(m, "t", "T.", OP_GAUGE, labels, 1, NULL, 0);
	char pol[32];
	char *out;
	int i;

	(void)state;
	alarm(20);
	for (i = 0; i < 20000; i++) {
		const char *v[1] = {pol};
		snprintf(pol, sizeof(pol), "ns/p%d", i);
		op_metric_set(f, v, 1);
		assert_true(op_metric_get(f, v) == 1);
		op_metric_forget(f, 0, pol);
		assert_true(op_metric_get(f, v) == 0);
	}
	alarm(0);
	out = render(m);
	assert_int_equal(count_samples(out, "t"), 0);
	free(out);
	op_metrics_free(m);
}

/* After many create/forget cycles mixed with long-lived series, the
 * exposition holds exactly the live series, each once, with its value. */
static void test_exposition_has_exactly_the_live_series_after_churn(void **state)
{
	struct op_metrics *m = op_metrics_new();
	const char *labels[] = {"policy", "type"};
	struct op_family *f = op_metrics_family(m, "c_total", "C.", OP_COUNTER, labels, 2, NULL, 0);
	char pol[32], want[96];
	char *out;
	int i;

	(void)state;
	alarm(20);
	for (i = 0; i < 5000; i++) {
		const char *v[2] = {pol, "cpu"}, *h[2] = {pol, "heap"};
		snprintf(pol, sizeof(pol), "ns/p%d", i);
		op_metric_add(f, v, 1);
		op_metric_add(f, h, 1);
		/* Every 100th policy stays; the others are deleted. */
		if (i % 100 != 0)
			op_metric_forget(f, 0, pol);
	}
	alarm(0);
	out = render(m);
	assert_int_equal(count_samples(out, "c_total"), 100);
	for (i = 0; i < 5000; i += 100) {
		snprintf(want, sizeof(want), "c_total{policy=\"ns/p%d\",type=\"cpu\"} 1\n", i);
		assert_non_null(strstr(out, want));
		snprintf(want, sizeof(want), "c_total{policy=\"ns/p%d\",type=\"heap\"} 1\n", i);
		assert_non_null(strstr(out, want));
	}
	assert_null(strstr(out, "ns/p1\""));
	free(out);
	op_metrics_free(m);
}

/* A counter mirrored from a cumulative total kept elsewhere (spool drops,
 * watch restarts) is exposed as a counter and never goes backwards, even
 * when the source reports less than before. */
static void test_counter_fed_a_lower_total_never_decreases(void **state)
{
	struct op_metrics *m = op_metrics_new();
	const char *labels[] = {"resource"};
	struct op_family *d =
	        op_metrics_family(m, "spool_dropped_total", "Drops.", OP_COUNTER, NULL, 0, NULL, 0);
	struct op_family *w = op_metrics_family(m, "watch_restarts_total", "Restarts.", OP_COUNTER,
	                                        labels, 1, NULL, 0);
	const char *pods[] = {"pods"};
	char *out;

	(void)state;
	op_metric_set_counter(d, NULL, 7);
	op_metric_set_counter(d, NULL, 3);
	assert_true(op_metric_get(d, NULL) == 7);
	op_metric_set_counter(d, NULL, 9);
	assert_true(op_metric_get(d, NULL) == 9);
	/* op_metric_set on a counter family keeps the same promise. */
	op_metric_set(w, pods, 4);
	op_metric_set(w, pods, 1);
	op_metric_add(w, pods, -2);
	assert_true(op_metric_get(w, pods) == 4);
	out = render(m);
	assert_non_null(strstr(out, "# TYPE spool_dropped_total counter\n"));
	assert_non_null(strstr(out, "\nspool_dropped_total 9\n"));
	assert_non_null(strstr(out, "# TYPE watch_restarts_total counter\n"));
	assert_non_null(strstr(out, "\nwatch_restarts_total{resource=\"pods\"} 4\n"));
	free(out);
	op_metrics_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_counter_series_by_labels_render_with_help_and_type),
	        cmocka_unit_test(test_label_values_are_escaped),
	        cmocka_unit_test(test_histogram_buckets_are_cumulative_with_inf_sum_count),
	        cmocka_unit_test(test_histogram_set_from_counts_kept_elsewhere),
	        cmocka_unit_test(test_unlabelled_family_renders_zero_before_first_use),
	        cmocka_unit_test(test_forget_drops_a_deleted_policys_series_and_survives_growth),
	        cmocka_unit_test(test_forget_and_create_cycles_never_hang),
	        cmocka_unit_test(test_exposition_has_exactly_the_live_series_after_churn),
	        cmocka_unit_test(test_counter_fed_a_lower_total_never_decreases),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
