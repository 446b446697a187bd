/* /files helpers: Accept-Encoding, upload metadata, errno → status, and the streaming upload
 * API driven on a scratch directory. */
#include <fcntl.h>
#include <sys/stat.h>
#include <zlib.h>
#include <ftw.h>
#include <sys/xattr.h>
#include "envd.h"
#include "tap.h"

/* envd's shared state lives in main.c, which the test does not link. */

static const char *const enc_names[] = { "identity", "gzip", "unacceptable" };

static void check_enc(const char *header, enum files_encoding want)
{
	enum files_encoding got = files_accept_encoding(header);
	ok(got == want, "accept-encoding \"%s\" → %s", header ? header : "(null)", enc_names[want]);
	if (got != want)
		diag("  got %s", (unsigned)got < 3 ? enc_names[got] : "?");
}

static void test_accept_encoding(void)
{
	check_enc(NULL, FILES_ENCODING_IDENTITY);
	check_enc("", FILES_ENCODING_IDENTITY);
	check_enc("gzip", FILES_ENCODING_GZIP);
	check_enc("GZip", FILES_ENCODING_GZIP);
	check_enc("gzip, deflate, br", FILES_ENCODING_GZIP);
	check_enc("br;q=1.0, gzip;q=0.5", FILES_ENCODING_GZIP);
	check_enc(" gzip ; q=0.9 ", FILES_ENCODING_GZIP);
	check_enc("identity", FILES_ENCODING_IDENTITY);
	check_enc("*", FILES_ENCODING_IDENTITY);
	check_enc("br", FILES_ENCODING_IDENTITY);
	check_enc("gzip;q=0", FILES_ENCODING_IDENTITY);
	check_enc("gzip;q=0.5, identity;q=0.8", FILES_ENCODING_IDENTITY);
	check_enc("identity;q=0.5, gzip;q=0.8", FILES_ENCODING_GZIP);
	check_enc("identity;q=0", FILES_ENCODING_UNACCEPTABLE);
	check_enc("identity;q=0, gzip", FILES_ENCODING_GZIP);
	check_enc("*;q=0", FILES_ENCODING_UNACCEPTABLE);
	check_enc("*;q=0, gzip;q=0", FILES_ENCODING_UNACCEPTABLE);
	check_enc("*;q=0, identity", FILES_ENCODING_IDENTITY);
	check_enc("identity;q=0, *", FILES_ENCODING_GZIP);
	check_enc("gzip;q=abc", FILES_ENCODING_GZIP);
	check_enc(",,,", FILES_ENCODING_IDENTITY);
	check_enc(";q=0", FILES_ENCODING_IDENTITY);
	check_enc("averyveryverylongcodingname, gzip", FILES_ENCODING_GZIP);

	ok(files_identity_acceptable(NULL), "identity acceptable: no header");
	ok(files_identity_acceptable("gzip"), "identity acceptable: gzip");
	ok(!files_identity_acceptable("identity;q=0"), "identity not acceptable: identity;q=0");
	ok(!files_identity_acceptable("gzip, *;q=0"), "identity not acceptable: *;q=0");
	ok(files_identity_acceptable("*;q=0, identity;q=0.1"),
	   "identity acceptable: *;q=0 with identity;q=0.1");
}

