/*
 * audit_report: `tailfence audit report`, one self-contained HTML file (or
 * the same aggregates as JSON) about a stretch of the audit trail: period
 * and totals, the HMAC chain's verdict, connections and bytes over time
 * with restarts, unclean shutdowns and holes marked, who went where,
 * denials with their reasons, the busiest and longest connections, new
 * destinations, and the tailnet peer and path per destination.
 *
 * Aggregation streams: every line is folded into the aggregates below and
 * dropped. Memory is bounded by the options, never by the input: each
 * keyed table keeps at most max_keys rows (further keys are summed into
 * the table's "other" row and the report says so), the timeline has at
 * most AUDIT_REPORT_BUCKETS intervals (they widen as the period grows),
 * the busiest/longest lists keep `top` entries, the event list
 * AUDIT_REPORT_EVENTS. audit_report.c aggregates, audit_report_cli.c runs
 * the command, audit_report_html.c and audit_report_json.c write the
 * outputs.
 */
#ifndef TAILFENCE_AUDIT_REPORT_H
#define TAILFENCE_AUDIT_REPORT_H

#include "tailfence/audit_read.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define AUDIT_REPORT_BUCKETS 360	/* timeline intervals at most */
#define AUDIT_REPORT_EVENTS 500		/* lifecycle events listed at most */
#define AUDIT_REPORT_MAX_KEYS 20000	/* default rows per table */
#define AUDIT_REPORT_TOP 30		/* default rows shown per table */
#define AUDIT_REPORT_MAX_OPEN 65536	/* connections awaiting their close */
#define AUDIT_REPORT_HISTORY (1u << 20)	/* destinations remembered from before the period */

struct audit_report_options {
	struct audit_read_filter filter;
	const char *filter_text;	/* the filters as given, for people; may be NULL */
	size_t top;		/* rows per HTML table; busiest/longest entries */
	size_t max_keys;	/* rows kept per table */
	const unsigned char *key;	/* HMAC key to verify the chain, or NULL */
	size_t keylen;
};

/* One timeline interval [t, t + width). Bytes of a connection are spread
 * evenly over its lifetime (close time minus duration .. close time). */
struct audit_report_bucket {
	uint64_t allow, deny;
	uint64_t up, down;
};

struct audit_report_timeline {
	int64_t start;		/* ms since the epoch, a multiple of width */
	int64_t width;		/* ms */
	size_t n;		/* intervals in use */
	struct audit_report_bucket b[AUDIT_REPORT_BUCKETS];
};

enum audit_report_event_kind {
	AUDIT_REPORT_EV_START,
	AUDIT_REPORT_EV_SHUTDOWN,
	AUDIT_REPORT_EV_UNCLEAN,	/* t: the last record before; until: the next start */
	AUDIT_REPORT_EV_DOWN,		/* stopped cleanly: t shutdown .. until start */
	AUDIT_REPORT_EV_RELOAD,
	AUDIT_REPORT_EV_SINK_ERROR,	/* records lost from a sink */
	AUDIT_REPORT_EV_SEQ_GAP,	/* seq jumped: records missing from the input */
	AUDIT_REPORT_EV_CHAIN,		/* where the HMAC chain broke */
	AUDIT_REPORT_EV_RECOVERY,	/* a "recovery" record (before the start after a kill) */
	AUDIT_REPORT_EV_TAILNET,	/* a "tailnet" record: what the tailnet carries changed */
	AUDIT_REPORT_EV_KINDS,
};

/* "start", "unclean_shutdown", ... (the names the JSON uses). */
const char *audit_report_event_name(enum audit_report_event_kind k);

struct audit_report_event {
	enum audit_report_event_kind kind;
	int64_t t, until;	/* until == t for a point in time */
	bool has_t;
	char *detail;		/* one line for people (from the record), or NULL */
};

/* A row of a keyed table. Which counters and notes a table uses is said
 * at the table (struct audit_report below). */
#define AUDIT_REPORT_KEY_PARTS 4
struct audit_report_row {
	char *k[AUDIT_REPORT_KEY_PARTS];	/* key parts; NULL where unused */
	uint64_t hash;			/* of the key parts */
	uint64_t allow, deny;		/* decisions */
	uint64_t closed, up, down;	/* close records and their bytes */
	int64_t first, last;		/* ms; first == INT64_MAX: never seen */
	int64_t first_decision;		/* ms of the first decision in the period */
	char *note;			/* denied: the reason; destinations: the address */
	bool note_varied;		/* another reason/address was seen too */
	unsigned paths;			/* destinations: 1 tailnet, 2 host, 4 other */
	char *peer_name, *peer_id;	/* destinations: the last peer named, */
	char *peer_route;		/* and the subnet route it carries (or NULL) */
	bool peer_varied;
	bool is_new;			/* destinations: set by audit_report_finish() */
};

struct audit_report_table {
	struct audit_report_row *rows;	/* open addressing; empty rows have k[0] NULL */
	size_t n, cap, max;
	bool full;			/* a key arrived after max rows: see other */
	struct audit_report_row other;	/* everything that did not fit */
};

