/*
 * inbound: one connection from tailscale serve, from accept to close (see
 * include/tailfence/inbound.h).
 *
 *   HEADER   the PROXY header arrives; meanwhile the worker checks that
 *            tailscaled's process connected (peer_check "tailscaled")
 *   WHOIS    who the header's source is (cached)
 *   RESOLVE  the target's name, when it is one
 *   AUDIT    the decision record reaches the sinks (audit.durability)
 *   DIAL     allowed addresses in order, directly
 *   RELAY    bytes both ways
 *
 * Every path ends in ib_close(), which writes the close record and frees.
 * The decision record is written once, when the verdict is made and
 * before anything is dialed; a refusal before that (no header, another
 * process, whois failed) is a decision record too, with the reason.
 */
#include "tailfence/inbound.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "tailfence/audit.h"
#include "tailfence/config.h"
#include "tailfence/conn_env.h"
#include "tailfence/inbound_config.h"
#include "tailfence/log.h"
#include "tailfence/metrics.h"
#include "tailfence/peercheck.h"
#include "tailfence/policy.h"
#include "tailfence/proxyproto.h"
#include "tailfence/relay.h"
#include "tailfence/resolve.h"
#include "tailfence/target.h"
#include "tailfence/upstream.h"
#include "tailfence/whois.h"
#include "tailfence/worker.h"

/* How long a whois answer may take. */
#define INBOUND_WHOIS_MS 5000
/* How long an identity is remembered (a tailnet change forgets it sooner). */
#define INBOUND_CACHE_US (10ull * 1000 * 1000)
#define INBOUND_CACHE_MAX 256

enum ib_state {
	IB_HEADER,
	IB_WHOIS,
	IB_RESOLVE,
	IB_AUDIT,
	IB_DIAL,
	IB_RELAY,
};

struct ib_cached {
	struct cidr_addr addr;
	uint64_t expires_us;
	struct whois_identity id;
};

struct inbound {
	const struct conn_env *env;
	TAILQ_HEAD(ib_conns, ib_conn) conns;
	size_t n_conns;
	struct ib_cached *cache;	/* a few hundred at most: searched in order */
	size_t n_cache;
};

/* The peer check's job: its own copies, so the connection may close first. */
struct ib_check {
	struct ib_conn *c;		/* NULL once the connection is gone */
	char sock[256];
	struct sockaddr_storage local, peer;
	struct peercheck out;
	struct worker_job *job;
};

struct ib_conn {
	TAILQ_ENTRY(ib_conn) link;
	struct inbound *in;
	struct config *cfg;		/* the config it was accepted under */
	const struct inbound_entry *e;	/* in cfg */
	uint64_t id;
	enum ib_state state;
	struct timeval started;
	const char *proto;		/* "proxy-v2" / "proxy-v1" */

	struct bufferevent *client;
	struct sockaddr_storage local, peer;
	char client_text[CIDR_ADDR_STRLEN + 8];
	struct event *timer;		/* header and whois; audit wait */

	struct ib_check *check;		/* in flight on the worker */
	bool checked;			/* the peer check passed (or is off) */

	bool have_header;
	struct proxyproto_header hdr;
	char tailnet_addr[CIDR_ADDR_STRLEN + 8];

	struct whois_req *whois;
	bool have_id;
	struct whois_identity ident;
	const char *tags[WHOIS_MAX_TAGS];
	const char *rule_text;		/* the identity rule that accepted */
	char reason[512];

	struct target target;
	struct target_verdict verdict;
	struct resolve_req *resolve;
	struct audit_waiter audit_wait;
	size_t next_dial;
	struct upstream_dial *dial;
	struct cidr_addr connected;
	struct relay *relay;
	char last_error[200];
};

static void ib_close(struct ib_conn *c, const char *end, const char *error);
static void ib_proceed(struct ib_conn *c);

/* ---------- helpers ---------- */

static uint64_t ib_elapsed_ms(const struct ib_conn *c)
{
	struct timeval now, d;
	event_base_gettimeofday_cached(c->in->env->base, &now);
	evutil_timersub(&now, &c->started, &d);
	return (uint64_t)d.tv_sec * 1000 + (uint64_t)d.tv_usec / 1000;
}

static void ib_timer_set(struct ib_conn *c, unsigned ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(c->timer, &tv);
}

