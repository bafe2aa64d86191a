/*
 * gateway_internal: what the daemon's top level (gateway.c) and its event
 * loops (gateway_loop.c) share; nothing else includes it.
 *
 * The gateway runs n_loops event loops (--threads). Loop 0 runs on the
 * main thread, which also owns the signals, the admin endpoint, the
 * tailnet watcher, the inbound listeners and the upstream probe; every
 * other loop runs on a thread of its own. Each loop has its own event
 * base, resolver, metrics, audit port, connection set and one socket per
 * proxy listen address (SO_REUSEPORT: the kernel spreads new connections
 * over them). What the loops share is safe to share: the audit trail, the
 * worker pool, the login throttle, the connection-id counter, and the
 * config and tailnet view, which are immutable and reference counted.
 *
 * The main thread changes a loop only through gateway_loop_call(), which
 * runs a function on the loop's thread and waits for it; a loop never
 * waits for the main thread, so the two cannot deadlock.
 */
#ifndef TAILFENCE_GATEWAY_INTERNAL_H
#define TAILFENCE_GATEWAY_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/util.h>

#include "tailfence/auth.h"
#include "tailfence/conn_env.h"
#include "tailfence/metrics.h"
#include "tailfence/tailnet_watch.h"

struct gateway;
struct gateway_loop;
struct inbound_entry;

/* One bound listener of a loop: a proxy listener, or (loop 0 only) an
 * inbound entry's. */
struct gateway_listener {
	struct gateway_loop *loop;
	struct evconnlistener *lev;
	bool inbound;			/* tailscale serve's, for inbound */
	size_t entry;			/* inbound: into cfg->inbound */
	char text[64];
};

/* An accepted socket waiting for a place under the cap. */
struct gateway_waiting {
	struct gateway_listener *gl;
	evutil_socket_t fd;
	struct sockaddr_storage sa;
	socklen_t salen;
};

struct gateway_loop {
	struct gateway *gw;
	unsigned index;			/* 0: the main thread's */
	pthread_t thread;
	bool thread_running;		/* index > 0, until joined */
	struct event_base *base;	/* loop 0: the gateway's */
	struct resolve_ctx *resolver;
	struct audit_port *audit_port;
	struct metrics metrics;		/* this loop's; admin adds them up */
	/* What this loop gives its connections, kept current by the main
	 * thread (the config on reload, the view on every change). */
	struct conn_env env;
	struct conn_set *conns;		/* proxy connections */
	struct gateway_listener *listeners;	/* sized once, before binding */
	size_t n_listeners, cap_listeners;
	bool accept_paused;
	struct event *accept_resume;	/* after EMFILE, or polling the cap */
	struct gateway_waiting *waiting;	/* accepted, not yet admitted */
	size_t n_waiting, cap_waiting;
};

struct gateway {
	struct event_base *base;	/* the main thread's (loop 0's) */
	struct config *cfg;		/* current; connections hold their own ref */
	struct config_args *args;
	struct audit *audit;
	struct worker *worker;		/* password KDFs, off the loops, bounded */
	struct auth_throttle throttle;	/* failed logins per client prefix */
	struct tailnet_watch *tailnet;	/* live view of the tailnet; NULL without a socket */
	struct tailnet_options tailnet_opt;	/* what it was started with */

	struct gateway_loop *loops;
	unsigned n_loops;
	/* Connections open on every loop, proxy and inbound: the places of
	 * limits.max_connections taken. */
	_Atomic size_t open;
	_Atomic uint64_t last_conn_id;
	struct inbound *inbound;	/* inbound connections, on loop 0 */

	bool listening;			/* every listener is bound */
	atomic_bool stopping;
	int exit_status;		/* set when the loop ends on an error */
	struct event *grace;
	/* With a tailscaled socket the listeners open once tailscaled first
	 * answers (or could not be reached), at most GATEWAY_FIRST_VIEW_MS
	 * after the start: a client is never refused only because it came
	 * first. */
	struct event *first_view;
	struct event *signals[5];

	struct admin *admin;		/* /metrics, /healthz, /readyz; NULL when off */
	struct upstream_probe *start_probe;	/* the look at the upstream at start */
};

/* Makes loop index of gw (its base, resolver, audit port, environment and
 * connection set) and, for index > 0, starts its thread. Needs gw's
 * config, trail and worker. false with a sentence in err. */
bool gateway_loop_start(struct gateway *gw, unsigned index, char *err, size_t len);

/* Ends the loop's thread (index > 0) and waits for it. */
void gateway_loop_join(struct gateway_loop *l);

/* Frees what the loop owns; its thread must have been joined. The
 * connections first (they use the worker and the trail), the rest with
 * gateway_loop_free_rest() once the worker is gone. */
void gateway_loop_free_conns(struct gateway_loop *l);
void gateway_loop_free_rest(struct gateway_loop *l);

/* Runs fn(l, arg) on l's thread and returns once it has run (at once on
 * the main thread for loop 0, or for a loop whose thread has ended). */
typedef void (*gateway_loop_fn)(struct gateway_loop *l, void *arg);
void gateway_loop_call(struct gateway_loop *l, gateway_loop_fn fn, void *arg);

/* gateway_loop_call() on every loop in turn, loop 0 first. */
void gateway_loops_call(struct gateway *gw, gateway_loop_fn fn, void *arg);

/* Binds one listener on loop l (on l's thread): with e, the inbound entry
 * at index entry; reuseport: one of several sockets of the same address.
 * false with errno set when it cannot. */
bool gateway_loop_bind(struct gateway_loop *l, const char *text, const struct sockaddr *sa,
		       socklen_t len, int backlog, bool reuseport,
		       const struct inbound_entry *e, size_t entry);

/* Turns accepting on or off on every listener of l (l's thread). */
void gateway_loop_accepting(struct gateway_loop *l, bool on);

/* Closes the sockets accepted but still waiting for a place (stopping). */
void gateway_loop_drop_held(struct gateway_loop *l);

/* Connections open on every loop, proxy and inbound. */
size_t gateway_open(const struct gateway *gw);

#endif
