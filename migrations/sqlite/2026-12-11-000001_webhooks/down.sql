DROP TABLE webhook_attempts;
DROP TABLE webhook_deliveries;
DROP INDEX tasks_webhook_pending_idx;
ALTER TABLE tasks DROP COLUMN webhook_pending;
ALTER TABLE tasks DROP COLUMN callback_secret;
ALTER TABLE tasks DROP COLUMN callback_url;
DROP TABLE webhook_endpoints;
