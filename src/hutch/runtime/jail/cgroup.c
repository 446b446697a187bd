/*
 * One cgroup per sandbox: memory (limit, no swap beyond it), cpu (CFS quota of cpu_count CPUs),
 * pids. cgroup v2 when /sys/fs/cgroup is the unified hierarchy; otherwise the v1 controllers
 * (a hybrid host's /sys/fs/cgroup/unified carries no controllers and is ignored).
 *
 * pids are split so that a process flood cannot starve envd: the sandbox's cgroup allows
 * pids_max + pids_reserve, and its child "user" (where envd puts every process it starts)
 * pids_max. init and envd stay outside "user" (v1: in the sandbox's pids cgroup itself; v2: in
 * the leaf "envd", as v2 keeps processes in leaves), so the reserve is theirs: threads for new
 * connections and the fork of each process envd starts. Memory and CPU stay shared.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include "jail.h"
#include "common/macro.h"
#include "common/util.h"

#define CGROUP_ROOT	  "/sys/fs/cgroup"
#define CPU_PERIOD_USEC	  100000u
#define CGROUP_KILL_TRIES 200
#define CGROUP_USER	  "user"
#define CGROUP_ENVD	  "envd" /* v2 only */

static const char *const v1_controllers[] = { "memory", "cpu", "cpuacct", "pids" };
enum { V1_MEMORY, V1_CPU, V1_CPUACCT, V1_PIDS };

static bool cgroup_is_v2(void)
{
	struct statfs sf;
	return statfs(CGROUP_ROOT, &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC;
}

int jail_cgroup_init(struct jail_cgroup *cg, const char *parent, const char *id)
{
	*cg = (struct jail_cgroup){ .v2 = cgroup_is_v2() };
	if (isempty(parent))
		parent = JAIL_DEFAULT_CGROUP;
	if (strstr(parent, "..") || strchr(id, '/') || streq(id, "..") || streq(id, "."))
		return -EINVAL;
	if (cg->v2) {
		cg->n = 1;
		if (asprintf(&cg->dirs[0], CGROUP_ROOT "/%s/%s", parent, id) < 0 ||
		    asprintf(&cg->user, "%s/" CGROUP_USER, cg->dirs[0]) < 0 ||
		    asprintf(&cg->envd, "%s/" CGROUP_ENVD, cg->dirs[0]) < 0)
			return -ENOMEM;
		return 0;
	}
	for (unsigned i = 0; i < ELEMENTSOF(v1_controllers); i++) {
		if (asprintf(&cg->dirs[i], CGROUP_ROOT "/%s/%s/%s", v1_controllers[i], parent, id) <
		    0)
			return -ENOMEM;
		cg->n++;
	}
	return asprintf(&cg->user, "%s/" CGROUP_USER, cg->dirs[V1_PIDS]) < 0 ? -ENOMEM : 0;
}

void jail_cgroup_done(struct jail_cgroup *cg)
{
	for (unsigned i = 0; i < cg->n; i++)
		cg->dirs[i] = (free(cg->dirs[i]), NULL);
	cg->n = 0;
	cg->user = (free(cg->user), NULL);
	cg->envd = (free(cg->envd), NULL);
}

static int write_at(const char *dir, const char *file, const char *value)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, value, strlen(value)) < 0)
		return -errno;
	return 0;
}

static int read_at(const char *dir, const char *file, char *buf, size_t size)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, size - 1);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	return (int)n;
}

static int mkdir_parents(const char *dir)
{
	char tmp[512];
	snprintf(tmp, sizeof(tmp), "%s", dir);
	for (char *p = tmp + strlen(CGROUP_ROOT) + 1; (p = strchr(p, '/')); p++) {
		*p = 0;
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0755) < 0)
		return -errno; /* EEXIST too: a leftover of a sandbox with the same id */
	return 0;
}

/* v2: controllers must be enabled in every ancestor's subtree_control. */
static int v2_enable_controllers(const char *dir)
{
	char tmp[512];
	snprintf(tmp, sizeof(tmp), "%s", dir);
	char *last = strrchr(tmp, '/');
	for (char *p = tmp + strlen(CGROUP_ROOT); p && p <= last; p = strchr(p + 1, '/')) {
		char save = *p;
		*p = 0;
		int r = write_at(tmp, "cgroup.subtree_control", "+memory +cpu +pids");
		*p = save;
		if (r < 0)
			return r;
	}
	return 0;
}

