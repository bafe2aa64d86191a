/*
 * test_audit_json: the audit records' JSON writer (src/audit_json.c) prints
 * the same bytes as cJSON_PrintUnformatted did for the cJSON trees the
 * records used to be built as. The reference formatter below is that old
 * way, kept here only; both format thousands of random records (hostile
 * strings: quotes, backslashes, control bytes, 0x7f, invalid UTF-8, empty,
 * long; optional fields present and absent; numbers across every range
 * that prints differently) and the lines are compared byte for byte, then
 * once more through the trail itself (audit_open, a file sink).
 */
#include "tailfence/audit.h"
#include "tailfence/text.h"

#include "../../src/audit_internal.h"

#include <cjson/cJSON.h>

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

/* ------------------------------------------- the reference: cJSON, as before */

static cJSON *ref_record_new(const char *type, const char *ts)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "v", 1);
	cJSON_AddStringToObject(o, "ts", ts);
	cJSON_AddStringToObject(o, "type", type);
	return o;
}

static void ref_add_str(cJSON *o, const char *k, const char *v)
{
	if (!v) {
		cJSON_AddNullToObject(o, k);
		return;
	}
	size_t len = strlen(v);
	bool valid = true;
	for (size_t i = 0; i < len && valid;) {
		unsigned cp;
		size_t n = text_utf8_next(v + i, len - i, &cp);
		valid = n > 0;
		i += n;
	}
	if (valid) {
		cJSON_AddStringToObject(o, k, v);
		return;
	}
	char *clean = malloc(3 * len + 1);
	text_utf8_sanitize(v, len, clean, 3 * len + 1);
	cJSON_AddStringToObject(o, k, clean);
	free(clean);
}

static void ref_add_inbound(cJSON *o, const struct audit_inbound *ib)
{
	if (!ib)
		return;
	cJSON_AddStringToObject(o, "direction", "inbound");
	ref_add_str(o, "service", ib->service);
	ref_add_str(o, "tailnet_addr", ib->tailnet_addr);
	ref_add_str(o, "tailnet_node", ib->node);
	ref_add_str(o, "tailnet_node_id", ib->node_id);
	ref_add_str(o, "tailnet_user", ib->user);
	if (ib->node) {
		cJSON *tags = cJSON_AddArrayToObject(o, "tailnet_tags");
		for (size_t i = 0; i < ib->n_tags; i++) {
			cJSON *tmp = cJSON_CreateObject();
			ref_add_str(tmp, "t", ib->tags[i]);
			cJSON_AddItemToArray(tags, cJSON_DetachItemFromObject(tmp, "t"));
			cJSON_Delete(tmp);
		}
	} else {
		cJSON_AddNullToObject(o, "tailnet_tags");
	}
}

static cJSON *ref_decision(const char *ts, const struct audit_decision *d, bool refuse)
{
	cJSON *o = ref_record_new("decision", ts);
	cJSON_AddNumberToObject(o, "conn", (double)d->conn_id);
	ref_add_str(o, "client", d->client);
	ref_add_str(o, "listener", d->listener);
	ref_add_str(o, "proto", d->proto);
	ref_add_str(o, "user", d->user);
	ref_add_str(o, "host", d->host);
	cJSON_AddNumberToObject(o, "port", d->port);
	ref_add_str(o, "addr", d->addr);
	if (refuse) {
		cJSON_AddStringToObject(o, "verdict", "deny");
		ref_add_str(o, "rule", d->rule);
		cJSON_AddStringToObject(o, "guard", "audit");
		char why[512];
		snprintf(why, sizeof why,
			 "audit trail cannot be written (on_failure=deny)%s%s",
			 d->reason ? "; policy said: " : "", d->reason ? d->reason : "");
		ref_add_str(o, "reason", why);
	} else {
		cJSON_AddStringToObject(o, "verdict", d->allow ? "allow" : "deny");
		ref_add_str(o, "rule", d->rule);
		ref_add_str(o, "guard", d->guard);
		ref_add_str(o, "reason", d->reason);
	}
	ref_add_str(o, "upstream", d->upstream);
	ref_add_str(o, "path", d->path);
	if (d->peer_name) {
		cJSON *peer = cJSON_AddObjectToObject(o, "peer");
		ref_add_str(peer, "name", d->peer_name);
		ref_add_str(peer, "id", d->peer_id);
		ref_add_str(peer, "route", d->peer_route);
	} else {
		cJSON_AddNullToObject(o, "peer");
	}
	ref_add_str(o, "userid", d->userid);
	ref_add_inbound(o, d->inbound);
	return o;
}

