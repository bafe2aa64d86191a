/*
 * test_audit_report: the report's pure parts. Tables of record text and
 * its HTML and JSON forms (markup, control bytes, invalid and overlong
 * UTF-8, invisible and direction-changing code points, cut-off); lines fed
 * to the aggregator with known answers: the timeline keeps its sums while
 * it widens, tables stop at max_keys and sum the rest, unclean shutdowns,
 * seq gaps, new destinations, the event list's priority, hostile numbers.
 * No files, no sockets.
 */
#include "tailfence/audit_report.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static char *html_of(const char *s, size_t limit, bool spans)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	audit_report_html_text(f, s, limit, spans);
	fclose(f);
	return buf;
}

static void test_html_text(void)
{
	static const struct {
		const char *in, *out;
		bool spans;
	} cases[] = {
		{ "db.example", "db.example", true },
		{ "<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;", true },
		{ "\"'&", "&quot;&#39;&amp;", true },
		{ "a\x1b[31mb", "a<span class=\"esc\">\\x1b</span>[31mb", true },
		{ "a\x1b[31mb", "a\\x1b[31mb", false },
		{ "\x01\x7f", "\\x01\\x7f", false },
		{ "bad\xff\xfe", "bad\\xff\\xfe", false },
		{ "\xc3(", "\\xc3(", false },			/* a lead byte alone */
		{ "\xc0\xaf", "\\xc0\\xaf", false },		/* overlong "/" */
		{ "\xed\xa0\x80", "\\xed\\xa0\\x80", false },	/* a surrogate */
		{ "\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80", false },	/* above U+10FFFF */
		{ "caf\xc3\xa9 \xe6\x97\xa5", "caf\xc3\xa9 \xe6\x97\xa5", true },	/* UTF-8 stays */
		{ "rtl\xe2\x80\xaegnp.exe", "rtl\\u{202e}gnp.exe", false },
		{ "zw\xe2\x80\x8bsp", "zw\\u{200b}sp", false },
		{ "c1\xc2\x85", "c1\\u{0085}", false },
		{ "bom\xef\xbb\xbf", "bom\\u{feff}", false },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *got = html_of(cases[i].in, 1000, cases[i].spans);
		CHECK(strcmp(got, cases[i].out) == 0, "html_text(%zu): got \"%s\", want \"%s\"", i,
		      got, cases[i].out);
		free(got);
	}
	char *got = html_of("abcdefgh", 4, true);
	CHECK(strcmp(got, "abcd\xe2\x80\xa6") == 0, "cut at 4 bytes: got \"%s\"", got);
	free(got);
	got = html_of(NULL, 10, true);
	CHECK(strcmp(got, "") == 0, "NULL: got \"%s\"", got);
	free(got);
}

static void test_utf8_clean(void)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "plain", "plain" },
		{ "ctl\x01\x1b", "ctl\x01\x1b" },	/* cJSON escapes these */
		{ "bad\xff", "bad\xef\xbf\xbd" },
		{ "\xc3(", "\xef\xbf\xbd(" },
		{ "\xe2\x80\xae", "\xe2\x80\xae" },	/* valid, kept */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *got = audit_report_utf8_clean(cases[i].in);
		CHECK(strcmp(got, cases[i].out) == 0, "utf8_clean(%zu): got \"%s\"", i, got);
		free(got);
	}
}

/* ---------------------------------------------------------- aggregation */

static struct audit_report *report(size_t max_keys)
{
	struct audit_report_options o = { .max_keys = max_keys, .top = 3 };
	return audit_report_new(&o);
}

static void feed(struct audit_report *r, const char *line)
{
	audit_report_line(r, "t", 1, line, strlen(line), true);
}

static void decision(struct audit_report *r, const char *ts, int conn, const char *host,
		     bool allow)
{
	char line[512];
	snprintf(line, sizeof line,
		 "{\"v\":1,\"ts\":\"%s\",\"type\":\"decision\",\"conn\":%d,\"client\":"
		 "\"127.0.0.1:4000\",\"user\":\"u\",\"host\":\"%s\",\"port\":443,\"addr\":"
		 "\"192.0.2.1\",\"verdict\":\"%s\",\"reason\":\"r\"}",
		 ts, conn, host, allow ? "allow" : "deny");
	feed(r, line);
}

static void close_rec(struct audit_report *r, const char *ts, int conn, uint64_t up,
		      uint64_t dur)
{
	char line[512];
	snprintf(line, sizeof line,
		 "{\"v\":1,\"ts\":\"%s\",\"type\":\"close\",\"conn\":%d,\"bytes_up\":%" PRIu64
		 ",\"bytes_down\":1,\"duration_ms\":%" PRIu64 ",\"end\":\"client_eof\"}",
		 ts, conn, up, dur);
	feed(r, line);
}

static uint64_t tl_sum(const struct audit_report *r, int what)
{
	uint64_t s = 0;
	for (size_t i = 0; i < r->tl.n; i++)
		s += what == 0 ? r->tl.b[i].allow : what == 1 ? r->tl.b[i].deny : r->tl.b[i].up;
	return s;
}

