/*
 * JSON request bodies as the RPC layer and /init read them: json_loadb(), then the jsonx
 * getters on the fields envd's handlers use, with base64 and RFC 3339 decoding of string
 * fields, and generic getters on every key (camelCase and snake_case lookups).
 */
#include <string.h>
#include "common/util.h"
#include "json/jsonx.h"
#include "fuzz.h"

static void check_base64(const char *s, size_t len)
{
	unsigned char *out = NULL;
	size_t outlen = 0;
	if (base64_decode(s, len, &out, &outlen) < 0)
		return;
	fuzz_check(outlen <= len / 4 * 3 + 2);
	/* Decoded bytes re-encode (unpadded, standard alphabet) and decode to the same bytes. */
	char *enc = base64_encode(out, outlen, false);
	fuzz_check(enc);
	unsigned char *again = NULL;
	size_t againlen = 0;
	fuzz_check(base64_decode(enc, strlen(enc), &again, &againlen) == 0);
	fuzz_check(againlen == outlen && (outlen == 0 || memcmp(again, out, outlen) == 0));
	free(again);
	free(enc);
	free(out);
}

static void check_rfc3339(const char *s)
{
	int64_t sec;
	long nsec;
	if (parse_rfc3339(s, &sec, &nsec) < 0)
		return;
	fuzz_check(nsec >= 0 && nsec < 1000000000);
	/* Years 1970..9999 format as four digits and must parse back to the same instant. */
	if (sec >= 0 && sec < INT64_C(253402300800)) {
		char buf[64];
		int64_t sec2;
		long nsec2;
		format_rfc3339(buf, sizeof(buf), sec, nsec);
		fuzz_check(parse_rfc3339(buf, &sec2, &nsec2) == 0);
		fuzz_check(sec2 == sec && nsec2 == nsec);
	}
}

static void check_string(const json_t *v)
{
	const char *s = json_string_value(v);
	size_t len = json_string_length(v);
	check_base64(s, len);
	check_rfc3339(s);
	uint64_t u;
	(void)parse_u64(s, &u);
}

/* Every getter on every key of an object, recursing into objects and arrays. */
static void walk(const json_t *j, unsigned depth)
{
	if (depth > 32)
		return;
	if (json_is_array(j)) {
		size_t i;
		json_t *v;
		json_array_foreach (j, i, v)
			walk(v, depth + 1);
		return;
	}
	if (json_is_string(j)) {
		check_string(j);
		return;
	}
	if (!json_is_object(j))
		return;
	const char *key;
	json_t *v;
	json_object_foreach ((json_t *)j, key, v) {
		const char *s;
		uint64_t u;
		bool b;
		unsigned char *bytes = NULL;
		size_t blen;
		/* A key with an embedded NUL reads as a shorter name, which may be absent. */
		bool exact = json_object_get(j, key) == v;
		int r = jsonx_get_string(j, key, key, &s);
		if (exact) {
			fuzz_check((r == 0) == json_is_string(v));
			fuzz_check(r == 0 || r == -EINVAL || (r == -ENOENT && json_is_null(v)));
		}
		r = jsonx_get_u64(j, "\x01none", key, &u);
		fuzz_check(r <= 0);
		r = jsonx_get_bool(j, key, NULL, &b);
		if (exact)
			fuzz_check((r == 0) == json_is_boolean(v));
		if (jsonx_get_bytes(j, key, NULL, &bytes, &blen) == 0)
			free(bytes);
		walk(v, depth + 1);
	}
}

/* The fields the process and filesystem services read (process.proto, filesystem.proto). */
static void read_known_fields(const json_t *in)
{
	const char *s;
	uint64_t u;
	bool b;
	unsigned char *bytes = NULL;
	size_t len;

	const json_t *proc = jsonx_field(in, "process", NULL);
	(void)jsonx_get_string(proc, "cmd", NULL, &s);
	(void)jsonx_get_string(proc, "cwd", NULL, &s);
	(void)jsonx_field(proc, "args", NULL);
	(void)jsonx_field(proc, "envs", NULL);
	(void)jsonx_get_bool(in, "stdin", NULL, &b);
	(void)jsonx_get_string(in, "tag", NULL, &s);
	const json_t *pty = jsonx_field(in, "pty", NULL);
	const json_t *size = jsonx_field(pty, "size", NULL);
	(void)jsonx_get_u64(size, "cols", NULL, &u);
	(void)jsonx_get_u64(size, "rows", NULL, &u);

	const json_t *sel = jsonx_field(in, "process", NULL);
	(void)jsonx_get_u64(sel, "pid", NULL, &u);
	(void)jsonx_get_string(sel, "tag", NULL, &s);
	const json_t *input = jsonx_field(in, "input", NULL);
	if (jsonx_get_bytes(input, "stdin", NULL, &bytes, &len) == 0)
		free(bytes);
	if (jsonx_get_bytes(input, "pty", NULL, &bytes, &len) == 0)
		free(bytes);
	(void)jsonx_get_string(in, "signal", NULL, &s);

	(void)jsonx_get_string(in, "path", NULL, &s);
	(void)jsonx_get_string(in, "source", NULL, &s);
	(void)jsonx_get_string(in, "destination", NULL, &s);
	(void)jsonx_get_u64(in, "depth", NULL, &u);
	(void)jsonx_get_bool(in, "recursive", NULL, &b);
	(void)jsonx_get_string(in, "watcherId", "watcher_id", &s);

	/* /init */
	(void)jsonx_get_string(in, "accessToken", "access_token", &s);
	(void)jsonx_get_string(in, "defaultUser", "default_user", &s);
	(void)jsonx_get_string(in, "defaultWorkdir", "default_workdir", &s);
	(void)jsonx_field(in, "envVars", "env_vars");
	if (jsonx_get_string(in, "timestamp", NULL, &s) == 0)
		check_rfc3339(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_error_t jerr;
	json_t *in = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	if (!in)
		return 0;
	read_known_fields(in);
	walk(in, 0);

	char *s = jsonx_dump(in);
	fuzz_check(s);
	json_t *back = json_loads(s, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	fuzz_check(back && json_equal(in, back));
	json_decref(back);
	free(s);
	json_decref(in);
	return 0;
}
