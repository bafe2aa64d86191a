/*
 * policy_index: the compiled indexes that make a decision cost not grow
 * with the number of rules, and their lookups.
 *
 * Every prefix destination (including the expansion of "routes:" and "*",
 * which the builder hands in as prefixes) is first put at its node of a
 * binary trie per family (one trie with every rule, one with deny rules
 * only), which is then compiled into a multibit trie (6 bits per level,
 * nodes of two bitmaps and two base indexes in one contiguous array) whose
 * leaves name the deepest prefix covering the address; from there a chain
 * of shorter covering prefixes holds the candidate rules, scanned in rule
 * order, stopping at the first match or once no rule left on the chain can
 * beat the best found so far. The cost grows with the number of nested
 * prefixes covering the address and the rules sharing one prefix, not with
 * the number of rules; a lookup touches at most 6 nodes for IPv4. Hostname
 * and *.domain destinations live in sorted arrays looked up by the name and
 * each of its parent domains.
 *
 * Built by policy_builder_finish (policy.c), which decides which
 * destination goes where; read by policy_decide and policy_precheck. The
 * trie is freed once compiled; the compiled index is immutable and its
 * lookups are pure and thread-safe. This is the hot path of every
 * decision: bench/bench_policy.c measures it.
 */
#include "policy_internal.h"

#include <stdlib.h>
#include <string.h>

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

struct name_entry {
	const char *key;	/* borrowed from the rule's dst */
	uint32_t rule, dst;
};

/* What the builder has added, until policy_index_compile. */
struct policy_index_build {
	struct trie all[2], deny[2];		/* [0] IPv4, [1] IPv6 */
	struct name_index hosts, wildcards;
};

/* ------------------------------------------------------------------ */
/* building */

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
static bool ix_compile(const struct rule *rules, const struct trie *t, struct prefix_index *ix)
{
	struct ix_build bd = { .t = t, .ix = ix };
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
				const struct rule *r = &rules[te->rule];
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

struct policy_index_build *policy_index_build_new(void)
{
	struct policy_index_build *ib = calloc(1, sizeof *ib);
	return ib;
}

void policy_index_build_free(struct policy_index_build *ib)
{
	if (!ib)
		return;
	for (int f = 0; f < 2; f++) {
		trie_free(&ib->all[f]);
		trie_free(&ib->deny[f]);
	}
	free(ib->hosts.v);
	free(ib->wildcards.v);
	free(ib);
}

bool policy_index_add_prefix(struct policy_index_build *ib, const struct cidr_prefix *pfx,
			     uint32_t rule, uint32_t dst, bool deny)
{
	int f = pfx->addr.family == AF_INET ? 0 : 1;
	if (!trie_insert(&ib->all[f], pfx, rule, dst))
		return false;
	if (deny && !trie_insert(&ib->deny[f], pfx, rule, dst))
		return false;
	return true;
}

bool policy_index_add_name(struct policy_index_build *ib, const char *key, bool wildcard,
			   uint32_t rule, uint32_t dst)
{
	return name_add(wildcard ? &ib->wildcards : &ib->hosts, key, rule, dst);
}

bool policy_index_compile(struct policy_index_build *ib, const struct rule *rules,
			  struct policy_index *ix)
{
	bool ok = false;

	memset(ix, 0, sizeof *ix);
	for (int f = 0; f < 2; f++) {
		trie_finish(&ib->all[f]);
		trie_finish(&ib->deny[f]);
		if (!ix_compile(rules, &ib->all[f], &ix->all[f]) ||
		    !ix_compile(rules, &ib->deny[f], &ix->deny[f]))
			goto out;
		trie_free(&ib->all[f]);
		trie_free(&ib->deny[f]);
	}
	ix->hosts = ib->hosts;
	ix->wildcards = ib->wildcards;
	memset(&ib->hosts, 0, sizeof ib->hosts);
	memset(&ib->wildcards, 0, sizeof ib->wildcards);
	if (ix->hosts.n)
		qsort(ix->hosts.v, ix->hosts.n, sizeof *ix->hosts.v, name_cmp);
	if (ix->wildcards.n)
		qsort(ix->wildcards.v, ix->wildcards.n, sizeof *ix->wildcards.v, name_cmp);
	ok = true;
out:
	if (!ok)
		policy_index_free(ix);
	policy_index_build_free(ib);
	return ok;
}

void policy_index_free(struct policy_index *ix)
{
	for (int f = 0; f < 2; f++) {
		ix_free(&ix->all[f]);
		ix_free(&ix->deny[f]);
	}
	free(ix->hosts.v);
	free(ix->wildcards.v);
	memset(ix, 0, sizeof *ix);
}

/* ------------------------------------------------------------------ */
/* lookups */

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

/* The full check of an entry that its cells cannot decide (several port
 * ranges, sources or users): out of line, to keep the lookup's loop small. */
__attribute__((noinline))
static bool ix_slow_match(const struct rule *r, uint32_t dst, const struct policy_query *q)
{
	return policy_dst_port_match(&r->dst[dst], q->port) && policy_rule_meta_match(r, q);
}

/* The entry of the lowest rule index below *best matching a (port, src,
 * user included) in ix, with *best updated; NULL if none. Inlined into
 * both of its callers, so that a decision still makes a single call into
 * the index. */
__attribute__((always_inline))
static inline const struct ix_entry *ix_lookup(const struct rule *rules,
					       const struct prefix_index *ix,
					       const struct cidr_addr *a,
					       const struct policy_query *q, uint32_t *best)
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
				ok = ix_slow_match(&rules[e->rule], e->dst & IX_DST_MASK, q);
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

static uint32_t names_lookup(const struct rule *rules, const struct name_index *ix,
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
		const struct rule *r = &rules[e->rule];
		if (policy_dst_port_match(&r->dst[e->dst], q->port) && policy_rule_meta_match(r, q))
			return e->rule;
	}
	return best;
}

uint32_t policy_index_match_addr(const struct policy_index *ix, const struct rule *rules,
				 const struct policy_query *q, struct policy_index_hit *how)
{
	uint32_t best = UINT32_MAX;
	const struct ix_entry *e =
		ix_lookup(rules, &ix->all[q->dst.family == AF_INET ? 0 : 1], &q->dst, q, &best);
	if (e) {
		how->action = (e->dst & IX_ACCEPT) ? POLICY_ACCEPT : POLICY_DENY;
		how->via = (e->dst & IX_DIRECT)	  ? POLICY_VIA_DIRECT
			   : (e->dst & IX_UPSTREAM) ? POLICY_VIA_UPSTREAM
						    : POLICY_VIA_TAILNET;
	}
	return best;
}

uint32_t policy_index_match_deny(const struct policy_index *ix, const struct rule *rules,
				 const struct policy_query *q)
{
	uint32_t best = UINT32_MAX;
	ix_lookup(rules, &ix->deny[q->dst.family == AF_INET ? 0 : 1], &q->dst, q, &best);
	return best;
}

uint32_t policy_index_match_name(const struct policy_index *ix, const struct rule *rules,
				 const char *name, const struct policy_query *q)
{
	uint32_t best = names_lookup(rules, &ix->hosts, name, q, UINT32_MAX);
	if (ix->wildcards.n)
		for (const char *dot = strchr(name, '.'); dot; dot = strchr(dot + 1, '.'))
			best = names_lookup(rules, &ix->wildcards, dot + 1, q, best);
	return best;
}
