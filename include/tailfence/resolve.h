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
 * policy and dials only those that pass.
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

enum resolve_source {
	RESOLVE_SYSTEM,		/* evdns: nameservers, hosts file */
	RESOLVE_MAGICDNS,	/* the tailnet view's own names */
	RESOLVE_TAILSCALED,	/* tailscaled's resolver (split DNS) */
};

struct resolve_result {
	int error;			/* 0, or an EVUTIL_EAI_* code */
	const char *error_text;		/* when error != 0 */
	enum resolve_source source;
	struct cidr_addr addrs[RESOLVE_MAX_ADDRS];
	size_t n;
	uint64_t elapsed_us;		/* from resolve_start() to the answer */
};

const char *resolve_source_str(enum resolve_source s);

/* Creates the resolver from the config's DNS settings (nameservers or
 * /etc/resolv.conf, hosts file, timeout). NULL with err set on failure. */
struct evdns_base *resolve_new_base(struct event_base *base, const struct config *cfg,
				    char *err, size_t errlen);

typedef void (*resolve_cb)(void *arg, const struct resolve_result *res);

struct resolve_req;

/* Where tailnet names are looked up: the view (may be NULL: no tailnet
 * names) and tailscaled's socket for split DNS. */
struct resolve_tailnet {
	const struct tailnet_view *view;
	const char *socket;
};

/* Starts a lookup. tn may be NULL; timeout_ms bounds a query to
 * tailscaled. cb is called once, never from inside resolve_start().
 * Returns NULL on allocation failure. */
struct resolve_req *resolve_start(struct event_base *base, struct evdns_base *dns,
				  const struct resolve_tailnet *tn, const char *name,
				  unsigned timeout_ms, resolve_cb cb, void *arg);

/* Abandons a lookup; cb will not be called. */
void resolve_cancel(struct resolve_req *req);

#endif
