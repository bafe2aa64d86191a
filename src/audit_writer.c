/*
 * audit_writer: the audit trail's writer thread and its life. audit_open()
 * opens the sinks and the chain, reads back the tail of each file sink
 * (a previous run that ended without a shutdown record gets a "recovery"
 * record), and starts the thread; audit_free() stops it after the last
 * batch and the shutdown checkpoint.
 *
 * The thread takes the queue (audit.c) in batches, signs each record
 * (audit_chain.c), hands the lines to every sink (audit_sink.c), writes
 * them within flush_ms or at once when someone waits, fdatasyncs for
 * "synced", reopens the files after logrotate, retries a failing sink every
 * second, writes sink_error records for what was lost, and publishes each
 * batch's outcome to the connections that wait for it.
 */
#include "audit_internal.h"

#include "tailfence/log.h"

#include <cjson/cJSON.h>
#include <event2/event.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define AUDIT_RETRY_MS 1000
#define AUDIT_DEFAULT_FLUSH_MS 200
#define AUDIT_RECOVERY_TAIL (4u << 20)	/* bytes of a file sink read back at start */

/* -------------------------------------------------------- writing records */

/* Writes one line (a complete record ending in '\n') to every sink, adding
 * the chain fields when the chain is on. Writer thread only. */
static void emit_line(struct audit *a, const char *line, size_t n)
{
	atomic_fetch_add(&a->stat_written, 1);
	if (!a->chain.on) {
		for (size_t i = 0; i < a->n_sinks; i++)
			audit_sink_append(&a->sinks[i], line, n);
		return;
	}
	struct audit_buf b = { 0 };
	if (audit_chain_sign(&a->chain, line, n, &b))
		for (size_t i = 0; i < a->n_sinks; i++)
			audit_sink_append(&a->sinks[i], b.p, b.len);
	free(b.p);
}

/* Writes the record in j (a lost one, ok false, is not) and frees j. */
static void emit_json(struct audit *a, struct audit_json *j, bool ok)
{
	if (ok)
		emit_line(a, j->b.p, j->b.len);
	audit_json_free(j);
}

/* A new record of the writer's own, stamped now. */
static void writer_record(struct audit_json *j, const char *type)
{
	char ts[48];
	audit_format_ts(ts, sizeof ts);
	audit_json_begin(j, type, ts);
}

static void emit_checkpoint(struct audit *a, const char *reason)
{
	if (!a->chain.on)
		return;
	struct audit_json j = { 0 };
	writer_record(&j, "checkpoint");
	audit_json_str(&j, "reason", reason);
	audit_json_str(&j, "key_id", a->chain.key.id);
	emit_json(a, &j, audit_json_end(&j));
}

/* A sink_error record: what was lost, where. */
static void emit_sink_error(struct audit *a, const char *sink, uint64_t lost, const char *error)
{
	struct audit_json j = { 0 };
	writer_record(&j, "sink_error");
	audit_json_str(&j, "sink", sink);
	audit_json_u64(&j, "lost", lost);
	audit_json_str(&j, "error", error);
	emit_json(a, &j, audit_json_end(&j));
}

/* Writes every sink; updates health; logs transitions. */
static void flush_all(struct audit *a, uint64_t dropped)
{
	bool all_ok = dropped == 0;
	for (size_t i = 0; i < a->n_sinks; i++) {
		struct audit_sink *s = &a->sinks[i];
		bool ok = audit_sink_flush(a, s);
		if (!ok && !s->failing) {
			s->failing = true;
			atomic_fetch_add(&a->stat_sink_errors, 1);
			log_error("audit sink_error: %s: write failed: %s; %zu bytes held for retry%s",
				  s->name, s->last_err, s->pend.len - s->sent,
				  a->fail_closed ? "; on_failure=deny: refusing new connections" : "");
		} else if (ok && s->failing) {
			s->failing = false;
			log_warn("audit: %s: writable again", s->name);
			if (s->lost) {
				char msg[256];
				snprintf(msg, sizeof msg, "%s: %llu records lost while it could not be written",
					 s->name, (unsigned long long)s->lost);
				log_error("audit sink_error: %s", msg);
				uint64_t lost = s->lost;
				s->lost = 0;
				emit_sink_error(a, s->name, lost,
						"records lost while the sink could not be written");
				audit_sink_flush(a, s);	/* best effort; retried anyway */
			}
		}
		if (s->failing || s->lost || s->sync_failing)
			all_ok = false;
	}
	if (dropped) {
		log_error("audit sink_error: writer queue full: %llu records dropped%s",
			  (unsigned long long)dropped,
			  a->fail_closed ? "; on_failure=deny: refusing new connections" : "");
		emit_sink_error(a, "queue", dropped, "writer queue full; records dropped");
		for (size_t i = 0; i < a->n_sinks; i++)
			audit_sink_flush(a, &a->sinks[i]);
	}
	atomic_store(&a->healthy, all_ok);
}

