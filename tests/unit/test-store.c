/* The SQLite store: schema and migrations, keys, templates, sandboxes and their listing filter,
 * secrets, many threads at once, and a writer SIGKILLed mid-way losing nothing it acknowledged. */
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "common/macro.h"
#include "store/store.h"
#include "tap.h"

static char tmpdir[] = "/tmp/test-store-XXXXXX";

static void hash_of(unsigned n, uint8_t h[32])
{
	for (int i = 0; i < 32; i++)
		h[i] = (uint8_t)(n * 31 + (unsigned)i * 7 + (n >> 8));
	memcpy(h, &n, sizeof(n));
}

/* A fresh data dir under tmpdir. */
static const char *data_dir(const char *name)
{
	static char path[256];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	return path;
}

/* Runs one query on the database file with a connection of our own; returns its first column
 * as a malloc'd string (NULL on error). */
static char *raw_query(const char *dir, const char *sql)
{
	char path[512];
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	char *res = NULL;
	snprintf(path, sizeof(path), "%s/hutch.db", dir);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
		int rc = sqlite3_step(st);
		if (rc == SQLITE_ROW)
			res = strdup(sqlite3_column_text(st, 0)
					 ? (const char *)sqlite3_column_text(st, 0)
					 : "(null)");
		else if (rc == SQLITE_DONE)
			res = strdup("(done)");
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return res;
}

static void check_raw(const char *dir, const char *sql, const char *want, const char *what)
{
	char *got = raw_query(dir, sql);
	is_str(got, want, "%s", what);
	free(got);
}

static struct sandbox_rec make_sandbox(const char *id, int64_t started, enum sandbox_state st)
{
	struct sandbox_rec r = { 0 };
	snprintf(r.id, sizeof(r.id), "%s", id);
	snprintf(r.template_id, sizeof(r.template_id), "base");
	snprintf(r.key_id, sizeof(r.key_id), "key_0011223344556677");
	r.state = st;
	r.started_ms = started;
	r.end_ms = started + 300000;
	r.cpu_count = 2;
	r.memory_mb = 512;
	r.disk_mb = 1024;
	snprintf(r.envd_version, sizeof(r.envd_version), "0.2.0");
	r.net_slot = -1;
	return r;
}

static void test_open(void)
{
	struct store *s = NULL;
	struct stat stt;
	const char *dir = data_dir("open");

	is_int(store_open(dir, &s), 0, "store_open creates the data dir and database");
	is_int(store_schema_version(s), 2, "schema version after migrations");
	s = store_close(s);
	ok(s == NULL, "store_close returns NULL");
	ok(stat("/tmp", &stt) == 0, "stat");
	char path[512];
	snprintf(path, sizeof(path), "%s/hutch.db", dir);
	ok(stat(path, &stt) == 0 && (stt.st_mode & 0777) == 0600, "hutch.db has mode 0600");
	check_raw(dir, "PRAGMA journal_mode", "wal", "journal mode is WAL");
	check_raw(dir, "PRAGMA user_version", "2", "user_version records the migrations");

	is_int(store_open(dir, &s), 0, "reopen");
	is_int(store_schema_version(s), 2, "reopen applies nothing twice");
	s = store_close(s);

	/* A database from a newer Hutch is refused and left alone. */
	free(raw_query(dir, "PRAGMA user_version = 99"));
	is_int(store_open(dir, &s), -EPROTONOSUPPORT, "newer schema: -EPROTONOSUPPORT");
	ok(s == NULL, "newer schema: no handle");
	check_raw(dir, "PRAGMA user_version", "99", "newer schema: version untouched");

	/* Something that is not a database. */
	const char *junk = data_dir("junk");
	mkdir(junk, 0700);
	snprintf(path, sizeof(path), "%s/hutch.db", junk);
	FILE *f = fopen(path, "w");
	fputs("this is not an SQLite database, not even close to one.........................."
	      "................................................................................",
	      f);
	fclose(f);
	ok(store_open(junk, &s) < 0 && !s, "a file that is not a database is refused");

	is_int(store_open(NULL, &s), -EINVAL, "store_open(NULL)");
	is_int(store_open("", &s), -EINVAL, "store_open(\"\")");
	is_int(store_open(dir, NULL), -EINVAL, "store_open(dir, NULL)");
	is_int(store_schema_version(NULL), -EINVAL, "store_schema_version(NULL)");
	ok(store_close(NULL) == NULL, "store_close(NULL)");
}

