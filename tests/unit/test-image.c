/*
 * FROM images: reference parsing, an OCI layout written here (two layers with whiteouts, a
 * multi-platform index), the same image as a docker-archive and in a real registry on loopback
 * (Debian's docker-registry, filled with skopeo), digest checks against tampered blobs, and with
 * HUTCH_TEST_DEBIAN=1 a debootstrap of debian:bookworm-slim (minutes).
 */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <zlib.h>
#include "common/util.h"
#include "template/image.h"
#include "template/registry.h"
#include "template/tar.h"
#include "tap.h"

extern char **environ;

static char root[64];	 /* scratch */
static char layout[128]; /* the OCI layout */
static char manifest_digest[OCI_DIGEST_LEN + 1];

/* ---- writing an image ------------------------------------------------------------------- */

struct buf {
	char *p;
	size_t len;
};

static la_ssize_t buf_write(struct archive *a, void *data, const void *p, size_t n)
{
	struct buf *b = data;
	b->p = realloc(b->p, b->len + n);
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return (la_ssize_t)n;
}

static void add(struct archive *a, const char *path, mode_t type, mode_t perm, const void *data,
		size_t len)
{
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, path);
	archive_entry_set_filetype(e, type);
	archive_entry_set_perm(e, perm);
	archive_entry_set_mtime(e, 1700000000, 0);
	if (type == AE_IFLNK)
		archive_entry_set_symlink(e, data);
	archive_entry_set_size(e, type == AE_IFREG ? (la_int64_t)len : 0);
	archive_write_header(a, e);
	if (type == AE_IFREG && len)
		archive_write_data(a, data, len);
	archive_entry_free(e);
}

static struct buf layer1(void)
{
	struct buf b = { 0 };
	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	archive_write_open(a, &b, NULL, buf_write, NULL);
	static char busybox[4 << 20];
	int fd = open("/bin/busybox", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, busybox, sizeof(busybox)) : 0;
	if (fd >= 0)
		close(fd);
	add(a, "bin/", AE_IFDIR, 0755, NULL, 0);
	add(a, "bin/busybox", AE_IFREG, 0755, busybox, n > 0 ? (size_t)n : 0);
	add(a, "bin/sh", AE_IFLNK, 0777, "busybox", 0);
	add(a, "etc/", AE_IFDIR, 0755, NULL, 0);
	add(a, "etc/motd", AE_IFREG, 0644, "hello\n", 6);
	add(a, "var/", AE_IFDIR, 0755, NULL, 0);
	add(a, "var/old", AE_IFREG, 0644, "old\n", 4);
	archive_write_close(a);
	archive_write_free(a);
	return b;
}

static struct buf layer2(void)
{
	struct buf b = { 0 };
	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	archive_write_open(a, &b, NULL, buf_write, NULL);
	add(a, "etc/", AE_IFDIR, 0755, NULL, 0);
	add(a, "etc/.wh.motd", AE_IFREG, 0644, "", 0);
	add(a, "var/", AE_IFDIR, 0755, NULL, 0);
	add(a, "var/.wh..wh..opq", AE_IFREG, 0644, "", 0);
	add(a, "var/new", AE_IFREG, 0644, "new\n", 4);
	archive_write_close(a);
	archive_write_free(a);
	return b;
}

static struct buf gzip_of(struct buf in)
{
	z_stream z = { 0 };
	deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
	struct buf out = { .p = malloc(deflateBound(&z, in.len) + 64) };
	z.next_in = (Bytef *)in.p;
	z.avail_in = (uInt)in.len;
	z.next_out = (Bytef *)out.p;
	z.avail_out = (uInt)(deflateBound(&z, in.len) + 64);
	deflate(&z, Z_FINISH);
	out.len = z.total_out;
	deflateEnd(&z);
	return out;
}

static void write_file(const char *dir, const char *name, const void *p, size_t len)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	write_all(fd, p, len);
	close(fd);
}

