/*
 * config: flags > environment > file > embedded defaults, merged and
 * validated into one immutable, reference-counted struct config.
 *
 * The gateway holds one config; each connection takes a reference to the
 * config that was current when it was accepted, so a reload (SIGHUP) that
 * builds a new config never changes the policy of an open connection.
 * Errors name the key path (or flag, or variable), the value and what was
 * expected.
 */
#ifndef TAILFENCE_CONFIG_H
#define TAILFENCE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "tailfence/audit.h"
#include "tailfence/cidr.h"

struct inbound_config;
struct auth_users;
struct policy;

struct config_listener {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[64];		/* "127.0.0.1:1080", "[::1]:1080" */
	bool loopback;
};

enum config_upstream_kind {
	CONFIG_UPSTREAM_SOCKS5,		/* socks5://HOST:PORT (tailscaled --socks5-server) */
	CONFIG_UPSTREAM_HTTP,		/* http://HOST:PORT (tailscaled --outbound-http-proxy-listen) */
	CONFIG_UPSTREAM_DIRECT,		/* kernel-mode tailscale: dial the address itself */
};

struct config_upstream {
	enum config_upstream_kind kind;
	struct cidr_addr addr;		/* not for DIRECT */
	uint16_t port;
	char text[128];			/* canonical: "socks5://127.0.0.1:1055", "direct" */
};

struct config {
	unsigned refs;

	struct config_listener *listeners;
	size_t n_listeners;
	struct config_upstream upstream;
	struct policy *policy;		/* owned */
	/* The users and their hashes, and the cache of logins verified
	 * (the one mutable part, thread-safe): never NULL once built. */
	struct auth_users *users;

	/* tailscaled's LocalAPI socket; NULL: no live tailnet view, the
	 * tailnet aliases are the static routes. */
	char *tailscaled_socket;
	/* The exit node's /0 may be carried (live), a /0 route or --allow
	 * may allow everything (static). */
	bool allow_default_route;
	/* Close open relays to what the tailnet stopped carrying. */
	bool close_revoked;
	/* TAILSCALE_ADVERTISE_ROUTES and the file's routes. Static: the
	 * routes alias. Live: this node's own routes, which the tailnet does
	 * not carry for it; kept to warn about them. */
	struct cidr_prefix *static_routes;
	size_t n_static_routes;
	struct audit_config audit;	/* owned strings */

	/* Limits; times in milliseconds. */
	unsigned handshake_timeout_ms;	/* first byte to complete request: 10 s */
	unsigned connect_timeout_ms;	/* upstream dial incl. its handshake: 10 s */
	unsigned dns_timeout_ms;	/* 5 s */
	unsigned idle_timeout_ms;	/* relay without traffic either way: 15 min */
	unsigned shutdown_grace_ms;	/* relays may finish after SIGTERM: 10 s */
	size_t max_head_bytes;		/* HTTP request head: 16 KiB */
	size_t max_connections;		/* concurrent: 4096 */
	unsigned threads;		/* event loops; 0: one per CPU */
	size_t buffer_bytes;		/* per direction high watermark: 256 KiB */
	bool relay_splice;		/* splice(2) once nothing is buffered: true */

	/* The admin endpoint (/metrics, /healthz, /readyz): off by default. */
	bool has_admin;
	struct config_listener admin;

	/* SOCKS5 UDP ASSOCIATE: served (true) under the same policy, with
	 * these limits per association. */
	bool udp;
	size_t udp_destinations;	/* distinct destinations: 64 */
	size_t udp_rate;		/* datagrams per second, both ways: 1000 */
	unsigned udp_idle_timeout_ms;	/* no datagram either way: 2 min */

	/* DNS: nameservers "IP[:PORT]" (empty: /etc/resolv.conf) and whether
	 * /etc/hosts is read. */
	char **dns_servers;
	size_t n_dns_servers;
	char *hosts_file;		/* NULL: system default */

	bool force_public_listen;	/* listeners off loopback without users */

	/* Inbound listeners (tailscale serve with a PROXY header in front):
	 * never NULL once built; n == 0 when none is configured. */
	struct inbound_config *inbound;