static int write_uint(const char *dir, const char *file, uint64_t v)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	return write_at(dir, file, buf);
}

/* The pids split (see the top): the sandbox gets limit + reserve, "user" the limit. */
static int create_pids(struct jail_cgroup *cg, const char *dir, const struct sandbox_spec *spec)
{
	int r;
	if (mkdir(cg->user, 0755) < 0)
		return -errno;
	if (!spec->pids_max)
		return 0;
	if ((r = write_uint(dir, "pids.max", (uint64_t)spec->pids_max + spec->pids_reserve)) < 0)
		return r;
	return write_uint(cg->user, "pids.max", spec->pids_max);
}

int jail_cgroup_create(struct jail_cgroup *cg, const struct sandbox_spec *spec)
{
	char buf[64];
	int r;
	for (unsigned i = 0; i < cg->n; i++)
		if ((r = mkdir_parents(cg->dirs[i])) < 0)
			return r;
	uint64_t mem = (uint64_t)spec->memory_mb << 20;
	uint64_t quota = (uint64_t)spec->cpu_count * CPU_PERIOD_USEC;
	if (cg->v2) {
		const char *d = cg->dirs[0];
		if ((r = v2_enable_controllers(d)) < 0)
			return r;
		if (spec->memory_mb) {
			if ((r = write_uint(d, "memory.max", mem)) < 0)
				return r;
			write_at(d, "memory.swap.max", "0"); /* absent without swap accounting */
		}
		if (spec->cpu_count) {
			snprintf(buf, sizeof(buf), "%" PRIu64 " %u", quota, CPU_PERIOD_USEC);
			if ((r = write_at(d, "cpu.max", buf)) < 0)
				return r;
		}
		/* Processes live in leaves only: init and envd in "envd", the rest in "user";
		 * only pids is enabled below the sandbox (memory and CPU are shared). */
		if (mkdir(cg->envd, 0755) < 0)
			return -errno;
		if ((r = write_at(d, "cgroup.subtree_control", "+pids")) < 0)
			return r;
		return create_pids(cg, d, spec);
	}
	if (spec->memory_mb) {
		snprintf(buf, sizeof(buf), "%" PRIu64, mem);
		if ((r = write_at(cg->dirs[V1_MEMORY], "memory.limit_in_bytes", buf)) < 0)
			return r;
		/* memory+swap = memory: no swap beyond the limit (absent without swapaccount) */
		write_at(cg->dirs[V1_MEMORY], "memory.memsw.limit_in_bytes", buf);
		write_at(cg->dirs[V1_MEMORY], "memory.swappiness", "0");
	}
	if (spec->cpu_count) {
		if ((r = write_uint(cg->dirs[V1_CPU], "cpu.cfs_period_us", CPU_PERIOD_USEC)) < 0 ||
		    (r = write_uint(cg->dirs[V1_CPU], "cpu.cfs_quota_us", quota)) < 0)
			return r;
	}
	return create_pids(cg, cg->dirs[V1_PIDS], spec);
}

int jail_cgroup_attach(struct jail_cgroup *cg, pid_t pid)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%d", (int)pid);
	for (unsigned i = 0; i < cg->n; i++) {
		int r = write_at(cg->v2 ? cg->envd : cg->dirs[i], "cgroup.procs", buf);
		if (r < 0)
			return r;
	}
	return 0;
}

int jail_cgroup_open_tasks(const struct jail_cgroup *cg, int *fds)
{
	if (cg->v2)
		return 0;
	for (unsigned i = 0; i < cg->n; i++) {
		char path[512];
		snprintf(path, sizeof(path), "%s/tasks", cg->dirs[i]);
		fds[i] = open(path, O_WRONLY | O_CLOEXEC);
		if (fds[i] < 0) {
			int r = -errno;
			while (i > 0)
				close(fds[--i]);
			return r;
		}
	}
	return (int)cg->n;
}

int jail_cgroup_open_user(const struct jail_cgroup *cg)
{
	char path[512];
	/* v1: "tasks", so that writing "0" moves the caller without the threadgroup lock. */
	snprintf(path, sizeof(path), "%s/%s", cg->user, cg->v2 ? "cgroup.procs" : "tasks");
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int jail_cgroup_join_self(const int *fds, unsigned n)
{
	/* "0" in tasks moves the calling thread only, which skips the global threadgroup lock
	 * (and the RCU grace period a pid in cgroup.procs waits for, per hierarchy). The
	 * caller is single-threaded: its thread is its process. */
	for (unsigned i = 0; i < n; i++)
		if (write(fds[i], "0", 1) < 0)
			return -errno;
	return 0;
}

/* SIGKILLs every pid listed; returns how many were listed (0: empty or gone). */
static int kill_listed(const char *dir)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	int n = 0, pid;
	while (fscanf(f, "%d", &pid) == 1) {
		kill(pid, SIGKILL);
		n++;
	}
	return n;
}

