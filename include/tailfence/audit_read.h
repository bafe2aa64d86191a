/*
 * audit_read: reading the audit trail back for review, shared by the review
 * commands (audit_cli.c) and the report (audit_report.c): the input files
 * (plain or gzip, in the order given, stdin for "-"), the review filters
 * (time, user, client, destination, verdict, protocol) with their
 * command-line options, and the join of a close record to its connection's
 * decision.
 *
 * Records are parsed with cJSON; nothing here knows more about them than
 * the field names of docs/audit.md.
 */
#ifndef TAILFENCE_AUDIT_READ_H
#define TAILFENCE_AUDIT_READ_H

#include <cjson/cJSON.h>
#include <getopt.h>
#include <zlib.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------ line input */

/* One line of input; the buffer is reused from line to line. */
struct audit_read_line {
	char *p;		/* the line without its '\n', not NUL-terminated */
	size_t len, cap;
	bool terminated;	/* false: the input ended before a newline */
};

/* Opens a trail file, gzip-compressed or plain; "-" is stdin. NULL on
 * failure (errno says why, or is 0 for "out of memory"). */
gzFile audit_read_open(const char *path);

/* Reads the next line into l. Returns false at the end of the input. */
bool audit_read_next(gzFile f, struct audit_read_line *l);

/* Where a line came from, for audit_read_files' callback. */
struct audit_read_src {
	const char *file;	/* as given; "-" for stdin */
	int index, count;	/* which of how many files */
	unsigned long lineno;	/* 1-based */
	gzFile gz;		/* for gzoffset(): bytes of the file read so far */
};

/* Called for every line; line is not NUL-terminated. */
typedef void (*audit_read_fn)(void *ctx, const struct audit_read_src *src,
			      const char *line, size_t len, bool terminated);

/* Reads every file in order (nfiles == 0: stdin) and calls fn for each
 * line. An unreadable file is reported on stderr as "tailfence CMD: ..."
 * and skipped. Returns 0, or 2 when some file could not be read. */
int audit_read_files(int nfiles, char **files, const char *cmd, audit_read_fn fn,
		     void *ctx);

/* --------------------------------------------------------------- filters */

/* An address prefix: the address family (4 or 6), the bytes, the length. */
struct audit_read_pfx {
	int family;
	unsigned char b[16];
	int bits;
};

/* The review filters; every one that is set must match. Strings are
 * borrowed from argv. */
struct audit_read_filter {
	bool has_since, has_until;
	int64_t since, until;	/* ms since the epoch: [since, until) */
	const char *user, *verdict, *proto;
	const char *dst_host;	/* a name; ".example"/"*.example": domain and below */
	const char *direction;	/* "inbound" or "outbound" (a record without the field) */
	const char *tailnet_user;	/* an inbound record's tailnet login name */
	bool has_client, has_dst_pfx;
	struct audit_read_pfx client, dst;
	bool conn_filters;	/* any filter other than time is set */
};

/* getopt_long codes of the filter options; a command numbers its own
 * options from AUDIT_READ_OPT_NEXT on. */
enum {
	AUDIT_READ_OPT_SINCE = 256,
	AUDIT_READ_OPT_UNTIL,
	AUDIT_READ_OPT_USER,
	AUDIT_READ_OPT_CLIENT,
	AUDIT_READ_OPT_DST,
	AUDIT_READ_OPT_VERDICT,
	AUDIT_READ_OPT_PROTO,
	AUDIT_READ_OPT_DIRECTION,
	AUDIT_READ_OPT_TAILNET_USER,
	AUDIT_READ_OPT_NEXT,
};

/* The filter options as `struct option` entries, for a command's table. */
#define AUDIT_READ_FILTER_OPTIONS                                           \
	{ "since", required_argument, NULL, AUDIT_READ_OPT_SINCE },         \
	{ "until", required_argument, NULL, AUDIT_READ_OPT_UNTIL },         \
	{ "user", required_argument, NULL, AUDIT_READ_OPT_USER },           \
	{ "client", required_argument, NULL, AUDIT_READ_OPT_CLIENT },       \
	{ "dst", required_argument, NULL, AUDIT_READ_OPT_DST },             \
	{ "verdict", required_argument, NULL, AUDIT_READ_OPT_VERDICT },     \
	{ "proto", required_argument, NULL, AUDIT_READ_OPT_PROTO },         \
	{ "direction", required_argument, NULL, AUDIT_READ_OPT_DIRECTION }, \
	{ "tailnet-user", required_argument, NULL, AUDIT_READ_OPT_TAILNET_USER }

