/*
 * config_table: every setting once. A row names the file key, the flag,
 * the environment variable, the type with its bounds, the default and the
 * help; the flags, --help, the file walk, the environment, `config show`
 * and the reference in docs/config.md (`tailfence config reference`) are
 * all read from here. Most rows need no code: a duration, a count, a
 * switch, a choice or a path is set and shown by its kind. The others
 * (addresses, lists that add up, audit sinks, users and rules) have a
 * setter and a show function below.
 */
#include "config_internal.h"

#include "tailfence/inbound_config.h"
#include "tailfence/log.h"
#include "tailfence/text.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_TAILSCALED_SOCKET "/var/run/tailscale/tailscaled.sock"

/* ------------------------------------------------------------------ */
/* value parsers */

bool config_parse_duration(const char *s, unsigned *ms_out)
{
	if (!s || *s < '0' || *s > '9')
		return false;
	unsigned long long v = 0;
	const char *p = s;
	while (*p >= '0' && *p <= '9') {
		v = v * 10 + (unsigned)(*p - '0');
		if (v > 100000000ULL)
			return false;
		p++;
	}
	unsigned long long mult;
	if (*p == '\0' || strcmp(p, "s") == 0)
		mult = 1000;
	else if (strcmp(p, "ms") == 0)
		mult = 1;
	else if (strcmp(p, "m") == 0)
		mult = 60000;
	else if (strcmp(p, "h") == 0)
		mult = 3600000;
	else
		return false;
	v *= mult;
	if (v > 7ULL * 24 * 3600 * 1000)
		return false;
	*ms_out = (unsigned)v;
	return true;
}

void config_fmt_duration(unsigned ms, char *buf, size_t len)
{
	if (ms % 3600000 == 0 && ms)
		snprintf(buf, len, "%uh", ms / 3600000);
	else if (ms % 60000 == 0 && ms)
		snprintf(buf, len, "%um", ms / 60000);
	else if (ms % 1000 == 0)
		snprintf(buf, len, "%us", ms / 1000);
	else
		snprintf(buf, len, "%ums", ms);
}

static bool parse_count(const char *s, unsigned long long *out)
{
	if (!s || *s < '0' || *s > '9')
		return false;
	unsigned long long v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (unsigned)(*p - '0');
		if (v > (1ULL << 40))
			return false;
	}
	*out = v;
	return true;
}

bool config_parse_hostport(const char *s, struct cidr_addr *a, uint16_t *port,
			   bool port_optional, uint16_t default_port, const char **why)
{
	struct text_hostport hp;
	/* a nameserver may be a bare IPv6 address: "::1" */
	if (port_optional && strchr(s, ':') != strrchr(s, ':') && s[0] != '[' &&
	    cidr_addr_parse(s, a)) {
		*port = default_port;
		return true;
	}
	enum text_hostport_error e = text_hostport_split(s, strlen(s), port_optional, &hp);
	if (e != TEXT_HP_OK) {
		*why = text_hostport_why(e);
		return false;
	}
	if (hp.host_len == 9 && !hp.bracketed && strncmp(hp.host, "localhost", 9) == 0) {
		cidr_addr_parse("127.0.0.1", a);
	} else if (!cidr_addr_parsen(hp.host, hp.host_len, a) ||
		   (hp.bracketed && a->family != AF_INET6)) {
		*why = "needs an IP address (names are not resolved here)";
		return false;
	}
	*port = hp.has_port ? hp.port : default_port;
	return true;
}

static bool is_loopback(const struct cidr_addr *a)
{
	return (a->family == AF_INET && a->b[0] == 127) ||
	       (a->family == AF_INET6 && a->b[15] == 1 &&
		memcmp(a->b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 15) == 0);
}


/* ------------------------------------------------------------------ */
/* the generic kinds */

static void *field(const struct config_build *b, const struct setting *s)
{
	return (char *)b->c + s->offset;
}

static void store_uint(void *p, size_t size, unsigned long long v)
{
	switch (size) {
	case 1: *(bool *)p = v != 0; break;
	case sizeof(unsigned): *(unsigned *)p = (unsigned)v; break;
	default: *(size_t *)p = (size_t)v; break;
	}
}

static unsigned long long load_uint(const void *p, size_t size)
{
	switch (size) {
	case 1: return *(const bool *)p;
	case sizeof(unsigned): return *(const unsigned *)p;
	default: return *(const size_t *)p;
	}
}

/* "a, b or c" */
static void join_or(const char *const *v, char *buf, size_t len)
{
	size_t n = 0, j = 0;
	while (v[n])
		n++;
	buf[0] = '\0';
	for (size_t i = 0; i < n && j < len; i++)
		j += (size_t)snprintf(buf + j, len - j, "%s%s", i == 0 ? "" : i + 1 == n ? " or " : ", ",
				      v[i]);
}

static bool parse_bool(const char *v, bool *out)
{
	if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcmp(v, "yes") == 0)
		*out = true;
	else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0 || strcmp(v, "no") == 0)
		*out = false;
	else
		return false;
	return true;
}

