/* Time, fd and string helpers with no knowledge of sandboxes. */
#pragma once

#include <stdint.h>
#include <sys/types.h>
#include <time.h>
#include "macro.h"

uint64_t now_usec(void);	  /* CLOCK_MONOTONIC */
uint64_t now_realtime_usec(void); /* CLOCK_REALTIME */
/* The time ms milliseconds from now on clock: an absolute timeout for pthread_cond_timedwait
 * (whose condition variable uses that clock). */
struct timespec timespec_in_ms(clockid_t clock, unsigned ms);

/* Formats a unix time (seconds + nanoseconds) as RFC 3339 in UTC, with nanoseconds when non-zero.
 */
void format_rfc3339(char *buf, size_t size, int64_t sec, long nsec);
/* Parses RFC 3339 ("2026-01-02T03:04:05.123Z", offsets allowed). Returns 0 or -EINVAL. */
int parse_rfc3339(const char *s, int64_t *sec, long *nsec);

/* Parses a decimal unsigned integer with no sign, spaces or trailing junk. */
int parse_u64(const char *s, uint64_t *out);

/* Writes all of buf, retrying on EINTR and short writes. Returns 0 or -errno. */
int write_all(int fd, const void *buf, size_t len);
/* Sets or clears O_NONBLOCK. */
int fd_set_nonblock(int fd, bool on);

/* Makes room for at least `need` items of `elem` bytes in the array *p of *cap items, doubling
 * (from 16). 0 or -ENOMEM (then *p and *cap are unchanged). Use ARRAY_RESERVE(arr, cap, need). */
int array_reserve(void **p, size_t *cap, size_t need, size_t elem);
#define ARRAY_RESERVE(arr, cap, need) array_reserve((void **)&(arr), &(cap), (need), sizeof(*(arr)))

/* Splits "ADDR:PORT" (IPv4 or [IPv6]); addr is written to buf. */
int parse_listen_address(const char *s, char *addr, size_t addr_size, uint16_t *port);

/* Removes `name` under dirfd (AT_FDCWD: a path) and, for a directory, everything below it; never
 * follows a symlink and never enters another filesystem (-EBUSY: a mount left behind must not be
 * emptied; also for `name` itself on another filesystem than dirfd). Already gone is success;
 * otherwise the first error, after removing what it could. */
int rm_rf_at(int dirfd, const char *name);

/* mkdir -p: creates path's missing parents (0755) and path itself (mode); existing ones are fine.
 * 0 or -errno (-ENAMETOOLONG beyond PATH_MAX). */
int mkdir_p(const char *path, mode_t mode);
