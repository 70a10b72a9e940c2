use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;

use super::{
    File, FileSummary, NewFile, NewTaskResult, TaskResult, new_id, now, text_enum, utc_time,
};
use crate::db::schema::{files, results, search_pages, tasks};
use crate::db::{DbConn, DbError};
use crate::tasks::PageWarning;
use crate::with_conn;

text_enum!(
    /// `queued → processing → completed | failed`, and `cancelled` from either of the first two.
    TaskStatus, "task status" {
        Queued => "queued",
        Processing => "processing",
        Completed => "completed",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

#[derive(Clone, Debug, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = tasks, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct Task {
    pub id: String,
    pub user_id: String,
    pub file_id: String,
    #[diesel(deserialize_as = String)]
    pub status: TaskStatus,
    pub engine: String,
    /// JSON text: the per-task options (formats, OCR policy, …).
    pub options: String,
    pub priority: i32,
    pub attempts: i32,
    pub max_attempts: i32,
    #[serde(skip)]
    pub lease_owner: Option<String>,
    #[serde(skip)]
    pub lease_expires_at: Option<NaiveDateTime>,
    pub pages_done: i32,
    pub pages_total: Option<i32>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub idempotency_key: Option<String>,
    #[serde(with = "utc_time")]
    pub created_at: NaiveDateTime,
    #[serde(with = "utc_time")]
    pub updated_at: NaiveDateTime,
    #[serde(with = "utc_time::option")]
    pub started_at: Option<NaiveDateTime>,
    #[serde(with = "utc_time::option")]
    pub finished_at: Option<NaiveDateTime>,
    /// JSON text: the pages that failed in a task that still completed ([`PageWarning`]s).
    #[serde(skip)]
    pub warnings: Option<String>,
    /// Days the task is kept once finished, as chosen at upload; `None`: its owner's.
    #[serde(skip)]
    pub retention_days: Option<i32>,
    /// Where the task's end is posted, as given at upload (besides the owner's webhooks).
    #[serde(skip)]
    pub callback_url: Option<String>,
}

impl Task {
    /// The pages that failed in a task that still completed.
    pub fn page_warnings(&self) -> Vec<PageWarning> {
        self.warnings
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_default()
    }
}

/// What a new task needs besides its file.
#[derive(Clone, Debug)]
pub struct NewTask<'a> {
    pub engine: &'a str,
    pub options: &'a str,
    pub priority: i32,
    pub max_attempts: i32,
    pub idempotency_key: Option<&'a str>,
    pub retention_days: Option<i32>,
    /// A one-off webhook for this task's end, and the secret that signs it.
    pub callback: Option<(&'a str, &'a str)>,
}

#[derive(Insertable)]
#[diesel(table_name = tasks)]
struct TaskRow<'a> {
    id: String,
    user_id: &'a str,
    file_id: &'a str,
    status: &'static str,
    engine: &'a str,
    options: &'a str,
    priority: i32,
    max_attempts: i32,
    idempotency_key: Option<&'a str>,
    retention_days: Option<i32>,
    callback_url: Option<&'a str>,
    callback_secret: Option<&'a str>,
    pages_reserved: i32,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

diesel::define_sql_function! {
    /// `COALESCE(a, b)` on timestamps: keeps a first time once set (a task's start across
    /// retries, a webhook endpoint's first failure).
    #[sql_name = "COALESCE"]
    fn coalesce_time(
        a: diesel::sql_types::Nullable<diesel::sql_types::Timestamp>,
        b: diesel::sql_types::Timestamp,
    ) -> diesel::sql_types::Nullable<diesel::sql_types::Timestamp>;
}

type LeasedBy<'a> = diesel::dsl::Filter<
    diesel::dsl::Filter<
        diesel::dsl::Filter<tasks::table, diesel::dsl::Eq<tasks::id, &'a str>>,
        diesel::dsl::Eq<tasks::status, &'static str>,
    >,
    diesel::dsl::Eq<tasks::lease_owner, &'a str>,
>;

type Unheld = diesel::dsl::Or<
    diesel::dsl::Eq<tasks::status, &'static str>,
    diesel::dsl::And<
        diesel::dsl::Eq<tasks::status, &'static str>,
        diesel::dsl::AssumeNotNull<diesel::dsl::Lt<tasks::lease_expires_at, NaiveDateTime>>,
    >,
