/*
 * The streaming side of POST /files: an optional gzip stage, the target files (parent
 * directories, open, truncate, ownership), user.e2b.* metadata xattrs, and Accept-Encoding
 * parsing for GET. No HTTP here, so unit tests and fuzz targets drive it with plain bytes; the
 * multipart framing itself is libmicrohttpd's post processor (files_http.c).
 */
#include <ctype.h>
#include <limits.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <zlib.h>
#include "envd.h"
#include "common/log.h"
#include "common/util.h"

#define INFLATE_CHUNK (64 * 1024)

struct upload {
	int rootfd; /* borrowed */
	struct user_info user;
	json_t *metadata; /* object or NULL */
	json_t *entries;  /* array of finished files */
	char *raw_path;	  /* raw body target, or NULL for multipart */
	char *fixed_path; /* multipart: target of every "file" part, or NULL */

	upload_consumer_fn consumer;
	void *consumer_ctx;

	bool gzip;
	bool z_ready;
	bool z_member_done; /* the last gzip member ended; more input starts a new one */
	z_stream z;
	unsigned char *zout;

	/* The file being written. */
	int fd;
	char *cur_path;
	bool cur_active; /* a part (or the raw body) is being written */
	bool skip_part;	 /* the current part is not named "file" */
	unsigned parts;
	/* libmicrohttpd may announce a part with an empty call at offset 0 and then deliver its
	 * first bytes at offset 0 again: such a call continues the part rather than starting one.
	 */
	bool part_empty_so_far;
	char *part_name; /* field name and filename of the current part, to match a continuation */
	char *part_filename;
	struct upload_error err;
};

static int fail(struct upload *up, unsigned status, int r, const char *fmt, ...) _printf_(4, 5);

static int fail(struct upload *up, unsigned status, int r, const char *fmt, ...)
{
	if (up->err.status == 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(up->err.message, sizeof(up->err.message), fmt, ap);
		va_end(ap);
		up->err.status = status;
	}
	return r < 0 ? r : -EIO;
}

unsigned files_errno_status(int r)
{
	switch (r) {
	case -ENOSPC:
	case -EDQUOT:
		return 507;
	case -EACCES:
	case -EPERM:
	case -EROFS:
		return 403;
	case -ENOENT:
		return 404;
	case -EISDIR:
	case -ENOTDIR:
	case -ELOOP:
	case -ENAMETOOLONG:
	case -EINVAL:
	case -ENXIO:
		return 400;
	default:
		return 500;
	}
}

/* ---- Accept-Encoding ---- */

struct coding {
	char name[16];
	double q;
};

static void trim(const char **b, const char **e)
{
	while (*b < *e && isspace((unsigned char)**b))
		(*b)++;
	while (*e > *b && isspace((unsigned char)(*e)[-1]))
		(*e)--;
}

/* Go's strconv.ParseFloat on a trimmed parameter value; false when it is not a number. */
static bool parse_q(const char *b, const char *e, double *q)
{
	char num[32];
	size_t len = (size_t)(e - b);
	if (len == 0 || len >= sizeof(num))
		return false;
	memcpy(num, b, len);
	num[len] = 0;
	char *end;
	errno = 0;
	double v = strtod(num, &end);
	if (*end || errno)
		return false;
	*q = v;
	return true;
}

/* Parses up to `max` entries of a comma list "name;q=x" (case-insensitive; an unparseable q
 * counts as 1). A name too long for the buffer is some unknown coding: it matches nothing. */
static size_t codings_parse(const char *h, struct coding *out, size_t max)
{
	size_t n = 0;
	while (h && n < max) {
		const char *end = strchrnul(h, ',');
		const char *semi = memchr(h, ';', (size_t)(end - h));
		const char *nb = h, *ne = semi ? semi : end;
		struct coding *c = &out[n++];
		trim(&nb, &ne);
		size_t len = (size_t)(ne - nb);
		if (len >= sizeof(c->name))
			len = 0;
		for (size_t i = 0; i < len; i++)
			c->name[i] = (char)tolower((unsigned char)nb[i]);
		c->name[len] = 0;
		if (len == 0 && ne > nb)
			snprintf(c->name, sizeof(c->name), "?");
		c->q = 1.0;
		while (semi) {
			const char *pb = semi + 1;
			const char *next = memchr(pb, ';', (size_t)(end - pb));
			const char *pe = next ? next : end;
			trim(&pb, &pe);
			if (pe - pb >= 2 && tolower((unsigned char)pb[0]) == 'q' && pb[1] == '=') {
				double q;
				if (parse_q(pb + 2, pe, &q))
					c->q = q;
			}
			semi = next;
		}
		if (!*end)
			break;
		h = end + 1;
	}
	return n;
}

