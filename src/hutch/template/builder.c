/* The template builder (see builder.h): build threads, layer cache, step execution, logs. */
#include "template/builder.h"

#include <endian.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <linux/capability.h>
#include <ftw.h>
#include <limits.h>
#include <nettle/sha2.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include "common/log.h"
#include "common/util.h"
#include "json/jsonx.h"
#include "template/image.h"
#include "template/recipe.h"
#include "template/tar.h"
#include "runtime/runtime.h"

#define BUILD_MAX_LOG_ENTRIES 20000
#define BUILD_LINE_MAX	      4096
#define BUILD_TAIL_ENTRIES    20
#define BUILD_READY_TIMEOUT_S 600 /* E2B's cap on a ready command during a build */
#define BUILD_SANDBOX_TIMEOUT 7200

struct build {
	int refs;
	char id[40];
	char template_id[64];
	char name[128];
	struct builder *b;
	pthread_mutex_t lock; /* logs, status, reason, sandbox_id */
	json_t *logs;	      /* [{timestamp, level, message, step}] */
	char status[16];
	json_t *reason;
	char sandbox_id[40]; /* the build sandbox running now, for builder_free */
	bool stop;
	bool log_daemon; /* BUILDER_LOG_DAEMON */
	struct recipe recipe;
	unsigned cpu, memory_mb;
	json_t *tags;
	pthread_t thread;
	bool thread_started;
	struct build *next;
	/* the step's output being split into lines */
	char line[BUILD_LINE_MAX];
	size_t line_len;
	char step_name[32];
};

struct builder {
	struct hutch_config *cfg;
	struct store *st;
	struct orchestr *o;
	char layers_dir[PATH_MAX / 2];
	char files_dir[PATH_MAX / 2];
	char logs_dir[PATH_MAX / 2];
	pthread_mutex_t lock;
	pthread_cond_t ended; /* a build thread is done (builder_wait); under lock */
	struct build *list;
};

/* The state ENV/USER/WORKDIR steps change. */
struct build_state {
	json_t *layers; /* paths, lowest first */
	char key[65];
	json_t *env;
	char user[128];
	char workdir[PATH_MAX];
	bool user_set, workdir_set;
};

static int64_t now_ms(void)
{
	return (int64_t)(now_realtime_usec() / 1000u);
}

static void build_unref(struct build *bd)
{
	if (!bd || __atomic_sub_fetch(&bd->refs, 1, __ATOMIC_SEQ_CST) > 0)
		return;
	json_decref(bd->logs);
	json_decref(bd->reason);
	json_decref(bd->tags);
	recipe_done(&bd->recipe);
	pthread_mutex_destroy(&bd->lock);
	free(bd);
}

/* ---- logs ---- */

static void build_log(struct build *bd, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* DATA/template-builds/<id>.log: a build's log, kept for after a restart. */
static void build_log_path(const struct builder *b, const char *build_id, char *buf, size_t size)
{
	snprintf(buf, size, "%s/%s.log", b->logs_dir, build_id);
}

static void log_entry(struct build *bd, const char *level, const char *msg)
{
	char ts[64];
	int64_t t = now_ms();
	format_rfc3339(ts, sizeof(ts), t / 1000, (long)(t % 1000) * 1000000L);
	json_t *e = json_pack("{s:s, s:s, s:o}", "timestamp", ts, "level", level, "message",
			      jsonx_string_lossy(msg));
	if (!e)
		return;
	if (bd->step_name[0])
		json_object_set_new(e, "step", json_string(bd->step_name));
	pthread_mutex_lock(&bd->lock);
	size_t n = json_array_size(bd->logs);
	if (n < BUILD_MAX_LOG_ENTRIES)
		json_array_append(bd->logs, e);
	else if (n == BUILD_MAX_LOG_ENTRIES)
		json_array_append_new(
		    bd->logs, json_pack("{s:s, s:s, s:s}", "timestamp", ts, "level", "warn",
					"message", "log limit reached: later lines dropped"));
	pthread_mutex_unlock(&bd->lock);
	if (bd->log_daemon)
		log_full_errno(streq(level, "error")  ? LOG_LEVEL_ERROR
			       : streq(level, "warn") ? LOG_LEVEL_WARN
						      : LOG_LEVEL_INFO,
			       0, "Template %s build %s: %s", bd->name, bd->id, msg);
	/* A copy in the data dir, for after a restart. */
	char path[PATH_MAX + 64];
	build_log_path(bd->b, bd->id, path, sizeof(path));
	_cleanup_free_ char *text = json_dumps(e, JSON_COMPACT);
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0 && text) {
		(void)!write(fd, text, strlen(text));
		(void)!write(fd, "\n", 1);
	}
	if (fd >= 0)
		close(fd);
	json_decref(e);
}

static void build_log(struct build *bd, const char *level, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_entry(bd, level, msg);
}

static void flush_line(struct build *bd)
{
	if (!bd->line_len)
		return;
	bd->line[bd->line_len] = 0;
	log_entry(bd, "info", bd->line);
	bd->line_len = 0;
}

static void step_output(void *ud, int fd, const char *buf, size_t len)
{
	struct build *bd = ud;
	(void)fd;
	for (size_t i = 0; i < len; i++) {
		if (buf[i] == '\n' || bd->line_len == sizeof(bd->line) - 1) {
			flush_line(bd);
			if (buf[i] == '\n')
				continue;
		}
		if (buf[i] != '\r')
			bd->line[bd->line_len++] = buf[i];
	}
}

/* ---- keys and the layer cache ---- */

static void sha_str(struct sha256_ctx *c, const char *s)
{
	uint64_t n = s ? strlen(s) : 0;
	sha256_update(c, sizeof(n), (const uint8_t *)&n);
	if (n)
		sha256_update(c, n, (const uint8_t *)s);
}

