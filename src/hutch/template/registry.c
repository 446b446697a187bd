/* The registry client: libcurl for HTTP, jansson for the token answer, nettle for digests. */
#include <curl/curl.h>
#include <jansson.h>
#include <nettle/sha2.h>
#include <pthread.h>
#include "registry.h"
#include "common/util.h"

#define REG_MAX_TOKEN	   8192
#define REG_MAX_TOKEN_BODY (64 * 1024)
#define REG_ACCEPT                                                           \
	"Accept: " OCI_MT_INDEX ", " OCI_MT_MANIFEST ", " OCI_MT_DOCKER_LIST \
	", " OCI_MT_DOCKER_MANIF

struct registry {
	struct registry_ref ref;
	char *base;  /* "https://host/v2/name" */
	char *token; /* Bearer token once obtained */
	char *username, *password;
	bool basic; /* the registry asked for Basic and we have credentials */
};

/* What one GET brought back. */
struct response {
	long status;
	char content_type[256];
	char docker_digest[OCI_DIGEST_LEN + 1];
	char challenge[2048];
	/* Sink: memory (buf, up to max) or fd, hashed on the way. */
	char *buf;
	size_t len, max;
	int fd;
	uint64_t written;
	bool too_big;
	int write_errno;
	struct sha256_ctx sha;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static bool name_chars_ok(const char *s, const char *extra)
{
	if (isempty(s))
		return false;
	for (const char *c = s; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || strchr(extra, *c)))
			return false;
	return true;
}

bool registry_host_is_loopback(const char *host)
{
	if (!host)
		return false;
	char h[256];
	snprintf(h, sizeof(h), "%s", host);
	if (h[0] == '[')
		return startswith(h, "[::1]");
	char *colon = strchr(h, ':');
	if (colon)
		*colon = '\0';
	return streq(h, "localhost") || startswith(h, "127.");
}

static bool host_ok(const char *h)
{
	if (isempty(h) || strlen(h) > 253)
		return false;
	for (const unsigned char *c = (const unsigned char *)h; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || strchr(".-:[]", *c)))
			return false;
	return true;
}

