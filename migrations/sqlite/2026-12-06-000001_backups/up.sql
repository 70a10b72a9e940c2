-- Backups that `ocrd backup create` finished: their history, and the age behind
-- ocrd_backup_last_success_timestamp_seconds (alerted on when too old).
CREATE TABLE backups (
    id             TEXT PRIMARY KEY,
    created_at     TIMESTAMP NOT NULL,
    archive        TEXT NOT NULL,
    bytes          BIGINT NOT NULL,
    blobs          BIGINT NOT NULL,
    schema_version TEXT NOT NULL
);
CREATE INDEX backups_created_idx ON backups (created_at);