static bool identity_rejected(const struct coding *c, size_t n)
{
	bool rejected = false, accepted = false, wildcard_rejected = false;
	for (size_t i = 0; i < n; i++) {
		if (streq(c[i].name, "identity")) {
			if (c[i].q == 0)
				rejected = true;
			else
				accepted = true;
		} else if (streq(c[i].name, "*") && c[i].q == 0) {
			wildcard_rejected = true;
		}
	}
	return rejected || (wildcard_rejected && !accepted);
}

bool files_identity_acceptable(const char *header)
{
	struct coding c[32];
	size_t n = codings_parse(header, c, ELEMENTSOF(c));
	return !identity_rejected(c, n);
}

enum files_encoding files_accept_encoding(const char *header)
{
	struct coding c[32];
	if (isempty(header))
		return FILES_ENCODING_IDENTITY;
	size_t n = codings_parse(header, c, ELEMENTSOF(c));
	bool rejected = identity_rejected(c, n);

	/* Stable insertion sort by q, highest first. */
	for (size_t i = 1; i < n; i++) {
		struct coding t = c[i];
		size_t j = i;
		for (; j > 0 && c[j - 1].q < t.q; j--)
			c[j] = c[j - 1];
		c[j] = t;
	}
	for (size_t i = 0; i < n; i++) {
		if (c[i].q == 0)
			continue;
		if (streq(c[i].name, "identity"))
			return FILES_ENCODING_IDENTITY;
		if (streq(c[i].name, "*"))
			return rejected ? FILES_ENCODING_GZIP : FILES_ENCODING_IDENTITY;
		if (streq(c[i].name, "gzip"))
			return FILES_ENCODING_GZIP;
	}
	return rejected ? FILES_ENCODING_UNACCEPTABLE : FILES_ENCODING_IDENTITY;
}

/* ---- metadata ---- */

int upload_metadata_add(json_t *meta, const char *key, const char *value)
{
	if (isempty(key))
		return 0;
	_cleanup_free_ char *k = strdup(key);
	if (!k)
		return -ENOMEM;
	for (char *p = k; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (json_object_get(meta, k))
		return 0;
	json_t *v = json_string_nocheck(value ? value : "");
	if (!v || json_object_set_new_nocheck(meta, k, v) < 0)
		return -ENOMEM;
	return 0;
}

static int printable_check(const char *label, const char *s, struct upload_error *err)
{
	for (size_t i = 0; s[i]; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c > 0x7e) {
			err->status = 400;
			snprintf(err->message, sizeof(err->message),
				 "invalid metadata: metadata %s contains non-printable-ASCII byte "
				 "0x%02x "
				 "at offset %zu",
				 label, c, i);
			return -EINVAL;
		}
	}
	return 0;
}

int upload_metadata_validate(const json_t *meta, struct upload_error *err)
{
	const char *k;
	json_t *v;
	size_t total = 0;
	if (!meta)
		return 0;
	json_object_foreach ((json_t *)meta, k, v) {
		const char *s = json_string_value(v);
		char label[64];
		if (!*k) {
			err->status = 400;
			snprintf(err->message, sizeof(err->message),
				 "invalid metadata: metadata key must not be empty");
			return -EINVAL;
		}
		if (strlen(k) > UPLOAD_METADATA_MAX_KEY) {
			err->status = 400;
			snprintf(err->message, sizeof(err->message),
				 "invalid metadata: metadata key \"%.64s...\" exceeds %d bytes", k,
				 UPLOAD_METADATA_MAX_KEY);
			return -EINVAL;
		}
		if (printable_check("key", k, err) < 0)
			return -EINVAL;
		if (!s) {
			err->status = 400;
			snprintf(
			    err->message, sizeof(err->message),
			    "invalid metadata: metadata value for key \"%.40s\" is not a string",
			    k);
			return -EINVAL;
		}
		snprintf(label, sizeof(label), "value for key \"%.40s\"", k);
		if (printable_check(label, s, err) < 0)
			return -EINVAL;
		total += strlen(UPLOAD_METADATA_XATTR) + strlen(k) + json_string_length(v);
	}
	if (total > UPLOAD_METADATA_MAX_TOTAL) {
		err->status = 400;
		snprintf(err->message, sizeof(err->message),
			 "invalid metadata: total metadata size %zu exceeds %d bytes", total,
			 UPLOAD_METADATA_MAX_TOTAL);
		return -EINVAL;
	}
	return 0;
}

