/*
 * config: embedded defaults < config file < environment < flags, merged and
 * validated into one immutable, reference-counted struct config (with its
 * compiled policy), plus the flag parser and the effective-config JSON that
 * `tailfence config show` prints.
 *
 * The file is JSON with // and block comments and trailing commas allowed
 * (HuJSON-like); they are blanked out before cJSON parses it, keeping line
 * numbers. Unknown keys are errors, so a typo never silently weakens the
 * policy. Every error names the key path, flag or variable, the value and
 * what was expected.
 */
#include "tailfence/config.h"

#include "tailfence/auth.h"
#include "tailfence/inbound_config.h"
#include "tailfence/log.h"
#include "tailfence/policy.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <ifaddrs.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TAILFENCE_VERSION
#define TAILFENCE_VERSION "unknown"
#endif

#define DEFAULT_LISTEN "127.0.0.1:1080"
#define DEFAULT_UPSTREAM "socks5://127.0.0.1:1055"
/* tailscaled's own default, and what the `tailscale` CLI uses. */
#define DEFAULT_TAILSCALED_SOCKET "/var/run/tailscale/tailscaled.sock"

/* ------------------------------------------------------------------ */
/* string lists */

struct strv {
	char **v;
	size_t n;
};

static bool strv_add(struct strv *s, const char *x)
{
	char **v = realloc(s->v, (s->n + 1) * sizeof *v);
	if (!v)
		return false;
	s->v = v;
	if (!(s->v[s->n] = strdup(x)))
		return false;
	s->n++;
	return true;
}

