/*
 * audit: the audit trail (records, sinks, HMAC chain) and its verifier.
 *
 * Callers (the event loop) format a record with cJSON on their own thread
 * and append it to a mutex-protected byte queue; one writer thread takes the
 * queue, adds the chain fields ("seq", "prev", "mac") in queue order, and
 * appends the lines to each sink's pending buffer, which it writes to the
 * file, stdout or syslog. A sink that cannot be written keeps its pending
 * bytes (bounded) and is retried every second; meanwhile the trail is
 * unhealthy and, with fail_closed, audit_decision() returns false.
 *
 * Acknowledgements: every queued record takes a ticket (1, 2, ...). After a
 * batch is written to every sink (and fdatasync'd, for "synced"), the writer
 * publishes the batch's highest ticket, with whether the batch made it, and
 * wakes the loop (event_active); the loop releases the connections waiting
 * on tickets up to it, in ticket order (a FIFO: tickets only grow). A
 * decision record, with "written" or "synced", makes the writer start at
 * once instead of after flush_ms (a close record too, but only a batch with
 * a decision in it is synced); the records queued while it writes or syncs
 * go together in the next batch (group commit).
 *
 * Chain (docs/audit.md): line = {"v":1,"seq":N[,"prev":"hex"],...REST} and
 * mac = HMAC-SHA256(key, prev_mac || line); the written line is the line with
 * its closing '}' replaced by ,"mac":"<64 hex>"} and a newline.
 */
#include "tailfence/audit.h"
#include "tailfence/text.h"
#include "tailfence/log.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef TAILFENCE_VERSION
#define TAILFENCE_VERSION "unknown"
#endif

#define AUDIT_QUEUE_MAX (64u << 20)	/* bytes queued for the writer */
#define AUDIT_SINK_MAX (64u << 20)	/* bytes pending per failing sink */
#define AUDIT_WAKE_BYTES (256u << 10)	/* drain early past this */
#define AUDIT_RETRY_MS 1000
#define AUDIT_DEFAULT_FLUSH_MS 200
#define SYSLOG_PRI 86			/* authpriv.info: 10 * 8 + 6 */
#define MAC_SUFFIX_LEN (8 + 2 * AUDIT_MAC_LEN + 2)	/* ,"mac":"..."} */
#define AUDIT_ACK_SEGS 32		/* batch outcomes not yet seen by the loop */
#define AUDIT_RECOVERY_TAIL (4u << 20)	/* bytes of a file sink read back at start */

/* ---------------------------------------------------------------- buffers */

struct buf {
	char *p;
	size_t len, cap;
};

static bool buf_reserve(struct buf *b, size_t more)
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

static bool buf_add(struct buf *b, const void *p, size_t n)
{
	if (!buf_reserve(b, n))
		return false;
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return true;
}

