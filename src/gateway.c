/*
 * gateway: the daemon's top level (`tailfence run`, gateway_main in cli.h).
 *
 * Owns the event loop, the listeners (proxy and inbound), the current
 * config, the resolver, the tailnet watcher, the audit trail, the worker
 * pool, the login throttle and the metrics, and hands connections the
 * part of it they need (struct conn_env); conn and inbound own the
 * connections themselves and tell it when one ends.
 *
 * Builds the config, binds the listeners, runs the event loop, and handles
 * signals: SIGTERM/SIGINT stop accepting, close connections still in their
 * handshake, give relays shutdown_grace_ms to finish, flush the audit trail
 * and exit; SIGHUP builds a new config and swaps it in for new connections
 * (an invalid one is rejected and the old one stays) and reopens the audit
 * files; SIGUSR1 only reopens the audit files (logrotate).
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>

#include "tailfence/admin.h"
#include "tailfence/audit.h"
#include "tailfence/auth.h"
#include "tailfence/cli.h"
#include "tailfence/config.h"
#include "tailfence/conn.h"
#include "tailfence/conn_env.h"
#include "tailfence/inbound.h"
#include "tailfence/inbound_config.h"
#include "tailfence/log.h"
#include "tailfence/metrics.h"
#include "tailfence/policy.h"
#include "tailfence/resolve.h"
#include "tailfence/tailnet.h"
#include "tailfence/tailnet_watch.h"
#include "tailfence/upstream_probe.h"
#include "tailfence/worker.h"

/* The longest the listeners wait for tailscaled's first answer. */
#define GATEWAY_FIRST_VIEW_MS 5000

/* How long start-up waits for the start record to reach every sink. */
#define GATEWAY_AUDIT_START_MS 10000

/* How long accepting pauses after the process ran out of descriptors. */
#define GATEWAY_EMFILE_PAUSE_MS 1000

/* How long the look at the upstream at start may take. */
#define GATEWAY_PROBE_TIMEOUT_S 3

struct gateway;

/* One bound listener: the proxy's, or an inbound entry's. */
struct gateway_listener {
	struct gateway *gw;
	struct evconnlistener *lev;
	bool inbound;			/* tailscale serve's, for inbound */
	size_t entry;			/* inbound: into cfg->inbound */
	char text[64];
};

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

	/* What the loop gives its connections, kept current (the config on
	 * reload, the view on every change), and the connections of both
	 * kinds, counted together against limits.max_connections. */
	struct conn_env env;
	struct conn_set *conns;		/* proxy connections */
	struct inbound *inbound;	/* inbound connections */
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
};

static void gateway_accepting(struct gateway *gw, bool on)
{
	if (gw->accept_paused == !on)
		return;
	gw->accept_paused = !on;
	for (size_t i = 0; i < gw->n_listeners; i++) {
		if (on)
			evconnlistener_enable(gw->listeners[i].lev);
		else
			evconnlistener_disable(gw->listeners[i].lev);
	}
}

/* Connections open, proxy and inbound. */
static size_t gateway_open(const struct gateway *gw)
{
	return conn_set_count(gw->conns) + inbound_count(gw->inbound);
}

static bool gateway_at_capacity(const struct gateway *gw)
{
	return gateway_open(gw) >= gw->cfg->max_connections;
}

/* A connection ended (the environment's closed()). */
static void gateway_conn_gone(void *arg)
{
	struct gateway *gw = arg;
	if (gw->stopping) {
		if (gateway_open(gw) == 0)
			event_base_loopexit(gw->base, NULL);
		return;
	}
	if (gw->accept_paused && !gateway_at_capacity(gw) &&
	    !evtimer_pending(gw->accept_resume, NULL))
		gateway_accepting(gw, true);
}

/* A connection was accepted: pauses accepting at the cap
 * (limits.max_connections counts both kinds). */
