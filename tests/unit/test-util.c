/* Time, integer, address, fd and tree-removal helpers. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdint.h>
#include "common/util.h"
#include "tap.h"

static void check_format(int64_t sec, long nsec, const char *want)
{
	char buf[64];
	memset(buf, 'X', sizeof(buf));
	format_rfc3339(buf, sizeof(buf), sec, nsec);
	is_str(buf, want, "format_rfc3339(%lld, %ld)", (long long)sec, nsec);
}

static void check_parse(const char *s, int64_t want_sec, long want_nsec)
{
	int64_t sec = -42;
	long nsec = -42;
	int r = parse_rfc3339(s, &sec, &nsec);
	ok(r == 0 && sec == want_sec && nsec == want_nsec, "parse_rfc3339(\"%s\") → %lld.%09ld", s,
	   (long long)want_sec, want_nsec);
	if (r != 0 || sec != want_sec || nsec != want_nsec)
		diag("  got r=%d sec=%lld nsec=%ld", r, (long long)sec, nsec);
}

static void check_parse_fails(const char *s)
{
	int64_t sec = 0;
	long nsec = 0;
	is_int(parse_rfc3339(s, &sec, &nsec), -EINVAL, "parse_rfc3339(\"%s\") → -EINVAL", s);
}

static void test_rfc3339(void)
{
	check_format(0, 0, "1970-01-01T00:00:00Z");
	check_format(1767323045, 0, "2026-01-02T03:04:05Z");
	check_format(1767323045, 123000000, "2026-01-02T03:04:05.123Z");
	check_format(1767323045, 123456000, "2026-01-02T03:04:05.123456Z");
	check_format(1767323045, 123456789, "2026-01-02T03:04:05.123456789Z");
	check_format(1767323045, 100000000, "2026-01-02T03:04:05.100Z");
	check_format(1767323045, 1, "2026-01-02T03:04:05.000000001Z");
	check_format(1767323045, 1000, "2026-01-02T03:04:05.000001Z");
	check_format(951868799, 999999999, "2000-02-29T23:59:59.999999999Z");
	check_format(-1, 0, "1969-12-31T23:59:59Z");
	check_format(2147483648, 0, "2038-01-19T03:14:08Z");

	/* A short buffer is truncated, never overrun. */
	char small[12];
	memset(small, 'X', sizeof(small));
	format_rfc3339(small, 8, 1767323045, 123456789);
	ok(memchr(small, 0, 8) != NULL && small[8] == 'X',
	   "format_rfc3339: stays within a short buffer");
	char mid[24];
	memset(mid, 'X', sizeof(mid));
	format_rfc3339(mid, 22, 1767323045, 123456789);
	ok(memchr(mid, 0, 22) != NULL && mid[22] == 'X',
	   "format_rfc3339: fraction stays within the buffer");

	check_parse("2026-01-02T03:04:05Z", 1767323045, 0);
	check_parse("2026-01-02T03:04:05.123Z", 1767323045, 123000000);
	check_parse("2026-01-02T03:04:05.000000001Z", 1767323045, 1);
	check_parse("2026-01-02T03:04:05.1234567891Z", 1767323045, 123456789);
	check_parse("2026-01-02t03:04:05z", 1767323045, 0);
	check_parse("2026-01-02 03:04:05Z", 1767323045, 0);
	check_parse("2026-01-02T05:04:05+02:00", 1767323045, 0);
	check_parse("2026-01-01T21:34:05.5-05:30", 1767323045, 500000000);
	check_parse("2026-01-02T03:04:05+00:00", 1767323045, 0);
	check_parse("2026-01-02T03:04:05-00:00", 1767323045, 0);
	check_parse("1969-12-31T23:59:59Z", -1, 0);
	check_parse("2000-02-29T23:59:59.999999999Z", 951868799, 999999999);

	check_parse_fails("");
	check_parse_fails("2026-01-02T03:04:05");
	check_parse_fails("2026-01-02");
	check_parse_fails("2026-01-02T03:04:05.Z");
	check_parse_fails("2026-01-02T03:04:05ZZ");
	check_parse_fails("2026-01-02T03:04:05Z ");
	check_parse_fails("2026-13-02T03:04:05Z");
	check_parse_fails("2026-00-02T03:04:05Z");
	check_parse_fails("2026-01-00T03:04:05Z");
	check_parse_fails("2026-01-32T03:04:05Z");
	check_parse_fails("2026-01-02T24:04:05Z");
	check_parse_fails("2026-01-02T03:60:05Z");
	check_parse_fails("2026-01-02T03:04:61Z");
	check_parse_fails("2026-01-02X03:04:05Z");
	check_parse_fails("2026-1-02T03:04:05Z");
	check_parse_fails("26-01-02T03:04:05Z");
	check_parse_fails("2026-01-02T03:04:05+0200");
	check_parse_fails("2026-01-02T03:04:05+02");
	check_parse_fails("2026-01-02T03:04:05.12a3Z");
	check_parse_fails("+026-01-02T03:04:05Z");
	is_int(parse_rfc3339(NULL, &(int64_t){ 0 }, &(long){ 0 }), -EINVAL, "parse_rfc3339(NULL)");

	/* Round trip through both functions, including trimmed fractions. */
	static const struct {
		int64_t sec;
		long nsec;
	} rt[] = { { 0, 0 },
		   { 1767323045, 1 },
		   { 1767323045, 10 },
		   { 1767323045, 120000 },
		   { 1767323045, 999999999 },
		   { 4102444800, 500 },
		   { 1, 100000000 },
		   { 951868799, 7 } };
	bool all = true;
	for (size_t i = 0; i < ELEMENTSOF(rt); i++) {
		char buf[64];
		int64_t sec;
		long nsec;
		format_rfc3339(buf, sizeof(buf), rt[i].sec, rt[i].nsec);
		if (parse_rfc3339(buf, &sec, &nsec) < 0 || sec != rt[i].sec || nsec != rt[i].nsec) {
			diag("round trip failed for %s", buf);
			all = false;
		}
	}
	ok(all, "rfc3339: format → parse round trip");
}

