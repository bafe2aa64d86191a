/*
 * udp_assoc: a SOCKS5 UDP association (see include/tailfence/udp_assoc.h).
 *
 *   client ──UDP──> relay socket ── source check, rate, header, destination
 *                                   decided once (policy, audit record)
 *     allowed, direct:   direct socket ──> destination
 *     allowed, upstream: upstream socket ──> tailscaled's UDP relay
 *                        (SOCKS5 header with the decided address)
 *   replies come back on the socket they went out on and are forwarded
 *   only when they come from a destination this association allowed.
 *
 * Datagrams for a destination still being resolved, or waiting for the
 * upstream association, wait in a small bounded room; past it they are
 * dropped (and counted), as UDP may be.
 */
#include "tailfence/udp_assoc.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "tailfence/audit.h"
#include "tailfence/config.h"
#include "tailfence/conn_env.h"
#include "tailfence/log.h"
#include "tailfence/metrics.h"
#include "tailfence/resolve.h"
#include "tailfence/socks.h"
#include "tailfence/tailnet.h"
#include "tailfence/target.h"

/* The largest UDP payload, and the header in front of it. */
#define UDP_MAX_DATAGRAM 65535
#define UDP_HEADER_MAX 262
/* Datagrams read per wake-up of one socket, so one busy peer cannot hold
 * the loop. */
#define UDP_READ_BATCH 64
/* The waiting room: datagrams for destinations being resolved or for the
 * upstream association being set up. */
#define UDP_PENDING_MAX 32
#define UDP_PENDING_BYTES (256u << 10)
/* After the upstream association failed, the next datagram for it tries
 * again after this long. */
#define UDP_UPSTREAM_RETRY_US 2000000u

enum udp_dst_state {
	UDP_DST_RESOLVING,
	UDP_DST_ALLOWED,
	UDP_DST_DENIED,
};

struct udp_dst {
	struct udp_assoc *a;
	struct target target;		/* as asked: name or address, and port */
	enum udp_dst_state state;
	struct cidr_addr addr;		/* the decided address (ALLOWED) */
	bool direct;			/* dialed from this host, not via the upstream */
	struct resolve_req *resolve;
};

struct udp_pending {
	struct udp_pending *next;
	size_t dst;			/* index into dsts */
	size_t len;
	uint8_t data[];
};

enum udp_up_state {
	UDP_UP_NONE,
	UDP_UP_GREETING,
	UDP_UP_REPLY,
	UDP_UP_READY,
	UDP_UP_FAILED,
};

struct udp_assoc {
	struct udp_assoc_params p;
	udp_assoc_end_cb end_cb;
	void *end_arg;

	evutil_socket_t client_fd;
	struct event *client_ev;
	bool locked;			/* the client's source port is known */
	uint16_t client_port;

	evutil_socket_t direct_fd[2];	/* [0] IPv4, [1] IPv6; -1 until needed */
	struct event *direct_ev[2];

	enum udp_up_state up_state;
	struct bufferevent *up_ctl;	/* TCP control connection to tailscaled */
	evutil_socket_t up_fd;		/* UDP to its relay */
	struct event *up_ev;
	uint64_t up_failed_us;

	struct udp_dst **dsts;
	size_t n_dsts;

	struct udp_pending *pend_head, *pend_tail;
	size_t n_pend, pend_bytes;

	struct event *idle;
	uint64_t last_us;		/* last datagram relayed either way */
	uint64_t tokens;		/* rate limit, in millionths of a datagram */
	uint64_t tokens_us;		/* when they were last refilled */

	struct udp_assoc_stats st;
	bool counted;			/* in udp_associations_open */
	uint8_t buf[UDP_HEADER_MAX + UDP_MAX_DATAGRAM];
};

static struct metrics *udp_metrics(struct udp_assoc *a)
{
	return a->p.env->metrics;
}

static void udp_drop(struct udp_assoc *a, enum metrics_udp_drop why)
{
	a->st.dropped++;
	udp_metrics(a)->udp_dropped[why]++;
}

/* Ends the association: the owner frees it from inside the callback, so
 * nothing may touch a afterwards. */
