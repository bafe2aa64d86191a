/*
 * metrics: counters kept as plain integers on the loop, formatted only
 * when Prometheus scrapes (see include/tailfence/metrics.h). Names follow
 * Prometheus' conventions: a tailfence_ prefix, _total for counters,
 * _seconds and _bytes in base units, label sets that stay bounded (rule
 * and guard names, protocols, end reasons; never addresses or users).
 */
#include "tailfence/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "tailfence/policy.h"
#include "tailfence/tailnet.h"

#ifndef TAILFENCE_VERSION
#define TAILFENCE_VERSION "unknown"
#endif

/* Rule names kept across reloads; more distinct names than this share the
 * label "other" (only a config rewritten many times over could get here). */
#define METRICS_MAX_RULES 4096

/* Handshakes, lookups and dials: 1 ms to 30 s. */
static const uint64_t metrics_short_us[METRICS_BUCKETS] = {
	1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 5000000,
	30000000,
};
/* Whole connections: 10 ms to 4 h. */
static const uint64_t metrics_long_us[METRICS_BUCKETS] = {
	10000, 50000, 100000, 500000, 1000000, 5000000, 10000000, 60000000, 300000000,
	900000000, 3600000000ULL, 14400000000ULL,
};

static const char *const metrics_proto_names[METRICS_PROTO_COUNT] = {
	[METRICS_PROTO_NONE] = "none",
	[METRICS_PROTO_SOCKS5] = "socks5",
	[METRICS_PROTO_SOCKS4] = "socks4",
	[METRICS_PROTO_SOCKS4A] = "socks4a",
	[METRICS_PROTO_HTTP_CONNECT] = "http-connect",
	[METRICS_PROTO_HTTP] = "http",
	[METRICS_PROTO_SOCKS5_UDP] = "socks5-udp",
};

/* End reasons of docs/audit.md; anything else counts as "other". */
static const char *const metrics_ends[] = {
	"client_eof", "upstream_eof", "idle_timeout", "shutdown", "denied", "auth_required",
	"auth_failed", "dial_failed", "protocol_error", "handshake_timeout", "error", "revoked",
	"other",
};
#define METRICS_N_ENDS (sizeof metrics_ends / sizeof metrics_ends[0])

/* Guards beyond the policy's own: a failed login and a trail that could
 * not be written (fail closed). */
static const char *const metrics_extra_guards[] = { "auth", "audit" };

static const char *const metrics_errors[METRICS_ERROR_COUNT] = {
	[METRICS_ERROR_TARGET] = "bad_target",
	[METRICS_ERROR_DNS] = "dns",
};

static const char *const metrics_udp_drops[METRICS_UDP_DROP_COUNT] = {
	[METRICS_UDP_DENIED] = "denied",
	[METRICS_UDP_SPOOFED] = "spoofed",
	[METRICS_UDP_FRAGMENT] = "fragment",
	[METRICS_UDP_MALFORMED] = "malformed",
	[METRICS_UDP_DESTINATIONS] = "destinations_limit",
	[METRICS_UDP_RATE] = "rate_limit",
	[METRICS_UDP_PENDING] = "pending_full",
	[METRICS_UDP_UPSTREAM] = "upstream",
	[METRICS_UDP_UNEXPECTED] = "unexpected_source",
};

/* tailscaled's ipn.State names. */
static const char *const metrics_backend_states[] = {
	"NoState", "InUseOtherUser", "NeedsLogin", "NeedsMachineAuth", "Stopped", "Starting",
	"Running",
};

uint64_t metrics_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void metrics_init(struct metrics *m)
{
	memset(m, 0, sizeof *m);
	m->handshake.bounds_us = metrics_short_us;
	m->dns.bounds_us = metrics_short_us;
	m->dial.bounds_us = metrics_short_us;
	m->duration.bounds_us = metrics_long_us;
}

void metrics_free(struct metrics *m)
{
	for (size_t i = 0; i < m->n_rules; i++)
		free(m->rules[i].name);
	free(m->rules);
	free(m->rule_slot);
	m->rules = NULL;
	m->rule_slot = NULL;
	m->n_rules = m->n_rule_slot = 0;
}

