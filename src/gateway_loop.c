/*
 * gateway_loop: one of the gateway's event loops (see gateway_internal.h):
 * its thread, its listeners and their accept path, the cap on open
 * connections across loops, and the way the main thread runs a function
 * on it.
 */
#include "gateway_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "tailfence/audit.h"
#include "tailfence/config.h"
#include "tailfence/conn.h"
#include "tailfence/inbound.h"
#include "tailfence/log.h"
#include "tailfence/resolve.h"

/* How long accepting pauses after the process ran out of descriptors. */
#define GATEWAY_EMFILE_PAUSE_MS 1000

/* With several loops, a loop paused at the cap looks again this often:
 * the connection that frees a place may close on another loop. */
#define GATEWAY_CAP_POLL_MS 100

/* ---------- the cap on open connections ---------- */

size_t gateway_open(const struct gateway *gw)
{
	return atomic_load(&gw->open);
}

/* Takes one of limits.max_connections' places, if one is free: exact
 * across loops, so no two loops can both take the last one. */
static bool loop_reserve(struct gateway_loop *l)
{
	struct gateway *gw = l->gw;
	size_t max = l->env.cfg->max_connections;
	size_t cur = atomic_load(&gw->open);
	do {
		if (cur >= max)
			return false;
	} while (!atomic_compare_exchange_weak(&gw->open, &cur, cur + 1));
	return true;
}

static void loop_release(struct gateway_loop *l)
{
	atomic_fetch_sub(&l->gw->open, 1);
}

void gateway_loop_accepting(struct gateway_loop *l, bool on)
{
	if (l->accept_paused == !on)
		return;
	l->accept_paused = !on;
	for (size_t i = 0; i < l->n_listeners; i++) {
		if (on)
			evconnlistener_enable(l->listeners[i].lev);
		else
			evconnlistener_disable(l->listeners[i].lev);
	}
}

static void loop_resume_after(struct gateway_loop *l, unsigned ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(l->accept_resume, &tv);
}

/* Hands an accepted socket whose place is taken to its connection set. */
static void loop_admit(struct gateway_loop *l, struct gateway_listener *gl, evutil_socket_t fd,
		       const struct sockaddr *sa, socklen_t salen)
{
	struct inbound *in = l->gw->inbound;
	size_t before = gl->inbound ? inbound_count(in) : conn_set_count(l->conns);
	if (gl->inbound)
		inbound_accept(in, gl->entry, fd);
	else
		conn_accept(l->conns, gl->text, fd, sa, salen);
	size_t after = gl->inbound ? inbound_count(in) : conn_set_count(l->conns);
	if (after == before)
		loop_release(l);	/* it could not start (out of memory) */
}

/* Sockets accepted while every place was taken wait here, unread, like
 * the ones still in the kernel's backlog, until a place is free. There
 * are few: the loop stops accepting as soon as it finds the cap reached. */
static bool loop_hold(struct gateway_loop *l, struct gateway_listener *gl, evutil_socket_t fd,
		      const struct sockaddr *sa, socklen_t salen)
{
	if (l->n_waiting == l->cap_waiting) {
		size_t cap = l->cap_waiting ? 2 * l->cap_waiting : 4;
		struct gateway_waiting *v = realloc(l->waiting, cap * sizeof *v);
		if (!v)
			return false;
		l->waiting = v;
		l->cap_waiting = cap;
	}
	struct gateway_waiting *w = &l->waiting[l->n_waiting++];
	w->gl = gl;
	w->fd = fd;
	w->salen = salen <= sizeof w->sa ? salen : (socklen_t)sizeof w->sa;
	memcpy(&w->sa, sa, w->salen);
	return true;
}

/* Admits the held sockets while places are free, oldest first. */
static void loop_admit_held(struct gateway_loop *l)
{
	size_t i = 0;
	while (i < l->n_waiting && loop_reserve(l)) {
		struct gateway_waiting *w = &l->waiting[i++];
		loop_admit(l, w->gl, w->fd, (const struct sockaddr *)&w->sa, w->salen);
	}
	if (i == 0)
		return;
	memmove(l->waiting, l->waiting + i, (l->n_waiting - i) * sizeof *l->waiting);
	l->n_waiting -= i;
}

void gateway_loop_drop_held(struct gateway_loop *l)
{
	for (size_t i = 0; i < l->n_waiting; i++)
		evutil_closesocket(l->waiting[i].fd);
	l->n_waiting = 0;
}

