/*
 * FROM images, measured (needs root, skopeo and docker-registry):
 *   build/bench/image-bench [--runs N] [--tree DIR]
 * 1. Layer extraction: a tar.gz of DIR (default: the cached debian:bookworm layer, else /usr/share)
 *    unpacked by tar_extract_path() with OCI whiteouts vs GNU tar -x --xattrs (the baseline),
 *    medians and their ratio.
 * 2. Registry pull: the same tar.gz as a one-layer image in a loopback docker-registry; a cold
 *    image_fetch() (manifest, config, download, sha256, extraction, fresh cache) vs skopeo
 *    copy to dir: + GNU tar -x (the baseline), and a warm image_fetch() (layers cached).
 */
#include <fcntl.h>
#include <getopt.h>
#include <glob.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "common/util.h"
#include "template/image.h"
#include "template/tar.h"

extern char **environ;

static char root[64];
static unsigned runs = 5;

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int r = system(cmd);
	if (r != 0)
		fprintf(stderr, "image-bench: failed (%d): %s\n", r, cmd);
	return r;
}

static void rm_in_root(const char *name)
{
	int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	rm_rf_at(fd, name);
	close(fd);
}

static double ms_since(uint64_t t0)
{
	return (double)(now_usec() - t0) / 1000.0;
}

static const char *default_tree(void)
{
	static char path[512];
	glob_t g;
	if (glob("/var/cache/hutch/templates/debian-bookworm-v*[0-9a-f]", 0, NULL, &g) == 0 &&
	    g.gl_pathc) {
		snprintf(path, sizeof(path), "%s", g.gl_pathv[g.gl_pathc - 1]);
		globfree(&g);
		return path;
	}
	return "/usr/share";
}

