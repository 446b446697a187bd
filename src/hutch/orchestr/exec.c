/*
 * Running a command in a sandbox from the daemon: a small Connect client (libcurl, JSON codec)
 * for envd's process.Process/Start, over a connection made inside the sandbox's network
 * namespace. Used for template build steps and for a template's start and ready commands.
 */
#include <curl/curl.h>
#include "common/log.h"
#include "common/strbuf.h"
#include "common/util.h"
#include "connect/connect.h"
#include "json/jsonx.h"
#include "orchestr/orchestr-internal.h"

#define EXEC_MAX_ENVELOPE (16u << 20)

struct exec_state {
	struct sandbox *s;
	const struct exec_opts *opts;
	struct strbuf buf;
	bool started, ended, connect_failed;
	int exit_code;
	char error[512];
};

static curl_socket_t open_socket_cb(void *userdata, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct exec_state *es = userdata;
	(void)purpose;
	(void)a;
	int fd = sandbox_connect(es->s, ORCHESTR_ENVD_PORT);
	if (fd < 0) {
		es->connect_failed = true;
		return CURL_SOCKET_BAD;
	}
	return fd;
}

static int sockopt_cb(void *userdata, curl_socket_t fd, curlsocktype purpose)
{
	(void)userdata;
	(void)fd;
	(void)purpose;
	return CURL_SOCKOPT_ALREADY_CONNECTED;
}

static void exec_event(struct exec_state *es, const char *payload, size_t len)
{
	_cleanup_json_ json_t *j = json_loadb(payload, len, 0, NULL);
	json_t *ev = json_object_get(j, "event");
	if (json_object_get(ev, "start"))
		es->started = true;
	json_t *data = json_object_get(ev, "data");
	static const char *const chan[] = { "stdout", "stderr", "pty" };
	for (int i = 0; data && i < 3; i++) {
		unsigned char *bytes;
		size_t n;
		if (jsonx_get_bytes(data, chan[i], NULL, &bytes, &n) == 0) {
			if (es->opts->output)
				es->opts->output(es->opts->userdata, i == 1 ? 2 : 1,
						 (const char *)bytes, n);
			free(bytes);
		}
	}
	json_t *end = json_object_get(ev, "end");
	if (end) {
		es->ended = true;
		json_t *code = json_object_get(end, "exitCode");
		es->exit_code = json_is_integer(code) ? (int)json_integer_value(code) : 0;
		if (es->exit_code < 0)
			es->exit_code = 128 + 9; /* ended by a signal */
	}
}

static size_t exec_write(char *p, size_t size, size_t n, void *ud)
{
	struct exec_state *es = ud;
	if (strbuf_append(&es->buf, p, size * n) < 0)
		return 0;
	for (;;) {
		uint8_t flags;
		const char *payload;
		size_t plen;
		long used = connect_envelope_parse(es->buf.data, es->buf.len, EXEC_MAX_ENVELOPE,
						   &flags, &payload, &plen);
		if (used < 0)
			return 0; /* malformed: abort */
		if (used == 0)
			break;
		if (flags & CONNECT_FLAG_END_STREAM) {
			_cleanup_json_ json_t *j = json_loadb(payload, plen, 0, NULL);
			const char *m = json_string_value(
			    json_object_get(json_object_get(j, "error"), "message"));
			if (m)
				snprintf(es->error, sizeof(es->error), "%s", m);
		} else {
			exec_event(es, payload, plen);
		}
		strbuf_consume(&es->buf, (size_t)used);
		/* A background command: once it runs, hang up (envd keeps it running). */
		if (es->opts->background && es->started)
			return 0;
	}
	return size * n;
}

