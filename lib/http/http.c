#include "http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include "common/log.h"
#include "json/jsonx.h"

struct http_server {
	struct MHD_Daemon *daemon;
	struct http_server_config cfg;
	uint16_t port;
};

static const struct http_route discard_route = { 0 };

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url,
				      const char *method, const char *version,
				      const char *upload_data, size_t *upload_data_size,
				      void **con_cls)
{
	struct http_server *srv = cls;
	struct http_req *req = *con_cls;
	(void)version;

	if (!req) {
		req = calloc(1, sizeof(*req));
		if (!req)
			return MHD_NO;
		req->conn = conn;
		req->method = method;
		req->path = url;
		req->userdata = srv->cfg.userdata;
		req->cors = srv->cfg.cors;
		req->body_limit = 1 << 20;
		*con_cls = req;
		req->route = srv->cfg.router(req);
		if (!req->route) {
			if (!req->responded)
				http_respond_error(req, 404, "not found");
			req->route = &discard_route;
			return MHD_YES;
		}
		if (req->route->begin && req->route->begin(req) < 0 && !req->responded)
			http_respond_error(req, 500, "internal error");
		return MHD_YES;
	}

	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (req->responded || req->failed)
			return MHD_YES;
		int r;
		if (req->route->data) {
			r = req->route->data(req, upload_data, n);
		} else if (req->body.len + n > req->body_limit) {
			r = http_respond_error(req, 413, "request body exceeds %zu bytes",
					       req->body_limit);
		} else {
			r = strbuf_append(&req->body, upload_data, n);
			if (r < 0)
				http_respond_error(req, 500, "out of memory");
		}
		if (r < 0)
			req->failed = true;
		return MHD_YES;
	}

	req->in_final = true;
	if (!req->responded && !req->failed) {
		if (!req->route->finish || req->route->finish(req) < 0 || !req->responded)
			if (!req->responded)
				http_respond_error(req, 500, "internal error");
	}
	if (req->pending) {
		struct MHD_Response *resp = TAKE_PTR(req->pending);
		enum MHD_Result ok = MHD_queue_response(conn, req->status, resp);
		MHD_destroy_response(resp);
		return ok;
	}
	if (!req->responded)
		return MHD_NO; /* a route failed without answering: drop the connection */
	return MHD_YES;
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)conn;
	(void)toe;
	struct http_req *req = *con_cls;
	if (!req)
		return;
	if (req->route && req->route->cleanup)
		req->route->cleanup(req);
	if (req->pending)
		MHD_destroy_response(req->pending);
	strbuf_free(&req->body);
	free(req);
	*con_cls = NULL;
}

/* Keeps escapes as they came (MHD otherwise decodes the path and query values in place). */
static size_t unescape_none(void *cls, struct MHD_Connection *conn, char *s)
{
	(void)cls;
	(void)conn;
	return strlen(s);
}

static int hexdigit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
		return (c | 0x20) - 'a' + 10;
	return -1;
}

/* Decodes %XX escapes in the path and query values, except %00: decoded, a NUL would cut the
 * C string, so "/sandboxes/%00x" would reach the routes as "/sandboxes". It stays as written
 * (and so matches no route, sandbox id or file). */
static size_t unescape_but_nul(void *cls, struct MHD_Connection *conn, char *s)
{
	(void)cls;
	(void)conn;
	size_t o = 0;
	for (size_t i = 0; s[i];) {
		int hi = s[i] == '%' ? hexdigit(s[i + 1]) : -1;
		int lo = hi >= 0 ? hexdigit(s[i + 2]) : -1;
		if (lo >= 0 && (hi | lo) != 0) {
			s[o++] = (char)(hi << 4 | lo);
			i += 3;
		} else {
			s[o++] = s[i++];
		}
	}
	s[o] = 0;
	return o;
}

__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	char buf[512];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	size_t n = strlen(buf);
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = 0;
	log_debug("http: %s", buf);
}