static void gateway_conn_opened(struct gateway *gw)
{
	if (gateway_at_capacity(gw) && !gw->accept_paused) {
		log_warn("%zu connections open (limits.max_connections): pausing accept",
			 gateway_open(gw));
		gateway_accepting(gw, false);
	}
}

static void gateway_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
			      struct sockaddr *sa, int salen, void *arg)
{
	struct gateway_listener *l = arg;
	struct gateway *gw = l->gw;
	(void)lev;

	if (l->inbound)
		inbound_accept(gw->inbound, l->entry, fd);
	else
		conn_accept(gw->conns, l->text, fd, sa, (socklen_t)salen);
	gateway_conn_opened(gw);
}

/* An accept failed on listener: out of descriptors or memory pauses every
 * listener for a second instead of spinning. */
static void gateway_accept_failed(struct gateway *gw, const char *listener, int err)
{
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		/* Spinning on accept() would burn the CPU: pause, as relayd does. */
		log_warn("accept on %s: %s; pausing accept for %d ms", listener,
			 strerror(err), GATEWAY_EMFILE_PAUSE_MS);
		gateway_accepting(gw, false);
		struct timeval tv = { 0, GATEWAY_EMFILE_PAUSE_MS * 1000 };
		evtimer_add(gw->accept_resume, &tv);
		return;
	}
	log_warn("accept on %s: %s", listener, strerror(err));
}

static void gateway_accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct gateway_listener *l = arg;
	(void)lev;
	gateway_accept_failed(l->gw, l->text, EVUTIL_SOCKET_ERROR());
}

static void gateway_accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct gateway *gw = arg;
	(void)fd;
	(void)what;
	if (!gw->stopping && !gateway_at_capacity(gw))
		gateway_accepting(gw, true);
}

/* The wall clock in ms since the epoch, for timestamps shown to people. */
static int64_t gateway_wall_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* What the password checks cost over the daemon's life. */
static void gateway_log_logins(struct gateway *gw)
{
	struct worker_stats st;
	worker_stats(gw->worker, &st);
	if (!st.ran && !st.dropped && !st.refused_full && !st.refused_client)
		return;
	log_info("password checks: %llu ran, %llu dropped (the client left before they started), "
		 "%llu refused (queue full), %llu refused (client limit)",
		 (unsigned long long)st.ran, (unsigned long long)st.dropped,
		 (unsigned long long)st.refused_full, (unsigned long long)st.refused_client);
}

static bool gateway_listen(struct gateway *gw);

/* Opens the listeners once (after the first view, or when waiting for it
 * took too long); a failure ends the loop with status 1. */
static void gateway_listen_now(struct gateway *gw)
{
	if (!gw->first_view || gw->stopping)
		return;
	event_free(gw->first_view);
	gw->first_view = NULL;
	if (!gateway_listen(gw)) {
		gw->exit_status = 1;
		event_base_loopexit(gw->base, NULL);
	}
}

static void gateway_first_view_cb(evutil_socket_t fd, short what, void *arg)
{
	struct gateway *gw = arg;
	(void)fd;
	(void)what;
	log_warn("no answer from tailscaled at %s within %d ms: listening anyway; destinations "
		 "of the tailnet are denied until it answers", gw->cfg->tailscaled_socket,
		 GATEWAY_FIRST_VIEW_MS);
	gateway_listen_now(gw);
}

/* ---------- the tailnet ---------- */

struct gateway_diff {
	struct audit_carried *v[2];	/* [0] removed, [1] added */
	size_t n[2];
	char (*text)[CIDR_PREFIX_STRLEN];
	size_t n_text;
};

static void gateway_diff_cb(void *arg, bool added, const struct tailnet_view *v,
			    const struct tailnet_entry *e)
{
	struct gateway_diff *g = arg;
	const struct tailnet_peer *p = &v->peers[e->peer];
	char *t = g->text[g->n_text++];
	struct audit_carried *c = &g->v[added][g->n[added]++];
	c->prefix = cidr_prefix_format(&e->prefix, t, CIDR_PREFIX_STRLEN);
	c->peer = p->name;
	c->peer_id = p->id;
	c->kind = tailnet_carry_str(e->kind);
}

