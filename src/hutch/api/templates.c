/*
 * /templates: E2B's build system v2 as the SDK uses it (request a build, upload COPY files,
 * start the build, poll its status and logs), aliases, tags, list, get, delete; and the upload
 * endpoint the file links point at (PUT /upload/files/{hash}, authorised by a signature).
 */
#include <ctype.h>
#include <fcntl.h>
#include <nettle/hmac.h>
#include <nettle/memops.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include "api/api.h"
#include "common/log.h"
#include "common/util.h"
#include "common/version.h"
#include "template/builder.h"

#define UPLOAD_MAX_BYTES  (4ULL << 30) /* one COPY tarball */
#define UPLOAD_LINK_TTL_S 3600
#define NAME_MAX_LEN	  100
#define TAG_MAX_LEN	  100

static void iso_time(char *buf, size_t size, int64_t ms)
{
	format_rfc3339(buf, size, ms / 1000, (long)(ms % 1000) * 1000000L);
}

static int random_id(char *out, size_t len)
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	uint8_t rnd[64];
	if (len > sizeof(rnd) || getrandom(rnd, len, 0) != (ssize_t)len)
		return -EIO;
	for (size_t i = 0; i < len; i++)
		out[i] = alphabet[rnd[i] % (sizeof(alphabet) - 1)];
	out[len] = 0;
	return 0;
}

