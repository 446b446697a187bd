/*
 * `hutch shim RUN_DIR`: one supervisor per sandbox, running as real root in its own session.
 *
 * It makes a private mount namespace for itself (every mount it makes vanishes with it), joins
 * the sandbox's network namespace, prepares the upper layer and the cgroup, and clones the
 * sandbox's init into new user, pid, mount, ipc and uts namespaces. While the child waits, the
 * shim writes its uid/gid maps, idmaps the template layers to its user namespace and hands
 * them over (SCM_RIGHTS); the child builds its root, drops privileges and execs hutch-init.
 * The shim reports "ready" to start() once envd accepts connections, copies init's output
 * into shim.log (bounded), stops the sandbox on SIGTERM, and removes what it made when init
 * ends.
 */
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "jail.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/util.h"

#define CLONE_NS_FLAGS (CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS)
#define MAX_LAYERS     128

struct shim {
	const struct sandbox_spec *spec;
	const char *run_dir;
	int run_dirfd;
	int notify_fd; /* to start(): "ready\n" or "error: ...\n", then closed */
	int disk_fd;   /* the upper layer's filesystem made ahead by the daemon, or -1 */
	struct jail_cgroup cg;
	int cg_tasks[4]; /* v1: the cgroup's tasks files, for init to join itself */
	unsigned n_cg_tasks;
	int cg_user_fd; /* moves a process into the "user" cgroup: inherited by init and envd */
	pid_t init_pid;
	int init_pidfd;
	int output_fd; /* init's stdout+stderr */
	uint64_t log_written;
	bool disk_mounted, sys_mounted;
};

static void notify(struct shim *s, const char *fmt, ...) _printf_(2, 3);
static void notify(struct shim *s, const char *fmt, ...)
{
	if (s->notify_fd < 0)
		return;
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	n = MIN(n, (int)sizeof(buf) - 2);
	buf[n++] = '\n';
	(void)!write(s->notify_fd, buf, (size_t)n);
	close(s->notify_fd);
	s->notify_fd = -1;
}

static int write_proc(pid_t pid, const char *file, const char *text)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return jail_fail("open", path);
	if (write(fd, text, strlen(text)) < 0)
		return jail_fail("write", path);
	return 0;
}

/* `ip netns add` leaves lo down; envd listens on 0.0.0.0 and we connect to 127.0.0.1. */
static void loopback_up(void)
{
	_cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) < 0 || (ifr.ifr_flags & IFF_UP))
		return;
	ifr.ifr_flags |= IFF_UP;
	ioctl(fd, SIOCSIFFLAGS, &ifr);
}

static int join_netns(const char *path)
{
	if (isempty(path)) {
		/* No network slot: a namespace with only loopback. */
		if (unshare(CLONE_NEWNET) < 0)
			return jail_fail("unshare", "net");
	} else {
		_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return jail_fail("open", path);
		if (setns(fd, CLONE_NEWNET) < 0)
			return jail_fail("setns", path);
	}
	loopback_up();
	return 0;
}