/* ---------------------------------------------------------------- helpers */

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
	static const char hx[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hx[in[i] >> 4];
		out[2 * i + 1] = hx[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static int hex_val(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static bool hex_decode(const char *in, size_t n, unsigned char *out)
{
	for (size_t i = 0; i < n; i++) {
		int h = hex_val((unsigned char)in[2 * i]);
		int l = hex_val((unsigned char)in[2 * i + 1]);
		if (h < 0 || l < 0)
			return false;
		out[i] = (unsigned char)(h << 4 | l);
	}
	return true;
}

static void format_ts(char *out, size_t len)
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

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* HMAC-SHA256 over a || b. */
static bool hmac2(const unsigned char *key, size_t keylen,
		  const void *a, size_t alen, const void *b, size_t blen,
		  unsigned char out[AUDIT_MAC_LEN])
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
						 (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	size_t outl = 0;
	bool ok = ctx && EVP_MAC_init(ctx, key, keylen, params) &&
		  EVP_MAC_update(ctx, a, alen) &&
		  EVP_MAC_update(ctx, b, blen) &&
		  EVP_MAC_final(ctx, out, &outl, AUDIT_MAC_LEN) &&
		  outl == AUDIT_MAC_LEN;
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	return ok;
}

/* Public identifier of a key: the first 8 bytes of HMAC(key, label), hex. */
static void key_id(const unsigned char *key, size_t keylen, char out[17])
{
	static const char label[] = "tailfence audit key id";
	unsigned char m[AUDIT_MAC_LEN];
	if (!hmac2(key, keylen, label, sizeof label - 1, "", 0, m))
		memset(m, 0, sizeof m);
	hex_encode(m, 8, out);
}

bool audit_key_load(const char *path, unsigned char **key, size_t *keylen,
		    char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "audit.hmac_key_file: \"%s\": %s", path,
			 strerror(errno));
		return false;
	}
	unsigned char tmp[4096];
	size_t n = fread(tmp, 1, sizeof tmp, f);
	bool too_big = n == sizeof tmp && fgetc(f) != EOF;
	fclose(f);
	while (n > 0 && isspace(tmp[n - 1]))
		n--;
	if (too_big || n < 16) {
		snprintf(err, errlen,
			 "audit.hmac_key_file: \"%s\": key must be 16 to 4095 bytes "
			 "(try: head -c 32 /dev/urandom | base64 > %s)",
			 path, path);
		OPENSSL_cleanse(tmp, sizeof tmp);
		return false;
	}
	*key = malloc(n);
	if (!*key) {
		snprintf(err, errlen, "audit.hmac_key_file: out of memory");
		return false;
	}
	memcpy(*key, tmp, n);
	*keylen = n;
	OPENSSL_cleanse(tmp, sizeof tmp);
	return true;
}

/* ------------------------------------------------------------------ sinks */

struct sink {
	enum audit_sink_kind kind;
	char *name;		/* "file:/x", "stdout", "syslog:udp:..." for messages */
	char *path;		/* FILE */
	int fd;
	/* SYSLOG */
	int sock_type;		/* SOCK_DGRAM or SOCK_STREAM */
	bool is_unix;
	struct sockaddr_storage sa;
	socklen_t salen;
	size_t frame_off;	/* bytes of the current TCP frame already sent */
	/* pending lines ("...\n"), sent from offset sent */
	struct buf pend;
	size_t sent;
	uint64_t lost;		/* lines dropped because pend was full */
	atomic_uint_fast64_t lost_total;	/* appends refused, ever (audit_get_stats) */
	bool failing;
	bool dirty;		/* FILE: written since the last fdatasync */
	bool sync_failing;	/* FILE: the last fdatasync failed */
	char last_err[160];
};

/* The outcome of the batches up to ticket hi (since the previous one). */
struct ack_seg {
	uint64_t hi;
	bool proceed;
	char why[200];
};

struct audit {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct buf queue;	/* complete lines, each ending in '\n' */
	int64_t first_enq_ms;	/* when the queue became non-empty */
	uint64_t dropped;	/* records refused because the queue was full */
	bool stop, reopen;
	atomic_bool healthy;
	/* For audit_get_stats(): queue_records under mu, the rest atomic. */
	uint64_t queue_records;
	atomic_uint_fast64_t stat_written, stat_dropped, stat_sink_errors;
	bool fail_closed;
	unsigned flush_ms;
	enum audit_durability durability;
	pthread_t thread;
	bool thread_started;

	/* tickets and acknowledgements (under mu) */
	uint64_t tickets;	/* the last ticket given to a queued record */
	int urgency;		/* the most urgent record queued: enum urgency */
	uint64_t resolved;	/* every ticket up to this one is resolved */
	bool resolved_ok;	/* ... and the last batch was written */
	pthread_cond_t ack_cv;	/* resolved moved (audit_start waits on it) */
	struct ack_seg segs[AUDIT_ACK_SEGS];
	size_t n_segs;
	bool wake_pending;
	/* loop side */
	struct event *wake;
	TAILQ_HEAD(audit_waiters, audit_waiter) waiters;
	uint64_t loop_resolved;	/* the last ticket the loop has seen resolved */

	cJSON *recovery;	/* recovery record for audit_start(), or NULL */

	struct sink *sinks;
	size_t n_sinks;
	char hostname[256];
	int pid;

	/* chain: touched only by the writer thread after audit_open() */
	bool chain;
	unsigned char *key;
	size_t keylen;
	char key_id[17];
	uint64_t seq;		/* next sequence number */
	unsigned char prev[AUDIT_MAC_LEN];
	bool have_prev;		/* prev is a real MAC (seq > 0) */
	bool link_next;		/* write "prev" into the next record */
	int64_t next_retry_ms;
	bool reopen_pending;	/* a reopen failed; retry it */
};

static void sink_close_fd(struct sink *s)
{
	if (s->fd >= 0 && s->kind != AUDIT_SINK_STDOUT)
		close(s->fd);
	s->fd = -1;
}

static bool parse_hostport(const char *hp, char *host, size_t hostlen,
			   char *port, size_t portlen)
{
	const char *colon;
	if (hp[0] == '[') {
		const char *rb = strchr(hp, ']');
		if (!rb || rb[1] != ':')
			return false;
		if ((size_t)(rb - hp - 1) >= hostlen)
			return false;
		memcpy(host, hp + 1, (size_t)(rb - hp - 1));
		host[rb - hp - 1] = '\0';
		colon = rb + 1;
	} else {
		colon = strrchr(hp, ':');
		if (!colon || (size_t)(colon - hp) >= hostlen || colon == hp)
			return false;
		memcpy(host, hp, (size_t)(colon - hp));
		host[colon - hp] = '\0';
	}
	if (!colon[1] || strlen(colon + 1) >= portlen)
		return false;
	for (const char *c = colon + 1; *c; c++)
		if (!isdigit((unsigned char)*c))
			return false;
	strcpy(port, colon + 1);
	return atoi(port) > 0 && atoi(port) < 65536;
}

static bool sink_syslog_setup(struct sink *s, const char *target, char *err,
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
	if (!parse_hostport(target + 4, host, sizeof host, port, sizeof port)) {
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
static bool sink_connect(struct sink *s)
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

/* Writes what it can of the sink's pending lines. Returns false on error
 * (errno-based text in s->last_err); pending bytes stay for a retry. */
static bool sink_flush(struct audit *a, struct sink *s)
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
		format_ts(ts, sizeof ts);
		int hl = snprintf(head, sizeof head, "<%d>1 %s %s tailfence %d audit - ",
				  SYSLOG_PRI, ts, a->hostname, a->pid);
		size_t msglen = (size_t)hl + linelen;
		ssize_t n;
		if (s->sock_type == SOCK_STREAM) {
			char frame[600];
			int fl = snprintf(frame, sizeof frame, "%zu %s", msglen, head);
			struct buf out = { 0 };
			if (!buf_add(&out, frame, (size_t)fl) ||
			    !buf_add(&out, p, linelen)) {
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
				sink_close_fd(s);
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
					sink_close_fd(s);
				return false;
			}
		}
		s->sent += linelen + (nl ? 1 : 0);
	}
	s->sent = 0;
	s->pend.len = 0;
	return true;
}

/* Appends bytes (complete lines) to a sink's pending buffer; drops them
 * (counting lines) when the sink is already too far behind. */
static void sink_append(struct sink *s, const char *p, size_t n)
{
	if (s->sent > 0 && s->sent >= s->pend.len / 2) {
		memmove(s->pend.p, s->pend.p + s->sent, s->pend.len - s->sent);
		s->pend.len -= s->sent;
		s->sent = 0;
	}
	if (s->pend.len - s->sent + n > AUDIT_SINK_MAX || !buf_add(&s->pend, p, n)) {
		for (size_t i = 0; i < n; i++)
			if (p[i] == '\n')
				s->lost++;
		atomic_fetch_add(&s->lost_total, 1);
	}
}

/* --------------------------------------------------------------- records */

static cJSON *rec_new(const char *type)
{
	cJSON *o = cJSON_CreateObject();
	char ts[48];
	format_ts(ts, sizeof ts);
	cJSON_AddNumberToObject(o, "v", 1);
	cJSON_AddStringToObject(o, "ts", ts);
	cJSON_AddStringToObject(o, "type", type);
	return o;
}

/* Every string goes into a record as valid UTF-8 (bytes that are not
 * become U+FFFD), so strict JSON readers never drop a hostile record. */
static void add_str(cJSON *o, const char *k, const char *v)
{
	if (!v) {
		cJSON_AddNullToObject(o, k);
		return;
	}
	size_t len = strlen(v);
	bool valid = true;
	for (size_t i = 0; i < len && valid;) {
		unsigned cp;
		size_t n = text_utf8_next(v + i, len - i, &cp);
		valid = n > 0;
		i += n;
	}
	if (valid) {
		cJSON_AddStringToObject(o, k, v);
		return;
	}
	char *clean = malloc(3 * len + 1);
	if (!clean) {
		cJSON_AddNullToObject(o, k);
		return;
	}
	text_utf8_sanitize(v, len, clean, 3 * len + 1);
	cJSON_AddStringToObject(o, k, clean);
	free(clean);
}

/* How soon a queued record must be written. */
enum urgency {
	URGENCY_FLUSH,		/* within flush_ms */
	URGENCY_WRITE,		/* at once */
	URGENCY_ACK,		/* at once, and synced with "synced": someone waits */
};

/* The urgency of a record someone waits for, or may. */
static enum urgency ack_urgency(const struct audit *a)
{
	return a->durability == AUDIT_DURABILITY_QUEUED ? URGENCY_FLUSH : URGENCY_ACK;
}

/* Queues a formatted record (takes ownership of o) and gives it the next
 * ticket. Returns false when the queue was full and the record was
 * dropped. */
static bool enqueue(struct audit *a, cJSON *o, enum urgency urgency)
{
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!s) {
		pthread_mutex_lock(&a->mu);
		a->dropped++;
		atomic_store(&a->healthy, false);
		pthread_mutex_unlock(&a->mu);
		return false;
	}
	size_t n = strlen(s);
	s[n] = '\n';	/* replaces the NUL; the line is used by length */
	bool ok;
	pthread_mutex_lock(&a->mu);
	if (a->queue.len + n + 1 > AUDIT_QUEUE_MAX || !buf_add(&a->queue, s, n + 1)) {
		a->dropped++;
		atomic_fetch_add(&a->stat_dropped, 1);
		atomic_store(&a->healthy, false);
		ok = false;
	} else {
		ok = true;
		a->tickets++;
		bool signal = false;
		a->queue_records++;
		if (a->queue.len == n + 1) {
			a->first_enq_ms = mono_ms();
			signal = true;
		} else if (a->queue.len >= AUDIT_WAKE_BYTES &&
			   a->queue.len - (n + 1) < AUDIT_WAKE_BYTES) {
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
	free(s);
	return ok;
}

/* "direction": "inbound" and who connected, at the end of the record. */
static void add_inbound(cJSON *o, const struct audit_inbound *ib)
{
	if (!ib)
		return;
	cJSON_AddStringToObject(o, "direction", "inbound");
	add_str(o, "service", ib->service);
	add_str(o, "tailnet_addr", ib->tailnet_addr);
	add_str(o, "tailnet_node", ib->node);
	add_str(o, "tailnet_node_id", ib->node_id);
	add_str(o, "tailnet_user", ib->user);
	if (ib->node) {
		cJSON *tags = cJSON_AddArrayToObject(o, "tailnet_tags");
		for (size_t i = 0; i < ib->n_tags; i++) {
			/* add_str's UTF-8 care, for an array element */
			cJSON *tmp = cJSON_CreateObject();
			add_str(tmp, "t", ib->tags[i]);
			cJSON_AddItemToArray(tags, cJSON_DetachItemFromObject(tmp, "t"));
			cJSON_Delete(tmp);
		}
	} else {
		cJSON_AddNullToObject(o, "tailnet_tags");
	}
}

bool audit_decision(struct audit *a, const struct audit_decision *d)
{
	bool refuse = a->fail_closed && !atomic_load(&a->healthy);
	cJSON *o = rec_new("decision");
	cJSON_AddNumberToObject(o, "conn", (double)d->conn_id);
	add_str(o, "client", d->client);
	add_str(o, "listener", d->listener);
	add_str(o, "proto", d->proto);
	add_str(o, "user", d->user);
	add_str(o, "host", d->host);
	cJSON_AddNumberToObject(o, "port", d->port);
	add_str(o, "addr", d->addr);
	if (refuse) {
		/* The caller refuses the connection: the record says so. */
		cJSON_AddStringToObject(o, "verdict", "deny");
		add_str(o, "rule", d->rule);
		cJSON_AddStringToObject(o, "guard", "audit");
		char why[512];
		snprintf(why, sizeof why,
			 "audit trail cannot be written (on_failure=deny)%s%s",
			 d->reason ? "; policy said: " : "", d->reason ? d->reason : "");
		add_str(o, "reason", why);
	} else {
		cJSON_AddStringToObject(o, "verdict", d->allow ? "allow" : "deny");
		add_str(o, "rule", d->rule);
		add_str(o, "guard", d->guard);
		add_str(o, "reason", d->reason);
	}
	add_str(o, "upstream", d->upstream);
	add_str(o, "path", d->path);
	if (d->peer_name) {
		cJSON *peer = cJSON_AddObjectToObject(o, "peer");
		add_str(peer, "name", d->peer_name);
		add_str(peer, "id", d->peer_id);
		add_str(peer, "route", d->peer_route);
	} else {
		cJSON_AddNullToObject(o, "peer");
	}
	add_str(o, "userid", d->userid);
	add_inbound(o, d->inbound);
	bool queued = enqueue(a, o, ack_urgency(a));
	if (!a->fail_closed)
		return true;
	return !refuse && queued;
}

void audit_close(struct audit *a, const struct audit_close *c)
{
	cJSON *o = rec_new("close");
	cJSON_AddNumberToObject(o, "conn", (double)c->conn_id);
	add_str(o, "client", c->client);
	add_str(o, "proto", c->proto);
	add_str(o, "addr", c->addr);
	cJSON_AddNumberToObject(o, "bytes_up", (double)c->bytes_up);
	cJSON_AddNumberToObject(o, "bytes_down", (double)c->bytes_down);
	cJSON_AddNumberToObject(o, "duration_ms", (double)c->duration_ms);
	add_str(o, "end", c->end);
	add_str(o, "error", c->error);
	if (c->udp) {
		cJSON_AddNumberToObject(o, "datagrams_up", (double)c->datagrams_up);
		cJSON_AddNumberToObject(o, "datagrams_down", (double)c->datagrams_down);
		cJSON_AddNumberToObject(o, "dropped", (double)c->dropped);
	}
	add_inbound(o, c->inbound);
	/* Nobody waits for a close record, but with "written" or "synced" it is
	 * written at once: a crash then loses only those of connections still
	 * open, and the recovery record names exactly those. */
	enqueue(a, o, a->durability == AUDIT_DURABILITY_QUEUED ? URGENCY_FLUSH : URGENCY_WRITE);
}

static void add_carried(cJSON *o, const char *key, const struct audit_carried *v, size_t n)
{
	cJSON *arr = cJSON_AddArrayToObject(o, key);
	for (size_t i = 0; i < n; i++) {
		cJSON *e = cJSON_CreateObject();
		add_str(e, "prefix", v[i].prefix);
		add_str(e, "peer", v[i].peer);
		add_str(e, "peer_id", v[i].peer_id);
		add_str(e, "kind", v[i].kind);
		cJSON_AddItemToArray(arr, e);
	}
}

void audit_tailnet(struct audit *a, const struct audit_tailnet *t)
{
	cJSON *o = rec_new("tailnet");
	add_str(o, "state", t->state);
	add_str(o, "reason", t->reason);
	add_str(o, "self", t->self);
	cJSON_AddNumberToObject(o, "peers", (double)t->peers);
	cJSON_AddNumberToObject(o, "carried", (double)t->carried);
	add_carried(o, "added", t->added, t->n_added);
	add_carried(o, "removed", t->removed, t->n_removed);
	enqueue(a, o, URGENCY_FLUSH);
}

static cJSON *event_rec(struct audit *a, const char *type, const char *detail)
{
	cJSON *o = rec_new(type);
	add_str(o, "detail", detail);
	if (strcmp(type, "start") == 0) {
		cJSON_AddStringToObject(o, "version", TAILFENCE_VERSION);
		cJSON_AddNumberToObject(o, "pid", a->pid);
	}
	return o;
}

void audit_event(struct audit *a, const char *type, const char *detail)
{
	enqueue(a, event_rec(a, type, detail), ack_urgency(a));
}

bool audit_healthy(const struct audit *a)
{
	return atomic_load(&((struct audit *)a)->healthy);
}

const char *audit_durability_name(enum audit_durability d)
{
	switch (d) {
	case AUDIT_DURABILITY_QUEUED: return "queued";
	case AUDIT_DURABILITY_WRITTEN: return "written";
	case AUDIT_DURABILITY_SYNCED: return "synced";
	}
	return NULL;
}

bool audit_durability_parse(const char *s, enum audit_durability *out)
{
	static const enum audit_durability all[] = {
		AUDIT_DURABILITY_QUEUED, AUDIT_DURABILITY_WRITTEN, AUDIT_DURABILITY_SYNCED,
	};
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
		if (strcmp(s, audit_durability_name(all[i])) == 0) {
			*out = all[i];
			return true;
		}
	}
	return false;
}

/* ------------------------------------------------- waiting for the writer */

/* The writer resolved more tickets: release the connections waiting on
 * them, oldest first. Loop thread. */
static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct audit *a = arg;
	struct ack_seg segs[AUDIT_ACK_SEGS];
	(void)fd;
	(void)what;
	pthread_mutex_lock(&a->mu);
	size_t n = a->n_segs;
	memcpy(segs, a->segs, n * sizeof *segs);
	a->n_segs = 0;
	a->wake_pending = false;
	pthread_mutex_unlock(&a->mu);
	if (n == 0)
		return;
	a->loop_resolved = segs[n - 1].hi;
	size_t i = 0;
	struct audit_waiter *w;
	/* A callback may close (cancel) any waiter: take the head each time. */
	while ((w = TAILQ_FIRST(&a->waiters)) && w->ticket <= a->loop_resolved) {
		while (segs[i].hi < w->ticket)
			i++;
		TAILQ_REMOVE(&a->waiters, w, link);
		w->queued = false;
		w->cb(w->arg, segs[i].proceed, segs[i].proceed ? NULL : segs[i].why);
	}
}

