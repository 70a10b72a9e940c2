-- Webhooks (Standard Webhooks): endpoints a user registers, and one delivery row per event and
-- target, written by the worker that sees a task end. The delivery row is the outbox: its id is
-- the `webhook-id`, the same on every attempt, and its payload is the exact body signed.
CREATE TABLE webhook_endpoints (
    id                    TEXT PRIMARY KEY,
    user_id               TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url                   TEXT NOT NULL,
    -- Space-separated event types: task.completed task.failed task.cancelled.
    events                TEXT NOT NULL,
    secret                TEXT NOT NULL,
    -- The secret before the last rotation, still signing until previous_secret_until.
    previous_secret       TEXT,
    previous_secret_until TIMESTAMP,
    created_at            TIMESTAMP NOT NULL,
    -- The first failed attempt since the last success; 5 days of failures disable it.
    failing_since         TIMESTAMP,
    disabled_at           TIMESTAMP,
    disabled_reason       TEXT
);
CREATE INDEX webhook_endpoints_user_idx ON webhook_endpoints (user_id);

-- A one-off callback given at upload, signed with its own secret (answered once, at upload).
ALTER TABLE tasks ADD COLUMN callback_url TEXT;
ALTER TABLE tasks ADD COLUMN callback_secret TEXT;
-- Set by every transition to completed, failed or cancelled (in the same statement), cleared by
-- the worker that turns it into delivery rows (in one transaction with them): no event is lost
-- to a crash between the commit and the delivery.
ALTER TABLE tasks ADD COLUMN webhook_pending BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX tasks_webhook_pending_idx ON tasks (id) WHERE webhook_pending;

CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    -- NULL for a task's callback_url.
    endpoint_id     TEXT REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    -- NULL for a test event. Erasing a task erases its payloads.
    task_id         TEXT REFERENCES tasks (id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url             TEXT NOT NULL,
    event           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    -- pending, delivered or failed.
    status          TEXT NOT NULL,
    -- Attempts in the current round of the retry schedule (a redelivery starts a new one).
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP,
    -- A worker sending it holds it until then; a crashed sender's claim runs out.
    locked_until    TIMESTAMP,
    created_at      TIMESTAMP NOT NULL,
    finished_at     TIMESTAMP
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, created_at);
CREATE INDEX webhook_deliveries_task_idx ON webhook_deliveries (task_id);

-- The delivery log: one row per attempt.
CREATE TABLE webhook_attempts (
    id              BIGSERIAL PRIMARY KEY,
    delivery_id     TEXT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    at              TIMESTAMP NOT NULL,
    -- NULL when no answer came (refused target, connection error, timeout).
    status_code     INTEGER,
    latency_ms      INTEGER NOT NULL,
    error           TEXT,
    -- The first 1 KiB of the answer, for the log.
    response        TEXT,
    next_attempt_at TIMESTAMP
);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id, id);
