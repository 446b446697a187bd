/*
 * What a daemon that crashed (or was killed) leaves behind, found without its memory: shims are
 * recognised by their command line (`EXE shim RUN_ROOT/ID`), RUN_DIRs by their place, cgroups by
 * their parent. Whatever belongs to a sandbox the new daemon did not attach is removed: the shim
 * is killed (its sandbox's init follows through PDEATHSIG, and the mounts it made lived in its
 * own mount namespace), then its cgroup and its RUN_DIR go.
 */
#include <dirent.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include "jail.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/util.h"

#define SWEEP_KILL_WAIT_MS 3000
#define DISK_POOL_DIR	   ".hutch-disk-pool"

static bool has_suffix(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && streq(s + a - b, suffix);
}

static bool kept(const char *id, const char *const *keep, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (streq(id, keep[i]))
			return true;
	return false;
}

/* The sandbox id of a shim on a RUN_DIR under run_root ("" when pid is something else). */
static void shim_of(pid_t pid, const char *run_root, char *id, size_t size)
{
	char path[64], buf[4096];
	id[0] = 0;
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (n <= 0)
		return;
	buf[n] = 0;
	/* argv: EXE shim RUN_DIR, NUL-separated */
	const char *end = buf + n, *a1 = buf + strlen(buf) + 1;
	if (a1 >= end || !streq(a1, "shim"))
		return;
	const char *a2 = a1 + strlen(a1) + 1;
	size_t rl = strlen(run_root);
	if (a2 >= end || strncmp(a2, run_root, rl) != 0 || a2[rl] != '/')
		return;
	const char *name = a2 + rl + 1;
	if (isempty(name) || strchr(name, '/') || name[0] == '.' || strlen(name) >= size)
		return;
	snprintf(id, size, "%s", name);
}

static bool wait_pidfd(int pidfd, int timeout_ms)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };
	int n;
	while ((n = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
		;
	return n > 0;
}

/* Kills every shim running on a RUN_DIR under run_root whose id is not kept. */
static unsigned kill_stray_shims(const char *run_root, const char *const *keep, size_t n)
{
	_cleanup_closedir_ DIR *d = opendir("/proc");
	struct dirent *de;
	unsigned killed = 0;
	pid_t self = getpid();
	while (d && (de = readdir(d))) {
		uint64_t pid;
		char id[128];
		if (parse_u64(de->d_name, &pid) < 0 || pid == (uint64_t)self || pid > INT32_MAX)
			continue;
		shim_of((pid_t)pid, run_root, id, sizeof(id));
		if (!id[0] || kept(id, keep, n))
			continue;
		_cleanup_close_ int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
		if (pidfd < 0)
			continue;
		/* Still the same process after pidfd_open: the signal cannot hit a recycled pid. */
		char again[128];
		shim_of((pid_t)pid, run_root, again, sizeof(again));
		if (!streq(again, id))
			continue;
		log_info("Killing the supervisor (pid %d) of sandbox %s left by a previous run",
			 (int)pid, id);
		syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
		if (!wait_pidfd(pidfd, SWEEP_KILL_WAIT_MS))
			log_warn("The supervisor (pid %d) of sandbox %s did not die", (int)pid, id);
		killed++;
	}
	return killed;
}

static void destroy_cgroup(const char *parent, const char *id)
{
	struct jail_cgroup cg;
	int r = jail_cgroup_init(&cg, parent, id);
	if (r == 0 && (r = jail_cgroup_destroy(&cg)) < 0)
		log_warn_errno(r, "Failed to remove the cgroup of sandbox %s: %m", id);
	jail_cgroup_done(&cg);
}

/* RUN_DIRs of sandboxes not kept, and the disks a crashed daemon was making ahead. */
static unsigned sweep_run_dirs(const char *run_root, const char *parent, const char *const *keep,
			       size_t n)
{
	_cleanup_close_ int dirfd = open(run_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	_cleanup_closedir_ DIR *d = dirfd >= 0 ? fdopendir(dup(dirfd)) : NULL;
	struct dirent *de;
	unsigned removed = 0;
	while (d && (de = readdir(d))) {
		const char *name = de->d_name;
		if (streq(name, ".") || streq(name, ".."))
			continue;
		if (streq(name, DISK_POOL_DIR) ||
		    (startswith(name, ".hutch-disk-") && has_suffix(name, ".tmp"))) {
			/* The pool's mounts and loop devices went with the dead daemon's fds. */
			rm_rf_at(dirfd, name);
			continue;
		}
		if (name[0] == '.' || kept(name, keep, n))
			continue;
		log_info("Removing sandbox %s left by a previous run", name);
		destroy_cgroup(parent, name);
		int r = rm_rf_at(dirfd, name);
		if (r < 0)
			log_warn_errno(r, "Failed to remove %s/%s: %m", run_root, name);
		removed++;
	}
	return removed;
}

/* Cgroups under the parent (in every hierarchy) that no kept sandbox owns. */
static void sweep_cgroups(const char *parent, const char *const *keep, size_t n)
{
	struct jail_cgroup probe;
	if (jail_cgroup_init(&probe, parent, "probe") < 0) {
		jail_cgroup_done(&probe);
		return;
	}
	for (unsigned i = 0; i < probe.n; i++) {
		_cleanup_closedir_ DIR *d = opendir(dirname(probe.dirs[i]));
		struct dirent *de;
		while (d && (de = readdir(d))) {
			if (de->d_type != DT_DIR || de->d_name[0] == '.' ||
			    kept(de->d_name, keep, n))
				continue;
			destroy_cgroup(parent, de->d_name);
		}
	}
	jail_cgroup_done(&probe);
}

int jail_sweep(const char *run_root, const char *cgroup_parent, const char *const *keep, size_t n)
{
	if (isempty(run_root))
		return -EINVAL;
	unsigned killed = kill_stray_shims(run_root, keep, n);
	unsigned removed = sweep_run_dirs(run_root, cgroup_parent, keep, n);
	sweep_cgroups(cgroup_parent, keep, n);
	log_debug("sweep of %s: %u supervisors killed, %u run directories removed", run_root,
		  killed, removed);
	return (int)MAX(killed, removed);
}