static void strv_free(struct strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

/* ------------------------------------------------------------------ */
/* flags */

enum opt_id {
	OPT_LISTEN = 256, OPT_UPSTREAM, OPT_ALLOW, OPT_LIFT_GUARD, OPT_ALLOW_DEFAULT_ROUTE,
	OPT_CONFIG, OPT_AUDIT_LOG, OPT_AUDIT_SYSLOG, OPT_AUDIT_HMAC_KEY, OPT_AUDIT_ON_FAILURE,
	OPT_AUDIT_DURABILITY,
	OPT_LOG_LEVEL, OPT_HANDSHAKE_TIMEOUT, OPT_CONNECT_TIMEOUT, OPT_DNS_TIMEOUT,
	OPT_IDLE_TIMEOUT, OPT_SHUTDOWN_GRACE, OPT_MAX_HEAD_BYTES, OPT_MAX_CONNECTIONS,
	OPT_BUFFER_BYTES, OPT_RELAY, OPT_DNS_SERVER, OPT_HOSTS_FILE, OPT_FORCE_PUBLIC_LISTEN,
	OPT_VERSION, OPT_HELP, OPT_USER, OPT_SRC, OPT_TAILSCALED_SOCKET, OPT_CLOSE_REVOKED,
	OPT_ADMIN, OPT_NO_UDP, OPT_UDP_DESTINATIONS, OPT_UDP_RATE, OPT_UDP_IDLE_TIMEOUT,
	OPT_INBOUND, OPT_INBOUND_POLICY, OPT_INBOUND_LISTEN, OPT_INBOUND_PEER_CHECK,
};

/* Single-valued settings given as text, in the order of this table. */
enum scalar {
	SC_UPSTREAM, SC_AUDIT_SYSLOG, SC_AUDIT_HMAC_KEY, SC_AUDIT_ON_FAILURE,
	SC_AUDIT_DURABILITY, SC_LOG_LEVEL,
	SC_HANDSHAKE_TIMEOUT, SC_CONNECT_TIMEOUT, SC_DNS_TIMEOUT, SC_IDLE_TIMEOUT,
	SC_SHUTDOWN_GRACE, SC_MAX_HEAD_BYTES, SC_MAX_CONNECTIONS, SC_BUFFER_BYTES, SC_RELAY,
	SC_HOSTS_FILE, SC_TAILSCALED_SOCKET, SC_ADMIN, SC_UDP_DESTINATIONS, SC_UDP_RATE,
	SC_UDP_IDLE_TIMEOUT, SC_INBOUND_POLICY, SC_INBOUND_LISTEN, SC_INBOUND_PEER_CHECK, SC_COUNT
};

struct config_args {
	char *config_file;
	struct strv listen, allow, lift, audit_log, dns_server, positional, inbound;
	char *scalar[SC_COUNT];
	bool allow_default_route, force_public_listen, close_revoked, no_udp;
	char *user, *src;
};

static const struct option long_opts[] = {
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "upstream", required_argument, NULL, OPT_UPSTREAM },
	{ "allow", required_argument, NULL, OPT_ALLOW },
	{ "lift-guard", required_argument, NULL, OPT_LIFT_GUARD },
	{ "allow-default-route", no_argument, NULL, OPT_ALLOW_DEFAULT_ROUTE },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "audit-log", required_argument, NULL, OPT_AUDIT_LOG },
	{ "audit-syslog", required_argument, NULL, OPT_AUDIT_SYSLOG },
	{ "audit-hmac-key", required_argument, NULL, OPT_AUDIT_HMAC_KEY },
	{ "audit-on-failure", required_argument, NULL, OPT_AUDIT_ON_FAILURE },
	{ "audit-durability", required_argument, NULL, OPT_AUDIT_DURABILITY },
	{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
	{ "handshake-timeout", required_argument, NULL, OPT_HANDSHAKE_TIMEOUT },
	{ "connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT },
	{ "dns-timeout", required_argument, NULL, OPT_DNS_TIMEOUT },
	{ "idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT },
	{ "shutdown-grace", required_argument, NULL, OPT_SHUTDOWN_GRACE },
	{ "max-head-bytes", required_argument, NULL, OPT_MAX_HEAD_BYTES },
	{ "max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS },
	{ "buffer-bytes", required_argument, NULL, OPT_BUFFER_BYTES },
	{ "relay", required_argument, NULL, OPT_RELAY },
	{ "dns-server", required_argument, NULL, OPT_DNS_SERVER },
	{ "hosts-file", required_argument, NULL, OPT_HOSTS_FILE },
	{ "force-public-listen", no_argument, NULL, OPT_FORCE_PUBLIC_LISTEN },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ "help", no_argument, NULL, OPT_HELP },
	{ "user", required_argument, NULL, OPT_USER },
	{ "src", required_argument, NULL, OPT_SRC },
	{ "tailscaled-socket", required_argument, NULL, OPT_TAILSCALED_SOCKET },
	{ "close-revoked", no_argument, NULL, OPT_CLOSE_REVOKED },
	{ "admin", required_argument, NULL, OPT_ADMIN },
	{ "no-udp", no_argument, NULL, OPT_NO_UDP },
	{ "udp-destinations", required_argument, NULL, OPT_UDP_DESTINATIONS },
	{ "udp-rate", required_argument, NULL, OPT_UDP_RATE },
	{ "udp-idle-timeout", required_argument, NULL, OPT_UDP_IDLE_TIMEOUT },
	{ "inbound", required_argument, NULL, OPT_INBOUND },
	{ "inbound-policy", required_argument, NULL, OPT_INBOUND_POLICY },
	{ "inbound-listen", required_argument, NULL, OPT_INBOUND_LISTEN },
	{ "inbound-peer-check", required_argument, NULL, OPT_INBOUND_PEER_CHECK },
	{ NULL, 0, NULL, 0 },
};

static const char help_text[] =
	"usage: tailfence [run] [FLAGS]\n"
	"\n"
	"A policy-enforcing, auditing SOCKS5/SOCKS4a/HTTP proxy in front of tailscaled.\n"
	"Precedence: flags > environment > config file > defaults. See docs/config.md.\n"
	"\n"
	"  --listen ADDR:PORT        listen address, repeatable (default 127.0.0.1:1080;\n"
	"                            IPv6 as [::1]:1080)\n"
	"  --upstream URL            socks5://HOST:PORT, http://HOST:PORT or direct\n"
	"                            (default socks5://127.0.0.1:1055)\n"
	"  --tailscaled-socket PATH|none\n"
	"                            tailscaled's LocalAPI socket: the fence follows what\n"
	"                            the tailnet carries for this node, read live from it;\n"
	"                            none: use the static routes (TAILSCALE_ADVERTISE_ROUTES)\n"
	"                            (default " DEFAULT_TAILSCALED_SOCKET ")\n"
	"  --close-revoked           when the tailnet stops carrying a destination, also\n"
	"                            close the relays open to it (default: they run on)\n"
	"  --allow PREFIX[:PORTS]    accept a prefix, repeatable; PORTS *, N, N-M or a\n"
	"                            comma list (IPv6: [fd00::/64]:443 or fd00::/64:443)\n"
	"                            (default: none)\n"
	"  --lift-guard NAME         lift a built-in guard, repeatable: loopback, link-local,\n"
	"                            this-network, multicast, broadcast, tailscale-service,\n"
	"                            upstream, self (default: none lifted)\n"
	"  --allow-default-route     let a /0 allow everything: the selected exit node's\n"
	"                            (live), 0.0.0.0/0 or ::/0 in the routes (static),\n"
	"                            --allow covering every address (default: off)\n"
	"  --config FILE             JSON config file (default: $TAILFENCE_CONFIG, else none)\n"
	"  --audit-log PATH|-        audit trail file, - for stdout, repeatable (default -)\n"
	"  --audit-syslog TARGET     also send audit records to syslog: unix:/dev/log,\n"
	"                            udp:HOST:PORT or tcp:HOST:PORT (default: off)\n"
	"  --audit-hmac-key FILE     chain records with an HMAC under this key (default: off)\n"
	"  --audit-on-failure deny|continue\n"
	"                            refuse connections when the audit trail cannot be\n"
	"                            written (deny) or keep serving (default continue)\n"
	"  --audit-durability queued|written|synced\n"
	"                            dial only once the decision record is written to\n"
	"                            every sink (written), and fdatasync'd (synced), or\n"
	"                            at once (queued) (default written)\n"
	"  --log-level LEVEL         error, warn, info or debug (default info)\n"
	"  --handshake-timeout DUR   client handshake (default 10s)\n"
	"  --connect-timeout DUR     upstream dial (default 10s)\n"
	"  --dns-timeout DUR         name resolution (default 5s)\n"
	"  --idle-timeout DUR        relay without traffic (default 15m)\n"
	"  --shutdown-grace DUR      relays may finish after SIGTERM (default 10s)\n"
	"  --max-head-bytes N        HTTP request head limit (default 16384)\n"
	"  --max-connections N       concurrent connections (default 4096)\n"
	"  --buffer-bytes N          per-direction buffer high watermark (default 262144)\n"
	"  --relay splice|copy       move relayed bytes with splice(2) in the kernel, or\n"
	"                            copy them through user space (default splice)\n"
	"  --dns-server IP[:PORT]    nameserver, repeatable (default: /etc/resolv.conf)\n"
	"  --hosts-file PATH         hosts file to consult (default /etc/hosts)\n"
	"  --force-public-listen     allow a non-loopback listener without users (default off)\n"
	"  --admin ADDR:PORT         serve /metrics (Prometheus), /healthz and /readyz over\n"
	"                            HTTP on this address (default: off)\n"
	"  --no-udp                  refuse SOCKS5 UDP ASSOCIATE (default: served, under the\n"
	"                            same policy as TCP)\n"
	"  --udp-destinations N      destinations per UDP association (default 64)\n"
	"  --udp-rate N              datagrams per second a client may send on one UDP\n"
	"                            association (default 1000)\n"
	"  --udp-idle-timeout DUR    UDP association without a datagram (default 2m)\n"
	"  --inbound PORT=HOST:PORT  serve HOST:PORT to tailnet port PORT through tailscale\n"
	"                            serve --proxy-protocol 2, by identity; repeatable, or\n"
	"                            comma-separated (default: none)\n"
	"  --inbound-policy FILE     identity rules for --inbound services, per port\n"
	"  --inbound-listen ADDR:PORT\n"
	"                            where --inbound services listen, counting up the port\n"
	"                            (default " INBOUND_DEFAULT_LISTEN ")\n"
	"  --inbound-peer-check tailscaled|loopback\n"
	"                            who may connect to those listeners: tailscaled's own\n"
	"                            process, or any local one (default tailscaled)\n"
	"  --version                 print the version and exit\n"
	"  --help                    print this help and exit\n"
	"\n"
	"DUR: 250ms, 10s, 15m, 1h or a number of seconds.\n"
	"Environment: TAILSCALE_SOCKET, TAILSCALE_ADVERTISE_ROUTES, TAILFENCE_CONFIG,\n"
	"TAILFENCE_LISTEN, TAILFENCE_UPSTREAM, TAILFENCE_AUDIT_LOG, TAILFENCE_AUDIT_SYSLOG,\n"
	"TAILFENCE_AUDIT_HMAC_KEY, TAILFENCE_AUDIT_DURABILITY, TAILFENCE_LOG_LEVEL,\n"
	"TAILFENCE_LIFT_GUARDS, TAILFENCE_CLOSE_REVOKED, TAILFENCE_ADMIN, TAILFENCE_UDP,\n"
	"TAILFENCE_INBOUND, TAILFENCE_INBOUND_POLICY, TAILFENCE_INBOUND_LISTEN,\n"
	"TAILFENCE_INBOUND_PEER_CHECK.\n"
	"Subcommands: check, config check, config show, audit, passwd (tailfence help).\n";

void config_args_free(struct config_args *a)
{
	if (!a)
		return;
	free(a->config_file);
	strv_free(&a->listen);
	strv_free(&a->allow);
	strv_free(&a->lift);
	strv_free(&a->audit_log);
	strv_free(&a->dns_server);
	strv_free(&a->positional);
	strv_free(&a->inbound);
	for (int i = 0; i < SC_COUNT; i++)
		free(a->scalar[i]);
	free(a->user);
	free(a->src);
	free(a);
}

static void set_str(char **slot, const char *v)
{
	free(*slot);
	*slot = strdup(v);
}

int config_args_parse_sub(int argc, char **argv, bool check_opts, size_t max_positional,
			  struct config_args **out)
{
	struct config_args *a = calloc(1, sizeof *a);
	const char *prog = "tailfence";
	*out = NULL;
	if (!a)
		return 2;
	optind = 0;	/* GNU: full reinitialisation, so parsing can run twice */
	opterr = 0;
	for (;;) {
		int idx = -1;
		int c = getopt_long(argc, argv, "+", long_opts, &idx);
		if (c == -1)
			break;
		const char *v = optarg;
		switch (c) {
		case OPT_LISTEN: strv_add(&a->listen, v); break;
		case OPT_UPSTREAM: set_str(&a->scalar[SC_UPSTREAM], v); break;
		case OPT_ALLOW: strv_add(&a->allow, v); break;
		case OPT_LIFT_GUARD: strv_add(&a->lift, v); break;
		case OPT_ALLOW_DEFAULT_ROUTE: a->allow_default_route = true; break;
		case OPT_CONFIG: set_str(&a->config_file, v); break;
		case OPT_AUDIT_LOG: strv_add(&a->audit_log, v); break;
		case OPT_AUDIT_SYSLOG: set_str(&a->scalar[SC_AUDIT_SYSLOG], v); break;
		case OPT_AUDIT_HMAC_KEY: set_str(&a->scalar[SC_AUDIT_HMAC_KEY], v); break;
		case OPT_AUDIT_ON_FAILURE: set_str(&a->scalar[SC_AUDIT_ON_FAILURE], v); break;
		case OPT_AUDIT_DURABILITY: set_str(&a->scalar[SC_AUDIT_DURABILITY], v); break;
		case OPT_LOG_LEVEL: set_str(&a->scalar[SC_LOG_LEVEL], v); break;
		case OPT_HANDSHAKE_TIMEOUT: set_str(&a->scalar[SC_HANDSHAKE_TIMEOUT], v); break;
		case OPT_CONNECT_TIMEOUT: set_str(&a->scalar[SC_CONNECT_TIMEOUT], v); break;
		case OPT_DNS_TIMEOUT: set_str(&a->scalar[SC_DNS_TIMEOUT], v); break;
		case OPT_IDLE_TIMEOUT: set_str(&a->scalar[SC_IDLE_TIMEOUT], v); break;
		case OPT_SHUTDOWN_GRACE: set_str(&a->scalar[SC_SHUTDOWN_GRACE], v); break;
		case OPT_MAX_HEAD_BYTES: set_str(&a->scalar[SC_MAX_HEAD_BYTES], v); break;
		case OPT_MAX_CONNECTIONS: set_str(&a->scalar[SC_MAX_CONNECTIONS], v); break;
		case OPT_BUFFER_BYTES: set_str(&a->scalar[SC_BUFFER_BYTES], v); break;
		case OPT_RELAY: set_str(&a->scalar[SC_RELAY], v); break;
		case OPT_DNS_SERVER: strv_add(&a->dns_server, v); break;
		case OPT_HOSTS_FILE: set_str(&a->scalar[SC_HOSTS_FILE], v); break;
		case OPT_TAILSCALED_SOCKET: set_str(&a->scalar[SC_TAILSCALED_SOCKET], v); break;
		case OPT_FORCE_PUBLIC_LISTEN: a->force_public_listen = true; break;
		case OPT_CLOSE_REVOKED: a->close_revoked = true; break;
		case OPT_ADMIN: set_str(&a->scalar[SC_ADMIN], v); break;
		case OPT_NO_UDP: a->no_udp = true; break;
		case OPT_UDP_DESTINATIONS: set_str(&a->scalar[SC_UDP_DESTINATIONS], v); break;
		case OPT_UDP_RATE: set_str(&a->scalar[SC_UDP_RATE], v); break;
		case OPT_UDP_IDLE_TIMEOUT: set_str(&a->scalar[SC_UDP_IDLE_TIMEOUT], v); break;
		case OPT_INBOUND: strv_add(&a->inbound, v); break;
		case OPT_INBOUND_POLICY: set_str(&a->scalar[SC_INBOUND_POLICY], v); break;
		case OPT_INBOUND_LISTEN: set_str(&a->scalar[SC_INBOUND_LISTEN], v); break;
		case OPT_INBOUND_PEER_CHECK: set_str(&a->scalar[SC_INBOUND_PEER_CHECK], v); break;
		case OPT_USER:
		case OPT_SRC:
			if (!check_opts) {
				fprintf(stderr, "%s: %s is only for `tailfence check`\n"
					"Try 'tailfence --help'.\n", prog, argv[optind - 1]);
				config_args_free(a);
				return 2;
			}
			set_str(c == OPT_USER ? &a->user : &a->src, v);
			break;
		case OPT_VERSION:
			printf("tailfence %s\n", TAILFENCE_VERSION);
			config_args_free(a);
			return 1;
		case OPT_HELP:
			fputs(help_text, stdout);
			config_args_free(a);
			return 1;
		case ':':
			fprintf(stderr, "%s: %s needs a value\nTry 'tailfence --help'.\n", prog,
				argv[optind - 1]);
			config_args_free(a);
			return 2;
		default: {
			const char *bad = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
			if (optopt && optopt < 256 && (bad[0] != '-' || bad[1] == '-'))
				fprintf(stderr, "%s: unknown flag \"-%c\"\n", prog, optopt);
			else if (c == '?' && optopt >= 256)
				fprintf(stderr, "%s: %s needs a value\n", prog, bad);
			else
				fprintf(stderr, "%s: unknown flag \"%s\"\n", prog, bad);
			fprintf(stderr, "Try 'tailfence --help'.\n");
			config_args_free(a);
			return 2;
		}
		}
	}
	for (int i = optind; i < argc; i++) {
		if (a->positional.n >= max_positional) {
			fprintf(stderr, "%s: unexpected argument \"%s\"\nTry 'tailfence --help'.\n", prog,
				argv[i]);
			config_args_free(a);
			return 2;
		}
		strv_add(&a->positional, argv[i]);
	}
	*out = a;
	return 0;
}

int config_args_parse(int argc, char **argv, struct config_args **out)
{
	return config_args_parse_sub(argc, argv, false, 0, out);
}

const char *config_args_user(const struct config_args *a) { return a->user; }
const char *config_args_src(const struct config_args *a) { return a->src; }
size_t config_args_npositional(const struct config_args *a) { return a->positional.n; }
const char *config_args_positional(const struct config_args *a, size_t i)
{
	return i < a->positional.n ? a->positional.v[i] : NULL;
}

void config_args_set_file(struct config_args *a, const char *path)
{
	set_str(&a->config_file, path);
}

/* ------------------------------------------------------------------ */
/* errors */

struct ctx {
	char *err;
	size_t errlen;
	bool failed;
};

__attribute__((format(printf, 2, 3)))
static bool fail(struct ctx *x, const char *fmt, ...)
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

/* Quotes a value for an error message (JSON-style escapes, bounded). */
static const char *q(const char *s, char *buf, size_t len)
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

/* ------------------------------------------------------------------ */
/* value parsers (pure) */

/* Durations: "250ms", "10s", "15m", "1h" or plain seconds. */
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

static bool parse_size(const char *s, unsigned long long *out)
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

static bool parse_port(const char *s, size_t n, uint16_t *out)
{
	if (n == 0 || n > 5 || s[0] == '0')
		return false;
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return false;
	*out = (uint16_t)v;
	return true;
}

/* "IP:PORT" or "[IPv6]:PORT"; "localhost" is 127.0.0.1. Writes the reason
 * into why on failure. */
static bool parse_hostport(const char *s, struct cidr_addr *a, uint16_t *port, bool port_optional,
			   uint16_t default_port, const char **why)
{
	const char *host = s, *ps = NULL;
	size_t hlen;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb) {
			*why = "has \"[\" without \"]\"";
			return false;
		}
		host = s + 1;
		hlen = (size_t)(rb - host);
		if (rb[1] == ':')
			ps = rb + 2;
		else if (rb[1] != '\0') {
			*why = "has unexpected characters after \"]\"";
			return false;
		}
	} else {
		const char *c = strchr(s, ':');
		if (c && strchr(c + 1, ':')) {
			if (port_optional && cidr_addr_parse(s, a)) {
				*port = default_port;
				return true;
			}
			*why = "is not ADDRESS:PORT; put IPv6 addresses in brackets ([::1]:1080)";
			return false;
		}
		hlen = c ? (size_t)(c - s) : strlen(s);
		if (c)
			ps = c + 1;
	}
	if (hlen == 9 && strncmp(host, "localhost", 9) == 0) {
		cidr_addr_parse("127.0.0.1", a);
	} else if (!cidr_addr_parsen(host, hlen, a)) {
		*why = "needs an IP address (names are not resolved here)";
		return false;
	}
	if (!ps) {
		if (!port_optional) {
			*why = "needs a port (ADDRESS:PORT)";
			return false;
		}
		*port = default_port;
		return true;
	}
	if (!parse_port(ps, strlen(ps), port)) {
		*why = "has a bad port; expected 1 to 65535";
		return false;
	}
	return true;
}

