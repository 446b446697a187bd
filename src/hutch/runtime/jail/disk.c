/*
 * The writable upper layer and its size limit.
 *
 * disk_mb > 0: upper/ and work/ live on a sparse ext4 image of disk_mb on a loop device, mounted
 * in the shim's private mount namespace (so it vanishes with the shim; LO_FLAGS_AUTOCLEAR frees
 * the loop device then). A hard limit: the sandbox sees ENOSPC, the host disk is safe. mkfs runs
 * once per size: each sandbox gets a sparse copy of a freshly made "golden" image kept next to
 * the run directories (copying ~1 MiB of metadata is several times faster than mkfs.ext4).
 *
 * disk_mb == 0: no limit; upper/ and work/ are plain directories in RUN_DIR.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <linux/loop.h>
#include "jail.h"
#include "common/macro.h"
#include "common/util.h"

static int run_mkfs(const char *image)
{
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
		}
		/* No journal: the upper layer is scratch space for one sandbox (a crash loses the
		 * sandbox anyway); no reserved blocks; lazy init keeps the image ~1 MiB. */
		execl("/sbin/mkfs.ext4", "mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal",
		      "-E", "lazy_itable_init=1,nodiscard", image, (char *)NULL);
		_exit(127);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

/* The golden image for this size, made once (atomically: mkfs into a temp file, rename). */
static int golden_image(const char *dir, unsigned mb, char **out)
{
	_cleanup_free_ char *path = NULL, *tmp = NULL;
	if (asprintf(&path, "%s/.hutch-disk-%uM.img", dir, mb) < 0 ||
	    asprintf(&tmp, "%s.%d.tmp", path, (int)getpid()) < 0)
		return -ENOMEM;
	if (access(path, F_OK) == 0) {
		*out = TAKE_PTR(path);
		return 0;
	}
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)mb << 20) < 0) {
		int r = -errno;
		unlink(tmp);
		return r;
	}
	int r = run_mkfs(tmp);
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		unlink(tmp);
		return r;
	}
	*out = TAKE_PTR(path);
	return 0;
}

/* Copies the allocated extents of src into a new sparse file. */
static int sparse_copy(const char *src, int dirfd, const char *name)
{
	_cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -errno;
	struct stat st;
	if (fstat(in, &st) < 0)
		return -errno;
	_cleanup_close_ int out =
	    openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (out < 0)
		return -errno;
	if (ftruncate(out, st.st_size) < 0)
		return -errno;
	off_t pos = 0;
	while (pos < st.st_size) {
		off_t data = lseek(in, pos, SEEK_DATA);
		if (data < 0)
			break; /* ENXIO: only a hole is left */
		off_t hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0)
			return -errno;
		off_t a = data, b = data;
		while (a < hole) {
			ssize_t n = copy_file_range(in, &a, out, &b, (size_t)(hole - a), 0);
			if (n <= 0)
				return n < 0 ? -errno : -EIO;
		}
		pos = hole;
	}
	return 0;
}

static int loop_attach(int image_fd, char *dev, size_t dev_size)
{
	_cleanup_close_ int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return -errno;
	for (int attempt = 0; attempt < 16; attempt++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (n < 0)
			return -errno;
		snprintf(dev, dev_size, "/dev/loop%d", n);
		_cleanup_close_ int lfd = open(dev, O_RDWR | O_CLOEXEC);
		if (lfd < 0)
			return -errno;
		struct loop_config cfg = {
			.fd = (uint32_t)image_fd,
			.info.lo_flags = LO_FLAGS_AUTOCLEAR,
		};
		snprintf((char *)cfg.info.lo_file_name, sizeof(cfg.info.lo_file_name), "hutch");
		if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0)
			return TAKE_FD(lfd);
		if (errno != EBUSY)
			return -errno;
		/* another process took this device between GET_FREE and CONFIGURE: next one */
	}
	return -EBUSY;
}

