/*
 * test_cidr: table-driven tests of address and prefix parsing, formatting,
 * matching and IPv4-mapped normalisation.
 */
#include "tailfence/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

struct addr_case {
	const char *in;
	bool ok;
	const char *canon;	/* canonical text when ok */
	int family;
};

static const struct addr_case addr_cases[] = {
	{ "127.0.0.1", true, "127.0.0.1", AF_INET },
	{ "0.0.0.0", true, "0.0.0.0", AF_INET },
	{ "255.255.255.255", true, "255.255.255.255", AF_INET },
	{ "::1", true, "::1", AF_INET6 },
	{ "::", true, "::", AF_INET6 },
	{ "FD7A:115C:A1E0::53", true, "fd7a:115c:a1e0::53", AF_INET6 },
	{ "::ffff:127.0.0.1", true, "127.0.0.1", AF_INET },
	{ "::ffff:7f00:1", true, "127.0.0.1", AF_INET },
	{ "::FFFF:10.1.2.3", true, "10.1.2.3", AF_INET },
	{ "::127.0.0.1", true, "::127.0.0.1", AF_INET6 },	/* compatible, not mapped */
	{ "64:ff9b::7f00:1", true, "64:ff9b::7f00:1", AF_INET6 },
	{ "", false, NULL, 0 },
	{ "1.2.3", false, NULL, 0 },
	{ "1.2.3.4.5", false, NULL, 0 },
	{ "256.0.0.1", false, NULL, 0 },
	{ "01.2.3.4", false, NULL, 0 },
	{ "0x7f.0.0.1", false, NULL, 0 },
	{ "2130706433", false, NULL, 0 },
	{ " 127.0.0.1", false, NULL, 0 },
	{ "127.0.0.1 ", false, NULL, 0 },
	{ "fe80::1%eth0", false, NULL, 0 },
	{ "[::1]", false, NULL, 0 },
	{ "1:2:3:4:5:6:7:8:9", false, NULL, 0 },
	{ "localhost", false, NULL, 0 },
	{ "127.0.0.1/32", false, NULL, 0 },
};

static void test_addr(void)
{
	for (size_t i = 0; i < sizeof addr_cases / sizeof addr_cases[0]; i++) {
		const struct addr_case *c = &addr_cases[i];
		struct cidr_addr a;
		bool ok = cidr_addr_parse(c->in, &a);
		CHECK(ok == c->ok, "addr \"%s\": parse %d, want %d", c->in, ok, c->ok);
		if (ok && c->ok) {
			char buf[CIDR_ADDR_STRLEN];
			cidr_addr_format(&a, buf, sizeof buf);
			CHECK(strcmp(buf, c->canon) == 0, "addr \"%s\": formatted %s, want %s",
			      c->in, buf, c->canon);
			CHECK(a.family == c->family, "addr \"%s\": family %d", c->in, a.family);
		}
	}
	/* parsen does not read past len */
	struct cidr_addr a;
	CHECK(cidr_addr_parsen("10.0.0.1:80", 8, &a), "parsen with len");
	CHECK(!cidr_addr_parsen("10.0.0.1\0xx", 11, &a), "parsen with NUL inside");
	CHECK(!cidr_addr_parse(NULL, &a) && a.family == 0, "NULL input");
}

struct prefix_case {
	const char *in;
	bool ok;
	const char *canon;	/* canonical text, or a fragment of the error */
};

