/*
 * conn: one client connection from accept to close. The only glue between
 * the pure parsers, the policy, the resolver, the upstream dialer, the
 * relay and the audit trail.
 *
 * One state enum and one way out: conn_close(), which writes the close
 * record, counts and frees.
 */
#ifndef TAILFENCE_CONN_H
#define TAILFENCE_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/util.h>

struct conn;
struct gateway;
struct tailnet_view;
struct gateway_listener;

/* Takes ownership of fd. */
void conn_accept(struct gateway *gw, struct gateway_listener *l, evutil_socket_t fd,
		 const struct sockaddr *sa, socklen_t salen);

/* The gateway is stopping: connections still in their handshake close now
 * with end reason "shutdown"; relays go on until conn_abort_all(). */
void conn_stop_handshakes(struct gateway *gw);

/* Ends every connection now with end reason "shutdown". */
void conn_abort_all(struct gateway *gw);

/* The tailnet changed (--close-revoked): decides every open relay's
 * connected address again, with the policy it started with and the view
 * given; closes those now denied with end reason "revoked". Returns how
 * many were closed. */
size_t conn_recheck_relays(struct gateway *gw, const struct tailnet_view *view);

/* Decides the UDP associations' allowed destinations again against view
 * (whatever close_revoked says: every datagram is new traffic). Returns how
 * many destinations were revoked. */
size_t conn_recheck_udp(struct gateway *gw, const struct tailnet_view *view);

/* For the metrics endpoint: open relays, and the bytes they moved so far
 * (up: client to destination). */
void conn_stats(struct gateway *gw, size_t *relays, uint64_t *up, uint64_t *down);

#endif