#define XATTR_LIST_MAX_BYTES (64 * 1024) /* the kernel's XATTR_LIST_MAX */

/* The xattr name list of fd (malloc'd in *out, NUL-separated). Sized with flistxattr(fd, NULL,
 * 0) and retried when the list grows in between. Returns its length or -errno. */
static ssize_t xattr_list(int fd, char **out)
{
	for (int attempt = 0; attempt < 4; attempt++) {
		ssize_t size = flistxattr(fd, NULL, 0);
		if (size < 0)
			return -errno;
		if (size == 0) {
			*out = NULL;
			return 0;
		}
		size_t cap = MIN((size_t)size + 256, (size_t)XATTR_LIST_MAX_BYTES);
		_cleanup_free_ char *names = malloc(cap);
		if (!names)
			return -ENOMEM;
		ssize_t n = flistxattr(fd, names, cap);
		if (n >= 0) {
			*out = TAKE_PTR(names);
			return n;
		}
		if (errno != ERANGE)
			return -errno;
	}
	return -ERANGE;
}

/* Drops every user.e2b.* xattr and sets the new ones. ENOTSUP (no xattrs here) is not an error:
 * the file was written, as envd does. */
static int metadata_write(int fd, const json_t *meta)
{
	_cleanup_free_ char *names = NULL;
	ssize_t n = xattr_list(fd, &names);
	if (n == -ENOTSUP || n == -EOPNOTSUPP)
		return 0;
	if (n < 0)
		return (int)n;
	for (ssize_t i = 0; n > 0 && i < n; i += (ssize_t)strlen(names + i) + 1) {
		const char *name = names + i;
		if (!startswith(name, UPLOAD_METADATA_XATTR))
			continue;
		if (meta && json_object_get(meta, name + strlen(UPLOAD_METADATA_XATTR)))
			continue;
		if (fremovexattr(fd, name) < 0 && errno != ENODATA)
			return -errno;
	}
	const char *k;
	json_t *v;
	json_object_foreach ((json_t *)meta, k, v) {
		char name[XATTR_NAME_MAX + 1];
		snprintf(name, sizeof(name), UPLOAD_METADATA_XATTR "%s", k);
		if (fsetxattr(fd, name, json_string_value(v), json_string_length(v), 0) < 0) {
			if (errno == ENOTSUP || errno == EOPNOTSUPP)
				return 0;
			return -errno;
		}
	}
	return 0;
}

/* The user.e2b.* set as persisted, or NULL when empty or unreadable (a response detail only). */
static json_t *metadata_read(int fd)
{
	_cleanup_free_ char *names = NULL;
	ssize_t n = xattr_list(fd, &names);
	json_t *out = NULL;
	for (ssize_t i = 0; n > 0 && i < n; i += (ssize_t)strlen(names + i) + 1) {
		const char *name = names + i;
		char value[UPLOAD_METADATA_MAX_TOTAL + 1];
		if (!startswith(name, UPLOAD_METADATA_XATTR))
			continue;
		ssize_t vl = fgetxattr(fd, name, value, sizeof(value) - 1);
		if (vl < 0)
			continue;
		value[vl] = 0;
		json_t *s = json_stringn(value, (size_t)vl); /* NULL unless valid UTF-8 */
		if (!s || (!out && !(out = json_object()))) {
			json_decref(s);
			continue;
		}
		if (json_object_set_new(out, name + strlen(UPLOAD_METADATA_XATTR), s) < 0)
			continue;
	}
	return out;
}

/* ---- target files ---- */

/* mkdirat as the user; a directory the user can reach but not write (e.g. "/") is created by
 * envd itself when it is root, and handed to the user, as envd's EnsureDirs does. */
static int make_dir(struct upload *up, int dirfd, const char *name)
{
	if (mkdirat(dirfd, name, 0755) >= 0)
		return 0;
	int r = -errno;
	if ((r != -EACCES && r != -EPERM) || geteuid() != 0)
		return r;
	fsid_leave();
	r = mkdirat(dirfd, name, 0755) < 0 ? -errno : 0;
	if (r == 0 && fchownat(dirfd, name, up->user.uid, up->user.gid, AT_SYMLINK_NOFOLLOW) < 0)
		r = -errno;
	fsid_enter(&up->user);
	return r;
}

