/*
 * inbound_config: the inbound entries, from the config file, the
 * environment or the flags, validated and compiled (see
 * include/tailfence/inbound_config.h); and the identity rules, decided
 * purely.
 *
 * Every error names where the value came from (the file's key path, the
 * variable, the flag), the value and what was expected, like config.c's.
 */
#include "tailfence/inbound_config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <ifaddrs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tailfence/config.h"
#include "tailfence/policy.h"
#include "tailfence/proxyproto.h"
#include "tailfence/target.h"
#include "tailfence/text.h"
#include "tailfence/whois.h"

/* A policy file holds a few rules; anything this big is not one. */
#define INBOUND_POLICY_MAX (1u << 20)

struct ictx {
	char *err;
	size_t errlen;
	bool failed;
};

__attribute__((format(printf, 2, 3)))
static bool fail(struct ictx *x, const char *fmt, ...)
{
	if (!x->failed) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(x->err, x->errlen, fmt, ap);
		va_end(ap);
		x->failed = true;
	}
	return false;
}

/* Quotes a value for a message: JSON-style escapes, at most 100 bytes. */
static const char *q(const char *s, char *buf, size_t len)
{
	size_t j = 0;
	for (size_t i = 0; s && s[i] && j + 8 < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (i >= 100) {
			j += (size_t)snprintf(buf + j, len - j, "...");
			break;
		}
		if (c == '"' || c == '\\')
			j += (size_t)snprintf(buf + j, len - j, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			j += (size_t)snprintf(buf + j, len - j, "\\u%04x", c);
		else
			buf[j++] = (char)c;
	}
	buf[j] = '\0';
	return buf;
}

static const char *type_name(const cJSON *v)
{
	if (cJSON_IsString(v)) return "a string";
	if (cJSON_IsNumber(v)) return "a number";
	if (cJSON_IsBool(v)) return "a boolean";
	if (cJSON_IsArray(v)) return "an array";
	if (cJSON_IsObject(v)) return "an object";
	return "null";
}

static bool check_keys(struct ictx *x, const char *path, const cJSON *obj,
		       const char *const *known)
{
	char b[256];
	for (const cJSON *it = obj->child; it; it = it->next) {
		bool ok = false;
		for (size_t i = 0; known[i]; i++)
			ok = ok || strcmp(it->string, known[i]) == 0;
		if (!ok) {
			char list[300] = "";
			size_t j = 0;
			for (size_t i = 0; known[i] && j < sizeof list; i++)
				j += (size_t)snprintf(list + j, sizeof list - j, "%s%s", i ? ", " : "",
						      known[i]);
			return fail(x, "%s: unknown key \"%s\"; expected one of %s", path,
				    q(it->string, b, sizeof b), list);
		}
		for (const cJSON *p = obj->child; p != it; p = p->next)
			if (strcmp(p->string, it->string) == 0)
				return fail(x, "%s: key \"%s\" appears twice", path,
					    q(it->string, b, sizeof b));
	}
	return true;
}

/* ------------------------------------------------------------- identities */

static bool tag_name_ok(const char *s)
{
	if (!text_is_alpha(s[0]))
		return false;
	for (; *s; s++)
		if (!text_is_alnum(*s) && *s != '-' && *s != '_')
			return false;
	return true;
}

static bool word_ok(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (text_is_ctl(s[i]) || s[i] == ' ' || s[i] == ',')
			return false;
	return true;
}

bool inbound_id_parse(const char *s, struct inbound_id *out, char *why, size_t whylen)
{
	memset(out, 0, sizeof *out);
	if (strcmp(s, "*") == 0) {
		out->kind = INBOUND_ID_ANY;
		return true;
	}
	const char *colon = strchr(s, ':');
	size_t kl = colon ? (size_t)(colon - s) : 0;
	const char *v = colon ? colon + 1 : "";
	if (colon && strchr(v, '*')) {
		snprintf(why, whylen, "identities are names, not patterns; \"*\" alone matches any "
			 "node");
		return false;
	}
	if (kl == 4 && strncmp(s, "user", 4) == 0) {
		if (!word_ok(v, 255)) {
			snprintf(why, whylen, "a user needs a login name of 1 to 255 bytes without "
				 "spaces or commas (user:alice@example.com)");
			return false;
		}
		out->kind = INBOUND_ID_USER;
	} else if (kl == 3 && strncmp(s, "tag", 3) == 0) {
		if (strlen(v) > 59 || !tag_name_ok(v)) {
			snprintf(why, whylen, "a tag is tag:NAME, NAME a letter then letters, "
				 "digits, dashes (tag:ops)");
			return false;
		}
		out->kind = INBOUND_ID_TAG;
	} else if (kl == 4 && strncmp(s, "node", 4) == 0) {
		bool ok = word_ok(v, 253);
		for (const char *p = v; ok && *p; p++)
			ok = text_is_alnum(*p) || *p == '-' || *p == '.' || *p == '_';
		if (!ok) {
			snprintf(why, whylen, "a node is node:NAME, its MagicDNS name, short name or "
				 "host name (node:laptop)");
			return false;
		}
		out->kind = INBOUND_ID_NODE;
	} else if (kl == 3 && strncmp(s, "cap", 3) == 0) {
		if (!word_ok(v, 127)) {
			snprintf(why, whylen, "a capability is cap:NAME, as granted in the tailnet "
				 "policy (cap:example.com/cap/db)");
			return false;
		}
		out->kind = INBOUND_ID_CAP;
	} else if ((kl == 5 && strncmp(s, "group", 5) == 0) ||
		   (kl == 9 && strncmp(s, "autogroup", 9) == 0)) {
		snprintf(why, whylen, "tailscaled's whois does not say which groups a user is in; "
			 "list the users (user:...), use a tag, or grant the group a capability "
			 "in the tailnet policy and match it with cap:NAME");
		return false;
	} else {
		snprintf(why, whylen, "expected user:LOGIN, tag:NAME, node:NAME, cap:NAME or *");
		return false;
	}
	out->value = strdup(v);
	if (!out->value) {
		snprintf(why, whylen, "out of memory");
		return false;
	}
	return true;
}

bool inbound_id_match(const struct inbound_id *m, const struct whois_identity *id)
{
	switch (m->kind) {
	case INBOUND_ID_ANY:
		return true;
	case INBOUND_ID_USER:
		/* A tagged node has no user identity (the tailnet's own rule:
		 * tags replace the user who tagged it). */
		return id->n_tags == 0 && strcasecmp(m->value, id->user) == 0;
	case INBOUND_ID_TAG:
		for (size_t i = 0; i < id->n_tags; i++)
			if (strcmp(id->tags[i] + 4, m->value) == 0)
				return true;
		return false;
	case INBOUND_ID_NODE:
		return strcasecmp(m->value, id->node) == 0 ||
		       strcasecmp(m->value, id->node_short) == 0 ||
		       (id->host_name[0] && strcasecmp(m->value, id->host_name) == 0);
	case INBOUND_ID_CAP:
		for (size_t i = 0; i < id->n_caps; i++)
			if (strcmp(id->caps[i], m->value) == 0)
				return true;
		return false;
	}
	return false;
}

void inbound_who(const struct whois_identity *id, char *buf, size_t len)
{
	size_t j = (size_t)snprintf(buf, len, "%s (%s", id->user, id->node);
	for (size_t i = 0; i < id->n_tags && j < len; i++)
		j += (size_t)snprintf(buf + j, len - j, ", %s", id->tags[i]);
	if (j < len)
		snprintf(buf + j, len - j, ")");
}

void inbound_decide(const struct inbound_entry *e, const struct whois_identity *id,
		    struct inbound_verdict *v)
{
	char who[400];
	inbound_who(id, who, sizeof who);
	memset(v, 0, sizeof *v);
	v->rule = -1;
	for (size_t i = 0; i < e->n_rules; i++) {
		const struct inbound_rule *r = &e->rules[i];
		for (size_t k = 0; k < r->n_ids; k++) {
			if (!inbound_id_match(&r->ids[k], id))
				continue;
			v->allow = r->accept;
			v->rule = (int)i;
			v->rule_text = r->text;
			snprintf(v->reason, sizeof v->reason, "inbound rule %zu (%.120s) %s %.200s for "
				 "%.63s", i, r->text, r->accept ? "accepts" : "denies", who, e->name);
			return;
		}
	}
	snprintf(v->reason, sizeof v->reason, "no inbound rule of %.63s accepts %.300s", e->name,
		 who);
}

static void id_free(struct inbound_id *id)
{
	free(id->value);
}

static void rule_free(struct inbound_rule *r)
{
	for (size_t i = 0; i < r->n_ids; i++)
		id_free(&r->ids[i]);
	free(r->ids);
	free(r->text);
}

/* One rule object: {"action": "accept"|"deny", "from": [...], "name": "..."}. */
static bool parse_rule(struct ictx *x, const char *path, const cJSON *o, struct inbound_rule *r)
{
	static const char *const keys[] = { "name", "action", "from", NULL };
	char b[256], why[300];
	memset(r, 0, sizeof *r);
	if (!cJSON_IsObject(o))
		return fail(x, "%s: is %s; expected a rule object {\"action\": \"accept\", "
			    "\"from\": [\"user:alice@example.com\"]}", path, type_name(o));
	if (!check_keys(x, path, o, keys))
		return false;
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "action");
	if (!a)
		return fail(x, "%s.action: is missing; expected accept or deny", path);
	if (!cJSON_IsString(a) || (strcmp(a->valuestring, "accept") != 0 &&
				   strcmp(a->valuestring, "deny") != 0))
		return fail(x, "%s.action: \"%s\" is not valid; expected accept or deny", path,
			    cJSON_IsString(a) ? q(a->valuestring, b, sizeof b) : type_name(a));
	r->accept = strcmp(a->valuestring, "accept") == 0;
	const cJSON *from = cJSON_GetObjectItemCaseSensitive(o, "from");
	if (!from)
		return fail(x, "%s.from: is missing; expected a list like [\"user:alice@example.com\", "
			    "\"tag:ops\"]", path);
	if (cJSON_IsString(from)) {
		/* a single identity is accepted as a one-element list */
	} else if (!cJSON_IsArray(from) || !from->child) {
		return fail(x, "%s.from: is %s; expected a non-empty list of identities", path,
			    cJSON_IsArray(from) ? "empty" : type_name(from));
	}
	size_t n = cJSON_IsString(from) ? 1 : (size_t)cJSON_GetArraySize(from);
	r->ids = calloc(n, sizeof *r->ids);
	if (!r->ids)
		return fail(x, "out of memory");
	const cJSON *it = cJSON_IsString(from) ? from : from->child;
	char text[1024];
	size_t tl = (size_t)snprintf(text, sizeof text, "%s ", r->accept ? "accept" : "deny");
	for (size_t i = 0; i < n; i++, it = it->next) {
		if (!cJSON_IsString(it))
			return fail(x, "%s.from[%zu]: is %s; expected an identity string", path, i,
				    type_name(it));
		if (!inbound_id_parse(it->valuestring, &r->ids[i], why, sizeof why))
			return fail(x, "%s.from[%zu]: \"%s\": %s", path, i,
				    q(it->valuestring, b, sizeof b), why);
		r->n_ids++;
		if (tl < sizeof text)
			tl += (size_t)snprintf(text + tl, sizeof text - tl, "%s%s", i ? ", " : "",
					       it->valuestring);
	}
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
	if (name && (!cJSON_IsString(name) || !name->valuestring[0]))
		return fail(x, "%s.name: is %s; expected a non-empty string", path,
			    cJSON_IsString(name) ? "empty" : type_name(name));
	r->named = name != NULL;
	r->text = strdup(name ? name->valuestring : text);
	if (!r->text)
		return fail(x, "out of memory");
	return true;
}

