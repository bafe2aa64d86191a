/*
 * audit: the audit trail's records and the way to the writer thread.
 *
 * Callers (the event loop) format a record with cJSON on their own thread
 * and append it to a mutex-protected byte queue; the writer thread
 * (audit_writer.c) takes the queue, adds the chain fields ("seq", "prev",
 * "mac", audit_chain.c) in queue order, and writes the lines to every sink
 * (audit_sink.c). A sink that cannot be written keeps its pending bytes
 * (bounded) and is retried every second; meanwhile the trail is unhealthy
 * and, with fail_closed, audit_decision() returns false.
 *
 * Acknowledgements: every queued record takes a ticket (1, 2, ...). After a
 * batch is written to every sink (and fdatasync'd, for "synced"), the writer
 * publishes the batch's highest ticket, with whether the batch made it, to
 * every loop's port and wakes those loops (event_active); each loop
 * releases its connections waiting on tickets up to it, in ticket order (a
 * FIFO per port: tickets only grow). A
 * decision record, with "written" or "synced", makes the writer start at
 * once instead of after flush_ms (a close record too, but only a batch with
 * a decision in it is synced); the records queued while it writes or syncs
 * go together in the next batch (group commit).
 *
 * The chain verifier, which reads a trail back, is audit_verify.c.
 */
#include "audit_internal.h"

#include "tailfence/log.h"
#include "tailfence/text.h"

#include <cjson/cJSON.h>
#include <event2/event.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef TAILFENCE_VERSION
#define TAILFENCE_VERSION "unknown"
#endif

#define AUDIT_QUEUE_MAX (64u << 20)	/* bytes queued for the writer */

/* ---------------------------------------------------------------- buffers */

bool audit_buf_reserve(struct audit_buf *b, size_t more)
{
	if (b->len + more <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p)
		return false;
	b->p = p;
	b->cap = cap;
	return true;
}

bool audit_buf_add(struct audit_buf *b, const void *p, size_t n)
{
	if (!audit_buf_reserve(b, n))
		return false;
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return true;
}

/* ---------------------------------------------------------------- helpers */

void audit_format_ts(char *out, size_t len)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	char day[32];
	if (strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		day[0] = '\0';
	snprintf(out, len, "%.24s.%03dZ", day, (int)(ts.tv_nsec / 1000000) % 1000);
}

int64_t audit_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --------------------------------------------------------------- records */

cJSON *audit_record_new(const char *type)
{
	cJSON *o = cJSON_CreateObject();
	char ts[48];
	audit_format_ts(ts, sizeof ts);
	cJSON_AddNumberToObject(o, "v", 1);
	cJSON_AddStringToObject(o, "ts", ts);
	cJSON_AddStringToObject(o, "type", type);
	return o;
}

void audit_record_add_str(cJSON *o, const char *k, const char *v)
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
	if (!clean) {
		cJSON_AddNullToObject(o, k);
		return;
	}
	text_utf8_sanitize(v, len, clean, 3 * len + 1);
	cJSON_AddStringToObject(o, k, clean);
	free(clean);
}

/* The urgency of a record someone waits for, or may. */
static enum audit_urgency ack_urgency(const struct audit *a)
{
	return a->durability == AUDIT_DURABILITY_QUEUED ? AUDIT_URGENCY_FLUSH : AUDIT_URGENCY_ACK;
}

/* Queues a formatted record (takes ownership of o) and gives it the next
 * ticket. Returns false when the queue was full and the record was
 * dropped. */
static bool enqueue(struct audit *a, cJSON *o, enum audit_urgency urgency)
{
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!s) {
		pthread_mutex_lock(&a->mu);
		a->dropped++;
		atomic_store(&a->healthy, false);
		pthread_mutex_unlock(&a->mu);
		return false;
	}
	size_t n = strlen(s);
	s[n] = '\n';	/* replaces the NUL; the line is used by length */
	bool ok;
	pthread_mutex_lock(&a->mu);
	if (a->queue.len + n + 1 > AUDIT_QUEUE_MAX || !audit_buf_add(&a->queue, s, n + 1)) {
		a->dropped++;
		atomic_fetch_add(&a->stat_dropped, 1);
		atomic_store(&a->healthy, false);
		ok = false;
	} else {
		ok = true;
		a->tickets++;
		bool signal = false;
		a->queue_records++;
		if (a->queue.len == n + 1) {
			a->first_enq_ms = audit_mono_ms();
			signal = true;
		} else if (a->queue.len >= AUDIT_WAKE_BYTES &&
			   a->queue.len - (n + 1) < AUDIT_WAKE_BYTES) {
			signal = true;
		}
		if ((int)urgency > a->urgency) {
			a->urgency = (int)urgency;
			signal = true;
		}
		if (signal)
			pthread_cond_signal(&a->cv);
	}
	pthread_mutex_unlock(&a->mu);
	free(s);
	return ok;
}

