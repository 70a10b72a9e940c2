use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;

use super::utc_time;
use crate::db::schema::files;
use crate::db::{DbConn, DbError, affected};
use crate::with_conn;

/// An uploaded document. `content_type` was sniffed from the bytes, never taken from the client.
#[derive(Clone, Debug, Queryable, Selectable, Identifiable, Insertable, Serialize)]
#[diesel(table_name = files, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct File {
    pub id: String,
    pub user_id: String,
    #[serde(skip)]
    pub blob_key: String,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub page_count: Option<i32>,
    #[serde(with = "utc_time")]
    pub created_at: NaiveDateTime,
}

/// What task views show of a task's file.
#[derive(Clone, Debug, Default, Queryable, Selectable)]
#[diesel(table_name = files, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct FileSummary {
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
}

/// A file about to be recorded; its id is chosen before upload because the blob key contains it.
pub type NewFile = File;

impl File {
    pub async fn find(conn: &mut DbConn, id: &str) -> Result<File, DbError> {
        Ok(with_conn!(conn, |c| files::table
            .find(id)
            .select(File::as_select())
            .first(c)
            .await)?)
    }

    /// File summaries by file id, for listing tasks.
    pub async fn summaries(
        conn: &mut DbConn,
        ids: &[&str],
    ) -> Result<std::collections::HashMap<String, FileSummary>, DbError> {
        let rows: Vec<(String, FileSummary)> = with_conn!(conn, |c| files::table
            .filter(files::id.eq_any(ids))
            .select((files::id, FileSummary::as_select()))
            .load(c)
            .await)?;
        Ok(rows.into_iter().collect())
    }

    pub async fn set_page_count(conn: &mut DbConn, id: &str, pages: i32) -> Result<(), DbError> {
        affected(with_conn!(conn, |c| diesel::update(files::table.find(id))
            .set(files::page_count.eq(pages))
            .execute(c)
            .await)?)
    }
}
