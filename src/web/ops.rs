//! Operational endpoints: liveness, readiness and Prometheus metrics.

use actix_web::{HttpRequest, HttpResponse, web};

use super::{Scope, WebState};
use crate::error::{ApiError, Code};

/// prometheus-client writes OpenMetrics text.
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
use crate::app::App;

/// The process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// The database, queue and blob storage answer.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready"),
    (status = 401, description = "`server.metrics_token` is set and was not sent"),
    (status = 404, description = "Served on `server.ops_bind` instead"),
    (status = 503, description = "A dependency is unavailable"),
))]
pub async fn readyz(
    req: HttpRequest,
    app: web::Data<App>,
    state: web::Data<WebState>,
) -> Result<HttpResponse, ApiError> {
    operator_only(&req, &app, &state)?;
    Ok(match app.check_ready().await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"status": "ready"})),
        // The cause goes to the log: hosts and paths are not for anonymous callers.
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": "unavailable"}))
        }
    })
}

/// On the public listener, `/readyz` and `/metrics` are for operators: gone when
/// `server.ops_bind` serves them elsewhere, and behind `server.metrics_token` when set.
fn operator_only(req: &HttpRequest, app: &App, state: &WebState) -> Result<(), ApiError> {
    let server = &app.config.server;
    if state.scope == Scope::Operations {
        return Ok(());
    }
    if server.ops_bind.is_some() {
        return Err(ApiError::new(
            Code::NotFound,
            "This is served on the operations listener (server.ops_bind).",
        ));
    }
    if server.metrics_token.is_empty() {
        return Ok(());
    }
    let sent = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(crate::auth::bearer_token)
        .unwrap_or("");
    if crate::auth::constant_time_eq(sent.as_bytes(), server.metrics_token.expose().as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::Unauthenticated,
            "Send server.metrics_token as Authorization: Bearer.",
        ))
    }
}

/// Prometheus metrics: HTTP requests and latencies by route; in all-in-one, the worker's too.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text"),
    (status = 401, description = "`server.metrics_token` is set and was not sent"),
    (status = 404, description = "Served on `server.ops_bind` instead"),
))]
pub async fn metrics(
    req: HttpRequest,
    app: web::Data<App>,
    state: web::Data<WebState>,
) -> Result<HttpResponse, ApiError> {
    operator_only(&req, &app, &state)?;
    let mut text = state.metrics.render();
    if let Some(worker) = &state.worker_metrics {
        let _ = worker.refresh_queue(&app.db).await;
        // One OpenMetrics document: a single `# EOF`, at the end.
        text = text.trim_end().trim_end_matches("# EOF").to_owned();
        text.push_str(&worker.render());
    }
    Ok(HttpResponse::Ok()
        .content_type(METRICS_CONTENT_TYPE)
        .body(text))
}
