-- One-time password reset links, issued by an administrator (`ocrd admin reset-password`).
-- Only the token's SHA-256 is stored.
CREATE TABLE password_resets (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX password_resets_user_idx ON password_resets (user_id);
