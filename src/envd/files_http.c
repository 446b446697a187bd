/*
 * GET/HEAD/POST /files: envd's plain-HTTP download and upload. Downloads stream from the file
 * (sendfile for identity, incremental deflate for gzip); uploads stream into the target files
 * through multipart.c. File access happens under the request user's fsuid/fsgid.
 */
#include <ctype.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sys/stat.h>
#include <time.h>
#include <zlib.h>
#include "envd.h"
#include "common/log.h"
#include "common/util.h"

#define GZIP_BLOCK (64 * 1024)

static const char token_mismatch[] = "access token present in header but does not match";

static void token_freep(char **t)
{
	secret_free(*t);
}

/* envd's validateSigning: the X-Access-Token header, else a v1 signature of the raw query. */
static int files_auth(struct http_req *req, const char *op)
{
	_cleanup_(token_freep) char *token = NULL;
	pthread_rwlock_rdlock(&envd.lock);
	if (envd.access_token)
		token = strdup(envd.access_token);
	bool set = envd.access_token;
	pthread_rwlock_unlock(&envd.lock);
	if (!set)
		return 0;
	if (!token)
		return http_respond_error(req, 500, "out of memory");

	const char *hdr = http_header(req, "X-Access-Token");
	if (!isempty(hdr)) {
		if (!secret_equal(hdr, token))
			return http_respond_error(req, 401, "%s", token_mismatch);
		return 0;
	}
	const char *sig = http_query(req, "signature");
	if (!sig)
		return http_respond_error(req, 401, "missing signature query parameter");
	const char *exp_s = http_query(req, "signature_expiration");
	char exp_buf[32];
	long long exp = 0;
	if (exp_s) {
		char *end;
		errno = 0;
		exp = strtoll(exp_s, &end, 10);
		if (isempty(exp_s) || *end || errno)
			return http_respond_error(
			    req, 400, "Invalid format for parameter signature_expiration");
		snprintf(exp_buf, sizeof(exp_buf), "%lld", exp);
	}
	_cleanup_free_ char *want =
	    signature_compute(http_query(req, "path"), op, http_query(req, "username"), token,
			      exp_s ? exp_buf : NULL);
	if (!want)
		return http_respond_error(req, 500, "out of memory");
	if (!secret_equal(sig, want))
		return http_respond_error(req, 401, "invalid signature");
	if (exp_s && exp < (long long)time(NULL))
		return http_respond_error(req, 401, "signature is already expired");
	return 0;
}

/* The request's user, and its path expanded (relative → home, "" → default workdir). */
static int files_user_path(struct http_req *req, struct user_info *u, char **abs)
{
	const char *name = http_query(req, "username");
	int r = user_resolve(name, u);
	if (r < 0) {
		char shown[64] = "";
		pthread_rwlock_rdlock(&envd.lock);
		snprintf(shown, sizeof(shown), "%s",
			 !isempty(name)	     ? name
			 : envd.default_user ? envd.default_user
					     : "");
		pthread_rwlock_unlock(&envd.lock);
		if (r == -EPERM)
			return http_respond_error(
			    req, 401,
			    "error looking up user '%s': envd is not root and "
			    "cannot act as another user",
			    shown);
		return http_respond_error(
		    req, 401, "error looking up user '%s': user: unknown user %s", shown, shown);
	}
	if (!abs)
		return 0;
	const char *path = http_query(req, "path");
	_cleanup_free_ char *workdir = NULL;
	pthread_rwlock_rdlock(&envd.lock);
	if (envd.default_workdir)
		workdir = strdup(envd.default_workdir);
	pthread_rwlock_unlock(&envd.lock);
	r = path_expand(path, u, workdir, abs);
	if (r < 0)
		return http_respond_error(req, 400, "error expanding and resolving path '%s': %s",
					  path ? path : "", strerror(-r));
	return 0;
}

/* ---- GET ---- */

static bool token_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && !strchr("()<>@,;:\\\"/[]?=", c);
}

/* Go's mime.FormatMediaType("inline", {"filename": name}): a token as is, other printable
 * ASCII quoted, anything else as RFC 2231 UTF-8 percent-encoding. */
