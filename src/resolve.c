/*
 * resolve: one request object in front of three resolvers (the tailnet
 * view, tailscaled's dns-query, evdns_getaddrinfo), with a deadline per
 * lookup and bounds on lookups in flight.
 *
 * A request is told its result exactly once (from the loop, never inside
 * resolve_start) and is freed once nobody waits for it and evdns has
 * called back. evdns may answer inside evdns_getaddrinfo() (hosts file,
 * cache) and calls back with EVUTIL_EAI_CANCEL, synchronously, on a
 * cancel; both are absorbed here.
 */
#include "tailfence/resolve.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "tailfence/metrics.h"
#include "tailfence/tailnet_watch.h"

/* Per-client counts: open addressing over exact keys, room for twice the
 * most keys that can be live at once. */
#define RESOLVE_SLOTS (2 * RESOLVE_MAX_INFLIGHT)

struct resolve_slot {
	struct cidr_addr key;	/* family 0: free */
	unsigned count;
};

/* The lookups in flight, in total and per client: one set shared by
 * every loop's resolver, so the bounds hold for the daemon, not per loop. */
struct resolve_counts {
	pthread_mutex_t mu;
	atomic_uint refs;
	size_t inflight;
	struct resolve_slot slots[RESOLVE_SLOTS];
};

struct resolve_ctx {
	struct event_base *base;
	struct evdns_base *dns;
	struct resolve_counts *counts;
	size_t gai_pending;	/* lookups evdns still owes a callback */
};

struct resolve_req {
	struct resolve_ctx *ctx;
	struct evdns_getaddrinfo_request *inflight;
	bool gai_pending;		/* evdns still owes a callback */
	struct tailnet_dns *tsquery;
	struct event *deliver;		/* the result, from the loop */
	struct event *deadline;
	resolve_cb cb;			/* NULL once told, or cancelled */
	void *arg;
	struct cidr_addr key;		/* counted client, family 0: none */
	bool counted;
	unsigned timeout_ms;
	uint64_t started_us;
	struct resolve_result res;
	char error_text[320];
};

/* ---------- the resolver of a loop ---------- */

