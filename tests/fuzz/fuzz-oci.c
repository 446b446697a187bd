/*
 * The parsers of image documents from registries and image files: index/manifest list, image
 * manifest, image config, docker-archive manifest.json, and the WWW-Authenticate challenge and
 * image reference parsers, all on the same bytes. What they accept is well-formed: valid
 * digests, relative normal paths, NUL-terminated bounded fields.
 */
#include <string.h>
#include "template/oci.h"
#include "template/registry.h"
#include "template/tar.h"
#include "fuzz.h"

static void check_manifest(const char *buf, size_t size)
{
	struct oci_manifest m;
	struct image_error err = { { 0 } };
	if (oci_manifest_parse(buf, size, &m, &err) < 0) {
		fuzz_check(err.message[0]);
		return;
	}
	fuzz_check(oci_digest_valid(m.config.digest));
	for (size_t i = 0; i < m.n_layers; i++)
		fuzz_check(oci_digest_valid(m.layers[i].digest));
	oci_manifest_clear(&m);
}

static void check_index(const char *buf, size_t size, const char *ref_name)
{
	struct oci_descriptor d;
	struct image_error err = { { 0 } };
	if (oci_index_select(buf, size, "amd64", ref_name, &d, &err) < 0) {
		fuzz_check(err.message[0]);
		return;
	}
	fuzz_check(oci_digest_valid(d.digest));
	oci_descriptor_clear(&d);
}

static void check_config(const char *buf, size_t size)
{
	json_t *cfg = NULL, *ids = NULL;
	struct image_error err = { { 0 } };
	if (oci_config_parse(buf, size, &cfg, &ids, &err) < 0) {
		fuzz_check(err.message[0]);
		return;
	}
	fuzz_check(json_is_object(cfg) && json_is_array(ids));
	json_t *v = json_object_get(cfg, "Env");
	fuzz_check(!v || json_is_array(v));
	v = json_object_get(cfg, "User");
	fuzz_check(!v || json_is_string(v));
	json_decref(cfg);
	json_decref(ids);
}

static void check_path(const char *p)
{
	char again[1024];
	fuzz_check(p[0] && p[0] != '/');
	fuzz_check(tar_path_normalize(p, again, sizeof(again)) == 0 && strcmp(again, p) == 0);
}

static void check_docker(const char *buf, size_t size)
{
	char *cfg = NULL, **layers = NULL;
	size_t n = 0;
	struct image_error err = { { 0 } };
	if (oci_docker_manifest_parse(buf, size, &cfg, &layers, &n, &err) < 0) {
		fuzz_check(err.message[0]);
		return;
	}
	check_path(cfg);
	for (size_t i = 0; i < n; i++)
		check_path(layers[i]);
	fuzz_check(layers[n] == NULL);
	free(cfg);
	oci_strv_free(layers);
}

static void check_strings(const char *s)
{
	char scheme[16], realm[1024], service[1024], scope[1024];
	if (registry_parse_challenge(s, scheme, realm, service, scope) == 0)
		fuzz_check(strlen(scheme) < 16 && strlen(realm) < 1024 && strlen(scope) < 1024);
	struct registry_ref r;
	struct image_error err = { { 0 } };
	if (registry_ref_parse(s, &r, &err) == 0) {
		fuzz_check(r.host[0] && r.name[0] && (r.tag[0] || oci_digest_valid(r.digest)));
		fuzz_check(!strstr(r.name, "..") && r.name[0] != '/');
	} else
		fuzz_check(err.message[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	enum oci_kind kind;
	struct image_error err = { { 0 } };
	if (oci_document_kind(buf, size, "application/vnd.oci.image.index.v1+json", &kind, &err) <
	    0)
		fuzz_check(err.message[0]);
	check_manifest(buf, size);
	check_index(buf, size, NULL);
	check_index(buf, size, "v1");
	check_config(buf, size);
	check_docker(buf, size);
	char *s = strndup(buf, size > 4096 ? 4096 : size);
	fuzz_check(s);
	check_strings(s);
	free(s);
	return 0;
}