/* Says which of this node's own routes (TAILSCALE_ADVERTISE_ROUTES, the
 * file's routes) no peer carries: tailscaled dials those on the host. */
static void gateway_warn_own_routes(const struct gateway *gw, const struct tailnet_view *v)
{
	const struct config *c = gw->cfg;
	for (size_t i = 0; i < c->n_static_routes; i++) {
		const struct tailnet_entry *e = tailnet_view_lookup(v, &c->static_routes[i].addr);
		if (e && e->prefix.bits <= c->static_routes[i].bits)
			continue;
		char pf[CIDR_PREFIX_STRLEN];
		log_warn("route %s (TAILSCALE_ADVERTISE_ROUTES or routes) is not carried by any "
			 "peer: tailscaled would dial it through the host network, so it is not "
			 "allowed; advertise it from a subnet router the tailnet can reach and "
			 "accept routes here, or allow it explicitly with --allow",
			 cidr_prefix_format(&c->static_routes[i], pf, sizeof pf));
	}
}

static void gateway_tailnet_cb(void *arg, const struct tailnet_view *old,
			       const struct tailnet_view *next, const char *error)
{
	struct gateway *gw = arg;
	if (error) {
		log_warn("tailnet: %s; the previous view stays in force", error);
		return;
	}
	conn_env_set_view(&gw->env, tailnet_watch_view(gw->tailnet));	/* next */
	/* Who a tailnet address is may have changed with the netmap. */
	inbound_tailnet_changed(gw->inbound);
	size_t cap = (old->state == TAILNET_RUNNING ? old->n_entries : 0) +
		     (next->state == TAILNET_RUNNING ? next->n_entries : 0) + 1;
	struct gateway_diff g = {
		.v = { calloc(cap, sizeof(struct audit_carried)),
		       calloc(cap, sizeof(struct audit_carried)) },
		.text = calloc(cap, CIDR_PREFIX_STRLEN),
	};
	if (g.v[0] && g.v[1] && g.text)
		tailnet_view_diff(old, next, gateway_diff_cb, &g);
	bool state_changed = old->state != next->state;
	if (state_changed || g.n[0] || g.n[1]) {
		gw->metrics.tailnet_changes++;
		gw->metrics.tailnet_changed_ms = gateway_wall_ms();
		const char *self = next->self_name;
		struct audit_tailnet rec = {
			.state = tailnet_state_str(next->state), .reason = next->reason,
			.self = self, .peers = next->n_peers,
			.carried = next->state == TAILNET_RUNNING ? next->n_entries : 0,
			.added = g.v[1], .n_added = g.n[1], .removed = g.v[0], .n_removed = g.n[0],
		};
		audit_tailnet(gw->audit, &rec);
		if (next->state == TAILNET_RUNNING)
			log_info("tailnet: running as %s, %zu peers, %zu prefixes carried (%zu added, "
				 "%zu removed)", self ? self : "?", next->n_peers, next->n_entries,
				 g.n[1], g.n[0]);
		else
			log_warn("tailnet %s: %s; destinations of the tailnet are denied until "
				 "tailscaled answers (static rules still apply)",
				 next->state == TAILNET_STOPPED ? "unavailable" : "state unknown",
				 next->reason ? next->reason : "");
		if (next->state == TAILNET_RUNNING)
			gateway_warn_own_routes(gw, next);
		/* Not knowing (UNKNOWN) is no reason to cut anything; a known
		 * change that carries less is. */
		if (gw->cfg->close_revoked && next->state != TAILNET_UNKNOWN && g.n[0]) {
			size_t n = conn_set_recheck_relays(gw->conns, next);
			if (n)
				log_info("tailnet: closed %zu relay(s) to what is no longer carried", n);
		}
		if (next->state != TAILNET_UNKNOWN && (g.n[0] || state_changed)) {
			size_t n = conn_set_recheck_udp(gw->conns, next);
			if (n)
				log_info("tailnet: %zu UDP destination(s) no longer carried; their "
					 "datagrams are dropped", n);
		}
	}
	free(g.v[0]);
	free(g.v[1]);
	free(g.text);
	gateway_listen_now(gw);
}

