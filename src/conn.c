/*
 * conn: the per-connection state machine.
 *
 *   SNIFF -> REQUEST               first byte picks the protocol, which
 *                                  reads its request
 *         -> [LOGIN]               password check on the worker pool
 *         -> [AUTH_DELAY]          a failed login waits before its answer
 *         -> RESOLVE               names only
 *         -> [AUDIT_WAIT]          the decision record reaches the sinks
 *         -> DIAL                  allowed addresses, in order
 *         -> RELAY                 bytes both ways
 *         -> FLUSH                 last reply on its way, then close
 *
 * Every path ends in conn_close(), which writes the close record, counts
 * and frees. The decision record is written once, when the verdict is made
 * and before anything is dialed.
 *
 * What differs between SOCKS5, SOCKS4/4a and HTTP (reading the request,
 * the answers, what a login does) is behind the connection's protocol
 * operations (src/conn_internal.h), defined in conn_socks.c and
 * conn_http.c: this file never asks which protocol it is. It also owns
 * the connection set of a loop (include/tailfence/conn.h).
 */
#include "conn_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/crypto.h>

#include "tailfence/audit.h"
#include "tailfence/auth.h"
#include "tailfence/config.h"
#include "tailfence/conn_env.h"
#include "tailfence/log.h"
#include "tailfence/metrics.h"
#include "tailfence/policy.h"
#include "tailfence/relay.h"
#include "tailfence/resolve.h"
#include "tailfence/tailnet.h"
#include "tailfence/target.h"
#include "tailfence/udp_assoc.h"
#include "tailfence/upstream.h"
#include "tailfence/worker.h"

/* A password check that missed the cache runs the KDF (tens of ms) on a
 * worker thread, with its own copy of the credentials (the password wiped
 * as soon as the KDF has it) and its own config reference. A connection
 * that closes cancels it: a check still waiting never runs. */
struct conn_login {
	struct conn *c;
	struct config *cfg;
	struct worker_job *job;
	struct auth_creds creds;
	bool ok;
};

/* The proxy connections of one loop. */
struct conn_set {
	const struct conn_env *env;
	TAILQ_HEAD(conn_list, conn) list;
	size_t n;
};

/* How long a final reply may take to reach a client that does not read. */
#define CONN_FLUSH_MS 5000

/* Before the first byte: no protocol, nothing to answer. */
static const struct conn_proto conn_proto_none = { .name = NULL, .metric = METRICS_PROTO_NONE };

static void conn_dial_next(struct conn *c);

/* ---------- helpers ---------- */

static uint64_t conn_elapsed_ms(const struct conn *c)
{
	struct timeval now, d;
	event_base_gettimeofday_cached(c->env->base, &now);
	evutil_timersub(&now, &c->started, &d);
	return (uint64_t)d.tv_sec * 1000 + (uint64_t)d.tv_usec / 1000;
}

static void conn_timer_set(struct conn *c, unsigned ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(c->timer, &tv);
}

static void conn_flush_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		conn_close(c, c->end, c->last_error[0] ? c->last_error : NULL);
}

static void conn_flush_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	struct conn *c = arg;
	conn_close(c, c->end, c->last_error[0] ? c->last_error : NULL);
}

void conn_flush_close(struct conn *c, const char *end)
{
	c->state = CONN_FLUSH;
	c->end = end;
	bufferevent_disable(c->client, EV_READ);
	bufferevent_setcb(c->client, NULL, conn_flush_write_cb, conn_flush_event_cb, c);
	bufferevent_setwatermark(c->client, EV_WRITE, 0, 0);
	bufferevent_enable(c->client, EV_WRITE);
	conn_timer_set(c, CONN_FLUSH_MS);
	if (evbuffer_get_length(bufferevent_get_output(c->client)) == 0)
		conn_close(c, end, c->last_error[0] ? c->last_error : NULL);
}

void conn_send(struct conn *c, const void *buf, size_t len)
{
	if (len)
		bufferevent_write(c->client, buf, len);
}

