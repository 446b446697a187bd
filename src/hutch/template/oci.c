/* OCI image documents: parsed with jansson, every field checked before use. */
#include <nettle/sha2.h>
#include <stdarg.h>
#include <sys/utsname.h>
#include "oci.h"
#include "common/util.h"
#include "json/jsonx.h"
#include "tar.h"

#define OCI_MAX_LAYERS 256
#define OCI_REF_NAME   "org.opencontainers.image.ref.name"

int image_fail(struct image_error *err, int r, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->message, sizeof(err->message), fmt, ap);
		va_end(ap);
	}
	return r;
}

bool oci_digest_valid(const char *s)
{
	if (!startswith(s, "sha256:") || strlen(s) != OCI_DIGEST_LEN)
		return false;
	for (const char *c = s + 7; *c; c++)
		if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
			return false;
	return true;
}

void oci_digest_of(const void *buf, size_t len, char out[OCI_DIGEST_LEN + 1])
{
	struct sha256_ctx ctx;
	uint8_t d[SHA256_DIGEST_SIZE];
	sha256_init(&ctx);
	sha256_update(&ctx, len, buf);
	sha256_digest(&ctx, sizeof(d), d);
	memcpy(out, "sha256:", 7);
	for (size_t i = 0; i < sizeof(d); i++)
		snprintf(out + 7 + 2 * i, 3, "%02x", d[i]);
}

const char *oci_host_arch(void)
{
	static const struct {
		const char *uname, *oci;
	} map[] = { { "x86_64", "amd64" },   { "aarch64", "arm64" },   { "armv7l", "arm" },
		    { "i686", "386" },	     { "ppc64le", "ppc64le" }, { "s390x", "s390x" },
		    { "riscv64", "riscv64" } };
	struct utsname u;
	if (uname(&u) == 0)
		for (size_t i = 0; i < ELEMENTSOF(map); i++)
			if (streq(u.machine, map[i].uname))
				return map[i].oci;
	return "amd64";
}

static json_t *load(const char *buf, size_t len, size_t max, const char *what,
		    struct image_error *err)
{
	if (len > max) {
		image_fail(err, -EFBIG, "%s is larger than %zu bytes", what, max);
		return NULL;
	}
	json_error_t je;
	json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		image_fail(err, -EINVAL, "%s is not valid JSON: %s (line %d)", what, je.text,
			   je.line);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		image_fail(err, -EINVAL, "%s is not a JSON object", what);
		return NULL;
	}
	return j;
}

static const char *get_str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* A printable short string (media types, names): nothing for a log to choke on. */
static bool token_ok(const char *s, size_t max)
{
	if (!s || strlen(s) > max)
		return false;
	for (const unsigned char *c = (const unsigned char *)s; *c; c++)
		if (*c < 0x20 || *c >= 0x7f)
			return false;
	return true;
}

static int descriptor_parse(const json_t *j, const char *what, struct oci_descriptor *out,
			    struct image_error *err)
{
	memset(out, 0, sizeof(*out));
	if (!json_is_object(j))
		return image_fail(err, -EINVAL, "%s is not an object", what);
	const char *digest = get_str(j, "digest");
	const char *mt = get_str(j, "mediaType");
	json_t *size = json_object_get(j, "size");
	if (!oci_digest_valid(digest))
		return image_fail(err, -EINVAL, "%s has no sha256 digest", what);
	if (mt && !token_ok(mt, 255))
		return image_fail(err, -EINVAL, "%s has a bad mediaType", what);
	if (!json_is_integer(size) || json_integer_value(size) < 0)
		return image_fail(err, -EINVAL, "%s has no valid size", what);
	memcpy(out->digest, digest, OCI_DIGEST_LEN + 1);
	out->size = (uint64_t)json_integer_value(size);
	if (mt && !(out->media_type = strdup(mt)))
		return image_fail(err, -ENOMEM, "out of memory");
	return 0;
}

void oci_descriptor_clear(struct oci_descriptor *d)
{
	if (!d)
		return;
	free(d->media_type);
	memset(d, 0, sizeof(*d));
}

void oci_manifest_clear(struct oci_manifest *m)
{
	if (!m)
		return;
	oci_descriptor_clear(&m->config);
	for (size_t i = 0; i < m->n_layers; i++)
		oci_descriptor_clear(&m->layers[i]);
	free(m->layers);
	memset(m, 0, sizeof(*m));
}

