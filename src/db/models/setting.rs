use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::now;
use crate::db::schema::settings;
use crate::db::{DbConn, DbError};
use crate::with_conn;

/// A runtime setting: one JSON value under a key, read by every instance.
#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = settings, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct Setting {
    pub key: String,
    pub value: String,
    pub updated_at: NaiveDateTime,
}

impl Setting {
    pub async fn get(conn: &mut DbConn, key: &str) -> Result<Option<Setting>, DbError> {
        Ok(with_conn!(conn, |c| settings::table
            .find(key)
            .select(Setting::as_select())
            .first(c)
            .await
            .optional())?)
    }

    /// Sets `key` to `value` (JSON), whether or not it was set before.
    pub async fn put(conn: &mut DbConn, key: &str, value: &str) -> Result<(), DbError> {
        let row = Setting {
            key: key.to_owned(),
            value: value.to_owned(),
            updated_at: now(),
        };
        with_conn!(conn, |c| diesel::insert_into(settings::table)
            .values(row.clone())
            .on_conflict(settings::key)
            .do_update()
            .set((
                settings::value.eq(&row.value),
                settings::updated_at.eq(row.updated_at),
            ))
            .execute(c)
            .await)?;
        Ok(())
    }

    /// Sets each key to its value (JSON), or removes it where the value is `None`, in one
    /// transaction: all of them or none.
    pub async fn write_all(
        conn: &mut DbConn,
        writes: &[(&str, Option<String>)],
    ) -> Result<(), DbError> {
        let at = now();
        with_conn!(conn, |c| c
            .transaction::<_, diesel::result::Error, _>(async |tx| {
                for (key, value) in writes {
                    match value {
                        Some(value) => {
                            diesel::insert_into(settings::table)
                                .values((
                                    settings::key.eq(*key),
                                    settings::value.eq(value),
                                    settings::updated_at.eq(at),
                                ))
                                .on_conflict(settings::key)
                                .do_update()
                                .set((settings::value.eq(value), settings::updated_at.eq(at)))
                                .execute(tx)
                                .await?;
                        }
                        None => {
                            diesel::delete(settings::table.find(*key))
                                .execute(tx)
                                .await?;
                        }
                    }
                }
                Ok(())
            })
            .await)?;
        Ok(())
    }

    /// Every stored setting.
    pub async fn all(conn: &mut DbConn) -> Result<Vec<Setting>, DbError> {
        Ok(with_conn!(conn, |c| settings::table
            .select(Setting::as_select())
            .order(settings::key)
            .load(c)
            .await)?)
    }

    /// Removes `key`; `false` when it was not set.
    pub async fn delete(conn: &mut DbConn, key: &str) -> Result<bool, DbError> {
        let deleted = with_conn!(conn, |c| diesel::delete(settings::table.find(key))
            .execute(c)
            .await)?;
        Ok(deleted > 0)
    }
}
