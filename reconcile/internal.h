/* reconcile/internal.h: helpers shared by the reconcile/ sources only.
 * Names carry the rec__ prefix; nothing here is part of the module's API. */
#ifndef RECONCILE_INTERNAL_H
#define RECONCILE_INTERNAL_H

#include "reconcile/reconcile.h"

#include <stdint.h>

/* Civil (proleptic Gregorian) date arithmetic on days since 1970-01-01. */
int64_t rec__days_from_civil(int64_t y, unsigned m, unsigned d);
void rec__civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d);
/* 0 = Sunday. */
unsigned rec__weekday(int64_t days);
int rec__is_leap(int64_t y);
unsigned rec__days_in_month(int64_t y, unsigned m);

/* The next zone transition strictly after `t` (Unix seconds), or INT64_MAX. */
int64_t rec__zone_next_transition(const struct rec_zone *z, int64_t t);

/* Builds a sorted rec_kvs from `n` borrowed pairs: copies every string into
 * one arena. Later duplicates of a key replace earlier ones. */
int rec__kvs_build(struct rec_kvs *out, const struct ppop_kv *pairs, size_t n);

/* strdup that maps NULL to NULL. */
char *rec__strdup(const char *s);

/* Kubernetes name syntax checks (apimachinery validation). */
int rec__label_key_valid(const char *k);
int rec__label_value_valid(const char *v);
int rec__dns_label_valid(const char *s);

#endif
