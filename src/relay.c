/*
 * relay: the byte pump between a client and its destination.
 *
 * Each direction is a relay_side: the side we read from, and its peer whose
 * output buffer we fill. Two engines move the bytes:
 *
 *  - copy: libevent's bufferevents. When the peer's output passes the high
 *    watermark, stop reading this side and ask for a write callback when
 *    the peer drains to half; then read again. Used first, always for a
 *    limited (HTTP forward) relay, and whenever splice is not possible.
 *  - splice: once a relay has moved RELAY_SPLICE_AFTER bytes and every
 *    bufferevent buffer is empty, each direction moves
 *    socket -> pipe -> socket with splice(2), so the bytes never enter user
 *    space. A pipe holds at most high_watermark bytes; while any are stuck
 *    (the peer is not writable) the source is not read.
 */
#include "tailfence/relay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

/* A relay moves to splice only after this many bytes: short exchanges
 * (most requests) would pay for two pipes and never win them back. */
#define RELAY_SPLICE_AFTER (64 * 1024)

/* Largest single read(2)/write(2) on either socket. */
#define RELAY_MAX_SINGLE_IO (128 * 1024)

struct relay_side {
	struct bufferevent *bev;
	struct relay *r;
	struct relay_side *peer;
	uint64_t bytes;		/* read from this side, queued to the peer */
	bool eof;		/* nothing more will be read from this side */
	bool paused;		/* reading stopped for backpressure */
	bool want_fin;		/* shut this side's socket once its output drains */
	bool shut;		/* shutdown(SHUT_WR) done on this side's socket */

	/* splice engine */
	int fd;
	int pipe[2];		/* this side's bytes on their way to the peer */
	size_t in_pipe;
	struct event *ev_read;	/* this side's socket readable */
	struct event *ev_write;	/* this side's socket writable */
};

struct relay {
	struct relay_side client;
	struct relay_side upstream;
	struct relay_params p;
	relay_done_cb done;
	void *arg;
	struct event *idle;	/* idle timeout, re-armed lazily */
	struct event *kick;	/* forwards bytes buffered before the start;
				 * later delivers the end */
	struct timeval last;	/* last byte read, either side */
	bool have_first_eof;
	enum relay_end first_eof;
	bool finished;		/* ended; done() follows from the kick event */
	enum relay_end end;
	char error[96];
	bool spliced;		/* the splice engine runs */
	size_t pipe_cap;
};

/* Ends the relay. The done callback (which frees it) runs from the loop, not
 * from inside the callback that noticed the end, so no caller ever touches a
 * freed relay. */
static void relay_finish(struct relay *r, enum relay_end end, const char *error)
{
	if (r->finished)
		return;
	r->finished = true;
	r->end = end;
	snprintf(r->error, sizeof r->error, "%s", error ? error : "");
	struct timeval zero = { 0, 0 };
	evtimer_add(r->kick, &zero);
	bufferevent_disable(r->client.bev, EV_READ | EV_WRITE);
	bufferevent_disable(r->upstream.bev, EV_READ | EV_WRITE);
	struct relay_side *sides[] = { &r->client, &r->upstream };
	for (size_t i = 0; i < 2; i++) {
		if (sides[i]->ev_read)
			event_del(sides[i]->ev_read);
		if (sides[i]->ev_write)
			event_del(sides[i]->ev_write);
	}
}

/* A direction is complete when its source hit EOF and everything read has
 * left the peer's output buffer. The relay is over when both are. */
static bool relay_direction_done(const struct relay_side *src)
{
	return src->eof && src->in_pipe == 0 &&
	       evbuffer_get_length(bufferevent_get_output(src->peer->bev)) == 0;
}

static void relay_check_done(struct relay *r)
{
	if (relay_direction_done(&r->client) && relay_direction_done(&r->upstream))
		relay_finish(r, r->have_first_eof ? r->first_eof : RELAY_END_UPSTREAM_EOF,
			     NULL);
}

/* Sends the FIN that a side owes its peer once its output is empty. */
static void relay_fin_if_drained(struct relay_side *dst)
{
	if (dst->want_fin && !dst->shut && dst->peer->in_pipe == 0 &&
	    evbuffer_get_length(bufferevent_get_output(dst->bev)) == 0) {
		dst->shut = true;
		shutdown(bufferevent_getfd(dst->bev), SHUT_WR);
	}
}