static cJSON *ref_close(const char *ts, const struct audit_close *c)
{
	cJSON *o = ref_record_new("close", ts);
	cJSON_AddNumberToObject(o, "conn", (double)c->conn_id);
	ref_add_str(o, "client", c->client);
	ref_add_str(o, "proto", c->proto);
	ref_add_str(o, "addr", c->addr);
	cJSON_AddNumberToObject(o, "bytes_up", (double)c->bytes_up);
	cJSON_AddNumberToObject(o, "bytes_down", (double)c->bytes_down);
	cJSON_AddNumberToObject(o, "duration_ms", (double)c->duration_ms);
	ref_add_str(o, "end", c->end);
	ref_add_str(o, "error", c->error);
	if (c->udp) {
		cJSON_AddNumberToObject(o, "datagrams_up", (double)c->datagrams_up);
		cJSON_AddNumberToObject(o, "datagrams_down", (double)c->datagrams_down);
		cJSON_AddNumberToObject(o, "dropped", (double)c->dropped);
	}
	ref_add_inbound(o, c->inbound);
	return o;
}

static void ref_add_carried(cJSON *o, const char *key, const struct audit_carried *v, size_t n)
{
	cJSON *arr = cJSON_AddArrayToObject(o, key);
	for (size_t i = 0; i < n; i++) {
		cJSON *e = cJSON_CreateObject();
		ref_add_str(e, "prefix", v[i].prefix);
		ref_add_str(e, "peer", v[i].peer);
		ref_add_str(e, "peer_id", v[i].peer_id);
		ref_add_str(e, "kind", v[i].kind);
		cJSON_AddItemToArray(arr, e);
	}
}

static cJSON *ref_tailnet(const char *ts, const struct audit_tailnet *t)
{
	cJSON *o = ref_record_new("tailnet", ts);
	ref_add_str(o, "state", t->state);
	ref_add_str(o, "reason", t->reason);
	ref_add_str(o, "self", t->self);
	cJSON_AddNumberToObject(o, "peers", (double)t->peers);
	cJSON_AddNumberToObject(o, "carried", (double)t->carried);
	ref_add_carried(o, "added", t->added, t->n_added);
	ref_add_carried(o, "removed", t->removed, t->n_removed);
	return o;
}

static cJSON *ref_event(const char *ts, const char *type, const char *detail, int pid)
{
	cJSON *o = ref_record_new(type, ts);
	ref_add_str(o, "detail", detail);
	if (strcmp(type, "start") == 0) {
		cJSON_AddStringToObject(o, "version", TAILFENCE_VERSION);
		cJSON_AddNumberToObject(o, "pid", pid);
	}
	return o;
}

/* The line cJSON printed: the tree's text and '\n'. Frees o. */
static char *ref_line(cJSON *o)
{
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	size_t n = strlen(s);
	char *line = malloc(n + 2);
	memcpy(line, s, n);
	line[n] = '\n';
	line[n + 1] = '\0';
	free(s);
	return line;
}

/* ------------------------------------------------------------ comparing */

static unsigned long compared;

/* The first byte where the writer's line differs, shown with its
 * surroundings. Frees want. */
static void same(const struct audit_json *j, bool ok, char *want, const char *what)
{
	size_t n = strlen(want);
	bool eq = ok && j->b.len == n && memcmp(j->b.p, want, n) == 0;
	compared++;
	if (!eq) {
		size_t at = 0;
		while (ok && at < n && at < j->b.len && j->b.p[at] == want[at])
			at++;
		size_t from = at > 40 ? at - 40 : 0;
		CHECK(eq, "%s: differs at byte %zu (ok %d)\n  want ...%.80s\n  got  ...%.80s",
		      what, at, ok, want + from, ok ? j->b.p + from : "");
	} else {
		passed++;
	}
	free(want);
}

/* ------------------------------------------------------- random records */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static unsigned below(unsigned n)
{
	return (unsigned)(rnd() % n);
}

/* Pieces hostile strings are made of: everything cJSON escapes, what it
 * passes through (0x7f, 0x80 and up), valid and invalid UTF-8. */