/* ----------------------------------------------------------------- thread */

static void reopen_files(struct audit *a)
{
	a->reopen_pending = !audit_sinks_reopen(a);
	a->chain.link_next = true;
}

static void *writer_main(void *arg)
{
	struct audit *a = arg;
	struct audit_buf batch = { 0 };
	pthread_mutex_lock(&a->mu);
	for (;;) {
		bool failing = !atomic_load(&a->healthy) || a->reopen_pending;
		int64_t now = audit_mono_ms();
		int64_t deadline = -1;
		if (a->queue.len)
			deadline = a->first_enq_ms + a->flush_ms;
		if (failing && (deadline < 0 || a->next_retry_ms < deadline))
			deadline = a->next_retry_ms;
		bool due = a->stop || a->reopen || a->urgency != AUDIT_URGENCY_FLUSH ||
			   a->queue.len >= AUDIT_WAKE_BYTES ||
			   (deadline >= 0 && now >= deadline);
		if (!due) {
			if (deadline < 0) {
				pthread_cond_wait(&a->cv, &a->mu);
			} else {
				struct timespec ts;
				clock_gettime(CLOCK_MONOTONIC, &ts);
				int64_t wait = deadline - now;
				ts.tv_sec += wait / 1000;
				ts.tv_nsec += (wait % 1000) * 1000000;
				if (ts.tv_nsec >= 1000000000) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000;
				}
				pthread_cond_timedwait(&a->cv, &a->mu, &ts);
			}
			continue;
		}
		/* take the queue */
		struct audit_buf q = a->queue;
		a->queue = batch;
		a->queue.len = 0;
		a->queue_records = 0;
		batch = q;
		uint64_t dropped = a->dropped;
		a->dropped = 0;
		uint64_t batch_hi = a->tickets;	/* every record up to it is in hand */
		bool batch_ack = a->urgency == AUDIT_URGENCY_ACK;
		a->urgency = AUDIT_URGENCY_FLUSH;
		bool reopen = a->reopen;
		a->reopen = false;
		bool stop = a->stop;
		pthread_mutex_unlock(&a->mu);

		for (size_t off = 0; off < batch.len;) {
			const char *nl = memchr(batch.p + off, '\n', batch.len - off);
			size_t n = (size_t)(nl - (batch.p + off)) + 1;
			emit_line(a, batch.p + off, n);
			off += n;
		}
		batch.len = 0;
		bool synced = true;	/* the old files, before a rotation */
		if (reopen) {
			/* The checkpoint closes the old file; lines still pending
			 * for it (a failing disk) move on to the new one. */
			emit_checkpoint(a, "rotate");
			for (size_t i = 0; i < a->n_sinks; i++)
				audit_sink_flush(a, &a->sinks[i]);
			if (a->durability == AUDIT_DURABILITY_SYNCED)
				synced = audit_sinks_sync(a);
			reopen_files(a);
		} else if (a->reopen_pending && audit_mono_ms() >= a->next_retry_ms) {
			reopen_files(a);
		}
		if (stop) {
			pthread_mutex_lock(&a->mu);
			bool more = a->queue.len > 0;
			pthread_mutex_unlock(&a->mu);
			if (!more) {
				emit_checkpoint(a, "shutdown");
				flush_all(a, dropped);
				/* A failing sink gets a few last chances. */
				for (int i = 0; i < 3 && !atomic_load(&a->healthy); i++) {
					struct timespec ts = { .tv_nsec = 100000000 };
					nanosleep(&ts, NULL);
					flush_all(a, 0);
				}
				if (a->durability == AUDIT_DURABILITY_SYNCED)
					audit_sinks_sync(a);
				break;
			}
		}
		flush_all(a, dropped);
		bool ok = audit_sinks_written(a);
		if (a->durability != AUDIT_DURABILITY_SYNCED) {
			audit_ack_publish(a, batch_hi, ok);
		} else if (batch_ack || !synced || !atomic_load(&a->healthy)) {
			/* Close records alone are not worth an fdatasync: they
			 * are synced, and resolved, with the next decision. A
			 * failing sync is retried with every pass. */
			ok = audit_sinks_sync(a) && synced && ok;
			audit_ack_publish(a, batch_hi, ok);
		}
		pthread_mutex_lock(&a->mu);
		if (!atomic_load(&a->healthy) || a->reopen_pending)
			a->next_retry_ms = audit_mono_ms() + AUDIT_RETRY_MS;
	}
	free(batch.p);
	return NULL;
}

