/*
 * tailnet: what the tailnet carries for this node, as an immutable view.
 *
 * tailscaled in userspace mode sends a dial into the tailnet only when a
 * peer carries the destination: a peer's Tailscale address, a subnet route
 * of a peer when this node accepts routes (prefs RouteAll), or /0 of the
 * selected exit node. Everything else, this node's own advertised routes
 * included, it dials through the host's network. A view is that set,
 * computed from LocalAPI answers (status, prefs, dns-config) the way
 * tailscaled computes its WireGuard peers, plus what names need: the
 * MagicDNS suffix, peer names, and the split-DNS domains.
 *
 * Pure: views are built from JSON text, never from a socket (the live
 * client is tailnet_watch). A view is reference-counted and never changes
 * after it is built, so a decision can hold one while a newer one is
 * swapped in.
 */
#ifndef TAILFENCE_TAILNET_H
#define TAILFENCE_TAILNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tailfence/cidr.h"

enum tailnet_state {
	TAILNET_OFF = 0,	/* no tailscaled socket configured: static routes only */
	TAILNET_UNKNOWN,	/* socket configured, no usable answer (yet) */
	TAILNET_STOPPED,	/* tailscaled answers, but its backend is not Running */
	TAILNET_RUNNING,
};

/* How a peer carries a prefix. */
enum tailnet_carry {
	TAILNET_CARRY_ADDRESS,	/* one of the peer's Tailscale addresses */
	TAILNET_CARRY_ROUTE,	/* a subnet route the peer advertises and this node accepts */
	TAILNET_CARRY_EXIT,	/* /0 of the selected exit node (only with the opt-in) */
};

struct tailnet_peer {
	char *id;		/* StableNodeID ("nXXXX"), "" if unknown */
	char *name;		/* MagicDNS name without the trailing dot, else the host name */
	char *host_name;	/* the peer's own host name */
	struct cidr_addr *addrs;	/* Tailscale addresses */
	size_t n_addrs;
	struct cidr_prefix *routes;	/* carried subnet routes (and /0 for the exit node) */
	size_t n_routes;
	struct cidr_prefix *offered;	/* routes it serves that this node does not accept */
	size_t n_offered;
	bool online;
	bool exit_node;		/* the selected exit node */
};

/* One carried prefix. */
struct tailnet_entry {
	struct cidr_prefix prefix;
	uint32_t peer;		/* index into peers */
	enum tailnet_carry kind;
};

struct tailnet_view {
	unsigned refs;
	enum tailnet_state state;
	char *reason;		/* UNKNOWN/STOPPED: one line saying why; else NULL */
	char *backend_state;	/* "Running", "NeedsLogin", ...; NULL if unknown */
	char *self_name;	/* this node's MagicDNS name (no trailing dot) or NULL */
	struct cidr_addr *self_addrs;
	size_t n_self_addrs;
	char *magicdns_suffix;	/* "example.ts.net" (no dots around) or NULL */
	bool route_all;		/* this node accepts subnet routes */
	struct tailnet_peer *peers;	/* sorted by name */
	size_t n_peers;
	/* Every carried prefix, sorted by family, address, then length: the
	 * order diffs and listings use. */
	struct tailnet_entry *entries;
	size_t n_entries;
	char **split_domains;	/* lower case, no trailing dot, sorted */
	size_t n_split_domains;
	/* Lookup tables over entries: host prefixes (/32, /128) sorted for
	 * binary search, and the rest longest first. Indexes into entries. */
	uint32_t *hosts;
	size_t n_hosts;
	uint32_t *subnets;
	size_t n_subnets;
};

struct tailnet_options {
	/* Let the selected exit node's /0 into the carried set. */
	bool allow_exit_node;
};

/* Builds a view from the bodies of GET /localapi/v0/status, /prefs and
 * /dns-config (dns may be NULL: no split DNS known). Returns NULL with a
 * sentence in err ("status: line 1: ...", "prefs: RouteAll is not a
 * boolean") when an answer is not what tailscaled sends; the caller keeps
 * its old view then. A backend that is not Running gives a STOPPED view. */
struct tailnet_view *tailnet_view_build(const char *status, size_t status_len,
					const char *prefs, size_t prefs_len,
					const char *dns, size_t dns_len,
					const struct tailnet_options *opt, char *err,
					size_t errlen);

/* A view with no peers in state OFF, UNKNOWN or STOPPED, with a reason. */
struct tailnet_view *tailnet_view_empty(enum tailnet_state state, const char *reason);

struct tailnet_view *tailnet_view_ref(struct tailnet_view *v);
void tailnet_view_unref(struct tailnet_view *v);

/* The carried prefix covering a (longest match, as tailscaled picks the
 * peer), or NULL. A peer's own address wins over any route. */
const struct tailnet_entry *tailnet_view_lookup(const struct tailnet_view *v,
						const struct cidr_addr *a);

/* True when a is one of this node's own Tailscale addresses. */
bool tailnet_view_is_self(const struct tailnet_view *v, const struct cidr_addr *a);

/* MagicDNS from the netmap: when name (any case, one trailing dot allowed)
 * is a peer's or this node's MagicDNS name, or a peer's short name (its
 * first label), copies its addresses into out (at most max) and returns
 * their count; *peer is the peer (NULL for this node). Returns 0 when the
 * name is not a tailnet name. A name under the MagicDNS suffix that names
 * no node returns 0 with *in_suffix set. */
size_t tailnet_view_resolve(const struct tailnet_view *v, const char *name,
			    struct cidr_addr *out, size_t max,
			    const struct tailnet_peer **peer, bool *in_suffix);

/* True when name lies in one of the tailnet's split-DNS domains (names
 * tailscaled's own resolver answers for the tailnet). */
bool tailnet_view_split_dns(const struct tailnet_view *v, const char *name);

/* Calls visit once per prefix carried by one view and not the other
 * (added: in next only). old or next may be NULL (no prefixes). */
typedef void (*tailnet_diff_cb)(void *arg, bool added, const struct tailnet_view *v,
				const struct tailnet_entry *e);
void tailnet_view_diff(const struct tailnet_view *old, const struct tailnet_view *next,
		       tailnet_diff_cb visit, void *arg);

const char *tailnet_state_str(enum tailnet_state s);
const char *tailnet_carry_str(enum tailnet_carry k);

#endif
