/*
 * filesystem.Filesystem: Stat, MakeDir, Move, ListDir, Remove (the watch methods live in
 * watch.c). Every file operation runs with the caller's fsuid/fsgid, so it has the user's
 * permissions and what it creates belongs to the user.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include "envd.h"
#include "common/log.h"

#define LISTDIR_MAX_ENTRIES 100000
#define LISTDIR_MAX_DEPTH   128
/* Remove recursion holds one directory fd per level. */
#define REMOVE_MAX_DEPTH 256

enum connect_code fs_request_path(struct rpc_ctx *ctx, const json_t *in, const char *field,
				  struct user_info *u, char **abs, char **msg)
{
	int r = user_resolve(ctx->user, u);
	if (r == -EPERM) {
		*msg = rpc_msg("envd cannot act as user '%s'", ctx->user ? ctx->user : "");
		return CONNECT_PERMISSION_DENIED;
	}
	if (r < 0) {
		*msg = ctx->user ? rpc_msg("invalid user: '%s'", ctx->user)
				 : rpc_msg("invalid default user");
		return CONNECT_UNAUTHENTICATED;
	}
	const char *path = NULL;
	if (jsonx_get_string(in, field, field, &path) < 0) {
		*msg = rpc_msg("invalid %s: expected a string", field);
		return CONNECT_INVALID_ARGUMENT;
	}
	r = path_expand(path, u, NULL, abs);
	if (r == -EINVAL && path && path[0] == '~') {
		*msg = rpc_msg("failed to expand path '%s' for user '%s': cannot expand "
			       "user-specific home dir",
			       path, u->name);
		return CONNECT_INVALID_ARGUMENT;
	}
	if (r < 0) {
		*msg = rpc_msg("failed to expand path '%s' for user '%s': %s", path ? path : "",
			       u->name, strerror(-r));
		return CONNECT_INVALID_ARGUMENT;
	}
	return CONNECT_OK;
}

/* The code for an errno from a file operation done on the user's behalf. */
static enum connect_code fs_code(int r)
{
	switch (-r) {
	case ENOENT:
		return CONNECT_NOT_FOUND;
	case EACCES:
	case EPERM:
	case EROFS:
		return CONNECT_PERMISSION_DENIED;
	case ENOSPC:
	case EDQUOT:
	case EMFILE:
	case ENFILE:
	case ENOMEM:
		return CONNECT_RESOURCE_EXHAUSTED;
	default:
		return CONNECT_INTERNAL;
	}
}

static enum connect_code entry_response(const char *abs, json_t **resp, char **msg)
{
	json_t *e = NULL;
	int r = entry_info_json(abs, &e);
	if (r < 0) {
		*msg = rpc_msg("error getting file info: %s: %s", abs, strerror(-r));
		return fs_code(r);
	}
	*resp = json_pack("{s:o}", "entry", e);
	if (!*resp) {
		*msg = rpc_msg("out of memory");
		return CONNECT_RESOURCE_EXHAUSTED;
	}
	return CONNECT_OK;
}

/* ---- Stat ---- */

static enum connect_code fs_stat(struct rpc_ctx *ctx, const json_t *in, json_t **resp, char **msg)
{
	struct user_info u;
	_cleanup_free_ char *abs = NULL;
	enum connect_code code = fs_request_path(ctx, in, "path", &u, &abs, msg);
	if (code != CONNECT_OK)
		return code;

	json_t *e = NULL;
	fsid_enter(&u);
	int r = entry_info_json(abs, &e);
	fsid_leave();
	if (r == -ENOENT) {
		*msg = rpc_msg("file not found: lstat %s: no such file or directory", abs);
		return CONNECT_NOT_FOUND;
	}
	if (r < 0) {
		*msg = rpc_msg("error getting file info: lstat %s: %s", abs, strerror(-r));
		return fs_code(r);
	}
	*resp = json_pack("{s:o}", "entry", e);
	return *resp ? CONNECT_OK : CONNECT_RESOURCE_EXHAUSTED;
}

/* ---- MakeDir / Move ---- */

