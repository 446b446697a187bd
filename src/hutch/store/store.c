/*
 * The SQLite engine of the store: one connection in WAL mode with synchronous=FULL, guarded by
 * one mutex, with prepared statements kept for the life of the connection. Every write is its
 * own transaction (or one explicit transaction when it touches several tables), so a call that
 * returned 0 has reached the WAL and its fsync.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/random.h>
#include <sys/stat.h>
#include "common/log.h"
#include "common/util.h"
#include "json/jsonx.h"
#include "store.h"
#include "store/store-internal.h"
#include "store/store-migrations.h"

#define BUSY_TIMEOUT_MS	   5000
#define KEY_TOUCH_EVERY_MS 60000
#define LIST_LIMIT_MAX	   1000
#define CURSOR_MAX	   256

#define KEY_COLS "id, name, mask, created_ms, last_used_ms"
#define TPL_COLS                                                                               \
	"id, alias, layers, cpu_count, memory_mb, disk_mb, envd_version, status, created_ms, " \
	"config"
#define BUILD_COLS "id, template_id, status, data, created_ms, finished_ms"
#define SBX_COLS                                                                                   \
	"id, template_id, alias, key_id, state, started_ms, end_ms, cpu_count, memory_mb, "        \
	"disk_mb, envd_version, metadata, env_vars, extra, allow_internet, auto_pause, net_slot, " \
	"uid_base"

/*
 * The listing filter, shared by both orders. ?1..?4 are the state names wanted (NULL for the
 * others); ?7/?8 the cursor's (started_ms, id); ?11 set: only sandboxes created with a key.
 * Metadata pairs come in as a JSON object in ?9 and must each have a matching row in
 * sandbox_metadata: json_each gives keys verbatim, so keys with dots or quotes need no path
 * quoting.
 */
#define SBX_LIST_WHERE                                                                            \
	" FROM sandboxes AS s WHERE state IN (?1, ?2, ?3, ?4)"                                    \
	" AND (?5 IS NULL OR template_id = ?5) AND started_ms > ?6 AND (?11 = 0 OR key_id != '')" \
	" AND (?9 IS NULL OR NOT EXISTS (SELECT 1 FROM json_each(?9) AS f WHERE NOT EXISTS"       \
	" (SELECT 1 FROM sandbox_metadata AS m"                                                   \
	"  WHERE m.sandbox_id = s.id AND m.key = f.key AND m.value = f.value)))"

