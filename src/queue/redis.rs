//! Redis Streams adapter: one stream of task ids read through one consumer group.
//!
//! - `push` is `XADD`; `ack` is `XACK` + `XDEL`, so the stream holds exactly the entries still
//!   outstanding (waiting or pending) and the reconciler can read them with `XRANGE`.
//! - `pop` first takes over an entry whose consumer has been silent past the lease
//!   (`XAUTOCLAIM`, which raises its delivery count), then blocks on new ones (`XREADGROUP >`).
//! - A consumer still working `touch`es its entry (`XCLAIM … JUSTID` to itself), which resets
//!   the idle time without counting a delivery.
//! - The group is created on first use and again after Redis lost it (restart, `FLUSHALL`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_redis::Pool;
use deadpool_redis::redis::streams::{
    StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamRangeReply, StreamReadReply,
};
use deadpool_redis::redis::{self, AsyncCommands};

use super::{Delivery, QueueError};

const GROUP: &str = "workers";
const FIELD: &str = "task";

#[derive(Clone, Debug)]
pub struct RedisQueue {
    /// Ordinary commands.
    pool: Pool,
    /// `XREADGROUP BLOCK` only: connections without a response timeout.
    blocking: Pool,
    stream: String,
    /// Where the next `XAUTOCLAIM` scan starts: each scan looks at a few pending entries, so
    /// the cursor walks the whole pending list across calls.
    reclaim_cursor: Arc<Mutex<String>>,
}

impl RedisQueue {
    pub fn new(pool: Pool, blocking: Pool, key_prefix: &str) -> RedisQueue {
        RedisQueue {
            pool,
            blocking,
            stream: format!("{key_prefix}tasks"),
            reclaim_cursor: Arc::new(Mutex::new("0-0".into())),
        }
    }

    async fn conn(&self) -> Result<deadpool_redis::Connection, QueueError> {
        Ok(self.pool.get().await?)
    }

    /// Creates the consumer group (and the stream) unless it exists.
    async fn ensure_group(&self) -> Result<(), QueueError> {
        let created: redis::RedisResult<()> = self
            .conn()
            .await?
            .xgroup_create_mkstream(&self.stream, GROUP, "0")
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Runs `op`, and once more after re-creating the group if Redis lost it.
    async fn with_group<T, F, Fut>(&self, op: F) -> Result<T, QueueError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        match op().await {
            Err(e) if e.code() == Some("NOGROUP") => {
                self.ensure_group().await?;
                Ok(op().await?)
            }
            other => Ok(other?),
        }
    }

    pub async fn push(&self, task_id: &str) -> Result<(), QueueError> {
        let _: String = self
            .conn()
            .await?
            .xadd(&self.stream, "*", &[(FIELD, task_id)])
            .await?;
        Ok(())
    }

    pub async fn pop(
        &self,
        consumer: &str,
        reclaim_after: Duration,
        wait: Duration,
    ) -> Result<Option<Delivery>, QueueError> {
        if let Some(delivery) = self.reclaim(consumer, reclaim_after).await? {
            return Ok(Some(delivery));
        }
        let block_ms = wait.as_millis().max(1) as u64;
        let read: Option<StreamReadReply> = self
            .with_group(|| async {
                let mut conn = self.blocking.get().await.map_err(pool_error)?;
                redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(GROUP)
                    .arg(consumer)
                    .arg("COUNT")
                    .arg(1)
                    .arg("BLOCK")
                    .arg(block_ms)
                    .arg("STREAMS")
                    .arg(&self.stream)
                    .arg(">")
                    .query_async(&mut *conn)
                    .await
            })
            .await?;
        let entry = read
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .next();
        Ok(entry.map(|entry| delivery(entry, 1)))
    }

