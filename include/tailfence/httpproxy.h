/*
 * httpproxy: HTTP/1.x proxy request heads, server and client side.
 *
 * Pure: parses a proxy request head (CONNECT authority-form or absolute-form
 * "GET http://host/..."), rewrites absolute-form heads to origin-form for the
 * origin, tracks request-body framing so that exactly one request is
 * forwarded, formats error responses, and builds/parses the CONNECT exchange
 * with an upstream HTTP proxy. No sockets.
 *
 * Security rules enforced here: a request whose framing is ambiguous (both
 * Content-Length and Transfer-Encoding, several or invalid Content-Length,
 * a Transfer-Encoding whose final coding is not "chunked", or a second
 * Transfer-Encoding header) is refused with 400; other codings before a
 * final chunked ("gzip, chunked") get 501; obsolete line folding, bare CR
 * and NUL are refused with 400; heads longer than the limit get 431.
 * Line endings: CRLF, and a bare LF is also accepted as the end of a line in
 * the request head (RFC 9112 2.2), since the head sent to the origin is
 * rebuilt with CRLF; chunked body framing, forwarded raw, requires CRLF.
 * The origin head keeps the client's HTTP/1.<minor> version.
 */
#ifndef TAILFENCE_HTTPPROXY_H
#define TAILFENCE_HTTPPROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tailfence/cidr.h"

enum httpproxy_step {
	HTTPPROXY_NEED_MORE = 0,
	HTTPPROXY_DONE,
	HTTPPROXY_ERROR,
};

enum httpproxy_kind {
	HTTPPROXY_CONNECT,	/* CONNECT host:port: tunnel */
	HTTPPROXY_FORWARD,	/* absolute-form: forward one request */
};

enum httpproxy_body_kind {
	HTTPPROXY_BODY_NONE,
	HTTPPROXY_BODY_LENGTH,
	HTTPPROXY_BODY_CHUNKED,
};

struct httpproxy_request {
	enum httpproxy_kind kind;
	char method[32];
	int minor_version;		/* HTTP/1.<minor> */

	/* Target. host is the name or the address literal as written, without
	 * brackets; host_is_addr says it was a literal (then addr is set). */
	char host[256];
	bool host_is_addr;
	struct cidr_addr addr;
	uint16_t port;			/* default 80 for http://, required for CONNECT */

	/* Proxy-Authorization: Basic, decoded. */
	bool have_credentials;
	char user[256];
	char pass[256];

	/* FORWARD only. */
	enum httpproxy_body_kind body;
	uint64_t content_length;
	/* The head for the origin: origin-form request line, Host set to the
	 * URI's authority, hop-by-hop headers (Connection and the headers it
	 * names, Keep-Alive, Proxy-*, TE, Trailer, Upgrade) removed,
	 * "Connection: close" added. malloc'd; freed by httpproxy_request_clear. */
	char *origin_head;
	size_t origin_head_len;

	/* On HTTPPROXY_ERROR: the status to answer (400, 405, 431, 501, ...)
	 * and a static sentence for the body and the logs. */
	int status;
	const char *why;
};

/* Parses a request head from buf[0..len). Stateless: call again with the
 * whole buffer after more bytes arrive. NEED_MORE until the blank line is
 * seen (or len exceeds max_head: then ERROR with status 431). On DONE,
 * *consumed is the length of the head; bytes after it are body. Errors:
 * 400 malformed or ambiguous framing, 405 origin-form (not a proxy request),
 * 501 unsupported scheme or Transfer-Encoding, 505 not HTTP/1.x. The caller
 * calls httpproxy_request_clear() afterwards in every case. */
enum httpproxy_step httpproxy_parse_request(struct httpproxy_request *r,
					    const char *buf, size_t len,
					    size_t max_head, size_t *consumed);

/* Frees origin_head and overwrites the credentials (user, pass) with
 * zeros; r may be parsed into again. */
void httpproxy_request_clear(struct httpproxy_request *r);

/* Tracks where the body of one forwarded request ends. */
struct httpproxy_body {
	enum httpproxy_body_kind kind;
	uint64_t remaining;	/* LENGTH: bytes left; CHUNKED: bytes left in chunk */
	int state;		/* CHUNKED: internal */
	unsigned line_len;	/* CHUNKED: guards chunk-size/trailer line length */
};

void httpproxy_body_init(struct httpproxy_body *b, const struct httpproxy_request *r);

/* Feeds body bytes. *consumed bytes belong to this request's body (forward
 * them unchanged). DONE when the body is complete (bytes after *consumed
 * are not this request's and must not be forwarded), NEED_MORE when more is
 * expected, ERROR on malformed chunked framing. */
enum httpproxy_step httpproxy_body_feed(struct httpproxy_body *b, const char *buf,
					size_t len, size_t *consumed);

/* A complete error response: status line, Content-Type text/plain,
 * Content-Length, Connection: close, for 407 a
 * Proxy-Authenticate: Basic realm="tailfence" header and for 503
 * Retry-After: 1; body is `why` and a newline. Returns bytes written (truncating safely to cap). */
size_t httpproxy_format_error(char *buf, size_t cap, int status, const char *why);

/* "HTTP/1.1 200 Connection established\r\n\r\n" */
size_t httpproxy_format_established(char *buf, size_t cap);

/* Reason phrase for a status code. */
const char *httpproxy_reason(int status);

/* ---- client side (tailfence -> upstream HTTP proxy) ---- */

/* "CONNECT 10.0.0.1:5432 HTTP/1.1\r\nHost: ...\r\n\r\n" (IPv6 bracketed). */
size_t httpproxy_format_connect(char *buf, size_t cap, const struct cidr_addr *dst,
				uint16_t port);

/* Parses the upstream's response head to CONNECT. DONE with *status set and
 * *consumed = head length; NEED_MORE; ERROR if malformed or longer than
 * max_head. */
enum httpproxy_step httpproxy_parse_connect_response(const char *buf, size_t len,
						     size_t max_head,
						     size_t *consumed, int *status);

#endif