static const char *const stmt_sql[_ST_MAX] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_KEY_INSERT] = "INSERT INTO api_keys (id, name, hash, mask, created_ms, last_used_ms)"
			  " VALUES (?1, ?2, ?3, ?4, ?5, 0)",
	[ST_KEY_BY_HASH] = "SELECT " KEY_COLS " FROM api_keys WHERE hash = ?1",
	[ST_KEY_TOUCH] = "UPDATE api_keys SET last_used_ms = ?2 WHERE id = ?1",
	[ST_KEY_LIST] = "SELECT " KEY_COLS " FROM api_keys ORDER BY created_ms, id",
	[ST_KEY_DELETE_ID] = "DELETE FROM api_keys WHERE id = ?1",
	[ST_KEY_DELETE_NAME] = "DELETE FROM api_keys WHERE name = ?1 AND name <> ''",
	[ST_KEY_COUNT] = "SELECT count(*) FROM api_keys",
	[ST_TPL_PUT] = "INSERT INTO templates (" TPL_COLS ")"
		       " VALUES (?1, NULLIF(?2, ''), ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
		       " ON CONFLICT (id) DO UPDATE SET alias = excluded.alias,"
		       " layers = excluded.layers, cpu_count = excluded.cpu_count,"
		       " memory_mb = excluded.memory_mb, disk_mb = excluded.disk_mb,"
		       " envd_version = excluded.envd_version, status = excluded.status,"
		       " created_ms = excluded.created_ms, config = excluded.config",
	[ST_TPL_GET] = "SELECT " TPL_COLS " FROM templates WHERE id = ?1 OR alias = ?1"
		       " ORDER BY id = ?1 DESC LIMIT 1",
	[ST_TPL_LIST] = "SELECT " TPL_COLS " FROM templates ORDER BY created_ms, id",
	[ST_TPL_DELETE] = "DELETE FROM templates WHERE id = (SELECT id FROM templates"
			  " WHERE id = ?1 OR alias = ?1 ORDER BY id = ?1 DESC LIMIT 1)",
	[ST_BUILD_PUT] =
	    "INSERT INTO template_builds (" BUILD_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
	    " ON CONFLICT (id) DO UPDATE SET status = excluded.status,"
	    " data = excluded.data, finished_ms = excluded.finished_ms",
	[ST_BUILD_GET] = "SELECT " BUILD_COLS " FROM template_builds WHERE id = ?1",
	[ST_BUILD_LIST] = "SELECT " BUILD_COLS " FROM template_builds WHERE template_id = ?1"
			  " ORDER BY created_ms, id",
	[ST_BUILD_FAIL_UNFINISHED] =
	    "UPDATE template_builds SET status = 'error', finished_ms = ?2,"
	    " data = json_set(data, '$.reason', json_object('message', ?1))"
	    " WHERE status IN ('waiting', 'building')",
	[ST_TAG_PUT] = "INSERT INTO template_tags (template_id, tag, build_id, created_ms)"
		       " VALUES (?1, ?2, ?3, ?4) ON CONFLICT (template_id, tag) DO UPDATE SET"
		       " build_id = excluded.build_id, created_ms = excluded.created_ms",
	[ST_TAG_GET] = "SELECT build_id FROM template_tags WHERE template_id = ?1 AND tag = ?2",
	[ST_TAG_DELETE] = "DELETE FROM template_tags WHERE template_id = ?1 AND tag = ?2",
	[ST_TAG_LIST] = "SELECT tag, build_id, created_ms FROM template_tags"
			" WHERE template_id = ?1 ORDER BY created_ms, tag",
	[ST_SBX_INSERT] = "INSERT INTO sandboxes (" SBX_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6,"
			  " ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
	[ST_SBX_UPDATE] = "UPDATE sandboxes SET template_id = ?2, alias = ?3, key_id = ?4,"
			  " state = ?5, started_ms = ?6, end_ms = ?7, cpu_count = ?8,"
			  " memory_mb = ?9, disk_mb = ?10, envd_version = ?11, metadata = ?12,"
			  " env_vars = ?13, extra = ?14, allow_internet = ?15, auto_pause = ?16,"
			  " net_slot = ?17, uid_base = ?18 WHERE id = ?1",
	[ST_META_CLEAR] = "DELETE FROM sandbox_metadata WHERE sandbox_id = ?1",
	[ST_META_INSERT] =
	    "INSERT INTO sandbox_metadata (sandbox_id, key, value) VALUES (?1, ?2, ?3)",
	[ST_SBX_GET] = "SELECT " SBX_COLS " FROM sandboxes WHERE id = ?1",
	[ST_SBX_STATE] = "UPDATE sandboxes SET state = ?2 WHERE id = ?1",
	[ST_SBX_END] = "UPDATE sandboxes SET end_ms = CASE WHEN ?3 THEN max(end_ms, ?2) ELSE ?2 END"
		       " WHERE id = ?1 RETURNING end_ms",
	[ST_SBX_DELETE] = "DELETE FROM sandboxes WHERE id = ?1",
	[ST_SBX_LIST_ASC] =
	    "SELECT " SBX_COLS SBX_LIST_WHERE " AND (?7 IS NULL OR (started_ms, id) > (?7, ?8))"
	    " ORDER BY started_ms, id LIMIT ?10",
	[ST_SBX_LIST_DESC] =
	    "SELECT " SBX_COLS SBX_LIST_WHERE " AND (?7 IS NULL OR (started_ms, id) < (?7, ?8))"
	    " ORDER BY started_ms DESC, id DESC LIMIT ?10",
	[ST_SBX_EXPIRED] = "SELECT id FROM sandboxes WHERE state = 'running' AND end_ms <= ?1"
			   " ORDER BY end_ms, id",
	[ST_SBX_COUNT] = "SELECT count(*) FROM sandboxes WHERE state IN (?1, ?2, ?3, ?4)",
	[ST_SBX_SLOTS] = "SELECT net_slot, uid_base FROM sandboxes ORDER BY id",
	[ST_SECRET_INSERT] = "INSERT OR IGNORE INTO secrets (name, value) VALUES (?1, ?2)",
	[ST_SECRET_GET] = "SELECT value FROM secrets WHERE name = ?1",
};

static const char *const state_names[] = {
	[SANDBOX_STARTING] = "starting",
	[SANDBOX_RUNNING] = "running",
	[SANDBOX_PAUSED] = "paused",
	[SANDBOX_STOPPING] = "stopping",
};

const char *sandbox_state_name(enum sandbox_state st)
{
	if ((unsigned)st >= ELEMENTSOF(state_names))
		return NULL;
	return state_names[st];
}

int sandbox_state_parse(const char *s, enum sandbox_state *out)
{
	for (size_t i = 0; s && i < ELEMENTSOF(state_names); i++)
		if (streq(s, state_names[i])) {
			if (out)
				*out = (enum sandbox_state)i;
			return 0;
		}
	return -EINVAL;
}

void sandbox_rec_clear(struct sandbox_rec *r)
{
	if (!r)
		return;
	json_decref(r->metadata);
	json_decref(r->env_vars);
	json_decref(r->extra);
	r->metadata = r->env_vars = r->extra = NULL;
}

void template_rec_clear(struct template_rec *t)
{
	if (!t)
		return;
	json_decref(t->layers);
	json_decref(t->config);
	t->layers = t->config = NULL;
}

void build_rec_clear(struct build_rec *b)
{
	if (!b)
		return;
	json_decref(b->data);
	b->data = NULL;
}

/* ---- plumbing ---- */

int64_t sq_now_ms(void)
{
	return (int64_t)(now_realtime_usec() / 1000);
}

/* A string that is NULL-free and fits a field of `size` bytes with its NUL. */
bool sq_fits(const char *str, size_t size)
{
	return str && strnlen(str, size) < size;
}

/* Like sq_fits(), NULL reading as "". */
bool sq_fits_opt(const char *str, size_t size)
{
	return !str || sq_fits(str, size);
}

static int sql_errno(int rc)
{
	switch (rc) {
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_PRIMARYKEY:
		return -EEXIST;
	}
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_CONSTRAINT:
	case SQLITE_TOOBIG:
	case SQLITE_MISMATCH:
	case SQLITE_RANGE:
		return -EINVAL;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	default:
		return -EIO;
	}
}