static void test_keys(struct store *s, const char *dir)
{
	struct api_key k = { 0 }, k2 = { 0 }, got = { 0 };
	uint8_t h1[32], h2[32], h3[32];
	hash_of(1, h1);
	hash_of(2, h2);
	hash_of(3, h3);

	is_int(store_key_create(s, "ci", h1, "e2b_1234…abcd", &k), 0, "key create");
	ok(strlen(k.id) == 20 && startswith(k.id, "key_") &&
	       strspn(k.id + 4, "0123456789abcdef") == 16,
	   "key id is key_<16 hex>: %s", k.id);
	is_str(k.name, "ci", "key name");
	is_str(k.mask, "e2b_1234…abcd", "key mask");
	ok(k.created_ms > 1600000000000 && k.last_used_ms == 0, "key times");

	is_int(store_key_lookup(s, h1, &got), 0, "lookup by hash");
	is_str(got.id, k.id, "lookup finds the key");
	ok(got.last_used_ms >= k.created_ms, "lookup records last use");
	is_int(store_key_lookup(s, h2, &got), -ENOENT, "unknown hash: -ENOENT");

	is_int(store_key_create(s, "other", h1, "m", NULL), -EEXIST, "same hash twice: -EEXIST");
	is_int(store_key_create(s, "ci", h2, "m", NULL), -EEXIST, "same name twice: -EEXIST");
	is_int(store_key_create(s, NULL, h2, NULL, &k2), 0, "unnamed key");
	is_int(store_key_create(s, "", h3, "", NULL), 0, "a second unnamed key");
	is_int(store_key_count(s), 3, "key count");

	char *hex = raw_query(dir, "SELECT typeof(hash) || length(hash) FROM api_keys LIMIT 1");
	is_str(hex, "blob32", "keys are stored as 32-byte blobs");
	free(hex);

	struct api_key *list = NULL;
	size_t n = 0;
	is_int(store_key_list(s, &list, &n), 0, "key list");
	ok(n == 3 && list && streq(list[0].id, k.id), "key list holds 3 keys, oldest first");
	free(list);

	is_int(store_key_delete(s, "ci"), 0, "delete by name");
	is_int(store_key_lookup(s, h1, &got), -ENOENT, "deleted key is gone");
	is_int(store_key_delete(s, k2.id), 0, "delete by id");
	is_int(store_key_delete(s, k2.id), -ENOENT, "delete twice: -ENOENT");
	is_int(store_key_delete(s, ""), -EINVAL, "delete \"\": -EINVAL (never every unnamed key)");
	is_int(store_key_count(s), 1, "one key left");

	char longname[300];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	is_int(store_key_create(s, longname, h1, "m", NULL), -EINVAL, "over-long name: -EINVAL");
	longname[127] = '\0';
	is_int(store_key_create(s, longname, h1, "m", NULL), 0, "127-byte name fits");
	is_int(store_key_create(s, "x", NULL, "m", NULL), -EINVAL, "NULL hash: -EINVAL");
	is_int(store_key_create(NULL, "x", h1, "m", NULL), -EINVAL, "NULL store: -EINVAL");
	is_int(store_key_lookup(s, NULL, &got), -EINVAL, "lookup NULL hash: -EINVAL");
	is_int(store_key_list(s, NULL, &n), -EINVAL, "list NULL out: -EINVAL");
	is_int(store_key_delete(s, NULL), -EINVAL, "delete NULL: -EINVAL");
	is_int(store_key_count(NULL), -EINVAL, "count NULL: -EINVAL");
}