int http_server_start(const struct http_server_config *cfg, struct http_server **out)
{
	_cleanup_free_ struct http_server *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = *cfg;

	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
			 MHD_USE_ERROR_LOG | MHD_USE_POLL;
	struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, cfg->address, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons(cfg->port);
		sl = sizeof(*in4);
	} else if (inet_pton(AF_INET6, cfg->address, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(cfg->port);
		sl = sizeof(*in6);
		flags |= MHD_USE_IPv6;
	} else {
		return -EINVAL;
	}
	(void)sl;

	s->daemon = MHD_start_daemon(
	    flags, cfg->port, NULL, NULL, access_handler, s, MHD_OPTION_SOCK_ADDR, &ss,
	    MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_CONNECTION_TIMEOUT,
	    cfg->idle_timeout_s, MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->per_ip_limit,
	    MHD_OPTION_CONNECTION_LIMIT, cfg->connection_limit ? cfg->connection_limit : 1024u,
	    MHD_OPTION_THREAD_STACK_SIZE,
	    cfg->thread_stack_size ? cfg->thread_stack_size : (size_t)256 * 1024,
	    MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
	    NULL, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	    cfg->connection_memory ? cfg->connection_memory : (size_t)128 * 1024,
	    MHD_OPTION_UNESCAPE_CALLBACK, cfg->raw_urls ? unescape_none : unescape_but_nul, NULL,
	    MHD_OPTION_END);
	if (!s->daemon)
		return -EADDRINUSE;
	const union MHD_DaemonInfo *info =
	    MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
	s->port = info ? info->port : cfg->port;
	*out = TAKE_PTR(s);
	return 0;
}

uint16_t http_server_port(const struct http_server *s)
{
	return s->port;
}

struct http_server *http_server_stop(struct http_server *s)
{
	if (!s)
		return NULL;
	if (s->daemon)
		MHD_stop_daemon(s->daemon);
	free(s);
	return NULL;
}

const char *http_header(struct http_req *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *http_query(struct http_req *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

void http_add_cors(struct MHD_Response *resp)
{
	MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
	MHD_add_response_header(resp, "Access-Control-Allow-Methods",
				"GET, POST, PUT, PATCH, DELETE, OPTIONS");
	MHD_add_response_header(resp, "Access-Control-Allow-Headers", "*");
	MHD_add_response_header(resp, "Access-Control-Expose-Headers",
				"Connect-Protocol-Version, Connect-Timeout-Ms, Grpc-Status, "
				"Grpc-Message, Grpc-Status-Details-Bin, Location");
}

int http_queue(struct http_req *req, unsigned status, struct MHD_Response *resp)
{
	if (!resp)
		return -ENOMEM;
	if (req->cors)
		http_add_cors(resp);
	if (req->responded) {
		MHD_destroy_response(resp); /* only the first response counts */
		return -EALREADY;
	}
	if (!req->in_final) {
		req->pending = resp;
		req->responded = true;
		req->status = status;
		return 0;
	}
	enum MHD_Result ok = MHD_queue_response(req->conn, status, resp);
	MHD_destroy_response(resp);
	if (ok != MHD_YES)
		return -EIO;
	req->responded = true;
	req->status = status;
	return 0;
}

int http_respond_buffer(struct http_req *req, unsigned status, const char *content_type,
			const void *data, size_t len)
{
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return -ENOMEM;
	if (content_type)
		MHD_add_response_header(resp, "Content-Type", content_type);
	return http_queue(req, status, resp);
}

int http_respond_empty(struct http_req *req, unsigned status)
{
	return http_respond_buffer(req, status, NULL, "", 0);
}

int http_respond_json(struct http_req *req, unsigned status, json_t *j)
{
	if (!j)
		return http_respond_error(req, 500, "out of memory");
	char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(j);
	if (!s)
		return http_respond_error(req, 500, "out of memory");
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(s);
		return -ENOMEM;
	}
	MHD_add_response_header(resp, "Content-Type", "application/json");
	return http_queue(req, status, resp);
}

int http_respond_error(struct http_req *req, unsigned status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_t *j =
	    json_pack("{s:i, s:o}", "code", (int)status, "message", jsonx_string_lossy(msg));
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (s) {
		struct MHD_Response *resp =
		    MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
		if (resp) {
			MHD_add_response_header(resp, "Content-Type",
						"application/json; charset=utf-8");
			http_queue(req, status, resp);
		} else {
			free(s);
		}
	}
	return -EPROTO;
}