static void disposition_format(const char *name, char *buf, size_t size)
{
	bool token = *name != 0, ascii = true;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		token = token && token_char(*p);
		ascii = ascii && *p >= 0x20 && *p < 0x7f;
	}
	size_t o = 0;
	if (token) {
		snprintf(buf, size, "inline; filename=%s", name);
		return;
	}
	o = (size_t)snprintf(buf, size,
			     ascii ? "inline; filename=\"" : "inline; filename*=utf-8''");
	for (const unsigned char *p = (const unsigned char *)name; *p && o + 5 < size; p++) {
		if (ascii) {
			if (*p == '"' || *p == '\\')
				buf[o++] = '\\';
			buf[o++] = (char)*p;
		} else if (token_char(*p) && !strchr("*'%", *p)) {
			buf[o++] = (char)*p;
		} else {
			o += (size_t)snprintf(buf + o, size - o, "%%%02X", *p);
		}
	}
	if (ascii && o + 1 < size)
		buf[o++] = '"';
	buf[o < size ? o : size - 1] = 0;
}

/* Downloads compress at zlib's fastest level; after the first GZIP_PROBE bytes, data that
 * shrinks by less than a tenth (already compressed, random) is sent in stored blocks, which
 * cost a CRC and a copy instead of ~30 MB/s of deflate on a small core. */
#define GZIP_PROBE (1u << 20)

struct gz_out {
	int fd;
	bool eof, done, probed;
	z_stream z;
	unsigned char in[GZIP_BLOCK];
};

static ssize_t gz_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct gz_out *g = cls;
	(void)pos;
	if (g->done)
		return MHD_CONTENT_READER_END_OF_STREAM;
	g->z.next_out = (unsigned char *)buf;
	g->z.avail_out = (uInt)MIN(max, (size_t)UINT_MAX);
	while (g->z.avail_out > 0 && !g->done) {
		if (g->z.avail_in == 0 && !g->probed && g->z.total_in >= GZIP_PROBE) {
			if (g->z.total_out * 10 < g->z.total_in * 9)
				g->probed = true;
			else if (deflateParams(&g->z, Z_NO_COMPRESSION, Z_DEFAULT_STRATEGY) == Z_OK)
				g->probed = true;
		}
		if (g->z.avail_in == 0 && !g->eof) {
			ssize_t n = read(g->fd, g->in, sizeof(g->in));
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return MHD_CONTENT_READER_END_WITH_ERROR;
			g->eof = n == 0;
			g->z.next_in = g->in;
			g->z.avail_in = (uInt)n;
		}
		int r = deflate(&g->z, g->eof ? Z_FINISH : Z_NO_FLUSH);
		if (r == Z_STREAM_END)
			g->done = true;
		else if (r != Z_OK && r != Z_BUF_ERROR)
			return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	size_t got = MIN(max, (size_t)UINT_MAX) - g->z.avail_out;
	return got > 0 ? (ssize_t)got : MHD_CONTENT_READER_END_OF_STREAM;
}

static void gz_free(void *cls)
{
	struct gz_out *g = cls;
	deflateEnd(&g->z);
	close(g->fd);
	free(g);
}

static struct MHD_Response *gzip_response(int fd)
{
	struct gz_out *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	/* windowBits 16+15: a gzip wrapper. memLevel 8 keeps deflate's state near 256 KiB. */
	if (deflateInit2(&g->z, Z_BEST_SPEED, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) !=
	    Z_OK) {
		free(g);
		return NULL;
	}
	g->fd = fd;
	struct MHD_Response *resp =
	    MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, GZIP_BLOCK, gz_read, g, gz_free);
	if (!resp) {
		deflateEnd(&g->z);
		free(g);
	}
	return resp;
}

/* A single "bytes=a-b" / "bytes=a-" / "bytes=-n" range. 0: none or ignored (serve it all),
 * 1: *off and *len set, -ERANGE: unsatisfiable. */
