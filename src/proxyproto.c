/*
 * proxyproto: the PROXY protocol header, versions 1 and 2 (see
 * include/tailfence/proxyproto.h). Pure.
 *
 * Version 2 (binary): a 12-byte signature, a version/command byte, a
 * family/transport byte, a 16-bit length, then the addresses and ports
 * (12 bytes for IPv4, 36 for IPv6) and optional TLVs. Version 1 (text):
 * "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n", at most 107 bytes.
 */
#include "tailfence/proxyproto.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tailfence/text.h"

static const uint8_t v2_sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
				     0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };
static const char v1_sig[] = "PROXY ";

enum { V2_CMD_LOCAL = 0, V2_CMD_PROXY = 1 };
enum { V2_AF_UNSPEC = 0, V2_AF_INET = 1, V2_AF_INET6 = 2, V2_AF_UNIX = 3 };
enum { V2_TP_UNSPEC = 0, V2_TP_STREAM = 1, V2_TP_DGRAM = 2 };
#define V2_TLV_CRC32C 0x03

__attribute__((format(printf, 2, 3)))
static enum proxyproto_step fail(struct proxyproto_header *h, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(h->why, sizeof h->why, fmt, ap);
	va_end(ap);
	return PROXYPROTO_ERROR;
}

uint32_t proxyproto_crc32c(const uint8_t *buf, size_t len)
{
	uint32_t crc = 0xffffffffu;
	for (size_t i = 0; i < len; i++) {
		crc ^= buf[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
	}
	return ~crc;
}

/* How many of buf's first bytes match sig (at most n). */
static size_t prefix_match(const uint8_t *buf, size_t len, const uint8_t *sig, size_t n)
{
	size_t k = len < n ? len : n;
	for (size_t i = 0; i < k; i++)
		if (buf[i] != sig[i])
			return i;
	return k;
}

/* What a connection that starts without a header seems to be: a hint for
 * the operator (a client that reached the listener around tailscale
 * serve, or serve without --proxy-protocol). */
static const char *guess(const uint8_t *b, size_t len)
{
	if (len >= 2 && b[0] == 0x16 && b[1] == 0x03)
		return "a TLS handshake";
	if (len >= 4 && memcmp(b, "SSH-", 4) == 0)
		return "an SSH greeting";
	if (len >= 8 && b[0] == 0 && b[1] == 0 &&
	    (memcmp(b + 4, "\x04\xd2\x16\x2f", 4) == 0 || memcmp(b + 4, "\x04\xd2\x16\x30", 4) == 0 ||
	     memcmp(b + 4, "\x00\x03\x00\x00", 4) == 0))
		return "a PostgreSQL client";
	size_t i = 0;
	while (i < len && i < 8 && b[i] >= 'A' && b[i] <= 'Z')
		i++;
	if (i >= 3 && i < len && b[i] == ' ')
		return "an HTTP request";
	return NULL;
}

static enum proxyproto_step no_header(struct proxyproto_header *h, const uint8_t *b,
				      size_t len)
{
	char hex[3 * 8 + 1] = "";
	size_t n = len < 8 ? len : 8, at = 0;
	for (size_t i = 0; i < n; i++)
		at += (size_t)snprintf(hex + at, sizeof hex - at, "%s%02x", i ? " " : "", b[i]);
	const char *g = guess(b, len);
	return fail(h, "no PROXY protocol header: the connection starts with %s%s%s%s", hex,
		    len > 8 ? " ..." : "", g ? ", like " : "", g ? g : "");
}

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

/* ------------------------------------------------------------ version 2 */

static enum proxyproto_step parse_v2(const uint8_t *buf, size_t len,
				     struct proxyproto_header *h, size_t *consumed)
{
	/* Check each field as soon as it is there, so garbage is refused
	 * before the whole length arrives. */
	if (len >= 13) {
		unsigned ver = buf[12] >> 4, cmd = buf[12] & 0x0f;
		if (ver != 2)
			return fail(h, "PROXY v2 header with version %u in its version/command "
				    "byte (0x%02x); expected 2", ver, buf[12]);
		if (cmd == V2_CMD_LOCAL)
			return fail(h, "PROXY v2 LOCAL command: it names no client (a health "
				    "check, not a forwarded connection)");
		if (cmd != V2_CMD_PROXY)
			return fail(h, "PROXY v2 header with unknown command %u", cmd);
	}
	if (len >= 14) {
		unsigned af = buf[13] >> 4, tp = buf[13] & 0x0f;
		if (af == V2_AF_UNSPEC)
			return fail(h, "PROXY v2 header with an unspecified address family: it "
				    "names no client");
		if (af == V2_AF_UNIX)
			return fail(h, "PROXY v2 header for a UNIX socket: it names no tailnet "
				    "address");
		if (af != V2_AF_INET && af != V2_AF_INET6)
			return fail(h, "PROXY v2 header with unknown address family %u", af);
		if (tp != V2_TP_STREAM)
			return fail(h, "PROXY v2 header for %s, not TCP",
				    tp == V2_TP_DGRAM ? "UDP" : "an unspecified transport");
	}
	if (len < 16)
		return PROXYPROTO_NEED_MORE;
	size_t body = be16(buf + 14);
	size_t alen = (buf[13] >> 4) == V2_AF_INET ? 12 : 36;
	if (body > PROXYPROTO_V2_MAX_BODY)
		return fail(h, "PROXY v2 header of %zu bytes is longer than tailfence accepts "
			    "(%d)", 16 + body, 16 + PROXYPROTO_V2_MAX_BODY);
	if (body < alen)
		return fail(h, "PROXY v2 header too short for its address family: %zu bytes "
			    "of addresses, %zu needed", body, alen);
	if (len < 16 + body)
		return PROXYPROTO_NEED_MORE;

	const uint8_t *a = buf + 16;
	h->src.family = h->dst.family = alen == 12 ? AF_INET : AF_INET6;
	size_t al = alen == 12 ? 4 : 16;
	memcpy(h->src.b, a, al);
	memcpy(h->dst.b, a + al, al);
	h->src_port = be16(a + 2 * al);
	h->dst_port = be16(a + 2 * al + 2);
	cidr_addr_normalize(&h->src);
	cidr_addr_normalize(&h->dst);

	/* TLVs: framing only, and the CRC32C when one is there. */
	size_t off = 16 + alen, end = 16 + body;
	while (off < end) {
		if (end - off < 3)
			return fail(h, "PROXY v2 header ends in a truncated TLV (%zu bytes)",
				    end - off);
		unsigned type = buf[off];
		size_t vlen = be16(buf + off + 1);
		if (vlen > end - off - 3)
			return fail(h, "PROXY v2 TLV 0x%02x of %zu bytes runs past the header's "
				    "end", type, vlen);
		if (type == V2_TLV_CRC32C) {
			if (vlen != 4)
				return fail(h, "PROXY v2 CRC32C TLV of %zu bytes; expected 4", vlen);
			uint8_t tmp[PROXYPROTO_MAX];
			memcpy(tmp, buf, end);
			memset(tmp + off + 3, 0, 4);
			uint32_t want = (uint32_t)buf[off + 3] << 24 | (uint32_t)buf[off + 4] << 16 |
					(uint32_t)buf[off + 5] << 8 | buf[off + 6];
			uint32_t got = proxyproto_crc32c(tmp, end);
			if (got != want)
				return fail(h, "PROXY v2 header fails its CRC32C check (0x%08x, "
					    "computed 0x%08x)", want, got);
			h->crc_checked = true;
		}
		off += 3 + vlen;
	}
	h->version = 2;
	h->tlv_bytes = body - alen;
	*consumed = end;
	return PROXYPROTO_DONE;
}

/* ------------------------------------------------------------ version 1 */

/* A port: 0 or 1-5 digits without a leading zero, at most 65535. */
static bool v1_port(const char *s, size_t n, uint16_t *out)
{
	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return false;
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!text_is_digit(s[i]))
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 65535)
		return false;
	*out = (uint16_t)v;
	return true;
}

