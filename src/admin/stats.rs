//! Fleet statistics over a window (the last hour, day, week or month), computed from the
//! tasks table so they survive restarts and agree on every instance.
//!
//! Each figure is one query over the window's range of a covering index
//! (`tasks_created_stats_idx`, `tasks_finished_stats_idx`, `tasks_queue_idx`), read from the
//! index alone; nothing counts the whole table. Time buckets and durations need each backend's
//! date arithmetic, so the SQL is written here per backend; the percentiles are PostgreSQL's
//! `percentile_cont` (all six in one pass), and on SQLite the row at each nearest rank.

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

#[derive(Clone, Debug, Default, Serialize, ToSchema)]
pub struct EngineFigures {
    pub engine: String,
    pub completed: i64,
    pub failed: i64,
    pub pages: i64,
    /// Mean seconds per page of its completed tasks.
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

/// Ended tasks of one bucket, status, engine and error code.
#[derive(QueryableByName)]
struct Ended {
    #[diesel(sql_type = BigInt)]
    bucket: i64,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Text)]
    engine: String,
    #[diesel(sql_type = Nullable<Text>)]
    error_code: Option<String>,
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = BigInt)]
    pages: i64,
    /// Completed tasks with a start time, and the sum of their seconds per page.
    #[diesel(sql_type = BigInt)]
    timed: i64,
    #[diesel(sql_type = Nullable<Double>)]
    page_seconds: Option<f64>,
}

#[derive(QueryableByName)]
struct Rank {
    #[diesel(sql_type = Nullable<Double>)]
    value: Option<f64>,
}

#[derive(QueryableByName)]
struct Ranks {
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = Nullable<Double>)]
    t50: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    t95: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    t99: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    p50: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    p95: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    p99: Option<f64>,
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

/// Tasks that have ended, in SQL.
const ENDED: &str = "status IN ('completed', 'failed', 'cancelled')";

/// The statistics of `window`, ending now: four reads of the window's range of an index (what
/// was created, what ended, the durations, the top users), run at once, each on a connection
/// of its own.
pub async fn compute(app: &App, window: Window) -> Result<Stats, DbError> {
    let at = now();
    let since = at - window.span();
    let step = window.bucket_secs();
    let db = &app.db;
    let (created, ended, (task_seconds, page_seconds), top_users, waiting, paused) = futures::try_join!(
        db.run(move |c| async move { created(c, since, step).await }.boxed()),
        db.run(move |c| async move { ended(c, since, step).await }.boxed()),
        db.run(move |c| async move { durations(c, since).await }.boxed()),
        db.run(move |c| async move { top_users(c, since).await }.boxed()),
        db.run(move |c| async move { waiting(c).await }.boxed()),
        super::queue::paused(app),
    )?;
    let (counts, oldest) = waiting;
    let queue = QueueFigures {
        queued: counts.get("queued").copied().unwrap_or(0),
        processing: counts.get("processing").copied().unwrap_or(0),
        oldest_queued_secs: oldest.map(|t| (at - t).num_seconds().max(0)),
        paused,
    };
    let mut by_status = BTreeMap::new();
    for row in &created {
        *by_status.entry(row.status.clone()).or_insert(0) += row.n;
    }
    let mut failures = BTreeMap::new();
    let mut engines: BTreeMap<String, (EngineFigures, i64, f64)> = BTreeMap::new();
    for row in &ended {
        if row.status == "failed" {
            let code = row.error_code.clone().unwrap_or_else(|| "unknown".into());
            *failures.entry(code).or_insert(0) += row.n;
        }
        let (figures, timed, seconds) = engines.entry(row.engine.clone()).or_default();
        match row.status.as_str() {
            "completed" => figures.completed += row.n,
            "failed" => figures.failed += row.n,
            _ => {}
        }
        figures.pages += row.pages;
        *timed += row.timed;
        *seconds += row.page_seconds.unwrap_or(0.0);
    }
    let engines = engines
        .into_iter()
        .map(|(engine, (figures, timed, seconds))| EngineFigures {
            engine,
            page_seconds: (timed > 0).then(|| seconds / timed as f64),
            ..figures
        })
        .collect();
    let rows = created
        .into_iter()
        .map(|row| Bucket {
            status: "created".into(),
            ..row
        })
        .chain(ended.into_iter().map(|row| Bucket {
            bucket: row.bucket,
            status: row.status,
            n: row.n,
            pages: row.pages,
        }));
    let mut series = series(since, at, step, rows);
    fill_backlog(&mut series, queue.queued + queue.processing);
    Ok(Stats {
        window,
        since,
        bucket_secs: step,
        by_status,
        series,
        task_seconds,
        page_seconds,
        failures,
        queue,
        engines,
        top_users,
    })
}

/// Tasks created since `since` per bucket, by their status now.
async fn created(c: &mut DbConn, since: NaiveDateTime, step: i64) -> Result<Vec<Bucket>, DbError> {
    let bucket = format!("{} / {step}", Dialect::of(c).epoch("created_at"));
    let sql = format!(
        "SELECT {bucket} AS bucket, status, COUNT(*) AS n, CAST(0 AS BIGINT) AS pages \
         FROM tasks WHERE created_at >= ? GROUP BY {bucket}, status"
    );
    load(c, &sql, Some(since)).await
}

