/*
 * envd's parsers of request header values: Connect-Timeout-Ms, Authorization (Basic, the
 * user of a request), Keepalive-Ping-Interval (a whole number) and Accept-Encoding.
 * Input: TIMEOUT \0 AUTHORIZATION \0 KEEPALIVE \0 ACCEPT_ENCODING. Whatever the input: a parsed
 * timeout is what its 1 to 10 digits say, a Basic user is non-empty with no ':' or NUL, and
 * the encoding is one of the three answers.
 */
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include "envd.h"
#include "common/util.h"
#include "connect/connect.h"
#include "fuzz.h"

static char *piece(const uint8_t **data, size_t *size)
{
	const uint8_t *end = memchr(*data, 0, *size);
	size_t len = end ? (size_t)(end - *data) : *size;
	char *s = strndup((const char *)*data, len);
	fuzz_check(s);
	*data += len + (end ? 1 : 0);
	*size -= len + (end ? 1 : 0);
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 1 << 16)
		return 0;
	char *timeout = piece(&data, &size);
	char *auth = piece(&data, &size);
	char *keepalive = piece(&data, &size);
	char *accept = piece(&data, &size);

	uint64_t ms = 0;
	int r = connect_timeout_parse(timeout, &ms);
	fuzz_check(r == 0 || r == -EINVAL);
	if (r == 0) {
		size_t n = strlen(timeout);
		fuzz_check(n >= 1 && n <= 10 && ms <= 9999999999ull);
		uint64_t v = 0;
		for (size_t i = 0; i < n; i++) {
			fuzz_check(isdigit((unsigned char)timeout[i]));
			v = v * 10 + (uint64_t)(timeout[i] - '0');
		}
		fuzz_check(v == ms);
	}

	char *user = auth_basic_parse(auth);
	if (user) {
		fuzz_check(*user && !strchr(user, ':'));
		free(user);
	}
	fuzz_check(!auth_basic_parse(NULL));

	uint64_t sec;
	if (parse_u64(keepalive, &sec) == 0)
		fuzz_check(*keepalive);

	enum files_encoding e = files_accept_encoding(accept);
	fuzz_check(e == FILES_ENCODING_IDENTITY || e == FILES_ENCODING_GZIP ||
		   e == FILES_ENCODING_UNACCEPTABLE);
	(void)files_identity_acceptable(accept);

	free(timeout);
	free(auth);
	free(keepalive);
	free(accept);
	return 0;
}
