/*
 * test_policy_random: the trie-indexed engine against a plain linear
 * evaluator written from the documented semantics, over many random rule
 * sets (prefixes of every length, both families, names, wildcards, routes,
 * ports, users, sources) and random queries. Fixed seed: deterministic.
 */
#include "tailfence/auth.h"
#include "tailfence/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "check.h"

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

static uint32_t below(uint32_t n)
{
	return rnd() % n;
}

/* The model: plain data that the linear evaluator reads. */
enum mk { M_PREFIX, M_ANY, M_ROUTES, M_HOST, M_WILD };

struct mdst {
	enum mk kind;
	struct cidr_prefix p;
	char host[32];
	uint16_t lo[3], hi[3];
	int nports;
	char text[128];
};

struct mrule {
	bool accept;
	struct mdst d[3];
	int nd;
	struct cidr_prefix src;
	bool has_src;
	const char *user;	/* NULL: any */
};

static const char *const names[] = { "a.test", "b.test", "x.a.test", "y.x.a.test", "c.other" };
static const char *const domains[] = { "test", "a.test", "x.a.test", "other" };
static const char *const users[] = { "alice", "bob" };

/* Addresses come from a small space so that rules and queries collide. */
static void rand_addr(struct cidr_addr *a, bool v6)
{
	memset(a, 0, sizeof *a);
	if (v6) {
		a->family = AF_INET6;
		a->b[0] = 0xfd;
		a->b[1] = (uint8_t)below(2);
		a->b[14] = (uint8_t)below(4);
		a->b[15] = (uint8_t)below(256);
	} else {
		a->family = AF_INET;
		a->b[0] = 100;
		a->b[1] = (uint8_t)(64 + below(2));
		a->b[2] = (uint8_t)below(4);
		a->b[3] = (uint8_t)below(256);
	}
}

static void rand_prefix(struct cidr_prefix *p, bool v6)
{
	rand_addr(&p->addr, v6);
	unsigned max = v6 ? 128 : 32;
	unsigned bits = below(5) == 0 ? below(max + 1) : max - below(12);
	p->bits = (uint8_t)bits;
	for (unsigned i = bits; i < max; i++)
		p->addr.b[i >> 3] &= (uint8_t)~(0x80u >> (i & 7));
}

static bool in_ports(const struct mdst *d, uint16_t port)
{
	for (int i = 0; i < d->nports; i++)
		if (port >= d->lo[i] && port <= d->hi[i])
			return true;
	return false;
}

static bool meta(const struct mrule *r, const char *user, const struct cidr_addr *src)
{
	if (r->has_src && !cidr_prefix_contains(&r->src, src))
		return false;
	if (r->user && (!user || strcmp(user, r->user) != 0))
		return false;
	return true;
}

static bool name_matches(const struct mdst *d, const char *name)
{
	if (!name)
		return false;
	char n[64];
	snprintf(n, sizeof n, "%s", name);
	size_t l = strlen(n);
	if (l && n[l - 1] == '.')
		n[--l] = '\0';
	if (d->kind == M_HOST)
		return strcasecmp(n, d->host) == 0;
	size_t dl = strlen(d->host);
	return l > dl + 1 && n[l - dl - 1] == '.' && strcasecmp(n + l - dl, d->host) == 0;
}

static bool addr_matches(const struct mdst *d, const struct cidr_addr *a,
			 const struct cidr_prefix *routes, int nroutes)
{
	if (d->kind == M_PREFIX)
		return cidr_prefix_contains(&d->p, a);
	if (d->kind == M_ANY)
		return true;
	if (d->kind == M_ROUTES) {
		for (int i = 0; i < nroutes; i++)
			if (cidr_prefix_contains(&routes[i], a))
				return true;
	}
	return false;
}