/* The filter options as usage text. */
#define AUDIT_READ_FILTER_HELP                                                           \
	"Filters (all must match; close records follow their connection's decision):\n"  \
	"  --since T          records at or after T (RFC 3339, YYYY-MM-DD, or 30m/2h/7d ago)\n" \
	"  --until T          records before T\n"                                          \
	"  --user U           authenticated user U\n"                                      \
	"  --client PREFIX    client address in PREFIX (127.0.0.1, 127.0.0.0/24, ::1)\n"   \
	"  --dst PREFIX|HOST  destination address in PREFIX, or requested host HOST\n"     \
	"                     (.example.com or *.example.com: that domain and below)\n"    \
	"  --verdict V        allow or deny\n"                                             \
	"  --proto P          socks5, socks4, socks4a, http-connect, http, proxy-v2, proxy-v1\n" \
	"  --direction D      inbound (tailnet users reaching services through tailscale\n" \
	"                     serve) or outbound (clients of the proxy)\n"              \
	"  --tailnet-user U   inbound connections of tailnet login name U\n"

/* Applies one option returned by getopt_long. Returns 1 when opt was a
 * filter option and its value is good, 0 when opt is not a filter option,
 * -1 when the value is bad (said on stderr as "tailfence CMD: ..."). arg is
 * borrowed and must outlive the filter. */
int audit_read_filter_option(struct audit_read_filter *f, int opt, char *arg,
			     const char *cmd);

/* Checks the filters as a whole once every option is in (--until after
 * --since). Says why on stderr and returns false when they conflict. */
bool audit_read_filter_check(const struct audit_read_filter *f, const char *cmd);

/* Does a decision record pass the connection filters (all but time)? */
bool audit_read_decision_matches(const struct audit_read_filter *f, const cJSON *o);

/* Is the record's time inside [since, until)? A record without a readable
 * ts is inside only when no time filter is set. *t gets the time in ms and
 * *has_t says whether there was one (both may be NULL). */
bool audit_read_in_time(const struct audit_read_filter *f, const cJSON *o, int64_t *t,
			bool *has_t);

/* Parses an RFC 3339 time ("2024-05-01T12:00:00.123Z", offsets allowed,
 * fraction optional) or a date ("2024-05-01", "2024-05-01T12:00") taken as
 * UTC, into milliseconds since the epoch. Pure. Also used by the chain
 * verifier (audit_verify_line) to see files given out of order. */
bool audit_read_time_parse(const char *s, size_t len, int64_t *ms);


/* ------------------------------------------------------ record accessors */

/* The string field k of o, or NULL when it is missing or not a string. */
const char *audit_read_str(const cJSON *o, const char *k);

/* The number field k of o, or 0. */
double audit_read_num(const cJSON *o, const char *k);

/* The number field k of o as a count: 0 when missing, negative or not a
 * number, UINT64_MAX when too big (hostile values never reach a cast that
 * is undefined). */
uint64_t audit_read_u64(const cJSON *o, const char *k);

/* A decision's destination as requested: "host:port", "[v6]:port",
 * "-:port" without a host. */
void audit_read_dst(const cJSON *o, char *out, size_t len);

/* "127.0.0.1:40000" / "[::1]:40000" -> the address alone; "-" for NULL. */
void audit_read_client_ip(const char *client, char *out, size_t len);

/* Bytes for people: "320 B", "68.4 KiB", "1.2 GiB". */
void audit_read_fmt_bytes(uint64_t n, char *out, size_t len);

/* ms since the epoch -> "2024-05-01T12:00:00.000Z" (len >= 32). */
void audit_read_fmt_time(int64_t ms, char *out, size_t len);

/* ------------------------------------------------------ connection joins */

/* What a decision said about a connection, kept until its close record
 * (connection ids restart at every `start` record: clear the table then). */
struct audit_read_conn {
	uint64_t id;
	bool used;
	bool allow;
	bool target;		/* the decision named a host or an address */
	char *user;		/* "-" when none */
	char *client;		/* the client address without its port */
	char *dst;		/* audit_read_dst() */
	/* An inbound connection: who the tailnet said connected, to what. */
	bool inbound;
	char *service;		/* NULL for outbound */
	char *tailnet_user;	/* "-" when not known */
	char *tailnet_addr;	/* the PROXY header's source, "-" when not known */
};

struct audit_read_conns {
	struct audit_read_conn *v;
	size_t n, cap;		/* open addressing, cap a power of two */
	size_t max;		/* 0: unbounded; else at most this many entries */
	uint64_t dropped;	/* decisions not kept because max was reached */
};

/* Keeps a decision (one that passed the filters; it replaces an entry with
 * the same id) and returns it, or NULL when the table is at its max (then
 * counts it in dropped). */
struct audit_read_conn *audit_read_conns_put(struct audit_read_conns *cs,
					     const cJSON *decision);

/* The kept decision of connection id, or NULL. */
struct audit_read_conn *audit_read_conns_get(struct audit_read_conns *cs, uint64_t id);

/* Forgets one entry (after its close record). */
void audit_read_conns_remove(struct audit_read_conns *cs, struct audit_read_conn *c);

/* Forgets every entry and frees the table; max and dropped are kept. */
void audit_read_conns_clear(struct audit_read_conns *cs);

#endif
