/*
 * policy_cli: the operator's subcommands around the policy:
 *   tailfence check [--config FILE] [FLAGS] [--user U] [--src ADDR] HOST:PORT
 *   tailfence config check [FILE] | tailfence config show [FLAGS]
 *   tailfence config check --env [FLAGS]   (the container's variables, envcheck.c)
 *   tailfence passwd
 * `check` reads the tailnet once from tailscaled (when a socket is
 * configured), resolves names as the daemon does (MagicDNS from the view,
 * split DNS through tailscaled, the rest with evdns and the daemon's DNS
 * settings) and decides every address with the daemon's own code (target.c).
 */
#include "tailfence/auth.h"
#include "tailfence/cli.h"
#include "tailfence/config.h"
#include "tailfence/envcheck.h"
#include "tailfence/inbound_config.h"
#include "tailfence/proxyproto.h"
#include "tailfence/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <termios.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/crypto.h>

#include "tailfence/resolve.h"
#include "tailfence/tailnet_watch.h"
#include "tailfence/target.h"

struct check_lookup {
	struct resolve_result res;
	char error_text[320];
	bool done;
};

static void check_resolved(void *arg, const struct resolve_result *res)
{
	struct check_lookup *l = arg;
	l->res = *res;
	if (res->error_text) {
		snprintf(l->error_text, sizeof l->error_text, "%s", res->error_text);
		l->res.error_text = l->error_text;
	}
	l->done = true;
}

/* Resolves host exactly as the daemon would: the tailnet's names from the
 * view or tailscaled, the rest with the same resolver and settings. */
