-- Template builds (E2B's build system v2). A template's row keeps what new sandboxes use: the
-- layers and `config` of its newest ready build ({buildID, envVars, user, workdir, startCmd,
-- readyCmd}). Each build keeps its own copy, so `name:tag` can name an older one.
ALTER TABLE templates ADD COLUMN config TEXT NOT NULL DEFAULT '{}';

-- data: {recipe, layers, config, reason, cpuCount, memoryMB, diskMB, tags}.
CREATE TABLE template_builds (
	id          TEXT PRIMARY KEY NOT NULL,
	template_id TEXT NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
	status      TEXT NOT NULL CHECK (status IN ('waiting', 'building', 'ready', 'error')),
	data        TEXT NOT NULL DEFAULT '{}',
	created_ms  INTEGER NOT NULL,
	finished_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX template_builds_template ON template_builds (template_id, created_ms);

CREATE TABLE template_tags (
	template_id TEXT NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
	tag         TEXT NOT NULL,
	build_id    TEXT NOT NULL REFERENCES template_builds (id) ON DELETE CASCADE,
	created_ms  INTEGER NOT NULL,
	PRIMARY KEY (template_id, tag)
) WITHOUT ROWID;
