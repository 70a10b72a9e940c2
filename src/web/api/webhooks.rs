//! Webhook endpoints: registered with their events, listed, tested, rotated, re-enabled and
//! deleted, and their delivery log with redelivery. The work is `crate::webhooks`'.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::json;
use crate::app::App;
use crate::auth::CurrentUser;
use crate::db::models::{WebhookAttempt, WebhookDelivery, WebhookEndpoint, utc_time};
use crate::error::{ApiError, Code};
use crate::webhooks::{self, WebhookError};

/// An event an endpoint can subscribe to.
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum WebhookEventName {
    #[schema(rename = "task.completed")]
    Completed,
    #[schema(rename = "task.failed")]
    Failed,
    #[schema(rename = "task.cancelled")]
    Cancelled,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateWebhookRequest {
    /// Where events are posted: `http://` or `https://`, on a public address.
    #[schema(min_length = 1, max_length = 2000)]
    pub url: String,
    /// The events to send, at least one.
    #[schema(value_type = Vec<WebhookEventName>)]
    pub events: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct RedeliverRequest {
    /// The delivery to send again (its `webhook-id`).
    #[schema(pattern = "^msg_[0-9a-f]{32}$")]
    pub delivery_id: String,
}

/// A webhook endpoint (never its secret, which is shown once).
#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    #[serde(with = "utc_time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: chrono::NaiveDateTime,
    /// Since when every attempt has failed; `null` while it is healthy.
    #[serde(with = "utc_time::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub failing_since: Option<chrono::NaiveDateTime>,
    /// When it was disabled (410 Gone, or 5 days of failures); `null` while it is active.
    #[serde(with = "utc_time::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub disabled_at: Option<chrono::NaiveDateTime>,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// Until when the secret before the last rotation signs too.
    #[serde(with = "utc_time::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub previous_secret_until: Option<chrono::NaiveDateTime>,
}

impl From<&WebhookEndpoint> for WebhookView {
    fn from(e: &WebhookEndpoint) -> Self {
        WebhookView {
            id: e.id.clone(),
            url: e.url.clone(),
            events: e.events.split(' ').map(str::to_owned).collect(),
            created_at: e.created_at,
            failing_since: e.failing_since,
            disabled_at: e.disabled_at,
            disabled_reason: e.disabled_reason.clone(),
            previous_secret_until: e.previous_secret_until,
        }
    }
}

/// An endpoint with its signing secret: answered when it is made or its secret rotated.
#[derive(Serialize, ToSchema)]
pub struct WebhookWithSecret {
    /// `whsec_…`: verify signatures with it. Shown this once, never again.
    pub secret: String,
    #[serde(flatten)]
    pub endpoint: WebhookView,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

/// One try.
#[derive(Serialize, ToSchema)]
pub struct AttemptView {
    #[serde(with = "utc_time")]
    #[schema(value_type = String, format = DateTime)]
    pub at: chrono::NaiveDateTime,
    /// The receiver's HTTP status; `null` when none came.
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    /// Why no answer came (refused target, connection, timeout).
    pub error: Option<String>,
    /// The start of the receiver's answer (1 KiB).
    pub response: Option<String>,
    /// When the next try was planned after this one.
    #[serde(with = "utc_time::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<chrono::NaiveDateTime>,
}

impl From<&WebhookAttempt> for AttemptView {
    fn from(a: &WebhookAttempt) -> Self {
        AttemptView {
            at: a.at,
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            error: a.error.clone(),
            response: a.response.clone(),
            next_attempt_at: a.next_attempt_at,
        }
    }
}

/// One event sent to an endpoint.
#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    /// The `webhook-id` header: the same on every attempt.
    pub id: String,
    /// `task.completed`, `task.failed`, `task.cancelled` or `webhook.test`.
    pub event: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub task_id: Option<String>,
    #[serde(with = "utc_time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: chrono::NaiveDateTime,
    /// The next try, while pending.
    #[serde(with = "utc_time::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<chrono::NaiveDateTime>,
    /// Every try, oldest first.
    pub attempts: Vec<AttemptView>,
}

impl DeliveryView {
    fn new(delivery: &WebhookDelivery, attempts: &[WebhookAttempt]) -> DeliveryView {
        DeliveryView {
            id: delivery.id.clone(),
            event: delivery.event.clone(),
            status: delivery.status.clone(),
            task_id: delivery.task_id.clone(),
            created_at: delivery.created_at,
            next_attempt_at: delivery.next_attempt_at,
            attempts: attempts.iter().map(AttemptView::from).collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    /// The newest 50, newest first.
    pub deliveries: Vec<DeliveryView>,
}

#[derive(Serialize, ToSchema)]
pub struct QueuedDelivery {
    /// The delivery's `webhook-id`; its attempts appear in the endpoint's deliveries.
    pub delivery_id: String,
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Invalid(why) => ApiError::invalid(why),
            WebhookError::Refused(why) => ApiError::new(Code::WebhookTargetRefused, why),
            WebhookError::NotFound => ApiError::new(Code::WebhookNotFound, e.to_string()),
            WebhookError::TooMany | WebhookError::Busy(_) => {
                ApiError::new(Code::Conflict, e.to_string())
            }
            WebhookError::Db(e) => e.into(),
        }
    }
}

/// Audits a change whose answer holds a secret shown once: a failed audit write is logged,
/// not answered, or the secret would be lost with the answer while the change stays.
async fn audit_kept(
    req: &HttpRequest,
    app: &App,
    current: &CurrentUser,
    action: &str,
    target: &str,
    detail: Option<serde_json::Value>,
) {
    if let Err(e) = super::audit(req, app, &current.user, action, target, detail).await {
        tracing::error!(action, target, error = %e, "a webhook change was made but not audited");
    }
}

/// An endpoint id from the path; anything else is an endpoint that does not exist.
fn endpoint_id(id: web::Path<String>) -> Result<String, ApiError> {
    let id = id.into_inner();
    if crate::db::models::is_id(&id) {
        Ok(id)
    } else {
        Err(WebhookError::NotFound.into())
    }
}

/// Registers a webhook endpoint. Its URL's host must resolve to public addresses only.
#[utoipa::path(post, path = "/api/webhooks", operation_id = "create_webhook", tag = "webhooks", request_body = CreateWebhookRequest, responses(
    (status = 201, body = WebhookWithSecret, description = "Created; the secret is shown this once"),
    (status = 400, description = "`invalid_request`: a malformed URL or an unknown event"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`csrf_failed`"),
    (status = 409, description = "`conflict`: the account has 20 endpoints"),
    (status = 422, description = "`webhook_target_refused`: the host resolves to a private, loopback, link-local or reserved address"),
))]
pub async fn create(
    req: HttpRequest,
    app: web::Data<App>,
    current: CurrentUser,
    body: web::Json<CreateWebhookRequest>,
) -> Result<HttpResponse, ApiError> {
    let created =
        webhooks::create_endpoint(&app, &current.user.id, &body.url, &body.events).await?;
    let detail = serde_json::json!({"url": created.url, "events": created.events});
    audit_kept(
        &req,
        &app,
        &current,
        "webhook.create",
        &created.id,
        Some(detail),
    )
    .await;
    Ok(json(
        StatusCode::CREATED,
        &WebhookWithSecret {
            secret: created.secret.clone(),
            endpoint: (&created).into(),
        },
    ))
}

