/*
 * EntryInfo (filesystem.proto) as proto3 JSON, shaped like E2B's envd: lstat for the entry
 * itself, the symlink's resolved target for `type`, `mode` and `symlinkTarget`, Go's
 * FileMode.String() for `permissions`, and the `user.e2b.*` xattrs as `metadata`.
 */
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include "envd.h"
#include "common/util.h"

#define METADATA_XATTR_PREFIX "user.e2b."
#define XATTR_LIST_CAP	      (64u * 1024)
#define XATTR_VALUE_CAP	      (64u * 1024)

/* Go's os.FileMode bits, in the order FileMode.String() prints their letters ("dalTLDpSugct?"). */
enum {
	GO_MODE_DIR,
	GO_MODE_APPEND,
	GO_MODE_EXCLUSIVE,
	GO_MODE_TEMPORARY,
	GO_MODE_SYMLINK,
	GO_MODE_DEVICE,
	GO_MODE_NAMED_PIPE,
	GO_MODE_SOCKET,
	GO_MODE_SETUID,
	GO_MODE_SETGID,
	GO_MODE_CHAR_DEVICE,
	GO_MODE_STICKY,
	GO_MODE_IRREGULAR,
};

void entry_mode_string(mode_t mode, char *buf, size_t size)
{
	static const char letters[] = "dalTLDpSugct?";
	static const char rwx[] = "rwxrwxrwx";
	unsigned bits = 0;
	char out[ENTRY_MODE_STRING_MAX];
	size_t n = 0;

	switch (mode & S_IFMT) {
	case S_IFDIR:
		bits |= 1u << GO_MODE_DIR;
		break;
	case S_IFLNK:
		bits |= 1u << GO_MODE_SYMLINK;
		break;
	case S_IFBLK:
		bits |= 1u << GO_MODE_DEVICE;
		break;
	case S_IFCHR:
		bits |= 1u << GO_MODE_DEVICE | 1u << GO_MODE_CHAR_DEVICE;
		break;
	case S_IFIFO:
		bits |= 1u << GO_MODE_NAMED_PIPE;
		break;
	case S_IFSOCK:
		bits |= 1u << GO_MODE_SOCKET;
		break;
	default:
		break;
	}
	if (mode & S_ISUID)
		bits |= 1u << GO_MODE_SETUID;
	if (mode & S_ISGID)
		bits |= 1u << GO_MODE_SETGID;
	if (mode & S_ISVTX)
		bits |= 1u << GO_MODE_STICKY;

	for (unsigned i = 0; i < sizeof(letters) - 1; i++)
		if (bits & (1u << i))
			out[n++] = letters[i];
	if (n == 0)
		out[n++] = '-';
	for (unsigned i = 0; i < 9; i++)
		out[n++] = (mode & (1u << (8 - i))) ? rwx[i] : '-';
	out[n] = 0;
	if (size > 0)
		snprintf(buf, size, "%s", out);
}

const char *entry_file_type_name(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
		return "FILE_TYPE_FILE";
	case S_IFDIR:
		return "FILE_TYPE_DIRECTORY";
	case S_IFLNK:
		return "FILE_TYPE_SYMLINK";
	default:
		return NULL; /* FILE_TYPE_UNSPECIFIED: the default value, left out of the JSON */
	}
}

static const char *path_basename(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return path;
	if (slash[1])
		return slash + 1;
	return streq(path, "/") ? "/" : slash + 1;
}

static void names_of(const struct stat *st, struct entry_name_cache *cache, char *owner,
		     size_t osize, char *group, size_t gsize)
{
	if (cache && cache->have_uid && cache->uid == st->st_uid) {
		snprintf(owner, osize, "%s", cache->owner);
	} else {
		user_name_of(st->st_uid, owner, osize);
		if (cache) {
			cache->uid = st->st_uid;
			cache->have_uid = true;
			snprintf(cache->owner, sizeof(cache->owner), "%s", owner);
		}
	}
	if (cache && cache->have_gid && cache->gid == st->st_gid) {
		snprintf(group, gsize, "%s", cache->group);
	} else {
		group_name_of(st->st_gid, group, gsize);
		if (cache) {
			cache->gid = st->st_gid;
			cache->have_gid = true;
			snprintf(cache->group, sizeof(cache->group), "%s", group);
		}
	}
}

