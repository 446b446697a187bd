/* The store's templates, their builds and tags (store.c is the engine). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "common/util.h"
#include "json/jsonx.h"
#include "store.h"
#include "store/store-internal.h"

/* ---- templates ---- */

/* Reads every row of st into a malloc'd array of `elem`-byte records through read(); on an error
 * the records read so far are cleared (clear may be NULL) and the array freed. */
static int sq_read_rows(struct store *s, sqlite3_stmt *st, size_t elem,
			int (*read)(sqlite3_stmt *st, void *rec), void (*clear)(void *rec),
			void **out, size_t *n)
{
	char *arr = NULL;
	size_t len = 0, cap = 0;
	int r;
	while ((r = sq_step(s, st)) > 0) {
		if (array_reserve((void **)&arr, &cap, len + 1, elem) < 0) {
			r = -ENOMEM;
			break;
		}
		memset(arr + len * elem, 0, elem);
		r = read(st, arr + len * elem);
		if (r < 0)
			break;
		len++;
	}
	if (r < 0) {
		for (size_t i = 0; clear && i < len; i++)
			clear(arr + i * elem);
		free(arr);
		return r;
	}
	*out = arr;
	*n = len;
	return 0;
}

static int read_template(sqlite3_stmt *st, struct template_rec *t)
{
	memset(t, 0, sizeof(*t));
	sq_col_copy(st, 0, t->id, sizeof(t->id));
	sq_col_copy(st, 1, t->alias, sizeof(t->alias));
	int r = sq_col_json(st, 2, JSON_ARRAY, &t->layers);
	if (r < 0)
		return r;
	t->cpu_count = (unsigned)sqlite3_column_int64(st, 3);
	t->memory_mb = (unsigned)sqlite3_column_int64(st, 4);
	t->disk_mb = (unsigned)sqlite3_column_int64(st, 5);
	sq_col_copy(st, 6, t->envd_version, sizeof(t->envd_version));
	sq_col_copy(st, 7, t->status, sizeof(t->status));
	t->created_ms = sqlite3_column_int64(st, 8);
	r = sq_col_json(st, 9, JSON_OBJECT, &t->config);
	if (r < 0)
		template_rec_clear(t);
	return r;
}

int store_template_put(struct store *s, const struct template_rec *t)
{
	_cleanup_free_ char *layers = NULL, *config = NULL;
	int r;

	if (!s || !t || !sq_fits(t->id, sizeof(t->id)) || !*t->id ||
	    !sq_fits(t->alias, sizeof(t->alias)) ||
	    !sq_fits(t->envd_version, sizeof(t->envd_version)) ||
	    !sq_fits(t->status, sizeof(t->status)) || !sq_is_string_array(t->layers))
		return -EINVAL;
	r = sq_json_text(t->layers, JSON_ARRAY, &layers);
	if (r >= 0)
		r = sq_json_text(t->config, JSON_OBJECT, &config);
	if (r < 0)
		return r;

	STORE_LOCKED(s);
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	r = sq_stmt_get(s, ST_TPL_PUT, &st);
	if (r < 0)
		return r;
	sq_bind_text(st, 1, t->id);
	sq_bind_text(st, 2, t->alias);
	sq_bind_text(st, 3, layers);
	sqlite3_bind_int64(st, 4, t->cpu_count);
	sqlite3_bind_int64(st, 5, t->memory_mb);
	sqlite3_bind_int64(st, 6, t->disk_mb);
	sq_bind_text(st, 7, t->envd_version);
	sq_bind_text(st, 8, t->status);
	sqlite3_bind_int64(st, 9, t->created_ms ? t->created_ms : sq_now_ms());
	sq_bind_text(st, 10, config);
	r = sq_step(s, st);
	return r < 0 ? r : 0;
}

int store_template_get(struct store *s, const char *id_or_alias, struct template_rec *out)
{
	struct template_rec t;
	int r;

	if (!s || isempty(id_or_alias) || !out)
		return -EINVAL;
	STORE_LOCKED(s);
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	r = sq_stmt_get(s, ST_TPL_GET, &st);
	if (r < 0)
		return r;
	sq_bind_text(st, 1, id_or_alias);
	r = sq_step(s, st);
	if (r <= 0)
		return r < 0 ? r : -ENOENT;
	r = read_template(st, &t);
	if (r < 0)
		return r;
	*out = t;
	return 0;
}

static int read_template_row(sqlite3_stmt *st, void *rec)
{
	return read_template(st, rec);
}

static void template_rec_clear_row(void *rec)
{
	template_rec_clear(rec);
}

int store_template_list(struct store *s, struct template_rec **out, size_t *n)
{
	if (!s || !out || !n)
		return -EINVAL;
	STORE_LOCKED(s);
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = sq_stmt_get(s, ST_TPL_LIST, &st);
	if (r < 0)
		return r;
	return sq_read_rows(s, st, sizeof(**out), read_template_row, template_rec_clear_row,
			    (void **)out, n);
}

int store_template_delete(struct store *s, const char *id_or_alias)
{
	if (!s || isempty(id_or_alias))
		return -EINVAL;
	STORE_LOCKED(s);
	return sq_delete_one(s, ST_TPL_DELETE, id_or_alias);
}

/* ---- template builds and tags ---- */

static int read_build(sqlite3_stmt *st, struct build_rec *b)
{
	memset(b, 0, sizeof(*b));
	sq_col_copy(st, 0, b->id, sizeof(b->id));
	sq_col_copy(st, 1, b->template_id, sizeof(b->template_id));
	sq_col_copy(st, 2, b->status, sizeof(b->status));
	b->created_ms = sqlite3_column_int64(st, 4);
	b->finished_ms = sqlite3_column_int64(st, 5);
	return sq_col_json(st, 3, JSON_OBJECT, &b->data);
}