/* Who connected, for the records (fields are NULL until known). */
static void ib_inbound_rec(struct ib_conn *c, struct audit_inbound *ib)
{
	memset(ib, 0, sizeof *ib);
	ib->service = c->e->name;
	ib->tailnet_addr = c->have_header ? c->tailnet_addr : NULL;
	if (c->have_id) {
		ib->node = c->ident.node;
		ib->node_id = c->ident.node_id[0] ? c->ident.node_id : NULL;
		ib->user = c->ident.user;
		for (size_t i = 0; i < c->ident.n_tags; i++)
			c->tags[i] = c->ident.tags[i];
		ib->tags = c->tags;
		ib->n_tags = c->ident.n_tags;
	}
}

/* The decision record. allow: the identity rules and the target passed;
 * else guard and reason say why not. Returns false when the trail cannot
 * be written and on_failure is deny. */
static bool ib_decision(struct ib_conn *c, bool allow, const char *rule, const char *guard,
			const char *reason)
{
	char addr[CIDR_ADDR_STRLEN];
	struct audit_inbound ib;
	ib_inbound_rec(c, &ib);
	const struct target_verdict *v = &c->verdict;
	struct audit_decision d = {
		.conn_id = c->id,
		.client = c->client_text,
		.listener = c->e->listen_text,
		.proto = c->proto,
		.host = c->target.host[0] ? c->target.host : c->e->target_host,
		.port = c->e->target_port,
		.addr = v->shown.family ? cidr_addr_format(&v->shown, addr, sizeof addr) : NULL,
		.allow = allow,
		.rule = rule,
		.guard = guard,
		.reason = reason,
		.upstream = allow ? "direct" : NULL,
		.inbound = &ib,
	};
	return audit_decision(c->in->env->audit, &d);
}

/* Refuses: a decision record with the reason, a log line, then close. */
static void ib_refuse(struct ib_conn *c, const char *end, const char *rule, const char *guard,
		      const char *reason)
{
	ib_decision(c, false, rule, guard, reason);
	char who[400] = "";
	if (c->have_id)
		inbound_who(&c->ident, who, sizeof who);
	log_info("conn %llu: inbound %s from %s%s%s denied: %s", (unsigned long long)c->id,
		 c->e->name, c->have_header ? c->tailnet_addr : c->client_text,
		 who[0] ? " " : "", who, reason);
	ib_close(c, end, reason);
}

/* ---------- close ---------- */

static void ib_close(struct ib_conn *c, const char *end, const char *error)
{
	struct inbound *in = c->in;
	const struct conn_env *env = in->env;
	uint64_t up = c->relay ? relay_bytes_up(c->relay) : 0;
	uint64_t down = c->relay ? relay_bytes_down(c->relay) : 0;
	char addr[CIDR_ADDR_STRLEN];
	struct audit_inbound ib;
	ib_inbound_rec(c, &ib);
	struct audit_close rec = {
		.conn_id = c->id,
		.client = c->client_text,
		.proto = c->proto,
		.addr = c->connected.family ? cidr_addr_format(&c->connected, addr, sizeof addr)
					    : NULL,
		.bytes_up = up,
		.bytes_down = down,
		.duration_ms = ib_elapsed_ms(c),
		.end = end,
		.error = error && error[0] ? error : NULL,
		.inbound = &ib,
	};
	audit_close(env->audit, &rec);
	log_debug("conn %llu: inbound %s closed (%s%s%s), %llu bytes up, %llu down",
		  (unsigned long long)c->id, c->e->name, end, error ? ": " : "",
		  error ? error : "", (unsigned long long)up, (unsigned long long)down);

	if (c->check) {
		c->check->c = NULL;	/* its done() frees it */
		worker_cancel(c->check->job);
	}
	if (c->whois)
		whois_cancel(c->whois);
	if (c->resolve)
		resolve_cancel(c->resolve);
	audit_wait_cancel(env->audit_port, &c->audit_wait);
	if (c->dial)
		upstream_dial_cancel(c->dial);
	if (c->relay)
		relay_free(c->relay);	/* frees both bufferevents */
	else
		bufferevent_free(c->client);
	event_free(c->timer);
	config_unref(c->cfg);
	TAILQ_REMOVE(&in->conns, c, link);
	in->n_conns--;
	free(c);
	env->closed(env->owner);
}

/* ---------- relay and dial ---------- */

