//! A server's own metrics: HTTP requests and latency by route pattern (never by raw path,
//! which would give one series per task id), rate-limit refusals, open WebSockets, the
//! database pool, and the time of the last backup.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::db::DbPool;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Requests {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolState {
    state: &'static str,
}

#[derive(Debug)]
pub struct ServerMetrics {
    /// `ocrd_*`, with the HTTP series under `ocrd_http_*`.
    registry: Registry,
    requests: Family<Requests, Counter>,
    latency: Family<Route, Histogram>,
    websockets: Gauge,
    db_connections: Family<PoolState, Gauge>,
    db_waiting: Gauge,
    backup_last_success: Gauge<f64, std::sync::atomic::AtomicU64>,
}

/// One open WebSocket, counted in `ocrd_websocket_connections` until dropped.
pub struct OpenSocket(Gauge);

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl ServerMetrics {
    /// `rate_limited`: the limiter's refusals by class, exported as
    /// `ocrd_rate_limited_total{class}`.
    /// `reads`: the database's reads by target, exported as `ocrd_db_reads_total{target}`.
    pub fn new(
        rate_limited: Family<crate::edge::ratelimit::ClassLabel, Counter>,
        reads: crate::db::replicas::ReadCounter,
    ) -> ServerMetrics {
        let mut root = Registry::with_prefix("ocrd");
        root.register(
            "db_reads",
            "Reads that may go to a replica, by where they ran (replica, or primary when none is healthy); only with database.read_urls",
            reads,
        );
        root.register(
            "rate_limited",
            "Requests refused by a rate limit (rate_limits.*), by class",
            rate_limited,
        );
        let websockets = Gauge::default();
        root.register(
            "websocket_connections",
            "WebSocket connections open on this server",
            websockets.clone(),
        );
        let db_connections = Family::<PoolState, Gauge>::default();
        root.register(
            "db_pool_connections",
            "Database pool connections by state (in_use, idle, max)",
            db_connections.clone(),
        );
        let db_waiting = Gauge::default();
        root.register(
            "db_pool_waiting",
            "Callers waiting for a database connection",
            db_waiting.clone(),
        );
        let backup_last_success = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        root.register(
            "backup_last_success_timestamp_seconds",
            "When the newest backup recorded by `ocrd backup create` was made (0: never)",
            backup_last_success.clone(),
        );
        let registry = root.sub_registry_with_prefix("http");
        let requests = Family::<Requests, Counter>::default();
        let latency = Family::<Route, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        ServerMetrics {
            registry: root,
            requests,
            latency,
            websockets,
            db_connections,
            db_waiting,
            backup_last_success,
        }
    }

    pub fn observe(&self, method: &str, route: &str, status: u16, took: Duration) {
        // Clients choose the method: only known ones get a series of their own.
        const KNOWN: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
        let method = if KNOWN.contains(&method) {
            method
        } else {
            "OTHER"
        };
        self.requests
            .get_or_create(&Requests {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&Route {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn open_socket(&self) -> OpenSocket {
        self.websockets.inc();
        OpenSocket(self.websockets.clone())
    }

    /// Reads the pool's state, and the last backup's time from the database (kept as it was
    /// when the database does not answer within a second: a scrape must not hang).
    pub async fn refresh(&self, db: &DbPool) {
        let pool = db.status();
        for (state, value) in [
            ("in_use", pool.open.saturating_sub(pool.idle)),
            ("idle", pool.idle),
            ("max", pool.max),
        ] {
            self.db_connections
                .get_or_create(&PoolState { state })
                .set(value as i64);
        }
        self.db_waiting.set(pool.waiting as i64);
        let last = db.run(|c| {
            use futures::FutureExt;
            async move { crate::db::models::Backup::last_success(c).await }.boxed()
        });
        match tokio::time::timeout(Duration::from_secs(1), last).await {
            Ok(Ok(at)) => {
                let at = at.map_or(0.0, |at| at.and_utc().timestamp() as f64);
                self.backup_last_success.set(at);
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "cannot read the last backup's time"),
            Err(_) => tracing::debug!("the last backup's time took too long to read"),
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
