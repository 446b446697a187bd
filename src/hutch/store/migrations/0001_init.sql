-- The first schema. Migrations run in one transaction each time the store opens; the version
-- lives in PRAGMA user_version. Never edit a released migration: add the next file instead.

-- API keys: only the SHA-256 of a key is stored. Names are unique when set, so a key can be
-- deleted by name; an empty name is "unnamed".
CREATE TABLE api_keys (
	id           TEXT PRIMARY KEY NOT NULL,
	name         TEXT NOT NULL DEFAULT '',
	hash         BLOB NOT NULL CHECK (typeof(hash) = 'blob' AND length(hash) = 32),
	mask         TEXT NOT NULL DEFAULT '',
	created_ms   INTEGER NOT NULL,
	last_used_ms INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX api_keys_hash ON api_keys (hash);
CREATE UNIQUE INDEX api_keys_name ON api_keys (name) WHERE name <> '';

-- Templates: layers is a JSON array of host paths, lowest first.
CREATE TABLE templates (
	id           TEXT PRIMARY KEY NOT NULL,
	alias        TEXT,
	layers       TEXT NOT NULL DEFAULT '[]',
	cpu_count    INTEGER NOT NULL DEFAULT 0,
	memory_mb    INTEGER NOT NULL DEFAULT 0,
	disk_mb      INTEGER NOT NULL DEFAULT 0,
	envd_version TEXT NOT NULL DEFAULT '',
	status       TEXT NOT NULL DEFAULT '',
	created_ms   INTEGER NOT NULL
);
CREATE UNIQUE INDEX templates_alias ON templates (alias) WHERE alias IS NOT NULL;

-- Sandboxes: metadata, env_vars and extra are JSON objects. Metadata is also kept as rows in
-- sandbox_metadata so that listings can match pairs exactly, whatever the keys contain.
CREATE TABLE sandboxes (
	id             TEXT PRIMARY KEY NOT NULL,
	template_id    TEXT NOT NULL,
	alias          TEXT NOT NULL DEFAULT '',
	key_id         TEXT NOT NULL DEFAULT '',
	state          TEXT NOT NULL CHECK (state IN ('starting', 'running', 'paused', 'stopping')),
	started_ms     INTEGER NOT NULL,
	end_ms         INTEGER NOT NULL,
	cpu_count      INTEGER NOT NULL DEFAULT 0,
	memory_mb      INTEGER NOT NULL DEFAULT 0,
	disk_mb        INTEGER NOT NULL DEFAULT 0,
	envd_version   TEXT NOT NULL DEFAULT '',
	metadata       TEXT NOT NULL DEFAULT '{}',
	env_vars       TEXT NOT NULL DEFAULT '{}',
	extra          TEXT NOT NULL DEFAULT '{}',
	allow_internet INTEGER NOT NULL DEFAULT 1,
	auto_pause     INTEGER NOT NULL DEFAULT 0,
	net_slot       INTEGER NOT NULL DEFAULT -1,
	uid_base       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sandboxes_started ON sandboxes (started_ms, id);
CREATE INDEX sandboxes_state_end ON sandboxes (state, end_ms);
CREATE INDEX sandboxes_template ON sandboxes (template_id);

CREATE TABLE sandbox_metadata (
	sandbox_id TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
	key        TEXT NOT NULL,
	value      TEXT NOT NULL,
	PRIMARY KEY (sandbox_id, key)
) WITHOUT ROWID;
CREATE INDEX sandbox_metadata_pair ON sandbox_metadata (key, value);

-- Per-data-dir secrets (e.g. the key that signs envd access tokens).
CREATE TABLE secrets (
	name  TEXT PRIMARY KEY NOT NULL,
	value BLOB NOT NULL CHECK (typeof(value) = 'blob' AND length(value) = 32)
);
