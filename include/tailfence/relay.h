/*
 * relay: moves bytes both ways between a client and its destination once
 * the handshakes are over.
 *
 * Owns both bufferevents from relay_start() on. Backpressure: a side stops
 * reading when the other side's output buffer passes the high watermark and
 * resumes when it drains below half of it, so memory per connection is
 * bounded by configuration, never by the peer. Half-close: EOF on one side
 * becomes shutdown(SHUT_WR) on the other once its output is flushed, while
 * the other direction keeps flowing. Idle: no byte either way for idle_ms
 * ends the relay.
 *
 * The relay only sees two bufferevents and a done callback; how bytes move
 * is its own business (a copy through bufferevents, or splice(2) through a
 * pipe once nothing is buffered), and nothing here is global, so one event
 * loop per core needs no change either.
 */
#ifndef TAILFENCE_RELAY_H
#define TAILFENCE_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bufferevent;
struct evbuffer;

enum relay_end {
	RELAY_END_CLIENT_EOF,	/* client closed first, everything flushed */
	RELAY_END_UPSTREAM_EOF,	/* destination closed first, everything flushed */
	RELAY_END_IDLE,		/* idle timeout */
	RELAY_END_ERROR,	/* socket error on either side */
};

/* Limits what flows from the client to the destination: called with the
 * client's pending input, returns how many bytes of it may be forwarded and
 * sets *done once the client's part of the exchange is complete (nothing
 * after those bytes is forwarded; the client is no longer read). Returns
 * (size_t)-1 on malformed input, which ends the relay with an error. Used
 * for one forwarded HTTP request. */
struct relay_limiter {
	size_t (*take)(void *arg, struct evbuffer *in, bool *done);
	void *arg;
};

struct relay_params {
	size_t high_watermark;	/* per direction, bytes */
	unsigned idle_ms;	/* 0: no idle timeout */
	struct relay_limiter limiter;	/* .take NULL: no limit */
	bool splice;		/* may move bytes with splice(2) (not with a limiter) */
};

struct relay;

typedef void (*relay_done_cb)(void *arg, enum relay_end end, const char *error);

/* Starts relaying; bytes already buffered on either side are forwarded
 * first. done is called once (never from inside relay_start); after it the
 * caller frees the relay. */
struct relay *relay_start(struct bufferevent *client, struct bufferevent *upstream,
			  const struct relay_params *p, relay_done_cb done, void *arg);

/* Bytes forwarded so far: client -> destination and back. */
uint64_t relay_bytes_up(const struct relay *r);
uint64_t relay_bytes_down(const struct relay *r);

/* Frees the relay and closes both sockets. */
void relay_free(struct relay *r);

const char *relay_end_str(enum relay_end end);

#endif
