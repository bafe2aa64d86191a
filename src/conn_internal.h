/*
 * conn_internal: what the connection's own source files share, and
 * nothing outside src/conn*.c includes: struct conn, its states, the
 * protocol operations, and the core's functions the protocols call. The
 * public API is include/tailfence/conn.h.
 *
 *   conn.c        the state machine: sniff, login, decision and its
 *                 record, resolve, dial, relay hand-off, the one close
 *                 path; the connection set
 *   conn_socks.c  SOCKS5, SOCKS4/4a and SOCKS5 UDP ASSOCIATE: reading
 *                 the handshake, their replies
 *   conn_http.c   HTTP CONNECT and absolute-form requests: reading the
 *                 head, the replies, the body limit of a forwarded request
 *
 * The core never asks which protocol a connection speaks: it calls the
 * operations of c->proto (struct conn_proto), which each protocol file
 * defines. The protocol files call the core's functions below, never
 * each other.
 */
#ifndef TAILFENCE_CONN_INTERNAL_H
#define TAILFENCE_CONN_INTERNAL_H

#include "tailfence/conn.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/time.h>

#include "tailfence/audit.h"
#include "tailfence/cidr.h"
#include "tailfence/httpproxy.h"
#include "tailfence/metrics.h"
#include "tailfence/socks.h"
#include "tailfence/target.h"

struct bufferevent;
struct conn;
struct event;
struct policy_decision;
struct relay_params;
struct upstream_result;

enum conn_state {
	CONN_SNIFF,			/* the first byte picks the protocol */
	CONN_REQUEST,			/* the protocol reads its request */
	CONN_LOGIN,
	CONN_AUTH_DELAY,
	CONN_RESOLVE,
	CONN_AUDIT_WAIT,
	CONN_DIAL,
	CONN_RELAY,
	CONN_UDP,			/* a UDP association: the control connection idles */
	CONN_FLUSH,
};

/* Why a connection could not be served: mapped onto each protocol's codes. */
enum conn_failure {
	CONN_FAIL_DENIED,
	CONN_FAIL_REFUSED,
	CONN_FAIL_NET_UNREACHABLE,
	CONN_FAIL_HOST_UNREACHABLE,
	CONN_FAIL_TIMEOUT,
	CONN_FAIL_GENERAL,
	CONN_FAIL_AUTH,
	CONN_FAIL_BUSY,		/* a limit is reached: try again shortly */
	CONN_FAIL_COUNT
};

/* What differs between the protocols a client may speak. A connection
 * starts with none; the sniff picks its family's handshake table, and the
 * request, once read, the protocol proper. An operation left NULL is one
 * that cannot happen in that protocol (or, where noted, has a default). */
struct conn_proto {
	const char *name;		/* in the records; NULL while not known */
	enum metrics_proto metric;
	/* CONN_REQUEST: more of the request arrived. */
	void (*read)(struct conn *c);
	/* CONN_REQUEST: the handshake timer ran out (NULL: close). */
	void (*timed_out)(struct conn *c);
	/* The credentials passed: go on with the request. */
	void (*login_ok)(struct conn *c);
	/* Answers a login that failed (busy NULL: the credentials were wrong,
	 * as c->last_error says) or was not checked (busy says why), and
	 * closes. */
	void (*login_failed)(struct conn *c, const char *busy);
	/* The dial reached the target: answers the client (a forwarded
	 * request: sends its head on instead) and may limit the relay in p. */
	void (*connected)(struct conn *c, const struct upstream_result *res,
			  struct relay_params *p);
	/* Queues the answer to a request that will not be served (why may be
	 * NULL; NULL: nothing to answer). */
	void (*refuse)(struct conn *c, enum conn_failure f, const char *why);
	/* Before c->ps is freed (at the relay's start or at close): wipes the
	 * credentials the protocol's state may hold and frees what it owns
	 * (NULL: nothing). */
	void (*clear)(struct conn *c);
	/* The relay still needs c->ps (the body limit of a forwarded
	 * request). */
	bool state_in_relay;
};