>;

fn lease_until(lease: std::time::Duration) -> NaiveDateTime {
    let at = now();
    TimeDelta::from_std(lease)
        .ok()
        .and_then(|lease| at.checked_add_signed(lease))
        .unwrap_or(NaiveDateTime::MAX)
}

impl Task {
    /// Records the uploaded file and its queued task in one transaction.
    ///
    /// With an idempotency key the user already used, nothing is written and the original task
    /// is returned with `false`.
    pub async fn create(
        conn: &mut DbConn,
        file: &NewFile,
        new: NewTask<'_>,
    ) -> Result<(Task, bool), DbError> {
        if let Some(key) = new.idempotency_key
            && let Some(task) = Self::find_by_idempotency_key(conn, &file.user_id, key).await?
        {
            return Ok((task, false));
        }
        let at = now();
        let row = TaskRow {
            id: new_id(),
            user_id: &file.user_id,
            file_id: &file.id,
            status: TaskStatus::Queued.as_str(),
            engine: new.engine,
            options: new.options,
            priority: new.priority,
            max_attempts: new.max_attempts,
            idempotency_key: new.idempotency_key,
            retention_days: new.retention_days,
            callback_url: new.callback.map(|(url, _)| url),
            callback_secret: new.callback.map(|(_, secret)| secret),
            // A page against the monthly allowance until a worker has counted them.
            pages_reserved: 1,
            created_at: at,
            updated_at: at,
        };
        let created = with_conn!(conn, |c| c
            .transaction::<_, diesel::result::Error, _>(async |tx| {
                diesel::insert_into(files::table)
                    .values(file)
                    .execute(tx)
                    .await?;
                diesel::insert_into(tasks::table)
                    .values(&row)
                    .returning(Task::as_returning())
                    .get_result(tx)
                    .await
            })
            .await)
        .map_err(DbError::on_unique("idempotency key"));
        match (created, new.idempotency_key) {
            // Another request with the same key won the race: answer with its task.
            (Err(DbError::Conflict(_)), Some(key)) => {
                Self::find_by_idempotency_key(conn, &file.user_id, key)
                    .await?
                    .map(|task| (task, false))
                    .ok_or(DbError::Conflict("idempotency key"))
            }
            (created, _) => created.map(|task| (task, true)),
        }
    }

    pub async fn find_by_idempotency_key(
        conn: &mut DbConn,
        user_id: &str,
        key: &str,
    ) -> Result<Option<Task>, DbError> {
        Ok(with_conn!(conn, |c| tasks::table
            .filter(tasks::user_id.eq(user_id))
            .filter(tasks::idempotency_key.eq(key))
            .select(Task::as_select())
            .first(c)
            .await
            .optional())?)
    }

    pub async fn find(conn: &mut DbConn, id: &str) -> Result<Task, DbError> {
        Ok(with_conn!(conn, |c| tasks::table
            .find(id)
            .select(Task::as_select())
            .first(c)
            .await)?)
    }

    /// The task if it belongs to `user_id`; another user's task is `NotFound`, never forbidden.
    pub async fn find_for_user(
        conn: &mut DbConn,
        user_id: &str,
        id: &str,
    ) -> Result<Task, DbError> {
        Ok(with_conn!(conn, |c| tasks::table
            .filter(tasks::id.eq(id))
            .filter(tasks::user_id.eq(user_id))
            .select(Task::as_select())
            .first(c)
            .await)?)
    }

    /// The task with its file's summary if it belongs to `user_id` (one query, for the API).
    pub async fn find_named_for_user(
        conn: &mut DbConn,
        user_id: &str,
        id: &str,
    ) -> Result<(Task, FileSummary), DbError> {
        Ok(with_conn!(conn, |c| tasks::table
            .inner_join(files::table)
            .filter(tasks::id.eq(id))
            .filter(tasks::user_id.eq(user_id))
            .select((Task::as_select(), FileSummary::as_select()))
            .first(c)
            .await)?)
    }

