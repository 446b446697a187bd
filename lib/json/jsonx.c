#include "jsonx.h"

#include <nettle/base64.h>
#include "common/util.h"

json_t *jsonx_field(const json_t *obj, const char *camel, const char *snake)
{
	if (!json_is_object(obj))
		return NULL;
	json_t *v = json_object_get(obj, camel);
	if (!v && snake)
		v = json_object_get(obj, snake);
	if (json_is_null(v))
		return NULL;
	return v;
}

int jsonx_get_string(const json_t *obj, const char *camel, const char *snake, const char **out)
{
	json_t *v = jsonx_field(obj, camel, snake);
	*out = NULL;
	if (!v)
		return -ENOENT;
	if (!json_is_string(v))
		return -EINVAL;
	*out = json_string_value(v);
	return 0;
}

int jsonx_get_u64(const json_t *obj, const char *camel, const char *snake, uint64_t *out)
{
	json_t *v = jsonx_field(obj, camel, snake);
	if (!v)
		return -ENOENT;
	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);
		if (i < 0)
			return -ERANGE;
		*out = (uint64_t)i;
		return 0;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);
		if (d < 0 || d > 1.8e19 || d != (double)(uint64_t)d)
			return -EINVAL;
		*out = (uint64_t)d;
		return 0;
	}
	if (json_is_string(v))
		return parse_u64(json_string_value(v), out);
	return -EINVAL;
}

int jsonx_get_bool(const json_t *obj, const char *camel, const char *snake, bool *out)
{
	json_t *v = jsonx_field(obj, camel, snake);
	if (!v)
		return -ENOENT;
	if (!json_is_boolean(v))
		return -EINVAL;
	*out = json_is_true(v);
	return 0;
}

int jsonx_get_bytes(const json_t *obj, const char *camel, const char *snake, unsigned char **out,
		    size_t *len)
{
	const char *s;
	int r = jsonx_get_string(obj, camel, snake, &s);
	if (r < 0)
		return r;
	return base64_decode(s, strlen(s), out, len);
}

char *base64_encode(const void *data, size_t len, bool pad)
{
	if (len > (SIZE_MAX / 4) * 3 - 3)
		return NULL;
	char *out = malloc(BASE64_ENCODE_RAW_LENGTH(len) + 1);
	if (!out)
		return NULL;
	base64_encode_raw(out, len, data);
	size_t o = BASE64_ENCODE_RAW_LENGTH(len);
	out[o] = 0;
	if (!pad)
		while (o > 0 && out[o - 1] == '=')
			out[--o] = 0;
	return out;
}

int base64_decode(const char *s, size_t slen, unsigned char **out, size_t *outlen)
{
	/* Standard or url-safe alphabet (even mixed, as protobuf's JSON readers accept), padded or
	 * not; padding only at the end. Normalised to the standard alphabet for nettle. */
	size_t data_len = slen;
	while (data_len > 0 && s[data_len - 1] == '=')
		data_len--;
	if (slen - data_len > 2 || (slen != data_len && slen % 4 != 0) || data_len % 4 == 1)
		return -EINVAL;
	_cleanup_free_ char *norm = malloc(data_len + 1);
	if (!norm)
		return -ENOMEM;
	for (size_t i = 0; i < data_len; i++) {
		char c = s[i];
		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			   (c >= '0' && c <= '9') || c == '+' || c == '/'))
			return -EINVAL;
		norm[i] = c;
	}
	unsigned char *buf = malloc(BASE64_DECODE_LENGTH(data_len) + 1);
	if (!buf)
		return -ENOMEM;
	struct base64_decode_ctx ctx;
	base64_decode_init(&ctx);
	size_t o = BASE64_DECODE_LENGTH(data_len);
	/* Unpadded input leaves bits in the context, which final() would reject: the length
	 * check above already guarantees they are whole bytes. */
	if (!base64_decode_update(&ctx, &o, buf, data_len, norm) ||
	    (data_len % 4 == 0 && !base64_decode_final(&ctx))) {
		free(buf);
		return -EINVAL;
	}
	*out = buf;
	*outlen = o;
	return 0;
}

static size_t utf8_seq_len(const unsigned char *s)
{
	unsigned c = s[0];
	size_t n;
	unsigned cp;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

json_t *jsonx_string_lossy(const char *s)
{
	json_t *v = json_string(s);
	if (v)
		return v;
	/* Not UTF-8: a lossy name beats a missing entry. */
	size_t len = strlen(s);
	_cleanup_free_ char *buf = malloc(len * 3 + 1);
	if (!buf)
		return NULL;
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		size_t n = utf8_seq_len(p);
		if (n) {
			memcpy(buf + o, p, n);
			o += n;
			p += n;
		} else {
			memcpy(buf + o, "\xef\xbf\xbd", 3);
			o += 3;
			p++;
		}
	}
	buf[o] = 0;
	return json_string(buf);
}

char *jsonx_dump(const json_t *j)
{
	return json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
}
