//! `ocrd backup create | verify | restore`, through the command: an install with accounts,
//! tokens, and tasks in every state with results is backed up, wiped and restored, on the
//! embedded defaults (SQLite, local blobs) and on PostgreSQL with S3. Every API read answers
//! the same afterwards, every result downloads byte-identical, and logins and tokens work.
//! `OCRDTEST_BACKUP_TASKS` sets how many completed tasks are added in bulk (default 50; the
//! figures in the README come from 1000).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use ocrd::blobs::BlobKey;
use ocrd::db::models::{BlobKeys, NewTaskResult, Task, TaskStatus};
use serde_json::{Value, json};

use crate::install::{Install, serve_app};
use crate::support::{PASSWORD, create_token, get_json, register_and_sign_in, unique};

/// An account of the populated install: how it signs in, and its API token.
struct Account {
    email: String,
    token: String,
}

fn bulk_tasks() -> usize {
    std::env::var("OCRDTEST_BACKUP_TASKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50)
}

/// The comparison reads every task and result at once: no API rate limit.
fn unlimited(config: &mut ocrd::config::Config) {
    config.rate_limits.api_per_second = 0;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_local_blobs_survive_backup_wipe_and_restore() {
    let install = Install::embedded(unlimited).await;
    let database = install
        .db
        .url
        .strip_prefix("sqlite://")
        .map(PathBuf::from)
        .unwrap();
    let blobs = install.config.local_blob_dir();
    round_trip(&install, "blobs/results/", async || {
        for path in [
            &database,
            &with_suffix(&database, "-wal"),
            &with_suffix(&database, "-shm"),
        ] {
            let _ = std::fs::remove_file(path);
        }
        std::fs::remove_dir_all(&blobs).unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_s3_survive_backup_wipe_and_restore() {
    let install = Install::distributed(unlimited).await;
    let name = install.db.url.rsplit('/').next().unwrap().to_owned();
    round_trip(&install, "database/", async || {
        // The database is lost; the bucket (versioned in production) keeps the blobs.
        let mut admin = crate::support::admin_connection().await;
        use diesel_async::SimpleAsyncConnection;
        for statement in [
            format!("DROP DATABASE {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin.batch_execute(&statement).await.unwrap();
        }
    })
    .await;
}

/// Populates `install`, backs it up with the command, checks the refusals and the damage
/// checks, wipes it with `wipe`, restores it and compares. `damage` is the prefix of the
/// archive member whose byte gets flipped.
async fn round_trip(install: &Install, damage: &str, wipe: impl AsyncFnOnce()) {
    let base = format!("http://{}", install.serve());
    let accounts = populate(install, &base).await;
    let before = api_reads(&base, &accounts).await;

    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = ocrd(
        install,
        &[
            "backup",
            "create",
            "--output",
            &dir.path().display().to_string(),
        ],
    );
    let created_in = started.elapsed();
    let said = succeeded(&out, "backup create");
    let archive = PathBuf::from(said.split(": ").next().unwrap());
    let archive_arg = archive.display().to_string();
    assert!(archive.is_file(), "{said}");
    let size = std::fs::metadata(&archive).unwrap().len();

    // The metric operators alert on moved to now.
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let last: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ocrd_backup_last_success_timestamp_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no backup timestamp in\n{metrics}"));
    let now = chrono::Utc::now().timestamp() as f64;
    assert!((now - 600.0..=now + 1.0).contains(&last), "{last} vs {now}");

    let verified = succeeded(
        &ocrd(install, &["backup", "verify", &archive_arg]),
        "verify",
    );
    assert!(verified.contains("intact"), "{verified}");

    // Into an install that holds data: refused, and nothing changes.
    let refused = failed(
        &ocrd(install, &["backup", "restore", &archive_arg]),
        "restore into a full install",
    );
    assert!(refused.contains("already holds"), "{refused}");
    assert_eq!(api_reads(&base, &accounts).await, before);

    // One flipped byte: verify names the member, and restore refuses before touching anything.
    let (damaged, member) = flip_one_byte(&archive, damage, dir.path());
    let damaged = damaged.display().to_string();
    let said = failed(
        &ocrd(install, &["backup", "verify", &damaged]),
        "verify of a damaged archive",
    );
    assert!(
        said.contains(&member) && said.contains("corrupt"),
        "{member}: {said}"
    );
    let said = failed(
        &ocrd(install, &["backup", "restore", "--force", &damaged]),
        "restore of a damaged archive",
    );
    assert!(said.contains(&member), "{member}: {said}");

    // An archive from a newer schema (a later ocrd) is refused, forced or not.
    let newer = rewritten(
        &archive,
        dir.path(),
        "newer.tar",
        |m| m["schema_version"] = json!("99991231000000"),
        &[],
    );
    let said = failed(
        &ocrd(
            install,
            &["backup", "restore", "--force", &newer.display().to_string()],
        ),
        "restore of a newer schema",
    );
    assert!(said.contains("newer than this ocrd"), "{said}");

    // Not an archive at all, one cut short, one with a file its manifest does not list, and
    // one that is not there: verify and restore (forced) refuse each, naming the file and
    // what is wrong, and the install stays as it was.
    let bytes = std::fs::read(&archive).unwrap();
    let foreign = dir.path().join("foreign.tar");
    std::fs::write(&foreign, crate::support::tiny_png()).unwrap();
    let truncated = dir.path().join("truncated.tar");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let extra = rewritten(
        &archive,
        dir.path(),
        "extra.tar",
        |_| {},
        &[("payload.sh", b"#!/bin/sh\nrm -rf /\n")],
    );
    let missing = dir.path().join("missing.tar");
    for (bad, reason) in [
        (&foreign, ""),
        (&truncated, ""),
        (&extra, "payload.sh: not listed in the manifest"),
        (&missing, "No such file"),
    ] {
        let bad = bad.display().to_string();
        for args in [
            vec!["backup", "verify", &bad],
            vec!["backup", "restore", "--force", &bad],
        ] {
            let said = failed(&ocrd(install, &args), &args.join(" "));
            assert!(
                said.contains(&bad) && said.contains(reason) && !said.contains("panicked"),
                "{}: {said}",
                args.join(" ")
            );
        }
    }
    assert_eq!(api_reads(&base, &accounts).await, before);

    wipe().await;
    if install.config.storage.kind == ocrd::config::StorageKind::S3 {
        bucket_must_hold_every_blob(install, &archive).await;
    }
    let started = Instant::now();
    let said = succeeded(
        &ocrd(install, &["backup", "restore", &archive_arg]),
        "restore",
    );
    let restored_in = started.elapsed();
    eprintln!(
        "backup of {} ({} tasks): created in {:.2} s ({size} bytes), restored in {:.2} s: {said}",
        install.app.db.backend(),
        bulk_tasks() + 5,
        created_in.as_secs_f64(),
        restored_in.as_secs_f64(),
    );

    // A fresh server on the restored install answers as the old one did.
    let restored = ocrd::app::App::build(install.config.clone()).await.unwrap();
    let base = format!("http://{}", serve_app(restored));
    let after = api_reads(&base, &accounts).await;
    assert_eq!(before.len(), after.len());
    for (read, answer) in &before {
        assert!(
            after.get(read) == Some(answer),
            "{read} answers differently after the restore"
        );
    }
    for account in &accounts {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let login = client
            .post(format!("{base}/api/auth/login"))
            .json(&json!({"email": account.email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 200, "{} cannot sign in", account.email);
        let me = get_json(&client, &format!("{base}/api/auth/me")).await;
        assert_eq!(me["user"]["email"], json!(account.email));
    }
}

/// Two accounts with a token each; for the first, tasks in every state: completed by the real
/// engine, failed, cancelled, processing, queued, and [`bulk_tasks`] completed ones with
/// small results.
async fn populate(install: &Install, base: &str) -> Vec<Account> {
    let mut accounts = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let email = format!("{}@example.com", unique("backup"));
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let csrf = register_and_sign_in(base, &client, &email).await;
        let token = create_token(base, &client, &csrf, "backup test").await;
        let me = get_json(&client, &format!("{base}/api/auth/me")).await;
        ids.push(me["user"]["id"].as_str().unwrap().to_owned());
        accounts.push(Account { email, token });
    }
    let owner = &ids[0];

    // Completed by the real engine, on two sample pages.
    let pages = crate::install::sample_pages();
    let mut done = Vec::new();
    for (path, _) in pages.iter().take(2) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        done.push(
            install
                .submit_bytes_as(owner, &name, std::fs::read(path).unwrap())
                .await
                .id,
        );
    }
    {
        let _turn = crate::worker::one_at_a_time().await;
        let tasks = crate::all_in_one::run_worker_until_finished(
            install,
            crate::ocr::engine(),
            &done,
            Duration::from_secs(600),
        )
        .await;
        assert!(
            tasks.iter().all(|t| t.status == TaskStatus::Completed),
            "{tasks:?}"
        );
    }

    let png = crate::support::tiny_png();
    let worker = "backup-test";
    let lease = Duration::from_secs(3600);
    let submit = async |name: &str| install.submit_bytes_as(owner, name, png.clone()).await;
    let failed = submit("failed.png").await;
    let cancelled = submit("cancelled.png").await;
    let processing = submit("processing.png").await;
    submit("queued.png").await;
    let mut conn = install.app.db.get().await.unwrap();
    Task::claim(&mut conn, &failed.id, worker, lease)
        .await
        .unwrap()
        .unwrap();
    Task::fail(
        &mut conn,
        &failed.id,
        worker,
        "ocr_failed",
        "The page could not be read.",
    )
    .await
    .unwrap()
    .unwrap();
    Task::cancel(&mut conn, &cancelled.id)
        .await
        .unwrap()
        .unwrap();
    Task::claim(&mut conn, &processing.id, worker, lease)
        .await
        .unwrap()
        .unwrap();
    drop(conn);

    for i in 0..bulk_tasks() {
        let task = submit(&format!("bulk-{i}.png")).await;
        let mut keys = BlobKeys::default();
        for (ext, body) in [
            ("txt", format!("page {i}\n")),
            ("json", format!("{{\"page\":{i}}}")),
            ("html", format!("<p>page {i}</p>")),
        ] {
            let key = BlobKey::result(&task.user_id, task.created_at, &task.id, ext);
            install
                .app
                .blobs
                .put_bytes(&key, Bytes::from(body))
                .await
                .unwrap();
            keys.0.insert(ext.to_owned(), key.to_string());
        }
        let result = NewTaskResult {
            user_id: task.user_id.clone(),
            blob_keys: keys,
            page_count: 1,
            mean_confidence: Some(0.9),
            text: format!("page {i}\n"),
            text_layer_pages: 0,
        };
        let id = task.id.clone();
        install
            .app
            .db
            .run(move |c| {
                async move {
                    Task::claim(c, &id, worker, lease).await?;
                    Task::complete(c, &id, worker, result, &[]).await
                }
                .boxed()
            })
            .await
            .unwrap()
            .unwrap();
    }
    accounts
}

/// Every read the accounts' tokens can make: who they are, their tokens, every page of their
/// task list, every task, and every result in every format it has. Token use times are left
/// out (reading with a token updates them).
async fn api_reads(base: &str, accounts: &[Account]) -> BTreeMap<String, Vec<u8>> {
    let client = reqwest::Client::new();
    let mut reads = BTreeMap::new();
    for (n, account) in accounts.iter().enumerate() {
        let get = async |path: &str| {
            let response = client
                .get(format!("{base}{path}"))
                .bearer_auth(&account.token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "GET {path}");
            response.bytes().await.unwrap().to_vec()
        };
        let json = |bytes: &[u8]| {
            let mut value: Value = serde_json::from_slice(bytes).unwrap();
            forget_use_times(&mut value);
            serde_json::to_vec(&value).unwrap()
        };
        reads.insert(format!("{n}: me"), json(&get("/api/auth/me").await));
        reads.insert(format!("{n}: tokens"), json(&get("/api/tokens").await));
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                None => "/api/tasks?limit=100".to_owned(),
                Some(c) => format!("/api/tasks?limit=100&cursor={c}"),
            };
            let page = get(&path).await;
            let list: Value = serde_json::from_slice(&page).unwrap();
            reads.insert(format!("{n}: {path}"), page);
            for task in list["tasks"].as_array().unwrap() {
                let id = task["id"].as_str().unwrap();
                let one = get(&format!("/api/tasks/{id}")).await;
                if task["status"] == "completed" {
                    for format in ["txt", "json", "hocr"] {
                        let path = format!("/api/tasks/{id}/result?format={format}");
                        reads.insert(format!("{n}: {path}"), get(&path).await);
                    }
                }
                reads.insert(format!("{n}: /api/tasks/{id}"), one);
            }
            match list["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
    }
    reads
}

fn forget_use_times(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("last_used_at");
            map.values_mut().for_each(forget_use_times);
        }
        Value::Array(items) => items.iter_mut().for_each(forget_use_times),
        _ => {}
    }
}

/// An S3 archive lists the blobs: restore refuses while one is missing from the bucket, and
/// goes ahead once it is back.
async fn bucket_must_hold_every_blob(install: &Install, archive: &Path) {
    let manifest = ocrd::backup::verify(archive).unwrap();
    let key = BlobKey::parse(&manifest.blobs[0].name).unwrap();
    let body = install.app.blobs.get_bytes(&key).await.unwrap();
    install.app.blobs.delete(&key).await.unwrap();
    let said = failed(
        &ocrd(
            install,
            &["backup", "restore", &archive.display().to_string()],
        ),
        "restore with a blob missing",
    );
    assert!(said.contains("The bucket lacks 1 of"), "{said}");
    install.app.blobs.put_bytes(&key, body).await.unwrap();
}

/// Runs `ocrd` with the install's configuration.
fn ocrd(install: &Install, args: &[&str]) -> Output {
    install
        .ocrd_command()
        .args(args)
        .output()
        .expect("running ocrd")
}

fn succeeded(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success(),
        "{what} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn failed(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "{what} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// A copy of `archive` with one byte flipped in the middle of the first member named
/// `prefix…`; the copy and the member's name.
fn flip_one_byte(archive: &Path, prefix: &str, dir: &Path) -> (PathBuf, String) {
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    let (name, offset) = tar
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find_map(|e| {
            let name = e.path().unwrap().to_string_lossy().into_owned();
            (name.starts_with(prefix) && e.size() > 0)
                .then(|| (name, e.raw_file_position() + e.size() / 2))
        })
        .unwrap_or_else(|| panic!("no member {prefix}… in the archive"));
    let copy = dir.join("damaged.tar");
    std::fs::copy(archive, &copy).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&copy)
        .unwrap();
    let mut byte = [0u8];
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.read_exact(&mut byte).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(&[byte[0] ^ 0x5a]).unwrap();
    (copy, name)
}

/// A copy of `archive` named `name` in `dir`, its manifest changed by `edit` and `extra`
/// members appended.
fn rewritten(
    archive: &Path,
    dir: &Path,
    name: &str,
    edit: impl Fn(&mut Value),
    extra: &[(&str, &[u8])],
) -> PathBuf {
    let copy = dir.join(name);
    let mut out = tar::Builder::new(std::fs::File::create(&copy).unwrap());
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().into_owned();
        let mut body = Vec::new();
        entry.read_to_end(&mut body).unwrap();
        if name == Path::new("manifest.json") {
            let mut manifest: Value = serde_json::from_slice(&body).unwrap();
            edit(&mut manifest);
            body = serde_json::to_vec(&manifest).unwrap();
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o600);
        out.append_data(&mut header, &name, body.as_slice())
            .unwrap();
    }
    for (name, body) in extra {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o600);
        out.append_data(&mut header, name, *body).unwrap();
    }
    out.finish().unwrap();
    copy
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
