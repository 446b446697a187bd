/* Between the store's files: store.c (the engine: connection, statements, keys, sandboxes,
 * secrets) and store-templates.c (templates, builds, tags). Not for other components. */
#pragma once

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include "common/macro.h"

enum stmt_id {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_KEY_INSERT,
	ST_KEY_BY_HASH,
	ST_KEY_TOUCH,
	ST_KEY_LIST,
	ST_KEY_DELETE_ID,
	ST_KEY_DELETE_NAME,
	ST_KEY_COUNT,
	ST_TPL_PUT,
	ST_TPL_GET,
	ST_TPL_LIST,
	ST_TPL_DELETE,
	ST_BUILD_PUT,
	ST_BUILD_GET,
	ST_BUILD_LIST,
	ST_BUILD_FAIL_UNFINISHED,
	ST_TAG_PUT,
	ST_TAG_GET,
	ST_TAG_DELETE,
	ST_TAG_LIST,
	ST_SBX_INSERT,
	ST_SBX_UPDATE,
	ST_META_CLEAR,
	ST_META_INSERT,
	ST_SBX_GET,
	ST_SBX_STATE,
	ST_SBX_END,
	ST_SBX_DELETE,
	ST_SBX_LIST_ASC,
	ST_SBX_LIST_DESC,
	ST_SBX_EXPIRED,
	ST_SBX_COUNT,
	ST_SBX_SLOTS,
	ST_SECRET_INSERT,
	ST_SECRET_GET,
	_ST_MAX,
};

struct store {
	pthread_mutex_t lock;
	sqlite3 *db;
	sqlite3_stmt *stmt[_ST_MAX];
	int version;
};

struct store *store_lock(struct store *s);
void store_unlockp(struct store **s);
#define STORE_LOCKED(s) _cleanup_(store_unlockp) _unused_ struct store *_locked_ = store_lock(s)
void stmt_resetp(sqlite3_stmt **st);
#define _cleanup_stmt_ _cleanup_(stmt_resetp)

int64_t sq_now_ms(void);
/* Whether str (not NULL) fits a buffer of size bytes; _opt: NULL fits too. */
bool sq_fits(const char *str, size_t size);
bool sq_fits_opt(const char *str, size_t size);
/* A cached prepared statement; the caller holds the lock and resets it (_cleanup_stmt_). */
int sq_stmt_get(struct store *s, enum stmt_id id, sqlite3_stmt **out);
/* 1 with a row, 0 when done, -errno on an error. */
int sq_step(struct store *s, sqlite3_stmt *st);
int sq_bind_text(sqlite3_stmt *st, int i, const char *v);
void sq_col_copy(sqlite3_stmt *st, int col, char *buf, size_t size);
int sq_col_json(sqlite3_stmt *st, int col, json_type type, json_t **out);
int sq_json_text(const json_t *j, json_type type, char **out);
bool sq_is_string_map(const json_t *j);
bool sq_is_string_array(const json_t *j);
/* Runs statement id with ?1 = arg: 0, or -ENOENT when it changed no row. */
int sq_delete_one(struct store *s, enum stmt_id id, const char *arg);
