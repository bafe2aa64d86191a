/*
 * audit_report_html: the HTML page of `tailfence audit report`. Owns the
 * layout: one self-contained file with inline CSS and inline SVG charts,
 * no script, no external reference (a Content-Security-Policy forbids
 * loading anything), readable offline and printable. Every string from a
 * record goes through audit_report_html_text(); the figures come from the
 * aggregates of audit_report.c.
 */
#include "tailfence/audit_report.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TEXT_CAP 200		/* bytes of a record string shown in a cell */
#define DAY_MS 86400000LL

/* Chart geometry (SVG user units). */
#define CH_W 1000
#define CH_H 210
#define CH_X0 64
#define CH_X1 990
#define CH_Y0 14
#define CH_Y1 176

static const char css[] =
	":root{--fg:#1f2933;--mu:#616e7c;--li:#e4e7eb;--card:#f5f7fa;--al:#2f9e62;"
	"--de:#d64545;--up:#6c5ce7;--dn:#0f9bb0;--wa:#c77700}"
	"*{box-sizing:border-box}"
	"body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',"
	"Arial,sans-serif;color:var(--fg);background:#fff;margin:0 auto;padding:24px 32px;"
	"max-width:1240px}"
	"h1{font-size:22px;margin:0 0 2px}"
	"h2{font-size:17px;margin:30px 0 8px;padding-bottom:4px;border-bottom:1px solid var(--li)}"
	"p{margin:6px 0}.mu{color:var(--mu)}.sm{font-size:12px}"
	"nav{margin:10px 0 0;font-size:13px}nav a{color:#2563a8;margin-right:12px;"
	"text-decoration:none}"
	".cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}"
	".card{background:var(--card);border-radius:6px;padding:8px 14px;min-width:128px}"
	".card b{display:block;font-size:20px;font-variant-numeric:tabular-nums}"
	".card span{color:var(--mu);font-size:11px;text-transform:uppercase;letter-spacing:.04em}"
	".card.bad{background:#fdecec}.card.bad b{color:var(--de)}"
	".banner{padding:9px 14px;border-radius:6px;margin:8px 0;border-left:5px solid}"
	".ok{background:#e8f6ee;border-color:var(--al)}.bad{background:#fdecec;"
	"border-color:var(--de)}.none{background:var(--card);border-color:#9aa5b1}"
	".warn{background:#fff8e6;border-color:var(--wa)}"
	"table{border-collapse:collapse;width:100%;font-size:13px;margin:4px 0}"
	"th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--li);"
	"vertical-align:top}"
	"th{background:var(--card);font-weight:600;white-space:nowrap}"
	".n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}"
	".t{white-space:nowrap;font-variant-numeric:tabular-nums}"
	".k{overflow-wrap:anywhere;font-family:ui-monospace,'SFMono-Regular',Menlo,Consolas,"
	"'DejaVu Sans Mono',monospace;font-size:12px}"
	"tr.other td{font-style:italic;color:var(--mu)}"
	".esc{background:#fff0c2;color:#8a4b00;border-radius:2px;padding:0 1px}"
	".tag{display:inline-block;font-size:11px;padding:0 6px;border-radius:8px;white-space:nowrap;"
	"background:var(--card);margin-right:4px}"
	".tag.red{background:#fdecec;color:var(--de)}.tag.amb{background:#fff0c2;color:#8a4b00}"
	"svg{display:block;width:100%;height:auto;margin:4px 0}"
	"svg text{font:11px system-ui,sans-serif;fill:#52606d}"
	".legend{font-size:12px;color:var(--mu)}.legend i{display:inline-block;width:10px;"
	"height:10px;border-radius:2px;margin:0 4px 0 12px;vertical-align:-1px}"
	"@media print{body{padding:0;max-width:none}nav{display:none}h2{break-after:avoid}"
	"tr{break-inside:avoid}}";

/* ---------------------------------------------------------------- helpers */

static void h(FILE *out, const char *s)
{
	audit_report_html_text(out, s, TEXT_CAP, true);
}

static void fmt_num(uint64_t v, char *out, size_t len)
{
	char tmp[32];
	int n = snprintf(tmp, sizeof tmp, "%" PRIu64, v);
	size_t o = 0;
	for (int i = 0; i < n && o + 2 < len; i++) {
		if (i > 0 && (n - i) % 3 == 0)
			out[o++] = ',';
		out[o++] = tmp[i];
	}
	out[o] = '\0';
}

static void num(FILE *out, uint64_t v)
{
	char b[40];
	fmt_num(v, b, sizeof b);
	fputs(b, out);
}

static void bytes(FILE *out, uint64_t v)
{
	char b[32];
	audit_read_fmt_bytes(v, b, sizeof b);
	fputs(b, out);
}

/* "2024-05-01 12:00:00" (UTC), or "-". */
static void when(FILE *out, int64_t t, bool has_t)
{
	char b[40];
	if (!has_t || t == INT64_MAX || t == INT64_MIN) {
		fputs("-", out);
		return;
	}
	audit_read_fmt_time(t, b, sizeof b);
	b[10] = ' ';
	b[19] = '\0';
	fputs(b, out);
}