/* Stores a blob and returns its descriptor as JSON. */
static json_t *blob(const char *mt, const void *p, size_t len)
{
	char digest[OCI_DIGEST_LEN + 1], name[128];
	oci_digest_of(p, len, digest);
	snprintf(name, sizeof(name), "blobs/sha256/%s", digest + 7);
	write_file(layout, name, p, len);
	return json_pack("{s:s,s:s,s:I}", "mediaType", mt, "digest", digest, "size",
			 (json_int_t)len);
}

static json_t *blob_json(const char *mt, json_t *doc)
{
	char *s = json_dumps(doc, JSON_COMPACT);
	json_t *d = blob(mt, s, strlen(s));
	free(s);
	json_decref(doc);
	return d;
}

static void make_layout(void)
{
	char path[256];
	snprintf(layout, sizeof(layout), "%s/layout", root);
	mkdir(layout, 0755);
	snprintf(path, sizeof(path), "%s/blobs", layout);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/blobs/sha256", layout);
	mkdir(path, 0755);
	write_file(layout, "oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}", 30);

	struct buf l1 = layer1(), l2 = layer2();
	struct buf g1 = gzip_of(l1);
	char d1[OCI_DIGEST_LEN + 1], d2[OCI_DIGEST_LEN + 1];
	oci_digest_of(l1.p, l1.len, d1);
	oci_digest_of(l2.p, l2.len, d2);
	json_t *config = json_pack(
	    "{s:s,s:s,s:{s:[s,s],s:s,s:s,s:[s]},s:{s:s,s:[s,s]}}", "architecture", oci_host_arch(),
	    "os", "linux", "config", "Env", "PATH=/bin", "FOO=bar", "WorkingDir", "/work", "User",
	    "1000:1000", "Cmd", "/bin/sh", "rootfs", "type", "layers", "diff_ids", d1, d2);
	json_t *manifest =
	    json_pack("{s:i,s:s,s:o,s:[o,o]}", "schemaVersion", 2, "mediaType", OCI_MT_MANIFEST,
		      "config", blob_json("application/vnd.oci.image.config.v1+json", config),
		      "layers", blob("application/vnd.oci.image.layer.v1.tar+gzip", g1.p, g1.len),
		      blob("application/vnd.oci.image.layer.v1.tar", l2.p, l2.len));
	json_t *mdesc = blob_json(OCI_MT_MANIFEST, manifest);
	snprintf(manifest_digest, sizeof(manifest_digest), "%s",
		 json_string_value(json_object_get(mdesc, "digest")));
	/* A multi-platform index: another architecture first, ours second. */
	json_t *other = json_deep_copy(mdesc), *ours = json_deep_copy(mdesc);
	json_object_set_new(other, "platform",
			    json_pack("{s:s,s:s}", "os", "linux", "architecture", "s390x-none"));
	json_object_set_new(ours, "platform",
			    json_pack("{s:s,s:s}", "os", "linux", "architecture", oci_host_arch()));
	json_t *multi =
	    blob_json(OCI_MT_INDEX, json_pack("{s:i,s:s,s:[o,o]}", "schemaVersion", 2, "mediaType",
					      OCI_MT_INDEX, "manifests", other, ours));
	json_object_set_new(mdesc, "annotations",
			    json_pack("{s:s}", "org.opencontainers.image.ref.name", "v1"));
	json_object_set_new(multi, "annotations",
			    json_pack("{s:s}", "org.opencontainers.image.ref.name", "multi"));
	json_t *index = json_pack("{s:i,s:s,s:[o,o]}", "schemaVersion", 2, "mediaType",
				  OCI_MT_INDEX, "manifests", mdesc, multi);
	char *s = json_dumps(index, JSON_COMPACT);
	write_file(layout, "index.json", s, strlen(s));
	free(s);
	json_decref(index);
	free(l1.p);
	free(l2.p);
	free(g1.p);
}

/* ---- checking an image ------------------------------------------------------------------ */

