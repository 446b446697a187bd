/*
 * The built-in templates: Dockerfiles in the repository's templates/ directory, compiled into
 * hutch (no data files at run time) and built by the template builder like any other template,
 * when `hutch serve` starts. Their layers are in the shared cache keyed by content, so an
 * unchanged Dockerfile is ready at once on any data dir of a machine that built it before, and
 * an edited one builds the steps that changed.
 *
 *   base   templates/base/e2b.Dockerfile   E2B's default: Debian 12, `user` with sudo, python3,
 *                                          node, git, curl (also `e2bdev/base` in FROM)
 *
 * A built-in template's id and name are the same (`base`). Its build id is derived from its
 * recipe: every start rebuilds that build through the cache (instant when nothing changed)
 * rather than adding a build per start.
 */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include "config.h"
#include "store/store.h"
#include "template/builder.h"

#define BUILTIN_BUILD_ID_LEN 20

struct builtin_template {
	const char *name;	/* template id and name */
	const char *path;	/* in the repository, for messages */
	const char *dockerfile; /* its text */
};

extern const struct builtin_template builtin_templates[];
extern const size_t builtin_templates_n;

/* The recipe (TemplateBuildStartV2, new reference in *recipe_out) of bt's Dockerfile and the
 * build id it gives: hex of its hash. -EINVAL when the Dockerfile does not parse or copies
 * files (a built-in template has no build context). */
int builtin_recipe(const struct builtin_template *bt, json_t **recipe_out,
		   char build_id[BUILTIN_BUILD_ID_LEN + 1]);

/*
 * Records template bt->name (id = name, the configuration's default limits) and its build, and
 * starts the build; build_id receives its id for builder_wait. The template keeps the layers
 * of its last build until this one is ready. Every log line also goes to the daemon's log.
 */
int builtin_template_start(struct builder *b, struct store *st, const struct hutch_config *cfg,
			   const struct builtin_template *bt,
			   char build_id[BUILTIN_BUILD_ID_LEN + 1]);
