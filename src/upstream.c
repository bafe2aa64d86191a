/*
 * upstream: the client side of the hop to tailscaled (or the destination).
 *
 * One small state machine per dial: TCP connect, then for socks5 the
 * greeting and CONNECT exchange, for http the CONNECT exchange. The wire
 * formats come from socks.c and httpproxy.c; this file only moves them.
 */
#include "tailfence/upstream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "tailfence/httpproxy.h"
#include "tailfence/metrics.h"
#include "tailfence/socks.h"

enum upstream_state {
	UP_CONNECTING,
	UP_SOCKS_METHOD,
	UP_SOCKS_REPLY,
	UP_HTTP_REPLY,
};

struct upstream_dial {
	struct event_base *base;
	enum config_upstream_kind kind;
	enum upstream_state state;
	struct bufferevent *bev;
	struct event *timer;		/* overall timeout, or an immediate failure */
	struct cidr_addr dst;
	uint16_t port;
	upstream_cb cb;
	void *arg;
	uint64_t started_us;
	enum upstream_error pending;	/* failure to report from the timer */
	const char *pending_detail;
	char detail[128];
};

/* Longest HTTP response head accepted from the upstream proxy. */
#define UPSTREAM_HTTP_MAX_HEAD 8192

/* Reports the outcome and frees the dial. On success the stream goes to the
 * callee, with the bound address the upstream reported (bnd) or, when it
 * reported none, this end's local address. */
static void upstream_finish(struct upstream_dial *d, enum upstream_error err,
			    const char *detail, const struct cidr_addr *bnd,
			    uint16_t bnd_port)
{
	struct upstream_result res = { .err = err, .detail = detail,
				       .elapsed_us = metrics_now_us() - d->started_us };
	if (err == UPSTREAM_OK) {
		res.bev = d->bev;
		d->bev = NULL;
		bufferevent_setcb(res.bev, NULL, NULL, NULL, NULL);
		bufferevent_disable(res.bev, EV_READ);
		if (bnd && bnd->family) {
			res.bnd = *bnd;
			res.bnd_port = bnd_port;
		} else {
			struct sockaddr_storage ss;
			socklen_t len = sizeof ss;
			if (getsockname(bufferevent_getfd(res.bev),
					(struct sockaddr *)&ss, &len) == 0)
				cidr_addr_from_sockaddr((struct sockaddr *)&ss, &res.bnd,
							&res.bnd_port);
		}
	}
	d->cb(d->arg, &res);
	upstream_dial_cancel(d);
}

static void upstream_fail(struct upstream_dial *d, enum upstream_error err,
			  const char *detail)
{
	upstream_finish(d, err, detail, NULL, 0);
}

static void upstream_fail_later(struct upstream_dial *d, enum upstream_error err,
				const char *detail)
{
	d->pending = err;
	d->pending_detail = detail;
	if (d->bev)
		bufferevent_disable(d->bev, EV_READ | EV_WRITE);
	struct timeval zero = { 0, 0 };
	evtimer_add(d->timer, &zero);
}

static void upstream_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_dial *d = arg;
	(void)fd;
	(void)what;
	if (d->pending != UPSTREAM_OK)
		upstream_fail(d, d->pending, d->pending_detail);
	else
		upstream_fail(d, UPSTREAM_TIMEOUT, "connect timed out");
}

static enum upstream_error upstream_errno_map(int err)
{
	switch (err) {
	case ECONNREFUSED: return UPSTREAM_REFUSED;
	case ENETUNREACH: return UPSTREAM_NET_UNREACHABLE;
	case EHOSTUNREACH: return UPSTREAM_HOST_UNREACHABLE;
	case ETIMEDOUT: return UPSTREAM_TIMEOUT;
	default: return UPSTREAM_PROXY_FAILED;
	}
}

