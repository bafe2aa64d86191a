/*
 * worker: a pool of threads, one bounded queue, completions posted back to
 * the submitting loop with event_active() on an event of its base (thread-safe once libevent's pthread locking
 * is on).
 *
 * A job is in exactly one list, under the lock: `queue` (waiting), `running`
 * (a thread has it) or `ready` (its function ran or was dropped; its event
 * is or will be active). The limits count the first two.
 */
#include "tailfence/worker.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/event.h>

enum worker_job_state { JOB_QUEUED, JOB_RUNNING, JOB_READY };

struct worker_job {
	TAILQ_ENTRY(worker_job) link;
	struct worker *w;
	struct event *ev;
	worker_fn fn;
	worker_done_fn done;
	void *arg;
	struct cidr_addr client;
	enum worker_job_state state;	/* under w->lock */
	bool cancelled;			/* under w->lock */
};

TAILQ_HEAD(worker_jobs, worker_job);

struct worker {
	struct worker_limits lim;
	pthread_t *threads;
	unsigned n_threads;		/* started */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct worker_jobs queue;
	struct worker_jobs running;
	struct worker_jobs ready;
	size_t n_pending;		/* in queue or running */
	struct worker_stats st;
	bool stop;
};

unsigned worker_cpus(void)
{
	long n = 0;
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) == 0)
		n = CPU_COUNT(&set);
	if (n <= 0)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : (unsigned)n;
}

unsigned worker_default_threads(void)
{
	unsigned n = worker_cpus();
	return n > WORKER_MAX_THREADS ? WORKER_MAX_THREADS : n;
}

const char *worker_refusal_str(enum worker_refusal r)
{
	switch (r) {
	case WORKER_ACCEPTED: return "accepted";
	case WORKER_FULL: return "queue full";
	case WORKER_CLIENT_LIMIT: return "client limit";
	case WORKER_NO_MEMORY: return "out of memory";
	}
	return "?";
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);

	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->stop && TAILQ_EMPTY(&w->queue))
			pthread_cond_wait(&w->cond, &w->lock);
		if (w->stop)
			break;
		struct worker_job *j = TAILQ_FIRST(&w->queue);
		TAILQ_REMOVE(&w->queue, j, link);
		TAILQ_INSERT_TAIL(&w->running, j, link);
		j->state = JOB_RUNNING;
		pthread_mutex_unlock(&w->lock);

		j->fn(j->arg);

		pthread_mutex_lock(&w->lock);
		w->st.ran++;
		w->n_pending--;
		TAILQ_REMOVE(&w->running, j, link);
		TAILQ_INSERT_TAIL(&w->ready, j, link);
		j->state = JOB_READY;
		/* Under the lock: worker_free() must not free j before this. */
		event_active(j->ev, EV_TIMEOUT, 1);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static void worker_job_free(struct worker_job *j)
{
	event_free(j->ev);
	free(j);
}

static void worker_deliver_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker_job *j = arg;
	struct worker *w = j->w;
	(void)fd;
	(void)what;
	pthread_mutex_lock(&w->lock);
	TAILQ_REMOVE(&w->ready, j, link);
	bool cancelled = j->cancelled;
	pthread_mutex_unlock(&w->lock);
	j->done(j->arg, cancelled);
	worker_job_free(j);
}

static void worker_stop_threads(struct worker *w)
{
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	for (unsigned i = 0; i < w->n_threads; i++)
		pthread_join(w->threads[i], NULL);
	w->n_threads = 0;
}

struct worker *worker_new(const struct worker_limits *lim)
{
	if (!lim->threads || lim->threads > WORKER_MAX_THREADS || !lim->max_jobs ||
	    !lim->max_per_client)
		return NULL;
	struct worker *w = calloc(1, sizeof *w);
	if (!w)
		return NULL;
	w->threads = calloc(lim->threads, sizeof *w->threads);
	if (!w->threads) {
		free(w);
		return NULL;
	}
	w->lim = *lim;
	w->st.threads = lim->threads;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	TAILQ_INIT(&w->queue);
	TAILQ_INIT(&w->running);
	TAILQ_INIT(&w->ready);
	for (unsigned i = 0; i < lim->threads; i++) {
		if (pthread_create(&w->threads[i], NULL, worker_main, w) != 0) {
			worker_free(w);
			return NULL;
		}
		w->n_threads++;
	}
	return w;
}

static size_t worker_client_jobs(const struct worker *w, const struct cidr_addr *client)
{
	size_t n = 0;
	const struct worker_job *j;
	TAILQ_FOREACH(j, &w->queue, link)
		n += cidr_addr_equal(&j->client, client);
	TAILQ_FOREACH(j, &w->running, link)
		n += cidr_addr_equal(&j->client, client);
	return n;
}

struct worker_job *worker_submit(struct worker *w, struct event_base *base,
				 const struct cidr_addr *client,
				 worker_fn fn, worker_done_fn done, void *arg,
				 enum worker_refusal *why)
{
	struct worker_job *j = calloc(1, sizeof *j);
	if (j)
		j->ev = event_new(base, -1, 0, worker_deliver_cb, j);
	if (!j || !j->ev) {
		free(j);
		*why = WORKER_NO_MEMORY;
		return NULL;
	}
	j->w = w;
	j->fn = fn;
	j->done = done;
	j->arg = arg;
	if (client)
		j->client = *client;	/* else family 0: counted against nobody */

	pthread_mutex_lock(&w->lock);
	if (w->n_pending >= w->lim.max_jobs) {
		*why = WORKER_FULL;
		w->st.refused_full++;
	} else if (client && worker_client_jobs(w, client) >= w->lim.max_per_client) {
		*why = WORKER_CLIENT_LIMIT;
		w->st.refused_client++;
	} else {
		*why = WORKER_ACCEPTED;
		j->state = JOB_QUEUED;
		TAILQ_INSERT_TAIL(&w->queue, j, link);
		w->n_pending++;
		pthread_cond_signal(&w->cond);
	}
	pthread_mutex_unlock(&w->lock);
	if (*why != WORKER_ACCEPTED) {
		worker_job_free(j);
		return NULL;
	}
	return j;
}

bool worker_cancel(struct worker_job *j)
{
	struct worker *w = j->w;
	bool dropped = false;
	pthread_mutex_lock(&w->lock);
	j->cancelled = true;
	if (j->state == JOB_QUEUED) {
		TAILQ_REMOVE(&w->queue, j, link);
		TAILQ_INSERT_TAIL(&w->ready, j, link);
		j->state = JOB_READY;
		w->n_pending--;
		w->st.dropped++;
		dropped = true;
		event_active(j->ev, EV_TIMEOUT, 1);
	}
	pthread_mutex_unlock(&w->lock);
	return dropped;
}

void worker_stats(struct worker *w, struct worker_stats *st)
{
	pthread_mutex_lock(&w->lock);
	*st = w->st;
	st->pending = w->n_pending;
	pthread_mutex_unlock(&w->lock);
}

void worker_free(struct worker *w)
{
	if (!w)
		return;
	worker_stop_threads(w);

	/* The threads are gone: what is left was never delivered. */
	struct worker_jobs *lists[] = { &w->queue, &w->running, &w->ready };
	for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
		while (!TAILQ_EMPTY(lists[i])) {
			struct worker_job *j = TAILQ_FIRST(lists[i]);
			TAILQ_REMOVE(lists[i], j, link);
			j->done(j->arg, true);
			worker_job_free(j);
		}
	}
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	free(w->threads);
	free(w);
}
