/*
 * test_httpproxy: table-driven tests of the HTTP proxy request-head parser
 * (CONNECT and absolute-form, the origin head built for forwarding, framing
 * rules), request-body framing, error responses and the upstream CONNECT
 * exchange.
 *
 * Every head case is also run over each prefix of its input (a client
 * sending one byte at a time): every prefix before the decision must be
 * NEED_MORE, and the first decision must equal the whole-input result.
 * Every body case is fed all at once, byte by byte, and split in two at
 * every point.
 */
#include "tailfence/httpproxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define S(s) (s), sizeof(s) - 1
#define MAXH 8192

static const char *step_name(enum httpproxy_step s)
{
	static const char *const n[] = { "NEED_MORE", "DONE", "ERROR" };
	return (unsigned)s < 3 ? n[s] : "?";
}

struct h_case {
	const char *name;
	const char *in;
	size_t len;
	size_t max_head;		/* 0: MAXH */
	enum httpproxy_step step;
	int status;			/* on ERROR */
	size_t trail;			/* on DONE: bytes after the head */
	/* On DONE: */
	enum httpproxy_kind kind;
	const char *method;
	const char *host;
	bool host_is_addr;
	const char *addr;		/* canonical text when host_is_addr */
	uint16_t port;
	int minor;
	bool have_credentials;
	const char *user, *pass;
	enum httpproxy_body_kind body;
	uint64_t content_length;
	const char *origin_head;	/* FORWARD: exact */
};

#define ESC_MAX 4096
static const char *esc(const char *s, size_t n, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n && o + 5 < ESC_MAX; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r') { out[o++] = '\\'; out[o++] = 'r'; }
		else if (c == '\n') { out[o++] = '\\'; out[o++] = 'n'; }
		else if (c < 0x20 || c >= 0x7f) o += (size_t)snprintf(out + o, 5, "\\x%02x", c);
		else out[o++] = (char)c;
	}
	out[o] = '\0';
	return out;
}

static void check_fields(const struct h_case *c, const struct httpproxy_request *r,
			 enum httpproxy_step st, size_t consumed, const char *mode)
{
	CHECK(st == c->step, "%s (%s): step %s, want %s (status %d: %s)", c->name, mode,
	      step_name(st), step_name(c->step), r->status, r->why ? r->why : "-");
	if (st != c->step)
		return;
	if (st == HTTPPROXY_ERROR) {
		CHECK(r->status == c->status, "%s (%s): status %d, want %d (%s)", c->name, mode,
		      r->status, c->status, r->why ? r->why : "-");
		CHECK(r->why && *r->why, "%s (%s): no reason", c->name, mode);
		return;
	}
	if (st != HTTPPROXY_DONE)
		return;
	CHECK(consumed == c->len - c->trail, "%s (%s): consumed %zu, want %zu", c->name, mode,
	      consumed, c->len - c->trail);
	CHECK(r->kind == c->kind, "%s (%s): kind %d", c->name, mode, r->kind);
	CHECK(strcmp(r->method, c->method) == 0, "%s (%s): method %s", c->name, mode, r->method);
	CHECK(strcmp(r->host, c->host) == 0, "%s (%s): host \"%s\", want \"%s\"", c->name, mode,
	      r->host, c->host);
	CHECK(r->host_is_addr == c->host_is_addr, "%s (%s): host_is_addr %d", c->name, mode,
	      r->host_is_addr);
	if (c->host_is_addr) {
		char a[CIDR_ADDR_STRLEN];
		cidr_addr_format(&r->addr, a, sizeof a);
		CHECK(strcmp(a, c->addr) == 0, "%s (%s): addr %s, want %s", c->name, mode, a,
		      c->addr);
	} else {
		CHECK(r->addr.family == 0, "%s (%s): addr set for a name", c->name, mode);
	}
	CHECK(r->port == c->port, "%s (%s): port %u, want %u", c->name, mode, r->port, c->port);
	CHECK(r->minor_version == c->minor, "%s (%s): minor %d", c->name, mode, r->minor_version);
	CHECK(r->have_credentials == c->have_credentials, "%s (%s): have_credentials %d",
	      c->name, mode, r->have_credentials);
	if (c->have_credentials)
		CHECK(strcmp(r->user, c->user) == 0 && strcmp(r->pass, c->pass) == 0,
		      "%s (%s): user \"%s\" pass \"%s\"", c->name, mode, r->user, r->pass);
	if (c->kind == HTTPPROXY_CONNECT) {
		CHECK(r->origin_head == NULL, "%s (%s): origin head for CONNECT", c->name, mode);
		return;
	}
	CHECK(r->body == c->body, "%s (%s): body kind %d, want %d", c->name, mode, r->body,
	      c->body);
	CHECK(r->content_length == c->content_length, "%s (%s): content_length %llu", c->name,
	      mode, (unsigned long long)r->content_length);
	char got[ESC_MAX], want[ESC_MAX];
	CHECK(r->origin_head && r->origin_head_len == strlen(c->origin_head) &&
		      memcmp(r->origin_head, c->origin_head, r->origin_head_len) == 0,
	      "%s (%s): origin head\n  got  %s\n  want %s", c->name, mode,
	      r->origin_head ? esc(r->origin_head, r->origin_head_len, got) : "(null)",
	      esc(c->origin_head, strlen(c->origin_head), want));
}

