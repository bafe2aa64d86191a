/*
 * worker: runs blocking work (a password KDF) off the event loop.
 *
 * One worker thread takes jobs in order; each job's completion is delivered
 * back on the event loop's thread. The loop never waits for a job.
 */
#ifndef TAILFENCE_WORKER_H
#define TAILFENCE_WORKER_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct worker;
struct worker_job;

/* Runs on the worker thread. */
typedef void (*worker_fn)(void *arg);
/* Runs on the loop thread once fn has run; cancelled says the submitter
 * gave up (it only has to free arg then). Called exactly once per job. */
typedef void (*worker_done_fn)(void *arg, bool cancelled);

/* The base must have been created after evthread_use_pthreads(). */
struct worker *worker_new(struct event_base *base);

/* Queues fn(arg); done(arg, ...) follows on the loop. NULL on allocation
 * failure (then nothing runs). */
struct worker_job *worker_submit(struct worker *w, worker_fn fn, worker_done_fn done,
				 void *arg);

/* Jobs queued or running, not yet delivered (for the metrics endpoint). */
size_t worker_pending(struct worker *w);

/* Loop thread only: done will be called with cancelled = true. */
void worker_cancel(struct worker_job *j);

/* Stops the thread after the job it is running; jobs not yet delivered
 * get done(arg, true). */
void worker_free(struct worker *w);

#endif