static void test_timeline_widens(void)
{
	struct audit_report *r = report(100);
	/* one second apart, then days, then years, then back before the start */
	static const char *const ts[] = {
		"2024-05-01T12:00:00.000Z", "2024-05-01T12:00:01.000Z", "2024-05-01T12:00:02.500Z",
		"2024-05-03T00:00:00.000Z", "2024-09-01T00:00:00.000Z", "2024-04-30T23:59:59.999Z",
		"2031-01-01T00:00:00.000Z", "1999-01-01T00:00:00.000Z",
	};
	for (int i = 0; i < 8; i++) {
		decision(r, ts[i], i + 1, "h.test", i % 2 == 0);
		close_rec(r, ts[i], i + 1, 1000, 300000);
		CHECK(r->tl.n <= AUDIT_REPORT_BUCKETS, "timeline has %zu intervals", r->tl.n);
		CHECK(tl_sum(r, 0) + tl_sum(r, 1) == (uint64_t)i + 1, "decisions %d", i);
		CHECK(tl_sum(r, 2) == 1000u * (uint64_t)(i + 1), "bytes after %d: %" PRIu64, i,
		      tl_sum(r, 2));
		CHECK(r->tl.start % r->tl.width == 0, "start is a multiple of the width");
	}
	CHECK(tl_sum(r, 0) == 4 && tl_sum(r, 1) == 4, "4 allowed, 4 denied");
	audit_report_finish(r);
	audit_report_free(r);
}

static void test_bytes_spread(void)
{
	struct audit_report *r = report(100);
	decision(r, "2024-05-01T12:00:00.000Z", 1, "h.test", true);
	/* 10 s of 100 ms intervals, then a 5 s connection of 5000 bytes */
	close_rec(r, "2024-05-01T12:00:10.000Z", 2, 0, 0);
	close_rec(r, "2024-05-01T12:00:10.000Z", 1, 5000, 5000);
	CHECK(r->tl.width == 100 && r->tl.n == 101, "width %" PRId64 " n %zu", r->tl.width, r->tl.n);
	for (size_t i = 50; i < 100; i++)
		CHECK(r->tl.b[i].up == 100, "interval %zu: %" PRIu64, i, r->tl.b[i].up);
	CHECK(r->tl.b[49].up == 0 && r->tl.b[100].up == 0, "nothing outside the lifetime");
	audit_report_free(r);
}

static void test_table_cap(void)
{
	struct audit_report *r = report(3);
	char host[32];
	for (int i = 0; i < 10; i++) {
		snprintf(host, sizeof host, "h%d.test", i);
		decision(r, "2024-05-01T12:00:00.000Z", i + 1, host, true);
		close_rec(r, "2024-05-01T12:00:01.000Z", i + 1, 10, 5);
	}
	CHECK(r->dsts.n == 3 && r->dsts.full, "3 rows, full");
	CHECK(r->dsts.other.allow == 7 && r->dsts.other.up == 70, "other: %" PRIu64 " %" PRIu64,
	      r->dsts.other.allow, r->dsts.other.up);
	CHECK(r->allow == 10 && r->up == 100, "totals are exact");
	CHECK(r->busiest.n == 3, "top keeps 3");
	decision(r, "2024-05-01T12:00:02.000Z", 99, "h0.test", false);
	close_rec(r, "2024-05-01T12:00:02.000Z", 99, UINT64_MAX, UINT64_MAX);
	for (size_t i = 0; i < r->busiest.n; i++)
		CHECK(r->busiest.v[i].up != UINT64_MAX && r->longest.v[i].duration_ms != UINT64_MAX,
		      "denied connections are not in the busiest or longest lists");
	audit_report_free(r);
}

