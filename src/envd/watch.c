/*
 * Directory watchers on inotify: WatchDir streams and the polling watchers (CreateWatcher,
 * GetWatcherEvents, RemoveWatcher). Each watcher owns one inotify fd and one thread, so a stream
 * client that reads slowly (rpc_stream_send blocks on backpressure) only holds up its own events.
 * Events follow fsnotify as envd uses it: names relative to the watched directory, new
 * subdirectories watched as they appear when recursive.
 */
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include "envd.h"
#include "common/log.h"
#include "common/util.h"

#define WATCHERS_MAX		1024
#define WATCH_QUEUE_MAX		10000 /* events a polling watcher holds between polls */
#define WATCH_DIRS_MAX		65536 /* inotify watches per watcher (recursive) */
#define WATCH_BUDGET		65536 /* inotify watches across all watchers */
#define WATCHER_IDLE_USEC	(10u * 60u * 1000000u) /* polling watchers nobody polls expire */
#define WATCHER_IDLE_CHECK_MSEC 60000
#define WATCH_WALK_MAX_DEPTH	128
#define WATCH_READ_BUF		(64 * 1024)

#define WATCH_MASK                                                                          \
	(IN_CREATE | IN_MOVED_TO | IN_MODIFY | IN_DELETE | IN_DELETE_SELF | IN_MOVED_FROM | \
	 IN_MOVE_SELF | IN_ATTRIB | IN_ONLYDIR)

/* Network filesystems envd refuses unless allowNetworkMounts: NFS, CIFS, SMB, SMB2, FUSE. */
static const unsigned long network_fs_magic[] = {
	0x6969, 0xFF534D42, 0x517B, 0xFE534D42, 0x65735546,
};

/* Kernel pseudo filesystems a recursive watch does not descend into when mounted below the
 * watched directory: huge, synthetic, and their files change without inotify events. The last
 * three are configfs, mqueue and fusectl (not in every <linux/magic.h>). */
static const unsigned long pseudo_fs_magic[] = {
	PROC_SUPER_MAGIC,   SYSFS_MAGIC,     CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC,
	DEVPTS_SUPER_MAGIC, DEBUGFS_MAGIC,   TRACEFS_MAGIC,	 SECURITYFS_MAGIC,
	BPF_FS_MAGIC,	    PSTOREFS_MAGIC,  BINFMTFS_MAGIC,	 SELINUX_MAGIC,
	EFIVARFS_MAGIC,	    HUGETLBFS_MAGIC, NSFS_MAGIC,	 0x62656570,
	0x19800202,	    0x65735543,
};

/* inotify watches held by all watchers together (WATCH_BUDGET). */
static unsigned watch_budget_used;

struct watch_dir {
	int wd;
	char *rel; /* relative to the root, "" for the root itself */
};

struct watcher {
	struct watch_table *table;
	struct watcher *next;
	char id[40]; /* polling watchers only, else "" */
	char *root;  /* the expanded path the client named */
	bool recursive;
	bool include_entry;
	struct user_info user;
	int ifd;
	int stop_fd;
	pthread_t thread;
	bool thread_started;
	dev_t root_dev;	    /* st_dev of the watched directory */
	uint64_t last_poll; /* polling watchers: last create or GetWatcherEvents (monotonic) */

	/* Owned by the watcher thread once it runs. Sorted by wd. */
	struct watch_dir *dirs;
	size_t ndirs, cap;

	struct rpc_stream *stream; /* WatchDir; NULL for a polling watcher */

	pthread_mutex_t qlock; /* guards the polling state below */
	json_t *events;
	size_t dropped;
	char *error; /* the watcher failed: GetWatcherEvents reports this */
};

struct watch_table {
	pthread_mutex_t lock;
	struct watcher *head;
	unsigned count;
};

/* ---- pure helpers ---- */

size_t watch_mask_to_events(uint32_t mask, enum fs_event_type *out, size_t max)
{
	static const struct {
		uint32_t mask;
		enum fs_event_type type;
	} map[] = {
		{ IN_CREATE | IN_MOVED_TO, FS_EVENT_CREATE },
		{ IN_MOVED_FROM | IN_MOVE_SELF, FS_EVENT_RENAME },
		{ IN_ATTRIB, FS_EVENT_CHMOD },
		{ IN_MODIFY, FS_EVENT_WRITE },
		{ IN_DELETE | IN_DELETE_SELF, FS_EVENT_REMOVE },
	};
	size_t n = 0;
	for (size_t i = 0; i < ELEMENTSOF(map) && n < max; i++)
		if (mask & map[i].mask)
			out[n++] = map[i].type;
	return n;
}