void conn_fail(struct conn *c, enum conn_failure f, const char *why)
{
	if (why != c->last_error)	/* a dial failure hands over last_error itself */
		snprintf(c->last_error, sizeof c->last_error, "%s", why ? why : "");
	if (c->proto->refuse)
		c->proto->refuse(c, f, c->last_error[0] ? c->last_error : NULL);
	conn_flush_close(c, f == CONN_FAIL_DENIED ? "denied"
			    : f == CONN_FAIL_AUTH ? "auth_failed" : "dial_failed");
}

/* ---------- audit ---------- */

/* Counts a decision record in the metrics. */
static void conn_count_decision(struct conn *c, const struct policy_decision *d, bool allow,
				bool written)
{
	static const struct policy_decision fail_closed = { .rule = -1, .guard = "audit" };
	bool before_policy = !d || (d->rule < 0 && !d->guard && !d->reason[0]);
	metrics_decision(c->env->metrics, c->cfg->policy, c->proto->metric,
			 !written ? &fail_closed : before_policy ? NULL : d, allow && written,
			 c->target.is_name ? METRICS_ERROR_DNS : METRICS_ERROR_TARGET);
}

bool conn_audit_decision(struct conn *c, const struct target_verdict *v,
			 const struct policy_decision *d, const char *reason)
{
	char addr_text[CIDR_ADDR_STRLEN], route[CIDR_PREFIX_STRLEN];
	if (v)
		d = &v->d;
	bool allow = v && v->n_allowed > 0;
	const struct tailnet_entry *carrier = d ? d->carrier : NULL;
	struct audit_decision rec = {
		.conn_id = c->id,
		.client = c->client_text,
		.listener = c->listener_text,
		.proto = c->proto->name,
		.user = c->user[0] ? c->user : NULL,
		.host = c->target.host[0] ? c->target.host : NULL,
		.port = c->target.port,
		.addr = v && v->shown.family ? cidr_addr_format(&v->shown, addr_text,
								sizeof addr_text) : NULL,
		.allow = allow,
		.rule = d ? d->rule_text : NULL,
		.guard = d ? d->guard : NULL,
		.reason = reason ? reason : d ? d->reason : NULL,
		.upstream = !allow ? NULL
			    : d->via == POLICY_VIA_DIRECT ? "direct"
			    : c->cfg->upstream.text,
		.path = v ? target_path_str(v->path) : NULL,
		.peer_name = d && d->peer ? d->peer->name : NULL,
		.peer_id = d && d->peer ? d->peer->id : NULL,
		.peer_route = carrier && carrier->kind != TAILNET_CARRY_ADDRESS
				      ? cidr_prefix_format(&carrier->prefix, route, sizeof route)
				      : NULL,
		.userid = c->userid,
	};
	bool ok = audit_decision(c->env->audit, &rec);
	conn_count_decision(c, d, allow, ok);
	return ok;
}

/* ---------- the protocol's state ---------- */

static bool conn_make_state(struct conn *c)
{
	c->ps = calloc(1, sizeof *c->ps);
	return c->ps != NULL;
}

/* Wipes and frees the protocol's state (it is done with it). */
static void conn_drop_state(struct conn *c)
{
	if (!c->ps)
		return;
	if (c->proto->clear)
		c->proto->clear(c);
	free(c->ps);
	c->ps = NULL;
	c->userid = NULL;	/* pointed into it */
}

/* ---------- close ---------- */

