DROP STATISTICS files_filename_lower_stats;
DROP INDEX files_filename_trgm_idx;
DROP INDEX tasks_created_stats_idx;
CREATE INDEX tasks_created_at_idx ON tasks (created_at);
DROP INDEX tasks_finished_stats_idx;
CREATE INDEX tasks_finished_at_idx ON tasks (finished_at);
