/* `hutch keys create|list|delete`: API keys, straight in the data dir's store. */
#include <ctype.h>
#include <getopt.h>
#include <jansson.h>
#include <nettle/sha2.h>
#include <stdio.h>
#include <sys/random.h>
#include "cli/cli.h"
#include "common/macro.h"
#include "common/util.h"
#include "store/store.h"

static void usage(FILE *f)
{
	fprintf(f, "Usage: hutch keys create [--name NAME] [--json]\n"
		   "       hutch keys list [--json]\n"
		   "       hutch keys delete ID|NAME\n"
		   "Common option: --data-dir DIR\n");
}

static void when(char *buf, size_t size, int64_t ms)
{
	if (!ms)
		snprintf(buf, size, "never");
	else
		format_rfc3339(buf, size, ms / 1000, 0);
}

static int create(struct store *st, const char *name, bool json)
{
	uint8_t rnd[20], hash[32];
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
		return 1;
	char key[64] = "e2b_";
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(key + 4 + 2 * i, 3, "%02x", rnd[i]);
	struct sha256_ctx ctx;
	sha256_init(&ctx);
	sha256_update(&ctx, strlen(key), (const uint8_t *)key);
	sha256_digest(&ctx, sizeof(hash), hash);
	char mask[32];
	snprintf(mask, sizeof(mask), "%.8s...%s", key, key + strlen(key) - 4);
	struct api_key k;
	int r = store_key_create(st, name ? name : "key", hash, mask, &k);
	if (r == -EEXIST) {
		fprintf(stderr, "hutch: a key named '%s' exists already\n", name);
		return 1;
	}
	if (r < 0) {
		fprintf(stderr, "hutch: cannot store the key: %s\n", strerror(-r));
		return 1;
	}
	if (json) {
		json_t *j = json_pack("{s:s, s:s, s:s}", "id", k.id, "name", k.name, "key", key);
		json_dumpf(j, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(j);
	} else {
		printf("Created key %s (%s). It is shown only now:\n\n    %s\n", k.id, k.name, key);
	}
	return 0;
}

static int list(struct store *st, bool json)
{
	struct api_key *keys = NULL;
	size_t n = 0;
	int r = store_key_list(st, &keys, &n);
	if (r < 0) {
		fprintf(stderr, "hutch: cannot list keys: %s\n", strerror(-r));
		return 1;
	}
	if (json) {
		json_t *arr = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(
			    arr, json_pack("{s:s, s:s, s:s, s:I, s:I}", "id", keys[i].id, "name",
					   keys[i].name, "mask", keys[i].mask, "createdMs",
					   (json_int_t)keys[i].created_ms, "lastUsedMs",
					   (json_int_t)keys[i].last_used_ms));
		json_dumpf(arr, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(arr);
	} else {
		const char *header[] = { "ID", "NAME", "KEY", "CREATED", "LAST USED" };
		char ***rows = calloc(n ? n : 1, sizeof(*rows));
		char cells[5][64];
		for (size_t i = 0; rows && i < n; i++) {
			rows[i] = calloc(5, sizeof(char *));
			if (!rows[i])
				break;
			when(cells[3], sizeof(cells[3]), keys[i].created_ms);
			when(cells[4], sizeof(cells[4]), keys[i].last_used_ms);
			rows[i][0] = strdup(keys[i].id);
			rows[i][1] = strdup(keys[i].name);
			rows[i][2] = strdup(keys[i].mask);
			rows[i][3] = strdup(cells[3]);
			rows[i][4] = strdup(cells[4]);
		}
		if (rows)
			cli_print_table(header, 5, rows, n);
		for (size_t i = 0; rows && i < n; i++) {
			for (size_t c = 0; rows[i] && c < 5; c++)
				free(rows[i][c]);
			free(rows[i]);
		}
		free(rows);
	}
	free(keys);
	return 0;
}

int cmd_keys(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "data-dir", required_argument, NULL, 'd' },
		{ "name", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *data_dir = NULL, *name = NULL;
	bool json = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
		switch (c) {
		case 'd':
			data_dir = optarg;
			break;
		case 'n':
			name = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	const char *verb = argv[optind];
	if (!streq(verb, "create") && !streq(verb, "list") && !streq(verb, "delete")) {
		fprintf(stderr, "hutch keys: unknown verb '%s'\n", verb);
		usage(stderr);
		return 2;
	}
	if (streq(verb, "delete") && optind + 2 != argc) {
		fprintf(stderr, "hutch keys delete: give one key ID or NAME\n");
		return 2;
	}
	struct store *st = NULL;
	if (cli_open_store(data_dir, argv[0], &st) < 0)
		return 1;
	int rc;
	if (streq(verb, "create")) {
		rc = create(st, name, json);
	} else if (streq(verb, "list")) {
		rc = list(st, json);
	} else {
		int r = store_key_delete(st, argv[optind + 1]);
		if (r == -ENOENT)
			fprintf(stderr, "hutch: no key '%s'\n", argv[optind + 1]);
		else if (r < 0)
			fprintf(stderr, "hutch: cannot delete: %s\n", strerror(-r));
		else
			printf("Deleted %s\n", argv[optind + 1]);
		rc = r < 0 ? 1 : 0;
	}
	store_close(st);
	return rc;
}