/* The state a protocol keeps while it reads, answers and (HTTP forward)
 * limits a request. */
union conn_proto_state {
	struct socks_server socks;		/* conn_socks.c */
	struct {				/* conn_http.c */
		struct httpproxy_request req;
		bool parsed;
		size_t scanned;		/* head bytes known not to end the head */
		bool line_checked;	/* the request line was parsed once */
		struct httpproxy_body body;
	} http;
};

/* The family's handshake, once the sniff has picked it: set c->proto and
 * whatever the parser needs; the core then reads. */
void conn_socks_begin(struct conn *c);
void conn_http_begin(struct conn *c);

/* A password check that missed the cache runs the KDF (tens of ms) on a
 * worker thread (conn.c). */
struct conn_login;

struct conn {
	TAILQ_ENTRY(conn) link;
	struct conn_set *set;
	const struct conn_env *env;	/* the set's */
	struct config *cfg;		/* the policy this connection started with */
	uint64_t id;
	enum conn_state state;
	const struct conn_proto *proto;
	struct timeval started;
	uint64_t started_us;		/* monotonic, for the metrics */

	struct bufferevent *client;
	struct cidr_addr client_addr;
	uint16_t client_port;
	char client_text[CIDR_ADDR_STRLEN + 8];
	const char *listener_text;
	struct event *timer;		/* handshake timeout, auth delay, flush limit */

	/* The protocol's own state: one family's, as the sniff picked it. */
	/* The protocol's own state: from the sniff until the relay starts
	 * (a forwarded HTTP request keeps it, for its body's limit), then
	 * freed, so that an idle tunnel does not carry its handshake. */
	union conn_proto_state *ps;
	const char *userid;		/* SOCKS4: what the client calls itself */

	char user[256];			/* logged in as (or, refused, who tried) */
	struct conn_login *login;	/* password check in flight */

	/* The target as asked for, then the addresses the policy allowed. */
	struct target target;
	struct target_verdict verdict;
	size_t next_dial;
	struct cidr_addr connected;	/* the address the dial reached */
	struct resolve_req *resolve;
	struct audit_waiter audit_wait;	/* AUDIT_WAIT: for the decision record */
	struct upstream_dial *dial;
	enum conn_failure last_failure;
	char last_error[400];

	struct relay *relay;
	struct udp_assoc *udp;		/* CONN_UDP */
	uint64_t head_up;		/* request head tailfence wrote for the client */
	const char *end;		/* FLUSH: end reason to record */
};

/* ---- the core, for the protocols (conn.c) ---- */

/* The one way out: the close record, counts, cancels, frees. */
void conn_close(struct conn *c, const char *end, const char *error);

/* Queues bytes to the client. */
void conn_send(struct conn *c, const void *buf, size_t len);

/* Sends what is queued on the client, then closes with end. */
void conn_flush_close(struct conn *c, const char *end);

/* Answers a request that will not be served, in the client's protocol,
 * and closes. */
void conn_fail(struct conn *c, enum conn_failure f, const char *why);

/* Refuses before any address is known: records the decision, answers. */
void conn_refuse(struct conn *c, enum conn_failure f, const struct policy_decision *d,
		 const char *why);

/* The decision record: from a verdict (v), or for a refusal before any
 * address was known (v NULL, d and reason say why). false when the trail
 * cannot be written and the connection must be refused. */
bool conn_audit_decision(struct conn *c, const struct target_verdict *v,
			 const struct policy_decision *d, const char *reason);

/* Takes what the client asked for; false (and answered) when it is no
 * host at all. */
bool conn_set_target(struct conn *c, const char *host, size_t len, uint16_t port);
void conn_set_target_addr(struct conn *c, const struct cidr_addr *a, uint16_t port);

/* The request is complete: decide, resolve, record, dial. */
void conn_target_ready(struct conn *c);

/* Checks user and pass (the parser's own buffers: the password is copied
 * and pass, passcap bytes, wiped before anything else); the protocol's
 * login_ok or login_failed follows. */
void conn_login(struct conn *c, const char *user, char *pass, size_t passcap);

#endif
