/* FROM images: Debian suites, OCI layouts, docker archives and registries → cached layers. */
#include <fcntl.h>
#include <linux/openat2.h>
#include <nettle/sha2.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include "image.h"
#include "registry.h"
#include "tar.h"
#include "template.h"
#include "common/util.h"
#include "json/jsonx.h"

#define IMAGE_DEFAULT_CACHE "/var/cache/hutch"
#define IMAGE_LAYERS_DIR    "image-layers"
#define DEBIAN_RECIPE_V	    1
#define IMAGE_MAX_DEPTH	    2 /* index → index → manifest at most */

struct fetch {
	const char *ref;
	const struct image_opts *o;
	struct image_opts defaults;
	char *cache;	 /* absolute */
	char *layer_dir; /* <cache>/image-layers, absolute */
	struct image *img;
	struct image_error *err;
};

static _printf_(2, 3) void progress(struct fetch *f, const char *fmt, ...)
{
	if (!f->o->log)
		return;
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	f->o->log(f->o->log_userdata, line);
}

void image_clear(struct image *img)
{
	if (!img)
		return;
	for (size_t i = 0; i < img->n_layers; i++)
		free(img->layers[i]);
	free(img->layers);
	json_decref(img->config);
	memset(img, 0, sizeof(*img));
}

static int add_layer(struct fetch *f, char *path /* taken */)
{
	char **v = reallocarray(f->img->layers, f->img->n_layers + 1, sizeof(char *));
	if (!v) {
		free(path);
		return image_fail(f->err, -ENOMEM, "out of memory");
	}
	f->img->layers = v;
	f->img->layers[f->img->n_layers++] = path;
	return 0;
}

/* ---- Debian suites ---------------------------------------------------------------------- */

static const struct {
	const char *tag, *suite;
} debian_tags[] = {
	{ "", "bookworm" },	    { "latest", "bookworm" }, { "stable", "bookworm" },
	{ "bookworm", "bookworm" }, { "12", "bookworm" },     { "bullseye", "bullseye" },
	{ "11", "bullseye" },	    { "trixie", "trixie" },   { "13", "trixie" },
};

bool image_ref_debian(const char *ref, const char **suite, bool *slim)
{
	static const char *const prefixes[] = { "docker.io/library/debian", "docker.io/debian",
						"library/debian", "debian" };
	const char *rest = NULL;
	for (size_t i = 0; i < ELEMENTSOF(prefixes) && !rest; i++)
		if (startswith(ref, prefixes[i]))
			rest = ref + strlen(prefixes[i]);
	if (!rest || (*rest && *rest != ':'))
		return false;
	if (*rest == ':')
		rest++;
	char tag[32];
	size_t n = strlen(rest);
	bool is_slim = n >= 5 && streq(rest + n - 5, "-slim");
	if (is_slim)
		n -= 5;
	if (n >= sizeof(tag) || (is_slim && n == 0))
		return false;
	memcpy(tag, rest, n);
	tag[n] = '\0';
	for (size_t i = 0; i < ELEMENTSOF(debian_tags); i++)
		if (streq(tag, debian_tags[i].tag)) {
			if (suite)
				*suite = debian_tags[i].suite;
			if (slim)
				*slim = is_slim;
			return true;
		}
	return false;
}

/* Run in the new root filesystem, as the official images do: no apt lists (RUN apt-get update
 * first), no caches; -slim also drops documentation, man pages and translations and keeps dpkg
 * from installing them later. debootstrap copied the build machine's /etc/hostname and
 * /etc/resolv.conf: placeholders instead (the runtime writes each sandbox's own). */
#define DEBIAN_RUN_PLACEHOLDERS                                                              \
	"echo sandbox > /etc/hostname && "                                                   \
	"printf '127.0.0.1\\tlocalhost\\n::1\\t\\tlocalhost ip6-localhost ip6-loopback\\n' " \
	"> /etc/hosts && rm -f /etc/resolv.conf && : > /etc/resolv.conf"