/* The slot of a rule name, added when new; SIZE_MAX when out of room. */
static size_t metrics_rule_find(struct metrics *m, const char *name, bool add)
{
	for (size_t i = 0; i < m->n_rules; i++)
		if (strcmp(m->rules[i].name, name) == 0)
			return i;
	if (!add || m->n_rules >= METRICS_MAX_RULES)
		return SIZE_MAX;
	struct metrics_rule_label *v = realloc(m->rules, (m->n_rules + 1) * sizeof *v);
	if (!v)
		return SIZE_MAX;
	m->rules = v;
	char *copy = strdup(name);
	if (!copy)
		return SIZE_MAX;
	m->rules[m->n_rules] = (struct metrics_rule_label){ .name = copy };
	return m->n_rules++;
}

static void metrics_add(uint64_t *dst, const uint64_t *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] += src[i];
}

static void metrics_hist_merge(struct metrics_hist *dst, const struct metrics_hist *src)
{
	metrics_add(dst->counts, src->counts, METRICS_BUCKETS + 1);
	dst->sum_us += src->sum_us;
	dst->count += src->count;
}

#define METRICS_ADD(field) \
	metrics_add((uint64_t *)&dst->field, (const uint64_t *)&src->field, \
		    sizeof dst->field / sizeof(uint64_t))

void metrics_merge(struct metrics *dst, const struct metrics *src)
{
	METRICS_ADD(accepted);
	METRICS_ADD(connections);
	METRICS_ADD(closed);
	METRICS_ADD(bytes_up);
	METRICS_ADD(bytes_down);
	for (size_t i = 0; i < src->n_rules; i++) {
		size_t slot = metrics_rule_find(dst, src->rules[i].name, true);
		if (slot != SIZE_MAX)
			metrics_add(dst->rules[slot].n, src->rules[i].n, 2);
	}
	METRICS_ADD(guards);
	METRICS_ADD(implicit_deny);
	METRICS_ADD(errors);
	metrics_hist_merge(&dst->handshake, &src->handshake);
	metrics_hist_merge(&dst->dns, &src->dns);
	metrics_hist_merge(&dst->dial, &src->dial);
	metrics_hist_merge(&dst->duration, &src->duration);
	METRICS_ADD(dns_lookups);
	METRICS_ADD(dns_failures);
	METRICS_ADD(login_failures);
	METRICS_ADD(reloads_ok);
	METRICS_ADD(reloads_failed);
	METRICS_ADD(udp_associations);
	METRICS_ADD(udp_open);
	METRICS_ADD(udp_datagrams_up);
	METRICS_ADD(udp_datagrams_down);
	METRICS_ADD(udp_bytes_up);
	METRICS_ADD(udp_bytes_down);
	METRICS_ADD(udp_dropped);
	METRICS_ADD(tailnet_changes);
	if (src->config_loaded_ms > dst->config_loaded_ms)
		dst->config_loaded_ms = src->config_loaded_ms;
	if (src->tailnet_changed_ms > dst->tailnet_changed_ms)
		dst->tailnet_changed_ms = src->tailnet_changed_ms;
}

void metrics_bind_policy(struct metrics *m, const struct policy *p)
{
	size_t n = policy_rule_count(p);
	size_t *slot = calloc(n ? n : 1, sizeof *slot);
	if (!slot)
		return;	/* decisions then find their rule by name */
	for (size_t i = 0; i < n; i++)
		slot[i] = metrics_rule_find(m, policy_rule_text(p, i), true);
	free(m->rule_slot);
	m->rule_slot = slot;
	m->n_rule_slot = n;
	m->bound = p;
}

static size_t metrics_guard_index(const char *guard)
{
	const char *const *g = policy_guard_names();
	size_t i = 0;
	for (; g[i]; i++)
		if (strcmp(g[i], guard) == 0)
			return i;
	for (size_t j = 0; j < 2; j++)
		if (strcmp(metrics_extra_guards[j], guard) == 0)
			return i + j;
	return SIZE_MAX;
}

