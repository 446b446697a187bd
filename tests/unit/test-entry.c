/* EntryInfo pieces: Go's FileMode.String(), file types, lossy UTF-8 names, inotify mapping. */
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include "envd.h"
#include "common/util.h"
#include "tap.h"

/* envd's shared state lives in main.c, which the test does not link. */

static void check_mode(mode_t mode, const char *want)
{
	char buf[ENTRY_MODE_STRING_MAX];
	memset(buf, 'X', sizeof(buf));
	entry_mode_string(mode, buf, sizeof(buf));
	is_str(buf, want, "entry_mode_string(0%o)", (unsigned)mode);
}

static void test_mode_string(void)
{
	check_mode(S_IFREG | 0644, "-rw-r--r--");
	check_mode(S_IFREG | 0, "----------");
	check_mode(S_IFREG | 0777, "-rwxrwxrwx");
	check_mode(S_IFREG | 0421, "-r---w---x");
	check_mode(S_IFDIR | 0755, "drwxr-xr-x");
	check_mode(S_IFLNK | 0777, "Lrwxrwxrwx");
	check_mode(S_IFDIR | 01777, "dtrwxrwxrwx");
	check_mode(S_IFREG | 04755, "urwxr-xr-x");
	check_mode(S_IFREG | 02755, "grwxr-xr-x");
	check_mode(S_IFDIR | 02000 | 01000 | 0770, "dgtrwxrwx---");
	check_mode(S_IFREG | 07777, "ugtrwxrwxrwx");
	check_mode(S_IFCHR | 0620, "Dcrw--w----");
	check_mode(S_IFCHR | 04666, "Ducrw-rw-rw-");
	check_mode(S_IFBLK | 0660, "Drw-rw----");
	check_mode(S_IFIFO | 0644, "prw-r--r--");
	check_mode(S_IFSOCK | 0755, "Srwxr-xr-x");

	char small[4];
	memset(small, 'X', sizeof(small));
	entry_mode_string(S_IFREG | 0644, small, sizeof(small));
	is_str(small, "-rw", "entry_mode_string: truncated to the buffer");
	char none[2] = "X";
	entry_mode_string(S_IFREG | 0644, none, 0);
	ok(none[0] == 'X', "entry_mode_string: size 0 writes nothing");
}

static void test_file_type(void)
{
	is_str(entry_file_type_name(S_IFREG | 0644), "FILE_TYPE_FILE", "file type: regular");
	is_str(entry_file_type_name(S_IFDIR), "FILE_TYPE_DIRECTORY", "file type: directory");
	is_str(entry_file_type_name(S_IFLNK), "FILE_TYPE_SYMLINK", "file type: symlink");
	ok(entry_file_type_name(S_IFIFO) == NULL, "file type: FIFO is unspecified");
	ok(entry_file_type_name(S_IFSOCK) == NULL, "file type: socket is unspecified");
	ok(entry_file_type_name(S_IFCHR) == NULL, "file type: device is unspecified");
}

static void check_json_string(const char *in, const char *want, const char *what)
{
	_cleanup_json_ json_t *j = jsonx_string_lossy(in);
	is_str(json_string_value(j), want, "jsonx_string_lossy: %s", what);
}

static void test_json_string(void)
{
	check_json_string("plain.txt", "plain.txt", "ASCII");
	check_json_string("", "", "empty");
	check_json_string("ünïcödé €𝄞", "ünïcödé €𝄞", "valid UTF-8 kept");
	check_json_string("a\xff"
			  "b",
			  "a\xef\xbf\xbd"
			  "b",
			  "invalid byte → U+FFFD");
	check_json_string("\xc3", "\xef\xbf\xbd", "truncated sequence at the end");
	check_json_string("\xc3(", "\xef\xbf\xbd(", "bad continuation byte");
	check_json_string("\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd", "overlong '/' → two U+FFFD");
	check_json_string("\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
			  "UTF-16 surrogate → one U+FFFD per byte");
	check_json_string("\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
			  "above U+10FFFF → one U+FFFD per byte");
	check_json_string("é\xfe"
			  "é",
			  "é\xef\xbf\xbd"
			  "é",
			  "valid text around an invalid byte");
}

