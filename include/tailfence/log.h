/*
 * log: the operator log (stderr), as opposed to the audit trail.
 * One line per event: "tailfence: LEVEL: message".
 */
#ifndef TAILFENCE_LOG_H
#define TAILFENCE_LOG_H

#include <stddef.h>

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

void log_set_level(enum log_level level);

/* Copies at most max bytes of an untrusted value into out for a message:
 * control bytes, non-ASCII, quote and backslash become \xNN, a cut value
 * ends in "...". Always NUL-terminates (outlen > 0). */
void log_quote(const char *s, size_t len, size_t max, char *out, size_t outlen);

void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#endif
