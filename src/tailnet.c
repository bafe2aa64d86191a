/*
 * tailnet: building, querying and comparing views of what the tailnet
 * carries, from tailscaled's LocalAPI JSON. Pure.
 *
 * The carried set mirrors tailscaled's own WireGuard configuration
 * (wgengine/wgcfg/nmcfg): for every peer that is not expired, its Tailscale
 * addresses; its subnet routes only when this node accepts routes; /0 only
 * for the selected exit node, and here only with the opt-in. Routes come
 * from the peer's AllowedIPs (what WireGuard is given), or PrimaryRoutes
 * when a status has no AllowedIPs.
 */
#include "tailfence/tailnet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tailfence/text.h"

/* ------------------------------------------------------------------ */
/* reference counting and freeing */

static void tailnet_peer_clear(struct tailnet_peer *p)
{
	free(p->id);
	free(p->name);
	free(p->host_name);
	free(p->addrs);
	free(p->routes);
	free(p->offered);
}

static void tailnet_view_free(struct tailnet_view *v)
{
	for (size_t i = 0; i < v->n_peers; i++)
		tailnet_peer_clear(&v->peers[i]);
	free(v->peers);
	for (size_t i = 0; i < v->n_split_domains; i++)
		free(v->split_domains[i]);
	free(v->split_domains);
	free(v->reason);
	free(v->backend_state);
	free(v->self_name);
	free(v->self_addrs);
	free(v->magicdns_suffix);
	free(v->entries);
	free(v->hosts);
	free(v->subnets);
	free(v);
}

struct tailnet_view *tailnet_view_ref(struct tailnet_view *v)
{
	if (v)
		__atomic_add_fetch(&v->refs, 1, __ATOMIC_RELAXED);
	return v;
}

void tailnet_view_unref(struct tailnet_view *v)
{
	if (v && __atomic_sub_fetch(&v->refs, 1, __ATOMIC_ACQ_REL) == 0)
		tailnet_view_free(v);
}

struct tailnet_view *tailnet_view_empty(enum tailnet_state state, const char *reason)
{
	struct tailnet_view *v = calloc(1, sizeof *v);
	if (!v)
		return NULL;
	v->refs = 1;
	v->state = state;
	if (reason && !(v->reason = strdup(reason))) {
		free(v);
		return NULL;
	}
	return v;
}

const char *tailnet_state_str(enum tailnet_state s)
{
	switch (s) {
	case TAILNET_OFF: return "off";
	case TAILNET_UNKNOWN: return "unknown";
	case TAILNET_STOPPED: return "stopped";
	case TAILNET_RUNNING: return "running";
	}
	return "?";
}

const char *tailnet_carry_str(enum tailnet_carry k)
{
	switch (k) {
	case TAILNET_CARRY_ADDRESS: return "address";
	case TAILNET_CARRY_ROUTE: return "route";
	case TAILNET_CARRY_EXIT: return "exit";
	}
	return "?";
}

/* ------------------------------------------------------------------ */
/* building */

struct tailnet_build {
	struct tailnet_view *v;
	const struct tailnet_options *opt;
	char *err;
	size_t errlen;
};

static bool tailnet_fail(struct tailnet_build *b, const char *fmt, const char *a,
			 const char *c)
{
	snprintf(b->err, b->errlen, fmt, a, c);
	return false;
}

/* Lower case, one trailing dot dropped; NULL for an empty result. */
static char *tailnet_name_dup(const char *s)
{
	size_t n = strlen(s);
	if (n && s[n - 1] == '.')
		n--;
	if (n == 0)
		return NULL;
	char *d = malloc(n + 1);
	if (!d)
		return NULL;
	for (size_t i = 0; i < n; i++)
		d[i] = text_lower(s[i]);
	d[n] = '\0';
	return d;
}

static const char *tailnet_string(const cJSON *obj, const char *key)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
	return cJSON_IsString(it) && it->valuestring ? it->valuestring : NULL;
}

static bool tailnet_bool(const cJSON *obj, const char *key)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, key));
}

