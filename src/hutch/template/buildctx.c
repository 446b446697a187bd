/* The client side of COPY/ADD: matching, .dockerignore, the SDK's files hash, tar.gz uploads. */
#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <nettle/sha2.h>
#include <stdio.h>
#include <string.h>
#include "buildctx.h"
#include "common/macro.h"
#include "common/strbuf.h"

/* ---- patterns ---- */

static bool seg_match(const char *pat, size_t plen, const char *s, size_t slen)
{
	char p[512], n[512];
	if (plen >= sizeof(p) || slen >= sizeof(n))
		return false;
	memcpy(p, pat, plen);
	p[plen] = 0;
	memcpy(n, s, slen);
	n[slen] = 0;
	return fnmatch(p, n, 0) == 0;
}

static bool match_from(const char *pat, const char *path, int depth)
{
	if (depth > 64)
		return false;
	if (!*pat)
		return !*path;
	size_t plen = strcspn(pat, "/");
	const char *pnext = pat[plen] ? pat + plen + 1 : pat + plen;
	if (plen == 2 && pat[0] == '*' && pat[1] == '*') {
		/* Zero or more whole segments. */
		if (!*pnext)
			return true;
		for (const char *p = path;; p++) {
			if (match_from(pnext, p, depth + 1))
				return true;
			p = strchr(p, '/');
			if (!p)
				return false;
		}
	}
	if (!*path)
		return false;
	size_t slen = strcspn(path, "/");
	if (!seg_match(pat, plen, path, slen))
		return false;
	const char *snext = path[slen] ? path + slen + 1 : path + slen;
	if (!*pnext)
		return !*snext;
	return match_from(pnext, snext, depth + 1);
}

bool buildctx_glob_match(const char *pattern, const char *path)
{
	return match_from(pattern, path, 0);
}

static bool has_glob(const char *s)
{
	return strpbrk(s, "*?[") != NULL;
}

/* filepath.Clean for a relative pattern: no leading '/', no "." or empty segments. */
static char *clean_pattern(const char *s)
{
	_cleanup_strbuf_ struct strbuf sb = { 0 };
	while (*s) {
		while (*s == '/')
			s++;
		size_t len = strcspn(s, "/");
		if (len == 0)
			break;
		if (!(len == 1 && s[0] == '.')) {
			if ((sb.len && strbuf_append(&sb, "/", 1) < 0) ||
			    strbuf_append(&sb, s, len) < 0)
				return NULL;
		}
		s += len;
	}
	return sb.len ? strbuf_steal(&sb) : strdup("");
}

int buildctx_ignore_parse(const char *text, struct buildctx_ignore *ign)
{
	*ign = (struct buildctx_ignore){ 0 };
	const char *s = text;
	while (*s) {
		size_t len = strcspn(s, "\n");
		const char *line = s;
		s += len + (s[len] ? 1 : 0);
		while (len && isspace((unsigned char)*line))
			line++, len--;
		while (len && isspace((unsigned char)line[len - 1]))
			len--;
		if (!len || line[0] == '#')
			continue;
		bool exc = line[0] == '!';
		_cleanup_free_ char *raw = strndup(line + exc, len - exc);
		char *pat = raw ? clean_pattern(raw) : NULL;
		if (!pat)
			return -ENOMEM;
		if (!*pat) {
			free(pat);
			continue;
		}
		char **np = realloc(ign->pattern, (ign->n + 1) * sizeof(*np));
		if (np)
			ign->pattern = np;
		bool *ne = np ? realloc(ign->exception, (ign->n + 1) * sizeof(*ne)) : NULL;
		if (!ne) {
			free(pat);
			return -ENOMEM;
		}
		ign->exception = ne;
		ign->pattern[ign->n] = pat;
		ign->exception[ign->n++] = exc;
	}
	return 0;
}

int buildctx_ignore_load(int ctx_fd, struct buildctx_ignore *ign)
{
	*ign = (struct buildctx_ignore){ 0 };
	_cleanup_close_ int fd = openat(ctx_fd, ".dockerignore", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? 0 : negative_errno();
	_cleanup_strbuf_ struct strbuf sb = { 0 };
	char buf[8192];
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		if (sb.len + (size_t)n > (1u << 20))
			return -EFBIG;
		if (strbuf_append(&sb, buf, (size_t)n) < 0)
			return -ENOMEM;
	}
	if (n < 0)
		return negative_errno();
	return buildctx_ignore_parse(sb.data ? sb.data : "", ign);
}