    /// The user's latest task before `task_id` of a file with the same bytes (`sha256`), if any:
    /// an upload the user already made.
    pub async fn earlier_upload(
        conn: &mut DbConn,
        user_id: &str,
        task_id: &str,
        sha256: &str,
    ) -> Result<Option<String>, DbError> {
        Ok(with_conn!(conn, |c| tasks::table
            .inner_join(files::table)
            .filter(files::user_id.eq(user_id))
            .filter(files::sha256.eq(sha256))
            .filter(tasks::id.lt(task_id))
            .order(tasks::id.desc())
            .select(tasks::id)
            .first(c)
            .await
            .optional())?)
    }

    /// A user's tasks, newest first, `limit` at a time before the cursor `before` (a task id).
    pub async fn list_for_user(
        conn: &mut DbConn,
        user_id: &str,
        status: Option<TaskStatus>,
        limit: i64,
        before: Option<&str>,
    ) -> Result<Vec<Task>, DbError> {
        // A boxed query is tied to one backend, so it is built inside each arm.
        Ok(with_conn!(conn, |c| {
            let mut query = tasks::table
                .filter(tasks::user_id.eq(user_id))
                .select(Task::as_select())
                .order(tasks::id.desc())
                .limit(limit)
                .into_boxed();
            if let Some(status) = status {
                query = query.filter(tasks::status.eq(status.as_str()));
            }
            if let Some(before) = before {
                query = query.filter(tasks::id.lt(before));
            }
            query.load(c).await
        })?)
    }

    /// Ids of tasks queued since before `before`, highest priority and oldest first: what the
    /// reconciler re-pushes when the queue lost them.
    pub async fn queued_ids(
        conn: &mut DbConn,
        before: NaiveDateTime,
        limit: i64,
    ) -> Result<Vec<String>, DbError> {
        Ok(with_conn!(conn, |c| tasks::table
            .filter(tasks::status.eq(TaskStatus::Queued.as_str()))
            .filter(tasks::updated_at.lt(before))
            .order((tasks::priority.desc(), tasks::id.asc()))
            .limit(limit)
            .select(tasks::id)
            .load(c)
            .await)?)
    }

    /// `queued → processing` for `worker`, holding a lease. A `processing` task whose lease
    /// expired (its worker died) is taken over the same way, without waiting for the reaper.
    /// `None` if the task is not claimable (another worker holds it, it finished, it was
    /// cancelled or deleted): exactly one claimant wins.
    pub async fn claim(
        conn: &mut DbConn,
        id: &str,
        worker: &str,
        lease: std::time::Duration,
    ) -> Result<Option<Task>, DbError> {
        let at = now();
        Ok(with_conn!(conn, |c| diesel::update(
            tasks::table
                .filter(tasks::id.eq(id))
                .filter(Self::unheld(at))
        )
        .set((
            tasks::status.eq(TaskStatus::Processing.as_str()),
            tasks::lease_owner.eq(worker),
            tasks::lease_expires_at.eq(lease_until(lease)),
            tasks::attempts.eq(tasks::attempts + 1),
            tasks::started_at.eq(coalesce_time(tasks::started_at, at)),
            tasks::updated_at.eq(at),
        ))
        .returning(Task::as_returning())
        .get_result(c)
        .await
        .optional())?)
    }

    /// Fails a task nobody holds (queued, or processing with an expired lease) without claiming
    /// it: for tasks the queue gave up on (`poison`). `None` if it was not in such a state.
    pub async fn fail_unclaimed(
        conn: &mut DbConn,
        id: &str,
        code: &str,
        message: &str,
    ) -> Result<Option<Task>, DbError> {
        let at = now();
        Ok(with_conn!(conn, |c| diesel::update(
            tasks::table
                .filter(tasks::id.eq(id))
                .filter(Self::unheld(at))
        )
        .set((
            tasks::status.eq(TaskStatus::Failed.as_str()),
            // Its webhooks go out from here (crate::webhooks::delivery).
            tasks::webhook_pending.eq(true),
            tasks::lease_owner.eq(None::<String>),
            tasks::lease_expires_at.eq(None::<NaiveDateTime>),
            tasks::error_code.eq(code),
            tasks::error_message.eq(message),
            tasks::finished_at.eq(at),
            tasks::updated_at.eq(at),
        ))
        .returning(Task::as_returning())
        .get_result(c)
        .await
        .optional())?)
    }

