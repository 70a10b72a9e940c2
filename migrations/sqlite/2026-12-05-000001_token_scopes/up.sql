-- What a token may do: a comma-separated subset of read, write, admin. Tokens made before
-- scopes existed keep what they could do: read and write (admin rights needed a session).
ALTER TABLE api_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT 'read,write';