static void fmt_duration(uint64_t ms, char *out, size_t len)
{
	uint64_t s = ms / 1000;
	if (ms < 1000) {
		snprintf(out, len, "%" PRIu64 " ms", ms);
	} else if (s < 60) {
		uint64_t tenths = (ms + 50) / 100;	/* "2 s", "6.1 s": a tenth when there is one */
		if (tenths % 10)
			snprintf(out, len, "%" PRIu64 ".%" PRIu64 " s", tenths / 10, tenths % 10);
		else
			snprintf(out, len, "%" PRIu64 " s", tenths / 10);
	} else if (s < 3600 && s % 60) {
		snprintf(out, len, "%" PRIu64 " min %" PRIu64 " s", s / 60, s % 60);
	} else if (s < 3600) {
		snprintf(out, len, "%" PRIu64 " min", s / 60);
	} else if (s < 86400 && s / 60 % 60) {
		snprintf(out, len, "%" PRIu64 " h %" PRIu64 " min", s / 3600, s / 60 % 60);
	} else if (s < 86400) {
		snprintf(out, len, "%" PRIu64 " h", s / 3600);
	} else if (s / 3600 % 24) {
		snprintf(out, len, "%" PRIu64 " d %" PRIu64 " h", s / 86400, s / 3600 % 24);
	} else {
		snprintf(out, len, "%" PRIu64 " d", s / 86400);
	}
}

static void duration(FILE *out, uint64_t ms)
{
	char b[48];
	fmt_duration(ms, b, sizeof b);
	fputs(b, out);
}

/* A table header: columns separated by '|'; a leading '#' right-aligns. */
static void thead(FILE *out, const char *cols)
{
	fputs("<table><thead><tr>", out);
	while (*cols) {
		const char *bar = strchr(cols, '|');
		size_t n = bar ? (size_t)(bar - cols) : strlen(cols);
		bool right = cols[0] == '#';
		fprintf(out, "<th%s>%.*s</th>", right ? " class=\"n\"" : "", (int)(n - right),
			cols + right);
		cols += n + (bar != NULL);
	}
	fputs("</tr></thead><tbody>\n", out);
}

static void td_text(FILE *out, const char *s)
{
	fputs("<td class=\"k\">", out);
	h(out, s ? s : "-");
	fputs("</td>", out);
}

static void td_num(FILE *out, uint64_t v)
{
	fputs("<td class=\"n\">", out);
	num(out, v);
	fputs("</td>", out);
}

static void td_bytes(FILE *out, uint64_t v)
{
	fputs("<td class=\"n\">", out);
	bytes(out, v);
	fputs("</td>", out);
}

static void td_when(FILE *out, int64_t t, bool has_t)
{
	fputs("<td class=\"t\">", out);
	when(out, t, has_t);
	fputs("</td>", out);
}

/* After a table: how many rows were left out, and the overflow row. */
static void tfoot(FILE *out, size_t shown, size_t n, const struct audit_report_table *t,
		  const char *what)
{
	fputs("</tbody></table>\n", out);
	if (shown < n) {
		fprintf(out, "<p class=\"mu sm\">The first %zu of %zu %s; <code>--top N</code> "
			"shows more, <code>--json</code> gives them all.</p>\n", shown, n, what);
	}
	if (t && t->full) {
		fprintf(out, "<p class=\"banner warn sm\">This table keeps at most %zu rows "
			"(<code>--max-keys</code>): records for further keys were summed into "
			"the row marked <i>other</i>.</p>\n", t->max);
	}
}

/* ---------------------------------------------------------------- header */

static void card(FILE *out, const char *label, const char *value, bool bad)
{
	fprintf(out, "<div class=\"card%s\"><b>%s</b><span>%s</span></div>", bad ? " bad" : "",
		value, label);
}

static void card_num(FILE *out, const char *label, uint64_t v, bool bad)
{
	char b[40];
	fmt_num(v, b, sizeof b);
	card(out, label, b, bad);
}

static void card_bytes(FILE *out, const char *label, uint64_t v)
{
	char b[32];
	audit_read_fmt_bytes(v, b, sizeof b);
	card(out, label, b, false);
}

static void html_head(FILE *out, const struct audit_report *r, char *const *inputs, int n)
{
	fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
	      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
	      "style-src 'unsafe-inline'\">\n"
	      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
	      "<meta name=\"generator\" content=\"tailfence " TAILFENCE_VERSION "\">\n"
	      "<title>tailfence audit report ", out);
	when(out, r->first, r->has_first);
	fputs(" to ", out);
	when(out, r->last, r->has_first);
	fprintf(out, " UTC</title>\n<style>%s</style></head><body>\n", css);
	fputs("<header><h1>tailfence audit report</h1>\n<p><b>", out);
	when(out, r->first, r->has_first);
	fputs(" &ndash; ", out);
	when(out, r->last, r->has_first);
	fputs(" UTC</b>", out);
	if (r->has_first) {
		fputs(" <span class=\"mu\">(", out);
		duration(out, (uint64_t)(r->last - r->first));
		fputs(")</span>", out);
	}
	fputs("</p>\n<p class=\"mu sm\">Filters: ", out);
	h(out, r->opt.filter_text ? r->opt.filter_text : "none");
	fputs(". Input: ", out);
	for (int i = 0; i < n; i++) {
		fputs(i ? ", " : "", out);
		h(out, inputs[i]);
	}
	fputs(". Times are UTC.</p>\n<nav><a href=\"#timeline\">Timeline</a>"
	      "<a href=\"#new\">New destinations</a><a href=\"#denied\">Denied</a>"
	      "<a href=\"#who\">Users &times; destinations</a><a href=\"#dst\">Destinations</a>"
	      "<a href=\"#busiest\">Busiest</a><a href=\"#longest\">Longest</a>"
	      "<a href=\"#events\">Events</a><a href=\"#about\">About</a></nav></header>\n", out);
}