    /// How many tasks are queued, and since when the longest-waiting one has waited.
    pub async fn queue_stats(conn: &mut DbConn) -> Result<(i64, Option<NaiveDateTime>), DbError> {
        use diesel::dsl::{count_star, min};
        Ok(with_conn!(conn, |c| tasks::table
            .filter(tasks::status.eq(TaskStatus::Queued.as_str()))
            .select((count_star(), min(tasks::updated_at)))
            .get_result(c)
            .await)?)
    }

    /// Extends `worker`'s lease. `false` means the lease is lost: stop working on the task.
    pub async fn heartbeat(
        conn: &mut DbConn,
        id: &str,
        worker: &str,
        lease: std::time::Duration,
    ) -> Result<bool, DbError> {
        let n = with_conn!(conn, |c| diesel::update(Self::leased_by(id, worker))
            .set(tasks::lease_expires_at.eq(lease_until(lease)))
            .execute(c)
            .await)?;
        Ok(n == 1)
    }

    /// Records page progress; `None` if `worker` no longer holds the task.
    pub async fn set_progress(
        conn: &mut DbConn,
        id: &str,
        worker: &str,
        pages_done: i32,
        pages_total: Option<i32>,
    ) -> Result<Option<Task>, DbError> {
        Ok(with_conn!(conn, |c| diesel::update(Self::leased_by(
            id, worker
        ))
        .set((
            tasks::pages_done.eq(pages_done),
            tasks::pages_total.eq(pages_total),
            tasks::updated_at.eq(now()),
        ))
        .returning(Task::as_returning())
        .get_result(c)
        .await
        .optional())?)
    }

    /// `processing → completed` and the result row, in one transaction. `None` (and nothing
    /// written) if `worker` no longer holds the task.
    pub async fn complete(
        conn: &mut DbConn,
        id: &str,
        worker: &str,
        result: NewTaskResult,
        warnings: &[PageWarning],
    ) -> Result<Option<(Task, TaskResult)>, DbError> {
        let at = now();
        // Searchable from the moment the result exists.
        let pages = crate::search::page_rows(id, &result.user_id, &result.text);
        let row = result.into_row(id, at);
        // A list of plain structs always serialises.
        let warnings =
            (!warnings.is_empty()).then(|| serde_json::to_string(warnings).unwrap_or_default());
        Ok(with_conn!(conn, |c| c
            .transaction::<_, diesel::result::Error, _>(async |tx| {
                let Some(task) = diesel::update(Self::leased_by(id, worker))
                    .set((
                        tasks::status.eq(TaskStatus::Completed.as_str()),
                        // Its webhooks go out from here (crate::webhooks::delivery).
                        tasks::webhook_pending.eq(true),
                        tasks::lease_owner.eq(None::<String>),
                        tasks::lease_expires_at.eq(None::<NaiveDateTime>),
                        tasks::error_code.eq(None::<String>),
                        tasks::error_message.eq(None::<String>),
                        tasks::warnings.eq(warnings),
                        tasks::finished_at.eq(at),
                        tasks::updated_at.eq(at),
                    ))
                    .returning(Task::as_returning())
                    .get_result(tx)
                    .await
                    .optional()?
                else {
                    return Ok(None);
                };
                let result = diesel::insert_into(results::table)
                    .values(&row)
                    .returning(TaskResult::as_returning())
                    .get_result(tx)
                    .await?;
                for page in &pages {
                    diesel::insert_into(search_pages::table)
                        .values(page)
                        .execute(tx)
                        .await?;
                }
                Ok(Some((task, result)))
            })
            .await)?)
    }

