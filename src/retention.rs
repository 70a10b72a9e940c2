//! Retention: how long a finished task is kept, and the purge that erases it afterwards.
//!
//! The days come from the task (chosen at upload), else its owner's account (set by admins),
//! else the `retention.days` setting; 0 at any level keeps the task until it is deleted. The
//! purge runs in the workers' recovery round, in one process at a time (the `retention`
//! lease, renewed each round and lapsing three rounds after its holder dies), and erases each
//! expired task with all it owns, as its owner's delete does (rows, results, checkpoints,
//! timeline, webhook deliveries with their payloads, and the upload when no other task uses
//! it), then writes an audit record `task.purge`. The same round forgets webhook deliveries
//! that finished more than 30 days ago, with their log.

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use diesel::sql_types::{Integer, Text, Timestamp};
use diesel_async::RunQueryDsl;
use futures::FutureExt;

use crate::app::App;
use crate::audit::{Actor, Outcome};
use crate::db::models::{JobLease, Task, TaskStatus, now};
use crate::db::schema::{tasks, users};
use crate::db::{DbConn, DbError};
use crate::with_conn;

/// The longest retention anyone may choose: a hundred years.
pub const MAX_DAYS: i32 = 36_500;
/// Tasks erased per round at most; the rest follow in the next rounds.
const BATCH: i64 = 100;
/// The states a task has finished in.
const ENDED: [&str; 3] = [
    TaskStatus::Completed.as_str(),
    TaskStatus::Failed.as_str(),
    TaskStatus::Cancelled.as_str(),
];

/// The days a finished task is kept: the first of the task's, its owner's and the install's
/// that is set; `None` when that is 0 (kept until deleted).
pub fn days(task: Option<i32>, owner: Option<i32>, install: u32) -> Option<i32> {
    let days = task
        .or(owner)
        .unwrap_or_else(|| i32::try_from(install).unwrap_or(MAX_DAYS));
    (days > 0).then_some(days)
}

/// When `task` will be erased: `None` while it runs, or when it is kept until deleted.
pub fn expires_at(task: &Task, owner: Option<i32>, install: u32) -> Option<NaiveDateTime> {
    let days = days(task.retention_days, owner, install)?;
    Some(task.finished_at? + TimeDelta::days(i64::from(days)))
}

/// Checks a number of days given at upload or by an admin.
pub fn check(days: i64) -> Result<i32, String> {
    i32::try_from(days)
        .ok()
        .filter(|d| (0..=MAX_DAYS).contains(d))
        .ok_or_else(rule)
}

/// Reads a number of days from a form field.
pub fn parse(text: &str) -> Result<i32, String> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| rule())
        .and_then(check)
}

fn rule() -> String {
    format!("retention_days: a whole number of days from 0 (keep until deleted) to {MAX_DAYS}")
}

/// A finished task due for erasure, with the days it was kept.
#[derive(QueryableByName)]
struct Expired {
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Integer)]
    days: i32,
}

/// Up to `limit` finished tasks past their retention at `at`, in three reads that each walk
/// an index over the tasks that can be due only: those that chose their own days
/// (`tasks_own_retention_idx`), those of each account with its own (`tasks_user_finished_idx`),
/// and the rest, which finished before the install's cutoff (`tasks_finished_stats_idx`).
async fn expired(
    c: &mut DbConn,
    at: NaiveDateTime,
    install: Option<i32>,
    limit: i64,
) -> Result<Vec<Expired>, DbError> {
    let mut due = own_days_due(c, at, limit).await?;
    let accounts: Vec<(String, Option<i32>)> = with_conn!(c, |c| users::table
        .filter(users::retention_days.gt(0))
        .select((users::id, users::retention_days))
        .load(c)
        .await)?;
    let mut classes: Vec<(Option<String>, i32)> = accounts
        .into_iter()
        .filter_map(|(id, days)| Some((Some(id), days?)))
        .collect();
    classes.extend(install.map(|days| (None, days)));
    for (account, days) in classes {
        let room = limit - due.len() as i64;
        if room <= 0 {
            break;
        }
        let cutoff = at - TimeDelta::days(i64::from(days));
        let found: Vec<(String, String)> = with_conn!(c, |c| {
            let mut query = tasks::table
                .inner_join(users::table.on(users::id.eq(tasks::user_id)))
                .filter(tasks::status.eq_any(ENDED))
                .filter(tasks::finished_at.lt(cutoff))
                .filter(tasks::retention_days.is_null())
                .select((tasks::user_id, tasks::id))
                .order(tasks::finished_at.asc())
                .limit(room)
                .into_boxed();
            query = match &account {
                Some(id) => query.filter(tasks::user_id.eq(id.clone())),
                None => query.filter(users::retention_days.is_null()),
            };
            query.load(c).await
        })?;
        due.extend(
            found
                .into_iter()
                .map(|(user_id, id)| Expired { user_id, id, days }),
        );
    }
    Ok(due)
}