bool audit_attach(struct audit *a, struct event_base *base)
{
	struct event *ev = event_new(base, -1, 0, wake_cb, a);
	pthread_mutex_lock(&a->mu);	/* the writer reads it */
	a->wake = ev;
	pthread_mutex_unlock(&a->mu);
	return ev != NULL;
}

bool audit_wait(struct audit *a, struct audit_waiter *w, audit_ack_fn cb, void *arg)
{
	if (a->durability == AUDIT_DURABILITY_QUEUED || !a->wake)
		return false;
	pthread_mutex_lock(&a->mu);
	uint64_t t = a->tickets;
	pthread_mutex_unlock(&a->mu);
	if (t <= a->loop_resolved)
		return false;
	/* Tickets only grow and every waiter is added here, on the loop:
	 * the list stays in ticket order. */
	w->ticket = t;
	w->cb = cb;
	w->arg = arg;
	w->queued = true;
	TAILQ_INSERT_TAIL(&a->waiters, w, link);
	return true;
}

void audit_wait_cancel(struct audit *a, struct audit_waiter *w)
{
	if (!w->queued)
		return;
	TAILQ_REMOVE(&a->waiters, w, link);
	w->queued = false;
}

bool audit_start(struct audit *a, const char *detail, unsigned timeout_ms)
{
	if (a->recovery) {
		enqueue(a, a->recovery, URGENCY_ACK);
		a->recovery = NULL;
	}
	enqueue(a, event_rec(a, "start", detail), URGENCY_ACK);
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

/* ----------------------------------------------------------- writer side */

/* Writes one line (a complete record ending in '\n') to every sink, adding
 * the chain fields when the chain is on. Writer thread only. */
static void emit_line(struct audit *a, const char *line, size_t n)
{
	atomic_fetch_add(&a->stat_written, 1);
	if (!a->chain) {
		for (size_t i = 0; i < a->n_sinks; i++)
			sink_append(&a->sinks[i], line, n);
		return;
	}
	static const char head[] = "{\"v\":1,";
	struct buf b = { 0 };
	char pre[160];
	int pl;
	if (n < sizeof head || memcmp(line, head, sizeof head - 1) != 0)
		return;	/* never happens: every record starts with "v":1 */
	if (a->link_next && a->have_prev) {
		char hx[2 * AUDIT_MAC_LEN + 1];
		hex_encode(a->prev, AUDIT_MAC_LEN, hx);
		pl = snprintf(pre, sizeof pre, "{\"v\":1,\"seq\":%llu,\"prev\":\"%s\",",
			      (unsigned long long)a->seq, hx);
	} else {
		pl = snprintf(pre, sizeof pre, "{\"v\":1,\"seq\":%llu,",
			      (unsigned long long)a->seq);
	}
	/* body = pre + rest of the line without its '\n' */
	if (!buf_add(&b, pre, (size_t)pl) ||
	    !buf_add(&b, line + sizeof head - 1, n - (sizeof head - 1) - 1) ||
	    !buf_reserve(&b, MAC_SUFFIX_LEN + 1)) {
		free(b.p);
		return;
	}
	unsigned char mac[AUDIT_MAC_LEN];
	static const unsigned char zero[AUDIT_MAC_LEN];
	hmac2(a->key, a->keylen, a->have_prev ? a->prev : zero, AUDIT_MAC_LEN,
	      b.p, b.len, mac);
	char hx[2 * AUDIT_MAC_LEN + 1];
	hex_encode(mac, AUDIT_MAC_LEN, hx);
	b.len--;	/* drop the closing '}' */
	buf_add(&b, ",\"mac\":\"", 8);
	buf_add(&b, hx, 2 * AUDIT_MAC_LEN);
	buf_add(&b, "\"}\n", 3);
	for (size_t i = 0; i < a->n_sinks; i++)
		sink_append(&a->sinks[i], b.p, b.len);
	free(b.p);
	memcpy(a->prev, mac, AUDIT_MAC_LEN);
	a->have_prev = true;
	a->link_next = false;
	a->seq++;
}

static void emit_obj(struct audit *a, cJSON *o)
{
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!s)
		return;
	size_t n = strlen(s);
	s[n] = '\n';
	emit_line(a, s, n + 1);
	free(s);
}