/// The caller's webhook endpoints.
#[utoipa::path(get, path = "/api/webhooks", operation_id = "list_webhooks", tag = "webhooks", responses(
    (status = 200, body = WebhookList, description = "OK"), (status = 401, description = "`unauthenticated`"),
))]
pub async fn list(app: web::Data<App>, current: CurrentUser) -> Result<HttpResponse, ApiError> {
    let endpoints = webhooks::list_endpoints(&app, &current.user.id).await?;
    Ok(json(
        StatusCode::OK,
        &WebhookList {
            webhooks: endpoints.iter().map(WebhookView::from).collect(),
        },
    ))
}

/// Deletes an endpoint with its delivery log; nothing more is sent to it.
#[utoipa::path(delete, path = "/api/webhooks/{id}", operation_id = "delete_webhook", tag = "webhooks", params(("id" = String, Path)), responses(
    (status = 204, description = "Deleted"), (status = 401, description = "`unauthenticated`"),
    (status = 403, description = "`csrf_failed`"), (status = 404, description = "`webhook_not_found`"),
))]
pub async fn delete(
    req: HttpRequest,
    app: web::Data<App>,
    current: CurrentUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = endpoint_id(id)?;
    webhooks::delete_endpoint(&app, &current.user.id, &id).await?;
    super::audit(&req, &app, &current.user, "webhook.delete", &id, None).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Sends a `webhook.test` event to the endpoint, through the same delivery as task events.
#[utoipa::path(post, path = "/api/webhooks/{id}/test", operation_id = "test_webhook", tag = "webhooks", params(("id" = String, Path)), responses(
    (status = 202, body = QueuedDelivery, description = "Queued; a worker sends it within a second or two"),
    (status = 400, description = "`invalid_request`: the endpoint is disabled"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`csrf_failed`"),
    (status = 404, description = "`webhook_not_found`"),
    (status = 409, description = "`conflict`: a test event to it is still being delivered"),
))]
pub async fn test(
    app: web::Data<App>,
    current: CurrentUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = endpoint_id(id)?;
    let delivery_id = webhooks::send_test(&app, &current.user.id, &id).await?;
    Ok(json(StatusCode::ACCEPTED, &QueuedDelivery { delivery_id }))
}

