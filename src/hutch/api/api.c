/* The API listener: routing, API-key authentication, JSON bodies and errors. */
#include "api/api.h"

#include <ctype.h>
#include <nettle/sha2.h>
#include <stdarg.h>
#include "common/log.h"

struct api_route {
	const char *method;
	const char *pattern; /* segments; "{id}" matches one segment */
	api_handler_fn fn;
	bool body; /* takes a JSON body */
};

static const struct api_route routes[] = {
	{ "POST", "/sandboxes", api_sandbox_create, true },
	{ "POST", "/v2/sandboxes", api_sandbox_create, true },
	{ "GET", "/sandboxes", api_sandbox_list_v1, false },
	{ "GET", "/v2/sandboxes", api_sandbox_list_v2, false },
	{ "GET", "/sandboxes/metrics", api_sandboxes_metrics, false },
	{ "GET", "/sandboxes/{id}", api_sandbox_get, false },
	{ "DELETE", "/sandboxes/{id}", api_sandbox_kill, false },
	{ "POST", "/sandboxes/{id}/connect", api_sandbox_connect, true },
	{ "POST", "/v2/sandboxes/{id}/connect", api_sandbox_connect, true },
	{ "POST", "/sandboxes/{id}/timeout", api_sandbox_timeout, true },
	{ "POST", "/sandboxes/{id}/refreshes", api_sandbox_refresh, true },
	{ "POST", "/sandboxes/{id}/pause", api_sandbox_pause, true },
	{ "POST", "/sandboxes/{id}/resume", api_sandbox_pause, true },
	{ "GET", "/sandboxes/{id}/metrics", api_sandbox_metrics, false },
	{ "GET", "/sandboxes/{id}/logs", api_sandbox_logs_v1, false },
	{ "GET", "/v2/sandboxes/{id}/logs", api_sandbox_logs_v2, false },
	{ "POST", "/v3/templates", api_template_request_build, true },
	{ "GET", "/templates", api_template_list, false },
	{ "POST", "/templates/tags", api_template_tags_assign, true },
	{ "DELETE", "/templates/tags", api_template_tags_delete, true },
	{ "GET", "/templates/aliases/{id}", api_template_alias, false },
	{ "GET", "/templates/{id}", api_template_get, false },
	{ "DELETE", "/templates/{id}", api_template_delete, false },
	{ "GET", "/templates/{id}/tags", api_template_tags_list, false },
	{ "GET", "/templates/{id}/files/{id2}", api_template_files, false },
	{ "POST", "/v2/templates/{id}/builds/{id2}", api_template_build_start, true },
	{ "GET", "/templates/{id}/builds/{id2}/status", api_template_build_status, false },
	{ "GET", "/templates/{id}/builds/{id2}/logs", api_template_build_logs, false },
};

