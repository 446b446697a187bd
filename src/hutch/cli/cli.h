/* The hutch command line: one file per verb, a command table in main.c. */
#pragma once

#include <stdbool.h>

int cmd_serve(int argc, char **argv);
int cmd_keys(int argc, char **argv);
int cmd_sandbox(int argc, char **argv);

/* ---- helpers shared by the verbs (common.c) ---- */
/* Opens the data dir's store for local admin verbs (keys): --data-dir or the default. */
struct store;
int cli_open_store(const char *data_dir, const char *argv0, struct store **out);
/* The API base URL and key for client verbs: E2B_API_URL / E2B_API_KEY, else
 * http://127.0.0.1:3000 and DATA_DIR/api-key. */
int cli_api_target(const char *data_dir, const char *argv0, char **url, char **key);
/* Prints rows as an aligned table (header first) or, with json, the raw JSON. */
void cli_print_table(const char *const *header, size_t ncols, char ***rows, size_t nrows);
