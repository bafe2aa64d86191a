/*
 * audit_report: `tailfence audit report`. Owns the streaming aggregation of
 * audit records into the report's figures (bounded tables, the timeline,
 * lifecycle events, the busiest/longest lists, new destinations) and the
 * escaping of record text for HTML and JSON. The command line is
 * audit_report_cli.c, the outputs audit_report_html.c and
 * audit_report_json.c; inputs and filters come from audit_read.c, the
 * chain verifier from audit_verify.c.
 */
#include "tailfence/audit_report.h"

#include "tailfence/audit.h"

#include <cjson/cJSON.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#define KEY_CAP 320		/* bytes kept of a key part: user, destination, rule, ... */
#define NOTE_CAP 512		/* bytes kept of a reason or detail */
#define DAY_MS 86400000LL

/* ------------------------------------------------------------ allocation */

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);
	if (!p) {
		fprintf(stderr, "tailfence audit report: out of memory\n");
		exit(2);
	}
	return p;
}

/* A copy of s cut to at most cap bytes (then ending in "..."); NULL for NULL. */
static char *dup_cap(const char *s, size_t cap)
{
	if (!s)
		return NULL;
	size_t n = strlen(s);
	bool cut = n > cap;
	if (cut)
		n = cap;
	char *d = xcalloc(1, n + 4);
	memcpy(d, s, n);
	if (cut)
		memcpy(d + n, "...", 4);
	return d;
}

/* ------------------------------------------------------------- text: UTF-8 */

/* Length of the well-formed UTF-8 sequence at s (at most len bytes) and its
 * code point, or 0 when the first byte does not start one. */
static size_t utf8_next(const unsigned char *s, size_t len, uint32_t *cp)
{
	unsigned char c = s[0];
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf;
	if (c < 0x80) {
		*cp = c;
		return 1;
	} else if (c >= 0xc2 && c <= 0xdf) {
		n = 2, *cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3, *cp = c & 0x0f;
		if (c == 0xe0)
			lo = 0xa0;
		if (c == 0xed)
			hi = 0x9f;	/* no surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4, *cp = c & 0x07;
		if (c == 0xf0)
			lo = 0x90;
		if (c == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (len < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		*cp = (*cp << 6) | (s[i] & 0x3f);
	}
	return n;
}

/* Code points that are invisible or change the text's direction: shown as
 * escapes so that a name cannot hide or disguise what it is. */
static bool cp_hidden(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || cp == 0xad || cp == 0x34f || cp == 0x61c ||
	       (cp >= 0x115f && cp <= 0x1160) || (cp >= 0x180b && cp <= 0x180f) ||
	       (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202e) ||
	       (cp >= 0x2060 && cp <= 0x206f) || cp == 0x3164 || cp == 0xfeff ||
	       (cp >= 0xfff0 && cp <= 0xfffb) || (cp >= 0xe0000 && cp <= 0xe0fff);
}

static void html_escape_mark(FILE *out, bool spans, const char *fmt, unsigned v)
{
	if (spans)
		fputs("<span class=\"esc\">", out);
	fprintf(out, fmt, v);
	if (spans)
		fputs("</span>", out);
}

void audit_report_html_text(FILE *out, const char *s, size_t limit, bool spans)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	size_t len = strlen((const char *)p);
	for (size_t i = 0; i < len;) {
		if (i >= limit) {
			fputs("\xe2\x80\xa6", out);
			return;
		}
		uint32_t cp;
		size_t n = utf8_next(p + i, len - i, &cp);
		if (n == 0) {
			html_escape_mark(out, spans, "\\x%02x", p[i]);
			i++;
			continue;
		}
		if (cp < 0x20 || cp == 0x7f)
			html_escape_mark(out, spans, "\\x%02x", cp);
		else if (cp_hidden(cp))
			html_escape_mark(out, spans, "\\u{%04x}", cp);
		else if (cp == '&')
			fputs("&amp;", out);
		else if (cp == '<')
			fputs("&lt;", out);
		else if (cp == '>')
			fputs("&gt;", out);
		else if (cp == '"')
			fputs("&quot;", out);
		else if (cp == '\'')
			fputs("&#39;", out);
		else
			fwrite(p + i, 1, n, out);
		i += n;
	}
}

char *audit_report_utf8_clean(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t len = strlen(s);
	char *d = xcalloc(1, len * 3 + 1), *q = d;
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t n = utf8_next(p + i, len - i, &cp);
		if (n == 0) {
			memcpy(q, "\xef\xbf\xbd", 3);
			q += 3;
			i++;
		} else {
			memcpy(q, p + i, n);
			q += n;
			i += n;
		}
	}
	*q = '\0';
	return d;
}

/* --------------------------------------------------------- keyed tables */

static uint64_t key_hash(char *const k[])
{
	uint64_t h = 1469598103934665603ull;
	for (int i = 0; i < AUDIT_REPORT_KEY_PARTS; i++) {
		for (const unsigned char *p = (const unsigned char *)(k[i] ? k[i] : ""); *p; p++)
			h = (h ^ *p) * 1099511628211ull;
		h = (h ^ (k[i] ? 0x100u : 0x200u)) * 1099511628211ull;
	}
	return h;
}

