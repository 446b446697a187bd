#include <nettle/sha2.h>
#include "sign/signature.h"
#include "common/strbuf.h"
#include "json/jsonx.h"

char *signature_compute(const char *path, const char *operation, const char *username,
			const char *token, const char *expiration)
{
	_cleanup_strbuf_ struct strbuf sb = { 0 };
	if (strbuf_printf(&sb, "%s:%s:%s:%s", path ? path : "", operation, username ? username : "",
			  token ? token : "") < 0)
		return NULL;
	if (expiration && strbuf_printf(&sb, ":%s", expiration) < 0)
		return NULL;
	uint8_t digest[SHA256_DIGEST_SIZE];
	struct sha256_ctx ctx;
	sha256_init(&ctx);
	sha256_update(&ctx, sb.len, (const uint8_t *)sb.data);
	sha256_digest(&ctx, sizeof(digest), digest);
	_cleanup_free_ char *b64 = base64_encode(digest, sizeof(digest), false);
	if (!b64)
		return NULL;
	char *out = NULL;
	if (asprintf(&out, "v1_%s", b64) < 0)
		return NULL;
	return out;
}
