/* /sandboxes: create, list, get, kill, connect, timeout, refresh (v1 and v2 paths). */
#include <inttypes.h>
#include "api/api.h"
#include "common/log.h"
#include "common/util.h"
#include "common/version.h"
#include "json/jsonx.h"

#define LIST_MAX_LIMIT 100

static void iso_time(char *buf, size_t size, int64_t ms)
{
	format_rfc3339(buf, size, ms / 1000, (long)(ms % 1000) * 1000000L);
}

/* Checks an object of string → string (metadata, envVars). */
static bool string_map(const json_t *j)
{
	if (!json_is_object(j))
		return false;
	const char *k;
	json_t *v;
	json_object_foreach ((json_t *)j, k, v) {
		if (!json_is_string(v) || !*k)
			return false;
	}
	return true;
}

/* The `Sandbox` object of create/connect answers. */
static json_t *sandbox_json(struct api_req *ar, const struct sandbox_rec *r)
{
	char token[65], traffic[65];
	orchestr_envd_token(ar->srv->orchestr, r->id, token);
	orchestr_traffic_token(ar->srv->orchestr, r->id, traffic);
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "templateID", r->template_id,
			 "sandboxID", r->id, "clientID", "hutch", "envdVersion", r->envd_version,
			 "alias", r->alias[0] ? r->alias : r->template_id, "envdAccessToken", token,
			 "trafficAccessToken", traffic, "domain", ar->srv->cfg->domain);
}

/* The fields ListedSandbox and SandboxDetail share. */
static json_t *listed_json(const struct sandbox_rec *r)
{
	char started[64], end[64];
	iso_time(started, sizeof(started), r->started_ms);
	iso_time(end, sizeof(end), r->end_ms);
	const char *state = r->state == SANDBOX_PAUSED ? "paused" : "running";
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:O}",
			 "sandboxID", r->id, "templateID", r->template_id, "clientID", "hutch",
			 "alias", r->alias[0] ? r->alias : r->template_id, "startedAt", started,
			 "endAt", end, "state", state, "cpuCount", (int)r->cpu_count, "memoryMB",
			 (int)r->memory_mb, "diskSizeMB", (int)r->disk_mb, "envdVersion",
			 r->envd_version, "metadata", r->metadata ? r->metadata : json_object());
}

static unsigned timeout_of(const json_t *body, const char *field, int *err)
{
	json_t *t = json_object_get(body, field);
	*err = 0;
	if (!t || json_is_null(t))
		return 0;
	if (!json_is_integer(t) || json_integer_value(t) < 0 ||
	    json_integer_value(t) > 365 * 86400) {
		*err = -EINVAL;
		return 0;
	}
	return (unsigned)json_integer_value(t);
}

int api_sandbox_create(struct http_req *req, struct api_req *ar)
{
	const json_t *b = ar->body;
	const char *template_id = json_string_value(json_object_get(b, "templateID"));
	if (isempty(template_id))
		return api_error(req, 400, "templateID is required");
	int terr;
	unsigned timeout = timeout_of(b, "timeout", &terr);
	if (terr < 0)
		return api_error(req, 400, "timeout must be a whole number of seconds");
	const json_t *metadata = json_object_get(b, "metadata");
	const json_t *env_vars = json_object_get(b, "envVars");
	if ((metadata && !json_is_null(metadata) && !string_map(metadata)) ||
	    (env_vars && !json_is_null(env_vars) && !string_map(env_vars)))
		return api_error(req, 400, "metadata and envVars must map strings to strings");
	const json_t *internet = json_object_get(b, "allow_internet_access");
	const json_t *auto_pause = json_object_get(b, "autoPause");
	if ((internet && !json_is_boolean(internet) && !json_is_null(internet)) ||
	    (auto_pause && !json_is_boolean(auto_pause) && !json_is_null(auto_pause)))
		return api_error(req, 400, "allow_internet_access and autoPause must be booleans");

	/* Fields for later features are kept as they came. */
	json_t *extra = json_object();
	static const char *const kept[] = { "network",	    "mcp", "autoPauseMemory", "autoResume",
					    "volumeMounts", "iam", "secure" };
	for (size_t i = 0; extra && i < ELEMENTSOF(kept); i++) {
		json_t *v = json_object_get(b, kept[i]);
		if (v && !json_is_null(v))
			json_object_set(extra, kept[i], v);
	}
	struct create_request cr = {
		.template_id = template_id,
		.timeout_s = timeout,
		.metadata = json_is_object(metadata) ? metadata : NULL,
		.env_vars = json_is_object(env_vars) ? env_vars : NULL,
		.allow_internet = !internet || json_is_null(internet) || json_is_true(internet),
		.auto_pause = json_is_true(auto_pause),
		.extra = extra,
		.key_id = ar->key.id,
	};
	struct sandbox_rec rec = { 0 };
	struct api_error err = { 0 };
	int r = orchestr_create(ar->srv->orchestr, &cr, &rec, &err);
	json_decref(extra);
	if (r < 0) {
		sandbox_rec_clear(&rec);
		return err.status ? api_error(req, err.status, "%s", err.message)
				  : api_error(req, 500, "failed to create the sandbox");
	}
	json_t *j = sandbox_json(ar, &rec);
	sandbox_rec_clear(&rec);
	return http_respond_json(req, 201, j);
}

