use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;

use super::utc_time;
use crate::db::schema::task_events;
use crate::db::{DbConn, DbError};
use crate::with_conn;

/// One step in a task's timeline (see `crate::timeline`).
#[derive(Clone, Debug, PartialEq, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = task_events, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct TaskEvent {
    pub id: i64,
    #[serde(skip)]
    pub task_id: String,
    #[serde(with = "utc_time")]
    #[schema(value_type = String, format = DateTime)]
    pub at: NaiveDateTime,
    /// `queued`, `started`, `page`, `requeued`, `completed`, `failed` or `cancelled`.
    pub kind: String,
    /// What happened, in words safe to show the task's owner.
    pub message: String,
    /// Operators only: the worker that acted.
    pub worker: Option<String>,
    /// Operators only: the attempt it belongs to.
    pub attempt: Option<i32>,
    /// Operators only: an error code or cause.
    pub detail: Option<String>,
}

#[derive(Clone, Debug, Insertable)]
#[diesel(table_name = task_events)]
pub struct NewTaskEvent {
    pub task_id: String,
    pub at: NaiveDateTime,
    pub kind: String,
    pub message: String,
    pub worker: Option<String>,
    pub attempt: Option<i32>,
    pub detail: Option<String>,
}

impl TaskEvent {
    pub async fn insert(conn: &mut DbConn, event: &NewTaskEvent) -> Result<(), DbError> {
        with_conn!(conn, |c| diesel::insert_into(task_events::table)
            .values(event.clone())
            .execute(c)
            .await)?;
        Ok(())
    }

    /// A task's timeline, oldest first: at most `limit` steps.
    pub async fn for_task(
        conn: &mut DbConn,
        task_id: &str,
        limit: i64,
    ) -> Result<Vec<TaskEvent>, DbError> {
        Ok(with_conn!(conn, |c| task_events::table
            .filter(task_events::task_id.eq(task_id))
            .order(task_events::id.asc())
            .limit(limit)
            .select(TaskEvent::as_select())
            .load(c)
            .await)?)
    }
}
