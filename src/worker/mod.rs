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

mod metrics;
mod pipeline;
mod recovery;
mod registry;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use metrics::Metrics;
pub use pipeline::TaskError;

use crate::app::App;
use crate::config::Config;
use crate::db;
use crate::db::models::Task;
use crate::document::Limits;
use crate::ocr::Engine;
use crate::outage::Outage;
use crate::queue::Delivery;
use crate::timeline;

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
    pub max_failed_page_ratio: f64,
    pub shutdown_grace: Duration,
    pub recover_every: Duration,
    pub temp_root: PathBuf,
    pub limits: Limits,
    /// What the registry shows it runs on: `cpu`, or the GPU ordinals.
    pub devices: String,
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
            max_failed_page_ratio: w.max_failed_page_ratio,
            shutdown_grace: Duration::from_secs(w.shutdown_grace_secs),
            recover_every: Duration::from_secs(w.recover_secs),
            temp_root: config.worker_temp_dir(),
            limits: config.document_limits(),
            devices: if config.ocr.gpus.is_empty() {
                "cpu".into()
            } else {
                let gpus: Vec<String> = config.ocr.gpus.iter().map(|g| format!("gpu{g}")).collect();
                gpus.join(",")
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
    /// Closed while the queue is paused or this worker drains.
    gate: registry::Gate,
}

impl Worker {
    pub fn new(app: App, engines: Vec<Arc<dyn Engine>>, mut options: WorkerOptions) -> Worker {
        assert!(!engines.is_empty(), "a worker needs an engine");
        if options.concurrency == 0 {
            options.concurrency = engines.iter().map(|e| e.parallelism()).sum();
        }
        let id = format!(
            "{}-{}-{:04x}",
            crate::process::hostname(),
            std::process::id(),
            fastrand::u16(..)
        );
        Worker {
            app,
            engines,
            options,
            id,
            metrics: Arc::new(Metrics::new()),
            queue_outage: Outage::new("queue"),
            db_outage: Outage::new("database"),
            gate: registry::Gate::default(),
        }
    }

