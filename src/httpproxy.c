/*
 * httpproxy: HTTP/1.x proxy request heads (see include/tailfence/httpproxy.h).
 *
 * Decisions made here (the header's security rules, made precise):
 *  - Line endings: CRLF, and a bare LF is accepted as a line terminator in the
 *    request head (RFC 9112 section 2.2 allows it). Harmless here because the
 *    head sent to the origin is rebuilt with CRLF. A CR that is not followed
 *    by LF, NUL and other control bytes (HTAB excepted) are refused with 400.
 *    Chunked body framing, which is forwarded raw, requires strict CRLF.
 *  - Header fields: a token name immediately followed by ':'; whitespace
 *    before the colon, obs-fold (a line starting with SP/HTAB) -> 400.
 *  - Content-Length: one header with one decimal value; several headers
 *    (even equal), lists ("5, 5"), signs, or values past 2^64-1 -> 400.
 *  - Transfer-Encoding: exactly one header. "chunked" (any case) is the only
 *    coding supported. A list whose final coding is chunked but which has
 *    other codings ("gzip, chunked") -> 501; chunked missing from the end or
 *    repeated, a malformed list, a second header, TE together with
 *    Content-Length, or TE in an HTTP/1.0 request -> 400.
 *  - CONNECT with a body (Transfer-Encoding or Content-Length other than 0)
 *    -> 400.
 *  - Host: more than one -> 400. Proxy-Authorization: more than one -> 400;
 *    Basic with bad base64 or no ':' -> 400; other schemes are ignored
 *    (have_credentials false).
 *  - Targets: CONNECT takes host:port or [v6]:port, port 1..65535 required;
 *    other methods take http://host[:port][/path][?query] (no userinfo, no
 *    fragment); https:// and other schemes -> 501; origin-form "/..." and
 *    "*" -> 405. Host names are letters, digits, '-', '.', '_' (1..255).
 *  - The origin head keeps the client's HTTP/1.<minor>: upgrading a 1.0
 *    client to 1.1 would let the origin answer chunked, which the client
 *    (reading the raw response) may not understand.
 *
 * The request-head parser is stateless (re-run over the whole buffer) and
 * checks lines strictly in order, each line's bytes first and then its
 * structure, so a prefix of the input never reports an error the whole
 * input would not report first.
 */
#include "tailfence/httpproxy.h"
#include "tailfence/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define CONN_TOKENS_MAX 64
#define CHUNK_LINE_MAX 4096
#define CRED_B64_MAX 1024

/* ---- character classes (HTTP's own; the rest are text.h's) ---- */

