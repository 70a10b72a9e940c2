//! Login throttling: failed attempts counted per key (an account from one address, an
//! address) in a window, in Redis so that every `serve` process shares the count, or in
//! process. Past the limit the key is locked for the window, and each further attempt while
//! locked doubles the lock (up to 1024 windows): guessing gets slower the longer it goes on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_redis::redis;

/// `INCR`, the window's expiry on the first attempt, a growing lock past the limit; returns
/// the count and the TTL. ARGV = limit, window (s).
const ATTEMPT_SCRIPT: &str = "local n = redis.call('INCR', KEYS[1]) \
    local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2]) \
    if n == 1 then redis.call('EXPIRE', KEYS[1], window) end \
    if n > limit then redis.call('EXPIRE', KEYS[1], window * 2 ^ math.min(n - limit - 1, 10)) end \
    return {n, redis.call('TTL', KEYS[1])}";

/// How long a key is locked after its `over`th attempt past the limit.
fn lock(window: Duration, over: u32) -> Duration {
    window * 2u32.pow(over.saturating_sub(1).min(10))
}

#[derive(Clone, Debug)]
pub struct Throttle {
    store: Store,
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
    pub fn local(window: Duration) -> Throttle {
        Throttle {
            store: Store::Local(Arc::default()),
            window,
        }
    }

    pub fn redis(pool: deadpool_redis::Pool, key_prefix: &str, window: Duration) -> Throttle {
        Throttle {
            store: Store::Redis {
                pool,
                prefix: format!("{key_prefix}login-failures:"),
            },
            window,
        }
    }

    /// Counts an attempt for `key` before the password is checked, so parallel guesses cannot
    /// all slip in. `Err(seconds)` once more than `limit` came in the window: how long until
    /// the next may come. A store that cannot answer lets the attempt through: throttling is
    /// a brake, and the password check still runs.
    pub async fn attempt(&self, key: &str, limit: u32) -> Result<(), u64> {
        match &self.store {
            Store::Redis { pool, prefix } => {
                let Ok(mut conn) = pool.get().await else {
                    return Ok(());
                };
                // INCR and the window's expiry in one step (works on any Redis version).
                let counted: redis::RedisResult<(u32, i64)> = redis::cmd("EVAL")
                    .arg(ATTEMPT_SCRIPT)
                    .arg(1)
                    .arg(format!("{prefix}{key}"))
                    .arg(limit)
                    .arg(self.window.as_secs().max(1))
                    .query_async(&mut *conn)
                    .await;
                match counted {
                    Ok((n, ttl)) if n > limit => Err(ttl.max(1) as u64),
                    _ => Ok(()),
                }
            }
            Store::Local(map) => {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                map.retain(|_, (_, until)| *until > now);
                let entry = map.entry(key.to_owned()).or_insert((0, now + self.window));
                entry.0 += 1;
                if entry.0 > limit {
                    entry.1 = now + lock(self.window, entry.0 - limit);
                    Err(entry.1.duration_since(now).as_secs().max(1))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Takes back one attempt of `key` (a successful login from a shared address).
    pub async fn forgive(&self, key: &str) {
        match &self.store {
            Store::Redis { pool, prefix } => {
                if let Ok(mut conn) = pool.get().await {
                    let _: redis::RedisResult<()> = redis::cmd("DECR")
                        .arg(format!("{prefix}{key}"))
                        .query_async(&mut *conn)
                        .await;
                }
            }
            Store::Local(map) => {
                if let Some(entry) = map.lock().unwrap_or_else(|e| e.into_inner()).get_mut(key) {
                    entry.0 = entry.0.saturating_sub(1);
                }
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