static const char *const pieces[] = {
	"a", "Z", "0", " ", "/", ":", ".", "-", "{", "}", "[", "]", ",",
	"\"", "\\", "\\\"", "\"\\", "\b", "\f", "\n", "\r", "\t",
	"\x01", "\x02", "\x07", "\x0b", "\x0e", "\x1b", "\x1f", "\x7f",
	"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xef\xbf\xbd", "\xc2\x80", "\xc2\x9f",
	"\x80", "\xbf", "\xc0\xaf", "\xc3", "\xe2\x82", "\xed\xa0\x80", "\xf4\x90\x80\x80",
	"\xf8\x88\x80\x80\x80", "\xfe", "\xff", "\\u0000", "\\n", "%s", "%d",
	"example.test", "127.0.0.1:40000", "socks5://127.0.0.1:1055", "tag:prod",
};

#define N_POOL 64
static char *pool[N_POOL];	/* this record's strings, freed before the next */
static size_t n_pool;

/* A random string: often NULL (when may_null), empty, short, or long. */
static const char *rstr(bool may_null)
{
	unsigned r = below(100);
	if (may_null && r < 20)
		return NULL;
	size_t parts;
	if (r < 25)
		parts = 0;
	else if (r < 99)
		parts = 1 + below(12);
	else
		parts = 300 + below(1500);	/* long: beyond the first buffer */
	size_t cap = 1, len = 0;
	char *s = malloc(cap);
	for (size_t i = 0; i < parts; i++) {
		const char *p = pieces[below(sizeof pieces / sizeof pieces[0])];
		size_t pl = strlen(p);
		char *t = realloc(s, cap + pl);
		s = t;
		cap += pl;
		memcpy(s + len, p, pl);
		len += pl;
	}
	s[len] = '\0';
	if (n_pool == N_POOL)
		abort();
	pool[n_pool++] = s;
	return s;
}

static void pool_free(void)
{
	for (size_t i = 0; i < n_pool; i++)
		free(pool[i]);
	n_pool = 0;
}

/* A count or an id across the ranges that print differently: small, near
 * INT_MAX, near 10^15 (where %1.15g turns to exponents), near 2^53 (where
 * doubles stop holding every integer), up to UINT64_MAX. */
static uint64_t rnum(void)
{
	static const uint64_t edges[] = {
		0, 1, 9, 10, 99, 100, 65535, INT_MAX, (uint64_t)INT_MAX + 1, UINT32_MAX,
		(uint64_t)UINT32_MAX + 1, UINT64_C(999999999999999), UINT64_C(1000000000000000),
		UINT64_C(1000000000000001), UINT64_C(9007199254740991), UINT64_C(9007199254740992),
		UINT64_C(9007199254740993), UINT64_C(12345678901234567), UINT64_C(10000000000000000),
		UINT64_C(18446744073709551615), UINT64_C(9223372036854775807),
		UINT64_C(9223372036854775808),
	};
	switch (below(6)) {
	case 0:
		return edges[below(sizeof edges / sizeof edges[0])];
	case 1:
		return edges[below(sizeof edges / sizeof edges[0])] + below(5) - 2;
	case 2:
		return below(100000);
	case 3:
		return rnd() >> below(64);
	case 4: {
		uint64_t p = 1;
		for (unsigned e = below(20); e; e--)
			p *= 10;
		return p * (1 + below(9));
	}
	default:
		return rnd();
	}
}

static const char *const tag_space[] = { "tag:a", "tag:\"b\"", "tag:\x01", "tag:\xff", "", NULL };

static void fill_inbound(struct audit_inbound *ib, const char **tags)
{
	ib->service = rstr(true);
	ib->tailnet_addr = rstr(true);
	ib->node = rstr(true);
	ib->node_id = rstr(true);
	ib->user = rstr(true);
	ib->n_tags = below(5);
	for (size_t i = 0; i < ib->n_tags; i++)
		tags[i] = below(2) ? rstr(false) : tag_space[below(5)];
	ib->tags = tags;
}

static void random_decision(struct audit_decision *d, struct audit_inbound *ib, const char **tags,
			    bool *refuse)
{
	d->conn_id = rnum();
	d->client = rstr(true);
	d->listener = rstr(true);
	d->proto = rstr(true);
	d->user = rstr(true);
	d->host = rstr(true);
	d->port = (uint16_t)rnum();
	d->addr = rstr(true);
	d->allow = below(2);
	d->rule = rstr(true);
	d->guard = rstr(true);
	d->reason = rstr(true);
	d->upstream = rstr(true);
	d->path = rstr(true);
	d->peer_name = rstr(true);
	d->peer_id = rstr(true);
	d->peer_route = rstr(true);
	d->userid = rstr(true);
	d->inbound = NULL;
	if (below(3) == 0) {
		fill_inbound(ib, tags);
		d->inbound = ib;
	}
	*refuse = below(4) == 0;
}