const char *fs_event_type_name(enum fs_event_type type)
{
	switch (type) {
	case FS_EVENT_UNSPECIFIED:
		return "EVENT_TYPE_UNSPECIFIED";
	case FS_EVENT_CREATE:
		return "EVENT_TYPE_CREATE";
	case FS_EVENT_WRITE:
		return "EVENT_TYPE_WRITE";
	case FS_EVENT_REMOVE:
		return "EVENT_TYPE_REMOVE";
	case FS_EVENT_RENAME:
		return "EVENT_TYPE_RENAME";
	case FS_EVENT_CHMOD:
		return "EVENT_TYPE_CHMOD";
	}
	return NULL;
}

/* "a" + "b" → "a/b"; "" + "b" → "b". Caller frees. */
static char *join_rel(const char *dir, const char *name)
{
	char *s = NULL;
	if (asprintf(&s, "%s%s%s", dir, *dir && *name ? "/" : "", name) < 0)
		return NULL;
	return s;
}

/* The absolute path of a root-relative name ("" is the root). Caller frees. */
static char *abs_of(const struct watcher *w, const char *rel)
{
	char *s = NULL;
	bool slash = *rel && !streq(w->root, "/");
	if (asprintf(&s, "%s%s%s", w->root, slash ? "/" : "", rel) < 0)
		return NULL;
	return s;
}

static bool rel_within(const char *rel, const char *dir)
{
	size_t n = strlen(dir);
	return strncmp(rel, dir, n) == 0 && (rel[n] == 0 || rel[n] == '/');
}

/* ---- the wd → directory map ---- */

