/*
 * audit_read: reading the audit trail back for review. Owns the input
 * files (plain or gzip, in order), the review filters and their options,
 * and the close-to-decision join; used by `tailfence audit` (audit_cli.c)
 * and `tailfence audit report` (audit_report.c).
 */
#include "tailfence/audit_read.h"
#include "tailfence/text.h"

#include "tailfence/audit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ line input */

bool audit_read_next(gzFile f, struct audit_read_line *l)
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

gzFile audit_read_open(const char *path)
{
	errno = 0;
	if (strcmp(path, "-") == 0)
		return gzdopen(dup(STDIN_FILENO), "rb");
	return gzopen(path, "rb");
}

int audit_read_files(int nfiles, char **files, const char *cmd, audit_read_fn fn,
		     void *ctx)
{
	static char *dash[] = { (char *)"-" };
	if (nfiles == 0) {
		nfiles = 1;
		files = dash;
	}
	struct audit_read_line l = { 0 };
	int rc = 0;
	for (int i = 0; i < nfiles; i++) {
		gzFile f = audit_read_open(files[i]);
		if (!f) {
			fprintf(stderr, "tailfence %s: cannot open \"%s\": %s\n", cmd, files[i],
				strerror(errno ? errno : ENOMEM));
			rc = 2;
			continue;
		}
		struct audit_read_src src = { .file = files[i], .index = i, .count = nfiles,
					      .gz = f };
		while (audit_read_next(f, &l)) {
			src.lineno++;
			fn(ctx, &src, l.p, l.len, l.terminated);
		}
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

/* -------------------------------------------------------------- prefixes */

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

static bool pfx_parse(const char *s, struct audit_read_pfx *p)
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
	if (!text_is_digit(slash[1]))
		return false;
	long bits = strtol(slash + 1, &end, 10);
	if (*end || bits < 0 || bits > max)
		return false;
	p->bits = (int)bits;
	return true;
}

static bool pfx_match(const struct audit_read_pfx *p, const char *addr, size_t n)
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

/* ------------------------------------------------------ record accessors */

const char *audit_read_str(const cJSON *o, const char *k)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsString(j) ? j->valuestring : NULL;
}

double audit_read_num(const cJSON *o, const char *k)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNumber(j) ? j->valuedouble : 0;
}

uint64_t audit_read_u64(const cJSON *o, const char *k)
{
	double v = audit_read_num(o, k);
	if (!(v > 0))
		return 0;
	if (v >= 18446744073709551616.0)
		return UINT64_MAX;
	return (uint64_t)v;
}

void audit_read_dst(const cJSON *o, char *out, size_t len)
{
	const char *host = audit_read_str(o, "host");
	uint64_t port = audit_read_u64(o, "port");
	if (!host)
		host = "-";
	if (strchr(host, ':'))
		snprintf(out, len, "[%s]:%" PRIu64, host, port);
	else
		snprintf(out, len, "%s:%" PRIu64, host, port);
}

void audit_read_client_ip(const char *client, char *out, size_t len)
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

void audit_read_fmt_bytes(uint64_t n, char *out, size_t len)
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

void audit_read_fmt_time(int64_t ms, char *out, size_t len)
{
	int64_t s = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
	int frac = (int)(ms - s * 1000);
	time_t t = (time_t)s;
	struct tm tm;
	if (!gmtime_r(&t, &tm)) {
		snprintf(out, len, "-");
		return;
	}
	snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

/* ----------------------------------------------------------------- times */

static bool digits(const char *s, size_t n, int *out)
{
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!text_is_digit(s[i]))
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

bool audit_read_time_parse(const char *s, size_t len, int64_t *ms)
{
	int y, mo, d, h = 0, mi = 0, sec = 0, frac = 0;
	if (len < 10 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
	    s[7] != '-' || !digits(s + 8, 2, &d))
		return false;
	size_t i = 10;
	int64_t offset_min = 0;
	if (i < len) {
		if (s[i] != 'T' && s[i] != 't' && s[i] != ' ')
			return false;
		i++;
		if (len - i < 5 || !digits(s + i, 2, &h) || s[i + 2] != ':' ||
		    !digits(s + i + 3, 2, &mi))
			return false;
		i += 5;
		if (i < len && s[i] == ':') {
			if (len - i < 3 || !digits(s + i + 1, 2, &sec))
				return false;
			i += 3;
			if (i < len && s[i] == '.') {
				i++;
				size_t nd = 0;
				while (i < len && text_is_digit(s[i])) {
					if (nd < 3)
						frac = frac * 10 + (s[i] - '0');
					nd++;
					i++;
				}
				if (nd == 0)
					return false;
				for (; nd < 3; nd++)
					frac *= 10;
			}
		}
		if (i < len) {
			if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == len) {
				i++;
			} else if ((s[i] == '+' || s[i] == '-') && len - i == 6 &&
				   s[i + 3] == ':') {
				int oh, om;
				if (!digits(s + i + 1, 2, &oh) || !digits(s + i + 4, 2, &om) ||
				    oh > 23 || om > 59)
					return false;
				offset_min = (s[i] == '+' ? 1 : -1) * (oh * 60 + om);
				i = len;
			} else {
				return false;
			}
		}
	}
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 ||
	    sec > 60)
		return false;
	int64_t days = days_from_civil(y, mo, d);
	*ms = ((days * 86400 + h * 3600 + mi * 60 + sec) - offset_min * 60) * 1000 + frac;
	return true;
}

