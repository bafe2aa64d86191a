/*
 * tailnet_watch: the live view of the tailnet, and split-DNS lookups,
 * through tailscaled's LocalAPI.
 *
 *   stream   GET watch-ipn-bus (state, prefs, peer changes): each line
 *            schedules a refresh; the end of the stream makes the view
 *            UNKNOWN and reconnects after a backoff (250 ms doubling to 5 s)
 *   refresh  GET status, then prefs, then dns-config; build a view; swap it
 *            in (or keep the old one when an answer does not parse)
 *   periodic a refresh every 30 s while the stream is up, for changes the
 *            bus does not announce (DNS settings)
 */
#include "tailfence/tailnet_watch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "tailfence/dnsmsg.h"
#include "tailfence/localapi.h"
#include "tailfence/text.h"

/* ipn.NotifyWatchOpt bits: initial state | initial prefs | peer changes. */
#define TAILNET_WATCH_MASK ((1u << 1) | (1u << 2) | (1u << 12))
#define TAILNET_REQUEST_MS 5000u
#define TAILNET_DEBOUNCE_MS 50u
#define TAILNET_PERIODIC_MS 30000u
#define TAILNET_BACKOFF_MIN_MS 250u
#define TAILNET_BACKOFF_MAX_MS 5000u
/* status grows with the tailnet: about 2 KB per peer. */
#define TAILNET_MAX_STATUS (64u << 20)
#define TAILNET_MAX_SMALL (1u << 20)
/* The bus is only a trigger: lines are not kept past this. */
#define TAILNET_MAX_LINE 4096u

enum tailnet_step { STEP_STATUS, STEP_PREFS, STEP_DNS };

struct tailnet_watch {
	struct event_base *base;
	char sock[108];
	struct tailnet_options opt;
	tailnet_watch_cb cb;
	void *arg;
	struct tailnet_view *view;

	struct localapi_req *stream;
	bool stream_up;			/* a line has arrived on this stream */
	struct localapi_req *fetch;
	enum tailnet_step step;
	char *answers[2];		/* status, prefs bodies of this refresh */
	size_t answer_len[2];
	bool again;			/* something changed during a refresh */

	struct event *debounce;
	struct event *reconnect;
	struct event *periodic;
	unsigned backoff_ms;
};

static void tailnet_watch_connect(struct tailnet_watch *w);
static void tailnet_fetch_step(struct tailnet_watch *w);

static void tailnet_timer(struct event *ev, unsigned ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(ev, &tv);
}

/* Swaps in next (consumed), telling the owner unless nothing changed for
 * a view that carries nothing (repeated failures are told once). */
static void tailnet_set_view(struct tailnet_watch *w, struct tailnet_view *next)
{
	struct tailnet_view *old = w->view;
	if (old->state != TAILNET_RUNNING && next->state == old->state &&
	    strcmp(old->reason ? old->reason : "", next->reason ? next->reason : "") == 0) {
		tailnet_view_unref(next);
		return;
	}
	w->view = next;
	w->cb(w->arg, old, next, NULL);
	tailnet_view_unref(old);
}

static void tailnet_set_unknown(struct tailnet_watch *w, const char *reason)
{
	struct tailnet_view *v = tailnet_view_empty(TAILNET_UNKNOWN, reason);
	if (v)
		tailnet_set_view(w, v);
}

static void tailnet_fetch_reset(struct tailnet_watch *w)
{
	if (w->fetch)
		localapi_cancel(w->fetch);
	w->fetch = NULL;
	for (int i = 0; i < 2; i++) {
		free(w->answers[i]);
		w->answers[i] = NULL;
		w->answer_len[i] = 0;
	}
}

static void tailnet_schedule_refresh(struct tailnet_watch *w)
{
	if (w->fetch)
		w->again = true;
	else if (!evtimer_pending(w->debounce, NULL))
		tailnet_timer(w->debounce, TAILNET_DEBOUNCE_MS);
}

/* "HTTP 403: watch ipn bus access denied" from a refusal's body. */
static void tailnet_refusal(char *buf, size_t len, const char *what, const char *sock,
			    int status, const char *body, size_t blen)
{
	size_t n = strcspn(body, "\r\n");
	if (n > blen)
		n = blen;
	if (n > 120)
		n = 120;
	char line[128];
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		line[k++] = text_is_ctl(body[i]) ? '?' : body[i];
	line[k] = '\0';
	snprintf(buf, len, "tailscaled at %s refused %s: HTTP %d%s%s", sock, what, status,
		 k ? ": " : "", line);
}

