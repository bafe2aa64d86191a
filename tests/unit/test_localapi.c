/*
 * test_localapi: the LocalAPI response parsers, table-driven; every case is
 * also fed one byte at a time.
 */
#include "tailfence/localapi.h"

#include <stdlib.h>
#include <string.h>

#include "check.h"

struct result {
	enum localapi_step step;	/* DONE, or ERROR; NEED_MORE: body ends at EOF */
	int status;
	char body[256];
	size_t body_len;
	const char *why;
};

/* Runs the head parser (on a growing buffer) and the body decoder over
 * text, in pieces of `step` bytes (0: all at once). */
static void run(const char *text, size_t len, size_t step, struct result *r)
{
	struct localapi_response resp;
	char buf[1024];
	size_t have = 0, fed = 0;
	bool head = false;
	localapi_response_init(&resp);
	memset(r, 0, sizeof *r);
	r->step = LOCALAPI_NEED_MORE;
	while (fed < len || have) {
		size_t n = step ? step : len;
		if (n > len - fed)
			n = len - fed;
		memcpy(buf + have, text + fed, n);
		have += n;
		fed += n;
		size_t used = 0;
		if (!head) {
			enum localapi_step st = localapi_parse_head(&resp, buf, have, &used);
			if (st == LOCALAPI_ERROR) {
				r->step = st;
				r->why = resp.why;
				return;
			}
			if (st == LOCALAPI_NEED_MORE) {
				if (fed == len)
					return;
				continue;
			}
			head = true;
			r->status = resp.status;
			memmove(buf, buf + used, have - used);
			have -= used;
		}
		while (have) {
			const char *data;
			size_t dlen;
			enum localapi_step st = localapi_body_feed(&resp, buf, have, &used, &data, &dlen);
			if (dlen && r->body_len + dlen < sizeof r->body) {
				memcpy(r->body + r->body_len, data, dlen);
				r->body_len += dlen;
			}
			memmove(buf, buf + used, have - used);
			have -= used;
			if (st != LOCALAPI_NEED_MORE) {
				r->step = st;
				r->why = resp.why;
				return;
			}
			if (used == 0 && dlen == 0)
				break;
		}
		if (fed == len)
			break;
	}
	if (head && resp.framing == LOCALAPI_BODY_LENGTH && resp.remaining == 0)
		r->step = LOCALAPI_DONE;
}

static const struct {
	const char *name;
	const char *text;
	enum localapi_step step;
	int status;
	const char *body;
	const char *why;	/* substring of the error */
} cases[] = {
	{ "content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", LOCALAPI_DONE, 200,
	  "hello", NULL },
	{ "length, more bytes after", "HTTP/1.1 200 OK\r\nContent-length: 2\r\n\r\nhello",
	  LOCALAPI_DONE, 200, "he", NULL },
	{ "zero length", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", LOCALAPI_DONE, 200, "",
	  NULL },
	{ "204 has no body", "HTTP/1.1 204 No Content\r\n\r\n", LOCALAPI_DONE, 204, "", NULL },
	{ "chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
		     "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
	  LOCALAPI_DONE, 200, "hello world", NULL },
	{ "chunked with trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"
				  "A\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n",
	  LOCALAPI_DONE, 200, "0123456789", NULL },
	{ "chunked, bare LF", "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n",
	  LOCALAPI_DONE, 200, "abc", NULL },
	{ "until close", "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it",
	  LOCALAPI_NEED_MORE, 200, "all of it", NULL },
	{ "a refusal", "HTTP/1.1 403 Forbidden\r\nContent-Length: 24\r\n\r\n"
		       "dns-query access denied\n", LOCALAPI_DONE, 403,
	  "dns-query access denied\n", NULL },
	{ "not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", LOCALAPI_ERROR, 0, "", "status line" },
	{ "bad status", "HTTP/1.1 2x0 OK\r\n\r\n", LOCALAPI_ERROR, 0, "", "status line" },
	{ "1xx", "HTTP/1.1 100 Continue\r\n\r\n", LOCALAPI_ERROR, 0, "", "informational" },
	{ "two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
	  LOCALAPI_ERROR, 0, "", "Content-Length" },
	{ "length and chunked", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n"
				"Transfer-Encoding: chunked\r\n\r\n", LOCALAPI_ERROR, 0, "",
	  "both" },
	{ "gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", LOCALAPI_ERROR, 0, "",
	  "Transfer-Encoding" },
	{ "negative length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", LOCALAPI_ERROR, 0,
	  "", "Content-Length" },
	{ "header without colon", "HTTP/1.1 200 OK\r\nnonsense\r\n\r\n", LOCALAPI_ERROR, 0, "",
	  "header" },
	{ "bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
	  LOCALAPI_ERROR, 200, "", "chunk size" },
	{ "chunk without CRLF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
				"3\r\nabcX\r\n", LOCALAPI_ERROR, 200, "abc", "CRLF" },
	{ "huge chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			     "fffffffffffffffff\r\n", LOCALAPI_ERROR, 200, "", "too large" },
};

static void test_table(void)
{
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		for (size_t step = 0; step <= 1; step++) {
			struct result r;
			run(cases[i].text, strlen(cases[i].text), step, &r);
			CHECK(r.step == cases[i].step, "[%s/%zu] step %d, want %d", cases[i].name, step,
			      r.step, cases[i].step);
			if (cases[i].step != LOCALAPI_ERROR || cases[i].status)
				CHECK(r.status == cases[i].status, "[%s/%zu] status %d", cases[i].name,
				      step, r.status);
			CHECK(r.body_len == strlen(cases[i].body) &&
			      memcmp(r.body, cases[i].body, r.body_len) == 0,
			      "[%s/%zu] body \"%.*s\"", cases[i].name, step, (int)r.body_len, r.body);
			if (cases[i].why)
				CHECK(r.why && strstr(r.why, cases[i].why), "[%s/%zu] why \"%s\"",
				      cases[i].name, step, r.why ? r.why : "(none)");
		}
	}
}

static void test_head_end(void)
{
	const char *h = "HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody";
	size_t len = strlen(h);
	CHECK(localapi_head_end(h, len, 0) == len - 4, "CRLF head end");
	/* resuming a scan never misses an end split across reads */
	for (size_t from = 0; from <= len - 4; from++)
		CHECK(localapi_head_end(h, len - 4, from) == len - 4, "resume from %zu", from);
	CHECK(localapi_head_end(h, len - 5, 0) == 0, "not yet");
	CHECK(localapi_head_end("HTTP/1.1 200 OK\n\nx", 18, 0) == 17, "bare LF");
	/* a head too long is an error, not a wait */
	char big[20000];
	memset(big, 'a', sizeof big);
	memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
	struct localapi_response r;
	size_t used;
	localapi_response_init(&r);
	CHECK(localapi_parse_head(&r, big, sizeof big, &used) == LOCALAPI_ERROR, "long head");
}

int main(void)
{
	test_table();
	test_head_end();
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
