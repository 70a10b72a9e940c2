//! The queue port: which tasks are waiting, handed to one worker at a time.
//!
//! The queue carries task ids only; the database holds every task's state, so a lost queue
//! entry costs latency, never a task (the reconciler pushes queued tasks the queue lacks).
//! Delivery is at least once: an entry stays pending until it is acked, and an entry whose
//! consumer went quiet for longer than the lease is handed to another consumer with its
//! delivery count raised.
//!
//! Adapters: Redis Streams with a consumer group for distributed installs, and an in-process
//! queue for all-in-one. [`Queue`] is built once in `App`; nothing else knows which it holds.

mod local;
mod redis;

use std::collections::HashSet;
use std::time::Duration;

pub use local::LocalQueue;
pub use redis::RedisQueue;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable: {0}")]
    Unavailable(String),
}

impl From<deadpool_redis::redis::RedisError> for QueueError {
    fn from(e: deadpool_redis::redis::RedisError) -> Self {
        QueueError::Unavailable(e.to_string())
    }
}

impl From<deadpool_redis::PoolError> for QueueError {
    fn from(e: deadpool_redis::PoolError) -> Self {
        QueueError::Unavailable(e.to_string())
    }
}

/// One task id handed to one consumer, until it is acked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub task_id: String,
    /// How many times this entry has been handed out, this time included.
    pub deliveries: u64,
    /// The adapter's handle on the entry (a stream entry id).
    receipt: String,
}

/// What the queue holds now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct QueueStats {
    /// Entries no consumer has taken yet.
    pub waiting: u64,
    /// Entries taken and not yet acknowledged.
    pub pending: u64,
    /// Consumers the Redis group has seen (worker slots; names are never removed).
    pub consumers: Option<u64>,
}

#[derive(Clone, Debug)]
pub enum Queue {
    Redis(RedisQueue),
    Local(LocalQueue),
}

impl Queue {
    /// Adds a task id. Pushing an id that is already queued is harmless: claiming a task is
    /// conditional in the database, so a second delivery finds it taken and is dropped.
    pub async fn push(&self, task_id: &str) -> Result<(), QueueError> {
        match self {
            Queue::Redis(q) => q.push(task_id).await,
            Queue::Local(q) => {
                q.push(task_id);
                Ok(())
            }
        }
    }

    /// The next entry for `consumer`: first one abandoned by another consumer for longer than
    /// `reclaim_after`, else a new one, waiting up to `wait`.
    pub async fn pop(
        &self,
        consumer: &str,
        reclaim_after: Duration,
        wait: Duration,
    ) -> Result<Option<Delivery>, QueueError> {
        match self {
            Queue::Redis(q) => q.pop(consumer, reclaim_after, wait).await,
            Queue::Local(q) => Ok(q.pop(reclaim_after, wait).await),
        }
    }

    /// Keeps an entry `consumer` is still working on from being handed to another consumer.
    pub async fn touch(&self, consumer: &str, delivery: &Delivery) -> Result<(), QueueError> {
        match self {
            Queue::Redis(q) => q.touch(consumer, delivery).await,
            Queue::Local(q) => {
                q.touch(delivery);
                Ok(())
            }
        }
    }

    /// Done with an entry: it is never delivered again.
    pub async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        match self {
            Queue::Redis(q) => q.ack(delivery).await,
            Queue::Local(q) => {
                q.ack(delivery);
                Ok(())
            }
        }
    }

    /// Puts an entry back at the end of the queue with a fresh delivery count, so that any
    /// consumer can take it at once (shutdown, or a database outage during the claim).
    pub async fn requeue(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.push(&delivery.task_id).await?;
        self.ack(delivery).await
    }

    /// Every task id the queue holds, waiting or pending: what the reconciler compares with the
    /// database.
    pub async fn task_ids(&self) -> Result<HashSet<String>, QueueError> {
        match self {
            Queue::Redis(q) => q.task_ids().await,
            Queue::Local(q) => Ok(q.task_ids()),
        }
    }

    /// Entries not yet handed to any consumer.
    pub async fn waiting(&self) -> Result<u64, QueueError> {
        match self {
            Queue::Redis(q) => q.waiting().await,
            Queue::Local(q) => Ok(q.waiting()),
        }
    }

    /// Waiting and pending entries, and the consumers (worker slots) the queue has seen; an
    /// in-process queue has none to count.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        match self {
            Queue::Redis(q) => {
                let waiting = q.waiting().await?;
                let (pending, consumers) = q.pending_and_consumers().await?;
                Ok(QueueStats {
                    waiting,
                    pending,
                    consumers: Some(consumers),
                })
            }
            Queue::Local(q) => Ok(QueueStats {
                waiting: q.waiting(),
                pending: q.pending(),
                consumers: None,
            }),
        }
    }

    /// Forgets consumers silent for longer than `idle` that hold nothing: the names of worker
    /// slots that are gone (each process reads under names of its own, so they pile up with
    /// every restart). A live one that was only quiet is made again by its next read. How
    /// many were forgotten; an in-process queue has none.
    pub async fn forget_idle_consumers(&self, idle: Duration) -> Result<usize, QueueError> {
        match self {
            Queue::Redis(q) => q.forget_idle_consumers(idle).await,
            Queue::Local(_) => Ok(0),
        }
    }

    pub async fn ping(&self) -> Result<(), QueueError> {
        match self {
            Queue::Redis(q) => q.ping().await,
            Queue::Local(_) => Ok(()),
        }
    }
}
