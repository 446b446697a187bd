/* Debian root filesystems with debootstrap (what FROM debian:<suite> in a template resolves to,
 * template/image.c), built once into a shared cache and reused by every build and daemon.
 *
 * Layout under <cache_dir>/templates/:
 *   <name>/              the finished layer (appears by an atomic rename)
 *   .<name>.tmp/         a build in progress (removed when found stale)
 *   <name>.lock          flock(2) serialising builders
 *   <name>.log           the last build's output
 *   debs/                debootstrap's .deb cache, reused across rebuilds
 */
#include <fcntl.h>
#include <signal.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "template.h"
#include "common/log.h"
#include "common/util.h"

#define ROOTFS_DEFAULT_CACHE_DIR "/var/cache/hutch"
#define ROOTFS_KEYRING		 "/usr/share/keyrings/debian-archive-keyring.gpg"
#define ROOTFS_LOG_TAIL_LINES	 25

static bool is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

extern char **environ;

/* A fixed environment for the build: nothing of the caller's leaks in but proxy settings.
 * The array is malloc'd; its strings are static or the caller's environ entries. */
static char **build_env(void)
{
	static const char *const fixed[] = {
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8",
		"LC_ALL=C.UTF-8",
		"HOME=/root",
		"DEBIAN_FRONTEND=noninteractive",
		"DEBCONF_NONINTERACTIVE_SEEN=true",
	};
	static const char *const passed[] = { "http_proxy=", "https_proxy=", "no_proxy=",
					      "HTTP_PROXY=", "HTTPS_PROXY=", "NO_PROXY=" };
	char **env = calloc(ELEMENTSOF(fixed) + ELEMENTSOF(passed) + 1, sizeof(char *));
	if (!env)
		return NULL;
	size_t n = 0;
	for (size_t i = 0; i < ELEMENTSOF(fixed); i++)
		env[n++] = (char *)fixed[i];
	for (size_t i = 0; i < ELEMENTSOF(passed); i++)
		for (char **e = environ; e && *e; e++)
			if (startswith(*e, passed[i])) {
				env[n++] = *e;
				break;
			}
	return env;
}

/* In the forked child: waits for the build step (pid 1 of its own pid namespace) and exits with
 * its status. When this process dies, the step is killed, and with it the whole namespace. */
static _Noreturn void run_child(char *const argv[], char *const env[], const char *root,
				int null_fd, int log_fd, pid_t parent)
{
	/* System calls only: the daemon may be multithreaded. */
	setpgid(0, 0);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(126);
	if (unshare(CLONE_NEWNS | CLONE_NEWPID) < 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		_exit(126);
	pid_t inner = fork();
	if (inner < 0)
		_exit(126);
	if (inner == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
			_exit(126);
		if (dup2(null_fd, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0)
			_exit(126);
		if (root && (chroot(root) < 0 || chdir("/") < 0))
			_exit(126);
		execve(argv[0], argv, env);
		_exit(127);
	}
	int status;
	while (waitpid(inner, &status, 0) < 0)
		if (errno != EINTR)
			_exit(126);
	_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

/*
 * Runs argv (absolute path) with the fixed environment, stdout and stderr into log_fd, chrooted
 * into root when root is set. The step runs as pid 1 of a new pid namespace with a private mount
 * namespace: nothing it starts outlives it (not even when we are killed mid-build), and the
 * mounts debootstrap makes in the target vanish with it. Returns 0 when it exits 0, else -EIO.
 */
static int run_logged(char *const argv[], const char *root, int log_fd)
{
	_cleanup_free_ char **env = build_env();
	if (!env)
		return -ENOMEM;
	_cleanup_close_ int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null_fd < 0)
		return -errno;
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0)
		run_child(argv, env, root, null_fd, log_fd, parent);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			int r = -errno;
			kill(-pid, SIGKILL);
			return r;
		}
	/* Nothing it started may outlive it and keep writing into the tree. */
	kill(-pid, SIGKILL);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	dprintf(log_fd, "hutch: %s %s %d%s\n", argv[0],
		WIFEXITED(status) ? "exited with" : "killed by signal",
		WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
		WIFEXITED(status) && WEXITSTATUS(status) == 126 ? " (or its namespaces failed)"
								: "");
	return -EIO;
}

static const char *find_debootstrap(void)
{
	static const char *const paths[] = { "/usr/sbin/debootstrap", "/sbin/debootstrap",
					     "/usr/bin/debootstrap" };
	for (size_t i = 0; i < ELEMENTSOF(paths); i++)
		if (access(paths[i], X_OK) == 0)
			return paths[i];
	return NULL;
}

