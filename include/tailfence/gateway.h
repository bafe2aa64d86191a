/*
 * gateway: the running daemon. Owns the event loop, the listeners, the
 * current config, the resolver, the tailnet watcher, the audit trail and
 * the list of open connections; handles signals (TERM/INT stop, HUP
 * reload, USR1 reopen).
 */
#ifndef TAILFENCE_GATEWAY_H
#define TAILFENCE_GATEWAY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tailfence/auth.h"
#include "tailfence/cidr.h"
#include "tailfence/conn_env.h"
#include "tailfence/metrics.h"
#include "tailfence/tailnet.h"

struct admin;
struct upstream_probe;
struct audit;
struct config;
struct config_args;
struct conn_set;
struct event;
struct event_base;
struct evconnlistener;
struct inbound;
struct resolve_ctx;
struct tailnet_watch;
struct worker;

struct gateway_listener {
	struct gateway *gw;
	struct evconnlistener *lev;
	bool inbound;			/* tailscale serve's, for inbound */
	size_t entry;			/* inbound: into cfg->inbound */
	char text[64];
};

/* How long the look at the upstream at start may take. */
#define GATEWAY_PROBE_TIMEOUT_S 3

struct gateway {
	struct event_base *base;
	struct resolve_ctx *resolver;
	struct config *cfg;		/* current; connections hold their own ref */
	struct config_args *args;
	struct audit *audit;
	struct worker *worker;		/* password KDFs, off the loop, bounded */
	struct tailnet_watch *tailnet;	/* live view of the tailnet; NULL without a socket */
	struct tailnet_options tailnet_opt;	/* what it was started with */

	struct gateway_listener *listeners;
	size_t n_listeners;
	bool listening;			/* every listener is bound */
	bool accept_paused;
	struct event *accept_resume;	/* after EMFILE/ENFILE */

	struct conn_env env;		/* what the loop gives its connections */
	struct conn_set *conns;		/* the proxy connections */
	_Atomic uint64_t last_conn_id;

	bool stopping;
	int exit_status;		/* set when the loop ends on an error */
	struct event *grace;
	/* With a tailscaled socket the listeners open once tailscaled first
	 * answers (or could not be reached), at most GATEWAY_FIRST_VIEW_MS
	 * after the start: a client is never refused only because it came
	 * first. */
	struct event *first_view;
	struct event *signals[5];

	struct auth_throttle throttle;	/* failed logins per client prefix */

	struct metrics metrics;		/* loop thread only; survives reloads */
	struct admin *admin;		/* /metrics, /healthz, /readyz; NULL when off */
	struct upstream_probe *start_probe;	/* the look at the upstream at start */
	struct inbound *inbound;	/* inbound listeners and their connections */
};

#endif
