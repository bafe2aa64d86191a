/*
 * test_config: precedence (defaults < file < environment < flags), the
 * HuJSON reader, and the error messages (key path / flag / variable, value,
 * expectation). Files are written to a temporary directory.
 */
#include "tailfence/auth.h"
#include "tailfence/config.h"
#include "tailfence/policy.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static char dir[256];
static char hash[AUTH_HASH_STRLEN];

static const char *const env_names[] = {
	"TAILSCALE_ADVERTISE_ROUTES", "TAILFENCE_CONFIG", "TAILFENCE_LISTEN", "TAILFENCE_UPSTREAM",
	"TAILFENCE_AUDIT_LOG", "TAILFENCE_AUDIT_SYSLOG", "TAILFENCE_AUDIT_HMAC_KEY",
	"TAILFENCE_AUDIT_DURABILITY", "TAILFENCE_LOG_LEVEL", "TAILFENCE_LIFT_GUARDS",
	"TAILSCALE_SOCKET", "TAILFENCE_ADMIN", "TAILFENCE_UDP", NULL,
};

/* A clean environment with no tailscaled socket: the static routes decide,
 * unless a test sets TAILSCALE_SOCKET itself. */
static void clear_env(void)
{
	for (size_t i = 0; env_names[i]; i++)
		unsetenv(env_names[i]);
	setenv("TAILSCALE_SOCKET", "none", 1);
}

static const char *write_file(const char *name, const char *text)
{
	static char path[512];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	return path;
}

/* Builds from a NULL-terminated flag list ("tailfence" is prepended). */
static struct config *build(const char *const *flags, char *err, size_t errlen)
{
	char *argv[32];
	int argc = 0;
	argv[argc++] = "tailfence";
	for (size_t i = 0; flags && flags[i]; i++)
		argv[argc++] = (char *)flags[i];
	argv[argc] = NULL;
	struct config_args *a = NULL;
	int rc = config_args_parse(argc, argv, &a);
	if (rc != 0) {
		snprintf(err, errlen, "args rc %d", rc);
		return NULL;
	}
	struct config *c = config_build(a, err, errlen);
	config_args_free(a);
	return c;
}

static bool decide(const struct config *c, const char *host, const char *addr, uint16_t port,
		   const char *user)
{
	struct policy_query q;
	struct policy_decision d;
	memset(&q, 0, sizeof q);
	q.host = host;
	cidr_addr_parse(addr, &q.dst);
	q.port = port;
	q.user = user;
	cidr_addr_parse("127.0.0.1", &q.src);
	policy_decide(c->policy, &q, &d);
	return d.action == POLICY_ACCEPT;
}

static void test_defaults(void)
{
	char err[512];
	clear_env();
	struct config *c = build(NULL, err, sizeof err);
	CHECK(c != NULL, "defaults build: %s", err);
	if (!c)
		return;
	CHECK(c->n_listeners == 1 && strcmp(c->listeners[0].text, "127.0.0.1:1080") == 0 &&
		      c->listeners[0].loopback, "default listener");
	CHECK(c->upstream.kind == CONFIG_UPSTREAM_SOCKS5 &&
		      strcmp(c->upstream.text, "socks5://127.0.0.1:1055") == 0, "default upstream");
	CHECK(c->handshake_timeout_ms == 10000 && c->connect_timeout_ms == 10000 &&
		      c->dns_timeout_ms == 5000 && c->idle_timeout_ms == 900000 &&
		      c->shutdown_grace_ms == 10000, "default timeouts");
	CHECK(c->max_head_bytes == 16384 && c->max_connections == 4096 && c->buffer_bytes == 262144,
	      "default limits");
	CHECK(c->audit.n_sinks == 1 && c->audit.sinks[0].kind == AUDIT_SINK_STDOUT, "stdout sink");
	CHECK(!c->audit.fail_closed && c->audit.flush_ms == 200 &&
		      c->audit.durability == AUDIT_DURABILITY_WRITTEN, "audit defaults");
	CHECK(auth_users_count(c->users) == 0, "no users");
	/* no routes: nothing is allowed */
	CHECK(!decide(c, NULL, "100.64.0.1", 80, NULL), "deny without routes");
	CHECK(c->refs == 1 && config_ref(c) == c && c->refs == 2, "ref");
	config_unref(c);
	config_unref(c);
}

