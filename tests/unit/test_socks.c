/*
 * test_socks: table-driven tests of the SOCKS4/4a/5 server handshake parser
 * and the client-side (upstream) encoders and parsers.
 *
 * Every server case is run twice: with all input at once, and one byte at a
 * time (the way a slow or hostile client delivers it). Both runs must give
 * the expected final step, replies, consumed count and parsed fields.
 */
#include "tailfence/socks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define B(s) (const uint8_t *)(s), sizeof(s) - 1

static const char *step_name(enum socks_step s)
{
	static const char *const n[] = { "NEED_MORE", "REPLY", "AUTH", "REQUEST", "ERROR" };
	return (unsigned)s < 5 ? n[s] : "?";
}

static void hex(const uint8_t *p, size_t n, char *out, size_t cap)
{
	size_t o = 0;
	out[0] = '\0';
	for (size_t i = 0; i < n && o + 3 < cap; i++)
		o += (size_t)snprintf(out + o, cap - o, "%02x", p[i]);
}

struct s_case {
	const char *name;
	const uint8_t *in;
	size_t len;
	bool allow_noauth, prefer_userpass, auth_ok;
	enum socks_step step;		/* final step */
	const uint8_t *out;		/* every reply written, concatenated */
	size_t out_len;
	size_t consumed;		/* total */
	/* When step == SOCKS_REQUEST: */
	int version;
	bool is_name;
	const char *host;		/* name, or address in canonical text */
	uint16_t port;
	bool have_credentials;
	const char *user, *pass;
	bool socks4a;
	uint8_t cmd;			/* checked when nonzero */
	bool allow_udp;			/* the server accepts UDP ASSOCIATE */
};

struct s_result {
	enum socks_step step;
	uint8_t out[1024];
	size_t out_len;
	size_t consumed;
	struct socks_server s;
	int need_more_consumed;		/* times NEED_MORE consumed bytes (must be 0) */
};

/* Runs the handshake. bytewise: make bytes available one at a time. */
static void run(const struct s_case *c, bool bytewise, struct s_result *r)
{
	memset(r, 0, sizeof *r);
	socks_server_init(&r->s, c->allow_noauth, c->prefer_userpass);
	r->s.allow_udp = c->allow_udp;
	size_t off = 0, avail = bytewise ? 0 : c->len;
	for (int guard = 0; guard < 100000; guard++) {
		size_t n = 0;
		enum socks_step st = socks_server_feed(&r->s, c->in + off, avail - off, &n);
		if (n > avail - off) {
			r->need_more_consumed++;
			n = avail - off;
		}
		off += n;
		if (st == SOCKS_NEED_MORE) {
			if (n)
				r->need_more_consumed++;
			if (avail == c->len) {
				r->step = st;
				break;
			}
			avail++;
			continue;
		}
		if (st == SOCKS_AUTH) {
			memcpy(r->out + r->out_len, r->s.out, 0);
			st = socks5_server_auth_result(&r->s, c->auth_ok);
		}
		if (r->s.out_len) {
			memcpy(r->out + r->out_len, r->s.out, r->s.out_len);
			r->out_len += r->s.out_len;
		}
		if (st == SOCKS_REPLY)
			continue;
		r->step = st;
		break;
	}
	r->consumed = off;
}

static void check_case(const struct s_case *c)
{
	for (int bw = 0; bw < 2; bw++) {
		struct s_result r;
		run(c, bw, &r);
		const char *mode = bw ? "byte by byte" : "all at once";
		char got[2100], want[2100];
		CHECK(r.step == c->step, "%s (%s): step %s, want %s (why: %s)", c->name, mode,
		      step_name(r.step), step_name(c->step), r.s.why ? r.s.why : "-");
		hex(r.out, r.out_len, got, sizeof got);
		hex(c->out ? c->out : (const uint8_t *)"", c->out_len, want, sizeof want);
		CHECK(r.out_len == c->out_len && (!c->out_len || memcmp(r.out, c->out, c->out_len) == 0),
		      "%s (%s): replies %s, want %s", c->name, mode, got, want);
		CHECK(r.consumed == c->consumed, "%s (%s): consumed %zu, want %zu", c->name, mode,
		      r.consumed, c->consumed);
		CHECK(r.need_more_consumed == 0, "%s (%s): NEED_MORE consumed bytes", c->name, mode);
		if (c->step == SOCKS_ERROR)
			CHECK(r.s.why != NULL, "%s (%s): error without why", c->name, mode);
		if (c->cmd)
			CHECK(r.s.cmd == c->cmd, "%s (%s): cmd %u, want %u", c->name, mode, r.s.cmd,
			      c->cmd);
		if (c->step != SOCKS_REQUEST || r.step != SOCKS_REQUEST)
			continue;
		const struct socks_target *t = &r.s.target;
		char addr[CIDR_ADDR_STRLEN];
		const char *host = t->is_name ? t->host : cidr_addr_format(&t->addr, addr, sizeof addr);
		CHECK(r.s.version == c->version, "%s (%s): version %d, want %d", c->name, mode,
		      r.s.version, c->version);
		CHECK(t->is_name == c->is_name, "%s (%s): is_name %d, want %d", c->name, mode,
		      t->is_name, c->is_name);
		CHECK(strcmp(host, c->host) == 0, "%s (%s): host \"%s\", want \"%s\"", c->name,
		      mode, host, c->host);
		CHECK(t->port == c->port, "%s (%s): port %u, want %u", c->name, mode, t->port,
		      c->port);
		CHECK(r.s.have_credentials == c->have_credentials,
		      "%s (%s): have_credentials %d, want %d", c->name, mode,
		      r.s.have_credentials, c->have_credentials);
		CHECK(strcmp(r.s.user, c->user ? c->user : "") == 0, "%s (%s): user \"%s\"",
		      c->name, mode, r.s.user);
		CHECK(strcmp(r.s.pass, c->pass ? c->pass : "") == 0, "%s (%s): pass \"%s\"",
		      c->name, mode, r.s.pass);
		CHECK(r.s.socks4a == c->socks4a, "%s (%s): socks4a %d", c->name, mode, r.s.socks4a);
		if (c->version == 5)
			CHECK(r.s.cmd == (c->cmd ? c->cmd : SOCKS_CMD_CONNECT), "%s (%s): cmd %u",
			      c->name, mode, r.s.cmd);
	}
}

