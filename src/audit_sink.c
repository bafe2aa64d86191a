/*
 * audit_sink: the audit trail's sinks (file, stdout, syslog over a unix
 * socket, UDP or TCP): opening them, writing each one's pending lines,
 * reconnecting after an error, fdatasync, reopening after logrotate, and
 * the count of lines lost while a sink could not keep up. Used by the
 * writer thread only, and by audit_open() at start-up.
 */
#include "audit_internal.h"

#include "tailfence/text.h"

#include "tailfence/log.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#define AUDIT_SINK_MAX (64u << 20)	/* bytes pending per failing sink */
#define SYSLOG_PRI 86			/* authpriv.info: 10 * 8 + 6 */

void audit_sink_close_fd(struct audit_sink *s)
{
	if (s->fd >= 0 && s->kind != AUDIT_SINK_STDOUT)
		close(s->fd);
	s->fd = -1;
}

/* udp:HOST:PORT / tcp:HOST:PORT: the host (NUL-terminated, without
 * brackets) and the port as text, for getaddrinfo. */
static bool split_host_port(const char *hp, char *host, size_t hostlen, char *port,
			    size_t portlen)
{
	struct text_hostport p;
	if (text_hostport_split(hp, strlen(hp), false, &p) != TEXT_HP_OK || p.host_len >= hostlen)
		return false;
	memcpy(host, p.host, p.host_len);
	host[p.host_len] = '\0';
	snprintf(port, portlen, "%u", (unsigned)p.port);
	return true;
}

bool audit_syslog_target_check(const char *t)
{
	char host[256], port[8];
	if (strncmp(t, "unix:", 5) == 0)
		return t[5] == '/' && strlen(t + 5) < sizeof ((struct sockaddr_un *)0)->sun_path;
	if (strncmp(t, "udp:", 4) == 0 || strncmp(t, "tcp:", 4) == 0)
		return split_host_port(t + 4, host, sizeof host, port, sizeof port);
	return false;
}

static bool sink_syslog_setup(struct audit_sink *s, const char *target, char *err,
			      size_t errlen)
{
	if (strncmp(target, "unix:", 5) == 0 || target[0] == '/') {
		const char *path = target[0] == '/' ? target : target + 5;
		struct sockaddr_un *un = (struct sockaddr_un *)&s->sa;
		if (strlen(path) >= sizeof un->sun_path || !*path) {
			snprintf(err, errlen,
				 "audit syslog target \"%s\": socket path too long or empty",
				 target);
			return false;
		}
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, path);
		s->salen = sizeof *un;
		s->is_unix = true;
		s->sock_type = SOCK_DGRAM;
		return true;
	}
	int type;
	if (strncmp(target, "udp:", 4) == 0)
		type = SOCK_DGRAM;
	else if (strncmp(target, "tcp:", 4) == 0)
		type = SOCK_STREAM;
	else {
		snprintf(err, errlen,
			 "audit syslog target \"%s\": expected unix:PATH, udp:HOST:PORT or tcp:HOST:PORT",
			 target);
		return false;
	}
	char host[256], port[8];
	if (!split_host_port(target + 4, host, sizeof host, port, sizeof port)) {
		snprintf(err, errlen,
			 "audit syslog target \"%s\": expected HOST:PORT after %.3s: (IPv6 as [addr]:port)",
			 target, target);
		return false;
	}
	struct addrinfo hints = { .ai_socktype = type }, *ai = NULL;
	int rc = getaddrinfo(host, port, &hints, &ai);
	if (rc != 0 || !ai) {
		snprintf(err, errlen, "audit syslog target \"%s\": cannot resolve %s: %s",
			 target, host, gai_strerror(rc));
		return false;
	}
	memcpy(&s->sa, ai->ai_addr, ai->ai_addrlen);
	s->salen = ai->ai_addrlen;
	s->sock_type = type;
	freeaddrinfo(ai);
	return true;
}