/* Starts (or restarts, when the socket or options changed) the watcher. */
static bool gateway_tailnet_follow(struct gateway *gw)
{
	const struct config *c = gw->cfg;
	struct tailnet_options opt = { .allow_exit_node = c->allow_default_route };
	if (gw->tailnet && c->tailscaled_socket &&
	    strcmp(tailnet_watch_socket(gw->tailnet), c->tailscaled_socket) == 0 &&
	    gw->tailnet_opt.allow_exit_node == opt.allow_exit_node)
		return true;
	conn_env_set_view(&gw->env, NULL);
	tailnet_watch_free(gw->tailnet);
	gw->tailnet = NULL;
	gw->tailnet_opt = opt;
	if (!c->tailscaled_socket)
		return true;
	gw->tailnet = tailnet_watch_start(gw->base, c->tailscaled_socket, &opt,
					  gateway_tailnet_cb, gw);
	if (!gw->tailnet) {
		log_error("cannot start watching tailscaled: out of memory");
		return false;
	}
	conn_env_set_view(&gw->env, tailnet_watch_view(gw->tailnet));
	return true;
}

/* ---------- signals ---------- */

static void gateway_grace_over_cb(evutil_socket_t fd, short what, void *arg)
{
	struct gateway *gw = arg;
	(void)fd;
	(void)what;
	if (gateway_open(gw))
		log_info("shutdown grace over: closing %zu open connections", gateway_open(gw));
	conn_set_abort(gw->conns);
	inbound_abort_all(gw->inbound);
	event_base_loopexit(gw->base, NULL);
}

static void gateway_stop(struct gateway *gw, const char *why)
{
	if (gw->stopping)
		return;
	gw->stopping = true;
	log_info("%s: stopping; %zu connections open", why, gateway_open(gw));
	for (size_t i = 0; i < gw->n_listeners; i++)
		evconnlistener_disable(gw->listeners[i].lev);

	conn_set_stop_handshakes(gw->conns);
	inbound_stop(gw->inbound);
	if (gateway_open(gw) == 0) {
		event_base_loopexit(gw->base, NULL);
		return;
	}
	unsigned ms = gw->cfg->shutdown_grace_ms;
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(gw->grace, &tv);
}

static void gateway_reload(struct gateway *gw)
{
	char err[512];
	struct config *next = config_build(gw->args, err, sizeof err);
	if (!next) {
		log_error("reload rejected, the running policy stays in force: %s", err);
		audit_event(gw->audit, "reload", err);
		gw->metrics.reloads_failed++;
		return;
	}
	gw->metrics.reloads_ok++;
	gw->metrics.config_loaded_ms = gateway_wall_ms();
	metrics_bind_policy(&gw->metrics, next->policy);
	/* Listeners, DNS and audit sinks are bound at start; a reload changes
	 * the policy, the upstream and the limits. A reload that would change
	 * a bound setting is refused whole: half-applied, it could leave a
	 * public listener serving without the users that made it allowed. */
	char why[400];
	if (!config_same_bound(gw->cfg, next, why, sizeof why)) {
		snprintf(err, sizeof err, "%s: that needs a restart; nothing was changed", why);
		config_unref(next);
		log_error("reload rejected, the running configuration stays in force: %s", err);
		audit_event(gw->audit, "reload", err);
		return;
	}
	config_unref(gw->cfg);
	gw->cfg = next;
	conn_env_set_config(&gw->env, next);
	gateway_tailnet_follow(gw);
	log_info("reloaded the configuration%s%s", next->source ? " from " : "",
		 next->source ? next->source : "");
	audit_event(gw->audit, "reload", next->source ? next->source : "flags and environment");
}

