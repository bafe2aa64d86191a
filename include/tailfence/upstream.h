/*
 * upstream: dials a decided address through the configured upstream.
 *
 * socks5: TCP to tailscaled's SOCKS5 listener, greeting, CONNECT with the
 * IP address (never a name: the address the policy checked is the one
 * dialed). http: TCP to tailscaled's outbound HTTP proxy, CONNECT ip:port.
 * direct: TCP to the address itself. The whole dial, handshakes included,
 * is bounded by one timeout. Non-blocking throughout.
 */
#ifndef TAILFENCE_UPSTREAM_H
#define TAILFENCE_UPSTREAM_H

#include <stdint.h>

#include "tailfence/cidr.h"
#include "tailfence/config.h"

struct bufferevent;
struct event_base;

enum upstream_error {
	UPSTREAM_OK = 0,
	UPSTREAM_REFUSED,		/* destination refused the connection */
	UPSTREAM_NET_UNREACHABLE,
	UPSTREAM_HOST_UNREACHABLE,
	UPSTREAM_TIMEOUT,		/* connect timeout */
	UPSTREAM_NOT_ALLOWED,		/* the upstream's own ruleset said no */
	UPSTREAM_PROXY_FAILED,		/* upstream proxy down or misbehaving */
};

struct upstream_result {
	enum upstream_error err;
	const char *detail;		/* static or owned by the dial; valid during the callback */
	struct bufferevent *bev;	/* on UPSTREAM_OK: connected stream, now the callee's */
	struct cidr_addr bnd;		/* bound address the upstream reported (family 0 if none) */
	uint16_t bnd_port;
	uint64_t elapsed_us;		/* from upstream_dial() to this result */
};

/* Called once per dial, never from inside upstream_dial(); the dial is
 * freed after the callback returns. */
typedef void (*upstream_cb)(void *arg, struct upstream_result *res);

struct upstream_dial;

struct upstream_dial *upstream_dial(struct event_base *base,
				    const struct config_upstream *up,
				    const struct cidr_addr *dst, uint16_t port,
				    unsigned timeout_ms, upstream_cb cb, void *arg);

/* Abandons a dial in progress; the callback will not be called. */
void upstream_dial_cancel(struct upstream_dial *d);

const char *upstream_error_str(enum upstream_error e);

#endif
