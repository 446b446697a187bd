/*
 * The Dockerfile parser. Input: DOCKERFILE [\0 BUILD_ARG]... Whatever the input, a parse either
 * fails with a message and a line inside the text, or gives a well-formed recipe: USER root and
 * WORKDIR / first, known step types with their argument counts, absolute normalised WORKDIRs
 * and COPY destinations, COPY sources inside the context, and the same recipe when parsed again.
 */
#include <errno.h>
#include <string.h>
#include "fuzz.h"
#include "template/dockerfile.h"

#define MAX_ARGS 4

static void check_abs_normal(const char *p)
{
	fuzz_check(p[0] == '/');
	fuzz_check(!strstr(p, "//") && !strstr(p, "/./") && !strstr(p, "/../"));
	size_t n = strlen(p);
	fuzz_check(!(n >= 2 && strcmp(p + n - 2, "/.") == 0));
	fuzz_check(!(n >= 3 && strcmp(p + n - 3, "/..") == 0));
}

static const char *arg(json_t *step, size_t i)
{
	const char *s = json_string_value(json_array_get(json_object_get(step, "args"), i));
	fuzz_check(s);
	return s;
}

static void check_recipe(const struct dockerfile *df)
{
	json_t *r = df->recipe;
	fuzz_check(json_is_object(r));
	const char *from = json_string_value(json_object_get(r, "fromImage"));
	fuzz_check(from && *from && strcmp(from, df->from) == 0);
	json_t *steps = json_object_get(r, "steps");
	size_t n = json_array_size(steps);
	fuzz_check(n >= 2);
	fuzz_check(strcmp(arg(json_array_get(steps, 0), 0), "root") == 0);
	fuzz_check(strcmp(arg(json_array_get(steps, 1), 0), "/") == 0);
	for (size_t i = 0; i < n; i++) {
		json_t *st = json_array_get(steps, i);
		const char *type = json_string_value(json_object_get(st, "type"));
		size_t na = json_array_size(json_object_get(st, "args"));
		fuzz_check(type);
		for (size_t a = 0; a < na; a++)
			arg(st, a);
		if (!strcmp(type, "RUN") || !strcmp(type, "USER")) {
			fuzz_check(na == 1 && *arg(st, 0));
		} else if (!strcmp(type, "WORKDIR")) {
			fuzz_check(na == 1);
			check_abs_normal(arg(st, 0));
		} else if (!strcmp(type, "COPY") || !strcmp(type, "ADD")) {
			fuzz_check(na == 4);
			check_abs_normal(arg(st, 1));
			const char *mode = arg(st, 3);
			fuzz_check(!*mode || (strlen(mode) == 4 && strspn(mode, "01234567") == 4));
		} else {
			fuzz_check(!strcmp(type, "ENV") && na >= 2 && na % 2 == 0);
		}
	}
	for (size_t i = 0; i < df->n_copies; i++) {
		const struct dockerfile_copy *c = &df->copies[i];
		fuzz_check(c->step < n);
		json_t *st = json_array_get(steps, c->step);
		fuzz_check(strcmp(arg(st, 0), c->src) == 0 && strcmp(arg(st, 1), c->dest) == 0);
		fuzz_check(c->src[0] != '/' && strcmp(c->src, "..") != 0);
		fuzz_check(strncmp(c->src, "../", 3) != 0 && !strstr(c->src, "/../"));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t tlen = nul ? (size_t)(nul - data) : size;
	char *args[MAX_ARGS];
	size_t nargs = 0;
	for (const uint8_t *p = nul ? nul + 1 : data + size; p < data + size && nargs < MAX_ARGS;) {
		const uint8_t *end = memchr(p, 0, (size_t)(data + size - p));
		size_t len = end ? (size_t)(end - p) : (size_t)(data + size - p);
		args[nargs] = strndup((const char *)p, len);
		fuzz_check(args[nargs]);
		nargs++;
		p += len + 1;
	}

	struct dockerfile *df = NULL;
	struct dockerfile_error err;
	int r = dockerfile_parse((const char *)data, tlen, args, nargs, &df, &err);
	if (r < 0) {
		fuzz_check(r == -EINVAL || r == -ENOMEM);
		fuzz_check(err.message[0]);
		size_t lines = 1;
		for (size_t i = 0; i < tlen; i++)
			lines += data[i] == '\n';
		fuzz_check(err.line <= lines);
		fuzz_check(!df);
	} else {
		check_recipe(df);
		struct dockerfile *again = NULL;
		fuzz_check(dockerfile_parse((const char *)data, tlen, args, nargs, &again, &err) ==
			   0);
		char *a = json_dumps(df->recipe, JSON_COMPACT | JSON_SORT_KEYS);
		char *b = json_dumps(again->recipe, JSON_COMPACT | JSON_SORT_KEYS);
		fuzz_check(a && b && strcmp(a, b) == 0);
		free(a);
		free(b);
		dockerfile_free(again);
		dockerfile_free(df);
	}
	for (size_t i = 0; i < nargs; i++)
		free(args[i]);
	return 0;
}