static void tailnet_finish_refresh(struct tailnet_watch *w, const char *dns, size_t dns_len)
{
	char err[300];
	struct tailnet_view *next =
		tailnet_view_build(w->answers[0], w->answer_len[0], w->answers[1],
				   w->answer_len[1], dns, dns_len, &w->opt, err, sizeof err);
	tailnet_fetch_reset(w);
	if (next)
		tailnet_set_view(w, next);
	else
		w->cb(w->arg, w->view, w->view, err);
	if (w->again) {
		w->again = false;
		tailnet_schedule_refresh(w);
	}
}

static void tailnet_fetch_done(void *arg, int status, const char *body, size_t len,
			       const char *error)
{
	struct tailnet_watch *w = arg;
	static const char *const what[] = { "/localapi/v0/status", "/localapi/v0/prefs",
					    "/localapi/v0/dns-config" };
	char why[400];
	w->fetch = NULL;

	if (w->step == STEP_DNS) {
		/* No netmap yet (503), or an older tailscaled: no split DNS. */
		bool ok = !error && status == 200;
		tailnet_finish_refresh(w, ok ? body : NULL, ok ? len : 0);
		return;
	}
	if (error || status != 200) {
		if (error)
			snprintf(why, sizeof why, "%s", error);
		else
			tailnet_refusal(why, sizeof why, what[w->step], w->sock, status, body, len);
		tailnet_fetch_reset(w);
		w->again = false;
		tailnet_set_unknown(w, why);
		return;
	}
	char *copy = malloc(len + 1);
	if (!copy) {
		tailnet_fetch_reset(w);
		w->cb(w->arg, w->view, w->view, "out of memory");
		return;
	}
	memcpy(copy, body, len);
	copy[len] = '\0';
	w->answers[w->step] = copy;
	w->answer_len[w->step] = len;
	w->step++;
	tailnet_fetch_step(w);
}

static void tailnet_fetch_step(struct tailnet_watch *w)
{
	static const char *const paths[] = { "/localapi/v0/status", "/localapi/v0/prefs",
					     "/localapi/v0/dns-config" };
	size_t max = w->step == STEP_STATUS ? TAILNET_MAX_STATUS : TAILNET_MAX_SMALL;
	w->fetch = localapi_get(w->base, w->sock, paths[w->step], TAILNET_REQUEST_MS, max,
				tailnet_fetch_done, w);
	if (!w->fetch) {
		tailnet_fetch_reset(w);
		w->cb(w->arg, w->view, w->view, "out of memory");
	}
}

static void tailnet_refresh_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tailnet_watch *w = arg;
	(void)fd;
	(void)what;
	if (w->fetch)
		return;
	w->step = STEP_STATUS;
	tailnet_fetch_step(w);
}

static void tailnet_periodic_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tailnet_watch *w = arg;
	(void)fd;
	(void)what;
	if (w->stream_up)
		tailnet_schedule_refresh(w);
	tailnet_timer(w->periodic, TAILNET_PERIODIC_MS);
}

static void tailnet_stream_line(void *arg, const char *line, size_t len, bool truncated)
{
	struct tailnet_watch *w = arg;
	(void)line;
	(void)len;
	(void)truncated;
	if (!w->stream_up) {
		w->stream_up = true;
		w->backoff_ms = TAILNET_BACKOFF_MIN_MS;
	}
	tailnet_schedule_refresh(w);
}

static void tailnet_stream_done(void *arg, int status, const char *body, size_t len,
				const char *error)
{
	struct tailnet_watch *w = arg;
	char why[400];
	w->stream = NULL;
	w->stream_up = false;
	if (error)
		snprintf(why, sizeof why, "%s", error);
	else
		tailnet_refusal(why, sizeof why, "watch-ipn-bus", w->sock, status, body, len);
	/* Fail closed at once: nothing is known to be carried any more. */
	tailnet_fetch_reset(w);
	evtimer_del(w->debounce);
	w->again = false;
	tailnet_set_unknown(w, why);
	tailnet_timer(w->reconnect, w->backoff_ms);
	w->backoff_ms = w->backoff_ms * 2 > TAILNET_BACKOFF_MAX_MS ? TAILNET_BACKOFF_MAX_MS
								  : w->backoff_ms * 2;
}

static void tailnet_reconnect_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	tailnet_watch_connect(arg);
}

static void tailnet_watch_connect(struct tailnet_watch *w)
{
	char path[96];
	snprintf(path, sizeof path, "/localapi/v0/watch-ipn-bus?mask=%u", TAILNET_WATCH_MASK);
	w->stream = localapi_watch(w->base, w->sock, path, TAILNET_REQUEST_MS, TAILNET_MAX_LINE,
				   tailnet_stream_line, tailnet_stream_done, w);
	if (!w->stream)
		tailnet_timer(w->reconnect, TAILNET_BACKOFF_MAX_MS);
}

