/*
 * test_audit: the audit trail's record format, the HMAC chain and its
 * verifier (every tamper case), rotation without loss, fail-closed, and the
 * review commands (filters, summary) on a recorded log with known answers.
 * Files live in a fresh temporary directory; no sockets.
 */
#include "tailfence/audit.h"
#include "tailfence/audit_read.h"
#include "tailfence/cli.h"

#include <cjson/cJSON.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static char dir[256];

/* A path in the test directory, valid until main() returns. */
static char *paths[256];
static size_t n_paths;

static const char *path_in(const char *name)
{
	char *p = malloc(strlen(dir) + strlen(name) + 2);
	sprintf(p, "%s/%s", dir, name);
	if (n_paths < sizeof paths / sizeof paths[0])
		paths[n_paths++] = p;
	return p;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
}

/* Lines of a file (newline kept off), with a flag for a final partial one. */
struct lines {
	char **v;
	size_t n;
	bool last_partial;
};

static struct lines read_lines(const char *path)
{
	struct lines l = { 0 };
	FILE *f = fopen(path, "r");
	if (!f)
		return l;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	while ((n = getline(&line, &cap, f)) > 0) {
		l.v = realloc(l.v, (l.n + 1) * sizeof *l.v);
		bool nl = line[n - 1] == '\n';
		if (nl)
			line[n - 1] = '\0';
		l.last_partial = !nl;
		l.v[l.n++] = strdup(line);
	}
	free(line);
	fclose(f);
	return l;
}

static void free_lines(struct lines *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof *l);
}

static void write_lines(const char *path, const struct lines *l, bool partial_last)
{
	FILE *f = fopen(path, "w");
	for (size_t i = 0; i < l->n; i++) {
		fputs(l->v[i], f);
		if (!(partial_last && i == l->n - 1))
			fputc('\n', f);
	}
	fclose(f);
}

static struct audit *open_trail(const char *file, const char *key, bool fail_closed)
{
	struct audit_sink_config sink = { .kind = AUDIT_SINK_FILE, .path = (char *)file };
	struct audit_config cfg = {
		.sinks = &sink, .n_sinks = 1, .fail_closed = fail_closed,
		.hmac_key_file = (char *)key, .flush_ms = 20,
	};
	char err[512];
	struct audit *a = audit_open(&cfg, err, sizeof err);
	if (!a)
		fprintf(stderr, "audit_open: %s\n", err);
	return a;
}

static void one_decision(struct audit *a, uint64_t id, bool allow)
{
	struct audit_decision d = {
		.conn_id = id, .client = "127.0.0.1:40000", .listener = "127.0.0.1:1080",
		.proto = "socks5", .user = "alice", .host = "db.internal", .port = 5432,
		.addr = "127.0.0.7", .allow = allow, .rule = allow ? "db" : NULL,
		.guard = allow ? NULL : "loopback", .reason = "test", .upstream = "direct",
	};
	audit_decision(a, &d);
}

static void one_close(struct audit *a, uint64_t id)
{
	struct audit_close c = { .conn_id = id, .bytes_up = 10 * id, .bytes_down = 100 * id,
				 .duration_ms = 5, .end = "client_eof" };
	audit_close(a, &c);
}

/* Writes a signed trail of n connections (plus start/shutdown). */
static void make_trail(const char *file, const char *key, int n)
{
	unlink(file);
	struct audit *a = open_trail(file, key, false);
	audit_event(a, "start", "test");
	for (int i = 1; i <= n; i++) {
		one_decision(a, (uint64_t)i, i % 3 != 0);
		one_close(a, (uint64_t)i);
	}
	audit_event(a, "shutdown", NULL);
	audit_free(a);
}

/* ------------------------------------------------------- record format */

