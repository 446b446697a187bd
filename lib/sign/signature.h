/* E2B's v1 signatures for file URLs (downloadUrl/uploadUrl), shared by envd, which checks
 * them, and the front door, which finds the sandbox whose token made one. */
#pragma once

/* v1_ + unpadded base64(SHA-256("<path>:<op>:<user>:<token>[:<expiration>]")). Caller frees;
 * NULL on allocation failure. */
char *signature_compute(const char *path, const char *operation, const char *username,
			const char *token, const char *expiration);