static void test_templates(struct store *s)
{
	struct template_rec t = { 0 }, got = { 0 };
	snprintf(t.id, sizeof(t.id), "rki5dems9wqfm4r03t7g");
	snprintf(t.alias, sizeof(t.alias), "base");
	t.layers = json_pack("[ss]", "/data/layers/a", "/data/layers/b");
	t.cpu_count = 2;
	t.memory_mb = 512;
	t.disk_mb = 2048;
	snprintf(t.envd_version, sizeof(t.envd_version), "0.2.0");
	snprintf(t.status, sizeof(t.status), "ready");

	is_int(store_template_put(s, &t), 0, "template put");
	is_int(store_template_get(s, "base", &got), 0, "template get by alias");
	is_str(got.id, t.id, "template id");
	ok(json_equal(got.layers, t.layers), "layers round-trip");
	ok(got.cpu_count == 2 && got.memory_mb == 512 && got.disk_mb == 2048 &&
	       streq(got.status, "ready") && streq(got.envd_version, "0.2.0") && got.created_ms > 0,
	   "template fields round-trip");
	template_rec_clear(&got);
	ok(got.layers == NULL, "template_rec_clear drops layers");

	snprintf(t.status, sizeof(t.status), "error");
	is_int(store_template_put(s, &t), 0, "template put replaces");
	is_int(store_template_get(s, t.id, &got), 0, "template get by id");
	is_str(got.status, "error", "replaced status");
	template_rec_clear(&got);

	struct template_rec t2 = t;
	snprintf(t2.id, sizeof(t2.id), "second");
	t2.layers = NULL;
	is_int(store_template_put(s, &t2), -EEXIST, "alias held by another template: -EEXIST");
	t2.alias[0] = '\0';
	is_int(store_template_put(s, &t2), 0, "template without alias");
	is_int(store_template_get(s, "second", &got), 0, "get it");
	ok(json_is_array(got.layers) && json_array_size(got.layers) == 0 && got.alias[0] == 0,
	   "NULL layers read back as [], no alias as \"\"");
	template_rec_clear(&got);

	struct template_rec *list = NULL;
	size_t n = 0;
	is_int(store_template_list(s, &list, &n), 0, "template list");
	is_int(n, 2, "two templates");
	for (size_t i = 0; i < n; i++)
		template_rec_clear(&list[i]);
	free(list);

	is_int(store_template_delete(s, "base"), 0, "template delete by alias");
	is_int(store_template_get(s, "base", &got), -ENOENT, "deleted template is gone");
	is_int(store_template_delete(s, "base"), -ENOENT, "delete twice: -ENOENT");

	t2.layers = json_pack("[si]", "/a", 3);
	is_int(store_template_put(s, &t2), -EINVAL, "layers that are not strings: -EINVAL");
	json_decref(t2.layers);
	t2.layers = json_object();
	is_int(store_template_put(s, &t2), -EINVAL, "layers that are not an array: -EINVAL");
	json_decref(t2.layers);
	t2.layers = NULL;
	memset(t2.status, 'x', sizeof(t2.status)); /* no NUL */
	is_int(store_template_put(s, &t2), -EINVAL, "unterminated field: -EINVAL");
	is_int(store_template_put(s, NULL), -EINVAL, "put NULL: -EINVAL");
	is_int(store_template_get(s, NULL, &got), -EINVAL, "get NULL: -EINVAL");
	template_rec_clear(NULL);
	json_decref(t.layers);
}

static void test_builds(struct store *s)
{
	struct template_rec t = { 0 }, got = { 0 };
	snprintf(t.id, sizeof(t.id), "tplbuilds");
	snprintf(t.alias, sizeof(t.alias), "my-app");
	snprintf(t.status, sizeof(t.status), "building");
	t.config = json_pack("{s:s, s:{s:s}}", "user", "root", "envVars", "A", "1");
	is_int(store_template_put(s, &t), 0, "template with config");
	is_int(store_template_get(s, "my-app", &got), 0, "get it");
	ok(json_equal(got.config, t.config), "config round-trips");
	template_rec_clear(&got);

	struct build_rec b = { .data = json_pack("{s:[s]}", "layers", "/l/1") }, bg = { 0 };
	snprintf(b.id, sizeof(b.id), "build-1");
	snprintf(b.template_id, sizeof(b.template_id), "tplbuilds");
	snprintf(b.status, sizeof(b.status), "building");
	is_int(store_build_put(s, &b), 0, "build put");
	snprintf(b.template_id, sizeof(b.template_id), "nosuch");
	snprintf(b.id, sizeof(b.id), "build-x");
	ok(store_build_put(s, &b) < 0, "a build of an unknown template is refused");
	snprintf(b.template_id, sizeof(b.template_id), "tplbuilds");
	snprintf(b.id, sizeof(b.id), "build-2");
	snprintf(b.status, sizeof(b.status), "ready");
	is_int(store_build_put(s, &b), 0, "second build");
	snprintf(b.status, sizeof(b.status), "done");
	ok(store_build_put(s, &b) < 0, "an unknown status is refused");
	is_int(store_build_get(s, "build-1", &bg), 0, "build get");
	ok(streq(bg.status, "building") && json_equal(bg.data, b.data) && bg.created_ms > 0,
	   "build fields round-trip");
	build_rec_clear(&bg);
	is_int(store_build_fail_unfinished(s, "daemon restarted"), 1,
	       "one unfinished build failed");
	is_int(store_build_get(s, "build-1", &bg), 0, "get it again");
	ok(streq(bg.status, "error") && bg.finished_ms > 0 &&
	       streq(json_string_value(
			 json_object_get(json_object_get(bg.data, "reason"), "message")),
		     "daemon restarted"),
	   "marked error with the reason");
	build_rec_clear(&bg);
	struct build_rec *bl = NULL;
	size_t n = 0;
	is_int(store_build_list(s, "tplbuilds", &bl, &n), 0, "build list");
	ok(n == 2 && streq(bl[0].id, "build-1") && streq(bl[1].id, "build-2"), "oldest first");
	for (size_t i = 0; i < n; i++)
		build_rec_clear(&bl[i]);
	free(bl);

	char bid[40];
	is_int(store_tag_put(s, "tplbuilds", "v1", "build-1"), 0, "tag put");
	is_int(store_tag_put(s, "tplbuilds", "v1", "build-2"), 0, "tag moved");
	is_int(store_tag_get(s, "tplbuilds", "v1", bid), 0, "tag get");
	is_str(bid, "build-2", "the tag points at the newer build");
	is_int(store_tag_put(s, "tplbuilds", "latest", "build-1"), 0, "second tag");
	struct tag_rec *tl = NULL;
	is_int(store_tag_list(s, "tplbuilds", &tl, &n), 0, "tag list");
	is_int(n, 2, "two tags");
	free(tl);
	is_int(store_tag_delete(s, "tplbuilds", "v1"), 0, "tag delete");
	is_int(store_tag_get(s, "tplbuilds", "v1", bid), -ENOENT, "deleted tag is gone");
	is_int(store_tag_delete(s, "tplbuilds", "v1"), -ENOENT, "delete twice: -ENOENT");

	is_int(store_template_delete(s, "my-app"), 0, "template delete");
	is_int(store_build_get(s, "build-2", &bg), -ENOENT, "its builds went with it");
	is_int(store_tag_get(s, "tplbuilds", "latest", bid), -ENOENT, "and its tags");
	json_decref(b.data);
	json_decref(t.config);
}

