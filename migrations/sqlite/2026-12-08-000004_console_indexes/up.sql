-- The console on big tables: statistics read the window's rows from the index alone. (A
-- file-name substring is a scan on SQLite, which has no trigram index.)
DROP INDEX tasks_finished_at_idx;
CREATE INDEX tasks_finished_stats_idx ON tasks
    (finished_at, status, engine, error_code, pages_done, started_at, user_id);
DROP INDEX tasks_created_at_idx;
CREATE INDEX tasks_created_stats_idx ON tasks (created_at, status);