static bool set_generic(struct config_build *b, const struct setting *s, const struct origin *o,
			const char *v)
{
	char q[256], list[200];
	void *p = field(b, s);
	switch (s->kind) {
	case SK_DURATION: {
		unsigned ms;
		if (!config_parse_duration(v, &ms) || ms < s->min)
			return config_fail(b->err, "%s: \"%s\" is not a duration; expected 250ms, 10s, "
					   "15m, 1h or a number of seconds%s, at most 7 days", o->text,
					   config_quote(v, q, sizeof q), s->min ? " above zero" : "");
		store_uint(p, s->size, ms);
		return true;
	}
	case SK_COUNT: {
		unsigned long long n;
		if (!parse_count(v, &n) || n < s->min || n > s->max)
			return config_fail(b->err, "%s: \"%s\" is out of range; expected a whole number "
					   "from %llu to %llu", o->text, config_quote(v, q, sizeof q),
					   s->min, s->max);
		store_uint(p, s->size, n);
		return true;
	}
	case SK_BOOL: {
		bool t;
		if (!parse_bool(v, &t))
			return config_fail(b->err, "%s: \"%s\" is not a boolean; expected true or false",
					   o->text, config_quote(v, q, sizeof q));
		*(bool *)p = t;
		return true;
	}
	case SK_CHOICE:
		for (size_t i = 0; s->choices[i]; i++)
			if (strcmp(v, s->choices[i]) == 0) {
				store_uint(p, s->size, (unsigned long long)s->values[i]);
				return true;
			}
		join_or(s->choices, list, sizeof list);
		return config_fail(b->err, "%s: \"%s\" is not %s; expected %s", o->text,
				   config_quote(v, q, sizeof q), s->what ? s->what : "valid", list);
	case SK_PATH: {
		char **slot = p;
		free(*slot);
		*slot = v[0] ? strdup(v) : NULL;
		return !v[0] || *slot || config_fail(b->err, "out of memory");
	}
	case SK_OTHER:
		break;
	}
	return config_fail(b->err, "%s: cannot be set here", o->text);
}

bool setting_apply_text(struct config_build *b, const struct setting *s, const struct origin *o,
			const char *const *v, size_t n)
{
	if (s->set)
		return s->set(b, s, o, v, n);
	if (n == 0)
		return true;
	return set_generic(b, s, o, v[n - 1]);
}

bool setting_apply_json(struct config_build *b, const struct setting *s, const struct origin *o,
			const cJSON *v)
{
	if (s->set_json)
		return s->set_json(b, s, o, v);
	if (cJSON_IsNull(v) && (s->flags & SF_NULL_OK)) {
		const char *none[] = { "" };
		return setting_apply_text(b, s, o, none, 1);
	}
	if (s->flags & SF_LIST) {
		const char **items;
		size_t n;
		if (!json_string_list(b->err, o->text, v, &items, &n))
			return false;
		struct origin io = *o;
		io.indexed = true;
		bool ok = setting_apply_text(b, s, &io, items, n);
		free(items);
		return ok;
	}
	char buf[128];
	const char *text = buf;
	switch (s->kind) {
	case SK_DURATION:
	case SK_COUNT:
		if (!json_scalar_text(b->err, o->text, v, buf, sizeof buf, s->kind == SK_DURATION))
			return false;
		break;
	case SK_BOOL:
		if (!cJSON_IsBool(v))
			return config_fail(b->err, "%s: is %s; expected true or false", o->text,
					   json_type_name(v));
		text = cJSON_IsTrue(v) ? "true" : "false";
		break;
	default:
		if (!cJSON_IsString(v) || !v->valuestring)
			return config_fail(b->err, "%s: is %s; expected a string", o->text,
					   json_type_name(v));
		text = v->valuestring;
		break;
	}
	return setting_apply_text(b, s, o, &text, 1);
}

cJSON *setting_show(const struct config_build *b, const struct setting *s)
{
	if (s->show)
		return s->show(b, s);
	const void *p = field(b, s);
	char buf[64];
	switch (s->kind) {
	case SK_DURATION:
		config_fmt_duration((unsigned)load_uint(p, s->size), buf, sizeof buf);
		return cJSON_CreateString(buf);
	case SK_COUNT:
		return cJSON_CreateNumber((double)load_uint(p, s->size));
	case SK_BOOL:
		return cJSON_CreateBool(*(const bool *)p);
	case SK_CHOICE: {
		unsigned long long v = load_uint(p, s->size);
		for (size_t i = 0; s->choices[i]; i++)
			if ((unsigned long long)s->values[i] == v)
				return cJSON_CreateString(s->choices[i]);
		return cJSON_CreateNull();
	}
	case SK_PATH: {
		const char *const *slot = p;
		return *slot ? cJSON_CreateString(*slot) : cJSON_CreateNull();
	}
	case SK_OTHER:
		break;
	}
	return NULL;
}

const char *setting_default_text(const struct setting *s)
{
	if (s->def_text)
		return s->def_text;
	if (s->def && s->def[0])
		return s->def;
	return "none";
}

/* ------------------------------------------------------------------ */
/* addresses */

static bool set_listen(struct config_build *b, const struct setting *s, const struct origin *o,
		       const char *const *v, size_t n)
{
	struct config *c = b->c;
	char q[256], at[340];
	(void)s;
	if (n == 0)
		return config_fail(b->err, "%s: is empty; at least one listen address is needed",
				   o->text);
	struct config_listener *ls = calloc(n, sizeof *ls);
	if (!ls)
		return config_fail(b->err, "out of memory");
	for (size_t i = 0; i < n; i++) {
		struct cidr_addr a;
		uint16_t port;
		const char *why = "";
		if (!config_parse_hostport(v[i], &a, &port, false, 0, &why)) {
			free(ls);
			return config_fail(b->err, "%s: \"%s\" %s", origin_at(o, i, at, sizeof at),
					   config_quote(v[i], q, sizeof q), why);
		}
		ls[i].len = cidr_addr_to_sockaddr(&a, port, &ls[i].ss);
		cidr_addr_format_port(&a, port, ls[i].text, sizeof ls[i].text);
		ls[i].loopback = is_loopback(&a);
	}
	free(c->listeners);
	c->listeners = ls;
	c->n_listeners = n;
	snprintf(b->listen_origin, sizeof b->listen_origin, "%s", o->text);
	b->listen_indexed = o->indexed;
	return true;
}

static cJSON *show_listen(const struct config_build *b, const struct setting *s)
{
	(void)s;
	cJSON *a = cJSON_CreateArray();
	for (size_t i = 0; i < b->c->n_listeners; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(b->c->listeners[i].text));
	return a;
}

