#include <nettle/memops.h>
#include "envd.h"
#include "json/jsonx.h"

bool secret_equal(const char *a, const char *b)
{
	if (!a || !b)
		return false;
	size_t n = strlen(a);
	return strlen(b) == n && memeql_sec(a, b, n);
}

void secret_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

bool auth_token_ok(struct http_req *req)
{
	pthread_rwlock_rdlock(&envd.lock);
	bool ok = !envd.access_token ||
		  secret_equal(http_header(req, "X-Access-Token"), envd.access_token);
	pthread_rwlock_unlock(&envd.lock);
	return ok;
}

char *auth_basic_user(struct http_req *req)
{
	return auth_basic_parse(http_header(req, "Authorization"));
}

char *auth_basic_parse(const char *h)
{
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
