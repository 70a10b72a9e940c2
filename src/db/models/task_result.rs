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
    /// Pages read from a PDF's own text layer rather than recognised.
    pub text_layer_pages: i32,
}

#[derive(Clone, Debug)]
pub struct NewTaskResult {
    pub user_id: String,
    pub blob_keys: BlobKeys,
    pub page_count: i32,
    pub mean_confidence: Option<f64>,
    pub text: String,
    pub text_layer_pages: i32,
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
    text_layer_pages: i32,
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
            text_layer_pages: self.text_layer_pages,
        }
    }
}

impl TaskResult {
    /// Whether the worker stored a thumbnail of the first page.
    pub fn has_thumbnail(&self) -> bool {
        self.blob_keys
            .0
            .contains_key(crate::render::thumbnail::EXTENSION)
    }

    /// Records one more object of a task's result (a format made on demand). `false`: the
    /// task has no result row (any more). Two at once may keep only one key; the other object
    /// is found again by its fixed key.
    pub async fn add_blob_key(
        conn: &mut DbConn,
        task_id: &str,
        ext: &str,
        key: &str,
    ) -> Result<bool, DbError> {
        let found: Option<String> = with_conn!(conn, |c| results::table
            .filter(results::task_id.eq(task_id))
            .select(results::blob_keys)
            .first(c)
            .await
            .optional())?;
        let Some(keys) = found else {
            return Ok(false);
        };
        let mut keys = BlobKeys::try_from(keys)
            .map_err(|e| DbError::Invalid(format!("a result's blob keys: {e}")))?;
        keys.0.insert(ext.to_owned(), key.to_owned());
        let text = serde_json::to_string(&keys.0).unwrap_or_else(|_| "{}".into());
        let updated = with_conn!(conn, |c| diesel::update(
            results::table.filter(results::task_id.eq(task_id))
        )
        .set(results::blob_keys.eq(&text))
        .execute(c)
        .await)?;
        Ok(updated == 1)
    }

    /// Of these tasks, those whose result has a thumbnail.
    pub async fn with_thumbnails(
        conn: &mut DbConn,
        task_ids: &[&str],
    ) -> Result<std::collections::HashSet<String>, DbError> {
        let rows: Vec<(String, String)> = with_conn!(conn, |c| results::table
            .filter(results::task_id.eq_any(task_ids))
            .select((results::task_id, results::blob_keys))
            .load(c)
            .await)?;
        Ok(rows
            .into_iter()
            .filter(|(_, keys)| {
                BlobKeys::try_from(keys.clone())
                    .is_ok_and(|k| k.0.contains_key(crate::render::thumbnail::EXTENSION))
            })
            .map(|(id, _)| id)
            .collect())
    }

    pub async fn find_by_task(conn: &mut DbConn, task_id: &str) -> Result<TaskResult, DbError> {
        Ok(with_conn!(conn, |c| results::table
            .filter(results::task_id.eq(task_id))
            .select(TaskResult::as_select())
            .first(c)
            .await)?)
    }
}