static void test_format(void)
{
	const char *file = path_in("format.jsonl");
	unlink(file);
	struct audit *a = open_trail(file, NULL, false);
	CHECK(a != NULL, "open without key");
	struct audit_decision d = {
		.conn_id = 42, .client = "127.0.0.1:40000", .listener = "127.0.0.1:1080",
		.proto = "http-connect", .user = NULL, .host = "example.test", .port = 443,
		.addr = "127.0.0.9", .allow = true, .rule = "web", .guard = NULL,
		.reason = "rule web accepts", .upstream = "socks5://127.0.0.1:1055",
	};
	CHECK(audit_decision(a, &d), "decision accepted");
	struct audit_close c = {
		.conn_id = 42, .client = "127.0.0.1:40000", .proto = "http-connect",
		.addr = "127.0.0.9", .bytes_up = 1234, .bytes_down = 56789, .duration_ms = 1500,
		.end = "error", .error = "connection reset by peer",
	};
	audit_close(a, &c);
	audit_event(a, "reload", "config.json");
	audit_free(a);

	struct lines l = read_lines(file);
	CHECK(l.n == 3, "3 records written, got %zu", l.n);
	if (l.n != 3)
		goto out;
	cJSON *o = cJSON_Parse(l.v[0]);
	CHECK(o != NULL, "decision is JSON");
	static const char *const want_keys[] = {
		"v", "ts", "type", "conn", "client", "listener", "proto", "user", "host",
		"port", "addr", "verdict", "rule", "guard", "reason", "upstream", "path", "peer",
		"userid",
	};
	size_t k = 0;
	for (cJSON *it = o ? o->child : NULL; it; it = it->next, k++)
		CHECK(k < 19 && strcmp(it->string, want_keys[k]) == 0,
		      "decision key %zu is %s", k, it->string);
	CHECK(k == 19, "decision has 19 fields, got %zu", k);
	CHECK(cJSON_GetObjectItem(o, "v")->valueint == 1, "v is 1");
	const char *ts = cJSON_GetObjectItem(o, "ts")->valuestring;
	int64_t ms;
	CHECK(strlen(ts) == 24 && ts[10] == 'T' && ts[19] == '.' && ts[23] == 'Z' &&
	      audit_read_time_parse(ts, strlen(ts), &ms), "ts %s is RFC 3339 UTC with ms", ts);
	CHECK(strcmp(cJSON_GetObjectItem(o, "type")->valuestring, "decision") == 0, "type");
	CHECK(cJSON_GetObjectItem(o, "conn")->valuedouble == 42, "conn");
	CHECK(cJSON_IsNull(cJSON_GetObjectItem(o, "user")), "unknown user is null");
	CHECK(cJSON_IsNull(cJSON_GetObjectItem(o, "guard")), "no guard is null");
	CHECK(cJSON_GetObjectItem(o, "port")->valueint == 443, "port is a number");
	CHECK(strcmp(cJSON_GetObjectItem(o, "verdict")->valuestring, "allow") == 0, "verdict");
	CHECK(strcmp(cJSON_GetObjectItem(o, "upstream")->valuestring,
		     "socks5://127.0.0.1:1055") == 0, "upstream");
	CHECK(!cJSON_GetObjectItem(o, "seq") && !cJSON_GetObjectItem(o, "mac"),
	      "no chain fields without a key");
	cJSON_Delete(o);

	o = cJSON_Parse(l.v[1]);
	CHECK(o && strcmp(cJSON_GetObjectItem(o, "type")->valuestring, "close") == 0, "close type");
	CHECK(o && strcmp(cJSON_GetObjectItem(o, "client")->valuestring, "127.0.0.1:40000") == 0,
	      "close names the client");
	CHECK(o && strcmp(cJSON_GetObjectItem(o, "addr")->valuestring, "127.0.0.9") == 0,
	      "close names the connected address");
	CHECK(o && cJSON_GetObjectItem(o, "bytes_up")->valuedouble == 1234, "bytes_up");
	CHECK(o && cJSON_GetObjectItem(o, "bytes_down")->valuedouble == 56789, "bytes_down");
	CHECK(o && cJSON_GetObjectItem(o, "duration_ms")->valuedouble == 1500, "duration_ms");
	CHECK(o && strcmp(cJSON_GetObjectItem(o, "end")->valuestring, "error") == 0, "end");
	CHECK(o && strcmp(cJSON_GetObjectItem(o, "error")->valuestring,
			  "connection reset by peer") == 0, "error text");
	cJSON_Delete(o);

	o = cJSON_Parse(l.v[2]);
	CHECK(o && strcmp(cJSON_GetObjectItem(o, "type")->valuestring, "reload") == 0 &&
	      strcmp(cJSON_GetObjectItem(o, "detail")->valuestring, "config.json") == 0,
	      "reload record with detail");
	cJSON_Delete(o);
out:
	free_lines(&l);

	/* With a key: seq from 0, mac last, a final shutdown checkpoint. */
	make_trail(file, path_in("key"), 2);
	l = read_lines(file);
	CHECK(l.n == 7, "start + 2x(decision, close) + shutdown + checkpoint = 7, got %zu", l.n);
	for (size_t i = 0; i < l.n; i++) {
		cJSON *r = cJSON_Parse(l.v[i]);
		cJSON *seq = cJSON_GetObjectItem(r, "seq");
		cJSON *mac = cJSON_GetObjectItem(r, "mac");
		CHECK(seq && seq->valuedouble == (double)i, "line %zu has seq %zu", i + 1, i);
		CHECK(mac && strlen(mac->valuestring) == 64, "line %zu has a 64-hex mac", i + 1);
		size_t len = strlen(l.v[i]);
		CHECK(len > 74 && strncmp(l.v[i] + len - 74, ",\"mac\":\"", 8) == 0,
		      "mac is the last field of line %zu", i + 1);
		cJSON_Delete(r);
	}
	if (l.n == 7) {
		cJSON *r = cJSON_Parse(l.v[6]);
		CHECK(strcmp(cJSON_GetObjectItem(r, "type")->valuestring, "checkpoint") == 0 &&
		      strcmp(cJSON_GetObjectItem(r, "reason")->valuestring, "shutdown") == 0 &&
		      cJSON_GetObjectItem(r, "key_id"), "last record is the shutdown checkpoint");
		cJSON_Delete(r);
	}
	free_lines(&l);
}

/* ------------------------------------------------------------- verify */

static bool verify_files(const char *keyfile, const char *const *files, size_t n,
			 char *msg, size_t msglen)
{
	unsigned char *key;
	size_t keylen;
	char err[256];
	if (!audit_key_load(keyfile, &key, &keylen, err, sizeof err)) {
		snprintf(msg, msglen, "%s", err);
		return false;
	}
	struct audit_verify *v = audit_verify_new(key, keylen);
	free(key);
	for (size_t f = 0; f < n; f++) {
		struct lines l = read_lines(files[f]);
		for (size_t i = 0; i < l.n; i++)
			audit_verify_line(v, files[f], i + 1, l.v[i], strlen(l.v[i]),
					  !(l.last_partial && i == l.n - 1));
		free_lines(&l);
	}
	bool ok = audit_verify_finish(v, msg, msglen);
	audit_verify_free(v);
	return ok;
}

static void swap(struct lines *l, size_t i, size_t j)
{
	char *t = l->v[i];
	l->v[i] = l->v[j];
	l->v[j] = t;
}

static void del(struct lines *l, size_t i)
{
	free(l->v[i]);
	memmove(l->v + i, l->v + i + 1, (l->n - i - 1) * sizeof *l->v);
	l->n--;
}

