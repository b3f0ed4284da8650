/* The CRD's examples against the operator's own validation: every policy in
 * crd/samples/ parses with no problem, and every policy in crd/invalid/
 * (which the API server must reject) is also refused by rec_policy_parse,
 * so the two layers of validation cannot drift apart silently. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <dirent.h>
#include <regex.h>
#include <cmocka.h>
#include <json-c/json.h>
#include <yaml.h>

#include "reconcile/reconcile.h"
#include "reconcile/tests/zonefile.h"

/* Resolves a plain YAML scalar as the core schema does (bool, int, null),
 * which is how kubectl reads these files. */
static struct json_object *scalar(const yaml_event_t *ev)
{
	const char *v = (const char *)ev->data.scalar.value;
	regex_t re;
	int is_int;

	if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return json_object_new_string(v);
	if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0)
		return json_object_new_boolean(v[0] == 't');
	if (strcmp(v, "null") == 0 || strcmp(v, "~") == 0 || v[0] == '\0')
		return NULL;
	assert_int_equal(regcomp(&re, "^[-+]?[0-9]+$", REG_EXTENDED | REG_NOSUB), 0);
	is_int = regexec(&re, v, 0, NULL, 0) == 0;
	regfree(&re);
	return is_int ? json_object_new_int64(strtoll(v, NULL, 10)) : json_object_new_string(v);
}

static void next_event(yaml_parser_t *p, yaml_event_t *ev)
{
	if (!yaml_parser_parse(p, ev))
		fail_msg("YAML error: %s", p->problem ? p->problem : "?");
}

/* Builds the node whose first event is `ev` (consumed). */
static struct json_object *node(yaml_parser_t *p, yaml_event_t *ev)
{
	struct json_object *o = NULL;
	yaml_event_t e;

	if (ev->type == YAML_SCALAR_EVENT) {
		o = scalar(ev);
	} else if (ev->type == YAML_SEQUENCE_START_EVENT) {
		o = json_object_new_array();
		for (next_event(p, &e); e.type != YAML_SEQUENCE_END_EVENT; next_event(p, &e))
			json_object_array_add(o, node(p, &e));
		yaml_event_delete(&e);
	} else if (ev->type == YAML_MAPPING_START_EVENT) {
		o = json_object_new_object();
		for (next_event(p, &e); e.type != YAML_MAPPING_END_EVENT; next_event(p, &e)) {
			char *key = strdup((const char *)e.data.scalar.value);
			yaml_event_t v;
			yaml_event_delete(&e);
			next_event(p, &v);
			json_object_object_add(o, key, node(p, &v));
			free(key);
		}
		yaml_event_delete(&e);
	} else {
		fail_msg("unexpected YAML event %d", ev->type);
	}
	yaml_event_delete(ev);
	return o;
}

/* Loads the one document of a YAML file as json-c. */
static struct json_object *load_yaml(const char *path)
{
	yaml_parser_t p;
	yaml_event_t ev;
	struct json_object *o = NULL;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		fail_msg("cannot open %s", path);
	assert_int_equal(yaml_parser_initialize(&p), 1);
	yaml_parser_set_input_file(&p, f);
	for (;;) {
		next_event(&p, &ev);
		if (ev.type == YAML_STREAM_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		if (ev.type == YAML_SCALAR_EVENT || ev.type == YAML_SEQUENCE_START_EVENT ||
		    ev.type == YAML_MAPPING_START_EVENT) {
			assert_null(o);
			o = node(&p, &ev);
		} else {
			yaml_event_delete(&ev);
		}
	}
	yaml_parser_delete(&p);
	fclose(f);
	return o;
}

/* Parses every .yaml in `dir`; returns how many there were. */
static size_t check_dir(const char *sub, int want_valid)
{
	char dir[1024], path[1300], msg[1024];
	const char *src = getenv("SRCDIR");
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/../crd/%s", src ? src : ".", sub);
	if ((d = opendir(dir)) == NULL)
		fail_msg("cannot open %s (SRCDIR=%s)", dir, src ? src : "unset");
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		struct rec_errs errs = {0};
		struct rec_policy *p = NULL;
		struct json_object *o, *md = NULL, *kind;
		if (l < 6 || strcmp(de->d_name + l - 5, ".yaml") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		o = load_yaml(path);
		assert_true(json_object_object_get_ex(o, "metadata", &md));
		if (json_object_object_get_ex(o, "kind", &kind) &&
		    strcmp(json_object_get_string(kind), "ClusterProfilingPolicy") == 0) {
			assert_int_equal(
			        rec_cluster_policy_parse(o, rec_test_zone_lookup, NULL, &p, &errs),
			        0);
		} else {
			if (!json_object_object_get_ex(md, "namespace", NULL))
				json_object_object_add(md, "namespace",
				                       json_object_new_string("test"));
			assert_int_equal(rec_policy_parse(o, rec_test_zone_lookup, NULL, &p, &errs),
			                 0);
		}
		rec_errs_format(&errs, -1, msg, sizeof(msg));
		if (p->valid != want_valid)
			fail_msg("%s: valid=%d, want %d (%s)", path, p->valid, want_valid, msg);
		print_message("%-45s %s\n", de->d_name, want_valid ? "valid" : msg);
		rec_policy_free(p);
		json_object_put(o);
		n++;
	}
	closedir(d);
	return n;
}

static void test_crd_samples_pass_operator_validation(void **state)
{
	assert_true(check_dir("samples", 1) >= 4);
}

static void test_crd_invalid_policies_fail_operator_validation(void **state)
{
	assert_true(check_dir("invalid", 0) >= 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_crd_samples_pass_operator_validation),
	        cmocka_unit_test(test_crd_invalid_policies_fail_operator_validation),
	};
	return cmocka_run_group_tests_name("reconcile_crd_samples", tests, NULL, NULL);
}