/* --------------------------------------------------------------- filters */

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

bool audit_read_decision_matches(const struct audit_read_filter *f, const cJSON *o)
{
	const char *user = audit_read_str(o, "user"), *client = audit_read_str(o, "client");
	const char *host = audit_read_str(o, "host"), *addr = audit_read_str(o, "addr");
	const char *verdict = audit_read_str(o, "verdict"), *proto = audit_read_str(o, "proto");
	if (f->user && (!user || strcmp(user, f->user) != 0))
		return false;
	if (f->verdict && (!verdict || strcmp(verdict, f->verdict) != 0))
		return false;
	if (f->proto && (!proto || strcasecmp(proto, f->proto) != 0))
		return false;
	if (f->has_client) {
		const char *h;
		size_t n;
		if (!client)
			return false;
		host_of(client, &h, &n);
		if (!pfx_match(&f->client, h, n))
			return false;
	}
	if (f->has_dst_pfx) {
		bool m = (addr && pfx_match(&f->dst, addr, strlen(addr))) ||
			 (host && pfx_match(&f->dst, host, strlen(host)));
		if (!m)
			return false;
	}
	if (f->dst_host && !host_matches(f->dst_host, host))
		return false;
	const char *dir = audit_read_str(o, "direction");
	bool inbound = dir && strcmp(dir, "inbound") == 0;
	if (f->direction && inbound != (strcmp(f->direction, "inbound") == 0))
		return false;
	if (f->tailnet_user) {
		const char *tu = audit_read_str(o, "tailnet_user");
		if (!tu || strcasecmp(tu, f->tailnet_user) != 0)
			return false;
	}
	return true;
}

bool audit_read_in_time(const struct audit_read_filter *f, const cJSON *o, int64_t *t,
			bool *has_t)
{
	const char *ts = audit_read_str(o, "ts");
	int64_t ms = 0;
	bool ok = ts && audit_read_time_parse(ts, strlen(ts), &ms);
	if (t)
		*t = ms;
	if (has_t)
		*has_t = ok;
	return !((f->has_since && (!ok || ms < f->since)) ||
		 (f->has_until && (!ok || ms >= f->until)));
}

/* --since/--until values: RFC 3339, a date, or a duration ago ("90m", "2h",
 * "7d"), into ms since the epoch. */