static bool key_equal(char *const a[], const char *const b[])
{
	for (int i = 0; i < AUDIT_REPORT_KEY_PARTS; i++) {
		if (!a[i] != !b[i] || (a[i] && strcmp(a[i], b[i]) != 0))
			return false;
	}
	return true;
}

static void row_init(struct audit_report_row *row)
{
	memset(row, 0, sizeof *row);
	row->first = row->first_decision = INT64_MAX;
	row->last = INT64_MIN;
}

static void row_free(struct audit_report_row *row)
{
	for (int i = 0; i < AUDIT_REPORT_KEY_PARTS; i++)
		free(row->k[i]);
	free(row->note);
	free(row->peer_name);
	free(row->peer_id);
	free(row->peer_route);
}

static void table_init(struct audit_report_table *t, size_t max)
{
	memset(t, 0, sizeof *t);
	t->max = max;
	row_init(&t->other);
}

static void table_free(struct audit_report_table *t)
{
	for (size_t i = 0; i < t->cap; i++)
		if (t->rows[i].k[0])
			row_free(&t->rows[i]);
	free(t->rows);
	row_free(&t->other);
	memset(t, 0, sizeof *t);
}

static void table_grow(struct audit_report_table *t)
{
	size_t cap = t->cap ? t->cap * 2 : 64;
	struct audit_report_row *rows = xcalloc(cap, sizeof *rows);
	for (size_t i = 0; i < t->cap; i++) {
		if (!t->rows[i].k[0])
			continue;
		size_t j = t->rows[i].hash & (cap - 1);
		while (rows[j].k[0])
			j = (j + 1) & (cap - 1);
		rows[j] = t->rows[i];
	}
	free(t->rows);
	t->rows = rows;
	t->cap = cap;
}

/* The row of key k (k[0] must not be NULL), created when new; the table's
 * "other" row once it holds max rows. Key parts longer than KEY_CAP bytes
 * are cut (and end in "..."), so that one row stands for them all. */
static struct audit_report_row *table_get(struct audit_report_table *t, const char *const k[])
{
	char cut[AUDIT_REPORT_KEY_PARTS][KEY_CAP + 4];
	char *kk[AUDIT_REPORT_KEY_PARTS];
	for (int i = 0; i < AUDIT_REPORT_KEY_PARTS; i++) {
		kk[i] = (char *)k[i];
		if (k[i] && strnlen(k[i], KEY_CAP + 1) > KEY_CAP) {
			memcpy(cut[i], k[i], KEY_CAP);
			memcpy(cut[i] + KEY_CAP, "...", 4);
			kk[i] = cut[i];
		}
	}
	uint64_t h = key_hash(kk);
	if (t->cap) {
		for (size_t j = h & (t->cap - 1); t->rows[j].k[0]; j = (j + 1) & (t->cap - 1))
			if (t->rows[j].hash == h &&
			    key_equal(t->rows[j].k, (const char *const *)kk))
				return &t->rows[j];
	}
	if (t->n >= t->max) {
		t->full = true;
		return &t->other;
	}
	if ((t->n + 1) * 2 > t->cap)
		table_grow(t);
	size_t j = h & (t->cap - 1);
	while (t->rows[j].k[0])
		j = (j + 1) & (t->cap - 1);
	struct audit_report_row *row = &t->rows[j];
	row_init(row);
	for (int i = 0; i < AUDIT_REPORT_KEY_PARTS; i++)
		row->k[i] = dup_cap(kk[i], KEY_CAP + 3);
	row->hash = h;
	t->n++;
	return row;
}

static void row_seen(struct audit_report_row *row, int64_t t, bool has_t)
{
	if (!has_t)
		return;
	if (t < row->first)
		row->first = t;
	if (t > row->last)
		row->last = t;
}

/* Keeps the first note; remembers whether a different one came later. */
static void row_note(struct audit_report_row *row, const char *note)
{
	if (!note)
		return;
	if (!row->note)
		row->note = dup_cap(note, NOTE_CAP);
	else if (strncmp(row->note, note, NOTE_CAP) != 0)
		row->note_varied = true;
}

static uint64_t row_conns(const struct audit_report_row *r)
{
	return r->allow + r->deny;
}

static int row_cmp(const void *a, const void *b)
{
	const struct audit_report_row *x = *(const struct audit_report_row *const *)a;
	const struct audit_report_row *y = *(const struct audit_report_row *const *)b;
	uint64_t cx = row_conns(x) + x->closed, cy = row_conns(y) + y->closed;
	if (cx != cy)
		return cx < cy ? 1 : -1;
	if (x->up + x->down != y->up + y->down)
		return x->up + x->down < y->up + y->down ? 1 : -1;
	for (int i = 0; i < AUDIT_REPORT_KEY_PARTS; i++) {
		int c = strcmp(x->k[i] ? x->k[i] : "", y->k[i] ? y->k[i] : "");
		if (c)
			return c;
	}
	return 0;
}

const struct audit_report_row **audit_report_sorted(const struct audit_report_table *t,
						    size_t *n)
{
	const struct audit_report_row **v = xcalloc(t->n, sizeof *v);
	size_t k = 0;
	for (size_t i = 0; i < t->cap; i++)
		if (t->rows[i].k[0])
			v[k++] = &t->rows[i];
	qsort(v, k, sizeof *v, row_cmp);
	*n = k;
	return v;
}

