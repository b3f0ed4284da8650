/* kubectl-profefe/render.c: kubectl-style tables, JSON and YAML.
 *
 * Tables follow kubectl's printer: upper-case headers, columns padded with
 * spaces to the widest cell plus three, no trailing spaces. The default
 * table keeps LABELS to one screen-friendly width; -o wide adds AGE and
 * never shortens anything. JSON is profefe's own reply, pretty printed;
 * YAML is the same data in block style.
 */
#include "kubectl-profefe/kp.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#define LABELS_MAX_NARROW 60

enum { COL_ID, COL_SERVICE, COL_TYPE, COL_CREATED, COL_AGE, COL_LABELS, NCOLS };

static const char *const headers[NCOLS] = {"ID", "SERVICE", "TYPE", "CREATED", "AGE", "LABELS"};

char *kp_age(int64_t ms, char *buf, size_t len)
{
	int64_t s = ms / 1000;

	if (s < 0)
		s = 0;
	if (s < 120)
		snprintf(buf, len, "%llds", (long long)s);
	else if (s < 3600 * 3)
		snprintf(buf, len, "%lldm", (long long)(s / 60));
	else if (s < 86400 * 2)
		snprintf(buf, len, "%lldh", (long long)(s / 3600));
	else
		snprintf(buf, len, "%lldd", (long long)(s / 86400));
	return buf;
}

static const char *str_field(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return "";
}

/* True when profile `p` has label key=value. */
static int has_label(struct json_object *p, const char *key, size_t klen, const char *value,
                     size_t vlen)
{
	struct json_object *arr;

	if (!json_object_object_get_ex(p, "labels", &arr) ||
	    !json_object_is_type(arr, json_type_array))
		return 0;
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		struct json_object *l = json_object_array_get_idx(arr, i);
		const char *k = str_field(l, "key"), *v = str_field(l, "value");

		if (strlen(k) == klen && strncmp(k, key, klen) == 0 && strlen(v) == vlen &&
		    strncmp(v, value, vlen) == 0)
			return 1;
	}
	return 0;
}

/* True when `p` has every label of the "k=v,k2=v2" selector; -1 when the
 * selector is malformed. */
static int matches(struct json_object *p, const char *sel)
{
	while (sel && *sel) {
		size_t n = strcspn(sel, ","), kl;
		const char *eq = memchr(sel, '=', n);

		if (n == 0) {
			sel++;
			continue;
		}
		if (eq == NULL || eq == sel)
			return -1;
		kl = (size_t)(eq - sel);
		if (!has_label(p, sel, kl, eq + 1, n - kl - 1))
			return 0;
		sel += n;
	}
	return 1;
}

struct json_object *kp_filter_profiles(struct json_object *arr, const char *selector,
                                       unsigned limit)
{
	struct json_object *out = json_object_new_array();
	size_t n = arr && json_object_is_type(arr, json_type_array) ? json_object_array_length(arr)
	                                                            : 0;
	size_t kept, skip;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		struct json_object *p = json_object_array_get_idx(arr, i);
		int m = matches(p, selector);

		if (m < 0 || (m && json_object_array_add(out, json_object_get(p)) < 0)) {
			json_object_put(out);
			return NULL;
		}
	}
	/* profefe lists oldest first, and its limit keeps the newest */
	kept = json_object_array_length(out);
	skip = limit && kept > limit ? kept - limit : 0;
	if (skip && json_object_array_del_idx(out, 0, skip) < 0) {
		json_object_put(out);
		return NULL;
	}
	return out;
}

/* "k=v,k2=v2" from profefe's [{"key":..,"value":..}] (malloc'd). */
static char *labels_text(struct json_object *o)
{
	struct json_object *arr;
	size_t n, len = 1;
	char *s;

	if (!json_object_object_get_ex(o, "labels", &arr) ||
	    !json_object_is_type(arr, json_type_array))
		return strdup("<none>");
	n = json_object_array_length(arr);
	for (size_t i = 0; i < n; i++) {
		struct json_object *l = json_object_array_get_idx(arr, i);

		len += strlen(str_field(l, "key")) + strlen(str_field(l, "value")) + 2;
	}
	if (n == 0)
		return strdup("<none>");
	s = malloc(len);
	if (s == NULL)
		return NULL;
	s[0] = '\0';
	for (size_t i = 0, off = 0; i < n; i++) {
		struct json_object *l = json_object_array_get_idx(arr, i);
		int w = snprintf(s + off, len - off, "%s%s=%s", i ? "," : "", str_field(l, "key"),
		                 str_field(l, "value"));

		if (w > 0)
			off += (size_t)w;
	}
	return s;
}

