/*
 * peercheck: is the peer of a loopback TCP connection tailscaled's own
 * socket? (see include/tailfence/peercheck.h). Worker thread only.
 */
#include "tailfence/peercheck.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

/* How long the netlink answer may take (it is immediate in practice). */
#define PEERCHECK_NETLINK_MS 1000

/* tailscaled's pid and uid from its LocalAPI socket. */
static bool tailscaled_cred(const char *path, struct peercheck *out)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof sun.sun_path) {
		snprintf(out->why, sizeof out->why, "tailscaled's socket path %s is too long", path);
		return false;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(out->why, sizeof out->why, "cannot make a socket to ask tailscaled: %s",
			 strerror(errno));
		return false;
	}
	struct ucred cred;
	socklen_t cl = sizeof cred;
	bool ok = connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0 &&
		  getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0 && cred.pid > 0;
	int e = errno;
	close(fd);
	if (!ok) {
		snprintf(out->why, sizeof out->why, "cannot tell which process tailscaled is: "
			 "connecting to %s: %s", path, strerror(e));
		return false;
	}
	out->tailscaled_pid = cred.pid;
	out->tailscaled_uid = cred.uid;
	return true;
}

/* The TCP socket bound to peer and connected to local: its inode and uid. */
static bool find_peer_socket(const struct sockaddr_storage *local,
			     const struct sockaddr_storage *peer, struct peercheck *out)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
	} msg;
	memset(&msg, 0, sizeof msg);
	msg.nlh.nlmsg_len = sizeof msg;
	msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	msg.nlh.nlmsg_flags = NLM_F_REQUEST;	/* one socket, no dump */
	msg.nlh.nlmsg_seq = 1;
	msg.req.sdiag_family = (uint8_t)peer->ss_family;
	msg.req.sdiag_protocol = IPPROTO_TCP;
	msg.req.idiag_states = ~0u;
	struct inet_diag_sockid *id = &msg.req.id;
	id->idiag_cookie[0] = id->idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	if (peer->ss_family == AF_INET && local->ss_family == AF_INET) {
		const struct sockaddr_in *p = (const void *)peer, *l = (const void *)local;
		id->idiag_sport = p->sin_port;
		id->idiag_dport = l->sin_port;
		memcpy(id->idiag_src, &p->sin_addr, 4);
		memcpy(id->idiag_dst, &l->sin_addr, 4);
	} else if (peer->ss_family == AF_INET6 && local->ss_family == AF_INET6) {
		const struct sockaddr_in6 *p = (const void *)peer, *l = (const void *)local;
		id->idiag_sport = p->sin6_port;
		id->idiag_dport = l->sin6_port;
		memcpy(id->idiag_src, &p->sin6_addr, 16);
		memcpy(id->idiag_dst, &l->sin6_addr, 16);
	} else {
		snprintf(out->why, sizeof out->why, "the connection's addresses are not TCP over "
			 "one IP family");
		return false;
	}
	int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0) {
		snprintf(out->why, sizeof out->why, "cannot ask the kernel about the peer socket "
			 "(sock_diag): %s", strerror(errno));
		return false;
	}
	struct timeval tv = { 0, PEERCHECK_NETLINK_MS * 1000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	struct sockaddr_nl nl = { .nl_family = AF_NETLINK };
	bool found = false;
	int err = 0;
	if (sendto(fd, &msg, sizeof msg, 0, (struct sockaddr *)&nl, sizeof nl) < 0) {
		err = errno;
	} else {
		union {
			char buf[8192];
			struct nlmsghdr align;
		} u;
		ssize_t n = recv(fd, u.buf, sizeof u.buf, 0);
		if (n < 0)
			err = errno;
		for (struct nlmsghdr *h = &u.align; n > 0 && NLMSG_OK(h, (size_t)n) && !found && !err;
		     h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);
				err = e->error ? -e->error : ENOENT;
			} else if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY &&
				   h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct inet_diag_msg))) {
				const struct inet_diag_msg *d = NLMSG_DATA(h);
				out->peer_uid = d->idiag_uid;
				out->peer_inode = d->idiag_inode;
				out->have_peer = found = true;
			} else if (h->nlmsg_type == NLMSG_DONE) {
				break;
			}
		}
	}
	close(fd);
	if (!found)
		snprintf(out->why, sizeof out->why, "the kernel does not show the peer socket "
			 "(sock_diag: %s); it may have closed already", strerror(err ? err : ENOENT));
	return found;
}

/* Is socket:[inode] among pid's open descriptors? -1: cannot tell. */
static int holds_inode(pid_t pid, unsigned long inode, int *err)
{
	char dir[64], want[48];
	snprintf(dir, sizeof dir, "/proc/%ld/fd", (long)pid);
	snprintf(want, sizeof want, "socket:[%lu]", inode);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (!d) {
		*err = errno;
		if (dfd >= 0)
			close(dfd);
		return -1;
	}
	int found = 0;
	struct dirent *de;
	size_t wl = strlen(want);
	while (!found && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char link[64];
		ssize_t n = readlinkat(dfd, de->d_name, link, sizeof link);
		found = n == (ssize_t)wl && memcmp(link, want, wl) == 0;
	}
	closedir(d);
	return found;
}

void peercheck_tailscaled(const char *sock_path, const struct sockaddr_storage *local,
			  const struct sockaddr_storage *peer, struct peercheck *out)
{
	memset(out, 0, sizeof *out);
	out->result = PEERCHECK_UNKNOWN;
	if (!tailscaled_cred(sock_path, out) || !find_peer_socket(local, peer, out))
		return;
	if (out->peer_uid != out->tailscaled_uid) {
		out->result = PEERCHECK_OTHER;
		snprintf(out->why, sizeof out->why, "the connection comes from a socket of uid %u, "
			 "and tailscaled (pid %ld) runs as uid %u: not tailscale serve",
			 (unsigned)out->peer_uid, (long)out->tailscaled_pid,
			 (unsigned)out->tailscaled_uid);
		return;
	}
	int err = 0;
	int held = holds_inode(out->tailscaled_pid, out->peer_inode, &err);
	if (held < 0) {
		snprintf(out->why, sizeof out->why, "cannot read tailscaled's descriptors "
			 "(/proc/%ld/fd): %s", (long)out->tailscaled_pid, strerror(err));
		return;
	}
	if (!held) {
		out->result = PEERCHECK_OTHER;
		snprintf(out->why, sizeof out->why, "the connection comes from a socket "
			 "(inode %lu) that tailscaled (pid %ld) does not hold: another process of "
			 "uid %u, not tailscale serve", out->peer_inode, (long)out->tailscaled_pid,
			 (unsigned)out->peer_uid);
		return;
	}
	out->result = PEERCHECK_TAILSCALED;
}
