/*
 * test_policy: table-driven tests of rule parsing (every port form, IPv6
 * brackets, names, wildcards, routes) and of evaluation (guards, mapped
 * addresses, hostname rules, precedence, users, sources, precheck).
 *
 * Rules are written in a compact test notation:
 *   "accept dst=127.0.0.0/24:80,443;db:5432 src=127.0.0.1/32 users=alice via=direct"
 * (dst entries separated by ';' since ',' belongs to port lists).
 */
#include "tailfence/auth.h"
#include "tailfence/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static char alice_hash[AUTH_HASH_STRLEN];

#define MAXV 16

/* Splits "a;b;c" into v (modifies s). */
static size_t split(char *s, char sep, const char **v)
{
	size_t n = 0;
	char *p = s;
	while (p && *p && n < MAXV) {
		v[n++] = p;
		p = strchr(p, sep);
		if (p)
			*p++ = '\0';
	}
	return n;
}

/* Adds a rule in test notation; returns policy_builder_add_rule's result. */
static bool add_rule(struct policy_builder *b, const char *text, char *err, size_t errlen)
{
	char buf[1024];
	const char *dst[MAXV], *src[MAXV], *users[MAXV];
	struct policy_rule_spec r;

	memset(&r, 0, sizeof r);
	snprintf(buf, sizeof buf, "%s", text);
	char *save = NULL;
	for (char *tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
		if (strcmp(tok, "accept") == 0)
			r.action = POLICY_ACCEPT;
		else if (strcmp(tok, "deny") == 0)
			r.action = POLICY_DENY;
		else if (strncmp(tok, "dst=", 4) == 0)
			r.n_dst = split(tok + 4, ';', dst), r.dst = dst;
		else if (strncmp(tok, "src=", 4) == 0)
			r.n_src = split(tok + 4, ';', src), r.src = src;
		else if (strncmp(tok, "users=", 6) == 0)
			r.n_users = split(tok + 6, ';', users), r.users = users;
		else if (strcmp(tok, "via=direct") == 0)
			r.via = POLICY_VIA_DIRECT;
		else if (strncmp(tok, "name=", 5) == 0)
			r.name = tok + 5;
	}
	return policy_builder_add_rule(b, &r, err, errlen);
}

struct env {
	const char *routes;	/* "a;b" */
	const char *lift;	/* "loopback;link-local" */
	const char *upstream;	/* "127.0.0.1:1055" */
	bool users;		/* add alice and bob */
	const char *self;	/* this host's interface addresses, "a;b" */
};

/* alice and bob, for rules that name users (the config owns them). */
static struct auth_users *users_ab(void)
{
	static struct auth_users *u;
	char err[256];
	if (!u) {
		u = auth_users_new();
		CHECK(auth_users_add(u, "alice", alice_hash, err, sizeof err), "%s", err);
		CHECK(auth_users_add(u, "bob", alice_hash, err, sizeof err), "%s", err);
	}
	return u;
}

static struct policy *build(const struct env *e, const char *const *rules)
{
	struct policy_builder *b = policy_builder_new();
	char err[256], buf[512];
	const char *v[MAXV];
	if (e && e->users)
		policy_builder_set_users(b, users_ab());
	if (e && e->routes) {
		snprintf(buf, sizeof buf, "%s", e->routes);
		size_t n = split(buf, ';', v);
		for (size_t i = 0; i < n; i++) {
			struct cidr_prefix p;
			CHECK(cidr_prefix_parse(v[i], strlen(v[i]), &p, err, sizeof err), "%s", err);
			policy_builder_add_route(b, &p);
		}
	}
	if (e && e->lift) {
		snprintf(buf, sizeof buf, "%s", e->lift);
		size_t n = split(buf, ';', v);
		for (size_t i = 0; i < n; i++)
			CHECK(policy_builder_lift_guard(b, v[i]), "lift %s", v[i]);
	}
	if (e && e->upstream) {
		snprintf(buf, sizeof buf, "%s", e->upstream);
		char *c = strrchr(buf, ':');
		*c = '\0';
		struct cidr_addr a;
		cidr_addr_parse(buf, &a);
		policy_builder_set_upstream(b, &a, (uint16_t)atoi(c + 1));
	}
	if (e && e->self) {
		snprintf(buf, sizeof buf, "%s", e->self);
		size_t n = split(buf, ';', v);
		for (size_t i = 0; i < n; i++) {
			struct cidr_addr a;
			CHECK(cidr_addr_parse(v[i], &a), "self %s", v[i]);
			policy_builder_add_self(b, &a);
		}
	}
	for (size_t i = 0; rules && rules[i]; i++) {
		err[0] = '\0';
		bool ok = add_rule(b, rules[i], err, sizeof err);
		CHECK(ok, "rule \"%s\": %s", rules[i], err);
	}
	return policy_builder_finish(b);
}

