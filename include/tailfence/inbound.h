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
 * Owned by the gateway; runs on its loop. Each connection holds the
 * config it was accepted under.
 */
#ifndef TAILFENCE_INBOUND_H
#define TAILFENCE_INBOUND_H

#include <stdbool.h>
#include <stddef.h>

struct gateway;
struct inbound;

/* The inbound side of a gateway; NULL on allocation failure. */
struct inbound *inbound_new(struct gateway *gw);

/* Binds the listeners of the gateway's current config (bound at start;
 * a reload keeps them). false (logged) when one cannot be bound. */
bool inbound_listen(struct inbound *in);

/* Pauses or resumes accepting (the gateway's connection cap). */
void inbound_accepting(struct inbound *in, bool on);

/* Inbound connections open now. */
size_t inbound_count(const struct inbound *in);

/* The tailnet changed: identities may have too; forget cached ones. */
void inbound_tailnet_changed(struct inbound *in);

/* Stopping: no more accepting; connections not relaying yet close now with
 * end reason "shutdown". */
void inbound_stop(struct inbound *in);

/* Ends every connection now with end reason "shutdown". */
void inbound_abort_all(struct inbound *in);

/* Closes the listeners and every connection; frees. */
void inbound_free(struct inbound *in);

#endif
