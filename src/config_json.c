/*
 * config_json: the config file's syntax and its typed accessors. The file
 * is JSON with // and block comments and trailing commas allowed
 * (HuJSON-like); they are blanked out before cJSON parses it, keeping line
 * and column numbers for the errors. A \u0000 escape is refused: cJSON
 * would cut the string short at it.
 */
#include "config_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Blanks out // and block comments and drops trailing commas before '}' or
 * ']', outside strings; keeps newlines so cJSON's error offsets map to the
 * same line. Returns false (with *bad_line) for an unterminated comment. */
static bool strip_hujson(char *s, size_t n, size_t *bad_line)
{
	size_t line = 1;
	bool in_str = false;
	char prev = 0;	/* last significant character outside strings and comments */
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '\n')
			line++;
		if (in_str) {
			if (c == '\\' && i + 1 < n)
				i++;
			else if (c == '"')
				in_str = false;
			prev = '"';
			continue;
		}
		bool sig = !(c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
			     (c == '/' && i + 1 < n && (s[i + 1] == '/' || s[i + 1] == '*')));
		char this_prev = prev;
		if (sig)
			prev = c;
		if (c == '"') {
			in_str = true;
		} else if (c == '/' && i + 1 < n && s[i + 1] == '/') {
			while (i < n && s[i] != '\n')
				s[i++] = ' ';
			i--;
		} else if (c == '/' && i + 1 < n && s[i + 1] == '*') {
			size_t start_line = line;
			s[i] = s[i + 1] = ' ';
			i += 2;
			while (i < n && !(s[i] == '*' && i + 1 < n && s[i + 1] == '/')) {
				if (s[i] == '\n')
					line++;
				else
					s[i] = ' ';
				i++;
			}
			if (i >= n) {
				*bad_line = start_line;
				return false;
			}
			s[i] = s[i + 1] = ' ';
			i++;
		} else if (c == ',') {
			/* Look past blanks and comments for a closing bracket. */
			size_t j = i + 1;
			for (;;) {
				while (j < n && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r'))
					j++;
				if (j + 1 < n && s[j] == '/' && s[j + 1] == '/') {
					while (j < n && s[j] != '\n')
						j++;
					continue;
				}
				if (j + 1 < n && s[j] == '/' && s[j + 1] == '*') {
					j += 2;
					while (j + 1 < n && !(s[j] == '*' && s[j + 1] == '/'))
						j++;
					j += 2;
					continue;
				}
				break;
			}
			if (j < n && (s[j] == '}' || s[j] == ']') && this_prev != '{' &&
			    this_prev != '[' && this_prev != ',' && this_prev != 0)
				s[i] = ' ';
		}
	}
	return true;
}

static void line_col(const char *s, const char *at, size_t *line, size_t *col)
{
	*line = 1;
	*col = 1;
	for (const char *p = s; p < at && *p; p++) {
		if (*p == '\n') {
			(*line)++;
			*col = 1;
		} else {
			(*col)++;
		}
	}
}


/* The first \u0000 escape inside a JSON string of buf, or NULL. cJSON
 * would decode it into a NUL that silently cuts the string short
 * ("db.internal\u0000evil:80" would read as "db.internal"). */
static const char *find_nul_escape(const char *buf)
{
	bool in_string = false;
	for (const char *p = buf; *p; p++) {
		if (*p == '"') {
			in_string = !in_string;
		} else if (in_string && *p == '\\') {
			if (p[1] == 'u' && strncmp(p + 2, "0000", 4) == 0)
				return p;
			if (p[1])
				p++;	/* whatever is escaped, it is not a quote */
		}
	}
	return NULL;
}

