//! The workers' webhook loop. Every worker runs one; they share the work through the database:
//! 1. tasks that ended (`tasks.webhook_pending`, set by the same statement that ended them) are
//!    turned into delivery rows, each task once, in one transaction with clearing the mark;
//! 2. due deliveries are claimed (a conditional update holds each for [`HOLD`]) and sent;
//! 3. each attempt is logged and the delivery moved on: delivered, retried later, or failed.
//!
//! A worker killed at any point loses nothing: an unwritten task keeps its mark, and a claimed
//! delivery is sent again once its hold runs out (at least once; receivers dedupe on the id).

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use futures::FutureExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio_util::sync::CancellationToken;

use super::schedule::Schedule;
use super::target::{Client, Outcome};
use super::{deliveries_for, signing};
use crate::app::App;
use crate::db::DbError;
use crate::db::models::{
    AfterAttempt, DeliveryStatus, NewAttempt, WebhookDelivery, WebhookEndpoint, now,
};

/// The longest wait between looks at the database.
const POLL: Duration = Duration::from_secs(1);
/// Ended tasks turned into deliveries per round.
const TASKS_PER_ROUND: i64 = 100;
/// Deliveries sent at once by one worker.
const SENDS_PER_ROUND: i64 = 16;
/// How long a claimed delivery is held: longer than any attempt (`webhooks.timeout_secs` is at
/// most 120 s).
const HOLD: TimeDelta = TimeDelta::seconds(300);
/// Finished deliveries (and their log) are kept this long.
const KEEP: TimeDelta = TimeDelta::days(30);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    outcome: &'static str,
}

/// Attempts by outcome (`ocrd_webhook_attempts_total` on the worker's `/metrics`).
pub type AttemptCounter = Family<OutcomeLabel, Counter>;

pub struct Sender {
    app: App,
    client: Client,
    schedule: Schedule,
    attempts: AttemptCounter,
}

impl Sender {
    pub fn new(app: App, attempts: AttemptCounter) -> Result<Sender, reqwest::Error> {
        let config = &app.config.webhooks;
        Ok(Sender {
            client: Client::new(config)?,
            schedule: Schedule::new(config.clock_scale),
            app,
            attempts,
        })
    }

    /// Runs until `shutdown`. Dropped mid-round, it leaves only holds that run out.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failing = false;
        while !shutdown.is_cancelled() {
            let wait = match self.round().await {
                Ok(wait) => {
                    failing = false;
                    wait
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "webhook deliveries paused: the database is unavailable");
                    }
                    failing = true;
                    POLL
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One round; returns how long to wait before the next.
    async fn round(&self) -> Result<Duration, DbError> {
        self.write_ended_tasks().await?;
        let claimed = self
            .app
            .db
            .run(|c| {
                async move { WebhookDelivery::claim_due(c, now() + HOLD, SENDS_PER_ROUND).await }
                    .boxed()
            })
            .await?;
        let full = claimed.len() as i64 == SENDS_PER_ROUND;
        futures::future::join_all(claimed.into_iter().map(|d| self.send(d))).await;
        if full {
            return Ok(Duration::ZERO);
        }
        let next = self
            .app
            .db
            .run(|c| async move { WebhookDelivery::next_due(c).await }.boxed())
            .await?;
        Ok(next
            .and_then(|at| (at - now()).to_std().ok())
            .unwrap_or(Duration::ZERO)
            .min(POLL))
    }

    async fn write_ended_tasks(&self) -> Result<(), DbError> {
        let ended = self
            .app
            .db
            .run(|c| {
                async move { WebhookDelivery::pending_tasks(c, TASKS_PER_ROUND).await }.boxed()
            })
            .await?;
        for task_id in ended {
            let id = task_id.clone();
            let written = self
                .app
                .db
                .run(move |c| {
                    async move { WebhookDelivery::write_for_task(c, &id, deliveries_for).await }
                        .boxed()
                })
                .await;
            match written {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(task = %task_id, deliveries = n, "webhook deliveries written")
                }
                // The database is down: the whole round waits.
                Err(e) if e.is_transient() => return Err(e),
                // This task's (a race with a deletion): the others go on; it is tried again.
                Err(e) => {
                    tracing::warn!(task = %task_id, error = %e, "cannot write a task's webhook deliveries")
                }
            }
        }
        Ok(())
    }

    /// Sends one claimed delivery and records how it went. Errors are logged: the hold runs
    /// out and another round sends it again.
    async fn send(&self, delivery: WebhookDelivery) {
        let id = delivery.id.clone();
        if let Err(e) = self.try_send(delivery).await {
            tracing::warn!(delivery = %id, error = %e, "could not record a webhook attempt");
        }
    }

