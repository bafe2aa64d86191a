/*
 * hostname: validation and the comparison form of host names.
 */
#include "tailfence/hostname.h"

#include <string.h>

#include "tailfence/text.h"

const char *hostname_problem(const char *s, size_t len)
{
	if (len && s[len - 1] == '.')
		len--;
	if (len == 0)
		return "is empty";
	if (len > 253)
		return "is longer than 253 bytes";
	if (memchr(s, '\0', len))
		return "contains a NUL byte";
	size_t label = 0;
	bool numeric = true;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '.') {
			if (label == 0)
				return "has an empty label";
			label = 0;
			continue;
		}
		if (!text_is_alnum(c) && c != '-' && c != '_')
			return "has a character other than letters, digits, '-', '_' and '.'";
		if (++label > 63)
			return "has a label longer than 63 bytes";
		numeric = numeric && text_is_digit(c);
	}
	if (label == 0)
		return "has an empty label";
	if (numeric)
		return "is neither a host name nor an IPv4 address in dotted-quad form";
	return NULL;
}

bool hostname_normalize(const char *s, size_t len, char *out, size_t outlen)
{
	if (hostname_problem(s, len))
		return false;
	if (s[len - 1] == '.')
		len--;
	if (len + 1 > outlen)
		return false;
	for (size_t i = 0; i < len; i++)
		out[i] = text_lower(s[i]);
	out[len] = '\0';
	return true;
}