/* Appends the rules of a JSON array to e. */
static bool add_rules(struct ictx *x, const char *path, const cJSON *arr,
		      struct inbound_entry *e)
{
	if (!cJSON_IsArray(arr))
		return fail(x, "%s: is %s; expected an array of rule objects", path, type_name(arr));
	size_t n = (size_t)cJSON_GetArraySize(arr);
	struct inbound_rule *v = realloc(e->rules, (e->n_rules + n + 1) * sizeof *v);
	if (!v)
		return fail(x, "out of memory");
	e->rules = v;
	size_t i = 0;
	for (const cJSON *r = arr->child; r; r = r->next, i++) {
		char p[400];
		snprintf(p, sizeof p, "%s[%zu]", path, i);
		if (!parse_rule(x, p, r, &e->rules[e->n_rules])) {
			rule_free(&e->rules[e->n_rules]);
			return false;
		}
		e->n_rules++;
	}
	return true;
}

/* ------------------------------------------------------------- addresses */

static bool parse_port(const char *s, size_t n, uint16_t *out)
{
	if (n == 0 || n > 5 || s[0] == '0')
		return false;
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!text_is_digit(s[i]))
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 65535)
		return false;
	*out = (uint16_t)v;
	return true;
}

/* "HOST:PORT" or "[IPv6]:PORT" into host (without brackets) and port. */
static bool split_hostport(const char *s, char *host, size_t hostlen, uint16_t *port,
			   const char **why)
{
	const char *h = s, *ps;
	size_t hl;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':') {
			*why = "is not [IPv6]:PORT";
			return false;
		}
		h = s + 1;
		hl = (size_t)(rb - h);
		ps = rb + 2;
	} else {
		const char *c = strrchr(s, ':');
		if (!c) {
			*why = "needs a port (HOST:PORT)";
			return false;
		}
		if (memchr(s, ':', (size_t)(c - s))) {
			*why = "is not HOST:PORT; put IPv6 addresses in brackets ([fd00::1]:5432)";
			return false;
		}
		hl = (size_t)(c - s);
		ps = c + 1;
	}
	if (hl == 0 || hl >= hostlen) {
		*why = hl ? "has a host name that is too long" : "has no host";
		return false;
	}
	if (!parse_port(ps, strlen(ps), port)) {
		*why = "has a bad port; expected 1 to 65535";
		return false;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	return true;
}

