/*
 * policy_dst: the destination grammar of a rule. One dst entry, in the
 * shape of a Tailscale ACL destination, is HOST:PORTS where HOST is a
 * prefix or address ("10.0.0.0/24", "[fd00::/64]", a bare IPv6 address
 * for every port), a DNS name, "*.DOMAIN", "*", or one of the aliases
 * routes, peers and tailnet; PORTS is "*", N, N-M or a comma list of them.
 * Parsed into a struct dst (policy_internal.h), and formatted back to the
 * canonical text that `config show` and the decisions print.
 *
 * Called by the builder in policy.c (policy_builder_add_rule parses every
 * entry and keeps its canonical text), and through policy_dst_check and
 * policy_dst_covers_all by the configuration, which checks entries and
 * the default-route opt-in before it builds anything. Pure.
 */
#include "policy_internal.h"

#include "tailfence/hostname.h"
#include "tailfence/log.h"
#include "tailfence/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PORTS: "*", "N", "N-M", comma lists thereof. */
static bool parse_ports(const char *s, size_t len, struct port_range **out, size_t *n_out,
			char *reason, size_t rlen)
{
	struct port_range *v = NULL;
	size_t n = 0, cap = 0;

	*out = NULL;
	*n_out = 0;
	if (len == 0) {
		snprintf(reason, rlen, "has an empty port list; expected *, N, N-M or a comma list");
		return false;
	}
	if (len == 1 && s[0] == '*') {
		v = malloc(sizeof *v);
		if (!v)
			return false;
		v->lo = 1;
		v->hi = 65535;
		*out = v;
		*n_out = 1;
		return true;
	}
	size_t i = 0;
	while (i <= len) {
		size_t j = i;
		while (j < len && s[j] != ',')
			j++;
		/* one item s[i..j) */
		unsigned long lohi[2] = { 0, 0 };
		int part = 0;
		size_t k = i;
		if (k == j) {
			snprintf(reason, rlen, "has an empty item in its port list");
			goto fail;
		}
		for (;;) {
			size_t start = k;
			unsigned long val = 0;
			while (k < j && s[k] >= '0' && s[k] <= '9') {
				if (val <= 65535)
					val = val * 10 + (unsigned)(s[k] - '0');
				k++;
			}
			if (k == start) {
				snprintf(reason, rlen,
					 "has a bad port list; expected *, N, N-M or a comma list of them");
				goto fail;
			}
			if (s[start] == '0' && k - start > 1) {
				snprintf(reason, rlen, "has a port with a leading zero");
				goto fail;
			}
			if (val < 1 || val > 65535) {
				snprintf(reason, rlen, "has port %.*s; ports are 1 to 65535",
					 (int)(k - start > 10 ? 10 : k - start), s + start);
				goto fail;
			}
			lohi[part] = val;
			if (k < j && s[k] == '-' && part == 0) {
				part = 1;
				k++;
				continue;
			}
			break;
		}
		if (k != j) {
			snprintf(reason, rlen,
				 "has a bad port list; expected *, N, N-M or a comma list of them");
			goto fail;
		}
		if (part == 0)
			lohi[1] = lohi[0];
		if (lohi[0] > lohi[1]) {
			snprintf(reason, rlen, "has port range %lu-%lu whose start is after its end",
				 lohi[0], lohi[1]);
			goto fail;
		}
		if (!policy_grow((void **)&v, &cap, n + 1, sizeof *v))
			goto fail;
		v[n].lo = (uint16_t)lohi[0];
		v[n].hi = (uint16_t)lohi[1];
		n++;
		i = j + 1;
	}
	*out = v;
	*n_out = n;
	return true;
fail:
	free(v);
	return false;
}

static bool looks_numeric(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
			return false;
	return true;
}

