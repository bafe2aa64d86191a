/*
 * audit_cli: `tailfence audit` — review the audit trail.
 *
 *   tailfence audit [FILTERS] [--json] [FILE...]     records as a table or JSON lines
 *   tailfence audit summary [FILTERS] [FILE...]       who went where, how much, denials
 *   tailfence audit verify --key FILE FILE...         check the HMAC chain
 *   tailfence audit tail [FILTERS] [--json] FILE      follow the live file
 *   tailfence audit report [FILTERS] -o OUT FILE...   HTML report (audit_report.c)
 *
 * Files may be gzip-compressed (zlib reads plain files too); no FILE means
 * stdin (audit_read.c reads them and applies the filters). Close records
 * carry only a connection id, so filters on the decision (user, client,
 * destination, verdict, protocol) also select the close record of the same
 * connection.
 */
#include "tailfence/audit.h"
#include "tailfence/text.h"
#include "tailfence/audit_read.h"
#include "tailfence/audit_report.h"
#include "tailfence/cli.h"

#include <cjson/cJSON.h>
#include <zlib.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------- string counters */

struct stat_row {
	char *key;
	uint64_t n, up, down;
};

struct agg {
	struct stat_row *rows;
	size_t n, cap;	/* open addressing, cap a power of two */
};

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static struct stat_row *agg_get(struct agg *a, const char *key)
{
	if (a->n * 2 >= a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		struct stat_row *rows = calloc(cap, sizeof *rows);
		if (!rows) {
			fprintf(stderr, "tailfence audit: out of memory\n");
			exit(2);
		}
		for (size_t i = 0; i < a->cap; i++) {
			if (!a->rows[i].key)
				continue;
			size_t j = hash_str(a->rows[i].key) & (cap - 1);
			while (rows[j].key)
				j = (j + 1) & (cap - 1);
			rows[j] = a->rows[i];
		}
		free(a->rows);
		a->rows = rows;
		a->cap = cap;
	}
	size_t j = hash_str(key) & (a->cap - 1);
	while (a->rows[j].key) {
		if (strcmp(a->rows[j].key, key) == 0)
			return &a->rows[j];
		j = (j + 1) & (a->cap - 1);
	}
	a->rows[j].key = strdup(key);
	a->n++;
	return &a->rows[j];
}

static void agg_free(struct agg *a)
{
	for (size_t i = 0; i < a->cap; i++)
		free(a->rows[i].key);
	free(a->rows);
	memset(a, 0, sizeof *a);
}

/* ---------------------------------------------------------------- review */

struct review {
	struct audit_read_filter f;
	bool json;
	unsigned long bad_lines;

	struct audit_read_conns conns;
	/* summary */
	bool summary;
	uint64_t n_allow, n_deny, n_close, up, down;
	struct agg by_dst, by_user, by_client, deny_client, deny_target, hours;
	/* inbound: tailnet user -> service, and the identities refused */
	struct agg in_used, in_denied;
	char first_ts[40], last_ts[40];
	/* unclean shutdowns: a start while a run was still going (no shutdown
	 * record since its records), or right after a recovery record */
	bool run_open, recovered;
	unsigned n_unclean;
	uint64_t n_unclosed;		/* connections the recovery records name */
	char unclean_ts[5][40];		/* the restarts, first few */
};

/* The string field k of o, or dflt. */
/* Prints one formatted line of output built from records: whatever the
 * records hold, control characters and bytes that are not UTF-8 are shown
 * as \xHH, so a hostile host or user name can neither drive the
 * reviewer's terminal (escape sequences) nor forge a row (newlines). */