static const struct prefix_case prefix_cases[] = {
	{ "10.0.0.0/24", true, "10.0.0.0/24" },
	{ "10.0.0.0/8", true, "10.0.0.0/8" },
	{ "0.0.0.0/0", true, "0.0.0.0/0" },
	{ "10.0.0.1", true, "10.0.0.1/32" },
	{ "10.0.0.1/32", true, "10.0.0.1/32" },
	{ "::/0", true, "::/0" },
	{ "fd00::/8", true, "fd00::/8" },
	{ "fd7a:115c:a1e0::/48", true, "fd7a:115c:a1e0::/48" },
	{ "::1", true, "::1/128" },
	{ "::1/128", true, "::1/128" },
	{ "::ffff:127.0.0.0/104", true, "127.0.0.0/8" },
	{ "::ffff:0:0/96", true, "0.0.0.0/0" },
	{ "::ffff:127.0.0.1", true, "127.0.0.1/32" },
	{ "10.0.0.1/24", false, "\"10.0.0.1/24\" has host bits set; did you mean 10.0.0.0/24?" },
	{ "fd00::1/64", false, "did you mean fd00::/64?" },
	{ "::ffff:127.0.0.1/104", false, "did you mean 127.0.0.0/8?" },
	{ "10.0.0.0/33", false, "prefix length 33 is longer than 32" },
	{ "::/129", false, "prefix length 129 is longer than 128" },
	{ "10.0.0.0/024", false, "leading zero" },
	{ "10.0.0.0/00", false, "leading zero" },
	{ "10.0.0.0/+8", false, "decimal number" },
	{ "10.0.0.0/-8", false, "decimal number" },
	{ "10.0.0.0/ 8", false, "decimal number" },
	{ "10.0.0.0/8 ", false, "unexpected characters" },
	{ "10.0.0.0/8x", false, "unexpected characters" },
	{ "10.0.0.0/", false, "empty prefix length" },
	{ "10.0.0.0/99999999999999999999", false, "longer than 32" },
	{ "10.0.0.0//8", false, "decimal number" },
	{ "/8", false, "not an IP prefix" },
	{ "", false, "empty" },
	{ "10.0.0/8", false, "not an IPv4 or IPv6 address" },
	{ "fe80::%eth0/64", false, "zone" },
	{ "[::1]/128", false, "not an IPv4 or IPv6 address" },
	{ "example.com/32", false, "not an IPv4 or IPv6 address" },
};

static void test_prefix(void)
{
	for (size_t i = 0; i < sizeof prefix_cases / sizeof prefix_cases[0]; i++) {
		const struct prefix_case *c = &prefix_cases[i];
		struct cidr_prefix p;
		char err[256] = "";
		bool ok = cidr_prefix_parse(c->in, strlen(c->in), &p, err, sizeof err);
		CHECK(ok == c->ok, "prefix \"%s\": parse %d, want %d (%s)", c->in, ok, c->ok, err);
		if (ok && c->ok) {
			char buf[CIDR_PREFIX_STRLEN];
			cidr_prefix_format(&p, buf, sizeof buf);
			CHECK(strcmp(buf, c->canon) == 0, "prefix \"%s\": formatted %s, want %s",
			      c->in, buf, c->canon);
		} else if (!ok && !c->ok) {
			CHECK(strstr(err, c->canon) != NULL, "prefix \"%s\": error \"%s\" lacks \"%s\"",
			      c->in, err, c->canon);
		}
	}
	/* The reason variant leaves the value out. */
	struct cidr_prefix p;
	char reason[160];
	CHECK(!cidr_prefix_parse_reason("10.0.0.0/33", 11, &p, reason, sizeof reason),
	      "reason variant fails");
	CHECK(strcmp(reason, "prefix length 33 is longer than 32") == 0, "reason: %s", reason);
	/* len bounds the input */
	CHECK(cidr_prefix_parse("10.0.0.0/24:80", 11, &p, NULL, 0) && p.bits == 24,
	      "prefix with len stops before port");
}

struct contains_case {
	const char *prefix;
	const char *addr;
	bool in;
};

static const struct contains_case contains_cases[] = {
	{ "10.0.0.0/24", "10.0.0.1", true },
	{ "10.0.0.0/24", "10.0.0.255", true },
	{ "10.0.0.0/24", "10.0.1.0", false },
	{ "10.0.0.0/25", "10.0.0.127", true },
	{ "10.0.0.0/25", "10.0.0.128", false },
	{ "127.0.0.0/8", "::ffff:127.0.0.1", true },
	{ "0.0.0.0/0", "1.2.3.4", true },
	{ "0.0.0.0/0", "::1", false },
	{ "::/0", "1.2.3.4", false },
	{ "::/0", "::1", true },
	{ "fe80::/10", "fe80::1", true },
	{ "fe80::/10", "febf::1", true },
	{ "fe80::/10", "fec0::1", false },
	{ "10.0.0.1/32", "10.0.0.1", true },
	{ "10.0.0.1/32", "10.0.0.2", false },
	{ "::1/128", "::1", true },
	{ "::1/128", "::2", false },
};

