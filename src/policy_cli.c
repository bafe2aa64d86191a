/*
 * policy_cli: the operator's subcommands around the policy:
 *   tailfence check [--config FILE] [FLAGS] [--user U] [--src ADDR] HOST:PORT
 *   tailfence config check [FILE] | tailfence config show [FLAGS]
 *   tailfence passwd
 * `check` resolves names with the daemon's own resolver and DNS settings
 * (evdns, --dns-server, --hosts-file) and decides every address as the
 * daemon would.
 */
#include "tailfence/auth.h"
#include "tailfence/cli.h"
#include "tailfence/config.h"
#include "tailfence/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/crypto.h>

#include "tailfence/resolve.h"

struct check_lookup {
	struct resolve_result res;
	bool done;
};

static void check_resolved(void *arg, const struct resolve_result *res)
{
	struct check_lookup *l = arg;
	l->res = *res;
	l->done = true;
}

/* Resolves host exactly as the daemon would: same resolver, same settings. */
static bool check_resolve(const struct config *c, const char *host,
			  struct resolve_result *out, char *err, size_t errlen)
{
	struct check_lookup l = { .done = false };
	struct event_base *base = event_base_new();
	if (!base) {
		snprintf(err, errlen, "cannot create an event loop");
		return false;
	}
	struct evdns_base *dns = resolve_new_base(base, c, err, errlen);
	if (!dns) {
		event_base_free(base);
		return false;
	}
	bool ok = resolve_start(base, dns, host, check_resolved, &l) != NULL;
	/* The resolver keeps its nameserver socket registered: run the loop
	 * until the answer is in, not until the loop is empty. */
	while (ok && !l.done && event_base_loop(base, EVLOOP_ONCE) == 0)
		;
	evdns_base_free(dns, 0);
	event_base_free(base);
	if (!ok || !l.done) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	*out = l.res;
	return true;
}

/* Splits HOST:PORT / [v6]:PORT. host gets the name or literal without
 * brackets. */
