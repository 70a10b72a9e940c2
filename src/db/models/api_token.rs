use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;

use super::{User, new_id, now, utc_time};
use crate::db::schema::{api_tokens, users};
use crate::db::{DbConn, DbError, affected};
use crate::with_conn;

/// An API token. Only its hash is stored; `prefix` is the first characters, for display.
#[derive(Clone, Debug, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = api_tokens, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct ApiToken {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub prefix: String,
    #[serde(skip)]
    pub token_hash: String,
    #[serde(with = "utc_time")]
    pub created_at: NaiveDateTime,
    #[serde(with = "utc_time::option")]
    pub last_used_at: Option<NaiveDateTime>,
    #[serde(with = "utc_time::option")]
    pub expires_at: Option<NaiveDateTime>,
    /// What it may do: a comma-separated subset of `read`, `write`, `admin`.
    pub scopes: String,
}

#[derive(Insertable)]
#[diesel(table_name = api_tokens)]
pub struct NewApiToken<'a> {
    pub user_id: &'a str,
    pub name: &'a str,
    pub prefix: &'a str,
    pub token_hash: &'a str,
    pub expires_at: Option<NaiveDateTime>,
    pub scopes: &'a str,
}

impl ApiToken {
    /// Whether the token carries `scope`.
    pub fn allows(&self, scope: &str) -> bool {
        self.scopes.split(',').any(|s| s.trim() == scope)
    }

    pub async fn create(conn: &mut DbConn, new: NewApiToken<'_>) -> Result<ApiToken, DbError> {
        let values = (
            api_tokens::id.eq(new_id()),
            api_tokens::created_at.eq(now()),
            new,
        );
        with_conn!(conn, |c| diesel::insert_into(api_tokens::table)
            .values(values)
            .returning(ApiToken::as_returning())
            .get_result(c)
            .await)
        .map_err(DbError::on_unique("token"))
    }

    /// The token with this hash and its owner, if it has not expired and the owner is enabled.
    pub async fn authenticate(
        conn: &mut DbConn,
        token_hash: &str,
    ) -> Result<Option<(ApiToken, User)>, DbError> {
        let at = now();
        Ok(with_conn!(conn, |c| api_tokens::table
            .inner_join(users::table)
            .filter(api_tokens::token_hash.eq(token_hash))
            .filter(users::disabled.eq(false))
            .filter(
                api_tokens::expires_at
                    .is_null()
                    .or(api_tokens::expires_at.gt(at))
            )
            .select((ApiToken::as_select(), User::as_select()))
            .first(c)
            .await
            .optional())?)
    }

    pub async fn touch(conn: &mut DbConn, id: &str) -> Result<(), DbError> {
        with_conn!(conn, |c| diesel::update(api_tokens::table.find(id))
            .set(api_tokens::last_used_at.eq(now()))
            .execute(c)
            .await)?;
        Ok(())
    }

    pub async fn list_for_user(conn: &mut DbConn, user_id: &str) -> Result<Vec<ApiToken>, DbError> {
        Ok(with_conn!(conn, |c| api_tokens::table
            .filter(api_tokens::user_id.eq(user_id))
            .order(api_tokens::id.desc())
            .select(ApiToken::as_select())
            .load(c)
            .await)?)
    }

    /// Revokes a token of this user's; another user's token is `NotFound`.
    pub async fn delete(conn: &mut DbConn, user_id: &str, id: &str) -> Result<(), DbError> {
        affected(with_conn!(conn, |c| diesel::delete(
            api_tokens::table
                .filter(api_tokens::id.eq(id))
                .filter(api_tokens::user_id.eq(user_id))
        )
        .execute(c)
        .await)?)
    }

    /// Revokes every token of an account (it was disabled).
    pub async fn delete_all_for_user(conn: &mut DbConn, user_id: &str) -> Result<usize, DbError> {
        Ok(with_conn!(conn, |c| diesel::delete(
            api_tokens::table.filter(api_tokens::user_id.eq(user_id))
        )
        .execute(c)
        .await)?)
    }
}
