/*
 * text: locale-free character classes and small byte-string helpers.
 *
 * Every parser in tailfence reads bytes from the network or from files
 * written by people; <ctype.h> depends on the locale and is undefined for
 * negative chars, so the parsers use these instead. Pure and inline.
 */
#ifndef TAILFENCE_TEXT_H
#define TAILFENCE_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline bool text_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static inline bool text_is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool text_is_alnum(char c)
{
	return text_is_digit(c) || text_is_alpha(c);
}

static inline bool text_is_hex(char c)
{
	return text_is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Space, tab, newline, vertical tab, form feed, carriage return. */
static inline bool text_is_space(char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

/* C0 controls and DEL. */
static inline bool text_is_ctl(char c)
{
	return (unsigned char)c < 0x20 || c == 0x7f;
}

static inline char text_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* True when a[0..n) and b[0..n) are equal ignoring ASCII case. */
static inline bool text_ieq(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (text_lower(a[i]) != text_lower(b[i]))
			return false;
	return true;
}

/* Offset just past the blank line that ends an HTTP head in buf[0..len)
 * (CRLF or bare LF line ends), searching from `from` (bytes before it are
 * known not to end the head), or 0 when it has not ended yet. Scanning a
 * growing buffer from where the last scan stopped costs linear time. */
size_t text_http_head_end(const char *buf, size_t len, size_t from);

/* Length of the well-formed UTF-8 sequence at s[0..len) (1 to 4), its
 * code point in *cp; 0 when the bytes there are not one (overlong forms,
 * surrogates, past U+10FFFF, cut short, stray continuation bytes). */
size_t text_utf8_next(const char *s, size_t len, unsigned *cp);

/* Copies s[0..len) into out as valid UTF-8: each byte that is not part of
 * a well-formed sequence becomes U+FFFD. NUL-terminates; returns the
 * length written (out is cut at a character boundary when too small). */
size_t text_utf8_sanitize(const char *s, size_t len, char *out, size_t outlen);

/* Copies s[0..len) into out for a terminal or a line-oriented log: C0
 * controls, DEL, C1 controls and bytes that are not UTF-8 become \xHH
 * (escape sequences, carriage returns and newlines cannot act);
 * printable UTF-8 stays. NUL-terminates; returns the length written. */
size_t text_escape_controls(const char *s, size_t len, char *out, size_t outlen);

/* A port: decimal digits only (leading zeros allowed), 1 to 65535. */
bool text_port_parse(const char *s, size_t n, uint16_t *port);

/* What text_hostport_split found wrong, if anything. */
enum text_hostport_error {
	TEXT_HP_OK,
	TEXT_HP_EMPTY_HOST,		/* "", ":80", "[]:80" */
	TEXT_HP_NO_CLOSE_BRACKET,	/* "[::1:80" */
	TEXT_HP_AFTER_BRACKET,		/* "[::1]x" */
	TEXT_HP_UNBRACKETED_V6,		/* "::1:80": two colons without brackets */
	TEXT_HP_NO_PORT,		/* "host", port required */
	TEXT_HP_EMPTY_PORT,		/* "host:", port required */
	TEXT_HP_PORT_NOT_DECIMAL,
	TEXT_HP_PORT_TOO_LARGE,
	TEXT_HP_PORT_ZERO,
};

struct text_hostport {
	const char *host;		/* into the input, without brackets */
	size_t host_len;
	bool bracketed;			/* the host was in [ ] */
	bool has_port;			/* a port was given; else port is 0 */
	uint16_t port;
};

/* The one host:port splitter: "HOST:PORT" or "[HOST]:PORT" in s[0..n) (a
 * host holding a colon must be in brackets). With port_optional, "HOST",
 * "HOST:" and "[HOST]" are accepted without a port. The host is not
 * checked: callers decide whether it must be an address or may be a name.
 * Pure. */
enum text_hostport_error text_hostport_split(const char *s, size_t n, bool port_optional,
					     struct text_hostport *out);

/* "has an empty host", "needs a port (HOST:PORT)", ...: to follow the value
 * in an error message. */
const char *text_hostport_why(enum text_hostport_error e);

/* Decodes standard base64 (RFC 4648 alphabet, '=' padding optional but
 * only at the end, no whitespace) from in[0..len) into out (at most cap
 * bytes). Returns false on any other byte, a bad length, non-zero
 * leftover bits or too small a buffer. Pure. */
bool text_base64_decode(const char *in, size_t len, unsigned char *out, size_t cap,
			size_t *outlen);

/* Length of the decoded form of len base64 characters, at most. */
static inline size_t text_base64_max(size_t len)
{
	return len / 4 * 3 + 3;
}

#endif
