/*
 * test_inbound_config: inbound entries from the config file, the
 * environment and the flags, through config_build (so the hook in
 * config.c is covered too): what they compile to, the errors (key path or
 * variable, value, reason), the identity rules on made-up whois answers,
 * and the target's guards. Files go to a temporary directory.
 */
#include "tailfence/config.h"
#include "tailfence/inbound_config.h"
#include "tailfence/policy.h"
#include "tailfence/proxyproto.h"
#include "tailfence/whois.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static char dir[256];

static const char *const env_names[] = {
	"TAILSCALE_ADVERTISE_ROUTES", "TAILFENCE_CONFIG", "TAILFENCE_LISTEN", "TAILFENCE_UPSTREAM",
	"TAILFENCE_LIFT_GUARDS", "TAILSCALE_SOCKET", "TAILFENCE_INBOUND",
	"TAILFENCE_INBOUND_POLICY", "TAILFENCE_INBOUND_LISTEN", "TAILFENCE_INBOUND_PEER_CHECK", NULL,
};

static void clear_env(void)
{
	for (size_t i = 0; env_names[i]; i++)
		unsetenv(env_names[i]);
	/* Inbound needs a socket for whois; it is never opened here. */
	setenv("TAILSCALE_SOCKET", "/nonexistent/tailscaled.sock", 1);
}

