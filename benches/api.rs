//! HTTP API throughput with `wrk`: `GET /api/tasks/{id}` with an API token (authentication,
//! two indexed queries, JSON), against `GET /healthz` (no I/O) as the baseline, in the same
//! run on loopback; and the same read with the `api` rate limit off, to show what the limiter
//! (one Redis script per request) costs. Run with `make bench-api`, which brings up PostgreSQL and Redis and
//! installs wrk (Debian package `wrk`) if it is missing.
//!
//! The server runs in this process on PostgreSQL + Redis, as `ocrd serve` does.

mod support;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use ocrd::app::App;
use ocrd::config::Secret;
use ocrd::db::models::{ApiToken, NewApiToken, Role};
use ocrd::tasks::{Submission, TaskOptions};

const DURATION: &str = "10s";
const CONNECTIONS: &str = "32";

struct Figures {
    requests_per_sec: f64,
    p99_ms: f64,
}

fn wrk(url: &str, token: Option<&str>) -> Figures {
    let mut command = Command::new("wrk");
    command.args(["-t2", "-c", CONNECTIONS, "-d", DURATION, "--latency"]);
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let output = command
        .arg(url)
        .output()
        .expect("wrk is not installed (apt-get install wrk)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "wrk failed: {text}");
    assert!(!text.contains("Non-2xx"), "errors under load:\n{text}");
    let requests_per_sec = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in:\n{text}"));
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no 99% latency in:\n{text}"));
    Figures {
        requests_per_sec,
        p99_ms: milliseconds(p99),
    }
}

/// wrk prints latencies as `812.00us`, `3.41ms` or `1.02s`.
fn milliseconds(value: &str) -> f64 {
    let split = value
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        "m" => number * 60_000.0,
        _ => f64::NAN,
    }
}

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

        let user = ocrd::auth::create_user(
            &app,
            "bench@example.com",
            "a long enough passphrase",
            Some(Role::User),
        )
        .await
        .unwrap();
        let token = ocrd::auth::new_token();
        let mut conn = app.db.get().await.unwrap();
        ApiToken::create(
            &mut conn,
            NewApiToken {
                user_id: &user.id,
                name: "bench",
                prefix: "ocrd_bench",
                token_hash: &ocrd::auth::token_hash(&token),
                expires_at: None,
                scopes: "read,write",
            },
        )
        .await
        .unwrap();
        drop(conn);
        let page = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/eval/public/page_000.png"
        ))
        .unwrap();
        let submission = Submission {
            user_id: &user.id,
            filename: "page_000.png",
            engine: None,
            options: TaskOptions::default(),
            idempotency_key: None,
        };
        let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(page))]);
        let (task, _) = ocrd::tasks::submit(&app, submission, body).await.unwrap();

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
