/*
 * Images for FROM: a reference becomes a stack of read-only layer directories (overlay format,
 * files owned by unshifted ids) and the image's config. Four kinds of reference:
 *
 *   debian[:TAG]                 TAG = bookworm | stable | latest | 12 | bullseye | 11 | trixie |
 *                                13, optionally with -slim: debootstrap (minbase) from the
 *                                machine's Debian mirror, one layer, cached by suite + variant
 *                                (also docker.io/[library/]debian:TAG, library/debian:TAG)
 *   oci:/DIR[:REF]               an OCI image layout on disk; REF picks the manifest annotated
 *                                org.opencontainers.image.ref.name=REF (else linux/<arch>, or
 *                                the only one)
 *   docker-archive:/FILE.tar     a `docker save` / skopeo docker-archive tarball (first image)
 *   anything else                a registry image over the OCI distribution API:
 *                                [host[:port]/]name[:tag][@sha256:...]
 *
 * Local paths are read only beneath opts->local_dirs (an API client must not make the daemon
 * read arbitrary files). Shared cache layout (not per data dir):
 *   <cache>/image-layers/<sha256 hex>/   one extracted layer, keyed by its archive's digest
 *   <cache>/templates/debian-<...>/      a Debian suite (template_rootfs_ensure)
 */
#pragma once

#include <jansson.h>
#include <stdint.h>
#include "oci.h"

struct image_opts {
	const char *cache_dir;		 /* NULL: /var/cache/hutch */
	const char *mirror;		 /* Debian mirror; NULL: the machine's apt sources */
	const char *username, *password; /* registry credentials (fromImageRegistry), or NULL */
	const char *const *local_dirs;	 /* NULL-terminated; NULL: local images refused */
	uint64_t max_layer_bytes;	 /* per layer, extracted; 0: TAR_DEFAULT_MAX_BYTES */
	/* Progress lines ("pulling layer 2/5 sha256:… (31.2 MB)"), without newline; may be NULL. */
	void (*log)(void *userdata, const char *line);
	void *log_userdata;
};

struct image {
	/* What the reference resolved to, stable while the image is: the manifest digest
	 * ("sha256:…") or the Debian layer's name. Builders hash it into their cache keys. */
	char id[160];
	char **layers; /* absolute paths, lowest first */
	size_t n_layers;
	/* {"Env":[...],"WorkingDir":"...","User":"...","Cmd":[...],"Entrypoint":[...]}, only the
	 * keys the image sets. */
	json_t *config;
};

/*
 * Resolves ref into *out (cleared first; free with image_clear). Layers already in the cache
 * are reused without reading their archives again. Safe to call from several threads and
 * processes at once. Returns 0, or -errno with err->message saying what failed: -EINVAL bad
 * reference or image, -ENOENT not found, -EACCES credentials, -EBADMSG digest mismatch, -EPERM
 * a local path outside local_dirs, -EIO network or build failures.
 */
int image_fetch(const char *ref, const struct image_opts *opts, struct image *out,
		struct image_error *err);
void image_clear(struct image *img);

/* Whether ref names a Debian suite built with debootstrap; with suite/slim non-NULL, which. */
bool image_ref_debian(const char *ref, const char **suite, bool *slim);