static void test_parse_u64(void)
{
	uint64_t v = 0;
	is_int(parse_u64("0", &v), 0, "parse_u64: 0");
	is_int(v, 0, "parse_u64: 0 value");
	is_int(parse_u64("007", &v), 0, "parse_u64: leading zeros");
	is_int(v, 7, "parse_u64: 007 → 7");
	is_int(parse_u64("18446744073709551615", &v), 0, "parse_u64: UINT64_MAX");
	ok(v == UINT64_MAX, "parse_u64: UINT64_MAX value");
	v = 3;
	is_int(parse_u64("18446744073709551616", &v), -ERANGE,
	       "parse_u64: UINT64_MAX + 1 → -ERANGE");
	is_int(parse_u64("18446744073709551620", &v), -ERANGE, "parse_u64: last digit overflow");
	is_int(parse_u64("99999999999999999999", &v), -ERANGE, "parse_u64: 20 nines → -ERANGE");
	is_int(parse_u64("184467440737095516150", &v), -ERANGE, "parse_u64: 21 digits → -ERANGE");
	is_int(v, 3, "parse_u64: failures leave *out alone");
	is_int(parse_u64("", &v), -EINVAL, "parse_u64: empty");
	is_int(parse_u64(NULL, &v), -EINVAL, "parse_u64: NULL");
	is_int(parse_u64("+1", &v), -EINVAL, "parse_u64: sign");
	is_int(parse_u64("-1", &v), -EINVAL, "parse_u64: negative");
	is_int(parse_u64(" 1", &v), -EINVAL, "parse_u64: leading space");
	is_int(parse_u64("1 ", &v), -EINVAL, "parse_u64: trailing space");
	is_int(parse_u64("12a", &v), -EINVAL, "parse_u64: trailing junk");
	is_int(parse_u64("0x10", &v), -EINVAL, "parse_u64: hex");
}

static void check_listen(const char *s, const char *want_addr, uint16_t want_port)
{
	char addr[64] = "";
	uint16_t port = 0;
	int r = parse_listen_address(s, addr, sizeof(addr), &port);
	ok(r == 0 && streq(addr, want_addr) && port == want_port,
	   "parse_listen_address(\"%s\") → %s port %u", s, want_addr, want_port);
	if (r != 0)
		diag("  got r=%d", r);
}

static void test_listen_address(void)
{
	check_listen("0.0.0.0:49983", "0.0.0.0", 49983);
	check_listen("127.0.0.1:0", "127.0.0.1", 0);
	check_listen("[::1]:80", "::1", 80);
	check_listen("[::]:65535", "::", 65535);
	check_listen("[fe80::1%eth0]:8080", "fe80::1%eth0", 8080);
	check_listen("localhost:1", "localhost", 1);

	static const char *const bad[] = {
		"",
		"127.0.0.1",
		"127.0.0.1:",
		":80",
		"[]:80",
		"1.2.3.4:65536",
		"1.2.3.4:-1",
		"1.2.3.4:8o",
		"1.2.3.4: 80",
		"1.2.3.4:99999999999999999999999",
	};
	char addr[64];
	uint16_t port = 7;
	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		is_int(parse_listen_address(bad[i], addr, sizeof(addr), &port), -EINVAL,
		       "parse_listen_address(\"%s\") → -EINVAL", bad[i]);
	is_int(parse_listen_address(NULL, addr, sizeof(addr), &port), -EINVAL,
	       "parse_listen_address(NULL) → -EINVAL");
	is_int(port, 7, "parse_listen_address: failures leave *port alone");

	char tiny[8];
	memset(tiny, 'X', sizeof(tiny));
	is_int(parse_listen_address("123.123.123.123:1", tiny, 8, &port), -EINVAL,
	       "parse_listen_address: address longer than the buffer → -EINVAL");
	ok(tiny[0] == 'X', "parse_listen_address: buffer untouched on failure");
	is_int(parse_listen_address("1234567:1", tiny, 8, &port), 0,
	       "parse_listen_address: address filling the buffer exactly");
	is_str(tiny, "1234567", "parse_listen_address: exact fit is terminated");
}