/* SOCKS5 failure reply with 0.0.0.0:0. */
#define FAIL5(rep) "\x05" rep "\x00\x01\x00\x00\x00\x00\x00\x00"
#define FAIL4 "\x00\x5b\x00\x00\x00\x00\x00\x00"

static const struct s_case cases[] = {
	/* ---- SOCKS5, no auth ---- */
	{ .name = "v5 connect ipv4",
	  .in = B("\x05\x01\x00" "\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50"),
	  .allow_noauth = true, .step = SOCKS_REQUEST, .out = B("\x05\x00"), .consumed = 13,
	  .version = 5, .host = "127.0.0.1", .port = 80 },
	{ .name = "v5 bytes after the request stay unconsumed",
	  .in = B("\x05\x01\x00" "\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50" "GET / HTTP/1.1\r\n"),
	  .allow_noauth = true, .step = SOCKS_REQUEST, .out = B("\x05\x00"), .consumed = 13,
	  .version = 5, .host = "127.0.0.1", .port = 80 },
	{ .name = "v5 connect ipv6",
	  .in = B("\x05\x01\x00" "\x05\x01\x00\x04" "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01" "\x01\xbb"),
	  .allow_noauth = true, .step = SOCKS_REQUEST, .out = B("\x05\x00"), .consumed = 25,
	  .version = 5, .host = "::1", .port = 443 },
	{ .name = "v5 ipv4-mapped ipv6 is normalised",
	  .in = B("\x05\x01\x00" "\x05\x01\x00\x04" "\0\0\0\0\0\0\0\0\0\0\xff\xff\x7f\x00\x01\x02" "\x15\x38"),
	  .allow_noauth = true, .step = SOCKS_REQUEST, .out = B("\x05\x00"), .consumed = 25,
	  .version = 5, .host = "127.0.1.2", .port = 5432 },
	{ .name = "v5 connect domain",
	  .in = B("\x05\x01\x00" "\x05\x01\x00\x03\x09localhost\x15\x38"),
	  .allow_noauth = true, .step = SOCKS_REQUEST, .out = B("\x05\x00"), .consumed = 19,
	  .version = 5, .is_name = true, .host = "localhost", .port = 5432 },
	{ .name = "v5 domain that is an IPv4 literal becomes an address",
	  .in = B("\x05\x01\x00" "\x05\x01\x00\x03\x09" "127.0.0.2" "\x00\x50"),
	  .allow_noauth = true, .step = SOCKS_REQUEST, .out = B("\x05\x00"), .consumed = 19,
	  .version = 5, .host = "127.0.0.2", .port = 80 },
	{ .name = "v5 domain that is an IPv6 literal becomes an address",
	  .in = B("\x05\x01\x00" "\x05\x01\x00\x03\x03" "::1" "\x00\x50"),
	  .allow_noauth = true, .step = SOCKS_REQUEST, .out = B("\x05\x00"), .consumed = 13,
	  .version = 5, .host = "::1", .port = 80 },
	{ .name = "v5 numeric-looking name stays a name",
	  .in = B("\x05\x01\x00" "\x05\x01\x00\x03\x0a" "2130706433" "\x00\x50"),
	  .allow_noauth = true, .step = SOCKS_REQUEST, .out = B("\x05\x00"), .consumed = 20,
	  .version = 5, .is_name = true, .host = "2130706433", .port = 80 },
	{ .name = "v5 port 65535",
	  .in = B("\x05\x01\x00" "\x05\x01\x00\x01\x7f\x00\x00\x01\xff\xff"),
	  .allow_noauth = true, .step = SOCKS_REQUEST, .out = B("\x05\x00"), .consumed = 13,
	  .version = 5, .host = "127.0.0.1", .port = 65535 },
	{ .name = "v5 several methods, no-auth among them",
	  .in = B("\x05\x03\x01\x80\x00" "\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50"),
	  .allow_noauth = true, .step = SOCKS_REQUEST, .out = B("\x05\x00"), .consumed = 15,
	  .version = 5, .host = "127.0.0.1", .port = 80 },
	{ .name = "v5 no-auth preferred over offered user/pass",
	  .in = B("\x05\x02\x00\x02" "\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50"),
	  .allow_noauth = true, .step = SOCKS_REQUEST, .out = B("\x05\x00"), .consumed = 14,
	  .version = 5, .host = "127.0.0.1", .port = 80 },

	/* ---- SOCKS5 greeting errors ---- */
	{ .name = "v5 nmethods 0",
	  .in = B("\x05\x00"), .allow_noauth = true,
	  .step = SOCKS_ERROR, .out = B("\x05\xff"), .consumed = 2 },
	{ .name = "v5 only gssapi offered",
	  .in = B("\x05\x01\x01"), .allow_noauth = true,
	  .step = SOCKS_ERROR, .out = B("\x05\xff"), .consumed = 3 },
	{ .name = "v5 no-auth offered but not allowed",
	  .in = B("\x05\x01\x00" "\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50"),
	  .allow_noauth = false, .step = SOCKS_ERROR, .out = B("\x05\xff"), .consumed = 3 },
	{ .name = "v5 truncated greeting",
	  .in = B("\x05\x03\x00\x01"), .allow_noauth = true,
	  .step = SOCKS_NEED_MORE, .consumed = 0 },
	{ .name = "empty input",
	  .in = B(""), .allow_noauth = true, .step = SOCKS_NEED_MORE, .consumed = 0 },
	{ .name = "not SOCKS",
	  .in = B("GET / HTTP/1.1\r\n"), .allow_noauth = true,
	  .step = SOCKS_ERROR, .consumed = 1 },

	/* ---- SOCKS5 username/password (RFC 1929) ---- */
	{ .name = "v5 user/pass only offered: chosen, accepted",
	  .in = B("\x05\x01\x02" "\x01\x05" "alice\x06s3cr3t" "\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50"),
	  .allow_noauth = true, .auth_ok = true, .step = SOCKS_REQUEST,
	  .out = B("\x05\x02" "\x01\x00"), .consumed = 3 + 14 + 10,
	  .version = 5, .host = "127.0.0.1", .port = 80, .have_credentials = true,
	  .user = "alice", .pass = "s3cr3t" },
	{ .name = "v5 prefer user/pass when both offered",
	  .in = B("\x05\x02\x00\x02" "\x01\x01u\x01p" "\x05\x01\x00\x03\x09localhost\x00\x50"),
	  .allow_noauth = true, .prefer_userpass = true, .auth_ok = true, .step = SOCKS_REQUEST,
	  .out = B("\x05\x02" "\x01\x00"), .consumed = 4 + 5 + 16,
	  .version = 5, .is_name = true, .host = "localhost", .port = 80,
	  .have_credentials = true, .user = "u", .pass = "p" },
	/* The daemon without users (allow no-auth, no preference): no-auth
	 * whenever it is offered, so there are no credentials to check. */
	{ .name = "v5 no users: no-auth chosen over user/pass",
	  .in = B("\x05\x02\x00\x02" "\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50"),
	  .allow_noauth = true, .step = SOCKS_REQUEST,
	  .out = B("\x05\x00"), .consumed = 4 + 10,
	  .version = 5, .host = "127.0.0.1", .port = 80 },
	{ .name = "v5 no users: no-auth chosen, offered last",
	  .in = B("\x05\x03\x02\x01\x00" "\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50"),
	  .allow_noauth = true, .step = SOCKS_REQUEST,
	  .out = B("\x05\x00"), .consumed = 5 + 10,
	  .version = 5, .host = "127.0.0.1", .port = 80 },
	/* The daemon with users (no-auth not allowed, prefer user/pass). */
	{ .name = "v5 users: user/pass chosen over no-auth",
	  .in = B("\x05\x02\x00\x02" "\x01\x01u\x01p" "\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50"),
	  .allow_noauth = false, .prefer_userpass = true, .auth_ok = true, .step = SOCKS_REQUEST,
	  .out = B("\x05\x02" "\x01\x00"), .consumed = 4 + 5 + 10,
	  .version = 5, .host = "127.0.0.1", .port = 80,
	  .have_credentials = true, .user = "u", .pass = "p" },
	{ .name = "v5 user/pass required when no-auth not allowed",
	  .in = B("\x05\x02\x00\x02" "\x01\x01u\x01p" "\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50"),
	  .allow_noauth = false, .auth_ok = true, .step = SOCKS_REQUEST,
	  .out = B("\x05\x02" "\x01\x00"), .consumed = 4 + 5 + 10,
	  .version = 5, .host = "127.0.0.1", .port = 80,
	  .have_credentials = true, .user = "u", .pass = "p" },
	{ .name = "v5 empty password accepted by the parser",
	  .in = B("\x05\x01\x02" "\x01\x03" "bob\x00" "\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50"),
	  .allow_noauth = false, .auth_ok = true, .step = SOCKS_REQUEST,
	  .out = B("\x05\x02" "\x01\x00"), .consumed = 3 + 6 + 10,
	  .version = 5, .host = "127.0.0.1", .port = 80,
	  .have_credentials = true, .user = "bob", .pass = "" },
	{ .name = "v5 credentials rejected",
	  .in = B("\x05\x01\x02" "\x01\x01u\x01p" "\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50"),
	  .allow_noauth = false, .auth_ok = false, .step = SOCKS_ERROR,
	  .out = B("\x05\x02" "\x01\x01"), .consumed = 3 + 5 },
	{ .name = "v5 auth version not 1",
	  .in = B("\x05\x01\x02" "\x05\x01u\x01p"),
	  .allow_noauth = false, .auth_ok = true, .step = SOCKS_ERROR,
	  .out = B("\x05\x02" "\x01\x01"), .consumed = 4 },
	{ .name = "v5 empty username",
	  .in = B("\x05\x01\x02" "\x01\x00\x01p"),
	  .allow_noauth = false, .auth_ok = true, .step = SOCKS_ERROR,
	  .out = B("\x05\x02" "\x01\x01"), .consumed = 5 },
	{ .name = "v5 NUL inside username",
	  .in = B("\x05\x01\x02" "\x01\x03" "a\0b" "\x01p"),
	  .allow_noauth = false, .auth_ok = true, .step = SOCKS_ERROR,
	  .out = B("\x05\x02" "\x01\x01"), .consumed = 3 + 7 },
	{ .name = "v5 NUL inside password",
	  .in = B("\x05\x01\x02" "\x01\x01u\x02" "p\0"),
	  .allow_noauth = false, .auth_ok = true, .step = SOCKS_ERROR,
	  .out = B("\x05\x02" "\x01\x01"), .consumed = 3 + 6 },
	{ .name = "v5 truncated auth",
	  .in = B("\x05\x01\x02" "\x01\x05" "ali"),
	  .allow_noauth = false, .auth_ok = true, .step = SOCKS_NEED_MORE,
	  .out = B("\x05\x02"), .consumed = 3 },

	/* ---- SOCKS5 request errors ---- */
	{ .name = "v5 BIND -> 0x07",
	  .in = B("\x05\x01\x00" "\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50"),
	  .allow_noauth = true, .step = SOCKS_ERROR,
	  .out = B("\x05\x00" FAIL5("\x07")), .consumed = 7, .cmd = SOCKS_CMD_BIND },
	{ .name = "v5 UDP ASSOCIATE -> 0x07",
	  .in = B("\x05\x01\x00" "\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00"),
	  .allow_noauth = true, .step = SOCKS_ERROR,
	  .out = B("\x05\x00" FAIL5("\x07")), .consumed = 7, .cmd = SOCKS_CMD_UDP_ASSOCIATE },
	{ .name = "v5 UDP ASSOCIATE accepted when allowed",
	  .in = B("\x05\x01\x00" "\x05\x03\x00\x01\x7f\x00\x00\x01\x9c\x40"),
	  .allow_noauth = true, .allow_udp = true, .step = SOCKS_REQUEST,
	  .out = B("\x05\x00"), .consumed = 13, .version = 5, .host = "127.0.0.1", .port = 40000,
	  .cmd = SOCKS_CMD_UDP_ASSOCIATE },
	{ .name = "v5 UDP ASSOCIATE any source (0.0.0.0:0)",
	  .in = B("\x05\x01\x00" "\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00"),
	  .allow_noauth = true, .allow_udp = true, .step = SOCKS_REQUEST,
	  .out = B("\x05\x00"), .consumed = 13, .version = 5, .host = "0.0.0.0", .port = 0,
	  .cmd = SOCKS_CMD_UDP_ASSOCIATE },
	{ .name = "v5 BIND still refused with UDP allowed",
	  .in = B("\x05\x01\x00" "\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00"),
	  .allow_noauth = true, .allow_udp = true, .step = SOCKS_ERROR,
	  .out = B("\x05\x00" FAIL5("\x07")), .consumed = 7, .cmd = SOCKS_CMD_BIND },
	{ .name = "v5 unknown command -> 0x07",
	  .in = B("\x05\x01\x00" "\x05\x09\x00\x01\x7f\x00\x00\x01\x00\x50"),
	  .allow_noauth = true, .step = SOCKS_ERROR,
	  .out = B("\x05\x00" FAIL5("\x07")), .consumed = 7 },
	{ .name = "v5 unknown ATYP -> 0x08",
	  .in = B("\x05\x01\x00" "\x05\x01\x00\x02\x7f\x00\x00\x01\x00\x50"),
	  .allow_noauth = true, .step = SOCKS_ERROR,
	  .out = B("\x05\x00" FAIL5("\x08")), .consumed = 7 },
	{ .name = "v5 request version 4",
	  .in = B("\x05\x01\x00" "\x04\x01\x00\x01\x7f\x00\x00\x01\x00\x50"),
	  .allow_noauth = true, .step = SOCKS_ERROR,
	  .out = B("\x05\x00" FAIL5("\x01")), .consumed = 7 },
	{ .name = "v5 RSV not zero",
	  .in = B("\x05\x01\x00" "\x05\x01\x01\x01\x7f\x00\x00\x01\x00\x50"),
	  .allow_noauth = true, .step = SOCKS_ERROR,
	  .out = B("\x05\x00" FAIL5("\x01")), .consumed = 7 },
	{ .name = "v5 domain length 0",
	  .in = B("\x05\x01\x00" "\x05\x01\x00\x03\x00\x00\x50"),
	  .allow_noauth = true, .step = SOCKS_ERROR,
	  .out = B("\x05\x00" FAIL5("\x01")), .consumed = 8 },
	{ .name = "v5 NUL inside domain",
	  .in = B("\x05\x01\x00" "\x05\x01\x00\x03\x05" "ab\0cd" "\x00\x50"),
	  .allow_noauth = true, .step = SOCKS_ERROR,
	  .out = B("\x05\x00" FAIL5("\x01")), .consumed = 3 + 12 },
	{ .name = "v5 truncated request (port missing)",
	  .in = B("\x05\x01\x00" "\x05\x01\x00\x01\x7f\x00\x00\x01\x00"),
	  .allow_noauth = true, .step = SOCKS_NEED_MORE, .out = B("\x05\x00"), .consumed = 3 },
	{ .name = "v5 truncated domain request",
	  .in = B("\x05\x01\x00" "\x05\x01\x00\x03\x09local"),
	  .allow_noauth = true, .step = SOCKS_NEED_MORE, .out = B("\x05\x00"), .consumed = 3 },

	/* ---- SOCKS4 / SOCKS4a ---- */
	{ .name = "v4 connect",
	  .in = B("\x04\x01\x00\x50\x7f\x00\x00\x01" "\0"),
	  .step = SOCKS_REQUEST, .consumed = 9, .version = 4, .host = "127.0.0.1", .port = 80 },
	{ .name = "v4 connect with userid and trailing data",
	  .in = B("\x04\x01\x15\x38\x7f\x00\x01\x05" "alice\0" "\x00\x01"),
	  .step = SOCKS_REQUEST, .consumed = 14, .version = 4, .host = "127.0.1.5", .port = 5432,
	  .have_credentials = true, .user = "alice" },
	{ .name = "v4 IP 0.0.0.0 is not SOCKS4a",
	  .in = B("\x04\x01\x00\x50\x00\x00\x00\x00" "\0"),
	  .step = SOCKS_REQUEST, .consumed = 9, .version = 4, .host = "0.0.0.0", .port = 80 },
	{ .name = "v4a connect",
	  .in = B("\x04\x01\x01\xbb\x00\x00\x00\x01" "\0" "localhost\0"),
	  .step = SOCKS_REQUEST, .consumed = 19, .version = 4, .socks4a = true,
	  .is_name = true, .host = "localhost", .port = 443 },
	{ .name = "v4a with userid",
	  .in = B("\x04\x01\x00\x16\x00\x00\x00\xff" "me\0" "db.internal\0" "x"),
	  .step = SOCKS_REQUEST, .consumed = 8 + 3 + 12, .version = 4, .socks4a = true,
	  .is_name = true, .host = "db.internal", .port = 22, .have_credentials = true,
	  .user = "me" },
	{ .name = "v4a name that is an address literal",
	  .in = B("\x04\x01\x00\x50\x00\x00\x00\x01" "\0" "127.0.0.3\0"),
	  .step = SOCKS_REQUEST, .consumed = 19, .version = 4, .socks4a = true,
	  .host = "127.0.0.3", .port = 80 },
	{ .name = "v4 BIND rejected",
	  .in = B("\x04\x02\x00\x50\x7f\x00\x00\x01" "\0"),
	  .step = SOCKS_ERROR, .out = B(FAIL4), .consumed = 8, .cmd = SOCKS_CMD_BIND },
	{ .name = "v4 unknown command rejected",
	  .in = B("\x04\x07\x00\x50\x7f\x00\x00\x01" "\0"),
	  .step = SOCKS_ERROR, .out = B(FAIL4), .consumed = 8 },
	{ .name = "v4a empty hostname",
	  .in = B("\x04\x01\x00\x50\x00\x00\x00\x01" "\0" "\0"),
	  .step = SOCKS_ERROR, .out = B(FAIL4), .consumed = 10 },
	{ .name = "v4 truncated userid",
	  .in = B("\x04\x01\x00\x50\x7f\x00\x00\x01" "ali"),
	  .step = SOCKS_NEED_MORE, .consumed = 0 },
	{ .name = "v4a truncated hostname",
	  .in = B("\x04\x01\x00\x50\x00\x00\x00\x01" "\0" "local"),
	  .step = SOCKS_NEED_MORE, .consumed = 0 },
};