static int make_owned_dir(int dirfd, const char *name, uid_t uid)
{
	if (mkdirat(dirfd, name, 0755) < 0 && errno != EEXIST)
		return -errno;
	if (fchownat(dirfd, name, uid, uid, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	int fd = openat(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static int mount_image(int run_dirfd, const char *run_dir, const struct sandbox_spec *spec)
{
	_cleanup_free_ char *golden = NULL, *mnt = NULL, *copy = strdup(run_dir);
	if (!copy)
		return -ENOMEM;
	int r = golden_image(dirname(copy), spec->disk_mb, &golden);
	if (r < 0)
		return r;
	r = sparse_copy(golden, run_dirfd, JAIL_DISK_IMAGE);
	if (r < 0 && r != -EEXIST) /* EEXIST: a paused sandbox's disk, resumed */
		return r;
	_cleanup_close_ int img =
	    openat(run_dirfd, JAIL_DISK_IMAGE, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (img < 0)
		return -errno;
	char dev[64];
	_cleanup_close_ int loop = loop_attach(img, dev, sizeof(dev));
	if (loop < 0)
		return loop;
	if (mkdirat(run_dirfd, JAIL_DISK_DIR, 0700) < 0 && errno != EEXIST)
		return -errno;
	if (asprintf(&mnt, "%s/" JAIL_DISK_DIR, run_dir) < 0)
		return -ENOMEM;
	if (mount(dev, mnt, "ext4", MS_NOSUID | MS_NODEV | MS_NOATIME, "") < 0)
		return -errno;
	return 0;
}

/* A filesystem made ahead by jail_disk_make (its image already renamed to RUN_DIR/disk.img). */
static int attach_made(int run_dirfd, const char *run_dir, int mount_fd)
{
	_cleanup_free_ char *mnt = NULL;
	if (mkdirat(run_dirfd, JAIL_DISK_DIR, 0700) < 0 && errno != EEXIST)
		return -errno;
	if (asprintf(&mnt, "%s/" JAIL_DISK_DIR, run_dir) < 0)
		return -ENOMEM;
	if (move_mount(mount_fd, "", AT_FDCWD, mnt, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		return -errno;
	return 0;
}

int jail_disk_setup(int run_dirfd, const char *run_dir, const struct sandbox_spec *spec,
		    int made_fd, int *upper_fd, int *work_fd)
{
	_cleanup_close_ int base = -1;
	if (spec->disk_mb) {
		int r = made_fd >= 0 ? attach_made(run_dirfd, run_dir, made_fd)
				     : mount_image(run_dirfd, run_dir, spec);
		if (r < 0)
			return r;
		base = openat(run_dirfd, JAIL_DISK_DIR, O_PATH | O_DIRECTORY | O_CLOEXEC);
	} else if (spec->upper_dir) {
		base = open(spec->upper_dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	} else {
		base = fcntl(run_dirfd, F_DUPFD_CLOEXEC, 3);
	}
	if (base < 0)
		return -errno;
	_cleanup_close_ int upper = make_owned_dir(base, JAIL_UPPER_DIR, spec->uid_base);
	if (upper < 0)
		return upper;
	int work = make_owned_dir(base, JAIL_WORK_DIR, spec->uid_base);
	if (work < 0)
		return work;
	*upper_fd = TAKE_FD(upper);
	*work_fd = work;
	return 0;
}

int jail_disk_make(const char *dir, const char *image, unsigned mb)
{
	_cleanup_free_ char *golden = NULL;
	int r = golden_image(dir, mb, &golden);
	if (r < 0)
		return r;
	if ((r = sparse_copy(golden, AT_FDCWD, image)) < 0) {
		unlink(image);
		return r;
	}
	_cleanup_close_ int img = open(image, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	char dev[64];
	_cleanup_close_ int loop = img < 0 ? -errno : loop_attach(img, dev, sizeof(dev));
	_cleanup_close_ int fs = loop < 0 ? -1 : fsopen("ext4", FSOPEN_CLOEXEC);
	r = loop < 0 ? loop : fs < 0 ? -errno : 0;
	if (r == 0 && (fsconfig(fs, FSCONFIG_SET_STRING, "source", dev, 0) < 0 ||
		       fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0))
		r = -errno;
	/* The flags mount_image() uses. */
	int mnt = r < 0 ? -1
			: fsmount(fs, FSMOUNT_CLOEXEC,
				  MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOATIME);
	if (r == 0 && mnt < 0)
		r = -errno;
	if (r < 0) {
		unlink(image); /* the loop device goes with its last fd (LO_FLAGS_AUTOCLEAR) */
		return r;
	}
	return mnt;
}

static int du_at(int fd, uint64_t *sum, unsigned depth)
{
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	_cleanup_closedir_ DIR *dir = d;
	struct dirent *de;
	while ((de = readdir(dir))) {
		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		struct stat st;
		if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		*sum += (uint64_t)st.st_blocks * 512;
		if (S_ISDIR(st.st_mode) && depth < 256) {
			int sub = openat(dirfd(dir), de->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0)
				du_at(sub, sum, depth + 1);
		}
	}
	return 0;
}

int jail_disk_usage(const char *root_prefix, const struct sandbox_spec *spec, uint64_t *used,
		    uint64_t *total)
{
	_cleanup_free_ char *path = NULL;
	if (spec->disk_mb) {
		/* The image is mounted in the shim's mount namespace: look through its root. */
		if (asprintf(&path, "%s%s/" JAIL_DISK_DIR, root_prefix, spec->run_dir) < 0)
			return -ENOMEM;
		struct statvfs sv;
		if (statvfs(path, &sv) < 0)
			return -errno;
		*total = (uint64_t)sv.f_blocks * sv.f_frsize;
		*used = (uint64_t)(sv.f_blocks - sv.f_bfree) * sv.f_frsize;
		return 0;
	}
	if (asprintf(&path, "%s/" JAIL_UPPER_DIR, spec->run_dir) < 0)
		return -ENOMEM;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	*used = 0;
	*total = 0;
	return du_at(fd, used, 0);
}