static enum upstream_error upstream_socks_rep_map(uint8_t rep)
{
	switch (rep) {
	case SOCKS5_REP_NOT_ALLOWED: return UPSTREAM_NOT_ALLOWED;
	case SOCKS5_REP_NET_UNREACHABLE: return UPSTREAM_NET_UNREACHABLE;
	case SOCKS5_REP_HOST_UNREACHABLE: return UPSTREAM_HOST_UNREACHABLE;
	case SOCKS5_REP_CONN_REFUSED: return UPSTREAM_REFUSED;
	case SOCKS5_REP_TTL_EXPIRED: return UPSTREAM_TIMEOUT;
	default: return UPSTREAM_PROXY_FAILED;
	}
}

static void upstream_read_cb(struct bufferevent *bev, void *arg)
{
	struct upstream_dial *d = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	for (;;) {
		size_t len = evbuffer_get_length(in);
		size_t consumed = 0;
		if (d->state == UP_SOCKS_METHOD) {
			uint8_t method;
			const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)len);
			enum socks_step st = socks5_client_parse_method(p, len, &consumed, &method);
			if (st == SOCKS_NEED_MORE)
				return;
			if (st == SOCKS_ERROR || method != SOCKS_METHOD_NOAUTH) {
				upstream_fail(d, UPSTREAM_PROXY_FAILED,
						"upstream SOCKS5 proxy refused the no-auth method");
				return;
			}
			evbuffer_drain(in, consumed);
			uint8_t req[32];
			size_t n = socks5_client_connect(req, &d->dst, d->port);
			bufferevent_write(bev, req, n);
			d->state = UP_SOCKS_REPLY;
		} else if (d->state == UP_SOCKS_REPLY) {
			uint8_t rep;
			struct cidr_addr bnd;
			uint16_t bnd_port;
			const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)(len < 262 ? len : 262));
			enum socks_step st = socks5_client_parse_reply(p, len < 262 ? len : 262,
								       &consumed, &rep, &bnd, &bnd_port);
			if (st == SOCKS_NEED_MORE)
				return;
			if (st == SOCKS_ERROR) {
				upstream_fail(d, UPSTREAM_PROXY_FAILED,
						"upstream SOCKS5 proxy sent a malformed reply");
				return;
			}
			evbuffer_drain(in, consumed);
			if (rep != SOCKS5_REP_SUCCEEDED) {
				snprintf(d->detail, sizeof d->detail, "upstream: %s",
					 socks5_rep_str(rep));
				upstream_fail(d, upstream_socks_rep_map(rep), d->detail);
				return;
			}
			upstream_finish(d, UPSTREAM_OK, NULL, &bnd, bnd_port);
			return;
		} else if (d->state == UP_HTTP_REPLY) {
			size_t look = len < UPSTREAM_HTTP_MAX_HEAD + 1 ? len : UPSTREAM_HTTP_MAX_HEAD + 1;
			const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
			int status = 0;
			enum httpproxy_step st = httpproxy_parse_connect_response(
				p, look, UPSTREAM_HTTP_MAX_HEAD, &consumed, &status);
			if (st == HTTPPROXY_NEED_MORE)
				return;
			if (st == HTTPPROXY_ERROR) {
				upstream_fail(d, UPSTREAM_PROXY_FAILED,
						"upstream HTTP proxy sent a malformed response");
				return;
			}
			evbuffer_drain(in, consumed);
			if (status < 200 || status > 299) {
				snprintf(d->detail, sizeof d->detail,
					 "upstream HTTP proxy answered %d", status);
				enum upstream_error e = status == 403 ? UPSTREAM_NOT_ALLOWED
					: status == 504 ? UPSTREAM_TIMEOUT
					: UPSTREAM_PROXY_FAILED;
				upstream_fail(d, e, d->detail);
				return;
			}
			upstream_finish(d, UPSTREAM_OK, NULL, NULL, 0);
			return;
		} else {
			return;
		}
	}
}

