/*
 * audit_cli: `tailfence audit` — review the audit trail.
 *
 *   tailfence audit [FILTERS] [--json] [FILE...]     records as a table or JSON lines
 *   tailfence audit summary [FILTERS] [FILE...]       who went where, how much, denials
 *   tailfence audit verify --key FILE FILE...         check the HMAC chain
 *   tailfence audit tail [FILTERS] [--json] FILE      follow the live file
 *
 * Files may be gzip-compressed (zlib reads plain files too); no FILE means
 * stdin. Close records carry only a connection id, so filters on the
 * decision (user, client, destination, verdict, protocol) also select the
 * close record of the same connection.
 */
#include "tailfence/audit.h"
#include "tailfence/cli.h"

#include <cjson/cJSON.h>
#include <zlib.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ line input */

struct line {
	char *p;
	size_t len, cap;
	bool terminated;
};

/* Reads one line (without '\n') from a gzFile. Returns false at EOF. */
static bool read_line(gzFile f, struct line *l)
{
	l->len = 0;
	l->terminated = false;
	for (;;) {
		if (l->cap - l->len < 4096) {
			size_t cap = l->cap ? l->cap * 2 : 8192;
			char *p = realloc(l->p, cap);
			if (!p)
				return false;
			l->p = p;
			l->cap = cap;
		}
		if (!gzgets(f, l->p + l->len, (int)(l->cap - l->len)))
			break;
		size_t n = strlen(l->p + l->len);
		l->len += n;
		if (n && l->p[l->len - 1] == '\n') {
			l->len--;
			l->terminated = true;
			return true;
		}
		if (n == 0)
			break;
	}
	return l->len > 0;
}

static gzFile open_input(const char *path)
{
	if (strcmp(path, "-") == 0)
		return gzdopen(dup(STDIN_FILENO), "rb");
	return gzopen(path, "rb");
}

/* -------------------------------------------------------------- prefixes */

struct pfx {
	int family;	/* 4 or 6 */
	unsigned char b[16];
	int bits;
};

static bool addr_parse(const char *s, size_t n, int *family, unsigned char b[16])
{
	char tmp[64];
	if (n >= sizeof tmp)
		return false;
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	if (inet_pton(AF_INET, tmp, b) == 1) {
		*family = 4;
		return true;
	}
	if (inet_pton(AF_INET6, tmp, b) == 1) {
		static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		if (memcmp(b, mapped, 12) == 0) {
			memmove(b, b + 12, 4);
			*family = 4;
		} else {
			*family = 6;
		}
		return true;
	}
	return false;
}

static bool pfx_parse(const char *s, struct pfx *p)
{
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	if (!addr_parse(s, n, &p->family, p->b))
		return false;
	int max = p->family == 4 ? 32 : 128;
	if (!slash) {
		p->bits = max;
		return true;
	}
	char *end;
	if (!isdigit((unsigned char)slash[1]))
		return false;
	long bits = strtol(slash + 1, &end, 10);
	if (*end || bits < 0 || bits > max)
		return false;
	p->bits = (int)bits;
	return true;
}

static bool pfx_match(const struct pfx *p, const char *addr, size_t n)
{
	int family;
	unsigned char b[16];
	if (!addr_parse(addr, n, &family, b) || family != p->family)
		return false;
	int full = p->bits / 8, rest = p->bits % 8;
	if (memcmp(b, p->b, (size_t)full) != 0)
		return false;
	if (rest) {
		unsigned char m = (unsigned char)(0xff << (8 - rest));
		if ((b[full] & m) != (p->b[full] & m))
			return false;
	}
	return true;
}