static bool is_loopback(const struct cidr_addr *a)
{
	static const uint8_t v6lo[16] = { [15] = 1 };
	return (a->family == AF_INET && a->b[0] == 127) ||
	       (a->family == AF_INET6 && memcmp(a->b, v6lo, 16) == 0);
}

/* The listen address: loopback, not 127.0.0.1, not in this node's own
 * advertised routes. */
static bool set_listen(struct ictx *x, const struct inbound_sources *s, const char *where,
		       const char *text, struct inbound_entry *e)
{
	char b[256], host[64];
	const char *why;
	uint16_t port;
	if (!split_hostport(text, host, sizeof host, &port, &why))
		return fail(x, "%s: \"%s\" %s", where, q(text, b, sizeof b), why);
	struct cidr_addr a;
	if (!cidr_addr_parse(host, &a))
		return fail(x, "%s: \"%s\" needs an IP address (names are not resolved here)", where,
			    q(text, b, sizeof b));
	if (!is_loopback(&a))
		return fail(x, "%s: \"%s\" is not a loopback address; only tailscaled on this host "
			    "may connect to an inbound listener (use 127.0.0.2:PORT)", where,
			    q(text, b, sizeof b));
	static const uint8_t one[4] = { 127, 0, 0, 1 };
	if (a.family == AF_INET && memcmp(a.b, one, 4) == 0)
		return fail(x, "%s: \"%s\" is 127.0.0.1, where tailscaled hands connections to this "
			    "node's own tailnet address (port %u there would reach this listener "
			    "without tailscale serve and its PROXY header); use another loopback "
			    "address, e.g. 127.0.0.2:%u", where, q(text, b, sizeof b), port, port);
	for (size_t i = 0; i < s->n_own_routes; i++)
		if (cidr_prefix_contains(&s->own_routes[i], &a)) {
			char pf[CIDR_PREFIX_STRLEN];
			return fail(x, "%s: \"%s\" is inside %s, a route this node advertises: "
				    "tailnet peers could reach it past tailscale serve", where,
				    q(text, b, sizeof b),
				    cidr_prefix_format(&s->own_routes[i], pf, sizeof pf));
		}
	e->listen_addr = a;
	e->listen_port = port;
	e->listen_len = cidr_addr_to_sockaddr(&a, port, &e->listen);
	cidr_addr_format_port(&a, port, e->listen_text, sizeof e->listen_text);
	return true;
}