static bool is_tchar(unsigned char c)
{
	return text_is_alpha(c) || text_is_digit(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}
static bool is_ows(unsigned char c) { return c == ' ' || c == '\t'; }

static bool ieq(const char *a, size_t n, const char *lit)
{
	return n == strlen(lit) && text_ieq(a, lit, n);
}

static void trim_ows(const char **s, size_t *n)
{
	while (*n && is_ows((unsigned char)**s)) {
		(*s)++;
		(*n)--;
	}
	while (*n && is_ows((unsigned char)(*s)[*n - 1]))
		(*n)--;
}

/* ---- request head ---- */

struct range {
	size_t off, len;
};

/* Accumulated while walking header lines. */
struct head_state {
	const char *buf;
	int n_cl, n_te, n_host, n_pauth;
	bool chunked;
	uint64_t cl;
	size_t n_conn;
	struct range conn[CONN_TOKENS_MAX];	/* Connection options */
	/* Parsed request-target parts (offsets into buf). */
	struct range path;	/* path and query, may be empty */
	struct range authority;	/* Host header value for the origin */
	bool explicit_port;
};

static enum httpproxy_step err(struct httpproxy_request *r, int status, const char *why)
{
	r->status = status;
	r->why = why;
	return HTTPPROXY_ERROR;
}

/* Parses host[:port] or [v6][:port] in s[0..n) with the one host:port
 * splitter (text.h), in this parser's words. Fills r->host/addr/port. */
static const char *parse_authority(struct httpproxy_request *r, const char *s, size_t n,
				   bool require_port, bool *explicit_port)
{
	struct text_hostport hp;
	switch (text_hostport_split(s, n, !require_port, &hp)) {
	case TEXT_HP_OK: break;
	case TEXT_HP_EMPTY_HOST: return "empty host in request-target";
	case TEXT_HP_NO_CLOSE_BRACKET: return "IPv6 literal in request-target has no closing ']'";
	case TEXT_HP_AFTER_BRACKET: return "unexpected characters after ']' in request-target";
	case TEXT_HP_UNBRACKETED_V6: return "IPv6 literal in request-target must be in brackets";
	case TEXT_HP_NO_PORT: return "CONNECT target has no port (expected host:port)";
	case TEXT_HP_EMPTY_PORT: return "CONNECT target has an empty port (expected host:port)";
	case TEXT_HP_PORT_NOT_DECIMAL: return "port in request-target is not a decimal number";
	case TEXT_HP_PORT_TOO_LARGE: return "port in request-target is larger than 65535";
	case TEXT_HP_PORT_ZERO: return "port in request-target is 0";
	}
	if (hp.bracketed) {
		if (!memchr(hp.host, ':', hp.host_len) ||
		    !cidr_addr_parsen(hp.host, hp.host_len, &r->addr))
			return "bracketed host in request-target is not an IPv6 address";
		r->host_is_addr = true;
	} else {
		for (size_t k = 0; k < hp.host_len; k++) {
			char c = hp.host[k];
			if (!text_is_alnum(c) && c != '-' && c != '.' && c != '_')
				return "invalid character in host (letters, digits, '-', '.', '_' only)";
		}
		r->host_is_addr = cidr_addr_parsen(hp.host, hp.host_len, &r->addr);
	}
	if (hp.host_len > 255)
		return "host in request-target is longer than 255 bytes";
	memcpy(r->host, hp.host, hp.host_len);
	r->host[hp.host_len] = '\0';
	if (!r->host_is_addr)
		memset(&r->addr, 0, sizeof r->addr);
	*explicit_port = hp.has_port;
	r->port = hp.has_port ? hp.port : 80;
	return NULL;
}

static enum httpproxy_step parse_request_line(struct httpproxy_request *r,
					      struct head_state *st, const char *l,
					      size_t n)
{
	const char *sp1 = memchr(l, ' ', n);
	if (!sp1)
		return err(r, 400, "request line is not \"METHOD target HTTP/1.x\"");
	size_t mlen = (size_t)(sp1 - l);
	if (mlen == 0)
		return err(r, 400, "request line starts with a space");
	for (size_t i = 0; i < mlen; i++)
		if (!is_tchar((unsigned char)l[i]))
			return err(r, 400, "request method is not a token");
	if (mlen >= sizeof r->method)
		return err(r, 400, "request method is longer than 31 bytes");
	const char *t = sp1 + 1;
	const char *sp2 = memchr(t, ' ', n - (size_t)(t - l));
	if (!sp2)
		return err(r, 400, "request line is not \"METHOD target HTTP/1.x\"");
	size_t tlen = (size_t)(sp2 - t);
	const char *v = sp2 + 1;
	size_t vlen = n - (size_t)(v - l);
	if (tlen == 0 || memchr(v, ' ', vlen))
		return err(r, 400, "request line has extra spaces");
	if (vlen != 8 || memcmp(v, "HTTP/", 5) != 0 || !text_is_digit(v[5]) ||
	    v[6] != '.' || !text_is_digit(v[7]))
		return err(r, 400, "request line does not end in HTTP/<digit>.<digit>");
	if (v[5] != '1')
		return err(r, 505, "only HTTP/1.x is supported");
	r->minor_version = v[7] - '0';
	memcpy(r->method, l, mlen);
	r->method[mlen] = '\0';
	for (size_t i = 0; i < tlen; i++)
		if (t[i] == '#')
			return err(r, 400, "request-target contains a fragment ('#')");

	const char *why;
	if (strcmp(r->method, "CONNECT") == 0) {
		r->kind = HTTPPROXY_CONNECT;
		if (t[0] == '/' || memchr(t, '/', tlen))
			return err(r, 400, "CONNECT target must be host:port");
		why = parse_authority(r, t, tlen, true, &st->explicit_port);
		return why ? err(r, 400, why) : HTTPPROXY_DONE;
	}
	r->kind = HTTPPROXY_FORWARD;
	if (t[0] == '/' || (tlen == 1 && t[0] == '*'))
		return err(r, 405, "not a proxy request: the request-target is not an absolute http:// URL");
	size_t k = 0;
	while (k < tlen && (text_is_alpha(t[k]) ||
			    (k > 0 && (text_is_digit(t[k]) || t[k] == '+' ||
				       t[k] == '-' || t[k] == '.'))))
		k++;
	if (k == 0 || k + 3 > tlen || memcmp(t + k, "://", 3) != 0)
		return err(r, 400, "request-target is not an absolute URL (expected http://host/path)");
	if (ieq(t, k, "https"))
		return err(r, 501, "https:// URLs are not forwarded; use CONNECT (HTTPS_PROXY) instead");
	if (!ieq(t, k, "http"))
		return err(r, 501, "unsupported URL scheme (only http:// is forwarded)");
	size_t a = k + 3, e = a;
	while (e < tlen && t[e] != '/' && t[e] != '?')
		e++;
	if (memchr(t + a, '@', e - a))
		return err(r, 400, "userinfo (user@) in the request URL is not supported");
	why = parse_authority(r, t + a, e - a, false, &st->explicit_port);
	if (why)
		return err(r, 400, why);
	st->authority.off = (size_t)(t + a - st->buf);
	st->authority.len = e - a;
	st->path.off = (size_t)(t + e - st->buf);
	st->path.len = tlen - e;
	return HTTPPROXY_DONE;
}

static bool in_conn(const struct head_state *st, const char *name, size_t n)
{
	for (size_t i = 0; i < st->n_conn; i++)
		if (st->conn[i].len == n) {
			const char *tok = st->buf + st->conn[i].off;
			size_t j = 0;
			while (j < n && text_lower(tok[j]) == text_lower(name[j]))
				j++;
			if (j == n)
				return true;
		}
	return false;
}

/* Splits a comma-separated list value into elements; calls fn for each
 * non-empty trimmed element. Returns false if fn does. */
typedef bool (*elem_fn)(void *ctx, const char *e, size_t n, bool last);

static bool for_each_elem(const char *v, size_t n, elem_fn fn, void *ctx)
{
	size_t i = 0;
	/* Find the index of the last non-empty element first. */
	size_t last_start = (size_t)-1;
	for (size_t s = 0; s <= n;) {
		const char *c = memchr(v + s, ',', n - s);
		size_t e = c ? (size_t)(c - v) : n;
		const char *p = v + s;
		size_t pn = e - s;
		trim_ows(&p, &pn);
		if (pn)
			last_start = s;
		if (!c)
			break;
		s = e + 1;
	}
	while (i <= n) {
		const char *c = memchr(v + i, ',', n - i);
		size_t e = c ? (size_t)(c - v) : n;
		const char *p = v + i;
		size_t pn = e - i;
		trim_ows(&p, &pn);
		if (pn && !fn(ctx, p, pn, i == last_start))
			return false;
		if (!c)
			break;
		i = e + 1;
	}
	return true;
}

static bool all_tchar(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_tchar((unsigned char)s[i]))
			return false;
	return n > 0;
}