/* "ADDR:PORT", or "" / "off" for none. */
static bool set_admin(struct config_build *b, const struct setting *s, const struct origin *o,
		      const char *const *v, size_t n)
{
	struct config *c = b->c;
	char q[256];
	(void)s;
	const char *t = n ? v[n - 1] : "";
	c->has_admin = false;
	memset(&c->admin, 0, sizeof c->admin);
	if (t[0] == '\0' || strcmp(t, "off") == 0)
		return true;
	struct cidr_addr a;
	uint16_t port;
	const char *why = "";
	if (!config_parse_hostport(t, &a, &port, false, 0, &why))
		return config_fail(b->err, "%s: \"%s\" %s", o->text, config_quote(t, q, sizeof q), why);
	c->admin.len = cidr_addr_to_sockaddr(&a, port, &c->admin.ss);
	cidr_addr_format_port(&a, port, c->admin.text, sizeof c->admin.text);
	c->admin.loopback = is_loopback(&a);
	c->has_admin = true;
	snprintf(b->admin_origin, sizeof b->admin_origin, "%s", o->text);
	return true;
}

static cJSON *show_admin(const struct config_build *b, const struct setting *s)
{
	(void)s;
	return b->c->has_admin ? cJSON_CreateString(b->c->admin.text) : cJSON_CreateNull();
}

static bool set_upstream(struct config_build *b, const struct setting *s, const struct origin *o,
			 const char *const *v, size_t n)
{
	struct config_upstream *u = &b->c->upstream;
	char q[256];
	const char *t = n ? v[n - 1] : "", *rest;
	(void)s;
	memset(u, 0, sizeof *u);
	if (strcmp(t, "direct") == 0) {
		u->kind = CONFIG_UPSTREAM_DIRECT;
		snprintf(u->text, sizeof u->text, "direct");
		return true;
	}
	if (strncmp(t, "socks5://", 9) == 0 || strncmp(t, "socks5h://", 10) == 0) {
		u->kind = CONFIG_UPSTREAM_SOCKS5;
		rest = strstr(t, "//") + 2;
	} else if (strncmp(t, "http://", 7) == 0) {
		u->kind = CONFIG_UPSTREAM_HTTP;
		rest = t + 7;
	} else {
		return config_fail(b->err, "%s: \"%s\" is not an upstream; expected socks5://IP:PORT, "
				   "http://IP:PORT or direct", o->text, config_quote(t, q, sizeof q));
	}
	char hp[200];
	snprintf(hp, sizeof hp, "%s", rest);
	size_t l = strlen(hp);
	if (l && hp[l - 1] == '/')
		hp[l - 1] = '\0';
	const char *why = "";
	if (!config_parse_hostport(hp, &u->addr, &u->port, false, 0, &why))
		return config_fail(b->err, "%s: \"%s\" %s", o->text, config_quote(t, q, sizeof q), why);
	char ap[64];
	snprintf(u->text, sizeof u->text, "%s://%s",
		 u->kind == CONFIG_UPSTREAM_SOCKS5 ? "socks5" : "http",
		 cidr_addr_format_port(&u->addr, u->port, ap, sizeof ap));
	return true;
}

static cJSON *show_upstream(const struct config_build *b, const struct setting *s)
{
	(void)s;
	return cJSON_CreateString(b->c->upstream.text);
}

/* PATH, or "none" (or empty) for no live tailnet view. */
static bool set_socket(struct config_build *b, const struct setting *s, const struct origin *o,
		       const char *const *v, size_t n)
{
	struct config *c = b->c;
	char q[256];
	const char *t = n ? v[n - 1] : "";
	(void)s;
	free(c->tailscaled_socket);
	c->tailscaled_socket = NULL;
	if (t[0] == '\0' || strcmp(t, "none") == 0)
		return true;
	/* sockaddr_un's sun_path holds 107 bytes and the NUL */
	if (strlen(t) > 107)
		return config_fail(b->err, "%s: \"%s\" is longer than a UNIX socket path may be "
				   "(107 bytes)", o->text, config_quote(t, q, sizeof q));
	c->tailscaled_socket = strdup(t);
	return c->tailscaled_socket || config_fail(b->err, "out of memory");
}

static cJSON *show_socket(const struct config_build *b, const struct setting *s)
{
	(void)s;
	return cJSON_CreateString(b->c->tailscaled_socket ? b->c->tailscaled_socket : "none");
}

static bool set_dns_servers(struct config_build *b, const struct setting *s,
			    const struct origin *o, const char *const *v, size_t n)
{
	struct config *c = b->c;
	char q[256], at[340];
	(void)s;
	for (size_t i = 0; i < c->n_dns_servers; i++)
		free(c->dns_servers[i]);
	free(c->dns_servers);
	c->dns_servers = NULL;
	c->n_dns_servers = 0;
	if (n == 0)
		return true;
	c->dns_servers = calloc(n, sizeof *c->dns_servers);
	if (!c->dns_servers)
		return config_fail(b->err, "out of memory");
	for (size_t i = 0; i < n; i++) {
		struct cidr_addr a;
		uint16_t port;
		const char *why = "";
		if (!config_parse_hostport(v[i], &a, &port, true, 53, &why) ||
		    strncmp(v[i], "localhost", 9) == 0)
			return config_fail(b->err, "%s: \"%s\" %s", origin_at(o, i, at, sizeof at),
					   config_quote(v[i], q, sizeof q),
					   why[0] ? why : "needs an IP address");
		char t[80];
		cidr_addr_format_port(&a, port, t, sizeof t);
		if (!(c->dns_servers[i] = strdup(t)))
			return config_fail(b->err, "out of memory");
		c->n_dns_servers++;
	}
	return true;
}

