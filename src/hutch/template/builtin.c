/* The built-in templates (see builtin.h). */
#include "template/builtin.h"

#include <nettle/sha2.h>
#include "base_dockerfile.h"
#include "common/log.h"
#include "common/util.h"
#include "common/version.h"
#include "json/jsonx.h"
#include "template/dockerfile.h"

const struct builtin_template builtin_templates[] = {
	{ "base", "templates/base/e2b.Dockerfile", base_dockerfile_text },
};
const size_t builtin_templates_n = ELEMENTSOF(builtin_templates);

int builtin_recipe(const struct builtin_template *bt, json_t **recipe_out,
		   char build_id[BUILTIN_BUILD_ID_LEN + 1])
{
	struct dockerfile *df = NULL;
	struct dockerfile_error err = { 0 };
	int r = dockerfile_parse(bt->dockerfile, strlen(bt->dockerfile), NULL, 0, &df, &err);
	if (r < 0)
		return log_error_errno(r, "%s:%u: %s", bt->path, err.line,
				       r == -ENOMEM ? "out of memory" : err.message);
	for (size_t i = 0; i < df->n_warnings; i++)
		log_warn("%s: %s", bt->path, df->warnings[i]);
	if (df->n_copies > 0) {
		log_error("%s:%u: a built-in template cannot COPY or ADD (it has no build context)",
			  bt->path, df->copies[0].line);
		dockerfile_free(df);
		return -EINVAL;
	}
	_cleanup_free_ char *text = json_dumps(df->recipe, JSON_COMPACT | JSON_SORT_KEYS);
	if (!text) {
		dockerfile_free(df);
		return -ENOMEM;
	}
	struct sha256_ctx c;
	uint8_t d[SHA256_DIGEST_SIZE];
	sha256_init(&c);
	sha256_update(&c, strlen(text), (const uint8_t *)text);
	sha256_digest(&c, sizeof(d), d);
	for (size_t i = 0; i < BUILTIN_BUILD_ID_LEN / 2; i++)
		snprintf(build_id + 2 * i, 3, "%02x", d[i]);
	*recipe_out = json_incref(df->recipe);
	dockerfile_free(df);
	return 0;
}

/* The template's row: made on first start; the limits follow the configuration, as for a
 * template created with no limits of its own. */
static int put_template(struct store *st, const struct hutch_config *cfg, const char *name)
{
	struct template_rec t = { 0 };
	if (store_template_get(st, name, &t) < 0 || !streq(t.id, name)) {
		template_rec_clear(&t);
		memset(&t, 0, sizeof(t));
		snprintf(t.id, sizeof(t.id), "%s", name);
		snprintf(t.alias, sizeof(t.alias), "%s", name);
		snprintf(t.status, sizeof(t.status), "building");
	}
	snprintf(t.envd_version, sizeof(t.envd_version), "%s", ENVD_PROTOCOL_VERSION);
	t.cpu_count = cfg->default_cpu;
	t.memory_mb = cfg->default_memory_mb;
	t.disk_mb = cfg->default_disk_mb;
	int r = store_template_put(st, &t);
	template_rec_clear(&t);
	return r;
}

int builtin_template_start(struct builder *b, struct store *st, const struct hutch_config *cfg,
			   const struct builtin_template *bt,
			   char build_id[BUILTIN_BUILD_ID_LEN + 1])
{
	_cleanup_json_ json_t *recipe = NULL;
	int r = builtin_recipe(bt, &recipe, build_id);
	if (r < 0)
		return r;
	if ((r = put_template(st, cfg, bt->name)) < 0)
		return log_error_errno(r, "Failed to record the %s template: %m", bt->name);

	/* The build of this recipe, recorded before (a restart) or new. */
	struct build_rec br = { 0 };
	if (store_build_get(st, build_id, &br) == 0 && !streq(br.template_id, bt->name)) {
		build_rec_clear(&br);
		return log_error_errno(-EEXIST, "Build id %s of the %s template is taken", build_id,
				       bt->name);
	}
	json_decref(br.data);
	br.data = json_pack("{s:I, s:I, s:I, s:[s]}", "cpuCount", (json_int_t)cfg->default_cpu,
			    "memoryMB", (json_int_t)cfg->default_memory_mb, "diskMB",
			    (json_int_t)cfg->default_disk_mb, "tags", "default");
	snprintf(br.id, sizeof(br.id), "%s", build_id);
	snprintf(br.template_id, sizeof(br.template_id), "%s", bt->name);
	snprintf(br.status, sizeof(br.status), "waiting");
	br.finished_ms = 0;
	r = br.data ? store_build_put(st, &br) : -ENOMEM;
	build_rec_clear(&br);
	if (r < 0)
		return log_error_errno(r, "Failed to record the build of the %s template: %m",
				       bt->name);

	struct api_error err = { 0 };
	r = builder_start(b, bt->name, build_id, recipe, BUILDER_LOG_DAEMON, &err);
	if (r < 0)
		return log_error_errno(r, "Failed to start the build of the %s template: %s",
				       bt->name, err.message);
	return 0;
}