static bool check_resolve(const struct config *c, const struct tailnet_view *view,
			  const char *host, struct check_lookup *l, char *err, size_t errlen)
{
	struct event_base *base = event_base_new();
	if (!base) {
		snprintf(err, errlen, "cannot create an event loop");
		return false;
	}
	struct resolve_ctx *rc = resolve_ctx_new(base, c, err, errlen);
	if (!rc) {
		event_base_free(base);
		return false;
	}
	struct resolve_tailnet tn = { view, c->tailscaled_socket };
	bool ok = resolve_start(rc, &tn, host, NULL, c->dns_timeout_ms, check_resolved, l) != NULL;
	/* The resolver keeps its nameserver socket registered: run the loop
	 * until the answer is in, not until the loop is empty. */
	while (ok && !l->done && event_base_loop(base, EVLOOP_ONCE) == 0)
		;
	resolve_ctx_free(rc);
	event_base_free(base);
	if (!ok || !l->done) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
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

static void print_path(const struct tailnet_view *view, const struct target_verdict *v)
{
	const struct policy_decision *d = &v->d;
	char pf[CIDR_PREFIX_STRLEN];
	switch (v->path) {
	case TARGET_PATH_TAILNET:
		printf("path: tailnet (peer %s, id %s", d->peer->name,
		       d->peer->id[0] ? d->peer->id : "?");
		if (d->carrier->kind != TAILNET_CARRY_ADDRESS)
			printf(", %s %s", tailnet_carry_str(d->carrier->kind),
			       cidr_prefix_format(&d->carrier->prefix, pf, sizeof pf));
		printf(")\n");
		break;
	case TARGET_PATH_HOST:
		printf("path: host (no peer carries it; tailscaled would dial it through the host "
		       "network)\n");
		break;
	case TARGET_PATH_UNKNOWN:
		if (view)
			printf("path: unknown (tailnet %s: %s)\n", tailnet_state_str(view->state),
			       view->reason ? view->reason : "no view");
		else
			printf("path: unknown (no tailscaled socket configured)\n");
		break;
	}
}

static void print_decision(const struct config *c, const struct tailnet_view *view,
			   const struct target_verdict *v)
{
	const struct policy_decision *d = &v->d;
	printf("verdict: %s\n", v->n_allowed ? "allow" : "deny");
	if (d->guard)
		printf("decided by: guard %s\n", d->guard);
	else if (d->rule >= 0)
		printf("decided by: rule %d (%s)\n", d->rule, d->rule_text);
	else
		printf("decided by: implicit deny (no rule matched)\n");
	printf("reason: %s\n", d->reason);
	if (v->n_allowed)
		printf("via: %s\n", via_text(c, d->via));
	if (v->shown.family)
		print_path(view, v);
}

static void check_print_address(void *arg, const struct cidr_addr *addr,
				const struct policy_decision *d)
{
	char ab[CIDR_ADDR_STRLEN];
	(void)arg;
	printf("  %-39s %s  %s\n", cidr_addr_format(addr, ab, sizeof ab),
	       d->action == POLICY_ACCEPT ? "allow" : "deny ", d->reason);
}

static void check_print_tailnet(const struct config *c, const struct tailnet_view *view)
{
	if (!view)
		return;
	if (view->state == TAILNET_RUNNING)
		printf("tailnet: running at %s, %zu peers, %zu prefixes carried\n",
		       c->tailscaled_socket, view->n_peers, view->n_entries);
	else
		printf("tailnet: %s: %s\n", tailnet_state_str(view->state),
		       view->reason ? view->reason : "");
}

/* Decides host:port as the daemon would, printing each step. Exit status
 * 0 allow, 1 deny, 2 error. */
static int check_target(const struct config *c, const struct tailnet_view *view,
			struct policy_query *who, const char *host, uint16_t port)
{
	struct target t;
	struct target_verdict v;
	char why[400];
	bool direct = c->upstream.kind == CONFIG_UPSTREAM_DIRECT;

	if (!target_parse(&t, host, strlen(host), port, why, sizeof why)) {
		printf("addresses: none (not a host)\nverdict: deny\nreason: %s\n", why);
		return 1;
	}
	if (!t.is_name) {
		char a[CIDR_ADDR_STRLEN];
		printf("addresses: %s (IP literal; hostname rules do not apply)\n",
		       cidr_addr_format(&t.addr, a, sizeof a));
		target_decide(c->policy, &t, who, &t.addr, 1, direct, NULL, NULL, &v);
		print_decision(c, view, &v);
		return v.n_allowed ? 0 : 1;
	}
	if (!target_precheck(c->policy, &t, who, &v)) {
		printf("addresses: not resolved (no address of this name could be allowed)\n");
		print_decision(c, view, &v);
		return 1;
	}
	struct check_lookup l = { .done = false };
	if (!check_resolve(c, view, t.host, &l, why, sizeof why)) {
		fprintf(stderr, "tailfence check: %s\n", why);
		return 2;
	}
	if (l.res.error) {
		printf("addresses: none (%s)\n", l.res.error_text);
		printf("verdict: deny\nreason: cannot resolve %s: %s\n", t.host, l.res.error_text);
		return 1;
	}
	printf("addresses (%s):\n", resolve_source_str(l.res.source));
	target_decide(c->policy, &t, who, l.res.addrs, l.res.n, direct, check_print_address, NULL,
		      &v);
	print_decision(c, view, &v);
	if (v.n_allowed && v.n_allowed < l.res.n)
		printf("note: denied addresses of this name are never dialed\n");
	return v.n_allowed ? 0 : 1;
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
	struct tailnet_view *view = NULL;
	struct policy_query who;
	memset(&who, 0, sizeof who);
	who.user = config_args_user(args);
	const char *src = config_args_src(args) ? config_args_src(args) : "127.0.0.1";
	if (!cidr_addr_parse(src, &who.src)) {
		fprintf(stderr, "tailfence check: --src: \"%s\" is not an IP address\n", src);
		rc = 2;
		goto out;
	}
	if (who.user && policy_auth_required(c->policy)) {
		bool known = false;
		for (size_t i = 0; i < policy_user_count(c->policy); i++)
			known = known || strcmp(policy_user_name(c->policy, i), who.user) == 0;
		if (!known)
			printf("note: user \"%s\" is not configured; the gateway would refuse the login\n",
			       who.user);
	} else if (!who.user && policy_auth_required(c->policy)) {
		printf("note: users are configured, so the gateway requires a login; pass --user\n");
	}
	if (c->tailscaled_socket) {
		struct tailnet_options opt = { .allow_exit_node = c->allow_default_route };
		view = tailnet_view_fetch(c->tailscaled_socket, &opt);
		who.view = view;
	}
	printf("destination: %s (port %u) from %s%s%s\n", host, (unsigned)port, src,
	       who.user ? " as user " : "", who.user ? who.user : "");
	check_print_tailnet(c, view);
	rc = check_target(c, view, &who, host, port);
out:
	tailnet_view_unref(view);
	config_unref(c);
	config_args_free(args);
	return rc;
}

static void print_config_ok(const struct config *c, const char *prefix)
{
	printf("%s%s: OK: %zu rule%s, %zu route%s, %zu user%s, %zu listener%s, upstream %s\n",
	       prefix, c->source ? c->source : "defaults and environment",
	       policy_rule_count(c->policy), policy_rule_count(c->policy) == 1 ? "" : "s",
	       policy_route_count(c->policy), policy_route_count(c->policy) == 1 ? "" : "s",
	       policy_user_count(c->policy), policy_user_count(c->policy) == 1 ? "" : "s",
	       c->n_listeners, c->n_listeners == 1 ? "" : "s", c->upstream.text);
}

/* The inbound entries as compiled, with their identity rules. */
static void print_inbound(const struct config *c)
{
	for (size_t i = 0; c->inbound && i < c->inbound->n; i++) {
		const struct inbound_entry *e = &c->inbound->v[i];
		char port[32] = "";
		if (e->port)
			snprintf(port, sizeof port, "tailnet port %u, ", e->port);
		printf("  inbound %s: %s -> %s (%sPROXY v%d, peer check %s)%s\n", e->name,
		       e->listen_text, e->target, port, e->proxy_versions == PROXYPROTO_V1 ? 1 : 2,
		       e->peer_check == INBOUND_PEER_LOOPBACK ? "loopback" : "tailscaled",
		       e->n_rules ? "" : ": no rules, every connection is refused");
		for (size_t k = 0; k < e->n_rules; k++)
			printf("    rule %zu: %s\n", k, e->rules[k].text);
	}
}

static const char *real_env(void *arg, const char *name)
{
	(void)arg;
	return getenv(name);
}

/* tailfence config check --env [FLAGS]: the container's variables
 * (envcheck), then the configuration they make together with FLAGS (the
 * flags the entrypoint will start the gateway with), built by the code
 * that will run it. Prints the normalised variables as NAME=VALUE lines
 * (the entrypoint reads them) after a "# ... OK" line. Exit 0, 78
 * (EX_CONFIG) with one message naming the variable, the value and the
 * fix, or 2 on a usage error. */
static int config_check_env(int argc, char **argv)
{
	struct envcheck_result res;
	struct envcheck_error e;
	if (!envcheck_run(real_env, NULL, &res, &e)) {
		fprintf(stderr, "tailfence: %s=\"%s\": %s\n  fix: %s\n", e.var, e.value, e.reason,
			e.fix);
		return EX_CONFIG;
	}
	/* The gateway reads these from the environment: give config_build the
	 * values the entrypoint will export. */
	static const char *const exported[] = { "TAILSCALE_ADVERTISE_ROUTES", "TAILFENCE_LISTEN",
						"TAILFENCE_UPSTREAM" };
	for (size_t i = 0; i < sizeof exported / sizeof exported[0]; i++)
		setenv(exported[i], envcheck_result_get(&res, exported[i]), 1);

	struct config_args *args;
	int rc = config_args_parse_sub(argc, argv, false, 0, &args);
	if (rc != 0) {
		envcheck_result_free(&res);
		return rc == 1 ? 0 : 2;
	}
	char err[1024];
	struct config *c = config_build(args, err, sizeof err);
	config_args_free(args);
	if (!c) {
		fprintf(stderr, "tailfence: configuration rejected: %s\n"
			"  fix: change the variable or the TAILFENCE_CONFIG entry named there\n", err);
		envcheck_result_free(&res);
		return EX_CONFIG;
	}
	print_config_ok(c, "# ");
	for (size_t i = 0; i < res.n; i++)
		printf("%s=%s\n", res.v[i].name, res.v[i].value);
	config_unref(c);
	envcheck_result_free(&res);
	return 0;
}

int policy_cli_config(int argc, char **argv)
{
	static const char usage[] = "usage: tailfence config check [FILE]\n"
				    "       tailfence config check --env [FLAGS]\n"
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
	if (!show && argc >= 3 && strcmp(argv[2], "--env") == 0) {
		argv[2] = argv[1];	/* "check" stands in for the program name */
		return config_check_env(argc - 2, argv + 2);
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
		print_config_ok(c, "");
		for (size_t i = 0; i < policy_rule_count(c->policy); i++) {
			const char *name = policy_rule_text(c->policy, i);
			const char *canon = policy_rule_canonical(c->policy, i);
			if (strcmp(name, canon) == 0)
				printf("  rule %zu: %s\n", i, canon);
			else
				printf("  rule %zu (%s): %s\n", i, name, canon);
		}
		print_inbound(c);
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
