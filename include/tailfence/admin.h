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
 * server, its listener and the upstream probe. Reads the loop, the
 * current config, the audit trail, the worker pool, the tailnet view and
 * the counters from the environment connections get (conn_env.h), and
 * asks its owner (the gateway) for the rest through struct admin_owner.
 */
#ifndef TAILFENCE_ADMIN_H
#define TAILFENCE_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

struct admin;
struct conn_env;
struct metrics;
struct metrics_snapshot;

/* What only the owner knows, asked at each request. */
struct admin_owner {
	/* false, with one line in why, while no connection can be accepted
	 * (listeners not bound yet, shutting down). */
	bool (*serving)(void *arg, char *why, size_t len);
	/* Every event loop's counters, added into m (initialised, empty),
	 * and the connection gauges: open connections, open relays and the
	 * bytes they moved so far, whether the listeners are bound. */
	void (*collect)(void *arg, struct metrics *m, struct metrics_snapshot *s);
	void *arg;
};

/* Binds env->cfg->admin and starts probing the upstream. env is borrowed
 * (it must outlive the endpoint); owner is copied. NULL with a sentence in
 * err when the address cannot be bound. */
struct admin *admin_start(const struct conn_env *env, const struct admin_owner *owner,
			  char *err, size_t errlen);

/* True when the daemon is ready; otherwise false with one line in why. */
bool admin_ready(struct admin *a, char *why, size_t len);

void admin_free(struct admin *a);

#endif