static void html_chain(FILE *out, const struct audit_report *r)
{
	if (!r->chain_checked) {
		fputs("<p class=\"banner none\"><b>HMAC chain not checked</b> (no <code>--key"
		      "</code> given): nothing here shows whether records were removed or "
		      "changed.</p>\n", out);
		return;
	}
	fprintf(out, "<p class=\"banner %s\"><b>HMAC chain %s</b> over %s: ",
		r->chain_verified ? "ok" : "bad",
		r->chain_verified ? "verified" : "NOT VERIFIED", "every line of the input");
	audit_report_html_text(out, r->chain_msg, sizeof r->chain_msg, true);
	fputs("</p>\n", out);
}

/* Things the reader must know before trusting the figures. */
static void html_warnings(FILE *out, const struct audit_report *r)
{
	if (r->bad_lines)
		fprintf(out, "<p class=\"banner warn\">%" PRIu64 " line(s) were not JSON records "
			"and were skipped.</p>\n", r->bad_lines);
	if (r->lost || r->missing_seq)
		fprintf(out, "<p class=\"banner bad\">The trail has holes: %" PRIu64 " record(s) "
			"lost by a failing sink (sink_error records), %" PRIu64 " missing by "
			"their sequence numbers. See <a href=\"#events\">Events</a>.</p>\n",
			r->lost, r->missing_seq);
	if (r->conns.dropped)
		fprintf(out, "<p class=\"banner warn\">More than %d connections were open at "
			"once; %" PRIu64 " decisions could not be joined to their close record "
			"(their bytes count in the totals only).</p>\n", AUDIT_REPORT_MAX_OPEN,
			r->conns.dropped);
	if (r->no_time)
		fprintf(out, "<p class=\"banner warn\">%" PRIu64 " record(s) had no readable "
			"time: counted, but not on the timeline.</p>\n", r->no_time);
}

static void html_summary(FILE *out, const struct audit_report *r)
{
	fputs("<section id=\"summary\"><div class=\"cards\">", out);
	card_num(out, "allowed", r->allow, false);
	card_num(out, "denied", r->deny, r->deny > 0);
	card_num(out, "closed", r->closed, false);
	card_bytes(out, "bytes up", r->up);
	card_bytes(out, "bytes down", r->down);
	card_num(out, "users", r->users.n, false);
	card_num(out, "destinations", r->dsts.n, false);
	card_num(out, "new destinations", r->new_dsts, r->new_dsts > 0);
	card_num(out, "clients", r->clients.n, false);
	card_num(out, "starts", r->ev_count[AUDIT_REPORT_EV_START], false);
	card_num(out, "unclean shutdowns", r->ev_count[AUDIT_REPORT_EV_UNCLEAN],
		 r->ev_count[AUDIT_REPORT_EV_UNCLEAN] > 0);
	card_num(out, "records lost", r->lost + r->missing_seq, r->lost + r->missing_seq > 0);
	fputs("</div>\n", out);
	html_chain(out, r);
	html_warnings(out, r);
	fputs("</section>\n", out);
}

/* ---------------------------------------------------------------- charts */

struct chart {
	int64_t start, width;
	size_t n;
	double bw;	/* width of one interval in user units */
};

static double ch_x(const struct chart *c, int64_t t)
{
	double span = (double)c->width * (double)c->n;
	double x = CH_X0 + (double)(t - c->start) / span * (CH_X1 - CH_X0);
	return x < CH_X0 ? CH_X0 : x > CH_X1 ? CH_X1 : x;
}

static double ch_y(uint64_t v, uint64_t max)
{
	return CH_Y1 - (double)v / (double)max * (CH_Y1 - CH_Y0);
}

/* The smallest 1, 2 or 5 times a power of ten that is >= v (at least 1). */
static uint64_t nice_max(uint64_t v)
{
	uint64_t p = 1;
	for (;;) {
		if (v <= p)
			return p;
		if (v <= 2 * p)
			return 2 * p;
		if (v <= 5 * p)
			return 5 * p;
		if (p > UINT64_MAX / 20)
			return v;
		p *= 10;
	}
}

static void ch_open(FILE *out, const char *label)
{
	fprintf(out, "<svg viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"%s\" "
		"xmlns=\"http://www.w3.org/2000/svg\">\n", CH_W, CH_H, label);
}

/* Time labels under the plot at round times (a step of 0.1, 0.2, 0.5, 1,
 * 2, 5, 10, 15, 30 seconds, 1, 5, 10, 15, 30 minutes, 1, 2, 3, 6, 12 hours,
 * 1, 2, 7, 14, 28 days or more, so that at most 8 fit); their format
 * follows the step and the span. */