/* Cases with long fields, built at run time. */
static void long_cases(void)
{
	static uint8_t buf[2048];
	char name[300];
	struct s_case c;

	/* SOCKS5 domain of 255 bytes: accepted. */
	memset(&c, 0, sizeof c);
	memset(name, 'a', 255);
	name[255] = '\0';
	memcpy(buf, "\x05\x01\x00\x05\x01\x00\x03\xff", 8);
	memcpy(buf + 8, name, 255);
	memcpy(buf + 263, "\x01\xbb", 2);
	c = (struct s_case){ .name = "v5 domain of 255 bytes", .in = buf, .len = 265,
			     .allow_noauth = true, .step = SOCKS_REQUEST,
			     .out = (const uint8_t *)"\x05\x00", .out_len = 2, .consumed = 265,
			     .version = 5, .is_name = true, .host = name, .port = 443 };
	check_case(&c);

	/* SOCKS5 greeting with 255 methods, no-auth last. */
	buf[0] = 5;
	buf[1] = 255;
	for (int i = 0; i < 255; i++)
		buf[2 + i] = (uint8_t)(i + 1);	/* 1..255, so 0xff is offered; 0 isn't */
	buf[2 + 254] = 0;
	memcpy(buf + 257, "\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50", 10);
	c = (struct s_case){ .name = "v5 255 methods", .in = buf, .len = 267,
			     .allow_noauth = true, .step = SOCKS_REQUEST,
			     .out = (const uint8_t *)"\x05\x00", .out_len = 2, .consumed = 267,
			     .version = 5, .host = "127.0.0.1", .port = 80 };
	check_case(&c);

	/* SOCKS5 user and password of 255 bytes each. */
	memcpy(buf, "\x05\x01\x02\x01\xff", 5);
	memset(buf + 5, 'u', 255);
	buf[260] = 0xff;
	memset(buf + 261, 'p', 255);
	memcpy(buf + 516, "\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50", 10);
	char user[256], pass[256];
	memset(user, 'u', 255);
	user[255] = 0;
	memset(pass, 'p', 255);
	pass[255] = 0;
	c = (struct s_case){ .name = "v5 255-byte user and password", .in = buf, .len = 526,
			     .auth_ok = true, .step = SOCKS_REQUEST,
			     .out = (const uint8_t *)"\x05\x02\x01\x00", .out_len = 4,
			     .consumed = 526, .version = 5, .host = "127.0.0.1", .port = 80,
			     .have_credentials = true, .user = user, .pass = pass };
	check_case(&c);

	/* SOCKS4 USERID of 255 bytes: accepted; of 256: refused. */
	memcpy(buf, "\x04\x01\x00\x50\x7f\x00\x00\x01", 8);
	memset(buf + 8, 'u', 255);
	buf[263] = 0;
	c = (struct s_case){ .name = "v4 userid of 255 bytes", .in = buf, .len = 264,
			     .step = SOCKS_REQUEST, .consumed = 264, .version = 4,
			     .host = "127.0.0.1", .port = 80, .have_credentials = true,
			     .user = user };
	memset(user, 'u', 255);
	check_case(&c);
	buf[263] = 'u';
	buf[264] = 0;
	c = (struct s_case){ .name = "v4 userid of 256 bytes", .in = buf, .len = 265,
			     .step = SOCKS_ERROR, .out = (const uint8_t *)FAIL4, .out_len = 8,
			     .consumed = 264 };
	check_case(&c);

	/* SOCKS4a HOSTNAME of 255 bytes: accepted; of 256: refused. */
	memcpy(buf, "\x04\x01\x00\x50\x00\x00\x00\x01\x00", 9);
	memset(buf + 9, 'h', 255);
	buf[264] = 0;
	memset(name, 'h', 255);
	name[255] = 0;
	c = (struct s_case){ .name = "v4a hostname of 255 bytes", .in = buf, .len = 265,
			     .step = SOCKS_REQUEST, .consumed = 265, .version = 4,
			     .socks4a = true, .is_name = true, .host = name, .port = 80 };
	check_case(&c);
	buf[264] = 'h';
	buf[265] = 0;
	c = (struct s_case){ .name = "v4a hostname of 256 bytes", .in = buf, .len = 266,
			     .step = SOCKS_ERROR, .out = (const uint8_t *)FAIL4, .out_len = 8,
			     .consumed = 265 };
	check_case(&c);
}

