/*
 * loadgen: the benchmark's client and origin, on loopback only.
 *
 *   loadgen serve PORT                       echo server on 127.0.0.1:PORT
 *                                            (a thread per connection)
 *   loadgen hold PORT                        echo server on one thread (epoll)
 *                                            for short exchanges and many idle
 *                                            connections: no thread per
 *                                            connection in the figures
 *   loadgen rate  TARGET [PROXY] N THREADS   N connect/1-byte echo/close cycles
 *   loadgen latency TARGET [PROXY] RATE SECONDS
 *                                            open loop: a new cycle every
 *                                            1/RATE s whatever the earlier
 *                                            ones do; percentiles of each
 *                                            cycle's time from its scheduled
 *                                            start
 *   loadgen idle TARGET [PROXY] N            opens N tunnels (1-byte echo each),
 *                                            prints a line, holds them until
 *                                            standard input closes
 *   loadgen stream TARGET [PROXY] BYTES      one connection, BYTES each way
 *   loadgen fsync FILE N                     N appends of a 300-byte line, each
 *                                            followed by fdatasync (the disk's
 *                                            part in --audit-durability synced)
 *
 * TARGET is 127.x.y.z:PORT. PROXY is 127.x.y.z:PORT or socks5://127.x.y.z:PORT
 * for a SOCKS5 proxy (no auth, CONNECT by IPv4 address), or
 * http://127.x.y.z:PORT for an HTTP proxy (CONNECT ip:port); without it the
 * connection is made directly, so all are measured by the same code. Prints
 * one line of JSON with the figures (rate: connections per second, and the
 * 50th and 99th percentile of one cycle's time, connect to echo). Not a
 * test: bench/run.sh calls it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

enum proxy_kind { PROXY_NONE, PROXY_SOCKS5, PROXY_HTTP };

struct proxy {
	enum proxy_kind kind;
	struct sockaddr_in sin;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool parse_hostport(const char *s, struct sockaddr_in *sin)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof host)
		return false;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	memset(sin, 0, sizeof *sin);
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)atoi(colon + 1));
	/* Loopback only: this tool never sends anywhere else. */
	return inet_pton(AF_INET, host, &sin->sin_addr) == 1 &&
	       (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
}

/* "HOST:PORT" or "socks5://HOST:PORT": SOCKS5; "http://HOST:PORT": HTTP. */
static bool parse_proxy(const char *s, struct proxy *p)
{
	p->kind = PROXY_SOCKS5;
	if (strncmp(s, "socks5://", 9) == 0) {
		s += 9;
	} else if (strncmp(s, "http://", 7) == 0) {
		s += 7;
		p->kind = PROXY_HTTP;
	}
	return parse_hostport(s, &p->sin);
}

/* The proxy's request, written in one piece (SOCKS5: the CONNECT after the
 * method choice). */
static size_t socks5_request(uint8_t req[10], const struct sockaddr_in *target)
{
	req[0] = 5;
	req[1] = 1;
	req[2] = 0;
	req[3] = 1;
	memcpy(req + 4, &target->sin_addr, 4);
	memcpy(req + 8, &target->sin_port, 2);
	return 10;
}

static size_t http_request(char *out, size_t cap, const struct sockaddr_in *target)
{
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &target->sin_addr, ip, sizeof ip);
	int n = snprintf(out, cap, "CONNECT %s:%u HTTP/1.1\r\nHost: %s:%u\r\n\r\n", ip,
			 ntohs(target->sin_port), ip, ntohs(target->sin_port));
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* Whether buf (len bytes, NUL-terminated) holds a whole response head;
 * *ok says whether its status is 2xx. */
static bool http_head_done(const char *buf, size_t len, bool *ok)
{
	if (len < 4 || !strstr(buf, "\r\n\r\n"))
		return false;
	*ok = strncmp(buf, "HTTP/1.", 7) == 0 && len > 12 && buf[9] == '2';
	return true;
}