/* Linear evaluation (guards are not exercised: 100.64/fd addresses). */
static int linear(const struct mrule *rules, int n, const struct cidr_prefix *routes, int nroutes,
		  const char *host, const struct cidr_addr *a, uint16_t port, const char *user,
		  const struct cidr_addr *src, bool *accept)
{
	for (int i = 0; i < n; i++) {
		const struct mrule *r = &rules[i];
		if (!meta(r, user, src))
			continue;
		bool by_addr = false, by_name = false;
		for (int k = 0; k < r->nd; k++) {
			if (!in_ports(&r->d[k], port))
				continue;
			if (addr_matches(&r->d[k], a, routes, nroutes))
				by_addr = true;
			else if ((r->d[k].kind == M_HOST || r->d[k].kind == M_WILD) &&
				 name_matches(&r->d[k], host))
				by_name = true;
		}
		if (!by_addr && !by_name)
			continue;
		if (r->accept && !by_addr) {
			/* accepted by name only: every deny rule for the address */
			for (int j = 0; j < n; j++) {
				if (rules[j].accept || !meta(&rules[j], user, src))
					continue;
				for (int k = 0; k < rules[j].nd; k++)
					if (in_ports(&rules[j].d[k], port) &&
					    addr_matches(&rules[j].d[k], a, routes, nroutes)) {
						*accept = false;
						return j;
					}
			}
		}
		*accept = r->accept;
		return i;
	}
	*accept = false;
	return -1;
}

static void make_dst(struct mdst *d)
{
	uint32_t k = below(10);
	memset(d, 0, sizeof *d);
	if (k < 5)
		d->kind = M_PREFIX;
	else if (k < 6)
		d->kind = M_ANY;
	else if (k < 7)
		d->kind = M_ROUTES;
	else if (k < 9)
		d->kind = M_HOST;
	else
		d->kind = M_WILD;
	char ports[64];
	if (below(3) == 0) {
		d->nports = 1;
		d->lo[0] = 1;
		d->hi[0] = 65535;
		snprintf(ports, sizeof ports, "*");
	} else {
		d->nports = 1 + (int)below(3);
		size_t j = 0;
		for (int i = 0; i < d->nports; i++) {
			d->lo[i] = (uint16_t)(1 + below(20));
			d->hi[i] = below(2) ? d->lo[i] : (uint16_t)(d->lo[i] + below(5));
			if (d->lo[i] == d->hi[i])
				j += (size_t)snprintf(ports + j, sizeof ports - j, "%s%u", i ? "," : "", d->lo[i]);
			else
				j += (size_t)snprintf(ports + j, sizeof ports - j, "%s%u-%u", i ? "," : "",
						      d->lo[i], d->hi[i]);
		}
	}
	char pf[CIDR_PREFIX_STRLEN];
	switch (d->kind) {
	case M_PREFIX: {
		bool v6 = below(3) == 0;
		rand_prefix(&d->p, v6);
		cidr_prefix_format(&d->p, pf, sizeof pf);
		if (v6)
			snprintf(d->text, sizeof d->text, below(2) ? "[%s]:%s" : "%s:%s", pf, ports);
		else
			snprintf(d->text, sizeof d->text, "%s:%s", pf, ports);
		break;
	}
	case M_ANY:
		snprintf(d->text, sizeof d->text, "*:%s", ports);
		break;
	case M_ROUTES:
		snprintf(d->text, sizeof d->text, "routes:%s", ports);
		break;
	case M_HOST: {
		const char *h = names[below(5)];
		snprintf(d->host, sizeof d->host, "%s", h);
		snprintf(d->text, sizeof d->text, "%s:%s", h, ports);
		break;
	}
	case M_WILD: {
		const char *h = domains[below(4)];
		snprintf(d->host, sizeof d->host, "%s", h);
		snprintf(d->text, sizeof d->text, "*.%s:%s", h, ports);
		break;
	}
	}
}