/* "1.2.3.4:5" or "[::1]:5" -> the address part (pointer and length). */
static void host_of(const char *hp, const char **h, size_t *n)
{
	*h = hp;
	if (hp[0] == '[') {
		const char *rb = strchr(hp, ']');
		*h = hp + 1;
		*n = rb ? (size_t)(rb - hp - 1) : strlen(hp + 1);
		return;
	}
	const char *c = strchr(hp, ':');
	if (c && !strchr(c + 1, ':'))
		*n = (size_t)(c - hp);
	else
		*n = strlen(hp);
}

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

/* ----------------------------------------------------- connection joins */

/* What a decision said about a connection, kept until its close record. */
struct conn_info {
	uint64_t id;
	bool used;
	bool matched;
	bool allow;
	char *user, *client, *dst;
};

struct conns {
	struct conn_info *v;
	size_t n, cap;
};

static void conn_info_clear(struct conn_info *c)
{
	free(c->user);
	free(c->client);
	free(c->dst);
	memset(c, 0, sizeof *c);
}

static struct conn_info *conns_find(struct conns *cs, uint64_t id, bool create)
{
	if (create && cs->n * 2 >= cs->cap) {
		size_t cap = cs->cap ? cs->cap * 2 : 256;
		struct conn_info *v = calloc(cap, sizeof *v);
		if (!v) {
			fprintf(stderr, "tailfence audit: out of memory\n");
			exit(2);
		}
		for (size_t i = 0; i < cs->cap; i++) {
			if (!cs->v[i].used)
				continue;
			size_t j = (cs->v[i].id * 0x9e3779b97f4a7c15ull) & (cap - 1);
			while (v[j].used)
				j = (j + 1) & (cap - 1);
			v[j] = cs->v[i];
		}
		free(cs->v);
		cs->v = v;
		cs->cap = cap;
	}
	if (!cs->cap)
		return NULL;
	size_t j = (id * 0x9e3779b97f4a7c15ull) & (cs->cap - 1);
	while (cs->v[j].used) {
		if (cs->v[j].id == id)
			return &cs->v[j];
		j = (j + 1) & (cs->cap - 1);
	}
	if (!create)
		return NULL;
	cs->v[j].used = true;
	cs->v[j].id = id;
	cs->n++;
	return &cs->v[j];
}

/* Removes an entry, re-inserting the rest of its cluster. */
static void conns_remove(struct conns *cs, struct conn_info *c)
{
	size_t j = (size_t)(c - cs->v);
	conn_info_clear(c);
	cs->n--;
	for (size_t k = (j + 1) & (cs->cap - 1); cs->v[k].used; k = (k + 1) & (cs->cap - 1)) {
		struct conn_info tmp = cs->v[k];
		memset(&cs->v[k], 0, sizeof cs->v[k]);
		cs->n--;
		struct conn_info *d = conns_find(cs, tmp.id, true);
		*d = tmp;
	}
}

static void conns_free(struct conns *cs)
{
	for (size_t i = 0; i < cs->cap; i++)
		if (cs->v[i].used)
			conn_info_clear(&cs->v[i]);
	free(cs->v);
	memset(cs, 0, sizeof *cs);
}

/* --------------------------------------------------------------- filters */

struct review {
	bool has_since, has_until;
	int64_t since, until;
	const char *user, *verdict, *proto, *dst_host;
	bool has_client, has_dst_pfx;
	struct pfx client, dst;
	bool conn_filters;
	bool json;
	unsigned long bad_lines;

	struct conns conns;
	/* summary */
	bool summary;
	uint64_t n_allow, n_deny, n_close, up, down;
	struct agg by_dst, by_user, by_client, deny_client, deny_target, hours;
	char first_ts[40], last_ts[40];
	/* unclean shutdowns: a start while a run was still going (no shutdown
	 * record since its records), or right after a recovery record */
	bool run_open, recovered;
	unsigned n_unclean;
	uint64_t n_unclosed;		/* connections the recovery records name */
	char unclean_ts[5][40];		/* the restarts, first few */
};

static const char *jstr(const cJSON *o, const char *k)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsString(j) ? j->valuestring : NULL;
}