static bool full_write(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

static bool full_read(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* Connects to target, through the proxy when one is set. */
static int dial(const struct sockaddr_in *target, const struct proxy *proxy)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	const struct sockaddr_in *to = proxy ? &proxy->sin : target;
	if (connect(fd, (const struct sockaddr *)to, sizeof *to) != 0)
		goto fail;
	if (proxy && proxy->kind == PROXY_SOCKS5) {
		/* Greeting, then the request once the method is chosen: some
		 * proxies (microsocks) assume one read is one message. */
		uint8_t greet[3] = { 5, 1, 0 }, method[2];
		uint8_t req[10];
		socks5_request(req, target);
		uint8_t rep[10];
		if (!full_write(fd, greet, sizeof greet) || !full_read(fd, method, 2) ||
		    method[1] != 0 || !full_write(fd, req, sizeof req) ||
		    !full_read(fd, rep, sizeof rep) || rep[1] != 0 || rep[3] != 1)
			goto fail;
	} else if (proxy && proxy->kind == PROXY_HTTP) {
		char buf[512];
		size_t n = http_request(buf, sizeof buf, target), have = 0;
		bool ok = false;
		if (!n || !full_write(fd, buf, n))
			goto fail;
		/* The origin speaks only when spoken to: nothing follows the head. */
		for (;;) {
			ssize_t r = read(fd, buf + have, sizeof buf - 1 - have);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				goto fail;
			have += (size_t)r;
			buf[have] = '\0';
			if (http_head_done(buf, have, &ok))
				break;
			if (have == sizeof buf - 1)
				goto fail;
		}
		if (!ok)
			goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

static void *echo_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[65536];
	ssize_t n;
	while ((n = read(fd, buf, sizeof buf)) > 0)
		if (!full_write(fd, buf, (size_t)n))
			break;
	close(fd);
	return NULL;
}

static int serve(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0 || listen(fd, 4096) != 0) {
		perror("loadgen serve");
		return 1;
	}
	for (;;) {
		int c = accept(fd, NULL, NULL);
		if (c < 0)
			continue;
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		pthread_t t;
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&attr, 256 * 1024);
		if (pthread_create(&t, &attr, echo_conn, (void *)(intptr_t)c) != 0)
			close(c);
		pthread_attr_destroy(&attr);
	}
}

struct rate_job {
	const struct sockaddr_in *target;
	const struct proxy *proxy;
	long n;
	long ok;
	double *lat;		/* seconds per successful cycle, ok of them */
};

static void *rate_worker(void *arg)
{
	struct rate_job *j = arg;
	for (long i = 0; i < j->n; i++) {
		double t0 = now_s();
		int fd = dial(j->target, j->proxy);
		if (fd < 0)
			continue;
		char b = 'x';
		if (full_write(fd, &b, 1) && full_read(fd, &b, 1))
			j->lat[j->ok++] = now_s() - t0;
		close(fd);
	}
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The q-th quantile (0..1) of n sorted values, nearest rank. */
static double quantile(const double *v, long n, double q)
{
	if (n <= 0)
		return 0;
	long i = (long)(q * (double)n + 0.999999) - 1;
	return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

static int rate(const struct sockaddr_in *target, const struct proxy *proxy,
		long n, int threads)
{
	pthread_t t[64];
	struct rate_job jobs[64];
	if (threads < 1 || threads > 64)
		threads = 4;
	double *lat = malloc(sizeof *lat * (size_t)(n > 0 ? n : 1));
	if (!lat)
		return 1;
	double t0 = now_s();
	for (int i = 0; i < threads; i++) {
		jobs[i] = (struct rate_job){ target, proxy, n / threads, 0,
					     lat + (size_t)i * (size_t)(n / threads) };
		pthread_create(&t[i], NULL, rate_worker, &jobs[i]);
	}
	long ok = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(t[i], NULL);
		/* pack each thread's samples after the previous ones */
		memmove(lat + ok, jobs[i].lat, sizeof *lat * (size_t)jobs[i].ok);
		ok += jobs[i].ok;
	}
	double dt = now_s() - t0;
	qsort(lat, (size_t)ok, sizeof *lat, cmp_double);
	printf("{\"mode\":\"rate\",\"connections\":%ld,\"ok\":%ld,\"seconds\":%.3f,"
	       "\"per_second\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f}\n",
	       (n / threads) * threads, ok, dt, (double)ok / dt,
	       quantile(lat, ok, 0.50) * 1000, quantile(lat, ok, 0.99) * 1000);
	free(lat);
	return ok == (n / threads) * threads ? 0 : 1;
}

struct stream_reader {
	int fd;
	uint64_t want;
	uint64_t got;
};

static void *stream_read(void *arg)
{
	struct stream_reader *r = arg;
	static char buf[1 << 17];
	while (r->got < r->want) {
		ssize_t n = read(r->fd, buf, sizeof buf);
		if (n <= 0)
			break;
		r->got += (uint64_t)n;
	}
	return NULL;
}

static int stream(const struct sockaddr_in *target, const struct proxy *proxy,
		  uint64_t bytes)
{
	int fd = dial(target, proxy);
	if (fd < 0) {
		fprintf(stderr, "loadgen: cannot connect\n");
		return 1;
	}
	static char buf[1 << 17];
	memset(buf, 'a', sizeof buf);
	struct stream_reader r = { fd, bytes, 0 };
	pthread_t t;
	double t0 = now_s();
	pthread_create(&t, NULL, stream_read, &r);
	uint64_t sent = 0;
	while (sent < bytes) {
		size_t chunk = bytes - sent < sizeof buf ? (size_t)(bytes - sent) : sizeof buf;
		if (!full_write(fd, buf, chunk))
			break;
		sent += chunk;
	}
	pthread_join(t, NULL);
	double dt = now_s() - t0;
	close(fd);
	printf("{\"mode\":\"stream\",\"bytes_each_way\":%llu,\"received\":%llu,"
	       "\"seconds\":%.3f,\"mib_per_second\":%.1f}\n",
	       (unsigned long long)bytes, (unsigned long long)r.got, dt,
	       (double)r.got / dt / (1024 * 1024));
	return r.got == bytes ? 0 : 1;
}

static int fsync_lat(const char *path, long n)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	double *lat = malloc(sizeof *lat * (size_t)(n > 0 ? n : 1));
	if (fd < 0 || !lat || n <= 0) {
		perror("loadgen fsync");
		return 1;
	}
	char line[300];
	memset(line, 'x', sizeof line - 1);
	line[sizeof line - 1] = '\n';
	for (long i = 0; i < n; i++) {
		if (!full_write(fd, line, sizeof line))
			return 1;
		double t0 = now_s();
		if (fdatasync(fd) != 0)
			return 1;
		lat[i] = now_s() - t0;
	}
	close(fd);
	unlink(path);
	qsort(lat, (size_t)n, sizeof *lat, cmp_double);
	printf("{\"mode\":\"fsync\",\"n\":%ld,\"p50_ms\":%.3f,\"p99_ms\":%.3f}\n", n,
	       quantile(lat, n, 0.50) * 1000, quantile(lat, n, 0.99) * 1000);
	free(lat);
	return 0;
}

