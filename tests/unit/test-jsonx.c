/* Protobuf-style JSON helpers: field lookup, integers, bools and base64 bytes. */
#include "json/jsonx.h"
#include "tap.h"

static json_t *load(const char *s)
{
	json_error_t err;
	json_t *j = json_loads(s, 0, &err);
	if (!j)
		diag("bad fixture %s: %s", s, err.text);
	return j;
}

static void test_field(void)
{
	_cleanup_json_ json_t *j = load("{\"processId\":1,\"process_id\":2,\"only_snake\":3,"
					"\"nul\":null,\"s\":\"x\"}");
	is_int(json_integer_value(jsonx_field(j, "processId", "process_id")), 1,
	       "field: camelCase wins over snake_case");
	is_int(json_integer_value(jsonx_field(j, "onlySnake", "only_snake")), 3,
	       "field: falls back to snake_case");
	ok(jsonx_field(j, "onlySnake", NULL) == NULL, "field: no fallback when snake is NULL");
	ok(jsonx_field(j, "nul", NULL) == NULL, "field: null reads as absent");
	ok(jsonx_field(j, "missing", "missing_too") == NULL, "field: absent");

	_cleanup_json_ json_t *arr = load("[1]");
	ok(jsonx_field(arr, "a", "a") == NULL, "field: non-object → NULL");
	ok(jsonx_field(NULL, "a", "a") == NULL, "field: NULL object → NULL");

	const char *s = "sentinel";
	is_int(jsonx_get_string(j, "s", NULL, &s), 0, "get_string: present");
	is_str(s, "x", "get_string: value");
	is_int(jsonx_get_string(j, "processId", NULL, &s), -EINVAL, "get_string: number → -EINVAL");
	ok(s == NULL, "get_string: *out NULL on error");
	s = "sentinel";
	is_int(jsonx_get_string(j, "nope", NULL, &s), -ENOENT, "get_string: absent → -ENOENT");
	ok(s == NULL, "get_string: *out NULL when absent");
}

static void test_u64(void)
{
	_cleanup_json_ json_t *j =
	    load("{\"n\":42,\"s\":\"18446744073709551615\",\"over\":\"18446744073709551616\","
		 "\"neg\":-1,\"negs\":\"-1\",\"real\":3.0,\"frac\":3.5,\"nreal\":-2.0,\"big\":1e30,"
		 "\"b\":true,\"empty\":\"\",\"sp\":\" 1\",\"arr\":[1],\"zero\":0,\"snake_n\":7}");
	uint64_t v = 0;
	is_int(jsonx_get_u64(j, "n", NULL, &v), 0, "u64: number");
	is_int(v, 42, "u64: number value");
	is_int(jsonx_get_u64(j, "snakeN", "snake_n", &v), 0, "u64: snake_case fallback");
	is_int(v, 7, "u64: snake_case value");
	is_int(jsonx_get_u64(j, "s", NULL, &v), 0, "u64: decimal string (int64 as JSON string)");
	ok(v == UINT64_MAX, "u64: string UINT64_MAX");
	is_int(jsonx_get_u64(j, "over", NULL, &v), -ERANGE, "u64: string overflow → -ERANGE");
	is_int(jsonx_get_u64(j, "neg", NULL, &v), -ERANGE, "u64: negative number → -ERANGE");
	is_int(jsonx_get_u64(j, "negs", NULL, &v), -EINVAL, "u64: negative string → -EINVAL");
	is_int(jsonx_get_u64(j, "real", NULL, &v), 0, "u64: integral real");
	is_int(v, 3, "u64: 3.0 → 3");
	is_int(jsonx_get_u64(j, "frac", NULL, &v), -EINVAL, "u64: fractional real → -EINVAL");
	is_int(jsonx_get_u64(j, "nreal", NULL, &v), -EINVAL, "u64: negative real → -EINVAL");
	is_int(jsonx_get_u64(j, "big", NULL, &v), -EINVAL, "u64: 1e30 → -EINVAL");
	is_int(jsonx_get_u64(j, "b", NULL, &v), -EINVAL, "u64: bool → -EINVAL");
	is_int(jsonx_get_u64(j, "empty", NULL, &v), -EINVAL, "u64: empty string → -EINVAL");
	is_int(jsonx_get_u64(j, "sp", NULL, &v), -EINVAL, "u64: leading space → -EINVAL");
	is_int(jsonx_get_u64(j, "arr", NULL, &v), -EINVAL, "u64: array → -EINVAL");
	is_int(jsonx_get_u64(j, "zero", NULL, &v), 0, "u64: zero");
	is_int(v, 0, "u64: zero value");
	v = 5;
	is_int(jsonx_get_u64(j, "missing", "missing", &v), -ENOENT, "u64: absent → -ENOENT");
	is_int(v, 5, "u64: absent leaves *out alone");
}