static void emit_checkpoint(struct audit *a, const char *reason)
{
	if (!a->chain)
		return;
	cJSON *o = rec_new("checkpoint");
	cJSON_AddStringToObject(o, "reason", reason);
	cJSON_AddStringToObject(o, "key_id", a->key_id);
	emit_obj(a, o);
}

/* Writes every sink; updates health; logs transitions. */
static void flush_all(struct audit *a, uint64_t dropped)
{
	bool all_ok = dropped == 0;
	for (size_t i = 0; i < a->n_sinks; i++) {
		struct sink *s = &a->sinks[i];
		bool ok = sink_flush(a, s);
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
				cJSON *o = rec_new("sink_error");
				cJSON_AddStringToObject(o, "sink", s->name);
				cJSON_AddNumberToObject(o, "lost", (double)s->lost);
				cJSON_AddStringToObject(o, "error", "records lost while the sink could not be written");
				s->lost = 0;
				emit_obj(a, o);
				sink_flush(a, s);	/* best effort; retried anyway */
			}
		}
		if (s->failing || s->lost || s->sync_failing)
			all_ok = false;
	}
	if (dropped) {
		log_error("audit sink_error: writer queue full: %llu records dropped%s",
			  (unsigned long long)dropped,
			  a->fail_closed ? "; on_failure=deny: refusing new connections" : "");
		cJSON *o = rec_new("sink_error");
		cJSON_AddStringToObject(o, "sink", "queue");
		cJSON_AddNumberToObject(o, "lost", (double)dropped);
		cJSON_AddStringToObject(o, "error", "writer queue full; records dropped");
		emit_obj(a, o);
		for (size_t i = 0; i < a->n_sinks; i++)
			sink_flush(a, &a->sinks[i]);
	}
	atomic_store(&a->healthy, all_ok);
}

/* True when every sink has written everything it was given. */
static bool all_written(const struct audit *a)
{
	for (size_t i = 0; i < a->n_sinks; i++)
		if (a->sinks[i].sent != a->sinks[i].pend.len)
			return false;
	return true;
}

/* fdatasync of every file sink written since its last sync. Returns false
 * when one failed (the sink stays dirty and is synced again next time). */