bool policy_dst_parse(const char *s, struct dst *d, char *reason, size_t rlen)
{
	size_t len = strlen(s);
	const char *host = s;
	size_t hlen = len;
	const char *ports = NULL;
	size_t plen = 0;
	bool bracket = false;

	memset(d, 0, sizeof *d);
	if (len == 0) {
		snprintf(reason, rlen, "is empty; expected HOST:PORTS such as 10.0.0.0/24:443");
		return false;
	}
	if (s[0] == '[') {
		const char *rb = memchr(s, ']', len);
		if (!rb) {
			snprintf(reason, rlen, "has \"[\" without \"]\"");
			return false;
		}
		host = s + 1;
		hlen = (size_t)(rb - host);
		bracket = true;
		if ((size_t)(rb - s) + 1 < len) {
			if (rb[1] != ':') {
				snprintf(reason, rlen, "has unexpected characters after \"]\"; expected :PORTS");
				return false;
			}
			ports = rb + 2;
			plen = len - (size_t)(ports - s);
		}
	} else {
		const char *slash = memchr(s, '/', len);
		const char *colon = NULL;
		if (slash) {
			colon = memchr(slash, ':', len - (size_t)(slash - s));
		} else {
			size_t ncolon = 0;
			for (size_t i = 0; i < len; i++)
				if (s[i] == ':')
					ncolon++;
			if (ncolon == 1) {
				colon = memchr(s, ':', len);
			} else if (ncolon >= 2) {
				struct cidr_addr a;
				if (cidr_addr_parsen(s, len, &a)) {
					colon = NULL;	/* a bare IPv6 address: every port */
				} else {
					const char *last = strrchr(s, ':');
					if (cidr_addr_parsen(s, (size_t)(last - s), &a))
						snprintf(reason, rlen,
							 "is ambiguous; write an IPv6 address with ports as [%.*s]:%s",
							 (int)(last - s > 46 ? 46 : last - s), s, last + 1);
					else
						snprintf(reason, rlen,
							 "is not HOST:PORTS; IPv6 addresses with ports go in brackets ([fd00::1]:443)");
					return false;
				}
			}
		}
		if (colon) {
			hlen = (size_t)(colon - s);
			ports = colon + 1;
			plen = len - hlen - 1;
		}
	}

	if (ports) {
		if (!parse_ports(ports, plen, &d->ports, &d->n_ports, reason, rlen))
			return false;
	} else {
		if (!parse_ports("*", 1, &d->ports, &d->n_ports, reason, rlen))
			return false;
	}

	if (hlen == 0) {
		snprintf(reason, rlen, "has an empty host; expected a prefix, a name, *.DOMAIN, "
			 "tailnet, peers or routes");
		goto fail;
	}
	static const struct {
		const char *name;
		enum dst_kind kind;
	} aliases[] = { { "routes", DST_ROUTES }, { "peers", DST_PEERS }, { "tailnet", DST_TAILNET } };
	for (size_t i = 0; !bracket && i < sizeof aliases / sizeof aliases[0]; i++) {
		if (hlen == strlen(aliases[i].name) && memcmp(host, aliases[i].name, hlen) == 0) {
			d->kind = aliases[i].kind;
			return true;
		}
	}
	if (!bracket && hlen == 1 && host[0] == '*') {
		d->kind = DST_ANY;
		return true;
	}
	if (!bracket && hlen >= 2 && host[0] == '*' && host[1] == '.') {
		if (hostname_problem(host + 2, hlen - 2)) {
			snprintf(reason, rlen, "is not a valid *.DOMAIN pattern");
			goto fail;
		}
		d->kind = DST_WILDCARD;
		goto name;
	}
	if (bracket || memchr(host, '/', hlen) || memchr(host, ':', hlen) ||
	    looks_numeric(host, hlen)) {
		char r2[160];
		if (!cidr_prefix_parse_reason(host, hlen, &d->prefix, r2, sizeof r2)) {
			snprintf(reason, rlen, "%s", r2);
			goto fail;
		}
		if (bracket && d->prefix.addr.family != AF_INET6 &&
		    memchr(host, ':', hlen) == NULL) {
			snprintf(reason, rlen, "has an IPv4 prefix in brackets; brackets are for IPv6");
			goto fail;
		}
		d->kind = DST_PREFIX;
		return true;
	}
	if (hostname_problem(host, hlen)) {
		snprintf(reason, rlen,
			 "is not a valid host; expected a prefix, a DNS name, *.DOMAIN, tailnet, "
			 "peers or routes");
		goto fail;
	}
	d->kind = DST_HOST;
name:
	{
		const char *h = d->kind == DST_WILDCARD ? host + 2 : host;
		size_t n = d->kind == DST_WILDCARD ? hlen - 2 : hlen;
		if (n && h[n - 1] == '.')
			n--;
		d->host = malloc(n + 1);
		if (!d->host)
			goto fail;
		for (size_t i = 0; i < n; i++)
			d->host[i] = text_lower(h[i]);
		d->host[n] = '\0';
	}
	return true;
fail:
	free(d->ports);
	d->ports = NULL;
	return false;
}