static int sql_fail(struct store *s, int rc, const char *what)
{
	int r = sql_errno(rc);
	if (r == 0)
		r = -EIO;
	return log_debug_errno(r, "store: %s: %s (%d)", what, sqlite3_errmsg(s->db), rc);
}

struct store *store_lock(struct store *s)
{
	pthread_mutex_lock(&s->lock);
	return s;
}

void store_unlockp(struct store **s)
{
	if (*s)
		pthread_mutex_unlock(&(*s)->lock);
}

void stmt_resetp(sqlite3_stmt **st)
{
	if (*st) {
		sqlite3_reset(*st);
		sqlite3_clear_bindings(*st);
	}
}

/* A cached prepared statement; the caller holds the lock and resets it (_cleanup_stmt_). */
int sq_stmt_get(struct store *s, enum stmt_id id, sqlite3_stmt **out)
{
	if (!s->stmt[id]) {
		int rc = sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
					    &s->stmt[id], NULL);
		if (rc != SQLITE_OK)
			return sql_fail(s, rc, stmt_sql[id]);
	}
	*out = s->stmt[id];
	return 0;
}

/* Steps once: 1 for a row, 0 when done, -errno on failure. */
int sq_step(struct store *s, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return sql_fail(s, rc, sqlite3_sql(st));
}

/* Runs a statement without parameters to completion. */
static int exec_stmt(struct store *s, enum stmt_id id)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = sq_stmt_get(s, id, &st);
	if (r < 0)
		return r;
	r = sq_step(s, st);
	return r < 0 ? r : 0;
}

static int txn_begin(struct store *s)
{
	return exec_stmt(s, ST_BEGIN);
}

/* Commits when r >= 0, rolls back otherwise; returns r or the commit's error. */
static int txn_end(struct store *s, int r)
{
	if (r >= 0) {
		int c = exec_stmt(s, ST_COMMIT);
		if (c == 0)
			return r;
		r = c;
	}
	if (!sqlite3_get_autocommit(s->db))
		(void)exec_stmt(s, ST_ROLLBACK);
	return r;
}

int sq_bind_text(sqlite3_stmt *st, int i, const char *v)
{
	return sqlite3_bind_text(st, i, v ? v : "", -1, SQLITE_STATIC);
}

/* Copies a text column into a fixed field; writes are checked, so truncation never happens. */
void sq_col_copy(sqlite3_stmt *st, int col, char *buf, size_t size)
{
	const unsigned char *t = sqlite3_column_text(st, col);
	size_t len = t ? MIN((size_t)sqlite3_column_bytes(st, col), size - 1) : 0;
	if (len)
		memcpy(buf, t, len);
	buf[len] = '\0';
}

int sq_col_json(sqlite3_stmt *st, int col, json_type type, json_t **out)
{
	const char *t = (const char *)sqlite3_column_text(st, col);
	json_t *j = t ? json_loadb(t, (size_t)sqlite3_column_bytes(st, col), 0, NULL) : NULL;
	if (!j || json_typeof(j) != type) {
		json_decref(j);
		return log_debug_errno(-EIO, "store: column %s holds malformed JSON",
				       sqlite3_column_name(st, col));
	}
	*out = j;
	return 0;
}

/* JSON text for a column: NULL reads as the empty value of its type. Caller frees. */
int sq_json_text(const json_t *j, json_type type, char **out)
{
	if (!j) {
		*out = strdup(type == JSON_ARRAY ? "[]" : "{}");
		return *out ? 0 : -ENOMEM;
	}
	if (json_typeof(j) != type)
		return -EINVAL;
	*out = jsonx_dump(j);
	return *out ? 0 : -ENOMEM;
}

/* An object whose values are all strings (metadata, env vars), or NULL. */
bool sq_is_string_map(const json_t *j)
{
	const char *k;
	json_t *v;
	if (!j)
		return true;
	if (!json_is_object(j))
		return false;
	json_object_foreach ((json_t *)j, k, v)
		if (!json_is_string(v))
			return false;
	return true;
}

bool sq_is_string_array(const json_t *j)
{
	size_t i;
	json_t *v;
	if (!j)
		return true;
	if (!json_is_array(j))
		return false;
	json_array_foreach (j, i, v)
		if (!json_is_string(v))
			return false;
	return true;
}

/* ---- open, migrate, close ---- */

static int pragma_int(struct store *s, const char *sql, int *out)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			*out = sqlite3_column_int(st, 0);
			rc = SQLITE_OK;
		}
	}
	int r = rc == SQLITE_OK ? 0 : sql_fail(s, rc, sql);
	sqlite3_finalize(st);
	return r;
}

static int exec_sql(struct store *s, const char *sql, const char *what)
{
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : sql_fail(s, rc, what);
}

static int set_wal(struct store *s)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	int r = 0;
	if (rc != SQLITE_ROW)
		r = sql_fail(s, rc, "PRAGMA journal_mode");
	else if (strcmp((const char *)sqlite3_column_text(st, 0), "wal") != 0)
		r = log_debug_errno(-EIO, "store: journal mode stays '%s', not WAL",
				    sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return r;
}

