/*
 * target: one destination a client asked for, from its words to the
 * verdict on every address it resolves to.
 *
 * The daemon (conn) and `tailfence check` both go through here, so what
 * check says is what the daemon does: the literal/name split, the name
 * rules, the refusal of numeric "names", the precheck before resolving,
 * and the decision on each candidate address, with the path tailscaled
 * would take. Pure.
 */
#ifndef TAILFENCE_TARGET_H
#define TAILFENCE_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tailfence/cidr.h"
#include "tailfence/policy.h"
#include "tailfence/tailnet.h"

/* At most this many candidate addresses are decided per target. */
#define TARGET_MAX_ADDRS 16

struct target {
	/* An address literal in canonical text, or the name as asked (its
	 * case and one trailing dot kept, as the audit trail shows it). */
	char host[256];
	bool is_name;
	struct cidr_addr addr;	/* when !is_name */
	uint16_t port;
};

/* Reads what the client asked for. An address literal (dotted-quad IPv4,
 * IPv6, bracketed IPv6, IPv4-mapped normalised) is an address; anything
 * else must be a host name: labels of letters, digits, '-' and '_' of 1 to
 * 63 bytes, at most 253 bytes, one optional trailing dot, and not made
 * only of digits and dots (resolvers read "127.1" or "0177.0.0.1" in
 * different ways; no guessing). false with a sentence in why otherwise. */
bool target_parse(struct target *t, const char *host, size_t len, uint16_t port, char *why,
		  size_t whylen);

/* The path tailscaled would take for an address decided as d. */
enum target_path {
	TARGET_PATH_UNKNOWN,	/* no live view of the tailnet */
	TARGET_PATH_TAILNET,	/* a peer carries it */
	TARGET_PATH_HOST,	/* the host's own network */
};

const char *target_path_str(enum target_path p);	/* NULL for UNKNOWN */

struct target_verdict {
	/* The addresses to dial, in order, with how each is dialed. */
	struct cidr_addr allowed[TARGET_MAX_ADDRS];
	enum policy_via via[TARGET_MAX_ADDRS];
	size_t n_allowed;
	/* The decision recorded: the first allowed address's, else the
	 * first denied one's. Its carrier and peer point into the view. */
	struct policy_decision d;
	struct cidr_addr shown;		/* the address it is about (family 0: none) */
	enum target_path path;
};

/* Before resolving a name: false, with v->d filled, when no address could
 * pass (so the name is not resolved at all). */
bool target_precheck(const struct policy *p, const struct target *t,
		     const struct policy_query *who, struct target_verdict *v);

/* Sees each address's decision as it is made (for `tailfence check`). */
typedef void (*target_visit_cb)(void *arg, const struct cidr_addr *addr,
				const struct policy_decision *d);

/* Decides every candidate address (at most TARGET_MAX_ADDRS are looked
 * at). who carries user, src and view; its host/dst/port are ignored.
 * direct_upstream: the configured upstream is `direct` (kernel-mode
 * tailscale routes carried addresses itself). visit may be NULL. */
void target_decide(const struct policy *p, const struct target *t,
		   const struct policy_query *who, const struct cidr_addr *addrs, size_t n,
		   bool direct_upstream, target_visit_cb visit, void *arg,
		   struct target_verdict *v);

#endif
