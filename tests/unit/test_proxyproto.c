/*
 * test_proxyproto: the PROXY protocol header parser, table-driven. Every
 * case is also fed as a growing prefix, one byte at a time: a header is
 * never DONE before its last byte, never consumes on NEED_MORE, and once a
 * prefix is an error every longer one is too.
 */
#include "tailfence/proxyproto.h"

#include <string.h>

#include "check.h"

#define SIG "\r\n\r\n\0\r\nQUIT\n"

struct v2spec {
	unsigned char ver_cmd, fam;
	int len;		/* -1: computed from the rest */
	const char *addrs;	/* raw address block */
	size_t addrs_len;
	const char *tlvs;
	size_t tlvs_len;
	const char *after;	/* payload after the header */
};

/* Builds a version 2 header into out; returns its length with payload. */
static size_t v2(const struct v2spec *s, unsigned char *out)
{
	size_t n = 0;
	memcpy(out, SIG, 12);
	n = 12;
	out[n++] = s->ver_cmd;
	out[n++] = s->fam;
	size_t body = s->addrs_len + s->tlvs_len;
	int len = s->len >= 0 ? s->len : (int)body;
	out[n++] = (unsigned char)(len >> 8);
	out[n++] = (unsigned char)len;
	memcpy(out + n, s->addrs, s->addrs_len);
	n += s->addrs_len;
	memcpy(out + n, s->tlvs, s->tlvs_len);
	n += s->tlvs_len;
	if (s->after) {
		memcpy(out + n, s->after, strlen(s->after));
		n += strlen(s->after);
	}
	return n;
}

/* 100.64.0.1:55211 -> 100.64.0.2:17100 */
#define A4 "\x64\x40\x00\x01\x64\x40\x00\x02\xd7\xab\x42\xcc"
/* [fd7a:115c:a1e0::1]:443 -> [fd7a:115c:a1e0::2]:17100 */
#define A6 "\xfd\x7a\x11\x5c\xa1\xe0\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01" \
	   "\xfd\x7a\x11\x5c\xa1\xe0\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02" \
	   "\x01\xbb\x42\xcc"
/* ::ffff:100.64.0.9 -> ::ffff:100.64.0.2 */
#define A6MAPPED "\0\0\0\0\0\0\0\0\0\0\xff\xff\x64\x40\x00\x09" \
		 "\0\0\0\0\0\0\0\0\0\0\xff\xff\x64\x40\x00\x02\x00\x50\x42\xcc"

#define DONE(v, src, dst, n) ((struct want){ PROXYPROTO_DONE, v, src, dst, n, NULL })
#define ERR(why) ((struct want){ PROXYPROTO_ERROR, 0, NULL, NULL, 0, why })
#define MORE ((struct want){ PROXYPROTO_NEED_MORE, 0, NULL, NULL, 0, NULL })

struct want {
	enum proxyproto_step step;
	unsigned version;
	const char *src;	/* "100.64.0.1:55211" */
	const char *dst;
	size_t consumed;
	const char *why;	/* substring, for errors */
};

static void run_case(const char *name, const unsigned char *buf, size_t len, unsigned versions,
		     const struct want *w)
{
	struct proxyproto_header h;
	size_t used = 99;
	enum proxyproto_step st = proxyproto_parse(buf, len, versions, &h, &used);
	CHECK(st == w->step, "%s: step %d, want %d (%s)", name, st, w->step, h.why);
	if (st == PROXYPROTO_DONE && w->step == PROXYPROTO_DONE) {
		char t[64];
		CHECK(h.version == w->version, "%s: version %u", name, h.version);
		CHECK(used == w->consumed, "%s: consumed %zu, want %zu", name, used, w->consumed);
		cidr_addr_format_port(&h.src, h.src_port, t, sizeof t);
		CHECK(strcmp(t, w->src) == 0, "%s: src %s, want %s", name, t, w->src);
		if (w->dst) {
			cidr_addr_format_port(&h.dst, h.dst_port, t, sizeof t);
			CHECK(strcmp(t, w->dst) == 0, "%s: dst %s, want %s", name, t, w->dst);
		}
	} else {
		CHECK(used == 0, "%s: consumed %zu without a header", name, used);
	}
	if (st == PROXYPROTO_ERROR && w->why)
		CHECK(strstr(h.why, w->why) != NULL, "%s: why \"%s\", want \"%s\"", name, h.why,
		      w->why);

	/* Growing prefixes, one byte at a time. */
	bool erred = false;
	for (size_t k = 0; k < len; k++) {
		struct proxyproto_header p;
		size_t u = 99;
		enum proxyproto_step s = proxyproto_parse(buf, k, versions, &p, &u);
		if (erred)
			CHECK(s == PROXYPROTO_ERROR, "%s: prefix %zu: step %d after an error", name,
			      k, s);
		if (s == PROXYPROTO_ERROR) {
			erred = true;
			CHECK(w->step == PROXYPROTO_ERROR, "%s: prefix %zu: error \"%s\"", name, k,
			      p.why);
		} else if (s == PROXYPROTO_DONE) {
			CHECK(w->step == PROXYPROTO_DONE && k >= w->consumed && u == w->consumed,
			      "%s: prefix %zu: done early (%zu)", name, k, u);
		} else {
			CHECK(u == 0, "%s: prefix %zu: NEED_MORE consumed %zu", name, k, u);
			CHECK(w->step != PROXYPROTO_DONE || k < w->consumed,
			      "%s: prefix %zu: needs more with the whole header", name, k);
		}
	}
}

