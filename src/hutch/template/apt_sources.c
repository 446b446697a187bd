/* Finds the Debian mirror the machine already uses, from its apt sources: the one-line format
 * (sources.list, *.list) and deb822 (*.sources). Hutch never names a mirror host itself. */
#include <ctype.h>
#include <fcntl.h>
#include <strings.h>
#include <sys/stat.h>
#include "template.h"
#include "common/log.h"

#define APT_SOURCES_MAX_FILE (1024 * 1024)

bool template_mirror_valid(const char *uri)
{
	if (!uri || !(startswith(uri, "http://") || startswith(uri, "https://") ||
		      startswith(uri, "file:///")))
		return false;
	size_t n = strlen(uri);
	if (n > 1024)
		return false;
	/* It reaches debootstrap's argv and the new tree's sources.list: one printable token. */
	for (const unsigned char *c = (const unsigned char *)uri; *c; c++)
		if (*c <= 0x20 || *c >= 0x7f || strchr("\"'`\\<>{}|^", *c))
			return false;
	return true;
}

/* Splits s in place at blanks (CRLF files too); returns the next token or NULL. */
static char *next_token(char **s)
{
	char *p = *s;
	p += strspn(p, " \t\r");
	if (!*p)
		return NULL;
	char *start = p;
	p += strcspn(p, " \t\r");
	if (*p)
		*p++ = '\0';
	*s = p;
	return start;
}

static bool word_in(const char *list, const char *word)
{
	_cleanup_free_ char *copy = strdup(list ? list : "");
	if (!copy)
		return false;
	char *p = copy, *w;
	while ((w = next_token(&p)))
		if (streq(w, word))
			return true;
	return false;
}

/* One line: "deb [opt=val ...] URI SUITE COMPONENT...". Returns 1 with *uri_out on a match. */
static int list_line_match(char *line, const char *suite, char **uri_out)
{
	char *hash = strchr(line, '#');
	if (hash)
		*hash = '\0';
	char *p = line, *tok = next_token(&p);
	if (!streq(tok, "deb"))
		return 0;
	tok = next_token(&p);
	if (tok && tok[0] == '[') {
		/* Options, possibly spread over several tokens: "[ arch=amd64 ]". */
		while (tok && !strchr(tok, ']'))
			tok = next_token(&p);
		if (!tok)
			return 0;
		char *close = strchr(tok, ']');
		tok = close[1] ? close + 1 : next_token(&p);
	}
	char *uri = tok, *s = next_token(&p);
	if (!uri || !s || !streq(s, suite) || !word_in(p, "main") || !template_mirror_valid(uri))
		return 0;
	*uri_out = strdup(uri);
	return *uri_out ? 1 : -ENOMEM;
}

int template_apt_sources_find_list(const char *text, const char *suite, char **uri_out)
{
	_cleanup_free_ char *copy = strdup(text);
	if (!copy)
		return -ENOMEM;
	char *save = NULL;
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		int r = list_line_match(line, suite, uri_out);
		if (r != 0)
			return r;
	}
	return 0;
}

struct deb822_stanza {
	char *types, *uris, *suites, *components, *enabled;
};

static void stanza_clear(struct deb822_stanza *st)
{
	free(st->types);
	free(st->uris);
	free(st->suites);
	free(st->components);
	free(st->enabled);
	memset(st, 0, sizeof(*st));
}

static int stanza_match(const struct deb822_stanza *st, const char *suite, char **uri_out)
{
	if (!st->uris || !word_in(st->types, "deb") || !word_in(st->suites, suite) ||
	    !word_in(st->components, "main"))
		return 0;
	if (st->enabled && strcasecmp(st->enabled, "no") == 0)
		return 0;
	_cleanup_free_ char *uris = strdup(st->uris);
	if (!uris)
		return -ENOMEM;
	char *p = uris, *u;
	while ((u = next_token(&p)))
		if (template_mirror_valid(u)) {
			*uri_out = strdup(u);
			return *uri_out ? 1 : -ENOMEM;
		}
	return 0;
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
		s[--n] = '\0';
	return s;
}