static void test_metadata(void)
{
	_cleanup_json_ json_t *m = json_object();
	struct upload_error err = { 0 };
	is_int(upload_metadata_add(m, "Author", "alice"), 0, "metadata add: Author");
	is_int(upload_metadata_add(m, "AUTHOR", "bob"), 0, "metadata add: duplicate key");
	is_str(json_string_value(json_object_get(m, "author")), "alice",
	       "metadata add: lowercased, first value wins");
	is_int(upload_metadata_add(m, "", "x"), 0, "metadata add: empty key skipped");
	is_int(json_object_size(m), 1, "metadata add: one key");
	is_int(upload_metadata_add(m, "Empty", NULL), 0, "metadata add: NULL value");
	is_str(json_string_value(json_object_get(m, "empty")), "",
	       "metadata add: NULL value → \"\"");
	is_int(upload_metadata_validate(m, &err), 0, "metadata validate: ok");
	is_int(upload_metadata_validate(NULL, &err), 0, "metadata validate: NULL");

	static const struct {
		const char *key, *value;
	} bad[] = {
		{ "k\x7f", "v" }, { "k", "line\nbreak" }, { "k", "tab\t" }, { "k", "caf\xc3\xa9" },
		{ "", "v" },
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		_cleanup_json_ json_t *b = json_object();
		json_object_set_new_nocheck(b, bad[i].key, json_string_nocheck(bad[i].value));
		memset(&err, 0, sizeof(err));
		int r = upload_metadata_validate(b, &err);
		ok(r == -EINVAL && err.status == 400 && startswith(err.message, "invalid metadata"),
		   "metadata validate: bad case %zu rejected with 400", i);
	}

	char key[300];
	memset(key, 'k', sizeof(key));
	key[UPLOAD_METADATA_MAX_KEY] = 0;
	_cleanup_json_ json_t *k1 = json_object();
	json_object_set_new(k1, key, json_string("v"));
	is_int(upload_metadata_validate(k1, &err), 0, "metadata validate: 246-byte key");
	key[UPLOAD_METADATA_MAX_KEY] = 'k';
	key[UPLOAD_METADATA_MAX_KEY + 1] = 0;
	_cleanup_json_ json_t *k2 = json_object();
	json_object_set_new(k2, key, json_string("v"));
	is_int(upload_metadata_validate(k2, &err), -EINVAL, "metadata validate: 247-byte key");

	_cleanup_json_ json_t *ns = json_object();
	json_object_set_new(ns, "n", json_integer(1));
	is_int(upload_metadata_validate(ns, &err), -EINVAL, "metadata validate: non-string value");

	/* Σ(len("user.e2b.") + key + value): 9 + 1 + 4086 = 4096 is the limit. */
	char value[5000];
	memset(value, 'v', sizeof(value));
	value[4086] = 0;
	_cleanup_json_ json_t *t1 = json_object();
	json_object_set_new(t1, "k", json_string(value));
	is_int(upload_metadata_validate(t1, &err), 0, "metadata validate: total exactly 4096");
	value[4086] = 'v';
	value[4087] = 0;
	_cleanup_json_ json_t *t2 = json_object();
	json_object_set_new(t2, "k", json_string(value));
	is_int(upload_metadata_validate(t2, &err), -EINVAL, "metadata validate: total 4097");
}

static void test_errno_status(void)
{
	is_int(files_errno_status(-ENOSPC), 507, "errno status: ENOSPC");
	is_int(files_errno_status(-EDQUOT), 507, "errno status: EDQUOT");
	is_int(files_errno_status(-EACCES), 403, "errno status: EACCES");
	is_int(files_errno_status(-EPERM), 403, "errno status: EPERM");
	is_int(files_errno_status(-ENOENT), 404, "errno status: ENOENT");
	is_int(files_errno_status(-EISDIR), 400, "errno status: EISDIR");
	is_int(files_errno_status(-ENOTDIR), 400, "errno status: ENOTDIR");
	is_int(files_errno_status(-ENAMETOOLONG), 400, "errno status: ENAMETOOLONG");
	is_int(files_errno_status(-EIO), 500, "errno status: EIO");
}

/* ---- uploads on a scratch tree ---- */

static char root[] = "/tmp/test-files-XXXXXX";
static int rootfd = -1;
static struct user_info user;

