/*
 * tailnet_fuzzer: views built from arbitrary LocalAPI answers, and the
 * dns-query answer reader. Byte 0 picks the mode and the options; the
 * rest is split (at NUL bytes) into status, prefs and dns-config bodies.
 * Checks: a view that builds is internally consistent (every entry's peer
 * exists, each entry is found by a lookup of its own address, names
 * resolve to their peer), diffs against itself are empty; nothing leaks.
 */
#include "tailfence/tailnet.h"
#include "tailfence/tailnet_watch.h"

#include <stdlib.h>
#include <string.h>

static void no_change(void *arg, bool added, const struct tailnet_view *v,
		      const struct tailnet_entry *e)
{
	(void)arg;
	(void)added;
	(void)v;
	(void)e;
	abort();
}

static void check_view(const struct tailnet_view *v)
{
	for (size_t i = 0; i < v->n_entries; i++) {
		const struct tailnet_entry *e = &v->entries[i];
		if (e->peer >= v->n_peers)
			abort();
		const struct tailnet_entry *f = tailnet_view_lookup(v, &e->prefix.addr);
		if (v->state == TAILNET_RUNNING && (!f || f->prefix.bits < e->prefix.bits))
			abort();
	}
	for (size_t i = 0; i < v->n_peers; i++) {
		struct cidr_addr out[16];
		const struct tailnet_peer *p;
		bool in;
		size_t n = tailnet_view_resolve(v, v->peers[i].name, out, 16, &p, &in);
		if (n && !p)
			abort();
		tailnet_view_split_dns(v, v->peers[i].name);
	}
	tailnet_view_diff(v, v, no_change, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *in = (const char *)data + 1;
	size_t len = size - 1;
	if (data[0] & 1) {
		struct cidr_addr out[16];
		size_t n;
		int rcode;
		char why[200];
		tailnet_dns_parse(in, len, (data[0] & 2) ? 28 : 1, out, 16, &n, &rcode, why,
				  sizeof why);
		if (n > 16)
			abort();
		return 0;
	}
	const char *part[3] = { in, "", NULL };
	size_t plen[3] = { len, 0, 0 };
	const char *nul = memchr(in, '\0', len);
	if (nul) {
		plen[0] = (size_t)(nul - in);
		part[1] = nul + 1;
		plen[1] = len - plen[0] - 1;
		const char *nul2 = memchr(part[1], '\0', plen[1]);
		if (nul2) {
			part[2] = nul2 + 1;
			plen[2] = plen[1] - (size_t)(nul2 - part[1]) - 1;
			plen[1] = (size_t)(nul2 - part[1]);
		}
	}
	struct tailnet_options opt = { .allow_exit_node = (data[0] & 2) != 0 };
	char err[300];
	struct tailnet_view *v = tailnet_view_build(part[0], plen[0], part[1], plen[1], part[2],
						    plen[2], &opt, err, sizeof err);
	if (v) {
		check_view(v);
		tailnet_view_unref(v);
	} else if (!err[0]) {
		abort();
	}
	return 0;
}