static bool split_target(const char *s, char *host, size_t hlen, uint16_t *port)
{
	const char *colon;
	size_t n;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':')
			return false;
		n = (size_t)(rb - s - 1);
		if (n == 0 || n >= hlen)
			return false;
		memcpy(host, s + 1, n);
		host[n] = '\0';
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || strchr(s, ':') != colon)
			return false;
		n = (size_t)(colon - s);
		if (n == 0 || n >= hlen)
			return false;
		memcpy(host, s, n);
		host[n] = '\0';
	}
	const char *p = colon + 1;
	if (!*p || *p == '0' || strlen(p) > 5)
		return false;
	unsigned v = 0;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (unsigned)(*p - '0');
	}
	if (v < 1 || v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

static const char *via_text(const struct config *c, enum policy_via via)
{
	return via == POLICY_VIA_DIRECT ? "direct" : c->upstream.text;
}

static void print_decision(const struct config *c, const struct policy_decision *d)
{
	printf("verdict: %s\n", d->action == POLICY_ACCEPT ? "allow" : "deny");
	if (d->guard)
		printf("decided by: guard %s\n", d->guard);
	else if (d->rule >= 0)
		printf("decided by: rule %d (%s)\n", d->rule, d->rule_text);
	else
		printf("decided by: implicit deny (no rule matched)\n");
	printf("reason: %s\n", d->reason);
	if (d->action == POLICY_ACCEPT)
		printf("via: %s\n", via_text(c, d->via));
}

int policy_cli_check(int argc, char **argv)
{
	struct config_args *args;
	char err[1024], host[300];
	uint16_t port;

	int rc = config_args_parse_sub(argc, argv, true, 1, &args);
	if (rc == 1)
		return 0;
	if (rc != 0)
		return 2;
	if (config_args_npositional(args) != 1) {
		fprintf(stderr, "usage: tailfence check [--config FILE] [FLAGS] [--user U] "
				"[--src ADDR] HOST:PORT\n");
		config_args_free(args);
		return 2;
	}
	const char *target = config_args_positional(args, 0);
	if (!split_target(target, host, sizeof host, &port)) {
		fprintf(stderr, "tailfence check: \"%s\" is not HOST:PORT (IPv6 as [::1]:443, port 1 to 65535)\n",
			target);
		config_args_free(args);
		return 2;
	}
	struct config *c = config_build(args, err, sizeof err);
	if (!c) {
		fprintf(stderr, "tailfence: %s\n", err);
		config_args_free(args);
		return 2;
	}
	struct policy_query qy;
	memset(&qy, 0, sizeof qy);
	qy.port = port;
	qy.user = config_args_user(args);
	const char *src = config_args_src(args) ? config_args_src(args) : "127.0.0.1";
	if (!cidr_addr_parse(src, &qy.src)) {
		fprintf(stderr, "tailfence check: --src: \"%s\" is not an IP address\n", src);
		rc = 2;
		goto out;
	}
	if (qy.user && policy_auth_required(c->policy)) {
		bool known = false;
		for (size_t i = 0; i < policy_user_count(c->policy); i++)
			known = known || strcmp(policy_user_name(c->policy, i), qy.user) == 0;
		if (!known)
			printf("note: user \"%s\" is not configured; the gateway would refuse the login\n",
			       qy.user);
	} else if (!qy.user && policy_auth_required(c->policy)) {
		printf("note: users are configured, so the gateway requires a login; pass --user\n");
	}

	struct cidr_addr lit;
	struct policy_decision d;
	printf("destination: %s (port %u) from %s%s%s\n", host, (unsigned)port, src,
	       qy.user ? " as user " : "", qy.user ? qy.user : "");
	if (cidr_addr_parse(host, &lit)) {
		qy.host = NULL;
		qy.dst = lit;
		policy_decide(c->policy, &qy, &d);
		char a[CIDR_ADDR_STRLEN];
		printf("addresses: %s (IP literal; hostname rules do not apply)\n",
		       cidr_addr_format(&lit, a, sizeof a));
		print_decision(c, &d);
		rc = d.action == POLICY_ACCEPT ? 0 : 1;
		goto out;
	}
	qy.host = host;
	if (!policy_precheck(c->policy, &qy, &d)) {
		printf("addresses: not resolved (no address of this name could be allowed)\n");
		print_decision(c, &d);
		rc = 1;
		goto out;
	}
	struct resolve_result res;
	char rerr[256];
	if (!check_resolve(c, host, &res, rerr, sizeof rerr)) {
		fprintf(stderr, "tailfence check: %s\n", rerr);
		rc = 2;
		goto out;
	}
	if (res.error) {
		printf("addresses: none (%s)\n", res.error_text);
		printf("verdict: deny\nreason: %s does not resolve\n", host);
		rc = 1;
		goto out;
	}
	printf("addresses:\n");
	struct policy_decision first_allow, first_deny;
	bool any_allow = false, any_deny = false;
	for (size_t i = 0; i < res.n; i++) {
		qy.dst = res.addrs[i];
		policy_decide(c->policy, &qy, &d);
		char ab[CIDR_ADDR_STRLEN];
		printf("  %-39s %s  %s\n", cidr_addr_format(&res.addrs[i], ab, sizeof ab),
		       d.action == POLICY_ACCEPT ? "allow" : "deny ", d.reason);
		if (d.action == POLICY_ACCEPT && !any_allow) {
			first_allow = d;
			any_allow = true;
		} else if (d.action != POLICY_ACCEPT && !any_deny) {
			first_deny = d;
			any_deny = true;
		}
	}
	if (any_allow) {
		print_decision(c, &first_allow);
		if (any_deny)
			printf("note: denied addresses of this name are never dialed\n");
		rc = 0;
	} else if (any_deny) {
		print_decision(c, &first_deny);
		rc = 1;
	} else {
		printf("verdict: deny\nreason: %s has no IPv4 or IPv6 address\n", host);
		rc = 1;
	}
out:
	config_unref(c);
	config_args_free(args);
	return rc;
}

int policy_cli_config(int argc, char **argv)
{
	static const char usage[] = "usage: tailfence config check [FILE]\n"
				    "       tailfence config show [FLAGS]\n";
	if (argc < 2) {
		fputs(usage, stderr);
		return 2;
	}
	const char *sub = argv[1];
	bool show = strcmp(sub, "show") == 0;
	if (!show && strcmp(sub, "check") != 0) {
		if (strcmp(sub, "--help") == 0 || strcmp(sub, "help") == 0) {
			fputs(usage, stdout);
			return 0;
		}
		fprintf(stderr, "tailfence config: unknown subcommand \"%s\"\n%s", sub, usage);
		return 2;
	}
	struct config_args *args;
	int rc = config_args_parse_sub(argc - 1, argv + 1, false, show ? 0 : 1, &args);
	if (rc == 1)
		return 0;
	if (rc != 0)
		return 2;
	if (!show && config_args_npositional(args) == 1)
		config_args_set_file(args, config_args_positional(args, 0));
	char err[1024];
	struct config *c = config_build(args, err, sizeof err);
	if (!c) {
		fprintf(stderr, "tailfence: %s\n", err);
		config_args_free(args);
		return 1;
	}
	if (show) {
		printf("%s\n", c->effective_json ? c->effective_json : "{}");
	} else {
		printf("%s: OK: %zu rule%s, %zu route%s, %zu user%s, %zu listener%s, upstream %s\n",
		       c->source ? c->source : "defaults and environment",
		       policy_rule_count(c->policy), policy_rule_count(c->policy) == 1 ? "" : "s",
		       policy_route_count(c->policy), policy_route_count(c->policy) == 1 ? "" : "s",
		       policy_user_count(c->policy), policy_user_count(c->policy) == 1 ? "" : "s",
		       c->n_listeners, c->n_listeners == 1 ? "" : "s", c->upstream.text);
		for (size_t i = 0; i < policy_rule_count(c->policy); i++) {
			const char *name = policy_rule_text(c->policy, i);
			const char *canon = policy_rule_canonical(c->policy, i);
			if (strcmp(name, canon) == 0)
				printf("  rule %zu: %s\n", i, canon);
			else
				printf("  rule %zu (%s): %s\n", i, name, canon);
		}
	}
	config_unref(c);
	config_args_free(args);
	return 0;
}

/* Reads one line into buf without the newline; false at EOF. */
static bool read_line(FILE *f, char *buf, size_t len)
{
	if (!fgets(buf, (int)len, f))
		return false;
	size_t n = strlen(buf);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	return true;
}

static bool read_secret(const char *prompt, char *buf, size_t len)
{
	struct termios old, noecho;
	if (tcgetattr(STDIN_FILENO, &old) != 0)
		return false;
	noecho = old;
	noecho.c_lflag &= (tcflag_t)~ECHO;
	noecho.c_lflag |= ECHONL;
	fputs(prompt, stderr);
	fflush(stderr);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &noecho);
	bool ok = read_line(stdin, buf, len);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	return ok;
}

