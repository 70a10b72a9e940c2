//! Webhooks, following the Standard Webhooks specification: users register endpoints for
//! `task.completed`, `task.failed` and `task.cancelled` (or give one task a `callback_url`),
//! and workers post each event, signed, until it is delivered or its retries run out.
//!
//! - [`signing`]: `whsec_` secrets and the `webhook-signature` header;
//! - [`target`]: the SSRF guard and the HTTP client;
//! - [`schedule`]: the retry schedule and when an endpoint is disabled;
//! - [`delivery`]: the workers' loop that turns ended tasks into deliveries and sends them.
//!
//! This module is what the API calls: endpoints, the test event, the log and redelivery.

pub mod delivery;
pub mod schedule;
pub mod signing;
pub mod target;

use chrono::{NaiveDateTime, TimeDelta};
use futures::FutureExt;
use serde::Serialize;

use crate::app::App;
use crate::db::DbError;
use crate::db::models::{
    NewDelivery, Task, TaskStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint, now,
};

/// Endpoints one account may have.
pub const MAX_ENDPOINTS: usize = 20;
/// How long the secret before a rotation keeps signing, so receivers can switch at leisure.
const ROTATION_OVERLAP: TimeDelta = TimeDelta::hours(24);
/// Deliveries shown per endpoint in the log.
const LOG_LENGTH: i64 = 50;

/// What a webhook tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Completed,
    Failed,
    Cancelled,
    /// Sent on request from the account page or `POST /api/webhooks/{id}/test`.
    Test,
}

impl Event {
    /// The events an endpoint can subscribe to.
    pub const TASK: [Event; 3] = [Event::Completed, Event::Failed, Event::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::Completed => "task.completed",
            Event::Failed => "task.failed",
            Event::Cancelled => "task.cancelled",
            Event::Test => "webhook.test",
        }
    }

    /// The event a task in `status` is at, if it has ended.
    pub fn of(status: TaskStatus) -> Option<Event> {
        match status {
            TaskStatus::Completed => Some(Event::Completed),
            TaskStatus::Failed => Some(Event::Failed),
            TaskStatus::Cancelled => Some(Event::Cancelled),
            TaskStatus::Queued | TaskStatus::Processing => None,
        }
    }

    fn parse(name: &str) -> Option<Event> {
        Event::TASK.into_iter().find(|e| e.as_str() == name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Refused(String),
    #[error("No such webhook endpoint for this account.")]
    NotFound,
    #[error("An account may have at most {MAX_ENDPOINTS} webhook endpoints; delete one first.")]
    TooMany,
    /// A change that waits for a delivery in progress.
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Db(DbError),
}

impl From<DbError> for WebhookError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound => WebhookError::NotFound,
            other => WebhookError::Db(other),
        }
    }
}

impl From<target::TargetError> for WebhookError {
    fn from(e: target::TargetError) -> Self {
        match e {
            target::TargetError::Invalid(why) => WebhookError::Invalid(why),
            target::TargetError::Refused(why) => WebhookError::Refused(why),
        }
    }
}

/// The body of a task's event: the task as it ended. Built once, when the task ends, and sent
/// unchanged on every attempt.
fn task_payload(task: &Task, event: Event) -> String {
    #[derive(Serialize)]
    struct Error<'a> {
        code: &'a str,
        message: &'a str,
    }
    let error = task.error_code.as_deref().map(|code| Error {
        code,
        message: task.error_message.as_deref().unwrap_or_default(),
    });
    envelope(
        event,
        task.finished_at.unwrap_or_else(now),
        serde_json::json!({
            "id": task.id,
            "status": task.status.as_str(),
            "engine": task.engine,
            "pages_done": task.pages_done,
            "pages_total": task.pages_total,
            "attempts": task.attempts,
            "error": error,
            "created_at": rfc3339(task.created_at),
            "finished_at": task.finished_at.map(rfc3339),
        }),
    )
}

/// The Standard Webhooks envelope: `{type, timestamp, data}`.
fn envelope(event: Event, at: NaiveDateTime, data: serde_json::Value) -> String {
    serde_json::json!({ "type": event.as_str(), "timestamp": rfc3339(at), "data": data })
        .to_string()
}