struct tailnet_watch *tailnet_watch_start(struct event_base *base, const char *sock_path,
					  const struct tailnet_options *opt,
					  tailnet_watch_cb cb, void *arg)
{
	struct tailnet_watch *w = calloc(1, sizeof *w);
	char why[200];
	if (!w)
		return NULL;
	w->base = base;
	snprintf(w->sock, sizeof w->sock, "%s", sock_path);
	if (opt)
		w->opt = *opt;
	w->cb = cb;
	w->arg = arg;
	w->backoff_ms = TAILNET_BACKOFF_MIN_MS;
	snprintf(why, sizeof why, "no answer from tailscaled at %s yet", w->sock);
	w->view = tailnet_view_empty(TAILNET_UNKNOWN, why);
	w->debounce = evtimer_new(base, tailnet_refresh_cb, w);
	w->reconnect = evtimer_new(base, tailnet_reconnect_cb, w);
	w->periodic = evtimer_new(base, tailnet_periodic_cb, w);
	if (!w->view || !w->debounce || !w->reconnect || !w->periodic) {
		tailnet_watch_free(w);
		return NULL;
	}
	tailnet_timer(w->periodic, TAILNET_PERIODIC_MS);
	tailnet_watch_connect(w);
	return w;
}

struct tailnet_view *tailnet_watch_view(const struct tailnet_watch *w)
{
	return w->view;
}

const char *tailnet_watch_socket(const struct tailnet_watch *w)
{
	return w->sock;
}

void tailnet_watch_free(struct tailnet_watch *w)
{
	if (!w)
		return;
	if (w->stream)
		localapi_cancel(w->stream);
	tailnet_fetch_reset(w);
	if (w->debounce)
		event_free(w->debounce);
	if (w->reconnect)
		event_free(w->reconnect);
	if (w->periodic)
		event_free(w->periodic);
	tailnet_view_unref(w->view);
	free(w);
}

struct tailnet_view *tailnet_view_fetch(const char *sock_path,
					const struct tailnet_options *opt)
{
	static const char *const paths[] = { "/localapi/v0/status", "/localapi/v0/prefs",
					     "/localapi/v0/dns-config" };
	char *body[3] = { NULL, NULL, NULL };
	size_t len[3] = { 0, 0, 0 };
	char why[400] = "";
	struct tailnet_view *v = NULL;

	for (int i = 0; i < 3 && !why[0]; i++) {
		int status = 0;
		char err[300];
		size_t max = i == 0 ? TAILNET_MAX_STATUS : TAILNET_MAX_SMALL;
		if (!localapi_get_sync(sock_path, paths[i], TAILNET_REQUEST_MS, max, &status,
				       &body[i], &len[i], err, sizeof err)) {
			if (i < 2)
				snprintf(why, sizeof why, "%s", err);
		} else if (status != 200) {
			if (i < 2)
				tailnet_refusal(why, sizeof why, paths[i], sock_path, status, body[i],
						len[i]);
			free(body[i]);
			body[i] = NULL;	/* dns-config: no split DNS */
		}
	}
	if (!why[0])
		v = tailnet_view_build(body[0], len[0], body[1], len[1], body[2], len[2], opt, why,
				       sizeof why);
	for (int i = 0; i < 3; i++)
		free(body[i]);
	return v ? v : tailnet_view_empty(TAILNET_UNKNOWN, why);
}

/* ------------------------------------------------------------------ */
/* dns-query */

struct tailnet_dns {
	struct localapi_req *req[2];	/* A, AAAA */
	bool done[2];
	struct cidr_addr addrs[2][TAILNET_DNS_MAX_ADDRS];	/* per type */
	size_t n[2];
	int rcode;
	char error[300];
	tailnet_dns_cb cb;
	void *arg;
	char sock[108];
	char name[256];
};

bool tailnet_dns_parse(const char *body, size_t len, unsigned qtype, struct cidr_addr *out,
		       size_t max, size_t *n, int *rcode, char *why, size_t whylen)
{
	*n = 0;
	*rcode = 0;
	cJSON *j = cJSON_ParseWithLength(body, len);
	const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(j, "Bytes");
	if (!cJSON_IsObject(j) || !cJSON_IsString(bytes)) {
		cJSON_Delete(j);
		snprintf(why, whylen, "tailscaled's dns-query answer has no Bytes");
		return false;
	}
	size_t blen = strlen(bytes->valuestring), mlen = 0;
	unsigned char *msg = malloc(text_base64_max(blen));
	bool ok = msg && text_base64_decode(bytes->valuestring, blen, msg,
					    text_base64_max(blen), &mlen);
	cJSON_Delete(j);
	if (!ok) {
		free(msg);
		snprintf(why, whylen, "tailscaled's dns-query answer is not base64");
		return false;
	}
	const char *mwhy = NULL;
	ok = dnsmsg_answers(msg, mlen, qtype, out, max, n, rcode, &mwhy);
	free(msg);
	if (!ok)
		snprintf(why, whylen, "%s", mwhy);
	return ok;
}