static void udp_end(struct udp_assoc *a, const char *end, const char *error)
{
	a->end_cb(a->end_arg, end, error);
}

/* ---------- sockets ---------- */

static evutil_socket_t udp_socket(int family)
{
	evutil_socket_t fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	return fd;
}

/* Sends one datagram to the client: our header, then the payload. */
static void udp_to_client(struct udp_assoc *a, const struct cidr_addr *from, uint16_t port,
			  const uint8_t *data, size_t len)
{
	uint8_t hdr[32];
	size_t hl = socks5_udp_encode(hdr, from, port);
	struct sockaddr_storage ss;
	struct cidr_addr client = a->p.client_addr;
	socklen_t sl = cidr_addr_to_sockaddr(&client, a->client_port, &ss);
	if (a->p.local.ss_family == AF_INET6 && client.family == AF_INET) {
		/* the relay socket is IPv6: reach an IPv4 client as mapped */
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		struct in6_addr m = { 0 };
		m.s6_addr[10] = m.s6_addr[11] = 0xff;
		memcpy(&m.s6_addr[12], client.b, 4);
		memset(s6, 0, sizeof *s6);
		s6->sin6_family = AF_INET6;
		s6->sin6_addr = m;
		s6->sin6_port = htons(a->client_port);
		sl = sizeof *s6;
	}
	struct iovec iov[2] = { { hdr, hl }, { (void *)data, len } };
	struct msghdr mh = { .msg_name = &ss, .msg_namelen = sl, .msg_iov = iov, .msg_iovlen = 2 };
	if (!a->locked || hl == 0 || sendmsg(a->client_fd, &mh, MSG_DONTWAIT) < 0) {
		udp_drop(a, METRICS_UDP_UPSTREAM);
		return;
	}
	a->st.datagrams_down++;
	a->st.bytes_down += len;
	udp_metrics(a)->udp_datagrams_down++;
	udp_metrics(a)->udp_bytes_down += len;
	a->last_us = metrics_now_us();
}

static struct udp_dst *udp_find_reply(struct udp_assoc *a, const struct cidr_addr *from,
				      uint16_t port, bool direct)
{
	for (size_t i = 0; i < a->n_dsts; i++) {
		struct udp_dst *d = a->dsts[i];
		if (d->state == UDP_DST_ALLOWED && d->direct == direct &&
		    d->target.port == port && cidr_addr_equal(&d->addr, from))
			return d;
	}
	return NULL;
}

static void udp_direct_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct udp_assoc *a = arg;
	(void)what;
	for (int i = 0; i < UDP_READ_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		ssize_t n = recvfrom(fd, a->buf, UDP_MAX_DATAGRAM, 0, (struct sockaddr *)&ss, &sl);
		if (n < 0)
			return;
		struct cidr_addr from;
		uint16_t port;
		if (!cidr_addr_from_sockaddr((struct sockaddr *)&ss, &from, &port) ||
		    !udp_find_reply(a, &from, port, true)) {
			udp_drop(a, METRICS_UDP_UNEXPECTED);
			continue;
		}
		udp_to_client(a, &from, port, a->buf, (size_t)n);
	}
}

static void udp_up_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct udp_assoc *a = arg;
	(void)what;
	for (int i = 0; i < UDP_READ_BATCH; i++) {
		ssize_t n = recv(fd, a->buf, sizeof a->buf, 0);
		if (n < 0)
			return;
		struct socks5_udp_header h;
		const char *why;
		if (socks5_udp_parse(a->buf, (size_t)n, &h, &why) != SOCKS_REQUEST || h.frag ||
		    h.dst.is_name) {
			udp_drop(a, METRICS_UDP_MALFORMED);
			continue;
		}
		if (!udp_find_reply(a, &h.dst.addr, h.dst.port, false)) {
			udp_drop(a, METRICS_UDP_UNEXPECTED);
			continue;
		}
		udp_to_client(a, &h.dst.addr, h.dst.port, a->buf + h.len, (size_t)n - h.len);
	}
}

