/*
 * Template recipes as POST /v2/templates/{id}/builds/{buildID} receives them: JSON, then
 * recipe_parse(). Invariants: a parsed recipe has exactly one base, every step's arguments are
 * strings within its type's bounds, COPY sources are relative without "..", and an error
 * always comes with a message.
 */
#include <string.h>
#include "common/util.h"
#include "template/recipe.h"
#include "fuzz.h"

/* Whether a path has a ".." component ("a..b" and "x../y" are ordinary names). */
static bool has_dotdot(const char *p)
{
	_cleanup_free_ char *copy = strdup(p);
	fuzz_check(copy);
	char *save = NULL;
	for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save))
		if (streq(c, ".."))
			return true;
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *j = json_loadb((const char *)data, size, 0, NULL);
	if (!j)
		return 0;
	struct recipe r;
	char err[512] = "";
	int ret = recipe_parse(j, &r, err, sizeof(err));
	json_decref(j);
	if (ret < 0) {
		fuzz_check(ret == -EINVAL ? err[0] != 0 : ret == -ENOMEM);
		return 0;
	}
	fuzz_check(!r.from_image != !r.from_template);
	for (size_t i = 0; i < r.n_steps; i++) {
		const struct recipe_step *st = &r.steps[i];
		fuzz_check(st->type_name && st->args);
		for (size_t a = 0; a < st->n_args; a++)
			fuzz_check(st->args[a] != NULL);
		if (st->type == STEP_COPY) {
			fuzz_check(st->n_args >= 2 && st->files_hash &&
				   strlen(st->files_hash) == 64);
			fuzz_check(st->args[0][0] != '/' && !has_dotdot(st->args[0]));
		}
		if (st->type == STEP_ENV)
			fuzz_check(st->n_args % 2 == 0);
	}
	recipe_done(&r);
	return 0;
}