int main(void)
{
	char hash[AUTH_HASH_STRLEN], err[256];
	if (!auth_hash_password("x", 1, hash, sizeof hash))
		return 1;
	const int sets = 300, queries = 400;
	long decisions = 0;
	struct auth_users *known = auth_users_new();
	if (!known || !auth_users_add(known, "alice", hash, err, sizeof err) ||
	    !auth_users_add(known, "bob", hash, err, sizeof err))
		return 1;
	for (int s = 0; s < sets; s++) {
		struct mrule rules[40];
		struct cidr_prefix routes[4];
		int nrules = 1 + (int)below(40), nroutes = (int)below(4);
		struct policy_builder *b = policy_builder_new();
		policy_builder_set_users(b, known);
		for (int i = 0; i < nroutes; i++) {
			rand_prefix(&routes[i], below(3) == 0);
			policy_builder_add_route(b, &routes[i]);
		}
		/* the builder deduplicates routes; so does the model, harmlessly */
		for (int i = 0; i < nrules; i++) {
			struct mrule *r = &rules[i];
			memset(r, 0, sizeof *r);
			r->accept = below(3) != 0;
			r->nd = 1 + (int)below(3);
			const char *dst[3], *src[1], *us[1];
			for (int k = 0; k < r->nd; k++) {
				make_dst(&r->d[k]);
				dst[k] = r->d[k].text;
			}
			struct policy_rule_spec spec = { .action = r->accept ? POLICY_ACCEPT : POLICY_DENY,
							 .dst = dst, .n_dst = (size_t)r->nd };
			char srctext[CIDR_PREFIX_STRLEN];
			if (below(4) == 0) {
				r->has_src = true;
				rand_prefix(&r->src, false);
				r->src.bits = (uint8_t)(r->src.bits > 30 ? 30 : r->src.bits);
				struct cidr_prefix tmp = r->src;
				for (unsigned bi = tmp.bits; bi < 32; bi++)
					tmp.addr.b[bi >> 3] &= (uint8_t)~(0x80u >> (bi & 7));
				r->src = tmp;
				cidr_prefix_format(&r->src, srctext, sizeof srctext);
				src[0] = srctext;
				spec.src = src;
				spec.n_src = 1;
			}
			if (below(4) == 0) {
				r->user = users[below(2)];
				us[0] = r->user;
				spec.users = us;
				spec.n_users = 1;
			}
			if (!policy_builder_add_rule(b, &spec, err, sizeof err)) {
				CHECK(false, "set %d rule %d: %s", s, i, err);
				r->nd = 0;
			}
		}
		struct policy *p = policy_builder_finish(b);
		for (int qi = 0; qi < queries; qi++) {
			struct policy_query q;
			memset(&q, 0, sizeof q);
			rand_addr(&q.dst, below(3) == 0);
			q.port = (uint16_t)(1 + below(25));
			uint32_t hk = below(8);
			char hostbuf[64];
			if (hk < 5) {
				snprintf(hostbuf, sizeof hostbuf, "%s", names[hk]);
				if (below(3) == 0)
					hostbuf[0] = (char)(hostbuf[0] - 'a' + 'A');
				if (below(3) == 0)
					strcat(hostbuf, ".");
				q.host = hostbuf;
			} else if (hk == 5) {
				cidr_addr_format(&q.dst, hostbuf, sizeof hostbuf);	/* literal as host */
				q.host = hostbuf;
			}
			uint32_t uk = below(3);
			q.user = uk < 2 ? users[uk] : NULL;
			rand_addr(&q.src, false);
			bool want_accept;
			const char *lin_host = (hk == 5) ? NULL : q.host;
			int want = linear(rules, nrules, routes, nroutes, lin_host, &q.dst, q.port, q.user,
					  &q.src, &want_accept);
			struct policy_decision d;
			policy_decide(p, &q, &d);
			decisions++;
			char ab[CIDR_ADDR_STRLEN];
			CHECK(d.rule == want && (d.action == POLICY_ACCEPT) == want_accept,
			      "set %d query %d: %s %s:%u user %s: engine rule %d %s, linear rule %d %s (%s)",
			      s, qi, q.host ? q.host : "-", cidr_addr_format(&q.dst, ab, sizeof ab), q.port,
			      q.user ? q.user : "-", d.rule, d.action == POLICY_ACCEPT ? "accept" : "deny",
			      want, want_accept ? "accept" : "deny", d.reason);
			/* precheck must never refuse a name that some address would pass */
			if (q.host && hk < 5 && want_accept) {
				struct policy_query pq = q;
				memset(&pq.dst, 0, sizeof pq.dst);
				struct policy_decision pd;
				CHECK(policy_precheck(p, &pq, &pd),
				      "set %d query %d: precheck refused %s:%u that %s accepts", s, qi, q.host,
				      q.port, ab);
			}
		}
		policy_free(p);
	}
	printf("%ld decisions compared\n", decisions);
	auth_users_free(known);
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
