/* The safe tar extractor: archives are written here with libarchive (plain, gzip, zstd) and
 * extracted into a temporary directory; escapes must fail without touching anything outside. */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include "common/util.h"
#include "template/tar.h"
#include "tap.h"

struct ent {
	const char *path;
	mode_t type; /* AE_IFREG, AE_IFDIR, AE_IFLNK, AE_IFCHR...; 0 = hardlink */
	mode_t perm;
	const char *data; /* file content, symlink or hardlink target */
	unsigned uid, gid;
	const char *xattr_name, *xattr_value;
	size_t xattr_len; /* 0: strlen(xattr_value) */
};

static size_t build(const struct ent *ents, size_t n, int filter, void *buf, size_t cap)
{
	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	if (filter == 1)
		archive_write_add_filter_gzip(a);
	else if (filter == 2)
		archive_write_add_filter_zstd(a);
	size_t used = 0;
	if (archive_write_open_memory(a, buf, cap, &used) != ARCHIVE_OK)
		abort();
	for (size_t i = 0; i < n; i++) {
		struct archive_entry *e = archive_entry_new();
		archive_entry_set_pathname(e, ents[i].path);
		archive_entry_set_uid(e, ents[i].uid);
		archive_entry_set_gid(e, ents[i].gid);
		archive_entry_set_mtime(e, 1700000000 + (time_t)i, 0);
		size_t len = 0;
		if (ents[i].type == 0) {
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_hardlink(e, ents[i].data);
		} else {
			archive_entry_set_filetype(e, ents[i].type);
			if (ents[i].type == AE_IFLNK)
				archive_entry_set_symlink(e, ents[i].data);
			if (ents[i].type == AE_IFREG && ents[i].data)
				len = strlen(ents[i].data);
			if (ents[i].type == AE_IFCHR)
				archive_entry_set_rdev(e, makedev(1, 3));
		}
		archive_entry_set_perm(e, ents[i].perm ?: 0644);
		archive_entry_set_size(e, (la_int64_t)len);
		if (ents[i].xattr_name)
			archive_entry_xattr_add_entry(e, ents[i].xattr_name, ents[i].xattr_value,
						      ents[i].xattr_len
							  ?: strlen(ents[i].xattr_value));
		if (archive_write_header(a, e) != ARCHIVE_OK)
			abort();
		if (len)
			archive_write_data(a, ents[i].data, len);
		archive_entry_free(e);
	}
	archive_write_close(a);
	archive_write_free(a);
	return used;
}

static char tmp_root[64];

/* A fresh destination directory, beside an "outside" directory escapes would aim at. */
static int fresh_dest(const char *name)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", tmp_root, name);
	mkdir(path, 0755);
	return open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static int extract(const struct ent *ents, size_t n, int filter, int dfd, const struct tar_opts *o,
		   struct tar_error *err)
{
	static char buf[1 << 20];
	size_t len = build(ents, n, filter, buf, sizeof(buf));
	memset(err, 0, sizeof(*err));
	return tar_extract_memory(buf, len, dfd, o, NULL, err);
}

