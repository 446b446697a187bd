/* `hutch template build|list|delete`: a client of the REST API's template endpoints, like the
 * SDK (build is in template_build.c). */
#include <getopt.h>
#include <stdio.h>
#include "cli/cli.h"
#include "common/macro.h"
#include "common/strbuf.h"

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "Usage: hutch template build [-f DOCKERFILE] [--name NAME] [--cpu N] [--memory MB]\n"
	    "                            [--start-cmd CMD] [--ready-cmd CMD] [--build-arg K=V]...\n"
	    "                            [--tag TAG]... [--no-cache] [--dry-run] [DIR]\n"
	    "       hutch template list [--json]\n"
	    "       hutch template delete NAME|ID...\n"
	    "Options: --data-dir DIR (for the API key file). E2B_API_URL and E2B_API_KEY are\n"
	    "honoured as by the SDK. 'hutch template build --help' explains the build.\n");
}

static const char *field(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* "a, b" from an array of strings (malloc'd). */
static char *join_names(const json_t *arr)
{
	struct strbuf sb = { 0 };
	size_t i;
	json_t *v;
	json_array_foreach (arr, i, v)
		if (json_is_string(v))
			strbuf_printf(&sb, "%s%s", sb.len ? "," : "", json_string_value(v));
	return sb.data ? strbuf_steal(&sb) : strdup("");
}

static int do_list(const struct cli_api *api, bool json)
{
	json_t *resp = NULL;
	long st = cli_api_json(api, "GET", "/templates", NULL, &resp);
	if (st != 200) {
		int r = cli_api_error(st, resp, "template list");
		json_decref(resp);
		return r;
	}
	if (!json_is_array(resp)) {
		fprintf(stderr,
			"hutch: template list: the API answered something else than a list\n");
		json_decref(resp);
		return 1;
	}
	if (json) {
		json_dumpf(resp, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(resp);
		return 0;
	}
	const char *header[] = { "ID", "NAMES", "STATUS", "CPU", "MEMORY MB", "CREATED" };
	size_t n = json_array_size(resp);
	char ***rows = calloc(n ? n : 1, sizeof(*rows));
	for (size_t i = 0; rows && i < n; i++) {
		json_t *t = json_array_get(resp, i);
		rows[i] = calloc(ELEMENTSOF(header), sizeof(char *));
		if (!rows[i])
			continue;
		json_t *names = json_object_get(t, "names");
		if (json_array_size(names) == 0)
			names = json_object_get(t, "aliases");
		rows[i][0] = strdup(field(t, "templateID") ?: "");
		rows[i][1] = join_names(names);
		rows[i][2] = strdup(field(t, "buildStatus") ?: "");
		if (asprintf(&rows[i][3], "%lld",
			     (long long)json_integer_value(json_object_get(t, "cpuCount"))) < 0)
			rows[i][3] = NULL;
		if (asprintf(&rows[i][4], "%lld",
			     (long long)json_integer_value(json_object_get(t, "memoryMB"))) < 0)
			rows[i][4] = NULL;
		rows[i][5] = strdup(field(t, "createdAt") ?: "");
	}
	if (rows)
		cli_print_table(header, ELEMENTSOF(header), rows, n);
	for (size_t i = 0; rows && i < n; i++) {
		for (size_t c = 0; rows[i] && c < ELEMENTSOF(header); c++)
			free(rows[i][c]);
		free(rows[i]);
	}
	free(rows);
	json_decref(resp);
	return 0;
}

/* NAME → template ID through GET /templates/aliases/NAME; an unknown name is taken as an ID. */
static char *resolve_id(const struct cli_api *api, const char *name_or_id)
{
	_cleanup_free_ char *esc = cli_api_escape(name_or_id);
	_cleanup_free_ char *path = NULL;
	if (!esc || asprintf(&path, "/templates/aliases/%s", esc) < 0)
		return NULL;
	json_t *resp = NULL;
	long st = cli_api_json(api, "GET", path, NULL, &resp);
	const char *id = st == 200 ? field(resp, "templateID") : NULL;
	char *out = st < 0 ? NULL : strdup(id ? id : name_or_id);
	json_decref(resp);
	return out;
}

static int do_delete(const struct cli_api *api, char **names, int n)
{
	int rc = 0;
	for (int i = 0; i < n; i++) {
		_cleanup_free_ char *id = resolve_id(api, names[i]);
		_cleanup_free_ char *esc = id ? cli_api_escape(id) : NULL;
		_cleanup_free_ char *path = NULL;
		if (!esc || asprintf(&path, "/templates/%s", esc) < 0)
			return 1;
		json_t *resp = NULL;
		long st = cli_api_json(api, "DELETE", path, NULL, &resp);
		if (st == 200 || st == 204) {
			printf("Deleted template %s%s%s%s\n", names[i],
			       streq(id, names[i]) ? "" : " (", streq(id, names[i]) ? "" : id,
			       streq(id, names[i]) ? "" : ")");
		} else if (st == 404) {
			fprintf(stderr, "hutch: template delete: no template '%s'\n", names[i]);
			rc = 1;
		} else {
			rc = cli_api_error(st, resp, "template delete");
		}
		json_decref(resp);
		if (st < 0)
			return 1;
	}
	return rc;
}

int cmd_template(int argc, char **argv)
{
	if (argc < 2 || streq(argv[1], "--help") || streq(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *verb = argv[1];
	if (streq(verb, "build"))
		return cli_template_build(argc - 1, argv + 1);
	if (!streq(verb, "list") && !streq(verb, "ls") && !streq(verb, "delete") &&
	    !streq(verb, "rm")) {
		fprintf(stderr, "hutch template: unknown verb '%s'\n", verb);
		usage(stderr);
		return 2;
	}
	static const struct option opts[] = {
		{ "data-dir", required_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *data_dir = NULL;
	bool json = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc - 1, argv + 1, "h", opts, NULL)) >= 0) {
		if (c == 'd')
			data_dir = optarg;
		else if (c == 'j')
			json = true;
		else if (c == 'h') {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	char **rest = argv + 1 + optind;
	int nrest = argc - 1 - optind;
	bool list = streq(verb, "list") || streq(verb, "ls");
	if (list && nrest != 0) {
		fprintf(stderr, "hutch template list: takes no arguments\n");
		return 2;
	}
	if (!list && (nrest < 1 || json)) {
		fprintf(stderr, "hutch template delete: give the NAME or ID of a template\n");
		return 2;
	}
	_cleanup_free_ char *url = NULL, *key = NULL;
	if (cli_api_target(data_dir, argv[0], &url, &key) < 0)
		return 1;
	struct cli_api api = { .url = url, .key = key };
	return list ? do_list(&api, json) : do_delete(&api, rest, nrest);
}