/* Appends the file at path (debootstrap's own log inside the tree) to log_fd. */
static void append_file(int log_fd, const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	dprintf(log_fd, "hutch: ---- %s ----\n", path);
	char buf[8192];
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (write_all(log_fd, buf, (size_t)n) < 0)
			return;
}

/* Logs the last lines of the build log as the error's explanation. */
static void log_tail(const char *log_path, int r)
{
	_cleanup_close_ int fd = open(log_path, O_RDONLY | O_CLOEXEC);
	char buf[4096] = { 0 };
	if (fd >= 0) {
		off_t end = lseek(fd, 0, SEEK_END);
		off_t from = end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0;
		ssize_t n = pread(fd, buf, sizeof(buf) - 1, from);
		buf[n > 0 ? n : 0] = '\0';
	}
	const char *p = buf + strlen(buf);
	for (unsigned lines = 0; p > buf; p--)
		if (p[-1] == '\n' && ++lines > ROOTFS_LOG_TAIL_LINES)
			break;
	log_error_errno(r, "Building a Debian root filesystem failed (%m); the end of %s:\n%s",
			log_path, p);
}

static int rootfs_build(const struct rootfs_recipe *rc, const char *mirror, const char *tdir,
			const char *name, const char *layer)
{
	_cleanup_free_ char *tmp = NULL, *log_path = NULL, *debs = NULL, *include_arg = NULL,
			    *variant_arg = NULL, *cache_arg = NULL, *dlog = NULL;
	if (asprintf(&tmp, "%s/.%s.tmp", tdir, name) < 0 ||
	    asprintf(&log_path, "%s/%s.log", tdir, name) < 0 ||
	    asprintf(&debs, "%s/debs", tdir) < 0 ||
	    asprintf(&cache_arg, "--cache-dir=%s", debs) < 0 ||
	    asprintf(&include_arg, "--include=%s", rc->include ? rc->include : "") < 0 ||
	    asprintf(&variant_arg, "--variant=%s", rc->variant ? rc->variant : "minbase") < 0 ||
	    asprintf(&dlog, "%s/debootstrap/debootstrap.log", tmp) < 0)
		return -ENOMEM;

	const char *debootstrap = find_debootstrap();
	if (!debootstrap)
		return log_error_errno(-ENOENT, "debootstrap is not installed "
						"(apt-get install debootstrap)");
	if (access(ROOTFS_KEYRING, R_OK) < 0)
		return log_error_errno(-ENOENT,
				       "%s is missing (apt-get install "
				       "debian-archive-keyring gpgv)",
				       ROOTFS_KEYRING);

	/* We hold the lock: a leftover temp tree is an interrupted build. */
	int r = rm_rf_at(AT_FDCWD, tmp);
	if (r < 0)
		return log_error_errno(r, "Failed to remove the stale build in '%s': %m", tmp);
	if (mkdir(tmp, 0755) < 0 || (r = mkdir_p(debs, 0755)) < 0)
		return log_error_errno(r ?: -errno, "Failed to create '%s': %m", tmp);

	_cleanup_close_ int log_fd =
	    open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
	if (log_fd < 0) {
		r = -errno;
		rm_rf_at(AT_FDCWD, tmp);
		return log_error_errno(r, "Failed to open '%s': %m", log_path);
	}

	/* debootstrap refuses an empty --include=. */
	bool include = !isempty(rc->include);
	char *const argv[] = {
		(char *)debootstrap,
		variant_arg,
		(char *)"--components=main",
		(char *)"--keyring=" ROOTFS_KEYRING,
		cache_arg,
		include ? include_arg : (char *)rc->suite,
		include ? (char *)rc->suite : tmp,
		include ? tmp : (char *)mirror,
		include ? (char *)mirror : NULL,
		NULL,
	};
	dprintf(log_fd, "hutch: %s %s --components=main --keyring=%s %s %s %s %s %s\n", debootstrap,
		variant_arg, ROOTFS_KEYRING, cache_arg, include ? include_arg : "", rc->suite, tmp,
		mirror);
	r = run_logged(argv, NULL, log_fd);
	for (size_t i = 0; r == 0 && i < rc->n_run; i++) {
		char *const sh[] = { (char *)"/bin/sh", (char *)"-ec", (char *)rc->run[i], NULL };
		dprintf(log_fd, "hutch: RUN %s\n", rc->run[i]);
		r = run_logged(sh, tmp, log_fd);
	}
	if (r == 0) {
		/* Durable before it becomes visible: the rename is the commit. */
		_cleanup_close_ int fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 || syncfs(fd) < 0 || rename(tmp, layer) < 0)
			r = -errno;
		_cleanup_close_ int dfd = open(tdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (r == 0 && dfd >= 0)
			fsync(dfd);
		if (r == 0)
			return 0;
		dprintf(log_fd, "hutch: failed to commit the layer: %s\n", strerror(-r));
	}
	append_file(log_fd, dlog);
	int k = rm_rf_at(AT_FDCWD, tmp);
	if (k < 0)
		log_warn_errno(k, "Failed to remove the failed build in '%s': %m", tmp);
	log_tail(log_path, r);
	return r;
}