static void bench_extract(const char *tgz, uint64_t size)
{
	double ours[64], gnu[64];
	struct tar_stats st = { 0 };
	for (unsigned i = 0; i < runs; i++) {
		char dst[128];
		snprintf(dst, sizeof(dst), "%s/x-gnu", root);
		mkdir(dst, 0755);
		uint64_t t0 = now_usec();
		sh("tar --numeric-owner --xattrs --xattrs-include='*' -xzf %s -C %s", tgz, dst);
		gnu[i] = ms_since(t0);
		rm_in_root("x-gnu");

		snprintf(dst, sizeof(dst), "%s/x-hutch", root);
		struct tar_opts o = { .oci_whiteouts = true, .uid = -1, .gid = -1 };
		struct tar_error err;
		t0 = now_usec();
		if (tar_extract_path(tgz, dst, &o, &st, &err) < 0) {
			fprintf(stderr, "image-bench: %s\n", err.message);
			exit(1);
		}
		ours[i] = ms_since(t0);
		rm_in_root("x-hutch");
	}
	double m_ours = median(ours, runs), m_gnu = median(gnu, runs);
	printf("extract %.1f MB gz, %llu entries, %.1f MB of files (%u runs):\n",
	       (double)size / 1e6, (unsigned long long)st.entries, (double)st.bytes / 1e6, runs);
	printf("  tar_extract (safe walk, whiteouts)  median %8.1f ms\n", m_ours);
	printf("  GNU tar -x --xattrs (baseline)      median %8.1f ms\n", m_gnu);
	printf("  ratio hutch/GNU tar                        %8.2f\n", m_ours / m_gnu);
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

static void bench_registry(const char *tgz)
{
	uint16_t port = free_port();
	char cfg[128], text[512];
	snprintf(cfg, sizeof(cfg), "%s/registry.yml", root);
	snprintf(text, sizeof(text),
		 "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
		 "    rootdirectory: %s/registry\nhttp:\n  addr: 127.0.0.1:%u\n",
		 root, port);
	int fd = open(cfg, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	write_all(fd, text, strlen(text));
	close(fd);
	char *argv[] = { (char *)"docker-registry", (char *)"serve", cfg, NULL };
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	pid_t reg;
	if (posix_spawnp(&reg, "docker-registry", &fa, NULL, argv, environ) != 0) {
		fprintf(stderr, "image-bench: cannot start docker-registry\n");
		return;
	}
	posix_spawn_file_actions_destroy(&fa);
	if (sh("for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:%u/v2/ && exit 0; "
	       "sleep 0.1; done; exit 1",
	       port) != 0 ||
	    sh("skopeo --insecure-policy copy -q --dest-tls-verify=false tarball:%s "
	       "docker://127.0.0.1:%u/bench/img:v1",
	       tgz, port) != 0)
		goto out;

	double cold[64], warm[64], base[64];
	char ref[128], cache[128];
	snprintf(ref, sizeof(ref), "127.0.0.1:%u/bench/img:v1", port);
	snprintf(cache, sizeof(cache), "%s/cache", root);
	for (unsigned i = 0; i < runs; i++) {
		struct image_opts o = { .cache_dir = cache };
		struct image img;
		struct image_error err;
		uint64_t t0 = now_usec();
		if (image_fetch(ref, &o, &img, &err) < 0) {
			fprintf(stderr, "image-bench: %s\n", err.message);
			goto out;
		}
		cold[i] = ms_since(t0);
		image_clear(&img);
		t0 = now_usec();
		if (image_fetch(ref, &o, &img, &err) < 0) {
			fprintf(stderr, "image-bench: %s\n", err.message);
			goto out;
		}
		warm[i] = ms_since(t0);
		image_clear(&img);
		rm_in_root("cache");

		t0 = now_usec();
		if (sh("skopeo --insecure-policy copy -q --src-tls-verify=false "
		       "docker://127.0.0.1:%u/bench/img:v1 dir:%s/pulled && mkdir %s/x && "
		       "for f in %s/pulled/*; do if tar -tzf $f >/dev/null 2>&1; then "
		       "tar --numeric-owner --xattrs -xzf $f -C %s/x; fi; done",
		       port, root, root, root, root) != 0)
			goto out;
		base[i] = ms_since(t0);
		rm_in_root("pulled");
		rm_in_root("x");
	}
	double mc = median(cold, runs), mw = median(warm, runs), mb = median(base, runs);
	printf("registry pull from 127.0.0.1 (%u runs):\n", runs);
	printf("  image_fetch cold (pull, sha256, extract)  median %8.1f ms\n", mc);
	printf("  skopeo copy dir: + GNU tar -x (baseline)  median %8.1f ms\n", mb);
	printf("  ratio hutch/baseline                              %8.2f\n", mc / mb);
	printf("  image_fetch warm (layers cached)          median %8.1f ms\n", mw);
out:
	kill(reg, SIGTERM);
	waitpid(reg, NULL, 0);
}

int main(int argc, char **argv)
{
	const char *tree = NULL;
	static const struct option longopts[] = { { "runs", required_argument, NULL, 'r' },
						  { "tree", required_argument, NULL, 't' },
						  { 0 } };
	for (int c; (c = getopt_long(argc, argv, "", longopts, NULL)) != -1;) {
		if (c == 'r')
			runs = (unsigned)MAX(1, MIN(64, atoi(optarg)));
		else if (c == 't')
			tree = optarg;
		else
			return 2;
	}
	if (geteuid() != 0) {
		fprintf(stderr, "image-bench: needs root (ownership, whiteouts)\n");
		return 1;
	}
	tree = tree ?: default_tree();
	snprintf(root, sizeof(root), "/tmp/hutch-image-bench-XXXXXX");
	if (!mkdtemp(root))
		return 1;
	char tgz[128];
	snprintf(tgz, sizeof(tgz), "%s/layer.tar.gz", root);
	printf("tree: %s\n", tree);
	if (sh("tar --numeric-owner --xattrs -C %s -czf %s .", tree, tgz) != 0)
		return 1;
	struct stat st;
	stat(tgz, &st);
	bench_extract(tgz, (uint64_t)st.st_size);
	bench_registry(tgz);
	int fd = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	rm_rf_at(fd, root + 5);
	close(fd);
	return 0;
}
