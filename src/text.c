/*
 * text: the out-of-line helpers of text.h (base64, the end of an HTTP head).
 */
#include "tailfence/text.h"

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
