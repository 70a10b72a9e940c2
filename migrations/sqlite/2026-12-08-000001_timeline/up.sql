-- Each task's timeline: queued, claimed by a worker, page k done, retried, cancelled, completed.
-- `message` is for the task's owner; `worker`, `attempt` and `detail` are for operators.
CREATE TABLE task_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    at      TIMESTAMP NOT NULL,
    kind    TEXT NOT NULL,
    message TEXT NOT NULL,
    worker  TEXT,
    attempt INTEGER,
    detail  TEXT
);
CREATE INDEX task_events_task_idx ON task_events (task_id, id);
-- Statistics by creation and finishing time, and the retention sweep.
CREATE INDEX tasks_created_at_idx ON tasks (created_at);
CREATE INDEX tasks_finished_at_idx ON tasks (finished_at);