static cJSON *show_dns_servers(const struct config_build *b, const struct setting *s)
{
	(void)s;
	cJSON *a = cJSON_CreateArray();
	for (size_t i = 0; i < b->c->n_dns_servers; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(b->c->dns_servers[i]));
	return a;
}

/* ------------------------------------------------------------------ */
/* lists that add up: routes, lifted guards, --allow */

static bool add_routes(struct config_build *b, const struct setting *s, const struct origin *o,
		       const char *const *v, size_t n)
{
	char q[256], reason[200], at[340];
	(void)s;
	for (size_t i = 0; i < n; i++) {
		struct cidr_prefix p;
		size_t len = strlen(v[i]);
		if (!cidr_prefix_parse_reason(v[i], len, &p, reason, sizeof reason))
			return config_fail(b->err, "%s: \"%s\"%s%s", origin_at(o, i, at, sizeof at),
					   config_quote(v[i], q, sizeof q),
					   strncmp(reason, "has ", 4) ? ": " : " ", reason);
		void *nv = realloc(b->routes, (b->n_routes + 1) * sizeof *b->routes);
		if (!nv)
			return config_fail(b->err, "out of memory");
		b->routes = nv;
		struct route_entry *r = &b->routes[b->n_routes++];
		r->p = p;
		origin_at(o, i, r->origin, sizeof r->origin);
		snprintf(r->text, sizeof r->text, "%.60s", v[i]);
	}
	return true;
}

static cJSON *show_routes(const struct config_build *b, const struct setting *s)
{
	char buf[64];
	(void)s;
	cJSON *a = cJSON_CreateArray();
	for (size_t i = 0; i < b->n_routes; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(
			cidr_prefix_format(&b->routes[i].p, buf, sizeof buf)));
	return a;
}

static bool add_lift(struct config_build *b, const struct setting *s, const struct origin *o,
		     const char *const *v, size_t n)
{
	char q[256], at[340], list[300];
	const char *const *g = policy_guard_names();
	(void)s;
	for (size_t i = 0; i < n; i++) {
		bool known = false, dup = false;
		for (size_t k = 0; g[k]; k++)
			known = known || strcmp(g[k], v[i]) == 0;
		if (!known) {
			join_or(g, list, sizeof list);
			return config_fail(b->err, "%s: \"%s\" is not a guard; expected %s",
					   origin_at(o, i, at, sizeof at),
					   config_quote(v[i], q, sizeof q), list);
		}
		for (size_t k = 0; k < b->lift.n; k++)
			dup = dup || strcmp(b->lift.v[k], v[i]) == 0;
		if (!dup && !strv_add(&b->lift, v[i]))
			return config_fail(b->err, "out of memory");
	}
	return true;
}

static cJSON *show_lift(const struct config_build *b, const struct setting *s)
{
	(void)s;
	cJSON *a = cJSON_CreateArray();
	for (size_t i = 0; i < b->lift.n; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(b->lift.v[i]));
	return a;
}