/* --------------------------------------------------------------- recovery */

struct ids {
	uint64_t *v;
	size_t n, cap;
};

static void ids_add(struct ids *l, uint64_t id)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		uint64_t *v = realloc(l->v, cap * sizeof *v);
		if (!v)
			return;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = id;
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return a < b ? -1 : a > b;
}

/* Parses a line when it holds `"type":"<type>"` for one of types; returns
 * the record (caller deletes) and its type's index, or NULL. */
static cJSON *line_of_type(const char *line, size_t len, const char *const *types,
			   int *which)
{
	for (int i = 0; types[i]; i++) {
		char pat[48];
		int pl = snprintf(pat, sizeof pat, "\"type\":\"%s\"", types[i]);
		if (!memmem(line, len, pat, (size_t)pl))
			continue;
		/* The pattern may sit inside a nested object of another
		 * kind of record: the top-level "type" decides. */
		cJSON *o = cJSON_ParseWithLength(line, len);
		cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
		if (cJSON_IsString(t)) {
			for (int j = 0; types[j]; j++) {
				if (strcmp(t->valuestring, types[j]) == 0) {
					*which = j;
					return o;
				}
			}
		}
		cJSON_Delete(o);
		return NULL;
	}
	return NULL;
}

/* Is pid another tailfence that is still running (two daemons sharing a
 * file)? */
