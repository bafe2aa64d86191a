/*
 * bench_policy: decision time with 10, 1,000 and 100,000 prefix rules,
 * reported as ratios to the 10-rule case. Rules are random IPv4 prefixes
 * (/16 to /32) with random ports, plus one catch-all accept at the end, so a
 * query walks the trie and usually falls through to the last rule: the
 * worst case for a linear evaluator. Not a test; run by hand:
 *   meson setup -Dbench=true build-bench && ninja -C build-bench bench/bench_policy
 *   ./build-bench/bench/bench_policy
 */
#include "tailfence/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static struct policy *make(size_t n)
{
	struct policy_builder *b = policy_builder_new();
	char dst[64], err[256];
	for (size_t i = 0; i < n; i++) {
		unsigned bits = 16 + rnd() % 17;
		uint32_t a = (10u << 24) | (rnd() & 0x00ffffffu);
		if (bits < 32)
			a &= ~((1u << (32 - bits)) - 1);
		snprintf(dst, sizeof dst, "%u.%u.%u.%u/%u:%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255,
			 a & 255, bits, 1 + rnd() % 1000);
		const char *d[] = { dst };
		struct policy_rule_spec r = { .action = (rnd() & 1) ? POLICY_ACCEPT : POLICY_DENY,
					      .dst = d, .n_dst = 1 };
		if (!policy_builder_add_rule(b, &r, err, sizeof err)) {
			fprintf(stderr, "%s\n", err);
			exit(1);
		}
	}
	const char *d[] = { "10.0.0.0/8:*" };
	struct policy_rule_spec last = { .action = POLICY_ACCEPT, .dst = d, .n_dst = 1 };
	policy_builder_add_rule(b, &last, err, sizeof err);
	return policy_builder_finish(b);
}

static double per_decision_ns(const struct policy *p, size_t iters)
{
	struct policy_query q;
	struct policy_decision d;
	unsigned accepted = 0;
	memset(&q, 0, sizeof q);
	q.dst.family = AF_INET;
	q.src.family = AF_INET;
	q.src.b[0] = 127;
	q.src.b[3] = 1;
	double t0 = now();
	for (size_t i = 0; i < iters; i++) {
		uint32_t a = (10u << 24) | (rnd() & 0x00ffffffu);
		q.dst.b[0] = (uint8_t)(a >> 24);
		q.dst.b[1] = (uint8_t)(a >> 16);
		q.dst.b[2] = (uint8_t)(a >> 8);
		q.dst.b[3] = (uint8_t)a;
		q.port = (uint16_t)(1 + rnd() % 2000);
		policy_decide(p, &q, &d);
		accepted += d.action == POLICY_ACCEPT;
	}
	double t = now() - t0;
	if (accepted == 0)
		fprintf(stderr, "(no accept: suspicious)\n");
	return t / (double)iters * 1e9;
}

int main(void)
{
	static const size_t sizes[] = { 10, 1000, 100000 };
	double base = 0;
	printf("%-12s %14s %10s\n", "prefix rules", "ns/decision", "ratio");
	for (size_t i = 0; i < 3; i++) {
		double t0 = now();
		struct policy *p = make(sizes[i]);
		double build = now() - t0;
		per_decision_ns(p, 100000);	/* warm up */
		double best = 1e18;
		for (int r = 0; r < 5; r++) {
			double ns = per_decision_ns(p, 1000000);
			if (ns < best)
				best = ns;
		}
		if (i == 0)
			base = best;
		printf("%-12zu %14.1f %10.2f   (compiled in %.3f s)\n", sizes[i], best, best / base,
		       build);
		policy_free(p);
	}
	return 0;
}
