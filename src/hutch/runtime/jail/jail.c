/*
 * The jail runtime's ops, in the daemon: start() writes RUN_DIR/spec.json and spawns
 * `hutch shim RUN_DIR` in a new session (the shim forks once more, so it is nobody's child but
 * init's), then waits on a pipe for the shim's "ready PID" (envd accepts connections) or
 * "error: MESSAGE". The handle keeps pidfds of the shim and of the sandbox's init.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "jail.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/util.h"

struct runtime_sandbox {
	struct jail_spec *js;
	pid_t shim_pid, init_pid;
	int shim_pidfd, init_pidfd;
	int run_dirfd;
	struct jail_cgroup cg;
};

static void sandbox_free(struct runtime_sandbox *rs)
{
	if (!rs)
		return;
	if (rs->shim_pidfd >= 0)
		close(rs->shim_pidfd);
	if (rs->init_pidfd >= 0)
		close(rs->init_pidfd);
	if (rs->run_dirfd >= 0)
		close(rs->run_dirfd);
	jail_cgroup_done(&rs->cg);
	jail_spec_free(rs->js);
	free(rs);
}

static void sandbox_freep(struct runtime_sandbox **rs)
{
	sandbox_free(*rs);
}

static bool pidfd_exited(int pidfd, int timeout_ms)
{
	if (pidfd < 0)
		return true;
	struct pollfd p = { .fd = pidfd, .events = POLLIN };
	int n;
	while ((n = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
		;
	return n > 0;
}

/* A pidfd for the process recorded in RUN_DIR/NAME, if it is still that process. */
static int open_recorded(int dirfd, const char *name, const char *want_cmdline, pid_t *pid)
{
	uint64_t start;
	int r = jail_pidfile_read(dirfd, name, pid, &start);
	if (r < 0)
		return r;
	int fd = (int)syscall(SYS_pidfd_open, *pid, 0);
	if (fd < 0)
		return -errno;
	/* After pidfd_open: a recycled pid now shows a different start time. */
	if (jail_proc_starttime(*pid) != start) {
		close(fd);
		return -ESRCH;
	}
	if (want_cmdline) {
		char path[64], buf[4096];
		snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)*pid);
		_cleanup_close_ int c = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t n = c >= 0 ? read(c, buf, sizeof(buf) - 1) : -1;
		if (n <= 0) {
			close(fd);
			return -ESRCH;
		}
		buf[n] = 0;
		/* argv: <exe> shim RUN_DIR, NUL-separated */
		const char *a1 = buf + strlen(buf) + 1;
		const char *a2 = a1 < buf + n ? a1 + strlen(a1) + 1 : buf + n;
		if (!streq(a1, "shim") || a2 >= buf + n || !streq(a2, want_cmdline)) {
			close(fd);
			return -ESRCH;
		}
	}
	return fd;
}

static int sandbox_open(const char *run_dir, struct runtime_sandbox **out)
{
	_cleanup_(sandbox_freep) struct runtime_sandbox *rs = calloc(1, sizeof(*rs));
	if (!rs)
		return -ENOMEM;
	rs->shim_pidfd = rs->init_pidfd = rs->run_dirfd = -1;
	char path[4096];
	snprintf(path, sizeof(path), "%s/" JAIL_SPEC_FILE, run_dir);
	int r = jail_spec_read(path, &rs->js);
	if (r < 0)
		return r;
	const struct sandbox_spec *spec = &rs->js->spec;
	r = jail_cgroup_init(&rs->cg, spec->cgroup_parent, spec->id);
	if (r < 0)
		return r;
	int dirfd = rs->run_dirfd = open(run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return -errno;
	r = open_recorded(dirfd, JAIL_SHIM_PID, spec->run_dir, &rs->shim_pid);
	rs->shim_pidfd = r < 0 ? -1 : r;
	r = rs->shim_pidfd < 0 ? -ESRCH : open_recorded(dirfd, JAIL_INIT_PID, NULL, &rs->init_pid);
	rs->init_pidfd = r < 0 ? -1 : r;
	*out = TAKE_PTR(rs);
	return 0;
}

static char *log_tail(const char *run_dir)
{
	char path[4096], buf[2048];
	snprintf(path, sizeof(path), "%s/" JAIL_SHIM_LOG, run_dir);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	off_t size = lseek(fd, 0, SEEK_END);
	off_t from = size > (off_t)sizeof(buf) - 1 ? size - (off_t)sizeof(buf) + 1 : 0;
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, from);
	if (n <= 0)
		return NULL;
	buf[n] = 0;
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = 0;
	char *last = strrchr(buf, '\n');
	return strdup(last ? last + 1 : buf);
}