static void test_sandboxes(struct store *s, const char *dir)
{
	struct sandbox_rec r = make_sandbox("sbx1", 1000, SANDBOX_RUNNING), got = { 0 };
	r.metadata = json_pack("{ss,ss}", "user", "alice", "a.b\"c", "x'y");
	r.env_vars = json_pack("{ss}", "FOO", "bar");
	r.extra = json_pack("{s{sb}s[i]}", "lifecycle", "autoResume", 1, "ports", 8080);
	r.allow_internet = true;
	r.auto_pause = true;
	r.net_slot = 7;
	r.uid_base = 200000;
	snprintf(r.alias, sizeof(r.alias), "base");

	is_int(store_sandbox_insert(s, &r), 0, "sandbox insert");
	is_int(store_sandbox_insert(s, &r), -EEXIST, "same id twice: -EEXIST");
	is_int(store_sandbox_get(s, "sbx1", &got), 0, "sandbox get");
	ok(streq(got.id, "sbx1") && streq(got.template_id, "base") && streq(got.alias, "base") &&
	       streq(got.key_id, r.key_id) && got.state == SANDBOX_RUNNING &&
	       got.started_ms == 1000 && got.end_ms == 301000 && got.cpu_count == 2 &&
	       got.memory_mb == 512 && got.disk_mb == 1024 && streq(got.envd_version, "0.2.0") &&
	       got.allow_internet && got.auto_pause && got.net_slot == 7 && got.uid_base == 200000,
	   "scalar fields round-trip");
	ok(json_equal(got.metadata, r.metadata) && json_equal(got.env_vars, r.env_vars) &&
	       json_equal(got.extra, r.extra),
	   "JSON fields round-trip");
	sandbox_rec_clear(&got);
	ok(!got.metadata && !got.env_vars && !got.extra, "sandbox_rec_clear drops JSON");
	is_int(store_sandbox_get(s, "nope", &got), -ENOENT, "unknown sandbox: -ENOENT");

	struct sandbox_rec bare = make_sandbox("sbx2", 2000, SANDBOX_PAUSED);
	is_int(store_sandbox_insert(s, &bare), 0, "insert with NULL JSON fields");
	is_int(store_sandbox_get(s, "sbx2", &got), 0, "get it");
	ok(json_is_object(got.metadata) && json_object_size(got.metadata) == 0 &&
	       json_is_object(got.env_vars) && json_is_object(got.extra) && got.net_slot == -1 &&
	       !got.allow_internet,
	   "NULL JSON reads back as {}, never NULL");
	sandbox_rec_clear(&got);

	is_int(store_sandbox_set_state(s, "sbx2", SANDBOX_RUNNING), 0, "set state");
	is_int(store_sandbox_get(s, "sbx2", &got), 0, "get");
	is_int(got.state, SANDBOX_RUNNING, "state stored");
	sandbox_rec_clear(&got);
	is_int(store_sandbox_set_state(s, "nope", SANDBOX_RUNNING), -ENOENT, "set state: -ENOENT");
	is_int(store_sandbox_set_state(s, "sbx2", (enum sandbox_state)42), -EINVAL,
	       "unknown state: -EINVAL");

	int64_t end = 5000;
	is_int(store_sandbox_set_end(s, "sbx2", &end, false), 0, "set end");
	is_int(end, 5000, "end set");
	end = 4000;
	is_int(store_sandbox_set_end(s, "sbx2", &end, true), 0, "extend to an earlier time");
	is_int(end, 5000, "only_extend keeps the later value");
	end = 9000;
	is_int(store_sandbox_set_end(s, "sbx2", &end, true), 0, "extend to a later time");
	is_int(end, 9000, "only_extend takes the later value");
	end = 3000;
	is_int(store_sandbox_set_end(s, "sbx2", &end, false), 0, "shorten");
	is_int(end, 3000, "without only_extend the value is replaced");
	is_int(store_sandbox_set_end(s, "nope", &end, true), -ENOENT, "set end: -ENOENT");

	char **ids = NULL;
	size_t n = 0;
	is_int(store_sandbox_expired(s, 3000, &ids, &n), 0, "expired");
	ok(n == 1 && streq(ids[0], "sbx2"), "expired lists running sandboxes past their end");
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
	is_int(store_sandbox_expired(s, 2999, &ids, &n), 0, "expired, a ms earlier");
	is_int(n, 0, "nothing expired yet");
	free(ids);
	store_sandbox_set_state(s, "sbx2", SANDBOX_PAUSED);
	store_sandbox_expired(s, 1000000, &ids, &n);
	ok(n == 1 && streq(ids[0], "sbx1"), "paused sandboxes never expire");
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);

	is_int(store_sandbox_count(s, 0), 2, "count all");
	is_int(store_sandbox_count(s, 1u << SANDBOX_RUNNING), 1, "count running");
	is_int(store_sandbox_count(s, 1u << SANDBOX_STARTING), 0, "count starting");
	is_int(store_sandbox_count(s, 1u << 9), -EINVAL, "count with an unknown state bit");

	int *slots = NULL;
	uint32_t *uids = NULL;
	is_int(store_sandbox_slots(s, &slots, &uids, &n), 0, "slots");
	ok(n == 2 && slots[0] == 7 && uids[0] == 200000 && slots[1] == -1,
	   "slots and uid bases in use");
	free(slots);
	free(uids);

	/* Update rewrites metadata rows too. */
	json_decref(r.metadata);
	r.metadata = json_pack("{ss}", "user", "bob");
	r.state = SANDBOX_PAUSED;
	is_int(store_sandbox_update(s, &r), 0, "update");
	is_int(store_sandbox_get(s, "sbx1", &got), 0, "get");
	ok(got.state == SANDBOX_PAUSED && json_equal(got.metadata, r.metadata), "update stored");
	sandbox_rec_clear(&got);
	check_raw(dir,
		  "SELECT group_concat(key || '=' || value) FROM sandbox_metadata"
		  " WHERE sandbox_id = 'sbx1'",
		  "user=bob", "update replaced the metadata rows");
	struct sandbox_rec ghost = make_sandbox("ghost", 1, SANDBOX_RUNNING);
	is_int(store_sandbox_update(s, &ghost), -ENOENT, "update of a missing sandbox: -ENOENT");

	is_int(store_sandbox_delete(s, "sbx1"), 0, "delete");
	is_int(store_sandbox_delete(s, "sbx1"), -ENOENT, "delete twice: -ENOENT");
	check_raw(dir, "SELECT count(*) FROM sandbox_metadata", "0",
		  "metadata rows go with their sandbox");
	is_int(store_sandbox_delete(s, "sbx2"), 0, "delete the other");

	/* Bad input. */
	json_decref(r.metadata);
	r.metadata = json_pack("{si}", "n", 1);
	is_int(store_sandbox_insert(s, &r), -EINVAL, "metadata value not a string: -EINVAL");
	json_decref(r.metadata);
	r.metadata = json_array();
	is_int(store_sandbox_insert(s, &r), -EINVAL, "metadata not an object: -EINVAL");
	json_decref(r.metadata);
	r.metadata = NULL;
	r.state = (enum sandbox_state) - 1;
	is_int(store_sandbox_insert(s, &r), -EINVAL, "bad state: -EINVAL");
	r.state = SANDBOX_RUNNING;
	memset(r.id, 'i', sizeof(r.id));
	is_int(store_sandbox_insert(s, &r), -EINVAL, "unterminated id: -EINVAL");
	r.id[0] = '\0';
	is_int(store_sandbox_insert(s, &r), -EINVAL, "empty id: -EINVAL");
	is_int(store_sandbox_insert(s, NULL), -EINVAL, "insert NULL: -EINVAL");
	is_int(store_sandbox_get(s, NULL, &got), -EINVAL, "get NULL: -EINVAL");
	is_int(store_sandbox_set_end(s, "x", NULL, true), -EINVAL, "set_end NULL: -EINVAL");
	is_int(store_sandbox_expired(s, 0, NULL, &n), -EINVAL, "expired NULL: -EINVAL");
	sandbox_rec_clear(NULL);
	sandbox_rec_clear(&r);

	enum sandbox_state st;
	ok(sandbox_state_parse("paused", &st) == 0 && st == SANDBOX_PAUSED, "state parse");
	is_int(sandbox_state_parse("Paused", &st), -EINVAL, "state parse is exact");
	is_int(sandbox_state_parse(NULL, &st), -EINVAL, "state parse NULL");
	is_str(sandbox_state_name(SANDBOX_STOPPING), "stopping", "state name");
	ok(sandbox_state_name((enum sandbox_state)99) == NULL, "unknown state name is NULL");
}

