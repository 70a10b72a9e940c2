-- The audit log: append-only, each row holding the hash of the one before (see src/audit.rs),
-- so that an edited or deleted row is found by `ocrd admin audit verify`.
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    at         TIMESTAMP NOT NULL,
    actor_id   TEXT,
    actor      TEXT NOT NULL,
    client     TEXT,
    user_agent TEXT,
    action     TEXT NOT NULL,
    target     TEXT,
    outcome    TEXT NOT NULL,
    detail     TEXT,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, seq);
CREATE INDEX audit_log_action_idx ON audit_log (action, seq);
