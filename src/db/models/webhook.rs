//! Webhook rows: the endpoints users register, one delivery per event and target (the outbox,
//! whose id is the `webhook-id`), and one attempt row per try (the delivery log). The rules
//! (what to send, when to retry, whom to disable) are `crate::webhooks`'.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::task::coalesce_time;
use super::{Task, new_id, now};
use crate::db::schema::{tasks, webhook_attempts, webhook_deliveries, webhook_endpoints};
use crate::db::{DbConn, DbError, affected};
use crate::with_conn;

type Owned<'a> = diesel::dsl::Filter<
    diesel::dsl::Filter<webhook_endpoints::table, diesel::dsl::Eq<webhook_endpoints::id, &'a str>>,
    diesel::dsl::Eq<webhook_endpoints::user_id, &'a str>,
>;

/// `user_id`'s endpoint `id`: nobody else's is ever read or changed.
fn owned<'a>(user_id: &'a str, id: &'a str) -> Owned<'a> {
    webhook_endpoints::table
        .filter(webhook_endpoints::id.eq(id))
        .filter(webhook_endpoints::user_id.eq(user_id))
}

/// Where a user's webhooks go. Not `Debug`: it holds its secrets.
#[derive(Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = webhook_endpoints, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct WebhookEndpoint {
    pub id: String,
    pub user_id: String,
    pub url: String,
    /// Space-separated event types.
    pub events: String,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub failing_since: Option<NaiveDateTime>,
    pub disabled_at: Option<NaiveDateTime>,
    pub disabled_reason: Option<String>,
}

impl WebhookEndpoint {
    pub fn subscribes_to(&self, event: &str) -> bool {
        self.events.split(' ').any(|e| e == event)
    }

    /// The secrets that sign now: the current one, and the one before a rotation for a while.
    pub fn signing_secrets(&self, at: NaiveDateTime) -> Vec<String> {
        let mut secrets = vec![self.secret.clone()];
        if let (Some(previous), Some(until)) = (&self.previous_secret, self.previous_secret_until)
            && until > at
        {
            secrets.push(previous.clone());
        }
        secrets
    }

    pub async fn create(
        conn: &mut DbConn,
        user_id: &str,
        url: &str,
        events: &str,
        secret: &str,
    ) -> Result<WebhookEndpoint, DbError> {
        let values = (
            webhook_endpoints::id.eq(new_id()),
            webhook_endpoints::user_id.eq(user_id),
            webhook_endpoints::url.eq(url),
            webhook_endpoints::events.eq(events),
            webhook_endpoints::secret.eq(secret),
            webhook_endpoints::created_at.eq(now()),
        );
        Ok(with_conn!(conn, |c| diesel::insert_into(
            webhook_endpoints::table
        )
        .values(values)
        .returning(WebhookEndpoint::as_returning())
        .get_result(c)
        .await)?)
    }

    /// A user's endpoints, oldest first.
    pub async fn list_for_user(
        conn: &mut DbConn,
        user_id: &str,
    ) -> Result<Vec<WebhookEndpoint>, DbError> {
        Ok(with_conn!(conn, |c| webhook_endpoints::table
            .filter(webhook_endpoints::user_id.eq(user_id))
            .order(webhook_endpoints::id.asc())
            .select(WebhookEndpoint::as_select())
            .load(c)
            .await)?)
    }

    /// `user_id`'s endpoint `id`; `NotFound` for anyone else's.
    pub async fn find_for_user(
        conn: &mut DbConn,
        user_id: &str,
        id: &str,
    ) -> Result<WebhookEndpoint, DbError> {
        Ok(with_conn!(conn, |c| owned(user_id, id)
            .select(WebhookEndpoint::as_select())
            .first(c)
            .await)?)
    }

    pub async fn find(conn: &mut DbConn, id: &str) -> Result<Option<WebhookEndpoint>, DbError> {
        Ok(with_conn!(conn, |c| webhook_endpoints::table
            .find(id)
            .select(WebhookEndpoint::as_select())
            .first(c)
            .await
            .optional())?)
    }

    /// Deletes the endpoint with its deliveries and their log.
    pub async fn delete(conn: &mut DbConn, user_id: &str, id: &str) -> Result<(), DbError> {
        let n = with_conn!(conn, |c| diesel::delete(owned(user_id, id))
            .execute(c)
            .await)?;
        affected(n)
    }