static void random_close(struct audit_close *c, struct audit_inbound *ib, const char **tags)
{
	c->conn_id = rnum();
	c->client = rstr(true);
	c->proto = rstr(true);
	c->addr = rstr(true);
	c->bytes_up = rnum();
	c->bytes_down = rnum();
	c->duration_ms = rnum();
	c->end = rstr(true);
	c->error = rstr(true);
	c->udp = below(2);
	c->datagrams_up = rnum();
	c->datagrams_down = rnum();
	c->dropped = rnum();
	c->inbound = NULL;
	if (below(3) == 0) {
		fill_inbound(ib, tags);
		c->inbound = ib;
	}
}

/* ---------------------------------------------------------------- tests */

static const char TS[] = "2024-05-01T12:00:00.123Z";

static void test_records(unsigned n)
{
	struct audit_json j = { 0 };
	for (unsigned i = 0; i < n; i++) {
		struct audit_inbound ib;
		const char *tags[8];
		struct audit_decision d;
		bool refuse;
		random_decision(&d, &ib, tags, &refuse);
		bool ok = audit_fmt_decision(&j, TS, &d, refuse);
		same(&j, ok, ref_line(ref_decision(TS, &d, refuse)), "decision");
		pool_free();

		struct audit_close c;
		random_close(&c, &ib, tags);
		ok = audit_fmt_close(&j, TS, &c);
		same(&j, ok, ref_line(ref_close(TS, &c)), "close");
		pool_free();

		struct audit_carried carried[2][4];
		for (size_t k = 0; k < 2; k++)
			for (size_t m = 0; m < 4; m++)
				carried[k][m] = (struct audit_carried){
					rstr(true), rstr(true), rstr(true), rstr(true) };
		struct audit_tailnet t = {
			.state = rstr(true), .reason = rstr(true), .self = rstr(true),
			.peers = (size_t)rnum(), .carried = (size_t)rnum(),
			.added = carried[0], .n_added = below(5),
			.removed = carried[1], .n_removed = below(5),
		};
		ok = audit_fmt_tailnet(&j, TS, &t);
		same(&j, ok, ref_line(ref_tailnet(TS, &t)), "tailnet");
		pool_free();

		static const char *const types[] = { "start", "shutdown", "reload", "reopen" };
		const char *type = types[below(4)];
		const char *detail = rstr(true);
		int pid = below(2) ? (int)below(4194304) : INT_MAX;
		ok = audit_fmt_event(&j, TS, type, detail, pid);
		same(&j, ok, ref_line(ref_event(TS, type, detail, pid)), type);
		pool_free();
	}
	audit_json_free(&j);
}

/* Numbers as doubles (the recovery record's last_seq), every bit pattern,
 * and the other shapes the writer thread's records have: arrays of
 * numbers, booleans, nulls, empty arrays. */
static void test_values(unsigned n)
{
	struct audit_json j = { 0 };
	static const double edges[] = {
		0.0, -0.0, 1.0, -1.0, 0.1, 0.5, 1e-300, 5e-324, 1e15, 1e16, 1e21, 1e22,
		1.7976931348623157e308, -1e308, 123456789012345.6, 0.30000000000000004,
		2147483647.0, 2147483648.0, -2147483648.0, -2147483649.0, 9007199254740993.0,
	};
	for (unsigned i = 0; i < n; i++) {
		double v;
		if (below(3) == 0) {
			v = edges[below(sizeof edges / sizeof edges[0])];
		} else if (below(2)) {
			uint64_t bits = rnd();
			memcpy(&v, &bits, sizeof v);	/* NaNs and infinities too */
		} else {
			v = (double)(int64_t)rnd() / (double)(1 + below(1000000));
		}
		audit_json_begin(&j, "n", TS);
		audit_json_num(&j, "x", v);
		bool ok = audit_json_end(&j);
		cJSON *o = ref_record_new("n", TS);
		cJSON_AddNumberToObject(o, "x", v);
		same(&j, ok, ref_line(o), "number");

		/* a recovery record's shape */
		const char *detail = rstr(true);
		const char *start = rstr(true);
		bool has_pid = below(2), has_seq = below(2), complete = below(2);
		int pid = (int)below(100000);
		uint64_t ids[6];
		size_t n_ids = below(7);
		for (size_t k = 0; k < n_ids; k++)
			ids[k] = rnum();
		audit_json_begin(&j, "recovery", TS);
		audit_json_str(&j, "detail", detail);
		if (has_pid)
			audit_json_num(&j, "prev_pid", pid);
		else
			audit_json_null(&j, "prev_pid");
		audit_json_str(&j, "prev_start", start);
		if (has_seq)
			audit_json_num(&j, "last_seq", v);
		else
			audit_json_null(&j, "last_seq");
		audit_json_open(&j, "unclosed", '[');
		for (size_t k = 0; k < n_ids; k++)
			audit_json_u64(&j, NULL, ids[k]);
		audit_json_close(&j, ']');
		audit_json_bool(&j, "complete", complete);
		ok = audit_json_end(&j);

		o = ref_record_new("recovery", TS);
		ref_add_str(o, "detail", detail);
		if (has_pid)
			cJSON_AddNumberToObject(o, "prev_pid", pid);
		else
			cJSON_AddNullToObject(o, "prev_pid");
		ref_add_str(o, "prev_start", start);
		if (has_seq)
			cJSON_AddNumberToObject(o, "last_seq", v);
		else
			cJSON_AddNullToObject(o, "last_seq");
		cJSON *list = cJSON_CreateArray();
		for (size_t k = 0; k < n_ids; k++)
			cJSON_AddItemToArray(list, cJSON_CreateNumber((double)ids[k]));
		cJSON_AddItemToObject(o, "unclosed", list);
		cJSON_AddBoolToObject(o, "complete", complete);
		same(&j, ok, ref_line(o), "recovery shape");
		pool_free();
	}
	audit_json_free(&j);
}