/* An optional array of address strings into a malloc'd array. */
static bool tailnet_addrs(struct tailnet_build *b, const cJSON *obj, const char *key,
			  const char *where, struct cidr_addr **out, size_t *n)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, key);
	*out = NULL;
	*n = 0;
	if (!arr || cJSON_IsNull(arr))
		return true;
	if (!cJSON_IsArray(arr))
		return tailnet_fail(b, "status: %s.%s is not a list", where, key);
	size_t cnt = (size_t)cJSON_GetArraySize(arr);
	if (cnt == 0)
		return true;
	if (!(*out = calloc(cnt, sizeof **out)))
		return tailnet_fail(b, "%s%s", "out of memory", "");
	for (const cJSON *e = arr->child; e; e = e->next) {
		if (!cJSON_IsString(e) || !cidr_addr_parse(e->valuestring, &(*out)[*n]))
			return tailnet_fail(b, "status: %s: \"%s\" is not an address", where,
					    cJSON_IsString(e) ? e->valuestring : "(not a string)");
		(*n)++;
	}
	return true;
}

/* An optional array of prefix strings. */
static bool tailnet_prefixes(struct tailnet_build *b, const cJSON *obj, const char *key,
			     const char *where, struct cidr_prefix **out, size_t *n)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, key);
	*out = NULL;
	*n = 0;
	if (!arr || cJSON_IsNull(arr))
		return true;
	if (!cJSON_IsArray(arr))
		return tailnet_fail(b, "status: %s.%s is not a list", where, key);
	size_t cnt = (size_t)cJSON_GetArraySize(arr);
	if (cnt == 0)
		return true;
	if (!(*out = calloc(cnt, sizeof **out)))
		return tailnet_fail(b, "%s%s", "out of memory", "");
	for (const cJSON *e = arr->child; e; e = e->next) {
		char why[160];
		if (!cJSON_IsString(e) ||
		    !cidr_prefix_parse(e->valuestring, strlen(e->valuestring), &(*out)[*n], why,
				       sizeof why))
			return tailnet_fail(b, "status: %s: \"%s\" is not a prefix", where,
					    cJSON_IsString(e) ? e->valuestring : "(not a string)");
		(*n)++;
	}
	return true;
}

static bool tailnet_addr_in(const struct cidr_addr *v, size_t n, const struct cidr_addr *a)
{
	for (size_t i = 0; i < n; i++)
		if (cidr_addr_equal(&v[i], a))
			return true;
	return false;
}

/* Splits a peer's AllowedIPs the way tailscaled builds WireGuard's: its
 * own addresses are always carried, /0 only for the selected exit node,
 * anything else is a subnet route, carried only when this node accepts
 * routes. */
static bool tailnet_peer_routes(struct tailnet_build *b, struct tailnet_peer *p,
				struct cidr_prefix *allowed, size_t n_allowed)
{
	bool route_all = b->v->route_all;
	p->routes = calloc(n_allowed ? n_allowed : 1, sizeof *p->routes);
	p->offered = calloc(n_allowed ? n_allowed : 1, sizeof *p->offered);
	if (!p->routes || !p->offered)
		return tailnet_fail(b, "%s%s", "out of memory", "");
	for (size_t i = 0; i < n_allowed; i++) {
		const struct cidr_prefix *pf = &allowed[i];
		bool host = pf->bits == (pf->addr.family == AF_INET ? 32 : 128);
		if (host && tailnet_addr_in(p->addrs, p->n_addrs, &pf->addr))
			continue;	/* one of its own addresses */
		if (pf->bits == 0) {
			if (p->exit_node && b->opt && b->opt->allow_exit_node)
				p->routes[p->n_routes++] = *pf;
			else if (p->exit_node)
				p->offered[p->n_offered++] = *pf;
			continue;
		}
		if (route_all)
			p->routes[p->n_routes++] = *pf;
		else
			p->offered[p->n_offered++] = *pf;
	}
	return true;
}

