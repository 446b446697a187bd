/* Connect framing: envelopes, end-stream messages, error codes and Connect-Timeout-Ms. */
#include <stdint.h>
#include "connect/connect.h"
#include "connect/procstream.h"
#include "tap.h"

static void test_envelope_append(void)
{
	_cleanup_strbuf_ struct strbuf sb = { 0 };
	const unsigned char want[] = { 0x00, 0x00, 0x00, 0x00, 0x02, '{', '}' };

	is_int(connect_envelope_append(&sb, 0, "{}", 2), 0, "append: small payload");
	is_mem(sb.data, sb.len, want, sizeof(want), "append: 5-byte header, big-endian length");

	strbuf_reset(&sb);
	is_int(connect_envelope_append(&sb, CONNECT_FLAG_END_STREAM, NULL, 0), 0,
	       "append: empty payload");
	const unsigned char want_empty[] = { 0x02, 0, 0, 0, 0 };
	is_mem(sb.data, sb.len, want_empty, sizeof(want_empty),
	       "append: empty payload is a bare header");

	/* A length that uses every byte of the header. */
	strbuf_reset(&sb);
	size_t big = 0x010203;
	char *payload = calloc(1, big);
	ok(payload != NULL, "append: allocate 66051-byte payload");
	is_int(connect_envelope_append(&sb, 0x01, payload, big), 0, "append: 66051-byte payload");
	const unsigned char want_big[] = { 0x01, 0x00, 0x01, 0x02, 0x03 };
	ok(sb.len == big + 5 && memcmp(sb.data, want_big, 5) == 0,
	   "append: length 0x010203 encoded as 00 01 02 03");
	free(payload);
}

static void test_envelope_parse(void)
{
	_cleanup_strbuf_ struct strbuf sb = { 0 };
	uint8_t flags = 0xff;
	const char *payload = NULL;
	size_t plen = 0;

	connect_envelope_append(&sb, 0, "{\"a\":1}", 7);
	connect_envelope_append(&sb, CONNECT_FLAG_END_STREAM, "{}", 2);

	long n = connect_envelope_parse(sb.data, sb.len, 1024, &flags, &payload, &plen);
	is_int(n, 12, "parse: first envelope spans header + 7 bytes");
	is_int(flags, 0, "parse: first envelope flags");
	ok(plen == 7 && payload == sb.data + 5 && memcmp(payload, "{\"a\":1}", 7) == 0,
	   "parse: payload points into the buffer");

	n = connect_envelope_parse(sb.data + 12, sb.len - 12, 1024, &flags, &payload, &plen);
	is_int(n, 7, "parse: second envelope");
	is_int(flags, CONNECT_FLAG_END_STREAM, "parse: end-stream flag");
	ok(plen == 2 && memcmp(payload, "{}", 2) == 0, "parse: end-stream payload");

	/* Every strict prefix of an envelope needs more bytes. */
	bool all_partial = true;
	for (size_t len = 0; len < 12; len++)
		if (connect_envelope_parse(sb.data, len, 1024, &flags, &payload, &plen) != 0)
			all_partial = false;
	ok(all_partial, "parse: every strict prefix returns 0 (need more)");

	/* Outputs stay untouched while more bytes are needed. */
	flags = 0x55;
	plen = 99;
	connect_envelope_parse(sb.data, 8, 1024, &flags, &payload, &plen);
	ok(flags == 0x55 && plen == 99, "parse: partial leaves outputs alone");

	/* A declared length above the limit fails as soon as the header is in. */
	const unsigned char huge[] = { 0, 0x7f, 0xff, 0xff, 0xff };
	is_int(connect_envelope_parse(huge, sizeof(huge), 1 << 20, &flags, &payload, &plen),
	       -EMSGSIZE, "parse: oversize declared length → -EMSGSIZE from the header alone");
	const unsigned char max_len[] = { 0, 0xff, 0xff, 0xff, 0xff };
	is_int(connect_envelope_parse(max_len, sizeof(max_len), 1 << 20, &flags, &payload, &plen),
	       -EMSGSIZE, "parse: 0xffffffff declared length → -EMSGSIZE");
	is_int(connect_envelope_parse(sb.data, sb.len, 6, &flags, &payload, &plen), -EMSGSIZE,
	       "parse: 7-byte payload over a 6-byte limit → -EMSGSIZE");
	is_int(connect_envelope_parse(sb.data, sb.len, 7, &flags, &payload, &plen), 12,
	       "parse: payload exactly at the limit is accepted");

	const unsigned char empty[] = { 0x02, 0, 0, 0, 0 };
	n = connect_envelope_parse(empty, sizeof(empty), 0, &flags, &payload, &plen);
	ok(n == 5 && plen == 0 && flags == 2, "parse: zero-length payload with a zero limit");
}

