//! The health server: `/healthz` (the process answers), `/readyz` (database, queue and blob
//! storage answer) and `/metrics` (Prometheus). Loopback by default; bind it elsewhere only
//! behind a firewall, it has no authentication.

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::{App as HttpApp, HttpResponse, HttpServer, web};

use super::Metrics;
use crate::app::App;

#[derive(Clone)]
struct State {
    app: App,
    metrics: Arc<Metrics>,
    /// The runtime the pools were built on: checks run there, not on actix's own threads.
    runtime: tokio::runtime::Handle,
}

/// Binds `addr` (port 0 picks a free port) and returns the server, to be awaited, with the
/// address it got. Stop it through `server.handle()`.
pub fn bind(
    addr: &str,
    app: App,
    metrics: Arc<Metrics>,
) -> std::io::Result<(actix_web::dev::Server, SocketAddr)> {
    let state = State {
        app,
        metrics,
        runtime: tokio::runtime::Handle::current(),
    };
    let server = HttpServer::new(move || {
        HttpApp::new()
            .app_data(web::Data::new(state.clone()))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics_text))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)?;
    let bound = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other(format!("{addr} gave no address")))?;
    Ok((server.run(), bound))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn readyz(state: web::Data<State>) -> HttpResponse {
    let app = state.app.clone();
    let checked = state
        .runtime
        .spawn(async move { app.check_ready().await.map_err(|e| e.to_string()) })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    match checked {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"status": "ready"})),
        Err(error) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "unavailable", "error": error})),
    }
}

async fn metrics_text(state: web::Data<State>) -> HttpResponse {
    let (app, metrics) = (state.app.clone(), state.metrics.clone());
    // Fresh queue figures; on a database outage the last ones stay.
    let _ = state
        .runtime
        .spawn(async move { metrics.refresh_queue(&app.db).await })
        .await;
    HttpResponse::Ok()
        .content_type(super::METRICS_CONTENT_TYPE)
        .body(state.metrics.render())
}
