//! The `ocrd` binary as a user runs it.

use std::process::{Command, Output};

use clap::CommandFactory;
use ocrd::cli::Cli;

use crate::support::TestDb;

#[test]
fn cli_definition_is_consistent() {
    Cli::command().debug_assert();
}

/// Runs `ocrd` in `dir` with only the given `OCRD_*` variables set.
fn ocrd(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ocrd"));
    cmd.current_dir(dir).args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("OCRD_") || key.starts_with("AWS_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("running ocrd")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn version_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let out = ocrd(dir.path(), &["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("ocrd {}", env!("CARGO_PKG_VERSION"))
    );
    let help = ocrd(dir.path(), &["--help"], &[]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("migrate"));
}

#[test]
fn migrate_on_embedded_defaults_needs_no_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let out = ocrd(dir.path(), &["migrate"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("data/ocrd.db").is_file());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("applied"), "{stdout}");
    let again = ocrd(dir.path(), &["migrate"], &[]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("up to date"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_against_a_postgres_url() {
    let (url, guard) = TestDb::postgres_empty().await;
    let dir = tempfile::tempdir().unwrap();
    let out = ocrd(dir.path(), &["migrate"], &[("OCRD_DATABASE__URL", &url)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("PostgreSQL"));
    // The tables are there: a query on them works.
    let mut conn = guard.pool.get().await.unwrap();
    assert_eq!(ocrd::db::models::User::count(&mut conn).await.unwrap(), 0);
    assert!(
        !dir.path().join("data").exists(),
        "no SQLite file when PostgreSQL is configured"
    );
}

#[test]
fn bad_configuration_exits_non_zero_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("OCRD_STORAGE__KIND", "ftp")], "storage.kind"),
        (&[("OCRD_STORAGE__KIND", "s3")], "storage.bucket"),
        (&[("OCRD_DATABASE__URL", "postgres://[::1")], "database.url"),
        (
            &[("OCRD_DATABASE__URL", "mysql://localhost/db")],
            "database.url",
        ),
        (&[("OCRD_REDIS__URL", "http://localhost")], "redis.url"),
        (
            &[("OCRD_DATABASE__POOL_SIZE", "many")],
            "database.pool_size",
        ),
        (
            &[
                ("OCRD_STORAGE__KIND", "s3"),
                ("OCRD_STORAGE__BUCKET", "b"),
                ("OCRD_STORAGE__ENDPOINT", "not a url"),
            ],
            "storage.endpoint",
        ),
    ];
    for (env, key) in cases {
        let out = ocrd(dir.path(), &["migrate"], env);
        let err = stderr(&out).to_lowercase();
        assert!(!out.status.success(), "{env:?} was accepted");
        assert!(
            err.contains(key),
            "{env:?}: the error does not name {key}: {err}"
        );
    }
    assert!(
        !dir.path().join("data").exists(),
        "nothing is created on bad configuration"
    );
}

#[test]
fn config_file_then_environment_and_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/ocrd.toml"),
        "data_dir = \"/srv/ocrd\"\n[database]\nurl = \"postgres://ocrd:hunter2@db:5432/ocrd\"\n[log]\nlevel = \"debug\"\n",
    )
    .unwrap();
    let asked = std::time::Instant::now();
    let out = ocrd(dir.path(), &["config"], &[("OCRD_LOG__LEVEL", "warn")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    // The stored runtime settings follow; a database that does not answer costs a note, not
    // a wait.
    assert!(
        shown.contains("# Runtime settings: the database could not be read"),
        "{shown}"
    );
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(8),
        "{:?}",
        asked.elapsed()
    );
    assert!(shown.contains("data_dir = \"/srv/ocrd\""), "{shown}");
    assert!(
        shown.contains("level = \"warn\""),
        "the environment must win: {shown}"
    );
    assert!(
        !shown.contains("hunter2"),
        "a password was printed: {shown}"
    );
    assert!(
        shown.contains("postgres://ocrd:REDACTED@db:5432/ocrd"),
        "{shown}"
    );

    // --config names another file; a missing one is an error.
    std::fs::write(
        dir.path().join("other.toml"),
        "[storage]\nkind = \"s3\"\nbucket = \"docs\"\n",
    )
    .unwrap();
    let out = ocrd(dir.path(), &["--config", "other.toml", "config"], &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("bucket = \"docs\""));
    let out = ocrd(dir.path(), &["config"], &[("OCRD_CONFIG", "other.toml")]);
    assert!(
        out.status.success(),
        "OCRD_CONFIG names the file: {}",
        stderr(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("bucket = \"docs\""));
    let out = ocrd(dir.path(), &["config", "--config", "nope.toml"], &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope.toml"));
}

/// `ocrd all-in-one` ends its start-up with one plain line a person can act on: the address
/// it really bound and, on a new install, how the first admin comes about. A `public_url` on
/// this machine with another port than the bound one gets a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_in_one_says_where_to_open_it_and_who_becomes_admin() {
    for public_url in [None, Some("http://127.0.0.1:1")] {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::install::free_port();
        let (stdout, stderr) = (dir.path().join("stdout.log"), dir.path().join("stderr.log"));
        let mut command = std::process::Command::new(crate::install::ocrd_bin());
        command
            .arg("all-in-one")
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("OCRD_DATA_DIR", dir.path().join("data"))
            .env("OCRD_OCR__MODELS_DIR", crate::install::models_dir())
            .env("OCRD_OCR__THREADS", "1")
            .env("OCRD_SERVER__BIND", format!("127.0.0.1:{port}"))
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap());
        if let Some(url) = public_url {
            command.env("OCRD_SERVER__PUBLIC_URL", url);
        }
        let _server = crate::edge::KillOnDrop(command.spawn().unwrap());
        let line = crate::install::wait_for(
            std::time::Duration::from_secs(120),
            "the ready line",
            || async {
                std::fs::read_to_string(&stdout)
                    .ok()
                    .filter(|s| s.contains("ocrd is ready"))
            },
        )
        .await;
        let log = std::fs::read_to_string(&stderr).unwrap();
        let warned =
            log.contains("server.public_url names another port than the one ocrd listens on");
        match public_url {
            None => {
                assert_eq!(
                    line.trim(),
                    format!(
                        "ocrd is ready: open http://127.0.0.1:{port} — the first account you register becomes the admin"
                    )
                );
                assert!(!warned, "{log}");
            }
            Some(_) => assert!(warned, "{log}"),
        }
        // actix's own start-up lines are not for users.
        assert!(!log.contains("actix_server"), "{log}");
    }
}