static bool sync_files(struct audit *a)
{
	bool ok = true;
	for (size_t i = 0; i < a->n_sinks; i++) {
		struct sink *s = &a->sinks[i];
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

/* The sentence a refused connection is answered with (and its close
 * record says): the error, not the sink's path, which the operator log
 * names. */
static void failure_text(const struct audit *a, char *out, size_t len)
{
	for (size_t i = 0; i < a->n_sinks; i++) {
		const struct sink *s = &a->sinks[i];
		if (s->sent != s->pend.len || s->sync_failing) {
			snprintf(out, len, "audit trail unavailable: decision record not written (%.120s)",
				 s->last_err[0] ? s->last_err : "write failed");
			return;
		}
	}
	snprintf(out, len, "audit trail unavailable: decision record not written");
}

/* Resolves every ticket up to hi: written (ok) or not. Wakes the loop when
 * connections may be waiting, and audit_start(). Writer thread. */
static void ack_publish(struct audit *a, uint64_t hi, bool ok)
{
	bool proceed = ok || !a->fail_closed;
	char why[200] = "";
	if (!proceed)
		failure_text(a, why, sizeof why);
	struct event *wake = NULL;
	pthread_mutex_lock(&a->mu);
	if (hi > a->resolved) {
		a->resolved = hi;
		a->resolved_ok = ok;
		if (a->durability != AUDIT_DURABILITY_QUEUED) {
			struct ack_seg *last = a->n_segs ? &a->segs[a->n_segs - 1] : NULL;
			if (last && (last->proceed == proceed || a->n_segs == AUDIT_ACK_SEGS)) {
				/* Merging a refusal refuses the lot: never the
				 * other way round. */
				if (last->proceed && !proceed)
					snprintf(last->why, sizeof last->why, "%s", why);
				last->proceed = last->proceed && proceed;
				last->hi = hi;
			} else {
				struct ack_seg *g = &a->segs[a->n_segs++];
				g->hi = hi;
				g->proceed = proceed;
				snprintf(g->why, sizeof g->why, "%s", why);
			}
			if (a->wake && !a->wake_pending) {
				a->wake_pending = true;
				wake = a->wake;
			}
		}
		pthread_cond_broadcast(&a->ack_cv);
	}
	pthread_mutex_unlock(&a->mu);
	if (wake)
		event_active(wake, EV_TIMEOUT, 1);
}

static void reopen_files(struct audit *a)
{
	bool ok = true;
	for (size_t i = 0; i < a->n_sinks; i++) {
		struct sink *s = &a->sinks[i];
		if (s->kind != AUDIT_SINK_FILE)
			continue;
		int fd = open(s->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (fd < 0) {
			log_error("audit sink_error: %s: reopen failed: %s; still writing the old file",
				  s->name, strerror(errno));
			ok = false;
			continue;
		}
		sink_close_fd(s);
		s->fd = fd;
	}
	a->reopen_pending = !ok;
	a->link_next = true;
}

static void *writer_main(void *arg)
{
	struct audit *a = arg;
	struct buf batch = { 0 };
	pthread_mutex_lock(&a->mu);
	for (;;) {
		bool failing = !atomic_load(&a->healthy) || a->reopen_pending;
		int64_t now = mono_ms();
		int64_t deadline = -1;
		if (a->queue.len)
			deadline = a->first_enq_ms + a->flush_ms;
		if (failing && (deadline < 0 || a->next_retry_ms < deadline))
			deadline = a->next_retry_ms;
		bool due = a->stop || a->reopen || a->urgency != URGENCY_FLUSH ||
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
		struct buf q = a->queue;
		a->queue = batch;
		a->queue.len = 0;
		a->queue_records = 0;
		batch = q;
		uint64_t dropped = a->dropped;
		a->dropped = 0;
		uint64_t batch_hi = a->tickets;	/* every record up to it is in hand */
		bool batch_ack = a->urgency == URGENCY_ACK;
		a->urgency = URGENCY_FLUSH;
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
				sink_flush(a, &a->sinks[i]);
			if (a->durability == AUDIT_DURABILITY_SYNCED)
				synced = sync_files(a);
			reopen_files(a);
		} else if (a->reopen_pending && mono_ms() >= a->next_retry_ms) {
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
					sync_files(a);
				break;
			}
		}
		flush_all(a, dropped);
		bool ok = all_written(a);
		if (a->durability != AUDIT_DURABILITY_SYNCED) {
			ack_publish(a, batch_hi, ok);
		} else if (batch_ack || !synced || !atomic_load(&a->healthy)) {
			/* Close records alone are not worth an fdatasync: they
			 * are synced, and resolved, with the next decision. A
			 * failing sync is retried with every pass. */
			ok = sync_files(a) && synced && ok;
			ack_publish(a, batch_hi, ok);
		}
		pthread_mutex_lock(&a->mu);
		if (!atomic_load(&a->healthy) || a->reopen_pending)
			a->next_retry_ms = mono_ms() + AUDIT_RETRY_MS;
	}
	free(batch.p);
	return NULL;
}

/* Reads the last complete line of a file sink to continue its chain. */
static void chain_resume(struct audit *a, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size == 0) {
		close(fd);
		return;
	}
	size_t want = st.st_size > 65536 ? 65536 : (size_t)st.st_size;
	char *p = malloc(want + 1);
	ssize_t n = p ? pread(fd, p, want, st.st_size - (off_t)want) : -1;
	close(fd);
	if (n <= 0) {
		free(p);
		return;
	}
	size_t len = (size_t)n;
	if (p[len - 1] != '\n') {
		/* A partial record (crash mid-write): start the next on a new
		 * line; the chain restarts and verify will show the damage. */
		int wfd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
		if (wfd >= 0) {
			if (write(wfd, "\n", 1) < 0)
				log_warn("audit: %s: cannot terminate partial line: %s",
					 path, strerror(errno));
			close(wfd);
		}
		free(p);
		return;
	}
	len--;
	size_t start = len;
	while (start > 0 && p[start - 1] != '\n')
		start--;
	cJSON *o = cJSON_ParseWithLength(p + start, len - start);
	free(p);
	if (!o)
		return;
	cJSON *seq = cJSON_GetObjectItemCaseSensitive(o, "seq");
	cJSON *mac = cJSON_GetObjectItemCaseSensitive(o, "mac");
	if (cJSON_IsNumber(seq) && seq->valuedouble >= 0 && cJSON_IsString(mac) &&
	    strlen(mac->valuestring) == 2 * AUDIT_MAC_LEN &&
	    hex_decode(mac->valuestring, AUDIT_MAC_LEN, a->prev)) {
		a->seq = (uint64_t)seq->valuedouble + 1;
		a->have_prev = true;
		a->link_next = true;
	}
	cJSON_Delete(o);
}

/* ---------------------------------------------------------- recovery */

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

/*
 * Reads back the tail of a file sink (its last AUDIT_RECOVERY_TAIL bytes,
 * never the whole file, never a rotated one). When the last "start" or
 * "shutdown" record in it is a start, the run that wrote it ended without a
 * shutdown (killed, crashed, power lost): returns a "recovery" record that
 * names the connections with a decision record and no close record since
 * that start, and the run's last sequence number. Otherwise NULL. Records of
 * other types, or lines that are not records, are passed over. A partial
 * last line is ended with a newline first, so the next record starts clean.
 */
static cJSON *recovery_scan(struct sink *s)
{
	int fd = open(s->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
		close(fd);
		return NULL;
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
		return NULL;
	}
	if (p[len - 1] != '\n' && s->fd >= 0 && write(s->fd, "\n", 1) != 1)
		log_warn("audit: %s: cannot end the partial last line: %s", s->path,
			 strerror(errno));

	/* Line starts; the first line of a cut window is partial: skip it. */
	struct ids starts = { 0 };
	size_t pos = 0;
	if (from > 0) {
		char *nl = memchr(p, '\n', len);
		pos = nl ? (size_t)(nl - p) + 1 : len;
	}
	while (pos < len) {
		ids_add(&starts, pos);
		char *nl = memchr(p + pos, '\n', len - pos);
		pos = nl ? (size_t)(nl - p) + 1 : len;
	}
#define LINE_LEN(i) ((((i) + 1 < starts.n ? starts.v[(i) + 1] : len) - starts.v[i]) - \
		     (p[((i) + 1 < starts.n ? starts.v[(i) + 1] : len) - 1] == '\n'))

	/* Backwards to the last start or shutdown. */
	static const char *const bounds[] = { "start", "shutdown", NULL };
	cJSON *start = NULL;
	size_t first = 0;
	bool complete = false, clean = false, any = false;
	for (size_t i = starts.n; i-- > 0;) {
		int which;
		cJSON *o = line_of_type(p + starts.v[i], LINE_LEN(i), bounds, &which);
		if (!o)
			continue;
		if (which == 1) {
			clean = true;
			cJSON_Delete(o);
		} else {
			start = o;
			first = i + 1;
			complete = true;
		}
		break;
	}
	cJSON *rec = NULL;
	if (clean)
		goto out;

	/* Forwards: decisions, closes, the last record's seq and time. */
	static const char *const kinds[] = { "decision", "close", NULL };
	struct ids opened = { 0 }, closed = { 0 };
	double last_seq = -1;
	char last_ts[48] = "";
	for (size_t i = first; i < starts.n; i++) {
		int which;
		cJSON *o = line_of_type(p + starts.v[i], LINE_LEN(i), kinds, &which);
		if (!o)
			continue;
		cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "conn");
		if (cJSON_IsNumber(id) && id->valuedouble >= 0)
			ids_add(which == 0 ? &opened : &closed, (uint64_t)id->valuedouble);
		cJSON_Delete(o);
	}
	for (size_t i = starts.n; i-- > (first ? first - 1 : 0);) {
		cJSON *o = cJSON_ParseWithLength(p + starts.v[i], LINE_LEN(i));
		if (!cJSON_IsObject(o)) {
			cJSON_Delete(o);
			continue;
		}
		any = true;
		cJSON *seq = cJSON_GetObjectItemCaseSensitive(o, "seq");
		cJSON *ts = cJSON_GetObjectItemCaseSensitive(o, "ts");
		if (cJSON_IsNumber(seq))
			last_seq = seq->valuedouble;
		if (cJSON_IsString(ts))
			snprintf(last_ts, sizeof last_ts, "%s", ts->valuestring);
		cJSON_Delete(o);
		break;
	}
