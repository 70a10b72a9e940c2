use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;

use super::{new_id, utc_time};
use crate::db::schema::results;
use crate::db::{DbConn, DbError};
use crate::with_conn;

/// Blob keys by output format (`"html"`, `"txt"`, …), stored as JSON text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct BlobKeys(pub BTreeMap<String, String>);

impl TryFrom<String> for BlobKeys {
    type Error = serde_json::Error;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        serde_json::from_str(&s).map(BlobKeys)
    }
}

/// The outcome of a completed task: one row per task (`task_id` is unique), so a task processed
/// twice can never have two results.
#[derive(Clone, Debug, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = results, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct TaskResult {
    pub id: String,
    pub task_id: String,
    pub user_id: String,
    #[diesel(deserialize_as = String)]
    pub blob_keys: BlobKeys,
    pub page_count: i32,
    pub mean_confidence: Option<f64>,
    #[serde(skip)]
    pub text: String,
    #[serde(with = "utc_time")]
    pub created_at: NaiveDateTime,
}

#[derive(Clone, Debug)]
pub struct NewTaskResult {
    pub user_id: String,
    pub blob_keys: BlobKeys,
    pub page_count: i32,
    pub mean_confidence: Option<f64>,
    pub text: String,
}

#[derive(Insertable)]
#[diesel(table_name = results)]
pub(super) struct ResultRow {
    id: String,
    task_id: String,
    user_id: String,
    blob_keys: String,
    page_count: i32,
    mean_confidence: Option<f64>,
    text: String,
    created_at: NaiveDateTime,
}

impl NewTaskResult {
    pub(super) fn into_row(self, task_id: &str, at: NaiveDateTime) -> ResultRow {
        ResultRow {
            id: new_id(),
            task_id: task_id.to_owned(),
            user_id: self.user_id,
            // A map of strings always serialises.
            blob_keys: serde_json::to_string(&self.blob_keys.0).unwrap_or_else(|_| "{}".into()),
            page_count: self.page_count,
            mean_confidence: self.mean_confidence,
            text: self.text,
            created_at: at,
        }
    }
}

impl TaskResult {
    pub async fn find_by_task(conn: &mut DbConn, task_id: &str) -> Result<TaskResult, DbError> {
        Ok(with_conn!(conn, |c| results::table
            .filter(results::task_id.eq(task_id))
            .select(TaskResult::as_select())
            .first(c)
            .await)?)
    }
}