static char *read_file(const char *rel, size_t *len)
{
	int fd = openat(rootfd, rel, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	char *buf = calloc(1, 1 << 16);
	ssize_t n = buf ? read(fd, buf, (1 << 16) - 1) : -1;
	close(fd);
	if (n < 0) {
		free(buf);
		return NULL;
	}
	*len = (size_t)n;
	return buf;
}

static bool file_is(const char *rel, const char *want)
{
	size_t len = 0;
	_cleanup_free_ char *got = read_file(rel, &len);
	if (!got)
		diag("  %s: %s", rel, strerror(errno));
	else if (len != strlen(want) || memcmp(got, want, len) != 0)
		diag("  %s: got \"%.*s\"", rel, (int)len, got);
	return got && len == strlen(want) && memcmp(got, want, len) == 0;
}

static size_t gzip_bytes(const char *in, unsigned char *out, size_t cap)
{
	z_stream z = { 0 };
	if (deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return 0;
	z.next_in = (unsigned char *)in;
	z.avail_in = (uInt)strlen(in);
	z.next_out = out;
	z.avail_out = (uInt)cap;
	int r = deflate(&z, Z_FINISH);
	size_t n = cap - z.avail_out;
	deflateEnd(&z);
	return r == Z_STREAM_END ? n : 0;
}

static void test_upload_raw(void)
{
	_cleanup_(upload_freep) struct upload *up = NULL;
	is_int(upload_new(rootfd, &user, NULL, false, "/home/user/a/b/raw.txt", &up), 0,
	       "raw upload: new");
	ok(upload_feed(up, "hello ", 6) == 0 && upload_feed(up, "world", 5) == 0,
	   "raw upload: feed two chunks");
	is_int(upload_finish(up), 0, "raw upload: finish");
	ok(file_is("home/user/a/b/raw.txt", "hello world"),
	   "raw upload: content, missing parents created");
	json_t *res = upload_result(up);
	json_t *e = json_array_get(res, 0);
	ok(json_array_size(res) == 1 &&
	       streq(json_string_value(json_object_get(e, "path")), "/home/user/a/b/raw.txt") &&
	       streq(json_string_value(json_object_get(e, "name")), "raw.txt") &&
	       streq(json_string_value(json_object_get(e, "type")), "file"),
	   "raw upload: result [{path, name, type}]");
	up = upload_free(up);

	/* An empty body truncates an existing file. */
	is_int(upload_new(rootfd, &user, NULL, false, "/home/user/a/b/raw.txt", &up), 0,
	       "empty raw upload: new");
	is_int(upload_finish(up), 0, "empty raw upload: finish");
	ok(file_is("home/user/a/b/raw.txt", ""), "empty raw upload: file truncated");
	is_int(json_array_size(upload_result(up)), 1, "empty raw upload: one entry");
	up = upload_free(up);

	/* A directory as target. */
	is_int(upload_new(rootfd, &user, NULL, false, "/home/user/a", &up), 0, "raw to dir: new");
	ok(upload_feed(up, "x", 1) < 0, "raw to dir: feed fails");
	is_int(upload_error(up)->status, 400, "raw to dir: 400");
	ok(strstr(upload_error(up)->message, "directory") != NULL, "raw to dir: says directory");
	ok(upload_finish(up) < 0, "raw to dir: finish keeps failing");
	up = upload_free(up);

	/* No path for a raw body. */
	is_int(upload_new(rootfd, &user, NULL, false, NULL, &up), 0, "raw without path: new");
	ok(upload_feed(up, "x", 1) < 0 && upload_error(up)->status == 400, "raw without path: 400");
}

static void test_upload_gzip(void)
{
	unsigned char gz[256], gz2[256];
	size_t n = gzip_bytes("hello gzip ", gz, sizeof(gz));
	size_t n2 = gzip_bytes("and more", gz2, sizeof(gz2));
	ok(n > 0 && n2 > 0, "gzip: compress fixtures");

	_cleanup_(upload_freep) struct upload *up = NULL;
	is_int(upload_new(rootfd, &user, NULL, true, "/gz.txt", &up), 0, "gzip upload: new");
	bool fed = true;
	for (size_t i = 0; i < n; i++) /* byte by byte */
		if (upload_feed(up, gz + i, 1) < 0)
			fed = false;
	ok(fed && upload_feed(up, gz2, n2) == 0, "gzip upload: two members, byte by byte");
	is_int(upload_finish(up), 0, "gzip upload: finish");
	ok(file_is("gz.txt", "hello gzip and more"), "gzip upload: concatenated members inflated");
	up = upload_free(up);

	is_int(upload_new(rootfd, &user, NULL, true, "/gz-trunc.txt", &up), 0,
	       "truncated gzip: new");
	upload_feed(up, gz, n - 4);
	ok(upload_finish(up) < 0 && upload_error(up)->status == 400 &&
	       strstr(upload_error(up)->message, "unexpected EOF"),
	   "truncated gzip: 400 unexpected EOF");
	up = upload_free(up);

	is_int(upload_new(rootfd, &user, NULL, true, "/gz-empty.txt", &up), 0, "empty gzip: new");
	ok(upload_finish(up) < 0 && upload_error(up)->status == 400, "empty gzip body: 400");
	up = upload_free(up);

	is_int(upload_new(rootfd, &user, NULL, true, "/gz-bad.txt", &up), 0, "bad gzip: new");
	ok(upload_feed(up, "not gzip at all", 15) < 0 && upload_error(up)->status == 400,
	   "bad gzip: 400");
}

static void test_upload_multipart(void)
{
	_cleanup_(upload_freep) struct upload *up = NULL;
	is_int(upload_new(rootfd, &user, NULL, false, NULL, &up), 0, "multipart: new");
	upload_set_multipart(up, NULL, NULL, NULL);
	ok(upload_part(up, "file", "x.txt", "abc", 0, 3) == 0 &&
	       upload_part(up, "file", "x.txt", "def", 3, 3) == 0,
	   "multipart: relative filename in two chunks");
	ok(upload_part(up, "other", "ignored.txt", "zzz", 0, 3) == 0,
	   "multipart: other part ignored");
	ok(upload_part(up, "file", "/abs/dir/y.txt", "y", 0, 1) == 0,
	   "multipart: absolute filename");
	is_int(upload_finish(up), 0, "multipart: finish");
	ok(file_is("home/user/x.txt", "abcdef"), "multipart: x.txt under home");
	ok(file_is("abs/dir/y.txt", "y"), "multipart: y.txt at its absolute path");
	ok(faccessat(rootfd, "ignored.txt", F_OK, 0) < 0 &&
	       faccessat(rootfd, "home/user/ignored.txt", F_OK, 0) < 0,
	   "multipart: ignored part not written");
	json_t *res = upload_result(up);
	ok(json_array_size(res) >= 2 &&
	       streq(json_string_value(json_object_get(json_array_get(res, 0), "path")),
		     "/home/user/x.txt"),
	   "multipart: result lists x.txt first");
	up = upload_free(up);

	is_int(upload_new(rootfd, &user, NULL, false, NULL, &up), 0, "duplicate: new");
	upload_set_multipart(up, NULL, NULL, NULL);
	upload_part(up, "file", "dup.txt", "1", 0, 1);
	ok(upload_part(up, "file", "~/dup.txt", "2", 0, 1) < 0, "duplicate: second part fails");
	ok(upload_error(up)->status == 400 && strstr(upload_error(up)->message, "multiple files"),
	   "duplicate: 400 multiple files");
	ok(file_is("home/user/dup.txt", "1"), "duplicate: first file kept");
	up = upload_free(up);

	is_int(upload_new(rootfd, &user, NULL, false, NULL, &up), 0, "fixed path: new");
	upload_set_multipart(up, "/fixed/target.bin", NULL, NULL);
	ok(upload_part(up, "file", "whatever.txt", "F", 0, 1) == 0, "fixed path: part");
	is_int(upload_finish(up), 0, "fixed path: finish");
	ok(file_is("fixed/target.bin", "F"), "fixed path: written to the path query");
	up = upload_free(up);

	is_int(upload_new(rootfd, &user, NULL, false, NULL, &up), 0, "no filename: new");
	upload_set_multipart(up, NULL, NULL, NULL);
	ok(upload_part(up, "file", NULL, "x", 0, 1) < 0 && upload_error(up)->status == 400,
	   "no filename: 400");
	up = upload_free(up);

	is_int(upload_new(rootfd, &user, NULL, false, NULL, &up), 0, "~other: new");
	upload_set_multipart(up, NULL, NULL, NULL);
	ok(upload_part(up, "file", "~other/x", "x", 0, 1) < 0 && upload_error(up)->status == 400,
	   "~other filename: 400");
	up = upload_free(up);

	/* An empty "file" part, then another field with the same filename: not a continuation. */
	is_int(upload_new(rootfd, &user, NULL, false, NULL, &up), 0, "empty part: new");
	upload_set_multipart(up, NULL, NULL, NULL);
	ok(upload_part(up, "file", "cont.txt", "", 0, 0) == 0, "empty part: announced");
	ok(upload_part(up, "other", "cont.txt", "evil", 0, 4) == 0, "empty part: other field");
	is_int(upload_finish(up), 0, "empty part: finish");
	ok(file_is("home/user/cont.txt", ""), "empty part: other field's data not written");
	up = upload_free(up);

	/* The same field and filename again does continue the part (libmicrohttpd's pattern). */
	is_int(upload_new(rootfd, &user, NULL, false, NULL, &up), 0, "continuation: new");
	upload_set_multipart(up, NULL, NULL, NULL);
	ok(upload_part(up, "file", "cont2.txt", "", 0, 0) == 0 &&
	       upload_part(up, "file", "cont2.txt", "good", 0, 4) == 0,
	   "continuation: announced then data");
	is_int(upload_finish(up), 0, "continuation: finish");
	ok(file_is("home/user/cont2.txt", "good"), "continuation: data written");
}

static void test_upload_metadata(void)
{
	_cleanup_json_ json_t *meta = json_pack("{s:s}", "author", "alice");
	_cleanup_(upload_freep) struct upload *up = NULL;
	is_int(upload_new(rootfd, &user, meta, false, "/meta.txt", &up), 0, "metadata upload: new");
	upload_feed(up, "m", 1);
	is_int(upload_finish(up), 0, "metadata upload: finish");
	json_t *m = json_object_get(json_array_get(upload_result(up), 0), "metadata");
	char v[16] = "";
	char path[128];
	snprintf(path, sizeof(path), "%s/meta.txt", root);
	ssize_t vl = getxattr(path, "user.e2b.author", v, sizeof(v) - 1);
	if (vl < 0 && (errno == ENOTSUP || errno == EOPNOTSUPP)) {
		skip("no user xattrs on this filesystem", "metadata upload: xattr written");
		skip("no user xattrs on this filesystem", "metadata upload: reported");
	} else {
		ok(vl == 5 && memcmp(v, "alice", 5) == 0, "metadata upload: xattr written");
		is_str(json_string_value(json_object_get(m, "author")), "alice",
		       "metadata upload: reported");
	}
	up = upload_free(up);

	/* A new upload without metadata clears the old set. */
	is_int(upload_new(rootfd, &user, NULL, false, "/meta.txt", &up), 0, "metadata clear: new");
	is_int(upload_finish(up), 0, "metadata clear: finish");
	ok(getxattr(path, "user.e2b.author", v, sizeof(v)) < 0, "metadata clear: xattr removed");
	ok(!json_object_get(json_array_get(upload_result(up), 0), "metadata"),
	   "metadata clear: none reported");
}

/* More than 16 KiB of xattr names (ext4 keeps xattrs in one block, so on tmpfs): user.e2b.* must
 * still be found and removed. */
static void test_upload_big_xattr_list(void)
{
	char dir[] = "/dev/shm/test-files-XXXXXX";
	const char *what = "metadata big list: stale user.e2b.* removed";
	if (!mkdtemp(dir)) {
		skip("no /dev/shm", "%s", what);
		return;
	}
	char path[64];
	snprintf(path, sizeof(path), "%s/big.txt", dir);
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	int added = 0;
	for (int i = 0; fd >= 0 && i < 100; i++) {
		char name[XATTR_NAME_MAX + 1];
		snprintf(name, sizeof(name), "user.filler%03d.%0200d", i, 0);
		if (fsetxattr(fd, name, "x", 1, 0) < 0)
			break;
		added++;
	}
	if (added < 100 || fsetxattr(fd, "user.e2b.stale", "old", 3, 0) < 0 ||
	    flistxattr(fd, NULL, 0) <= 16 * 1024) {
		skip("cannot set 100 long user xattrs on /dev/shm", "%s", what);
	} else {
		_cleanup_close_ int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
		_cleanup_(upload_freep) struct upload *up = NULL;
		char v[16];
		is_int(upload_new(dfd, &user, NULL, false, "/big.txt", &up), 0,
		       "metadata big list: new");
		is_int(upload_finish(up), 0, "metadata big list: finish");
		char filler[XATTR_NAME_MAX + 1];
		snprintf(filler, sizeof(filler), "user.filler%03d.%0200d", 0, 0);
		ok(fgetxattr(fd, "user.e2b.stale", v, sizeof(v)) < 0 && errno == ENODATA &&
		       fgetxattr(fd, filler, v, sizeof(v)) == 1,
		   "%s", what);
	}
	unlink(path);
	rmdir(dir);
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(p);
}

int main(void)
{
	test_accept_encoding();
	test_metadata();
	test_errno_status();

	if (!mkdtemp(root) || (rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
		ok(false, "scratch directory: %s", strerror(errno));
		return done();
	}
	if (user_lookup_uid(geteuid(), &user) < 0)
		user.uid = geteuid();
	user.gid = getegid();
	snprintf(user.home, sizeof(user.home), "/home/user");
	fsid_enter(&user);
	test_upload_raw();
	test_upload_gzip();
	test_upload_multipart();
	test_upload_metadata();
	test_upload_big_xattr_list();
	fsid_leave();

	close(rootfd);
	nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return done();
}