    /// `processing → failed` with a stable error code; `None` if `worker` no longer holds it.
    pub async fn fail(
        conn: &mut DbConn,
        id: &str,
        worker: &str,
        code: &str,
        message: &str,
    ) -> Result<Option<Task>, DbError> {
        let at = now();
        Ok(with_conn!(conn, |c| diesel::update(Self::leased_by(
            id, worker
        ))
        .set((
            tasks::status.eq(TaskStatus::Failed.as_str()),
            // Its webhooks go out from here (crate::webhooks::delivery).
            tasks::webhook_pending.eq(true),
            tasks::lease_owner.eq(None::<String>),
            tasks::lease_expires_at.eq(None::<NaiveDateTime>),
            tasks::error_code.eq(code),
            tasks::error_message.eq(message),
            tasks::finished_at.eq(at),
            tasks::updated_at.eq(at),
        ))
        .returning(Task::as_returning())
        .get_result(c)
        .await
        .optional())?)
    }

    /// `processing → queued`: `worker` gives the task back (shutdown, transient error) so another
    /// worker can take it at once. `None` if `worker` no longer holds it.
    pub async fn release(
        conn: &mut DbConn,
        id: &str,
        worker: &str,
    ) -> Result<Option<Task>, DbError> {
        Ok(with_conn!(conn, |c| diesel::update(Self::leased_by(
            id, worker
        ))
        .set((
            tasks::status.eq(TaskStatus::Queued.as_str()),
            tasks::lease_owner.eq(None::<String>),
            tasks::lease_expires_at.eq(None::<NaiveDateTime>),
            // Handing a task back is not a failed attempt: it must not push it towards poison.
            tasks::attempts.eq(tasks::attempts - 1),
            tasks::updated_at.eq(now()),
        ))
        .returning(Task::as_returning())
        .get_result(c)
        .await
        .optional())?)
    }

    /// The reaper: every `processing` task whose lease expired goes back to `queued`.
    /// Returns the requeued tasks so they can be pushed to the queue again.
    pub async fn requeue_expired(conn: &mut DbConn) -> Result<Vec<Task>, DbError> {
        let at = now();
        Ok(with_conn!(conn, |c| diesel::update(
            tasks::table
                .filter(tasks::status.eq(TaskStatus::Processing.as_str()))
                .filter(tasks::lease_expires_at.lt(at))
        )
        .set((
            tasks::status.eq(TaskStatus::Queued.as_str()),
            tasks::lease_owner.eq(None::<String>),
            tasks::lease_expires_at.eq(None::<NaiveDateTime>),
            tasks::updated_at.eq(at),
        ))
        .returning(Task::as_returning())
        .get_results(c)
        .await)?)
    }

    /// Sets a task's priority; `None` if there is no such task.
    pub async fn set_priority(
        conn: &mut DbConn,
        id: &str,
        priority: i32,
    ) -> Result<Option<Task>, DbError> {
        Ok(with_conn!(conn, |c| diesel::update(tasks::table.find(id))
            .set(tasks::priority.eq(priority))
            .returning(Task::as_returning())
            .get_result(c)
            .await
            .optional())?)
    }

    /// The queued task that should run before `id`: the one with the highest priority above
    /// `id`'s, if any (the oldest among equals). One index lookup when nothing was prioritised.
    pub async fn ahead_of(conn: &mut DbConn, id: &str) -> Result<Option<String>, DbError> {
        let queued = TaskStatus::Queued.as_str();
        let top: Option<(String, i32)> = with_conn!(conn, |c| tasks::table
            .filter(tasks::status.eq(queued))
            .filter(tasks::priority.gt(0))
            .order((tasks::priority.desc(), tasks::id.asc()))
            .select((tasks::id, tasks::priority))
            .first(c)
            .await
            .optional())?;
        let Some((top, top_priority)) = top else {
            return Ok(None);
        };
        if top == id {
            return Ok(None);
        }
        let own: Option<i32> = with_conn!(conn, |c| tasks::table
            .find(id)
            .select(tasks::priority)
            .first(c)
            .await
            .optional())?;
        Ok((own.unwrap_or(0) < top_priority).then_some(top))
    }