static void check_image(const struct image *img, const char *what)
{
	if (!is_int(img->n_layers, 2, "%s: two layers", what))
		return;
	char p[512];
	struct stat st;
	snprintf(p, sizeof(p), "%s/bin/busybox", img->layers[0]);
	ok(stat(p, &st) == 0 && (st.st_mode & 0111) && st.st_size > 100000 && st.st_uid == 0,
	   "%s: layer 1 has busybox", what);
	snprintf(p, sizeof(p), "%s/etc/motd", img->layers[1]);
	ok(lstat(p, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0),
	   "%s: layer 2 whites out etc/motd", what);
	snprintf(p, sizeof(p), "%s/var", img->layers[1]);
	char v[4] = { 0 };
	ok(getxattr(p, "user.overlay.opaque", v, sizeof(v)) == 1 && v[0] == 'y',
	   "%s: layer 2's var is opaque", what);
	snprintf(p, sizeof(p), "%s", img->layers[0]);
	ok(stat(p, &st) == 0 && (st.st_mode & 0777) == 0755, "%s: layer root is 0755", what);
	json_t *env = json_object_get(img->config, "Env");
	ok(json_array_size(env) == 2 && streq(json_string_value(json_array_get(env, 1)), "FOO=bar"),
	   "%s: config Env", what);
	is_str(json_string_value(json_object_get(img->config, "WorkingDir")), "/work",
	       "%s: config WorkingDir", what);
	is_str(json_string_value(json_object_get(img->config, "User")), "1000:1000",
	       "%s: config User", what);
	ok(json_array_size(json_object_get(img->config, "Cmd")) == 1, "%s: config Cmd", what);
}

static int fetch(const char *ref, const char *cache, bool local, struct image *img,
		 struct image_error *err)
{
	const char *const dirs[] = { root, NULL };
	struct image_opts o = { .cache_dir = cache, .local_dirs = local ? dirs : NULL };
	return image_fetch(ref, &o, img, err);
}