static bool is_loopback(const struct cidr_addr *a)
{
	return (a->family == AF_INET && a->b[0] == 127) ||
	       (a->family == AF_INET6 && a->b[15] == 1 &&
		memcmp(a->b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 15) == 0);
}

/* ------------------------------------------------------------------ */
/* the settings being merged */

struct sink_list {
	struct audit_sink_config *v;
	size_t n;
};

struct settings {
	struct config *c;
	struct policy_builder *b;
	char listen_origin[300];	/* where the listeners came from */
	bool listen_indexed;
	struct sink_list sinks;
	bool sinks_set;
	char *syslog_extra;	/* from env/flag: added to sinks */
	bool allow_default_route;
	bool force_public_listen;
	cJSON *file_rules;	/* borrowed from the parsed file */
	cJSON *file_users;
	cJSON *file_inbound;	/* borrowed: the file's "inbound" list (inbound_config.c) */
	const char *file_name;
	cJSON *eff;		/* effective config being assembled */
	struct {
		struct cidr_prefix p;
		char origin[96];
		char text[64];
	} *routes;
	size_t n_routes;
	struct strv lift;
	char lift_origin[64];
	char admin_origin[64];		/* where the admin address came from */
};

static void sinks_free(struct sink_list *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i].path);
		free(s->v[i].target);
	}
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

static bool sinks_add(struct sink_list *s, enum audit_sink_kind k, const char *path,
		      const char *target)
{
	struct audit_sink_config *v = realloc(s->v, (s->n + 1) * sizeof *v);
	if (!v)
		return false;
	s->v = v;
	memset(&v[s->n], 0, sizeof v[s->n]);
	v[s->n].kind = k;
	if (path)
		v[s->n].path = strdup(path);
	if (target)
		v[s->n].target = strdup(target);
	s->n++;
	return true;
}

static bool check_syslog_target(const char *t)
{
	if (strncmp(t, "unix:", 5) == 0)
		return t[5] == '/';
	if (strncmp(t, "udp:", 4) == 0 || strncmp(t, "tcp:", 4) == 0) {
		struct cidr_addr a;
		uint16_t port;
		const char *why;
		return parse_hostport(t + 4, &a, &port, false, 0, &why);
	}
	return false;
}

static bool set_listeners(struct settings *st, struct ctx *x, const char *origin,
			  const char *const *v, size_t n, bool indexed)
{
	struct config *c = st->c;
	char b[256];
	if (n == 0)
		return fail(x, "%s: is empty; at least one listen address is needed", origin);
	struct config_listener *ls = calloc(n, sizeof *ls);
	if (!ls)
		return fail(x, "out of memory");
	for (size_t i = 0; i < n; i++) {
		struct cidr_addr a;
		uint16_t port;
		const char *why = "";
		if (!parse_hostport(v[i], &a, &port, false, 0, &why)) {
			free(ls);
			if (indexed)
				return fail(x, "%s[%zu]: \"%s\" %s", origin, i, q(v[i], b, sizeof b), why);
			return fail(x, "%s: \"%s\" %s", origin, q(v[i], b, sizeof b), why);
		}
		ls[i].len = cidr_addr_to_sockaddr(&a, port, &ls[i].ss);
		cidr_addr_format_port(&a, port, ls[i].text, sizeof ls[i].text);
		ls[i].loopback = is_loopback(&a);
	}
	free(c->listeners);
	c->listeners = ls;
	c->n_listeners = n;
	snprintf(st->listen_origin, sizeof st->listen_origin, "%s", origin);
	st->listen_indexed = indexed;
	return true;
}

/* The admin endpoint: "ADDR:PORT", or "" / "off" for none. */
static bool set_admin(struct settings *st, struct ctx *x, const char *origin, const char *v)
{
	struct config *c = st->c;
	char b[256];
	c->has_admin = false;
	memset(&c->admin, 0, sizeof c->admin);
	if (v[0] == '\0' || strcmp(v, "off") == 0)
		return true;
	struct cidr_addr a;
	uint16_t port;
	const char *why = "";
	if (!parse_hostport(v, &a, &port, false, 0, &why))
		return fail(x, "%s: \"%s\" %s", origin, q(v, b, sizeof b), why);
	c->admin.len = cidr_addr_to_sockaddr(&a, port, &c->admin.ss);
	cidr_addr_format_port(&a, port, c->admin.text, sizeof c->admin.text);
	c->admin.loopback = is_loopback(&a);
	c->has_admin = true;
	snprintf(st->admin_origin, sizeof st->admin_origin, "%s", origin);
	return true;
}

static bool set_upstream(struct settings *st, struct ctx *x, const char *origin, const char *v)
{
	struct config_upstream *u = &st->c->upstream;
	char b[256];
	const char *rest;
	memset(u, 0, sizeof *u);
	if (strcmp(v, "direct") == 0) {
		u->kind = CONFIG_UPSTREAM_DIRECT;
		snprintf(u->text, sizeof u->text, "direct");
		return true;
	}
	if (strncmp(v, "socks5://", 9) == 0 || strncmp(v, "socks5h://", 10) == 0) {
		u->kind = CONFIG_UPSTREAM_SOCKS5;
		rest = strstr(v, "//") + 2;
	} else if (strncmp(v, "http://", 7) == 0) {
		u->kind = CONFIG_UPSTREAM_HTTP;
		rest = v + 7;
	} else {
		return fail(x, "%s: \"%s\" is not an upstream; expected socks5://HOST:PORT, "
			    "http://HOST:PORT or direct", origin, q(v, b, sizeof b));
	}
	char hp[200];
	snprintf(hp, sizeof hp, "%s", rest);
	size_t l = strlen(hp);
	if (l && hp[l - 1] == '/')
		hp[l - 1] = '\0';
	const char *why = "";
	if (!parse_hostport(hp, &u->addr, &u->port, false, 0, &why))
		return fail(x, "%s: \"%s\" %s", origin, q(v, b, sizeof b), why);
	char ap[64];
	snprintf(u->text, sizeof u->text, "%s://%s",
		 u->kind == CONFIG_UPSTREAM_SOCKS5 ? "socks5" : "http",
		 cidr_addr_format_port(&u->addr, u->port, ap, sizeof ap));
	return true;
}

/* This host's interface addresses join the guard "self" (loopback and
 * link-local ones have guards of their own). Read at every build, so a
 * reload sees new ones. */
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

/* "true"/"false" (also 1/0, yes/no) from an environment variable. */
static bool set_bool(struct ctx *x, const char *origin, const char *v, bool *out)
{
	char b[256];
	if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcmp(v, "yes") == 0)
		*out = true;
	else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0 || strcmp(v, "no") == 0)
		*out = false;
	else
		return fail(x, "%s: \"%s\" is not a boolean; expected true or false", origin,
			    q(v, b, sizeof b));
	return true;
}

/* PATH, or "none" (or empty) for no live tailnet view. */
static bool set_socket(struct settings *st, struct ctx *x, const char *origin, const char *v)
{
	char b[256];
	struct config *c = st->c;
	free(c->tailscaled_socket);
	c->tailscaled_socket = NULL;
	if (v[0] == '\0' || strcmp(v, "none") == 0)
		return true;
	/* sockaddr_un's sun_path holds 107 bytes and the NUL */
	if (strlen(v) > 107)
		return fail(x, "%s: \"%s\" is longer than a UNIX socket path may be (107 bytes)",
			    origin, q(v, b, sizeof b));
	c->tailscaled_socket = strdup(v);
	return c->tailscaled_socket ? true : fail(x, "out of memory");
}

static bool add_routes_text(struct settings *st, struct ctx *x, const char *origin,
			    const char *const *v, size_t n, bool indexed)
{
	char b[256], reason[200];
	for (size_t i = 0; i < n; i++) {
		struct cidr_prefix p;
		const char *s = v[i];
		/* TAILSCALE_ADVERTISE_ROUTES tolerates spaces around commas */
		while (*s == ' ')
			s++;
		size_t len = strlen(s);
		while (len && s[len - 1] == ' ')
			len--;
		if (len == 0 && !indexed)
			continue;
		if (!cidr_prefix_parse_reason(s, len, &p, reason, sizeof reason)) {
			char val[256];
			snprintf(val, sizeof val, "%.*s", (int)len, s);
			if (indexed)
				return fail(x, "%s[%zu]: \"%s\"%s%s", origin, i, q(val, b, sizeof b),
					    strncmp(reason, "has ", 4) ? ": " : " ", reason);
			return fail(x, "%s: \"%s\"%s%s", origin, q(val, b, sizeof b),
				    strncmp(reason, "has ", 4) ? ": " : " ", reason);
		}
		void *nv = realloc(st->routes, (st->n_routes + 1) * sizeof *st->routes);
		if (!nv)
			return fail(x, "out of memory");
		st->routes = nv;
		st->routes[st->n_routes].p = p;
		if (indexed)
			snprintf(st->routes[st->n_routes].origin, sizeof st->routes[0].origin,
				 "%s[%zu]", origin, i);
		else
			snprintf(st->routes[st->n_routes].origin, sizeof st->routes[0].origin, "%s",
				 origin);
		snprintf(st->routes[st->n_routes].text, sizeof st->routes[0].text, "%.*s",
			 (int)(len > 60 ? 60 : len), s);
		st->n_routes++;
	}
	return true;
}