void buildctx_ignore_free(struct buildctx_ignore *ign)
{
	for (size_t i = 0; i < ign->n; i++)
		free(ign->pattern[i]);
	free(ign->pattern);
	free(ign->exception);
	*ign = (struct buildctx_ignore){ 0 };
}

/* A pattern excludes a path when it matches the path or a directory above it. */
static bool pattern_covers(const char *pat, const char *rel)
{
	char buf[4096];
	size_t len = strlen(rel);
	if (len >= sizeof(buf))
		return false;
	memcpy(buf, rel, len + 1);
	for (;;) {
		if (buildctx_glob_match(pat, buf))
			return true;
		char *slash = strrchr(buf, '/');
		if (!slash)
			return false;
		*slash = 0;
	}
}

bool buildctx_ignored(const struct buildctx_ignore *ign, const char *rel)
{
	bool excluded = false;
	if (!ign || !*rel)
		return false;
	for (size_t i = 0; i < ign->n; i++)
		if (pattern_covers(ign->pattern[i], rel))
			excluded = !ign->exception[i];
	return excluded;
}

/* ---- collecting ---- */

struct collector {
	int ctx_fd;
	const struct buildctx_ignore *ign;
	struct buildctx_files *out;
	size_t cap;
};

static int stat_rel(int ctx_fd, const char *rel, struct stat *st)
{
	if (fstatat(ctx_fd, *rel ? rel : ".", st, AT_SYMLINK_NOFOLLOW) < 0)
		return negative_errno();
	return 0;
}

static char *join(const char *base, const char *name, size_t nlen)
{
	char *s = NULL;
	if (asprintf(&s, "%s%s%.*s", base, *base ? "/" : "", (int)nlen, name) < 0)
		return NULL;
	return s;
}

