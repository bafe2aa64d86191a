/*
 * worker: runs blocking work (password KDFs) off the event loop.
 *
 * A pool of threads takes jobs from one queue, oldest first; each job's
 * completion is delivered back on the thread of the event loop that
 * submitted it (one pool serves every loop). A loop never waits for a job.
 *
 * The pool is bounded: at most max_jobs jobs wait or run at once, and at
 * most max_per_client of them share one client key (the client's prefix,
 * auth_client_prefix(), compared exactly). A submission past either limit
 * is refused at once and says which limit it met, so a flood of logins
 * from one client can never hold the queue, and a flood from many clients
 * costs a refusal, not an unbounded wait.
 *
 * A job cancelled before a thread took it is taken out of the queue there
 * and then: its function never runs and its place is free at once. A job
 * already running finishes (a KDF cannot be interrupted) and is delivered
 * as cancelled.
 */
#ifndef TAILFENCE_WORKER_H
#define TAILFENCE_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tailfence/cidr.h"

struct event_base;
struct worker;
struct worker_job;

/* Runs on a worker thread. */
typedef void (*worker_fn)(void *arg);
/* Runs on the loop thread once fn has run, or instead of it; cancelled says
 * the submitter gave up (it only has to free arg then). Called exactly once
 * per accepted job, never from inside worker_submit or worker_cancel. */
typedef void (*worker_done_fn)(void *arg, bool cancelled);

/* The most threads worker_default_threads() returns: each running scrypt
 * check holds 32 MiB. */
#define WORKER_MAX_THREADS 8

struct worker_limits {
	unsigned threads;		/* 1..WORKER_MAX_THREADS */
	size_t max_jobs;		/* waiting or running, all clients */
	size_t max_per_client;		/* waiting or running, one client key */
};

/* The CPUs this process may run on (sched_getaffinity, else the online
 * CPUs), at least 1. */
unsigned worker_cpus(void);

/* worker_cpus(), at most WORKER_MAX_THREADS. */
unsigned worker_default_threads(void);

/* NULL when a limit is 0 or a thread cannot be started. */
struct worker *worker_new(const struct worker_limits *lim);

enum worker_refusal {
	WORKER_ACCEPTED,
	WORKER_FULL,			/* max_jobs reached */
	WORKER_CLIENT_LIMIT,		/* max_per_client reached for this key */
	WORKER_NO_MEMORY,
};

/* On base's thread only (a base created after evthread_use_pthreads()).
 * Queues fn(arg), counted against client (NULL: work for nobody in
 * particular, counted only against max_jobs); done(arg, ...) follows on
 * base's loop. On refusal returns NULL, sets *why, and nothing runs
 * (arg stays the caller's). */
struct worker_job *worker_submit(struct worker *w, struct event_base *base,
				 const struct cidr_addr *client,
				 worker_fn fn, worker_done_fn done, void *arg,
				 enum worker_refusal *why);

/* On the submitting loop's thread only, on a job whose done has not been called yet: done will
 * be called with cancelled = true. Returns true when the job was still
 * waiting, so its function will never run. */
bool worker_cancel(struct worker_job *j);

/* Counters since worker_new, and the jobs waiting or running now. */
struct worker_stats {
	uint64_t ran;			/* functions that ran */
	uint64_t dropped;		/* cancelled before a thread took them */
	uint64_t refused_full;
	uint64_t refused_client;
	size_t pending;
	unsigned threads;
};

void worker_stats(struct worker *w, struct worker_stats *st);

/* Stops the threads after the jobs they are running; every job not yet
 * delivered gets done(arg, true). */
void worker_free(struct worker *w);

const char *worker_refusal_str(enum worker_refusal r);

#endif