static bool split_commas(const char *s, struct strv *out)
{
	const char *p = s;
	for (;;) {
		const char *c = strchr(p, ',');
		size_t n = c ? (size_t)(c - p) : strlen(p);
		char *item = strndup(p, n);
		if (!item || !strv_add(out, item)) {
			free(item);
			return false;
		}
		free(item);
		if (!c)
			break;
		p = c + 1;
	}
	return true;
}

static bool set_duration(struct ctx *x, const char *origin, const char *v, unsigned *slot,
			 bool zero_ok)
{
	char b[256];
	unsigned ms;
	if (!config_parse_duration(v, &ms) || (!zero_ok && ms == 0))
		return fail(x, "%s: \"%s\" is not a duration; expected 250ms, 10s, 15m, 1h or a "
			    "number of seconds%s, at most 7 days", origin, q(v, b, sizeof b),
			    zero_ok ? "" : " above zero");
	*slot = ms;
	return true;
}

static bool set_size(struct ctx *x, const char *origin, const char *v, size_t *slot,
		     unsigned long long lo, unsigned long long hi)
{
	char b[256];
	unsigned long long n;
	if (!parse_size(v, &n) || n < lo || n > hi)
		return fail(x, "%s: \"%s\" is out of range; expected a whole number from %llu to %llu",
			    origin, q(v, b, sizeof b), lo, hi);
	*slot = (size_t)n;
	return true;
}

static bool set_log_level(struct settings *st, struct ctx *x, const char *origin, const char *v)
{
	char b[256];
	int l = log_level_parse(v);
	if (l < 0)
		return fail(x, "%s: \"%s\" is not a log level; expected error, warn, info or debug",
			    origin, q(v, b, sizeof b));
	st->c->log_level = l;
	return true;
}

static bool set_on_failure(struct settings *st, struct ctx *x, const char *origin, const char *v)
{
	char b[256];
	if (strcmp(v, "deny") == 0)
		st->c->audit.fail_closed = true;
	else if (strcmp(v, "continue") == 0)
		st->c->audit.fail_closed = false;
	else
		return fail(x, "%s: \"%s\" is not valid; expected deny or continue", origin,
			    q(v, b, sizeof b));
	return true;
}

static bool set_durability(struct settings *st, struct ctx *x, const char *origin,
			   const char *v)
{
	char b[256];
	if (!audit_durability_parse(v, &st->c->audit.durability))
		return fail(x, "%s: \"%s\" is not a durability; expected queued, written or synced",
			    origin, q(v, b, sizeof b));
	return true;
}

static bool set_dns_servers(struct settings *st, struct ctx *x, const char *origin,
			    const char *const *v, size_t n, bool indexed)
{
	struct config *c = st->c;
	char b[256];
	for (size_t i = 0; i < c->n_dns_servers; i++)
		free(c->dns_servers[i]);
	free(c->dns_servers);
	c->dns_servers = NULL;
	c->n_dns_servers = 0;
	if (n == 0)
		return true;
	c->dns_servers = calloc(n, sizeof *c->dns_servers);
	if (!c->dns_servers)
		return fail(x, "out of memory");
	for (size_t i = 0; i < n; i++) {
		struct cidr_addr a;
		uint16_t port;
		const char *why = "";
		if (!parse_hostport(v[i], &a, &port, true, 53, &why) || strncmp(v[i], "localhost", 9) == 0) {
			if (indexed)
				return fail(x, "%s[%zu]: \"%s\" %s", origin, i, q(v[i], b, sizeof b),
					    why[0] ? why : "needs an IP address");
			return fail(x, "%s: \"%s\" %s", origin, q(v[i], b, sizeof b),
				    why[0] ? why : "needs an IP address");
		}
		char t[80];
		cidr_addr_format_port(&a, port, t, sizeof t);
		c->dns_servers[i] = strdup(t);
		c->n_dns_servers++;
	}
	return true;
}

static bool add_lift(struct settings *st, struct ctx *x, const char *origin, const char *name,
		     size_t idx, bool indexed)
{
	char b[256];
	const char *const *g = policy_guard_names();
	bool known = false;
	for (size_t i = 0; g[i]; i++)
		known = known || strcmp(g[i], name) == 0;
	if (!known) {
		if (indexed)
			return fail(x, "%s[%zu]: \"%s\" is not a guard; expected loopback, link-local, "
				    "this-network, multicast, broadcast, tailscale-service or upstream",
				    origin, idx, q(name, b, sizeof b));
		return fail(x, "%s: \"%s\" is not a guard; expected loopback, link-local, "
			    "this-network, multicast, broadcast, tailscale-service or upstream",
			    origin, q(name, b, sizeof b));
	}
	for (size_t i = 0; i < st->lift.n; i++)
		if (strcmp(st->lift.v[i], name) == 0)
			return true;
	return strv_add(&st->lift, name) || fail(x, "out of memory");
}

/* ------------------------------------------------------------------ */
/* the config file */

/* Blanks out // and block comments and drops trailing commas before '}' or
 * ']', outside strings; keeps newlines so cJSON's error offsets map to the
 * same line. Returns false (with *bad_line) for an unterminated comment. */
static bool strip_hujson(char *s, size_t n, size_t *bad_line)
{
	size_t line = 1;
	bool in_str = false;
	char prev = 0;	/* last significant character outside strings and comments */
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '\n')
			line++;
		if (in_str) {
			if (c == '\\' && i + 1 < n)
				i++;
			else if (c == '"')
				in_str = false;
			prev = '"';
			continue;
		}
		bool sig = !(c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
			     (c == '/' && i + 1 < n && (s[i + 1] == '/' || s[i + 1] == '*')));
		char this_prev = prev;
		if (sig)
			prev = c;
		if (c == '"') {
			in_str = true;
		} else if (c == '/' && i + 1 < n && s[i + 1] == '/') {
			while (i < n && s[i] != '\n')
				s[i++] = ' ';
			i--;
		} else if (c == '/' && i + 1 < n && s[i + 1] == '*') {
			size_t start_line = line;
			s[i] = s[i + 1] = ' ';
			i += 2;
			while (i < n && !(s[i] == '*' && i + 1 < n && s[i + 1] == '/')) {
				if (s[i] == '\n')
					line++;
				else
					s[i] = ' ';
				i++;
			}
			if (i >= n) {
				*bad_line = start_line;
				return false;
			}
			s[i] = s[i + 1] = ' ';
			i++;
		} else if (c == ',') {
			/* Look past blanks and comments for a closing bracket. */
			size_t j = i + 1;
			for (;;) {
				while (j < n && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r'))
					j++;
				if (j + 1 < n && s[j] == '/' && s[j + 1] == '/') {
					while (j < n && s[j] != '\n')
						j++;
					continue;
				}
				if (j + 1 < n && s[j] == '/' && s[j + 1] == '*') {
					j += 2;
					while (j + 1 < n && !(s[j] == '*' && s[j + 1] == '/'))
						j++;
					j += 2;
					continue;
				}
				break;
			}
			if (j < n && (s[j] == '}' || s[j] == ']') && this_prev != '{' &&
			    this_prev != '[' && this_prev != ',' && this_prev != 0)
				s[i] = ' ';
		}
	}
	return true;
}

static void line_col(const char *s, const char *at, size_t *line, size_t *col)
{
	*line = 1;
	*col = 1;
	for (const char *p = s; p < at && *p; p++) {
		if (*p == '\n') {
			(*line)++;
			*col = 1;
		} else {
			(*col)++;
		}
	}
}

/* Parses JSON-with-comments text; NULL with the error in x. */
/* The first \u0000 escape inside a JSON string of buf, or NULL. cJSON
 * would decode it into a NUL that silently cuts the string short
 * ("db.internal\u0000evil:80" would read as "db.internal"). */
static const char *find_nul_escape(const char *buf)
{
	bool in_string = false;
	for (const char *p = buf; *p; p++) {
		if (*p == '"') {
			in_string = !in_string;
		} else if (in_string && *p == '\\') {
			if (p[1] == 'u' && strncmp(p + 2, "0000", 4) == 0)
				return p;
			if (p[1])
				p++;	/* whatever is escaped, it is not a quote */
		}
	}
	return NULL;
}