struct conn_ctx {
	struct head_state *st;
	bool too_many;
};

static bool conn_elem(void *ctx, const char *e, size_t n, bool last)
{
	(void)last;
	struct conn_ctx *c = ctx;
	if (!all_tchar(e, n))
		return false;
	if (c->st->n_conn == CONN_TOKENS_MAX) {
		c->too_many = true;
		return false;
	}
	c->st->conn[c->st->n_conn].off = (size_t)(e - c->st->buf);
	c->st->conn[c->st->n_conn].len = n;
	c->st->n_conn++;
	return true;
}

struct te_ctx {
	int status;	/* 0 ok, 400 or 501 */
	const char *why;
	bool chunked_seen;
};

static bool te_elem(void *ctx, const char *e, size_t n, bool last)
{
	struct te_ctx *c = ctx;
	/* A coding may carry parameters ("gzip;q=1"): the name is the token
	 * before ';'. Only the name matters for the decision. */
	const char *semi = memchr(e, ';', n);
	size_t nn = semi ? (size_t)(semi - e) : n;
	while (nn && is_ows((unsigned char)e[nn - 1]))
		nn--;
	if (!all_tchar(e, nn)) {
		c->status = 400;
		c->why = "Transfer-Encoding is not a list of codings";
		return false;
	}
	bool ch = ieq(e, nn, "chunked");
	if (ch && (c->chunked_seen || semi)) {
		c->status = 400;
		c->why = "Transfer-Encoding applies chunked more than once or with parameters";
		return false;
	}
	if (last && !ch) {
		c->status = 400;
		c->why = "Transfer-Encoding does not end in chunked: the request body length is ambiguous";
		return false;
	}
	if (!ch)
		c->status = 501;	/* remembered; only reported if nothing worse */
	c->chunked_seen = c->chunked_seen || ch;
	return true;
}