    /// A new current secret; the old one keeps signing until `previous_until`.
    pub async fn rotate(
        conn: &mut DbConn,
        user_id: &str,
        id: &str,
        secret: &str,
        previous_until: NaiveDateTime,
    ) -> Result<WebhookEndpoint, DbError> {
        Ok(with_conn!(conn, |c| diesel::update(owned(user_id, id))
            .set((
                // The right-hand side reads the row as it was: the secret before this update.
                webhook_endpoints::previous_secret.eq(webhook_endpoints::secret.nullable()),
                webhook_endpoints::previous_secret_until.eq(previous_until),
                webhook_endpoints::secret.eq(secret),
            ))
            .returning(WebhookEndpoint::as_returning())
            .get_result(c)
            .await)?)
    }

    /// Sends to a disabled endpoint again, with its failures forgotten.
    pub async fn enable(
        conn: &mut DbConn,
        user_id: &str,
        id: &str,
    ) -> Result<WebhookEndpoint, DbError> {
        Ok(with_conn!(conn, |c| diesel::update(owned(user_id, id))
            .set((
                webhook_endpoints::disabled_at.eq(None::<NaiveDateTime>),
                webhook_endpoints::disabled_reason.eq(None::<String>),
                webhook_endpoints::failing_since.eq(None::<NaiveDateTime>),
            ))
            .returning(WebhookEndpoint::as_returning())
            .get_result(c)
            .await)?)
    }

    /// A delivery succeeded: the endpoint is healthy again.
    pub async fn succeeded(conn: &mut DbConn, id: &str) -> Result<(), DbError> {
        with_conn!(conn, |c| diesel::update(
            webhook_endpoints::table
                .find(id)
                .filter(webhook_endpoints::failing_since.is_not_null())
        )
        .set(webhook_endpoints::failing_since.eq(None::<NaiveDateTime>))
        .execute(c)
        .await)?;
        Ok(())
    }

    /// An attempt failed at `at`: returns since when the endpoint has been failing (`at`, unless
    /// it already was), in one statement.
    pub async fn failed(
        conn: &mut DbConn,
        id: &str,
        at: NaiveDateTime,
    ) -> Result<Option<NaiveDateTime>, DbError> {
        let since = coalesce_time(webhook_endpoints::failing_since, at);
        Ok(
            with_conn!(conn, |c| diesel::update(webhook_endpoints::table.find(id))
                .set(webhook_endpoints::failing_since.eq(since))
                .returning(webhook_endpoints::failing_since)
                .get_result(c)
                .await
                .optional())?
            .flatten(),
        )
    }

    /// Stops sending to the endpoint; its pending deliveries fail with `reason`.
    pub async fn disable(conn: &mut DbConn, id: &str, reason: &str) -> Result<(), DbError> {
        let at = now();
        with_conn!(conn, |c| c
            .transaction::<_, diesel::result::Error, _>(async |tx| {
                diesel::update(
                    webhook_endpoints::table
                        .find(id)
                        .filter(webhook_endpoints::disabled_at.is_null()),
                )
                .set((
                    webhook_endpoints::disabled_at.eq(at),
                    webhook_endpoints::disabled_reason.eq(reason),
                ))
                .execute(tx)
                .await?;
                diesel::update(
                    webhook_deliveries::table
                        .filter(webhook_deliveries::endpoint_id.eq(id))
                        .filter(webhook_deliveries::status.eq(DeliveryStatus::PENDING)),
                )
                .set((
                    webhook_deliveries::status.eq(DeliveryStatus::FAILED),
                    webhook_deliveries::next_attempt_at.eq(None::<NaiveDateTime>),
                    webhook_deliveries::finished_at.eq(at),
                ))
                .execute(tx)
                .await
            })
            .await)?;
        Ok(())
    }
}

/// The states of a delivery.
pub struct DeliveryStatus;

impl DeliveryStatus {
    pub const PENDING: &'static str = "pending";
    pub const DELIVERED: &'static str = "delivered";
    pub const FAILED: &'static str = "failed";
}

