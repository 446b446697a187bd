/*
 * A client of the OCI distribution API (registry v2) over libcurl: manifests and blobs of one
 * repository, anonymous or with basic credentials, Bearer tokens from the realm the registry
 * names, every byte verified against its sha256 digest. Only http and https: https for every
 * host but loopback ones (localhost, 127.0.0.0/8, [::1]), which are spoken to in plain http.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "oci.h"

#define REGISTRY_DEFAULT_HOST "registry-1.docker.io"

/* "[host[:port]/]name[:tag][@sha256:hex]", Docker's reference grammar: a first component with a
 * '.' or ':' or "localhost" is a host; otherwise Docker Hub, where one-component names get
 * "library/". Neither tag nor digest: "latest". */
struct registry_ref {
	char host[256];
	char name[256];
	char tag[129];			 /* "" when pulled by digest */
	char digest[OCI_DIGEST_LEN + 1]; /* "" when pulled by tag */
};

/* 0, or -EINVAL with err for a malformed reference. */
int registry_ref_parse(const char *ref, struct registry_ref *out, struct image_error *err);
/* Whether host (with an optional :port) is a loopback address or name. */
bool registry_host_is_loopback(const char *host);

struct registry;

/* A session for ref's repository; username and password may be NULL (anonymous). */
int registry_open(const struct registry_ref *ref, const char *username, const char *password,
		  struct registry **out, struct image_error *err);
struct registry *registry_free(struct registry *r);

/*
 * GET /v2/<name>/manifests/<reference> (a tag or a digest), accepting OCI and Docker v2 indexes
 * and manifests. The body must hash to reference when it is a digest, and to the
 * Docker-Content-Digest header when the registry sends one. Returns 0 with the body (malloc'd,
 * NUL-terminated), its length, its Content-Type (malloc'd, may be NULL) and its digest.
 */
int registry_get_manifest(struct registry *r, const char *reference, char **body, size_t *len,
			  char **content_type, char digest[OCI_DIGEST_LEN + 1],
			  struct image_error *err);
/* GET a small blob (an image config, at most max bytes) into memory, verified. */
int registry_get_blob(struct registry *r, const char *digest, size_t max, char **body, size_t *len,
		      struct image_error *err);
/* Streams a blob of the announced size into fd (not taken over), verified; 0 or -errno. */
int registry_download_blob(struct registry *r, const char *digest, uint64_t size, int fd,
			   struct image_error *err);

/*
 * Parses a WWW-Authenticate challenge: its scheme ("Bearer", "Basic") and, for Bearer, the
 * realm, service and scope parameters ("" when absent). Each out buffer is 1024 bytes.
 * Returns 0, or -EINVAL for a malformed header.
 */
int registry_parse_challenge(const char *header, char scheme[16], char realm[1024],
			     char service[1024], char scope[1024]);
