/* E2B's control-plane REST API (both generations, PROTOCOL.md §2), one file per resource. */
#pragma once

#include "http/http.h"
#include "server.h"

/* The router for the API listener (userdata: struct hutch_server). */
const struct http_route *api_router(struct http_req *req);

/* ---- shared by the resource files (api.c) ---- */
struct api_req {
	struct hutch_server *srv;
	struct api_key key; /* the authenticated key */
	char id[64];	    /* the {id} path segment, if any */
	char id2[128];	    /* the {id2} path segment, if any */
	json_t *body;	    /* parsed JSON body (object), NULL when none */
};
/* {"code": status, "message": ...} with that status. */
int api_error(struct http_req *req, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Decodes %XX escapes (and '+' as a space when plus_is_space); in place. -EINVAL on a bad escape
 * or %00. */
int url_unescape(char *s, bool plus_is_space);

/* decode.c: the untrusted parts of requests, as pure functions (fuzzed). */
/* A create body (an object) → cr (pointing into b) and *extra (the kept fields of later
 * features; the caller decrefs it). -EINVAL with *err on a bad field. */
int api_create_parse(const json_t *b, struct create_request *cr, json_t **extra, const char **err);
/* A whole-seconds field of 0..365 days; 0 when absent or null; *err = -EINVAL when bad. */
unsigned api_timeout_field(const json_t *body, const char *field, int *err);
/* E2B's metadata filter (PROTOCOL.md §2.4): the value (already unescaped once) is unescaped
 * again, split on & and =, and each key and value unescaped once more → object of strings. */
int api_parse_metadata_query(const char *q, json_t **out);
/* "running,paused" → a bit mask of sandbox states (running includes starting). */
int api_parse_states(const char *q, unsigned *out);

/* Handlers get the request with auth done and the body (if the route takes one) parsed. */
typedef int (*api_handler_fn)(struct http_req *req, struct api_req *ar);

/* sandboxes.c */
/* Whether id is a sandbox clients may see: one created with an API key, not a build's. */
bool api_sandbox_visible(struct hutch_server *srv, const char *id);
int api_sandbox_create(struct http_req *req, struct api_req *ar);
int api_sandbox_list_v1(struct http_req *req, struct api_req *ar);
int api_sandbox_list_v2(struct http_req *req, struct api_req *ar);
int api_sandbox_get(struct http_req *req, struct api_req *ar);
int api_sandbox_kill(struct http_req *req, struct api_req *ar);
int api_sandbox_connect(struct http_req *req, struct api_req *ar);
int api_sandbox_timeout(struct http_req *req, struct api_req *ar);
int api_sandbox_refresh(struct http_req *req, struct api_req *ar);
int api_sandbox_pause(struct http_req *req, struct api_req *ar);
/* templates.c */
int api_template_request_build(struct http_req *req, struct api_req *ar);
int api_template_files(struct http_req *req, struct api_req *ar);
int api_template_build_start(struct http_req *req, struct api_req *ar);
int api_template_build_status(struct http_req *req, struct api_req *ar);
int api_template_build_logs(struct http_req *req, struct api_req *ar);
int api_template_alias(struct http_req *req, struct api_req *ar);
int api_template_list(struct http_req *req, struct api_req *ar);
int api_template_get(struct http_req *req, struct api_req *ar);
int api_template_delete(struct http_req *req, struct api_req *ar);
int api_template_tags_assign(struct http_req *req, struct api_req *ar);
int api_template_tags_delete(struct http_req *req, struct api_req *ar);
int api_template_tags_list(struct http_req *req, struct api_req *ar);
/* PUT /upload/files/{hash}: signed COPY uploads, no API key (the SDK sends none there). */
const struct http_route *api_upload_router(struct http_req *req);
/* metrics.c */
int api_sandbox_metrics(struct http_req *req, struct api_req *ar);
int api_sandboxes_metrics(struct http_req *req, struct api_req *ar);
int api_sandbox_logs_v1(struct http_req *req, struct api_req *ar);
int api_sandbox_logs_v2(struct http_req *req, struct api_req *ar);
