/* The base template: mirror discovery from apt sources (both formats) and, with HUTCH_TEST_BASE=1
 * as root, a real debootstrap build into a temporary cache. */
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "common/util.h"
#include "template/template.h"
#include "tap.h"

extern char **environ;

static void check_list(const char *text, const char *want, const char *what)
{
	_cleanup_free_ char *uri = NULL;
	int r = template_apt_sources_find_list(text, "bookworm", &uri);
	is_int(r, want ? 1 : 0, "list: %s: %s", what, want ? "found" : "none");
	is_str(uri, want, "list: %s: uri", what);
}

static void check_deb822(const char *text, const char *want, const char *what)
{
	_cleanup_free_ char *uri = NULL;
	int r = template_apt_sources_find_deb822(text, "bookworm", &uri);
	is_int(r, want ? 1 : 0, "deb822: %s: %s", what, want ? "found" : "none");
	is_str(uri, want, "deb822: %s: uri", what);
}

static void test_list_format(void)
{
	check_list("deb http://a.example/debian bookworm main\n", "http://a.example/debian",
		   "plain");
	check_list("# deb http://x.example/debian bookworm main\n"
		   "deb-src http://s.example/debian bookworm main\n"
		   "deb http://u.example/debian bookworm-updates main\n"
		   "deb http://sec.example/debian-security bookworm-security main\n"
		   "deb http://c.example/debian bookworm contrib non-free\n"
		   "deb https://m.example/debian bookworm main contrib # trailing comment\n",
		   "https://m.example/debian", "skips comments, deb-src, other suites, no main");
	check_list(
	    "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://o.example/d bookworm "
	    "main\n",
	    "http://o.example/d", "options");
	check_list("deb [ arch=amd64 ] http://p.example/d bookworm main\n", "http://p.example/d",
		   "spaced options");
	check_list("\tdeb   http://t.example/d\tbookworm   main\r\n", "http://t.example/d",
		   "tabs and spaces");
	check_list("deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n", NULL,
		   "suite containing bookworm");
	check_list("deb cdrom:[Debian 12]/ bookworm main\n", NULL, "cdrom");
	check_list("deb http://q.example/d bookworm\n", NULL, "no components");
	check_list("deb http://q.example/d\n", NULL, "truncated");
	check_list("deb [arch=amd64\n", NULL, "unterminated options");
	check_list("", NULL, "empty");
}

static void test_deb822_format(void)
{
	check_deb822("Types: deb\n"
		     "# http://snapshot.debian.org/archive/debian/20250520T000000Z\n"
		     "URIs: http://a.example/debian\n"
		     "Suites: bookworm bookworm-updates\n"
		     "Components: main\n"
		     "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
		     "\n"
		     "Types: deb\n"
		     "URIs: http://a.example/debian-security\n"
		     "Suites: bookworm-security\n"
		     "Components: main\n",
		     "http://a.example/debian", "debian.sources as Debian ships it");
	check_deb822("Types: deb\n"
		     "URIs: http://sec.example/debian-security\n"
		     "Suites: bookworm-security\n"
		     "Components: main\n"
		     "\n"
		     "\n"
		     "types: deb-src deb\n"
		     "uris: mirror+file:/etc/apt/mirrors.txt https://b.example/debian\n"
		     "suites: bookworm\n"
		     "components: contrib main\n"
		     "Signed-By:\n"
		     " -----BEGIN PGP PUBLIC KEY BLOCK-----\n"
		     " .\n"
		     " URIs: http://evil.example/\n"
		     " -----END PGP PUBLIC KEY BLOCK-----",
		     "https://b.example/debian",
		     "second stanza, lowercase keys, inline key, no EOL");
	check_deb822(
	    "Types: deb\nURIs: http://d.example/debian\nSuites: bookworm\nComponents: main\n"
	    "Enabled: no\n",
	    NULL, "disabled");
	check_deb822("Types: deb-src\nURIs: http://d.example/debian\nSuites: bookworm\n"
		     "Components: main\n",
		     NULL, "deb-src only");
	check_deb822(
	    "Types: deb\nURIs: https://deb.nodesource.example/node_20.x\nSuites: nodistro\n"
	    "Components: main\n",
	    NULL, "other suite");
	check_deb822("Types: deb\nURIs: http://e.example/debian\nSuites: bookworm\n\n"
		     "Components: main\n",
		     NULL, "fields split across stanzas");
}

