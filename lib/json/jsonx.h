/* Helpers over jansson for protobuf-style JSON: camelCase/snake_case lookups, base64 bytes. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include "common/macro.h"

static inline void jsonx_decrefp(json_t **j)
{
	if (*j)
		json_decref(*j);
}
#define _cleanup_json_ _cleanup_(jsonx_decrefp)

/* Looks a field up by its JSON name, then by its proto (snake_case) name. Borrowed reference. */
json_t *jsonx_field(const json_t *obj, const char *camel, const char *snake);

/* Reads a string field; *out is borrowed (NULL when absent). -EINVAL if present but not a string.
 */
int jsonx_get_string(const json_t *obj, const char *camel, const char *snake, const char **out);
/* Reads an unsigned integer given as a number or a decimal string. -ENOENT when absent. */
int jsonx_get_u64(const json_t *obj, const char *camel, const char *snake, uint64_t *out);
/* Reads a bool; -ENOENT when absent, -EINVAL when not a bool. */
int jsonx_get_bool(const json_t *obj, const char *camel, const char *snake, bool *out);
/* Reads bytes given as standard or url-safe base64, padded or not. Caller frees *out. */
int jsonx_get_bytes(const json_t *obj, const char *camel, const char *snake, unsigned char **out,
		    size_t *len);

/* Base64 (standard alphabet). encode returns a malloc'd string; pad=false strips '='. */
char *base64_encode(const void *data, size_t len, bool pad);
/* Accepts standard and url-safe alphabets, with or without padding. Caller frees *out. */
int base64_decode(const char *s, size_t slen, unsigned char **out, size_t *outlen);

/* A JSON string; bytes that are not UTF-8 become U+FFFD (jansson refuses them). New ref. */
json_t *jsonx_string_lossy(const char *s);

/* Serialises compactly; caller frees. NULL on allocation failure. */
char *jsonx_dump(const json_t *j);
