/*
 * The sandbox's root filesystem.
 *
 * In the shim (host root): each template layer is cloned as a detached mount and idmapped to the
 * sandbox's user namespace, so files owned by host root in the (shared, read-only) layer appear
 * owned by root inside. In the sandbox (its own user + mount namespace): those trees are attached
 * at RUN_DIR/lower/N (overlayfs takes layers only from the mounter's namespace) and stacked with
 * the private upper layer into an overlay (fsconfig by fd); pivot_root enters it; /proc, /sys,
 * /dev, the envd bundle and hutch-init are mounted and host-revealing paths masked.
 * Host paths are opened (jail_open_root_fds) while the child is still host root: as root of its
 * user namespace it could no longer traverse RUN_DIR.
 */
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include "jail.h"
#include "common/macro.h"
#include "common/util.h"

#define HUTCH_DIR "/.hutch"

int jail_idmap_layers(const struct sandbox_spec *spec, int userns_fd, int **out)
{
	unsigned n = 0;
	while (spec->layers[n])
		n++;
	int *fds = calloc(n, sizeof(int));
	if (!fds)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++)
		fds[i] = -1;
	int r = 0;
	for (unsigned i = 0; i < n; i++) {
		fds[i] = open_tree(AT_FDCWD, spec->layers[i], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
		if (fds[i] < 0) {
			r = jail_fail("open_tree", spec->layers[i]);
			break;
		}
		struct mount_attr attr = {
			.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV,
			.userns_fd = (uint64_t)userns_fd,
		};
		if (mount_setattr(fds[i], "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0) {
			r = jail_fail("mount_setattr(idmap)", spec->layers[i]);
			break;
		}
	}
	if (r < 0) {
		for (unsigned i = 0; i < n; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		free(fds);
		return r;
	}
	*out = fds;
	return (int)n;
}

/* overlayfs takes layers only from mounts of the mounter's namespace: attach each detached
 * idmapped tree (made by the shim) here first; its fd then names the attached mount. */
static int attach_layers(const struct jail_root_fds *fds)
{
	for (unsigned i = 0; i < fds->n_layers; i++) {
		char name[16];
		snprintf(name, sizeof(name), "%u", i);
		if (move_mount(fds->layers[i], "", fds->lower, name, MOVE_MOUNT_F_EMPTY_PATH) < 0)
			return jail_fail("move_mount", "layer");
	}
	return 0;
}

int jail_open_root_fds(const struct sandbox_spec *spec, const char *run_dir,
		       struct jail_root_fds *fds)
{
	char path[4200];
	const int flags = O_PATH | O_CLOEXEC;
	fds->lower = fds->upper = fds->work = fds->root = fds->sys = fds->bundle = fds->init = -1;
	if (spec->upper_dir)
		snprintf(path, sizeof(path), "%s", spec->upper_dir);
	else
		snprintf(path, sizeof(path), "%s%s", run_dir,
			 spec->disk_mb ? "/" JAIL_DISK_DIR : "");
	_cleanup_close_ int base = open(path, flags | O_DIRECTORY);
	if (base < 0)
		return jail_fail("open", path);
	fds->upper = openat(base, JAIL_UPPER_DIR, flags | O_DIRECTORY | O_NOFOLLOW);
	fds->work = openat(base, JAIL_WORK_DIR, flags | O_DIRECTORY | O_NOFOLLOW);
	if (fds->upper < 0 || fds->work < 0)
		return jail_fail("open the upper layer in", path);
	snprintf(path, sizeof(path), "%s/" JAIL_ROOT_DIR, run_dir);
	if ((fds->root = open(path, flags | O_DIRECTORY)) < 0)
		return jail_fail("open", path);
	snprintf(path, sizeof(path), "%s/" JAIL_LOWER_DIR, run_dir);
	if ((fds->lower = open(path, flags | O_DIRECTORY)) < 0)
		return jail_fail("open", path);
	snprintf(path, sizeof(path), "%s/" JAIL_SYS_DIR, run_dir);
	if ((fds->sys = open(path, flags | O_DIRECTORY)) < 0)
		return jail_fail("open", path);
	if ((fds->bundle = open(spec->envd_bundle, flags | O_DIRECTORY)) < 0)
		return jail_fail("open envd bundle", spec->envd_bundle);
	if ((fds->init = open(spec->init_path, flags)) < 0)
		return jail_fail("open hutch-init", spec->init_path);
	return 0;
}

void jail_close_root_fds(struct jail_root_fds *fds)
{
	int *all[] = { &fds->lower, &fds->upper,  &fds->work, &fds->root,
		       &fds->sys,   &fds->bundle, &fds->init };
	for (size_t i = 0; i < ELEMENTSOF(all); i++)
		if (*all[i] >= 0)
			*all[i] = (close(*all[i]), -1);
	for (unsigned i = 0; i < fds->n_layers; i++)
		if (fds->layers[i] >= 0)
			fds->layers[i] = (close(fds->layers[i]), -1);
}

/* A read-only copy of the mount at fd, attached at target. */
static int clone_ro(int fd, const char *target, bool recursive)
{
	_cleanup_close_ int t = open_tree(fd, "",
					  OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH |
					      (recursive ? AT_RECURSIVE : 0));
	if (t < 0)
		return jail_fail("open_tree", target);
	struct mount_attr attr = { .attr_set =
				       MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV };
	if (mount_setattr(t, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr,
			  sizeof(attr)) < 0)
		return jail_fail("mount_setattr", target);
	if (move_mount(t, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		return jail_fail("move_mount", target);
	return 0;
}

/* Returns the fd of the attached overlay mount. */
static int mount_overlay(const struct jail_root_fds *fds)
{
	_cleanup_close_ int fs = fsopen("overlay", FSOPEN_CLOEXEC);
	if (fs < 0)
		return jail_fail("fsopen", "overlay");
	if (fsconfig(fs, FSCONFIG_SET_STRING, "source", "hutch", 0) < 0)
		return jail_fail("fsconfig", "source");
	/* "lowerdir+" stacks downwards: the first one added is the top-most layer. */
	for (unsigned i = fds->n_layers; i-- > 0;)
		if (fsconfig(fs, FSCONFIG_SET_FD, "lowerdir+", NULL, fds->layers[i]) < 0)
			return jail_fail("fsconfig", "lowerdir+");
	if (fsconfig(fs, FSCONFIG_SET_FD, "upperdir", NULL, fds->upper) < 0)
		return jail_fail("fsconfig", "upperdir");
	if (fsconfig(fs, FSCONFIG_SET_FD, "workdir", NULL, fds->work) < 0)
		return jail_fail("fsconfig", "workdir");
	/* user.overlay.* xattrs: trusted.* cannot be written from a user namespace. */
	if (fsconfig(fs, FSCONFIG_SET_FLAG, "userxattr", NULL, 0) < 0)
		return jail_fail("fsconfig", "userxattr");
	if (fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		return jail_fail("fsconfig", "create overlay");
	_cleanup_close_ int mnt = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NODEV);
	if (mnt < 0)
		return jail_fail("fsmount", "overlay");
	if (move_mount(mnt, "", fds->root, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) <
	    0)
		return jail_fail("move_mount", "overlay");
	return TAKE_FD(mnt);
}

static int do_mount(const char *src, const char *dst, const char *type, unsigned long flags,
		    const char *data)
{
	if (mount(src, dst, type, flags, data) < 0)
		return jail_fail("mount", dst);
	return 0;
}

/* A read-only bind of src at dst (MS_RDONLY needs a second, remounting call for binds). */
static int bind_ro(const char *src, const char *dst, unsigned long extra)
{
	int r = do_mount(src, dst, NULL, MS_BIND | MS_REC, NULL);
	if (r < 0)
		return r;
	return do_mount(NULL, dst, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | extra, NULL);
}

static int make_dir(const char *path, mode_t mode)
{
	if (mkdir(path, mode) < 0 && errno != EEXIST)
		return jail_fail("mkdir", path);
	return 0;
}

static int make_file(const char *path, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return jail_fail("create", path);
	close(fd);
	return 0;
}

/* /.hutch: a small tmpfs (not in the upper layer, never snapshotted) with envd's config, the
 * envd bundle and hutch-init. Read-only once filled. */
static int mount_hutch_dir(const struct sandbox_spec *spec)
{
	int r;
	if ((r = make_dir(HUTCH_DIR, 0711)) < 0 ||
	    (r = do_mount("hutch", HUTCH_DIR, "tmpfs", MS_NOSUID | MS_NODEV,
			  "mode=0711,size=1m,nr_inodes=64")) < 0)
		return r;
	const char *config = spec->envd_config ? spec->envd_config : "{}";
	_cleanup_close_ int fd =
	    open(HUTCH_DIR "/envd.json", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write_all(fd, config, strlen(config)) < 0)
		return jail_fail("write", HUTCH_DIR "/envd.json");
	if ((r = make_dir(HUTCH_DIR "/envd", 0755)) < 0 ||
	    (r = make_file(HUTCH_DIR "/init", 0755)) < 0)
		return r;
	return 0;
}

static int bind_hutch_dir(const struct jail_root_fds *fds)
{
	int r;
	if ((r = clone_ro(fds->bundle, HUTCH_DIR "/envd", true)) < 0 ||
	    (r = clone_ro(fds->init, HUTCH_DIR "/init", false)) < 0)
		return r;
	return do_mount(NULL, HUTCH_DIR, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
			"mode=0711,size=1m,nr_inodes=64");
}

static int mount_dev(const struct sandbox_spec *spec, const char *oldroot)
{
	static const char *const nodes[] = { "null", "zero", "full", "random", "urandom", "tty" };
	static const char *const links[][2] = {
		{ "/proc/self/fd", "/dev/fd" },	      { "/proc/self/fd/0", "/dev/stdin" },
		{ "/proc/self/fd/1", "/dev/stdout" }, { "/proc/self/fd/2", "/dev/stderr" },
		{ "pts/ptmx", "/dev/ptmx" },
	};
	int r;
	if ((r = make_dir("/dev", 0755)) < 0 ||
	    (r = do_mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC,
			  "mode=0755,size=64k,nr_inodes=64")) < 0)
		return r;
	for (size_t i = 0; i < ELEMENTSOF(nodes); i++) {
		char src[256], dst[64];
		snprintf(src, sizeof(src), "%s/dev/%s", oldroot, nodes[i]);
		snprintf(dst, sizeof(dst), "/dev/%s", nodes[i]);
		if ((r = make_file(dst, 0666)) < 0 ||
		    (r = do_mount(src, dst, NULL, MS_BIND, NULL)) < 0)
			return r;
	}
	for (size_t i = 0; i < ELEMENTSOF(links); i++)
		if (symlink(links[i][0], links[i][1]) < 0)
			return jail_fail("symlink", links[i][1]);
	if ((r = make_dir("/dev/pts", 0755)) < 0 ||
	    (r = do_mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
			  "newinstance,ptmxmode=0666,mode=0620,gid=5")) < 0)
		return r;
	/* Half the sandbox's memory, as the kernel sizes a tmpfs by RAM in a VM (E2B's sandboxes):
	 * pages there are memory nothing can reclaim, so a full /dev/shm must leave the sandbox
	 * room to run processes. */
	char shm_opts[64] = "mode=1777";
	if (spec->memory_mb)
		snprintf(shm_opts, sizeof(shm_opts), "mode=1777,size=%um",
			 MAX(spec->memory_mb / 2, 1u));
	if ((r = make_dir("/dev/shm", 01777)) < 0 ||
	    (r = do_mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, shm_opts)) < 0)
		return r;
	return make_dir("/dev/mqueue", 01777);
}

/* As runc/Docker: files that leak host information or allow host-wide writes. */
static int mask_paths(void)
{
	static const char *const null_over[] = {
		"/proc/kcore",
		"/proc/keys",
		"/proc/timer_list",
		"/proc/sched_debug",
		"/proc/latency_stats",
		"/proc/interrupts",
		"/proc/kallsyms",
		"/proc/kmsg",
		"/proc/sysrq-trigger",
		/* world-readable physical addresses (vmcoreinfo's note, boot setup data) */
		"/sys/kernel/vmcoreinfo",
	};
	static const char *const tmpfs_over[] = {
		"/proc/scsi",	     "/proc/acpi",	     "/sys/firmware",
		"/sys/kernel/debug", "/sys/kernel/security", "/sys/kernel/boot_params"
	};
	static const char *const ro[] = { "/proc/sys", "/proc/irq", "/proc/bus", "/proc/fs",
					  "/proc/asound" };
	int r;
	for (size_t i = 0; i < ELEMENTSOF(null_over); i++) {
		if (access(null_over[i], F_OK) < 0)
			continue;
		if ((r = do_mount("/dev/null", null_over[i], NULL, MS_BIND, NULL)) < 0)
			return r;
	}
	for (size_t i = 0; i < ELEMENTSOF(tmpfs_over); i++) {
		if (access(tmpfs_over[i], F_OK) < 0)
			continue;
		if ((r = do_mount("tmpfs", tmpfs_over[i], "tmpfs",
				  MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0")) < 0)
			return r;
	}
	for (size_t i = 0; i < ELEMENTSOF(ro); i++) {
		if (access(ro[i], F_OK) < 0)
			continue;
		if ((r = bind_ro(ro[i], ro[i], MS_NOSUID | MS_NODEV | MS_NOEXEC)) < 0)
			return r;
	}
	return 0;
}

/* Replaces a file of the root (never following a symlink a layer may have planted). */
static int write_etc(const char *path, const char *text)
{
	struct stat st;
	if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode) && unlink(path) < 0)
		return jail_fail("unlink", path);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return jail_fail("create", path);
	int r = write_all(fd, text, strlen(text));
	close(fd);
	return r < 0 ? jail_fail("write", path) : 0;
}

static int write_identity_files(const struct sandbox_spec *spec)
{
	int r;
	if ((r = make_dir("/etc", 0755)) < 0)
		return r;
	if (spec->hostname) {
		char hosts[1024], name[300];
		snprintf(name, sizeof(name), "%s\n", spec->hostname);
		snprintf(hosts, sizeof(hosts),
			 "127.0.0.1\tlocalhost\n"
			 "::1\tlocalhost ip6-localhost ip6-loopback\n"
			 "127.0.1.1\t%s\n",
			 spec->hostname);
		if ((r = write_etc("/etc/hostname", name)) < 0 ||
		    (r = write_etc("/etc/hosts", hosts)) < 0)
			return r;
	}
	if (spec->resolv_conf && (r = write_etc("/etc/resolv.conf", spec->resolv_conf)) < 0)
		return r;
	return 0;
}

int jail_build_root(const struct sandbox_spec *spec, const struct jail_root_fds *fds)
{
	int r = attach_layers(fds);
	if (r < 0)
		return r;
	_cleanup_close_ int overlay = mount_overlay(fds);
	if (overlay < 0)
		return overlay;
	/* Enter the new root first, keeping the old one at /.hutch-old until the binds are done:
	 * every path made from here on resolves inside the sandbox's root. */
	if (fchdir(overlay) < 0)
		return jail_fail("chdir", "overlay");
	if ((r = make_dir(".hutch-old", 0700)) < 0)
		return r;
	if (syscall(SYS_pivot_root, ".", ".hutch-old") < 0)
		return jail_fail("pivot_root", "overlay");
	if (chdir("/") < 0)
		return jail_fail("chdir", "/");
	const char *old = "/.hutch-old";
	if ((r = make_dir("/proc", 0555)) < 0 ||
	    (r = do_mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) < 0)
		return r;
	if ((r = make_dir("/sys", 0555)) < 0 || (r = clone_ro(fds->sys, "/sys", false)) < 0)
		return r;
	if ((r = mount_dev(spec, old)) < 0 || (r = mount_hutch_dir(spec)) < 0 ||
	    (r = bind_hutch_dir(fds)) < 0)
		return r;
	if (umount2(old, MNT_DETACH) < 0)
		return jail_fail("umount", old);
	if (rmdir(old) < 0)
		return jail_fail("rmdir", old);
	if ((r = mask_paths()) < 0 || (r = write_identity_files(spec)) < 0)
		return r;
	return 0;
}