static void misuse(void)
{
	struct socks_server s;
	size_t n;
	socks_server_init(&s, true, false);
	CHECK(socks5_server_auth_result(&s, true) == SOCKS_ERROR && s.out_len == 0,
	      "auth_result before any auth is an error");
	socks_server_init(&s, true, false);
	const uint8_t req[] = "\x04\x01\x00\x50\x7f\x00\x00\x01";
	CHECK(socks_server_feed(&s, req, 9, &n) == SOCKS_REQUEST, "v4 request");
	CHECK(socks_server_feed(&s, req, 9, &n) == SOCKS_ERROR && n == 0,
	      "feeding after the request is an error");
	socks_server_init(&s, true, false);
	CHECK(socks_server_feed(&s, (const uint8_t *)"\x05\x01\x02\x01\x01u\x01p", 8, &n) ==
		      SOCKS_REPLY && n == 3, "greeting");
	CHECK(socks_server_feed(&s, (const uint8_t *)"\x01\x01u\x01p", 5, &n) == SOCKS_AUTH,
	      "auth");
	CHECK(socks_server_feed(&s, (const uint8_t *)"\x05", 1, &n) == SOCKS_ERROR,
	      "feeding while waiting for the auth result is an error");
}

/* The credentials are zero after socks_server_wipe(), the rest intact. */
static void wipe(void)
{
	static const uint8_t in[] = "\x05\x01\x02" "\x01\x05" "alice\x0d" "correct horse";
	struct socks_server s;
	size_t n, off = 0;
	socks_server_init(&s, false, true);
	CHECK(socks_server_feed(&s, in, sizeof in - 1, &n) == SOCKS_REPLY, "greeting");
	off += n;
	CHECK(socks_server_feed(&s, in + off, sizeof in - 1 - off, &n) == SOCKS_AUTH, "auth");
	CHECK(strcmp(s.user, "alice") == 0 && strcmp(s.pass, "correct horse") == 0, "parsed");
	socks_server_wipe(&s);
	static const char zero[256];
	CHECK(memcmp(s.user, zero, sizeof s.user) == 0, "user not zero after the wipe");
	CHECK(memcmp(s.pass, zero, sizeof s.pass) == 0, "password not zero after the wipe");
	CHECK(s.state == SOCKS_S_V5_AUTH_WAIT && s.method == SOCKS_METHOD_USERPASS,
	      "the wipe touched the handshake state");
	CHECK(socks5_server_auth_result(&s, false) == SOCKS_ERROR && s.out_len == 2,
	      "failure reply after the wipe");
}