int template_apt_sources_find_deb822(const char *text, const char *suite, char **uri_out)
{
	_cleanup_free_ char *copy = strdup(text);
	if (!copy)
		return -ENOMEM;
	_cleanup_(stanza_clear) struct deb822_stanza st = { 0 };
	/* strtok_r skips empty lines, so split by hand: a blank line closes a stanza. */
	for (char *line = copy, *nl; line; line = nl ? nl + 1 : NULL) {
		nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (*trim(line) == '\0') {
			int r = stanza_match(&st, suite, uri_out);
			if (r != 0)
				return r;
			stanza_clear(&st);
			continue;
		}
		/* Comments and continuation lines (multi-line Signed-By keys) carry nothing we use.
		 */
		if (line[0] == '#' || line[0] == ' ' || line[0] == '\t')
			continue;
		char *colon = strchr(line, ':');
		if (!colon)
			continue;
		*colon = '\0';
		char *key = trim(line), *val = trim(colon + 1);
		char **slot = strcasecmp(key, "Types") == 0	   ? &st.types
			      : strcasecmp(key, "URIs") == 0	   ? &st.uris
			      : strcasecmp(key, "Suites") == 0	   ? &st.suites
			      : strcasecmp(key, "Components") == 0 ? &st.components
			      : strcasecmp(key, "Enabled") == 0	   ? &st.enabled
								   : NULL;
		if (!slot)
			continue;
		free(*slot);
		*slot = strdup(val);
		if (!*slot)
			return -ENOMEM;
	}
	return stanza_match(&st, suite, uri_out);
}

/* Reads a whole (bounded) file. Caller frees *out. */
static int read_text(const char *path, char **out)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	if (st.st_size > APT_SOURCES_MAX_FILE)
		return -EFBIG;
	_cleanup_free_ char *buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return -ENOMEM;
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	*out = TAKE_PTR(buf);
	return 0;
}

static bool endswith(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int find_in_file(const char *path, bool deb822, const char *suite, char **uri_out)
{
	_cleanup_free_ char *text = NULL;
	int r = read_text(path, &text);
	if (r < 0) {
		log_debug_errno(r, "Skipping apt sources file '%s': %m", path);
		return 0;
	}
	return deb822 ? template_apt_sources_find_deb822(text, suite, uri_out)
		      : template_apt_sources_find_list(text, suite, uri_out);
}

static void free_namelist(struct dirent **list, int n)
{
	for (int i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

int template_apt_mirror(const char *root, const char *suite, char **mirror_out)
{
	if (isempty(root))
		root = "/";
	const char *sep = endswith(root, "/") ? "" : "/";
	_cleanup_free_ char *list = NULL, *dir = NULL;
	if (asprintf(&list, "%s%setc/apt/sources.list", root, sep) < 0 ||
	    asprintf(&dir, "%s%setc/apt/sources.list.d", root, sep) < 0)
		return -ENOMEM;

	/* apt's order: sources.list, then sources.list.d/ sorted by name. */
	int r = find_in_file(list, false, suite, mirror_out);
	if (r != 0)
		return r < 0 ? r : 0;

	struct dirent **names = NULL;
	int n = scandir(dir, &names, NULL, alphasort);
	if (n < 0)
		return -ENOENT;
	r = 0;
	for (int i = 0; i < n && r == 0; i++) {
		const char *name = names[i]->d_name;
		bool is_list = endswith(name, ".list"), is_sources = endswith(name, ".sources");
		if (name[0] == '.' || (!is_list && !is_sources))
			continue;
		_cleanup_free_ char *path = NULL;
		if (asprintf(&path, "%s/%s", dir, name) < 0) {
			r = -ENOMEM;
			break;
		}
		r = find_in_file(path, is_sources, suite, mirror_out);
	}
	free_namelist(names, n);
	if (r < 0)
		return r;
	return r > 0 ? 0 : -ENOENT;
}
