-- Full-text search over results: one row per result page, so that hits point to a page and a
-- long document never meets the tsvector's limits (1 MB, positions up to 16,383). The 'simple'
-- configuration lower-cases and does not stem: documents come in every language, and the
-- SQLite index (FTS5, unicode61) finds the same words.
CREATE TABLE search_pages (
    id      BIGSERIAL PRIMARY KEY,
    task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    -- The task's owner, copied for SQLite's index (where it narrows a user's search inside
    -- FTS5). Never the authority: every search joins tasks on its owner.
    owner   TEXT NOT NULL,
    page    INTEGER NOT NULL,
    body    TEXT NOT NULL,
    tsv     tsvector GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED,
    UNIQUE (task_id, page)
);
CREATE INDEX search_pages_tsv_idx ON search_pages USING GIN (tsv);

-- Results made before this migration are indexed by ocrd after it runs (src/search, `reindex`).
