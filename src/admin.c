/*
 * admin: /metrics, /healthz and /readyz over evhttp, on the gateway's loop
 * (see include/tailfence/admin.h), and the upstream probe that readiness
 * uses: every ADMIN_PROBE_MS a TCP connection to the configured upstream
 * proxy; for socks5 the greeting must be answered with the no-auth method,
 * for http the connection itself is the answer. Nothing else is sent, so a
 * probe never dials a destination.
 */
#include "tailfence/admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "tailfence/audit.h"
#include "tailfence/config.h"
#include "tailfence/conn_env.h"
#include "tailfence/log.h"
#include "tailfence/metrics.h"
#include "tailfence/socks.h"
#include "tailfence/tailnet.h"
#include "tailfence/upstream_probe.h"
#include "tailfence/worker.h"

/* How often the upstream is probed, and how long one probe may take. */
#define ADMIN_PROBE_MS 2000
#define ADMIN_PROBE_TIMEOUT_S 3

struct admin {
	const struct conn_env *env;	/* the loop, config, trail, pool, view, counters */
	struct admin_owner owner;
	struct evhttp *http;
	struct event *probe_timer;
	struct upstream_probe *probe;	/* in flight, or NULL */
	bool probed;			/* a probe has finished */
	bool up;			/* the last one succeeded */
	char probe_why[200];
};

/* ---------- the upstream probe ---------- */

static void admin_probe_done(void *arg, bool up, const char *why)
{
	struct admin *a = arg;
	a->probe = NULL;
	if (a->probed && up != a->up) {
		if (up)
			log_info("admin: upstream %s reachable again", a->env->cfg->upstream.text);
		else
			log_warn("admin: upstream %s: %s; not ready", a->env->cfg->upstream.text, why);
	}
	a->probed = true;
	a->up = up;
	snprintf(a->probe_why, sizeof a->probe_why, "%s", why ? why : "");
}

static void admin_probe_cb(evutil_socket_t fd, short what, void *arg)
{
	struct admin *a = arg;
	(void)fd;
	(void)what;
	struct timeval every = { ADMIN_PROBE_MS / 1000, (ADMIN_PROBE_MS % 1000) * 1000 };
	evtimer_add(a->probe_timer, &every);
	const struct config_upstream *up = &a->env->cfg->upstream;
	if (up->kind == CONFIG_UPSTREAM_DIRECT) {
		a->probed = a->up = true;
		return;
	}
	if (a->probe)
		return;	/* the last one is still waiting for its timeout */
	a->probe = upstream_probe_start(a->env->base, up, ADMIN_PROBE_TIMEOUT_S, admin_probe_done, a);
	if (!a->probe)
		admin_probe_done(a, false, "out of memory");
}

/* ---------- readiness ---------- */

bool admin_ready(struct admin *a, char *why, size_t len)
{
	const struct conn_env *env = a->env;
	const struct config *c = env->cfg;
	if (!a->owner.serving(a->owner.arg, why, len))
		return false;
	if (!audit_healthy(env->audit)) {
		snprintf(why, len, "audit trail unhealthy: a sink cannot be written (see the "
			 "operator log)");
		return false;
	}
	if (env->view) {
		const struct tailnet_view *v = env->view;
		if (v->state != TAILNET_RUNNING) {
			snprintf(why, len, "tailscaled is not running: %s",
				 v->reason ? v->reason : tailnet_state_str(v->state));
			return false;
		}
	}
	if (c->upstream.kind != CONFIG_UPSTREAM_DIRECT) {
		if (!a->probed) {
			snprintf(why, len, "upstream %s not probed yet", c->upstream.text);
			return false;
		}
		if (!a->up) {
			snprintf(why, len, "upstream %s unreachable: %s", c->upstream.text,
				 a->probe_why);
			return false;
		}
	}
	snprintf(why, len, "ready");
	return true;
}

/* ---------- requests ---------- */

static void admin_reply(struct evhttp_request *req, int code, const char *reason,
			const char *ctype, struct evbuffer *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", ctype);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_send_reply(req, code, reason, body);
}

static void admin_text(struct evhttp_request *req, int code, const char *reason,
		       const char *line)
{
	struct evbuffer *b = evbuffer_new();
	if (!b) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evbuffer_add_printf(b, "%s\n", line);
	admin_reply(req, code, reason, "text/plain; charset=utf-8", b);
	evbuffer_free(b);
}

