/*
 * text: the out-of-line helpers of text.h (UTF-8 checks and escapes,
 * base64, the end of an HTTP head).
 */
#include "tailfence/text.h"

#include <stdio.h>
#include <string.h>

size_t text_utf8_next(const char *s, size_t len, unsigned *cp)
{
	const unsigned char *u = (const unsigned char *)s;
	if (len == 0)
		return 0;
	unsigned c = u[0];
	size_t n;
	unsigned min;
	if (c < 0x80) {
		*cp = c;
		return 1;
	} else if ((c & 0xe0) == 0xc0) {
		n = 2;
		min = 0x80;
		c &= 0x1f;
	} else if ((c & 0xf0) == 0xe0) {
		n = 3;
		min = 0x800;
		c &= 0x0f;
	} else if ((c & 0xf8) == 0xf0) {
		n = 4;
		min = 0x10000;
		c &= 0x07;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((u[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (u[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return n;
}

size_t text_utf8_sanitize(const char *s, size_t len, char *out, size_t outlen)
{
	size_t j = 0;
	if (outlen == 0)
		return 0;
	for (size_t i = 0; i < len;) {
		unsigned cp;
		size_t n = text_utf8_next(s + i, len - i, &cp);
		const char *src = s + i;
		size_t m = n;
		if (n == 0) {
			src = "\xef\xbf\xbd";	/* U+FFFD */
			m = 3;
			n = 1;
		}
		if (j + m + 1 > outlen)
			break;
		memcpy(out + j, src, m);
		j += m;
		i += n;
	}
	out[j] = '\0';
	return j;
}

size_t text_escape_controls(const char *s, size_t len, char *out, size_t outlen)
{
	size_t j = 0;
	if (outlen == 0)
		return 0;
	for (size_t i = 0; i < len;) {
		unsigned cp = 0;
		size_t n = text_utf8_next(s + i, len - i, &cp);
		bool plain = n > 0 && cp >= 0x20 && cp != 0x7f && !(cp >= 0x80 && cp < 0xa0);
		if (plain) {
			if (j + n + 1 > outlen)
				break;
			memcpy(out + j, s + i, n);
			j += n;
			i += n;
			continue;
		}
		/* one escaped byte at a time: a C1 control's two bytes, or a
		 * byte that starts no valid sequence */
		size_t k = n ? n : 1;
		if (j + 4 * k + 1 > outlen)
			break;
		for (size_t b = 0; b < k; b++)
			j += (size_t)snprintf(out + j, outlen - j, "\\x%02x", (unsigned char)s[i + b]);
		i += k;
	}
	out[j] = '\0';
	return j;
}

static int text_b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

bool text_base64_decode(const char *in, size_t len, unsigned char *out, size_t cap,
			size_t *outlen)
{
	size_t pad = 0;
	while (pad < 2 && len > pad && in[len - 1 - pad] == '=')
		pad++;
	if (pad && len % 4)
		return false;
	size_t data = len - pad;
	if (data % 4 == 1)
		return false;
	size_t n = 0;
	unsigned acc = 0, bits = 0;
	for (size_t i = 0; i < data; i++) {
		int v = text_b64val(in[i]);
		if (v < 0)
			return false;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n == cap)
				return false;
			out[n++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* Leftover bits must be zero: one spelling per byte string. */
	if (acc != 0)
		return false;
	*outlen = n;
	return true;
}

size_t text_http_head_end(const char *buf, size_t len, size_t from)
{
	/* Step back so that a line end split across two scans is seen. */
	size_t i = from > 3 ? from - 3 : 0;
	for (; i < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (i + 1 < len && buf[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

bool text_port_parse(const char *s, size_t n, uint16_t *port)
{
	unsigned v = 0;
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!text_is_digit(s[i]))
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
		if (v > 65535)
			return false;
	}
	if (v == 0)
		return false;
	*port = (uint16_t)v;
	return true;
}

static enum text_hostport_error port_of(const char *s, size_t n, uint16_t *port)
{
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!text_is_digit(s[i]))
			return TEXT_HP_PORT_NOT_DECIMAL;
		v = v * 10 + (unsigned)(s[i] - '0');
		if (v > 65535)
			return TEXT_HP_PORT_TOO_LARGE;
	}
	if (v == 0)
		return TEXT_HP_PORT_ZERO;
	*port = (uint16_t)v;
	return TEXT_HP_OK;
}

enum text_hostport_error text_hostport_split(const char *s, size_t n, bool port_optional,
					     struct text_hostport *out)
{
	const char *rest;	/* after the host: "" or ":PORT" */
	memset(out, 0, sizeof *out);
	if (n > 0 && s[0] == '[') {
		const char *rb = memchr(s, ']', n);
		if (!rb)
			return TEXT_HP_NO_CLOSE_BRACKET;
		out->host = s + 1;
		out->host_len = (size_t)(rb - s) - 1;
		out->bracketed = true;
		rest = rb + 1;
		if (rest < s + n && *rest != ':')
			return TEXT_HP_AFTER_BRACKET;
	} else {
		const char *colon = memchr(s, ':', n);
		if (colon && memchr(colon + 1, ':', (size_t)(s + n - colon - 1)))
			return TEXT_HP_UNBRACKETED_V6;
		out->host = s;
		out->host_len = colon ? (size_t)(colon - s) : n;
		rest = s + out->host_len;
	}
	if (out->host_len == 0)
		return TEXT_HP_EMPTY_HOST;
	size_t left = (size_t)(s + n - rest);
	if (left == 0)
		return port_optional ? TEXT_HP_OK : TEXT_HP_NO_PORT;
	if (left == 1)	/* ":" alone */
		return port_optional ? TEXT_HP_OK : TEXT_HP_EMPTY_PORT;
	enum text_hostport_error e = port_of(rest + 1, left - 1, &out->port);
	out->has_port = e == TEXT_HP_OK;
	return e;
}

const char *text_hostport_why(enum text_hostport_error e)
{
	switch (e) {
	case TEXT_HP_OK: return "is fine";
	case TEXT_HP_EMPTY_HOST: return "has an empty host";
	case TEXT_HP_NO_CLOSE_BRACKET: return "has \"[\" without \"]\"";
	case TEXT_HP_AFTER_BRACKET: return "has unexpected characters after \"]\"";
	case TEXT_HP_UNBRACKETED_V6:
		return "is not HOST:PORT; put IPv6 addresses in brackets ([::1]:1080)";
	case TEXT_HP_NO_PORT: return "needs a port (HOST:PORT)";
	case TEXT_HP_EMPTY_PORT: return "has an empty port (HOST:PORT)";
	case TEXT_HP_PORT_NOT_DECIMAL:
	case TEXT_HP_PORT_TOO_LARGE:
	case TEXT_HP_PORT_ZERO:
		return "has a bad port; expected HOST:PORT with a port from 1 to 65535";
	}
	return "is not HOST:PORT";
}