void metrics_decision(struct metrics *m, const struct policy *p, enum metrics_proto proto,
		      const struct policy_decision *d, bool allow, enum metrics_error err)
{
	if (proto >= METRICS_PROTO_COUNT)
		proto = METRICS_PROTO_NONE;
	m->connections[proto][allow]++;
	if (!d) {
		m->errors[err < METRICS_ERROR_COUNT ? err : METRICS_ERROR_TARGET]++;
		return;
	}
	if (d->guard) {
		size_t g = metrics_guard_index(d->guard);
		if (g < 16)
			m->guards[g][allow]++;
		return;
	}
	if (d->rule < 0) {
		if (!allow)
			m->implicit_deny++;
		return;
	}
	size_t slot = SIZE_MAX;
	if (p == m->bound && (size_t)d->rule < m->n_rule_slot)
		slot = m->rule_slot[d->rule];
	else if (d->rule_text)
		/* a connection older than the last reload: its policy's names
		 * were bound when that policy was new */
		slot = metrics_rule_find(m, d->rule_text, false);
	if (slot == SIZE_MAX)
		slot = metrics_rule_find(m, "other", true);
	if (slot != SIZE_MAX)
		m->rules[slot].n[allow]++;
}

void metrics_closed(struct metrics *m, enum metrics_proto proto, const char *end,
		    uint64_t up, uint64_t down, uint64_t duration_us)
{
	size_t e = METRICS_N_ENDS - 1;
	for (size_t i = 0; end && i < METRICS_N_ENDS - 1; i++)
		if (strcmp(metrics_ends[i], end) == 0) {
			e = i;
			break;
		}
	if (proto >= METRICS_PROTO_COUNT)
		proto = METRICS_PROTO_NONE;
	m->closed[proto][e]++;
	m->bytes_up += up;
	m->bytes_down += down;
	metrics_observe(&m->duration, duration_us);
}

void metrics_observe(struct metrics_hist *h, uint64_t us)
{
	size_t i = 0;
	while (i < METRICS_BUCKETS && us > h->bounds_us[i])
		i++;
	h->counts[i]++;
	h->sum_us += us;
	h->count++;
}

/* ---------- exposition ---------- */

