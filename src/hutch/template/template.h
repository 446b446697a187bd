/* Debian root filesystems for FROM debian:<suite> (debootstrap into a shared cache) and the
 * machine's apt sources. The default `base` template is a Dockerfile (templates/base/) built by
 * the template builder on top of one of them: see builtin.h. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct rootfs_config {
	const char *cache_dir; /* shared cache (e.g. /var/cache/hutch), not per data dir */
	const char *mirror;    /* NULL: the first Debian mirror in the machine's apt sources */
	bool quiet;
};

/* A Debian root filesystem: debootstrap of suite, then commands run in it (chroot, /bin/sh -ec). */
struct rootfs_recipe {
	const char *name; /* its directory under <cache_dir>/templates: unique per content */
	const char *what; /* for log lines: "debian:bookworm", "debian:bookworm-slim" */
	const char *suite;
	const char *variant; /* NULL: minbase */
	const char *include; /* comma-separated packages, or NULL */
	const char *const *run;
	size_t n_run;
};

/*
 * Ensures the root filesystem of rc exists under cfg->cache_dir/templates/<name> and returns its
 * path (malloc'd in *layer_out). Builds it with debootstrap on first use (minutes, root only);
 * later calls are instant. Concurrent callers (two daemons, parallel tests) are serialised by a
 * lock file.
 */
int template_rootfs_ensure(const struct rootfs_config *cfg, const struct rootfs_recipe *rc,
			   char **layer_out);

/*
 * The Debian mirror the machine's apt already uses: the URI of the first `deb` entry for `suite`
 * (exactly, not suite-updates/-security) with component main, read from <root>/etc/apt/
 * sources.list, then sources.list.d/ *.list (one-line) and *.sources (deb822) in name order.
 * root NULL or "/" is the host. Returns 0 with a malloc'd URI in *mirror_out, -ENOENT if none.
 */
int template_apt_mirror(const char *root, const char *suite, char **mirror_out);
/* Parsers behind template_apt_mirror, on one file's text: 1 with a malloc'd *uri_out on a match,
 * 0 when none, -ENOMEM. */
int template_apt_sources_find_list(const char *text, const char *suite, char **uri_out);
int template_apt_sources_find_deb822(const char *text, const char *suite, char **uri_out);
/* Whether uri is acceptable as a mirror: http://, https:// or file:///, one printable token. */
bool template_mirror_valid(const char *uri);