static void sha_hex(struct sha256_ctx *c, char out[65])
{
	uint8_t d[SHA256_DIGEST_SIZE];
	sha256_digest(c, sizeof(d), d);
	for (size_t i = 0; i < sizeof(d); i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void step_key(const struct build_state *s, const struct recipe_step *st, bool force,
		     char out[65])
{
	struct sha256_ctx c;
	sha256_init(&c);
	sha_str(&c, "hutch-layer-v1");
	sha_str(&c, s->key);
	sha_str(&c, st->type_name);
	for (size_t i = 0; i < st->n_args; i++)
		sha_str(&c, st->args[i]);
	sha_str(&c, st->files_hash);
	_cleanup_free_ char *env = jsonx_dump(s->env);
	sha_str(&c, env);
	sha_str(&c, s->user);
	sha_str(&c, s->workdir);
	if (force) {
		/* A forced step is built anew, and so is everything after it. */
		uint8_t nonce[16];
		char hex[33];
		if (getrandom(nonce, sizeof(nonce), 0) != sizeof(nonce))
			memset(nonce, 0, sizeof(nonce));
		for (size_t i = 0; i < sizeof(nonce); i++)
			snprintf(hex + 2 * i, 3, "%02x", nonce[i]);
		sha_str(&c, hex);
	}
	sha_hex(&c, out);
}

static bool path_exists(const char *p)
{
	struct stat st;
	return lstat(p, &st) == 0;
}

/* Shifts ids in [base, base + SANDBOX_UID_COUNT) back to [0, SANDBOX_UID_COUNT). */
static uint32_t unshift_base;
static int unshift_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)flag;
	(void)ftw;
	uid_t uid = st->st_uid;
	gid_t gid = st->st_gid;
	if (uid >= unshift_base && uid - unshift_base < SANDBOX_UID_COUNT)
		uid -= unshift_base;
	if (gid >= unshift_base && gid - unshift_base < SANDBOX_UID_COUNT)
		gid -= unshift_base;
	if (uid == st->st_uid && gid == st->st_gid)
		return 0;
	struct vfs_ns_cap_data caps;
	ssize_t ncaps =
	    S_ISREG(st->st_mode) ? lgetxattr(path, "security.capability", &caps, sizeof(caps)) : -1;
	if (lchown(path, uid, gid) < 0)
		return -errno;
	/* chown drops setuid/setgid bits: put them back. */
	if (!S_ISLNK(st->st_mode) && (st->st_mode & (S_ISUID | S_ISGID)) &&
	    chmod(path, st->st_mode & 07777) < 0)
		return -errno;
	/* ... and file capabilities (setcap in a RUN). Root in the build sandbox wrote them for
	 * its namespace (v3, rootid = its host uid); the layer keeps them for any sandbox's root
	 * (v2: rootid 0, which a sandbox's idmapped mount of the layer maps to its own root). */
	if (ncaps == (ssize_t)XATTR_CAPS_SZ_3 &&
	    (le32toh(caps.magic_etc) & VFS_CAP_REVISION_MASK) == VFS_CAP_REVISION_3 &&
	    le32toh(caps.rootid) == unshift_base) {
		caps.magic_etc = htole32(VFS_CAP_REVISION_2 |
					 (le32toh(caps.magic_etc) & VFS_CAP_FLAGS_EFFECTIVE));
		ncaps = (ssize_t)XATTR_CAPS_SZ_2;
	}
	if (ncaps == (ssize_t)XATTR_CAPS_SZ_2 &&
	    lsetxattr(path, "security.capability", &caps, XATTR_CAPS_SZ_2, 0) < 0)
		return -errno;
	return 0;
}

static pthread_mutex_t unshift_lock = PTHREAD_MUTEX_INITIALIZER;

static int unshift_tree(const char *dir, uint32_t base)
{
	pthread_mutex_lock(&unshift_lock); /* nftw has no user data */
	unshift_base = base;
	int r = nftw(dir, unshift_one, 64, FTW_PHYS | FTW_MOUNT);
	pthread_mutex_unlock(&unshift_lock);
	return r < 0 ? -errno : r;
}

static int rm_tree(const char *path)
{
	_cleanup_free_ char *copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	char *slash = strrchr(copy, '/');
	if (!slash)
		return -EINVAL;
	*slash = 0;
	_cleanup_close_ int dfd = open(copy, O_PATH | O_DIRECTORY | O_CLOEXEC);
	return dfd < 0 ? -errno : rm_rf_at(dfd, slash + 1);
}

/* ---- running a step in a build sandbox ---- */

struct prepare {
	struct build *bd;
	const char *tmp;     /* the upper_dir: tmp/upper, tmp/work */
	const char *archive; /* COPY: the uploaded tarball, extracted into upper/.hutch-copy */
	const char *add_src; /* ADD: the source pattern whose local tar archives are unpacked */
	char err[600];
};

/* ADD: regular files matching the source pattern that are tar archives (nftw has no user
 * data: the caller holds unshift_lock). */
static const char *add_root, *add_pattern;
static char **add_found;
static size_t add_n;
static int add_match(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)ftw;
	if (flag != FTW_F || !S_ISREG(st->st_mode) || strlen(path) <= strlen(add_root) + 1)
		return 0;
	const char *rel = path + strlen(add_root) + 1;
	if (fnmatch(add_pattern, rel, FNM_PATHNAME) != 0)
		return 0;
	_cleanup_close_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || !tar_probe_fd(fd))
		return 0;
	char **grown = realloc(add_found, (add_n + 1) * sizeof(char *));
	if (!grown)
		return -1;
	add_found = grown;
	return (add_found[add_n] = strdup(path)) ? (add_n++, 0) : -1;
}

/* Replaces each local tar archive ADD names by a directory of its contents, so the copy script
 * puts them into the destination as Docker's ADD does. */
static int unpack_add_archives(struct prepare *p, const char *staging, uint32_t uid_base)
{
	pthread_mutex_lock(&unshift_lock);
	add_root = staging;
	add_pattern = p->add_src;
	add_found = NULL;
	add_n = 0;
	int r = nftw(staging, add_match, 64, FTW_PHYS | FTW_MOUNT);
	char **found = add_found;
	size_t n = add_n;
	pthread_mutex_unlock(&unshift_lock);
	for (size_t i = 0; r == 0 && i < n; i++) {
		char dir[PATH_MAX + 16];
		snprintf(dir, sizeof(dir), "%s.hutch-x", found[i]);
		struct tar_opts opts = { .uid = uid_base, .gid = uid_base };
		struct tar_error terr = { { 0 } };
		r = tar_extract_path(found[i], dir, &opts, NULL, &terr);
		if (r < 0)
			snprintf(p->err, sizeof(p->err), "ADD %s: %s",
				 found[i] + strlen(staging) + 1,
				 terr.message[0] ? terr.message : strerror(-r));
		else if (unlink(found[i]) < 0 || rename(dir, found[i]) < 0 ||
			 chown(found[i], uid_base, uid_base) < 0)
			r = -errno;
	}
	for (size_t i = 0; i < n; i++)
		free(found[i]);
	free(found);
	return r < 0 ? r : 0;
}

static int prepare_upper(void *ud, uint32_t uid_base)
{
	struct prepare *p = ud;
	char upper[PATH_MAX + 16];
	snprintf(upper, sizeof(upper), "%s/upper", p->tmp);
	if (mkdir(upper, 0755) < 0 && errno != EEXIST)
		return -errno;
	if (chown(upper, uid_base, uid_base) < 0)
		return -errno;
	if (!p->archive)
		return 0;
	char dest[PATH_MAX + 32];
	snprintf(dest, sizeof(dest), "%s/.hutch-copy", upper);
	/* Everything owned by root inside; the COPY then sets the owner it asks for. */
	struct tar_opts opts = { .uid = uid_base, .gid = uid_base };
	struct tar_error terr = { { 0 } };
	int r = tar_extract_path(p->archive, dest, &opts, NULL, &terr);
	if (r < 0) {
		snprintf(p->err, sizeof(p->err), "cannot extract the uploaded files: %s",
			 terr.message[0] ? terr.message : strerror(-r));
		return r;
	}
	if (chown(dest, uid_base, uid_base) < 0)
		return -errno;
	return p->add_src ? unpack_add_archives(p, dest, uid_base) : 0;
}

/* COPY inside the build sandbox, from the extracted upload in /.hutch-copy: Docker's rules (a
 * directory's contents go into dest; files go into dest when it ends in '/' or is a directory or
 * several files match), then owner and mode. Arguments come as environment variables. */
