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

int api_sandbox_create(struct http_req *req, struct api_req *ar)
{
	struct create_request cr = { 0 };
	json_t *extra = NULL;
	const char *msg;
	if (api_create_parse(ar->body, &cr, &extra, &msg) < 0)
		return api_error(req, 400, "%s", msg);
	cr.key_id = ar->key.id;
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

bool api_sandbox_visible(struct hutch_server *srv, const char *id)
{
	struct sandbox_rec rec = { 0 };
	bool visible = store_sandbox_get(srv->store, id, &rec) == 0 && rec.key_id[0];
	sandbox_rec_clear(&rec);
	return visible;
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
	unsigned timeout = api_timeout_field(ar->body, "timeout", &terr);
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

static int list(struct http_req *req, struct api_req *ar, bool v2)
{
	struct sandbox_filter f = { .limit = v2 ? LIST_MAX_LIMIT : 1000, .keyed_only = true };
	_cleanup_json_ json_t *meta = NULL;
	const char *q = http_query(req, "metadata");
	if (q && *q && api_parse_metadata_query(q, &meta) < 0)
		return api_error(req, 400, "invalid metadata filter");
	f.metadata = meta;
	q = http_query(req, "state");
	if (q && *q && api_parse_states(q, &f.states) < 0)
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
