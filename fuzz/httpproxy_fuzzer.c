/*
 * httpproxy_fuzzer: libFuzzer target for the HTTP proxy request-head
 * parser, the request-body framing and the upstream CONNECT response
 * parser.
 *
 * Input: byte 0 picks the mode and the head limit, bytes 1-2 a split point,
 * the rest is what the peer sends. Invariants checked:
 *  - consumed <= len, and <= the head limit; NEED_MORE consumes nothing;
 *  - a prefix of the input is NEED_MORE or decides exactly as the whole;
 *  - a DONE head ends in LF; the origin head is a well-formed origin-form
 *    head (CRLF only, no NUL, one Host, ends in "Connection: close") that
 *    the parser itself reads as a head and refuses with 405 (not a proxy
 *    request), with the same framing;
 *  - the body after the head is framed the same whether fed whole, split
 *    at the chosen point, or byte by byte.
 */
#include "tailfence/httpproxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const size_t limits[] = { 16, 64, 256, 1024, 8192, 65536 };

struct res {
	enum httpproxy_step st;
	int status;
	const char *why;
	size_t consumed;
};

static struct res parse(const char *buf, size_t len, size_t max, struct httpproxy_request *r)
{
	struct res x;
	size_t n = 999999;
	x.st = httpproxy_parse_request(r, buf, len, max, &n);
	x.consumed = n;
	x.status = r->status;
	x.why = r->why;
	if (n > len)
		abort();
	if (x.st == HTTPPROXY_NEED_MORE && n != 0)
		abort();
	if (x.st == HTTPPROXY_ERROR && (!x.why || x.status < 400 || x.status > 599))
		abort();
	if (x.st == HTTPPROXY_DONE && (n == 0 || n > max || buf[n - 1] != '\n'))
		abort();
	return x;
}

static void check_origin_head(const struct httpproxy_request *r)
{
	const char *h = r->origin_head;
	size_t n = r->origin_head_len;
	if (!h || n < 4 || memcmp(h + n - 4, "\r\n\r\n", 4) != 0)
		abort();
	if (memchr(h, 0, n))
		abort();
	for (size_t i = 0; i < n; i++) {
		if (h[i] == '\r' && (i + 1 == n || h[i + 1] != '\n'))
			abort();
		if (h[i] == '\n' && (i == 0 || h[i - 1] != '\r'))
			abort();
	}
	static const char close[] = "\r\nConnection: close\r\n\r\n";
	if (n < sizeof close - 1 || memcmp(h + n - (sizeof close - 1), close, sizeof close - 1))
		abort();
	size_t ml = strlen(r->method);
	if (n < ml + 2 || memcmp(h, r->method, ml) != 0 || h[ml] != ' ' ||
	    (h[ml + 1] != '/' && h[ml + 1] != '*'))
		abort();

	/* Reparsed, it is a valid head but not a proxy request. */
	struct httpproxy_request o;
	size_t used;
	enum httpproxy_step st = httpproxy_parse_request(&o, h, n, n, &used);
	if (st != HTTPPROXY_ERROR || o.status != 405)
		abort();
	httpproxy_request_clear(&o);

	/* With an absolute-form request line instead, its headers parse and
	 * give the same framing and no credentials (Proxy-* are gone). */
	const char *eol = memchr(h, '\n', n);
	size_t rest = n - (size_t)(eol + 1 - h);
	char *again = malloc(rest + 64);
	int pre = snprintf(again, 64, "GET http://a/ HTTP/1.%d\r\n", r->minor_version);
	memcpy(again + pre, eol + 1, rest);
	st = httpproxy_parse_request(&o, again, (size_t)pre + rest, (size_t)pre + rest, &used);
	if (st != HTTPPROXY_DONE || o.body != r->body || o.content_length != r->content_length ||
	    o.have_credentials || used != (size_t)pre + rest)
		abort();
	httpproxy_request_clear(&o);
	free(again);
}

