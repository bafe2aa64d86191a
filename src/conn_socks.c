/*
 * conn_socks: the SOCKS side of a connection (see src/conn_internal.h):
 * reading the SOCKS5 and SOCKS4/4a handshake with the pure parser
 * (socks.c), the login a SOCKS5 client asks for, the answers of each
 * version, and UDP ASSOCIATE, after which the connection only lives on as
 * the association's control connection (udp_assoc.c).
 *
 *   greeting (unnamed) -> socks5 | socks4 | socks4a | socks5-udp
 */
#include "conn_internal.h"

#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/crypto.h>

#include "tailfence/auth.h"
#include "tailfence/config.h"
#include "tailfence/conn_env.h"
#include "tailfence/log.h"
#include "tailfence/policy.h"
#include "tailfence/udp_assoc.h"
#include "tailfence/upstream.h"

/* Longest SOCKS message: a SOCKS4a request with a 255-byte user id and a
 * 255-byte name. Anything still incomplete past this is not SOCKS. */
#define CONN_SOCKS_MAX_MESSAGE 600

static void conn_socks_read(struct conn *c);

/* SOCKS5's answer to each failure. */
static const uint8_t conn_socks5_rep[CONN_FAIL_COUNT] = {
	[CONN_FAIL_DENIED] = SOCKS5_REP_NOT_ALLOWED,
	[CONN_FAIL_REFUSED] = SOCKS5_REP_CONN_REFUSED,
	[CONN_FAIL_NET_UNREACHABLE] = SOCKS5_REP_NET_UNREACHABLE,
	[CONN_FAIL_HOST_UNREACHABLE] = SOCKS5_REP_HOST_UNREACHABLE,
	[CONN_FAIL_TIMEOUT] = SOCKS5_REP_TTL_EXPIRED,
	[CONN_FAIL_GENERAL] = SOCKS5_REP_GENERAL_FAILURE,
	[CONN_FAIL_AUTH] = SOCKS5_REP_NOT_ALLOWED,
	[CONN_FAIL_BUSY] = SOCKS5_REP_GENERAL_FAILURE,
};

static void conn_socks5_refuse(struct conn *c, enum conn_failure f, const char *why)
{
	(void)why;
	uint8_t out[32];
	conn_send(c, out, socks5_encode_reply(out, conn_socks5_rep[f], NULL, 0));
}

static void conn_socks4_refuse(struct conn *c, enum conn_failure f, const char *why)
{
	(void)f;
	(void)why;
	uint8_t out[32];
	conn_send(c, out, socks4_encode_reply(out, false, NULL, 0));
}

static void conn_socks5_connected(struct conn *c, const struct upstream_result *res,
				  struct relay_params *p)
{
	(void)p;
	uint8_t out[32];
	conn_send(c, out, socks5_encode_reply(out, SOCKS5_REP_SUCCEEDED, &res->bnd, res->bnd_port));
}

static void conn_socks4_connected(struct conn *c, const struct upstream_result *res,
				  struct relay_params *p)
{
	(void)p;
	uint8_t out[32];
	/* SOCKS4 can only carry an IPv4 bound address. */
	bool v4 = res->bnd.family == AF_INET;
	conn_send(c, out, socks4_encode_reply(out, true, v4 ? &res->bnd : NULL,
					      v4 ? res->bnd_port : 0));
}

static void conn_socks5_login_ok(struct conn *c)
{
	socks5_server_auth_result(&c->ps->socks, true);
	conn_send(c, c->ps->socks.out, c->ps->socks.out_len);
	c->ps->socks.out_len = 0;
	c->state = CONN_REQUEST;
	bufferevent_enable(c->client, EV_READ);
	conn_socks_read(c);	/* the request may be buffered already */
}

static void conn_socks5_login_failed(struct conn *c, const char *busy)
{
	(void)busy;	/* RFC 1929 has one failure status */
	socks5_server_auth_result(&c->ps->socks, false);
	conn_send(c, c->ps->socks.out, c->ps->socks.out_len);
	conn_flush_close(c, "auth_failed");
}

