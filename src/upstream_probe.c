/*
 * upstream_probe: one look at the upstream (see the header). The answer is
 * delivered from an event, so a caller never sees it from inside _start.
 */
#include "tailfence/upstream_probe.h"

#include "tailfence/socks.h"

#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct upstream_probe {
	struct bufferevent *bev;
	struct event *answer;		/* delivers the result */
	enum config_upstream_kind kind;
	unsigned timeout_s;
	bool up;
	char why[160];
	upstream_probe_fn done;
	void *arg;
};

static void probe_free(struct upstream_probe *p)
{
	if (p->bev)
		bufferevent_free(p->bev);
	if (p->answer)
		event_free(p->answer);
	free(p);
}

static void probe_answer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_probe *p = arg;
	(void)fd;
	(void)what;
	upstream_probe_fn done = p->done;
	void *darg = p->arg;
	bool up = p->up;
	char why[sizeof p->why];
	snprintf(why, sizeof why, "%s", p->why);
	probe_free(p);
	done(darg, up, up ? NULL : why);
}

static void probe_finish(struct upstream_probe *p, bool up, const char *why)
{
	if (p->bev) {
		bufferevent_free(p->bev);
		p->bev = NULL;
	}
	p->up = up;
	snprintf(p->why, sizeof p->why, "%s", why ? why : "");
	event_active(p->answer, EV_TIMEOUT, 1);
}

static void probe_read_cb(struct bufferevent *bev, void *arg)
{
	struct upstream_probe *p = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	if (evbuffer_get_length(in) < 2)
		return;
	uint8_t rep[2];
	evbuffer_remove(in, rep, 2);
	if (rep[0] == 0x05 && rep[1] == SOCKS_METHOD_NOAUTH)
		probe_finish(p, true, NULL);
	else
		probe_finish(p, false, "the SOCKS5 upstream refused the no-auth method");
}

static void probe_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct upstream_probe *p = arg;
	if (what & BEV_EVENT_CONNECTED) {
		if (p->kind != CONFIG_UPSTREAM_SOCKS5) {
			probe_finish(p, true, NULL);
			return;
		}
		uint8_t g[4];
		bufferevent_write(bev, g, socks5_client_greeting(g, false));
		bufferevent_enable(bev, EV_READ);
		return;
	}
	char why[160];
	int err = 0;
	socklen_t elen = sizeof err;
	evutil_socket_t fd = bufferevent_getfd(bev);
	if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || !err)
		err = EVUTIL_SOCKET_ERROR();
	if (what & BEV_EVENT_TIMEOUT)
		snprintf(why, sizeof why, "no answer within %u s", p->timeout_s);
	else if (what & BEV_EVENT_EOF)
		snprintf(why, sizeof why, "closed the connection");
	else
		snprintf(why, sizeof why, "%s", strerror(err ? err : ECONNREFUSED));
	probe_finish(p, false, why);
}

struct upstream_probe *upstream_probe_start(struct event_base *base,
					    const struct config_upstream *up,
					    unsigned timeout_s, upstream_probe_fn done,
					    void *arg)
{
	struct upstream_probe *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->kind = up->kind;
	p->timeout_s = timeout_s;
	p->done = done;
	p->arg = arg;
	p->answer = event_new(base, -1, 0, probe_answer_cb, p);
	p->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!p->answer || !p->bev) {
		probe_free(p);
		return NULL;
	}
	struct sockaddr_storage ss;
	socklen_t len = cidr_addr_to_sockaddr(&up->addr, up->port, &ss);
	struct timeval tmo = { (time_t)timeout_s, 0 };
	bufferevent_set_timeouts(p->bev, &tmo, &tmo);
	bufferevent_setcb(p->bev, probe_read_cb, NULL, probe_event_cb, p);
	if (bufferevent_socket_connect(p->bev, (struct sockaddr *)&ss, (int)len) < 0) {
		int err = EVUTIL_SOCKET_ERROR();
		probe_finish(p, false, strerror(err ? err : EINVAL));
	}
	return p;
}

void upstream_probe_cancel(struct upstream_probe *p)
{
	if (p)
		probe_free(p);
}
