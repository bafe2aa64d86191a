/*
 * gateway: the daemon's top level (`tailfence run`, gateway_main in cli.h).
 *
 * Owns the event loops (gateway_loop.c: one per --threads, each with its
 * listeners, resolver, metrics and connections), the current config, the
 * tailnet watcher, the audit trail, the worker pool and the login
 * throttle, and hands each loop's connections the part of it they need
 * (struct conn_env); conn and inbound own the connections themselves and
 * tell their loop when one ends.
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
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>

#include "gateway_internal.h"

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

/* How long the look at the upstream at start may take. */
#define GATEWAY_PROBE_TIMEOUT_S 3

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
	if (!gw->first_view || atomic_load(&gw->stopping))
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

/* ---------- what the main thread runs on every loop ---------- */

/* The main thread's own metrics: reloads and tailnet changes. */
static struct metrics *gateway_metrics(struct gateway *gw)
{
	return &gw->loops[0].metrics;
}

static void loop_take_config(struct gateway_loop *l, void *arg)
{
	struct config *cfg = arg;
	conn_env_set_config(&l->env, cfg);
	metrics_bind_policy(&l->metrics, cfg->policy);
}

static void loop_take_view(struct gateway_loop *l, void *arg)
{
	conn_env_set_view(&l->env, arg);
}

/* A new tailnet view, decided again on every loop: the counts add up. */
struct gateway_recheck {
	const struct tailnet_view *view;
	bool relays, udp;
	size_t closed, revoked;
};

static void loop_recheck(struct gateway_loop *l, void *arg)
{
	struct gateway_recheck *r = arg;
	if (r->relays)
		r->closed += conn_set_recheck_relays(l->conns, r->view);
	if (r->udp)
		r->revoked += conn_set_recheck_udp(l->conns, r->view);
}

static void loop_stop(struct gateway_loop *l, void *arg)
{
	(void)arg;
	for (size_t i = 0; i < l->n_listeners; i++)
		evconnlistener_disable(l->listeners[i].lev);
	conn_set_stop_handshakes(l->conns);
	if (l->index == 0)
		inbound_stop(l->gw->inbound);
	gateway_loop_drop_held(l);
}

static void loop_abort(struct gateway_loop *l, void *arg)
{
	(void)arg;
	conn_set_abort(l->conns);
	if (l->index == 0)
		inbound_abort_all(l->gw->inbound);
}

struct gateway_collect {
	struct metrics *m;
	struct metrics_snapshot *s;
};

static void loop_collect(struct gateway_loop *l, void *arg)
{
	struct gateway_collect *c = arg;
	metrics_merge(c->m, &l->metrics);
	size_t relays;
	uint64_t up, down;
	conn_set_stats(l->conns, &relays, &up, &down);
	if (l->index < METRICS_MAX_LOOPS) {
		c->s->loop_accepted[l->index] = l->metrics.accepted;
		c->s->n_loops = l->index + 1;
	}
	c->s->open_connections += conn_set_count(l->conns);
	c->s->open_relays += relays;
	c->s->relay_bytes_up += up;
	c->s->relay_bytes_down += down;
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
	gateway_loops_call(gw, loop_take_view, tailnet_watch_view(gw->tailnet));	/* next */
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
		gateway_metrics(gw)->tailnet_changes++;
		gateway_metrics(gw)->tailnet_changed_ms = gateway_wall_ms();
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
		struct gateway_recheck r = {
			.view = next,
			.relays = gw->cfg->close_revoked && next->state != TAILNET_UNKNOWN && g.n[0],
			.udp = next->state != TAILNET_UNKNOWN && (g.n[0] || state_changed),
		};
		if (r.relays || r.udp)
			gateway_loops_call(gw, loop_recheck, &r);
		if (r.closed)
			log_info("tailnet: closed %zu relay(s) to what is no longer carried", r.closed);
		if (r.revoked)
			log_info("tailnet: %zu UDP destination(s) no longer carried; their "
				 "datagrams are dropped", r.revoked);
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
	gateway_loops_call(gw, loop_take_view, NULL);
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
	gateway_loops_call(gw, loop_take_view, tailnet_watch_view(gw->tailnet));
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
	gateway_loops_call(gw, loop_abort, NULL);
	event_base_loopexit(gw->base, NULL);
}