static void replace(struct lines *l, size_t i, const char *from, const char *to)
{
	char *p = strstr(l->v[i], from);
	if (!p)
		return;
	char *n = malloc(strlen(l->v[i]) + strlen(to) + 1);
	sprintf(n, "%.*s%s%s", (int)(p - l->v[i]), l->v[i], to, p + strlen(from));
	free(l->v[i]);
	l->v[i] = n;
}

enum tamper { T_NONE, T_EDIT, T_EDIT_VERDICT, T_DELETE, T_DELETE_FIRST, T_REORDER,
	      T_TRUNCATE, T_PARTIAL, T_INSERT, T_DROP_MAC };

static void test_verify(void)
{
	const char *file = path_in("chain.jsonl");
	const char *key = path_in("key"), *other = path_in("otherkey");
	make_trail(file, key, 6);	/* 15 lines: start, 12, shutdown, checkpoint */

	static const struct {
		const char *name;
		enum tamper t;
		bool other_key;
		bool ok;
		const char *want;	/* substring of the message */
	} cases[] = {
		{ "intact", T_NONE, false, true, "verified: 15 records" },
		{ "edited bytes_up", T_EDIT, false, false, "t.jsonl:5: edited record" },
		{ "edited verdict", T_EDIT_VERDICT, false, false, "t.jsonl:6: edited record" },
		{ "deleted line", T_DELETE, false, false, "t.jsonl:6: deleted record(s): seq jumps from 4 to 6" },
		{ "deleted first line", T_DELETE_FIRST, false, false, "t.jsonl:1: deleted record(s) at the head" },
		{ "reordered lines", T_REORDER, false, false, "t.jsonl:4: reordered lines" },
		{ "truncated tail", T_TRUNCATE, false, false, "t.jsonl:12: truncated tail" },
		{ "partial last line", T_PARTIAL, false, false, "t.jsonl:15: truncated tail: the last line is a partial record" },
		{ "inserted line", T_INSERT, false, false, "t.jsonl:3: record has no MAC" },
		{ "mac removed", T_DROP_MAC, false, false, "t.jsonl:6: record has no MAC" },
		{ "another key", T_NONE, true, false, "t.jsonl:1: MACs do not match this key from the first record on" },
	};
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		struct lines l = read_lines(file);
		bool partial = false;
		switch (cases[c].t) {
		case T_NONE:
			break;
		case T_EDIT:
			replace(&l, 4, "\"bytes_up\":20", "\"bytes_up\":2");
			break;
		case T_EDIT_VERDICT:
			replace(&l, 5, "\"verdict\":\"deny\"", "\"verdict\":\"allow\"");
			break;
		case T_DELETE:
			del(&l, 5);
			break;
		case T_DELETE_FIRST:
			del(&l, 0);
			break;
		case T_REORDER:
			swap(&l, 3, 4);
			break;
		case T_TRUNCATE:
			while (l.n > 12)
				del(&l, l.n - 1);
			break;
		case T_PARTIAL:
			l.v[l.n - 1][strlen(l.v[l.n - 1]) - 20] = '\0';
			partial = true;
			break;
		case T_INSERT: {
			l.v = realloc(l.v, (l.n + 1) * sizeof *l.v);
			memmove(l.v + 3, l.v + 2, (l.n - 2) * sizeof *l.v);
			l.v[2] = strdup("{\"v\":1,\"ts\":\"2024-01-01T00:00:00.000Z\",\"type\":\"decision\",\"conn\":99}");
			l.n++;
			break;
		}
		case T_DROP_MAC: {
			char *p = strstr(l.v[5], ",\"mac\":");
			strcpy(p, "}");
			break;
		}
		}
		const char *tf = path_in("t.jsonl");
		write_lines(tf, &l, partial);
		free_lines(&l);
		char msg[1024];
		bool ok = verify_files(cases[c].other_key ? other : key, &tf, 1, msg, sizeof msg);
		CHECK(ok == cases[c].ok && strstr(msg, cases[c].want),
		      "verify %s: got %s \"%s\", want %s \"%s\"", cases[c].name,
		      ok ? "ok" : "broken", msg, cases[c].ok ? "ok" : "broken", cases[c].want);
	}

	/* The CLI: exit 0 verified, 1 not verified, 2 error. */
	char *argv_ok[] = { "audit", "verify", "--key", (char *)key, (char *)file, NULL };
	char *argv_bad[] = { "audit", "verify", "--key", (char *)other, (char *)file, NULL };
	char *argv_err[] = { "audit", "verify", "--key", (char *)key, (char *)path_in("nope"), NULL };
	fflush(stdout);
	int saved = dup(1);
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	int rc_ok = audit_cli_main(5, argv_ok);
	int rc_bad = audit_cli_main(5, argv_bad);
	int rc_err = audit_cli_main(5, argv_err);
	fflush(stdout);
	dup2(saved, 1);
	close(saved);
	close(null);
	CHECK(rc_ok == 0 && rc_bad == 1 && rc_err == 2,
	      "verify exit codes 0/1/2, got %d/%d/%d", rc_ok, rc_bad, rc_err);
}

/* ------------------------------------------------ rotation and restarts */

struct writer_arg {
	struct audit *a;
	int base, n;
};

static void *writer(void *p)
{
	struct writer_arg *w = p;
	for (int i = 0; i < w->n; i++) {
		one_decision(w->a, (uint64_t)(w->base + i), true);
		one_close(w->a, (uint64_t)(w->base + i));
	}
	return NULL;
}

static size_t count_type(const char *path, const char *type, size_t *total)
{
	struct lines l = read_lines(path);
	char needle[64];
	snprintf(needle, sizeof needle, "\"type\":\"%s\"", type);
	size_t n = 0;
	for (size_t i = 0; i < l.n; i++)
		if (strstr(l.v[i], needle))
			n++;
	if (total)
		*total += l.n;
	free_lines(&l);
	return n;
}