static const char copy_script[] =
    "set -e\n"
    "cd /.hutch-copy\n"
    "IFS=''\n"
    "set -- $HUTCH_SRC\n"
    "if [ ! -e \"$1\" ] && [ ! -L \"$1\" ]; then\n"
    "  echo \"COPY: no files match '$HUTCH_SRC'\" >&2; exit 1\n"
    "fi\n"
    "dest=\"$HUTCH_DEST\"\n"
    "case \"$dest\" in /*) ;; *) dest=\"${HUTCH_WORKDIR:-/}/$dest\" ;; esac\n"
    "todir=0\n"
    "[ $# -gt 1 ] && todir=1\n"
    "case \"$dest\" in */) todir=1 ;; esac\n"
    "[ -d \"$dest\" ] && todir=1\n"
    "owner=\"${HUTCH_OWNER:-root}\"\n"
    "case \"$owner\" in *:*) ;; *) owner=\"$owner:$(id -gn \"$owner\" 2>/dev/null || echo "
    "root)\" ;; esac\n"
    "fix() { chown -R -h \"$owner\" \"$1\"; if [ -n \"$HUTCH_MODE\" ]; then chmod -R "
    "\"$HUTCH_MODE\" \"$1\"; fi; }\n"
    "for s in \"$@\"; do\n"
    "  if [ -d \"$s\" ] && [ ! -L \"$s\" ]; then\n"
    "    mkdir -p \"$dest\"\n"
    "    for f in \"$s\"/* \"$s\"/.[!.]* \"$s\"/..?*; do\n"
    "      [ -e \"$f\" ] || [ -L \"$f\" ] || continue\n"
    "      t=\"${dest%/}/${f##*/}\"; rm -rf \"$t\"; cp -a \"$f\" \"$t\"; fix \"$t\"\n"
    "    done\n"
    "  elif [ $todir = 1 ]; then\n"
    "    mkdir -p \"$dest\"; t=\"${dest%/}/${s##*/}\"; rm -rf \"$t\"; cp -a \"$s\" \"$t\"; fix "
    "\"$t\"\n"
    "  else\n"
    "    mkdir -p \"$(dirname \"$dest\")\"; rm -rf \"$dest\"; cp -a \"$s\" \"$dest\"; fix "
    "\"$dest\"\n"
    "  fi\n"
    "done\n"
    "cd /\n"
    "rm -rf /.hutch-copy\n";

static const char mkdir_script[] = "mkdir -p -- \"$HUTCH_WORKDIR\"";

/* What the runtime writes into every sandbox's root (per-sandbox files and mount points) is not
 * part of a layer: as with Docker, /etc/hostname, /etc/hosts and /etc/resolv.conf written by
 * a RUN do not persist either. */
