/*
 * socks: the SOCKS4, SOCKS4a and SOCKS5 wire formats, server and client side.
 *
 * Pure parsers and encoders over byte buffers: nothing here touches a socket,
 * so unit tests and fuzzers drive them directly. Partial input is normal: a
 * parser returns SOCKS_NEED_MORE until it has a whole message, and never
 * confuses "need more bytes" with "error".
 *
 * Server side (clients talking to tailfence): socks_server_feed() walks the
 * handshake one message at a time.
 * Client side (tailfence talking to tailscaled's SOCKS5 listener): encoders
 * for the greeting and CONNECT request, parsers for the method choice and
 * the reply.
 */
#ifndef TAILFENCE_SOCKS_H
#define TAILFENCE_SOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tailfence/cidr.h"

/* RFC 1928 reply codes. */
enum socks5_rep {
	SOCKS5_REP_SUCCEEDED = 0x00,
	SOCKS5_REP_GENERAL_FAILURE = 0x01,
	SOCKS5_REP_NOT_ALLOWED = 0x02,
	SOCKS5_REP_NET_UNREACHABLE = 0x03,
	SOCKS5_REP_HOST_UNREACHABLE = 0x04,
	SOCKS5_REP_CONN_REFUSED = 0x05,
	SOCKS5_REP_TTL_EXPIRED = 0x06,
	SOCKS5_REP_CMD_UNSUPPORTED = 0x07,
	SOCKS5_REP_ATYP_UNSUPPORTED = 0x08,
};

enum socks_cmd {
	SOCKS_CMD_CONNECT = 0x01,
	SOCKS_CMD_BIND = 0x02,
	SOCKS_CMD_UDP_ASSOCIATE = 0x03,
};

#define SOCKS_METHOD_NOAUTH 0x00
#define SOCKS_METHOD_USERPASS 0x02
#define SOCKS_METHOD_NONE 0xff

/* SOCKS4 reply codes (CD field). */
#define SOCKS4_REP_GRANTED 0x5a
#define SOCKS4_REP_REJECTED 0x5b

/* What socks_server_feed() tells the caller. */
enum socks_step {
	SOCKS_NEED_MORE = 0, /* consumed all it could; feed more bytes */
	SOCKS_REPLY,	     /* write s->out[0..out_len) to the client, then feed on */
	SOCKS_AUTH,	     /* RFC 1929 credentials in s->user/s->pass: verify,
			      * then call socks5_server_auth_result() */
	SOCKS_REQUEST,	     /* request complete: s->cmd and s->target are set */
	SOCKS_ERROR,	     /* protocol error: s->why says what; if out_len > 0,
			      * write s->out (a final reply) then close */
};

/* A destination as the client gave it. */
struct socks_target {
	bool is_name;		/* true: host holds a domain name */
	struct cidr_addr addr;	/* when !is_name */
	char host[256];		/* when is_name: NUL-terminated, 1..255 bytes */
	size_t host_len;	/* its length as sent (a NUL inside shows here) */
	uint16_t port;		/* host order */
};

enum socks_server_state {
	SOCKS_S_START,		/* expecting the version byte */
	SOCKS_S_V5_METHODS,
	SOCKS_S_V5_AUTH,
	SOCKS_S_V5_AUTH_WAIT,	/* waiting for socks5_server_auth_result() */
	SOCKS_S_V5_REQUEST,
	SOCKS_S_V4_REQUEST,
	SOCKS_S_DONE,
	SOCKS_S_FAILED,
};

struct socks_server {
	enum socks_server_state state;
	bool allow_noauth;	/* method 0x00 acceptable */
	bool prefer_userpass;	/* choose 0x02 when the client offers it */
	bool allow_udp;		/* accept UDP ASSOCIATE (set after init; default off) */

	/* Results. */
	int version;		/* 4 or 5 once known */
	bool socks4a;		/* SOCKS4a (name in the request) */
	uint8_t method;		/* SOCKS5 method chosen */
	bool have_credentials;	/* RFC 1929 user/pass (or SOCKS4 userid) seen */
	char user[256];		/* NUL-terminated; SOCKS4: the USERID field */
	char pass[256];
	uint8_t cmd;		/* enum socks_cmd */
	struct socks_target target;
	const char *why;	/* static text on SOCKS_ERROR */

	/* Bytes to write to the client after SOCKS_REPLY/SOCKS_ERROR. */
	uint8_t out[16];
	size_t out_len;
};

/* allow_noauth: method 0x00 is acceptable (without it a client must offer
 * 0x02). prefer_userpass: pick 0x02 whenever offered (so the user is
 * known); otherwise 0x00 when both are offered and allowed. */
void socks_server_init(struct socks_server *s, bool allow_noauth,
		       bool prefer_userpass);

