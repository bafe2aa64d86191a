/*
 * audit: the audit trail's records and the way to the writer thread.
 *
 * Callers (the event loop) format a record (audit_json.c) on their own
 * thread and append it to a mutex-protected byte queue; the writer thread
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

/* The urgency of a record someone waits for, or may. */
static enum audit_urgency ack_urgency(const struct audit *a)
{
	return a->durability == AUDIT_DURABILITY_QUEUED ? AUDIT_URGENCY_FLUSH : AUDIT_URGENCY_ACK;
}

/* Queues a formatted record (ok: j holds the complete line; false: memory
 * ran out while formatting it) and gives it the next ticket; frees j's
 * buffer. Returns false when the record was lost or the queue was full and
 * it was dropped. */
static bool enqueue(struct audit *a, struct audit_json *j, bool ok, enum audit_urgency urgency)
{
	if (!ok) {
		audit_json_free(j);
		pthread_mutex_lock(&a->mu);
		a->dropped++;
		atomic_store(&a->healthy, false);
		pthread_mutex_unlock(&a->mu);
		return false;
	}
	size_t n = j->b.len;	/* with its '\n' */
	pthread_mutex_lock(&a->mu);
	if (a->queue.len + n > AUDIT_QUEUE_MAX || !audit_buf_add(&a->queue, j->b.p, n)) {
		a->dropped++;
		atomic_fetch_add(&a->stat_dropped, 1);
		atomic_store(&a->healthy, false);
		ok = false;
	} else {
		a->tickets++;
		bool signal = false;
		a->queue_records++;
		if (a->queue.len == n) {
			a->first_enq_ms = audit_mono_ms();
			signal = true;
		} else if (a->queue.len >= AUDIT_WAKE_BYTES &&
			   a->queue.len - n < AUDIT_WAKE_BYTES) {
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
	audit_json_free(j);
	return ok;
}

/* "direction": "inbound" and who connected, at the end of the record. */
static void add_inbound(struct audit_json *j, const struct audit_inbound *ib)
{
	if (!ib)
		return;
	audit_json_str(j, "direction", "inbound");
	audit_json_str(j, "service", ib->service);
	audit_json_str(j, "tailnet_addr", ib->tailnet_addr);
	audit_json_str(j, "tailnet_node", ib->node);
	audit_json_str(j, "tailnet_node_id", ib->node_id);
	audit_json_str(j, "tailnet_user", ib->user);
	if (ib->node) {
		audit_json_open(j, "tailnet_tags", '[');
		for (size_t i = 0; i < ib->n_tags; i++)
			audit_json_str(j, NULL, ib->tags[i]);
		audit_json_close(j, ']');
	} else {
		audit_json_null(j, "tailnet_tags");
	}
}

bool audit_fmt_decision(struct audit_json *j, const char *ts, const struct audit_decision *d,
			bool refuse)
{
	audit_json_begin(j, "decision", ts);
	audit_json_u64(j, "conn", d->conn_id);
	audit_json_str(j, "client", d->client);
	audit_json_str(j, "listener", d->listener);
	audit_json_str(j, "proto", d->proto);
	audit_json_str(j, "user", d->user);
	audit_json_str(j, "host", d->host);
	audit_json_u64(j, "port", d->port);
	audit_json_str(j, "addr", d->addr);
	if (refuse) {
		/* The caller refuses the connection: the record says so. */
		audit_json_str(j, "verdict", "deny");
		audit_json_str(j, "rule", d->rule);
		audit_json_str(j, "guard", "audit");
		char why[512];
		snprintf(why, sizeof why,
			 "audit trail cannot be written (on_failure=deny)%s%s",
			 d->reason ? "; policy said: " : "", d->reason ? d->reason : "");
		audit_json_str(j, "reason", why);
	} else {
		audit_json_str(j, "verdict", d->allow ? "allow" : "deny");
		audit_json_str(j, "rule", d->rule);
		audit_json_str(j, "guard", d->guard);
		audit_json_str(j, "reason", d->reason);
	}
	audit_json_str(j, "upstream", d->upstream);
	audit_json_str(j, "path", d->path);
	if (d->peer_name) {
		audit_json_open(j, "peer", '{');
		audit_json_str(j, "name", d->peer_name);
		audit_json_str(j, "id", d->peer_id);
		audit_json_str(j, "route", d->peer_route);
		audit_json_close(j, '}');
	} else {
		audit_json_null(j, "peer");
	}
	audit_json_str(j, "userid", d->userid);
	add_inbound(j, d->inbound);
	return audit_json_end(j);
}

bool audit_decision(struct audit *a, const struct audit_decision *d)
{
	bool refuse = a->fail_closed && !atomic_load(&a->healthy);
	char ts[48];
	audit_format_ts(ts, sizeof ts);
	struct audit_json j = { 0 };
	bool ok = audit_fmt_decision(&j, ts, d, refuse);
	bool queued = enqueue(a, &j, ok, ack_urgency(a));
	if (!a->fail_closed)
		return true;
	return !refuse && queued;
}

bool audit_fmt_close(struct audit_json *j, const char *ts, const struct audit_close *c)
{
	audit_json_begin(j, "close", ts);
	audit_json_u64(j, "conn", c->conn_id);
	audit_json_str(j, "client", c->client);
	audit_json_str(j, "proto", c->proto);
	audit_json_str(j, "addr", c->addr);
	audit_json_u64(j, "bytes_up", c->bytes_up);
	audit_json_u64(j, "bytes_down", c->bytes_down);
	audit_json_u64(j, "duration_ms", c->duration_ms);
	audit_json_str(j, "end", c->end);
	audit_json_str(j, "error", c->error);
	if (c->udp) {
		audit_json_u64(j, "datagrams_up", c->datagrams_up);
		audit_json_u64(j, "datagrams_down", c->datagrams_down);
		audit_json_u64(j, "dropped", c->dropped);
	}
	add_inbound(j, c->inbound);
	return audit_json_end(j);
}

void audit_close(struct audit *a, const struct audit_close *c)
{
	char ts[48];
	audit_format_ts(ts, sizeof ts);
	struct audit_json j = { 0 };
	bool ok = audit_fmt_close(&j, ts, c);
	/* Nobody waits for a close record, but with "written" or "synced" it is
	 * written at once: a crash then loses only those of connections still
	 * open, and the recovery record names exactly those. */
	enqueue(a, &j, ok,
		a->durability == AUDIT_DURABILITY_QUEUED ? AUDIT_URGENCY_FLUSH : AUDIT_URGENCY_WRITE);
}

static void add_carried(struct audit_json *j, const char *key, const struct audit_carried *v,
			size_t n)
{
	audit_json_open(j, key, '[');
	for (size_t i = 0; i < n; i++) {
		audit_json_open(j, NULL, '{');
		audit_json_str(j, "prefix", v[i].prefix);
		audit_json_str(j, "peer", v[i].peer);
		audit_json_str(j, "peer_id", v[i].peer_id);
		audit_json_str(j, "kind", v[i].kind);
		audit_json_close(j, '}');
	}
	audit_json_close(j, ']');
}

bool audit_fmt_tailnet(struct audit_json *j, const char *ts, const struct audit_tailnet *t)
{
	audit_json_begin(j, "tailnet", ts);
	audit_json_str(j, "state", t->state);
	audit_json_str(j, "reason", t->reason);
	audit_json_str(j, "self", t->self);
	audit_json_u64(j, "peers", t->peers);
	audit_json_u64(j, "carried", t->carried);
	add_carried(j, "added", t->added, t->n_added);
	add_carried(j, "removed", t->removed, t->n_removed);
	return audit_json_end(j);
}

void audit_tailnet(struct audit *a, const struct audit_tailnet *t)
{
	char ts[48];
	audit_format_ts(ts, sizeof ts);
	struct audit_json j = { 0 };
	bool ok = audit_fmt_tailnet(&j, ts, t);
	enqueue(a, &j, ok, AUDIT_URGENCY_FLUSH);
}

bool audit_fmt_event(struct audit_json *j, const char *ts, const char *type, const char *detail,
		     int pid)
{
	audit_json_begin(j, type, ts);
	audit_json_str(j, "detail", detail);
	if (strcmp(type, "start") == 0) {
		audit_json_str(j, "version", TAILFENCE_VERSION);
		audit_json_num(j, "pid", pid);
	}
	return audit_json_end(j);
}

static bool event_rec(struct audit *a, const char *type, const char *detail,
		      enum audit_urgency urgency)
{
	char ts[48];
	audit_format_ts(ts, sizeof ts);
	struct audit_json j = { 0 };
	bool ok = audit_fmt_event(&j, ts, type, detail, a->pid);
	return enqueue(a, &j, ok, urgency);
}

void audit_event(struct audit *a, const char *type, const char *detail)
{
	event_rec(a, type, detail, ack_urgency(a));
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
	if (a->recovery.b.len) {
		enqueue(a, &a->recovery, true, AUDIT_URGENCY_ACK);	/* frees it */
	}
	event_rec(a, "start", detail, AUDIT_URGENCY_ACK);
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
