/*
 * metrics: the daemon's counters, gauges and histograms, and their
 * Prometheus text exposition.
 *
 * Owns one struct metrics per gateway. Everything in it is a plain integer
 * updated on the event loop's thread; nothing is allocated or formatted on
 * a connection's path (a decision finds its label slot by index in a table
 * built when the policy was compiled or swapped in). Values the loop does
 * not own (the audit writer's queue, the worker's queue, open relays) are
 * read through their modules' accessors at scrape time, and only then is
 * anything formatted. Counters live as long as the gateway, so they survive
 * a reload.
 */
#ifndef TAILFENCE_METRICS_H
#define TAILFENCE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct policy;
struct policy_decision;

/* Protocols a connection or association is counted under. */
enum metrics_proto {
	METRICS_PROTO_NONE,		/* the handshake never said */
	METRICS_PROTO_SOCKS5,
	METRICS_PROTO_SOCKS4,
	METRICS_PROTO_SOCKS4A,
	METRICS_PROTO_HTTP_CONNECT,
	METRICS_PROTO_HTTP,
	METRICS_PROTO_SOCKS5_UDP,	/* one destination of a UDP association */
	METRICS_PROTO_COUNT
};

/* Why a decision was refused before the policy could say anything. */
enum metrics_error {
	METRICS_ERROR_TARGET,	/* the requested host is not a host */
	METRICS_ERROR_DNS,	/* the name did not resolve */
	METRICS_ERROR_COUNT
};

/* Why a UDP datagram was dropped. */
enum metrics_udp_drop {
	METRICS_UDP_DENIED,		/* its destination is denied */
	METRICS_UDP_SPOOFED,		/* not from the association's client */
	METRICS_UDP_FRAGMENT,		/* FRAG != 0 */
	METRICS_UDP_MALFORMED,		/* header does not parse */
	METRICS_UDP_DESTINATIONS,	/* past the destinations limit */
	METRICS_UDP_RATE,		/* past the datagrams/s limit */
	METRICS_UDP_PENDING,		/* waiting room full (DNS, upstream setup) */
	METRICS_UDP_UPSTREAM,		/* the upstream could not take it */
	METRICS_UDP_UNEXPECTED,		/* a reply from nobody this association talks to */
	METRICS_UDP_DROP_COUNT
};

/* A histogram over durations, kept in microseconds and shown in seconds. */
#define METRICS_BUCKETS 12
struct metrics_hist {
	const uint64_t *bounds_us;	/* METRICS_BUCKETS upper bounds, ascending */
	uint64_t counts[METRICS_BUCKETS + 1];	/* last: above every bound */
	uint64_t sum_us;
	uint64_t count;
};

struct metrics_rule_label {
	char *name;
	uint64_t n[2];		/* [0] deny, [1] allow */
};

struct metrics {
	uint64_t accepted;
	uint64_t connections[METRICS_PROTO_COUNT][2];	/* [proto][allow] */
	uint64_t closed[METRICS_PROTO_COUNT][16];	/* [proto][end reason] */
	uint64_t bytes_up, bytes_down;			/* closed connections */

	/* decisions, by what decided */
	struct metrics_rule_label *rules;	/* every rule name seen, any policy */
	size_t n_rules;
	const struct policy *bound;		/* the policy rule_slot maps */
	size_t *rule_slot;			/* its rule index -> rules[] */
	size_t n_rule_slot;
	uint64_t guards[16][2];			/* [guard][allow] */
	uint64_t implicit_deny;
	uint64_t errors[METRICS_ERROR_COUNT];

	struct metrics_hist handshake, dns, dial, duration;
	uint64_t dns_lookups, dns_failures;
	uint64_t login_failures;
	uint64_t reloads_ok, reloads_failed;
	int64_t config_loaded_ms;		/* wall clock, ms since the epoch */

	/* UDP associations */
	uint64_t udp_associations;
	uint64_t udp_open;
	uint64_t udp_datagrams_up, udp_datagrams_down;
	uint64_t udp_bytes_up, udp_bytes_down;
	uint64_t udp_dropped[METRICS_UDP_DROP_COUNT];

	/* the tailnet (set by the gateway on every new view) */
	uint64_t tailnet_changes;
	int64_t tailnet_changed_ms;		/* wall clock; 0: never */
};

/* Readings taken at scrape time from other modules and the gateway. */
/* The most event loops (--threads) a snapshot counts one by one. */
#define METRICS_MAX_LOOPS 256

struct metrics_snapshot {
	/* connections accepted by each event loop */
	uint64_t loop_accepted[METRICS_MAX_LOOPS];
	size_t n_loops;
	size_t open_connections;
	size_t open_relays;
	uint64_t relay_bytes_up, relay_bytes_down;	/* of open relays so far */
	size_t max_connections;
	/* audit */
	uint64_t audit_queue_records;
	uint64_t audit_queue_bytes;
	uint64_t audit_records_written;
	uint64_t audit_records_dropped;
	uint64_t audit_sink_errors;
	bool audit_healthy;
	/* worker */
	size_t worker_queue;
	/* tailnet: has_tailnet false without a tailscaled socket */
	bool has_tailnet;
	int tailnet_state;		/* enum tailnet_state */
	const char *backend_state;	/* tailscaled's, or NULL */
	size_t tailnet_peers;
	size_t tailnet_carried;
	/* readiness, as /readyz answers it */
	bool ready;
	bool upstream_probed;		/* a socks5/http upstream is probed */
	bool upstream_up;
	bool listeners_bound;
};

void metrics_init(struct metrics *m);
void metrics_free(struct metrics *m);

/* Adds src's counters to dst's (rules by name; the wall-clock times: the
 * later one), for one view of several event loops' metrics. */
void metrics_merge(struct metrics *dst, const struct metrics *src);

/* Builds the rule-label slots of a new policy (at start and on every
 * reload); labels of earlier policies stay, so their counts survive. */
void metrics_bind_policy(struct metrics *m, const struct policy *p);

/* A decision record was written: counts the connection under proto and
 * the verdict, and the decision under the rule or guard that made it (d
 * from policy p), or under err when d is NULL. */
void metrics_decision(struct metrics *m, const struct policy *p, enum metrics_proto proto,
		      const struct policy_decision *d, bool allow, enum metrics_error err);

/* A connection closed with end reason `end` (docs/audit.md). */
void metrics_closed(struct metrics *m, enum metrics_proto proto, const char *end,
		    uint64_t up, uint64_t down, uint64_t duration_us);

void metrics_observe(struct metrics_hist *h, uint64_t us);

/* Microseconds on the monotonic clock. */
uint64_t metrics_now_us(void);

/* Appends the whole exposition (text format 0.0.4) to out. now_ms is the
 * wall clock. */
void metrics_format(const struct metrics *m, const struct metrics_snapshot *s, int64_t now_ms,
		    struct evbuffer *out);
#endif
