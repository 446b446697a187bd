/* Cleanup attributes and small helpers shared by every Hutch program. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>

#define _cleanup_(f)   __attribute__((cleanup(f)))
#define _unused_       __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define MIN(a, b)     ((a) < (b) ? (a) : (b))
#define MAX(a, b)     ((a) > (b) ? (a) : (b))

/* Move ownership out of a cleanup-guarded variable. */
#define TAKE_PTR(p)                            \
	({                                     \
		__typeof__(p) _take_tmp = (p); \
		(p) = NULL;                    \
		_take_tmp;                     \
	})
#define TAKE_FD(fd)                  \
	({                           \
		int _take_fd = (fd); \
		(fd) = -1;           \
		_take_fd;            \
	})

static inline void freep(void *p)
{
	free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}
#define _cleanup_close_ _cleanup_(closep)

static inline void fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(fclosep)

static inline void closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}
#define _cleanup_closedir_ _cleanup_(closedirp)

static inline bool streq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

static inline bool startswith(const char *s, const char *prefix)
{
	return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

static inline bool isempty(const char *s)
{
	return !s || !*s;
}

/* Returns -errno for the current errno, never 0 (so a failed call always reads as failure). */
static inline int negative_errno(void)
{
	return errno > 0 ? -errno : -EIO;
}