/* The target: a host name or address literal and a port. */
static bool set_target(struct ictx *x, const char *where, const char *text,
		       struct inbound_entry *e)
{
	char b[256], host[256], why[300];
	const char *w;
	if (strlen(text) >= sizeof e->target)
		return fail(x, "%s: \"%s\" is too long", where, q(text, b, sizeof b));
	if (!split_hostport(text, host, sizeof host, &e->target_port, &w))
		return fail(x, "%s: \"%s\" %s", where, q(text, b, sizeof b), w);
	struct target t;
	if (!target_parse(&t, host, strlen(host), e->target_port, why, sizeof why))
		return fail(x, "%s: \"%s\": %s", where, q(text, b, sizeof b), why);
	snprintf(e->target, sizeof e->target, "%s", text);
	snprintf(e->target_host, sizeof e->target_host, "%s", t.host);
	return true;
}

static bool is_link_local(const struct cidr_addr *a)
{
	return (a->family == AF_INET && a->b[0] == 169 && a->b[1] == 254) ||
	       (a->family == AF_INET6 && a->b[0] == 0xfe && (a->b[1] & 0xc0) == 0x80);
}

/* This host's own interface addresses (the "self" guard); loopback and
 * link-local ones have guards of their own. */
static void add_self(struct policy_builder *b)
{
	struct ifaddrs *ifa = NULL;
	if (getifaddrs(&ifa) != 0)
		return;
	for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
		struct cidr_addr a;
		if (i->ifa_addr && cidr_addr_from_sockaddr(i->ifa_addr, &a, NULL) &&
		    !is_loopback(&a) && !is_link_local(&a))
			policy_builder_add_self(b, &a);
	}
	freeifaddrs(ifa);
}

static bool addr_is_self(const struct cidr_addr *a)
{
	struct ifaddrs *ifa = NULL;
	bool found = false;
	if (getifaddrs(&ifa) != 0)
		return false;
	for (struct ifaddrs *i = ifa; i && !found; i = i->ifa_next) {
		struct cidr_addr s;
		if (i->ifa_addr && cidr_addr_from_sockaddr(i->ifa_addr, &s, NULL))
			found = cidr_addr_equal(&s, a);
	}
	freeifaddrs(ifa);
	return found;
}

/* The target's policy: every guard, but loopback (and this host's own
 * addresses) when the target is written as such an address literal; a
 * name that resolves there is refused like any other. Link-local (the
 * metadata service) is never lifted. */