static void text_case(const char *line, unsigned versions, struct want w)
{
	run_case(line, (const unsigned char *)line, strlen(line), versions, &w);
}

static void v2_case(const char *name, const struct v2spec *s, unsigned versions, struct want w)
{
	unsigned char buf[4096];
	size_t n = v2(s, buf);
	run_case(name, buf, n, versions, &w);
}

static void test_v2(void)
{
	const unsigned V2 = PROXYPROTO_V2;
	v2_case("tcp4 as tailscaled writes it",
		&(struct v2spec){ 0x21, 0x11, -1, A4, 12, "", 0, NULL }, V2,
		DONE(2, "100.64.0.1:55211", "100.64.0.2:17100", 28));
	v2_case("tcp4 with payload after it",
		&(struct v2spec){ 0x21, 0x11, -1, A4, 12, "", 0, "\0\0\0\x08\x04\xd2\x16\x2f" }, V2,
		DONE(2, "100.64.0.1:55211", NULL, 28));
	v2_case("tcp6", &(struct v2spec){ 0x21, 0x21, -1, A6, 36, "", 0, "GET" }, V2,
		DONE(2, "[fd7a:115c:a1e0::1]:443", "[fd7a:115c:a1e0::2]:17100", 52));
	v2_case("tcp6 with a mapped IPv4 source is IPv4",
		&(struct v2spec){ 0x21, 0x21, -1, A6MAPPED, 36, "", 0, NULL }, V2,
		DONE(2, "100.64.0.9:80", "100.64.0.2:17100", 52));
	v2_case("both versions accepted",
		&(struct v2spec){ 0x21, 0x11, -1, A4, 12, "", 0, NULL }, PROXYPROTO_V1 | V2,
		DONE(2, "100.64.0.1:55211", NULL, 28));
	v2_case("noop and authority TLVs",
		&(struct v2spec){ 0x21, 0x11, -1, A4, 12, "\x04\x00\x02xx\x02\x00\x03" "abc", 11, "z" }, V2,
		DONE(2, "100.64.0.1:55211", NULL, 39));
	v2_case("empty TLV", &(struct v2spec){ 0x21, 0x11, -1, A4, 12, "\x04\x00\x00", 3, NULL }, V2,
		DONE(2, "100.64.0.1:55211", NULL, 31));

	/* A CRC32C TLV, right and wrong. */
	unsigned char buf[64];
	size_t n = v2(&(struct v2spec){ 0x21, 0x11, -1, A4, 12, "\x03\x00\x04\0\0\0\0", 7, NULL },
		      buf);
	uint32_t crc = proxyproto_crc32c(buf, n);
	buf[n - 4] = (unsigned char)(crc >> 24);
	buf[n - 3] = (unsigned char)(crc >> 16);
	buf[n - 2] = (unsigned char)(crc >> 8);
	buf[n - 1] = (unsigned char)crc;
	run_case("crc32c matches", buf, n, V2,
		 &DONE(2, "100.64.0.1:55211", NULL, 35));
	struct proxyproto_header h;
	size_t used;
	CHECK(proxyproto_parse(buf, n, V2, &h, &used) == PROXYPROTO_DONE && h.crc_checked,
	      "crc32c: marked checked");
	buf[20] ^= 1;	/* the source address changes in transit */
	run_case("crc32c does not match", buf, n, V2,
		 &ERR("CRC32C check"));
	/* The CRC32C of "123456789" is the standard check value. */
	CHECK(proxyproto_crc32c((const uint8_t *)"123456789", 9) == 0xe3069283u,
	      "crc32c check value");

	v2_case("crc32c of 3 bytes",
		&(struct v2spec){ 0x21, 0x11, -1, A4, 12, "\x03\x00\x03\0\0\0", 6, NULL }, V2,
		ERR("expected 4"));
	v2_case("truncated TLV", &(struct v2spec){ 0x21, 0x11, -1, A4, 12, "\x04\x00", 2, NULL }, V2,
		ERR("truncated TLV"));
	v2_case("TLV past the end",
		&(struct v2spec){ 0x21, 0x11, -1, A4, 12, "\x04\x00\x09xx", 5, NULL }, V2,
		ERR("runs past"));
	v2_case("LOCAL", &(struct v2spec){ 0x20, 0x00, -1, "", 0, "", 0, NULL }, V2,
		ERR("LOCAL command"));
	v2_case("LOCAL with addresses", &(struct v2spec){ 0x20, 0x11, -1, A4, 12, "", 0, NULL }, V2,
		ERR("LOCAL command"));
	v2_case("unknown command", &(struct v2spec){ 0x22, 0x11, -1, A4, 12, "", 0, NULL }, V2,
		ERR("unknown command 2"));
	v2_case("version nibble 1", &(struct v2spec){ 0x11, 0x11, -1, A4, 12, "", 0, NULL }, V2,
		ERR("version 1 in its"));
	v2_case("unspecified family", &(struct v2spec){ 0x21, 0x00, -1, "", 0, "", 0, NULL }, V2,
		ERR("unspecified address family"));
	v2_case("unix family", &(struct v2spec){ 0x21, 0x31, 216, "", 0, "", 0, NULL }, V2,
		ERR("UNIX socket"));
	v2_case("family 4", &(struct v2spec){ 0x21, 0x41, -1, A4, 12, "", 0, NULL }, V2,
		ERR("unknown address family 4"));
	v2_case("udp", &(struct v2spec){ 0x21, 0x12, -1, A4, 12, "", 0, NULL }, V2,
		ERR("for UDP, not TCP"));
	v2_case("unspecified transport", &(struct v2spec){ 0x21, 0x10, -1, A4, 12, "", 0, NULL }, V2,
		ERR("unspecified transport"));
	v2_case("tcp6 with a tcp4 length",
		&(struct v2spec){ 0x21, 0x21, 12, A6, 36, "", 0, NULL }, V2,
		ERR("36 needed"));
	v2_case("too long", &(struct v2spec){ 0x21, 0x11, 4000, A4, 12, "", 0, NULL }, V2,
		ERR("longer than tailfence accepts"));
	v2_case("v2 to a v1 listener", &(struct v2spec){ 0x21, 0x11, -1, A4, 12, "", 0, NULL },
		PROXYPROTO_V1,
		ERR("version 2 header, but this listener expects version 1"));
	/* Only the signature so far: still waiting. */
	struct want more = MORE;
	run_case("signature only", (const unsigned char *)SIG, 12, V2, &more);
}