static void conn_socks_clear(struct conn *c)
{
	socks_server_wipe(&c->ps->socks);
}

/* The greeting, until a request (or a login) says the version. */
static const struct conn_proto conn_proto_socks = {
	.name = NULL, .metric = METRICS_PROTO_NONE,
	.read = conn_socks_read,
	.clear = conn_socks_clear,
};

static const struct conn_proto conn_proto_socks5 = {
	.name = "socks5", .metric = METRICS_PROTO_SOCKS5,
	.read = conn_socks_read,
	.login_ok = conn_socks5_login_ok,
	.login_failed = conn_socks5_login_failed,
	.connected = conn_socks5_connected,
	.refuse = conn_socks5_refuse,
	.clear = conn_socks_clear,
};

/* SOCKS4 has no login: with users, its requests are refused. */
static const struct conn_proto conn_proto_socks4 = {
	.name = "socks4", .metric = METRICS_PROTO_SOCKS4,
	.read = conn_socks_read,
	.connected = conn_socks4_connected,
	.refuse = conn_socks4_refuse,
	.clear = conn_socks_clear,
};

static const struct conn_proto conn_proto_socks4a = {
	.name = "socks4a", .metric = METRICS_PROTO_SOCKS4A,
	.read = conn_socks_read,
	.connected = conn_socks4_connected,
	.refuse = conn_socks4_refuse,
	.clear = conn_socks_clear,
};

/* A UDP association's control connection: it dials nothing; after the
 * reply it only idles (CONN_UDP). */
static const struct conn_proto conn_proto_socks5_udp = {
	.name = "socks5-udp", .metric = METRICS_PROTO_SOCKS5_UDP,
	.refuse = conn_socks5_refuse,
	.clear = conn_socks_clear,
};

void conn_socks_begin(struct conn *c)
{
	/* With users, only username/password; without, no-auth whenever the
	 * client offers it (no credentials to check). */
	bool auth = auth_users_count(c->cfg->users) > 0;
	socks_server_init(&c->ps->socks, !auth, auth);
	c->ps->socks.allow_udp = c->cfg->udp;
	c->proto = &conn_proto_socks;
	c->state = CONN_REQUEST;
}

/* The association ended by itself (idle, upstream gone). */
static void conn_udp_end(void *arg, const char *end, const char *error)
{
	conn_close(arg, end, error);
}

/* UDP ASSOCIATE: the association module takes the datagrams; this
 * connection only lives on as its control connection. */
static void conn_udp_start(struct conn *c)
{
	char err[200];
	uint8_t out[32];
	c->proto = &conn_proto_socks5_udp;
	if (c->cfg->upstream.kind == CONFIG_UPSTREAM_HTTP) {
		snprintf(c->last_error, sizeof c->last_error,
			 "UDP ASSOCIATE needs a socks5 or direct upstream, not %.80s",
			 c->cfg->upstream.text);
		conn_send(c, out, socks5_encode_reply(out, SOCKS5_REP_CMD_UNSUPPORTED, NULL, 0));
		conn_flush_close(c, "protocol_error");
		return;
	}
	struct udp_assoc_params p = {
		.env = c->env, .cfg = c->cfg, .conn_id = c->id,
		.client_text = c->client_text, .listener_text = c->listener_text,
		.user = c->user[0] ? c->user : NULL, .client_addr = c->client_addr,
		.want_port = c->ps->socks.target.is_name ? 0 : c->ps->socks.target.port,
		.local_len = sizeof p.local,
	};
	struct cidr_addr bnd;
	uint16_t bnd_port;
	if (getsockname(bufferevent_getfd(c->client), (struct sockaddr *)&p.local,
			&p.local_len) != 0 ||
	    !(c->udp = udp_assoc_start(&p, conn_udp_end, c, &bnd, &bnd_port, err, sizeof err))) {
		conn_fail(c, CONN_FAIL_GENERAL, c->udp ? err : "cannot read the local address");
		return;
	}
	metrics_observe(&c->env->metrics->handshake, metrics_now_us() - c->started_us);
	evtimer_del(c->timer);
	c->state = CONN_UDP;
	log_debug("conn %llu: UDP association on %s port %u", (unsigned long long)c->id,
		  c->listener_text, bnd_port);
	conn_send(c, out, socks5_encode_reply(out, SOCKS5_REP_SUCCEEDED, &bnd, bnd_port));
	bufferevent_enable(c->client, EV_READ);
}

