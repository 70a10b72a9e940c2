-- Per-account quotas over the install's (the quota.* settings); NULL takes the install's, and
-- 0 means no limit.
ALTER TABLE users ADD COLUMN quota_pages_per_month BIGINT;
ALTER TABLE users ADD COLUMN quota_stored_bytes BIGINT;
ALTER TABLE users ADD COLUMN quota_concurrent_tasks BIGINT;
ALTER TABLE users ADD COLUMN quota_max_upload_bytes BIGINT;
-- Pages a task holds against its owner's monthly allowance until it is settled: one when it is
-- accepted, its page count once a worker has opened the file, 0 once settled.
ALTER TABLE tasks ADD COLUMN pages_reserved INTEGER NOT NULL DEFAULT 0;
CREATE INDEX tasks_reserved_idx ON tasks (user_id) WHERE pages_reserved > 0;
-- Pages settled per account and month (UTC, 'YYYY-MM'): what was read, kept when tasks are
-- deleted.
CREATE TABLE quota_pages (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    month   TEXT NOT NULL,
    pages   BIGINT NOT NULL,
    PRIMARY KEY (user_id, month)
);
