/* envd: the in-sandbox agent. Shared state and the interfaces between its parts. */
#pragma once

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include "common/version.h"
#include "connect/connect.h"
#include "http/http.h"
#include "json/jsonx.h"
#include "sign/signature.h"

/* The version of E2B's envd whose behaviour (all SDK gates up to it) this envd meets. */
#define ENVD_VERSION	  ENVD_PROTOCOL_VERSION
#define ENVD_DEFAULT_PORT 49983

struct process_table;
struct watch_table;

/* Settings that /init (or --config) may replace at run time; guarded by envd.lock. */
struct envd {
	pthread_rwlock_t lock;
	char *access_token;    /* NULL: no auth */
	json_t *env_vars;      /* object of string → string, never NULL */
	char *default_user;    /* NULL: the user envd runs as */
	char *default_workdir; /* NULL: the user's home */

	struct process_table *procs;
	struct watch_table *watches;
	struct http_server *http;
	uint64_t started_usec;
	/* Writing "0" moves the writer into the cgroup of user processes (--user-cgroup-fd,
	 * from hutch-init): processes envd starts go there, envd keeps the pids reserve. -1: none
	 * (not in a Hutch sandbox). Set before the server starts, read-only after. */
	int user_cgroup_fd;
};

extern struct envd envd;

/* Applies an /init-shaped JSON object (accessToken, envVars, defaultUser, defaultWorkdir,
 * timestamp). Returns 0 or -EINVAL with *err set to a static message. */
int envd_apply_init(const json_t *body, const char **err);

/* The global environment of every process: E2B_SANDBOX=true, then the /init env vars. New ref. */
json_t *envd_global_env(void);

/* ---- users (users.c) ---- */
struct user_info {
	uid_t uid;
	gid_t gid;
	char name[64];
	char home[256];
	char shell[256];
	gid_t groups[64];
	int ngroups;
};
/* Looks a user up in /etc/passwd and /etc/group (no NSS, so it works in any rootfs). */
int user_lookup(const char *name, struct user_info *out);
int user_lookup_uid(uid_t uid, struct user_info *out);
/* Name of a uid/gid for EntryInfo; falls back to the decimal id. */
void user_name_of(uid_t uid, char *buf, size_t size);
void group_name_of(gid_t gid, char *buf, size_t size);

/*
 * The user an RPC or /files request acts as: the explicit name (Basic auth or ?username=), else
 * the default user, else the user envd runs as. Returns 0, or -ENOENT for an unknown user, or
 * -EPERM when envd is not root and the user is someone else.
 */
int user_resolve(const char *explicit_name, struct user_info *out);

/* Per-thread file identity: file operations act with the user's permissions and create files
 * owned by the user. fsid_enter/fsid_leave must pair on the same thread. */
void fsid_enter(const struct user_info *u);
void fsid_leave(void);

/* ---- paths (paths.c) ---- */
/*
 * Expands a path as envd does: "~" and "~/x" → home, relative → under home (never `base`),
 * "" → `base` (the default workdir) when given, else home. The result is absolute and normalised
 * ("." and
 * ".." folded lexically, repeated slashes removed). Caller frees *out. -EINVAL for bad paths
 * (embedded NUL, "~other").
 */
int path_expand(const char *path, const struct user_info *u, const char *base, char **out);
/* Lexical normalisation of an absolute path. Caller frees. */
char *path_normalize(const char *abs);

/* ---- auth (auth.c) ---- */
/* Constant-time comparison of two secrets (false when either is NULL). */
bool secret_equal(const char *a, const char *b);
/* Wipes and frees a secret string; accepts NULL. */
void secret_free(char *s);
/* Constant-time comparison of the X-Access-Token header with the configured token. */
bool auth_token_ok(struct http_req *req);
/* The user named by "Authorization: Basic base64(user:)", or NULL. Caller frees. */
char *auth_basic_user(struct http_req *req);
/* The same from the header's value: "Basic base64(user[:password])" → user (malloc'd), or NULL
 * when absent, malformed, empty or holding a NUL. */
