/*
 * envcheck: the container deployment's variables, checked and normalised
 * (see include/tailfence/envcheck.h). Routes go through cidr's strict
 * prefix parser, the one the gateway uses; the rest are the rules
 * `tailscale up` and the entrypoint apply.
 */
#include "tailfence/envcheck.h"

#include "tailfence/cidr.h"
#include "tailfence/inbound_config.h"
#include "tailfence/text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct ectx {
	envcheck_lookup get;
	void *arg;
	struct envcheck_result *res;
	struct envcheck_error *err;
};

/* The value, or dflt when unset or empty (the entrypoint's ${VAR:-dflt}). */
static const char *val(struct ectx *x, const char *name, const char *dflt)
{
	const char *v = x->get(x->arg, name);
	return v && v[0] ? v : dflt;
}

__attribute__((format(printf, 4, 5)))
static bool bad(struct ectx *x, const char *var, const char *value, const char *fmt, ...)
{
	struct envcheck_error *e = x->err;
	snprintf(e->var, sizeof e->var, "%s", var);
	snprintf(e->value, sizeof e->value, "%s", value ? value : "");
	va_list ap;
	va_start(ap, fmt);
	char both[sizeof e->reason];
	vsnprintf(both, sizeof both, fmt, ap);
	va_end(ap);
	/* "REASON\nFIX" */
	char *nl = strchr(both, '\n');
	if (nl)
		*nl = '\0';
	snprintf(e->reason, sizeof e->reason, "%s", both);
	snprintf(e->fix, sizeof e->fix, "%s", nl ? nl + 1 : "");
	return false;
}

/* Like bad, for one entry of a list: the reason names the entry unless it
 * is the whole value. */
static bool bad_item(struct ectx *x, const char *var, const char *full, const char *item,
		     const char *reason, const char *fix)
{
	if (strcmp(full, item) == 0)
		return bad(x, var, full, "%s\n%s", reason, fix);
	return bad(x, var, full, "entry \"%s\": %s\n%s", item, reason, fix);
}

static bool put(struct ectx *x, const char *name, const char *value)
{
	struct envcheck_result *r = x->res;
	if (r->n >= ENVCHECK_MAX_VARS)
		return bad(x, name, "", "too many variables\n(internal error)");
	char *v = strdup(value);
	if (!v)
		return bad(x, name, "", "out of memory\n(internal error)");
	r->v[r->n].name = name;
	r->v[r->n].value = v;
	r->n++;
	return true;
}

/* ------------------------------------------------------------------ */
/* lists */

struct items {
	char **v;
	size_t n;
};

static void items_free(struct items *it)
{
	for (size_t i = 0; i < it->n; i++)
		free(it->v[i]);
	free(it->v);
	it->v = NULL;
	it->n = 0;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Splits on commas and trims each entry (empty entries kept). */
static bool split_trim(const char *s, struct items *out)
{
	for (const char *p = s;;) {
		const char *c = strchr(p, ',');
		const char *e = c ? c : p + strlen(p);
		const char *b = p;
		while (b < e && is_space(*b))
			b++;
		while (e > b && is_space(e[-1]))
			e--;
		char **nv = realloc(out->v, (out->n + 1) * sizeof *nv);
		if (!nv)
			return false;
		out->v = nv;
		if (!(out->v[out->n] = strndup(b, (size_t)(e - b))))
			return false;
		out->n++;
		if (!c)
			return true;
		p = c + 1;
	}
}

static bool blank(const char *s)
{
	for (; *s; s++)
		if (!is_space(*s))
			return false;
	return true;
}

/* ------------------------------------------------------------------ */
/* single values */

static bool check_bool(struct ectx *x, const char *var, const char *dflt, const char *fix,
		       bool *out)
{
	const char *v = val(x, var, dflt);
	if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0)
		return bad(x, var, v, "must be true or false\n%s", fix);
	if (out)
		*out = v[0] == 't';
	return put(x, var, v);
}