static void test_contains(void)
{
	for (size_t i = 0; i < sizeof contains_cases / sizeof contains_cases[0]; i++) {
		const struct contains_case *c = &contains_cases[i];
		struct cidr_prefix p;
		struct cidr_addr a;
		CHECK(cidr_prefix_parse(c->prefix, strlen(c->prefix), &p, NULL, 0), "%s", c->prefix);
		CHECK(cidr_addr_parse(c->addr, &a), "%s", c->addr);
		CHECK(cidr_prefix_contains(&p, &a) == c->in, "%s contains %s: want %d", c->prefix,
		      c->addr, c->in);
	}
}

static void test_sockaddr_and_misc(void)
{
	struct cidr_addr a, b;
	struct sockaddr_storage ss;
	uint16_t port = 0;
	char buf[64];

	CHECK(cidr_addr_parse("::ffff:127.0.0.1", &a), "mapped");
	socklen_t sl = cidr_addr_to_sockaddr(&a, 8080, &ss);
	CHECK(sl == sizeof(struct sockaddr_in) && ss.ss_family == AF_INET, "v4 sockaddr");
	CHECK(cidr_addr_from_sockaddr((struct sockaddr *)&ss, &b, &port), "from sockaddr");
	CHECK(port == 8080 && cidr_addr_equal(&a, &b), "round trip");
	CHECK(strcmp(cidr_addr_format_port(&a, 80, buf, sizeof buf), "127.0.0.1:80") == 0, "%s", buf);

	/* A mapped address arriving from the kernel (dual-stack socket) */
	struct sockaddr_in6 s6;
	memset(&s6, 0, sizeof s6);
	s6.sin6_family = AF_INET6;
	s6.sin6_port = htons(1234);
	inet_pton(AF_INET6, "::ffff:169.254.169.254", &s6.sin6_addr);
	CHECK(cidr_addr_from_sockaddr((struct sockaddr *)&s6, &b, &port), "v6 sockaddr");
	CHECK(b.family == AF_INET && port == 1234, "mapped sockaddr normalised");
	CHECK(strcmp(cidr_addr_format(&b, buf, sizeof buf), "169.254.169.254") == 0, "%s", buf);

	CHECK(cidr_addr_parse("::1", &a), "::1");
	sl = cidr_addr_to_sockaddr(&a, 443, &ss);
	CHECK(sl == sizeof(struct sockaddr_in6), "v6 len");
	CHECK(strcmp(cidr_addr_format_port(&a, 443, buf, sizeof buf), "[::1]:443") == 0, "%s", buf);
	memset(&a, 0, sizeof a);
	CHECK(cidr_addr_to_sockaddr(&a, 1, &ss) == 0, "no family");
	ss.ss_family = AF_UNIX;
	CHECK(!cidr_addr_from_sockaddr((struct sockaddr *)&ss, &a, NULL), "AF_UNIX");

	struct cidr_prefix p;
	CHECK(cidr_prefix_parse("0.0.0.0/0", 9, &p, NULL, 0) && cidr_prefix_is_default(&p), "default4");
	CHECK(cidr_prefix_parse("::/0", 4, &p, NULL, 0) && cidr_prefix_is_default(&p), "default6");
	CHECK(cidr_prefix_parse("::ffff:0:0/96", 13, &p, NULL, 0) && cidr_prefix_is_default(&p),
	      "mapped default is default");
	CHECK(cidr_prefix_parse("10.0.0.0/8", 10, &p, NULL, 0) && !cidr_prefix_is_default(&p), "not default");

	CHECK(cidr_addr_parse("128.0.0.1", &a), "bit");
	CHECK(cidr_addr_bit(&a, 0) == 1 && cidr_addr_bit(&a, 1) == 0 && cidr_addr_bit(&a, 31) == 1,
	      "cidr_addr_bit");
}

int main(void)
{
	test_addr();
	test_prefix();
	test_contains();
	test_sockaddr_and_misc();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
