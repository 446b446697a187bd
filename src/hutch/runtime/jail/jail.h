/*
 * The namespace jail's private interface, shared by its files:
 *   jail.c     runtime_ops for the daemon: start (spawn the shim, wait for ready), attach,
 *              destroy, stats, alive
 *   shim.c     `hutch shim RUN_DIR`: the per-sandbox supervisor (namespaces, init, cleanup)
 *   mounts.c   the sandbox's root: idmapped layers, overlay, /proc, /sys, /dev, masks
 *   disk.c     the upper layer's size limit (a sparse ext4 image on a loop device)
 *   cgroup.c   per-sandbox cgroup, v1 and v2
 *   seccomp.c  the syscall allow-list (seccomp-allow.txt, embedded at build time)
 *   spec.c     sandbox_spec <-> RUN_DIR/spec.json, RUN_DIR helpers
 *   sweep.c    what a crashed daemon left: stray shims, RUN_DIRs, cgroups (runtime_ops.sweep)
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>
#include "runtime/runtime.h"

/* Files in RUN_DIR. */
#define JAIL_SPEC_FILE	"spec.json"
#define JAIL_SHIM_LOG	"shim.log"
#define JAIL_SHIM_PID	"shim.pid" /* "PID STARTTIME\n" of the shim */
#define JAIL_INIT_PID	"init.pid" /* "PID STARTTIME\n" of init (host pid) */
#define JAIL_EXIT_FILE	"exit"	   /* "CODE\n": init's wait status, written when it ends */
#define JAIL_STOP_FILE	"stopping" /* the shim is stopping the sandbox (signalled) */
#define JAIL_UPPER_DIR	"upper"
#define JAIL_WORK_DIR	"work"
#define JAIL_DISK_IMAGE "disk.img"
#define JAIL_DISK_DIR	"disk" /* mount point of disk.img inside the shim's mount namespace */
#define JAIL_ROOT_DIR	"rootfs"
#define JAIL_LOWER_DIR	"lower" /* lower/N: where the sandbox attaches layer N */
#define JAIL_SYS_DIR	"sys"

#define JAIL_ENVD_PORT	     49983
#define JAIL_DEFAULT_CGROUP  "hutch"
#define JAIL_NOTIFY_FD_ENV   "HUTCH_SHIM_NOTIFY_FD"
#define JAIL_DISK_FD_ENV     "HUTCH_SHIM_DISK_FD" /* a disk made ahead (jail_disk_make) */
#define JAIL_SHIM_LOG_MAX    (4u << 20)		  /* bytes of init/envd output kept in shim.log */
#define JAIL_STOP_GRACE_MS   3000		  /* SIGTERM → SIGKILL of init in the shim */
#define JAIL_DESTROY_WAIT_MS 5000		  /* destroy(): shim exit → SIGKILL */

/* In init's environment: the fd that moves a process into the sandbox's "user" cgroup. */
#define JAIL_USER_CGROUP_FD_ENV "HUTCH_USER_CGROUP_FD"

/* A spec read back from spec.json: `spec` points into `json`. */
struct jail_spec {
	struct sandbox_spec spec;
	json_t *json;
	const char **layers;
};

int jail_spec_write(const struct sandbox_spec *spec, const char *path);
int jail_spec_read(const char *path, struct jail_spec **out);
struct jail_spec *jail_spec_free(struct jail_spec *js);

/* "PID STARTTIME" files; starttime is field 22 of /proc/PID/stat (0 when the pid is gone). */
uint64_t jail_proc_starttime(pid_t pid);
int jail_pidfile_write(int dirfd, const char *name, pid_t pid);
int jail_pidfile_read(int dirfd, const char *name, pid_t *pid, uint64_t *starttime);
int jail_write_file_at(int dirfd, const char *name, const char *data, mode_t mode);

/* sweep.c */
int jail_sweep(const char *run_root, const char *cgroup_parent, const char *const *keep, size_t n);

/* Records "OP 'WHAT': strerror(errno)" as the sandbox's setup error (jail_errmsg) and returns
 * -errno; the shim reports it to start(). */
extern char jail_errmsg[512];
int jail_fail(const char *op, const char *what);

/* cgroup.c */
struct jail_cgroup {
	bool v2;
	char *dirs[4]; /* v1: memory, cpu, cpuacct, pids; v2: dirs[0] only */
	unsigned n;
	char *user; /* the child of the pids cgroup (v2: of dirs[0]) for processes envd starts */
	char *envd; /* v2: the leaf of init and envd (NULL on v1: they stay in dirs[]) */
};
int jail_cgroup_init(struct jail_cgroup *cg, const char *parent, const char *id);
void jail_cgroup_done(struct jail_cgroup *cg);
int jail_cgroup_create(struct jail_cgroup *cg, const struct sandbox_spec *spec);
int jail_cgroup_attach(struct jail_cgroup *cg, pid_t pid);
/* v1: opens each hierarchy's "tasks" file (fds[4], close-on-exec) for jail_cgroup_join_self in
 * a process whose credentials could no longer move itself; returns how many (0 on v2: use
 * jail_cgroup_attach). The caller closes them. */