void conn_close(struct conn *c, const char *end, const char *error)
{
	const struct conn_env *env = c->env;
	uint64_t up = 0, down = 0;

	struct udp_assoc_stats us = { 0 };
	if (c->relay) {
		up = c->head_up + relay_bytes_up(c->relay);
		down = relay_bytes_down(c->relay);
	} else if (c->udp) {
		udp_assoc_get_stats(c->udp, &us);
		up = us.bytes_up;
		down = us.bytes_down;
	}
	char addr_text[CIDR_ADDR_STRLEN];
	struct audit_close rec = {
		.conn_id = c->id,
		.client = c->client_text,
		.proto = c->proto->name,
		.addr = c->connected.family ? cidr_addr_format(&c->connected, addr_text,
							       sizeof addr_text) : NULL,
		.bytes_up = up,
		.bytes_down = down,
		.duration_ms = conn_elapsed_ms(c),
		.end = end,
		.error = error && error[0] ? error : NULL,
		.udp = c->udp != NULL,
		.datagrams_up = us.datagrams_up,
		.datagrams_down = us.datagrams_down,
		.dropped = us.dropped,
	};
	/* Connections that never named a target (scanners, garbage, idle
	 * handshakes) leave a close record too, so nothing goes unseen. */
	audit_close(env->audit, &rec);
	metrics_closed(env->metrics, c->proto->metric, end, c->udp ? 0 : up,
		       c->udp ? 0 : down, metrics_now_us() - c->started_us);
	log_debug("conn %llu: closed (%s%s%s), %llu bytes up, %llu down",
		  (unsigned long long)c->id, end, error ? ": " : "", error ? error : "",
		  (unsigned long long)up, (unsigned long long)down);

	if (c->login) {
		bool dropped = worker_cancel(c->login->job);	/* done() frees it */
		log_debug("conn %llu: password check %s", (unsigned long long)c->id,
			  dropped ? "dropped before it ran" : "already running; result discarded");
	}
	conn_drop_state(c);
	if (c->resolve)
		resolve_cancel(c->resolve);
	audit_wait_cancel(env->audit_port, &c->audit_wait);
	if (c->dial)
		upstream_dial_cancel(c->dial);
	udp_assoc_free(c->udp);
	if (c->relay)
		relay_free(c->relay);	/* frees both bufferevents */
	else
		bufferevent_free(c->client);
	event_free(c->timer);
	config_unref(c->cfg);
	TAILQ_REMOVE(&c->set->list, c, link);
	c->set->n--;
	free(c);
	env->closed(env->owner);
}

/* ---------- relay ---------- */

static void conn_relay_done(void *arg, enum relay_end end, const char *error)
{
	struct conn *c = arg;
	conn_close(c, relay_end_str(end), error);
}

static void conn_start_relay(struct conn *c, struct bufferevent *up, const struct relay_params *p)
{
	evtimer_del(c->timer);
	c->state = CONN_RELAY;
	if (!c->proto->state_in_relay)
		conn_drop_state(c);
	c->relay = relay_start(c->client, up, p, conn_relay_done, c);
	if (!c->relay) {
		bufferevent_free(up);
		conn_close(c, "error", "out of memory");
	}
}

/* ---------- dial ---------- */

static enum conn_failure conn_failure_of(enum upstream_error e)
{
	switch (e) {
	case UPSTREAM_REFUSED: return CONN_FAIL_REFUSED;
	case UPSTREAM_NET_UNREACHABLE: return CONN_FAIL_NET_UNREACHABLE;
	case UPSTREAM_HOST_UNREACHABLE: return CONN_FAIL_HOST_UNREACHABLE;
	case UPSTREAM_TIMEOUT: return CONN_FAIL_TIMEOUT;
	case UPSTREAM_NOT_ALLOWED: return CONN_FAIL_DENIED;
	default: return CONN_FAIL_GENERAL;
	}
}

static void conn_dial_cb(void *arg, struct upstream_result *res)
{
	struct conn *c = arg;
	c->dial = NULL;
	metrics_observe(&c->env->metrics->dial, res->elapsed_us);

	if (res->err != UPSTREAM_OK) {
		c->last_failure = conn_failure_of(res->err);
		snprintf(c->last_error, sizeof c->last_error, "%s",
			 res->detail ? res->detail : upstream_error_str(res->err));
		log_debug("conn %llu: dial failed: %s", (unsigned long long)c->id,
			  c->last_error);
		conn_dial_next(c);
		return;
	}

	c->connected = c->verdict.allowed[c->next_dial - 1];
	struct relay_params p = {
		.high_watermark = c->cfg->buffer_bytes,
		.idle_ms = c->cfg->idle_timeout_ms,
		.splice = c->cfg->relay_splice,
	};
	c->proto->connected(c, res, &p);
	conn_start_relay(c, res->bev, &p);
}

