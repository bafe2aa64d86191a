/*
 * cidr: IPv4/IPv6 addresses and prefixes.
 *
 * Parsing is strict in the manner of wireguard-tools' config.c: the prefix
 * length must start with a digit, has no sign and no leading zero, is checked
 * against the family's maximum, and the whole input must be consumed. Host
 * bits are an error, reported with the prefix the user probably meant.
 * IPv4-mapped IPv6 (::ffff:a.b.c.d) is normalised to plain IPv4 everywhere.
 */
#include "tailfence/cidr.h"
#include "tailfence/log.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static const uint8_t mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

static bool is_mapped(const struct cidr_addr *a)
{
	return a->family == AF_INET6 && memcmp(a->b, mapped_prefix, 12) == 0;
}

void cidr_addr_normalize(struct cidr_addr *a)
{
	if (!is_mapped(a))
		return;
	uint8_t v4[4];
	memcpy(v4, a->b + 12, 4);
	memset(a->b, 0, sizeof a->b);
	memcpy(a->b, v4, 4);
	a->family = AF_INET;
}

bool cidr_addr_parsen(const char *s, size_t len, struct cidr_addr *out)
{
	char buf[INET6_ADDRSTRLEN + 1];

	memset(out, 0, sizeof *out);
	if (s == NULL || len == 0 || len >= sizeof buf)
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	/* No embedded NUL, no zone ("%eth0"), nothing inet_pton might skip. */
	if (strlen(buf) != len)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = buf[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
		      (c >= 'A' && c <= 'F') || c == '.' || c == ':'))
			return false;
	}
	if (inet_pton(AF_INET, buf, out->b) == 1) {
		out->family = AF_INET;
		return true;
	}
	memset(out->b, 0, sizeof out->b);
	if (inet_pton(AF_INET6, buf, out->b) == 1) {
		out->family = AF_INET6;
		cidr_addr_normalize(out);
		return true;
	}
	memset(out, 0, sizeof *out);
	return false;
}

bool cidr_addr_parse(const char *s, struct cidr_addr *out)
{
	if (s == NULL) {
		memset(out, 0, sizeof *out);
		return false;
	}
	return cidr_addr_parsen(s, strlen(s), out);
}

bool cidr_addr_from_sockaddr(const struct sockaddr *sa, struct cidr_addr *out,
			     uint16_t *port)
{
	memset(out, 0, sizeof *out);
	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		out->family = AF_INET;
		memcpy(out->b, &sin->sin_addr, 4);
		if (port)
			*port = ntohs(sin->sin_port);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		out->family = AF_INET6;
		memcpy(out->b, &sin6->sin6_addr, 16);
		if (port)
			*port = ntohs(sin6->sin6_port);
		cidr_addr_normalize(out);
		return true;
	}
	return false;
}

socklen_t cidr_addr_to_sockaddr(const struct cidr_addr *a, uint16_t port,
				struct sockaddr_storage *out)
{
	memset(out, 0, sizeof *out);
	if (a->family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)out;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		memcpy(&sin->sin_addr, a->b, 4);
		return sizeof *sin;
	}
	if (a->family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		memcpy(&sin6->sin6_addr, a->b, 16);
		return sizeof *sin6;
	}
	return 0;
}

const char *cidr_addr_format(const struct cidr_addr *a, char *buf, size_t len)
{
	if (len == 0)
		return buf;
	buf[0] = '\0';
	if (a->family == AF_INET || a->family == AF_INET6) {
		if (inet_ntop(a->family, a->b, buf, (socklen_t)len) == NULL)
			buf[0] = '\0';
	}
	return buf;
}

const char *cidr_addr_format_port(const struct cidr_addr *a, uint16_t port,
				  char *buf, size_t len)
{
	char tmp[CIDR_ADDR_STRLEN];

	cidr_addr_format(a, tmp, sizeof tmp);
	if (a->family == AF_INET6)
		snprintf(buf, len, "[%s]:%u", tmp, (unsigned)port);
	else
		snprintf(buf, len, "%s:%u", tmp, (unsigned)port);
	return buf;
}

bool cidr_addr_equal(const struct cidr_addr *a, const struct cidr_addr *b)
{
	if (a->family != b->family)
		return false;
	size_t n = a->family == AF_INET ? 4 : a->family == AF_INET6 ? 16 : 0;
	return memcmp(a->b, b->b, n) == 0;
}