	int log_level;			/* enum log_level */
	char *source;			/* config file path, or NULL */
	struct cJSON *shown;		/* the merged config as a file would hold it */
};

/* Command-line flags as given, kept so that a reload can rebuild the config
 * with the same flags. Opaque. */
struct config_args;

/* A command that takes the daemon's flags: what its --help says. */
struct config_command {
	const char *name;	/* "tailfence check", for "Try '... --help'" */
	const char *usage;	/* "usage: tailfence check [FLAGS] HOST:PORT" */
	const char *about;	/* what it does; may be NULL */
	const char *options;	/* its own flags, as --help lines; may be NULL */
	bool check;		/* also accepts --user and --src */
	bool daemon;		/* the daemon itself */
	size_t max_positional;	/* arguments after the flags */
};

/* Parses a command's flags (argv[0] is the command). Returns 0 and sets
 * *out; 1 after printing --help or --version to stdout (exit 0); 2 after
 * printing an error and a usage hint to stderr (exit 2). */
int config_args_parse_cmd(int argc, char **argv, const struct config_command *cmd,
			  struct config_args **out);
/* The daemon's flags. */
int config_args_parse(int argc, char **argv, struct config_args **out);
void config_args_free(struct config_args *args);

/* What a build reads besides the flags: the file's text and the
 * environment, so that a build can run on given bytes (the fuzzer, tests). */
struct config_input {
	const char *file_name;		/* NULL: no config file */
	const char *file_text;
	size_t file_len;
	const char *(*getenv)(void *arg, const char *name);	/* NULL: no variables */
	void *env_arg;
	bool own_addresses;		/* this host's addresses join the guard "self" */
};

/* Merges the embedded defaults, the file, the environment and the flags
 * (args may be NULL), checks them together and compiles the policy. NULL
 * with a message in err on any error. */
struct config *config_build_from(const struct config_input *in, const struct config_args *args,
				 char *err, size_t errlen);

/* config_build_from with the file named by --config or TAILFENCE_CONFIG,
 * the process environment and this host's addresses. */
struct config *config_build(const struct config_args *args, char *err, size_t errlen);

/* Opens, without changing anything, what the daemon opens at start: the
 * HMAC key (readable, 16 to 4095 bytes), every audit file (writable, or
 * its directory, to create it) and the hosts file (readable), as the
 * calling user. False with "audit.hmac_key_file: ..." style text in err. */
bool config_check_files(const struct config *c, char *err, size_t errlen);

/* The merged config as JSON that `config check` accepts and that means the
 * same; with redact, the users' hashes are replaced. Free the text. */
char *config_show_json(const struct config *c, bool redact);

/* The settings table as Markdown (docs/config.md). */
void config_print_reference(FILE *f);
const char *config_args_user(const struct config_args *a);
const char *config_args_src(const struct config_args *a);
size_t config_args_npositional(const struct config_args *a);
const char *config_args_positional(const struct config_args *a, size_t i);
/* Overrides --config / TAILFENCE_CONFIG (config check FILE). */
void config_args_set_file(struct config_args *a, const char *path);

/* "250ms", "10s", "15m", "1h" or a number of seconds; at most 7 days. */
bool config_parse_duration(const char *s, unsigned *ms_out);

/* Parses JSON with comments and trailing commas (the config file syntax);
 * returns a cJSON object (cJSON_Delete it) or NULL with "NAME: line L,
 * column C: ..." in err. */
struct cJSON;
struct cJSON *config_parse_json(const char *name, const char *text, size_t len, char *err,
				size_t errlen);

/* Settings bound at start (listeners, the admin address, DNS servers and
 * hosts file, audit sinks and key) that a reload cannot change: true when next keeps them
 * as cur has them; else false with "listen: 0.0.0.0:1080 -> 127.0.0.1:1080"
 * style text in why. */
bool config_same_bound(const struct config *cur, const struct config *next, char *why,
		       size_t whylen);

struct config *config_ref(struct config *c);
void config_unref(struct config *c);

#endif
