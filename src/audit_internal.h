/*
 * audit_internal: what the audit trail's own source files share, and
 * nothing outside src/audit*.c includes: the struct audit behind the
 * public handle, its sinks, and the small helpers they all use. The
 * public API is include/tailfence/audit.h.
 *
 *   audit.c        records, the queue, acknowledgements, the loop's calls
 *   audit_json.c   the JSON writer every record is written with
 *   audit_writer.c the writer thread; audit_open(), audit_free()
 *   audit_sink.c   file, stdout and syslog sinks
 *   audit_chain.c  the HMAC chain: keys, MACs, signing, resuming
 *   audit_verify.c the chain verifier (`tailfence audit verify`)
 */
#ifndef TAILFENCE_AUDIT_INTERNAL_H
#define TAILFENCE_AUDIT_INTERNAL_H

#include "tailfence/audit.h"

#include <openssl/types.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct audit;

#define AUDIT_WAKE_BYTES (256u << 10)	/* drain early past this */
#define AUDIT_ACK_SEGS 32		/* batch outcomes not yet seen by the loop */

/* ---------------------------------------------------------------- buffers */

struct audit_buf {
	char *p;
	size_t len, cap;
};

/* Makes room for more bytes; false when out of memory. */
bool audit_buf_reserve(struct audit_buf *b, size_t more);

/* Appends n bytes; false (b unchanged) when out of memory. */
bool audit_buf_add(struct audit_buf *b, const void *p, size_t n);

/* ------------------------------------------------------------ JSON writer */

/*
 * One record, written straight into a buffer as one line of JSON, byte for
 * byte as cJSON_PrintUnformatted printed the cJSON trees the records used
 * to be (readers and the chain see no change): members in the order
 * written, no spaces, strings escaped as cJSON escapes them, numbers as it
 * prints a double. Keys are literals that need no escaping; k is NULL for
 * an array's element. After the first allocation failure every call is a
 * no-op and audit_json_end() says so.
 */
struct audit_json {
	struct audit_buf b;
	bool more;	/* the open object or array has a member: next needs ',' */
	bool oom;
};

/* Starts a record {"v":1,"ts":ts,"type":type. */
void audit_json_begin(struct audit_json *j, const char *type, const char *ts);

/* Ends the record with "}\n": the line is j->b.p, j->b.len bytes. False
 * when memory ran out on the way (the record is lost). */
bool audit_json_end(struct audit_json *j);

/* Frees the buffer (j can be begun again). */
void audit_json_free(struct audit_json *j);

/* String v, or null for NULL. Every string goes into a record as valid
 * UTF-8 (bytes that are not become U+FFFD), so strict JSON readers never
 * drop a hostile record. */
void audit_json_str(struct audit_json *j, const char *k, const char *v);

/* A number as cJSON prints a double: %1.15g, or %1.17g when that does not
 * read back; NaN and infinities as null. */
void audit_json_num(struct audit_json *j, const char *k, double v);

/* An unsigned integer as cJSON prints it once converted to a double: its
 * digits below 10^15; from there on as audit_json_num (1e+15, 1e+16,
 * 1000000000000001, 1.8446744073709552e+19). */
void audit_json_u64(struct audit_json *j, const char *k, uint64_t v);

void audit_json_bool(struct audit_json *j, const char *k, bool v);
void audit_json_null(struct audit_json *j, const char *k);

/* Opens an object ('{') or an array ('['), and closes it ('}', ']'). */
void audit_json_open(struct audit_json *j, const char *k, char bracket);
void audit_json_close(struct audit_json *j, char bracket);

/* ---------------------------------------------------------------- helpers */

/* The wall-clock time now as "2024-05-01T12:00:00.123Z". */
void audit_format_ts(char *out, size_t len);

/* CLOCK_MONOTONIC in milliseconds. */
int64_t audit_mono_ms(void);

/* ------------------------------------------------------------------ sinks */

/* One destination of the trail. Touched only by the writer thread after
 * audit_open(), except lost_total (audit_get_stats). */
