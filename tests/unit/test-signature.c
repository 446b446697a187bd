/* Signed /files URLs: v1_ + unpadded base64(SHA-256("path:op:user:token[:expiration]")). */
#include "envd.h"
#include "tap.h"

#define TOKEN "0tQG31xiMp0IOQfaz9dcwi72L1CPo8e0"

static void check(const char *path, const char *op, const char *user, const char *token,
		  const char *exp, const char *want, const char *what)
{
	_cleanup_free_ char *got = signature_compute(path, op, user, token, exp);
	is_str(got, want, "signature: %s", what);
}

int main(void)
{
	/* The vector from the E2B SDK's tests. */
	check("hello.txt", "read", "user", TOKEN, NULL,
	      "v1_gUtH/s9YCJWgCizjfUxuWfhFE4QSydOWEIIvfLwDr6E",
	      "SDK vector (hello.txt, read, user)");
	check("hello.txt", "read", "user", TOKEN, "1735689600",
	      "v1_A0Bc5cjQ38VzxwNidSA95b0yxkjhtMKut4LMlJpD54c", "with expiration");
	check("/home/user/a.txt", "write", "", TOKEN, NULL,
	      "v1_XZ7K6gy9y2xHkQ/FY06rD07pdrX2k3g68ftMkUoa6T8", "empty user");
	check("/home/user/a.txt", "write", NULL, TOKEN, NULL,
	      "v1_XZ7K6gy9y2xHkQ/FY06rD07pdrX2k3g68ftMkUoa6T8", "NULL user is the empty user");
	check("hello.txt", "read", NULL, NULL, NULL,
	      "v1_wuR7Z/P9gwQnmq0HDKUAUwGvDxL7kvqNkdHEU8tOoCU", "no user, no token");

	_cleanup_free_ char *a = signature_compute("hello.txt", "read", "user", TOKEN, NULL);
	_cleanup_free_ char *b = signature_compute("hello.txt", "write", "user", TOKEN, NULL);
	_cleanup_free_ char *c = signature_compute("hello.txt", "read", "user", TOKEN, "");
	ok(a && b && !streq(a, b), "signature: operation changes the signature");
	ok(a && c && !streq(a, c), "signature: empty expiration differs from none");
	ok(a && strlen(a) == 3 + 43 && startswith(a, "v1_") && !strchr(a, '='),
	   "signature: v1_ + 43 unpadded base64 characters");
	return done();
}
