/*
 * admin: the operator's HTTP endpoint, served with libevent's evhttp on
 * the gateway's own event loop (--admin ADDR:PORT; off by default).
 *
 *   GET /metrics   Prometheus text exposition (metrics.h)
 *   GET /healthz   200 while the loop runs
 *   GET /readyz    200 when every listener is bound, the audit sinks are
 *                  healthy, the upstream proxy answers a periodic probe and,
 *                  with a tailscaled socket, tailscaled is Running; else 503
 *                  with one line saying why
 *
 * GET and HEAD only (405 otherwise); no proxy traffic. Owns the evhttp
 * server, its listener and the upstream probe.
 */
#ifndef TAILFENCE_ADMIN_H
#define TAILFENCE_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

struct admin;
struct gateway;

/* Binds gw->cfg->admin and starts probing the upstream. NULL with a
 * sentence in err when the address cannot be bound. */
struct admin *admin_start(struct gateway *gw, char *err, size_t errlen);

/* True when the daemon is ready; otherwise false with one line in why. */
bool admin_ready(struct admin *a, char *why, size_t len);

void admin_free(struct admin *a);

#endif
