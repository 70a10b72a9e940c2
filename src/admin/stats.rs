//! Fleet statistics over a window (the last hour, day, week or month), computed from the
//! tasks table so they survive restarts and agree on every instance.
//!
//! Each figure is one indexed query over the window (`tasks_created_at_idx`,
//! `tasks_finished_at_idx`, `tasks_queue_idx`); nothing counts the whole table. Time buckets and
//! durations need each backend's date arithmetic, so the SQL is written here per backend; the
//! percentiles are PostgreSQL's `percentile_cont`, and on SQLite the row at each rank.

use std::collections::BTreeMap;

use chrono::{NaiveDateTime, TimeDelta};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Double, Nullable, Text, Timestamp};
use diesel_async::RunQueryDsl;
use futures::FutureExt;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::App;
use crate::db::models::now;
use crate::db::{DbConn, DbError};

/// How far back the figures go, and the width of one bucket of the time series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub enum Window {
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
    #[serde(rename = "30d")]
    Month,
}

impl Window {
    pub fn parse(s: &str) -> Option<Window> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }

    fn span(self) -> TimeDelta {
        match self {
            Window::Hour => TimeDelta::hours(1),
            Window::Day => TimeDelta::days(1),
            Window::Week => TimeDelta::days(7),
            Window::Month => TimeDelta::days(30),
        }
    }

    /// Seconds per bucket: 60, 30, 84 and 30 buckets.
    fn bucket_secs(self) -> i64 {
        match self {
            Window::Hour => 60,
            Window::Day => 1800,
            Window::Week => 7200,
            Window::Month => 86_400,
        }
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Stats {
    pub window: Window,
    #[serde(with = "crate::db::models::utc_time")]
    #[schema(value_type = String, format = DateTime)]
    pub since: NaiveDateTime,
    pub bucket_secs: i64,
    /// Tasks created in the window, by their status now.
    pub by_status: BTreeMap<String, i64>,
    /// One point per bucket, oldest first, empty buckets included.
    pub series: Vec<Point>,
    /// Seconds from start to end of the tasks completed in the window.
    pub task_seconds: Percentiles,
    /// Seconds per page of the same tasks.
    pub page_seconds: Percentiles,
    /// Tasks failed in the window, by error code.
    pub failures: BTreeMap<String, i64>,
    pub queue: QueueFigures,
    pub engines: Vec<EngineFigures>,
    /// The ten accounts with the most pages done in the window.
    pub top_users: Vec<UserFigures>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct Point {
    #[serde(with = "crate::db::models::utc_time")]
    #[schema(value_type = String, format = DateTime)]
    pub at: NaiveDateTime,
    pub created: i64,
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub pages: i64,
    /// Tasks queued or processing at the bucket's end, worked back from now through the
    /// creations and ends since (a retried task makes it an estimate).
    pub backlog: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct Percentiles {
    /// How many tasks they are taken over.
    pub count: i64,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct QueueFigures {
    /// Tasks waiting now.
    pub queued: i64,
    /// Seconds the oldest waiting task has waited.
    pub oldest_queued_secs: Option<i64>,
    pub processing: i64,
    /// Operators paused the queue.
    pub paused: bool,
}

#[derive(Clone, Debug, Serialize, ToSchema, QueryableByName)]
pub struct EngineFigures {
    #[diesel(sql_type = Text)]
    pub engine: String,
    #[diesel(sql_type = BigInt)]
    pub completed: i64,
    #[diesel(sql_type = BigInt)]
    pub failed: i64,
    #[diesel(sql_type = BigInt)]
    pub pages: i64,
    /// Mean seconds per page of its completed tasks.
    #[diesel(sql_type = Nullable<Double>)]
    pub page_seconds: Option<f64>,
}

#[derive(Clone, Debug, Serialize, ToSchema, QueryableByName)]
pub struct UserFigures {
    #[diesel(sql_type = Text)]
    pub email: String,
    #[diesel(sql_type = BigInt)]
    pub tasks: i64,
    #[diesel(sql_type = BigInt)]
    pub pages: i64,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Bucket {
    #[diesel(sql_type = BigInt)]
    bucket: i64,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = BigInt)]
    pages: i64,
}

#[derive(QueryableByName)]
struct Rank {
    #[diesel(sql_type = Nullable<Double>)]
    value: Option<f64>,
}

#[derive(QueryableByName)]
struct Oldest {
    #[diesel(sql_type = Nullable<Timestamp>)]
    at: Option<NaiveDateTime>,
}

/// The date arithmetic of one backend.
#[derive(Clone, Copy)]
enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    fn of(conn: &DbConn) -> Dialect {
        match conn {
            DbConn::Postgres(_) => Dialect::Postgres,
            DbConn::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Whole seconds since the epoch of a timestamp column.
    fn epoch(self, column: &str) -> String {
        match self {
            Dialect::Postgres => format!("CAST(EXTRACT(EPOCH FROM {column}) AS BIGINT)"),
            Dialect::Sqlite => format!("CAST(strftime('%s', {column}) AS INTEGER)"),
        }
    }

    /// Seconds from `started_at` to `finished_at`.
    fn duration(self) -> &'static str {
        match self {
            Dialect::Postgres => {
                "CAST(EXTRACT(EPOCH FROM (finished_at - started_at)) AS DOUBLE PRECISION)"
            }
            Dialect::Sqlite => "((julianday(finished_at) - julianday(started_at)) * 86400.0)",
        }
    }
}

/// Runs `sql` on whichever backend `conn` is, with `since` bound to its `?` if given.
async fn load<T>(
    conn: &mut DbConn,
    sql: &str,
    since: Option<NaiveDateTime>,
) -> Result<Vec<T>, DbError>
where
    T: QueryableByName<diesel::pg::Pg> + QueryableByName<diesel::sqlite::Sqlite> + Send + 'static,
{
    let sql = match conn {
        DbConn::Postgres(_) => sql.replace('?', "$1"),
        DbConn::Sqlite(_) => sql.to_owned(),
    };
    let query = diesel::sql_query(sql);
    Ok(match since {
        Some(since) => {
            let query = query.bind::<Timestamp, _>(since);
            crate::with_conn!(conn, |c| query.load::<T>(c).await)?
        }
        None => crate::with_conn!(conn, |c| query.load::<T>(c).await)?,
    })
}

/// The statistics of `window`, ending now.
pub async fn compute(app: &App, window: Window) -> Result<Stats, DbError> {
    let at = now();
    let since = at - window.span();
    let paused = super::queue::paused(app).await?;
    app.db
        .run(move |c| async move { compute_on(c, window, since, at, paused).await }.boxed())
        .await
}

async fn compute_on(
    c: &mut DbConn,
    window: Window,
    since: NaiveDateTime,
    at: NaiveDateTime,
    paused: bool,
) -> Result<Stats, DbError> {
    let d = Dialect::of(c);
    let step = window.bucket_secs();
    let ended = "status IN ('completed', 'failed', 'cancelled')";

    let by_status: Vec<Count> = load(
        c,
        "SELECT status AS key, COUNT(*) AS n FROM tasks WHERE created_at >= ? GROUP BY status",
        Some(since),
    )
    .await?;

    let created_bucket = format!("{} / {step}", d.epoch("created_at"));
    let finished_bucket = format!("{} / {step}", d.epoch("finished_at"));
    let created: Vec<Bucket> = load(
        c,
        &format!(
            "SELECT {created_bucket} AS bucket, 'created' AS status, COUNT(*) AS n, \
             CAST(0 AS BIGINT) AS pages FROM tasks WHERE created_at >= ? GROUP BY {created_bucket}"
        ),
        Some(since),
    )
    .await?;
    let finished: Vec<Bucket> = load(
        c,
        &format!(
            "SELECT {finished_bucket} AS bucket, status, COUNT(*) AS n, \
             CAST(COALESCE(SUM(pages_done), 0) AS BIGINT) AS pages FROM tasks \
             WHERE finished_at >= ? AND {ended} GROUP BY {finished_bucket}, status"
        ),
        Some(since),
    )
    .await?;
    let series = series(since, at, step, created.into_iter().chain(finished));

    let done =
        "FROM tasks WHERE finished_at >= ? AND status = 'completed' AND started_at IS NOT NULL";
    let per_page = format!(
        "({}) / (CASE WHEN pages_done > 0 THEN pages_done ELSE 1 END)",
        d.duration()
    );
    let task_seconds = percentiles(c, d, d.duration(), done, since).await?;
    let page_seconds = percentiles(c, d, &per_page, done, since).await?;

    let failures: Vec<Count> = load(
        c,
        "SELECT COALESCE(error_code, 'unknown') AS key, COUNT(*) AS n FROM tasks \
         WHERE finished_at >= ? AND status = 'failed' GROUP BY error_code",
        Some(since),
    )
    .await?;

    let waiting: Vec<Count> = load(
        c,
        "SELECT status AS key, COUNT(*) AS n FROM tasks \
         WHERE status IN ('queued', 'processing') GROUP BY status",
        None,
    )
    .await?;
    let oldest: Vec<Oldest> = load(
        c,
        "SELECT MIN(created_at) AS at FROM tasks WHERE status = 'queued'",
        None,
    )
    .await?;
    let waiting: BTreeMap<String, i64> = waiting.into_iter().map(|r| (r.key, r.n)).collect();
    let queue = QueueFigures {
        queued: waiting.get("queued").copied().unwrap_or(0),
        processing: waiting.get("processing").copied().unwrap_or(0),
        oldest_queued_secs: oldest
            .into_iter()
            .next()
            .and_then(|o| o.at)
            .map(|t| (at - t).num_seconds().max(0)),
        paused,
    };

    let mut series = series;
    fill_backlog(&mut series, queue.queued + queue.processing);

    let engines: Vec<EngineFigures> = load(
        c,
        &format!(
            "SELECT engine, \
             CAST(SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END) AS BIGINT) AS completed, \
             CAST(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS BIGINT) AS failed, \
             CAST(COALESCE(SUM(pages_done), 0) AS BIGINT) AS pages, \
             AVG(CASE WHEN status = 'completed' AND started_at IS NOT NULL THEN {per_page} END) AS page_seconds \
             FROM tasks WHERE finished_at >= ? AND {ended} GROUP BY engine ORDER BY engine"
        ),
        Some(since),
    )
    .await?;

    let top_users: Vec<UserFigures> = load(
        c,
        &format!(
            "SELECT users.email AS email, COUNT(*) AS tasks, \
             CAST(COALESCE(SUM(tasks.pages_done), 0) AS BIGINT) AS pages \
             FROM tasks JOIN users ON users.id = tasks.user_id \
             WHERE tasks.finished_at >= ? AND tasks.{ended} \
             GROUP BY users.email ORDER BY pages DESC, tasks DESC LIMIT 10"
        ),
        Some(since),
    )
    .await?;

    Ok(Stats {
        window,
        since,
        bucket_secs: step,
        by_status: by_status.into_iter().map(|r| (r.key, r.n)).collect(),
        series,
        task_seconds,
        page_seconds,
        failures: failures.into_iter().map(|r| (r.key, r.n)).collect(),
        queue,
        engines,
        top_users,
    })
}

/// p50, p95 and p99 of `value` over the rows of `from` (a `FROM … WHERE` with one `?`).
async fn percentiles(
    c: &mut DbConn,
    d: Dialect,
    value: &str,
    from: &str,
    since: NaiveDateTime,
) -> Result<Percentiles, DbError> {
    let count: Vec<Count> = load(
        c,
        &format!("SELECT 'n' AS key, COUNT(*) AS n {from}"),
        Some(since),
    )
    .await?;
    let count = count.into_iter().next().map_or(0, |r| r.n);
    if count == 0 {
        return Ok(Percentiles::default());
    }
    let mut at = [None; 3];
    for (slot, p) in at.iter_mut().zip([0.5, 0.95, 0.99]) {
        let sql = match d {
            Dialect::Postgres => format!(
                "SELECT CAST(percentile_cont({p}) WITHIN GROUP (ORDER BY {value}) AS DOUBLE PRECISION) AS value {from}"
            ),
            // The nearest rank: the row at position ⌈p·n⌉.
            Dialect::Sqlite => {
                let offset = ((p * count as f64).ceil() as i64 - 1).clamp(0, count - 1);
                format!("SELECT {value} AS value {from} ORDER BY value LIMIT 1 OFFSET {offset}")
            }
        };
        let rows: Vec<Rank> = load(c, &sql, Some(since)).await?;
        *slot = rows.into_iter().next().and_then(|r| r.value);
    }
    Ok(Percentiles {
        count,
        p50: at[0],
        p95: at[1],
        p99: at[2],
    })
}

/// Every bucket from `since` to `at`, with the counts that fell in it.
fn series(
    since: NaiveDateTime,
    at: NaiveDateTime,
    step: i64,
    rows: impl Iterator<Item = Bucket>,
) -> Vec<Point> {
    let first = since.and_utc().timestamp() / step;
    let last = at.and_utc().timestamp() / step;
    let mut points: Vec<Point> = (first..=last)
        .map(|b| Point {
            at: chrono::DateTime::from_timestamp(b * step, 0)
                .map(|t| t.naive_utc())
                .unwrap_or(since),
            ..Point::default()
        })
        .collect();
    for row in rows {
        let Some(point) = usize::try_from(row.bucket - first)
            .ok()
            .and_then(|i| points.get_mut(i))
        else {
            continue;
        };
        match row.status.as_str() {
            "created" => point.created += row.n,
            "completed" => {
                point.completed += row.n;
                point.pages += row.pages;
            }
            "failed" => {
                point.failed += row.n;
                point.pages += row.pages;
            }
            _ => {
                point.cancelled += row.n;
                point.pages += row.pages;
            }
        }
    }
    points
}

/// Fills each point's backlog, from `now` (the tasks waiting or running now) backwards.
fn fill_backlog(points: &mut [Point], now: i64) {
    let mut backlog = now;
    for point in points.iter_mut().rev() {
        point.backlog = backlog.max(0);
        backlog = backlog - point.created + point.completed + point.failed + point.cancelled;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_from_their_names_only() {
        assert_eq!(Window::parse("1h"), Some(Window::Hour));
        assert_eq!(Window::parse("30d"), Some(Window::Month));
        assert_eq!(Window::parse("1d"), None);
        assert_eq!(Window::parse(""), None);
    }

    #[test]
    fn the_series_has_every_bucket_and_puts_rows_in_theirs() {
        let since = chrono::DateTime::from_timestamp(6000, 0)
            .unwrap()
            .naive_utc();
        let at = since + TimeDelta::hours(1);
        let rows = vec![
            Bucket {
                bucket: 100,
                status: "created".into(),
                n: 2,
                pages: 0,
            },
            Bucket {
                bucket: 100,
                status: "completed".into(),
                n: 1,
                pages: 3,
            },
            Bucket {
                bucket: 160,
                status: "failed".into(),
                n: 4,
                pages: 1,
            },
            // Outside the window: ignored, not a panic.
            Bucket {
                bucket: 5,
                status: "failed".into(),
                n: 9,
                pages: 9,
            },
        ];
        let points = series(since, at, 60, rows.into_iter());
        assert_eq!(points.len(), 61);
        assert_eq!(
            (points[0].created, points[0].completed, points[0].pages),
            (2, 1, 3)
        );
        assert_eq!((points[60].failed, points[60].pages), (4, 1));
        let total: i64 = points.iter().map(|p| p.failed).sum();
        assert_eq!(total, 4);
    }

    #[test]
    fn the_backlog_is_worked_back_from_now() {
        let point = |created, completed| Point {
            created,
            completed,
            ..Point::default()
        };
        // 3 created and 1 done in the first bucket, 1 created and 2 done in the last: 1 left.
        let mut points = vec![point(3, 1), point(0, 0), point(1, 2)];
        fill_backlog(&mut points, 1);
        let backlog: Vec<i64> = points.iter().map(|p| p.backlog).collect();
        assert_eq!(backlog, [2, 2, 1]);
    }
}