/// Tasks that chose their own days (above 0) and are past them.
async fn own_days_due(
    c: &mut DbConn,
    at: NaiveDateTime,
    limit: i64,
) -> Result<Vec<Expired>, DbError> {
    let past = match c {
        DbConn::Postgres(_) => "finished_at + retention_days * INTERVAL '1 day' < ?",
        DbConn::Sqlite(_) => "julianday(finished_at) + retention_days < julianday(?)",
    };
    let sql = c.placeholders(&format!(
        "SELECT user_id, id, retention_days AS days FROM tasks \
         WHERE retention_days IS NOT NULL AND retention_days > 0 \
         AND status IN ('completed', 'failed', 'cancelled') AND finished_at IS NOT NULL \
         AND {past} ORDER BY finished_at LIMIT {limit}"
    ));
    let query = diesel::sql_query(sql).bind::<Timestamp, _>(at);
    Ok(with_conn!(c, |c| query.load::<Expired>(c).await)?)
}

/// One round of the purge as `holder` (a process name), which holds the lease for `lease` and
/// renews it each round: `None` when another process holds it, else how many tasks were
/// erased. Two processes purging at once (a round longer than the lease) would only race to
/// the same deletes: the loser finds the task gone and skips it.
pub async fn purge(app: &App, holder: &str, lease: TimeDelta) -> Result<Option<usize>, DbError> {
    let name = holder.to_owned();
    let ours = app
        .db
        .run(move |c| async move { JobLease::take(c, "retention", &name, lease).await }.boxed())
        .await?;
    if !ours {
        return Ok(None);
    }
    let forgotten = crate::webhooks::delivery::forget_old(app).await?;
    if forgotten > 0 {
        tracing::info!(
            deliveries = forgotten,
            "forgot webhook deliveries past their keeping"
        );
    }
    let install = i32::try_from(app.settings.get().retention_days).unwrap_or(MAX_DAYS);
    let install = (install > 0).then_some(install);
    let at = now();
    let due = app
        .db
        .run(move |c| async move { expired(c, at, install, BATCH).await }.boxed())
        .await?;
    let mut erased = 0;
    for task in due {
        match crate::tasks::delete(app, &task.user_id, &task.id).await {
            Ok(()) => {}
            // Its owner deleted it meanwhile.
            Err(crate::tasks::DeleteError::NotFound) => continue,
            Err(e) => {
                tracing::warn!(task = %task.id, error = %e, "cannot erase an expired task");
                break;
            }
        }
        erased += 1;
        let detail = serde_json::json!({"owner": task.user_id, "days": task.days});
        let actor = Actor::system("retention");
        if let Err(e) = crate::audit::record(
            app,
            &actor,
            "task.purge",
            Some(&task.id),
            Outcome::Success,
            Some(detail),
        )
        .await
        {
            tracing::error!(task = %task.id, error = %e, "erased an expired task but could not audit it");
        }
    }
    if erased > 0 {
        tracing::info!(erased, "erased tasks past their retention");
    }
    Ok(Some(erased))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_then_the_owner_then_the_install_decide_and_zero_keeps() {
        assert_eq!(days(Some(3), Some(7), 30), Some(3));
        assert_eq!(days(None, Some(7), 30), Some(7));
        assert_eq!(days(None, None, 30), Some(30));
        assert_eq!(days(Some(0), Some(7), 30), None);
        assert_eq!(days(None, Some(0), 30), None);
        assert_eq!(days(None, None, 0), None);
        assert_eq!(days(Some(2), None, 0), Some(2));
    }

    #[test]
    fn days_out_of_range_are_refused_with_the_rule() {
        assert_eq!(check(0), Ok(0));
        assert_eq!(check(36_500), Ok(36_500));
        for bad in [-1, 36_501, i64::MAX] {
            assert!(check(bad).unwrap_err().contains("0 (keep until deleted)"));
        }
        assert_eq!(parse(" 30 "), Ok(30));
        for bad in ["", "7d", "1.5", "-3"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
