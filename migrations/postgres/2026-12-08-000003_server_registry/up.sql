-- `serve` processes register in the same registry as workers, told apart by their role, so
-- that health lists every process with its version and uptime.
ALTER TABLE workers ADD COLUMN role TEXT NOT NULL DEFAULT 'work';
