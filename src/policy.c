/*
 * policy: guards, rules, routes and users compiled into one immutable
 * object, and the pure decision functions over it.
 *
 * Index: every prefix destination (including the expansion of "routes:" and
 * "*") is first put at its node of a binary trie per family (one trie with
 * every rule, one with deny rules only), which is then compiled into a
 * multibit trie (6 bits per level, nodes of two bitmaps and two base
 * indexes in one contiguous array) whose leaves name the deepest prefix
 * covering the address; from there a chain of shorter covering prefixes
 * holds the candidate rules, scanned in rule order, stopping at the first
 * match or once no rule left on the chain can beat the best found so far.
 * The cost grows with the number of nested prefixes covering the address
 * and the rules sharing one prefix, not with the number of rules; a lookup
 * touches at most 6 nodes for IPv4. Hostname and *.domain destinations live
 * in sorted arrays looked up by the name and each of its parent domains.
 */
#include "policy_internal.h"

#include "tailfence/auth.h"
#include "tailfence/hostname.h"
#include "tailfence/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Build-time binary trie: one node per prefix bit, entries listed at the
 * node where their prefix ends. Compiled into a prefix_index, then freed. */
struct trie_entry {
	uint32_t rule, dst;
	uint32_t next;		/* index + 1 into entries; 0 ends */
};

struct trie_node {
	uint32_t child[2];	/* index into nodes; 0 = none (root is 0, never a child) */
	uint32_t head;		/* first entry + 1; 0 = none */
};

struct trie {
	struct trie_node *nodes;
	size_t n_nodes, cap_nodes;
	struct trie_entry *entries;
	size_t n_entries, cap_entries;
};

/* The compiled index. Every distinct prefix is a group: a header cell
 * (the group of the next shorter prefix covering it, the lowest rule index
 * on that chain, the number of entries) followed by its entries in rule
 * order, each carrying what a decision needs (port range, action, via),
 * so the common case never reads the rule itself; cells are 12 bytes, as
 * the index must stay small to stay in the cache. The address
 * space is cut into a multibit trie of IX_STRIDE bits per level. A node is
 * a record in one array of 32-bit words: a bitmap of the slots with a child
 * node, a bitmap of the slots where a run of equal leaves starts, the
 * children's offsets, then the leaves; a slot's child or leaf is found by
 * counting bits, next to the bitmaps. A leaf is the deepest group covering
 * the slot (pushed down from shorter prefixes). A lookup reads at most 6
 * node records for IPv4 (22 for IPv6), then walks the group chain, stopping
 * when the chain's lowest rule cannot beat the best match so far. */
#define IX_STRIDE 6
#define IX_NONE UINT32_MAX
#define IX_SLOW 0x80000000u	/* in ix_entry.dst: the full check is needed */
#define IX_ACCEPT 0x40000000u	/* in ix_entry.dst: an accept rule */
#define IX_DIRECT 0x20000000u	/* in ix_entry.dst: via direct */
#define IX_UPSTREAM 0x10000000u	/* in ix_entry.dst: via upstream (any path) */
#define IX_DST_MASK 0x0fffffffu
#define IX_HDR 4		/* words before a node's child offsets */

struct ix_entry {
	uint32_t rule;
	uint32_t dst;		/* index into the rule's dst | IX_SLOW | IX_ACCEPT | IX_DIRECT */
	uint16_t lo, hi;	/* the dst's one port range (without IX_SLOW) */
};

struct ix_group {
	uint32_t parent;	/* cell of the next shorter covering prefix, or IX_NONE */
	uint32_t min_rule;	/* lowest rule in this group and its ancestors */
	uint32_t count;		/* entries in the cells that follow */
};

union ix_cell {
	struct ix_group g;
	struct ix_entry e;
};

struct prefix_index {
	uint32_t *words;	/* node records; the root at 0 */
	size_t n_words, cap_words;
	union ix_cell *cells;	/* groups, each followed by its entries */
	size_t n_cells;
};

struct name_entry {
	const char *key;	/* borrowed from the rule's dst */
	uint32_t rule, dst;
};

struct name_index {
	struct name_entry *v;
	size_t n, cap;
};

enum guard_id {
	GUARD_LOOPBACK,
	GUARD_LINK_LOCAL,
	GUARD_THIS_NETWORK,
	GUARD_MULTICAST,
	GUARD_BROADCAST,
	GUARD_TAILSCALE_SERVICE,
	GUARD_UPSTREAM,
	GUARD_SELF,
	GUARD_COUNT
};

static const char *const guard_names[GUARD_COUNT + 1] = {
	"loopback", "link-local", "this-network", "multicast", "broadcast",
	"tailscale-service", "upstream", "self", NULL,
};

struct guard_prefix {
	enum guard_id guard;
	const char *prefix;
	const char *what;
};

/* Checked in this order; the first hit decides. */
static const struct guard_prefix guard_prefixes[] = {
	{ GUARD_LINK_LOCAL, "169.254.169.254/32", "is the cloud metadata service (link-local)" },
	{ GUARD_LOOPBACK, "127.0.0.0/8", "is a loopback address" },
	{ GUARD_LOOPBACK, "::1/128", "is a loopback address" },
	{ GUARD_LINK_LOCAL, "169.254.0.0/16", "is a link-local address" },
	{ GUARD_LINK_LOCAL, "fe80::/10", "is a link-local address" },
	{ GUARD_THIS_NETWORK, "0.0.0.0/8", "is in 0.0.0.0/8 (this network)" },
	{ GUARD_THIS_NETWORK, "::/128", "is the unspecified address" },
	{ GUARD_MULTICAST, "224.0.0.0/4", "is a multicast address" },
	{ GUARD_MULTICAST, "ff00::/8", "is a multicast address" },
	{ GUARD_BROADCAST, "255.255.255.255/32", "is the broadcast address" },
	{ GUARD_TAILSCALE_SERVICE, "100.100.100.100/32", "is Tailscale's service address (Quad100)" },
	{ GUARD_TAILSCALE_SERVICE, "fd7a:115c:a1e0::53/128", "is Tailscale's service address" },
};
#define N_GUARD_PREFIXES (sizeof guard_prefixes / sizeof guard_prefixes[0])

/* A tailnet alias in a live policy: checked against each query's view. */
struct dyn_entry {
	uint32_t rule, dst;
};

