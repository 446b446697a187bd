/* Decoders of the untrusted parts of REST requests: the create body, timeout fields, the
 * metadata and state filters of lists. Pure functions, fuzzed by tests/fuzz/fuzz-api-*.c. */
#include "api/api.h"
#include "common/util.h"

/* Checks an object of string → string (metadata, envVars). */
static bool string_map(const json_t *j)
{
	if (!json_is_object(j))
		return false;
	const char *k;
	json_t *v;
	json_object_foreach ((json_t *)j, k, v) {
		if (!json_is_string(v) || !*k)
			return false;
	}
	return true;
}

unsigned api_timeout_field(const json_t *body, const char *field, int *err)
{
	json_t *t = json_object_get(body, field);
	*err = 0;
	if (!t || json_is_null(t))
		return 0;
	if (!json_is_integer(t) || json_integer_value(t) < 0 ||
	    json_integer_value(t) > 365 * 86400) {
		*err = -EINVAL;
		return 0;
	}
	return (unsigned)json_integer_value(t);
}

int api_create_parse(const json_t *b, struct create_request *cr, json_t **extra, const char **err)
{
	*extra = NULL;
	const char *template_id = json_string_value(json_object_get(b, "templateID"));
	if (isempty(template_id)) {
		*err = "templateID is required";
		return -EINVAL;
	}
	int terr;
	unsigned timeout = api_timeout_field(b, "timeout", &terr);
	if (terr < 0) {
		*err = "timeout must be a whole number of seconds";
		return -EINVAL;
	}
	const json_t *metadata = json_object_get(b, "metadata");
	const json_t *env_vars = json_object_get(b, "envVars");
	if ((metadata && !json_is_null(metadata) && !string_map(metadata)) ||
	    (env_vars && !json_is_null(env_vars) && !string_map(env_vars))) {
		*err = "metadata and envVars must map strings to strings";
		return -EINVAL;
	}
	const json_t *internet = json_object_get(b, "allow_internet_access");
	const json_t *auto_pause = json_object_get(b, "autoPause");
	if ((internet && !json_is_boolean(internet) && !json_is_null(internet)) ||
	    (auto_pause && !json_is_boolean(auto_pause) && !json_is_null(auto_pause))) {
		*err = "allow_internet_access and autoPause must be booleans";
		return -EINVAL;
	}

	/* Fields for later features are kept as they came. */
	json_t *x = json_object();
	if (!x) {
		*err = "out of memory";
		return -ENOMEM;
	}
	static const char *const kept[] = { "network",	    "mcp", "autoPauseMemory", "autoResume",
					    "volumeMounts", "iam", "secure" };
	for (size_t i = 0; i < ELEMENTSOF(kept); i++) {
		json_t *v = json_object_get(b, kept[i]);
		if (v && !json_is_null(v))
			json_object_set(x, kept[i], v);
	}
	*cr = (struct create_request){
		.template_id = template_id,
		.timeout_s = timeout,
		.metadata = json_is_object(metadata) ? metadata : NULL,
		.env_vars = json_is_object(env_vars) ? env_vars : NULL,
		.allow_internet = !internet || json_is_null(internet) || json_is_true(internet),
		.auto_pause = json_is_true(auto_pause),
		.extra = x,
	};
	*extra = x;
	return 0;
}

int api_parse_metadata_query(const char *q, json_t **out)
{
	_cleanup_free_ char *s = strdup(q);
	if (!s)
		return -ENOMEM;
	if (url_unescape(s, true) < 0)
		return -EINVAL;
	json_t *obj = json_object();
	if (!obj)
		return -ENOMEM;
	char *save = NULL;
	for (char *pair = strtok_r(s, "&", &save); pair; pair = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(pair, '=');
		if (!eq) {
			json_decref(obj);
			return -EINVAL;
		}
		*eq = 0;
		if (url_unescape(pair, true) < 0 || url_unescape(eq + 1, true) < 0) {
			json_decref(obj);
			return -EINVAL;
		}
		/* Not UTF-8 (key or value): refused, never silently dropped from the filter. */
		if (json_object_set_new(obj, pair, json_string(eq + 1)) < 0) {
			json_decref(obj);
			return -EINVAL;
		}
	}
	*out = obj;
	return 0;
}

int api_parse_states(const char *q, unsigned *out)
{
	_cleanup_free_ char *s = strdup(q);
	if (!s)
		return -ENOMEM;
	*out = 0;
	char *save = NULL;
	for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		enum sandbox_state st;
		if (sandbox_state_parse(t, &st) < 0)
			return -EINVAL;
		*out |= 1u << st;
		if (st == SANDBOX_RUNNING) /* starting sandboxes are running to a client */
			*out |= 1u << SANDBOX_STARTING;
	}
	return 0;
}
