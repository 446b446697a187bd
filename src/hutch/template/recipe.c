/* TemplateBuildStartV2 → struct recipe, with clear errors. */
#include "template/recipe.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/strbuf.h"
#include "common/util.h"

#define RECIPE_MAX_STEPS 1000
#define RECIPE_MAX_ARGS	 4096

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int opt_string(json_t *j, const char *name, const char **out, char *err, size_t errlen)
{
	json_t *v = json_object_get(j, name);
	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return fail(err, errlen, "%s must be a string", name);
	*out = json_string_value(v);
	if (!**out)
		*out = NULL;
	return 0;
}

static bool is_hex64(const char *s)
{
	return s && strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

static bool relative_clean(const char *p)
{
	if (isempty(p) || p[0] == '/')
		return false;
	for (const char *c = p; *c;) {
		size_t n = strcspn(c, "/");
		if (n == 2 && c[0] == '.' && c[1] == '.')
			return false;
		c += n;
		c += *c == '/';
	}
	return true;
}

static int parse_step(json_t *js, size_t i, struct recipe_step *st, char *err, size_t errlen)
{
	const char *type = json_string_value(json_object_get(js, "type"));
	if (!json_is_object(js) || !type)
		return fail(err, errlen, "step %zu: an object with a string `type` is required",
			    i + 1);
	static const struct {
		const char *name;
		enum recipe_step_type type;
		size_t min, max;
	} kinds[] = {
		{ "RUN", STEP_RUN, 1, 2 },
		{ "COPY", STEP_COPY, 2, 4 },
		{ "ADD", STEP_COPY, 2, 4 },
		{ "ENV", STEP_ENV, 2, RECIPE_MAX_ARGS },
		{ "ARG", STEP_ENV, 1, RECIPE_MAX_ARGS },
		{ "WORKDIR", STEP_WORKDIR, 1, 1 },
		{ "USER", STEP_USER, 1, 1 },
	};
	size_t k = 0;
	while (k < ELEMENTSOF(kinds) && strcasecmp(kinds[k].name, type) != 0)
		k++;
	if (k == ELEMENTSOF(kinds))
		return fail(
		    err, errlen,
		    "step %zu: unknown step type '%.64s' (RUN, COPY, ADD, ENV, ARG, WORKDIR, "
		    "USER)",
		    i + 1, type);
	st->type = kinds[k].type;
	st->type_name = kinds[k].name;
	json_t *args = json_object_get(js, "args");
	if (args && !json_is_array(args) && !json_is_null(args))
		return fail(err, errlen, "step %zu (%s): args must be an array of strings", i + 1,
			    type);
	st->n_args = json_array_size(args);
	if (st->n_args < kinds[k].min || st->n_args > kinds[k].max)
		return fail(err, errlen, "step %zu (%s): %zu arguments, expected %zu to %zu", i + 1,
			    kinds[k].name, st->n_args, kinds[k].min, kinds[k].max);
	st->args = calloc(st->n_args + 1, sizeof(char *));
	if (!st->args)
		return -ENOMEM;
	for (size_t a = 0; a < st->n_args; a++)
		if (!(st->args[a] = json_string_value(json_array_get(args, a))))
			return fail(err, errlen, "step %zu (%s): argument %zu is not a string",
				    i + 1, kinds[k].name, a + 1);
	/* ARG NAME[=value] pairs read as ENV when given as k, v pairs; a lone ARG name is "". */
	if (st->type == STEP_ENV && st->n_args % 2)
		return fail(err, errlen, "step %zu (%s): arguments come in key, value pairs", i + 1,
			    kinds[k].name);
	for (size_t a = 0; st->type == STEP_ENV && a < st->n_args; a += 2)
		if (!*st->args[a] || strchr(st->args[a], '='))
			return fail(err, errlen, "step %zu (%s): bad variable name '%.64s'", i + 1,
				    kinds[k].name, st->args[a]);
	if (st->type == STEP_RUN && !*st->args[0])
		return fail(err, errlen, "step %zu (RUN): empty command", i + 1);
	if ((st->type == STEP_WORKDIR || st->type == STEP_USER) && !*st->args[0])
		return fail(err, errlen, "step %zu (%s): empty argument", i + 1, kinds[k].name);
	if (st->type == STEP_COPY) {
		st->files_hash = json_string_value(json_object_get(js, "filesHash"));
		if (!is_hex64(st->files_hash))
			return fail(err, errlen,
				    "step %zu (COPY): filesHash must be 64 lowercase hex digits",
				    i + 1);
		if (!relative_clean(st->args[0]))
			return fail(err, errlen,
				    "step %zu (COPY): source '%.128s' must be a relative path "
				    "inside the build context",
				    i + 1, st->args[0]);
		if (!*st->args[1])
			return fail(err, errlen, "step %zu (COPY): empty destination", i + 1);
		const char *mode = st->n_args > 3 ? st->args[3] : "";
		if (*mode && (strlen(mode) > 4 || strspn(mode, "01234567") != strlen(mode)))
			return fail(err, errlen, "step %zu (COPY): mode '%.16s' is not octal",
				    i + 1, mode);
	}
	json_t *force = json_object_get(js, "force");
	st->force = json_is_true(force);
	return 0;
}

int recipe_parse(json_t *j, struct recipe *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (!json_is_object(j))
		return fail(err, errlen, "the template must be a JSON object");
	out->json = json_incref(j);
	int r = 0;
	if ((r = opt_string(j, "fromImage", &out->from_image, err, errlen)) < 0 ||
	    (r = opt_string(j, "fromTemplate", &out->from_template, err, errlen)) < 0 ||
	    (r = opt_string(j, "startCmd", &out->start_cmd, err, errlen)) < 0 ||
	    (r = opt_string(j, "readyCmd", &out->ready_cmd, err, errlen)) < 0)
		goto fail;
	if (!out->from_image == !out->from_template) {
		r = fail(err, errlen, "exactly one of fromImage and fromTemplate is required");
		goto fail;
	}
	out->force = json_is_true(json_object_get(j, "force"));
	json_t *steps = json_object_get(j, "steps");
	if (steps && !json_is_array(steps) && !json_is_null(steps)) {
		r = fail(err, errlen, "steps must be an array");
		goto fail;
	}
	out->n_steps = json_array_size(steps);
	if (out->n_steps > RECIPE_MAX_STEPS) {
		r = fail(err, errlen, "too many steps (%zu, at most %d)", out->n_steps,
			 RECIPE_MAX_STEPS);
		goto fail;
	}
	out->steps = calloc(out->n_steps + 1, sizeof(*out->steps));
	if (!out->steps) {
		r = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < out->n_steps; i++)
		if ((r = parse_step(json_array_get(steps, i), i, &out->steps[i], err, errlen)) < 0)
			goto fail;
	return 0;
fail:
	recipe_done(out);
	return r;
}

void recipe_done(struct recipe *r)
{
	if (!r)
		return;
	for (size_t i = 0; r->steps && i < r->n_steps; i++)
		free(r->steps[i].args);
	free(r->steps);
	json_decref(r->json);
	memset(r, 0, sizeof(*r));
}

static const char *env_lookup(const json_t *env, const char *name, size_t len)
{
	char key[256];
	if (len >= sizeof(key))
		return NULL;
	memcpy(key, name, len);
	key[len] = 0;
	const char *v = json_string_value(json_object_get(env, key));
	if (!v && streq(key, "PATH"))
		v = RECIPE_DEFAULT_PATH;
	return v;
}

static bool env_name_char(char c, bool first)
{
	return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (!first && c >= '0' && c <= '9');
}

int recipe_env_expand(const char *value, const json_t *env, char **out, char *err, size_t errlen)
{
	_cleanup_strbuf_ struct strbuf b = { 0 };
	int r = 0;
	for (const char *p = value; *p && r >= 0;) {
		if (p[0] == '\\' && (p[1] == '$' || p[1] == '\\')) {
			r = strbuf_append(&b, p + 1, 1);
			p += 2;
			continue;
		}
		if (p[0] != '$' || !(p[1] == '{' || env_name_char(p[1], true))) {
			r = strbuf_append(&b, p++, 1);
			continue;
		}
		if (p[1] != '{') { /* $NAME */
			const char *n = p + 1, *e = n;
			while (env_name_char(*e, e == n))
				e++;
			const char *v = env_lookup(env, n, (size_t)(e - n));
			r = v ? strbuf_append(&b, v, strlen(v)) : 0;
			p = e;
			continue;
		}
		const char *n = p + 2, *e = n; /* ${NAME[:-word|:+word]} */
		while (env_name_char(*e, e == n))
			e++;
		const char *close = strchr(e, '}');
		if (e == n || !close ||
		    (close != e && !(e[0] == ':' && (e[1] == '-' || e[1] == '+')))) {
			snprintf(err, errlen, "bad substitution in ENV value '%.200s'", value);
			return -EINVAL;
		}
		const char *v = env_lookup(env, n, (size_t)(e - n));
		bool set = v && *v;
		if (close == e)
			r = v ? strbuf_append(&b, v, strlen(v)) : 0;
		else if (e[1] == '-')
			r = set ? strbuf_append(&b, v, strlen(v))
				: strbuf_append(&b, e + 2, (size_t)(close - e - 2));
		else
			r = set ? strbuf_append(&b, e + 2, (size_t)(close - e - 2)) : 0;
		p = close + 1;
	}
	if (r < 0)
		return -ENOMEM;
	*out = b.data ? strbuf_steal(&b) : strdup("");
	return *out ? 0 : -ENOMEM;
}
