/*
 * tailnet_watch: keeps a live view of the tailnet from tailscaled's
 * LocalAPI, and asks tailscaled's resolver for split-DNS names.
 *
 * It subscribes to watch-ipn-bus (state, prefs and peer changes) and, after
 * each notification (coalesced), fetches status, prefs and dns-config and
 * builds a new view; a slow periodic refresh catches what the bus does not
 * announce (DNS settings). When tailscaled cannot be reached, or the
 * stream ends, the view becomes UNKNOWN at once (fail closed) and the
 * watcher reconnects with backoff. An answer that does not parse keeps the
 * old view and is reported. Everything runs on the caller's event loop.
 */
#ifndef TAILFENCE_TAILNET_WATCH_H
#define TAILFENCE_TAILNET_WATCH_H

#include <stddef.h>

#include "tailfence/cidr.h"
#include "tailfence/tailnet.h"

struct event_base;
struct tailnet_watch;

/* A new view replaced old (both valid during the call), or, with error
 * set and next == old, an answer could not be used and old stays. */
typedef void (*tailnet_watch_cb)(void *arg, const struct tailnet_view *old,
				 const struct tailnet_view *next, const char *error);

/* Starts watching the tailscaled at sock_path. The first view is UNKNOWN
 * until tailscaled answers. NULL on allocation failure. */
struct tailnet_watch *tailnet_watch_start(struct event_base *base, const char *sock_path,
					  const struct tailnet_options *opt,
					  tailnet_watch_cb cb, void *arg);

/* The current view (never NULL). Borrowed: tailnet_view_ref() it to keep
 * it past the current callback. */
struct tailnet_view *tailnet_watch_view(const struct tailnet_watch *w);

const char *tailnet_watch_socket(const struct tailnet_watch *w);

/* Stops, cancels every request in flight, frees. */
void tailnet_watch_free(struct tailnet_watch *w);

/* For the command line: one blocking fetch of status, prefs and dns-config
 * into a view, as the watcher builds them. Never NULL but on allocation
 * failure: when tailscaled cannot be asked, or answers what does not
 * parse, the view is UNKNOWN with the reason. */
struct tailnet_view *tailnet_view_fetch(const char *sock_path,
					const struct tailnet_options *opt);

/* ---- tailscaled's resolver (GET /localapi/v0/dns-query) ---- */

/* At most this many addresses per answer. */
#define TAILNET_DNS_MAX_ADDRS 16

/* error NULL: addrs[0..n) (A answers first, then AAAA); else a sentence. */
typedef void (*tailnet_dns_cb)(void *arg, const struct cidr_addr *addrs, size_t n,
			       const char *error);

struct tailnet_dns;

/* Asks tailscaled for the A and AAAA records of name (a validated host
 * name). cb is called once, never from inside this function. */
struct tailnet_dns *tailnet_dns_query(struct event_base *base, const char *sock_path,
				      const char *name, unsigned timeout_ms,
				      tailnet_dns_cb cb, void *arg);

/* Abandons a query; cb is not called. */
void tailnet_dns_cancel(struct tailnet_dns *q);

/* Parses a dns-query answer body ({"Bytes": base64 DNS message, ...}) for
 * records of qtype (1 = A, 28 = AAAA). Pure. Returns false with a
 * sentence in why when the body or the message is malformed; an
 * NXDOMAIN or empty answer is true with *n = 0 and *rcode set. */
bool tailnet_dns_parse(const char *body, size_t len, unsigned qtype, struct cidr_addr *out,
		       size_t max, size_t *n, int *rcode, char *why, size_t whylen);

#endif