int api_error(struct http_req *req, unsigned status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return http_respond_error(req, status, "%s", msg);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int url_unescape(char *s, bool plus_is_space)
{
	char *o = s;
	for (char *p = s; *p; p++) {
		if (*p == '%') {
			int hi = hexval(p[1]), lo = hi >= 0 ? hexval(p[2]) : -1;
			if (hi < 0 || lo < 0 || (hi | lo) == 0) /* %00 would cut the string */
				return -EINVAL;
			*o++ = (char)(hi << 4 | lo);
			p += 2;
		} else if (*p == '+' && plus_is_space) {
			*o++ = ' ';
		} else {
			*o++ = *p;
		}
	}
	*o = 0;
	return 0;
}

/* Matches path against pattern; copies the {id} and {id2} segments into id and id2. */
static bool match(const char *pattern, const char *path, char *id, size_t id_size, char *id2,
		  size_t id2_size)
{
	while (*pattern && *path) {
		if (startswith(pattern, "{id2}")) {
			size_t n = strcspn(path, "/");
			if (n == 0 || n >= id2_size)
				return false;
			memcpy(id2, path, n);
			id2[n] = 0;
			path += n;
			pattern += 5;
			continue;
		}
		if (startswith(pattern, "{id}")) {
			size_t n = strcspn(path, "/");
			if (n == 0 || n >= id_size)
				return false;
			memcpy(id, path, n);
			id[n] = 0;
			path += n;
			pattern += 4;
			continue;
		}
		if (*pattern++ != *path++)
			return false;
	}
	if (*path == '/' && path[1] == 0) /* a trailing slash is fine */
		path++;
	return !*pattern && !*path;
}

struct api_state {
	const struct api_route *route;
	struct api_req ar;
};

static int authenticate(struct http_req *req, struct api_req *ar)
{
	const char *key = http_header(req, "X-API-Key");
	if (isempty(key))
		return api_error(req, 401, "Missing API key: pass it in the X-API-Key header");
	uint8_t hash[SHA256_DIGEST_SIZE];
	struct sha256_ctx ctx;
	sha256_init(&ctx);
	sha256_update(&ctx, strlen(key), (const uint8_t *)key);
	sha256_digest(&ctx, sizeof(hash), hash);
	if (store_key_lookup(ar->srv->store, hash, &ar->key) < 0)
		return api_error(req, 401, "Invalid API key");
	return 0;
}

static int api_begin(struct http_req *req)
{
	struct api_state *st = req->state;
	st->ar.srv = req->userdata;
	req->body_limit = st->ar.srv->cfg->max_body;
	return authenticate(req, &st->ar);
}

static int api_finish(struct http_req *req)
{
	struct api_state *st = req->state;
	if (st->route->body && req->body.len > 0) {
		json_error_t err;
		st->ar.body = json_loadb(req->body.data, req->body.len, 0, &err);
		if (!st->ar.body)
			return api_error(req, 400, "Invalid JSON body: %s", err.text);
		if (!json_is_object(st->ar.body))
			return api_error(req, 400, "The request body must be a JSON object");
	}
	/* A template build's sandbox is the daemon's own: no client sees or touches it. */
	if (strstr(st->route->pattern, "sandboxes/{id}") &&
	    !api_sandbox_visible(st->ar.srv, st->ar.id))
		return api_error(req, 404, "sandbox \"%s\" not found", st->ar.id);
	return st->route->fn(req, &st->ar);
}

static void api_cleanup(struct http_req *req)
{
	struct api_state *st = req->state;
	if (!st)
		return;
	json_decref(st->ar.body);
	free(st);
}

static const struct http_route api_http_route = {
	.begin = api_begin,
	.finish = api_finish,
	.cleanup = api_cleanup,
};

static int health_begin(struct http_req *req)
{
	return http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static const struct http_route health_route = { .begin = health_begin };

const struct http_route *api_router(struct http_req *req)
{
	if (streq(req->path, "/health") &&
	    (streq(req->method, "GET") || streq(req->method, "HEAD")))
		return &health_route;
	if (startswith(req->path, "/upload/files/"))
		return api_upload_router(req);
	bool path_known = false;
	char id[64] = "", id2[128] = "";
	for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
		if (!match(routes[i].pattern, req->path, id, sizeof(id), id2, sizeof(id2)))
			continue;
		path_known = true;
		if (!streq(routes[i].method, req->method))
			continue;
		struct api_state *st = calloc(1, sizeof(*st));
		if (!st)
			return NULL;
		st->route = &routes[i];
		snprintf(st->ar.id, sizeof(st->ar.id), "%s", id);
		snprintf(st->ar.id2, sizeof(st->ar.id2), "%s", id2);
		req->state = st;
		return &api_http_route;
	}
	if (path_known)
		api_error(req, 405, "Method %s is not allowed on %s", req->method, req->path);
	else
		api_error(req, 404, "No such endpoint: %s %s", req->method, req->path);
	return NULL;
}
