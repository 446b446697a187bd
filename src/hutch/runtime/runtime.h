/*
 * Sandbox runtimes behind one ops table: the namespace jail now, KVM microVMs later. Callers
 * (orchestr/) never branch on the driver's kind.
 *
 * Process model: start() spawns one supervisor ("shim": `hutch-shim shim RUN_DIR`) per sandbox, in
 * its own session, so the daemon can exit or crash without taking sandboxes with it. The shim
 * owns the sandbox's mounts, cgroup and init process, and cleans them up when the sandbox ends.
 * RUN_DIR holds everything needed to find the sandbox again (spec.json, shim.pid, state files).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SANDBOX_UID_COUNT 65536u

struct sandbox_spec {
	const char *id;
	const char *run_dir; /* DATA/sandboxes/<id>, created by the caller, owned by the driver */
	const char *const *layers; /* read-only template layers, lowest first, NULL-terminated */
	const char *netns_path;	   /* the network namespace to join (bind mount from net/) */
	uint32_t uid_base;	   /* host uid/gid that is root inside; SANDBOX_UID_COUNT ids */
	unsigned cpu_count;	   /* cgroup cpu quota, in CPUs */
	unsigned memory_mb;	   /* cgroup memory limit */
	unsigned disk_mb;	   /* size limit of the writable upper layer */
	unsigned pids_max;	   /* cgroup pids limit of the processes envd starts */
	unsigned pids_reserve;	   /* pids for envd and init beyond pids_max (their own) */
	const char *hostname;
	const char *envd_bundle; /* host directory of build/envd-bundle (envd + loader + libs) */
	const char *init_path;	 /* host path of the static hutch-init */
	const char *envd_config; /* JSON for envd --config: accessToken, envVars, defaultUser... */
	unsigned start_timeout_ms; /* how long start() waits for envd to listen */
	/* Optional (NULL/0/false = default): */
	const char *resolv_conf;   /* text of /etc/resolv.conf inside (NULL: left as in the root) */
	const char *shim_path;	   /* runs as `SHIM shim RUN_DIR` (NULL: /proc/self/exe) */
	const char *cgroup_parent; /* cgroup directory under each hierarchy (NULL: "hutch") */
	bool allow_setuid;  /* leave no_new_privs off so setuid binaries (sudo) work inside */
	unsigned disk_pool; /* daemon: keep this many disks of disk_mb made ahead (see shutdown) */
	/* A host directory for upper/ and work/ instead of RUN_DIR (needs disk_mb 0): a template
	 * build keeps what a step wrote there after destroy(). Owned by uid_base while in use. */
	const char *upper_dir;
};

struct sandbox_stats {
	uint64_t cpu_usage_usec; /* cumulative */
	unsigned cpu_count;
	uint64_t mem_used, mem_total, mem_cache; /* bytes */
	uint64_t disk_used, disk_total;		 /* bytes, of the upper layer */
};

struct runtime_sandbox; /* the driver's handle */

struct runtime_ops {
	const char *name;
	/* Starts a sandbox and returns once envd inside accepts connections on :49983. */
	int (*start)(const struct sandbox_spec *spec, struct runtime_sandbox **out);
	/* Finds a sandbox started earlier (by this or a previous daemon) from its RUN_DIR. */
	int (*attach)(const char *run_dir, struct runtime_sandbox **out);
	/* Kills everything inside, removes mounts, cgroup and RUN_DIR, frees rs. Idempotent
	 * with respect to what is already gone. */
	int (*destroy)(struct runtime_sandbox *rs);
	/* Frees the handle without touching the sandbox (daemon shutdown without killing). */
	void (*release)(struct runtime_sandbox *rs);
	int (*stats)(struct runtime_sandbox *rs, struct sandbox_stats *out);
	/* true while the sandbox's init is alive and its supervisor is not stopping it. */
	bool (*alive)(struct runtime_sandbox *rs);
	/* Destroys what the driver keeps made ahead for later starts (daemon shutdown). */
	void (*shutdown)(void);
	/* After a daemon restart, once every sandbox worth keeping is attached: removes what an
	 * earlier daemon left that no kept sandbox accounts for: supervisors still running on a
	 * RUN_DIR under run_root, RUN_DIRs, cgroups under cgroup_parent, disks made ahead. keep:
	 * ids of the attached sandboxes (n of them). Returns how many sandboxes it removed. */
	int (*sweep)(const char *run_root, const char *cgroup_parent, const char *const *keep,
		     size_t n);
};

extern const struct runtime_ops jail_runtime_ops;

/* `hutch shim RUN_DIR`: the supervisor's main (runtime/jail/shim.c). */
int jail_shim_main(int argc, char **argv);
