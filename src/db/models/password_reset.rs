use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::now;
use crate::db::schema::password_resets;
use crate::db::{DbConn, DbError};
use crate::with_conn;

/// A one-time password reset link. Only the token's SHA-256 is stored; using the link deletes
/// every link of the account.
pub struct PasswordReset;

impl PasswordReset {
    /// Stores a link for `user_id` that expires after `ttl`.
    pub async fn create(
        conn: &mut DbConn,
        user_id: &str,
        token_hash: &str,
        ttl: TimeDelta,
    ) -> Result<NaiveDateTime, DbError> {
        let at = now();
        let expires_at = at + ttl;
        with_conn!(conn, |c| diesel::insert_into(password_resets::table)
            .values((
                password_resets::token_hash.eq(token_hash),
                password_resets::user_id.eq(user_id),
                password_resets::created_at.eq(at),
                password_resets::expires_at.eq(expires_at),
            ))
            .execute(c)
            .await)?;
        Ok(expires_at)
    }

    /// Deletes every link of an account (its password changed some other way).
    pub async fn delete_for_user(conn: &mut DbConn, user_id: &str) -> Result<(), DbError> {
        with_conn!(conn, |c| diesel::delete(
            password_resets::table.filter(password_resets::user_id.eq(user_id))
        )
        .execute(c)
        .await)?;
        Ok(())
    }

    /// The account a link that has not expired belongs to.
    pub async fn user_of(conn: &mut DbConn, token_hash: &str) -> Result<Option<String>, DbError> {
        let at = now();
        Ok(with_conn!(conn, |c| password_resets::table
            .filter(password_resets::token_hash.eq(token_hash))
            .filter(password_resets::expires_at.gt(at))
            .select(password_resets::user_id)
            .first::<String>(c)
            .await
            .optional())?)
    }

    /// Uses a link: sets the account's password hash and deletes all of its links, in one
    /// transaction. `None` if the link is unknown, used or expired.
    pub async fn consume(
        conn: &mut DbConn,
        token_hash: &str,
        password_hash: &str,
    ) -> Result<Option<String>, DbError> {
        use crate::db::schema::users;
        let at = now();
        Ok(with_conn!(conn, |c| c
            .transaction::<_, diesel::result::Error, _>(async |tx| {
                let Some(user_id) = diesel::delete(
                    password_resets::table
                        .filter(password_resets::token_hash.eq(token_hash))
                        .filter(password_resets::expires_at.gt(at)),
                )
                .returning(password_resets::user_id)
                .get_result::<String>(tx)
                .await
                .optional()?
                else {
                    return Ok(None);
                };
                diesel::update(users::table.find(&user_id))
                    .set((
                        users::password_hash.eq(password_hash),
                        users::updated_at.eq(at),
                    ))
                    .execute(tx)
                    .await?;
                diesel::delete(
                    password_resets::table.filter(password_resets::user_id.eq(&user_id)),
                )
                .execute(tx)
                .await?;
                Ok(Some(user_id))
            })
            .await)?)
    }
}