static void encoders(void)
{
	uint8_t out[64];
	struct cidr_addr a4, a6;
	cidr_addr_parse("127.0.0.1", &a4);
	cidr_addr_parse("::1", &a6);
	size_t n;

	n = socks5_encode_reply(out, SOCKS5_REP_SUCCEEDED, &a4, 40000);
	CHECK(n == 10 && memcmp(out, "\x05\x00\x00\x01\x7f\x00\x00\x01\x9c\x40", 10) == 0,
	      "socks5 reply ipv4");
	n = socks5_encode_reply(out, SOCKS5_REP_NOT_ALLOWED, &a6, 1);
	CHECK(n == 22 && memcmp(out, "\x05\x02\x00\x04\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\x00\x01",
				22) == 0, "socks5 reply ipv6");
	n = socks5_encode_reply(out, SOCKS5_REP_TTL_EXPIRED, NULL, 99);
	CHECK(n == 10 && memcmp(out, FAIL5("\x06"), 10) == 0, "socks5 reply without bnd");
	n = socks4_encode_reply(out, true, &a4, 8080);
	CHECK(n == 8 && memcmp(out, "\x00\x5a\x1f\x90\x7f\x00\x00\x01", 8) == 0,
	      "socks4 granted");
	n = socks4_encode_reply(out, false, NULL, 0);
	CHECK(n == 8 && memcmp(out, FAIL4, 8) == 0, "socks4 rejected");
	n = socks4_encode_reply(out, true, &a6, 80);
	CHECK(n == 8 && memcmp(out, "\x00\x5a\x00\x00\x00\x00\x00\x00", 8) == 0,
	      "socks4 granted with an ipv6 bnd leaves the address zero");

	n = socks5_client_greeting(out, false);
	CHECK(n == 3 && memcmp(out, "\x05\x01\x00", 3) == 0, "client greeting");
	n = socks5_client_greeting(out, true);
	CHECK(n == 4 && memcmp(out, "\x05\x02\x00\x02", 4) == 0, "client greeting user/pass");
	n = socks5_client_auth(out, sizeof out, "tf", "pw!");
	CHECK(n == 8 && memcmp(out, "\x01\x02tf\x03pw!", 8) == 0, "client auth");
	CHECK(socks5_client_auth(out, 7, "tf", "pw!") == 0, "client auth too small a buffer");
	CHECK(socks5_client_auth(out, sizeof out, "", "x") == 0, "client auth empty user");
	char big[300];
	memset(big, 'x', 256);
	big[256] = 0;
	uint8_t large[600];
	CHECK(socks5_client_auth(large, sizeof large, big, "p") == 0, "client auth user > 255");
	CHECK(socks5_client_auth(large, sizeof large, "u", big) == 0, "client auth pass > 255");
	big[255] = 0;
	CHECK(socks5_client_auth(large, sizeof large, big, big) == 3 + 255 + 255,
	      "client auth 255/255");

	n = socks5_client_connect(out, &a4, 5432);
	CHECK(n == 10 && memcmp(out, "\x05\x01\x00\x01\x7f\x00\x00\x01\x15\x38", 10) == 0,
	      "client connect ipv4");
	n = socks5_client_connect(out, &a6, 443);
	CHECK(n == 22 && memcmp(out, "\x05\x01\x00\x04\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\x01\xbb",
				22) == 0, "client connect ipv6");
	struct cidr_addr none = { 0 };
	CHECK(socks5_client_connect(out, &none, 80) == 0, "client connect without an address");
}