/* Walks every page of a listing; returns the ids joined by ',' (malloc'd). */
static char *list_all(struct store *s, struct sandbox_filter f, unsigned *pages)
{
	char *joined = strdup(""), *cursor = NULL;
	*pages = 0;
	for (;;) {
		struct sandbox_rec *v = NULL;
		size_t n = 0;
		char *next = NULL;
		f.cursor = cursor;
		int r = store_sandbox_list(s, &f, &v, &n, &next);
		free(cursor);
		if (r < 0) {
			diag("list: %s", strerror(-r));
			free(joined);
			return NULL;
		}
		(*pages)++;
		for (size_t i = 0; i < n; i++) {
			char *j = NULL;
			if (asprintf(&j, "%s%s%s", joined, *joined ? "," : "", v[i].id) < 0)
				abort();
			free(joined);
			joined = j;
			sandbox_rec_clear(&v[i]);
		}
		free(v);
		cursor = next;
		if (!cursor || *pages > 100)
			break;
	}
	free(cursor);
	return joined;
}

static void test_list(struct store *s)
{
	/* s00..s11; started_ms repeats in pairs so (started_ms, id) ordering matters. */
	for (int i = 0; i < 12; i++) {
		char id[8];
		snprintf(id, sizeof(id), "s%02d", i);
		struct sandbox_rec r = make_sandbox(id, 1000 + (i / 2) * 10,
						    i % 3 == 0 ? SANDBOX_PAUSED : SANDBOX_RUNNING);
		if (i >= 8)
			snprintf(r.template_id, sizeof(r.template_id), "other");
		r.metadata = json_pack("{ss,ss,ss}", "team", i % 2 ? "odd" : "even", "a.b", "dot",
				       "$['q\"]", i < 4 ? "quoted" : "plain");
		int rr = store_sandbox_insert(s, &r);
		if (rr < 0)
			diag("insert %s: %s", id, strerror(-rr));
		sandbox_rec_clear(&r);
	}

	unsigned pages;
	struct sandbox_filter f = { .limit = 5 };
	char *got = list_all(s, f, &pages);
	is_str(got, "s00,s01,s02,s03,s04,s05,s06,s07,s08,s09,s10,s11", "ascending, all pages");
	is_int(pages, 3, "12 rows at 5 a page: 3 pages");
	free(got);

	f.order_desc = true;
	f.limit = 4;
	got = list_all(s, f, &pages);
	is_str(got, "s11,s10,s09,s08,s07,s06,s05,s04,s03,s02,s01,s00", "descending, all pages");
	is_int(pages, 3, "12 rows at 4 a page: 3 pages, the last one full and final");
	free(got);

	f = (struct sandbox_filter){ .limit = 1 };
	got = list_all(s, f, &pages);
	is_int(pages, 12, "a page per row");
	free(got);

	f = (struct sandbox_filter){ .limit = 1000, .states = 1u << SANDBOX_PAUSED };
	got = list_all(s, f, &pages);
	is_str(got, "s00,s03,s06,s09", "state filter");
	free(got);

	f.states = 1u << SANDBOX_PAUSED | 1u << SANDBOX_RUNNING;
	got = list_all(s, f, &pages);
	ok(got && strlen(got) == 12 * 4 - 1, "two states: everything");
	free(got);

	json_t *m = json_pack("{ss}", "team", "odd");
	f = (struct sandbox_filter){ .limit = 3, .metadata = m };
	got = list_all(s, f, &pages);
	is_str(got, "s01,s03,s05,s07,s09,s11", "metadata filter, paged");
	free(got);
	json_decref(m);

	m = json_pack("{ss,ss,ss}", "team", "even", "a.b", "dot", "$['q\"]", "quoted");
	f.metadata = m;
	got = list_all(s, f, &pages);
	is_str(got, "s00,s02", "metadata AND-match, keys with dots and quotes");
	free(got);
	json_decref(m);

	m = json_pack("{ss}", "team", "ODD");
	f.metadata = m;
	got = list_all(s, f, &pages);
	is_str(got, "", "metadata match is exact");
	is_int(pages, 1, "an empty result is one last page");
	free(got);
	json_decref(m);

	m = json_object();
	f.metadata = m;
	got = list_all(s, f, &pages);
	ok(got && strlen(got) == 12 * 4 - 1, "an empty metadata object matches everything");
	free(got);
	json_decref(m);

	f = (struct sandbox_filter){ .limit = 10, .template_id = "other" };
	got = list_all(s, f, &pages);
	is_str(got, "s08,s09,s10,s11", "template filter");
	free(got);

	f = (struct sandbox_filter){ .limit = 10, .started_after_ms = 1040, .order_desc = true };
	got = list_all(s, f, &pages);
	is_str(got, "s11,s10", "started_after is strict");
	free(got);

	/* Errors. */
	struct sandbox_rec *v = NULL;
	size_t n = 0;
	char *next = (char *)"junk";
	f = (struct sandbox_filter){ .limit = 0 };
	is_int(store_sandbox_list(s, &f, &v, &n, &next), -EINVAL, "limit 0: -EINVAL");
	ok(next == NULL, "*next is NULL after an error");
	f.limit = 1001;
	is_int(store_sandbox_list(s, &f, &v, &n, &next), -EINVAL, "limit 1001: -EINVAL");
	f.limit = 10;
	f.states = 1u << 7;
	is_int(store_sandbox_list(s, &f, &v, &n, &next), -EINVAL, "unknown state bit: -EINVAL");
	f.states = 0;
	const char *bad_cursors[] = { "",	  "zz",	    "abc",	"3a",	 "313a",
				      "00313a41", "31323a", "2b313a41", "783a41" };
	for (size_t i = 0; i < ELEMENTSOF(bad_cursors); i++) {
		f.cursor = bad_cursors[i];
		is_int(store_sandbox_list(s, &f, &v, &n, &next), -EINVAL, "bad cursor \"%s\"",
		       bad_cursors[i]);
	}
	char huge[4096];
	memset(huge, 'a', sizeof(huge) - 1);
	huge[sizeof(huge) - 1] = '\0';
	f.cursor = huge;
	is_int(store_sandbox_list(s, &f, &v, &n, &next), -EINVAL, "huge cursor");
	f.cursor = NULL;
	m = json_pack("{sb}", "team", 1);
	f.metadata = m;
	is_int(store_sandbox_list(s, &f, &v, &n, &next), -EINVAL, "non-string metadata filter");
	json_decref(m);
	f.metadata = NULL;
	is_int(store_sandbox_list(s, NULL, &v, &n, &next), -EINVAL, "NULL filter");
	is_int(store_sandbox_list(s, &f, &v, &n, NULL), -EINVAL, "NULL next");

	/* A cursor made from a negative start time parses back. */
	struct sandbox_rec neg = make_sandbox("neg", -5, SANDBOX_RUNNING);
	store_sandbox_insert(s, &neg);
	f = (struct sandbox_filter){ .limit = 1 };
	got = list_all(s, f, &pages);
	ok(got && startswith(got, "neg,s00,s01"), "negative started_ms pages correctly");
	free(got);
}