static bool add_allow(struct config_build *b, const struct setting *s, const struct origin *o,
		      const char *const *v, size_t n)
{
	char why[300];
	(void)s;
	for (size_t i = 0; i < n; i++) {
		if (!policy_dst_check(v[i], why, sizeof why))
			return config_fail(b->err, "%s: %s", o->text, why);
		if (!strv_add(&b->allow, v[i]))
			return config_fail(b->err, "out of memory");
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* the audit trail's sinks */

/* --audit-log PATH|-, repeatable: these replace the sinks. */
static bool set_sinks_text(struct config_build *b, const struct setting *s,
			   const struct origin *o, const char *const *v, size_t n)
{
	(void)s;
	(void)o;
	build_clear_sinks(b);
	b->sinks_set = true;
	for (size_t i = 0; i < n; i++) {
		bool out = strcmp(v[i], "-") == 0;
		if (!build_add_sink(b, out ? AUDIT_SINK_STDOUT : AUDIT_SINK_FILE, out ? NULL : v[i],
				    NULL))
			return config_fail(b->err, "out of memory");
	}
	return true;
}

/* The file's [{"type": "file", "path": ...}, {"type": "syslog", ...}]. */
static bool set_sinks_json(struct config_build *b, const struct setting *s,
			   const struct origin *o, const cJSON *v)
{
	static const char *const keys[] = { "type", "path", "target", NULL };
	char path[340], q[256];
	(void)s;
	if (!cJSON_IsArray(v))
		return config_fail(b->err, "%s: is %s; expected an array of objects", o->text,
				   json_type_name(v));
	build_clear_sinks(b);
	b->sinks_set = true;
	struct origin item = *o;
	item.indexed = true;
	size_t i = 0;
	for (const cJSON *k = v->child; k; k = k->next, i++) {
		origin_at(&item, i, path, sizeof path);
		if (!cJSON_IsObject(k))
			return config_fail(b->err, "%s: is %s; expected an object", path,
					   json_type_name(k));
		if (!json_check_keys(b->err, path, k, keys, 3))
			return false;
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(k, "type");
		const cJSON *p = cJSON_GetObjectItemCaseSensitive(k, "path");
		const cJSON *g = cJSON_GetObjectItemCaseSensitive(k, "target");
		bool ok;
		if (!t || !cJSON_IsString(t))
			return config_fail(b->err, "%s.type: is missing; expected file, stdout or syslog",
					   path);
		if (strcmp(t->valuestring, "file") == 0) {
			if (!p || !cJSON_IsString(p) || !p->valuestring[0])
				return config_fail(b->err, "%s.path: is missing; a file sink needs a path",
						   path);
			ok = build_add_sink(b, AUDIT_SINK_FILE, p->valuestring, NULL);
		} else if (strcmp(t->valuestring, "stdout") == 0) {
			ok = build_add_sink(b, AUDIT_SINK_STDOUT, NULL, NULL);
		} else if (strcmp(t->valuestring, "syslog") == 0) {
			const char *tg = g && cJSON_IsString(g) ? g->valuestring : "unix:/dev/log";
			if (!audit_syslog_target_check(tg))
				return config_fail(b->err, "%s.target: \"%s\" is not a syslog target; "
						   "expected unix:/PATH, udp:HOST:PORT or tcp:HOST:PORT",
						   path, config_quote(tg, q, sizeof q));
			ok = build_add_sink(b, AUDIT_SINK_SYSLOG, NULL, tg);
		} else {
			return config_fail(b->err, "%s.type: \"%s\" is not a sink type; expected file, "
					   "stdout or syslog", path,
					   config_quote(t->valuestring, q, sizeof q));
		}
		if (!ok)
			return config_fail(b->err, "out of memory");
	}
	return true;
}

/* The sinks the trail really writes to (stdout when none was set). */
static cJSON *show_sinks(const struct config_build *b, const struct setting *s)
{
	(void)s;
	cJSON *a = cJSON_CreateArray();
	for (size_t i = 0; i < b->c->audit.n_sinks; i++) {
		const struct audit_sink_config *k = &b->c->audit.sinks[i];
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "type", k->kind == AUDIT_SINK_FILE ? "file"
					: k->kind == AUDIT_SINK_STDOUT ? "stdout" : "syslog");
		if (k->path)
			cJSON_AddStringToObject(o, "path", k->path);
		if (k->target)
			cJSON_AddStringToObject(o, "target", k->target);
		cJSON_AddItemToArray(a, o);
	}
	return a;
}

/* --audit-syslog TARGET: one syslog sink more. */
static bool set_syslog(struct config_build *b, const struct setting *s, const struct origin *o,
		       const char *const *v, size_t n)
{
	char q[256];
	(void)s;
	if (n == 0)
		return true;
	if (!audit_syslog_target_check(v[n - 1]))
		return config_fail(b->err, "%s: \"%s\" is not a syslog target; expected unix:/PATH, "
				   "udp:HOST:PORT or tcp:HOST:PORT", o->text,
				   config_quote(v[n - 1], q, sizeof q));
	free(b->syslog_extra);
	b->syslog_extra = strdup(v[n - 1]);
	return b->syslog_extra || config_fail(b->err, "out of memory");
}

/* ------------------------------------------------------------------ */
/* users and rules: checked by config.c once every source is read */

static bool set_users(struct config_build *b, const struct setting *s, const struct origin *o,
		      const cJSON *v)
{
	(void)s;
	if (!cJSON_IsObject(v))
		return config_fail(b->err, "%s: is %s; expected an object of name: hash", o->text,
				   json_type_name(v));
	b->file_users = v;
	return true;
}

static cJSON *show_users(const struct config_build *b, const struct setting *s)
{
	(void)s;
	return b->file_users ? cJSON_Duplicate(b->file_users, true) : cJSON_CreateObject();
}

static bool set_rules(struct config_build *b, const struct setting *s, const struct origin *o,
		      const cJSON *v)
{
	(void)s;
	if (!cJSON_IsArray(v))
		return config_fail(b->err, "%s: is %s; expected an array of rule objects", o->text,
				   json_type_name(v));
	b->file_rules = v;
	return true;
}

static cJSON *accept_rule(const char *name, const char *dst)
{
	cJSON *r = cJSON_CreateObject();
	cJSON_AddStringToObject(r, "name", name);
	cJSON_AddStringToObject(r, "action", "accept");
	cJSON *d = cJSON_AddArrayToObject(r, "dst");
	cJSON_AddItemToArray(d, cJSON_CreateString(dst));
	return r;
}

/* The rules in evaluation order, as rule objects the file could hold: the
 * file's (or the default), then --allow's. */
static cJSON *show_rules(const struct config_build *b, const struct setting *s)
{
	(void)s;
	cJSON *a = cJSON_CreateArray();
	if (b->file_rules && b->file_rules->child) {
		for (const cJSON *r = b->file_rules->child; r; r = r->next)
			cJSON_AddItemToArray(a, cJSON_Duplicate(r, true));
	} else {
		bool live = b->c->tailscaled_socket != NULL;
		cJSON_AddItemToArray(a, accept_rule(live ? "default: accept tailnet:* for every user"
							 : "default: accept routes:* for every user",
						    live ? "tailnet:*" : "routes:*"));
	}
	for (size_t i = 0; i < b->allow.n; i++) {
		char name[300];
		snprintf(name, sizeof name, "--allow %s", b->allow.v[i]);
		cJSON_AddItemToArray(a, accept_rule(name, b->allow.v[i]));
	}
	return a;
}

/* ------------------------------------------------------------------ */
/* inbound: the values as given, per source; inbound_config.c compiles them
 * (its entries, rules and precedence are its own) */

static bool set_inbound_json(struct config_build *b, const struct setting *s,
			     const struct origin *o, const cJSON *v)
{
	(void)s;
	(void)o;
	b->inbound.file = v;	/* inbound_config.c checks its shape */
	return true;
}

static bool set_inbound_text(struct config_build *b, const struct setting *s,
			     const struct origin *o, const char *const *v, size_t n)
{
	bool env = o->src == SRC_ENV;
	const char *last = n ? v[n - 1] : NULL;
	if (strcmp(s->flag, "inbound") == 0) {
		if (env) {
			b->inbound.env = last;
		} else {
			b->inbound.flags = v;
			b->inbound.n_flags = n;
		}
	} else if (strcmp(s->flag, "inbound-policy") == 0) {
		*(env ? &b->inbound.env_policy : &b->inbound.flag_policy) = last;
	} else if (strcmp(s->flag, "inbound-listen") == 0) {
		*(env ? &b->inbound.env_listen : &b->inbound.flag_listen) = last;
	} else {
		*(env ? &b->inbound.env_peer_check : &b->inbound.flag_peer_check) = last;
	}
	return true;
}

static cJSON *show_inbound(const struct config_build *b, const struct setting *s)
{
	(void)s;
	cJSON *tmp = cJSON_CreateObject();
	inbound_config_effective(b->c->inbound, tmp);
	cJSON *v = cJSON_DetachItemFromObject(tmp, "inbound");
	cJSON_Delete(tmp);
	return v ? v : cJSON_CreateArray();
}

/* ------------------------------------------------------------------ */
/* the table */

#define FIELD(f) .offset = offsetof(struct config, f), .size = sizeof(((struct config *)0)->f)
#define MS(n) ((unsigned long long)(n))

static const char *const relay_names[] = { "splice", "copy", NULL };
static const int relay_values[] = { 1, 0 };
static const char *const failure_names[] = { "deny", "continue", NULL };
static const int failure_values[] = { 1, 0 };
static const char *const durability_names[] = { "queued", "written", "synced", NULL };
static const int durability_values[] = { AUDIT_DURABILITY_QUEUED, AUDIT_DURABILITY_WRITTEN,
					  AUDIT_DURABILITY_SYNCED };
static const char *const level_names[] = { "error", "warn", "info", "debug", NULL };
static const int level_values[] = { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO,
				    LOG_LEVEL_DEBUG };

const struct setting config_settings[] = {
	{ .flag = "config", .env = "TAILFENCE_CONFIG", .arg = "FILE", .kind = SK_OTHER,
	  .help = "the JSON config file (comments and trailing commas allowed)" },
	{ .key = "listen", .flag = "listen", .env = "TAILFENCE_LISTEN", .arg = "IP:PORT",
	  .kind = SK_OTHER, .flags = SF_LIST, .def = "127.0.0.1:1080",
	  .help = "where clients connect; IPv6 as [::1]:1080, IP addresses only (localhost is "
		  "127.0.0.1). Anything but loopback needs users (or --force-public-listen)",
	  .set = set_listen, .show = show_listen },
	{ .key = "threads", .flag = "threads", .env = "TAILFENCE_THREADS", .arg = "N",
	  .kind = SK_COUNT, FIELD(threads), .min = 0, .max = 256, .def = "0",
	  .def_text = "0: one per CPU",
	  .help = "event loops, each on a thread of its own accepting on its own socket of "
		  "every listen address (SO_REUSEPORT); 0: one per CPU this process may run on" },
	{ .key = "upstream", .flag = "upstream", .env = "TAILFENCE_UPSTREAM", .arg = "URL",
	  .kind = SK_OTHER, .def = "socks5://127.0.0.1:1055",
	  .help = "how allowed connections are dialed: socks5://IP:PORT (tailscaled "
		  "--socks5-server), http://IP:PORT (--outbound-http-proxy-listen) or direct "
		  "(kernel-mode tailscale)",
	  .set = set_upstream, .show = show_upstream },
	{ .key = "tailscaled_socket", .flag = "tailscaled-socket", .env = "TAILSCALE_SOCKET",
	  .arg = "PATH|none", .kind = SK_OTHER, .flags = SF_ENV_EMPTY,
	  .def = DEFAULT_TAILSCALED_SOCKET,
	  .help = "tailscaled's LocalAPI socket: the fence follows what the tailnet carries for "
		  "this node, read live from it. none: the static routes decide",
	  .set = set_socket, .show = show_socket },
	{ .key = "close_revoked", .flag = "close-revoked", .env = "TAILFENCE_CLOSE_REVOKED",
	  .kind = SK_BOOL, FIELD(close_revoked), .switch_to = "true", .def = "false",
	  .help = "when the tailnet stops carrying a destination, also close the relays open "
		  "to it (otherwise they run on)" },
	{ .key = "routes", .flag = "route", .env = "TAILSCALE_ADVERTISE_ROUTES", .arg = "PREFIX",
	  .kind = SK_OTHER, .flags = SF_LIST,
	  .help = "static routes (the routes: alias), added up across file, variable and flags. "
		  "With a tailscaled socket they are this node's own and only warned about",
	  .set = add_routes, .show = show_routes },
	{ .key = "allow_default_route", .flag = "allow-default-route",
	  .env = "TAILFENCE_ALLOW_DEFAULT_ROUTE", .kind = SK_BOOL, FIELD(allow_default_route),
	  .switch_to = "true", .def = "false",
	  .help = "let a /0 allow everything: the selected exit node's (live), 0.0.0.0/0 or ::/0 "
		  "in the routes (static), an --allow covering every address" },
	{ .key = "lift_guards", .flag = "lift-guard", .env = "TAILFENCE_LIFT_GUARDS",
	  .arg = "NAME", .kind = SK_OTHER, .flags = SF_LIST,
	  .help = "lift a built-in guard: loopback, link-local, this-network, multicast, "
		  "broadcast, tailscale-service, upstream or self; added up across sources",
	  .set = add_lift, .show = show_lift },
	{ .key = "force_public_listen", .flag = "force-public-listen",
	  .env = "TAILFENCE_FORCE_PUBLIC_LISTEN", .kind = SK_BOOL, FIELD(force_public_listen),
	  .switch_to = "true", .def = "false",
	  .help = "allow a listener or admin address other than loopback without users" },
	{ .key = "users", .kind = SK_OTHER,
	  .help = "name: hash from `tailfence passwd`. With any user, every client logs in "
		  "(SOCKS5 username/password, HTTP Proxy-Authorization: Basic); see Users and logins",
	  .set_json = set_users, .show = show_users },
	{ .key = "rules", .kind = SK_OTHER, .def_text = "accept tailnet:* (live) or routes:*",
	  .help = "rule objects (name, action, dst, src, users, via), first match wins; see Rules",
	  .set_json = set_rules, .show = show_rules },
	{ .flag = "allow", .arg = "PREFIX[:PORTS]", .kind = SK_OTHER, .flags = SF_LIST,
	  .help = "accept a prefix, after the file's rules; PORTS *, N, N-M or a comma list "
		  "(IPv6: [fd00::/64]:443)",
	  .set = add_allow },
	{ .key = "limits.handshake_timeout", .flag = "handshake-timeout",
	  .env = "TAILFENCE_HANDSHAKE_TIMEOUT", .arg = "DUR", .kind = SK_DURATION,
	  FIELD(handshake_timeout_ms), .min = 1, .def = "10s",
	  .help = "from a client's first byte to its complete request" },
	{ .key = "limits.connect_timeout", .flag = "connect-timeout",
	  .env = "TAILFENCE_CONNECT_TIMEOUT", .arg = "DUR", .kind = SK_DURATION,
	  FIELD(connect_timeout_ms), .min = 1, .def = "10s",
	  .help = "the upstream dial, its handshake included" },
	{ .key = "limits.dns_timeout", .flag = "dns-timeout", .env = "TAILFENCE_DNS_TIMEOUT",
	  .arg = "DUR", .kind = SK_DURATION, FIELD(dns_timeout_ms), .min = 1, .def = "5s",
	  .help = "name resolution" },
	{ .key = "limits.idle_timeout", .flag = "idle-timeout", .env = "TAILFENCE_IDLE_TIMEOUT",
	  .arg = "DUR", .kind = SK_DURATION, FIELD(idle_timeout_ms), .min = 1, .def = "15m",
	  .help = "a relay with no traffic either way is closed" },
	{ .key = "limits.shutdown_grace", .flag = "shutdown-grace",
	  .env = "TAILFENCE_SHUTDOWN_GRACE", .arg = "DUR", .kind = SK_DURATION,
	  FIELD(shutdown_grace_ms), .min = 0, .def = "10s",
	  .help = "how long relays may finish after SIGTERM" },
	{ .key = "limits.max_head_bytes", .flag = "max-head-bytes",
	  .env = "TAILFENCE_MAX_HEAD_BYTES", .arg = "N", .kind = SK_COUNT, FIELD(max_head_bytes),
	  .min = 1024, .max = 1048576, .def = "16384",
	  .help = "the largest HTTP request head" },
	{ .key = "limits.max_connections", .flag = "max-connections",
	  .env = "TAILFENCE_MAX_CONNECTIONS", .arg = "N", .kind = SK_COUNT,
	  FIELD(max_connections), .min = 1, .max = 1000000, .def = "4096",
	  .help = "concurrent client connections; more wait in the kernel's backlog" },
	{ .key = "limits.buffer_bytes", .flag = "buffer-bytes", .env = "TAILFENCE_BUFFER_BYTES",
	  .arg = "N", .kind = SK_COUNT, FIELD(buffer_bytes), .min = 4096, .max = 67108864,
	  .def = "262144", .help = "bytes buffered per direction before reading pauses" },
	{ .key = "limits.relay", .flag = "relay", .env = "TAILFENCE_RELAY", .arg = "splice|copy",
	  .kind = SK_CHOICE, FIELD(relay_splice), .choices = relay_names, .values = relay_values,
	  .what = "a relay mode", .def = "splice",
	  .help = "how relayed bytes move: splice hands a relay that has moved 64 KiB (with "
		  "nothing buffered) to splice(2), so bulk bytes never enter user space; copy "
		  "keeps every byte in user space" },
	{ .key = "limits.udp_destinations", .flag = "udp-destinations",
	  .env = "TAILFENCE_UDP_DESTINATIONS", .arg = "N", .kind = SK_COUNT,
	  FIELD(udp_destinations), .min = 1, .max = 65536, .def = "64",
	  .help = "distinct destinations per UDP association" },
	{ .key = "limits.udp_datagrams_per_second", .flag = "udp-rate", .env = "TAILFENCE_UDP_RATE",
	  .arg = "N", .kind = SK_COUNT, FIELD(udp_rate), .min = 1, .max = 1000000, .def = "1000",
	  .help = "datagrams per second a client may send on one UDP association" },
	{ .key = "limits.udp_idle_timeout", .flag = "udp-idle-timeout",
	  .env = "TAILFENCE_UDP_IDLE_TIMEOUT", .arg = "DUR", .kind = SK_DURATION,
	  FIELD(udp_idle_timeout_ms), .min = 1, .def = "2m",
	  .help = "a UDP association with no datagram either way is closed" },
	{ .key = "dns.servers", .flag = "dns-server", .env = "TAILFENCE_DNS_SERVERS",
	  .arg = "IP[:PORT]", .kind = SK_OTHER, .flags = SF_LIST,
	  .def_text = "those of /etc/resolv.conf",
	  .help = "nameservers for the names clients send; IPv6 with a port as [::1]:53",
	  .set = set_dns_servers, .show = show_dns_servers },
	{ .key = "dns.hosts_file", .flag = "hosts-file", .env = "TAILFENCE_HOSTS_FILE",
	  .arg = "PATH", .kind = SK_PATH, .flags = SF_NULL_OK, FIELD(hosts_file),
	  .def = "/etc/hosts", .help = "the hosts file consulted before the nameservers; "
				       "null (or an empty value) for none" },
	{ .key = "audit.sinks", .flag = "audit-log", .env = "TAILFENCE_AUDIT_LOG",
	  .arg = "PATH|-", .kind = SK_OTHER, .flags = SF_LIST | SF_ENV_WHOLE,
	  .def_text = "- (stdout)",
	  .help = "where the audit trail goes; - is stdout. The flag is repeatable; flag and "
		  "variable replace the file's sinks, which are objects {\"type\": \"file\", "
		  "\"path\": ...}, {\"type\": \"stdout\"} or {\"type\": \"syslog\", \"target\": ...}",
	  .set = set_sinks_text, .set_json = set_sinks_json, .show = show_sinks },
	{ .flag = "audit-syslog", .env = "TAILFENCE_AUDIT_SYSLOG", .arg = "TARGET",
	  .kind = SK_OTHER, .def_text = "off",
	  .help = "also send the audit trail to syslog: unix:/dev/log, udp:HOST:PORT or tcp:HOST:PORT",
	  .set = set_syslog },
	{ .key = "audit.on_failure", .flag = "audit-on-failure", .env = "TAILFENCE_AUDIT_ON_FAILURE",
	  .arg = "deny|continue", .kind = SK_CHOICE, FIELD(audit.fail_closed),
	  .choices = failure_names, .values = failure_values, .def = "continue",
	  .help = "when the audit trail cannot be written: refuse connections (deny) or keep "
		  "serving" },
	{ .key = "audit.hmac_key_file", .flag = "audit-hmac-key", .env = "TAILFENCE_AUDIT_HMAC_KEY",
	  .arg = "FILE", .kind = SK_PATH, .flags = SF_NULL_OK, FIELD(audit.hmac_key_file),
	  .def_text = "off", .help = "chain the records with an HMAC under the key in this file" },
	{ .key = "audit.flush_ms", .flag = "audit-flush-ms", .env = "TAILFENCE_AUDIT_FLUSH_MS",
	  .arg = "N", .kind = SK_COUNT, FIELD(audit.flush_ms), .min = 1, .max = 60000,
	  .def = "200", .help = "with durability queued, the longest a record waits before it "
				       "is written, in milliseconds" },
	{ .key = "audit.durability", .flag = "audit-durability", .env = "TAILFENCE_AUDIT_DURABILITY",
	  .arg = "queued|written|synced", .kind = SK_CHOICE, FIELD(audit.durability),
	  .choices = durability_names, .values = durability_values, .what = "a durability",
	  .def = "written",
	  .help = "dial once the decision record is queued, written to every sink, or written "
		  "and fdatasync'd" },
	{ .key = "log_level", .flag = "log-level", .env = "TAILFENCE_LOG_LEVEL", .arg = "LEVEL",
	  .kind = SK_CHOICE, FIELD(log_level), .choices = level_names, .values = level_values,
	  .what = "a log level", .def = "info",
	  .help = "the operator log on stderr: error, warn, info or debug" },
	{ .key = "admin", .flag = "admin", .env = "TAILFENCE_ADMIN", .arg = "IP:PORT|off",
	  .kind = SK_OTHER, .flags = SF_ENV_EMPTY | SF_NULL_OK, .def_text = "off",
	  .help = "serve /metrics (Prometheus), /healthz and /readyz over HTTP here; loopback "
		  "unless users are configured (or --force-public-listen). Bound at start: a "
		  "reload does not move it",
	  .set = set_admin, .show = show_admin },
	{ .key = "udp", .flag = "no-udp", .env = "TAILFENCE_UDP", .kind = SK_BOOL, FIELD(udp),
	  .switch_to = "false", .def = "true",
	  .help = "SOCKS5 UDP ASSOCIATE is served under the same policy as TCP; the flag (or "
		  "false) refuses it" },
	{ .key = "inbound", .flag = "inbound", .env = "TAILFENCE_INBOUND", .arg = "PORT=HOST:PORT",
	  .kind = SK_OTHER, .flags = SF_LIST | SF_ENV_WHOLE,
	  .help = "serve HOST:PORT to tailnet port PORT through tailscale serve "
		  "--proxy-protocol 2, by identity; repeatable or comma-separated. The variable "
		  "replaces the file's entries and the flag the variable; see Inbound",
	  .set = set_inbound_text, .set_json = set_inbound_json, .show = show_inbound },
	{ .flag = "inbound-policy", .env = "TAILFENCE_INBOUND_POLICY", .arg = "FILE",
	  .kind = SK_OTHER, .flags = SF_ENV_WHOLE,
	  .help = "identity rules for the --inbound (TAILFENCE_INBOUND) services, per port",
	  .set = set_inbound_text },
	{ .flag = "inbound-listen", .env = "TAILFENCE_INBOUND_LISTEN", .arg = "IP:PORT",
	  .kind = SK_OTHER, .flags = SF_ENV_WHOLE, .def_text = INBOUND_DEFAULT_LISTEN,
	  .help = "where the --inbound services listen, counting up the port; loopback, "
		  "never 127.0.0.1",
	  .set = set_inbound_text },
	{ .flag = "inbound-peer-check", .env = "TAILFENCE_INBOUND_PEER_CHECK",
	  .arg = "tailscaled|loopback", .kind = SK_OTHER, .flags = SF_ENV_WHOLE,
	  .def_text = "tailscaled",
	  .help = "who may connect to the inbound listeners: tailscaled's own process, or any "
		  "local one",
	  .set = set_inbound_text },
	{ .flag = "user", .arg = "NAME", .kind = SK_OTHER, .flags = SF_CHECK_ONLY,
	  .help = "check as this user (tailfence check only)" },
	{ .flag = "src", .arg = "IP", .kind = SK_OTHER, .flags = SF_CHECK_ONLY,
	  .def_text = "127.0.0.1", .help = "check as a client at this address (tailfence check "
					   "only)" },
};

const size_t config_n_settings = sizeof config_settings / sizeof config_settings[0];

const struct setting *setting_by_flag(const char *flag)
{
	for (size_t i = 0; i < config_n_settings; i++)
		if (config_settings[i].flag && strcmp(config_settings[i].flag, flag) == 0)
			return &config_settings[i];
	return NULL;
}
