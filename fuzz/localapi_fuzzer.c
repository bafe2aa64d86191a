/*
 * localapi_fuzzer: the LocalAPI response parsers over arbitrary bytes.
 * Byte 0 picks a split point for the body; the rest is what tailscaled
 * would send. Checks: consumed never exceeds what was given; the decoded
 * body is the same whether the bytes after the head arrive whole, split
 * in two, or one at a time; it never exceeds what was sent.
 */
#include "tailfence/localapi.h"

#include <stdlib.h>
#include <string.h>

/* Decodes body[0..len) in pieces of `step` (0: whole) into out. Returns the
 * final step. */
static enum localapi_step decode(const struct localapi_response *head, const char *body,
				 size_t len, size_t step, char *out, size_t *outlen)
{
	struct localapi_response r = *head;
	size_t pos = 0;
	enum localapi_step st = LOCALAPI_NEED_MORE;
	*outlen = 0;
	while (pos < len && st == LOCALAPI_NEED_MORE) {
		size_t n = step ? step : len - pos;
		if (n > len - pos)
			n = len - pos;
		size_t off = 0;
		while (off < n && st == LOCALAPI_NEED_MORE) {
			size_t used;
			const char *data;
			size_t dlen;
			st = localapi_body_feed(&r, body + pos + off, n - off, &used, &data, &dlen);
			if (used > n - off || dlen > used)
				abort();
			if (dlen && (data < body + pos + off || data + dlen > body + pos + n))
				abort();
			if (dlen)
				memcpy(out + *outlen, data, dlen);
			*outlen += dlen;
			off += used;
			if (used == 0 && dlen == 0)
				break;
		}
		pos += off;
		if (off < n && st == LOCALAPI_NEED_MORE)
			break;	/* the decoder stopped early: only at an end */
	}
	return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t split = data[0];
	const char *in = (const char *)data + 1;
	size_t len = size - 1;

	struct localapi_response r;
	size_t used;
	localapi_response_init(&r);
	size_t end = localapi_head_end(in, len, 0);
	enum localapi_step st = localapi_parse_head(&r, in, len, &used);
	if (st == LOCALAPI_NEED_MORE && end != 0 && end <= 16384)
		abort();
	if (st != LOCALAPI_DONE)
		return 0;
	if (used != end || used > len)
		abort();
	const char *body = in + used;
	size_t blen = len - used;
	char *a = malloc(blen + 1), *b = malloc(blen + 1), *c = malloc(blen + 1);
	size_t na, nb, nc;
	enum localapi_step sa = decode(&r, body, blen, 0, a, &na);
	enum localapi_step sb = decode(&r, body, blen, split ? split : 1, b, &nb);
	enum localapi_step sc = decode(&r, body, blen, 1, c, &nc);
	if (na > blen || sa != sb || sa != sc || na != nb || na != nc || memcmp(a, b, na) ||
	    memcmp(a, c, na))
		abort();
	free(a);
	free(b);
	free(c);
	return 0;
}
