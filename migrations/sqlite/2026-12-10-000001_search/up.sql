-- Full-text search over results: one row per result page, indexed by an external-content FTS5
-- table that triggers keep in step (deleting a task cascades to its pages, and the delete
-- trigger takes them out of the index). unicode61 lower-cases, folds diacritics and does not
-- stem, like PostgreSQL's 'simple' configuration. Prefix indexes of 2 and 3 characters keep
-- search-as-you-type fast. Results made before this migration are indexed by ocrd after it
-- runs (src/search, `reindex`).
CREATE TABLE search_pages (
    id      INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    -- The task's owner, indexed beside the text so that a user's search reads only their
    -- pages' entries (a join after the match would walk everyone's). Never the authority:
    -- every search joins tasks on its owner.
    owner   TEXT NOT NULL,
    page    INTEGER NOT NULL,
    body    TEXT NOT NULL,
    UNIQUE (task_id, page)
);
CREATE VIRTUAL TABLE search_fts USING fts5(
    body,
    owner,
    content = 'search_pages',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);
CREATE TRIGGER search_pages_insert AFTER INSERT ON search_pages BEGIN
    INSERT INTO search_fts (rowid, body, owner) VALUES (new.id, new.body, new.owner);
END;
CREATE TRIGGER search_pages_delete AFTER DELETE ON search_pages BEGIN
    INSERT INTO search_fts (search_fts, rowid, body, owner) VALUES ('delete', old.id, old.body, old.owner);
END;
CREATE TRIGGER search_pages_update AFTER UPDATE ON search_pages BEGIN
    INSERT INTO search_fts (search_fts, rowid, body, owner) VALUES ('delete', old.id, old.body, old.owner);
    INSERT INTO search_fts (rowid, body, owner) VALUES (new.id, new.body, new.owner);
END;
