//! Redis connection pools (deadpool-redis), shared by the queue, events and session adapters.
//!
//! redis 1.x gives every connection a 500 ms response timeout by default. That is too short for
//! a busy machine and breaks blocking reads (`XREADGROUP BLOCK`) outright, so ordinary pools get
//! a generous timeout and blocking work gets its own pool with none.

use std::time::Duration;

use deadpool_redis::redis::{self, AsyncConnectionConfig};
use deadpool_redis::{Manager, Pool, Runtime};

/// Response timeout of ordinary (non-blocking) commands.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a caller waits for a free pooled connection.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("invalid redis.url: {0}")]
    Url(redis::RedisError),
    #[error("cannot build the Redis pool: {0}")]
    Build(String),
    #[error("cannot get a Redis connection: {0}")]
    Pool(String),
    #[error("Redis command failed: {0}")]
    Command(#[from] redis::RedisError),
}

/// A pool for ordinary commands.
pub fn pool(url: &str, size: usize) -> Result<Pool, RedisError> {
    build(url, size, Some(RESPONSE_TIMEOUT))
}

/// A pool for blocking commands (`XREADGROUP BLOCK`, `BLMOVE`): no response timeout.
pub fn blocking_pool(url: &str, size: usize) -> Result<Pool, RedisError> {
    build(url, size, None)
}

fn build(url: &str, size: usize, response_timeout: Option<Duration>) -> Result<Pool, RedisError> {
    let connection = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(response_timeout);
    let manager = Manager::new_with_config(url, connection).map_err(RedisError::Url)?;
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(CHECKOUT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| RedisError::Build(e.to_string()))
}

/// PING round trip: the readiness check.
pub async fn ping(pool: &Pool) -> Result<(), RedisError> {
    let mut conn = pool
        .get()
        .await
        .map_err(|e| RedisError::Pool(e.to_string()))?;
    let pong: String = redis::cmd("PING").query_async(&mut *conn).await?;
    if pong == "PONG" {
        Ok(())
    } else {
        Err(RedisError::Build(format!("unexpected PING reply {pong:?}")))
    }
}
