/*
 * audit_json: the writer every audit record is formatted with. A record is
 * appended member by member to a growing buffer (struct audit_buf) and
 * comes out as the line cJSON_PrintUnformatted used to print for the same
 * members: one allocation per record instead of one per member, and no
 * tree to print afterwards. What "the same" means, byte for byte:
 *
 *   - no spaces; members in the order written;
 *   - strings: '"' and '\' escaped with a backslash; \b \f \n \r \t by
 *     name; every other byte below 0x20 as \u00xx (lowercase hex); every
 *     byte from 0x20 on that is not '"' or '\' as it is (0x7f and UTF-8
 *     included). Strings are made valid UTF-8 before that;
 *   - numbers are doubles: %1.15g, or %1.17g when the shorter form does not
 *     read back within DBL_EPSILON (relative), with '.' whatever the
 *     locale; NaN and infinities as null. Integers below 10^15 are printed
 *     without printf: %1.15g writes their digits and nothing else.
 *
 * tests/unit/test_audit_json.c holds this against cJSON itself.
 */
#include "audit_internal.h"

#include "tailfence/text.h"

#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AUDIT_JSON_FIRST 1024	/* a record's first buffer: most fit */

static void put(struct audit_json *j, const void *p, size_t n)
{
	if (!j->oom && !audit_buf_add(&j->b, p, n))
		j->oom = true;
}

/* The separator and "k": before a value. */
static void put_key(struct audit_json *j, const char *k)
{
	if (j->oom)
		return;
	size_t kl = k ? strlen(k) : 0;
	if (!audit_buf_reserve(&j->b, kl + 4)) {
		j->oom = true;
		return;
	}
	char *o = j->b.p + j->b.len;
	if (j->more)
		*o++ = ',';
	if (k) {
		*o++ = '"';
		memcpy(o, k, kl);
		o += kl;
		*o++ = '"';
		*o++ = ':';
	}
	j->b.len = (size_t)(o - j->b.p);
	j->more = true;
}

/* s (n bytes) as a JSON string: the only place a string is escaped. */
static void put_escaped(struct audit_json *j, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	if (j->oom)
		return;
	if (n > (SIZE_MAX - 2) / 6 || !audit_buf_reserve(&j->b, 6 * n + 2)) {
		j->oom = true;
		return;
	}
	char *o = j->b.p + j->b.len;
	*o++ = '"';
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c != '"' && c != '\\') {
			*o++ = (char)c;
			continue;
		}
		*o++ = '\\';
		switch (c) {
		case '"':
		case '\\':
			*o++ = (char)c;
			break;
		case '\b':
			*o++ = 'b';
			break;
		case '\f':
			*o++ = 'f';
			break;
		case '\n':
			*o++ = 'n';
			break;
		case '\r':
			*o++ = 'r';
			break;
		case '\t':
			*o++ = 't';
			break;
		default:
			*o++ = 'u';
			*o++ = '0';
			*o++ = '0';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 0xf];
		}
	}
	*o++ = '"';
	j->b.len = (size_t)(o - j->b.p);
}

static bool utf8_valid(const char *s, size_t len)
{
	for (size_t i = 0; i < len;) {
		if ((unsigned char)s[i] < 0x80) {
			i++;
			continue;
		}
		unsigned cp;
		size_t n = text_utf8_next(s + i, len - i, &cp);
		if (n == 0)
			return false;
		i += n;
	}
	return true;
}

void audit_json_str(struct audit_json *j, const char *k, const char *v)
{
	put_key(j, k);
	if (!v) {
		put(j, "null", 4);
		return;
	}
	size_t len = strlen(v);
	if (utf8_valid(v, len)) {
		put_escaped(j, v, len);
		return;
	}
	/* Each bad byte becomes three: U+FFFD. */
	char *clean = len < SIZE_MAX / 3 ? malloc(3 * len + 1) : NULL;
	if (!clean) {
		put(j, "null", 4);
		return;
	}
	size_t n = text_utf8_sanitize(v, len, clean, 3 * len + 1);
	put_escaped(j, clean, n);
	free(clean);
}

/* Two doubles equal within the rounding of the larger one. */
static bool reads_back(double a, double b)
{
	double big = fabs(a) > fabs(b) ? fabs(a) : fabs(b);
	return fabs(a - b) <= big * DBL_EPSILON;
}

void audit_json_num(struct audit_json *j, const char *k, double v)
{
	put_key(j, k);
	if (isnan(v) || isinf(v)) {
		put(j, "null", 4);
		return;
	}
	char t[32];
	int n = snprintf(t, sizeof t, "%1.15g", v);
	double back;
	if (sscanf(t, "%lg", &back) != 1 || !reads_back(back, v))
		n = snprintf(t, sizeof t, "%1.17g", v);
	if (n < 0 || (size_t)n >= sizeof t) {
		j->oom = true;	/* cannot happen: %1.17g fits */
		return;
	}
	char point = localeconv()->decimal_point[0];
	for (int i = 0; i < n; i++)
		if (t[i] == point)
			t[i] = '.';
	put(j, t, (size_t)n);
}

void audit_json_u64(struct audit_json *j, const char *k, uint64_t v)
{
	if (v >= UINT64_C(1000000000000000)) {
		audit_json_num(j, k, (double)v);
		return;
	}
	put_key(j, k);
	char t[20];
	size_t i = sizeof t;
	do {
		t[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put(j, t + i, sizeof t - i);
}

void audit_json_bool(struct audit_json *j, const char *k, bool v)
{
	put_key(j, k);
	if (v)
		put(j, "true", 4);
	else
		put(j, "false", 5);
}

void audit_json_null(struct audit_json *j, const char *k)
{
	put_key(j, k);
	put(j, "null", 4);
}

void audit_json_open(struct audit_json *j, const char *k, char bracket)
{
	put_key(j, k);
	put(j, &bracket, 1);
	j->more = false;
}

void audit_json_close(struct audit_json *j, char bracket)
{
	put(j, &bracket, 1);
	j->more = true;
}

void audit_json_begin(struct audit_json *j, const char *type, const char *ts)
{
	j->b.len = 0;
	j->more = false;
	j->oom = false;
	if (!j->b.p) {
		j->b.p = malloc(AUDIT_JSON_FIRST);
		j->b.cap = j->b.p ? AUDIT_JSON_FIRST : 0;
	}
	put(j, "{\"v\":1", 6);
	j->more = true;
	audit_json_str(j, "ts", ts);
	audit_json_str(j, "type", type);
}

bool audit_json_end(struct audit_json *j)
{
	put(j, "}\n", 2);
	return !j->oom;
}

void audit_json_free(struct audit_json *j)
{
	free(j->b.p);
	j->b.p = NULL;
	j->b.len = j->b.cap = 0;
}
