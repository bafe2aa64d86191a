/*
 * policy: guards, rules and routes compiled into one immutable object,
 * and the pure decision functions over it. (The users and their login
 * cache are the config's: auth.h.)
 *
 * The builder collects what the configuration hands in (config.c: the
 * guards it lifts, routes, this host's addresses, the upstream proxy,
 * users, rules in file order); policy_builder_finish puts each rule's
 * destinations into the index (policy_index.c) or, for the tailnet
 * aliases of a live policy, into a list matched against each query's
 * view. policy_decide (conn.c and target.c, for each address) applies
 * the guards, then the rules, first match wins (address and name rules
 * through the index, live aliases here), then asks the view whether the
 * tailnet carries the address; policy_precheck (target.c) answers before
 * a name is resolved.
 *
 * The destination grammar is policy_dst.c's; what the three files share
 * is in policy_internal.h.
 */
#include "policy_internal.h"

#include "tailfence/auth.h"
#include "tailfence/hostname.h"
#include "tailfence/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

	struct policy_index ix;		/* addresses and names of every rule */
	const char **texts;		/* rule texts, dense, for decisions from the index */
	uint32_t *addr_accepts;		/* accept rules with an address dst, in order */
	size_t n_addr_accepts;
	bool live;			/* aliases follow the query's view */
	struct dyn_entry *dyn;		/* live aliases, in rule order */
	size_t n_dyn;
};

struct policy_builder {
	struct policy *p;
	const struct auth_users *users;	/* borrowed: who rules may name */
};

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
		if (!auth_users_has(b->users, u)) {
			log_quote(u, strlen(u), 80, q, sizeof q);
			snprintf(err, errlen, "users[%zu]: \"%s\" is not a configured user%s", i, q,
				 auth_users_count(b->users) ? "" : " (no \"users\" are configured)");
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

/* Each rule's destinations go to the index (prefixes, "*" as both default
 * routes, names, and in a static policy the aliases as the configured
 * routes) or, in a live policy, to the aliases matched against each
 * query's view. */
struct policy *policy_builder_finish(struct policy_builder *b)
{
	struct policy *p = b->p;
	struct policy_index_build *ib = policy_index_build_new();
	struct cidr_prefix any4, any6;

	cidr_prefix_parse("0.0.0.0/0", 9, &any4, NULL, 0);
	cidr_prefix_parse("::/0", 4, &any6, NULL, 0);
	size_t n_dst = 0;
	for (size_t ri = 0; ri < p->n_rules; ri++)
		n_dst += p->rules[ri].n_dst;
	p->addr_accepts = calloc(p->n_rules ? p->n_rules : 1, sizeof *p->addr_accepts);
	p->texts = calloc(p->n_rules ? p->n_rules : 1, sizeof *p->texts);
	p->dyn = calloc(n_dst ? n_dst : 1, sizeof *p->dyn);
	if (!ib || !p->addr_accepts || !p->texts || !p->dyn)
		goto fail;
	for (size_t ri = 0; ri < p->n_rules; ri++)
		p->texts[ri] = p->rules[ri].text;
	for (uint32_t ri = 0; ri < p->n_rules; ri++) {
		struct rule *r = &p->rules[ri];
		bool deny = r->action == POLICY_DENY;
		bool has_addr = false;
		for (uint32_t di = 0; di < r->n_dst; di++) {
			struct dst *d = &r->dst[di];
			switch (d->kind) {
			case DST_PREFIX:
				if (!policy_index_add_prefix(ib, &d->prefix, ri, di, deny))
					goto fail;
				has_addr = true;
				break;
			case DST_ANY:
				if (!policy_index_add_prefix(ib, &any4, ri, di, deny) ||
				    !policy_index_add_prefix(ib, &any6, ri, di, deny))
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
					if (!policy_index_add_prefix(ib, &p->routes[k], ri, di, deny))
						goto fail;
				has_addr = has_addr || p->n_routes > 0;
				break;
			case DST_HOST:
				if (!policy_index_add_name(ib, d->host, false, ri, di))
					goto fail;
				break;
			case DST_WILDCARD:
				if (!policy_index_add_name(ib, d->host, true, ri, di))
					goto fail;
				break;
			}
		}
		if (has_addr && r->action == POLICY_ACCEPT)
			p->addr_accepts[p->n_addr_accepts++] = ri;
	}
	if (!policy_index_compile(ib, p->rules, &p->ix)) {
		policy_builder_free(b);	/* ib is consumed either way */
		return NULL;
	}
	free(b);
	return p;
fail:
	policy_index_build_free(ib);
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
	policy_index_free(&p->ix);
	free(p->addr_accepts);
	free(p->texts);
	free(p->dyn);
	free(p);
}

/* ------------------------------------------------------------------ */
/* decisions */

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
		    !policy_rule_meta_match(r, q))
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
	struct policy_index_hit hit;
	uint32_t best = policy_index_match_addr(&p->ix, p->rules, &qq, &hit);
	enum { BY_INDEX, BY_NAME, BY_ALIAS } by = BY_INDEX;
	if (query_name(&qq, name, sizeof name)) {
		uint32_t nb = policy_index_match_name(&p->ix, p->rules, name, &qq);
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
			uint32_t deny = policy_index_match_deny(&p->ix, p->rules, &qq);
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
		/* everything from the index: no access to the rule */
		d->action = hit.action;
		d->rule = (int)best;
		d->rule_text = p->texts[best];
		d->via = hit.action == POLICY_ACCEPT ? hit.via : POLICY_VIA_TAILNET;
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
		h = policy_index_match_name(&p->ix, p->rules, name, &qq);
	/* Earliest accept rule with an address destination that matches
	 * everything but the (unknown) address. */
	uint32_t a = UINT32_MAX;
	for (size_t i = 0; i < p->n_addr_accepts; i++) {
		uint32_t ri = p->addr_accepts[i];
		if (ri >= h)
			break;
		const struct rule *r = &p->rules[ri];
		if (!policy_rule_meta_match(r, &qq))
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
		if (r->action != POLICY_ACCEPT || !policy_rule_meta_match(r, &qq) ||
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

/* ------------------------------------------------------------------ */
/* accessors */

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

size_t policy_route_count(const struct policy *p)
{
	return p->n_routes;
}

void policy_builder_set_users(struct policy_builder *b, const struct auth_users *users)
{
	b->users = users;
}
