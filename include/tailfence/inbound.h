/*
 * inbound: tailnet users reaching chosen container services through
 * tailfence, by identity, audited.
 *
 * `tailscale serve --tcp PORT --proxy-protocol 2 tcp://LISTEN` forwards
 * each tailnet connection to one of these loopback listeners, prefixed
 * with a PROXY header naming the tailnet peer. For every connection this
 * module: checks that tailscaled's own process connected (peercheck, on
 * the worker thread), reads the header (proxyproto), asks tailscaled who
 * the peer is (whois, cached briefly and forgotten whenever the tailnet
 * changes), decides the entry's identity rules, resolves and checks the
 * target with the entry's guards (target.c, DNS pinned), writes the
 * decision record, waits for it like an outbound connection, dials the
 * target directly and relays with the same engine, limits and timeouts
 * as outbound (relay.c), then writes the close record. A whois failure,
 * a missing or malformed header, or a connection from another process is
 * refused with the reason in the record.
 *
 * The gateway binds the listeners (with its own) and hands each accepted
 * socket to inbound_accept(); this module owns the connections from
 * there, in the environment of their loop (conn_env.h), and tells the
 * owner through env->closed() when one ends. Each connection holds the
 * config it was accepted under.
 */
#ifndef TAILFENCE_INBOUND_H
#define TAILFENCE_INBOUND_H

#include <stddef.h>

#include <event2/util.h>

struct conn_env;
struct inbound;
struct inbound_entry;

/* The inbound connections of one loop, running in env (borrowed: it must
 * outlive them); NULL on allocation failure. */
struct inbound *inbound_new(const struct conn_env *env);

/* Says in the operator log what the listener of e, just bound, serves
 * (and the tailscale serve command that feeds it). */
void inbound_announce(const struct inbound_entry *e);

/* Takes ownership of fd, accepted on the listener of entry (an index into
 * the current config's inbound entries). */
void inbound_accept(struct inbound *in, size_t entry, evutil_socket_t fd);

/* Inbound connections open now. */
size_t inbound_count(const struct inbound *in);

/* The tailnet changed: identities may have too; forget cached ones. */
void inbound_tailnet_changed(struct inbound *in);

/* Stopping: connections not relaying yet close now with end reason
 * "shutdown". */
void inbound_stop(struct inbound *in);

/* Ends every connection now with end reason "shutdown". */
void inbound_abort_all(struct inbound *in);

/* Closes every connection; frees. */
void inbound_free(struct inbound *in);

#endif
