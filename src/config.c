/*
 * config: one immutable, reference-counted struct config (with its
 * compiled policy) from the embedded defaults, the config file, the
 * environment and the flags, in rising precedence. The settings
 * themselves, their types and defaults are rows of config_table.c; this
 * file reads the sources in order, applies each row, then checks what only
 * the settings together can tell (a default route without
 * allow_default_route, a public listener without users), compiles the
 * users and rules into the policy and records the merged config for
 * `config show`. Every error names the key path, flag or variable, the
 * value and what was expected.
 */
#include "config_internal.h"

#include "tailfence/auth.h"
#include "tailfence/inbound_config.h"
#include "tailfence/log.h"

#include <errno.h>
#include <ifaddrs.h>
#include <libgen.h>
#include <openssl/crypto.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* errors and origins */

bool config_fail(struct config_err *e, const char *fmt, ...)
{
	if (!e->failed) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(e->buf, e->len, fmt, ap);
		va_end(ap);
		e->failed = true;
	}
	return false;
}

const char *config_quote(const char *s, char *buf, size_t len)
{
	size_t j = 0;
	if (!s)
		s = "";
	for (size_t i = 0; s[i] && j + 8 < len; i++) {
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

const char *origin_at(const struct origin *o, size_t i, char *buf, size_t len)
{
	if (o->indexed)
		snprintf(buf, len, "%s[%zu]", o->text, i);
	else
		snprintf(buf, len, "%s", o->text);
	return buf;
}

/* ------------------------------------------------------------------ */
/* the build's own state */

bool build_add_sink(struct config_build *b, enum audit_sink_kind k, const char *path,
		    const char *target)
{
	struct audit_sink_config *v = realloc(b->sinks, (b->n_sinks + 1) * sizeof *v);
	if (!v)
		return false;
	b->sinks = v;
	memset(&v[b->n_sinks], 0, sizeof v[b->n_sinks]);
	v[b->n_sinks].kind = k;
	if (path && !(v[b->n_sinks].path = strdup(path)))
		return false;
	if (target && !(v[b->n_sinks].target = strdup(target)))
		return false;
	b->n_sinks++;
	return true;
}

void build_clear_sinks(struct config_build *b)
{
	for (size_t i = 0; i < b->n_sinks; i++) {
		free(b->sinks[i].path);
		free(b->sinks[i].target);
	}
	free(b->sinks);
	b->sinks = NULL;
	b->n_sinks = 0;
}

static void build_free(struct config_build *b)
{
	build_clear_sinks(b);
	free(b->syslog_extra);
	free(b->routes);
	strv_free(&b->lift);
	strv_free(&b->allow);
	policy_builder_free(b->b);
}

/* A row is applied from the sources unless another part reads it itself
 * (--config, and check's --user and --src). */
static bool applied(const struct setting *s)
{
	return s->kind != SK_OTHER || s->set || s->set_json;
}

/* ------------------------------------------------------------------ */
/* 1. the embedded defaults */

static bool apply_defaults(struct config_build *b)
{
	struct origin o = { .src = SRC_DEFAULT, .text = "default" };
	b->c->relay_splice = true;	/* zeroed fields are the others' defaults */
	for (size_t i = 0; i < config_n_settings; i++) {
		const struct setting *s = &config_settings[i];
		if (s->def && applied(s) && !setting_apply_text(b, s, &o, &s->def, 1))
			return false;
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* 2. the file */

/* The keys an object at prefix ("", "limits.") may hold; groups are the
 * ones with keys below them. */
static size_t keys_at(const char *prefix, const char **names, bool *group, size_t max)
{
	size_t n = 0, pl = strlen(prefix);
	for (size_t i = 0; i < config_n_settings; i++) {
		const char *k = config_settings[i].key;
		if (!k || strncmp(k, prefix, pl) != 0)
			continue;
		const char *name = k + pl;
		size_t len = strcspn(name, ".");
		bool dup = false;
		for (size_t j = 0; j < n; j++)
			dup = dup || (strlen(names[j]) == len && strncmp(names[j], name, len) == 0);
		if (dup || n == max)
			continue;
		group[n] = name[len] == '.';
		names[n++] = name;	/* compared with its length below */
	}
	return n;
}

/* Refuses unknown and duplicate keys in obj and in the groups below it. */
static bool check_file_keys(struct config_build *b, const char *file, const char *prefix,
			    const cJSON *obj)
{
	const char *names[64];
	bool group[64];
	char known[64][64], path[320];
	const char *known_v[64];
	size_t n = keys_at(prefix, names, group, 64);
	for (size_t i = 0; i < n; i++) {
		snprintf(known[i], sizeof known[i], "%.*s", (int)strcspn(names[i], "."), names[i]);
		known_v[i] = known[i];
	}
	if (prefix[0])
		snprintf(path, sizeof path, "%s: %.*s", file, (int)strlen(prefix) - 1, prefix);
	else
		snprintf(path, sizeof path, "%s", file);
	if (!json_check_keys(b->err, path, obj, known_v, n))
		return false;
	for (size_t i = 0; i < n; i++) {
		const cJSON *v;
		if (!group[i] || !(v = cJSON_GetObjectItemCaseSensitive(obj, known[i])))
			continue;
		char sub[128];
		snprintf(sub, sizeof sub, "%s%s.", prefix, known[i]);
		if (!cJSON_IsObject(v))
			return config_fail(b->err, "%s: %.*s: is %s; expected an object", file,
					   (int)strlen(sub) - 1, sub, json_type_name(v));
		if (!check_file_keys(b, file, sub, v))
			return false;
	}
	return true;
}

/* The value at a dotted key path, or NULL. */
static const cJSON *lookup(const cJSON *root, const char *key)
{
	char part[64];
	const cJSON *v = root;
	while (v && *key) {
		size_t len = strcspn(key, ".");
		snprintf(part, sizeof part, "%.*s", (int)len, key);
		v = cJSON_GetObjectItemCaseSensitive(v, part);
		key += len + (key[len] == '.');
	}
	return v;
}

static bool apply_file(struct config_build *b, const char *file, const cJSON *root)
{
	if (!check_file_keys(b, file, "", root))
		return false;
	for (size_t i = 0; i < config_n_settings; i++) {
		const struct setting *s = &config_settings[i];
		const cJSON *v;
		if (!s->key || !applied(s) || !(v = lookup(root, s->key)))
			continue;
		struct origin o = { .src = SRC_FILE };
		snprintf(o.text, sizeof o.text, "%s: %s", file, s->key);
		if (!setting_apply_json(b, s, &o, v))
			return false;
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* 3. the environment */

/* Splits at commas, trims spaces and drops empty items. */
static bool split_list(const char *s, struct strv *out)
{
	for (const char *p = s;;) {
		size_t n = strcspn(p, ",");
		const char *a = p, *e = p + n;
		while (a < e && *a == ' ')
			a++;
		while (e > a && e[-1] == ' ')
			e--;
		if (e > a) {
			char *item = strndup(a, (size_t)(e - a));
			bool ok = item && strv_add(out, item);
			free(item);
			if (!ok)
				return false;
		}
		if (!p[n])
			return true;
		p += n + 1;
	}
}

static bool apply_env(struct config_build *b)
{
	const struct config_input *in = b->in;
	if (!in->getenv)
		return true;
	for (size_t i = 0; i < config_n_settings; i++) {
		const struct setting *s = &config_settings[i];
		if (!s->env || !applied(s))
			continue;
		const char *v = in->getenv(in->env_arg, s->env);
		if (!v || (!v[0] && !(s->flags & SF_ENV_EMPTY)))
			continue;
		struct origin o = { .src = SRC_ENV };
		snprintf(o.text, sizeof o.text, "%s", s->env);
		bool ok;
		if ((s->flags & SF_LIST) && !(s->flags & SF_ENV_WHOLE)) {
			struct strv items = { 0 };
			ok = split_list(v, &items) ?
			     setting_apply_text(b, s, &o, (const char *const *)items.v, items.n) :
			     config_fail(b->err, "out of memory");
			strv_free(&items);
		} else {
			ok = setting_apply_text(b, s, &o, &v, 1);
		}
		if (!ok)
			return false;
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* 4. the flags */

static bool apply_flags(struct config_build *b, const struct config_args *args)
{
	for (size_t i = 0; args && i < config_n_settings; i++) {
		const struct setting *s = &config_settings[i];
		const struct strv *v = config_args_values(args, s);
		if (!v->n || !applied(s))
			continue;
		struct origin o = { .src = SRC_FLAG };
		snprintf(o.text, sizeof o.text, "--%s", s->flag);
		if (!setting_apply_text(b, s, &o, (const char *const *)v->v, v->n))
			return false;
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* 5. across settings: routes, sinks, guards, users, rules, exposure */

static void add_own_addresses(struct policy_builder *b)
{
	struct ifaddrs *ifa = NULL;
	if (getifaddrs(&ifa) != 0)
		return;
	for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
		struct cidr_addr a;
		if (!i->ifa_addr || !cidr_addr_from_sockaddr(i->ifa_addr, &a, NULL))
			continue;
		bool loop = (a.family == AF_INET && a.b[0] == 127) ||
			    (a.family == AF_INET6 && a.b[15] == 1 &&
			     !memcmp(a.b, (const uint8_t[15]){ 0 }, 15));
		bool link = (a.family == AF_INET && a.b[0] == 169 && a.b[1] == 254) ||
			    (a.family == AF_INET6 && a.b[0] == 0xfe && (a.b[1] & 0xc0) == 0x80);
		if (!loop && !link)
			policy_builder_add_self(b, &a);
	}
	freeifaddrs(ifa);
}

static bool read_file(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return false;
	}
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	for (;;) {
		if (!buf)
			break;
		if (n == cap) {
			if (cap >= (16u << 20)) {
				snprintf(err, errlen, "%s: larger than 16 MiB; not a config file", path);
				free(buf);
				fclose(f);
				return false;
			}
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		size_t r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (r == 0)
			break;
	}
	bool bad = ferror(f);
	fclose(f);
	if (!buf || bad) {
		snprintf(err, errlen, "%s: cannot read", path);
		free(buf);
		return false;
	}
	*out = buf;
	*len = n;
	return true;
}

static bool apply_users(struct config_build *b)
{
	const char *file = b->c->source;
	char q[256], why[256];
	if (!b->file_users)
		return true;
	for (const cJSON *u = b->file_users->child; u; u = u->next) {
		for (const cJSON *p = b->file_users->child; p != u; p = p->next)
			if (strcmp(p->string, u->string) == 0)
				return config_fail(b->err, "%s: users: user \"%s\" appears twice", file,
						   config_quote(u->string, q, sizeof q));
		if (!cJSON_IsString(u))
			return config_fail(b->err, "%s: users.%s: is %s; expected a hash string from "
					   "`tailfence passwd`", file,
					   config_quote(u->string, q, sizeof q), json_type_name(u));
		why[0] = '\0';
		if (!auth_users_add(b->c->users, u->string, u->valuestring, why, sizeof why))
			return config_fail(b->err, "%s: users.%s: %s%s", file,
					   config_quote(u->string, q, sizeof q),
					   strncmp(why, "user ", 5) == 0 ? "" : "the hash ", why);
	}
	return true;
}

/* An optional list of strings of a rule: rules[i].dst and the like. */
static bool rule_list(struct config_build *b, const char *path, const cJSON *r, const char *key,
		      const char ***out, size_t *n)
{
	char p[340];
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, key);
	*out = NULL;
	*n = 0;
	if (!v)
		return true;
	snprintf(p, sizeof p, "%s.%s", path, key);
	return json_string_list(b->err, p, v, out, n);
}

static bool apply_rule(struct config_build *b, const cJSON *r, size_t idx)
{
	static const char *const keys[] = { "name", "action", "dst", "src", "users", "via" };
	static const char *const vias[] = { "tailnet", "direct", "upstream" };
	static const enum policy_via via_of[] = { POLICY_VIA_TAILNET, POLICY_VIA_DIRECT,
						  POLICY_VIA_UPSTREAM };
	char path[300], q[256], why[400];
	struct policy_rule_spec spec;
	const char **dst = NULL, **src = NULL, **users = NULL;
	bool ok = false;

	memset(&spec, 0, sizeof spec);
	snprintf(path, sizeof path, "%s: rules[%zu]", b->c->source, idx);
	if (!cJSON_IsObject(r))
		return config_fail(b->err, "%s: is %s; expected a rule object", path,
				   json_type_name(r));
	if (!json_check_keys(b->err, path, r, keys, 6))
		return false;
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, "name");
	if (v && !cJSON_IsString(v))
		return config_fail(b->err, "%s.name: is %s; expected a string", path,
				   json_type_name(v));
	spec.name = v ? v->valuestring : NULL;
	v = cJSON_GetObjectItemCaseSensitive(r, "action");
	if (!v)
		return config_fail(b->err, "%s.action: is missing; expected accept or deny", path);
	if (!cJSON_IsString(v) ||
	    (strcmp(v->valuestring, "accept") != 0 && strcmp(v->valuestring, "deny") != 0))
		return config_fail(b->err, "%s.action: \"%s\" is not valid; expected accept or deny",
				   path, cJSON_IsString(v) ? config_quote(v->valuestring, q, sizeof q)
							   : json_type_name(v));
	spec.action = strcmp(v->valuestring, "accept") == 0 ? POLICY_ACCEPT : POLICY_DENY;
	if ((v = cJSON_GetObjectItemCaseSensitive(r, "via"))) {
		size_t k = 0;
		while (k < 3 && !(cJSON_IsString(v) && strcmp(v->valuestring, vias[k]) == 0))
			k++;
		if (k == 3)
			return config_fail(b->err, "%s.via: \"%s\" is not valid; expected tailnet, direct "
					   "or upstream", path, cJSON_IsString(v) ?
					   config_quote(v->valuestring, q, sizeof q) : json_type_name(v));
		spec.via = via_of[k];
	}
	if (!cJSON_GetObjectItemCaseSensitive(r, "dst"))
		return config_fail(b->err, "%s.dst: is missing; expected a list like "
				   "[\"10.0.0.0/24:443\"]", path);
	if (!rule_list(b, path, r, "dst", &dst, &spec.n_dst) ||
	    !rule_list(b, path, r, "src", &src, &spec.n_src) ||
	    !rule_list(b, path, r, "users", &users, &spec.n_users))
		goto out;
	spec.dst = dst;
	spec.src = src;
	spec.users = users;
	why[0] = '\0';
	if (!policy_builder_add_rule(b->b, &spec, why, sizeof why)) {
		config_fail(b->err, "%s.%s", path, why);
		goto out;
	}
	ok = true;
out:
	free(dst);
	free(src);
	free(users);
	return ok;
}

/* The file's rules, or the default one, then --allow's. */
static bool apply_rules(struct config_build *b)
{
	bool live = b->c->tailscaled_socket != NULL;
	size_t n = 0;
	char q[256], why[300];
	for (const cJSON *r = b->file_rules ? b->file_rules->child : NULL; r; r = r->next, n++)
		if (!apply_rule(b, r, n))
			return false;
	if (n == 0) {
		const char *dst[] = { live ? "tailnet:*" : "routes:*" };
		struct policy_rule_spec def = {
			.name = live ? "default: accept tailnet:* for every user"
				     : "default: accept routes:* for every user",
			.action = POLICY_ACCEPT, .dst = dst, .n_dst = 1,
		};
		if (!policy_builder_add_rule(b->b, &def, why, sizeof why))
			return config_fail(b->err, "default rule: %s", why);
	}
	for (size_t i = 0; i < b->allow.n; i++) {
		const char *dst[] = { b->allow.v[i] };
		char name[300];
		if (policy_dst_covers_all(dst[0]) && !b->c->allow_default_route)
			return config_fail(b->err, "--allow: \"%s\" covers every address; pass "
					   "--allow-default-route if that is meant",
					   config_quote(dst[0], q, sizeof q));
		snprintf(name, sizeof name, "--allow %s", dst[0]);
		struct policy_rule_spec r = { .name = name, .action = POLICY_ACCEPT, .dst = dst,
					      .n_dst = 1 };
		if (!policy_builder_add_rule(b->b, &r, why, sizeof why))
			return config_fail(b->err, "--allow: %s", why);
	}
	return true;
}

/* Static routes feed the routes alias; a live policy follows the tailnet
 * and the configured routes are this node's own, which the tailnet does
 * not carry for it (the gateway warns about them). */
static bool apply_routes(struct config_build *b)
{
	struct config *c = b->c;
	bool live = c->tailscaled_socket != NULL;
	char q[256];
	policy_builder_set_live(b->b, live);
	c->static_routes = calloc(b->n_routes ? b->n_routes : 1, sizeof *c->static_routes);
	if (!c->static_routes)
		return config_fail(b->err, "out of memory");
	for (size_t i = 0; i < b->n_routes; i++) {
		const struct route_entry *r = &b->routes[i];
		c->static_routes[c->n_static_routes++] = r->p;
		if (live)
			continue;
		if (cidr_prefix_is_default(&r->p) && !c->allow_default_route)
			return config_fail(b->err, "%s: \"%s\" is a default route (exit node) and would "
					   "allow every destination; set \"allow_default_route\": "
					   "true or pass --allow-default-route if that is meant",
					   r->origin, config_quote(r->text, q, sizeof q));
		policy_builder_add_route(b->b, &r->p);
	}
	return true;
}

/* The trail's sinks: stdout unless some were set, and --audit-syslog's. */
static bool finish_sinks(struct config_build *b)
{
	if (!b->sinks_set && !build_add_sink(b, AUDIT_SINK_STDOUT, NULL, NULL))
		return config_fail(b->err, "out of memory");
	if (b->syslog_extra && !build_add_sink(b, AUDIT_SINK_SYSLOG, NULL, b->syslog_extra))
		return config_fail(b->err, "out of memory");
	b->c->audit.sinks = b->sinks;
	b->c->audit.n_sinks = b->n_sinks;
	b->sinks = NULL;
	b->n_sinks = 0;
	return true;
}

/* Without users, only loopback addresses may serve the proxy or the admin
 * endpoint, unless force_public_listen says otherwise. */
static bool check_exposure(struct config_build *b)
{
	const struct config *c = b->c;
	if ((b->file_users && b->file_users->child) || c->force_public_listen)
		return true;
	for (size_t i = 0; i < c->n_listeners; i++) {
		if (c->listeners[i].loopback)
			continue;
		char idx[32] = "";
		if (b->listen_indexed)
			snprintf(idx, sizeof idx, "[%zu]", i);
		return config_fail(b->err, "%s%s: \"%s\" is not a loopback address and no users are "
				   "configured, so anyone who can reach it could use the proxy; add "
				   "\"users\" or set \"force_public_listen\": true "
				   "(--force-public-listen)", b->listen_origin, idx,
				   c->listeners[i].text);
	}
	if (c->has_admin && !c->admin.loopback)
		return config_fail(b->err, "%s: \"%s\" is not a loopback address and no users are "
				   "configured; the admin endpoint would be open to anyone who can "
				   "reach it; add \"users\" or set \"force_public_listen\": true "
				   "(--force-public-listen)", b->admin_origin, c->admin.text);
	return true;
}

/* The inbound listeners: inbound_config.c compiles them from what each
 * source gave. */
static bool apply_inbound(struct config_build *b)
{
	struct config *c = b->c;
	struct inbound_sources in = {
		.file_name = c->source, .file = b->inbound.file,
		.env = b->inbound.env, .env_policy = b->inbound.env_policy,
		.env_listen = b->inbound.env_listen, .env_peer_check = b->inbound.env_peer_check,
		.flags = b->inbound.flags, .n_flags = b->inbound.n_flags,
		.flag_policy = b->inbound.flag_policy, .flag_listen = b->inbound.flag_listen,
		.flag_peer_check = b->inbound.flag_peer_check,
		.tailscaled_socket = c->tailscaled_socket,
		.has_upstream = c->upstream.kind != CONFIG_UPSTREAM_DIRECT,
		.upstream_addr = c->upstream.addr, .upstream_port = c->upstream.port,
		.own_routes = c->static_routes, .n_own_routes = c->n_static_routes,
	};
	if (!(c->inbound = inbound_config_build(&in, b->err->buf, b->err->len))) {
		b->err->failed = true;
		return false;
	}
	return true;
}

/* Every file key with its effective value, in the table's order. */
static cJSON *show_all(const struct config_build *b)
{
	cJSON *root = cJSON_CreateObject();
	for (size_t i = 0; root && i < config_n_settings; i++) {
		const struct setting *s = &config_settings[i];
		if (!s->key)
			continue;
		cJSON *at = root;
		const char *k = s->key, *dot;
		char part[64];
		while ((dot = strchr(k, '.'))) {
			snprintf(part, sizeof part, "%.*s", (int)(dot - k), k);
			cJSON *sub = cJSON_GetObjectItemCaseSensitive(at, part);
			at = sub ? sub : cJSON_AddObjectToObject(at, part);
			k = dot + 1;
		}
		cJSON *v = setting_show(b, s);
		if (v)
			cJSON_AddItemToObject(at, k, v);
	}
	return root;
}

static bool finish(struct config_build *b)
{
	struct config *c = b->c;
	if (!apply_routes(b) || !finish_sinks(b))
		return false;
	for (size_t i = 0; i < b->lift.n; i++)
		policy_builder_lift_guard(b->b, b->lift.v[i]);
	if (c->upstream.kind != CONFIG_UPSTREAM_DIRECT)
		policy_builder_set_upstream(b->b, &c->upstream.addr, c->upstream.port);
	if (b->in->own_addresses)
		add_own_addresses(b->b);
	if (!apply_users(b))
		return false;
	policy_builder_set_users(b->b, c->users);
	if (!apply_rules(b) || !check_exposure(b) || !apply_inbound(b))
		return false;
	c->policy = policy_builder_finish(b->b);
	b->b = NULL;
	c->shown = show_all(b);
	if (!c->policy || !c->shown)
		return config_fail(b->err, "out of memory");
	return true;
}

static void config_free(struct config *c)
{
	if (!c)
		return;
	free(c->listeners);
	policy_free(c->policy);
	auth_users_free(c->users);
	inbound_config_free(c->inbound);
	for (size_t i = 0; i < c->audit.n_sinks; i++) {
		free(c->audit.sinks[i].path);
		free(c->audit.sinks[i].target);
	}
	free(c->audit.sinks);
	free(c->audit.hmac_key_file);
	for (size_t i = 0; i < c->n_dns_servers; i++)
		free(c->dns_servers[i]);
	free(c->dns_servers);
	free(c->hosts_file);
	free(c->tailscaled_socket);
	free(c->static_routes);
	free(c->source);
	cJSON_Delete(c->shown);
	free(c);
}

struct config *config_build_from(const struct config_input *in, const struct config_args *args,
				 char *err, size_t errlen)
{
	struct config_err e = { .buf = err, .len = errlen };
	struct config_build b = { .err = &e, .in = in };
	cJSON *root = NULL;
	bool ok = false;

	if (errlen)
		err[0] = '\0';
	b.c = calloc(1, sizeof *b.c);
	b.b = policy_builder_new();
	if (!b.c || !b.b) {
		config_fail(&e, "out of memory");
		goto out;
	}
	b.c->refs = 1;
	if (!(b.c->users = auth_users_new())) {
		config_fail(&e, "out of memory");
		goto out;
	}
	if (!apply_defaults(&b))
		goto out;
	if (in->file_name) {
		if (!(b.c->source = strdup(in->file_name))) {
			config_fail(&e, "out of memory");
			goto out;
		}
		root = config_parse_json(in->file_name, in->file_text, in->file_len, err, errlen);
		if (!root) {
			e.failed = true;
			goto out;
		}
		if (!apply_file(&b, in->file_name, root))
			goto out;
	}
	ok = apply_env(&b) && apply_flags(&b, args) && finish(&b);
out:
	if (!ok && !e.failed)
		config_fail(&e, "invalid configuration");
	build_free(&b);
	cJSON_Delete(root);
	if (ok)
		return b.c;
	config_free(b.c);
	return NULL;
}

static const char *process_env(void *arg, const char *name)
{
	(void)arg;
	return getenv(name);
}

struct config *config_build(const struct config_args *args, char *err, size_t errlen)
{
	struct config_input in = { .getenv = process_env, .own_addresses = true };
	const struct strv *flag = config_args_values(args, setting_by_flag("config"));
	const char *file = flag && flag->n ? flag->v[flag->n - 1] : getenv("TAILFENCE_CONFIG");
	char *text = NULL;
	if (file && file[0]) {
		if (!read_file(file, &text, &in.file_len, err, errlen))
			return NULL;
		in.file_name = file;
		in.file_text = text;
	}
	struct config *c = config_build_from(&in, args, err, errlen);
	free(text);
	return c;
}

char *config_show_json(const struct config *c, bool redact)
{
	cJSON *j = cJSON_Duplicate(c->shown, true);
	cJSON *users = cJSON_GetObjectItemCaseSensitive(j, "users");
	for (cJSON *u = users ? users->child : NULL; redact && u; u = u->next)
		cJSON_SetValuestring(u, "<redacted>");
	char *text = j ? cJSON_Print(j) : NULL;
	cJSON_Delete(j);
	return text;
}

/* ------------------------------------------------------------------ */
/* the files the daemon will open */

/* A file sink the daemon appends to: the file writable, or its directory
 * writable to create it in. Nothing is created. */
static bool sink_writable(const char *path, char *err, size_t errlen)
{
	if (access(path, W_OK) == 0)
		return true;
	if (errno != ENOENT) {
		snprintf(err, errlen, "audit.sinks: \"%s\": cannot be written: %s", path,
			 strerror(errno));
		return false;
	}
	char *copy = strdup(path);
	if (!copy) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	const char *dir = dirname(copy);
	bool ok = access(dir, W_OK | X_OK) == 0;
	if (!ok)
		snprintf(err, errlen, "audit.sinks: \"%s\": cannot be created: directory %s: %s",
			 path, dir, strerror(errno));
	free(copy);
	return ok;
}

bool config_check_files(const struct config *c, char *err, size_t errlen)
{
	if (c->audit.hmac_key_file) {
		unsigned char *key = NULL;
		size_t keylen = 0;
		if (!audit_key_load(c->audit.hmac_key_file, &key, &keylen, err, errlen))
			return false;
		OPENSSL_cleanse(key, keylen);
		free(key);
	}
	for (size_t i = 0; i < c->audit.n_sinks; i++)
		if (c->audit.sinks[i].kind == AUDIT_SINK_FILE &&
		    !sink_writable(c->audit.sinks[i].path, err, errlen))
			return false;
	if (c->hosts_file && access(c->hosts_file, R_OK) != 0) {
		snprintf(err, errlen, "dns.hosts_file: \"%s\": cannot be read: %s", c->hosts_file,
			 strerror(errno));
		return false;
	}
	return true;
}

static void join_listeners(const struct config *c, char *buf, size_t len)
{
	size_t j = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < c->n_listeners && j < len; i++)
		j += (size_t)snprintf(buf + j, len - j, "%s%s", i ? "," : "", c->listeners[i].text);
}

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

bool config_same_bound(const struct config *cur, const struct config *next, char *why,
		       size_t whylen)
{
	char a[300], b[300];
	join_listeners(cur, a, sizeof a);
	join_listeners(next, b, sizeof b);
	if (strcmp(a, b) != 0) {
		snprintf(why, whylen, "listen: %s -> %s", a, b);
		return false;
	}
	if (cur->threads != next->threads) {
		snprintf(why, whylen, "threads: %u -> %u", cur->threads, next->threads);
		return false;
	}
	const char *ca = cur->has_admin ? cur->admin.text : "off";
	const char *na = next->has_admin ? next->admin.text : "off";
	if (strcmp(ca, na) != 0) {
		snprintf(why, whylen, "admin: %s -> %s", ca, na);
		return false;
	}
	bool dns = cur->n_dns_servers == next->n_dns_servers &&
		   same_str(cur->hosts_file, next->hosts_file);
	for (size_t i = 0; dns && i < cur->n_dns_servers; i++)
		dns = strcmp(cur->dns_servers[i], next->dns_servers[i]) == 0;
	if (!dns) {
		snprintf(why, whylen, "dns.servers or dns.hosts_file changed");
		return false;
	}
	bool audit = cur->audit.n_sinks == next->audit.n_sinks &&
		     same_str(cur->audit.hmac_key_file, next->audit.hmac_key_file);
	for (size_t i = 0; audit && i < cur->audit.n_sinks; i++) {
		const struct audit_sink_config *x = &cur->audit.sinks[i], *y = &next->audit.sinks[i];
		audit = x->kind == y->kind && same_str(x->path, y->path) &&
			same_str(x->target, y->target);
	}
	if (!audit) {
		snprintf(why, whylen, "audit.sinks or audit.hmac_key_file changed");
		return false;
	}
	return inbound_config_same_bound(cur->inbound, next->inbound, why, whylen);
}

struct config *config_ref(struct config *c)
{
	if (c)
		__atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
	return c;
}

void config_unref(struct config *c)
{
	if (c && __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0)
		config_free(c);
}