static bool loop_at_capacity(const struct gateway_loop *l)
{
	return gateway_open(l->gw) >= l->env.cfg->max_connections;
}

/* Accepting may go on: places are free, and none of this loop's
 * sockets is still waiting for one. */
static void loop_maybe_resume(struct gateway_loop *l)
{
	loop_admit_held(l);
	if (l->accept_paused && l->n_waiting == 0 && !loop_at_capacity(l) &&
	    !evtimer_pending(l->accept_resume, NULL))
		gateway_loop_accepting(l, true);
}

/* A connection of this loop ended (the environment's closed()). */
static void loop_conn_gone(void *arg)
{
	struct gateway_loop *l = arg;
	struct gateway *gw = l->gw;
	loop_release(l);
	if (atomic_load(&gw->stopping)) {
		/* Safe from any thread: the main loop ends once every loop's
		 * connections are gone. */
		if (gateway_open(gw) == 0)
			event_base_loopexit(gw->base, NULL);
		return;
	}
	loop_maybe_resume(l);
}

/* The cap is reached: this loop stops accepting. With several loops the
 * place that frees up may be another loop's: look again now and then. */
static void loop_pause_at_cap(struct gateway_loop *l)
{
	if (l->accept_paused)
		return;
	log_warn("%zu connections open (limits.max_connections): pausing accept",
		 gateway_open(l->gw));
	gateway_loop_accepting(l, false);
	if (l->gw->n_loops > 1)
		loop_resume_after(l, GATEWAY_CAP_POLL_MS);
}

static void loop_accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct gateway_loop *l = arg;
	(void)fd;
	(void)what;
	if (atomic_load(&l->gw->stopping))
		return;
	loop_maybe_resume(l);
	if (l->accept_paused && l->gw->n_loops > 1)
		loop_resume_after(l, GATEWAY_CAP_POLL_MS);
}

/* ---------- accepting ---------- */

static void loop_accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
			   int salen, void *arg)
{
	struct gateway_listener *gl = arg;
	struct gateway_loop *l = gl->loop;
	(void)lev;

	if (l->n_waiting > 0 || !loop_reserve(l)) {
		/* Another loop took the last place first. */
		if (!loop_hold(l, gl, fd, sa, (socklen_t)salen))
			evutil_closesocket(fd);
		loop_pause_at_cap(l);
		return;
	}
	loop_admit(l, gl, fd, sa, (socklen_t)salen);
	if (loop_at_capacity(l))
		loop_pause_at_cap(l);
}

/* An accept failed: out of descriptors or memory pauses this loop's
 * listeners for a second instead of spinning. */
static void loop_accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct gateway_listener *gl = arg;
	struct gateway_loop *l = gl->loop;
	int err = EVUTIL_SOCKET_ERROR();
	(void)lev;
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		/* Spinning on accept() would burn the CPU: pause, as relayd does. */
		log_warn("accept on %s: %s; pausing accept for %d ms", gl->text, strerror(err),
			 GATEWAY_EMFILE_PAUSE_MS);
		gateway_loop_accepting(l, false);
		evtimer_del(l->accept_resume);
		loop_resume_after(l, GATEWAY_EMFILE_PAUSE_MS);
		return;
	}
	log_warn("accept on %s: %s", gl->text, strerror(err));
}

bool gateway_loop_bind(struct gateway_loop *l, const char *text, const struct sockaddr *sa,
		       socklen_t len, int backlog, bool reuseport,
		       const struct inbound_entry *e, size_t entry)
{
	if (l->n_listeners == l->cap_listeners) {
		errno = ENOMEM;	/* the gateway sizes the array before binding */
		return false;
	}
	struct gateway_listener *gl = &l->listeners[l->n_listeners];
	gl->loop = l;
	gl->inbound = e != NULL;
	gl->entry = entry;
	snprintf(gl->text, sizeof gl->text, "%s", text);
	unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
	if (reuseport)
		flags |= LEV_OPT_REUSEABLE_PORT;
	gl->lev = evconnlistener_new_bind(l->base, loop_accept_cb, gl, flags, backlog, sa, (int)len);
	if (!gl->lev)
		return false;
	evconnlistener_set_error_cb(gl->lev, loop_accept_error_cb);
	l->n_listeners++;
	return true;
}

/* ---------- the thread, and calls into it ---------- */