static bool v1_addr(const char *s, size_t n, bool v6, struct cidr_addr *out)
{
	bool colon = memchr(s, ':', n) != NULL;
	if (colon != v6 || !cidr_addr_parsen(s, n, out))
		return false;
	/* TCP4 must be a dotted quad; TCP6 an IPv6 literal (a mapped IPv4 one
	 * is normalised, which is what every match expects). */
	return v6 || out->family == AF_INET;
}

static enum proxyproto_step parse_v1(const uint8_t *buf, size_t len,
				     struct proxyproto_header *h, size_t *consumed)
{
	const char *s = (const char *)buf;
	size_t look = len < PROXYPROTO_V1_MAX ? len : PROXYPROTO_V1_MAX;
	size_t eol = 0;
	for (size_t i = 0; i < look; i++) {
		if (s[i] == '\r') {
			if (i + 1 >= PROXYPROTO_V1_MAX)
				return fail(h, "PROXY v1 line has no CRLF within %d bytes",
					    PROXYPROTO_V1_MAX);
			if (i + 1 == len)
				return PROXYPROTO_NEED_MORE;
			if (s[i + 1] != '\n')
				return fail(h, "PROXY v1 line has a CR not followed by LF");
			eol = i;
			break;
		}
		if (s[i] == '\n')
			return fail(h, "PROXY v1 line ends in a bare LF; expected CRLF");
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return fail(h, "PROXY v1 line has a byte 0x%02x that is not printable "
				    "ASCII", (unsigned char)s[i]);
	}
	if (!eol) {
		if (len >= PROXYPROTO_V1_MAX)
			return fail(h, "PROXY v1 line has no CRLF within %d bytes",
				    PROXYPROTO_V1_MAX);
		return PROXYPROTO_NEED_MORE;
	}