/* The cells of one profile row (each malloc'd). */
static void row_cells(struct json_object *p, char **cells, int wide, int64_t now_ms)
{
	const char *created = str_field(p, "created_at");
	char tbuf[40], abuf[24];
	int64_t t;

	cells[COL_ID] = strdup(str_field(p, "id"));
	cells[COL_SERVICE] = strdup(str_field(p, "service"));
	cells[COL_TYPE] = strdup(str_field(p, "type"));
	if (rec_time_parse(created, &t) == 0) {
		cells[COL_CREATED] = strdup(rec_time_format(t, tbuf, sizeof(tbuf)));
		cells[COL_AGE] = strdup(kp_age(now_ms - t, abuf, sizeof(abuf)));
	} else {
		cells[COL_CREATED] = strdup(created[0] ? created : "<unknown>");
		cells[COL_AGE] = strdup("<unknown>");
	}
	cells[COL_LABELS] = labels_text(p);
	if (!wide && cells[COL_LABELS] && strlen(cells[COL_LABELS]) > LABELS_MAX_NARROW)
		strcpy(cells[COL_LABELS] + LABELS_MAX_NARROW - 3, "...");
}

/* Prints rows of NCOLS cells (NULL cells print as ""), skipping columns
 * whose bit is clear in `show`. */
static void print_table(FILE *f, char ***rows, size_t nrows, unsigned show)
{
	size_t width[NCOLS];
	int last = -1;

	for (int c = 0; c < NCOLS; c++) {
		width[c] = strlen(headers[c]);
		for (size_t r = 0; r < nrows; r++)
			if (rows[r][c] && strlen(rows[r][c]) > width[c])
				width[c] = strlen(rows[r][c]);
		if (show & (1u << c))
			last = c;
	}
	for (size_t r = 0; r <= nrows; r++) {
		for (int c = 0; c < NCOLS; c++) {
			const char *cell = r == 0 ? headers[c] : rows[r - 1][c];

			if (!(show & (1u << c)))
				continue;
			if (cell == NULL)
				cell = "";
			if (c == last)
				fprintf(f, "%s\n", cell);
			else
				fprintf(f, "%-*s   ", (int)width[c], cell);
		}
	}
}

static void print_json(FILE *f, struct json_object *v)
{
	const char *s = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PRETTY |
	                                                          JSON_C_TO_STRING_SPACED |
	                                                          JSON_C_TO_STRING_NOSLASHESCAPE);

	fprintf(f, "%s\n", s ? s : "null");
}

size_t kp_render_profiles(FILE *f, struct json_object *arr, enum kp_fmt fmt, int64_t now_ms)
{
	size_t n = arr && json_object_is_type(arr, json_type_array) ? json_object_array_length(arr)
	                                                            : 0;
	char ***rows;
	unsigned show;

	if (fmt == KP_FMT_JSON || fmt == KP_FMT_YAML) {
		struct json_object *empty = n ? NULL : json_object_new_array();

		if (fmt == KP_FMT_JSON)
			print_json(f, n ? arr : empty);
		else
			kp_yaml_write(f, n ? arr : empty);
		json_object_put(empty);
		return n;
	}
	if (n == 0)
		return 0;
	rows = calloc(n, sizeof(*rows));
	if (rows == NULL)
		return 0;
	for (size_t i = 0; i < n; i++) {
		rows[i] = calloc(NCOLS, sizeof(char *));
		if (rows[i])
			row_cells(json_object_array_get_idx(arr, i), rows[i], fmt == KP_FMT_WIDE,
			          now_ms);
	}
	show = (1u << COL_ID) | (1u << COL_SERVICE) | (1u << COL_TYPE) | (1u << COL_CREATED) |
	       (1u << COL_LABELS);
	if (fmt == KP_FMT_WIDE)
		show |= 1u << COL_AGE;
	for (size_t i = 0; i < n; i++)
		if (rows[i] == NULL)
			n = i; /* out of memory: print what we have */
	print_table(f, rows, n, show);
	for (size_t i = 0; i < n; i++) {
		for (int c = 0; c < NCOLS; c++)
			free(rows[i][c]);
		free(rows[i]);
	}
	free(rows);
	return n;
}

