-- Pages that failed in a task that still completed: a JSON array of {page, code, message}.
ALTER TABLE tasks ADD COLUMN warnings TEXT;