/* Tries the next allowed address; when none is left, answers the failure
 * of the last attempt. */
static void conn_dial_next(struct conn *c)
{
	if (c->next_dial >= c->verdict.n_allowed) {
		log_info("conn %llu: %s to %s:%u: dial failed: %s", (unsigned long long)c->id,
			 c->client_text, c->target.host, c->target.port, c->last_error);
		conn_fail(c, c->last_failure, c->last_error);
		return;
	}
	size_t i = c->next_dial++;
	struct config_upstream direct = { .kind = CONFIG_UPSTREAM_DIRECT };
	const struct config_upstream *up =
		c->verdict.via[i] == POLICY_VIA_DIRECT ? &direct : &c->cfg->upstream;
	c->state = CONN_DIAL;
	c->dial = upstream_dial(c->env->base, up, &c->verdict.allowed[i], c->target.port,
				c->cfg->connect_timeout_ms, conn_dial_cb, c);
	if (!c->dial)
		conn_fail(c, CONN_FAIL_GENERAL, "out of memory");
}

/* ---------- decide ---------- */

/* The writer has written (or failed to write) the decision record. */
static void conn_audit_ack(void *arg, bool proceed, const char *why)
{
	struct conn *c = arg;
	evtimer_del(c->timer);
	if (!proceed) {
		log_warn("conn %llu: refused: %s", (unsigned long long)c->id, why);
		conn_fail(c, CONN_FAIL_DENIED, why);
		return;
	}
	conn_dial_next(c);
}

/* Who is asking, with the tailnet as it is now. */
static void conn_who(const struct conn *c, struct policy_query *q)
{
	memset(q, 0, sizeof *q);
	q->user = c->user[0] ? c->user : NULL;
	q->src = c->client_addr;
	q->view = c->env->view;
}

void conn_refuse(struct conn *c, enum conn_failure f, const struct policy_decision *d,
		 const char *why)
{
	conn_audit_decision(c, NULL, d, why);
	log_info("conn %llu: %s denied %s:%u: %s", (unsigned long long)c->id, c->client_text,
		 c->target.host, c->target.port, why ? why : d->reason);
	conn_fail(c, f, why ? why : d->reason);
}

/* Checks every candidate address; dials the allowed ones in order. */
static void conn_decide(struct conn *c, const struct cidr_addr *addrs, size_t n)
{
	struct policy_query who;
	struct target_verdict *v = &c->verdict;

	conn_who(c, &who);
	target_decide(c->cfg->policy, &c->target, &who, addrs, n,
		      c->cfg->upstream.kind == CONFIG_UPSTREAM_DIRECT, NULL, NULL, v);
	if (v->n_allowed == 0) {
		conn_audit_decision(c, v, NULL, NULL);
		log_info("conn %llu: %s denied %s:%u: %s", (unsigned long long)c->id,
			 c->client_text, c->target.host, c->target.port, v->d.reason);
		conn_fail(c, CONN_FAIL_DENIED, v->d.reason);
		return;
	}
	if (!conn_audit_decision(c, v, NULL, NULL)) {
		/* Fail closed: no record, no connection. */
		log_warn("conn %llu: refused: the audit trail cannot be written",
			 (unsigned long long)c->id);
		conn_fail(c, CONN_FAIL_DENIED, "audit trail unavailable");
		return;
	}
	c->next_dial = 0;
	c->last_failure = CONN_FAIL_GENERAL;
	/* No dial before the decision record is written (audit.durability). */
	if (audit_wait(c->env->audit_port, &c->audit_wait, conn_audit_ack, c)) {
		c->state = CONN_AUDIT_WAIT;
		conn_timer_set(c, c->cfg->connect_timeout_ms);
		return;
	}
	conn_dial_next(c);
}