static void test_refs(void)
{
	struct registry_ref r;
	struct image_error err;
	is_int(registry_ref_parse("alpine", &r, &err), 0, "ref: alpine");
	ok(streq(r.host, "registry-1.docker.io") && streq(r.name, "library/alpine") &&
	       streq(r.tag, "latest"),
	   "ref: alpine → docker hub library/alpine:latest");
	is_int(registry_ref_parse("127.0.0.1:5000/a/b:v1", &r, &err), 0, "ref: with port");
	ok(streq(r.host, "127.0.0.1:5000") && streq(r.name, "a/b") && streq(r.tag, "v1"),
	   "ref: host, name, tag");
	is_int(
	    registry_ref_parse("localhost/x@sha256:"
			       "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			       &r, &err),
	    0, "ref: by digest");
	ok(streq(r.host, "localhost") && !r.tag[0] && r.digest[0], "ref: digest, no tag");
	is_int(registry_ref_parse("oven/bun:1.1", &r, &err), 0, "ref: hub user image");
	ok(streq(r.name, "oven/bun"), "ref: no library/ for two components");
	ok(registry_ref_parse("UPPER/case", &r, &err) < 0, "ref: uppercase refused");
	ok(registry_ref_parse("a/../b", &r, &err) < 0, "ref: dots refused");
	ok(registry_ref_parse("x@sha512:00", &r, &err) < 0, "ref: other digests refused");
	ok(registry_ref_parse("x:", &r, &err) < 0, "ref: empty tag refused");
	ok(registry_host_is_loopback("127.0.0.1:5000") && registry_host_is_loopback("localhost") &&
	       registry_host_is_loopback("[::1]:80") && !registry_host_is_loopback("example.com"),
	   "loopback hosts");

	const char *suite;
	bool slim;
	ok(image_ref_debian("debian:bookworm", &suite, &slim) && streq(suite, "bookworm") && !slim,
	   "debian:bookworm");
	ok(image_ref_debian("debian:stable-slim", &suite, &slim) && streq(suite, "bookworm") &&
	       slim,
	   "debian:stable-slim");
	ok(image_ref_debian("debian:12", &suite, &slim) && streq(suite, "bookworm"), "debian:12");
	ok(image_ref_debian("docker.io/library/debian:bookworm-slim", &suite, &slim) && slim,
	   "docker.io/library/debian:bookworm-slim");
	ok(image_ref_debian("debian", &suite, &slim) && streq(suite, "bookworm"), "debian");
	ok(image_ref_debian("docker.io/debian:bookworm", &suite, &slim),
	   "docker.io/debian:bookworm");
	ok(!image_ref_debian("debian:sid", NULL, NULL), "debian:sid is not built here");
	ok(!image_ref_debian("debianx:12", NULL, NULL), "debianx is not debian");
	ok(!image_ref_debian("ubuntu:22.04", NULL, NULL), "ubuntu goes to the registry");

	char scheme[16], realm[1024], service[1024], scope[1024];
	is_int(
	    registry_parse_challenge("Bearer realm=\"https://auth.example/token\","
				     "service=\"registry.example\",scope=\"repository:a/b:pull\"",
				     scheme, realm, service, scope),
	    0, "challenge parses");
	ok(streq(scheme, "Bearer") && streq(realm, "https://auth.example/token") &&
	       streq(service, "registry.example") && streq(scope, "repository:a/b:pull"),
	   "challenge fields");
	ok(registry_parse_challenge("Bearer realm=\"unterminated", scheme, realm, service, scope) <
	       0,
	   "unterminated challenge refused");
}

static void test_layout(void)
{
	char ref[256], cache[128];
	snprintf(cache, sizeof(cache), "%s/cache", root);
	struct image img;
	struct image_error err;
	snprintf(ref, sizeof(ref), "oci:%s:v1", layout);
	int r = fetch(ref, cache, true, &img, &err);
	if (!is_int(r, 0, "oci layout by tag"))
		diag("%s", err.message);
	check_image(&img, "oci:v1");
	is_str(img.id, manifest_digest, "oci: id is the manifest digest");
	_cleanup_free_ char *first = img.n_layers ? strdup(img.layers[0]) : NULL;
	image_clear(&img);

	snprintf(ref, sizeof(ref), "oci:%s:multi", layout);
	r = fetch(ref, cache, true, &img, &err);
	if (!is_int(r, 0, "oci layout through a multi-platform index"))
		diag("%s", err.message);
	check_image(&img, "oci:multi");
	ok(img.n_layers && streq(img.layers[0], first), "second fetch reuses the cached layer");
	image_clear(&img);

	is_int(fetch(ref, cache, false, &img, &err), -EPERM, "local images off by default");
	ok(strstr(err.message, "not enabled"), "message: %s", err.message);
	snprintf(ref, sizeof(ref), "oci:/etc:v1");
	is_int(fetch(ref, cache, true, &img, &err), -EPERM, "paths outside local_dirs refused");
	snprintf(ref, sizeof(ref), "oci:%s:nope", layout);
	is_int(fetch(ref, cache, true, &img, &err), -ENOENT, "unknown tag");
	ok(strstr(err.message, "no image tagged 'nope'"), "message: %s", err.message);

	/* A tampered layer blob, fresh cache: refused by digest. */
	char bad[160], cmd[1200], bad_cache[160];
	snprintf(bad, sizeof(bad), "%s/bad-layout", root);
	snprintf(bad_cache, sizeof(bad_cache), "%s/bad-cache", root);
	snprintf(cmd, sizeof(cmd),
		 "cp -a %s %s && f=$(ls -S %s/blobs/sha256 | head -1) && "
		 "printf X | dd of=%s/blobs/sha256/$f bs=1 seek=5000 conv=notrunc status=none",
		 layout, bad, bad, bad);
	if (system(cmd) != 0)
		diag("could not prepare the tampered layout");
	snprintf(ref, sizeof(ref), "oci:%s:v1", bad);
	is_int(fetch(ref, bad_cache, true, &img, &err), -EBADMSG, "tampered blob refused");
	ok(strstr(err.message, "does not match its digest"), "message: %s", err.message);
}

static bool have(const char *prog)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", prog);
	return system(cmd) == 0;
}