/*
 * mkdir -p: creates every missing directory of `abs` (mode 0755 less umask, owned by the fsuid
 * in effect). Intermediate symlinks are followed, as mkdir -p does; the caller acts as the user,
 * so that grants nothing. *bad is set to the prefix that exists but is not a directory.
 */
static int mkdir_parents(const char *abs, char **bad)
{
	_cleanup_free_ char *p = strdup(abs);
	if (!p)
		return -ENOMEM;
	size_t len = strlen(p);
	for (size_t i = 1; i <= len; i++) {
		if (p[i] != '/' && p[i] != 0)
			continue;
		char saved = p[i];
		p[i] = 0;
		if (mkdir(p, 0755) < 0) {
			int r = -errno;
			struct stat st;
			if (r != -EEXIST)
				return r;
			if (stat(p, &st) < 0)
				return negative_errno();
			if (!S_ISDIR(st.st_mode)) {
				*bad = strdup(p);
				return -ENOTDIR;
			}
		}
		p[i] = saved;
	}
	return 0;
}

static enum connect_code mkdir_error(int r, const char *bad, char **msg)
{
	if (r == -ENOTDIR && bad) {
		*msg = rpc_msg("path is a file: %s", bad);
		return CONNECT_INVALID_ARGUMENT;
	}
	*msg = rpc_msg("failed to create directory: %s", strerror(-r));
	return fs_code(r);
}

static enum connect_code fs_make_dir(struct rpc_ctx *ctx, const json_t *in, json_t **resp,
				     char **msg)
{
	struct user_info u;
	_cleanup_free_ char *abs = NULL;
	enum connect_code code = fs_request_path(ctx, in, "path", &u, &abs, msg);
	if (code != CONNECT_OK)
		return code;

	struct stat st;
	_cleanup_free_ char *bad = NULL;
	fsid_enter(&u);
	int r = stat(abs, &st) < 0 ? -errno : 0;
	if (r == 0) {
		fsid_leave();
		if (S_ISDIR(st.st_mode)) {
			*msg = rpc_msg("directory already exists: %s", abs);
			return CONNECT_ALREADY_EXISTS;
		}
		*msg = rpc_msg("path already exists but it is not a directory: %s", abs);
		return CONNECT_INVALID_ARGUMENT;
	}
	if (r == -ENOENT || r == -ENOTDIR)
		r = mkdir_parents(abs, &bad);
	if (r == 0)
		code = entry_response(abs, resp, msg);
	fsid_leave();
	return r < 0 ? mkdir_error(r, bad, msg) : code;
}

static char *parent_of(const char *abs)
{
	const char *slash = strrchr(abs, '/');
	if (!slash || slash == abs)
		return strdup("/");
	return strndup(abs, (size_t)(slash - abs));
}

static enum connect_code fs_move(struct rpc_ctx *ctx, const json_t *in, json_t **resp, char **msg)
{
	struct user_info u;
	_cleanup_free_ char *src = NULL, *dst = NULL, *parent = NULL, *bad = NULL;
	enum connect_code code = fs_request_path(ctx, in, "source", &u, &src, msg);
	if (code != CONNECT_OK)
		return code;
	code = fs_request_path(ctx, in, "destination", &u, &dst, msg);
	if (code != CONNECT_OK)
		return code;
	parent = parent_of(dst);
	if (!parent)
		return CONNECT_RESOURCE_EXHAUSTED;

	fsid_enter(&u);
	int r = mkdir_parents(parent, &bad);
	if (r < 0) {
		fsid_leave();
		return mkdir_error(r, bad, msg);
	}
	if (rename(src, dst) < 0) {
		r = -errno;
		fsid_leave();
		if (r == -ENOENT) {
			*msg = rpc_msg("source file not found: rename %s %s: no such file or "
				       "directory",
				       src, dst);
			return CONNECT_NOT_FOUND;
		}
		*msg = rpc_msg("error renaming: rename %s %s: %s", src, dst, strerror(-r));
		return fs_code(r);
	}
	code = entry_response(dst, resp, msg);
	fsid_leave();
	return code;
}

/* ---- ListDir ---- */

