-- How many pages were read from a PDF's own text layer rather than recognised.
ALTER TABLE results ADD COLUMN text_layer_pages INTEGER NOT NULL DEFAULT 0;
-- Finding a user's earlier upload of the same bytes.
CREATE INDEX files_user_sha256_idx ON files (user_id, sha256);
