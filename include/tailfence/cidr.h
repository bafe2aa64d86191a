/*
 * cidr: IPv4/IPv6 addresses and prefixes.
 *
 * Owns parsing, formatting and matching of addresses and prefixes, and the
 * normalisation of IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) to plain IPv4,
 * which every caller relies on before any match.  Pure: no sockets, no
 * allocation except where a function says so.
 */
#ifndef TAILFENCE_CIDR_H
#define TAILFENCE_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Longest text form of an address or prefix, NUL included. */
#define CIDR_ADDR_STRLEN 46
#define CIDR_PREFIX_STRLEN 50

/* An address. family is AF_INET (bytes b[0..3]) or AF_INET6 (b[0..15]);
 * 0 means "no address". Always normalised: never an IPv4-mapped IPv6. */
struct cidr_addr {
	uint8_t family;
	uint8_t b[16];
};

/* A prefix: addr with all bits past `bits` zero (canonical). */
struct cidr_prefix {
	struct cidr_addr addr;
	uint8_t bits;
};

/* Parses a literal IPv4 or IPv6 address (no brackets, no zone, no port).
 * IPv4-mapped IPv6 is normalised to IPv4. Returns false on anything else. */
bool cidr_addr_parse(const char *s, struct cidr_addr *out);

/* Like cidr_addr_parse but over len bytes (not NUL-terminated). */
bool cidr_addr_parsen(const char *s, size_t len, struct cidr_addr *out);

/* Rewrites ::ffff:a.b.c.d as a.b.c.d; leaves anything else alone. */
void cidr_addr_normalize(struct cidr_addr *a);

/* From a sockaddr (AF_INET/AF_INET6); port in host order if port != NULL.
 * Returns false for other families. Normalises. */
bool cidr_addr_from_sockaddr(const struct sockaddr *sa, struct cidr_addr *out,
			     uint16_t *port);

/* To a sockaddr; returns its length (0 if a has no family). */
socklen_t cidr_addr_to_sockaddr(const struct cidr_addr *a, uint16_t port,
				struct sockaddr_storage *out);

/* Writes the canonical text form into buf (>= CIDR_ADDR_STRLEN); returns buf. */
const char *cidr_addr_format(const struct cidr_addr *a, char *buf, size_t len);

/* Formats "addr:port", bracketing IPv6 ("[::1]:80"). Returns buf. */
const char *cidr_addr_format_port(const struct cidr_addr *a, uint16_t port,
				  char *buf, size_t len);

bool cidr_addr_equal(const struct cidr_addr *a, const struct cidr_addr *b);

/* Parses "ADDR/BITS" strictly, the way wireguard-tools and `tailscale up`
 * do: decimal bits with no sign or leading zeros, at most 32/128, no host
 * bits set. A bare address (no "/") is accepted as a host prefix (/32 or
 * /128). IPv4-mapped IPv6 prefixes (::ffff:0:0/96 and longer) are
 * normalised to IPv4. On failure writes a sentence naming the value and
 * what was expected into err, e.g.
 *   "10.0.0.1/24" has host bits set; did you mean 10.0.0.0/24?
 */
bool cidr_prefix_parse(const char *s, size_t len, struct cidr_prefix *out,
		       char *err, size_t errlen);

/* Like cidr_prefix_parse, but writes only the reason, without the value, so
 * that callers can quote a larger entry ("10.0.0.0/33:80": REASON). Reasons
 * read as "prefix length 33 is longer than 32" or "has host bits set; did
 * you mean 10.0.0.0/24?". */
bool cidr_prefix_parse_reason(const char *s, size_t len, struct cidr_prefix *out,
			      char *reason, size_t reasonlen);

bool cidr_prefix_contains(const struct cidr_prefix *p, const struct cidr_addr *a);

/* Writes "addr/bits" into buf (>= CIDR_PREFIX_STRLEN); returns buf. */
const char *cidr_prefix_format(const struct cidr_prefix *p, char *buf, size_t len);

/* IPv4 addresses an IPv6 address carries by a well-known convention, where
 * a network may deliver it to that IPv4 address: IPv4-compatible
 * (::a.b.c.d, not :: or ::1), IPv4-translated (::ffff:0:a.b.c.d), NAT64
 * (64:ff9b::/96; 64:ff9b:1::/48 at each RFC 6052 position, since its
 * prefix length is the operator's choice), 6to4 (2002::/16) and Teredo
 * (2001::/32: server and client). Writes up to 4 candidates into out,
 * names the convention in *form, returns how many (0 for any other
 * address). Pure. */
size_t cidr_addr_embedded_v4(const struct cidr_addr *a, struct cidr_addr out[4],
			     const char **form);

/* True for 0.0.0.0/0 and ::/0. */
bool cidr_prefix_is_default(const struct cidr_prefix *p);

/* Bit i (0 = most significant) of the address. */
static inline int cidr_addr_bit(const struct cidr_addr *a, unsigned i)
{
	return (a->b[i >> 3] >> (7 - (i & 7))) & 1;
}

#endif