static double jnum(const cJSON *o, const char *k)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNumber(j) ? j->valuedouble : 0;
}

static bool host_matches(const char *pattern, const char *host)
{
	if (!host)
		return false;
	if (pattern[0] == '*' && pattern[1] == '.')
		pattern++;
	if (pattern[0] == '.') {
		size_t hl = strlen(host), pl = strlen(pattern);
		return (hl > pl && strcasecmp(host + hl - pl, pattern) == 0) ||
		       strcasecmp(host, pattern + 1) == 0;
	}
	return strcasecmp(host, pattern) == 0;
}

/* Does a decision record pass the connection filters? */
static bool decision_matches(const struct review *r, const cJSON *o)
{
	const char *user = jstr(o, "user"), *client = jstr(o, "client");
	const char *host = jstr(o, "host"), *addr = jstr(o, "addr");
	if (r->user && (!user || strcmp(user, r->user) != 0))
		return false;
	if (r->verdict && (!jstr(o, "verdict") || strcmp(jstr(o, "verdict"), r->verdict) != 0))
		return false;
	if (r->proto && (!jstr(o, "proto") || strcasecmp(jstr(o, "proto"), r->proto) != 0))
		return false;
	if (r->has_client) {
		const char *h;
		size_t n;
		if (!client)
			return false;
		host_of(client, &h, &n);
		if (!pfx_match(&r->client, h, n))
			return false;
	}
	if (r->has_dst_pfx) {
		bool m = (addr && pfx_match(&r->dst, addr, strlen(addr))) ||
			 (host && pfx_match(&r->dst, host, strlen(host)));
		if (!m)
			return false;
	}
	if (r->dst_host && !host_matches(r->dst_host, host))
		return false;
	return true;
}

