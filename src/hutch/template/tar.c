/* The safe tar extractor: libarchive reads, we write with *at() calls on directory fds opened with
 * O_NOFOLLOW one component at a time, so no symlink is ever followed (equivalent to openat2's
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, and working on any kernel). */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include "tar.h"
#include "common/util.h"

#define TAR_BLOCK (128 * 1024)
#define WH_PREFIX ".wh."
#define WH_OPAQUE ".wh..wh..opq"
/* The jail mounts its overlays with userxattr (in the sandbox's user namespace): overlay reads
 * its markers from user.overlay.*, not trusted.overlay.*. */
#define OVL_OPAQUE "user.overlay.opaque"

struct dir_time {
	char *path;
	struct timespec mtime;
};

struct extract {
	struct archive *a;
	int root;
	struct tar_opts o;
	struct tar_stats st;
	struct tar_error *err;
	struct dir_time *dirs;
	size_t n_dirs, cap_dirs;
};

static _printf_(3, 4) int fail(struct tar_error *err, int r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return r;
}

/* A member name fit for a message: printable, bounded. */
static const char *quote(const char *s, char *buf, size_t size)
{
	size_t n = 0;
	for (const unsigned char *c = (const unsigned char *)(s ? s : "(null)"); *c && n + 5 < size;
	     c++) {
		if (*c < 0x20 || *c >= 0x7f || *c == '\\')
			n += (size_t)snprintf(buf + n, size - n, "\\x%02x", *c);
		else
			buf[n++] = (char)*c;
	}
	buf[n] = '\0';
	return buf;
}

int tar_path_normalize(const char *path, char *out, size_t out_size)
{
	if (!path || !out || out_size == 0)
		return -EINVAL;
	if (path[0] == '/')
		return -EINVAL;
	size_t n = 0;
	const char *p = path;
	while (*p) {
		size_t len = strcspn(p, "/");
		if (len == 0 || (len == 1 && p[0] == '.')) {
			p += len;
			p += strspn(p, "/");
			continue;
		}
		if (len == 2 && p[0] == '.' && p[1] == '.')
			return -EINVAL;
		if (len > NAME_MAX)
			return -ENAMETOOLONG;
		if (n + (n ? 1 : 0) + len + 1 > out_size)
			return -ENAMETOOLONG;
		if (n)
			out[n++] = '/';
		memcpy(out + n, p, len);
		n += len;
		p += len;
		p += strspn(p, "/");
	}
	out[n] = '\0';
	return 0;
}

/* Opens child `name` of dfd as a directory, never through a symlink. With create, a missing
 * directory is made (0755, owned by whoever we are: the archive's own entry fixes it later). */
static int open_dir_at(int dfd, const char *name, bool create)
{
	for (int tries = 0;; tries++) {
		int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0)
			return fd;
		int r = -errno;
		if (r == -ENOENT && create && tries == 0) {
			if (mkdirat(dfd, name, 0755) < 0 && errno != EEXIST)
				return -errno;
			continue;
		}
		/* A symlink gives ELOOP with O_NOFOLLOW | O_DIRECTORY on some kernels, ENOTDIR on
		 * others: both mean "not a real directory". */
		return r == -ELOOP ? -ENOTDIR : r;
	}
}

/*
 * Splits the normalised path (modified in place) into its parent directory, opened beneath root
 * (missing directories made when create), and its last component in *leaf. Returns the parent's
 * fd (owned by the caller) or -errno.
 */