static int spawn_shim(const struct sandbox_spec *spec, int notify_fd, int log_fd, int disk_fd,
		      pid_t *pid)
{
	const char *exe = spec->shim_path ? spec->shim_path : "/proc/self/exe";
	char *const argv[] = { (char *)exe, "shim", (char *)spec->run_dir, NULL };
	char *const envp[] = { JAIL_NOTIFY_FD_ENV "=3", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
			       disk_fd >= 0 ? JAIL_DISK_FD_ENV "=4" : NULL, NULL };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, log_fd, 2);
	posix_spawn_file_actions_adddup2(&fa, notify_fd, 3);
	if (disk_fd >= 0)
		posix_spawn_file_actions_adddup2(&fa, disk_fd, 4);
	posix_spawn_file_actions_addclosefrom_np(&fa, disk_fd >= 0 ? 5 : 4);
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &all);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
					  POSIX_SPAWN_SETSIGDEF);
	int r = posix_spawn(pid, exe, &fa, &at, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	return -r;
}

/* Reads the shim's one-line report; "" on EOF. */
static int read_report(int fd, unsigned timeout_ms, char *buf, size_t size)
{
	size_t len = 0;
	uint64_t deadline = now_usec() + (uint64_t)timeout_ms * 1000;
	while (len < size - 1) {
		uint64_t now = now_usec();
		if (now >= deadline)
			return -ETIMEDOUT;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int n = poll(&p, 1, (int)((deadline - now) / 1000) + 1);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n <= 0)
			continue;
		ssize_t k = read(fd, buf + len, size - 1 - len);
		if (k < 0 && errno != EINTR)
			return -errno;
		if (k == 0)
			break;
		if (k > 0)
			len += (size_t)k;
		if (memchr(buf, '\n', len))
			break;
	}
	buf[len] = 0;
	buf[strcspn(buf, "\n")] = 0;
	return 0;
}

static int validate(const struct sandbox_spec *spec)
{
	if (isempty(spec->id) || isempty(spec->run_dir) || !spec->layers || !spec->layers[0] ||
	    isempty(spec->envd_bundle) || isempty(spec->init_path))
		return -EINVAL;
	/* uid_base 0 would make root inside root outside. */
	if (spec->uid_base == 0 || spec->uid_base > UINT32_MAX - SANDBOX_UID_COUNT)
		return -EINVAL;
	if (spec->hostname && strlen(spec->hostname) > 64)
		return -EINVAL;
	return 0;
}

static int jail_destroy(struct runtime_sandbox *rs);

static int jail_start(const struct sandbox_spec *spec, struct runtime_sandbox **out)
{
	int r = validate(spec);
	if (r < 0)
		return log_error_errno(r, "Invalid sandbox spec for '%s'", spec->id);
	char path[4096];
	snprintf(path, sizeof(path), "%s/" JAIL_SPEC_FILE, spec->run_dir);
	if ((r = jail_spec_write(spec, path)) < 0)
		return log_error_errno(r, "Failed to write '%s': %m", path);
	snprintf(path, sizeof(path), "%s/" JAIL_SHIM_LOG, spec->run_dir);
	_cleanup_close_ int log_fd =
	    open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (log_fd < 0)
		return log_error_errno(negative_errno(), "Failed to open '%s': %m", path);
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	_cleanup_close_ int rd = pipefd[0];
	/* A disk made ahead, if one is ready (else the shim makes it). */
	_cleanup_close_ int disk_fd =
	    jail_diskpool_take(spec->run_dir, spec->disk_mb, spec->disk_pool);
	pid_t pid;
	r = spawn_shim(spec, pipefd[1], log_fd, disk_fd, &pid);
	close(pipefd[1]);
	if (r < 0 && disk_fd >= 0) {
		/* The image taken from the pool is the shim's to remove, and there is no shim. */
		snprintf(path, sizeof(path), "%s/" JAIL_DISK_IMAGE, spec->run_dir);
		unlink(path);
	}
	if (disk_fd >= 0)
		disk_fd = (close(disk_fd), -1); /* the shim has it now */
	if (r < 0)
		return log_error_errno(r, "Failed to spawn the shim for '%s': %m", spec->id);
	/* It forks the real shim and exits at once. */
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	unsigned timeout = (spec->start_timeout_ms ? spec->start_timeout_ms : 10000) + 2000;
	char report[1024];
	r = read_report(rd, timeout, report, sizeof(report));
	_cleanup_(sandbox_freep) struct runtime_sandbox *rs = NULL;
	if (r == 0 && startswith(report, "ready ")) {
		r = sandbox_open(spec->run_dir, &rs);
		if (r == 0 && (rs->shim_pidfd < 0 || rs->init_pidfd < 0))
			r = -ESRCH;
		if (r == 0) {
			*out = TAKE_PTR(rs);
			return 0;
		}
		if (rs)
			jail_destroy(TAKE_PTR(rs));
		return log_error_errno(r, "Sandbox '%s' started but vanished: %m", spec->id);
	}
	if (r == -ETIMEDOUT) {
		/* The shim is stuck: kill it (its sandbox follows through PDEATHSIG). */
		if (sandbox_open(spec->run_dir, &rs) == 0 && rs->shim_pidfd >= 0)
			syscall(SYS_pidfd_send_signal, rs->shim_pidfd, SIGKILL, NULL, 0);
		log_error("Sandbox '%s' did not start within %u ms", spec->id, timeout);
		return -ETIMEDOUT;
	}
	_cleanup_free_ char *tail = report[0] ? NULL : log_tail(spec->run_dir);
	log_error("Failed to start sandbox '%s': %s", spec->id,
		  report[0] ? report
		  : tail    ? tail
			    : "the shim exited without a report");
	return -EIO;
}

