//! Recovery, run by every worker every `worker.recover_secs` (and once at start):
//! - the reaper puts `processing` tasks whose lease expired back to `queued`;
//! - the reconciler pushes `queued` tasks the queue does not hold (Redis restarted or was
//!   flushed, a push failed, the process holding the in-process queue restarted);
//! - temp dirs left by processes that no longer run (killed mid-task) are removed;
//! - finished tasks past their retention are erased with all they own (`crate::retention`,
//!   in one worker at a time);
//! - the statistics' closed hours and days are summed (`admin::stats::catch_up`), so that the
//!   first look at a month's figures after a quiet spell does not wait for it.
//!
//! Every step is safe to run on several workers at once: requeueing is a conditional update,
//! and a task pushed twice is claimed once.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use super::Worker;
use crate::db::models::{Task, now};

/// Tasks re-pushed per round at most; the rest follow in the next rounds.
const BATCH: i64 = 1000;

impl Worker {
    pub(super) async fn recover_loop(self: Arc<Self>, shutdown: CancellationToken) {
        // The first round takes every queued task: after a restart of all-in-one, the
        // in-process queue starts empty.
        let mut grace = Duration::ZERO;
        loop {
            match self.recover(grace).await {
                Ok(()) => self.db_outage.up(),
                Err(e) => self.db_outage.down(&e),
            }
            self.expire().await;
            self.sum_statistics().await;
            self.settle_quotas().await;
            self.forget_gone_consumers().await;
            let sweeper = self.clone();
            let _ = tokio::task::spawn_blocking(move || sweeper.sweep_temp_dirs()).await;
            // A task queued this recently may simply not be pushed yet.
            grace = self.options.recover_every;
            let jitter = self.options.recover_every.mul_f64(fastrand::f64() * 0.2);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.options.recover_every + jitter) => {}
            }
        }
    }

    async fn recover(&self, grace: Duration) -> Result<(), crate::db::DbError> {
        let requeued = self
            .app
            .db
            .run(|c| async move { Task::requeue_expired(c).await }.boxed())
            .await?;
        for task in requeued {
            tracing::info!(task = %task.id, "lease expired; task requeued");
            let why = "The worker stopped answering; queued again for another worker.";
            let step = crate::timeline::Step::requeued(&task, why, None);
            crate::timeline::record(&self.app, &task.id, step).await;
            self.app.events.task_updated(&task).await;
        }
        let before = now() - TimeDelta::from_std(grace).unwrap_or(TimeDelta::zero());
        let queued = self
            .app
            .db
            .run(move |c| async move { Task::queued_ids(c, before, BATCH).await }.boxed())
            .await?;
        self.metrics.refresh_queue(&self.app.db).await?;
        if queued.is_empty() {
            return Ok(());
        }
        let held = match self.app.queue.task_ids().await {
            Ok(held) => {
                self.queue_outage.up();
                held
            }
            Err(e) => {
                self.queue_outage.down(&e);
                return Ok(());
            }
        };
        let missing: Vec<&String> = queued.iter().filter(|id| !held.contains(*id)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        tracing::info!(
            count = missing.len(),
            "re-pushing queued tasks the queue lost"
        );
        for id in missing {
            if let Err(e) = self.app.queue.push(id).await {
                self.queue_outage.down(&e);
                break;
            }
        }
        Ok(())
    }

    /// Sums the statistics' closed hours and days (`admin::stats::catch_up`).
    async fn sum_statistics(&self) {
        let at = now();
        let summed = self
            .app
            .db
            .run(move |c| async move { crate::admin::stats::catch_up(c, at).await }.boxed())
            .await;
        if let Err(e) = summed {
            tracing::warn!(error = %e, "cannot sum the statistics of the closed hours");
        }
    }

    /// Settles the pages of tasks that ended without their worker settling them (cancelled,
    /// failed by the reaper, a worker killed after its commit): `crate::quota::settle`.
    async fn settle_quotas(&self) {
        let settled = self
            .app
            .db
            .run(|c| async move { crate::quota::settle(c, None).await }.boxed())
            .await;
        match settled {
            Ok(0) => {}
            Ok(n) => tracing::info!(tasks = n, "settled the pages of ended tasks"),
            Err(e) => self.db_outage.down(&e),
        }
    }

    /// Forgets the queue consumers of worker slots silent for a day with nothing held.
    async fn forget_gone_consumers(&self) {
        const IDLE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
        match self.app.queue.forget_idle_consumers(IDLE).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(consumers = n, "forgot the queue consumers of gone workers"),
            Err(e) => self.queue_outage.down(&e),
        }
    }

    /// One round of the retention purge (`crate::retention`), when no other process runs it.
    async fn expire(&self) {
        // Held for three rounds: a worker that dies hands the purge on within that.
        let lease = TimeDelta::from_std(self.options.recover_every * 3).unwrap_or(TimeDelta::MAX);
        match crate::retention::purge(&self.app, &self.id, lease).await {
            Ok(Some(erased)) => {
                self.metrics.purged.inc_by(erased as u64);
            }
            Ok(None) => {}
            Err(e) => self.db_outage.down(&e),
        }
    }

    /// Removes per-task temp dirs that processes of this host left behind when they died.
    fn sweep_temp_dirs(&self) {
        let Ok(entries) = std::fs::read_dir(&self.options.temp_root) else {
            return;
        };
        let host = format!("{}.", crate::process::hostname());
        for entry in entries.flatten() {
            let name = entry.file_name();
            // `{host}.{pid}.{task id}…`; another host's dirs (a shared data dir) are its own.
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(&host))
                .and_then(|n| n.split('.').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
            if !alive {
                match std::fs::remove_dir_all(entry.path()) {
                    Ok(()) => {
                        tracing::info!(dir = %entry.path().display(), "removed a temp dir left by a stopped worker")
                    }
                    Err(e) => {
                        tracing::warn!(dir = %entry.path().display(), error = %e, "cannot remove a stale temp dir")
                    }
                }
            }
        }
    }
}

/// The name of a task's temp dir: host and process first, so that the sweep can tell which
/// dirs belong to processes that are gone.
pub(super) fn temp_dir_prefix(task_id: &str) -> String {
    format!(
        "{}.{}.{task_id}.",
        crate::process::hostname(),
        std::process::id()
    )
}