/* ---------------- rule parsing ---------------- */

struct parse_case {
	const char *dst;
	const char *want;	/* canonical rule text fragment, or error fragment */
	bool ok;
};

static const struct parse_case parse_cases[] = {
	{ "127.0.0.0/24:80", "dst=127.0.0.0/24:80", true },
	{ "127.0.0.0/24:*", "dst=127.0.0.0/24:*", true },
	{ "127.0.0.0/24:80-90", "dst=127.0.0.0/24:80-90", true },
	{ "127.0.0.0/24:22,80,443,8000-8100", "dst=127.0.0.0/24:22,80,443,8000-8100", true },
	{ "127.0.0.1:5432", "dst=127.0.0.1/32:5432", true },
	{ "127.0.0.1", "dst=127.0.0.1/32:*", true },
	{ "127.0.0.0/8", "dst=127.0.0.0/8:*", true },
	{ "[::1]:80", "dst=[::1/128]:80", true },
	{ "[fd00::/64]:443", "dst=[fd00::/64]:443", true },
	{ "[fd00::/64]", "dst=[fd00::/64]:*", true },
	{ "fd00::/64:443", "dst=[fd00::/64]:443", true },
	{ "fd00::1", "dst=[fd00::1/128]:*", true },
	{ "[::ffff:127.0.0.1]:80", "dst=127.0.0.1/32:80", true },
	{ "Db.Internal:5432", "dst=db.internal:5432", true },
	{ "db.internal.:5432", "dst=db.internal:5432", true },
	{ "db:5432", "dst=db:5432", true },
	{ "*.Example.com:443", "dst=*.example.com:443", true },
	{ "routes:*", "dst=routes:*", true },
	{ "routes:443", "dst=routes:443", true },
	{ "*:25", "dst=*:25", true },
	{ "127.0.0.0/24:1-65535", "dst=127.0.0.0/24:*", true },
	/* errors */
	{ "127.0.0.0/33:80", "\"127.0.0.0/33:80\": prefix length 33 is longer than 32", false },
	{ "127.0.0.1/24:80", "has host bits set; did you mean 127.0.0.0/24?", false },
	{ "127.0.0.0/24:0", "ports are 1 to 65535", false },
	{ "127.0.0.0/24:65536", "ports are 1 to 65535", false },
	{ "127.0.0.0/24:90-80", "start is after its end", false },
	{ "127.0.0.0/24:080", "leading zero", false },
	{ "127.0.0.0/24:", "empty port list", false },
	{ "127.0.0.0/24:80,", "empty item", false },
	{ "127.0.0.0/24:,80", "empty item", false },
	{ "127.0.0.0/24:80-", "bad port list", false },
	{ "127.0.0.0/24:http", "bad port list", false },
	{ "127.0.0.0/24:1-2-3", "bad port list", false },
	{ "127.0.0.0/24:*,80", "bad port list", false },
	{ "::1:*", "write an IPv6 address with ports as [::1]:*", false },
	{ "[::1:80", "without \"]\"", false },
	{ "[::1]80", "after \"]\"", false },
	{ "[127.0.0.1]:80", "brackets are for IPv6", false },
	{ "[db]:80", "not an IPv4 or IPv6 address", false },
	{ "1.2.3:80", "not an IPv4 or IPv6 address", false },
	{ "2130706433:80", "not an IPv4 or IPv6 address", false },
	{ "bad host:80", "not a valid host", false },
	{ "a..b:80", "not a valid host", false },
	{ "*.:80", "not a valid *.DOMAIN", false },
	{ "*.1.2.3.4:80", "not a valid *.DOMAIN", false },
	{ "foo.*.com:80", "not a valid host", false },
	{ ":80", "empty host", false },
	{ "", "is empty", false },
};