/* The `user.e2b.*` xattrs of an open file as a JSON object (prefix stripped), or NULL when there
 * are none. Unreadable or non-UTF-8 entries are skipped: metadata is best effort, as in envd. */
static json_t *metadata_of_fd(int fd)
{
	ssize_t n = flistxattr(fd, NULL, 0);
	if (n <= 0)
		return NULL;
	if ((size_t)n > XATTR_LIST_CAP)
		n = XATTR_LIST_CAP;
	_cleanup_free_ char *list = malloc((size_t)n);
	if (!list)
		return NULL;
	n = flistxattr(fd, list, (size_t)n);
	if (n <= 0)
		return NULL;

	_cleanup_json_ json_t *obj = NULL;
	_cleanup_free_ char *value = NULL;
	for (const char *k = list; k < list + n; k += strlen(k) + 1) {
		if (!startswith(k, METADATA_XATTR_PREFIX) || !k[strlen(METADATA_XATTR_PREFIX)])
			continue;
		if (!value) {
			value = malloc(XATTR_VALUE_CAP + 1);
			if (!value)
				return NULL;
		}
		ssize_t vlen = fgetxattr(fd, k, value, XATTR_VALUE_CAP);
		if (vlen < 0)
			continue;
		json_t *v = json_stringn(value, (size_t)vlen); /* NULL unless valid UTF-8 */
		if (!v)
			continue;
		if (!obj)
			obj = json_object();
		if (!obj || json_object_set_new(obj, k + strlen(METADATA_XATTR_PREFIX), v) < 0) {
			json_decref(v);
			return NULL;
		}
	}
	return TAKE_PTR(obj);
}

/* Metadata of a regular file or directory. Other kinds are not opened: opening a device or a
 * FIFO can have side effects. `follow` is set for a symlink, whose target's xattrs envd shows. */
static json_t *metadata_of(int dirfd, const char *name, mode_t type, bool follow)
{
	if (!S_ISREG(type) && !S_ISDIR(type))
		return NULL;
	int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | (follow ? 0 : O_NOFOLLOW);
	_cleanup_close_ int fd = openat(dirfd, name, flags);
	if (fd < 0)
		return NULL;
	return metadata_of_fd(fd);
}

/*
 * Resolves a symlink: *target gets the stat of what it finally points to and *resolved its
 * absolute canonical path (caller frees). -ENOENT/-ELOOP etc. for a broken link.
 */
