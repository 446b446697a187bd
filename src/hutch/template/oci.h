/*
 * OCI image documents (image index / Docker manifest list, image manifest / Docker v2 manifest,
 * image config): parsers of untrusted bytes from registries and image files, with jansson. They
 * check shapes and digests' syntax; the callers check that bytes hash to their digests.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OCI_MT_INDEX	    "application/vnd.oci.image.index.v1+json"
#define OCI_MT_MANIFEST	    "application/vnd.oci.image.manifest.v1+json"
#define OCI_MT_DOCKER_LIST  "application/vnd.docker.distribution.manifest.list.v2+json"
#define OCI_MT_DOCKER_MANIF "application/vnd.docker.distribution.manifest.v2+json"
#define OCI_MAX_DOCUMENT    (4u << 20) /* manifests and indexes */
#define OCI_MAX_CONFIG	    (8u << 20)
#define OCI_DIGEST_LEN	    (7 + 64) /* "sha256:" + hex */

/* Why fetching or reading an image failed, for a build log or an API answer. */
struct image_error {
	char message[512];
};

struct oci_descriptor {
	char *media_type;
	char digest[OCI_DIGEST_LEN + 1];
	uint64_t size;
};

struct oci_manifest {
	struct oci_descriptor config;
	struct oci_descriptor *layers;
	size_t n_layers;
};

enum oci_kind {
	OCI_KIND_INDEX,	   /* OCI index or Docker manifest list */
	OCI_KIND_MANIFEST, /* OCI manifest or Docker v2 schema 2 manifest */
};

/* Whether s is "sha256:" and 64 lowercase hex digits (the only algorithm we verify). */
bool oci_digest_valid(const char *s);
/* "sha256:<hex>" of buf into out (OCI_DIGEST_LEN + 1 bytes). */
void oci_digest_of(const void *buf, size_t len, char out[OCI_DIGEST_LEN + 1]);

/* The platform images are picked for: "amd64", "arm64"... as OCI spells the host's machine. */
const char *oci_host_arch(void);

/*
 * What a manifest document is, from its mediaType field, else the HTTP Content-Type (may be
 * NULL), else its shape (a "manifests" array: an index). Schema 1 and unknown types: -EINVAL.
 */
int oci_document_kind(const char *buf, size_t len, const char *content_type, enum oci_kind *kind,
		      struct image_error *err);

/*
 * Picks a manifest from an index: with ref_name, the one annotated
 * org.opencontainers.image.ref.name = ref_name (OCI layouts' tags); otherwise the one for
 * linux/<arch> (variant ignored), or the only entry when none says its platform. Fills out
 * (media_type malloc'd; free with oci_descriptor_clear). 0, or -ENOENT / -EINVAL with err.
 */
int oci_index_select(const char *buf, size_t len, const char *arch, const char *ref_name,
		     struct oci_descriptor *out, struct image_error *err);

/* Parses an image manifest: config and layer descriptors (at most 256 layers; foreign and
 * unknown layer types refused). Free with oci_manifest_clear. */
int oci_manifest_parse(const char *buf, size_t len, struct oci_manifest *out,
		       struct image_error *err);

/*
 * Parses an image config into what the builder applies, as a new JSON object with only the
 * keys present: {"Env":[...],"WorkingDir":"...","User":"...","Cmd":[...],"Entrypoint":[...]}.
 * With diff_ids non-NULL, *diff_ids gets a new reference to rootfs.diff_ids (an array of valid
 * digests, to check layers against). Returns 0 or -EINVAL with err.
 */
int oci_config_parse(const char *buf, size_t len, json_t **config_out, json_t **diff_ids,
		     struct image_error *err);

void oci_descriptor_clear(struct oci_descriptor *d);
void oci_manifest_clear(struct oci_manifest *m);

/* Formats err->message and returns r. */
int image_fail(struct image_error *err, int r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Parses a docker-archive manifest.json ([{"Config":…,"RepoTags":[…],"Layers":[…]}, …]): the
 * first image's config path and layer paths (relative to the archive's root, normalised, never
 * absolute or with ".."). *layers is a NULL-terminated malloc'd array of malloc'd strings;
 * free with oci_strv_free. 0 or -EINVAL with err.
 */
int oci_docker_manifest_parse(const char *buf, size_t len, char **config, char ***layers,
			      size_t *n_layers, struct image_error *err);
char **oci_strv_free(char **v);
