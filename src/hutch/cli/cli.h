/* The hutch command line: one file per verb, a command table in main.c. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

int cmd_serve(int argc, char **argv);
int cmd_keys(int argc, char **argv);
int cmd_sandbox(int argc, char **argv);
int cmd_template(int argc, char **argv);

/* ---- helpers shared by the verbs (common.c) ---- */
/* Opens the data dir's store for local admin verbs (keys): --data-dir or the default. */
struct store;
int cli_open_store(const char *data_dir, const char *argv0, struct store **out);
/* The API base URL and key for client verbs: E2B_API_URL / E2B_API_KEY, else
 * http://127.0.0.1:3000 and DATA_DIR/api-key. */
int cli_api_target(const char *data_dir, const char *argv0, char **url, char **key);
/* Prints rows as an aligned table (header first) or, with json, the raw JSON. */
void cli_print_table(const char *const *header, size_t ncols, char ***rows, size_t nrows);

/* ---- REST API client (api_client.c) ---- */
struct cli_api {
	const char *url; /* base, e.g. http://127.0.0.1:3000 */
	const char *key;
};
/* One request: body (NULL: none) sent as JSON; *resp (optional) is the parsed JSON response or
 * NULL. Returns the HTTP status, or -1 after printing why the API could not be reached. */
long cli_api_json(const struct cli_api *api, const char *method, const char *path,
		  const json_t *body, json_t **resp);
/* Prints "hutch: WHAT: STATUS: message" from an error response; returns 1 (the exit code). */
int cli_api_error(long status, const json_t *resp, const char *what);
/* A URL path segment, percent-encoded (malloc'd). */
char *cli_api_escape(const char *segment);

/* `hutch template build` (template_build.c), called by cmd_template. */
int cli_template_build(int argc, char **argv);