/* "direction": "inbound" and who connected, at the end of the record. */
static void add_inbound(cJSON *o, const struct audit_inbound *ib)
{
	if (!ib)
		return;
	cJSON_AddStringToObject(o, "direction", "inbound");
	audit_record_add_str(o, "service", ib->service);
	audit_record_add_str(o, "tailnet_addr", ib->tailnet_addr);
	audit_record_add_str(o, "tailnet_node", ib->node);
	audit_record_add_str(o, "tailnet_node_id", ib->node_id);
	audit_record_add_str(o, "tailnet_user", ib->user);
	if (ib->node) {
		cJSON *tags = cJSON_AddArrayToObject(o, "tailnet_tags");
		for (size_t i = 0; i < ib->n_tags; i++) {
			/* add_str's UTF-8 care, for an array element */
			cJSON *tmp = cJSON_CreateObject();
			audit_record_add_str(tmp, "t", ib->tags[i]);
			cJSON_AddItemToArray(tags, cJSON_DetachItemFromObject(tmp, "t"));
			cJSON_Delete(tmp);
		}
	} else {
		cJSON_AddNullToObject(o, "tailnet_tags");
	}
}

bool audit_decision(struct audit *a, const struct audit_decision *d)
{
	bool refuse = a->fail_closed && !atomic_load(&a->healthy);
	cJSON *o = audit_record_new("decision");
	cJSON_AddNumberToObject(o, "conn", (double)d->conn_id);
	audit_record_add_str(o, "client", d->client);
	audit_record_add_str(o, "listener", d->listener);
	audit_record_add_str(o, "proto", d->proto);
	audit_record_add_str(o, "user", d->user);
	audit_record_add_str(o, "host", d->host);
	cJSON_AddNumberToObject(o, "port", d->port);
	audit_record_add_str(o, "addr", d->addr);
	if (refuse) {
		/* The caller refuses the connection: the record says so. */
		cJSON_AddStringToObject(o, "verdict", "deny");
		audit_record_add_str(o, "rule", d->rule);
		cJSON_AddStringToObject(o, "guard", "audit");
		char why[512];
		snprintf(why, sizeof why,
			 "audit trail cannot be written (on_failure=deny)%s%s",
			 d->reason ? "; policy said: " : "", d->reason ? d->reason : "");
		audit_record_add_str(o, "reason", why);
	} else {
		cJSON_AddStringToObject(o, "verdict", d->allow ? "allow" : "deny");
		audit_record_add_str(o, "rule", d->rule);
		audit_record_add_str(o, "guard", d->guard);
		audit_record_add_str(o, "reason", d->reason);
	}
	audit_record_add_str(o, "upstream", d->upstream);
	audit_record_add_str(o, "path", d->path);
	if (d->peer_name) {
		cJSON *peer = cJSON_AddObjectToObject(o, "peer");
		audit_record_add_str(peer, "name", d->peer_name);
		audit_record_add_str(peer, "id", d->peer_id);
		audit_record_add_str(peer, "route", d->peer_route);
	} else {
		cJSON_AddNullToObject(o, "peer");
	}
	audit_record_add_str(o, "userid", d->userid);
	add_inbound(o, d->inbound);
	bool queued = enqueue(a, o, ack_urgency(a));
	if (!a->fail_closed)
		return true;
	return !refuse && queued;
}

void audit_close(struct audit *a, const struct audit_close *c)
{
	cJSON *o = audit_record_new("close");
	cJSON_AddNumberToObject(o, "conn", (double)c->conn_id);
	audit_record_add_str(o, "client", c->client);
	audit_record_add_str(o, "proto", c->proto);
	audit_record_add_str(o, "addr", c->addr);
	cJSON_AddNumberToObject(o, "bytes_up", (double)c->bytes_up);
	cJSON_AddNumberToObject(o, "bytes_down", (double)c->bytes_down);
	cJSON_AddNumberToObject(o, "duration_ms", (double)c->duration_ms);
	audit_record_add_str(o, "end", c->end);
	audit_record_add_str(o, "error", c->error);
	if (c->udp) {
		cJSON_AddNumberToObject(o, "datagrams_up", (double)c->datagrams_up);
		cJSON_AddNumberToObject(o, "datagrams_down", (double)c->datagrams_down);
		cJSON_AddNumberToObject(o, "dropped", (double)c->dropped);
	}
	add_inbound(o, c->inbound);
	/* Nobody waits for a close record, but with "written" or "synced" it is
	 * written at once: a crash then loses only those of connections still
	 * open, and the recovery record names exactly those. */
	enqueue(a, o, a->durability == AUDIT_DURABILITY_QUEUED ? AUDIT_URGENCY_FLUSH : AUDIT_URGENCY_WRITE);
}

