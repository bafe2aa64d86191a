/*
 * localapi: HTTP/1.1 GET over tailscaled's UNIX socket.
 *
 * The parsers at the top are pure. Below them, one request object drives a
 * bufferevent on a non-blocking UNIX socket: write the request, wait for
 * the head (bounded), then decode the body, either collecting it (one-shot)
 * or cutting it into lines (watch). Every outcome ends in localapi_finish(),
 * which calls the caller once, from the loop, and frees.
 */
#include "tailfence/localapi.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "tailfence/text.h"

/* Longest response head accepted. */
#define LOCALAPI_MAX_HEAD 16384
/* Longest chunk-size or trailer line. */
#define LOCALAPI_MAX_LINE 1024

enum {
	CHUNK_SIZE,		/* reading hex digits */
	CHUNK_EXT,		/* after the size: extension until LF */
	CHUNK_DATA,
	CHUNK_DATA_CR,		/* CRLF after the data */
	CHUNK_DATA_LF,
	CHUNK_TRAILER,		/* trailer lines until an empty one */
	CHUNK_TRAILER_LINE,
	CHUNK_DONE,
};

void localapi_response_init(struct localapi_response *r)
{
	memset(r, 0, sizeof *r);
}

size_t localapi_head_end(const char *buf, size_t len, size_t from)
{
	return text_http_head_end(buf, len, from);
}

/* Header name equality, ASCII case-insensitive. */
static bool localapi_name_is(const char *s, size_t n, const char *want)
{
	size_t wl = strlen(want);
	return n == wl && text_ieq(s, want, n);
}

static const char *localapi_trim(const char *s, size_t *n)
{
	while (*n && (s[0] == ' ' || s[0] == '\t')) {
		s++;
		(*n)--;
	}
	while (*n && (s[*n - 1] == ' ' || s[*n - 1] == '\t' || s[*n - 1] == '\r'))
		(*n)--;
	return s;
}

static enum localapi_step localapi_head_fail(struct localapi_response *r, const char *why)
{
	r->why = why;
	return LOCALAPI_ERROR;
}

/* "HTTP/1.x SSS ..." */
static bool localapi_status_line(struct localapi_response *r, const char *s, size_t n)
{
	if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || !text_is_digit(s[7]) || s[8] != ' ')
		return false;
	if (!text_is_digit(s[9]) || !text_is_digit(s[10]) || !text_is_digit(s[11]))
		return false;
	if (n > 12 && s[12] != ' ' && s[12] != '\r')
		return false;
	r->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
	return r->status >= 100 && r->status <= 599;
}

static bool localapi_parse_length(const char *v, size_t n, uint64_t *out)
{
	uint64_t x = 0;
	if (n == 0 || n > 15)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!text_is_digit(v[i]))
			return false;
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	*out = x;
	return true;
}