int registry_ref_parse(const char *ref, struct registry_ref *out, struct image_error *err)
{
	memset(out, 0, sizeof(*out));
	if (isempty(ref) || strlen(ref) > 512)
		return image_fail(err, -EINVAL, "bad image reference");
	char buf[513];
	snprintf(buf, sizeof(buf), "%s", ref);
	char *at = strchr(buf, '@');
	if (at) {
		*at++ = '\0';
		if (!oci_digest_valid(at))
			return image_fail(err, -EINVAL,
					  "image reference '%s': only sha256 digests are supported",
					  ref);
		memcpy(out->digest, at, OCI_DIGEST_LEN + 1);
	}
	char *rest = buf;
	char *slash = strchr(buf, '/');
	if (slash &&
	    (memchr(buf, '.', (size_t)(slash - buf)) || memchr(buf, ':', (size_t)(slash - buf)) ||
	     ((size_t)(slash - buf) == 9 && startswith(buf, "localhost")))) {
		*slash = '\0';
		if (!host_ok(buf))
			return image_fail(err, -EINVAL, "image reference '%s': bad registry host",
					  ref);
		memcpy(out->host, buf, strlen(buf) + 1); /* host_ok: at most 253 bytes */
		rest = slash + 1;
	}
	char *colon = strrchr(rest, ':');
	if (colon) {
		*colon++ = '\0';
		size_t n = strlen(colon);
		if (n == 0 || n > 128 ||
		    strspn(colon,
			   "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
			n ||
		    colon[0] == '.' || colon[0] == '-')
			return image_fail(err, -EINVAL, "image reference '%s': bad tag", ref);
		memcpy(out->tag, colon, n + 1);
	}
	if (!name_chars_ok(rest, "._/-") || rest[0] == '/' || strstr(rest, "//") ||
	    strstr(rest, "..") || rest[strlen(rest) - 1] == '/' || strlen(rest) > 200)
		return image_fail(err, -EINVAL,
				  "image reference '%s': bad repository name (lowercase letters, "
				  "digits, '.', '_', '-', '/')",
				  ref);
	if (!out->host[0] || streq(out->host, "docker.io") || streq(out->host, "index.docker.io")) {
		snprintf(out->host, sizeof(out->host), "%s", REGISTRY_DEFAULT_HOST);
		if (!strchr(rest, '/')) {
			memcpy(out->name, "library/", 8);
			memcpy(out->name + 8, rest, strlen(rest) + 1); /* at most 200 bytes */
			rest = NULL;
		}
	}
	if (rest)
		memcpy(out->name, rest, strlen(rest) + 1);
	if (!out->tag[0] && !out->digest[0])
		snprintf(out->tag, sizeof(out->tag), "latest");
	return 0;
}

/* Copies the value of auth-param `key` (quoted or a token) from a challenge's parameter list. */
static int challenge_param(const char *params, const char *key, char out[1024])
{
	out[0] = '\0';
	const char *p = params;
	while (*p) {
		p += strspn(p, " \t,");
		if (!*p)
			break;
		size_t klen = strcspn(p, "= \t,");
		if (p[klen] != '=')
			return -EINVAL;
		bool match = klen == strlen(key) && strncasecmp(p, key, klen) == 0;
		p += klen + 1;
		char val[1024];
		size_t n = 0;
		if (*p == '"') {
			for (p++; *p && *p != '"'; p++) {
				if (*p == '\\' && p[1])
					p++;
				if (n + 1 >= sizeof(val))
					return -EINVAL;
				val[n++] = *p;
			}
			if (*p != '"')
				return -EINVAL;
			p++;
		} else {
			size_t vlen = strcspn(p, ", \t");
			if (vlen + 1 > sizeof(val))
				return -EINVAL;
			memcpy(val, p, vlen);
			n = vlen;
			p += vlen;
		}
		val[n] = '\0';
		if (match && !out[0])
			memcpy(out, val, n + 1);
	}
	return 0;
}

int registry_parse_challenge(const char *header, char scheme[16], char realm[1024],
			     char service[1024], char scope[1024])
{
	scheme[0] = realm[0] = service[0] = scope[0] = '\0';
	if (!header)
		return -EINVAL;
	const char *p = header + strspn(header, " \t");
	size_t n = strcspn(p, " \t");
	if (n == 0 || n >= 16)
		return -EINVAL;
	memcpy(scheme, p, n);
	scheme[n] = '\0';
	p += n;
	int r;
	if ((r = challenge_param(p, "realm", realm)) < 0 ||
	    (r = challenge_param(p, "service", service)) < 0 ||
	    (r = challenge_param(p, "scope", scope)) < 0)
		return r;
	return 0;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *user)
{
	struct response *rs = user;
	size_t len = size * nmemb;
	char line[2048];
	size_t n = MIN(len, sizeof(line) - 1);
	memcpy(line, data, n);
	line[n] = '\0';
	line[strcspn(line, "\r\n")] = '\0';
	if (startswith(line, "HTTP/")) {
		/* A new response (after a redirect): forget the previous one's headers. */
		rs->content_type[0] = rs->docker_digest[0] = rs->challenge[0] = '\0';
		return len;
	}
	char *colon = strchr(line, ':');
	if (!colon)
		return len;
	*colon = '\0';
	const char *val = colon + 1 + strspn(colon + 1, " \t");
	if (strcasecmp(line, "content-type") == 0)
		snprintf(rs->content_type, sizeof(rs->content_type), "%s", val);
	else if (strcasecmp(line, "docker-content-digest") == 0 && oci_digest_valid(val))
		snprintf(rs->docker_digest, sizeof(rs->docker_digest), "%s", val);
	else if (strcasecmp(line, "www-authenticate") == 0 && !rs->challenge[0])
		snprintf(rs->challenge, sizeof(rs->challenge), "%s", val);
	return len;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
	struct response *rs = user;
	size_t len = size * nmemb;
	/* Memory sinks also take error bodies (bounded, then dropped on the status); fd sinks
	 * never see them (CURLOPT_FAILONERROR). */
	if (rs->fd >= 0) {
		if (rs->written + len > rs->max) {
			rs->too_big = true;
			return 0;
		}
		if (write_all(rs->fd, data, len) < 0) {
			rs->write_errno = errno;
			return 0;
		}
		sha256_update(&rs->sha, len, (const uint8_t *)data);
		rs->written += len;
		return len;
	}
	if (rs->len + len > rs->max) {
		rs->too_big = true;
		return 0;
	}
	char *nb = realloc(rs->buf, rs->len + len + 1);
	if (!nb)
		return 0;
	rs->buf = nb;
	memcpy(rs->buf + rs->len, data, len);
	rs->len += len;
	rs->buf[rs->len] = '\0';
	sha256_update(&rs->sha, len, (const uint8_t *)data);
	return len;
}

static void response_reset(struct response *rs, int fd, size_t max)
{
	free(rs->buf);
	*rs = (struct response){ .fd = fd, .max = max };
	sha256_init(&rs->sha);
}

/*
 * One GET. `auth` adds our Bearer token or Basic credentials. Only a 2xx body goes to the sink:
 * for fd sinks, error statuses are detected in the header phase and the body is dropped.
 */
static int http_get(struct registry *r, const char *url, const char *accept, bool auth,
		    struct response *rs, struct image_error *err)
{
	CURL *c = curl_easy_init();
	if (!c)
		return image_fail(err, -ENOMEM, "out of memory");
	struct curl_slist *hdrs = NULL;
	char *authz = NULL;
	if (accept)
		hdrs = curl_slist_append(hdrs, accept);
	if (auth && r->token && asprintf(&authz, "Authorization: Bearer %s", r->token) >= 0)
		hdrs = curl_slist_append(hdrs, authz);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "hutch");
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, rs);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, rs);
	/* Error answers are not written to an fd sink. */
	curl_easy_setopt(c, CURLOPT_FAILONERROR, rs->fd >= 0 ? 1L : 0L);
	if (auth && r->basic && r->username) {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(c, CURLOPT_USERNAME, r->username);
		curl_easy_setopt(c, CURLOPT_PASSWORD, r->password ? r->password : "");
	}
	CURLcode cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &rs->status);
	curl_easy_cleanup(c);
	curl_slist_free_all(hdrs);
	free(authz);
	if (rs->too_big)
		return image_fail(err, -EFBIG, "%s: the answer is larger than %zu bytes", url,
				  rs->max);
	if (rs->write_errno)
		return image_fail(err, -rs->write_errno, "%s: cannot store the download: %s", url,
				  strerror(rs->write_errno));
	if (cc == CURLE_HTTP_RETURNED_ERROR)
		return 0; /* status tells */
	if (cc != CURLE_OK)
		return image_fail(err, -EIO, "%s: %s", url, curl_easy_strerror(cc));
	return 0;
}

