/*
 * socks: SOCKS4, SOCKS4a and SOCKS5 wire formats (see include/tailfence/socks.h).
 *
 * Server side parsing is message-atomic: socks_server_feed() looks at the
 * unconsumed bytes from the start of the current message and either takes a
 * whole message (consumed = its length) or returns SOCKS_NEED_MORE having
 * consumed nothing, so the caller keeps the bytes and calls again with more
 * appended. Every decision depends only on bytes already present, and checks
 * run in a fixed order, so feeding one byte at a time gives exactly the result
 * of feeding everything at once. The longest message is a SOCKS4a request
 * (8 + 256 + 256 bytes), which bounds what a caller has to buffer.
 */
#include "tailfence/socks.h"

#include <string.h>

#include <openssl/crypto.h>

/* Longest SOCKS4 USERID / SOCKS4a HOSTNAME, NUL excluded. */
#define SOCKS4_FIELD_MAX 255

void socks_server_init(struct socks_server *s, bool allow_noauth, bool prefer_userpass)
{
	memset(s, 0, sizeof *s);
	s->state = SOCKS_S_START;
	s->allow_noauth = allow_noauth;
	s->prefer_userpass = prefer_userpass;
	s->method = SOCKS_METHOD_NONE;
}

void socks_server_wipe(struct socks_server *s)
{
	OPENSSL_cleanse(s->user, sizeof s->user);
	OPENSSL_cleanse(s->pass, sizeof s->pass);
}

static enum socks_step fail(struct socks_server *s, const char *why)
{
	s->state = SOCKS_S_FAILED;
	s->why = why;
	return SOCKS_ERROR;
}

static void out2(struct socks_server *s, uint8_t a, uint8_t b)
{
	s->out[0] = a;
	s->out[1] = b;
	s->out_len = 2;
}

static enum socks_step fail5(struct socks_server *s, uint8_t rep, const char *why)
{
	s->out_len = socks5_encode_reply(s->out, rep, NULL, 0);
	return fail(s, why);
}

static enum socks_step fail4(struct socks_server *s, const char *why)
{
	s->out_len = socks4_encode_reply(s->out, false, NULL, 0);
	return fail(s, why);
}

/* A domain name given as an IP literal is treated as that address: it is
 * what any resolver would return, and it keeps the target pinned. */
static void target_set_name(struct socks_target *t, const uint8_t *name, size_t n)
{
	memcpy(t->host, name, n);
	t->host[n] = '\0';
	t->host_len = n;
	if (cidr_addr_parsen(t->host, n, &t->addr)) {
		t->is_name = false;
	} else {
		t->is_name = true;
		memset(&t->addr, 0, sizeof t->addr);
	}
}

static enum socks_step v5_methods(struct socks_server *s, const uint8_t *in, size_t len,
				  size_t *consumed)
{
	if (len < 2)
		return SOCKS_NEED_MORE;
	size_t n = in[1];
	if (n == 0) {
		*consumed = 2;
		out2(s, 0x05, SOCKS_METHOD_NONE);
		return fail(s, "SOCKS5 greeting: NMETHODS is 0 (at least one method is required)");
	}
	if (len < 2 + n)
		return SOCKS_NEED_MORE;
	bool noauth = false, userpass = false;
	for (size_t i = 0; i < n; i++) {
		if (in[2 + i] == SOCKS_METHOD_NOAUTH)
			noauth = true;
		else if (in[2 + i] == SOCKS_METHOD_USERPASS)
			userpass = true;
	}
	*consumed = 2 + n;
	uint8_t m;
	if (userpass && (s->prefer_userpass || !noauth || !s->allow_noauth))
		m = SOCKS_METHOD_USERPASS;
	else if (noauth && s->allow_noauth)
		m = SOCKS_METHOD_NOAUTH;
	else {
		s->method = SOCKS_METHOD_NONE;
		out2(s, 0x05, SOCKS_METHOD_NONE);
		return fail(s, s->allow_noauth
			? "SOCKS5 greeting: client offers neither no-auth (0x00) nor username/password (0x02)"
			: "SOCKS5 greeting: client does not offer username/password (0x02), which is required");
	}
	s->method = m;
	out2(s, 0x05, m);
	s->state = m == SOCKS_METHOD_USERPASS ? SOCKS_S_V5_AUTH : SOCKS_S_V5_REQUEST;
	return SOCKS_REPLY;
}

