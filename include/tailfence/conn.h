/*
 * conn: one client connection from accept to close. The only glue between
 * the pure parsers, the policy, the resolver, the upstream dialer, the
 * relay and the audit trail.
 *
 * One state enum and one way out: conn_close(), which writes the close
 * record, counts and frees.
 *
 * The proxy connections of one loop form a conn_set, which this module
 * owns: conn_accept() adds to it, the close path takes out of it, and the
 * functions below act on all of them. A set runs in the environment of
 * its loop (conn_env.h) and tells the owner through env->closed() when a
 * connection ends; it knows nothing else of its owner.
 */
#ifndef TAILFENCE_CONN_H
#define TAILFENCE_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/util.h>

struct conn_env;
struct conn_set;
struct tailnet_view;

/* Password checks that missed the login cache: at most this many wait or
 * run at once on the worker pool, and at most CONN_LOGIN_PER_CLIENT of
 * them for one client prefix (/32, /64). The owner sizes the pool. */
#define CONN_LOGIN_QUEUE 256
#define CONN_LOGIN_PER_CLIENT 4

/* An empty set running in env (borrowed: it must outlive the set). NULL
 * when out of memory. */
struct conn_set *conn_set_new(const struct conn_env *env);

/* Ends every connection still open ("shutdown") and frees the set. */
void conn_set_free(struct conn_set *s);

/* Takes ownership of fd; listener names the address it came in on
 * (borrowed: it must outlive the connection). */
void conn_accept(struct conn_set *s, const char *listener, evutil_socket_t fd,
		 const struct sockaddr *sa, socklen_t salen);

/* Connections open now. */
size_t conn_set_count(const struct conn_set *s);

/* Stopping: connections still in their handshake close now with end
 * reason "shutdown"; relays go on until conn_set_abort(). */
void conn_set_stop_handshakes(struct conn_set *s);

/* Ends every connection now with end reason "shutdown". */
void conn_set_abort(struct conn_set *s);

/* The tailnet changed (--close-revoked): decides every open relay's
 * connected address again, with the policy it started with and the view
 * given; closes those now denied with end reason "revoked". Returns how
 * many were closed. */
size_t conn_set_recheck_relays(struct conn_set *s, const struct tailnet_view *view);

/* Decides the UDP associations' allowed destinations again against view
 * (whatever close_revoked says: every datagram is new traffic). Returns how
 * many destinations were revoked. */
size_t conn_set_recheck_udp(struct conn_set *s, const struct tailnet_view *view);

/* For the metrics endpoint: open relays, and the bytes they moved so far
 * (up: client to destination). */
void conn_set_stats(const struct conn_set *s, size_t *relays, uint64_t *up, uint64_t *down);

#endif