static bool compile_target(struct ictx *x, const struct inbound_sources *s,
			   struct inbound_entry *e)
{
	struct policy_builder *b = policy_builder_new();
	if (!b)
		return fail(x, "out of memory");
	struct cidr_addr lit;
	if (cidr_addr_parse(e->target_host, &lit)) {
		if (is_loopback(&lit))
			policy_builder_lift_guard(b, "loopback");
		else if (!is_link_local(&lit) && addr_is_self(&lit))
			policy_builder_lift_guard(b, "self");
	}
	add_self(b);
	if (s->has_upstream)
		policy_builder_set_upstream(b, &s->upstream_addr, s->upstream_port);
	char dst[310], name[400], why[400];
	if (strchr(e->target_host, ':'))
		snprintf(dst, sizeof dst, "[%s]:%u", e->target_host, e->target_port);
	else
		snprintf(dst, sizeof dst, "%s:%u", e->target_host, e->target_port);
	const char *dsts[] = { dst };
	snprintf(name, sizeof name, "inbound %s", e->name);
	struct policy_rule_spec r = { .name = name, .action = POLICY_ACCEPT,
				      .via = POLICY_VIA_DIRECT, .dst = dsts, .n_dst = 1 };
	if (!policy_builder_add_rule(b, &r, why, sizeof why)) {
		policy_builder_free(b);
		return fail(x, "%s: target \"%s\": %s", e->origin, e->target, why);
	}
	e->policy = policy_builder_finish(b);
	return e->policy ? true : fail(x, "out of memory");
}

/* ---------------------------------------------------------------- entries */

static void entry_free(struct inbound_entry *e)
{
	for (size_t i = 0; i < e->n_rules; i++)
		rule_free(&e->rules[i]);
	free(e->rules);
	free(e->name);
	policy_free(e->policy);
}

void inbound_config_free(struct inbound_config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		entry_free(&c->v[i]);
	free(c->v);
	free(c);
}

static struct inbound_entry *new_entry(struct ictx *x, struct inbound_config *c)
{
	struct inbound_entry *v = realloc(c->v, (c->n + 1) * sizeof *v);
	if (!v) {
		fail(x, "out of memory");
		return NULL;
	}
	c->v = v;
	memset(&v[c->n], 0, sizeof v[c->n]);
	v[c->n].proxy_versions = PROXYPROTO_V2;
	v[c->n].peer_check = INBOUND_PEER_TAILSCALED;
	return &v[c->n++];
}

/* One entry of the file's "inbound" list. */
static bool file_entry(struct ictx *x, const struct inbound_sources *s, const cJSON *o,
		       size_t idx, struct inbound_config *c)
{
	static const char *const keys[] = { "name", "port", "listen", "target", "proxy_protocol",
					    "peer_check", "rules", NULL };
	char path[300], p2[340], b[256];
	snprintf(path, sizeof path, "%s: inbound[%zu]", s->file_name, idx);
	if (!cJSON_IsObject(o))
		return fail(x, "%s: is %s; expected an object with listen, target and rules", path,
			    type_name(o));
	if (!check_keys(x, path, o, keys))
		return false;
	struct inbound_entry *e = new_entry(x, c);
	if (!e)
		return false;
	snprintf(e->origin, sizeof e->origin, "%s", path);
	const cJSON *v;
	if ((v = cJSON_GetObjectItemCaseSensitive(o, "port"))) {
		if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 65535 ||
		    v->valuedouble != (double)(int)v->valuedouble)
			return fail(x, "%s.port: expected the tailnet port served, 1 to 65535", path);
		e->port = (uint16_t)v->valueint;
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(o, "name"))) {
		if (!cJSON_IsString(v) || !word_ok(v->valuestring, 63))
			return fail(x, "%s.name: %s%s%s; expected 1 to 63 bytes without spaces or "
				    "commas", path, cJSON_IsString(v) ? "\"" : "is ",
				    cJSON_IsString(v) ? q(v->valuestring, b, sizeof b) : type_name(v),
				    cJSON_IsString(v) ? "\"" : "");
		e->name = strdup(v->valuestring);
	}
	v = cJSON_GetObjectItemCaseSensitive(o, "listen");
	snprintf(p2, sizeof p2, "%s.listen", path);
	if (!v)
		return fail(x, "%s: is missing; expected a loopback ADDRESS:PORT for tailscale serve "
			    "to forward to (127.0.0.2:15432)", p2);
	if (!cJSON_IsString(v))
		return fail(x, "%s: is %s; expected ADDRESS:PORT", p2, type_name(v));
	if (!set_listen(x, s, p2, v->valuestring, e))
		return false;
	v = cJSON_GetObjectItemCaseSensitive(o, "target");
	snprintf(p2, sizeof p2, "%s.target", path);
	if (!v)
		return fail(x, "%s: is missing; expected the service as HOST:PORT "
			    "(db.railway.internal:5432)", p2);
	if (!cJSON_IsString(v))
		return fail(x, "%s: is %s; expected HOST:PORT", p2, type_name(v));
	if (!set_target(x, p2, v->valuestring, e))
		return false;
	if ((v = cJSON_GetObjectItemCaseSensitive(o, "proxy_protocol"))) {
		if (!cJSON_IsNumber(v) || (v->valuedouble != 1 && v->valuedouble != 2))
			return fail(x, "%s.proxy_protocol: %s%s; expected 1 or 2 (the version given to "
				    "tailscale serve --proxy-protocol)", path,
				    cJSON_IsNumber(v) ? "" : "is ",
				    cJSON_IsNumber(v) ? (snprintf(b, sizeof b, "%g", v->valuedouble), b)
						      : type_name(v));
		e->proxy_versions = v->valuedouble == 1 ? PROXYPROTO_V1 : PROXYPROTO_V2;
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(o, "peer_check"))) {
		const char *m = cJSON_GetStringValue(v);
		if (!m || (strcmp(m, "tailscaled") != 0 && strcmp(m, "loopback") != 0))
			return fail(x, "%s.peer_check: %s%s%s is not valid; expected \"tailscaled\" or "
				    "\"loopback\"", path, m ? "\"" : "", m ? q(m, b, sizeof b)
				    : type_name(v), m ? "\"" : "");
		e->peer_check = strcmp(m, "loopback") == 0 ? INBOUND_PEER_LOOPBACK
							   : INBOUND_PEER_TAILSCALED;
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(o, "rules"))) {
		snprintf(p2, sizeof p2, "%s.rules", path);
		if (!add_rules(x, p2, v, e))
			return false;
	}
	if (!e->name) {
		char n[32];
		if (e->port)
			snprintf(n, sizeof n, "%u", e->port);
		else
			snprintf(n, sizeof n, "inbound[%zu]", idx);
		e->name = strdup(n);
	}
	return e->name ? true : fail(x, "out of memory");
}