static void check_events(uint32_t mask, const enum fs_event_type *want, size_t nwant,
			 const char *what)
{
	enum fs_event_type got[8];
	size_t n = watch_mask_to_events(mask, got, ELEMENTSOF(got));
	ok(n == nwant && (n == 0 || memcmp(got, want, n * sizeof(*got)) == 0),
	   "watch_mask_to_events: %s", what);
}

static void test_watch_mask(void)
{
	check_events(IN_CREATE, (enum fs_event_type[]){ FS_EVENT_CREATE }, 1, "IN_CREATE");
	check_events(IN_CREATE | IN_ISDIR, (enum fs_event_type[]){ FS_EVENT_CREATE }, 1,
		     "IN_CREATE|IN_ISDIR");
	check_events(IN_MOVED_TO, (enum fs_event_type[]){ FS_EVENT_CREATE }, 1, "IN_MOVED_TO");
	check_events(IN_MOVED_FROM, (enum fs_event_type[]){ FS_EVENT_RENAME }, 1, "IN_MOVED_FROM");
	check_events(IN_MOVE_SELF, (enum fs_event_type[]){ FS_EVENT_RENAME }, 1, "IN_MOVE_SELF");
	check_events(IN_ATTRIB, (enum fs_event_type[]){ FS_EVENT_CHMOD }, 1, "IN_ATTRIB");
	check_events(IN_MODIFY, (enum fs_event_type[]){ FS_EVENT_WRITE }, 1, "IN_MODIFY");
	check_events(IN_DELETE, (enum fs_event_type[]){ FS_EVENT_REMOVE }, 1, "IN_DELETE");
	check_events(IN_DELETE_SELF, (enum fs_event_type[]){ FS_EVENT_REMOVE }, 1,
		     "IN_DELETE_SELF");
	check_events(IN_CLOSE_WRITE | IN_OPEN | IN_ACCESS, NULL, 0, "no event for open/close");
	check_events(0, NULL, 0, "empty mask");
	check_events(IN_MODIFY | IN_ATTRIB | IN_CREATE | IN_DELETE | IN_MOVED_FROM,
		     (enum fs_event_type[]){ FS_EVENT_CREATE, FS_EVENT_RENAME, FS_EVENT_CHMOD,
					     FS_EVENT_WRITE, FS_EVENT_REMOVE },
		     5, "all five, in envd's order");

	enum fs_event_type two[2] = { 99, 99 };
	is_int(watch_mask_to_events(IN_CREATE | IN_ATTRIB | IN_MODIFY, two, 1), 1,
	       "watch_mask_to_events: respects max");
	ok(two[0] == FS_EVENT_CREATE && two[1] == 99, "watch_mask_to_events: writes only max");
	is_int(watch_mask_to_events(IN_CREATE, two, 0), 0, "watch_mask_to_events: max 0");

	static const char *const names[] = {
		"EVENT_TYPE_UNSPECIFIED", "EVENT_TYPE_CREATE", "EVENT_TYPE_WRITE",
		"EVENT_TYPE_REMOVE",	  "EVENT_TYPE_RENAME", "EVENT_TYPE_CHMOD",
	};
	for (int t = FS_EVENT_UNSPECIFIED; t <= FS_EVENT_CHMOD; t++)
		is_str(fs_event_type_name((enum fs_event_type)t), names[t],
		       "fs_event_type_name(%d)", t);
	ok(fs_event_type_name((enum fs_event_type)42) == NULL,
	   "fs_event_type_name: unknown → NULL");
}