/* ------------------------------------------------------------- timeline */

/* Interval widths in ms; each a multiple of the one before, so that
 * widening merges whole intervals. After the last, widths double. */
static const int64_t tl_widths[] = {
	100, 500, 1000, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000,
	7200000, 21600000, 43200000, DAY_MS, 7 * DAY_MS, 28 * DAY_MS,
};

static int64_t floor_to(int64_t t, int64_t w)
{
	int64_t q = t / w;
	if (t % w != 0 && t < 0)
		q--;
	return q * w;
}

static void tl_widen(struct audit_report_timeline *tl)
{
	int64_t w = tl->width * 2;
	for (size_t i = 0; i < sizeof tl_widths / sizeof tl_widths[0]; i++) {
		if (tl_widths[i] > tl->width) {
			w = tl_widths[i];
			break;
		}
	}
	int64_t start = floor_to(tl->start, w);
	struct audit_report_bucket b[AUDIT_REPORT_BUCKETS];
	memset(b, 0, sizeof b);
	size_t n = 0;
	for (size_t i = 0; i < tl->n; i++) {
		size_t j = (size_t)((tl->start + (int64_t)i * tl->width - start) / w);
		b[j].allow += tl->b[i].allow;
		b[j].deny += tl->b[i].deny;
		b[j].up += tl->b[i].up;
		b[j].down += tl->b[i].down;
		n = j + 1;
	}
	memcpy(tl->b, b, sizeof b);
	tl->n = n;
	tl->width = w;
	tl->start = start;
}

/* The interval holding t; widens or extends the timeline as needed. */
static size_t tl_index(struct audit_report_timeline *tl, int64_t t)
{
	if (tl->n == 0) {
		tl->start = floor_to(t, tl->width);
		tl->n = 1;
	}
	for (;;) {
		int64_t i = (floor_to(t, tl->width) - tl->start) / tl->width;
		if (i >= 0 && i < AUDIT_REPORT_BUCKETS) {
			if ((size_t)i >= tl->n)
				tl->n = (size_t)i + 1;
			return (size_t)i;
		}
		if (i < 0 && (int64_t)tl->n - i <= AUDIT_REPORT_BUCKETS) {
			size_t shift = (size_t)-i;
			memmove(tl->b + shift, tl->b, tl->n * sizeof tl->b[0]);
			memset(tl->b, 0, shift * sizeof tl->b[0]);
			tl->n += shift;
			tl->start += i * tl->width;
			return 0;
		}
		tl_widen(tl);
	}
}

/* Spreads a connection's bytes evenly over [end - duration, end], cut at
 * the timeline's start; the last interval takes the rounding remainder. */
static void tl_bytes(struct audit_report_timeline *tl, int64_t end, uint64_t duration,
		     uint64_t up, uint64_t down)
{
	size_t last = tl_index(tl, end);
	int64_t room = end - tl->start;
	int64_t begin = (uint64_t)room < duration ? tl->start : end - (int64_t)duration;
	size_t first = (size_t)((begin - tl->start) / tl->width);
	uint64_t up_left = up, down_left = down;
	double span = (double)(end - begin);
	for (size_t i = first; i < last; i++) {
		int64_t lo = tl->start + (int64_t)i * tl->width;
		int64_t hi = lo + tl->width;
		if (lo < begin)
			lo = begin;
		double share = (double)(hi - lo) / span;
		double du = (double)up * share, dd = (double)down * share;
		/* compared as doubles first: the cast of a value >= 2^64 is undefined */
		uint64_t u = du >= (double)up_left ? up_left : (uint64_t)du;
		uint64_t d = dd >= (double)down_left ? down_left : (uint64_t)dd;
		tl->b[i].up += u;
		tl->b[i].down += d;
		up_left -= u;
		down_left -= d;
	}
	tl->b[last].up += up_left;
	tl->b[last].down += down_left;
}

/* --------------------------------------------------------------- events */

/* How much an event matters when the list is full: routine lifecycle (0),
 * a change in what the tailnet carries (1), a hole or an unclean end (2). */
static int ev_rank(enum audit_report_event_kind k)
{
	switch (k) {
	case AUDIT_REPORT_EV_START:
	case AUDIT_REPORT_EV_SHUTDOWN:
	case AUDIT_REPORT_EV_RELOAD:
	case AUDIT_REPORT_EV_DOWN:
		return 0;
	case AUDIT_REPORT_EV_TAILNET:
		return 1;
	default:
		return 2;
	}
}

/* The latest listed event that matters less than rank, or -1. */
static ssize_t ev_victim(const struct audit_report *r, int rank)
{
	for (int want = 0; want < rank; want++)
		for (size_t i = r->n_events; i-- > 0;)
			if (ev_rank(r->events[i].kind) == want)
				return (ssize_t)i;
	return -1;
}

/* Counts an event and lists it while there is room; when the list is full
 * an event takes the place of the latest one that matters less (see
 * ev_rank), or is only counted. */