static bool tailnet_peer(struct tailnet_build *b, const cJSON *ps, struct tailnet_peer *p)
{
	const char *where = ps->string ? ps->string : "Peer";
	if (!cJSON_IsObject(ps))
		return tailnet_fail(b, "status: Peer %s is not an object%s", where, "");
	const char *id = tailnet_string(ps, "ID");
	const char *dns = tailnet_string(ps, "DNSName");
	const char *host = tailnet_string(ps, "HostName");
	p->id = strdup(id ? id : "");
	p->host_name = strdup(host ? host : "");
	p->name = dns ? tailnet_name_dup(dns) : NULL;
	if (!p->name)
		p->name = tailnet_name_dup(host && host[0] ? host : (id && id[0] ? id : where));
	if (!p->id || !p->host_name || !p->name)
		return tailnet_fail(b, "%s%s", "out of memory", "");
	p->online = tailnet_bool(ps, "Online");
	p->exit_node = tailnet_bool(ps, "ExitNode");
	if (!tailnet_addrs(b, ps, "TailscaleIPs", where, &p->addrs, &p->n_addrs))
		return false;

	struct cidr_prefix *allowed = NULL;
	size_t n_allowed = 0;
	const char *key = cJSON_GetObjectItemCaseSensitive(ps, "AllowedIPs") ? "AllowedIPs"
										: "PrimaryRoutes";
	bool ok = tailnet_prefixes(b, ps, key, where, &allowed, &n_allowed) &&
		  tailnet_peer_routes(b, p, allowed, n_allowed);
	free(allowed);
	return ok;
}

static int tailnet_peer_cmp(const void *a, const void *b)
{
	const struct tailnet_peer *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : strcmp(x->id, y->id);
}

static int tailnet_addr_cmp(const struct cidr_addr *a, const struct cidr_addr *b)
{
	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	return memcmp(a->b, b->b, a->family == AF_INET ? 4 : 16);
}

static int tailnet_entry_cmp(const void *a, const void *b)
{
	const struct tailnet_entry *x = a, *y = b;
	int c = tailnet_addr_cmp(&x->prefix.addr, &y->prefix.addr);
	if (c)
		return c;
	return x->prefix.bits < y->prefix.bits ? -1 : x->prefix.bits > y->prefix.bits;
}

static bool tailnet_peers(struct tailnet_build *b, const cJSON *status)
{
	const cJSON *peers = cJSON_GetObjectItemCaseSensitive(status, "Peer");
	struct tailnet_view *v = b->v;
	if (!peers || cJSON_IsNull(peers))
		return true;
	if (!cJSON_IsObject(peers))
		return tailnet_fail(b, "status: Peer is not an object%s%s", "", "");
	size_t cnt = (size_t)cJSON_GetArraySize(peers);
	if (cnt == 0)
		return true;
	if (!(v->peers = calloc(cnt, sizeof *v->peers)))
		return tailnet_fail(b, "%s%s", "out of memory", "");
	for (const cJSON *ps = peers->child; ps; ps = ps->next) {
		if (tailnet_bool(ps, "Expired"))
			continue;	/* tailscaled gives expired peers no route */
		struct tailnet_peer *p = &v->peers[v->n_peers++];
		if (!tailnet_peer(b, ps, p))
			return false;
	}
	qsort(v->peers, v->n_peers, sizeof *v->peers, tailnet_peer_cmp);
	return true;
}

static bool tailnet_self(struct tailnet_build *b, const cJSON *status)
{
	struct tailnet_view *v = b->v;
	const char *bs = tailnet_string(status, "BackendState");
	if (!bs)
		return tailnet_fail(b, "status: BackendState is missing%s%s", "", "");
	if (!(v->backend_state = strdup(bs)))
		return tailnet_fail(b, "%s%s", "out of memory", "");
	const cJSON *self = cJSON_GetObjectItemCaseSensitive(status, "Self");
	if (self && !cJSON_IsNull(self) && !cJSON_IsObject(self))
		return tailnet_fail(b, "status: Self is not an object%s%s", "", "");
	const char *dns = self ? tailnet_string(self, "DNSName") : NULL;
	if (dns)
		v->self_name = tailnet_name_dup(dns);
	if (!tailnet_addrs(b, status, "TailscaleIPs", "status", &v->self_addrs, &v->n_self_addrs))
		return false;
	const char *suffix = tailnet_string(status, "MagicDNSSuffix");
	const cJSON *cur = cJSON_GetObjectItemCaseSensitive(status, "CurrentTailnet");
	if ((!suffix || !suffix[0]) && cJSON_IsObject(cur))
		suffix = tailnet_string(cur, "MagicDNSSuffix");
	if (suffix && suffix[0])
		v->magicdns_suffix = tailnet_name_dup(suffix[0] == '.' ? suffix + 1 : suffix);
	return true;
}