/* Nothing more will be read from s. Its peer learns it by a FIN once the
 * bytes already queued have left (send_fin), except when the limiter ended
 * the client's part: then the destination's socket stays open for its
 * answer and the destination's EOF is what ends the relay. */
static void relay_mark_eof(struct relay_side *s, bool send_fin)
{
	struct relay *r = s->r;
	if (s->eof)
		return;
	s->eof = true;
	if (send_fin && !r->have_first_eof) {
		r->have_first_eof = true;
		r->first_eof = s == &r->client ? RELAY_END_CLIENT_EOF
					       : RELAY_END_UPSTREAM_EOF;
	}
	bufferevent_disable(s->bev, EV_READ);
	s->peer->want_fin = send_fin;
	/* Ask for a write callback once the peer's buffer is empty. */
	bufferevent_setwatermark(s->peer->bev, EV_WRITE, 0, 0);
	relay_fin_if_drained(s->peer);
	relay_check_done(r);
}

static void relay_try_splice(struct relay *r);

static void relay_pump(struct relay_side *s)
{
	struct relay *r = s->r;
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer *out = bufferevent_get_output(s->peer->bev);
	size_t n = evbuffer_get_length(in);

	bool limited = s == &r->client && r->p.limiter.take;
	/* A limited side is asked even with nothing pending: a request
	 * without a body is complete before its first byte. */
	if (s->eof || (n == 0 && !limited))
		return;
	event_base_gettimeofday_cached(bufferevent_get_base(s->bev), &r->last);

	if (limited) {
		bool done = false;
		size_t take = r->p.limiter.take(r->p.limiter.arg, in, &done);
		if (take == (size_t)-1) {
			relay_finish(r, RELAY_END_ERROR, "malformed request body");
			return;
		}
		evbuffer_remove_buffer(in, out, take);
		s->bytes += take;
		if (done) {
			/* The one request is complete: whatever else the client
			 * sends is not forwarded. */
			evbuffer_drain(in, evbuffer_get_length(in));
			relay_mark_eof(s, false);
			return;
		}
	} else {
		evbuffer_add_buffer(out, in);
		s->bytes += n;
	}

	if (evbuffer_get_length(out) >= r->p.high_watermark) {
		s->paused = true;
		bufferevent_disable(s->bev, EV_READ);
		bufferevent_setwatermark(s->peer->bev, EV_WRITE,
					 r->p.high_watermark / 2, 0);
	}
}

static void relay_error(struct relay *r, const struct relay_side *s, int err)
{
	char msg[96];
	snprintf(msg, sizeof msg, "%s: %s", s == &r->client ? "client" : "destination",
		 err ? strerror(err) : "connection closed while writing");
	relay_finish(r, RELAY_END_ERROR, msg);
}

/* ---------- splice engine ---------- */

/* Moves what the pipe holds to the peer; resumes reading once it is empty. */
static void relay_splice_drain(struct relay_side *src)
{
	struct relay *r = src->r;
	struct relay_side *dst = src->peer;

	while (src->in_pipe > 0) {
		ssize_t n = splice(src->pipe[0], NULL, dst->fd, NULL, src->in_pipe,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0) {
			src->in_pipe -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			event_add(dst->ev_write, NULL);
			return;
		}
		relay_error(r, dst, n < 0 ? errno : 0);
		return;
	}
	if (src->eof) {
		relay_fin_if_drained(dst);
		relay_check_done(r);
	} else if (src->paused) {
		src->paused = false;
		event_add(src->ev_read, NULL);
	}
}

static void relay_splice_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct relay_side *s = arg;
	struct relay *r = s->r;
	(void)what;

	ssize_t n = splice(fd, NULL, s->pipe[1], NULL, r->pipe_cap - s->in_pipe,
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	if (n > 0) {
		s->in_pipe += (size_t)n;
		s->bytes += (uint64_t)n;
		event_base_gettimeofday_cached(event_get_base(s->ev_read), &r->last);
	} else if (n == 0) {
		event_del(s->ev_read);
		relay_mark_eof(s, true);
	} else if (errno != EAGAIN && errno != EINTR) {
		relay_error(r, s, errno);
		return;
	}
	relay_splice_drain(s);
	if (r->finished)
		return;
	/* Bytes stuck in the pipe: read no more until the peer takes them.
	 * (This also keeps a pipe that is full of partial pages from making
	 * a readable socket spin.) */
	if (s->in_pipe > 0 && !s->eof && !s->paused) {
		s->paused = true;
		event_del(s->ev_read);
	}
}