struct audit_sink {
	enum audit_sink_kind kind;
	char *name;		/* "file:/x", "stdout", "syslog:udp:..." for messages */
	char *path;		/* FILE */
	int fd;
	/* SYSLOG */
	int sock_type;		/* SOCK_DGRAM or SOCK_STREAM */
	bool is_unix;
	struct sockaddr_storage sa;
	socklen_t salen;
	size_t frame_off;	/* bytes of the current TCP frame already sent */
	/* pending lines ("...\n"), sent from offset sent */
	struct audit_buf pend;
	size_t sent;
	uint64_t lost;		/* lines dropped because pend was full */
	atomic_uint_fast64_t lost_total;	/* appends refused, ever (audit_get_stats) */
	bool failing;
	bool dirty;		/* FILE: written since the last fdatasync */
	bool sync_failing;	/* FILE: the last fdatasync failed */
	char last_err[160];
};

/* Sets up sink i of the configuration (sc NULL: stdout, the default) and
 * opens it; a syslog collector that is not up yet is only warned about.
 * On failure writes a sentence into err and returns false. */
bool audit_sink_open(struct audit_sink *s, const struct audit_sink_config *sc, size_t i,
		     char *err, size_t errlen);

/* Closes the sink's descriptor (never stdout's). */
void audit_sink_close_fd(struct audit_sink *s);

/* Writes what it can of the sink's pending lines. Returns false on error
 * (errno-based text in s->last_err); pending bytes stay for a retry. */
bool audit_sink_flush(const struct audit *a, struct audit_sink *s);

/* Appends bytes (complete lines) to a sink's pending buffer; drops them
 * (counting lines) when the sink is already too far behind. */
void audit_sink_append(struct audit_sink *s, const char *p, size_t n);

/* True when every sink has written everything it was given. */
bool audit_sinks_written(const struct audit *a);

/* fdatasync of every file sink written since its last sync. Returns false
 * when one failed (the sink stays dirty and is synced again next time). */
bool audit_sinks_sync(struct audit *a);

/* Opens every file sink's path anew (after logrotate renamed it); a sink
 * that cannot be reopened keeps writing the old file. Returns false when
 * one failed. */
bool audit_sinks_reopen(struct audit *a);

/* Closes and frees n sinks (the array too). */
void audit_sinks_free(struct audit_sink *s, size_t n);

/* ------------------------------------------------------------ the chain */

/* Lowercase hex (2n characters) into n bytes; false on anything else. */
bool audit_hex_decode(const char *in, size_t n, unsigned char *out);

/* An HMAC-SHA256 key: the writer's or the verifier's. */
struct audit_mac_key {
	EVP_MAC_CTX *keyed;	/* set up once with the key; copied for each MAC */
	char id[17];		/* public id, as checkpoints carry it: 16 hex */
};

/* Sets up OpenSSL's HMAC-SHA256 with a copy of the key, and computes the
 * key's id. False when out of memory or OpenSSL offers no HMAC. */
bool audit_mac_key_init(struct audit_mac_key *k, const unsigned char *key, size_t keylen);

/* Frees the context, which wipes the key; a zeroed or cleared key is fine
 * too. */
void audit_mac_key_clear(struct audit_mac_key *k);

/* out = HMAC-SHA256(key, prev || body). */
bool audit_mac_compute(const struct audit_mac_key *k, const unsigned char prev[AUDIT_MAC_LEN],
		       const void *body, size_t len, unsigned char out[AUDIT_MAC_LEN]);

/* Splits a written line into the signed bytes and its MAC. The signed bytes
 * are the line with ,"mac":"<hex>"} replaced by }: returned in b. False
 * when the line does not end in a MAC. */
bool audit_chain_split_mac(const char *line, size_t len, struct audit_buf *b,
			   unsigned char mac[AUDIT_MAC_LEN]);

/* The writer's end of the chain. */
struct audit_chain {
	bool on;		/* an HMAC key is configured */
	struct audit_mac_key key;
	uint64_t seq;		/* next sequence number */
	unsigned char prev[AUDIT_MAC_LEN];
	bool have_prev;		/* prev is a real MAC (seq > 0) */
	bool link_next;		/* write "prev" into the next record */
};

/* Loads the key file (and warns when others may read it): the chain is
 * on. On failure writes a sentence into err and returns false. */
bool audit_chain_open(struct audit_chain *c, const char *key_file, char *err, size_t errlen);