fn rfc3339(at: NaiveDateTime) -> String {
    at.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The deliveries a task's end makes: one per endpoint of its owner that wants the event, and
/// one to its `callback_url`. Each has its own `webhook-id`.
pub fn deliveries_for(task: &Task, endpoints: &[WebhookEndpoint]) -> Vec<NewDelivery> {
    let Some(event) = Event::of(task.status) else {
        // Retried before its end was sent: the next end will be.
        return Vec::new();
    };
    let payload = task_payload(task, event);
    let for_task = |url: &str, endpoint_id: Option<String>| NewDelivery {
        endpoint_id,
        task_id: Some(task.id.clone()),
        ..NewDelivery::due(&task.user_id, url, event.as_str(), payload.clone())
    };
    let mut deliveries: Vec<NewDelivery> = endpoints
        .iter()
        .filter(|e| e.subscribes_to(event.as_str()))
        .map(|e| for_task(&e.url, Some(e.id.clone())))
        .collect();
    deliveries.extend(task.callback_url.as_deref().map(|url| for_task(url, None)));
    deliveries
}

/// Registers an endpoint for `events` (task events, at least one); its secret is in the row.
pub async fn create_endpoint(
    app: &App,
    user_id: &str,
    url: &str,
    events: &[String],
) -> Result<WebhookEndpoint, WebhookError> {
    let mut chosen = Vec::new();
    for name in events {
        let event = Event::parse(name).ok_or_else(|| {
            WebhookError::Invalid(format!(
                "events: `{name}` is not one of task.completed, task.failed, task.cancelled."
            ))
        })?;
        if !chosen.contains(&event) {
            chosen.push(event);
        }
    }
    if chosen.is_empty() {
        return Err(WebhookError::Invalid(
            "events: name at least one of task.completed, task.failed, task.cancelled.".into(),
        ));
    }
    let url = target::check(url, app.config.webhooks.allow_private_targets)
        .await?
        .to_string();
    let events = chosen
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let user = user_id.to_owned();
    let existing = app
        .db
        .run(move |c| async move { WebhookEndpoint::list_for_user(c, &user).await }.boxed())
        .await?;
    if existing.len() >= MAX_ENDPOINTS {
        return Err(WebhookError::TooMany);
    }
    let (user, secret) = (user_id.to_owned(), signing::new_secret());
    Ok(app
        .db
        .run(move |c| {
            async move { WebhookEndpoint::create(c, &user, &url, &events, &secret).await }.boxed()
        })
        .await?)
}

pub async fn list_endpoints(
    app: &App,
    user_id: &str,
) -> Result<Vec<WebhookEndpoint>, WebhookError> {
    let user = user_id.to_owned();
    Ok(app
        .db
        .run(move |c| async move { WebhookEndpoint::list_for_user(c, &user).await }.boxed())
        .await?)
}

pub async fn delete_endpoint(app: &App, user_id: &str, id: &str) -> Result<(), WebhookError> {
    let (user, id) = (user_id.to_owned(), id.to_owned());
    Ok(app
        .db
        .run(move |c| async move { WebhookEndpoint::delete(c, &user, &id).await }.boxed())
        .await?)
}

/// A new secret for the endpoint; the old one signs too for the next 24 hours.
pub async fn rotate_secret(
    app: &App,
    user_id: &str,
    id: &str,
) -> Result<WebhookEndpoint, WebhookError> {
    let (user, id, secret) = (user_id.to_owned(), id.to_owned(), signing::new_secret());
    let until = now() + ROTATION_OVERLAP;
    Ok(app
        .db
        .run(move |c| {
            async move { WebhookEndpoint::rotate(c, &user, &id, &secret, until).await }.boxed()
        })
        .await?)
}

/// Sends to a disabled endpoint again.
pub async fn enable_endpoint(
    app: &App,
    user_id: &str,
    id: &str,
) -> Result<WebhookEndpoint, WebhookError> {
    let (user, id) = (user_id.to_owned(), id.to_owned());
    Ok(app
        .db
        .run(move |c| async move { WebhookEndpoint::enable(c, &user, &id).await }.boxed())
        .await?)
}

/// Queues a `webhook.test` event to the endpoint; returns its `webhook-id`.
pub async fn send_test(app: &App, user_id: &str, id: &str) -> Result<String, WebhookError> {
    let endpoint = find(app, user_id, id).await?;
    if endpoint.disabled_at.is_some() {
        return Err(WebhookError::Invalid(
            "The endpoint is disabled; enable it before testing it.".into(),
        ));
    }
    let endpoint_id = endpoint.id.clone();
    let pending = app
        .db
        .run(move |c| {
            async move { WebhookDelivery::pending_of(c, &endpoint_id, Event::Test.as_str()).await }
                .boxed()
        })
        .await?;
    if pending > 0 {
        // One at a time: tests must not queue up into a flood of posts.
        return Err(WebhookError::Busy(
            "A test event to this endpoint is still being delivered; wait for it.".into(),
        ));
    }
    let payload = envelope(
        Event::Test,
        now(),
        serde_json::json!({ "endpoint_id": endpoint.id, "message": "A test event from ocrd." }),
    );
    let delivery = NewDelivery {
        endpoint_id: Some(endpoint.id.clone()),
        ..NewDelivery::due(user_id, &endpoint.url, Event::Test.as_str(), payload)
    };
    let id = delivery.id.clone();
    app.db
        .run(move |c| async move { WebhookDelivery::insert(c, &delivery).await }.boxed())
        .await?;
    Ok(id)
}

/// The endpoint's newest deliveries with their attempts.
pub async fn deliveries(
    app: &App,
    user_id: &str,
    id: &str,
) -> Result<Vec<(WebhookDelivery, Vec<WebhookAttempt>)>, WebhookError> {
    let endpoint = find(app, user_id, id).await?;
    let user = user_id.to_owned();
    Ok(app
        .db
        .run(move |c| {
            async move { WebhookDelivery::for_endpoint(c, &user, &endpoint.id, LOG_LENGTH).await }
                .boxed()
        })
        .await?)
}

/// Sends a delivery again, from the start of the schedule.
pub async fn redeliver(
    app: &App,
    user_id: &str,
    endpoint_id: &str,
    delivery_id: &str,
) -> Result<(), WebhookError> {
    let endpoint = find(app, user_id, endpoint_id).await?;
    if endpoint.disabled_at.is_some() {
        return Err(WebhookError::Invalid(
            "The endpoint is disabled; enable it before redelivering.".into(),
        ));
    }
    let (user, delivery) = (user_id.to_owned(), delivery_id.to_owned());
    let queued = app
        .db
        .run(move |c| {
            async move { WebhookDelivery::redeliver(c, &user, &endpoint.id, &delivery).await }
                .boxed()
        })
        .await?;
    if !queued {
        return Err(WebhookError::Busy(
            "The delivery is still pending: it is being sent or retried.".into(),
        ));
    }
    Ok(())
}

async fn find(app: &App, user_id: &str, id: &str) -> Result<WebhookEndpoint, WebhookError> {
    let (user, id) = (user_id.to_owned(), id.to_owned());
    Ok(app
        .db
        .run(move |c| async move { WebhookEndpoint::find_for_user(c, &user, &id).await }.boxed())
        .await?)
}