enum localapi_step localapi_parse_head(struct localapi_response *r, const char *buf,
				       size_t len, size_t *consumed)
{
	size_t end = localapi_head_end(buf, len, 0);
	bool have_length = false, chunked = false;
	uint64_t length = 0;

	*consumed = 0;
	if (end == 0)
		return len > LOCALAPI_MAX_HEAD ? localapi_head_fail(r, "response head too long")
					       : LOCALAPI_NEED_MORE;
	if (end > LOCALAPI_MAX_HEAD)
		return localapi_head_fail(r, "response head too long");
	if (memchr(buf, '\0', end))
		return localapi_head_fail(r, "NUL in the response head");

	size_t pos = 0;
	bool first = true;
	while (pos < end) {
		const char *nl = memchr(buf + pos, '\n', end - pos);
		size_t n = (size_t)(nl - (buf + pos));
		const char *line = buf + pos;
		pos += n + 1;
		if (n && line[n - 1] == '\r')
			n--;
		if (first) {
			if (!localapi_status_line(r, line, n))
				return localapi_head_fail(r, "malformed status line");
			first = false;
			continue;
		}
		if (n == 0)
			break;
		const char *colon = memchr(line, ':', n);
		if (!colon || colon == line)
			return localapi_head_fail(r, "malformed header line");
		size_t nlen = (size_t)(colon - line), vlen = n - nlen - 1;
		const char *v = localapi_trim(colon + 1, &vlen);
		if (localapi_name_is(line, nlen, "content-length")) {
			uint64_t l;
			if (!localapi_parse_length(v, vlen, &l) || (have_length && l != length))
				return localapi_head_fail(r, "bad Content-Length");
			have_length = true;
			length = l;
		} else if (localapi_name_is(line, nlen, "transfer-encoding")) {
			if (chunked || vlen != 7 || !text_ieq(v, "chunked", 7))
				return localapi_head_fail(r, "unsupported Transfer-Encoding");
			chunked = true;
		}
	}
	if (r->status < 200)
		return localapi_head_fail(r, "informational response");
	if (chunked && have_length)
		return localapi_head_fail(r, "both Content-Length and chunked");
	if (r->status == 204 || r->status == 304) {
		r->framing = LOCALAPI_BODY_LENGTH;
		r->remaining = 0;
	} else if (chunked) {
		r->framing = LOCALAPI_BODY_CHUNKED;
		r->chunk_state = CHUNK_SIZE;
		r->remaining = 0;
	} else if (have_length) {
		r->framing = LOCALAPI_BODY_LENGTH;
		r->remaining = length;
	} else {
		r->framing = LOCALAPI_BODY_CLOSE;
	}
	*consumed = end;
	return LOCALAPI_DONE;
}

static int localapi_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static enum localapi_step localapi_chunk_fail(struct localapi_response *r, const char *why)
{
	r->why = why;
	return LOCALAPI_ERROR;
}

/* One step of the chunked decoder: consumes framing bytes until data is
 * available, a chunk's data span, or the end. */
static enum localapi_step localapi_chunked(struct localapi_response *r, const char *buf,
					   size_t len, size_t *consumed, const char **data,
					   size_t *data_len)
{
	size_t i = 0;
	while (i < len) {
		char c = buf[i];
		switch (r->chunk_state) {
		case CHUNK_SIZE: {
			int h = localapi_hex(c);
			if (h >= 0) {
				if (r->remaining > (UINT64_MAX >> 4) || ++r->line_len > 16)
					return localapi_chunk_fail(r, "chunk size too large");
				r->remaining = r->remaining * 16 + (uint64_t)h;
				i++;
				break;
			}
			if (r->line_len == 0)
				return localapi_chunk_fail(r, "malformed chunk size");
			r->chunk_state = CHUNK_EXT;
			break;
		}
		case CHUNK_EXT:
			i++;
			if (c == '\n') {
				r->line_len = 0;
				r->chunk_state = r->remaining ? CHUNK_DATA : CHUNK_TRAILER;
				if (r->chunk_state == CHUNK_DATA) {
					*consumed = i;
					return LOCALAPI_NEED_MORE;
				}
			} else if (++r->line_len > LOCALAPI_MAX_LINE) {
				return localapi_chunk_fail(r, "chunk extension too long");
			}
			break;
		case CHUNK_DATA: {
			size_t n = len - i;
			if (n > r->remaining)
				n = (size_t)r->remaining;
			*data = buf + i;
			*data_len = n;
			r->remaining -= n;
			if (r->remaining == 0)
				r->chunk_state = CHUNK_DATA_CR;
			*consumed = i + n;
			return LOCALAPI_NEED_MORE;
		}
		case CHUNK_DATA_CR:
			i++;
			if (c == '\n')
				r->chunk_state = CHUNK_SIZE;
			else if (c == '\r')
				r->chunk_state = CHUNK_DATA_LF;
			else
				return localapi_chunk_fail(r, "missing CRLF after chunk data");
			break;
		case CHUNK_DATA_LF:
			i++;
			if (c != '\n')
				return localapi_chunk_fail(r, "missing CRLF after chunk data");
			r->chunk_state = CHUNK_SIZE;
			break;
		case CHUNK_TRAILER:
			/* At the start of a trailer line: LF (or CRLF) alone ends. */
			if (c == '\r' || c == '\n') {
				i++;
				if (c == '\n') {
					r->chunk_state = CHUNK_DONE;
					*consumed = i;
					return LOCALAPI_DONE;
				}
				break;
			}
			r->chunk_state = CHUNK_TRAILER_LINE;
			r->line_len = 0;
			break;
		case CHUNK_TRAILER_LINE:
			i++;
			if (c == '\n')
				r->chunk_state = CHUNK_TRAILER;
			else if (++r->line_len > LOCALAPI_MAX_LINE)
				return localapi_chunk_fail(r, "trailer line too long");
			break;
		default:
			*consumed = i;
			return LOCALAPI_DONE;
		}
	}
	*consumed = i;
	return r->chunk_state == CHUNK_DONE ? LOCALAPI_DONE : LOCALAPI_NEED_MORE;
}