/* Opens the parent directory of `abs` (creating what is missing); *base points into *copy. */
static int open_parent(struct upload *up, const char *abs, char **copy, const char **base)
{
	char *c = strdup(abs + strspn(abs, "/"));
	if (!c)
		return -ENOMEM;
	*copy = c;
	char *slash = strrchr(c, '/');
	*base = slash ? slash + 1 : c;
	if (!**base)
		return -EISDIR; /* "/" itself */

	_cleanup_close_ int fd = openat(up->rootfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (!slash)
		return TAKE_FD(fd);
	*slash = 0;
	char *save = NULL;
	for (char *comp = strtok_r(c, "/", &save); comp; comp = strtok_r(NULL, "/", &save)) {
		int nfd = openat(fd, comp, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (nfd < 0 && errno == ENOENT) {
			int r = make_dir(up, fd, comp);
			if (r < 0 && r != -EEXIST)
				return r;
			nfd = openat(fd, comp, O_PATH | O_DIRECTORY | O_CLOEXEC);
		}
		if (nfd < 0)
			return -errno;
		close(fd);
		fd = nfd;
	}
	*slash = '/'; /* strtok_r only cut inside the parent part */
	return TAKE_FD(fd);
}

static int file_open(struct upload *up, const char *abs)
{
	_cleanup_free_ char *copy = NULL;
	const char *base;
	_cleanup_close_ int dirfd = open_parent(up, abs, &copy, &base);
	if (dirfd < 0)
		return fail(up, dirfd == -EISDIR ? 400 : files_errno_status(dirfd), dirfd,
			    "error ensuring directories for '%s': %s", abs, strerror(-dirfd));

	/* No O_TRUNC until the target is known to be a regular file, and O_NONBLOCK so a FIFO
	 * cannot hang the request. A final symlink is followed with the user's permissions. */
	_cleanup_close_ int fd =
	    openat(dirfd, base, O_WRONLY | O_CREAT | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0666);
	if (fd < 0) {
		int r = -errno;
		if (r == -EISDIR)
			return fail(up, 400, r, "path is a directory: %s", abs);
		if (r == -ENOSPC)
			return fail(up, 507, r, "not enough inodes available: %s",
				    strerror(ENOSPC));
		return fail(up, files_errno_status(r), r, "error opening file '%s': %s", abs,
			    strerror(-r));
	}
	struct stat st;
	if (fstat(fd, &st) < 0)
		return fail(up, 500, -errno, "error opening file '%s': %s", abs, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return fail(up, 400, -EINVAL, "path is not a regular file: %s", abs);
	if (ftruncate(fd, 0) < 0 || fcntl(fd, F_SETFL, 0) < 0) {
		int r = -errno;
		return fail(up, files_errno_status(r), r, "error truncating file '%s': %s", abs,
			    strerror(-r));
	}
	/* An existing file is handed to the uploader, as envd does; only a file with one name,
	 * so a hard link cannot carry ownership elsewhere. */
	if (geteuid() == 0 && st.st_nlink <= 1 &&
	    (st.st_uid != up->user.uid || st.st_gid != up->user.gid)) {
		fsid_leave();
		int r = fchown(fd, up->user.uid, up->user.gid) < 0 ? -errno : 0;
		fsid_enter(&up->user);
		if (r < 0)
			return fail(up, 500, r, "error changing file ownership: %s", strerror(-r));
	}
	free(up->cur_path);
	up->cur_path = strdup(abs);
	if (!up->cur_path)
		return fail(up, 500, -ENOMEM, "out of memory");
	up->fd = TAKE_FD(fd);
	up->cur_active = true;
	return 0;
}

static int file_write(struct upload *up, const void *buf, size_t len)
{
	if (up->fd < 0 || len == 0)
		return 0;
	int r = write_all(up->fd, buf, len);
	if (r == -ENOSPC || r == -EDQUOT)
		return fail(up, 507, r, "not enough disk space available");
	if (r < 0)
		return fail(up, 500, r, "error writing file: %s", strerror(-r));
	return 0;
}

/* Sets the metadata and records the entry of the file being written. */
static int file_close(struct upload *up)
{
	if (!up->cur_active)
		return 0;
	up->cur_active = false;
	_cleanup_close_ int fd = TAKE_FD(up->fd);
	int r = metadata_write(fd, up->metadata);
	if (r == -ENOSPC || r == -EDQUOT)
		return fail(up, 507, r, "not enough space for file metadata: %s", strerror(-r));
	if (r < 0)
		return fail(up, 500, r, "error writing file metadata: %s", strerror(-r));

	const char *base = strrchr(up->cur_path, '/');
	json_t *e = json_pack("{s:s, s:s, s:s}", "path", up->cur_path, "name",
			      base ? base + 1 : up->cur_path, "type", "file");
	if (!e)
		return fail(up, 500, -ENOMEM, "out of memory");
	json_t *meta = metadata_read(fd);
	if (meta)
		json_object_set_new(e, "metadata", meta);
	if (json_array_append_new(up->entries, e) < 0)
		return fail(up, 500, -ENOMEM, "out of memory");
	return 0;
}

/* ---- the upload ---- */

int upload_new(int rootfd, const struct user_info *u, const json_t *metadata, bool gzip,
	       const char *raw_path, struct upload **out)
{
	_cleanup_(upload_freep) struct upload *up = NULL;
	up = calloc(1, sizeof(*up));
	if (!up)
		return -ENOMEM;
	up->fd = -1;
	up->rootfd = rootfd;
	up->user = *u;
	up->entries = json_array();
	if (!up->entries)
		return -ENOMEM;
	if (metadata && json_object_size(metadata) > 0) {
		up->metadata = json_deep_copy(metadata);
		if (!up->metadata)
			return -ENOMEM;
	}
	if (raw_path && !(up->raw_path = strdup(raw_path)))
		return -ENOMEM;
	if (gzip) {
		up->gzip = true;
		up->zout = malloc(INFLATE_CHUNK);
		if (!up->zout || inflateInit2(&up->z, 16 + MAX_WBITS) != Z_OK)
			return -ENOMEM;
		up->z_ready = true;
	}
	*out = TAKE_PTR(up);
	return 0;
}

struct upload *upload_free(struct upload *up)
{
	if (!up)
		return NULL;
	if (up->z_ready)
		inflateEnd(&up->z);
	free(up->zout);
	if (up->fd >= 0)
		close(up->fd);
	json_decref(up->metadata);
	json_decref(up->entries);
	free(up->raw_path);
	free(up->fixed_path);
	free(up->cur_path);
	free(up->part_name);
	free(up->part_filename);
	free(up);
	return NULL;
}

void upload_set_multipart(struct upload *up, const char *fixed_path, upload_consumer_fn fn,
			  void *ctx)
{
	free(up->fixed_path);
	up->fixed_path = fixed_path ? strdup(fixed_path) : NULL;
	up->consumer = fn;
	up->consumer_ctx = ctx;
}

/* Inflated (or plain) body bytes: to the multipart consumer, or the raw file. */
static int consume(struct upload *up, const char *buf, size_t len)
{
	if (up->consumer) {
		int r = up->consumer(up->consumer_ctx, buf, len);
		if (r < 0)
			return up->err.status ? r
					      : fail(up, 400, r,
						     "error reading form: malformed "
						     "multipart body");
		return 0;
	}
	if (!up->cur_active) {
		if (!up->raw_path)
			return fail(up, 400, -EINVAL,
				    "path query parameter is required for raw "
				    "body upload");
		if (json_array_size(up->entries) > 0)
			return 0; /* already finished */
		int r = file_open(up, up->raw_path);
		if (r < 0)
			return r;
	}
	return file_write(up, buf, len);
}

static int inflate_feed(struct upload *up, const unsigned char *buf, size_t len)
{
	up->z.next_in = (unsigned char *)buf;
	up->z.avail_in = (uInt)len;
	while (up->z.avail_in > 0) {
		if (up->z_member_done) {
			/* Concatenated gzip members form one stream (RFC 1952). */
			inflateReset(&up->z);
			up->z_member_done = false;
		}
		up->z.next_out = up->zout;
		up->z.avail_out = INFLATE_CHUNK;
		int zr = inflate(&up->z, Z_NO_FLUSH);
		if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR)
			return fail(up, 400, -EINVAL, "error decompressing request body: gzip: %s",
				    up->z.msg ? up->z.msg : "invalid data");
		size_t got = INFLATE_CHUNK - up->z.avail_out;
		if (got > 0) {
			int r = consume(up, (const char *)up->zout, got);
			if (r < 0)
				return r;
		}
		if (zr == Z_STREAM_END)
			up->z_member_done = true;
		else if (zr == Z_BUF_ERROR && got == 0)
			break;
	}
	return 0;
}

int upload_feed(struct upload *up, const void *buf, size_t len)
{
	if (up->err.status)
		return -EIO;
	if (len > UINT_MAX)
		return fail(up, 400, -E2BIG, "request body chunk too large");
	if (up->gzip)
		return inflate_feed(up, buf, len);
	return consume(up, buf, len);
}

static int part_target(struct upload *up, const char *filename, char **abs)
{
	if (up->fixed_path) {
		*abs = strdup(up->fixed_path);
		return *abs ? 0 : fail(up, 500, -ENOMEM, "out of memory");
	}
	if (isempty(filename))
		return fail(up, 400, -EINVAL,
			    "error getting multipart custom part file name: filename not found in "
			    "Content-Disposition header");
	int r = path_expand(filename, &up->user, NULL, abs);
	if (r < 0)
		return fail(up, 400, r, "error resolving path: %s", strerror(-r));
	return 0;
}

static int duplicate_check(struct upload *up, const char *abs)
{
	size_t i;
	json_t *e;
	bool dup = false;
	json_array_foreach (up->entries, i, e)
		if (streq(json_string_value(json_object_get(e, "path")), abs))
			dup = true;
	if (!dup)
		return 0;
	_cleanup_strbuf_ struct strbuf others = { 0 };
	size_t count = 0;
	json_array_foreach (up->entries, i, e) {
		const char *p = json_string_value(json_object_get(e, "path"));
		if (streq(p, abs) || others.len > 256)
			continue;
		strbuf_printf(&others, "%s%s", count++ ? ", " : "", p);
	}
	return fail(up, 400, -EEXIST,
		    "you cannot upload multiple files to the same path '%s' in one upload request, "
		    "only the first specified file was uploaded%s%s",
		    abs, count > 1 ? ", also the following files were uploaded: " : "",
		    count > 1 ? others.data : "");
}

int upload_part(struct upload *up, const char *name, const char *filename, const char *data,
		uint64_t off, size_t size)
{
	if (up->err.status)
		return -EIO;
	/* A continuation must be the same part: same field name and same filename. An empty
	 * "file" part followed by another field with that filename starts a new (skipped) part. */
	bool continues =
	    off == 0 && up->parts > 0 && up->part_empty_so_far &&
	    streq(name ? name : "", up->part_name ? up->part_name : "") &&
	    streq(filename ? filename : "", up->part_filename ? up->part_filename : "");
	if (off == 0 && !continues) {
		free(up->part_name);
		free(up->part_filename);
		up->part_name = strdup(name ? name : "");
		up->part_filename = strdup(filename ? filename : "");
		if (!up->part_name || !up->part_filename)
			return fail(up, 500, -ENOMEM, "out of memory");
		int r = file_close(up);
		if (r < 0)
			return r;
		if (++up->parts > UPLOAD_MAX_PARTS)
			return fail(up, 400, -E2BIG,
				    "too many parts in one upload request (max %d)",
				    UPLOAD_MAX_PARTS);
		up->skip_part = !streq(name ? name : "", "file");
		if (up->skip_part)
			return 0;
		_cleanup_free_ char *abs = NULL;
		r = part_target(up, filename, &abs);
		if (r < 0)
			return r;
		r = duplicate_check(up, abs);
		if (r < 0)
			return r;
		r = file_open(up, abs);
		if (r < 0)
			return r;
	}
	up->part_empty_so_far = off == 0 && size == 0;
	if (up->skip_part || !up->cur_active)
		return 0;
	return file_write(up, data, size);
}

int upload_finish(struct upload *up)
{
	if (up->err.status)
		return -EIO;
	if (up->gzip && !up->z_member_done)
		return fail(up, 400, -EINVAL,
			    up->z.total_in == 0
				? "error decompressing request body: failed to create "
				  "gzip reader: EOF"
				: "error decompressing request body: unexpected EOF");
	if (!up->consumer && !up->cur_active && json_array_size(up->entries) == 0) {
		/* An empty raw body still creates (or truncates) the file. */
		int r = consume(up, "", 0);
		if (r < 0)
			return r;
	}
	return file_close(up);
}

json_t *upload_result(struct upload *up)
{
	return up->entries;
}

const struct upload_error *upload_error(const struct upload *up)
{
	return &up->err;
}