/* Decodes Basic credentials into r->user and r->pass, using out
 * (CRED_B64_MAX bytes) as scratch; proxy_auth wipes it. */
static enum httpproxy_step proxy_auth_decode(struct httpproxy_request *r, const char *v,
					     size_t n, unsigned char *out)
{
	size_t s = 0;
	while (s < n && is_tchar((unsigned char)v[s]))
		s++;
	if (s == 0)
		return err(r, 400, "Proxy-Authorization has no scheme");
	if (!ieq(v, s, "Basic"))
		return HTTPPROXY_DONE;	/* other schemes: no credentials */
	if (s == n || v[s] != ' ')
		return err(r, 400, "Proxy-Authorization: Basic has no credentials");
	while (s < n && v[s] == ' ')
		s++;
	const char *b = v + s;
	size_t bn = n - s, outlen;
	if (bn == 0 || bn > CRED_B64_MAX ||
	    !text_base64_decode(b, bn, out, CRED_B64_MAX, &outlen))
		return err(r, 400, "Proxy-Authorization: Basic credentials are not valid base64");
	const unsigned char *colon = memchr(out, ':', outlen);
	if (!colon)
		return err(r, 400, "Proxy-Authorization: Basic credentials are not user:password");
	size_t ul = (size_t)(colon - out), pl = outlen - ul - 1;
	if (ul > 255 || pl > 255)
		return err(r, 400, "Proxy-Authorization: user or password longer than 255 bytes");
	for (size_t i = 0; i < outlen; i++)
		if (out[i] == 0 || out[i] == 0x7f || out[i] < 0x20)
			return err(r, 400, "Proxy-Authorization: control character in user or password");
	memcpy(r->user, out, ul);
	r->user[ul] = '\0';
	memcpy(r->pass, colon + 1, pl);
	r->pass[pl] = '\0';
	r->have_credentials = true;
	return HTTPPROXY_DONE;
}

static enum httpproxy_step proxy_auth(struct httpproxy_request *r, const char *v, size_t n)
{
	unsigned char out[CRED_B64_MAX];
	enum httpproxy_step st = proxy_auth_decode(r, v, n, out);
	OPENSSL_cleanse(out, sizeof out);
	return st;
}