static bool udp_direct_ready(struct udp_assoc *a, int family)
{
	int i = family == AF_INET6;
	if (a->direct_fd[i] >= 0)
		return true;
	evutil_socket_t fd = udp_socket(family);
	if (fd < 0)
		return false;
	struct event *ev = event_new(a->p.env->base, fd, EV_READ | EV_PERSIST, udp_direct_read_cb, a);
	if (!ev || event_add(ev, NULL) != 0) {
		if (ev)
			event_free(ev);
		close(fd);
		return false;
	}
	a->direct_fd[i] = fd;
	a->direct_ev[i] = ev;
	return true;
}

/* Sends a payload on to an allowed destination (or drops it). */
static void udp_forward(struct udp_assoc *a, struct udp_dst *d, const uint8_t *data, size_t len)
{
	ssize_t n;
	if (d->direct) {
		if (!udp_direct_ready(a, d->addr.family)) {
			udp_drop(a, METRICS_UDP_UPSTREAM);
			return;
		}
		struct sockaddr_storage ss;
		socklen_t sl = cidr_addr_to_sockaddr(&d->addr, d->target.port, &ss);
		n = sendto(a->direct_fd[d->addr.family == AF_INET6], data, len, MSG_DONTWAIT,
			   (struct sockaddr *)&ss, sl);
	} else {
		uint8_t hdr[32];
		size_t hl = socks5_udp_encode(hdr, &d->addr, d->target.port);
		struct iovec iov[2] = { { hdr, hl }, { (void *)data, len } };
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
		n = sendmsg(a->up_fd, &mh, MSG_DONTWAIT);
	}
	if (n < 0) {
		udp_drop(a, METRICS_UDP_UPSTREAM);
		return;
	}
	a->st.datagrams_up++;
	a->st.bytes_up += len;
	udp_metrics(a)->udp_datagrams_up++;
	udp_metrics(a)->udp_bytes_up += len;
	a->last_us = metrics_now_us();
}

/* ---------- the waiting room ---------- */

static void udp_pend(struct udp_assoc *a, size_t dst, const uint8_t *data, size_t len)
{
	if (a->n_pend >= UDP_PENDING_MAX || a->pend_bytes + len > UDP_PENDING_BYTES) {
		udp_drop(a, METRICS_UDP_PENDING);
		return;
	}
	struct udp_pending *p = malloc(sizeof *p + len);
	if (!p) {
		udp_drop(a, METRICS_UDP_PENDING);
		return;
	}
	p->next = NULL;
	p->dst = dst;
	p->len = len;
	memcpy(p->data, data, len);
	if (a->pend_tail)
		a->pend_tail->next = p;
	else
		a->pend_head = p;
	a->pend_tail = p;
	a->n_pend++;
	a->pend_bytes += len;
}

static void udp_send_or_wait(struct udp_assoc *a, size_t i, const uint8_t *data, size_t len);

/* Something changed (a name resolved, the upstream is ready or failed):
 * each waiting datagram goes on, waits again, or is dropped. */
static void udp_pending_retry(struct udp_assoc *a)
{
	struct udp_pending *p = a->pend_head;
	a->pend_head = a->pend_tail = NULL;
	a->n_pend = 0;
	a->pend_bytes = 0;
	while (p) {
		struct udp_pending *next = p->next;
		udp_send_or_wait(a, p->dst, p->data, p->len);
		free(p);
		p = next;
	}
}

/* ---------- the upstream association (tailscaled's SOCKS5) ---------- */

static void udp_up_fail(struct udp_assoc *a, const char *why)
{
	log_warn("conn %llu: UDP association through %s failed: %s",
		 (unsigned long long)a->p.conn_id, a->p.cfg->upstream.text, why);
	if (a->up_ctl) {
		bufferevent_free(a->up_ctl);
		a->up_ctl = NULL;
	}
	a->up_state = UDP_UP_FAILED;
	a->up_failed_us = metrics_now_us();
	udp_pending_retry(a);	/* what waited for it is dropped now */
}

