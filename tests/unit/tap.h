/*
 * A tiny TAP (Test Anything Protocol) producer for the unit tests. Each test point prints
 * "ok N - name" or "not ok N - name" with a diagnostic; done() prints the plan when none was
 * given up front and returns the exit code (non-zero when any point failed or the plan was
 * not met), so `return done();` ends every main().
 */
#pragma once

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned tap_planned;
static unsigned tap_run;
static unsigned tap_failed;
static const char *tap_todo_reason;
static const char *tap_skip_reason;

/* Declares the number of test points up front; optional (done() prints a trailing plan). */
static inline void plan(unsigned n)
{
	tap_planned = n;
	printf("1..%u\n", n);
	fflush(stdout);
}

static inline void tap_vresult(bool pass, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static inline void tap_vresult(bool pass, const char *fmt, va_list ap)
{
	tap_run++;
	if (!pass && !tap_todo_reason)
		tap_failed++;
	printf("%sok %u - ", pass ? "" : "not ", tap_run);
	/* The name may quote test input: keep it on one line and free of TAP directives. */
	char name[512];
	vsnprintf(name, sizeof(name), fmt, ap);
	for (const unsigned char *c = (const unsigned char *)name; *c; c++) {
		if (*c == '#' || *c == '\\')
			printf("\\%c", *c);
		else if (*c < 0x20 || *c == 0x7f)
			printf("\\x%02x", *c);
		else
			putchar(*c);
	}
	if (tap_todo_reason)
		printf(" # TODO %s", tap_todo_reason);
	else if (tap_skip_reason)
		printf(" # SKIP %s", tap_skip_reason);
	putchar('\n');
	fflush(stdout);
}

static inline void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void diag(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("# ", stdout);
	vprintf(fmt, ap);
	putchar('\n');
	fflush(stdout);
	va_end(ap);
}

static inline bool tap_ok(bool pass, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline bool tap_ok(bool pass, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	tap_vresult(pass, fmt, ap);
	va_end(ap);
	if (!pass)
		diag("  failed at %s:%d", file, line);
	return pass;
}

static inline bool tap_is_int(intmax_t got, intmax_t want, const char *file, int line,
			      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static inline bool tap_is_int(intmax_t got, intmax_t want, const char *file, int line,
			      const char *fmt, ...)
{
	bool pass = got == want;
	va_list ap;
	va_start(ap, fmt);
	tap_vresult(pass, fmt, ap);
	va_end(ap);
	if (!pass)
		diag("  failed at %s:%d: got %jd, want %jd", file, line, got, want);
	return pass;
}

static inline bool tap_is_str(const char *got, const char *want, const char *file, int line,
			      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static inline bool tap_is_str(const char *got, const char *want, const char *file, int line,
			      const char *fmt, ...)
{
	bool pass = (!got && !want) || (got && want && strcmp(got, want) == 0);
	va_list ap;
	va_start(ap, fmt);
	tap_vresult(pass, fmt, ap);
	va_end(ap);
	if (!pass)
		diag("  failed at %s:%d: got \"%s\", want \"%s\"", file, line, got ? got : "(null)",
		     want ? want : "(null)");
	return pass;
}

static inline bool tap_is_mem(const void *got, size_t got_len, const void *want, size_t want_len,
			      const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static inline bool tap_is_mem(const void *got, size_t got_len, const void *want, size_t want_len,
			      const char *file, int line, const char *fmt, ...)
{
	bool pass =
	    got_len == want_len && (got_len == 0 || (got && memcmp(got, want, got_len) == 0));
	va_list ap;
	va_start(ap, fmt);
	tap_vresult(pass, fmt, ap);
	va_end(ap);
	if (!pass)
		diag("  failed at %s:%d: %zu bytes differ from the %zu expected", file, line,
		     got_len, want_len);
	return pass;
}

/*
 * Marks the following points as known failures (TAP "# TODO"): they do not fail the program, and
 * the harness reports them as expected failures, or as unexpected passes once the bug is fixed.
 */
static inline void todo_start(const char *reason)
{
	tap_todo_reason = reason;
}

static inline void todo_end(void)
{
	tap_todo_reason = NULL;
}

/* ok(cond, "name %d", ...): a test point that passes when cond is true. */
#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define is_int(got, want, ...) \
	tap_is_int((intmax_t)(got), (intmax_t)(want), __FILE__, __LINE__, __VA_ARGS__)
#define is_str(got, want, ...) tap_is_str((got), (want), __FILE__, __LINE__, __VA_ARGS__)
#define is_mem(got, glen, want, wlen, ...) \
	tap_is_mem((got), (glen), (want), (wlen), __FILE__, __LINE__, __VA_ARGS__)

/* A test point that could not run here; it passes with a TAP "# SKIP" directive. */
static inline void skip(const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void skip(const char *reason, const char *fmt, ...)
{
	const char *saved = tap_todo_reason;
	va_list ap;
	va_start(ap, fmt);
	tap_todo_reason = NULL;
	tap_skip_reason = reason;
	tap_vresult(true, fmt, ap);
	tap_skip_reason = NULL;
	tap_todo_reason = saved;
	va_end(ap);
}

/* Prints the trailing plan if none was given and returns the process exit code. */
static inline int done(void)
{
	if (!tap_planned)
		printf("1..%u\n", tap_run);
	else if (tap_run != tap_planned)
		diag("planned %u test points but ran %u", tap_planned, tap_run);
	if (tap_failed)
		diag("%u of %u test points failed", tap_failed, tap_run);
	fflush(stdout);
	return tap_failed || (tap_planned && tap_run != tap_planned) ? EXIT_FAILURE : EXIT_SUCCESS;
}