/* Opens (or re-opens) the sink's descriptor; returns false with errno set. */
static bool sink_connect(struct audit_sink *s)
{
	if (s->fd >= 0)
		return true;
	switch (s->kind) {
	case AUDIT_SINK_STDOUT:
		s->fd = STDOUT_FILENO;
		return true;
	case AUDIT_SINK_FILE:
		s->fd = open(s->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		return s->fd >= 0;
	case AUDIT_SINK_SYSLOG: {
		int fd = socket(s->sa.ss_family, s->sock_type | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return false;
		struct timeval tv = { .tv_sec = 2 };
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
		/* UDP stays unconnected (sendto): no ICMP errors to chase. */
		if ((s->sock_type == SOCK_STREAM || s->is_unix) &&
		    connect(fd, (struct sockaddr *)&s->sa, s->salen) < 0) {
			int e = errno;
			close(fd);
			errno = e;
			return false;
		}
		s->fd = fd;
		s->frame_off = 0;
		return true;
	}
	}
	return false;
}

bool audit_sink_open(struct audit_sink *s, const struct audit_sink_config *sc, size_t i,
		     char *err, size_t errlen)
{
	s->fd = -1;
	s->kind = sc ? sc->kind : AUDIT_SINK_STDOUT;
	char name[600];
	switch (s->kind) {
	case AUDIT_SINK_STDOUT:
		snprintf(name, sizeof name, "stdout");
		s->fd = STDOUT_FILENO;
		break;
	case AUDIT_SINK_FILE:
		if (!sc->path || !*sc->path) {
			snprintf(err, errlen, "audit.sinks[%zu]: file sink needs a \"path\"", i);
			return false;
		}
		snprintf(name, sizeof name, "file %s", sc->path);
		s->path = strdup(sc->path);
		if (!sink_connect(s)) {
			snprintf(err, errlen, "audit.sinks[%zu]: cannot open \"%s\" for appending: %s",
				 i, sc->path, strerror(errno));
			return false;
		}
		break;
	case AUDIT_SINK_SYSLOG:
		if (!sc->target || !sink_syslog_setup(s, sc->target, err, errlen)) {
			if (!sc->target)
				snprintf(err, errlen, "audit.sinks[%zu]: syslog sink needs a \"target\"", i);
			return false;
		}
		snprintf(name, sizeof name, "syslog %s", sc->target);
		/* A collector that is not up yet is retried by the writer. */
		if (!sink_connect(s))
			log_warn("audit: %s: not reachable yet: %s (will retry)",
				 name, strerror(errno));
		break;
	default:
		snprintf(err, errlen, "audit.sinks[%zu]: unknown sink type %d", i, (int)s->kind);
		return false;
	}
	s->name = strdup(name);
	return true;
}

bool audit_sink_flush(const struct audit *a, struct audit_sink *s)
{
	if (s->sent == s->pend.len)
		return true;
	if (!sink_connect(s)) {
		snprintf(s->last_err, sizeof s->last_err, "%s", strerror(errno));
		return false;
	}
	while (s->sent < s->pend.len) {
		const char *p = s->pend.p + s->sent;
		size_t left = s->pend.len - s->sent;
		if (s->kind != AUDIT_SINK_SYSLOG) {
			ssize_t n = write(s->fd, p, left);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				snprintf(s->last_err, sizeof s->last_err, "%s",
					 n < 0 ? strerror(errno) : "short write");
				return false;
			}
			s->sent += (size_t)n;
			s->dirty = true;
			continue;
		}
		/* syslog: one RFC 5424 message per line */
		const char *nl = memchr(p, '\n', left);
		size_t linelen = nl ? (size_t)(nl - p) : left;
		char head[512];
		char ts[48];
		/* The record's own "ts" would need parsing; the header carries
		 * the send time, the record keeps the event time. */
		audit_format_ts(ts, sizeof ts);
		int hl = snprintf(head, sizeof head, "<%d>1 %s %s tailfence %d audit - ",
				  SYSLOG_PRI, ts, a->hostname, a->pid);
		size_t msglen = (size_t)hl + linelen;
		ssize_t n;
		if (s->sock_type == SOCK_STREAM) {
			char frame[600];
			int fl = snprintf(frame, sizeof frame, "%zu %s", msglen, head);
			struct audit_buf out = { 0 };
			if (!audit_buf_add(&out, frame, (size_t)fl) ||
			    !audit_buf_add(&out, p, linelen)) {
				free(out.p);
				snprintf(s->last_err, sizeof s->last_err, "out of memory");
				return false;
			}
			bool ok = true;
			while (s->frame_off < out.len) {
				n = send(s->fd, out.p + s->frame_off,
					 out.len - s->frame_off, MSG_NOSIGNAL);
				if (n < 0 && errno == EINTR)
					continue;
				if (n <= 0) {
					snprintf(s->last_err, sizeof s->last_err, "%s",
						 n < 0 ? strerror(errno) : "connection closed");
					ok = false;
					break;
				}
				s->frame_off += (size_t)n;
			}
			free(out.p);
			if (!ok) {
				/* Resend the whole frame on a new connection. */
				audit_sink_close_fd(s);
				return false;
			}
			s->frame_off = 0;
		} else {
			struct iovec iov[2] = {
				{ .iov_base = head, .iov_len = (size_t)hl },
				{ .iov_base = (void *)p, .iov_len = linelen },
			};
			struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
			if (!s->is_unix) {
				mh.msg_name = &s->sa;
				mh.msg_namelen = s->salen;
			}
			do
				n = sendmsg(s->fd, &mh, MSG_NOSIGNAL);
			while (n < 0 && errno == EINTR);
			if (n < 0) {
				snprintf(s->last_err, sizeof s->last_err, "%s",
					 strerror(errno));
				if (s->is_unix)
					audit_sink_close_fd(s);
				return false;
			}
		}
		s->sent += linelen + (nl ? 1 : 0);
	}
	s->sent = 0;
	s->pend.len = 0;
	return true;
}

void audit_sink_append(struct audit_sink *s, const char *p, size_t n)
{
	if (s->sent > 0 && s->sent >= s->pend.len / 2) {
		memmove(s->pend.p, s->pend.p + s->sent, s->pend.len - s->sent);
		s->pend.len -= s->sent;
		s->sent = 0;
	}
	if (s->pend.len - s->sent + n > AUDIT_SINK_MAX || !audit_buf_add(&s->pend, p, n)) {
		for (size_t i = 0; i < n; i++)
			if (p[i] == '\n')
				s->lost++;
		atomic_fetch_add(&s->lost_total, 1);
	}
}

bool audit_sinks_written(const struct audit *a)
{
	for (size_t i = 0; i < a->n_sinks; i++)
		if (a->sinks[i].sent != a->sinks[i].pend.len)
			return false;
	return true;
}

bool audit_sinks_sync(struct audit *a)
{
	bool ok = true;
	for (size_t i = 0; i < a->n_sinks; i++) {
		struct audit_sink *s = &a->sinks[i];
		if (s->kind != AUDIT_SINK_FILE || !s->dirty || s->fd < 0)
			continue;
		int rc;
		do
			rc = fdatasync(s->fd);
		while (rc < 0 && errno == EINTR);
		if (rc < 0) {
			snprintf(s->last_err, sizeof s->last_err, "fdatasync: %s", strerror(errno));
			if (!s->sync_failing)
				log_error("audit sink_error: %s: %s%s", s->name, s->last_err,
					  a->fail_closed ? "; on_failure=deny: refusing new connections" : "");
			s->sync_failing = true;
			ok = false;
			continue;
		}
		s->dirty = false;
		if (s->sync_failing) {
			s->sync_failing = false;
			log_warn("audit: %s: fdatasync works again", s->name);
		}
	}
	if (!ok)
		atomic_store(&a->healthy, false);
	return ok;
}

bool audit_sinks_reopen(struct audit *a)
{
	bool ok = true;
	for (size_t i = 0; i < a->n_sinks; i++) {
		struct audit_sink *s = &a->sinks[i];
		if (s->kind != AUDIT_SINK_FILE)
			continue;
		int fd = open(s->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (fd < 0) {
			log_error("audit sink_error: %s: reopen failed: %s; still writing the old file",
				  s->name, strerror(errno));
			ok = false;
			continue;
		}
		audit_sink_close_fd(s);
		s->fd = fd;
	}
	return ok;
}

void audit_sinks_free(struct audit_sink *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		audit_sink_close_fd(&s[i]);
		free(s[i].name);
		free(s[i].path);
		free(s[i].pend.p);
	}
	free(s);
}