static void test_v1(void)
{
	const unsigned V1 = PROXYPROTO_V1;
	text_case("PROXY TCP4 100.64.0.1 100.64.0.2 55211 17100\r\n", V1,
		  DONE(1, "100.64.0.1:55211", "100.64.0.2:17100", 46));
	text_case("PROXY TCP4 100.64.0.1 100.64.0.2 55211 17100\r\nGET / HTTP/1.1\r\n", V1,
		  DONE(1, "100.64.0.1:55211", NULL, 46));
	text_case("PROXY TCP6 fd7a:115c:a1e0::1 fd7a:115c:a1e0::2 0 65535\r\n", V1,
		  DONE(1, "[fd7a:115c:a1e0::1]:0", "[fd7a:115c:a1e0::2]:65535", 56));
	text_case("PROXY TCP6 ::ffff:100.64.0.9 ::1 80 81\r\n", V1,
		  DONE(1, "100.64.0.9:80", "[::1]:81", 40));
	text_case("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
		  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n", V1 | PROXYPROTO_V2,
		  DONE(1, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", NULL, 104));

	struct want err = ERR(NULL);
	const struct {
		const char *line, *why;
	} bad[] = {
		{ "PROXY UNKNOWN\r\n", "UNKNOWN: it names no client" },
		{ "PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n", "UNKNOWN" },
		{ "PROXY TCP4 100.64.0.1 100.64.0.2 55211 17100\n", "bare LF" },
		{ "PROXY TCP4 100.64.0.1 100.64.0.2 55211 17100\rX", "CR not followed by LF" },
		{ "PROXY TCP4  100.64.0.1 100.64.0.2 55211 17100\r\n", "single spaces" },
		{ "PROXY TCP4 100.64.0.1 100.64.0.2 55211\r\n", "single spaces" },
		{ "PROXY TCP4 100.64.0.1 100.64.0.2 55211 17100 9\r\n", "single spaces" },
		{ "PROXY TCP4 100.64.0.1 100.64.0.2 55211 17100 \r\n", "single spaces" },
		{ "PROXY UDP4 100.64.0.1 100.64.0.2 55211 17100\r\n", "expected TCP4 or TCP6" },
		{ "PROXY TCP4 fd7a::1 100.64.0.2 55211 17100\r\n", "source \"fd7a::1\" is not an IPv4" },
		{ "PROXY TCP4 100.64.0.1 100.64.0.256 1 2\r\n", "destination \"100.64.0.256\"" },
		{ "PROXY TCP4 100.64.0.1 010.64.0.2 1 2\r\n", "destination \"010.64.0.2\"" },
		{ "PROXY TCP6 100.64.0.1 ::1 1 2\r\n", "is not an IPv6 address" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "source port \"01\"" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", "destination port \"65536\"" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "source port \"+1\"" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\x01\r\n", "not printable ASCII" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\xc3\xa9\r\n", "not printable ASCII" },
		{ "PROXY TCP4 100.64.0.1 100.64.0.2 55211 17100\r\n", "this listener expects version 2" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err.why = bad[i].why;
		unsigned versions = strstr(bad[i].why, "expects version 2") ? PROXYPROTO_V2 : V1;
		text_case(bad[i].line, versions, err);
	}
	/* 107 bytes without CRLF: the longest a v1 line may be. */
	char line[200];
	memcpy(line, "PROXY TCP6 ", 11);
	memset(line + 11, 'a', sizeof line - 11);
	line[120] = '\0';
	err.why = "no CRLF within 107 bytes";
	text_case(line, V1, err);
	line[105] = '\r';
	line[106] = '\n';
	line[107] = '\0';
	err.why = "single spaces";	/* 107 bytes with CRLF: the length is fine */
	text_case(line, V1, err);
	memset(line + 11, 'a', sizeof line - 11);
	line[106] = '\r';
	line[107] = '\n';
	line[108] = '\0';
	err.why = "no CRLF within 107 bytes";
	text_case(line, V1, err);
}

static void test_no_header(void)
{
	struct want err = ERR(NULL);
	const struct {
		const char *name, *bytes;
		size_t len;
		const char *why;
	} bad[] = {
		{ "psql sslrequest", "\0\0\0\x08\x04\xd2\x16\x2f", 8,
		  "starts with 00 00 00 08 04 d2 16 2f, like a PostgreSQL client" },
		{ "psql startup", "\0\0\0\x54\0\x03\0\0user\0", 13, "PostgreSQL client" },
		{ "tls", "\x16\x03\x01\x02\x00\x01", 6, "16 03 01 02 00 01, like a TLS handshake" },
		{ "http", "GET / HTTP/1.1\r\n", 16, "47 45 54 20 2f 20 48 54 ..., like an HTTP request" },
		{ "ssh", "SSH-2.0-OpenSSH\r\n", 17, "like an SSH greeting" },
		{ "one byte", "x", 1, "starts with 78" },
		{ "near the v2 signature", "\r\n\r\n\0\r\nQUIX\n", 12, "starts with 0d 0a 0d 0a" },
		{ "PROXY in lower case", "proxy TCP4", 10, "starts with 70 72" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err.why = bad[i].why;
		run_case(bad[i].name, (const unsigned char *)bad[i].bytes, bad[i].len,
			 PROXYPROTO_V1 | PROXYPROTO_V2, &err);
	}
	struct want more = MORE;
	run_case("nothing yet", (const unsigned char *)"", 0, PROXYPROTO_V2, &more);
	run_case("PROX", (const unsigned char *)"PROX", 4, PROXYPROTO_V2, &more);
	run_case("\\r\\n", (const unsigned char *)"\r\n", 2, PROXYPROTO_V1, &more);
}

int main(void)
{
	test_v2();
	test_v1();
	test_no_header();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
