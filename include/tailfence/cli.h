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

/* tailfence check [FLAGS] [--user NAME] [--src IP] HOST:PORT (check_cli.c).
 * Exit 0 allow, 1 deny, 2 error. */
int check_cli_main(int argc, char **argv);

/* tailfence config check [FILE] | check --env | show | reference
 * (config_cli.c). */
int config_cli_main(int argc, char **argv);

/* tailfence status [--json] [FLAGS]: the tailnet as the fence sees it
 * (status_cli.c). Exit 0 running, 1 not, 2 error. */
int status_cli_main(int argc, char **argv);

/* tailfence passwd: reads a password, prints its KDF hash (passwd_cli.c). */
int passwd_cli_main(int argc, char **argv);

#endif
