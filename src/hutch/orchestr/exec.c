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
#include "connect/procstream.h"
#include "json/jsonx.h"
#include "net/netcurl.h"
#include "orchestr/orchestr-internal.h"

static int exec_connect(void *userdata)
{
	return sandbox_connect(userdata, ORCHESTR_ENVD_PORT);
}

struct exec_state {
	struct proc_stream ps;
	bool background;
};

static size_t exec_write(char *p, size_t size, size_t n, void *ud)
{
	struct exec_state *es = ud;
	if (proc_stream_feed(&es->ps, p, size * n) < 0)
		return 0; /* malformed: abort */
	/* A background command: once it runs, hang up (envd keeps it running). */
	if (es->background && es->ps.started)
		return 0;
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

	struct exec_state es = {
		.ps = { .output = opts->output, .userdata = opts->userdata, .exit_code = -1 },
		.background = opts->background,
	};
	CURL *c = curl_easy_init();
	if (!c || !h) {
		curl_slist_free_all(h);
		curl_easy_cleanup(c);
		return -ENOMEM;
	}
	curl_easy_setopt(c, CURLOPT_URL, "http://127.0.0.1/process.Process/Start");
	struct netcurl_socket sock = { .connect = exec_connect, .userdata = s };
	netcurl_use_socket(c, &sock);
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
	proc_stream_done(&es.ps);

	if (opts->background && es.ps.started) {
		*exit_code = 0;
		return 0;
	}
	if (rc == CURLE_OPERATION_TIMEDOUT) {
		snprintf(err, errlen, "timed out after %u ms", opts->timeout_ms);
		return -ETIMEDOUT;
	}
	if (rc != CURLE_OK && !es.ps.ended) {
		snprintf(err, errlen, "%s",
			 sock.err ? "cannot reach envd in the sandbox" : curl_easy_strerror(rc));
		return -EIO;
	}
	if (status != 200) {
		snprintf(err, errlen, "envd answered %ld", status);
		return -EIO;
	}
	if (!es.ps.ended) {
		snprintf(err, errlen, "%s",
			 es.ps.error[0] ? es.ps.error : "the process did not start");
		return -EIO;
	}
	*exit_code = es.ps.exit_code;
	if (es.ps.error[0])
		snprintf(err, errlen, "%s", es.ps.error);
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
