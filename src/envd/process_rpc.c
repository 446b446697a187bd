/* The process.Process Connect service. */
#include <inttypes.h>
#include <signal.h>
#include <sys/stat.h>
#include "process.h"
#include "common/log.h"
#include "common/strbuf.h"

#define MAX_ARGS 4096
#define MAX_ENVS 4096

static const char *const default_path =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

static enum connect_code resolve_user(struct rpc_ctx *ctx, struct user_info *u, char **msg)
{
	int r = user_resolve(ctx->user, u);
	if (r == -EPERM) {
		*msg =
		    rpc_msg("envd is not running as root and cannot act as user '%s'", ctx->user);
		return CONNECT_PERMISSION_DENIED;
	}
	if (r < 0) {
		if (ctx->user) {
			*msg = rpc_msg("invalid username: '%s'", ctx->user);
		} else {
			/* /init may replace (and free) it at any time. */
			pthread_rwlock_rdlock(&envd.lock);
			*msg = rpc_msg("invalid default user: '%s'",
				       envd.default_user ? envd.default_user : "");
			pthread_rwlock_unlock(&envd.lock);
		}
		return CONNECT_UNAUTHENTICATED;
	}
	return CONNECT_OK;
}

struct strv {
	char **v;
	size_t n, cap;
};

static void strv_free(struct strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
}