/* Removes one cgroup directory, killing what is left in it until it can. */
static int remove_dir(const char *d)
{
	for (int t = 0; t < CGROUP_KILL_TRIES; t++) {
		if (rmdir(d) == 0 || errno == ENOENT)
			return 0;
		if (errno != EBUSY)
			return -errno;
		kill_listed(d);
		usleep(1000 * (t < 10 ? 1 : 10));
	}
	return access(d, F_OK) == 0 ? -EBUSY : 0;
}

int jail_cgroup_destroy(struct jail_cgroup *cg)
{
	int r = 0, k;
	if (cg->v2 && cg->n)
		write_at(cg->dirs[0], "cgroup.kill", "1"); /* the whole subtree */
	/* Children first: a directory with children is busy. */
	const char *children[] = { cg->user, cg->envd };
	for (unsigned i = 0; i < ELEMENTSOF(children); i++)
		if (children[i] && (k = remove_dir(children[i])) < 0 && r == 0)
			r = k;
	for (unsigned i = 0; i < cg->n; i++)
		if ((k = remove_dir(cg->dirs[i])) < 0 && r == 0)
			r = k;
	return r;
}

static uint64_t stat_field(const char *text, const char *key)
{
	size_t kl = strlen(key);
	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, key, kl) == 0 && p[kl] == ' ')
			return strtoull(p + kl + 1, NULL, 10);
	return 0;
}

static uint64_t read_u64(const char *dir, const char *file)
{
	char buf[64];
	if (read_at(dir, file, buf, sizeof(buf)) <= 0)
		return 0;
	return strtoull(buf, NULL, 10);
}

int jail_cgroup_stats(struct jail_cgroup *cg, struct sandbox_stats *st)
{
	char buf[8192];
	if (cg->v2) {
		const char *d = cg->dirs[0];
		if (read_at(d, "cpu.stat", buf, sizeof(buf)) < 0)
			return -ENOENT;
		st->cpu_usage_usec = stat_field(buf, "usage_usec");
		st->mem_used = read_u64(d, "memory.current");
		st->mem_total = read_u64(d, "memory.max"); /* "max" reads as 0 */
		if (read_at(d, "memory.stat", buf, sizeof(buf)) > 0)
			st->mem_cache = stat_field(buf, "file");
		if (read_at(d, "cpu.max", buf, sizeof(buf)) > 0 && !startswith(buf, "max"))
			st->cpu_count = (unsigned)(strtoull(buf, NULL, 10) / CPU_PERIOD_USEC);
		return 0;
	}
	if (read_at(cg->dirs[V1_CPUACCT], "cpuacct.usage", buf, sizeof(buf)) < 0)
		return -ENOENT;
	st->cpu_usage_usec = strtoull(buf, NULL, 10) / 1000;
	st->mem_used = read_u64(cg->dirs[V1_MEMORY], "memory.usage_in_bytes");
	st->mem_total = read_u64(cg->dirs[V1_MEMORY], "memory.limit_in_bytes");
	if (read_at(cg->dirs[V1_MEMORY], "memory.stat", buf, sizeof(buf)) > 0)
		st->mem_cache = stat_field(buf, "cache");
	long long q = (long long)read_u64(cg->dirs[V1_CPU], "cpu.cfs_quota_us");
	if (read_at(cg->dirs[V1_CPU], "cpu.cfs_quota_us", buf, sizeof(buf)) > 0 && buf[0] != '-')
		st->cpu_count = (unsigned)(q / CPU_PERIOD_USEC);
	return 0;
}

int jail_cgroup_read(struct jail_cgroup *cg, bool user, const char *file, char **out)
{
	char buf[4096];
	for (unsigned i = 0; i < cg->n; i++) {
		if (read_at(user ? cg->user : cg->dirs[i], file, buf, sizeof(buf)) >= 0) {
			buf[strcspn(buf, "\n")] = 0;
			return (*out = strdup(buf)) ? 0 : -ENOMEM;
		}
	}
	return -ENOENT;
}
