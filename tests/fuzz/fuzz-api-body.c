/*
 * REST request bodies (POST /sandboxes, /connect, /timeout, /refreshes): the JSON text as the
 * API parses it, then the create-body decoder and the whole-seconds timeout fields. Whatever
 * the input: an accepted create names a template, a timeout within 365 days, metadata and
 * envVars that map strings to strings; a refused one says why.
 */
#include <errno.h>
#include "api/api.h"
#include "common/util.h"
#include "fuzz.h"

static void check_map(const json_t *m)
{
	if (!m)
		return;
	fuzz_check(json_is_object(m));
	const char *k;
	json_t *v;
	json_object_foreach ((json_t *)m, k, v)
		fuzz_check(*k && json_is_string(v));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_error_t jerr;
	json_t *b = json_loadb((const char *)data, size, 0, &jerr);
	if (!b)
		return 0;
	if (!json_is_object(b)) {
		json_decref(b);
		return 0;
	}
	struct create_request cr;
	json_t *extra = NULL;
	const char *err = NULL;
	int r = api_create_parse(b, &cr, &extra, &err);
	fuzz_check(r == 0 || r == -EINVAL);
	if (r == 0) {
		fuzz_check(!isempty(cr.template_id));
		fuzz_check(cr.timeout_s <= 365 * 86400);
		check_map(cr.metadata);
		check_map(cr.env_vars);
		fuzz_check(json_is_object(extra) && cr.extra == extra);
		/* The kept fields are copies of what came, never invented. */
		const char *k;
		json_t *v;
		json_object_foreach (extra, k, v)
			fuzz_check(json_object_get(b, k) == v);
		json_decref(extra);
	} else {
		fuzz_check(err && *err && !extra);
	}
	static const char *const fields[] = { "timeout", "duration" };
	for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
		int terr;
		unsigned t = api_timeout_field(b, fields[i], &terr);
		fuzz_check(terr == 0 || terr == -EINVAL);
		fuzz_check(terr == 0 || t == 0);
		fuzz_check(t <= 365 * 86400);
	}
	json_decref(b);
	return 0;
}