static bool audit_read_parse_when(const char *s, int64_t *ms)
{
	if (audit_read_time_parse(s, strlen(s), ms))
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

int audit_read_filter_option(struct audit_read_filter *f, int opt, char *arg,
			     const char *cmd)
{
	switch (opt) {
	case AUDIT_READ_OPT_SINCE:
	case AUDIT_READ_OPT_UNTIL: {
		int64_t ms;
		bool since = opt == AUDIT_READ_OPT_SINCE;
		if (!audit_read_parse_when(arg, &ms)) {
			fprintf(stderr, "tailfence %s: --%s \"%s\": expected an RFC 3339 time (2024-05-01T12:00:00Z), a date (2024-05-01) or a duration ago (30m, 2h, 7d)\n",
				cmd, since ? "since" : "until", arg);
			return -1;
		}
		if (since)
			f->has_since = true, f->since = ms;
		else
			f->has_until = true, f->until = ms;
		return 1;
	}
	case AUDIT_READ_OPT_USER:
		f->user = arg;
		break;
	case AUDIT_READ_OPT_CLIENT:
		if (!pfx_parse(arg, &f->client)) {
			fprintf(stderr, "tailfence %s: --client \"%s\": expected an address or prefix (127.0.0.0/24, ::1)\n",
				cmd, arg);
			return -1;
		}
		f->has_client = true;
		break;
	case AUDIT_READ_OPT_DST:
		if (pfx_parse(arg, &f->dst)) {
			f->has_dst_pfx = true;
		} else if (strchr(arg, '/') || !*arg) {
			fprintf(stderr, "tailfence %s: --dst \"%s\": not a valid prefix or host name\n",
				cmd, arg);
			return -1;
		} else {
			f->dst_host = arg;
		}
		break;
	case AUDIT_READ_OPT_VERDICT:
		if (strcmp(arg, "allow") != 0 && strcmp(arg, "deny") != 0) {
			fprintf(stderr, "tailfence %s: --verdict \"%s\": expected allow or deny\n",
				cmd, arg);
			return -1;
		}
		f->verdict = arg;
		break;
	case AUDIT_READ_OPT_PROTO:
		f->proto = arg;
		break;
	case AUDIT_READ_OPT_DIRECTION:
		if (strcmp(arg, "inbound") != 0 && strcmp(arg, "outbound") != 0) {
			fprintf(stderr, "tailfence %s: --direction \"%s\": expected inbound or outbound\n",
				cmd, arg);
			return -1;
		}
		f->direction = arg;
		break;
	case AUDIT_READ_OPT_TAILNET_USER:
		f->tailnet_user = arg;
		break;
	default:
		return 0;
	}
	f->conn_filters = true;
	return 1;
}

bool audit_read_filter_check(const struct audit_read_filter *f, const char *cmd)
{
	if (f->has_since && f->has_until && f->until <= f->since) {
		fprintf(stderr, "tailfence %s: --until is not after --since\n", cmd);
		return false;
	}
	return true;
}

/* ----------------------------------------------------- connection joins */

static size_t conn_slot(uint64_t id, size_t cap)
{
	return (size_t)(id * 0x9e3779b97f4a7c15ull) & (cap - 1);
}

static void conn_clear(struct audit_read_conn *c)
{
	free(c->user);
	free(c->client);
	free(c->dst);
	free(c->service);
	free(c->tailnet_user);
	free(c->tailnet_addr);
	memset(c, 0, sizeof *c);
}

static void conns_grow(struct audit_read_conns *cs)
{
	size_t cap = cs->cap ? cs->cap * 2 : 256;
	struct audit_read_conn *v = calloc(cap, sizeof *v);
	if (!v) {
		fprintf(stderr, "tailfence audit: out of memory\n");
		exit(2);
	}
	for (size_t i = 0; i < cs->cap; i++) {
		if (!cs->v[i].used)
			continue;
		size_t j = conn_slot(cs->v[i].id, cap);
		while (v[j].used)
			j = (j + 1) & (cap - 1);
		v[j] = cs->v[i];
	}
	free(cs->v);
	cs->v = v;
	cs->cap = cap;
}

/* The slot of id: its entry, or the free slot where it would go. */
static struct audit_read_conn *conns_slot(struct audit_read_conns *cs, uint64_t id)
{
	size_t j = conn_slot(id, cs->cap);
	while (cs->v[j].used && cs->v[j].id != id)
		j = (j + 1) & (cs->cap - 1);
	return &cs->v[j];
}

struct audit_read_conn *audit_read_conns_get(struct audit_read_conns *cs, uint64_t id)
{
	if (!cs->cap)
		return NULL;
	struct audit_read_conn *c = conns_slot(cs, id);
	return c->used ? c : NULL;
}

static char *dup_or_dash(const char *s)
{
	char *d = strdup(s ? s : "-");
	if (!d) {
		fprintf(stderr, "tailfence audit: out of memory\n");
		exit(2);
	}
	return d;
}

struct audit_read_conn *audit_read_conns_put(struct audit_read_conns *cs,
					     const cJSON *decision)
{
	uint64_t id = audit_read_u64(decision, "conn");
	struct audit_read_conn *c = audit_read_conns_get(cs, id);
	if (!c) {
		if (cs->max && cs->n >= cs->max) {
			cs->dropped++;
			return NULL;
		}
		if (cs->n * 2 >= cs->cap)
			conns_grow(cs);
		c = conns_slot(cs, id);
		cs->n++;
	}
	conn_clear(c);
	c->used = true;
	c->id = id;
	const char *verdict = audit_read_str(decision, "verdict");
	c->allow = verdict && strcmp(verdict, "allow") == 0;
	c->target = audit_read_str(decision, "host") || audit_read_str(decision, "addr");
	char cl[64], dst[300];
	audit_read_client_ip(audit_read_str(decision, "client"), cl, sizeof cl);
	audit_read_dst(decision, dst, sizeof dst);
	c->user = dup_or_dash(audit_read_str(decision, "user"));
	c->client = dup_or_dash(cl);
	c->dst = dup_or_dash(dst);
	const char *dir = audit_read_str(decision, "direction");
	if (dir && strcmp(dir, "inbound") == 0) {
		c->inbound = true;
		c->service = dup_or_dash(audit_read_str(decision, "service"));
		c->tailnet_user = dup_or_dash(audit_read_str(decision, "tailnet_user"));
		c->tailnet_addr = dup_or_dash(audit_read_str(decision, "tailnet_addr"));
	}
	return c;
}

/* Removes an entry, re-inserting the rest of its cluster. */
void audit_read_conns_remove(struct audit_read_conns *cs, struct audit_read_conn *c)
{
	size_t j = (size_t)(c - cs->v);
	conn_clear(c);
	cs->n--;
	for (size_t k = (j + 1) & (cs->cap - 1); cs->v[k].used; k = (k + 1) & (cs->cap - 1)) {
		struct audit_read_conn tmp = cs->v[k];
		memset(&cs->v[k], 0, sizeof cs->v[k]);
		*conns_slot(cs, tmp.id) = tmp;
	}
}

void audit_read_conns_clear(struct audit_read_conns *cs)
{
	for (size_t i = 0; i < cs->cap; i++)
		if (cs->v[i].used)
			conn_clear(&cs->v[i]);
	free(cs->v);
	cs->v = NULL;
	cs->n = cs->cap = 0;
}