static void test_reopen(void)
{
	const char *live = path_in("live.jsonl");
	const char *key = path_in("key");
	unlink(live);
	struct audit *a = open_trail(live, key, false);
	enum { PER_THREAD = 20000, ROTATIONS = 10 };
	struct writer_arg w1 = { a, 1, PER_THREAD }, w2 = { a, 1000001, PER_THREAD };
	pthread_t t1, t2;
	pthread_create(&t1, NULL, writer, &w1);
	pthread_create(&t2, NULL, writer, &w2);
	char rotated[ROTATIONS][512];
	for (int r = 0; r < ROTATIONS; r++) {
		struct timespec ts = { .tv_nsec = 5 * 1000 * 1000 };
		nanosleep(&ts, NULL);
		snprintf(rotated[r], sizeof rotated[r], "%s.%d", live, r);
		CHECK(rename(live, rotated[r]) == 0, "rename %d: %s", r, strerror(errno));
		audit_reopen(a);	/* what logrotate does: rename, then SIGUSR1 */
		/* the next rotation waits for the new file, as logrotate would */
		for (int i = 0; i < 1000 && access(live, F_OK) != 0; i++)
			nanosleep(&ts, NULL);
	}
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	audit_free(a);

	size_t decisions = 0, closes = 0, checkpoints = 0, lines = 0;
	const char *files[ROTATIONS + 1];
	for (int r = 0; r < ROTATIONS; r++) {
		files[r] = rotated[r];
		decisions += count_type(rotated[r], "decision", &lines);
		closes += count_type(rotated[r], "close", NULL);
		checkpoints += count_type(rotated[r], "checkpoint", NULL);
	}
	files[ROTATIONS] = live;
	decisions += count_type(live, "decision", &lines);
	closes += count_type(live, "close", NULL);
	checkpoints += count_type(live, "checkpoint", NULL);
	CHECK(decisions == 2 * PER_THREAD, "decisions after rotation: %zu, want %d",
	      decisions, 2 * PER_THREAD);
	CHECK(closes == 2 * PER_THREAD, "closes after rotation: %zu, want %d", closes,
	      2 * PER_THREAD);
	CHECK(checkpoints == ROTATIONS + 1, "one checkpoint per rotation + shutdown: %zu",
	      checkpoints);
	CHECK(lines == decisions + closes + checkpoints, "no other lines: %zu", lines);

	char msg[1024];
	bool ok = verify_files(key, files, ROTATIONS + 1, msg, sizeof msg);
	CHECK(ok, "chain verifies across %d rotated files: %s", ROTATIONS + 1, msg);
	/* Every rotated file but the first ends with a rotate checkpoint and
	 * links back; given alone, the newest verifies with a note. */
	ok = verify_files(key, &files[ROTATIONS], 1, msg, sizeof msg);
	CHECK(ok && strstr(msg, "links to an earlier file"), "newest file alone: %s", msg);
	/* Files out of order: the link is broken. */
	const char *swapped[] = { files[1], files[0] };
	ok = verify_files(key, swapped, 2, msg, sizeof msg);
	CHECK(!ok, "rotated files in the wrong order do not verify: %s", msg);
	/* A missing middle file is a gap. */
	const char *gap[] = { files[0], files[2] };
	ok = verify_files(key, gap, 2, msg, sizeof msg);
	CHECK(!ok && strstr(msg, "deleted record(s)"), "missing rotated file: %s", msg);

	/* A restart continues the chain from the file's last record. */
	const char *f = path_in("restart.jsonl");
	make_trail(f, key, 2);
	struct audit *b = open_trail(f, key, false);
	audit_event(b, "start", "second run");
	audit_free(b);
	ok = verify_files(key, &f, 1, msg, sizeof msg);
	CHECK(ok && strstr(msg, "verified: 9 records, seq 0..8"), "restart continues the chain: %s", msg);
}

/* ---------------------------------------------------------- fail closed */