static int tailnet_str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* dns-config's Routes: name suffixes that tailscaled's resolver answers
 * (split DNS with resolvers of their own, or its built-in records). */
static bool tailnet_dns(struct tailnet_build *b, const cJSON *dns)
{
	struct tailnet_view *v = b->v;
	if (!cJSON_IsObject(dns))
		return tailnet_fail(b, "dns-config: not an object%s%s", "", "");
	const cJSON *routes = cJSON_GetObjectItemCaseSensitive(dns, "Routes");
	if (!routes || cJSON_IsNull(routes))
		return true;
	if (!cJSON_IsObject(routes))
		return tailnet_fail(b, "dns-config: Routes is not an object%s%s", "", "");
	size_t cnt = (size_t)cJSON_GetArraySize(routes);
	if (cnt == 0)
		return true;
	if (!(v->split_domains = calloc(cnt, sizeof *v->split_domains)))
		return tailnet_fail(b, "%s%s", "out of memory", "");
	for (const cJSON *r = routes->child; r; r = r->next) {
		char *d = r->string ? tailnet_name_dup(r->string) : NULL;
		size_t n = d ? strlen(d) : 0;
		/* Reverse zones (MagicDNS's 100.100.in-addr.arpa and the like)
		 * never hold a name a client asks to reach. */
		if (d && ((n >= 13 && strcmp(d + n - 13, ".in-addr.arpa") == 0) ||
			  (n >= 9 && strcmp(d + n - 9, ".ip6.arpa") == 0))) {
			free(d);
			continue;
		}
		if (d)
			v->split_domains[v->n_split_domains++] = d;
	}
	qsort(v->split_domains, v->n_split_domains, sizeof *v->split_domains, tailnet_str_cmp);
	return true;
}

static bool tailnet_index(struct tailnet_build *b)
{
	struct tailnet_view *v = b->v;
	size_t n = 0;
	for (size_t i = 0; i < v->n_peers; i++)
		n += v->peers[i].n_addrs + v->peers[i].n_routes;
	v->entries = calloc(n ? n : 1, sizeof *v->entries);
	v->hosts = calloc(n ? n : 1, sizeof *v->hosts);
	v->subnets = calloc(n ? n : 1, sizeof *v->subnets);
	if (!v->entries || !v->hosts || !v->subnets)
		return tailnet_fail(b, "%s%s", "out of memory", "");
	for (size_t i = 0; i < v->n_peers; i++) {
		const struct tailnet_peer *p = &v->peers[i];
		for (size_t j = 0; j < p->n_addrs; j++) {
			struct tailnet_entry *e = &v->entries[v->n_entries++];
			e->prefix.addr = p->addrs[j];
			e->prefix.bits = p->addrs[j].family == AF_INET ? 32 : 128;
			e->peer = (uint32_t)i;
			e->kind = TAILNET_CARRY_ADDRESS;
		}
		for (size_t j = 0; j < p->n_routes; j++) {
			struct tailnet_entry *e = &v->entries[v->n_entries++];
			e->prefix = p->routes[j];
			e->peer = (uint32_t)i;
			e->kind = p->routes[j].bits ? TAILNET_CARRY_ROUTE : TAILNET_CARRY_EXIT;
		}
	}
	qsort(v->entries, v->n_entries, sizeof *v->entries, tailnet_entry_cmp);
	/* Host prefixes stay in address order; the rest, longest first. A
	 * peer's address sorts before an equal host route of another peer,
	 * since addresses were added first and qsort keeps no order: break
	 * the tie by kind. */
	for (size_t i = 0; i < v->n_entries; i++) {
		const struct tailnet_entry *e = &v->entries[i];
		bool host = e->prefix.bits == (e->prefix.addr.family == AF_INET ? 32 : 128);
		if (host)
			v->hosts[v->n_hosts++] = (uint32_t)i;
	}
	for (unsigned bits = 128; bits-- > 0;)
		for (size_t i = 0; i < v->n_entries; i++) {
			const struct tailnet_entry *e = &v->entries[i];
			unsigned max = e->prefix.addr.family == AF_INET ? 32 : 128;
			if (e->prefix.bits == bits && bits < max)
				v->subnets[v->n_subnets++] = (uint32_t)i;
		}
	return true;
}