static void relay_splice_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct relay_side *dst = arg;
	(void)fd;
	(void)what;
	relay_splice_drain(dst->peer);
}

static void relay_splice_undo(struct relay *r)
{
	struct relay_side *sides[] = { &r->client, &r->upstream };
	for (size_t i = 0; i < 2; i++) {
		struct relay_side *s = sides[i];
		if (s->pipe[0] >= 0) {
			close(s->pipe[0]);
			close(s->pipe[1]);
		}
		s->pipe[0] = s->pipe[1] = -1;
		if (s->ev_read)
			event_free(s->ev_read);
		if (s->ev_write)
			event_free(s->ev_write);
		s->ev_read = s->ev_write = NULL;
	}
}

/* Hands both directions to the splice engine once nothing is left in the
 * bufferevents (their order with spliced bytes would otherwise be lost).
 * Stays with the copy engine when a pipe cannot be had. */
static void relay_try_splice(struct relay *r)
{
	struct relay_side *sides[] = { &r->client, &r->upstream };

	if (!r->p.splice || r->p.limiter.take || r->spliced || r->finished ||
	    r->client.bytes + r->upstream.bytes < RELAY_SPLICE_AFTER)
		return;
	for (size_t i = 0; i < 2; i++) {
		struct bufferevent *b = sides[i]->bev;
		if (sides[i]->paused || evbuffer_get_length(bufferevent_get_input(b)) ||
		    evbuffer_get_length(bufferevent_get_output(b)))
			return;
	}
	struct event_base *base = bufferevent_get_base(r->client.bev);
	for (size_t i = 0; i < 2; i++) {
		struct relay_side *s = sides[i];
		s->fd = bufferevent_getfd(s->bev);
		if (pipe2(s->pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
			s->pipe[0] = s->pipe[1] = -1;
			relay_splice_undo(r);
			r->p.splice = false;	/* out of descriptors: stay with copy */
			return;
		}
		int cap = fcntl(s->pipe[1], F_SETPIPE_SZ, (int)r->p.high_watermark);
		if (cap <= 0)
			cap = fcntl(s->pipe[1], F_GETPIPE_SZ);
		r->pipe_cap = i == 0 || (size_t)cap < r->pipe_cap ? (size_t)cap : r->pipe_cap;
		s->ev_read = event_new(base, s->fd, EV_READ | EV_PERSIST, relay_splice_read_cb, s);
		s->ev_write = event_new(base, s->fd, EV_WRITE, relay_splice_write_cb, s);
		if (!s->ev_read || !s->ev_write) {
			relay_splice_undo(r);
			r->p.splice = false;
			return;
		}
	}
	bufferevent_disable(r->client.bev, EV_READ | EV_WRITE);
	bufferevent_disable(r->upstream.bev, EV_READ | EV_WRITE);
	r->spliced = true;
	for (size_t i = 0; i < 2; i++)
		if (!sides[i]->eof)
			event_add(sides[i]->ev_read, NULL);
}

/* ---------- copy engine ---------- */

static void relay_read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	relay_pump(arg);
}

/* The side's output drained to its low watermark: resume its peer, or
 * deliver a pending FIN. */
static void relay_write_cb(struct bufferevent *bev, void *arg)
{
	struct relay_side *dst = arg;
	struct relay_side *src = dst->peer;
	struct relay *r = dst->r;

	if (src->paused) {
		src->paused = false;
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		bufferevent_enable(src->bev, EV_READ);
		/* Bytes may have arrived while paused. */
		relay_pump(src);
		if (r->finished)
			return;
	}
	if (src->eof) {
		relay_fin_if_drained(dst);
		relay_check_done(r);
	}
	relay_try_splice(r);
}

static void relay_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct relay_side *s = arg;
	struct relay *r = s->r;
	(void)bev;

	if ((what & BEV_EVENT_EOF) && (what & BEV_EVENT_READING)) {
		relay_pump(s);
		if (r->finished)
			return;
		relay_mark_eof(s, true);
		return;
	}
	if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF))
		relay_error(r, s, EVUTIL_SOCKET_ERROR());
}