/* What the shim prepares before the child exists (all in the shim's private mount ns). */
static int prepare(struct shim *s)
{
	const struct sandbox_spec *spec = s->spec;
	char path[4096];
	if (unshare(CLONE_NEWNS) < 0)
		return jail_fail("unshare", "mount namespace");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return jail_fail("mount", "/ private");
	/* The old fd walks the old namespace's mounts: mounts made from here on are not there. */
	int fd = open(s->run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return jail_fail("open", s->run_dir);
	close(s->run_dirfd);
	s->run_dirfd = fd;
	int r = join_netns(spec->netns_path);
	if (r < 0)
		return r;
	/* sysfs shows the mounter's network namespace: mount it here, in the sandbox's netns
	 * (the child, in its own user namespace, may not mount sysfs for a netns it does not
	 * own), read-only; the child bind-mounts it at /sys. */
	if (mkdirat(s->run_dirfd, JAIL_SYS_DIR, 0700) < 0 && errno != EEXIST)
		return jail_fail("mkdir", JAIL_SYS_DIR);
	snprintf(path, sizeof(path), "%s/" JAIL_SYS_DIR, s->run_dir);
	if (mount("sysfs", path, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return jail_fail("mount", "sysfs");
	s->sys_mounted = true;
	if (mkdirat(s->run_dirfd, JAIL_ROOT_DIR, 0755) < 0 && errno != EEXIST)
		return jail_fail("mkdir", JAIL_ROOT_DIR);
	/* Mount points for the idmapped layers in the sandbox's mount namespace. */
	if (mkdirat(s->run_dirfd, JAIL_LOWER_DIR, 0711) < 0 && errno != EEXIST)
		return jail_fail("mkdir", JAIL_LOWER_DIR);
	for (unsigned i = 0; spec->layers[i]; i++) {
		snprintf(path, sizeof(path), JAIL_LOWER_DIR "/%u", i);
		if (mkdirat(s->run_dirfd, path, 0700) < 0 && errno != EEXIST)
			return jail_fail("mkdir", path);
	}
	r = jail_cgroup_init(&s->cg, spec->cgroup_parent, spec->id);
	if (r == 0)
		r = jail_cgroup_create(&s->cg, spec);
	if (r < 0) {
		errno = -r;
		return jail_fail("create cgroup", s->cg.n ? s->cg.dirs[0] : spec->id);
	}
	r = jail_cgroup_open_tasks(&s->cg, s->cg_tasks);
	if (r < 0) {
		errno = -r;
		return jail_fail("open the tasks files of", s->cg.dirs[0]);
	}
	s->n_cg_tasks = (unsigned)r;
	s->cg_user_fd = jail_cgroup_open_user(&s->cg);
	if (s->cg_user_fd < 0) {
		errno = -s->cg_user_fd;
		return jail_fail("open the user cgroup of", s->cg.user);
	}
	return 0;
}

static int send_fds(int sock, const int *fds, unsigned n)
{
	char cbuf[CMSG_SPACE(sizeof(int) * (MAX_LAYERS + 1))] = { 0 };
	uint32_t count = n;
	struct iovec iov = { .iov_base = &count, .iov_len = sizeof(count) };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cbuf,
		.msg_controllen = CMSG_SPACE(sizeof(int) * n),
	};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * n);
	memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
	return sendmsg(sock, &msg, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

static int recv_fds(int sock, int *fds, unsigned max)
{
	char cbuf[CMSG_SPACE(sizeof(int) * (MAX_LAYERS + 1))] = { 0 };
	uint32_t count = 0;
	struct iovec iov = { .iov_base = &count, .iov_len = sizeof(count) };
	struct msghdr msg = { .msg_iov = &iov,
			      .msg_iovlen = 1,
			      .msg_control = cbuf,
			      .msg_controllen = sizeof(cbuf) };
	ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	if (n != sizeof(count))
		return n < 0 ? -errno : -EPIPE; /* EOF: the shim gave up */
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	if (!c || c->cmsg_type != SCM_RIGHTS || count > max ||
	    c->cmsg_len != CMSG_LEN(sizeof(int) * count))
		return -EBADMSG;
	memcpy(fds, CMSG_DATA(c), sizeof(int) * count);
	return (int)count;
}

/* The sandbox side, between clone and exec. Only returns on failure. */
static int child_setup(struct shim *s, int sock)
{
	const struct sandbox_spec *spec = s->spec;
	int fds[MAX_LAYERS + 1];
	/* While the shim idmaps the layers and prepares the disk: join the cgroup (v1) and
	 * build the seccomp filter. */
	int r = jail_cgroup_join_self(s->cg_tasks, s->n_cg_tasks);
	for (unsigned i = 0; i < s->n_cg_tasks; i++)
		close(s->cg_tasks[i]);
	if (r < 0) {
		errno = -r;
		return jail_fail("join cgroup", s->cg.dirs[0]);
	}
	struct jail_seccomp_prog filter;
	if ((r = jail_seccomp_compile(&filter)) < 0) {
		errno = -r;
		return jail_fail("compile", "seccomp filter");
	}
	int n = recv_fds(sock, fds, ELEMENTSOF(fds));
	int want = spec->disk_mb ? 2 : 1;
	if (n < want) {
		errno = n < 0 ? -n : EBADMSG;
		return jail_fail("receive", "layers from the shim");
	}
	if (spec->disk_mb) {
		/* The upper layer's filesystem, cloned by the shim: attach it in this namespace
		 * (overlayfs takes an upper layer only from the mounter's namespace). */
		char disk[4200];
		snprintf(disk, sizeof(disk), "%s/" JAIL_DISK_DIR, s->run_dir);
		if (move_mount(fds[--n], "", AT_FDCWD, disk, MOVE_MOUNT_F_EMPTY_PATH) < 0)
			return jail_fail("move_mount", disk);
		close(fds[n]);
	}
	struct jail_root_fds rf = { .layers = fds, .n_layers = (unsigned)n };
	r = jail_open_root_fds(spec, s->run_dir, &rf);
	if (r < 0)
		return r;
	/* Become root of the new user namespace (until now: host root, unmapped in it). */
	if (setgroups(0, NULL) < 0 || setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
		return jail_fail("become root in", "user namespace");
	/* The credential change cleared it: the sandbox dies with its shim. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (spec->hostname && sethostname(spec->hostname, strlen(spec->hostname)) < 0)
		return jail_fail("sethostname", spec->hostname);
	r = jail_build_root(spec, &rf);
	jail_close_root_fds(&rf);
	if (r < 0)
		return r;
	/* Wait until the shim is done with us (on v2 it moved us into the sandbox's cgroup
	 * meanwhile), then make that cgroup our cgroup root. */
	char go;
	if (read(sock, &go, 1) != 1 || go != 'g') {
		errno = EPIPE;
		return jail_fail("wait for", "the shim");
	}
	if (unshare(CLONE_NEWCGROUP) < 0)
		return jail_fail("unshare", "cgroup namespace");
	umask(022);
	if (!spec->allow_setuid && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return jail_fail("prctl", "no_new_privs");
	/* The filter first (loading it without no_new_privs needs CAP_SYS_ADMIN), then the
	 * capabilities: capset and prctl are on the allow-list. */
	if ((r = jail_seccomp_install(&filter)) < 0) {
		errno = -r;
		return jail_fail("load", "seccomp filter");
	}
	if ((r = jail_caps_drop()) < 0) {
		errno = -r;
		return jail_fail("drop", "capabilities");
	}
	signal(SIGPIPE, SIG_DFL); /* ignored dispositions survive exec */
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* The one fd init keeps across exec (F_DUPFD leaves close-on-exec off); init hands it
	 * to envd, which moves every process it starts into the "user" cgroup through it. */
	int user_fd = fcntl(s->cg_user_fd, F_DUPFD, 3);
	if (user_fd < 0)
		return jail_fail("dup", "the user cgroup fd");
	char user_env[64];
	snprintf(user_env, sizeof(user_env), JAIL_USER_CGROUP_FD_ENV "=%d", user_fd);
	char *const argv[] = { "/.hutch/init", NULL };
	char *const envp[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			       "HOME=/root", user_env, NULL };
	execve(argv[0], argv, envp);
	return jail_fail("exec", argv[0]);
}

static _Noreturn void child_main(struct shim *s, int sock, int out_fd)
{
	/* init's stdin is /dev/null; stdout and stderr go to the shim. */
	if (s->disk_fd >= 0)
		close(s->disk_fd); /* the shim's: the child gets the disk from send_mounts */
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null < 0 || dup2(null, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)
		_exit(126);
	child_setup(s, sock);
	(void)!write(sock, jail_errmsg, strlen(jail_errmsg));
	_exit(1);
}

struct attach_job {
	struct shim *s;
	int r;
};

/* v2: the migration by pid waits for an RCU grace period (milliseconds): done in a thread
 * while the layers and the disk are prepared and the child builds its root. */
static void *attach_thread(void *p)
{
	struct attach_job *job = p;
	job->r = jail_cgroup_attach(&job->s->cg, job->s->init_pid);
	/* Sets init's oom_score_adj_min too: the OOM killer picks user processes, not pid 1. */
	write_proc(job->s->init_pid, "oom_score_adj", "-1000");
	return NULL;
}

/* The layers and the upper layer's filesystem for the child: detached mounts. */
static int send_mounts(struct shim *s, int sock)
{
	const struct sandbox_spec *spec = s->spec;
	char path[4200];
	snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)s->init_pid);
	_cleanup_close_ int userns = open(path, O_RDONLY | O_CLOEXEC);
	if (userns < 0)
		return jail_fail("open", path);
	int fds[MAX_LAYERS + 1];
	_cleanup_free_ int *layers = NULL;
	_cleanup_close_ int upper = -1, work = -1, disk = -1;
	int n = jail_idmap_layers(spec, userns, &layers);
	if (n < 0)
		return n;
	int r = 0;
	if (n > MAX_LAYERS) {
		errno = E2BIG;
		r = jail_fail("too many layers for", spec->id);
		goto out;
	}
	memcpy(fds, layers, sizeof(int) * (size_t)n);
	int total = n;
	r = jail_disk_setup(s->run_dirfd, s->run_dir, spec, s->disk_fd, &upper, &work);
	if (s->disk_fd >= 0)
		s->disk_fd = (close(s->disk_fd), -1);
	s->disk_mounted = r >= 0 && spec->disk_mb > 0;
	if (r < 0) {
		errno = -r;
		r = jail_fail("prepare the upper layer in", s->run_dir);
		goto out;
	}
	if (spec->disk_mb) {
		snprintf(path, sizeof(path), "%s/" JAIL_DISK_DIR, s->run_dir);
		disk = open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
		if (disk < 0) {
			r = jail_fail("open_tree", path);
			goto out;
		}
		fds[total++] = disk;
	}
	r = send_fds(sock, fds, (unsigned)total);
	if (r < 0) {
		errno = -r;
		r = jail_fail("send", "layers to the sandbox");
	}
out:
	for (int i = 0; i < n; i++)
		close(layers[i]);
	return r;
}

static void close_cg_tasks(struct shim *s)
{
	for (unsigned i = 0; i < s->n_cg_tasks; i++)
		close(s->cg_tasks[i]);
	s->n_cg_tasks = 0;
	if (s->cg_user_fd >= 0)
		s->cg_user_fd = (close(s->cg_user_fd), -1);
}

/* The parent's side of the handshake; the child waits in recv_fds until it is done. */
static int configure_child(struct shim *s, int sock)
{
	const struct sandbox_spec *spec = s->spec;
	char map[64];
	snprintf(map, sizeof(map), "0 %u %u\n", spec->uid_base, SANDBOX_UID_COUNT);
	int r;
	if ((r = write_proc(s->init_pid, "uid_map", map)) < 0 ||
	    (r = write_proc(s->init_pid, "gid_map", map)) < 0)
		return r;
	struct attach_job job = { .s = s };
	pthread_t t;
	if (s->n_cg_tasks) {
		/* v1: init joins by itself (child_setup); only the OOM score is left. */
		write_proc(s->init_pid, "oom_score_adj", "-1000");
	} else if (pthread_create(&t, NULL, attach_thread, &job) != 0) {
		errno = EAGAIN;
		return jail_fail("start", "cgroup thread");
	}
	bool v1 = s->n_cg_tasks > 0;
	close_cg_tasks(s);
	r = send_mounts(s, sock);
	if (!v1)
		pthread_join(t, NULL);
	if (r < 0)
		return r;
	if (job.r < 0) {
		errno = -job.r;
		return jail_fail("join cgroup", s->cg.dirs[0]);
	}
	/* "go": the child may enter its cgroup namespace and exec. */
	(void)!send(sock, "g", 1, MSG_NOSIGNAL);
	return 0;
}

static int spawn_init(struct shim *s)
{
	int sv[2], out[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return jail_fail("socketpair", NULL);
	if (pipe2(out, O_CLOEXEC) < 0) {
		close(sv[0]);
		close(sv[1]);
		return jail_fail("pipe", NULL);
	}
	int pidfd = -1;
	pid_t pid = (pid_t)syscall(SYS_clone, CLONE_NS_FLAGS | CLONE_PIDFD | SIGCHLD, NULL, &pidfd,
				   NULL, 0);
	if (pid < 0) {
		int r = jail_fail("clone", "sandbox namespaces");
		close(sv[0]), close(sv[1]), close(out[0]), close(out[1]);
		return r;
	}
	if (pid == 0) {
		close(sv[0]);
		close(out[0]);
		child_main(s, sv[1], out[1]);
	}
	close(sv[1]);
	close(out[1]);
	s->init_pid = pid;
	s->init_pidfd = pidfd;
	s->output_fd = out[0];
	_cleanup_close_ int sock = sv[0];
	int r = configure_child(s, sock);
	if (r < 0)
		return r;
	/* The child execs (EOF: the socket is close-on-exec) or reports why it could not. */
	char msg[sizeof(jail_errmsg)];
	ssize_t n;
	while ((n = read(sock, msg, sizeof(msg) - 1)) < 0 && errno == EINTR)
		;
	if (n > 0) {
		msg[n] = 0;
		snprintf(jail_errmsg, sizeof(jail_errmsg), "%s", msg);
		return -EIO;
	}
	return 0;
}

static bool envd_listening(void)
{
	_cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {
		.sin_family = AF_INET,
		.sin_port = htons(JAIL_ENVD_PORT),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	return fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
}

static bool init_exited(struct shim *s)
{
	struct pollfd p = { .fd = s->init_pidfd, .events = POLLIN };
	return poll(&p, 1, 0) > 0;
}

static int wait_ready(struct shim *s)
{
	unsigned timeout = s->spec->start_timeout_ms ? s->spec->start_timeout_ms : 10000;
	uint64_t start = now_usec(), deadline = start + (uint64_t)timeout * 1000;
	for (;;) {
		if (envd_listening())
			return 0;
		if (init_exited(s)) {
			snprintf(jail_errmsg, sizeof(jail_errmsg),
				 "init exited before envd listened (see shim.log)");
			return -ECHILD;
		}
		if (now_usec() > deadline) {
			snprintf(jail_errmsg, sizeof(jail_errmsg),
				 "envd did not listen on :%d within %u ms", JAIL_ENVD_PORT,
				 timeout);
			return -ETIMEDOUT;
		}
		/* envd listens within ~10 ms of exec: a refused connect on loopback costs
		 * microseconds, a coarse sleep would cost up to its length in every start. */
		usleep(now_usec() - start < 100000 ? 100 : 1000);
	}
}

static void copy_output(struct shim *s)
{
	char buf[16384];
	ssize_t n = read(s->output_fd, buf, sizeof(buf));
	if (n <= 0) {
		if (n == 0 || errno != EINTR) {
			close(s->output_fd);
			s->output_fd = -1;
		}
		return;
	}
	/* Output from inside the sandbox is hostile: bounded, never interpreted. */
	if (s->log_written < JAIL_SHIM_LOG_MAX) {
		size_t len = MIN((uint64_t)n, JAIL_SHIM_LOG_MAX - s->log_written);
		write_all(STDERR_FILENO, buf, len);
		s->log_written += len;
	}
}

static void drain_output(struct shim *s)
{
	while (s->output_fd >= 0 && s->log_written < JAIL_SHIM_LOG_MAX) {
		struct pollfd p = { .fd = s->output_fd, .events = POLLIN };
		if (poll(&p, 1, 0) <= 0)
			break;
		copy_output(s);
	}
}

/* Runs until init has exited; returns its wait status. */
static int supervise(struct shim *s)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	_cleanup_close_ int sfd = signalfd(-1, &set, SFD_CLOEXEC);
	uint64_t kill_at = 0;
	for (;;) {
		struct pollfd p[3] = {
			{ .fd = s->init_pidfd, .events = POLLIN },
			{ .fd = sfd, .events = POLLIN },
			{ .fd = s->output_fd, .events = POLLIN },
		};
		int timeout = -1;
		if (kill_at) {
			uint64_t now = now_usec();
			timeout = now >= kill_at ? 0 : (int)((kill_at - now) / 1000) + 1;
		}
		int n = poll(p, s->output_fd >= 0 ? 3 : 2, timeout);
		if (n < 0 && errno != EINTR)
			break;
		if (p[2].revents && s->output_fd >= 0)
			copy_output(s);
		if (p[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) == sizeof(si) && !kill_at) {
				log_info("Stopping sandbox %s (signal %u)", s->spec->id,
					 si.ssi_signo);
				/* A daemon restarted meanwhile must not take it back. */
				jail_write_file_at(s->run_dirfd, JAIL_STOP_FILE, "", 0644);
				syscall(SYS_pidfd_send_signal, s->init_pidfd, SIGTERM, NULL, 0);
				kill_at = now_usec() + JAIL_STOP_GRACE_MS * 1000ull;
			}
		}
		if (kill_at && now_usec() >= kill_at) {
			syscall(SYS_pidfd_send_signal, s->init_pidfd, SIGKILL, NULL, 0);
			kill_at = UINT64_MAX;
		}
		if (p[0].revents & POLLIN)
			break;
	}
	drain_output(s);
	siginfo_t si = { 0 };
	if (waitid(P_PIDFD, (id_t)s->init_pidfd, &si, WEXITED) < 0)
		return -1;
	return si.si_code == CLD_EXITED ? si.si_status << 8 : si.si_status;
}

/* Removes everything the shim made; the run directory itself and shim.log stay for the
 * daemon (destroy() removes them). */
static void cleanup(struct shim *s)
{
	char path[4096];
	close_cg_tasks(s);
	if (s->init_pid > 0) {
		if (s->init_pidfd >= 0) {
			syscall(SYS_pidfd_send_signal, s->init_pidfd, SIGKILL, NULL, 0);
			waitid(P_PIDFD, (id_t)s->init_pidfd, NULL, WEXITED);
		} else {
			kill(s->init_pid, SIGKILL);
			waitpid(s->init_pid, NULL, 0);
		}
	}
	if (s->cg.n) {
		int r = jail_cgroup_destroy(&s->cg);
		if (r < 0)
			log_warn_errno(r, "Failed to remove cgroup %s: %m", s->cg.dirs[0]);
		jail_cgroup_done(&s->cg);
	}
	if (s->sys_mounted) {
		snprintf(path, sizeof(path), "%s/" JAIL_SYS_DIR, s->run_dir);
		umount2(path, MNT_DETACH);
	}
	if (s->disk_mounted) {
		snprintf(path, sizeof(path), "%s/" JAIL_DISK_DIR, s->run_dir);
		umount2(path, MNT_DETACH);
	}
	unlinkat(s->run_dirfd, JAIL_INIT_PID, 0);
	rm_rf_at(s->run_dirfd, JAIL_UPPER_DIR);
	rm_rf_at(s->run_dirfd, JAIL_WORK_DIR);
	unlinkat(s->run_dirfd, JAIL_DISK_IMAGE, 0);
	unlinkat(s->run_dirfd, JAIL_DISK_DIR, AT_REMOVEDIR);
	unlinkat(s->run_dirfd, JAIL_ROOT_DIR, AT_REMOVEDIR);
	for (unsigned i = 0; s->spec->layers[i]; i++) {
		snprintf(path, sizeof(path), JAIL_LOWER_DIR "/%u", i);
		unlinkat(s->run_dirfd, path, AT_REMOVEDIR);
	}
	unlinkat(s->run_dirfd, JAIL_LOWER_DIR, AT_REMOVEDIR);
	unlinkat(s->run_dirfd, JAIL_SYS_DIR, AT_REMOVEDIR);
}

static int shim_run(struct shim *s)
{
	uint64_t t0 = now_usec(), t1 = 0, t2 = 0;
	int r = prepare(s);
	t1 = now_usec();
	if (r >= 0)
		r = spawn_init(s);
	t2 = now_usec();
	if (r >= 0) {
		jail_pidfile_write(s->run_dirfd, JAIL_INIT_PID, s->init_pid);
		r = wait_ready(s);
	}
	uint64_t t3 = now_usec();
	if (r < 0) {
		drain_output(s);
		log_error("Failed to start sandbox %s: %s", s->spec->id, jail_errmsg);
		cleanup(s);
		notify(s, "error: %s", jail_errmsg);
		return 1;
	}
	notify(s, "ready %d", (int)s->init_pid);
	log_info("Sandbox %s ready in %.2f ms (prepare %.2f, namespaces+root+exec %.2f, envd %.2f)",
		 s->spec->id, (t3 - t0) / 1e3, (t1 - t0) / 1e3, (t2 - t1) / 1e3, (t3 - t2) / 1e3);
	int status = supervise(s);
	char buf[32];
	snprintf(buf, sizeof(buf), "%d\n", status);
	jail_write_file_at(s->run_dirfd, JAIL_EXIT_FILE, buf, 0644);
	log_info("Sandbox %s ended (status %d)", s->spec->id, status);
	s->init_pid = 0;
	close(s->init_pidfd);
	s->init_pidfd = -1;
	cleanup(s);
	return 0;
}

int jail_shim_main(int argc, char **argv)
{
	/* Called with main()'s argv: [hutch] shim RUN_DIR */
	int i = 0;
	while (i < argc && !streq(argv[i], "shim"))
		i++;
	if (i + 1 >= argc) {
		fprintf(stderr, "usage: hutch shim RUN_DIR\n");
		return 2;
	}
	const char *run_dir = argv[i + 1];
	log_setup("hutch-shim", LOG_LEVEL_INFO, true);
	struct shim s = { .run_dir = run_dir,
			  .notify_fd = -1,
			  .disk_fd = -1,
			  .init_pidfd = -1,
			  .output_fd = -1,
			  .cg_user_fd = -1 };
	const char *nfd = getenv(JAIL_NOTIFY_FD_ENV);
	if (nfd) {
		s.notify_fd = atoi(nfd);
		if (s.notify_fd < 3 || fcntl(s.notify_fd, F_SETFD, FD_CLOEXEC) < 0)
			s.notify_fd = -1;
	}
	const char *dfd = getenv(JAIL_DISK_FD_ENV);
	if (dfd) {
		s.disk_fd = atoi(dfd);
		if (s.disk_fd < 3 || s.disk_fd == s.notify_fd ||
		    fcntl(s.disk_fd, F_SETFD, FD_CLOEXEC) < 0)
			s.disk_fd = -1;
	}
	s.run_dirfd = open(run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s.run_dirfd < 0) {
		notify(&s, "error: cannot open run directory '%s': %s", run_dir, strerror(errno));
		return 1;
	}
	char path[4096];
	snprintf(path, sizeof(path), "%s/" JAIL_SPEC_FILE, run_dir);
	struct jail_spec *js = NULL;
	int r = jail_spec_read(path, &js);
	if (r < 0) {
		notify(&s, "error: cannot read '%s': %s", path, strerror(-r));
		return 1;
	}
	s.spec = &js->spec;
	/* Leave start()'s process: it reaps this one at once, and init (host root) adopts us. */
	pid_t pid = fork();
	if (pid < 0) {
		notify(&s, "error: fork: %s", strerror(errno));
		return 1;
	}
	if (pid > 0)
		_exit(0);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_NAME, "hutch-shim");
	jail_pidfile_write(s.run_dirfd, JAIL_SHIM_PID, getpid());
	r = shim_run(&s);
	close(s.run_dirfd);
	jail_spec_free(js);
	return r;
}