static void test_lifecycle(void)
{
	struct audit_report *r = report(100);
	feed(r, "{\"v\":1,\"seq\":0,\"ts\":\"2024-05-01T10:00:00Z\",\"type\":\"start\"}");
	feed(r, "{\"v\":1,\"seq\":1,\"ts\":\"2024-05-01T10:05:00Z\",\"type\":\"reload\"}");
	/* seq 2 and 3 are missing; then a start without a shutdown */
	feed(r, "{\"v\":1,\"seq\":4,\"ts\":\"2024-05-01T11:00:00Z\",\"type\":\"start\"}");
	feed(r, "{\"v\":1,\"seq\":5,\"ts\":\"2024-05-01T12:00:00Z\",\"type\":\"shutdown\"}");
	feed(r, "{\"v\":1,\"seq\":6,\"ts\":\"2024-05-01T12:00:00Z\",\"type\":\"checkpoint\","
		"\"reason\":\"shutdown\"}");
	/* a new chain after a shutdown checkpoint is no gap */
	feed(r, "{\"v\":1,\"seq\":0,\"ts\":\"2024-05-01T13:00:00Z\",\"type\":\"start\"}");
	feed(r, "{\"v\":1,\"seq\":1,\"ts\":\"2024-05-01T13:00:01Z\",\"type\":\"sink_error\","
		"\"lost\":1e300}");
	feed(r, "{\"v\":1,\"seq\":2,\"ts\":\"2024-05-01T13:00:02Z\",\"type\":\"something_new\"}");
	feed(r, "not json");
	audit_report_finish(r);
	const uint64_t *c = r->ev_count;
	CHECK(c[AUDIT_REPORT_EV_START] == 3 && c[AUDIT_REPORT_EV_UNCLEAN] == 1 &&
	      c[AUDIT_REPORT_EV_DOWN] == 1, "starts, unclean, stopped");
	CHECK(c[AUDIT_REPORT_EV_SEQ_GAP] == 1 && r->missing_seq == 2, "seq gap of 2");
	CHECK(r->lost == UINT64_MAX, "lost clamped: %" PRIu64, r->lost);
	CHECK(r->types.n == 1 && r->bad_lines == 1, "unknown type counted, bad line counted");
	bool found = false;
	for (size_t i = 0; i < r->n_events; i++) {
		const struct audit_report_event *e = &r->events[i];
		if (e->kind == AUDIT_REPORT_EV_UNCLEAN)
			found = e->has_t && e->until - e->t == 55 * 60 * 1000;
	}
	CHECK(found, "the unclean span runs from the reload to the next start");
	audit_report_free(r);
}

static void test_event_priority(void)
{
	struct audit_report *r = report(100);
	char line[256];
	for (int i = 0; i < AUDIT_REPORT_EVENTS + 10; i++) {
		snprintf(line, sizeof line, "{\"v\":1,\"ts\":\"2024-05-01T10:00:00Z\",\"type\":"
			 "\"reload\",\"detail\":\"%d\"}", i);
		feed(r, line);
	}
	feed(r, "{\"v\":1,\"ts\":\"2024-05-01T11:00:00Z\",\"type\":\"recovery\"}");
	CHECK(r->n_events == AUDIT_REPORT_EVENTS, "the list is capped");
	CHECK(r->events[r->n_events - 1].kind == AUDIT_REPORT_EV_RECOVERY,
	      "a marked event displaces a routine one");
	CHECK(r->ev_count[AUDIT_REPORT_EV_RELOAD] == AUDIT_REPORT_EVENTS + 10, "counts are exact");
	audit_report_free(r);

	/* tailnet changes give way to holes, routine events to both */
	r = report(100);
	for (int i = 0; i < AUDIT_REPORT_EVENTS; i++)
		feed(r, "{\"v\":1,\"ts\":\"2024-05-01T10:00:00Z\",\"type\":\"tailnet\","
			"\"state\":\"running\",\"peers\":1,\"carried\":1,\"added\":[],\"removed\":[]}");
	feed(r, "{\"v\":1,\"ts\":\"2024-05-01T11:00:00Z\",\"type\":\"reload\"}");
	CHECK(r->events[r->n_events - 1].kind == AUDIT_REPORT_EV_TAILNET, "a reload does not");
	feed(r, "{\"v\":1,\"ts\":\"2024-05-01T11:00:00Z\",\"type\":\"sink_error\",\"lost\":2}");
	CHECK(r->events[r->n_events - 1].kind == AUDIT_REPORT_EV_SINK_ERROR,
	      "lost records displace a tailnet change");
	CHECK(r->n_events == AUDIT_REPORT_EVENTS && r->lost == 2, "capped; lost counted");
	audit_report_free(r);
}

static void test_new_destinations(void)
{
	/* no history: the first day is the history */
	struct audit_report *r = report(100);
	decision(r, "2024-05-01T10:00:00Z", 1, "old.test", true);
	decision(r, "2024-05-02T10:00:00Z", 2, "old.test", true);
	decision(r, "2024-05-02T11:00:00Z", 3, "new.test", false);
	audit_report_finish(r);
	CHECK(r->history_from_first_day && r->new_dsts == 1, "first day: %" PRIu64, r->new_dsts);
	audit_report_free(r);

	/* --since: the records before it are the history */
	struct audit_report_options o = { .max_keys = 100 };
	o.filter.has_since = true;
	o.filter.since = 1714608000000;	/* 2024-05-02T00:00:00Z */
	r = audit_report_new(&o);
	decision(r, "2024-05-01T10:00:00Z", 1, "old.test", true);
	decision(r, "2024-05-02T10:00:00Z", 2, "old.test", true);
	decision(r, "2024-05-02T11:00:00Z", 3, "new.test", true);
	audit_report_finish(r);
	CHECK(!r->history_from_first_day && r->history_n == 1 && r->new_dsts == 1 &&
	      r->allow == 2, "history before --since");
	audit_report_free(r);
}

int main(void)
{
	test_html_text();
	test_utf8_clean();
	test_timeline_widens();
	test_bytes_spread();
	test_table_cap();
	test_lifecycle();
	test_event_priority();
	test_new_destinations();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
