/*
 * relay: the byte pump between a client and its destination.
 *
 * Each direction is a relay_side: the side we read from, and its peer whose
 * output buffer we fill. The mechanism is libevent's: when the peer's
 * output passes the high watermark, stop reading this side and ask for a
 * write callback when the peer drains to half; then read again.
 */
#include "tailfence/relay.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

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
};

struct relay {
	struct relay_side client;
	struct relay_side upstream;
	struct relay_params p;
	relay_done_cb done;
	void *arg;
	struct event *idle;	/* idle timeout, re-armed lazily */
	struct event *kick;	/* forwards bytes buffered before the start */
	struct timeval last;	/* last byte read, either side */
	bool have_first_eof;
	enum relay_end first_eof;
	bool finished;
};

static void relay_finish(struct relay *r, enum relay_end end, const char *error)
{
	if (r->finished)
		return;
	r->finished = true;
	bufferevent_disable(r->client.bev, EV_READ | EV_WRITE);
	bufferevent_disable(r->upstream.bev, EV_READ | EV_WRITE);
	r->done(r->arg, end, error);
}

/* A direction is complete when its source hit EOF and everything read has
 * left the peer's output buffer. The relay is over when both are. */
static bool relay_direction_done(const struct relay_side *src)
{
	return src->eof &&
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
	if (dst->want_fin && !dst->shut &&
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

static void relay_pump(struct relay_side *s)
{
	struct relay *r = s->r;
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer *out = bufferevent_get_output(s->peer->bev);
	size_t n = evbuffer_get_length(in);

	if (n == 0 || s->eof)
		return;
	event_base_gettimeofday_cached(bufferevent_get_base(s->bev), &r->last);

	if (s == &r->client && r->p.limiter.take) {
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
	if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
		int err = EVUTIL_SOCKET_ERROR();
		char msg[96];
		snprintf(msg, sizeof msg, "%s: %s",
			 s == &r->client ? "client" : "destination",
			 err ? strerror(err) : "connection closed while writing");
		relay_finish(r, RELAY_END_ERROR, msg);
	}
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
	relay_pump(&r->upstream);
	if (!r->finished)
		relay_pump(&r->client);
}

static void relay_side_init(struct relay *r, struct relay_side *s,
			    struct bufferevent *bev, struct relay_side *peer)
{
	s->bev = bev;
	s->r = r;
	s->peer = peer;
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
	relay_side_init(r, &r->client, client, &r->upstream);
	relay_side_init(r, &r->upstream, upstream, &r->client);
	event_base_gettimeofday_cached(base, &r->last);

	r->kick = evtimer_new(base, relay_kick_cb, r);
	if (r->p.idle_ms)
		r->idle = evtimer_new(base, relay_idle_cb, r);
	if (!r->kick || (r->p.idle_ms && !r->idle)) {
		if (r->kick)
			event_free(r->kick);
		free(r);
		return NULL;
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