/// Gives the endpoint a new secret. The old one signs too for 24 hours (two signatures in
/// `webhook-signature`), so the receiver can switch without missing an event.
#[utoipa::path(post, path = "/api/webhooks/{id}/rotate", operation_id = "rotate_webhook_secret", tag = "webhooks", params(("id" = String, Path)), responses(
    (status = 200, body = WebhookWithSecret, description = "The new secret, shown this once"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`csrf_failed`"),
    (status = 404, description = "`webhook_not_found`"),
))]
pub async fn rotate(
    req: HttpRequest,
    app: web::Data<App>,
    current: CurrentUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = endpoint_id(id)?;
    let rotated = webhooks::rotate_secret(&app, &current.user.id, &id).await?;
    audit_kept(&req, &app, &current, "webhook.rotate", &id, None).await;
    Ok(json(
        StatusCode::OK,
        &WebhookWithSecret {
            secret: rotated.secret.clone(),
            endpoint: (&rotated).into(),
        },
    ))
}

/// Sends to a disabled endpoint again, its failures forgotten.
#[utoipa::path(post, path = "/api/webhooks/{id}/enable", operation_id = "enable_webhook", tag = "webhooks", params(("id" = String, Path)), responses(
    (status = 200, body = WebhookView, description = "Enabled"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`csrf_failed`"),
    (status = 404, description = "`webhook_not_found`"),
))]
pub async fn enable(
    app: web::Data<App>,
    current: CurrentUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = endpoint_id(id)?;
    let enabled = webhooks::enable_endpoint(&app, &current.user.id, &id).await?;
    Ok(json(StatusCode::OK, &WebhookView::from(&enabled)))
}

/// The endpoint's delivery log: its newest deliveries, each with every attempt.
#[utoipa::path(get, path = "/api/webhooks/{id}/deliveries", operation_id = "list_webhook_deliveries", tag = "webhooks", params(("id" = String, Path)), responses(
    (status = 200, body = DeliveryList, description = "OK"), (status = 401, description = "`unauthenticated`"),
    (status = 404, description = "`webhook_not_found`"),
))]
pub async fn deliveries(
    app: web::Data<App>,
    current: CurrentUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = endpoint_id(id)?;
    let found = webhooks::deliveries(&app, &current.user.id, &id).await?;
    Ok(json(
        StatusCode::OK,
        &DeliveryList {
            deliveries: found
                .iter()
                .map(|(d, attempts)| DeliveryView::new(d, attempts))
                .collect(),
        },
    ))
}

/// Sends a delivery again, from the start of the retry schedule, with the same `webhook-id`.
#[utoipa::path(post, path = "/api/webhooks/{id}/redeliver", operation_id = "redeliver_webhook", tag = "webhooks", params(("id" = String, Path)), request_body = RedeliverRequest, responses(
    (status = 202, body = QueuedDelivery, description = "Queued"),
    (status = 400, description = "`invalid_request`: a malformed id, or the endpoint is disabled"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`csrf_failed`"),
    (status = 404, description = "`webhook_not_found`: no such endpoint or delivery"),
    (status = 409, description = "`conflict`: the delivery is still pending"),
))]
pub async fn redeliver(
    app: web::Data<App>,
    current: CurrentUser,
    id: web::Path<String>,
    body: web::Json<RedeliverRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = endpoint_id(id)?;
    let delivery_id = body.into_inner().delivery_id;
    let well_formed = delivery_id.strip_prefix("msg_").is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    });
    if !well_formed {
        return Err(ApiError::invalid(
            "delivery_id: `msg_` and 32 hexadecimal digits",
        ));
    }
    webhooks::redeliver(&app, &current.user.id, &id, &delivery_id).await?;
    Ok(json(StatusCode::ACCEPTED, &QueuedDelivery { delivery_id }))
}
