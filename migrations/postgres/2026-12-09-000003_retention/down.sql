DROP TABLE job_leases;
ALTER TABLE tasks DROP COLUMN retention_days;
ALTER TABLE users DROP COLUMN retention_days;
