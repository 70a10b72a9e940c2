//! Per-account quotas: four limits, the install's (the `quota.*` settings) unless an admin gave
//! the account its own, and the pages each account has read this month.
//!
//! **Before storing.** An upload is checked against what the account uses now ([`check_upload`])
//! before a byte is stored: too many tasks at once or no pages left this month is a 429
//! (`quota_exceeded`, with `Retry-After`), no room left a 403 (`storage_quota_exceeded`). The
//! body is then cut at the room left and at the account's largest upload, so a file that would
//! cross either is aborted with nothing kept.
//!
//! **Reserve, then settle.** A task holds pages against the month's allowance while it is not
//! finished (`tasks.pages_reserved`): one when it is accepted, its page count once a worker has
//! opened the file ([`reserve`]; a document with more pages than are left fails there with
//! `quota_exceeded`, before any of its pages is stored or counted; a TIFF's pages are counted
//! only at its end). When it ends, the pages it read are added to the
//! month's (`quota_pages`) and the reservation dropped, in one transaction ([`settle`]): the
//! worker settles its own tasks, and its recovery round settles whatever ended another way
//! (cancelled, failed by the reaper, a worker killed after the commit), so no reservation
//! outlives its task. Pages read stay counted when the task is deleted.
//!
//! The checks are not serialised: uploads racing each other can pass the concurrent-task and
//! storage checks together, overshooting by at most the uploads in flight.

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, RunQueryDsl};
use futures::FutureExt;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::db::models::{TaskStatus, now};
use crate::db::schema::{quota_pages, tasks, users};
use crate::db::{DbConn, DbError};
use crate::with_conn;

/// The largest limit: what a BIGINT holds.
pub const MAX: u64 = i64::MAX as u64;

/// The four limits; 0 is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Limits {
    /// Pages read per calendar month (UTC).
    pub pages_per_month: u64,
    /// Bytes of uploaded files kept.
    pub stored_bytes: u64,
    /// Tasks queued or running at once.
    pub concurrent_tasks: u64,
    /// The largest upload, in bytes (within `limits.max_upload_bytes`).
    pub max_upload_bytes: u64,
}

/// An account's own limits; `None` takes the install's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Overrides {
    pub pages_per_month: Option<u64>,
    pub stored_bytes: Option<u64>,
    pub concurrent_tasks: Option<u64>,
    pub max_upload_bytes: Option<u64>,
}

impl Overrides {
    pub fn over(self, install: Limits) -> Limits {
        Limits {
            pages_per_month: self.pages_per_month.unwrap_or(install.pages_per_month),
            stored_bytes: self.stored_bytes.unwrap_or(install.stored_bytes),
            concurrent_tasks: self.concurrent_tasks.unwrap_or(install.concurrent_tasks),
            max_upload_bytes: self.max_upload_bytes.unwrap_or(install.max_upload_bytes),
        }
    }
}

/// What an account uses now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Usage {
    /// Pages read this month, by tasks that ended.
    pub pages_this_month: u64,
    /// Pages held by tasks not finished yet.
    pub pages_reserved: u64,
    pub stored_bytes: u64,
    /// Tasks queued or running.
    pub concurrent_tasks: u64,
}

impl Usage {
    /// Pages counted against this month's allowance.
    pub fn pages(&self) -> u64 {
        self.pages_this_month + self.pages_reserved
    }
}

/// The calendar month (UTC) of `at`, as `quota_pages.month` holds it.
pub fn month(at: NaiveDateTime) -> String {
    format!("{:04}-{:02}", at.year(), at.month())
}

