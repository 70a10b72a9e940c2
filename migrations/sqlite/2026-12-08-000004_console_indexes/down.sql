DROP INDEX tasks_created_stats_idx;
CREATE INDEX tasks_created_at_idx ON tasks (created_at);
DROP INDEX tasks_finished_stats_idx;
CREATE INDEX tasks_finished_at_idx ON tasks (finished_at);
