/*
 * policy_internal: what the three parts of the policy share. Not a public
 * header; only policy.c, policy_dst.c and policy_index.c include it
 * (policy_cli.c and the rest of the tree use include/tailfence/policy.h).
 *
 *   policy_dst.c    the destination grammar: one dst entry of a rule
 *                   ("10.0.0.0/24:443", "db:5432", "*.example.com:*",
 *                   "routes:*") parsed, checked and formatted back
 *   policy_index.c  the prefix trie and the name indexes, built from the
 *                   rules' destinations, and their lookups (the hot path)
 *   policy.c        the builder (guards, routes, self, upstream, users,
 *                   rules), policy_builder_finish, policy_decide,
 *                   policy_precheck and the accessors
 *
 * policy.c calls into the other two; they never call back, nor into each
 * other: what they share is the structs and inline helpers below.
 */
#ifndef TAILFENCE_POLICY_INTERNAL_H
#define TAILFENCE_POLICY_INTERNAL_H

#include "tailfence/policy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

/* ------------------------------------------------------------------ */
/* rules (policy.c) */

struct rule {
	enum policy_action action;
	enum policy_via via;
	char *text;		/* name, or canon */
	char *canon;		/* canonical text */
	struct dst *dst;
	size_t n_dst;
	struct cidr_prefix *src;
	size_t n_src;
	char **users;		/* NULL with n_users 0: any user */
	size_t n_users;
};

/* Source and user conditions of a rule. */
static inline bool policy_rule_meta_match(const struct rule *r, const struct policy_query *q)
{
	if (r->n_src) {
		bool ok = false;
		if (q->src.family)
			for (size_t i = 0; i < r->n_src && !ok; i++)
				ok = cidr_prefix_contains(&r->src[i], &q->src);
		if (!ok)
			return false;
	}
	if (r->n_users) {
		if (!q->user)
			return false;
		for (size_t i = 0; i < r->n_users; i++)
			if (strcmp(r->users[i], q->user) == 0)
				return true;
		return false;
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* the index (policy_index.c) */

/* The compiled prefix index of one family. Held inside struct policy so
 * that a lookup needs no extra pointer; its contents are policy_index.c's
 * alone. */
struct prefix_index {
	uint32_t *words;	/* node records; the root at 0 */
	size_t n_words, cap_words;
	union ix_cell *cells;	/* groups, each followed by its entries */
	size_t n_cells;
};

/* Name or domain destinations, sorted by name, then rule, then dst. */
struct name_index {
	struct name_entry *v;
	size_t n, cap;
};

/* The address and name destinations of every rule, compiled; part of the
 * immutable policy. The tailnet aliases of a live policy are not in it:
 * they follow each query's view (policy.c). */
struct policy_index {
	struct prefix_index all[2], deny[2];	/* [0] IPv4, [1] IPv6; deny: deny rules only */
	struct name_index hosts, wildcards;	/* DST_HOST names; DST_WILDCARD domains */
};

/* Destinations added while building, until policy_index_compile. */
struct policy_index_build;

struct policy_index_build *policy_index_build_new(void);
/* Frees a build that was not compiled. */
void policy_index_build_free(struct policy_index_build *ib);

/* Adds destination dst of rule (pfx, its prefix), to the deny index too
 * when deny. Rules must be added in order. False when out of memory. */
bool policy_index_add_prefix(struct policy_index_build *ib, const struct cidr_prefix *pfx,
			     uint32_t rule, uint32_t dst, bool deny);

/* Adds a name destination (wildcard: the domain of a *.DOMAIN one); key
 * is borrowed and must outlive the index (it is the rule's dst->host). */
bool policy_index_add_name(struct policy_index_build *ib, const char *key, bool wildcard,
			   uint32_t rule, uint32_t dst);

/* Compiles what was added into ix, reading the rules that the entries
 * name; always consumes ib. False only when out of memory (ix then holds
 * nothing). */
bool policy_index_compile(struct policy_index_build *ib, const struct rule *rules,
			  struct policy_index *ix);

void policy_index_free(struct policy_index *ix);

/* What a decision needs of the rule that the index found, read from the
 * index itself so that the common case never touches the rule. */
struct policy_index_hit {
	enum policy_action action;
	enum policy_via via;
};

/* The lowest rule with a prefix destination covering q->dst (normalised;
 * AF_INET or AF_INET6) that also matches q's port, source and user;
 * UINT32_MAX when there is none. When there is one, *how gets its action
 * and via. */
uint32_t policy_index_match_addr(const struct policy_index *ix, const struct rule *rules,
				 const struct policy_query *q, struct policy_index_hit *how);

/* The lowest deny rule with a prefix destination covering q->dst that
 * also matches q's port, source and user, accept rules before it or not;
 * UINT32_MAX when there is none. */
uint32_t policy_index_match_deny(const struct policy_index *ix, const struct rule *rules,
				 const struct policy_query *q);

/* The lowest rule with a name destination for name (normalised) itself, or
 * a *.DOMAIN one for one of its parent domains, that also matches q's
 * port, source and user; UINT32_MAX when there is none. */
uint32_t policy_index_match_name(const struct policy_index *ix, const struct rule *rules,
				 const char *name, const struct policy_query *q);

#endif
