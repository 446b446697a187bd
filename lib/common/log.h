/* Structured logging: one JSON line per message on stderr (daemons) or plain text (CLI). */
#pragma once

#include <stdbool.h>
#include "macro.h"

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

void log_setup(const char *program, enum log_level min, bool json);
enum log_level log_get_level(void);
bool log_level_parse(const char *s, enum log_level *out);

/* Logs and returns `r` (a negative errno); `%m` in fmt prints strerror(-r). */
int log_full_errno(enum log_level level, int r, const char *fmt, ...) _printf_(3, 4);

#define log_debug(...)		log_full_errno(LOG_LEVEL_DEBUG, 0, __VA_ARGS__)
#define log_info(...)		log_full_errno(LOG_LEVEL_INFO, 0, __VA_ARGS__)
#define log_warn(...)		log_full_errno(LOG_LEVEL_WARN, 0, __VA_ARGS__)
#define log_error(...)		log_full_errno(LOG_LEVEL_ERROR, 0, __VA_ARGS__)
#define log_debug_errno(r, ...) log_full_errno(LOG_LEVEL_DEBUG, (r), __VA_ARGS__)
#define log_warn_errno(r, ...)	log_full_errno(LOG_LEVEL_WARN, (r), __VA_ARGS__)
#define log_error_errno(r, ...) log_full_errno(LOG_LEVEL_ERROR, (r), __VA_ARGS__)