cJSON *config_parse_json(const char *name, const char *text, size_t len, char *err,
			 size_t errlen)
{
	char *buf = malloc(len + 1);
	if (!buf) {
		snprintf(err, errlen, "%s: out of memory", name);
		return NULL;
	}
	memcpy(buf, text, len);
	buf[len] = '\0';
	if (strlen(buf) != len) {
		snprintf(err, errlen, "%s: contains a NUL byte; expected JSON text", name);
		free(buf);
		return NULL;
	}
	size_t bad_line = 0;
	if (!strip_hujson(buf, len, &bad_line)) {
		snprintf(err, errlen, "%s: line %zu: a /* comment is never closed", name, bad_line);
		free(buf);
		return NULL;
	}
	const char *nul = find_nul_escape(buf);
	if (nul) {
		size_t line, col;
		line_col(buf, nul, &line, &col);
		snprintf(err, errlen, "%s: line %zu, column %zu: a string contains \\u0000 (NUL), "
			 "which would cut it short; remove it", name, line, col);
		free(buf);
		return NULL;
	}
	const char *end = NULL;
	cJSON *root = cJSON_ParseWithOpts(buf, &end, true);
	if (!root) {
		size_t line, col;
		const char *at = end ? end : cJSON_GetErrorPtr();
		if (!at)
			at = buf;
		line_col(buf, at, &line, &col);
		snprintf(err, errlen, "%s: line %zu, column %zu: invalid JSON near \"%.20s\"", name,
			 line, col, at);
		/* keep the message on one line */
		for (char *p = err; *p; p++)
			if (*p == '\n' || *p == '\r' || *p == '\t')
				*p = ' ';
		free(buf);
		return NULL;
	}
	free(buf);
	if (!cJSON_IsObject(root)) {
		snprintf(err, errlen, "%s: the top level must be a JSON object ({...})", name);
		cJSON_Delete(root);
		return NULL;
	}
	return root;
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

/* Rejects unknown and duplicate keys of obj. */
static bool check_keys(struct ctx *x, const char *path, const cJSON *obj,
		       const char *const *known)
{
	for (const cJSON *it = obj->child; it; it = it->next) {
		bool ok = false;
		for (size_t i = 0; known[i]; i++)
			ok = ok || strcmp(it->string, known[i]) == 0;
		char b[256];
		if (!ok) {
			char list[400] = "";
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

static bool want_string(struct ctx *x, const char *path, const cJSON *v)
{
	if (cJSON_IsString(v) && v->valuestring)
		return true;
	return fail(x, "%s: is %s; expected a string", path, type_name(v));
}

/* Array of strings into a borrowed vector (caller frees the vector only). */
static bool want_string_array(struct ctx *x, const char *path, const cJSON *v,
			      const char ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (cJSON_IsString(v)) {
		/* a single string is accepted as a one-element list */
		*out = malloc(sizeof **out);
		if (!*out)
			return fail(x, "out of memory");
		(*out)[0] = v->valuestring;
		*n = 1;
		return true;
	}
	if (!cJSON_IsArray(v))
		return fail(x, "%s: is %s; expected an array of strings", path, type_name(v));
	size_t cnt = (size_t)cJSON_GetArraySize(v);
	*out = calloc(cnt ? cnt : 1, sizeof **out);
	if (!*out)
		return fail(x, "out of memory");
	size_t i = 0;
	for (const cJSON *it = v->child; it; it = it->next, i++) {
		if (!cJSON_IsString(it)) {
			free(*out);
			*out = NULL;
			return fail(x, "%s[%zu]: is %s; expected a string", path, i, type_name(it));
		}
		(*out)[i] = it->valuestring;
	}
	*n = cnt;
	return true;
}

/* A duration or size given as a JSON number or string, as text. */
static bool scalar_text(struct ctx *x, const char *path, const cJSON *v, char *buf, size_t len,
			bool duration)
{
	if (cJSON_IsString(v)) {
		snprintf(buf, len, "%s", v->valuestring);
		return true;
	}
	if (cJSON_IsNumber(v)) {
		double d = v->valuedouble;
		if (d < 0 || d > 1e12)
			return fail(x, "%s: %g is out of range", path, d);
		if (duration && d != (double)(unsigned long long)d) {
			snprintf(buf, len, "%llums", (unsigned long long)(d * 1000 + 0.5));
			return true;
		}
		if (d != (double)(unsigned long long)d)
			return fail(x, "%s: %g is not a whole number", path, d);
		snprintf(buf, len, "%llu", (unsigned long long)d);
		return true;
	}
	return fail(x, "%s: is %s; expected %s", path, type_name(v),
		    duration ? "a duration (\"10s\") or a number of seconds" : "a number");
}

static bool apply_file(struct settings *st, struct ctx *x, const char *name, cJSON *root)
{
	static const char *const top[] = {
		"listen", "upstream", "tailscaled_socket", "close_revoked", "routes",
		"allow_default_route",
		"lift_guards", "force_public_listen", "users", "rules", "limits", "dns", "audit",
		"log_level", "admin", "udp", "inbound", NULL,
	};
	char path[256], buf[128];
	if (!check_keys(x, name, root, top))
		return false;
	cJSON *v;
	const char **sv;
	size_t n;

	if ((v = cJSON_GetObjectItemCaseSensitive(root, "listen"))) {
		snprintf(path, sizeof path, "%s: listen", name);
		if (!want_string_array(x, path, v, &sv, &n))
			return false;
		bool ok = set_listeners(st, x, path, sv, n, true);
		free(sv);
		if (!ok)
			return false;
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "upstream"))) {
		snprintf(path, sizeof path, "%s: upstream", name);
		if (!want_string(x, path, v) || !set_upstream(st, x, path, v->valuestring))
			return false;
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "tailscaled_socket"))) {
		snprintf(path, sizeof path, "%s: tailscaled_socket", name);
		if (!want_string(x, path, v) || !set_socket(st, x, path, v->valuestring))
			return false;
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "routes"))) {
		snprintf(path, sizeof path, "%s: routes", name);
		if (!want_string_array(x, path, v, &sv, &n))
			return false;
		bool ok = add_routes_text(st, x, path, sv, n, true);
		free(sv);
		if (!ok)
			return false;
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "allow_default_route"))) {
		if (!cJSON_IsBool(v))
			return fail(x, "%s: allow_default_route: is %s; expected true or false", name,
				    type_name(v));
		st->allow_default_route = cJSON_IsTrue(v);
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "close_revoked"))) {
		if (!cJSON_IsBool(v))
			return fail(x, "%s: close_revoked: is %s; expected true or false", name,
				    type_name(v));
		st->c->close_revoked = cJSON_IsTrue(v);
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "admin"))) {
		snprintf(path, sizeof path, "%s: admin", name);
		if (!cJSON_IsNull(v) && (!want_string(x, path, v) ||
					 !set_admin(st, x, path, v->valuestring)))
			return false;
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "udp"))) {
		if (!cJSON_IsBool(v))
			return fail(x, "%s: udp: is %s; expected true or false", name, type_name(v));
		st->c->udp = cJSON_IsTrue(v);
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "force_public_listen"))) {
		if (!cJSON_IsBool(v))
			return fail(x, "%s: force_public_listen: is %s; expected true or false", name,
				    type_name(v));
		st->force_public_listen = cJSON_IsTrue(v);
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "lift_guards"))) {
		snprintf(path, sizeof path, "%s: lift_guards", name);
		if (!want_string_array(x, path, v, &sv, &n))
			return false;
		for (size_t i = 0; i < n; i++)
			if (!add_lift(st, x, path, sv[i], i, true)) {
				free(sv);
				return false;
			}
		free(sv);
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "users"))) {
		if (!cJSON_IsObject(v))
			return fail(x, "%s: users: is %s; expected an object of name: hash", name,
				    type_name(v));
		st->file_users = v;
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "rules"))) {
		if (!cJSON_IsArray(v))
			return fail(x, "%s: rules: is %s; expected an array of rule objects", name,
				    type_name(v));
		st->file_rules = v;
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "inbound")))
		st->file_inbound = v;
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "limits"))) {
		static const char *const keys[] = {
			"handshake_timeout", "connect_timeout", "dns_timeout", "idle_timeout",
			"shutdown_grace", "max_head_bytes", "max_connections", "buffer_bytes",
			"relay", "udp_destinations", "udp_datagrams_per_second", "udp_idle_timeout",
			NULL,
		};
		snprintf(path, sizeof path, "%s: limits", name);
		if (!cJSON_IsObject(v))
			return fail(x, "%s: is %s; expected an object", path, type_name(v));
		if (!check_keys(x, path, v, keys))
			return false;
		struct config *c = st->c;
		unsigned *dur[] = { &c->handshake_timeout_ms, &c->connect_timeout_ms,
				    &c->dns_timeout_ms, &c->idle_timeout_ms, &c->shutdown_grace_ms };
		for (int i = 0; i < 5; i++) {
			cJSON *it = cJSON_GetObjectItemCaseSensitive(v, keys[i]);
			if (!it)
				continue;
			snprintf(path, sizeof path, "%s: limits.%s", name, keys[i]);
			if (!scalar_text(x, path, it, buf, sizeof buf, true) ||
			    !set_duration(x, path, buf, dur[i], i == 4))
				return false;
		}
		size_t *sz[] = { &c->max_head_bytes, &c->max_connections, &c->buffer_bytes };
		static const unsigned long long lo[] = { 1024, 1, 4096 };
		static const unsigned long long hi[] = { 1048576, 1000000, 67108864 };
		for (int i = 0; i < 3; i++) {
			cJSON *it = cJSON_GetObjectItemCaseSensitive(v, keys[5 + i]);
			if (!it)
				continue;
			snprintf(path, sizeof path, "%s: limits.%s", name, keys[5 + i]);
			if (!scalar_text(x, path, it, buf, sizeof buf, false) ||
			    !set_size(x, path, buf, sz[i], lo[i], hi[i]))
				return false;
		}
		cJSON *relay = cJSON_GetObjectItemCaseSensitive(v, "relay");
		if (relay) {
			const char *m = cJSON_GetStringValue(relay);
			if (!m)
				return fail(x, "%s: limits.relay: is %s; expected \"splice\" or \"copy\"",
					    name, type_name(relay));
			if (strcmp(m, "splice") != 0 && strcmp(m, "copy") != 0)
				return fail(x, "%s: limits.relay: \"%s\" is not a relay mode; expected "
					    "\"splice\" or \"copy\"", name, m);
			c->relay_splice = strcmp(m, "splice") == 0;
		}
		size_t *usz[] = { &c->udp_destinations, &c->udp_rate };
		static const unsigned long long uhi[] = { 65536, 1000000 };
		for (int i = 0; i < 2; i++) {
			cJSON *it = cJSON_GetObjectItemCaseSensitive(v, keys[9 + i]);
			if (!it)
				continue;
			snprintf(path, sizeof path, "%s: limits.%s", name, keys[9 + i]);
			if (!scalar_text(x, path, it, buf, sizeof buf, false) ||
			    !set_size(x, path, buf, usz[i], 1, uhi[i]))
				return false;
		}
		cJSON *uidle = cJSON_GetObjectItemCaseSensitive(v, "udp_idle_timeout");
		if (uidle) {
			snprintf(path, sizeof path, "%s: limits.udp_idle_timeout", name);
			if (!scalar_text(x, path, uidle, buf, sizeof buf, true) ||
			    !set_duration(x, path, buf, &c->udp_idle_timeout_ms, false))
				return false;
		}
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "dns"))) {
		static const char *const keys[] = { "servers", "hosts_file", NULL };
		snprintf(path, sizeof path, "%s: dns", name);
		if (!cJSON_IsObject(v))
			return fail(x, "%s: is %s; expected an object", path, type_name(v));
		if (!check_keys(x, path, v, keys))
			return false;
		cJSON *it;
		if ((it = cJSON_GetObjectItemCaseSensitive(v, "servers"))) {
			snprintf(path, sizeof path, "%s: dns.servers", name);
			if (!want_string_array(x, path, it, &sv, &n))
				return false;
			bool ok = set_dns_servers(st, x, path, sv, n, true);
			free(sv);
			if (!ok)
				return false;
		}
		if ((it = cJSON_GetObjectItemCaseSensitive(v, "hosts_file"))) {
			snprintf(path, sizeof path, "%s: dns.hosts_file", name);
			if (!want_string(x, path, it))
				return false;
			free(st->c->hosts_file);
			st->c->hosts_file = strdup(it->valuestring);
		}
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "audit"))) {
		static const char *const keys[] = { "sinks", "on_failure", "hmac_key_file",
						    "flush_ms", "durability", NULL };
		snprintf(path, sizeof path, "%s: audit", name);
		if (!cJSON_IsObject(v))
			return fail(x, "%s: is %s; expected an object", path, type_name(v));
		if (!check_keys(x, path, v, keys))
			return false;
		cJSON *it;
		if ((it = cJSON_GetObjectItemCaseSensitive(v, "sinks"))) {
			if (!cJSON_IsArray(it))
				return fail(x, "%s: audit.sinks: is %s; expected an array of objects", name,
					    type_name(it));
			size_t i = 0;
			sinks_free(&st->sinks);
			st->sinks_set = true;
			for (cJSON *s = it->child; s; s = s->next, i++) {
				static const char *const skeys[] = { "type", "path", "target", NULL };
				snprintf(path, sizeof path, "%s: audit.sinks[%zu]", name, i);
				if (!cJSON_IsObject(s))
					return fail(x, "%s: is %s; expected an object", path, type_name(s));
				if (!check_keys(x, path, s, skeys))
					return false;
				cJSON *t = cJSON_GetObjectItemCaseSensitive(s, "type");
				cJSON *p = cJSON_GetObjectItemCaseSensitive(s, "path");
				cJSON *g = cJSON_GetObjectItemCaseSensitive(s, "target");
				char b[256];
				if (!t || !cJSON_IsString(t))
					return fail(x, "%s.type: is missing; expected file, stdout or syslog", path);
				if (strcmp(t->valuestring, "file") == 0) {
					if (!p || !cJSON_IsString(p) || !p->valuestring[0])
						return fail(x, "%s.path: is missing; a file sink needs a path", path);
					sinks_add(&st->sinks, AUDIT_SINK_FILE, p->valuestring, NULL);
				} else if (strcmp(t->valuestring, "stdout") == 0) {
					sinks_add(&st->sinks, AUDIT_SINK_STDOUT, NULL, NULL);
				} else if (strcmp(t->valuestring, "syslog") == 0) {
					const char *tg = g && cJSON_IsString(g) ? g->valuestring : "unix:/dev/log";
					if (!check_syslog_target(tg))
						return fail(x, "%s.target: \"%s\" is not a syslog target; expected "
							    "unix:/PATH, udp:IP:PORT or tcp:IP:PORT", path,
							    q(tg, b, sizeof b));
					sinks_add(&st->sinks, AUDIT_SINK_SYSLOG, NULL, tg);
				} else {
					return fail(x, "%s.type: \"%s\" is not a sink type; expected file, "
						    "stdout or syslog", path, q(t->valuestring, b, sizeof b));
				}
			}
		}
		if ((it = cJSON_GetObjectItemCaseSensitive(v, "on_failure"))) {
			snprintf(path, sizeof path, "%s: audit.on_failure", name);
			if (!want_string(x, path, it) || !set_on_failure(st, x, path, it->valuestring))
				return false;
		}
		if ((it = cJSON_GetObjectItemCaseSensitive(v, "hmac_key_file"))) {
			snprintf(path, sizeof path, "%s: audit.hmac_key_file", name);
			if (!want_string(x, path, it))
				return false;
			free(st->c->audit.hmac_key_file);
			st->c->audit.hmac_key_file = strdup(it->valuestring);
		}
		if ((it = cJSON_GetObjectItemCaseSensitive(v, "flush_ms"))) {
			snprintf(path, sizeof path, "%s: audit.flush_ms", name);
			if (!cJSON_IsNumber(it) || it->valuedouble < 1 || it->valuedouble > 60000 ||
			    it->valuedouble != (double)(int)it->valuedouble)
				return fail(x, "%s: expected a whole number of milliseconds from 1 to 60000",
					    path);
			st->c->audit.flush_ms = (unsigned)it->valueint;
		}
		if ((it = cJSON_GetObjectItemCaseSensitive(v, "durability"))) {
			snprintf(path, sizeof path, "%s: audit.durability", name);
			if (!want_string(x, path, it) || !set_durability(st, x, path, it->valuestring))
				return false;
		}
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "log_level"))) {
		snprintf(path, sizeof path, "%s: log_level", name);
		if (!want_string(x, path, v) || !set_log_level(st, x, path, v->valuestring))
			return false;
	}
	return true;
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