static void *loop_main(void *arg)
{
	struct gateway_loop *l = arg;
	char name[16];
	snprintf(name, sizeof name, "tf-loop-%u", l->index);
	pthread_setname_np(pthread_self(), name);	/* top -H, ps -L */
	/* Runs until gateway_loop_join(), whether it has events or not. */
	event_base_loop(l->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

struct loop_call {
	gateway_loop_fn fn;
	struct gateway_loop *l;
	void *arg;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
};

static void loop_call_cb(evutil_socket_t fd, short what, void *arg)
{
	struct loop_call *c = arg;
	(void)fd;
	(void)what;
	c->fn(c->l, c->arg);
	pthread_mutex_lock(&c->mu);
	c->done = true;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

void gateway_loop_call(struct gateway_loop *l, gateway_loop_fn fn, void *arg)
{
	if (!l->thread_running) {
		fn(l, arg);
		return;
	}
	struct loop_call c = { .fn = fn, .l = l, .arg = arg };
	pthread_mutex_init(&c.mu, NULL);
	pthread_cond_init(&c.cv, NULL);
	/* Thread-safe: the base was made after evthread_use_pthreads(), so
	 * an event activated from here wakes its loop. */
	while (event_base_once(l->base, -1, EV_TIMEOUT, loop_call_cb, &c, NULL) != 0) {
		log_warn("event loop %u: cannot post a call (out of memory); retrying", l->index);
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	pthread_mutex_lock(&c.mu);
	while (!c.done)
		pthread_cond_wait(&c.cv, &c.mu);
	pthread_mutex_unlock(&c.mu);
	pthread_mutex_destroy(&c.mu);
	pthread_cond_destroy(&c.cv);
}

void gateway_loops_call(struct gateway *gw, gateway_loop_fn fn, void *arg)
{
	for (unsigned i = 0; i < gw->n_loops; i++)
		gateway_loop_call(&gw->loops[i], fn, arg);
}

bool gateway_loop_start(struct gateway *gw, unsigned index, char *err, size_t len)
{
	struct gateway_loop *l = &gw->loops[index];
	l->gw = gw;
	l->index = index;
	metrics_init(&l->metrics);
	metrics_bind_policy(&l->metrics, gw->cfg->policy);
	l->base = index == 0 ? gw->base : event_base_new();
	if (!l->base) {
		snprintf(err, len, "cannot create event loop %u", index);
		return false;
	}
	l->resolver = resolve_ctx_new(l->base, gw->cfg, index ? gw->loops[0].resolver : NULL,
				      err, len);
	if (!l->resolver)
		return false;
	l->audit_port = audit_port_new(gw->audit, l->base);
	l->accept_resume = evtimer_new(l->base, loop_accept_resume_cb, l);
	if (!l->audit_port || !l->accept_resume) {
		snprintf(err, len, "event loop %u: out of memory", index);
		return false;
	}
	l->env = (struct conn_env){
		.base = l->base, .resolver = l->resolver, .metrics = &l->metrics,
		.audit_port = l->audit_port, .audit = gw->audit, .throttle = &gw->throttle,
		.worker = gw->worker, .last_id = &gw->last_conn_id,
		.closed = loop_conn_gone, .owner = l,
	};
	conn_env_set_config(&l->env, gw->cfg);
	l->conns = conn_set_new(&l->env);
	if (!l->conns) {
		snprintf(err, len, "event loop %u: out of memory", index);
		return false;
	}
	if (index == 0)
		return true;
	/* Signals are the main thread's: the new thread starts with every
	 * one blocked. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rc = pthread_create(&l->thread, NULL, loop_main, l);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		snprintf(err, len, "cannot start the thread of event loop %u: %s", index,
			 strerror(rc));
		return false;
	}
	l->thread_running = true;
	return true;
}

void gateway_loop_join(struct gateway_loop *l)
{
	if (!l->thread_running)
		return;
	event_base_loopexit(l->base, NULL);
	pthread_join(l->thread, NULL);
	l->thread_running = false;
}

void gateway_loop_free_conns(struct gateway_loop *l)
{
	gateway_loop_drop_held(l);
	free(l->waiting);
	l->waiting = NULL;
	conn_set_free(l->conns);
	l->conns = NULL;
}

void gateway_loop_free_rest(struct gateway_loop *l)
{
	for (size_t i = 0; i < l->n_listeners; i++)
		evconnlistener_free(l->listeners[i].lev);
	free(l->listeners);
	if (l->accept_resume)
		event_free(l->accept_resume);
	audit_port_free(l->audit_port);
	resolve_ctx_free(l->resolver);
	conn_env_clear(&l->env);
	metrics_free(&l->metrics);
	if (l->index > 0 && l->base)
		event_base_free(l->base);
}