int policy_cli_passwd(int argc, char **argv)
{
	char pw[1024], again[1024], hash[AUTH_HASH_STRLEN];
	int rc = 1;

	if (argc > 1) {
		if (strcmp(argv[1], "--help") == 0) {
			printf("usage: tailfence passwd\n"
			       "Reads a password from the terminal (twice, without echo) or the first\n"
			       "line of stdin, and prints its scrypt hash for the \"users\" object.\n");
			return 0;
		}
		fprintf(stderr, "usage: tailfence passwd   (no arguments)\n");
		return 2;
	}
	if (isatty(STDIN_FILENO)) {
		if (!read_secret("Password: ", pw, sizeof pw) ||
		    !read_secret("Again: ", again, sizeof again)) {
			fprintf(stderr, "tailfence passwd: no password read\n");
			goto out;
		}
		if (strcmp(pw, again) != 0) {
			fprintf(stderr, "tailfence passwd: the passwords differ\n");
			goto out;
		}
	} else if (!read_line(stdin, pw, sizeof pw)) {
		fprintf(stderr, "tailfence passwd: no password on stdin\n");
		goto out;
	}
	if (pw[0] == '\0') {
		fprintf(stderr, "tailfence passwd: the password is empty\n");
		goto out;
	}
	if (!auth_hash_password(pw, strlen(pw), hash, sizeof hash)) {
		fprintf(stderr, "tailfence passwd: hashing failed\n");
		goto out;
	}
	printf("%s\n", hash);
	rc = 0;
out:
	OPENSSL_cleanse(pw, sizeof pw);
	OPENSSL_cleanse(again, sizeof again);
	return rc;
}