static void test_fail_closed(void)
{
	/* /dev/full accepts open(O_APPEND) and fails every write with ENOSPC. */
	if (access("/dev/full", W_OK) != 0) {
		fprintf(stderr, "skip fail-closed: no /dev/full\n");
		return;
	}
	for (int closed = 0; closed <= 1; closed++) {
		struct audit *a = open_trail("/dev/full", NULL, closed);
		CHECK(a != NULL, "open /dev/full");
		if (!a)
			continue;
		CHECK(audit_healthy(a), "healthy before the first write");
		one_decision(a, 1, true);
		/* wait (generously) for the writer to hit the error */
		for (int i = 0; i < 500 && audit_healthy(a); i++) {
			struct timespec ts = { .tv_nsec = 10 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
		CHECK(!audit_healthy(a), "unhealthy after a failed write (fail_closed=%d)", closed);
		struct audit_decision d = { .conn_id = 2, .allow = true, .proto = "socks5" };
		bool admitted = audit_decision(a, &d);
		CHECK(admitted == !closed, "fail_closed=%d: decision returns %d", closed, admitted);
		audit_free(a);
	}
}

/* ----------------------------------------------------------- open errors */

/* A sink that cannot be opened fails audit_open() with a sentence, and
 * closes no descriptor that the trail did not open (the sinks after it
 * were never opened). */
static void test_open_error(void)
{
	/* Descriptor 0 is the one a zeroed sink would name. */
	bool opened0 = fcntl(0, F_GETFD) < 0 && open("/dev/null", O_RDONLY) == 0;
	struct audit_sink_config sinks[] = {
		{ .kind = AUDIT_SINK_FILE, .path = (char *)path_in("no/such/dir/audit.jsonl") },
		{ .kind = AUDIT_SINK_STDOUT },
		{ .kind = AUDIT_SINK_STDOUT },
	};
	struct audit_config cfg = { .sinks = sinks, .n_sinks = 3, .flush_ms = 20 };
	char err[512] = "";
	struct audit *a = audit_open(&cfg, err, sizeof err);
	CHECK(!a && strstr(err, "audit.sinks[0]: cannot open"), "unopenable sink: %s", err);
	audit_free(a);
	CHECK(fcntl(0, F_GETFD) >= 0, "descriptor 0 is still open after a failed audit_open");
	if (opened0)
		close(0);
}

/* ------------------------------------------------------------- recovery */

static char *run_cli(int *rc, const char *first, ...);

/* The first record of a type in a file (caller deletes), and its line. */
static cJSON *find_record(const char *file, const char *type, size_t *lineno)
{
	struct lines l = read_lines(file);
	cJSON *found = NULL;
	for (size_t i = 0; i < l.n && !found; i++) {
		cJSON *o = cJSON_Parse(l.v[i]);
		cJSON *t = cJSON_GetObjectItem(o, "type");
		if (cJSON_IsString(t) && strcmp(t->valuestring, type) == 0) {
			found = o;
			if (lineno)
				*lineno = i + 1;
		} else {
			cJSON_Delete(o);
		}
	}
	free_lines(&l);
	return found;
}

/* The "unclosed" list of a recovery record as "2,3". */
static void unclosed_list(const cJSON *rec, char *out, size_t len)
{
	out[0] = '\0';
	const cJSON *u = cJSON_GetObjectItem(rec, "unclosed");
	const cJSON *it;
	cJSON_ArrayForEach(it, u) {
		size_t l = strlen(out);
		snprintf(out + l, len - l, "%s%.0f", l ? "," : "", it->valuedouble);
	}
}

/* Opens the trail as a restarted daemon would: audit_start, then a clean
 * shutdown. */
static void restart(const char *file, const char *key)
{
	struct audit *a = open_trail(file, key, false);
	CHECK(a && audit_start(a, "restart", 5000), "restart: start record written");
	if (!a)
		return;
	audit_event(a, "shutdown", NULL);
	audit_free(a);
}

static void test_recovery(void)
{
	char list[256];
	/* A run that was killed: conn 1 closed, 2 and 3 open; a record kind
	 * this version does not know (with "type":"shutdown" nested in it)
	 * is passed over; the last line was cut mid-record. */
	const char *file = path_in("killed.jsonl");
	write_file(file,
		   "{\"v\":1,\"ts\":\"2024-05-01T09:00:00.000Z\",\"type\":\"start\",\"detail\":\"direct\",\"version\":\"0.1.0\",\"pid\":999999}\n"
		   "{\"v\":1,\"ts\":\"2024-05-01T09:00:01.000Z\",\"type\":\"decision\",\"conn\":1,\"verdict\":\"allow\"}\n"
		   "{\"v\":1,\"ts\":\"2024-05-01T09:00:02.000Z\",\"type\":\"close\",\"conn\":1,\"end\":\"client_eof\"}\n"
		   "{\"v\":1,\"ts\":\"2024-05-01T09:00:03.000Z\",\"type\":\"decision\",\"conn\":2,\"verdict\":\"allow\"}\n"
		   "{\"v\":1,\"ts\":\"2024-05-01T09:00:04.000Z\",\"type\":\"tailnet\",\"peer\":{\"type\":\"shutdown\"}}\n"
		   "{\"v\":1,\"ts\":\"2024-05-01T09:00:05.000Z\",\"type\":\"decision\",\"conn\":3,\"verdict\":\"allow\"}\n"
		   "{\"v\":1,\"ts\":\"2024-05-01T09:00:06.000Z\",\"type\":\"close\",\"conn\":3,\"en");
	restart(file, NULL);
	size_t at = 0;
	cJSON *rec = find_record(file, "recovery", &at);
	CHECK(rec != NULL, "a recovery record after a killed run");
	unclosed_list(rec, list, sizeof list);
	CHECK(strcmp(list, "2,3") == 0, "recovery names the unclosed connections: %s", list);
	CHECK(at == 8, "recovery record on its own line after the cut one: line %zu", at);
	CHECK(cJSON_GetObjectItem(rec, "prev_pid") &&
		      cJSON_GetObjectItem(rec, "prev_pid")->valueint == 999999, "prev_pid");
	CHECK(cJSON_IsNull(cJSON_GetObjectItem(rec, "last_seq")), "no chain: last_seq null");
	CHECK(cJSON_IsTrue(cJSON_GetObjectItem(rec, "complete")), "scan reached the start");
	CHECK(cJSON_GetObjectItem(rec, "last_ts") &&
		      strcmp(cJSON_GetObjectItem(rec, "last_ts")->valuestring,
			     "2024-05-01T09:00:05.000Z") == 0, "last_ts of the last whole record");
	cJSON_Delete(rec);

	/* That run ended cleanly: a further start writes no recovery. */
	restart(file, NULL);
	struct lines l = read_lines(file);
	size_t n_rec = 0;
	for (size_t i = 0; i < l.n; i++)
		n_rec += strstr(l.v[i], "\"type\":\"recovery\"") != NULL;
	CHECK(n_rec == 1, "no recovery after a clean shutdown: %zu", n_rec);
	free_lines(&l);

	/* With the chain: the last sequence number of the killed run. */
	const char *key = path_in("key");
	file = path_in("killed-chain.jsonl");
	make_trail(file, key, 3);	/* start d1 c1 d2 c2 d3 c3 shutdown checkpoint */
	l = read_lines(file);
	for (int i = 0; i < 3; i++)	/* the kill came before c3 reached the file */
		del(&l, l.n - 1);
	write_lines(file, &l, false);
	free_lines(&l);
	restart(file, key);
	rec = find_record(file, "recovery", NULL);
	unclosed_list(rec, list, sizeof list);
	CHECK(rec && strcmp(list, "3") == 0, "chain: unclosed %s", list);
	CHECK(rec && cJSON_GetObjectItem(rec, "last_seq") &&
		      cJSON_GetObjectItem(rec, "last_seq")->valuedouble == 5, "chain: last_seq 5");
	CHECK(rec && cJSON_GetObjectItem(rec, "seq") &&
		      cJSON_GetObjectItem(rec, "seq")->valuedouble == 6, "the chain goes on");
	cJSON_Delete(rec);
	/* verify: the chain holds; the start after the crash is an unclean
	 * shutdown, a note unless strict. */
	char msg[1024];
	bool ok = verify_files(key, &file, 1, msg, sizeof msg);
	CHECK(ok && strstr(msg, "note: unclean shutdown at ") && strstr(msg, "killed-chain.jsonl:8 "),
	      "verify notes the unclean shutdown: %s", msg);
	unsigned char *kb;
	size_t kl;
	char err[256];
	if (audit_key_load(key, &kb, &kl, err, sizeof err)) {
		struct audit_verify *v = audit_verify_new(kb, kl);
		free(kb);
		audit_verify_set_strict(v, true);
		l = read_lines(file);
		for (size_t i = 0; i < l.n; i++)
			audit_verify_line(v, file, i + 1, l.v[i], strlen(l.v[i]), true);
		free_lines(&l);
		ok = audit_verify_finish(v, msg, sizeof msg);
		CHECK(!ok && strstr(msg, "killed-chain.jsonl:8: unclean shutdown") &&
			      audit_verify_unclean(v) == 1, "strict: %s", msg);
		audit_verify_free(v);
	}
	int rc;
	char *out = run_cli(&rc, "audit", "verify", "--strict", "--key", key, file, NULL);
	CHECK(rc == 1 && strstr(out, "NOT VERIFIED") && strstr(out, "unclean shutdown"),
	      "verify --strict: %d %s", rc, out);
	free(out);
	out = run_cli(&rc, "audit", "summary", file, NULL);
	CHECK(rc == 0 && strstr(out, "Unclean shutdowns: 1 ") &&
		      strstr(out, "; 1 connection(s) left without a close record"), "summary: %s", out);
	free(out);

	/* Only the tail is read: a run whose start lies more than the window
	 * back is reported as incomplete, with what the window holds. */
	file = path_in("long.jsonl");
	FILE *f = fopen(file, "w");
	fputs("{\"v\":1,\"ts\":\"2024-05-01T09:00:00.000Z\",\"type\":\"start\",\"pid\":999999}\n", f);
	char pad[200];
	memset(pad, 'x', sizeof pad - 1);
	pad[sizeof pad - 1] = '\0';
	for (int i = 1; i <= 30000; i++)
		fprintf(f, "{\"v\":1,\"ts\":\"2024-05-01T09:00:01.000Z\",\"type\":\"decision\",\"conn\":%d,\"host\":\"%s\"}\n",
			i, pad);
	fclose(f);
	restart(file, NULL);
	rec = find_record(file, "recovery", NULL);
	const cJSON *u = cJSON_GetObjectItem(rec, "unclosed");
	int n = cJSON_GetArraySize(u);
	CHECK(rec && cJSON_IsFalse(cJSON_GetObjectItem(rec, "complete")), "window: incomplete");
	CHECK(n > 10000 && n < 30000 && cJSON_GetArrayItem(u, n - 1)->valueint == 30000,
	      "window: the last %d decisions", n);
	cJSON_Delete(rec);

	/* A new file has nothing to recover. */
	file = path_in("fresh.jsonl");
	unlink(file);
	restart(file, NULL);
	rec = find_record(file, "recovery", NULL);
	CHECK(rec == NULL, "no recovery in a new file");
	cJSON_Delete(rec);
}

/* ------------------------------------------------- review and summary */

static const char recorded[] =
	"{\"v\":1,\"ts\":\"2024-05-01T09:00:00.000Z\",\"type\":\"start\",\"detail\":\"socks5://127.0.0.1:1055\"}\n"
	"{\"v\":1,\"ts\":\"2024-05-01T09:10:00.000Z\",\"type\":\"decision\",\"conn\":1,\"client\":\"127.0.0.1:40001\",\"listener\":\"127.0.0.1:1080\",\"proto\":\"socks5\",\"user\":\"alice\",\"host\":\"db.corp.test\",\"port\":5432,\"addr\":\"127.0.0.10\",\"verdict\":\"allow\",\"rule\":\"db\",\"guard\":null,\"reason\":\"rule db\",\"upstream\":\"direct\"}\n"
	"{\"v\":1,\"ts\":\"2024-05-01T09:10:05.000Z\",\"type\":\"close\",\"conn\":1,\"bytes_up\":1000,\"bytes_down\":5000,\"duration_ms\":5000,\"end\":\"client_eof\",\"error\":null}\n"
	"{\"v\":1,\"ts\":\"2024-05-01T10:00:00.000Z\",\"type\":\"decision\",\"conn\":2,\"client\":\"127.0.0.2:40002\",\"listener\":\"127.0.0.1:1080\",\"proto\":\"http-connect\",\"user\":\"bob\",\"host\":\"api.corp.test\",\"port\":443,\"addr\":\"127.0.0.11\",\"verdict\":\"allow\",\"rule\":\"api\",\"guard\":null,\"reason\":\"rule api\",\"upstream\":\"direct\"}\n"
	"{\"v\":1,\"ts\":\"2024-05-01T10:00:01.000Z\",\"type\":\"decision\",\"conn\":3,\"client\":\"127.0.0.2:40003\",\"listener\":\"127.0.0.1:1080\",\"proto\":\"socks5\",\"user\":\"bob\",\"host\":\"127.0.1.5\",\"port\":22,\"addr\":\"127.0.1.5\",\"verdict\":\"deny\",\"rule\":null,\"guard\":null,\"reason\":\"no rule matches\",\"upstream\":null}\n"
	"{\"v\":1,\"ts\":\"2024-05-01T10:00:01.000Z\",\"type\":\"close\",\"conn\":3,\"bytes_up\":0,\"bytes_down\":0,\"duration_ms\":0,\"end\":\"denied\",\"error\":null}\n"
	"{\"v\":1,\"ts\":\"2024-05-01T10:00:02.000Z\",\"type\":\"decision\",\"conn\":4,\"client\":\"127.0.0.3:40004\",\"listener\":\"127.0.0.1:1080\",\"proto\":\"socks5\",\"user\":null,\"host\":\"metadata.test\",\"port\":80,\"addr\":\"127.0.1.254\",\"verdict\":\"deny\",\"rule\":null,\"guard\":\"link-local\",\"reason\":\"guard\",\"upstream\":null}\n"
	"{\"v\":1,\"ts\":\"2024-05-01T10:00:02.000Z\",\"type\":\"close\",\"conn\":4,\"bytes_up\":0,\"bytes_down\":0,\"duration_ms\":0,\"end\":\"denied\",\"error\":null}\n"
	"{\"v\":1,\"ts\":\"2024-05-01T10:30:00.000Z\",\"type\":\"close\",\"conn\":2,\"bytes_up\":300,\"bytes_down\":70000,\"duration_ms\":1799000,\"end\":\"upstream_eof\",\"error\":null}\n"
	"{\"v\":1,\"ts\":\"2024-05-01T10:40:00.000Z\",\"type\":\"decision\",\"conn\":5,\"client\":\"127.0.0.1:40005\",\"listener\":\"127.0.0.1:1080\",\"proto\":\"socks5\",\"user\":\"alice\",\"host\":\"db.corp.test\",\"port\":5432,\"addr\":\"127.0.0.10\",\"verdict\":\"allow\",\"rule\":\"db\",\"guard\":null,\"reason\":\"rule db\",\"upstream\":\"direct\"}\n"
	"{\"v\":1,\"ts\":\"2024-05-01T10:45:00.000Z\",\"type\":\"close\",\"conn\":5,\"bytes_up\":24,\"bytes_down\":1000,\"duration_ms\":300000,\"end\":\"idle_timeout\",\"error\":null}\n"
	"{\"v\":1,\"ts\":\"2024-05-01T11:00:00.000Z\",\"type\":\"shutdown\",\"detail\":null}\n";

/* Runs audit_cli_main and returns what it printed (caller frees). */
static char *run_cli(int *rc, const char *first, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;
	va_start(ap, first);
	for (const char *a = first; a && argc < 31; a = va_arg(ap, const char *))
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	const char *out = path_in("cli.out");
	fflush(stdout);
	int saved = dup(1);
	int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 1);
	close(fd);
	*rc = audit_cli_main(argc, argv);
	fflush(stdout);
	dup2(saved, 1);
	close(saved);
	FILE *f = fopen(out, "r");
	char *text = calloc(1, 1 << 20);
	size_t n = fread(text, 1, (1 << 20) - 1, f);
	text[n] = '\0';
	fclose(f);
	return text;
}

/* The "conn" values of the JSON lines printed, as "1,3,4" ("start" and other
 * records without conn show as "-"). */
static void conn_list(const char *text, char *out, size_t len)
{
	out[0] = '\0';
	const char *p = text;
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		cJSON *o = cJSON_ParseWithLength(p, n);
		cJSON *c = cJSON_GetObjectItem(o, "conn");
		size_t l = strlen(out);
		if (c)
			snprintf(out + l, len - l, "%s%d", l ? "," : "", c->valueint);
		else
			snprintf(out + l, len - l, "%s-", l ? "," : "");
		cJSON_Delete(o);
		p += n + (nl ? 1 : 0);
	}
}

