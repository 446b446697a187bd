/* hutch: the E2B-compatible control plane (`hutch serve`) and its command line. */
#include <stdio.h>
#include <string.h>
#include "cli/cli.h"
#include "common/macro.h"
#include "common/version.h"
#include "runtime/runtime.h"

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
};

static const struct command commands[] = {
	{ "serve", cmd_serve, "run the control plane: REST API, sandbox front door, sandboxes" },
	{ "keys", cmd_keys, "create, list and delete API keys (create|list|delete)" },
	{ "sandbox", cmd_sandbox, "list, kill and run commands in sandboxes (list|kill|exec)" },
	{ "template", cmd_template,
	  "build templates from Dockerfiles, list, delete (build|list|delete)" },
	{ "shim", jail_shim_main, NULL }, /* internal: the per-sandbox supervisor */
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: hutch COMMAND [OPTIONS]\n\nCommands:\n");
	for (size_t i = 0; i < ELEMENTSOF(commands); i++)
		if (commands[i].help)
			fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\nRun 'hutch COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2 || streq(argv[1], "--help") || streq(argv[1], "-h") ||
	    streq(argv[1], "help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (streq(argv[1], "--version") || streq(argv[1], "version")) {
		printf("hutch %s (envd protocol %s)\n", HUTCH_VERSION, ENVD_PROTOCOL_VERSION);
		return 0;
	}
	for (size_t i = 0; i < ELEMENTSOF(commands); i++)
		if (streq(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "hutch: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}