static void add_carried(cJSON *o, const char *key, const struct audit_carried *v, size_t n)
{
	cJSON *arr = cJSON_AddArrayToObject(o, key);
	for (size_t i = 0; i < n; i++) {
		cJSON *e = cJSON_CreateObject();
		audit_record_add_str(e, "prefix", v[i].prefix);
		audit_record_add_str(e, "peer", v[i].peer);
		audit_record_add_str(e, "peer_id", v[i].peer_id);
		audit_record_add_str(e, "kind", v[i].kind);
		cJSON_AddItemToArray(arr, e);
	}
}

void audit_tailnet(struct audit *a, const struct audit_tailnet *t)
{
	cJSON *o = audit_record_new("tailnet");
	audit_record_add_str(o, "state", t->state);
	audit_record_add_str(o, "reason", t->reason);
	audit_record_add_str(o, "self", t->self);
	cJSON_AddNumberToObject(o, "peers", (double)t->peers);
	cJSON_AddNumberToObject(o, "carried", (double)t->carried);
	add_carried(o, "added", t->added, t->n_added);
	add_carried(o, "removed", t->removed, t->n_removed);
	enqueue(a, o, AUDIT_URGENCY_FLUSH);
}

static cJSON *event_rec(struct audit *a, const char *type, const char *detail)
{
	cJSON *o = audit_record_new(type);
	audit_record_add_str(o, "detail", detail);
	if (strcmp(type, "start") == 0) {
		cJSON_AddStringToObject(o, "version", TAILFENCE_VERSION);
		cJSON_AddNumberToObject(o, "pid", a->pid);
	}
	return o;
}

void audit_event(struct audit *a, const char *type, const char *detail)
{
	enqueue(a, event_rec(a, type, detail), ack_urgency(a));
}

bool audit_healthy(const struct audit *a)
{
	return atomic_load(&((struct audit *)a)->healthy);
}

/* ------------------------------------------------------- acknowledgements */

/* The sentence a refused connection is answered with (and its close
 * record says): the error, not the sink's path, which the operator log
 * names. */
static void failure_text(const struct audit *a, char *out, size_t len)
{
	for (size_t i = 0; i < a->n_sinks; i++) {
		const struct audit_sink *s = &a->sinks[i];
		if (s->sent != s->pend.len || s->sync_failing) {
			snprintf(out, len, "audit trail unavailable: decision record not written (%.120s)",
				 s->last_err[0] ? s->last_err : "write failed");
			return;
		}
	}
	snprintf(out, len, "audit trail unavailable: decision record not written");
}

/* Adds one batch outcome to a port's list (under a->mu). */
static void port_add_seg(struct audit_port *p, uint64_t hi, bool proceed, const char *why)
{
	struct audit_ack_seg *last = p->n_segs ? &p->segs[p->n_segs - 1] : NULL;
	if (last && (last->proceed == proceed || p->n_segs == AUDIT_ACK_SEGS)) {
		/* Merging a refusal refuses the lot: never the other way round. */
		if (last->proceed && !proceed)
			snprintf(last->why, sizeof last->why, "%s", why);
		last->proceed = last->proceed && proceed;
		last->hi = hi;
	} else {
		struct audit_ack_seg *g = &p->segs[p->n_segs++];
		g->hi = hi;
		g->proceed = proceed;
		snprintf(g->why, sizeof g->why, "%s", why);
	}
	if (!p->wake_pending) {
		p->wake_pending = true;
		/* Safe under mu: a loop never holds its base's lock while it
		 * takes mu. */
		event_active(p->wake, EV_TIMEOUT, 1);
	}
}

void audit_ack_publish(struct audit *a, uint64_t hi, bool ok)
{
	bool proceed = ok || !a->fail_closed;
	char why[200] = "";
	if (!proceed)
		failure_text(a, why, sizeof why);
	pthread_mutex_lock(&a->mu);
	if (hi > a->resolved) {
		a->resolved = hi;
		a->resolved_ok = ok;
		if (a->durability != AUDIT_DURABILITY_QUEUED)
			for (struct audit_port *p = a->ports; p; p = p->next)
				port_add_seg(p, hi, proceed, why);
		pthread_cond_broadcast(&a->ack_cv);
	}
	pthread_mutex_unlock(&a->mu);
}

