/*
 * policy: who may reach what. Guards, rules, routes and users, compiled into
 * one immutable object and queried with pure functions.
 *
 * Evaluation order for one (client, user, host, address, port):
 *   1. built-in guards (loopback, link-local incl. metadata, 0.0.0.0/8,
 *      multicast, broadcast, 100.100.100.100, the upstream proxy's own
 *      address:port); a guard is lifted only by name;
 *   2. rules in file order, first match wins; hostname rules match the name
 *      the client asked for, never an IP literal; when a hostname rule
 *      accepts, the address is still checked against every deny rule;
 *   3. implicit deny.
 * With no rules configured the policy is "accept routes:* for every
 * authenticated user", routes being TAILSCALE_ADVERTISE_ROUTES plus --allow.
 *
 * Decision cost does not grow with the number of prefix rules: prefixes are
 * indexed in a binary trie per family that yields candidate rules along the
 * address's path.
 */
#ifndef TAILFENCE_POLICY_H
#define TAILFENCE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tailfence/cidr.h"

struct policy;

enum policy_action {
	POLICY_DENY = 0,
	POLICY_ACCEPT = 1,
};

enum policy_via {
	POLICY_VIA_UPSTREAM = 0,	/* the configured upstream (tailnet) */
	POLICY_VIA_DIRECT = 1,		/* dial from this host */
};

struct policy_query {
	const char *host;	/* name the client asked for; NULL for an IP literal */
	struct cidr_addr dst;	/* address to be dialed; family 0 = not yet known */
	uint16_t port;
	const char *user;	/* authenticated user name; NULL if none */
	struct cidr_addr src;	/* client address */
};

struct policy_decision {
	enum policy_action action;
	enum policy_via via;
	int rule;		/* deciding rule, 0-based in file order; -1 if none */
	const char *rule_text;	/* that rule's name or canonical text; NULL if none */
	const char *guard;	/* guard name when a guard decided; NULL otherwise */
	char reason[160];	/* one line for people: "guard loopback: 127.0.0.1 is a loopback address" */
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

/* True when users are configured: clients must authenticate. */
bool policy_auth_required(const struct policy *p);

/* Verifies a password against the stored KDF hash in constant time; an
 * unknown user costs the same as a wrong password. Successful checks are
 * remembered (keyed hash in memory) so that the KDF does not run for every
 * connection of the same client. Never logs credentials. */
bool policy_authenticate(const struct policy *p, const char *user, const char *pass);

/* Names of the built-in guards, NULL-terminated. */
const char *const *policy_guard_names(void);

void policy_free(struct policy *p);

#endif