int template_rootfs_ensure(const struct rootfs_config *cfg, const struct rootfs_recipe *rc,
			   char **layer_out)
{
	const char *cache =
	    cfg && !isempty(cfg->cache_dir) ? cfg->cache_dir : ROOTFS_DEFAULT_CACHE_DIR;
	const char *name = rc->name;
	_cleanup_free_ char *tdir_raw = NULL, *tdir = NULL, *layer = NULL, *lock_path = NULL,
			    *mirror = NULL;
	int r;
	if (isempty(name) || strchr(name, '/') || name[0] == '.' || !rc->suite)
		return -EINVAL;
	if (asprintf(&tdir_raw, "%s/templates", cache) < 0)
		return -ENOMEM;
	/* The fast path: built before, by us or anyone sharing the cache. */
	tdir = realpath(tdir_raw, NULL);
	if (tdir && asprintf(&layer, "%s/%s", tdir, name) >= 0 && is_dir(layer)) {
		*layer_out = TAKE_PTR(layer);
		return 0;
	}
	free(TAKE_PTR(tdir));
	free(TAKE_PTR(layer));

	if ((r = mkdir_p(tdir_raw, 0755)) < 0)
		return log_error_errno(r, "Failed to create '%s': %m", tdir_raw);
	/* Absolute: debootstrap wants it, and the returned path must not depend on our cwd. */
	if (!(tdir = realpath(tdir_raw, NULL)))
		return log_error_errno(negative_errno(), "Failed to resolve '%s': %m", tdir_raw);
	if (asprintf(&layer, "%s/%s", tdir, name) < 0 ||
	    asprintf(&lock_path, "%s/%s.lock", tdir, name) < 0)
		return -ENOMEM;

	_cleanup_close_ int lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (lock_fd < 0)
		return log_error_errno(negative_errno(), "Failed to open '%s': %m", lock_path);
	if (flock(lock_fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK)
			return log_error_errno(negative_errno(), "Failed to lock '%s': %m",
					       lock_path);
		if (!cfg || !cfg->quiet)
			log_info("Waiting for another process building %s (%s)", rc->what,
				 lock_path);
		while (flock(lock_fd, LOCK_EX) < 0)
			if (errno != EINTR)
				return log_error_errno(negative_errno(), "Failed to lock '%s': %m",
						       lock_path);
	}
	if (is_dir(layer)) {
		*layer_out = TAKE_PTR(layer);
		return 0;
	}

	if (geteuid() != 0)
		return log_error_errno(-EPERM,
				       "Building %s needs root (debootstrap); %s is not built yet",
				       rc->what, layer);
	if (cfg && !isempty(cfg->mirror)) {
		if (!template_mirror_valid(cfg->mirror))
			return log_error_errno(-EINVAL, "Invalid Debian mirror '%s'", cfg->mirror);
		if (!(mirror = strdup(cfg->mirror)))
			return -ENOMEM;
	} else if ((r = template_apt_mirror("/", rc->suite, &mirror)) < 0)
		return log_error_errno(r,
				       "Found no Debian mirror for '%s' with component main in "
				       "/etc/apt/sources.list{,.d/}: %m",
				       rc->suite);

	uint64_t start = now_usec();
	if (!cfg || !cfg->quiet)
		log_info("Building %s (Debian %s from %s) into %s; this takes a few minutes",
			 rc->what, rc->suite, mirror, layer);
	if ((r = rootfs_build(rc, mirror, tdir, name, layer)) < 0)
		return r;
	if (!cfg || !cfg->quiet)
		log_info("Built %s in %.1f s: %s", rc->what, (double)(now_usec() - start) / 1e6,
			 layer);
	*layer_out = TAKE_PTR(layer);
	return 0;
}