/* RFC 1929: VER=1 ULEN UNAME PLEN PASSWD. The RFC gives PASSWD 1..255
 * bytes, but clients send an empty password when only a user is configured
 * (curl's socks5://user@host), so PLEN 0 is accepted and left to the
 * verifier. An empty UNAME, or a NUL inside either field, is refused: the
 * NUL-terminated copies must mean exactly what the client sent. */
static enum socks_step v5_auth(struct socks_server *s, const uint8_t *in, size_t len,
			       size_t *consumed)
{
	if (len < 1)
		return SOCKS_NEED_MORE;
	if (in[0] != 0x01) {
		*consumed = 1;
		out2(s, 0x01, 0x01);
		return fail(s, "SOCKS5 username/password: VER is not 0x01");
	}
	if (len < 2)
		return SOCKS_NEED_MORE;
	size_t ulen = in[1];
	if (ulen == 0) {
		*consumed = 2;
		out2(s, 0x01, 0x01);
		return fail(s, "SOCKS5 username/password: ULEN is 0 (empty username)");
	}
	if (len < 2 + ulen + 1)
		return SOCKS_NEED_MORE;
	size_t plen = in[2 + ulen];
	if (len < 3 + ulen + plen)
		return SOCKS_NEED_MORE;
	*consumed = 3 + ulen + plen;
	if (memchr(in + 2, 0, ulen) || memchr(in + 3 + ulen, 0, plen)) {
		out2(s, 0x01, 0x01);
		return fail(s, "SOCKS5 username/password: NUL byte inside UNAME or PASSWD");
	}
	memcpy(s->user, in + 2, ulen);
	s->user[ulen] = '\0';
	memcpy(s->pass, in + 3 + ulen, plen);
	s->pass[plen] = '\0';
	s->have_credentials = true;
	s->state = SOCKS_S_V5_AUTH_WAIT;
	return SOCKS_AUTH;
}

static enum socks_step v5_request(struct socks_server *s, const uint8_t *in, size_t len,
				  size_t *consumed)
{
	if (len < 4)
		return SOCKS_NEED_MORE;
	if (in[0] != 0x05) {
		*consumed = 4;
		return fail5(s, SOCKS5_REP_GENERAL_FAILURE, "SOCKS5 request: VER is not 0x05");
	}
	s->cmd = in[1];
	if (in[2] != 0x00) {
		*consumed = 4;
		return fail5(s, SOCKS5_REP_GENERAL_FAILURE, "SOCKS5 request: RSV is not 0x00");
	}
	if (in[1] != SOCKS_CMD_CONNECT && !(in[1] == SOCKS_CMD_UDP_ASSOCIATE && s->allow_udp)) {
		*consumed = 4;
		const char *why = in[1] == SOCKS_CMD_BIND ? "SOCKS5 request: BIND is not supported"
			: in[1] == SOCKS_CMD_UDP_ASSOCIATE ? "SOCKS5 request: UDP ASSOCIATE is not supported"
			: "SOCKS5 request: unknown CMD";
		return fail5(s, SOCKS5_REP_CMD_UNSUPPORTED, why);
	}
	struct socks_target *t = &s->target;
	size_t need;
	switch (in[3]) {
	case 0x01:
		need = 4 + 4 + 2;
		break;
	case 0x04:
		need = 4 + 16 + 2;
		break;
	case 0x03:
		if (len < 5)
			return SOCKS_NEED_MORE;
		if (in[4] == 0) {
			*consumed = 5;
			return fail5(s, SOCKS5_REP_GENERAL_FAILURE,
				     "SOCKS5 request: domain name length is 0");
		}
		need = 5 + (size_t)in[4] + 2;
		break;
	default:
		*consumed = 4;
		return fail5(s, SOCKS5_REP_ATYP_UNSUPPORTED, "SOCKS5 request: unknown ATYP");
	}
	if (len < need)
		return SOCKS_NEED_MORE;
	*consumed = need;
	memset(t, 0, sizeof *t);
	if (in[3] == 0x01) {
		t->addr.family = AF_INET;
		memcpy(t->addr.b, in + 4, 4);
	} else if (in[3] == 0x04) {
		t->addr.family = AF_INET6;
		memcpy(t->addr.b, in + 4, 16);
		cidr_addr_normalize(&t->addr);
	} else {
		if (memchr(in + 5, 0, in[4]))
			return fail5(s, SOCKS5_REP_GENERAL_FAILURE,
				     "SOCKS5 request: NUL byte inside the domain name");
		target_set_name(t, in + 5, in[4]);
	}
	t->port = (uint16_t)(in[need - 2] << 8 | in[need - 1]);
	s->state = SOCKS_S_DONE;
	return SOCKS_REQUEST;
}

