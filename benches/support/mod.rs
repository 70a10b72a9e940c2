//! What the benches share: starting (only under `cargo bench`), timing a query, a database of
//! their own on the PostgreSQL that `make test` and the bench targets bring up, and a
//! configuration with a private data directory.

// Each bench is a crate of its own and uses part of this.
#![allow(dead_code)]

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