static void tailnet_dns_free(struct tailnet_dns *q)
{
	for (int i = 0; i < 2; i++)
		if (q->req[i])
			localapi_cancel(q->req[i]);
	free(q);
}

static void tailnet_dns_answer(struct tailnet_dns *q, int i, int status, const char *body,
			       size_t len, const char *error)
{
	char why[300];
	if (error) {
		snprintf(q->error, sizeof q->error, "%s", error);
		return;
	}
	if (status != 200) {
		tailnet_refusal(q->error, sizeof q->error, "dns-query", q->sock, status, body,
				len);
		return;
	}
	int rcode = 0;
	unsigned qtype = i == 0 ? DNSMSG_TYPE_A : DNSMSG_TYPE_AAAA;
	if (!tailnet_dns_parse(body, len, qtype, q->addrs[i], TAILNET_DNS_MAX_ADDRS, &q->n[i],
			       &rcode, why, sizeof why)) {
		snprintf(q->error, sizeof q->error, "%s", why);
		return;
	}
	if (rcode)
		q->rcode = rcode;
}

static void tailnet_dns_done(struct tailnet_dns *q, int i, int status, const char *body,
			     size_t len, const char *error)
{
	q->req[i] = NULL;
	q->done[i] = true;
	tailnet_dns_answer(q, i, status, body, len, error);
	if (!q->done[0] || !q->done[1])
		return;
	tailnet_dns_cb cb = q->cb;
	void *arg = q->arg;
	/* A answers first, then AAAA, whichever came back first. */
	struct cidr_addr all[TAILNET_DNS_MAX_ADDRS];
	size_t n = 0;
	for (int t = 0; t < 2; t++)
		for (size_t k = 0; k < q->n[t] && n < TAILNET_DNS_MAX_ADDRS; k++)
			all[n++] = q->addrs[t][k];
	if (n) {
		cb(arg, all, n, NULL);
	} else if (q->error[0]) {
		cb(arg, NULL, 0, q->error);
	} else {
		char why[320];
		snprintf(why, sizeof why, "tailscaled's resolver has no address for %s%s", q->name,
			 q->rcode == 3 ? " (NXDOMAIN)" : "");
		cb(arg, NULL, 0, why);
	}
	tailnet_dns_free(q);
}

static void tailnet_dns_a(void *arg, int status, const char *body, size_t len,
			  const char *error)
{
	tailnet_dns_done(arg, 0, status, body, len, error);
}

static void tailnet_dns_aaaa(void *arg, int status, const char *body, size_t len,
			     const char *error)
{
	tailnet_dns_done(arg, 1, status, body, len, error);
}

struct tailnet_dns *tailnet_dns_query(struct event_base *base, const char *sock_path,
				      const char *name, unsigned timeout_ms,
				      tailnet_dns_cb cb, void *arg)
{
	struct tailnet_dns *q = calloc(1, sizeof *q);
	if (!q)
		return NULL;
	q->cb = cb;
	q->arg = arg;
	snprintf(q->sock, sizeof q->sock, "%s", sock_path);
	/* Names reaching here are validated host names; escape anything else
	 * anyway, so nothing can change the query string. */
	size_t k = 0, n = strlen(name);
	for (size_t i = 0; i < n && k + 4 < sizeof q->name; i++) {
		char c = name[i];
		if (text_is_alnum(c) || c == '.' || c == '-' || c == '_')
			q->name[k++] = c;
		else
			k += (size_t)snprintf(q->name + k, 4, "%%%02X", (unsigned char)c);
	}
	q->name[k] = '\0';
	bool dot = k && q->name[k - 1] == '.';
	char path[2][320];
	for (int i = 0; i < 2; i++)
		snprintf(path[i], sizeof path[i], "/localapi/v0/dns-query?name=%s%s&type=%s",
			 q->name, dot ? "" : ".", i == 0 ? "A" : "AAAA");
	q->req[0] = localapi_get(base, sock_path, path[0], timeout_ms, TAILNET_MAX_SMALL,
				 tailnet_dns_a, q);
	q->req[1] = localapi_get(base, sock_path, path[1], timeout_ms, TAILNET_MAX_SMALL,
				 tailnet_dns_aaaa, q);
	if (!q->req[0] || !q->req[1]) {
		tailnet_dns_free(q);
		return NULL;
	}
	return q;
}

void tailnet_dns_cancel(struct tailnet_dns *q)
{
	if (q)
		tailnet_dns_free(q);
}