struct policy {
	struct rule *rules;
	size_t n_rules, cap_rules;
	struct cidr_prefix *routes;
	size_t n_routes, cap_routes;
	unsigned lifted;		/* bit per enum guard_id */
	bool have_upstream;
	struct cidr_addr self[32];	/* this host's interface addresses (guard self) */
	size_t n_self;
	struct cidr_addr upstream_addr;
	uint16_t upstream_port;
	struct cidr_prefix guard_pfx[N_GUARD_PREFIXES];
	struct auth_users *users;

	struct prefix_index all[2], deny[2];	/* [0] IPv4, [1] IPv6 */
	struct name_index hosts, wildcards;
	const char **texts;		/* rule texts, dense, for decisions from the index */
	uint32_t *addr_accepts;		/* accept rules with an address dst, in order */
	size_t n_addr_accepts;
	bool live;			/* aliases follow the query's view */
	struct dyn_entry *dyn;		/* live aliases, in rule order */
	size_t n_dyn;
};

struct policy_builder {
	struct policy *p;
	struct trie all[2], deny[2];	/* filled by policy_builder_finish */
};

static void trie_free(struct trie *t);
static void ix_free(struct prefix_index *ix);

static bool addr_in(const struct cidr_addr *v, size_t n, const struct cidr_addr *a)
{
	for (size_t i = 0; i < n; i++)
		if (cidr_addr_equal(&v[i], a))
			return true;
	return false;
}

/* ------------------------------------------------------------------ */
/* builder */

struct policy_builder *policy_builder_new(void)
{
	struct policy_builder *b = calloc(1, sizeof *b);
	if (!b)
		return NULL;
	b->p = calloc(1, sizeof *b->p);
	if (!b->p) {
		free(b);
		return NULL;
	}
	b->p->users = auth_users_new();
	if (!b->p->users) {
		free(b->p);
		free(b);
		return NULL;
	}
	for (size_t i = 0; i < N_GUARD_PREFIXES; i++) {
		const char *s = guard_prefixes[i].prefix;
		cidr_prefix_parse(s, strlen(s), &b->p->guard_pfx[i], NULL, 0);
	}
	return b;
}

void policy_builder_free(struct policy_builder *b)
{
	if (!b)
		return;
	for (int f = 0; f < 2; f++) {
		trie_free(&b->all[f]);
		trie_free(&b->deny[f]);
	}
	policy_free(b->p);
	free(b);
}

void policy_builder_add_route(struct policy_builder *b, const struct cidr_prefix *pfx)
{
	struct policy *p = b->p;
	for (size_t i = 0; i < p->n_routes; i++)
		if (p->routes[i].bits == pfx->bits && cidr_addr_equal(&p->routes[i].addr, &pfx->addr))
			return;
	if (!policy_grow((void **)&p->routes, &p->cap_routes, p->n_routes + 1, sizeof *p->routes))
		return;
	p->routes[p->n_routes++] = *pfx;
}

void policy_builder_set_live(struct policy_builder *b, bool live)
{
	b->p->live = live;
}

bool policy_builder_lift_guard(struct policy_builder *b, const char *name)
{
	for (int i = 0; i < GUARD_COUNT; i++)
		if (strcmp(guard_names[i], name) == 0) {
			b->p->lifted |= 1u << i;
			return true;
		}
	return false;
}

void policy_builder_add_self(struct policy_builder *b, const struct cidr_addr *a)
{
	struct policy *p = b->p;
	if (p->n_self < sizeof p->self / sizeof p->self[0] && !addr_in(p->self, p->n_self, a))
		p->self[p->n_self++] = *a;
}

void policy_builder_set_upstream(struct policy_builder *b, const struct cidr_addr *a,
				 uint16_t port)
{
	b->p->have_upstream = true;
	b->p->upstream_addr = *a;
	b->p->upstream_port = port;
}

bool policy_builder_add_user(struct policy_builder *b, const char *name, const char *hash,
			     char *err, size_t errlen)
{
	return auth_users_add(b->p->users, name, hash, err, errlen);
}

static void rule_free(struct rule *r)
{
	for (size_t i = 0; i < r->n_dst; i++)
		policy_dst_free(&r->dst[i]);
	free(r->dst);
	free(r->src);
	for (size_t i = 0; i < r->n_users; i++)
		free(r->users[i]);
	free(r->users);
	if (r->text != r->canon)
		free(r->text);
	free(r->canon);
}

static char *rule_canonical_text(const struct rule *r)
{
	size_t cap = 64, len = 0;
	for (size_t i = 0; i < r->n_dst; i++)
		cap += 300;
	cap += r->n_src * (CIDR_PREFIX_STRLEN + 1);
	for (size_t i = 0; i < r->n_users; i++)
		cap += strlen(r->users[i]) + 1;
	char *t = malloc(cap);
	if (!t)
		return NULL;
	len += (size_t)snprintf(t + len, cap - len, "%s",
				r->action == POLICY_ACCEPT ? "accept" : "deny");
	if (r->n_users) {
		len += (size_t)snprintf(t + len, cap - len, " users=");
		for (size_t i = 0; i < r->n_users; i++)
			len += (size_t)snprintf(t + len, cap - len, "%s%s", i ? "," : "", r->users[i]);
	}
	if (r->n_src) {
		len += (size_t)snprintf(t + len, cap - len, " src=");
		for (size_t i = 0; i < r->n_src; i++) {
			char pf[CIDR_PREFIX_STRLEN];
			len += (size_t)snprintf(t + len, cap - len, "%s%s", i ? "," : "",
						cidr_prefix_format(&r->src[i], pf, sizeof pf));
		}
	}
	len += (size_t)snprintf(t + len, cap - len, " dst=");
	for (size_t i = 0; i < r->n_dst; i++) {
		char d[300];
		policy_dst_format(&r->dst[i], d, sizeof d);
		len += (size_t)snprintf(t + len, cap - len, "%s%s", i ? "," : "", d);
	}
	if (r->via == POLICY_VIA_DIRECT)
		snprintf(t + len, cap - len, " via=direct");
	else if (r->via == POLICY_VIA_UPSTREAM)
		snprintf(t + len, cap - len, " via=upstream");
	return t;
}