static void test_end_stream(void)
{
	_cleanup_strbuf_ struct strbuf sb = { 0 };
	uint8_t flags;
	const char *payload;
	size_t plen;

	is_int(connect_end_stream_append(&sb, CONNECT_OK, "ignored"), 0, "end-stream ok: append");
	long n = connect_envelope_parse(sb.data, sb.len, 1024, &flags, &payload, &plen);
	ok(n == (long)sb.len && flags == CONNECT_FLAG_END_STREAM,
	   "end-stream ok: one envelope, flag 2");
	ok(plen == 2 && memcmp(payload, "{}", 2) == 0, "end-stream ok: payload is {}");

	strbuf_reset(&sb);
	is_int(connect_end_stream_append(&sb, CONNECT_NOT_FOUND, "no \"such\" file\n"), 0,
	       "end-stream error: append");
	n = connect_envelope_parse(sb.data, sb.len, 1024, &flags, &payload, &plen);
	ok(n == (long)sb.len && flags == CONNECT_FLAG_END_STREAM,
	   "end-stream error: one envelope, flag 2");
	json_error_t jerr;
	json_t *j = json_loadb(payload, plen, 0, &jerr);
	ok(json_is_object(j), "end-stream error: payload is a JSON object");
	json_t *err = json_object_get(j, "error");
	is_str(json_string_value(json_object_get(err, "code")), "not_found",
	       "end-stream error: error.code");
	is_str(json_string_value(json_object_get(err, "message")), "no \"such\" file\n",
	       "end-stream error: error.message survives escaping");
	is_int(json_object_size(j), 1, "end-stream error: only the error member");
	json_decref(j);

	strbuf_reset(&sb);
	connect_end_stream_append(&sb, CONNECT_INTERNAL, NULL);
	n = connect_envelope_parse(sb.data, sb.len, 1024, &flags, &payload, &plen);
	j = n > 0 ? json_loadb(payload, plen, 0, &jerr) : NULL;
	err = json_object_get(j, "error");
	ok(streq(json_string_value(json_object_get(err, "code")), "internal") &&
	       streq(json_string_value(json_object_get(err, "message")), ""),
	   "end-stream error: NULL message becomes \"\"");
	json_decref(j);

	j = connect_error_json(CONNECT_UNAUTHENTICATED, "go away");
	is_str(json_string_value(json_object_get(j, "code")), "unauthenticated",
	       "error json: code");
	is_str(json_string_value(json_object_get(j, "message")), "go away", "error json: message");
	json_decref(j);

	/* Messages echo client input (paths, commands), which need not be UTF-8: invalid sequences
	 * become U+FFFD, as in envd (Go). */
	j = connect_error_json(CONNECT_NOT_FOUND, "no such file: /tmp/\xff\xfe");
	ok(j != NULL, "error json: non-UTF-8 message still yields an error body");
	is_str(json_string_value(json_object_get(j, "message")),
	       "no such file: /tmp/\xef\xbf\xbd\xef\xbf\xbd", "error json: U+FFFD replacements");
	json_decref(j);
	strbuf_reset(&sb);
	ok(connect_end_stream_append(&sb, CONNECT_NOT_FOUND, "/tmp/\xc3") == 0,
	   "end-stream error: non-UTF-8 message still yields an end-stream");

	j = connect_error_json((enum connect_code)999, "x");
	is_str(json_string_value(json_object_get(j, "code")), "unknown",
	       "error json: out-of-range code → unknown");
	json_decref(j);
}

