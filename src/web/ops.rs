//! Operational endpoints: liveness, readiness and Prometheus metrics.

use actix_web::{HttpResponse, web};

use super::WebState;

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
    (status = 503, description = "A dependency is unavailable"),
))]
pub async fn readyz(app: web::Data<App>) -> HttpResponse {
    match app.check_ready().await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"status": "ready"})),
        // The cause goes to the log: hosts and paths are not for anonymous callers.
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": "unavailable"}))
        }
    }
}

/// Prometheus metrics: HTTP requests and latencies by route; in all-in-one, the worker's too.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(app: web::Data<App>, state: web::Data<WebState>) -> HttpResponse {
    let mut text = state.metrics.render();
    if let Some(worker) = &state.worker_metrics {
        let _ = worker.refresh_queue(&app.db).await;
        // One OpenMetrics document: a single `# EOF`, at the end.
        text = text.trim_end().trim_end_matches("# EOF").to_owned();
        text.push_str(&worker.render());
    }
    HttpResponse::Ok()
        .content_type(METRICS_CONTENT_TYPE)
        .body(text)
}
