/*
 * A safe tar extractor (libarchive) for archives from users (COPY tarballs, ADD of local tars)
 * and registries (image layers). Whatever the archive says, nothing is written outside the
 * destination directory: paths are resolved one component at a time on directory fds without
 * following any symlink, absolute and ".." paths are refused, hardlinks must point at entries
 * inside the destination, and device nodes are never created except overlay whiteouts (char
 * 0/0). Ownership (numeric, unshifted: root = 0), modes including setuid, mtimes and xattrs
 * (security.capability, user.*, POSIX ACLs) are kept. gzip, zstd, xz, bzip2 and plain tar are
 * recognised by their content.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TAR_DEFAULT_MAX_ENTRIES 1000000ULL
#define TAR_DEFAULT_MAX_BYTES	(32ULL << 30)

struct tar_opts {
	/* OCI/Docker layer whiteouts: ".wh.NAME" becomes an overlay whiteout (char 0/0) NAME and
	 * ".wh..wh..opq" makes its directory opaque (trusted.overlay.opaque=y), so the result is
	 * usable as an overlay lowerdir. Off: ".wh." names are ordinary files. */
	bool oci_whiteouts;
	uint64_t max_entries; /* 0: TAR_DEFAULT_MAX_ENTRIES */
	uint64_t max_bytes;   /* total size of regular files; 0: TAR_DEFAULT_MAX_BYTES */
	/* Owner of everything extracted instead of the archive's ids; -1 keeps the archive's. */
	int64_t uid, gid;
};

struct tar_stats {
	uint64_t entries;   /* entries read, including skipped ones */
	uint64_t bytes;	    /* regular file contents written */
	uint64_t whiteouts; /* overlay whiteouts and opaque directories made */
	uint64_t skipped;   /* device nodes and sockets left out */
};

/* Why an extraction failed, for a build log or an API answer. */
struct tar_error {
	char message[512];
};

/*
 * Extracts the archive read from fd (not taken over; read sequentially from its current offset)
 * into the directory dest_dfd (not taken over). Entries replace what is already there (a later
 * entry wins, as with tar), but never through a symlink. opts NULL: defaults; stats may be NULL.
 * Returns 0, or -errno with err->message saying which entry and why: -EINVAL for a malformed or
 * unsafe archive, -EFBIG when a limit is exceeded, other errors from the file system. On failure
 * the destination holds a partial extraction; the caller removes it.
 */
int tar_extract_fd(int fd, int dest_dfd, const struct tar_opts *opts, struct tar_stats *stats,
		   struct tar_error *err);
/* The same for an archive in memory (buf is not taken over). */
int tar_extract_memory(const void *buf, size_t size, int dest_dfd, const struct tar_opts *opts,
		       struct tar_stats *stats, struct tar_error *err);
/* The same for an archive file and a destination path (created when missing). */
int tar_extract_path(const char *archive, const char *dest, const struct tar_opts *opts,
		     struct tar_stats *stats, struct tar_error *err);

/*
 * Whether the file at fd (not taken over; read with pread from offset 0) starts like a tar
 * archive, compressed or not: the test ADD uses to decide between copying and extracting.
 */
bool tar_probe_fd(int fd);

/*
 * Normalises an archive member path into out (size out_size): leading "./" and "/./" pieces and
 * repeated or trailing slashes dropped. Returns 0 ("" for the archive's root), or -EINVAL for an
 * absolute path, a ".." component or an empty name, -ENAMETOOLONG when it does not fit or a
 * component exceeds NAME_MAX.
 */
int tar_path_normalize(const char *path, char *out, size_t out_size);