/* ------------------------------------------------------------------ */
/* users and rules */

static bool apply_users(struct settings *st, struct ctx *x)
{
	if (!st->file_users)
		return true;
	char b[256], why[256];
	cJSON *eff_users = cJSON_AddObjectToObject(st->eff, "users");
	for (cJSON *u = st->file_users->child; u; u = u->next) {
		for (cJSON *p = st->file_users->child; p != u; p = p->next)
			if (strcmp(p->string, u->string) == 0)
				return fail(x, "%s: users: user \"%s\" appears twice", st->file_name,
					    q(u->string, b, sizeof b));
		if (!cJSON_IsString(u))
			return fail(x, "%s: users.%s: is %s; expected a hash string from `tailfence passwd`",
				    st->file_name, q(u->string, b, sizeof b), type_name(u));
		why[0] = '\0';
		if (!policy_builder_add_user(st->b, u->string, u->valuestring, why, sizeof why))
			return fail(x, "%s: users.%s: %s%s", st->file_name, q(u->string, b, sizeof b),
				    strncmp(why, "user ", 5) == 0 ? "" : "the hash ", why);
		cJSON_AddStringToObject(eff_users, u->string, "<redacted>");
	}
	return true;
}

static bool apply_rule(struct settings *st, struct ctx *x, const cJSON *r, size_t idx)
{
	static const char *const keys[] = { "name", "action", "dst", "src", "users", "via", NULL };
	char path[200], b[256], why[400];
	struct policy_rule_spec spec;
	const char **dst = NULL, **src = NULL, **users = NULL;
	bool ok = false;

	memset(&spec, 0, sizeof spec);
	snprintf(path, sizeof path, "%s: rules[%zu]", st->file_name, idx);
	if (!cJSON_IsObject(r))
		return fail(x, "%s: is %s; expected a rule object", path, type_name(r));
	if (!check_keys(x, path, r, keys))
		return false;
	cJSON *v = cJSON_GetObjectItemCaseSensitive(r, "name");
	if (v) {
		char p2[240];
		snprintf(p2, sizeof p2, "%s.name", path);
		if (!want_string(x, p2, v))
			return false;
		spec.name = v->valuestring;
	}
	v = cJSON_GetObjectItemCaseSensitive(r, "action");
	if (!v)
		return fail(x, "%s.action: is missing; expected accept or deny", path);
	if (!cJSON_IsString(v) ||
	    (strcmp(v->valuestring, "accept") != 0 && strcmp(v->valuestring, "deny") != 0))
		return fail(x, "%s.action: \"%s\" is not valid; expected accept or deny", path,
			    cJSON_IsString(v) ? q(v->valuestring, b, sizeof b) : type_name(v));
	spec.action = strcmp(v->valuestring, "accept") == 0 ? POLICY_ACCEPT : POLICY_DENY;
	v = cJSON_GetObjectItemCaseSensitive(r, "via");
	if (v) {
		static const char *const vias[] = { "tailnet", "direct", "upstream" };
		static const enum policy_via via_of[] = { POLICY_VIA_TAILNET, POLICY_VIA_DIRECT,
							  POLICY_VIA_UPSTREAM };
		size_t k = 0;
		while (k < 3 && !(cJSON_IsString(v) && strcmp(v->valuestring, vias[k]) == 0))
			k++;
		if (k == 3)
			return fail(x, "%s.via: \"%s\" is not valid; expected tailnet, direct or upstream",
				    path, cJSON_IsString(v) ? q(v->valuestring, b, sizeof b) : type_name(v));
		spec.via = via_of[k];
	}
	char p2[240];
	v = cJSON_GetObjectItemCaseSensitive(r, "dst");
	if (!v)
		return fail(x, "%s.dst: is missing; expected a list like [\"10.0.0.0/24:443\"]", path);
	snprintf(p2, sizeof p2, "%s.dst", path);
	if (!want_string_array(x, p2, v, &dst, &spec.n_dst))
		goto out;
	spec.dst = dst;
	if ((v = cJSON_GetObjectItemCaseSensitive(r, "src"))) {
		snprintf(p2, sizeof p2, "%s.src", path);
		if (!want_string_array(x, p2, v, &src, &spec.n_src))
			goto out;
		spec.src = src;
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(r, "users"))) {
		snprintf(p2, sizeof p2, "%s.users", path);
		if (!want_string_array(x, p2, v, &users, &spec.n_users))
			goto out;
		spec.users = users;
	}
	why[0] = '\0';
	if (!policy_builder_add_rule(st->b, &spec, why, sizeof why)) {
		fail(x, "%s.%s", path, why);
		goto out;
	}
	ok = true;
out:
	free(dst);
	free(src);
	free(users);
	return ok;
}

/* ------------------------------------------------------------------ */
/* build */

static void settings_free(struct settings *st)
{
	sinks_free(&st->sinks);
	free(st->syslog_extra);
	free(st->routes);
	strv_free(&st->lift);
}

static void config_free(struct config *c)
{
	if (!c)
		return;
	free(c->listeners);
	policy_free(c->policy);
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
	free(c->effective_json);
	free(c);
}

static const char *envv(const char *name)
{
	const char *v = getenv(name);
	return v && v[0] ? v : NULL;
}

static void fmt_duration(unsigned ms, char *buf, size_t len)
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