static cJSON *tailnet_parse(struct tailnet_build *b, const char *what, const char *text,
			    size_t len)
{
	const char *end = NULL;
	cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, false);
	if (!j) {
		char off[32];
		snprintf(off, sizeof off, "%zu", end && end >= text ? (size_t)(end - text) : 0);
		tailnet_fail(b, "%s: not valid JSON (near byte %s)", what, off);
		return NULL;
	}
	if (!cJSON_IsObject(j)) {
		cJSON_Delete(j);
		tailnet_fail(b, "%s: %s", what, "not a JSON object");
		return NULL;
	}
	return j;
}

struct tailnet_view *tailnet_view_build(const char *status, size_t status_len,
					const char *prefs, size_t prefs_len,
					const char *dns, size_t dns_len,
					const struct tailnet_options *opt, char *err,
					size_t errlen)
{
	struct tailnet_build b = { .opt = opt, .err = err, .errlen = errlen };
	cJSON *js = NULL, *jp = NULL, *jd = NULL;
	if (!(b.v = tailnet_view_empty(TAILNET_RUNNING, NULL))) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	bool ok = (js = tailnet_parse(&b, "status", status, status_len)) &&
		  (jp = tailnet_parse(&b, "prefs", prefs, prefs_len));
	if (ok) {
		const cJSON *ra = cJSON_GetObjectItemCaseSensitive(jp, "RouteAll");
		if (ra && !cJSON_IsBool(ra))
			ok = tailnet_fail(&b, "prefs: RouteAll is not a boolean%s%s", "", "");
		b.v->route_all = cJSON_IsTrue(ra);
	}
	if (ok && dns)
		ok = (jd = tailnet_parse(&b, "dns-config", dns, dns_len)) && tailnet_dns(&b, jd);
	ok = ok && tailnet_self(&b, js) && tailnet_peers(&b, js) && tailnet_index(&b);
	cJSON_Delete(js);
	cJSON_Delete(jp);
	cJSON_Delete(jd);
	if (!ok) {
		tailnet_view_free(b.v);
		return NULL;
	}
	if (strcmp(b.v->backend_state, "Running") != 0) {
		char why[160];
		snprintf(why, sizeof why, "tailscaled is not running (backend state %s)",
			 b.v->backend_state);
		b.v->state = TAILNET_STOPPED;
		if (!(b.v->reason = strdup(why))) {
			tailnet_view_free(b.v);
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
	}
	return b.v;
}

/* ------------------------------------------------------------------ */
/* queries */

const struct tailnet_entry *tailnet_view_lookup(const struct tailnet_view *v,
						const struct cidr_addr *a)
{
	if (!v || v->state != TAILNET_RUNNING)
		return NULL;
	size_t lo = 0, hi = v->n_hosts;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct tailnet_entry *e = &v->entries[v->hosts[mid]];
		int c = tailnet_addr_cmp(&e->prefix.addr, a);
		if (c == 0) {
			/* Several peers may list one host prefix; a peer's own
			 * address wins, as in tailscaled's PeerForIP. */
			for (size_t k = lo; k < hi; k++) {
				const struct tailnet_entry *f = &v->entries[v->hosts[k]];
				if (tailnet_addr_cmp(&f->prefix.addr, a) == 0 &&
				    f->kind == TAILNET_CARRY_ADDRESS)
					return f;
			}
			return e;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = 0; i < v->n_subnets; i++) {
		const struct tailnet_entry *e = &v->entries[v->subnets[i]];
		if (cidr_prefix_contains(&e->prefix, a))
			return e;
	}
	return NULL;
}

bool tailnet_view_is_self(const struct tailnet_view *v, const struct cidr_addr *a)
{
	return v && tailnet_addr_in(v->self_addrs, v->n_self_addrs, a);
}

/* name[0..n) equals s (already lower case)? */
static bool tailnet_name_eq(const char *name, size_t n, const char *s)
{
	return s && strlen(s) == n && text_ieq(name, s, n);
}

/* name[0..n) ends in "." + domain (or is domain itself when self_ok)? */
static bool tailnet_under(const char *name, size_t n, const char *domain, bool self_ok)
{
	size_t d = strlen(domain);
	if (n == d)
		return self_ok && text_ieq(name, domain, n);
	return n > d + 1 && name[n - d - 1] == '.' && text_ieq(name + n - d, domain, d);
}

static size_t tailnet_copy(const struct cidr_addr *src, size_t n, struct cidr_addr *out,
			   size_t max)
{
	size_t k = n < max ? n : max;
	memcpy(out, src, k * sizeof *out);
	return k;
}

size_t tailnet_view_resolve(const struct tailnet_view *v, const char *name,
			    struct cidr_addr *out, size_t max,
			    const struct tailnet_peer **peer, bool *in_suffix)
{
	size_t n = strlen(name);
	*peer = NULL;
	*in_suffix = false;
	if (!v || v->state != TAILNET_RUNNING)
		return 0;
	if (n && name[n - 1] == '.')
		n--;
	if (n == 0)
		return 0;
	bool dotted = memchr(name, '.', n) != NULL;
	for (size_t i = 0; i < v->n_peers; i++) {
		const struct tailnet_peer *p = &v->peers[i];
		size_t first = strcspn(p->name, ".");
		bool match = dotted ? tailnet_name_eq(name, n, p->name)
				    : (first == n && text_ieq(name, p->name, n) &&
				       p->name[first] == '.');
		if (match) {
			*peer = p;
			return tailnet_copy(p->addrs, p->n_addrs, out, max);
		}
	}
	if (v->self_name && (tailnet_name_eq(name, n, v->self_name) ||
			     (!dotted && strcspn(v->self_name, ".") == n &&
			      text_ieq(name, v->self_name, n))))
		return tailnet_copy(v->self_addrs, v->n_self_addrs, out, max);
	if (v->magicdns_suffix && tailnet_under(name, n, v->magicdns_suffix, true))
		*in_suffix = true;
	return 0;
}

bool tailnet_view_split_dns(const struct tailnet_view *v, const char *name)
{
	size_t n = strlen(name);
	if (!v || v->state != TAILNET_RUNNING)
		return false;
	if (n && name[n - 1] == '.')
		n--;
	for (size_t i = 0; i < v->n_split_domains; i++)
		if (tailnet_under(name, n, v->split_domains[i], true))
			return true;
	return false;
}

/* ------------------------------------------------------------------ */
/* diffs */

static bool tailnet_same_carrier(const struct tailnet_view *a, const struct tailnet_entry *x,
				 const struct tailnet_view *b, const struct tailnet_entry *y)
{
	return x->kind == y->kind &&
	       strcmp(a->peers[x->peer].id, b->peers[y->peer].id) == 0;
}

void tailnet_view_diff(const struct tailnet_view *old, const struct tailnet_view *next,
		       tailnet_diff_cb visit, void *arg)
{
	size_t no = old && old->state == TAILNET_RUNNING ? old->n_entries : 0;
	size_t nn = next && next->state == TAILNET_RUNNING ? next->n_entries : 0;
	size_t i = 0, j = 0;
	while (i < no || j < nn) {
		int c = i == no ? 1 : j == nn ? -1
			: tailnet_entry_cmp(&old->entries[i], &next->entries[j]);
		if (c == 0 && !tailnet_same_carrier(old, &old->entries[i], next, &next->entries[j])) {
			/* Same prefix, another peer or kind: a removal and an addition. */
			visit(arg, false, old, &old->entries[i++]);
			visit(arg, true, next, &next->entries[j++]);
		} else if (c == 0) {
			i++;
			j++;
		} else if (c < 0) {
			visit(arg, false, old, &old->entries[i++]);
		} else {
			visit(arg, true, next, &next->entries[j++]);
		}
	}
}
