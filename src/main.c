/*
 * main: picks the subcommand and hands argv over. Nothing else lives here.
 */
#include <stdio.h>
#include <string.h>

#include "tailfence/cli.h"

static const char usage[] =
	"usage: tailfence [run] [FLAGS]          run the gateway (see tailfence --help)\n"
	"       tailfence check [FLAGS] HOST:PORT  would this destination be allowed?\n"
	"       tailfence status [--json] [FLAGS]  the tailnet as the fence follows it\n"
	"       tailfence config check [FILE]      validate a config file\n"
	"       tailfence config check --env [FLAGS]  validate the container's variables\n"
	"       tailfence config show [FLAGS]      print the merged config (loadable)\n"
	"       tailfence config reference         every setting: key, flag, variable\n"
	"       tailfence audit [verify|summary|tail|report] ...  review the audit trail\n"
	"       tailfence passwd                   hash a password for the config\n";

int main(int argc, char **argv)
{
	if (argc >= 2) {
		const char *cmd = argv[1];
		if (strcmp(cmd, "run") == 0)
			return gateway_main(argc - 1, argv + 1);
		if (strcmp(cmd, "check") == 0)
			return check_cli_main(argc - 1, argv + 1);
		if (strcmp(cmd, "status") == 0)
			return status_cli_main(argc - 1, argv + 1);
		if (strcmp(cmd, "config") == 0)
			return config_cli_main(argc - 1, argv + 1);
		if (strcmp(cmd, "audit") == 0)
			return audit_cli_main(argc - 1, argv + 1);
		if (strcmp(cmd, "passwd") == 0)
			return passwd_cli_main(argc - 1, argv + 1);
		if (strcmp(cmd, "help") == 0) {
			fputs(usage, stdout);
			return 0;
		}
		if (cmd[0] != '-') {
			fprintf(stderr, "tailfence: unknown command \"%s\"\n%s", cmd, usage);
			return 2;
		}
	}
	return gateway_main(argc, argv);
}