size_t kp_render_services(FILE *f, struct json_object *arr, enum kp_fmt fmt)
{
	size_t n = arr && json_object_is_type(arr, json_type_array) ? json_object_array_length(arr)
	                                                            : 0;

	if (fmt == KP_FMT_JSON || fmt == KP_FMT_YAML) {
		struct json_object *empty = n ? NULL : json_object_new_array();

		if (fmt == KP_FMT_JSON)
			print_json(f, n ? arr : empty);
		else
			kp_yaml_write(f, n ? arr : empty);
		json_object_put(empty);
		return n;
	}
	if (n == 0)
		return 0;
	fprintf(f, "SERVICE\n");
	for (size_t i = 0; i < n; i++) {
		struct json_object *s = json_object_array_get_idx(arr, i);

		fprintf(f, "%s\n",
		        json_object_is_type(s, json_type_string) ? json_object_get_string(s)
		                                                 : "<invalid>");
	}
	return n;
}

/* ---- YAML ---------------------------------------------------------------- */

/* A plain scalar is safe when YAML would read it back as this same string. */
static int plain_ok(const char *s)
{
	static const char *const reserved[] = {"true", "false", "yes", "no", "on",
	                                       "off",  "null",  "~",   "y",  "n"};
	size_t n = strlen(s);

	if (n == 0 || strchr("-?:,[]{}#&*!|>'\"%@` ", s[0]) || s[n - 1] == ' ')
		return 0;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == '#' || *p == '"' || *p == '\\' ||
		    (*p == ':' && (p[1] == ' ' || p[1] == '\0')) || (*p == ' ' && p[1] == '#'))
			return 0;
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if (strcasecmp(s, reserved[i]) == 0)
			return 0;
	if (strspn(s, "0123456789+-.eE_xXoOabcdefABCDEF") == n && strpbrk(s, "0123456789"))
		return 0; /* could read as a number */
	if (strspn(s, "0123456789-+:TZ.") == n)
		return 0; /* could read as a timestamp */
	return 1;
}

static void yaml_scalar(FILE *f, struct json_object *v)
{
	const char *s;

	switch (json_object_get_type(v)) {
	case json_type_null:
		fputs("null", f);
		return;
	case json_type_string:
		s = json_object_get_string(v);
		if (plain_ok(s)) {
			fputs(s, f);
			return;
		}
		/* a JSON string is a valid YAML double-quoted scalar */
		fputs(json_object_to_json_string_ext(v, JSON_C_TO_STRING_NOSLASHESCAPE), f);
		return;
	default:
		fputs(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN), f);
		return;
	}
}

static int is_collection(struct json_object *v, size_t *n)
{
	if (json_object_is_type(v, json_type_array)) {
		*n = json_object_array_length(v);
		return 1;
	}
	if (json_object_is_type(v, json_type_object)) {
		*n = (size_t)json_object_object_length(v);
		return 1;
	}
	return 0;
}

static void yaml_value(FILE *f, struct json_object *v, int indent, int after_dash);

/* Writes a mapping value or sequence item after "key:" or "-". */
static void yaml_child(FILE *f, struct json_object *v, int indent, int seq_item)
{
	size_t n;

	if (is_collection(v, &n) && n > 0) {
		if (seq_item && json_object_is_type(v, json_type_object)) {
			fputc(' ', f);
			yaml_value(f, v, indent + 2, 1);
		} else {
			fputc('\n', f);
			yaml_value(f, v,
			           json_object_is_type(v, json_type_array) && !seq_item
			                   ? indent
			                   : indent + 2,
			           0);
		}
		return;
	}
	fputc(' ', f);
	if (is_collection(v, &n))
		fputs(json_object_is_type(v, json_type_array) ? "[]" : "{}", f);
	else
		yaml_scalar(f, v);
	fputc('\n', f);
}

static void yaml_value(FILE *f, struct json_object *v, int indent, int after_dash)
{
	int first = 1;
	size_t n;

	if (!is_collection(v, &n) || n == 0) {
		if (!after_dash)
			fprintf(f, "%*s", indent, "");
		if (is_collection(v, &n))
			fputs(json_object_is_type(v, json_type_array) ? "[]" : "{}", f);
		else
			yaml_scalar(f, v);
		fputc('\n', f);
		return;
	}
	if (json_object_is_type(v, json_type_array)) {
		for (size_t i = 0; i < n; i++) {
			fprintf(f, "%*s-", (after_dash && first) ? 0 : indent, "");
			first = 0;
			yaml_child(f, json_object_array_get_idx(v, i), indent, 1);
		}
		return;
	}
	json_object_object_foreach(v, key, val)
	{
		struct json_object *k = json_object_new_string(key);

		if ((after_dash && first) == 0)
			fprintf(f, "%*s", indent, "");
		first = 0;
		if (k)
			yaml_scalar(f, k);
		json_object_put(k);
		fputc(':', f);
		yaml_child(f, val, indent, 0);
	}
}

void kp_yaml_write(FILE *f, struct json_object *v)
{
	yaml_value(f, v, 0, 0);
}