static int jail_attach(const char *run_dir, struct runtime_sandbox **out)
{
	return sandbox_open(run_dir, out);
}

static int jail_destroy(struct runtime_sandbox *rs)
{
	if (!rs)
		return 0;
	const struct sandbox_spec *spec = &rs->js->spec;
	if (rs->shim_pidfd >= 0) {
		syscall(SYS_pidfd_send_signal, rs->shim_pidfd, SIGTERM, NULL, 0);
		if (!pidfd_exited(rs->shim_pidfd, JAIL_DESTROY_WAIT_MS)) {
			log_warn("Shim of sandbox '%s' did not stop: killing it", spec->id);
			syscall(SYS_pidfd_send_signal, rs->shim_pidfd, SIGKILL, NULL, 0);
			pidfd_exited(rs->shim_pidfd, 2000);
		}
	}
	if (rs->init_pidfd >= 0) {
		syscall(SYS_pidfd_send_signal, rs->init_pidfd, SIGKILL, NULL, 0);
		pidfd_exited(rs->init_pidfd, 2000);
	}
	/* Whatever the shim could not finish: processes and cgroup directories; its mounts
	 * lived in its own mount namespace and are gone with it. */
	int r = jail_cgroup_destroy(&rs->cg);
	if (r < 0)
		log_warn_errno(r, "Failed to remove the cgroup of sandbox '%s': %m", spec->id);
	int q = rm_rf_at(AT_FDCWD, spec->run_dir);
	if (q < 0)
		log_warn_errno(q, "Failed to remove '%s': %m", spec->run_dir);
	sandbox_free(rs);
	return r < 0 ? r : q;
}

static void jail_release(struct runtime_sandbox *rs)
{
	sandbox_free(rs);
}

static int jail_stats(struct runtime_sandbox *rs, struct sandbox_stats *st)
{
	*st = (struct sandbox_stats){ .cpu_count = rs->js->spec.cpu_count };
	int r = jail_cgroup_stats(&rs->cg, st);
	if (r < 0)
		return r;
	if (!st->cpu_count)
		st->cpu_count = rs->js->spec.cpu_count;
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "/proc/%d/root", (int)rs->shim_pid);
	if (jail_disk_usage(prefix, &rs->js->spec, &st->disk_used, &st->disk_total) < 0)
		st->disk_used = st->disk_total = 0;
	if (!st->disk_total)
		st->disk_total = (uint64_t)rs->js->spec.disk_mb << 20;
	return 0;
}

static bool jail_alive(struct runtime_sandbox *rs)
{
	/* A shim that was told to stop (by a daemon that then crashed) is ending the sandbox. */
	return rs && rs->init_pidfd >= 0 && !pidfd_exited(rs->init_pidfd, 0) &&
	       faccessat(rs->run_dirfd, JAIL_STOP_FILE, F_OK, AT_SYMLINK_NOFOLLOW) < 0;
}

const struct runtime_ops jail_runtime_ops = {
	.name = "jail",
	.start = jail_start,
	.attach = jail_attach,
	.destroy = jail_destroy,
	.release = jail_release,
	.stats = jail_stats,
	.alive = jail_alive,
	.shutdown = jail_diskpool_free,
	.sweep = jail_sweep,
};
