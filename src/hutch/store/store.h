/*
 * Durable state behind one interface: SQLite (WAL) in the data dir now, PostgreSQL later.
 * Every function is safe to call from any thread. A call that returns 0 has been committed
 * (fsync'd per SQLite's WAL rules with synchronous=FULL): a crash loses nothing acknowledged.
 * Errors: -ENOENT (no such row), -EEXIST (unique clash), -EIO (database error, logged at debug).
 * Also -EINVAL for bad arguments: NULLs where a value is needed, a string that does not fit its
 * field in the structs below (writes refuse it rather than truncate, so reads always fit), JSON
 * of the wrong shape; -EBUSY when another process holds the database past the busy timeout (5 s).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;

/* Opens DATA_DIR/hutch.db (mode 0600), creating it and applying migrations (versioned, in order).
 * -EPROTONOSUPPORT: the database was written by a newer Hutch (its schema version is above the
 * newest this binary knows); it is left untouched and an error naming both versions is logged. */
int store_open(const char *data_dir, struct store **out);
struct store *store_close(struct store *s);
/* The schema version after migrations. */
int store_schema_version(struct store *s);

/* ---- API keys: only the SHA-256 of a key is stored ---- */
struct api_key {
	char id[40]; /* "key_<hex>" */
	char name[128];
	char mask[32]; /* "e2b_1234…abcd", for listings */
	int64_t created_ms;
	int64_t last_used_ms; /* 0: never */
};
/* name may be NULL or "" (unnamed); a non-empty name is unique (-EEXIST), as is the hash.
 * out may be NULL. */
int store_key_create(struct store *s, const char *name, const uint8_t hash[32], const char *mask,
		     struct api_key *out);
/* Looks a key up by hash and bumps last_used (at most once a minute). */
int store_key_lookup(struct store *s, const uint8_t hash[32], struct api_key *out);
/* *out is a malloc'd array the caller frees. */
int store_key_list(struct store *s, struct api_key **out, size_t *n);
/* By id first, then by name. */
int store_key_delete(struct store *s, const char *id_or_name);
/* The number of keys, or -errno. */
int store_key_count(struct store *s);

/* ---- templates ---- */
struct template_rec {
	char id[64];
	char alias[128]; /* "" when none */
	json_t *layers;	 /* array of host paths, lowest first (owned) */
	unsigned cpu_count, memory_mb, disk_mb;
	char envd_version[16];
	char status[16]; /* "building", "ready", "error" */
	int64_t created_ms;
	/* What sandboxes of its newest ready build start with: {buildID, envVars, user, workdir,
	 * startCmd, readyCmd} (owned; NULL is written as {}, never NULL after a read). */
	json_t *config;
};
/* Insert or replace by id; created_ms 0 means now. An alias held by another template: -EEXIST. */
int store_template_put(struct store *s, const struct template_rec *t);
/* By id or alias. */
int store_template_get(struct store *s, const char *id_or_alias, struct template_rec *out);
/* All templates by created_ms then id (malloc'd array of records the caller clears and frees). */
int store_template_list(struct store *s, struct template_rec **out, size_t *n);
/* By id or alias. */
int store_template_delete(struct store *s, const char *id_or_alias);
void template_rec_clear(struct template_rec *t);

/* ---- template builds (deleted with their template) ---- */
struct build_rec {
	char id[40];
	char template_id[64];
	char status[16]; /* "waiting", "building", "ready", "error" */
	/* {recipe, layers, config, reason, cpuCount, memoryMB, diskMB, tags} (owned) */
	json_t *data;
	int64_t created_ms; /* 0 on put: now */
	int64_t finished_ms;
};
/* Insert, or update status/data/finished_ms of an existing build. */
int store_build_put(struct store *s, const struct build_rec *b);
int store_build_get(struct store *s, const char *id, struct build_rec *out);
/* A template's builds, oldest first (malloc'd array of records the caller clears and frees). */
int store_build_list(struct store *s, const char *template_id, struct build_rec **out, size_t *n);
/* Marks every waiting or building build as failed with `message` (a daemon restart: their
 * builder is gone). Returns how many. */
int store_build_fail_unfinished(struct store *s, const char *message);
void build_rec_clear(struct build_rec *b);

