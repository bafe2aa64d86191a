/*
 * socks_client_fuzzer: libFuzzer target for the client side of SOCKS5
 * (tailfence talking to tailscaled): the method, auth and CONNECT-reply
 * parsers, and round trips between the encoders and the parsers.
 *
 * Input: byte 0 picks what to exercise, the rest is what the upstream
 * sends (or, for round trips, the values to encode). Invariants: consumed
 * <= len; NEED_MORE consumes nothing; every proper prefix of a complete
 * message needs more; bytes after a message are never consumed; what the
 * encoders write parses back to the same values.
 */
#include "tailfence/socks.h"

#include <stdlib.h>
#include <string.h>

static void parse_all(const uint8_t *in, size_t len)
{
	size_t n = 999;
	uint8_t m;
	bool ok;
	enum socks_step st = socks5_client_parse_method(in, len, &n, &m);
	if (n > len || (st == SOCKS_NEED_MORE && (n || len >= 2)) ||
	    (st == SOCKS_REQUEST && n != 2))
		abort();
	st = socks5_client_parse_auth(in, len, &n, &ok);
	if (n > len || (st == SOCKS_NEED_MORE && (n || len >= 2)) ||
	    (st == SOCKS_REQUEST && n != 2))
		abort();

	uint8_t rep;
	struct cidr_addr bnd;
	uint16_t port;
	st = socks5_client_parse_reply(in, len, &n, &rep, &bnd, &port);
	if (n > len || (st == SOCKS_NEED_MORE && n))
		abort();
	if (st == SOCKS_REQUEST) {
		if (bnd.family != 0 && bnd.family != AF_INET && bnd.family != AF_INET6)
			abort();
		/* The same message with anything after it: same result. */
		size_t whole = n;
		for (size_t k = 0; k < whole; k++) {
			size_t pn = 999;
			uint8_t r2;
			struct cidr_addr b2;
			uint16_t p2;
			if (socks5_client_parse_reply(in, k, &pn, &r2, &b2, &p2) != SOCKS_NEED_MORE ||
			    pn != 0)
				abort();
		}
	}
}

static void round_trip(const uint8_t *in, size_t len)
{
	if (len < 20)
		return;
	struct cidr_addr a;
	memset(&a, 0, sizeof a);
	a.family = (in[0] & 1) ? AF_INET6 : AF_INET;
	memcpy(a.b, in + 1, a.family == AF_INET ? 4 : 16);
	cidr_addr_normalize(&a);
	uint16_t port = (uint16_t)(in[17] << 8 | in[18]);
	uint8_t rep = in[19];

	/* CONNECT request: the server parser reads back the same target. */
	uint8_t buf[600];
	memcpy(buf, "\x05\x01\x00", 3);
	size_t n = socks5_client_connect(buf + 3, &a, port);
	if (n != (a.family == AF_INET ? 10 : 22))
		abort();
	struct socks_server s;
	socks_server_init(&s, true, false);
	size_t used;
	if (socks_server_feed(&s, buf, 3 + n, &used) != SOCKS_REPLY || used != 3)
		abort();
	if (socks_server_feed(&s, buf + 3, n, &used) != SOCKS_REQUEST || used != n ||
	    s.target.is_name || !cidr_addr_equal(&s.target.addr, &a) || s.target.port != port)
		abort();

	/* Reply: the client parser reads back rep, address and port. */
	n = socks5_encode_reply(buf, rep, &a, port);
	uint8_t r2;
	struct cidr_addr b2;
	uint16_t p2;
	if (socks5_client_parse_reply(buf, n, &used, &r2, &b2, &p2) != SOCKS_REQUEST ||
	    used != n || r2 != rep || !cidr_addr_equal(&b2, &a) || p2 != port)
		abort();

	/* Auth: user/pass from the rest of the input, read back by the server. */
	size_t rest = len - 20;
	const uint8_t *r = in + 20;
	char user[300], pass[300];
	size_t ul = rest / 2 > 260 ? 260 : rest / 2;
	size_t pl = rest - rest / 2 > 260 ? 260 : rest - rest / 2;
	memcpy(user, r, ul);
	user[ul] = 0;
	memcpy(pass, r + rest / 2, pl);
	pass[pl] = 0;
	n = socks5_client_auth(buf, sizeof buf, user, pass);
	size_t uls = strlen(user), pls = strlen(pass);
	if (uls == 0 || uls > 255 || pls > 255) {
		if (n != 0)
			abort();
		return;
	}
	if (n != 3 + uls + pls)
		abort();
	socks_server_init(&s, false, true);
	if (socks_server_feed(&s, (const uint8_t *)"\x05\x01\x02", 3, &used) != SOCKS_REPLY)
		abort();
	if (socks_server_feed(&s, buf, n, &used) != SOCKS_AUTH || used != n ||
	    strcmp(s.user, user) != 0 || strcmp(s.pass, pass) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	uint8_t *in = malloc(size);
	memcpy(in, data + 1, size - 1);
	if (mode & 1)
		round_trip(in, size - 1);
	else
		parse_all(in, size - 1);
	free(in);
	return 0;
}
