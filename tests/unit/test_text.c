/*
 * test_text: the locale-free classes and base64, plus the DNS answer reader.
 */
#include "tailfence/dnsmsg.h"
#include "tailfence/text.h"

#include <string.h>

#include "check.h"

static void test_classes(void)
{
	for (int c = -128; c < 128; c++) {
		char ch = (char)c;
		bool digit = c >= '0' && c <= '9';
		bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
		CHECK(text_is_digit(ch) == digit, "digit %d", c);
		CHECK(text_is_alpha(ch) == alpha, "alpha %d", c);
		CHECK(text_is_alnum(ch) == (digit || alpha), "alnum %d", c);
		CHECK(text_is_ctl(ch) == ((c >= 0 && c < 32) || c == 127), "ctl %d", c);
		CHECK(text_lower(ch) == (c >= 'A' && c <= 'Z' ? c + 32 : c), "lower %d", c);
		CHECK(text_is_space(ch) == (c == ' ' || (c >= 9 && c <= 13)), "space %d", c);
	}
	CHECK(text_ieq("Local-TailscaleD.Sock", "local-tailscaled.sock", 21), "ieq");
	CHECK(!text_ieq("abc", "abd", 3), "ieq differs");
}

/* A head that arrives a few bytes at a time is scanned from where the last
 * scan stopped (the dribbling client costs linear time, not quadratic):
 * resuming must find the same end as one scan of the whole, at every
 * chunk size, whichever line ends the head uses. */
static void test_head_end(void)
{
	static const char *const heads[] = {
		"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\nbody",
		"GET http://a/ HTTP/1.1\nHost: a\n\nbody",
		"CONNECT a:1 HTTP/1.1\r\nX: \r\n\n",
		"CONNECT a:1 HTTP/1.1\nX: y\r\n\r\n",
		"\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n",	/* not ended */
	};
	for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
		const char *h = heads[i];
		size_t len = strlen(h);
		size_t whole = text_http_head_end(h, len, 0);
		CHECK((whole == 0) == (i == 5), "head %zu: end %zu", i, whole);
		for (size_t chunk = 1; chunk <= 5; chunk++) {
			size_t have = 0, scanned = 0, end = 0;
			while (have < len && end == 0) {
				have = have + chunk < len ? have + chunk : len;
				end = text_http_head_end(h, have, scanned);
				scanned = have;
			}
			CHECK(end == whole, "head %zu in chunks of %zu: end %zu, whole %zu", i, chunk,
			      end, whole);
		}
	}
}