static void ib_relay_done(void *arg, enum relay_end end, const char *error)
{
	struct ib_conn *c = arg;
	ib_close(c, relay_end_str(end), error);
}

static void ib_dial_next(struct ib_conn *c);

static void ib_dial_cb(void *arg, struct upstream_result *res)
{
	struct ib_conn *c = arg;
	c->dial = NULL;
	if (res->err != UPSTREAM_OK) {
		snprintf(c->last_error, sizeof c->last_error, "%s",
			 res->detail ? res->detail : upstream_error_str(res->err));
		log_debug("conn %llu: inbound dial failed: %s", (unsigned long long)c->id,
			  c->last_error);
		ib_dial_next(c);
		return;
	}
	c->connected = c->verdict.allowed[c->next_dial - 1];
	struct relay_params p = {
		.high_watermark = c->cfg->buffer_bytes,
		.idle_ms = c->cfg->idle_timeout_ms,
		.splice = c->cfg->relay_splice,
	};
	evtimer_del(c->timer);
	c->state = IB_RELAY;
	c->relay = relay_start(c->client, res->bev, &p, ib_relay_done, c);
	if (!c->relay) {
		bufferevent_free(res->bev);
		ib_close(c, "error", "out of memory");
	}
}

static void ib_dial_next(struct ib_conn *c)
{
	if (c->next_dial >= c->verdict.n_allowed) {
		ib_close(c, "dial_failed", c->last_error[0] ? c->last_error : "no address connected");
		return;
	}
	size_t i = c->next_dial++;
	static const struct config_upstream direct = { .kind = CONFIG_UPSTREAM_DIRECT };
	c->state = IB_DIAL;
	c->dial = upstream_dial(c->in->env->base, &direct, &c->verdict.allowed[i],
				c->e->target_port, c->cfg->connect_timeout_ms, ib_dial_cb, c);
	if (!c->dial)
		ib_close(c, "error", "out of memory");
}

static void ib_audit_ack(void *arg, bool proceed, const char *why)
{
	struct ib_conn *c = arg;
	evtimer_del(c->timer);
	if (!proceed) {
		log_warn("conn %llu: refused: %s", (unsigned long long)c->id, why);
		ib_close(c, "denied", why);
		return;
	}
	ib_dial_next(c);
}

/* ---------- the target ---------- */

/* Every candidate address of the target against the entry's guards. */
static void ib_decide_target(struct ib_conn *c, const struct cidr_addr *addrs, size_t n)
{
	struct policy_query who;
	memset(&who, 0, sizeof who);
	who.src = c->hdr.src;
	struct target_verdict *v = &c->verdict;
	target_decide(c->e->policy, &c->target, &who, addrs, n, true, NULL, NULL, v);
	if (v->n_allowed == 0) {
		char why[1024];
		snprintf(why, sizeof why, "%s; the target: %s", c->reason, v->d.reason);
		ib_refuse(c, "denied", c->rule_text, v->d.guard, why);
		return;
	}
	if (!ib_decision(c, true, c->rule_text, NULL, c->reason)) {
		log_warn("conn %llu: refused: the audit trail cannot be written",
			 (unsigned long long)c->id);
		ib_close(c, "denied", "audit trail unavailable");
		return;
	}
	char who_text[400];
	inbound_who(&c->ident, who_text, sizeof who_text);
	log_info("conn %llu: inbound %s from %s %s to %s", (unsigned long long)c->id,
		 c->e->name, c->tailnet_addr, who_text, c->e->target);
	c->next_dial = 0;
	if (audit_wait(c->in->env->audit_port, &c->audit_wait, ib_audit_ack, c)) {
		c->state = IB_AUDIT;
		ib_timer_set(c, c->cfg->connect_timeout_ms);
		return;
	}
	ib_dial_next(c);
}

static void ib_resolve_cb(void *arg, const struct resolve_result *res)
{
	struct ib_conn *c = arg;
	c->resolve = NULL;
	if (res->error) {
		char why[1024];
		snprintf(why, sizeof why, "%s; cannot resolve %s: %s", c->reason, c->target.host,
			 res->error_text);
		ib_refuse(c, "dial_failed", c->rule_text, NULL, why);
		return;
	}
	ib_decide_target(c, res->addrs, res->n);
}

