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

/* Starts build_id of template_id (both recorded, status waiting) with the recipe `template`
 * (TemplateBuildStartV2, referenced). 400 for a bad recipe, 409 when it already started. */
int builder_start(struct builder *b, const char *template_id, const char *build_id,
		  json_t *template, struct api_error *err);
/* TemplateBuildInfo of a build with its log entries from offset on (new reference).
 * -ENOENT when unknown. */
int builder_status(struct builder *b, const char *template_id, const char *build_id, size_t offset,
		   json_t **out);

/* Where uploaded COPY tarballs live: DATA/template-files/<hash>. */
int builder_files_path(struct builder *b, const char *hash, char *path, size_t size);