/// One event for one target: sent until it is delivered or its retries run out.
#[derive(Clone, Debug, Queryable, Selectable, Identifiable)]
#[diesel(table_name = webhook_deliveries, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct WebhookDelivery {
    /// The `webhook-id`: the same on every attempt.
    pub id: String,
    pub endpoint_id: Option<String>,
    pub task_id: Option<String>,
    pub user_id: String,
    pub url: String,
    pub event: String,
    /// The exact body signed and sent.
    pub payload: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<NaiveDateTime>,
    pub locked_until: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
}

#[derive(Clone, Debug, Insertable)]
#[diesel(table_name = webhook_deliveries)]
pub struct NewDelivery {
    pub id: String,
    pub endpoint_id: Option<String>,
    pub task_id: Option<String>,
    pub user_id: String,
    pub url: String,
    pub event: String,
    pub payload: String,
    pub status: &'static str,
    pub next_attempt_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
}

impl NewDelivery {
    /// A delivery due now, with a fresh `msg_…` id.
    pub fn due(user_id: &str, url: &str, event: &str, payload: String) -> NewDelivery {
        let at = now();
        NewDelivery {
            id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
            endpoint_id: None,
            task_id: None,
            user_id: user_id.to_owned(),
            url: url.to_owned(),
            event: event.to_owned(),
            payload,
            status: DeliveryStatus::PENDING,
            next_attempt_at: Some(at),
            created_at: at,
        }
    }
}

/// One try of a delivery, as the log shows it.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = webhook_attempts, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct WebhookAttempt {
    pub id: i64,
    pub delivery_id: String,
    pub at: NaiveDateTime,
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
    pub response: Option<String>,
    pub next_attempt_at: Option<NaiveDateTime>,
}

#[derive(Clone, Debug, Insertable)]
#[diesel(table_name = webhook_attempts)]
pub struct NewAttempt {
    pub delivery_id: String,
    pub at: NaiveDateTime,
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
    pub response: Option<String>,
    pub next_attempt_at: Option<NaiveDateTime>,
}

/// What an attempt leaves the delivery in.
pub struct AfterAttempt {
    pub status: &'static str,
    /// Attempts in this round of the schedule, this one included.
    pub attempts: i32,
    pub next_attempt_at: Option<NaiveDateTime>,
}

impl WebhookDelivery {
    pub async fn insert(conn: &mut DbConn, new: &NewDelivery) -> Result<(), DbError> {
        with_conn!(conn, |c| diesel::insert_into(webhook_deliveries::table)
            .values(new.clone())
            .execute(c)
            .await)?;
        Ok(())
    }

    /// Tasks that ended and whose deliveries are not written yet.
    pub async fn pending_tasks(conn: &mut DbConn, limit: i64) -> Result<Vec<String>, DbError> {
        Ok(with_conn!(conn, |c| tasks::table
            .filter(tasks::webhook_pending)
            .select(tasks::id)
            .limit(limit)
            .load(c)
            .await)?)
    }

    /// Turns a task's end into deliveries, once: clears its mark and inserts what `plan` makes
    /// of the task, its callback secret and its owner's endpoints, in one transaction. Nothing
    /// if another worker did it first.
    pub async fn write_for_task<F>(
        conn: &mut DbConn,
        task_id: &str,
        plan: F,
    ) -> Result<usize, DbError>
    where
        F: Fn(&Task, &[WebhookEndpoint]) -> Vec<NewDelivery> + Send + Sync,
    {
        let plan = &plan;
        Ok(with_conn!(conn, |c| c
            .transaction::<_, diesel::result::Error, _>(async |tx| {
                let Some(task) = diesel::update(
                    tasks::table
                        .filter(tasks::id.eq(task_id))
                        .filter(tasks::webhook_pending),
                )
                .set(tasks::webhook_pending.eq(false))
                .returning(Task::as_returning())
                .get_result(tx)
                .await
                .optional()?
                else {
                    return Ok(0);
                };
                let endpoints = webhook_endpoints::table
                    .filter(webhook_endpoints::user_id.eq(&task.user_id))
                    .filter(webhook_endpoints::disabled_at.is_null())
                    .select(WebhookEndpoint::as_select())
                    .load(tx)
                    .await?;
                let deliveries = plan(&task, &endpoints);
                for delivery in &deliveries {
                    diesel::insert_into(webhook_deliveries::table)
                        .values(delivery)
                        .execute(tx)
                        .await?;
                }
                Ok(deliveries.len())
            })
            .await)?)
    }

