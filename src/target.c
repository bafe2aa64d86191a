/*
 * target: the literal/name split and the per-address decision shared by
 * the daemon and `tailfence check`.
 */
#include "tailfence/target.h"

#include <stdio.h>
#include <string.h>

#include "tailfence/hostname.h"
#include "tailfence/log.h"

const char *target_path_str(enum target_path p)
{
	switch (p) {
	case TARGET_PATH_TAILNET: return "tailnet";
	case TARGET_PATH_HOST: return "host";
	case TARGET_PATH_UNKNOWN: break;
	}
	return NULL;
}

bool target_parse(struct target *t, const char *host, size_t len, uint16_t port, char *why,
		  size_t whylen)
{
	memset(t, 0, sizeof *t);
	t->port = port;
	const char *h = host;
	size_t n = len;
	if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
		h++;
		n -= 2;
	}
	if (cidr_addr_parsen(h, n, &t->addr)) {
		cidr_addr_format(&t->addr, t->host, sizeof t->host);
		return true;
	}
	memset(&t->addr, 0, sizeof t->addr);
	const char *problem = hostname_problem(host, len);
	if (problem) {
		char qbuf[300];
		log_quote(host, len, 80, qbuf, sizeof qbuf);
		snprintf(why, whylen, "\"%s\" %s", qbuf, problem);
		return false;
	}
	memcpy(t->host, host, len);
	t->host[len] = '\0';
	t->is_name = true;
	return true;
}

static void target_query(const struct target *t, const struct policy_query *who,
			 struct policy_query *q)
{
	*q = *who;
	q->host = t->is_name ? t->host : NULL;
	q->port = t->port;
	memset(&q->dst, 0, sizeof q->dst);
}

bool target_precheck(const struct policy *p, const struct target *t,
		     const struct policy_query *who, struct target_verdict *v)
{
	struct policy_query q;
	memset(v, 0, sizeof *v);
	target_query(t, who, &q);
	return policy_precheck(p, &q, &v->d);
}

static enum target_path target_path_of(const struct policy_query *q,
				       const struct policy_decision *d, bool direct_upstream)
{
	if (!q->view || q->view->state != TAILNET_RUNNING)
		return TARGET_PATH_UNKNOWN;
	/* A direct dial from a userspace-networking host never enters the
	 * tailnet; with kernel-mode tailscale the host routes carried
	 * addresses into it. */
	if (d->action == POLICY_ACCEPT && d->via == POLICY_VIA_DIRECT && !direct_upstream)
		return TARGET_PATH_HOST;
	return d->carrier ? TARGET_PATH_TAILNET : TARGET_PATH_HOST;
}

void target_decide(const struct policy *p, const struct target *t,
		   const struct policy_query *who, const struct cidr_addr *addrs, size_t n,
		   bool direct_upstream, target_visit_cb visit, void *arg,
		   struct target_verdict *v)
{
	struct policy_query q;
	struct policy_decision deny;
	struct cidr_addr deny_addr;
	bool have_deny = false;

	memset(v, 0, sizeof *v);
	target_query(t, who, &q);
	if (n > TARGET_MAX_ADDRS)
		n = TARGET_MAX_ADDRS;
	for (size_t i = 0; i < n; i++) {
		struct policy_decision d;
		q.dst = addrs[i];
		policy_decide(p, &q, &d);
		if (visit)
			visit(arg, &addrs[i], &d);
		if (d.action == POLICY_ACCEPT) {
			if (v->n_allowed == 0) {
				v->d = d;
				v->shown = addrs[i];
			}
			v->via[v->n_allowed] = d.via;
			v->allowed[v->n_allowed++] = addrs[i];
		} else if (!have_deny) {
			deny = d;
			deny_addr = addrs[i];
			have_deny = true;
		}
	}
	if (v->n_allowed == 0) {
		if (have_deny) {
			v->d = deny;
			v->shown = deny_addr;
		} else {
			v->d.action = POLICY_DENY;
			v->d.rule = -1;
			snprintf(v->d.reason, sizeof v->d.reason, "no address to decide on");
		}
	}
	q.dst = v->shown;
	v->path = v->shown.family ? target_path_of(&q, &v->d, direct_upstream)
				  : TARGET_PATH_UNKNOWN;
}
