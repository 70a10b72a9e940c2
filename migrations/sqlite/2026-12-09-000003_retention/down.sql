DROP INDEX tasks_user_finished_idx;
DROP INDEX tasks_own_retention_idx;
DROP TABLE job_leases;
ALTER TABLE tasks DROP COLUMN retention_days;
ALTER TABLE users DROP COLUMN retention_days;