static void test_parse(void)
{
	for (size_t i = 0; i < sizeof parse_cases / sizeof parse_cases[0]; i++) {
		const struct parse_case *c = &parse_cases[i];
		struct policy_builder *b = policy_builder_new();
		const char *dst[1] = { c->dst };
		struct policy_rule_spec r = { .action = POLICY_ACCEPT, .dst = dst, .n_dst = 1 };
		char err[256] = "";
		bool ok = policy_builder_add_rule(b, &r, err, sizeof err);
		CHECK(ok == c->ok, "dst \"%s\": ok %d, want %d (%s)", c->dst, ok, c->ok, err);
		if (ok) {
			struct policy *p = policy_builder_finish(b);
			const char *t = policy_rule_text(p, 0);
			CHECK(t && strstr(t, c->want), "dst \"%s\": text \"%s\" lacks \"%s\"", c->dst,
			      t ? t : "(null)", c->want);
			policy_free(p);
		} else {
			CHECK(strstr(err, c->want) != NULL, "dst \"%s\": error \"%s\" lacks \"%s\"",
			      c->dst, err, c->want);
			CHECK(strncmp(err, "dst[0]: ", 8) == 0, "error names the path: %s", err);
			policy_builder_free(b);
		}
		char e2[256];
		CHECK(policy_dst_check(c->dst, e2, sizeof e2) == c->ok, "policy_dst_check %s", c->dst);
	}

	/* src and users errors */
	struct policy_builder *b = policy_builder_new();
	char err[256];
	CHECK(!add_rule(b, "accept dst=127.0.0.1:80 src=127.0.0.1/33", err, sizeof err) &&
		      strstr(err, "src[0]: \"127.0.0.1/33\": prefix length 33"), "src error: %s", err);
	CHECK(!add_rule(b, "accept dst=127.0.0.1:80 users=carol", err, sizeof err) &&
		      strstr(err, "users[0]: \"carol\" is not a configured user"), "users error: %s", err);
	struct policy_rule_spec empty = { .action = POLICY_ACCEPT };
	CHECK(!policy_builder_add_rule(b, &empty, err, sizeof err) && strstr(err, "dst"), "no dst: %s",
	      err);
	CHECK(!policy_builder_lift_guard(b, "nonsense"), "unknown guard name");
	struct auth_users *u = auth_users_new();
	CHECK(!auth_users_add(u, "eve", "plaintext", err, sizeof err) &&
		      strstr(err, "not a password hash"), "bad hash: %s", err);
	CHECK(!auth_users_add(u, "eve", "$scrypt$ln=10,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
			      err, sizeof err) && strstr(err, "ln=10"), "weak hash: %s", err);
	auth_users_free(u);
	policy_builder_free(b);
}

/* ---------------- evaluation ---------------- */

struct query_case {
	const char *host;	/* NULL for an IP literal */
	const char *dst;
	uint16_t port;
	const char *user;
	const char *src;
	const char *want;	/* "accept N", "deny N", "deny -1", "guard NAME" */
	bool direct;		/* expected via for accepts */
};

struct scenario {
	const char *title;
	struct env env;
	const char *rules[12];
	struct query_case q[24];
};