static void admin_metrics(struct admin *a, struct evhttp_request *req)
{
	const struct conn_env *env = a->env;
	struct metrics_snapshot s;
	memset(&s, 0, sizeof s);
	struct metrics m;
	metrics_init(&m);
	a->owner.collect(a->owner.arg, &m, &s);
	s.max_connections = env->cfg->max_connections;
	struct audit_stats as;
	audit_get_stats(env->audit, &as);
	s.audit_queue_records = as.queue_records;
	s.audit_queue_bytes = as.queue_bytes;
	s.audit_records_written = as.written;
	s.audit_records_dropped = as.dropped;
	s.audit_sink_errors = as.sink_errors;
	s.audit_healthy = as.healthy;
	struct worker_stats ws;
	worker_stats(env->worker, &ws);
	s.worker_queue = ws.pending;
	if (env->view) {
		const struct tailnet_view *v = env->view;
		s.has_tailnet = true;
		s.tailnet_state = (int)v->state;
		s.backend_state = v->backend_state;
		s.tailnet_peers = v->n_peers;
		s.tailnet_carried = v->state == TAILNET_RUNNING ? v->n_entries : 0;
	}
	char why[256];
	s.ready = admin_ready(a, why, sizeof why);
	s.upstream_probed = env->cfg->upstream.kind != CONFIG_UPSTREAM_DIRECT;
	s.upstream_up = a->probed && a->up;

	struct timeval now;
	gettimeofday(&now, NULL);
	struct evbuffer *b = evbuffer_new();
	if (!b) {
		metrics_free(&m);
		evhttp_send_error(req, 500, NULL);
		return;
	}
	metrics_format(&m, &s, (int64_t)now.tv_sec * 1000 + now.tv_usec / 1000, b);
	metrics_free(&m);
	admin_reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b);
	evbuffer_free(b);
}

static void admin_request_cb(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	const char *uri = evhttp_request_get_uri(req);
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
		admin_text(req, 405, "Method Not Allowed",
			   "method not allowed: this endpoint answers GET and HEAD only (it is "
			   "not a proxy)");
		return;
	}
	if (!uri || uri[0] != '/') {
		/* absolute-form: someone took this for the proxy */
		admin_text(req, 400, "Bad Request", "not a proxy: ask for /metrics, /healthz or "
			   "/readyz");
		return;
	}
	size_t plen = strcspn(uri, "?#");
	if (plen == 8 && strncmp(uri, "/metrics", 8) == 0) {
		admin_metrics(a, req);
	} else if (plen == 8 && strncmp(uri, "/healthz", 8) == 0) {
		admin_text(req, 200, "OK", "ok");
	} else if (plen == 7 && strncmp(uri, "/readyz", 7) == 0) {
		char why[300];
		if (admin_ready(a, why, sizeof why))
			admin_text(req, 200, "OK", why);
		else
			admin_text(req, 503, "Service Unavailable", why);
	} else {
		admin_text(req, 404, "Not Found", "not found: /metrics, /healthz or /readyz");
	}
}

/* ---------- start, stop ---------- */

struct admin *admin_start(const struct conn_env *env, const struct admin_owner *owner,
			  char *err, size_t errlen)
{
	const struct config_listener *l = &env->cfg->admin;
	struct admin *a = calloc(1, sizeof *a);
	if (!a) {
		snprintf(err, errlen, "admin: out of memory");
		return NULL;
	}
	a->env = env;
	a->owner = *owner;
	a->http = evhttp_new(env->base);
	a->probe_timer = evtimer_new(env->base, admin_probe_cb, a);
	if (!a->http || !a->probe_timer) {
		snprintf(err, errlen, "admin: out of memory");
		admin_free(a);
		return NULL;
	}
	/* Every method reaches the callback, which answers 405 to all but
	 * GET and HEAD (evhttp itself would say 501). */
	evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
						    EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
						    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
						    EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_timeout(a->http, 10);
	evhttp_set_max_headers_size(a->http, 8192);
	evhttp_set_max_body_size(a->http, 4096);
	evhttp_set_gencb(a->http, admin_request_cb, a);
	struct evconnlistener *lev = evconnlistener_new_bind(
		env->base, NULL, NULL,
		LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 128,
		(const struct sockaddr *)&l->ss, (int)l->len);
	if (!lev) {
		snprintf(err, errlen, "admin: cannot listen on %s: %s", l->text, strerror(errno));
		admin_free(a);
		return NULL;
	}
	if (!evhttp_bind_listener(a->http, lev)) {
		evconnlistener_free(lev);
		snprintf(err, errlen, "admin: cannot serve HTTP on %s", l->text);
		admin_free(a);
		return NULL;
	}
	struct timeval now = { 0, 0 };
	evtimer_add(a->probe_timer, &now);
	log_info("admin endpoint on http://%s (/metrics, /healthz, /readyz)", l->text);
	return a;
}

void admin_free(struct admin *a)
{
	if (!a)
		return;
	upstream_probe_cancel(a->probe);
	if (a->probe_timer)
		event_free(a->probe_timer);
	if (a->http)
		evhttp_free(a->http);	/* frees the bound listener too */
	free(a);
}