void policy_dst_free(struct dst *d)
{
	free(d->ports);
	free(d->host);
}

bool policy_dst_check(const char *entry, char *err, size_t errlen)
{
	struct dst d;
	char reason[200], q[256];
	if (policy_dst_parse(entry, &d, reason, sizeof reason)) {
		policy_dst_free(&d);
		return true;
	}
	log_quote(entry, strlen(entry), 80, q, sizeof q);
	snprintf(err, errlen, "\"%s\": %s", q, reason);
	return false;
}

bool policy_dst_covers_all(const char *entry)
{
	struct dst d;
	char reason[200];
	if (!policy_dst_parse(entry, &d, reason, sizeof reason))
		return false;
	bool all = d.kind == DST_ANY ||
		   (d.kind == DST_PREFIX && cidr_prefix_is_default(&d.prefix));
	policy_dst_free(&d);
	return all;
}

static void format_ports(const struct dst *d, char *buf, size_t len)
{
	size_t j = 0;
	buf[0] = '\0';
	if (d->n_ports == 1 && d->ports[0].lo == 1 && d->ports[0].hi == 65535) {
		snprintf(buf, len, "*");
		return;
	}
	for (size_t i = 0; i < d->n_ports && j < len; i++) {
		if (d->ports[i].lo == d->ports[i].hi)
			j += (size_t)snprintf(buf + j, len - j, "%s%u", i ? "," : "", d->ports[i].lo);
		else
			j += (size_t)snprintf(buf + j, len - j, "%s%u-%u", i ? "," : "",
					      d->ports[i].lo, d->ports[i].hi);
	}
}

void policy_dst_format(const struct dst *d, char *buf, size_t len)
{
	char ports[128], pf[CIDR_PREFIX_STRLEN];
	format_ports(d, ports, sizeof ports);
	switch (d->kind) {
	case DST_PREFIX:
		cidr_prefix_format(&d->prefix, pf, sizeof pf);
		if (d->prefix.addr.family == AF_INET6)
			snprintf(buf, len, "[%s]:%s", pf, ports);
		else
			snprintf(buf, len, "%s:%s", pf, ports);
		break;
	case DST_ANY:
		snprintf(buf, len, "*:%s", ports);
		break;
	case DST_ROUTES:
		snprintf(buf, len, "routes:%s", ports);
		break;
	case DST_PEERS:
		snprintf(buf, len, "peers:%s", ports);
		break;
	case DST_TAILNET:
		snprintf(buf, len, "tailnet:%s", ports);
		break;
	case DST_HOST:
		snprintf(buf, len, "%s:%s", d->host, ports);
		break;
	case DST_WILDCARD:
		snprintf(buf, len, "*.%s:%s", d->host, ports);
		break;
	}
}
