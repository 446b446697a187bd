/*
 * The template builder: runs a recipe (template/recipe.h) into a stack of cached layers and a
 * template config, one worker thread per build.
 *
 * Layers live in the shared cache, CACHE/layers/<key>, where key = sha256(parent key, step,
 * its arguments, the COPY files' hash, the ENV/USER/WORKDIR state). A RUN, COPY or new WORKDIR
 * runs in a build sandbox (a jail like any other, network allowed) whose upper directory is
 * CACHE/layers/.tmp-*; on success its ids are shifted back to host-neutral (root = 0) and it is
 * renamed into place; on failure it is removed. ENV and USER only change the state.
 */
#pragma once

#include <jansson.h>
#include "config.h"
#include "orchestr/orchestr.h"
#include "store/store.h"

struct builder;

/* cache_dir: the shared cache; data_dir: build logs and uploaded COPY files. Marks builds left
 * unfinished by an earlier daemon as failed. */
int builder_new(struct hutch_config *cfg, struct store *st, struct orchestr *o,
		struct builder **out);
/* Stops running builds (their sandboxes are killed) and waits for their threads. */
struct builder *builder_free(struct builder *b);

/* builder_start flags. */
enum {
	/* Every log line of the build also goes to the daemon's log (a build nobody polls: the
	 * built-in templates at start). */
	BUILDER_LOG_DAEMON = 1 << 0,
};

/* Starts build_id of template_id (both recorded, status waiting) with the recipe `template`
 * (TemplateBuildStartV2, referenced). The build's log starts empty (a build id recorded again
 * with status waiting is built anew). 400 for a bad recipe, 409 when it already started. */
int builder_start(struct builder *b, const char *template_id, const char *build_id,
		  json_t *template, unsigned flags, struct api_error *err);
/* Waits up to timeout_ms for build_id to end: 0 when it is ready, -EIO when it failed,
 * -ETIMEDOUT while it still runs, -ENOENT when there is no such build or it never started. */
int builder_wait(struct builder *b, const char *build_id, unsigned timeout_ms);
/* TemplateBuildInfo of a build with its log entries from offset on (new reference).
 * -ENOENT when unknown. */
int builder_status(struct builder *b, const char *template_id, const char *build_id, size_t offset,
		   json_t **out);

/* Where uploaded COPY tarballs live: DATA/template-files/<hash>. */
int builder_files_path(struct builder *b, const char *hash, char *path, size_t size);
