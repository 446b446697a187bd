/* The growable byte buffer. */
#include <stdint.h>
#include "common/strbuf.h"
#include "tap.h"

static void test_append(void)
{
	_cleanup_strbuf_ struct strbuf sb = { 0 };
	is_int(strbuf_appends(&sb, "hello"), 0, "appends: into an empty buffer");
	is_str(sb.data, "hello", "appends: content");
	is_int(sb.len, 5, "appends: length");
	ok(sb.cap > sb.len, "appends: room for the NUL");

	is_int(strbuf_append(&sb, " world\0tail", 11), 0, "append: embedded NUL");
	is_int(sb.len, 16, "append: length counts the NUL byte");
	ok(memcmp(sb.data, "hello world\0tail", 17) == 0, "append: bytes and terminating NUL");

	is_int(strbuf_append(&sb, NULL, 0), 0, "append: zero bytes from NULL");
	is_int(sb.len, 16, "append: zero bytes keep the length");

	/* Growth across many reallocations keeps old content. */
	strbuf_reset(&sb);
	bool good = true;
	for (int i = 0; i < 10000; i++)
		if (strbuf_append(&sb, "0123456789", 10) < 0)
			good = false;
	for (size_t i = 0; i < sb.len; i++)
		if (sb.data[i] != (char)('0' + i % 10))
			good = false;
	ok(good && sb.len == 100000 && sb.data[sb.len] == 0,
	   "append: 100000 bytes in 10-byte steps");
}

static void test_printf(void)
{
	_cleanup_strbuf_ struct strbuf sb = { 0 };
	is_int(strbuf_printf(&sb, "%s=%d", "x", 42), 0, "printf: into an empty buffer");
	is_str(sb.data, "x=42", "printf: content");
	is_int(strbuf_printf(&sb, ",%05u", 7u), 0, "printf: appends");
	is_str(sb.data, "x=42,00007", "printf: appended content");
	is_int(sb.len, 10, "printf: length");
	is_int(strbuf_printf(&sb, "%s", ""), 0, "printf: empty output");
	is_int(sb.len, 10, "printf: empty output keeps length");

	char big[3000];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	is_int(strbuf_printf(&sb, "[%s]", big), 0, "printf: output larger than the capacity");
	ok(sb.len == 10 + 3001 && sb.data[10] == '[' && sb.data[sb.len - 1] == ']' &&
	       sb.data[sb.len] == 0,
	   "printf: large output intact");
}

static void test_consume(void)
{
	_cleanup_strbuf_ struct strbuf sb = { 0 };
	strbuf_appends(&sb, "abcdef");
	strbuf_consume(&sb, 2);
	is_str(sb.data, "cdef", "consume: drops the first bytes");
	is_int(sb.len, 4, "consume: length");
	strbuf_consume(&sb, 0);
	is_str(sb.data, "cdef", "consume: zero is a no-op");
	strbuf_consume(&sb, 100);
	is_int(sb.len, 0, "consume: more than the length empties");
	is_str(sb.data, "", "consume: still NUL-terminated");

	struct strbuf empty = { 0 };
	strbuf_consume(&empty, 3);
	ok(empty.len == 0 && empty.data == NULL, "consume: on a never-used buffer");
	strbuf_reset(&empty);
	ok(empty.len == 0 && empty.data == NULL, "reset: on a never-used buffer");
}

static void test_steal_reset_free(void)
{
	struct strbuf sb = { 0 };
	char *p = strbuf_steal(&sb);
	ok(p && p[0] == 0, "steal: an empty buffer yields \"\"");
	free(p);

	strbuf_appends(&sb, "keep");
	p = strbuf_steal(&sb);
	is_str(p, "keep", "steal: hands over the data");
	ok(sb.data == NULL && sb.len == 0 && sb.cap == 0, "steal: resets the buffer");
	free(p);

	strbuf_appends(&sb, "xyz");
	size_t cap = sb.cap;
	strbuf_reset(&sb);
	ok(sb.len == 0 && sb.cap == cap && sb.data[0] == 0, "reset: keeps the allocation");
	strbuf_free(&sb);
	ok(sb.data == NULL && sb.len == 0 && sb.cap == 0, "free: zeroes the buffer");
	strbuf_free(&sb);
	ok(sb.data == NULL, "free: twice is harmless");
}

static void test_reserve(void)
{
	_cleanup_strbuf_ struct strbuf sb = { 0 };
	is_int(strbuf_reserve(&sb, 100), 0, "reserve: 100 bytes");
	ok(sb.cap >= 101 && sb.len == 0, "reserve: capacity includes the NUL");
	char *before = sb.data;
	for (int i = 0; i < 100; i++)
		strbuf_append(&sb, "x", 1);
	ok(sb.data == before, "reserve: appends within the reservation do not reallocate");
	is_int(strbuf_reserve(&sb, SIZE_MAX), -ENOMEM, "reserve: SIZE_MAX → -ENOMEM");
	is_int(strbuf_reserve(&sb, SIZE_MAX / 2), -ENOMEM, "reserve: SIZE_MAX/2 → -ENOMEM");
	is_int(strbuf_append(&sb, "x", SIZE_MAX - 1), -ENOMEM, "append: huge length → -ENOMEM");
	is_int(sb.len, 100, "reserve: failures keep the content");
}

int main(void)
{
	test_append();
	test_printf();
	test_consume();
	test_steal_reset_free();
	test_reserve();
	return done();
}
