-- Invite links for `auth.registration = "invite"`: single use, expiring, optionally for one
-- email. Only the token's SHA-256 is stored.
CREATE TABLE invites (
    id         TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    email      TEXT,
    created_by TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at    TIMESTAMP,
    used_by    TEXT REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX invites_pending_idx ON invites (used_at, expires_at);
