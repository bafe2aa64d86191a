/*
 * test_envcheck: the container's variables, good and bad, as tables: each
 * bad value must name the variable, keep the value as given, and say why
 * and what to do; good ones come back normalised.
 */
#include "tailfence/envcheck.h"

#include <string.h>

#include "check.h"

/* A table environment: "NAME=VALUE" strings, NULL-terminated. */
static const char *table_get(void *arg, const char *name)
{
	const char *const *env = arg;
	size_t n = strlen(name);
	for (; *env; env++)
		if (strncmp(*env, name, n) == 0 && (*env)[n] == '=')
			return *env + n + 1;
	return NULL;
}

static void test_bad(void)
{
	static const struct {
		const char *set;	/* "NAME=VALUE" */
		const char *var;	/* named in the error */
		const char *reason;	/* part of the reason */
		const char *fix;	/* part of the fix */
	} cases[] = {
		{ "TAILSCALE_ADVERTISE_ROUTES=192.0.2.1/24", "TAILSCALE_ADVERTISE_ROUTES",
		  "has host bits set", "did you mean 192.0.2.0/24?" },
		{ "TAILSCALE_ADVERTISE_ROUTES=192.0.2.0", "TAILSCALE_ADVERTISE_ROUTES", "no /BITS",
		  "192.0.2.0/32" },
		{ "TAILSCALE_ADVERTISE_ROUTES=fd00::1", "TAILSCALE_ADVERTISE_ROUTES", "no /BITS",
		  "fd00::1/128" },
		{ "TAILSCALE_ADVERTISE_ROUTES=192.0.2.0/33", "TAILSCALE_ADVERTISE_ROUTES",
		  "longer than 32", "BITS 0-32" },
		{ "TAILSCALE_ADVERTISE_ROUTES=192.0.2.0/x", "TAILSCALE_ADVERTISE_ROUTES",
		  "decimal number", "BITS 0-32" },
		{ "TAILSCALE_ADVERTISE_ROUTES=192.0.2.256/32", "TAILSCALE_ADVERTISE_ROUTES",
		  "is not an IPv4 or IPv6 address", "10.0.0.0/24" },
		{ "TAILSCALE_ADVERTISE_ROUTES=fd00::/129", "TAILSCALE_ADVERTISE_ROUTES",
		  "longer than 128", "0-128" },
		{ "TAILSCALE_ADVERTISE_ROUTES=fd00::1/64", "TAILSCALE_ADVERTISE_ROUTES",
		  "has host bits set", "did you mean fd00::/64?" },
		{ "TAILSCALE_ADVERTISE_ROUTES=192.0.2.0/24,,198.51.100.0/24",
		  "TAILSCALE_ADVERTISE_ROUTES", "empty entry", "single commas" },
		{ "TAILSCALE_ADVERTISE_ROUTES=192.0.2.0/24,", "TAILSCALE_ADVERTISE_ROUTES",
		  "empty entry", "single commas" },
		{ "TAILSCALE_ADVERTISE_ROUTES=192.0.2.0/24, 198.51.100.1/24",
		  "TAILSCALE_ADVERTISE_ROUTES", "entry \"198.51.100.1/24\": has host bits set",
		  "198.51.100.0/24" },
		{ "TAILSCALE_ADVERTISE_ROUTES=0.0.0.0/0", "TAILSCALE_ADVERTISE_ROUTES",
		  "both families", "::/0" },
		{ "TAILSCALE_ADVERTISE_ROUTES=0.0.0.0/0,::/0", "TAILSCALE_ADVERTISE_ROUTES",
		  "reach every address", "TAILFENCE_ALLOW_DEFAULT_ROUTE=true" },
		{ "TAILFENCE_ALLOW_DEFAULT_ROUTE=maybe", "TAILFENCE_ALLOW_DEFAULT_ROUTE",
		  "true or false", "default false" },
		{ "TAILSCALE_ACCEPT_ROUTES=yes", "TAILSCALE_ACCEPT_ROUTES", "must be true or false",
		  "set it to true" },
		{ "TAILSCALE_HOSTNAME=railway_litellm", "TAILSCALE_HOSTNAME", "not a DNS label", "" },
		{ "TAILSCALE_HOSTNAME=-railway", "TAILSCALE_HOSTNAME", "not a DNS label", "" },
		{ "TAILSCALE_HOSTNAME=a123456789012345678901234567890123456789012345678901234567890123",
		  "TAILSCALE_HOSTNAME", "not a DNS label", "" },
		{ "TAILSCALE_TAGS=railway-proxy", "TAILSCALE_TAGS", "is not a tag", "tag:railway-proxy" },
		{ "TAILSCALE_TAGS=tag:ok,tag:", "TAILSCALE_TAGS", "entry \"tag:\": is not a tag", "" },
		{ "TAILSCALE_TAGS=tag:ok,,tag:b", "TAILSCALE_TAGS", "entry \"\": is not a tag", "" },
		{ "TAILSCALE_LOGIN_SERVER=headscale.example.com", "TAILSCALE_LOGIN_SERVER",
		  "not an http:// or https:// URL", "" },
		{ "TAILSCALE_LOGIN_SERVER=https://", "TAILSCALE_LOGIN_SERVER", "not an http://", "" },
		{ "TAILSCALE_LOGIN_SERVER=https://a b", "TAILSCALE_LOGIN_SERVER", "not an http://", "" },
		{ "TAILSCALE_UP_TIMEOUT=soon", "TAILSCALE_UP_TIMEOUT", "not a number of seconds",
		  "TAILSCALE_UP_TIMEOUT=60" },
		{ "TAILSCALE_UP_TIMEOUT=10000", "TAILSCALE_UP_TIMEOUT", "1-9999", "" },
		{ "APP_STOP_TIMEOUT=0", "APP_STOP_TIMEOUT", "not a number of seconds",
		  "APP_STOP_TIMEOUT=10" },
		{ "TAILSCALED_PROXY=127.0.0.1", "TAILSCALED_PROXY", "expected IP:PORT", "" },
		{ "TAILSCALED_PROXY=127.0.0.300:1055", "TAILSCALED_PROXY",
		  "\"127.0.0.300\" is not an IPv4 address", "" },
		{ "TAILFENCE_LISTEN=localhost:1080", "TAILFENCE_LISTEN", "expected IP:PORT", "" },
		{ "TAILFENCE_LISTEN=127.0.0.1:0", "TAILFENCE_LISTEN", "port \"0\" is not 1-65535", "" },
		{ "TAILFENCE_LISTEN=127.0.0.1:70000", "TAILFENCE_LISTEN", "is not 1-65535", "" },
		{ "TAILFENCE_LISTEN=127.0.0.1:01080", "TAILFENCE_LISTEN", "is not 1-65535", "" },
		{ "TAILFENCE_LISTEN=127.0.0.1:1080,[::1]:x", "TAILFENCE_LISTEN",
		  "entry \"[::1]:x\": expected IP:PORT", "" },
		{ "TAILFENCE_LISTEN=[127.0.0.1]:1080", "TAILFENCE_LISTEN", "expected IP:PORT", "" },
		{ "TAILFENCE_LISTEN=,", "TAILFENCE_LISTEN", "expected IP:PORT", "" },
		{ "TAILFENCE_UPSTREAM=socks4://127.0.0.1:1055", "TAILFENCE_UPSTREAM",
		  "not socks5://HOST:PORT", "socks5://127.0.0.1:1055" },
		{ "TAILFENCE_UPSTREAM=socks5://", "TAILFENCE_UPSTREAM", "not socks5://", "" },
		{ "TAILFENCE_CONFIG=/nonexistent/tailfence.json", "TAILFENCE_CONFIG",
		  "does not exist", "" },
		{ "TAILFENCE_AUDIT_FILE=audit.jsonl", "TAILFENCE_AUDIT_FILE",
		  "not an absolute file path", "" },
		{ "TAILFENCE_AUDIT_FILE=/", "TAILFENCE_AUDIT_FILE", "not an absolute file path", "" },
		{ "TAILFENCE_EXPORT_ALL_PROXY=no", "TAILFENCE_EXPORT_ALL_PROXY", "true or false",
		  "socksio" },
		{ "TAILFENCE_PROXY_USER=litellm", "TAILFENCE_PROXY_USER", "go together", "" },
		{ "TAILFENCE_PROXY_PASSWORD=secret", "TAILFENCE_PROXY_USER", "go together", "" },
		{ "NO_PROXY=*", "NO_PROXY", "around tailfence", "" },
		{ "NO_PROXY=redis,a\"b", "NO_PROXY", "entry \"a\"b\": is not a host name", "" },
		{ "no_proxy=*", "no_proxy", "around tailfence", "" },
		{ "TAILFENCE_INBOUND=5432", "TAILFENCE_INBOUND", "is not PORT=HOST:PORT",
		  "5432=db.railway.internal:5432" },
		{ "TAILFENCE_INBOUND=5432=db:1,4000=", "TAILFENCE_INBOUND",
		  "entry \"4000=\": is not PORT=HOST:PORT", "PORT=HOST:PORT" },
		{ "TAILFENCE_INBOUND=0=db:1", "TAILFENCE_INBOUND", "is not PORT=HOST:PORT", "" },
		{ "TAILFENCE_INBOUND=5432=db:1,,80=w:80", "TAILFENCE_INBOUND", "empty entry", "" },
		{ "TAILFENCE_INBOUND=5432=db:1,5432=x:2", "TAILFENCE_INBOUND",
		  "entry \"5432=x:2\": serves a tailnet port given before", "once" },
		{ "TAILFENCE_INBOUND=5432=a b:1", "TAILFENCE_INBOUND", "is not PORT=HOST:PORT", "" },
		{ "TAILFENCE_INBOUND_POLICY=/nonexistent/policy.json", "TAILFENCE_INBOUND_POLICY",
		  "does not exist", "" },
		{ "TAILFENCE_INBOUND_LISTEN=127.0.0.2", "TAILFENCE_INBOUND_LISTEN", "needs a port", "" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *env[] = { cases[i].set, NULL };
		struct envcheck_result res;
		struct envcheck_error e;
		bool ok = envcheck_run(table_get, (void *)env, &res, &e);
		const char *given = strchr(cases[i].set, '=') + 1;
		CHECK(!ok, "%s: refused", cases[i].set);
		CHECK(res.n == 0, "%s: nothing kept", cases[i].set);
		CHECK(strcmp(e.var, cases[i].var) == 0, "%s: names %s, not %s", cases[i].set,
		      cases[i].var, e.var);
		if (strcmp(cases[i].var, "TAILFENCE_PROXY_USER") != 0 ||
		    strncmp(cases[i].set, "TAILFENCE_PROXY_USER", 20) == 0)
			CHECK(strcmp(e.value, given) == 0, "%s: value \"%s\"", cases[i].set, e.value);
		else
			CHECK(strcmp(e.value, "") == 0 && !strstr(e.reason, "secret") &&
			      !strstr(e.fix, "secret"), "%s: the password is not shown", cases[i].set);
		CHECK(strstr(e.reason, cases[i].reason) != NULL, "%s: reason \"%s\" lacks \"%s\"",
		      cases[i].set, e.reason, cases[i].reason);
		CHECK(strstr(e.fix, cases[i].fix) != NULL && e.fix[0], "%s: fix \"%s\" lacks \"%s\"",
		      cases[i].set, e.fix, cases[i].fix);
	}
}

static void test_good(void)
{
	const char *env[] = {
		"TAILSCALE_ADVERTISE_ROUTES= 192.0.2.0/24, 198.51.100.0/23 ,FD00:1::/64",
		"TAILSCALE_ACCEPT_ROUTES=false",
		"TAILSCALE_HOSTNAME=railway-test",
		"TAILSCALE_TAGS=tag:railway-proxy, tag:b",
		"TAILSCALE_LOGIN_SERVER=http://127.0.0.1:9",
		"TAILSCALED_PROXY=127.0.0.1:2055",
		"TAILFENCE_LISTEN=127.0.0.1:1081, [::1]:1081",
		"TAILFENCE_AUDIT_FILE=/data/audit.jsonl",
		"TAILFENCE_PROXY_USER=app",
		"TAILFENCE_PROXY_PASSWORD=pw",
		"NO_PROXY=.railway.internal, redis,,",
		"TAILFENCE_INBOUND=5432=db.railway.internal:5432, 4000=127.0.0.1:4000",
		"TAILFENCE_INBOUND_LISTEN=[::1]:20000",
		NULL,
	};
	static const char *const want[][2] = {
		{ "TAILSCALE_ADVERTISE_ROUTES", "192.0.2.0/24,198.51.100.0/23,fd00:1::/64" },
		{ "TAILFENCE_ALLOW_DEFAULT_ROUTE", "false" },
		{ "TAILSCALE_ACCEPT_ROUTES", "false" },
		{ "TAILSCALE_HOSTNAME", "railway-test" },
		{ "TAILSCALE_TAGS", "tag:railway-proxy,tag:b" },
		{ "TAILSCALE_LOGIN_SERVER", "http://127.0.0.1:9" },
		{ "TAILSCALE_UP_TIMEOUT", "60" },
		{ "APP_STOP_TIMEOUT", "10" },
		{ "TAILSCALED_PROXY", "127.0.0.1:2055" },
		{ "TAILFENCE_LISTEN", "127.0.0.1:1081,[::1]:1081" },
		{ "TAILFENCE_PROXY_ADDR", "127.0.0.1:1081" },
		{ "TAILFENCE_UPSTREAM", "socks5://127.0.0.1:2055" },
		{ "TAILFENCE_AUDIT_FILE", "/data/audit.jsonl" },
		{ "TAILFENCE_EXPORT_ALL_PROXY", "true" },
		{ "NO_PROXY", ".railway.internal,redis" },
		{ "TAILFENCE_INBOUND", "5432=db.railway.internal:5432,4000=127.0.0.1:4000" },
		{ "TAILFENCE_INBOUND_SERVE", "{\"TCP\":{\"5432\":{\"TCPForward\":\"[::1]:20000\","
					     "\"ProxyProtocol\":2},\"4000\":{\"TCPForward\":"
					     "\"[::1]:20001\",\"ProxyProtocol\":2}}}" },
	};
	struct envcheck_result res;
	struct envcheck_error e;
	bool ok = envcheck_run(table_get, (void *)env, &res, &e);
	CHECK(ok, "good values refused: %s=\"%s\": %s", e.var, e.value, e.reason);
	CHECK(res.n == sizeof want / sizeof want[0], "%zu values", res.n);
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		const char *v = envcheck_result_get(&res, want[i][0]);
		CHECK(v && strcmp(v, want[i][1]) == 0, "%s=\"%s\", want \"%s\"", want[i][0],
		      v ? v : "(none)", want[i][1]);
	}
	CHECK(envcheck_result_get(&res, "TAILFENCE_PROXY_PASSWORD") == NULL, "password not kept");
	envcheck_result_free(&res);

	/* Nothing set: the entrypoint's defaults. */
	const char *none[] = { NULL };
	ok = envcheck_run(table_get, (void *)none, &res, &e);
	CHECK(ok, "defaults refused: %s", e.reason);
	const char *v = envcheck_result_get(&res, "TAILFENCE_UPSTREAM");
	CHECK(v && strcmp(v, "socks5://127.0.0.1:1055") == 0, "default upstream");
	v = envcheck_result_get(&res, "TAILSCALE_ADVERTISE_ROUTES");
	CHECK(v && strcmp(v, "") == 0, "no routes");
	v = envcheck_result_get(&res, "TAILSCALE_HOSTNAME");
	CHECK(v && strcmp(v, "railway-litellm") == 0, "default host name");
	v = envcheck_result_get(&res, "TAILFENCE_INBOUND_SERVE");
	CHECK(v && strcmp(v, "") == 0, "no inbound: nothing to serve");
	envcheck_result_free(&res);

	/* An exit node, opted in. */
	const char *exit_node[] = { "TAILSCALE_ADVERTISE_ROUTES=0.0.0.0/0,::/0",
				    "TAILFENCE_ALLOW_DEFAULT_ROUTE=true", NULL };
	ok = envcheck_run(table_get, (void *)exit_node, &res, &e);
	CHECK(ok, "opted-in exit node refused: %s", e.reason);
	envcheck_result_free(&res);
}

int main(void)
{
	test_bad();
	test_good();
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