static void conn_resolve_cb(void *arg, const struct resolve_result *res)
{
	struct conn *c = arg;
	c->resolve = NULL;
	c->env->metrics->dns_lookups++;
	c->env->metrics->dns_failures += res->error != 0;
	metrics_observe(&c->env->metrics->dns, res->elapsed_us);

	if (res->error) {
		char why[400];
		snprintf(why, sizeof why, "cannot resolve %s: %s", c->target.host, res->error_text);
		conn_refuse(c, res->busy ? CONN_FAIL_BUSY
			       : res->timed_out || res->error == EVUTIL_EAI_AGAIN ? CONN_FAIL_TIMEOUT
			       : CONN_FAIL_HOST_UNREACHABLE, NULL, why);
		return;
	}
	log_debug("conn %llu: %s resolved %s to %zu address(es)", (unsigned long long)c->id,
		  resolve_source_str(res->source), c->target.host, res->n);
	conn_decide(c, res->addrs, res->n);
}

void conn_target_ready(struct conn *c)
{
	metrics_observe(&c->env->metrics->handshake, metrics_now_us() - c->started_us);
	evtimer_del(c->timer);
	/* Reading stays on (bytes the client sends early wait in its buffer,
	 * up to the head limit) so that a client that goes away while its
	 * name resolves or its dial runs is noticed, and both are cancelled. */

	if (!c->target.is_name) {
		conn_decide(c, &c->target.addr, 1);
		return;
	}
	struct policy_query who;
	conn_who(c, &who);
	if (!target_precheck(c->cfg->policy, &c->target, &who, &c->verdict)) {
		conn_refuse(c, CONN_FAIL_DENIED, &c->verdict.d, NULL);
		return;
	}
	c->state = CONN_RESOLVE;
	struct resolve_tailnet tn = { who.view, c->cfg->tailscaled_socket };
	c->resolve = resolve_start(c->env->resolver, &tn, c->target.host, &c->client_addr,
				   c->cfg->dns_timeout_ms, conn_resolve_cb, c);
	if (!c->resolve)
		conn_fail(c, CONN_FAIL_GENERAL, "out of memory");
}

bool conn_set_target(struct conn *c, const char *host, size_t len, uint16_t port)
{
	char why[400];
	if (target_parse(&c->target, host, len, port, why, sizeof why))
		return true;
	/* Record what was asked, as far as it is text. */
	size_t n = strnlen(host, len < sizeof c->target.host ? len : sizeof c->target.host - 1);
	memcpy(c->target.host, host, n);
	c->target.host[n] = '\0';
	c->target.port = port;
	struct policy_decision d = { .action = POLICY_DENY, .rule = -1 };
	conn_refuse(c, CONN_FAIL_DENIED, &d, why);
	return false;
}

void conn_set_target_addr(struct conn *c, const struct cidr_addr *a, uint16_t port)
{
	char text[CIDR_ADDR_STRLEN];
	cidr_addr_format(a, text, sizeof text);
	conn_set_target(c, text, strlen(text), port);	/* an address always parses */
}

/* ---------- authentication ---------- */

static uint64_t conn_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void conn_login_free(struct conn_login *l)
{
	config_unref(l->cfg);
	auth_creds_wipe(&l->creds);
	free(l);
}

/* A failed login is answered only after a delay that grows with the
 * client's recent failures (the throttle, per client prefix). */
static void conn_auth_failed(struct conn *c, const char *user, const char *why)
{
	snprintf(c->user, sizeof c->user, "%s", user);	/* the record names who tried */
	snprintf(c->last_error, sizeof c->last_error, "%s", why);
	unsigned ms = auth_throttle_delay_ms(c->env->throttle, &c->client_addr, conn_now_ms());
	log_info("conn %llu: %s: %s", (unsigned long long)c->id, c->client_text, why);
	c->state = CONN_AUTH_DELAY;
	bufferevent_disable(c->client, EV_READ);
	conn_timer_set(c, ms);
}