/// Tasks ended since `since` per bucket, status, engine and error code, with their pages and
/// seconds per page: the series, the failures and the engines from one read.
async fn ended(c: &mut DbConn, since: NaiveDateTime, step: i64) -> Result<Vec<Ended>, DbError> {
    let d = Dialect::of(c);
    let bucket = format!("{} / {step}", d.epoch("finished_at"));
    let per_page = per_page(d);
    let timed = "status = 'completed' AND started_at IS NOT NULL";
    let sql = format!(
        "SELECT {bucket} AS bucket, status, engine, error_code, COUNT(*) AS n, \
         CAST(COALESCE(SUM(pages_done), 0) AS BIGINT) AS pages, \
         CAST(SUM(CASE WHEN {timed} THEN 1 ELSE 0 END) AS BIGINT) AS timed, \
         SUM(CASE WHEN {timed} THEN {per_page} END) AS page_seconds \
         FROM tasks WHERE finished_at >= ? AND {ENDED} \
         GROUP BY {bucket}, status, engine, error_code"
    );
    load(c, &sql, Some(since)).await
}

/// Seconds per page of a task, in SQL.
fn per_page(d: Dialect) -> String {
    format!(
        "({}) / (CASE WHEN pages_done > 0 THEN pages_done ELSE 1 END)",
        d.duration()
    )
}

/// Task and page seconds of the tasks completed since `since`.
async fn durations(
    c: &mut DbConn,
    since: NaiveDateTime,
) -> Result<(Percentiles, Percentiles), DbError> {
    let d = Dialect::of(c);
    let done =
        "FROM tasks WHERE finished_at >= ? AND status = 'completed' AND started_at IS NOT NULL";
    match d {
        Dialect::Postgres => both_percentiles(c, d.duration(), &per_page(d), done, since).await,
        Dialect::Sqlite => Ok((
            nearest_ranks(c, d.duration(), done, since).await?,
            nearest_ranks(c, &per_page(d), done, since).await?,
        )),
    }
}

/// The ten accounts with the most pages in tasks ended since `since`: counted per account from
/// the index, and only those ten looked up.
async fn top_users(c: &mut DbConn, since: NaiveDateTime) -> Result<Vec<UserFigures>, DbError> {
    let sql = format!(
        "SELECT users.email AS email, t.tasks AS tasks, t.pages AS pages \
         FROM (SELECT user_id, COUNT(*) AS tasks, \
                 CAST(COALESCE(SUM(pages_done), 0) AS BIGINT) AS pages \
               FROM tasks WHERE finished_at >= ? AND {ENDED} \
               GROUP BY user_id ORDER BY pages DESC, tasks DESC LIMIT 10) t \
         JOIN users ON users.id = t.user_id ORDER BY t.pages DESC, t.tasks DESC"
    );
    load(c, &sql, Some(since)).await
}

/// Tasks waiting and running now, and when the oldest waiting one was created.
async fn waiting(
    c: &mut DbConn,
) -> Result<(BTreeMap<String, i64>, Option<NaiveDateTime>), DbError> {
    let counts: Vec<Count> = load(
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
    Ok((
        counts.into_iter().map(|r| (r.key, r.n)).collect(),
        oldest.into_iter().next().and_then(|o| o.at),
    ))
}

/// PostgreSQL: p50, p95 and p99 of task and page seconds over the rows of `from` (a
/// `FROM … WHERE` with one `?`), interpolated, in one pass.
async fn both_percentiles(
    c: &mut DbConn,
    task: &str,
    page: &str,
    from: &str,
    since: NaiveDateTime,
) -> Result<(Percentiles, Percentiles), DbError> {
    let sql = format!(
        "SELECT n, t[1] AS t50, t[2] AS t95, t[3] AS t99, p[1] AS p50, p[2] AS p95, p[3] AS p99 \
         FROM (SELECT COUNT(*) AS n, \
           percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY {task}) AS t, \
           percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY {page}) AS p {from}) s"
    );
    let rows: Vec<Ranks> = load(c, &sql, Some(since)).await?;
    let Some(r) = rows.into_iter().next() else {
        return Ok(Default::default());
    };
    let of = |p50, p95, p99| Percentiles {
        count: r.n,
        p50,
        p95,
        p99,
    };
    Ok((of(r.t50, r.t95, r.t99), of(r.p50, r.p95, r.p99)))
}

/// SQLite, which has no percentile function: the value at each nearest rank ⌈p·n⌉.
async fn nearest_ranks(
    c: &mut DbConn,
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
        let offset = ((p * count as f64).ceil() as i64 - 1).clamp(0, count - 1);
        let sql = format!("SELECT {value} AS value {from} ORDER BY value LIMIT 1 OFFSET {offset}");
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