static void client_parsers(void)
{
	size_t n;
	uint8_t m = 0x42;
	bool ok = false;
	CHECK(socks5_client_parse_method((const uint8_t *)"\x05", 1, &n, &m) == SOCKS_NEED_MORE &&
		      n == 0, "method: partial");
	CHECK(socks5_client_parse_method((const uint8_t *)"\x05\x00xx", 4, &n, &m) ==
		      SOCKS_REQUEST && n == 2 && m == 0, "method: no-auth");
	CHECK(socks5_client_parse_method((const uint8_t *)"\x05\x02", 2, &n, &m) == SOCKS_REQUEST &&
		      m == 2, "method: user/pass");
	CHECK(socks5_client_parse_method((const uint8_t *)"\x05\xff", 2, &n, &m) == SOCKS_ERROR &&
		      m == 0xff, "method: none acceptable");
	CHECK(socks5_client_parse_method((const uint8_t *)"\x04\x00", 2, &n, &m) == SOCKS_ERROR,
	      "method: wrong version");
	CHECK(socks5_client_parse_auth((const uint8_t *)"\x01", 1, &n, &ok) == SOCKS_NEED_MORE,
	      "auth: partial");
	CHECK(socks5_client_parse_auth((const uint8_t *)"\x01\x00", 2, &n, &ok) == SOCKS_REQUEST &&
		      ok && n == 2, "auth: ok");
	CHECK(socks5_client_parse_auth((const uint8_t *)"\x01\x01", 2, &n, &ok) == SOCKS_REQUEST &&
		      !ok, "auth: rejected");
	CHECK(socks5_client_parse_auth((const uint8_t *)"\x05\x00", 2, &n, &ok) == SOCKS_ERROR,
	      "auth: wrong version");

	struct {
		const char *name;
		const uint8_t *in;
		size_t len;
		enum socks_step step;
		size_t consumed;
		uint8_t rep;
		const char *bnd;	/* "" for a domain */
		uint16_t port;
	} rc[] = {
		{ "reply ipv4", B("\x05\x00\x00\x01\x7f\x00\x00\x01\x9c\x40" "data"), SOCKS_REQUEST,
		  10, 0, "127.0.0.1", 40000 },
		{ "reply ipv6", B("\x05\x00\x00\x04\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\x00\x50"),
		  SOCKS_REQUEST, 22, 0, "::1", 80 },
		{ "reply domain", B("\x05\x00\x00\x03\x04host\x00\x50"), SOCKS_REQUEST, 11, 0, "", 80 },
		{ "reply refused", B("\x05\x05\x00\x01\0\0\0\0\0\0"), SOCKS_REQUEST, 10, 5,
		  "0.0.0.0", 0 },
		{ "reply wrong version", B("\x04\x00\x00\x01\0\0\0\0\0\0"), SOCKS_ERROR, 4, 0, "", 0 },
		{ "reply bad atyp", B("\x05\x00\x00\x07\0\0\0\0\0\0"), SOCKS_ERROR, 4, 0, "", 0 },
	};
	for (size_t i = 0; i < sizeof rc / sizeof rc[0]; i++) {
		uint8_t rep = 0xee;
		struct cidr_addr bnd;
		uint16_t port = 1;
		enum socks_step st = socks5_client_parse_reply(rc[i].in, rc[i].len, &n, &rep, &bnd,
							       &port);
		CHECK(st == rc[i].step && n == rc[i].consumed, "%s: step %s consumed %zu",
		      rc[i].name, step_name(st), n);
		if (st == SOCKS_REQUEST) {
			char t[CIDR_ADDR_STRLEN] = "";
			if (bnd.family)
				cidr_addr_format(&bnd, t, sizeof t);
			CHECK(rep == rc[i].rep && port == rc[i].port && strcmp(t, rc[i].bnd) == 0,
			      "%s: rep %u bnd %s port %u", rc[i].name, rep, t, port);
			/* Every proper prefix needs more and consumes nothing. */
			for (size_t k = 0; k < rc[i].consumed; k++) {
				size_t pn = 99;
				CHECK(socks5_client_parse_reply(rc[i].in, k, &pn, &rep, &bnd, &port) ==
					      SOCKS_NEED_MORE && pn == 0,
				      "%s: prefix of %zu bytes", rc[i].name, k);
			}
		}
	}
	CHECK(strcmp(socks5_rep_str(SOCKS5_REP_NOT_ALLOWED), "connection not allowed by ruleset") == 0,
	      "rep_str 0x02");
	CHECK(strcmp(socks5_rep_str(0x42), "unknown SOCKS5 reply code") == 0, "rep_str unknown");
}