/* Finds the NUL ending a SOCKS4 string field starting at in[off]. Returns
 * its index, 0 if more bytes are needed, or (size_t)-1 if the field is
 * longer than SOCKS4_FIELD_MAX. */
static size_t v4_field_end(const uint8_t *in, size_t len, size_t off)
{
	size_t lim = off + SOCKS4_FIELD_MAX + 1;
	size_t end = len < lim ? len : lim;
	const uint8_t *z = off < end ? memchr(in + off, 0, end - off) : NULL;
	if (z)
		return (size_t)(z - in);
	return len >= lim ? (size_t)-1 : 0;
}

static enum socks_step v4_request(struct socks_server *s, const uint8_t *in, size_t len,
				  size_t *consumed)
{
	if (len < 8)
		return SOCKS_NEED_MORE;
	s->cmd = in[1];
	if (in[1] != SOCKS_CMD_CONNECT) {
		*consumed = 8;
		return fail4(s, in[1] == SOCKS_CMD_BIND ? "SOCKS4 request: BIND is not supported"
					  : "SOCKS4 request: unknown CD (command)");
	}
	size_t uend = v4_field_end(in, len, 8);
	if (uend == (size_t)-1) {
		*consumed = 8 + SOCKS4_FIELD_MAX + 1;
		return fail4(s, "SOCKS4 request: USERID longer than 255 bytes");
	}
	if (uend == 0)
		return SOCKS_NEED_MORE;
	bool is4a = in[4] == 0 && in[5] == 0 && in[6] == 0 && in[7] != 0;
	size_t hend = 0;
	if (is4a) {
		hend = v4_field_end(in, len, uend + 1);
		if (hend == (size_t)-1) {
			*consumed = uend + 1 + SOCKS4_FIELD_MAX + 1;
			return fail4(s, "SOCKS4a request: HOSTNAME longer than 255 bytes");
		}
		if (hend == 0)
			return SOCKS_NEED_MORE;
		if (hend == uend + 1) {
			*consumed = hend + 1;
			return fail4(s, "SOCKS4a request: HOSTNAME is empty");
		}
	}
	size_t ulen = uend - 8;
	memcpy(s->user, in + 8, ulen);
	s->user[ulen] = '\0';
	s->have_credentials = ulen > 0;
	struct socks_target *t = &s->target;
	memset(t, 0, sizeof *t);
	t->port = (uint16_t)(in[2] << 8 | in[3]);
	if (is4a) {
		s->socks4a = true;
		target_set_name(t, in + uend + 1, hend - uend - 1);
		*consumed = hend + 1;
	} else {
		t->addr.family = AF_INET;
		memcpy(t->addr.b, in + 4, 4);
		*consumed = uend + 1;
	}
	s->state = SOCKS_S_DONE;
	return SOCKS_REQUEST;
}

