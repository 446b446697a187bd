/* envd path expansion and lexical normalisation. */
#include "envd.h"
#include "tap.h"

static void check_norm(const char *in, const char *want)
{
	_cleanup_free_ char *got = path_normalize(in);
	is_str(got, want, "path_normalize(\"%s\")", in);
}

static void test_normalize(void)
{
	check_norm("/", "/");
	check_norm("", "/");
	check_norm("//", "/");
	check_norm("/a/b/c", "/a/b/c");
	check_norm("/a//b///c/", "/a/b/c");
	check_norm("/./a/./b/.", "/a/b");
	check_norm("/a/b/../c", "/a/c");
	check_norm("/a/b/../../..", "/");
	check_norm("/..", "/");
	check_norm("/../../etc/passwd", "/etc/passwd");
	check_norm("/a/..b/c..", "/a/..b/c..");
	check_norm("/a/.../b", "/a/.../b");
	check_norm("/.hidden/./x", "/.hidden/x");
	check_norm("/a/b/..", "/a");
	check_norm("/a/b/../", "/a");
	check_norm("/a/./../b", "/b");
	check_norm("a/b", "/a/b");
	check_norm("/ü/ñ", "/ü/ñ");
}

static const struct user_info user = {
	.uid = 1000, .gid = 1000, .name = "user", .home = "/home/user"
};

static void check_expand(const char *path, const char *base, const char *want)
{
	char *got = NULL;
	int r = path_expand(path, &user, base, &got);
	if (r < 0)
		diag("  path_expand returned %d", r);
	is_str(got, want, "path_expand(\"%s\", base %s)", path ? path : "(null)",
	       base ? base : "(null)");
	free(got);
}

static void check_expand_fails(const char *path, int want)
{
	char *got = (char *)"untouched";
	is_int(path_expand(path, &user, NULL, &got), want, "path_expand(\"%.40s\") → %d", path,
	       want);
	ok(got && streq(got, "untouched"), "path_expand(\"%.40s\") leaves *out alone", path);
}

static void test_expand(void)
{
	check_expand("~", NULL, "/home/user");
	check_expand("~/", NULL, "/home/user");
	check_expand("~/x", NULL, "/home/user/x");
	check_expand("~/x/../y", NULL, "/home/user/y");
	check_expand("~/../../../etc", NULL, "/etc");
	check_expand("x", NULL, "/home/user/x");
	check_expand("./x/./y/", NULL, "/home/user/x/y");
	check_expand("../other", NULL, "/home/other");
	check_expand("../../../../..", NULL, "/");
	check_expand("/abs/path", NULL, "/abs/path");
	check_expand("/abs/../../..", NULL, "/");
	check_expand("//etc//passwd", NULL, "/etc/passwd");
	check_expand("", NULL, "/home/user");
	check_expand(NULL, NULL, "/home/user");
	check_expand("", "", "/home/user");
	check_expand("", "/work/dir/", "/work/dir");
	check_expand(NULL, "/work", "/work");
	/* As in E2B's envd, only the empty path takes the default workdir. */
	check_expand("x", "/work", "/home/user/x");
	check_expand("~", "/work", "/home/user");
	check_expand("/abs", "/work", "/abs");
	check_expand("a~b", NULL, "/home/user/a~b");
	check_expand("x/~", NULL, "/home/user/x/~");

	check_expand_fails("~other", -EINVAL);
	check_expand_fails("~root/x", -EINVAL);
	check_expand_fails("~.", -EINVAL);

	char long_path[4200];
	long_path[0] = '/';
	memset(long_path + 1, 'a', sizeof(long_path) - 2);
	long_path[sizeof(long_path) - 1] = 0;
	check_expand_fails(long_path, -ENAMETOOLONG);

	/* A 4096-byte path is still fine. */
	long_path[4096] = 0;
	char *got = NULL;
	is_int(path_expand(long_path, &user, NULL, &got), 0,
	       "path_expand: 4096-byte path accepted");
	ok(got && strlen(got) == 4096, "path_expand: 4096-byte path kept whole");
	free(got);

	/* Home of "/" (root in minimal images) does not produce "//x". */
	struct user_info root = user;
	snprintf(root.home, sizeof(root.home), "/");
	got = NULL;
	path_expand("~/x", &root, NULL, &got);
	is_str(got, "/x", "path_expand: home \"/\" + ~/x");
	free(got);
	got = NULL;
	path_expand("rel", &root, NULL, &got);
	is_str(got, "/rel", "path_expand: home \"/\" + relative");
	free(got);
}

int main(void)
{
	test_normalize();
	test_expand();
	return done();
}