/* A connection in the busiest/longest lists (from its close record and
 * its decision). */
struct audit_report_conn {
	int64_t t;		/* close time */
	bool has_t;
	uint64_t id;
	char *user, *client, *dst, *end;
	uint64_t up, down, duration_ms;
};

struct audit_report_top {
	struct audit_report_conn *v;	/* a min-heap on the metric while reading */
	size_t n, max;
	bool by_duration;		/* else by bytes up + down */
};

struct audit_report {
	struct audit_report_options opt;

	/* input */
	uint64_t lines, bad_lines, records, in_period, no_time;
	bool has_first;
	int64_t first, last;		/* times of the records in the period */

	/* connections in the period */
	uint64_t allow, deny, closed, closed_unjoined, up, down;
	uint64_t tailnet_records;	/* decisions naming a path or a peer */

	/* lifecycle (records in the period; connection filters do not apply) */
	uint64_t ev_count[AUDIT_REPORT_EV_KINDS];
	uint64_t lost;			/* records lost, as sink_error records say */
	uint64_t unclosed;		/* connections left open, as recovery records say */
	uint64_t missing_seq;		/* records missing by the seq numbers */
	struct audit_report_event *events;
	size_t n_events;		/* at most AUDIT_REPORT_EVENTS kept */

	/* the HMAC chain, over every line given (filters do not apply) */
	bool chain_checked, chain_verified;
	char chain_msg[1024];
	uint64_t chain_records;

	struct audit_report_timeline tl;

	/* keyed tables, each at most max_keys rows */
	struct audit_report_table pairs;	/* k: user, destination */
	struct audit_report_table denied;	/* k: destination, guard, rule, user */
	struct audit_report_table dsts;		/* k: destination */
	struct audit_report_table users;	/* k: user (for the count) */
	struct audit_report_table clients;	/* k: client address */
	struct audit_report_table types;	/* k: record type not known here */
	struct audit_report_table ends;		/* k: close "end" value */

	struct audit_report_top busiest, longest;

	/* new destinations: the history is every matching decision before the
	 * period; without one, the period's first day */
	uint64_t *history;		/* hash set of destinations, 0 = empty */
	size_t history_n, history_cap;
	bool history_full;
	bool history_from_first_day;	/* set by audit_report_finish() */
	int64_t history_until;		/* ms: "before this" is history */
	uint64_t new_dsts;

	/* reading state */
	struct audit_read_conns conns;
	struct audit_verify *verify;
	bool run_seen, shutdown_seen, prev_checkpoint_shutdown, have_seq;
	bool recovery_has_last;		/* a recovery record named the killed run's end */
	int64_t recovery_last;
	int64_t shutdown_t, prev_t;
	bool shutdown_has_t, prev_has_t;
	uint64_t last_seq;
};

/* Starts a report. The options are copied and the key too; the filter's
 * strings and filter_text are borrowed until audit_report_free(). NULL
 * when out of memory. */
struct audit_report *audit_report_new(const struct audit_report_options *opt);

/* Folds one line of the trail in (without its '\n'; terminated false for a
 * final partial line). file and lineno name it in the chain's messages. */
void audit_report_line(struct audit_report *r, const char *file, unsigned long lineno,
		       const char *line, size_t len, bool terminated);

/* Ends the input: the chain's verdict, new destinations, sorted lists. */
void audit_report_finish(struct audit_report *r);

/* Writes the aggregates as one JSON object (audit_report_json.c; valid
 * UTF-8: invalid bytes in record strings become U+FFFD). inputs name the
 * files read. Returns false on a write error or when out of memory. */
bool audit_report_write_json(const struct audit_report *r, FILE *out,
			     char *const *inputs, int n_inputs);

/* Writes the HTML report (audit_report_html.c). */
bool audit_report_write_html(const struct audit_report *r, FILE *out,
			     char *const *inputs, int n_inputs);

/* Writes s as HTML text: markup characters as entities; control bytes,
 * invalid UTF-8 and invisible or direction-changing code points as visible
 * \xNN or \u{...} escapes (inside <span class="esc"> when spans is true, as
 * plain text otherwise: for attribute values and SVG titles). At most
 * limit bytes of s are shown, then "…". */
void audit_report_html_text(FILE *out, const char *s, size_t limit, bool spans);

/* A malloc'd copy of s that is valid UTF-8: bytes that do not form a
 * character become U+FFFD (control characters are kept). */
char *audit_report_utf8_clean(const char *s);

/* Rows of a table sorted for display (biggest first); the caller frees
 * the array, not the rows. */
const struct audit_report_row **audit_report_sorted(const struct audit_report_table *t,
						    size_t *n);

void audit_report_free(struct audit_report *r);

/* tailfence audit report [FILTERS] [--key KEYFILE] [--json] [-o OUT] FILE...
 * (argv[0] is "report"). Exit 0 written, 1 written but the chain did not
 * verify, 2 error. */
int audit_report_main(int argc, char **argv);

#endif
