/*
 * cli: entry points of the subcommands, dispatched by main.c.
 * Each takes argv with argv[0] = the subcommand name and returns the exit
 * status.
 */
#ifndef TAILFENCE_CLI_H
#define TAILFENCE_CLI_H

/* tailfence [run] [FLAGS]: the gateway (gateway.c). */
int gateway_main(int argc, char **argv);

/* tailfence audit [verify|summary|tail|report] ... (audit_cli.c). */
int audit_cli_main(int argc, char **argv);

/* tailfence check [--user U] [--src ADDR] HOST:PORT (policy_cli.c).
 * Exit 0 allow, 1 deny, 2 error. */
int policy_cli_check(int argc, char **argv);

/* tailfence config check [FILE] | config show (policy_cli.c). */
int policy_cli_config(int argc, char **argv);

/* tailfence status [--json] [FLAGS]: the tailnet as the fence sees it
 * (status_cli.c). Exit 0 running, 1 not, 2 error. */
int status_cli_main(int argc, char **argv);

/* tailfence passwd: reads a password, prints its KDF hash (policy_cli.c). */
int policy_cli_passwd(int argc, char **argv);

#endif