static enum httpproxy_step parse_header(struct httpproxy_request *r, struct head_state *st,
					const char *l, size_t n)
{
	if (is_ows((unsigned char)l[0]))
		return err(r, 400, "header line starts with whitespace (obsolete line folding)");
	const char *colon = memchr(l, ':', n);
	if (!colon)
		return err(r, 400, "header line has no ':'");
	size_t nn = (size_t)(colon - l);
	if (nn == 0)
		return err(r, 400, "header line has an empty name");
	for (size_t i = 0; i < nn; i++) {
		if (is_ows((unsigned char)l[i]))
			return err(r, 400, "whitespace between header name and ':'");
		if (!is_tchar((unsigned char)l[i]))
			return err(r, 400, "header name is not a token");
	}
	const char *v = colon + 1;
	size_t vn = n - nn - 1;
	trim_ows(&v, &vn);

	if (ieq(l, nn, "Content-Length")) {
		if (++st->n_cl > 1)
			return err(r, 400, "more than one Content-Length header");
		if (st->n_te)
			return err(r, 400, "both Transfer-Encoding and Content-Length: the request body length is ambiguous");
		if (vn == 0)
			return err(r, 400, "Content-Length is empty");
		uint64_t x = 0;
		for (size_t i = 0; i < vn; i++) {
			unsigned d = (unsigned char)v[i] - '0';
			if (d > 9)
				return err(r, 400, "Content-Length is not a single decimal number");
			if (x > (UINT64_MAX - d) / 10)
				return err(r, 400, "Content-Length is too large");
			x = x * 10 + d;
		}
		st->cl = x;
	} else if (ieq(l, nn, "Transfer-Encoding")) {
		if (++st->n_te > 1)
			return err(r, 400, "more than one Transfer-Encoding header");
		if (st->n_cl)
			return err(r, 400, "both Transfer-Encoding and Content-Length: the request body length is ambiguous");
		if (r->minor_version == 0)
			return err(r, 400, "Transfer-Encoding in an HTTP/1.0 request");
		struct te_ctx c = { 0, NULL, false };
		for_each_elem(v, vn, te_elem, &c);
		if (c.status == 400 || !c.chunked_seen)
			return err(r, 400, c.why ? c.why : "Transfer-Encoding is empty");
		if (c.status == 501)
			return err(r, 501, "Transfer-Encoding other than chunked is not supported");
		st->chunked = true;
	} else if (ieq(l, nn, "Host")) {
		if (++st->n_host > 1)
			return err(r, 400, "more than one Host header");
	} else if (ieq(l, nn, "Connection")) {
		struct conn_ctx c = { st, false };
		if (!for_each_elem(v, vn, conn_elem, &c))
			return err(r, 400, c.too_many ? "Connection header names more than 64 options"
						      : "Connection header is not a list of tokens");
	} else if (ieq(l, nn, "Proxy-Authorization")) {
		if (++st->n_pauth > 1)
			return err(r, 400, "more than one Proxy-Authorization header");
		return proxy_auth(r, v, vn);
	}
	return HTTPPROXY_DONE;
}

/* Headers never forwarded to the origin (Host is re-added from the URL). */
static bool hop_by_hop(const struct head_state *st, const char *name, size_t n)
{
	static const char *const drop[] = {
		"Host", "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization",
		"Proxy-Authenticate", "TE", "Trailer", "Upgrade",
	};
	for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++)
		if (ieq(name, n, drop[i]))
			return true;
	/* Connection may name any header, but never the framing ones: dropping
	 * those would change where the forwarded body ends. */
	if (ieq(name, n, "Content-Length") || ieq(name, n, "Transfer-Encoding"))
		return false;
	return in_conn(st, name, n);
}

/* Next line of buf[pos..end): sets *ls and *le (content, terminator excluded)
 * and returns the index after the LF. Only used on a validated head. */
static size_t next_line(const char *buf, size_t pos, size_t end, size_t *ls, size_t *le)
{
	const char *lf = memchr(buf + pos, '\n', end - pos);
	size_t e = (size_t)(lf - buf);
	*ls = pos;
	*le = (e > pos && buf[e - 1] == '\r') ? e - 1 : e;
	return e + 1;
}

static bool build_origin_head(struct httpproxy_request *r, const struct head_state *st,
			      size_t first_header, size_t head_end)
{
	const char *buf = st->buf;
	/* A kept header line "a:b\n" becomes "a: b\r\n": at most 2 more bytes
	 * per line of at least 3, so twice the head is always enough. */
	size_t cap = 2 * head_end + st->authority.len + 128;
	char *o = malloc(cap);
	if (!o)
		return false;
	size_t n = 0;
#define PUT(p, len) do { memcpy(o + n, (p), (len)); n += (len); } while (0)
#define PUTS(s) PUT((s), strlen(s))
	PUTS(r->method);
	PUTS(" ");
	if (st->path.len == 0)
		PUTS(strcmp(r->method, "OPTIONS") == 0 ? "*" : "/");
	else {
		if (buf[st->path.off] == '?')
			PUTS("/");
		PUT(buf + st->path.off, st->path.len);
	}
	char ver[16];
	snprintf(ver, sizeof ver, " HTTP/1.%d\r\n", r->minor_version);
	PUTS(ver);
	PUTS("Host: ");
	PUT(buf + st->authority.off, st->authority.len);
	PUTS("\r\n");
	size_t pos = first_header, ls, le;
	while (pos < head_end) {
		pos = next_line(buf, pos, head_end, &ls, &le);
		if (le == ls)
			break;
		const char *l = buf + ls;
		const char *colon = memchr(l, ':', le - ls);
		size_t nn = (size_t)(colon - l);
		if (hop_by_hop(st, l, nn))
			continue;
		const char *v = colon + 1;
		size_t vn = le - ls - nn - 1;
		trim_ows(&v, &vn);
		PUT(l, nn);
		PUTS(": ");
		PUT(v, vn);
		PUTS("\r\n");
	}
	PUTS("Connection: close\r\n\r\n");
#undef PUT
#undef PUTS
	r->origin_head = o;
	r->origin_head_len = n;
	return true;
}

