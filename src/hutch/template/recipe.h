/* A template recipe: E2B's TemplateBuildStartV2 JSON (what the SDK posts to
 * /v2/templates/{id}/builds/{buildID}), checked into a struct. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

enum recipe_step_type { STEP_RUN, STEP_COPY, STEP_ENV, STEP_WORKDIR, STEP_USER };

struct recipe_step {
	enum recipe_step_type type;
	const char *type_name; /* "RUN" ... (ARG reads as ENV, ADD as COPY) */
	const char **args;     /* borrowed from the JSON */
	size_t n_args;
	const char *files_hash; /* COPY: 64 hex digits */
	bool force;
};

struct recipe {
	json_t *json; /* owned: every string below points into it */
	const char *from_image, *from_template;
	const char *start_cmd, *ready_cmd;
	bool force;
	struct recipe_step *steps;
	size_t n_steps;
};

/*
 * Checks j (not taken over; referenced) and fills *out. -EINVAL with a message in err for what
 * the builder could not run: neither or both of fromImage/fromTemplate, an unknown step type,
 * wrong argument counts, a COPY without a valid filesHash, absolute or `..` COPY sources.
 */
int recipe_parse(json_t *j, struct recipe *out, char *err, size_t errlen);
void recipe_done(struct recipe *r);

/* PATH in a sandbox whose template sets none (envd's default). */
#define RECIPE_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/*
 * An ENV value with Docker's substitutions against the build's environment `env` (object
 * str→str): $NAME, ${NAME}, ${NAME:-word}, ${NAME:+word}; `\$` is a literal `$` (what clients
 * send for a dollar they do not want expanded), `\\` a backslash. An unset NAME is empty, but
 * PATH falls back to RECIPE_DEFAULT_PATH (a Docker image always sets it; our templates leave it
 * to envd). Malloc'd in *out; -EINVAL with a message for an unterminated `${`.
 */
int recipe_env_expand(const char *value, const json_t *env, char **out, char *err, size_t errlen);
