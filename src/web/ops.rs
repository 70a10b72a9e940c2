//! Operational endpoints: liveness, readiness and Prometheus metrics.

use actix_web::{HttpRequest, HttpResponse, web};

use super::{Scope, WebState};
use crate::error::{ApiError, Code};

/// prometheus-client writes OpenMetrics text; scrapers that do not ask for it get the
/// Prometheus text format (see [`prometheus_text`]).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
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

/// Prometheus metrics: HTTP requests and latencies by route, rate-limit refusals, WebSockets,
/// the database pool and the last backup; in all-in-one, the worker's too.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "OpenMetrics text when the Accept header asks for `application/openmetrics-text` (as Prometheus does), else the Prometheus text format 0.0.4",
        content(
            (String = "application/openmetrics-text"),
            (String = "text/plain"),
        )),
    (status = 401, description = "`server.metrics_token` is set and was not sent"),
    (status = 404, description = "Served on `server.ops_bind` instead"),
))]
pub async fn metrics(
    req: HttpRequest,
    app: web::Data<App>,
    state: web::Data<WebState>,
) -> Result<HttpResponse, ApiError> {
    operator_only(&req, &app, &state)?;
    state.metrics.refresh(&app.db).await;
    let mut text = state.metrics.render();
    if let Some(worker) = &state.worker_metrics {
        let _ = worker.refresh_queue(&app.db).await;
        // One OpenMetrics document: a single `# EOF`, at the end.
        text = text.trim_end().trim_end_matches("# EOF").to_owned();
        text.push_str(&worker.render());
    }
    let wants_openmetrics = req
        .headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    Ok(if wants_openmetrics {
        HttpResponse::Ok().content_type(OPENMETRICS).body(text)
    } else {
        HttpResponse::Ok()
            .content_type(PROMETHEUS_TEXT)
            .body(prometheus_text(&text))
    })
}

/// The Prometheus text format (0.0.4) of an OpenMetrics document, for tools that read only
/// that (promtool, curl): a counter's HELP and TYPE name it with its `_total`, as its samples
/// are named, and the OpenMetrics-only `# UNIT` and `# EOF` lines go.
pub fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn counters_are_named_by_their_samples_in_the_prometheus_text() {
        let openmetrics = "# HELP ocrd_pages Pages recognised.\n# TYPE ocrd_pages counter\n\
            ocrd_pages_total 3\n# HELP ocrd_lag Lag.\n# TYPE ocrd_lag gauge\n# UNIT ocrd_lag seconds\n\
            ocrd_lag 1.5\n# EOF\n";
        assert_eq!(
            super::prometheus_text(openmetrics),
            "# HELP ocrd_pages_total Pages recognised.\n# TYPE ocrd_pages_total counter\n\
             ocrd_pages_total 3\n# HELP ocrd_lag Lag.\n# TYPE ocrd_lag gauge\nocrd_lag 1.5\n"
        );
    }
}