static void conn_auth_delay_over(struct conn *c)
{
	/* The refusal is a decision like any other, and names who tried. */
	struct policy_decision d = { .action = POLICY_DENY, .rule = -1, .guard = "auth" };
	conn_audit_decision(c, NULL, &d, c->last_error);	/* conn_auth_failed's reason */
	c->proto->login_failed(c, NULL);
}

/* The check could not be queued (a limit of the worker pool): refused at
 * once, without running the KDF and without a delay, and counted as a
 * failure of the client. HTTP clients get 503 with Retry-After: their
 * credentials were not judged, and a 407 would tell them (and a browser's
 * password prompt) that they were wrong. */
static void conn_login_refused(struct conn *c, const char *user, enum worker_refusal r)
{
	if (r == WORKER_NO_MEMORY) {
		conn_fail(c, CONN_FAIL_GENERAL, "out of memory");
		return;
	}
	bool client = r == WORKER_CLIENT_LIMIT;
	char why[400];
	snprintf(why, sizeof why, client
		 ? "login refused for user \"%s\": %u password checks from this client are "
		   "already waiting or running (limit)"
		 : "login refused for user \"%s\": %u password checks are already waiting or "
		   "running (server busy)",
		 user, client ? CONN_LOGIN_PER_CLIENT : CONN_LOGIN_QUEUE);
	auth_throttle_failure(c->env->throttle, &c->client_addr, conn_now_ms());
	c->env->metrics->login_failures++;
	snprintf(c->user, sizeof c->user, "%s", user);
	struct policy_decision d = { .action = POLICY_DENY, .rule = -1, .guard = "auth" };
	conn_audit_decision(c, NULL, &d, why);
	log_info("conn %llu: %s: %s", (unsigned long long)c->id, c->client_text, why);
	snprintf(c->last_error, sizeof c->last_error, "%s",
		 client ? "too many logins from this client are being checked"
			: "too many logins are being checked");
	c->proto->login_failed(c, client ? "too many logins from this address are being "
					   "checked; try again shortly"
					 : "the proxy is busy checking other logins; try again shortly");
}

/* The verdict on the credentials, whichever way it was reached; user is
 * NULL when there was nothing to check (no users configured). */
static void conn_login_result(struct conn *c, const char *user, bool ok)
{
	if (!ok) {
		auth_throttle_failure(c->env->throttle, &c->client_addr, conn_now_ms());
		c->env->metrics->login_failures++;
		char why[320];
		snprintf(why, sizeof why, "login failed for user \"%s\"", user ? user : "");
		conn_auth_failed(c, user ? user : "", why);
		return;
	}
	if (user) {
		auth_throttle_success(c->env->throttle, &c->client_addr);
		snprintf(c->user, sizeof c->user, "%s", user);
	}
	c->proto->login_ok(c);
}

static void conn_login_work(void *arg)
{
	struct conn_login *l = arg;
	l->ok = auth_users_verify(l->cfg->users, l->creds.user, l->creds.pass);
	OPENSSL_cleanse(l->creds.pass, sizeof l->creds.pass);
}

static void conn_login_done(void *arg, bool cancelled)
{
	struct conn_login *l = arg;
	if (!cancelled) {
		l->c->login = NULL;
		conn_login_result(l->c, l->creds.user, l->ok);
	}
	conn_login_free(l);
}