static void ch_axis_x(FILE *out, const struct chart *c)
{
	static const int64_t steps[] = { 100, 200, 500, 1000, 2000, 5000, 10000, 15000, 30000,
		60000, 300000, 600000, 900000, 1800000, 3600000, 7200000, 10800000, 21600000,
		43200000, DAY_MS, 2 * DAY_MS, 7 * DAY_MS, 14 * DAY_MS, 28 * DAY_MS };
	int64_t span = c->width * (int64_t)c->n, step = 0;
	for (size_t i = 0; i < sizeof steps / sizeof steps[0] && !step; i++)
		if (steps[i] >= c->width && span / steps[i] <= 8)
			step = steps[i];
	if (!step)
		step = (span / 8 / (28 * DAY_MS) + 1) * 28 * DAY_MS;
	fprintf(out, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#9aa5b1\"/>\n",
		CH_X0, CH_Y1, CH_X1, CH_Y1);
	int64_t t = c->start % step == 0 ? c->start : c->start - c->start % step + step;
	if (c->start < 0 && c->start % step)
		t -= step;
	for (; t <= c->start + span; t += step) {
		char b[40], label[24];
		audit_read_fmt_time(t, b, sizeof b);
		if (step >= DAY_MS)
			snprintf(label, sizeof label, "%.10s", b);
		else if (span > DAY_MS)
			snprintf(label, sizeof label, "%.5s %.5s", b + 5, b + 11);
		else if (step >= 60000)
			snprintf(label, sizeof label, "%.5s", b + 11);
		else if (step >= 1000)
			snprintf(label, sizeof label, "%.8s", b + 11);
		else
			snprintf(label, sizeof label, "%.12s", b + 11);
		double x = ch_x(c, t);
		const char *anchor = x < CH_X0 + 30 ? "start" : x > CH_X1 - 30 ? "end" : "middle";
		fprintf(out, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#9aa5b1\"/>"
			"<text x=\"%.1f\" y=\"%d\" text-anchor=\"%s\">%s</text>\n", x, CH_Y1, x,
			CH_Y1 + 4, x, CH_Y1 + 17, anchor, label);
	}
}

/* Grid lines and labels at 0, half (when it is a whole number) and the top
 * of the scale. */
static void ch_axis_y(FILE *out, uint64_t max)
{
	for (int k = 0; k <= 2; k++) {
		if (k == 1 && max % 2)
			continue;
		uint64_t v = k == 2 ? max : max / 2 * (uint64_t)k;
		char b[40];
		fmt_num(v, b, sizeof b);
		double y = ch_y(v, max);
		fprintf(out, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e4e7eb\"/>"
			"<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", CH_X0, y, CH_X1,
			y, CH_X0 - 6, y + 4, b);
	}
}

/* One marker: a shaded span (until > t) or a line, with a hover title. */
static void ch_mark(FILE *out, const struct chart *c, const struct audit_report_event *e,
		    const char *color, double opacity, const char *what)
{
	double x1 = ch_x(c, e->t), x2 = ch_x(c, e->until);
	fputs("<g><title>", out);
	fputs(what, out);
	fputs(": ", out);
	when(out, e->t, true);
	if (e->until != e->t) {
		fputs(" \xe2\x80\x93 ", out);
		when(out, e->until, true);
	}
	if (e->detail) {
		fputs(": ", out);
		audit_report_html_text(out, e->detail, TEXT_CAP, false);
	}
	fputs("</title>", out);
	if (x2 - x1 >= 1)
		fprintf(out, "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\" "
			"fill-opacity=\"%.2f\"/>", x1, CH_Y0, x2 - x1, CH_Y1 - CH_Y0, color, opacity);
	fprintf(out, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\" "
		"stroke-width=\"1.5\"%s/><path d=\"M%.1f %d l-5 -9 h10 z\" fill=\"%s\"/></g>\n",
		x2, CH_Y0, x2, CH_Y1, color, e->until != e->t ? "" : " stroke-dasharray=\"4 3\"",
		x2, CH_Y0, color);
}

static void ch_events(FILE *out, const struct audit_report *r, const struct chart *c)
{
	for (size_t i = 0; i < r->n_events; i++) {
		const struct audit_report_event *e = &r->events[i];
		if (!e->has_t)
			continue;
		switch (e->kind) {
		case AUDIT_REPORT_EV_DOWN:
			ch_mark(out, c, e, "#7b8794", 0.22, "not running");
			break;
		case AUDIT_REPORT_EV_UNCLEAN:
			ch_mark(out, c, e, "#c77700", 0.22, "unclean shutdown");
			break;
		case AUDIT_REPORT_EV_SINK_ERROR:
		case AUDIT_REPORT_EV_SEQ_GAP:
		case AUDIT_REPORT_EV_CHAIN:
			ch_mark(out, c, e, "#d64545", 0, audit_report_event_name(e->kind));
			break;
		case AUDIT_REPORT_EV_RECOVERY:
			ch_mark(out, c, e, "#c77700", 0, "recovery");
			break;
		default:
			break;
		}
	}
}

static void ch_bucket_title(FILE *out, const struct chart *c, size_t i)
{
	fputs("<title>", out);
	when(out, c->start + (int64_t)i * c->width, true);
	fputs(" \xe2\x80\x93 ", out);
	when(out, c->start + (int64_t)(i + 1) * c->width, true);
	fputs(": ", out);
}

