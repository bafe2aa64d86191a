/*
 * policy: who may reach what. Guards, rules, routes and users, compiled into
 * one immutable object and queried with pure functions.
 *
 * Evaluation order for one (client, user, host, address, port):
 *   1. built-in guards (loopback, link-local incl. metadata, 0.0.0.0/8,
 *      multicast, broadcast, 100.100.100.100, the upstream proxy's port on
 *      any address of this host, this host's interface addresses and this
 *      node's own Tailscale addresses), applied also to the IPv4 address an
 *      IPv6 one embeds (NAT64, 6to4, Teredo, IPv4-compatible/-translated);
 *      a guard is lifted only by name;
 *   2. rules in file order, first match wins; hostname rules match the name
 *      the client asked for, never an IP literal; when a hostname rule
 *      accepts, the address is still checked against every deny rule;
 *   3. implicit deny.
 * An accepted address that goes via the tailnet (the default) must be
 * carried by a peer when the tailnet view is live; otherwise tailscaled
 * would dial it through the host's network, and it is denied.
 *
 * The aliases tailnet:, peers: and routes: name what the tailnet carries
 * (see tailnet.h). In a live policy (a tailscaled socket is configured)
 * they are matched against the view handed to each decision, so the policy
 * itself never changes when the tailnet does; in a static policy routes:
 * and tailnet: are the configured routes and peers: is empty. With no rules
 * configured the policy is "accept tailnet:* for every user" (live) or
 * "accept routes:* for every user" (static).
 *
 * Decision cost does not grow with the number of prefix rules: prefixes are
 * indexed per family in a trie that reads 6 address bits per level (at most
 * 6 node reads for IPv4) and yields candidate rules along the address's
 * path; the lowest index among them wins.
 */
#ifndef TAILFENCE_POLICY_H
#define TAILFENCE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tailfence/cidr.h"
#include "tailfence/tailnet.h"

struct policy;

enum policy_action {
	POLICY_DENY = 0,
	POLICY_ACCEPT = 1,
};

enum policy_via {
	POLICY_VIA_TAILNET = 0,		/* the configured upstream; must be carried (live) */
	POLICY_VIA_DIRECT = 1,		/* dial from this host */
	POLICY_VIA_UPSTREAM = 2,	/* the configured upstream, whatever path it takes */
};

struct policy_query {
	const char *host;	/* name the client asked for; NULL for an IP literal */
	struct cidr_addr dst;	/* address to be dialed; family 0 = not yet known */
	uint16_t port;
	const char *user;	/* authenticated user name; NULL if none */
	struct cidr_addr src;	/* client address */
	const struct tailnet_view *view;	/* the tailnet now; NULL = nothing known */
};

struct policy_decision {
	enum policy_action action;
	enum policy_via via;
	int rule;		/* deciding rule, 0-based in file order; -1 if none */
	const char *rule_text;	/* that rule's name or canonical text; NULL if none */
	const char *guard;	/* guard name when a guard decided; NULL otherwise */
	/* The peer and prefix that carry the address in the query's view, or
	 * NULL (not carried, or no live view); point into the view. */
	const struct tailnet_entry *carrier;
	const struct tailnet_peer *peer;
	char reason[200];	/* one line for people: "guard loopback: 127.0.0.1 is a loopback address" */
};

/* Decides one query with q->dst set. Pure and thread-safe. */
void policy_decide(const struct policy *p, const struct policy_query *q,
		   struct policy_decision *d);

/* Before resolving a name (q->dst.family == 0): returns false, with d
 * filled, when no address could be accepted for (host, port, user, src), so
 * the name need not be resolved at all. True means "resolve, then decide
 * each address". */
bool policy_precheck(const struct policy *p, const struct policy_query *q,
		     struct policy_decision *d);

/* Names of the built-in guards, NULL-terminated. */
const char *const *policy_guard_names(void);

/* ---- Building a policy (config.c, tests) ---- */

/* One rule as written in the config file. Strings are borrowed for the
 * duration of policy_builder_add_rule. */
struct policy_rule_spec {
	const char *name;		/* optional; becomes the decision's rule_text */
	enum policy_action action;
	enum policy_via via;
	const char *const *dst;		/* Tailscale ACL shape, see docs/config.md */
	size_t n_dst;
	const char *const *src;		/* client prefixes; n_src 0 = any client */
	size_t n_src;
	const char *const *users;	/* names or "*"; n_users 0 = any user */
	size_t n_users;
};

struct policy_builder;

struct policy_builder *policy_builder_new(void);
/* Frees a builder that was not finished. */
void policy_builder_free(struct policy_builder *b);

/* Adds one prefix to the route set (the "routes" alias). The caller checks
 * the default-route opt-in, since it knows where the route came from. */
void policy_builder_add_route(struct policy_builder *b, const struct cidr_prefix *p);

/* Makes routes:, peers: and tailnet: follow the view of each query instead
 * of the configured routes. */
void policy_builder_set_live(struct policy_builder *b, bool live);

/* Lifts a guard by name; false if no guard has that name. */
bool policy_builder_lift_guard(struct policy_builder *b, const char *name);

/* An address of this host's own interfaces (the "self" guard; at most 32
 * are kept). */
void policy_builder_add_self(struct policy_builder *b, const struct cidr_addr *a);

/* The upstream proxy's own address:port (the "upstream" guard, which also
 * covers that port on every address of this host). */
void policy_builder_set_upstream(struct policy_builder *b, const struct cidr_addr *a,
				 uint16_t port);

/* The users rules may name (borrowed until policy_builder_finish). The
 * users, their hashes and the login cache are not part of the policy: the
 * config holds them (auth.h). */
struct auth_users;
void policy_builder_set_users(struct policy_builder *b, const struct auth_users *users);

/* Appends a rule (its users must be in policy_builder_set_users' set). On error writes
 * "dst[0]: \"10.0.0.0/33:80\": prefix length 33 is longer than 32" (the
 * path inside the rule, the value, the reason) into err. */
bool policy_builder_add_rule(struct policy_builder *b, const struct policy_rule_spec *r,
			     char *err, size_t errlen);

/* Compiles the indexes and returns the immutable policy; always consumes b.
 * NULL only when out of memory. */
struct policy *policy_builder_finish(struct policy_builder *b);

/* Checks one dst entry ("10.0.0.0/24:80", "[fd00::/64]:443", "db:5432",
 * "*.example.com:*", "routes:*", "peers:22", "tailnet:*") without building
 * anything. */
bool policy_dst_check(const char *entry, char *err, size_t errlen);

/* True when a (valid) dst entry covers every address: "*", 0.0.0.0/0, ::/0. */
bool policy_dst_covers_all(const char *entry);

/* ---- Introspection (tailfence check, config show) ---- */
size_t policy_rule_count(const struct policy *p);
const char *policy_rule_text(const struct policy *p, size_t i);	/* name or canonical */
const char *policy_rule_canonical(const struct policy *p, size_t i);
size_t policy_route_count(const struct policy *p);

void policy_free(struct policy *p);

#endif