void conn_login(struct conn *c, const char *user, char *pass, size_t passcap)
{
	struct conn_login *l = calloc(1, sizeof *l);
	bool copied = l && auth_creds_set(&l->creds, user, pass);
	OPENSSL_cleanse(pass, passcap);
	if (!copied) {
		free(l);
		conn_fail(c, CONN_FAIL_GENERAL, "out of memory");
		return;
	}
	if (auth_users_count(c->cfg->users) == 0) {
		/* No users (a SOCKS5 client that offered only username/password):
		 * nothing to check, as HTTP ignores Proxy-Authorization then. */
		conn_login_free(l);
		conn_login_result(c, NULL, true);
		return;
	}
	if (auth_users_verify_cached(c->cfg->users, l->creds.user, l->creds.pass)) {
		conn_login_result(c, l->creds.user, true);
		conn_login_free(l);
		return;
	}
	struct cidr_addr client;
	enum worker_refusal r;
	auth_client_prefix(&c->client_addr, &client);
	l->c = c;
	l->cfg = config_ref(c->cfg);
	l->job = worker_submit(c->env->worker, c->env->base, &client, conn_login_work, conn_login_done, l, &r);
	if (!l->job) {
		conn_login_refused(c, l->creds.user, r);
		conn_login_free(l);
		return;
	}
	log_debug("conn %llu: password check for user \"%s\" queued", (unsigned long long)c->id,
		  l->creds.user);
	/* The handshake timeout keeps running while the KDF does. Reading
	 * stays on, so a client that leaves is seen at once and its check
	 * dropped; bytes it sends meanwhile wait in the input buffer (bounded
	 * by its watermark) until the login is decided. */
	c->state = CONN_LOGIN;
	bufferevent_enable(c->client, EV_READ);
	c->login = l;
}

