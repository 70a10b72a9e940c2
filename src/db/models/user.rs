use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;

use super::{new_id, now, text_enum, utc_time};
use crate::db::schema::users;
use crate::db::{DbConn, DbError, affected};
use crate::with_conn;

text_enum!(
    /// `user`: their own tasks. `operator`: also sees every task and worker, retries, cancels,
    /// pauses the queue and drains workers. `admin`: also manages accounts and settings.
    Role, "role" { User => "user", Operator => "operator", Admin => "admin" }
);

#[derive(Clone, Debug, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct User {
    pub id: String,
    pub email: String,
    #[serde(skip)]
    pub password_hash: String,
    #[diesel(deserialize_as = String)]
    pub role: Role,
    pub disabled: bool,
    #[serde(with = "utc_time")]
    pub created_at: NaiveDateTime,
    #[serde(with = "utc_time")]
    pub updated_at: NaiveDateTime,
    /// Days a finished task of this account is kept; `None`: the `retention.days` setting; 0:
    /// until it is deleted.
    #[serde(skip)]
    pub retention_days: Option<i32>,
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub password_hash: &'a str,
    pub role: Role,
}

#[derive(Insertable)]
#[diesel(table_name = users)]
struct UserRow<'a> {
    id: String,
    email: String,
    password_hash: &'a str,
    role: &'static str,
    disabled: bool,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

