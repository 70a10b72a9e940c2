//! The statistics' memory: each closed hour's tasks created and ended (by status, engine and
//! error code), and each closed day's durations and pages per account, summed once from the
//! tasks table and kept, so that a week or a month is read from a few thousand rows instead of
//! every task in it.
//!
//! A unit is summed `MARGIN` after it closes, so that a worker whose clock runs a little behind
//! still has its tasks' ends counted. Its rows are written in the transaction that writes its
//! marker in `stats_units`: two instances summing the same unit at once leave it summed once.
//! A summed unit never changes: a task deleted, retried or rewritten afterwards stays counted
//! as it was when the unit closed. Units older than `KEEP` are dropped.

use std::collections::{BTreeMap, HashSet};

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use diesel::sql_types::Timestamp;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::{Bucket, Ended, Histogram, UserSum};
use crate::db::schema::{stats_durations, stats_hours, stats_units, stats_users};
use crate::db::{DbConn, DbError};
use crate::with_conn;

/// How long after its end a unit is summed.
const MARGIN: TimeDelta = TimeDelta::minutes(5);
/// How far back units are summed: the longest window, and its first partial day.
const REACH: TimeDelta = TimeDelta::days(31);
/// How long summed units are kept.
const KEEP: TimeDelta = TimeDelta::days(35);

/// `[from, until)`.
pub type Range = (NaiveDateTime, NaiveDateTime);

/// How finely the rollup is summed: the series by the hour; durations and accounts, which are
/// many rows per unit, by the day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Hour,
    Day,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Hour => "hour",
            Level::Day => "day",
        }
    }

    pub fn secs(self) -> i64 {
        match self {
            Level::Hour => 3600,
            Level::Day => 86_400,
        }
    }

    fn at(secs: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(secs, 0)
            .unwrap_or_default()
            .naive_utc()
    }

    fn floor(self, t: NaiveDateTime) -> NaiveDateTime {
        Self::at(t.and_utc().timestamp().div_euclid(self.secs()) * self.secs())
    }

    fn ceil(self, t: NaiveDateTime) -> NaiveDateTime {
        let floor = self.floor(t);
        if floor == t {
            floor
        } else {
            floor + TimeDelta::seconds(self.secs())
        }
    }

    /// Where the units summed at `at` end.
    fn closed(self, at: NaiveDateTime) -> NaiveDateTime {
        self.floor(at - MARGIN)
    }

    /// `[since, at)` as the whole units read from the rollup and the rest, read from the tasks
    /// table.
    pub fn split(self, since: NaiveDateTime, at: NaiveDateTime) -> Split {
        let (start, end) = (self.ceil(since), self.closed(at));
        if start >= end {
            return Split::raw(since, at);
        }
        Split {
            rolled: Some((start, end)),
            raw: [(since, start), (end, at)]
                .into_iter()
                .filter(|(from, until)| from < until)
                .collect(),
        }
    }

    /// The starts of the units in `[from, until)`.
    fn units(self, (from, until): Range) -> impl Iterator<Item = NaiveDateTime> {
        let step = TimeDelta::seconds(self.secs());
        std::iter::successors(Some(from), move |t| Some(*t + step)).take_while(move |t| *t < until)
    }
}

/// A window read in parts: whole summed units, and the ends from the tasks table.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub rolled: Option<Range>,
    pub raw: Vec<Range>,
}