/* Checks the bytes of one line, buf[s..e) where e is the LF (has_lf) or the
 * end of what is available. */
static const char *check_line_bytes(const char *buf, size_t s, size_t e, bool has_lf)
{
	for (size_t i = s; i < e; i++) {
		unsigned char c = (unsigned char)buf[i];
		if (c == '\r') {
			if (i + 1 == e)
				continue;	/* before the LF, or possibly before it */
			return "bare CR in request head";
		}
		if (c == 0)
			return "NUL byte in request head";
		if (text_is_ctl(c) && c != '\t')
			return "control character in request head";
	}
	(void)has_lf;
	return NULL;
}

enum httpproxy_step httpproxy_parse_request(struct httpproxy_request *r, const char *buf,
					    size_t len, size_t max_head, size_t *consumed)
{
	memset(r, 0, sizeof *r);
	*consumed = 0;
	struct head_state st;
	memset(&st, 0, sizeof st);
	st.buf = buf;
	size_t win = len < max_head ? len : max_head;
	size_t pos = 0, first_header = 0, head_end = 0;
	int lineno = 0;
	while (pos < win) {
		const char *lf = memchr(buf + pos, '\n', win - pos);
		size_t e = lf ? (size_t)(lf - buf) : win;
		const char *why = check_line_bytes(buf, pos, e, lf != NULL);
		if (why)
			return err(r, 400, why);
		if (!lf)
			break;
		size_t ce = (e > pos && buf[e - 1] == '\r') ? e - 1 : e;
		if (ce == pos) {
			if (lineno == 0)
				return err(r, 400, "empty request line");
			head_end = e + 1;
			break;
		}
		enum httpproxy_step s = lineno == 0
			? parse_request_line(r, &st, buf + pos, ce - pos)
			: parse_header(r, &st, buf + pos, ce - pos);
		if (s == HTTPPROXY_ERROR)
			return s;
		lineno++;
		pos = e + 1;
		if (lineno == 1)
			first_header = pos;
	}
	if (!head_end) {
		if (len >= max_head)
			return err(r, 431, "request head is larger than the limit");
		return HTTPPROXY_NEED_MORE;
	}
	if (r->kind == HTTPPROXY_CONNECT) {
		if (st.n_te || st.cl)
			return err(r, 400, "CONNECT request with a body");
		*consumed = head_end;
		return HTTPPROXY_DONE;
	}
	r->body = st.chunked ? HTTPPROXY_BODY_CHUNKED
		: st.n_cl && st.cl ? HTTPPROXY_BODY_LENGTH : HTTPPROXY_BODY_NONE;
	r->content_length = st.cl;
	if (!build_origin_head(r, &st, first_header, head_end))
		return err(r, 500, "out of memory");
	*consumed = head_end;
	return HTTPPROXY_DONE;
}

void httpproxy_request_clear(struct httpproxy_request *r)
{
	OPENSSL_cleanse(r->user, sizeof r->user);
	OPENSSL_cleanse(r->pass, sizeof r->pass);
	free(r->origin_head);
	r->origin_head = NULL;
	r->origin_head_len = 0;
}

/* ---- request body framing ---- */