static json_t *exec_request(const struct exec_opts *opts)
{
	json_t *args = json_pack("[ss]", "-l", "-c");
	json_t *proc = json_pack("{s:s, s:o}", "cmd", "/bin/bash", "args", args);
	if (!proc)
		return NULL;
	/* bash -l like E2B; plain sh where the root has no bash (minimal images). */
	if (opts->sh)
		json_object_set_new(proc, "cmd", json_string("/bin/sh")),
		    json_array_remove(args, 0);
	json_array_append_new(args, json_string(opts->cmd));
	if (opts->envs)
		json_object_set(proc, "envs", (json_t *)opts->envs);
	if (!isempty(opts->cwd))
		json_object_set_new(proc, "cwd", json_string(opts->cwd));
	json_t *req = json_pack("{s:o, s:b}", "process", proc, "stdin", 0);
	if (req && opts->tag)
		json_object_set_new(req, "tag", json_string(opts->tag));
	return req;
}

int sandbox_exec(struct orchestr *o, struct sandbox *s, const struct exec_opts *opts,
		 int *exit_code, char *err, size_t errlen)
{
	_cleanup_json_ json_t *req = exec_request(opts);
	_cleanup_free_ char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
	_cleanup_strbuf_ struct strbuf env = { 0 };
	if (!text || connect_envelope_append(&env, 0, text, strlen(text)) < 0)
		return -ENOMEM;

	char token[65], h_token[128], h_auth[512];
	sandbox_envd_token(o, s, token);
	snprintf(h_token, sizeof(h_token), "X-Access-Token: %s", token);
	char cred[300];
	snprintf(cred, sizeof(cred), "%s:", isempty(opts->user) ? "root" : opts->user);
	_cleanup_free_ char *b64 = base64_encode(cred, strlen(cred), true);
	if (!b64)
		return -ENOMEM;
	snprintf(h_auth, sizeof(h_auth), "Authorization: Basic %s", b64);
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/connect+json");
	h = curl_slist_append(h, "Connect-Protocol-Version: 1");
	h = curl_slist_append(h, h_token);
	h = curl_slist_append(h, h_auth);

	struct exec_state es = { .s = s, .opts = opts, .exit_code = -1 };
	CURL *c = curl_easy_init();
	if (!c || !h) {
		curl_slist_free_all(h);
		curl_easy_cleanup(c);
		return -ENOMEM;
	}
	curl_easy_setopt(c, CURLOPT_URL, "http://127.0.0.1/process.Process/Start");
	curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket_cb);
	curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &es);
	curl_easy_setopt(c, CURLOPT_SOCKOPTFUNCTION, sockopt_cb);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, env.data);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)env.len);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, exec_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &es);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	if (opts->timeout_ms)
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)opts->timeout_ms);
	CURLcode rc = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	strbuf_free(&es.buf);

	if (opts->background && es.started) {
		*exit_code = 0;
		return 0;
	}
	if (rc == CURLE_OPERATION_TIMEDOUT) {
		snprintf(err, errlen, "timed out after %u ms", opts->timeout_ms);
		return -ETIMEDOUT;
	}
	if (rc != CURLE_OK && !es.ended) {
		snprintf(err, errlen, "%s",
			 es.connect_failed ? "cannot reach envd in the sandbox"
					   : curl_easy_strerror(rc));
		return -EIO;
	}
	if (status != 200) {
		snprintf(err, errlen, "envd answered %ld", status);
		return -EIO;
	}
	if (!es.ended) {
		snprintf(err, errlen, "%s", es.error[0] ? es.error : "the process did not start");
		return -EIO;
	}
	*exit_code = es.exit_code;
	if (es.error[0])
		snprintf(err, errlen, "%s", es.error);
	return 0;
}

int orchestr_exec(struct orchestr *o, const char *id, const struct exec_opts *opts, int *exit_code,
		  char *err, size_t errlen)
{
	struct sandbox *s = orchestr_get(o, id);
	if (!s) {
		snprintf(err, errlen, "sandbox %s is gone", id);
		return -ENOENT;
	}
	int r = sandbox_exec(o, s, opts, exit_code, err, errlen);
	sandbox_unref(s);
	return r;
}
