//! Fleet statistics over a window (the last hour, day, week or month), computed from SQL so
//! they survive restarts and agree on every instance.
//!
//! A window is read in parts: its whole closed hours and days from the rollup (`rollup.rs`, a
//! few rows per hour, summed once), and its open ends from the tasks table through covering
//! indexes (`tasks_created_stats_idx`, `tasks_finished_stats_idx`), read from the index alone.
//! The last hour and day are mostly read from tasks; a week or a month mostly from the rollup.
//! Durations are counted in buckets 40 to a decade, which add up across parts; a percentile is
//! its bucket's middle, within 3 % of the exact value. Time buckets and durations need each
//! backend's date arithmetic, so the SQL is written here per backend.

mod rollup;

pub use rollup::catch_up;

use std::collections::{BTreeMap, HashMap};

use chrono::{NaiveDateTime, TimeDelta};
use diesel::sql_types::{BigInt, Double, Nullable, Text, Timestamp};
use diesel::{ExpressionMethods, QueryDsl, QueryableByName};
use diesel_async::RunQueryDsl;
use futures::FutureExt;
use serde::Serialize;
use utoipa::ToSchema;

use self::rollup::{Level, Range, Split};
use crate::app::App;
use crate::db::models::now;
use crate::db::schema::users;
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

    /// Seconds per bucket: 60, 24, 84 and 30 buckets.
    fn bucket_secs(self) -> i64 {
        match self {
            Window::Hour => 60,
            Window::Day => 3600,
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
    /// Tasks that ended in the window, by how they ended, and the tasks queued and processing
    /// now.
    pub by_status: BTreeMap<String, i64>,
    /// One point per bucket, oldest first, empty buckets included.
    pub series: Vec<Point>,
    /// Seconds from start to end of the tasks completed in the window (within 3 %).
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

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct UserFigures {
    pub email: String,
    pub tasks: i64,
    pub pages: i64,
}

/// Tasks created per bucket: the `status` of a [`Bucket`] that counts creations.
const CREATED: &str = "created";

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Tasks created (`status` [`CREATED`]) or ended in one bucket of the series.
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

/// A completed task's day (since the epoch) and its seconds, in all and per page.
#[derive(QueryableByName)]
struct Timing {
    #[diesel(sql_type = BigInt)]
    day: i64,
    #[diesel(sql_type = Nullable<Double>)]
    task: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    page: Option<f64>,
}

/// Tasks ended and their pages, of one account.
#[derive(QueryableByName)]
struct UserSum {
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = BigInt)]
    tasks: i64,
    #[diesel(sql_type = BigInt)]
    pages: i64,
}

#[derive(QueryableByName)]
struct Oldest {
    #[diesel(sql_type = Nullable<Timestamp>)]
    at: Option<NaiveDateTime>,
}

/// Seconds counted in buckets 40 to a decade, each 5.9 % wide, so that durations add up across
/// hours, days and backends. A percentile is the middle of its bucket: within 3 % of the exact
/// value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram(BTreeMap<i32, i64>);

impl Histogram {
    const PER_DECADE: f64 = 40.0;

    /// The bucket of `seconds`: a millisecond to 30 years, so that a zero, a negative (a clock
    /// stepped back) or a NaN counts at the ends, not as an error.
    pub fn bucket(seconds: f64) -> i32 {
        (seconds.clamp(1e-3, 1e9).log10() * Self::PER_DECADE).floor() as i32
    }

    pub fn record(&mut self, seconds: f64) {
        self.add(Self::bucket(seconds), 1);
    }

    pub fn add(&mut self, bucket: i32, n: i64) {
        *self.0.entry(bucket).or_insert(0) += n;
    }

    /// p50, p95 and p99 at the nearest rank ⌈p·n⌉.
    pub fn percentiles(&self) -> Percentiles {
        let count: i64 = self.0.values().sum();
        let at = |p: f64| {
            let rank = ((p * count as f64).ceil() as i64).clamp(1, count);
            let mut seen = 0;
            self.0.iter().find_map(|(&bucket, &n)| {
                seen += n;
                (seen >= rank).then(|| 10f64.powf((f64::from(bucket) + 0.5) / Self::PER_DECADE))
            })
        };
        if count == 0 {
            return Percentiles::default();
        }
        Percentiles {
            count,
            p50: at(0.5),
            p95: at(0.95),
            p99: at(0.99),
        }
    }
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