static bool udp_up_relay(struct udp_assoc *a, struct cidr_addr *bnd, uint16_t port)
{
	const struct config_upstream *up = &a->p.cfg->upstream;
	static const uint8_t zero[16];
	/* A server that names no address means its own. */
	if (!bnd->family || memcmp(bnd->b, zero, bnd->family == AF_INET ? 4 : 16) == 0)
		*bnd = up->addr;
	evutil_socket_t fd = udp_socket(bnd->family == AF_INET6 ? AF_INET6 : AF_INET);
	if (fd < 0)
		return false;
	struct sockaddr_storage ss;
	socklen_t sl = cidr_addr_to_sockaddr(bnd, port, &ss);
	struct event *ev = event_new(a->p.env->base, fd, EV_READ | EV_PERSIST, udp_up_read_cb, a);
	if (sl == 0 || connect(fd, (struct sockaddr *)&ss, sl) != 0 || !ev ||
	    event_add(ev, NULL) != 0) {
		if (ev)
			event_free(ev);
		close(fd);
		return false;
	}
	a->up_fd = fd;
	a->up_ev = ev;
	return true;
}

static void udp_up_read_ctl_cb(struct bufferevent *bev, void *arg)
{
	struct udp_assoc *a = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in);
	const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)(len < 262 ? len : 262));
	size_t consumed = 0;
	if (a->up_state == UDP_UP_GREETING) {
		uint8_t method;
		enum socks_step st = socks5_client_parse_method(p, len, &consumed, &method);
		if (st == SOCKS_NEED_MORE)
			return;
		if (st == SOCKS_ERROR || method != SOCKS_METHOD_NOAUTH) {
			udp_up_fail(a, "the upstream refused the no-auth method");
			return;
		}
		evbuffer_drain(in, consumed);
		uint8_t req[16];
		bufferevent_write(bev, req, socks5_client_udp_associate(req));
		a->up_state = UDP_UP_REPLY;
		return;
	}
	if (a->up_state == UDP_UP_REPLY) {
		uint8_t rep;
		struct cidr_addr bnd;
		uint16_t bnd_port;
		enum socks_step st = socks5_client_parse_reply(p, len < 262 ? len : 262, &consumed,
							       &rep, &bnd, &bnd_port);
		if (st == SOCKS_NEED_MORE)
			return;
		if (st == SOCKS_ERROR) {
			udp_up_fail(a, "malformed reply to UDP ASSOCIATE");
			return;
		}
		evbuffer_drain(in, consumed);
		if (rep != SOCKS5_REP_SUCCEEDED) {
			udp_up_fail(a, socks5_rep_str(rep));
			return;
		}
		if (!udp_up_relay(a, &bnd, bnd_port)) {
			udp_up_fail(a, strerror(errno));
			return;
		}
		/* The control connection only has to stay open now. */
		bufferevent_set_timeouts(bev, NULL, NULL);
		a->up_state = UDP_UP_READY;
		udp_pending_retry(a);
		return;
	}
	evbuffer_drain(in, len);
}

static void udp_up_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct udp_assoc *a = arg;
	if (what & BEV_EVENT_CONNECTED) {
		uint8_t g[4];
		bufferevent_write(bev, g, socks5_client_greeting(g, false));
		bufferevent_enable(bev, EV_READ);
		a->up_state = UDP_UP_GREETING;
		return;
	}
	if (a->up_state == UDP_UP_READY) {
		/* tailscaled ends its association with this connection */
		udp_end(a, "upstream_eof", "the upstream closed its UDP association");
		return;
	}
	char why[160];
	int err = EVUTIL_SOCKET_ERROR();
	snprintf(why, sizeof why, "%s", (what & BEV_EVENT_TIMEOUT) ? "timed out"
		 : (what & BEV_EVENT_EOF) ? "connection closed" : strerror(err ? err : ECONNREFUSED));
	udp_up_fail(a, why);
}