static void check_head(const struct h_case *c)
{
	size_t maxh = c->max_head ? c->max_head : MAXH;
	struct httpproxy_request r;
	size_t consumed = 0;
	/* The input is copied to the heap so ASan sees reads past its end. */
	char *in = malloc(c->len ? c->len : 1);
	memcpy(in, c->in, c->len);
	enum httpproxy_step st = httpproxy_parse_request(&r, in, c->len, maxh, &consumed);
	check_fields(c, &r, st, consumed, "all at once");
	httpproxy_request_clear(&r);

	for (size_t k = 0; k <= c->len; k++) {
		char *p = malloc(k ? k : 1);
		memcpy(p, c->in, k);
		st = httpproxy_parse_request(&r, p, k, maxh, &consumed);
		if (st != HTTPPROXY_NEED_MORE || k == c->len) {
			check_fields(c, &r, st, consumed, "byte by byte");
			httpproxy_request_clear(&r);
			free(p);
			break;
		}
		CHECK(consumed == 0, "%s: NEED_MORE consumed %zu", c->name, consumed);
		httpproxy_request_clear(&r);
		free(p);
	}
	free(in);
}

#define CONNECT_DONE(nm, line, hst, isaddr, ad, prt)                          \
	{ .name = nm, .in = S(line), .step = HTTPPROXY_DONE, \
	  .kind = HTTPPROXY_CONNECT, .method = "CONNECT", .host = hst, .host_is_addr = isaddr, \
	  .addr = ad, .port = prt, .minor = 1 }
#define ERR(nm, line, st) { .name = nm, .in = S(line), .step = HTTPPROXY_ERROR, .status = st }