    async fn try_send(&self, delivery: WebhookDelivery) -> Result<(), DbError> {
        let secrets = {
            let delivery = delivery.clone();
            self.app
                .db
                .run(move |c| async move { delivery.signing_secrets(c).await }.boxed())
                .await?
        };
        let at = now();
        let attempts = delivery.attempts + 1;
        if secrets.is_empty() {
            // The endpoint was deleted or disabled, or the task erased, since it was written.
            let outcome = Outcome {
                status: None,
                retry_after: None,
                response: None,
                error: Some("Not sent: the endpoint was disabled or deleted.".into()),
                latency: Duration::ZERO,
            };
            let after = AfterAttempt {
                status: DeliveryStatus::FAILED,
                attempts,
                next_attempt_at: None,
            };
            self.record(&delivery, at, outcome, after).await?;
            return Ok(());
        }
        let timestamp = Utc::now().timestamp();
        let headers = [
            ("webhook-id", delivery.id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
            (
                "webhook-signature",
                signing::signature(&secrets, &delivery.id, timestamp, &delivery.payload),
            ),
        ];
        let outcome = self
            .client
            .post(&delivery.url, &headers, delivery.payload.clone())
            .await;
        let counted = match outcome.status {
            _ if outcome.delivered() => "delivered",
            Some(_) => "error_status",
            None => "no_answer",
        };
        self.attempts
            .get_or_create(&OutcomeLabel { outcome: counted })
            .inc();
        let gone = outcome.status == Some(410);
        let after = if outcome.delivered() {
            AfterAttempt {
                status: DeliveryStatus::DELIVERED,
                attempts,
                next_attempt_at: None,
            }
        } else {
            let retry = (!gone)
                .then(|| self.schedule.retry_in(attempts, outcome.retry_after))
                .flatten()
                .and_then(|wait| TimeDelta::from_std(wait).ok());
            AfterAttempt {
                status: if retry.is_some() {
                    DeliveryStatus::PENDING
                } else {
                    DeliveryStatus::FAILED
                },
                attempts,
                next_attempt_at: retry.map(|wait| now() + wait),
            }
        };
        let delivered = outcome.delivered();
        if !self.record(&delivery, at, outcome, after).await? {
            return Ok(());
        }
        let Some(endpoint) = delivery.endpoint_id else {
            return Ok(());
        };
        if delivered {
            return self
                .app
                .db
                .run(move |c| async move { WebhookEndpoint::succeeded(c, &endpoint).await }.boxed())
                .await;
        }
        let reason = if gone {
            Some("The endpoint answered 410 Gone.".to_owned())
        } else {
            let id = endpoint.clone();
            let since = self
                .app
                .db
                .run(move |c| async move { WebhookEndpoint::failed(c, &id, at).await }.boxed())
                .await?;
            let failing_for = since
                .and_then(|since| (now() - since).to_std().ok())
                .unwrap_or_default();
            self.schedule
                .failing_too_long(failing_for)
                .then(|| "Every delivery failed for 5 days.".to_owned())
        };
        if let Some(reason) = reason {
            tracing::warn!(endpoint = %endpoint, reason, "webhook endpoint disabled");
            self.app
                .db
                .run(move |c| {
                    async move { WebhookEndpoint::disable(c, &endpoint, &reason).await }.boxed()
                })
                .await?;
        }
        Ok(())
    }

    async fn record(
        &self,
        delivery: &WebhookDelivery,
        at: chrono::NaiveDateTime,
        outcome: Outcome,
        after: AfterAttempt,
    ) -> Result<bool, DbError> {
        let attempt = NewAttempt {
            delivery_id: delivery.id.clone(),
            at,
            status_code: outcome.status.map(i32::from),
            latency_ms: i32::try_from(outcome.latency.as_millis()).unwrap_or(i32::MAX),
            error: outcome.error,
            response: outcome.response,
            next_attempt_at: after.next_attempt_at,
        };
        let held = delivery.locked_until;
        let recorded = self
            .app
            .db
            .run(move |c| {
                async move { WebhookDelivery::record(c, attempt, after, held).await }.boxed()
            })
            .await?;
        if !recorded {
            tracing::warn!(delivery = %delivery.id, "a webhook attempt outlived its claim; another sender has the delivery");
        }
        Ok(recorded)
    }
}

/// Deletes deliveries finished more than 30 days ago, with their log (the recovery round).
pub async fn forget_old(app: &App) -> Result<usize, DbError> {
    let before = now() - KEEP;
    app.db
        .run(move |c| async move { WebhookDelivery::forget_finished(c, before).await }.boxed())
        .await
}
