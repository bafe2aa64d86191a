/*
 * test_worker: the bounds of the password-check pool, driven by a table of
 * steps against a real pool and event base (no sockets): the queue limit,
 * the per-client limit, a cancelled job that was still waiting never runs
 * and frees its place at once, a running one is delivered as cancelled,
 * and jobs not yet delivered when the pool is freed get done(cancelled).
 *
 * The jobs block on a gate the test opens, so which job waits and which
 * runs is decided by the steps, not by the scheduler.
 */
#include "tailfence/worker.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "tailfence/auth.h"
#include "check.h"

#define MAX_JOBS 32

static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static int started;

/* What happened to each job id. */
static struct job {
	bool submitted;
	bool ran;
	int done;		/* times done() was called */
	bool cancelled;		/* as done() said */
	struct worker_job *handle;
} jobs[MAX_JOBS];
static int delivered;

static void job_fn(void *arg)
{
	struct job *j = arg;
	pthread_mutex_lock(&gate_lock);
	j->ran = true;
	started++;
	pthread_cond_broadcast(&gate_cond);
	while (!gate_open)
		pthread_cond_wait(&gate_cond, &gate_lock);
	pthread_mutex_unlock(&gate_lock);
}

static void job_done(void *arg, bool cancelled)
{
	struct job *j = arg;
	j->done++;
	j->cancelled = cancelled;
	delivered++;
}

static void wait_started(int n)
{
	pthread_mutex_lock(&gate_lock);
	while (started < n)
		pthread_cond_wait(&gate_cond, &gate_lock);
	pthread_mutex_unlock(&gate_lock);
}

static void set_gate(bool open)
{
	pthread_mutex_lock(&gate_lock);
	gate_open = open;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);
}

static struct cidr_addr client(const char *s)
{
	struct cidr_addr a, key;
	if (!cidr_addr_parse(s, &a))
		memset(&a, 0, sizeof a);
	auth_client_prefix(&a, &key);
	return key;
}

enum op { SUBMIT, STARTED, CANCEL, HOLD, RELEASE, DRAIN, STATS };

struct step {
	enum op op;
	int id;			/* SUBMIT, CANCEL */
	const char *client;	/* SUBMIT */
	int want;		/* SUBMIT: enum worker_refusal; CANCEL: dropped;
				 * STARTED, DRAIN: count; STATS: pending */
};

/* 2 threads, at most 6 jobs waiting or running, 3 per client. */
static const struct worker_limits limits = { 2, 6, 3 };

static const struct step steps[] = {
	{ SUBMIT, 1, "127.0.0.1", WORKER_ACCEPTED },
	{ SUBMIT, 2, "127.0.0.1", WORKER_ACCEPTED },
	{ STARTED, 0, NULL, 2 },			/* both threads hold a job of A */
	{ SUBMIT, 3, "127.0.0.1", WORKER_ACCEPTED },	/* waits */
	{ SUBMIT, 4, "127.0.0.1", WORKER_CLIENT_LIMIT },	/* A's fourth */
	{ SUBMIT, 5, "::ffff:127.0.0.1", WORKER_CLIENT_LIMIT },	/* A, mapped */
	{ SUBMIT, 6, "2001:db8:1:2::1", WORKER_ACCEPTED },
	{ SUBMIT, 7, "2001:db8:1:2::2", WORKER_ACCEPTED },	/* the same /64 */
	{ SUBMIT, 8, "2001:db8:1:2:ffff::1", WORKER_ACCEPTED },
	{ SUBMIT, 9, "127.0.0.2", WORKER_FULL },		/* 6 waiting or running */
	{ STATS, 0, NULL, 6 },
	/* a waiting job cancelled: dropped, its place free at once */
	{ CANCEL, 6, NULL, true },
	{ STATS, 0, NULL, 5 },
	{ SUBMIT, 10, "127.0.0.2", WORKER_ACCEPTED },
	{ SUBMIT, 11, "2001:db8:1:2::3", WORKER_FULL },
	/* a running job cancelled: not dropped, it finishes */
	{ CANCEL, 1, NULL, false },
	{ SUBMIT, 12, "127.0.0.3", WORKER_FULL },		/* still running */
	{ DRAIN, 0, NULL, 1 },				/* the dropped job's done */
	{ RELEASE, 0, NULL, 0 },
	{ DRAIN, 0, NULL, 7 },				/* 1, 2, 3, 7, 8, 10 too */
	{ STATS, 0, NULL, 0 },
	/* every place is free again */
	{ HOLD, 0, NULL, 0 },
	{ SUBMIT, 13, "127.0.0.1", WORKER_ACCEPTED },
	{ SUBMIT, 14, "127.0.0.1", WORKER_ACCEPTED },
	{ SUBMIT, 15, "127.0.0.1", WORKER_ACCEPTED },
	{ SUBMIT, 16, "127.0.0.1", WORKER_CLIENT_LIMIT },
	{ RELEASE, 0, NULL, 0 },
	{ DRAIN, 0, NULL, 10 },
};

/* After the steps: which jobs ran and how each was delivered. */
struct outcome {
	int id;
	bool ran;
	bool cancelled;
};

static const struct outcome outcomes[] = {
	{ 1, true, true },	/* cancelled while running: ran, result dropped */
	{ 2, true, false },
	{ 3, true, false },
	{ 6, false, true },	/* cancelled while waiting: never ran */
	{ 7, true, false },
	{ 8, true, false },
	{ 10, true, false },
	{ 13, true, false },
	{ 14, true, false },
	{ 15, true, false },
};

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* Runs the loop until n jobs were delivered. A pending timer keeps the
 * loop waiting (not spinning) for the worker threads' event_active(). */