    /// The limits documents are read under now: the runtime settings over the configuration.
    fn limits(&self) -> Limits {
        self.app.settings.get().document_limits(self.options.limits)
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
        // Registered, and the queue's pause read, before the first claim.
        let mut reporter = self.reporter();
        self.report(&mut reporter, db::models::WorkerState::Running)
            .await;
        let done = CancellationToken::new();
        let reporting = tokio::spawn(self.clone().report_loop(
            reporter,
            shutdown.clone(),
            done.clone(),
        ));
        let mut tasks = JoinSet::new();
        tasks.spawn(self.clone().recover_loop(shutdown.clone()));
        let attempts = self.metrics.webhook_attempts.clone();
        match crate::webhooks::delivery::Sender::new(self.app.clone(), attempts) {
            Ok(sender) => {
                tasks.spawn(sender.run(shutdown.clone()));
            }
            Err(e) => tracing::error!(error = %e, "webhooks cannot be sent: no HTTP client"),
        }
        for slot in 0..self.options.concurrency {
            tasks.spawn(self.clone().slot(slot, shutdown.clone()));
        }
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                // Task panics are caught per task; this is a bug in the loop itself.
                tracing::error!(error = %e, "a worker loop ended unexpectedly");
            }
        }
        done.cancel();
        let _ = reporting.await;
        tracing::info!(worker = %self.id, "worker stopped");
    }

    /// One task at a time, until shutdown.
    async fn slot(self: Arc<Self>, slot: usize, shutdown: CancellationToken) {
        let engine = self.engines[slot % self.engines.len()].clone();
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            if !self.gate.open() {
                // Paused queue or draining worker: nothing new is taken.
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(POLL) => continue,
                }
            }
            // Not cut short by shutdown: a read dropped mid-way could leave an entry pending
            // on this consumer until the lease runs out. It returns within `POLL`.
            let popped = self
                .app
                .queue
                .pop(&self.id, self.reclaim_after(), POLL)
                .await;
            let outcome = match popped {
                Ok(None) => {
                    self.queue_outage.up();
                    Step::Done
                }
                Ok(Some(delivery)) if shutdown.is_cancelled() => {
                    self.requeue(&delivery).await;
                    return;
                }
                Ok(Some(delivery)) => {
                    self.queue_outage.up();
                    // A panic outside the engine (which `pipeline` catches itself) is a bug;
                    // it must still not cost this slot. The task's lease expires and it is
                    // retried, up to `poison`.
                    // Every line logged while the task is handled carries its id.
                    let span = tracing::info_span!("task", id = %delivery.task_id);
                    AssertUnwindSafe(self.handle(&engine, delivery, &shutdown).instrument(span))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| {
                            tracing::error!("a task handler panicked; the task will be retried");
                            Step::Done
                        })
                }
                Err(e) => {
                    self.queue_outage.down(&e);
                    Step::Unavailable
                }
            };
            match outcome {
                Step::Done => failures = 0,
                Step::Unavailable => {
                    failures += 1;
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(reconnect_delay(failures)) => {}
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

    async fn handle(
        &self,
        engine: &Arc<dyn Engine>,
        delivery: Delivery,
        shutdown: &CancellationToken,
    ) -> Step {
        let id = delivery.task_id.clone();
        if delivery.deliveries > self.options.max_deliveries {
            // Each page stored so far earns one more delivery: a long document whose workers
            // keep being stopped (spot instances, rolling restarts) advances and is no poison,
            // while a task that kills its worker at the same page still runs out.
            let stored = self.stored_pages(&id).await;
            if delivery.deliveries > self.options.max_deliveries + stored {
                let message = format!(
                    "the queue delivered this task {} times without it finishing ({stored} pages stored); it is not retried again",
                    delivery.deliveries
                );
                return self.give_up(&delivery, &message).await;
            }
        }
        let id = self.ahead_of(id).await;
        // A lease belongs to one claim, not to the process: two slots can never both hold a
        // task, even when one took it over from the other after a lost heartbeat.
        let owner = format!("{}#{:08x}", self.id, fastrand::u32(..));
        let lease = self.options.lease;
        let task = match self
            .app
            .db
            .run({
                let (id, owner) = (id.clone(), owner.clone());
                move |c| async move { Task::claim(c, &id, &owner, lease).await }.boxed()
            })
            .await
        {
            Ok(Some(task)) => {
                self.db_outage.up();
                task
            }
            Ok(None) => {
                // Finished, cancelled, deleted, or held by a live worker: nothing to do.
                self.db_outage.up();
                self.ack(&delivery).await;
                return Step::Done;
            }
            Err(e) if e.is_transient() => {
                // Give the entry back with its delivery count reset: a database outage must
                // not turn tasks into poison.
                self.db_outage.down(&e);
                self.requeue(&delivery).await;
                return Step::Unavailable;
            }
            Err(e) => {
                // Left pending: it comes back after the lease, counted, until it is poison.
                tracing::error!(task = %id, error = %e, "cannot claim the task");
                return Step::Done;
            }
        };
        let held = Held {
            task: &task,
            owner: &owner,
            delivery: &delivery,
        };
        if task.attempts > task.max_attempts {
            let message = format!(
                "processing was interrupted {} times (worker lost or stopped); it is not retried again",
                task.attempts - 1
            );
            self.finish_failed(&held, "poison", &message).await;
            return Step::Done;
        }
        tracing::info!(task = %id, attempt = task.attempts, "processing");
        timeline::record(&self.app, &id, timeline::Step::started(&task, &self.id)).await;
        self.app.events.task_updated(&task).await;
        let started = Instant::now();

        let mut work = std::pin::pin!(pipeline::run(self, engine, &held));
        let mut heartbeat = std::pin::pin!(self.heartbeat(&held));
        let mut grace_over = std::pin::pin!(async {
            shutdown.cancelled().await;
            tokio::time::sleep(self.options.shutdown_grace).await;
        });
        let mut lease_lost = false;
        let outcome = loop {
            tokio::select! {
                outcome = &mut work => break outcome,
                // The lease is gone (the task was deleted, cancelled or taken over). The
                // pipeline is not dropped mid-write: it stops at its next write, which checks
                // the lease and removes what it stored for a deleted task. Dropped, a blob
                // write in flight could land after the deletion removed everything else.
                () = &mut heartbeat, if !lease_lost => {
                    tracing::info!(task = %id, "lease lost; stopping at the next page");
                    lease_lost = true;
                }
                () = &mut grace_over => {
                    self.release(&held).await;
                    return Step::Done;
                }
            }
        };
        // Another holder (or the deletion) deals with a task whose lease was lost.
        let ended_here = !matches!(outcome, Err(TaskError::LeaseLost));
        match outcome {
            Ok(done) => {
                self.metrics.task_completed(started.elapsed());
                tracing::info!(task = %id, secs = started.elapsed().as_secs_f64(), "completed");
                timeline::record(&self.app, &id, timeline::Step::completed(&done, &self.id)).await;
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
                self.finish_failed(&held, &code, &message).await;
            }
        }
        // The pages it read count against its owner's month (after a failure is recorded, so
        // that is settled too); a miss is settled by the recovery round.
        if ended_here {
            self.settle(&id).await;
        }
        Step::Done
    }

    /// Settles a task's pages against its owner's monthly quota, if it has ended.
    async fn settle(&self, id: &str) {
        let id = id.to_owned();
        let settled = self
            .app
            .db
            .run(move |c| async move { crate::quota::settle(c, Some(&id)).await }.boxed())
            .await;
        if let Err(e) = settled {
            tracing::warn!(error = %e, "cannot settle a task's pages; the recovery round will");
        }
    }

    /// The task to run for an entry of `id`: a queued one that operators gave a higher
    /// priority goes first. The entry then carries it, and `id` is pushed again, to the end of
    /// the queue; the prioritised task's own entry finds it taken later and is dropped.
    async fn ahead_of(&self, id: String) -> String {
        let asked = id.clone();
        let ahead = self
            .app
            .db
            .run(move |c| async move { Task::ahead_of(c, &asked).await }.boxed())
            .await;
        match ahead {
            Ok(Some(first)) => {
                tracing::info!(task = %first, displaced = %id, "a task with a higher priority goes first");
                if let Err(e) = self.app.queue.push(&id).await {
                    // The reconciler pushes it again soon.
                    self.queue_outage.down(&e);
                }
                first
            }
            Ok(None) => id,
            // Claiming reports the database's trouble.
            Err(_) => id,
        }
    }

    /// Pages of the task that earlier runs finished (0 when it cannot be read).
    async fn stored_pages(&self, id: &str) -> u64 {
        let id = id.to_owned();
        let found = self
            .app
            .db
            .run(move |c| async move { Task::find(c, &id).await }.boxed())
            .await;
        found.map_or(0, |task| task.pages_done.max(0) as u64)
    }

    /// Renews the lease every third of its length; returns once the lease is lost.
    async fn heartbeat(&self, held: &Held<'_>) {
        let (id, owner, lease) = (&held.task.id, held.owner, self.options.lease);
        loop {
            tokio::time::sleep(lease / 3).await;
            let (id, owner) = (id.clone(), owner.to_owned());
            match self
                .app
                .db
                .run(move |c| async move { Task::heartbeat(c, &id, &owner, lease).await }.boxed())
                .await
            {
                Ok(true) => {
                    self.db_outage.up();
                    // Only a live lease keeps the entry: otherwise the task goes back to the
                    // queue through the reaper, and the entry must not look held.
                    if let Err(e) = self.app.queue.touch(&self.id, held.delivery).await {
                        self.queue_outage.down(&e);
                    }
                }
                Ok(false) => return,
                // Keep working: the lease may survive a short outage, and the result commit
                // checks the lease again anyway.
                Err(e) => self.db_outage.down(&e),
            }
        }
    }

    async fn finish_failed(&self, held: &Held<'_>, code: &str, message: &str) {
        tracing::warn!(task = %held.task.id, code, message, "failed");
        let (id, owner) = (held.task.id.clone(), held.owner.to_owned());
        let (code_owned, message) = (code.to_owned(), message.to_owned());
        // Before the failure is recorded, for the same reason as before completing.
        pipeline::drop_checkpoints(self, held.task).await;
        match self
            .app
            .db
            .run(move |c| {
                async move { Task::fail(c, &id, &owner, &code_owned, &message).await }.boxed()
            })
            .await
        {
            Ok(Some(task)) => {
                self.metrics.task_failed(code);
                timeline::record(
                    &self.app,
                    &task.id,
                    timeline::Step::failed(&task, Some(&self.id)),
                )
                .await;
                self.app.events.task_updated(&task).await;
                self.ack(held.delivery).await;
            }
            Ok(None) => self.ack(held.delivery).await,
            // Not acked: the lease expires and the task is tried again.
            Err(e) => self.db_outage.down(&e),
        }
    }

    /// Fails a task the queue keeps redelivering, without claiming it.
    async fn give_up(&self, delivery: &Delivery, message: &str) -> Step {
        let (id, owned) = (delivery.task_id.clone(), message.to_owned());
        match self
            .app
            .db
            .run(move |c| {
                async move { Task::fail_unclaimed(c, &id, "poison", &owned).await }.boxed()
            })
            .await
        {
            Ok(Some(task)) => {
                tracing::warn!(task = %task.id, message, "failed: poison");
                self.metrics.task_failed("poison");
                timeline::record(&self.app, &task.id, timeline::Step::failed(&task, None)).await;
                self.app.events.task_updated(&task).await;
                pipeline::drop_checkpoints(self, &task).await;
                self.ack(delivery).await;
                Step::Done
            }
            Ok(None) => {
                self.ack(delivery).await;
                Step::Done
            }
            Err(e) => {
                self.db_outage.down(&e);
                Step::Unavailable
            }
        }
    }

    /// Shutdown ran out of grace: the task goes back to `queued` and its entry back to the
    /// queue, so another worker starts it at once instead of after the lease.
    async fn release(&self, held: &Held<'_>) {
        tracing::warn!(task = %held.task.id, "shutdown grace period over; handing the task back");
        let (id, owner) = (held.task.id.clone(), held.owner.to_owned());
        let released = self
            .app
            .db
            .run({
                let id = id.clone();
                move |c| async move { Task::release(c, &id, &owner).await }.boxed()
            })
            .await;
        match released {
            Ok(Some(task)) => {
                let why = "The worker was stopped; queued again for another worker.";
                let step = timeline::Step::requeued(&task, why, Some(&self.id));
                timeline::record(&self.app, &task.id, step).await;
                self.app.events.task_updated(&task).await
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(task = %id, error = %e, "could not release; the lease will expire")
            }
        }
        self.requeue(held.delivery).await;
    }

    /// Puts an entry back at the end of the queue with a fresh delivery count.
    async fn requeue(&self, delivery: &Delivery) {
        if let Err(e) = self.app.queue.requeue(delivery).await {
            // It stays pending and comes back after the lease.
            tracing::debug!(task = %delivery.task_id, error = %e, "could not requeue the entry");
        }
    }

    async fn ack(&self, delivery: &Delivery) {
        if let Err(e) = self.app.queue.ack(delivery).await {
            // The entry comes back after the lease; claiming it then finds nothing to do.
            tracing::debug!(task = %delivery.task_id, error = %e, "could not ack");
        }
    }
}

/// What a slot does after a delivery: take the next one, or back off first.
enum Step {
    Done,
    Unavailable,
}

/// A claimed task: the lease token of this claim and the queue entry that brought it.
pub(crate) struct Held<'a> {
    pub task: &'a Task,
    pub owner: &'a str,
    pub delivery: &'a Delivery,
}

/// Waits between reconnection attempts while the queue or the database is away.
fn reconnect_delay(failures: u32) -> Duration {
    backoff(
        Duration::from_millis(250),
        Duration::from_secs(10),
        failures,
    )
}

/// `base · 2^(attempt-1)`, at most `max`, with jitter over its upper half so that workers
/// hit by the same outage do not retry in step.
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let full = exp.min(max);
    full / 2 + full.mul_f64(fastrand::f64() / 2.0)
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
