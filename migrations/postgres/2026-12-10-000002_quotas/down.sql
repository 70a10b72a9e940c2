DROP TABLE quota_pages;
DROP INDEX tasks_reserved_idx;
ALTER TABLE tasks DROP COLUMN pages_reserved;
ALTER TABLE users DROP COLUMN quota_max_upload_bytes;
ALTER TABLE users DROP COLUMN quota_concurrent_tasks;
ALTER TABLE users DROP COLUMN quota_stored_bytes;
ALTER TABLE users DROP COLUMN quota_pages_per_month;