/// Emails are compared case-insensitively: they are stored trimmed and lower-cased, and a unique
/// index on `lower(email)` enforces it in the database too.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Operators and admins: the fleet's tasks, queue and workers.
    pub fn can_operate(&self) -> bool {
        matches!(self.role, Role::Operator | Role::Admin)
    }

    /// Fails with `Conflict("email")` when the address is taken, in any letter case.
    pub async fn create(conn: &mut DbConn, new: NewUser<'_>) -> Result<User, DbError> {
        let at = now();
        let row = UserRow {
            id: new_id(),
            email: normalize_email(new.email),
            password_hash: new.password_hash,
            role: new.role.as_str(),
            disabled: false,
            created_at: at,
            updated_at: at,
        };
        with_conn!(conn, |c| diesel::insert_into(users::table)
            .values(&row)
            .returning(User::as_returning())
            .get_result(c)
            .await)
        .map_err(DbError::on_unique("email"))
    }

    pub async fn find(conn: &mut DbConn, id: &str) -> Result<User, DbError> {
        Ok(with_conn!(conn, |c| users::table
            .find(id)
            .select(User::as_select())
            .first(c)
            .await)?)
    }

    pub async fn find_by_email(conn: &mut DbConn, email: &str) -> Result<Option<User>, DbError> {
        let email = normalize_email(email);
        // No account has one, and PostgreSQL refuses the string.
        if email.contains('\0') {
            return Ok(None);
        }
        Ok(with_conn!(conn, |c| users::table
            .filter(users::email.eq(&email))
            .select(User::as_select())
            .first(c)
            .await
            .optional())?)
    }

    /// Users in creation order, `limit` at a time after the cursor `after` (a user id).
    pub async fn list(
        conn: &mut DbConn,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<User>, DbError> {
        let after = after.unwrap_or("");
        Ok(with_conn!(conn, |c| users::table
            .filter(users::id.gt(after))
            .order(users::id.asc())
            .limit(limit)
            .select(User::as_select())
            .load(c)
            .await)?)
    }

    pub async fn count(conn: &mut DbConn) -> Result<i64, DbError> {
        Ok(with_conn!(conn, |c| users::table
            .count()
            .get_result(c)
            .await)?)
    }

    pub async fn set_role(conn: &mut DbConn, id: &str, role: Role) -> Result<User, DbError> {
        Ok(with_conn!(conn, |c| diesel::update(users::table.find(id))
            .set((users::role.eq(role.as_str()), users::updated_at.eq(now())))
            .returning(User::as_returning())
            .get_result(c)
            .await)?)
    }

    pub async fn set_disabled(
        conn: &mut DbConn,
        id: &str,
        disabled: bool,
    ) -> Result<User, DbError> {
        Ok(with_conn!(conn, |c| diesel::update(users::table.find(id))
            .set((users::disabled.eq(disabled), users::updated_at.eq(now())))
            .returning(User::as_returning())
            .get_result(c)
            .await)?)
    }

    /// Sets the account's retention in days (`None`: the install's).
    pub async fn set_retention(
        conn: &mut DbConn,
        id: &str,
        days: Option<i32>,
    ) -> Result<User, DbError> {
        Ok(with_conn!(conn, |c| diesel::update(users::table.find(id))
            .set((users::retention_days.eq(days), users::updated_at.eq(now())))
            .returning(User::as_returning())
            .get_result(c)
            .await)?)
    }

    pub async fn set_password_hash(conn: &mut DbConn, id: &str, hash: &str) -> Result<(), DbError> {
        affected(with_conn!(conn, |c| diesel::update(users::table.find(id))
            .set((users::password_hash.eq(hash), users::updated_at.eq(now())))
            .execute(c)
            .await)?)
    }

    /// Deletes the user; their tokens, files, tasks and results go with them (ON DELETE CASCADE).
    /// The caller removes the blobs first.
    pub async fn delete(conn: &mut DbConn, id: &str) -> Result<(), DbError> {
        affected(with_conn!(conn, |c| diesel::delete(users::table.find(id))
            .execute(c)
            .await)?)
    }

    /// Accounts whose email contains `search` (any case), by id after `after`.
    pub async fn search(
        conn: &mut DbConn,
        search: Option<&str>,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<User>, DbError> {
        Ok(with_conn!(conn, |c| {
            let mut query = users::table
                .filter(users::id.gt(after.unwrap_or("").to_owned()))
                .order(users::id.asc())
                .limit(limit)
                .select(User::as_select())
                .into_boxed();
            if let Some(search) = search {
                let pattern = format!(
                    "%{}%",
                    search
                        .to_lowercase()
                        .replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_")
                );
                query = query.filter(users::email.like(pattern).escape('\\'));
            }
            query.load(c).await
        })?)
    }

    /// Per account of `ids`: tasks, the pages counted against the quota of the month of `at`
    /// (read by tasks that ended in it, and held by unfinished ones), and bytes uploaded (as
    /// `crate::quota::usage_of` counts them).
    pub async fn usage(
        conn: &mut DbConn,
        ids: &[String],
        at: NaiveDateTime,
    ) -> Result<std::collections::HashMap<String, Usage>, DbError> {
        use crate::db::schema::tasks;
        use diesel::dsl::count_star;
        let tasks: Vec<(String, i64)> = with_conn!(conn, |c| tasks::table
            .filter(tasks::user_id.eq_any(ids))
            .group_by(tasks::user_id)
            .select((tasks::user_id, count_star()))
            .load(c)
            .await)?;
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let quota = crate::quota::usage_of(conn, &refs, at).await?;
        let logins: Vec<(Option<String>, Option<NaiveDateTime>)> = with_conn!(conn, |c| {
            use crate::db::schema::audit_log;
            audit_log::table
                .filter(audit_log::actor_id.eq_any(ids))
                .filter(audit_log::action.eq_any(["login", "register"]))
                .filter(audit_log::outcome.eq("success"))
                .group_by(audit_log::actor_id)
                .select((audit_log::actor_id, diesel::dsl::max(audit_log::at)))
                .load(c)
                .await
        })?;
        let mut usage: std::collections::HashMap<String, Usage> = ids
            .iter()
            .map(|id| (id.clone(), Usage::default()))
            .collect();
        for (id, n) in tasks {
            usage.entry(id).or_default().tasks = n;
        }
        for (id, used) in quota {
            let entry = usage.entry(id).or_default();
            entry.pages_this_month = used.pages() as i64;
            entry.stored_bytes = used.stored_bytes as i64;
        }
        for (id, at) in logins {
            if let Some(id) = id {
                usage.entry(id).or_default().last_login = at;
            }
        }
        Ok(usage)
    }
}

/// What an account uses, and when it last signed in (from the audit log).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub tasks: i64,
    pub pages_this_month: i64,
    pub stored_bytes: i64,
    #[serde(with = "utc_time::option")]
    pub last_login: Option<NaiveDateTime>,
}