static const char *const debian_run_common[] = {
	DEBIAN_RUN_PLACEHOLDERS,
	"apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* "
	"/var/log/dpkg.log /var/log/bootstrap.log /var/cache/ldconfig/aux-cache",
};
static const char *const debian_run_slim[] = {
	DEBIAN_RUN_PLACEHOLDERS,
	"printf '%s\\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' "
	"'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' "
	"'path-exclude /usr/share/locale/*' 'path-include /usr/share/locale/locale.alias' "
	"'path-exclude /usr/share/lintian/*' > /etc/dpkg/dpkg.cfg.d/docker-slim",
	"find /usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete; "
	"find /usr/share/doc -mindepth 1 -type d -empty -delete; "
	"rm -rf /usr/share/man/* /usr/share/info/* /usr/share/lintian/*; "
	"find /usr/share/locale -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +",
	"apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* "
	"/var/log/dpkg.log /var/log/bootstrap.log /var/cache/ldconfig/aux-cache",
};

static int debian_name(const char *suite, bool slim, char *out, size_t size)
{
	/* The recipe's text is in the name: changing it builds a new layer beside the old one. */
	struct sha256_ctx ctx;
	uint8_t d[SHA256_DIGEST_SIZE];
	sha256_init(&ctx);
	const char *const *run = slim ? debian_run_slim : debian_run_common;
	size_t n = slim ? ELEMENTSOF(debian_run_slim) : ELEMENTSOF(debian_run_common);
	for (size_t i = 0; i < n; i++)
		sha256_update(&ctx, strlen(run[i]) + 1, (const uint8_t *)run[i]);
	sha256_digest(&ctx, sizeof(d), d);
	return snprintf(out, size, "debian-%s%s-v%d-%02x%02x%02x%02x%02x%02x", suite,
			slim ? "-slim" : "", DEBIAN_RECIPE_V, d[0], d[1], d[2], d[3], d[4], d[5]);
}

/* The last non-hutch line of a build log: debootstrap's own complaint. */
static void log_tail_line(const char *path, char *out, size_t size)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	char buf[4096];
	if (fd < 0)
		return;
	off_t end = lseek(fd, 0, SEEK_END);
	ssize_t n = pread(fd, buf, sizeof(buf) - 1,
			  end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0);
	if (n <= 0)
		return;
	buf[n] = '\0';
	char *save = NULL;
	for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (!startswith(line, "hutch: ") && !startswith(line, "----"))
			snprintf(out, size, "%s", line);
}

static int fetch_debian(struct fetch *f, const char *suite, bool slim)
{
	char name[96];
	debian_name(suite, slim, name, sizeof(name));
	_cleanup_free_ char *mirror = NULL;
	if (!f->o->mirror && template_apt_mirror("/", suite, &mirror) < 0)
		/* The machine's own suite's mirror serves the others too. */
		(void)template_apt_mirror("/", "bookworm", &mirror);
	struct rootfs_config cfg = {
		.cache_dir = f->cache,
		.mirror = f->o->mirror ? f->o->mirror : mirror,
		.quiet = false,
	};
	char what[64];
	snprintf(what, sizeof(what), "debian:%s%s", suite, slim ? "-slim" : "");
	struct rootfs_recipe rc = {
		.name = name,
		.what = what,
		.suite = suite,
		.variant = "minbase",
		.run = slim ? debian_run_slim : debian_run_common,
		.n_run = slim ? ELEMENTSOF(debian_run_slim) : ELEMENTSOF(debian_run_common),
	};
	progress(f, "FROM %s: Debian %s (minbase%s) with debootstrap, cached as %s", f->ref, suite,
		 slim ? ", slim" : "", name);
	char *layer = NULL;
	int r = template_rootfs_ensure(&cfg, &rc, &layer);
	if (r < 0) {
		char path[512], tail[256] = "";
		snprintf(path, sizeof(path), "%s/templates/%s.log", f->cache, name);
		log_tail_line(path, tail, sizeof(tail));
		return image_fail(f->err, r, "debootstrap of Debian %s failed (%s): %s (log: %s)",
				  suite, strerror(-r), tail, path);
	}
	snprintf(f->img->id, sizeof(f->img->id), "%s", name);
	f->img->config = json_pack(
	    "{s:[s],s:[s]}", "Env",
	    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "Cmd", "bash");
	if (!f->img->config) {
		free(layer);
		return image_fail(f->err, -ENOMEM, "out of memory");
	}
	return add_layer(f, layer);
}

/* ---- Layers ----------------------------------------------------------------------------- */

