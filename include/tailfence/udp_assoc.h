/*
 * udp_assoc: one SOCKS5 UDP association (RFC 1928 UDP ASSOCIATE), under
 * the same fence as a TCP connection.
 *
 * Owns the association's sockets: the relay socket the client sends to
 * (bound on the address the client reached the listener at), a direct
 * socket per address family, and, for destinations dialed through the
 * upstream, its own UDP association with tailscaled's SOCKS5 (a TCP
 * control connection and a UDP socket to the relay address tailscaled
 * names). It decides every destination the first time it is seen, with
 * the same pure functions as a TCP connection (target_parse, target_decide
 * against the tailnet view of the moment; names are resolved once and the
 * decided address is the one used), writes one decision record per new
 * destination, and drops, counting why, what is denied, spoofed (not from
 * the control connection's client address, or from another port once the
 * first datagram fixed it), fragmented, malformed or over a limit.
 *
 * The association lives as long as its TCP control connection (the conn
 * that owns it frees it) or until it is idle for udp_idle_timeout; it
 * never outlives the conn. Runs on the conn's loop.
 */
#ifndef TAILFENCE_UDP_ASSOC_H
#define TAILFENCE_UDP_ASSOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "tailfence/cidr.h"

struct config;
struct conn_env;
struct udp_assoc;

struct udp_assoc_params {
	const struct conn_env *env;	/* the conn's loop */
	const struct config *cfg;	/* the conn's; outlives the association */
	uint64_t conn_id;
	/* Borrowed from the conn for its lifetime. */
	const char *client_text;
	const char *listener_text;
	const char *user;		/* NULL: no login */
	struct cidr_addr client_addr;	/* the control connection's peer */
	/* DST.PORT of the request: the port the client says it will send
	 * from (0: not said). Its address must be the control connection's. */
	uint16_t want_port;
	/* The control connection's local address: the relay binds there. */
	struct sockaddr_storage local;
	socklen_t local_len;
};

struct udp_assoc_stats {
	uint64_t datagrams_up, datagrams_down;	/* relayed */
	uint64_t bytes_up, bytes_down;		/* their payloads */
	uint64_t dropped;
	size_t destinations;
};

/* The association ends by itself (idle, the upstream went away, a socket
 * error): the owner closes (and frees it) with this end reason. */
typedef void (*udp_assoc_end_cb)(void *arg, const char *end, const char *error);

/* Binds the relay socket; bnd and bnd_port get what the SOCKS5 reply names.
 * NULL with a sentence in err when no socket could be bound. */
struct udp_assoc *udp_assoc_start(const struct udp_assoc_params *p, udp_assoc_end_cb cb,
				  void *arg, struct cidr_addr *bnd, uint16_t *bnd_port, char *err,
				  size_t errlen);

void udp_assoc_get_stats(const struct udp_assoc *a, struct udp_assoc_stats *out);

/* Closes every socket, cancels lookups and the upstream handshake. */
void udp_assoc_free(struct udp_assoc *a);

/* The tailnet changed: every destination this association was allowed to
 * reach is decided again against view; one no longer allowed is denied
 * from now on (its datagrams dropped), with a decision record. Returns how
 * many were. Destinations denied before stay denied for the association's
 * life. */
struct tailnet_view;
size_t udp_assoc_recheck(struct udp_assoc *a, const struct tailnet_view *view);

#endif