static void html_timeline(FILE *out, const struct audit_report *r, const struct chart *c)
{
	char w[48];
	fmt_duration((uint64_t)c->width, w, sizeof w);
	fprintf(out, "<section id=\"timeline\"><h2>Connections over time</h2>\n<p class=\"mu sm\">"
		"Decisions per %s, allowed and denied stacked. Shaded: the daemon was not "
		"running (grey) or stopped without a shutdown record (amber: an unclean "
		"shutdown; the span runs from its last record to the next start). Red marks: "
		"records lost or missing, or where the HMAC chain breaks. Hover for details."
		"</p>\n", w);
	uint64_t max = 0;
	for (size_t i = 0; i < c->n; i++)
		if (r->tl.b[i].allow + r->tl.b[i].deny > max)
			max = r->tl.b[i].allow + r->tl.b[i].deny;
	max = nice_max(max);
	ch_open(out, "connections over time");
	ch_axis_y(out, max);
	double gap = c->bw > 4 ? 1 : 0;
	for (size_t i = 0; i < c->n; i++) {
		const struct audit_report_bucket *b = &r->tl.b[i];
		if (!b->allow && !b->deny)
			continue;
		double x = CH_X0 + (double)i * c->bw, ya = ch_y(b->allow, max);
		double yd = ch_y(b->allow + b->deny, max);
		fputs("<g>", out);
		ch_bucket_title(out, c, i);
		fprintf(out, "%" PRIu64 " allowed, %" PRIu64 " denied</title>"
			"<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"#2f9e62\"/>"
			"<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"#d64545\"/>"
			"</g>\n", b->allow, b->deny, x, ya, c->bw - gap, CH_Y1 - ya, x, yd,
			c->bw - gap, ya - yd);
	}
	ch_events(out, r, c);
	ch_axis_x(out, c);
	fputs("</svg>\n<p class=\"legend\"><i style=\"background:#2f9e62\"></i>allowed"
	      "<i style=\"background:#d64545\"></i>denied<i style=\"background:#7b8794\"></i>"
	      "not running<i style=\"background:#c77700\"></i>unclean shutdown</p></section>\n",
	      out);
}

/* One series of the bytes chart as a stepped area: down above the middle
 * line, up below it, each on its own scale. */
static void ch_area(FILE *out, const struct audit_report *r, const struct chart *c,
		    uint64_t max, bool up, const char *color)
{
	double mid = (CH_Y0 + CH_Y1) / 2.0, extent = up ? CH_Y1 - mid : CH_Y0 - mid;
	fprintf(out, "<path fill=\"%s\" fill-opacity=\"0.22\" stroke=\"%s\" stroke-width=\"1.2\" "
		"d=\"M%d %.1f", color, color, CH_X0, mid);
	for (size_t i = 0; i < c->n; i++) {
		uint64_t v = up ? r->tl.b[i].up : r->tl.b[i].down;
		double y = mid + (double)v / (double)max * extent;
		fprintf(out, " L%.1f %.1f L%.1f %.1f", CH_X0 + (double)i * c->bw, y,
			CH_X0 + (double)(i + 1) * c->bw, y);
	}
	fprintf(out, " L%d %.1f Z\"/>\n", CH_X1, mid);
	char b[32];
	audit_read_fmt_bytes(max, b, sizeof b);
	double y = up ? CH_Y1 : CH_Y0;
	fprintf(out, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e4e7eb\"/>"
		"<text x=\"%d\" y=\"%.1f\">%s %s</text>\n", CH_X0, y, CH_X1, y, CH_X0 + 4,
		up ? y - 4 : y + 11, b, up ? "up" : "down");
}

static void html_bytes(FILE *out, const struct audit_report *r, const struct chart *c)
{
	char w[48];
	fmt_duration((uint64_t)c->width, w, sizeof w);
	fprintf(out, "<section id=\"bytes\"><h2>Bytes over time</h2>\n<p class=\"mu sm\">Bytes "
		"per %s: down (destination to client) above the line, up (client to "
		"destination) below it, each on its own scale. A connection's bytes are known "
		"when it closes and are spread evenly over its lifetime.</p>\n", w);
	uint64_t max_up = 0, max_down = 0;
	for (size_t i = 0; i < c->n; i++) {
		if (r->tl.b[i].up > max_up)
			max_up = r->tl.b[i].up;
		if (r->tl.b[i].down > max_down)
			max_down = r->tl.b[i].down;
	}
	double mid = (CH_Y0 + CH_Y1) / 2.0;
	ch_open(out, "bytes over time");
	ch_area(out, r, c, nice_max(max_down), false, "#0f9bb0");
	ch_area(out, r, c, nice_max(max_up), true, "#6c5ce7");
	fprintf(out, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#9aa5b1\"/>"
		"<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">0</text>\n", CH_X0, mid, CH_X1, mid,
		CH_X0 - 6, mid + 4);
	for (size_t i = 0; i < c->n; i++) {
		fprintf(out, "<g><rect x=\"%.2f\" y=\"%d\" width=\"%.2f\" height=\"%d\" "
			"fill-opacity=\"0\"/>", CH_X0 + (double)i * c->bw, CH_Y0, c->bw,
			CH_Y1 - CH_Y0);
		ch_bucket_title(out, c, i);
		bytes(out, r->tl.b[i].down);
		fputs(" down, ", out);
		bytes(out, r->tl.b[i].up);
		fputs(" up</title></g>\n", out);
	}
	ch_events(out, r, c);
	ch_axis_x(out, c);
	fputs("</svg>\n<p class=\"legend\"><i style=\"background:#0f9bb0\"></i>down"
	      "<i style=\"background:#6c5ce7\"></i>up</p></section>\n", out);
}

