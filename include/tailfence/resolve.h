/*
 * resolve: asynchronous name resolution with libevent's evdns.
 *
 * Nothing here blocks the event loop. A lookup yields every address of the
 * name (IPv4 and IPv6, in the resolver's order, IPv4-mapped ones
 * normalised, duplicates dropped); the caller checks each one against the
 * policy and dials only those that pass.
 */
#ifndef TAILFENCE_RESOLVE_H
#define TAILFENCE_RESOLVE_H

#include <stddef.h>

#include "tailfence/cidr.h"
#include "tailfence/config.h"

struct event_base;
struct evdns_base;

#define RESOLVE_MAX_ADDRS 16

struct resolve_result {
	int error;			/* 0, or an EVUTIL_EAI_* code */
	const char *error_text;		/* when error != 0 */
	struct cidr_addr addrs[RESOLVE_MAX_ADDRS];
	size_t n;
};

/* Creates the resolver from the config's DNS settings (nameservers or
 * /etc/resolv.conf, hosts file, timeout). NULL with err set on failure. */
struct evdns_base *resolve_new_base(struct event_base *base, const struct config *cfg,
				    char *err, size_t errlen);

typedef void (*resolve_cb)(void *arg, const struct resolve_result *res);

struct resolve_req;

/* Starts a lookup. cb is called once, never from inside resolve_start().
 * Returns NULL on allocation failure. */
struct resolve_req *resolve_start(struct event_base *base, struct evdns_base *dns,
				  const char *name,
				  resolve_cb cb, void *arg);

/* Abandons a lookup; cb will not be called. */
void resolve_cancel(struct resolve_req *req);

#endif