bool policy_builder_add_rule(struct policy_builder *b, const struct policy_rule_spec *spec,
			     char *err, size_t errlen)
{
	struct policy *p = b->p;
	struct rule r;
	char reason[200], q[256];

	memset(&r, 0, sizeof r);
	r.action = spec->action;
	r.via = spec->via;
	if (spec->n_dst == 0) {
		snprintf(err, errlen, "dst: is empty; a rule needs at least one destination");
		return false;
	}
	r.dst = calloc(spec->n_dst, sizeof *r.dst);
	if (spec->n_src)
		r.src = calloc(spec->n_src, sizeof *r.src);
	if (!r.dst || (spec->n_src && !r.src)) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < spec->n_dst; i++) {
		const char *e = spec->dst[i] ? spec->dst[i] : "";
		if (!policy_dst_parse(e, &r.dst[i], reason, sizeof reason)) {
			log_quote(e, strlen(e), 80, q, sizeof q);
			snprintf(err, errlen, "dst[%zu]: \"%s\": %s", i, q, reason);
			goto fail;
		}
		r.n_dst++;
	}
	for (size_t i = 0; i < spec->n_src; i++) {
		const char *e = spec->src[i] ? spec->src[i] : "";
		if (!cidr_prefix_parse_reason(e, strlen(e), &r.src[i], reason, sizeof reason)) {
			log_quote(e, strlen(e), 80, q, sizeof q);
			snprintf(err, errlen, "src[%zu]: \"%s\": %s", i, q, reason);
			goto fail;
		}
		r.n_src++;
	}
	bool any_user = false;
	for (size_t i = 0; i < spec->n_users; i++) {
		const char *u = spec->users[i] ? spec->users[i] : "";
		if (strcmp(u, "*") == 0) {
			any_user = true;
			continue;
		}
		if (!auth_users_has(p->users, u)) {
			log_quote(u, strlen(u), 80, q, sizeof q);
			snprintf(err, errlen, "users[%zu]: \"%s\" is not a configured user%s", i, q,
				 auth_users_count(p->users) ? "" : " (no \"users\" are configured)");
			goto fail;
		}
	}
	if (!any_user && spec->n_users) {
		r.users = calloc(spec->n_users, sizeof *r.users);
		if (!r.users)
			goto fail;
		for (size_t i = 0; i < spec->n_users; i++) {
			r.users[i] = strdup(spec->users[i]);
			if (!r.users[i])
				goto fail;
			r.n_users++;
		}
	}
	r.canon = rule_canonical_text(&r);
	if (!r.canon)
		goto fail;
	r.text = spec->name && spec->name[0] ? strdup(spec->name) : r.canon;
	if (!r.text)
		goto fail;
	if (!policy_grow((void **)&p->rules, &p->cap_rules, p->n_rules + 1, sizeof *p->rules))
		goto fail;
	p->rules[p->n_rules++] = r;
	return true;
fail:
	if (err && errlen && err[0] == '\0')
		snprintf(err, errlen, "out of memory");
	rule_free(&r);
	return false;
}

static bool trie_insert(struct trie *t, const struct cidr_prefix *pfx, uint32_t rule,
			uint32_t dst)
{
	if (t->n_nodes == 0) {
		if (!policy_grow((void **)&t->nodes, &t->cap_nodes, 1, sizeof *t->nodes))
			return false;
		memset(&t->nodes[0], 0, sizeof t->nodes[0]);
		t->n_nodes = 1;
	}
	uint32_t n = 0;
	for (unsigned i = 0; i < pfx->bits; i++) {
		int bit = cidr_addr_bit(&pfx->addr, i);
		if (t->nodes[n].child[bit] == 0) {
			if (!policy_grow((void **)&t->nodes, &t->cap_nodes, t->n_nodes + 1, sizeof *t->nodes))
				return false;
			memset(&t->nodes[t->n_nodes], 0, sizeof t->nodes[0]);
			t->nodes[n].child[bit] = (uint32_t)t->n_nodes++;
		}
		n = t->nodes[n].child[bit];
	}
	if (!policy_grow((void **)&t->entries, &t->cap_entries, t->n_entries + 1, sizeof *t->entries))
		return false;
	struct trie_entry *e = &t->entries[t->n_entries];
	e->rule = rule;
	e->dst = dst;
	e->next = t->nodes[n].head;	/* prepended; reversed in trie_finish */
	t->nodes[n].head = (uint32_t)++t->n_entries;
	return true;
}

static void trie_finish(struct trie *t)
{
	for (size_t n = 0; n < t->n_nodes; n++) {
		uint32_t prev = 0, cur = t->nodes[n].head;
		while (cur) {
			uint32_t next = t->entries[cur - 1].next;
			t->entries[cur - 1].next = prev;
			prev = cur;
			cur = next;
		}
		t->nodes[n].head = prev;
	}
}

static void trie_free(struct trie *t)
{
	free(t->nodes);
	free(t->entries);
	memset(t, 0, sizeof *t);
}

static void ix_free(struct prefix_index *ix)
{
	free(ix->words);
	free(ix->cells);
}

struct ix_build {
	const struct policy *p;
	const struct trie *t;
	uint32_t *group_of;		/* binary trie node -> group cell, or IX_NONE */
	struct prefix_index *ix;
};

/* One of a stride node's slots while it is being built: the binary trie
 * node that continues below it (IX_NONE for a leaf) and the deepest group
 * covering it. */
struct ix_slot {
	uint32_t node, group;
};

/* Walks IX_STRIDE levels of the binary trie below node n (covered by group
 * g), filling slots[v << (IX_STRIDE - level) ...]. */
static void ix_fill(const struct ix_build *bd, uint32_t n, unsigned level, unsigned v,
		    uint32_t g, struct ix_slot *slots)
{
	const struct trie_node *tn = &bd->t->nodes[n];
	if (level == IX_STRIDE) {
		slots[v].node = (tn->child[0] || tn->child[1]) ? n : IX_NONE;
		slots[v].group = g;
		return;
	}
	for (unsigned b = 0; b < 2; b++) {
		uint32_t c = tn->child[b];
		unsigned vv = v << 1 | b;
		if (c) {
			uint32_t cg = bd->group_of[c] != IX_NONE ? bd->group_of[c] : g;
			ix_fill(bd, c, level + 1, vv, cg, slots);
		} else {
			unsigned span = 1u << (IX_STRIDE - 1 - level);
			for (unsigned k = vv * span; k < (vv + 1) * span; k++) {
				slots[k].node = IX_NONE;
				slots[k].group = g;
			}
		}
	}
}

/* Appends the node record for binary node n (covered by group g) and,
 * after it, its children's; *out gets its offset. */
