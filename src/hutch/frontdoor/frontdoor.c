/*
 * The relay. libmicrohttpd gives each client connection its own thread; each request on it gets
 * a libcurl multi handle driven from that thread: body chunks from the client are fed to curl
 * as they arrive (curl's read callback pauses when it runs dry), and the response is pulled
 * from curl inside MHD's content reader, so both directions stream with bounded buffers.
 */
#include <ctype.h>
#include <curl/curl.h>
#include <nettle/memops.h>
#include <stddef.h>
#include <strings.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include "common/log.h"
#include "common/strbuf.h"
#include "common/util.h"
#include "frontdoor/frontdoor.h"
#include "http/http.h"
#include "net/netcurl.h"
#include "net/netpool.h"

#define RELAY_HIGH_WATER (1u << 20)
#define POLL_SLICE_MS	 500

struct frontdoor {
	struct hutch_server *srv;
	struct http_server *http;
};

struct hdr {
	char *name, *value;
};

struct relay {
	struct hutch_server *srv;
	struct sandbox *sb;
	struct route_target target;
	struct sandbox_link link;
	CURLM *multi;
	CURL *easy;
	struct curl_slist *req_headers;
	char *url;
	struct netcurl_socket sock; /* .err: the port is closed, or -ESHUTDOWN: being killed */
	int client_fd;		    /* to notice the client leaving while we wait on the sandbox */
	bool watch_client;
	bool cut; /* the sandbox is being killed */
	bool has_body;
	/* client → sandbox */
	struct strbuf in;
	size_t in_off;
	bool in_done;
	bool read_paused;
	/* sandbox → client */
	long status;
	struct hdr *hdrs;
	size_t nhdrs;
	bool headers_done;
	int64_t content_length; /* -1 unknown */
	struct strbuf out;
	size_t out_off;
	bool write_paused;
	bool done;
	CURLcode result;
};

static int respond_gone(struct http_req *req, const char *id)
{
	json_t *j = json_pack("{s:s, s:s, s:i}", "sandboxId", id ? id : "", "message",
			      "The sandbox was not found", "code", 502);
	return http_respond_json(req, 502, j);
}

static int respond_port_closed(struct http_req *req, const struct route_target *t)
{
	json_t *j = json_pack("{s:s, s:s, s:i, s:i}", "sandboxId", t->sandbox_id, "message",
			      "The sandbox is running but port is not open", "port", (int)t->port,
			      "code", 502);
	return http_respond_json(req, 502, j);
}

/* ---- upstream connections ----
 * Each client connection has its own thread; it keeps one curl multi handle (and so its
 * keep-alive connections to envd) for the sandbox and port it talked to last. A request for
 * another sandbox or port starts over, so a connection never serves two sandboxes. */

struct upstream {
	struct route_target target;
	CURLM *multi;
};

static pthread_key_t upstream_key;
static pthread_once_t upstream_once = PTHREAD_ONCE_INIT;

static void upstream_free(void *p)
{
	struct upstream *u = p;
	if (u) {
		curl_multi_cleanup(u->multi);
		free(u);
	}
}

static void upstream_key_init(void)
{
	pthread_key_create(&upstream_key, upstream_free);
}

static void upstream_drop(void)
{
	pthread_once(&upstream_once, upstream_key_init);
	upstream_free(pthread_getspecific(upstream_key));
	pthread_setspecific(upstream_key, NULL);
}

static CURLM *upstream_multi(const struct route_target *t)
{
	pthread_once(&upstream_once, upstream_key_init);
	struct upstream *u = pthread_getspecific(upstream_key);
	if (u && (u->target.port != t->port || !streq(u->target.sandbox_id, t->sandbox_id))) {
		upstream_drop();
		u = NULL;
	}
	if (!u) {
		u = calloc(1, sizeof(*u));
		if (!u)
			return NULL;
		u->target = *t;
		u->multi = curl_multi_init();
		if (!u->multi) {
			free(u);
			return NULL;
		}
		pthread_setspecific(upstream_key, u);
	}
	return u->multi;
}

/* ---- curl callbacks ---- */

static size_t read_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
	struct relay *r = userdata;
	size_t max = size * nitems;
	size_t avail = r->in.len - r->in_off;
	if (avail == 0) {
		if (r->in_done)
			return 0;
		r->read_paused = true;
		return CURL_READFUNC_PAUSE;
	}
	size_t n = MIN(max, avail);
	memcpy(buf, r->in.data + r->in_off, n);
	r->in_off += n;
	if (r->in_off == r->in.len) {
		strbuf_reset(&r->in);
		r->in_off = 0;
	}
	return n;
}

