/* `hutch sandbox list|kill|exec`: a client of the REST API and the front door, like the SDK. */
#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include "cli/cli.h"
#include "common/macro.h"
#include "common/strbuf.h"
#include "connect/connect.h"
#include "connect/procstream.h"
#include "json/jsonx.h"

static void usage(FILE *f)
{
	fprintf(f, "Usage: hutch sandbox list [--json]\n"
		   "       hutch sandbox kill ID\n"
		   "       hutch sandbox exec [--user USER] [--cwd DIR] ID -- COMMAND [ARG...]\n"
		   "Options: --data-dir DIR (for the API key file). E2B_API_URL, E2B_API_KEY and\n"
		   "E2B_SANDBOX_URL are honoured as by the SDK.\n");
}

static size_t collect(char *p, size_t size, size_t n, void *ud)
{
	return strbuf_append(ud, p, size * n) < 0 ? 0 : size * n;
}

/* One API call; returns the HTTP status (or -1) and the body in *body. */
static long api_call(const char *url, const char *key, const char *method, const char *path,
		     struct strbuf *body)
{
	CURL *c = curl_easy_init();
	if (!c)
		return -1;
	char full[2048], hdr[600];
	snprintf(full, sizeof(full), "%s%s", url, path);
	snprintf(hdr, sizeof(hdr), "X-API-Key: %s", key);
	struct curl_slist *h = curl_slist_append(NULL, hdr);
	curl_easy_setopt(c, CURLOPT_URL, full);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	long status = -1;
	CURLcode rc = curl_easy_perform(c);
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	else
		fprintf(stderr, "hutch: cannot reach %s: %s\n", full, curl_easy_strerror(rc));
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return status;
}

static int api_fail(long status, struct strbuf *body)
{
	json_t *j = body->len ? json_loadb(body->data, body->len, 0, NULL) : NULL;
	const char *msg = json_string_value(json_object_get(j, "message"));
	if (status > 0)
		fprintf(stderr, "hutch: %ld: %s\n", status, msg ? msg : "request failed");
	json_decref(j);
	return 1;
}

static int do_list(const char *url, const char *key, bool json)
{
	_cleanup_strbuf_ struct strbuf body = { 0 };
	long st = api_call(url, key, "GET", "/v2/sandboxes?limit=100", &body);
	if (st != 200)
		return api_fail(st, &body);
	if (json) {
		fwrite(body.data, 1, body.len, stdout);
		putchar('\n');
		return 0;
	}
	json_t *arr = json_loadb(body.data, body.len, 0, NULL);
	size_t n = json_array_size(arr);
	const char *header[] = { "ID", "TEMPLATE", "STATE", "STARTED", "ENDS" };
	char ***rows = calloc(n ? n : 1, sizeof(*rows));
	for (size_t i = 0; rows && i < n; i++) {
		json_t *s = json_array_get(arr, i);
		rows[i] = calloc(5, sizeof(char *));
		const char *f[] = { "sandboxID", "templateID", "state", "startedAt", "endAt" };
		for (size_t c = 0; rows[i] && c < 5; c++)
			rows[i][c] = (char *)json_string_value(json_object_get(s, f[c]));
	}
	if (rows)
		cli_print_table(header, 5, rows, n);
	for (size_t i = 0; rows && i < n; i++)
		free(rows[i]);
	free(rows);
	json_decref(arr);
	return 0;
}

static int do_kill(const char *url, const char *key, const char *id)
{
	_cleanup_strbuf_ struct strbuf body = { 0 };
	char path[256];
	snprintf(path, sizeof(path), "/sandboxes/%s", id);
	long st = api_call(url, key, "DELETE", path, &body);
	if (st == 204) {
		printf("Killed %s\n", id);
		return 0;
	}
	return api_fail(st, &body);
}

/* ---- exec: process.Process/Start through the front door ---- */

static void exec_output(void *userdata, int fd, const char *data, size_t len)
{
	(void)userdata;
	FILE *f = fd == 2 ? stderr : stdout;
	fwrite(data, 1, len, f);
	fflush(f);
}

static size_t exec_write(char *p, size_t size, size_t n, void *ud)
{
	return proc_stream_feed(ud, p, size * n) < 0 ? 0 : size * n;
}

