/* Sandbox metrics and logs. */
#include "api/api.h"
#include "common/util.h"

int api_sandbox_metrics(struct http_req *req, struct api_req *ar)
{
	json_t *m = NULL;
	int r = orchestr_stats(ar->srv->orchestr, ar->id, &m);
	if (r == -ENOENT)
		return api_error(req, 404, "sandbox \"%s\" not found", ar->id);
	if (r < 0)
		return api_error(req, 500, "cannot read the sandbox's metrics: %s", strerror(-r));
	return http_respond_json(req, 200, json_pack("[o]", m));
}

int api_sandboxes_metrics(struct http_req *req, struct api_req *ar)
{
	const char *q = http_query(req, "sandbox_ids");
	if (isempty(q))
		return api_error(req, 400, "sandbox_ids is required");
	_cleanup_free_ char *ids = strdup(q);
	json_t *all = json_object();
	if (!ids || !all) {
		json_decref(all);
		return api_error(req, 500, "out of memory");
	}
	char *save = NULL;
	unsigned count = 0;
	for (char *id = strtok_r(ids, ",", &save); id; id = strtok_r(NULL, ",", &save)) {
		if (++count > 100) {
			json_decref(all);
			return api_error(req, 400, "at most 100 sandbox_ids");
		}
		json_t *m = NULL;
		if (api_sandbox_visible(ar->srv, id) &&
		    orchestr_stats(ar->srv->orchestr, id, &m) >= 0)
			json_object_set_new(all, id, m);
	}
	return http_respond_json(req, 200, json_pack("{s:o}", "sandboxes", all));
}

static int logs(struct http_req *req, struct api_req *ar, bool v2)
{
	json_t *lines = NULL;
	int r = orchestr_logs(ar->srv->orchestr, ar->id, &lines);
	if (r == -ENOENT)
		return api_error(req, 404, "sandbox \"%s\" not found", ar->id);
	if (r < 0)
		return api_error(req, 500, "cannot read the sandbox's logs");
	json_t *entries = json_array();
	size_t i;
	json_t *l;
	json_array_foreach (lines, i, l) {
		json_array_append_new(entries, json_pack("{s:O, s:O, s:s, s:{}}", "timestamp",
							 json_object_get(l, "timestamp"), "message",
							 json_object_get(l, "line"), "level",
							 "info", "fields"));
	}
	if (v2) {
		json_decref(lines);
		return http_respond_json(req, 200, json_pack("{s:o}", "logs", entries));
	}
	return http_respond_json(req, 200,
				 json_pack("{s:o, s:o}", "logs", lines, "logEntries", entries));
}

int api_sandbox_logs_v1(struct http_req *req, struct api_req *ar)
{
	return logs(req, ar, false);
}

int api_sandbox_logs_v2(struct http_req *req, struct api_req *ar)
{
	return logs(req, ar, true);
}
