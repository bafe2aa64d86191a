/*
 * conn_http: the HTTP side of a connection (see src/conn_internal.h):
 * reading a proxy request head with the pure parser (httpproxy.c), its
 * Basic login, the answers (status codes, 407 with a challenge, 503 with
 * Retry-After), and for an absolute-form request the head sent on to the
 * origin and the limit that stops the relay at the end of its body.
 *
 *   head (unnamed) -> http-connect | http
 */
#include "conn_internal.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <openssl/crypto.h>

#include "tailfence/auth.h"
#include "tailfence/config.h"
#include "tailfence/log.h"
#include "tailfence/policy.h"
#include "tailfence/relay.h"
#include "tailfence/text.h"
#include "tailfence/upstream.h"

static void conn_http_read(struct conn *c);

static void conn_http_error(struct conn *c, int status, const char *why)
{
	char buf[1024];
	size_t n = httpproxy_format_error(buf, sizeof buf, status, why);
	conn_send(c, buf, n);
}

/* The status answering each failure. */
static const int conn_http_status[CONN_FAIL_COUNT] = {
	[CONN_FAIL_DENIED] = 403,
	[CONN_FAIL_REFUSED] = 502,
	[CONN_FAIL_NET_UNREACHABLE] = 502,
	[CONN_FAIL_HOST_UNREACHABLE] = 502,
	[CONN_FAIL_TIMEOUT] = 504,
	[CONN_FAIL_GENERAL] = 502,
	[CONN_FAIL_AUTH] = 407,
	[CONN_FAIL_BUSY] = 503,
};

static void conn_http_refuse(struct conn *c, enum conn_failure f, const char *why)
{
	conn_http_error(c, conn_http_status[f], why);
}

static void conn_http_login_ok(struct conn *c)
{
	conn_target_ready(c);
}

/* Wrong credentials get 407 (try others); a check that could not run gets
 * 503 with Retry-After: the credentials were not judged, and a 407 would
 * tell the client (and a browser's password prompt) that they were wrong. */
static void conn_http_login_failed(struct conn *c, const char *busy)
{
	if (!busy) {
		char why[sizeof c->last_error];
		snprintf(why, sizeof why, "%s", c->last_error);	/* conn_fail writes last_error */
		conn_fail(c, CONN_FAIL_AUTH, why);
		return;
	}
	conn_http_error(c, 503, busy);
	conn_flush_close(c, "auth_failed");
}

static void conn_http_tunnel_connected(struct conn *c, const struct upstream_result *res,
				       struct relay_params *p)
{
	(void)res;
	(void)p;
	char head[128];
	conn_send(c, head, httpproxy_format_established(head, sizeof head));
}

/* Limits the client's bytes to the body of the one forwarded request. */
static size_t conn_body_take(void *arg, struct evbuffer *in, bool *done)
{
	struct conn *c = arg;
	size_t total = 0;
	size_t len = evbuffer_get_length(in);

	if (len == 0) {
		/* Nothing pending: only a body-less request can be complete. */
		size_t used = 0;
		*done = httpproxy_body_feed(&c->ps->http.body, "", 0, &used) == HTTPPROXY_DONE;
		return 0;
	}
	/* Walk the buffer's chains in place, a few at a time. */
	struct evbuffer_ptr pos;
	evbuffer_ptr_set(in, &pos, 0, EVBUFFER_PTR_SET);
	while (total < len) {
		struct evbuffer_iovec vec[8];
		int n = evbuffer_peek(in, (ev_ssize_t)(len - total), &pos, vec, 8);
		if (n <= 0)
			break;
		for (int i = 0; i < n && i < 8; i++) {
			size_t used = 0;
			enum httpproxy_step st = httpproxy_body_feed(&c->ps->http.body, vec[i].iov_base,
								     vec[i].iov_len, &used);
			total += used;
			if (st == HTTPPROXY_ERROR)
				return (size_t)-1;
			if (st == HTTPPROXY_DONE) {
				*done = true;
				return total;
			}
		}
		evbuffer_ptr_set(in, &pos, total, EVBUFFER_PTR_SET);
	}
	return total;
}

static void conn_http_forward_connected(struct conn *c, const struct upstream_result *res,
					struct relay_params *p)
{
	bufferevent_write(res->bev, c->ps->http.req.origin_head, c->ps->http.req.origin_head_len);
	c->head_up = c->ps->http.req.origin_head_len;
	httpproxy_body_init(&c->ps->http.body, &c->ps->http.req);
	p->limiter.take = conn_body_take;
	p->limiter.arg = c;
}

