#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "common/macro.h"
#include "config.h"
#include "store/store.h"

int cli_open_store(const char *data_dir, const char *argv0, struct store **out)
{
	struct hutch_config cfg;
	if (config_defaults(&cfg, argv0) < 0)
		return -ENOMEM;
	config_load_env(&cfg);
	if (data_dir)
		config_set(&cfg, "data-dir", data_dir);
	int r = store_open(cfg.data_dir, out);
	if (r < 0)
		fprintf(stderr, "hutch: cannot open the data dir %s: %s\n", cfg.data_dir,
			strerror(-r));
	config_free(&cfg);
	return r;
}

static char *read_first_line(const char *path)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	char buf[512];
	if (!f || !fgets(buf, sizeof(buf), f))
		return NULL;
	buf[strcspn(buf, "\r\n")] = 0;
	return strdup(buf);
}

int cli_api_target(const char *data_dir, const char *argv0, char **url, char **key)
{
	const char *u = getenv("E2B_API_URL");
	*url = strdup(u && *u ? u : "http://127.0.0.1:3000");
	const char *k = getenv("E2B_API_KEY");
	if (k && *k) {
		*key = strdup(k);
	} else {
		struct hutch_config cfg;
		if (config_defaults(&cfg, argv0) < 0)
			return -ENOMEM;
		config_load_env(&cfg);
		if (data_dir)
			config_set(&cfg, "data-dir", data_dir);
		char path[4096];
		snprintf(path, sizeof(path), "%s/api-key", cfg.data_dir);
		*key = read_first_line(path);
		config_free(&cfg);
		if (!*key) {
			fprintf(stderr,
				"hutch: no API key: set E2B_API_KEY (or run where %s is "
				"readable)\n",
				path);
			return -ENOENT;
		}
	}
	return *url ? 0 : -ENOMEM;
}

void cli_print_table(const char *const *header, size_t ncols, char ***rows, size_t nrows)
{
	size_t width[16] = { 0 };
	ncols = MIN(ncols, ELEMENTSOF(width));
	for (size_t c = 0; c < ncols; c++) {
		width[c] = strlen(header[c]);
		for (size_t i = 0; i < nrows; i++)
			width[c] = MAX(width[c], strlen(rows[i][c] ? rows[i][c] : ""));
	}
	for (size_t c = 0; c < ncols; c++)
		printf("%-*s%s", (int)width[c], header[c], c + 1 < ncols ? "  " : "\n");
	for (size_t i = 0; i < nrows; i++)
		for (size_t c = 0; c < ncols; c++)
			printf("%-*s%s", (int)width[c], rows[i][c] ? rows[i][c] : "",
			       c + 1 < ncols ? "  " : "\n");
}