    /// `queued | processing → cancelled`; `None` if the task had already finished.
    pub async fn cancel(conn: &mut DbConn, id: &str) -> Result<Option<Task>, DbError> {
        let at = now();
        let active = [TaskStatus::Queued.as_str(), TaskStatus::Processing.as_str()];
        Ok(with_conn!(conn, |c| diesel::update(
            tasks::table
                .filter(tasks::id.eq(id))
                .filter(tasks::status.eq_any(active))
        )
        .set((
            tasks::status.eq(TaskStatus::Cancelled.as_str()),
            // Its webhooks go out from here (crate::webhooks::delivery).
            tasks::webhook_pending.eq(true),
            tasks::lease_owner.eq(None::<String>),
            tasks::lease_expires_at.eq(None::<NaiveDateTime>),
            tasks::finished_at.eq(at),
            tasks::updated_at.eq(at),
        ))
        .returning(Task::as_returning())
        .get_result(c)
        .await
        .optional())?)
    }

    /// `failed | cancelled → queued` with a fresh attempt budget (an admin's retry).
    /// `None` if the task was not in a retryable state.
    pub async fn retry(conn: &mut DbConn, id: &str) -> Result<Option<Task>, DbError> {
        let retryable = [TaskStatus::Failed.as_str(), TaskStatus::Cancelled.as_str()];
        Ok(with_conn!(conn, |c| diesel::update(
            tasks::table
                .filter(tasks::id.eq(id))
                .filter(tasks::status.eq_any(retryable))
        )
        .set((
            tasks::status.eq(TaskStatus::Queued.as_str()),
            tasks::attempts.eq(0),
            tasks::pages_done.eq(0),
            // Its pages count against the allowance again (settled before, see tasks::retry).
            tasks::pages_reserved.eq(diesel::dsl::sql::<diesel::sql_types::Integer>(
                "COALESCE(pages_total, 1)",
            )),
            tasks::error_code.eq(None::<String>),
            tasks::error_message.eq(None::<String>),
            tasks::warnings.eq(None::<String>),
            tasks::finished_at.eq(None::<NaiveDateTime>),
            tasks::updated_at.eq(now()),
        ))
        .returning(Task::as_returning())
        .get_result(c)
        .await
        .optional())?)
    }

    /// Deletes a user's task with its result, and its file once no other task uses it, in one
    /// transaction. Returns what was deleted, so the caller can remove the blobs.
    pub async fn delete_for_user(
        conn: &mut DbConn,
        user_id: &str,
        id: &str,
    ) -> Result<(Task, Option<TaskResult>, Option<File>), DbError> {
        Ok(with_conn!(conn, |c| c
            .transaction::<_, diesel::result::Error, _>(async |tx| {
                // Write first: it locks the row (PostgreSQL) or the database (SQLite) before
                // anything is read, so a worker completing the task concurrently either commits
                // its result before this reads it, or waits.
                let task: Task = diesel::update(
                    tasks::table
                        .filter(tasks::id.eq(id))
                        .filter(tasks::user_id.eq(user_id)),
                )
                .set(tasks::updated_at.eq(now()))
                .returning(Task::as_returning())
                .get_result(tx)
                .await?;
                let result = results::table
                    .filter(results::task_id.eq(id))
                    .select(TaskResult::as_select())
                    .first(tx)
                    .await
                    .optional()?;
                diesel::delete(tasks::table.find(id)).execute(tx).await?;
                let still_used: i64 = tasks::table
                    .filter(tasks::file_id.eq(&task.file_id))
                    .count()
                    .get_result(tx)
                    .await?;
                let file = if still_used == 0 {
                    diesel::delete(files::table.find(&task.file_id))
                        .returning(File::as_returning())
                        .get_result(tx)
                        .await
                        .optional()?
                } else {
                    None
                };
                Ok((task, result, file))
            })
            .await)?)
    }

    /// Queued, or processing under a lease that expired at `at`: nobody holds the task.
    fn unheld(at: NaiveDateTime) -> Unheld {
        tasks::status
            .eq(TaskStatus::Queued.as_str())
            .or(tasks::status
                .eq(TaskStatus::Processing.as_str())
                .and(tasks::lease_expires_at.lt(at).assume_not_null()))
    }

    /// The task row if `worker` holds its lease: the target of every worker-side update.
    fn leased_by<'a>(id: &'a str, worker: &'a str) -> LeasedBy<'a> {
        tasks::table
            .filter(tasks::id.eq(id))
            .filter(tasks::status.eq(TaskStatus::Processing.as_str()))
            .filter(tasks::lease_owner.eq(worker))
    }
}