int store_build_put(struct store *s, const struct build_rec *b)
{
	_cleanup_free_ char *data = NULL;
	if (!s || !b || !sq_fits(b->id, sizeof(b->id)) || !*b->id ||
	    !sq_fits(b->template_id, sizeof(b->template_id)) ||
	    !sq_fits(b->status, sizeof(b->status)))
		return -EINVAL;
	int r = sq_json_text(b->data, JSON_OBJECT, &data);
	if (r < 0)
		return r;
	STORE_LOCKED(s);
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	r = sq_stmt_get(s, ST_BUILD_PUT, &st);
	if (r < 0)
		return r;
	sq_bind_text(st, 1, b->id);
	sq_bind_text(st, 2, b->template_id);
	sq_bind_text(st, 3, b->status);
	sq_bind_text(st, 4, data);
	sqlite3_bind_int64(st, 5, b->created_ms ? b->created_ms : sq_now_ms());
	sqlite3_bind_int64(st, 6, b->finished_ms);
	r = sq_step(s, st);
	return r < 0 ? r : 0;
}

int store_build_get(struct store *s, const char *id, struct build_rec *out)
{
	if (!s || isempty(id) || !out)
		return -EINVAL;
	STORE_LOCKED(s);
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = sq_stmt_get(s, ST_BUILD_GET, &st);
	if (r < 0)
		return r;
	sq_bind_text(st, 1, id);
	r = sq_step(s, st);
	if (r <= 0)
		return r < 0 ? r : -ENOENT;
	return read_build(st, out);
}

static int read_build_row(sqlite3_stmt *st, void *rec)
{
	return read_build(st, rec);
}

static void build_rec_clear_row(void *rec)
{
	build_rec_clear(rec);
}

int store_build_list(struct store *s, const char *template_id, struct build_rec **out, size_t *n)
{
	if (!s || isempty(template_id) || !out || !n)
		return -EINVAL;
	STORE_LOCKED(s);
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = sq_stmt_get(s, ST_BUILD_LIST, &st);
	if (r < 0)
		return r;
	sq_bind_text(st, 1, template_id);
	return sq_read_rows(s, st, sizeof(**out), read_build_row, build_rec_clear_row, (void **)out,
			    n);
}

int store_build_fail_unfinished(struct store *s, const char *message)
{
	if (!s || !message)
		return -EINVAL;
	STORE_LOCKED(s);
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = sq_stmt_get(s, ST_BUILD_FAIL_UNFINISHED, &st);
	if (r < 0)
		return r;
	sq_bind_text(st, 1, message);
	sqlite3_bind_int64(st, 2, sq_now_ms());
	r = sq_step(s, st);
	return r < 0 ? r : sqlite3_changes(s->db);
}

int store_tag_put(struct store *s, const char *template_id, const char *tag, const char *build_id)
{
	if (!s || isempty(template_id) || isempty(build_id) ||
	    !sq_fits(tag, sizeof(((struct tag_rec *)0)->tag)) || !*tag)
		return -EINVAL;
	STORE_LOCKED(s);
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = sq_stmt_get(s, ST_TAG_PUT, &st);
	if (r < 0)
		return r;
	sq_bind_text(st, 1, template_id);
	sq_bind_text(st, 2, tag);
	sq_bind_text(st, 3, build_id);
	sqlite3_bind_int64(st, 4, sq_now_ms());
	r = sq_step(s, st);
	return r < 0 ? r : 0;
}

int store_tag_get(struct store *s, const char *template_id, const char *tag, char build_id[40])
{
	if (!s || isempty(template_id) || isempty(tag))
		return -EINVAL;
	STORE_LOCKED(s);
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = sq_stmt_get(s, ST_TAG_GET, &st);
	if (r < 0)
		return r;
	sq_bind_text(st, 1, template_id);
	sq_bind_text(st, 2, tag);
	r = sq_step(s, st);
	if (r <= 0)
		return r < 0 ? r : -ENOENT;
	sq_col_copy(st, 0, build_id, 40);
	return 0;
}

int store_tag_delete(struct store *s, const char *template_id, const char *tag)
{
	if (!s || isempty(template_id) || isempty(tag))
		return -EINVAL;
	STORE_LOCKED(s);
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = sq_stmt_get(s, ST_TAG_DELETE, &st);
	if (r < 0)
		return r;
	sq_bind_text(st, 1, template_id);
	sq_bind_text(st, 2, tag);
	r = sq_step(s, st);
	if (r < 0)
		return r;
	return sqlite3_changes(s->db) > 0 ? 0 : -ENOENT;
}

static int read_tag_row(sqlite3_stmt *st, void *rec)
{
	struct tag_rec *t = rec;
	sq_col_copy(st, 0, t->tag, sizeof(t->tag));
	sq_col_copy(st, 1, t->build_id, sizeof(t->build_id));
	t->created_ms = sqlite3_column_int64(st, 2);
	return 0;
}

int store_tag_list(struct store *s, const char *template_id, struct tag_rec **out, size_t *n)
{
	if (!s || isempty(template_id) || !out || !n)
		return -EINVAL;
	STORE_LOCKED(s);
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = sq_stmt_get(s, ST_TAG_LIST, &st);
	if (r < 0)
		return r;
	sq_bind_text(st, 1, template_id);
	return sq_read_rows(s, st, sizeof(**out), read_tag_row, NULL, (void **)out, n);
}