static void ev_add(struct audit_report *r, enum audit_report_event_kind kind, int64_t t,
		   bool has_t, int64_t until, const char *detail)
{
	r->ev_count[kind]++;
	size_t at = r->n_events;
	if (at == AUDIT_REPORT_EVENTS) {
		ssize_t v = ev_victim(r, ev_rank(kind));
		if (v < 0)
			return;
		free(r->events[v].detail);
		memmove(r->events + v, r->events + v + 1,
			(r->n_events - (size_t)v - 1) * sizeof r->events[0]);
		at = r->n_events - 1;
	} else {
		r->n_events++;
	}
	r->events[at] = (struct audit_report_event){ .kind = kind, .t = t, .has_t = has_t,
						     .until = has_t ? until : t,
						     .detail = dup_cap(detail, NOTE_CAP) };
}

const char *audit_report_event_name(enum audit_report_event_kind k)
{
	static const char *const names[AUDIT_REPORT_EV_KINDS] = {
		[AUDIT_REPORT_EV_START] = "start",
		[AUDIT_REPORT_EV_SHUTDOWN] = "shutdown",
		[AUDIT_REPORT_EV_UNCLEAN] = "unclean_shutdown",
		[AUDIT_REPORT_EV_DOWN] = "stopped",
		[AUDIT_REPORT_EV_RELOAD] = "reload",
		[AUDIT_REPORT_EV_SINK_ERROR] = "sink_error",
		[AUDIT_REPORT_EV_SEQ_GAP] = "seq_gap",
		[AUDIT_REPORT_EV_CHAIN] = "chain_break",
		[AUDIT_REPORT_EV_RECOVERY] = "recovery",
		[AUDIT_REPORT_EV_TAILNET] = "tailnet",
	};
	return (unsigned)k < AUDIT_REPORT_EV_KINDS ? names[k] : "?";
}

/* ------------------------------------------------------ busiest/longest */

static uint64_t top_metric(const struct audit_report_top *t, const struct audit_report_conn *c)
{
	if (t->by_duration)
		return c->duration_ms;
	return c->up + c->down < c->up ? UINT64_MAX : c->up + c->down;
}

static void top_swap(struct audit_report_conn *a, struct audit_report_conn *b)
{
	struct audit_report_conn tmp = *a;
	*a = *b;
	*b = tmp;
}

static void top_sift_down(struct audit_report_top *t, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		if (l < t->n && top_metric(t, &t->v[l]) < top_metric(t, &t->v[m]))
			m = l;
		if (l + 1 < t->n && top_metric(t, &t->v[l + 1]) < top_metric(t, &t->v[m]))
			m = l + 1;
		if (m == i)
			return;
		top_swap(&t->v[i], &t->v[m]);
		i = m;
	}
}

static void conn_free(struct audit_report_conn *c)
{
	free(c->user);
	free(c->client);
	free(c->dst);
	free(c->end);
}

