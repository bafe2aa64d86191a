/*
 * socks_fuzzer: libFuzzer target for the SOCKS4/4a/5 server handshake
 * parser (socks_server_feed, socks5_server_auth_result).
 *
 * Input: byte 0 picks the server options and the answers given to
 * SOCKS_AUTH, bytes 1-2 a split point, the rest is what the client sends.
 * The handshake is run three ways: all at once, in two pieces split at the
 * chosen point, and one byte at a time. Invariants: consumed <= len, NEED_MORE
 * consumes nothing, replies fit in out[], every run gives the same steps,
 * replies and results, and a finished request is well-formed.
 */
#include "tailfence/socks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRACE_MAX 4096

struct trace {
	uint8_t bytes[TRACE_MAX];	/* steps and replies, in order */
	size_t n;
	enum socks_step final;
	size_t consumed;
	struct socks_server s;
};

static void put(struct trace *t, const void *p, size_t n)
{
	if (t->n + n > TRACE_MAX)
		n = TRACE_MAX - t->n;
	memcpy(t->bytes + t->n, p, n);
	t->n += n;
}

static void check_request(const struct socks_server *s)
{
	const struct socks_target *t = &s->target;
	if (s->state != SOCKS_S_DONE)
		abort();
	if (s->version != 4 && s->version != 5)
		abort();
	if (t->is_name) {
		size_t n = strnlen(t->host, sizeof t->host);
		if (n == 0 || n > 255 || t->addr.family != 0)
			abort();
		struct cidr_addr a;
		if (cidr_addr_parse(t->host, &a))
			abort();	/* literals become addresses */
	} else if (t->addr.family != AF_INET && t->addr.family != AF_INET6) {
		abort();
	}
	if (s->version == 5 && s->cmd != SOCKS_CMD_CONNECT)
		abort();
	if (strnlen(s->user, sizeof s->user) > 255 || strnlen(s->pass, sizeof s->pass) > 255)
		abort();
}

/* cuts: the input becomes available up to cuts[0], then cuts[1], ... */
static void run(const uint8_t *in, size_t len, uint8_t opts, const size_t *cuts,
		size_t ncuts, struct trace *t)
{
	memset(t, 0, sizeof *t);
	socks_server_init(&t->s, opts & 1, opts & 2);
	int auth_n = 0;
	size_t off = 0, ci = 0, avail = ncuts ? cuts[0] : len;
	for (;;) {
		size_t n = 12345;
		enum socks_step st = socks_server_feed(&t->s, in + off, avail - off, &n);
		if (n > avail - off)
			abort();
		if (st == SOCKS_NEED_MORE && n != 0)
			abort();
		off += n;
		if (st == SOCKS_NEED_MORE) {
			if (avail == len) {
				t->final = st;
				break;
			}
			avail = ++ci < ncuts ? cuts[ci] : len;
			continue;
		}
		uint8_t sb = (uint8_t)st;
		put(t, &sb, 1);
		if (st == SOCKS_AUTH) {
			if (strnlen(t->s.user, sizeof t->s.user) == 0)
				abort();	/* empty user is refused */
			bool ok = (opts >> (2 + (auth_n++ & 3))) & 1;
			st = socks5_server_auth_result(&t->s, ok);
			if (st != (ok ? SOCKS_REPLY : SOCKS_ERROR))
				abort();
		}
		if (t->s.out_len > sizeof t->s.out)
			abort();
		put(t, t->s.out, t->s.out_len);
		if (st == SOCKS_REPLY)
			continue;
		if (st == SOCKS_ERROR && !t->s.why)
			abort();
		if (st == SOCKS_REQUEST)
			check_request(&t->s);
		t->final = st;
		break;
	}
	t->consumed = off;
}

static void same(const struct trace *a, const struct trace *b)
{
	if (a->final != b->final || a->consumed != b->consumed || a->n != b->n ||
	    memcmp(a->bytes, b->bytes, a->n) != 0)
		abort();
	if (a->final == SOCKS_REQUEST &&
	    (memcmp(&a->s.target, &b->s.target, sizeof a->s.target) != 0 ||
	     strcmp(a->s.user, b->s.user) != 0 || strcmp(a->s.pass, b->s.pass) != 0))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	uint8_t opts = data[0];
	size_t split = (size_t)(data[1] << 8 | data[2]);
	data += 3;
	size -= 3;
	if (size > 2048)
		return 0;
	/* A private copy, so reads past the end are caught. */
	uint8_t *in = malloc(size ? size : 1);
	memcpy(in, data, size);

	static struct trace whole, two, bytes;
	run(in, size, opts, NULL, 0, &whole);
	size_t cut[2] = { split % (size + 1), size };
	run(in, size, opts, cut, 2, &two);
	same(&whole, &two);
	size_t *cuts = malloc((size + 1) * sizeof *cuts);
	for (size_t i = 0; i <= size; i++)
		cuts[i] = i;
	run(in, size, opts, cuts, size + 1, &bytes);
	same(&whole, &bytes);
	free(cuts);
	free(in);
	return 0;
}