static void udp_up_start(struct udp_assoc *a)
{
	const struct config_upstream *up = &a->p.cfg->upstream;
	struct sockaddr_storage ss;
	socklen_t sl = cidr_addr_to_sockaddr(&up->addr, up->port, &ss);
	a->up_ctl = bufferevent_socket_new(a->p.env->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!a->up_ctl) {
		udp_up_fail(a, "out of memory");
		return;
	}
	unsigned ms = a->p.cfg->connect_timeout_ms;
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	bufferevent_set_timeouts(a->up_ctl, &tv, &tv);
	bufferevent_setcb(a->up_ctl, udp_up_read_ctl_cb, NULL, udp_up_event_cb, a);
	a->up_state = UDP_UP_GREETING;
	if (bufferevent_socket_connect(a->up_ctl, (struct sockaddr *)&ss, (int)sl) < 0)
		udp_up_fail(a, strerror(errno ? errno : ECONNREFUSED));
}

/* ---------- decisions ---------- */

static void udp_record(struct udp_assoc *a, struct udp_dst *d, const struct target_verdict *v,
		       const struct policy_decision *dd, const char *reason, bool allow)
{
	char addr_text[CIDR_ADDR_STRLEN], route[CIDR_PREFIX_STRLEN];
	if (v)
		dd = &v->d;
	const struct tailnet_entry *carrier = dd ? dd->carrier : NULL;
	struct audit_decision rec = {
		.conn_id = a->p.conn_id,
		.client = a->p.client_text,
		.listener = a->p.listener_text,
		.proto = "socks5-udp",
		.user = a->p.user,
		.host = d->target.host[0] ? d->target.host : NULL,
		.port = d->target.port,
		.addr = v && v->shown.family ? cidr_addr_format(&v->shown, addr_text,
								sizeof addr_text) : NULL,
		.allow = allow,
		.rule = dd ? dd->rule_text : NULL,
		.guard = dd ? dd->guard : NULL,
		.reason = reason ? reason : dd ? dd->reason : NULL,
		.upstream = !allow ? NULL : d->direct && dd->via == POLICY_VIA_DIRECT ? "direct"
			    : a->p.cfg->upstream.text,
		.path = v ? target_path_str(v->path) : NULL,
		.peer_name = dd && dd->peer ? dd->peer->name : NULL,
		.peer_id = dd && dd->peer ? dd->peer->id : NULL,
		.peer_route = carrier && carrier->kind != TAILNET_CARRY_ADDRESS
				      ? cidr_prefix_format(&carrier->prefix, route, sizeof route)
				      : NULL,
	};
	bool written = audit_decision(a->p.env->audit, &rec);
	static const struct policy_decision fail_closed = { .rule = -1, .guard = "audit" };
	bool before_policy = !dd || (dd->rule < 0 && !dd->guard && !dd->reason[0]);
	metrics_decision(udp_metrics(a), a->p.cfg->policy, METRICS_PROTO_SOCKS5_UDP,
			 !written ? &fail_closed : before_policy ? NULL : dd, allow && written,
			 d->target.is_name ? METRICS_ERROR_DNS : METRICS_ERROR_TARGET);
	if (allow && !written) {
		log_warn("conn %llu: UDP destination %s:%u refused: the audit trail cannot be "
			 "written", (unsigned long long)a->p.conn_id, d->target.host, d->target.port);
		d->state = UDP_DST_DENIED;
	}
}

static void udp_who(struct udp_assoc *a, struct policy_query *q)
{
	memset(q, 0, sizeof *q);
	q->user = a->p.user;
	q->src = a->p.client_addr;
	q->view = a->p.env->view;
}

static void udp_deny(struct udp_assoc *a, struct udp_dst *d, const struct target_verdict *v,
		     const struct policy_decision *dd, const char *reason)
{
	d->state = UDP_DST_DENIED;
	udp_record(a, d, v, dd, reason, false);
	log_info("conn %llu: %s denied UDP to %s:%u: %s", (unsigned long long)a->p.conn_id,
		 a->p.client_text, d->target.host, d->target.port,
		 reason ? reason : v ? v->d.reason : dd ? dd->reason : "");
}