static void test_review(void)
{
	const char *log = path_in("recorded.jsonl");
	write_file(log, recorded);
	static const struct {
		const char *a1, *v1, *a2, *v2;
		const char *want;	/* conn list of the records printed */
	} cases[] = {
		{ NULL, NULL, NULL, NULL, "-,1,1,2,3,3,4,4,2,5,5,-" },
		{ "--user", "alice", NULL, NULL, "1,1,5,5" },
		{ "--user", "bob", "--verdict", "deny", "3,3" },
		{ "--verdict", "deny", NULL, NULL, "3,3,4,4" },
		{ "--client", "127.0.0.2", NULL, NULL, "2,3,3,2" },
		{ "--client", "127.0.0.0/31", NULL, NULL, "1,1,5,5" },
		{ "--client", "::ffff:127.0.0.3", NULL, NULL, "4,4" },
		{ "--dst", "127.0.1.0/24", NULL, NULL, "3,3,4,4" },
		{ "--dst", "db.corp.test", NULL, NULL, "1,1,5,5" },
		{ "--dst", ".corp.test", NULL, NULL, "1,1,2,2,5,5" },
		{ "--dst", "*.corp.test", "--proto", "http-connect", "2,2" },
		{ "--proto", "socks5", "--user", "alice", "1,1,5,5" },
		{ "--since", "2024-05-01T10:00:00Z", "--until", "2024-05-01T10:35:00Z",
		  "2,3,3,4,4,2" },
		{ "--since", "2024-05-01T12:00:00+02:00", "--until", "2024-05-01T10:40:00.001Z",
		  "2,3,3,4,4,2,5" },
		{ "--until", "2024-05-01", NULL, NULL, "" },
	};
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		int rc;
		char *text;
		if (cases[c].a2)
			text = run_cli(&rc, "audit", "--json", cases[c].a1, cases[c].v1,
				       cases[c].a2, cases[c].v2, log, NULL);
		else if (cases[c].a1)
			text = run_cli(&rc, "audit", "--json", cases[c].a1, cases[c].v1, log, NULL);
		else
			text = run_cli(&rc, "audit", "--json", log, NULL);
		char got[256];
		conn_list(text, got, sizeof got);
		CHECK(rc == 0 && strcmp(got, cases[c].want) == 0,
		      "audit %s %s %s %s: got [%s] rc %d, want [%s]",
		      cases[c].a1 ? cases[c].a1 : "", cases[c].v1 ? cases[c].v1 : "",
		      cases[c].a2 ? cases[c].a2 : "", cases[c].v2 ? cases[c].v2 : "", got, rc,
		      cases[c].want);
		free(text);
	}

	/* Bad filter values are errors that name the flag. */
	int rc;
	char *text = run_cli(&rc, "audit", "--verdict", "maybe", log, NULL);
	CHECK(rc == 2, "--verdict maybe is an error (rc %d)", rc);
	free(text);
	text = run_cli(&rc, "audit", "--since", "yesterday", log, NULL);
	CHECK(rc == 2, "--since yesterday is an error (rc %d)", rc);
	free(text);

	/* The table shows the decision and, for close rows, the connection. */
	text = run_cli(&rc, "audit", "--user", "bob", "--verdict", "allow", log, NULL);
	CHECK(rc == 0 && strstr(text, "api.corp.test:443 (127.0.0.11)") &&
	      strstr(text, "up 300 B, down 68.4 KiB, 1799.000 s, upstream_eof"),
	      "table rows: %s", text);
	free(text);

	/* Summary with known answers. */
	text = run_cli(&rc, "audit", "summary", log, NULL);
	CHECK(rc == 0, "summary rc %d", rc);
	static const char *const want[] = {
		"Connections: 3 allowed, 2 denied, 5 closed; 1.3 KiB up, 74.2 KiB down",
		"db.corp.test:5432                               2      1.0 KiB      5.9 KiB",
		"api.corp.test:443                               1        300 B     68.4 KiB",
		"alice                                           2      1.0 KiB      5.9 KiB",
		"127.0.0.2                                       1        300 B     68.4 KiB",
		"Denied attempts by client\n  CLIENT                                      COUNT\n"
		"  127.0.0.2                                       1\n  127.0.0.3                                       1",
		"127.0.1.5:22                                    1",
		"metadata.test:80                                1",
		"Busiest hours (decisions)\n  HOUR (UTC)                                  COUNT\n"
		"  2024-05-01T10:00Z                               4\n  2024-05-01T09:00Z                               1",
	};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
		CHECK(strstr(text, want[i]), "summary shows \"%s\"", want[i]);
	if (failed)
		fprintf(stderr, "summary was:\n%s\n", text);
	free(text);

	/* gzip input reads the same. */
	char cmd[1200];
	snprintf(cmd, sizeof cmd, "gzip -c '%s' > '%s.gz'", log, log);
	if (system(cmd) == 0) {
		char gz[600];
		snprintf(gz, sizeof gz, "%s.gz", log);
		text = run_cli(&rc, "audit", "--json", "--user", "alice", gz, NULL);
		char got[256];
		conn_list(text, got, sizeof got);
		CHECK(rc == 0 && strcmp(got, "1,1,5,5") == 0, "gzip input: [%s]", got);
		free(text);
	}
}

