//! `App`: the ports built once from the configuration and shared by every mode.
//!
//! This is the only place that chooses adapters: PostgreSQL or SQLite, S3 or a local directory,
//! Redis or in-process. Everything downstream holds an `App` and does not know which it got.

use std::sync::Arc;

use crate::auth::sessions::Sessions;
use crate::auth::throttle::Throttle;
use crate::blobs::{BlobError, Blobs};
use crate::config::Config;
use crate::db::{DbError, DbPool};
use crate::edge::Limiter;
use crate::events::Events;
use crate::queue::{LocalQueue, Queue, QueueError, RedisQueue};
use crate::redis_pool::{self, RedisError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Blobs(#[from] BlobError),
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

#[derive(Clone, Debug)]
pub struct App {
    pub config: Arc<Config>,
    pub db: DbPool,
    pub blobs: Blobs,
    /// `None` on the embedded defaults: queue, events and sessions stay in process.
    pub redis: Option<deadpool_redis::Pool>,
    pub queue: Queue,
    pub events: Events,
    pub sessions: Sessions,
    /// Failed logins, per account and client address, and per address.
    pub login_throttle: Throttle,
    /// Rate limits (`rate_limits.*`), shared by every instance on one Redis.
    pub limiter: Limiter,
    /// This process's server metrics (HTTP, WebSockets, database pool, last backup), shared by
    /// its listeners (the operations listener exports the public one's).
    pub server_metrics: Arc<crate::web::ServerMetrics>,
    /// Runtime settings: the configuration's defaults with the admins' overrides.
    pub settings: crate::settings::Settings,
    /// The multi-threaded runtime that built the App: see [`App::finish`].
    runtime: tokio::runtime::Handle,
}

impl App {
    /// Builds the ports and, unless `database.migrate_on_start` is off, migrates the database.
    pub async fn build(config: Config) -> Result<App, AppError> {
        let db = DbPool::from_config(&config)?;
        if config.database.migrate_on_start {
            db.migrate().await?;
        }
        let blobs = Blobs::from_config(&config)?;
        blobs.check().await?;
        let settings = crate::settings::Settings::start(db.clone(), &config).await;
        let auth = &config.auth;
        let session_ttl = std::time::Duration::from_secs(auth.session_ttl_secs);
        let window = std::time::Duration::from_secs(auth.login_window_secs);
        let (redis, queue, events, sessions, login_throttle, limiter) = match config.redis_url()? {
            Some(url) => {
                let size = config.database.pool_size.max(4);
                let pool = redis_pool::pool(url, size)?;
                // Each worker slot holds one connection through its blocking read.
                let slots = match config.worker.concurrency {
                    0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                    n => n,
                };
                let blocking = redis_pool::blocking_pool(url, size.max(slots))?;
                let prefix = &config.redis.key_prefix;
                let queue = Queue::Redis(RedisQueue::new(pool.clone(), blocking, prefix));
                let events = Events::redis(pool.clone(), url, prefix);
                let sessions = Sessions::redis(pool.clone(), prefix, session_ttl);
                let throttle = Throttle::redis(pool.clone(), prefix, window);
                let limiter = Limiter::redis(pool.clone(), prefix, &config.rate_limits);
                (Some(pool), queue, events, sessions, throttle, limiter)
            }
            None => (
                None,
                Queue::Local(LocalQueue::new()),
                Events::local(),
                Sessions::local(session_ttl),
                Throttle::local(window),
                Limiter::local(&config.rate_limits),
            ),
        };
        let reads = db.read_counter();
        Ok(App {
            runtime: tokio::runtime::Handle::current(),
            config: Arc::new(config),
            db,
            blobs,
            redis,
            queue,
            events,
            sessions,
            login_throttle,
            server_metrics: Arc::new(crate::web::ServerMetrics::new(
                limiter.limited_counter(),
                reads,
            )),
            limiter,
            settings,
        })
    }

    /// Runs `work` to completion as a task of its own, even if the caller stops waiting: for
    /// steps that must not stop halfway (store then record, delete rows then objects). An
    /// `Err` means the task panicked or the runtime is shutting down.
    pub fn finish<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        self.runtime.spawn(work)
    }

    /// Checks every port with a round trip; the readiness probe.
    pub async fn check_ready(&self) -> Result<(), AppError> {
        self.db.ping().await?;
        self.blobs.check().await?;
        self.queue.ping().await?;
        Ok(())
    }
}