static void conn_http_clear(struct conn *c)
{
	if (c->ps->http.parsed)
		httpproxy_request_clear(&c->ps->http.req);
}

static const struct conn_proto conn_proto_http_connect = {
	.name = "http-connect", .metric = METRICS_PROTO_HTTP_CONNECT,
	.read = conn_http_read,
	.login_ok = conn_http_login_ok,
	.login_failed = conn_http_login_failed,
	.connected = conn_http_tunnel_connected,
	.refuse = conn_http_refuse,
	.clear = conn_http_clear,
};

/* absolute-form: one request forwarded, its body limited, then closed. */
static const struct conn_proto conn_proto_http = {
	.name = "http", .metric = METRICS_PROTO_HTTP,
	.read = conn_http_read,
	.login_ok = conn_http_login_ok,
	.login_failed = conn_http_login_failed,
	.connected = conn_http_forward_connected,
	.refuse = conn_http_refuse,
	.clear = conn_http_clear,
	.state_in_relay = true,
};

/* A head that did not arrive in time is answered like a forward request's
 * (there is no telling which it would have been). */
static void conn_http_timed_out(struct conn *c)
{
	c->proto = &conn_proto_http;
	conn_http_error(c, 408, "request head not received in time");
	snprintf(c->last_error, sizeof c->last_error, "handshake timed out");
	conn_flush_close(c, "handshake_timeout");
}

/* The head, until it is parsed. */
static const struct conn_proto conn_proto_http_head = {
	.name = NULL, .metric = METRICS_PROTO_NONE,
	.read = conn_http_read,
	.timed_out = conn_http_timed_out,
	.clear = conn_http_clear,
};

void conn_http_begin(struct conn *c)
{
	c->proto = &conn_proto_http_head;
	c->state = CONN_REQUEST;
}

static void conn_http_read(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->client);
	size_t max = c->cfg->max_head_bytes;
	size_t len = evbuffer_get_length(in);
	size_t look = len < max + 1 ? len : max + 1;
	size_t used = 0;
	const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);

	/* Parse at most twice: once the request line is complete (so a bad
	 * one is answered at once), and once the head has ended or passed the
	 * limit. A client dribbling its head costs linear time. */
	if (look <= max) {
		size_t end = text_http_head_end(p, look, c->ps->http.scanned);
		bool first_line = !c->ps->http.line_checked && memchr(p, '\n', look);
		c->ps->http.scanned = look;
		if (!end && !first_line)
			return;
		c->ps->http.line_checked = true;
	}
	if (c->ps->http.parsed)
		httpproxy_request_clear(&c->ps->http.req);
	c->ps->http.parsed = true;
	enum httpproxy_step st = httpproxy_parse_request(&c->ps->http.req, p, look, max, &used);
	if (st == HTTPPROXY_NEED_MORE)
		return;
	/* Parsed: the head as sent (Proxy-Authorization included) has served. */
	OPENSSL_cleanse((void *)(uintptr_t)p, st == HTTPPROXY_DONE ? used : look);
	c->proto = c->ps->http.req.kind == HTTPPROXY_CONNECT ? &conn_proto_http_connect : &conn_proto_http;
	if (st == HTTPPROXY_ERROR) {
		snprintf(c->last_error, sizeof c->last_error, "%s", c->ps->http.req.why);
		log_info("conn %llu: %s: %s", (unsigned long long)c->id, c->client_text,
			 c->last_error);
		conn_http_error(c, c->ps->http.req.status, c->ps->http.req.why);
		conn_flush_close(c, "protocol_error");
		return;
	}
	evbuffer_drain(in, used);
	if (!conn_set_target(c, c->ps->http.req.host, strlen(c->ps->http.req.host), c->ps->http.req.port))
		return;

	if (auth_users_count(c->cfg->users) > 0) {
		if (!c->ps->http.req.have_credentials) {
			/* The normal first step of a Basic login, and still a
			 * refusal: a decision record naming the target. */
			struct policy_decision d = { .action = POLICY_DENY, .rule = -1,
						     .guard = "auth" };
			conn_audit_decision(c, NULL, &d, "proxy authentication required");
			snprintf(c->last_error, sizeof c->last_error, "proxy authentication required");
			conn_http_error(c, 407, "proxy authentication required");
			conn_flush_close(c, "auth_required");
			return;
		}
		conn_login(c, c->ps->http.req.user, c->ps->http.req.pass, sizeof c->ps->http.req.pass);
		return;
	}
	OPENSSL_cleanse(c->ps->http.req.pass, sizeof c->ps->http.req.pass);	/* no users: unused */
	conn_target_ready(c);
}
