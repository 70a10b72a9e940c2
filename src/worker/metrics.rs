//! The worker's Prometheus metrics, served at `/metrics` by the health server.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use futures::FutureExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::db::models::{Task, now};
use crate::db::{DbError, DbPool};

/// Pages/s is measured over this trailing window.
const RATE_WINDOW: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

pub struct Metrics {
    registry: Registry,
    completed: Counter,
    failed: Family<CodeLabel, Counter>,
    pub(super) retries: Counter,
    pub(super) purged: Counter,
    pub(super) webhook_attempts: crate::webhooks::delivery::AttemptCounter,
    pub(super) task_seconds: Histogram,
    page_seconds: Histogram,
    pages: Counter,
    pages_per_second: Gauge<f64, AtomicU64>,
    queue_waiting: Gauge,
    queue_lag_seconds: Gauge<f64, AtomicU64>,
    recent_pages: Mutex<VecDeque<Instant>>,
    started: Instant,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ocrd");
        let completed = Counter::default();
        let failed = Family::<CodeLabel, Counter>::default();
        let retries = Counter::default();
        let purged = Counter::default();
        let webhook_attempts = crate::webhooks::delivery::AttemptCounter::default();
        let task_seconds = Histogram::new(exponential_buckets(0.1, 2.0, 14));
        let page_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 12));
        let pages = Counter::default();
        let pages_per_second = Gauge::<f64, AtomicU64>::default();
        let queue_waiting = Gauge::default();
        let queue_lag_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register("tasks_completed", "Tasks completed", completed.clone());
        registry.register(
            "tasks_failed",
            "Tasks failed, by error code",
            failed.clone(),
        );
        registry.register(
            "task_retries",
            "Retries after transient failures",
            retries.clone(),
        );
        registry.register(
            "tasks_purged",
            "Finished tasks erased after their retention period",
            purged.clone(),
        );
        registry.register(
            "webhook_attempts",
            "Webhook attempts, by outcome: delivered, error_status (an answer other than 2xx) or no_answer",
            webhook_attempts.clone(),
        );
        registry.register(
            "task_duration_seconds",
            "Time from claim to result",
            task_seconds.clone(),
        );
        registry.register(
            "page_duration_seconds",
            "Time to read and recognise one page",
            page_seconds.clone(),
        );
        registry.register("pages", "Pages recognised", pages.clone());
        registry.register(
            "pages_per_second",
            "Pages recognised per second over the last minute",
            pages_per_second.clone(),
        );
        registry.register(
            "queue_waiting_tasks",
            "Tasks queued in the database",
            queue_waiting.clone(),
        );
        registry.register(
            "queue_lag_seconds",
            "How long the longest-waiting queued task has waited",
            queue_lag_seconds.clone(),
        );
        Metrics {
            registry,
            completed,
            failed,
            retries,
            purged,
            webhook_attempts,
            task_seconds,
            page_seconds,
            pages,
            pages_per_second,
            queue_waiting,
            queue_lag_seconds,
            recent_pages: Mutex::new(VecDeque::new()),
            started: Instant::now(),
        }
    }

    pub(super) fn task_completed(&self, took: Duration) {
        self.completed.inc();
        self.task_seconds.observe(took.as_secs_f64());
    }

    pub(super) fn task_failed(&self, code: &str) {
        self.failed
            .get_or_create(&CodeLabel {
                code: code.to_owned(),
            })
            .inc();
    }

    /// Pages recognised since the process started.
    pub(super) fn pages_done(&self) -> u64 {
        self.pages.get()
    }

    pub(super) fn page_done(&self, took: Duration) {
        self.pages.inc();
        self.page_seconds.observe(took.as_secs_f64());
        let mut recent = self.recent_pages.lock().unwrap_or_else(|e| e.into_inner());
        recent.push_back(Instant::now());
        prune(&mut recent);
    }

    /// Reads the queue figures from the database (the truth, whichever queue runs).
    pub async fn refresh_queue(&self, db: &DbPool) -> Result<(), DbError> {
        let (waiting, oldest) = db
            .run(|c| async move { Task::queue_stats(c).await }.boxed())
            .await?;
        let lag = oldest
            .and_then(|at| (now() - at).to_std().ok())
            .unwrap_or_default();
        self.queue_waiting.set(waiting);
        self.queue_lag_seconds.set(lag.as_secs_f64());
        Ok(())
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        {
            let mut recent = self.recent_pages.lock().unwrap_or_else(|e| e.into_inner());
            prune(&mut recent);
            let window = self
                .started
                .elapsed()
                .min(RATE_WINDOW)
                .as_secs_f64()
                .max(1.0);
            self.pages_per_second.set(recent.len() as f64 / window);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Drops page times older than the rate window.
fn prune(recent: &mut VecDeque<Instant>) {
    while recent.front().is_some_and(|t| t.elapsed() > RATE_WINDOW) {
        recent.pop_front();
    }
}