static void gateway_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct gateway *gw = arg;
	(void)what;
	switch (sig) {
	case SIGTERM:
		gateway_stop(gw, "SIGTERM");
		break;
	case SIGINT:
		gateway_stop(gw, "SIGINT");
		break;
	case SIGHUP:
		gateway_reload(gw);
		audit_reopen(gw->audit);
		break;
	case SIGUSR1:
		log_info("SIGUSR1: reopening the audit files");
		audit_reopen(gw->audit);
		break;
	}
}

/* ---------- the admin endpoint's questions ---------- */

static bool gateway_serving(void *arg, char *why, size_t len)
{
	const struct gateway *gw = arg;
	if (gw->stopping) {
		snprintf(why, len, "shutting down");
		return false;
	}
	if (!gw->listening) {
		snprintf(why, len, "listeners not bound yet%s",
			 gw->first_view ? " (waiting for tailscaled's first answer)" : "");
		return false;
	}
	return true;
}

static void gateway_gauges(void *arg, struct metrics_snapshot *s)
{
	const struct gateway *gw = arg;
	s->open_connections = conn_set_count(gw->conns);
	conn_set_stats(gw->conns, &s->open_relays, &s->relay_bytes_up, &s->relay_bytes_down);
	s->listeners_bound = gw->listening;
}

/* ---------- start-up ---------- */

/* Once at start: when tailscaled's proxy does not answer, every dial will
 * fail; say so now rather than at the first client's 502. */
static void gateway_upstream_answer(void *arg, bool up, const char *why)
{
	struct gateway *gw = arg;
	gw->start_probe = NULL;
	const struct config_upstream *u = &gw->cfg->upstream;
	if (up)
		log_debug("upstream %s answers", u->text);
	else
		log_warn("upstream %s does not answer (%s): connections will fail until it does; "
			 "is tailscaled running with --%s=%s?", u->text, why,
			 u->kind == CONFIG_UPSTREAM_SOCKS5 ? "socks5-server"
							   : "outbound-http-proxy-listen",
			 strchr(u->text, '/') + 2);
}

static void gateway_probe_upstream(struct gateway *gw)
{
	if (gw->cfg->upstream.kind == CONFIG_UPSTREAM_DIRECT || gw->start_probe)
		return;
	gw->start_probe = upstream_probe_start(gw->base, &gw->cfg->upstream,
					       GATEWAY_PROBE_TIMEOUT_S, gateway_upstream_answer, gw);
}

/* Binds one listener into the next slot: a proxy listener, or with e the
 * inbound entry at index entry. false (logged) when it cannot. */
static bool gateway_bind(struct gateway *gw, const char *text, const struct sockaddr_storage *ss,
			 socklen_t len, int backlog, const struct inbound_entry *e, size_t entry)
{
	struct gateway_listener *l = &gw->listeners[gw->n_listeners];
	l->gw = gw;
	l->inbound = e != NULL;
	l->entry = entry;
	snprintf(l->text, sizeof l->text, "%s", text);
	l->lev = evconnlistener_new_bind(
		gw->base, gateway_accept_cb, l,
		LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, backlog,
		(const struct sockaddr *)ss, (int)len);
	if (!l->lev) {
		if (e)
			log_error("cannot listen on %s (inbound %s): %s", text, e->name,
				  strerror(errno));
		else
			log_error("cannot listen on %s: %s", l->text, strerror(errno));
		return false;
	}
	evconnlistener_set_error_cb(l->lev, gateway_accept_error_cb);
	gw->n_listeners++;
	return true;
}