static void test_routes_env(void)
{
	char err[512];
	clear_env();
	setenv("TAILSCALE_ADVERTISE_ROUTES", "127.0.0.0/24, 127.0.2.0/24,fd00::/64", 1);
	const char *lift[] = { "--lift-guard", "loopback", NULL };
	struct config *c = build(lift, err, sizeof err);
	CHECK(c != NULL, "routes build: %s", err);
	if (c) {
		CHECK(decide(c, NULL, "127.0.0.5", 80, NULL), "in route");
		CHECK(decide(c, NULL, "127.0.2.5", 80, NULL), "in second route");
		CHECK(!decide(c, NULL, "127.0.1.5", 80, NULL), "outside the routes");
		CHECK(decide(c, NULL, "fd00::1", 443, NULL), "IPv6 route");
		CHECK(policy_route_count(c->policy) == 3, "three routes");
		config_unref(c);
	}
	/* guards stay unless lifted */
	c = build(NULL, err, sizeof err);
	CHECK(c && !decide(c, NULL, "127.0.0.5", 80, NULL), "loopback guarded by default");
	config_unref(c);

	struct { const char *val; const char *want; } bad[] = {
		{ "10.0.0.1/24", "TAILSCALE_ADVERTISE_ROUTES: \"10.0.0.1/24\" has host bits set; did you mean 10.0.0.0/24?" },
		{ "10.0.0.0/24,10.0.0.0/33", "TAILSCALE_ADVERTISE_ROUTES: \"10.0.0.0/33\": prefix length 33 is longer than 32" },
		{ "10.0.0.0/08", "leading zero" },
		{ "example.com", "not an IPv4 or IPv6 address" },
		{ "0.0.0.0/0", "TAILSCALE_ADVERTISE_ROUTES: \"0.0.0.0/0\" is a default route" },
		{ "::/0", "--allow-default-route" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		setenv("TAILSCALE_ADVERTISE_ROUTES", bad[i].val, 1);
		err[0] = '\0';
		c = build(NULL, err, sizeof err);
		CHECK(c == NULL && strstr(err, bad[i].want), "routes \"%s\": got \"%s\"", bad[i].val, err);
		config_unref(c);
	}
	setenv("TAILSCALE_ADVERTISE_ROUTES", "0.0.0.0/0", 1);
	const char *opt[] = { "--allow-default-route", NULL };
	c = build(opt, err, sizeof err);
	CHECK(c != NULL, "default route with opt-in: %s", err);
	CHECK(c && decide(c, NULL, "100.64.1.1", 80, NULL) && !decide(c, NULL, "169.254.169.254", 80, NULL),
	      "exit-node routes still guarded");
	config_unref(c);
	clear_env();
}

static void test_allow_flags(void)
{
	char err[512];
	clear_env();
	const char *f[] = { "--lift-guard", "loopback", "--allow", "127.0.0.0/24:80,443",
			    "--allow", "[::1]:8080", "--allow", "::1/128:9090", NULL };
	struct config *c = build(f, err, sizeof err);
	CHECK(c != NULL, "allow flags: %s", err);
	if (c) {
		CHECK(decide(c, NULL, "127.0.0.1", 80, NULL) && decide(c, NULL, "127.0.0.1", 443, NULL),
		      "allowed ports");
		CHECK(!decide(c, NULL, "127.0.0.1", 22, NULL), "other port");
		CHECK(decide(c, NULL, "::1", 8080, NULL) && decide(c, NULL, "::1", 9090, NULL), "v6");
		CHECK(!decide(c, NULL, "::1", 22, NULL), "v6 other port");
		CHECK(strcmp(policy_rule_text(c->policy, 1), "--allow 127.0.0.0/24:80,443") == 0,
		      "rule text %s", policy_rule_text(c->policy, 1));
		config_unref(c);
	}
	struct { const char *flag, *val, *want; } bad[] = {
		{ "--allow", "127.0.0.1/24:80", "--allow: \"127.0.0.1/24:80\": has host bits set; did you mean 127.0.0.0/24?" },
		{ "--allow", "127.0.0.0/24:0", "ports are 1 to 65535" },
		{ "--allow", "0.0.0.0/0:*", "--allow: \"0.0.0.0/0:*\" covers every address" },
		{ "--allow", "*:443", "covers every address" },
		{ "--lift-guard", "loopbak", "--lift-guard: \"loopbak\" is not a guard" },
		{ "--listen", "0.0.0.0", "--listen: \"0.0.0.0\" needs a port" },
		{ "--listen", "::1:1080", "put IPv6 addresses in brackets" },
		{ "--listen", "0.0.0.0:1080", "is not a loopback address and no users are configured" },
		{ "--upstream", "socks4://127.0.0.1:1055", "--upstream: \"socks4://127.0.0.1:1055\" is not an upstream" },
		{ "--upstream", "socks5://127.0.0.1", "needs a port" },
		{ "--upstream", "http://tailscaled:1055", "needs an IP address" },
		{ "--handshake-timeout", "10x", "--handshake-timeout: \"10x\" is not a duration" },
		{ "--idle-timeout", "0", "above zero" },
		{ "--max-connections", "0", "--max-connections: \"0\" is out of range" },
		{ "--max-head-bytes", "12abc", "out of range" },
		{ "--log-level", "loud", "--log-level: \"loud\" is not a log level" },
		{ "--audit-on-failure", "panic", "expected deny or continue" },
		{ "--audit-syslog", "udp:nowhere", "not a syslog target" },
		{ "--dns-server", "dns.example", "needs an IP address" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		const char *fl[] = { bad[i].flag, bad[i].val, NULL };
		err[0] = '\0';
		c = build(fl, err, sizeof err);
		CHECK(c == NULL && strstr(err, bad[i].want), "%s %s: got \"%s\"", bad[i].flag, bad[i].val,
		      err);
		config_unref(c);
	}
	/* forced public listener and durations */
	const char *g[] = { "--listen", "0.0.0.0:1080", "--force-public-listen", "--idle-timeout", "90",
			    "--connect-timeout", "250ms", "--shutdown-grace", "0", "--dns-timeout", "1m",
			    "--handshake-timeout", "1h", "--dns-server", "127.0.0.1:5353",
			    "--dns-server", "::1", "--audit-log", "-", "--audit-log", "/tmp/x.jsonl",
			    "--audit-syslog", "udp:127.0.0.1:514", NULL };
	c = build(g, err, sizeof err);
	CHECK(c != NULL, "forced: %s", err);
	if (c) {
		CHECK(!c->listeners[0].loopback, "public listener");
		CHECK(c->idle_timeout_ms == 90000 && c->connect_timeout_ms == 250 &&
			      c->shutdown_grace_ms == 0 && c->dns_timeout_ms == 60000 &&
			      c->handshake_timeout_ms == 3600000, "durations");
		CHECK(c->n_dns_servers == 2 && strcmp(c->dns_servers[0], "127.0.0.1:5353") == 0 &&
			      strcmp(c->dns_servers[1], "[::1]:53") == 0, "dns servers");
		CHECK(c->audit.n_sinks == 3 && c->audit.sinks[0].kind == AUDIT_SINK_STDOUT &&
			      c->audit.sinks[1].kind == AUDIT_SINK_FILE &&
			      c->audit.sinks[2].kind == AUDIT_SINK_SYSLOG, "sinks");
		config_unref(c);
	}
}

static void test_file(void)
{
	char err[512], text[4096];
	clear_env();
	snprintf(text, sizeof text,
		 "// tailfence config\n"
		 "{\n"
		 "  \"listen\": [\"127.0.0.1:1081\", \"[::1]:1081\"], // two\n"
		 "  /* the upstream */ \"upstream\": \"http://127.0.0.1:1056\",\n"
		 "  \"routes\": [\"127.0.0.0/24\",],\n"
		 "  \"lift_guards\": [\"loopback\"],\n"
		 "  \"users\": { \"alice\": \"%s\", },\n"
		 "  \"rules\": [\n"
		 "    { \"name\": \"db\", \"action\": \"accept\", \"dst\": [\"db.test:5432\", \"127.0.3.0/24:5432\"],\n"
		 "      \"users\": [\"alice\"] },\n"
		 "    { \"action\": \"deny\", \"dst\": [\"127.0.0.66:*\"] },\n"
		 "    { \"action\": \"accept\", \"dst\": [\"routes:*\"], \"via\": \"direct\" },\n"
		 "  ],\n"
		 "  \"limits\": { \"idle_timeout\": \"2m\", \"max_connections\": 10, \"connect_timeout\": 1.5 },\n"
		 "  \"dns\": { \"servers\": [\"127.0.0.1:5353\"], \"hosts_file\": \"/tmp/hosts\" },\n"
		 "  \"audit\": { \"sinks\": [ { \"type\": \"file\", \"path\": \"/tmp/a.jsonl\" } ],\n"
		 "             \"on_failure\": \"deny\", \"flush_ms\": 50 },\n"
		 "  \"log_level\": \"debug\", \"note\": \"a // inside a string, and /* this */\"\n"
		 "}\n", hash);
	/* "note" is an unknown key: first check that the error says so */
	const char *path = write_file("c1.json", text);
	const char *f[] = { "--config", path, NULL };
	struct config *c = build(f, err, sizeof err);
	CHECK(c == NULL && strstr(err, "unknown key \"note\""), "unknown key: %s", err);
	/* then without it */
	char *note = strstr(text, ", \"note\"");
	memmove(note, "\n}\n", 4);
	path = write_file("c1.json", text);
	c = build(f, err, sizeof err);
	CHECK(c != NULL, "file build: %s", err);
	if (!c)
		return;
	CHECK(c->n_listeners == 2 && strcmp(c->listeners[1].text, "[::1]:1081") == 0, "listeners");
	CHECK(c->upstream.kind == CONFIG_UPSTREAM_HTTP && c->upstream.port == 1056, "upstream");
	CHECK(auth_users_count(c->users) > 0, "users");
	CHECK(c->idle_timeout_ms == 120000 && c->max_connections == 10 &&
		      c->connect_timeout_ms == 1500, "limits");
	CHECK(c->n_dns_servers == 1 && strcmp(c->hosts_file, "/tmp/hosts") == 0, "dns");
	CHECK(c->audit.n_sinks == 1 && c->audit.sinks[0].kind == AUDIT_SINK_FILE &&
		      c->audit.fail_closed && c->audit.flush_ms == 50, "audit");
	CHECK(c->log_level == 3, "log level");
	CHECK(decide(c, "db.test", "127.0.4.9", 5432, "alice"), "name rule for alice");
	CHECK(!decide(c, "db.test", "127.0.4.9", 5432, NULL), "not without the user");
	CHECK(decide(c, NULL, "127.0.3.9", 5432, "alice") && !decide(c, NULL, "127.0.3.9", 5432, "bob"),
	      "prefix rule for alice");
	CHECK(!decide(c, NULL, "127.0.0.66", 80, "alice"), "deny rule");
	CHECK(decide(c, NULL, "127.0.0.7", 80, "alice"), "routes rule");
	CHECK(strcmp(policy_rule_text(c->policy, 0), "db") == 0, "rule name");
	char *shown = config_show_json(c, true);
	CHECK(shown && strstr(shown, "<redacted>") && !strstr(shown, "$scrypt$"),
	      "show --redact redacts hashes");
	free(shown);
	shown = config_show_json(c, false);
	CHECK(shown && strstr(shown, hash), "show prints the hashes, so that it loads back");
	free(shown);
	config_unref(c);

	/* environment beats the file, flags beat the environment */
	setenv("TAILFENCE_CONFIG", path, 1);
	setenv("TAILFENCE_UPSTREAM", "socks5://127.0.0.1:1057", 1);
	setenv("TAILFENCE_LOG_LEVEL", "warn", 1);
	setenv("TAILFENCE_LISTEN", "127.0.0.2:1082", 1);
	setenv("TAILFENCE_AUDIT_LOG", "-", 1);
	c = build(NULL, err, sizeof err);
	CHECK(c != NULL, "env build: %s", err);
	if (c) {
		CHECK(c->upstream.kind == CONFIG_UPSTREAM_SOCKS5 && c->upstream.port == 1057,
		      "env upstream beats file");
		CHECK(c->log_level == 1, "env log level");
		CHECK(c->n_listeners == 1 && strcmp(c->listeners[0].text, "127.0.0.2:1082") == 0,
		      "env listen");
		CHECK(c->audit.n_sinks == 1 && c->audit.sinks[0].kind == AUDIT_SINK_STDOUT, "env sink");
		config_unref(c);
	}
	const char *g[] = { "--upstream", "direct", "--log-level", "error", NULL };
	c = build(g, err, sizeof err);
	CHECK(c && c->upstream.kind == CONFIG_UPSTREAM_DIRECT && c->log_level == 0,
	      "flags beat env: %s", err);
	config_unref(c);
	clear_env();
}

static void test_file_errors(void)
{
	struct { const char *json, *want; } bad[] = {
		{ "{ \"rules\": [ {\"action\":\"accept\",\"dst\":[\"127.0.0.1:80\"]}, {\"action\":\"accept\",\"dst\":[\"127.0.0.1:80\"]},"
		  " {\"action\":\"accept\",\"dst\":[\"10.0.0.0/33:80\"]} ] }",
		  "rules[2].dst[0]: \"10.0.0.0/33:80\": prefix length 33 is longer than 32" },
		{ "{ \"rules\": [ {\"action\":\"allow\",\"dst\":[\"127.0.0.1:80\"]} ] }",
		  "rules[0].action: \"allow\" is not valid; expected accept or deny" },
		{ "{ \"rules\": [ {\"dst\":[\"127.0.0.1:80\"]} ] }", "rules[0].action: is missing" },
		{ "{ \"rules\": [ {\"action\":\"accept\"} ] }", "rules[0].dst: is missing" },
		{ "{ \"rules\": [ {\"action\":\"accept\",\"dst\":[80]} ] }", "rules[0].dst[0]: is a number; expected a string" },
		{ "{ \"rules\": [ {\"action\":\"accept\",\"dst\":[\"x:80\"],\"via\":\"wire\"} ] }", "rules[0].via: \"wire\"" },
		{ "{ \"rules\": [ {\"action\":\"accept\",\"dst\":[\"x:80\"],\"users\":[\"bob\"]} ] }",
		  "rules[0].users[0]: \"bob\" is not a configured user" },
		{ "{ \"rules\": [ {\"action\":\"accept\",\"dst\":[\"x:80\"],\"port\":80} ] }",
		  "rules[0]: unknown key \"port\"" },
		{ "{ \"routes\": [\"10.0.0.1/24\"] }", "routes[0]: \"10.0.0.1/24\" has host bits set; did you mean 10.0.0.0/24?" },
		{ "{ \"routes\": [\"0.0.0.0/0\"] }", "routes[0]: \"0.0.0.0/0\" is a default route" },
		{ "{ \"listen\": [\"0.0.0.0:1080\"] }", "\"0.0.0.0:1080\" is not a loopback address" },
		{ "{ \"listen\": [\"127.0.0.1\"] }", "listen[0]: \"127.0.0.1\" needs a port" },
		{ "{ \"lift_guards\": [\"metadata\"] }", "lift_guards[0]: \"metadata\" is not a guard" },
		{ "{ \"users\": { \"alice\": \"hunter2\" } }", "users.alice: the hash is not a password hash" },
		{ "{ \"limits\": { \"idle_timeout\": \"forever\" } }", "limits.idle_timeout: \"forever\" is not a duration" },
		{ "{ \"limits\": { \"max_connections\": -1 } }", "limits.max_connections: -1 is out of range" },
		{ "{ \"limits\": { \"idle\": 1 } }", "limits: unknown key \"idle\"" },
		{ "{ \"audit\": { \"sinks\": [ { \"type\": \"file\" } ] } }", "audit.sinks[0].path: is missing" },
		{ "{ \"audit\": { \"sinks\": [ { \"type\": \"kafka\" } ] } }", "audit.sinks[0].type: \"kafka\" is not a sink type" },
		{ "{ \"allow_default_route\": \"yes\" }", "allow_default_route: is a string; expected true or false" },
		{ "{ \"upstream\": \"socks5://127.0.0.1:1055\", \"upstream\": \"direct\" }", "key \"upstream\" appears twice" },
		{ "{ \"listen\": [\"127.0.0.1:1080\"] \"upstream\": \"direct\" }", "line 1, column" },
		{ "{\n  \"listen\": [\n /* unterminated\n", "line 3: a /* comment is never closed" },
		{ "[1, 2]", "top level must be a JSON object" },
		{ "", "invalid JSON" },
		/* a NUL escape would cut a string short: db.internal:* */
		{ "{ \"rules\": [ { \"action\": \"accept\", \"dst\": [\"db.internal\\u0000evil:80\"] } ] }",
		  "line 1, column 56: a string contains \\u0000 (NUL)" },
		{ "{ \"upst\\u0000ream\": \"direct\" }", "a string contains \\u0000" },
		{ "{ \"tailscaled_socket\": 7 }", "tailscaled_socket: is a number; expected a string" },
		{ "{ \"tailscaled_socket\": \"/a/very/long/path/that/goes/on/and/on/and/on/and/on/and/on/and/on/and/on/and/on/and/on/and/on/and/on/and/on/tailscaled.sock\" }",
		  "longer than a UNIX socket path may be" },
		{ "{ \"close_revoked\": \"yes\" }", "close_revoked: is a string; expected true or false" },
	};
	char err[512];
	clear_env();
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		const char *path = write_file("bad.json", bad[i].json);
		const char *f[] = { "--config", path, NULL };
		err[0] = '\0';
		struct config *c = build(f, err, sizeof err);
		CHECK(c == NULL && strstr(err, bad[i].want) && strncmp(err, path, strlen(path)) == 0,
		      "file %zu: got \"%s\", want \"%s\"", i, err, bad[i].want);
		config_unref(c);
	}
	const char *f[] = { "--config", "/nonexistent/tailfence.json", NULL };
	struct config *c = build(f, err, sizeof err);
	CHECK(c == NULL && strstr(err, "/nonexistent/tailfence.json: cannot open"), "%s", err);
}

static void test_hujson(void)
{
	char err[256];
	struct { const char *in; const char *key; const char *want; } ok[] = {
		{ "{\"a\": \"x // y\"}", "a", "x // y" },
		{ "{\"a\": \"x /* y */\"}", "a", "x /* y */" },
		{ "{\"a\": \"q\\\"//\", // c\n}", "a", "q\"//" },
		{ "{\"a\": [\"b\", /* c */ ], }", NULL, NULL },
		{ "{\"a\": \"b\" /* , */ }", "a", "b" },
		{ "{\"a\": \"b\", // trailing\n /* more */ }", "a", "b" },
		/* an escaped backslash before u0000 is just text */
		{ "{\"a\": \"x\\\\u0000\"}", "a", "x\\u0000" },
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		cJSON *j = config_parse_json("t", ok[i].in, strlen(ok[i].in), err, sizeof err);
		CHECK(j != NULL, "hujson %zu: %s", i, err);
		if (j && ok[i].key) {
			cJSON *v = cJSON_GetObjectItemCaseSensitive(j, ok[i].key);
			CHECK(v && cJSON_IsString(v) && strcmp(v->valuestring, ok[i].want) == 0,
			      "hujson %zu value", i);
		}
		cJSON_Delete(j);
	}
	const char *bad[] = { "{\"a\": 1,, }", "{,}", "{\"a\": \"unterminated}", "{\"a\": 1} x",
			      "{\"a\": \"x\\u0000\"}" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cJSON *j = config_parse_json("t", bad[i], strlen(bad[i]), err, sizeof err);
		CHECK(j == NULL && strncmp(err, "t: line 1", 9) == 0, "hujson bad %zu: %s", i, err);
		cJSON_Delete(j);
	}
	unsigned ms;
	CHECK(config_parse_duration("250ms", &ms) && ms == 250, "250ms");
	CHECK(config_parse_duration("10", &ms) && ms == 10000, "10");
	CHECK(config_parse_duration("15m", &ms) && ms == 900000, "15m");
	CHECK(!config_parse_duration("1d", &ms) && !config_parse_duration("", &ms) &&
		      !config_parse_duration("-1s", &ms) && !config_parse_duration("200h", &ms),
	      "bad durations");
}

/* audit.durability: file key, environment and flag, in that precedence. */
static void test_durability(void)
{
	char err[512];
	clear_env();
	const char *path = write_file("dur.json", "{ \"audit\": { \"durability\": \"synced\" } }");
	const char *f1[] = { "--config", path, NULL };
	struct config *c = build(f1, err, sizeof err);
	char *shown = c ? config_show_json(c, false) : NULL;
	CHECK(c && c->audit.durability == AUDIT_DURABILITY_SYNCED &&
		      strstr(shown, "\"durability\":\t\"synced\""),
	      "file key: %s", c ? shown : err);
	free(shown);
	config_unref(c);
	setenv("TAILFENCE_AUDIT_DURABILITY", "queued", 1);
	c = build(f1, err, sizeof err);
	CHECK(c && c->audit.durability == AUDIT_DURABILITY_QUEUED, "environment over file: %s", err);
	config_unref(c);
	const char *f2[] = { "--config", path, "--audit-durability", "written", NULL };
	c = build(f2, err, sizeof err);
	CHECK(c && c->audit.durability == AUDIT_DURABILITY_WRITTEN, "flag over environment: %s", err);
	config_unref(c);
	setenv("TAILFENCE_AUDIT_DURABILITY", "fsync", 1);
	c = build(NULL, err, sizeof err);
	CHECK(!c && strstr(err, "TAILFENCE_AUDIT_DURABILITY: \"fsync\" is not a durability"),
	      "bad environment value: %s", err);
	config_unref(c);
	clear_env();
	path = write_file("dur.json", "{ \"audit\": { \"durability\": true } }");
	c = build(f1, err, sizeof err);
	CHECK(!c && strstr(err, "audit.durability"), "bad file value: %s", err);
	config_unref(c);
}

static void test_args(void)
{
	struct config_args *a = NULL;
	char *v1[] = { "tailfence", "--version", NULL };
	char *v2[] = { "tailfence", "--bogus", NULL };
	char *v3[] = { "tailfence", "stray", NULL };
	char *v4[] = { "check", "--user", "alice", "--src", "127.0.0.5", "--allow", "127.0.0.0/24",
		       "db.test:5432", NULL };
	char *v5[] = { "tailfence", "--user", "alice", NULL };
	char *v6[] = { "tailfence", "--listen", NULL };
	fflush(stdout);
	FILE *saved = stdout;
	stdout = fopen("/dev/null", "w");
	int r1 = config_args_parse(2, v1, &a);
	fclose(stdout);
	stdout = saved;
	CHECK(r1 == 1, "--version returns 1");
	FILE *se = stderr;
	stderr = fopen("/dev/null", "w");
	int r2 = config_args_parse(2, v2, &a);
	int r3 = config_args_parse(2, v3, &a);
	int r5 = config_args_parse(3, v5, &a);
	int r6 = config_args_parse(2, v6, &a);
	fclose(stderr);
	stderr = se;
	CHECK(r2 == 2 && r3 == 2 && r5 == 2 && r6 == 2, "bad flags return 2 (%d %d %d %d)", r2, r3, r5, r6);
	static const struct config_command check = { .name = "tailfence check", .check = true,
						      .max_positional = 1 };
	CHECK(config_args_parse_cmd(8, v4, &check, &a) == 0, "check args");
	CHECK(a && strcmp(config_args_user(a), "alice") == 0 && strcmp(config_args_src(a), "127.0.0.5") == 0 &&
		      config_args_npositional(a) == 1 &&
		      strcmp(config_args_positional(a, 0), "db.test:5432") == 0, "check values");
	config_args_free(a);
}

/* The admin endpoint and the UDP association settings, from each source. */
static void test_admin_udp(void)
{
	char err[512];
	clear_env();
	struct config *c = build(NULL, err, sizeof err);
	CHECK(c && !c->has_admin && c->udp && c->udp_destinations == 64 && c->udp_rate == 1000 &&
		      c->udp_idle_timeout_ms == 120000, "admin/udp defaults: %s", c ? "" : err);
	config_unref(c);

	const char *f1[] = { "--admin", "127.0.0.1:9464", "--no-udp", "--udp-destinations", "8",
			     "--udp-rate", "50", "--udp-idle-timeout", "30s", NULL };
	c = build(f1, err, sizeof err);
	CHECK(c && c->has_admin && strcmp(c->admin.text, "127.0.0.1:9464") == 0 && !c->udp &&
		      c->udp_destinations == 8 && c->udp_rate == 50 && c->udp_idle_timeout_ms == 30000,
	      "admin/udp flags: %s", c ? "" : err);
	char *shown = c ? config_show_json(c, false) : NULL;
	CHECK(c && strstr(shown, "\"admin\":\t\"127.0.0.1:9464\"") &&
		      strstr(shown, "\"udp_datagrams_per_second\":\t50"),
	      "config show lists admin and the UDP limits");
	free(shown);
	config_unref(c);

	const char *f2[] = { "--admin", "0.0.0.0:9464", NULL };
	c = build(f2, err, sizeof err);
	CHECK(!c && strstr(err, "--admin: \"0.0.0.0:9464\" is not a loopback address"),
	      "public admin without users: %s", err);
	config_unref(c);

	const char *f3[] = { "--admin", "127.0.0.1", NULL };
	c = build(f3, err, sizeof err);
	CHECK(!c && strstr(err, "--admin: \"127.0.0.1\" needs a port"), "admin without port: %s",
	      err);
	config_unref(c);

	setenv("TAILFENCE_ADMIN", "[::1]:9464", 1);
	setenv("TAILFENCE_UDP", "false", 1);
	c = build(NULL, err, sizeof err);
	CHECK(c && c->has_admin && c->admin.loopback && !c->udp, "admin/udp from the environment: %s",
	      c ? "" : err);
	config_unref(c);
	clear_env();

	const char *path = write_file("udp.json", "{\"admin\": \"127.0.0.1:9000\", \"udp\": false,"
				      " \"limits\": {\"udp_destinations\": 2, \"udp_datagrams_per_second\""
				      ": 10, \"udp_idle_timeout\": \"1m\"}}");
	const char *f4[] = { "--config", path, NULL };
	c = build(f4, err, sizeof err);
	CHECK(c && c->has_admin && !c->udp && c->udp_destinations == 2 && c->udp_rate == 10 &&
		      c->udp_idle_timeout_ms == 60000, "admin/udp from the file: %s", c ? "" : err);
	config_unref(c);
	path = write_file("udp-bad.json", "{\"limits\": {\"udp_destinations\": 0}}");
	const char *f5[] = { "--config", path, NULL };
	c = build(f5, err, sizeof err);
	CHECK(!c && strstr(err, "limits.udp_destinations: \"0\" is out of range"),
	      "udp_destinations 0: %s", err);
	config_unref(c);
}

int main(void)
{
	snprintf(dir, sizeof dir, "/tmp/tailfence-test-config-XXXXXX");
	if (!mkdtemp(dir) || !auth_hash_password("pw", 2, hash, sizeof hash))
		return 1;
	test_defaults();
	test_routes_env();
	test_allow_flags();
	test_file();
	test_file_errors();
	test_hujson();
	test_durability();
	test_args();
	test_admin_udp();
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		printf("could not remove %s\n", dir);
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
