//! What the benches share: starting (only under `cargo bench`), timing a query, a database of
//! their own on the PostgreSQL that `make test` and the bench targets bring up, and a
//! configuration with a private data directory.

// Each bench is a crate of its own and uses part of this.
#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use ocrd::config::{Config, Secret};

/// A fresh PostgreSQL database, dropped by [`BenchDb::drop`].
pub struct BenchDb {
    /// Unique per run: also a safe Redis key prefix.
    pub name: String,
    pub url: url::Url,
    admin: AsyncPgConnection,
}

impl BenchDb {
    pub async fn create() -> BenchDb {
        let admin_url = std::env::var("OCRDTEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("ocrd_bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = AsyncPgConnection::establish(&admin_url)
            .await
            .expect("PostgreSQL at OCRDTEST_DATABASE_URL (the make bench targets start one)");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&name);
        BenchDb { name, url, admin }
    }

    /// `config` (see [`config`]) on this database.
    pub fn config(&self, dir: &tempfile::TempDir) -> Config {
        let mut config = config(dir);
        config.database.url = Secret::new(self.url.to_string());
        config
    }

    pub async fn drop(mut self) {
        self.admin
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .unwrap();
    }
}

/// The embedded defaults, with their data in `dir`.
pub fn config(dir: &tempfile::TempDir) -> Config {
    Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    }
}

/// Runs `bench` on a multi-threaded runtime, under `cargo bench` only: `cargo test` builds
/// the benches and runs them without `--bench`.
pub fn main<Fut: Future<Output = ()>>(bench: impl FnOnce() -> Fut) {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench());
}

/// The size the environment variable `var` asks for, else `default`.
pub fn size(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs timed after 3 warm-up runs.
pub const RUNS: usize = 30;

/// A query's times over [`RUNS`] runs, and what its last run found.
pub struct Timed {
    pub name: String,
    pub p50: Duration,
    pub p95: Duration,
    pub found: usize,
}

/// Times `run` (which returns how many rows it found) [`RUNS`] times after 3 warm-up runs.
pub async fn time<F, Fut>(name: &str, mut run: F) -> Timed
where
    F: FnMut() -> Fut,
    Fut: Future<Output = usize>,
{
    for _ in 0..3 {
        run().await;
    }
    let mut times = Vec::with_capacity(RUNS);
    let mut found = 0;
    for _ in 0..RUNS {
        let started = Instant::now();
        found = run().await;
        times.push(started.elapsed());
    }
    times.sort();
    Timed {
        name: name.to_owned(),
        p50: times[RUNS / 2],
        p95: times[(RUNS * 95).div_ceil(100) - 1],
        found,
    }
}

/// wrk's run: its length and connections (on two threads).
pub const DURATION: &str = "10s";
pub const CONNECTIONS: &str = "32";

/// Requests per second and the 99th percentile of `url` (GET) under wrk, with a bearer token.
pub struct Figures {
    pub requests_per_sec: f64,
    pub p99_ms: f64,
}

pub fn wrk(url: &str, token: Option<&str>) -> Figures {
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

/// An account and an API token for it (read and write).
pub async fn user_with_token(app: &ocrd::app::App) -> (ocrd::db::models::User, String) {
    use ocrd::db::models::{ApiToken, NewApiToken, Role};
    let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
    let user = ocrd::auth::create_user(app, &email, "a long enough passphrase", Some(Role::User))
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
    (user, token)
}

/// A queued task of `user_id`'s, of the first sample page.
pub async fn one_task(app: &ocrd::app::App, user_id: &str) -> ocrd::db::models::Task {
    let page = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/eval/public/page_000.png"
    ))
    .unwrap();
    let submission = ocrd::tasks::Submission {
        user_id,
        filename: "page_000.png",
        engine: None,
        options: ocrd::tasks::TaskOptions::default(),
        idempotency_key: None,
    };
    let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(page))]);
    ocrd::tasks::submit(app, submission, body).await.unwrap().0
}