static void udp_decide(struct udp_assoc *a, struct udp_dst *d, const struct cidr_addr *addrs,
		       size_t n)
{
	struct policy_query who;
	struct target_verdict v;
	const struct config *c = a->p.cfg;
	udp_who(a, &who);
	target_decide(c->policy, &d->target, &who, addrs, n,
		      c->upstream.kind == CONFIG_UPSTREAM_DIRECT, NULL, NULL, &v);
	if (v.n_allowed == 0) {
		udp_deny(a, d, &v, NULL, NULL);
		return;
	}
	d->addr = v.allowed[0];
	d->direct = v.via[0] == POLICY_VIA_DIRECT || c->upstream.kind == CONFIG_UPSTREAM_DIRECT;
	d->state = UDP_DST_ALLOWED;
	udp_record(a, d, &v, NULL, NULL, true);
}

static void udp_resolve_cb(void *arg, const struct resolve_result *res)
{
	struct udp_dst *d = arg;
	struct udp_assoc *a = d->a;
	d->resolve = NULL;
	struct metrics *m = udp_metrics(a);
	m->dns_lookups++;
	m->dns_failures += res->error != 0;
	metrics_observe(&m->dns, res->elapsed_us);
	if (res->error) {
		char why[400];
		snprintf(why, sizeof why, "cannot resolve %s: %s", d->target.host, res->error_text);
		udp_deny(a, d, NULL, NULL, why);
	} else {
		udp_decide(a, d, res->addrs, res->n);
	}
	udp_pending_retry(a);
}

size_t udp_assoc_recheck(struct udp_assoc *a, const struct tailnet_view *view)
{
	size_t revoked = 0;
	for (size_t i = 0; a && i < a->n_dsts; i++) {
		struct udp_dst *d = a->dsts[i];
		if (d->state != UDP_DST_ALLOWED)
			continue;
		struct policy_query q;
		struct policy_decision dd;
		udp_who(a, &q);
		q.view = view;
		q.host = d->target.is_name ? d->target.host : NULL;
		q.dst = d->addr;
		q.port = d->target.port;
		policy_decide(a->p.cfg->policy, &q, &dd);
		if (dd.action == POLICY_ACCEPT)
			continue;
		char why[sizeof dd.reason + 32];
		snprintf(why, sizeof why, "no longer allowed: %s", dd.reason);
		udp_deny(a, d, NULL, &dd, why);
		revoked++;
	}
	return revoked;
}

/* A destination seen for the first time: decided now, or once its name
 * resolved. Returns its index, or SIZE_MAX when it cannot be kept. */
static size_t udp_new_dst(struct udp_assoc *a, const struct socks_target *t)
{
	if (a->n_dsts >= a->p.cfg->udp_destinations)
		return SIZE_MAX;
	struct udp_dst **grown = realloc(a->dsts, (a->n_dsts + 1) * sizeof *grown);
	if (!grown)
		return SIZE_MAX;
	a->dsts = grown;
	struct udp_dst *d = calloc(1, sizeof *d);
	if (!d)
		return SIZE_MAX;
	d->a = a;
	size_t i = a->n_dsts++;
	a->dsts[i] = d;

	char why[400];
	char text[CIDR_ADDR_STRLEN];
	const char *host = t->is_name ? t->host : cidr_addr_format(&t->addr, text, sizeof text);
	size_t hlen = t->is_name ? t->host_len : strlen(text);
	if (!target_parse(&d->target, host, hlen, t->port, why, sizeof why)) {
		size_t n = strnlen(host, hlen < sizeof d->target.host ? hlen
							      : sizeof d->target.host - 1);
		memcpy(d->target.host, host, n);
		d->target.host[n] = '\0';
		d->target.port = t->port;
		struct policy_decision dd = { .action = POLICY_DENY, .rule = -1 };
		udp_deny(a, d, NULL, &dd, why);
		return i;
	}
	if (!d->target.is_name) {
		udp_decide(a, d, &d->target.addr, 1);
		return i;
	}
	struct policy_query who;
	struct target_verdict v;
	udp_who(a, &who);
	if (!target_precheck(a->p.cfg->policy, &d->target, &who, &v)) {
		udp_deny(a, d, NULL, &v.d, NULL);
		return i;
	}
	d->state = UDP_DST_RESOLVING;
	struct resolve_tailnet tn = { who.view, a->p.cfg->tailscaled_socket };
	d->resolve = resolve_start(a->p.env->resolver, &tn, d->target.host, &a->p.client_addr,
				   a->p.cfg->dns_timeout_ms, udp_resolve_cb, d);
	if (!d->resolve)
		udp_deny(a, d, NULL, NULL, "out of memory");
	return i;
}