    /// The timestamp of an SQL expression of seconds since the epoch.
    fn timestamp(self, seconds: &str) -> String {
        match self {
            Dialect::Postgres => {
                format!("CAST(to_timestamp({seconds}) AT TIME ZONE 'UTC' AS TIMESTAMP)")
            }
            Dialect::Sqlite => format!("datetime({seconds}, 'unixepoch')"),
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

/// Runs `sql` on whichever backend `conn` is, with a range's ends bound to its two `?`, if
/// given.
async fn load<T>(conn: &mut DbConn, sql: &str, range: Option<Range>) -> Result<Vec<T>, DbError>
where
    T: QueryableByName<diesel::pg::Pg> + QueryableByName<diesel::sqlite::Sqlite> + Send + 'static,
{
    let query = diesel::sql_query(conn.placeholders(sql));
    Ok(match range {
        Some((from, until)) => {
            let query = query.bind::<Timestamp, _>(from).bind::<Timestamp, _>(until);
            crate::with_conn!(conn, |c| query.load::<T>(c).await)?
        }
        None => crate::with_conn!(conn, |c| query.load::<T>(c).await)?,
    })
}

/// Tasks that ended in a range, in SQL with its two `?`.
const ENDED_IN: &str = "finished_at >= ? AND finished_at < ? \
     AND status IN ('completed', 'failed', 'cancelled')";

/// The statistics of `window`, ending now: the rollup brought up to date, then four reads (the
/// series and ends, the durations, the top users, the queue), run at once, each on a
/// connection of its own.
pub async fn compute(app: &App, window: Window) -> Result<Stats, DbError> {
    compute_from(app, window, Source::Rollup).await
}

/// Where the closed hours and days of a window are read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Rollup,
    /// The tasks table alone: the same figures, slower on long windows, and as the tasks are
    /// now rather than as they ended. `make bench-admin`'s baseline, and the tests' check.
    Tasks,
}

pub async fn compute_from(app: &App, window: Window, source: Source) -> Result<Stats, DbError> {
    let at = now();
    let since = at - window.span();
    let step = window.bucket_secs();
    let db = &app.db;
    let (hours, days) = match source {
        Source::Tasks => (Split::raw(since, at), Split::raw(since, at)),
        Source::Rollup => {
            db.run(move |c| async move { rollup::catch_up(c, at).await }.boxed())
                .await?;
            // Summed hours make up the series' buckets only where those are whole hours.
            let hours = if step % Level::Hour.secs() == 0 {
                Level::Hour.split(since, at)
            } else {
                Split::raw(since, at)
            };
            (hours, Level::Day.split(since, at))
        }
    };
    let days_again = days.clone();
    let ((created, ended), (task_seconds, page_seconds), top_users, waiting, paused) = futures::try_join!(
        db.read(move |c| async move { read_ends(c, &hours, step).await }.boxed()),
        db.read(move |c| async move { read_durations(c, &days).await }.boxed()),
        db.read(move |c| async move { read_top_users(c, &days_again).await }.boxed()),
        db.read(move |c| async move { waiting(c).await }.boxed()),
        super::queue::paused(app),
    )?;
    let (counts, oldest) = waiting;
    let queue = QueueFigures {
        queued: counts.get("queued").copied().unwrap_or(0),
        processing: counts.get("processing").copied().unwrap_or(0),
        oldest_queued_secs: oldest.map(|t| (at - t).num_seconds().max(0)),
        paused,
    };
    let mut by_status = counts;
    let mut failures = BTreeMap::new();
    let mut engines: BTreeMap<String, (EngineFigures, i64, f64)> = BTreeMap::new();
    for row in &ended {
        *by_status.entry(row.status.clone()).or_insert(0) += row.n;
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
        task_seconds: task_seconds.percentiles(),
        page_seconds: page_seconds.percentiles(),
        failures,
        queue,
        engines,
        top_users,
    })
}

/// The tasks created and ended in `split`, in buckets of `step` seconds.
async fn read_ends(
    c: &mut DbConn,
    split: &Split,
    step: i64,
) -> Result<(Vec<Bucket>, Vec<Ended>), DbError> {
    let (mut created, mut ended) = match split.rolled {
        Some(range) => rollup::ends(c, range, step).await?,
        None => Default::default(),
    };
    for &range in &split.raw {
        created.extend(self::created(c, range, step).await?);
        ended.extend(self::ended(c, range, step).await?);
    }
    Ok((created, ended))
}

/// Task and page seconds of the tasks completed in `split`.
async fn read_durations(c: &mut DbConn, split: &Split) -> Result<(Histogram, Histogram), DbError> {
    let (mut task, mut page) = match split.rolled {
        Some(range) => rollup::durations(c, range).await?,
        None => Default::default(),
    };
    for &range in &split.raw {
        for timing in timings(c, range).await? {
            task.record(timing.task.unwrap_or(0.0));
            page.record(timing.page.unwrap_or(0.0));
        }
    }
    Ok((task, page))
}

/// The ten accounts with the most pages in tasks ended in `split`: summed per account, and only
/// those ten looked up. An account deleted since is left out.
async fn read_top_users(c: &mut DbConn, split: &Split) -> Result<Vec<UserFigures>, DbError> {
    let mut sums: HashMap<String, (i64, i64)> = HashMap::new();
    let mut rows = match split.rolled {
        Some(range) => rollup::users(c, range).await?,
        None => Vec::new(),
    };
    for &range in &split.raw {
        rows.extend(user_sums(c, range).await?);
    }
    for row in rows {
        let sum = sums.entry(row.user_id).or_default();
        sum.0 += row.pages;
        sum.1 += row.tasks;
    }
    let mut top: Vec<(String, (i64, i64))> = sums.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(10);
    let ids: Vec<String> = top.iter().map(|(id, _)| id.clone()).collect();
    let emails: HashMap<String, String> = crate::with_conn!(c, |c| users::table
        .filter(users::id.eq_any(&ids))
        .select((users::id, users::email))
        .load::<(String, String)>(c)
        .await)?
    .into_iter()
    .collect();
    Ok(top
        .into_iter()
        .filter_map(|(id, (pages, tasks))| {
            emails.get(&id).map(|email| UserFigures {
                email: email.clone(),
                tasks,
                pages,
            })
        })
        .collect())
}

/// Tasks created in `range` per bucket of `step` seconds.
async fn created(c: &mut DbConn, range: Range, step: i64) -> Result<Vec<Bucket>, DbError> {
    let bucket = format!("{} / {step}", Dialect::of(c).epoch("created_at"));
    let sql = format!(
        "SELECT {bucket} AS bucket, CAST('{CREATED}' AS TEXT) AS status, COUNT(*) AS n, \
         CAST(0 AS BIGINT) AS pages \
         FROM tasks WHERE created_at >= ? AND created_at < ? GROUP BY {bucket}"
    );
    load(c, &sql, Some(range)).await
}

/// Tasks ended in `range` per bucket, status, engine and error code, with their pages and
/// seconds per page: the series, the failures and the engines from one read.
async fn ended(c: &mut DbConn, range: Range, step: i64) -> Result<Vec<Ended>, DbError> {
    let d = Dialect::of(c);
    let bucket = format!("{} / {step}", d.epoch("finished_at"));
    let per_page = per_page(d);
    let timed = "status = 'completed' AND started_at IS NOT NULL";
    let sql = format!(
        "SELECT {bucket} AS bucket, status, engine, error_code, COUNT(*) AS n, \
         CAST(COALESCE(SUM(pages_done), 0) AS BIGINT) AS pages, \
         CAST(SUM(CASE WHEN {timed} THEN 1 ELSE 0 END) AS BIGINT) AS timed, \
         SUM(CASE WHEN {timed} THEN {per_page} END) AS page_seconds \
         FROM tasks WHERE {ENDED_IN} \
         GROUP BY {bucket}, status, engine, error_code"
    );
    load(c, &sql, Some(range)).await
}

/// Seconds per page of a task, in SQL.
fn per_page(d: Dialect) -> String {
    format!(
        "({}) / (CASE WHEN pages_done > 0 THEN pages_done ELSE 1 END)",
        d.duration()
    )
}

/// The seconds of each task completed in `range`.
async fn timings(c: &mut DbConn, range: Range) -> Result<Vec<Timing>, DbError> {
    let d = Dialect::of(c);
    let sql = format!(
        "SELECT {} / 86400 AS day, {} AS task, {} AS page FROM tasks \
         WHERE finished_at >= ? AND finished_at < ? \
         AND status = 'completed' AND started_at IS NOT NULL",
        d.epoch("finished_at"),
        d.duration(),
        per_page(d)
    );
    load(c, &sql, Some(range)).await
}

/// Tasks ended in `range` and their pages, per account.
async fn user_sums(c: &mut DbConn, range: Range) -> Result<Vec<UserSum>, DbError> {
    let sql = format!(
        "SELECT user_id, COUNT(*) AS tasks, CAST(COALESCE(SUM(pages_done), 0) AS BIGINT) AS pages \
         FROM tasks WHERE {ENDED_IN} GROUP BY user_id"
    );
    load(c, &sql, Some(range)).await
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
            CREATED => point.created += row.n,
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
    fn percentiles_from_the_histogram_are_within_3_percent() {
        let mut values: Vec<f64> = (0..1000)
            .map(|i| 0.01 * 1.013f64.powi(i) + f64::from(i % 7))
            .collect();
        let mut histogram = Histogram::default();
        for v in &values {
            histogram.record(*v);
        }
        values.sort_by(f64::total_cmp);
        let p = histogram.percentiles();
        assert_eq!(p.count, 1000);
        for (got, rank) in [(p.p50, 500), (p.p95, 950), (p.p99, 990)] {
            let exact = values[rank - 1];
            let got = got.unwrap();
            assert!((got / exact - 1.0).abs() <= 0.03, "{got} against {exact}");
        }
        // Halves recorded apart and merged count as the whole.
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        for (i, v) in values.iter().enumerate() {
            if i % 2 == 0 {
                a.record(*v)
            } else {
                b.record(*v)
            }
        }
        for (bucket, n) in b.0 {
            a.add(bucket, n);
        }
        assert_eq!(a.percentiles(), p);
        // What no clock should give still counts, at the ends.
        let mut odd = Histogram::default();
        for v in [0.0, -5.0, f64::NAN, f64::INFINITY] {
            odd.record(v);
        }
        assert_eq!(odd.percentiles().count, 4);
        assert!(odd.percentiles().p99.unwrap().is_finite());
        assert_eq!(Histogram::default().percentiles(), Percentiles::default());
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