static int not_found(struct http_req *req, const char *id)
{
	return api_error(req, 404, "sandbox \"%s\" not found", id);
}

int api_sandbox_get(struct http_req *req, struct api_req *ar)
{
	struct sandbox_rec rec = { 0 };
	if (store_sandbox_get(ar->srv->store, ar->id, &rec) < 0) {
		sandbox_rec_clear(&rec);
		return not_found(req, ar->id);
	}
	json_t *j = listed_json(&rec);
	char token[65];
	orchestr_envd_token(ar->srv->orchestr, rec.id, token);
	if (j) {
		json_object_set_new(j, "envdAccessToken", json_string(token));
		json_object_set_new(j, "domain", json_string(ar->srv->cfg->domain));
		json_object_set_new(j, "allowInternetAccess", json_boolean(rec.allow_internet));
		json_object_set_new(j, "lifecycle",
				    json_pack("{s:s, s:b}", "onTimeout",
					      rec.auto_pause ? "pause" : "kill", "autoResume", 0));
		json_t *network = json_object_get(rec.extra, "network");
		if (network)
			json_object_set(j, "network", network);
	}
	sandbox_rec_clear(&rec);
	return http_respond_json(req, 200, j);
}

int api_sandbox_kill(struct http_req *req, struct api_req *ar)
{
	if (orchestr_kill(ar->srv->orchestr, ar->id) < 0)
		return not_found(req, ar->id);
	return http_respond_empty(req, 204);
}

int api_sandbox_connect(struct http_req *req, struct api_req *ar)
{
	int terr;
	unsigned timeout = timeout_of(ar->body, "timeout", &terr);
	if (terr < 0)
		return api_error(req, 400, "timeout must be a whole number of seconds");
	int64_t end;
	/* A running sandbox's TTL is only ever extended by connect. */
	if (orchestr_set_timeout(ar->srv->orchestr, ar->id,
				 timeout ? timeout : ar->srv->cfg->default_timeout_s, true,
				 &end) < 0)
		return not_found(req, ar->id);
	struct sandbox_rec rec = { 0 };
	if (store_sandbox_get(ar->srv->store, ar->id, &rec) < 0) {
		sandbox_rec_clear(&rec);
		return not_found(req, ar->id);
	}
	json_t *j = sandbox_json(ar, &rec);
	sandbox_rec_clear(&rec);
	return http_respond_json(req, 200, j);
}

int api_sandbox_timeout(struct http_req *req, struct api_req *ar)
{
	json_t *t = json_object_get(ar->body, "timeout");
	if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) > 365 * 86400)
		return api_error(req, 400, "timeout (seconds) is required");
	int64_t end;
	if (orchestr_set_timeout(ar->srv->orchestr, ar->id, (unsigned)json_integer_value(t), false,
				 &end) < 0)
		return not_found(req, ar->id);
	return http_respond_empty(req, 204);
}

int api_sandbox_refresh(struct http_req *req, struct api_req *ar)
{
	json_t *d = json_object_get(ar->body, "duration");
	if (d && (!json_is_integer(d) || json_integer_value(d) < 0 || json_integer_value(d) > 3600))
		return api_error(req, 400, "duration must be 0 to 3600 seconds");
	unsigned duration = d ? (unsigned)json_integer_value(d) : 15;
	int64_t end;
	if (orchestr_set_timeout(ar->srv->orchestr, ar->id, duration, true, &end) < 0)
		return not_found(req, ar->id);
	return http_respond_empty(req, 204);
}

int api_sandbox_pause(struct http_req *req, struct api_req *ar)
{
	struct sandbox_rec rec = { 0 };
	int r = store_sandbox_get(ar->srv->store, ar->id, &rec);
	sandbox_rec_clear(&rec);
	if (r < 0)
		return not_found(req, ar->id);
	return api_error(req, 501, "pausing and resuming sandboxes is not supported yet");
}

/* ---- lists ---- */

