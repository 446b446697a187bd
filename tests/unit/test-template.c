/* Templates: mirror discovery from apt sources (both formats) and the built-in templates'
 * compiled-in Dockerfiles. */
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "common/util.h"
#include "json/jsonx.h"
#include "template/builtin.h"
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

/* The step of recipe `steps` with this type whose first argument contains `needle`, or NULL. */
static json_t *find_step(json_t *steps, const char *type, const char *needle)
{
	size_t i;
	json_t *st;
	json_array_foreach (steps, i, st) {
		const char *t = json_string_value(json_object_get(st, "type"));
		const char *a0 = json_string_value(json_array_get(json_object_get(st, "args"), 0));
		if (t && a0 && streq(t, type) && strstr(a0, needle))
			return st;
	}
	return NULL;
}

/* The built-in base: its compiled-in Dockerfile parses into what E2B's base promises. The
 * layers themselves are checked through sandboxes (tests/integration/serve.test.mjs). */
static void test_builtin_base(void)
{
	const struct builtin_template *base = NULL;
	for (size_t i = 0; i < builtin_templates_n; i++)
		if (streq(builtin_templates[i].name, "base"))
			base = &builtin_templates[i];
	ok(base != NULL, "builtin: base is a built-in template");
	if (!base)
		return;
	_cleanup_json_ json_t *recipe = NULL, *again = NULL;
	char id[BUILTIN_BUILD_ID_LEN + 1] = "", id2[BUILTIN_BUILD_ID_LEN + 1] = "";
	is_int(builtin_recipe(base, &recipe, id), 0, "builtin: base's Dockerfile parses");
	if (!recipe)
		return;
	is_str(json_string_value(json_object_get(recipe, "fromImage")), "debian:bookworm",
	       "builtin: FROM debian:bookworm");
	ok(strlen(id) == BUILTIN_BUILD_ID_LEN && strspn(id, "0123456789abcdef") == strlen(id),
	   "builtin: build id is %d hex digits (%s)", BUILTIN_BUILD_ID_LEN, id);
	is_int(builtin_recipe(base, &again, id2), 0, "builtin: parses again");
	is_str(id2, id, "builtin: the same recipe gives the same build id");

	json_t *steps = json_object_get(recipe, "steps");
	json_t *apt = find_step(steps, "RUN", "apt-get install");
	ok(apt != NULL, "builtin: RUN apt-get install");
	static const char *const pkgs[] = { "bash",   "coreutils", "ca-certificates", "curl",
					    "git",    "python3",   "nodejs",	      "sudo",
					    "procps", "iproute2" };
	const char *cmd =
	    apt ? json_string_value(json_array_get(json_object_get(apt, "args"), 0)) : "";
	for (size_t i = 0; i < ELEMENTSOF(pkgs); i++) {
		char word[64];
		snprintf(word, sizeof(word), " %s ", pkgs[i]);
		ok(strstr(cmd, word) != NULL, "builtin: installs %s", pkgs[i]);
	}
	ok(strstr(cmd, "DEBIAN_FRONTEND='noninteractive'") ||
	       strstr(cmd, "DEBIAN_FRONTEND=noninteractive"),
	   "builtin: apt runs non-interactive (ARG)");
	ok(strstr(cmd, "rm -rf /var/lib/apt/lists/*") != NULL, "builtin: apt lists removed");
	ok(find_step(steps, "RUN", "NOPASSWD: ALL' > /etc/sudoers.d/user") != NULL,
	   "builtin: passwordless sudo for user");
	ok(find_step(steps, "RUN", "1000:1000:/home/user") != NULL,
	   "builtin: user is 1000:1000 with home /home/user");
	json_t *env = find_step(steps, "ENV", "LANG");
	is_str(env ? json_string_value(json_array_get(json_object_get(env, "args"), 1)) : NULL,
	       "C.UTF-8", "builtin: ENV LANG=C.UTF-8");
	json_t *last_user = NULL, *last_wd = NULL;
	size_t i;
	json_t *st;
	json_array_foreach (steps, i, st) {
		const char *t = json_string_value(json_object_get(st, "type"));
		if (t && streq(t, "USER"))
			last_user = st;
		if (t && streq(t, "WORKDIR"))
			last_wd = st;
	}
	is_str(last_user ? json_string_value(json_array_get(json_object_get(last_user, "args"), 0))
			 : NULL,
	       "user", "builtin: sandboxes run as user");
	is_str(last_wd ? json_string_value(json_array_get(json_object_get(last_wd, "args"), 0))
		       : NULL,
	       "/home/user", "builtin: in /home/user");
	ok(!json_object_get(recipe, "startCmd") && !json_object_get(recipe, "readyCmd"),
	   "builtin: no start or ready command");

	/* A built-in template has no build context. */
	const struct builtin_template bad = { "bad", "bad.Dockerfile",
					      "FROM debian:bookworm\nCOPY a /a\n" };
	_cleanup_json_ json_t *none = NULL;
	is_int(builtin_recipe(&bad, &none, id2), -EINVAL, "builtin: COPY is refused");
	const struct builtin_template broken = { "broken", "broken.Dockerfile", "RUN true\n" };
	is_int(builtin_recipe(&broken, &none, id2), -EINVAL, "builtin: no FROM is an error");
}

int main(void)
{
	test_list_format();
	test_deb822_format();
	test_mirror_valid();
	test_apt_mirror_files();
	test_builtin_base();
	return done();
}