static bool ix_build_node(struct ix_build *bd, uint32_t n, uint32_t g, uint32_t *out)
{
	struct ix_slot slots[1u << IX_STRIDE];
	struct prefix_index *ix = bd->ix;
	uint64_t children = 0, runs = 0;
	size_t n_children = 0, n_leaves = 0;
	uint32_t last = IX_NONE;

	ix_fill(bd, n, 0, 0, g, slots);
	for (unsigned v = 0; v < (1u << IX_STRIDE); v++) {
		uint64_t bit = (uint64_t)1 << v;
		if (slots[v].node != IX_NONE) {
			children |= bit;
			n_children++;
		} else if (n_leaves == 0 || slots[v].group != last) {
			runs |= bit;
			n_leaves++;
			last = slots[v].group;
		}
	}
	size_t o = ix->n_words, need = IX_HDR + n_children + n_leaves;
	if (o + need > UINT32_MAX ||
	    !policy_grow((void **)&ix->words, &ix->cap_words, o + need, sizeof *ix->words))
		return false;
	ix->n_words += need;
	memcpy(&ix->words[o], &children, sizeof children);
	memcpy(&ix->words[o + 2], &runs, sizeof runs);
	for (unsigned v = 0, k = 0; v < (1u << IX_STRIDE); v++)
		if (runs & ((uint64_t)1 << v))
			ix->words[o + IX_HDR + n_children + k++] = slots[v].group;
	for (unsigned v = 0, k = 0; v < (1u << IX_STRIDE); v++) {
		if (slots[v].node == IX_NONE)
			continue;
		uint32_t child;
		if (!ix_build_node(bd, slots[v].node, slots[v].group, &child))
			return false;
		ix->words[o + IX_HDR + k++] = child;
	}
	*out = (uint32_t)o;
	return true;
}

/* Compiles binary trie t (entries in rule order at each node) into ix. */
static bool ix_compile(const struct policy *p, const struct trie *t, struct prefix_index *ix)
{
	struct ix_build bd = { .p = p, .t = t, .ix = ix };
	uint32_t *up = NULL;
	bool ok = false;

	memset(ix, 0, sizeof *ix);
	if (t->n_nodes == 0)
		return true;
	if (t->n_nodes > UINT32_MAX / 4 || t->n_entries > UINT32_MAX / 4)
		return false;
	bd.group_of = calloc(t->n_nodes, sizeof *bd.group_of);
	up = calloc(t->n_nodes, sizeof *up);
	ix->cells = calloc(t->n_nodes + t->n_entries, sizeof *ix->cells);
	if (!bd.group_of || !up || !ix->cells)
		goto out;
	/* Groups, parents before children (a child's index is always larger
	 * than its parent's). up[n]: nearest group strictly above n. */
	up[0] = IX_NONE;
	for (size_t n = 0; n < t->n_nodes; n++) {
		const struct trie_node *tn = &t->nodes[n];
		uint32_t gid = IX_NONE;
		if (tn->head) {
			gid = (uint32_t)ix->n_cells++;
			struct ix_group *gr = &ix->cells[gid].g;
			gr->parent = up[n];
			gr->min_rule = UINT32_MAX;
			for (uint32_t e = tn->head; e; e = t->entries[e - 1].next) {
				const struct trie_entry *te = &t->entries[e - 1];
				const struct rule *r = &p->rules[te->rule];
				const struct dst *d = &r->dst[te->dst];
				if (te->dst > IX_DST_MASK)
					goto out;
				struct ix_entry *ie = &ix->cells[ix->n_cells++].e;
				ie->rule = te->rule;
				ie->dst = te->dst;
				ie->lo = d->ports[0].lo;
				ie->hi = d->ports[0].hi;
				if (d->n_ports != 1 || r->n_src || r->n_users)
					ie->dst |= IX_SLOW;
				if (r->action == POLICY_ACCEPT)
					ie->dst |= IX_ACCEPT;
				if (r->via == POLICY_VIA_DIRECT)
					ie->dst |= IX_DIRECT;
				else if (r->via == POLICY_VIA_UPSTREAM)
					ie->dst |= IX_UPSTREAM;
				if (te->rule < gr->min_rule)
					gr->min_rule = te->rule;
				gr->count++;
			}
			if (gr->parent != IX_NONE && ix->cells[gr->parent].g.min_rule < gr->min_rule)
				gr->min_rule = ix->cells[gr->parent].g.min_rule;
		}
		bd.group_of[n] = gid;
		uint32_t nearest = gid != IX_NONE ? gid : up[n];
		for (int b = 0; b < 2; b++)
			if (tn->child[b])
				up[tn->child[b]] = nearest;
	}
	uint32_t root;
	ok = ix_build_node(&bd, 0, bd.group_of[0], &root);
out:
	free(bd.group_of);
	free(up);
	if (!ok) {
		ix_free(ix);
		memset(ix, 0, sizeof *ix);
	}
	return ok;
}

static int name_cmp(const void *a, const void *b)
{
	const struct name_entry *x = a, *y = b;
	int c = strcmp(x->key, y->key);
	if (c)
		return c;
	if (x->rule != y->rule)
		return x->rule < y->rule ? -1 : 1;
	return x->dst < y->dst ? -1 : x->dst > y->dst;
}

static bool name_add(struct name_index *ix, const char *key, uint32_t rule, uint32_t dst)
{
	if (!policy_grow((void **)&ix->v, &ix->cap, ix->n + 1, sizeof *ix->v))
		return false;
	ix->v[ix->n].key = key;
	ix->v[ix->n].rule = rule;
	ix->v[ix->n].dst = dst;
	ix->n++;
	return true;
}

static bool index_prefix(struct policy_builder *b, const struct cidr_prefix *pfx, uint32_t ri,
			 uint32_t di)
{
	int f = pfx->addr.family == AF_INET ? 0 : 1;
	if (!trie_insert(&b->all[f], pfx, ri, di))
		return false;
	if (b->p->rules[ri].action == POLICY_DENY && !trie_insert(&b->deny[f], pfx, ri, di))
		return false;
	return true;
}

struct policy *policy_builder_finish(struct policy_builder *b)
{
	struct policy *p = b->p;
	struct cidr_prefix any4, any6;

