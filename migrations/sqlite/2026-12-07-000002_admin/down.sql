DROP INDEX tasks_lease_owner_idx;
DROP INDEX tasks_error_id_idx;
DROP INDEX tasks_engine_id_idx;
DROP INDEX tasks_status_id_idx;
DROP TABLE workers;
DROP TABLE settings;
UPDATE users SET role = 'user' WHERE role = 'operator';