    /// Claims up to `limit` due deliveries for this sender until `hold_until`. Each claim is a
    /// conditional update, so two workers never send the same attempt.
    pub async fn claim_due(
        conn: &mut DbConn,
        hold_until: NaiveDateTime,
        limit: i64,
    ) -> Result<Vec<WebhookDelivery>, DbError> {
        let at = now();
        let free = || {
            webhook_deliveries::locked_until
                .is_null()
                .or(webhook_deliveries::locked_until.lt(at))
        };
        let due: Vec<(String, String)> = with_conn!(conn, |c| webhook_deliveries::table
            .filter(webhook_deliveries::status.eq(DeliveryStatus::PENDING))
            .filter(webhook_deliveries::next_attempt_at.le(at))
            .filter(free())
            .order(webhook_deliveries::next_attempt_at.asc())
            .select((webhook_deliveries::id, webhook_deliveries::url))
            .limit(limit * 4)
            .load(c)
            .await)?;
        // At most two per URL in a round: a receiver that hangs, or one a user floods, holds
        // up a round for its own deliveries only, not everyone's.
        let mut per_url: std::collections::HashMap<String, usize> = Default::default();
        let due: Vec<String> = due
            .into_iter()
            .filter(|(_, url)| {
                let n = per_url.entry(url.clone()).or_default();
                *n += 1;
                *n <= 2
            })
            .map(|(id, _)| id)
            .take(usize::try_from(limit).unwrap_or(0))
            .collect();
        let mut claimed = Vec::with_capacity(due.len());
        for id in due {
            let row = with_conn!(conn, |c| diesel::update(
                webhook_deliveries::table
                    .find(&id)
                    .filter(webhook_deliveries::status.eq(DeliveryStatus::PENDING))
                    .filter(free())
            )
            .set(webhook_deliveries::locked_until.eq(hold_until))
            .returning(WebhookDelivery::as_returning())
            .get_result(c)
            .await
            .optional())?;
            claimed.extend(row);
        }
        Ok(claimed)
    }

    /// When the next pending delivery nobody holds is due.
    pub async fn next_due(conn: &mut DbConn) -> Result<Option<NaiveDateTime>, DbError> {
        let at = now();
        Ok(with_conn!(conn, |c| webhook_deliveries::table
            .filter(webhook_deliveries::status.eq(DeliveryStatus::PENDING))
            .filter(
                webhook_deliveries::locked_until
                    .is_null()
                    .or(webhook_deliveries::locked_until.lt(at))
            )
            .select(diesel::dsl::min(webhook_deliveries::next_attempt_at))
            .first(c)
            .await)?)
    }

    /// The secret(s) that sign this delivery now: its endpoint's, or its task's callback
    /// secret. Empty when the endpoint or task is gone, or the endpoint was disabled.
    pub async fn signing_secrets(&self, conn: &mut DbConn) -> Result<Vec<String>, DbError> {
        if let Some(endpoint) = &self.endpoint_id {
            return Ok(match WebhookEndpoint::find(conn, endpoint).await? {
                Some(e) if e.disabled_at.is_none() => e.signing_secrets(now()),
                _ => Vec::new(),
            });
        }
        let Some(task) = &self.task_id else {
            return Ok(Vec::new());
        };
        let secret: Option<Option<String>> = with_conn!(conn, |c| tasks::table
            .find(task)
            .select(tasks::callback_secret)
            .first(c)
            .await
            .optional())?;
        Ok(secret.flatten().into_iter().collect())
    }

    /// Logs an attempt and moves the delivery on, releasing its claim. `false` (and nothing
    /// written) if the claim `held_until` was lost meanwhile: another sender has it now.
    pub async fn record(
        conn: &mut DbConn,
        attempt: NewAttempt,
        after: AfterAttempt,
        held_until: Option<NaiveDateTime>,
    ) -> Result<bool, DbError> {
        let finished_at = (after.status != DeliveryStatus::PENDING).then_some(attempt.at);
        let id = attempt.delivery_id.clone();
        Ok(with_conn!(conn, |c| c
            .transaction::<_, diesel::result::Error, _>(async |tx| {
                let moved = diesel::update(
                    webhook_deliveries::table
                        .find(&id)
                        .filter(webhook_deliveries::locked_until.eq(held_until)),
                )
                .set((
                    webhook_deliveries::status.eq(after.status),
                    webhook_deliveries::attempts.eq(after.attempts),
                    webhook_deliveries::next_attempt_at.eq(after.next_attempt_at),
                    webhook_deliveries::locked_until.eq(None::<NaiveDateTime>),
                    webhook_deliveries::finished_at.eq(finished_at),
                ))
                .execute(tx)
                .await?;
                if moved == 0 {
                    return Ok(false);
                }
                diesel::insert_into(webhook_attempts::table)
                    .values(&attempt)
                    .execute(tx)
                    .await?;
                Ok(true)
            })
            .await)?)
    }