    /// Takes over one entry idle past `reclaim_after`, with its delivery count.
    async fn reclaim(
        &self,
        consumer: &str,
        reclaim_after: Duration,
    ) -> Result<Option<Delivery>, QueueError> {
        let min_idle = reclaim_after.as_millis() as u64;
        let start = self.cursor().clone();
        let claimed: StreamAutoClaimReply = self
            .with_group(|| async {
                let mut conn = self.pool.get().await.map_err(pool_error)?;
                redis::cmd("XAUTOCLAIM")
                    .arg(&self.stream)
                    .arg(GROUP)
                    .arg(consumer)
                    .arg(min_idle)
                    .arg(&start)
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut *conn)
                    .await
            })
            .await?;
        *self.cursor() = claimed.next_stream_id.clone();
        let Some(entry) = claimed.claimed.into_iter().next() else {
            return Ok(None);
        };
        let pending: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(&entry.id)
            .arg(&entry.id)
            .arg(1)
            .query_async(&mut *self.conn().await?)
            .await?;
        let count = pending.ids.first().map_or(2, |p| p.times_delivered as u64);
        Ok(Some(delivery(entry, count)))
    }

    fn cursor(&self) -> std::sync::MutexGuard<'_, String> {
        self.reclaim_cursor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub async fn touch(&self, consumer: &str, delivery: &Delivery) -> Result<(), QueueError> {
        let touched: redis::RedisResult<redis::Value> = redis::cmd("XCLAIM")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(consumer)
            .arg(0)
            .arg(&delivery.receipt)
            .arg("JUSTID")
            .query_async(&mut *self.conn().await?)
            .await;
        gone_is_fine(touched)
    }

    pub async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let acked: redis::RedisResult<(i64, i64)> = redis::pipe()
            .atomic()
            .xack(&self.stream, GROUP, &[&delivery.receipt])
            .xdel(&self.stream, &[&delivery.receipt])
            .query_async(&mut *self.conn().await?)
            .await;
        gone_is_fine(acked)
    }

    pub async fn task_ids(&self) -> Result<HashSet<String>, QueueError> {
        let mut ids = HashSet::new();
        let mut start = "-".to_string();
        loop {
            let page: StreamRangeReply = self
                .conn()
                .await?
                .xrange_count(&self.stream, &start, "+", 1000)
                .await?;
            let Some(last) = page.ids.last().map(|e| e.id.clone()) else {
                return Ok(ids);
            };
            ids.extend(page.ids.iter().filter_map(|e| e.get::<String>(FIELD)));
            // Exclusive start: continue after the last entry seen.
            start = format!("({last}");
        }
    }

    pub async fn waiting(&self) -> Result<u64, QueueError> {
        let mut conn = self.conn().await?;
        let length: u64 = conn.xlen(&self.stream).await?;
        let pending: redis::RedisResult<redis::streams::StreamPendingReply> =
            conn.xpending(&self.stream, GROUP).await;
        let pending = match pending {
            Ok(reply) => reply.count() as u64,
            Err(e) if e.code() == Some("NOGROUP") => 0,
            Err(e) => return Err(e.into()),
        };
        Ok(length.saturating_sub(pending))
    }

    /// Entries handed out and not yet acknowledged, and the consumers the group knows.
    pub async fn pending_and_consumers(&self) -> Result<(u64, u64), QueueError> {
        let mut conn = self.conn().await?;
        let pending: redis::RedisResult<redis::streams::StreamPendingReply> =
            conn.xpending(&self.stream, GROUP).await;
        let pending = match pending {
            Ok(reply) => reply.count() as u64,
            Err(e) if e.code() == Some("NOGROUP") => return Ok((0, 0)),
            Err(e) => return Err(e.into()),
        };
        let consumers: redis::streams::StreamInfoConsumersReply =
            conn.xinfo_consumers(&self.stream, GROUP).await?;
        Ok((pending, consumers.consumers.len() as u64))
    }

    /// See `Queue::forget_idle_consumers`.
    pub async fn forget_idle_consumers(&self, idle: Duration) -> Result<usize, QueueError> {
        let mut conn = self.conn().await?;
        let consumers: redis::RedisResult<redis::streams::StreamInfoConsumersReply> =
            conn.xinfo_consumers(&self.stream, GROUP).await;
        let consumers = match consumers {
            Ok(reply) => reply.consumers,
            // No stream or no group yet: nobody to forget.
            Err(e) if e.code() == Some("NOGROUP") || e.to_string().contains("no such key") => {
                return Ok(0);
            }
            Err(e) => return Err(e.into()),
        };
        let mut forgotten = 0;
        for consumer in consumers {
            if consumer.pending > 0 || (consumer.idle as u128) < idle.as_millis() {
                continue;
            }
            // DELCONSUMER drops the consumer's pending entries too; it has none.
            let _: i64 = redis::cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(&self.stream)
                .arg(GROUP)
                .arg(&consumer.name)
                .query_async(&mut conn)
                .await?;
            forgotten += 1;
        }
        Ok(forgotten)
    }

    pub async fn ping(&self) -> Result<(), QueueError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut *self.conn().await?)
            .await?;
        Ok(())
    }
}

/// Redis lost the group (restart, `FLUSHALL`) and with it the entry: there is nothing to keep
/// alive or to ack. Not an outage; the reconciler has pushed the task again if it needs to.
fn gone_is_fine<T>(result: redis::RedisResult<T>) -> Result<(), QueueError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("NOGROUP") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn pool_error(e: deadpool_redis::PoolError) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::other(e.to_string()))
}

/// The delivery of an entry. An entry without a task id (not written by ocrd) gets an empty
/// one: no task has it, so the worker acks it away.
fn delivery(entry: StreamId, deliveries: u64) -> Delivery {
    Delivery {
        task_id: entry.get::<String>(FIELD).unwrap_or_default(),
        deliveries,
        receipt: entry.id,
    }
}
