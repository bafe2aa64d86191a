/*
 * resolve: asynchronous name resolution, through the resolver that knows
 * the name.
 *
 *   MagicDNS names (a peer's or this node's, full or short) come from the
 *     tailnet view itself, with no query at all;
 *   names in the tailnet's split-DNS domains go to tailscaled's own
 *     resolver (LocalAPI dns-query), which forwards them over the tailnet;
 *   every other name goes to the system resolver (libevent's evdns, with
 *     the configured nameservers and hosts file).
 *
 * Nothing here blocks the event loop. A lookup yields every address of the
 * name (IPv4 and IPv6, in the resolver's order, IPv4-mapped ones
 * normalised, duplicates dropped); the caller checks each one against the
 * policy and dials only those that pass. Every lookup has a deadline that
 * covers its wait behind others (evdns queues what exceeds its in-flight
 * limit, with no timer of its own), and lookups in flight are bounded in
 * all and per client, so names that never answer cannot starve the rest.
 */
#ifndef TAILFENCE_RESOLVE_H
#define TAILFENCE_RESOLVE_H

#include <stddef.h>
#include <stdint.h>

#include "tailfence/cidr.h"
#include "tailfence/config.h"

struct event_base;
struct evdns_base;
struct tailnet_view;

#define RESOLVE_MAX_ADDRS 16

/* Lookups in flight at once, in all and per client (/32, /64): beyond,
 * a lookup is refused at once with the reason (res.busy). */
#define RESOLVE_MAX_INFLIGHT 512
#define RESOLVE_MAX_PER_CLIENT 32

enum resolve_source {
	RESOLVE_SYSTEM,		/* evdns: nameservers, hosts file */
	RESOLVE_MAGICDNS,	/* the tailnet view's own names */
	RESOLVE_TAILSCALED,	/* tailscaled's resolver (split DNS) */
};

struct resolve_result {
	int error;			/* 0, or an EVUTIL_EAI_* code */
	const char *error_text;		/* when error != 0 */
	bool busy;			/* refused: too many lookups in flight */
	bool timed_out;			/* no answer within the deadline */
	enum resolve_source source;
	struct cidr_addr addrs[RESOLVE_MAX_ADDRS];
	size_t n;
	uint64_t elapsed_us;		/* from resolve_start() to the answer */
};

const char *resolve_source_str(enum resolve_source s);

/* One loop's resolver: evdns configured from the config's DNS settings
 * (nameservers or /etc/resolv.conf, hosts file, timeout), and the counts
 * of lookups in flight: its own (share NULL), or share's, so that the
 * limits hold across every loop's resolver. NULL with err set on failure. */
struct resolve_ctx;
struct resolve_ctx *resolve_ctx_new(struct event_base *base, const struct config *cfg,
				    const struct resolve_ctx *share, char *err, size_t errlen);

/* Every lookup must have ended or been cancelled. */
void resolve_ctx_free(struct resolve_ctx *ctx);

typedef void (*resolve_cb)(void *arg, const struct resolve_result *res);

struct resolve_req;

/* Where tailnet names are looked up: the view (may be NULL: no tailnet
 * names) and tailscaled's socket for split DNS. */
struct resolve_tailnet {
	const struct tailnet_view *view;
	const char *socket;
};

/* Starts a lookup. tn may be NULL; client (may be NULL) is who asks, for
 * the per-client bound. The whole lookup, the time it waits behind
 * others included, is bounded by timeout_ms: then cb gets timed_out.
 * cb is called once, never from inside resolve_start(). Returns NULL
 * only on allocation failure. */
struct resolve_req *resolve_start(struct resolve_ctx *ctx, const struct resolve_tailnet *tn,
				  const char *name, const struct cidr_addr *client,
				  unsigned timeout_ms, resolve_cb cb, void *arg);

/* Abandons a lookup; cb will not be called. */
void resolve_cancel(struct resolve_req *req);

#endif
