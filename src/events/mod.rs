//! The events port: `task.updated` messages from whoever changes a task to whoever watches.
//!
//! Adapters: Redis pub/sub on one channel (every `serve` process subscribes once and fans out
//! in memory), and an in-process broadcast for all-in-one. Events are notifications, not
//! state: a lost event leaves a stale screen until the next one, never a wrong task, because
//! the database holds the truth. Publishing therefore never fails the caller; it logs.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::db::models::Task;
use crate::outage::Outage;

/// Events buffered per subscriber before a slow one starts missing them.
const FANOUT_CAPACITY: usize = 1024;

/// `{"type":"task.updated","task":{…}}`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "task.updated")]
    TaskUpdated { task: TaskUpdate },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskUpdate {
    pub id: String,
    pub user_id: String,
    pub status: String,
    pub pages_done: i32,
    pub pages_total: Option<i32>,
    pub error: Option<ErrorInfo>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
}

impl Event {
    pub fn task_updated(task: &Task) -> Event {
        let error = task.error_code.as_ref().map(|code| ErrorInfo {
            code: code.clone(),
            message: task.error_message.clone().unwrap_or_default(),
        });
        Event::TaskUpdated {
            task: TaskUpdate {
                id: task.id.clone(),
                user_id: task.user_id.clone(),
                status: task.status.as_str().to_owned(),
                pages_done: task.pages_done,
                pages_total: task.pages_total,
                error,
            },
        }
    }
}

#[derive(Clone, Debug)]
pub enum Events {
    Redis(RedisEvents),
    Local(broadcast::Sender<Event>),
}

impl Events {
    pub fn local() -> Events {
        Events::Local(broadcast::channel(FANOUT_CAPACITY).0)
    }

    pub fn redis(pool: deadpool_redis::Pool, url: &str, key_prefix: &str) -> Events {
        Events::Redis(RedisEvents {
            pool,
            url: url.to_owned(),
            channel: format!("{key_prefix}events"),
            fanout: Arc::new(OnceLock::new()),
            publishing: Arc::new(Outage::new("event publishing")),
        })
    }

    /// Publishes `event`; a failure is logged, not returned (see the module doc).
    pub async fn publish(&self, event: &Event) {
        match self {
            Events::Local(tx) => {
                // No subscriber is not an error.
                let _ = tx.send(event.clone());
            }
            Events::Redis(r) => match r.publish(event).await {
                Ok(()) => r.publishing.up(),
                Err(e) => r.publishing.down(&e),
            },
        }
    }

    pub async fn task_updated(&self, task: &Task) {
        self.publish(&Event::task_updated(task)).await
    }

    /// A receiver of every event from now on. With Redis, the first call starts this process's
    /// one subscription, which reconnects by itself.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender().subscribe()
    }

    /// The in-memory fan-out every local receiver subscribes to.
    pub fn sender(&self) -> broadcast::Sender<Event> {
        match self {
            Events::Local(tx) => tx.clone(),
            Events::Redis(r) => r.sender(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RedisEvents {
    pool: deadpool_redis::Pool,
    url: String,
    channel: String,
    fanout: Arc<OnceLock<broadcast::Sender<Event>>>,
    publishing: Arc<Outage>,
}

impl RedisEvents {
    async fn publish(&self, event: &Event) -> Result<(), String> {
        use deadpool_redis::redis::AsyncCommands;
        let json = serde_json::to_string(event).map_err(|e| e.to_string())?;
        let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
        let _: i64 = conn
            .publish(&self.channel, json)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    fn sender(&self) -> broadcast::Sender<Event> {
        let mut started = false;
        let tx = self.fanout.get_or_init(|| {
            started = true;
            broadcast::channel(FANOUT_CAPACITY).0
        });
        if started {
            tokio::spawn(forward(self.url.clone(), self.channel.clone(), tx.clone()));
        }
        tx.clone()
    }
}

/// Forwards the Redis channel into the in-memory fan-out for as long as anyone listens,
/// reconnecting with backoff; one log line per outage.
async fn forward(url: String, channel: String, tx: broadcast::Sender<Event>) {
    let mut delay = Duration::from_millis(250);
    let subscription = Outage::new("event subscription");
    loop {
        let subscribed = async {
            let client = deadpool_redis::redis::Client::open(url.as_str())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, deadpool_redis::redis::RedisError>(pubsub)
        }
        .await;
        match subscribed {
            Ok(mut pubsub) => {
                subscription.up();
                delay = Duration::from_millis(250);
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let Ok(payload) = message.get_payload::<String>() else {
                        continue;
                    };
                    match serde_json::from_str::<Event>(&payload) {
                        Ok(event) => {
                            let _ = tx.send(event);
                        }
                        Err(e) => tracing::debug!(error = %e, "ignoring an unknown event"),
                    }
                }
                subscription.down(&"the connection closed");
            }
            Err(e) => subscription.down(&e),
        }
        tokio::time::sleep(delay + Duration::from_millis(fastrand::u64(0..250))).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}