static bool file_is(int dfd, const char *path, const char *want)
{
	char buf[256] = { 0 };
	_cleanup_close_ int fd = openat(dfd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	return fd >= 0 && read(fd, buf, sizeof(buf) - 1) == (ssize_t)strlen(want) &&
	       streq(buf, want);
}

static void test_normalize(void)
{
	char out[64];
	is_int(tar_path_normalize("./a//b/./c/", out, sizeof(out)), 0, "normalize ok");
	is_str(out, "a/b/c", "normalize drops ./ and slashes");
	is_int(tar_path_normalize("./", out, sizeof(out)), 0, "root");
	is_str(out, "", "root is empty");
	is_int(tar_path_normalize("/etc/passwd", out, sizeof(out)), -EINVAL, "absolute refused");
	is_int(tar_path_normalize("a/../../b", out, sizeof(out)), -EINVAL, "dotdot refused");
	is_int(tar_path_normalize("..", out, sizeof(out)), -EINVAL, "bare dotdot refused");
	is_int(tar_path_normalize("a/..b/c..", out, sizeof(out)), 0, "dots in names are fine");
	is_int(tar_path_normalize(
		   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", out,
		   sizeof(out)),
	       -ENAMETOOLONG, "too long");
}

static void test_basic(int filter, const char *what)
{
	const struct ent ents[] = {
		{ "./usr/", AE_IFDIR, 0750, NULL, 0, 0 },
		{ "./usr/bin/", AE_IFDIR, 0755, NULL, 0, 0 },
		{ "./usr/bin/tool", AE_IFREG, 04755, "#!/bin/sh\necho hi\n", 0, 0,
		  "security.capability", /* v2, effective, cap_net_bind_service */
		  "\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
		  "\x00",
		  20 },
		{ "./home/u/notes", AE_IFREG, 0600, "mine", 1234, 5678, "user.k", "v" },
		{ "./usr/bin/sh", AE_IFLNK, 0777, "/bin/busybox", 0, 0 },
		{ "./usr/bin/tool2", 0, 0, "usr/bin/tool", 0, 0 },
		{ "./dev/null", AE_IFCHR, 0666, NULL, 0, 0 },
	};
	char name[32];
	snprintf(name, sizeof(name), "basic-%d", filter);
	_cleanup_close_ int dfd = fresh_dest(name);
	struct tar_error err;
	int r = extract(ents, ELEMENTSOF(ents), filter, dfd, NULL, &err);
	if (!is_int(r, 0, "%s: extracts", what))
		diag("%s", err.message);
	struct stat st;
	ok(file_is(dfd, "usr/bin/tool", "#!/bin/sh\necho hi\n"), "%s: content", what);
	ok(fstatat(dfd, "usr/bin/tool", &st, 0) == 0 && (st.st_mode & 07777) == 04755,
	   "%s: setuid mode kept", what);
	ok(fstatat(dfd, "usr", &st, 0) == 0 && (st.st_mode & 07777) == 0750, "%s: dir mode", what);
	ok(fstatat(dfd, "usr/bin/tool", &st, 0) == 0 && st.st_mtime == 1700000002, "%s: file mtime",
	   what);
	ok(fstatat(dfd, "usr", &st, 0) == 0 && st.st_mtime == 1700000000,
	   "%s: dir mtime kept after its children", what);
	ok(fstatat(dfd, "home/u/notes", &st, 0) == 0 && st.st_uid == 1234 && st.st_gid == 5678 &&
	       (st.st_mode & 0777) == 0600,
	   "%s: unshifted owner kept", what);
	ok(fstatat(dfd, "home", &st, 0) == 0 && S_ISDIR(st.st_mode), "%s: missing parents made",
	   what);
	char v[32] = { 0 };
	_cleanup_close_ int nfd = openat(dfd, "home/u/notes", O_RDONLY | O_CLOEXEC);
	ok(fgetxattr(nfd, "user.k", v, sizeof(v)) == 1 && v[0] == 'v', "%s: user xattr", what);
	_cleanup_close_ int tfd = openat(dfd, "usr/bin/tool", O_RDONLY | O_CLOEXEC);
	ok(fgetxattr(tfd, "security.capability", v, sizeof(v)) > 0, "%s: file capability", what);
	char link[64] = { 0 };
	ok(readlinkat(dfd, "usr/bin/sh", link, sizeof(link) - 1) > 0 && streq(link, "/bin/busybox"),
	   "%s: symlink kept as text", what);
	struct stat a, b;
	ok(fstatat(dfd, "usr/bin/tool", &a, 0) == 0 && fstatat(dfd, "usr/bin/tool2", &b, 0) == 0 &&
	       a.st_ino == b.st_ino,
	   "%s: hardlink", what);
	ok(fstatat(dfd, "dev/null", &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT,
	   "%s: device node not created", what);
}

static void check_refused(const struct ent *ents, size_t n, const char *what, const char *needle)
{
	static unsigned k;
	char name[32];
	snprintf(name, sizeof(name), "refuse-%u", k++);
	_cleanup_close_ int dfd = fresh_dest(name);
	struct tar_error err;
	int r = extract(ents, n, 0, dfd, NULL, &err);
	ok(r < 0, "%s: refused (%d)", what, r);
	if (!ok(strstr(err.message, needle) != NULL, "%s: message mentions '%s'", what, needle))
		diag("message: %s", err.message);
}

static void test_escapes(void)
{
	char outside[128], secret[160];
	snprintf(outside, sizeof(outside), "%s/outside", tmp_root);
	snprintf(secret, sizeof(secret), "%s/secret", outside);
	mkdir(outside, 0755);
	int fd = open(secret, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	write_all(fd, "keep", 4);
	close(fd);

	const struct ent abs[] = { { "/etc/evil", AE_IFREG, 0644, "x" } };
	check_refused(abs, 1, "absolute path", "absolute");
	const struct ent dots[] = { { "a/../../evil", AE_IFREG, 0644, "x" } };
	check_refused(dots, 1, "dotdot path", "escapes");
	/* The classic: a symlink to the outside, then a file written "through" it. */
	const struct ent through[] = { { "lnk", AE_IFLNK, 0777, outside },
				       { "lnk/secret", AE_IFREG, 0644, "pwned" } };
	check_refused(through, 2, "write through a symlink", "not a directory");
	const struct ent hard_out[] = { { "h", 0, 0, "../outside/secret" } };
	check_refused(hard_out, 1, "hardlink outside", "outside the archive");
	const struct ent hard_abs[] = { { "h", 0, 0, secret + 0 } };
	check_refused(hard_abs, 1, "hardlink to an absolute path", "outside the archive");
	const struct ent hard_via[] = { { "lnk", AE_IFLNK, 0777, outside },
					{ "h", 0, 0, "lnk/secret" } };
	check_refused(hard_via, 2, "hardlink through a symlink", "not in the archive");

	/* A symlink replaced by a file: the file lands in the tree, the link's target is intact. */
	_cleanup_close_ int dfd = fresh_dest("replace-link");
	char target[200];
	snprintf(target, sizeof(target), "%s", secret);
	const struct ent replace[] = { { "f", AE_IFLNK, 0777, target },
				       { "f", AE_IFREG, 0644, "new" } };
	struct tar_error err;
	is_int(extract(replace, 2, 0, dfd, NULL, &err), 0, "file over a symlink extracts");
	ok(file_is(dfd, "f", "new"), "file over a symlink replaces the link");
	_cleanup_close_ int od = open(outside, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ok(file_is(od, "secret", "keep"), "the symlink's target is untouched");

	/* A directory replaced by a file, a file by a directory. */
	_cleanup_close_ int d2 = fresh_dest("replace-dir");
	const struct ent swap[] = { { "d/", AE_IFDIR, 0755 },
				    { "d/x", AE_IFREG, 0644, "1" },
				    { "d", AE_IFREG, 0644, "now a file" },
				    { "f", AE_IFREG, 0644, "f" },
				    { "f/", AE_IFDIR, 0700 } };
	is_int(extract(swap, ELEMENTSOF(swap), 0, d2, NULL, &err), 0, "replacements extract");
	struct stat st;
	ok(file_is(d2, "d", "now a file"), "a file replaces a directory");
	ok(fstatat(d2, "f", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode),
	   "a directory replaces a file");
}

static void test_whiteouts(void)
{
	const struct ent ents[] = {
		{ "etc/", AE_IFDIR, 0755 },
		{ "etc/.wh.motd", AE_IFREG, 0644, "" },
		{ "var/cache/", AE_IFDIR, 0755 },
		{ "var/cache/.wh..wh..opq", AE_IFREG, 0644, "" },
		{ "var/cache/kept", AE_IFREG, 0644, "k" },
	};
	_cleanup_close_ int dfd = fresh_dest("oci");
	struct tar_opts o = { .oci_whiteouts = true, .uid = -1, .gid = -1 };
	struct tar_error err;
	struct stat st;
	int r = extract(ents, ELEMENTSOF(ents), 1, dfd, &o, &err);
	if (!is_int(r, 0, "oci layer extracts"))
		diag("%s", err.message);
	ok(fstatat(dfd, "etc/motd", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISCHR(st.st_mode) &&
	       st.st_rdev == makedev(0, 0),
	   ".wh.motd became an overlay whiteout");
	ok(fstatat(dfd, "etc/.wh.motd", &st, AT_SYMLINK_NOFOLLOW) < 0, "no .wh. file left");
	char v[4] = { 0 };
	_cleanup_close_ int cfd = openat(dfd, "var/cache", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ok(fgetxattr(cfd, "user.overlay.opaque", v, sizeof(v)) == 1 && v[0] == 'y',
	   "opaque marker became user.overlay.opaque=y");
	ok(file_is(dfd, "var/cache/kept", "k"), "the layer's own files in an opaque dir stay");

	_cleanup_close_ int plain = fresh_dest("plain-wh");
	is_int(extract(ents, ELEMENTSOF(ents), 0, plain, NULL, &err), 0, "plain mode extracts");
	ok(fstatat(plain, "etc/.wh.motd", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode),
	   "without OCI whiteouts .wh. names are files");

	/* Overlay-format whiteouts (char 0/0) pass; archive xattrs never set overlay markers. */
	_cleanup_close_ int ov = fresh_dest("overlay-wh");
	struct archive_entry *e = archive_entry_new();
	static char buf[16384];
	size_t used = 0;
	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	archive_write_open_memory(a, buf, sizeof(buf), &used);
	archive_entry_set_pathname(e, "gone");
	archive_entry_set_filetype(e, AE_IFCHR);
	archive_entry_set_rdev(e, makedev(0, 0));
	archive_write_header(a, e);
	archive_entry_clear(e);
	archive_entry_set_pathname(e, "d");
	archive_entry_set_filetype(e, AE_IFDIR);
	archive_entry_set_perm(e, 0755);
	archive_entry_xattr_add_entry(e, "trusted.overlay.redirect", "/etc", 4);
	archive_entry_xattr_add_entry(e, "user.overlay.redirect", "/etc", 4);
	archive_write_header(a, e);
	archive_entry_free(e);
	archive_write_close(a);
	archive_write_free(a);
	is_int(tar_extract_memory(buf, used, ov, NULL, NULL, &err), 0, "overlay layer extracts");
	ok(fstatat(ov, "gone", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISCHR(st.st_mode),
	   "char 0/0 kept as a whiteout");
	_cleanup_close_ int dd = openat(ov, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ok(fgetxattr(dd, "trusted.overlay.redirect", v, sizeof(v)) < 0,
	   "trusted.overlay.redirect from the archive dropped");
	ok(fgetxattr(dd, "user.overlay.redirect", v, sizeof(v)) < 0,
	   "user.overlay.redirect from the archive dropped (the jail's overlays obey "
	   "user.overlay.*)");
}

static void test_limits(void)
{
	const struct ent ents[] = { { "a", AE_IFREG, 0644, "12345" },
				    { "b", AE_IFREG, 0644, "12345" },
				    { "c", AE_IFREG, 0644, "12345" } };
	struct tar_error err;
	_cleanup_close_ int d1 = fresh_dest("lim-entries");
	struct tar_opts o = { .max_entries = 2, .uid = -1, .gid = -1 };
	is_int(extract(ents, 3, 0, d1, &o, &err), -EFBIG, "entry count capped");
	ok(strstr(err.message, "more than 2 entries"), "entry cap message: %s", err.message);
	_cleanup_close_ int d2 = fresh_dest("lim-bytes");
	struct tar_opts ob = { .max_bytes = 12, .uid = -1, .gid = -1 };
	is_int(extract(ents, 3, 2, d2, &ob, &err), -EFBIG, "byte total capped");
	ok(strstr(err.message, "limit of 12 bytes"), "byte cap message: %s", err.message);

	_cleanup_close_ int d3 = fresh_dest("owner");
	struct tar_opts oo = { .uid = 1000, .gid = 1001 };
	struct stat st;
	is_int(extract(ents, 1, 0, d3, &oo, &err), 0, "owner override extracts");
	ok(fstatat(d3, "a", &st, 0) == 0 && st.st_uid == 1000 && st.st_gid == 1001,
	   "owner override applied");

	_cleanup_close_ int d4 = fresh_dest("garbage");
	static const char junk[2048] = "this is not a tar archive at all";
	is_int(tar_extract_memory(junk, sizeof(junk), d4, NULL, NULL, &err), -EINVAL,
	       "garbage refused");
	ok(strstr(err.message, "not a valid tar archive"), "garbage message: %s", err.message);
	static char trunc[1 << 16];
	size_t n = build(ents, 3, 0, trunc, sizeof(trunc));
	is_int(tar_extract_memory(trunc, n / 2 + 100, d4, NULL, NULL, &err), -EINVAL,
	       "truncated archive refused");
}

static void test_probe(void)
{
	static char buf[1 << 16];
	const struct ent ents[] = { { "a", AE_IFREG, 0644, "x" } };
	char path[128];
	snprintf(path, sizeof(path), "%s/probe", tmp_root);
	for (int filter = 0; filter < 3; filter++) {
		size_t n = build(ents, 1, filter, buf, sizeof(buf));
		_cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		write_all(fd, buf, n);
		ok(tar_probe_fd(fd), "probe: tar with filter %d recognised", filter);
		ok(lseek(fd, 0, SEEK_CUR) == (off_t)n, "probe: offset untouched");
	}
	_cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	write_all(fd, "hello world\n", 12);
	ok(!tar_probe_fd(fd), "probe: text is not a tar");
	ok(ftruncate(fd, 0) == 0, "probe: emptied");
	ok(!tar_probe_fd(fd), "probe: empty file is not a tar");
}

int main(void)
{
	snprintf(tmp_root, sizeof(tmp_root), "/tmp/hutch-test-tar-XXXXXX");
	if (!mkdtemp(tmp_root))
		return 1;
	test_normalize();
	if (geteuid() != 0) {
		skip("needs root (ownership, capabilities, whiteout device nodes)", "extraction");
	} else {
		test_basic(0, "plain");
		test_basic(1, "gzip");
		test_basic(2, "zstd");
		test_escapes();
		test_whiteouts();
		test_limits();
	}
	test_probe();
	_cleanup_close_ int fd = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	rm_rf_at(fd, tmp_root + 5);
	return done();
}