static void metrics_head(struct evbuffer *out, const char *name, const char *type,
			 const char *help)
{
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metrics_one(struct evbuffer *out, const char *name, const char *type,
			const char *help, uint64_t v)
{
	metrics_head(out, name, type, help);
	evbuffer_add_printf(out, "%s %llu\n", name, (unsigned long long)v);
}

/* A label value with \, " and newline escaped. */
static void metrics_label(struct evbuffer *out, const char *v)
{
	for (const char *p = v; *p; p++) {
		if (*p == '\\')
			evbuffer_add(out, "\\\\", 2);
		else if (*p == '"')
			evbuffer_add(out, "\\\"", 2);
		else if (*p == '\n')
			evbuffer_add(out, "\\n", 2);
		else
			evbuffer_add(out, p, 1);
	}
}

static void metrics_seconds(char *buf, size_t len, uint64_t us)
{
	snprintf(buf, len, "%llu.%06llu", (unsigned long long)(us / 1000000u),
		 (unsigned long long)(us % 1000000u));
}

static void metrics_histogram(struct evbuffer *out, const char *name, const char *help,
			      const struct metrics_hist *h)
{
	char le[32];
	metrics_head(out, name, "histogram", help);
	uint64_t cum = 0;
	for (size_t i = 0; i < METRICS_BUCKETS; i++) {
		cum += h->counts[i];
		metrics_seconds(le, sizeof le, h->bounds_us[i]);
		/* "0.005000" reads as 0.005; trim the zeros for people */
		size_t n = strlen(le);
		while (n > 2 && le[n - 1] == '0' && le[n - 2] != '.')
			le[--n] = '\0';
		evbuffer_add_printf(out, "%s_bucket{le=\"%s\"} %llu\n", name, le,
				    (unsigned long long)cum);
	}
	cum += h->counts[METRICS_BUCKETS];
	evbuffer_add_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
	metrics_seconds(le, sizeof le, h->sum_us);
	evbuffer_add_printf(out, "%s_sum %s\n%s_count %llu\n", name, le, name,
			    (unsigned long long)h->count);
}

static void metrics_decisions(const struct metrics *m, struct evbuffer *out)
{
	metrics_head(out, "tailfence_decisions_total", "counter",
		     "Decisions written to the audit trail, by what decided them: a rule (by its "
		     "name or text), a guard, the implicit deny, or an error before the policy.");
	for (size_t i = 0; i < m->n_rules; i++)
		for (int a = 1; a >= 0; a--) {
			evbuffer_add_printf(out, "tailfence_decisions_total{by=\"rule\",name=\"");
			metrics_label(out, m->rules[i].name);
			evbuffer_add_printf(out, "\",verdict=\"%s\"} %llu\n", a ? "allow" : "deny",
					    (unsigned long long)m->rules[i].n[a]);
		}
	const char *const *g = policy_guard_names();
	size_t ng = 0;
	while (g[ng])
		ng++;
	for (size_t i = 0; i < ng + 2 && i < 16; i++) {
		const char *name = i < ng ? g[i] : metrics_extra_guards[i - ng];
		evbuffer_add_printf(out, "tailfence_decisions_total{by=\"guard\",name=\"%s\","
				    "verdict=\"deny\"} %llu\n", name,
				    (unsigned long long)m->guards[i][0]);
	}
	evbuffer_add_printf(out, "tailfence_decisions_total{by=\"implicit\",name=\"\","
			    "verdict=\"deny\"} %llu\n", (unsigned long long)m->implicit_deny);
	for (size_t i = 0; i < METRICS_ERROR_COUNT; i++)
		evbuffer_add_printf(out, "tailfence_decisions_total{by=\"error\",name=\"%s\","
				    "verdict=\"deny\"} %llu\n", metrics_errors[i],
				    (unsigned long long)m->errors[i]);
}

static void metrics_tailnet(const struct metrics *m, const struct metrics_snapshot *s,
			    int64_t now_ms, struct evbuffer *out)
{
	static const char *const states[] = { "off", "unknown", "stopped", "running" };
	metrics_head(out, "tailfence_tailnet_state", "gauge",
		     "1 for the state of the tailnet view the fence follows: off (no tailscaled "
		     "socket), unknown (tailscaled not reachable), stopped, running.");
	int st = s->has_tailnet ? s->tailnet_state : TAILNET_OFF;
	for (int i = 0; i < 4; i++)
		evbuffer_add_printf(out, "tailfence_tailnet_state{state=\"%s\"} %d\n", states[i],
				    st == i);
	metrics_head(out, "tailfence_tailscaled_backend_state", "gauge",
		     "1 for tailscaled's backend state (ipn.State) as last seen; all 0 when "
		     "tailscaled has not answered.");
	for (size_t i = 0; i < sizeof metrics_backend_states / sizeof metrics_backend_states[0];
	     i++)
		evbuffer_add_printf(out, "tailfence_tailscaled_backend_state{state=\"%s\"} %d\n",
				    metrics_backend_states[i],
				    s->backend_state &&
					    strcmp(s->backend_state, metrics_backend_states[i]) == 0);
	metrics_one(out, "tailfence_tailnet_peers", "gauge",
		    "Peers in the current tailnet view.", s->tailnet_peers);
	metrics_one(out, "tailfence_tailnet_carried_prefixes", "gauge",
		    "Prefixes the tailnet carries for this node (peer addresses, accepted "
		    "routes, the exit node's /0 when allowed).", s->tailnet_carried);
	metrics_one(out, "tailfence_tailnet_changes_total", "counter",
		    "Changes of the tailnet view (each also written as a tailnet audit record).",
		    m->tailnet_changes);
	metrics_head(out, "tailfence_tailnet_last_change_timestamp_seconds", "gauge",
		     "When the tailnet view last changed, in seconds since the epoch (0: never).");
	evbuffer_add_printf(out, "tailfence_tailnet_last_change_timestamp_seconds %lld.%03lld\n",
			    (long long)(m->tailnet_changed_ms / 1000),
			    (long long)(m->tailnet_changed_ms % 1000));
	(void)now_ms;
}

void metrics_format(const struct metrics *m, const struct metrics_snapshot *s, int64_t now_ms,
		    struct evbuffer *out)
{
	metrics_head(out, "tailfence_build_info", "gauge", "Always 1; the version as a label.");
	evbuffer_add_printf(out, "tailfence_build_info{version=\"%s\"} 1\n", TAILFENCE_VERSION);
	metrics_one(out, "tailfence_ready", "gauge",
		    "1 while /readyz answers 200 (listeners bound, audit sinks healthy, upstream "
		    "reachable, tailscaled running).", s->ready);
	metrics_one(out, "tailfence_listeners_bound", "gauge",
		    "1 once every configured listener is bound.", s->listeners_bound);
	metrics_head(out, "tailfence_upstream_up", "gauge",
		     "1 when the last probe of the upstream proxy succeeded (always 1 for "
		     "upstream direct, which is not probed).");
	evbuffer_add_printf(out, "tailfence_upstream_up %d\n",
			    !s->upstream_probed || s->upstream_up);

	metrics_one(out, "tailfence_connections_accepted_total", "counter",
		    "TCP connections accepted on the proxy listeners.", m->accepted);
	metrics_head(out, "tailfence_connections_total", "counter",
		     "Connections (and UDP destinations) decided, by protocol and verdict.");
	for (size_t p = 0; p < METRICS_PROTO_COUNT; p++)
		for (int a = 1; a >= 0; a--)
			evbuffer_add_printf(out, "tailfence_connections_total{proto=\"%s\","
					    "verdict=\"%s\"} %llu\n", metrics_proto_names[p],
					    a ? "allow" : "deny",
					    (unsigned long long)m->connections[p][a]);
	metrics_head(out, "tailfence_connections_closed_total", "counter",
		     "Connections closed, by protocol and end reason (see docs/audit.md).");
	for (size_t p = 0; p < METRICS_PROTO_COUNT; p++)
		for (size_t e = 0; e < METRICS_N_ENDS; e++)
			if (m->closed[p][e])
				evbuffer_add_printf(out, "tailfence_connections_closed_total{proto="
						    "\"%s\",end=\"%s\"} %llu\n",
						    metrics_proto_names[p], metrics_ends[e],
						    (unsigned long long)m->closed[p][e]);
	metrics_decisions(m, out);

	metrics_head(out, "tailfence_bytes_total", "counter",
		     "Bytes relayed over TCP: up is client to destination, down the way back "
		     "(open relays included).");
	evbuffer_add_printf(out, "tailfence_bytes_total{direction=\"up\"} %llu\n",
			    (unsigned long long)(m->bytes_up + s->relay_bytes_up));
	evbuffer_add_printf(out, "tailfence_bytes_total{direction=\"down\"} %llu\n",
			    (unsigned long long)(m->bytes_down + s->relay_bytes_down));
	metrics_head(out, "tailfence_loop_connections_total", "counter",
		     "Connections accepted by each event loop (threads); the kernel spreads new "
		     "connections over the loops.");
	for (size_t i = 0; i < s->n_loops; i++)
		evbuffer_add_printf(out, "tailfence_loop_connections_total{loop=\"%zu\"} %llu\n", i,
				    (unsigned long long)s->loop_accepted[i]);
	metrics_one(out, "tailfence_open_connections", "gauge",
		    "Connections open now (handshakes, relays, UDP associations).",
		    s->open_connections);
	metrics_one(out, "tailfence_open_relays", "gauge", "TCP relays open now.", s->open_relays);
	metrics_one(out, "tailfence_max_connections", "gauge",
		    "limits.max_connections of the running config.", s->max_connections);

	metrics_histogram(out, "tailfence_handshake_duration_seconds",
			  "From accept to the target (or UDP association) being known, login "
			  "included.", &m->handshake);
	metrics_histogram(out, "tailfence_dns_duration_seconds",
			  "Name lookups of requested destinations.", &m->dns);
	metrics_histogram(out, "tailfence_dial_duration_seconds",
			  "Upstream dials, each attempt, the upstream's handshake included.",
			  &m->dial);
	metrics_histogram(out, "tailfence_connection_duration_seconds",
			  "From accept to close, every connection.", &m->duration);
	metrics_one(out, "tailfence_dns_lookups_total", "counter",
		    "Name lookups of requested destinations.", m->dns_lookups);
	metrics_one(out, "tailfence_dns_failures_total", "counter",
		    "Name lookups that failed (no such name, timeout, no usable address).",
		    m->dns_failures);
	metrics_one(out, "tailfence_login_failures_total", "counter",
		    "Failed logins (SOCKS5 username/password, HTTP Proxy-Authorization).",
		    m->login_failures);

	metrics_one(out, "tailfence_udp_associations_total", "counter",
		    "SOCKS5 UDP associations started.", m->udp_associations);
	metrics_one(out, "tailfence_udp_associations_open", "gauge",
		    "SOCKS5 UDP associations open now.", m->udp_open);
	metrics_head(out, "tailfence_udp_datagrams_total", "counter",
		     "UDP datagrams relayed: up is client to destination.");
	evbuffer_add_printf(out, "tailfence_udp_datagrams_total{direction=\"up\"} %llu\n"
			    "tailfence_udp_datagrams_total{direction=\"down\"} %llu\n",
			    (unsigned long long)m->udp_datagrams_up,
			    (unsigned long long)m->udp_datagrams_down);
	metrics_head(out, "tailfence_udp_bytes_total", "counter",
		     "UDP payload bytes relayed (SOCKS headers not counted).");
	evbuffer_add_printf(out, "tailfence_udp_bytes_total{direction=\"up\"} %llu\n"
			    "tailfence_udp_bytes_total{direction=\"down\"} %llu\n",
			    (unsigned long long)m->udp_bytes_up,
			    (unsigned long long)m->udp_bytes_down);
	metrics_head(out, "tailfence_udp_datagrams_dropped_total", "counter",
		     "UDP datagrams dropped, by reason.");
	for (size_t i = 0; i < METRICS_UDP_DROP_COUNT; i++)
		evbuffer_add_printf(out, "tailfence_udp_datagrams_dropped_total{reason=\"%s\"} "
				    "%llu\n", metrics_udp_drops[i],
				    (unsigned long long)m->udp_dropped[i]);

	metrics_one(out, "tailfence_audit_queue_records", "gauge",
		    "Audit records queued for the writer thread.", s->audit_queue_records);
	metrics_one(out, "tailfence_audit_queue_bytes", "gauge",
		    "Bytes of audit records queued for the writer thread.", s->audit_queue_bytes);
	metrics_one(out, "tailfence_audit_records_written_total", "counter",
		    "Audit records the writer handed to every sink.", s->audit_records_written);
	metrics_one(out, "tailfence_audit_records_dropped_total", "counter",
		    "Audit records lost: the queue was full, or a failing sink's retry buffer.",
		    s->audit_records_dropped);
	metrics_one(out, "tailfence_audit_sink_errors_total", "counter",
		    "Times a sink went from writable to failing.", s->audit_sink_errors);
	metrics_one(out, "tailfence_audit_healthy", "gauge",
		    "1 while every audit sink is writable.", s->audit_healthy);
	metrics_one(out, "tailfence_worker_queue_jobs", "gauge",
		    "Password checks waiting for or running on the worker thread.",
		    s->worker_queue);

	metrics_head(out, "tailfence_reloads_total", "counter",
		     "Configuration reloads (SIGHUP), by result.");
	evbuffer_add_printf(out, "tailfence_reloads_total{result=\"ok\"} %llu\n"
			    "tailfence_reloads_total{result=\"failed\"} %llu\n",
			    (unsigned long long)m->reloads_ok,
			    (unsigned long long)m->reloads_failed);
	metrics_head(out, "tailfence_config_loaded_timestamp_seconds", "gauge",
		     "When the running configuration was built, in seconds since the epoch.");
	evbuffer_add_printf(out, "tailfence_config_loaded_timestamp_seconds %lld.%03lld\n",
			    (long long)(m->config_loaded_ms / 1000),
			    (long long)(m->config_loaded_ms % 1000));
	int64_t age = now_ms > m->config_loaded_ms ? now_ms - m->config_loaded_ms : 0;
	metrics_head(out, "tailfence_config_age_seconds", "gauge",
		     "Seconds since the running configuration was built.");
	evbuffer_add_printf(out, "tailfence_config_age_seconds %lld.%03lld\n",
			    (long long)(age / 1000), (long long)(age % 1000));
	metrics_tailnet(m, s, now_ms, out);
}