static unsigned family_max(uint8_t family)
{
	return family == AF_INET ? 32 : 128;
}

/* Zeroes every bit of a past `bits`. */
static void mask_addr(struct cidr_addr *a, unsigned bits)
{
	unsigned max = family_max(a->family);
	for (unsigned i = bits; i < max; i++)
		a->b[i >> 3] &= (uint8_t)~(0x80u >> (i & 7));
}

/* Shows at most 60 bytes of a value inside an error message. */

bool cidr_prefix_parse_reason(const char *s, size_t len, struct cidr_prefix *out,
			      char *reason, size_t reasonlen)
{
	const char *slash = s ? memchr(s, '/', len) : NULL;
	size_t alen = slash ? (size_t)(slash - s) : len;
	char tmp[CIDR_PREFIX_STRLEN + 8];

	if (reasonlen)
		reason[0] = '\0';
	memset(out, 0, sizeof *out);
	if (s == NULL || len == 0) {
		snprintf(reason, reasonlen, "is empty; expected an IP prefix like 10.0.0.0/24");
		return false;
	}
	struct cidr_addr a;
	memset(&a, 0, sizeof a);
	/* Parse the address without normalising: a mapped prefix is rewritten
	 * below together with its length. */
	if (alen == 0 || alen >= sizeof tmp) {
		snprintf(reason, reasonlen, "is not an IP prefix; expected ADDRESS/LENGTH like 10.0.0.0/24");
		return false;
	}
	memcpy(tmp, s, alen);
	tmp[alen] = '\0';
	if (strlen(tmp) != alen) {
		snprintf(reason, reasonlen, "contains a NUL byte");
		return false;
	}
	if (strchr(tmp, '%')) {
		snprintf(reason, reasonlen, "has a zone index; zones are not allowed in prefixes");
		return false;
	}
	if (inet_pton(AF_INET, tmp, a.b) == 1) {
		a.family = AF_INET;
	} else if (memset(a.b, 0, sizeof a.b), inet_pton(AF_INET6, tmp, a.b) == 1) {
		a.family = AF_INET6;
	} else {
		snprintf(reason, reasonlen, "\"%.*s\" is not an IPv4 or IPv6 address",
			 (int)(alen > 60 ? 60 : alen), tmp);
		return false;
	}
	unsigned max = family_max(a.family);
	unsigned bits = max;
	if (slash) {
		const char *p = slash + 1;
		const char *end = s + len;
		if (p == end) {
			snprintf(reason, reasonlen, "has an empty prefix length after \"/\"");
			return false;
		}
		if (*p < '0' || *p > '9') {
			snprintf(reason, reasonlen, "prefix length must be a decimal number, 0 to %u", max);
			return false;
		}
		if (*p == '0' && p + 1 < end) {
			snprintf(reason, reasonlen, "prefix length has a leading zero");
			return false;
		}
		unsigned long v = 0;
		const char *q = p;
		while (q < end && *q >= '0' && *q <= '9' && v <= 1000) {
			v = v * 10 + (unsigned)(*q - '0');
			q++;
		}
		if (q != end) {
			if (*q >= '0' && *q <= '9')
				snprintf(reason, reasonlen, "prefix length is longer than %u", max);
			else
				snprintf(reason, reasonlen,
					 "has unexpected characters after the prefix length");
			return false;
		}
		if (v > max) {
			snprintf(reason, reasonlen, "prefix length %lu is longer than %u", v, max);
			return false;
		}
		bits = (unsigned)v;
	}
	struct cidr_addr masked = a;
	mask_addr(&masked, bits);
	if (!cidr_addr_equal(&masked, &a)) {
		struct cidr_prefix sug = { .addr = masked, .bits = (uint8_t)bits };
		if (is_mapped(&sug.addr) && bits >= 96) {
			cidr_addr_normalize(&sug.addr);
			sug.bits = (uint8_t)(bits - 96);
		}
		char f[CIDR_PREFIX_STRLEN];
		snprintf(reason, reasonlen, "has host bits set; did you mean %s?",
			 cidr_prefix_format(&sug, f, sizeof f));
		return false;
	}
	out->addr = a;
	out->bits = (uint8_t)bits;
	if (is_mapped(&a) && bits >= 96) {
		cidr_addr_normalize(&out->addr);
		out->bits = (uint8_t)(bits - 96);
	}
	return true;
}

