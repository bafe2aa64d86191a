/*
 * config_cli: tailfence config check [FILE] | config check --env |
 * config show [--redact] | config reference. The configuration the daemon
 * would build (config.c), its files opened as the daemon opens them, the
 * container's variables (envcheck.c), the merged config as a loadable file,
 * and the settings table.
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

static void print_config_ok(const struct config *c, const char *prefix)
{
	printf("%s%s: OK: %zu rule%s, %zu route%s, %zu user%s, %zu listener%s, upstream %s\n",
	       prefix, c->source ? c->source : "defaults and environment",
	       policy_rule_count(c->policy), policy_rule_count(c->policy) == 1 ? "" : "s",
	       policy_route_count(c->policy), policy_route_count(c->policy) == 1 ? "" : "s",
	       auth_users_count(c->users), auth_users_count(c->users) == 1 ? "" : "s",
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

static const char config_usage[] =
	"usage: tailfence config check [FLAGS] [FILE]\n"
	"       tailfence config check --env [FLAGS]\n"
	"       tailfence config show [--redact] [FLAGS]\n"
	"       tailfence config reference\n";

static const struct config_command config_check_command = {
	.name = "tailfence config check",
	.usage = "usage: tailfence config check [FLAGS] [FILE]",
	.about = "Builds the configuration the daemon would run with (FILE, else --config or\n"
		 "TAILFENCE_CONFIG, the environment and FLAGS) and prints a summary and the\n"
		 "rules in evaluation order. Exit 0 when it is valid, 1 with the first error.\n"
		 "With --env first: the container's variables (see docs/railway.md).",
	.max_positional = 1,
};

static const struct config_command config_show_command = {
	.name = "tailfence config show",
	.usage = "usage: tailfence config show [--redact] [FLAGS]",
	.about = "Prints the merged configuration (defaults, file, environment, flags) as a\n"
		 "config file that `tailfence config check` accepts and that means the same:\n"
		 "rules in evaluation order, the audit sinks really written to. The users'\n"
		 "password hashes are printed as the file holds them.",
	.options = "  --redact                  replace the password hashes with \"<redacted>\"\n"
		   "                            (the output then no longer loads)\n",
};

static const struct config_command config_env_command = {
	.name = "tailfence config check --env",
	.usage = "usage: tailfence config check --env [FLAGS]",
	.about = "Checks the container's variables (TAILSCALE_*, TAILFENCE_*) the way the\n"
		 "Railway entrypoint uses them, then the configuration they make with FLAGS.\n"
		 "Prints the normalised variables as NAME=VALUE lines; exit 78 with the\n"
		 "variable, the value and the fix.",
};

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
	struct config_args *args;
	int rc = config_args_parse_cmd(argc, argv, &config_env_command, &args);
	if (rc != 0)
		return rc == 1 ? 0 : 2;
	if (!envcheck_run(real_env, NULL, &res, &e)) {
		fprintf(stderr, "tailfence: %s=\"%s\": %s\n  fix: %s\n", e.var, e.value, e.reason,
			e.fix);
		config_args_free(args);
		return EX_CONFIG;
	}
	/* The gateway reads these from the environment: give config_build the
	 * values the entrypoint will export. */
	static const char *const exported[] = { "TAILSCALE_ADVERTISE_ROUTES", "TAILFENCE_LISTEN",
						"TAILFENCE_UPSTREAM" };
	for (size_t i = 0; i < sizeof exported / sizeof exported[0]; i++)
		setenv(exported[i], envcheck_result_get(&res, exported[i]), 1);

	char err[1024];
	struct config *c = config_build(args, err, sizeof err);
	config_args_free(args);
	if (c && !config_check_files(c, err, sizeof err)) {
		config_unref(c);
		c = NULL;
	}
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

/* Removes a flag of our own from argv; true when it was there. */
static bool take_flag(int *argc, char **argv, const char *flag)
{
	bool found = false;
	int keep = 1;
	for (int i = 1; i < *argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			while (i < *argc)
				argv[keep++] = argv[i++];
			break;
		}
		if (strcmp(argv[i], flag) == 0)
			found = true;
		else
			argv[keep++] = argv[i];
	}
	*argc = keep;
	return found;
}

int config_cli_main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(config_usage, stderr);
		return 2;
	}
	const char *sub = argv[1];
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "help") == 0) {
		fputs(config_usage, stdout);
		return 0;
	}
	if (strcmp(sub, "reference") == 0) {
		config_print_reference(stdout);
		return 0;
	}
	bool show = strcmp(sub, "show") == 0;
	if (!show && strcmp(sub, "check") != 0) {
		fprintf(stderr, "tailfence config: unknown subcommand \"%s\"\n%s", sub, config_usage);
		return 2;
	}
	if (!show && argc >= 3 && strcmp(argv[2], "--env") == 0) {
		argv[2] = argv[1];	/* "check" stands in for the program name */
		return config_check_env(argc - 2, argv + 2);
	}
	argc--;
	argv++;
	bool redact = show && take_flag(&argc, argv, "--redact");
	struct config_args *args;
	int rc = config_args_parse_cmd(argc, argv, show ? &config_show_command
						       : &config_check_command, &args);
	if (rc == 1)
		return 0;
	if (rc != 0)
		return 2;
	if (!show && config_args_npositional(args) == 1)
		config_args_set_file(args, config_args_positional(args, 0));
	char err[1024];
	struct config *c = config_build(args, err, sizeof err);
	if (c && !show && !config_check_files(c, err, sizeof err)) {
		config_unref(c);
		c = NULL;
	}
	if (!c) {
		fprintf(stderr, "tailfence: %s\n", err);
		config_args_free(args);
		return 1;
	}
	if (show) {
		char *text = config_show_json(c, redact);
		printf("%s\n", text ? text : "{}");
		free(text);
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