__attribute__((format(printf, 1, 2)))
static void out(const char *fmt, ...)
{
	char line[2048], safe[4 * sizeof line];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	size_t len = n < 0 ? 0 : (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
	bool nl = len && line[len - 1] == '\n';
	text_escape_controls(line, len - nl, safe, sizeof safe);
	fputs(safe, stdout);
	if (nl)
		fputc('\n', stdout);
}

static const char *str_or(const cJSON *o, const char *k, const char *dflt)
{
	const char *v = audit_read_str(o, k);
	return v ? v : dflt;
}

static void print_table_header(void)
{
	printf("%-24s %6s %-9s %-22s %-10s %-12s %-30s %-7s %s\n", "TIME", "CONN",
	       "TYPE", "CLIENT", "USER", "PROTO", "DESTINATION", "VERDICT", "RULE / DETAIL");
}

static void print_row(const cJSON *o, const char *type, const struct audit_read_conn *ci)
{
	const char *ts = audit_read_str(o, "ts");
	if (!ts)
		ts = "-";
	if (strcmp(type, "decision") == 0) {
		char dst[300], why[300];
		audit_read_dst(o, dst, sizeof dst);
		const char *addr = audit_read_str(o, "addr"), *host = audit_read_str(o, "host");
		if (addr && host && strcmp(addr, host) != 0) {
			size_t l = strlen(dst);
			snprintf(dst + l, sizeof dst - l, " (%s)", addr);
		}
		const char *rule = audit_read_str(o, "rule"), *guard = audit_read_str(o, "guard");
		if (guard)
			snprintf(why, sizeof why, "guard %s", guard);
		else if (rule)
			snprintf(why, sizeof why, "rule %s", rule);
		else
			snprintf(why, sizeof why, "%s", str_or(o, "reason", "-"));
		/* An inbound row: who the tailnet says connected, to which service. */
		bool in = strcmp(str_or(o, "direction", ""), "inbound") == 0;
		if (in) {
			char svc[300];
			snprintf(svc, sizeof svc, "%s: %s", str_or(o, "service", "-"), dst);
			snprintf(dst, sizeof dst, "%s", svc);
		}
		out("%-24s %6.0f %-9s %-22s %-10s %-12s %-30s %-7s %s\n", ts,
		       audit_read_num(o, "conn"), "decision",
		       in ? str_or(o, "tailnet_addr", str_or(o, "client", "-"))
			  : str_or(o, "client", "-"),
		       in ? str_or(o, "tailnet_user", "-") : str_or(o, "user", "-"),
		       str_or(o, "proto", "-"), dst, str_or(o, "verdict", "-"), why);
	} else if (strcmp(type, "close") == 0) {
		char up[32], down[32], dur[32], detail[400];
		audit_read_fmt_bytes(audit_read_u64(o, "bytes_up"), up, sizeof up);
		audit_read_fmt_bytes(audit_read_u64(o, "bytes_down"), down, sizeof down);
		snprintf(dur, sizeof dur, "%.3f s", audit_read_num(o, "duration_ms") / 1000.0);
		const char *end = audit_read_str(o, "end"), *err = audit_read_str(o, "error");
		snprintf(detail, sizeof detail, "up %s, down %s, %s, %s%s%s", up, down, dur,
			 end ? end : "-", err ? ": " : "", err ? err : "");
		char dst[300] = "";
		if (ci && ci->inbound)
			snprintf(dst, sizeof dst, "%s: %s", ci->service, ci->dst);
		else if (ci && ci->dst)
			snprintf(dst, sizeof dst, "%s", ci->dst);
		bool in = ci && ci->inbound;
		out("%-24s %6.0f %-9s %-22s %-10s %-12s %-30s %-7s %s\n", ts,
		       audit_read_num(o, "conn"), "close",
		       in ? ci->tailnet_addr : ci && ci->client ? ci->client : "",
		       in ? ci->tailnet_user : ci && ci->user ? ci->user : "", "", dst, "", detail);
	} else {
		const char *detail = audit_read_str(o, "detail");
		if (!detail)
			detail = audit_read_str(o, "reason");
		if (!detail)
			detail = audit_read_str(o, "error");
		out("%-24s %6s %-9s %s\n", ts, "", type, detail ? detail : "");
	}
}

static void summary_add_decision(struct review *r, const cJSON *o)
{
	char dst[300], cl[64];
	audit_read_dst(o, dst, sizeof dst);
	/* An inbound connection's client and user are the tailnet's, as in
	 * the table (the socket tailfence accepted is tailscaled's). */
	bool in = strcmp(str_or(o, "direction", ""), "inbound") == 0;
	audit_read_client_ip(in ? audit_read_str(o, "tailnet_addr") : audit_read_str(o, "client"),
			     cl, sizeof cl);
	const char *who = in ? str_or(o, "tailnet_user", "-") : str_or(o, "user", "-");
	const char *ts = audit_read_str(o, "ts");
	if (ts && strlen(ts) >= 13) {
		char hour[32];
		snprintf(hour, sizeof hour, "%.13s:00Z", ts);
		agg_get(&r->hours, hour)->n++;
	}
	if (in) {
		char key[700];
		const char *user = audit_read_str(o, "tailnet_user");
		const char *svc = str_or(o, "service", "-");
		if (strcmp(str_or(o, "verdict", "-"), "allow") == 0) {
			snprintf(key, sizeof key, "%s -> %s", user ? user : "-", svc);
			agg_get(&r->in_used, key)->n++;
		} else if (user) {
			snprintf(key, sizeof key, "%s (%s) -> %s", user, str_or(o, "tailnet_node", "-"),
				 svc);
			agg_get(&r->in_denied, key)->n++;
		} else {
			/* no identity: the header, the peer check or whois refused it */
			const char *g = audit_read_str(o, "guard");
			snprintf(key, sizeof key, "%s (%s%s) -> %s", str_or(o, "tailnet_addr", "-"),
				 g ? "guard " : "no identity", g ? g : "", svc);
			agg_get(&r->in_denied, key)->n++;
		}
	}
	if (strcmp(str_or(o, "verdict", "-"), "allow") == 0) {
		r->n_allow++;
		agg_get(&r->by_dst, dst)->n++;
		agg_get(&r->by_user, who)->n++;
		agg_get(&r->by_client, cl)->n++;
	} else {
		r->n_deny++;
		agg_get(&r->deny_client, cl)->n++;
		agg_get(&r->deny_target, dst)->n++;
	}
}

static void summary_add_close(struct review *r, const cJSON *o, const struct audit_read_conn *ci)
{
	uint64_t up = audit_read_u64(o, "bytes_up");
	uint64_t down = audit_read_u64(o, "bytes_down");
	r->n_close++;
	r->up += up;
	r->down += down;
	if (!ci || !ci->allow)
		return;
	struct stat_row *s;
	s = agg_get(&r->by_dst, ci->dst);
	s->up += up, s->down += down;
	char cl[64];
	if (ci->inbound)
		audit_read_client_ip(strcmp(ci->tailnet_addr, "-") ? ci->tailnet_addr : NULL, cl,
				     sizeof cl);
	s = agg_get(&r->by_user, ci->inbound ? ci->tailnet_user : ci->user);
	s->up += up, s->down += down;
	s = agg_get(&r->by_client, ci->inbound ? cl : ci->client);
	s->up += up, s->down += down;
	if (ci->inbound) {
		char key[700];
		snprintf(key, sizeof key, "%s -> %s", ci->tailnet_user, ci->service);
		s = agg_get(&r->in_used, key);
		s->up += up, s->down += down;
	}
}

/* Follows the daemon's runs: a start while the previous run never wrote its
 * shutdown record is an unclean shutdown (killed, crashed, power lost). */
static void review_lifecycle(struct review *r, const cJSON *o, const char *type)
{
	if (strcmp(type, "start") == 0) {
		if (r->run_open || r->recovered) {
			if (r->n_unclean < 5) {
				const char *ts = audit_read_str(o, "ts");
				snprintf(r->unclean_ts[r->n_unclean], sizeof r->unclean_ts[0], "%s",
					 ts ? ts : "-");
			}
			r->n_unclean++;
		}
		r->run_open = true;
		r->recovered = false;
	} else if (strcmp(type, "shutdown") == 0) {
		r->run_open = false;
	} else if (strcmp(type, "recovery") == 0) {
		r->recovered = true;
		const cJSON *u = cJSON_GetObjectItemCaseSensitive(o, "unclosed");
		if (cJSON_IsArray(u))
			r->n_unclosed += (uint64_t)cJSON_GetArraySize(u);
	} else if (strcmp(type, "checkpoint") != 0) {
		r->run_open = true;
	}
}

/* Handles one line: filter, then print or count. */
static void review_line(struct review *r, const char *line, size_t len)
{
	cJSON *o = cJSON_ParseWithLength(line, len);
	if (!o || !cJSON_IsObject(o)) {
		if (len > 0)
			r->bad_lines++;
		cJSON_Delete(o);
		return;
	}
	const char *type = audit_read_str(o, "type");
	const char *ts = audit_read_str(o, "ts");
	if (!type)
		type = "?";
	bool in_time = audit_read_in_time(&r->f, o, NULL, NULL);

	if (strcmp(type, "start") == 0) {
		/* Connection ids restart with the daemon. */
		audit_read_conns_clear(&r->conns);
	}
	if (in_time)
		review_lifecycle(r, o, type);
	bool show;
	struct audit_read_conn *ci = NULL;
	if (strcmp(type, "decision") == 0) {
		bool m = audit_read_decision_matches(&r->f, o);
		show = m && in_time;
		if (m)
			ci = audit_read_conns_put(&r->conns, o);
		if (show && r->summary)
			summary_add_decision(r, o);
	} else if (strcmp(type, "close") == 0) {
		ci = audit_read_conns_get(&r->conns, audit_read_u64(o, "conn"));
		show = in_time && (ci || !r->f.conn_filters);
		if (show && r->summary)
			summary_add_close(r, o, ci);
	} else {
		show = in_time && !r->f.conn_filters;
	}
	if (show && r->summary && ts) {
		if (!r->first_ts[0])
			snprintf(r->first_ts, sizeof r->first_ts, "%s", ts);
		snprintf(r->last_ts, sizeof r->last_ts, "%s", ts);
	}
	if (show && !r->summary) {
		if (r->json) {
			fwrite(line, 1, len, stdout);
			putchar('\n');
		} else {
			print_row(o, type, ci);
		}
	}
	if (ci && strcmp(type, "close") == 0)
		audit_read_conns_remove(&r->conns, ci);
	cJSON_Delete(o);
}

static int cmp_rows_n(const void *a, const void *b)
{
	const struct stat_row *x = a, *y = b;
	if (x->n != y->n)
		return x->n < y->n ? 1 : -1;
	return strcmp(x->key, y->key);
}

/* Prints up to limit rows of an aggregate, biggest first. */
static void print_agg(const char *title, const char *col, struct agg *a, bool bytes,
		      size_t limit)
{
	putchar('\n');
	out("%s\n", title);
	if (a->n == 0) {
		out("  (none)\n");
		return;
	}
	struct stat_row *rows = malloc(a->n * sizeof *rows);
	size_t k = 0;
	for (size_t i = 0; i < a->cap; i++)
		if (a->rows[i].key)
			rows[k++] = a->rows[i];
	qsort(rows, k, sizeof *rows, cmp_rows_n);
	if (bytes)
		out("  %-40s %8s %12s %12s\n", col, "CONNS", "BYTES UP", "BYTES DOWN");
	else
		out("  %-40s %8s\n", col, "COUNT");
	for (size_t i = 0; i < k && i < limit; i++) {
		if (bytes) {
			char up[32], down[32];
			audit_read_fmt_bytes(rows[i].up, up, sizeof up);
			audit_read_fmt_bytes(rows[i].down, down, sizeof down);
			out("  %-40s %8" PRIu64 " %12s %12s\n", rows[i].key, rows[i].n, up, down);
		} else {
			out("  %-40s %8" PRIu64 "\n", rows[i].key, rows[i].n);
		}
	}
	if (k > limit)
		out("  ... %zu more\n", k - limit);
	free(rows);
}

static void print_summary(struct review *r, size_t limit)
{
	char up[32], down[32];
	audit_read_fmt_bytes(r->up, up, sizeof up);
	audit_read_fmt_bytes(r->down, down, sizeof down);
	out("Period: %s .. %s\n", r->first_ts[0] ? r->first_ts : "-",
	       r->last_ts[0] ? r->last_ts : "-");
	out("Connections: %" PRIu64 " allowed, %" PRIu64 " denied, %" PRIu64
	       " closed; %s up, %s down\n", r->n_allow, r->n_deny, r->n_close, up, down);
	if (r->n_unclean) {
		out("Unclean shutdowns: %u (the daemon was killed or crashed: records it had not "
		       "written yet may be missing); %" PRIu64 " connection(s) left without a close "
		       "record (recovery records)\n", r->n_unclean, r->n_unclosed);
		for (unsigned i = 0; i < r->n_unclean && i < 5; i++)
			out("  restarted at %s\n", r->unclean_ts[i]);
		if (r->n_unclean > 5)
			out("  ... %u more\n", r->n_unclean - 5);
	}
	print_agg("Allowed connections by destination", "DESTINATION", &r->by_dst, true, limit);
	print_agg("Allowed connections by user", "USER", &r->by_user, true, limit);
	print_agg("Allowed connections by client", "CLIENT", &r->by_client, true, limit);
	print_agg("Denied attempts by client", "CLIENT", &r->deny_client, false, limit);
	print_agg("Denied attempts by target", "TARGET", &r->deny_target, false, limit);
	if (r->in_used.n || r->in_denied.n) {
		print_agg("Inbound: who used which service", "TAILNET USER -> SERVICE", &r->in_used,
			  true, limit);
		print_agg("Inbound: refused, by tailnet identity", "WHO -> SERVICE", &r->in_denied,
			  false, limit);
	}
	print_agg("Busiest hours (decisions)", "HOUR (UTC)", &r->hours, false, 5);
	if (r->bad_lines)
		printf("\n%lu lines were not JSON records and were skipped\n", r->bad_lines);
}

/* ----------------------------------------------------------- arguments */

static const char review_usage[] =
	"usage: tailfence audit [FILTERS] [--json] [FILE...]\n"
	"       tailfence audit summary [FILTERS] [--top N] [FILE...]\n"
	"       tailfence audit report [FILTERS] [--key KEYFILE] [--json] [-o OUT] FILE...\n"
	"       tailfence audit verify [--strict] --key KEYFILE FILE...\n"
	"       tailfence audit tail [FILTERS] [--json] [-n N] FILE\n"
	"\n"
	"Reads audit records (JSON lines; gzip-compressed files too; stdin when no\n"
	"FILE) and prints the matching ones as a table, or as JSON lines with --json.\n"
	"\n"
	AUDIT_READ_FILTER_HELP
	"\n"
	"Exit status: 0 success, 2 error.\n";

enum { OPT_JSON = AUDIT_READ_OPT_NEXT, OPT_TOP, OPT_HELP };

static const struct option review_opts[] = {
	AUDIT_READ_FILTER_OPTIONS,
	{ "json", no_argument, NULL, OPT_JSON },
	{ "top", required_argument, NULL, OPT_TOP },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

/* Parses filters; returns -1 to continue, else an exit status. */
static int parse_review_args(int argc, char **argv, struct review *r, size_t *top,
			     long *tail_n, const char *cmd)
{
	int c;
	optind = 0;	/* 0: full re-initialisation (the CLI may run twice in one process) */
	opterr = 0;
	while ((c = getopt_long(argc, argv, tail_n ? "+n:h" : "+h", review_opts, NULL)) != -1) {
		int f = audit_read_filter_option(&r->f, c, optarg, cmd);
		if (f < 0)
			return 2;
		if (f > 0)
			continue;
		switch (c) {
		case OPT_JSON:
			r->json = true;
			break;
		case OPT_TOP: {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end || n <= 0 || !top) {
				fprintf(stderr, "tailfence %s: --top \"%s\": expected a positive number\n",
					cmd, optarg);
				return 2;
			}
			*top = (size_t)n;
			break;
		}
		case 'n': {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end || n < 0) {
				fprintf(stderr, "tailfence %s: -n \"%s\": expected a number of lines\n",
					cmd, optarg);
				return 2;
			}
			*tail_n = n;
			break;
		}
		case 'h':
		case OPT_HELP:
			fputs(review_usage, stdout);
			return 0;
		default:
			fprintf(stderr, "tailfence %s: unknown or incomplete option \"%s\"\n%s",
				cmd, argv[optind - 1], review_usage);
			return 2;
		}
	}
	if (!audit_read_filter_check(&r->f, cmd))
		return 2;
	return -1;
}