static void test_docker_archive(void)
{
	if (!have("skopeo")) {
		skip("skopeo is not installed (scripts/deps.sh)", "docker-archive");
		return;
	}
	char cmd[600], ref[256], cache[128];
	snprintf(cmd, sizeof(cmd),
		 "skopeo --insecure-policy copy -q oci:%s:v1 docker-archive:%s/img.tar:test/img:v1",
		 layout, root);
	if (!is_int(system(cmd), 0, "skopeo makes a docker-archive"))
		return;
	snprintf(cache, sizeof(cache), "%s/cache-da", root);
	snprintf(ref, sizeof(ref), "docker-archive:%s/img.tar", root);
	struct image img;
	struct image_error err;
	int r = fetch(ref, cache, true, &img, &err);
	if (!is_int(r, 0, "docker-archive"))
		diag("%s", err.message);
	check_image(&img, "docker-archive");
	image_clear(&img);
	snprintf(ref, sizeof(ref), "docker-archive:%s/layout/index.json", root);
	ok(fetch(ref, cache, true, &img, &err) < 0, "a non-tar docker-archive is refused");
}

static uint16_t free_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	bind(s, (struct sockaddr *)&a, sizeof(a));
	getsockname(s, (struct sockaddr *)&a, &len);
	close(s);
	return ntohs(a.sin_port);
}

/* A registry storing under ROOT/<name>, with `extra` YAML appended (auth). */
static pid_t start_registry(uint16_t port, const char *name, const char *extra)
{
	char cfg[256], text[1200], file[64];
	snprintf(file, sizeof(file), "%s.yml", name);
	snprintf(cfg, sizeof(cfg), "%s/%s", root, file);
	snprintf(text, sizeof(text),
		 "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
		 "    rootdirectory: %s/%s\nhttp:\n  addr: 127.0.0.1:%u\n%s",
		 root, name, port, extra);
	write_file(root, file, text, strlen(text));
	char *argv[] = { (char *)"docker-registry", (char *)"serve", cfg, NULL };
	pid_t pid;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	if (posix_spawnp(&pid, "docker-registry", &fa, NULL, argv, environ) != 0)
		return -1;
	posix_spawn_file_actions_destroy(&fa);
	char url[128];
	snprintf(url, sizeof(url),
		 "for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:%u/v2/ && exit 0; "
		 "sleep 0.1; done; exit 1",
		 port);
	if (system(url) != 0) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
		return -1;
	}
	return pid;
}