static size_t dirs_search(const struct watcher *w, int wd)
{
	size_t lo = 0, hi = w->ndirs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (w->dirs[mid].wd < wd)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct watch_dir *dirs_find(struct watcher *w, int wd)
{
	size_t i = dirs_search(w, wd);
	return i < w->ndirs && w->dirs[i].wd == wd ? &w->dirs[i] : NULL;
}

static int dirs_set(struct watcher *w, int wd, const char *rel)
{
	char *copy = strdup(rel);
	if (!copy)
		return -ENOMEM;
	size_t i = dirs_search(w, wd);
	if (i < w->ndirs && w->dirs[i].wd == wd) {
		free(w->dirs[i].rel);
		w->dirs[i].rel = copy;
		return 0;
	}
	if (w->ndirs == w->cap) {
		size_t ncap = w->cap ? w->cap * 2 : 16;
		struct watch_dir *n = realloc(w->dirs, ncap * sizeof(*n));
		if (!n) {
			free(copy);
			return -ENOMEM;
		}
		w->dirs = n;
		w->cap = ncap;
	}
	memmove(&w->dirs[i + 1], &w->dirs[i], (w->ndirs - i) * sizeof(*w->dirs));
	w->dirs[i] = (struct watch_dir){ .wd = wd, .rel = copy };
	w->ndirs++;
	__atomic_add_fetch(&watch_budget_used, 1, __ATOMIC_SEQ_CST);
	return 0;
}

static void dirs_remove_at(struct watcher *w, size_t i)
{
	__atomic_sub_fetch(&watch_budget_used, 1, __ATOMIC_SEQ_CST);
	free(w->dirs[i].rel);
	memmove(&w->dirs[i], &w->dirs[i + 1], (w->ndirs - i - 1) * sizeof(*w->dirs));
	w->ndirs--;
}

static void dirs_remove(struct watcher *w, int wd)
{
	size_t i = dirs_search(w, wd);
	if (i < w->ndirs && w->dirs[i].wd == wd)
		dirs_remove_at(w, i);
}

/* A directory moved within the tree: its watches (and those below it) keep their wd. */
static void dirs_rename(struct watcher *w, const char *from, const char *to)
{
	size_t flen = strlen(from);
	for (size_t i = 0; i < w->ndirs; i++) {
		if (!*from || !rel_within(w->dirs[i].rel, from))
			continue;
		char *n = NULL;
		if (asprintf(&n, "%s%s", to, w->dirs[i].rel + flen) < 0)
			continue;
		free(w->dirs[i].rel);
		w->dirs[i].rel = n;
	}
}

/* A directory moved out of the tree: stop watching it and what is below it. */
static void dirs_drop(struct watcher *w, const char *rel)
{
	for (size_t i = 0; i < w->ndirs;) {
		if (*rel && rel_within(w->dirs[i].rel, rel)) {
			inotify_rm_watch(w->ifd, w->dirs[i].wd);
			dirs_remove_at(w, i);
		} else {
			i++;
		}
	}
}

/* ---- adding watches ---- */

static int add_watch_fd(struct watcher *w, int fd, const char *rel)
{
	if (w->ndirs >= WATCH_DIRS_MAX ||
	    __atomic_load_n(&watch_budget_used, __ATOMIC_SEQ_CST) >= WATCH_BUDGET)
		return -ENOSPC;
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	/* Through the fd, so the directory watched is the one opened (a planted symlink cannot
	 * redirect it). Without /proc, fall back to the path. */
	int wd = inotify_add_watch(w->ifd, proc, WATCH_MASK);
	if (wd < 0 && errno == ENOENT) {
		_cleanup_free_ char *abs = abs_of(w, rel);
		if (!abs)
			return -ENOMEM;
		wd = inotify_add_watch(w->ifd, abs, WATCH_MASK | (*rel ? IN_DONT_FOLLOW : 0));
	}
	if (wd < 0)
		return negative_errno();
	return dirs_set(w, wd, rel);
}

/* Whether the directory open at fd is a kernel pseudo filesystem mounted below the root. */
static bool is_pseudo_mount(const struct watcher *w, int fd)
{
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_dev == w->root_dev)
		return false;
	struct statfs sfs;
	if (fstatfs(fd, &sfs) < 0)
		return false;
	for (size_t i = 0; i < ELEMENTSOF(pseudo_fs_magic); i++)
		if ((unsigned long)sfs.f_type == pseudo_fs_magic[i])
			return true;
	/* devtmpfs reports TMPFS_MAGIC: recognise a /dev by its null device. */
	return sfs.f_type == TMPFS_MAGIC && fstatat(fd, "null", &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       S_ISCHR(st.st_mode);
}

/*
 * Watches the directory open at fd and, when recursive, every real directory below it (symlinks
 * are not followed; kernel pseudo filesystems such as /proc and /sys mounted below are skipped).
 * A failure to watch fd itself is returned, and -ENOSPC when the watch limits run out (the tree
 * is then only partly watched); other subdirectories that cannot be opened or watched are skipped.
 */
static int watch_tree(struct watcher *w, int fd, const char *rel, unsigned depth)
{
	int r = add_watch_fd(w, fd, rel);
	if (r < 0 || !w->recursive || depth >= WATCH_WALK_MAX_DEPTH)
		return r;

	int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return 0;
	_cleanup_closedir_ DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return 0;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
			continue;
		_cleanup_close_ int cfd =
		    openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (cfd < 0 || is_pseudo_mount(w, cfd))
			continue;
		_cleanup_free_ char *crel = join_rel(rel, de->d_name);
		if (!crel)
			return 0;
		int q = watch_tree(w, cfd, crel, depth + 1);
		if (q == -ENOSPC)
			return q; /* out of watches: more directories will not fit either */
	}
	return 0;
}