/* The writer resolved more tickets: release the connections waiting on
 * them, oldest first. The port's loop thread. */
static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct audit_port *p = arg;
	struct audit *a = p->a;
	struct audit_ack_seg segs[AUDIT_ACK_SEGS];
	(void)fd;
	(void)what;
	pthread_mutex_lock(&a->mu);
	size_t n = p->n_segs;
	memcpy(segs, p->segs, n * sizeof *segs);
	p->n_segs = 0;
	p->wake_pending = false;
	pthread_mutex_unlock(&a->mu);
	if (n == 0)
		return;
	p->loop_resolved = segs[n - 1].hi;
	size_t i = 0;
	struct audit_waiter *w;
	/* A callback may close (cancel) any waiter: take the head each time. */
	while ((w = TAILQ_FIRST(&p->waiters)) && w->ticket <= p->loop_resolved) {
		while (segs[i].hi < w->ticket)
			i++;
		TAILQ_REMOVE(&p->waiters, w, link);
		w->queued = false;
		w->cb(w->arg, segs[i].proceed, segs[i].proceed ? NULL : segs[i].why);
	}
}

struct audit_port *audit_port_new(struct audit *a, struct event_base *base)
{
	struct audit_port *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->a = a;
	TAILQ_INIT(&p->waiters);
	p->wake = event_new(base, -1, 0, wake_cb, p);
	if (!p->wake) {
		free(p);
		return NULL;
	}
	pthread_mutex_lock(&a->mu);	/* the writer walks the list */
	p->loop_resolved = a->resolved;
	p->next = a->ports;
	a->ports = p;
	pthread_mutex_unlock(&a->mu);
	return p;
}

void audit_port_free(struct audit_port *p)
{
	if (!p)
		return;
	struct audit *a = p->a;
	pthread_mutex_lock(&a->mu);
	for (struct audit_port **pp = &a->ports; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	pthread_mutex_unlock(&a->mu);
	event_free(p->wake);
	free(p);
}

bool audit_wait(struct audit_port *p, struct audit_waiter *w, audit_ack_fn cb, void *arg)
{
	struct audit *a = p->a;
	if (a->durability == AUDIT_DURABILITY_QUEUED)
		return false;
	pthread_mutex_lock(&a->mu);
	uint64_t t = a->tickets;
	pthread_mutex_unlock(&a->mu);
	if (t <= p->loop_resolved)
		return false;
	/* Tickets only grow and every waiter of this port is added here, on
	 * its loop: the list stays in ticket order. */
	w->ticket = t;
	w->cb = cb;
	w->arg = arg;
	w->queued = true;
	TAILQ_INSERT_TAIL(&p->waiters, w, link);
	return true;
}

void audit_wait_cancel(struct audit_port *p, struct audit_waiter *w)
{
	if (!w->queued)
		return;
	TAILQ_REMOVE(&p->waiters, w, link);
	w->queued = false;
}

bool audit_start(struct audit *a, const char *detail, unsigned timeout_ms)
{
	if (a->recovery) {
		enqueue(a, a->recovery, AUDIT_URGENCY_ACK);
		a->recovery = NULL;
	}
	enqueue(a, event_rec(a, "start", detail), AUDIT_URGENCY_ACK);
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&a->mu);
	uint64_t t = a->tickets;
	int rc = 0;
	while (a->resolved < t && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&a->ack_cv, &a->mu, &until);
	bool done = a->resolved >= t, ok = done && a->resolved_ok;
	pthread_mutex_unlock(&a->mu);
	if (!done)
		log_error("audit: the start record was not written within %u ms", timeout_ms);
	else if (!ok)
		log_error("audit: the start record could not be written to every sink%s",
			  a->fail_closed ? "; on_failure=deny: refusing connections until it can" : "");
	return ok;
}

void audit_get_stats(struct audit *a, struct audit_stats *out)
{
	pthread_mutex_lock(&a->mu);
	out->queue_records = a->queue_records;
	out->queue_bytes = a->queue.len;
	pthread_mutex_unlock(&a->mu);
	out->written = atomic_load(&a->stat_written);
	out->dropped = atomic_load(&a->stat_dropped);
	for (size_t i = 0; i < a->n_sinks; i++)
		out->dropped += atomic_load(&a->sinks[i].lost_total);
	out->sink_errors = atomic_load(&a->stat_sink_errors);
	out->healthy = atomic_load(&a->healthy);
}