enum localapi_step localapi_body_feed(struct localapi_response *r, const char *buf,
				      size_t len, size_t *consumed, const char **data,
				      size_t *data_len)
{
	*consumed = 0;
	*data = NULL;
	*data_len = 0;
	switch (r->framing) {
	case LOCALAPI_BODY_CLOSE:
		*data = buf;
		*data_len = len;
		*consumed = len;
		return LOCALAPI_NEED_MORE;
	case LOCALAPI_BODY_LENGTH: {
		size_t n = len;
		if (n > r->remaining)
			n = (size_t)r->remaining;
		*data = buf;
		*data_len = n;
		*consumed = n;
		r->remaining -= n;
		return r->remaining == 0 ? LOCALAPI_DONE : LOCALAPI_NEED_MORE;
	}
	case LOCALAPI_BODY_CHUNKED:
		return localapi_chunked(r, buf, len, consumed, data, data_len);
	}
	return LOCALAPI_ERROR;
}

/* ------------------------------------------------------------------ */
/* requests on the loop */

struct localapi_req {
	struct event_base *base;
	struct bufferevent *bev;
	struct event *timer;		/* head timeout (watch), whole exchange (get) */
	struct event *deliver;		/* defers an early failure out of the constructor */
	char sock_path[108];
	bool watch;
	bool head_done;
	size_t head_scanned;
	size_t max;			/* get: body bound; watch: line bound */
	struct localapi_response resp;
	struct evbuffer *body;		/* get: collected body; watch: the current line */
	bool line_truncated;
	localapi_done_cb done;
	localapi_line_cb line;
	void *arg;
	char error[256];
};

static void localapi_free(struct localapi_req *q)
{
	if (q->bev)
		bufferevent_free(q->bev);
	if (q->timer)
		event_free(q->timer);
	if (q->deliver)
		event_free(q->deliver);
	if (q->body)
		evbuffer_free(q->body);
	free(q);
}

/* The one way out: tells the caller, then frees. */
static void localapi_finish(struct localapi_req *q, const char *error)
{
	localapi_done_cb done = q->done;
	void *arg = q->arg;
	int status = q->head_done ? q->resp.status : 0;
	size_t len = evbuffer_get_length(q->body);
	const char *body = len ? (const char *)evbuffer_pullup(q->body, -1) : "";
	if (!body) {
		body = "";
		len = 0;
		error = error ? error : "out of memory";
	}
	done(arg, status, body, len, error);
	localapi_free(q);
}

static void localapi_finish_errorf(struct localapi_req *q, const char *fmt, const char *detail)
{
	snprintf(q->error, sizeof q->error, fmt, q->sock_path, detail);
	localapi_finish(q, q->error);
}

/* watch: appends decoded body bytes, reporting every complete line. */
static void localapi_lines(struct localapi_req *q, const char *data, size_t n)
{
	while (n) {
		const char *nl = memchr(data, '\n', n);
		size_t take = nl ? (size_t)(nl - data) : n;
		size_t have = evbuffer_get_length(q->body);
		size_t room = have < q->max ? q->max - have : 0;
		if (take > room)
			q->line_truncated = true;
		evbuffer_add(q->body, data, take < room ? take : room);
		if (!nl)
			return;
		size_t len = evbuffer_get_length(q->body);
		const char *line = len ? (const char *)evbuffer_pullup(q->body, -1) : "";
		if (line)
			q->line(q->arg, line, len, q->line_truncated);
		evbuffer_drain(q->body, len);
		q->line_truncated = false;
		data += take + 1;
		n -= take + 1;
	}
}