static void upstream_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct upstream_dial *d = arg;

	if (what & BEV_EVENT_CONNECTED) {
		switch (d->kind) {
		case CONFIG_UPSTREAM_DIRECT:
			upstream_finish(d, UPSTREAM_OK, NULL, NULL, 0);
			return;
		case CONFIG_UPSTREAM_SOCKS5: {
			uint8_t g[4];
			size_t n = socks5_client_greeting(g, false);
			bufferevent_write(bev, g, n);
			d->state = UP_SOCKS_METHOD;
			break;
		}
		case CONFIG_UPSTREAM_HTTP: {
			char req[256];
			size_t n = httpproxy_format_connect(req, sizeof req, &d->dst, d->port);
			bufferevent_write(bev, req, n);
			d->state = UP_HTTP_REPLY;
			break;
		}
		}
		bufferevent_enable(bev, EV_READ);
		return;
	}
	int err = EVUTIL_SOCKET_ERROR();
	if (d->state == UP_CONNECTING) {
		enum upstream_error e = upstream_errno_map(err);
		if (d->kind != CONFIG_UPSTREAM_DIRECT) {
			/* The proxy itself is unreachable: not the destination's fault. */
			snprintf(d->detail, sizeof d->detail, "upstream proxy unreachable: %s",
				 strerror(err ? err : ECONNREFUSED));
			upstream_fail(d, UPSTREAM_PROXY_FAILED, d->detail);
		} else {
			snprintf(d->detail, sizeof d->detail, "%s", strerror(err ? err : ECONNREFUSED));
			upstream_fail(d, e, d->detail);
		}
		return;
	}
	snprintf(d->detail, sizeof d->detail, "upstream proxy closed the connection during the handshake%s%s",
		 err ? ": " : "", err ? strerror(err) : "");
	upstream_fail(d, UPSTREAM_PROXY_FAILED, d->detail);
}

struct upstream_dial *upstream_dial(struct event_base *base,
				    const struct config_upstream *up,
				    const struct cidr_addr *dst, uint16_t port,
				    unsigned timeout_ms, upstream_cb cb, void *arg)
{
	struct upstream_dial *d = calloc(1, sizeof *d);
	if (!d)
		return NULL;
	d->base = base;
	d->kind = up->kind;
	d->state = UP_CONNECTING;
	d->dst = *dst;
	d->port = port;
	d->cb = cb;
	d->arg = arg;
	d->started_us = metrics_now_us();
	d->timer = evtimer_new(base, upstream_timer_cb, d);
	d->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!d->timer || !d->bev) {
		upstream_dial_cancel(d);
		return NULL;
	}
	bufferevent_setcb(d->bev, upstream_read_cb, NULL, upstream_event_cb, d);

	struct sockaddr_storage ss;
	socklen_t len = up->kind == CONFIG_UPSTREAM_DIRECT
		? cidr_addr_to_sockaddr(dst, port, &ss)
		: cidr_addr_to_sockaddr(&up->addr, up->port, &ss);
	struct timeval tv = { (time_t)(timeout_ms / 1000),
			      (suseconds_t)(timeout_ms % 1000) * 1000 };
	evtimer_add(d->timer, &tv);
	if (len == 0 ||
	    bufferevent_socket_connect(d->bev, (struct sockaddr *)&ss, (int)len) < 0) {
		int err = EVUTIL_SOCKET_ERROR();
		snprintf(d->detail, sizeof d->detail, "connect: %s",
			 strerror(err ? err : EINVAL));
		upstream_fail_later(d, up->kind == CONFIG_UPSTREAM_DIRECT
				       ? upstream_errno_map(err) : UPSTREAM_PROXY_FAILED,
				    d->detail);
	}
	return d;
}

void upstream_dial_cancel(struct upstream_dial *d)
{
	if (!d)
		return;
	if (d->timer)
		event_free(d->timer);
	if (d->bev)
		bufferevent_free(d->bev);
	free(d);
}

const char *upstream_error_str(enum upstream_error e)
{
	switch (e) {
	case UPSTREAM_OK: return "ok";
	case UPSTREAM_REFUSED: return "connection refused";
	case UPSTREAM_NET_UNREACHABLE: return "network unreachable";
	case UPSTREAM_HOST_UNREACHABLE: return "host unreachable";
	case UPSTREAM_TIMEOUT: return "connect timed out";
	case UPSTREAM_NOT_ALLOWED: return "refused by the upstream's rules";
	case UPSTREAM_PROXY_FAILED: return "upstream proxy failed";
	}
	return "unknown";
}
