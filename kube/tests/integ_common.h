/* kube/tests/integ_common.h: helpers shared by the integration programs
 * that run against a real kube-apiserver (see kube/README.md). */
#ifndef KUBE_TESTS_INTEG_COMMON_H
#define KUBE_TESTS_INTEG_COMMON_H

#include <stdint.h>

#include "kube/kube.h"

struct json_object;
struct loop;

/* Failures so far; main() returns nonzero when any. */
extern int integ_failures;

/* Prints "ok - what" or "FAIL - what" and counts failures. */
void integ_check(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints a progress note. */
void integ_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Loads `kubeconfig` (and `context`, may be NULL) into a client on `l`;
 * exits on failure. */
struct kube_client *integ_client(struct loop *l, const char *kubeconfig, const char *context);

/* Runs one request to completion. Returns the HTTP status (0 on transport
 * failure). `body` is JSON text or NULL; `*out` (may be NULL) receives the
 * parsed answer, which the caller puts. */
long integ_do(struct loop *l, struct kube_client *kc, const char *method, const char *path,
              const char *body, const char *content_type, struct json_object **out);

/* Runs the loop until cond(arg) is true or `timeout_ms` passes. Returns
 * 1 when the condition held. */
int integ_wait(struct loop *l, int (*cond)(void *arg), void *arg, int timeout_ms);

/* Runs the loop for `ms`. */
void integ_sleep(struct loop *l, int ms);

/* Creates a fresh namespace "<prefix>-<random>" and writes its name. */
void integ_namespace(struct loop *l, struct kube_client *kc, const char *prefix, char *out,
                     size_t n);

#endif