static void test_bool(void)
{
	_cleanup_json_ json_t *j =
	    load("{\"t\":true,\"f\":false,\"s\":\"true\",\"n\":1,\"z\":null}");
	bool b = false;
	is_int(jsonx_get_bool(j, "t", NULL, &b), 0, "bool: true");
	ok(b, "bool: true value");
	is_int(jsonx_get_bool(j, "f", NULL, &b), 0, "bool: false");
	ok(!b, "bool: false value");
	is_int(jsonx_get_bool(j, "s", NULL, &b), -EINVAL, "bool: string → -EINVAL");
	is_int(jsonx_get_bool(j, "n", NULL, &b), -EINVAL, "bool: number → -EINVAL");
	is_int(jsonx_get_bool(j, "z", NULL, &b), -ENOENT, "bool: null → -ENOENT");
	is_int(jsonx_get_bool(j, "missing", NULL, &b), -ENOENT, "bool: absent → -ENOENT");
}

static void check_decode(const char *in, const void *want, size_t want_len, const char *what)
{
	unsigned char *out = NULL;
	size_t len = 12345;
	int r = base64_decode(in, strlen(in), &out, &len);
	if (is_int(r, 0, "base64 decode %s: \"%s\" succeeds", what, in))
		is_mem(out, len, want, want_len, "base64 decode %s: \"%s\" bytes", what, in);
	else
		ok(false, "base64 decode %s: \"%s\" bytes", what, in);
	free(out);
}

static void check_decode_fails(const char *in, const char *what)
{
	unsigned char *out = NULL;
	size_t len = 0;
	int r = base64_decode(in, strlen(in), &out, &len);
	is_int(r, -EINVAL, "base64 decode %s: \"%s\" → -EINVAL", what, in);
	if (r >= 0)
		free(out);
}