static void relay_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	struct timeval now, since, left;
	(void)fd;
	(void)what;

	event_base_gettimeofday_cached(bufferevent_get_base(r->client.bev), &now);
	evutil_timersub(&now, &r->last, &since);
	uint64_t since_ms = (uint64_t)since.tv_sec * 1000 + (uint64_t)since.tv_usec / 1000;
	if (since_ms >= r->p.idle_ms) {
		relay_finish(r, RELAY_END_IDLE, NULL);
		return;
	}
	uint64_t rest = r->p.idle_ms - since_ms;
	left.tv_sec = (time_t)(rest / 1000);
	left.tv_usec = (suseconds_t)(rest % 1000) * 1000;
	evtimer_add(r->idle, &left);
}

static void relay_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	(void)fd;
	(void)what;
	if (r->finished) {
		r->done(r->arg, r->end, r->error[0] ? r->error : NULL);
		return;
	}
	relay_pump(&r->upstream);
	if (!r->finished)
		relay_pump(&r->client);
	relay_try_splice(r);
}

static void relay_side_init(struct relay *r, struct relay_side *s,
			    struct bufferevent *bev, struct relay_side *peer)
{
	s->bev = bev;
	s->r = r;
	s->peer = peer;
	s->fd = -1;
	s->pipe[0] = s->pipe[1] = -1;
	bufferevent_setcb(bev, relay_read_cb, relay_write_cb, relay_event_cb, s);
	bufferevent_setwatermark(bev, EV_READ, 0, 0);
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	bufferevent_set_timeouts(bev, NULL, NULL);
	/* libevent reads and writes 16 KiB at a time by default; bulk
	 * transfers want fewer, larger system calls. */
	bufferevent_set_max_single_read(bev, RELAY_MAX_SINGLE_IO);
	bufferevent_set_max_single_write(bev, RELAY_MAX_SINGLE_IO);
}

struct relay *relay_start(struct bufferevent *client, struct bufferevent *upstream,
			  const struct relay_params *p, relay_done_cb done, void *arg)
{
	struct event_base *base = bufferevent_get_base(client);
	struct relay *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->p = *p;
	if (r->p.high_watermark == 0)
		r->p.high_watermark = 256 * 1024;
	r->done = done;
	r->arg = arg;
	r->kick = evtimer_new(base, relay_kick_cb, r);
	if (!r->kick) {
		free(r);
		return NULL;
	}
	relay_side_init(r, &r->client, client, &r->upstream);
	relay_side_init(r, &r->upstream, upstream, &r->client);
	event_base_gettimeofday_cached(base, &r->last);

	if (r->p.idle_ms) {
		r->idle = evtimer_new(base, relay_idle_cb, r);
		if (!r->idle) {
			event_free(r->kick);
			free(r);
			return NULL;
		}
	}
	if (r->idle) {
		struct timeval tv = { (time_t)(r->p.idle_ms / 1000),
				      (suseconds_t)(r->p.idle_ms % 1000) * 1000 };
		evtimer_add(r->idle, &tv);
	}
	struct timeval zero = { 0, 0 };
	evtimer_add(r->kick, &zero);
	bufferevent_enable(client, EV_READ | EV_WRITE);
	bufferevent_enable(upstream, EV_READ | EV_WRITE);
	return r;
}

uint64_t relay_bytes_up(const struct relay *r) { return r->client.bytes; }
uint64_t relay_bytes_down(const struct relay *r) { return r->upstream.bytes; }

void relay_free(struct relay *r)
{
	if (!r)
		return;
	if (r->idle)
		event_free(r->idle);
	event_free(r->kick);
	relay_splice_undo(r);
	bufferevent_free(r->client.bev);
	bufferevent_free(r->upstream.bev);
	free(r);
}

const char *relay_end_str(enum relay_end end)
{
	switch (end) {
	case RELAY_END_CLIENT_EOF: return "client_eof";
	case RELAY_END_UPSTREAM_EOF: return "upstream_eof";
	case RELAY_END_IDLE: return "idle_timeout";
	case RELAY_END_ERROR: return "error";
	}
	return "error";
}
