/*
 * Path expansion on client-supplied paths. Input: PATH \0 BASE \0 HOME. Whatever the input,
 * a successful expansion is absolute and normal: no "//", no "." or ".." components, no
 * trailing slash, and normalising it again changes nothing.
 */
#include <string.h>
#include "envd.h"
#include "fuzz.h"

static void check_normal(const char *p)
{
	size_t n = strlen(p);
	fuzz_check(p[0] == '/');
	fuzz_check(!strstr(p, "//"));
	fuzz_check(!strstr(p, "/./") && !strstr(p, "/../"));
	fuzz_check(!(n >= 2 && strcmp(p + n - 2, "/.") == 0));
	fuzz_check(!(n >= 3 && strcmp(p + n - 3, "/..") == 0));
	fuzz_check(n == 1 || p[n - 1] != '/');
	char *again = path_normalize(p);
	fuzz_check(again && strcmp(again, p) == 0);
	free(again);
}

/* Splits off the next NUL-terminated piece (the rest when there is no NUL). */
static char *next_piece(const uint8_t **data, size_t *size)
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
	bool has_base = memchr(data, 0, size) != NULL;
	char *path = next_piece(&data, &size);
	char *base = next_piece(&data, &size);
	char *home = next_piece(&data, &size);

	struct user_info u = { .uid = 1000, .gid = 1000, .name = "user" };
	/* Homes come from /etc/passwd: absolute. */
	snprintf(u.home, sizeof(u.home), "%s", home[0] == '/' ? home : "/home/user");

	char *norm = path_normalize(path);
	fuzz_check(norm);
	check_normal(norm);

	char *out = NULL;
	int r = path_expand(path, &u, has_base ? base : NULL, &out);
	if (r == 0) {
		check_normal(out);
		if (path[0] == '/')
			fuzz_check(strcmp(out, norm) == 0);
		free(out);
	} else if (r == -EINVAL) {
		fuzz_check(path[0] == '~' && path[1] && path[1] != '/');
	} else {
		fuzz_check(r == -ENAMETOOLONG && strlen(path) > 4096);
	}

	free(norm);
	free(path);
	free(base);
	free(home);
	return 0;
}