static int range_parse(const char *h, uint64_t size, uint64_t *off, uint64_t *len)
{
	if (!h || !startswith(h, "bytes=") || strchr(h, ','))
		return 0;
	const char *p = h + 6, *dash = strchr(p, '-');
	char *end;
	if (!dash)
		return 0;
	if (p == dash) {
		unsigned long long n = strtoull(dash + 1, &end, 10);
		if (end == dash + 1 || *end)
			return 0;
		if (n == 0)
			return -ERANGE;
		*off = n >= size ? 0 : size - n;
		*len = size - *off;
		return size > 0 ? 1 : -ERANGE;
	}
	unsigned long long a = strtoull(p, &end, 10);
	if (end != dash || !isdigit((unsigned char)*p))
		return 0;
	unsigned long long b = size ? size - 1 : 0;
	if (dash[1]) {
		b = strtoull(dash + 1, &end, 10);
		if (*end || !isdigit((unsigned char)dash[1]) || b < a)
			return 0;
		b = MIN(b, (unsigned long long)size - 1);
	}
	if (a >= size)
		return -ERANGE;
	*off = a;
	*len = b - a + 1;
	return 1;
}

static void add_file_headers(struct MHD_Response *resp, const char *abs, const struct stat *st)
{
	char disp[1024], date[64];
	const char *base = strrchr(abs, '/');
	disposition_format(base ? base + 1 : abs, disp, sizeof(disp));
	MHD_add_response_header(resp, "Content-Disposition", disp);
	MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
	MHD_add_response_header(resp, "Vary", "Accept-Encoding");
	struct tm tm;
	gmtime_r(&st->st_mtime, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	MHD_add_response_header(resp, "Last-Modified", date);
}

/* 304 when If-Modified-Since is at or after the file's mtime (second resolution). */
static bool not_modified(struct http_req *req, const struct stat *st)
{
	const char *h = http_header(req, "If-Modified-Since");
	struct tm tm = { 0 };
	if (!h || http_header(req, "If-None-Match"))
		return false;
	const char *end = strptime(h, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	return end && !*end && st->st_mtime <= timegm(&tm);
}

static int download_open(struct http_req *req, const char *abs, int *ret_fd, struct stat *st)
{
	if (stat(abs, st) < 0) {
		int r = -errno;
		if (r == -ENOENT)
			return http_respond_error(req, 404, "path '%s' does not exist", abs);
		return http_respond_error(req, files_errno_status(r),
					  "error checking if path exists '%s': %s", abs,
					  strerror(-r));
	}
	if (S_ISDIR(st->st_mode))
		return http_respond_error(req, 400, "path '%s' is a directory", abs);
	/* O_NONBLOCK: a FIFO swapped in after stat() must not hang the request. */
	_cleanup_close_ int fd = open(abs, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, st) < 0) {
		int r = -errno;
		return http_respond_error(req, files_errno_status(r), "error opening file '%s': %s",
					  abs, strerror(-r));
	}
	if (!S_ISREG(st->st_mode))
		return http_respond_error(req, 400, "path '%s' is not a regular file", abs);
	if (fcntl(fd, F_SETFL, 0) < 0)
		return http_respond_error(req, 500, "error opening file '%s': %s", abs,
					  strerror(errno));
	*ret_fd = TAKE_FD(fd);
	return 0;
}

static int files_get(struct http_req *req)
{
	struct user_info u;
	_cleanup_free_ char *abs = NULL;
	int r = files_auth(req, "read");
	if (r >= 0)
		r = files_user_path(req, &u, &abs);
	if (r < 0)
		return r;

	const char *ae = http_header(req, "Accept-Encoding");
	bool ranged = http_header(req, "Range") || http_header(req, "If-Modified-Since") ||
		      http_header(req, "If-None-Match") || http_header(req, "If-Range");
	_cleanup_close_ int fd = -1;
	struct stat st;
	fsid_enter(&u);
	r = download_open(req, abs, &fd, &st);
	fsid_leave();
	if (r < 0)
		return r;

	enum files_encoding enc = files_accept_encoding(ae);
	if (enc == FILES_ENCODING_UNACCEPTABLE)
		return http_respond_error(req, 406,
					  "error parsing Accept-Encoding: no acceptable encoding "
					  "found, supported: [gzip]");
	if (ranged) {
		if (!files_identity_acceptable(ae))
			return http_respond_error(req, 406,
						  "identity encoding not acceptable for Range or "
						  "conditional request");
		enc = FILES_ENCODING_IDENTITY;
	}

	struct MHD_Response *resp;
	unsigned status = 200;
	if (enc == FILES_ENCODING_GZIP) {
		resp = gzip_response(fd);
		if (!resp)
			return http_respond_error(req, 500, "out of memory");
		TAKE_FD(fd);
		add_file_headers(resp, abs, &st);
		MHD_add_response_header(resp, "Content-Encoding", "gzip");
		return http_queue(req, status, resp);
	}
	if (not_modified(req, &st)) {
		resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
		if (resp)
			add_file_headers(resp, abs, &st);
		return http_queue(req, 304, resp);
	}

	uint64_t size = (uint64_t)st.st_size, off = 0, len = size;
	r = http_header(req, "If-Range") ? 0
					 : range_parse(http_header(req, "Range"), size, &off, &len);
	if (r == -ERANGE) {
		char cr[64];
		snprintf(cr, sizeof(cr), "bytes */%" PRIu64, size);
		resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
		if (resp)
			MHD_add_response_header(resp, "Content-Range", cr);
		return http_queue(req, 416, resp);
	}
	resp = MHD_create_response_from_fd_at_offset64(len, fd, off);
	if (!resp)
		return http_respond_error(req, 500, "out of memory");
	TAKE_FD(fd);
	add_file_headers(resp, abs, &st);
	MHD_add_response_header(resp, "Accept-Ranges", "bytes");
	if (r == 1) {
		char cr[96];
		snprintf(cr, sizeof(cr), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, off,
			 off + len - 1, size);
		MHD_add_response_header(resp, "Content-Range", cr);
		status = 206;
	}
	return http_queue(req, status, resp);
}

/* ---- POST ---- */

struct files_upload {
	struct user_info user;
	struct upload *up;
	struct MHD_PostProcessor *pp;
	int rootfd;
	bool failed;  /* the error is in the upload; the rest of the body is drained */
	bool closing; /* cleanup: the post processor must not write any more */
};

static enum MHD_Result post_iter(void *cls, enum MHD_ValueKind kind, const char *key,
				 const char *filename, const char *content_type,
				 const char *transfer_encoding, const char *data, uint64_t off,
				 size_t size)
{
	struct files_upload *st = cls;
	(void)kind, (void)content_type, (void)transfer_encoding;
	if (st->closing)
		return MHD_NO;
	return upload_part(st->up, key, filename, data, off, size) < 0 ? MHD_NO : MHD_YES;
}

static int pp_consume(void *ctx, const char *buf, size_t len)
{
	struct files_upload *st = ctx;
	return MHD_post_process(st->pp, buf, len) == MHD_YES ? 0 : -EINVAL;
}

struct metadata_ctx {
	json_t *meta;
	int r;
};

static enum MHD_Result metadata_iter(void *cls, enum MHD_ValueKind kind, const char *key,
				     const char *value)
{
	struct metadata_ctx *c = cls;
	(void)kind;
	if (key && strncasecmp(key, "X-Metadata-", 11) == 0)
		c->r = upload_metadata_add(c->meta, key + 11, value);
	return c->r < 0 ? MHD_NO : MHD_YES;
}

static int upload_fail(struct http_req *req, struct files_upload *st)
{
	const struct upload_error *e = upload_error(st->up);
	if (!e->status)
		return http_respond_error(req, 500, "upload failed");
	return http_respond_error(req, e->status, "%s", e->message);
}

static int files_post(struct http_req *req)
{
	int r = files_auth(req, "write");
	if (r < 0)
		return r;
	const char *ce = http_header(req, "Content-Encoding");
	bool gzip = false;
	if (!isempty(ce) && strcasecmp(ce, "identity") != 0) {
		if (strcasecmp(ce, "gzip") != 0 && strncasecmp(ce, "gzip;", 5) != 0)
			return http_respond_error(req, 400,
						  "error decompressing request body: unsupported "
						  "Content-Encoding: %s, supported: [gzip]",
						  ce);
		gzip = true;
	}

	_cleanup_free_ struct files_upload *st = calloc(1, sizeof(*st));
	if (!st)
		return http_respond_error(req, 500, "out of memory");
	st->rootfd = -1;
	r = files_user_path(req, &st->user, NULL);
	if (r < 0)
		return r;

	_cleanup_json_ json_t *meta = json_object();
	struct metadata_ctx mc = { .meta = meta, .r = meta ? 0 : -ENOMEM };
	struct upload_error err = { 0 };
	if (meta)
		MHD_get_connection_values(req->conn, MHD_HEADER_KIND, metadata_iter, &mc);
	if (mc.r < 0)
		return http_respond_error(req, 500, "out of memory");
	if (upload_metadata_validate(meta, &err) < 0)
		return http_respond_error(req, err.status, "%s", err.message);

	const char *ct = http_header(req, "Content-Type");
	char media[64] = "";
	if (ct) {
		size_t n = strcspn(ct, ";");
		while (n > 0 && ct[n - 1] == ' ')
			n--;
		snprintf(media, sizeof(media), "%.*s", (int)MIN(n, sizeof(media) - 1), ct);
	}
	bool raw = strcasecmp(media, "application/octet-stream") == 0;
	if (!raw && strncasecmp(media, "multipart/", 10) != 0)
		return http_respond_error(req, 400,
					  "unsupported content type: %s, expected "
					  "multipart/form-data or application/octet-stream",
					  ct ? ct : "");
	const char *qpath = http_query(req, "path");
	if (raw && !qpath)
		return http_respond_error(req, 400,
					  "path query parameter is required for raw body upload");
	_cleanup_free_ char *abs = NULL;
	if (qpath) {
		r = path_expand(qpath, &st->user, NULL, &abs);
		if (r < 0)
			return http_respond_error(req, 400, "error resolving path: %s",
						  strerror(-r));
	}

	st->rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (st->rootfd < 0)
		return http_respond_error(req, 500, "error opening '/': %s", strerror(errno));
	r = upload_new(st->rootfd, &st->user, meta, gzip, raw ? abs : NULL, &st->up);
	if (r < 0) {
		close(st->rootfd);
		return http_respond_error(req, 500, "out of memory");
	}
	if (!raw) {
		st->pp = MHD_create_post_processor(req->conn, 64 * 1024, post_iter, st);
		if (!st->pp) {
			upload_free(st->up);
			close(st->rootfd);
			return http_respond_error(req, 400,
						  "error parsing multipart form: unsupported or "
						  "malformed Content-Type: %s",
						  ct);
		}
		upload_set_multipart(st->up, abs, pp_consume, st);
	}
	req->state = TAKE_PTR(st);
	return 0;
}

static int files_begin(struct http_req *req)
{
	if (streq(req->method, "POST"))
		return files_post(req);
	return files_get(req);
}

static int files_data(struct http_req *req, const char *buf, size_t len)
{
	struct files_upload *st = req->state;
	if (!st)
		return http_respond_error(req, 400, "unexpected request body");
	if (st->failed)
		return 0;
	/* libmicrohttpd cannot queue a response in the middle of a body, so an error is kept
	 * and sent once the body has been read. */
	fsid_enter(&st->user);
	st->failed = upload_feed(st->up, buf, len) < 0;
	fsid_leave();
	return 0;
}

static int files_finish(struct http_req *req)
{
	struct files_upload *st = req->state;
	if (!st)
		return http_respond_error(req, 400, "unexpected request");
	if (st->failed)
		return upload_fail(req, st);
	fsid_enter(&st->user);
	enum MHD_Result pp_ok = MHD_YES;
	if (st->pp) {
		/* Destroying the post processor hands over the data it still holds. */
		pp_ok = MHD_destroy_post_processor(st->pp);
		st->pp = NULL;
	}
	int r = upload_finish(st->up);
	fsid_leave();
	if (r < 0)
		return upload_fail(req, st);
	if (pp_ok != MHD_YES)
		return http_respond_error(req, 400, "error reading form: unexpected EOF");
	return http_respond_json(req, 200, json_incref(upload_result(st->up)));
}

static void files_cleanup(struct http_req *req)
{
	struct files_upload *st = req->state;
	if (!st)
		return;
	st->closing = true;
	if (st->pp)
		MHD_destroy_post_processor(st->pp);
	upload_free(st->up);
	if (st->rootfd >= 0)
		close(st->rootfd);
	free(st);
	req->state = NULL;
}

const struct http_route files_route = {
	.begin = files_begin,
	.data = files_data,
	.finish = files_finish,
	.cleanup = files_cleanup,
};