/* Template names and tags: [a-z0-9] then [a-z0-9._-], like E2B's (case folded here). */
static bool valid_word(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > max || !isalnum((unsigned char)s[0]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return false;
	return true;
}

static bool is_hex64(const char *s)
{
	return s && strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

/* Splits "name[:tag]" into name and tag (default "default"); false when malformed. */
static bool split_name(const char *in, char *name, size_t nsize, char *tag, size_t tsize)
{
	const char *colon = in ? strchr(in, ':') : NULL;
	size_t n = colon ? (size_t)(colon - in) : (in ? strlen(in) : 0);
	if (n == 0 || n >= nsize)
		return false;
	memcpy(name, in, n);
	name[n] = 0;
	snprintf(tag, tsize, "%s", colon ? colon + 1 : "default");
	for (char *p = name; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return valid_word(name, NAME_MAX_LEN) && valid_word(tag, TAG_MAX_LEN);
}

/* The template named in the path: id or name (alias). */
static int find_template(struct http_req *req, struct api_req *ar, struct template_rec *t)
{
	if (store_template_get(ar->srv->store, ar->id, t) < 0) {
		template_rec_clear(t);
		return api_error(req, 404, "template '%s' not found", ar->id);
	}
	return 0;
}

/* ---- POST /v3/templates ---- */

int api_template_request_build(struct http_req *req, struct api_req *ar)
{
	json_t *b = ar->body;
	const char *in = json_string_value(json_object_get(b, "name"));
	if (!in)
		in = json_string_value(json_object_get(b, "alias"));
	char name[NAME_MAX_LEN + 1], tag[TAG_MAX_LEN + 1];
	if (!in || !split_name(in, name, sizeof(name), tag, sizeof(tag)))
		return api_error(req, 400,
				 "name must be NAME or NAME:TAG (letters, digits, '.', '_', '-'; "
				 "up to %d characters)",
				 NAME_MAX_LEN);
	if (streq(name, "base"))
		return api_error(req, 409, "the template name 'base' is reserved");
	json_t *tags = json_array();
	json_array_append_new(tags, json_string(tag));
	json_t *extra = json_object_get(b, "tags");
	if (extra && !json_is_null(extra)) {
		size_t i;
		json_t *v;
		if (!json_is_array(extra)) {
			json_decref(tags);
			return api_error(req, 400, "tags must be an array of strings");
		}
		json_array_foreach (extra, i, v) {
			if (!valid_word(json_string_value(v), TAG_MAX_LEN)) {
				json_decref(tags);
				return api_error(req, 400, "tag '%s' is not valid",
						 json_string_value(v) ? json_string_value(v) : "");
			}
			json_array_append(tags, v);
		}
	}
	json_int_t cpu = ar->srv->cfg->default_cpu, mem = ar->srv->cfg->default_memory_mb;
	json_t *jc = json_object_get(b, "cpuCount"), *jm = json_object_get(b, "memoryMB");
	if ((jc && !json_is_null(jc) &&
	     (!json_is_integer(jc) || json_integer_value(jc) < 1 || json_integer_value(jc) > 64)) ||
	    (jm && !json_is_null(jm) &&
	     (!json_is_integer(jm) || json_integer_value(jm) < 128 ||
	      json_integer_value(jm) > 1024 * 1024))) {
		json_decref(tags);
		return api_error(req, 400, "cpuCount must be 1 to 64, memoryMB 128 or more");
	}
	if (json_is_integer(jc))
		cpu = json_integer_value(jc);
	if (json_is_integer(jm))
		mem = json_integer_value(jm);

	struct template_rec t = { 0 };
	struct store *st = ar->srv->store;
	if (store_template_get(st, name, &t) < 0) {
		template_rec_clear(&t);
		memset(&t, 0, sizeof(t));
		if (random_id(t.id, 20) < 0) {
			json_decref(tags);
			return api_error(req, 500, "no randomness");
		}
		snprintf(t.alias, sizeof(t.alias), "%s", name);
		snprintf(t.status, sizeof(t.status), "building");
		snprintf(t.envd_version, sizeof(t.envd_version), "%s", ENVD_PROTOCOL_VERSION);
		t.cpu_count = (unsigned)cpu;
		t.memory_mb = (unsigned)mem;
		int r = store_template_put(st, &t);
		if (r < 0) {
			json_decref(tags);
			return api_error(req, r == -EEXIST ? 409 : 500,
					 "cannot create template '%s'", name);
		}
	}
	struct build_rec br = {
		.data =
		    json_pack("{s:I, s:I, s:I, s:O}", "cpuCount", cpu, "memoryMB", mem, "diskMB",
			      (json_int_t)ar->srv->cfg->default_disk_mb, "tags", tags),
	};
	snprintf(br.template_id, sizeof(br.template_id), "%s", t.id);
	snprintf(br.status, sizeof(br.status), "waiting");
	int r = random_id(br.id, 20);
	if (r >= 0)
		r = store_build_put(st, &br);
	json_t *j =
	    r < 0 ? NULL
		  : json_pack("{s:s, s:s, s:[s], s:O, s:[s], s:b}", "templateID", t.id, "buildID",
			      br.id, "names", name, "tags", tags, "aliases", name, "public", 0);
	build_rec_clear(&br);
	template_rec_clear(&t);
	json_decref(tags);
	if (r < 0)
		return api_error(req, 500, "cannot record the build");
	return http_respond_json(req, 202, j);
}

/* ---- COPY files: link and upload ---- */

static void upload_sig(struct api_req *ar, const char *hash, const char *exp, char out[65])
{
	uint8_t key[32], mac[SHA256_DIGEST_SIZE];
	memset(key, 0, sizeof(key));
	store_secret(ar->srv->store, "template-uploads", key);
	struct hmac_sha256_ctx ctx;
	hmac_sha256_set_key(&ctx, sizeof(key), key);
	hmac_sha256_update(&ctx, strlen(hash), (const uint8_t *)hash);
	hmac_sha256_update(&ctx, 1, (const uint8_t *)":");
	hmac_sha256_update(&ctx, strlen(exp), (const uint8_t *)exp);
	hmac_sha256_digest(&ctx, sizeof(mac), mac);
	for (size_t i = 0; i < sizeof(mac); i++)
		snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

/* The Host the client used, if it is a plain host[:port]; else the listen address. */
static void own_origin(struct http_req *req, struct api_req *ar, char *out, size_t size)
{
	const char *host = http_header(req, "Host");
	if (host && *host && strlen(host) < 256 &&
	    strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") ==
		strlen(host))
		snprintf(out, size, "http://%s", host);
	else
		snprintf(out, size, "http://%s:%u", ar->srv->cfg->listen_addr,
			 ar->srv->cfg->listen_port);
}

int api_template_files(struct http_req *req, struct api_req *ar)
{
	struct template_rec t = { 0 };
	if (find_template(req, ar, &t) < 0)
		return -EPROTO;
	template_rec_clear(&t);
	if (!is_hex64(ar->id2))
		return api_error(req, 400, "the files hash must be 64 lowercase hex digits");
	char path[PATH_MAX];
	builder_files_path(ar->srv->builder, ar->id2, path, sizeof(path));
	if (access(path, F_OK) == 0)
		return http_respond_json(req, 201, json_pack("{s:b}", "present", 1));
	char exp[32], sig[65], origin[300], url[1024];
	snprintf(exp, sizeof(exp), "%lld",
		 (long long)(now_realtime_usec() / 1000000u) + UPLOAD_LINK_TTL_S);
	upload_sig(ar, ar->id2, exp, sig);
	own_origin(req, ar, origin, sizeof(origin));
	snprintf(url, sizeof(url), "%s/upload/files/%s?exp=%s&sig=%s", origin, ar->id2, exp, sig);
	return http_respond_json(req, 201, json_pack("{s:b, s:s}", "present", 0, "url", url));
}

struct upload {
	struct api_req ar;
	char hash[65];
	char tmp[PATH_MAX + 32];
	char path[PATH_MAX];
	int fd;
	uint64_t size;
	bool done;
};

static int upload_begin(struct http_req *req)
{
	struct upload *u = req->state;
	u->ar.srv = req->userdata;
	const char *exp = http_query(req, "exp"), *sig = http_query(req, "sig");
	char want[65];
	if (!exp || !sig || strlen(sig) != 64)
		return api_error(req, 403, "a signed upload link is required");
	uint64_t e;
	if (parse_u64(exp, &e) < 0 || e < now_realtime_usec() / 1000000u)
		return api_error(req, 403, "the upload link has expired");
	upload_sig(&u->ar, u->hash, exp, want);
	if (!memeql_sec(want, sig, 64))
		return api_error(req, 403, "the upload link's signature is not valid");
	const char *len = http_header(req, "Content-Length");
	uint64_t clen;
	if (len && parse_u64(len, &clen) == 0 && clen > UPLOAD_MAX_BYTES)
		return api_error(req, 413, "the upload is larger than %llu bytes",
				 (unsigned long long)UPLOAD_MAX_BYTES);
	builder_files_path(u->ar.srv->builder, u->hash, u->path, sizeof(u->path));
	uint8_t r[4];
	if (getrandom(r, sizeof(r), 0) != sizeof(r))
		return api_error(req, 500, "no randomness");
	snprintf(u->tmp, sizeof(u->tmp), "%s.tmp-%02x%02x%02x%02x", u->path, r[0], r[1], r[2],
		 r[3]);
	u->fd = open(u->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (u->fd < 0)
		return api_error(req, 500, "cannot store the upload: %s", strerror(errno));
	return 0;
}

static int upload_data(struct http_req *req, const char *buf, size_t len)
{
	struct upload *u = req->state;
	u->size += len;
	if (u->size > UPLOAD_MAX_BYTES)
		return api_error(req, 413, "the upload is larger than %llu bytes",
				 (unsigned long long)UPLOAD_MAX_BYTES);
	if (write_all(u->fd, buf, len) < 0)
		return api_error(req, 500, "cannot store the upload: %s", strerror(errno));
	return 0;
}

static int upload_finish(struct http_req *req)
{
	struct upload *u = req->state;
	if (fsync(u->fd) < 0 || rename(u->tmp, u->path) < 0)
		return api_error(req, 500, "cannot store the upload: %s", strerror(errno));
	u->done = true;
	return http_respond_empty(req, 200);
}

static void upload_cleanup(struct http_req *req)
{
	struct upload *u = req->state;
	if (!u)
		return;
	if (u->fd >= 0)
		close(u->fd);
	if (!u->done && u->tmp[0])
		unlink(u->tmp);
	free(u);
}

static const struct http_route upload_route = {
	.begin = upload_begin,
	.data = upload_data,
	.finish = upload_finish,
	.cleanup = upload_cleanup,
};

const struct http_route *api_upload_router(struct http_req *req)
{
	const char *hash = req->path + strlen("/upload/files/");
	if (!streq(req->method, "PUT")) {
		api_error(req, 405, "Method %s is not allowed on %s", req->method, req->path);
		return NULL;
	}
	if (!is_hex64(hash)) {
		api_error(req, 404, "No such upload: %s", req->path);
		return NULL;
	}
	struct upload *u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	u->fd = -1;
	snprintf(u->hash, sizeof(u->hash), "%s", hash);
	req->state = u;
	return &upload_route;
}

/* ---- builds ---- */

int api_template_build_start(struct http_req *req, struct api_req *ar)
{
	if (!ar->body)
		return api_error(req, 400, "the template (a JSON body) is required");
	struct template_rec t = { 0 };
	if (find_template(req, ar, &t) < 0)
		return -EPROTO;
	struct api_error err = { 0 };
	int r = builder_start(ar->srv->builder, t.id, ar->id2, ar->body, 0, &err);
	template_rec_clear(&t);
	if (r < 0)
		return api_error(req, err.status ? err.status : 500, "%s",
				 err.message[0] ? err.message : "cannot start the build");
	return http_respond_empty(req, 202);
}

int api_template_build_status(struct http_req *req, struct api_req *ar)
{
	struct template_rec t = { 0 };
	if (find_template(req, ar, &t) < 0)
		return -EPROTO;
	uint64_t offset = 0;
	const char *o = http_query(req, "logsOffset");
	if (o && *o && (parse_u64(o, &offset) < 0 || offset > 1u << 30)) {
		template_rec_clear(&t);
		return api_error(req, 400, "logsOffset must be a whole number");
	}
	json_t *j = NULL;
	int r = builder_status(ar->srv->builder, t.id, ar->id2, (size_t)offset, &j);
	template_rec_clear(&t);
	if (r < 0)
		return api_error(req, 404, "build '%s' not found", ar->id2);
	return http_respond_json(req, 200, j);
}

int api_template_build_logs(struct http_req *req, struct api_req *ar)
{
	struct template_rec t = { 0 };
	if (find_template(req, ar, &t) < 0)
		return -EPROTO;
	json_t *j = NULL;
	int r = builder_status(ar->srv->builder, t.id, ar->id2, 0, &j);
	template_rec_clear(&t);
	if (r < 0)
		return api_error(req, 404, "build '%s' not found", ar->id2);
	json_t *logs = json_pack("{s:O}", "logs", json_object_get(j, "logEntries"));
	json_decref(j);
	return http_respond_json(req, 200, logs);
}

/* ---- aliases, list, get, delete ---- */

int api_template_alias(struct http_req *req, struct api_req *ar)
{
	struct template_rec t = { 0 };
	char name[NAME_MAX_LEN + 1];
	snprintf(name, sizeof(name), "%s", ar->id);
	for (char *p = name; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	int r = store_template_get(ar->srv->store, name, &t);
	bool found = r == 0 && streq(t.alias, name);
	json_t *j = found
			? json_pack("{s:s, s:b}", "templateID", t.id, "public", streq(t.id, "base"))
			: NULL;
	template_rec_clear(&t);
	if (!found)
		return api_error(req, 404, "template alias '%s' not found", ar->id);
	return http_respond_json(req, 200, j);
}

/* E2B's `Template` (list) fields. */
static json_t *template_json(struct api_req *ar, const struct template_rec *t)
{
	char created[64];
	iso_time(created, sizeof(created), t->created_ms);
	struct build_rec *builds = NULL;
	size_t n = 0;
	store_build_list(ar->srv->store, t->id, &builds, &n);
	const char *build_id = json_string_value(json_object_get(t->config, "buildID"));
	const char *status = t->status;
	char updated[64];
	snprintf(updated, sizeof(updated), "%s", created);
	if (n > 0) {
		iso_time(updated, sizeof(updated),
			 builds[n - 1].finished_ms ? builds[n - 1].finished_ms
						   : builds[n - 1].created_ms);
		if (!build_id)
			build_id = builds[n - 1].id;
		status = builds[n - 1].status;
	}
	json_t *names = json_array();
	if (t->alias[0])
		json_array_append_new(names, json_string(t->alias));
	json_t *j = json_pack(
	    "{s:s, s:s, s:i, s:i, s:i, s:b, s:O, s:O, s:s, s:s, s:n, s:n, s:i,"
	    " s:i, s:s, s:s}",
	    "templateID", t->id, "buildID", build_id ? build_id : t->id, "cpuCount",
	    (int)t->cpu_count, "memoryMB", (int)t->memory_mb, "diskSizeMB", (int)t->disk_mb,
	    "public", streq(t->id, "base"), "aliases", names, "names", names, "createdAt", created,
	    "updatedAt", updated, "createdBy", "lastSpawnedAt", "spawnCount", 0, "buildCount",
	    (int)n, "envdVersion", t->envd_version, "buildStatus", status[0] ? status : "ready");
	json_decref(names);
	if (j) {
		json_t *arr = json_array();
		for (size_t i = 0; i < n; i++) {
			char c[64], f[64];
			iso_time(c, sizeof(c), builds[i].created_ms);
			iso_time(f, sizeof(f),
				 builds[i].finished_ms ? builds[i].finished_ms
						       : builds[i].created_ms);
			json_t *d = builds[i].data;
			json_array_append_new(
			    arr, json_pack(
				     "{s:s, s:s, s:s, s:s, s:O, s:O, s:s}", "buildID", builds[i].id,
				     "status", builds[i].status, "createdAt", c, "updatedAt", f,
				     "cpuCount", json_object_get(d, "cpuCount") ?: json_integer(0),
				     "memoryMB", json_object_get(d, "memoryMB") ?: json_integer(0),
				     "envdVersion", t->envd_version));
			if (builds[i].finished_ms)
				json_object_set_new(json_array_get(arr, json_array_size(arr) - 1),
						    "finishedAt", json_string(f));
		}
		json_object_set_new(j, "builds", arr);
	}
	for (size_t i = 0; i < n; i++)
		build_rec_clear(&builds[i]);
	free(builds);
	return j;
}

int api_template_list(struct http_req *req, struct api_req *ar)
{
	struct template_rec *list = NULL;
	size_t n = 0;
	if (store_template_list(ar->srv->store, &list, &n) < 0)
		return api_error(req, 500, "cannot list templates");
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *j = template_json(ar, &list[i]);
		json_object_del(j, "builds");
		json_array_append_new(arr, j);
		template_rec_clear(&list[i]);
	}
	free(list);
	return http_respond_json(req, 200, arr);
}

int api_template_get(struct http_req *req, struct api_req *ar)
{
	struct template_rec t = { 0 };
	if (find_template(req, ar, &t) < 0)
		return -EPROTO;
	json_t *j = template_json(ar, &t);
	template_rec_clear(&t);
	return http_respond_json(req, 200, j);
}

int api_template_delete(struct http_req *req, struct api_req *ar)
{
	struct template_rec t = { 0 };
	if (find_template(req, ar, &t) < 0)
		return -EPROTO;
	bool builtin = streq(t.id, "base");
	char id[64];
	snprintf(id, sizeof(id), "%s", t.id);
	template_rec_clear(&t);
	if (builtin)
		return api_error(req, 403, "the built-in template 'base' cannot be deleted");
	/* Cached layers stay in the shared cache: other templates may use them. */
	if (store_template_delete(ar->srv->store, id) < 0)
		return api_error(req, 404, "template '%s' not found", ar->id);
	log_info("Template %s deleted", id);
	return http_respond_empty(req, 204);
}

/* ---- tags ---- */

int api_template_tags_assign(struct http_req *req, struct api_req *ar)
{
	const char *target = json_string_value(json_object_get(ar->body, "target"));
	json_t *tags = json_object_get(ar->body, "tags");
	char name[NAME_MAX_LEN + 1], tag[TAG_MAX_LEN + 1];
	if (!target || !split_name(target, name, sizeof(name), tag, sizeof(tag)))
		return api_error(req, 400, "target must be NAME or NAME:TAG");
	if (!json_is_array(tags) || json_array_size(tags) == 0)
		return api_error(req, 400, "tags must be a non-empty array of strings");
	size_t i;
	json_t *v;
	json_array_foreach (tags, i, v)
		if (!valid_word(json_string_value(v), TAG_MAX_LEN))
			return api_error(req, 400, "tag '%s' is not valid",
					 json_string_value(v) ? json_string_value(v) : "");
	struct template_rec t = { 0 };
	char build_id[40];
	struct store *st = ar->srv->store;
	if (store_template_get(st, name, &t) < 0) {
		template_rec_clear(&t);
		return api_error(req, 404, "template '%s' not found", name);
	}
	int r = store_tag_get(st, t.id, tag, build_id);
	if (r < 0 && streq(tag, "default") &&
	    json_string_value(json_object_get(t.config, "buildID"))) {
		snprintf(build_id, sizeof(build_id), "%s",
			 json_string_value(json_object_get(t.config, "buildID")));
		r = 0;
	}
	if (r < 0) {
		template_rec_clear(&t);
		return api_error(req, 404, "template '%s' has no tag '%s'", name, tag);
	}
	json_array_foreach (tags, i, v)
		if ((r = store_tag_put(st, t.id, json_string_value(v), build_id)) < 0)
			break;
	template_rec_clear(&t);
	if (r < 0)
		return api_error(req, 500, "cannot assign the tags");
	return http_respond_json(req, 201,
				 json_pack("{s:s, s:O}", "buildID", build_id, "tags", tags));
}

int api_template_tags_delete(struct http_req *req, struct api_req *ar)
{
	const char *in = json_string_value(json_object_get(ar->body, "name"));
	json_t *tags = json_object_get(ar->body, "tags");
	char name[NAME_MAX_LEN + 1], tag[TAG_MAX_LEN + 1];
	if (!in || !split_name(in, name, sizeof(name), tag, sizeof(tag)))
		return api_error(req, 400, "name must be a template name");
	if (!json_is_array(tags) || json_array_size(tags) == 0)
		return api_error(req, 400, "tags must be a non-empty array of strings");
	struct template_rec t = { 0 };
	if (store_template_get(ar->srv->store, name, &t) < 0) {
		template_rec_clear(&t);
		return api_error(req, 404, "template '%s' not found", name);
	}
	size_t i;
	json_t *v;
	int r = 0;
	json_array_foreach (tags, i, v) {
		const char *tg = json_string_value(v);
		if (!tg || (r = store_tag_delete(ar->srv->store, t.id, tg)) < 0) {
			template_rec_clear(&t);
			return api_error(req, 404, "template '%s' has no tag '%s'", name,
					 tg ? tg : "");
		}
	}
	template_rec_clear(&t);
	return http_respond_empty(req, 204);
}

int api_template_tags_list(struct http_req *req, struct api_req *ar)
{
	struct template_rec t = { 0 };
	if (find_template(req, ar, &t) < 0)
		return -EPROTO;
	struct tag_rec *tags = NULL;
	size_t n = 0;
	int r = store_tag_list(ar->srv->store, t.id, &tags, &n);
	template_rec_clear(&t);
	if (r < 0)
		return api_error(req, 500, "cannot list tags");
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		char c[64];
		iso_time(c, sizeof(c), tags[i].created_ms);
		json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "tag", tags[i].tag,
						     "buildID", tags[i].build_id, "createdAt", c));
	}
	free(tags);
	return http_respond_json(req, 200, arr);
}
