//! PostgreSQL read replicas on real processes: a private primary started from the system's
//! binaries, a streaming replica made from it with `pg_basebackup`, and `serve` reading its
//! lists from the replica until it lags or stops, when reads go to the primary and nothing
//! fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ocrd::config::Secret;
use ocrd::db::models::Role;
use serde_json::Value;

use crate::admin::{Caller, served};
use crate::install::{Install, free_port, sample_pages, wait_for};
use crate::support::metric;

/// A PostgreSQL cluster of its own, in a temporary directory, stopped when dropped.
struct PrivatePostgres {
    bin: PathBuf,
    /// Holds the data directory; removed on drop.
    _dir: tempfile::TempDir,
    data: PathBuf,
    port: u16,
}

/// The directory of the system's PostgreSQL server binaries.
fn postgres_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists() && bin.join("pg_basebackup").exists())
        .collect();
    found.sort();
    found.pop().expect(
        "the replica test needs PostgreSQL's server binaries (initdb, pg_ctl, pg_basebackup) \
         under /usr/lib/postgresql/*/bin: apt-get install -y postgresql",
    )
}

/// `command` as the `postgres` system user when running as root (PostgreSQL refuses root).
fn as_owner(bin: &Path, program: &str) -> Command {
    let path = bin.join(program);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    }
}

fn run(mut command: Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PrivatePostgres {
    fn new_dir() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["postgres:postgres"]).arg(dir.path());
                    c
                },
                "chown",
            );
        }
        let data = dir.path().join("data");
        (dir, data)
    }

    /// A primary that streams to replicas, listening on a free loopback port.
    fn primary() -> PrivatePostgres {
        let bin = postgres_bin();
        let (dir, data) = Self::new_dir();
        let mut initdb = as_owner(&bin, "initdb");
        initdb
            .args(["-U", "postgres", "--auth=trust", "-D"])
            .arg(&data);
        run(initdb, "initdb");
        let primary = PrivatePostgres {
            bin,
            _dir: dir,
            data,
            port: free_port(),
        };
        primary.start();
        primary
    }

    /// A hot standby of `primary`, streaming from it, on a port of its own.
    fn replica_of(primary: &PrivatePostgres) -> PrivatePostgres {
        let (dir, data) = Self::new_dir();
        let mut backup = as_owner(&primary.bin, "pg_basebackup");
        backup
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-X",
                "stream",
                "-R",
                // A fast checkpoint: the default, spread one takes minutes to begin the copy.
                "--checkpoint=fast",
                "-p",
            ])
            .arg(primary.port.to_string())
            .arg("-D")
            .arg(&data);
        run(backup, "pg_basebackup");
        let replica = PrivatePostgres {
            bin: primary.bin.clone(),
            _dir: dir,
            data,
            port: free_port(),
        };
        replica.start();
        replica
    }

    fn start(&self) {
        let socket_dir = self.data.parent().unwrap();
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c wal_level=replica -c max_wal_senders=4 -c hot_standby=on -c fsync=off",
            self.port,
            socket_dir.display()
        );
        let mut start = as_owner(&self.bin, "pg_ctl");
        start
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.data.parent().unwrap().join("log"))
            .args(["-w", "-t", "60", "-o", &options, "start"]);
        run(start, "pg_ctl start");
    }

    fn stop(&self, mode: &str) {
        let mut stop = as_owner(&self.bin, "pg_ctl");
        stop.arg("-D")
            .arg(&self.data)
            .args(["-m", mode, "-w", "stop"]);
        let _ = stop.output();
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    fn psql(&self, db: &str, sql: &str) -> String {
        let psql = postgres_bin().join("psql");
        let psql = if psql.exists() {
            psql
        } else {
            PathBuf::from("psql")
        };
        let out = Command::new(psql)
            .args(["-X", "-A", "-t", "-d", &self.url(db), "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop("immediate");
    }
}

/// `ocrd_db_reads_total{target="…"}` on the server's `/metrics`.
async fn reads(base: &str, target: &str) -> f64 {
    metric(base, &format!("ocrd_db_reads_total{{target=\"{target}\"}}")).await
}

async fn listed(user: &Caller, base: &str) -> Vec<String> {
    let response = user.get(format!("{base}/api/tasks?limit=100")).await;
    assert_eq!(response.status(), 200, "a list read failed");
    let list: Value = response.json().await.unwrap();
    list["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_read_from_a_streaming_replica_and_fall_back_when_it_lags_or_stops() {
    let primary = PrivatePostgres::primary();
    primary.psql("postgres", "CREATE DATABASE ocrd");
    let replica = PrivatePostgres::replica_of(&primary);
    assert_eq!(replica.psql("postgres", "SELECT pg_is_in_recovery()"), "t");
    let install = Install::distributed(|c| {
        c.database.url = Secret::new(primary.url("ocrd"));
        c.database.read_urls = vec![Secret::new(replica.url("ocrd"))];
        c.database.max_replica_lag_secs = 1;
    })
    .await;
    let base = served(&install).await;
    let user = Caller::new(&install, &base, Role::User).await;
    let page = std::fs::read(&sample_pages()[0].0).unwrap();

    // Healthy: the list comes from the replica (once it has replayed the upload), and its
    // connections are there.
    let first = install
        .submit_bytes_as(&user.id, "first.png", page.clone())
        .await
        .id;
    wait_for(
        Duration::from_secs(60),
        "the replica to serve the list",
        || async {
            let from_replica = reads(&base, "replica").await;
            let ids = listed(&user, &base).await;
            (ids.contains(&first) && reads(&base, "replica").await > from_replica).then_some(())
        },
    )
    .await;
    let connected = replica.psql(
        "postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'ocrd' AND backend_type = 'client backend'",
    );
    assert!(connected.parse::<u32>().unwrap() > 0, "{connected}");

    // Lagging: replay paused, a new upload is listed at once, from the primary.
    replica.psql("postgres", "SELECT pg_wal_replay_pause()");
    let second = install
        .submit_bytes_as(&user.id, "second.png", page.clone())
        .await
        .id;
    let from_primary = reads(&base, "primary").await;
    wait_for(
        Duration::from_secs(60),
        "the primary to serve the list",
        || async { listed(&user, &base).await.contains(&second).then_some(()) },
    )
    .await;
    assert!(reads(&base, "primary").await > from_primary);
    replica.psql("postgres", "SELECT pg_wal_replay_resume()");
    wait_for(
        Duration::from_secs(60),
        "the replica to be used again",
        || async {
            let before = reads(&base, "replica").await;
            listed(&user, &base).await;
            (reads(&base, "replica").await > before).then_some(())
        },
    )
    .await;

    // Stopped: every read still answers, from the primary.
    replica.stop("fast");
    for _ in 0..20 {
        let ids = listed(&user, &base).await;
        assert!(ids.contains(&first) && ids.contains(&second), "{ids:?}");
    }
    let before = reads(&base, "primary").await;
    listed(&user, &base).await;
    assert!(reads(&base, "primary").await > before);
}
