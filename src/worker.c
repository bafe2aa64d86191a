/*
 * worker: one thread, one queue, completions posted back to the loop with
 * event_active() (thread-safe once libevent's pthread locking is on).
 */
#include "tailfence/worker.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/queue.h>

#include <event2/event.h>

struct worker_job {
	TAILQ_ENTRY(worker_job) link;	/* queue, then the delivery list */
	struct worker *w;
	struct event *ev;
	worker_fn fn;
	worker_done_fn done;
	void *arg;
	bool cancelled;			/* loop thread only */
};

TAILQ_HEAD(worker_jobs, worker_job);

struct worker {
	struct event_base *base;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct worker_jobs queue;	/* waiting to run */
	struct worker_jobs flight;	/* running or ran, not yet delivered */
	bool stop;
};

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
		TAILQ_INSERT_TAIL(&w->flight, j, link);
		pthread_mutex_unlock(&w->lock);
		j->fn(j->arg);
		event_active(j->ev, EV_TIMEOUT, 1);
		pthread_mutex_lock(&w->lock);
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
	TAILQ_REMOVE(&w->flight, j, link);
	pthread_mutex_unlock(&w->lock);
	j->done(j->arg, j->cancelled);
	worker_job_free(j);
}

struct worker *worker_new(struct event_base *base)
{
	struct worker *w = calloc(1, sizeof *w);
	if (!w)
		return NULL;
	w->base = base;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	TAILQ_INIT(&w->queue);
	TAILQ_INIT(&w->flight);
	if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
		pthread_mutex_destroy(&w->lock);
		pthread_cond_destroy(&w->cond);
		free(w);
		return NULL;
	}
	return w;
}

struct worker_job *worker_submit(struct worker *w, worker_fn fn, worker_done_fn done,
				 void *arg)
{
	struct worker_job *j = calloc(1, sizeof *j);
	if (!j)
		return NULL;
	j->w = w;
	j->fn = fn;
	j->done = done;
	j->arg = arg;
	j->ev = event_new(w->base, -1, 0, worker_deliver_cb, j);
	if (!j->ev) {
		free(j);
		return NULL;
	}
	pthread_mutex_lock(&w->lock);
	TAILQ_INSERT_TAIL(&w->queue, j, link);
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	return j;
}

size_t worker_pending(struct worker *w)
{
	size_t n = 0;
	struct worker_job *j;
	pthread_mutex_lock(&w->lock);
	TAILQ_FOREACH(j, &w->queue, link)
		n++;
	TAILQ_FOREACH(j, &w->flight, link)
		n++;
	pthread_mutex_unlock(&w->lock);
	return n;
}

void worker_cancel(struct worker_job *j)
{
	j->cancelled = true;
}

void worker_free(struct worker *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);

	/* The thread is gone: what is left was never delivered. */
	struct worker_jobs *lists[] = { &w->queue, &w->flight };
	for (size_t i = 0; i < 2; i++) {
		while (!TAILQ_EMPTY(lists[i])) {
			struct worker_job *j = TAILQ_FIRST(lists[i]);
			TAILQ_REMOVE(lists[i], j, link);
			j->done(j->arg, true);
			worker_job_free(j);
		}
	}
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	free(w);
}