int oci_document_kind(const char *buf, size_t len, const char *content_type, enum oci_kind *kind,
		      struct image_error *err)
{
	_cleanup_json_ json_t *j = load(buf, len, OCI_MAX_DOCUMENT, "the manifest", err);
	if (!j)
		return -EINVAL;
	const char *mt = get_str(j, "mediaType");
	char ct[256];
	if (!mt && content_type) {
		size_t n = strcspn(content_type, "; ");
		snprintf(ct, sizeof(ct), "%.*s", (int)MIN(n, sizeof(ct) - 1), content_type);
		if (streq(ct, OCI_MT_INDEX) || streq(ct, OCI_MT_MANIFEST) ||
		    streq(ct, OCI_MT_DOCKER_LIST) || streq(ct, OCI_MT_DOCKER_MANIF))
			mt = ct;
	}
	if (streq(mt, OCI_MT_INDEX) || streq(mt, OCI_MT_DOCKER_LIST))
		*kind = OCI_KIND_INDEX;
	else if (streq(mt, OCI_MT_MANIFEST) || streq(mt, OCI_MT_DOCKER_MANIF))
		*kind = OCI_KIND_MANIFEST;
	else if (mt)
		return image_fail(err, -EINVAL, "unsupported manifest type '%s'",
				  token_ok(mt, 255) ? mt : "?");
	else if (json_is_array(json_object_get(j, "manifests")))
		*kind = OCI_KIND_INDEX;
	else if (json_is_object(json_object_get(j, "config")) &&
		 json_is_array(json_object_get(j, "layers")))
		*kind = OCI_KIND_MANIFEST;
	else
		return image_fail(err, -EINVAL,
				  "unsupported manifest (Docker schema 1 or unknown format)");
	return 0;
}

int oci_index_select(const char *buf, size_t len, const char *arch, const char *ref_name,
		     struct oci_descriptor *out, struct image_error *err)
{
	memset(out, 0, sizeof(*out));
	_cleanup_json_ json_t *j = load(buf, len, OCI_MAX_DOCUMENT, "the image index", err);
	if (!j)
		return -EINVAL;
	json_t *list = json_object_get(j, "manifests");
	if (!json_is_array(list) || json_array_size(list) == 0)
		return image_fail(err, -EINVAL, "the image index lists no manifests");
	const json_t *pick = NULL, *unlabelled = NULL;
	size_t n_unlabelled = 0, i;
	json_t *m;
	json_array_foreach (list, i, m) {
		if (!json_is_object(m))
			return image_fail(err, -EINVAL, "the image index has a bad entry");
		if (ref_name) {
			json_t *ann = json_object_get(m, "annotations");
			if (streq(get_str(ann, OCI_REF_NAME), ref_name)) {
				pick = m;
				break;
			}
			continue;
		}
		json_t *platform = json_object_get(m, "platform");
		if (!platform) {
			unlabelled = m;
			n_unlabelled++;
			continue;
		}
		if (streq(get_str(platform, "os"), "linux") &&
		    streq(get_str(platform, "architecture"), arch)) {
			pick = m;
			break;
		}
	}
	if (!pick && ref_name)
		return image_fail(err, -ENOENT, "no image tagged '%s' in the index",
				  token_ok(ref_name, 128) ? ref_name : "?");
	if (!pick && n_unlabelled == 1 && json_array_size(list) == 1)
		pick = unlabelled;
	if (!pick)
		return image_fail(err, -ENOENT, "the image has no linux/%s variant", arch);
	return descriptor_parse(pick, "the index entry", out, err);
}

static bool layer_type_ok(const char *mt)
{
	static const char *const ok[] = {
		"application/vnd.oci.image.layer.v1.tar",
		"application/vnd.oci.image.layer.v1.tar+gzip",
		"application/vnd.oci.image.layer.v1.tar+zstd",
		"application/vnd.docker.image.rootfs.diff.tar.gzip",
		"application/vnd.docker.image.rootfs.diff.tar",
	};
	if (!mt)
		return true; /* the tar reader finds out from the content */
	for (size_t i = 0; i < ELEMENTSOF(ok); i++)
		if (streq(mt, ok[i]))
			return true;
	return false;
}

int oci_manifest_parse(const char *buf, size_t len, struct oci_manifest *out,
		       struct image_error *err)
{
	memset(out, 0, sizeof(*out));
	_cleanup_json_ json_t *j = load(buf, len, OCI_MAX_DOCUMENT, "the image manifest", err);
	if (!j)
		return -EINVAL;
	json_t *sv = json_object_get(j, "schemaVersion");
	if (sv && json_integer_value(sv) != 2)
		return image_fail(err, -EINVAL, "unsupported manifest schemaVersion (want 2)");
	json_t *layers = json_object_get(j, "layers");
	if (!json_is_array(layers))
		return image_fail(err, -EINVAL, "the image manifest has no layers array");
	if (json_array_size(layers) > OCI_MAX_LAYERS)
		return image_fail(err, -EINVAL, "the image has more than %d layers",
				  OCI_MAX_LAYERS);
	struct oci_manifest m = { 0 };
	int r =
	    descriptor_parse(json_object_get(j, "config"), "the manifest's config", &m.config, err);
	if (r < 0)
		return r;
	if (json_array_size(layers) &&
	    !(m.layers = calloc(json_array_size(layers), sizeof(*m.layers)))) {
		oci_manifest_clear(&m);
		return image_fail(err, -ENOMEM, "out of memory");
	}
	size_t i;
	json_t *l;
	json_array_foreach (layers, i, l) {
		char what[48];
		snprintf(what, sizeof(what), "layer %zu", i + 1);
		r = descriptor_parse(l, what, &m.layers[m.n_layers], err);
		if (r < 0) {
			oci_manifest_clear(&m);
			return r;
		}
		m.n_layers++;
		if (!layer_type_ok(m.layers[i].media_type)) {
			r = image_fail(err, -EINVAL,
				       "layer %zu has an unsupported type '%s' (foreign or "
				       "non-tar layers are not pulled)",
				       i + 1, m.layers[i].media_type);
			oci_manifest_clear(&m);
			return r;
		}
	}
	*out = m;
	return 0;
}