bool inbound_simple_listen(const char *base, size_t i, char *out, size_t len, char *why,
			   size_t whylen)
{
	char host[64];
	const char *w;
	uint16_t port;
	if (!split_hostport(base, host, sizeof host, &port, &w)) {
		snprintf(why, whylen, "%s", w);
		return false;
	}
	unsigned lp = (unsigned)port + (unsigned)i;
	if (lp > 65535) {
		snprintf(why, whylen, "entry %zu would listen on port %u; choose a lower base port",
			 i + 1, lp);
		return false;
	}
	if (strchr(host, ':'))
		snprintf(out, len, "[%s]:%u", host, lp);
	else
		snprintf(out, len, "%s:%u", host, lp);
	return true;
}

/* "PORT=HOST:PORT" entries of TAILFENCE_INBOUND or --inbound. */
static bool simple_entries(struct ictx *x, const struct inbound_sources *s, const char *origin,
			   const char *const *texts, size_t n_texts, const char *listen_origin,
			   const char *listen, struct inbound_config *c)
{
	char b[256];
	for (size_t t = 0; t < n_texts; t++) {
		const char *p = texts[t];
		for (;;) {
			const char *comma = strchr(p, ',');
			size_t n = comma ? (size_t)(comma - p) : strlen(p);
			while (n && (p[0] == ' ' || p[0] == '\t'))
				p++, n--;
			while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
				n--;
			char item[400];
			if (n == 0 || n >= sizeof item)
				return fail(x, "%s: \"%s\": %s", origin, q(texts[t], b, sizeof b),
					    n ? "an entry is too long" :
					    "has an empty entry; expected PORT=HOST:PORT,...");
			memcpy(item, p, n);
			item[n] = '\0';
			char where[500];
			snprintf(where, sizeof where, "%s: entry \"%s\"", origin, q(item, b, sizeof b));
			const char *eq = strchr(item, '=');
			uint16_t port;
			if (!eq || !parse_port(item, (size_t)(eq - item), &port))
				return fail(x, "%s: expected PORT=HOST:PORT, PORT the tailnet port to "
					    "serve (5432=db.railway.internal:5432)", where);
			for (size_t i = 0; i < c->n; i++)
				if (c->v[i].port == port)
					return fail(x, "%s: tailnet port %u is given twice", where, port);
			struct inbound_entry *e = new_entry(x, c);
			if (!e)
				return false;
			snprintf(e->origin, sizeof e->origin, "%s", where);
			e->port = port;
			char nm[16];
			snprintf(nm, sizeof nm, "%u", port);
			if (!(e->name = strdup(nm)))
				return fail(x, "out of memory");
			char tw[540];
			snprintf(tw, sizeof tw, "%s: target", where);
			if (!set_target(x, tw, eq + 1, e))
				return false;
			char lt[80], lwhy[200];
			if (!inbound_simple_listen(listen, c->n - 1, lt, sizeof lt, lwhy, sizeof lwhy))
				return fail(x, "%s: \"%s\" %s", listen_origin, q(listen, b, sizeof b),
					    lwhy);
			if (!set_listen(x, s, listen_origin, lt, e))
				return false;
			if (!comma)
				break;
			p = comma + 1;
		}
	}
	return true;
}

static bool read_text(const char *path, char **out, size_t *len, char *why, size_t whylen)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(why, whylen, "cannot open: %s", strerror(errno));
		return false;
	}
	char *buf = malloc(INBOUND_POLICY_MAX + 1);
	size_t n = buf ? fread(buf, 1, INBOUND_POLICY_MAX + 1, f) : 0;
	bool err = ferror(f);
	fclose(f);
	if (!buf || err || n > INBOUND_POLICY_MAX) {
		snprintf(why, whylen, "%s", !buf ? "out of memory" : err ? "read error"
			 : "longer than 1 MiB");
		free(buf);
		return false;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return true;
}

