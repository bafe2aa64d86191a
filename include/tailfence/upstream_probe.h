/*
 * upstream_probe: is the upstream there? One TCP connection to it and, for
 * SOCKS5, the method negotiation (no destination is ever named, so nothing
 * is dialed through it). Used by readiness (admin, every 2 s) and at start,
 * where the gateway warns once when tailscaled's proxy does not answer.
 * Loop thread only.
 */
#ifndef TAILFENCE_UPSTREAM_PROBE_H
#define TAILFENCE_UPSTREAM_PROBE_H

#include <stdbool.h>

#include "tailfence/config.h"

struct event_base;
struct upstream_probe;

/* The answer: up, or why not ("Connection refused", "no answer within
 * 3 s", ...). Called exactly once, never from inside upstream_probe_start. */
typedef void (*upstream_probe_fn)(void *arg, bool up, const char *why);

/* Starts one probe of up (not DIRECT) giving up after timeout_s. NULL on
 * allocation failure (then done is not called). */
struct upstream_probe *upstream_probe_start(struct event_base *base,
					    const struct config_upstream *up,
					    unsigned timeout_s, upstream_probe_fn done,
					    void *arg);

/* Stops a probe whose answer has not come; done is not called. */
void upstream_probe_cancel(struct upstream_probe *p);

#endif