/* Decodes E2B's metadata query (PROTOCOL.md §2.4): the value (already unescaped once) is
 * unescaped again, split on & and =, and each key and value unescaped once more. */
static int parse_metadata_query(const char *q, json_t **out)
{
	_cleanup_free_ char *s = strdup(q);
	if (!s)
		return -ENOMEM;
	if (url_unescape(s, true) < 0)
		return -EINVAL;
	json_t *obj = json_object();
	char *save = NULL;
	for (char *pair = strtok_r(s, "&", &save); pair; pair = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(pair, '=');
		if (!eq) {
			json_decref(obj);
			return -EINVAL;
		}
		*eq = 0;
		if (url_unescape(pair, true) < 0 || url_unescape(eq + 1, true) < 0) {
			json_decref(obj);
			return -EINVAL;
		}
		json_object_set_new(obj, pair, json_string(eq + 1));
	}
	*out = obj;
	return 0;
}

static int parse_states(const char *q, unsigned *out)
{
	_cleanup_free_ char *s = strdup(q);
	if (!s)
		return -ENOMEM;
	*out = 0;
	char *save = NULL;
	for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		enum sandbox_state st;
		if (sandbox_state_parse(t, &st) < 0)
			return -EINVAL;
		*out |= 1u << st;
		if (st == SANDBOX_RUNNING) /* starting sandboxes are running to a client */
			*out |= 1u << SANDBOX_STARTING;
	}
	return 0;
}

static int list(struct http_req *req, struct api_req *ar, bool v2)
{
	struct sandbox_filter f = { .limit = v2 ? LIST_MAX_LIMIT : 1000 };
	_cleanup_json_ json_t *meta = NULL;
	const char *q = http_query(req, "metadata");
	if (q && *q && parse_metadata_query(q, &meta) < 0)
		return api_error(req, 400, "invalid metadata filter");
	f.metadata = meta;
	q = http_query(req, "state");
	if (q && *q && parse_states(q, &f.states) < 0)
		return api_error(req, 400, "invalid state filter '%s' (running, paused)", q);
	if (!v2)
		f.states = 1u << SANDBOX_RUNNING | 1u << SANDBOX_STARTING;
	q = http_query(req, "limit");
	uint64_t limit;
	if (q && (parse_u64(q, &limit) < 0 || limit < 1 || limit > LIST_MAX_LIMIT))
		return api_error(req, 400, "limit must be 1 to %d", LIST_MAX_LIMIT);
	if (q)
		f.limit = (unsigned)limit;
	f.cursor = http_query(req, "nextToken");
	if (f.cursor && !*f.cursor)
		f.cursor = NULL;
	f.template_id = http_query(req, "template");
	q = http_query(req, "order");
	if (q && !streq(q, "asc") && !streq(q, "desc"))
		return api_error(req, 400, "order must be asc or desc");
	f.order_desc = streq(q, "desc");
	q = http_query(req, "startedAfter");
	if (q && *q) {
		int64_t sec;
		long nsec;
		if (parse_rfc3339(q, &sec, &nsec) < 0)
			return api_error(req, 400, "startedAfter must be an RFC 3339 time");
		f.started_after_ms = sec * 1000 + nsec / 1000000;
	}

	struct sandbox_rec *recs = NULL;
	size_t n = 0;
	_cleanup_free_ char *next = NULL;
	int r = store_sandbox_list(ar->srv->store, &f, &recs, &n, &next);
	if (r == -EINVAL)
		return api_error(req, 400, "invalid nextToken");
	if (r < 0)
		return api_error(req, 500, "cannot list sandboxes");
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		if (arr)
			json_array_append_new(arr, listed_json(&recs[i]));
		sandbox_rec_clear(&recs[i]);
	}
	free(recs);
	if (!arr)
		return api_error(req, 500, "out of memory");
	char *text = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	if (!text)
		return api_error(req, 500, "out of memory");
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(text);
		return -ENOMEM;
	}
	MHD_add_response_header(resp, "Content-Type", "application/json");
	if (v2) {
		if (next)
			MHD_add_response_header(resp, "X-Next-Token", next);
		char total[32];
		snprintf(total, sizeof(total), "%d",
			 store_sandbox_count(ar->srv->store, 1u << SANDBOX_RUNNING));
		MHD_add_response_header(resp, "X-Total-Running", total);
	}
	return http_queue(req, 200, resp);
}

int api_sandbox_list_v1(struct http_req *req, struct api_req *ar)
{
	return list(req, ar, false);
}

int api_sandbox_list_v2(struct http_req *req, struct api_req *ar)
{
	return list(req, ar, true);
}