/* Consumes from in[0..len), sets *consumed, returns the next step.
 * Call again with the unconsumed rest after handling REPLY/AUTH. Bytes past
 * the end of the request are left unconsumed (they belong to the relay).
 * Message-atomic: SOCKS_NEED_MORE consumes nothing (keep the bytes and call
 * again with more appended); REPLY/AUTH/REQUEST consume exactly one whole
 * message. A caller never needs to buffer more than 520 bytes. */
enum socks_step socks_server_feed(struct socks_server *s, const uint8_t *in,
				  size_t len, size_t *consumed);

/* Overwrites the credentials (user, pass) with zeros: call it once they
 * have been checked, and before the struct is freed. */
void socks_server_wipe(struct socks_server *s);

/* After SOCKS_AUTH: queues the RFC 1929 status reply (0x00 ok, 0x01 fail)
 * in s->out. Returns SOCKS_REPLY when ok, SOCKS_ERROR (with out set) when
 * not. */
enum socks_step socks5_server_auth_result(struct socks_server *s, bool ok);

/* Encodes the final reply to a request: SOCKS5 (rep, BND.ADDR/BND.PORT from
 * bnd, 0.0.0.0:0 when bnd is NULL or has no family) or SOCKS4 (granted or
 * rejected, with bnd). Returns the length written (<= 22). */
size_t socks5_encode_reply(uint8_t *out, uint8_t rep, const struct cidr_addr *bnd,
			   uint16_t bnd_port);
size_t socks4_encode_reply(uint8_t *out, bool granted, const struct cidr_addr *bnd,
			   uint16_t bnd_port);

/* ---- client side (tailfence -> upstream SOCKS5) ---- */

/* Greeting offering no-auth (and user/pass when with_userpass). */
size_t socks5_client_greeting(uint8_t *out, bool with_userpass);

/* RFC 1929 user/pass sub-negotiation; 0 if user or pass is longer than 255. */
size_t socks5_client_auth(uint8_t *out, size_t cap, const char *user, const char *pass);

/* CONNECT request for an IP address (never a name: DNS pinning). */
size_t socks5_client_connect(uint8_t *out, const struct cidr_addr *dst, uint16_t port);

/* UDP ASSOCIATE request saying "any source" (0.0.0.0:0); 10 bytes. */
size_t socks5_client_udp_associate(uint8_t *out);

/* Parses the 2-byte method choice. Returns NEED_MORE, REQUEST (done,
 * *method set; the caller checks it is one it offered) or ERROR (VER not 5,
 * or 0xFF "no acceptable method", *method set). */
enum socks_step socks5_client_parse_method(const uint8_t *in, size_t len,
					   size_t *consumed, uint8_t *method);

/* Parses the RFC 1929 status reply; *ok set. */
enum socks_step socks5_client_parse_auth(const uint8_t *in, size_t len,
					 size_t *consumed, bool *ok);

/* Parses a CONNECT reply (any ATYP, including a domain BND.ADDR). Returns
 * NEED_MORE, REQUEST (done: *rep, *bnd, *bnd_port set; bnd->family 0 for a
 * domain) or ERROR. */
enum socks_step socks5_client_parse_reply(const uint8_t *in, size_t len,
					  size_t *consumed, uint8_t *rep,
					  struct cidr_addr *bnd, uint16_t *bnd_port);

/* Human text for a SOCKS5 reply code. */
const char *socks5_rep_str(uint8_t rep);

/* ---- UDP datagrams (RFC 1928 section 7), both directions ---- */

/* +-----+------+------+----------+----------+------+
 * | RSV | FRAG | ATYP | DST.ADDR | DST.PORT | DATA |
 * |  2  |  1   |  1   | Variable |    2     | ...  |
 * A datagram arrives whole, so there is no NEED_MORE. */
struct socks5_udp_header {
	uint8_t frag;			/* 0: a whole datagram; else a fragment */
	struct socks_target dst;	/* a domain name stays a name (is_name) */
	size_t len;			/* header length: DATA starts at in + len */
};

/* Parses the header of one datagram. Returns SOCKS_REQUEST, or SOCKS_ERROR
 * with a sentence in *why (RSV not zero, unknown ATYP, a truncated address,
 * an empty name or a NUL inside it). A fragment (FRAG != 0) parses: the
 * caller decides (tailfence drops them). */
enum socks_step socks5_udp_parse(const uint8_t *in, size_t len, struct socks5_udp_header *h,
				 const char **why);

/* Writes the header for an IP address (FRAG 0); returns its length (10 or
 * 22), or 0 when addr has no family. out holds at least 22 bytes. */
size_t socks5_udp_encode(uint8_t *out, const struct cidr_addr *addr, uint16_t port);

#endif
