/*
 * inbound_config: the inbound listeners' configuration, parsed, validated
 * and compiled; and the pure decision on a tailnet identity.
 *
 * An inbound entry is one container service exposed to the tailnet through
 * `tailscale serve --tcp PORT --proxy-protocol N tcp://LISTEN`: a loopback
 * listener, the target service (host:port, resolved and pinned like any
 * destination, dialed directly), the PROXY protocol version expected, and
 * identity rules (user:, tag:, node:, cap:, *), first match wins, implicit
 * deny. Entries come from the config file's "inbound" list, or, for the
 * simple case, from TAILFENCE_INBOUND / --inbound ("PORT=HOST:PORT,...")
 * with identity rules from a policy file (TAILFENCE_INBOUND_POLICY /
 * --inbound-policy); a higher source replaces the whole list.
 *
 * config.c calls inbound_config_build() once per build; the result hangs
 * off struct config and is as immutable as the rest of it.
 */
#ifndef TAILFENCE_INBOUND_CONFIG_H
#define TAILFENCE_INBOUND_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "tailfence/cidr.h"

struct cJSON;
struct policy;
struct whois_identity;

/* Where env and flag entries listen unless told: this address, the port
 * counting up from here (127.0.0.1 is refused, see docs/config.md). */
#define INBOUND_DEFAULT_LISTEN "127.0.0.2:17100"

enum inbound_id_kind {
	INBOUND_ID_ANY,		/* "*": any node tailscaled can name */
	INBOUND_ID_USER,	/* "user:LOGIN": an untagged node of that user */
	INBOUND_ID_TAG,		/* "tag:NAME": a node carrying that tag */
	INBOUND_ID_NODE,	/* "node:NAME": by MagicDNS name, short name or host name */
	INBOUND_ID_CAP,		/* "cap:NAME": a peer capability the tailnet policy grants */
};

struct inbound_id {
	enum inbound_id_kind kind;
	char *value;		/* after the colon; NULL for ANY */
};

struct inbound_rule {
	bool accept;
	bool named;		/* text is the name the file gave */
	char *text;		/* its name, else "accept user:a, tag:b" */
	struct inbound_id *ids;
	size_t n_ids;
};

/* Who may connect to the listener. */
enum inbound_peer_check {
	INBOUND_PEER_TAILSCALED,	/* only tailscaled's own process (the default) */
	INBOUND_PEER_LOOPBACK,		/* any local process (when the check cannot run) */
};

struct inbound_entry {
	char *name;			/* "db"; for env and flag entries the tailnet port */
	uint16_t port;			/* the tailnet port served; 0 when not said */
	struct sockaddr_storage listen;
	socklen_t listen_len;
	struct cidr_addr listen_addr;
	uint16_t listen_port;
	char listen_text[64];		/* "127.0.0.2:17100" */
	char target[300];		/* as written: "db.railway.internal:5432" */
	char target_host[256];		/* name or canonical address literal */
	uint16_t target_port;
	unsigned proxy_versions;	/* PROXYPROTO_V1 or PROXYPROTO_V2 */
	enum inbound_peer_check peer_check;
	struct inbound_rule *rules;
	size_t n_rules;
	/* The target's guards and one accept rule for it (via direct). */
	struct policy *policy;
	char origin[600];		/* "FILE: inbound[0]", "TAILFENCE_INBOUND: entry \"...\"" */
};

struct inbound_config {
	struct inbound_entry *v;
	size_t n;
};

/* Everything inbound_config_build reads. Strings are borrowed. */
struct inbound_sources {
	const char *file_name;		/* for messages */
	const struct cJSON *file;	/* the file's "inbound" value, or NULL */
	const char *env;		/* TAILFENCE_INBOUND */
	const char *env_policy;		/* TAILFENCE_INBOUND_POLICY */
	const char *env_listen;		/* TAILFENCE_INBOUND_LISTEN */
	const char *const *flags;	/* --inbound, each "PORT=HOST:PORT[,...]" */
	size_t n_flags;
	const char *flag_policy;	/* --inbound-policy */
	const char *flag_listen;	/* --inbound-listen */
	const char *env_peer_check;	/* TAILFENCE_INBOUND_PEER_CHECK */
	const char *flag_peer_check;	/* --inbound-peer-check */
	const char *tailscaled_socket;	/* NULL: none configured */
	bool has_upstream;		/* the upstream proxy's address, for its guard */
	struct cidr_addr upstream_addr;
	uint16_t upstream_port;
	const struct cidr_prefix *own_routes;	/* this node's advertised routes */
	size_t n_own_routes;
};

/* Builds the inbound configuration (n == 0 when none is configured).
 * NULL with "KEY PATH: \"VALUE\": REASON" in err on any error. */
struct inbound_config *inbound_config_build(const struct inbound_sources *s, char *err,
					    size_t errlen);

void inbound_config_free(struct inbound_config *c);

/* The listeners are bound at start: true when b listens where a does, in
 * the same order; else false with "inbound: A -> B" in why. */
bool inbound_config_same_bound(const struct inbound_config *a, const struct inbound_config *b,
			       char *why, size_t whylen);

/* Adds "inbound": [...] (every entry as compiled) to the effective config. */
void inbound_config_effective(const struct inbound_config *c, struct cJSON *eff);

/* The listen address of the i-th TAILFENCE_INBOUND / --inbound entry (from
 * 0) for base "ADDR:PORT": the same address, the port plus i, as
 * "127.0.0.2:17101" / "[::1]:17101". false with the reason in why. Pure. */
bool inbound_simple_listen(const char *base, size_t i, char *out, size_t len, char *why,
			   size_t whylen);

/* Parses one identity ("user:alice@example.com", "tag:ops", "node:laptop",
 * "cap:example.com/cap/db", "*"). false with the reason in why. Pure. */
bool inbound_id_parse(const char *s, struct inbound_id *out, char *why, size_t whylen);

/* Does the identity match? Pure. */
bool inbound_id_match(const struct inbound_id *m, const struct whois_identity *id);

struct inbound_verdict {
	bool allow;
	int rule;			/* deciding rule, or -1 (implicit deny) */
	const char *rule_text;		/* its text, or NULL */
	char reason[512];		/* one line for people */
};

/* The entry's rules on one identity: first match wins, implicit deny. Pure. */
void inbound_decide(const struct inbound_entry *e, const struct whois_identity *id,
		    struct inbound_verdict *v);

/* "alice@example.com (laptop.example.ts.net, tag:ops)": who, for reasons. */
void inbound_who(const struct whois_identity *id, char *buf, size_t len);

#endif