static void test_entry_info(void)
{
	char dir[] = "/tmp/test-entry-XXXXXX";
	if (!mkdtemp(dir)) {
		ok(false, "mkdtemp: %s", strerror(errno));
		return;
	}
	char file[64], link[64], broken[64];
	snprintf(file, sizeof(file), "%s/hello.txt", dir);
	snprintf(link, sizeof(link), "%s/link", dir);
	snprintf(broken, sizeof(broken), "%s/broken", dir);
	int fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
	ok(fd >= 0 && write(fd, "hello", 5) == 5, "entry: create a 5-byte file");
	if (fd >= 0) {
		fchmod(fd, 0640);
		close(fd);
	}
	ok(symlink("hello.txt", link) == 0, "entry: create a symlink");
	ok(symlink("missing", broken) == 0, "entry: create a broken symlink");

	json_t *e = NULL;
	is_int(entry_info_json(file, &e), 0, "entry_info_json: regular file");
	is_str(json_string_value(json_object_get(e, "name")), "hello.txt", "entry: name");
	is_str(json_string_value(json_object_get(e, "path")), file, "entry: path");
	is_str(json_string_value(json_object_get(e, "type")), "FILE_TYPE_FILE", "entry: type");
	is_str(json_string_value(json_object_get(e, "size")), "5", "entry: size as int64 string");
	is_int(json_integer_value(json_object_get(e, "mode")), 0640, "entry: mode");
	is_str(json_string_value(json_object_get(e, "permissions")), "-rw-r-----",
	       "entry: permissions");
	const char *mtime = json_string_value(json_object_get(e, "modifiedTime"));
	int64_t sec = 0;
	long nsec;
	ok(mtime && parse_rfc3339(mtime, &sec, &nsec) == 0 && sec > 1600000000,
	   "entry: modifiedTime is RFC 3339");
	ok(json_is_string(json_object_get(e, "owner")) &&
	       json_is_string(json_object_get(e, "group")),
	   "entry: owner and group");
	ok(!json_object_get(e, "symlinkTarget"), "entry: no symlinkTarget for a file");
	json_decref(e);

	e = NULL;
	is_int(entry_info_json(link, &e), 0, "entry_info_json: symlink");
	is_str(json_string_value(json_object_get(e, "name")), "link", "symlink: own name");
	is_str(json_string_value(json_object_get(e, "type")), "FILE_TYPE_FILE",
	       "symlink: the target's type");
	is_str(json_string_value(json_object_get(e, "symlinkTarget")), file,
	       "symlink: resolved absolute target");
	is_str(json_string_value(json_object_get(e, "permissions")), "Lrwxrwxrwx",
	       "symlink: permissions of the link itself");
	json_decref(e);

	e = NULL;
	is_int(entry_info_json(broken, &e), 0, "entry_info_json: broken symlink");
	is_str(json_string_value(json_object_get(e, "type")), "FILE_TYPE_SYMLINK",
	       "broken symlink: type symlink");
	ok(json_is_string(json_object_get(e, "symlinkTarget")), "broken symlink: has a target");
	json_decref(e);

	e = NULL;
	is_int(entry_info_json(dir, &e), 0, "entry_info_json: directory");
	is_str(json_string_value(json_object_get(e, "type")), "FILE_TYPE_DIRECTORY",
	       "directory: type");
	json_decref(e);

	char missing[80];
	snprintf(missing, sizeof(missing), "%s/nope", dir);
	e = NULL;
	is_int(entry_info_json(missing, &e), -ENOENT, "entry_info_json: missing → -ENOENT");
	is_int(entry_info_json("relative", &e), -EINVAL, "entry_info_json: relative → -EINVAL");
	ok(e == NULL, "entry_info_json: *out untouched on failure");

	unlink(broken);
	unlink(link);
	unlink(file);
	rmdir(dir);
}

int main(void)
{
	test_mode_string();
	test_file_type();
	test_json_string();
	test_watch_mask();
	test_entry_info();
	return done();
}
