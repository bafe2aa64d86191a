/*
 * resolve: one request object in front of three resolvers (the tailnet
 * view, tailscaled's dns-query, evdns_getaddrinfo).
 *
 * evdns may answer inside evdns_getaddrinfo() (hosts file, cache) and calls
 * back with EVUTIL_EAI_CANCEL after a cancel; the request object absorbs
 * both so the caller sees exactly one callback, always from the loop.
 */
#include "tailfence/resolve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "tailfence/metrics.h"
#include "tailfence/tailnet_watch.h"

struct resolve_req {
	struct evdns_getaddrinfo_request *inflight;
	struct tailnet_dns *tsquery;
	struct event *deliver;		/* defers a result that came inline */
	resolve_cb cb;
	void *arg;
	bool cancelled;
	bool answered;
	uint64_t started_us;
	struct resolve_result res;
	char error_text[320];
};

struct evdns_base *resolve_new_base(struct event_base *base, const struct config *cfg,
				    char *err, size_t errlen)
{
	struct evdns_base *dns = evdns_base_new(base, 0);
	if (!dns) {
		snprintf(err, errlen, "cannot create the DNS resolver");
		return NULL;
	}
	if (cfg->n_dns_servers == 0) {
		/* Missing or empty resolv.conf is not fatal: names then fail. */
		evdns_base_resolv_conf_parse(dns, DNS_OPTIONS_ALL, "/etc/resolv.conf");
	} else {
		for (size_t i = 0; i < cfg->n_dns_servers; i++) {
			if (evdns_base_nameserver_ip_add(dns, cfg->dns_servers[i]) != 0) {
				snprintf(err, errlen, "dns.servers: \"%s\" is not IP[:PORT]",
					 cfg->dns_servers[i]);
				evdns_base_free(dns, 0);
				return NULL;
			}
		}
	}
	/* A hosts file answers before any nameserver (the system's unless
	 * another is configured). */
	if (cfg->hosts_file)
		evdns_base_load_hosts(dns, cfg->hosts_file);
	else if (cfg->n_dns_servers > 0)
		evdns_base_load_hosts(dns, "/etc/hosts");
	char timeout[32];
	snprintf(timeout, sizeof timeout, "%.3f",
		 (cfg->dns_timeout_ms ? cfg->dns_timeout_ms : 5000) / 1000.0 / 2);
	evdns_base_set_option(dns, "timeout:", timeout);
	evdns_base_set_option(dns, "attempts:", "2");
	/* Names go out as asked: no search-list guessing. */
	evdns_base_search_clear(dns);
	return dns;
}

const char *resolve_source_str(enum resolve_source s)
{
	switch (s) {
	case RESOLVE_SYSTEM: return "dns";
	case RESOLVE_MAGICDNS: return "magicdns";
	case RESOLVE_TAILSCALED: return "tailscaled";
	}
	return "?";
}

static void resolve_add(struct resolve_req *req, const struct cidr_addr *a)
{
	for (size_t i = 0; i < req->res.n; i++)
		if (cidr_addr_equal(&req->res.addrs[i], a))
			return;
	if (req->res.n < RESOLVE_MAX_ADDRS)
		req->res.addrs[req->res.n++] = *a;
}

static void resolve_deliver_now(struct resolve_req *req)
{
	struct timeval zero = { 0, 0 };
	req->answered = true;
	evtimer_add(req->deliver, &zero);
}

static void resolve_deliver_cb(evutil_socket_t fd, short what, void *arg)
{
	struct resolve_req *req = arg;
	(void)fd;
	(void)what;
	resolve_cb cb = req->cb;
	void *cbarg = req->arg;
	struct resolve_result res = req->res;
	res.elapsed_us = metrics_now_us() - req->started_us;
	char text[sizeof req->error_text];
	if (res.error_text == req->error_text) {
		memcpy(text, req->error_text, sizeof text);
		res.error_text = text;
	}
	event_free(req->deliver);
	free(req);
	cb(cbarg, &res);
}

