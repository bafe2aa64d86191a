/*
 * audit: the audit trail. One JSON object per line for every connection
 * decision and close, plus start-up, shutdown, reload and sink-failure
 * records; schema in docs/audit.md.
 *
 * Writing never blocks the event loop: records are formatted on the caller's
 * thread, queued, and written by a writer thread to every sink (file, stdout,
 * syslog), flushed within flush_ms and at audit_free(). With an HMAC key
 * every record carries a sequence number and a MAC chained over the
 * previous MAC.
 *
 * Durability (docs/audit.md): with "written" or "synced" a connection waits
 * (audit_wait) until its decision record has been written to every sink
 * (and fdatasync'd, for synced) before it dials; the writer acknowledges
 * each batch to the event loop, which is never blocked. On open, the tail of
 * each file sink is read back: a previous run that ended without a shutdown
 * record gets a "recovery" record naming its connections left without a
 * close record.
 */
#ifndef TAILFENCE_AUDIT_H
#define TAILFENCE_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

struct audit_port;
struct event_base;

enum audit_sink_kind {
	AUDIT_SINK_FILE,
	AUDIT_SINK_STDOUT,
	AUDIT_SINK_SYSLOG,
};

struct audit_sink_config {
	enum audit_sink_kind kind;
	char *path;		/* FILE: path to append to */
	char *target;		/* SYSLOG: "unix:/dev/log", "udp:HOST:PORT", "tcp:HOST:PORT" */
};

/* When a connection may dial, relative to its decision record. */
enum audit_durability {
	AUDIT_DURABILITY_QUEUED,	/* at once: the record is in memory only */
	AUDIT_DURABILITY_WRITTEN,	/* after write(2)/send(2) to every sink */
	AUDIT_DURABILITY_SYNCED,	/* the same, then fdatasync of every file */
};

struct audit_config {
	struct audit_sink_config *sinks;
	size_t n_sinks;
	bool fail_closed;	/* audit.on_failure = "deny" */
	char *hmac_key_file;	/* NULL: no chain */
	unsigned flush_ms;
	enum audit_durability durability;
};

/* A syslog target as the sinks take it: unix:/PATH, udp:HOST:PORT or
 * tcp:HOST:PORT (HOST a name or an address, IPv6 in brackets). Checks the
 * syntax only; a name is resolved when the sink opens. */
bool audit_syslog_target_check(const char *target);

struct audit;

/* An inbound connection (tailscale serve, a PROXY header, an identity from
 * whois): what the records of one add, after the fields every connection
 * record has. NULL in outbound records, which stay as they were. Strings
 * are borrowed for the call; NULL is written as null. */
struct audit_inbound {
	const char *service;		/* the inbound entry's name */
	const char *tailnet_addr;	/* the PROXY header's source: "100.64.0.2:41234" */
	const char *node;		/* whois: the node's MagicDNS name */
	const char *node_id;		/* its stable id */
	const char *user;		/* the user's login name */
	const char *const *tags;	/* the node's tags */
	size_t n_tags;
};

/* One decision, as the connection saw it. Strings are borrowed for the
 * duration of the call; NULL means "not known" and is written as null. */
struct audit_decision {
	uint64_t conn_id;
	const char *client;	/* "127.0.0.1:40000" */
	const char *listener;	/* "127.0.0.1:1080" */
	const char *proto;	/* socks5 | socks4 | socks4a | http-connect | http */
	const char *user;
	const char *host;	/* as requested: name or address literal */
	uint16_t port;
	const char *addr;	/* the address checked and dialed */
	bool allow;
	const char *rule;	/* deciding rule text, or NULL */
	const char *guard;	/* deciding guard, or NULL */
	const char *reason;	/* one line for people */
	const char *upstream;	/* "socks5://127.0.0.1:1055", "direct", ... */
	const char *path;	/* "tailnet", "host", or NULL (not known) */
	const char *peer_name;	/* the peer that carries addr, or NULL */
	const char *peer_id;
	const char *peer_route;	/* the carried subnet route, NULL for a peer address */
	const char *userid;	/* SOCKS4/4a: the USERID the client sent (never trusted) */
	const struct audit_inbound *inbound;	/* inbound connections only */
};

/* One prefix the tailnet began or stopped carrying. */
struct audit_carried {
	const char *prefix;	/* "192.0.2.0/24" */
	const char *peer;	/* the peer's name */
	const char *peer_id;
	const char *kind;	/* "address", "route", "exit" */
};

/* A change of what the tailnet carries (type "tailnet"). */
struct audit_tailnet {
	const char *state;	/* "running", "stopped", "unknown" */
	const char *reason;	/* why not running, or NULL */
	const char *self;	/* this node's name, or NULL */
	size_t peers;		/* peers in the new view */
	size_t carried;		/* prefixes carried in the new view */
	const struct audit_carried *added;
	size_t n_added;
	const struct audit_carried *removed;
	size_t n_removed;
};

struct audit_close {
	uint64_t conn_id;
	const char *client;	/* as in the decision; also for connections that
				 * never got as far as one (garbage, timeouts) */
	const char *proto;	/* NULL until the handshake said */
	const char *addr;	/* the address actually connected, or NULL */
	uint64_t bytes_up;	/* client -> destination */
	uint64_t bytes_down;	/* destination -> client */
	uint64_t duration_ms;
	const char *end;	/* see docs/audit.md for the list */
	const char *error;	/* error text when end is "error", else NULL */
	/* A UDP association (proto socks5-udp): the datagrams relayed each
	 * way and those dropped are written too; bytes are their payloads. */
	bool udp;
	uint64_t datagrams_up, datagrams_down, dropped;
	const struct audit_inbound *inbound;	/* inbound connections only */
};