static int apply_migrations(struct store *s)
{
	const int latest = (int)ELEMENTSOF(migrations);
	int version = 0;
	char sql[64];
	int r;

	/* Read the version inside the write lock: two processes opening a fresh database at
	 * once must not both apply 0001. */
	r = exec_sql(s, "BEGIN IMMEDIATE", "begin migrations");
	if (r < 0)
		return r;
	r = pragma_int(s, "PRAGMA user_version", &version);
	if (r >= 0 && version > latest) {
		log_error("Database schema version %d is newer than this Hutch supports (%d); "
			  "refusing to open it",
			  version, latest);
		r = -EPROTONOSUPPORT;
	}
	for (int i = version; r >= 0 && i < latest; i++) {
		r = exec_sql(s, migrations[i].sql, migrations[i].name);
		if (r < 0)
			break;
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", migrations[i].version);
		r = exec_sql(s, sql, "PRAGMA user_version");
		if (r >= 0)
			log_debug("store: applied migration %s", migrations[i].name);
	}
	if (r < 0) {
		(void)exec_sql(s, "ROLLBACK", "rollback migrations");
		return r;
	}
	r = exec_sql(s, "COMMIT", "commit migrations");
	if (r < 0)
		return r;
	s->version = MAX(version, latest);
	return 0;
}

struct store *store_close(struct store *s)
{
	if (!s)
		return NULL;
	for (size_t i = 0; i < _ST_MAX; i++)
		sqlite3_finalize(s->stmt[i]);
	sqlite3_close_v2(s->db);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return NULL;
}

static void store_closep(struct store **s)
{
	*s = store_close(*s);
}

int store_open(const char *data_dir, struct store **out)
{
	_cleanup_(store_closep) struct store *s = NULL;
	_cleanup_free_ char *path = NULL;
	int r, rc;

	if (isempty(data_dir) || !out)
		return -EINVAL;
	if (asprintf(&path, "%s/hutch.db", data_dir) < 0)
		return -ENOMEM;
	if (mkdir(data_dir, 0700) < 0 && errno != EEXIST)
		return log_debug_errno(negative_errno(), "store: mkdir %s: %m", data_dir);

	/* Create the file ourselves so that it (and the -wal/-shm files SQLite derives from
	 * it) holds key hashes and secrets with mode 0600. */
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return log_debug_errno(negative_errno(), "store: open %s: %m", path);
	/* Closed before SQLite opens the file: closing any fd of a database file drops every
	 * POSIX lock this process holds on it, SQLite's included. */
	close(fd);

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;

	rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		if (!s->db)
			return -ENOMEM;
		return sql_fail(s, rc, path);
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
	sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
	sqlite3_db_config(s->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);

	r = exec_sql(s, "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL", "pragmas");
	if (r < 0)
		return r;
	r = set_wal(s);
	if (r < 0)
		return r;
	r = apply_migrations(s);
	if (r < 0)
		return r;

	*out = TAKE_PTR(s);
	return 0;
}

int store_schema_version(struct store *s)
{
	return s ? s->version : -EINVAL;
}

/* ---- API keys ---- */

static void read_key(sqlite3_stmt *st, struct api_key *k)
{
	memset(k, 0, sizeof(*k));
	sq_col_copy(st, 0, k->id, sizeof(k->id));
	sq_col_copy(st, 1, k->name, sizeof(k->name));
	sq_col_copy(st, 2, k->mask, sizeof(k->mask));
	k->created_ms = sqlite3_column_int64(st, 3);
	k->last_used_ms = sqlite3_column_int64(st, 4);
}

static int random_bytes(void *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = getrandom((uint8_t *)buf + done, len - done, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		done += (size_t)n;
	}
	return 0;
}

int store_key_create(struct store *s, const char *name, const uint8_t hash[32], const char *mask,
		     struct api_key *out)
{
	struct api_key k = { 0 };
	uint8_t raw[8];
	int r;

	if (!s || !hash || !sq_fits_opt(name, sizeof(k.name)) || !sq_fits_opt(mask, sizeof(k.mask)))
		return -EINVAL;
	r = random_bytes(raw, sizeof(raw));
	if (r < 0)
		return r;
	memcpy(k.id, "key_", 4);
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(k.id + 4 + 2 * i, 3, "%02x", raw[i]);
	snprintf(k.name, sizeof(k.name), "%s", name ? name : "");
	snprintf(k.mask, sizeof(k.mask), "%s", mask ? mask : "");
	k.created_ms = sq_now_ms();

	STORE_LOCKED(s);
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	r = sq_stmt_get(s, ST_KEY_INSERT, &st);
	if (r < 0)
		return r;
	sq_bind_text(st, 1, k.id);
	sq_bind_text(st, 2, k.name);
	sqlite3_bind_blob(st, 3, hash, 32, SQLITE_STATIC);
	sq_bind_text(st, 4, k.mask);
	sqlite3_bind_int64(st, 5, k.created_ms);
	r = sq_step(s, st);
	if (r < 0)
		return r;
	if (out)
		*out = k;
	return 0;
}

static int key_touch(struct store *s, struct api_key *k)
{
	int64_t now = sq_now_ms();
	if (k->last_used_ms && now - k->last_used_ms < KEY_TOUCH_EVERY_MS)
		return 0;

	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = sq_stmt_get(s, ST_KEY_TOUCH, &st);
	if (r < 0)
		return r;
	sq_bind_text(st, 1, k->id);
	sqlite3_bind_int64(st, 2, now);
	r = sq_step(s, st);
	if (r < 0)
		return r;
	k->last_used_ms = now;
	return 0;
}

