use chrono::{NaiveDateTime, TimeDelta};
use diesel::sql_types::{Text, Timestamp};
use diesel_async::RunQueryDsl;

use super::now;
use crate::db::{DbConn, DbError};
use crate::with_conn;

/// A job that runs in one process at a time: whoever holds its lease (`job_leases`) runs it.
pub struct JobLease;

impl JobLease {
    /// Takes or renews `name` for `holder` until `ttl` from now; `false` while another holder's
    /// lease runs. A holder that dies lets it lapse.
    pub async fn take(
        conn: &mut DbConn,
        name: &str,
        holder: &str,
        ttl: TimeDelta,
    ) -> Result<bool, DbError> {
        let at = now();
        let until: NaiveDateTime = at + ttl;
        // An upsert that only overwrites a lapsed lease or the holder's own.
        let sql = conn.placeholders(
            "INSERT INTO job_leases (name, holder, until) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
             WHERE job_leases.until < ? OR job_leases.holder = excluded.holder",
        );
        let query = diesel::sql_query(sql)
            .bind::<Text, _>(name)
            .bind::<Text, _>(holder)
            .bind::<Timestamp, _>(until)
            .bind::<Timestamp, _>(at);
        let taken = with_conn!(conn, |c| query.execute(c).await)?;
        Ok(taken == 1)
    }
}
