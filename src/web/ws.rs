//! `GET /ws`: live `task.updated` events, for the caller's tasks (admins: every task), and for
//! operators who send `{"subscribe":"logs"}`, every new log record as `{"type":"log",…}`.
//!
//! One subscription to the events port per process, fanned out in memory to every socket.
//! The server pings every [`PING_EVERY`] and closes a socket that has not answered for
//! [`SILENT_FOR`]; a socket that falls too far behind is closed too (the client reconnects and
//! re-reads the task list).

use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message};
use futures::StreamExt;
use tokio::sync::broadcast;

use super::WebState;
use crate::app::App;
use crate::auth::{CurrentUser, Via, authenticate, still_valid};
use crate::edge::Client;
use crate::edge::ratelimit::SocketLease;
use crate::error::{ApiError, Code};
use crate::events::{Event, Events};

const PING_EVERY: Duration = Duration::from_secs(10);
const SILENT_FOR: Duration = Duration::from_secs(30);
/// A socket's slot under `rate_limits.ws_*` lasts this long unless renewed (every ping): the
/// slots of a killed process free themselves.
const LEASE: Duration = Duration::from_secs(60);

/// This process's fan-out of the events port.
pub fn fan_out(events: &Events) -> broadcast::Sender<Event> {
    events.sender()
}

/// Opens the event stream. Authenticated by the session cookie or a Bearer token; without
/// either the upgrade is refused with 401.
#[utoipa::path(get, path = "/ws", tag = "events", responses(
    (status = 101, description = "WebSocket: text messages `{\"type\":\"task.updated\",\"task\":{…}}`"),
    (status = 400, description = "`invalid_request`: not a WebSocket upgrade (no `Upgrade: websocket`, or a bad key or version)"),
    (status = 401, description = "`unauthenticated`"),
    (status = 403, description = "`forbidden`: a cookie-authenticated upgrade from a foreign Origin"),
    (status = 429, description = "`too_many_requests`: too many sockets open from this address or account"),
))]
pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    app: web::Data<App>,
    state: web::Data<WebState>,
) -> Result<HttpResponse, ApiError> {
    let current = authenticate(&req).await?;
    let client = Client::of(&req);
    // Browsers send cookies with cross-site WebSocket upgrades and CORS does not apply to
    // them: a cookie-authenticated socket must come from one of our own pages.
    if matches!(current.via, Via::Session { .. }) && !origin_allowed(&req, &client, &app) {
        return Err(ApiError::new(
            Code::Forbidden,
            "This WebSocket comes from a foreign origin.",
        ));
    }
    let lease = app
        .limiter
        .open_socket(&client.address_key(), &current.user.id, LEASE)
        .await?;
    let (response, session, messages) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::invalid(format!("This is not a WebSocket upgrade: {e}.")))?;
    let events = state.events.subscribe();
    let counted = state.metrics.open_socket();
    actix_web::rt::spawn(async move {
        pump(session, messages, events, app, current, lease).await;
        drop(counted);
    });
    Ok(response)
}

/// No `Origin` (not a browser), our own origin, `server.public_url`'s, or a configured one.
/// "Our own" is the client's scheme and host as the edge resolved them: forwarded headers
/// count only from trusted proxies.
fn origin_allowed(req: &HttpRequest, client: &Client, app: &App) -> bool {
    let Some(origin) = req.headers().get("Origin").and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let own = client.origin();
    let public = app
        .config
        .server
        .public_url
        .as_deref()
        .map(|u| u.trim_end_matches('/'));
    origin == own
        || Some(origin) == public
        || app.config.server.cors_origins.iter().any(|o| o == origin)
}

async fn pump(
    mut session: actix_ws::Session,
    mut messages: actix_ws::MessageStream,
    mut events: broadcast::Receiver<Event>,
    app: web::Data<App>,
    current: CurrentUser,
    lease: SocketLease,
) {
    // Operators and admins hear of every task.
    let (user_id, admin) = (current.user.id.clone(), current.user.can_operate());
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut heard = Instant::now();
    // The log tail, once an operator asks for it.
    let mut logs: Option<broadcast::Receiver<crate::logs::LogRecord>> = None;
    let reason = loop {
        tokio::select! {
            record = async { logs.as_mut()?.recv().await.ok() }, if logs.is_some() => {
                let Some(record) = record else { continue };
                let message = serde_json::json!({"type": "log", "record": record});
                if session.text(crate::error::escape_markup(&message.to_string())).await.is_err() {
                    return;
                }
            },
            event = events.recv() => match event {
                Ok(event) => {
                    let Event::TaskUpdated { task } = &event;
                    if (admin || task.user_id == user_id)
                        && let Ok(text) = serde_json::to_string(&event)
                        && session.text(crate::error::escape_markup(&text)).await.is_err()
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    break Some(CloseReason { code: CloseCode::Again, description: Some("fell behind; reconnect and reload".into()) });
                }
                Err(broadcast::error::RecvError::Closed) => break Some(CloseCode::Restart.into()),
            },
            message = messages.next() => match message {
                Some(Ok(Message::Ping(bytes))) => {
                    heard = Instant::now();
                    if session.pong(&bytes).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(reason))) => break reason,
                Some(Ok(Message::Text(text))) => {
                    heard = Instant::now();
                    if admin && logs.is_none() && is_log_subscription(&text) {
                        let redis_url = app.config.redis_url().ok().flatten();
                        logs = Some(crate::logs::live(redis_url, &app.config.redis.key_prefix));
                    }
                }
                Some(Ok(_)) => heard = Instant::now(),
                Some(Err(_)) | None => return,
            },
            _ = ping.tick() => {
                if heard.elapsed() > SILENT_FOR {
                    break Some(CloseReason { code: CloseCode::Away, description: Some("no pong".into()) });
                }
                // Logged out, token revoked, account disabled or demoted: the stream ends.
                if !still_valid(&app, &current).await {
                    break Some(CloseReason { code: CloseCode::Policy, description: Some("signed out".into()) });
                }
                if session.ping(b"").await.is_err() {
                    return;
                }
                lease.renew().await;
            }
        }
    };
    let _ = session.close(reason).await;
}

/// `{"subscribe":"logs"}`.
fn is_log_subscription(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text)
        .is_ok_and(|v| v.get("subscribe").and_then(|s| s.as_str()) == Some("logs"))
}
