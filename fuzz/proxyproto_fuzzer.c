/*
 * proxyproto_fuzzer: the PROXY protocol header parser over arbitrary bytes.
 * Byte 0: bits 0-1 pick the versions accepted (v1, v2, both); the other
 * bits pick an extra prefix length to check. The rest is what the peer
 * sends. Checks: consumed never exceeds what was given and is 0 unless
 * DONE; the answer does not depend on bytes past the header (a prefix
 * that holds the header gives the same header, one byte less needs
 * more); once a prefix is an error every longer one is; a header that
 * parses has a source address of the family it says, a version the
 * listener accepts, and encodes back to the same bytes (v1 TCP4 lines and
 * v2 headers without a mapped address).
 */
#include "tailfence/proxyproto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void same(const struct proxyproto_header *a, const struct proxyproto_header *b)
{
	if (a->version != b->version || a->src_port != b->src_port ||
	    a->dst_port != b->dst_port || !cidr_addr_equal(&a->src, &b->src) ||
	    !cidr_addr_equal(&a->dst, &b->dst) || a->tlv_bytes != b->tlv_bytes)
		abort();
}

/* Re-encodes what was parsed; true when it matches the input's header. */
static bool reencodes(const uint8_t *in, size_t used, const struct proxyproto_header *h)
{
	if (h->version == 1) {
		char line[256], s[64], d[64];
		if (h->src.family != AF_INET || h->dst.family != AF_INET)
			return true;	/* IPv6 text has many spellings */
		cidr_addr_format(&h->src, s, sizeof s);
		cidr_addr_format(&h->dst, d, sizeof d);
		int n = snprintf(line, sizeof line, "PROXY TCP4 %s %s %u %u\r\n", s, d,
				 h->src_port, h->dst_port);
		return (size_t)n == used && memcmp(line, in, used) == 0;
	}
	unsigned af = in[13] >> 4;
	size_t al = af == 1 ? 4 : 16;
	if ((af == 1) != (h->src.family == AF_INET) || (af == 1) != (h->dst.family == AF_INET))
		return true;	/* a mapped address was normalised */
	if (memcmp(in + 16, h->src.b, al) || memcmp(in + 16 + al, h->dst.b, al))
		return false;
	const uint8_t *p = in + 16 + 2 * al;
	return ((p[0] << 8) | p[1]) == h->src_port && ((p[2] << 8) | p[3]) == h->dst_port &&
	       used == 16 + 2 * al + 4 + h->tlv_bytes;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned versions = 1u + data[0] % 3u;
	size_t extra = data[0] >> 2;
	const uint8_t *in = data + 1;
	size_t len = size - 1;

	struct proxyproto_header h, h2;
	size_t used = 12345, used2 = 12345;
	enum proxyproto_step st = proxyproto_parse(in, len, versions, &h, &used);
	if (proxyproto_parse(in, len, versions, &h2, &used2) != st || used != used2)
		abort();
	if (st != PROXYPROTO_DONE && used != 0)
		abort();
	if (st == PROXYPROTO_ERROR && (h.why[0] == '\0' || !memchr(h.why, '\0', sizeof h.why)))
		abort();
	if (st == PROXYPROTO_DONE) {
		same(&h, &h2);
		if (used == 0 || used > len || used > PROXYPROTO_MAX)
			abort();
		if (!(versions & (h.version == 1 ? PROXYPROTO_V1 : PROXYPROTO_V2)))
			abort();
		if (h.src.family != AF_INET && h.src.family != AF_INET6)
			abort();
		if (h.version == 1 && used > PROXYPROTO_V1_MAX)
			abort();
		if (!reencodes(in, used, &h))
			abort();
		/* Bytes after the header change nothing; one byte less is not enough. */
		struct proxyproto_header p;
		size_t u;
		if (proxyproto_parse(in, used, versions, &p, &u) != PROXYPROTO_DONE || u != used)
			abort();
		same(&h, &p);
		if (proxyproto_parse(in, used - 1, versions, &p, &u) != PROXYPROTO_NEED_MORE || u)
			abort();
	}
	/* A shorter prefix: never an answer the whole input contradicts. */
	size_t k = extra < len ? extra : len / 2;
	struct proxyproto_header p;
	size_t u;
	enum proxyproto_step sp = proxyproto_parse(in, k, versions, &p, &u);
	if (sp == PROXYPROTO_ERROR && st != PROXYPROTO_ERROR)
		abort();
	if (sp == PROXYPROTO_DONE && (st != PROXYPROTO_DONE || u != used))
		abort();
	if (sp == PROXYPROTO_NEED_MORE && u != 0)
		abort();
	return 0;
}
