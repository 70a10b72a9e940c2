-- The console on big tables (`make bench-admin`, 1,000,000 tasks):
-- statistics read the window's rows from the index alone;
DROP INDEX tasks_finished_at_idx;
CREATE INDEX tasks_finished_stats_idx ON tasks (finished_at)
    INCLUDE (status, engine, error_code, pages_done, started_at, user_id);
DROP INDEX tasks_created_at_idx;
CREATE INDEX tasks_created_stats_idx ON tasks (created_at) INCLUDE (status);
-- a file-name substring is found through trigrams, not by reading every file. pg_trgm ships
-- with PostgreSQL and is a trusted extension: the database's owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX files_filename_trgm_idx ON files USING gin (lower(filename) gin_trgm_ops);
-- Without statistics on lower(filename) the planner guesses that a pattern matches 0.01 % of
-- the files and reads every match before sorting; with them it walks the newest tasks and stops
-- at a page (1,000,000 tasks, a 1 % pattern: 178 ms against 11 ms). The pattern is tried on
-- the histogram: 1,000 entries, so that a name in 1 % of the files is seen there (with the
-- default 100 it is missed one time in three, and the slow plan comes back).
CREATE STATISTICS files_filename_lower_stats ON (lower(filename)) FROM files;
ALTER STATISTICS files_filename_lower_stats SET STATISTICS 1000;