static const struct scenario scenarios[] = {
	{ "guards with nothing lifted", { .routes = "0.0.0.0/0;::/0" }, { "accept dst=routes:*" }, {
		{ NULL, "127.0.0.1", 80, NULL, NULL, "guard loopback", false },
		{ NULL, "127.255.255.254", 80, NULL, NULL, "guard loopback", false },
		{ NULL, "::1", 80, NULL, NULL, "guard loopback", false },
		{ NULL, "::ffff:127.0.0.1", 80, NULL, NULL, "guard loopback", false },
		{ NULL, "169.254.169.254", 80, NULL, NULL, "guard link-local", false },
		{ NULL, "::ffff:169.254.169.254", 80, NULL, NULL, "guard link-local", false },
		{ NULL, "169.254.1.1", 80, NULL, NULL, "guard link-local", false },
		{ NULL, "fe80::1", 80, NULL, NULL, "guard link-local", false },
		{ NULL, "0.0.0.0", 80, NULL, NULL, "guard this-network", false },
		{ NULL, "0.1.2.3", 80, NULL, NULL, "guard this-network", false },
		{ NULL, "::", 80, NULL, NULL, "guard this-network", false },
		{ NULL, "224.0.0.1", 80, NULL, NULL, "guard multicast", false },
		{ NULL, "239.255.255.250", 80, NULL, NULL, "guard multicast", false },
		{ NULL, "ff02::1", 80, NULL, NULL, "guard multicast", false },
		{ NULL, "255.255.255.255", 80, NULL, NULL, "guard broadcast", false },
		{ NULL, "100.100.100.100", 53, NULL, NULL, "guard tailscale-service", false },
		{ NULL, "fd7a:115c:a1e0::53", 53, NULL, NULL, "guard tailscale-service", false },
		{ NULL, "100.100.100.101", 53, NULL, NULL, "accept 0", false },
		{ NULL, "1.2.3.4", 443, NULL, NULL, "accept 0", false },
		{ "localhost", "127.0.0.1", 80, NULL, NULL, "guard loopback", false },
		{ 0 } } },
	{ "IPv4 inside IPv6, this host's addresses", { .routes = "0.0.0.0/0;::/0",
	  .upstream = "127.0.0.1:1055", .self = "203.0.113.9;2001:db8:5::9" },
	  { "accept dst=routes:*" }, {
		{ NULL, "64:ff9b::7f00:1", 80, NULL, NULL, "guard loopback", false },
		{ NULL, "64:ff9b::a9fe:a9fe", 80, NULL, NULL, "guard link-local", false },
		{ NULL, "::7f00:1", 80, NULL, NULL, "guard loopback", false },
		{ NULL, "::ffff:0:7f00:1", 80, NULL, NULL, "guard loopback", false },
		{ NULL, "2002:7f00:1::1", 80, NULL, NULL, "guard loopback", false },
		{ NULL, "2002:a9fe:a9fe::1", 80, NULL, NULL, "guard link-local", false },
		{ NULL, "2001:0:7f00:1::", 80, NULL, NULL, "guard loopback", false },
		{ NULL, "2001:0:c000:201::80ff:fefe", 80, NULL, NULL, "guard loopback", false },
		{ NULL, "64:ff9b:1:7f00:0:100::", 80, NULL, NULL, "guard loopback", false },
		{ NULL, "64:ff9b:1:0:7f:0:100:0", 80, NULL, NULL, "guard loopback", false },
		{ NULL, "::e000:1", 80, NULL, NULL, "guard multicast", false },
		{ NULL, "64:ff9b::cb00:7109", 80, NULL, NULL, "guard self", false },
		{ NULL, "203.0.113.9", 80, NULL, NULL, "guard self", false },
		{ NULL, "2001:db8:5::9", 80, NULL, NULL, "guard self", false },
		{ NULL, "203.0.113.9", 1055, NULL, NULL, "guard upstream", false },
		{ NULL, "::ffff:127.0.0.1", 1055, NULL, NULL, "guard loopback", false },
		{ NULL, "64:ff9b::c000:20a", 80, NULL, NULL, "accept 0", false },
		{ NULL, "2002:c000:20a::1", 80, NULL, NULL, "accept 0", false },
		{ NULL, "203.0.113.10", 80, NULL, NULL, "accept 0", false },
		{ NULL, "::1", 80, NULL, NULL, "guard loopback", false },
		{ NULL, "::", 80, NULL, NULL, "guard this-network", false },
		{ 0 } } },
	{ "lifted loopback, upstream guard", { .routes = "127.0.0.0/24", .lift = "loopback",
	  .upstream = "127.0.0.1:1055" }, { 0 }, {
		{ NULL, "127.0.0.1", 80, NULL, NULL, "accept 0", false },
		{ NULL, "127.0.0.1", 1055, NULL, NULL, "guard upstream", false },
		{ NULL, "::ffff:127.0.0.1", 1055, NULL, NULL, "guard upstream", false },
		/* the upstream's port on any address of this host */
		{ NULL, "127.0.0.2", 1055, NULL, NULL, "guard upstream", false },
		{ NULL, "0.0.0.0", 1055, NULL, NULL, "guard this-network", false },
		{ NULL, "127.0.0.2", 1056, NULL, NULL, "accept 0", false },
		{ NULL, "127.0.1.1", 80, NULL, NULL, "deny -1", false },
		{ NULL, "::1", 80, NULL, NULL, "deny -1", false },
		{ NULL, "169.254.169.254", 80, NULL, NULL, "guard link-local", false },
		{ 0 } } },
	{ "port forms and brackets", { .lift = "loopback" }, {
		"accept dst=127.0.0.1:80",
		"accept dst=127.0.0.2:80-90",
		"accept dst=127.0.0.3:22,443,8000-8002",
		"accept dst=127.0.0.4:*",
		"accept dst=[::1]:8080",
		"accept dst=::1/128:9090;[::1/128]:9091",
		"accept dst=127.0.0.5",
		NULL }, {
		{ NULL, "127.0.0.1", 80, NULL, NULL, "accept 0", false },
		{ NULL, "127.0.0.1", 81, NULL, NULL, "deny -1", false },
		{ NULL, "127.0.0.2", 79, NULL, NULL, "deny -1", false },
		{ NULL, "127.0.0.2", 80, NULL, NULL, "accept 1", false },
		{ NULL, "127.0.0.2", 90, NULL, NULL, "accept 1", false },
		{ NULL, "127.0.0.2", 91, NULL, NULL, "deny -1", false },
		{ NULL, "127.0.0.3", 22, NULL, NULL, "accept 2", false },
		{ NULL, "127.0.0.3", 443, NULL, NULL, "accept 2", false },
		{ NULL, "127.0.0.3", 8001, NULL, NULL, "accept 2", false },
		{ NULL, "127.0.0.3", 8003, NULL, NULL, "deny -1", false },
		{ NULL, "127.0.0.3", 23, NULL, NULL, "deny -1", false },
		{ NULL, "127.0.0.4", 1, NULL, NULL, "accept 3", false },
		{ NULL, "127.0.0.4", 65535, NULL, NULL, "accept 3", false },
		{ NULL, "::1", 8080, NULL, NULL, "accept 4", false },
		{ NULL, "::1", 8081, NULL, NULL, "deny -1", false },
		{ NULL, "::1", 9090, NULL, NULL, "accept 5", false },
		{ NULL, "::1", 9091, NULL, NULL, "accept 5", false },
		{ NULL, "127.0.0.5", 12345, NULL, NULL, "accept 6", false },
		{ 0 } } },
	{ "precedence: first match wins, longer prefix does not", { .lift = "loopback" }, {
		"deny dst=127.0.1.0/24:*",
		"accept dst=127.0.0.0/16:*",
		"deny dst=127.0.0.7:*",
		"accept dst=127.0.2.0/24:443 via=direct",
		NULL }, {
		{ NULL, "127.0.1.5", 80, NULL, NULL, "deny 0", false },
		{ NULL, "127.0.0.7", 80, NULL, NULL, "accept 1", false },
		{ NULL, "127.0.2.1", 443, NULL, NULL, "accept 1", false },
		{ NULL, "127.1.0.1", 443, NULL, NULL, "deny -1", false },
		{ 0 } } },
	{ "via direct", { .lift = "loopback" }, {
		"accept dst=127.0.2.0/24:443 via=direct",
		"accept dst=127.0.0.0/16:*",
		NULL }, {
		{ NULL, "127.0.2.1", 443, NULL, NULL, "accept 0", true },
		{ NULL, "127.0.2.1", 444, NULL, NULL, "accept 1", false },
		{ 0 } } },
	{ "hostname rules", { .lift = "loopback" }, {
		"accept dst=db.test:5432",
		"deny dst=127.0.1.0/24:*",
		"accept dst=*.svc.test:80",
		"deny dst=bad.svc.test:*",
		"accept dst=127.0.2.0/24:80",
		NULL }, {
		{ "db.test", "127.0.0.10", 5432, NULL, NULL, "accept 0", false },
		{ "DB.Test.", "127.0.0.10", 5432, NULL, NULL, "accept 0", false },
		{ "db.test", "127.0.0.10", 5433, NULL, NULL, "deny -1", false },
		{ "db.test", "::ffff:127.0.0.10", 5432, NULL, NULL, "accept 0", false },
		/* the IP literal never matches the hostname rule */
		{ NULL, "127.0.0.10", 5432, NULL, NULL, "deny -1", false },
		{ "127.0.0.10", "127.0.0.10", 5432, NULL, NULL, "deny -1", false },
		/* a name accepted, but its address is denied by a later rule */
		{ "db.test", "127.0.1.9", 5432, NULL, NULL, "deny 1", false },
		{ "a.svc.test", "127.0.0.11", 80, NULL, NULL, "accept 2", false },
		{ "x.y.svc.test", "127.0.0.11", 80, NULL, NULL, "accept 2", false },
		{ "svc.test", "127.0.0.11", 80, NULL, NULL, "deny -1", false },
		{ "a.svc.test", "127.0.0.11", 81, NULL, NULL, "deny -1", false },
		/* the wildcard comes first, so bad.svc.test:80 is accepted */
		{ "bad.svc.test", "127.0.0.11", 80, NULL, NULL, "accept 2", false },
		{ "bad.svc.test", "127.0.0.11", 81, NULL, NULL, "deny 3", false },
		{ "evilsvc.test", "127.0.0.11", 80, NULL, NULL, "deny -1", false },
		{ "db.test.evil", "127.0.0.10", 5432, NULL, NULL, "deny -1", false },
		{ "other.test", "127.0.2.3", 80, NULL, NULL, "accept 4", false },
		{ 0 } } },
	{ "hostname accepted still guarded", {0}, { "accept dst=db.test:*", NULL }, {
		{ "db.test", "127.0.0.1", 80, NULL, NULL, "guard loopback", false },
		{ "db.test", "::ffff:127.0.0.1", 80, NULL, NULL, "guard loopback", false },
		{ "db.test", "169.254.169.254", 80, NULL, NULL, "guard link-local", false },
		{ "db.test", "1.2.3.4", 80, NULL, NULL, "accept 0", false },
		{ 0 } } },
	{ "users and sources", { .lift = "loopback", .users = true }, {
		"accept dst=127.0.0.1:5432 users=alice",
		"accept dst=127.0.0.2:80 users=* src=127.0.0.0/24",
		"accept dst=127.0.0.3:80 src=::1/128",
		"accept dst=127.0.0.4:80 users=bob;alice src=127.0.5.0/24;127.0.6.0/24",
		NULL }, {
		{ NULL, "127.0.0.1", 5432, "alice", "127.0.0.1", "accept 0", false },
		{ NULL, "127.0.0.1", 5432, "bob", "127.0.0.1", "deny -1", false },
		{ NULL, "127.0.0.1", 5432, NULL, "127.0.0.1", "deny -1", false },
		{ NULL, "127.0.0.2", 80, "bob", "127.0.0.9", "accept 1", false },
		{ NULL, "127.0.0.2", 80, "bob", "127.0.1.9", "deny -1", false },
		{ NULL, "127.0.0.2", 80, "bob", "::ffff:127.0.0.9", "accept 1", false },
		{ NULL, "127.0.0.3", 80, "bob", "::1", "accept 2", false },
		{ NULL, "127.0.0.3", 80, "bob", "127.0.0.1", "deny -1", false },
		{ NULL, "127.0.0.4", 80, "bob", "127.0.6.1", "accept 3", false },
		{ NULL, "127.0.0.4", 80, "alice", "127.0.5.1", "accept 3", false },
		{ NULL, "127.0.0.4", 80, "alice", "127.0.7.1", "deny -1", false },
		{ 0 } } },
	{ "routes alias and IPv6 routes", { .routes = "127.0.0.0/24;fd00::/64", .lift = "loopback" }, {
		"deny dst=127.0.0.66:*",
		"accept dst=routes:80,443",
		NULL }, {
		{ NULL, "127.0.0.1", 80, NULL, NULL, "accept 1", false },
		{ NULL, "127.0.0.66", 80, NULL, NULL, "deny 0", false },
		{ NULL, "127.0.0.1", 22, NULL, NULL, "deny -1", false },
		{ NULL, "fd00::5", 443, NULL, NULL, "accept 1", false },
		{ NULL, "fd00:0:0:1::5", 443, NULL, NULL, "deny -1", false },
		{ 0 } } },
	{ "no routes, no rules: everything denied", { .lift = "loopback" }, { 0 }, {
		{ NULL, "127.0.0.1", 80, NULL, NULL, "deny -1", false },
		{ 0 } } },
};