static int resolve_link(int dirfd, const char *name, const char *path, struct stat *target,
			char **resolved)
{
	_cleanup_close_ int fd = openat(dirfd, name, O_PATH | O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	if (fstat(fd, target) < 0)
		return negative_errno();

	char proc[64], buf[PATH_MAX];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(proc, buf, sizeof(buf) - 1);
	if (n > 0 && buf[0] == '/') {
		buf[n] = 0;
		*resolved = strdup(buf);
	} else {
		/* No /proc: fall back to the path (a rename in between only skews the text). */
		*resolved = realpath(path, NULL);
	}
	return *resolved ? 0 : -ENOMEM;
}

/* A broken link's target as an absolute path, folded lexically against the link's directory. */
static char *broken_link_target(int dirfd, const char *name, const char *path)
{
	char buf[PATH_MAX];
	ssize_t n = readlinkat(dirfd, name, buf, sizeof(buf) - 1);
	if (n <= 0)
		return strdup(path);
	buf[n] = 0;
	if (buf[0] == '/')
		return path_normalize(buf);
	const char *slash = strrchr(path, '/');
	size_t dlen = slash ? (size_t)(slash - path) : 0;
	_cleanup_free_ char *joined = NULL;
	if (asprintf(&joined, "%.*s/%s", (int)dlen, path, buf) < 0)
		return NULL;
	return path_normalize(joined);
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 when the bytes there are not one. */

static int set_str(json_t *obj, const char *key, const char *value)
{
	return json_object_set_new(obj, key, jsonx_string_lossy(value));
}

static int build_entry(const struct stat *lst, const struct stat *st, const char *path,
		       const char *symlink_target, json_t *metadata, struct entry_name_cache *cache,
		       json_t **out)
{
	_cleanup_json_ json_t *e = json_object();
	if (!e)
		return -ENOMEM;
	char owner[64], group[64], perms[ENTRY_MODE_STRING_MAX], mtime[64];
	names_of(lst, cache, owner, sizeof(owner), group, sizeof(group));
	entry_mode_string(lst->st_mode, perms, sizeof(perms));
	int r = set_str(e, "name", path_basename(path));

	/* proto3 JSON leaves out fields at their default value (type 0, size 0, mode 0). */
	const char *type = st ? entry_file_type_name(st->st_mode) : NULL;
	if (S_ISLNK(lst->st_mode) && !st)
		type = "FILE_TYPE_SYMLINK"; /* broken link: say what it is rather than nothing */
	if (r >= 0 && type)
		r = set_str(e, "type", type);
	if (r >= 0)
		r = set_str(e, "path", path);
	if (r >= 0 && lst->st_size > 0) {
		char size[32];
		snprintf(size, sizeof(size), "%lld", (long long)lst->st_size);
		r = set_str(e, "size", size);
	}
	unsigned mode = (unsigned)((st ? st : lst)->st_mode & 0777);
	if (r >= 0 && mode)
		r = json_object_set_new(e, "mode", json_integer(mode));
	if (r >= 0)
		r = set_str(e, "permissions", perms);
	if (r >= 0)
		r = set_str(e, "owner", owner);
	if (r >= 0)
		r = set_str(e, "group", group);
	if (r >= 0 && (lst->st_mtim.tv_sec || lst->st_mtim.tv_nsec)) {
		format_rfc3339(mtime, sizeof(mtime), lst->st_mtim.tv_sec, lst->st_mtim.tv_nsec);
		r = set_str(e, "modifiedTime", mtime);
	}
	if (r >= 0 && symlink_target)
		r = set_str(e, "symlinkTarget", symlink_target);
	if (r >= 0 && metadata)
		r = json_object_set(e, "metadata", metadata);
	if (r < 0)
		return -ENOMEM;
	*out = TAKE_PTR(e);
	return 0;
}

int entry_info_json_at(int dirfd, const char *name, const char *path,
		       struct entry_name_cache *cache, json_t **out)
{
	struct stat lst, target;
	if (fstatat(dirfd, name, &lst, AT_SYMLINK_NOFOLLOW) < 0)
		return negative_errno();

	_cleanup_free_ char *resolved = NULL;
	const struct stat *st = &lst;
	if (S_ISLNK(lst.st_mode)) {
		if (resolve_link(dirfd, name, path, &target, &resolved) >= 0) {
			st = &target;
		} else {
			st = NULL;
			resolved = broken_link_target(dirfd, name, path);
			if (!resolved)
				return -ENOMEM;
		}
	}
	_cleanup_json_ json_t *metadata =
	    st ? metadata_of(dirfd, name, st->st_mode, S_ISLNK(lst.st_mode)) : NULL;
	return build_entry(&lst, st, path, resolved, metadata, cache, out);
}

int entry_info_json(const char *abs_path, json_t **out)
{
	if (isempty(abs_path) || abs_path[0] != '/')
		return -EINVAL;
	return entry_info_json_at(AT_FDCWD, abs_path, abs_path, NULL, out);
}