static void review_free(struct review *r)
{
	audit_read_conns_clear(&r->conns);
	agg_free(&r->by_dst);
	agg_free(&r->by_user);
	agg_free(&r->by_client);
	agg_free(&r->deny_client);
	agg_free(&r->deny_target);
	agg_free(&r->hours);
	agg_free(&r->in_used);
	agg_free(&r->in_denied);
}

static void review_file_line(void *ctx, const struct audit_read_src *src, const char *line,
			     size_t len, bool terminated)
{
	(void)src;
	(void)terminated;
	review_line(ctx, line, len);
}

static int cmd_review(int argc, char **argv, bool summary)
{
	struct review r = { .summary = summary };
	size_t top = 10;
	const char *cmd = summary ? "audit summary" : "audit";
	int rc = parse_review_args(argc, argv, &r, &top, NULL, cmd);
	if (rc >= 0)
		return rc;
	if (!summary && !r.json)
		print_table_header();
	rc = audit_read_files(argc - optind, argv + optind, cmd, review_file_line, &r);
	if (summary)
		print_summary(&r, top);
	fflush(stdout);
	review_free(&r);
	return rc;
}

/* ---------------------------------------------------------------- verify */

static const char verify_usage[] =
	"usage: tailfence audit verify [--strict] --key KEYFILE FILE...\n"
	"\n"
	"Walks the HMAC chain through the files in the order given (oldest first,\n"
	"e.g. audit.jsonl.3.gz audit.jsonl.2.gz audit.jsonl.1 audit.jsonl) and\n"
	"reports the first broken link with FILE:LINE: an edited record, deleted or\n"
	"reordered lines, a truncated tail (no final checkpoint, partial line), or\n"
	"a file signed with another key.\n"
	"\n"
	"A start with no shutdown checkpoint before it (the daemon was killed or\n"
	"crashed, so records it still held may be missing) is reported as an\n"
	"unclean shutdown: a note, or a failure with --strict.\n"
	"\n"
	"Exit status: 0 verified, 1 not verified, 2 error.\n";