static void ib_target(struct ib_conn *c)
{
	char why[300];
	evtimer_del(c->timer);
	if (!target_parse(&c->target, c->e->target_host, strlen(c->e->target_host),
			  c->e->target_port, why, sizeof why)) {
		ib_refuse(c, "denied", c->rule_text, NULL, why);	/* checked at start */
		return;
	}
	if (!c->target.is_name) {
		ib_decide_target(c, &c->target.addr, 1);
		return;
	}
	struct policy_query who;
	memset(&who, 0, sizeof who);
	who.src = c->hdr.src;
	if (!target_precheck(c->e->policy, &c->target, &who, &c->verdict)) {
		ib_refuse(c, "denied", c->rule_text, c->verdict.d.guard, c->verdict.d.reason);
		return;
	}
	c->state = IB_RESOLVE;
	c->resolve = resolve_start(c->in->env->resolver, NULL, c->target.host, &c->hdr.src,
				   c->cfg->dns_timeout_ms, ib_resolve_cb, c);
	if (!c->resolve)
		ib_close(c, "error", "out of memory");
}

/* ---------- identity ---------- */

static struct ib_cached *ib_cache_get(struct inbound *in, const struct cidr_addr *a)
{
	uint64_t now = metrics_now_us();
	for (size_t i = 0; i < in->n_cache; i++)
		if (cidr_addr_equal(&in->cache[i].addr, a))
			return in->cache[i].expires_us > now ? &in->cache[i] : NULL;
	return NULL;
}

static void ib_cache_put(struct inbound *in, const struct cidr_addr *a,
			 const struct whois_identity *id)
{
	uint64_t now = metrics_now_us();
	size_t slot = in->n_cache;
	for (size_t i = 0; i < in->n_cache; i++) {
		if (cidr_addr_equal(&in->cache[i].addr, a) || in->cache[i].expires_us <= now) {
			slot = i;
			break;
		}
	}
	if (slot == in->n_cache) {
		if (in->n_cache == INBOUND_CACHE_MAX) {
			slot = 0;	/* the oldest one out */
			for (size_t i = 1; i < in->n_cache; i++)
				if (in->cache[i].expires_us < in->cache[slot].expires_us)
					slot = i;
		} else {
			if (!in->cache) {
				in->cache = calloc(INBOUND_CACHE_MAX, sizeof *in->cache);
				if (!in->cache)
					return;
			}
			in->n_cache++;
		}
	}
	in->cache[slot].addr = *a;
	in->cache[slot].expires_us = now + INBOUND_CACHE_US;
	in->cache[slot].id = *id;
}

static void ib_identified(struct ib_conn *c, const struct whois_identity *id)
{
	c->ident = *id;
	c->have_id = true;
	struct inbound_verdict v;
	inbound_decide(c->e, id, &v);
	snprintf(c->reason, sizeof c->reason, "%s", v.reason);
	if (!v.allow) {
		ib_refuse(c, "denied", v.rule_text, NULL, v.reason);
		return;
	}
	c->rule_text = v.rule_text;
	ib_target(c);
}

static void ib_whois_cb(void *arg, const struct whois_identity *id, const char *error)
{
	struct ib_conn *c = arg;
	c->whois = NULL;
	if (!id) {
		char why[600];
		snprintf(why, sizeof why, "who is %s? %s", c->tailnet_addr, error);
		ib_refuse(c, "denied", NULL, "whois", why);
		return;
	}
	ib_cache_put(c->in, &c->hdr.src, id);
	ib_identified(c, id);
}

/* The header is in and the peer check passed: who is it? */
static void ib_proceed(struct ib_conn *c)
{
	if (!c->have_header || !c->checked || c->state != IB_HEADER)
		return;
	c->state = IB_WHOIS;
	struct ib_cached *hit = ib_cache_get(c->in, &c->hdr.src);
	if (hit) {
		struct whois_identity id = hit->id;
		ib_identified(c, &id);
		return;
	}
	c->whois = whois_query(c->in->env->base, c->cfg->tailscaled_socket, &c->hdr.src,
			       c->hdr.src_port, INBOUND_WHOIS_MS, ib_whois_cb, c);
	if (!c->whois)
		ib_close(c, "error", "out of memory");
}

/* ---------- the peer check ---------- */

static void ib_check_work(void *arg)
{
	struct ib_check *k = arg;
	peercheck_tailscaled(k->sock, &k->local, &k->peer, &k->out);
}