/// When the month of `at` ends and its allowance starts again.
pub fn month_end(at: NaiveDateTime) -> NaiveDateTime {
    let (year, month) = if at.month() == 12 {
        (at.year() + 1, 1)
    } else {
        (at.year(), at.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or(at)
}

/// A limit an upload or a document would cross.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the monthly page quota is used up: {used} of {limit} pages this month (pages of unfinished tasks included); it starts again on {reset}"
    )]
    Pages {
        limit: u64,
        used: u64,
        reset: NaiveDateTime,
    },
    #[error(
        "this document has {pages} pages, and {left} of the {limit} pages of this month's quota are left"
    )]
    DocumentPages { limit: u64, left: u64, pages: u64 },
    #[error(
        "the quota of {limit} tasks at once is reached: {used} are queued or running; upload more when some have finished"
    )]
    Concurrent { limit: u64, used: u64 },
    #[error(
        "the storage quota is {limit} bytes and {used} are kept: there is no room for this upload; delete tasks to make room"
    )]
    Storage { limit: u64, used: u64 },
    #[error("the upload is larger than this account's quota of {limit} bytes per upload")]
    UploadSize { limit: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl Refusal {
    /// Seconds until trying again can help, for `Retry-After`: the month's end for pages, a
    /// short wait for tasks to finish; none for storage or size, which only the user's
    /// deleting (or an admin) changes.
    pub fn retry_after(&self, at: NaiveDateTime) -> Option<u64> {
        match self {
            Refusal::Pages { reset, .. } => Some((*reset - at).num_seconds().max(1) as u64),
            Refusal::Concurrent { .. } => Some(30),
            _ => None,
        }
    }

    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers) for the
    /// limit refused: its quota, what is left, and when it resets.
    pub fn headers(&self, at: NaiveDateTime) -> Vec<(&'static str, String)> {
        let (name, quota, window, left, reset) = match *self {
            Refusal::Pages { limit, used, reset } => {
                let window = (reset - start_of_month(at)).num_seconds();
                let t = (reset - at).num_seconds().max(0);
                ("pages", limit, window, limit.saturating_sub(used), t)
            }
            Refusal::DocumentPages { limit, left, .. } => {
                let reset = month_end(at);
                let window = (reset - start_of_month(at)).num_seconds();
                ("pages", limit, window, left, (reset - at).num_seconds())
            }
            Refusal::Concurrent { limit, used } => {
                ("concurrent", limit, 0, limit.saturating_sub(used), 30)
            }
            Refusal::Storage { limit, used } => {
                ("storage", limit, 0, limit.saturating_sub(used), 0)
            }
            Refusal::UploadSize { limit } => ("upload", limit, 0, 0, 0),
        };
        let window = if window > 0 {
            format!(";w={window}")
        } else {
            String::new()
        };
        vec![
            ("ratelimit-policy", format!("\"{name}\";q={quota}{window}")),
            ("ratelimit", format!("\"{name}\";r={left};t={reset}")),
        ]
    }
}

fn start_of_month(at: NaiveDateTime) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(at.year(), at.month(), 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or(at)
}

type Columns = (Option<i64>, Option<i64>, Option<i64>, Option<i64>);

fn from_columns((pages, stored, concurrent, upload): Columns) -> Overrides {
    let limit = |v: Option<i64>| v.map(|n| n.max(0) as u64);
    Overrides {
        pages_per_month: limit(pages),
        stored_bytes: limit(stored),
        concurrent_tasks: limit(concurrent),
        max_upload_bytes: limit(upload),
    }
}

/// The accounts' own limits, by id (accounts without any are absent).
pub async fn overrides(
    conn: &mut DbConn,
    ids: &[&str],
) -> Result<HashMap<String, Overrides>, DbError> {
    let rows: Vec<(String, Columns)> = with_conn!(conn, |c| users::table
        .filter(users::id.eq_any(ids))
        .select((
            users::id,
            (
                users::quota_pages_per_month,
                users::quota_stored_bytes,
                users::quota_concurrent_tasks,
                users::quota_max_upload_bytes,
            ),
        ))
        .load(c)
        .await)?;
    Ok(rows
        .into_iter()
        .map(|(id, columns)| (id, from_columns(columns)))
        .collect())
}

/// Sets an account's own limits: each `Some` field of `change` replaces that limit, `Some(None)`
/// returns it to the install's.
#[derive(Clone, Copy, Debug, Default)]
pub struct Change {
    pub pages_per_month: Option<Option<u64>>,
    pub stored_bytes: Option<Option<u64>>,
    pub concurrent_tasks: Option<Option<u64>>,
    pub max_upload_bytes: Option<Option<u64>>,
}