static void udp_send_or_wait(struct udp_assoc *a, size_t i, const uint8_t *data, size_t len)
{
	struct udp_dst *d = a->dsts[i];
	switch (d->state) {
	case UDP_DST_DENIED:
		udp_drop(a, METRICS_UDP_DENIED);
		return;
	case UDP_DST_RESOLVING:
		udp_pend(a, i, data, len);
		return;
	case UDP_DST_ALLOWED:
		break;
	}
	if (d->direct) {
		udp_forward(a, d, data, len);
		return;
	}
	switch (a->up_state) {
	case UDP_UP_READY:
		udp_forward(a, d, data, len);
		return;
	case UDP_UP_FAILED:
		if (metrics_now_us() - a->up_failed_us < UDP_UPSTREAM_RETRY_US) {
			udp_drop(a, METRICS_UDP_UPSTREAM);
			return;
		}
		udp_pend(a, i, data, len);
		udp_up_start(a);
		return;
	case UDP_UP_NONE:
		udp_pend(a, i, data, len);
		udp_up_start(a);
		return;
	case UDP_UP_GREETING:
	case UDP_UP_REPLY:
		udp_pend(a, i, data, len);
		return;
	}
}

static struct udp_dst *udp_lookup(struct udp_assoc *a, const struct socks_target *t, size_t *idx)
{
	for (size_t i = 0; i < a->n_dsts; i++) {
		const struct target *k = &a->dsts[i]->target;
		if (k->port != t->port)
			continue;
		bool same = t->is_name ? k->is_name && strcmp(k->host, t->host) == 0
				       : !k->is_name && cidr_addr_equal(&k->addr, &t->addr);
		if (same) {
			*idx = i;
			return a->dsts[i];
		}
	}
	return NULL;
}

/* ---------- the client's side ---------- */

static bool udp_rate_ok(struct udp_assoc *a)
{
	uint64_t rate = a->p.cfg->udp_rate;
	uint64_t cap = rate * 1000000u;
	uint64_t now = metrics_now_us();
	uint64_t add = (now - a->tokens_us) * rate;
	a->tokens_us = now;
	a->tokens = a->tokens + add > cap ? cap : a->tokens + add;
	if (a->tokens < 1000000u)
		return false;
	a->tokens -= 1000000u;
	return true;
}

static void udp_client_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct udp_assoc *a = arg;
	(void)what;
	for (int r = 0; r < UDP_READ_BATCH; r++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		ssize_t n = recvfrom(fd, a->buf, sizeof a->buf, 0, (struct sockaddr *)&ss, &sl);
		if (n < 0)
			return;
		struct cidr_addr from;
		uint16_t port;
		/* Only the control connection's client, from the address and
		 * port it named (if it did), and from one port once known. */
		if (!cidr_addr_from_sockaddr((struct sockaddr *)&ss, &from, &port) ||
		    !cidr_addr_equal(&from, &a->p.client_addr) ||
		    (a->p.want_port && port != a->p.want_port) ||
		    (a->locked && port != a->client_port)) {
			udp_drop(a, METRICS_UDP_SPOOFED);
			continue;
		}
		if (!udp_rate_ok(a)) {
			udp_drop(a, METRICS_UDP_RATE);
			continue;
		}
		struct socks5_udp_header h;
		const char *why;
		if (socks5_udp_parse(a->buf, (size_t)n, &h, &why) != SOCKS_REQUEST) {
			udp_drop(a, METRICS_UDP_MALFORMED);
			continue;
		}
		if (h.frag) {
			udp_drop(a, METRICS_UDP_FRAGMENT);
			continue;
		}
		if (!a->locked) {
			a->locked = true;
			a->client_port = port;
		}
		size_t i;
		if (!udp_lookup(a, &h.dst, &i)) {
			i = udp_new_dst(a, &h.dst);
			if (i == SIZE_MAX) {
				udp_drop(a, METRICS_UDP_DESTINATIONS);
				continue;
			}
		}
		udp_send_or_wait(a, i, a->buf + h.len, (size_t)n - h.len);
	}
}

