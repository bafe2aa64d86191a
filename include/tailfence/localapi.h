/*
 * localapi: an HTTP/1.1 client for tailscaled's LocalAPI on its UNIX socket.
 *
 * Two layers:
 *   - pure parsers for the response: the head (status line and the framing
 *     headers) and the body framing (Content-Length, chunked, or until the
 *     server closes), fed any slicing of the bytes; no sockets, so the unit
 *     tests and the fuzzer drive them directly;
 *   - requests on an event loop: a one-shot GET whose body is collected (up
 *     to a bound), and a streaming GET (watch-ipn-bus) that reports each
 *     complete line of the body as it arrives. Neither blocks the loop.
 *
 * tailscaled accepts only "Host: local-tailscaled.sock" (or none) and
 * refuses requests carrying Origin or Referer; this client sends neither.
 */
#ifndef TAILFENCE_LOCALAPI_H
#define TAILFENCE_LOCALAPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

enum localapi_step {
	LOCALAPI_NEED_MORE = 0,
	LOCALAPI_DONE,
	LOCALAPI_ERROR,
};

enum localapi_framing {
	LOCALAPI_BODY_LENGTH,	/* Content-Length */
	LOCALAPI_BODY_CHUNKED,	/* Transfer-Encoding: chunked */
	LOCALAPI_BODY_CLOSE,	/* until the server closes */
};

/* Parser state for one response. Zero it (or call localapi_response_init)
 * before the first byte. */
struct localapi_response {
	int status;			/* after the head: 100..599 */
	enum localapi_framing framing;
	uint64_t remaining;		/* LENGTH: body bytes left; CHUNKED: in this chunk */
	int chunk_state;		/* CHUNKED: internal */
	unsigned line_len;		/* CHUNKED: bounds chunk-size and trailer lines */
	const char *why;		/* on LOCALAPI_ERROR: a static sentence */
};

void localapi_response_init(struct localapi_response *r);

/* Parses the response head from buf[0..len), which must hold the whole head
 * (the caller waits for the blank line; localapi_head_end() finds it). DONE
 * with *consumed = head length; ERROR with r->why on a malformed head, a
 * 1xx status, an unknown Transfer-Encoding or a bad Content-Length. */
enum localapi_step localapi_parse_head(struct localapi_response *r, const char *buf,
				       size_t len, size_t *consumed);

/* Offset just past the blank line ending a head in buf[0..len), searching
 * from `from` (bytes before it are known not to hold the end), or 0 when
 * the head is not complete yet. Accepts CRLF and bare LF line ends. */
size_t localapi_head_end(const char *buf, size_t len, size_t from);

/* Feeds body bytes. Returns, through *data and *data_len, at most one span
 * of decoded body bytes (pointing into buf; *data_len 0 if none) and sets
 * *consumed to the bytes of buf used. Call again with the rest. DONE when
 * the body is complete (never for LOCALAPI_BODY_CLOSE: the caller ends it
 * at EOF), ERROR on malformed chunked framing. */
enum localapi_step localapi_body_feed(struct localapi_response *r, const char *buf,
				      size_t len, size_t *consumed, const char **data,
				      size_t *data_len);

/* ---- requests on an event loop ---- */

/* A one-shot GET finished: status is the HTTP status (0 when no response
 * was read) and body/len the collected body (valid during the call only);
 * error is NULL on success or a one-line sentence ("cannot reach
 * tailscaled at PATH: No such file or directory"). A non-2xx status is
 * not an error here: the caller decides. */
typedef void (*localapi_done_cb)(void *arg, int status, const char *body, size_t len,
				 const char *error);

/* A watch stream delivered one complete body line (without '\n'). Lines
 * longer than the watch's max_line are reported truncated to max_line with
 * truncated set. */
typedef void (*localapi_line_cb)(void *arg, const char *line, size_t len, bool truncated);

struct localapi_req;

/* GET path (e.g. "/localapi/v0/status") on the socket at sock_path. The
 * whole exchange is bounded by timeout_ms and the body by max_body bytes.
 * done is called exactly once, never from inside localapi_get(). NULL on
 * allocation failure. */
struct localapi_req *localapi_get(struct event_base *base, const char *sock_path,
				  const char *path, unsigned timeout_ms, size_t max_body,
				  localapi_done_cb done, void *arg);

/* A streaming GET: each body line goes to line; done is called once when the
 * stream ends (error says why; a stream that ends is always an error for a
 * watcher). timeout_ms bounds only the wait for the response head. */
struct localapi_req *localapi_watch(struct event_base *base, const char *sock_path,
				    const char *path, unsigned timeout_ms, size_t max_line,
				    localapi_line_cb line, localapi_done_cb done, void *arg);

/* Abandons a request; no callback is called afterwards. */
void localapi_cancel(struct localapi_req *req);

/* For the command line: a blocking GET on a private event loop. On success
 * returns true with *status and a malloc'd, NUL-terminated *body (caller
 * frees); false with err set when no response could be read. */
bool localapi_get_sync(const char *sock_path, const char *path, unsigned timeout_ms,
		       size_t max_body, int *status, char **body, size_t *len, char *err,
		       size_t errlen);

#endif