/* A directory appeared (created or moved in) at rel: watch it and what is already in it. */
static void watch_new_dir(struct watcher *w, const char *rel)
{
	_cleanup_free_ char *abs = abs_of(w, rel);
	if (!abs)
		return;
	_cleanup_close_ int fd = open(abs, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	unsigned depth = 0;
	for (const char *p = rel; *p; p++)
		depth += *p == '/';
	int r = is_pseudo_mount(w, fd) ? 0 : watch_tree(w, fd, rel, depth + 1);
	if (r < 0)
		log_debug("watch: cannot watch %s: %s", abs, strerror(-r));
}

/* ---- delivering events ---- */

static json_t *event_json(struct watcher *w, const char *rel, enum fs_event_type type)
{
	json_t *ev = json_object();
	if (!ev)
		return NULL;
	json_object_set_new(ev, "name", jsonx_string_lossy(*rel ? rel : "."));
	json_object_set_new(ev, "type", json_string(fs_event_type_name(type)));
	if (w->include_entry &&
	    (type == FS_EVENT_CREATE || type == FS_EVENT_WRITE || type == FS_EVENT_CHMOD)) {
		_cleanup_free_ char *abs = abs_of(w, rel);
		json_t *entry = NULL;
		if (abs && entry_info_json(abs, &entry) >= 0) /* best effort: it may be gone */
			json_object_set_new(ev, "entry", entry);
	}
	return ev;
}

/* Returns -EPIPE once the stream is gone, so the thread stops. */
static int emit(struct watcher *w, json_t *ev)
{
	if (!ev)
		return 0;
	if (w->stream)
		return rpc_stream_send(w->stream, json_pack("{s:o}", "filesystem", ev));

	pthread_mutex_lock(&w->qlock);
	if (json_array_size(w->events) < WATCH_QUEUE_MAX)
		json_array_append_new(w->events, ev);
	else {
		w->dropped++;
		json_decref(ev);
	}
	pthread_mutex_unlock(&w->qlock);
	return 0;
}

static void fail(struct watcher *w, const char *message)
{
	if (w->stream) {
		rpc_stream_end(w->stream, CONNECT_INTERNAL, message);
		return;
	}
	pthread_mutex_lock(&w->qlock);
	if (!w->error)
		w->error = strdup(message);
	pthread_mutex_unlock(&w->qlock);
}

/* A directory moved from rel, not yet matched with its IN_MOVED_TO. */
struct pending_move {
	uint32_t cookie;
	char *rel;
};

static void pending_flush(struct watcher *w, struct pending_move *pm)
{
	if (!pm->rel)
		return;
	dirs_drop(w, pm->rel);
	free(pm->rel);
	pm->rel = NULL;
}

/* Keeps the wd map in step with directories appearing, moving and leaving. */
static void track_dirs(struct watcher *w, const struct inotify_event *ev, const char *rel,
		       struct pending_move *pm)
{
	if (!w->recursive || !(ev->mask & IN_ISDIR) || !ev->len)
		return;
	if (ev->mask & IN_MOVED_FROM) {
		pending_flush(w, pm);
		pm->cookie = ev->cookie;
		pm->rel = strdup(rel);
	} else if (ev->mask & IN_MOVED_TO) {
		if (pm->rel && pm->cookie == ev->cookie) {
			dirs_rename(w, pm->rel, rel);
			free(pm->rel);
			pm->rel = NULL;
		} else {
			watch_new_dir(w, rel);
		}
	} else if (ev->mask & IN_CREATE) {
		watch_new_dir(w, rel);
	}
}

static int handle_event(struct watcher *w, const struct inotify_event *ev, struct pending_move *pm)
{
	if (ev->mask & IN_Q_OVERFLOW) {
		fail(w, "watcher error: fsnotify: queue or buffer overflow");
		return -EOVERFLOW;
	}
	if (ev->mask & IN_IGNORED) {
		dirs_remove(w, ev->wd);
		return 0;
	}
	struct watch_dir *dir = dirs_find(w, ev->wd);
	if (!dir)
		return 0;
	bool is_root = !*dir->rel;
	/* Events about a subdirectory itself also reach its parent's watch, with a name: report
	 * those once. The root has no parent watch, so its own removal or move is reported as ".".
	 */
	if (!ev->len && !is_root)
		return 0;

	_cleanup_free_ char *rel = join_rel(dir->rel, ev->len ? ev->name : "");
	if (!rel)
		return -ENOMEM;
	track_dirs(w, ev, rel, pm);

	enum fs_event_type types[5];
	size_t n = watch_mask_to_events(ev->mask, types, ELEMENTSOF(types));
	for (size_t i = 0; i < n; i++) {
		int r = emit(w, event_json(w, rel, types[i]));
		if (r < 0)
			return r;
	}
	return 0;
}

static int process_buffer(struct watcher *w, const char *buf, size_t len)
{
	struct pending_move pm = { 0 };
	int r = 0;
	for (size_t off = 0; off + sizeof(struct inotify_event) <= len && r >= 0;) {
		const struct inotify_event *ev = (const struct inotify_event *)(buf + off);
		size_t size = sizeof(*ev) + ev->len;
		if (off + size > len)
			break;
		r = handle_event(w, ev, &pm);
		off += size;
	}
	/* inotify queues both halves of a rename together; an unmatched half moved out. */
	pending_flush(w, &pm);
	return r;
}

static bool watcher_idle(struct watcher *w, uint64_t now)
{
	return now - __atomic_load_n(&w->last_poll, __ATOMIC_SEQ_CST) > WATCHER_IDLE_USEC;
}

/* Gives back an idle polling watcher's inotify watches at once; the next watch RPC frees it. */
static void watcher_expire(struct watcher *w)
{
	while (w->ndirs > 0) {
		inotify_rm_watch(w->ifd, w->dirs[w->ndirs - 1].wd);
		dirs_remove_at(w, w->ndirs - 1);
	}
	fail(w, "watcher expired: not polled for 10 minutes");
}

static void *watcher_main(void *userdata)
{
	struct watcher *w = userdata;
	char *rbuf = malloc(WATCH_READ_BUF); /* malloc's alignment suits struct inotify_event */
	if (!rbuf) {
		fail(w, "watcher error: out of memory");
		return NULL;
	}
	fsid_enter(&w->user);
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = w->ifd, .events = POLLIN },
			{ .fd = w->stop_fd, .events = POLLIN },
		};
		/* A polling watcher wakes now and then to notice that nobody polls it any more. */
		int r = poll(pfd, 2, w->stream ? -1 : WATCHER_IDLE_CHECK_MSEC);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			fail(w, "watcher error: poll failed");
			break;
		}
		if (pfd[1].revents)
			break;
		if (!w->stream && watcher_idle(w, now_usec())) {
			watcher_expire(w);
			break;
		}
		if (r == 0)
			continue;
		ssize_t n = read(w->ifd, rbuf, WATCH_READ_BUF);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			char msg[128];
			snprintf(msg, sizeof(msg), "watcher error: %s", strerror(errno));
			fail(w, msg);
			break;
		}
		if (process_buffer(w, rbuf, (size_t)n) < 0)
			break;
	}
	fsid_leave();
	free(rbuf);
	return NULL;
}

