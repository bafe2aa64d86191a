/*
 * target_fuzzer: the decision on one requested destination, end to end
 * over arbitrary bytes: target_parse of what a client asked for, then
 * target_precheck and target_decide against a fixed live policy (deny and
 * accept name rules, a wildcard, prefixes, the tailnet aliases) and a
 * fixed view of a tailnet, for addresses taken from the input.
 *
 * Input: byte 0 picks the user and whether the view is running; bytes 1-2
 * the port; then 16-byte address blocks until a NUL; the rest is the host
 * as the client sent it. Invariants: a host that parses as a name is a
 * valid host name; an address literal formats back to itself; when the
 * precheck says no address of a name can pass, every address is denied;
 * an allowed address never meets a guard and is carried when its rule
 * dials via the tailnet; the verdict names a rule or guard that exists;
 * deciding twice gives the same answer.
 */
#include "tailfence/hostname.h"
#include "tailfence/auth.h"
#include "tailfence/policy.h"
#include "tailfence/tailnet.h"
#include "tailfence/target.h"

#include <stdlib.h>
#include <string.h>

static struct policy *pol;
static struct tailnet_view *running, *down;

static const char status_json[] =
	"{\"BackendState\":\"Running\",\"TailscaleIPs\":[\"100.64.0.1\"],"
	"\"Self\":{\"DNSName\":\"a.ts.test.\"},\"MagicDNSSuffix\":\"ts.test\","
	"\"Peer\":{\"k\":{\"ID\":\"nB\",\"DNSName\":\"b.ts.test.\",\"TailscaleIPs\":[\"100.64.0.2\","
	"\"fd7a:115c:a1e0::2\"],\"AllowedIPs\":[\"100.64.0.2/32\",\"fd7a:115c:a1e0::2/128\","
	"\"192.0.2.0/24\",\"2001:db8::/32\"]}}}";

static void setup(void)
{
	char err[300];
	struct policy_builder *b = policy_builder_new();
	policy_builder_set_live(b, true);
	struct cidr_addr up;
	cidr_addr_parse("127.0.0.1", &up);
	policy_builder_set_upstream(b, &up, 1055);
	static struct auth_users *accounts;
	accounts = auth_users_new();
	if (!accounts || !auth_users_add(accounts, "alice", "$scrypt$ln=15,r=8,p=1$nsYjimAnOE6NYzK1pozWnA$"
				      "+AHiULLuP7OYuE/fslPkQlEMKg3T6KL02aNAb/Hnacc", err, sizeof err))
		abort();
	policy_builder_set_users(b, accounts);
	static const char *const d1[] = { "secret.test:*", "*.blocked.test:*", "192.0.2.66:*" };
	static const char *const d2[] = { "db.test:5432", "*.corp.test:443", "198.51.100.0/24:80" };
	static const char *const d3[] = { "tailnet:*" };
	static const char *const users[] = { "alice" };
	struct policy_rule_spec r1 = { .action = POLICY_DENY, .dst = d1, .n_dst = 3 };
	struct policy_rule_spec r2 = { .action = POLICY_ACCEPT, .dst = d2, .n_dst = 3,
				       .users = users, .n_users = 1 };
	struct policy_rule_spec r3 = { .action = POLICY_ACCEPT, .dst = d3, .n_dst = 1 };
	if (!policy_builder_add_rule(b, &r1, err, sizeof err) ||
	    !policy_builder_add_rule(b, &r2, err, sizeof err) ||
	    !policy_builder_add_rule(b, &r3, err, sizeof err))
		abort();
	pol = policy_builder_finish(b);
	running = tailnet_view_build(status_json, sizeof status_json - 1, "{\"RouteAll\":true}", 17,
				     NULL, 0, NULL, err, sizeof err);
	down = tailnet_view_empty(TAILNET_UNKNOWN, "fuzz");
	if (!pol || !running || !down)
		abort();
}

static bool same(const struct policy_decision *a, const struct policy_decision *b)
{
	return a->action == b->action && a->rule == b->rule && a->guard == b->guard &&
	       strcmp(a->reason, b->reason) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!pol)
		setup();
	if (size < 3)
		return 0;
	struct policy_query who = { .user = (data[0] & 1) ? "alice" : NULL,
				    .view = (data[0] & 2) ? running : down };
	cidr_addr_parse("127.0.0.1", &who.src);
	uint16_t port = (uint16_t)(data[1] << 8 | data[2]);
	size_t pos = 3;
	struct cidr_addr addrs[TARGET_MAX_ADDRS];
	size_t n = 0;
	while (n < TARGET_MAX_ADDRS && pos + 16 < size && data[pos]) {
		memset(&addrs[n], 0, sizeof addrs[n]);
		bool v4 = data[pos] & 1;
		addrs[n].family = v4 ? AF_INET : AF_INET6;
		memcpy(addrs[n].b, data + pos + 1, v4 ? 4 : 16);
		cidr_addr_normalize(&addrs[n]);
		n++;
		pos += 17;
	}
	const char *host = (const char *)data + pos;
	size_t hlen = size - pos;

	struct target t;
	char why[400];
	if (!target_parse(&t, host, hlen, port, why, sizeof why))
		return 0;
	struct target_verdict v, v2;
	if (!t.is_name) {
		struct target t2;
		if (!target_parse(&t2, t.host, strlen(t.host), port, why, sizeof why) || t2.is_name ||
		    !cidr_addr_equal(&t.addr, &t2.addr))
			abort();
		addrs[0] = t.addr;
		n = 1;
	} else if (hostname_problem(t.host, strlen(t.host))) {
		abort();
	}
	bool may = !t.is_name || target_precheck(pol, &t, &who, &v);
	target_decide(pol, &t, &who, addrs, n, false, NULL, NULL, &v);
	target_decide(pol, &t, &who, addrs, n, false, NULL, NULL, &v2);
	if (v.n_allowed != v2.n_allowed || !same(&v.d, &v2.d))
		abort();
	if (!may && v.n_allowed)
		abort();	/* the precheck ruled out what decide then allowed */
	if (v.n_allowed && (v.d.guard || v.d.rule < 0 ||
			    v.d.rule >= (int)policy_rule_count(pol)))
		abort();
	if (v.n_allowed && who.view == running && v.d.via == POLICY_VIA_TAILNET && !v.d.carrier)
		abort();	/* via tailnet, yet not carried */
	return 0;
}