/* Returns false when the request has been finished (and freed). */
static bool localapi_take_body(struct localapi_req *q, struct evbuffer *in)
{
	while (evbuffer_get_length(in)) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		size_t used;
		const char *data;
		size_t dlen;
		enum localapi_step st = localapi_body_feed(&q->resp, v.iov_base, v.iov_len, &used,
							   &data, &dlen);
		if (dlen) {
			if (q->watch) {
				localapi_lines(q, data, dlen);
			} else if (evbuffer_get_length(q->body) + dlen > q->max) {
				localapi_finish_errorf(q, "tailscaled at %s: %s",
						       "response body too large");
				return false;
			} else {
				evbuffer_add(q->body, data, dlen);
			}
		}
		evbuffer_drain(in, used);
		if (st == LOCALAPI_ERROR) {
			localapi_finish_errorf(q, "tailscaled at %s: %s", q->resp.why);
			return false;
		}
		if (st == LOCALAPI_DONE) {
			if (q->watch)
				localapi_finish_errorf(q, "tailscaled at %s: %s", "the stream ended");
			else
				localapi_finish(q, NULL);
			return false;
		}
		if (used == 0 && dlen == 0)
			break;
	}
	return true;
}

static void localapi_read_cb(struct bufferevent *bev, void *arg)
{
	struct localapi_req *q = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	if (!q->head_done) {
		size_t len = evbuffer_get_length(in);
		const char *p = (const char *)evbuffer_pullup(in, -1);
		size_t end = p ? localapi_head_end(p, len, q->head_scanned) : 0;
		q->head_scanned = len;
		if (end == 0 && len <= LOCALAPI_MAX_HEAD)
			return;
		size_t used;
		if (!p || localapi_parse_head(&q->resp, p, len, &used) != LOCALAPI_DONE) {
			localapi_finish_errorf(q, "tailscaled at %s: %s",
					       q->resp.why ? q->resp.why : "malformed response");
			return;
		}
		evbuffer_drain(in, used);
		q->head_done = true;
		if (q->watch && (q->resp.status < 200 || q->resp.status > 299)) {
			/* A refused watch: collect the refusal like a GET's body. */
			q->watch = false;
		} else if (q->watch) {
			event_del(q->timer);	/* a watch may be quiet for hours */
		}
	}
	localapi_take_body(q, in);
}

static void localapi_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct localapi_req *q = arg;
	(void)bev;
	if (what & BEV_EVENT_EOF) {
		if (q->head_done && q->resp.framing == LOCALAPI_BODY_CLOSE && !q->watch) {
			localapi_finish(q, NULL);
			return;
		}
		localapi_finish_errorf(q, "tailscaled at %s: %s",
				       q->head_done ? "the connection closed mid-response"
						    : "the connection closed before a response");
		return;
	}
	localapi_finish_errorf(q, "cannot reach tailscaled at %s: %s",
			       evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static void localapi_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct localapi_req *q = arg;
	(void)fd;
	(void)what;
	localapi_finish_errorf(q, "tailscaled at %s: %s", "no answer in time");
}

static void localapi_deliver_cb(evutil_socket_t fd, short what, void *arg)
{
	struct localapi_req *q = arg;
	(void)fd;
	(void)what;
	localapi_finish(q, q->error);
}

/* Connects and sends the request; on failure arranges a deferred error. */
static void localapi_connect(struct localapi_req *q, const char *path)
{
	struct sockaddr_un sun;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, q->sock_path, strlen(q->sock_path) + 1);

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
		/* A UNIX stream connect completes at once or fails (EAGAIN:
		 * the listener's backlog is full). */
		snprintf(q->error, sizeof q->error, "cannot reach tailscaled at %s: %s",
			 q->sock_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		event_active(q->deliver, EV_TIMEOUT, 0);
		return;
	}
	q->bev = bufferevent_socket_new(q->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!q->bev) {
		close(fd);
		snprintf(q->error, sizeof q->error, "out of memory");
		event_active(q->deliver, EV_TIMEOUT, 0);
		return;
	}
	bufferevent_setcb(q->bev, localapi_read_cb, NULL, localapi_event_cb, q);
	evbuffer_add_printf(bufferevent_get_output(q->bev),
			    "GET %s HTTP/1.1\r\nHost: local-tailscaled.sock\r\n"
			    "User-Agent: tailfence/" TAILFENCE_VERSION "\r\n"
			    "Connection: close\r\n\r\n", path);
	bufferevent_enable(q->bev, EV_READ | EV_WRITE);
}