/* Raises the descriptor limit to the hard one: idle holds thousands. */
static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int listen_on(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0 || listen(fd, 4096) != 0) {
		perror("loadgen listen");
		return -1;
	}
	return fd;
}

/* Echo server on one thread: for thousands of connections that mostly
 * sit idle (a thread each would be the origin's cost, not the proxy's).
 * Writes are small (the idle tunnels' one byte) and not retried. */
static int hold(int port)
{
	raise_nofile();
	int lfd = listen_on(port);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (lfd < 0 || ep < 0)
		return 1;
	fcntl(lfd, F_SETFL, O_NONBLOCK);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd };
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	struct epoll_event evs[256];
	char buf[65536];
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == lfd) {
				int c;
				while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
					int one = 1;
					setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
					struct epoll_event cev = { .events = EPOLLIN, .data.fd = c };
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
				}
				continue;
			}
			ssize_t r = read(fd, buf, sizeof buf);
			if (r > 0) {
				if (write(fd, buf, (size_t)r) < 0) {
					/* dropped: see above */
				}
			} else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
				close(fd);
			}
		}
	}
}

/* ---- open-loop latency ---- */

enum lat_state { L_CONNECT, L_METHOD, L_REPLY, L_HEAD, L_ECHO };

struct lat_conn {
	int fd;
	enum lat_state state;
	double start;			/* scheduled start */
	size_t have;
	char buf[512];
};

static bool lat_send(struct lat_conn *c, const void *p, size_t n)
{
	/* A few bytes into a fresh socket's empty send buffer. */
	return write(c->fd, p, n) == (ssize_t)n;
}

/* Moves c on after its connect completed or bytes arrived. Returns 1 when
 * the cycle is done, 0 to wait for more, -1 on failure. */