char *auth_basic_parse(const char *header);

/* ---- RPC plumbing (rpc.c) ---- */
struct rpc_ctx {
	struct http_req *req;
	char *user; /* Basic-auth user or NULL */
};

/* A unary handler returns 0 with *resp set (new ref), or a Connect code with *msg (malloc'd). */
typedef enum connect_code (*rpc_unary_fn)(struct rpc_ctx *ctx, const json_t *in, json_t **resp,
					  char **msg);

struct rpc_stream;
/* A stream handler sets up producers that feed `s`; return CONNECT_OK, or an error code with
 * *msg, which is sent as the end-stream error. */
typedef enum connect_code (*rpc_stream_fn)(struct rpc_ctx *ctx, const json_t *in,
					   struct rpc_stream *s, char **msg);

struct rpc_method {
	const char *path; /* "/process.Process/Start" */
	rpc_unary_fn unary;
	rpc_stream_fn stream;
};

/* The route for a Connect method path (sets req->state), or NULL. */
const struct http_route *rpc_route(struct http_req *req);
/* Formats an error message (malloc'd) for the handlers' *msg. */
char *rpc_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- streams (stream.c) ---- */
/* The keepalive message of a stream ({"event":{"keepalive":{}}} or {"keepalive":{}}). */
void rpc_stream_set_keepalive(struct rpc_stream *s, const char *keepalive_json);
/* Called once when the Connect-Timeout-Ms deadline passes: on the HTTP thread, or on a producer
 * thread waiting in rpc_stream_send() (never with the stream's lock held). */
void rpc_stream_set_deadline_cb(struct rpc_stream *s, void (*cb)(void *), void *userdata);
/* Called once when the client is gone or the stream finished, so producers drop `s`. */
void rpc_stream_set_close_cb(struct rpc_stream *s, void (*cb)(struct rpc_stream *, void *),
			     void *userdata);
/* Queues a message (steals msg). Blocks while the client is more than a few MiB behind
 * (backpressure); a client that takes nothing for 30 s meanwhile has its stream ended with
 * resource_exhausted. Returns -EPIPE once the stream is closed or ended. */
int rpc_stream_send(struct rpc_stream *s, json_t *msg);
/* Queues the end-stream envelope. Later sends fail. */
void rpc_stream_end(struct rpc_stream *s, enum connect_code code, const char *message);
bool rpc_stream_is_closed(struct rpc_stream *s);
/* Ends every open stream (at its next wakeup, within half a second): envd is stopping. */
void rpc_streams_stop(void);
struct rpc_stream *rpc_stream_ref(struct rpc_stream *s);
void rpc_stream_unref(struct rpc_stream *s);

/* ---- services ---- */
extern const struct rpc_method process_methods[];
extern const struct rpc_method filesystem_methods[];

int process_table_new(struct process_table **out);
/* Kills every process (SIGKILL to its group). */
void process_table_free(struct process_table *t);
int watch_table_new(struct watch_table **out);
void watch_table_free(struct watch_table *t);

/* ---- entries (entry.c) ---- */
/* Room for Go's os.FileMode.String() of any st_mode ("dLrwxrwxrwx"-style, NUL included). */
#define ENTRY_MODE_STRING_MAX 24
/* Go's os.FileMode.String() of a st_mode: "-rw-r--r--", "drwxr-xr-x", "Lrwxrwxrwx", "dtrwxrwxrwx".
 */
void entry_mode_string(mode_t mode, char *buf, size_t size);
/* "FILE_TYPE_FILE", "FILE_TYPE_DIRECTORY", "FILE_TYPE_SYMLINK", or NULL (unspecified). Static. */
const char *entry_file_type_name(mode_t mode);

/* Remembers the last uid/gid → name lookups across the entries of one listing. Zero it first. */
struct entry_name_cache {
	uid_t uid;
	gid_t gid;
	bool have_uid, have_gid;
	char owner[64];
	char group[64];
};

