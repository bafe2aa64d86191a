/*
 * bench_policy: decision time with 10, 1,000 and 100,000 prefix rules,
 * reported as ns per decision and as the ratio to the 10-rule case.
 *
 * Rules are random IPv4 prefixes inside 127.0.0.0/8 (the loopback guard is
 * lifted so that the rules decide), accept or deny, with ports "*", one
 * port of a small pool, or a range; a catch-all accept 127.0.0.0/9:* comes
 * last. Two shapes: "sparse", /24 to /32, where an address stays covered
 * by about one rule at every size, and "nested", /16 to /32, where 100,000
 * random rules pile up on the short prefixes (about 46 rules cover a
 * typical address, most on other ports): every one of those is a candidate
 * that a first-match decision has to consider, so there the cost follows
 * the number of covering rules, which the "covering" column shows (rules
 * whose prefix contains the address, any port, averaged over the queries). Every size gets the same query mix, drawn once
 * before timing: half the queries are random addresses inside a random rule
 * of that set (half of them on that rule's port), half are random addresses
 * anywhere in 127.0.0.0/8 (mostly outside every rule: the catch-all or the
 * implicit deny decides). Source 127.0.0.1, no user, no name.
 *
 * For comparison the same rules and queries go through a plain linear
 * evaluator (first match wins over an array of address/mask/port ranges;
 * no guards and no reason text, so it is a lower bound for the match part
 * alone) at 10 and 1,000 rules; its answers are checked against
 * policy_decide's. Not a test (timings belong here); run by hand:
 *   meson setup /tmp/build-pbench -Dbench=true --buildtype=release
 *   meson compile -C /tmp/build-pbench && /tmp/build-pbench/bench/bench_policy
 */
#include "tailfence/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_QUERIES 65536u

static uint64_t rng = 88172645463325252ULL;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 11);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const uint16_t port_pool[] = { 22, 80, 443, 5432, 8080, 8443, 9000 };
#define N_POOL (sizeof port_pool / sizeof port_pool[0])

/* One rule as the linear evaluator sees it. */
struct lrule {
	uint32_t addr, mask;
	uint16_t lo, hi;
	int accept;
};

struct set {
	struct policy *p;
	struct lrule *lin;	/* n + 1 rules, the catch-all last */
	size_t n;
	uint32_t *qaddr;
	uint16_t *qport;
};

static uint32_t mask_of(unsigned bits)
{
	return bits ? ~0u << (32 - bits) : 0;
}

static void make_set(struct set *s, size_t n, unsigned shortest)
{
	struct policy_builder *b = policy_builder_new();
	char dst[64], err[256];

	if (!b || !policy_builder_lift_guard(b, "loopback")) {
		fprintf(stderr, "builder\n");
		exit(1);
	}
	s->n = n;
	s->lin = calloc(n + 1, sizeof *s->lin);
	s->qaddr = calloc(N_QUERIES, sizeof *s->qaddr);
	s->qport = calloc(N_QUERIES, sizeof *s->qport);
	if (!s->lin || !s->qaddr || !s->qport) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	for (size_t i = 0; i <= n; i++) {
		struct lrule *l = &s->lin[i];
		char ports[32];
		unsigned bits = i < n ? shortest + rnd() % (33 - shortest) : 9;
		l->mask = mask_of(bits);
		l->addr = ((127u << 24) | (rnd() & 0x00ffffffu)) & l->mask;
		if (i == n)
			l->addr = 127u << 24;
		uint32_t k = rnd() % 10;
		if (i == n || k < 2) {
			l->lo = 1;
			l->hi = 65535;
			snprintf(ports, sizeof ports, "*");
		} else if (k < 8) {
			l->lo = l->hi = port_pool[rnd() % N_POOL];
			snprintf(ports, sizeof ports, "%u", l->lo);
		} else {
			l->lo = 8000;
			l->hi = 8999;
			snprintf(ports, sizeof ports, "8000-8999");
		}
		l->accept = i == n || (rnd() & 1);
		snprintf(dst, sizeof dst, "%u.%u.%u.%u/%u:%s", l->addr >> 24, (l->addr >> 16) & 255,
			 (l->addr >> 8) & 255, l->addr & 255, bits, ports);
		const char *d[] = { dst };
		struct policy_rule_spec r = { .action = l->accept ? POLICY_ACCEPT : POLICY_DENY,
					      .dst = d, .n_dst = 1 };
		if (!policy_builder_add_rule(b, &r, err, sizeof err)) {
			fprintf(stderr, "%s: %s\n", dst, err);
			exit(1);
		}
	}
	s->p = policy_builder_finish(b);
	if (!s->p) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	for (size_t i = 0; i < N_QUERIES; i++) {
		if (rnd() & 1) {
			const struct lrule *l = &s->lin[rnd() % n];
			s->qaddr[i] = l->addr | (rnd() & ~l->mask);
			s->qport[i] = (rnd() & 1) ? l->lo : port_pool[rnd() % N_POOL];
		} else {
			s->qaddr[i] = (127u << 24) | (rnd() & 0x00ffffffu);
			s->qport[i] = (rnd() % 8) ? port_pool[rnd() % N_POOL] : (uint16_t)(8000 + rnd() % 1000);
		}
	}
}

static void free_set(struct set *s)
{
	policy_free(s->p);
	free(s->lin);
	free(s->qaddr);
	free(s->qport);
}