static void test_code_names(void)
{
	static const char *const names[] = {
		"canceled",
		"unknown",
		"invalid_argument",
		"deadline_exceeded",
		"not_found",
		"already_exists",
		"permission_denied",
		"resource_exhausted",
		"failed_precondition",
		"aborted",
		"out_of_range",
		"unimplemented",
		"internal",
		"unavailable",
		"data_loss",
		"unauthenticated",
	};
	bool round_trip = true;
	for (unsigned c = CONNECT_CANCELED; c < _CONNECT_CODE_MAX; c++) {
		enum connect_code back = CONNECT_OK;
		const char *name = connect_code_name((enum connect_code)c);
		if (!streq(name, names[c - 1]) || connect_code_from_name(name, &back) < 0 ||
		    back != (enum connect_code)c) {
			diag("code %u: name %s", c, name ? name : "(null)");
			round_trip = false;
		}
	}
	ok(round_trip, "code names: all 16 codes have the wire names and round-trip");
	is_int(ELEMENTSOF(names), _CONNECT_CODE_MAX - 1, "code names: 16 error codes");

	ok(connect_code_name(CONNECT_OK) == NULL, "code names: CONNECT_OK has no name");
	ok(connect_code_name(_CONNECT_CODE_MAX) == NULL, "code names: out of range → NULL");
	ok(connect_code_name((enum connect_code) - 1) == NULL, "code names: negative → NULL");

	enum connect_code c = CONNECT_ABORTED;
	is_int(connect_code_from_name("ok", &c), -EINVAL, "from_name: \"ok\" is not an error code");
	is_int(connect_code_from_name("NOT_FOUND", &c), -EINVAL, "from_name: case-sensitive");
	is_int(connect_code_from_name("", &c), -EINVAL, "from_name: empty");
	is_int(connect_code_from_name(NULL, &c), -EINVAL, "from_name: NULL");
	is_int(c, CONNECT_ABORTED, "from_name: failures leave *out alone");
}

static void test_http_status(void)
{
	static const struct {
		enum connect_code code;
		unsigned status;
	} map[] = {
		{ CONNECT_OK, 200 },
		{ CONNECT_CANCELED, 499 },
		{ CONNECT_UNKNOWN, 500 },
		{ CONNECT_INVALID_ARGUMENT, 400 },
		{ CONNECT_DEADLINE_EXCEEDED, 504 },
		{ CONNECT_NOT_FOUND, 404 },
		{ CONNECT_ALREADY_EXISTS, 409 },
		{ CONNECT_PERMISSION_DENIED, 403 },
		{ CONNECT_RESOURCE_EXHAUSTED, 429 },
		{ CONNECT_FAILED_PRECONDITION, 400 },
		{ CONNECT_ABORTED, 409 },
		{ CONNECT_OUT_OF_RANGE, 400 },
		{ CONNECT_UNIMPLEMENTED, 501 },
		{ CONNECT_INTERNAL, 500 },
		{ CONNECT_UNAVAILABLE, 503 },
		{ CONNECT_DATA_LOSS, 500 },
		{ CONNECT_UNAUTHENTICATED, 401 },
	};
	for (size_t i = 0; i < ELEMENTSOF(map); i++) {
		const char *name = connect_code_name(map[i].code);
		is_int(connect_code_http_status(map[i].code), map[i].status, "http status: %s",
		       name ? name : "ok");
	}
	is_int(connect_code_http_status(_CONNECT_CODE_MAX), 500, "http status: out of range → 500");
}

static void test_from_errno(void)
{
	is_int(connect_code_from_errno(-ENOENT), CONNECT_NOT_FOUND, "errno: ENOENT → not_found");
	is_int(connect_code_from_errno(-EEXIST), CONNECT_ALREADY_EXISTS,
	       "errno: EEXIST → already_exists");
	is_int(connect_code_from_errno(-EACCES), CONNECT_PERMISSION_DENIED,
	       "errno: EACCES → permission_denied");
	is_int(connect_code_from_errno(-EPERM), CONNECT_PERMISSION_DENIED,
	       "errno: EPERM → permission_denied");
	is_int(connect_code_from_errno(-EINVAL), CONNECT_INVALID_ARGUMENT,
	       "errno: EINVAL → invalid_argument");
	is_int(connect_code_from_errno(-ENOSPC), CONNECT_RESOURCE_EXHAUSTED,
	       "errno: ENOSPC → resource_exhausted");
	is_int(connect_code_from_errno(-EIO), CONNECT_INTERNAL, "errno: EIO → internal");
}