static void gateway_stop(struct gateway *gw, const char *why)
{
	if (atomic_load(&gw->stopping))
		return;
	atomic_store(&gw->stopping, true);
	log_info("%s: stopping; %zu connections open", why, gateway_open(gw));
	gateway_loops_call(gw, loop_stop, NULL);
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
		gateway_metrics(gw)->reloads_failed++;
		return;
	}
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
		gateway_metrics(gw)->reloads_failed++;
		return;
	}
	config_unref(gw->cfg);
	gw->cfg = next;
	gateway_loops_call(gw, loop_take_config, next);
	gateway_metrics(gw)->reloads_ok++;
	gateway_metrics(gw)->config_loaded_ms = gateway_wall_ms();
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
	if (atomic_load(&gw->stopping)) {
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

static void gateway_collect(void *arg, struct metrics *m, struct metrics_snapshot *s)
{
	struct gateway *gw = arg;
	struct gateway_collect c = { m, s };
	gateway_loops_call(gw, loop_collect, &c);
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

/* One listener to bind on a loop (gateway_loop_bind's arguments). */
struct gateway_bind {
	const char *text;
	const struct sockaddr *sa;
	socklen_t len;
	int backlog;
	bool reuseport;
	const struct inbound_entry *e;
	size_t entry;
	bool ok;
	int err;
};

static void loop_bind(struct gateway_loop *l, void *arg)
{
	struct gateway_bind *b = arg;
	b->ok = gateway_loop_bind(l, b->text, b->sa, b->len, b->backlog, b->reuseport, b->e,
				  b->entry);
	b->err = errno;
}

/* With several loops every loop binds its own socket of each proxy
 * address with SO_REUSEPORT, which would as quietly share the port with
 * any other process of this user that did the same: first make sure
 * nobody listens there. Also picks the port when the address says 0, so
 * that every loop binds the same one. false with errno set. */
static bool gateway_port_free(struct sockaddr_storage *ss, socklen_t *len)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	bool ok = bind(fd, (const struct sockaddr *)ss, *len) == 0 &&
		  getsockname(fd, (struct sockaddr *)ss, len) == 0;
	int err = errno;
	close(fd);
	errno = err;
	return ok;
}

/* Binds a proxy listen address on every loop. false (logged) when it
 * cannot. */
static bool gateway_bind_proxy(struct gateway *gw, const struct config_listener *cl)
{
	struct sockaddr_storage ss = cl->ss;
	socklen_t len = cl->len;
	bool many = gw->n_loops > 1;
	if (many && !gateway_port_free(&ss, &len)) {
		log_error("cannot listen on %s: %s", cl->text, strerror(errno));
		return false;
	}
	struct gateway_bind b = {
		.text = cl->text, .sa = (const struct sockaddr *)&ss, .len = len,
		.backlog = 1024, .reuseport = many,
	};
	for (unsigned i = 0; i < gw->n_loops; i++) {
		gateway_loop_call(&gw->loops[i], loop_bind, &b);
		if (!b.ok) {
			log_error("cannot listen on %s: %s", cl->text, strerror(b.err));
			return false;
		}
	}
	return true;
}

/* Binds the proxy listeners on every loop, then the inbound ones
 * (tailscale serve's) on loop 0. */
static bool gateway_listen(struct gateway *gw)
{
	const struct config *cfg = gw->cfg;
	const struct inbound_config *ic = cfg->inbound;
	size_t n_inbound = ic ? ic->n : 0;
	for (unsigned i = 0; i < gw->n_loops; i++) {
		struct gateway_loop *l = &gw->loops[i];
		l->cap_listeners = cfg->n_listeners + (i == 0 ? n_inbound : 0);
		l->listeners = calloc(l->cap_listeners ? l->cap_listeners : 1, sizeof *l->listeners);
		if (!l->listeners)
			return false;
	}
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct config_listener *cl = &cfg->listeners[i];
		if (!gateway_bind_proxy(gw, cl))
			return false;
		log_info("listening on %s (SOCKS5, SOCKS4/4a, HTTP proxy)", cl->text);
	}
	for (size_t i = 0; i < n_inbound; i++) {
		const struct inbound_entry *e = &ic->v[i];
		if (!gateway_loop_bind(&gw->loops[0], e->listen_text,
				       (const struct sockaddr *)&e->listen, e->listen_len, 128, false,
				       e, i)) {
			log_error("cannot listen on %s (inbound %s): %s", e->listen_text, e->name,
				  strerror(errno));
			return false;
		}
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
	 * worker and the trail. The loops' threads are gone by now. */
	atomic_store(&gw->stopping, true);
	for (unsigned i = 0; i < gw->n_loops; i++)
		gateway_loop_join(&gw->loops[i]);
	for (unsigned i = 0; i < gw->n_loops; i++)
		gateway_loop_free_conns(&gw->loops[i]);
	inbound_free(gw->inbound);
	admin_free(gw->admin);
	for (size_t i = 0; i < sizeof gw->signals / sizeof gw->signals[0]; i++)
		if (gw->signals[i])
			event_free(gw->signals[i]);
	if (gw->grace)
		event_free(gw->grace);
	if (gw->first_view)
		event_free(gw->first_view);
	worker_free(gw->worker);
	tailnet_watch_free(gw->tailnet);
	for (unsigned i = 0; i < gw->n_loops; i++)
		gateway_loop_free_rest(&gw->loops[i]);
	free(gw->loops);
	if (gw->audit)
		audit_free(gw->audit);
	if (gw->cfg)
		config_unref(gw->cfg);
	if (gw->base)
		event_base_free(gw->base);
	config_args_free(gw->args);
	auth_throttle_destroy(&gw->throttle);
}

/* The number of event loops: --threads, or one per CPU. */
static unsigned gateway_loop_count(const struct config *cfg)
{
	return cfg->threads ? cfg->threads : worker_cpus();
}

int gateway_main(int argc, char **argv)
{
	struct gateway gw;
	char err[512];
	int rc = 1;

	memset(&gw, 0, sizeof gw);
	atomic_init(&gw.last_conn_id, 0);
	atomic_init(&gw.stopping, false);
	atomic_init(&gw.open, 0);
	auth_throttle_init(&gw.throttle);

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
	/* A peer that vanishes must be an error on write, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	gateway_raise_nofile(gw.cfg);
	evthread_use_pthreads();

	gw.base = event_base_new();
	if (!gw.base) {
		log_error("cannot create the event loop");
		goto out;
	}
	gw.audit = audit_open(&gw.cfg->audit, err, sizeof err);
	if (!gw.audit) {
		log_error("audit: %s", err);
		goto out;
	}
	struct worker_limits wl = {
		.threads = worker_default_threads(),
		.max_jobs = CONN_LOGIN_QUEUE,
		.max_per_client = CONN_LOGIN_PER_CLIENT,
	};
	gw.worker = worker_new(&wl);
	if (!gw.worker) {
		log_error("cannot start the %u password check threads", wl.threads);
		goto out;
	}
	log_debug("password checks: %u threads, at most %u waiting or running, %u per client",
		  wl.threads, CONN_LOGIN_QUEUE, CONN_LOGIN_PER_CLIENT);
	unsigned n_loops = gateway_loop_count(gw.cfg);
	gw.loops = calloc(n_loops, sizeof *gw.loops);
	if (!gw.loops) {
		log_error("out of memory");
		goto out;
	}
	for (unsigned i = 0; i < n_loops; i++) {
		gw.n_loops = i + 1;
		if (!gateway_loop_start(&gw, i, err, sizeof err)) {
			log_error("%s", err);
			goto out;
		}
	}
	gateway_metrics(&gw)->config_loaded_ms = gateway_wall_ms();
	struct conn_env *env0 = &gw.loops[0].env;
	gw.inbound = inbound_new(env0);
	if (!gw.inbound) {
		log_error("out of memory");
		goto out;
	}
	gw.grace = evtimer_new(gw.base, gateway_grace_over_cb, &gw);
	if (!gw.grace)
		goto out;
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1 };
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
		gw.signals[i] = evsignal_new(gw.base, sigs[i], gateway_signal_cb, &gw);
		if (!gw.signals[i] || evsignal_add(gw.signals[i], NULL) != 0) {
			log_error("cannot install signal handlers");
			goto out;
		}
	}
	struct admin_owner ao = { gateway_serving, gateway_collect, &gw };
	if (gw.cfg->has_admin && !(gw.admin = admin_start(env0, &ao, err, sizeof err))) {
		log_error("%s", err);
		goto out;
	}

	log_info("tailfence %s: upstream %s", TAILFENCE_VERSION, gw.cfg->upstream.text);
	log_info("%u event loop%s (threads)", gw.n_loops, gw.n_loops == 1 ? "" : "s");
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
	/* Every loop's close records are queued before the shutdown record. */
	for (unsigned i = 0; i < gw.n_loops; i++)
		gateway_loop_join(&gw.loops[i]);
	audit_event(gw.audit, "shutdown", NULL);
	gateway_log_logins(&gw);
	log_info("stopped");
	rc = gw.exit_status;
out:
	gateway_free(&gw);
	return rc;
}