static void test_secrets(struct store **sp, const char *dir)
{
	uint8_t a[32], b[32], c[32], zero[32] = { 0 };
	is_int(store_secret(*sp, "envd-token", a), 0, "secret created");
	ok(memcmp(a, zero, 32) != 0, "secret is not all zeroes");
	is_int(store_secret(*sp, "envd-token", b), 0, "secret read again");
	is_mem(b, 32, a, 32, "same secret");
	is_int(store_secret(*sp, "other", c), 0, "another name");
	ok(memcmp(a, c, 32) != 0, "different names, different secrets");
	*sp = store_close(*sp);
	is_int(store_open(dir, sp), 0, "reopen");
	is_int(store_secret(*sp, "envd-token", b), 0, "secret after reopen");
	is_mem(b, 32, a, 32, "secret persisted");
	is_int(store_secret(*sp, NULL, b), -EINVAL, "NULL name");
	is_int(store_secret(*sp, "x", NULL), -EINVAL, "NULL out");
}

#define THREADS		8
#define KEYS_PER_THREAD 40

static void *thread_main(void *arg)
{
	struct store *s = *(struct store **)arg;
	static _Atomic unsigned next = 1000;
	long failures = 0;
	for (int i = 0; i < KEYS_PER_THREAD; i++) {
		unsigned id = next++;
		uint8_t h[32];
		char name[32];
		struct api_key k;
		hash_of(id, h);
		snprintf(name, sizeof(name), "t%u", id);
		if (store_key_create(s, name, h, "m", &k) < 0)
			failures++;
		if (store_key_lookup(s, h, &k) < 0 || !streq(k.name, name))
			failures++;
		if (store_key_count(s) < 1)
			failures++;
	}
	return (void *)failures;
}

