DROP INDEX files_user_sha256_idx;
ALTER TABLE results DROP COLUMN text_layer_pages;
