/*
 * socks_udp_fuzzer: libFuzzer target for the SOCKS5 UDP datagram header
 * (RFC 1928 section 7), which tailfence parses from clients and from
 * tailscaled's relay.
 *
 * Invariants: a header that parses is no longer than the datagram; its
 * address is IPv4, IPv6 (never IPv4-mapped) or a NUL-free name of 1 to 255
 * bytes; an IP-address header encodes back to a header that parses to the
 * same address and port; cutting the datagram inside its header never
 * parses.
 */
#include "tailfence/socks.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct socks5_udp_header h;
	const char *why = NULL;
	enum socks_step st = socks5_udp_parse(data, size, &h, &why);
	if (st != SOCKS_REQUEST) {
		if (st != SOCKS_ERROR || !why)
			abort();
		return 0;
	}
	if (h.len > size || h.len < 7)
		abort();
	if (h.dst.is_name) {
		if (h.dst.host_len == 0 || h.dst.host_len > 255 ||
		    strlen(h.dst.host) != h.dst.host_len)
			abort();
	} else {
		if (h.dst.addr.family != AF_INET && h.dst.addr.family != AF_INET6)
			abort();
		static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		if (h.dst.addr.family == AF_INET6 && memcmp(h.dst.addr.b, mapped, 12) == 0)
			abort();
		uint8_t enc[32];
		size_t n = socks5_udp_encode(enc, &h.dst.addr, h.dst.port);
		struct socks5_udp_header h2;
		if (n == 0 || socks5_udp_parse(enc, n, &h2, &why) != SOCKS_REQUEST || h2.len != n ||
		    h2.frag != 0 || h2.dst.is_name || !cidr_addr_equal(&h2.dst.addr, &h.dst.addr) ||
		    h2.dst.port != h.dst.port)
			abort();
	}
	for (size_t k = 0; k < h.len; k++) {
		struct socks5_udp_header hp;
		if (socks5_udp_parse(data, k, &hp, &why) != SOCKS_ERROR)
			abort();
	}
	return 0;
}