static void resolve_gai_cb(int result, struct evutil_addrinfo *ai, void *arg)
{
	struct resolve_req *req = arg;

	req->inflight = NULL;
	req->answered = true;
	if (req->cancelled || result == EVUTIL_EAI_CANCEL) {
		if (ai)
			evutil_freeaddrinfo(ai);
		if (req->cancelled) {
			event_free(req->deliver);
			free(req);
		}
		return;
	}
	req->res.error = result;
	if (result != 0)
		req->res.error_text = evutil_gai_strerror(result);
	for (struct evutil_addrinfo *p = ai; p && req->res.n < RESOLVE_MAX_ADDRS; p = p->ai_next) {
		struct cidr_addr a;
		if (cidr_addr_from_sockaddr(p->ai_addr, &a, NULL))
			resolve_add(req, &a);
	}
	if (ai)
		evutil_freeaddrinfo(ai);
	if (result == 0 && req->res.n == 0) {
		req->res.error = EVUTIL_EAI_NONAME;
		req->res.error_text = "no usable address";
	}
	resolve_deliver_now(req);
}

static void resolve_tailscaled_cb(void *arg, const struct cidr_addr *addrs, size_t n,
				  const char *error)
{
	struct resolve_req *req = arg;
	req->tsquery = NULL;
	if (error) {
		snprintf(req->error_text, sizeof req->error_text, "%s", error);
		req->res.error = EVUTIL_EAI_FAIL;
		req->res.error_text = req->error_text;
	}
	for (size_t i = 0; i < n; i++)
		resolve_add(req, &addrs[i]);
	resolve_deliver_now(req);
}

/* Tailnet names: answered from the view, or by tailscaled. True when the
 * name was one (the request is then under way). */
static bool resolve_tailnet(struct resolve_req *req, struct event_base *base,
			    const struct resolve_tailnet *tn, const char *name,
			    unsigned timeout_ms)
{
	const struct tailnet_view *v = tn ? tn->view : NULL;
	const struct tailnet_peer *peer;
	struct cidr_addr addrs[RESOLVE_MAX_ADDRS];
	bool in_suffix;
	if (!v)
		return false;
	size_t n = tailnet_view_resolve(v, name, addrs, RESOLVE_MAX_ADDRS, &peer, &in_suffix);
	if (n || in_suffix) {
		req->res.source = RESOLVE_MAGICDNS;
		for (size_t i = 0; i < n; i++)
			resolve_add(req, &addrs[i]);
		if (!n) {
			/* Never ask the system about the tailnet's own names. */
			snprintf(req->error_text, sizeof req->error_text,
				 "no node of the tailnet is named %s", name);
			req->res.error = EVUTIL_EAI_NONAME;
			req->res.error_text = req->error_text;
		}
		resolve_deliver_now(req);
		return true;
	}
	if (!tn->socket || !tailnet_view_split_dns(v, name))
		return false;
	req->res.source = RESOLVE_TAILSCALED;
	req->tsquery = tailnet_dns_query(base, tn->socket, name, timeout_ms,
					 resolve_tailscaled_cb, req);
	if (!req->tsquery) {
		req->res.error = EVUTIL_EAI_MEMORY;
		req->res.error_text = "out of memory";
		resolve_deliver_now(req);
	}
	return true;
}

struct resolve_req *resolve_start(struct event_base *base, struct evdns_base *dns,
				  const struct resolve_tailnet *tn, const char *name,
				  unsigned timeout_ms, resolve_cb cb, void *arg)
{
	struct resolve_req *req = calloc(1, sizeof *req);
	if (!req)
		return NULL;
	req->cb = cb;
	req->arg = arg;
	req->started_us = metrics_now_us();
	req->deliver = evtimer_new(base, resolve_deliver_cb, req);
	if (!req->deliver) {
		free(req);
		return NULL;
	}
	if (resolve_tailnet(req, base, tn, name, timeout_ms))
		return req;
	struct evutil_addrinfo hints;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	/* "db.internal." and "db.internal" are one name; the hosts file and
	 * the resolver only know the second spelling. */
	char bare[256];
	size_t len = strlen(name);
	if (len > 1 && len < sizeof bare && name[len - 1] == '.') {
		memcpy(bare, name, len - 1);
		bare[len - 1] = '\0';
		name = bare;
	}
	struct evdns_getaddrinfo_request *r =
		evdns_getaddrinfo(dns, name, NULL, &hints, resolve_gai_cb, req);
	if (!req->answered)
		req->inflight = r;
	return req;
}

void resolve_cancel(struct resolve_req *req)
{
	if (!req)
		return;
	if (req->inflight) {
		/* The callback runs (now or later) with EVUTIL_EAI_CANCEL and
		 * frees the request. */
		req->cancelled = true;
		evdns_getaddrinfo_cancel(req->inflight);
		return;
	}
	/* Answered already (only the deferred delivery is pending), or a
	 * query to tailscaled that is simply dropped. */
	tailnet_dns_cancel(req->tsquery);
	event_free(req->deliver);
	free(req);
}