enum socks_step socks_server_feed(struct socks_server *s, const uint8_t *in, size_t len,
				  size_t *consumed)
{
	*consumed = 0;
	s->out_len = 0;
	switch (s->state) {
	case SOCKS_S_START:
		if (len < 1)
			return SOCKS_NEED_MORE;
		if (in[0] == 0x05) {
			s->version = 5;
			s->state = SOCKS_S_V5_METHODS;
			return v5_methods(s, in, len, consumed);
		}
		if (in[0] == 0x04) {
			s->version = 4;
			s->state = SOCKS_S_V4_REQUEST;
			return v4_request(s, in, len, consumed);
		}
		*consumed = 1;
		return fail(s, "not a SOCKS request: first byte is neither 0x04 nor 0x05");
	case SOCKS_S_V5_METHODS:
		return v5_methods(s, in, len, consumed);
	case SOCKS_S_V5_AUTH:
		return v5_auth(s, in, len, consumed);
	case SOCKS_S_V5_REQUEST:
		return v5_request(s, in, len, consumed);
	case SOCKS_S_V4_REQUEST:
		return v4_request(s, in, len, consumed);
	case SOCKS_S_V5_AUTH_WAIT:
		return fail(s, "internal: socks_server_feed() called before socks5_server_auth_result()");
	case SOCKS_S_DONE:
		return fail(s, "internal: socks_server_feed() called after the request");
	case SOCKS_S_FAILED:
		break;
	}
	if (!s->why)
		s->why = "internal: socks_server_feed() called after an error";
	return SOCKS_ERROR;
}

enum socks_step socks5_server_auth_result(struct socks_server *s, bool ok)
{
	if (s->state != SOCKS_S_V5_AUTH_WAIT) {
		s->out_len = 0;
		return fail(s, "internal: socks5_server_auth_result() called out of turn");
	}
	out2(s, 0x01, ok ? 0x00 : 0x01);
	if (!ok)
		return fail(s, "SOCKS5 username/password: credentials rejected");
	s->state = SOCKS_S_V5_REQUEST;
	return SOCKS_REPLY;
}

static size_t put_port(uint8_t *p, uint16_t port)
{
	p[0] = (uint8_t)(port >> 8);
	p[1] = (uint8_t)port;
	return 2;
}

size_t socks5_encode_reply(uint8_t *out, uint8_t rep, const struct cidr_addr *bnd,
			   uint16_t bnd_port)
{
	size_t n = 0;
	out[n++] = 0x05;
	out[n++] = rep;
	out[n++] = 0x00;
	if (bnd && bnd->family == AF_INET6) {
		out[n++] = 0x04;
		memcpy(out + n, bnd->b, 16);
		n += 16;
	} else {
		out[n++] = 0x01;
		if (bnd && bnd->family == AF_INET)
			memcpy(out + n, bnd->b, 4);
		else {
			memset(out + n, 0, 4);
			bnd_port = 0;
		}
		n += 4;
	}
	return n + put_port(out + n, bnd_port);
}

size_t socks4_encode_reply(uint8_t *out, bool granted, const struct cidr_addr *bnd,
			   uint16_t bnd_port)
{
	out[0] = 0x00;
	out[1] = granted ? SOCKS4_REP_GRANTED : SOCKS4_REP_REJECTED;
	if (bnd && bnd->family == AF_INET) {
		put_port(out + 2, bnd_port);
		memcpy(out + 4, bnd->b, 4);
	} else {
		memset(out + 2, 0, 6);
	}
	return 8;
}

/* ---- client side ---- */

