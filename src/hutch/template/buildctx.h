/*
 * The build context of `hutch template build` (the client side of COPY/ADD): which files a
 * source names, their hash, and the tar.gz the client uploads. Works on a directory fd and never
 * follows symlinks out of it.
 *
 * Files of a source are the SDK's (getAllFilesInPath): the matches of the source (a path or a
 * glob with *, ?, [...] and ** segments; dot files included), and for a matched directory the
 * directory itself and everything below it, minus what .dockerignore excludes, sorted by path.
 * The hash is the SDK's calculateFilesHash, so the CLI and Template().copy() give the same
 * filesHash for the same files: sha256 over "COPY <src> <dest>", then per file its relative path,
 * st_mode and st_size in decimal, and its content (regular files) or link target (symlinks).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

struct buildctx_file {
	char *rel;	/* relative to the context; "" is the context directory itself */
	struct stat st; /* lstat */
};

struct buildctx_files {
	struct buildctx_file *v;
	size_t n;
};

/* .dockerignore patterns: Docker's syntax (comments, `!` exceptions, ** segments). */
struct buildctx_ignore {
	char **pattern; /* cleaned, without the leading '!' */
	bool *exception;
	size_t n;
};

/* Reads <ctx>/.dockerignore (absent: no patterns). Returns 0 or -errno. */
int buildctx_ignore_load(int ctx_fd, struct buildctx_ignore *ign);
/* Same from text. */
int buildctx_ignore_parse(const char *text, struct buildctx_ignore *ign);
void buildctx_ignore_free(struct buildctx_ignore *ign);
/* Whether rel (or a directory above it) is excluded. */
bool buildctx_ignored(const struct buildctx_ignore *ign, const char *rel);

/* Matches pattern (glob segments separated by '/', "**" = any number of segments) to path. */
bool buildctx_glob_match(const char *pattern, const char *path);

/*
 * The files of src (relative, normalised: see dockerfile.h) in the context, sorted. Returns 0,
 * -ENOENT when nothing matches, -errno.
 */
int buildctx_collect(int ctx_fd, const char *src, const struct buildctx_ignore *ign,
		     struct buildctx_files *out);
void buildctx_files_free(struct buildctx_files *files);

/* The SDK's filesHash of the files (64 hex digits + NUL in hex). Returns 0 or -errno. */
int buildctx_hash(int ctx_fd, const char *src, const char *dest, const struct buildctx_files *files,
		  char hex[65]);

/* Writes the files as a gzip-compressed tar (pax) to out_fd: paths relative to the context,
 * owner 0:0, modes and mtimes kept, symlinks as symlinks. Returns 0 or -errno. */
int buildctx_write_tar(int ctx_fd, const struct buildctx_files *files, int out_fd);

/* Whether rel is a regular file holding a tar archive (plain, gzip, bzip2, xz, zstd...): what
 * Docker's ADD extracts. Returns 1, 0 or -errno. */
int buildctx_is_archive(int ctx_fd, const char *rel);