/* The UDP datagram header: a table of datagrams, each parsed, and every
 * IP-address case encoded back to the same bytes. */
static void udp_headers(void)
{
	struct {
		const char *name;
		const uint8_t *in;
		size_t len;
		enum socks_step step;
		uint8_t frag;
		bool is_name;
		const char *host;	/* name, or address text */
		uint16_t port;
		size_t hlen;		/* data starts here */
	} uc[] = {
		{ "ipv4 with data", B("\0\0\0\x01\x7f\x00\x00\x01\x00\x35" "query"), SOCKS_REQUEST,
		  0, false, "127.0.0.1", 53, 10 },
		{ "ipv4 no data", B("\0\0\0\x01\xc0\x00\x02\x35\x00\x35"), SOCKS_REQUEST, 0, false,
		  "192.0.2.53", 53, 10 },
		{ "ipv6", B("\0\0\0\x04\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01\x01\xbb" "x"),
		  SOCKS_REQUEST, 0, false, "2001:db8::1", 443, 22 },
		{ "ipv4-mapped ipv6 is ipv4", B("\0\0\0\x04\0\0\0\0\0\0\0\0\0\0\xff\xff\x7f\0\0\x01\0\x35"),
		  SOCKS_REQUEST, 0, false, "127.0.0.1", 53, 22 },
		{ "name", B("\0\0\0\x03\x08" "dns.test\x00\x35" "q"), SOCKS_REQUEST, 0, true, "dns.test",
		  53, 15 },
		{ "name that is an address literal", B("\0\0\0\x03\x09" "127.0.0.1\x00\x35"),
		  SOCKS_REQUEST, 0, false, "127.0.0.1", 53, 16 },
		{ "fragment parses", B("\0\0\x01\x01\x7f\0\0\x01\x00\x35"), SOCKS_REQUEST, 1, false,
		  "127.0.0.1", 53, 10 },
		{ "too short", B("\0\0\0"), SOCKS_ERROR, 0, false, NULL, 0, 0 },
		{ "rsv not zero", B("\0\x01\0\x01\x7f\0\0\x01\x00\x35"), SOCKS_ERROR, 0, false, NULL,
		  0, 0 },
		{ "unknown atyp", B("\0\0\0\x02\x7f\0\0\x01\x00\x35"), SOCKS_ERROR, 0, false, NULL, 0,
		  0 },
		{ "truncated ipv4", B("\0\0\0\x01\x7f\0\0\x01\x00"), SOCKS_ERROR, 0, false, NULL, 0,
		  0 },
		{ "truncated ipv6", B("\0\0\0\x04\0\0\0\0\0\0\0\0"), SOCKS_ERROR, 0, false, NULL, 0,
		  0 },
		{ "name without length", B("\0\0\0\x03"), SOCKS_ERROR, 0, false, NULL, 0, 0 },
		{ "empty name", B("\0\0\0\x03\x00\x00\x35"), SOCKS_ERROR, 0, false, NULL, 0, 0 },
		{ "truncated name", B("\0\0\0\x03\x08" "dns\x00\x35"), SOCKS_ERROR, 0, false, NULL, 0, 0 },
		{ "NUL in name", B("\0\0\0\x03\x03" "a\0b\x00\x35"), SOCKS_ERROR, 0, false, NULL, 0, 0 },
	};
	for (size_t i = 0; i < sizeof uc / sizeof uc[0]; i++) {
		struct socks5_udp_header h;
		const char *why = NULL;
		enum socks_step st = socks5_udp_parse(uc[i].in, uc[i].len, &h, &why);
		CHECK(st == uc[i].step, "udp %s: step %s", uc[i].name, step_name(st));
		if (st != SOCKS_REQUEST) {
			CHECK(why && strncmp(why, "SOCKS5 UDP header: ", 19) == 0, "udp %s: why %s",
			      uc[i].name, why ? why : "(null)");
			continue;
		}
		char t[CIDR_ADDR_STRLEN];
		const char *got = h.dst.is_name ? h.dst.host
				  : cidr_addr_format(&h.dst.addr, t, sizeof t);
		CHECK(h.frag == uc[i].frag && h.dst.is_name == uc[i].is_name &&
			      strcmp(got, uc[i].host) == 0 && h.dst.port == uc[i].port &&
			      h.len == uc[i].hlen,
		      "udp %s: frag %u name %d host %s port %u len %zu", uc[i].name, h.frag,
		      h.dst.is_name, got, h.dst.port, h.len);
		if (!h.dst.is_name && !h.frag && uc[i].in[3] != 0x03 &&
		    strcmp(uc[i].name, "ipv4-mapped ipv6 is ipv4") != 0) {
			uint8_t enc[32];
			size_t n = socks5_udp_encode(enc, &h.dst.addr, h.dst.port);
			CHECK(n == h.len && memcmp(enc, uc[i].in, n) == 0, "udp %s: encodes back",
			      uc[i].name);
		}
	}
	struct cidr_addr none = { 0 };
	uint8_t enc[32];
	CHECK(socks5_udp_encode(enc, &none, 53) == 0, "udp encode without an address");
	uint8_t req[16];
	CHECK(socks5_client_udp_associate(req) == 10 &&
		      memcmp(req, "\x05\x03\x00\x01\0\0\0\0\0\0", 10) == 0,
	      "client UDP ASSOCIATE request");
}

int main(void)
{
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		check_case(&cases[i]);
	long_cases();
	misuse();
	wipe();
	encoders();
	client_parsers();
	udp_headers();
	printf("test_socks: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