/* 1 to 9999 seconds, written plainly. */
static bool check_seconds(struct ectx *x, const char *var, const char *dflt)
{
	const char *v = val(x, var, dflt);
	size_t n = strlen(v);
	bool ok = n >= 1 && n <= 4 && v[0] != '0';
	for (size_t i = 0; ok && i < n; i++)
		ok = text_is_digit(v[i]);
	if (!ok)
		return bad(x, var, v, "not a number of seconds (1-9999)\nset e.g. %s=%s", var, dflt);
	return put(x, var, v);
}

/* A DNS label: letters, digits, inner dashes, at most 63. */
static bool is_label(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!text_is_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

/* "tag:" then a letter, then letters, digits, dashes. */
static bool is_tag(const char *s)
{
	if (strncmp(s, "tag:", 4) != 0 || !text_is_alpha(s[4]))
		return false;
	for (s += 5; *s; s++)
		if (!text_is_alnum(*s) && *s != '-')
			return false;
	return true;
}

/* http:// or https://, a host part, then an optional path; no spaces. */
static bool is_url(const char *s)
{
	const char *p;
	if (strncmp(s, "http://", 7) == 0)
		p = s + 7;
	else if (strncmp(s, "https://", 8) == 0)
		p = s + 8;
	else
		return false;
	if (*p == '\0' || *p == '/')
		return false;
	for (; *p; p++)
		if (is_space(*p) || text_is_ctl(*p))
			return false;
	return true;
}

static bool all_digits(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!text_is_digit(s[i]))
			return false;
	return true;
}

/* "IP:PORT" or "[IPv6]:PORT"; names are not accepted (tailfence listens
 * and dials addresses). */