enum {
	CH_SIZE_FIRST,	/* expecting the first hex digit of a chunk-size */
	CH_SIZE,	/* in the chunk-size */
	CH_BWS,		/* whitespace after the size: only ';' or CR may follow */
	CH_EXT,		/* chunk extensions after ';', up to CR */
	CH_SIZE_LF,	/* CR seen at the end of the size line */
	CH_DATA,
	CH_DATA_CR,
	CH_DATA_LF,
	CH_TRAILER_START,	/* after last-chunk: CR (end) or a field line */
	CH_TRAILER,
	CH_TRAILER_LF,
	CH_FINAL_LF,
	CH_DONE,
	CH_ERROR,
};

void httpproxy_body_init(struct httpproxy_body *b, const struct httpproxy_request *r)
{
	memset(b, 0, sizeof *b);
	b->kind = r->body;
	b->remaining = r->body == HTTPPROXY_BODY_LENGTH ? r->content_length : 0;
	b->state = CH_SIZE_FIRST;
}

static enum httpproxy_step chunked_feed(struct httpproxy_body *b, const char *buf, size_t len,
					size_t *consumed)
{
	size_t i = 0;
	while (i < len && b->state != CH_DONE && b->state != CH_ERROR) {
		unsigned char c = (unsigned char)buf[i];
		switch (b->state) {
		case CH_DATA: {
			uint64_t take = len - i;
			if (take > b->remaining)
				take = b->remaining;
			i += (size_t)take;
			b->remaining -= take;
			if (b->remaining == 0)
				b->state = CH_DATA_CR;
			continue;
		}
		case CH_SIZE_FIRST:
		case CH_SIZE:
			if (text_is_hex(c)) {
				unsigned d = text_is_digit(c) ? (unsigned)(c - '0')
							 : (unsigned)(text_lower((char)c) - 'a' + 10);
				if (b->remaining > (UINT64_MAX >> 4)) {
					b->state = CH_ERROR;
					break;
				}
				b->remaining = b->remaining << 4 | d;
				b->state = CH_SIZE;
			} else if (b->state == CH_SIZE && c == ';') {
				b->state = CH_EXT;
			} else if (b->state == CH_SIZE && is_ows(c)) {
				b->state = CH_BWS;
			} else if (b->state == CH_SIZE && c == '\r') {
				b->state = CH_SIZE_LF;
			} else {
				b->state = CH_ERROR;
			}
			break;
		case CH_BWS:
			if (c == ';')
				b->state = CH_EXT;
			else if (c == '\r')
				b->state = CH_SIZE_LF;
			else if (!is_ows(c))
				b->state = CH_ERROR;
			break;
		case CH_EXT:
			if (c == '\r')
				b->state = CH_SIZE_LF;
			else if (text_is_ctl(c) && c != '\t')
				b->state = CH_ERROR;
			break;
		case CH_SIZE_LF:
			if (c != '\n')
				b->state = CH_ERROR;
			else if (b->remaining == 0)
				b->state = CH_TRAILER_START;
			else
				b->state = CH_DATA;
			b->line_len = 0;
			i++;
			continue;
		case CH_DATA_CR:
			b->state = c == '\r' ? CH_DATA_LF : CH_ERROR;
			break;
		case CH_DATA_LF:
			b->state = c == '\n' ? CH_SIZE_FIRST : CH_ERROR;
			b->line_len = 0;
			i++;
			continue;
		case CH_TRAILER_START:
			if (c == '\r')
				b->state = CH_FINAL_LF;
			else if (is_ows(c) || text_is_ctl(c))
				b->state = CH_ERROR;
			else
				b->state = CH_TRAILER;
			break;
		case CH_TRAILER:
			if (c == '\r')
				b->state = CH_TRAILER_LF;
			else if (text_is_ctl(c) && c != '\t')
				b->state = CH_ERROR;
			break;
		case CH_TRAILER_LF:
			b->state = c == '\n' ? CH_TRAILER_START : CH_ERROR;
			b->line_len = 0;
			i++;
			continue;
		case CH_FINAL_LF:
			b->state = c == '\n' ? CH_DONE : CH_ERROR;
			break;
		}
		if (b->state == CH_ERROR)
			break;
		i++;
		if (++b->line_len > CHUNK_LINE_MAX) {
			b->state = CH_ERROR;
			break;
		}
	}
	*consumed = i;
	if (b->state == CH_ERROR)
		return HTTPPROXY_ERROR;
	return b->state == CH_DONE ? HTTPPROXY_DONE : HTTPPROXY_NEED_MORE;
}

