/* fork + exec of a user's process: credentials, session, terminal, fds. The child only makes
 * raw system calls (envd is multithreaded, so nothing that may take a lock after fork). */
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include "process.h"
#include "common/util.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

static void closep_all(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i] >= 0) {
			close(fds[i]);
			fds[i] = -1;
		}
}

/* Resolves cmd against PATH from envp, as a shell would; `cwd` is the directory the child will
 * run in (an empty PATH element names it). Caller frees. */
static char *resolve_command(const char *cmd, const char *const *envp, const char *cwd)
{
	if (strchr(cmd, '/'))
		return strdup(cmd);
	const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (const char *const *e = envp; *e; e++)
		if (startswith(*e, "PATH="))
			path = *e + 5;
	/* An empty element (leading, trailing or "::") means the current directory, as in sh. */
	for (;;) {
		const char *end = strchrnul(path, ':');
		char *cand = NULL;
		int r = end == path ? asprintf(&cand, "%s/%s", cwd, cmd)
				    : asprintf(&cand, "%.*s/%s", (int)(end - path), path, cmd);
		if (r < 0)
			return NULL;
		if (access(cand, X_OK) == 0) {
			if (end != path)
				return cand;
			/* The child execs after chdir(cwd). */
			free(cand);
			return asprintf(&cand, "./%s", cmd) < 0 ? NULL : cand;
		}
		free(cand);
		if (!*end)
			break;
		path = end + 1;
	}
	return strdup(cmd);
}

static int open_pty(unsigned short cols, unsigned short rows, int *master, int *slave)
{
	_cleanup_close_ int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0)
		return -errno;
	if (grantpt(m) < 0 || unlockpt(m) < 0)
		return -errno;
	char name[64];
	if (ptsname_r(m, name, sizeof(name)) != 0)
		return -errno;
	int s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (s < 0)
		return -errno;
	struct winsize ws = { .ws_row = rows ? rows : 24, .ws_col = cols ? cols : 80 };
	ioctl(m, TIOCSWINSZ, &ws);
	*master = TAKE_FD(m);
	*slave = s;
	return 0;
}

struct child_args {
	const struct spawn_request *sr;
	const char *path;
	int in, out, err;
	int cgroup_fd;	 /* envd.user_cgroup_fd */
	int child_errno; /* written by the child (shared memory until exec) */
};

/* Runs in the child, which shares envd's memory until execve (CLONE_VM | CLONE_VFORK, like
 * posix_spawn): only system calls, no allocation, no locks. */
__attribute__((no_sanitize_address)) static int child(void *arg)
{
	struct child_args *a = arg;
	const struct spawn_request *sr = a->sr;
	/* Default handlers first, then unblock: a signal pending now must not run one of envd's
	 * handlers in this child. */
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, &dfl, NULL);
	sigset_t all;
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);

	/* envd may run protected from the OOM killer (-1000 inside sandboxes); the processes it
	 * starts are fair game, slightly preferred (100, as in E2B). Raising needs no privilege. */
	int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	if (oom >= 0) {
		(void)!write(oom, "100", 3);
		close(oom);
	}
	if (setsid() < 0)
		goto fail;
	/* Into the user processes' cgroup while still envd's credentials (the file was opened by
	 * host root, whose credentials the kernel checks): forks of this process then count
	 * against the user's pids limit, and envd's reserve stays envd's. */
	if (a->cgroup_fd >= 0 && write(a->cgroup_fd, "0", 1) < 0)
		goto fail;
	if (dup2(a->in, 0) < 0 || dup2(a->out, 1) < 0 || dup2(a->err, 2) < 0)
		goto fail;
	if (sr->pty && ioctl(0, TIOCSCTTY, 0) < 0)
		goto fail;
	syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
	if (geteuid() == 0) {
		if (syscall(SYS_setgroups, (size_t)sr->user->ngroups, sr->user->groups) < 0 ||
		    syscall(SYS_setresgid, sr->user->gid, sr->user->gid, sr->user->gid) < 0 ||
		    syscall(SYS_setresuid, sr->user->uid, sr->user->uid, sr->user->uid) < 0)
			goto fail;
	}
	if (chdir(sr->cwd) < 0)
		goto fail;
	execve(a->path, (char *const *)sr->argv, (char *const *)sr->envp);