static void ib_check_done(void *arg, bool cancelled)
{
	struct ib_check *k = arg;
	struct ib_conn *c = k->c;
	if (!c || cancelled) {
		if (c)
			c->check = NULL;
		free(k);
		return;
	}
	c->check = NULL;
	struct peercheck out = k->out;
	free(k);
	if (out.result == PEERCHECK_TAILSCALED) {
		c->checked = true;
		ib_proceed(c);
		return;
	}
	/* For the record: whom a header already here claims, if one is. */
	struct evbuffer *inb = bufferevent_get_input(c->client);
	size_t len = evbuffer_get_length(inb), used;
	size_t look = len < PROXYPROTO_MAX ? len : PROXYPROTO_MAX;
	if (!c->have_header && look &&
	    proxyproto_parse(evbuffer_pullup(inb, (ev_ssize_t)look), look, c->e->proxy_versions,
			     &c->hdr, &used) == PROXYPROTO_DONE) {
		c->have_header = true;
		cidr_addr_format_port(&c->hdr.src, c->hdr.src_port, c->tailnet_addr,
				      sizeof c->tailnet_addr);
	}
	char why[600];
	if (out.result == PEERCHECK_OTHER)
		snprintf(why, sizeof why, "PROXY header not trusted: %s", out.why);
	else
		snprintf(why, sizeof why, "cannot tell whether tailscaled connected: %s (set "
			 "\"peer_check\": \"loopback\" to trust any local process)", out.why);
	ib_refuse(c, "denied", NULL, "peer", why);
}

static bool ib_check_start(struct ib_conn *c)
{
	struct ib_check *k = calloc(1, sizeof *k);
	if (!k)
		return false;
	k->c = c;
	snprintf(k->sock, sizeof k->sock, "%s", c->cfg->tailscaled_socket);
	k->local = c->local;
	k->peer = c->peer;
	c->check = k;
	enum worker_refusal why;
	k->job = worker_submit(c->in->env->worker, c->in->env->base, NULL, ib_check_work, ib_check_done, k, &why);
	if (!k->job) {
		c->check = NULL;
		free(k);
		return false;
	}
	return true;
}

/* ---------- the header ---------- */

static void ib_read_cb(struct bufferevent *bev, void *arg)
{
	struct ib_conn *c = arg;
	(void)bev;
	if (c->state != IB_HEADER || c->have_header)
		return;	/* early bytes wait in the buffer for the relay */
	struct evbuffer *inb = bufferevent_get_input(c->client);
	size_t len = evbuffer_get_length(inb);
	size_t look = len < PROXYPROTO_MAX ? len : PROXYPROTO_MAX;
	const uint8_t *p = evbuffer_pullup(inb, (ev_ssize_t)look);
	size_t used = 0;
	enum proxyproto_step st = proxyproto_parse(p, look, c->e->proxy_versions, &c->hdr, &used);
	if (st == PROXYPROTO_NEED_MORE)
		return;
	if (st == PROXYPROTO_ERROR) {
		ib_refuse(c, "protocol_error", NULL, "proxy", c->hdr.why);
		return;
	}
	evbuffer_drain(inb, used);
	c->have_header = true;
	c->proto = c->hdr.version == 1 ? "proxy-v1" : "proxy-v2";
	cidr_addr_format_port(&c->hdr.src, c->hdr.src_port, c->tailnet_addr,
			      sizeof c->tailnet_addr);
	/* From here the client's bytes are the service's: no more than the
	 * relay's buffer waits here until the target answers. */
	bufferevent_setwatermark(c->client, EV_READ, 0, c->cfg->buffer_bytes);
	ib_proceed(c);
}

static void ib_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct ib_conn *c = arg;
	(void)bev;
	if (what & BEV_EVENT_EOF)
		ib_close(c, "client_eof", c->have_header ? "closed before the target was reached"
							 : "closed before a PROXY header");
	else
		ib_close(c, "error", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static void ib_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ib_conn *c = arg;
	(void)fd;
	(void)what;
	if (c->state == IB_AUDIT) {
		audit_wait_cancel(c->in->env->audit_port, &c->audit_wait);
		log_warn("conn %llu: refused: its decision record was not written in time",
			 (unsigned long long)c->id);
		ib_close(c, "dial_failed", "audit trail unavailable: record not written in time");
		return;
	}
	ib_close(c, "handshake_timeout", c->have_header ? (c->checked ? "no identity in time"
							    : "peer check not done in time")
							: "no PROXY header in time");
}