pub async fn set_overrides(
    conn: &mut DbConn,
    user_id: &str,
    change: Change,
) -> Result<(), DbError> {
    let value = |v: Option<u64>| v.map(|n| n.min(MAX) as i64);
    let current = overrides(conn, &[user_id])
        .await?
        .remove(user_id)
        .ok_or(DbError::NotFound)?;
    let next = Overrides {
        pages_per_month: change.pages_per_month.unwrap_or(current.pages_per_month),
        stored_bytes: change.stored_bytes.unwrap_or(current.stored_bytes),
        concurrent_tasks: change.concurrent_tasks.unwrap_or(current.concurrent_tasks),
        max_upload_bytes: change.max_upload_bytes.unwrap_or(current.max_upload_bytes),
    };
    let updated = with_conn!(conn, |c| diesel::update(users::table.find(user_id))
        .set((
            users::quota_pages_per_month.eq(value(next.pages_per_month)),
            users::quota_stored_bytes.eq(value(next.stored_bytes)),
            users::quota_concurrent_tasks.eq(value(next.concurrent_tasks)),
            users::quota_max_upload_bytes.eq(value(next.max_upload_bytes)),
        ))
        .execute(c)
        .await)?;
    crate::db::affected(updated)
}

/// What each account of `ids` uses at `at`, in four grouped reads (accounts that use nothing
/// are absent). The console's list reads it too, so both show the same figures.
pub async fn usage_of(
    conn: &mut DbConn,
    ids: &[&str],
    at: NaiveDateTime,
) -> Result<HashMap<String, Usage>, DbError> {
    use crate::db::schema::files;
    use diesel::dsl::{count_star, sum};
    let unfinished = [TaskStatus::Queued.as_str(), TaskStatus::Processing.as_str()];
    // Cast: SUM over BIGINT is NUMERIC on PostgreSQL.
    let stored: Vec<(String, i64)> = with_conn!(conn, |c| files::table
        .filter(files::user_id.eq_any(ids))
        .group_by(files::user_id)
        .select((
            files::user_id,
            diesel::dsl::sql::<BigInt>("CAST(SUM(size_bytes) AS BIGINT)"),
        ))
        .load(c)
        .await)?;
    let running: Vec<(String, i64)> = with_conn!(conn, |c| tasks::table
        .filter(tasks::user_id.eq_any(ids))
        .filter(tasks::status.eq_any(unfinished))
        .group_by(tasks::user_id)
        .select((tasks::user_id, count_star()))
        .load(c)
        .await)?;
    let held: Vec<(String, Option<i64>)> = with_conn!(conn, |c| tasks::table
        .filter(tasks::user_id.eq_any(ids))
        .filter(tasks::pages_reserved.gt(0))
        .group_by(tasks::user_id)
        .select((tasks::user_id, sum(tasks::pages_reserved)))
        .load(c)
        .await)?;
    let read: Vec<(String, i64)> = with_conn!(conn, |c| quota_pages::table
        .filter(quota_pages::user_id.eq_any(ids))
        .filter(quota_pages::month.eq(month(at)))
        .select((quota_pages::user_id, quota_pages::pages))
        .load(c)
        .await)?;
    let n = |v: i64| v.max(0) as u64;
    let mut usage: HashMap<String, Usage> = HashMap::new();
    for (id, v) in stored {
        usage.entry(id).or_default().stored_bytes = n(v);
    }
    for (id, v) in running {
        usage.entry(id).or_default().concurrent_tasks = n(v);
    }
    for (id, v) in held {
        usage.entry(id).or_default().pages_reserved = n(v.unwrap_or(0));
    }
    for (id, v) in read {
        usage.entry(id).or_default().pages_this_month = n(v);
    }
    Ok(usage)
}

/// What `user_id` uses at `at`.
pub async fn usage(conn: &mut DbConn, user_id: &str, at: NaiveDateTime) -> Result<Usage, DbError> {
    Ok(usage_of(conn, &[user_id], at)
        .await?
        .remove(user_id)
        .unwrap_or_default())
}

/// The limits that apply to `user_id` (its own over `install`), and its own.
async fn own_limits(
    conn: &mut DbConn,
    user_id: &str,
    install: Limits,
) -> Result<(Limits, Overrides), DbError> {
    let own = overrides(conn, &[user_id])
        .await?
        .remove(user_id)
        .unwrap_or_default();
    Ok((own.over(install), own))
}

/// An account's limits (its own over the install's) and what it uses.
pub async fn standing(app: &App, user_id: &str) -> Result<(Limits, Overrides, Usage), DbError> {
    let install = app.settings.get().quota;
    let user_id = user_id.to_owned();
    app.db
        .run(move |c| {
            async move {
                let (limits, own) = own_limits(c, &user_id, install).await?;
                let used = usage(c, &user_id, now()).await?;
                Ok::<_, DbError>((limits, own, used))
            }
            .boxed()
        })
        .await
}

