#include <openssl/crypto.h>
#include "envd.h"
#include "json/jsonx.h"

bool auth_token_ok(struct http_req *req)
{
	pthread_rwlock_rdlock(&envd.lock);
	bool ok = true;
	if (envd.access_token) {
		const char *got = http_header(req, "X-Access-Token");
		size_t want_len = strlen(envd.access_token);
		ok = got && strlen(got) == want_len &&
		     CRYPTO_memcmp(got, envd.access_token, want_len) == 0;
	}
	pthread_rwlock_unlock(&envd.lock);
	return ok;
}

char *auth_basic_user(struct http_req *req)
{
	const char *h = http_header(req, "Authorization");
	if (!h || strncasecmp(h, "Basic ", 6) != 0)
		return NULL;
	const char *b64 = h + 6;
	while (*b64 == ' ')
		b64++;
	unsigned char *raw;
	size_t len;
	if (base64_decode(b64, strlen(b64), &raw, &len) < 0)
		return NULL;
	char *colon = memchr(raw, ':', len);
	size_t ulen = colon ? (size_t)(colon - (char *)raw) : len;
	char *user = strndup((char *)raw, ulen);
	free(raw);
	if (user && (!*user || strlen(user) != ulen)) { /* empty or embedded NUL */
		free(user);
		return NULL;
	}
	return user;
}