/* Hashes the rest of fd from offset 0 into "sha256:<hex>", then rewinds it. */
static int fd_digest(int fd, char out[OCI_DIGEST_LEN + 1])
{
	struct sha256_ctx ctx;
	sha256_init(&ctx);
	if (lseek(fd, 0, SEEK_SET) < 0)
		return -errno;
	_cleanup_free_ uint8_t *buf = malloc(1 << 16);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t n = read(fd, buf, 1 << 16);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		sha256_update(&ctx, (size_t)n, buf);
	}
	uint8_t d[SHA256_DIGEST_SIZE];
	sha256_digest(&ctx, sizeof(d), d);
	memcpy(out, "sha256:", 7);
	for (size_t i = 0; i < sizeof(d); i++)
		snprintf(out + 7 + 2 * i, 3, "%02x", d[i]);
	return lseek(fd, 0, SEEK_SET) < 0 ? -errno : 0;
}

static char *layer_path(struct fetch *f, const char *digest)
{
	char *p = NULL;
	return asprintf(&p, "%s/%s", f->layer_dir, digest + 7) < 0 ? NULL : p;
}

static bool is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void remove_path(const char *path)
{
	_cleanup_free_ char *copy = strdup(path);
	if (!copy)
		return;
	char *slash = strrchr(copy, '/');
	if (!slash)
		return;
	*slash = '\0';
	_cleanup_close_ int dfd = open(copy, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0)
		rm_rf_at(dfd, slash + 1);
}

/*
 * Extracts the layer archive in fd (its digest already verified) into the cache under its
 * digest: into a temporary directory first, visible by an atomic rename. A concurrent
 * extraction of the same layer may win the rename; its result is as good as ours.
 */
static int layer_extract(struct fetch *f, const char *digest, int fd, const char *what)
{
	_cleanup_free_ char *final = layer_path(f, digest), *tmp = NULL;
	if (!final || asprintf(&tmp, "%s/.tmp-%.12s-XXXXXX", f->layer_dir, digest + 7) < 0)
		return image_fail(f->err, -ENOMEM, "out of memory");
	if (!mkdtemp(tmp))
		return image_fail(f->err, -errno, "cannot create a directory in %s: %s",
				  f->layer_dir, strerror(errno));
	/* The top layer's root is the sandbox's "/". */
	_cleanup_close_ int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fchmod(dfd, 0755) < 0) {
		int r = -errno;
		remove_path(tmp);
		return image_fail(f->err, r, "cannot open %s: %s", tmp, strerror(-r));
	}
	struct tar_opts o = {
		.oci_whiteouts = true, .max_bytes = f->o->max_layer_bytes, .uid = -1, .gid = -1
	};
	struct tar_stats st;
	struct tar_error te = { { 0 } };
	uint64_t start = now_usec();
	int r = tar_extract_fd(fd, dfd, &o, &st, &te);
	if (r < 0) {
		remove_path(tmp);
		return image_fail(f->err, r, "%s %s: %s", what, digest, te.message);
	}
	if (rename(tmp, final) < 0) {
		r = -errno;
		remove_path(tmp);
		if (!is_dir(final))
			return image_fail(f->err, r, "cannot store layer %s: %s", digest,
					  strerror(-r));
	}
	progress(f, "%s %.19s: %llu files, %.1f MB, %llu whiteouts in %.1f s", what, digest,
		 (unsigned long long)st.entries, (double)st.bytes / 1e6,
		 (unsigned long long)st.whiteouts, (double)(now_usec() - start) / 1e6);
	return 0;
}

/* ---- Local files ------------------------------------------------------------------------ */

static int open_beneath(int dfd, const char *rel, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	long fd = syscall(SYS_openat2, dfd, rel, &how, sizeof(how));
	return fd < 0 ? -errno : (int)fd;
}

/* Reads a small regular file beneath dfd into a NUL-terminated buffer. */
static int read_beneath(int dfd, const char *rel, size_t max, char **buf, size_t *len)
{
	_cleanup_close_ int fd = open_beneath(dfd, rel, O_RDONLY | O_NOFOLLOW);
	if (fd < 0)
		return fd;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	if ((uint64_t)st.st_size > max)
		return -EFBIG;
	_cleanup_free_ char *b = malloc((size_t)st.st_size + 1);
	if (!b)
		return -ENOMEM;
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, b + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		got += (size_t)n;
	}
	b[got] = '\0';
	*buf = TAKE_PTR(b);
	*len = got;
	return 0;
}