static void test_fd_helpers(void)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		ok(false, "pipe2: %s", strerror(errno));
		return;
	}
	is_int(fd_set_nonblock(p[0], true), 0, "fd_set_nonblock: on");
	ok(fcntl(p[0], F_GETFL) & O_NONBLOCK, "fd_set_nonblock: flag set");
	is_int(fd_set_nonblock(p[0], true), 0, "fd_set_nonblock: on again is a no-op");
	is_int(fd_set_nonblock(p[0], false), 0, "fd_set_nonblock: off");
	ok(!(fcntl(p[0], F_GETFL) & O_NONBLOCK), "fd_set_nonblock: flag cleared");
	is_int(fd_set_nonblock(-1, true), -EBADF, "fd_set_nonblock: bad fd → -EBADF");

	is_int(write_all(p[1], "hello", 5), 0, "write_all: to a pipe");
	char buf[8] = "";
	ok(read(p[0], buf, sizeof(buf)) == 5 && memcmp(buf, "hello", 5) == 0,
	   "write_all: bytes arrive");
	close(p[0]);
	close(p[1]);
	is_int(write_all(p[1], "x", 1), -EBADF, "write_all: closed fd → -EBADF");

	uint64_t a = now_usec(), b = now_usec();
	ok(b >= a && a > 0, "now_usec: monotonic");
	ok(now_realtime_usec() > UINT64_C(1600000000) * 1000000, "now_realtime_usec: after 2020");
}

static void test_rm_rf(void)
{
	char root[] = "/tmp/test-util-rmrf-XXXXXX", outside[] = "/tmp/test-util-keep-XXXXXX";
	ok(mkdtemp(root) && mkdtemp(outside), "temporary directories");
	int dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int keep = open(outside, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ok(mkdirat(dfd, "t", 0755) == 0 && mkdirat(dfd, "t/a", 0700) == 0 &&
	       mkdirat(dfd, "t/a/b", 0) == 0,
	   "a tree, one directory without permissions");
	close(openat(keep, "precious", O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
	close(openat(dfd, "t/a/file", O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
	ok(symlinkat(outside, dfd, "t/a/link") == 0, "a symlink to a directory outside");
	is_int(rm_rf_at(dfd, "t"), 0, "rm_rf_at removes the tree");
	ok(faccessat(dfd, "t", F_OK, AT_SYMLINK_NOFOLLOW) < 0, "the tree is gone");
	ok(faccessat(keep, "precious", F_OK, 0) == 0, "the symlink's target is untouched");
	is_int(rm_rf_at(dfd, "t"), 0, "removing what is gone succeeds");
	close(openat(dfd, "plain", O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
	is_int(rm_rf_at(dfd, "plain"), 0, "a plain file");
	ok(faccessat(dfd, "plain", F_OK, 0) < 0, "the file is gone");
	close(dfd);
	close(keep);
	is_int(rm_rf_at(AT_FDCWD, outside), 0, "a path with AT_FDCWD");
	is_int(rm_rf_at(AT_FDCWD, root), 0, "the root");
}

static void test_timespec_in_ms(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	struct timespec t = timespec_in_ms(CLOCK_MONOTONIC, 2999);
	int64_t d = ((int64_t)t.tv_sec - now.tv_sec) * 1000000000LL + (t.tv_nsec - now.tv_nsec);
	ok(t.tv_nsec >= 0 && t.tv_nsec < 1000000000L, "timespec_in_ms: nanoseconds normalised");
	ok(d >= 2999000000LL && d < 3100000000LL, "timespec_in_ms: 2999 ms ahead (%lld ns)",
	   (long long)d);
	struct timespec wall;
	clock_gettime(CLOCK_REALTIME, &wall);
	t = timespec_in_ms(CLOCK_REALTIME, 0);
	d = ((int64_t)t.tv_sec - wall.tv_sec) * 1000000000LL + (t.tv_nsec - wall.tv_nsec);
	ok(d >= 0 && d < 100000000LL, "timespec_in_ms: 0 ms on CLOCK_REALTIME is its now");
}

int main(void)
{
	test_timespec_in_ms();
	test_rm_rf();
	test_rfc3339();
	test_parse_u64();
	test_listen_address();
	test_fd_helpers();
	return done();
}