/* ---- lifetime ---- */

static struct watcher *watcher_free(struct watcher *w)
{
	if (!w)
		return NULL;
	if (w->thread_started) {
		uint64_t one = 1;
		if (write(w->stop_fd, &one, sizeof(one)) < 0)
			log_debug("watch: cannot wake watcher thread: %m");
		pthread_join(w->thread, NULL);
	}
	if (w->ifd >= 0)
		close(w->ifd);
	if (w->stop_fd >= 0)
		close(w->stop_fd);
	for (size_t i = 0; i < w->ndirs; i++)
		free(w->dirs[i].rel);
	__atomic_sub_fetch(&watch_budget_used, (unsigned)w->ndirs, __ATOMIC_SEQ_CST);
	free(w->dirs);
	free(w->root);
	json_decref(w->events);
	free(w->error);
	pthread_mutex_destroy(&w->qlock);
	free(w);
	return NULL;
}

static void watcher_freep(struct watcher **w)
{
	*w = watcher_free(*w);
}
#define _cleanup_watcher_ _cleanup_(watcher_freep)

int watch_table_new(struct watch_table **out)
{
	struct watch_table *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
	*out = t;
	return 0;
}

/* Call after the HTTP server has stopped: its streams' close callbacks free their watchers. */
void watch_table_free(struct watch_table *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	struct watcher *w = t->head;
	t->head = NULL;
	t->count = 0;
	pthread_mutex_unlock(&t->lock);
	while (w) {
		struct watcher *next = w->next;
		watcher_free(w);
		w = next;
	}
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static int table_add(struct watch_table *t, struct watcher *w)
{
	pthread_mutex_lock(&t->lock);
	if (t->count >= WATCHERS_MAX) {
		pthread_mutex_unlock(&t->lock);
		return -EMFILE;
	}
	w->table = t;
	w->next = t->head;
	t->head = w;
	t->count++;
	pthread_mutex_unlock(&t->lock);
	return 0;
}

/* Unlinks w (or, with w NULL, the polling watcher named id) and returns it. Caller frees. */
static struct watcher *table_take(struct watch_table *t, struct watcher *w, const char *id)
{
	pthread_mutex_lock(&t->lock);
	struct watcher **pp = &t->head;
	for (; *pp; pp = &(*pp)->next)
		if (w ? *pp == w : (*(*pp)->id && streq((*pp)->id, id)))
			break;
	struct watcher *found = *pp;
	if (found) {
		*pp = found->next;
		found->next = NULL;
		t->count--;
	}
	pthread_mutex_unlock(&t->lock);
	return found;
}

/*
 * Validates a WatchDirRequest/CreateWatcherRequest and sets up its inotify watches (as the
 * user). On success *out is a watcher with no thread yet, owned by the caller.
 */
static enum connect_code watcher_setup(struct rpc_ctx *ctx, const json_t *in, struct watcher **out,
				       char **msg)
{
	struct user_info u;
	_cleanup_free_ char *abs = NULL;
	enum connect_code code = fs_request_path(ctx, in, "path", &u, &abs, msg);
	if (code != CONNECT_OK)
		return code;
	bool recursive = false, include_entry = false, allow_network = false;
	if (jsonx_get_bool(in, "recursive", "recursive", &recursive) == -EINVAL ||
	    jsonx_get_bool(in, "includeEntry", "include_entry", &include_entry) == -EINVAL ||
	    jsonx_get_bool(in, "allowNetworkMounts", "allow_network_mounts", &allow_network) ==
		-EINVAL) {
		*msg = rpc_msg("invalid request: expected a bool");
		return CONNECT_INVALID_ARGUMENT;
	}

	_cleanup_watcher_ struct watcher *w = calloc(1, sizeof(*w));
	if (!w)
		return CONNECT_RESOURCE_EXHAUSTED;
	pthread_mutex_init(&w->qlock, NULL);
	w->ifd = w->stop_fd = -1;
	w->root = TAKE_PTR(abs);
	w->recursive = recursive;
	w->include_entry = include_entry;
	w->user = u;

	fsid_enter(&u);
	code = CONNECT_OK;
	_cleanup_close_ int fd = open(w->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct stat st;
	struct statfs sfs;
	int r = fd < 0 ? -errno : 0;
	if (r == -ENOENT) {
		*msg = rpc_msg("path %s not found: stat %s: no such file or directory", w->root,
			       w->root);
		code = CONNECT_NOT_FOUND;
	} else if (r == -ENOTDIR && stat(w->root, &st) == 0) {
		*msg = rpc_msg("path %s not a directory", w->root);
		code = CONNECT_INVALID_ARGUMENT;
	} else if (r < 0) {
		*msg = rpc_msg("error statting path %s: %s", w->root, strerror(-r));
		code = r == -EACCES ? CONNECT_PERMISSION_DENIED : CONNECT_INTERNAL;
	} else if (fstat(fd, &st) < 0) {
		r = -errno;
		*msg = rpc_msg("error statting path %s: %s", w->root, strerror(-r));
		code = CONNECT_INTERNAL;
	} else if (!allow_network && fstatfs(fd, &sfs) == 0) {
		for (size_t i = 0; i < ELEMENTSOF(network_fs_magic); i++)
			if ((unsigned long)sfs.f_type == network_fs_magic[i]) {
				*msg =
				    rpc_msg("cannot watch path on network filesystem: %s", w->root);
				code = CONNECT_INVALID_ARGUMENT;
			}
	}
	if (code == CONNECT_OK) {
		w->root_dev = st.st_dev;
		w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		w->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		r = w->ifd < 0 || w->stop_fd < 0 ? negative_errno() : watch_tree(w, fd, "", 0);
		if (r == -ENOSPC) {
			*msg = rpc_msg("error adding path %s to watcher: too many watched "
				       "directories (the limit is %d per watcher and %d in all)",
				       w->root, WATCH_DIRS_MAX, WATCH_BUDGET);
			code = CONNECT_RESOURCE_EXHAUSTED;
		} else if (r < 0) {
			*msg =
			    rpc_msg("error adding path %s to watcher: %s", w->root, strerror(-r));
			code = r == -ENOSPC || r == -EMFILE || r == -ENFILE
				   ? CONNECT_RESOURCE_EXHAUSTED
				   : CONNECT_INTERNAL;
		}
	}
	fsid_leave();
	if (code == CONNECT_OK)
		*out = TAKE_PTR(w);
	return code;
}

static int watcher_start(struct watcher *w)
{
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	int r = -pthread_create(&w->thread, &attr, watcher_main, w);
	pthread_attr_destroy(&attr);
	if (r < 0)
		return r;
	w->thread_started = true;
	return 0;
}

/* Frees polling watchers nobody polled for WATCHER_IDLE_USEC: a client that forgot to remove
 * one must not hold its thread and inotify watches forever. */
static void table_expire_idle(struct watch_table *t)
{
	uint64_t now = now_usec();
	struct watcher *expired = NULL;
	pthread_mutex_lock(&t->lock);
	for (struct watcher **pp = &t->head; *pp;) {
		struct watcher *w = *pp;
		if (*w->id && watcher_idle(w, now)) {
			*pp = w->next;
			t->count--;
			w->next = expired;
			expired = w;
		} else {
			pp = &w->next;
		}
	}
	pthread_mutex_unlock(&t->lock);
	while (expired) {
		struct watcher *next = expired->next;
		log_debug("watch: watcher %s expired (not polled for %u s)", expired->id,
			  WATCHER_IDLE_USEC / 1000000u);
		watcher_free(expired);
		expired = next;
	}
}

static enum connect_code no_table(char **msg)
{
	*msg = rpc_msg("watchers are not available");
	return CONNECT_UNAVAILABLE;
}

static enum connect_code too_many(char **msg)
{
	*msg = rpc_msg("too many watchers (the limit is %d)", WATCHERS_MAX);
	return CONNECT_RESOURCE_EXHAUSTED;
}

/* ---- WatchDir ---- */

static void watch_stream_closed(struct rpc_stream *s, void *userdata)
{
	struct watcher *w = userdata;
	(void)s;
	/* The stream is closed already, so a send the thread is blocked in returns -EPIPE and
	 * the join below is prompt. */
	table_take(w->table, w, NULL);
	watcher_free(w);
}

enum connect_code watch_dir_rpc(struct rpc_ctx *ctx, const json_t *in, struct rpc_stream *s,
				char **msg)
{
	struct watch_table *t = envd.watches;
	if (!t)
		return no_table(msg);
	table_expire_idle(t);
	_cleanup_watcher_ struct watcher *w = NULL;
	enum connect_code code = watcher_setup(ctx, in, &w, msg);
	if (code != CONNECT_OK)
		return code;
	w->stream = s;
	rpc_stream_set_keepalive(s, "{\"keepalive\":{}}");
	/* Queued before the thread exists, so `start` is always the first message. */
	if (rpc_stream_send(s, json_pack("{s:{}}", "start")) < 0)
		return CONNECT_INTERNAL;
	if (table_add(t, w) < 0)
		return too_many(msg);
	int r = watcher_start(w);
	if (r < 0) {
		table_take(t, w, NULL);
		*msg = rpc_msg("error starting watcher: %s", strerror(-r));
		return CONNECT_RESOURCE_EXHAUSTED;
	}
	rpc_stream_set_close_cb(s, watch_stream_closed, TAKE_PTR(w));
	return CONNECT_OK;
}

/* ---- polling watchers ---- */

enum connect_code watch_create_rpc(struct rpc_ctx *ctx, const json_t *in, json_t **resp, char **msg)
{
	struct watch_table *t = envd.watches;
	if (!t)
		return no_table(msg);
	table_expire_idle(t);
	_cleanup_watcher_ struct watcher *w = NULL;
	enum connect_code code = watcher_setup(ctx, in, &w, msg);
	if (code != CONNECT_OK)
		return code;
	w->events = json_array();
	uint8_t rnd[8];
	if (!w->events || getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
		return CONNECT_INTERNAL;
	char *p = w->id;
	*p++ = 'w';
	for (size_t i = 0; i < sizeof(rnd); i++)
		p += sprintf(p, "%02x", rnd[i]);
	__atomic_store_n(&w->last_poll, now_usec(), __ATOMIC_SEQ_CST);

	if (table_add(t, w) < 0)
		return too_many(msg);
	int r = watcher_start(w);
	if (r < 0) {
		table_take(t, w, NULL);
		*msg = rpc_msg("error starting watcher: %s", strerror(-r));
		return CONNECT_RESOURCE_EXHAUSTED;
	}
	*resp = json_pack("{s:s}", "watcherId", w->id);
	TAKE_PTR(w); /* owned by the table now */
	return *resp ? CONNECT_OK : CONNECT_RESOURCE_EXHAUSTED;
}

/* The watcher id of a request, after authenticating its user as the other RPCs do. */
static enum connect_code watcher_id_of(struct rpc_ctx *ctx, const json_t *in, const char **id,
				       char **msg)
{
	struct user_info u;
	int r = user_resolve(ctx->user, &u);
	if (r < 0) {
		*msg = ctx->user ? rpc_msg("invalid user: '%s'", ctx->user)
				 : rpc_msg("invalid default user");
		return r == -EPERM ? CONNECT_PERMISSION_DENIED : CONNECT_UNAUTHENTICATED;
	}
	*id = NULL;
	if (jsonx_get_string(in, "watcherId", "watcher_id", id) < 0 || !*id) {
		*msg = rpc_msg("watcher with id %s not found", "");
		return CONNECT_NOT_FOUND;
	}
	return CONNECT_OK;
}

enum connect_code watch_get_events_rpc(struct rpc_ctx *ctx, const json_t *in, json_t **resp,
				       char **msg)
{
	struct watch_table *t = envd.watches;
	if (!t)
		return no_table(msg);
	table_expire_idle(t);
	const char *id;
	enum connect_code code = watcher_id_of(ctx, in, &id, msg);
	if (code != CONNECT_OK)
		return code;
	_cleanup_json_ json_t *fresh = json_array();
	if (!fresh)
		return CONNECT_RESOURCE_EXHAUSTED;

	json_t *events = NULL;
	size_t dropped = 0;
	code = CONNECT_OK;
	pthread_mutex_lock(&t->lock);
	struct watcher *w = t->head;
	while (w && !(*w->id && streq(w->id, id)))
		w = w->next;
	if (!w) {
		*msg = rpc_msg("watcher with id %s not found", id);
		code = CONNECT_NOT_FOUND;
	} else {
		__atomic_store_n(&w->last_poll, now_usec(), __ATOMIC_SEQ_CST);
		/* Lock order: table, then watcher queue. The thread only takes the queue lock. */
		pthread_mutex_lock(&w->qlock);
		if (w->error) {
			*msg = strdup(w->error);
			code = CONNECT_INTERNAL;
		} else {
			events = w->events;
			w->events = TAKE_PTR(fresh);
			dropped = w->dropped;
			w->dropped = 0;
		}
		pthread_mutex_unlock(&w->qlock);
	}
	pthread_mutex_unlock(&t->lock);
	if (code != CONNECT_OK)
		return code;
	if (dropped) {
		/* Saying so beats silently skipping events; the queue starts afresh. */
		json_decref(events);
		*msg = rpc_msg("watcher event queue overflowed: %zu events dropped (the limit is "
			       "%d between polls)",
			       dropped, WATCH_QUEUE_MAX);
		return CONNECT_RESOURCE_EXHAUSTED;
	}
	*resp = json_pack("{s:o}", "events", events);
	return *resp ? CONNECT_OK : CONNECT_RESOURCE_EXHAUSTED;
}

enum connect_code watch_remove_rpc(struct rpc_ctx *ctx, const json_t *in, json_t **resp, char **msg)
{
	struct watch_table *t = envd.watches;
	if (!t)
		return no_table(msg);
	table_expire_idle(t);
	const char *id;
	enum connect_code code = watcher_id_of(ctx, in, &id, msg);
	if (code != CONNECT_OK)
		return code;
	struct watcher *w = table_take(t, NULL, id);
	if (!w) {
		*msg = rpc_msg("watcher with id %s not found", id);
		return CONNECT_NOT_FOUND;
	}
	watcher_free(w);
	*resp = json_object();
	return CONNECT_OK;
}
