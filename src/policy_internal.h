/*
 * policy_internal: what the parts of the policy share. Not a public
 * header; only policy.c and policy_dst.c include it (policy_cli.c and the
 * rest of the tree use include/tailfence/policy.h).
 *
 *   policy_dst.c    the destination grammar: one dst entry of a rule
 *                   ("10.0.0.0/24:443", "db:5432", "*.example.com:*",
 *                   "routes:*") parsed, checked and formatted back
 *   policy.c        the builder (guards, routes, self, upstream, users,
 *                   rules), the compiled indexes, policy_decide,
 *                   policy_precheck and the accessors
 */
#ifndef TAILFENCE_POLICY_INTERNAL_H
#define TAILFENCE_POLICY_INTERNAL_H

#include "tailfence/policy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* Makes room for need elements of size bytes in *v (capacity *cap),
 * doubling; false when out of memory (*v is then unchanged). */
static inline bool policy_grow(void **v, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return true;
	size_t nc = *cap ? *cap * 2 : 8;
	while (nc < need)
		nc *= 2;
	if (nc > SIZE_MAX / size)
		return false;
	void *n = realloc(*v, nc * size);
	if (!n)
		return false;
	*v = n;
	*cap = nc;
	return true;
}

/* ------------------------------------------------------------------ */
/* destinations (policy_dst.c) */

/* DST_ROUTES, DST_PEERS and DST_TAILNET are the aliases of what the
 * tailnet carries: compiled from the configured routes in a static policy,
 * matched against each query's view in a live one. */
enum dst_kind { DST_PREFIX, DST_ANY, DST_ROUTES, DST_PEERS, DST_TAILNET, DST_HOST, DST_WILDCARD };

struct port_range {
	uint16_t lo, hi;
};

struct dst {
	enum dst_kind kind;
	struct cidr_prefix prefix;	/* DST_PREFIX */
	char *host;			/* DST_HOST: name; DST_WILDCARD: domain after "*." */
	struct port_range *ports;	/* at least one; "*" is 1-65535 */
	size_t n_ports;
};

/* Parses one dst entry into d (ports and host allocated; free with
 * policy_dst_free). On error d holds nothing and reason gets the tail of
 * the message ("has port 0; ports are 1 to 65535"): the caller quotes the
 * entry in front of it. */
bool policy_dst_parse(const char *s, struct dst *d, char *reason, size_t rlen);

void policy_dst_free(struct dst *d);

/* The canonical text of d: "10.0.0.0/24:443", "[fd00::/64]:*",
 * "*.example.com:80,443", "routes:*". */
void policy_dst_format(const struct dst *d, char *buf, size_t len);

/* True when port is in one of d's port ranges. */
static inline bool policy_dst_port_match(const struct dst *d, uint16_t port)
{
	for (size_t i = 0; i < d->n_ports; i++)
		if (port >= d->ports[i].lo && port <= d->ports[i].hi)
			return true;
	return false;
}

#endif
