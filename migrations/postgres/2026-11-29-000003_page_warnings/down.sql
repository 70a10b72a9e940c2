ALTER TABLE tasks DROP COLUMN warnings;