static void test_threads(struct store *s)
{
	pthread_t t[THREADS];
	long failures = 0;
	int before = store_key_count(s);
	for (int i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, thread_main, &s);
	for (int i = 0; i < THREADS; i++) {
		void *ret;
		pthread_join(t[i], &ret);
		failures += (long)ret;
	}
	is_int(failures, 0, "%d threads creating and looking up keys", THREADS);
	is_int(store_key_count(s), before + THREADS * KEYS_PER_THREAD, "every key is there");
}

#define CRASH_ROWS 100000

/* A child that writes sandboxes c<first>, c<first+1>... and reports each acknowledged one over
 * the pipe, until it is killed. */
static _Noreturn void crash_child(const char *dir, int fd, uint32_t first)
{
	struct store *s = NULL;
	if (store_open(dir, &s) < 0)
		_exit(2);
	for (uint32_t i = first; i < first + CRASH_ROWS; i++) {
		char id[16];
		snprintf(id, sizeof(id), "c%06u", i);
		struct sandbox_rec r = make_sandbox(id, i, SANDBOX_RUNNING);
		r.metadata = json_pack("{ss}", "i", id);
		int rr = store_sandbox_insert(s, &r);
		sandbox_rec_clear(&r);
		if (rr < 0)
			_exit(3);
		if (write(fd, &i, sizeof(i)) != sizeof(i))
			_exit(4);
	}
	_exit(0);
}