int jail_cgroup_open_tasks(const struct jail_cgroup *cg, int *fds);
/* Opens the file through which a process moves itself into the "user" cgroup by writing "0"
 * (v1: its tasks, v2: its cgroup.procs), close-on-exec; returns the fd (the caller owns it).
 * Opened by host root: the kernel checks a write against the opener's credentials, so envd,
 * root in the sandbox's user namespace, can move the processes it starts (v1 and v2). */
int jail_cgroup_open_user(const struct jail_cgroup *cg);
/* Moves the calling single-threaded process into the cgroup through those fds: no RCU grace
 * period per hierarchy, unlike jail_cgroup_attach. */
int jail_cgroup_join_self(const int *fds, unsigned n);
/* Kills every process left in the cgroup and removes its directories (children first);
 * idempotent. */
int jail_cgroup_destroy(struct jail_cgroup *cg);
int jail_cgroup_stats(struct jail_cgroup *cg, struct sandbox_stats *st);
/* The value of one cgroup file (for tests), e.g. "memory.limit_in_bytes", of the sandbox's
 * cgroup or (user) of its "user" child; caller frees. */
int jail_cgroup_read(struct jail_cgroup *cg, bool user, const char *file, char **out);

/* disk.c: an ext4 image of disk_mb on a loop device, mounted at RUN_DIR/disk with upper/ and
 * work/ in it, owned by uid_base. With disk_mb == 0 upper/ and work/ are plain directories in
 * RUN_DIR. Returns O_PATH fds of upper and work. */
int jail_disk_setup(int run_dirfd, const char *run_dir, const struct sandbox_spec *spec,
		    int made_fd, int *upper_fd, int *work_fd);
/* made_fd above: a filesystem made ahead (-1: none), a detached mount from jail_disk_make:
 * disk_mb of formatted ext4 in the sparse file IMAGE (a copy of DIR's golden image for that
 * size) on a loop device. Returns the mount's fd (the caller owns it; closing it, once
 * unattached, frees the loop device) or -errno with IMAGE removed. */
int jail_disk_make(const char *dir, const char *image, unsigned mb);

/* diskpool.c (daemon): up to `keep` disks of the last asked size made ahead by a thread.
 * jail_diskpool_take renames one to RUN_DIR/disk.img and returns its mount fd (the caller
 * owns it), or -errno when none is ready (then the shim makes one). */
int jail_diskpool_take(const char *run_dir, unsigned mb, unsigned keep);
/* Stops the thread and destroys every disk not taken. */
void jail_diskpool_free(void);
int jail_disk_usage(const char *root_prefix, const struct sandbox_spec *spec, uint64_t *used,
		    uint64_t *total);

/* mounts.c */
/* Everything of the host the sandbox's root is made from, opened while the child is still host
 * root (as root inside it could no longer traverse RUN_DIR or the data directory). */
struct jail_root_fds {
	int *layers; /* detached idmapped trees, lowest first (attached at RUN_DIR/lower/N) */
	unsigned n_layers;
	int lower;	       /* RUN_DIR/lower (0711) */
	int upper, work, root; /* O_PATH directories */
	int sys;	       /* RUN_DIR/sys, the sysfs the shim mounted */
	int bundle, init;      /* spec->envd_bundle, spec->init_path */
};
/* In the shim (host root): idmapped copies of each layer for the sandbox's user namespace. */
int jail_idmap_layers(const struct sandbox_spec *spec, int userns_fd, int **fds);
/* In the sandbox (new user+mount namespace, before pivot_root): builds and enters the root. */
int jail_open_root_fds(const struct sandbox_spec *spec, const char *run_dir,
		       struct jail_root_fds *fds);
void jail_close_root_fds(struct jail_root_fds *fds);
int jail_build_root(const struct sandbox_spec *spec, const struct jail_root_fds *fds);

/* seccomp.c */
struct jail_seccomp_prog {
	void *filter; /* struct sock_filter[] */
	unsigned short len;
};
/* Builds the BPF program from the embedded allow-list (a few ms: done while waiting). */
int jail_seccomp_compile(struct jail_seccomp_prog *prog);
/* Installs it on the calling thread (and what it execs); needs no_new_privs or CAP_SYS_ADMIN. */
int jail_seccomp_install(const struct jail_seccomp_prog *prog);
/* Parses the embedded list without loading it; returns the number of rules (for tests). */
int jail_seccomp_check(char **err);

/* Keeps the capabilities fit for root in a container and drops every other. */
int jail_caps_drop(void);