#undef LINE_LEN
	cJSON *jpid = start ? cJSON_GetObjectItemCaseSensitive(start, "pid") : NULL;
	cJSON *jstart_ts = start ? cJSON_GetObjectItemCaseSensitive(start, "ts") : NULL;
	int pid = cJSON_IsNumber(jpid) ? jpid->valueint : 0;
	if (!any) {
		/* no record at all: a new or foreign file */
	} else if (other_daemon_alive(pid)) {
		log_warn("audit: %s: tailfence pid %d, which started the last run in it, is "
			 "still running; give each daemon its own file", s->path, pid);
	} else {
		qsort(closed.v, closed.n, sizeof *closed.v, cmp_u64);
		rec = rec_new("recovery");
		cJSON *list = cJSON_CreateArray();
		size_t n_open = 0;
		for (size_t i = 0; i < opened.n; i++) {
			uint64_t id = opened.v[i];
			if (closed.n && bsearch(&id, closed.v, closed.n, sizeof id, cmp_u64))
				continue;
			cJSON_AddItemToArray(list, cJSON_CreateNumber((double)id));
			n_open++;
		}
		char detail[300], pidtext[32] = "unknown";
		if (pid > 0)
			snprintf(pidtext, sizeof pidtext, "%d", pid);
		snprintf(detail, sizeof detail,
			 "the previous run (pid %s) ended without a shutdown record (killed, "
			 "crashed or power lost); %zu connection(s) have no close record%s",
			 pidtext, n_open,
			 complete ? "" : " (its start record is not within the part of the file read back)");
		add_str(rec, "detail", detail);
		add_str(rec, "file", s->path);
		if (pid > 0)
			cJSON_AddNumberToObject(rec, "prev_pid", pid);
		else
			cJSON_AddNullToObject(rec, "prev_pid");
		add_str(rec, "prev_start", cJSON_IsString(jstart_ts) ? jstart_ts->valuestring : NULL);
		add_str(rec, "last_ts", last_ts[0] ? last_ts : NULL);
		if (last_seq >= 0)
			cJSON_AddNumberToObject(rec, "last_seq", last_seq);
		else
			cJSON_AddNullToObject(rec, "last_seq");
		cJSON_AddItemToObject(rec, "unclosed", list);
		cJSON_AddBoolToObject(rec, "complete", complete);
		log_warn("audit: %s: %s", s->path, detail);
	}
	free(opened.v);
	free(closed.v);
out:
	cJSON_Delete(start);
	free(starts.v);
	free(p);
	return rec;
}

static void sinks_free(struct sink *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		sink_close_fd(&s[i]);
		free(s[i].name);
		free(s[i].path);
		free(s[i].pend.p);
	}
	free(s);
}

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
	TAILQ_INIT(&a->waiters);
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
	for (size_t i = 0; i < n; i++) {
		struct sink *s = &a->sinks[i];
		s->fd = -1;
		const struct audit_sink_config *sc = cfg->n_sinks ? &cfg->sinks[i] : NULL;
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
				goto fail;
			}
			snprintf(name, sizeof name, "file %s", sc->path);
			s->path = strdup(sc->path);
			if (!sink_connect(s)) {
				snprintf(err, errlen, "audit.sinks[%zu]: cannot open \"%s\" for appending: %s",
					 i, sc->path, strerror(errno));
				goto fail;
			}
			break;
		case AUDIT_SINK_SYSLOG:
			if (!sc->target || !sink_syslog_setup(s, sc->target, err, errlen)) {
				if (!sc->target)
					snprintf(err, errlen, "audit.sinks[%zu]: syslog sink needs a \"target\"", i);
				goto fail;
			}
			snprintf(name, sizeof name, "syslog %s", sc->target);
			/* A collector that is not up yet is retried by the writer. */
			if (!sink_connect(s))
				log_warn("audit: %s: not reachable yet: %s (will retry)",
					 name, strerror(errno));
			break;
		default:
			snprintf(err, errlen, "audit.sinks[%zu]: unknown sink type %d", i, (int)s->kind);
			goto fail;
		}
		s->name = strdup(name);
	}

	if (cfg->hmac_key_file) {
		if (!audit_key_load(cfg->hmac_key_file, &a->key, &a->keylen, err, errlen))
			goto fail;
		struct stat st;
		if (stat(cfg->hmac_key_file, &st) == 0 && (st.st_mode & 077))
			log_warn("audit.hmac_key_file: \"%s\" is readable by group or others (mode %03o); chmod 600 it",
				 cfg->hmac_key_file, (unsigned)(st.st_mode & 0777));
		a->chain = true;
		key_id(a->key, a->keylen, a->key_id);
		for (size_t i = 0; i < a->n_sinks; i++)
			if (a->sinks[i].kind == AUDIT_SINK_FILE) {
				chain_resume(a, a->sinks[i].path);
				break;
			}
	}

	/* The previous run's end, as the files tell it; written by
	 * audit_start(). With several file sinks the first that shows an
	 * unclean end speaks for all. */
	for (size_t i = 0; i < a->n_sinks; i++) {
		if (a->sinks[i].kind != AUDIT_SINK_FILE)
			continue;
		cJSON *r = recovery_scan(&a->sinks[i]);
		if (!a->recovery)
			a->recovery = r;
		else
			cJSON_Delete(r);
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
	sinks_free(a->sinks, a->n_sinks);
	cJSON_Delete(a->recovery);
	if (a->key) {
		OPENSSL_cleanse(a->key, a->keylen);
		free(a->key);
	}
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
		struct sink *s = &a->sinks[i];
		if (s->pend.len > s->sent)
			log_error("audit sink_error: %s: %zu bytes could not be written before exit: %s",
				  s->name, s->pend.len - s->sent, s->last_err);
	}
	sinks_free(a->sinks, a->n_sinks);
	pthread_cond_destroy(&a->cv);
	pthread_cond_destroy(&a->ack_cv);
	pthread_mutex_destroy(&a->mu);
	free(a->queue.p);
	/* Connections cancel their waits when they close, before this. */
	if (a->wake)
		event_free(a->wake);
	cJSON_Delete(a->recovery);
	if (a->key) {
		OPENSSL_cleanse(a->key, a->keylen);
		free(a->key);
	}
	free(a);
}

/* ------------------------------------------------------------------ time */