static int cmd_verify(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "strict", no_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *keyfile = NULL;
	bool strict = false;
	int c;
	optind = 0;	/* 0: full re-initialisation (the CLI may run twice in one process) */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+k:h", opts, NULL)) != -1) {
		if (c == 'k') {
			keyfile = optarg;
		} else if (c == 's') {
			strict = true;
		} else if (c == 'h') {
			fputs(verify_usage, stdout);
			return 0;
		} else {
			fprintf(stderr, "tailfence audit verify: unknown or incomplete option \"%s\"\n%s",
				argv[optind - 1], verify_usage);
			return 2;
		}
	}
	if (!keyfile || optind >= argc) {
		fprintf(stderr, "tailfence audit verify: %s\n%s",
			!keyfile ? "--key KEYFILE is required" : "no FILE given", verify_usage);
		return 2;
	}
	unsigned char *key;
	size_t keylen;
	char err[512];
	if (!audit_key_load(keyfile, &key, &keylen, err, sizeof err)) {
		fprintf(stderr, "tailfence audit verify: %s\n", err);
		return 2;
	}
	struct audit_verify *v = audit_verify_new(key, keylen);
	free(key);
	if (!v) {
		fprintf(stderr, "tailfence audit verify: out of memory\n");
		return 2;
	}
	audit_verify_set_strict(v, strict);
	struct audit_read_line l = { 0 };
	int rc = -1;
	for (int i = optind; i < argc && rc < 0; i++) {
		gzFile f = audit_read_open(argv[i]);
		if (!f) {
			fprintf(stderr, "tailfence audit verify: cannot open \"%s\": %s\n", argv[i],
				strerror(errno ? errno : ENOMEM));
			rc = 2;
			break;
		}
		unsigned long lineno = 0;
		while (audit_read_next(f, &l)) {
			lineno++;
			if (!audit_verify_line(v, argv[i], lineno, l.p, l.len, l.terminated))
				break;
		}
		int zerr;
		const char *msg = gzerror(f, &zerr);
		if (zerr != Z_OK && zerr != Z_BUF_ERROR) {
			fprintf(stderr, "tailfence audit verify: \"%s\": read error: %s\n", argv[i],
				zerr == Z_ERRNO ? strerror(errno) : msg);
			rc = 2;
		}
		gzclose(f);
	}
	free(l.p);
	if (rc < 0) {
		char msg[1024];
		bool ok = audit_verify_finish(v, msg, sizeof msg);
		if (ok) {
			printf("%s\n", msg);
			rc = 0;
		} else {
			printf("NOT VERIFIED: %s\n", msg);
			rc = 1;
		}
	}
	audit_verify_free(v);
	return rc;
}