/// How much one accepted upload may hold: the body is cut here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allowance {
    /// Bytes the account may still store, if it has a storage quota.
    pub storage_left: Option<(u64, Limits, Usage)>,
    /// The account's largest upload, if it has its own.
    pub max_upload_bytes: Option<u64>,
}

impl Allowance {
    /// What an upload of more than `size` bytes would cross, if anything.
    pub fn exceeded_by(&self, size: u64) -> Option<Refusal> {
        if let Some(limit) = self.max_upload_bytes
            && size > limit
        {
            return Some(Refusal::UploadSize { limit });
        }
        match self.storage_left {
            Some((left, limits, used)) if size > left => Some(Refusal::Storage {
                limit: limits.stored_bytes,
                used: used.stored_bytes,
            }),
            _ => None,
        }
    }
}

/// Whether `user_id` may upload now, before anything is stored; the allowance limits the body.
pub async fn check_upload(app: &App, user_id: &str) -> Result<Allowance, QuotaError> {
    let install = app.settings.get().quota;
    let user_id = user_id.to_owned();
    let (limits, used) = app
        .db
        .run(move |c| {
            async move {
                let (limits, _) = own_limits(c, &user_id, install).await?;
                // No limit applies (the default): nothing to sum.
                if limits == Limits::default() {
                    return Ok::<_, DbError>((limits, None));
                }
                Ok((limits, Some(usage(c, &user_id, now()).await?)))
            }
            .boxed()
        })
        .await?;
    let Some(used) = used else {
        return Ok(Allowance {
            storage_left: None,
            max_upload_bytes: None,
        });
    };
    let at = now();
    if limits.concurrent_tasks > 0 && used.concurrent_tasks >= limits.concurrent_tasks {
        return Err(Refusal::Concurrent {
            limit: limits.concurrent_tasks,
            used: used.concurrent_tasks,
        }
        .into());
    }
    if limits.pages_per_month > 0 && used.pages() >= limits.pages_per_month {
        return Err(Refusal::Pages {
            limit: limits.pages_per_month,
            used: used.pages(),
            reset: month_end(at),
        }
        .into());
    }
    if limits.stored_bytes > 0 && used.stored_bytes >= limits.stored_bytes {
        return Err(Refusal::Storage {
            limit: limits.stored_bytes,
            used: used.stored_bytes,
        }
        .into());
    }
    Ok(Allowance {
        storage_left: (limits.stored_bytes > 0)
            .then(|| (limits.stored_bytes - used.stored_bytes, limits, used)),
        max_upload_bytes: (limits.max_upload_bytes > 0).then_some(limits.max_upload_bytes),
    })
}

/// A worker has counted a task's pages: they replace its reservation, unless the month's
/// allowance (`install`'s, or the owner's own) has fewer left, which refuses the document.
pub async fn reserve(
    conn: &mut DbConn,
    task_id: &str,
    user_id: &str,
    pages: u64,
    install: Limits,
) -> Result<Result<(), Refusal>, DbError> {
    let limit = own_limits(conn, user_id, install).await?.0.pages_per_month;
    if limit > 0 {
        let used = usage(conn, user_id, now()).await?;
        let mine = with_conn!(conn, |c| tasks::table
            .find(task_id)
            .select(tasks::pages_reserved)
            .first::<i32>(c)
            .await
            .optional())?
        .unwrap_or(0)
        .max(0) as u64;
        let left = limit.saturating_sub(used.pages() - mine.min(used.pages()));
        if pages > left {
            return Ok(Err(Refusal::DocumentPages { limit, left, pages }));
        }
    }
    let pages = pages.min(i32::MAX as u64) as i32;
    with_conn!(conn, |c| diesel::update(tasks::table.find(task_id))
        .set(tasks::pages_reserved.eq(pages))
        .execute(c)
        .await)?;
    Ok(Ok(()))
}

/// Tasks settled per round: the rest wait for the next.
const SETTLE_BATCH: i64 = 200;