/* ------------------------------------------------------------- times */

static void test_time(void)
{
	static const struct {
		const char *s;
		bool ok;
		int64_t ms;
	} cases[] = {
		{ "1970-01-01T00:00:00.000Z", true, 0 },
		{ "2024-05-01T12:34:56.789Z", true, 1714566896789 },
		{ "2024-05-01T12:34:56Z", true, 1714566896000 },
		{ "2024-05-01T14:34:56.789+02:00", true, 1714566896789 },
		{ "2024-05-01", true, 1714521600000 },
		{ "2024-05-01T12:34", true, 1714566840000 },
		{ "2000-02-29T00:00:00Z", true, 951782400000 },
		{ "2024-13-01", false, 0 },
		{ "2024-05-01T25:00:00Z", false, 0 },
		{ "2024-05-01T12:34:56.Z", false, 0 },
		{ "2024-05-01T12:34:56Zjunk", false, 0 },
		{ "yesterday", false, 0 },
		{ "", false, 0 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int64_t ms = -1;
		bool ok = audit_read_time_parse(cases[i].s, strlen(cases[i].s), &ms);
		CHECK(ok == cases[i].ok && (!ok || ms == cases[i].ms),
		      "time \"%s\": ok %d ms %lld", cases[i].s, ok, (long long)ms);
	}
}

int main(void)
{
	snprintf(dir, sizeof dir, "/tmp/test_audit.XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	write_file(path_in("key"), "0123456789abcdef0123456789abcdef\n");
	write_file(path_in("otherkey"), "fedcba9876543210fedcba9876543210\n");
	chmod(path_in("key"), 0600);
	chmod(path_in("otherkey"), 0600);

	test_time();
	test_format();
	test_verify();
	test_reopen();
	test_fail_closed();
	test_open_error();
	test_recovery();
	test_review();

	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (!failed && system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	for (size_t i = 0; i < n_paths; i++)
		free(paths[i]);
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
