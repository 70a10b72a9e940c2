use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;

use super::{new_id, now, utc_time};
use crate::db::schema::invites;
use crate::db::{DbConn, DbError};
use crate::with_conn;

/// An invite link: single use, expiring, optionally for one email (see `crate::auth::invites`).
#[derive(Clone, Debug, PartialEq, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = invites, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct Invite {
    pub id: String,
    /// Only this email may use it; `null`: anyone with the link.
    pub email: Option<String>,
    /// The admin who made it.
    pub created_by: Option<String>,
    #[serde(with = "utc_time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: NaiveDateTime,
    #[serde(with = "utc_time")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: NaiveDateTime,
    #[serde(with = "utc_time::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub used_at: Option<NaiveDateTime>,
    /// The account made with it.
    pub used_by: Option<String>,
}

impl Invite {
    pub async fn create(
        conn: &mut DbConn,
        token_hash: &str,
        email: Option<&str>,
        created_by: Option<&str>,
        expires_at: NaiveDateTime,
    ) -> Result<Invite, DbError> {
        let values = (
            invites::id.eq(new_id()),
            invites::token_hash.eq(token_hash.to_owned()),
            invites::email.eq(email.map(str::to_owned)),
            invites::created_by.eq(created_by.map(str::to_owned)),
            invites::created_at.eq(now()),
            invites::expires_at.eq(expires_at),
        );
        Ok(with_conn!(conn, |c| diesel::insert_into(invites::table)
            .values(values.clone())
            .returning(Invite::as_returning())
            .get_result(c)
            .await)?)
    }

    /// Invites neither used nor expired, newest first.
    pub async fn pending(conn: &mut DbConn, limit: i64) -> Result<Vec<Invite>, DbError> {
        let at = now();
        Ok(with_conn!(conn, |c| invites::table
            .filter(invites::used_at.is_null())
            .filter(invites::expires_at.gt(at))
            .order(invites::created_at.desc())
            .limit(limit)
            .select(Invite::as_select())
            .load(c)
            .await)?)
    }

    /// Revokes an invite; `false` if there is none with this id.
    pub async fn delete(conn: &mut DbConn, id: &str) -> Result<bool, DbError> {
        let deleted = with_conn!(conn, |c| diesel::delete(invites::table.find(id))
            .execute(c)
            .await)?;
        Ok(deleted > 0)
    }

    /// Marks the invite with this token used, if it is unused, unexpired, and for `email` or
    /// anyone: one conditional update, so that two registrations cannot both use it.
    pub async fn claim(
        conn: &mut DbConn,
        token_hash: &str,
        email: &str,
    ) -> Result<Option<Invite>, DbError> {
        let at = now();
        Ok(with_conn!(conn, |c| diesel::update(
            invites::table
                .filter(invites::token_hash.eq(token_hash))
                .filter(invites::used_at.is_null())
                .filter(invites::expires_at.gt(at))
                .filter(invites::email.is_null().or(invites::email.eq(email))),
        )
        .set(invites::used_at.eq(Some(at)))
        .returning(Invite::as_returning())
        .get_result(c)
        .await
        .optional())?)
    }

    /// After a claim: the account made with it, or, when making the account failed, the
    /// invite usable again.
    pub async fn settle(conn: &mut DbConn, id: &str, used_by: Option<&str>) -> Result<(), DbError> {
        let used_at = used_by.map(|_| now());
        with_conn!(conn, |c| diesel::update(invites::table.find(id))
            .set((
                invites::used_by.eq(used_by.map(str::to_owned)),
                invites::used_at.eq(used_at),
            ))
            .execute(c)
            .await)?;
        Ok(())
    }
}
