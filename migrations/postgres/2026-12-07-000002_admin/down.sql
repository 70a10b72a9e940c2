DROP INDEX tasks_lease_owner_idx;
DROP INDEX tasks_error_id_idx;
DROP INDEX tasks_engine_id_idx;
DROP INDEX tasks_status_id_idx;
DROP TABLE workers;
DROP TABLE settings;
UPDATE users SET role = 'user' WHERE role = 'operator';
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check CHECK (role IN ('user', 'admin'));
