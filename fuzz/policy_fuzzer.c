/*
 * policy_fuzzer: rule destination text (the Tailscale ACL shape) over
 * arbitrary bytes. The input is split at newlines into dst entries of one
 * rule; the last line is used as a query host. Whatever compiles must decide
 * without crashing, and a decision must name a rule that exists.
 */
#include "tailfence/policy.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1);
	const char *dst[16];
	size_t n = 0;
	char err[512];

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	char *p = buf;
	while (n < 16) {
		dst[n++] = p;
		char *nl = strchr(p, '\n');
		if (!nl)
			break;
		*nl = '\0';
		p = nl + 1;
	}
	for (size_t i = 0; i < n; i++)
		policy_dst_check(dst[i], err, sizeof err);
	struct policy_builder *b = policy_builder_new();
	struct cidr_prefix r;
	cidr_prefix_parse("100.64.0.0/10", 13, &r, NULL, 0);
	policy_builder_add_route(b, &r);
	struct policy_rule_spec spec = { .action = POLICY_ACCEPT, .dst = dst, .n_dst = n };
	bool ok = policy_builder_add_rule(b, &spec, err, sizeof err);
	spec.action = POLICY_DENY;
	if (n > 1)
		policy_builder_add_rule(b, &(struct policy_rule_spec){ .action = POLICY_DENY,
								       .dst = dst + 1,
								       .n_dst = n - 1 },
					err, sizeof err);
	struct policy *pol = policy_builder_finish(b);
	if (!pol) {
		free(buf);
		return 0;
	}
	struct policy_query q;
	struct policy_decision d;
	memset(&q, 0, sizeof q);
	q.host = dst[n - 1];
	q.port = size ? (uint16_t)(data[0] * 257u) : 80;
	const char *addrs[] = { "100.64.1.2", "127.0.0.1", "::ffff:10.0.0.1", "fd00::1", "10.1.2.3" };
	for (size_t i = 0; i < 5; i++) {
		cidr_addr_parse(addrs[i], &q.dst);
		policy_decide(pol, &q, &d);
		if (d.rule >= (int)policy_rule_count(pol) || (d.rule >= 0) != (d.rule_text != NULL))
			abort();
	}
	memset(&q.dst, 0, sizeof q.dst);
	policy_precheck(pol, &q, &d);
	(void)ok;
	policy_free(pol);
	free(buf);
	return 0;
}