static bool digits(const char *s, size_t n, int *out)
{
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

bool audit_time_parse(const char *s, size_t len, int64_t *ms)
{
	int y, mo, d, h = 0, mi = 0, sec = 0, frac = 0;
	if (len < 10 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
	    s[7] != '-' || !digits(s + 8, 2, &d))
		return false;
	size_t i = 10;
	int64_t offset_min = 0;
	if (i < len) {
		if (s[i] != 'T' && s[i] != 't' && s[i] != ' ')
			return false;
		i++;
		if (len - i < 5 || !digits(s + i, 2, &h) || s[i + 2] != ':' ||
		    !digits(s + i + 3, 2, &mi))
			return false;
		i += 5;
		if (i < len && s[i] == ':') {
			if (len - i < 3 || !digits(s + i + 1, 2, &sec))
				return false;
			i += 3;
			if (i < len && s[i] == '.') {
				i++;
				size_t nd = 0;
				while (i < len && isdigit((unsigned char)s[i])) {
					if (nd < 3)
						frac = frac * 10 + (s[i] - '0');
					nd++;
					i++;
				}
				if (nd == 0)
					return false;
				for (; nd < 3; nd++)
					frac *= 10;
			}
		}
		if (i < len) {
			if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == len) {
				i++;
			} else if ((s[i] == '+' || s[i] == '-') && len - i == 6 &&
				   s[i + 3] == ':') {
				int oh, om;
				if (!digits(s + i + 1, 2, &oh) || !digits(s + i + 4, 2, &om) ||
				    oh > 23 || om > 59)
					return false;
				offset_min = (s[i] == '+' ? 1 : -1) * (oh * 60 + om);
				i = len;
			} else {
				return false;
			}
		}
	}
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 ||
	    sec > 60)
		return false;
	int64_t days = days_from_civil(y, mo, d);
	*ms = ((days * 86400 + h * 3600 + mi * 60 + sec) - offset_min * 60) * 1000 + frac;
	return true;
}

/* -------------------------------------------------------------- verifier */

struct audit_verify {
	unsigned char *key;
	size_t keylen;
	char key_id[17];
	bool broken, done;
	char msg[1024];
	uint64_t records;

	bool have_prev;
	uint64_t prev_seq;
	unsigned char prev_mac[AUDIT_MAC_LEN];
	char prev_where[300];	/* "file:line" of the previous record */
	bool prev_checkpoint;
	char prev_reason[32];
	bool anchored_midway;	/* first record links to a file not given */
	uint64_t first_seq;
	unsigned restarts;	/* new chains after a clean shutdown */
	bool strict;		/* an unclean shutdown breaks the verification */
	unsigned unclean;	/* starts without a shutdown checkpoint before them */
	char unclean_where[300];	/* the first such start */
	char unclean_prev[300];		/* and the record before it */
	bool prev_has_ts;
	int64_t prev_ts;

	/* a problem that the next line decides */
	enum { PEND_NONE, PEND_GAP, PEND_MAC } pend;
	char pend_where[300];
	uint64_t pend_expected, pend_found;
	unsigned char pend_mac[AUDIT_MAC_LEN];	/* the failing line's written MAC */
	bool pend_first;
};

struct audit_verify *audit_verify_new(const unsigned char *key, size_t keylen)
{
	struct audit_verify *v = calloc(1, sizeof *v);
	if (!v)
		return NULL;
	v->key = malloc(keylen ? keylen : 1);
	if (!v->key) {
		free(v);
		return NULL;
	}
	memcpy(v->key, key, keylen);
	v->keylen = keylen;
	key_id(key, keylen, v->key_id);
	return v;
}

void audit_verify_free(struct audit_verify *v)
{
	if (!v)
		return;
	OPENSSL_cleanse(v->key, v->keylen);
	free(v->key);
	free(v);
}

uint64_t audit_verify_records(const struct audit_verify *v)
{
	return v->records;
}

void audit_verify_set_strict(struct audit_verify *v, bool strict)
{
	v->strict = strict;
}

unsigned audit_verify_unclean(const struct audit_verify *v)
{
	return v->unclean;
}

__attribute__((format(printf, 2, 3)))
static bool vbreak(struct audit_verify *v, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(v->msg, sizeof v->msg, fmt, ap);
	va_end(ap);
	v->broken = true;
	return false;
}

/* Splits a written line into the signed bytes and its MAC. The signed bytes
 * are the line with ,"mac":"<hex>"} replaced by }: returned in b. */
static bool split_mac(const char *line, size_t len, struct buf *b,
		      unsigned char mac[AUDIT_MAC_LEN])
{
	if (len < MAC_SUFFIX_LEN + 2)
		return false;
	const char *suf = line + len - MAC_SUFFIX_LEN;
	if (memcmp(suf, ",\"mac\":\"", 8) != 0 || memcmp(line + len - 2, "\"}", 2) != 0 ||
	    !hex_decode(suf + 8, AUDIT_MAC_LEN, mac))
		return false;
	b->len = 0;
	return buf_add(b, line, len - MAC_SUFFIX_LEN) && buf_add(b, "}", 1);
}

static bool mac_ok(struct audit_verify *v, const unsigned char prev[AUDIT_MAC_LEN],
		   const struct buf *b, const unsigned char mac[AUDIT_MAC_LEN])
{
	unsigned char calc[AUDIT_MAC_LEN];
	if (!hmac2(v->key, v->keylen, prev, AUDIT_MAC_LEN, b->p, b->len, calc))
		return false;
	return CRYPTO_memcmp(calc, mac, AUDIT_MAC_LEN) == 0;
}