static size_t header_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
	struct relay *r = userdata;
	size_t n = size * nitems;
	if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
		/* A new status line (after a 100 Continue, say): start over. */
		for (size_t i = 0; i < r->nhdrs; i++) {
			free(r->hdrs[i].name);
			free(r->hdrs[i].value);
		}
		r->nhdrs = 0;
		r->content_length = -1;
		return n;
	}
	if (n <= 2) { /* the blank line */
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
		if (r->status >= 200)
			r->headers_done = true;
		return n;
	}
	const char *colon = memchr(buf, ':', n);
	if (!colon || r->nhdrs >= 256)
		return n;
	size_t nl = (size_t)(colon - buf);
	const char *v = colon + 1;
	size_t vl = n - nl - 1;
	while (vl > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		vl--;
	}
	while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
		vl--;
	char *name = strndup(buf, nl), *value = strndup(v, vl);
	struct hdr *h = realloc(r->hdrs, (r->nhdrs + 1) * sizeof(*h));
	if (!name || !value || !h) {
		free(name);
		free(value);
		if (h)
			r->hdrs = h;
		return 0; /* abort the transfer */
	}
	r->hdrs = h;
	if (strcasecmp(name, "content-length") == 0) {
		uint64_t len;
		if (parse_u64(value, &len) == 0)
			r->content_length = (int64_t)len;
	}
	r->hdrs[r->nhdrs++] = (struct hdr){ name, value };
	return n;
}

static size_t write_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
	struct relay *r = userdata;
	size_t n = size * nitems;
	if (r->out.len - r->out_off > RELAY_HIGH_WATER) {
		r->write_paused = true;
		return CURL_WRITEFUNC_PAUSE;
	}
	if (strbuf_append(&r->out, buf, n) < 0)
		return 0;
	return n;
}

static int relay_connect(void *userdata)
{
	struct relay *r = userdata;
	return sandbox_connect(r->sb, r->target.port);
}

/* Called by orchestr (another thread) when the sandbox is killed. */
static void relay_cut(struct sandbox_link *l)
{
	struct relay *r = (struct relay *)((char *)l - offsetof(struct relay, link));
	__atomic_store_n(&r->cut, true, __ATOMIC_SEQ_CST);
	/* The relay's own thread notices, ends the response and drops the connection. */
	if (r->multi)
		curl_multi_wakeup(r->multi);
}

/* Set when the front door stops: every relay ends at its next wakeup. */
static bool relays_stopping;

static bool is_cut(struct relay *r)
{
	return __atomic_load_n(&r->cut, __ATOMIC_SEQ_CST) ||
	       __atomic_load_n(&relays_stopping, __ATOMIC_SEQ_CST);
}

/* Runs curl once and reaps a finished transfer. */
static void pump(struct relay *r, int timeout_ms)
{
	int running = 0;
	curl_multi_perform(r->multi, &running);
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(r->multi, &left)))
		if (m->msg == CURLMSG_DONE) {
			r->done = true;
			r->result = m->data.result;
		}
	if (r->done || timeout_ms == 0)
		return;
	struct curl_waitfd extra = { .fd = r->client_fd, .events = CURL_WAIT_POLLIN };
	int nfds = 0;
	curl_multi_poll(r->multi, r->watch_client ? &extra : NULL, r->watch_client ? 1 : 0,
			timeout_ms, &nfds);
	if (r->watch_client && (extra.revents & CURL_WAIT_POLLIN)) {
		char c;
		ssize_t k = recv(r->client_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
		if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
			__atomic_store_n(&r->cut, true, __ATOMIC_SEQ_CST); /* the client left */
		else
			r->watch_client = false; /* a pipelined request: stop watching */
	}
}

/* ---- the MHD side ---- */