/* ---------- callbacks ---------- */

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	(void)bev;

	if (c->state == CONN_UDP) {
		/* nothing more is said on a control connection: ignored */
		struct evbuffer *in = bufferevent_get_input(c->client);
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	if (c->state == CONN_SNIFF) {
		uint8_t first;
		if (evbuffer_copyout(bufferevent_get_input(c->client), &first, 1) != 1)
			return;
		if (!conn_make_state(c)) {
			conn_close(c, "error", "out of memory");
			return;
		}
		if (first == 0x05 || first == 0x04)
			conn_socks_begin(c);
		else
			conn_http_begin(c);
	}
	if (c->state == CONN_REQUEST)
		c->proto->read(c);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	(void)bev;
	if (c->state == CONN_UDP && (what & BEV_EVENT_EOF))
		conn_close(c, "client_eof", NULL);
	else if (what & BEV_EVENT_EOF)
		conn_close(c, "client_eof", "client closed during the handshake");
	else
		conn_close(c, "error", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	(void)fd;
	(void)what;

	switch (c->state) {
	case CONN_SNIFF:
	case CONN_REQUEST:
	case CONN_LOGIN:
		if (c->state == CONN_REQUEST && c->proto->timed_out)
			c->proto->timed_out(c);
		else
			conn_close(c, "handshake_timeout", "handshake timed out");
		break;
	case CONN_AUTH_DELAY:
		conn_auth_delay_over(c);
		break;
	case CONN_FLUSH:
		conn_close(c, c->end, "client did not read the final reply");
		break;
	case CONN_AUDIT_WAIT:
		audit_wait_cancel(c->env->audit_port, &c->audit_wait);
		log_warn("conn %llu: refused: its decision record was not written in time",
			 (unsigned long long)c->id);
		conn_fail(c, CONN_FAIL_TIMEOUT, "audit trail unavailable: record not written in time");
		break;
	default:
		break;
	}
}

/* ---------- public ---------- */

struct conn_set *conn_set_new(const struct conn_env *env)
{
	struct conn_set *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->env = env;
	TAILQ_INIT(&s->list);
	return s;
}

void conn_set_free(struct conn_set *s)
{
	if (!s)
		return;
	conn_set_abort(s);
	free(s);
}

size_t conn_set_count(const struct conn_set *s)
{
	return s ? s->n : 0;
}

void conn_accept(struct conn_set *s, const char *listener, evutil_socket_t fd,
		 const struct sockaddr *sa, socklen_t salen)
{
	(void)salen;
	const struct conn_env *env = s->env;
	struct conn *c = calloc(1, sizeof *c);
	if (!c) {
		evutil_closesocket(fd);
		return;
	}
	c->set = s;
	c->env = env;
	c->cfg = config_ref(env->cfg);
	c->id = conn_env_next_id(env);
	env->metrics->accepted++;
	c->started_us = metrics_now_us();
	c->state = CONN_SNIFF;
	c->proto = &conn_proto_none;
	c->listener_text = listener;
	event_base_gettimeofday_cached(env->base, &c->started);
	cidr_addr_from_sockaddr(sa, &c->client_addr, &c->client_port);
	cidr_addr_format_port(&c->client_addr, c->client_port, c->client_text,
			      sizeof c->client_text);

	c->client = bufferevent_socket_new(env->base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->timer = evtimer_new(env->base, conn_timer_cb, c);
	if (!c->client || !c->timer) {
		if (c->client)
			bufferevent_free(c->client);
		else
			evutil_closesocket(fd);
		if (c->timer)
			event_free(c->timer);
		config_unref(c->cfg);
		free(c);
		return;
	}
	TAILQ_INSERT_TAIL(&s->list, c, link);
	s->n++;

	bufferevent_setcb(c->client, conn_read_cb, NULL, conn_event_cb, c);
	/* Never buffer more than one request head from a client. */
	bufferevent_setwatermark(c->client, EV_READ, 0, c->cfg->max_head_bytes + 1);
	bufferevent_enable(c->client, EV_READ | EV_WRITE);
	conn_timer_set(c, c->cfg->handshake_timeout_ms);
}

void conn_set_stop_handshakes(struct conn_set *s)
{
	struct conn *c, *next;
	for (c = TAILQ_FIRST(&s->list); c; c = next) {
		next = TAILQ_NEXT(c, link);
		if (c->state != CONN_RELAY && c->state != CONN_FLUSH && c->state != CONN_UDP)
			conn_close(c, "shutdown", NULL);
	}
}

void conn_set_abort(struct conn_set *s)
{
	while (!TAILQ_EMPTY(&s->list))
		conn_close(TAILQ_FIRST(&s->list), "shutdown", NULL);
}

size_t conn_set_recheck_udp(struct conn_set *s, const struct tailnet_view *view)
{
	struct conn *c;
	size_t revoked = 0;
	TAILQ_FOREACH(c, &s->list, link)
		if (c->udp)
			revoked += udp_assoc_recheck(c->udp, view);
	return revoked;
}

size_t conn_set_recheck_relays(struct conn_set *s, const struct tailnet_view *view)
{
	struct conn *c, *next;
	size_t closed = 0;
	for (c = TAILQ_FIRST(&s->list); c; c = next) {
		next = TAILQ_NEXT(c, link);
		if (c->state != CONN_RELAY || !c->connected.family)
			continue;
		struct policy_query q;
		struct policy_decision d;
		conn_who(c, &q);
		q.view = view;
		q.host = c->target.is_name ? c->target.host : NULL;
		q.dst = c->connected;
		q.port = c->target.port;
		policy_decide(c->cfg->policy, &q, &d);
		if (d.action == POLICY_ACCEPT)
			continue;
		log_info("conn %llu: %s to %s:%u closed: %s", (unsigned long long)c->id,
			 c->client_text, c->target.host, c->target.port, d.reason);
		conn_close(c, "revoked", d.reason);
		closed++;
	}
	return closed;
}

void conn_set_stats(const struct conn_set *s, size_t *relays, uint64_t *up, uint64_t *down)
{
	const struct conn *c;
	*relays = 0;
	*up = *down = 0;
	TAILQ_FOREACH(c, &s->list, link) {
		if (!c->relay)
			continue;
		(*relays)++;
		*up += c->head_up + relay_bytes_up(c->relay);
		*down += relay_bytes_down(c->relay);
	}
}