/* Asks the realm for a pull token of this repository. */
static int fetch_token(struct registry *r, const char *challenge, struct image_error *err)
{
	char scheme[16], realm[1024], service[1024], scope[1024];
	if (registry_parse_challenge(challenge, scheme, realm, service, scope) < 0)
		return image_fail(err, -EINVAL, "%s: malformed WWW-Authenticate header",
				  r->ref.host);
	if (strcasecmp(scheme, "Basic") == 0) {
		if (!r->username)
			return image_fail(err, -EACCES,
					  "%s: the registry wants credentials (none given)",
					  r->ref.host);
		r->basic = true;
		return 0;
	}
	if (strcasecmp(scheme, "Bearer") != 0)
		return image_fail(err, -EINVAL, "%s: unsupported authentication scheme",
				  r->ref.host);
	/* The realm gets our credentials: https only, or plain http on a loopback registry. */
	bool https = startswith(realm, "https://");
	if (!https && !(startswith(realm, "http://") && registry_host_is_loopback(r->ref.host) &&
			registry_host_is_loopback(realm + 7)))
		return image_fail(err, -EINVAL, "%s: refusing token realm '%.200s' (not https)",
				  r->ref.host, realm);
	CURL *c = curl_easy_init();
	if (!c)
		return image_fail(err, -ENOMEM, "out of memory");
	char want_scope[600];
	snprintf(want_scope, sizeof(want_scope), "repository:%s:pull", r->ref.name);
	char *esc_service = curl_easy_escape(c, service, 0);
	char *esc_scope = curl_easy_escape(c, scope[0] ? scope : want_scope, 0);
	curl_easy_cleanup(c);
	_cleanup_free_ char *url = NULL;
	int k = -1;
	if (esc_service && esc_scope)
		k = asprintf(&url, "%s%cservice=%s&scope=%s", realm, strchr(realm, '?') ? '&' : '?',
			     esc_service, esc_scope);
	curl_free(esc_service);
	curl_free(esc_scope);
	if (k < 0)
		return image_fail(err, -ENOMEM, "out of memory");

	struct response rs = { 0 };
	response_reset(&rs, -1, REG_MAX_TOKEN_BODY);
	r->basic = r->username != NULL; /* credentials go to the realm, as Docker does */
	int ret = http_get(r, url, NULL, true, &rs, err);
	r->basic = false;
	if (ret == 0 && rs.status != 200)
		ret = image_fail(err, rs.status == 401 || rs.status == 403 ? -EACCES : -EIO,
				 "%s: the token service answered HTTP %ld", r->ref.host, rs.status);
	json_t *j = ret == 0 ? json_loadb(rs.buf ? rs.buf : "", rs.len, 0, NULL) : NULL;
	const char *tok = json_string_value(json_object_get(j, "token"))
			      ?: json_string_value(json_object_get(j, "access_token"));
	if (ret == 0) {
		bool printable = tok && *tok && strlen(tok) < REG_MAX_TOKEN;
		for (const char *t = tok; printable && *t; t++)
			printable = *t > 0x20 && *t < 0x7f;
		if (!printable)
			ret = image_fail(err, -EINVAL, "%s: the token service sent no usable token",
					 r->ref.host);
		else {
			free(r->token);
			if (!(r->token = strdup(tok)))
				ret = image_fail(err, -ENOMEM, "out of memory");
		}
	}
	json_decref(j);
	free(rs.buf);
	return ret;
}