/* A blob of an OCI layout, read and checked against its digest. */
static int read_blob(struct fetch *f, int dfd, const char *digest, size_t max, char **buf,
		     size_t *len)
{
	char rel[96], got[OCI_DIGEST_LEN + 1];
	snprintf(rel, sizeof(rel), "blobs/sha256/%s", digest + 7);
	int r = read_beneath(dfd, rel, max, buf, len);
	if (r < 0)
		return image_fail(f->err, r, "%s: cannot read %s: %s", f->ref, rel, strerror(-r));
	oci_digest_of(*buf, *len, got);
	if (!streq(got, digest)) {
		free(TAKE_PTR(*buf));
		return image_fail(f->err, -EBADMSG, "%s: %s does not match its digest", f->ref,
				  rel);
	}
	return 0;
}

/* Resolves path and checks it lies beneath one of the allowed directories. */
static int local_path(struct fetch *f, const char *path, char **real)
{
	if (!f->o->local_dirs)
		return image_fail(f->err, -EPERM,
				  "%s: images from local paths are not enabled on this server",
				  f->ref);
	if (path[0] != '/')
		return image_fail(f->err, -EINVAL, "%s: the path must be absolute", f->ref);
	_cleanup_free_ char *rp = realpath(path, NULL);
	if (!rp)
		return image_fail(f->err, -errno, "%s: %s", f->ref, strerror(errno));
	for (const char *const *d = f->o->local_dirs; *d; d++) {
		_cleanup_free_ char *rd = realpath(*d, NULL);
		size_t n = rd ? strlen(rd) : 0;
		if (rd && strncmp(rp, rd, n) == 0 && (rp[n] == '/' || rp[n] == '\0' || n == 1)) {
			*real = TAKE_PTR(rp);
			return 0;
		}
	}
	return image_fail(f->err, -EPERM,
			  "%s: the path is outside the directories allowed for "
			  "local images",
			  f->ref);
}

static int apply_config(struct fetch *f, const char *buf, size_t len, size_t n_layers,
			json_t **diff_ids)
{
	json_t *ids = NULL;
	int r = oci_config_parse(buf, len, &f->img->config, &ids, f->err);
	if (r < 0)
		return r;
	if (json_array_size(ids) != n_layers) {
		json_decref(ids);
		return image_fail(f->err, -EINVAL,
				  "%s: the config lists %zu layers, the manifest %zu", f->ref,
				  json_array_size(ids), n_layers);
	}
	if (diff_ids)
		*diff_ids = ids;
	else
		json_decref(ids);
	return 0;
}