/* Reads the last complete line of a file sink to continue its chain. A
 * partial last line (a crash mid-write) is ended with a newline instead,
 * and the chain starts anew. */
void audit_chain_resume(struct audit_chain *c, const char *path);

/* Signs one record: line (n bytes, ending in '\n') gets "seq", "prev"
 * after a reopen or a resume, and "mac"; the written line, with its '\n',
 * is appended to out, which must be empty. Advances the chain. False when
 * the line is not a record or memory ran out (the chain stays as it was). */
bool audit_chain_sign(struct audit_chain *c, const char *line, size_t n, struct audit_buf *out);

/* Wipes the key; the chain is off. */
void audit_chain_close(struct audit_chain *c);

/* ------------------------------------------------------------- the trail */

/* How soon a queued record must be written. */
enum audit_urgency {
	AUDIT_URGENCY_FLUSH,		/* within flush_ms */
	AUDIT_URGENCY_WRITE,		/* at once */
	AUDIT_URGENCY_ACK,		/* at once, and synced with "synced": someone waits */
};

/* The outcome of the batches up to ticket hi (since the previous one). */
struct audit_ack_seg {
	uint64_t hi;
	bool proceed;
	char why[200];
};

/* One event loop's side of the acknowledgements. */
struct audit_port {
	struct audit *a;
	struct audit_port *next;	/* in a->ports, under a->mu */
	struct event *wake;		/* on the port's loop */
	/* under a->mu: batch outcomes the loop has not seen yet */
	struct audit_ack_seg segs[AUDIT_ACK_SEGS];
	size_t n_segs;
	bool wake_pending;
	/* the port's loop only */
	TAILQ_HEAD(audit_waiters, audit_waiter) waiters;
	uint64_t loop_resolved;	/* the last ticket the loop has seen resolved */
};

/* The trail behind the public handle. */
struct audit {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct audit_buf queue;	/* complete lines, each ending in '\n' */
	int64_t first_enq_ms;	/* when the queue became non-empty */
	uint64_t dropped;	/* records refused because the queue was full */
	bool stop, reopen;
	atomic_bool healthy;
	/* For audit_get_stats(): queue_records under mu, the rest atomic. */
	uint64_t queue_records;
	atomic_uint_fast64_t stat_written, stat_dropped, stat_sink_errors;
	bool fail_closed;
	unsigned flush_ms;
	enum audit_durability durability;
	pthread_t thread;
	bool thread_started;

	/* tickets and acknowledgements (under mu) */
	uint64_t tickets;	/* the last ticket given to a queued record */
	int urgency;		/* the most urgent record queued: enum audit_urgency */
	uint64_t resolved;	/* every ticket up to this one is resolved */
	bool resolved_ok;	/* ... and the last batch was written */
	pthread_cond_t ack_cv;	/* resolved moved (audit_start waits on it) */
	struct audit_port *ports;	/* every loop that waits (audit_port_new) */

	struct audit_json recovery;	/* recovery record for audit_start(), or empty */

	struct audit_sink *sinks;
	size_t n_sinks;
	char hostname[256];
	int pid;

	/* touched only by the writer thread after audit_open() */
	struct audit_chain chain;
	int64_t next_retry_ms;
	bool reopen_pending;	/* a reopen failed; retry it */
};

/* --------------------------------------------------- records and the queue */

/* The records, formatted with the time ts ("2024-05-01T12:00:00.123Z",
 * audit_format_ts) into j (audit_json_begin to audit_json_end). False when
 * memory ran out. A decision the trail refuses (refuse: fail-closed and
 * unhealthy) says so in the record. An event of type "start" carries the
 * version and pid. */
bool audit_fmt_decision(struct audit_json *j, const char *ts, const struct audit_decision *d,
			bool refuse);
bool audit_fmt_close(struct audit_json *j, const char *ts, const struct audit_close *c);
bool audit_fmt_tailnet(struct audit_json *j, const char *ts, const struct audit_tailnet *t);
bool audit_fmt_event(struct audit_json *j, const char *ts, const char *type, const char *detail,
		     int pid);

/* Resolves every ticket up to hi: written (ok) or not. Wakes the loop when
 * connections may be waiting, and audit_start(). Writer thread. */
void audit_ack_publish(struct audit *a, uint64_t hi, bool ok);

#endif