static ssize_t relay_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct relay *r = cls;
	(void)pos;
	for (;;) {
		if (is_cut(r))
			return MHD_CONTENT_READER_END_WITH_ERROR;
		size_t avail = r->out.len - r->out_off;
		if (avail > 0) {
			size_t n = MIN(max, avail);
			memcpy(buf, r->out.data + r->out_off, n);
			r->out_off += n;
			if (r->out_off == r->out.len) {
				strbuf_reset(&r->out);
				r->out_off = 0;
			}
			if (r->write_paused && r->out.len - r->out_off < RELAY_HIGH_WATER / 2) {
				r->write_paused = false;
				curl_easy_pause(r->easy, CURLPAUSE_CONT);
			}
			return (ssize_t)n;
		}
		if (r->done)
			return r->result == CURLE_OK ? MHD_CONTENT_READER_END_OF_STREAM
						     : MHD_CONTENT_READER_END_WITH_ERROR;
		if (r->write_paused) {
			r->write_paused = false;
			curl_easy_pause(r->easy, CURLPAUSE_CONT);
		}
		pump(r, POLL_SLICE_MS);
	}
}

static void relay_free(struct relay *r)
{
	if (!r)
		return;
	if (r->sb) {
		sandbox_link_remove(r->sb, &r->link);
		sandbox_unref(r->sb);
	}
	if (r->easy) {
		if (r->multi)
			curl_multi_remove_handle(r->multi, r->easy);
		curl_easy_cleanup(r->easy);
	}
	/* A connection left mid-response (cut, client gone, error) cannot carry another request. */
	if (is_cut(r) || !r->done || r->result != CURLE_OK)
		upstream_drop();
	curl_slist_free_all(r->req_headers);
	for (size_t i = 0; i < r->nhdrs; i++) {
		free(r->hdrs[i].name);
		free(r->hdrs[i].value);
	}
	free(r->hdrs);
	free(r->url);
	strbuf_free(&r->in);
	strbuf_free(&r->out);
	free(r);
}

/* The response is handed to MHD, which frees the relay when it is done with it. */
static void relay_response_free(void *cls)
{
	relay_free(cls);
}

struct fd_state {
	struct relay *relay; /* owned until the response takes it */
};

static enum MHD_Result add_header(void *cls, enum MHD_ValueKind kind, const char *key,
				  const char *value)
{
	struct relay *r = cls;
	(void)kind;
	if (!key || route_hop_by_hop(key))
		return MHD_YES;
	char *line = NULL;
	if (asprintf(&line, "%s: %s", key, value ? value : "") < 0)
		return MHD_NO;
	struct curl_slist *l = curl_slist_append(r->req_headers, line);
	free(line);
	if (!l)
		return MHD_NO;
	r->req_headers = l;
	return MHD_YES;
}

static enum MHD_Result add_query(void *cls, enum MHD_ValueKind kind, const char *key,
				 const char *value)
{
	struct strbuf *sb = cls;
	(void)kind;
	strbuf_appends(sb, strchr(sb->data, '?') ? "&" : "?");
	strbuf_appends(sb, key);
	if (value) {
		strbuf_appends(sb, "=");
		strbuf_appends(sb, value);
	}
	return MHD_YES;
}

