//! The worker: takes task ids from the queue and turns documents into results.
//!
//! For each delivery: claim the task in the database (a conditional update, so one worker
//! wins), hold its lease with a heartbeat, run the [`pipeline`] (download to a private temp
//! dir, pages, engine, renderers, results upload), then write the result row and `completed`
//! in one transaction, publish the event and ack the queue entry. Processing is idempotent
//! (result keys are fixed per task and a task has one result row), so at-least-once delivery
//! never duplicates results.
//!
//! Failures: permanent ones (bad input) fail the task with a stable code at once; transient
//! ones (database, queue or storage unavailable) are retried with exponential backoff and
//! jitter up to the task's `max_attempts`. A worker that dies loses its leases, and another
//! takes its tasks over once they expire ([`recovery`]). On shutdown a worker stops taking
//! work, gives running tasks a grace period, then releases them for another worker.

pub mod health;
mod metrics;
mod pipeline;
mod recovery;

use std::fmt::Display;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use metrics::Metrics;
pub use pipeline::TaskError;

use crate::app::App;
use crate::config::Config;
use crate::db::models::Task;
use crate::document::Limits;
use crate::ocr::Engine;
use crate::queue::Delivery;

/// How long one `pop` waits for new work before looking for abandoned entries again.
const POLL: Duration = Duration::from_secs(2);

/// The worker's settings, from `[worker]` and `[limits]`.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    pub concurrency: usize,
    pub lease: Duration,
    pub max_deliveries: u64,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub page_timeout: Duration,
    pub shutdown_grace: Duration,
    pub recover_every: Duration,
    pub temp_root: PathBuf,
    pub limits: Limits,
}

impl WorkerOptions {
    pub fn from_config(config: &Config) -> WorkerOptions {
        let w = &config.worker;
        WorkerOptions {
            concurrency: w.concurrency,
            lease: Duration::from_secs(w.lease_secs),
            max_deliveries: w.max_deliveries as u64,
            retry_base: Duration::from_millis(w.retry_base_ms),
            retry_max: Duration::from_secs(w.retry_max_secs),
            page_timeout: Duration::from_secs(w.page_timeout_secs),
            shutdown_grace: Duration::from_secs(w.shutdown_grace_secs),
            recover_every: Duration::from_secs(w.recover_secs),
            temp_root: config.worker_temp_dir(),
            limits: Limits {
                max_pixels: config.limits.max_pixels,
                max_pages: config.limits.max_pages,
            },
        }
    }
}

pub struct Worker {
    app: App,
    /// One engine per device; slot `i` uses engine `i % len`.
    engines: Vec<Arc<dyn Engine>>,
    options: WorkerOptions,
    /// This process's name in leases and in the queue's consumer group.
    id: String,
    metrics: Arc<Metrics>,
    queue_outage: Outage,
    db_outage: Outage,
}