	cidr_prefix_parse("0.0.0.0/0", 9, &any4, NULL, 0);
	cidr_prefix_parse("::/0", 4, &any6, NULL, 0);
	size_t n_dst = 0;
	for (size_t ri = 0; ri < p->n_rules; ri++)
		n_dst += p->rules[ri].n_dst;
	p->addr_accepts = calloc(p->n_rules ? p->n_rules : 1, sizeof *p->addr_accepts);
	p->texts = calloc(p->n_rules ? p->n_rules : 1, sizeof *p->texts);
	p->dyn = calloc(n_dst ? n_dst : 1, sizeof *p->dyn);
	if (!p->addr_accepts || !p->texts || !p->dyn)
		goto fail;
	for (size_t ri = 0; ri < p->n_rules; ri++)
		p->texts[ri] = p->rules[ri].text;
	for (uint32_t ri = 0; ri < p->n_rules; ri++) {
		struct rule *r = &p->rules[ri];
		bool has_addr = false;
		for (uint32_t di = 0; di < r->n_dst; di++) {
			struct dst *d = &r->dst[di];
			switch (d->kind) {
			case DST_PREFIX:
				if (!index_prefix(b, &d->prefix, ri, di))
					goto fail;
				has_addr = true;
				break;
			case DST_ANY:
				if (!index_prefix(b, &any4, ri, di) || !index_prefix(b, &any6, ri, di))
					goto fail;
				has_addr = true;
				break;
			case DST_ROUTES:
			case DST_PEERS:
			case DST_TAILNET:
				if (p->live) {
					p->dyn[p->n_dyn].rule = ri;
					p->dyn[p->n_dyn++].dst = di;
					break;
				}
				if (d->kind == DST_PEERS)
					break;	/* no peers without a tailnet view */
				for (size_t k = 0; k < p->n_routes; k++)
					if (!index_prefix(b, &p->routes[k], ri, di))
						goto fail;
				has_addr = has_addr || p->n_routes > 0;
				break;
			case DST_HOST:
				if (!name_add(&p->hosts, d->host, ri, di))
					goto fail;
				break;
			case DST_WILDCARD:
				if (!name_add(&p->wildcards, d->host, ri, di))
					goto fail;
				break;
			}
		}
		if (has_addr && r->action == POLICY_ACCEPT)
			p->addr_accepts[p->n_addr_accepts++] = ri;
	}
	for (int f = 0; f < 2; f++) {
		trie_finish(&b->all[f]);
		trie_finish(&b->deny[f]);
		if (!ix_compile(p, &b->all[f], &p->all[f]) ||
		    !ix_compile(p, &b->deny[f], &p->deny[f]))
			goto fail;
		trie_free(&b->all[f]);
		trie_free(&b->deny[f]);
	}
	if (p->hosts.n)
		qsort(p->hosts.v, p->hosts.n, sizeof *p->hosts.v, name_cmp);
	if (p->wildcards.n)
		qsort(p->wildcards.v, p->wildcards.n, sizeof *p->wildcards.v, name_cmp);
	free(b);
	return p;
fail:
	policy_builder_free(b);
	return NULL;
}

void policy_free(struct policy *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_rules; i++)
		rule_free(&p->rules[i]);
	free(p->rules);
	free(p->routes);
	auth_users_free(p->users);
	for (int f = 0; f < 2; f++) {
		ix_free(&p->all[f]);
		ix_free(&p->deny[f]);
	}
	free(p->hosts.v);
	free(p->wildcards.v);
	free(p->addr_accepts);
	free(p->texts);
	free(p->dyn);
	free(p);
}

/* ------------------------------------------------------------------ */
/* decisions */

/* Source and user conditions of a rule. */
static bool meta_match(const struct rule *r, const struct policy_query *q)
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

/* Bits pos .. pos + 5 (0 = most significant) of the 128-bit hi:lo, bits
 * past the end reading as zero. */
static unsigned ix_chunk(uint64_t hi, uint64_t lo, unsigned pos)
{
	if (pos <= 64 - IX_STRIDE)
		return (unsigned)(hi >> (64 - IX_STRIDE - pos)) & ((1u << IX_STRIDE) - 1);
	if (pos < 64)
		return (unsigned)((hi << (pos - (64 - IX_STRIDE))) |
				  (lo >> (128 - IX_STRIDE - pos))) & ((1u << IX_STRIDE) - 1);
	pos -= 64;
	if (pos <= 64 - IX_STRIDE)
		return (unsigned)(lo >> (64 - IX_STRIDE - pos)) & ((1u << IX_STRIDE) - 1);
	return (unsigned)(lo << (pos - (64 - IX_STRIDE))) & ((1u << IX_STRIDE) - 1);
}

static unsigned ix_popcount(uint64_t x)
{
#ifdef __POPCNT__
	return (unsigned)__builtin_popcountll(x);
#else
	x = x - ((x >> 1) & 0x5555555555555555ULL);
	x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
	x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
	return (unsigned)((x * 0x0101010101010101ULL) >> 56);
#endif
}

/* The entry of the lowest rule index below *best matching a (port, src,
 * user included) in ix, with *best updated; NULL if none. */
static const struct ix_entry *ix_lookup(const struct policy *p, const struct prefix_index *ix,
					const struct cidr_addr *a, const struct policy_query *q,
					uint32_t *best)
{
	if (ix->n_words == 0)
		return NULL;
	uint64_t hi = 0, lo = 0;
	if (a->family == AF_INET) {
		hi = (uint64_t)a->b[0] << 56 | (uint64_t)a->b[1] << 48 | (uint64_t)a->b[2] << 40 |
		     (uint64_t)a->b[3] << 32;
	} else {
		for (int i = 0; i < 8; i++) {
			hi = hi << 8 | a->b[i];
			lo = lo << 8 | a->b[8 + i];
		}
	}
	const uint32_t *w = ix->words;
	uint32_t o = 0, g;
	for (unsigned pos = 0;; pos += IX_STRIDE) {
		uint64_t children, runs, bit = (uint64_t)1 << ix_chunk(hi, lo, pos);
		memcpy(&children, &w[o], sizeof children);
		if (children & bit) {
			o = w[o + IX_HDR + ix_popcount(children & (bit - 1))];
			continue;
		}
		memcpy(&runs, &w[o + 2], sizeof runs);
		/* bit << 1 wraps to 0 for slot 63: the mask is then all ones */
		g = w[o + IX_HDR + ix_popcount(children) + ix_popcount(runs & ((bit << 1) - 1)) - 1];
		break;
	}
	const struct ix_entry *hit = NULL;
	for (; g != IX_NONE && ix->cells[g].g.min_rule < *best; g = ix->cells[g].g.parent) {
		const union ix_cell *c = &ix->cells[g];
		for (uint32_t i = 1; i <= c->g.count; i++) {
			const struct ix_entry *e = &c[i].e;
			if (e->rule >= *best)
				break;
			bool ok;
			if (e->dst & IX_SLOW) {
				const struct rule *r = &p->rules[e->rule];
				ok = policy_dst_port_match(&r->dst[e->dst & IX_DST_MASK], q->port) &&
				     meta_match(r, q);
			} else {
				ok = q->port >= e->lo && q->port <= e->hi;
			}
			if (ok) {
				*best = e->rule;
				hit = e;
				break;
			}
		}
	}
	return hit;
}