/* Opens every sink and reads the tail of each file sink back (chain
 * resumption, recovery after an unclean shutdown). On failure writes a
 * sentence into err and returns NULL. */
struct audit *audit_open(const struct audit_config *cfg, char *err, size_t errlen);

/* One event loop's way to wait for acknowledgements (audit_wait): each
 * loop that runs connections makes its own, on its own thread (base
 * created after evthread_use_pthreads()). Free every port, each on its
 * loop's thread with its waiters gone, before audit_free(). NULL when out
 * of memory. */
struct audit_port *audit_port_new(struct audit *a, struct event_base *base);
void audit_port_free(struct audit_port *p);

/* Queues the recovery record (when the previous run ended uncleanly) and
 * the "start" record, and waits up to timeout_ms until both have been
 * written to every sink, whatever the durability: call it before accepting
 * connections, so that none is allowed before the sinks are known to work.
 * Returns false (trail unhealthy, reason in the operator log) otherwise.
 * Blocks the calling thread: only at start-up, before the loop runs. */
bool audit_start(struct audit *a, const char *detail, unsigned timeout_ms);

/* Queues a decision record. Returns false when the trail cannot be written
 * and fail_closed is set: the caller must then refuse the connection. */
bool audit_decision(struct audit *a, const struct audit_decision *d);

/* Queues a close record. */
void audit_close(struct audit *a, const struct audit_close *c);

/* Queues a tailnet record. */
void audit_tailnet(struct audit *a, const struct audit_tailnet *t);

/* A connection waiting for its decision record (audit_wait). Embedded in
 * the waiter's own struct; the audit module only links it. The port's
 * loop thread. */
typedef void (*audit_ack_fn)(void *arg, bool proceed, const char *why);

struct audit_waiter {
	TAILQ_ENTRY(audit_waiter) link;
	uint64_t ticket;
	audit_ack_fn cb;
	void *arg;
	bool queued;
};

/* Waits until every record queued so far (so the caller's decision record,
 * queued just before) has been written to every sink (and synced, with
 * "synced"). Returns false when there is nothing to wait for (durability
 * "queued"): the caller goes on at once. Otherwise returns true and later
 * calls cb(arg, proceed, why) once, from the port's loop: proceed is true
 * when the records were written, or when they could not be but on_failure is
 * "continue"; false (why says what failed) when the connection must be
 * refused. w must stay valid until then or until audit_wait_cancel(). */
bool audit_wait(struct audit_port *p, struct audit_waiter *w, audit_ack_fn cb, void *arg);

/* Forgets a waiter (the connection closed first); cb will not be called.
 * A no-op for a waiter that is not waiting. */
void audit_wait_cancel(struct audit_port *p, struct audit_waiter *w);

/* Queues a lifecycle record: type is "start", "shutdown", "reload", ...;
 * detail is a one-line message (may be NULL). */
void audit_event(struct audit *a, const char *type, const char *detail);

/* True while every sink is writable (for fail-closed and health). */
bool audit_healthy(const struct audit *a);

/* What the metrics endpoint shows of the trail; any thread. */
struct audit_stats {
	uint64_t queue_records;	/* waiting for the writer thread */
	uint64_t queue_bytes;
	uint64_t written;	/* records the writer handed to every sink */
	uint64_t dropped;	/* records lost: queue full, a failing sink's buffer full */
	uint64_t sink_errors;	/* times a sink went from writable to failing */
	bool healthy;
};

void audit_get_stats(struct audit *a, struct audit_stats *out);

/* Reopens file sinks (after logrotate renamed them). Thread-safe;
 * async-signal-safe callers should instead set a flag and call this from
 * the loop. */
void audit_reopen(struct audit *a);

/* Flushes everything queued, writes the closing checkpoint, frees. */
void audit_free(struct audit *a);

/* ---- Reading the trail back (audit_cli.c, unit tests, fuzzers) ---- */

/* Length of a MAC in bytes (HMAC-SHA256). */
#define AUDIT_MAC_LEN 32

/* Loads an HMAC key file: its bytes with trailing whitespace removed, at
 * least 16 bytes. On success *key is malloc'd (caller frees). On failure
 * writes a sentence into err and returns false. */
bool audit_key_load(const char *path, unsigned char **key, size_t *keylen,
		    char *err, size_t errlen);

/* Chain verifier: feed every line of every file in order, then finish.
 * Reports the first broken link only. */
struct audit_verify;

/* key is copied. Returns NULL on allocation failure (or when OpenSSL
 * offers no HMAC). */
struct audit_verify *audit_verify_new(const unsigned char *key, size_t keylen);

/* Feeds one line (without its '\n'). terminated is false when the input
 * ended before a newline. file names the source in messages. Returns false
 * once the chain is known to be broken (later lines are ignored). */
bool audit_verify_line(struct audit_verify *v, const char *file,
		       unsigned long lineno, const char *line, size_t len,
		       bool terminated);

/* With strict, an unclean shutdown (a "start" whose preceding record is
 * not a shutdown checkpoint: the daemon was killed or crashed) fails the
 * verification; without it (the default) it is reported as a note. */
void audit_verify_set_strict(struct audit_verify *v, bool strict);

/* Unclean shutdowns seen so far. */
unsigned audit_verify_unclean(const struct audit_verify *v);

/* Ends the input. Returns true when the chain verified; msg (if non-NULL)
 * gets one line for people either way ("FILE:LINE: what broke"). */
bool audit_verify_finish(struct audit_verify *v, char *msg, size_t msglen);

/* Number of records checked so far. */
uint64_t audit_verify_records(const struct audit_verify *v);

void audit_verify_free(struct audit_verify *v);
#endif