static int linear(const struct lrule *r, size_t n, uint32_t a, uint16_t port)
{
	for (size_t i = 0; i < n; i++)
		if ((a & r[i].mask) == r[i].addr && port >= r[i].lo && port <= r[i].hi)
			return (int)i;
	return -1;
}

static void query_for(const struct set *s, size_t i, struct policy_query *q)
{
	uint32_t a = s->qaddr[i];
	q->dst.b[0] = (uint8_t)(a >> 24);
	q->dst.b[1] = (uint8_t)(a >> 16);
	q->dst.b[2] = (uint8_t)(a >> 8);
	q->dst.b[3] = (uint8_t)a;
	q->port = s->qport[i];
}

static void init_query(struct policy_query *q)
{
	memset(q, 0, sizeof *q);
	q->dst.family = AF_INET;
	q->src.family = AF_INET;
	q->src.b[0] = 127;
	q->src.b[3] = 1;
}

static volatile unsigned sink;

/* Best of five passes of `passes` sweeps over the queries. */
static double engine_ns(const struct set *s, unsigned passes)
{
	struct policy_query q;
	struct policy_decision d;
	double best = 1e18;

	init_query(&q);
	for (int r = 0; r < 5; r++) {
		unsigned acc = 0;
		double t0 = now();
		for (unsigned k = 0; k < passes; k++)
			for (size_t i = 0; i < N_QUERIES; i++) {
				query_for(s, i, &q);
				policy_decide(s->p, &q, &d);
				acc += (unsigned)d.rule;
			}
		double ns = (now() - t0) / ((double)passes * N_QUERIES) * 1e9;
		sink = acc;
		if (ns < best)
			best = ns;
	}
	return best;
}

static double linear_ns(const struct set *s, unsigned passes)
{
	double best = 1e18;
	for (int r = 0; r < 5; r++) {
		unsigned acc = 0;
		double t0 = now();
		for (unsigned k = 0; k < passes; k++)
			for (size_t i = 0; i < N_QUERIES; i++)
				acc += (unsigned)linear(s->lin, s->n + 1, s->qaddr[i], s->qport[i]);
		double ns = (now() - t0) / ((double)passes * N_QUERIES) * 1e9;
		sink = acc;
		if (ns < best)
			best = ns;
	}
	return best;
}

/* Average number of rules whose prefix covers the address (any port). */
static double covering(const struct set *s)
{
	size_t step = s->n > 1000 ? 64 : 1, total = 0, nq = 0;
	for (size_t i = 0; i < N_QUERIES; i += step, nq++)
		for (size_t k = 0; k <= s->n; k++)
			total += (s->qaddr[i] & s->lin[k].mask) == s->lin[k].addr;
	return (double)total / (double)nq;
}

/* The engine and the linear evaluator must agree on every query. */
static size_t disagreements(const struct set *s, unsigned *accepts)
{
	struct policy_query q;
	struct policy_decision d;
	size_t bad = 0;

	init_query(&q);
	*accepts = 0;
	for (size_t i = 0; i < N_QUERIES; i++) {
		query_for(s, i, &q);
		policy_decide(s->p, &q, &d);
		int want = linear(s->lin, s->n + 1, s->qaddr[i], s->qport[i]);
		int want_accept = want >= 0 && s->lin[want].accept;
		if (d.rule != want || (d.action == POLICY_ACCEPT) != want_accept)
			bad++;
		*accepts += d.action == POLICY_ACCEPT;
	}
	return bad;
}

int main(void)
{
	static const size_t sizes[] = { 10, 1000, 100000 };
	static const struct {
		const char *name;
		unsigned shortest;
	} shapes[] = { { "sparse", 24 }, { "nested", 16 } };

	printf("%zu queries per size, IPv4, half inside a random rule, half anywhere in 127/8\n",
	       (size_t)N_QUERIES);
	printf("%-7s %8s %12s %7s %10s %7s %9s %9s %9s\n", "shape", "rules", "ns/decision",
	       "ratio", "linear ns", "ratio", "covering", "compile s", "accepted");
	for (size_t sh = 0; sh < 2; sh++) {
		double base = 0, lin_base = 0;
		for (size_t i = 0; i < 3; i++) {
			struct set s;
			double t0 = now();
			make_set(&s, sizes[i], shapes[sh].shortest);
			double build = now() - t0;
			unsigned acc;
			size_t bad = disagreements(&s, &acc);
			double ns = engine_ns(&s, 8);
			if (i == 0)
				base = ns;
			char lin[32] = "-", linr[32] = "-";
			if (sizes[i] <= 1000) {
				double l = linear_ns(&s, sizes[i] <= 10 ? 32 : 4);
				if (i == 0)
					lin_base = l;
				snprintf(lin, sizeof lin, "%.1f", l);
				snprintf(linr, sizeof linr, "%.2f", l / lin_base);
			}
			printf("%-7s %8zu %12.1f %7.2f %10s %7s %9.1f %9.3f %8.1f%%\n", shapes[sh].name,
			       sizes[i], ns, ns / base, lin, linr, covering(&s), build,
			       100.0 * acc / N_QUERIES);
			if (bad) {
				printf("  %zu decisions differ from the linear evaluator\n", bad);
				free_set(&s);
				return 1;
			}
			free_set(&s);
		}
	}
	return 0;
}