/* Binds the proxy listeners, then the inbound ones (tailscale serve's). */
static bool gateway_listen(struct gateway *gw)
{
	const struct config *cfg = gw->cfg;
	const struct inbound_config *ic = cfg->inbound;
	size_t n_inbound = ic ? ic->n : 0;
	gw->listeners = calloc(cfg->n_listeners + n_inbound, sizeof *gw->listeners);
	if (!gw->listeners)
		return false;
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct config_listener *cl = &cfg->listeners[i];
		if (!gateway_bind(gw, cl->text, &cl->ss, cl->len, 1024, NULL, 0))
			return false;
		log_info("listening on %s (SOCKS5, SOCKS4/4a, HTTP proxy)", cl->text);
	}
	for (size_t i = 0; i < n_inbound; i++) {
		const struct inbound_entry *e = &ic->v[i];
		if (!gateway_bind(gw, e->listen_text, &e->listen, e->listen_len, 128, e, i))
			return false;
		inbound_announce(e);
	}
	gw->listening = true;
	gateway_probe_upstream(gw);
	return true;
}

/* Each connection holds two sockets, and two pipes more once it splices:
 * raise the soft descriptor limit to the hard one, and say so when even
 * that cannot hold max_connections. */
static void gateway_raise_nofile(const struct config *cfg)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	rlim_t want = (rlim_t)cfg->max_connections * 2 + 64;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want)
		log_warn("open file limit %llu is below what limits.max_connections=%zu needs "
			 "(%llu); raise it (ulimit -n, LimitNOFILE=) or lower the limit",
			 (unsigned long long)rl.rlim_cur, cfg->max_connections,
			 (unsigned long long)want);
}

static void gateway_free(struct gateway *gw)
{
	upstream_probe_cancel(gw->start_probe);
	/* First: closing its connections touches the listeners, timers, the
	 * worker and the trail. */
	gw->stopping = true;
	conn_set_free(gw->conns);
	inbound_free(gw->inbound);
	admin_free(gw->admin);
	for (size_t i = 0; i < gw->n_listeners; i++)
		evconnlistener_free(gw->listeners[i].lev);
	free(gw->listeners);
	for (size_t i = 0; i < sizeof gw->signals / sizeof gw->signals[0]; i++)
		if (gw->signals[i])
			event_free(gw->signals[i]);
	if (gw->grace)
		event_free(gw->grace);
	if (gw->first_view)
		event_free(gw->first_view);
	if (gw->accept_resume)
		event_free(gw->accept_resume);
	worker_free(gw->worker);
	tailnet_watch_free(gw->tailnet);
	resolve_ctx_free(gw->resolver);
	conn_env_clear(&gw->env);
	if (gw->audit)
		audit_free(gw->audit);
	if (gw->cfg)
		config_unref(gw->cfg);
	if (gw->base)
		event_base_free(gw->base);
	config_args_free(gw->args);
	metrics_free(&gw->metrics);
}