int store_key_lookup(struct store *s, const uint8_t hash[32], struct api_key *out)
{
	struct api_key k;
	int r;

	if (!s || !hash)
		return -EINVAL;
	STORE_LOCKED(s);
	{
		_cleanup_stmt_ sqlite3_stmt *st = NULL;
		r = sq_stmt_get(s, ST_KEY_BY_HASH, &st);
		if (r < 0)
			return r;
		sqlite3_bind_blob(st, 1, hash, 32, SQLITE_STATIC);
		r = sq_step(s, st);
		if (r <= 0)
			return r < 0 ? r : -ENOENT;
		read_key(st, &k);
	}
	/* The key is valid whether or not its last-used time could be recorded. */
	r = key_touch(s, &k);
	if (r < 0)
		log_debug_errno(r, "store: recording use of %s: %m", k.id);
	if (out)
		*out = k;
	return 0;
}

int store_key_list(struct store *s, struct api_key **out, size_t *n)
{
	_cleanup_free_ struct api_key *arr = NULL;
	size_t len = 0, cap = 0;
	int r;

	if (!s || !out || !n)
		return -EINVAL;
	STORE_LOCKED(s);
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	r = sq_stmt_get(s, ST_KEY_LIST, &st);
	if (r < 0)
		return r;
	while ((r = sq_step(s, st)) > 0) {
		if (ARRAY_RESERVE(arr, cap, len + 1) < 0)
			return -ENOMEM;
		read_key(st, &arr[len++]);
	}
	if (r < 0)
		return r;
	*out = TAKE_PTR(arr);
	*n = len;
	return 0;
}

int sq_delete_one(struct store *s, enum stmt_id id, const char *arg)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = sq_stmt_get(s, id, &st);
	if (r < 0)
		return r;
	sq_bind_text(st, 1, arg);
	r = sq_step(s, st);
	if (r < 0)
		return r;
	return sqlite3_changes(s->db) > 0 ? 0 : -ENOENT;
}

int store_key_delete(struct store *s, const char *id_or_name)
{
	if (!s || isempty(id_or_name))
		return -EINVAL;
	STORE_LOCKED(s);
	int r = sq_delete_one(s, ST_KEY_DELETE_ID, id_or_name);
	if (r == -ENOENT)
		r = sq_delete_one(s, ST_KEY_DELETE_NAME, id_or_name);
	return r;
}

static int count_stmt(struct store *s, sqlite3_stmt *st)
{
	int r = sq_step(s, st);
	if (r <= 0)
		return r < 0 ? r : -EIO;
	int64_t c = sqlite3_column_int64(st, 0);
	return c > INT32_MAX ? INT32_MAX : (int)c;
}

int store_key_count(struct store *s)
{
	if (!s)
		return -EINVAL;
	STORE_LOCKED(s);
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = sq_stmt_get(s, ST_KEY_COUNT, &st);
	if (r < 0)
		return r;
	return count_stmt(s, st);
}

/* ---- sandboxes ---- */

/* The array of sandbox records handed out by list, freed on error paths. */
struct sandbox_vec {
	struct sandbox_rec *v;
	size_t n, cap;
};

static void sandbox_vec_done(struct sandbox_vec *vec)
{
	for (size_t i = 0; i < vec->n; i++)
		sandbox_rec_clear(&vec->v[i]);
	free(vec->v);
	*vec = (struct sandbox_vec){ 0 };
}

static int read_sandbox(sqlite3_stmt *st, struct sandbox_rec *r)
{
	enum sandbox_state state = SANDBOX_STARTING;
	int ret;

	memset(r, 0, sizeof(*r));
	sq_col_copy(st, 0, r->id, sizeof(r->id));
	sq_col_copy(st, 1, r->template_id, sizeof(r->template_id));
	sq_col_copy(st, 2, r->alias, sizeof(r->alias));
	sq_col_copy(st, 3, r->key_id, sizeof(r->key_id));
	(void)sandbox_state_parse((const char *)sqlite3_column_text(st, 4), &state);
	r->state = state;
	r->started_ms = sqlite3_column_int64(st, 5);
	r->end_ms = sqlite3_column_int64(st, 6);
	r->cpu_count = (unsigned)sqlite3_column_int64(st, 7);
	r->memory_mb = (unsigned)sqlite3_column_int64(st, 8);
	r->disk_mb = (unsigned)sqlite3_column_int64(st, 9);
	sq_col_copy(st, 10, r->envd_version, sizeof(r->envd_version));
	ret = sq_col_json(st, 11, JSON_OBJECT, &r->metadata);
	if (ret >= 0)
		ret = sq_col_json(st, 12, JSON_OBJECT, &r->env_vars);
	if (ret >= 0)
		ret = sq_col_json(st, 13, JSON_OBJECT, &r->extra);
	if (ret < 0) {
		sandbox_rec_clear(r);
		return ret;
	}
	r->allow_internet = sqlite3_column_int(st, 14) != 0;
	r->auto_pause = sqlite3_column_int(st, 15) != 0;
	r->net_slot = sqlite3_column_int(st, 16);
	r->uid_base = (uint32_t)sqlite3_column_int64(st, 17);
	return 0;
}

/* JSON texts of a record's three objects, bound as ?12..?14. */
struct sandbox_json {
	char *metadata, *env_vars, *extra;
};

static void sandbox_json_done(struct sandbox_json *j)
{
	free(j->metadata);
	free(j->env_vars);
	free(j->extra);
}

