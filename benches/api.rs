//! HTTP API throughput with `wrk`: `GET /api/tasks/{id}` with an API token (authentication,
//! two indexed queries, JSON), against `GET /healthz` (no I/O) as the baseline, in the same
//! run on loopback; and the same read with the `api` rate limit off, to show what the limiter
//! (one Redis script per request) costs. Run with `make bench-api`, which brings up PostgreSQL and Redis and
//! installs wrk (Debian package `wrk`) if it is missing.
//!
//! The server runs in this process on PostgreSQL + Redis, as `ocrd serve` does.

mod support;

use std::time::Duration;

use ocrd::app::App;
use ocrd::config::Secret;
use support::{CONNECTIONS, DURATION, wrk};

fn main() {
    support::main(|| async {
        let redis_url =
            std::env::var("OCRDTEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let db = support::BenchDb::create().await;
        let name = db.name.clone();
        let dir = tempfile::tempdir().unwrap();
        let mut config = db.config(&dir);
        config.database.pool_size = 16;
        // The limiter runs (its cost is part of every request) but never refuses.
        config.rate_limits.api_per_second = 1_000_000;
        config.rate_limits.api_burst = 1_000_000;
        let mut unlimited = config.clone();
        unlimited.rate_limits.api_per_second = 0;
        config.redis.url = Secret::new(redis_url);
        config.redis.key_prefix = format!("{name}:");
        let app = App::build(config).await.unwrap();

        let (user, token) = support::user_with_token(&app).await;
        let task = support::one_task(&app, &user.id).await;

        let (server, addr) =
            ocrd::web::bind("127.0.0.1:0", app, None, ocrd::web::Scope::Full).unwrap();
        let handle = server.handle();
        tokio::spawn(server);
        let app = App::build(unlimited).await.unwrap();
        let (server, unlimited_addr) =
            ocrd::web::bind("127.0.0.1:0", app, None, ocrd::web::Scope::Full).unwrap();
        let unlimited_handle = server.handle();
        tokio::spawn(server);
        tokio::time::sleep(Duration::from_millis(200)).await;

        let base = format!("http://{addr}");
        let unlimited_base = format!("http://{unlimited_addr}");
        let (healthz, task_get, task_get_unlimited) = tokio::task::spawn_blocking(move || {
            let healthz = wrk(&format!("{base}/healthz"), None);
            let task_get = wrk(&format!("{base}/api/tasks/{}", task.id), Some(&token));
            let unlimited = wrk(
                &format!("{unlimited_base}/api/tasks/{}", task.id),
                Some(&token),
            );
            (healthz, task_get, unlimited)
        })
        .await
        .unwrap();
        println!(
            "wrk -t2 -c{CONNECTIONS} -d{DURATION}, loopback, PostgreSQL + Redis, release build:"
        );
        println!("| request | req/s | p99 |");
        println!("|---|---|---|");
        println!(
            "| GET /healthz (baseline: no I/O) | {:.0} | {:.2} ms |",
            healthz.requests_per_sec, healthz.p99_ms
        );
        println!(
            "| GET /api/tasks/{{id}} with a token | {:.0} | {:.2} ms |",
            task_get.requests_per_sec, task_get.p99_ms
        );
        println!(
            "| GET /api/tasks/{{id}}, api rate limit off | {:.0} | {:.2} ms |",
            task_get_unlimited.requests_per_sec, task_get_unlimited.p99_ms
        );
        println!(
            "ratio: the task read runs at {:.2}× the baseline's throughput",
            task_get.requests_per_sec / healthz.requests_per_sec
        );
        println!(
            "ratio: with the rate limit it runs at {:.2}× its throughput without",
            task_get.requests_per_sec / task_get_unlimited.requests_per_sec
        );

        handle.stop(true).await;
        unlimited_handle.stop(true).await;
        db.drop().await;
    });
}