/* The identity policy for env and flag entries: {"PORT": [rules], "*": [rules]}. */
static bool apply_policy_file(struct ictx *x, const char *origin, const char *path,
			      struct inbound_config *c)
{
	char b[256], why[300];
	char *text;
	size_t len;
	if (!read_text(path, &text, &len, why, sizeof why))
		return fail(x, "%s: \"%s\": %s", origin, q(path, b, sizeof b), why);
	char perr[512];
	cJSON *root = config_parse_json(path, text, len, perr, sizeof perr);
	free(text);
	if (!root)
		return fail(x, "%s: %s", origin, perr);
	bool ok = false;
	if (!cJSON_IsObject(root)) {
		fail(x, "%s: is %s; expected an object of \"PORT\" (or \"*\"): [rules]", path,
		     type_name(root));
		goto out;
	}
	for (const cJSON *k = root->child; k; k = k->next) {
		for (const cJSON *p = root->child; p != k; p = p->next)
			if (strcmp(p->string, k->string) == 0) {
				fail(x, "%s: key \"%s\" appears twice", path, q(k->string, b, sizeof b));
				goto out;
			}
		uint16_t port;
		bool any = strcmp(k->string, "*") == 0;
		if (!any && !parse_port(k->string, strlen(k->string), &port)) {
			fail(x, "%s: key \"%s\": expected a tailnet port (\"5432\") or \"*\"", path,
			     q(k->string, b, sizeof b));
			goto out;
		}
		bool found = any;
		for (size_t i = 0; !any && i < c->n; i++)
			found = found || c->v[i].port == port;
		if (!found) {
			fail(x, "%s: key \"%s\" names a port no inbound entry serves", path,
			     q(k->string, b, sizeof b));
			goto out;
		}
	}
	/* Each entry: its port's rules, then those for every port. */
	const cJSON *all = cJSON_GetObjectItemCaseSensitive(root, "*");
	for (size_t i = 0; i < c->n; i++) {
		char key[8], p[340];
		snprintf(key, sizeof key, "%u", c->v[i].port);
		const cJSON *own = cJSON_GetObjectItemCaseSensitive(root, key);
		snprintf(p, sizeof p, "%s: %s", path, key);
		if (own && !add_rules(x, p, own, &c->v[i]))
			goto out;
		snprintf(p, sizeof p, "%s: *", path);
		if (all && !add_rules(x, p, all, &c->v[i]))
			goto out;
	}
	ok = true;
out:
	cJSON_Delete(root);
	return ok;
}

struct inbound_config *inbound_config_build(const struct inbound_sources *s, char *err,
					    size_t errlen)
{
	struct ictx x = { .err = err, .errlen = errlen };
	struct inbound_config *c = calloc(1, sizeof *c);
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	const char *listen = s->flag_listen ? s->flag_listen
			     : s->env_listen ? s->env_listen : INBOUND_DEFAULT_LISTEN;
	const char *listen_origin = s->flag_listen ? "--inbound-listen"
				    : s->env_listen ? "TAILFENCE_INBOUND_LISTEN"
				    : "the default inbound listen address";
	const char *policy = s->flag_policy ? s->flag_policy : s->env_policy;
	const char *policy_origin = s->flag_policy ? "--inbound-policy" : "TAILFENCE_INBOUND_POLICY";
	bool simple = false;
	if (s->n_flags) {
		simple = true;
		if (!simple_entries(&x, s, "--inbound", s->flags, s->n_flags, listen_origin, listen, c))
			goto bad;
	} else if (s->env) {
		simple = true;
		const char *e[] = { s->env };
		if (!simple_entries(&x, s, "TAILFENCE_INBOUND", e, 1, listen_origin, listen, c))
			goto bad;
	} else if (s->file) {
		char path[300];
		snprintf(path, sizeof path, "%s: inbound", s->file_name);
		if (!cJSON_IsArray(s->file)) {
			fail(&x, "%s: is %s; expected an array of inbound entries", path,
			     type_name(s->file));
			goto bad;
		}
		size_t i = 0;
		for (const cJSON *o = s->file->child; o; o = o->next, i++)
			if (!file_entry(&x, s, o, i, c))
				goto bad;
	}
	if (policy && !simple) {
		/* A policy nobody reads would look like a fence that is not there. */
		fail(&x, "%s: \"%s\" gives identity rules for TAILFENCE_INBOUND or --inbound "
		     "services, and none is set%s", policy_origin, policy,
		     c->n ? " (the config file's inbound entries carry their own rules)" : "");
		goto bad;
	}
	if (simple && policy && !apply_policy_file(&x, policy_origin, policy, c))
		goto bad;
	const char *pc = s->flag_peer_check ? s->flag_peer_check : s->env_peer_check;
	if (pc) {
		const char *origin = s->flag_peer_check ? "--inbound-peer-check"
					: "TAILFENCE_INBOUND_PEER_CHECK";
		char b[256];
		if (strcmp(pc, "tailscaled") != 0 && strcmp(pc, "loopback") != 0) {
			fail(&x, "%s: \"%s\" is not valid; expected tailscaled or loopback", origin,
			     q(pc, b, sizeof b));
			goto bad;
		}
		if (!simple) {
			fail(&x, "%s: applies to TAILFENCE_INBOUND or --inbound services, and none is "
			     "set (a config file entry has its own \"peer_check\")", origin);
			goto bad;
		}
		for (size_t i = 0; i < c->n; i++)
			c->v[i].peer_check = strcmp(pc, "loopback") == 0 ? INBOUND_PEER_LOOPBACK
									 : INBOUND_PEER_TAILSCALED;
	}
	for (size_t i = 0; i < c->n; i++) {
		struct inbound_entry *e = &c->v[i];
		for (size_t j = 0; j < i; j++) {
			if (strcmp(c->v[j].listen_text, e->listen_text) == 0) {
				fail(&x, "%s: listens on %s like %s", e->origin, e->listen_text,
				     c->v[j].origin);
				goto bad;
			}
			if (strcmp(c->v[j].name, e->name) == 0) {
				fail(&x, "%s: the name \"%s\" is used by %s too", e->origin, e->name,
				     c->v[j].origin);
				goto bad;
			}
		}
		if (!compile_target(&x, s, e))
			goto bad;
	}
	if (c->n && !s->tailscaled_socket) {
		fail(&x, "%s: inbound listeners need tailscaled's socket (its whois says who "
		     "connects), but it is none; set --tailscaled-socket", c->v[0].origin);
		goto bad;
	}
	return c;
bad:
	if (!x.failed)
		fail(&x, "invalid inbound configuration");
	inbound_config_free(c);
	return NULL;
}