static void build_effective(struct settings *st, const struct config_args *args)
{
	struct config *c = st->c;
	cJSON *e = st->eff;
	char buf[128];
	(void)args;

	cJSON *l = cJSON_AddArrayToObject(e, "listen");
	for (size_t i = 0; i < c->n_listeners; i++)
		cJSON_AddItemToArray(l, cJSON_CreateString(c->listeners[i].text));
	cJSON_AddStringToObject(e, "upstream", c->upstream.text);
	cJSON_AddStringToObject(e, "tailscaled_socket",
				c->tailscaled_socket ? c->tailscaled_socket : "none");
	cJSON *r = cJSON_AddArrayToObject(e, "routes");
	for (size_t i = 0; i < c->n_static_routes; i++)
		cJSON_AddItemToArray(r, cJSON_CreateString(
			cidr_prefix_format(&c->static_routes[i], buf, sizeof buf)));
	cJSON_AddBoolToObject(e, "allow_default_route", st->allow_default_route);
	cJSON *g = cJSON_AddArrayToObject(e, "lift_guards");
	for (size_t i = 0; i < st->lift.n; i++)
		cJSON_AddItemToArray(g, cJSON_CreateString(st->lift.v[i]));
	cJSON_AddBoolToObject(e, "close_revoked", c->close_revoked);
	cJSON_AddBoolToObject(e, "force_public_listen", st->force_public_listen);
	if (c->has_admin)
		cJSON_AddStringToObject(e, "admin", c->admin.text);
	else
		cJSON_AddNullToObject(e, "admin");
	cJSON_AddBoolToObject(e, "udp", c->udp);
	if (!cJSON_GetObjectItemCaseSensitive(e, "users"))
		cJSON_AddObjectToObject(e, "users");
	/* Rules as compiled, in evaluation order (file rules, --allow rules,
	 * or the default). */
	cJSON *rules = cJSON_AddArrayToObject(e, "rules");
	for (size_t i = 0; i < policy_rule_count(c->policy); i++) {
		char t[1024];
		const char *name = policy_rule_text(c->policy, i);
		const char *canon = policy_rule_canonical(c->policy, i);
		if (strcmp(name, canon) == 0)
			snprintf(t, sizeof t, "%s", canon);
		else
			snprintf(t, sizeof t, "%s: %s", name, canon);
		cJSON_AddItemToArray(rules, cJSON_CreateString(t));
	}
	cJSON *lim = cJSON_AddObjectToObject(e, "limits");
	fmt_duration(c->handshake_timeout_ms, buf, sizeof buf);
	cJSON_AddStringToObject(lim, "handshake_timeout", buf);
	fmt_duration(c->connect_timeout_ms, buf, sizeof buf);
	cJSON_AddStringToObject(lim, "connect_timeout", buf);
	fmt_duration(c->dns_timeout_ms, buf, sizeof buf);
	cJSON_AddStringToObject(lim, "dns_timeout", buf);
	fmt_duration(c->idle_timeout_ms, buf, sizeof buf);
	cJSON_AddStringToObject(lim, "idle_timeout", buf);
	fmt_duration(c->shutdown_grace_ms, buf, sizeof buf);
	cJSON_AddStringToObject(lim, "shutdown_grace", buf);
	cJSON_AddNumberToObject(lim, "max_head_bytes", (double)c->max_head_bytes);
	cJSON_AddNumberToObject(lim, "max_connections", (double)c->max_connections);
	cJSON_AddNumberToObject(lim, "buffer_bytes", (double)c->buffer_bytes);
	cJSON_AddStringToObject(lim, "relay", c->relay_splice ? "splice" : "copy");
	cJSON_AddNumberToObject(lim, "udp_destinations", (double)c->udp_destinations);
	cJSON_AddNumberToObject(lim, "udp_datagrams_per_second", (double)c->udp_rate);
	fmt_duration(c->udp_idle_timeout_ms, buf, sizeof buf);
	cJSON_AddStringToObject(lim, "udp_idle_timeout", buf);
	cJSON *dns = cJSON_AddObjectToObject(e, "dns");
	cJSON *sv = cJSON_AddArrayToObject(dns, "servers");
	for (size_t i = 0; i < c->n_dns_servers; i++)
		cJSON_AddItemToArray(sv, cJSON_CreateString(c->dns_servers[i]));
	if (c->hosts_file)
		cJSON_AddStringToObject(dns, "hosts_file", c->hosts_file);
	else
		cJSON_AddNullToObject(dns, "hosts_file");
	cJSON *au = cJSON_AddObjectToObject(e, "audit");
	cJSON *sinks = cJSON_AddArrayToObject(au, "sinks");
	for (size_t i = 0; i < c->audit.n_sinks; i++) {
		cJSON *s = cJSON_CreateObject();
		const struct audit_sink_config *k = &c->audit.sinks[i];
		cJSON_AddStringToObject(s, "type", k->kind == AUDIT_SINK_FILE ? "file"
					: k->kind == AUDIT_SINK_STDOUT ? "stdout" : "syslog");
		if (k->path)
			cJSON_AddStringToObject(s, "path", k->path);
		if (k->target)
			cJSON_AddStringToObject(s, "target", k->target);
		cJSON_AddItemToArray(sinks, s);
	}
	cJSON_AddStringToObject(au, "on_failure", c->audit.fail_closed ? "deny" : "continue");
	if (c->audit.hmac_key_file)
		cJSON_AddStringToObject(au, "hmac_key_file", c->audit.hmac_key_file);
	else
		cJSON_AddNullToObject(au, "hmac_key_file");
	cJSON_AddNumberToObject(au, "flush_ms", c->audit.flush_ms);
	cJSON_AddStringToObject(au, "durability", audit_durability_name(c->audit.durability));
	static const char *const lv[] = { "error", "warn", "info", "debug" };
	cJSON_AddStringToObject(e, "log_level", lv[c->log_level & 3]);
	inbound_config_effective(c->inbound, e);
}

struct config *config_build(const struct config_args *args, char *err, size_t errlen)
{
	struct settings st;
	struct ctx x = { .err = err, .errlen = errlen };
	struct config *c = calloc(1, sizeof *c);
	cJSON *root = NULL;
	char b[256];

	if (errlen)
		err[0] = '\0';
	memset(&st, 0, sizeof st);
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->refs = 1;
	st.c = c;
	st.b = policy_builder_new();
	st.eff = cJSON_CreateObject();
	if (!st.b || !st.eff) {
		fail(&x, "out of memory");
		goto bad;
	}

	/* 1. embedded defaults */
	{
		const char *l[] = { DEFAULT_LISTEN };
		set_listeners(&st, &x, "default", l, 1, false);
		set_upstream(&st, &x, "default", DEFAULT_UPSTREAM);
	}
	c->handshake_timeout_ms = 10000;
	c->connect_timeout_ms = 10000;
	c->dns_timeout_ms = 5000;
	c->idle_timeout_ms = 15 * 60 * 1000;
	c->shutdown_grace_ms = 10000;
	c->max_head_bytes = 16384;
	c->max_connections = 4096;
	c->buffer_bytes = 262144;
	c->relay_splice = true;
	c->udp = true;
	c->udp_destinations = 64;
	c->udp_rate = 1000;
	c->udp_idle_timeout_ms = 2 * 60 * 1000;
	c->log_level = LOG_LEVEL_INFO;
	c->audit.flush_ms = 200;
	c->audit.durability = AUDIT_DURABILITY_WRITTEN;
	set_socket(&st, &x, "default", DEFAULT_TAILSCALED_SOCKET);

	/* 2. the file */
	const char *file = args && args->config_file ? args->config_file : envv("TAILFENCE_CONFIG");
	if (file) {
		char *text;
		size_t len;
		if (!read_file(file, &text, &len, err, errlen)) {
			x.failed = true;
			goto bad;
		}
		root = config_parse_json(file, text, len, err, errlen);
		free(text);
		if (!root) {
			x.failed = true;
			goto bad;
		}
		c->source = strdup(file);
		st.file_name = c->source;
		if (!apply_file(&st, &x, file, root))
			goto bad;
	}

	/* 3. the environment */
	const char *ev;
	struct strv tmp = { 0 };
	if ((ev = envv("TAILSCALE_ADVERTISE_ROUTES"))) {
		split_commas(ev, &tmp);
		bool ok = add_routes_text(&st, &x, "TAILSCALE_ADVERTISE_ROUTES",
					  (const char *const *)tmp.v, tmp.n, false);
		strv_free(&tmp);
		if (!ok)
			goto bad;
	}
	if ((ev = envv("TAILFENCE_LISTEN"))) {
		split_commas(ev, &tmp);
		bool ok = set_listeners(&st, &x, "TAILFENCE_LISTEN", (const char *const *)tmp.v, tmp.n,
					 false);
		strv_free(&tmp);
		if (!ok)
			goto bad;
	}
	if ((ev = envv("TAILFENCE_UPSTREAM")) && !set_upstream(&st, &x, "TAILFENCE_UPSTREAM", ev))
		goto bad;
	if ((ev = getenv("TAILSCALE_SOCKET")) && !set_socket(&st, &x, "TAILSCALE_SOCKET", ev))
		goto bad;
	if ((ev = envv("TAILFENCE_CLOSE_REVOKED")) &&
	    !set_bool(&x, "TAILFENCE_CLOSE_REVOKED", ev, &c->close_revoked))
		goto bad;
	if ((ev = getenv("TAILFENCE_ADMIN")) && !set_admin(&st, &x, "TAILFENCE_ADMIN", ev))
		goto bad;
	if ((ev = envv("TAILFENCE_UDP")) && !set_bool(&x, "TAILFENCE_UDP", ev, &c->udp))
		goto bad;
	if ((ev = envv("TAILFENCE_AUDIT_LOG"))) {
		sinks_free(&st.sinks);
		st.sinks_set = true;
		if (strcmp(ev, "-") == 0)
			sinks_add(&st.sinks, AUDIT_SINK_STDOUT, NULL, NULL);
		else
			sinks_add(&st.sinks, AUDIT_SINK_FILE, ev, NULL);
	}
	if ((ev = envv("TAILFENCE_AUDIT_SYSLOG"))) {
		if (!check_syslog_target(ev)) {
			fail(&x, "TAILFENCE_AUDIT_SYSLOG: \"%s\" is not a syslog target; expected "
			     "unix:/PATH, udp:IP:PORT or tcp:IP:PORT", q(ev, b, sizeof b));
			goto bad;
		}
		set_str(&st.syslog_extra, ev);
	}
	if ((ev = envv("TAILFENCE_AUDIT_HMAC_KEY")))
		set_str(&c->audit.hmac_key_file, ev);
	if ((ev = envv("TAILFENCE_AUDIT_DURABILITY")) &&
	    !set_durability(&st, &x, "TAILFENCE_AUDIT_DURABILITY", ev))
		goto bad;
	if ((ev = envv("TAILFENCE_LOG_LEVEL")) && !set_log_level(&st, &x, "TAILFENCE_LOG_LEVEL", ev))
		goto bad;
	if ((ev = envv("TAILFENCE_LIFT_GUARDS"))) {
		split_commas(ev, &tmp);
		for (size_t i = 0; i < tmp.n; i++) {
			const char *s = tmp.v[i];
			while (*s == ' ')
				s++;
			if (!*s)
				continue;
			if (!add_lift(&st, &x, "TAILFENCE_LIFT_GUARDS", s, i, false)) {
				strv_free(&tmp);
				goto bad;
			}
		}
		strv_free(&tmp);
	}

