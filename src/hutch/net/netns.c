/*
 * Network namespaces: created by real root (owned by the initial user namespace, so root inside
 * a sandbox's user namespace cannot reconfigure them), persisted as bind mounts, entered per
 * thread with setns() for a moment to open sockets inside.
 */
#include "net-internal.h"
#include "netpool.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "common/macro.h"

#define CONNECT_TIMEOUT_MS 3000

static int host_netns_fd = -1;
static int host_netns_err;
static pthread_once_t host_netns_once = PTHREAD_ONCE_INIT;

static void host_netns_open(void)
{
	/* The thread-group leader's namespace: the daemon never moves its main thread. */
	host_netns_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	host_netns_err = host_netns_fd < 0 ? negative_errno() : 0;
}

int netns_host_fd(void)
{
	pthread_once(&host_netns_once, host_netns_open);
	return host_netns_fd >= 0 ? host_netns_fd : host_netns_err;
}

struct netns_new_args {
	int fd;
	struct nlink *nl;
	bool want_nl;
	int r;
};

static void *netns_new_thread(void *arg)
{
	struct netns_new_args *a = arg;
	/* This thread alone moves into the new namespace and dies there. */
	if (unshare(CLONE_NEWNET) < 0) {
		a->r = negative_errno();
		return NULL;
	}
	a->fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (a->fd < 0) {
		a->r = negative_errno();
		return NULL;
	}
	if (a->want_nl) {
		a->r = nlink_open(&a->nl);
		if (a->r < 0)
			return NULL;
		a->r = nlink_link_up(a->nl, "lo");
	}
	return NULL;
}

int netns_create(const char *path, int *fd_out, struct nlink **nl_out)
{
	struct netns_new_args a = { .fd = -1, .want_nl = nl_out != NULL };
	pthread_t t;
	int r = -pthread_create(&t, NULL, netns_new_thread, &a);
	if (r < 0)
		return r;
	pthread_join(t, NULL);
	_cleanup_close_ int fd = a.fd;
	struct nlink *nl = a.nl;
	if (a.r < 0) {
		nlink_close(nl);
		return a.r;
	}

	_cleanup_close_ int file = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (file < 0) {
		r = negative_errno();
		nlink_close(nl);
		return r;
	}
	char src[64];
	snprintf(src, sizeof(src), "/proc/self/fd/%d", fd);
	if (mount(src, path, NULL, MS_BIND, NULL) < 0) {
		r = negative_errno();
		unlink(path);
		nlink_close(nl);
		return r;
	}
	*fd_out = TAKE_FD(fd);
	if (nl_out)
		*nl_out = nl;
	return 0;
}

int netns_open(const char *path, int *fd_out)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return negative_errno();
	struct statfs sfs;
	if (fstatfs(fd, &sfs) < 0)
		return negative_errno();
	/* An empty file left behind by a crash is not a namespace. */
	if (sfs.f_type != NSFS_MAGIC)
		return -ENOENT;
	*fd_out = TAKE_FD(fd);
	return 0;
}

int netns_remove(const char *path)
{
	int r = 0;
	if (umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL && errno != ENOENT)
		r = negative_errno();
	if (unlink(path) < 0 && errno != ENOENT && r == 0)
		r = negative_errno();
	return r;
}

int netns_run_in(int netns_fd, int (*fn)(void *arg), void *arg)
{
	int host = netns_host_fd();
	if (host < 0)
		return host;
	if (setns(netns_fd, CLONE_NEWNET) < 0)
		return negative_errno();
	int r = fn(arg);
	int saved = errno;
	if (setns(host, CLONE_NEWNET) < 0)
		/* This thread would keep opening sockets inside a sandbox: never carry on. */
		abort();
	errno = saved;
	return r;
}

struct socket_args {
	int domain, type;
};

static int socket_fn(void *arg)
{
	struct socket_args *a = arg;
	int fd = socket(a->domain, a->type | SOCK_CLOEXEC, 0);
	return fd < 0 ? negative_errno() : fd;
}

int net_socket_in_netns(int netns_fd, int domain, int type)
{
	struct socket_args a = { domain, type };
	return netns_run_in(netns_fd, socket_fn, &a);
}

int net_connect_in_netns(int netns_fd, uint16_t port)
{
	_cleanup_close_ int fd =
	    net_socket_in_netns(netns_fd, AF_INET, SOCK_STREAM | SOCK_NONBLOCK);
	if (fd < 0)
		return fd;
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct sockaddr_in sa = {
		.sin_family = AF_INET,
		.sin_port = htons(port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno != EINPROGRESS)
			return negative_errno();
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		int n;
		do
			n = poll(&pfd, 1, CONNECT_TIMEOUT_MS);
		while (n < 0 && errno == EINTR);
		if (n < 0)
			return negative_errno();
		if (n == 0)
			return -ETIMEDOUT;
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			return negative_errno();
		if (err)
			return -err;
	}
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
		return negative_errno();
	return TAKE_FD(fd);
}
