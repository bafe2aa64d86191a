/*
 * peercheck: is the process at the other end of an accepted loopback TCP
 * connection tailscaled itself?
 *
 * TCP has no SO_PEERCRED, and `tailscale serve` forwards only to TCP
 * targets, so the answer is put together from three kernel facts:
 *   1. tailscaled's pid and uid: SO_PEERCRED on a connection to its
 *      LocalAPI socket (the one configured, so the tailscaled that whois
 *      asks);
 *   2. the peer socket: a sock_diag (NETLINK_INET_DIAG) lookup of the TCP
 *      socket bound to the connection's peer address and connected to our
 *      listener gives its inode and owner uid;
 *   3. that inode among tailscaled's open descriptors (/proc/PID/fd).
 * Loopback connections stay in this network namespace, so the lookup sees
 * the peer's socket.
 *
 * What it proves and what not is in docs/config.md ("Who may connect to
 * an inbound listener"). In short: the connection was opened by
 * tailscaled's process, not by any other local process; but tailscaled
 * opens connections to loopback for more than serve (its SOCKS5 and HTTP
 * proxy dial loopback for any local client), so a local process can
 * still get a header of its choosing sent through it.
 *
 * Blocking (a UNIX connect, a netlink round trip, a /proc directory):
 * runs on the worker thread, never on the event loop.
 */
#ifndef TAILFENCE_PEERCHECK_H
#define TAILFENCE_PEERCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

enum peercheck_result {
	PEERCHECK_TAILSCALED,	/* the peer socket is one of tailscaled's */
	PEERCHECK_OTHER,	/* it is not: another process connected */
	PEERCHECK_UNKNOWN,	/* the check could not be made (why says why) */
};

struct peercheck {
	enum peercheck_result result;
	pid_t tailscaled_pid;		/* 0 when not known */
	uid_t tailscaled_uid;
	bool have_peer;			/* the peer socket was found */
	uid_t peer_uid;			/* its owner */
	unsigned long peer_inode;
	char why[320];			/* one line for people, for OTHER and UNKNOWN */
};

/* Checks the connection whose local (listener side) and peer addresses
 * are given (as getsockname/getpeername return them) against the
 * tailscaled listening on sock_path. Fills *out; thread-safe. */
void peercheck_tailscaled(const char *sock_path, const struct sockaddr_storage *local,
			  const struct sockaddr_storage *peer, struct peercheck *out);

#endif