	/* 4. the flags */
	if (args) {
		if (args->listen.n &&
		    !set_listeners(&st, &x, "--listen", (const char *const *)args->listen.v,
				   args->listen.n, false))
			goto bad;
		const char *const *s = (const char *const *)args->scalar;
		if (s[SC_UPSTREAM] && !set_upstream(&st, &x, "--upstream", s[SC_UPSTREAM]))
			goto bad;
		if (s[SC_TAILSCALED_SOCKET] &&
		    !set_socket(&st, &x, "--tailscaled-socket", s[SC_TAILSCALED_SOCKET]))
			goto bad;
		for (size_t i = 0; i < args->lift.n; i++)
			if (!add_lift(&st, &x, "--lift-guard", args->lift.v[i], i, false))
				goto bad;
		if (args->allow_default_route)
			st.allow_default_route = true;
		if (args->force_public_listen)
			st.force_public_listen = true;
		if (args->close_revoked)
			c->close_revoked = true;
		if (s[SC_ADMIN] && !set_admin(&st, &x, "--admin", s[SC_ADMIN]))
			goto bad;
		if (args->no_udp)
			c->udp = false;
		if (s[SC_UDP_DESTINATIONS] &&
		    !set_size(&x, "--udp-destinations", s[SC_UDP_DESTINATIONS], &c->udp_destinations,
			      1, 65536))
			goto bad;
		if (s[SC_UDP_RATE] &&
		    !set_size(&x, "--udp-rate", s[SC_UDP_RATE], &c->udp_rate, 1, 1000000))
			goto bad;
		if (s[SC_UDP_IDLE_TIMEOUT] &&
		    !set_duration(&x, "--udp-idle-timeout", s[SC_UDP_IDLE_TIMEOUT],
				  &c->udp_idle_timeout_ms, false))
			goto bad;
		if (args->audit_log.n) {
			sinks_free(&st.sinks);
			st.sinks_set = true;
			for (size_t i = 0; i < args->audit_log.n; i++) {
				if (strcmp(args->audit_log.v[i], "-") == 0)
					sinks_add(&st.sinks, AUDIT_SINK_STDOUT, NULL, NULL);
				else
					sinks_add(&st.sinks, AUDIT_SINK_FILE, args->audit_log.v[i], NULL);
			}
		}
		if (s[SC_AUDIT_SYSLOG]) {
			if (!check_syslog_target(s[SC_AUDIT_SYSLOG])) {
				fail(&x, "--audit-syslog: \"%s\" is not a syslog target; expected "
				     "unix:/PATH, udp:IP:PORT or tcp:IP:PORT",
				     q(s[SC_AUDIT_SYSLOG], b, sizeof b));
				goto bad;
			}
			set_str(&st.syslog_extra, s[SC_AUDIT_SYSLOG]);
		}
		if (s[SC_AUDIT_HMAC_KEY])
			set_str(&c->audit.hmac_key_file, s[SC_AUDIT_HMAC_KEY]);
		if (s[SC_AUDIT_ON_FAILURE] &&
		    !set_on_failure(&st, &x, "--audit-on-failure", s[SC_AUDIT_ON_FAILURE]))
			goto bad;
		if (s[SC_AUDIT_DURABILITY] &&
		    !set_durability(&st, &x, "--audit-durability", s[SC_AUDIT_DURABILITY]))
			goto bad;
		if (s[SC_LOG_LEVEL] && !set_log_level(&st, &x, "--log-level", s[SC_LOG_LEVEL]))
			goto bad;
		static const char *const dflags[] = { "--handshake-timeout", "--connect-timeout",
						      "--dns-timeout", "--idle-timeout",
						      "--shutdown-grace" };
		unsigned *dur[] = { &c->handshake_timeout_ms, &c->connect_timeout_ms,
				    &c->dns_timeout_ms, &c->idle_timeout_ms, &c->shutdown_grace_ms };
		for (int i = 0; i < 5; i++)
			if (s[SC_HANDSHAKE_TIMEOUT + i] &&
			    !set_duration(&x, dflags[i], s[SC_HANDSHAKE_TIMEOUT + i], dur[i], i == 4))
				goto bad;
		if (s[SC_MAX_HEAD_BYTES] &&
		    !set_size(&x, "--max-head-bytes", s[SC_MAX_HEAD_BYTES], &c->max_head_bytes, 1024,
			      1048576))
			goto bad;
		if (s[SC_MAX_CONNECTIONS] &&
		    !set_size(&x, "--max-connections", s[SC_MAX_CONNECTIONS], &c->max_connections, 1,
			      1000000))
			goto bad;
		if (s[SC_BUFFER_BYTES] &&
		    !set_size(&x, "--buffer-bytes", s[SC_BUFFER_BYTES], &c->buffer_bytes, 4096,
			      67108864))
			goto bad;
		if (args->dns_server.n &&
		    !set_dns_servers(&st, &x, "--dns-server", (const char *const *)args->dns_server.v,
				     args->dns_server.n, false))
			goto bad;
		if (s[SC_HOSTS_FILE])
			set_str(&c->hosts_file, s[SC_HOSTS_FILE]);
		if (s[SC_RELAY]) {
			if (strcmp(s[SC_RELAY], "splice") != 0 && strcmp(s[SC_RELAY], "copy") != 0) {
				fail(&x, "--relay: \"%s\" is not a relay mode; expected splice or copy",
				     s[SC_RELAY]);
				goto bad;
			}
			c->relay_splice = strcmp(s[SC_RELAY], "splice") == 0;
		}
		for (size_t i = 0; i < args->allow.n; i++) {
			char why[300];
			if (!policy_dst_check(args->allow.v[i], why, sizeof why)) {
				fail(&x, "--allow: %s", why);
				goto bad;
			}
		}
	}

	/* 5. validate across sources and compile the policy. A live policy
	 * follows the tailnet; the configured routes are this node's own,
	 * which the tailnet does not carry for it (the gateway warns). */
	bool live = c->tailscaled_socket != NULL;
	c->allow_default_route = st.allow_default_route;
	policy_builder_set_live(st.b, live);
	c->static_routes = calloc(st.n_routes ? st.n_routes : 1, sizeof *c->static_routes);
	if (!c->static_routes) {
		fail(&x, "out of memory");
		goto bad;
	}
	for (size_t i = 0; i < st.n_routes; i++) {
		c->static_routes[c->n_static_routes++] = st.routes[i].p;
		if (live)
			continue;
		if (cidr_prefix_is_default(&st.routes[i].p) && !st.allow_default_route) {
			fail(&x, "%s: \"%s\" is a default route (exit node) and would allow every "
			     "destination; set \"allow_default_route\": true or pass "
			     "--allow-default-route if that is meant", st.routes[i].origin,
			     q(st.routes[i].text, b, sizeof b));
			goto bad;
		}
		policy_builder_add_route(st.b, &st.routes[i].p);
	}
	for (size_t i = 0; args && i < args->allow.n; i++) {
		if (policy_dst_covers_all(args->allow.v[i]) && !st.allow_default_route) {
			fail(&x, "--allow: \"%s\" covers every address; pass --allow-default-route "
			     "if that is meant", q(args->allow.v[i], b, sizeof b));
			goto bad;
		}
	}
	if (!st.sinks_set)
		sinks_add(&st.sinks, AUDIT_SINK_STDOUT, NULL, NULL);
	if (st.syslog_extra)
		sinks_add(&st.sinks, AUDIT_SINK_SYSLOG, NULL, st.syslog_extra);
	c->audit.sinks = st.sinks.v;
	c->audit.n_sinks = st.sinks.n;
	st.sinks.v = NULL;
	st.sinks.n = 0;

	for (size_t i = 0; i < st.lift.n; i++)
		policy_builder_lift_guard(st.b, st.lift.v[i]);
	if (c->upstream.kind != CONFIG_UPSTREAM_DIRECT)
		policy_builder_set_upstream(st.b, &c->upstream.addr, c->upstream.port);
	add_own_addresses(st.b);
	if (!apply_users(&st, &x))
		goto bad;
	size_t n_file_rules = 0;
	if (st.file_rules) {
		size_t i = 0;
		for (cJSON *r = st.file_rules->child; r; r = r->next, i++)
			if (!apply_rule(&st, &x, r, i))
				goto bad;
		n_file_rules = i;
	}
	if (n_file_rules == 0) {
		const char *dst[] = { live ? "tailnet:*" : "routes:*" };
		struct policy_rule_spec def = {
			.name = live ? "default: accept tailnet:* for every user"
				     : "default: accept routes:* for every user",
			.action = POLICY_ACCEPT, .dst = dst, .n_dst = 1,
		};
		char why[300];
		if (!policy_builder_add_rule(st.b, &def, why, sizeof why)) {
			fail(&x, "default rule: %s", why);
			goto bad;
		}
	}
	for (size_t i = 0; args && i < args->allow.n; i++) {
		const char *dst[] = { args->allow.v[i] };
		char name[300], why[300];
		snprintf(name, sizeof name, "--allow %s", args->allow.v[i]);
		struct policy_rule_spec r = { .name = name, .action = POLICY_ACCEPT, .dst = dst,
					      .n_dst = 1 };
		if (!policy_builder_add_rule(st.b, &r, why, sizeof why)) {
			fail(&x, "--allow: %s", why);
			goto bad;
		}
	}
	bool have_users = st.file_users && st.file_users->child;
	if (!have_users && !st.force_public_listen) {
		for (size_t i = 0; i < c->n_listeners; i++)
			if (!c->listeners[i].loopback) {
				char idx[32] = "";
				if (st.listen_indexed)
					snprintf(idx, sizeof idx, "[%zu]", i);
				fail(&x, "%s%s: \"%s\" is not a loopback address and no users are "
				     "configured, so anyone who can reach it could use the proxy; add "
				     "\"users\" or set \"force_public_listen\": true "
				     "(--force-public-listen)", st.listen_origin, idx,
				     c->listeners[i].text);
				goto bad;
			}
	}
	if (!have_users && !st.force_public_listen && c->has_admin && !c->admin.loopback) {
		fail(&x, "%s: \"%s\" is not a loopback address and no users are configured; the "
		     "admin endpoint would be open to anyone who can reach it; add \"users\" or set "
		     "\"force_public_listen\": true (--force-public-listen)", st.admin_origin,
		     c->admin.text);
		goto bad;
	}
	/* The inbound listeners: their own module parses and compiles them. */
	{
		const char *const *sc = args ? (const char *const *)args->scalar : NULL;
		struct inbound_sources in = {
			.file_name = st.file_name, .file = st.file_inbound,
			.env = envv("TAILFENCE_INBOUND"), .env_policy = envv("TAILFENCE_INBOUND_POLICY"),
			.env_listen = envv("TAILFENCE_INBOUND_LISTEN"),
			.flags = args ? (const char *const *)args->inbound.v : NULL,
			.n_flags = args ? args->inbound.n : 0,
			.flag_policy = sc ? sc[SC_INBOUND_POLICY] : NULL,
			.flag_listen = sc ? sc[SC_INBOUND_LISTEN] : NULL,
			.env_peer_check = envv("TAILFENCE_INBOUND_PEER_CHECK"),
			.flag_peer_check = sc ? sc[SC_INBOUND_PEER_CHECK] : NULL,
			.tailscaled_socket = c->tailscaled_socket,
			.has_upstream = c->upstream.kind != CONFIG_UPSTREAM_DIRECT,
			.upstream_addr = c->upstream.addr, .upstream_port = c->upstream.port,
			.own_routes = c->static_routes, .n_own_routes = c->n_static_routes,
		};
		if (!(c->inbound = inbound_config_build(&in, err, errlen))) {
			x.failed = true;
			goto bad;
		}
	}
	c->policy = policy_builder_finish(st.b);
	st.b = NULL;
	if (!c->policy) {
		fail(&x, "out of memory");
		goto bad;
	}
	build_effective(&st, args);
	c->effective_json = cJSON_Print(st.eff);
	cJSON_Delete(st.eff);
	cJSON_Delete(root);
	settings_free(&st);
	return c;
bad:
	if (!x.failed)
		fail(&x, "invalid configuration");
	policy_builder_free(st.b);
	cJSON_Delete(st.eff);
	cJSON_Delete(root);
	settings_free(&st);
	config_free(c);
	return NULL;
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