static void drain(struct event_base *base, int n)
{
	struct event *tick = evtimer_new(base, tick_cb, NULL);
	struct timeval tv = { 1, 0 };
	while (delivered < n) {
		evtimer_add(tick, &tv);
		event_base_loop(base, EVLOOP_ONCE);
	}
	event_free(tick);
}

static void test_bounds(struct event_base *base)
{
	struct worker *w = worker_new(&limits);
	CHECK(w != NULL, "worker_new");
	if (!w)
		return;
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		const struct step *s = &steps[i];
		struct job *j = &jobs[s->id];
		struct worker_stats st;
		switch (s->op) {
		case SUBMIT: {
			struct cidr_addr key = client(s->client);
			enum worker_refusal why = WORKER_NO_MEMORY;
			j->handle = worker_submit(w, base, &key, job_fn, job_done, j, &why);
			j->submitted = j->handle != NULL;
			CHECK((int)why == s->want && j->submitted == (s->want == WORKER_ACCEPTED),
			      "step %zu: job %d from %s: %s, want %s", i, s->id, s->client,
			      worker_refusal_str(why), worker_refusal_str((enum worker_refusal)s->want));
			break;
		}
		case STARTED:
			wait_started(s->want);
			break;
		case CANCEL: {
			bool dropped = worker_cancel(j->handle);
			CHECK(dropped == (bool)s->want, "step %zu: cancel job %d: dropped %d, want %d",
			      i, s->id, dropped, s->want);
			break;
		}
		case HOLD:
		case RELEASE:
			set_gate(s->op == RELEASE);
			break;
		case DRAIN:
			drain(base, s->want);
			CHECK(delivered == s->want, "step %zu: %d delivered, want %d", i, delivered,
			      s->want);
			break;
		case STATS:
			worker_stats(w, &st);
			CHECK(st.pending == (size_t)s->want, "step %zu: %zu pending, want %d", i,
			      st.pending, s->want);
			break;
		}
	}
	for (size_t i = 0; i < sizeof outcomes / sizeof outcomes[0]; i++) {
		const struct outcome *o = &outcomes[i];
		const struct job *j = &jobs[o->id];
		CHECK(j->ran == o->ran && j->done == 1 && j->cancelled == o->cancelled,
		      "job %d: ran %d, done %d times, cancelled %d; want ran %d, once, cancelled %d",
		      o->id, j->ran, j->done, j->cancelled, o->ran, o->cancelled);
	}
	for (int id = 0; id < MAX_JOBS; id++)
		CHECK(jobs[id].submitted || (!jobs[id].ran && !jobs[id].done),
		      "refused job %d ran or was delivered", id);
	struct worker_stats st;
	worker_stats(w, &st);
	CHECK(st.ran == 9 && st.dropped == 1 && st.refused_full == 3 && st.refused_client == 3 &&
	      st.threads == 2,
	      "stats: %llu ran, %llu dropped, %llu full, %llu client, %u threads",
	      (unsigned long long)st.ran, (unsigned long long)st.dropped,
	      (unsigned long long)st.refused_full, (unsigned long long)st.refused_client,
	      st.threads);
	worker_free(w);
}

/* Jobs that ran but were never delivered (the loop did not run again)
 * are delivered as cancelled when the pool is freed; nothing twice. */
static void test_free_undelivered(struct event_base *base)
{
	memset(jobs, 0, sizeof jobs);
	delivered = 0;
	started = 0;
	set_gate(true);
	struct worker *w = worker_new(&limits);
	CHECK(w != NULL, "worker_new");
	if (!w)
		return;
	for (int id = 0; id < 3; id++) {
		struct cidr_addr key = client("127.0.0.9");
		enum worker_refusal why;
		jobs[id].handle = worker_submit(w, base, &key, job_fn, job_done, &jobs[id], &why);
		CHECK(jobs[id].handle != NULL, "submit %d: %s", id, worker_refusal_str(why));
	}
	wait_started(3);
	worker_free(w);
	for (int id = 0; id < 3; id++)
		CHECK(jobs[id].ran && jobs[id].done == 1 && jobs[id].cancelled,
		      "job %d: ran %d, done %d, cancelled %d", id, jobs[id].ran, jobs[id].done,
		      jobs[id].cancelled);
	/* the events were freed with the jobs: nothing is left to fire */
	CHECK(event_base_loop(base, EVLOOP_NONBLOCK) == 1, "events left on the base");
	CHECK(delivered == 3, "%d deliveries", delivered);
}

static void test_limits(void)
{
	static const struct worker_limits bad[] = {
		{ 0, 6, 3 }, { WORKER_MAX_THREADS + 1, 6, 3 }, { 2, 0, 3 }, { 2, 6, 0 },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		CHECK(worker_new(&bad[i]) == NULL, "limits %zu accepted", i);
	unsigned n = worker_default_threads();
	CHECK(n >= 1 && n <= WORKER_MAX_THREADS, "default threads %u", n);
}

int main(void)
{
	evthread_use_pthreads();
	struct event_base *base = event_base_new();
	CHECK(base != NULL, "event_base_new");
	if (!base)
		return 1;
	test_limits();
	test_bounds(base);
	test_free_undelivered(base);
	event_base_free(base);
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