static void expect(const struct policy_decision *d, const struct query_case *c, const char *title)
{
	char got[64];
	if (d->guard)
		snprintf(got, sizeof got, "guard %s", d->guard);
	else
		snprintf(got, sizeof got, "%s %d", d->action == POLICY_ACCEPT ? "accept" : "deny",
			 d->rule);
	CHECK(strcmp(got, c->want) == 0, "[%s] %s %s:%u user %s src %s: got \"%s\" want \"%s\" (%s)",
	      title, c->host ? c->host : "-", c->dst, c->port, c->user ? c->user : "-",
	      c->src ? c->src : "-", got, c->want, d->reason);
	if (d->action == POLICY_ACCEPT)
		CHECK(d->via == (c->direct ? POLICY_VIA_DIRECT : POLICY_VIA_TAILNET), "[%s] via", title);
	CHECK(d->reason[0] != '\0', "[%s] empty reason", title);
	CHECK((d->rule >= 0) == (d->rule_text != NULL), "[%s] rule_text with rule", title);
}

static void test_scenarios(void)
{
	for (size_t s = 0; s < sizeof scenarios / sizeof scenarios[0]; s++) {
		const struct scenario *sc = &scenarios[s];
		const char *const *rules = sc->rules[0] ? sc->rules : NULL;
		const char *dflt[] = { "accept dst=routes:*", NULL };
		if (!rules && sc->env.routes)
			rules = dflt;	/* what config.c adds when no rules are configured */
		struct policy *p = build(&sc->env, rules);
		CHECK(p != NULL, "[%s] build", sc->title);
		if (!p)
			continue;
		for (size_t i = 0; sc->q[i].dst; i++) {
			const struct query_case *c = &sc->q[i];
			struct policy_query q;
			memset(&q, 0, sizeof q);
			q.host = c->host;
			CHECK(cidr_addr_parse(c->dst, &q.dst), "%s", c->dst);
			q.port = c->port;
			q.user = c->user;
			if (c->src)
				cidr_addr_parse(c->src, &q.src);
			struct policy_decision d;
			policy_decide(p, &q, &d);
			expect(&d, c, sc->title);
		}
		policy_free(p);
	}
}