/* ------------------------------------------------------------------ tail */

static volatile sig_atomic_t tail_stop;

static void tail_on_signal(int sig)
{
	(void)sig;
	tail_stop = 1;
}

static void feed_chunk(struct review *r, struct audit_read_line *acc, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n') {
			review_line(r, acc->p, acc->len);
			acc->len = 0;
			continue;
		}
		if (acc->len + 1 >= acc->cap) {
			size_t cap = acc->cap ? acc->cap * 2 : 8192;
			char *q = realloc(acc->p, cap);
			if (!q)
				return;
			acc->p = q;
			acc->cap = cap;
		}
		acc->p[acc->len++] = p[i];
	}
	fflush(stdout);
}

/* Offset where the last n lines of fd begin. */
static off_t last_lines_offset(int fd, long n)
{
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size == 0)
		return 0;
	if (n == 0)
		return st.st_size;
	off_t pos = st.st_size;
	char buf[8192];
	long seen = 0;
	while (pos > 0) {
		size_t want = pos > (off_t)sizeof buf ? sizeof buf : (size_t)pos;
		pos -= (off_t)want;
		ssize_t got = pread(fd, buf, want, pos);
		if (got <= 0)
			return 0;
		for (ssize_t i = got - 1; i >= 0; i--) {
			if (buf[i] != '\n' || pos + i == st.st_size - 1)
				continue;
			if (++seen == n)
				return pos + i + 1;
		}
	}
	return 0;
}

