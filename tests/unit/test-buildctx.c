/* The build context: globs, .dockerignore, the SDK's files hash and the tar.gz upload. */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include "common/strbuf.h"
#include "template/buildctx.h"
#include "tap.h"

static char ctx[] = "/tmp/hutch-test-buildctx-XXXXXX";

static void put(const char *rel, const char *content, mode_t mode)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", ctx, rel);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, content, strlen(content)) != (ssize_t)strlen(content))
		diag("cannot write %s", path);
	if (fd >= 0)
		close(fd);
	chmod(path, mode);
}

static void dir(const char *rel)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", ctx, rel);
	mkdir(path, 0755);
}

static char *names(const struct buildctx_files *f)
{
	struct strbuf sb = { 0 };
	for (size_t i = 0; i < f->n; i++)
		strbuf_printf(&sb, "%s[%s]", i ? " " : "", f->v[i].rel);
	return sb.data ? strbuf_steal(&sb) : strdup("");
}

static void check_collect(int fd, const char *src, const struct buildctx_ignore *ign,
			  const char *want)
{
	struct buildctx_files f;
	int r = buildctx_collect(fd, src, ign, &f);
	_cleanup_free_ char *got = r == 0 ? names(&f) : NULL;
	is_str(got, want, "collect '%s'", src);
	if (r == 0)
		buildctx_files_free(&f);
}

/* Expected hashes computed by the e2b SDK 2.51 (Template().copy(...).toJSON(true)) over the
 * same files: hello.txt "hello\n" 0644, b.txt "second file\n" 0600, link → hello.txt. */
static void test_sdk_hash(int fd)
{
	static const struct {
		const char *src, *dest, *hash;
	} cases[] = {
		{ "hello.txt", "/app/",
		  "4dd5aecb721a41a82cbb86b502c4bd814c9538f673dbf53143e5ac5f64efd2f4" },
		{ "*.txt", "/d/",
		  "3c5ac0fcf5eace988b883b92d210d2baddc02c9fc296448c916a584fd1893104" },
		{ "link", "/l",
		  "f58c6b29b7da76b1056fcca40cc43bcaba735a492e9d53fe5ad0d190bd911de5" },
	};
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		struct buildctx_files f;
		char hex[65] = "";
		int r = buildctx_collect(fd, cases[i].src, NULL, &f);
		if (r == 0) {
			r = buildctx_hash(fd, cases[i].src, cases[i].dest, &f, hex);
			buildctx_files_free(&f);
		}
		is_int(r, 0, "hash %s: computed", cases[i].src);
		is_str(hex, cases[i].hash, "hash %s %s equals the SDK's", cases[i].src,
		       cases[i].dest);
	}
	/* Content and mode are inputs, the mtime is not. */
	struct buildctx_files f;
	char h1[65], h2[65], h3[65];
	buildctx_collect(fd, "hello.txt", NULL, &f);
	buildctx_hash(fd, "hello.txt", "/app/", &f, h1);
	buildctx_files_free(&f);
	put("hello.txt", "hellO\n", 0644);
	buildctx_collect(fd, "hello.txt", NULL, &f);
	buildctx_hash(fd, "hello.txt", "/app/", &f, h2);
	buildctx_files_free(&f);
	put("hello.txt", "hello\n", 0644);
	buildctx_collect(fd, "hello.txt", NULL, &f);
	buildctx_hash(fd, "hello.txt", "/app/", &f, h3);
	buildctx_files_free(&f);
	ok(strcmp(h1, h2) != 0, "a content change changes the hash");
	is_str(h3, h1, "same content again: same hash (mtime is not an input)");
}

static void test_glob_ignore(int fd)
{
	ok(buildctx_glob_match("a/*.c", "a/x.c"), "glob: * in a segment");
	ok(!buildctx_glob_match("a/*.c", "a/b/x.c"), "glob: * does not cross /");
	ok(buildctx_glob_match("**/x.c", "x.c") && buildctx_glob_match("**/x.c", "a/b/x.c"),
	   "glob: ** spans zero or more segments");
	ok(buildctx_glob_match("a/**", "a/b/c") && !buildctx_glob_match("a/**/z", "a/b/c"),
	   "glob: trailing ** and a non-match");
	ok(buildctx_glob_match(".*", ".hidden") && buildctx_glob_match("?[a-c]", "xb"),
	   "glob: dot files, ? and classes");

	struct buildctx_ignore ign;
	is_int(buildctx_ignore_parse("# comment\n\n  node_modules/ \n*.log\n!keep.log\n/build\n"
				     "**/*.tmp\n",
				     &ign),
	       0, "dockerignore parses");
	is_int(ign.n, 5, "five patterns");
	ok(buildctx_ignored(&ign, "node_modules") && buildctx_ignored(&ign, "node_modules/x/y.js"),
	   "a directory pattern excludes what is below it");
	ok(buildctx_ignored(&ign, "a.log") && !buildctx_ignored(&ign, "keep.log"),
	   "! exceptions, last match wins");
	ok(!buildctx_ignored(&ign, "sub/a.log"), "*.log is anchored at the context root");
	ok(buildctx_ignored(&ign, "build/out") && buildctx_ignored(&ign, "x/y/z.tmp"),
	   "leading / and ** patterns");
	ok(!buildctx_ignored(&ign, "src/main.c"), "other files kept");

	dir("sub");
	dir("sub/deep");
	dir("node_modules");
	put("sub/a.c", "a", 0644);
	put("sub/deep/b.c", "b", 0644);
	put("sub/deep/x.log", "log", 0644);
	put("node_modules/m.js", "m", 0644);
	put("keep.log", "k", 0644);
	put("drop.log", "d", 0644);
	check_collect(fd, "sub", &ign,
		      "[sub] [sub/a.c] [sub/deep] [sub/deep/b.c] [sub/deep/x.log]");
	check_collect(fd, "sub/**/*.c", &ign, "[sub/a.c] [sub/deep/b.c]");
	check_collect(fd, "*.log", &ign, "[keep.log]");
	check_collect(fd, ".", &ign,
		      "[] [b.txt] [hello.txt] [keep.log] [link] [sub] [sub/a.c] [sub/deep] "
		      "[sub/deep/b.c] [sub/deep/x.log]");
	struct buildctx_files f;
	is_int(buildctx_collect(fd, "missing*", &ign, &f), -ENOENT, "no match: -ENOENT");
	is_int(buildctx_collect(fd, "hello.txt/x", &ign, &f), -ENOENT, "through a file: -ENOENT");
	is_int(buildctx_collect(fd, "node_modules", &ign, &f), -ENOENT, "all ignored: -ENOENT");
	buildctx_ignore_free(&ign);
}