static bool check_hostport(struct ectx *x, const char *var, const char *full, const char *hp)
{
	static const char shape[] = "expected IP:PORT or [IPv6]:PORT";
	static const char shape_fix[] = "use e.g. 127.0.0.1:1080 or [::1]:1080";
	struct cidr_addr a;
	const char *port;
	if (hp[0] == '[') {
		const char *rb = strchr(hp, ']');
		if (!rb || rb[1] != ':' || !cidr_addr_parsen(hp + 1, (size_t)(rb - hp - 1), &a) ||
		    a.family != AF_INET6)
			return bad_item(x, var, full, hp, shape, shape_fix);
		port = rb + 2;
	} else {
		const char *c = strchr(hp, ':');
		if (!c || strchr(c + 1, ':'))
			return bad_item(x, var, full, hp, shape, shape_fix);
		size_t hl = (size_t)(c - hp);
		bool dotted = hl > 0;
		for (size_t i = 0; i < hl; i++)
			dotted = dotted && (text_is_digit(hp[i]) || hp[i] == '.');
		if (!dotted)
			return bad_item(x, var, full, hp, shape, shape_fix);
		if (!cidr_addr_parsen(hp, hl, &a) || a.family != AF_INET) {
			char why[120];
			snprintf(why, sizeof why, "\"%.*s\" is not an IPv4 address", (int)hl, hp);
			return bad_item(x, var, full, hp, why, "use e.g. 127.0.0.1:1080");
		}
		port = c + 1;
	}
	size_t pl = strlen(port);
	if (!all_digits(port, pl))
		return bad_item(x, var, full, hp, shape, shape_fix);
	unsigned long v = pl <= 5 ? strtoul(port, NULL, 10) : 0;
	if (port[0] == '0' || v < 1 || v > 65535) {
		char why[120];
		snprintf(why, sizeof why, "port \"%s\" is not 1-65535", port);
		return bad_item(x, var, full, hp, why, "use e.g. 127.0.0.1:1080");
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* the variables */

static bool check_routes(struct ectx *x, bool *default_route)
{
	static const char var[] = "TAILSCALE_ADVERTISE_ROUTES";
	const char *raw = val(x, var, "");
	struct items it = { 0 };
	char out[4096] = "";
	size_t used = 0;
	bool seen4 = false, seen6 = false, ok = true;

	*default_route = false;
	if (!blank(raw)) {
		if (!split_trim(raw, &it)) {
			items_free(&it);
			return bad(x, var, raw, "out of memory\n(internal error)");
		}
		for (size_t i = 0; ok && i < it.n; i++) {
			const char *p = it.v[i];
			struct cidr_prefix pf;
			char reason[200], fix[200];
			if (!*p) {
				ok = bad(x, var, raw, "has an empty entry\nseparate prefixes by "
					 "single commas, e.g. 10.0.0.0/24,192.168.1.0/24");
				break;
			}
			if (!strchr(p, '/')) {
				snprintf(fix, sizeof fix, "write the subnet with its length, e.g. %s/%s "
					 "for one host or a network like 10.0.0.0/24", p,
					 strchr(p, ':') ? "128" : "32");
				ok = bad_item(x, var, raw, p, "not a CIDR prefix (no /BITS)", fix);
				break;
			}
			if (!cidr_prefix_parse_reason(p, strlen(p), &pf, reason, sizeof reason)) {
				char *dym = strstr(reason, "; did you mean ");
				if (dym) {
					*dym = '\0';
					snprintf(fix, sizeof fix, "%s", dym + 2);
				} else if (strstr(reason, "prefix length")) {
					snprintf(fix, sizeof fix, "use ADDR/BITS with BITS 0-32 (IPv4) "
						 "or 0-128 (IPv6)");
				} else {
					snprintf(fix, sizeof fix, "use an IPv4 network such as "
						 "10.0.0.0/24 or an IPv6 one such as fd00:1::/64");
				}
				ok = bad_item(x, var, raw, p, reason, fix);
				break;
			}
			if (cidr_prefix_is_default(&pf)) {
				if (pf.addr.family == AF_INET)
					seen4 = true;
				else
					seen6 = true;
			}
			char canon[CIDR_PREFIX_STRLEN];
			cidr_prefix_format(&pf, canon, sizeof canon);
			int w = snprintf(out + used, sizeof out - used, "%s%s", used ? "," : "", canon);
			if (w < 0 || (size_t)w >= sizeof out - used) {
				ok = bad(x, var, raw, "is too long\nadvertise fewer, larger prefixes");
				break;
			}
			used += (size_t)w;
		}
	}
	items_free(&it);
	if (!ok)
		return false;
	if (seen4 != seen6)
		return bad(x, var, raw, "a default route must be advertised for both families\n"
			   "list both 0.0.0.0/0 and ::/0 (exit node), or better, only the "
			   "subnets you need");
	*default_route = seen4;
	return put(x, var, out);
}

static bool check_tags(struct ectx *x)
{
	static const char var[] = "TAILSCALE_TAGS";
	const char *raw = val(x, var, "");
	struct items it = { 0 };
	char out[1024] = "";
	size_t used = 0;
	bool ok = true;
	if (!blank(raw)) {
		if (!split_trim(raw, &it)) {
			items_free(&it);
			return bad(x, var, raw, "out of memory\n(internal error)");
		}
		for (size_t i = 0; ok && i < it.n; i++) {
			if (!is_tag(it.v[i])) {
				ok = bad_item(x, var, raw, it.v[i], "is not a tag",
					      "use comma-separated tags like tag:railway-proxy (letter "
					      "first, then letters, digits, dashes)");
				break;
			}
			int w = snprintf(out + used, sizeof out - used, "%s%s", used ? "," : "",
					 it.v[i]);
			if (w < 0 || (size_t)w >= sizeof out - used) {
				ok = bad(x, var, raw, "is too long\nuse fewer tags");
				break;
			}
			used += (size_t)w;
		}
	}
	items_free(&it);
	return ok && put(x, var, out);
}

static bool check_listen(struct ectx *x)
{
	static const char var[] = "TAILFENCE_LISTEN";
	const char *raw = val(x, var, "127.0.0.1:1080");
	struct items it = { 0 };
	char out[1024] = "";
	size_t used = 0;
	bool ok = split_trim(raw, &it);
	if (!ok) {
		items_free(&it);
		return bad(x, var, raw, "out of memory\n(internal error)");
	}
	for (size_t i = 0; ok && i < it.n; i++) {
		ok = check_hostport(x, var, raw, it.v[i]);
		if (!ok)
			break;
		int w = snprintf(out + used, sizeof out - used, "%s%s", used ? "," : "", it.v[i]);
		if (w < 0 || (size_t)w >= sizeof out - used) {
			ok = bad(x, var, raw, "is too long\nlisten on fewer addresses");
			break;
		}
		used += (size_t)w;
	}
	if (ok)
		ok = put(x, var, out) && put(x, "TAILFENCE_PROXY_ADDR", it.v[0]);
	items_free(&it);
	return ok;
}

static bool check_upstream(struct ectx *x)
{
	static const char var[] = "TAILFENCE_UPSTREAM";
	const char *proxy = envcheck_result_get(x->res, "TAILSCALED_PROXY");
	char dflt[300];
	snprintf(dflt, sizeof dflt, "socks5://%s", proxy ? proxy : "127.0.0.1:1055");
	const char *v = val(x, var, dflt);
	bool ok = strcmp(v, "direct") == 0;
	const char *rest = NULL;
	if (strncmp(v, "socks5://", 9) == 0)
		rest = v + 9;
	else if (strncmp(v, "http://", 7) == 0)
		rest = v + 7;
	if (rest && *rest) {
		ok = true;
		for (; *rest; rest++)
			ok = ok && !is_space(*rest) && !text_is_ctl(*rest);
	}
	if (!ok)
		return bad(x, var, v, "not socks5://HOST:PORT, http://HOST:PORT or direct\n"
			   "unset it to use this container's tailscaled (%s)", dflt);
	return put(x, var, v);
}

static bool check_no_proxy(struct ectx *x)
{
	const char *var = "NO_PROXY";
	const char *raw = x->get(x->arg, "NO_PROXY");
	if (!raw || !raw[0]) {
		raw = x->get(x->arg, "no_proxy");
		var = "no_proxy";
	}
	if (!raw)
		raw = "";
	struct items it = { 0 };
	char out[2048] = "";
	size_t used = 0;
	bool ok = true;
	if (!blank(raw)) {
		if (!split_trim(raw, &it)) {
			items_free(&it);
			return bad(x, var, raw, "out of memory\n(internal error)");
		}
		for (size_t i = 0; ok && i < it.n; i++) {
			const char *h = it.v[i];
			if (!*h)
				continue;
			bool word = true;
			for (const char *p = h; *p; p++)
				word = word && !is_space(*p) && !text_is_ctl(*p) && *p != '"' &&
				       *p != '\'';
			if (!word) {
				ok = bad_item(x, var, raw, h, "is not a host name, address or .domain",
					      "list hosts that should bypass tailfence separated by "
					      "commas, e.g. .railway.internal,redis");
				break;
			}
			if (strcmp(h, "*") == 0) {
				ok = bad_item(x, var, raw, h, "would send everything around tailfence",
					      "list only the hosts that must stay local");
				break;
			}
			int w = snprintf(out + used, sizeof out - used, "%s%s", used ? "," : "", h);
			if (w < 0 || (size_t)w >= sizeof out - used) {
				ok = bad(x, var, raw, "is too long\nlist fewer hosts");
				break;
			}
			used += (size_t)w;
		}
	}
	items_free(&it);
	return ok && put(x, "NO_PROXY", out);
}

/* TAILFENCE_INBOUND: "PORT=HOST:PORT,..." services exposed to the tailnet
 * through tailscale serve and tailfence. Their shape here; the targets and
 * the policy file are checked by the configuration they make (config
 * check --env builds it). Also gives the serve configuration. */
static bool check_inbound(struct ectx *x)
{
	static const char var[] = "TAILFENCE_INBOUND";
	static const char fix[] = "list PORT=HOST:PORT entries separated by commas, PORT the "
				  "tailnet port to serve, e.g. 5432=db.railway.internal:5432";
	const char *raw = val(x, var, "");
	const char *base = val(x, "TAILFENCE_INBOUND_LISTEN", INBOUND_DEFAULT_LISTEN);
	const char *policy = val(x, "TAILFENCE_INBOUND_POLICY", NULL);
	struct items it = { 0 };
	char out[2048] = "", serve[4096] = "";
	size_t used = 0, sused = 0;
	unsigned ports[64];
	bool ok = true;
	char first[80], lwhy[200];
	if (!inbound_simple_listen(base, 0, first, sizeof first, lwhy, sizeof lwhy))
		return bad(x, "TAILFENCE_INBOUND_LISTEN", base, "%s\nunset it (default %s) or give "
			   "another loopback ADDRESS:PORT", lwhy, INBOUND_DEFAULT_LISTEN);
	if (policy && access(policy, R_OK) != 0)
		return bad(x, "TAILFENCE_INBOUND_POLICY", policy, "file does not exist or is not "
			   "readable\nadd the identity policy to the image or a volume, or unset it");
	if (!blank(raw)) {
		if (!split_trim(raw, &it)) {
			items_free(&it);
			return bad(x, var, raw, "out of memory\n(internal error)");
		}
		sused = (size_t)snprintf(serve, sizeof serve, "{\"TCP\":{");
		for (size_t i = 0; ok && i < it.n; i++) {
			const char *e = it.v[i];
			const char *eq = strchr(e, '=');
			size_t pl = eq ? (size_t)(eq - e) : 0;
			unsigned long port = pl && pl <= 5 && all_digits(e, pl) && e[0] != '0'
						     ? strtoul(e, NULL, 10) : 0;
			bool word = eq && eq[1];
			for (const char *p = eq ? eq + 1 : e; word && *p; p++)
				word = !is_space(*p) && !text_is_ctl(*p) && *p != '"' && *p != '\\';
			if (!*e) {
				ok = bad(x, var, raw, "has an empty entry\n%s", fix);
				break;
			}
			if (port < 1 || port > 65535 || !word) {
				ok = bad_item(x, var, raw, e, "is not PORT=HOST:PORT", fix);
				break;
			}
			for (size_t k = 0; k < i; k++)
				if (ports[k] == port)
					ok = bad_item(x, var, raw, e, "serves a tailnet port given before",
						      "give each tailnet port once");
			if (!ok)
				break;
			if (i == sizeof ports / sizeof ports[0]) {
				ok = bad(x, var, raw, "has too many entries\nserve at most 64 ports");
				break;
			}
			ports[i] = (unsigned)port;
			char listen[80], why[200];
			if (!inbound_simple_listen(base, i, listen, sizeof listen, why, sizeof why)) {
				ok = bad(x, "TAILFENCE_INBOUND_LISTEN", base, "%s\nunset it (default %s) "
					 "or give another loopback ADDRESS:PORT", why,
					 INBOUND_DEFAULT_LISTEN);
				break;
			}
			int w = snprintf(out + used, sizeof out - used, "%s%s", used ? "," : "", e);
			int w2 = snprintf(serve + sused, sizeof serve - sused,
					  "%s\"%lu\":{\"TCPForward\":\"%s\",\"ProxyProtocol\":2}",
					  i ? "," : "", port, listen);
			if (w < 0 || (size_t)w >= sizeof out - used || w2 < 0 ||
			    (size_t)w2 >= sizeof serve - sused) {
				ok = bad(x, var, raw, "is too long\nserve fewer ports");
				break;
			}
			used += (size_t)w;
			sused += (size_t)w2;
		}
		if (ok && sused + 3 < sizeof serve)
			snprintf(serve + sused, sizeof serve - sused, "}}");
	}
	items_free(&it);
	if (!ok)
		return false;
	if (policy && !out[0])
		return bad(x, "TAILFENCE_INBOUND_POLICY", policy, "gives identity rules, but "
			   "TAILFENCE_INBOUND serves nothing\nset TAILFENCE_INBOUND, or unset "
			   "TAILFENCE_INBOUND_POLICY");
	return put(x, var, out) && put(x, "TAILFENCE_INBOUND_SERVE", serve);
}

bool envcheck_run(envcheck_lookup get, void *arg, struct envcheck_result *res,
		  struct envcheck_error *err)
{
	struct ectx x = { get, arg, res, err };
	bool default_route = false, allow_default = false;
	const char *v;

	memset(res, 0, sizeof *res);
	memset(err, 0, sizeof *err);

	/* Tailscale */
	if (!check_routes(&x, &default_route))
		goto bad;
	if (!check_bool(&x, "TAILFENCE_ALLOW_DEFAULT_ROUTE", "false",
			"set it to true or false (default false)", &allow_default))
		goto bad;
	if (default_route && !allow_default) {
		bad(&x, "TAILSCALE_ADVERTISE_ROUTES", val(&x, "TAILSCALE_ADVERTISE_ROUTES", ""),
		    "a default route would let the app reach every address through tailfence\n"
		    "list only the subnets you need, or set TAILFENCE_ALLOW_DEFAULT_ROUTE=true if "
		    "you mean it");
		goto bad;
	}
	if (!check_bool(&x, "TAILSCALE_ACCEPT_ROUTES", "true",
			"set it to true (default: reach subnets other routers advertise) or false",
			NULL))
		goto bad;
	v = val(&x, "TAILSCALE_HOSTNAME", "railway-litellm");
	if (!is_label(v)) {
		bad(&x, "TAILSCALE_HOSTNAME", v, "not a DNS label (letters, digits, inner dashes, "
		    "at most 63)\nuse a name such as railway-litellm");
		goto bad;
	}
	if (!put(&x, "TAILSCALE_HOSTNAME", v) || !check_tags(&x))
		goto bad;
	v = val(&x, "TAILSCALE_LOGIN_SERVER", "");
	if (v[0] && !is_url(v)) {
		bad(&x, "TAILSCALE_LOGIN_SERVER", v, "not an http:// or https:// URL\nuse the "
		    "control server's URL, e.g. https://headscale.example.com, or unset it for "
		    "Tailscale's");
		goto bad;
	}
	if (!put(&x, "TAILSCALE_LOGIN_SERVER", v) ||
	    !check_seconds(&x, "TAILSCALE_UP_TIMEOUT", "60") ||
	    !check_seconds(&x, "APP_STOP_TIMEOUT", "10"))
		goto bad;
	v = val(&x, "TAILSCALED_PROXY", "127.0.0.1:1055");
	if (!check_hostport(&x, "TAILSCALED_PROXY", v, v) || !put(&x, "TAILSCALED_PROXY", v))
		goto bad;

	/* tailfence */
	if (!check_listen(&x) || !check_upstream(&x))
		goto bad;
	v = val(&x, "TAILFENCE_CONFIG", NULL);
	if (v && access(v, R_OK) != 0) {
		bad(&x, "TAILFENCE_CONFIG", v, "file does not exist or is not readable\nadd the "
		    "file to the image (e.g. contrib/examples/) or unset TAILFENCE_CONFIG");
		goto bad;
	}
	v = val(&x, "TAILFENCE_AUDIT_FILE", "");
	if (v[0]) {
		struct stat sb;
		bool ctl = false;
		for (const char *p = v; *p; p++)
			ctl = ctl || text_is_ctl(*p);
		if (v[0] != '/' || ctl || (stat(v, &sb) == 0 && S_ISDIR(sb.st_mode))) {
			bad(&x, "TAILFENCE_AUDIT_FILE", v, "not an absolute file path\nuse e.g. "
			    "/data/audit.jsonl on a Railway volume");
			goto bad;
		}
	}
	if (!put(&x, "TAILFENCE_AUDIT_FILE", v) ||
	    !check_bool(&x, "TAILFENCE_EXPORT_ALL_PROXY", "true",
			"set false when the app's HTTP client cannot use socks5h:// (httpx "
			"without socksio), else true", NULL))
		goto bad;
	const char *user = val(&x, "TAILFENCE_PROXY_USER", "");
	const char *pass = val(&x, "TAILFENCE_PROXY_PASSWORD", "");
	if ((user[0] || pass[0]) && (!user[0] || !pass[0])) {
		/* The password is never shown. */
		bad(&x, "TAILFENCE_PROXY_USER", user, "user and password go together\nset both "
		    "TAILFENCE_PROXY_USER and TAILFENCE_PROXY_PASSWORD (a user of "
		    "TAILFENCE_CONFIG), or neither");
		goto bad;
	}
	if (!check_no_proxy(&x) || !check_inbound(&x))
		goto bad;
	return true;
bad:
	envcheck_result_free(res);
	return false;
}

const char *envcheck_result_get(const struct envcheck_result *res, const char *name)
{
	for (size_t i = 0; i < res->n; i++)
		if (strcmp(res->v[i].name, name) == 0)
			return res->v[i].value;
	return NULL;
}

void envcheck_result_free(struct envcheck_result *res)
{
	for (size_t i = 0; i < res->n; i++)
		free(res->v[i].value);
	res->n = 0;
}
