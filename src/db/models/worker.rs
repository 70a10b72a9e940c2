use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;

use super::{now, text_enum, utc_time};
use crate::db::schema::{tasks, workers};
use crate::db::{DbConn, DbError};
use crate::with_conn;

text_enum!(
    /// What a worker says it is doing. `lost` is not stored: it is a `running` or `draining`
    /// worker whose heartbeat stopped.
    WorkerState, "worker state" { Running => "running", Draining => "draining", Stopped => "stopped" }
);

/// A worker process as it registered and last reported.
#[derive(Clone, Debug, Queryable, Selectable, Insertable, Serialize)]
#[diesel(table_name = workers, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct WorkerRow {
    pub id: String,
    pub host: String,
    pub pid: i32,
    pub version: String,
    pub engine: String,
    /// `cpu`, or the GPU ordinals, comma-separated.
    pub devices: String,
    pub concurrency: i32,
    #[serde(with = "utc_time")]
    pub started_at: NaiveDateTime,
    #[serde(with = "utc_time")]
    pub heartbeat_at: NaiveDateTime,
    #[diesel(deserialize_as = String, serialize_as = String)]
    pub state: WorkerState,
    /// Asked to drain: take no more work, finish what runs.
    pub drain: bool,
    pub pages_done: i64,
    pub pages_per_sec: f64,
    pub rss_bytes: i64,
    /// `work` (a worker) or `serve` (a web server).
    pub role: String,
}

impl From<WorkerState> for String {
    fn from(state: WorkerState) -> String {
        state.as_str().to_owned()
    }
}

/// What one heartbeat reports.
#[derive(Clone, Copy, Debug)]
pub struct Beat {
    pub state: WorkerState,
    pub pages_done: i64,
    pub pages_per_sec: f64,
    pub rss_bytes: i64,
}

/// A task a worker holds: its id and progress.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct HeldTask {
    pub id: String,
    pub pages_done: i32,
    pub pages_total: Option<i32>,
}

impl WorkerRow {
    /// Registers a starting worker (or re-registers one with the same id).
    pub async fn register(conn: &mut DbConn, row: WorkerRow) -> Result<(), DbError> {
        with_conn!(conn, |c| diesel::insert_into(workers::table)
            .values(row.clone())
            .on_conflict(workers::id)
            .do_update()
            .set((
                workers::heartbeat_at.eq(row.heartbeat_at),
                workers::state.eq(row.state.as_str()),
            ))
            .execute(c)
            .await)?;
        Ok(())
    }

    /// Records a heartbeat and returns whether the worker is asked to drain. `None`: the row
    /// is gone (deleted by hand), so the caller registers again.
    pub async fn beat(conn: &mut DbConn, id: &str, beat: Beat) -> Result<Option<bool>, DbError> {
        Ok(with_conn!(conn, |c| diesel::update(
            workers::table.find(id)
        )
        .set((
            workers::heartbeat_at.eq(now()),
            workers::state.eq(beat.state.as_str()),
            workers::pages_done.eq(beat.pages_done),
            workers::pages_per_sec.eq(beat.pages_per_sec),
            workers::rss_bytes.eq(beat.rss_bytes),
        ))
        .returning(workers::drain)
        .get_result(c)
        .await
        .optional())?)
    }

    /// Asks a worker to drain (`true`) or to take work again (`false`). `false`: no such worker.
    pub async fn set_drain(conn: &mut DbConn, id: &str, drain: bool) -> Result<bool, DbError> {
        let updated = with_conn!(conn, |c| diesel::update(workers::table.find(id))
            .set(workers::drain.eq(drain))
            .execute(c)
            .await)?;
        Ok(updated == 1)
    }

    /// Every registered process of `role` (`work` or `serve`), newest first; those silent for
    /// more than `keep` are left out (and removed).
    pub async fn list(
        conn: &mut DbConn,
        role: &str,
        keep: chrono::TimeDelta,
    ) -> Result<Vec<WorkerRow>, DbError> {
        let before = now() - keep;
        with_conn!(conn, |c| diesel::delete(
            workers::table.filter(workers::heartbeat_at.lt(before))
        )
        .execute(c)
        .await)?;
        Ok(with_conn!(conn, |c| workers::table
            .filter(workers::role.eq(role))
            .select(WorkerRow::as_select())
            .order(workers::started_at.desc())
            .load(c)
            .await)?)
    }

    pub async fn find(conn: &mut DbConn, id: &str) -> Result<WorkerRow, DbError> {
        Ok(with_conn!(conn, |c| workers::table
            .find(id)
            .select(WorkerRow::as_select())
            .first(c)
            .await)?)
    }

    /// The tasks a worker holds now (their leases name it).
    pub async fn held_tasks(conn: &mut DbConn, id: &str) -> Result<Vec<HeldTask>, DbError> {
        let owned = format!("{id}#%");
        let rows: Vec<(String, i32, Option<i32>)> = with_conn!(conn, |c| tasks::table
            .filter(tasks::lease_owner.like(&owned))
            .filter(tasks::status.eq("processing"))
            .select((tasks::id, tasks::pages_done, tasks::pages_total))
            .order(tasks::id)
            .load(c)
            .await)?;
        Ok(rows
            .into_iter()
            .map(|(id, pages_done, pages_total)| HeldTask {
                id,
                pages_done,
                pages_total,
            })
            .collect())
    }
}
