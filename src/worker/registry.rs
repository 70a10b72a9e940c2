//! The worker's side of the registry (`admin::workers`): it registers at start, reports every
//! `worker.report_secs` (heartbeat, pages, memory) and reads back what operators decided:
//! whether this worker drains and whether the queue is paused. It says `stopped` on exit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::Worker;
use crate::admin;
use crate::db::models::{Beat, WorkerRow, WorkerState, now};

/// Whether the slots may take new work, as the last report found.
#[derive(Debug, Default)]
pub(super) struct Gate {
    paused: AtomicBool,
    draining: AtomicBool,
}

impl Gate {
    pub(super) fn open(&self) -> bool {
        !self.paused.load(Ordering::Relaxed) && !self.draining.load(Ordering::Relaxed)
    }
}

/// The last report's page count and time, for pages per second.
pub(super) struct Reporter {
    registered: bool,
    pages: u64,
    at: Instant,
}

impl Worker {
    fn registration(&self) -> WorkerRow {
        let at = now();
        WorkerRow {
            id: self.id.clone(),
            host: crate::process::hostname(),
            pid: std::process::id() as i32,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            engine: self.engines[0].name().to_owned(),
            devices: self.options.devices.clone(),
            concurrency: self.options.concurrency as i32,
            started_at: at,
            heartbeat_at: at,
            state: WorkerState::Running,
            drain: false,
            pages_done: 0,
            pages_per_sec: 0.0,
            rss_bytes: admin::workers::rss_bytes(),
            role: "work".into(),
        }
    }

    pub(super) fn reporter(&self) -> Reporter {
        Reporter {
            registered: false,
            pages: 0,
            at: Instant::now(),
        }
    }

    /// One report: register if not yet, heartbeat, and read back the drain and pause flags.
    /// An unreachable database keeps the gate as it was.
    pub(super) async fn report(&self, reporter: &mut Reporter, state: WorkerState) {
        if !reporter.registered {
            match admin::workers::register(&self.app, self.registration()).await {
                Ok(()) => reporter.registered = true,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot register with the worker registry");
                    return;
                }
            }
        }
        let pages = self.metrics.pages_done();
        let seconds = reporter.at.elapsed().as_secs_f64().max(0.001);
        let beat = Beat {
            state,
            pages_done: pages as i64,
            pages_per_sec: pages.saturating_sub(reporter.pages) as f64 / seconds,
            rss_bytes: admin::workers::rss_bytes(),
        };
        (reporter.pages, reporter.at) = (pages, Instant::now());
        match admin::workers::beat(&self.app, &self.id, beat).await {
            Ok(Some(drain)) => {
                if drain != self.gate.draining.swap(drain, Ordering::Relaxed) {
                    tracing::info!(worker = %self.id, drain, "{}", if drain { "draining: taking no new work" } else { "taking work again" });
                }
            }
            // Removed by hand: register again next time.
            Ok(None) => reporter.registered = false,
            Err(e) => tracing::warn!(error = %e, "cannot report to the worker registry"),
        }
        match admin::queue::paused(&self.app).await {
            Ok(paused) => self.gate.paused.store(paused, Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e, "cannot read whether the queue is paused"),
        }
    }

    /// Reports until `done`, then once more as `stopped`. While `shutdown` runs its course
    /// the worker reports `draining`.
    pub(super) async fn report_loop(
        self: Arc<Self>,
        mut reporter: Reporter,
        shutdown: CancellationToken,
        done: CancellationToken,
    ) {
        let every = admin::workers::interval(&self.app);
        loop {
            tokio::select! {
                _ = done.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
            let state = if shutdown.is_cancelled() || self.gate.draining.load(Ordering::Relaxed) {
                WorkerState::Draining
            } else {
                WorkerState::Running
            };
            self.report(&mut reporter, state).await;
        }
        self.report(&mut reporter, WorkerState::Stopped).await;
    }
}
