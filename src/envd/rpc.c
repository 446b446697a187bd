/* Connect RPC over HTTP/1.1 with the JSON codec: unary and server-streaming dispatch. */
#include <stdarg.h>
#include "envd.h"
#include "common/log.h"
#include "common/util.h"

#define RPC_MAX_BODY	      (16u << 20)
#define KEEPALIVE_DEFAULT_SEC 90

struct rpc_stream *rpc_stream_new(uint64_t keepalive_usec, uint64_t deadline, int sock);
ssize_t rpc_stream_read(void *cls, uint64_t pos, char *buf, size_t max);
void rpc_stream_finished(void *cls);

char *rpc_msg(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

static const struct rpc_method *find_method(const char *path)
{
	const struct rpc_method *tables[] = { process_methods, filesystem_methods };
	for (size_t t = 0; t < ELEMENTSOF(tables); t++)
		for (const struct rpc_method *m = tables[t]; m->path; m++)
			if (streq(m->path, path))
				return m;
	return NULL;
}

static int respond_unary_error(struct http_req *req, enum connect_code code, const char *msg)
{
	return http_respond_json(req, connect_code_http_status(code),
				 connect_error_json(code, msg));
}

/* Errors of a streaming call that happen before the stream exists: 200 + end-stream. */
static int respond_stream_error(struct http_req *req, enum connect_code code, const char *msg)
{
	_cleanup_strbuf_ struct strbuf sb = { 0 };
	if (connect_end_stream_append(&sb, code, msg) < 0)
		return http_respond_error(req, 500, "out of memory");
	return http_respond_buffer(req, 200, "application/connect+json", sb.data, sb.len);
}

static bool content_type_is(const char *ct, const char *want)
{
	if (!ct)
		return false;
	size_t n = strlen(want);
	return strncasecmp(ct, want, n) == 0 && (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ');
}

static int rpc_begin(struct http_req *req)
{
	const struct rpc_method *m = req->state;
	const char *ct = http_header(req, "Content-Type");
	bool streaming = m->stream != NULL;
	if (!streaming && !content_type_is(ct, "application/json"))
		return http_respond_buffer(req, 415, NULL, "", 0) < 0 ? -EIO : -EPROTO;
	if (streaming && !content_type_is(ct, "application/connect+json"))
		return http_respond_buffer(req, 415, NULL, "", 0) < 0 ? -EIO : -EPROTO;
	if (!auth_token_ok(req)) {
		const char *msg = "unauthorized access, please provide a valid access token or "
				  "method signing if supported";
		return streaming ? respond_stream_error(req, CONNECT_UNAUTHENTICATED, msg)
				 : respond_unary_error(req, CONNECT_UNAUTHENTICATED, msg);
	}
	req->body_limit = RPC_MAX_BODY;
	return 0;
}

static int parse_json(const char *buf, size_t len, json_t **out, char **err)
{
	json_error_t jerr;
	json_t *j = json_loadb(buf, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	if (!j || !json_is_object(j)) {
		json_decref(j);
		*err = rpc_msg("invalid request body: %s", j ? "not an object" : jerr.text);
		return -EINVAL;
	}
	*out = j;
	return 0;
}

static int finish_unary(struct http_req *req, const struct rpc_method *m, struct rpc_ctx *ctx)
{
	_cleanup_json_ json_t *in = NULL;
	_cleanup_free_ char *msg = NULL;
	if (parse_json(req->body.len ? req->body.data : "{}", req->body.len ? req->body.len : 2,
		       &in, &msg) < 0)
		return respond_unary_error(req, CONNECT_INVALID_ARGUMENT, msg);
	json_t *resp = NULL;
	enum connect_code code = m->unary(ctx, in, &resp, &msg);
	if (code != CONNECT_OK) {
		json_decref(resp);
		return respond_unary_error(req, code, msg ? msg : connect_code_name(code));
	}
	return http_respond_json(req, 200, resp ? resp : json_object());
}

static uint64_t keepalive_interval(struct http_req *req)
{
	uint64_t sec;
	const char *h = http_header(req, "Keepalive-Ping-Interval");
	if (!h || parse_u64(h, &sec) < 0 || sec == 0 || sec > 86400)
		sec = KEEPALIVE_DEFAULT_SEC;
	return sec * 1000000u;
}

static int finish_stream(struct http_req *req, const struct rpc_method *m, struct rpc_ctx *ctx)
{
	uint8_t flags;
	const char *payload;
	size_t plen;
	long n = connect_envelope_parse(req->body.data, req->body.len, RPC_MAX_BODY, &flags,
					&payload, &plen);
	if (n <= 0 || (size_t)n != req->body.len)
		return respond_stream_error(req, CONNECT_INVALID_ARGUMENT,
					    "request must be exactly one envelope");
	if (flags & CONNECT_FLAG_COMPRESSED)
		return respond_stream_error(req, CONNECT_INTERNAL,
					    "compressed messages are not supported");
	_cleanup_json_ json_t *in = NULL;
	_cleanup_free_ char *msg = NULL;
	if (parse_json(plen ? payload : "{}", plen ? plen : 2, &in, &msg) < 0)
		return respond_stream_error(req, CONNECT_INVALID_ARGUMENT, msg);

	uint64_t deadline = 0, ms;
	const char *to = http_header(req, "Connect-Timeout-Ms");
	if (to) {
		if (connect_timeout_parse(to, &ms) < 0)
			return respond_stream_error(req, CONNECT_INVALID_ARGUMENT,
						    "invalid Connect-Timeout-Ms");
		deadline = now_usec() + ms * 1000u;
	}
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct rpc_stream *s =
	    rpc_stream_new(keepalive_interval(req), deadline, ci ? ci->connect_fd : -1);
	if (!s)
		return respond_stream_error(req, CONNECT_RESOURCE_EXHAUSTED, "out of memory");
	enum connect_code code = m->stream(ctx, in, s, &msg);
	if (code != CONNECT_OK) {
		rpc_stream_finished(s); /* runs the close callback a handler may have set */
		return respond_stream_error(req, code, msg ? msg : connect_code_name(code));
	}
	struct MHD_Response *resp = MHD_create_response_from_callback(
	    MHD_SIZE_UNKNOWN, 64 * 1024, rpc_stream_read, s, rpc_stream_finished);
	if (!resp) {
		rpc_stream_finished(s);
		return -ENOMEM;
	}
	MHD_add_response_header(resp, "Content-Type", "application/connect+json");
	return http_queue(req, 200, resp);
}

static int rpc_finish(struct http_req *req)
{
	const struct rpc_method *m = req->state;
	struct rpc_ctx ctx = { .req = req, .user = auth_basic_user(req) };
	int r = m->stream ? finish_stream(req, m, &ctx) : finish_unary(req, m, &ctx);
	free(ctx.user);
	return r;
}

static const struct http_route rpc_http_route = {
	.begin = rpc_begin,
	.finish = rpc_finish,
};

const struct http_route *rpc_route(struct http_req *req)
{
	const struct rpc_method *m = find_method(req->path);
	if (!m)
		return NULL;
	req->state = (void *)m;
	return &rpc_http_route;
}