/* One round: starts a writer at row `first`, kills it after `after` reports (mid-write: it
 * keeps going while we read) and returns the number of rows it acknowledged. */
static uint32_t crash_round(const char *dir, uint32_t first, uint32_t after, bool *killed)
{
	uint32_t i, acked = 0;
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0)
		abort();
	pid_t pid = fork();
	if (pid < 0)
		abort();
	if (pid == 0) {
		close(p[0]);
		crash_child(dir, p[1], first);
	}
	close(p[1]);
	while (acked < after && read(p[0], &i, sizeof(i)) == sizeof(i))
		acked = i + 1 - first;
	kill(pid, SIGKILL);
	/* Reports written before the kill landed count too. */
	while (read(p[0], &i, sizeof(i)) == sizeof(i))
		acked = i + 1 - first;
	close(p[0]);
	int status = 0;
	waitpid(pid, &status, 0);
	*killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
	return acked;
}

static void test_crash(void)
{
	static const uint32_t kill_after[] = { 1, 57, 300, 20, 123 };
	const char *dir = data_dir("crash");
	struct store *s = NULL;
	uint32_t total = 0, acked_rows = 0;
	unsigned missing = 0, not_killed = 0;

	/* Create the schema first, so the kills land among sandbox writes. */
	if (store_open(dir, &s) == 0)
		s = store_close(s);
	for (size_t round = 0; round < ELEMENTSOF(kill_after); round++) {
		bool killed = false;
		/* Each writer starts past anything an earlier one may have written unreported. */
		uint32_t first = total + (uint32_t)round;
		uint32_t acked = crash_round(dir, first, kill_after[round], &killed);
		if (!killed || acked < kill_after[round])
			not_killed++;
		total = first + acked;
		acked_rows += acked;

		if (store_open(dir, &s) < 0) {
			missing++;
			continue;
		}
		for (uint32_t j = first; j < first + acked; j++) {
			char id[16];
			struct sandbox_rec r = { 0 };
			snprintf(id, sizeof(id), "c%06u", j);
			if (store_sandbox_get(s, id, &r) < 0 ||
			    !streq(json_string_value(json_object_get(r.metadata, "i")), id))
				missing++;
			sandbox_rec_clear(&r);
		}
		s = store_close(s);
	}
	is_int(not_killed, 0, "%zu writers killed mid-way (%u rows acknowledged in all)",
	       ELEMENTSOF(kill_after), acked_rows);
	is_int(missing, 0, "every acknowledged row survived every kill");

	is_int(store_open(dir, &s), 0, "reopen after the kills");
	int count = store_sandbox_count(s, 0);
	ok(count >= (int)acked_rows && count <= (int)(acked_rows + ELEMENTSOF(kill_after)),
	   "no row beyond one unacknowledged write per kill (%d rows, %u acknowledged)", count,
	   acked_rows);
	struct sandbox_rec r = make_sandbox("after", 1, SANDBOX_RUNNING);
	is_int(store_sandbox_insert(s, &r), 0, "writes work after recovery");
	s = store_close(s);
	check_raw(dir, "PRAGMA integrity_check", "ok", "integrity_check after SIGKILL");
	check_raw(dir, "PRAGMA foreign_key_check", "(done)", "foreign keys hold");
	check_raw(dir,
		  "SELECT count(*) FROM sandboxes WHERE id NOT IN (SELECT sandbox_id FROM "
		  "sandbox_metadata)",
		  "1", "every killed write was all-or-nothing (only 'after' lacks metadata rows)");
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

int main(void)
{
	struct store *s = NULL;

	if (!mkdtemp(tmpdir)) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	/* Run first, before any thread exists in this process. */
	test_crash();
	test_open();

	const char *dir = data_dir("main");
	if (store_open(dir, &s) < 0) {
		printf("Bail out! store_open failed\n");
		return 1;
	}
	test_keys(s, dir);
	test_templates(s);
	test_builds(s);
	test_sandboxes(s, dir);
	test_list(s);
	test_secrets(&s, dir);
	test_threads(s);
	s = store_close(s);
	check_raw(dir, "PRAGMA integrity_check", "ok", "integrity_check at the end");

	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return done();
}