static void test_mirror_valid(void)
{
	ok(template_mirror_valid("http://a.example/debian"), "valid: http");
	ok(template_mirror_valid("https://a.example:8443/debian/"), "valid: https with port");
	ok(template_mirror_valid("file:///srv/mirror/debian"), "valid: file");
	ok(!template_mirror_valid("ftp://a.example/debian"), "invalid: ftp");
	ok(!template_mirror_valid("http://a.example/debian main"), "invalid: space");
	ok(!template_mirror_valid("http://a.example/\ndeb http://b/ bookworm main"),
	   "invalid: newline");
	ok(!template_mirror_valid("--help"), "invalid: option");
	ok(!template_mirror_valid(NULL), "invalid: NULL");
}

static void write_file(const char *dir, const char *name, const char *text)
{
	_cleanup_free_ char *path = NULL;
	if (asprintf(&path, "%s/%s", dir, name) < 0)
		abort();
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write_all(fd, text, strlen(text)) < 0)
		abort();
}

static int run(char *const argv[])
{
	pid_t pid;
	int status;
	if (posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ) != 0)
		return -1;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void rm_tree(const char *path)
{
	char *const argv[] = { (char *)"rm", (char *)"-rf", (char *)"--one-file-system",
			       (char *)path, NULL };
	run(argv);
}

static void test_apt_mirror_files(void)
{
	char root[] = "/tmp/hutch-test-template-XXXXXX";
	if (!mkdtemp(root))
		abort();
	_cleanup_free_ char *apt = NULL, *d = NULL;
	if (asprintf(&apt, "%s/etc/apt", root) < 0 || asprintf(&d, "%s/sources.list.d", apt) < 0)
		abort();
	char *const mk[] = { (char *)"mkdir", (char *)"-p", d, NULL };
	run(mk);

	_cleanup_free_ char *m = NULL;
	is_int(template_apt_mirror(root, "bookworm", &m), -ENOENT, "apt_mirror: no sources");

	/* Ignored names sort first; the deb822 file wins over a later .list. */
	write_file(d, "a-nodesource.sources.disabled",
		   "Types: deb\nURIs: http://n.example/d\nSuites: bookworm\nComponents: main\n");
	write_file(d, "b-google.list", "deb https://g.example/apt cloud-sdk-bookworm main\n");
	write_file(d, "debian.sources",
		   "Types: deb\nURIs: http://deb822.example/debian\nSuites: bookworm\n"
		   "Components: main\n");
	write_file(d, "z-other.list", "deb http://z.example/debian bookworm main\n");
	is_int(template_apt_mirror(root, "bookworm", &m), 0, "apt_mirror: sources.list.d");
	is_str(m, "http://deb822.example/debian", "apt_mirror: first in name order, deb822");
	free(TAKE_PTR(m));

	/* sources.list comes before sources.list.d/. */
	write_file(apt, "sources.list",
		   "# deb http://old.example/debian bookworm main\n"
		   "deb http://list.example/debian bookworm main\n");
	is_int(template_apt_mirror(root, "bookworm", &m), 0, "apt_mirror: sources.list");
	is_str(m, "http://list.example/debian", "apt_mirror: sources.list first");
	free(TAKE_PTR(m));

	is_int(template_apt_mirror(root, "trixie", &m), -ENOENT, "apt_mirror: other suite: none");
	rm_tree(root);

	/* The host's own sources, when it has any: a bookworm machine must yield a mirror. */
	if (template_apt_mirror("/", "bookworm", &m) == 0)
		diag("host mirror: %s", m);
}