static void html_charts(FILE *out, const struct audit_report *r)
{
	if (r->tl.n == 0) {
		fputs("<section id=\"timeline\"><h2>Connections over time</h2><p>No record with "
		      "a time in the period.</p></section>\n", out);
		return;
	}
	struct chart c = { .start = r->tl.start, .width = r->tl.width, .n = r->tl.n };
	c.bw = (double)(CH_X1 - CH_X0) / (double)c.n;
	html_timeline(out, r, &c);
	html_bytes(out, r, &c);
}

/* ---------------------------------------------------------------- tables */

static void td_path_peer(FILE *out, const struct audit_report_row *row)
{
	static const char *const paths[] = { "-", "tailnet", "host", "tailnet and host" };
	static const char *const tags[] = { "", "", " amb", " red" };
	unsigned p = row->paths & 3;
	fputs("<td>", out);
	if (p)
		fprintf(out, "<span class=\"tag%s\">%s</span>", tags[p], paths[p]);
	if (row->paths & 4)
		fputs("<span class=\"tag\">other</span>", out);
	if (!row->paths)
		fputs("-", out);
	fputs("</td><td class=\"k\">", out);
	if (row->peer_name || row->peer_id) {
		h(out, row->peer_name ? row->peer_name : "-");
		if (row->peer_id) {
			fputs(" <span class=\"mu\">(", out);
			h(out, row->peer_id);
			fputs(")</span>", out);
		}
		if (row->peer_route) {
			fputs(" via ", out);
			h(out, row->peer_route);
		}
		if (row->peer_varied)
			fputs(" <span class=\"tag red\">changed</span>", out);
	} else {
		fputs("-", out);
	}
	fputs("</td>", out);
}

static void html_new(FILE *out, const struct audit_report *r,
		     const struct audit_report_row **v, size_t n)
{
	fprintf(out, "<section id=\"new\"><h2>New destinations (%" PRIu64 ")</h2>\n"
		"<p class=\"mu sm\">", r->new_dsts);
	if (r->history_from_first_day) {
		fputs("The input holds no record from before the period, so its first day is the "
		      "history: listed are destinations first named after ", out);
		when(out, r->history_until, r->has_first);
		fputs(" UTC. Give older files as well (and <code>--since</code>) to compare "
		      "with more history.", out);
	} else {
		fprintf(out, "Destinations named in the period that no decision before it names "
			"(history: %zu destinations before ", r->history_n);
		when(out, r->history_until, true);
		fputs(" UTC in the files given).", out);
		if (r->history_full)
			fputs(" <b>The history was too large to keep whole: some destinations "
			      "listed here may not be new.</b>", out);
	}
	fputs(" These are the ones to look at.</p>\n", out);
	if (r->dsts.full)
		fputs("<p class=\"banner warn sm\">The destination table is full: destinations "
		      "first named after it filled are not listed.</p>\n", out);
	if (!r->new_dsts) {
		fputs("<p>None.</p></section>\n", out);
		return;
	}
	thead(out, "Destination|Address|First seen|#Allowed|#Denied|#Up|#Down|Path|Peer");
	size_t shown = 0;
	for (size_t i = 0; i < n && shown < r->opt.top; i++) {
		if (!v[i]->is_new)
			continue;
		shown++;
		fputs("<tr>", out);
		td_text(out, v[i]->k[0]);
		td_text(out, v[i]->note);
		td_when(out, v[i]->first_decision, true);
		td_num(out, v[i]->allow);
		td_num(out, v[i]->deny);
		td_bytes(out, v[i]->up);
		td_bytes(out, v[i]->down);
		td_path_peer(out, v[i]);
		fputs("</tr>\n", out);
	}
	tfoot(out, shown, (size_t)r->new_dsts, NULL, "new destinations");
	fputs("</section>\n", out);
}

static void html_denied(FILE *out, const struct audit_report *r)
{
	size_t n;
	const struct audit_report_row **v = audit_report_sorted(&r->denied, &n);
	fprintf(out, "<section id=\"denied\"><h2>Denied attempts (%" PRIu64 ")</h2>\n"
		"<p class=\"mu sm\">By target, the guard or rule that decided, and the user "
		"(for failed logins, the name that was tried). The reason is the first one "
		"seen.</p>\n", r->deny);
	if (!r->deny) {
		fputs("<p>None.</p></section>\n", out);
		free(v);
		return;
	}
	thead(out, "Target|Guard|Rule|User|#Attempts|First|Last|Reason");
	for (size_t i = 0; i <= n; i++) {
		const struct audit_report_row *row = i < n ? v[i] : &r->denied.other;
		if (i == n && !r->denied.full)
			break;
		if (i < n && i >= r->opt.top)
			continue;
		fputs(i < n ? "<tr>" : "<tr class=\"other\">", out);
		for (int k = 0; k < 4; k++)
			td_text(out, i < n ? row->k[k] : k == 0 ? "other" : "");
		td_num(out, row->deny);
		td_when(out, row->first, true);
		td_when(out, row->last, true);
		fputs("<td>", out);
		h(out, row->note ? row->note : "-");
		if (row->note_varied)
			fputs(" <span class=\"tag\">and other reasons</span>", out);
		fputs("</td></tr>\n", out);
	}
	tfoot(out, n < r->opt.top ? n : r->opt.top, n, &r->denied, "rows");
	fputs("</section>\n", out);
	free(v);
}