static void conn_socks_request(struct conn *c)
{
	struct socks_server *s = &c->ps->socks;

	if (s->version == 5 && s->cmd == SOCKS_CMD_UDP_ASSOCIATE) {
		conn_udp_start(c);
		return;
	}

	if (s->version == 4) {
		c->proto = s->socks4a ? &conn_proto_socks4a : &conn_proto_socks4;
		/* The SOCKS4 user id is what the client calls itself: recorded,
		 * never trusted. Without passwords there is no login. */
		c->userid = s->user;
		if (auth_users_count(c->cfg->users) > 0) {
			/* A refusal like any other: a decision naming the target. */
			if (s->target.is_name)
				snprintf(c->target.host, sizeof c->target.host, "%s", s->target.host);
			else
				cidr_addr_format(&s->target.addr, c->target.host, sizeof c->target.host);
			c->target.port = s->target.port;
			struct policy_decision d = { .action = POLICY_DENY, .rule = -1, .guard = "auth" };
			conn_refuse(c, CONN_FAIL_AUTH, &d,
				    "authentication required: SOCKS4 cannot carry a password; use SOCKS5 or HTTP");
			return;
		}
	}
	bool ok = s->target.is_name
			  ? conn_set_target(c, s->target.host, s->target.host_len, s->target.port)
			  : (conn_set_target_addr(c, &s->target.addr, s->target.port), true);
	if (ok)
		conn_target_ready(c);
}

static void conn_socks_read(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->client);
	struct socks_server *s = &c->ps->socks;

	while (c->state == CONN_REQUEST) {
		size_t len = evbuffer_get_length(in);
		size_t look = len < CONN_SOCKS_MAX_MESSAGE ? len : CONN_SOCKS_MAX_MESSAGE;
		const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)look);
		size_t used = 0;
		enum socks_step st = socks_server_feed(s, p, look, &used);
		if (st == SOCKS_AUTH)	/* the credentials as sent */
			OPENSSL_cleanse((void *)(uintptr_t)p, used);
		evbuffer_drain(in, used);

		switch (st) {
		case SOCKS_NEED_MORE:
			if (look == CONN_SOCKS_MAX_MESSAGE) {
				conn_close(c, "protocol_error", "SOCKS message too long");
			}
			return;
		case SOCKS_REPLY:
			conn_send(c, s->out, s->out_len);
			s->out_len = 0;
			break;
		case SOCKS_AUTH:
			c->proto = &conn_proto_socks5;
			conn_login(c, s->user, s->pass, sizeof s->pass);
			return;
		case SOCKS_REQUEST:
			if (s->version == 5)
				c->proto = &conn_proto_socks5;
			conn_socks_request(c);
			return;
		case SOCKS_ERROR:
			if (s->version == 5 && c->proto == &conn_proto_socks)
				c->proto = &conn_proto_socks5;
			snprintf(c->last_error, sizeof c->last_error, "%s",
				 s->why ? s->why : "SOCKS protocol error");
			log_info("conn %llu: %s: %s", (unsigned long long)c->id, c->client_text,
				 c->last_error);
			conn_send(c, s->out, s->out_len);
			conn_flush_close(c, "protocol_error");
			return;
		}
	}
}