static int open_parent(int root, char *path, bool create, const char **leaf)
{
	int fd = fcntl(root, F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		return -errno;
	char *p = path;
	for (char *slash; (slash = strchr(p, '/')); p = slash + 1) {
		*slash = '\0';
		int sub = open_dir_at(fd, p, create);
		*slash = '/';
		close(fd);
		if (sub < 0)
			return sub;
		fd = sub;
	}
	*leaf = p;
	return fd;
}

/* Makes room for a new non-directory entry `leaf`: whatever is there goes (a later tar entry
 * replaces an earlier one). With keep_dir, an existing real directory stays (dir over dir). */
static int clear_slot(int parent, const char *leaf, bool keep_dir, bool *is_dir)
{
	struct stat st;
	*is_dir = false;
	if (fstatat(parent, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (S_ISDIR(st.st_mode) && keep_dir) {
		*is_dir = true;
		return 0;
	}
	return rm_rf_at(parent, leaf);
}

/* Which archive xattrs may land on disk. Overlay's own markers (trusted.overlay.*, and
 * user.overlay.* which the jail's userxattr overlays obey: redirect, metacopy, opaque, which
 * would make overlay look elsewhere), other trusted.* and security.* other than capabilities
 * never. */
static bool xattr_allowed(const char *name)
{
	return (startswith(name, "user.") && !startswith(name, "user.overlay.")) ||
	       streq(name, "security.capability") || streq(name, "system.posix_acl_access") ||
	       streq(name, "system.posix_acl_default");
}

static int apply_xattrs(struct extract *x, struct archive_entry *e, int fd, const char *shown)
{
	const char *name;
	const void *value;
	size_t size;
	archive_entry_xattr_reset(e);
	while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
		if (!name || !xattr_allowed(name))
			continue;
		if (fsetxattr(fd, name, value, size, 0) < 0) {
			/* A file system without user xattrs loses them, as cp -a would. */
			if (errno == EOPNOTSUPP)
				continue;
			char q[128];
			return fail(x->err, -errno, "%s: cannot set xattr %s: %s", shown,
				    quote(name, q, sizeof(q)), strerror(errno));
		}
	}
	return 0;
}

static uid_t entry_uid(const struct extract *x, struct archive_entry *e)
{
	return x->o.uid >= 0 ? (uid_t)x->o.uid : (uid_t)archive_entry_uid(e);
}

static gid_t entry_gid(const struct extract *x, struct archive_entry *e)
{
	return x->o.gid >= 0 ? (gid_t)x->o.gid : (gid_t)archive_entry_gid(e);
}

static struct timespec entry_mtime(struct archive_entry *e)
{
	if (!archive_entry_mtime_is_set(e))
		return (struct timespec){ .tv_sec = 0, .tv_nsec = 0 };
	long ns = archive_entry_mtime_nsec(e);
	return (struct timespec){ .tv_sec = archive_entry_mtime(e),
				  .tv_nsec = ns >= 0 && ns < 1000000000 ? ns : 0 };
}

/* Owner, mode (after chown, which clears setuid), xattrs and times of an open file or dir. */
static int apply_meta(struct extract *x, struct archive_entry *e, int fd, bool times,
		      const char *shown)
{
	if (fchown(fd, entry_uid(x, e), entry_gid(x, e)) < 0)
		return fail(x->err, -errno, "%s: cannot set the owner %u:%u: %s", shown,
			    (unsigned)entry_uid(x, e), (unsigned)entry_gid(x, e), strerror(errno));
	if (fchmod(fd, archive_entry_perm(e) & 07777) < 0)
		return fail(x->err, -errno, "%s: cannot set the mode: %s", shown, strerror(errno));
	int r = apply_xattrs(x, e, fd, shown);
	if (r < 0)
		return r;
	if (times) {
		struct timespec ts[2] = { entry_mtime(e), entry_mtime(e) };
		if (futimens(fd, ts) < 0)
			return fail(x->err, -errno, "%s: cannot set the time: %s", shown,
				    strerror(errno));
	}
	return 0;
}

static int write_data(struct extract *x, int fd, struct archive_entry *e, const char *shown)
{
	const void *buf;
	size_t size;
	la_int64_t offset;
	int64_t end = 0;
	for (;;) {
		int k = archive_read_data_block(x->a, &buf, &size, &offset);
		if (k == ARCHIVE_EOF)
			break;
		if (k < ARCHIVE_WARN)
			return fail(x->err, -EINVAL, "%s: %s", shown, archive_error_string(x->a));
		if (offset < 0 || (uint64_t)offset + size > x->o.max_bytes ||
		    x->st.bytes + size > x->o.max_bytes)
			return fail(x->err, -EFBIG,
				    "%s: the archive's files exceed the limit of %llu bytes", shown,
				    (unsigned long long)x->o.max_bytes);
		for (size_t done = 0; done < size;) {
			ssize_t n =
			    pwrite(fd, (const char *)buf + done, size - done, offset + (off_t)done);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				return fail(x->err, -errno, "%s: write failed: %s", shown,
					    strerror(errno));
			}
			done += (size_t)n;
		}
		x->st.bytes += size;
		end = MAX(end, offset + (int64_t)size);
	}
	/* A sparse file may end in a hole. */
	int64_t want = archive_entry_size_is_set(e) ? archive_entry_size(e) : end;
	if (want > end && (uint64_t)want <= x->o.max_bytes && ftruncate(fd, want) < 0)
		return fail(x->err, -errno, "%s: cannot size the file: %s", shown, strerror(errno));
	return 0;
}

static int do_file(struct extract *x, struct archive_entry *e, int parent, const char *leaf,
		   const char *shown)
{
	bool is_dir;
	int r = clear_slot(parent, leaf, false, &is_dir);
	if (r < 0)
		return fail(x->err, r, "%s: cannot replace the existing entry: %s", shown,
			    strerror(-r));
	_cleanup_close_ int fd =
	    openat(parent, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return fail(x->err, -errno, "%s: cannot create: %s", shown, strerror(errno));
	if ((r = write_data(x, fd, e, shown)) < 0)
		return r;
	return apply_meta(x, e, fd, true, shown);
}

static int remember_dir(struct extract *x, const char *path, struct archive_entry *e)
{
	if (ARRAY_RESERVE(x->dirs, x->cap_dirs, x->n_dirs + 1) < 0)
		return -ENOMEM;
	char *copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	x->dirs[x->n_dirs++] = (struct dir_time){ .path = copy, .mtime = entry_mtime(e) };
	return 0;
}

static int do_dir(struct extract *x, struct archive_entry *e, int parent, const char *leaf,
		  const char *path, const char *shown)
{
	bool is_dir;
	int r = clear_slot(parent, leaf, true, &is_dir);
	if (r < 0)
		return fail(x->err, r, "%s: cannot replace the existing entry: %s", shown,
			    strerror(-r));
	if (!is_dir && mkdirat(parent, leaf, 0700) < 0)
		return fail(x->err, -errno, "%s: cannot create: %s", shown, strerror(errno));
	_cleanup_close_ int fd = open_dir_at(parent, leaf, false);
	if (fd < 0)
		return fail(x->err, fd, "%s: cannot open: %s", shown, strerror(-fd));
	/* Its mtime is set at the end: the entries created inside it would change it. */
	if ((r = apply_meta(x, e, fd, false, shown)) < 0)
		return r;
	if ((r = remember_dir(x, path, e)) < 0)
		return fail(x->err, r, "%s: out of memory", shown);
	return 0;
}

static int set_link_meta(struct extract *x, struct archive_entry *e, int parent, const char *leaf,
			 const char *shown)
{
	if (fchownat(parent, leaf, entry_uid(x, e), entry_gid(x, e), AT_SYMLINK_NOFOLLOW) < 0)
		return fail(x->err, -errno, "%s: cannot set the owner: %s", shown, strerror(errno));
	struct timespec ts[2] = { entry_mtime(e), entry_mtime(e) };
	if (utimensat(parent, leaf, ts, AT_SYMLINK_NOFOLLOW) < 0)
		return fail(x->err, -errno, "%s: cannot set the time: %s", shown, strerror(errno));
	return 0;
}

static int do_symlink(struct extract *x, struct archive_entry *e, int parent, const char *leaf,
		      const char *shown)
{
	/* The target is stored as text and never resolved here: it may point anywhere, it only
	 * means something inside the sandbox, whose root is this tree. */
	const char *target = archive_entry_symlink(e);
	if (isempty(target) || strlen(target) >= PATH_MAX)
		return fail(x->err, -EINVAL, "%s: bad symlink target", shown);
	bool is_dir;
	int r = clear_slot(parent, leaf, false, &is_dir);
	if (r < 0)
		return fail(x->err, r, "%s: cannot replace the existing entry: %s", shown,
			    strerror(-r));
	if (symlinkat(target, parent, leaf) < 0)
		return fail(x->err, -errno, "%s: cannot create the symlink: %s", shown,
			    strerror(errno));
	return set_link_meta(x, e, parent, leaf, shown);
}

static int do_hardlink(struct extract *x, struct archive_entry *e, int parent, const char *leaf,
		       const char *shown)
{
	char target[PATH_MAX], q[256];
	const char *raw = archive_entry_hardlink(e);
	int r = tar_path_normalize(raw, target, sizeof(target));
	if (r < 0 || !*target)
		return fail(x->err, -EINVAL, "%s: hardlink target '%s' is outside the archive",
			    shown, quote(raw, q, sizeof(q)));
	const char *tleaf;
	_cleanup_close_ int tparent = open_parent(x->root, target, false, &tleaf);
	if (tparent < 0)
		return fail(x->err, -EINVAL, "%s: hardlink target '%s' is not in the archive",
			    shown, quote(raw, q, sizeof(q)));
	struct stat st;
	if (fstatat(tparent, tleaf, &st, AT_SYMLINK_NOFOLLOW) < 0 || S_ISDIR(st.st_mode))
		return fail(x->err, -EINVAL, "%s: hardlink target '%s' is missing or a directory",
			    shown, quote(raw, q, sizeof(q)));
	struct stat here;
	if (fstatat(parent, leaf, &here, AT_SYMLINK_NOFOLLOW) == 0 && here.st_ino == st.st_ino &&
	    here.st_dev == st.st_dev)
		return 0; /* a link to itself: already there */
	bool is_dir;
	if ((r = clear_slot(parent, leaf, false, &is_dir)) < 0)
		return fail(x->err, r, "%s: cannot replace the existing entry: %s", shown,
			    strerror(-r));
	/* flags 0: a symlink target is linked itself, never followed. */
	if (linkat(tparent, tleaf, parent, leaf, 0) < 0)
		return fail(x->err, -errno, "%s: cannot link to '%s': %s", shown,
			    quote(raw, q, sizeof(q)), strerror(errno));
	return 0;
}

static int make_whiteout(struct extract *x, int parent, const char *leaf, const char *shown)
{
	bool is_dir;
	int r = clear_slot(parent, leaf, false, &is_dir);
	if (r < 0)
		return fail(x->err, r, "%s: cannot replace the existing entry: %s", shown,
			    strerror(-r));
	if (mknodat(parent, leaf, S_IFCHR | 0, makedev(0, 0)) < 0)
		return fail(x->err, -errno, "%s: cannot create the whiteout: %s", shown,
			    strerror(errno));
	x->st.whiteouts++;
	return 0;
}

static int make_opaque(struct extract *x, int parent, const char *shown)
{
	if (fsetxattr(parent, OVL_OPAQUE, "y", 1, 0) < 0)
		return fail(x->err, -errno, "%s: cannot mark the directory opaque: %s", shown,
			    strerror(errno));
	x->st.whiteouts++;
	return 0;
}

static int do_special(struct extract *x, struct archive_entry *e, int parent, const char *leaf,
		      const char *shown)
{
	mode_t type = archive_entry_filetype(e);
	/* Overlay-format layers (our own, re-archived) carry their whiteouts as char 0/0. */
	if (type == AE_IFCHR && archive_entry_rdevmajor(e) == 0 && archive_entry_rdevminor(e) == 0)
		return make_whiteout(x, parent, leaf, shown);
	if (type == AE_IFIFO) {
		bool is_dir;
		int r = clear_slot(parent, leaf, false, &is_dir);
		if (r < 0)
			return fail(x->err, r, "%s: cannot replace the existing entry: %s", shown,
				    strerror(-r));
		if (mkfifoat(parent, leaf, 0600) < 0)
			return fail(x->err, -errno, "%s: cannot create the fifo: %s", shown,
				    strerror(errno));
		if (fchownat(parent, leaf, entry_uid(x, e), entry_gid(x, e), AT_SYMLINK_NOFOLLOW) <
			0 ||
		    fchmodat(parent, leaf, archive_entry_perm(e) & 0777, 0) < 0)
			return fail(x->err, -errno, "%s: cannot set the owner or mode: %s", shown,
				    strerror(errno));
		return 0;
	}
	/* Devices and sockets: a sandbox gets its /dev from the runtime, never from an image. */
	x->st.skipped++;
	return 0;
}

static int extract_entry(struct extract *x, struct archive_entry *e)
{
	char path[PATH_MAX], q[256];
	const char *raw = archive_entry_pathname(e);
	const char *shown = quote(raw, q, sizeof(q));
	int r = tar_path_normalize(raw, path, sizeof(path));
	if (r == -ENAMETOOLONG)
		return fail(x->err, -EINVAL, "%s: path too long", shown);
	if (r < 0)
		return fail(x->err, -EINVAL, "%s: %s", shown,
			    raw && raw[0] == '/' ? "absolute path in the archive"
						 : "path escapes the archive ('..' or empty)");
	if (!*path)
		return 0; /* the root itself: the destination's metadata is the caller's */

	char walk[PATH_MAX];
	memcpy(walk, path, strlen(path) + 1);
	const char *leaf;
	_cleanup_close_ int parent = open_parent(x->root, walk, true, &leaf);
	if (parent < 0)
		return fail(x->err, -EINVAL,
			    "%s: a parent is not a directory (a symlink or a file): %s", shown,
			    strerror(-parent));

	if (x->o.oci_whiteouts && startswith(leaf, WH_PREFIX)) {
		if (streq(leaf, WH_OPAQUE))
			return make_opaque(x, parent, shown);
		const char *name = leaf + strlen(WH_PREFIX);
		if (!*name || streq(name, ".") || streq(name, ".."))
			return fail(x->err, -EINVAL, "%s: bad whiteout name", shown);
		return make_whiteout(x, parent, name, shown);
	}

	if (archive_entry_hardlink(e))
		return do_hardlink(x, e, parent, leaf, shown);
	switch (archive_entry_filetype(e)) {
	case AE_IFREG:
		return do_file(x, e, parent, leaf, shown);
	case AE_IFDIR:
		return do_dir(x, e, parent, leaf, path, shown);
	case AE_IFLNK:
		return do_symlink(x, e, parent, leaf, shown);
	default:
		return do_special(x, e, parent, leaf, shown);
	}
}

/* Directory mtimes last, deepest first, through the same safe walk. */
static void fix_dir_times(struct extract *x)
{
	for (size_t i = x->n_dirs; i-- > 0;) {
		const char *leaf;
		_cleanup_close_ int parent = open_parent(x->root, x->dirs[i].path, false, &leaf);
		if (parent < 0)
			continue;
		struct timespec ts[2] = { x->dirs[i].mtime, x->dirs[i].mtime };
		(void)utimensat(parent, leaf, ts, AT_SYMLINK_NOFOLLOW);
	}
}

static void extract_clear(struct extract *x)
{
	for (size_t i = 0; i < x->n_dirs; i++)
		free(x->dirs[i].path);
	free(x->dirs);
	if (x->a)
		archive_read_free(x->a);
}

/* A reader of tar, plain or compressed, with only formats and filters implemented in-process:
 * never an external program (bzip2 and xz are left off when libarchive would exec one). */
static struct archive *reader_new(void)
{
	struct archive *a = archive_read_new();
	if (!a)
		return NULL;
	if (archive_read_support_format_tar(a) != ARCHIVE_OK ||
	    archive_read_support_format_empty(a) != ARCHIVE_OK ||
	    archive_read_support_filter_gzip(a) != ARCHIVE_OK ||
	    archive_read_support_filter_zstd(a) != ARCHIVE_OK) {
		archive_read_free(a);
		return NULL;
	}
	struct archive *probe = archive_read_new();
	if (probe) {
		if (archive_read_support_filter_xz(probe) == ARCHIVE_OK)
			archive_read_support_filter_xz(a);
		if (archive_read_support_filter_bzip2(probe) == ARCHIVE_OK)
			archive_read_support_filter_bzip2(a);
		archive_read_free(probe);
	}
	return a;
}

static int extract_begin(struct extract *x, int dest_dfd, const struct tar_opts *opts,
			 struct tar_error *err)
{
	*x = (struct extract){ .root = dest_dfd, .err = err, .o = { .uid = -1, .gid = -1 } };
	if (opts)
		x->o = *opts;
	if (!x->o.max_entries)
		x->o.max_entries = TAR_DEFAULT_MAX_ENTRIES;
	if (!x->o.max_bytes)
		x->o.max_bytes = TAR_DEFAULT_MAX_BYTES;
	if (!(x->a = reader_new()))
		return fail(err, -ENOMEM, "libarchive lacks tar, gzip or zstd support");
	return 0;
}

static int extract_run(struct extract *x, struct tar_stats *stats)
{
	int r = 0;
	for (;;) {
		struct archive_entry *e;
		int k = archive_read_next_header(x->a, &e);
		if (k == ARCHIVE_EOF)
			break;
		if (k < ARCHIVE_WARN) {
			r = fail(x->err, -EINVAL, "not a valid tar archive (entry %llu): %s",
				 (unsigned long long)x->st.entries + 1,
				 archive_error_string(x->a) ?: "unknown error");
			break;
		}
		if (++x->st.entries > x->o.max_entries) {
			r = fail(x->err, -EFBIG, "the archive has more than %llu entries",
				 (unsigned long long)x->o.max_entries);
			break;
		}
		if ((r = extract_entry(x, e)) < 0)
			break;
	}
	if (r == 0)
		fix_dir_times(x);
	if (stats)
		*stats = x->st;
	return r;
}

int tar_extract_fd(int fd, int dest_dfd, const struct tar_opts *opts, struct tar_stats *stats,
		   struct tar_error *err)
{
	struct tar_error local;
	_cleanup_(extract_clear) struct extract x;
	int r = extract_begin(&x, dest_dfd, opts, err ?: &local);
	if (r < 0)
		return r;
	if (archive_read_open_fd(x.a, fd, TAR_BLOCK) != ARCHIVE_OK)
		return fail(x.err, -EINVAL, "not a valid tar archive: %s",
			    archive_error_string(x.a) ?: "unknown error");
	return extract_run(&x, stats);
}

int tar_extract_memory(const void *buf, size_t size, int dest_dfd, const struct tar_opts *opts,
		       struct tar_stats *stats, struct tar_error *err)
{
	struct tar_error local;
	_cleanup_(extract_clear) struct extract x;
	int r = extract_begin(&x, dest_dfd, opts, err ?: &local);
	if (r < 0)
		return r;
	if (archive_read_open_memory(x.a, buf, size) != ARCHIVE_OK)
		return fail(x.err, -EINVAL, "not a valid tar archive: %s",
			    archive_error_string(x.a) ?: "unknown error");
	return extract_run(&x, stats);
}

int tar_extract_path(const char *archive, const char *dest, const struct tar_opts *opts,
		     struct tar_stats *stats, struct tar_error *err)
{
	struct tar_error local;
	err = err ?: &local;
	_cleanup_close_ int fd = open(archive, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(err, -errno, "cannot open '%s': %s", archive, strerror(errno));
	if (mkdir(dest, 0755) < 0 && errno != EEXIST)
		return fail(err, -errno, "cannot create '%s': %s", dest, strerror(errno));
	_cleanup_close_ int dfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return fail(err, -errno, "cannot open '%s': %s", dest, strerror(errno));
	return tar_extract_fd(fd, dfd, opts, stats, err);
}

/* Reads through pread so the caller's offset stays where it was. */
struct probe_src {
	int fd;
	off_t off;
	char buf[16384];
};

static la_ssize_t probe_read(struct archive *a, void *data, const void **out)
{
	struct probe_src *s = data;
	ssize_t n = pread(s->fd, s->buf, sizeof(s->buf), s->off);
	if (n < 0) {
		archive_set_error(a, errno, "read failed");
		return -1;
	}
	s->off += n;
	*out = s->buf;
	return n;
}

bool tar_probe_fd(int fd)
{
	struct archive *a = reader_new();
	if (!a)
		return false;
	struct probe_src *src = calloc(1, sizeof(*src));
	bool ok = false;
	if (src) {
		src->fd = fd;
		struct archive_entry *e;
		if (archive_read_open(a, src, NULL, probe_read, NULL) == ARCHIVE_OK) {
			int k = archive_read_next_header(a, &e);
			ok = k == ARCHIVE_OK || k == ARCHIVE_WARN;
		}
	}
	archive_read_free(a);
	free(src);
	return ok;
}