static uint32_t names_lookup(const struct policy *p, const struct name_index *ix,
			     const char *key, const struct policy_query *q, uint32_t best)
{
	size_t lo = 0, hi = ix->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(ix->v[mid].key, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo; i < ix->n && strcmp(ix->v[i].key, key) == 0; i++) {
		const struct name_entry *e = &ix->v[i];
		if (e->rule >= best)
			break;
		const struct rule *r = &p->rules[e->rule];
		if (policy_dst_port_match(&r->dst[e->dst], q->port) && meta_match(r, q))
			return e->rule;
	}
	return best;
}

/* Lowest rule index whose name destination matches the normalised name. */
static uint32_t name_match(const struct policy *p, const char *name,
			   const struct policy_query *q)
{
	uint32_t best = names_lookup(p, &p->hosts, name, q, UINT32_MAX);
	if (p->wildcards.n)
		for (const char *dot = strchr(name, '.'); dot; dot = strchr(dot + 1, '.'))
			best = names_lookup(p, &p->wildcards, dot + 1, q, best);
	return best;
}

/* The requested name, normalised, when it is a name and not an IP literal. */
static bool query_name(const struct policy_query *q, char *buf, size_t len)
{
	if (!q->host || !q->host[0])
		return false;
	struct cidr_addr tmp;
	if (cidr_addr_parse(q->host, &tmp))
		return false;
	/* "[::1]" style literals too */
	size_t hl = strlen(q->host);
	if (q->host[0] == '[' && hl > 2 && q->host[hl - 1] == ']' &&
	    cidr_addr_parsen(q->host + 1, hl - 2, &tmp))
		return false;
	return hostname_normalize(q->host, strlen(q->host), buf, len);
}

__attribute__((format(printf, 2, 3)))
static void reasonf(struct policy_decision *d, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d->reason, sizeof d->reason, fmt, ap);
	va_end(ap);
}

static void fill(struct policy_decision *d, const struct policy *p, uint32_t rule,
		 enum policy_action action)
{
	d->action = action;
	d->rule = (int)rule;
	d->rule_text = p->rules[rule].text;
	d->via = action == POLICY_ACCEPT ? p->rules[rule].via : POLICY_VIA_TAILNET;
	d->guard = NULL;
}

/* ---- the tailnet aliases of a live policy ---- */

static bool view_running(const struct tailnet_view *v)
{
	return v && v->state == TAILNET_RUNNING;
}

/* Does the alias kind cover an address carried as e? */
static bool dyn_covers(enum dst_kind kind, const struct tailnet_entry *e)
{
	if (!e)
		return false;
	switch (kind) {
	case DST_TAILNET:
		return true;
	case DST_PEERS:
		return e->kind == TAILNET_CARRY_ADDRESS;
	case DST_ROUTES:
		return e->kind == TAILNET_CARRY_ROUTE;
	default:
		return false;
	}
}

/* The lowest alias rule below best matching (port, src, user and the
 * carrier), or best. only_deny restricts to deny rules. *blocked is set
 * when an accept rule matched all but the address while the view is not
 * running: the address might be carried, nobody can say. */
static uint32_t dyn_match(const struct policy *p, const struct policy_query *q,
			  const struct tailnet_entry *carrier, uint32_t best, bool only_deny,
			  bool *blocked)
{
	for (size_t i = 0; i < p->n_dyn && p->dyn[i].rule < best; i++) {
		const struct rule *r = &p->rules[p->dyn[i].rule];
		const struct dst *d = &r->dst[p->dyn[i].dst];
		if ((only_deny && r->action != POLICY_DENY) || !policy_dst_port_match(d, q->port) ||
		    !meta_match(r, q))
			continue;
		if (dyn_covers(d->kind, carrier))
			return p->dyn[i].rule;
		if (r->action == POLICY_ACCEPT && !view_running(q->view) && blocked)
			*blocked = true;
	}
	return best;
}

/* "tailnet state unknown: cannot reach tailscaled at ...: ..." */
static void reason_tailnet_down(struct policy_decision *d, const struct tailnet_view *v)
{
	if (v && v->state == TAILNET_STOPPED)
		reasonf(d, "tailnet unavailable: %s", v->reason ? v->reason : "not running");
	else
		reasonf(d, "tailnet state unknown: %s",
			v && v->reason ? v->reason : "no answer from tailscaled");
}

/* Reason text is built with these instead of snprintf, which cost several
 * times the index lookup on every decision. Same truncation as snprintf:
 * at most cap - 1 bytes, always NUL-terminated. */
struct sbuf {
	char *buf;
	size_t len, cap;
};