/* ---- template tags: name:tag → build ---- */
struct tag_rec {
	char tag[128];
	char build_id[40];
	int64_t created_ms;
};
/* Points the tag at build_id (moving it if it pointed elsewhere). */
int store_tag_put(struct store *s, const char *template_id, const char *tag, const char *build_id);
int store_tag_get(struct store *s, const char *template_id, const char *tag, char build_id[40]);
int store_tag_delete(struct store *s, const char *template_id, const char *tag);
/* Malloc'd array, oldest first. */
int store_tag_list(struct store *s, const char *template_id, struct tag_rec **out, size_t *n);

/* ---- sandboxes ---- */
enum sandbox_state {
	SANDBOX_STARTING,
	SANDBOX_RUNNING,
	SANDBOX_PAUSED,
	SANDBOX_STOPPING,
};
const char *sandbox_state_name(enum sandbox_state st);
int sandbox_state_parse(const char *s, enum sandbox_state *out);

struct sandbox_rec {
	char id[40];
	char template_id[64];
	char alias[128];
	char key_id[40]; /* the API key that created it */
	enum sandbox_state state;
	int64_t started_ms, end_ms;
	unsigned cpu_count, memory_mb, disk_mb;
	char envd_version[16];
	json_t *metadata; /* object str→str, owned, never NULL after a read */
	json_t *env_vars; /* object str→str, owned */
	json_t *extra;	  /* everything else E2B stores (lifecycle, network, mcp...), owned */
	bool allow_internet;
	bool auto_pause;
	int net_slot; /* -1: none */
	uint32_t uid_base;
};
void sandbox_rec_clear(struct sandbox_rec *r);

int store_sandbox_insert(struct store *s, const struct sandbox_rec *r);
/* Replaces every field of the sandbox r->id (metadata included); -ENOENT when it is gone. */
int store_sandbox_update(struct store *s, const struct sandbox_rec *r);
int store_sandbox_get(struct store *s, const char *id, struct sandbox_rec *out);
int store_sandbox_set_state(struct store *s, const char *id, enum sandbox_state st);
/* Sets end_ms; with only_extend, keeps the later of the old and the new. Returns the value
 * now stored in *end_ms. */
int store_sandbox_set_end(struct store *s, const char *id, int64_t *end_ms, bool only_extend);
int store_sandbox_delete(struct store *s, const char *id);

struct sandbox_filter {
	unsigned states;	  /* bitmask of 1u << enum sandbox_state; 0 = all */
	const json_t *metadata;	  /* object: every pair must match; NULL = any */
	const char *template_id;  /* NULL = any */
	int64_t started_after_ms; /* 0 = any */
	bool order_desc;	  /* by started_ms then id */
	unsigned limit;		  /* 1..1000 */
	const char *cursor;	  /* opaque next-token from a previous page, or NULL */
	bool keyed_only;	  /* only sandboxes created with an API key (not builds') */
};
/* A page of sandboxes (malloc'd array of records the caller clears and frees) and the cursor
 * of the next page in *next (malloc'd, NULL on the last page). started_after_ms is strict
 * (started_ms > it). -EINVAL: limit outside 1..1000, a state bit beyond the enum, metadata that
 * is not an object of strings, or a cursor this function did not make. */
int store_sandbox_list(struct store *s, const struct sandbox_filter *f, struct sandbox_rec **out,
		       size_t *n, char **next);
/* The paging cursor (X-Next-Token): hex of "started_ms:id" after the page's last record; the
 * parser takes untrusted text (-EINVAL unless it is of that form with an id of 1..39 bytes). */
char *store_cursor_make(const struct sandbox_rec *last);
int store_cursor_parse(const char *cursor, int64_t *started_ms, char id[40]);
/* Ids of sandboxes in state RUNNING whose end_ms <= now_ms (malloc'd array of malloc'd strings). */
int store_sandbox_expired(struct store *s, int64_t now_ms, char ***ids, size_t *n);
/* The number of sandboxes in the states of the bitmask (0 = all), or -errno. */
int store_sandbox_count(struct store *s, unsigned states);
/* Uid bases and net slots in use (by sandboxes in any state), to allocate free ones: two
 * malloc'd arrays of *n entries each, row i being one sandbox; a net slot of -1 is none. */
int store_sandbox_slots(struct store *s, int **net_slots, uint32_t **uid_bases, size_t *n);

/* ---- server secrets (per data dir) ---- */
/* Returns the named 32-byte secret, creating it at random on first use. */
int store_secret(struct store *s, const char *name, uint8_t out[32]);
