//! Rate limits per class (`rate_limits.*`): GCRA buckets for request rates, leases for
//! concurrent WebSockets. In Redis (one atomic script per decision, on Redis's clock) when it
//! is configured, so that every `serve` instance counts together; in process otherwise.
//!
//! A decision checks several keys at once (the client address, and the account or token) and
//! charges them only if all allow it. A store that cannot answer lets the request through
//! with a warning: a limit is a brake, not a dependency.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use deadpool_redis::redis;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::config::RateLimitConfig;
use crate::error::{ApiError, Code};
use crate::outage::Outage;

/// The scripts, sent by their SHA-1 (EVALSHA) and loaded once per Redis.
static GCRA: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(GCRA_SCRIPT));
static LEASE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(LEASE_SCRIPT));
static RENEW: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(RENEW_SCRIPT));

/// How an outage of the store reads in the log.
const STORE: &str = "the rate-limit store (Redis; requests pass meanwhile)";

/// GCRA over every key: KEYS are buckets; ARGV = emission interval (ms), tolerance (ms),
/// cost. Returns {allowed, ms until the fullest bucket is full again, ms to wait if refused}.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval, tolerance, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local worst, tats = 0, {}
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  tats[i] = tat + cost * interval
  if tats[i] - now > worst then worst = tats[i] - now end
end
if worst > tolerance then
  return {0, math.ceil(worst - cost * interval), math.ceil(worst - tolerance)}
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, tostring(tats[i]), 'PX', math.max(1, math.ceil(tats[i] - now)))
end
return {1, math.ceil(worst), 0}
";

/// Leases on concurrent connections: KEYS are sorted sets of member → expiry; ARGV = member,
/// lease (ms), then one limit per key. Returns 0 when leased, else the index of the full key.
const LEASE_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local limit = tonumber(ARGV[i + 2])
  if limit > 0 and redis.call('ZCARD', key) >= limit then return i end
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', key, tonumber(ARGV[2]))
end
return 0
";

/// Extends leases: KEYS as for [`LEASE_SCRIPT`]; ARGV = member, lease (ms).
const RENEW_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', key, tonumber(ARGV[2]))
end
return 0
";

/// The limited kinds of request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// Requests under `/api`.
    Api,
    /// Uploaded files.
    Uploads,
    /// Uploaded bytes.
    UploadBytes,
    /// Sign-ins, registrations, password resets.
    Auth,
    /// Open WebSockets.
    Ws,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Api => "api",
            Class::Uploads => "uploads",
            Class::UploadBytes => "upload_bytes",
            Class::Auth => "auth",
            Class::Ws => "ws",
        }
    }
}

/// `quota` units per `window`, refilling steadily; a full bucket allows a burst of `quota`.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub quota: u64,
    pub window: Duration,
}

impl Policy {
    fn interval_ms(self) -> f64 {
        self.window.as_secs_f64() * 1000.0 / self.quota as f64
    }
}

/// An allowed request's standing, for the `RateLimit` headers.
#[derive(Clone, Debug)]
pub struct Standing {
    pub class: Class,
    pub policy: Policy,
    pub remaining: u64,
    /// Until the bucket is full again.
    pub reset: Duration,
}