static void test_base64(void)
{
	static const struct {
		const char *raw, *padded, *unpadded;
	} vectors[] = {
		/* RFC 4648 §10 */
		{ "", "", "" },
		{ "f", "Zg==", "Zg" },
		{ "fo", "Zm8=", "Zm8" },
		{ "foo", "Zm9v", "Zm9v" },
		{ "foob", "Zm9vYg==", "Zm9vYg" },
		{ "fooba", "Zm9vYmE=", "Zm9vYmE" },
		{ "foobar", "Zm9vYmFy", "Zm9vYmFy" },
	};
	for (size_t i = 0; i < ELEMENTSOF(vectors); i++) {
		size_t n = strlen(vectors[i].raw);
		char *p = base64_encode(vectors[i].raw, n, true);
		is_str(p, vectors[i].padded, "base64 encode padded: \"%s\"", vectors[i].raw);
		free(p);
		p = base64_encode(vectors[i].raw, n, false);
		is_str(p, vectors[i].unpadded, "base64 encode unpadded: \"%s\"", vectors[i].raw);
		free(p);
		check_decode(vectors[i].padded, vectors[i].raw, n, "padded");
		if (n % 3)
			check_decode(vectors[i].unpadded, vectors[i].raw, n, "unpadded");
	}

	/* Bytes that need '+' and '/' (standard) or '-' and '_' (url-safe). */
	const unsigned char bin[] = { 0xfb, 0xff, 0xbf, 0xfe };
	char *p = base64_encode(bin, sizeof(bin), true);
	is_str(p, "+/+//g==", "base64 encode: standard alphabet uses + and /");
	free(p);
	check_decode("+/+//g==", bin, sizeof(bin), "standard");
	check_decode("-_-__g==", bin, sizeof(bin), "url-safe");
	check_decode("-_-__g", bin, sizeof(bin), "url-safe unpadded");
	check_decode("-/+_", "\xfb\xff\xbf", 3, "mixed alphabets");

	const unsigned char zeros[] = { 0, 0, 0, 0 };
	check_decode("AAAAAA==", zeros, 4, "NUL bytes");

	check_decode_fails("Zm9v!", "invalid char");
	check_decode_fails("Zm 9v", "space");
	check_decode_fails("Zm9v\n", "newline");
	check_decode_fails("Zg==Zg==", "data after padding");
	check_decode_fails("Zg=a", "data after one pad");
	check_decode_fails("Z", "one char");
	check_decode_fails("Zm9vY", "5 chars (4n+1)");
	check_decode_fails("Z===", "three pads");
	check_decode_fails("====", "only padding");
	check_decode_fails("Zm9vYg===", "extra pad");

	unsigned char *out = (unsigned char *)"untouched";
	size_t len = 99;
	is_int(base64_decode("", 0, &out, &len), 0, "base64 decode: empty input");
	is_int(len, 0, "base64 decode: empty input → 0 bytes");
	free(out);

	/* Length is honoured: the string need not be NUL-terminated. */
	out = NULL;
	is_int(base64_decode("Zm9vJUNK", 4, &out, &len), 0, "base64 decode: explicit length");
	is_mem(out, len, "foo", 3, "base64 decode: only the first 4 chars");
	free(out);

	/* A larger round trip across all byte values. */
	unsigned char all[1000];
	for (size_t i = 0; i < sizeof(all); i++)
		all[i] = (unsigned char)(i * 7 + 3);
	bool rt = true;
	for (size_t n = 0; n <= 9; n++) {
		for (int pad = 0; pad <= 1; pad++) {
			size_t sz = sizeof(all) - n;
			_cleanup_free_ char *enc = base64_encode(all, sz, pad);
			unsigned char *dec = NULL;
			size_t dlen = 0;
			if (!enc || base64_decode(enc, strlen(enc), &dec, &dlen) < 0 ||
			    dlen != sz || memcmp(dec, all, sz) != 0)
				rt = false;
			free(dec);
		}
	}
	ok(rt, "base64: encode/decode round trip, 991..1000 bytes, padded and not");
}

static void test_get_bytes(void)
{
	_cleanup_json_ json_t *j =
	    load("{\"data\":\"aGk=\",\"url\":\"-_8\",\"bad\":\"a$\",\"n\":1}");
	unsigned char *out = NULL;
	size_t len = 0;
	is_int(jsonx_get_bytes(j, "data", NULL, &out, &len), 0, "get_bytes: padded");
	is_mem(out, len, "hi", 2, "get_bytes: value");
	free(out);
	out = NULL;
	is_int(jsonx_get_bytes(j, "url", NULL, &out, &len), 0, "get_bytes: url-safe unpadded");
	is_mem(out, len, "\xfb\xff", 2, "get_bytes: url-safe value");
	free(out);
	is_int(jsonx_get_bytes(j, "bad", NULL, &out, &len), -EINVAL,
	       "get_bytes: invalid → -EINVAL");
	is_int(jsonx_get_bytes(j, "n", NULL, &out, &len), -EINVAL, "get_bytes: number → -EINVAL");
	is_int(jsonx_get_bytes(j, "missing", NULL, &out, &len), -ENOENT, "get_bytes: absent");
}

static void test_dump(void)
{
	_cleanup_json_ json_t *j = load("{ \"a\" : [1, 2] }");
	_cleanup_free_ char *s = jsonx_dump(j);
	is_str(s, "{\"a\":[1,2]}", "dump: compact");
	_cleanup_json_ json_t *str = json_string("x");
	_cleanup_free_ char *s2 = jsonx_dump(str);
	is_str(s2, "\"x\"", "dump: non-object values");
}

int main(void)
{
	test_field();
	test_u64();
	test_bool();
	test_base64();
	test_get_bytes();
	test_dump();
	return done();
}