static bool string_array_ok(const json_t *a)
{
	if (!json_is_array(a))
		return false;
	size_t i;
	json_t *s;
	json_array_foreach (a, i, s) {
		if (!json_is_string(s))
			return false;
	}
	return true;
}

int oci_config_parse(const char *buf, size_t len, json_t **config_out, json_t **diff_ids,
		     struct image_error *err)
{
	_cleanup_json_ json_t *j = load(buf, len, OCI_MAX_CONFIG, "the image config", err);
	if (!j)
		return -EINVAL;
	const char *os = get_str(j, "os");
	if (os && !streq(os, "linux"))
		return image_fail(err, -EINVAL, "the image is for '%s', not linux",
				  token_ok(os, 32) ? os : "?");
	json_t *rootfs = json_object_get(j, "rootfs");
	json_t *ids = json_object_get(rootfs, "diff_ids");
	if (!string_array_ok(ids))
		return image_fail(err, -EINVAL, "the image config has no rootfs.diff_ids");
	size_t i;
	json_t *d;
	json_array_foreach (ids, i, d) {
		if (!oci_digest_valid(json_string_value(d)))
			return image_fail(err, -EINVAL, "the image config has a bad diff_id");
	}

	_cleanup_json_ json_t *out = json_object();
	if (!out)
		return image_fail(err, -ENOMEM, "out of memory");
	json_t *c = json_object_get(j, "config");
	if (c && !json_is_null(c)) {
		if (!json_is_object(c))
			return image_fail(err, -EINVAL,
					  "the image config's config is not an object");
		static const char *const arrays[] = { "Env", "Cmd", "Entrypoint" };
		static const char *const strings[] = { "WorkingDir", "User" };
		for (size_t k = 0; k < ELEMENTSOF(arrays); k++) {
			json_t *v = json_object_get(c, arrays[k]);
			if (!v || json_is_null(v))
				continue;
			if (!string_array_ok(v))
				return image_fail(err, -EINVAL,
						  "the image config's %s is not a list of strings",
						  arrays[k]);
			json_object_set(out, arrays[k], v);
		}
		for (size_t k = 0; k < ELEMENTSOF(strings); k++) {
			json_t *v = json_object_get(c, strings[k]);
			if (!v || json_is_null(v))
				continue;
			if (!json_is_string(v))
				return image_fail(err, -EINVAL,
						  "the image config's %s is not a string",
						  strings[k]);
			if (json_string_length(v))
				json_object_set(out, strings[k], v);
		}
	}
	if (diff_ids)
		*diff_ids = json_incref(ids);
	*config_out = TAKE_PTR(out);
	return 0;
}

char **oci_strv_free(char **v)
{
	for (char **p = v; p && *p; p++)
		free(*p);
	free(v);
	return NULL;
}

/* A member path of the archive: relative, normalised, no "..". */
static char *member_path(const char *s)
{
	char out[1024];
	if (!s || tar_path_normalize(s, out, sizeof(out)) < 0 || !*out)
		return NULL;
	return strdup(out);
}

int oci_docker_manifest_parse(const char *buf, size_t len, char **config, char ***layers,
			      size_t *n_layers, struct image_error *err)
{
	if (len > OCI_MAX_DOCUMENT)
		return image_fail(err, -EFBIG, "manifest.json is larger than %u bytes",
				  OCI_MAX_DOCUMENT);
	json_error_t je;
	_cleanup_json_ json_t *j = json_loadb(buf, len, 0, &je);
	if (!j)
		return image_fail(err, -EINVAL, "manifest.json is not valid JSON: %s", je.text);
	json_t *first = json_array_get(j, 0);
	if (!json_is_array(j) || !json_is_object(first))
		return image_fail(err, -EINVAL, "manifest.json lists no image");
	json_t *ls = json_object_get(first, "Layers");
	if (!string_array_ok(ls) || json_array_size(ls) > OCI_MAX_LAYERS)
		return image_fail(err, -EINVAL, "manifest.json: Layers is not a list of paths");
	_cleanup_free_ char *cfg = member_path(get_str(first, "Config"));
	if (!cfg)
		return image_fail(err, -EINVAL, "manifest.json: bad or missing Config path");
	char **v = calloc(json_array_size(ls) + 1, sizeof(char *));
	if (!v)
		return image_fail(err, -ENOMEM, "out of memory");
	size_t i;
	json_t *l;
	json_array_foreach (ls, i, l) {
		if (!(v[i] = member_path(json_string_value(l)))) {
			oci_strv_free(v);
			return image_fail(err, -EINVAL, "manifest.json: bad layer path %zu", i + 1);
		}
	}
	*config = TAKE_PTR(cfg);
	*layers = v;
	*n_layers = json_array_size(ls);
	return 0;
}