/* A copy of a query value with its escapes decoded (the front door keeps URLs raw). */
static char *query_value(struct http_req *req, const char *name)
{
	const char *v = http_query(req, name);
	if (!v)
		return NULL;
	char *s = strdup(v);
	if (!s)
		return NULL;
	char *o = s;
	for (char *p = s; *p; p++) {
		if (*p == '+') {
			*o++ = ' ';
		} else if (*p == '%' && isxdigit((unsigned char)p[1]) &&
			   isxdigit((unsigned char)p[2])) {
			char hex[3] = { p[1], p[2], 0 };
			*o++ = (char)strtol(hex, NULL, 16);
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = 0;
	return s;
}

/* Signed /files URLs made with E2B_SANDBOX_URL carry no sandbox id: find the sandbox whose
 * token made the signature. */
static struct sandbox *find_signed(struct hutch_server *srv, struct http_req *req)
{
	if (!streq(req->path, "/files"))
		return NULL;
	_cleanup_free_ char *sig = query_value(req, "signature");
	if (!sig)
		return NULL;
	_cleanup_free_ char *path = query_value(req, "path");
	_cleanup_free_ char *user = query_value(req, "username");
	_cleanup_free_ char *exp = query_value(req, "signature_expiration");
	const char *op = streq(req->method, "POST") ? "write" : "read";
	return orchestr_find_by_signature(srv->orchestr, path ? path : "", op, user ? user : "",
					  exp, sig);
}

static int relay_setup(struct http_req *req, struct relay *r)
{
	_cleanup_strbuf_ struct strbuf url = { 0 };
	/* Only origin-form targets ("/..."): "@host:1/x" would turn the path into userinfo and
	 * a host for curl; a fragment or white space has no place in a request target. */
	if (req->path[0] != '/' || strpbrk(req->path, "# \t\r\n"))
		return -EINVAL;
	strbuf_printf(&url, "http://127.0.0.1:%u%s", (unsigned)r->target.port, req->path);
	MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, add_query, &url);
	r->url = strbuf_steal(&url);
	log_debug("relay %s %s → sandbox %s", req->method, r->url ? r->url : "",
		  r->target.sandbox_id);
	r->multi = upstream_multi(&r->target);
	r->easy = curl_easy_init();
	if (!r->url || !r->multi || !r->easy)
		return -ENOMEM;
	MHD_get_connection_values(req->conn, MHD_HEADER_KIND, add_header, r);
	r->req_headers = curl_slist_append(r->req_headers, "Expect:");
	const char *cl = http_header(req, "Content-Length");
	const char *te = http_header(req, "Transfer-Encoding");
	uint64_t len = 0;
	bool known_len = cl && parse_u64(cl, &len) == 0;
	r->has_body = (known_len && len > 0) || (te && strcasestr(te, "chunked"));

	CURL *e = r->easy;
	curl_easy_setopt(e, CURLOPT_URL, r->url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->req_headers);
	r->sock = (struct netcurl_socket){ .connect = relay_connect, .userdata = r };
	netcurl_use_socket(e, &r->sock);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(e, CURLOPT_PROXY, ""); /* never a proxy from the environment */
	curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024);
	curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 256L * 1024);
	if (streq(req->method, "HEAD")) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else if (r->has_body) {
		curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(e, CURLOPT_READFUNCTION, read_cb);
		curl_easy_setopt(e, CURLOPT_READDATA, r);
		curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE,
				 known_len ? (curl_off_t)len : (curl_off_t)-1);
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
	} else if (streq(req->method, "POST") || streq(req->method, "PUT") ||
		   streq(req->method, "PATCH")) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
	} else if (!streq(req->method, "GET")) {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
	}
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	r->client_fd = ci ? ci->connect_fd : -1;
	r->watch_client = r->client_fd >= 0;
	if (curl_multi_add_handle(r->multi, e) != CURLM_OK)
		return -ENOMEM;
	return 0;
}

static int fd_begin(struct http_req *req)
{
	struct hutch_server *srv = req->userdata;
	struct fd_state *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	req->state = st;
	struct route_target t;
	int rr = route_parse(http_header(req, "Host"), http_header(req, "E2b-Sandbox-Id"),
			     http_header(req, "E2b-Sandbox-Port"), &t);
	struct sandbox *sb = NULL;
	if (rr == -EINVAL)
		return http_respond_error(req, 400, "invalid sandbox routing headers");
	if (rr == -ENOENT) {
		sb = find_signed(srv, req);
		if (!sb)
			return http_respond_error(
			    req, 400,
			    "missing sandbox id: send E2b-Sandbox-Id or use a "
			    "host <port>-<sandboxId>.<domain>");
		snprintf(t.sandbox_id, sizeof(t.sandbox_id), "%s", sandbox_id(sb));
		t.port = ENVD_PORT;
	} else {
		sb = orchestr_get(srv->orchestr, t.sandbox_id);
		if (!sb)
			return respond_gone(req, t.sandbox_id);
	}
	const char *need = t.port != ENVD_PORT ? sandbox_traffic_token(sb) : NULL;
	if (need) {
		const char *got = http_header(req, "E2B-Traffic-Access-Token");
		bool ok = got && strlen(got) == strlen(need) && memeql_sec(got, need, strlen(need));
		if (!ok) {
			sandbox_unref(sb);
			return http_respond_json(
			    req, 403,
			    json_pack("{s:s, s:s, s:i}", "sandboxId", t.sandbox_id, "message",
				      "This sandbox's traffic is private: send its traffic access "
				      "token in E2B-Traffic-Access-Token",
				      "code", 403));
		}
	}
	struct relay *r = calloc(1, sizeof(*r));
	if (!r) {
		sandbox_unref(sb);
		return -ENOMEM;
	}
	r->content_length = -1;
	r->srv = srv;
	r->sb = sb;
	r->target = t;
	r->link.cut = relay_cut;
	st->relay = r;
	if (sandbox_link_add(sb, &r->link) < 0) {
		sandbox_unref(sb);
		r->sb = NULL;
		return respond_gone(req, t.sandbox_id);
	}
	int rs = relay_setup(req, r);
	if (rs == -EINVAL)
		return http_respond_error(req, 400, "invalid request target");
	if (rs < 0)
		return http_respond_error(req, 500, "cannot set up the relay");
	return 0;
}