static void sb_mem(struct sbuf *b, const char *s, size_t n)
{
	size_t room = b->cap - 1 - b->len;
	if (n > room)
		n = room;
	memcpy(b->buf + b->len, s, n);
	b->len += n;
	b->buf[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_mem(b, s, strlen(s));
}

static void sb_uint(struct sbuf *b, unsigned v)
{
	char t[12];
	size_t i = sizeof t;
	do {
		t[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	sb_mem(b, t + i, sizeof t - i);
}

static void sb_addr(struct sbuf *b, const struct cidr_addr *a)
{
	if (a->family == AF_INET) {
		for (int i = 0; i < 4; i++) {
			if (i)
				sb_mem(b, ".", 1);
			sb_uint(b, a->b[i]);
		}
	} else {
		char t[CIDR_ADDR_STRLEN];
		sb_str(b, cidr_addr_format(a, t, sizeof t));
	}
}

/* "addr:port", IPv6 in brackets, as cidr_addr_format_port. */
static void sb_addr_port(struct sbuf *b, const struct cidr_addr *a, uint16_t port)
{
	if (a->family == AF_INET6)
		sb_mem(b, "[", 1);
	sb_addr(b, a);
	sb_mem(b, a->family == AF_INET6 ? "]:" : ":", a->family == AF_INET6 ? 2 : 1);
	sb_uint(b, port);
}

static void sb_user(struct sbuf *b, const struct policy_query *q)
{
	if (q->user) {
		sb_str(b, " for user ");
		sb_str(b, q->user);
	}
}

/* "host (addr:port)", "host:port", "addr:port" or "port N". */
static void describe_target(const struct policy_query *q, char *buf, size_t len)
{
	struct sbuf b = { buf, 0, len };
	buf[0] = '\0';
	if (q->host) {
		sb_mem(&b, q->host, strnlen(q->host, 80));
		if (q->dst.family) {
			sb_str(&b, " (");
			sb_addr_port(&b, &q->dst, q->port);
			sb_str(&b, ")");
		} else {
			sb_str(&b, ":");
			sb_uint(&b, q->port);
		}
	} else if (q->dst.family) {
		sb_addr_port(&b, &q->dst, q->port);
	} else {
		sb_str(&b, "port ");
		sb_uint(&b, q->port);
	}
}

/* "no rule accepts TARGET[ for user U]" */
static void reason_no_rule(struct policy_decision *d, const char *target,
			   const struct policy_query *q)
{
	struct sbuf b = { d->reason, 0, sizeof d->reason };
	sb_str(&b, "no rule accepts ");
	sb_str(&b, target);
	sb_user(&b, q);
}

struct guard_hit {
	enum guard_id guard;
	const char *what;	/* "is a loopback address" */
};

/* An address of this host: loopback, unspecified, an interface's, or one
 * of this node's Tailscale addresses. */
static bool is_own(const struct policy *p, const struct tailnet_view *view,
		   const struct cidr_addr *a)
{
	static const uint8_t loop6[16] = { [15] = 1 };
	static const uint8_t zero[16] = { 0 };
	if (a->family == AF_INET && (a->b[0] == 127 || memcmp(a->b, zero, 4) == 0))
		return true;
	if (a->family == AF_INET6 && (memcmp(a->b, loop6, 16) == 0 || memcmp(a->b, zero, 16) == 0))
		return true;
	return addr_in(p->self, p->n_self, a) || tailnet_view_is_self(view, a);
}

/* The built-in guard that denies a on port, in the order: the prefix
 * guards, the upstream proxy's port on any address of this host, this
 * host's and node's own addresses. */
static bool guard_find(const struct policy *p, const struct cidr_addr *a, uint16_t port,
		       const struct tailnet_view *view, struct guard_hit *h)
{
	for (size_t i = 0; i < N_GUARD_PREFIXES; i++) {
		enum guard_id g = guard_prefixes[i].guard;
		if (!(p->lifted & (1u << g)) && cidr_prefix_contains(&p->guard_pfx[i], a)) {
			h->guard = g;
			h->what = guard_prefixes[i].what;
			return true;
		}
	}
	if (p->have_upstream && !(p->lifted & (1u << GUARD_UPSTREAM)) &&
	    port == p->upstream_port &&
	    (cidr_addr_equal(a, &p->upstream_addr) || is_own(p, view, a))) {
		h->guard = GUARD_UPSTREAM;
		h->what = cidr_addr_equal(a, &p->upstream_addr)
				  ? "is the upstream proxy itself"
				  : "reaches the upstream proxy's port on this host";
		return true;
	}
	if (!(p->lifted & (1u << GUARD_SELF))) {
		if (tailnet_view_is_self(view, a)) {
			h->guard = GUARD_SELF;
			h->what = "is this node's own Tailscale address (tailscaled would hand it to "
				  "the host's loopback)";
			return true;
		}
		if (addr_in(p->self, p->n_self, a)) {
			h->guard = GUARD_SELF;
			h->what = "is an address of this host";
			return true;
		}
	}
	return false;
}

void policy_decide(const struct policy *p, const struct policy_query *q,
		   struct policy_decision *d)
{
	char target[160], name[256];
	struct cidr_addr a = q->dst;

	memset(d, 0, sizeof *d);
	d->action = POLICY_DENY;
	d->via = POLICY_VIA_TAILNET;
	d->rule = -1;
	cidr_addr_normalize(&a);
	struct policy_query qq = *q;
	qq.dst = a;
	cidr_addr_normalize(&qq.src);
	describe_target(&qq, target, sizeof target);

	if (a.family != AF_INET && a.family != AF_INET6) {
		reasonf(d, "no address to decide on for %s", target);
		return;
	}
	/* 1. guards, on the address and on any IPv4 address it embeds */
	struct guard_hit gh;
	if (guard_find(p, &a, qq.port, q->view, &gh)) {
		char abuf[CIDR_ADDR_STRLEN];
		d->guard = guard_names[gh.guard];
		reasonf(d, "guard %s: %s %s", guard_names[gh.guard],
			gh.guard == GUARD_UPSTREAM ? cidr_addr_format_port(&a, qq.port, abuf, sizeof abuf)
						   : cidr_addr_format(&a, abuf, sizeof abuf),
			gh.what);
		return;
	}
	struct cidr_addr emb[4];
	const char *form;
	size_t n_emb = cidr_addr_embedded_v4(&a, emb, &form);
	for (size_t i = 0; i < n_emb; i++) {
		/* A zero-filled position (0.0.0.0/8) is where a longer
		 * NAT64 prefix has no address: not a destination. */
		if (!guard_find(p, &emb[i], qq.port, q->view, &gh) ||
		    gh.guard == GUARD_THIS_NETWORK)
			continue;
		char abuf[CIDR_ADDR_STRLEN], vbuf[CIDR_ADDR_STRLEN];
		d->guard = guard_names[gh.guard];
		reasonf(d, "guard %s: %s embeds %s (%s), which %s", guard_names[gh.guard],
			cidr_addr_format(&a, abuf, sizeof abuf),
			cidr_addr_format(&emb[i], vbuf, sizeof vbuf), form, gh.what);
		return;
	}
	d->carrier = tailnet_view_lookup(q->view, &a);
	d->peer = d->carrier ? &q->view->peers[d->carrier->peer] : NULL;

	/* 2. rules, first match wins */
	int f = a.family == AF_INET ? 0 : 1;
	uint32_t best = UINT32_MAX;
	const struct ix_entry *hit = ix_lookup(p, &p->all[f], &a, &qq, &best);
	enum { BY_INDEX, BY_NAME, BY_ALIAS } by = BY_INDEX;
	if (query_name(&qq, name, sizeof name)) {
		uint32_t nb = name_match(p, name, &qq);
		if (nb < best) {
			best = nb;
			by = BY_NAME;
		}
	}
	bool blocked = false;
	uint32_t db = dyn_match(p, &qq, d->carrier, best, false, &blocked);
	if (db < best) {
		best = db;
		by = BY_ALIAS;
	}
	if (best == UINT32_MAX) {
		if (blocked)
			reason_tailnet_down(d, q->view);
		else
			reason_no_rule(d, target, &qq);
		return;
	}
	if (by != BY_INDEX) {
		const struct rule *r = &p->rules[best];
		if (by == BY_NAME && r->action == POLICY_ACCEPT) {
			/* A name accepted; the address it resolved to must not
			 * be denied by any rule. */
			uint32_t deny = UINT32_MAX;
			ix_lookup(p, &p->deny[f], &a, &qq, &deny);
			deny = dyn_match(p, &qq, d->carrier, deny, true, NULL);
			if (deny != UINT32_MAX) {
				fill(d, p, deny, POLICY_DENY);
				reasonf(d, "rule %u denies %s (the name was accepted by rule %u)",
					deny, target, best);
				return;
			}
		}
		fill(d, p, best, r->action);
	} else {
		/* everything from the index entry: no access to the rule */
		d->action = (hit->dst & IX_ACCEPT) ? POLICY_ACCEPT : POLICY_DENY;
		d->rule = (int)best;
		d->rule_text = p->texts[best];
		d->via = d->action != POLICY_ACCEPT	 ? POLICY_VIA_TAILNET
			 : (hit->dst & IX_DIRECT)	 ? POLICY_VIA_DIRECT
			 : (hit->dst & IX_UPSTREAM)	 ? POLICY_VIA_UPSTREAM
							 : POLICY_VIA_TAILNET;
		d->guard = NULL;
	}
	if (d->action == POLICY_ACCEPT && d->via == POLICY_VIA_TAILNET && view_running(q->view) &&
	    !d->carrier) {
		/* The tailnet would not carry it: tailscaled dials such an
		 * address through the host's network. */
		char abuf[CIDR_ADDR_STRLEN];
		d->action = POLICY_DENY;
		reasonf(d, "no peer carries %s; tailscaled would dial it through the host network "
			"(rule %u accepts it via the tailnet)", cidr_addr_format(&a, abuf, sizeof abuf),
			best);
		return;
	}
	struct sbuf sb = { d->reason, 0, sizeof d->reason };
	sb_str(&sb, "rule ");
	sb_uint(&sb, best);
	sb_str(&sb, d->action == POLICY_ACCEPT ? " accepts " : " denies ");
	sb_str(&sb, target);
	sb_user(&sb, &qq);
}


bool policy_precheck(const struct policy *p, const struct policy_query *q,
		     struct policy_decision *d)
{
	char name[256], target[160];

	memset(d, 0, sizeof *d);
	d->action = POLICY_DENY;
	d->via = POLICY_VIA_TAILNET;
	d->rule = -1;
	if (q->dst.family)
		return true;
	struct policy_query qq = *q;
	cidr_addr_normalize(&qq.src);
	describe_target(&qq, target, sizeof target);
	uint32_t h = UINT32_MAX;
	if (query_name(&qq, name, sizeof name))
		h = name_match(p, name, &qq);
	/* Earliest accept rule with an address destination that matches
	 * everything but the (unknown) address. */
	uint32_t a = UINT32_MAX;
	for (size_t i = 0; i < p->n_addr_accepts; i++) {
		uint32_t ri = p->addr_accepts[i];
		if (ri >= h)
			break;
		const struct rule *r = &p->rules[ri];
		if (!meta_match(r, &qq))
			continue;
		bool port_ok = false;
		for (size_t k = 0; k < r->n_dst && !port_ok; k++)
			if (r->dst[k].kind == DST_PREFIX || r->dst[k].kind == DST_ANY ||
			    (r->dst[k].kind == DST_ROUTES && p->n_routes))
				port_ok = policy_dst_port_match(&r->dst[k], qq.port);
		if (port_ok) {
			a = ri;
			break;
		}
	}
	/* An alias accept rule counts when the tailnet carries anything. */
	bool blocked = false;
	for (size_t i = 0; i < p->n_dyn && p->dyn[i].rule < (a < h ? a : h); i++) {
		const struct rule *r = &p->rules[p->dyn[i].rule];
		if (r->action != POLICY_ACCEPT || !meta_match(r, &qq) ||
		    !policy_dst_port_match(&r->dst[p->dyn[i].dst], qq.port))
			continue;
		if (view_running(qq.view) && qq.view->n_entries) {
			a = p->dyn[i].rule;
			break;
		}
		blocked = blocked || !view_running(qq.view);
	}
	if (a < h)
		return true;
	if (h != UINT32_MAX) {
		if (p->rules[h].action == POLICY_ACCEPT)
			return true;
		fill(d, p, h, POLICY_DENY);
		reasonf(d, "rule %u denies %s", h, target);
		return false;
	}
	if (blocked)
		reason_tailnet_down(d, qq.view);
	else
		reason_no_rule(d, target, &qq);
	return false;
}

bool policy_auth_required(const struct policy *p)
{
	return auth_users_count(p->users) > 0;
}

bool policy_authenticate(const struct policy *p, const char *user, const char *pass)
{
	if (!user || !pass)
		return false;
	return auth_users_verify(p->users, user, pass);
}

bool policy_authenticate_cached(const struct policy *p, const char *user, const char *pass)
{
	return user && pass && auth_users_verify_cached(p->users, user, pass);
}

const char *const *policy_guard_names(void)
{
	return guard_names;
}

size_t policy_rule_count(const struct policy *p)
{
	return p->n_rules;
}

const char *policy_rule_text(const struct policy *p, size_t i)
{
	return i < p->n_rules ? p->rules[i].text : NULL;
}

const char *policy_rule_canonical(const struct policy *p, size_t i)
{
	return i < p->n_rules ? p->rules[i].canon : NULL;
}

bool policy_live(const struct policy *p)
{
	return p->live;
}

size_t policy_route_count(const struct policy *p)
{
	return p->n_routes;
}

const struct cidr_prefix *policy_route(const struct policy *p, size_t i)
{
	return i < p->n_routes ? &p->routes[i] : NULL;
}

size_t policy_user_count(const struct policy *p)
{
	return auth_users_count(p->users);
}

const char *policy_user_name(const struct policy *p, size_t i)
{
	return auth_users_name(p->users, i);
}