static int strv_push(struct strv *s, char *str)
{
	if (!str)
		return -ENOMEM;
	if (s->n + 2 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		char **v = realloc(s->v, cap * sizeof(*v));
		if (!v) {
			free(str);
			return -ENOMEM;
		}
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = str;
	s->v[s->n] = NULL;
	return 0;
}

/* Sets NAME=value, replacing an earlier NAME. */
static int env_set(struct strv *env, const char *name, const char *value)
{
	size_t nl = strlen(name);
	char *kv = NULL;
	if (asprintf(&kv, "%s=%s", name, value) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < env->n; i++)
		if (strncmp(env->v[i], name, nl) == 0 && env->v[i][nl] == '=') {
			free(env->v[i]);
			env->v[i] = kv;
			return 0;
		}
	return strv_push(env, kv);
}

static int env_merge(struct strv *env, const json_t *obj)
{
	const char *k;
	json_t *v;
	json_object_foreach ((json_t *)obj, k, v) {
		if (!json_is_string(v) || !*k || strchr(k, '='))
			return -EINVAL;
		int r = env_set(env, k, json_string_value(v));
		if (r < 0)
			return r;
	}
	return 0;
}

static int build_env(const struct user_info *u, const json_t *req_envs, struct strv *env)
{
	const char *path = getenv("PATH");
	int r = env_set(env, "PATH", isempty(path) ? default_path : path);
	if (r >= 0)
		r = env_set(env, "HOME", u->home);
	if (r >= 0)
		r = env_set(env, "USER", u->name);
	if (r >= 0)
		r = env_set(env, "LOGNAME", u->name);
	if (r < 0)
		return r;
	json_t *global = envd_global_env();
	r = global ? env_merge(env, global) : -ENOMEM;
	json_decref(global);
	if (r >= 0 && req_envs)
		r = env_merge(env, req_envs);
	return r;
}

/* Out of fds, memory or processes is the sandbox's state, not a bad request. */
static enum connect_code spawn_error_code(int r)
{
	switch (r) {
	case -EAGAIN:
	case -EMFILE:
	case -ENFILE:
	case -ENOMEM:
	case -ENOSPC:
		return CONNECT_RESOURCE_EXHAUSTED;
	default:
		return CONNECT_INVALID_ARGUMENT;
	}
}

static enum connect_code start(struct rpc_ctx *ctx, const json_t *in, struct rpc_stream *s,
			       char **msg)
{
	const json_t *cfg = jsonx_field(in, "process", NULL);
	const char *cmd = NULL, *cwd = NULL, *tag = NULL;
	if (!json_is_object(cfg) || jsonx_get_string(cfg, "cmd", NULL, &cmd) < 0 || isempty(cmd)) {
		*msg = rpc_msg("process.cmd is required");
		return CONNECT_INVALID_ARGUMENT;
	}
	const json_t *args = jsonx_field(cfg, "args", NULL);
	const json_t *envs = jsonx_field(cfg, "envs", NULL);
	if ((args && (!json_is_array(args) || json_array_size(args) > MAX_ARGS)) ||
	    (envs && (!json_is_object(envs) || json_object_size(envs) > MAX_ENVS)) ||
	    jsonx_get_string(cfg, "cwd", NULL, &cwd) == -EINVAL ||
	    jsonx_get_string(in, "tag", NULL, &tag) == -EINVAL) {
		*msg = rpc_msg("invalid process config");
		return CONNECT_INVALID_ARGUMENT;
	}
	bool want_stdin = true;
	if (jsonx_get_bool(in, "stdin", NULL, &want_stdin) == -EINVAL) {
		*msg = rpc_msg("stdin must be a bool");
		return CONNECT_INVALID_ARGUMENT;
	}
	const json_t *pty = jsonx_field(in, "pty", NULL);
	uint64_t cols = 0, rows = 0;
	if (pty) {
		const json_t *size = jsonx_field(pty, "size", NULL);
		if (size && ((jsonx_get_u64(size, "cols", NULL, &cols) == -EINVAL ||
			      jsonx_get_u64(size, "rows", NULL, &rows) == -EINVAL) ||
			     cols > 65535 || rows > 65535)) {
			*msg = rpc_msg("invalid pty size");
			return CONNECT_INVALID_ARGUMENT;
		}
	}

	struct user_info u;
	enum connect_code code = resolve_user(ctx, &u, msg);
	if (code != CONNECT_OK)
		return code;

	_cleanup_free_ char *dir = NULL;
	char *workdir = NULL;
	pthread_rwlock_rdlock(&envd.lock);
	if (envd.default_workdir)
		workdir = strdup(envd.default_workdir);
	pthread_rwlock_unlock(&envd.lock);
	int r = path_expand(cwd ? cwd : "", &u, workdir, &dir);
	free(workdir);
	if (r < 0) {
		*msg = rpc_msg("invalid cwd '%s': %s", cwd ? cwd : "", strerror(-r));
		return CONNECT_INVALID_ARGUMENT;
	}
	struct stat st;
	if (stat(dir, &st) < 0) {
		*msg = rpc_msg("cwd '%s' does not exist", dir);
		return CONNECT_INVALID_ARGUMENT;
	}

	struct strv argv = { 0 }, env = { 0 };
	r = strv_push(&argv, strdup(cmd));
	size_t i;
	json_t *a;
	json_array_foreach (args, i, a) {
		if (r < 0)
			break;
		r = json_is_string(a) ? strv_push(&argv, strdup(json_string_value(a))) : -EINVAL;
	}
	if (r >= 0)
		r = build_env(&u, envs, &env);
	if (r < 0) {
		strv_free(&argv);
		strv_free(&env);
		*msg = rpc_msg("invalid process arguments or environment");
		return CONNECT_INVALID_ARGUMENT;
	}

	struct spawn_request sr = {
		.cmd = cmd,
		.argv = (const char *const *)argv.v,
		.envp = (const char *const *)env.v,
		.cwd = dir,
		.user = &u,
		.pty = pty != NULL,
		.cols = (unsigned short)cols,
		.rows = (unsigned short)rows,
		.want_stdin = want_stdin,
		.tag = tag,
		.config = (json_t *)cfg,
	};
	rpc_stream_set_keepalive(s, "{\"event\":{\"keepalive\":{}}}");
	struct proc *p = NULL;
	r = proc_spawn(envd.procs, &sr, s, &p, msg);
	strv_free(&argv);
	strv_free(&env);
	if (r < 0)
		return spawn_error_code(r);
	/* The deadline kills the process (Start only; a Connect deadline just ends the stream).
	 * The stream's close callback holds the reference that keeps p alive until then. */
	rpc_stream_set_deadline_cb(s, proc_deadline_kill, p);
	proc_unref(p);
	return CONNECT_OK;
}

/* Finds the process named by {"process":{"pid":N}|{"tag":"t"}}. */
static enum connect_code select_proc(const json_t *in, bool exited, struct proc **out, char **msg)
{
	const json_t *sel = jsonx_field(in, "process", NULL);
	const char *tag = NULL;
	uint64_t pid = 0;
	if (!json_is_object(sel)) {
		*msg = rpc_msg("process selector is required");
		return CONNECT_INVALID_ARGUMENT;
	}
	if (jsonx_get_string(sel, "tag", NULL, &tag) == 0 && tag) {
		*out = proc_find_tag(envd.procs, tag, exited);
		if (!*out) {
			*msg = rpc_msg("process with tag %s not found", tag);
			return CONNECT_NOT_FOUND;
		}
		return CONNECT_OK;
	}
	if (jsonx_get_u64(sel, "pid", NULL, &pid) < 0 || pid > UINT32_MAX) {
		*msg = rpc_msg("process selector needs a pid or a tag");
		return CONNECT_INVALID_ARGUMENT;
	}
	*out = proc_find_pid(envd.procs, (uint32_t)pid, exited);
	if (!*out) {
		*msg = rpc_msg("process with pid %" PRIu64 " not found", pid);
		return CONNECT_NOT_FOUND;
	}
	return CONNECT_OK;
}

static enum connect_code connect_stream(struct rpc_ctx *ctx, const json_t *in, struct rpc_stream *s,
					char **msg)
{
	struct proc *p;
	enum connect_code code = select_proc(in, true, &p, msg);
	if (code != CONNECT_OK)
		return code;
	rpc_stream_set_keepalive(s, "{\"event\":{\"keepalive\":{}}}");
	int r = proc_attach(p, s);
	proc_unref(p);
	if (r < 0) {
		*msg = rpc_msg("error attaching to process: %s", strerror(-r));
		return CONNECT_INTERNAL;
	}
	return CONNECT_OK;
}

static enum connect_code list(struct rpc_ctx *ctx, const json_t *in, json_t **resp, char **msg)
{
	json_t *arr = json_array();
	if (!arr)
		return CONNECT_RESOURCE_EXHAUSTED;
	proc_list(envd.procs, arr);
	*resp = json_pack("{s:o}", "processes", arr);
	return CONNECT_OK;
}

static enum connect_code send_input(struct rpc_ctx *ctx, const json_t *in, json_t **resp,
				    char **msg)
{
	struct proc *p;
	enum connect_code code = select_proc(in, false, &p, msg);
	if (code != CONNECT_OK)
		return code;
	const json_t *input = jsonx_field(in, "input", NULL);
	bool pty = jsonx_field(input, "pty", NULL) != NULL;
	_cleanup_free_ unsigned char *data = NULL;
	size_t len = 0;
	int r = jsonx_get_bytes(input, pty ? "pty" : "stdin", NULL, &data, &len);
	if (r == -ENOENT) {
		r = 0; /* an empty input message writes nothing */
	} else if (r < 0) {
		proc_unref(p);
		*msg = rpc_msg("input must be base64 bytes");
		return CONNECT_INVALID_ARGUMENT;
	}
	if (len > 0)
		r = proc_write_input(p, pty, data, len);
	proc_unref(p);
	if (r == -ESRCH) {
		*msg = rpc_msg("process not found");
		return CONNECT_NOT_FOUND;
	}
	if (r == -ENOTTY) {
		*msg = pty ? rpc_msg("error writing to tty: tty not assigned to process \u2014 "
				     "input should be written to the stdin, not the tty")
			   : rpc_msg("error writing to stdin: tty assigned to process \u2014 input "
				     "should be written to the pty, not the stdin");
		return CONNECT_INTERNAL;
	}
	if (r == -EBADF) {
		*msg = rpc_msg("error writing to stdin: stdin not enabled or closed");
		return CONNECT_INTERNAL;
	}
	if (r == -ETIMEDOUT) {
		*msg = rpc_msg("error writing to %s: the process did not read its input within "
			       "30 s",
			       pty ? "tty" : "stdin");
		return CONNECT_DEADLINE_EXCEEDED;
	}
	if (r < 0) {
		*msg = rpc_msg("error writing to %s: %s", pty ? "tty" : "stdin", strerror(-r));
		return CONNECT_INTERNAL;
	}
	*resp = json_object();
	return CONNECT_OK;
}

static enum connect_code send_signal(struct rpc_ctx *ctx, const json_t *in, json_t **resp,
				     char **msg)
{
	const json_t *sig = jsonx_field(in, "signal", NULL);
	int signo = 0;
	if (json_is_string(sig) && streq(json_string_value(sig), "SIGNAL_SIGKILL"))
		signo = SIGKILL;
	else if (json_is_string(sig) && streq(json_string_value(sig), "SIGNAL_SIGTERM"))
		signo = SIGTERM;
	else if (json_is_integer(sig) &&
		 (json_integer_value(sig) == SIGKILL || json_integer_value(sig) == SIGTERM))
		signo = (int)json_integer_value(sig);
	if (!signo) {
		*msg = rpc_msg("invalid signal: %s",
			       json_is_string(sig) ? json_string_value(sig) : "SIGNAL_UNSPECIFIED");
		return CONNECT_UNIMPLEMENTED;
	}
	struct proc *p;
	enum connect_code code = select_proc(in, false, &p, msg);
	if (code != CONNECT_OK)
		return code;
	uint32_t pid = proc_pid(p);
	int r = proc_signal(p, signo);
	proc_unref(p);
	if (r == -ESRCH) {
		*msg = rpc_msg("process with pid %u not found", pid);
		return CONNECT_NOT_FOUND;
	}
	if (r < 0) {
		*msg = rpc_msg("error sending signal: %s", strerror(-r));
		return CONNECT_INTERNAL;
	}
	*resp = json_object();
	return CONNECT_OK;
}

static enum connect_code close_stdin(struct rpc_ctx *ctx, const json_t *in, json_t **resp,
				     char **msg)
{
	struct proc *p;
	enum connect_code code = select_proc(in, false, &p, msg);
	if (code != CONNECT_OK)
		return code;
	int r = proc_close_stdin(p);
	proc_unref(p);
	if (r == -ENOTTY) {
		*msg =
		    rpc_msg("error closing stdin: cannot close stdin for PTY process \u2014 send "
			    "Ctrl+D (0x04) instead");
		return CONNECT_UNKNOWN;
	}
	*resp = json_object();
	return CONNECT_OK;
}

static enum connect_code update(struct rpc_ctx *ctx, const json_t *in, json_t **resp, char **msg)
{
	struct proc *p;
	enum connect_code code = select_proc(in, false, &p, msg);
	if (code != CONNECT_OK)
		return code;
	const json_t *size = jsonx_field(jsonx_field(in, "pty", NULL), "size", NULL);
	uint64_t cols = 0, rows = 0;
	int r = 0;
	if (size) {
		if (jsonx_get_u64(size, "cols", NULL, &cols) == -EINVAL ||
		    jsonx_get_u64(size, "rows", NULL, &rows) == -EINVAL || cols > 65535 ||
		    rows > 65535) {
			proc_unref(p);
			*msg = rpc_msg("invalid pty size");
			return CONNECT_INVALID_ARGUMENT;
		}
		r = proc_resize(p, (unsigned short)cols, (unsigned short)rows);
	}
	proc_unref(p);
	if (r == -ENOTTY) {
		*msg = rpc_msg("error resizing tty: tty not assigned to process");
		return CONNECT_INTERNAL;
	}
	if (r < 0) {
		*msg = rpc_msg("error resizing tty: %s", strerror(-r));
		return CONNECT_INTERNAL;
	}
	*resp = json_object();
	return CONNECT_OK;
}

static enum connect_code stream_input(struct rpc_ctx *ctx, const json_t *in, json_t **resp,
				      char **msg)
{
	*msg = rpc_msg("client streaming is not supported over HTTP/1.1; use SendInput");
	return CONNECT_UNIMPLEMENTED;
}

const struct rpc_method process_methods[] = {
	{ "/process.Process/Start", .stream = start },
	{ "/process.Process/Connect", .stream = connect_stream },
	{ "/process.Process/List", .unary = list },
	{ "/process.Process/SendInput", .unary = send_input },
	{ "/process.Process/SendSignal", .unary = send_signal },
	{ "/process.Process/CloseStdin", .unary = close_stdin },
	{ "/process.Process/Update", .unary = update },
	{ "/process.Process/StreamInput", .unary = stream_input },
	{ 0 },
};