static int lat_step(struct lat_conn *c, const struct sockaddr_in *target,
		    const struct proxy *proxy, bool connected)
{
	if (connected) {
		int err = 0;
		socklen_t len = sizeof err;
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err)
			return -1;
		if (proxy && proxy->kind == PROXY_SOCKS5) {
			uint8_t greet[3] = { 5, 1, 0 };
			c->state = L_METHOD;
			return lat_send(c, greet, 3) ? 0 : -1;
		}
		if (proxy && proxy->kind == PROXY_HTTP) {
			char req[256];
			size_t n = http_request(req, sizeof req, target);
			c->state = L_HEAD;
			return n && lat_send(c, req, n) ? 0 : -1;
		}
		c->state = L_ECHO;
		return lat_send(c, "x", 1) ? 0 : -1;
	}
	for (;;) {
		ssize_t r = read(c->fd, c->buf + c->have, sizeof c->buf - 1 - c->have);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			return 0;
		if (r <= 0)
			return -1;
		c->have += (size_t)r;
		c->buf[c->have] = '\0';
		bool ok;
		switch (c->state) {
		case L_METHOD:
			if (c->have < 2)
				break;
			if (c->buf[1] != 0)
				return -1;
			c->have = 0;
			c->state = L_REPLY;
			uint8_t req[10];
			socks5_request(req, target);
			if (!lat_send(c, req, sizeof req))
				return -1;
			break;
		case L_REPLY:
			if (c->have < 10)
				break;
			if (c->buf[1] != 0 || c->buf[3] != 1)
				return -1;
			c->have = 0;
			c->state = L_ECHO;
			if (!lat_send(c, "x", 1))
				return -1;
			break;
		case L_HEAD:
			if (!http_head_done(c->buf, c->have, &ok)) {
				if (c->have == sizeof c->buf - 1)
					return -1;
				break;
			}
			if (!ok)
				return -1;
			c->have = 0;
			c->state = L_ECHO;
			if (!lat_send(c, "x", 1))
				return -1;
			break;
		case L_ECHO:
			return 1;
		case L_CONNECT:
			return -1;
		}
	}
}

static int latency(const struct sockaddr_in *target, const struct proxy *proxy,
		   long per_second, double seconds)
{
	raise_nofile();
	if (per_second < 1 || per_second > 100000 || seconds <= 0 || seconds > 600) {
		fprintf(stderr, "loadgen latency: RATE 1..100000, SECONDS 0..600\n");
		return 2;
	}
	long total = (long)((double)per_second * seconds);
	long warmup = per_second / 4;	/* the first quarter second is not counted */
	double *lat = malloc(sizeof *lat * (size_t)(total > 0 ? total : 1));
	int ep = epoll_create1(EPOLL_CLOEXEC);
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (!lat || ep < 0 || tfd < 0)
		return 1;
	long period_ns = 1000000000L / per_second;
	struct itimerspec its = { .it_interval = { 0, period_ns }, .it_value = { 0, 1 } };
	if (period_ns >= 1000000000L)
		its.it_interval = (struct timespec){ 1, 0 };
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
	const struct sockaddr_in *to = proxy ? &proxy->sin : target;
	double t0 = now_s(), deadline = 0;
	timerfd_settime(tfd, 0, &its, NULL);
	long started = 0, done = 0, ok = 0, failed = 0, open = 0;
	struct epoll_event evs[256];
	while (started < total || open > 0) {
		if (started == total && deadline == 0)
			deadline = now_s() + 5;
		if (deadline && now_s() > deadline)
			break;
		int n = epoll_wait(ep, evs, 256, started < total ? -1 : 100);
		for (int i = 0; i < n; i++) {
			struct lat_conn *c = evs[i].data.ptr;
			if (!c) {
				uint64_t ticks;
				if (read(tfd, &ticks, sizeof ticks) != sizeof ticks)
					continue;
				/* Every tick due starts one cycle, late ones too:
				 * their lateness counts against their time. */
				for (uint64_t k = 0; k < ticks && started < total; k++) {
					c = calloc(1, sizeof *c);
					c->start = t0 + (double)started / (double)per_second;
					c->state = L_CONNECT;
					c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
					started++;
					int one = 1;
					setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
					if (connect(c->fd, (const struct sockaddr *)to, sizeof *to) != 0 &&
					    errno != EINPROGRESS) {
						close(c->fd);
						free(c);
						failed++;
						done++;
						continue;
					}
					struct epoll_event cev = { .events = EPOLLOUT, .data.ptr = c };
					epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &cev);
					open++;
				}
				if (started == total)
					timerfd_settime(tfd, 0, &(struct itimerspec){ 0 }, NULL);
				continue;
			}
			bool connected = c->state == L_CONNECT;
			int r = lat_step(c, target, proxy, connected);
			if (r == 0 && connected) {
				struct epoll_event cev = { .events = EPOLLIN, .data.ptr = c };
				epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
				continue;
			}
			if (r == 0)
				continue;
			double t = now_s() - c->start;
			long seq = (long)((c->start - t0) * (double)per_second + 0.5);
			if (r == 1 && seq >= warmup)
				lat[ok++] = t;
			if (r < 0)
				failed++;
			close(c->fd);
			free(c);
			open--;
			done++;
		}
	}
	qsort(lat, (size_t)ok, sizeof *lat, cmp_double);
	printf("{\"mode\":\"latency\",\"per_second\":%ld,\"started\":%ld,\"warmup\":%ld,"
	       "\"measured\":%ld,\"failed\":%ld,\"unfinished\":%ld,\"p50_us\":%.0f,"
	       "\"p90_us\":%.0f,\"p99_us\":%.0f,\"p999_us\":%.0f,\"max_us\":%.0f}\n",
	       per_second, started, warmup, ok, failed, open,
	       quantile(lat, ok, 0.50) * 1e6, quantile(lat, ok, 0.90) * 1e6,
	       quantile(lat, ok, 0.99) * 1e6, quantile(lat, ok, 0.999) * 1e6,
	       ok ? lat[ok - 1] * 1e6 : 0.0);
	free(lat);
	return failed == 0 && open == 0 ? 0 : 1;
}

