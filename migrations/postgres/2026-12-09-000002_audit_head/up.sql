-- The audit log's newest row, written in the transaction of each append, so that
-- `ocrd admin audit verify` also finds rows removed from the end of the chain.
CREATE TABLE audit_head (
    id   BIGINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
SELECT 1, seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1;