static struct evdns_base *resolve_evdns(struct event_base *base, const struct config *cfg,
					char *err, size_t errlen)
{
	struct evdns_base *dns = evdns_base_new(base, 0);
	if (!dns) {
		snprintf(err, errlen, "cannot create the DNS resolver");
		return NULL;
	}
	if (cfg->n_dns_servers == 0) {
		/* Missing or empty resolv.conf is not fatal: names then fail.
		 * The hosts file is the configured one, below. */
		evdns_base_resolv_conf_parse(dns, DNS_OPTIONS_ALL & ~DNS_OPTION_HOSTSFILE,
					     "/etc/resolv.conf");
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
	/* The hosts file (/etc/hosts unless configured, or none) answers
	 * before any nameserver. */
	if (cfg->hosts_file)
		evdns_base_load_hosts(dns, cfg->hosts_file);
	char timeout[32];
	snprintf(timeout, sizeof timeout, "%.3f",
		 (cfg->dns_timeout_ms ? cfg->dns_timeout_ms : 5000) / 1000.0 / 2);
	evdns_base_set_option(dns, "timeout:", timeout);
	evdns_base_set_option(dns, "attempts:", "2");
	/* Our own bound on lookups in flight (each is an A and an AAAA
	 * request) stays within evdns's, so evdns never queues a lookup
	 * behind others: its queue has no timer. */
	char inflight[16];
	snprintf(inflight, sizeof inflight, "%d", 2 * RESOLVE_MAX_INFLIGHT);
	evdns_base_set_option(dns, "max-inflight:", inflight);
	/* Names go out as asked: no search-list guessing. */
	evdns_base_search_clear(dns);
	return dns;
}

static void resolve_counts_unref(struct resolve_counts *c)
{
	if (c && atomic_fetch_sub(&c->refs, 1) == 1) {
		pthread_mutex_destroy(&c->mu);
		free(c);
	}
}

struct resolve_ctx *resolve_ctx_new(struct event_base *base, const struct config *cfg,
				    const struct resolve_ctx *share, char *err, size_t errlen)
{
	struct resolve_ctx *ctx = calloc(1, sizeof *ctx);
	if (!ctx) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ctx->base = base;
	if (share) {
		ctx->counts = share->counts;
		atomic_fetch_add(&ctx->counts->refs, 1);
	} else if ((ctx->counts = calloc(1, sizeof *ctx->counts))) {
		pthread_mutex_init(&ctx->counts->mu, NULL);
		atomic_init(&ctx->counts->refs, 1);
	} else {
		free(ctx);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ctx->dns = resolve_evdns(base, cfg, err, errlen);
	if (!ctx->dns) {
		resolve_counts_unref(ctx->counts);
		free(ctx);
		return NULL;
	}
	return ctx;
}

void resolve_ctx_free(struct resolve_ctx *ctx)
{
	if (!ctx)
		return;
	/* A cancelled lookup hears back from evdns on the loop's next turn,
	 * and only then is it freed: let the last ones arrive (the loop has
	 * stopped, and nothing else is left on it to run). */
	for (int turns = 0; ctx->gai_pending > 0 && turns < 100; turns++)
		event_base_loop(ctx->base, EVLOOP_NONBLOCK);
	evdns_base_free(ctx->dns, 0);
	resolve_counts_unref(ctx->counts);
	free(ctx);
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

/* ---------- per-client counts ---------- */

/* The client's key: its /32, or /64 for IPv6 (one host has a /64). */
static struct cidr_addr resolve_key(const struct cidr_addr *a)
{
	struct cidr_addr k = *a;
	if (k.family == AF_INET6)
		memset(k.b + 8, 0, 8);
	return k;
}

static size_t resolve_hash(const struct cidr_addr *k)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < sizeof k->b; i++)
		h = (h ^ k->b[i]) * 16777619u;
	return h % RESOLVE_SLOTS;
}

/* The slot holding k, or the free slot where it would go. */
static struct resolve_slot *resolve_slot(struct resolve_counts *ctx, const struct cidr_addr *k)
{
	size_t i = resolve_hash(k);
	while (ctx->slots[i].key.family && !cidr_addr_equal(&ctx->slots[i].key, k))
		i = (i + 1) % RESOLVE_SLOTS;
	return &ctx->slots[i];
}

/* Removes a slot whose count fell to 0, shifting back the entries of its
 * probe run (no tombstones). */
static void resolve_slot_free(struct resolve_counts *ctx, struct resolve_slot *s)
{
	size_t i = (size_t)(s - ctx->slots);
	memset(s, 0, sizeof *s);
	for (size_t j = (i + 1) % RESOLVE_SLOTS; ctx->slots[j].key.family;
	     j = (j + 1) % RESOLVE_SLOTS) {
		size_t home = resolve_hash(&ctx->slots[j].key);
		/* j stays unless the hole at i lies between its home and j. */
		bool stays = i < j ? (home > i && home <= j) : (home > i || home <= j);
		if (!stays) {
			ctx->slots[i] = ctx->slots[j];
			memset(&ctx->slots[j], 0, sizeof ctx->slots[j]);
			i = j;
		}
	}
}

/* Counts the request in, or returns false with the reason in the result. */
static bool resolve_admit(struct resolve_req *req, const struct cidr_addr *client)
{
	struct resolve_counts *c = req->ctx->counts;
	bool ok = false;
	pthread_mutex_lock(&c->mu);
	if (c->inflight >= RESOLVE_MAX_INFLIGHT) {
		snprintf(req->error_text, sizeof req->error_text,
			 "too many name lookups in flight (%d); try again shortly",
			 RESOLVE_MAX_INFLIGHT);
		goto out;
	}
	if (client && client->family) {
		struct cidr_addr k = resolve_key(client);
		struct resolve_slot *s = resolve_slot(c, &k);
		if (s->count >= RESOLVE_MAX_PER_CLIENT) {
			snprintf(req->error_text, sizeof req->error_text,
				 "too many name lookups in flight from this client (%d); try again "
				 "shortly", RESOLVE_MAX_PER_CLIENT);
			goto out;
		}
		s->key = k;
		s->count++;
		req->key = k;
	}
	c->inflight++;
	req->counted = true;
	ok = true;
out:
	pthread_mutex_unlock(&c->mu);
	return ok;
}

static void resolve_release(struct resolve_req *req)
{
	if (!req->counted)
		return;
	struct resolve_counts *c = req->ctx->counts;
	req->counted = false;
	pthread_mutex_lock(&c->mu);
	c->inflight--;
	if (req->key.family) {
		struct resolve_slot *s = resolve_slot(c, &req->key);
		if (s->key.family && --s->count == 0)
			resolve_slot_free(c, s);
	}
	pthread_mutex_unlock(&c->mu);
}

/* ---------- one request ---------- */

static void resolve_add(struct resolve_req *req, const struct cidr_addr *a)
{
	for (size_t i = 0; i < req->res.n; i++)
		if (cidr_addr_equal(&req->res.addrs[i], a))
			return;
	if (req->res.n < RESOLVE_MAX_ADDRS)
		req->res.addrs[req->res.n++] = *a;
}

/* Frees the request once nobody waits for it and evdns has called back. */
static void resolve_maybe_free(struct resolve_req *req)
{
	if (req->cb || req->gai_pending)
		return;
	event_free(req->deliver);
	event_free(req->deadline);
	free(req);
}

/* Nobody waits any more: stops what is in flight and lets go (req may be
 * freed on return). */
static void resolve_drop(struct resolve_req *req)
{
	req->cb = NULL;
	resolve_release(req);
	event_del(req->deadline);
	event_del(req->deliver);
	tailnet_dns_cancel(req->tsquery);
	req->tsquery = NULL;
	if (req->gai_pending)
		evdns_getaddrinfo_cancel(req->inflight);	/* its callback frees req */
	else
		resolve_maybe_free(req);
}

/* Tells the caller, from the loop, and lets go of the request. */
static void resolve_tell(struct resolve_req *req)
{
	resolve_cb cb = req->cb;
	void *arg = req->arg;
	struct resolve_result res = req->res;
	res.elapsed_us = metrics_now_us() - req->started_us;
	char text[sizeof req->error_text];
	if (res.error_text == req->error_text) {
		memcpy(text, req->error_text, sizeof text);
		res.error_text = text;
	}
	resolve_drop(req);
	cb(arg, &res);
}

static void resolve_deliver_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	resolve_tell(arg);
}

