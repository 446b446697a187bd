/*
 * Connect envelopes from arbitrary bytes, as a streaming request body or a client reading a
 * server stream would see them: every envelope parsed must re-encode to the same bytes, and
 * its JSON payload and an end-stream message built from it must survive a round trip.
 */
#include <string.h>
#include "connect/connect.h"
#include "json/jsonx.h"
#include "fuzz.h"

static void check_payload(uint8_t flags, const char *payload, size_t len)
{
	/* As rpc.c does: JSON_DECODE_ANY | JSON_ALLOW_NUL, then only objects are accepted. */
	json_error_t jerr;
	json_t *j = json_loadb(payload, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	if (j) {
		char *s = jsonx_dump(j);
		fuzz_check(s);
		json_t *back = json_loads(s, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
		fuzz_check(back && json_equal(j, back));
		json_decref(back);
		free(s);
		json_decref(j);
	}

	/* An end-stream error carrying the payload as its message (envd echoes paths and
	 * commands in messages). It must parse back, unless the message is not UTF-8, which
	 * jansson refuses to hold. */
	char *msg = strndup(payload, len);
	fuzz_check(msg);
	enum connect_code code = (enum connect_code)(flags % _CONNECT_CODE_MAX);
	json_t *probe = json_string(msg);
	struct strbuf sb = { 0 };
	int r = connect_end_stream_append(&sb, code, msg);
	if (probe || code == CONNECT_OK) {
		fuzz_check(r == 0);
		uint8_t f;
		const char *p;
		size_t plen;
		long n = connect_envelope_parse(sb.data, sb.len, sb.len, &f, &p, &plen);
		fuzz_check(n == (long)sb.len && f == CONNECT_FLAG_END_STREAM);
		json_t *end = json_loadb(p, plen, 0, &jerr);
		fuzz_check(json_is_object(end));
		json_t *err = json_object_get(end, "error");
		if (code == CONNECT_OK) {
			fuzz_check(json_object_size(end) == 0);
		} else {
			enum connect_code back;
			const char *name = json_string_value(json_object_get(err, "code"));
			fuzz_check(connect_code_from_name(name, &back) == 0 && back == code);
			fuzz_check(json_equal(json_object_get(err, "message"), probe));
		}
		json_decref(end);
	}
	json_decref(probe);
	strbuf_free(&sb);
	free(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A first byte with the top bit set (no real flag uses it) picks a small payload limit,
	 * so -EMSGSIZE is reached with small inputs; otherwise the limit is 1 MiB. */
	size_t max = size && (data[0] & 0x80) ? data[0] & 0x7fu : 1u << 20;
	size_t off = 0;

	while (off < size) {
		uint8_t flags = 0xaa;
		const char *payload = NULL;
		size_t plen = 0;
		size_t left = size - off;
		long n = connect_envelope_parse(data + off, left, max, &flags, &payload, &plen);
		if (left >= CONNECT_ENVELOPE_HEADER) {
			const uint8_t *h = data + off;
			uint32_t declared = (uint32_t)h[1] << 24 | (uint32_t)h[2] << 16 |
					    (uint32_t)h[3] << 8 | h[4];
			if (declared > max)
				fuzz_check(n == -EMSGSIZE);
			else if (declared > left - CONNECT_ENVELOPE_HEADER)
				fuzz_check(n == 0);
			else
				fuzz_check(n == (long)declared + CONNECT_ENVELOPE_HEADER);
		} else {
			fuzz_check(n == 0);
		}
		if (n <= 0)
			break;

		fuzz_check(flags == data[off]);
		fuzz_check(payload == (const char *)data + off + CONNECT_ENVELOPE_HEADER);
		fuzz_check(plen <= max && (size_t)n == plen + CONNECT_ENVELOPE_HEADER);

		struct strbuf sb = { 0 };
		fuzz_check(connect_envelope_append(&sb, flags, payload, plen) == 0);
		fuzz_check(sb.len == (size_t)n && memcmp(sb.data, data + off, sb.len) == 0);
		strbuf_free(&sb);

		check_payload(flags, payload, plen);
		off += (size_t)n;
	}
	return 0;
}