/* GET with authentication on demand: a 401 is answered once (token or Basic), then retried. */
static int get_authed(struct registry *r, const char *url, const char *accept, int fd, size_t max,
		      struct response *rs, struct image_error *err)
{
	for (int attempt = 0;; attempt++) {
		if (fd >= 0 && (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0))
			return image_fail(err, -errno, "cannot reset the download file: %s",
					  strerror(errno));
		response_reset(rs, fd, max);
		int k = http_get(r, url, accept, true, rs, err);
		if (k < 0)
			return k;
		if (rs->status != 401 || attempt > 0)
			break;
		if (!rs->challenge[0])
			return image_fail(err, -EACCES, "%s: HTTP 401 without a challenge",
					  r->ref.host);
		if ((k = fetch_token(r, rs->challenge, err)) < 0)
			return k;
	}
	if (rs->status == 401 || rs->status == 403)
		return image_fail(err, -EACCES, "%s/%s: access denied (HTTP %ld)", r->ref.host,
				  r->ref.name, rs->status);
	if (rs->status == 404)
		return image_fail(err, -ENOENT, "%s/%s: not found in the registry", r->ref.host,
				  r->ref.name);
	if (rs->status != 200)
		return image_fail(err, -EIO, "%s: HTTP %ld for %s", r->ref.host, rs->status, url);
	return 0;
}

static void digest_hex(struct sha256_ctx *ctx, char out[OCI_DIGEST_LEN + 1])
{
	uint8_t d[SHA256_DIGEST_SIZE];
	sha256_digest(ctx, sizeof(d), d);
	memcpy(out, "sha256:", 7);
	for (size_t i = 0; i < sizeof(d); i++)
		snprintf(out + 7 + 2 * i, 3, "%02x", d[i]);
}

