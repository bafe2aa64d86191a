/*
 * whois: who a tailnet address is, asked of tailscaled's LocalAPI
 * (GET /localapi/v0/whois?addr=IP:PORT; read permission suffices).
 *
 * tailscaled answers with apitype.WhoIsResponse: the node (its MagicDNS
 * name, stable id, tags, addresses, host name), the user profile (login
 * name, display name) and the peer capabilities granted to it (CapMap).
 * Groups are not in it: tailscaled never learns who is in which group.
 *
 * Two layers: a pure parser of the answer (unit tests and fuzzers feed it
 * bytes), and one request on the event loop through localapi.c.
 */
#ifndef TAILFENCE_WHOIS_H
#define TAILFENCE_WHOIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tailfence/cidr.h"

struct event_base;

#define WHOIS_MAX_TAGS 32
#define WHOIS_MAX_CAPS 32

/* One tailnet identity. Every string is NUL-terminated and was valid,
 * bounded text in the answer (a longer one is an error, never cut: a cut
 * name could match a rule the whole one would not). */
struct whois_identity {
	char node[256];		/* MagicDNS name without the trailing dot ("laptop.example.ts.net") */
	char node_short[64];	/* ComputedName, else the first label of node ("laptop") */
	char host_name[256];	/* Hostinfo.Hostname, "" if absent */
	char node_id[64];	/* StableID */
	char user[256];		/* UserProfile.LoginName ("alice@example.com") */
	char display[256];	/* UserProfile.DisplayName */
	char tags[WHOIS_MAX_TAGS][64];	/* "tag:ops", in the answer's order */
	size_t n_tags;
	char caps[WHOIS_MAX_CAPS][128];	/* CapMap keys ("example.com/cap/db") */
	size_t n_caps;
};

/* Parses a whois answer body. false with a sentence in why when it is not
 * a WhoIsResponse this code can trust (not JSON, no node, no login name,
 * a value of the wrong type or too long, too many tags or capabilities). */
bool whois_parse(const char *body, size_t len, struct whois_identity *id, char *why,
		 size_t whylen);

/* The query string value for addr:port ("100.64.0.1%3A443",
 * "%5Bfd7a%3A%3A1%5D%3A443"). */
void whois_addr_param(const struct cidr_addr *a, uint16_t port, char *buf, size_t len);

/* id is valid during the call only; error NULL means id is set. */
typedef void (*whois_cb)(void *arg, const struct whois_identity *id, const char *error);

struct whois_req;

/* Asks the tailscaled at sock_path who addr:port is. cb is called once,
 * never from inside this function, with the identity or with one line
 * saying why not ("tailscaled knows no node at 100.64.0.9", "cannot
 * reach tailscaled at PATH: ...", ...). NULL on allocation failure. */
struct whois_req *whois_query(struct event_base *base, const char *sock_path,
			      const struct cidr_addr *addr, uint16_t port, unsigned timeout_ms,
			      whois_cb cb, void *arg);

/* Abandons a query; cb is not called. */
void whois_cancel(struct whois_req *q);

#endif