impl Split {
    pub fn raw(since: NaiveDateTime, at: NaiveDateTime) -> Split {
        Split {
            rolled: None,
            raw: vec![(since, at)],
        }
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = stats_units, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
struct Unit {
    level: String,
    start_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = stats_hours, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
struct HourRow {
    hour: NaiveDateTime,
    event: String,
    engine: String,
    error_code: String,
    n: i64,
    pages: i64,
    timed: i64,
    page_seconds: f64,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = stats_durations, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
struct DurationRow {
    day: NaiveDateTime,
    kind: String,
    bucket: i32,
    n: i64,
}

/// What one run of units adds to the rollup.
#[derive(Default)]
struct Sums {
    hours: Vec<HourRow>,
    durations: Vec<DurationRow>,
    /// Pages per account and day are summed by the database itself (`INSERT … SELECT`): they
    /// are most of the rows, and one statement writes them all.
    users: Option<String>,
}

/// Sums every closed unit of the last `REACH` that is not summed yet, and drops those older than
/// `KEEP`. Cheap when there is nothing to do: one read of the markers per level.
pub async fn catch_up(c: &mut DbConn, at: NaiveDateTime) -> Result<(), DbError> {
    let mut summed_any = false;
    for level in [Level::Hour, Level::Day] {
        let reach = (level.floor(at - REACH), level.closed(at));
        let first = reach.0;
        let done: HashSet<NaiveDateTime> = with_conn!(c, |c| stats_units::table
            .filter(stats_units::level.eq(level.name()))
            .filter(stats_units::start_at.ge(first))
            .select(stats_units::start_at)
            .load::<NaiveDateTime>(c)
            .await)?
        .into_iter()
        .collect();
        for run in missing(level, reach, &done) {
            let sums = sums(c, level, run).await?;
            summed_any |= write(c, level, run, sums).await?;
        }
    }
    if summed_any {
        forget(c, at - KEEP).await?;
    }
    Ok(())
}

/// The runs of consecutive units in `reach` not in `done`.
fn missing(level: Level, reach: Range, done: &HashSet<NaiveDateTime>) -> Vec<Range> {
    let step = TimeDelta::seconds(level.secs());
    let mut runs: Vec<Range> = Vec::new();
    for unit in level.units(reach).filter(|u| !done.contains(u)) {
        match runs.last_mut() {
            Some((_, until)) if *until == unit => *until = unit + step,
            _ => runs.push((unit, unit + step)),
        }
    }
    runs
}

/// Reads the sums of the units of `run` from the tasks table.
async fn sums(c: &mut DbConn, level: Level, run: Range) -> Result<Sums, DbError> {
    let mut sums = Sums::default();
    match level {
        Level::Hour => {
            let step = level.secs();
            let hour = |bucket: i64| Level::at(bucket * step);
            for row in super::created(c, run, step).await? {
                sums.hours.push(HourRow {
                    hour: hour(row.bucket),
                    event: row.status,
                    engine: String::new(),
                    error_code: String::new(),
                    n: row.n,
                    pages: 0,
                    timed: 0,
                    page_seconds: 0.0,
                });
            }
            for row in super::ended(c, run, step).await? {
                sums.hours.push(HourRow {
                    hour: hour(row.bucket),
                    event: row.status,
                    engine: row.engine,
                    error_code: row.error_code.unwrap_or_default(),
                    n: row.n,
                    pages: row.pages,
                    timed: row.timed,
                    page_seconds: row.page_seconds.unwrap_or(0.0),
                });
            }
        }
        Level::Day => {
            let mut buckets: BTreeMap<(i64, &str, i32), i64> = BTreeMap::new();
            for timing in super::timings(c, run).await? {
                for (kind, seconds) in [("task", timing.task), ("page", timing.page)] {
                    let bucket = Histogram::bucket(seconds.unwrap_or(0.0));
                    *buckets.entry((timing.day, kind, bucket)).or_insert(0) += 1;
                }
            }
            sums.durations = buckets
                .into_iter()
                .map(|((day, kind, bucket), n)| DurationRow {
                    day: Level::at(day * level.secs()),
                    kind: kind.to_owned(),
                    bucket,
                    n,
                })
                .collect();
            let d = super::Dialect::of(c);
            let day = format!("{} / 86400 * 86400", d.epoch("finished_at"));
            let sql = format!(
                "INSERT INTO stats_users (day, user_id, tasks, pages) \
                 SELECT {}, user_id, COUNT(*), COALESCE(SUM(pages_done), 0) \
                 FROM tasks WHERE {} GROUP BY {day}, user_id",
                d.timestamp(&day),
                super::ENDED_IN
            );
            sums.users = Some(c.placeholders(&sql));
        }
    }
    Ok(sums)
}

/// Writes the markers of `run` and its sums in one transaction; `false` (and nothing written)
/// where another instance summed any of its units first. A row at a time: diesel-async's SQLite
/// connection takes no multi-row insert, and a day is a few hundred rows.
async fn write(c: &mut DbConn, level: Level, run: Range, sums: Sums) -> Result<bool, DbError> {
    let units: Vec<Unit> = level
        .units(run)
        .map(|start_at| Unit {
            level: level.name().to_owned(),
            start_at,
        })
        .collect();
    let written = with_conn!(c, |c| c
        .transaction::<_, diesel::result::Error, _>(async |tx| {
            for unit in &units {
                let new = diesel::insert_into(stats_units::table)
                    .values(unit)
                    .on_conflict_do_nothing()
                    .execute(tx)
                    .await?;
                if new == 0 {
                    return Err(diesel::result::Error::RollbackTransaction);
                }
            }
            for row in &sums.hours {
                diesel::insert_into(stats_hours::table)
                    .values(row)
                    .execute(tx)
                    .await?;
            }
            for row in &sums.durations {
                diesel::insert_into(stats_durations::table)
                    .values(row)
                    .execute(tx)
                    .await?;
            }
            if let Some(sql) = &sums.users {
                diesel::sql_query(sql)
                    .bind::<Timestamp, _>(run.0)
                    .bind::<Timestamp, _>(run.1)
                    .execute(tx)
                    .await?;
            }
            Ok(())
        })
        .await);
    match written {
        Ok(()) => Ok(true),
        Err(diesel::result::Error::RollbackTransaction) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Drops the units that started before `before`.
async fn forget(c: &mut DbConn, before: NaiveDateTime) -> Result<(), DbError> {
    with_conn!(c, |c| {
        diesel::delete(stats_units::table.filter(stats_units::start_at.lt(before)))
            .execute(c)
            .await?;
        diesel::delete(stats_hours::table.filter(stats_hours::hour.lt(before)))
            .execute(c)
            .await?;
        diesel::delete(stats_durations::table.filter(stats_durations::day.lt(before)))
            .execute(c)
            .await?;
        diesel::delete(stats_users::table.filter(stats_users::day.lt(before)))
            .execute(c)
            .await?;
        Ok::<_, diesel::result::Error>(())
    })?;
    Ok(())
}

/// The summed hours of `range`: tasks created and ended, in buckets of `step` seconds (a whole
/// number of hours).
pub(super) async fn ends(
    c: &mut DbConn,
    (from, until): Range,
    step: i64,
) -> Result<(Vec<Bucket>, Vec<Ended>), DbError> {
    let rows: Vec<HourRow> = with_conn!(c, |c| stats_hours::table
        .filter(stats_hours::hour.ge(from))
        .filter(stats_hours::hour.lt(until))
        .select(HourRow::as_select())
        .load(c)
        .await)?;
    let (mut created, mut ended) = (Vec::new(), Vec::new());
    for row in rows {
        let bucket = row.hour.and_utc().timestamp() / step;
        if row.event == super::CREATED {
            created.push(Bucket {
                bucket,
                status: row.event,
                n: row.n,
                pages: 0,
            });
        } else {
            ended.push(Ended {
                bucket,
                status: row.event,
                engine: row.engine,
                error_code: Some(row.error_code).filter(|code| !code.is_empty()),
                n: row.n,
                pages: row.pages,
                timed: row.timed,
                page_seconds: Some(row.page_seconds),
            });
        }
    }
    Ok((created, ended))
}

/// The summed days of `range`: task and page seconds.
pub(super) async fn durations(
    c: &mut DbConn,
    (from, until): Range,
) -> Result<(Histogram, Histogram), DbError> {
    let rows: Vec<DurationRow> = with_conn!(c, |c| stats_durations::table
        .filter(stats_durations::day.ge(from))
        .filter(stats_durations::day.lt(until))
        .select(DurationRow::as_select())
        .load(c)
        .await)?;
    let (mut task, mut page) = (Histogram::default(), Histogram::default());
    for row in rows {
        let histogram = if row.kind == "task" {
            &mut task
        } else {
            &mut page
        };
        histogram.add(row.bucket, row.n);
    }
    Ok((task, page))
}

/// The summed days of `range`: tasks and pages per account.
pub(super) async fn users(c: &mut DbConn, range: Range) -> Result<Vec<UserSum>, DbError> {
    super::load(
        c,
        "SELECT user_id, CAST(SUM(tasks) AS BIGINT) AS tasks, \
         CAST(SUM(pages) AS BIGINT) AS pages FROM stats_users \
         WHERE day >= ? AND day < ? GROUP BY user_id",
        Some(range),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> NaiveDateTime {
        Level::at(secs)
    }

    #[test]
    fn a_window_splits_into_whole_closed_units_and_raw_ends() {
        let h = 3600;
        // 10:30 back to 10:30 the day before: the hours from 11:00 to 10:00 the next day are
        // whole and closed; 10:30–11:00 and the open hour 10:00–10:30 are raw.
        let at = t(86_400 + 10 * h + 1800);
        let since = at - TimeDelta::days(1);
        let split = Level::Hour.split(since, at);
        assert_eq!(split.rolled, Some((t(11 * h), t(86_400 + 10 * h))));
        assert_eq!(
            split.raw,
            [(since, t(11 * h)), (t(86_400 + 10 * h), at)].to_vec()
        );
        // Within the margin after an hour, that hour is not summed yet.
        let at = t(86_400 + 10 * h + 120);
        let split = Level::Hour.split(at - TimeDelta::days(1), at);
        assert_eq!(split.rolled.map(|r| r.1), Some(t(86_400 + 9 * h)));
        // The last hour never holds a whole closed hour: all of it is raw.
        let at = t(86_400 + 10 * h);
        let since = at - TimeDelta::hours(1);
        assert_eq!(Level::Hour.split(since, at), Split::raw(since, at));
        // A day: no whole closed day fits in it.
        assert_eq!(
            Level::Day.split(since - TimeDelta::hours(23), at),
            Split::raw(since - TimeDelta::hours(23), at)
        );
    }

    #[test]
    fn missing_units_come_in_runs() {
        let level = Level::Hour;
        let done: HashSet<_> = [t(3600), t(4 * 3600)].into();
        let runs = missing(level, (t(0), t(6 * 3600)), &done);
        assert_eq!(
            runs,
            [
                (t(0), t(3600)),
                (t(2 * 3600), t(4 * 3600)),
                (t(5 * 3600), t(6 * 3600))
            ]
            .to_vec()
        );
        assert!(missing(level, (t(0), t(0)), &done).is_empty());
    }
}