static void test_timeout(void)
{
	uint64_t ms = 7;
	is_int(connect_timeout_parse("1", &ms), 0, "timeout: \"1\"");
	is_int(ms, 1, "timeout: \"1\" → 1 ms");
	is_int(connect_timeout_parse("0", &ms), 0, "timeout: \"0\" parses");
	is_int(connect_timeout_parse("9999999999", &ms), 0, "timeout: 10 digits");
	ok(ms == 9999999999ull, "timeout: 10 digits → 9999999999");
	is_int(connect_timeout_parse("0000000042", &ms), 0,
	       "timeout: leading zeros within 10 digits");
	is_int(ms, 42, "timeout: \"0000000042\" → 42");

	ms = 7;
	static const char *const bad[] = {
		"", "12345678901", "-1", "+1", " 1", "1 ", "1.5", "0x10", "1e3", "ten", "١",
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		is_int(connect_timeout_parse(bad[i], &ms), -EINVAL, "timeout: \"%s\" rejected",
		       bad[i]);
	is_int(connect_timeout_parse(NULL, &ms), -EINVAL, "timeout: NULL rejected");
	is_int(ms, 7, "timeout: failures leave *ms alone");
}

static void collect_output(void *userdata, int fd, const char *data, size_t len)
{
	struct strbuf *out = userdata;
	strbuf_printf(out, "%d:", fd);
	strbuf_append(out, data, len);
	strbuf_appends(out, ";");
}

static void append_json(struct strbuf *sb, uint8_t flags, const char *json)
{
	connect_envelope_append(sb, flags, json, strlen(json));
}

/* process.Process/Start's response stream as the daemon and the CLI read it. */
static void test_proc_stream(void)
{
	_cleanup_strbuf_ struct strbuf wire = { 0 }, out = { 0 };
	append_json(&wire, 0, "{\"event\":{\"start\":{\"pid\":7}}}");
	append_json(&wire, 0, "{\"event\":{\"data\":{\"stdout\":\"aGk=\"}}}");
	append_json(&wire, 0, "{\"event\":{\"keepalive\":{}}}");
	append_json(&wire, 0, "{\"event\":{\"data\":{\"stderr\":\"b29wcw==\"}}}");
	append_json(&wire, 0,
		    "{\"event\":{\"end\":{\"exitCode\":3,\"status\":\"exit status 3\"}}}");
	append_json(&wire, CONNECT_FLAG_END_STREAM, "{}");

	/* Byte by byte: envelopes split anywhere. */
	struct proc_stream ps = { .output = collect_output, .userdata = &out, .exit_code = -1 };
	int r = 0;
	for (size_t i = 0; i < wire.len && r == 0; i++) {
		r = proc_stream_feed(&ps, wire.data + i, 1);
		if (i == 12)
			ok(!ps.started, "proc_stream: not started before the start event is whole");
	}
	is_int(r, 0, "proc_stream: byte-by-byte feed");
	ok(ps.started && ps.ended, "proc_stream: started and ended");
	is_int(ps.exit_code, 3, "proc_stream: exit code");
	is_str(out.data, "1:hi;2:oops;", "proc_stream: stdout then stderr, decoded");
	is_str(ps.error, "", "proc_stream: no error");
	proc_stream_done(&ps);

	/* Killed by a signal; an error at the end of the stream. */
	strbuf_reset(&wire);
	append_json(&wire, 0,
		    "{\"event\":{\"end\":{\"exitCode\":-1,\"status\":\"signal: killed\"}}}");
	append_json(&wire, CONNECT_FLAG_END_STREAM,
		    "{\"error\":{\"code\":\"deadline_exceeded\",\"message\":\"too slow\"}}");
	struct proc_stream sig = { 0 };
	is_int(proc_stream_feed(&sig, wire.data, wire.len), 0, "proc_stream: one chunk");
	is_int(sig.exit_code, 128 + 9, "proc_stream: a signal reads as 137");
	is_str(sig.error, "too slow", "proc_stream: the end-of-stream error's message");
	proc_stream_done(&sig);

	/* A declared length beyond 16 MiB is refused, not waited for. */
	const char huge[] = { 0, 0x7f, 0, 0, 0 };
	struct proc_stream bad = { 0 };
	is_int(proc_stream_feed(&bad, huge, sizeof(huge)), -EBADMSG,
	       "proc_stream: oversized envelope");
	proc_stream_done(&bad);
}

int main(void)
{
	test_envelope_append();
	test_envelope_parse();
	test_end_stream();
	test_code_names();
	test_http_status();
	test_from_errno();
	test_timeout();
	test_proc_stream();
	return done();
}