static void html_pairs(FILE *out, const struct audit_report *r)
{
	size_t n;
	const struct audit_report_row **v = audit_report_sorted(&r->pairs, &n);
	fputs("<section id=\"who\"><h2>Users &times; destinations</h2>\n<p class=\"mu sm\">"
	      "Connections (decisions) and the bytes of their close records, per user and "
	      "destination as requested; \"-\" is a connection without a login.</p>\n", out);
	thead(out, "User|Destination|#Allowed|#Denied|#Up|#Down|First seen|Last seen");
	for (size_t i = 0; i <= n; i++) {
		const struct audit_report_row *row = i < n ? v[i] : &r->pairs.other;
		if (i == n && !r->pairs.full)
			break;
		if (i < n && i >= r->opt.top)
			continue;
		fputs(i < n ? "<tr>" : "<tr class=\"other\">", out);
		td_text(out, i < n ? row->k[0] : "other");
		td_text(out, i < n ? row->k[1] : "");
		td_num(out, row->allow);
		td_num(out, row->deny);
		td_bytes(out, row->up);
		td_bytes(out, row->down);
		td_when(out, row->first, true);
		td_when(out, row->last, true);
		fputs("</tr>\n", out);
	}
	tfoot(out, n < r->opt.top ? n : r->opt.top, n, &r->pairs, "rows");
	fputs("</section>\n", out);
	free(v);
}

static void html_dsts(FILE *out, const struct audit_report *r,
		      const struct audit_report_row **v, size_t n)
{
	bool tn = r->tailnet_records > 0;
	fputs("<section id=\"dst\"><h2>Destinations</h2>\n<p class=\"mu sm\">", out);
	if (tn)
		fputs("The path each destination took (tailnet, or the host's own network) and "
		      "the peer that carries it (via the subnet route, when it is one). A "
		      "destination seen on both paths, or with a changing peer, is marked.", out);
	else
		fputs("No decision in the period names a path or a peer (tailfence had no "
		      "live view of the tailnet), so those columns are left out.", out);
	fputs(" The address is the first one the destination resolved to.</p>\n", out);
	thead(out, tn ? "Destination|Address|#Allowed|#Denied|#Up|#Down|Last seen|Path|Peer"
		      : "Destination|Address|#Allowed|#Denied|#Up|#Down|Last seen");
	for (size_t i = 0; i < n && i < r->opt.top; i++) {
		fputs("<tr>", out);
		td_text(out, v[i]->k[0]);
		td_text(out, v[i]->note);
		td_num(out, v[i]->allow);
		td_num(out, v[i]->deny);
		td_bytes(out, v[i]->up);
		td_bytes(out, v[i]->down);
		td_when(out, v[i]->last, true);
		if (tn)
			td_path_peer(out, v[i]);
		fputs("</tr>\n", out);
	}
	tfoot(out, n < r->opt.top ? n : r->opt.top, n, &r->dsts, "destinations");
	fputs("</section>\n", out);
}

static void html_top(FILE *out, const struct audit_report_top *t, const char *id,
		     const char *title, const char *what)
{
	fprintf(out, "<section id=\"%s\"><h2>%s</h2>\n<p class=\"mu sm\">%s</p>\n", id, title,
		what);
	if (!t->n) {
		fputs("<p>None.</p></section>\n", out);
		return;
	}
	thead(out, "Closed|#Conn|User|Client|Destination|#Up|#Down|#Duration|End");
	for (size_t i = 0; i < t->n; i++) {
		const struct audit_report_conn *c = &t->v[i];
		fputs("<tr>", out);
		td_when(out, c->t, c->has_t);
		fprintf(out, "<td class=\"n\">%" PRIu64 "</td>", c->id);	/* an id: no grouping */
		td_text(out, c->user);
		td_text(out, c->client);
		td_text(out, c->dst);
		td_bytes(out, c->up);
		td_bytes(out, c->down);
		fputs("<td class=\"n\">", out);
		duration(out, c->duration_ms);
		fputs("</td>", out);
		td_text(out, c->end);
		fputs("</tr>\n", out);
	}
	fputs("</tbody></table></section>\n", out);
}

static const char *event_label(enum audit_report_event_kind k)
{
	switch (k) {
	case AUDIT_REPORT_EV_START: return "start";
	case AUDIT_REPORT_EV_SHUTDOWN: return "shutdown";
	case AUDIT_REPORT_EV_UNCLEAN: return "<span class=\"tag red\">unclean shutdown</span>";
	case AUDIT_REPORT_EV_DOWN: return "not running";
	case AUDIT_REPORT_EV_RELOAD: return "reload";
	case AUDIT_REPORT_EV_SINK_ERROR: return "<span class=\"tag red\">records lost</span>";
	case AUDIT_REPORT_EV_SEQ_GAP: return "<span class=\"tag red\">seq gap</span>";
	case AUDIT_REPORT_EV_CHAIN: return "<span class=\"tag red\">chain breaks</span>";
	case AUDIT_REPORT_EV_RECOVERY: return "<span class=\"tag amb\">recovery</span>";
	case AUDIT_REPORT_EV_TAILNET: return "<span class=\"tag\">tailnet</span>";
	default: return "?";
	}
}