cJSON *config_parse_json(const char *name, const char *text, size_t len, char *err,
			 size_t errlen)
{
	char *buf = malloc(len + 1);
	if (!buf) {
		snprintf(err, errlen, "%s: out of memory", name);
		return NULL;
	}
	memcpy(buf, text, len);
	buf[len] = '\0';
	if (strlen(buf) != len) {
		snprintf(err, errlen, "%s: contains a NUL byte; expected JSON text", name);
		free(buf);
		return NULL;
	}
	size_t bad_line = 0;
	if (!strip_hujson(buf, len, &bad_line)) {
		snprintf(err, errlen, "%s: line %zu: a /* comment is never closed", name, bad_line);
		free(buf);
		return NULL;
	}
	const char *nul = find_nul_escape(buf);
	if (nul) {
		size_t line, col;
		line_col(buf, nul, &line, &col);
		snprintf(err, errlen, "%s: line %zu, column %zu: a string contains \\u0000 (NUL), "
			 "which would cut it short; remove it", name, line, col);
		free(buf);
		return NULL;
	}
	const char *end = NULL;
	cJSON *root = cJSON_ParseWithOpts(buf, &end, true);
	if (!root) {
		size_t line, col;
		const char *at = end ? end : cJSON_GetErrorPtr();
		if (!at)
			at = buf;
		line_col(buf, at, &line, &col);
		snprintf(err, errlen, "%s: line %zu, column %zu: invalid JSON near \"%.20s\"", name,
			 line, col, at);
		/* keep the message on one line */
		for (char *p = err; *p; p++)
			if (*p == '\n' || *p == '\r' || *p == '\t')
				*p = ' ';
		free(buf);
		return NULL;
	}
	free(buf);
	if (!cJSON_IsObject(root)) {
		snprintf(err, errlen, "%s: the top level must be a JSON object ({...})", name);
		cJSON_Delete(root);
		return NULL;
	}
	return root;
}

const char *json_type_name(const cJSON *v)
{
	if (cJSON_IsString(v)) return "a string";
	if (cJSON_IsNumber(v)) return "a number";
	if (cJSON_IsBool(v)) return "a boolean";
	if (cJSON_IsArray(v)) return "an array";
	if (cJSON_IsObject(v)) return "an object";
	return "null";
}

bool json_check_keys(struct config_err *e, const char *path, const cJSON *obj,
		     const char *const *known, size_t n_known)
{
	char q[256];
	for (const cJSON *it = obj->child; it; it = it->next) {
		bool ok = false;
		for (size_t i = 0; i < n_known; i++)
			ok = ok || strcmp(it->string, known[i]) == 0;
		if (!ok) {
			char list[600] = "";
			size_t j = 0;
			for (size_t i = 0; i < n_known && j < sizeof list; i++)
				j += (size_t)snprintf(list + j, sizeof list - j, "%s%s", i ? ", " : "",
						      known[i]);
			return config_fail(e, "%s: unknown key \"%s\"; expected one of %s", path,
					   config_quote(it->string, q, sizeof q), list);
		}
		for (const cJSON *p = obj->child; p != it; p = p->next)
			if (strcmp(p->string, it->string) == 0)
				return config_fail(e, "%s: key \"%s\" appears twice", path,
						   config_quote(it->string, q, sizeof q));
	}
	return true;
}

bool json_string_list(struct config_err *e, const char *path, const cJSON *v,
		      const char ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (cJSON_IsString(v)) {
		*out = malloc(sizeof **out);
		if (!*out)
			return config_fail(e, "out of memory");
		(*out)[0] = v->valuestring;
		*n = 1;
		return true;
	}
	if (!cJSON_IsArray(v))
		return config_fail(e, "%s: is %s; expected an array of strings", path,
				   json_type_name(v));
	size_t cnt = (size_t)cJSON_GetArraySize(v);
	*out = calloc(cnt ? cnt : 1, sizeof **out);
	if (!*out)
		return config_fail(e, "out of memory");
	size_t i = 0;
	for (const cJSON *it = v->child; it; it = it->next, i++) {
		if (!cJSON_IsString(it)) {
			free(*out);
			*out = NULL;
			return config_fail(e, "%s[%zu]: is %s; expected a string", path, i,
					   json_type_name(it));
		}
		(*out)[i] = it->valuestring;
	}
	*n = cnt;
	return true;
}

bool json_scalar_text(struct config_err *e, const char *path, const cJSON *v, char *buf,
		      size_t len, bool duration)
{
	if (cJSON_IsString(v)) {
		snprintf(buf, len, "%s", v->valuestring);
		return true;
	}
	if (cJSON_IsNumber(v)) {
		double d = v->valuedouble;
		if (d < 0 || d > 1e12)
			return config_fail(e, "%s: %g is out of range", path, d);
		if (duration && d != (double)(unsigned long long)d) {
			snprintf(buf, len, "%llums", (unsigned long long)(d * 1000 + 0.5));
			return true;
		}
		if (d != (double)(unsigned long long)d)
			return config_fail(e, "%s: %g is not a whole number", path, d);
		snprintf(buf, len, "%llu", (unsigned long long)d);
		return true;
	}
	return config_fail(e, "%s: is %s; expected %s", path, json_type_name(v),
			   duration ? "a duration (\"10s\") or a number of seconds" : "a number");
}
