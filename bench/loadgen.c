/*
 * loadgen: the benchmark's client and origin, on loopback only.
 *
 *   loadgen serve PORT                       echo server on 127.0.0.1:PORT
 *   loadgen rate  TARGET [PROXY] N THREADS   N connect/1-byte echo/close cycles
 *   loadgen stream TARGET [PROXY] BYTES      one connection, BYTES each way
 *   loadgen fsync FILE N                     N appends of a 300-byte line, each
 *                                            followed by fdatasync (the disk's
 *                                            part in --audit-durability synced)
 *
 * TARGET and PROXY are 127.x.y.z:PORT; with PROXY the connection is made
 * through a SOCKS5 proxy (no auth, CONNECT by IPv4 address), otherwise
 * directly, so both are measured by the same code. Prints one line of
 * JSON with the figures (rate: connections per second, and the 50th and
 * 99th percentile of one cycle's time, connect to echo). Not a test:
 * bench/run.sh calls it.
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

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

/* Connects to target, through a SOCKS5 proxy when proxy is set. */
static int dial(const struct sockaddr_in *target, const struct sockaddr_in *proxy)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	const struct sockaddr_in *to = proxy ? proxy : target;
	if (connect(fd, (const struct sockaddr *)to, sizeof *to) != 0)
		goto fail;
	if (proxy) {
		/* Greeting, then the request once the method is chosen: some
		 * proxies (microsocks) assume one read is one message. */
		uint8_t greet[3] = { 5, 1, 0 }, method[2];
		uint8_t req[10] = { 5, 1, 0, 1 };
		memcpy(req + 4, &target->sin_addr, 4);
		memcpy(req + 8, &target->sin_port, 2);
		uint8_t rep[10];
		if (!full_write(fd, greet, sizeof greet) || !full_read(fd, method, 2) ||
		    method[1] != 0 || !full_write(fd, req, sizeof req) ||
		    !full_read(fd, rep, sizeof rep) || rep[1] != 0 || rep[3] != 1)
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
	const struct sockaddr_in *proxy;
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

static int rate(const struct sockaddr_in *target, const struct sockaddr_in *proxy,
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

static int stream(const struct sockaddr_in *target, const struct sockaddr_in *proxy,
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

int main(int argc, char **argv)
{
	struct sockaddr_in target, proxy;
	if (argc == 3 && strcmp(argv[1], "serve") == 0)
		return serve(atoi(argv[2]));
	if (argc == 4 && strcmp(argv[1], "fsync") == 0)
		return fsync_lat(argv[2], atol(argv[3]));
	if (argc >= 4 && (strcmp(argv[1], "rate") == 0 || strcmp(argv[1], "stream") == 0)) {
		bool via = argc == (strcmp(argv[1], "rate") == 0 ? 6 : 5);
		if (!parse_hostport(argv[2], &target) ||
		    (via && !parse_hostport(argv[3], &proxy))) {
			fprintf(stderr, "loadgen: addresses must be 127.x.y.z:PORT\n");
			return 2;
		}
		int a = via ? 4 : 3;
		if (strcmp(argv[1], "rate") == 0)
			return rate(&target, via ? &proxy : NULL, atol(argv[a]), atoi(argv[a + 1]));
		return stream(&target, via ? &proxy : NULL, strtoull(argv[a], NULL, 10));
	}
	fprintf(stderr, "usage: loadgen serve PORT\n"
			"       loadgen rate TARGET [PROXY] N THREADS\n"
			"       loadgen stream TARGET [PROXY] BYTES\n"
			"       loadgen fsync FILE N\n");
	return 2;
}