/* Feeds body bytes in the given pieces; returns step and total consumed. */
static enum httpproxy_step body_run(const struct httpproxy_request *r, const char *buf,
				    size_t len, size_t step, size_t *total)
{
	struct httpproxy_body b;
	httpproxy_body_init(&b, r);
	size_t off = 0, avail = 0;
	enum httpproxy_step st = HTTPPROXY_NEED_MORE;
	*total = 0;
	while (avail < len || off == 0) {
		avail = avail + step > len ? len : avail + step;
		size_t n = 999999;
		st = httpproxy_body_feed(&b, buf + off, avail - off, &n);
		if (n > avail - off)
			abort();
		off += n;
		if (st != HTTPPROXY_NEED_MORE)
			break;
		if (r->body != HTTPPROXY_BODY_NONE && off != avail)
			abort();	/* NEED_MORE takes everything offered */
		if (avail == len)
			break;
	}
	*total = off;
	return st;
}

static void fuzz_request(const char *in, size_t len, size_t max, size_t split)
{
	struct httpproxy_request r;
	struct res whole = parse(in, len, max, &r);
	if (whole.st == HTTPPROXY_DONE) {
		if (r.kind == HTTPPROXY_FORWARD) {
			check_origin_head(&r);
			if (r.body == HTTPPROXY_BODY_LENGTH && r.content_length == 0)
				abort();
		} else if (r.origin_head) {
			abort();
		}
		if (strnlen(r.host, sizeof r.host) == 0 || r.port == 0)
			abort();
		if (r.host_is_addr != (r.addr.family != 0))
			abort();
		/* Body framing: whole, split, byte by byte agree. */
		const char *body = in + whole.consumed;
		size_t blen = len - whole.consumed;
		size_t t1, t2, t3;
		enum httpproxy_step s1 = body_run(&r, body, blen, blen ? blen : 1, &t1);
		size_t sp = split % (blen + 1);
		enum httpproxy_step s2 = body_run(&r, body, blen, sp ? sp : 1, &t2);
		enum httpproxy_step s3 = body_run(&r, body, blen, 1, &t3);
		if (s1 != s2 || s1 != s3)
			abort();
		if (s1 != HTTPPROXY_ERROR && (t1 != t2 || t1 != t3))
			abort();
	}

	/* A prefix either needs more or decides exactly as the whole. */
	size_t k = split % (len + 1);
	struct httpproxy_request p;
	char *pre = malloc(k ? k : 1);
	memcpy(pre, in, k);
	struct res part = parse(pre, k, max, &p);
	if (part.st != HTTPPROXY_NEED_MORE &&
	    (part.st != whole.st || part.status != whole.status || part.why != whole.why ||
	     part.consumed != whole.consumed))
		abort();
	if (part.st == HTTPPROXY_DONE && (p.origin_head_len != r.origin_head_len ||
					  (p.origin_head && memcmp(p.origin_head, r.origin_head,
								   p.origin_head_len))))
		abort();
	httpproxy_request_clear(&p);
	free(pre);
	httpproxy_request_clear(&r);
}

static void fuzz_connect_response(const char *in, size_t len, size_t max, size_t split)
{
	size_t n = 999999;
	int status = -1;
	enum httpproxy_step st = httpproxy_parse_connect_response(in, len, max, &n, &status);
	if (st == HTTPPROXY_DONE && (n == 0 || n > len || n > max || in[n - 1] != '\n' ||
				     status < 0 || status > 999))
		abort();
	if (st != HTTPPROXY_DONE && n != 0)
		abort();
	size_t k = split % (len + 1);
	size_t pn = 999999;
	int ps = -1;
	char *pre = malloc(k ? k : 1);
	memcpy(pre, in, k);
	enum httpproxy_step pst = httpproxy_parse_connect_response(pre, k, max, &pn, &ps);
	free(pre);
	if (pst != HTTPPROXY_NEED_MORE && (pst != st || (st == HTTPPROXY_DONE &&
							 (pn != n || ps != status))))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	uint8_t mode = data[0];
	size_t split = (size_t)(data[1] << 8 | data[2]);
	size_t max = limits[(mode >> 1) % (sizeof limits / sizeof limits[0])];
	size -= 3;
	char *in = malloc(size ? size : 1);
	memcpy(in, data + 3, size);
	if (mode & 1)
		fuzz_connect_response(in, size, max, split);
	else
		fuzz_request(in, size, max, split);
	free(in);
	return 0;
}