int registry_open(const struct registry_ref *ref, const char *username, const char *password,
		  struct registry **out, struct image_error *err)
{
	pthread_once(&curl_once, curl_init_once);
	struct registry *r = calloc(1, sizeof(*r));
	if (!r)
		return image_fail(err, -ENOMEM, "out of memory");
	r->ref = *ref;
	bool plain = registry_host_is_loopback(ref->host);
	if (asprintf(&r->base, "%s://%s/v2/%s", plain ? "http" : "https", ref->host, ref->name) <
		0 ||
	    (username && !(r->username = strdup(username))) ||
	    (password && !(r->password = strdup(password)))) {
		registry_free(r);
		return image_fail(err, -ENOMEM, "out of memory");
	}
	*out = r;
	return 0;
}

struct registry *registry_free(struct registry *r)
{
	if (!r)
		return NULL;
	free(r->base);
	free(r->token);
	free(r->username);
	if (r->password)
		explicit_bzero(r->password, strlen(r->password));
	free(r->password);
	free(r);
	return NULL;
}

int registry_get_manifest(struct registry *r, const char *reference, char **body, size_t *len,
			  char **content_type, char digest[OCI_DIGEST_LEN + 1],
			  struct image_error *err)
{
	_cleanup_free_ char *url = NULL;
	if (asprintf(&url, "%s/manifests/%s", r->base, reference) < 0)
		return image_fail(err, -ENOMEM, "out of memory");
	struct response rs = { 0 };
	int k = get_authed(r, url, REG_ACCEPT, -1, OCI_MAX_DOCUMENT, &rs, err);
	if (k < 0) {
		free(rs.buf);
		return k;
	}
	char got[OCI_DIGEST_LEN + 1];
	digest_hex(&rs.sha, got);
	const char *want = oci_digest_valid(reference) ? reference
			   : rs.docker_digest[0]       ? rs.docker_digest
						       : NULL;
	if (want && !streq(got, want)) {
		free(rs.buf);
		return image_fail(err, -EBADMSG, "%s/%s: manifest digest mismatch (%s, want %s)",
				  r->ref.host, r->ref.name, got, want);
	}
	*body = rs.buf ? rs.buf : strdup("");
	*len = rs.len;
	*content_type = rs.content_type[0] ? strdup(rs.content_type) : NULL;
	memcpy(digest, got, sizeof(got));
	return *body ? 0 : image_fail(err, -ENOMEM, "out of memory");
}

int registry_get_blob(struct registry *r, const char *digest, size_t max, char **body, size_t *len,
		      struct image_error *err)
{
	_cleanup_free_ char *url = NULL;
	if (!oci_digest_valid(digest) || asprintf(&url, "%s/blobs/%s", r->base, digest) < 0)
		return image_fail(err, -EINVAL, "bad blob digest");
	struct response rs = { 0 };
	int k = get_authed(r, url, NULL, -1, max, &rs, err);
	if (k < 0) {
		free(rs.buf);
		return k;
	}
	char got[OCI_DIGEST_LEN + 1];
	digest_hex(&rs.sha, got);
	if (!streq(got, digest)) {
		free(rs.buf);
		return image_fail(err, -EBADMSG, "%s/%s: blob digest mismatch (%s, want %s)",
				  r->ref.host, r->ref.name, got, digest);
	}
	*body = rs.buf ? rs.buf : strdup("");
	*len = rs.len;
	return *body ? 0 : image_fail(err, -ENOMEM, "out of memory");
}

int registry_download_blob(struct registry *r, const char *digest, uint64_t size, int fd,
			   struct image_error *err)
{
	_cleanup_free_ char *url = NULL;
	if (!oci_digest_valid(digest) || asprintf(&url, "%s/blobs/%s", r->base, digest) < 0)
		return image_fail(err, -EINVAL, "bad blob digest");
	struct response rs = { 0 };
	int k = get_authed(r, url, NULL, fd, size, &rs, err);
	free(rs.buf);
	if (k < 0)
		return k;
	char got[OCI_DIGEST_LEN + 1];
	digest_hex(&rs.sha, got);
	if (rs.written != size)
		return image_fail(err, -EBADMSG,
				  "%s: blob %s is %llu bytes, the manifest says %llu", r->ref.host,
				  digest, (unsigned long long)rs.written, (unsigned long long)size);
	if (!streq(got, digest))
		return image_fail(err, -EBADMSG, "%s: blob digest mismatch (%s, want %s)",
				  r->ref.host, got, digest);
	return 0;
}