static void test_reasons_and_precheck(void)
{
	const struct env e = { .lift = "loopback" };
	const char *rules[] = {
		"accept dst=db.test:5432 name=database",
		"deny dst=blocked.test:*",
		"accept dst=127.0.0.0/24:443",
		"deny dst=late.test:*",
		NULL,
	};
	struct policy *p = build(&e, rules);
	struct policy_query q;
	struct policy_decision d;

	memset(&q, 0, sizeof q);
	q.host = "db.test";
	q.port = 5432;
	cidr_addr_parse("127.0.0.9", &q.dst);
	policy_decide(p, &q, &d);
	CHECK(d.action == POLICY_ACCEPT && strcmp(d.rule_text, "database") == 0, "named rule: %s",
	      d.rule_text);
	CHECK(strstr(d.reason, "db.test") && strstr(d.reason, "127.0.0.9:5432"), "reason: %s", d.reason);
	CHECK(policy_rule_count(p) == 4, "rule count");
	CHECK(strcmp(policy_rule_text(p, 2), "accept dst=127.0.0.0/24:443") == 0, "canonical: %s",
	      policy_rule_text(p, 2));

	struct policy_query pq;
	memset(&pq, 0, sizeof pq);
	pq.port = 5432;
	pq.host = "DB.test.";
	CHECK(policy_precheck(p, &pq, &d), "precheck accepts a name a rule accepts");
	pq.host = "blocked.test";
	pq.port = 80;
	CHECK(!policy_precheck(p, &pq, &d) && d.rule == 1, "precheck denies a name deny: %s", d.reason);
	pq.port = 443;
	CHECK(!policy_precheck(p, &pq, &d) && d.rule == 1,
	      "blocked.test:443: the name deny (rule 1) comes before the address accept (rule 2)");
	pq.host = "late.test";
	pq.port = 443;
	CHECK(policy_precheck(p, &pq, &d), "late.test:443: address rule 2 comes first");
	pq.port = 22;
	CHECK(!policy_precheck(p, &pq, &d) && d.rule == 3, "late.test:22 denied by rule 3");
	pq.host = "unknown.test";
	pq.port = 22;
	CHECK(!policy_precheck(p, &pq, &d) && d.rule == -1 && strstr(d.reason, "no rule accepts"),
	      "nothing accepts port 22: %s", d.reason);
	policy_free(p);

	/* guard reason text */
	p = build(&(struct env){ .routes = "0.0.0.0/0" }, (const char *[]){ "accept dst=routes:*", NULL });
	memset(&q, 0, sizeof q);
	cidr_addr_parse("169.254.169.254", &q.dst);
	q.port = 80;
	policy_decide(p, &q, &d);
	CHECK(strcmp(d.reason, "guard link-local: 169.254.169.254 is the cloud metadata service (link-local)") == 0,
	      "%s", d.reason);
	memset(&q.dst, 0, sizeof q.dst);
	policy_decide(p, &q, &d);
	CHECK(d.action == POLICY_DENY, "no address, no accept");
	policy_free(p);

	const char *const *g = policy_guard_names();
	size_t n = 0;
	while (g[n])
		n++;
	CHECK(n == 8, "eight guards");
}