static int do_exec(const char *url, const char *key, const char *id, const char *user,
		   const char *cwd, char **cmd, int ncmd)
{
	_cleanup_strbuf_ struct strbuf body = { 0 };
	char path[256];
	snprintf(path, sizeof(path), "/sandboxes/%s", id);
	long st = api_call(url, key, "GET", path, &body);
	if (st != 200)
		return api_fail(st, &body);
	json_t *info = json_loadb(body.data, body.len, 0, NULL);
	const char *token = json_string_value(json_object_get(info, "envdAccessToken"));

	json_t *args = json_array();
	for (int i = 1; i < ncmd; i++)
		json_array_append_new(args, json_string(cmd[i]));
	json_t *proc = json_pack("{s:s, s:o}", "cmd", cmd[0], "args", args);
	if (cwd)
		json_object_set_new(proc, "cwd", json_string(cwd));
	json_t *req = json_pack("{s:o, s:b}", "process", proc, "stdin", 0);
	char *text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	_cleanup_strbuf_ struct strbuf env = { 0 };
	connect_envelope_append(&env, 0, text, strlen(text));
	free(text);

	const char *sb_url = getenv("E2B_SANDBOX_URL");
	char full[1024], h1[256], h2[256], h3[256];
	snprintf(full, sizeof(full), "%s/process.Process/Start",
		 sb_url && *sb_url ? sb_url : "http://127.0.0.1:49983");
	snprintf(h1, sizeof(h1), "E2b-Sandbox-Id: %s", id);
	snprintf(h2, sizeof(h2), "X-Access-Token: %s", token ? token : "");
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/connect+json");
	h = curl_slist_append(h, "Connect-Protocol-Version: 1");
	h = curl_slist_append(h, h1);
	h = curl_slist_append(h, h2);
	if (user) {
		char cred[200];
		snprintf(cred, sizeof(cred), "%s:", user);
		char *b64 = base64_encode(cred, strlen(cred), true);
		snprintf(h3, sizeof(h3), "Authorization: Basic %s", b64 ? b64 : "");
		free(b64);
		h = curl_slist_append(h, h3);
	}
	json_decref(info);

	struct proc_stream es = { .output = exec_output, .exit_code = 1 };
	CURL *c = curl_easy_init();
	curl_easy_setopt(c, CURLOPT_URL, full);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, env.data);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)env.len);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, exec_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &es);
	CURLcode rc = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	proc_stream_done(&es);
	if (rc != CURLE_OK) {
		fprintf(stderr, "hutch: %s\n", curl_easy_strerror(rc));
		return 1;
	}
	if (status != 200) {
		fprintf(stderr, "hutch: the sandbox answered %ld\n", status);
		return 1;
	}
	if (es.error[0]) {
		fprintf(stderr, "hutch: %s\n", es.error);
		return es.ended ? es.exit_code : 1;
	}
	return es.exit_code;
}

int cmd_sandbox(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "data-dir", required_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'j' },
		{ "user", required_argument, NULL, 'u' },
		{ "cwd", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *data_dir = NULL, *user = NULL, *cwd = NULL;
	bool json = false;
	int c;
	optind = 1;
	/* "+": stop at the first non-option, so the command after "--" keeps its flags. */
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) >= 0) {
		switch (c) {
		case 'd':
			data_dir = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'u':
			user = optarg;
			break;
		case 'c':
			cwd = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	const char *verb = argv[optind++];
	/* Options may also follow the verb. */
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) >= 0) {
		if (c == 'd')
			data_dir = optarg;
		else if (c == 'j')
			json = true;
		else if (c == 'u')
			user = optarg;
		else if (c == 'c')
			cwd = optarg;
		else {
			usage(stderr);
			return 2;
		}
	}
	_cleanup_free_ char *url = NULL, *key = NULL;
	int rc = 2;
	if (streq(verb, "list")) {
		if (optind != argc) {
			usage(stderr);
			return 2;
		}
		if (cli_api_target(data_dir, argv[0], &url, &key) < 0)
			return 1;
		rc = do_list(url, key, json);
	} else if (streq(verb, "kill")) {
		if (optind + 1 != argc) {
			fprintf(stderr, "hutch sandbox kill: give one sandbox ID\n");
			return 2;
		}
		if (cli_api_target(data_dir, argv[0], &url, &key) < 0)
			return 1;
		rc = do_kill(url, key, argv[optind]);
	} else if (streq(verb, "exec")) {
		if (optind >= argc) {
			fprintf(stderr, "hutch sandbox exec: give a sandbox ID and a command\n");
			return 2;
		}
		const char *id = argv[optind++];
		if (optind < argc && streq(argv[optind], "--"))
			optind++;
		if (optind >= argc) {
			fprintf(stderr,
				"hutch sandbox exec: give a command after the sandbox ID\n");
			return 2;
		}
		if (cli_api_target(data_dir, argv[0], &url, &key) < 0)
			return 1;
		rc = do_exec(url, key, id, user, cwd, argv + optind, argc - optind);
	} else {
		fprintf(stderr, "hutch sandbox: unknown verb '%s'\n", verb);
		usage(stderr);
	}
	return rc;
}
