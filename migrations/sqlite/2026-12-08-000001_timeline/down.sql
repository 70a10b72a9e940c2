DROP INDEX tasks_finished_at_idx;
DROP INDEX tasks_created_at_idx;
DROP TABLE task_events;
