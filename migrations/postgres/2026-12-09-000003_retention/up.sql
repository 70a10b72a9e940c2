-- How long a finished task is kept, in days: per task (chosen at upload), per account (set by
-- admins); NULL takes the next level's (the owner's, then the `retention.days` setting), and 0
-- keeps it until it is deleted.
ALTER TABLE users ADD COLUMN retention_days INTEGER;
ALTER TABLE tasks ADD COLUMN retention_days INTEGER;
-- Jobs that run in one process at a time (the retention purge): who holds each, and until when.
CREATE TABLE job_leases (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until  TIMESTAMP NOT NULL
);
-- The purge reads only what can be due: tasks that chose their own days, and each account's.
CREATE INDEX tasks_own_retention_idx ON tasks (finished_at) WHERE retention_days IS NOT NULL;
CREATE INDEX tasks_user_finished_idx ON tasks (user_id, finished_at);