/*
 * EntryInfo as proto3 JSON for `name` relative to dirfd (AT_FDCWD and an absolute name work),
 * never following a final symlink for the entry itself. `path` is the path reported (absolute, as
 * the client named it; `name` in the JSON is its last component). A symlink reports its target's
 * type and permission bits and the resolved absolute `symlinkTarget`; a broken one reports
 * FILE_TYPE_SYMLINK and the lexically resolved target text. Fields at their default are left out,
 * as protojson does. On success *out is a new reference owned by the caller. Returns 0 or -errno
 * (-ENOENT when the entry is missing). `cache` may be NULL. Call with the caller's fsid in effect.
 */
int entry_info_json_at(int dirfd, const char *name, const char *path,
		       struct entry_name_cache *cache, json_t **out);
/* entry_info_json_at(AT_FDCWD, abs_path, abs_path, NULL, out); -EINVAL for a relative path. */
int entry_info_json(const char *abs_path, json_t **out);

/* Filesystem events (watch.c): the fsnotify-style ops one inotify mask stands for. */
enum fs_event_type {
	FS_EVENT_UNSPECIFIED = 0,
	FS_EVENT_CREATE = 1,
	FS_EVENT_WRITE = 2,
	FS_EVENT_REMOVE = 3,
	FS_EVENT_RENAME = 4,
	FS_EVENT_CHMOD = 5,
};
/*
 * Maps an inotify event mask to event types, in the order envd sends them (CREATE, RENAME,
 * CHMOD, WRITE, REMOVE): IN_CREATE/IN_MOVED_TO → CREATE, IN_MOVED_FROM/IN_MOVE_SELF → RENAME,
 * IN_ATTRIB → CHMOD, IN_MODIFY → WRITE, IN_DELETE/IN_DELETE_SELF → REMOVE. Writes at most `max`
 * types to out and returns how many.
 */
size_t watch_mask_to_events(uint32_t mask, enum fs_event_type *out, size_t max);
/* "EVENT_TYPE_CREATE"..., or NULL for an unknown value. Static string. */
const char *fs_event_type_name(enum fs_event_type type);

/* Shared request prologue of the filesystem RPCs (filesystem_rpc.c): resolves the caller's user
 * into *u and expands the string field `field` of `in` into *abs (caller frees). Returns
 * CONNECT_OK, or an error code with *msg (malloc'd). */
enum connect_code fs_request_path(struct rpc_ctx *ctx, const json_t *in, const char *field,
				  struct user_info *u, char **abs, char **msg);

/* The watch RPCs (watch.c), listed in filesystem_methods[]. */
enum connect_code watch_dir_rpc(struct rpc_ctx *ctx, const json_t *in, struct rpc_stream *s,
				char **msg);
enum connect_code watch_create_rpc(struct rpc_ctx *ctx, const json_t *in, json_t **resp,
				   char **msg);
enum connect_code watch_get_events_rpc(struct rpc_ctx *ctx, const json_t *in, json_t **resp,
				       char **msg);
enum connect_code watch_remove_rpc(struct rpc_ctx *ctx, const json_t *in, json_t **resp,
				   char **msg);

/* ---- HTTP endpoints ---- */
extern const struct http_route files_route;   /* GET/POST /files */
extern const struct http_route init_route;    /* POST /init */
extern const struct http_route envs_route;    /* GET /envs */
extern const struct http_route metrics_route; /* GET /metrics */

/* ---- /files uploads and downloads (multipart.c, files_http.c, control_http.c) ---- */
/* Limits a client can reach on POST /files (xattr names are "user.e2b." + key, at most 255). */
#define UPLOAD_MAX_PARTS	  4096
#define UPLOAD_METADATA_MAX_KEY	  246
#define UPLOAD_METADATA_MAX_TOTAL 4096
#define UPLOAD_METADATA_XATTR	  "user.e2b."

/* What to send for GET /files given an Accept-Encoding header (NULL or "" → identity). */
enum files_encoding {
	FILES_ENCODING_IDENTITY,
	FILES_ENCODING_GZIP,
	FILES_ENCODING_UNACCEPTABLE, /* 406 */
};
/* envd's choice: q-values sorted (stable), first q>0 of identity/gzip/"*" wins, unknown codings
 * skipped; identity is refused by "identity;q=0", or by "*;q=0" without "identity;q>0". */