/* The users live beside the policy (the config holds both): a rule names
 * them, the login checks them. */
static void test_users(void)
{
	struct auth_users *u = users_ab();
	struct policy *p = build(&(struct env){ .users = true },
				 (const char *[]){ "accept dst=198.51.100.7:80 users=alice", NULL });
	CHECK(auth_users_verify(u, "alice", "s3cret pass"), "alice right password");
	CHECK(auth_users_verify_cached(u, "alice", "s3cret pass"), "alice again (cached)");
	CHECK(!auth_users_verify(u, "alice", "s3cret pasS"), "alice wrong password");
	CHECK(!auth_users_verify(u, "carol", "s3cret pass"), "unknown user");
	CHECK(!auth_users_verify(u, "alice", NULL), "no password");
	CHECK(auth_users_count(u) == 2 && strcmp(auth_users_name(u, 1), "bob") == 0, "user names");
	struct policy_query q = { .user = "alice", .port = 80 };
	struct policy_decision d;
	cidr_addr_parse("198.51.100.7", &q.dst);
	policy_decide(p, &q, &d);
	CHECK(d.action == POLICY_ACCEPT, "alice's rule: %s", d.reason);
	q.user = "bob";
	policy_decide(p, &q, &d);
	CHECK(d.action == POLICY_DENY, "not bob's");
	policy_free(p);
}

int main(void)
{
	if (!auth_hash_password("s3cret pass", 11, alice_hash, sizeof alice_hash)) {
		printf("cannot hash\n");
		return 1;
	}
	test_parse();
	test_scenarios();
	test_reasons_and_precheck();
	test_users();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
