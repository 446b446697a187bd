/*
 * The front door's routing of untrusted Host / E2b-Sandbox-Id / E2b-Sandbox-Port values.
 * Input: HOST \0 ID \0 PORT. Whatever the input, a routed request names a sandbox id of safe
 * characters that fits its buffer and a port from 1 to 65535.
 */
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include "frontdoor/frontdoor.h"
#include "fuzz.h"

static char *piece(const uint8_t **data, size_t *size, bool *present)
{
	const uint8_t *end = memchr(*data, 0, *size);
	size_t len = end ? (size_t)(end - *data) : *size;
	*present = *size > 0 || end;
	char *s = strndup((const char *)*data, len);
	fuzz_check(s);
	*data += len + (end ? 1 : 0);
	*size -= len + (end ? 1 : 0);
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool h, i, p;
	char *host = piece(&data, &size, &h);
	char *id = piece(&data, &size, &i);
	char *port = piece(&data, &size, &p);
	struct route_target t;
	int r = route_parse(h ? host : NULL, i ? id : NULL, p ? port : NULL, &t);
	fuzz_check(r == 0 || r == -ENOENT || r == -EINVAL);
	if (r == 0) {
		size_t n = strnlen(t.sandbox_id, sizeof(t.sandbox_id));
		fuzz_check(n > 0 && n < sizeof(t.sandbox_id));
		for (size_t k = 0; k < n; k++)
			fuzz_check(isalnum((unsigned char)t.sandbox_id[k]) ||
				   t.sandbox_id[k] == '-' || t.sandbox_id[k] == '_');
		fuzz_check(t.port >= 1);
	}
	(void)route_hop_by_hop(host);
	free(host);
	free(id);
	free(port);
	return 0;
}