bool cidr_prefix_parse(const char *s, size_t len, struct cidr_prefix *out,
		       char *err, size_t errlen)
{
	char reason[160];

	if (cidr_prefix_parse_reason(s, len, out, reason, sizeof reason))
		return true;
	if (err && errlen) {
		char q[256];
		log_quote(s ? s : "", s ? len : 0, 60, q, sizeof q);
		if (strncmp(reason, "has ", 4) == 0 || strncmp(reason, "is ", 3) == 0 ||
		    strncmp(reason, "contains ", 9) == 0)
			snprintf(err, errlen, "\"%s\" %s", q, reason);
		else
			snprintf(err, errlen, "\"%s\": %s", q, reason);
	}
	return false;
}

static void cidr_v4_from(struct cidr_addr *out, const uint8_t *b, const int idx[4], bool invert)
{
	memset(out, 0, sizeof *out);
	out->family = AF_INET;
	for (int i = 0; i < 4; i++)
		out->b[i] = (uint8_t)(invert ? ~b[idx[i]] : b[idx[i]]);
}

static bool cidr_zero(const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

size_t cidr_addr_embedded_v4(const struct cidr_addr *a, struct cidr_addr out[4],
			     const char **form)
{
	static const int last[4] = { 12, 13, 14, 15 };
	static const int sixto4[4] = { 2, 3, 4, 5 };
	static const int teredo_server[4] = { 4, 5, 6, 7 };
	/* RFC 6052 section 2.2, for a /96, /64, /56 and /48 prefix: the
	 * address around the u-octet (byte 8); the likeliest first. */
	static const int nat64_pos[4][4] = {
		{ 12, 13, 14, 15 }, { 9, 10, 11, 12 }, { 7, 9, 10, 11 }, { 6, 7, 9, 10 },
	};
	const uint8_t *b = a->b;
	*form = NULL;
	if (a->family != AF_INET6)
		return 0;
	if (cidr_zero(b, 12) && !cidr_zero(b + 12, 3)) {
		*form = "IPv4-compatible";
		cidr_v4_from(&out[0], b, last, false);
		return 1;
	}
	if (cidr_zero(b, 12) && b[15] > 1) {	/* ::0.0.0.x past :: and ::1 */
		*form = "IPv4-compatible";
		cidr_v4_from(&out[0], b, last, false);
		return 1;
	}
	if (cidr_zero(b, 8) && b[8] == 0xff && b[9] == 0xff && b[10] == 0 && b[11] == 0) {
		*form = "IPv4-translated";
		cidr_v4_from(&out[0], b, last, false);
		return 1;
	}
	if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b) {
		if (cidr_zero(b + 4, 8)) {
			*form = "NAT64";
			cidr_v4_from(&out[0], b, last, false);
			return 1;
		}
		if (b[4] == 0x00 && b[5] == 0x01) {
			*form = "local-use NAT64";
			for (int i = 0; i < 4; i++)
				cidr_v4_from(&out[i], b, nat64_pos[i], false);
			return 4;
		}
		return 0;
	}
	if (b[0] == 0x20 && b[1] == 0x02) {
		*form = "6to4";
		cidr_v4_from(&out[0], b, sixto4, false);
		return 1;
	}
	if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x00 && b[3] == 0x00) {
		*form = "Teredo";
		cidr_v4_from(&out[0], b, teredo_server, false);
		cidr_v4_from(&out[1], b, last, true);
		return 2;
	}
	return 0;
}

bool cidr_prefix_contains(const struct cidr_prefix *p, const struct cidr_addr *a)
{
	if (p->addr.family != a->family)
		return false;
	unsigned bits = p->bits;
	unsigned full = bits >> 3;
	if (memcmp(p->addr.b, a->b, full) != 0)
		return false;
	unsigned rest = bits & 7;
	if (rest == 0)
		return true;
	uint8_t m = (uint8_t)(0xff00u >> rest);
	return (p->addr.b[full] & m) == (a->b[full] & m);
}

const char *cidr_prefix_format(const struct cidr_prefix *p, char *buf, size_t len)
{
	char a[CIDR_ADDR_STRLEN];
	snprintf(buf, len, "%s/%u", cidr_addr_format(&p->addr, a, sizeof a), (unsigned)p->bits);
	return buf;
}

bool cidr_prefix_is_default(const struct cidr_prefix *p)
{
	return (p->addr.family == AF_INET || p->addr.family == AF_INET6) && p->bits == 0;
}
