-- Operators: see everything, run the queue and the workers; admins also manage people.
-- SQLite cannot change a CHECK, so users is rebuilt (SQLite's documented procedure): with
-- foreign keys off, dropping the old table deletes nothing through them, and the other
-- tables' references, which name `users`, find the new one.
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE users_with_operators (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'operator', 'admin')),
    disabled      BOOLEAN NOT NULL DEFAULT 0,
    created_at    TIMESTAMP NOT NULL,
    updated_at    TIMESTAMP NOT NULL
);
INSERT INTO users_with_operators (id, email, password_hash, role, disabled, created_at, updated_at)
    SELECT id, email, password_hash, role, disabled, created_at, updated_at FROM users;
DROP TABLE users;
ALTER TABLE users_with_operators RENAME TO users;
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- Runtime settings every instance reads (the queue's pause, …): a key and its JSON value.
CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- Every worker process (`ocrd work`, all-in-one): registered at start, heartbeating, drained
-- on request, `stopped` when it exits cleanly; one silent for two heartbeats is lost.
CREATE TABLE workers (
    id            TEXT PRIMARY KEY,
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    version       TEXT NOT NULL,
    engine        TEXT NOT NULL,
    devices       TEXT NOT NULL,
    concurrency   INTEGER NOT NULL,
    started_at    TIMESTAMP NOT NULL,
    heartbeat_at  TIMESTAMP NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('running', 'draining', 'stopped')),
    drain         BOOLEAN NOT NULL DEFAULT 0,
    pages_done    BIGINT NOT NULL DEFAULT 0,
    pages_per_sec DOUBLE NOT NULL DEFAULT 0,
    rss_bytes     BIGINT NOT NULL DEFAULT 0
);

-- The admin task list: across users, newest first, by status, engine or error code.
CREATE INDEX tasks_status_id_idx ON tasks (status, id);
CREATE INDEX tasks_engine_id_idx ON tasks (engine, id);
CREATE INDEX tasks_error_id_idx ON tasks (error_code, id);
CREATE INDEX tasks_lease_owner_idx ON tasks (lease_owner);
COMMIT;
PRAGMA foreign_keys = ON;