static int sandbox_check(const struct sandbox_rec *r, struct sandbox_json *j)
{
	int ret;

	if (!sq_fits(r->id, sizeof(r->id)) || !*r->id ||
	    !sq_fits(r->template_id, sizeof(r->template_id)) ||
	    !sq_fits(r->alias, sizeof(r->alias)) || !sq_fits(r->key_id, sizeof(r->key_id)) ||
	    !sq_fits(r->envd_version, sizeof(r->envd_version)) || !sandbox_state_name(r->state) ||
	    !sq_is_string_map(r->metadata) || !sq_is_string_map(r->env_vars) ||
	    (r->extra && !json_is_object(r->extra)))
		return -EINVAL;
	ret = sq_json_text(r->metadata, JSON_OBJECT, &j->metadata);
	if (ret >= 0)
		ret = sq_json_text(r->env_vars, JSON_OBJECT, &j->env_vars);
	if (ret >= 0)
		ret = sq_json_text(r->extra, JSON_OBJECT, &j->extra);
	return ret;
}

static void bind_sandbox(sqlite3_stmt *st, const struct sandbox_rec *r,
			 const struct sandbox_json *j)
{
	sq_bind_text(st, 1, r->id);
	sq_bind_text(st, 2, r->template_id);
	sq_bind_text(st, 3, r->alias);
	sq_bind_text(st, 4, r->key_id);
	sq_bind_text(st, 5, sandbox_state_name(r->state));
	sqlite3_bind_int64(st, 6, r->started_ms);
	sqlite3_bind_int64(st, 7, r->end_ms);
	sqlite3_bind_int64(st, 8, r->cpu_count);
	sqlite3_bind_int64(st, 9, r->memory_mb);
	sqlite3_bind_int64(st, 10, r->disk_mb);
	sq_bind_text(st, 11, r->envd_version);
	sq_bind_text(st, 12, j->metadata);
	sq_bind_text(st, 13, j->env_vars);
	sq_bind_text(st, 14, j->extra);
	sqlite3_bind_int(st, 15, r->allow_internet);
	sqlite3_bind_int(st, 16, r->auto_pause);
	sqlite3_bind_int(st, 17, r->net_slot);
	sqlite3_bind_int64(st, 18, r->uid_base);
}

/* Rewrites the sandbox_metadata rows of a sandbox; inside the caller's transaction. */
static int metadata_write(struct store *s, const char *id, const json_t *metadata)
{
	const char *k;
	json_t *v;
	int r;
	{
		_cleanup_stmt_ sqlite3_stmt *st = NULL;
		r = sq_stmt_get(s, ST_META_CLEAR, &st);
		if (r < 0)
			return r;
		sq_bind_text(st, 1, id);
		r = sq_step(s, st);
		if (r < 0)
			return r;
	}
	if (!metadata)
		return 0;
	json_object_foreach ((json_t *)metadata, k, v) {
		_cleanup_stmt_ sqlite3_stmt *st = NULL;
		r = sq_stmt_get(s, ST_META_INSERT, &st);
		if (r < 0)
			return r;
		sq_bind_text(st, 1, id);
		sq_bind_text(st, 2, k);
		sqlite3_bind_text(st, 3, json_string_value(v), (int)json_string_length(v),
				  SQLITE_STATIC);
		r = sq_step(s, st);
		if (r < 0)
			return r;
	}
	return 0;
}

static int sandbox_write(struct store *s, enum stmt_id id, const struct sandbox_rec *rec,
			 const struct sandbox_json *j)
{
	int r;
	{
		_cleanup_stmt_ sqlite3_stmt *st = NULL;
		r = sq_stmt_get(s, id, &st);
		if (r < 0)
			return r;
		bind_sandbox(st, rec, j);
		r = sq_step(s, st);
		if (r < 0)
			return r;
		if (id == ST_SBX_UPDATE && sqlite3_changes(s->db) == 0)
			return -ENOENT;
	}
	return metadata_write(s, rec->id, rec->metadata);
}

static int sandbox_put(struct store *s, enum stmt_id id, const struct sandbox_rec *rec)
{
	_cleanup_(sandbox_json_done) struct sandbox_json j = { 0 };
	int r;

	if (!s || !rec)
		return -EINVAL;
	r = sandbox_check(rec, &j);
	if (r < 0)
		return r;
	STORE_LOCKED(s);
	r = txn_begin(s);
	if (r < 0)
		return r;
	return txn_end(s, sandbox_write(s, id, rec, &j));
}

int store_sandbox_insert(struct store *s, const struct sandbox_rec *r)
{
	return sandbox_put(s, ST_SBX_INSERT, r);
}

int store_sandbox_update(struct store *s, const struct sandbox_rec *r)
{
	return sandbox_put(s, ST_SBX_UPDATE, r);
}

int store_sandbox_get(struct store *s, const char *id, struct sandbox_rec *out)
{
	int r;

	if (!s || isempty(id) || !out)
		return -EINVAL;
	STORE_LOCKED(s);
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	r = sq_stmt_get(s, ST_SBX_GET, &st);
	if (r < 0)
		return r;
	sq_bind_text(st, 1, id);
	r = sq_step(s, st);
	if (r <= 0)
		return r < 0 ? r : -ENOENT;
	return read_sandbox(st, out);
}