bool inbound_config_same_bound(const struct inbound_config *a, const struct inbound_config *b,
			       char *why, size_t whylen)
{
	char la[400] = "", lb[400] = "";
	size_t ja = 0, jb = 0;
	for (size_t i = 0; a && i < a->n && ja < sizeof la; i++)
		ja += (size_t)snprintf(la + ja, sizeof la - ja, "%s%s", i ? "," : "",
				       a->v[i].listen_text);
	for (size_t i = 0; b && i < b->n && jb < sizeof lb; i++)
		jb += (size_t)snprintf(lb + jb, sizeof lb - jb, "%s%s", i ? "," : "",
				       b->v[i].listen_text);
	if (strcmp(la, lb) == 0)
		return true;
	snprintf(why, whylen, "inbound listen: %s -> %s", la[0] ? la : "(none)",
		 lb[0] ? lb : "(none)");
	return false;
}

/* A rule as the file would hold it. */
static cJSON *rule_json(const struct inbound_rule *r)
{
	static const char *const prefix[] = {
		[INBOUND_ID_ANY] = "", [INBOUND_ID_USER] = "user:", [INBOUND_ID_TAG] = "tag:",
		[INBOUND_ID_NODE] = "node:", [INBOUND_ID_CAP] = "cap:",
	};
	cJSON *o = cJSON_CreateObject();
	if (r->named)
		cJSON_AddStringToObject(o, "name", r->text);
	cJSON_AddStringToObject(o, "action", r->accept ? "accept" : "deny");
	cJSON *from = cJSON_AddArrayToObject(o, "from");
	for (size_t i = 0; i < r->n_ids; i++) {
		char id[600];
		const struct inbound_id *d = &r->ids[i];
		if (d->kind == INBOUND_ID_ANY)
			snprintf(id, sizeof id, "*");
		else
			snprintf(id, sizeof id, "%s%s", prefix[d->kind], d->value);
		cJSON_AddItemToArray(from, cJSON_CreateString(id));
	}
	return o;
}

void inbound_config_effective(const struct inbound_config *c, cJSON *eff)
{
	cJSON *arr = cJSON_AddArrayToObject(eff, "inbound");
	for (size_t i = 0; c && i < c->n; i++) {
		const struct inbound_entry *e = &c->v[i];
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", e->name);
		if (e->port)
			cJSON_AddNumberToObject(o, "port", e->port);
		cJSON_AddStringToObject(o, "listen", e->listen_text);
		cJSON_AddStringToObject(o, "target", e->target);
		cJSON_AddNumberToObject(o, "proxy_protocol",
					e->proxy_versions == PROXYPROTO_V1 ? 1 : 2);
		cJSON_AddStringToObject(o, "peer_check", e->peer_check == INBOUND_PEER_LOOPBACK
								 ? "loopback" : "tailscaled");
		cJSON *rules = cJSON_AddArrayToObject(o, "rules");
		for (size_t k = 0; k < e->n_rules; k++)
			cJSON_AddItemToArray(rules, rule_json(&e->rules[k]));
		cJSON_AddItemToArray(arr, o);
	}
}
