/* A growable byte buffer; always NUL-terminated after its length. */
#pragma once

#include <stddef.h>
#include "macro.h"

struct strbuf {
	char *data;
	size_t len;
	size_t cap;
};

int strbuf_reserve(struct strbuf *sb, size_t extra);
int strbuf_append(struct strbuf *sb, const void *data, size_t len);
int strbuf_appends(struct strbuf *sb, const char *s);
int strbuf_printf(struct strbuf *sb, const char *fmt, ...) _printf_(2, 3);
/* Drops the first n bytes. */
void strbuf_consume(struct strbuf *sb, size_t n);
void strbuf_reset(struct strbuf *sb);
void strbuf_free(struct strbuf *sb);
/* Hands the data to the caller (who frees it) and resets the buffer. */
char *strbuf_steal(struct strbuf *sb);

static inline void strbuf_freep(struct strbuf *sb)
{
	strbuf_free(sb);
}
#define _cleanup_strbuf_ _cleanup_(strbuf_freep)