static void udp_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct udp_assoc *a = arg;
	(void)fd;
	(void)what;
	uint64_t idle = (uint64_t)a->p.cfg->udp_idle_timeout_ms * 1000u;
	uint64_t quiet = metrics_now_us() - a->last_us;
	if (quiet >= idle) {
		udp_end(a, "idle_timeout", NULL);
		return;
	}
	uint64_t left = idle - quiet;
	struct timeval tv = { (time_t)(left / 1000000u), (suseconds_t)(left % 1000000u) };
	evtimer_add(a->idle, &tv);
}

/* ---------- public ---------- */

struct udp_assoc *udp_assoc_start(const struct udp_assoc_params *p, udp_assoc_end_cb cb,
				  void *arg, struct cidr_addr *bnd, uint16_t *bnd_port, char *err,
				  size_t errlen)
{
	struct udp_assoc *a = calloc(1, sizeof *a);
	if (!a) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->p = *p;
	a->end_cb = cb;
	a->end_arg = arg;
	a->client_fd = a->up_fd = -1;
	a->direct_fd[0] = a->direct_fd[1] = -1;
	a->last_us = a->tokens_us = metrics_now_us();
	a->tokens = (uint64_t)p->cfg->udp_rate * 1000000u;

	/* The relay listens where the client reached the listener. */
	struct sockaddr_storage ss = p->local;
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = 0;
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = 0;
	a->client_fd = udp_socket(ss.ss_family);
	socklen_t sl = p->local_len;
	if (a->client_fd < 0 || bind(a->client_fd, (struct sockaddr *)&ss, sl) != 0 ||
	    getsockname(a->client_fd, (struct sockaddr *)&ss, &sl) != 0) {
		snprintf(err, errlen, "cannot bind a UDP relay socket: %s", strerror(errno));
		udp_assoc_free(a);
		return NULL;
	}
	cidr_addr_from_sockaddr((struct sockaddr *)&ss, bnd, bnd_port);
	a->client_ev = event_new(p->env->base, a->client_fd, EV_READ | EV_PERSIST,
				 udp_client_read_cb, a);
	a->idle = evtimer_new(p->env->base, udp_idle_cb, a);
	if (!a->client_ev || !a->idle || event_add(a->client_ev, NULL) != 0) {
		snprintf(err, errlen, "out of memory");
		udp_assoc_free(a);
		return NULL;
	}
	unsigned ms = p->cfg->udp_idle_timeout_ms;
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(a->idle, &tv);
	struct metrics *m = udp_metrics(a);
	m->udp_associations++;
	m->udp_open++;
	a->counted = true;
	return a;
}

void udp_assoc_get_stats(const struct udp_assoc *a, struct udp_assoc_stats *out)
{
	*out = a->st;
	out->destinations = a->n_dsts;
}

void udp_assoc_free(struct udp_assoc *a)
{
	if (!a)
		return;
	if (a->counted)
		udp_metrics(a)->udp_open--;
	if (a->client_ev)
		event_free(a->client_ev);
	if (a->client_fd >= 0)
		close(a->client_fd);
	for (int i = 0; i < 2; i++) {
		if (a->direct_ev[i])
			event_free(a->direct_ev[i]);
		if (a->direct_fd[i] >= 0)
			close(a->direct_fd[i]);
	}
	if (a->up_ev)
		event_free(a->up_ev);
	if (a->up_fd >= 0)
		close(a->up_fd);
	if (a->up_ctl)
		bufferevent_free(a->up_ctl);
	if (a->idle)
		event_free(a->idle);
	for (size_t i = 0; i < a->n_dsts; i++) {
		if (a->dsts[i]->resolve)
			resolve_cancel(a->dsts[i]->resolve);
		free(a->dsts[i]);
	}
	free(a->dsts);
	struct udp_pending *p = a->pend_head;
	while (p) {
		struct udp_pending *next = p->next;
		free(p);
		p = next;
	}
	free(a);
}
