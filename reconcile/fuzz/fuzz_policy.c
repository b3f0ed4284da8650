/* libFuzzer target: a ProfilingPolicy JSON document through the policy
 * parser, then status computation and the patch body, then the whole
 * pod -> target path against a fixed pod. */
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reconcile/reconcile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char pod_json[] =
        "{\"metadata\":{\"name\":\"web-5d8f-abc\",\"namespace\":\"shop\",\"uid\":\"u1\","
        "\"labels\":{\"app\":\"web\",\"pod-template-hash\":\"5d8f\"},\"annotations\":{"
        "\"profefe.com/enable\":\"true\"},\"ownerReferences\":[{\"kind\":\"ReplicaSet\","
        "\"name\":\"web-5d8f\",\"controller\":true}]},\"spec\":{\"nodeName\":\"n\","
        "\"containers\":[{\"name\":\"app\",\"image\":\"web:v1\"}]},\"status\":{\"phase\":"
        "\"Running\",\"podIP\":\"fd00::1\"}}";

static void exercise_targets(const struct rec_policy *p, const struct rec_pod *pod)
{
	struct rec_target t;
	struct rec_kvs kvs;
	char err[256], url[REC_URL_MAX];

	(void)rec_pod_selected(p, pod);
	if (rec_target_resolve(p, pod, &t, err, sizeof(err)) != 0)
		return;
	for (size_t i = 0; i < p->nprofiles; i++) {
		(void)rec_target_url(&t, &p->profiles[i], url, sizeof(url));
		if (rec_target_labels(p, pod, &p->profiles[i], &kvs) == 0) {
			free(ppop_labels_encode(kvs.v, kvs.n));
			rec_kvs_free(&kvs);
		}
	}
	free(rec_selector_string(&p->selector));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct rec_pod *pod;
	struct json_tokener *tok;
	struct json_object *o;
	struct rec_policy *p = NULL;
	struct rec_errs errs = {0};
	struct rec_status st;
	char msg[512];

	if (pod == NULL) {
		struct json_object *po = json_tokener_parse(pod_json);
		if (po == NULL || rec_pod_from_json(po, &pod) != 0)
			abort();
		json_object_put(po);
	}
	tok = json_tokener_new_ex(32);
	if (tok == NULL)
		return 0;
	o = json_tokener_parse_ex(tok, (const char *)data, (int)size);
	json_tokener_free(tok);
	if (o == NULL)
		return 0;
	rec_status_init(&st);
	/* Either scope: the object decides which one parses it. */
	if (rec_policy_parse(o, NULL, NULL, &p, &errs) == 0 ||
	    rec_cluster_policy_parse(o, NULL, NULL, &p, &errs) == 0) {
		exercise_targets(p, pod);
		rec_status_compute(&st, p, &errs, 1, p->sched ? rec_schedule_next(p->sched, 0) : -1,
		                   1700000000000LL);
		rec_policy_free(p);
	}
	rec_errs_format(&errs, -1, msg, sizeof(msg));
	/* The same document read as a status object must not crash either. */
	rec_status_free(&st);
	if (rec_status_from_json(o, &st) == 0) {
		free(rec_status_patch_body(&st));
		rec_status_free(&st);
	}
	json_object_put(o);
	return 0;
}