fail:
	a->child_errno = errno ? errno : EIO;
	_exit(127);
}

int spawn_process(const struct spawn_request *sr, struct spawn_result *res, char **msg)
{
	int fds[8] = { -1, -1, -1, -1, -1, -1, -1, -1 };
	enum { IN_R, IN_W, OUT_R, OUT_W, ERR_R, ERR_W, PTY_M, PTY_S };
	_cleanup_free_ char *path = resolve_command(sr->cmd, sr->envp, sr->cwd);
	int r;

	if (!path) {
		*msg = rpc_msg("error starting process '%s': %s", sr->cmd, strerror(ENOMEM));
		return -ENOMEM;
	}

	if (sr->pty) {
		r = open_pty(sr->cols, sr->rows, &fds[PTY_M], &fds[PTY_S]);
		if (r < 0) {
			*msg = rpc_msg("error starting pty: %s", strerror(-r));
			return r;
		}
	} else {
		int p[2];
		if (sr->want_stdin) {
			if (pipe2(p, O_CLOEXEC) < 0)
				goto fail_errno;
			fds[IN_R] = p[0];
			fds[IN_W] = p[1];
		} else if ((fds[IN_R] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
			goto fail_errno;
		}
		if (pipe2(p, O_CLOEXEC) < 0)
			goto fail_errno;
		fds[OUT_R] = p[0];
		fds[OUT_W] = p[1];
		if (pipe2(p, O_CLOEXEC) < 0)
			goto fail_errno;
		fds[ERR_R] = p[0];
		fds[ERR_W] = p[1];
	}

	struct child_args args = {
		.sr = sr,
		.path = path,
		.in = sr->pty ? fds[PTY_S] : fds[IN_R],
		.out = sr->pty ? fds[PTY_S] : fds[OUT_W],
		.err = sr->pty ? fds[PTY_S] : fds[ERR_W],
		.cgroup_fd = envd.user_cgroup_fd,
	};
	/* The parent is suspended until the child has exec'd or exited, so this stack only has
	 * to live across clone(). */
	const size_t stack_size = 64 * 1024;
	void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (stack == MAP_FAILED)
		goto fail_errno;
	pid_t pid =
	    clone(child, (char *)stack + stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
	int clone_errno = errno;
	munmap(stack, stack_size);
	if (pid < 0) {
		errno = clone_errno;
		goto fail_errno;
	}
	int child_errno = __atomic_load_n(&args.child_errno, __ATOMIC_SEQ_CST);
	if (child_errno) {
		waitpid(pid, NULL, 0);
		errno = child_errno;
		*msg = rpc_msg("error starting process '%s': fork/exec %s: %s", sr->cmd, path,
			       strerror(child_errno));
		r = -child_errno;
		goto fail;
	}
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		r = -errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		*msg = rpc_msg("error watching process: %s", strerror(-r));
		goto fail;
	}
	fcntl(pidfd, F_SETFD, FD_CLOEXEC);
	*res = (struct spawn_result){
		.pid = pid,
		.pidfd = pidfd,
		.in_fd = TAKE_FD(fds[IN_W]),
		.out_fd = TAKE_FD(fds[OUT_R]),
		.err_fd = TAKE_FD(fds[ERR_R]),
		.pty_fd = TAKE_FD(fds[PTY_M]),
	};
	closep_all(fds, ELEMENTSOF(fds));
	return 0;

fail_errno:
	r = -errno;
	*msg = rpc_msg("error starting process '%s': %s", sr->cmd, strerror(-r));
fail:
	closep_all(fds, ELEMENTSOF(fds));
	return r;
}