/* Feeds a body chunk to curl and waits until it has taken it (backpressure to the client). */
static int fd_data(struct http_req *req, const char *buf, size_t len)
{
	struct fd_state *st = req->state;
	struct relay *r = st->relay;
	if (!r || r->done || r->headers_done)
		return 0; /* the sandbox answered already: the rest of the body is dropped */
	if (strbuf_append(&r->in, buf, len) < 0)
		return http_respond_error(req, 500, "out of memory");
	while (r->in.len > r->in_off && !r->done && !r->headers_done && !is_cut(r)) {
		if (r->read_paused) {
			r->read_paused = false;
			curl_easy_pause(r->easy, CURLPAUSE_CONT);
		}
		pump(r, POLL_SLICE_MS);
	}
	if (is_cut(r))
		return respond_gone(req, r->target.sandbox_id);
	return 0;
}

static int fd_finish(struct http_req *req)
{
	struct fd_state *st = req->state;
	struct relay *r = st->relay;
	r->in_done = true;
	while (!r->headers_done && !r->done && !is_cut(r)) {
		if (r->read_paused) {
			r->read_paused = false;
			curl_easy_pause(r->easy, CURLPAUSE_CONT);
		}
		pump(r, POLL_SLICE_MS);
	}
	if (is_cut(r))
		return respond_gone(req, r->target.sandbox_id);
	if (!r->headers_done) {
		if (r->sock.err < 0 && r->sock.err != -ESHUTDOWN)
			return respond_port_closed(req, &r->target);
		return respond_gone(req, r->target.sandbox_id);
	}
	struct MHD_Response *resp;
	bool no_body =
	    streq(req->method, "HEAD") || r->status == 204 || r->status == 304 || r->status < 200;
	if (no_body)
		resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
	else
		resp = MHD_create_response_from_callback(
		    r->content_length >= 0 ? (uint64_t)r->content_length : MHD_SIZE_UNKNOWN,
		    64 * 1024, relay_read, r, relay_response_free);
	if (!resp)
		return -ENOMEM;
	for (size_t i = 0; i < r->nhdrs; i++)
		if (!route_hop_by_hop(r->hdrs[i].name) && strcasecmp(r->hdrs[i].name, "date") != 0)
			MHD_add_response_header(resp, r->hdrs[i].name, r->hdrs[i].value);
	if (!no_body)
		st->relay = NULL; /* the response owns it now */
	return http_queue(req, (unsigned)r->status, resp);
}

static void fd_cleanup(struct http_req *req)
{
	struct fd_state *st = req->state;
	if (!st)
		return;
	relay_free(st->relay);
	free(st);
}

static const struct http_route relay_route = {
	.begin = fd_begin,
	.data = fd_data,
	.finish = fd_finish,
	.cleanup = fd_cleanup,
};

static const struct http_route *fd_router(struct http_req *req)
{
	return &relay_route;
}

int frontdoor_start(struct hutch_server *srv, struct frontdoor **out)
{
	struct frontdoor *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->srv = srv;
	struct http_server_config hc = {
		.address = srv->cfg->sandbox_addr,
		.port = srv->cfg->sandbox_port,
		.router = fd_router,
		.userdata = srv,
		.raw_urls = true,
		.connection_limit = 4096,
		.per_ip_limit = srv->cfg->conns_per_ip,
		.idle_timeout_s = srv->cfg->sandbox_idle_timeout_s,
	};
	int r = http_server_start(&hc, &f->http);
	if (r < 0) {
		free(f);
		return r;
	}
	*out = f;
	return 0;
}

struct frontdoor *frontdoor_stop(struct frontdoor *f)
{
	if (!f)
		return NULL;
	__atomic_store_n(&relays_stopping, true, __ATOMIC_SEQ_CST);
	f->http = http_server_stop(f->http);
	free(f);
	return NULL;
}
