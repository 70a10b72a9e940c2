use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::db::schema::{backups, tasks, users};
use crate::db::{DbConn, DbError};
use crate::with_conn;

/// A backup `ocrd backup create` finished. Only successes are recorded: the newest row's
/// time is the backup age operators alert on.
#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = backups)]
pub struct Backup {
    pub id: String,
    pub created_at: NaiveDateTime,
    /// Where the archive was written, as the host that made it saw the path.
    pub archive: String,
    pub bytes: i64,
    pub blobs: i64,
    pub schema_version: String,
}

impl Backup {
    pub async fn record(conn: &mut DbConn, backup: Backup) -> Result<(), DbError> {
        with_conn!(conn, |c| diesel::insert_into(backups::table)
            .values(backup.clone())
            .execute(c)
            .await)?;
        Ok(())
    }

    /// When the newest recorded backup was made.
    pub async fn last_success(conn: &mut DbConn) -> Result<Option<NaiveDateTime>, DbError> {
        Ok(with_conn!(conn, |c| backups::table
            .select(diesel::dsl::max(backups::created_at))
            .first::<Option<NaiveDateTime>>(c)
            .await)?)
    }

    /// How many accounts and tasks the database holds: what a restore would replace.
    pub async fn install_rows(conn: &mut DbConn) -> Result<(i64, i64), DbError> {
        let accounts = with_conn!(conn, |c| users::table.count().get_result::<i64>(c).await)?;
        let jobs = with_conn!(conn, |c| tasks::table.count().get_result::<i64>(c).await)?;
        Ok((accounts, jobs))
    }
}