static void test_base64(void)
{
	static const struct {
		const char *in;
		const char *out;	/* NULL: refused */
		size_t outlen;
	} cases[] = {
		{ "", "", 0 },
		{ "Zg==", "f", 1 },
		{ "Zg", "f", 1 },
		{ "Zm8=", "fo", 2 },
		{ "Zm9v", "foo", 3 },
		{ "Zm9vYmFy", "foobar", 6 },
		{ "YWxpY2U6c2VjcmV0", "alice:secret", 12 },
		{ "AP8=", "\x00\xff", 2 },
		{ "Z", NULL, 0 },		/* one char: no whole byte */
		{ "Zh==", NULL, 0 },		/* leftover bits not zero */
		{ "Zg=", NULL, 0 },		/* padding without a full group */
		{ "Z=g=", NULL, 0 },		/* padding in the middle */
		{ "Zm9v\n", NULL, 0 },		/* whitespace */
		{ "Zm-v", NULL, 0 },		/* URL alphabet */
		{ "Zg===", NULL, 0 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		unsigned char out[32];
		size_t n = 99;
		bool ok = text_base64_decode(cases[i].in, strlen(cases[i].in), out, sizeof out, &n);
		if (cases[i].out)
			CHECK(ok && n == cases[i].outlen && memcmp(out, cases[i].out, n) == 0,
			      "base64 \"%s\"", cases[i].in);
		else
			CHECK(!ok, "base64 \"%s\" refused", cases[i].in);
	}
	unsigned char small[2];
	size_t n;
	CHECK(!text_base64_decode("Zm9v", 4, small, sizeof small, &n), "too small a buffer");
}

/* A response for db.corp.example: one question, a CNAME, two A answers. */
static const unsigned char dns_a[] = {
	0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00,
	/* question: db.corp.example A IN */
	2, 'd', 'b', 4, 'c', 'o', 'r', 'p', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0,
	0x00, 0x01, 0x00, 0x01,
	/* CNAME (pointer to the question name) -> pointer */
	0xc0, 0x0c, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x02, 0xc0, 0x0c,
	/* A 192.0.2.10 */
	0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x04, 192, 0, 2, 10,
	/* A 192.0.2.10 again (dropped) */
	0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x04, 192, 0, 2, 10,
};

static void test_dnsmsg(void)
{
	struct cidr_addr out[4];
	size_t n;
	int rcode;
	const char *why = NULL;
	CHECK(dnsmsg_answers(dns_a, sizeof dns_a, DNSMSG_TYPE_A, out, 4, &n, &rcode, &why),
	      "A answer parses: %s", why ? why : "");
	CHECK(n == 1 && out[0].family == AF_INET && out[0].b[0] == 192 && out[0].b[3] == 10,
	      "one distinct address");
	CHECK(rcode == 0, "NOERROR");
	CHECK(dnsmsg_answers(dns_a, sizeof dns_a, DNSMSG_TYPE_AAAA, out, 4, &n, &rcode, &why) &&
	      n == 0, "no AAAA in it");
	/* every truncation is refused or yields no more than the whole */
	for (size_t len = 0; len < sizeof dns_a; len++) {
		bool ok = dnsmsg_answers(dns_a, len, DNSMSG_TYPE_A, out, 4, &n, &rcode, &why);
		CHECK(!ok, "truncated at %zu refused", len);
	}
	unsigned char nx[12] = { 0, 1, 0x81, 0x83, 0, 0, 0, 0, 0, 0, 0, 0 };
	CHECK(dnsmsg_answers(nx, sizeof nx, DNSMSG_TYPE_A, out, 4, &n, &rcode, &why) && n == 0 &&
	      rcode == 3, "NXDOMAIN");
	unsigned char query[12] = { 0, 1, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0 };
	CHECK(!dnsmsg_answers(query, sizeof query, DNSMSG_TYPE_A, out, 4, &n, &rcode, &why),
	      "a query is not a response");
	unsigned char tc[12] = { 0, 1, 0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0 };
	CHECK(!dnsmsg_answers(tc, sizeof tc, DNSMSG_TYPE_A, out, 4, &n, &rcode, &why) &&
	      strstr(why, "truncated"), "a truncated response is refused");
	/* an A record whose length is not 4 */
	unsigned char bad[sizeof dns_a];
	memcpy(bad, dns_a, sizeof bad);
	bad[sizeof bad - 5] = 5;
	CHECK(!dnsmsg_answers(bad, sizeof bad, DNSMSG_TYPE_A, out, 4, &n, &rcode, &why),
	      "bad rdlength refused");
}

static void test_utf8(void)
{
	static const struct {
		const char *in;
		size_t len;
		const char *sanitized;
		const char *escaped;
	} cases[] = {
		{ "plain", 5, "plain", "plain" },
		{ "j\xc3\xb6rg", 5, "j\xc3\xb6rg", "j\xc3\xb6rg" },		/* valid UTF-8 stays */
		{ "a\xff" "b", 3, "a\xef\xbf\xbd" "b", "a\\xffb" },
		{ "\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd", "\\xc0\\xaf" },	/* overlong */
		{ "\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
		  "\\xed\\xa0\\x80" },					/* surrogate */
		{ "\xf4\x90\x80\x80", 4, NULL, "\\xf4\\x90\\x80\\x80" },	/* past U+10FFFF */
		{ "\xe2\x82", 2, NULL, "\\xe2\\x82" },				/* cut short */
		{ "line\n{\"v\":1}", 12, "line\n{\"v\":1}", "line\\x0a{\"v\":1}" },
		{ "\x1b[31mred", 8, "\x1b[31mred", "\\x1b[31mred" },
		{ "c1\xc2\x9b", 4, "c1\xc2\x9b", "c1\\xc2\\x9b" },		/* C1 CSI */
		{ "del\x7f", 4, "del\x7f", "del\\x7f" },
		{ "\xf0\x9f\x99\x82", 4, "\xf0\x9f\x99\x82", "\xf0\x9f\x99\x82" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char out[128];
		if (cases[i].sanitized) {
			text_utf8_sanitize(cases[i].in, cases[i].len, out, sizeof out);
			CHECK(strcmp(out, cases[i].sanitized) == 0, "sanitize %zu: \"%s\"", i, out);
		}
		text_escape_controls(cases[i].in, cases[i].len, out, sizeof out);
		CHECK(strcmp(out, cases[i].escaped) == 0, "escape %zu: \"%s\"", i, out);
	}
	/* whatever the bytes, the output is valid UTF-8 with no control byte */
	unsigned seed = 1;
	for (int round = 0; round < 2000; round++) {
		char in[32], out[200];
		for (size_t k = 0; k < sizeof in; k++) {
			seed = seed * 1103515245u + 12345u;
			in[k] = (char)(seed >> 16);
		}
		size_t n = text_utf8_sanitize(in, sizeof in, out, sizeof out);
		bool ok = true;
		for (size_t k = 0; k < n && ok;) {
			unsigned cp;
			size_t m = text_utf8_next(out + k, n - k, &cp);
			ok = m > 0;
			k += m;
		}
		CHECK(ok, "sanitized round %d is UTF-8", round);
		n = text_escape_controls(in, sizeof in, out, sizeof out);
		for (size_t k = 0; k < n; k++)
			ok = ok && !text_is_ctl(out[k]);
		CHECK(ok, "escaped round %d has no control byte", round);
	}
	/* a small buffer is cut at a character boundary */
	char tiny[4];
	text_utf8_sanitize("\xc3\xb6\xc3\xb6", 4, tiny, sizeof tiny);
	CHECK(strcmp(tiny, "\xc3\xb6") == 0, "cut at a boundary");
}

/* The one host:port splitter, as a table: input, port optional, error,
 * host, bracketed, port (0: none). */
static void test_hostport(void)
{
	static const struct {
		const char *in;
		bool optional;
		enum text_hostport_error e;
		const char *host;
		bool bracketed;
		unsigned port;
	} t[] = {
		{ "127.0.0.1:1080", false, TEXT_HP_OK, "127.0.0.1", false, 1080 },
		{ "db.internal:5432", false, TEXT_HP_OK, "db.internal", false, 5432 },
		{ "[::1]:443", false, TEXT_HP_OK, "::1", true, 443 },
		{ "[fe80::1%lo]:1", false, TEXT_HP_OK, "fe80::1%lo", true, 1 },
		{ "host:0080", false, TEXT_HP_OK, "host", false, 80 },
		{ "host:65535", false, TEXT_HP_OK, "host", false, 65535 },
		{ "host", true, TEXT_HP_OK, "host", false, 0 },
		{ "host:", true, TEXT_HP_OK, "host", false, 0 },
		{ "[::1]", true, TEXT_HP_OK, "::1", true, 0 },
		{ "host", false, TEXT_HP_NO_PORT, NULL, false, 0 },
		{ "host:", false, TEXT_HP_EMPTY_PORT, NULL, false, 0 },
		{ "[::1]", false, TEXT_HP_NO_PORT, NULL, false, 0 },
		{ "", true, TEXT_HP_EMPTY_HOST, NULL, false, 0 },
		{ ":80", false, TEXT_HP_EMPTY_HOST, NULL, false, 0 },
		{ "[]:80", false, TEXT_HP_EMPTY_HOST, NULL, false, 0 },
		{ "[::1:80", false, TEXT_HP_NO_CLOSE_BRACKET, NULL, false, 0 },
		{ "[::1]x:80", false, TEXT_HP_AFTER_BRACKET, NULL, false, 0 },
		{ "::1:80", false, TEXT_HP_UNBRACKETED_V6, NULL, false, 0 },
		{ "::1", true, TEXT_HP_UNBRACKETED_V6, NULL, false, 0 },
		{ "host:8o", false, TEXT_HP_PORT_NOT_DECIMAL, NULL, false, 0 },
		{ "host:-1", false, TEXT_HP_PORT_NOT_DECIMAL, NULL, false, 0 },
		{ "host: 80", false, TEXT_HP_PORT_NOT_DECIMAL, NULL, false, 0 },
		{ "host:65536", false, TEXT_HP_PORT_TOO_LARGE, NULL, false, 0 },
		{ "host:99999999999999999999", false, TEXT_HP_PORT_TOO_LARGE, NULL, false, 0 },
		{ "host:0", false, TEXT_HP_PORT_ZERO, NULL, false, 0 },
		{ "host:000", false, TEXT_HP_PORT_ZERO, NULL, false, 0 },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct text_hostport hp;
		enum text_hostport_error e = text_hostport_split(t[i].in, strlen(t[i].in),
								 t[i].optional, &hp);
		CHECK(e == t[i].e, "%s: error %d, want %d", t[i].in, e, t[i].e);
		if (e != TEXT_HP_OK || t[i].e != TEXT_HP_OK)
			continue;
		CHECK(hp.host_len == strlen(t[i].host) &&
			      memcmp(hp.host, t[i].host, hp.host_len) == 0 &&
			      hp.bracketed == t[i].bracketed && hp.port == t[i].port &&
			      hp.has_port == (t[i].port != 0),
		      "%s: host %.*s port %u", t[i].in, (int)hp.host_len, hp.host, hp.port);
	}
	/* the length bounds the input: nothing past it is read */
	struct text_hostport hp;
	CHECK(text_hostport_split("host:80junk", 7, false, &hp) == TEXT_HP_OK && hp.port == 80,
	      "bounded by n");
	uint16_t port;
	CHECK(text_port_parse("443", 3, &port) && port == 443, "port 443");
	CHECK(!text_port_parse("", 0, &port) && !text_port_parse("0", 1, &port) &&
		      !text_port_parse("70000", 5, &port) && !text_port_parse("4a", 2, &port),
	      "bad ports");
	CHECK(strcmp(text_hostport_why(TEXT_HP_NO_PORT), "needs a port (HOST:PORT)") == 0, "why");
}

int main(void)
{
	test_classes();
	test_hostport();
	test_utf8();
	test_base64();
	test_head_end();
	test_dnsmsg();
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