struct listing {
	json_t *entries;
	struct entry_name_cache names;
	unsigned max_depth;
	int error; /* the first fatal -errno */
	char *error_path;
};

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* The names in a directory, byte-sorted, so the walk is in envd's lexical depth-first order. */
static int read_names(int dirfd, char ***out, size_t *count)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	_cleanup_closedir_ DIR *d = fdopendir(fd);
	if (!d) {
		int r = negative_errno();
		close(fd);
		return r;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int r = 0;
	errno = 0;
	while ((de = readdir(d))) {
		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		if (n > LISTDIR_MAX_ENTRIES) {
			r = -E2BIG;
			break;
		}
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 32;
			char **nn = realloc(names, ncap * sizeof(*names));
			if (!nn) {
				r = -ENOMEM;
				break;
			}
			names = nn;
			cap = ncap;
		}
		names[n] = strdup(de->d_name);
		if (!names[n]) {
			r = -ENOMEM;
			break;
		}
		n++;
		errno = 0;
	}
	if (r == 0 && errno)
		r = -errno;
	if (r < 0) {
		free_names(names, n);
		return r;
	}
	if (n)
		qsort(names, n, sizeof(*names), cmp_names);
	*out = names;
	*count = n;
	return 0;
}

static int list_walk(struct listing *l, int dirfd, const char *path, unsigned depth)
{
	char **names = NULL;
	size_t n = 0;
	int r = read_names(dirfd, &names, &n);
	if (r < 0) {
		l->error_path = strdup(path);
		return r;
	}
	for (size_t i = 0; i < n && r >= 0; i++) {
		_cleanup_free_ char *child = NULL;
		if (asprintf(&child, "%s%s%s", path, streq(path, "/") ? "" : "/", names[i]) < 0) {
			r = -ENOMEM;
			break;
		}
		json_t *e = NULL;
		int q = entry_info_json_at(dirfd, names[i], child, &l->names, &e);
		if (q == -ENOENT)
			continue; /* vanished mid-walk */
		if (q < 0) {
			r = q;
			l->error_path = TAKE_PTR(child);
			break;
		}
		if (json_array_size(l->entries) >= LISTDIR_MAX_ENTRIES) {
			json_decref(e);
			r = -E2BIG;
			break;
		}
		json_array_append_new(l->entries, e);
		if (depth >= l->max_depth)
			continue;

		/* Descend into real directories only: a symlinked directory is listed, not
		 * entered. An unreadable subdirectory is listed and skipped. */
		_cleanup_close_ int fd =
		    openat(dirfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			if (errno == ENOTDIR || errno == ELOOP || errno == ENOENT ||
			    errno == EACCES)
				continue;
			r = negative_errno();
			l->error_path = TAKE_PTR(child);
			break;
		}
		r = list_walk(l, fd, child, depth + 1);
	}
	free_names(names, n);
	return r;
}

static enum connect_code fs_list_dir(struct rpc_ctx *ctx, const json_t *in, json_t **resp,
				     char **msg)
{
	struct user_info u;
	_cleanup_free_ char *abs = NULL;
	enum connect_code code = fs_request_path(ctx, in, "path", &u, &abs, msg);
	if (code != CONNECT_OK)
		return code;
	uint64_t depth = 1;
	int r = jsonx_get_u64(in, "depth", "depth", &depth);
	if (r < 0 && r != -ENOENT) {
		*msg = rpc_msg("invalid depth");
		return CONNECT_INVALID_ARGUMENT;
	}
	if (depth == 0)
		depth = 1;

	_cleanup_json_ json_t *entries = json_array();
	struct listing l = {
		.entries = entries,
		.max_depth = (unsigned)MIN(depth, (uint64_t)LISTDIR_MAX_DEPTH),
	};
	if (!entries)
		return CONNECT_RESOURCE_EXHAUSTED;

	fsid_enter(&u);
	/* The listed directory itself may be reached through symlinks (envd resolves it). */
	_cleanup_close_ int fd = open(abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		r = negative_errno();
		struct stat st;
		if (r == -ENOTDIR && stat(abs, &st) == 0)
			r = -EISDIR; /* marker: the path itself is not a directory */
		fsid_leave();
		switch (-r) {
		case ENOENT:
			*msg = rpc_msg("path not found: %s: no such file or directory", abs);
			return CONNECT_NOT_FOUND;
		case EISDIR:
			*msg = rpc_msg("path is not a directory: %s", abs);
			return CONNECT_INVALID_ARGUMENT;
		case ELOOP:
			*msg = rpc_msg("cyclic symlink or chain >255 links at \"%s\"", abs);
			return CONNECT_FAILED_PRECONDITION;
		default:
			*msg = rpc_msg("error resolving path %s: %s", abs, strerror(-r));
			return fs_code(r);
		}
	}
	r = list_walk(&l, fd, abs, 1);
	fsid_leave();
	_cleanup_free_ char *error_path = l.error_path;
	if (r == -E2BIG) {
		*msg =
		    rpc_msg("too many entries in %s (the limit is %d)", abs, LISTDIR_MAX_ENTRIES);
		return CONNECT_RESOURCE_EXHAUSTED;
	}
	if (r < 0) {
		*msg = rpc_msg("error reading directory %s: %s", error_path ? error_path : abs,
			       strerror(-r));
		return r == -EACCES || r == -EPERM ? CONNECT_PERMISSION_DENIED : CONNECT_INTERNAL;
	}
	*resp = json_pack("{s:O}", "entries", entries);
	return *resp ? CONNECT_OK : CONNECT_RESOURCE_EXHAUSTED;
}