/* Records through the trail itself: audit_decision() and audit_close() to
 * a file sink; each line is compared with the reference made with the
 * line's own "ts". */
static void test_trail(unsigned n)
{
	char dir[] = "/tmp/tf-audit-json-XXXXXX";
	if (!mkdtemp(dir)) {
		CHECK(false, "mkdtemp");
		return;
	}
	char path[64];
	snprintf(path, sizeof path, "%s/t.jsonl", dir);
	struct audit_sink_config sink = { .kind = AUDIT_SINK_FILE, .path = path };
	struct audit_config cfg = { .sinks = &sink, .n_sinks = 1, .flush_ms = 20 };
	char err[256];
	struct audit *a = audit_open(&cfg, err, sizeof err);
	CHECK(a != NULL, "audit_open: %s", err);
	if (!a)
		return;

	/* The records are made again, in order, from the same seed. */
	uint64_t seed = rng;
	for (unsigned i = 0; i < n; i++) {
		struct audit_inbound ib;
		const char *tags[8];
		struct audit_decision d;
		bool refuse;
		random_decision(&d, &ib, tags, &refuse);
		audit_decision(a, &d);
		pool_free();
		struct audit_close c;
		random_close(&c, &ib, tags);
		audit_close(a, &c);
		pool_free();
	}
	audit_free(a);

	FILE *f = fopen(path, "r");
	CHECK(f != NULL, "open %s", path);
	if (!f)
		return;
	rng = seed;
	char *line = NULL;
	size_t cap = 0;
	unsigned lines = 0;
	struct audit_json j = { 0 };
	for (unsigned i = 0; i < 2 * n; i++) {
		ssize_t got = getline(&line, &cap, f);
		if (got <= 0)
			break;
		lines++;
		const char *ts = strstr(line, "\"ts\":\"");
		char tsbuf[32] = "";
		if (ts)
			snprintf(tsbuf, sizeof tsbuf, "%.24s", ts + 6);
		j.b.len = 0;
		audit_buf_add(&j.b, line, (size_t)got);
		struct audit_inbound ib;
		const char *tags[8];
		if (i % 2 == 0) {
			struct audit_decision d;
			bool refuse;
			random_decision(&d, &ib, tags, &refuse);
			same(&j, true, ref_line(ref_decision(tsbuf, &d, false)), "trail decision");
		} else {
			struct audit_close c;
			random_close(&c, &ib, tags);
			same(&j, true, ref_line(ref_close(tsbuf, &c)), "trail close");
		}
		pool_free();
	}
	CHECK(lines == 2 * n, "%u records in the trail, got %u", 2 * n, lines);
	audit_json_free(&j);
	free(line);
	fclose(f);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	unsigned n = 4000;
	const char *e = getenv("TAILFENCE_TEST_N");
	if (e)
		n = (unsigned)strtoul(e, NULL, 10);
	test_records(n);
	test_values(n);
	test_trail(500);
	printf("%lu lines compared; %d passed, %d failed\n", compared, passed, failed);
	return failed ? 1 : 0;
}