static const char *write_file(const char *name, const char *text)
{
	static char path[4][512];
	static int k;
	char *p = path[k++ & 3];
	snprintf(p, 512, "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	fputs(text, f);
	fclose(f);
	return p;
}

static struct config *build(const char *const *flags, char *err, size_t errlen)
{
	char *argv[32];
	int argc = 0;
	argv[argc++] = "tailfence";
	for (size_t i = 0; flags && flags[i]; i++)
		argv[argc++] = (char *)flags[i];
	argv[argc] = NULL;
	struct config_args *a = NULL;
	if (config_args_parse(argc, argv, &a) != 0) {
		snprintf(err, errlen, "bad flags");
		return NULL;
	}
	struct config *c = config_build(a, err, errlen);
	config_args_free(a);
	return c;
}

/* Builds a config file holding `inbound` and expects an error containing
 * want (NULL: success). */
static struct config *file_case(const char *inbound, const char *want)
{
	char text[4096], err[1024] = "";
	snprintf(text, sizeof text, "{ \"inbound\": %s }", inbound);
	const char *path = write_file("inbound.json", text);
	const char *flags[] = { "--config", path, NULL };
	struct config *c = build(flags, err, sizeof err);
	if (want)
		CHECK(!c && strstr(err, want), "%s: got \"%s\", want \"%s\"", inbound, err, want);
	else
		CHECK(c != NULL, "%s: %s", inbound, err);
	if (c && want) {
		config_unref(c);
		c = NULL;
	}
	return c;
}

static void test_file(void)
{
	clear_env();
	struct config *c = file_case(
		"[ { \"name\": \"db\", \"port\": 5432, \"listen\": \"127.0.0.2:15432\",\n"
		"    \"target\": \"db.example:5432\",\n"
		"    \"rules\": [ { \"action\": \"deny\", \"from\": [\"node:kiosk\"] },\n"
		"               { \"action\": \"accept\", \"from\": [\"user:alice@example.com\", \"tag:ops\"] } ] },\n"
		"  { \"listen\": \"[::1]:14000\", \"target\": \"127.0.0.1:4000\", \"proxy_protocol\": 1,\n"
		"    \"peer_check\": \"loopback\", \"rules\": [ { \"name\": \"all\", \"action\": \"accept\", \"from\": \"*\" } ] } ]",
		NULL);
	if (c) {
		const struct inbound_config *in = c->inbound;
		CHECK(in->n == 2, "entries %zu", in->n);
		const struct inbound_entry *e = &in->v[0];
		CHECK(strcmp(e->name, "db") == 0 && e->port == 5432, "name %s port %u", e->name, e->port);
		CHECK(strcmp(e->listen_text, "127.0.0.2:15432") == 0, "listen %s", e->listen_text);
		CHECK(strcmp(e->target_host, "db.example") == 0 && e->target_port == 5432, "target");
		CHECK(e->proxy_versions == PROXYPROTO_V2 && e->peer_check == INBOUND_PEER_TAILSCALED,
		      "defaults");
		CHECK(e->n_rules == 2 && !e->rules[0].accept && e->rules[1].accept, "rules");
		CHECK(strcmp(e->rules[1].text, "accept user:alice@example.com, tag:ops") == 0,
		      "rule text %s", e->rules[1].text);
		e = &in->v[1];
		CHECK(strcmp(e->name, "inbound[1]") == 0, "default name %s", e->name);
		CHECK(strcmp(e->listen_text, "[::1]:14000") == 0, "v6 listen %s", e->listen_text);
		CHECK(e->proxy_versions == PROXYPROTO_V1 && e->peer_check == INBOUND_PEER_LOOPBACK,
		      "v1, loopback");
		CHECK(strcmp(e->rules[0].text, "all") == 0, "named rule %s", e->rules[0].text);
		char *shown = config_show_json(c, false);
		/* as the file holds it: rules are objects, so config show loads back */
		CHECK(shown && strstr(shown, "\"inbound\"") &&
			      strstr(shown, "\"from\":\t[\"user:alice@example.com\", \"tag:ops\"]") &&
			      strstr(shown, "\"name\":\t\"all\""),
		      "effective: %s", shown);
		free(shown);
		config_unref(c);
	}
	/* The errors name the key path, the value and the reason. */
	const struct {
		const char *inbound, *want;
	} bad[] = {
		{ "{}", "inbound: is an object; expected an array" },
		{ "[ 7 ]", "inbound[0]: is a number; expected an object" },
		{ "[ { \"target\": \"db:1\" } ]", "inbound[0].listen: is missing" },
		{ "[ { \"listen\": \"127.0.0.2:1\" } ]", "inbound[0].target: is missing" },
		{ "[ { \"listen\": \"127.0.0.1:5432\", \"target\": \"db:1\" } ]",
		  "inbound[0].listen: \"127.0.0.1:5432\" is 127.0.0.1, where tailscaled hands" },
		{ "[ { \"listen\": \"192.0.2.1:5432\", \"target\": \"db:1\" } ]",
		  "inbound[0].listen: \"192.0.2.1:5432\" is not a loopback address" },
		{ "[ { \"listen\": \"127.0.0.2\", \"target\": \"db:1\" } ]",
		  "inbound[0].listen: \"127.0.0.2\" needs a port" },
		{ "[ { \"listen\": \"localhost:5\", \"target\": \"db:1\" } ]",
		  "\"localhost:5\" needs an IP address" },
		{ "[ { \"listen\": \"127.0.0.2:70000\", \"target\": \"db:1\" } ]", "has a bad port" },
		{ "[ { \"listen\": \"127.0.0.2:1\", \"target\": \"db\" } ]",
		  "inbound[0].target: \"db\" needs a port" },
		{ "[ { \"listen\": \"127.0.0.2:1\", \"target\": \"db..x:5\" } ]",
		  "inbound[0].target: \"db..x:5\": " },
		{ "[ { \"listen\": \"127.0.0.2:1\", \"target\": \"fd00::1:5\" } ]",
		  "put IPv6 addresses in brackets" },
		{ "[ { \"listen\": \"127.0.0.2:1\", \"target\": \"db:1\", \"proxy_protocol\": 3 } ]",
		  "inbound[0].proxy_protocol: 3; expected 1 or 2" },
		{ "[ { \"listen\": \"127.0.0.2:1\", \"target\": \"db:1\", \"peer_check\": \"none\" } ]",
		  "inbound[0].peer_check: \"none\" is not valid" },
		{ "[ { \"listen\": \"127.0.0.2:1\", \"target\": \"db:1\", \"port\": 0 } ]",
		  "inbound[0].port: expected the tailnet port served" },
		{ "[ { \"listen\": \"127.0.0.2:1\", \"target\": \"db:1\", \"lisen\": 1 } ]",
		  "inbound[0]: unknown key \"lisen\"" },
		{ "[ { \"listen\": \"127.0.0.2:1\", \"target\": \"db:1\", \"rules\": {} } ]",
		  "inbound[0].rules: is an object; expected an array" },
		{ "[ { \"listen\": \"127.0.0.2:1\", \"target\": \"db:1\", \"rules\": [ { \"from\": \"*\" } ] } ]",
		  "inbound[0].rules[0].action: is missing" },
		{ "[ { \"listen\": \"127.0.0.2:1\", \"target\": \"db:1\", \"rules\": [ { \"action\": \"allow\", \"from\": \"*\" } ] } ]",
		  "inbound[0].rules[0].action: \"allow\" is not valid" },
		{ "[ { \"listen\": \"127.0.0.2:1\", \"target\": \"db:1\", \"rules\": [ { \"action\": \"accept\" } ] } ]",
		  "inbound[0].rules[0].from: is missing" },
		{ "[ { \"listen\": \"127.0.0.2:1\", \"target\": \"db:1\", \"rules\": [ { \"action\": \"accept\", \"from\": [] } ] } ]",
		  "inbound[0].rules[0].from: is empty" },
		{ "[ { \"listen\": \"127.0.0.2:1\", \"target\": \"db:1\", \"rules\": [ { \"action\": \"accept\", \"from\": [\"group:eng\"] } ] } ]",
		  "inbound[0].rules[0].from[0]: \"group:eng\": tailscaled's whois does not say which groups" },
		{ "[ { \"listen\": \"127.0.0.2:1\", \"target\": \"db:1\", \"rules\": [ { \"action\": \"accept\", \"from\": [\"*\", \"alice\"] } ] } ]",
		  "inbound[0].rules[0].from[1]: \"alice\": expected user:LOGIN, tag:NAME" },
		{ "[ { \"listen\": \"127.0.0.2:1\", \"target\": \"db:1\", \"rules\": [ { \"action\": \"accept\", \"from\": [\"tag:9ops\"] } ] } ]",
		  "\"tag:9ops\": a tag is tag:NAME" },
		{ "[ { \"listen\": \"127.0.0.2:1\", \"target\": \"db:1\", \"rules\": [ { \"action\": \"accept\", \"from\": [\"user:*\"] } ] } ]",
		  "\"user:*\": identities are names, not patterns" },
		{ "[ { \"listen\": \"127.0.0.2:1\", \"target\": \"db:1\", \"rules\": [ { \"action\": \"accept\", \"from\": [\"user:\"] } ] } ]",
		  "\"user:\": a user needs a login name" },
		{ "[ { \"listen\": \"127.0.0.2:1\", \"target\": \"db:1\", \"rules\": [ { \"action\": \"accept\", \"from\": [\"node:a b\"] } ] } ]",
		  "\"node:a b\": a node is node:NAME" },
		{ "[ { \"listen\": \"127.0.0.2:1\", \"target\": \"a:1\" }, { \"listen\": \"127.0.0.2:1\", \"target\": \"b:1\" } ]",
		  "inbound[1]: listens on 127.0.0.2:1 like" },
		{ "[ { \"name\": \"x\", \"listen\": \"127.0.0.2:1\", \"target\": \"a:1\" }, { \"name\": \"x\", \"listen\": \"127.0.0.2:2\", \"target\": \"b:1\" } ]",
		  "the name \"x\" is used by" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		file_case(bad[i].inbound, bad[i].want);

	/* Inbound needs the socket; this node's own routes are not listeners. */
	setenv("TAILSCALE_SOCKET", "none", 1);
	file_case("[ { \"listen\": \"127.0.0.2:1\", \"target\": \"db:1\" } ]",
		  "need tailscaled's socket");
	clear_env();
	setenv("TAILSCALE_ADVERTISE_ROUTES", "127.0.0.0/24", 1);
	file_case("[ { \"listen\": \"127.0.0.2:1\", \"target\": \"db:1\" } ]",
		  "is inside 127.0.0.0/24, a route this node advertises");
	clear_env();
}

static void test_env_and_flags(void)
{
	char err[1024];
	clear_env();
	setenv("TAILFENCE_INBOUND", "5432=db.example:5432, 4000=127.0.0.1:4000", 1);
	const char *policy = write_file("policy.json",
		"// identities per tailnet port\n"
		"{ \"5432\": [ { \"action\": \"accept\", \"from\": [\"user:alice@example.com\"] } ],\n"
		"  \"*\": [ { \"action\": \"accept\", \"from\": [\"tag:ops\"] } ], }\n");
	setenv("TAILFENCE_INBOUND_POLICY", policy, 1);
	struct config *c = build(NULL, err, sizeof err);
	CHECK(c != NULL, "env: %s", err);
	if (c) {
		const struct inbound_config *in = c->inbound;
		CHECK(in->n == 2, "env entries %zu", in->n);
		CHECK(in->n == 2 && strcmp(in->v[0].listen_text, "127.0.0.2:17100") == 0 &&
		      strcmp(in->v[1].listen_text, "127.0.0.2:17101") == 0, "env listen");
		CHECK(in->n == 2 && strcmp(in->v[0].name, "5432") == 0 && in->v[1].port == 4000,
		      "env names");
		CHECK(in->n == 2 && in->v[0].n_rules == 2 && in->v[1].n_rules == 1,
		      "policy per port, then *");
		config_unref(c);
	}
	/* Flags replace the environment's list; --inbound-listen its base. */
	const char *flags[] = { "--inbound", "8080=[fd00::10]:80", "--inbound",
				"9090=web.example:90", "--inbound-listen", "[::1]:20000",
				"--inbound-peer-check", "loopback", NULL };
	unsetenv("TAILFENCE_INBOUND_POLICY");
	c = build(flags, err, sizeof err);
	CHECK(c != NULL, "flags: %s", err);
	if (c) {
		const struct inbound_config *in = c->inbound;
		CHECK(in->n == 2 && strcmp(in->v[0].listen_text, "[::1]:20000") == 0 &&
		      strcmp(in->v[1].listen_text, "[::1]:20001") == 0 && in->v[0].port == 8080 &&
		      strcmp(in->v[0].target_host, "fd00::10") == 0 && in->v[0].n_rules == 0,
		      "flag entries");
		CHECK(in->n == 2 && in->v[1].peer_check == INBOUND_PEER_LOOPBACK, "--inbound-peer-check");
		config_unref(c);
	}
	const struct {
		const char *env, *policy, *listen, *want;
	} bad[] = {
		{ "5432", NULL, NULL, "TAILFENCE_INBOUND: entry \"5432\": expected PORT=HOST:PORT" },
		{ "0=db:1", NULL, NULL, "entry \"0=db:1\": expected PORT=HOST:PORT" },
		{ "5432=db", NULL, NULL, "TAILFENCE_INBOUND: entry \"5432=db\": target: \"db\" needs a port" },
		{ "5432=db:1,,4000=x:2", NULL, NULL, "has an empty entry" },
		{ "5432=db:1,5432=x:2", NULL, NULL, "tailnet port 5432 is given twice" },
		{ "5432=db:1", NULL, "127.0.0.1:9000", "TAILFENCE_INBOUND_LISTEN: \"127.0.0.1:9000\" is 127.0.0.1" },
		{ "5432=db:1,5433=db:2", NULL, "127.0.0.2:65535", "would listen on port 65536" },
		{ "5432=db:1", "{ \"5433\": [] }", NULL, "key \"5433\" names a port no inbound entry serves" },
		{ "5432=db:1", "{ \"x\": [] }", NULL, "key \"x\": expected a tailnet port" },
		{ "5432=db:1", "[]", NULL, "the top level must be a JSON object" },
		{ "5432=db:1", "{ \"5432\": [ { \"action\": \"accept\", \"from\": [\"group:a\"] } ] }", NULL,
		  "policy.json: 5432[0].from[0]: \"group:a\"" },
		{ "5432=db:1", "{ \"5432\": [ } ", NULL, "policy.json: line 1" },
		{ NULL, "{}", NULL, "TAILFENCE_INBOUND_POLICY: " },
	};
	clear_env();
	setenv("TAILFENCE_INBOUND", "5432=db:1", 1);
	setenv("TAILFENCE_INBOUND_PEER_CHECK", "none", 1);
	c = build(NULL, err, sizeof err);
	CHECK(!c && strstr(err, "TAILFENCE_INBOUND_PEER_CHECK: \"none\" is not valid"), "%s", err);
	if (c)
		config_unref(c);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		clear_env();
		if (bad[i].env)
			setenv("TAILFENCE_INBOUND", bad[i].env, 1);
		if (bad[i].policy)
			setenv("TAILFENCE_INBOUND_POLICY", write_file("policy.json", bad[i].policy), 1);
		if (bad[i].listen)
			setenv("TAILFENCE_INBOUND_LISTEN", bad[i].listen, 1);
		err[0] = '\0';
		c = build(NULL, err, sizeof err);
		CHECK(!c && strstr(err, bad[i].want), "env case %zu: \"%s\", want \"%s\"", i, err,
		      bad[i].want);
		if (c)
			config_unref(c);
	}
	clear_env();
	setenv("TAILFENCE_INBOUND_POLICY", "/nonexistent/policy.json", 1);
	setenv("TAILFENCE_INBOUND", "5432=db:1", 1);
	c = build(NULL, err, sizeof err);
	CHECK(!c && strstr(err, "TAILFENCE_INBOUND_POLICY: \"/nonexistent/policy.json\": cannot open"),
	      "missing policy: %s", err);
	clear_env();
}

static struct whois_identity ident(const char *user, const char *node, const char *tag,
				   const char *cap)
{
	struct whois_identity id;
	memset(&id, 0, sizeof id);
	snprintf(id.user, sizeof id.user, "%s", user);
	snprintf(id.node, sizeof id.node, "%s", node);
	snprintf(id.node_short, sizeof id.node_short, "%.*s", (int)strcspn(node, "."), node);
	snprintf(id.host_name, sizeof id.host_name, "%s-host", id.node_short);
	if (tag)
		snprintf(id.tags[id.n_tags++], sizeof id.tags[0], "%s", tag);
	if (cap)
		snprintf(id.caps[id.n_caps++], sizeof id.caps[0], "%s", cap);
	return id;
}

static void test_decide(void)
{
	clear_env();
	struct config *c = file_case(
		"[ { \"name\": \"db\", \"listen\": \"127.0.0.2:15432\", \"target\": \"db.example:5432\",\n"
		"    \"rules\": [ { \"action\": \"deny\", \"from\": [\"node:kiosk\"] },\n"
		"               { \"action\": \"accept\", \"from\": [\"user:Alice@Example.com\", \"tag:ops\", \"cap:example.com/cap/db\"] } ] } ]",
		NULL);
	if (!c)
		return;
	const struct inbound_entry *e = &c->inbound->v[0];
	const struct {
		struct whois_identity id;
		bool allow;
		int rule;
		const char *reason;
	} cases[] = {
		{ ident("alice@example.com", "laptop.example.ts.net", NULL, NULL), true, 1,
		  "inbound rule 1 (accept user:Alice@Example.com, tag:ops, cap:example.com/cap/db) "
		  "accepts alice@example.com (laptop.example.ts.net) for db" },
		{ ident("alice@example.com", "kiosk.example.ts.net", NULL, NULL), false, 0,
		  "inbound rule 0 (deny node:kiosk) denies alice@example.com (kiosk.example.ts.net) for db" },
		{ ident("bob@example.com", "ci.example.ts.net", "tag:ops", NULL), true, 1, NULL },
		/* a node tagged by alice is not alice's */
		{ ident("alice@example.com", "ci.example.ts.net", "tag:ci", NULL), false, -1,
		  "no inbound rule of db accepts alice@example.com (ci.example.ts.net, tag:ci)" },
		{ ident("bob@example.com", "b.example.ts.net", NULL, "example.com/cap/db"), true, 1, NULL },
		{ ident("bob@example.com", "b.example.ts.net", NULL, "example.com/cap/dbx"), false, -1, NULL },
		{ ident("mallory@example.com", "m.example.ts.net", NULL, NULL), false, -1, NULL },
		/* node: by short name, full name or host name, any case */
		{ ident("alice@example.com", "KIOSK", NULL, NULL), false, 0, NULL },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct inbound_verdict v;
		inbound_decide(e, &cases[i].id, &v);
		CHECK(v.allow == cases[i].allow && v.rule == cases[i].rule,
		      "decide %zu: allow %d rule %d (%s)", i, v.allow, v.rule, v.reason);
		if (cases[i].reason)
			CHECK(strcmp(v.reason, cases[i].reason) == 0, "decide %zu: \"%s\"", i, v.reason);
	}
	struct inbound_id m;
	char why[300];
	struct whois_identity h = ident("x@y", "kiosk.example.ts.net", NULL, NULL);
	CHECK(inbound_id_parse("node:kiosk-host", &m, why, sizeof why) && inbound_id_match(&m, &h),
	      "node by host name");
	free(m.value);
	CHECK(inbound_id_parse("node:kiosk.example.ts.net", &m, why, sizeof why) &&
	      inbound_id_match(&m, &h), "node by full name");
	free(m.value);
	CHECK(inbound_id_parse("*", &m, why, sizeof why) && inbound_id_match(&m, &h), "any");

	/* The target's guards: a name resolving to loopback or link-local is
	 * refused; an address of the target's own name is allowed. */
	struct policy_query pq;
	struct policy_decision d;
	memset(&pq, 0, sizeof pq);
	pq.host = "db.example";
	pq.port = 5432;
	cidr_addr_parse("192.0.2.5", &pq.dst);
	policy_decide(e->policy, &pq, &d);
	CHECK(d.action == POLICY_ACCEPT && d.via == POLICY_VIA_DIRECT, "target allowed: %s", d.reason);
	cidr_addr_parse("127.0.0.1", &pq.dst);
	policy_decide(e->policy, &pq, &d);
	CHECK(d.action == POLICY_DENY && d.guard && strcmp(d.guard, "loopback") == 0,
	      "name to loopback: %s", d.reason);
	cidr_addr_parse("fe80::1", &pq.dst);
	policy_decide(e->policy, &pq, &d);
	CHECK(d.action == POLICY_DENY && d.guard && strcmp(d.guard, "link-local") == 0,
	      "name to link-local: %s", d.reason);
	pq.port = 22;
	cidr_addr_parse("192.0.2.5", &pq.dst);
	policy_decide(e->policy, &pq, &d);
	CHECK(d.action == POLICY_DENY, "another port: %s", d.reason);
	config_unref(c);

	/* A loopback literal is the explicit configuration that lifts the guard. */
	c = file_case("[ { \"listen\": \"127.0.0.2:1\", \"target\": \"127.0.0.1:4000\" },"
		      "  { \"listen\": \"127.0.0.2:2\", \"target\": \"[fe80::1]:80\" } ]", NULL);
	if (c) {
		memset(&pq, 0, sizeof pq);
		pq.port = 4000;
		cidr_addr_parse("127.0.0.1", &pq.dst);
		policy_decide(c->inbound->v[0].policy, &pq, &d);
		CHECK(d.action == POLICY_ACCEPT, "loopback literal: %s", d.reason);
		pq.port = 80;
		cidr_addr_parse("fe80::1", &pq.dst);
		policy_decide(c->inbound->v[1].policy, &pq, &d);
		CHECK(d.action == POLICY_DENY && d.guard && strcmp(d.guard, "link-local") == 0,
		      "link-local literal stays guarded: %s", d.reason);
		config_unref(c);
	}
}

static void test_same_bound(void)
{
	char err[1024], why[400];
	clear_env();
	setenv("TAILFENCE_INBOUND", "5432=db:1", 1);
	struct config *a = build(NULL, err, sizeof err);
	struct config *b = build(NULL, err, sizeof err);
	setenv("TAILFENCE_INBOUND", "5432=db:1,80=web:80", 1);
	struct config *d = build(NULL, err, sizeof err);
	CHECK(a && b && d, "builds: %s", err);
	if (a && b && d) {
		CHECK(config_same_bound(a, b, why, sizeof why), "same: %s", why);
		CHECK(!config_same_bound(a, d, why, sizeof why) &&
		      strstr(why, "inbound listen: 127.0.0.2:17100 -> 127.0.0.2:17100,127.0.0.2:17101"),
		      "changed: %s", why);
	}
	config_unref(a);
	config_unref(b);
	config_unref(d);
	clear_env();
}

int main(void)
{
	snprintf(dir, sizeof dir, "/tmp/tailfence-test-inbound-XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_file();
	test_env_and_flags();
	test_decide();
	test_same_bound();
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd) != 0)
		printf("could not remove %s\n", dir);
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