/* ---- Remove ---- */

/* Removes `name` under parent and everything below it, never following symlinks. */
static int remove_tree_at(int parent, const char *name, unsigned depth)
{
	if (unlinkat(parent, name, 0) == 0)
		return 0;
	if (errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return negative_errno();
	if (depth >= REMOVE_MAX_DEPTH)
		return -ELOOP;

	int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : errno == ENOTDIR ? -EPERM : negative_errno();
	_cleanup_closedir_ DIR *d = fdopendir(fd);
	if (!d) {
		int r = negative_errno();
		close(fd);
		return r;
	}
	int r = 0;
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (!de) {
			if (errno)
				r = -errno;
			break;
		}
		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		int q = remove_tree_at(dirfd(d), de->d_name, depth + 1);
		if (q < 0 && r == 0)
			r = q; /* keep going: remove as much as possible, as os.RemoveAll does */
	}
	if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
		r = negative_errno();
	return r;
}

static enum connect_code fs_remove(struct rpc_ctx *ctx, const json_t *in, json_t **resp, char **msg)
{
	struct user_info u;
	_cleanup_free_ char *abs = NULL, *parent = NULL;
	enum connect_code code = fs_request_path(ctx, in, "path", &u, &abs, msg);
	if (code != CONNECT_OK)
		return code;
	parent = parent_of(abs);
	if (!parent)
		return CONNECT_RESOURCE_EXHAUSTED;
	const char *base = strrchr(abs, '/') + 1;

	int r = 0;
	fsid_enter(&u);
	if (!*base) {
		r = -EBUSY; /* "/" */
	} else {
		_cleanup_close_ int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (pfd >= 0)
			r = remove_tree_at(pfd, base, 0);
		else if (errno != ENOENT && errno != ENOTDIR)
			r = negative_errno();
	}
	fsid_leave();
	if (r < 0) {
		*msg = rpc_msg("error removing file or directory: %s", strerror(-r));
		return fs_code(r);
	}
	*resp = json_object();
	return CONNECT_OK;
}

const struct rpc_method filesystem_methods[] = {
	{ .path = "/filesystem.Filesystem/Stat", .unary = fs_stat },
	{ .path = "/filesystem.Filesystem/MakeDir", .unary = fs_make_dir },
	{ .path = "/filesystem.Filesystem/Move", .unary = fs_move },
	{ .path = "/filesystem.Filesystem/ListDir", .unary = fs_list_dir },
	{ .path = "/filesystem.Filesystem/Remove", .unary = fs_remove },
	{ .path = "/filesystem.Filesystem/WatchDir", .stream = watch_dir_rpc },
	{ .path = "/filesystem.Filesystem/CreateWatcher", .unary = watch_create_rpc },
	{ .path = "/filesystem.Filesystem/GetWatcherEvents", .unary = watch_get_events_rpc },
	{ .path = "/filesystem.Filesystem/RemoveWatcher", .unary = watch_remove_rpc },
	{ 0 },
};