static void fmt_bytes(uint64_t n, char *out, size_t len)
{
	static const char *const u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double d = (double)n;
	int i = 0;
	while (d >= 1024 && i < 4) {
		d /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(out, len, "%" PRIu64 " B", n);
	else
		snprintf(out, len, "%.1f %s", d, u[i]);
}

static void fmt_dst(const cJSON *o, char *out, size_t len)
{
	const char *host = jstr(o, "host");
	int port = (int)jnum(o, "port");
	if (!host)
		host = "-";
	if (strchr(host, ':'))
		snprintf(out, len, "[%s]:%d", host, port);
	else
		snprintf(out, len, "%s:%d", host, port);
}

static void client_ip(const char *client, char *out, size_t len)
{
	const char *h;
	size_t n;
	if (!client) {
		snprintf(out, len, "-");
		return;
	}
	host_of(client, &h, &n);
	snprintf(out, len, "%.*s", (int)n, h);
}

static char *dup_or_dash(const char *s)
{
	return strdup(s ? s : "-");
}

static void print_table_header(void)
{
	printf("%-24s %6s %-9s %-22s %-10s %-12s %-30s %-7s %s\n", "TIME", "CONN",
	       "TYPE", "CLIENT", "USER", "PROTO", "DESTINATION", "VERDICT", "RULE / DETAIL");
}

static void print_row(const cJSON *o, const char *type, const struct conn_info *ci)
{
	const char *ts = jstr(o, "ts");
	if (!ts)
		ts = "-";
	if (strcmp(type, "decision") == 0) {
		char dst[300], why[300];
		fmt_dst(o, dst, sizeof dst);
		const char *addr = jstr(o, "addr"), *host = jstr(o, "host");
		if (addr && host && strcmp(addr, host) != 0) {
			size_t l = strlen(dst);
			snprintf(dst + l, sizeof dst - l, " (%s)", addr);
		}
		const char *rule = jstr(o, "rule"), *guard = jstr(o, "guard");
		if (guard)
			snprintf(why, sizeof why, "guard %s", guard);
		else if (rule)
			snprintf(why, sizeof why, "rule %s", rule);
		else
			snprintf(why, sizeof why, "%s", jstr(o, "reason") ? jstr(o, "reason") : "-");
		printf("%-24s %6.0f %-9s %-22s %-10s %-12s %-30s %-7s %s\n", ts,
		       jnum(o, "conn"), "decision",
		       jstr(o, "client") ? jstr(o, "client") : "-",
		       jstr(o, "user") ? jstr(o, "user") : "-",
		       jstr(o, "proto") ? jstr(o, "proto") : "-", dst,
		       jstr(o, "verdict") ? jstr(o, "verdict") : "-", why);
	} else if (strcmp(type, "close") == 0) {
		char up[32], down[32], dur[32], detail[400];
		fmt_bytes((uint64_t)jnum(o, "bytes_up"), up, sizeof up);
		fmt_bytes((uint64_t)jnum(o, "bytes_down"), down, sizeof down);
		snprintf(dur, sizeof dur, "%.3f s", jnum(o, "duration_ms") / 1000.0);
		const char *end = jstr(o, "end"), *err = jstr(o, "error");
		snprintf(detail, sizeof detail, "up %s, down %s, %s, %s%s%s", up, down, dur,
			 end ? end : "-", err ? ": " : "", err ? err : "");
		printf("%-24s %6.0f %-9s %-22s %-10s %-12s %-30s %-7s %s\n", ts,
		       jnum(o, "conn"), "close", ci && ci->client ? ci->client : "",
		       ci && ci->user ? ci->user : "", "", ci && ci->dst ? ci->dst : "", "",
		       detail);
	} else {
		const char *detail = jstr(o, "detail");
		if (!detail)
			detail = jstr(o, "reason");
		if (!detail)
			detail = jstr(o, "error");
		printf("%-24s %6s %-9s %s\n", ts, "", type, detail ? detail : "");
	}
}

static void summary_add_decision(struct review *r, const cJSON *o)
{
	char dst[300], cl[64];
	fmt_dst(o, dst, sizeof dst);
	client_ip(jstr(o, "client"), cl, sizeof cl);
	const char *ts = jstr(o, "ts");
	if (ts && strlen(ts) >= 13) {
		char hour[32];
		snprintf(hour, sizeof hour, "%.13s:00Z", ts);
		agg_get(&r->hours, hour)->n++;
	}
	if (jstr(o, "verdict") && strcmp(jstr(o, "verdict"), "allow") == 0) {
		r->n_allow++;
		agg_get(&r->by_dst, dst)->n++;
		agg_get(&r->by_user, jstr(o, "user") ? jstr(o, "user") : "-")->n++;
		agg_get(&r->by_client, cl)->n++;
	} else {
		r->n_deny++;
		agg_get(&r->deny_client, cl)->n++;
		agg_get(&r->deny_target, dst)->n++;
	}
}

static void summary_add_close(struct review *r, const cJSON *o, const struct conn_info *ci)
{
	uint64_t up = (uint64_t)jnum(o, "bytes_up"), down = (uint64_t)jnum(o, "bytes_down");
	r->n_close++;
	r->up += up;
	r->down += down;
	if (!ci || !ci->allow)
		return;
	struct stat_row *s;
	s = agg_get(&r->by_dst, ci->dst);
	s->up += up, s->down += down;
	s = agg_get(&r->by_user, ci->user);
	s->up += up, s->down += down;
	s = agg_get(&r->by_client, ci->client);
	s->up += up, s->down += down;
}

/* Follows the daemon's runs: a start while the previous run never wrote its
 * shutdown record is an unclean shutdown (killed, crashed, power lost). */
static void review_lifecycle(struct review *r, const cJSON *o, const char *type)
{
	if (strcmp(type, "start") == 0) {
		if (r->run_open || r->recovered) {
			if (r->n_unclean < 5) {
				const char *ts = jstr(o, "ts");
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
	const char *type = jstr(o, "type");
	const char *ts = jstr(o, "ts");
	if (!type)
		type = "?";
	int64_t t;
	bool has_t = ts && audit_time_parse(ts, strlen(ts), &t);
	bool in_time = !((r->has_since && (!has_t || t < r->since)) ||
			 (r->has_until && (!has_t || t >= r->until)));

	if (strcmp(type, "start") == 0) {
		/* Connection ids restart with the daemon. */
		conns_free(&r->conns);
	}
	if (in_time)
		review_lifecycle(r, o, type);
	bool show;
	struct conn_info *ci = NULL;
	if (strcmp(type, "decision") == 0) {
		uint64_t id = (uint64_t)jnum(o, "conn");
		bool m = decision_matches(r, o);
		show = m && in_time;
		if (m) {
			ci = conns_find(&r->conns, id, true);
			conn_info_clear(ci);
			ci->used = true;
			ci->id = id;
			ci->matched = true;
			ci->allow = jstr(o, "verdict") && strcmp(jstr(o, "verdict"), "allow") == 0;
			ci->user = dup_or_dash(jstr(o, "user"));
			char cl[64], dst[300];
			client_ip(jstr(o, "client"), cl, sizeof cl);
			fmt_dst(o, dst, sizeof dst);
			ci->client = strdup(cl);
			ci->dst = strdup(dst);
		}
		if (show && r->summary)
			summary_add_decision(r, o);
	} else if (strcmp(type, "close") == 0) {
		ci = conns_find(&r->conns, (uint64_t)jnum(o, "conn"), false);
		show = in_time && (ci ? ci->matched : !r->conn_filters);
		if (show && r->summary)
			summary_add_close(r, o, ci);
	} else {
		show = in_time && !r->conn_filters;
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
		conns_remove(&r->conns, ci);
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
	printf("\n%s\n", title);
	if (a->n == 0) {
		printf("  (none)\n");
		return;
	}
	struct stat_row *rows = malloc(a->n * sizeof *rows);
	size_t k = 0;
	for (size_t i = 0; i < a->cap; i++)
		if (a->rows[i].key)
			rows[k++] = a->rows[i];
	qsort(rows, k, sizeof *rows, cmp_rows_n);
	if (bytes)
		printf("  %-40s %8s %12s %12s\n", col, "CONNS", "BYTES UP", "BYTES DOWN");
	else
		printf("  %-40s %8s\n", col, "COUNT");
	for (size_t i = 0; i < k && i < limit; i++) {
		if (bytes) {
			char up[32], down[32];
			fmt_bytes(rows[i].up, up, sizeof up);
			fmt_bytes(rows[i].down, down, sizeof down);
			printf("  %-40s %8" PRIu64 " %12s %12s\n", rows[i].key, rows[i].n, up, down);
		} else {
			printf("  %-40s %8" PRIu64 "\n", rows[i].key, rows[i].n);
		}
	}
	if (k > limit)
		printf("  ... %zu more\n", k - limit);
	free(rows);
}

static void print_summary(struct review *r, size_t limit)
{
	char up[32], down[32];
	fmt_bytes(r->up, up, sizeof up);
	fmt_bytes(r->down, down, sizeof down);
	printf("Period: %s .. %s\n", r->first_ts[0] ? r->first_ts : "-",
	       r->last_ts[0] ? r->last_ts : "-");
	printf("Connections: %" PRIu64 " allowed, %" PRIu64 " denied, %" PRIu64
	       " closed; %s up, %s down\n", r->n_allow, r->n_deny, r->n_close, up, down);
	if (r->n_unclean) {
		printf("Unclean shutdowns: %u (the daemon was killed or crashed: records it had not "
		       "written yet may be missing); %" PRIu64 " connection(s) left without a close "
		       "record (recovery records)\n", r->n_unclean, r->n_unclosed);
		for (unsigned i = 0; i < r->n_unclean && i < 5; i++)
			printf("  restarted at %s\n", r->unclean_ts[i]);
		if (r->n_unclean > 5)
			printf("  ... %u more\n", r->n_unclean - 5);
	}
	print_agg("Allowed connections by destination", "DESTINATION", &r->by_dst, true, limit);
	print_agg("Allowed connections by user", "USER", &r->by_user, true, limit);
	print_agg("Allowed connections by client", "CLIENT", &r->by_client, true, limit);
	print_agg("Denied attempts by client", "CLIENT", &r->deny_client, false, limit);
	print_agg("Denied attempts by target", "TARGET", &r->deny_target, false, limit);
	print_agg("Busiest hours (decisions)", "HOUR (UTC)", &r->hours, false, 5);
	if (r->bad_lines)
		printf("\n%lu lines were not JSON records and were skipped\n", r->bad_lines);
}

/* ----------------------------------------------------------- arguments */

/* --since/--until: RFC 3339, a date, or a duration ago ("90m", "2h", "7d"). */
static bool parse_when(const char *s, int64_t *ms)
{
	if (audit_time_parse(s, strlen(s), ms))
		return true;
	char *end;
	errno = 0;
	long long n = strtoll(s, &end, 10);
	if (end == s || n < 0 || errno)
		return false;
	int64_t unit;
	if (strcmp(end, "s") == 0)
		unit = 1000;
	else if (strcmp(end, "m") == 0)
		unit = 60000;
	else if (strcmp(end, "h") == 0)
		unit = 3600000;
	else if (strcmp(end, "d") == 0)
		unit = 86400000;
	else
		return false;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	*ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - n * unit;
	return true;
}

static const char review_usage[] =
	"usage: tailfence audit [FILTERS] [--json] [FILE...]\n"
	"       tailfence audit summary [FILTERS] [--top N] [FILE...]\n"
	"       tailfence audit verify [--strict] --key KEYFILE FILE...\n"
	"       tailfence audit tail [FILTERS] [--json] [-n N] FILE\n"
	"\n"
	"Reads audit records (JSON lines; gzip-compressed files too; stdin when no\n"
	"FILE) and prints the matching ones as a table, or as JSON lines with --json.\n"
	"\n"
	"Filters (all must match; close records follow their connection's decision):\n"
	"  --since T          records at or after T (RFC 3339, YYYY-MM-DD, or 30m/2h/7d ago)\n"
	"  --until T          records before T\n"
	"  --user U           authenticated user U\n"
	"  --client PREFIX    client address in PREFIX (127.0.0.1, 127.0.0.0/24, ::1)\n"
	"  --dst PREFIX|HOST  destination address in PREFIX, or requested host HOST\n"
	"                     (.example.com or *.example.com: that domain and below)\n"
	"  --verdict V        allow or deny\n"
	"  --proto P          socks5, socks4, socks4a, http-connect, http\n"
	"\n"
	"Exit status: 0 success, 2 error.\n";

enum { OPT_SINCE = 256, OPT_UNTIL, OPT_USER, OPT_CLIENT, OPT_DST, OPT_VERDICT,
       OPT_PROTO, OPT_JSON, OPT_TOP, OPT_HELP };

static const struct option review_opts[] = {
	{ "since", required_argument, NULL, OPT_SINCE },
	{ "until", required_argument, NULL, OPT_UNTIL },
	{ "user", required_argument, NULL, OPT_USER },
	{ "client", required_argument, NULL, OPT_CLIENT },
	{ "dst", required_argument, NULL, OPT_DST },
	{ "verdict", required_argument, NULL, OPT_VERDICT },
	{ "proto", required_argument, NULL, OPT_PROTO },
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
		switch (c) {
		case OPT_SINCE:
		case OPT_UNTIL: {
			int64_t ms;
			if (!parse_when(optarg, &ms)) {
				fprintf(stderr, "tailfence %s: --%s \"%s\": expected an RFC 3339 time (2024-05-01T12:00:00Z), a date (2024-05-01) or a duration ago (30m, 2h, 7d)\n",
					cmd, c == OPT_SINCE ? "since" : "until", optarg);
				return 2;
			}
			if (c == OPT_SINCE)
				r->has_since = true, r->since = ms;
			else
				r->has_until = true, r->until = ms;
			break;
		}
		case OPT_USER:
			r->user = optarg;
			r->conn_filters = true;
			break;
		case OPT_CLIENT:
			if (!pfx_parse(optarg, &r->client)) {
				fprintf(stderr, "tailfence %s: --client \"%s\": expected an address or prefix (127.0.0.0/24, ::1)\n",
					cmd, optarg);
				return 2;
			}
			r->has_client = r->conn_filters = true;
			break;
		case OPT_DST:
			if (pfx_parse(optarg, &r->dst))
				r->has_dst_pfx = true;
			else if (strchr(optarg, '/') || !*optarg) {
				fprintf(stderr, "tailfence %s: --dst \"%s\": not a valid prefix or host name\n",
					cmd, optarg);
				return 2;
			} else
				r->dst_host = optarg;
			r->conn_filters = true;
			break;
		case OPT_VERDICT:
			if (strcmp(optarg, "allow") != 0 && strcmp(optarg, "deny") != 0) {
				fprintf(stderr, "tailfence %s: --verdict \"%s\": expected allow or deny\n",
					cmd, optarg);
				return 2;
			}
			r->verdict = optarg;
			r->conn_filters = true;
			break;
		case OPT_PROTO:
			r->proto = optarg;
			r->conn_filters = true;
			break;
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
	if (r->has_since && r->has_until && r->until <= r->since) {
		fprintf(stderr, "tailfence %s: --until is not after --since\n", cmd);
		return 2;
	}
	return -1;
}

static void review_free(struct review *r)
{
	conns_free(&r->conns);
	agg_free(&r->by_dst);
	agg_free(&r->by_user);
	agg_free(&r->by_client);
	agg_free(&r->deny_client);
	agg_free(&r->deny_target);
	agg_free(&r->hours);
}

static int review_files(struct review *r, int nfiles, char **files, const char *cmd)
{
	static char *dash[] = { (char *)"-" };
	if (nfiles == 0) {
		nfiles = 1;
		files = dash;
	}
	struct line l = { 0 };
	int rc = 0;
	for (int i = 0; i < nfiles; i++) {
		gzFile f = open_input(files[i]);
		if (!f) {
			fprintf(stderr, "tailfence %s: cannot open \"%s\": %s\n", cmd, files[i],
				strerror(errno ? errno : ENOMEM));
			rc = 2;
			continue;
		}
		while (read_line(f, &l))
			review_line(r, l.p, l.len);
		int zerr;
		const char *msg = gzerror(f, &zerr);
		if (zerr != Z_OK && zerr != Z_BUF_ERROR) {
			fprintf(stderr, "tailfence %s: \"%s\": %s\n", cmd, files[i],
				zerr == Z_ERRNO ? strerror(errno) : msg);
			rc = 2;
		}
		gzclose(f);
	}
	free(l.p);
	return rc;
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
	rc = review_files(&r, argc - optind, argv + optind, cmd);
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
	struct line l = { 0 };
	int rc = -1;
	for (int i = optind; i < argc && rc < 0; i++) {
		gzFile f = open_input(argv[i]);
		if (!f) {
			fprintf(stderr, "tailfence audit verify: cannot open \"%s\": %s\n", argv[i],
				strerror(errno ? errno : ENOMEM));
			rc = 2;
			break;
		}
		unsigned long lineno = 0;
		while (read_line(f, &l)) {
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

static void feed_chunk(struct review *r, struct line *acc, const char *p, size_t n)
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
	struct line acc = { 0 };
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
	}
	return cmd_review(argc, argv, false);
}
