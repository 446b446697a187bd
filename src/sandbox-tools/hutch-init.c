/*
 * hutch-init: pid 1 of a jail sandbox (static; needs nothing from the root filesystem).
 *
 * Starts envd from the bundle at /.hutch/envd and restarts it with backoff when it dies, reaps
 * every orphan of the pid namespace, and on SIGTERM/SIGINT forwards the signal to all
 * processes, waits a short grace period, then exits (the kernel kills what is left of the
 * namespace). envd is the only child init starts; everything else descends from envd.
 *
 * The shim leaves one fd open across exec (its number in HUTCH_USER_CGROUP_FD): the file that
 * moves a process into the sandbox's "user" cgroup. init keeps it for every envd it starts
 * (--user-cgroup-fd), so the processes envd starts count against the user's pids limit and
 * init and envd keep a reserve of their own.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#define ENVD_DIR    "/.hutch/envd"
#define ENVD_CONFIG "/.hutch/envd.json"
#define GRACE_MS    2000
#define BACKOFF_MIN 10
#define BACKOFF_MAX 5000
#define STABLE_MS   10000 /* an envd that ran this long resets the backoff */
/* envd is never the OOM killer's choice (a memory hog must not take the sandbox's agent with
 * it); envd puts the processes it starts back at 100, as E2B's envd does. */
#define ENVD_OOM_ADJ	   "-1000"
#define USER_CGROUP_FD_ENV "HUTCH_USER_CGROUP_FD"

/* The fd number the shim passed, as text for envd's argv; NULL when absent or not open. */
static const char *user_cgroup_fd(void)
{
	const char *v = getenv(USER_CGROUP_FD_ENV);
	if (!v || !*v || strspn(v, "0123456789") != strlen(v) || strlen(v) > 6)
		return NULL;
	int fd = atoi(v);
	return fd > 2 && fcntl(fd, F_GETFD) >= 0 ? v : NULL;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void say(const char *msg)
{
	char buf[256];
	int n = snprintf(buf, sizeof(buf), "hutch-init: %s\n", msg);
	if (n > 0)
		(void)!write(2, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

static pid_t start_envd(const sigset_t *orig, const char *cgroup_fd)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	sigprocmask(SIG_SETMASK, orig, NULL);
	setsid();
	int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		(void)!write(fd, ENVD_OOM_ADJ, strlen(ENVD_OOM_ADJ));
		close(fd);
	}
	char *const argv[] = { ENVD_DIR "/lib/ld.so",
			       "--library-path",
			       ENVD_DIR "/lib",
			       ENVD_DIR "/envd",
			       "--listen",
			       "0.0.0.0:49983",
			       "--config",
			       ENVD_CONFIG,
			       cgroup_fd ? "--user-cgroup-fd" : NULL,
			       (char *)cgroup_fd,
			       NULL };
	char *const envp[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			       "HOME=/root", NULL };
	(void)!chdir("/");
	execve(argv[0], argv, envp);
	say("cannot exec envd");
	_exit(127);
}

int main(void)
{
	if (getpid() != 1)
		say("not pid 1: orphans of the sandbox will not be reaped here");
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	sigset_t set, orig;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, &orig);
	int sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (sfd < 0) {
		say("signalfd failed");
		return 1;
	}

	const char *cgroup_fd = user_cgroup_fd();
	if (!cgroup_fd)
		say("no user cgroup fd: envd's processes share its pids");
	unsigned backoff = BACKOFF_MIN;
	uint64_t envd_started = now_ms(), restart_at = 0, stop_at = 0;
	pid_t envd = start_envd(&orig, cgroup_fd);
	for (;;) {
		if (envd < 0) { /* fork failed (pids limit?): try again later */
			envd = 0;
			restart_at = now_ms() + backoff;
		}
		int timeout = -1;
		uint64_t now = now_ms();
		uint64_t next = stop_at ? stop_at : restart_at;
		if (next)
			timeout = next > now ? (int)(next - now) : 0;
		struct pollfd p = { .fd = sfd, .events = POLLIN };
		int n = poll(&p, 1, timeout);
		if (n < 0 && errno != EINTR)
			return 1;
		if (n > 0) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo != SIGCHLD &&
			    !stop_at) {
				/* Every process of the namespace gets it, not only envd. */
				kill(-1, (int)si.ssi_signo == SIGHUP ? SIGTERM : (int)si.ssi_signo);
				stop_at = now_ms() + GRACE_MS;
			}
		}
		pid_t pid;
		int status;
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			if (pid != envd)
				continue;
			envd = 0;
			if (stop_at)
				continue;
			if (now_ms() - envd_started > STABLE_MS)
				backoff = BACKOFF_MIN;
			say(WIFSIGNALED(status) ? "envd killed by a signal; restarting"
						: "envd exited; restarting");
			restart_at = now_ms() + backoff;
			backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
		}
		now = now_ms();
		if (stop_at && (now >= stop_at || pid < 0))
			return 0; /* pid < 0 (ECHILD): everyone is gone already */
		if (!stop_at && !envd && restart_at && now >= restart_at) {
			restart_at = 0;
			envd_started = now;
			envd = start_envd(&orig, cgroup_fd);
		}
	}
}
