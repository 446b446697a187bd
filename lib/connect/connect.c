#include "connect.h"

#include <ctype.h>
#include <limits.h>
#include "common/macro.h"
#include "json/jsonx.h"

static const char *const code_names[_CONNECT_CODE_MAX] = {
	[CONNECT_CANCELED] = "canceled",
	[CONNECT_UNKNOWN] = "unknown",
	[CONNECT_INVALID_ARGUMENT] = "invalid_argument",
	[CONNECT_DEADLINE_EXCEEDED] = "deadline_exceeded",
	[CONNECT_NOT_FOUND] = "not_found",
	[CONNECT_ALREADY_EXISTS] = "already_exists",
	[CONNECT_PERMISSION_DENIED] = "permission_denied",
	[CONNECT_RESOURCE_EXHAUSTED] = "resource_exhausted",
	[CONNECT_FAILED_PRECONDITION] = "failed_precondition",
	[CONNECT_ABORTED] = "aborted",
	[CONNECT_OUT_OF_RANGE] = "out_of_range",
	[CONNECT_UNIMPLEMENTED] = "unimplemented",
	[CONNECT_INTERNAL] = "internal",
	[CONNECT_UNAVAILABLE] = "unavailable",
	[CONNECT_DATA_LOSS] = "data_loss",
	[CONNECT_UNAUTHENTICATED] = "unauthenticated",
};

static const unsigned code_status[_CONNECT_CODE_MAX] = {
	[CONNECT_OK] = 200,
	[CONNECT_CANCELED] = 499,
	[CONNECT_UNKNOWN] = 500,
	[CONNECT_INVALID_ARGUMENT] = 400,
	[CONNECT_DEADLINE_EXCEEDED] = 504,
	[CONNECT_NOT_FOUND] = 404,
	[CONNECT_ALREADY_EXISTS] = 409,
	[CONNECT_PERMISSION_DENIED] = 403,
	[CONNECT_RESOURCE_EXHAUSTED] = 429,
	[CONNECT_FAILED_PRECONDITION] = 400,
	[CONNECT_ABORTED] = 409,
	[CONNECT_OUT_OF_RANGE] = 400,
	[CONNECT_UNIMPLEMENTED] = 501,
	[CONNECT_INTERNAL] = 500,
	[CONNECT_UNAVAILABLE] = 503,
	[CONNECT_DATA_LOSS] = 500,
	[CONNECT_UNAUTHENTICATED] = 401,
};

const char *connect_code_name(enum connect_code code)
{
	if ((unsigned)code >= _CONNECT_CODE_MAX)
		return NULL;
	return code_names[code];
}

int connect_code_from_name(const char *name, enum connect_code *out)
{
	for (unsigned i = 1; i < _CONNECT_CODE_MAX; i++)
		if (streq(code_names[i], name)) {
			*out = (enum connect_code)i;
			return 0;
		}
	return -EINVAL;
}

unsigned connect_code_http_status(enum connect_code code)
{
	if ((unsigned)code >= _CONNECT_CODE_MAX)
		return 500;
	return code_status[code];
}

enum connect_code connect_code_from_errno(int r)
{
	switch (-r) {
	case ENOENT:
	case ESRCH:
		return CONNECT_NOT_FOUND;
	case EEXIST:
		return CONNECT_ALREADY_EXISTS;
	case EACCES:
	case EPERM:
	case EROFS:
		return CONNECT_PERMISSION_DENIED;
	case EINVAL:
	case ENOTDIR:
	case EISDIR:
	case ENAMETOOLONG:
	case ELOOP:
		return CONNECT_INVALID_ARGUMENT;
	case ENOSPC:
	case EDQUOT:
	case EMFILE:
	case ENFILE:
	case ENOMEM:
		return CONNECT_RESOURCE_EXHAUSTED;
	case ETIMEDOUT:
		return CONNECT_DEADLINE_EXCEEDED;
	case ECANCELED:
		return CONNECT_CANCELED;
	default:
		return CONNECT_INTERNAL;
	}
}

int connect_envelope_append(struct strbuf *out, uint8_t flags, const void *payload, size_t len)
{
	if (len > UINT32_MAX)
		return -EMSGSIZE;
	unsigned char hdr[CONNECT_ENVELOPE_HEADER] = {
		flags,
		(unsigned char)(len >> 24),
		(unsigned char)(len >> 16),
		(unsigned char)(len >> 8),
		(unsigned char)len,
	};
	int r = strbuf_append(out, hdr, sizeof(hdr));
	if (r < 0)
		return r;
	return strbuf_append(out, payload, len);
}

long connect_envelope_parse(const void *buf, size_t len, size_t max_payload, uint8_t *flags,
			    const char **payload, size_t *payload_len)
{
	const unsigned char *p = buf;
	if (len < CONNECT_ENVELOPE_HEADER)
		return 0;
	uint32_t n = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
	if (n > max_payload)
		return -EMSGSIZE;
	if (len - CONNECT_ENVELOPE_HEADER < n)
		return 0;
	*flags = p[0];
	*payload = (const char *)p + CONNECT_ENVELOPE_HEADER;
	*payload_len = n;
	return (long)n + CONNECT_ENVELOPE_HEADER;
}

json_t *connect_error_json(enum connect_code code, const char *message)
{
	const char *name = connect_code_name(code);
	return json_pack("{s:s, s:o}", "code", name ? name : "unknown", "message",
			 jsonx_string_lossy(message ? message : ""));
}

int connect_end_stream_append(struct strbuf *out, enum connect_code code, const char *message)
{
	if (code == CONNECT_OK)
		return connect_envelope_append(out, CONNECT_FLAG_END_STREAM, "{}", 2);
	json_t *err = connect_error_json(code, message);
	json_t *end = err ? json_pack("{s:o}", "error", err) : NULL;
	if (!end)
		return -ENOMEM;
	char *s = json_dumps(end, JSON_COMPACT);
	json_decref(end);
	if (!s)
		return -ENOMEM;
	int r = connect_envelope_append(out, CONNECT_FLAG_END_STREAM, s, strlen(s));
	free(s);
	return r;
}

int connect_timeout_parse(const char *value, uint64_t *ms)
{
	if (isempty(value) || strlen(value) > 10)
		return -EINVAL;
	uint64_t v = 0;
	for (const char *p = value; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*ms = v;
	return 0;
}