impl Standing {
    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
    pub fn headers(&self) -> [(&'static str, String); 2] {
        let name = self.class.as_str();
        [
            (
                "ratelimit-policy",
                format!(
                    "\"{name}\";q={};w={}",
                    self.policy.quota,
                    self.policy.window.as_secs().max(1)
                ),
            ),
            (
                "ratelimit",
                format!(
                    "\"{name}\";r={};t={}",
                    self.remaining,
                    self.reset.as_secs_f64().ceil() as u64
                ),
            ),
        ]
    }

    fn limited(self, retry_after: Duration, what: &str) -> ApiError {
        let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        let mut error = ApiError::new(
            Code::TooManyRequests,
            format!("Too many {what}; try again in {secs} s."),
        );
        error.retry_after = Some(secs);
        error.headers.extend(self.headers());
        error
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabel {
    class: &'static str,
}

#[derive(Clone, Debug)]
enum Store {
    Redis {
        pool: deadpool_redis::Pool,
        prefix: String,
    },
    Local(Arc<LocalStore>),
}

#[derive(Debug, Default)]
struct LocalStore {
    /// Bucket → theoretical arrival time, in ms since `epoch`.
    buckets: Mutex<HashMap<String, f64>>,
    leases: Mutex<HashMap<String, HashSet<String>>>,
    epoch: std::sync::OnceLock<Instant>,
}

impl LocalStore {
    fn now_ms(&self) -> f64 {
        self.epoch.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0
    }
}

#[derive(Clone, Debug)]
pub struct Limiter {
    store: Store,
    config: RateLimitConfig,
    limited: Family<ClassLabel, Counter>,
    /// Logs once when Redis stops answering, and once when it is back.
    outage: Arc<Outage>,
}

impl Limiter {
    pub fn local(config: &RateLimitConfig) -> Limiter {
        Limiter {
            store: Store::Local(Arc::default()),
            config: config.clone(),
            limited: Family::default(),
            outage: Arc::new(Outage::new(STORE)),
        }
    }

    pub fn redis(
        pool: deadpool_redis::Pool,
        key_prefix: &str,
        config: &RateLimitConfig,
    ) -> Limiter {
        Limiter {
            store: Store::Redis {
                pool,
                prefix: format!("{key_prefix}rl:"),
            },
            config: config.clone(),
            limited: Family::default(),
            outage: Arc::new(Outage::new(STORE)),
        }
    }

    /// Runs a script on Redis; `None` when Redis cannot answer (the request goes through).
    async fn run<T: redis::FromRedisValue>(
        &self,
        pool: &deadpool_redis::Pool,
        script: redis::ScriptInvocation<'_>,
    ) -> Option<T> {
        let answer: Result<T, String> = async {
            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
            script
                .invoke_async(&mut *conn)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match answer {
            Ok(value) => {
                self.outage.up();
                Some(value)
            }
            Err(e) => {
                self.outage.down(&e);
                None
            }
        }
    }

    /// `ocrd_rate_limited_total{class}`, for the metrics registry.
    pub fn limited_counter(&self) -> Family<ClassLabel, Counter> {
        self.limited.clone()
    }

    /// The configured policy of a rate class; `None` when that limit is off.
    pub fn policy(&self, class: Class) -> Option<Policy> {
        let c = &self.config;
        let minute = Duration::from_secs(60);
        let policy = match class {
            Class::Api if c.api_per_second > 0 => Policy {
                quota: c.api_burst as u64,
                window: Duration::from_secs_f64(c.api_burst as f64 / c.api_per_second as f64),
            },
            Class::Uploads => Policy {
                quota: c.uploads_per_minute as u64,
                window: minute,
            },
            Class::UploadBytes => Policy {
                quota: c.upload_bytes_per_minute,
                window: minute,
            },
            Class::Auth => Policy {
                quota: c.auth_per_minute as u64,
                window: minute,
            },
            _ => return None,
        };
        (policy.quota > 0).then_some(policy)
    }

    /// Charges `cost` to every key's bucket of `class`, or refuses with 429 (charging
    /// nothing). `Ok(None)` when the class has no limit. `what` names the requests in the
    /// message ("requests", "uploads").
    pub async fn check(
        &self,
        class: Class,
        keys: &[String],
        cost: u64,
        what: &str,
    ) -> Result<Option<Standing>, ApiError> {
        let Some(policy) = self.policy(class) else {
            return Ok(None);
        };
        // A single charge larger than the bucket could never pass: charge a full bucket.
        let cost = cost.min(policy.quota) as f64;
        let interval = policy.interval_ms();
        let tolerance = policy.window.as_secs_f64() * 1000.0;
        // Each class has buckets of its own under the same client keys.
        let keys: Vec<String> = keys
            .iter()
            .map(|k| format!("{}:{k}", class.as_str()))
            .collect();
        let decided = match &self.store {
            Store::Redis { pool, prefix } => {
                let keys: Vec<String> = keys.iter().map(|k| format!("{prefix}{k}")).collect();
                let mut script = GCRA.prepare_invoke();
                script.key(&keys).arg(interval).arg(tolerance).arg(cost);
                self.run(pool, script)
                    .await
                    .map(|(allowed, full_in, wait): (i64, i64, i64)| {
                        (allowed == 1, full_in as f64, wait as f64)
                    })
            }
            Store::Local(store) => {
                let now = store.now_ms();
                let mut buckets = store.buckets.lock().unwrap_or_else(|e| e.into_inner());
                if buckets.len() > 100_000 {
                    buckets.retain(|_, tat| *tat > now);
                }
                let tats: Vec<f64> = keys
                    .iter()
                    .map(|k| buckets.get(k).copied().unwrap_or(now).max(now) + cost * interval)
                    .collect();
                let worst = tats.iter().map(|t| t - now).fold(0.0, f64::max);
                if worst > tolerance {
                    Some((false, worst - cost * interval, worst - tolerance))
                } else {
                    buckets.extend(keys.into_iter().zip(tats));
                    Some((true, worst, 0.0))
                }
            }
        };
        let Some((allowed, full_in, wait)) = decided else {
            return Ok(None);
        };
        let remaining = ((tolerance - full_in) / interval).floor().max(0.0) as u64;
        let standing = Standing {
            class,
            policy,
            remaining: if allowed { remaining } else { 0 },
            reset: Duration::from_secs_f64(full_in.max(0.0) / 1000.0),
        };
        if allowed {
            return Ok(Some(standing));
        }
        self.limited
            .get_or_create(&ClassLabel {
                class: class.as_str(),
            })
            .inc();
        Err(standing.limited(Duration::from_secs_f64(wait / 1000.0), what))
    }

    /// Leases a WebSocket slot under the address key and the account key (`rate_limits.ws_*`)
    /// for `lease`; the socket renews it while open, and it is returned when dropped.
    pub async fn open_socket(
        &self,
        address: &str,
        user: &str,
        lease: Duration,
    ) -> Result<SocketLease, ApiError> {
        let keys = [format!("ws:ip:{address}"), format!("ws:user:{user}")];
        let limits = [self.config.ws_per_address, self.config.ws_per_user];
        let member = crate::auth::sessions::random_token();
        let full = match &self.store {
            Store::Redis { pool, prefix } => {
                let keys: Vec<String> = keys.iter().map(|k| format!("{prefix}{k}")).collect();
                let mut script = LEASE.prepare_invoke();
                script
                    .key(&keys)
                    .arg(&member)
                    .arg(lease.as_millis() as u64)
                    .arg(&limits[..]);
                self.run(pool, script).await.unwrap_or(0)
            }
            Store::Local(store) => {
                let mut leases = store.leases.lock().unwrap_or_else(|e| e.into_inner());
                let full = keys.iter().zip(limits).position(|(k, limit)| {
                    limit > 0 && leases.get(k).is_some_and(|set| set.len() >= limit as usize)
                });
                match full {
                    Some(i) => i as i64 + 1,
                    None => {
                        for key in &keys {
                            leases
                                .entry(key.clone())
                                .or_default()
                                .insert(member.clone());
                        }
                        0
                    }
                }
            }
        };
        if full == 0 {
            return Ok(SocketLease {
                limiter: self.clone(),
                keys: keys.to_vec(),
                member,
                lease,
            });
        }
        self.limited
            .get_or_create(&ClassLabel {
                class: Class::Ws.as_str(),
            })
            .inc();
        let (scope, limit) = if full == 1 {
            ("from this address", limits[0])
        } else {
            ("for this account", limits[1])
        };
        let standing = Standing {
            class: Class::Ws,
            policy: Policy {
                quota: limit as u64,
                window: lease,
            },
            remaining: 0,
            reset: lease,
        };
        let mut error = standing.limited(Duration::from_secs(10), "open WebSockets");
        error.message = format!(
            "At most {limit} WebSockets may be open at once {scope}; close one, or try again in 10 s."
        );
        Err(error)
    }
}

/// A WebSocket's slot; renew it within its lease, and drop it when the socket closes.
#[derive(Debug)]
pub struct SocketLease {
    limiter: Limiter,
    keys: Vec<String>,
    member: String,
    lease: Duration,
}

impl SocketLease {
    /// Extends the lease (a socket that stops renewing, its process killed, frees its slot
    /// when the lease runs out).
    pub async fn renew(&self) {
        if let Store::Redis { pool, prefix } = &self.limiter.store
            && let Ok(mut conn) = pool.get().await
        {
            let keys: Vec<String> = self.keys.iter().map(|k| format!("{prefix}{k}")).collect();
            let _: redis::RedisResult<i64> = RENEW
                .key(&keys)
                .arg(&self.member)
                .arg(self.lease.as_millis() as u64)
                .invoke_async(&mut *conn)
                .await;
        }
    }
}

impl Drop for SocketLease {
    fn drop(&mut self) {
        match &self.limiter.store {
            Store::Local(store) => {
                let mut leases = store.leases.lock().unwrap_or_else(|e| e.into_inner());
                for key in &self.keys {
                    if let Some(set) = leases.get_mut(key) {
                        set.remove(&self.member);
                        if set.is_empty() {
                            leases.remove(key);
                        }
                    }
                }
            }
            Store::Redis { pool, prefix } => {
                let (pool, member) = (pool.clone(), self.member.clone());
                let keys: Vec<String> = self.keys.iter().map(|k| format!("{prefix}{k}")).collect();
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        if let Ok(mut conn) = pool.get().await {
                            let mut pipe = redis::pipe();
                            for key in &keys {
                                pipe.cmd("ZREM").arg(key).arg(&member).ignore();
                            }
                            let _: redis::RedisResult<()> = pipe.query_async(&mut *conn).await;
                        }
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(auth_per_minute: u32, ws_per_user: u32) -> Limiter {
        Limiter::local(&RateLimitConfig {
            auth_per_minute,
            ws_per_user,
            ..RateLimitConfig::default()
        })
    }

    #[tokio::test]
    async fn a_bucket_allows_its_quota_then_refuses_until_it_refills() {
        let limiter = limiter(3, 0);
        let keys = ["ip:a".to_owned()];
        let mut remaining = Vec::new();
        for _ in 0..3 {
            let standing = limiter
                .check(Class::Auth, &keys, 1, "tries")
                .await
                .unwrap()
                .unwrap();
            remaining.push(standing.remaining);
        }
        assert_eq!(remaining, [2, 1, 0]);
        let refused = limiter
            .check(Class::Auth, &keys, 1, "tries")
            .await
            .unwrap_err();
        // One token comes back every 20 s (3 per minute).
        let wait = refused.retry_after.unwrap();
        assert!((19..=20).contains(&wait), "{wait}");
        assert!(
            refused.message.contains(&format!("try again in {wait} s")),
            "{}",
            refused.message
        );
        let (_, policy) = &refused.headers[0];
        assert_eq!(policy, "\"auth\";q=3;w=60");
    }

    #[tokio::test]
    async fn every_key_must_allow_and_a_refusal_charges_none() {
        let limiter = limiter(1, 0);
        let spent = ["ip:a".to_owned()];
        limiter
            .check(Class::Auth, &spent, 1, "tries")
            .await
            .unwrap();
        let both = ["ip:a".to_owned(), "user:b".to_owned()];
        assert!(limiter.check(Class::Auth, &both, 1, "tries").await.is_err());
        // user:b was not charged by the refused request.
        let fresh = ["user:b".to_owned()];
        assert!(limiter.check(Class::Auth, &fresh, 1, "tries").await.is_ok());
        // A limit of 0 is off.
        let off = Limiter::local(&RateLimitConfig {
            api_per_second: 0,
            ..RateLimitConfig::default()
        });
        assert!(
            off.check(Class::Api, &spent, 1, "requests")
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn socket_slots_are_returned_when_dropped() {
        let limiter = limiter(0, 1);
        let lease = Duration::from_secs(60);
        let first = limiter.open_socket("a", "u", lease).await.unwrap();
        let refused = limiter.open_socket("b", "u", lease).await.unwrap_err();
        assert_eq!(refused.code, Code::TooManyRequests);
        assert!(
            refused.message.contains("for this account"),
            "{}",
            refused.message
        );
        drop(first);
        assert!(limiter.open_socket("b", "u", lease).await.is_ok());
    }
}