	/* Exactly six fields separated by single spaces. */
	const char *f[6];
	size_t fl[6], n = 0;
	for (size_t i = 0; i <= eol;) {
		size_t j = i;
		while (j < eol && s[j] != ' ')
			j++;
		if (n == 6 || j == i)
			return fail(h, "PROXY v1 line is not \"PROXY TCP4|TCP6 SRC DST SPORT "
				    "DPORT\" with single spaces");
		f[n] = s + i;
		fl[n++] = j - i;
		i = j + 1;
	}
	if (fl[1] == 7 && memcmp(f[1], "UNKNOWN", 7) == 0)
		return fail(h, "PROXY v1 UNKNOWN: it names no client");
	if (n != 6)
		return fail(h, "PROXY v1 line is not \"PROXY TCP4|TCP6 SRC DST SPORT DPORT\" "
			    "with single spaces");
	bool v6;
	if (fl[1] == 4 && memcmp(f[1], "TCP4", 4) == 0)
		v6 = false;
	else if (fl[1] == 4 && memcmp(f[1], "TCP6", 4) == 0)
		v6 = true;
	else
		return fail(h, "PROXY v1 protocol \"%.*s\"; expected TCP4 or TCP6",
			    (int)(fl[1] < 16 ? fl[1] : 16), f[1]);
	if (!v1_addr(f[2], fl[2], v6, &h->src))
		return fail(h, "PROXY v1 source \"%.*s\" is not an %s address",
			    (int)(fl[2] < 46 ? fl[2] : 46), f[2], v6 ? "IPv6" : "IPv4");
	if (!v1_addr(f[3], fl[3], v6, &h->dst))
		return fail(h, "PROXY v1 destination \"%.*s\" is not an %s address",
			    (int)(fl[3] < 46 ? fl[3] : 46), f[3], v6 ? "IPv6" : "IPv4");
	if (!v1_port(f[4], fl[4], &h->src_port))
		return fail(h, "PROXY v1 source port \"%.*s\" is not 0-65535",
			    (int)(fl[4] < 8 ? fl[4] : 8), f[4]);
	if (!v1_port(f[5], fl[5], &h->dst_port))
		return fail(h, "PROXY v1 destination port \"%.*s\" is not 0-65535",
			    (int)(fl[5] < 8 ? fl[5] : 8), f[5]);
	h->version = 1;
	*consumed = eol + 2;
	return PROXYPROTO_DONE;
}

/* ---------------------------------------------------------------- entry */

enum proxyproto_step proxyproto_parse(const uint8_t *buf, size_t len, unsigned versions,
				      struct proxyproto_header *h, size_t *consumed)
{
	memset(h, 0, sizeof *h);
	*consumed = 0;
	if (len == 0)
		return PROXYPROTO_NEED_MORE;
	size_t m2 = prefix_match(buf, len, v2_sig, sizeof v2_sig);
	size_t m1 = prefix_match(buf, len, (const uint8_t *)v1_sig, 6);
	bool is2 = m2 == (len < 12 ? len : 12), is1 = m1 == (len < 6 ? len : 6);
	if (!is1 && !is2)
		return no_header(h, buf, len);
	unsigned v = is2 ? 2 : 1;
	bool complete = v == 2 ? len >= 12 : len >= 6;
	if (!(versions & (v == 2 ? PROXYPROTO_V2 : PROXYPROTO_V1))) {
		if (!complete)
			return PROXYPROTO_NEED_MORE;
		return fail(h, "PROXY protocol version %u header, but this listener expects "
			    "version %u (tailscale serve --proxy-protocol %u)", v, 3 - v, 3 - v);
	}
	if (!complete)
		return PROXYPROTO_NEED_MORE;
	enum proxyproto_step st = v == 2 ? parse_v2(buf, len, h, consumed)
					 : parse_v1(buf, len, h, consumed);
	if (st != PROXYPROTO_DONE) {
		*consumed = 0;
		if (st == PROXYPROTO_NEED_MORE) {
			/* keep nothing of a half-parsed header */
			memset(&h->src, 0, sizeof h->src);
			memset(&h->dst, 0, sizeof h->dst);
			h->src_port = h->dst_port = 0;
		}
	}
	return st;
}
