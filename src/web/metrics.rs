//! HTTP metrics: requests and latency by route pattern (never by raw path, which would give
//! one series per task id).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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

#[derive(Debug)]
pub struct HttpMetrics {
    /// `ocrd_*`, with the HTTP series under `ocrd_http_*`.
    registry: Registry,
    requests: Family<Requests, Counter>,
    latency: Family<Route, Histogram>,
}

impl HttpMetrics {
    /// `rate_limited`: the limiter's refusals by class, exported as
    /// `ocrd_rate_limited_total{class}`.
    pub fn new(rate_limited: Family<crate::edge::ratelimit::ClassLabel, Counter>) -> HttpMetrics {
        let mut root = Registry::with_prefix("ocrd");
        root.register(
            "rate_limited",
            "Requests refused by a rate limit (rate_limits.*), by class",
            rate_limited,
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
        HttpMetrics {
            registry: root,
            requests,
            latency,
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

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