/// Settles ended tasks that still hold a reservation (`task`, or any): each one's pages read
/// go to the month it ended in and its reservation is dropped, in one transaction, so two
/// processes settling at once count it once. Returns how many were settled.
pub async fn settle(conn: &mut DbConn, task: Option<&str>) -> Result<usize, DbError> {
    let ended = [
        TaskStatus::Completed.as_str(),
        TaskStatus::Failed.as_str(),
        TaskStatus::Cancelled.as_str(),
    ];
    // Built inside the macro: a boxed query is typed by its backend.
    let ids: Vec<String> = with_conn!(conn, |c| {
        let mut query = tasks::table
            .filter(tasks::pages_reserved.gt(0))
            .filter(tasks::status.eq_any(ended))
            .select(tasks::id)
            .limit(SETTLE_BATCH)
            .into_boxed();
        if let Some(id) = task {
            query = query.filter(tasks::id.eq(id));
        }
        query.load(c).await
    })?;
    let mut settled = 0;
    for id in &ids {
        let done = with_conn!(conn, |c| c
            .transaction::<_, diesel::result::Error, _>(async |tx| {
                let Some((user_id, pages, finished)) = diesel::update(
                    tasks::table
                        .filter(tasks::id.eq(id))
                        .filter(tasks::pages_reserved.gt(0))
                        .filter(tasks::status.eq_any(ended)),
                )
                .set(tasks::pages_reserved.eq(0))
                .returning((tasks::user_id, tasks::pages_done, tasks::finished_at))
                .get_result::<(String, i32, Option<NaiveDateTime>)>(tx)
                .await
                .optional()?
                else {
                    return Ok(false);
                };
                let pages = i64::from(pages.max(0));
                diesel::insert_into(quota_pages::table)
                    .values((
                        quota_pages::user_id.eq(&user_id),
                        quota_pages::month.eq(month(finished.unwrap_or_else(now))),
                        quota_pages::pages.eq(pages),
                    ))
                    .on_conflict((quota_pages::user_id, quota_pages::month))
                    .do_update()
                    .set(quota_pages::pages.eq(quota_pages::pages + pages))
                    .execute(tx)
                    .await?;
                Ok(true)
            })
            .await)?;
        settled += usize::from(done);
    }
    Ok(settled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn months_and_their_ends() {
        assert_eq!(month(at("2026-12-31 23:59:59")), "2026-12");
        assert_eq!(
            month_end(at("2026-12-31 23:59:59")),
            at("2027-01-01 00:00:00")
        );
        assert_eq!(
            month_end(at("2026-02-01 00:00:00")),
            at("2026-03-01 00:00:00")
        );
    }

    #[test]
    fn own_limits_over_the_installs_and_refusals_with_headers() {
        let install = Limits {
            pages_per_month: 100,
            stored_bytes: 0,
            concurrent_tasks: 2,
            max_upload_bytes: 0,
        };
        let own = Overrides {
            pages_per_month: Some(0),
            stored_bytes: Some(1000),
            ..Overrides::default()
        };
        let limits = own.over(install);
        assert_eq!(
            (
                limits.pages_per_month,
                limits.stored_bytes,
                limits.concurrent_tasks
            ),
            (0, 1000, 2)
        );

        let now = at("2026-12-31 23:00:00");
        let pages = Refusal::Pages {
            limit: 100,
            used: 100,
            reset: month_end(now),
        };
        assert_eq!(pages.retry_after(now), Some(3600));
        assert_eq!(
            pages.headers(now),
            [
                ("ratelimit-policy", "\"pages\";q=100;w=2678400".to_owned()),
                ("ratelimit", "\"pages\";r=0;t=3600".to_owned())
            ]
        );
        let text = pages.to_string();
        assert!(text.contains("100 of 100 pages"), "{text}");
        let storage = Refusal::Storage {
            limit: 1000,
            used: 990,
        };
        assert_eq!(storage.retry_after(now), None);
        assert_eq!(storage.headers(now)[1].1, "\"storage\";r=10;t=0");

        let allowance = Allowance {
            storage_left: Some((
                10,
                limits,
                Usage {
                    stored_bytes: 990,
                    ..Usage::default()
                },
            )),
            max_upload_bytes: Some(5),
        };
        assert_eq!(allowance.exceeded_by(5), None);
        assert_eq!(
            allowance.exceeded_by(6),
            Some(Refusal::UploadSize { limit: 5 })
        );
        let roomy = Allowance {
            max_upload_bytes: None,
            ..allowance
        };
        assert_eq!(
            roomy.exceeded_by(11),
            Some(Refusal::Storage {
                limit: 1000,
                used: 990
            })
        );
    }
}
