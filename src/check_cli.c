/*
 * check_cli: tailfence check [FLAGS] [--user NAME] [--src IP] HOST:PORT.
 * Would the daemon, with these flags and this environment, let a client
 * reach HOST:PORT? It reads the tailnet once from tailscaled (when a socket
 * is configured), resolves names as the daemon does (MagicDNS from the
 * view, split DNS through tailscaled, the rest with evdns and the daemon's
 * DNS settings) and decides every address with the daemon's own code
 * (target.c). Exit 0 allowed, 1 denied, 2 on an error.
 */
#include "tailfence/auth.h"
#include "tailfence/cli.h"
#include "tailfence/config.h"
#include "tailfence/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/crypto.h>

#include "tailfence/resolve.h"
#include "tailfence/tailnet_watch.h"
#include "tailfence/target.h"
#include "tailfence/text.h"

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
	struct resolve_ctx *rc = resolve_ctx_new(base, c, NULL, err, errlen);
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

/* HOST:PORT or [IPv6]:PORT into host (NUL-terminated) and port; NULL, or
 * what is wrong. */
static const char *split_target(const char *s, char *host, size_t hlen, uint16_t *port)
{
	struct text_hostport hp;
	enum text_hostport_error e = text_hostport_split(s, strlen(s), false, &hp);
	if (e != TEXT_HP_OK)
		return text_hostport_why(e);
	if (hp.host_len >= hlen)
		return "has a host longer than a name may be";
	memcpy(host, hp.host, hp.host_len);
	host[hp.host_len] = '\0';
	*port = hp.port;
	return NULL;
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

static const struct config_command check_command = {
	.name = "tailfence check",
	.usage = "usage: tailfence check [FLAGS] [--user NAME] [--src IP] HOST:PORT",
	.about = "Would the daemon, run with these flags and this environment, let a client\n"
		 "reach HOST:PORT? Prints the decision, the rule and, for a name, each of its\n"
		 "addresses (resolved with the daemon's resolver). Exit 0 allowed, 1 denied,\n"
		 "2 on a usage or configuration error.",
	.check = true,
	.max_positional = 1,
};

int check_cli_main(int argc, char **argv)
{
	struct config_args *args;
	char err[1024], host[300];
	uint16_t port = 0;

	int rc = config_args_parse_cmd(argc, argv, &check_command, &args);
	if (rc == 1)
		return 0;
	if (rc != 0)
		return 2;
	if (config_args_npositional(args) != 1) {
		fprintf(stderr, "%s\nTry 'tailfence check --help'.\n", check_command.usage);
		config_args_free(args);
		return 2;
	}
	const char *target = config_args_positional(args, 0);
	const char *bad = split_target(target, host, sizeof host, &port);
	if (bad) {
		fprintf(stderr, "tailfence check: \"%s\" %s\n", target, bad);
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
	if (who.user && auth_users_count(c->users) > 0) {
		bool known = false;
		for (size_t i = 0; i < auth_users_count(c->users); i++)
			known = known || strcmp(auth_users_name(c->users, i), who.user) == 0;
		if (!known)
			printf("note: user \"%s\" is not configured; the gateway would refuse the login\n",
			       who.user);
	} else if (!who.user && auth_users_count(c->users) > 0) {
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