/* ---------- accept ---------- */

void inbound_accept(struct inbound *in, size_t entry, evutil_socket_t fd)
{
	const struct conn_env *env = in->env;
	struct ib_conn *c = calloc(1, sizeof *c);
	if (!c) {
		evutil_closesocket(fd);
		return;
	}
	c->in = in;
	c->cfg = config_ref(env->cfg);
	c->e = &c->cfg->inbound->v[entry];
	c->id = conn_env_next_id(env);
	c->state = IB_HEADER;
	c->proto = c->e->proxy_versions == PROXYPROTO_V1 ? "proxy-v1" : "proxy-v2";
	event_base_gettimeofday_cached(env->base, &c->started);
	socklen_t ll = sizeof c->local, pl = sizeof c->peer;
	struct cidr_addr pa;
	uint16_t pp = 0;
	if (getsockname(fd, (struct sockaddr *)&c->local, &ll) != 0 ||
	    getpeername(fd, (struct sockaddr *)&c->peer, &pl) != 0 ||
	    !cidr_addr_from_sockaddr((struct sockaddr *)&c->peer, &pa, &pp))
		memset(&pa, 0, sizeof pa);
	cidr_addr_format_port(&pa, pp, c->client_text, sizeof c->client_text);
	c->client = bufferevent_socket_new(env->base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->timer = evtimer_new(env->base, ib_timer_cb, c);
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
	TAILQ_INSERT_TAIL(&in->conns, c, link);
	in->n_conns++;
	bufferevent_setcb(c->client, ib_read_cb, NULL, ib_event_cb, c);
	/* Never more than one header's worth before it is parsed. */
	bufferevent_setwatermark(c->client, EV_READ, 0, PROXYPROTO_MAX);
	bufferevent_enable(c->client, EV_READ | EV_WRITE);
	ib_timer_set(c, c->cfg->handshake_timeout_ms);
	if (c->e->peer_check == INBOUND_PEER_LOOPBACK)
		c->checked = true;
	else if (!ib_check_start(c))
		ib_close(c, "error", "out of memory");
}

/* ---------- public ---------- */

struct inbound *inbound_new(const struct conn_env *env)
{
	struct inbound *in = calloc(1, sizeof *in);
	if (!in)
		return NULL;
	in->env = env;
	TAILQ_INIT(&in->conns);
	return in;
}

void inbound_announce(const struct inbound_entry *e)
{
	char port[40] = "";
	if (e->port)
		snprintf(port, sizeof port, " of tailnet port %u", e->port);
	log_info("inbound %s: listening on %s for tailscale serve%s (PROXY protocol v%d) "
		 "to %s; %zu identity rule%s%s", e->name, e->listen_text, port,
		 e->proxy_versions == PROXYPROTO_V1 ? 1 : 2, e->target, e->n_rules,
		 e->n_rules == 1 ? "" : "s",
		 e->n_rules ? "" : ": every connection will be refused");
	if (e->port)
		log_info("inbound %s: tailscale serve --bg --tcp %u --proxy-protocol %d "
			 "tcp://%s", e->name, e->port, e->proxy_versions == PROXYPROTO_V1 ? 1 : 2,
			 e->listen_text);
	if (e->peer_check == INBOUND_PEER_LOOPBACK)
		log_warn("inbound %s: peer_check loopback: any local process may connect "
			 "and write a PROXY header of its choosing", e->name);
}

size_t inbound_count(const struct inbound *in)
{
	return in ? in->n_conns : 0;
}

void inbound_tailnet_changed(struct inbound *in)
{
	if (in)
		in->n_cache = 0;
}

void inbound_stop(struct inbound *in)
{
	if (!in)
		return;
	struct ib_conn *c, *next;
	for (c = TAILQ_FIRST(&in->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		if (c->state != IB_RELAY)
			ib_close(c, "shutdown", NULL);
	}
}

void inbound_abort_all(struct inbound *in)
{
	while (in && !TAILQ_EMPTY(&in->conns))
		ib_close(TAILQ_FIRST(&in->conns), "shutdown", NULL);
}

void inbound_free(struct inbound *in)
{
	if (!in)
		return;
	inbound_abort_all(in);
	free(in->cache);
	free(in);
}
