//! The Redis pool helper against the real server.

use deadpool_redis::redis::AsyncCommands;
use ocrd::redis_pool;

use crate::support::{HOW_TO_RUN, redis_url, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_pings_and_keeps_to_its_prefix() {
    let url = redis_url();
    let pool = redis_pool::pool(&url, 2).unwrap();
    redis_pool::ping(&pool)
        .await
        .unwrap_or_else(|e| panic!("Redis at {url}: {e}\n  {HOW_TO_RUN}"));
    let prefix = unique("ocrd-test:");
    let mut conn = pool.get().await.unwrap();
    let key = format!("{prefix}:greeting");
    let _: () = conn.set_ex(&key, "hello", 60).await.unwrap();
    let got: String = conn.get(&key).await.unwrap();
    assert_eq!(got, "hello");
    let _: () = conn.del(&key).await.unwrap();
}

/// Blocking reads outlive redis' default 500 ms response timeout on the blocking pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_pool_waits_past_half_a_second() {
    let pool = redis_pool::blocking_pool(&redis_url(), 1).unwrap();
    let mut conn = pool.get().await.unwrap();
    let key = unique("ocrd-test:empty-list:");
    let started = std::time::Instant::now();
    let popped: Option<(String, String)> = conn.blpop(&key, 1.2).await.unwrap();
    assert!(popped.is_none());
    assert!(started.elapsed() >= std::time::Duration::from_millis(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_is_an_error_not_a_hang() {
    let pool = redis_pool::pool("redis://127.0.0.1:1", 1).unwrap();
    assert!(redis_pool::ping(&pool).await.is_err());
    assert!(redis_pool::pool("http://nope", 1).is_err());
}
