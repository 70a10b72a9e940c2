-- The statistics' memory (`src/admin/stats/rollup.rs`): each closed hour's tasks created and
-- ended, and each closed day's durations and pages per account, summed once from `tasks`, so
-- that a week or a month is read from a few thousand rows. A unit is summed in the transaction
-- that writes its marker in `stats_units`, and never changes afterwards.
CREATE TABLE stats_units (
    level    TEXT NOT NULL,
    start_at TIMESTAMP NOT NULL,
    PRIMARY KEY (level, start_at)
);
-- `event` is `created` or the status a task ended in; `error_code` is '' for none.
CREATE TABLE stats_hours (
    hour         TIMESTAMP NOT NULL,
    event        TEXT NOT NULL,
    engine       TEXT NOT NULL,
    error_code   TEXT NOT NULL,
    n            BIGINT NOT NULL,
    pages        BIGINT NOT NULL,
    timed        BIGINT NOT NULL,
    page_seconds DOUBLE NOT NULL,
    PRIMARY KEY (hour, event, engine, error_code)
);
-- Task (`task`) and page (`page`) seconds, 40 buckets to a decade.
CREATE TABLE stats_durations (
    day    TIMESTAMP NOT NULL,
    kind   TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    n      BIGINT NOT NULL,
    PRIMARY KEY (day, kind, bucket)
);
CREATE TABLE stats_users (
    day     TIMESTAMP NOT NULL,
    user_id TEXT NOT NULL,
    tasks   BIGINT NOT NULL,
    pages   BIGINT NOT NULL,
    PRIMARY KEY (day, user_id)
);
