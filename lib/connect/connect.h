/* The Connect protocol (connectrpc.com) over HTTP/1.1 with the JSON codec: error codes,
 * server-stream envelopes and Connect-Timeout-Ms. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "common/strbuf.h"

enum connect_code {
	CONNECT_OK = 0,
	CONNECT_CANCELED,
	CONNECT_UNKNOWN,
	CONNECT_INVALID_ARGUMENT,
	CONNECT_DEADLINE_EXCEEDED,
	CONNECT_NOT_FOUND,
	CONNECT_ALREADY_EXISTS,
	CONNECT_PERMISSION_DENIED,
	CONNECT_RESOURCE_EXHAUSTED,
	CONNECT_FAILED_PRECONDITION,
	CONNECT_ABORTED,
	CONNECT_OUT_OF_RANGE,
	CONNECT_UNIMPLEMENTED,
	CONNECT_INTERNAL,
	CONNECT_UNAVAILABLE,
	CONNECT_DATA_LOSS,
	CONNECT_UNAUTHENTICATED,
	_CONNECT_CODE_MAX,
};

#define CONNECT_FLAG_COMPRESSED 0x01
#define CONNECT_FLAG_END_STREAM 0x02
#define CONNECT_ENVELOPE_HEADER 5

/* The wire name ("not_found"); NULL for CONNECT_OK or out of range. */
const char *connect_code_name(enum connect_code code);
/* -EINVAL for unknown names. */
int connect_code_from_name(const char *name, enum connect_code *out);
/* HTTP status for a unary error response, per the Connect specification. */
unsigned connect_code_http_status(enum connect_code code);
/* Maps a negative errno to the closest code (ENOENT → not_found, EACCES → permission_denied...). */
enum connect_code connect_code_from_errno(int r);

/* Appends one envelope (flags, big-endian length, payload) to out. */
int connect_envelope_append(struct strbuf *out, uint8_t flags, const void *payload, size_t len);

/*
 * Parses one envelope at the start of buf. Returns the number of bytes it spans (header + payload),
 * 0 when more bytes are needed, or -EMSGSIZE when the declared length exceeds max_payload.
 * On success *payload points into buf.
 */
long connect_envelope_parse(const void *buf, size_t len, size_t max_payload, uint8_t *flags,
			    const char **payload, size_t *payload_len);

/* {"code":"…","message":"…"} — the unary error body and the end-stream "error" member. New ref. */
json_t *connect_error_json(enum connect_code code, const char *message);
/* Appends an end-stream envelope: {} for CONNECT_OK, else {"error":{…}}. */
int connect_end_stream_append(struct strbuf *out, enum connect_code code, const char *message);

/* Parses Connect-Timeout-Ms (1 to 10 ASCII digits). Returns 0 and *ms, or -EINVAL. */
int connect_timeout_parse(const char *value, uint64_t *ms);