/* Opens n tunnels, each carrying one byte each way, then holds them until
 * standard input reaches its end. */
static int idle(const struct sockaddr_in *target, const struct proxy *proxy, long n)
{
	raise_nofile();
	int *fds = malloc(sizeof *fds * (size_t)(n > 0 ? n : 1));
	if (!fds)
		return 1;
	long open = 0, failed = 0;
	double t0 = now_s();
	for (long i = 0; i < n && failed < 100; i++) {
		int fd = dial(target, proxy);
		char b = 'x';
		if (fd >= 0 && full_write(fd, &b, 1) && full_read(fd, &b, 1)) {
			fds[open++] = fd;
		} else {
			if (fd >= 0)
				close(fd);
			failed++;
		}
	}
	printf("{\"mode\":\"idle\",\"wanted\":%ld,\"open\":%ld,\"failed\":%ld,\"seconds\":%.3f}\n",
	       n, open, failed, now_s() - t0);
	fflush(stdout);
	char buf[64];
	while (read(0, buf, sizeof buf) > 0)
		;
	for (long i = 0; i < open; i++)
		close(fds[i]);
	free(fds);
	return open == n ? 0 : 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: loadgen serve PORT\n"
			"       loadgen hold PORT\n"
			"       loadgen rate TARGET [PROXY] N THREADS\n"
			"       loadgen latency TARGET [PROXY] RATE SECONDS\n"
			"       loadgen idle TARGET [PROXY] N\n"
			"       loadgen stream TARGET [PROXY] BYTES\n"
			"       loadgen fsync FILE N\n"
			"PROXY: HOST:PORT or socks5://HOST:PORT (SOCKS5), http://HOST:PORT (CONNECT)\n");
}

int main(int argc, char **argv)
{
	struct sockaddr_in target;
	struct proxy proxy;
	if (argc == 3 && strcmp(argv[1], "serve") == 0)
		return serve(atoi(argv[2]));
	if (argc == 3 && strcmp(argv[1], "hold") == 0)
		return hold(atoi(argv[2]));
	if (argc == 4 && strcmp(argv[1], "fsync") == 0)
		return fsync_lat(argv[2], atol(argv[3]));
	/* The mode and the number of its figures after TARGET [PROXY]. */
	static const struct { const char *mode; int figures; } modes[] = {
		{ "rate", 2 }, { "latency", 2 }, { "idle", 1 }, { "stream", 1 },
	};
	for (size_t m = 0; argc >= 3 && m < sizeof modes / sizeof modes[0]; m++) {
		if (strcmp(argv[1], modes[m].mode) != 0)
			continue;
		int base = 3 + modes[m].figures;
		if (argc != base && argc != base + 1)
			break;
		bool via = argc == base + 1;
		if (!parse_hostport(argv[2], &target) || (via && !parse_proxy(argv[3], &proxy))) {
			fprintf(stderr, "loadgen: addresses must be 127.x.y.z:PORT\n");
			return 2;
		}
		const struct proxy *px = via ? &proxy : NULL;
		char **f = argv + (via ? 4 : 3);
		switch (m) {
		case 0: return rate(&target, px, atol(f[0]), atoi(f[1]));
		case 1: return latency(&target, px, atol(f[0]), atof(f[1]));
		case 2: return idle(&target, px, atol(f[0]));
		default: return stream(&target, px, strtoull(f[0], NULL, 10));
		}
	}
	usage();
	return 2;
}