bool audit_verify_line(struct audit_verify *v, const char *file,
		       unsigned long lineno, const char *line, size_t len,
		       bool terminated)
{
	if (v->broken || v->done)
		return false;
	char where[300];
	snprintf(where, sizeof where, "%s:%lu", file, lineno);
	if (!terminated)
		return vbreak(v, "%s: truncated tail: the last line is a partial record (no newline)%s",
			      where, v->pend == PEND_GAP ? "; and a seq gap before it" : "");

	struct buf b = { 0 };
	unsigned char mac[AUDIT_MAC_LEN];
	bool has_mac = split_mac(line, len, &b, mac);
	cJSON *o = cJSON_ParseWithLength(line, len);
	bool ok = false;
	if (!o) {
		vbreak(v, "%s: not a JSON record (edited or corrupted line)", where);
		goto out;
	}
	if (!has_mac) {
		vbreak(v, "%s: record has no MAC (an unsigned line was inserted or edited)", where);
		goto out;
	}
	cJSON *jseq = cJSON_GetObjectItemCaseSensitive(o, "seq");
	cJSON *jtype = cJSON_GetObjectItemCaseSensitive(o, "type");
	cJSON *jkid = cJSON_GetObjectItemCaseSensitive(o, "key_id");
	cJSON *jprev = cJSON_GetObjectItemCaseSensitive(o, "prev");
	cJSON *jreason = cJSON_GetObjectItemCaseSensitive(o, "reason");
	if (!cJSON_IsNumber(jseq) || jseq->valuedouble < 0 ||
	    jseq->valuedouble > 9007199254740992.0 ||
	    jseq->valuedouble != (double)(uint64_t)jseq->valuedouble) {
		vbreak(v, "%s: record has no valid \"seq\" (edited line)", where);
		goto out;
	}
	uint64_t seq = (uint64_t)jseq->valuedouble;
	unsigned char linkmac[AUDIT_MAC_LEN];
	bool has_link = cJSON_IsString(jprev) && strlen(jprev->valuestring) == 2 * AUDIT_MAC_LEN &&
			hex_decode(jprev->valuestring, AUDIT_MAC_LEN, linkmac);
	if (jprev && !has_link) {
		vbreak(v, "%s: record has a malformed \"prev\" (edited line)", where);
		goto out;
	}
	bool clean_before = v->prev_checkpoint && strcmp(v->prev_reason, "shutdown") == 0;

	/* Decide a pending problem with this line's help. */
	if (v->pend == PEND_GAP) {
		if (seq == v->pend_expected)
			vbreak(v, "%s: reordered lines: seq %llu comes before seq %llu (%s)",
			       v->pend_where, (unsigned long long)v->pend_found,
			       (unsigned long long)seq, where);
		else
			vbreak(v, "%s: deleted record(s): seq jumps from %llu to %llu (%llu missing before this line)",
			       v->pend_where, (unsigned long long)v->pend_expected - 1,
			       (unsigned long long)v->pend_found,
			       (unsigned long long)(v->pend_found - v->pend_expected));
		goto out;
	}
	if (v->pend == PEND_MAC) {
		if (mac_ok(v, v->pend_mac, &b, mac))
			vbreak(v, "%s: edited record: its content does not match its MAC (a field was changed)",
			       v->pend_where);
		else if (v->pend_first)
			vbreak(v, "%s: MACs do not match this key from the first record on: the file was signed with another key",
			       v->pend_where);
		else
			vbreak(v, "%s: MACs stop matching from this record on: records signed with another key were spliced in, or several records were edited",
			       v->pend_where);
		goto out;
	}

	const unsigned char *prev = NULL;
	static const unsigned char zero[AUDIT_MAC_LEN];
	cJSON *jts = cJSON_GetObjectItemCaseSensitive(o, "ts");
	int64_t ts = 0;
	bool has_ts = cJSON_IsString(jts) &&
		      audit_time_parse(jts->valuestring, strlen(jts->valuestring), &ts);
	if (!v->have_prev) {
		v->first_seq = seq;
		if (seq == 0) {
			prev = zero;
		} else if (has_link) {
			prev = linkmac;
			v->anchored_midway = true;
		} else {
			vbreak(v, "%s: deleted record(s) at the head: the first record has seq %llu and no link (\"prev\") to an earlier file",
			       where, (unsigned long long)seq);
			goto out;
		}
	} else if (seq == 0) {
		if (!(v->prev_checkpoint && strcmp(v->prev_reason, "shutdown") == 0)) {
			vbreak(v, "%s: the chain restarts at seq 0 but %s is not a shutdown checkpoint: records in between were lost (crash or deletion) or a file was inserted",
			       where, v->prev_where);
			goto out;
		}
		if (has_ts && v->prev_has_ts && ts < v->prev_ts) {
			vbreak(v, "%s: files given out of order: a new chain starts here with a time earlier than %s",
			       where, v->prev_where);
			goto out;
		}
		v->restarts++;
		prev = zero;
	} else if (seq <= v->prev_seq) {
		vbreak(v, "%s: reordered or duplicated lines: seq %llu follows seq %llu (%s)",
		       where, (unsigned long long)seq, (unsigned long long)v->prev_seq,
		       v->prev_where);
		goto out;
	} else if (seq > v->prev_seq + 1) {
		v->pend = PEND_GAP;
		snprintf(v->pend_where, sizeof v->pend_where, "%s", where);
		v->pend_expected = v->prev_seq + 1;
		v->pend_found = seq;
		ok = true;
		goto out;
	} else {
		if (has_link && CRYPTO_memcmp(linkmac, v->prev_mac, AUDIT_MAC_LEN) != 0) {
			vbreak(v, "%s: broken link: \"prev\" does not match the MAC of %s (files given out of order, or one is missing or replaced)",
			       where, v->prev_where);
			goto out;
		}
		prev = v->prev_mac;
	}

	if (cJSON_IsString(jkid) && strcmp(jkid->valuestring, v->key_id) != 0 &&
	    (!prev || !mac_ok(v, prev, &b, mac))) {
		vbreak(v, "%s: signed with another key (key_id %s; this key's id is %s)",
		       where, jkid->valuestring, v->key_id);
		goto out;
	}
	if (prev && !mac_ok(v, prev, &b, mac)) {
		v->pend = PEND_MAC;
		snprintf(v->pend_where, sizeof v->pend_where, "%s", where);
		memcpy(v->pend_mac, mac, AUDIT_MAC_LEN);
		v->pend_first = !v->have_prev;
		ok = true;
		goto out;
	}
	/* A daemon that was killed or crashed wrote no shutdown checkpoint:
	 * the next start (after its recovery record) shows that it happened. */
	if (v->have_prev && !clean_before && cJSON_IsString(jtype) &&
	    strcmp(jtype->valuestring, "start") == 0) {
		if (v->unclean++ == 0) {
			snprintf(v->unclean_where, sizeof v->unclean_where, "%s", where);
			snprintf(v->unclean_prev, sizeof v->unclean_prev, "%s", v->prev_where);
		}
		if (v->strict) {
			vbreak(v, "%s: unclean shutdown: the daemon started again with no shutdown checkpoint after %s (it was killed or crashed; records it still held may be missing)",
			       where, v->prev_where);
			goto out;
		}
	}
	v->have_prev = true;
	v->prev_has_ts = has_ts;
	v->prev_ts = ts;
	v->prev_seq = seq;
	memcpy(v->prev_mac, mac, AUDIT_MAC_LEN);
	snprintf(v->prev_where, sizeof v->prev_where, "%s", where);
	v->prev_checkpoint = cJSON_IsString(jtype) && strcmp(jtype->valuestring, "checkpoint") == 0;
	snprintf(v->prev_reason, sizeof v->prev_reason, "%s",
		 cJSON_IsString(jreason) ? jreason->valuestring : "");
	v->records++;
	ok = true;
out:
	cJSON_Delete(o);
	free(b.p);
	return ok;
}

bool audit_verify_finish(struct audit_verify *v, char *msg, size_t msglen)
{
	if (!v->broken && !v->done) {
		if (v->pend == PEND_GAP)
			vbreak(v, "%s: deleted record(s): seq jumps from %llu to %llu (%llu missing before this line)",
			       v->pend_where, (unsigned long long)v->pend_expected - 1,
			       (unsigned long long)v->pend_found,
			       (unsigned long long)(v->pend_found - v->pend_expected));
		else if (v->pend == PEND_MAC)
			vbreak(v, "%s: %s: its content does not match its MAC",
			       v->pend_where, v->pend_first ? "edited record or another key" : "edited record");
		else if (v->records == 0)
			vbreak(v, "no records to verify");
		else if (!v->prev_checkpoint)
			vbreak(v, "%s: truncated tail: the last record (seq %llu) is not a checkpoint: records after it were removed, or the daemon is still writing or did not shut down cleanly",
			       v->prev_where, (unsigned long long)v->prev_seq);
	}
	v->done = true;
	if (!v->broken) {
		char restarts[160] = "", unclean[512] = "";
		if (v->restarts)
			snprintf(restarts, sizeof restarts,
				 "; note: %u new chain(s) started after a clean shutdown (the daemon could not continue the previous file's chain)",
				 v->restarts);
		if (v->unclean == 1)
			snprintf(unclean, sizeof unclean,
				 "; note: unclean shutdown at %.150s (a start with no shutdown checkpoint before it: the run that ended at %.150s was killed or crashed)",
				 v->unclean_where, v->unclean_prev);
		else if (v->unclean > 1)
			snprintf(unclean, sizeof unclean,
				 "; note: %u unclean shutdowns, the first at %.150s (a start with no shutdown checkpoint before it)",
				 v->unclean, v->unclean_where);
		snprintf(v->msg, sizeof v->msg,
			 "verified: %llu records, seq %llu..%llu, ending with a %s checkpoint at %s%s%s%s",
			 (unsigned long long)v->records, (unsigned long long)v->first_seq,
			 (unsigned long long)v->prev_seq, v->prev_reason, v->prev_where,
			 v->anchored_midway ? "; note: the first record links to an earlier file that was not given" : "",
			 restarts, unclean);
	}
	if (msg && msglen)
		snprintf(msg, msglen, "%s", v->msg);
	return !v->broken;
}