static int add_file(struct collector *c, const char *rel, const struct stat *st)
{
	struct buildctx_files *f = c->out;
	if (f->n == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 64;
		struct buildctx_file *nv = realloc(f->v, ncap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		f->v = nv;
		c->cap = ncap;
	}
	f->v[f->n].rel = strdup(rel);
	if (!f->v[f->n].rel)
		return -ENOMEM;
	f->v[f->n++].st = *st;
	return 0;
}

/* Calls fn for every entry name of directory rel. */
static int for_each_entry(struct collector *c, const char *rel,
			  int (*fn)(struct collector *, const char *, const char *, void *),
			  void *ud)
{
	int fd =
	    openat(c->ctx_fd, *rel ? rel : ".", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	_cleanup_closedir_ DIR *d = fdopendir(fd);
	if (!d) {
		int r = negative_errno();
		close(fd);
		return r;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		int r = fn(c, rel, de->d_name, ud);
		if (r < 0)
			return r;
	}
	return 0;
}

static int add_tree(struct collector *c, const char *rel);

static int add_tree_entry(struct collector *c, const char *dir, const char *name, void *ud)
{
	_cleanup_free_ char *rel = join(dir, name, strlen(name));
	return rel ? add_tree(c, rel) : -ENOMEM;
}

/* rel and, for a directory, everything below it that is not ignored. */
static int add_tree(struct collector *c, const char *rel)
{
	if (buildctx_ignored(c->ign, rel))
		return 0;
	struct stat st;
	int r = stat_rel(c->ctx_fd, rel, &st);
	if (r < 0)
		return r == -ENOENT ? 0 : r;
	r = add_file(c, rel, &st);
	if (r >= 0 && S_ISDIR(st.st_mode))
		r = for_each_entry(c, rel, add_tree_entry, NULL);
	return r;
}

static int match(struct collector *c, const char *base, const char *rest);

struct glob_step {
	const char *seg;
	size_t seglen;
	const char *next; /* the pattern after this segment ("" at the end) */
	bool doublestar;
};

static int glob_entry(struct collector *c, const char *dir, const char *name, void *ud)
{
	const struct glob_step *g = ud;
	_cleanup_free_ char *rel = join(dir, name, strlen(name));
	if (!rel)
		return -ENOMEM;
	struct stat st;
	if (g->doublestar) {
		/* ** also spans this directory: keep matching the same pattern below it. */
		if (stat_rel(c->ctx_fd, rel, &st) < 0 || !S_ISDIR(st.st_mode))
			return 0;
		return match(c, rel, g->seg);
	}
	if (!seg_match(g->seg, g->seglen, name, strlen(name)))
		return 0;
	if (!*g->next)
		return add_tree(c, rel);
	if (stat_rel(c->ctx_fd, rel, &st) < 0 || !S_ISDIR(st.st_mode))
		return 0;
	return match(c, rel, g->next);
}

/* Matches the pattern rest below the directory base. */
static int match(struct collector *c, const char *base, const char *rest)
{
	size_t len = strcspn(rest, "/");
	const char *next = rest[len] ? rest + len + 1 : rest + len;
	if (len == 2 && rest[0] == '*' && rest[1] == '*') {
		if (!*next) /* a trailing ** : everything below */
			return for_each_entry(c, base, add_tree_entry, NULL);
		int r = match(c, base, next);
		struct glob_step g = { .seg = rest, .doublestar = true };
		return r < 0 ? r : for_each_entry(c, base, glob_entry, &g);
	}
	_cleanup_free_ char *seg = strndup(rest, len);
	if (!seg)
		return -ENOMEM;
	if (has_glob(seg)) {
		struct glob_step g = { .seg = rest, .seglen = len, .next = next };
		return for_each_entry(c, base, glob_entry, &g);
	}
	_cleanup_free_ char *rel = join(base, rest, len);
	if (!rel)
		return -ENOMEM;
	if (!*next)
		return add_tree(c, rel);
	struct stat st;
	if (stat_rel(c->ctx_fd, rel, &st) < 0 || !S_ISDIR(st.st_mode))
		return 0;
	return match(c, rel, next);
}

static int cmp_file(const void *a, const void *b)
{
	return strcmp(((const struct buildctx_file *)a)->rel,
		      ((const struct buildctx_file *)b)->rel);
}

int buildctx_collect(int ctx_fd, const char *src, const struct buildctx_ignore *ign,
		     struct buildctx_files *out)
{
	*out = (struct buildctx_files){ 0 };
	struct collector c = { .ctx_fd = ctx_fd, .ign = ign, .out = out };
	int r = streq(src, ".") ? add_tree(&c, "") : match(&c, "", src);
	if (r == -ENOENT || r == -ENOTDIR)
		r = 0; /* a directory vanished or a path component is a file: no match */
	if (r >= 0 && out->n == 0)
		r = -ENOENT;
	if (r < 0) {
		buildctx_files_free(out);
		return r;
	}
	qsort(out->v, out->n, sizeof(*out->v), cmp_file);
	size_t w = 0;
	for (size_t i = 0; i < out->n; i++) {
		if (w && streq(out->v[w - 1].rel, out->v[i].rel)) {
			free(out->v[i].rel);
			continue;
		}
		out->v[w++] = out->v[i];
	}
	out->n = w;
	return 0;
}

void buildctx_files_free(struct buildctx_files *files)
{
	for (size_t i = 0; i < files->n; i++)
		free(files->v[i].rel);
	free(files->v);
	*files = (struct buildctx_files){ 0 };
}

/* ---- hash ---- */

static void sha_str(struct sha256_ctx *h, const char *s)
{
	sha256_update(h, strlen(s), (const uint8_t *)s);
}

int buildctx_hash(int ctx_fd, const char *src, const char *dest, const struct buildctx_files *files,
		  char hex[65])
{
	struct sha256_ctx h;
	sha256_init(&h);
	sha_str(&h, "COPY ");
	sha_str(&h, src);
	sha_str(&h, " ");
	sha_str(&h, dest);
	for (size_t i = 0; i < files->n; i++) {
		const struct buildctx_file *f = &files->v[i];
		char num[32];
		sha_str(&h, f->rel);
		snprintf(num, sizeof(num), "%u", (unsigned)f->st.st_mode);
		sha_str(&h, num);
		snprintf(num, sizeof(num), "%lld", (long long)f->st.st_size);
		sha_str(&h, num);
		if (S_ISLNK(f->st.st_mode)) {
			char target[4096];
			ssize_t n = readlinkat(ctx_fd, f->rel, target, sizeof(target));
			if (n < 0)
				return negative_errno();
			sha256_update(&h, (size_t)n, (const uint8_t *)target);
		} else if (S_ISREG(f->st.st_mode)) {
			_cleanup_close_ int fd =
			    openat(ctx_fd, f->rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0)
				return negative_errno();
			uint8_t buf[65536];
			ssize_t n;
			while ((n = read(fd, buf, sizeof(buf))) > 0)
				sha256_update(&h, (size_t)n, buf);
			if (n < 0)
				return negative_errno();
		}
	}
	uint8_t digest[SHA256_DIGEST_SIZE];
	sha256_digest(&h, sizeof(digest), digest);
	for (size_t i = 0; i < sizeof(digest); i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
	return 0;
}

/* ---- tar ---- */

static int arch_err(struct archive *a)
{
	int e = archive_errno(a);
	return e > 0 ? -e : -EIO;
}

static int write_entry(struct archive *a, int ctx_fd, const struct buildctx_file *f)
{
	struct archive_entry *e = archive_entry_new();
	if (!e)
		return -ENOMEM;
	archive_entry_copy_stat(e, &f->st);
	archive_entry_set_pathname(e, f->rel);
	archive_entry_set_uid(e, 0);
	archive_entry_set_gid(e, 0);
	archive_entry_set_nlink(e, 1);
	int r = 0;
	_cleanup_close_ int fd = -1;
	if (S_ISLNK(f->st.st_mode)) {
		char target[4096];
		ssize_t n = readlinkat(ctx_fd, f->rel, target, sizeof(target) - 1);
		if (n < 0)
			r = negative_errno();
		else {
			target[n] = 0;
			archive_entry_set_symlink(e, target);
		}
	} else if (S_ISREG(f->st.st_mode)) {
		fd = openat(ctx_fd, f->rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			r = negative_errno();
	} else if (!S_ISDIR(f->st.st_mode)) {
		archive_entry_free(e);
		return 0; /* sockets, fifos, devices: not build inputs */
	}
	if (r >= 0 && archive_write_header(a, e) != ARCHIVE_OK)
		r = arch_err(a);
	archive_entry_free(e);
	if (r < 0 || fd < 0)
		return r;
	char buf[65536];
	ssize_t n;
	off_t left = f->st.st_size;
	while (left > 0 && (n = read(fd, buf, (size_t)MIN((off_t)sizeof(buf), left))) > 0) {
		if (archive_write_data(a, buf, (size_t)n) < 0)
			return arch_err(a);
		left -= n;
	}
	/* A file that shrank since stat: pad, so the archive stays well formed. */
	memset(buf, 0, sizeof(buf));
	while (left > 0) {
		size_t k = (size_t)MIN((off_t)sizeof(buf), left);
		if (archive_write_data(a, buf, k) < 0)
			return arch_err(a);
		left -= (off_t)k;
	}
	return 0;
}

int buildctx_write_tar(int ctx_fd, const struct buildctx_files *files, int out_fd)
{
	struct archive *a = archive_write_new();
	if (!a)
		return -ENOMEM;
	int r = 0;
	if (archive_write_add_filter_gzip(a) != ARCHIVE_OK ||
	    archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
	    archive_write_open_fd(a, out_fd) != ARCHIVE_OK)
		r = arch_err(a);
	for (size_t i = 0; r >= 0 && i < files->n; i++)
		if (*files->v[i].rel)
			r = write_entry(a, ctx_fd, &files->v[i]);
	if (archive_write_close(a) != ARCHIVE_OK && r >= 0)
		r = arch_err(a);
	archive_write_free(a);
	return r;
}

int buildctx_is_archive(int ctx_fd, const char *rel)
{
	struct stat st;
	if (fstatat(ctx_fd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return negative_errno();
	if (!S_ISREG(st.st_mode))
		return 0;
	_cleanup_close_ int fd = openat(ctx_fd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	struct archive *a = archive_read_new();
	if (!a)
		return -ENOMEM;
	archive_read_support_filter_all(a);
	archive_read_support_format_tar(a);
	struct archive_entry *e;
	int r = archive_read_open_fd(a, fd, 65536) == ARCHIVE_OK &&
		archive_read_next_header(a, &e) == ARCHIVE_OK;
	archive_read_free(a);
	return r;
}