static bool other_daemon_alive(int pid)
{
	if (pid <= 0 || pid == (int)getpid())
		return false;
	char path[64], comm[64];
	snprintf(path, sizeof path, "/proc/%d/comm", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	bool alive = fgets(comm, sizeof comm, f) && strncmp(comm, "tailfence", 9) == 0;
	fclose(f);
	return alive;
}

/* The tail of a file sink, as read back: its bytes and where each line
 * starts. */
struct tail {
	char *p;
	size_t len;
	struct ids starts;	/* offsets of the lines, in order */
};

/* Line i of the tail, without its '\n'. */
static const char *tail_line(const struct tail *t, size_t i, size_t *len)
{
	size_t end = i + 1 < t->starts.n ? t->starts.v[i + 1] : t->len;
	*len = end - t->starts.v[i] - (t->p[end - 1] == '\n');
	return t->p + t->starts.v[i];
}

static void tail_free(struct tail *t)
{
	free(t->starts.v);
	free(t->p);
}

/* 1. Reads the last AUDIT_RECOVERY_TAIL bytes of the sink's file (never
 * the whole file, never a rotated one) and finds its lines; the first line
 * of a window that cuts into the file is partial and skipped. A partial
 * last line is ended with a newline in the file, so the next record starts
 * clean. False when there is nothing to read. */
static bool tail_read(struct audit_sink *s, struct tail *t)
{
	int fd = open(s->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
		close(fd);
		return false;
	}
	size_t want = st.st_size > (off_t)AUDIT_RECOVERY_TAIL ? AUDIT_RECOVERY_TAIL
							      : (size_t)st.st_size;
	off_t from = st.st_size - (off_t)want;
	char *p = malloc(want);
	size_t len = 0;
	while (p && len < want) {
		ssize_t n = pread(fd, p + len, want - len, from + (off_t)len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (!p || len == 0) {
		free(p);
		return false;
	}
	if (p[len - 1] != '\n' && s->fd >= 0 && write(s->fd, "\n", 1) != 1)
		log_warn("audit: %s: cannot end the partial last line: %s", s->path,
			 strerror(errno));

	*t = (struct tail){ .p = p, .len = len };
	size_t pos = 0;
	if (from > 0) {
		char *nl = memchr(p, '\n', len);
		pos = nl ? (size_t)(nl - p) + 1 : len;
	}
	while (pos < len) {
		ids_add(&t->starts, pos);
		char *nl = memchr(p + pos, '\n', len - pos);
		pos = nl ? (size_t)(nl - p) + 1 : len;
	}
	return true;
}

/* 2. Backwards to the last "start" or "shutdown" record. Returns true when
 * it is a shutdown: the run ended cleanly. Otherwise *start gets the start
 * record (caller deletes; NULL when none is in the tail) and *first the
 * line after it (0 without one). */
static bool tail_last_bound(const struct tail *t, cJSON **start, size_t *first)
{
	static const char *const bounds[] = { "start", "shutdown", NULL };
	*start = NULL;
	*first = 0;
	for (size_t i = t->starts.n; i-- > 0;) {
		int which;
		size_t len;
		const char *line = tail_line(t, i, &len);
		cJSON *o = line_of_type(line, len, bounds, &which);
		if (!o)
			continue;
		if (which == 1) {
			cJSON_Delete(o);
			return true;
		}
		*start = o;
		*first = i + 1;
		break;
	}
	return false;
}

/* 3. The run's connections: the ids of the decision and of the close
 * records from line first on. */
static void tail_conns(const struct tail *t, size_t first, struct ids *opened,
		       struct ids *closed)
{
	static const char *const kinds[] = { "decision", "close", NULL };
	for (size_t i = first; i < t->starts.n; i++) {
		int which;
		size_t len;
		const char *line = tail_line(t, i, &len);
		cJSON *o = line_of_type(line, len, kinds, &which);
		if (!o)
			continue;
		cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "conn");
		if (cJSON_IsNumber(id) && id->valuedouble >= 0)
			ids_add(which == 0 ? opened : closed, (uint64_t)id->valuedouble);
		cJSON_Delete(o);
	}
}

/* 4. The run's last record, looked for back to line from: its "seq" (-1
 * without one) and "ts" ("" without one). False when there is no record at
 * all (a new or foreign file). */
static bool tail_last_record(const struct tail *t, size_t from, double *last_seq,
			     char *last_ts, size_t ts_len)
{
	*last_seq = -1;
	last_ts[0] = '\0';
	for (size_t i = t->starts.n; i-- > from;) {
		size_t len;
		const char *line = tail_line(t, i, &len);
		cJSON *o = cJSON_ParseWithLength(line, len);
		if (!cJSON_IsObject(o)) {
			cJSON_Delete(o);
			continue;
		}
		cJSON *seq = cJSON_GetObjectItemCaseSensitive(o, "seq");
		cJSON *ts = cJSON_GetObjectItemCaseSensitive(o, "ts");
		if (cJSON_IsNumber(seq))
			*last_seq = seq->valuedouble;
		if (cJSON_IsString(ts))
			snprintf(last_ts, ts_len, "%s", ts->valuestring);
		cJSON_Delete(o);
		return true;
	}
	return false;
}

/* 5. The "recovery" record: the run that the start record (NULL: not in
 * the tail) began as process pid (0: not known), the connections it opened
 * and did not close, its last record. Logs its detail. */
/* id has no close record (closed is sorted). */
static bool unclosed(uint64_t id, const struct ids *closed)
{
	return !closed->n || !bsearch(&id, closed->v, closed->n, sizeof id, cmp_u64);
}

static bool recovery_record(struct audit_json *rec, const char *path, const cJSON *start,
			    int pid, const struct ids *opened, struct ids *closed,
			    double last_seq, const char *last_ts)
{
	cJSON *jstart_ts = start ? cJSON_GetObjectItemCaseSensitive(start, "ts") : NULL;
	qsort(closed->v, closed->n, sizeof *closed->v, cmp_u64);
	size_t n_open = 0;
	for (size_t i = 0; i < opened->n; i++)
		n_open += unclosed(opened->v[i], closed);
	char detail[300], pidtext[32] = "unknown";
	if (pid > 0)
		snprintf(pidtext, sizeof pidtext, "%d", pid);
	snprintf(detail, sizeof detail,
		 "the previous run (pid %s) ended without a shutdown record (killed, "
		 "crashed or power lost); %zu connection(s) have no close record%s",
		 pidtext, n_open,
		 start ? "" : " (its start record is not within the part of the file read back)");
	writer_record(rec, "recovery");
	audit_json_str(rec, "detail", detail);
	audit_json_str(rec, "file", path);
	if (pid > 0)
		audit_json_num(rec, "prev_pid", pid);
	else
		audit_json_null(rec, "prev_pid");
	audit_json_str(rec, "prev_start", cJSON_IsString(jstart_ts) ? jstart_ts->valuestring : NULL);
	audit_json_str(rec, "last_ts", last_ts[0] ? last_ts : NULL);
	if (last_seq >= 0)
		audit_json_num(rec, "last_seq", last_seq);
	else
		audit_json_null(rec, "last_seq");
	audit_json_open(rec, "unclosed", '[');
	for (size_t i = 0; i < opened->n; i++)
		if (unclosed(opened->v[i], closed))
			audit_json_u64(rec, NULL, opened->v[i]);
	audit_json_close(rec, ']');
	audit_json_bool(rec, "complete", start != NULL);
	log_warn("audit: %s: %s", path, detail);
	return audit_json_end(rec);
}

/*
 * Reads back the tail of a file sink. When the last "start" or "shutdown"
 * record in it is a start, the run that wrote it ended without a shutdown
 * (killed, crashed, power lost): returns a "recovery" record that names the
 * connections with a decision record and no close record since that start,
 * and the run's last sequence number, into rec (which must be empty): true.
 * Otherwise false. Records of other types, or lines that are not records,
 * are passed over.
 */
static bool recovery_scan(struct audit_sink *s, struct audit_json *rec)
{
	struct tail t;
	if (!tail_read(s, &t))
		return false;
	cJSON *start;
	bool made = false;
	size_t first;
	if (tail_last_bound(&t, &start, &first)) {
		tail_free(&t);
		return false;
	}
	struct ids opened = { 0 }, closed = { 0 };
	tail_conns(&t, first, &opened, &closed);
	double last_seq;
	char last_ts[48];
	bool any = tail_last_record(&t, first ? first - 1 : 0, &last_seq, last_ts, sizeof last_ts);
	cJSON *jpid = start ? cJSON_GetObjectItemCaseSensitive(start, "pid") : NULL;
	int pid = cJSON_IsNumber(jpid) ? jpid->valueint : 0;
	if (!any) {
		/* no record at all: a new or foreign file */
	} else if (other_daemon_alive(pid)) {
		log_warn("audit: %s: tailfence pid %d, which started the last run in it, is "
			 "still running; give each daemon its own file", s->path, pid);
	} else {
		made = recovery_record(rec, s->path, start, pid, &opened, &closed, last_seq,
				       last_ts);
		if (!made)
			audit_json_free(rec);	/* out of memory: no recovery record */
	}
	free(opened.v);
	free(closed.v);
	cJSON_Delete(start);
	tail_free(&t);
	return made;
}

/* ------------------------------------------------------------- public API */

struct audit *audit_open(const struct audit_config *cfg, char *err, size_t errlen)
{
	struct audit *a = calloc(1, sizeof *a);
	if (!a) {
		snprintf(err, errlen, "audit: out of memory");
		return NULL;
	}
	a->fail_closed = cfg->fail_closed;
	a->flush_ms = cfg->flush_ms ? cfg->flush_ms : AUDIT_DEFAULT_FLUSH_MS;
	a->durability = cfg->durability;
	a->pid = (int)getpid();
	atomic_init(&a->healthy, true);
	if (gethostname(a->hostname, sizeof a->hostname) != 0 || !a->hostname[0])
		strcpy(a->hostname, "-");
	a->hostname[sizeof a->hostname - 1] = '\0';

	size_t n = cfg->n_sinks ? cfg->n_sinks : 1;
	a->sinks = calloc(n, sizeof *a->sinks);
	if (!a->sinks) {
		free(a);
		snprintf(err, errlen, "audit: out of memory");
		return NULL;
	}
	a->n_sinks = n;
	/* Sinks not opened yet own no descriptor (on failure all are freed). */
	for (size_t i = 0; i < n; i++)
		a->sinks[i].fd = -1;
	for (size_t i = 0; i < n; i++)
		if (!audit_sink_open(&a->sinks[i], cfg->n_sinks ? &cfg->sinks[i] : NULL, i,
				     err, errlen))
			goto fail;

	if (cfg->hmac_key_file) {
		if (!audit_chain_open(&a->chain, cfg->hmac_key_file, err, errlen))
			goto fail;
		for (size_t i = 0; i < a->n_sinks; i++)
			if (a->sinks[i].kind == AUDIT_SINK_FILE) {
				audit_chain_resume(&a->chain, a->sinks[i].path);
				break;
			}
	}

	/* The previous run's end, as the files tell it; written by
	 * audit_start(). With several file sinks the first that shows an
	 * unclean end speaks for all. */
	for (size_t i = 0; i < a->n_sinks; i++) {
		if (a->sinks[i].kind != AUDIT_SINK_FILE)
			continue;
		struct audit_json r = { 0 };
		if (recovery_scan(&a->sinks[i], &r) && !a->recovery.b.len)
			a->recovery = r;
		else
			audit_json_free(&r);
	}

	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&a->cv, &ca);
	pthread_cond_init(&a->ack_cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&a->mu, NULL);

	/* The writer takes no signals: they belong to the event loop. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&a->thread, NULL, writer_main, a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		snprintf(err, errlen, "audit: cannot start the writer thread: %s", strerror(rc));
		pthread_cond_destroy(&a->cv);
		pthread_cond_destroy(&a->ack_cv);
		pthread_mutex_destroy(&a->mu);
		goto fail;
	}
	a->thread_started = true;
	return a;
fail:
	audit_sinks_free(a->sinks, a->n_sinks);
	audit_json_free(&a->recovery);
	audit_chain_close(&a->chain);
	free(a);
	return NULL;
}

void audit_reopen(struct audit *a)
{
	pthread_mutex_lock(&a->mu);
	a->reopen = true;
	pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

void audit_free(struct audit *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->mu);
	a->stop = true;
	pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
	pthread_join(a->thread, NULL);
	for (size_t i = 0; i < a->n_sinks; i++) {
		struct audit_sink *s = &a->sinks[i];
		if (s->pend.len > s->sent)
			log_error("audit sink_error: %s: %zu bytes could not be written before exit: %s",
				  s->name, s->pend.len - s->sent, s->last_err);
	}
	audit_sinks_free(a->sinks, a->n_sinks);
	pthread_cond_destroy(&a->cv);
	pthread_cond_destroy(&a->ack_cv);
	pthread_mutex_destroy(&a->mu);
	free(a->queue.p);
	/* Every port was freed before this (audit.h). */
	audit_json_free(&a->recovery);
	audit_chain_close(&a->chain);
	free(a);
}