enum files_encoding files_accept_encoding(const char *header);
/* Whether Accept-Encoding still allows identity (Range and conditional requests need it). */
bool files_identity_acceptable(const char *header);

/* An error that crosses the upload API: HTTP status and message for {"code","message"}. */
struct upload_error {
	unsigned status;
	char message[512];
};

/*
 * Adds an X-Metadata-<key> header to `meta` (a JSON object): key lowercased, first value wins,
 * empty keys skipped. Validation happens in upload_metadata_validate(). Returns 0 or -ENOMEM.
 */
int upload_metadata_add(json_t *meta, const char *key, const char *value);
/* Checks keys/values as envd does (non-empty printable-ASCII key ≤ 246 bytes, printable-ASCII
 * value, Σ(len("user.e2b.")+key+value) ≤ 4096). Returns 0, or -EINVAL with err = 400
 * "invalid metadata: …". */
int upload_metadata_validate(const json_t *meta, struct upload_error *err);

/*
 * One POST /files request body: an optional gzip stage (Content-Encoding), then either a raw
 * body written to one file or multipart parts (as libmicrohttpd's post processor reports them)
 * written to one file each. Paths are absolute and normalised; they are walked component by
 * component from `rootfd` (an O_PATH/O_DIRECTORY fd of "/" in envd, a scratch directory in
 * tests; symlinks inside the tree are followed, so it is not a chroot). Missing parent
 * directories are created (0755, owned by the user); files are opened O_WRONLY|O_CREAT (0666 &
 * umask), must be regular, are truncated, re-owned to the user (when envd is root) and get the
 * metadata set as user.e2b.* xattrs, replacing any earlier ones.
 *
 * Call every upload_* function with fsid_enter(u) in effect on the calling thread; the upload
 * briefly leaves it (as root only) to create a directory the user cannot write but can reach,
 * and to re-own a file. Functions return 0 or a negative errno with upload_error() set.
 */
struct upload;
/* A consumer of the (inflated) body, e.g. MHD_post_process. Return <0 to fail (the upload's
 * error is used when set, else 400 "error reading form"). */
typedef int (*upload_consumer_fn)(void *ctx, const char *buf, size_t len);

/* `u` and `metadata` (may be NULL: clear all metadata) are copied/referenced. `raw_path`: a raw
 * body written to that path (multipart when NULL). The caller keeps rootfd open. */
int upload_new(int rootfd, const struct user_info *u, const json_t *metadata, bool gzip,
	       const char *raw_path, struct upload **out);
struct upload *upload_free(struct upload *up);
static inline void upload_freep(struct upload **up)
{
	*up = upload_free(*up);
}
/* Multipart: where inflated body bytes go (default: the raw file). `fixed_path` (absolute, may
 * be NULL): the target of every "file" part (the `path` query), else each part's filename
 * (relative → the user's home). */
void upload_set_multipart(struct upload *up, const char *fixed_path, upload_consumer_fn fn,
			  void *ctx);
/* Body bytes as received. */
int upload_feed(struct upload *up, const void *buf, size_t len);
/* One post-processor callback: a part's data at `off` (off == 0 starts a new part). Parts not
 * named "file" are ignored. */
int upload_part(struct upload *up, const char *name, const char *filename, const char *data,
		uint64_t off, size_t size);
/* The body ended: checks the gzip stream is complete and finishes the last file. */
int upload_finish(struct upload *up);
/* The JSON array [{"path","name","type":"file"[,"metadata"]}] of finished files (borrowed). */
json_t *upload_result(struct upload *up);
const struct upload_error *upload_error(const struct upload *up);
/* Maps an errno from file I/O to a status: ENOSPC/EDQUOT 507, EACCES/EPERM 403, ENOENT 404,
 * EISDIR/ENOTDIR/ELOOP/ENAMETOOLONG/EINVAL 400, else 500. */
unsigned files_errno_status(int r);
