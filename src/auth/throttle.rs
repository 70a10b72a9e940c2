//! Login throttling: failed attempts counted per key (an account, a client address) in a
//! fixed window, in Redis so that every `serve` process shares the count, or in process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_redis::redis;

#[derive(Clone, Debug)]
pub struct Throttle {
    store: Store,
    limit: u32,
    window: Duration,
}

#[derive(Clone, Debug)]
enum Store {
    Redis {
        pool: deadpool_redis::Pool,
        prefix: String,
    },
    Local(Arc<Mutex<HashMap<String, (u32, Instant)>>>),
}

impl Throttle {
    pub fn local(limit: u32, window: Duration) -> Throttle {
        Throttle {
            store: Store::Local(Arc::default()),
            limit,
            window,
        }
    }

    pub fn redis(
        pool: deadpool_redis::Pool,
        key_prefix: &str,
        limit: u32,
        window: Duration,
    ) -> Throttle {
        Throttle {
            store: Store::Redis {
                pool,
                prefix: format!("{key_prefix}login-failures:"),
            },
            limit,
            window,
        }
    }

    /// `Err(seconds)` while `key` has used up its failures; the seconds until it may retry.
    /// A store that cannot answer lets the attempt through: throttling is a brake, and the
    /// password check still runs.
    pub async fn check(&self, key: &str) -> Result<(), u64> {
        match &self.store {
            Store::Redis { pool, prefix } => {
                let Ok(mut conn) = pool.get().await else {
                    return Ok(());
                };
                let counted: redis::RedisResult<(Option<u32>, i64)> = redis::pipe()
                    .get(format!("{prefix}{key}"))
                    .ttl(format!("{prefix}{key}"))
                    .query_async(&mut *conn)
                    .await;
                match counted {
                    Ok((Some(n), ttl)) if n >= self.limit => Err(ttl.max(1) as u64),
                    _ => Ok(()),
                }
            }
            Store::Local(map) => {
                let map = map.lock().unwrap_or_else(|e| e.into_inner());
                match map.get(key) {
                    Some((n, until)) if *n >= self.limit && *until > Instant::now() => {
                        Err(until.duration_since(Instant::now()).as_secs().max(1))
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// Counts a failed attempt for `key`.
    pub async fn fail(&self, key: &str) {
        match &self.store {
            Store::Redis { pool, prefix } => {
                let Ok(mut conn) = pool.get().await else {
                    return;
                };
                // The window starts at the first failure (EXPIRE NX).
                let _: redis::RedisResult<()> = redis::pipe()
                    .incr(format!("{prefix}{key}"), 1)
                    .ignore()
                    .cmd("EXPIRE")
                    .arg(format!("{prefix}{key}"))
                    .arg(self.window.as_secs().max(1))
                    .arg("NX")
                    .ignore()
                    .query_async(&mut *conn)
                    .await;
            }
            Store::Local(map) => {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                map.retain(|_, (_, until)| *until > now);
                let entry = map.entry(key.to_owned()).or_insert((0, now + self.window));
                entry.0 += 1;
            }
        }
    }

    /// Forgets `key`'s failures (a successful login).
    pub async fn reset(&self, key: &str) {
        match &self.store {
            Store::Redis { pool, prefix } => {
                if let Ok(mut conn) = pool.get().await {
                    let _: redis::RedisResult<()> = redis::cmd("DEL")
                        .arg(format!("{prefix}{key}"))
                        .query_async(&mut *conn)
                        .await;
                }
            }
            Store::Local(map) => {
                map.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
            }
        }
    }
}