static void html_events(FILE *out, const struct audit_report *r)
{
	const uint64_t *c = r->ev_count;
	fprintf(out, "<section id=\"events\"><h2>Events</h2>\n<p class=\"mu sm\">%" PRIu64
		" start(s), %" PRIu64 " shutdown(s), %" PRIu64 " unclean shutdown(s) (a start "
		"with no shutdown record since the start before), %" PRIu64 " reload(s), %" PRIu64
		" sink error(s) (%" PRIu64 " records lost), %" PRIu64 " seq gap(s) (%" PRIu64
		" records missing), %" PRIu64 " recovery record(s) (%" PRIu64 " connection(s) "
		"left without a close record), %" PRIu64 " change(s) in what the tailnet carries.",
		c[AUDIT_REPORT_EV_START], c[AUDIT_REPORT_EV_SHUTDOWN], c[AUDIT_REPORT_EV_UNCLEAN],
		c[AUDIT_REPORT_EV_RELOAD], c[AUDIT_REPORT_EV_SINK_ERROR], r->lost,
		c[AUDIT_REPORT_EV_SEQ_GAP], r->missing_seq, c[AUDIT_REPORT_EV_RECOVERY], r->unclosed,
		c[AUDIT_REPORT_EV_TAILNET]);
	if (r->n_events == AUDIT_REPORT_EVENTS)
		fprintf(out, " Only %d events are listed; marked ones (unclean shutdowns, holes) "
			"are kept first.", AUDIT_REPORT_EVENTS);
	fputs("</p>\n", out);
	if (!r->n_events) {
		fputs("<p>None.</p></section>\n", out);
		return;
	}
	thead(out, "Time|Event|Until|Detail");
	for (size_t i = 0; i < r->n_events; i++) {
		const struct audit_report_event *e = &r->events[i];
		fputs("<tr>", out);
		td_when(out, e->t, e->has_t);
		fprintf(out, "<td>%s</td>", event_label(e->kind));
		td_when(out, e->until, e->has_t && e->until != e->t);
		fputs("<td>", out);
		h(out, e->detail ? e->detail : "");
		fputs("</td></tr>\n", out);
	}
	fputs("</tbody></table></section>\n", out);
}

/* A two-column count table (connection ends, unknown record types). */
static void html_counts(FILE *out, const struct audit_report_table *t, const char *cols)
{
	size_t n;
	const struct audit_report_row **v = audit_report_sorted(t, &n);
	thead(out, cols);
	for (size_t i = 0; i < n; i++) {
		fputs("<tr>", out);
		td_text(out, v[i]->k[0]);
		td_num(out, v[i]->allow + v[i]->closed);
		fputs("</tr>\n", out);
	}
	tfoot(out, n, n, t, "rows");
	free(v);
}

static void html_other(FILE *out, const struct audit_report *r)
{
	fprintf(out, "<section id=\"other\"><h2>How connections ended</h2>\n<p class=\"mu sm\">"
		"%" PRIu64 " close record(s); %" PRIu64 " without a decision in the input (the "
		"handshake never named a target, or its decision came before the files given)."
		"</p>\n", r->closed, r->closed_unjoined);
	html_counts(out, &r->ends, "End|#Connections");
	if (r->types.n) {
		fputs("<p class=\"mu sm\">Record types this version does not know (counted, "
		      "otherwise ignored):</p>\n", out);
		html_counts(out, &r->types, "Type|#Records");
	}
	fputs("</section>\n", out);
}

static void html_about(FILE *out, const struct audit_report *r)
{
	char now[40];
	audit_read_fmt_time((int64_t)time(NULL) * 1000, now, sizeof now);
	fprintf(out, "<section id=\"about\"><h2>About this report</h2>\n<p class=\"mu sm\">"
		"Read %" PRIu64 " lines: %" PRIu64 " records, %" PRIu64 " of them in the period. "
		"The period is the first to the last record that passes the filters. "
		"Connections are counted at their decision, bytes at their close. Lifecycle "
		"records (start, shutdown, ...) are read whatever the user, client or "
		"destination filters say. The HMAC chain, when checked, covers every line of "
		"every file, filters or not. Record text is shown escaped: "
		"<span class=\"esc\">\\x1b</span> is a control byte or a byte that is not "
		"UTF-8, <span class=\"esc\">\\u{202e}</span> an invisible or "
		"direction-changing character.</p>\n<p class=\"mu sm\">Limits (memory stays "
		"bounded whatever the input): each table keeps %zu rows, further keys are "
		"summed as <i>other</i>; tables show %zu rows; the timeline has at most %d "
		"intervals; %d events are listed; %d connections may be open at once. "
		"Generated %s by tailfence " TAILFENCE_VERSION ".</p></section>\n",
		r->lines, r->records, r->in_period, r->opt.max_keys, r->opt.top,
		AUDIT_REPORT_BUCKETS, AUDIT_REPORT_EVENTS, AUDIT_REPORT_MAX_OPEN, now);
}

bool audit_report_write_html(const struct audit_report *r, FILE *out,
			     char *const *inputs, int n_inputs)
{
	size_t n;
	const struct audit_report_row **dsts = audit_report_sorted(&r->dsts, &n);
	html_head(out, r, inputs, n_inputs);
	fputs("<main>\n", out);
	html_summary(out, r);
	html_charts(out, r);
	html_new(out, r, dsts, n);
	html_denied(out, r);
	html_pairs(out, r);
	html_dsts(out, r, dsts, n);
	html_top(out, &r->busiest, "busiest", "Busiest connections",
		 "Allowed connections by bytes up and down together.");
	html_top(out, &r->longest, "longest", "Longest connections",
		 "Allowed connections by duration.");
	html_events(out, r);
	html_other(out, r);
	html_about(out, r);
	fputs("</main></body></html>\n", out);
	free(dsts);
	return !ferror(out);
}