static void test_registry(void)
{
	if (!have("skopeo") || !have("docker-registry")) {
		skip("skopeo or docker-registry is not installed (scripts/deps.sh)", "registry");
		return;
	}
	uint16_t port = free_port();
	pid_t reg = start_registry(port, "registry", "");
	if (!ok(reg > 0, "docker-registry listens on 127.0.0.1:%u", port))
		return;
	char cmd[700], ref[256], cache[128];
	snprintf(cmd, sizeof(cmd),
		 "skopeo --insecure-policy copy -q --dest-tls-verify=false oci:%s:v1 "
		 "docker://127.0.0.1:%u/test/img:v1 && "
		 "skopeo --insecure-policy copy -q --all --dest-tls-verify=false oci:%s:multi "
		 "docker://127.0.0.1:%u/test/img:multi",
		 layout, port, layout, port);
	if (!is_int(system(cmd), 0, "skopeo pushes the image and the index"))
		goto out;

	struct image img;
	struct image_error err;
	snprintf(cache, sizeof(cache), "%s/cache-reg", root);
	snprintf(ref, sizeof(ref), "127.0.0.1:%u/test/img:v1", port);
	int r = fetch(ref, cache, false, &img, &err);
	if (!is_int(r, 0, "registry pull by tag"))
		diag("%s", err.message);
	check_image(&img, "registry:v1");
	char digest[sizeof(img.id)];
	memcpy(digest, img.id, sizeof(digest));
	image_clear(&img);

	snprintf(ref, sizeof(ref), "127.0.0.1:%u/test/img:multi", port);
	r = fetch(ref, cache, false, &img, &err);
	if (!is_int(r, 0, "registry pull through a manifest list"))
		diag("%s", err.message);
	check_image(&img, "registry:multi");
	image_clear(&img);

	snprintf(ref, sizeof(ref), "127.0.0.1:%u/test/img@%s", port, digest);
	r = fetch(ref, cache, false, &img, &err);
	if (!is_int(r, 0, "registry pull by digest"))
		diag("%s", err.message);
	image_clear(&img);

	snprintf(ref, sizeof(ref), "127.0.0.1:%u/test/img:missing", port);
	is_int(fetch(ref, cache, false, &img, &err), -ENOENT, "missing tag");
	ok(strstr(err.message, "not found"), "message: %s", err.message);
	snprintf(ref, sizeof(ref), "127.0.0.1:%u/test/img@sha256:%064d", port, 0);
	ok(fetch(ref, cache, false, &img, &err) < 0, "unknown digest refused");

	/* The registry serves what its storage holds: tamper with the biggest blob. */
	snprintf(cmd, sizeof(cmd),
		 "f=$(find %s/registry -path '*/blobs/sha256/*/data' -size +100k | head -1) && "
		 "[ -n \"$f\" ] && printf X | dd of=$f bs=1 seek=5000 conv=notrunc status=none",
		 root);
	is_int(system(cmd), 0, "tamper with a layer in the registry's storage");
	snprintf(cache, sizeof(cache), "%s/cache-reg2", root);
	snprintf(ref, sizeof(ref), "127.0.0.1:%u/test/img:v1", port);
	is_int(fetch(ref, cache, false, &img, &err), -EBADMSG, "tampered layer refused");
	ok(strstr(err.message, "digest mismatch"), "message: %s", err.message);
out:
	kill(reg, SIGTERM);
	waitpid(reg, NULL, 0);
}

static void check_debian(const struct image_opts *o, const char *ref, const char *same, bool slim)
{
	struct image img;
	struct image_error err;
	uint64_t t0 = now_usec();
	int r = image_fetch(ref, o, &img, &err);
	if (!is_int(r, 0, "%s", ref))
		diag("%s", err.message);
	diag("%s: first fetch took %.1f s", ref, (double)(now_usec() - t0) / 1e6);
	char p[512];
	struct stat st;
	if (img.n_layers == 1) {
		snprintf(p, sizeof(p), "%s/usr/bin/apt-get", img.layers[0]);
		ok(stat(p, &st) == 0 && st.st_uid == 0, "%s: apt-get is there, owned by 0", ref);
		snprintf(p, sizeof(p), "%s/usr/share/man/man1", img.layers[0]);
		ok(slim ? stat(p, &st) < 0 : stat(p, &st) == 0, "%s: man pages %s", ref,
		   slim ? "dropped" : "kept");
		snprintf(p, sizeof(p), "%s/var/lib/apt/lists/lock", img.layers[0]);
		ok(stat(p, &st) < 0, "%s: no apt lists", ref);
		ok(json_array_size(json_object_get(img.config, "Cmd")) == 1, "%s: config Cmd", ref);
	}
	_cleanup_free_ char *layer = img.n_layers ? strdup(img.layers[0]) : NULL;
	image_clear(&img);
	t0 = now_usec();
	is_int(image_fetch(same, o, &img, &err), 0, "%s is the same image", same);
	ok(now_usec() - t0 < 1000000, "%s: instant (cached)", same);
	ok(img.n_layers == 1 && streq(img.layers[0], layer), "%s: same layer", same);
	image_clear(&img);
}

