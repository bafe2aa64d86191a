/*
 * conn_env: what one event loop gives the connections it runs (proxy
 * connections, inbound connections and UDP associations), so that none of
 * them needs to know the gateway that made the loop.
 *
 * The loop's own parts (event base, resolver, metrics, audit port) are
 * used on that loop's thread only. The shared parts (audit trail, login
 * throttle, worker pool, connection-id counter) are safe to share between
 * loops.
 * The current config and tailnet view are references the owner replaces
 * on the loop's thread (conn_env_set_config, conn_env_set_view): a
 * connection takes its own config reference at accept and keeps it for
 * life; it reads the view afresh at every decision.
 *
 * The owner (the gateway) fills the struct in, keeps it current, and is
 * told through closed() whenever one of the connections it counts ends.
 */
#ifndef TAILFENCE_CONN_ENV_H
#define TAILFENCE_CONN_ENV_H

#include <stdatomic.h>
#include <stdint.h>

struct audit;
struct audit_port;
struct auth_throttle;
struct config;
struct event_base;
struct metrics;
struct resolve_ctx;
struct tailnet_view;
struct worker;

struct conn_env {
	/* The loop's own. */
	struct event_base *base;
	struct resolve_ctx *resolver;
	struct metrics *metrics;
	struct audit_port *audit_port;	/* waits for decision records */

	/* Shared by every loop. */
	struct audit *audit;
	struct auth_throttle *throttle;	/* failed logins per client prefix */
	struct worker *worker;		/* password KDFs, inbound peer checks */
	_Atomic uint64_t *last_id;	/* the last connection id handed out */

	/* Current; references, replaced with the setters below. */
	struct config *cfg;		/* for connections accepted from now on */
	struct tailnet_view *view;	/* NULL without a tailscaled socket */

	/* A connection ended (proxy or inbound; a UDP association ends with
	 * its control connection). Called after it was freed. */
	void (*closed)(void *owner);
	void *owner;
};

/* A new connection id, unique across every loop sharing last_id. */
uint64_t conn_env_next_id(const struct conn_env *env);

/* Replaces the current config (the env takes its own reference). */
void conn_env_set_config(struct conn_env *env, struct config *cfg);

/* Replaces the current tailnet view (its own reference; NULL: none). */
void conn_env_set_view(struct conn_env *env, struct tailnet_view *view);

/* Drops both references. */
void conn_env_clear(struct conn_env *env);

#endif