enum httpproxy_step httpproxy_body_feed(struct httpproxy_body *b, const char *buf, size_t len,
					size_t *consumed)
{
	*consumed = 0;
	switch (b->kind) {
	case HTTPPROXY_BODY_NONE:
		return HTTPPROXY_DONE;
	case HTTPPROXY_BODY_LENGTH: {
		uint64_t take = len < b->remaining ? len : b->remaining;
		*consumed = (size_t)take;
		b->remaining -= take;
		return b->remaining ? HTTPPROXY_NEED_MORE : HTTPPROXY_DONE;
	}
	case HTTPPROXY_BODY_CHUNKED:
		return chunked_feed(b, buf, len, consumed);
	}
	return HTTPPROXY_ERROR;
}

/* ---- responses ---- */

const char *httpproxy_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 407: return "Proxy Authentication Required";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Error";
	}
}

/* snprintf into buf, returning what was written (never more than cap-1). */
static size_t clamp(int n, size_t cap)
{
	if (n < 0 || cap == 0)
		return 0;
	return (size_t)n < cap ? (size_t)n : cap - 1;
}

size_t httpproxy_format_error(char *buf, size_t cap, int status, const char *why)
{
	if (!why)
		why = httpproxy_reason(status);
	int n = snprintf(buf, cap,
			 "HTTP/1.1 %d %s\r\n"
			 "Content-Type: text/plain\r\n"
			 "Content-Length: %zu\r\n"
			 "Connection: close\r\n"
			 "%s"
			 "\r\n"
			 "%s\n",
			 status, httpproxy_reason(status), strlen(why) + 1,
			 status == 407 ? "Proxy-Authenticate: Basic realm=\"tailfence\"\r\n"
			 : status == 503 ? "Retry-After: 1\r\n" : "",
			 why);
	return clamp(n, cap);
}

size_t httpproxy_format_established(char *buf, size_t cap)
{
	return clamp(snprintf(buf, cap, "HTTP/1.1 200 Connection established\r\n\r\n"), cap);
}

size_t httpproxy_format_connect(char *buf, size_t cap, const struct cidr_addr *dst,
				uint16_t port)
{
	char hp[CIDR_ADDR_STRLEN + 8];
	if (dst->family != AF_INET && dst->family != AF_INET6)
		return 0;
	cidr_addr_format_port(dst, port, hp, sizeof hp);
	int n = snprintf(buf, cap, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", hp, hp);
	if (n < 0 || (size_t)n >= cap)
		return 0;
	return (size_t)n;
}

enum httpproxy_step httpproxy_parse_connect_response(const char *buf, size_t len,
						     size_t max_head, size_t *consumed,
						     int *status)
{
	*consumed = 0;
	size_t win = len < max_head ? len : max_head;
	size_t pos = 0, head_end = 0;
	int lineno = 0;
	while (pos < win) {
		const char *lf = memchr(buf + pos, '\n', win - pos);
		size_t e = lf ? (size_t)(lf - buf) : win;
		if (check_line_bytes(buf, pos, e, lf != NULL))
			return HTTPPROXY_ERROR;
		if (!lf)
			break;
		size_t ce = (e > pos && buf[e - 1] == '\r') ? e - 1 : e;
		if (lineno == 0) {
			/* HTTP/1.x SP 3DIGIT [SP reason] */
			const char *l = buf + pos;
			size_t n = ce - pos;
			if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || !text_is_digit(l[7]) ||
			    l[8] != ' ' || !text_is_digit(l[9]) ||
			    !text_is_digit(l[10]) || !text_is_digit(l[11]) ||
			    (n > 12 && l[12] != ' '))
				return HTTPPROXY_ERROR;
			*status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
		} else if (ce == pos) {
			head_end = e + 1;
			break;
		} else if (is_ows((unsigned char)buf[pos]) || !memchr(buf + pos, ':', ce - pos)) {
			return HTTPPROXY_ERROR;
		}
		lineno++;
		pos = e + 1;
	}
	if (!head_end)
		return len >= max_head ? HTTPPROXY_ERROR : HTTPPROXY_NEED_MORE;
	*consumed = head_end;
	return HTTPPROXY_DONE;
}