size_t socks5_client_greeting(uint8_t *out, bool with_userpass)
{
	out[0] = 0x05;
	if (!with_userpass) {
		out[1] = 1;
		out[2] = SOCKS_METHOD_NOAUTH;
		return 3;
	}
	out[1] = 2;
	out[2] = SOCKS_METHOD_NOAUTH;
	out[3] = SOCKS_METHOD_USERPASS;
	return 4;
}

size_t socks5_client_auth(uint8_t *out, size_t cap, const char *user, const char *pass)
{
	size_t ul = strlen(user), pl = strlen(pass);
	if (ul == 0 || ul > 255 || pl > 255 || cap < 3 + ul + pl)
		return 0;
	out[0] = 0x01;
	out[1] = (uint8_t)ul;
	memcpy(out + 2, user, ul);
	out[2 + ul] = (uint8_t)pl;
	memcpy(out + 3 + ul, pass, pl);
	return 3 + ul + pl;
}

size_t socks5_client_connect(uint8_t *out, const struct cidr_addr *dst, uint16_t port)
{
	size_t n = 0;
	out[n++] = 0x05;
	out[n++] = SOCKS_CMD_CONNECT;
	out[n++] = 0x00;
	if (dst->family == AF_INET) {
		out[n++] = 0x01;
		memcpy(out + n, dst->b, 4);
		n += 4;
	} else if (dst->family == AF_INET6) {
		out[n++] = 0x04;
		memcpy(out + n, dst->b, 16);
		n += 16;
	} else {
		return 0;
	}
	return n + put_port(out + n, port);
}

size_t socks5_client_udp_associate(uint8_t *out)
{
	static const uint8_t req[] = { 0x05, SOCKS_CMD_UDP_ASSOCIATE, 0x00, 0x01, 0, 0, 0, 0, 0, 0 };
	memcpy(out, req, sizeof req);
	return sizeof req;
}

enum socks_step socks5_client_parse_method(const uint8_t *in, size_t len, size_t *consumed,
					   uint8_t *method)
{
	*consumed = 0;
	if (len < 2)
		return SOCKS_NEED_MORE;
	*consumed = 2;
	*method = in[1];
	if (in[0] != 0x05 || in[1] == SOCKS_METHOD_NONE)
		return SOCKS_ERROR;
	return SOCKS_REQUEST;
}

enum socks_step socks5_client_parse_auth(const uint8_t *in, size_t len, size_t *consumed,
					 bool *ok)
{
	*consumed = 0;
	if (len < 2)
		return SOCKS_NEED_MORE;
	*consumed = 2;
	*ok = in[1] == 0x00;
	if (in[0] != 0x01)
		return SOCKS_ERROR;
	return SOCKS_REQUEST;
}

enum socks_step socks5_client_parse_reply(const uint8_t *in, size_t len, size_t *consumed,
					  uint8_t *rep, struct cidr_addr *bnd,
					  uint16_t *bnd_port)
{
	*consumed = 0;
	if (len < 4)
		return SOCKS_NEED_MORE;
	if (in[0] != 0x05) {
		*consumed = 4;
		return SOCKS_ERROR;
	}
	size_t need;
	switch (in[3]) {
	case 0x01:
		need = 4 + 4 + 2;
		break;
	case 0x04:
		need = 4 + 16 + 2;
		break;
	case 0x03:
		if (len < 5)
			return SOCKS_NEED_MORE;
		need = 5 + (size_t)in[4] + 2;
		break;
	default:
		*consumed = 4;
		return SOCKS_ERROR;
	}
	if (len < need)
		return SOCKS_NEED_MORE;
	*consumed = need;
	*rep = in[1];
	memset(bnd, 0, sizeof *bnd);
	if (in[3] == 0x01) {
		bnd->family = AF_INET;
		memcpy(bnd->b, in + 4, 4);
	} else if (in[3] == 0x04) {
		bnd->family = AF_INET6;
		memcpy(bnd->b, in + 4, 16);
		cidr_addr_normalize(bnd);
	}
	*bnd_port = (uint16_t)(in[need - 2] << 8 | in[need - 1]);
	return SOCKS_REQUEST;
}