static void strip_runtime_files(const char *upper)
{
	_cleanup_close_ int dfd = open(upper, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return;
	rm_rf_at(dfd, ".hutch");
	rm_rf_at(dfd, ".hutch-old");
	_cleanup_close_ int etc =
	    openat(dfd, "etc", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (etc < 0)
		return;
	static const char *const names[] = { "hostname", "hosts", "resolv.conf" };
	for (size_t i = 0; i < ELEMENTSOF(names); i++) {
		struct stat st;
		if (fstatat(etc, names[i], &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
			unlinkat(etc, names[i], 0);
	}
}

/* Runs the step's commands in a sandbox on s->layers; on success the new layer is at `layer`. */
static int run_in_sandbox(struct build *bd, struct build_state *s, const struct recipe_step *st,
			  const char *layer, char *err, size_t errlen)
{
	struct builder *b = bd->b;
	char tmp[PATH_MAX];
	char rnd[9];
	uint8_t rb[4];
	if (getrandom(rb, sizeof(rb), 0) != sizeof(rb))
		return -EIO;
	snprintf(rnd, sizeof(rnd), "%02x%02x%02x%02x", rb[0], rb[1], rb[2], rb[3]);
	snprintf(tmp, sizeof(tmp), "%s/.tmp-%s-%s", b->layers_dir, bd->id, rnd);
	if (mkdir(tmp, 0700) < 0) {
		snprintf(err, errlen, "cannot create %.500s: %s", tmp, strerror(errno));
		return -errno;
	}
	char archive[PATH_MAX];
	struct prepare prep = { .bd = bd, .tmp = tmp };
	if (st->type == STEP_COPY) {
		builder_files_path(b, st->files_hash, archive, sizeof(archive));
		if (!path_exists(archive)) {
			snprintf(err, errlen, "the files of COPY %s (hash %s) were never uploaded",
				 st->args[0], st->files_hash);
			rmdir(tmp);
			return -ENOENT;
		}
		prep.archive = archive;
		if (streq(st->type_name, "ADD"))
			prep.add_src = st->args[0];
	}
	size_t nl = json_array_size(s->layers);
	const char **layers = calloc(nl + 1, sizeof(char *));
	if (!layers) {
		rmdir(tmp);
		return -ENOMEM;
	}
	for (size_t i = 0; i < nl; i++)
		layers[i] = json_string_value(json_array_get(s->layers, i));
	_cleanup_json_ json_t *config = json_pack("{s:s, s:O}", "user", "root", "envVars", s->env);
	struct create_request cr = {
		.template_id = bd->template_id,
		.timeout_s = BUILD_SANDBOX_TIMEOUT,
		.allow_internet = true,
		.key_id = "",
		.layers = layers,
		.upper_dir = tmp,
		.config = config,
		.before_start = prepare_upper,
		.userdata = &prep,
	};
	struct sandbox_rec rec = { 0 };
	struct api_error aerr = { 0 };
	int r = orchestr_create(b->o, &cr, &rec, &aerr);
	free(layers);
	if (r < 0) {
		snprintf(err, errlen, "cannot start the build sandbox: %s",
			 prep.err[0] ? prep.err : aerr.message);
		rm_tree(tmp);
		return r;
	}
	pthread_mutex_lock(&bd->lock);
	snprintf(bd->sandbox_id, sizeof(bd->sandbox_id), "%s", rec.id);
	bool stop = bd->stop;
	pthread_mutex_unlock(&bd->lock);

	_cleanup_json_ json_t *envs = json_deep_copy(s->env);
	json_object_set_new(envs, "HUTCH_WORKDIR", json_string(s->workdir[0] ? s->workdir : "/"));
	int code = 0;
	char msg[512] = "";
	const char *user = s->user[0] ? s->user : "root";
	if (!stop && st->type == STEP_RUN && s->workdir[0]) {
		struct exec_opts mk = { .cmd = mkdir_script, .sh = true, .envs = envs };
		r = orchestr_exec(b->o, rec.id, &mk, &code, msg, sizeof(msg));
		if (r == 0 && code != 0)
			r = -EIO,
			snprintf(msg, sizeof(msg), "cannot create workdir %.400s", s->workdir);
	}
	if (!stop && r == 0) {
		struct exec_opts eo = { .envs = envs, .output = step_output, .userdata = bd };
		if (st->type == STEP_RUN) {
			eo.cmd = st->args[0];
			eo.user = st->n_args > 1 && *st->args[1] ? st->args[1] : user;
			eo.cwd = s->workdir[0] ? s->workdir : NULL;
		} else if (st->type == STEP_COPY) {
			eo.cmd = copy_script;
			eo.sh = true;
			json_object_set_new(envs, "HUTCH_SRC", json_string(st->args[0]));
			json_object_set_new(envs, "HUTCH_DEST", json_string(st->args[1]));
			json_object_set_new(
			    envs, "HUTCH_OWNER",
			    json_string(st->n_args > 2 && *st->args[2] ? st->args[2] : user));
			json_object_set_new(envs, "HUTCH_MODE",
					    json_string(st->n_args > 3 ? st->args[3] : ""));
		} else {
			eo.cmd = mkdir_script;
			eo.sh = true;
		}
		r = orchestr_exec(b->o, rec.id, &eo, &code, msg, sizeof(msg));
		flush_line(bd);
	}
	orchestr_kill(b->o, rec.id);
	pthread_mutex_lock(&bd->lock);
	bd->sandbox_id[0] = 0;
	stop = bd->stop;
	pthread_mutex_unlock(&bd->lock);
	uint32_t uid_base = rec.uid_base;
	sandbox_rec_clear(&rec);
	if (stop)
		r = -ECANCELED, snprintf(msg, sizeof(msg), "the build was stopped");
	if (r == 0 && code != 0) {
		snprintf(err, errlen, "exit code %d", code);
		r = -ECHILD;
	} else if (r < 0) {
		snprintf(err, errlen, "%s", msg);
	}
	char upper[PATH_MAX + 16];
	snprintf(upper, sizeof(upper), "%s/upper", tmp);
	if (r == 0)
		strip_runtime_files(upper);
	if (r == 0 && (r = unshift_tree(upper, uid_base)) < 0)
		snprintf(err, errlen, "cannot shift the layer's owners: %s", strerror(-r));
	if (r == 0 && rename(upper, layer) < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot move the layer into the cache: %s", strerror(-r));
	}
	rm_tree(tmp);
	return r;
}

/* Whether dir exists as a directory in the topmost layer that has it. */
static bool dir_in_layers(const json_t *layers, const char *dir)
{
	for (size_t i = json_array_size(layers); i-- > 0;) {
		char p[PATH_MAX * 2];
		snprintf(p, sizeof(p), "%s/%s", json_string_value(json_array_get(layers, i)), dir);
		struct stat st;
		if (lstat(p, &st) == 0)
			return S_ISDIR(st.st_mode);
	}
	return false;
}

/* One layer-making step: cached, or run under the key's lock. */
static int layer_step(struct build *bd, struct build_state *s, const struct recipe_step *st,
		      const char *key, char *err, size_t errlen, bool *cached)
{
	char layer[PATH_MAX + 80], lock[PATH_MAX + 80];
	snprintf(layer, sizeof(layer), "%s/%s", bd->b->layers_dir, key);
	snprintf(lock, sizeof(lock), "%s/.lock-%s", bd->b->layers_dir, key);
	*cached = false;
	if (path_exists(layer)) {
		*cached = true;
		return json_array_append_new(s->layers, json_string(layer)) < 0 ? -ENOMEM : 0;
	}
	_cleanup_close_ int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lfd < 0 || flock(lfd, LOCK_EX) < 0) {
		snprintf(err, errlen, "cannot lock %.500s: %s", lock, strerror(errno));
		return -errno;
	}
	int r = 0;
	if (path_exists(layer)) /* another build made it meanwhile */
		*cached = true;
	else
		r = run_in_sandbox(bd, s, st, layer, err, errlen);
	unlink(lock);
	if (r < 0)
		return r;
	return json_array_append_new(s->layers, json_string(layer)) < 0 ? -ENOMEM : 0;
}

/* ---- base ---- */

static void image_log(void *ud, const char *line)
{
	build_log(ud, "info", "%s", line);
}

/* E2B's templates always have `user` (uid 1000 where free): images get it at build time. */
static const char provision_script[] =
    "if ! id user >/dev/null 2>&1; then\n"
    "  if command -v useradd >/dev/null 2>&1; then\n"
    "    sh=/bin/sh; [ -x /bin/bash ] && sh=/bin/bash\n"
    "    useradd --create-home --home-dir /home/user --shell $sh user\n"
    "  elif command -v adduser >/dev/null 2>&1; then adduser -D user\n"
    "  else echo 'cannot create the user `user`: no useradd or adduser' >&2; exit 1; fi\n"
    "fi\n";

/* --image-dirs "A:B" as a NULL-terminated array in one malloc'd block; NULL for none. */
static char **image_dirs_split(const char *list)
{
	if (isempty(list))
		return NULL;
	size_t n = 2, len = strlen(list);
	for (const char *c = list; *c; c++)
		n += *c == ':';
	char **v = malloc(n * sizeof(char *) + len + 1);
	if (!v)
		return NULL;
	char *copy = (char *)(v + n), *save = NULL;
	memcpy(copy, list, len + 1);
	size_t i = 0;
	for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save))
		v[i++] = d;
	v[i] = NULL;
	return v;
}

/* fromImage: the image's layers (tpl-image's image_fetch) and its config as the first state. */
static int resolve_image(struct build *bd, struct build_state *s, char *err, size_t errlen)
{
	const struct recipe *rc = &bd->recipe;
	json_t *reg = json_object_get(rc->json, "fromImageRegistry");
	const char *rtype = json_string_value(json_object_get(reg, "type"));
	if (reg && !json_is_null(reg) && (!rtype || !streq(rtype, "registry"))) {
		snprintf(err, errlen,
			 "fromImageRegistry type '%s' is not supported (only 'registry')",
			 rtype ? rtype : "");
		return -EOPNOTSUPP;
	}
	_cleanup_free_ char **dirs = image_dirs_split(bd->b->cfg->image_dirs);
	struct image_opts io = {
		.cache_dir = bd->b->cfg->cache_dir,
		.mirror = bd->b->cfg->mirror,
		.local_dirs = (const char *const *)dirs,
		.username = json_string_value(json_object_get(reg, "username")),
		.password = json_string_value(json_object_get(reg, "password")),
		.log = image_log,
		.log_userdata = bd,
	};
	struct image img = { 0 };
	struct image_error ierr = { { 0 } };
	int r = image_fetch(rc->from_image, &io, &img, &ierr);
	if (r < 0) {
		snprintf(err, errlen, "fromImage '%s': %s", rc->from_image,
			 ierr.message[0] ? ierr.message : strerror(-r));
		image_clear(&img);
		return r;
	}
	s->layers = json_array();
	for (size_t i = 0; s->layers && i < img.n_layers; i++)
		json_array_append_new(s->layers, json_string(img.layers[i]));
	s->env = json_object();
	size_t i;
	json_t *v;
	json_array_foreach (json_object_get(img.config, "Env"), i, v) {
		const char *kv = json_string_value(v);
		const char *eq = kv ? strchr(kv, '=') : NULL;
		if (eq && eq > kv) {
			_cleanup_free_ char *k = strndup(kv, (size_t)(eq - kv));
			if (k)
				json_object_set_new(s->env, k, json_string(eq + 1));
		}
	}
	const char *wd = json_string_value(json_object_get(img.config, "WorkingDir"));
	const char *user = json_string_value(json_object_get(img.config, "User"));
	snprintf(s->workdir, sizeof(s->workdir), "%s", wd ? wd : "");
	if (!isempty(user))
		snprintf(s->user, sizeof(s->user), "%s", user);
	struct sha256_ctx c;
	sha256_init(&c);
	sha_str(&c, "hutch-image-v1");
	sha_str(&c, img.id);
	sha_hex(&c, s->key);
	build_log(bd, "info", "Image %s: %zu layer(s)", img.id, img.n_layers);
	image_clear(&img);
	if (!s->layers || !s->env)
		return -ENOMEM;
	/* The user E2B's SDK expects, as a cached layer of its own. */
	const char *args[] = { provision_script, "root", NULL };
	struct recipe_step st = { .type = STEP_RUN, .type_name = "RUN", .args = args, .n_args = 2 };
	char key[65];
	bool cached = false;
	step_key(s, &st, false, key);
	memcpy(s->key, key, sizeof(key));
	r = layer_step(bd, s, &st, key, err, errlen, &cached);
	if (r == 0)
		build_log(bd, "info", "%s [base] the user `user`", cached ? "CACHED" : "DONE");
	return r;
}

/* The layers and config of fromTemplate (name, id, name:tag) or fromImage e2bdev/base. */
static int resolve_base(struct build *bd, struct build_state *s, json_t **config, char *err,
			size_t errlen)
{
	const struct recipe *rc = &bd->recipe;
	const char *name = rc->from_template;
	if (rc->from_image) {
		if (!streq(rc->from_image, "e2bdev/base") &&
		    !streq(rc->from_image, "e2bdev/base:latest")) {
			*config = json_object();
			return *config ? resolve_image(bd, s, err, errlen) : -ENOMEM;
		}
		name = "base";
	}
	char tname[192];
	snprintf(tname, sizeof(tname), "%s", name);
	char *colon = strchr(tname, ':');
	if (colon)
		*colon = 0;
	struct template_rec t = { 0 };
	if (store_template_get(bd->b->st, tname, &t) < 0) {
		snprintf(err, errlen, "base template '%s' not found", name);
		return -ENOENT;
	}
	if (colon) {
		char bid[40];
		struct build_rec br = { 0 };
		if (store_tag_get(bd->b->st, t.id, colon + 1, bid) < 0 ||
		    store_build_get(bd->b->st, bid, &br) < 0 || !streq(br.status, "ready")) {
			template_rec_clear(&t);
			build_rec_clear(&br);
			snprintf(err, errlen, "base template '%s' has no ready build tagged '%s'",
				 tname, colon + 1);
			return -ENOENT;
		}
		json_decref(t.layers);
		json_decref(t.config);
		t.layers = json_incref(json_object_get(br.data, "layers"));
		t.config = json_incref(json_object_get(br.data, "config"));
		build_rec_clear(&br);
	}
	if (json_array_size(t.layers) == 0) {
		snprintf(err, errlen, "base template '%s' has no ready build", name);
		template_rec_clear(&t);
		return -ENOENT;
	}
	s->layers = json_deep_copy(t.layers);
	*config = t.config ? json_incref(t.config) : json_object();
	template_rec_clear(&t);
	json_t *env = json_object_get(*config, "envVars");
	s->env = json_is_object(env) ? json_deep_copy(env) : json_object();
	const char *wd = json_string_value(json_object_get(*config, "workdir"));
	snprintf(s->workdir, sizeof(s->workdir), "%s", wd ? wd : "");
	struct sha256_ctx c;
	sha256_init(&c);
	sha_str(&c, "hutch-base-v1");
	for (size_t i = 0; i < json_array_size(s->layers); i++)
		sha_str(&c, json_string_value(json_array_get(s->layers, i)));
	sha_hex(&c, s->key);
	return s->layers && s->env ? 0 : -ENOMEM;
}

/* ---- finalize: the start and ready commands ---- */

static int finalize(struct build *bd, struct build_state *s, const json_t *config, char *err,
		    size_t errlen)
{
	const struct recipe *rc = &bd->recipe;
	if (!rc->start_cmd && !rc->ready_cmd)
		return 0;
	struct sha256_ctx c;
	char fkey[65], marker[PATH_MAX + 80];
	sha256_init(&c);
	sha_str(&c, "hutch-finalize-v1");
	sha_str(&c, s->key);
	sha_str(&c, rc->start_cmd);
	sha_str(&c, rc->ready_cmd);
	sha_hex(&c, fkey);
	snprintf(marker, sizeof(marker), "%s/%s.ready", bd->b->layers_dir, fkey);
	if (!rc->force && path_exists(marker)) {
		build_log(bd, "info", "CACHED start and ready commands (verified before)");
		return 0;
	}
	build_log(bd, "info", "Running the start command: %s", rc->start_cmd ? rc->start_cmd : "");
	if (rc->ready_cmd)
		build_log(bd, "info", "Waiting for the ready command: %s", rc->ready_cmd);
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s/.tmp-%s-final", bd->b->layers_dir, bd->id);
	if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
		return -errno;
	struct prepare prep = { .bd = bd, .tmp = tmp };
	size_t nl = json_array_size(s->layers);
	const char **layers = calloc(nl + 1, sizeof(char *));
	if (!layers)
		return -ENOMEM;
	for (size_t i = 0; i < nl; i++)
		layers[i] = json_string_value(json_array_get(s->layers, i));
	struct create_request cr = {
		.template_id = bd->template_id,
		.timeout_s = BUILD_SANDBOX_TIMEOUT,
		.allow_internet = true,
		.key_id = "",
		.layers = layers,
		.upper_dir = tmp,
		.config = config,
		.before_start = prepare_upper,
		.userdata = &prep,
	};
	struct sandbox_rec rec = { 0 };
	struct api_error aerr = { 0 };
	int r = orchestr_create(bd->b->o, &cr, &rec, &aerr);
	free(layers);
	if (r < 0) {
		snprintf(err, errlen, "cannot start the sandbox: %s", aerr.message);
		rm_tree(tmp);
		return r;
	}
	pthread_mutex_lock(&bd->lock);
	snprintf(bd->sandbox_id, sizeof(bd->sandbox_id), "%s", rec.id);
	pthread_mutex_unlock(&bd->lock);
	const char *user = json_string_value(json_object_get(config, "user"));
	const char *wd = json_string_value(json_object_get(config, "workdir"));
	int code = 0;
	char msg[512] = "";
	if (rc->start_cmd) {
		struct exec_opts so = { .cmd = rc->start_cmd,
					.user = user,
					.cwd = wd,
					.tag = "start",
					.background = true };
		r = orchestr_exec(bd->b->o, rec.id, &so, &code, msg, sizeof(msg));
		if (r < 0)
			snprintf(err, errlen, "the start command did not start: %s", msg);
	}
	uint64_t deadline = now_usec() + BUILD_READY_TIMEOUT_S * 1000000ull;
	while (r == 0 && rc->ready_cmd) {
		struct exec_opts ro = {
			.cmd = rc->ready_cmd, .user = user, .cwd = wd, .timeout_ms = 10000
		};
		int x = orchestr_exec(bd->b->o, rec.id, &ro, &code, msg, sizeof(msg));
		if (x == 0 && code == 0)
			break;
		pthread_mutex_lock(&bd->lock);
		bool stop = bd->stop;
		pthread_mutex_unlock(&bd->lock);
		if (stop || now_usec() > deadline || x == -ENOENT) {
			snprintf(err, errlen, "the ready command did not succeed within %d s",
				 BUILD_READY_TIMEOUT_S);
			r = -ETIMEDOUT;
			break;
		}
		usleep(250 * 1000);
	}
	orchestr_kill(bd->b->o, rec.id);
	pthread_mutex_lock(&bd->lock);
	bd->sandbox_id[0] = 0;
	pthread_mutex_unlock(&bd->lock);
	sandbox_rec_clear(&rec);
	rm_tree(tmp);
	if (r == 0) {
		int fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (fd >= 0)
			close(fd);
		build_log(bd, "info", "The template is ready");
	}
	return r;
}

/* ---- the build thread ---- */

static void set_status(struct build *bd, const char *status, json_t *reason)
{
	pthread_mutex_lock(&bd->lock);
	snprintf(bd->status, sizeof(bd->status), "%s", status);
	json_decref(bd->reason);
	bd->reason = reason;
	pthread_mutex_unlock(&bd->lock);
}

static void describe(const struct recipe_step *st, char *buf, size_t size)
{
	size_t off = (size_t)snprintf(buf, size, "%s", st->type_name);
	for (size_t i = 0; i < st->n_args && off < size; i++)
		if (*st->args[i])
			off += (size_t)snprintf(buf + off, size - off, " %s", st->args[i]);
	if (strlen(buf) > 200)
		strcpy(buf + 197, "...");
}

static int fail_build(struct build *bd, const char *step, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_build(struct build *bd, const char *step, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	build_log(bd, "error", "%s", msg);
	pthread_mutex_lock(&bd->lock);
	size_t n = json_array_size(bd->logs);
	json_t *tail = json_array();
	for (size_t i = n > BUILD_TAIL_ENTRIES ? n - BUILD_TAIL_ENTRIES : 0; tail && i < n; i++)
		json_array_append(tail, json_array_get(bd->logs, i));
	pthread_mutex_unlock(&bd->lock);
	json_t *reason = json_pack("{s:s, s:o}", "message", msg, "logEntries", tail);
	if (reason && step)
		json_object_set_new(reason, "step", json_string(step));
	struct build_rec br = { 0 };
	if (store_build_get(bd->b->st, bd->id, &br) == 0) {
		snprintf(br.status, sizeof(br.status), "error");
		json_object_set(br.data, "reason", reason);
		br.finished_ms = now_ms();
		store_build_put(bd->b->st, &br);
	}
	build_rec_clear(&br);
	struct template_rec t = { 0 };
	if (store_template_get(bd->b->st, bd->template_id, &t) == 0 &&
	    json_array_size(t.layers) == 0) {
		snprintf(t.status, sizeof(t.status), "error");
		store_template_put(bd->b->st, &t);
	}
	template_rec_clear(&t);
	set_status(bd, "error", reason);
	log_info("Template build %s of %s failed: %s", bd->id, bd->name, msg);
	return -EIO;
}

static int succeed(struct build *bd, struct build_state *s, json_t *config)
{
	struct build_rec br = { 0 };
	int r = store_build_get(bd->b->st, bd->id, &br);
	if (r < 0)
		return fail_build(bd, "finalize", "the build's record is gone (template deleted?)");
	snprintf(br.status, sizeof(br.status), "ready");
	json_object_set(br.data, "layers", s->layers);
	json_object_set(br.data, "config", config);
	br.finished_ms = now_ms();
	r = store_build_put(bd->b->st, &br);
	build_rec_clear(&br);
	struct template_rec t = { 0 };
	if (r >= 0)
		r = store_template_get(bd->b->st, bd->template_id, &t);
	if (r >= 0) {
		json_decref(t.layers);
		json_decref(t.config);
		t.layers = json_incref(s->layers);
		t.config = json_incref(config);
		t.cpu_count = bd->cpu;
		t.memory_mb = bd->memory_mb;
		snprintf(t.status, sizeof(t.status), "ready");
		r = store_template_put(bd->b->st, &t);
	}
	template_rec_clear(&t);
	size_t i;
	json_t *tag;
	json_array_foreach (bd->tags, i, tag)
		if (r >= 0)
			r = store_tag_put(bd->b->st, bd->template_id, json_string_value(tag),
					  bd->id);
	if (r < 0)
		return fail_build(bd, "finalize", "cannot record the template: %s", strerror(-r));
	set_status(bd, "ready", NULL);
	return 0;
}

static void run_build(struct build *bd)
{
	const struct recipe *rc = &bd->recipe;
	struct build_state s = { 0 };
	json_t *base_config = NULL, *config = NULL;
	char err[1024] = "";
	uint64_t t0 = now_usec();
	size_t n = rc->n_steps;
	snprintf(bd->step_name, sizeof(bd->step_name), "base");
	build_log(bd, "info", "[base] FROM %s",
		  rc->from_template ? rc->from_template : rc->from_image);
	snprintf(s.user, sizeof(s.user), "root");
	if (resolve_base(bd, &s, &base_config, err, sizeof(err)) < 0) {
		fail_build(bd, "base", "%s", err);
		goto out;
	}
	unsigned hits = 0, built = 0;
	for (size_t i = 0; i < n; i++) {
		const struct recipe_step *st = &rc->steps[i];
		char what[256], key[65];
		describe(st, what, sizeof(what));
		snprintf(bd->step_name, sizeof(bd->step_name), "%zu", i + 1);
		step_key(&s, st, rc->force || st->force, key);
		memcpy(s.key, key, sizeof(key));
		pthread_mutex_lock(&bd->lock);
		bool stop = bd->stop;
		pthread_mutex_unlock(&bd->lock);
		if (stop) {
			fail_build(bd, bd->step_name, "the build was stopped");
			goto out;
		}
		if (st->type == STEP_ENV) {
			/* Values see the environment so far (`ENV PATH=/opt/bin:$PATH`), as in
			 * Docker; every pair of one step sees the state before the step. */
			_cleanup_json_ json_t *before = json_copy(s.env);
			char msg[300];
			for (size_t a = 0; before && a + 1 < st->n_args; a += 2) {
				char *v = NULL;
				int er = recipe_env_expand(st->args[a + 1], before, &v, msg,
							   sizeof(msg));
				if (er < 0) {
					fail_build(bd, bd->step_name, "%s",
						   er == -EINVAL ? msg : "out of memory");
					goto out;
				}
				json_object_set_new(s.env, st->args[a], json_string(v));
				free(v);
			}
			build_log(bd, "info", "[builder %zu/%zu] %s", i + 1, n, what);
			continue;
		}
		if (st->type == STEP_USER) {
			snprintf(s.user, sizeof(s.user), "%s", st->args[0]);
			s.user_set = true;
			build_log(bd, "info", "[builder %zu/%zu] %s", i + 1, n, what);
			continue;
		}
		if (st->type == STEP_WORKDIR) {
			const char *wd = st->args[0];
			char abs[PATH_MAX];
			if (wd[0] == '/')
				snprintf(abs, sizeof(abs), "%.4000s", wd);
			else
				snprintf(abs, sizeof(abs), "%.2000s/%.2000s",
					 s.workdir[0] ? s.workdir : "", wd);
			snprintf(s.workdir, sizeof(s.workdir), "%.4000s", abs);
			s.workdir_set = true;
			if (dir_in_layers(s.layers, abs)) {
				build_log(bd, "info", "[builder %zu/%zu] %s", i + 1, n, what);
				continue;
			}
		}
		uint64_t ts = now_usec();
		bool cached = false;
		build_log(bd, "info", "[builder %zu/%zu] %s", i + 1, n, what);
		int r = layer_step(bd, &s, st, key, err, sizeof(err), &cached);
		if (r < 0) {
			fail_build(bd, bd->step_name, "Step %zu/%zu (%s) failed: %s", i + 1, n,
				   what, err);
			goto out;
		}
		if (cached)
			hits++,
			    build_log(bd, "info", "CACHED [builder %zu/%zu] %s", i + 1, n, what);
		else
			built++, build_log(bd, "info", "DONE [builder %zu/%zu] in %.1f s", i + 1, n,
					   (double)(now_usec() - ts) / 1e6);
	}
	snprintf(bd->step_name, sizeof(bd->step_name), "finalize");
	/* What sandboxes of this template start with. */
	const char *buser = json_string_value(json_object_get(base_config, "user"));
	const char *bwd = json_string_value(json_object_get(base_config, "workdir"));
	config = json_pack("{s:s, s:O, s:s}", "buildID", bd->id, "envVars", s.env, "user",
			   s.user_set ? s.user
			   : buser    ? buser
				      : "user");
	if (s.workdir_set || bwd)
		json_object_set_new(config, "workdir",
				    json_string(s.workdir_set ? s.workdir : bwd));
	if (rc->start_cmd)
		json_object_set_new(config, "startCmd", json_string(rc->start_cmd));
	if (rc->ready_cmd)
		json_object_set_new(config, "readyCmd", json_string(rc->ready_cmd));
	if (finalize(bd, &s, config, err, sizeof(err)) < 0) {
		fail_build(bd, "finalize", "The start/ready command failed: %s", err);
		goto out;
	}
	if (succeed(bd, &s, config) == 0)
		build_log(bd, "info",
			  "Build finished in %.1f s (%u layers built, %u from the cache)",
			  (double)(now_usec() - t0) / 1e6, built, hits);
out:
	json_decref(config);
	json_decref(base_config);
	json_decref(s.layers);
	json_decref(s.env);
}

static void *build_thread(void *arg)
{
	struct build *bd = arg;
	struct builder *b = bd->b;
	run_build(bd);
	/* Finished: its status and logs are in the store and the log file from now on, so the
	 * daemon does not keep every build's log in memory. builder_free joins the threads it
	 * still finds in the list. */
	bool unlinked = false;
	pthread_mutex_lock(&b->lock);
	for (struct build **pp = &b->list; *pp; pp = &(*pp)->next)
		if (*pp == bd) {
			*pp = bd->next;
			unlinked = true;
			break;
		}
	if (unlinked)
		pthread_detach(pthread_self());
	pthread_cond_broadcast(&b->ended);
	pthread_mutex_unlock(&b->lock);
	if (unlinked)
		build_unref(bd); /* the list's */
	build_unref(bd);
	return NULL;
}

/* ---- public ---- */

int builder_files_path(struct builder *b, const char *hash, char *path, size_t size)
{
	int n = snprintf(path, size, "%s/%s", b->files_dir, hash);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* The build with this id in the list, or NULL (b->lock held). */
static struct build *find_build_locked(struct builder *b, const char *id)
{
	for (struct build *bd = b->list; bd; bd = bd->next)
		if (streq(bd->id, id))
			return bd;
	return NULL;
}

static struct build *find_build(struct builder *b, const char *id)
{
	pthread_mutex_lock(&b->lock);
	struct build *found = find_build_locked(b, id);
	if (found)
		__atomic_add_fetch(&found->refs, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&b->lock);
	return found;
}

int builder_start(struct builder *b, const char *template_id, const char *build_id,
		  json_t *template, unsigned flags, struct api_error *err)
{
	struct build_rec br = { 0 };
	struct template_rec t = { 0 };
	if (store_build_get(b->st, build_id, &br) < 0 || !streq(br.template_id, template_id) ||
	    store_template_get(b->st, template_id, &t) < 0) {
		build_rec_clear(&br);
		template_rec_clear(&t);
		err->status = 404;
		snprintf(err->message, sizeof(err->message), "build %s of template %s not found",
			 build_id, template_id);
		return -ENOENT;
	}
	struct build *existing = find_build(b, build_id);
	if (existing || !streq(br.status, "waiting")) {
		build_unref(existing);
		build_rec_clear(&br);
		template_rec_clear(&t);
		err->status = 409;
		snprintf(err->message, sizeof(err->message), "build %s was already started",
			 build_id);
		return -EEXIST;
	}
	struct build *bd = calloc(1, sizeof(*bd));
	if (!bd) {
		build_rec_clear(&br);
		template_rec_clear(&t);
		return -ENOMEM;
	}
	bd->refs = 1;
	bd->b = b;
	bd->log_daemon = flags & BUILDER_LOG_DAEMON;
	pthread_mutex_init(&bd->lock, NULL);
	snprintf(bd->id, sizeof(bd->id), "%s", build_id);
	snprintf(bd->template_id, sizeof(bd->template_id), "%s", t.id);
	snprintf(bd->name, sizeof(bd->name), "%s", t.alias[0] ? t.alias : t.id);
	snprintf(bd->status, sizeof(bd->status), "building");
	bd->logs = json_array();
	bd->cpu = (unsigned)json_integer_value(json_object_get(br.data, "cpuCount"));
	bd->memory_mb = (unsigned)json_integer_value(json_object_get(br.data, "memoryMB"));
	bd->tags = json_incref(json_object_get(br.data, "tags"));
	template_rec_clear(&t);
	int r = recipe_parse(template, &bd->recipe, err->message, sizeof(err->message));
	if (r < 0) {
		err->status = 400;
		build_rec_clear(&br);
		build_unref(bd);
		return r;
	}
	/* A build id recorded again starts with an empty log. */
	char log_path[PATH_MAX + 64];
	build_log_path(b, bd->id, log_path, sizeof(log_path));
	if (unlink(log_path) < 0 && errno != ENOENT)
		log_warn_errno(-errno, "Failed to remove the old build log %s: %m", log_path);
	snprintf(br.status, sizeof(br.status), "building");
	json_object_set(br.data, "recipe", template);
	json_object_del(br.data, "reason");
	r = store_build_put(b->st, &br);
	build_rec_clear(&br);
	if (r < 0) {
		err->status = 500;
		snprintf(err->message, sizeof(err->message), "cannot record the build");
		build_unref(bd);
		return r;
	}
	log_info("Template build %s of %s started (%zu steps)", bd->id, bd->name,
		 bd->recipe.n_steps);
	/* Under the lock: the thread unlinks itself from the list when it ends, which must not
	 * happen before it is fully started here. */
	pthread_mutex_lock(&b->lock);
	bd->next = b->list;
	b->list = bd;
	bd->refs++; /* the thread's */
	r = -pthread_create(&bd->thread, NULL, build_thread, bd);
	bd->thread_started = r == 0;
	if (r < 0)
		bd->refs--;
	pthread_mutex_unlock(&b->lock);
	if (r < 0)
		fail_build(bd, NULL, "cannot start the build thread");
	return 0;
}

/* Whether build_id is in the list with status "building" (b->lock held). */
static bool build_running(struct builder *b, const char *build_id)
{
	struct build *bd = find_build_locked(b, build_id);
	if (!bd)
		return false;
	pthread_mutex_lock(&bd->lock);
	bool running = streq(bd->status, "building");
	pthread_mutex_unlock(&bd->lock);
	return running;
}

int builder_wait(struct builder *b, const char *build_id, unsigned timeout_ms)
{
	struct timespec until = timespec_in_ms(CLOCK_MONOTONIC, timeout_ms);
	/* The status changes before the thread broadcasts under b->lock, which we hold from the
	 * check to the wait: no wakeup is lost. */
	pthread_mutex_lock(&b->lock);
	int r = 0;
	while (r == 0 && build_running(b, build_id))
		r = pthread_cond_timedwait(&b->ended, &b->lock, &until);
	pthread_mutex_unlock(&b->lock);
	if (r == ETIMEDOUT)
		return -ETIMEDOUT;
	struct build_rec br = { 0 };
	if (store_build_get(b->st, build_id, &br) < 0)
		return -ENOENT;
	/* Not ready and not failed, yet not running: never started. */
	r = streq(br.status, "ready") ? 0 : streq(br.status, "error") ? -EIO : -ENOENT;
	build_rec_clear(&br);
	return r;
}

static json_t *logs_from_file(struct builder *b, const char *build_id)
{
	char path[PATH_MAX + 64];
	build_log_path(b, build_id, path, sizeof(path));
	json_t *arr = json_array();
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	char line[8192];
	while (arr && f && fgets(line, sizeof(line), f)) {
		json_t *e = json_loads(line, 0, NULL);
		if (json_is_object(e))
			json_array_append_new(arr, e);
		else
			json_decref(e);
	}
	return arr;
}

int builder_status(struct builder *b, const char *template_id, const char *build_id, size_t offset,
		   json_t **out)
{
	json_t *logs = NULL, *reason = NULL;
	char status[16], tid[64];
	struct build *bd = find_build(b, build_id);
	if (bd && streq(bd->template_id, template_id)) {
		pthread_mutex_lock(&bd->lock);
		logs = json_incref(bd->logs);
		/* Copied under the lock: the thread appends to it. */
		json_t *copy = json_array();
		for (size_t i = offset; copy && i < json_array_size(logs); i++)
			json_array_append(copy, json_array_get(logs, i));
		json_decref(logs);
		logs = copy;
		reason = json_incref(bd->reason);
		snprintf(status, sizeof(status), "%s", bd->status);
		snprintf(tid, sizeof(tid), "%s", bd->template_id);
		pthread_mutex_unlock(&bd->lock);
		build_unref(bd);
	} else {
		build_unref(bd);
		struct build_rec br = { 0 };
		if (store_build_get(b->st, build_id, &br) < 0 ||
		    !streq(br.template_id, template_id)) {
			build_rec_clear(&br);
			return -ENOENT;
		}
		snprintf(status, sizeof(status), "%s", br.status);
		snprintf(tid, sizeof(tid), "%s", br.template_id);
		reason = json_incref(json_object_get(br.data, "reason"));
		build_rec_clear(&br);
		json_t *all = logs_from_file(b, build_id);
		logs = json_array();
		for (size_t i = offset; logs && i < json_array_size(all); i++)
			json_array_append(logs, json_array_get(all, i));
		json_decref(all);
	}
	json_t *lines = json_array();
	size_t i;
	json_t *e;
	json_array_foreach (logs, i, e)
		json_array_append_new(
		    lines, json_string(json_string_value(json_object_get(e, "message"))));
	*out = json_pack("{s:s, s:s, s:s, s:o, s:o}", "templateID", tid, "buildID", build_id,
			 "status", status, "logEntries", logs, "logs", lines);
	if (*out && reason)
		json_object_set(*out, "reason", reason);
	json_decref(reason);
	return *out ? 0 : -ENOMEM;
}

int builder_new(struct hutch_config *cfg, struct store *st, struct orchestr *o,
		struct builder **out)
{
	struct builder *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->cfg = cfg;
	b->st = st;
	b->o = o;
	pthread_mutex_init(&b->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&b->ended, &ca);
	pthread_condattr_destroy(&ca);
	snprintf(b->layers_dir, sizeof(b->layers_dir), "%s/layers", cfg->cache_dir);
	snprintf(b->files_dir, sizeof(b->files_dir), "%s/template-files", cfg->data_dir);
	snprintf(b->logs_dir, sizeof(b->logs_dir), "%s/template-builds", cfg->data_dir);
	int r;
	if ((r = mkdir_p(b->layers_dir, 0755)) < 0 || (r = mkdir_p(b->files_dir, 0700)) < 0 ||
	    (r = mkdir_p(b->logs_dir, 0700)) < 0) {
		free(b);
		return log_error_errno(r, "Failed to create the template directories: %m");
	}
	/* Partial layers of builds that died with an earlier daemon. */
	_cleanup_closedir_ DIR *d = opendir(b->layers_dir);
	struct dirent *de;
	while (d && (de = readdir(d)))
		if (startswith(de->d_name, ".tmp-")) {
			char p[PATH_MAX + 300];
			snprintf(p, sizeof(p), "%s/%s", b->layers_dir, de->d_name);
			/* Another daemon may be building into it: only old ones go. */
			struct stat sb;
			if (lstat(p, &sb) == 0 && sb.st_mtime < (time_t)(now_ms() / 1000) - 86400)
				rm_tree(p);
		}
	r = store_build_fail_unfinished(st, "the daemon stopped during the build");
	if (r > 0)
		log_info("Marked %d unfinished template build(s) as failed", r);
	*out = b;
	return 0;
}

struct builder *builder_free(struct builder *b)
{
	if (!b)
		return NULL;
	for (;;) {
		pthread_mutex_lock(&b->lock);
		struct build *bd = b->list;
		if (bd)
			b->list = bd->next;
		pthread_mutex_unlock(&b->lock);
		if (!bd)
			break;
		pthread_mutex_lock(&bd->lock);
		bd->stop = true;
		char sid[40];
		snprintf(sid, sizeof(sid), "%s", bd->sandbox_id);
		pthread_mutex_unlock(&bd->lock);
		if (sid[0])
			orchestr_kill(b->o, sid); /* ends the step's stream */
		if (bd->thread_started)
			pthread_join(bd->thread, NULL);
		build_unref(bd);
	}
	pthread_cond_destroy(&b->ended);
	pthread_mutex_destroy(&b->lock);
	free(b);
	return NULL;
}