static void test_registry_basic_auth(void)
{
	if (!have("skopeo") || !have("docker-registry")) {
		skip("skopeo or docker-registry is not installed (scripts/deps.sh)",
		     "registry auth");
		return;
	}
	/* bcrypt of "s3cret", as htpasswd -B makes it. */
	static const char htpasswd[] =
	    "hutch:$2b$12$n11HXwMFUmF2peUHrO1A3.4KyTGq4qovdPwpyDsP/coywCQ37CsLO\n";
	write_file(root, "htpasswd", htpasswd, strlen(htpasswd));
	char extra[400], cmd[700], ref[256], cache[128];
	snprintf(extra, sizeof(extra),
		 "auth:\n  htpasswd:\n    realm: hutch-test\n    path: %s/htpasswd\n", root);
	uint16_t port = free_port();
	pid_t reg = start_registry(port, "registry-auth", extra);
	if (!ok(reg > 0, "docker-registry with basic auth listens on 127.0.0.1:%u", port))
		return;
	snprintf(
	    cmd, sizeof(cmd),
	    "skopeo --insecure-policy copy -q --dest-tls-verify=false --dest-creds hutch:s3cret "
	    "oci:%s:v1 docker://127.0.0.1:%u/private/img:v1",
	    layout, port);
	if (!is_int(system(cmd), 0, "skopeo pushes with credentials"))
		goto out;
	snprintf(ref, sizeof(ref), "127.0.0.1:%u/private/img:v1", port);
	snprintf(cache, sizeof(cache), "%s/cache-auth", root);
	struct image img;
	struct image_error err;
	struct image_opts o = { .cache_dir = cache };
	is_int(image_fetch(ref, &o, &img, &err), -EACCES, "anonymous pull refused");
	ok(strstr(err.message, "wants credentials"), "message: %s", err.message);
	o.username = "hutch";
	o.password = "wrong";
	is_int(image_fetch(ref, &o, &img, &err), -EACCES, "wrong password refused");
	ok(strstr(err.message, "access denied"), "message: %s", err.message);
	o.password = "s3cret";
	int r = image_fetch(ref, &o, &img, &err);
	if (!is_int(r, 0, "pull with basic credentials"))
		diag("%s", err.message);
	check_image(&img, "registry-auth");
	image_clear(&img);
out:
	kill(reg, SIGTERM);
	waitpid(reg, NULL, 0);
}

static void test_debian(void)
{
	if (!getenv("HUTCH_TEST_DEBIAN") || geteuid() != 0) {
		skip("set HUTCH_TEST_DEBIAN=1 and run as root to debootstrap (minutes)",
		     "debian suites");
		return;
	}
	/* HUTCH_TEST_DEBIAN_CACHE=/var/cache/hutch fills the shared cache for later builds. */
	const char *cache = getenv("HUTCH_TEST_DEBIAN_CACHE");
	char tmp[128];
	snprintf(tmp, sizeof(tmp), "%s/cache-debian", root);
	struct image_opts o = { .cache_dir = cache ? cache : tmp };
	check_debian(&o, "debian:bookworm", "debian:stable", false);
	check_debian(&o, "debian:bookworm-slim", "debian:12-slim", true);
}

int main(void)
{
	snprintf(root, sizeof(root), "/tmp/hutch-test-image-XXXXXX");
	if (!mkdtemp(root))
		return 1;
	test_refs();
	if (geteuid() != 0) {
		skip("needs root (layer ownership, whiteout device nodes)", "images");
	} else {
		make_layout();
		test_layout();
		test_docker_archive();
		test_registry();
		test_registry_basic_auth();
		test_debian();
	}
	int fd = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	rm_rf_at(fd, root + 5);
	close(fd);
	return done();
}
