#include "jsonx.h"

#include <openssl/evp.h>
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
	size_t cap = 4 * ((len + 2) / 3) + 1;
	char *out = malloc(cap);
	if (!out)
		return NULL;
	/* EVP_EncodeBlock takes an int length: encode in slices that stay aligned to 3 bytes. */
	const unsigned char *p = data;
	size_t o = 0;
	while (len > 0) {
		size_t n = MIN(len, (size_t)3 * 1024 * 1024);
		o += (size_t)EVP_EncodeBlock((unsigned char *)out + o, p, (int)n);
		p += n;
		len -= n;
	}
	out[o] = 0;
	if (!pad)
		while (o > 0 && out[o - 1] == '=')
			out[--o] = 0;
	return out;
}

int base64_decode(const char *s, size_t slen, unsigned char **out, size_t *outlen)
{
	if (slen > SIZE_MAX / 2)
		return -EINVAL;
	/* Normalise to the padded standard alphabet, which EVP_DecodeBlock needs. */
	size_t padded = slen + (4 - slen % 4) % 4;
	_cleanup_free_ char *norm = malloc(padded + 1);
	if (!norm)
		return -ENOMEM;
	size_t n = 0, pads = 0;
	for (size_t i = 0; i < slen; i++) {
		char c = s[i];
		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (c == '=') {
			pads++;
			norm[n++] = c;
			continue;
		} else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			     c == '+' || c == '/'))
			return -EINVAL;
		if (pads)
			return -EINVAL; /* data after padding */
		norm[n++] = c;
	}
	if (n % 4 == 1)
		return -EINVAL;
	while (n % 4) {
		norm[n++] = '=';
		pads++;
	}
	if (pads > 2)
		return -EINVAL;
	unsigned char *buf = malloc(n / 4 * 3 + 1);
	if (!buf)
		return -ENOMEM;
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		size_t chunk = MIN(n - i, (size_t)4 * 1024 * 1024);
		int r = EVP_DecodeBlock(buf + o, (unsigned char *)norm + i, (int)chunk);
		if (r < 0) {
			free(buf);
			return -EINVAL;
		}
		o += (size_t)r;
		i += chunk;
	}
	o -= pads; /* EVP_DecodeBlock counts padding as zero bytes */
	*out = buf;
	*outlen = o;
	return 0;
}

char *jsonx_dump(const json_t *j)
{
	return json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
}