static void resolve_deliver_soon(struct resolve_req *req)
{
	struct timeval zero = { 0, 0 };
	event_del(req->deadline);
	evtimer_add(req->deliver, &zero);
}

static void resolve_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct resolve_req *req = arg;
	(void)fd;
	(void)what;
	snprintf(req->error_text, sizeof req->error_text, "no answer within %u ms",
		 req->timeout_ms);
	req->res.error = EVUTIL_EAI_AGAIN;
	req->res.error_text = req->error_text;
	req->res.timed_out = true;
	req->res.n = 0;
	resolve_tell(req);
}

static void resolve_gai_cb(int result, struct evutil_addrinfo *ai, void *arg)
{
	struct resolve_req *req = arg;

	req->inflight = NULL;
	req->gai_pending = false;
	req->ctx->gai_pending--;
	if (!req->cb || result == EVUTIL_EAI_CANCEL) {
		if (ai)
			evutil_freeaddrinfo(ai);
		resolve_maybe_free(req);
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
	resolve_deliver_soon(req);
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
	resolve_deliver_soon(req);
}

/* Tailnet names: answered from the view, or by tailscaled. True when the
 * name was one (the request is then under way). */
static bool resolve_tailnet(struct resolve_req *req, const struct resolve_tailnet *tn,
			    const char *name)
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
		resolve_deliver_soon(req);
		return true;
	}
	if (!tn->socket || !tailnet_view_split_dns(v, name))
		return false;
	req->res.source = RESOLVE_TAILSCALED;
	req->tsquery = tailnet_dns_query(req->ctx->base, tn->socket, name, req->timeout_ms,
					 resolve_tailscaled_cb, req);
	if (!req->tsquery) {
		req->res.error = EVUTIL_EAI_MEMORY;
		req->res.error_text = "out of memory";
		resolve_deliver_soon(req);
	}
	return true;
}

static void resolve_system(struct resolve_req *req, const char *name)
{
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
	req->gai_pending = true;
	req->ctx->gai_pending++;
	struct evdns_getaddrinfo_request *r =
		evdns_getaddrinfo(req->ctx->dns, name, NULL, &hints, resolve_gai_cb, req);
	if (req->gai_pending)
		req->inflight = r;
}

struct resolve_req *resolve_start(struct resolve_ctx *ctx, const struct resolve_tailnet *tn,
				  const char *name, const struct cidr_addr *client,
				  unsigned timeout_ms, resolve_cb cb, void *arg)
{
	struct resolve_req *req = calloc(1, sizeof *req);
	if (!req)
		return NULL;
	req->ctx = ctx;
	req->cb = cb;
	req->arg = arg;
	req->started_us = metrics_now_us();
	req->timeout_ms = timeout_ms ? timeout_ms : 5000;
	req->deliver = evtimer_new(ctx->base, resolve_deliver_cb, req);
	req->deadline = evtimer_new(ctx->base, resolve_deadline_cb, req);
	if (!req->deliver || !req->deadline) {
		if (req->deliver)
			event_free(req->deliver);
		if (req->deadline)
			event_free(req->deadline);
		free(req);
		return NULL;
	}
	if (!resolve_admit(req, client)) {
		req->res.error = EVUTIL_EAI_AGAIN;
		req->res.error_text = req->error_text;
		req->res.busy = true;
		resolve_deliver_soon(req);
		return req;
	}
	struct timeval tv = { (time_t)(req->timeout_ms / 1000),
			      (suseconds_t)(req->timeout_ms % 1000) * 1000 };
	evtimer_add(req->deadline, &tv);
	if (!resolve_tailnet(req, tn, name))
		resolve_system(req, name);
	return req;
}

void resolve_cancel(struct resolve_req *req)
{
	if (req)
		resolve_drop(req);
}