const char *socks5_rep_str(uint8_t rep)
{
	switch (rep) {
	case SOCKS5_REP_SUCCEEDED: return "succeeded";
	case SOCKS5_REP_GENERAL_FAILURE: return "general SOCKS server failure";
	case SOCKS5_REP_NOT_ALLOWED: return "connection not allowed by ruleset";
	case SOCKS5_REP_NET_UNREACHABLE: return "network unreachable";
	case SOCKS5_REP_HOST_UNREACHABLE: return "host unreachable";
	case SOCKS5_REP_CONN_REFUSED: return "connection refused";
	case SOCKS5_REP_TTL_EXPIRED: return "TTL expired";
	case SOCKS5_REP_CMD_UNSUPPORTED: return "command not supported";
	case SOCKS5_REP_ATYP_UNSUPPORTED: return "address type not supported";
	default: return "unknown SOCKS5 reply code";
	}
}

/* ---- UDP datagrams ---- */

enum socks_step socks5_udp_parse(const uint8_t *in, size_t len, struct socks5_udp_header *h,
				 const char **why)
{
	memset(h, 0, sizeof *h);
	if (len < 4) {
		*why = "SOCKS5 UDP header: shorter than 4 bytes";
		return SOCKS_ERROR;
	}
	if (in[0] != 0 || in[1] != 0) {
		*why = "SOCKS5 UDP header: RSV is not 0x0000";
		return SOCKS_ERROR;
	}
	h->frag = in[2];
	struct socks_target *t = &h->dst;
	size_t need;
	switch (in[3]) {
	case 0x01:
		need = 4 + 4 + 2;
		break;
	case 0x04:
		need = 4 + 16 + 2;
		break;
	case 0x03:
		if (len < 5) {
			*why = "SOCKS5 UDP header: truncated domain name";
			return SOCKS_ERROR;
		}
		if (in[4] == 0) {
			*why = "SOCKS5 UDP header: domain name length is 0";
			return SOCKS_ERROR;
		}
		need = 5 + (size_t)in[4] + 2;
		break;
	default:
		*why = "SOCKS5 UDP header: unknown ATYP";
		return SOCKS_ERROR;
	}
	if (len < need) {
		*why = "SOCKS5 UDP header: truncated address";
		return SOCKS_ERROR;
	}
	if (in[3] == 0x01) {
		t->addr.family = AF_INET;
		memcpy(t->addr.b, in + 4, 4);
	} else if (in[3] == 0x04) {
		t->addr.family = AF_INET6;
		memcpy(t->addr.b, in + 4, 16);
		cidr_addr_normalize(&t->addr);
	} else {
		if (memchr(in + 5, 0, in[4])) {
			*why = "SOCKS5 UDP header: NUL byte inside the domain name";
			return SOCKS_ERROR;
		}
		target_set_name(t, in + 5, in[4]);
	}
	t->port = (uint16_t)(in[need - 2] << 8 | in[need - 1]);
	h->len = need;
	return SOCKS_REQUEST;
}

size_t socks5_udp_encode(uint8_t *out, const struct cidr_addr *addr, uint16_t port)
{
	size_t n = 0;
	out[n++] = 0;
	out[n++] = 0;
	out[n++] = 0;
	if (addr->family == AF_INET) {
		out[n++] = 0x01;
		memcpy(out + n, addr->b, 4);
		n += 4;
	} else if (addr->family == AF_INET6) {
		out[n++] = 0x04;
		memcpy(out + n, addr->b, 16);
		n += 16;
	} else {
		return 0;
	}
	return n + put_port(out + n, port);
}