int gateway_main(int argc, char **argv)
{
	struct gateway gw;
	char err[512];
	int rc = 1;

	memset(&gw, 0, sizeof gw);
	atomic_init(&gw.last_conn_id, 0);
	metrics_init(&gw.metrics);

	int parsed = config_args_parse(argc, argv, &gw.args);
	if (parsed == 1)
		return 0;
	if (parsed != 0)
		return 2;
	gw.cfg = config_build(gw.args, err, sizeof err);
	if (!gw.cfg || !config_check_files(gw.cfg, err, sizeof err)) {
		fprintf(stderr, "tailfence: %s\n", err);
		config_unref(gw.cfg);
		config_args_free(gw.args);
		return 2;
	}
	log_set_level((enum log_level)gw.cfg->log_level);
	gw.metrics.config_loaded_ms = gateway_wall_ms();
	metrics_bind_policy(&gw.metrics, gw.cfg->policy);
	/* A peer that vanishes must be an error on write, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	gateway_raise_nofile(gw.cfg);
	evthread_use_pthreads();

	gw.base = event_base_new();
	if (!gw.base) {
		log_error("cannot create the event loop");
		goto out;
	}
	gw.resolver = resolve_ctx_new(gw.base, gw.cfg, err, sizeof err);
	if (!gw.resolver) {
		log_error("%s", err);
		goto out;
	}
	gw.audit = audit_open(&gw.cfg->audit, err, sizeof err);
	if (!gw.audit) {
		log_error("audit: %s", err);
		goto out;
	}
	if (!audit_attach(gw.audit, gw.base)) {
		log_error("audit: cannot create the acknowledgement event");
		goto out;
	}
	struct worker_limits wl = {
		.threads = worker_default_threads(),
		.max_jobs = CONN_LOGIN_QUEUE,
		.max_per_client = CONN_LOGIN_PER_CLIENT,
	};
	gw.worker = worker_new(gw.base, &wl);
	if (!gw.worker) {
		log_error("cannot start the %u password check threads", wl.threads);
		goto out;
	}
	log_debug("password checks: %u threads, at most %u waiting or running, %u per client",
		  wl.threads, CONN_LOGIN_QUEUE, CONN_LOGIN_PER_CLIENT);
	auth_throttle_init(&gw.throttle);
	gw.env = (struct conn_env){
		.base = gw.base, .resolver = gw.resolver, .metrics = &gw.metrics,
		.throttle = &gw.throttle, .audit = gw.audit, .worker = gw.worker,
		.last_id = &gw.last_conn_id, .closed = gateway_conn_gone, .owner = &gw,
	};
	conn_env_set_config(&gw.env, gw.cfg);
	gw.conns = conn_set_new(&gw.env);
	gw.inbound = inbound_new(&gw.env);
	if (!gw.conns || !gw.inbound) {
		log_error("out of memory");
		goto out;
	}
	gw.accept_resume = evtimer_new(gw.base, gateway_accept_resume_cb, &gw);
	gw.grace = evtimer_new(gw.base, gateway_grace_over_cb, &gw);
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1 };
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
		gw.signals[i] = evsignal_new(gw.base, sigs[i], gateway_signal_cb, &gw);
		if (!gw.signals[i] || evsignal_add(gw.signals[i], NULL) != 0) {
			log_error("cannot install signal handlers");
			goto out;
		}
	}
	if (!gw.accept_resume || !gw.grace)
		goto out;
	struct admin_owner ao = { gateway_serving, gateway_gauges, &gw };
	if (gw.cfg->has_admin && !(gw.admin = admin_start(&gw.env, &ao, err, sizeof err))) {
		log_error("%s", err);
		goto out;
	}

	log_info("tailfence %s: upstream %s", TAILFENCE_VERSION, gw.cfg->upstream.text);
	const struct policy *p = gw.cfg->policy;
	if (gw.cfg->tailscaled_socket)
		log_info("following the tailnet through tailscaled at %s", gw.cfg->tailscaled_socket);
	else if (policy_route_count(p) == 0 && policy_rule_count(p) == 1 &&
		 strncmp(policy_rule_text(p, 0), "default:", 8) == 0)
		log_warn("no tailscaled socket, no routes (TAILSCALE_ADVERTISE_ROUTES is empty), no "
			 "rules and no --allow: every destination will be denied");
	/* Nothing is accepted before the start record has reached every sink,
	 * or the trail is known to be unhealthy (and with on_failure=deny the
	 * first connections are refused). */
	audit_start(gw.audit, gw.cfg->upstream.text, GATEWAY_AUDIT_START_MS);
	if (gw.cfg->tailscaled_socket) {
		/* Listen once tailscaled has answered (gateway_tailnet_cb). */
		struct timeval tv = { GATEWAY_FIRST_VIEW_MS / 1000, 0 };
		gw.first_view = evtimer_new(gw.base, gateway_first_view_cb, &gw);
		if (!gw.first_view || evtimer_add(gw.first_view, &tv) != 0 ||
		    !gateway_tailnet_follow(&gw))
			goto out;
	} else if (!gateway_listen(&gw)) {
		goto out;
	}
	event_base_dispatch(gw.base);
	audit_event(gw.audit, "shutdown", NULL);
	gateway_log_logins(&gw);
	log_info("stopped");
	rc = gw.exit_status;
out:
	gateway_free(&gw);
	return rc;
}