    /// An endpoint's newest deliveries, each with its attempts (oldest first).
    pub async fn for_endpoint(
        conn: &mut DbConn,
        user_id: &str,
        endpoint_id: &str,
        limit: i64,
    ) -> Result<Vec<(WebhookDelivery, Vec<WebhookAttempt>)>, DbError> {
        let deliveries: Vec<WebhookDelivery> = with_conn!(conn, |c| webhook_deliveries::table
            .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
            .filter(webhook_deliveries::user_id.eq(user_id))
            .order(webhook_deliveries::id.desc())
            .limit(limit)
            .select(WebhookDelivery::as_select())
            .load(c)
            .await)?;
        let ids: Vec<&str> = deliveries.iter().map(|d| d.id.as_str()).collect();
        let attempts: Vec<WebhookAttempt> = with_conn!(conn, |c| webhook_attempts::table
            .filter(webhook_attempts::delivery_id.eq_any(&ids))
            .order(webhook_attempts::id.asc())
            .select(WebhookAttempt::as_select())
            .load(c)
            .await)?;
        Ok(deliveries
            .into_iter()
            .map(|d| {
                let mine = attempts
                    .iter()
                    .filter(|a| a.delivery_id == d.id)
                    .cloned()
                    .collect();
                (d, mine)
            })
            .collect())
    }

    /// Sends a finished delivery of `user_id`'s endpoint again, from the start of the schedule.
    /// `false` if it is still pending (being sent, or due); `NotFound` if there is none.
    pub async fn redeliver(
        conn: &mut DbConn,
        user_id: &str,
        endpoint_id: &str,
        id: &str,
    ) -> Result<bool, DbError> {
        let of_endpoint = || {
            webhook_deliveries::table
                .filter(webhook_deliveries::id.eq(id))
                .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
                .filter(webhook_deliveries::user_id.eq(user_id))
        };
        let n = with_conn!(conn, |c| diesel::update(
            of_endpoint().filter(webhook_deliveries::status.ne(DeliveryStatus::PENDING))
        )
        .set((
            webhook_deliveries::status.eq(DeliveryStatus::PENDING),
            webhook_deliveries::attempts.eq(0),
            webhook_deliveries::next_attempt_at.eq(now()),
            webhook_deliveries::finished_at.eq(None::<NaiveDateTime>),
        ))
        .execute(c)
        .await)?;
        if n == 1 {
            return Ok(true);
        }
        let exists: Option<String> = with_conn!(conn, |c| of_endpoint()
            .select(webhook_deliveries::id)
            .first(c)
            .await
            .optional())?;
        exists.map(|_| false).ok_or(DbError::NotFound)
    }

    /// Deliveries of `event` to the endpoint not yet delivered or failed.
    pub async fn pending_of(
        conn: &mut DbConn,
        endpoint_id: &str,
        event: &str,
    ) -> Result<i64, DbError> {
        Ok(with_conn!(conn, |c| webhook_deliveries::table
            .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
            .filter(webhook_deliveries::event.eq(event))
            .filter(webhook_deliveries::status.eq(DeliveryStatus::PENDING))
            .count()
            .get_result(c)
            .await)?)
    }

    /// Deletes finished deliveries (and their log) that ended before `before`.
    pub async fn forget_finished(
        conn: &mut DbConn,
        before: NaiveDateTime,
    ) -> Result<usize, DbError> {
        Ok(with_conn!(conn, |c| diesel::delete(
            webhook_deliveries::table
                .filter(webhook_deliveries::status.ne(DeliveryStatus::PENDING))
                .filter(webhook_deliveries::finished_at.lt(before))
        )
        .execute(c)
        .await)?)
    }
}