static int cmd_tail(int argc, char **argv)
{
	struct review r = { 0 };
	long n = 10;
	int rc = parse_review_args(argc, argv, &r, NULL, &n, "audit tail");
	if (rc >= 0)
		return rc;
	if (optind != argc - 1) {
		fprintf(stderr, "tailfence audit tail: expected exactly one FILE\n%s", review_usage);
		return 2;
	}
	const char *path = argv[optind];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "tailfence audit tail: cannot open \"%s\": %s\n", path, strerror(errno));
		return 2;
	}
	if (!r.json)
		print_table_header();
	struct sigaction sa = { .sa_handler = tail_on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	lseek(fd, last_lines_offset(fd, n), SEEK_SET);
	struct audit_read_line acc = { 0 };
	char buf[65536];
	while (!tail_stop) {
		ssize_t got = read(fd, buf, sizeof buf);
		if (got > 0) {
			feed_chunk(&r, &acc, buf, (size_t)got);
			continue;
		}
		if (got < 0 && errno != EINTR) {
			fprintf(stderr, "tailfence audit tail: \"%s\": %s\n", path, strerror(errno));
			rc = 2;
			break;
		}
		/* At the end: has the file been rotated or truncated? */
		struct stat cur, now;
		if (fstat(fd, &cur) == 0 && stat(path, &now) == 0) {
			if (now.st_ino != cur.st_ino || now.st_dev != cur.st_dev) {
				int nfd = open(path, O_RDONLY | O_CLOEXEC);
				if (nfd >= 0) {
					/* The old file is drained (read returned 0). */
					close(fd);
					fd = nfd;
					continue;
				}
			} else if (now.st_size < lseek(fd, 0, SEEK_CUR)) {
				lseek(fd, 0, SEEK_SET);
				acc.len = 0;
				continue;
			}
		}
		struct timespec ts = { .tv_nsec = 200000000 };
		nanosleep(&ts, NULL);
	}
	close(fd);
	free(acc.p);
	review_free(&r);
	return rc < 0 ? 0 : rc;
}

/* ------------------------------------------------------------------ main */

int audit_cli_main(int argc, char **argv)
{
	if (argc >= 2) {
		const char *sub = argv[1];
		if (strcmp(sub, "verify") == 0)
			return cmd_verify(argc - 1, argv + 1);
		if (strcmp(sub, "summary") == 0)
			return cmd_review(argc - 1, argv + 1, true);
		if (strcmp(sub, "tail") == 0)
			return cmd_tail(argc - 1, argv + 1);
		if (strcmp(sub, "report") == 0)
			return audit_report_main(argc - 1, argv + 1);
	}
	return cmd_review(argc, argv, false);
}
