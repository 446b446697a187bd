/* envd: the in-sandbox agent. Shared state and the interfaces between its parts. */
#pragma once

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include "connect/connect.h"
#include "http/http.h"
#include "json/jsonx.h"

/* The version of E2B's envd whose behaviour (all SDK gates up to it) this envd meets. */
#define ENVD_VERSION "0.6.4"
#define ENVD_DEFAULT_PORT 49983

struct process_table;
struct watch_table;

/* Settings that /init (or --config) may replace at run time; guarded by envd.lock. */
struct envd {
	pthread_rwlock_t lock;
	char *access_token;	/* NULL: no auth */
	json_t *env_vars;	/* object of string → string, never NULL */
	char *default_user;	/* NULL: the user envd runs as */
	char *default_workdir;	/* NULL: the user's home */

	struct process_table *procs;
	struct watch_table *watches;
	struct http_server *http;
	uint64_t started_usec;
};

extern struct envd envd;

/* Applies an /init-shaped JSON object (accessToken, envVars, defaultUser, defaultWorkdir,
 * timestamp). Returns 0 or -EINVAL with *err set to a static message. */
int envd_apply_init(const json_t *body, const char **err);

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
 * Expands a path as envd does: "~" and "~/x" → home, relative → under home (or `base` when
 * given), "" → `base` (default workdir) or home. The result is absolute and normalised ("." and
 * ".." folded lexically, repeated slashes removed). Caller frees *out. -EINVAL for bad paths
 * (embedded NUL, "~other").
 */
int path_expand(const char *path, const struct user_info *u, const char *base, char **out);
/* Lexical normalisation of an absolute path. Caller frees. */
char *path_normalize(const char *abs);

/* ---- auth (auth.c) ---- */
/* Constant-time comparison of the X-Access-Token header with the configured token. */
bool auth_token_ok(struct http_req *req);
/* The user named by "Authorization: Basic base64(user:)", or NULL. Caller frees. */
char *auth_basic_user(struct http_req *req);

/* ---- signature (signature.c) ---- */
/* v1_ + unpadded base64(SHA-256("<path>:<op>:<user>:<token>[:<expiration>]")). Caller frees. */
char *signature_compute(const char *path, const char *operation, const char *username,
			const char *token, const char *expiration);

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
/* Called once (on the HTTP thread) when the Connect-Timeout-Ms deadline passes. */
void rpc_stream_set_deadline_cb(struct rpc_stream *s, void (*cb)(void *), void *userdata);
/* Called once when the client is gone or the stream finished, so producers drop `s`. */
void rpc_stream_set_close_cb(struct rpc_stream *s, void (*cb)(struct rpc_stream *, void *),
			     void *userdata);
/* Queues a message (steals msg). Blocks while the client is more than a few MiB behind
 * (backpressure). Returns -EPIPE once the stream is closed or ended. */
int rpc_stream_send(struct rpc_stream *s, json_t *msg);
/* Queues the end-stream envelope. Later sends fail. */
void rpc_stream_end(struct rpc_stream *s, enum connect_code code, const char *message);
bool rpc_stream_is_closed(struct rpc_stream *s);
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

/* ---- HTTP endpoints ---- */
extern const struct http_route files_route;	/* GET/POST /files */
extern const struct http_route init_route;	/* POST /init */
extern const struct http_route envs_route;	/* GET /envs */
extern const struct http_route metrics_route;	/* GET /metrics */
