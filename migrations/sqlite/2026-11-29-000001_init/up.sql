CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    disabled      BOOLEAN NOT NULL DEFAULT 0,
    created_at    TIMESTAMP NOT NULL,
    updated_at    TIMESTAMP NOT NULL
);
-- Emails are unique whatever their case.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    expires_at   TIMESTAMP
);
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id);

CREATE TABLE files (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blob_key     TEXT NOT NULL UNIQUE,
    filename     TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL CHECK (size_bytes >= 0),
    sha256       TEXT NOT NULL,
    page_count   INTEGER,
    created_at   TIMESTAMP NOT NULL
);
CREATE INDEX files_user_idx ON files (user_id);

CREATE TABLE tasks (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    file_id          TEXT NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    status           TEXT NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'cancelled')),
    engine           TEXT NOT NULL,
    options          TEXT NOT NULL DEFAULT '{}',
    priority         INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at TIMESTAMP,
    pages_done       INTEGER NOT NULL DEFAULT 0,
    pages_total      INTEGER,
    error_code       TEXT,
    error_message    TEXT,
    idempotency_key  TEXT,
    created_at       TIMESTAMP NOT NULL,
    updated_at       TIMESTAMP NOT NULL,
    started_at       TIMESTAMP,
    finished_at      TIMESTAMP,
    UNIQUE (user_id, idempotency_key)
);
-- A user's task list, newest first (ids are UUIDv7, so they sort by creation).
CREATE INDEX tasks_user_idx ON tasks (user_id, id);
CREATE INDEX tasks_user_status_idx ON tasks (user_id, status, id);
-- The reaper (expired leases) and the reconciler (queued tasks by priority).
CREATE INDEX tasks_status_lease_idx ON tasks (status, lease_expires_at);
CREATE INDEX tasks_queue_idx ON tasks (status, priority, id);
CREATE INDEX tasks_file_idx ON tasks (file_id);

CREATE TABLE results (
    id              TEXT PRIMARY KEY,
    task_id         TEXT NOT NULL UNIQUE REFERENCES tasks (id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blob_keys       TEXT NOT NULL,
    page_count      INTEGER NOT NULL,
    mean_confidence DOUBLE,
    text            TEXT NOT NULL,
    created_at      TIMESTAMP NOT NULL
);
CREATE INDEX results_user_idx ON results (user_id);