int store_sandbox_set_state(struct store *s, const char *id, enum sandbox_state state)
{
	const char *name = sandbox_state_name(state);
	int r;

	if (!s || isempty(id) || !name)
		return -EINVAL;
	STORE_LOCKED(s);
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	r = sq_stmt_get(s, ST_SBX_STATE, &st);
	if (r < 0)
		return r;
	sq_bind_text(st, 1, id);
	sq_bind_text(st, 2, name);
	r = sq_step(s, st);
	if (r < 0)
		return r;
	return sqlite3_changes(s->db) > 0 ? 0 : -ENOENT;
}

int store_sandbox_set_end(struct store *s, const char *id, int64_t *end_ms, bool only_extend)
{
	int r;

	if (!s || isempty(id) || !end_ms)
		return -EINVAL;
	STORE_LOCKED(s);
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	r = sq_stmt_get(s, ST_SBX_END, &st);
	if (r < 0)
		return r;
	sq_bind_text(st, 1, id);
	sqlite3_bind_int64(st, 2, *end_ms);
	sqlite3_bind_int(st, 3, only_extend);
	r = sq_step(s, st);
	if (r <= 0)
		return r < 0 ? r : -ENOENT;
	int64_t stored = sqlite3_column_int64(st, 0);
	/* RETURNING hands the row out before the statement finishes: run it to the end so the
	 * autocommit transaction commits before we report success. */
	r = sq_step(s, st);
	if (r < 0)
		return r;
	*end_ms = stored;
	return 0;
}

int store_sandbox_delete(struct store *s, const char *id)
{
	if (!s || isempty(id))
		return -EINVAL;
	STORE_LOCKED(s);
	return sq_delete_one(s, ST_SBX_DELETE, id);
}

/* Binds the state names selected by a bitmask (0 = all) to ?1..?4. */
static int bind_states(sqlite3_stmt *st, unsigned states)
{
	if (states >> ELEMENTSOF(state_names))
		return -EINVAL;
	for (unsigned i = 0; i < ELEMENTSOF(state_names); i++)
		if (!states || states & (1u << i))
			sq_bind_text(st, (int)i + 1, state_names[i]);
	return 0;
}

/* The cursor is the hex of "started_ms:id": opaque to clients, checked on the way back. */
char *store_cursor_make(const struct sandbox_rec *last)
{
	char plain[96];
	int len = snprintf(plain, sizeof(plain), "%" PRId64 ":%s", last->started_ms, last->id);
	if (len < 0 || (size_t)len >= sizeof(plain))
		return NULL;
	char *hex = malloc(2 * (size_t)len + 1);
	if (!hex)
		return NULL;
	for (int i = 0; i < len; i++)
		snprintf(hex + 2 * i, 3, "%02x", (unsigned char)plain[i]);
	return hex;
}

static int unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int store_cursor_parse(const char *cursor, int64_t *started_ms, char id[40])
{
	char plain[CURSOR_MAX / 2 + 1];
	size_t len = strnlen(cursor, CURSOR_MAX + 1);
	char *colon, *end;

	if (len == 0 || len > CURSOR_MAX || len % 2)
		return -EINVAL;
	for (size_t i = 0; i < len; i += 2) {
		int hi = unhex(cursor[i]), lo = unhex(cursor[i + 1]);
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
			return -EINVAL;
		plain[i / 2] = (char)(hi << 4 | lo);
	}
	plain[len / 2] = '\0';
	colon = strchr(plain, ':');
	if (!colon || colon == plain || !sq_fits(colon + 1, 40) || !colon[1])
		return -EINVAL;
	*colon = '\0';
	errno = 0;
	long long v = strtoll(plain, &end, 10);
	if (errno || *end || !(plain[0] == '-' || (plain[0] >= '0' && plain[0] <= '9')))
		return -EINVAL;
	*started_ms = v;
	strcpy(id, colon + 1);
	return 0;
}

static int list_bind(sqlite3_stmt *st, const struct sandbox_filter *f, const char *metadata,
		     int64_t cursor_ms, const char *cursor_id)
{
	int r = bind_states(st, f->states);
	if (r < 0)
		return r;
	if (f->template_id)
		sq_bind_text(st, 5, f->template_id);
	sqlite3_bind_int64(st, 6, f->started_after_ms ? f->started_after_ms : INT64_MIN);
	if (cursor_id) {
		sqlite3_bind_int64(st, 7, cursor_ms);
		sq_bind_text(st, 8, cursor_id);
	}
	if (metadata)
		sq_bind_text(st, 9, metadata);
	/* One row more than asked tells whether there is a next page. */
	sqlite3_bind_int64(st, 10, (int64_t)f->limit + 1);
	sqlite3_bind_int(st, 11, f->keyed_only);
	return 0;
}