static int fetch_oci_layout(struct fetch *f, const char *spec)
{
	_cleanup_free_ char *path = strdup(spec), *real = NULL;
	if (!path)
		return image_fail(f->err, -ENOMEM, "out of memory");
	/* oci:/dir:ref — the ref is what follows the last ':' when it has no '/'. */
	const char *tag = NULL;
	char *colon = strrchr(path, ':');
	if (colon && !strchr(colon, '/')) {
		*colon = '\0';
		tag = colon + 1;
	}
	int r = local_path(f, path, &real);
	if (r < 0)
		return r;
	_cleanup_close_ int dfd = open(real, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return image_fail(f->err, -errno, "%s: %s", f->ref, strerror(errno));
	_cleanup_free_ char *doc = NULL;
	size_t len;
	if ((r = read_beneath(dfd, "index.json", OCI_MAX_DOCUMENT, &doc, &len)) < 0)
		return image_fail(f->err, r, "%s: no readable index.json (%s): not an OCI layout",
				  f->ref, strerror(-r));
	struct oci_descriptor d = { 0 };
	if ((r = oci_index_select(doc, len, oci_host_arch(), isempty(tag) ? NULL : tag, &d,
				  f->err)) < 0)
		return r;
	/* Follow nested indexes to a manifest. */
	for (int depth = 0;; depth++) {
		free(TAKE_PTR(doc));
		char digest[OCI_DIGEST_LEN + 1];
		memcpy(digest, d.digest, sizeof(digest));
		oci_descriptor_clear(&d);
		if ((r = read_blob(f, dfd, digest, OCI_MAX_DOCUMENT, &doc, &len)) < 0)
			return r;
		enum oci_kind kind;
		if ((r = oci_document_kind(doc, len, NULL, &kind, f->err)) < 0)
			return r;
		if (kind == OCI_KIND_MANIFEST) {
			snprintf(f->img->id, sizeof(f->img->id), "%s", digest);
			break;
		}
		if (depth >= IMAGE_MAX_DEPTH)
			return image_fail(f->err, -EINVAL, "%s: indexes nested too deep", f->ref);
		if ((r = oci_index_select(doc, len, oci_host_arch(), NULL, &d, f->err)) < 0)
			return r;
	}
	_cleanup_(oci_manifest_clear) struct oci_manifest m = { 0 };
	if ((r = oci_manifest_parse(doc, len, &m, f->err)) < 0)
		return r;
	_cleanup_free_ char *cfg = NULL;
	size_t cfg_len;
	if ((r = read_blob(f, dfd, m.config.digest, OCI_MAX_CONFIG, &cfg, &cfg_len)) < 0 ||
	    (r = apply_config(f, cfg, cfg_len, m.n_layers, NULL)) < 0)
		return r;
	for (size_t i = 0; i < m.n_layers; i++) {
		const char *digest = m.layers[i].digest;
		_cleanup_free_ char *dest = layer_path(f, digest);
		if (!dest)
			return image_fail(f->err, -ENOMEM, "out of memory");
		if (!is_dir(dest)) {
			char rel[96], got[OCI_DIGEST_LEN + 1], what[48];
			snprintf(rel, sizeof(rel), "blobs/sha256/%s", digest + 7);
			_cleanup_close_ int fd = open_beneath(dfd, rel, O_RDONLY | O_NOFOLLOW);
			if (fd < 0)
				return image_fail(f->err, fd, "%s: cannot open %s: %s", f->ref, rel,
						  strerror(-fd));
			if ((r = fd_digest(fd, got)) < 0)
				return image_fail(f->err, r, "%s: cannot read %s: %s", f->ref, rel,
						  strerror(-r));
			if (!streq(got, digest))
				return image_fail(f->err, -EBADMSG,
						  "%s: layer %s does not match its digest", f->ref,
						  rel);
			snprintf(what, sizeof(what), "layer %zu/%zu", i + 1, m.n_layers);
			if ((r = layer_extract(f, digest, fd, what)) < 0)
				return r;
		} else
			progress(f, "layer %zu/%zu %.19s: cached", i + 1, m.n_layers, digest);
		if ((r = add_layer(f, TAKE_PTR(dest))) < 0)
			return r;
	}
	return 0;
}

static int fetch_docker_archive(struct fetch *f, const char *path)
{
	_cleanup_free_ char *real = NULL, *tmp = NULL;
	int r = local_path(f, path, &real);
	if (r < 0)
		return r;
	/* The archive is unpacked (safely) into a scratch directory, read, then removed. */
	if (asprintf(&tmp, "%s/.tmp-archive-XXXXXX", f->layer_dir) < 0)
		return image_fail(f->err, -ENOMEM, "out of memory");
	if (!mkdtemp(tmp))
		return image_fail(f->err, -errno, "cannot create a directory in %s: %s",
				  f->layer_dir, strerror(errno));
	struct tar_error te = { { 0 } };
	struct tar_opts to = { .uid = -1, .gid = -1 };
	r = tar_extract_path(real, tmp, &to, NULL, &te);
	_cleanup_close_ int dfd = r < 0 ? -1 : open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	_cleanup_free_ char *doc = NULL, *cfg_path = NULL, *cfg = NULL;
	char **layers = NULL;
	size_t len, n_layers = 0, cfg_len;
	json_t *ids = NULL;
	if (r < 0) {
		r = image_fail(f->err, r, "%s: %s", f->ref, te.message);
		goto out;
	}
	if ((r = read_beneath(dfd, "manifest.json", OCI_MAX_DOCUMENT, &doc, &len)) < 0) {
		r = image_fail(f->err, r, "%s: no manifest.json (%s): not a docker archive", f->ref,
			       strerror(-r));
		goto out;
	}
	if ((r = oci_docker_manifest_parse(doc, len, &cfg_path, &layers, &n_layers, f->err)) < 0)
		goto out;
	if ((r = read_beneath(dfd, cfg_path, OCI_MAX_CONFIG, &cfg, &cfg_len)) < 0) {
		r = image_fail(f->err, r, "%s: cannot read %s: %s", f->ref, cfg_path, strerror(-r));
		goto out;
	}
	if ((r = apply_config(f, cfg, cfg_len, n_layers, &ids)) < 0)
		goto out;
	oci_digest_of(cfg, cfg_len, f->img->id);
	for (size_t i = 0; i < n_layers; i++) {
		_cleanup_close_ int fd = open_beneath(dfd, layers[i], O_RDONLY | O_NOFOLLOW);
		char got[OCI_DIGEST_LEN + 1], what[48];
		if (fd < 0 || (r = fd_digest(fd, got)) < 0) {
			r = image_fail(f->err, fd < 0 ? fd : r, "%s: cannot read %s", f->ref,
				       layers[i]);
			goto out;
		}
		/* Uncompressed layers hash to their diff_id; blobs/sha256/<hex> to their name. */
		const char *name = strrchr(layers[i], '/');
		bool named = startswith(layers[i], "blobs/sha256/") && name &&
			     strlen(name + 1) == 64 && strncmp(name + 1, got + 7, 64) == 0;
		if (!named && !streq(got, json_string_value(json_array_get(ids, i)))) {
			r = image_fail(f->err, -EBADMSG, "%s: layer %s does not match its digest",
				       f->ref, layers[i]);
			goto out;
		}
		_cleanup_free_ char *dest = layer_path(f, got);
		if (!dest) {
			r = image_fail(f->err, -ENOMEM, "out of memory");
			goto out;
		}
		snprintf(what, sizeof(what), "layer %zu/%zu", i + 1, n_layers);
		if (!is_dir(dest) && (r = layer_extract(f, got, fd, what)) < 0)
			goto out;
		if ((r = add_layer(f, TAKE_PTR(dest))) < 0)
			goto out;
	}
	r = 0;
out:
	json_decref(ids);
	oci_strv_free(layers);
	remove_path(tmp);
	return r;
}

/* ---- Registries ------------------------------------------------------------------------- */

static int pull_layer(struct fetch *f, struct registry *reg, const struct oci_descriptor *d,
		      const char *what)
{
	/* An unnamed file in the cache's file system: nothing to clean up after a crash. */
	_cleanup_close_ int fd = open(f->layer_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		return image_fail(f->err, -errno, "cannot create a file in %s: %s", f->layer_dir,
				  strerror(errno));
	uint64_t max = f->o->max_layer_bytes ? f->o->max_layer_bytes : TAR_DEFAULT_MAX_BYTES;
	if (d->size > max)
		return image_fail(f->err, -EFBIG, "%s %s is %llu bytes, over the limit", what,
				  d->digest, (unsigned long long)d->size);
	progress(f, "%s %.19s: pulling %.1f MB", what, d->digest, (double)d->size / 1e6);
	int r = registry_download_blob(reg, d->digest, d->size, fd, f->err);
	if (r < 0)
		return r;
	if (lseek(fd, 0, SEEK_SET) < 0)
		return image_fail(f->err, -errno, "cannot rewind: %s", strerror(errno));
	return layer_extract(f, d->digest, fd, what);
}

static int fetch_registry(struct fetch *f)
{
	struct registry_ref rr;
	int r = registry_ref_parse(f->ref, &rr, f->err);
	if (r < 0)
		return r;
	struct registry *reg = NULL;
	if ((r = registry_open(&rr, f->o->username, f->o->password, &reg, f->err)) < 0)
		return r;
	_cleanup_free_ char *doc = NULL, *ctype = NULL, *cfg = NULL;
	_cleanup_(oci_manifest_clear) struct oci_manifest m = { 0 };
	size_t len, cfg_len;
	char digest[OCI_DIGEST_LEN + 1];
	progress(f, "FROM %s: %s/%s %s", f->ref, rr.host, rr.name,
		 rr.digest[0] ? rr.digest : rr.tag);
	const char *reference = rr.digest[0] ? rr.digest : rr.tag;
	char next[OCI_DIGEST_LEN + 1];
	for (int depth = 0;; depth++) {
		free(TAKE_PTR(doc));
		free(TAKE_PTR(ctype));
		if ((r = registry_get_manifest(reg, reference, &doc, &len, &ctype, digest,
					       f->err)) < 0)
			goto out;
		enum oci_kind kind;
		if ((r = oci_document_kind(doc, len, ctype, &kind, f->err)) < 0)
			goto out;
		if (kind == OCI_KIND_MANIFEST)
			break;
		struct oci_descriptor d = { 0 };
		if (depth >= IMAGE_MAX_DEPTH) {
			r = image_fail(f->err, -EINVAL, "%s: indexes nested too deep", f->ref);
			goto out;
		}
		if ((r = oci_index_select(doc, len, oci_host_arch(), NULL, &d, f->err)) < 0)
			goto out;
		/* The chosen manifest is fetched by digest, hence verified. */
		memcpy(next, d.digest, sizeof(next));
		oci_descriptor_clear(&d);
		reference = next;
	}
	snprintf(f->img->id, sizeof(f->img->id), "%s", digest);
	if ((r = oci_manifest_parse(doc, len, &m, f->err)) < 0 ||
	    (r = registry_get_blob(reg, m.config.digest, OCI_MAX_CONFIG, &cfg, &cfg_len, f->err)) <
		0 ||
	    (r = apply_config(f, cfg, cfg_len, m.n_layers, NULL)) < 0)
		goto out;
	for (size_t i = 0; i < m.n_layers; i++) {
		char what[48];
		snprintf(what, sizeof(what), "layer %zu/%zu", i + 1, m.n_layers);
		_cleanup_free_ char *dest = layer_path(f, m.layers[i].digest);
		if (!dest) {
			r = image_fail(f->err, -ENOMEM, "out of memory");
			goto out;
		}
		if (is_dir(dest))
			progress(f, "%s %.19s: cached", what, m.layers[i].digest);
		else if ((r = pull_layer(f, reg, &m.layers[i], what)) < 0)
			goto out;
		if ((r = add_layer(f, TAKE_PTR(dest))) < 0)
			goto out;
	}
	r = 0;
out:
	registry_free(reg);
	return r;
}

/* ---- Entry ------------------------------------------------------------------------------ */

/* Removes what interrupted extractions left (".tmp-*" untouched for a day: no live extraction
 * is that slow). */
static void remove_stale(const char *layer_dir)
{
	_cleanup_close_ int dfd = open(layer_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int fd = dfd >= 0 ? dup(dfd) : -1;
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	_cleanup_closedir_ DIR *dir = d;
	time_t now = time(NULL);
	struct dirent *de;
	while ((de = readdir(dir))) {
		struct stat st;
		if (startswith(de->d_name, ".tmp-") &&
		    fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    st.st_mtime + 86400 < now)
			rm_rf_at(dfd, de->d_name);
	}
}

int image_fetch(const char *ref, const struct image_opts *opts, struct image *out,
		struct image_error *err)
{
	struct image_error local;
	err = err ?: &local;
	err->message[0] = '\0';
	memset(out, 0, sizeof(*out));
	struct fetch f = { .ref = ref, .o = opts, .img = out, .err = err };
	if (!f.o)
		f.o = &f.defaults;
	if (isempty(ref) || strlen(ref) > 1024)
		return image_fail(err, -EINVAL, "empty or overlong image reference");
	const char *cache = isempty(f.o->cache_dir) ? IMAGE_DEFAULT_CACHE : f.o->cache_dir;
	_cleanup_free_ char *layers_raw = NULL;
	if (asprintf(&layers_raw, "%s/" IMAGE_LAYERS_DIR, cache) < 0)
		return image_fail(err, -ENOMEM, "out of memory");
	int r = mkdir_p(layers_raw, 0755);
	if (r < 0)
		return image_fail(err, r, "cannot create %s: %s", layers_raw, strerror(-r));
	/* Absolute paths: the layers are handed to mounts, whatever our cwd. */
	_cleanup_free_ char *cache_abs = realpath(cache, NULL),
			    *layers_abs = realpath(layers_raw, NULL);
	if (!cache_abs || !layers_abs)
		return image_fail(err, -errno, "cannot resolve %s: %s", cache, strerror(errno));
	f.cache = cache_abs;
	f.layer_dir = layers_abs;
	remove_stale(layers_abs);

	const char *suite;
	bool slim;
	if (image_ref_debian(ref, &suite, &slim))
		r = fetch_debian(&f, suite, slim);
	else if (startswith(ref, "oci:"))
		r = fetch_oci_layout(&f, ref + 4);
	else if (startswith(ref, "docker-archive:"))
		r = fetch_docker_archive(&f, ref + 15);
	else
		r = fetch_registry(&f);
	if (r < 0)
		image_clear(out);
	return r;
}