/* Offers a connection to a top list (a min-heap of at most max entries). */
static void top_offer(struct audit_report_top *t, const struct audit_report_conn *c)
{
	if (t->max == 0)
		return;
	uint64_t m = top_metric(t, c);
	if (t->n == t->max && m <= top_metric(t, &t->v[0]))
		return;
	struct audit_report_conn copy = *c;
	copy.user = dup_cap(c->user, KEY_CAP);
	copy.client = dup_cap(c->client, KEY_CAP);
	copy.dst = dup_cap(c->dst, KEY_CAP);
	copy.end = dup_cap(c->end, KEY_CAP);
	if (t->n == t->max) {
		conn_free(&t->v[0]);
		t->v[0] = copy;
		top_sift_down(t, 0);
		return;
	}
	size_t i = t->n++;
	t->v[i] = copy;
	while (i > 0 && top_metric(t, &t->v[i]) < top_metric(t, &t->v[(i - 1) / 2])) {
		top_swap(&t->v[i], &t->v[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
}

static const struct audit_report_top *cmp_top;

static int top_cmp(const void *a, const void *b)
{
	uint64_t x = top_metric(cmp_top, a), y = top_metric(cmp_top, b);
	if (x != y)
		return x < y ? 1 : -1;
	const struct audit_report_conn *ca = a, *cb = b;
	return ca->t < cb->t ? -1 : ca->t > cb->t;
}

/* Sorts a top list biggest first (it is no longer a heap afterwards). */
static void top_sort(struct audit_report_top *t)
{
	cmp_top = t;
	qsort(t->v, t->n, sizeof t->v[0], top_cmp);
	cmp_top = NULL;
}

/* -------------------------------------------------------------- history */

static uint64_t str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h ? h : 1;
}

static bool hist_has(const struct audit_report *r, const char *dst)
{
	if (!r->history_cap)
		return false;
	uint64_t h = str_hash(dst);
	for (size_t j = h & (r->history_cap - 1); r->history[j]; j = (j + 1) & (r->history_cap - 1))
		if (r->history[j] == h)
			return true;
	return false;
}

static void hist_insert(uint64_t *v, size_t cap, uint64_t h)
{
	size_t j = h & (cap - 1);
	while (v[j] && v[j] != h)
		j = (j + 1) & (cap - 1);
	v[j] = h;
}

/* Remembers a destination named before the period. */
static void hist_add(struct audit_report *r, const char *dst)
{
	if (hist_has(r, dst))
		return;
	if (r->history_n >= AUDIT_REPORT_HISTORY) {
		r->history_full = true;
		return;
	}
	if ((r->history_n + 1) * 2 > r->history_cap) {
		size_t cap = r->history_cap ? r->history_cap * 2 : 4096;
		uint64_t *v = xcalloc(cap, sizeof *v);
		for (size_t i = 0; i < r->history_cap; i++)
			if (r->history[i])
				hist_insert(v, cap, r->history[i]);
		free(r->history);
		r->history = v;
		r->history_cap = cap;
	}
	hist_insert(r->history, r->history_cap, str_hash(dst));
	r->history_n++;
}

/* ------------------------------------------------------------- records */

static const char *str_or(const cJSON *o, const char *k, const char *dflt)
{
	const char *v = audit_read_str(o, k);
	return v ? v : dflt;
}

/* A record in the period moves the period's bounds. */
static void period_touch(struct audit_report *r, int64_t t, bool has_t)
{
	r->in_period++;
	if (!has_t) {
		r->no_time++;
		return;
	}
	if (!r->has_first || t < r->first)
		r->first = t;
	if (!r->has_first || t > r->last)
		r->last = t;
	r->has_first = true;
}

/* The tailnet-aware fence's "path" and "peer" of a decision, on its
 * destination's row. Either may be missing or null. */
static void dst_tailnet(struct audit_report *r, struct audit_report_row *row, const cJSON *o)
{
	const char *path = audit_read_str(o, "path");
	const cJSON *peer = cJSON_GetObjectItemCaseSensitive(o, "peer");
	if (!path && !cJSON_IsObject(peer))
		return;
	r->tailnet_records++;
	if (path)
		row->paths |= strcmp(path, "tailnet") == 0 ? 1u : strcmp(path, "host") == 0 ? 2u : 4u;
	if (!cJSON_IsObject(peer))
		return;
	const char *name = audit_read_str(peer, "name"), *id = audit_read_str(peer, "id");
	const char *route = audit_read_str(peer, "route");
	if (row->peer_name || row->peer_id) {
		bool same = strcmp(row->peer_name ? row->peer_name : "", name ? name : "") == 0 &&
			    strcmp(row->peer_id ? row->peer_id : "", id ? id : "") == 0;
		if (same)
			return;
		row->peer_varied = true;
		free(row->peer_name);
		free(row->peer_id);
		free(row->peer_route);
	}
	row->peer_name = dup_cap(name, KEY_CAP);
	row->peer_id = dup_cap(id, KEY_CAP);
	row->peer_route = dup_cap(route, KEY_CAP);
}

static void on_decision(struct audit_report *r, const cJSON *o, int64_t t, bool has_t,
			bool in_time)
{
	if (!audit_read_decision_matches(&r->opt.filter, o))
		return;
	audit_read_conns_put(&r->conns, o);
	char dst[300], client[64];
	audit_read_dst(o, dst, sizeof dst);
	/* A failed SOCKS5 login names no target: it is a denial, not a destination. */
	bool target = audit_read_str(o, "host") || audit_read_str(o, "addr");
	if (!in_time) {
		if (target && has_t && r->opt.filter.has_since && t < r->opt.filter.since)
			hist_add(r, dst);
		return;
	}
	period_touch(r, t, has_t);
	bool allow = strcmp(str_or(o, "verdict", "-"), "allow") == 0;
	const char *user = str_or(o, "user", "-");
	audit_read_client_ip(audit_read_str(o, "client"), client, sizeof client);
	allow ? r->allow++ : r->deny++;
	if (has_t) {
		struct audit_report_bucket *b = &r->tl.b[tl_index(&r->tl, t)];
		allow ? b->allow++ : b->deny++;
	}
	table_get(&r->users, (const char *[]){ user, NULL, NULL, NULL })->allow++;
	table_get(&r->clients, (const char *[]){ client, NULL, NULL, NULL })->allow++;
	struct audit_report_row *row;
	if (target) {
		row = table_get(&r->pairs, (const char *[]){ user, dst, NULL, NULL });
		allow ? row->allow++ : row->deny++;
		row_seen(row, t, has_t);
		row = table_get(&r->dsts, (const char *[]){ dst, NULL, NULL, NULL });
		allow ? row->allow++ : row->deny++;
		row_seen(row, t, has_t);
		if (has_t && t < row->first_decision)
			row->first_decision = t;
		row_note(row, audit_read_str(o, "addr"));
		dst_tailnet(r, row, o);
	}
	if (!allow) {
		row = table_get(&r->denied, (const char *[]){ target ? dst : "(no target)",
							     str_or(o, "guard", "-"),
							     str_or(o, "rule", "-"), user });
		row->deny++;
		row_seen(row, t, has_t);
		row_note(row, audit_read_str(o, "reason"));
	}
}

/* A close record in the period, with its decision when one was kept. */
static void close_add(struct audit_report *r, const cJSON *o, const struct audit_read_conn *c,
		      int64_t t, bool has_t)
{
	struct audit_report_conn rc = {
		.t = t, .has_t = has_t, .id = audit_read_u64(o, "conn"),
		.up = audit_read_u64(o, "bytes_up"),
		.down = audit_read_u64(o, "bytes_down"),
		.duration_ms = audit_read_u64(o, "duration_ms"),
		.end = (char *)str_or(o, "end", "-"),
	};
	period_touch(r, t, has_t);
	r->closed++;
	r->up += rc.up;
	r->down += rc.down;
	table_get(&r->ends, (const char *[]){ rc.end, NULL, NULL, NULL })->closed++;
	if (has_t)
		tl_bytes(&r->tl, t, rc.duration_ms, rc.up, rc.down);
	if (!c) {
		r->closed_unjoined++;
		return;
	}
	if (!c->target)
		return;
	rc.user = c->user;
	rc.client = c->client;
	rc.dst = c->dst;
	struct audit_report_row *rows[2] = {
		table_get(&r->pairs, (const char *[]){ c->user, c->dst, NULL, NULL }),
		table_get(&r->dsts, (const char *[]){ c->dst, NULL, NULL, NULL }),
	};
	for (int i = 0; i < 2; i++) {
		rows[i]->closed++;
		rows[i]->up += rc.up;
		rows[i]->down += rc.down;
		row_seen(rows[i], t, has_t);
	}
	if (c->allow) {
		top_offer(&r->busiest, &rc);
		top_offer(&r->longest, &rc);
	}
}

static void on_close(struct audit_report *r, const cJSON *o, int64_t t, bool has_t,
		     bool in_time)
{
	struct audit_read_conn *c = audit_read_conns_get(&r->conns,
							 audit_read_u64(o, "conn"));
	if (in_time && (c || !r->opt.filter.conn_filters))
		close_add(r, o, c, t, has_t);
	if (c)
		audit_read_conns_remove(&r->conns, c);
}

/* A start: the run before it ended cleanly (a shutdown record since the
 * start before) or not; connection ids begin again. */
static void on_start(struct audit_report *r, const cJSON *o, int64_t t, bool has_t,
		     bool in_time)
{
	if (in_time && r->run_seen && !r->shutdown_seen) {
		char d[160], prev[40];
		audit_read_fmt_time(r->recovery_has_last ? r->recovery_last : r->prev_t, prev,
				    sizeof prev);
		snprintf(d, sizeof d, "no shutdown record after the last record of the run before (%s)",
			 r->recovery_has_last || r->prev_has_t ? prev : "no time");
		/* The killed run's last record: as its recovery record says, else
		 * the record before this start. Records of a run may end later
		 * than the next start says (a clock step, files out of order):
		 * the span never runs backwards. */
		bool known = r->recovery_has_last || r->prev_has_t;
		int64_t last = r->recovery_has_last ? r->recovery_last : r->prev_t;
		int64_t from = known && (!has_t || last <= t) ? last : t;
		ev_add(r, AUDIT_REPORT_EV_UNCLEAN, from, known || has_t, t, d);
	} else if (in_time && r->shutdown_seen && r->shutdown_has_t && has_t) {
		ev_add(r, AUDIT_REPORT_EV_DOWN, r->shutdown_t, true, t, NULL);
	}
	if (in_time) {
		char d[NOTE_CAP];
		snprintf(d, sizeof d, "version %.64s, pid %.0f, upstream %.256s",
			 str_or(o, "version", "?"), audit_read_num(o, "pid"),
			 str_or(o, "detail", "?"));
		ev_add(r, AUDIT_REPORT_EV_START, t, has_t, t, d);
	}
	r->shutdown_seen = false;
	r->recovery_has_last = false;
	audit_read_conns_clear(&r->conns);
}

static void on_shutdown(struct audit_report *r, int64_t t, bool has_t)
{
	if (r->shutdown_seen)
		return;
	r->shutdown_seen = true;
	r->shutdown_t = t;
	r->shutdown_has_t = has_t;
}

/* A recovery record comes just before the start that follows a killed run:
 * it says when that run wrote its last record and which connections it
 * left without a close record. */
static void on_recovery(struct audit_report *r, const cJSON *o, int64_t t, bool has_t,
			bool in_time)
{
	const char *last = audit_read_str(o, "last_ts");
	r->recovery_has_last = last && audit_read_time_parse(last, strlen(last), &r->recovery_last);
	if (!in_time)
		return;
	const cJSON *u = cJSON_GetObjectItemCaseSensitive(o, "unclosed");
	if (cJSON_IsArray(u))
		r->unclosed += (uint64_t)cJSON_GetArraySize(u);
	ev_add(r, AUDIT_REPORT_EV_RECOVERY, t, has_t, t, audit_read_str(o, "detail"));
}

/* Appends " VERB prefix (peer, kind), ..." for a tailnet record's list. */
static void tailnet_list(char *d, size_t len, const cJSON *list, const char *verb)
{
	size_t n = strlen(d);
	int i = 0;
	const cJSON *e;
	cJSON_ArrayForEach(e, list) {
		if (n + 1 >= len)
			return;
		snprintf(d + n, len - n, "%s %.64s (%.128s, %.16s)", i++ ? "," : verb,
			 str_or(e, "prefix", "?"), str_or(e, "peer", "?"), str_or(e, "kind", "?"));
		n += strlen(d + n);
	}
}

/* What the tailnet carries for this node changed: state, counts, and the
 * prefixes added and removed. */
static void on_tailnet(struct audit_report *r, const cJSON *o, int64_t t, bool has_t)
{
	char d[NOTE_CAP];
	snprintf(d, sizeof d, "%.16s, %" PRIu64 " peer(s), %" PRIu64 " carried%s%.128s;",
		 str_or(o, "state", "?"), audit_read_u64(o, "peers"), audit_read_u64(o, "carried"),
		 audit_read_str(o, "reason") ? ": " : "", str_or(o, "reason", ""));
	tailnet_list(d, sizeof d, cJSON_GetObjectItemCaseSensitive(o, "added"), " added");
	tailnet_list(d, sizeof d, cJSON_GetObjectItemCaseSensitive(o, "removed"), " removed");
	size_t n = strlen(d);
	if (n && d[n - 1] == ';')
		d[n - 1] = '\0';
	ev_add(r, AUDIT_REPORT_EV_TAILNET, t, has_t, t, d);
}

/* Records other than decisions and closes. Unknown types are counted. */
static void on_other(struct audit_report *r, const cJSON *o, const char *type, int64_t t,
		     bool has_t, bool in_time)
{
	bool shown = in_time && !r->opt.filter.conn_filters;
	if (strcmp(type, "start") == 0) {
		on_start(r, o, t, has_t, in_time);
	} else if (strcmp(type, "shutdown") == 0) {
		on_shutdown(r, t, has_t);
		if (in_time)
			ev_add(r, AUDIT_REPORT_EV_SHUTDOWN, t, has_t, t, audit_read_str(o, "detail"));
	} else if (strcmp(type, "checkpoint") == 0) {
		if (strcmp(str_or(o, "reason", "-"), "shutdown") == 0)
			on_shutdown(r, t, has_t);
	} else if (strcmp(type, "reload") == 0) {
		if (in_time)
			ev_add(r, AUDIT_REPORT_EV_RELOAD, t, has_t, t, audit_read_str(o, "detail"));
	} else if (strcmp(type, "sink_error") == 0) {
		char d[NOTE_CAP];
		uint64_t lost = audit_read_u64(o, "lost");
		snprintf(d, sizeof d, "%.200s: %" PRIu64 " record(s) lost: %.256s",
			 str_or(o, "sink", "?"), lost, str_or(o, "error", "?"));
		if (in_time) {
			r->lost += lost;
			ev_add(r, AUDIT_REPORT_EV_SINK_ERROR, t, has_t, t, d);
		}
	} else if (strcmp(type, "recovery") == 0) {
		on_recovery(r, o, t, has_t, in_time);
	} else if (strcmp(type, "tailnet") == 0) {
		if (in_time)
			on_tailnet(r, o, t, has_t);
	} else if (in_time) {
		table_get(&r->types, (const char *[]){ type, NULL, NULL, NULL })->closed++;
	}
	if (shown)
		period_touch(r, t, has_t);
}

/* seq numbers (HMAC chain) that jump show records missing from the input,
 * even without the key. A new chain at 0 is fine after a shutdown
 * checkpoint. */
static void check_seq(struct audit_report *r, const cJSON *o, const char *type, int64_t t,
		      bool has_t, bool in_time)
{
	const cJSON *js = cJSON_GetObjectItemCaseSensitive(o, "seq");
	if (!cJSON_IsNumber(js)) {
		r->have_seq = false;
		return;
	}
	uint64_t seq = audit_read_u64(o, "seq");
	if (r->have_seq && seq != r->last_seq + 1 && !(seq == 0 && r->prev_checkpoint_shutdown)) {
		char d[160];
		if (seq > r->last_seq) {
			snprintf(d, sizeof d, "seq jumps from %" PRIu64 " to %" PRIu64 ": %" PRIu64
				 " record(s) missing", r->last_seq, seq, seq - r->last_seq - 1);
			if (in_time)
				r->missing_seq += seq - r->last_seq - 1;
		} else {
			snprintf(d, sizeof d, "seq goes back from %" PRIu64 " to %" PRIu64
				 ": lines reordered, repeated, or a chain restarted", r->last_seq, seq);
		}
		if (in_time)
			ev_add(r, AUDIT_REPORT_EV_SEQ_GAP, t, has_t, t, d);
	}
	r->have_seq = true;
	r->last_seq = seq;
	r->prev_checkpoint_shutdown = strcmp(type, "checkpoint") == 0 &&
				      strcmp(str_or(o, "reason", "-"), "shutdown") == 0;
}

void audit_report_line(struct audit_report *r, const char *file, unsigned long lineno,
		       const char *line, size_t len, bool terminated)
{
	r->lines++;
	cJSON *o = cJSON_ParseWithLength(line, len);
	int64_t t = 0;
	bool has_t = false, in_time = false;
	if (o && cJSON_IsObject(o))
		in_time = audit_read_in_time(&r->opt.filter, o, &t, &has_t);
	if (r->verify && !audit_verify_line(r->verify, file, lineno, line, len, terminated) &&
	    !r->ev_count[AUDIT_REPORT_EV_CHAIN])
		ev_add(r, AUDIT_REPORT_EV_CHAIN, t, has_t, t, "the HMAC chain breaks here");
	if (!o || !cJSON_IsObject(o)) {
		if (len > 0)
			r->bad_lines++;
		cJSON_Delete(o);
		return;
	}
	r->records++;
	const char *type = str_or(o, "type", "?");
	check_seq(r, o, type, t, has_t, in_time);
	if (strcmp(type, "decision") == 0)
		on_decision(r, o, t, has_t, in_time);
	else if (strcmp(type, "close") == 0)
		on_close(r, o, t, has_t, in_time);
	else
		on_other(r, o, type, t, has_t, in_time);
	r->run_seen = true;
	if (has_t && strcmp(type, "recovery") != 0) {	/* it is written at the restart */
		r->prev_t = t;
		r->prev_has_t = true;
	}
	cJSON_Delete(o);
}

/* ------------------------------------------------------ start and finish */

struct audit_report *audit_report_new(const struct audit_report_options *opt)
{
	struct audit_report *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->opt = *opt;
	if (!r->opt.top)
		r->opt.top = AUDIT_REPORT_TOP;
	if (!r->opt.max_keys)
		r->opt.max_keys = AUDIT_REPORT_MAX_KEYS;
	size_t mk = r->opt.max_keys;
	struct audit_report_table *tables[] = { &r->pairs, &r->denied, &r->dsts, &r->users,
						&r->clients, &r->types, &r->ends };
	for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
		table_init(tables[i], mk);
	r->tl.width = tl_widths[0];
	r->events = calloc(AUDIT_REPORT_EVENTS, sizeof *r->events);
	r->busiest.max = r->longest.max = r->opt.top;
	r->longest.by_duration = true;
	r->busiest.v = calloc(r->opt.top, sizeof *r->busiest.v);
	r->longest.v = calloc(r->opt.top, sizeof *r->longest.v);
	r->conns.max = AUDIT_REPORT_MAX_OPEN;
	if (opt->key)
		r->verify = audit_verify_new(opt->key, opt->keylen);
	if (!r->events || !r->busiest.v || !r->longest.v || (opt->key && !r->verify)) {
		audit_report_free(r);
		return NULL;
	}
	return r;
}

/* New destinations: those the history (every matching decision before the
 * period) never named. Without history, the period's first day (UTC) is
 * the history: destinations first seen after it are new. */
static void finish_new(struct audit_report *r)
{
	r->history_from_first_day = r->history_n == 0 && !r->history_full;
	if (r->history_from_first_day)
		r->history_until = r->has_first ? floor_to(r->first, DAY_MS) + DAY_MS : 0;
	else
		r->history_until = r->opt.filter.since;
	for (size_t i = 0; i < r->dsts.cap; i++) {
		struct audit_report_row *row = &r->dsts.rows[i];
		if (!row->k[0] || row_conns(row) == 0)
			continue;
		if (r->history_from_first_day)
			row->is_new = r->has_first && row->first_decision != INT64_MAX &&
				      row->first_decision >= r->history_until;
		else
			row->is_new = !hist_has(r, row->k[0]);
		r->new_dsts += row->is_new;
	}
}

/* Events in time order (they are listed as read: an unclean shutdown when
 * the next start shows it). Stable; at most AUDIT_REPORT_EVENTS of them. */
static void events_sort(struct audit_report *r)
{
	for (size_t i = 1; i < r->n_events; i++) {
		struct audit_report_event e = r->events[i];
		size_t j = i;
		while (j > 0 && e.has_t && r->events[j - 1].has_t && r->events[j - 1].t > e.t) {
			r->events[j] = r->events[j - 1];
			j--;
		}
		r->events[j] = e;
	}
}

void audit_report_finish(struct audit_report *r)
{
	if (r->verify) {
		r->chain_checked = true;
		r->chain_verified = audit_verify_finish(r->verify, r->chain_msg, sizeof r->chain_msg);
		r->chain_records = audit_verify_records(r->verify);
		if (!r->chain_verified && !r->ev_count[AUDIT_REPORT_EV_CHAIN])
			ev_add(r, AUDIT_REPORT_EV_CHAIN, r->prev_t, r->prev_has_t, r->prev_t,
			       "the HMAC chain breaks at the end of the input");
		audit_verify_free(r->verify);
		r->verify = NULL;
	}
	finish_new(r);
	events_sort(r);
	top_sort(&r->busiest);
	top_sort(&r->longest);
	audit_read_conns_clear(&r->conns);
}

void audit_report_free(struct audit_report *r)
{
	if (!r)
		return;
	struct audit_report_table *tables[] = { &r->pairs, &r->denied, &r->dsts, &r->users,
						&r->clients, &r->types, &r->ends };
	for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
		table_free(tables[i]);
	for (size_t i = 0; i < r->n_events; i++)
		free(r->events[i].detail);
	free(r->events);
	for (size_t i = 0; i < r->busiest.n; i++)
		conn_free(&r->busiest.v[i]);
	for (size_t i = 0; i < r->longest.n; i++)
		conn_free(&r->longest.v[i]);
	free(r->busiest.v);
	free(r->longest.v);
	free(r->history);
	audit_read_conns_clear(&r->conns);
	if (r->verify)
		audit_verify_free(r->verify);
	free(r);
}