static void test_tar(int fd)
{
	struct buildctx_files f;
	is_int(buildctx_collect(fd, ".", NULL, &f), 0, "collect the whole context");
	char tpath[] = "/tmp/hutch-test-buildctx-tar-XXXXXX";
	int tfd = mkstemp(tpath);
	unlink(tpath);
	is_int(buildctx_write_tar(fd, &f, tfd), 0, "tar.gz written");
	buildctx_files_free(&f);
	lseek(tfd, 0, SEEK_SET);
	unsigned char magic[2] = { 0 };
	ok(read(tfd, magic, 2) == 2 && magic[0] == 0x1f && magic[1] == 0x8b, "gzip magic");
	lseek(tfd, 0, SEEK_SET);

	struct archive *a = archive_read_new();
	archive_read_support_filter_all(a);
	archive_read_support_format_all(a);
	is_int(archive_read_open_fd(a, tfd, 16384), ARCHIVE_OK, "libarchive reads it back");
	struct archive_entry *e;
	struct strbuf seen = { 0 };
	bool owners_root = true, hello_ok = false, link_ok = false, mode_ok = false;
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		const char *p = archive_entry_pathname(e);
		strbuf_printf(&seen, "%s ", p);
		owners_root &= archive_entry_uid(e) == 0 && archive_entry_gid(e) == 0;
		if (streq(p, "hello.txt")) {
			char buf[64] = { 0 };
			ssize_t n = archive_read_data(a, buf, sizeof(buf) - 1);
			hello_ok = n == 6 && streq(buf, "hello\n");
		}
		if (streq(p, "b.txt"))
			mode_ok = (archive_entry_mode(e) & 07777) == 0600;
		if (streq(p, "link"))
			link_ok = archive_entry_filetype(e) == AE_IFLNK &&
				  streq(archive_entry_symlink(e), "hello.txt");
	}
	archive_read_free(a);
	close(tfd);
	ok(seen.data && strstr(seen.data, "sub/deep/b.c") && strstr(seen.data, "node_modules/m.js"),
	   "entries relative to the context: %s", seen.data ? seen.data : "");
	ok(seen.data && !strstr(seen.data, "/tmp"), "no absolute paths");
	ok(owners_root, "owner 0:0");
	ok(hello_ok, "file content round-trips");
	ok(mode_ok, "mode kept");
	ok(link_ok, "symlink kept as a symlink");
	strbuf_free(&seen);

	/* ADD: only tar archives are extracted. */
	char apath[600];
	snprintf(apath, sizeof(apath), "%s/arch.tgz", ctx);
	int afd = open(apath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	struct buildctx_files one;
	buildctx_collect(fd, "hello.txt", NULL, &one);
	buildctx_write_tar(fd, &one, afd);
	buildctx_files_free(&one);
	close(afd);
	is_int(buildctx_is_archive(fd, "arch.tgz"), 1, "a tar.gz is an archive");
	is_int(buildctx_is_archive(fd, "hello.txt"), 0, "a text file is not");
	is_int(buildctx_is_archive(fd, "sub"), 0, "a directory is not");
	is_int(buildctx_is_archive(fd, "nope"), -ENOENT, "missing: -ENOENT");
}

int main(void)
{
	if (!mkdtemp(ctx))
		return 1;
	put("hello.txt", "hello\n", 0644);
	put("b.txt", "second file\n", 0600);
	char l[600];
	snprintf(l, sizeof(l), "%s/link", ctx);
	if (symlink("hello.txt", l) < 0)
		diag("symlink failed");
	int fd = open(ctx, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	test_sdk_hash(fd);
	test_glob_ignore(fd);
	test_tar(fd);
	close(fd);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", ctx);
	if (system(cmd) != 0)
		diag("cleanup failed");
	return done();
}