static const struct h_case heads[] = {
	/* ---- CONNECT ---- */
	CONNECT_DONE("connect name", "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n",
		     "localhost", false, NULL, 443),
	CONNECT_DONE("connect ipv4", "CONNECT 127.0.0.1:5432 HTTP/1.1\r\n\r\n", "127.0.0.1", true,
		     "127.0.0.1", 5432),
	CONNECT_DONE("connect ipv6", "CONNECT [::1]:8443 HTTP/1.1\r\nUser-Agent: x\r\n\r\n", "::1",
		     true, "::1", 8443),
	CONNECT_DONE("connect ipv4-mapped ipv6 is normalised",
		     "CONNECT [::ffff:127.0.0.9]:80 HTTP/1.1\r\n\r\n", "::ffff:127.0.0.9", true,
		     "127.0.0.9", 80),
	CONNECT_DONE("connect port 65535", "CONNECT a-b_c.example.test:65535 HTTP/1.1\r\n\r\n",
		     "a-b_c.example.test", false, NULL, 65535),
	CONNECT_DONE("connect bare LF line endings", "CONNECT localhost:443 HTTP/1.1\nHost: x\n\n",
		     "localhost", false, NULL, 443),
	CONNECT_DONE("connect with Content-Length 0",
		     "CONNECT localhost:443 HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "localhost",
		     false, NULL, 443),
	{ .name = "connect leaves tunnel bytes unconsumed",
	  .in = S("CONNECT localhost:443 HTTP/1.1\r\n\r\n\x16\x03\x01\x02\x00"),
	  .step = HTTPPROXY_DONE, .trail = 5, .kind = HTTPPROXY_CONNECT, .method = "CONNECT",
	  .host = "localhost", .port = 443, .minor = 1 },
	{ .name = "connect with basic credentials",
	  .in = S("CONNECT localhost:443 HTTP/1.1\r\nProxy-Authorization: Basic YWxpY2U6czNjcjN0\r\n\r\n"),
	  .step = HTTPPROXY_DONE, .kind = HTTPPROXY_CONNECT, .method = "CONNECT",
	  .host = "localhost", .port = 443, .minor = 1, .have_credentials = true,
	  .user = "alice", .pass = "s3cr3t" },
	{ .name = "connect basic, unpadded base64, lowercase scheme, password with ':'",
	  .in = S("CONNECT localhost:443 HTTP/1.1\r\nProxy-Authorization: basic dTpwOnE\r\n\r\n"),
	  .step = HTTPPROXY_DONE, .kind = HTTPPROXY_CONNECT, .method = "CONNECT",
	  .host = "localhost", .port = 443, .minor = 1, .have_credentials = true,
	  .user = "u", .pass = "p:q" },
	{ .name = "connect basic, empty password",
	  .in = S("CONNECT localhost:443 HTTP/1.1\r\nProxy-Authorization: Basic Ym9iOg==\r\n\r\n"),
	  .step = HTTPPROXY_DONE, .kind = HTTPPROXY_CONNECT, .method = "CONNECT",
	  .host = "localhost", .port = 443, .minor = 1, .have_credentials = true,
	  .user = "bob", .pass = "" },
	{ .name = "connect bearer: no credentials",
	  .in = S("CONNECT localhost:443 HTTP/1.1\r\nProxy-Authorization: Bearer abc.def\r\n\r\n"),
	  .step = HTTPPROXY_DONE, .kind = HTTPPROXY_CONNECT, .method = "CONNECT",
	  .host = "localhost", .port = 443, .minor = 1 },
	ERR("connect no port", "CONNECT localhost HTTP/1.1\r\n\r\n", 400),
	ERR("connect empty port", "CONNECT localhost: HTTP/1.1\r\n\r\n", 400),
	ERR("connect port 0", "CONNECT localhost:0 HTTP/1.1\r\n\r\n", 400),
	ERR("connect port 65536", "CONNECT localhost:65536 HTTP/1.1\r\n\r\n", 400),
	ERR("connect port not a number", "CONNECT localhost:https HTTP/1.1\r\n\r\n", 400),
	ERR("connect port with sign", "CONNECT localhost:+443 HTTP/1.1\r\n\r\n", 400),
	ERR("connect ipv6 without brackets", "CONNECT ::1:443 HTTP/1.1\r\n\r\n", 400),
	ERR("connect ipv6 without port", "CONNECT [::1] HTTP/1.1\r\n\r\n", 400),
	ERR("connect ipv4 in brackets", "CONNECT [127.0.0.1]:80 HTTP/1.1\r\n\r\n", 400),
	ERR("connect ipv6 zone", "CONNECT [fe80::1%25eth0]:80 HTTP/1.1\r\n\r\n", 400),
	ERR("connect unclosed bracket", "CONNECT [::1:80 HTTP/1.1\r\n\r\n", 400),
	ERR("connect bad host character", "CONNECT exa!mple:80 HTTP/1.1\r\n\r\n", 400),
	ERR("connect with a path", "CONNECT localhost:443/x HTTP/1.1\r\n\r\n", 400),
	ERR("connect with a URL", "CONNECT http://localhost:443 HTTP/1.1\r\n\r\n", 400),
	ERR("connect with a body", "CONNECT localhost:443 HTTP/1.1\r\nContent-Length: 5\r\n\r\n", 400),
	ERR("connect chunked", "CONNECT localhost:443 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),

	/* ---- absolute-form: the origin head ---- */
	{ .name = "get with path, query, proxy headers",
	  .in = S("GET http://127.0.0.1:8080/a/b?q=1&r=%20 HTTP/1.1\r\n"
		  "Host: 127.0.0.1:8080\r\nUser-Agent: curl/8\r\nAccept: */*\r\n"
		  "Proxy-Connection: Keep-Alive\r\n"
		  "Proxy-Authorization: Basic YWxpY2U6czNjcjN0\r\n\r\n"),
	  .step = HTTPPROXY_DONE, .kind = HTTPPROXY_FORWARD, .method = "GET",
	  .host = "127.0.0.1", .host_is_addr = true, .addr = "127.0.0.1", .port = 8080, .minor = 1,
	  .have_credentials = true, .user = "alice", .pass = "s3cr3t", .body = HTTPPROXY_BODY_NONE,
	  .origin_head = "GET /a/b?q=1&r=%20 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
			 "User-Agent: curl/8\r\nAccept: */*\r\nConnection: close\r\n\r\n" },
	{ .name = "get without a path",
	  .in = S("GET http://origin.test HTTP/1.1\r\n\r\n"),
	  .step = HTTPPROXY_DONE, .kind = HTTPPROXY_FORWARD, .method = "GET",
	  .host = "origin.test", .port = 80, .minor = 1,
	  .origin_head = "GET / HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n" },
	{ .name = "get with query but no path, uppercase scheme",
	  .in = S("GET HTTP://origin.test?x=1 HTTP/1.1\r\n\r\n"),
	  .step = HTTPPROXY_DONE, .kind = HTTPPROXY_FORWARD, .method = "GET",
	  .host = "origin.test", .port = 80, .minor = 1,
	  .origin_head = "GET /?x=1 HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n" },
	{ .name = "options without a path becomes OPTIONS *",
	  .in = S("OPTIONS http://origin.test:81 HTTP/1.1\r\n\r\n"),
	  .step = HTTPPROXY_DONE, .kind = HTTPPROXY_FORWARD, .method = "OPTIONS",
	  .host = "origin.test", .port = 81, .minor = 1,
	  .origin_head = "OPTIONS * HTTP/1.1\r\nHost: origin.test:81\r\nConnection: close\r\n\r\n" },
	{ .name = "ipv6 origin, Host header replaced",
	  .in = S("GET http://[::1]:8000/x HTTP/1.1\r\nHost: evil.test\r\n\r\n"),
	  .step = HTTPPROXY_DONE, .kind = HTTPPROXY_FORWARD, .method = "GET",
	  .host = "::1", .host_is_addr = true, .addr = "::1", .port = 8000, .minor = 1,
	  .origin_head = "GET /x HTTP/1.1\r\nHost: [::1]:8000\r\nConnection: close\r\n\r\n" },
	{ .name = "http/1.0 keeps its version",
	  .in = S("GET http://origin.test/ HTTP/1.0\r\nAccept: */*\r\n\r\n"),
	  .step = HTTPPROXY_DONE, .kind = HTTPPROXY_FORWARD, .method = "GET",
	  .host = "origin.test", .port = 80, .minor = 0,
	  .origin_head = "GET / HTTP/1.0\r\nHost: origin.test\r\nAccept: */*\r\nConnection: close\r\n\r\n" },
	{ .name = "post with Content-Length",
	  .in = S("POST http://origin.test/p HTTP/1.1\r\nContent-Type: text/plain\r\n"
		  "Content-Length: 5\r\n\r\nhello"),
	  .step = HTTPPROXY_DONE, .trail = 5, .kind = HTTPPROXY_FORWARD, .method = "POST",
	  .host = "origin.test", .port = 80, .minor = 1, .body = HTTPPROXY_BODY_LENGTH,
	  .content_length = 5,
	  .origin_head = "POST /p HTTP/1.1\r\nHost: origin.test\r\nContent-Type: text/plain\r\n"
			 "Content-Length: 5\r\nConnection: close\r\n\r\n" },
	{ .name = "post with Content-Length 0 has no body",
	  .in = S("POST http://origin.test/p HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
	  .step = HTTPPROXY_DONE, .kind = HTTPPROXY_FORWARD, .method = "POST",
	  .host = "origin.test", .port = 80, .minor = 1, .body = HTTPPROXY_BODY_NONE,
	  .origin_head = "POST /p HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 0\r\n"
			 "Connection: close\r\n\r\n" },
	{ .name = "largest Content-Length",
	  .in = S("PUT http://origin.test/ HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n"),
	  .step = HTTPPROXY_DONE, .kind = HTTPPROXY_FORWARD, .method = "PUT",
	  .host = "origin.test", .port = 80, .minor = 1, .body = HTTPPROXY_BODY_LENGTH,
	  .content_length = UINT64_MAX,
	  .origin_head = "PUT / HTTP/1.1\r\nHost: origin.test\r\n"
			 "Content-Length: 18446744073709551615\r\nConnection: close\r\n\r\n" },
	{ .name = "post chunked",
	  .in = S("POST http://origin.test/ HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"),
	  .step = HTTPPROXY_DONE, .kind = HTTPPROXY_FORWARD, .method = "POST",
	  .host = "origin.test", .port = 80, .minor = 1, .body = HTTPPROXY_BODY_CHUNKED,
	  .origin_head = "POST / HTTP/1.1\r\nHost: origin.test\r\nTransfer-Encoding: Chunked\r\n"
			 "Connection: close\r\n\r\n" },
	{ .name = "hop-by-hop headers and those Connection names are dropped",
	  .in = S("GET http://origin.test/ HTTP/1.1\r\n"
		  "Connection: keep-alive, X-Secret ,, x-other\r\n"
		  "X-Secret: 1\r\nKeep-Alive: 300\r\nTE: trailers\r\nTrailer: X\r\n"
		  "Upgrade: websocket\r\nProxy-Authenticate: x\r\nx-other:2\r\n"
		  "X-Kept:  spaced value \t\r\n\r\n"),
	  .step = HTTPPROXY_DONE, .kind = HTTPPROXY_FORWARD, .method = "GET",
	  .host = "origin.test", .port = 80, .minor = 1,
	  .origin_head = "GET / HTTP/1.1\r\nHost: origin.test\r\nX-Kept: spaced value\r\n"
			 "Connection: close\r\n\r\n" },
	{ .name = "Connection cannot drop the framing headers",
	  .in = S("POST http://origin.test/ HTTP/1.1\r\nConnection: Content-Length\r\n"
		  "Content-Length: 3\r\n\r\n"),
	  .step = HTTPPROXY_DONE, .kind = HTTPPROXY_FORWARD, .method = "POST",
	  .host = "origin.test", .port = 80, .minor = 1, .body = HTTPPROXY_BODY_LENGTH,
	  .content_length = 3,
	  .origin_head = "POST / HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 3\r\n"
			 "Connection: close\r\n\r\n" },
	{ .name = "bare LF line endings are rebuilt with CRLF",
	  .in = S("GET http://origin.test/x HTTP/1.1\nAccept: a\r\nX-Y: z\n\n"),
	  .step = HTTPPROXY_DONE, .kind = HTTPPROXY_FORWARD, .method = "GET",
	  .host = "origin.test", .port = 80, .minor = 1,
	  .origin_head = "GET /x HTTP/1.1\r\nHost: origin.test\r\nAccept: a\r\nX-Y: z\r\n"
			 "Connection: close\r\n\r\n" },
	{ .name = "empty header value, obs-text kept",
	  .in = S("GET http://origin.test/ HTTP/1.1\r\nX-Empty:\r\nX-Utf8: caf\xc3\xa9\r\n\r\n"),
	  .step = HTTPPROXY_DONE, .kind = HTTPPROXY_FORWARD, .method = "GET",
	  .host = "origin.test", .port = 80, .minor = 1,
	  .origin_head = "GET / HTTP/1.1\r\nHost: origin.test\r\nX-Empty: \r\nX-Utf8: caf\xc3\xa9\r\n"
			 "Connection: close\r\n\r\n" },

	/* ---- not proxy requests, unsupported ---- */
	ERR("origin-form", "GET / HTTP/1.1\r\nHost: origin.test\r\n\r\n", 405),
	ERR("asterisk-form", "OPTIONS * HTTP/1.1\r\n\r\n", 405),
	ERR("https absolute-form", "GET https://origin.test/ HTTP/1.1\r\n\r\n", 501),
	ERR("ftp absolute-form", "GET ftp://origin.test/ HTTP/1.1\r\n\r\n", 501),
	ERR("authority-form for GET", "GET origin.test:80 HTTP/1.1\r\n\r\n", 400),
	ERR("HTTP/2.0", "GET http://origin.test/ HTTP/2.0\r\n\r\n", 505),
	ERR("HTTP/0.9 style", "GET http://origin.test/\r\n\r\n", 400),
	ERR("lowercase version", "GET http://origin.test/ http/1.1\r\n\r\n", 400),
	ERR("version with trailing junk", "GET http://origin.test/ HTTP/1.1x\r\n\r\n", 400),
	ERR("double space", "GET  http://origin.test/ HTTP/1.1\r\n\r\n", 400),
	ERR("trailing space", "GET http://origin.test/ HTTP/1.1 \r\n\r\n", 400),
	ERR("method not a token", "G(T http://origin.test/ HTTP/1.1\r\n\r\n", 400),
	ERR("method too long", "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFG http://o/ HTTP/1.1\r\n\r\n", 400),
	ERR("userinfo", "GET http://user:pw@origin.test/ HTTP/1.1\r\n\r\n", 400),
	ERR("fragment", "GET http://origin.test/#top HTTP/1.1\r\n\r\n", 400),
	ERR("empty host", "GET http:///x HTTP/1.1\r\n\r\n", 400),
	ERR("port 0 in URL", "GET http://origin.test:0/ HTTP/1.1\r\n\r\n", 400),
	ERR("empty request line", "\r\nGET http://origin.test/ HTTP/1.1\r\n\r\n", 400),
	ERR("TLS handshake", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),

	/* ---- header syntax ---- */
	ERR("obs-fold", "GET http://o.test/ HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", 400),
	ERR("whitespace before first header", "GET http://o.test/ HTTP/1.1\r\n X-A: a\r\n\r\n", 400),
	ERR("whitespace before colon", "GET http://o.test/ HTTP/1.1\r\nX-A : a\r\n\r\n", 400),
	ERR("no colon", "GET http://o.test/ HTTP/1.1\r\nX-A a\r\n\r\n", 400),
	ERR("empty header name", "GET http://o.test/ HTTP/1.1\r\n: a\r\n\r\n", 400),
	ERR("header name not a token", "GET http://o.test/ HTTP/1.1\r\nX[A]: a\r\n\r\n", 400),
	ERR("bare CR in a header", "GET http://o.test/ HTTP/1.1\r\nX-A: a\rb\r\n\r\n", 400),
	ERR("bare CR ending a line", "GET http://o.test/ HTTP/1.1\r\nX-A: a\r\r\n\r\n", 400),
	ERR("NUL in a header", "GET http://o.test/ HTTP/1.1\r\nX-A: a\0b\r\n\r\n", 400),
	ERR("NUL in the request line", "GET http://o.test/\0 HTTP/1.1\r\n\r\n", 400),
	ERR("control character in a header", "GET http://o.test/ HTTP/1.1\r\nX-A: \x1b[0m\r\n\r\n", 400),
	ERR("two Host headers", "GET http://o.test/ HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),

	/* ---- body framing ---- */
	ERR("duplicate Content-Length", "POST http://o.test/ HTTP/1.1\r\nContent-Length: 5\r\n"
	    "Content-Length: 5\r\n\r\n", 400),
	ERR("Content-Length list", "POST http://o.test/ HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", 400),
	ERR("Content-Length signed", "POST http://o.test/ HTTP/1.1\r\nContent-Length: +5\r\n\r\n", 400),
	ERR("Content-Length negative", "POST http://o.test/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
	ERR("Content-Length empty", "POST http://o.test/ HTTP/1.1\r\nContent-Length:\r\n\r\n", 400),
	ERR("Content-Length hex", "POST http://o.test/ HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n", 400),
	ERR("Content-Length overflow", "POST http://o.test/ HTTP/1.1\r\n"
	    "Content-Length: 18446744073709551616\r\n\r\n", 400),
	ERR("CL then TE", "POST http://o.test/ HTTP/1.1\r\nContent-Length: 5\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", 400),
	ERR("TE then CL", "POST http://o.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
	    "Content-Length: 5\r\n\r\n", 400),
	ERR("TE gzip, chunked", "POST http://o.test/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
	ERR("TE chunked, gzip", "POST http://o.test/ HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
	ERR("TE identity", "POST http://o.test/ HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", 400),
	ERR("TE chunked twice", "POST http://o.test/ HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
	ERR("TE empty", "POST http://o.test/ HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n", 400),
	ERR("TE two headers", "POST http://o.test/ HTTP/1.1\r\nTransfer-Encoding: gzip\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", 400),
	ERR("TE with junk", "POST http://o.test/ HTTP/1.1\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", 400),
	ERR("TE in HTTP/1.0", "POST http://o.test/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),

	/* ---- credentials ---- */
	ERR("two Proxy-Authorization", "GET http://o.test/ HTTP/1.1\r\nProxy-Authorization: Basic dTpw\r\n"
	    "Proxy-Authorization: Basic dTpw\r\n\r\n", 400),
	ERR("basic not base64", "GET http://o.test/ HTTP/1.1\r\nProxy-Authorization: Basic dT!w\r\n\r\n", 400),
	ERR("basic bad padding", "GET http://o.test/ HTTP/1.1\r\nProxy-Authorization: Basic dTpwe=\r\n\r\n", 400),
	ERR("basic no colon", "GET http://o.test/ HTTP/1.1\r\nProxy-Authorization: Basic YWxpY2U=\r\n\r\n", 400),
	ERR("basic without credentials", "GET http://o.test/ HTTP/1.1\r\nProxy-Authorization: Basic\r\n\r\n", 400),
	ERR("basic NUL in password", "GET http://o.test/ HTTP/1.1\r\nProxy-Authorization: Basic dTpwAHg=\r\n\r\n", 400),

	/* ---- size limit and incomplete heads ---- */
	{ .name = "head over the limit", .max_head = 48,
	  .in = S("GET http://o.test/ HTTP/1.1\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n"),
	  .step = HTTPPROXY_ERROR, .status = 431 },
	{ .name = "head exactly at the limit", .max_head = 34,
	  .in = S("CONNECT localhost:443 HTTP/1.1\r\n\r\n"),
	  .step = HTTPPROXY_DONE, .kind = HTTPPROXY_CONNECT, .method = "CONNECT",
	  .host = "localhost", .port = 443, .minor = 1 },
	{ .name = "head one byte over the limit", .max_head = 33,
	  .in = S("CONNECT localhost:443 HTTP/1.1\r\n\r\n"),
	  .step = HTTPPROXY_ERROR, .status = 431 },
	{ .name = "incomplete head", .in = S("GET http://o.test/ HTTP/1.1\r\nAccept: */*\r\n"),
	  .step = HTTPPROXY_NEED_MORE },
	{ .name = "incomplete, ends in CR", .in = S("GET http://o.test/ HTTP/1.1\r\n\r"),
	  .step = HTTPPROXY_NEED_MORE },
	{ .name = "empty", .in = S(""), .step = HTTPPROXY_NEED_MORE },
};

/* ---- bodies ---- */

struct b_case {
	const char *name;
	const char *in;
	size_t len;
	enum httpproxy_body_kind kind;
	uint64_t content_length;
	enum httpproxy_step step;
	size_t consumed;	/* total (on DONE and NEED_MORE) */
};

static const struct b_case bodies[] = {
	{ "length, exact", S("hello"), HTTPPROXY_BODY_LENGTH, 5, HTTPPROXY_DONE, 5 },
	{ "length, more follows", S("helloGET / HTTP/1.1"), HTTPPROXY_BODY_LENGTH, 5, HTTPPROXY_DONE, 5 },
	{ "length, short", S("hel"), HTTPPROXY_BODY_LENGTH, 5, HTTPPROXY_NEED_MORE, 3 },
	{ "none", S("GET / HTTP/1.1"), HTTPPROXY_BODY_NONE, 0, HTTPPROXY_DONE, 0 },
	{ "chunked, one chunk", S("5\r\nhello\r\n0\r\n\r\nNEXT"), HTTPPROXY_BODY_CHUNKED, 0,
	  HTTPPROXY_DONE, 15 },
	{ "chunked, hex sizes and extensions", S("A;name=\"v\"\r\n0123456789\r\n1f ; x\r\n"
	  "0123456789abcdef0123456789abcde\r\n000\r\n\r\n"), HTTPPROXY_BODY_CHUNKED, 0,
	  HTTPPROXY_DONE, 72 },
	{ "chunked, trailers", S("3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\nZ"), HTTPPROXY_BODY_CHUNKED, 0,
	  HTTPPROXY_DONE, 31 },
	{ "chunked, data containing CRLF", S("4\r\n\r\n\r\n\r\n0\r\n\r\n"), HTTPPROXY_BODY_CHUNKED, 0,
	  HTTPPROXY_DONE, 14 },
	{ "chunked, incomplete", S("5\r\nhel"), HTTPPROXY_BODY_CHUNKED, 0, HTTPPROXY_NEED_MORE, 6 },
	{ "chunked, incomplete trailer", S("0\r\nX: y\r\n"), HTTPPROXY_BODY_CHUNKED, 0,
	  HTTPPROXY_NEED_MORE, 9 },
	{ "chunked, huge size needs more", S("ffffffffffffffff\r\nab"), HTTPPROXY_BODY_CHUNKED, 0,
	  HTTPPROXY_NEED_MORE, 20 },
	{ "chunked, size overflow", S("10000000000000000\r\n"), HTTPPROXY_BODY_CHUNKED, 0,
	  HTTPPROXY_ERROR, 0 },
	{ "chunked, bare LF after size", S("5\nhello\r\n0\r\n\r\n"), HTTPPROXY_BODY_CHUNKED, 0,
	  HTTPPROXY_ERROR, 0 },
	{ "chunked, no size", S(";x\r\n"), HTTPPROXY_BODY_CHUNKED, 0, HTTPPROXY_ERROR, 0 },
	{ "chunked, not hex", S("g\r\n"), HTTPPROXY_BODY_CHUNKED, 0, HTTPPROXY_ERROR, 0 },
	{ "chunked, junk after the size", S("5 x\r\nhello\r\n0\r\n\r\n"), HTTPPROXY_BODY_CHUNKED, 0,
	  HTTPPROXY_ERROR, 0 },
	{ "chunked, whitespace before CRLF and ';'", S("5 \t\r\nhello\r\n0 ;a=b\r\n\r\n"),
	  HTTPPROXY_BODY_CHUNKED, 0, HTTPPROXY_DONE, 22 },
	{ "chunked, signed size", S("+5\r\nhello\r\n"), HTTPPROXY_BODY_CHUNKED, 0, HTTPPROXY_ERROR, 0 },
	{ "chunked, data too long", S("5\r\nhelloX\r\n0\r\n\r\n"), HTTPPROXY_BODY_CHUNKED, 0,
	  HTTPPROXY_ERROR, 0 },
	{ "chunked, bare LF after data", S("5\r\nhello\n0\r\n\r\n"), HTTPPROXY_BODY_CHUNKED, 0,
	  HTTPPROXY_ERROR, 0 },
	{ "chunked, NUL in extension", S("5;a\0\r\nhello\r\n0\r\n\r\n"), HTTPPROXY_BODY_CHUNKED, 0,
	  HTTPPROXY_ERROR, 0 },
	{ "chunked, folded trailer", S("0\r\nX: a\r\n b\r\n\r\n"), HTTPPROXY_BODY_CHUNKED, 0,
	  HTTPPROXY_ERROR, 0 },
	{ "chunked, bare CR at end", S("0\r\n\rX"), HTTPPROXY_BODY_CHUNKED, 0, HTTPPROXY_ERROR, 0 },
};

/* Feeds in[0..len) in pieces; cuts[] are the piece ends. Returns the final
 * step; *total is the sum of consumed. Stops at DONE/ERROR. */
static enum httpproxy_step feed_pieces(const struct b_case *c, const size_t *cuts, size_t ncuts,
				       size_t *total)
{
	struct httpproxy_request r;
	memset(&r, 0, sizeof r);
	r.body = c->kind;
	r.content_length = c->content_length;
	struct httpproxy_body b;
	httpproxy_body_init(&b, &r);
	size_t off = 0, start = 0;
	enum httpproxy_step st = HTTPPROXY_NEED_MORE;
	*total = 0;
	for (size_t i = 0; i < ncuts; i++) {
		size_t end = cuts[i];
		/* The caller forwards what was consumed and keeps the rest. */
		size_t n = 0;
		char *p = malloc(end - off + 1);
		memcpy(p, c->in + off, end - off);
		st = httpproxy_body_feed(&b, p, end - off, &n);
		free(p);
		if (n > end - off) {
			CHECK(0, "%s: consumed %zu of %zu", c->name, n, end - off);
			n = end - off;
		}
		off += n;
		*total += n;
		if (st != HTTPPROXY_NEED_MORE)
			break;
		CHECK(n == end - start || c->kind == HTTPPROXY_BODY_NONE,
		      "%s: NEED_MORE left %zu bytes unconsumed", c->name, end - start - n);
		start = off;
	}
	return st;
}

static void check_body(const struct b_case *c)
{
	size_t total;
	size_t whole[1] = { c->len };
	enum httpproxy_step st = feed_pieces(c, whole, 1, &total);
	CHECK(st == c->step, "%s (all at once): step %s, want %s", c->name, step_name(st),
	      step_name(c->step));
	if (c->step != HTTPPROXY_ERROR)
		CHECK(total == c->consumed, "%s (all at once): consumed %zu, want %zu", c->name,
		      total, c->consumed);

	size_t *cuts = malloc((c->len + 1) * sizeof *cuts);
	for (size_t i = 0; i < c->len; i++)
		cuts[i] = i + 1;
	st = feed_pieces(c, cuts, c->len, &total);
	CHECK(st == c->step, "%s (byte by byte): step %s, want %s", c->name, step_name(st),
	      step_name(c->step));
	if (c->step != HTTPPROXY_ERROR)
		CHECK(total == c->consumed, "%s (byte by byte): consumed %zu", c->name, total);
	for (size_t k = 0; k <= c->len; k++) {
		size_t two[2] = { k, c->len };
		st = feed_pieces(c, two, 2, &total);
		CHECK(st == c->step && (c->step == HTTPPROXY_ERROR || total == c->consumed),
		      "%s (split at %zu): step %s consumed %zu", c->name, k, step_name(st), total);
	}
	free(cuts);
}

static void long_chunk_line(void)
{
	/* A chunk-size line longer than the bound is refused. */
	size_t n = 5000;
	char *buf = malloc(n);
	buf[0] = '5';
	buf[1] = ';';
	memset(buf + 2, 'x', n - 2);
	struct httpproxy_request r;
	memset(&r, 0, sizeof r);
	r.body = HTTPPROXY_BODY_CHUNKED;
	struct httpproxy_body b;
	httpproxy_body_init(&b, &r);
	size_t used;
	CHECK(httpproxy_body_feed(&b, buf, n, &used) == HTTPPROXY_ERROR,
	      "overlong chunk-size line is refused");
	free(buf);
}

/* ---- credentials are wiped ---- */

/* httpproxy_request_clear() leaves zeros where the decoded credentials
 * were, whether the head was accepted or refused after they were read. */
static void wipe(void)
{
	static const char *const heads_with_creds[] = {
		/* alice:correct horse */
		"CONNECT a.test:443 HTTP/1.1\r\nProxy-Authorization: Basic "
		"YWxpY2U6Y29ycmVjdCBob3JzZQ==\r\n\r\n",
		"GET http://a.test/ HTTP/1.1\r\nProxy-Authorization: Basic "
		"YWxpY2U6Y29ycmVjdCBob3JzZQ==\r\nHost: a.test\r\n\r\n",
		/* refused by a later header: the credentials were decoded first */
		"GET http://a.test/ HTTP/1.1\r\nProxy-Authorization: Basic "
		"YWxpY2U6Y29ycmVjdCBob3JzZQ==\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
	};
	static const char zero[256];
	for (size_t i = 0; i < sizeof heads_with_creds / sizeof heads_with_creds[0]; i++) {
		struct httpproxy_request r;
		size_t used;
		const char *h = heads_with_creds[i];
		httpproxy_parse_request(&r, h, strlen(h), 16384, &used);
		CHECK(strcmp(r.pass, "correct horse") == 0 && strcmp(r.user, "alice") == 0,
		      "wipe case %zu: credentials not decoded", i);
		httpproxy_request_clear(&r);
		CHECK(memcmp(r.user, zero, sizeof r.user) == 0, "wipe case %zu: user not zero", i);
		CHECK(memcmp(r.pass, zero, sizeof r.pass) == 0, "wipe case %zu: password not zero",
		      i);
		CHECK(r.origin_head == NULL && r.origin_head_len == 0, "wipe case %zu: head kept", i);
	}
}

/* ---- responses and the upstream CONNECT exchange ---- */

static void responses(void)
{
	char buf[512];
	size_t n = httpproxy_format_error(buf, sizeof buf, 403,
					  "destination 127.0.1.1:80 is not allowed");
	const char *want403 = "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n"
			      "Content-Length: 40\r\nConnection: close\r\n\r\n"
			      "destination 127.0.1.1:80 is not allowed\n";
	CHECK(n == strlen(want403) && memcmp(buf, want403, n) == 0, "403 response: %s", buf);
	n = httpproxy_format_error(buf, sizeof buf, 407, "proxy authentication required");
	const char *want407 = "HTTP/1.1 407 Proxy Authentication Required\r\n"
			      "Content-Type: text/plain\r\nContent-Length: 30\r\n"
			      "Connection: close\r\nProxy-Authenticate: Basic realm=\"tailfence\"\r\n"
			      "\r\nproxy authentication required\n";
	CHECK(n == strlen(want407) && memcmp(buf, want407, n) == 0, "407 response: %s", buf);
	n = httpproxy_format_error(buf, sizeof buf, 503, "busy");
	const char *want503 = "HTTP/1.1 503 Service Unavailable\r\n"
			      "Content-Type: text/plain\r\nContent-Length: 5\r\n"
			      "Connection: close\r\nRetry-After: 1\r\n\r\nbusy\n";
	CHECK(n == strlen(want503) && memcmp(buf, want503, n) == 0, "503 response: %s", buf);
	n = httpproxy_format_error(buf, 20, 502, "upstream failed");
	CHECK(n == 19 && buf[19] == '\0', "truncated response: %zu", n);
	CHECK(httpproxy_format_error(buf, 0, 502, "x") == 0, "cap 0");
	n = httpproxy_format_established(buf, sizeof buf);
	CHECK(n == 39 && memcmp(buf, "HTTP/1.1 200 Connection established\r\n\r\n", 39) == 0,
	      "established");
	CHECK(strcmp(httpproxy_reason(431), "Request Header Fields Too Large") == 0, "reason 431");
	CHECK(strcmp(httpproxy_reason(504), "Gateway Timeout") == 0, "reason 504");

	struct cidr_addr a;
	cidr_addr_parse("127.0.0.1", &a);
	n = httpproxy_format_connect(buf, sizeof buf, &a, 5432);
	const char *wc4 = "CONNECT 127.0.0.1:5432 HTTP/1.1\r\nHost: 127.0.0.1:5432\r\n\r\n";
	CHECK(n == strlen(wc4) && memcmp(buf, wc4, n) == 0, "connect v4: %s", buf);
	cidr_addr_parse("::1", &a);
	n = httpproxy_format_connect(buf, sizeof buf, &a, 443);
	const char *wc6 = "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n";
	CHECK(n == strlen(wc6) && memcmp(buf, wc6, n) == 0, "connect v6: %s", buf);
	CHECK(httpproxy_format_connect(buf, 10, &a, 443) == 0, "connect: buffer too small");
	struct cidr_addr none = { 0 };
	CHECK(httpproxy_format_connect(buf, sizeof buf, &none, 443) == 0, "connect: no address");

	struct {
		const char *name, *in;
		size_t len, max;
		enum httpproxy_step step;
		int status;
		size_t consumed;
	} rc[] = {
		{ "200 then tunnel bytes", S("HTTP/1.1 200 OK\r\n\r\nSSH-2.0"), 100, HTTPPROXY_DONE, 200, 19 },
		{ "200 with headers", S("HTTP/1.0 200 Connection established\r\nVia: x\r\n\r\n"), 100,
		  HTTPPROXY_DONE, 200, 47 },
		{ "no reason phrase, bare LF", S("HTTP/1.1 502\n\n"), 100, HTTPPROXY_DONE, 502, 14 },
		{ "407", S("HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n"),
		  200, HTTPPROXY_DONE, 407, 73 },
		{ "partial", S("HTTP/1.1 200 OK\r\n"), 100, HTTPPROXY_NEED_MORE, 0, 0 },
		{ "not HTTP", S("SSH-2.0-OpenSSH\r\n\r\n"), 100, HTTPPROXY_ERROR, 0, 0 },
		{ "HTTP/2", S("HTTP/2 200\r\n\r\n"), 100, HTTPPROXY_ERROR, 0, 0 },
		{ "bad status", S("HTTP/1.1 2x0 OK\r\n\r\n"), 100, HTTPPROXY_ERROR, 0, 0 },
		{ "header without colon", S("HTTP/1.1 200 OK\r\nbogus\r\n\r\n"), 100, HTTPPROXY_ERROR, 0, 0 },
		{ "too long", S("HTTP/1.1 200 OK\r\nX: yyyyyyyyyyyyyyyyyyyyyyyyy\r\n\r\n"), 30,
		  HTTPPROXY_ERROR, 0, 0 },
	};
	for (size_t i = 0; i < sizeof rc / sizeof rc[0]; i++) {
		size_t used = 77;
		int status = -1;
		enum httpproxy_step st = httpproxy_parse_connect_response(rc[i].in, rc[i].len,
									  rc[i].max, &used, &status);
		CHECK(st == rc[i].step, "response %s: step %s", rc[i].name, step_name(st));
		if (st == HTTPPROXY_DONE)
			CHECK(status == rc[i].status && used == rc[i].consumed,
			      "response %s: status %d consumed %zu", rc[i].name, status, used);
		/* Prefixes: NEED_MORE until the decision, then the same decision. */
		for (size_t k = 0; k < rc[i].len; k++) {
			enum httpproxy_step ps = httpproxy_parse_connect_response(rc[i].in, k, rc[i].max,
										  &used, &status);
			if (ps != HTTPPROXY_NEED_MORE) {
				CHECK(ps == rc[i].step, "response %s: prefix %zu gives %s", rc[i].name,
				      k, step_name(ps));
				break;
			}
		}
	}
}

int main(void)
{
	for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++)
		check_head(&heads[i]);
	for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
		check_body(&bodies[i]);
	long_chunk_line();
	wipe();
	responses();
	printf("test_httpproxy: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