static struct localapi_req *localapi_start(struct event_base *base, const char *sock_path,
					   const char *path, unsigned timeout_ms, size_t max,
					   bool watch, localapi_line_cb line,
					   localapi_done_cb done, void *arg)
{
	struct localapi_req *q = calloc(1, sizeof *q);
	if (!q)
		return NULL;
	q->base = base;
	q->watch = watch;
	q->max = max;
	q->line = line;
	q->done = done;
	q->arg = arg;
	localapi_response_init(&q->resp);
	q->timer = evtimer_new(base, localapi_timer_cb, q);
	q->deliver = event_new(base, -1, 0, localapi_deliver_cb, q);
	q->body = evbuffer_new();
	if (!q->timer || !q->deliver || !q->body) {
		localapi_free(q);
		return NULL;
	}
	size_t plen = strlen(sock_path);
	if (plen == 0 || plen >= sizeof q->sock_path) {
		snprintf(q->sock_path, sizeof q->sock_path, "%.100s", sock_path);
		snprintf(q->error, sizeof q->error, "tailscaled socket path \"%s\" is %s",
			 q->sock_path, plen ? "too long" : "empty");
		event_active(q->deliver, EV_TIMEOUT, 0);
		return q;
	}
	memcpy(q->sock_path, sock_path, plen + 1);
	struct timeval tv = { (time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000 };
	evtimer_add(q->timer, &tv);
	localapi_connect(q, path);
	return q;
}

struct localapi_req *localapi_get(struct event_base *base, const char *sock_path,
				  const char *path, unsigned timeout_ms, size_t max_body,
				  localapi_done_cb done, void *arg)
{
	return localapi_start(base, sock_path, path, timeout_ms, max_body, false, NULL, done,
			      arg);
}

struct localapi_req *localapi_watch(struct event_base *base, const char *sock_path,
				    const char *path, unsigned timeout_ms, size_t max_line,
				    localapi_line_cb line, localapi_done_cb done, void *arg)
{
	return localapi_start(base, sock_path, path, timeout_ms, max_line, true, line, done,
			      arg);
}

void localapi_cancel(struct localapi_req *req)
{
	if (req)
		localapi_free(req);
}

/* ---- blocking, for the command line ---- */

struct localapi_sync {
	bool finished;
	int status;
	char *body;
	size_t len;
	char *err;
	size_t errlen;
};

static void localapi_sync_done(void *arg, int status, const char *body, size_t len,
			       const char *error)
{
	struct localapi_sync *s = arg;
	s->finished = true;
	s->status = status;
	if (error) {
		snprintf(s->err, s->errlen, "%s", error);
		return;
	}
	s->body = malloc(len + 1);
	if (!s->body) {
		snprintf(s->err, s->errlen, "out of memory");
		return;
	}
	memcpy(s->body, body, len);
	s->body[len] = '\0';
	s->len = len;
}

bool localapi_get_sync(const char *sock_path, const char *path, unsigned timeout_ms,
		       size_t max_body, int *status, char **body, size_t *len, char *err,
		       size_t errlen)
{
	struct localapi_sync s = { .err = err, .errlen = errlen };
	struct event_base *base = event_base_new();
	if (!base) {
		snprintf(err, errlen, "cannot create an event loop");
		return false;
	}
	if (!localapi_get(base, sock_path, path, timeout_ms, max_body, localapi_sync_done, &s)) {
		snprintf(err, errlen, "out of memory");
		event_base_free(base);
		return false;
	}
	while (!s.finished && event_base_loop(base, EVLOOP_ONCE) == 0)
		;
	event_base_free(base);
	if (!s.body)
		return false;
	*status = s.status;
	*body = s.body;
	*len = s.len;
	return true;
}
