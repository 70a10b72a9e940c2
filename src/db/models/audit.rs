use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;

use super::utc_time;
use crate::db::schema::{audit_head, audit_log};
use crate::db::{DbConn, DbError};
use crate::with_conn;

/// One row of the audit log, as stored (see `crate::audit` for how the chain is made).
#[derive(
    Clone, Debug, PartialEq, Queryable, Selectable, Insertable, Serialize, utoipa::ToSchema,
)]
#[diesel(table_name = audit_log, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct AuditRow {
    /// 1, 2, 3, … with no gaps.
    pub seq: i64,
    #[serde(with = "utc_time")]
    #[schema(value_type = String, format = DateTime)]
    pub at: NaiveDateTime,
    /// The account that acted; `null` for the shell or an unknown caller.
    pub actor_id: Option<String>,
    /// Who acted, in words: an email, `shell`, or `anonymous`.
    pub actor: String,
    pub client: Option<String>,
    pub user_agent: Option<String>,
    /// What was done, e.g. `login`, `token.create`, `task.retry`, `result.download`.
    pub action: String,
    /// What it was done to: a task, token, worker or account id, or an email.
    pub target: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// More, as JSON: a bulk action's filter, a setting's old and new values, …
    pub detail: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRow {
    /// The newest row.
    pub async fn last(conn: &mut DbConn) -> Result<Option<AuditRow>, DbError> {
        Ok(with_conn!(conn, |c| audit_log::table
            .order(audit_log::seq.desc())
            .select(AuditRow::as_select())
            .first(c)
            .await
            .optional())?)
    }

    /// Appends `row` and records it as the head, in one transaction; `false` when another
    /// writer took its `seq` first.
    pub async fn append(conn: &mut DbConn, row: &AuditRow) -> Result<bool, DbError> {
        let head = (
            audit_head::id.eq(1),
            audit_head::seq.eq(row.seq),
            audit_head::hash.eq(&row.hash),
        );
        match with_conn!(conn, |c| c
            .transaction::<_, diesel::result::Error, _>(async |tx| {
                diesel::insert_into(audit_log::table)
                    .values(row.clone())
                    .execute(tx)
                    .await?;
                diesel::insert_into(audit_head::table)
                    .values(head)
                    .on_conflict(audit_head::id)
                    .do_update()
                    .set((audit_head::seq.eq(row.seq), audit_head::hash.eq(&row.hash)))
                    .execute(tx)
                    .await
            })
            .await)
        {
            Ok(_) => Ok(true),
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The `seq` and hash that the last append recorded as the newest row.
    pub async fn head(conn: &mut DbConn) -> Result<Option<(i64, String)>, DbError> {
        Ok(with_conn!(conn, |c| audit_head::table
            .select((audit_head::seq, audit_head::hash))
            .first(c)
            .await
            .optional())?)
    }

    /// Up to `limit` rows after `after` (a `seq`), oldest first.
    pub async fn page(conn: &mut DbConn, after: i64, limit: i64) -> Result<Vec<AuditRow>, DbError> {
        Ok(with_conn!(conn, |c| audit_log::table
            .filter(audit_log::seq.gt(after))
            .order(audit_log::seq.asc())
            .limit(limit)
            .select(AuditRow::as_select())
            .load(c)
            .await)?)
    }

    /// Up to `limit` rows before `before` (a `seq`; none: the newest), newest first; only
    /// those of `action` when given.
    pub async fn newest(
        conn: &mut DbConn,
        before: Option<i64>,
        action: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditRow>, DbError> {
        Ok(with_conn!(conn, |c| {
            let mut query = audit_log::table
                .order(audit_log::seq.desc())
                .limit(limit)
                .select(AuditRow::as_select())
                .into_boxed();
            if let Some(before) = before {
                query = query.filter(audit_log::seq.lt(before));
            }
            if let Some(action) = action {
                query = query.filter(audit_log::action.eq(action));
            }
            query.load(c).await
        })?)
    }
}