static bool exists_in(const char *layer, const char *rel, mode_t type)
{
	_cleanup_free_ char *p = NULL;
	struct stat st;
	if (asprintf(&p, "%s/%s", layer, rel) < 0)
		return false;
	return stat(p, &st) == 0 && (st.st_mode & S_IFMT) == type;
}

static bool file_contains(const char *layer, const char *rel, const char *needle)
{
	_cleanup_free_ char *p = NULL;
	if (asprintf(&p, "%s/%s", layer, rel) < 0)
		return false;
	_cleanup_fclose_ FILE *f = fopen(p, "re");
	char line[1024];
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, needle))
			return true;
	return false;
}

static void test_build_base(void)
{
	if (!streq(getenv("HUTCH_TEST_BASE"), "1") || geteuid() != 0) {
		skip("set HUTCH_TEST_BASE=1 and run as root to build the base (minutes)",
		     "build the base template");
		return;
	}
	char cache[] = "/var/tmp/hutch-test-base-XXXXXX";
	if (!mkdtemp(cache))
		abort();
	struct base_template_config cfg = { .cache_dir = cache };
	_cleanup_free_ char *layer = NULL, *again = NULL, *want = NULL;
	uint64_t t0 = now_usec();
	int r = template_base_ensure(&cfg, &layer);
	is_int(r, 0, "template_base_ensure builds the base");
	if (r < 0) {
		rm_tree(cache);
		return;
	}
	diag("built %s in %.1f s", layer, (double)(now_usec() - t0) / 1e6);
	ok(template_base_path(cache, &want) == 0 && streq(want, layer),
	   "template_base_path names the layer");

	ok(file_contains(layer, "etc/os-release", "VERSION_CODENAME=bookworm"),
	   "os-release: bookworm");
	ok(file_contains(layer, "etc/passwd", "user:x:1000:1000:") &&
	       file_contains(layer, "etc/passwd", ":/home/user:/bin/bash"),
	   "passwd: user 1000:1000, /home/user, bash");
	ok(file_contains(layer, "etc/group", "user:x:1000:"), "group: user 1000");
	_cleanup_free_ char *home = NULL;
	struct stat st;
	ok(asprintf(&home, "%s/home/user", layer) > 0 && stat(home, &st) == 0 &&
	       S_ISDIR(st.st_mode) && st.st_uid == 1000 && st.st_gid == 1000,
	   "home: /home/user owned by 1000");
	ok(file_contains(layer, "etc/sudoers.d/user", "user ALL=(ALL:ALL) NOPASSWD: ALL"),
	   "sudoers.d: passwordless sudo");
	static const char *const bins[] = { "usr/bin/python3", "usr/bin/git",  "usr/bin/curl",
					    "usr/bin/node",    "usr/bin/sudo", "usr/bin/ps",
					    "usr/bin/ip",      "bin/bash",     "bin/ls" };
	for (size_t i = 0; i < ELEMENTSOF(bins); i++)
		ok(exists_in(layer, bins[i], S_IFREG), "binary: /%s", bins[i]);
	ok(file_contains(layer, "etc/default/locale", "LANG=C.UTF-8"), "locale: C.UTF-8");
	ok(exists_in(layer, "etc/hostname", S_IFREG), "hostname placeholder");
	_cleanup_free_ char *lists = NULL;
	ok(asprintf(&lists, "%s/var/lib/apt/lists", layer) > 0 && rmdir(lists) == 0,
	   "apt lists removed (empty directory)");
	if (lists)
		mkdir(lists, 0755);
	ok(stat(layer, &st) == 0 && st.st_uid == 0, "layer owned by root");

	t0 = now_usec();
	r = template_base_ensure(&cfg, &again);
	ok(r == 0 && streq(again, layer) && now_usec() - t0 < 1000000,
	   "a second call returns the cached layer at once");
	rm_tree(cache);
}

int main(void)
{
	test_list_format();
	test_deb822_format();
	test_mirror_valid();
	test_apt_mirror_files();
	test_build_base();
	return done();
}
