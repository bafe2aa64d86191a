/* log: the operator log on stderr. */
#include "tailfence/log.h"

#include "tailfence/text.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static enum log_level current = LOG_LEVEL_INFO;

static const char *const names[] = { "error", "warn", "info", "debug" };

void log_set_level(enum log_level level) { current = level; }

void log_quote(const char *s, size_t len, size_t max, char *out, size_t outlen)
{
	size_t n = len > max ? max : len;
	size_t j = 0;
	for (size_t i = 0; i < n && j + 5 < outlen; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
			j += (size_t)snprintf(out + j, outlen - j, "\\x%02x", c);
		else
			out[j++] = (char)c;
	}
	if (n < len && j + 4 < outlen) {
		memcpy(out + j, "...", 3);
		j += 3;
	}
	out[j < outlen ? j : outlen - 1] = '\0';
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (level > current)
		return;
	char line[1024], safe[4 * sizeof line];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	/* Whatever a message quotes, it stays one line: a name carrying a
	 * newline or an escape sequence cannot forge a line (stderr is merged
	 * with the audit trail on stdout in containers) or drive a terminal. */
	size_t len = n < 0 ? 0 : (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
	text_escape_controls(line, len, safe, sizeof safe);
	/* One write per line so concurrent writers do not interleave. */
	fprintf(stderr, "tailfence: %s: %s\n", names[level], safe);
}