impl Worker {
    pub fn new(app: App, engines: Vec<Arc<dyn Engine>>, mut options: WorkerOptions) -> Worker {
        assert!(!engines.is_empty(), "a worker needs an engine");
        if options.concurrency == 0 {
            options.concurrency = engines.iter().map(|e| e.parallelism()).sum();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "worker".into());
        let id = format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..));
        Worker {
            app,
            engines,
            options,
            id,
            metrics: Arc::new(Metrics::new()),
            queue_outage: Outage::new("queue"),
            db_outage: Outage::new("database"),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Runs until `shutdown` is cancelled and every running task has finished or been released.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        if let Err(e) = std::fs::create_dir_all(&self.options.temp_root) {
            tracing::error!(dir = %self.options.temp_root.display(), error = %e, "cannot create the temp directory");
        }
        tracing::info!(
            worker = %self.id,
            concurrency = self.options.concurrency,
            engines = self.engines.len(),
            engine = self.engines[0].name(),
            "worker started"
        );
        let mut tasks = JoinSet::new();
        tasks.spawn(self.clone().recover_loop(shutdown.clone()));
        for slot in 0..self.options.concurrency {
            tasks.spawn(self.clone().slot(slot, shutdown.clone()));
        }
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                // Task panics are caught per task; this is a bug in the loop itself.
                tracing::error!(error = %e, "a worker loop ended unexpectedly");
            }
        }
        tracing::info!(worker = %self.id, "worker stopped");
    }

    /// One task at a time, until shutdown.
    async fn slot(self: Arc<Self>, slot: usize, shutdown: CancellationToken) {
        let engine = self.engines[slot % self.engines.len()].clone();
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            let popped = tokio::select! {
                _ = shutdown.cancelled() => return,
                popped = self.app.queue.pop(&self.id, self.reclaim_after(), POLL) => popped,
            };
            match popped {
                Ok(delivery) => {
                    self.queue_outage.up();
                    failures = 0;
                    if let Some(delivery) = delivery {
                        self.handle(&engine, delivery, &shutdown).await;
                    }
                }
                Err(e) => {
                    self.queue_outage.down(&e);
                    failures += 1;
                    let wait = self.reconnect_delay(failures);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// An entry is taken from a silent consumer a third of a lease after the database lease
    /// expired (the heartbeat touches both), so the takeover's claim finds the lease gone.
    fn reclaim_after(&self) -> Duration {
        self.options.lease + self.options.lease / 3
    }

    fn reconnect_delay(&self, failures: u32) -> Duration {
        backoff(
            Duration::from_millis(250),
            Duration::from_secs(10),
            failures,
        )
    }

    async fn handle(
        &self,
        engine: &Arc<dyn Engine>,
        delivery: Delivery,
        shutdown: &CancellationToken,
    ) {
        let id = delivery.task_id.clone();
        if delivery.deliveries > self.options.max_deliveries {
            let message = format!(
                "the queue delivered this task {} times without it finishing; it is not retried again",
                delivery.deliveries
            );
            self.give_up(&delivery, &message).await;
            return;
        }
        let claimed = match self.app.db.get().await {
            Ok(mut conn) => Task::claim(&mut conn, &id, &self.id, self.options.lease).await,
            Err(e) => Err(e),
        };
        let task = match claimed {
            Ok(Some(task)) => {
                self.db_outage.up();
                task
            }
            Ok(None) => {
                // Finished, cancelled, deleted, or held by a live worker: nothing to do.
                self.db_outage.up();
                self.ack(&delivery).await;
                return;
            }
            Err(e) => {
                // Give the entry back with its delivery count reset: a database outage must
                // not turn tasks into poison.
                self.db_outage.down(&e);
                if let Err(e) = self.app.queue.release(&delivery).await {
                    tracing::debug!(task = %id, error = %e, "could not release the entry");
                }
                tokio::time::sleep(self.reconnect_delay(3)).await;
                return;
            }
        };
        if task.attempts > task.max_attempts {
            let message = format!(
                "processing was interrupted {} times (worker lost or stopped); it is not retried again",
                task.attempts - 1
            );
            self.finish_failed(&task, &delivery, "poison", &message)
                .await;
            return;
        }
        tracing::info!(task = %id, attempt = task.attempts, "processing");
        self.app.events.task_updated(&task).await;
        let started = Instant::now();

        let work = pipeline::run(self, engine, &task);
        let heartbeat = self.heartbeat(&task, &delivery);
        let grace_over = async {
            shutdown.cancelled().await;
            tokio::time::sleep(self.options.shutdown_grace).await;
        };
        let outcome = tokio::select! {
            outcome = work => outcome,
            () = heartbeat => Err(TaskError::LeaseLost),
            () = grace_over => {
                self.release(&task, &delivery).await;
                return;
            }
        };
        match outcome {
            Ok(done) => {
                self.metrics.task_completed(started.elapsed());
                tracing::info!(task = %id, secs = started.elapsed().as_secs_f64(), "completed");
                self.app.events.task_updated(&done).await;
                self.ack(&delivery).await;
            }
            Err(TaskError::LeaseLost) => {
                tracing::info!(task = %id, "lease lost (cancelled, deleted or taken over); stopped");
                self.ack(&delivery).await;
            }
            Err(
                TaskError::Permanent { code, message } | TaskError::Transient { code, message },
            ) => {
                self.metrics
                    .task_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.finish_failed(&task, &delivery, code, &message).await;
            }
        }
    }

    /// Renews the lease every third of its length; returns once the lease is lost.
    async fn heartbeat(&self, task: &Task, delivery: &Delivery) {
        let every = self.options.lease / 3;
        loop {
            tokio::time::sleep(every).await;
            let renewed = match self.app.db.get().await {
                Ok(mut conn) => {
                    Task::heartbeat(&mut conn, &task.id, &self.id, self.options.lease).await
                }
                Err(e) => Err(e),
            };
            match renewed {
                Ok(true) => self.db_outage.up(),
                Ok(false) => return,
                // Keep working: the lease may survive a short outage, and the result commit
                // checks the lease again anyway.
                Err(e) => self.db_outage.down(&e),
            }
            if let Err(e) = self.app.queue.touch(&self.id, delivery).await {
                self.queue_outage.down(&e);
            }
        }
    }

    async fn finish_failed(&self, task: &Task, delivery: &Delivery, code: &str, message: &str) {
        tracing::warn!(task = %task.id, code, message, "failed");
        let failed = match self.app.db.get().await {
            Ok(mut conn) => Task::fail(&mut conn, &task.id, &self.id, code, message).await,
            Err(e) => Err(e),
        };
        match failed {
            Ok(Some(task)) => {
                self.metrics.task_failed(code);
                self.app.events.task_updated(&task).await;
                self.ack(delivery).await;
            }
            Ok(None) => self.ack(delivery).await,
            // Not acked: the lease expires and the task is tried again.
            Err(e) => self.db_outage.down(&e),
        }
    }

    /// Fails a task the queue keeps redelivering, without claiming it.
    async fn give_up(&self, delivery: &Delivery, message: &str) {
        let failed = match self.app.db.get().await {
            Ok(mut conn) => {
                Task::fail_unclaimed(&mut conn, &delivery.task_id, "poison", message).await
            }
            Err(e) => Err(e),
        };
        match failed {
            Ok(Some(task)) => {
                tracing::warn!(task = %task.id, message, "failed: poison");
                self.metrics.task_failed("poison");
                self.app.events.task_updated(&task).await;
                self.ack(delivery).await;
            }
            Ok(None) => self.ack(delivery).await,
            Err(e) => self.db_outage.down(&e),
        }
    }

    /// Shutdown ran out of grace: the task goes back to `queued` and its entry back to the
    /// queue, so another worker starts it at once instead of after the lease.
    async fn release(&self, task: &Task, delivery: &Delivery) {
        tracing::warn!(task = %task.id, "shutdown grace period over; releasing the task");
        let released = match self.app.db.get().await {
            Ok(mut conn) => Task::release(&mut conn, &task.id, &self.id).await,
            Err(e) => Err(e),
        };
        match released {
            Ok(Some(task)) => self.app.events.task_updated(&task).await,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(task = %task.id, error = %e, "could not release; the lease will expire")
            }
        }
        if let Err(e) = self.app.queue.release(delivery).await {
            tracing::warn!(task = %task.id, error = %e, "could not give the queue entry back");
        }
    }

    async fn ack(&self, delivery: &Delivery) {
        if let Err(e) = self.app.queue.ack(delivery).await {
            // The entry comes back after the lease; claiming it then finds nothing to do.
            tracing::debug!(task = %delivery.task_id, error = %e, "could not ack");
        }
    }
}

/// `base · 2^(attempt-1)`, at most `max`, with jitter over its upper half so that workers
/// hit by the same outage do not retry in step.
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let full = exp.min(max);
    full / 2 + full.mul_f64(fastrand::f64() / 2.0)
}

/// Logs an outage of one dependency once when it starts and once when it ends, however many
/// attempts fail in between.
struct Outage {
    what: &'static str,
    down: AtomicBool,
}

impl Outage {
    fn new(what: &'static str) -> Outage {
        Outage {
            what,
            down: AtomicBool::new(false),
        }
    }

    fn down(&self, error: &dyn Display) {
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %error, "{} unavailable; waiting and retrying", self.what);
        }
    }

    fn up(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("{} is back", self.what);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for _ in 0..100 {
            let first = backoff(base, max, 1);
            assert!(
                (Duration::from_millis(50)..=base).contains(&first),
                "{first:?}"
            );
            let third = backoff(base, max, 3);
            assert!((Duration::from_millis(200)..=Duration::from_millis(400)).contains(&third));
            let late = backoff(base, max, 40);
            assert!((max / 2..=max).contains(&late), "{late:?}");
        }
    }
}