int store_sandbox_list(struct store *s, const struct sandbox_filter *f, struct sandbox_rec **out,
		       size_t *n, char **next)
{
	_cleanup_(sandbox_vec_done) struct sandbox_vec vec = { 0 };
	_cleanup_free_ char *metadata = NULL;
	char cursor_id[40] = "";
	int64_t cursor_ms = 0;
	int r;

	if (!s || !f || !out || !n || !next)
		return -EINVAL;
	*next = NULL;
	if (f->limit < 1 || f->limit > LIST_LIMIT_MAX || !sq_is_string_map(f->metadata))
		return -EINVAL;
	if (f->cursor) {
		r = store_cursor_parse(f->cursor, &cursor_ms, cursor_id);
		if (r < 0)
			return r;
	}
	if (f->metadata && json_object_size(f->metadata) > 0) {
		metadata = jsonx_dump(f->metadata);
		if (!metadata)
			return -ENOMEM;
	}

	STORE_LOCKED(s);
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	r = sq_stmt_get(s, f->order_desc ? ST_SBX_LIST_DESC : ST_SBX_LIST_ASC, &st);
	if (r < 0)
		return r;
	r = list_bind(st, f, metadata, cursor_ms, f->cursor ? cursor_id : NULL);
	if (r < 0)
		return r;
	bool more = false;
	while ((r = sq_step(s, st)) > 0) {
		if (vec.n == f->limit) {
			more = true;
			break;
		}
		if (vec.n == vec.cap) {
			size_t cap = vec.cap ? 2 * vec.cap : 16;
			struct sandbox_rec *a =
			    reallocarray(vec.v, MIN(cap, (size_t)f->limit), sizeof(*a));
			if (!a)
				return -ENOMEM;
			vec.v = a;
			vec.cap = MIN(cap, (size_t)f->limit);
		}
		r = read_sandbox(st, &vec.v[vec.n]);
		if (r < 0)
			return r;
		vec.n++;
	}
	if (r < 0)
		return r;
	if (more) {
		*next = store_cursor_make(&vec.v[vec.n - 1]);
		if (!*next)
			return -ENOMEM;
	}
	*out = TAKE_PTR(vec.v);
	*n = vec.n;
	vec.n = vec.cap = 0;
	return 0;
}

static void strv_freep(char ***p)
{
	if (*p)
		for (char **i = *p; *i; i++)
			free(*i);
	free(*p);
}

int store_sandbox_expired(struct store *s, int64_t now, char ***ids, size_t *n)
{
	_cleanup_(strv_freep) char **v = NULL;
	size_t len = 0, cap = 0;
	int r;

	if (!s || !ids || !n)
		return -EINVAL;
	STORE_LOCKED(s);
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	r = sq_stmt_get(s, ST_SBX_EXPIRED, &st);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, now);
	while ((r = sq_step(s, st)) > 0) {
		/* One spare slot keeps the array NULL-terminated for strv_freep. */
		if (ARRAY_RESERVE(v, cap, len + 2) < 0)
			return -ENOMEM;
		v[len] = strdup((const char *)sqlite3_column_text(st, 0));
		if (!v[len])
			return -ENOMEM;
		v[++len] = NULL;
	}
	if (r < 0)
		return r;
	*ids = TAKE_PTR(v);
	*n = len;
	return 0;
}

int store_sandbox_count(struct store *s, unsigned states)
{
	int r;

	if (!s)
		return -EINVAL;
	STORE_LOCKED(s);
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	r = sq_stmt_get(s, ST_SBX_COUNT, &st);
	if (r < 0)
		return r;
	r = bind_states(st, states);
	if (r < 0)
		return r;
	return count_stmt(s, st);
}

int store_sandbox_slots(struct store *s, int **net_slots, uint32_t **uid_bases, size_t *n)
{
	_cleanup_free_ int *slots = NULL;
	_cleanup_free_ uint32_t *uids = NULL;
	size_t len = 0, cap = 0;
	int r;

	if (!s || !net_slots || !uid_bases || !n)
		return -EINVAL;
	STORE_LOCKED(s);
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	r = sq_stmt_get(s, ST_SBX_SLOTS, &st);
	if (r < 0)
		return r;
	while ((r = sq_step(s, st)) > 0) {
		if (len == cap) {
			cap = cap ? 2 * cap : 64;
			int *a = reallocarray(slots, cap, sizeof(*a));
			if (!a)
				return -ENOMEM;
			slots = a;
			uint32_t *b = reallocarray(uids, cap, sizeof(*b));
			if (!b)
				return -ENOMEM;
			uids = b;
		}
		slots[len] = sqlite3_column_int(st, 0);
		uids[len] = (uint32_t)sqlite3_column_int64(st, 1);
		len++;
	}
	if (r < 0)
		return r;
	*net_slots = TAKE_PTR(slots);
	*uid_bases = TAKE_PTR(uids);
	*n = len;
	return 0;
}

/* ---- secrets ---- */

int store_secret(struct store *s, const char *name, uint8_t out[32])
{
	uint8_t fresh[32];
	int r;

	if (!s || isempty(name) || !sq_fits(name, 128) || !out)
		return -EINVAL;
	r = random_bytes(fresh, sizeof(fresh));
	if (r < 0)
		return r;

	STORE_LOCKED(s);
	{
		/* OR IGNORE: the first secret ever stored under the name wins, even against
		 * another process racing us. */
		_cleanup_stmt_ sqlite3_stmt *st = NULL;
		r = sq_stmt_get(s, ST_SECRET_INSERT, &st);
		if (r >= 0) {
			sq_bind_text(st, 1, name);
			sqlite3_bind_blob(st, 2, fresh, sizeof(fresh), SQLITE_STATIC);
			r = sq_step(s, st);
		}
		explicit_bzero(fresh, sizeof(fresh));
		if (r < 0)
			return r;
	}
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	r = sq_stmt_get(s, ST_SECRET_GET, &st);
	if (r < 0)
		return r;
	sq_bind_text(st, 1, name);
	r = sq_step(s, st);
	if (r <= 0)
		return r < 0 ? r : -EIO;
	if (sqlite3_column_bytes(st, 0) != 32)
		return -EIO;
	memcpy(out, sqlite3_column_blob(st, 0), 32);
	return 0;
}
