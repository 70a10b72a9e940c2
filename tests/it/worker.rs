//! The task pipeline end to end: real `ocrd work` processes on real PostgreSQL, Redis and moto
//! S3 (and all-in-one's embedded parts), through crashes, outages and bad input.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ocrd::blobs::BlobKey;
use ocrd::db::models::{NewFile, Task, TaskStatus, new_id, now};
use ocrd::eval::cer;
use ocrd::tasks::TaskOptions;

use crate::install::{Install, Outage, PrivateRedis, sample_pages, wait_for};

/// Tests that run OCR worker processes take turns: on two cores, two of them at once would
/// only measure contention.
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// The CER bound the engine meets on the sample pages (tests/it/ocr.rs): mean ≤ 1 %.
fn assert_text_matches(texts: &[(String, String)]) {
    let cers: Vec<f64> = texts.iter().map(|(got, truth)| cer(got, truth)).collect();
    let mean = cers.iter().sum::<f64>() / cers.len() as f64;
    let worst = cers.iter().cloned().fold(0.0, f64::max);
    println!(
        "CER over {} results: mean {mean:.4}, worst {worst:.4}",
        cers.len()
    );
    assert!(mean <= 0.01, "mean CER {mean:.4}");
    assert!(worst <= 0.03, "worst CER {worst:.4}");
}

/// Every result object is encrypted with the install's KMS key, as S3 reports it.
async fn assert_sse_kms(install: &Install, keys: &[String]) {
    for key in keys {
        let key = BlobKey::parse(key).unwrap();
        let (sse, kms_key) = crate::blobs::sse_headers(&install.app.blobs, &key).await;
        assert_eq!(sse, "aws:kms", "{key}");
        assert_eq!(Some(kms_key), install.config.storage.kms_key_id, "{key}");
    }
}

/// Submits `n` tasks cycling through the sample pages; returns (task id, ground truth).
async fn submit_pages(install: &Install, n: usize) -> Vec<(String, String)> {
    let pages = sample_pages();
    let mut out = Vec::new();
    for i in 0..n {
        let (path, truth) = &pages[i % pages.len()];
        out.push((install.submit_file(path).await.id, truth.clone()));
    }
    out
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_tasks_two_workers_each_completed_once_encrypted_and_accurate() {
    let _turn = one_at_a_time().await;
    let install = Install::distributed(|_| {}).await;
    let submitted = submit_pages(&install, 50).await;
    let ids: Vec<String> = submitted.iter().map(|(id, _)| id.clone()).collect();
    let a = install.spawn_worker("a", &[]);
    let b = install.spawn_worker("b", &[]);
    let started = Instant::now();

    let tasks = install.wait_finished(&ids, Duration::from_secs(900)).await;
    let secs = started.elapsed().as_secs_f64();
    println!("50 tasks in {secs:.1} s: {:.2} tasks/s", 50.0 / secs);
    for task in &tasks {
        assert_eq!(task.status, TaskStatus::Completed, "{task:?}");
        assert_eq!((task.pages_done, task.pages_total), (1, Some(1)));
        assert!(task.lease_owner.is_none());
    }
    let rows = install.result_rows_per_task().await;
    assert_eq!(rows.len(), 50);
    assert!(
        rows.values().all(|&n| n == 1),
        "one result row per task: {rows:?}"
    );

    let mut result_keys = Vec::new();
    let mut texts = Vec::new();
    for (id, truth) in &submitted {
        let result = install.result(id).await;
        let formats: Vec<&String> = result.blob_keys.0.keys().collect();
        assert_eq!(formats, ["html", "json", "thumb.jpg", "txt"]);
        result_keys.extend(result.blob_keys.0.values().cloned());
        texts.push((install.result_text(id).await, truth.clone()));
    }
    // Three formats and the first page's thumbnail per task.
    assert_eq!(install.app.blobs.list("results/").await.unwrap().len(), 200);
    install.assert_no_orphans().await;
    assert_sse_kms(&install, &result_keys).await;
    assert_text_matches(&texts);

    // Both workers took part, and their metrics add up to the whole run.
    let mut completed = 0.0;
    for worker in [&a, &b] {
        let (status, text) = worker.health("/metrics").await;
        assert_eq!(status, 200);
        let done = metric(&text, "ocrd_tasks_completed_total");
        println!("{}: {done} tasks", worker.name);
        assert!(done > 0.0, "{} did no work", worker.name);
        assert!(metric(&text, "ocrd_page_duration_seconds_count") >= done);
        completed += done;
    }
    assert_eq!(completed, 50.0);
    let (status, ready) = a.health("/readyz").await;
    assert_eq!((status, ready.contains("ready")), (200, true), "{ready}");
    install.assert_temp_empty_soon().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_task_ten_times_loses_nothing() {
    let _turn = one_at_a_time().await;
    let install = Install::distributed(|_| {}).await;
    let mut ids: Vec<String> = submit_pages(&install, 6)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let _steady = install.spawn_worker("steady", &[]);
    let mut victim = install.spawn_worker("victim-0", &[]);
    let mut killed: Vec<(String, Instant)> = Vec::new();

    while killed.len() < 10 {
        // Keep work waiting so the victim always gets some.
        let queued = install
            .tasks(&ids)
            .await
            .iter()
            .filter(|t| t.status == TaskStatus::Queued)
            .count();
        if queued < 3 {
            ids.extend(
                submit_pages(&install, 3)
                    .await
                    .into_iter()
                    .map(|(id, _)| id),
            );
        }
        let pid = victim.pid().to_string();
        let owner = |t: &Task| {
            t.status == TaskStatus::Processing
                && t.lease_owner
                    .as_deref()
                    .is_some_and(|o| o.contains(&format!("-{pid}-")))
        };
        let held = wait_for(
            Duration::from_secs(300),
            "the victim to hold a task",
            || {
                let ids = ids.clone();
                let install = &install;
                async move {
                    let tasks = install.tasks(&ids).await;
                    tasks.into_iter().find(owner).map(|t| t.id)
                }
            },
        )
        .await;
        victim.kill();
        killed.push((held, Instant::now()));
        victim = install.spawn_worker(&format!("victim-{}", killed.len()), &[]);
    }

    let tasks = install.wait_finished(&ids, Duration::from_secs(900)).await;
    assert!(
        tasks.iter().all(|t| t.status == TaskStatus::Completed),
        "{tasks:?}"
    );
    let rows = install.result_rows_per_task().await;
    assert_eq!(rows.len(), ids.len());
    assert!(rows.values().all(|&n| n == 1));
    install.assert_no_orphans().await;

    // Recovery: from the kill to the killed task's completion elsewhere.
    let mut recovery: Vec<f64> = Vec::new();
    for (id, at) in &killed {
        let task = install.task(id).await;
        assert!(task.attempts >= 2, "{id} was taken over: {task:?}");
        let finished = task.finished_at.unwrap();
        let waited = (now() - finished).to_std().unwrap_or_default();
        recovery.push(at.elapsed().saturating_sub(waited).as_secs_f64());
    }
    recovery.sort_by(f64::total_cmp);
    println!(
        "{} kills over {} tasks; recovery (kill → completed elsewhere): median {:.1} s, max {:.1} s, lease 3 s",
        killed.len(),
        ids.len(),
        recovery[recovery.len() / 2],
        recovery[recovery.len() - 1]
    );
    drop(victim);
    install.assert_temp_empty_soon().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_while_tasks_are_queued_loses_nothing() {
    let _turn = one_at_a_time().await;
    let mut redis = PrivateRedis::start().await;
    let url = redis.url();
    let install = Install::distributed(|c| c.redis.url = ocrd::config::Secret::new(url)).await;
    let submitted = submit_pages(&install, 8).await;
    let ids: Vec<String> = submitted.iter().map(|(id, _)| id.clone()).collect();
    let worker = install.spawn_worker("w", &[]);

    // Once work is under way, Redis dies and comes back empty.
    wait_for(
        Duration::from_secs(300),
        "a first completed task",
        || async {
            let tasks = install.tasks(&ids).await;
            tasks
                .iter()
                .any(|t| t.status == TaskStatus::Completed)
                .then_some(())
        },
    )
    .await;
    redis.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.restart().await;

    let tasks = install.wait_finished(&ids, Duration::from_secs(600)).await;
    assert!(
        tasks.iter().all(|t| t.status == TaskStatus::Completed),
        "{tasks:?}"
    );
    assert!(
        install
            .result_rows_per_task()
            .await
            .values()
            .all(|&n| n == 1)
    );
    let log = worker.log_text();
    let outages = log.matches("queue unavailable; waiting").count();
    assert_eq!(outages, 1, "one line per outage, not per attempt:\n{log}");
    assert!(log.contains("queue is back"), "{log}");
    install.assert_temp_empty_soon().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_outage_is_retried_then_fails_cleanly_when_too_long() {
    let _turn = one_at_a_time().await;
    let s3 = crate::support::s3_server();
    let outage = Outage::proxy(&s3.endpoint).await;
    // Retries wait 0.2, 0.4, 0.8, 1.6, then 2 s (each with up to half off for jitter): a few
    // seconds of budget.
    let install = Install::distributed(|c| c.worker.max_attempts = 8).await;
    let worker = install.spawn_worker("w", &[("OCRD_STORAGE__ENDPOINT", &outage.endpoint())]);
    let first = submit_pages(&install, 1).await;
    install
        .wait_finished(&[first[0].0.clone()], Duration::from_secs(300))
        .await;

    // Storage goes away while tasks arrive (they reach storage directly, the worker through
    // the cut-off path): the worker retries, and completes them once storage is back.
    outage.start();
    let during = submit_pages(&install, 3).await;
    let ids: Vec<String> = during.iter().map(|(id, _)| id.clone()).collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    outage.end();
    let tasks = install.wait_finished(&ids, Duration::from_secs(300)).await;
    assert!(
        tasks.iter().all(|t| t.status == TaskStatus::Completed),
        "{tasks:?}"
    );
    let (_, metrics) = worker.health("/metrics").await;
    assert!(
        metric(&metrics, "ocrd_task_retries_total") >= 1.0,
        "{metrics}"
    );
    assert!(
        worker.log_text().contains("storage_unavailable"),
        "the retries are logged with their cause"
    );

    // An outage longer than the retry budget: the tasks fail with a clear code, none is left
    // processing.
    outage.start();
    let second = submit_pages(&install, 2).await;
    let ids: Vec<String> = second.iter().map(|(id, _)| id.clone()).collect();
    let tasks = install.wait_finished(&ids, Duration::from_secs(300)).await;
    for task in &tasks {
        assert_eq!(task.status, TaskStatus::Failed);
        assert_eq!(
            task.error_code.as_deref(),
            Some("storage_unavailable"),
            "{task:?}"
        );
        assert!(task.error_message.as_deref().is_some_and(|m| !m.is_empty()));
    }
    let (_, metrics) = worker.health("/metrics").await;
    assert!(
        metrics.contains("ocrd_tasks_failed_total{code=\"storage_unavailable\"} 2"),
        "{metrics}"
    );
    outage.end();
    install.assert_temp_empty_soon().await;
}

/// Stores a file the way an older client or a direct upload might have, past the API's checks,
/// and queues it: the worker is the last line of defence.
pub async fn enqueue_raw(install: &Install, name: &str, body: Vec<u8>) -> String {
    let file_id = new_id();
    let at = now();
    let key = BlobKey::upload(&install.user.id, at, &file_id, name);
    let stored = install
        .app
        .blobs
        .put_bytes(&key, body.into())
        .await
        .unwrap();
    let file = NewFile {
        id: file_id,
        user_id: install.user.id.clone(),
        blob_key: key.to_string(),
        filename: name.into(),
        content_type: "application/octet-stream".into(),
        size_bytes: stored.size as i64,
        sha256: stored.sha256,
        page_count: None,
        created_at: at,
    };
    let engine = install.config.ocr.engine;
    let (task, _) =
        ocrd::tasks::enqueue(&install.app, &file, engine, &TaskOptions::default(), None)
            .await
            .unwrap();
    task.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_fail_with_their_code_and_the_worker_stays_up() {
    let _turn = one_at_a_time().await;
    let install = Install::distributed(|_| {}).await;
    let mut worker = install.spawn_worker("w", &[]);
    let pid = worker.pid();

    let good = std::fs::read(&sample_pages()[0].0).unwrap();
    let truncated = install
        .submit_bytes("truncated.png", good[..good.len() / 3].to_vec())
        .await;
    let bomb = install
        .submit_bytes("bomb.png", crate::support::png_bomb(30_000, 30_000))
        .await;
    let empty = enqueue_raw(&install, "empty.png", Vec::new()).await;
    let text = enqueue_raw(
        &install,
        "notes.png",
        b"just some text, not an image".to_vec(),
    )
    .await;
    let fine = install.submit_bytes("fine.png", good).await;

    let expected: HashMap<String, &str> = HashMap::from([
        (truncated.id.clone(), "undecodable"),
        (bomb.id.clone(), "too_many_pixels"),
        (empty.clone(), "empty_file"),
        (text.clone(), "unsupported_type"),
    ]);
    let mut ids: Vec<String> = expected.keys().cloned().collect();
    ids.push(fine.id.clone());
    let tasks = install.wait_finished(&ids, Duration::from_secs(300)).await;
    for task in tasks {
        match expected.get(&task.id) {
            Some(code) => {
                assert_eq!(task.status, TaskStatus::Failed, "{task:?}");
                assert_eq!(task.error_code.as_deref(), Some(*code), "{task:?}");
                assert_eq!(task.attempts, 1, "permanent failures are not retried");
            }
            None => assert_eq!(task.status, TaskStatus::Completed, "{task:?}"),
        }
    }
    assert!(worker.is_running(), "the worker is still up");
    assert_eq!(worker.pid(), pid);
    let (_, metrics) = worker.health("/metrics").await;
    for code in [
        "undecodable",
        "too_many_pixels",
        "empty_file",
        "unsupported_type",
    ] {
        assert!(
            metrics.contains(&format!("ocrd_tasks_failed_total{{code=\"{code}\"}} 1")),
            "{code}: {metrics}"
        );
    }
    assert_eq!(metric(&metrics, "ocrd_tasks_completed_total"), 1.0);
    install.assert_temp_empty_soon().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_running_task_or_hands_it_back() {
    let _turn = one_at_a_time().await;
    let install = Install::distributed(|_| {}).await;
    let pages = sample_pages();

    // With a grace period, the running task finishes before the worker exits.
    let mut patient = install.spawn_worker("patient", &[]);
    let task = install.submit_file(&pages[0].0).await;
    wait_for(Duration::from_secs(300), "the task to start", || async {
        (install.task(&task.id).await.status != TaskStatus::Queued).then_some(())
    })
    .await;
    patient.signal("TERM");
    assert_eq!(patient.wait_exit(Duration::from_secs(120)).await, Some(0));
    assert_eq!(install.task(&task.id).await.status, TaskStatus::Completed);

    // Without one, the lease is released at once and another worker takes over well before
    // the lease would have expired.
    let mut hasty = install.spawn_worker(
        "hasty",
        &[
            ("OCRD_WORKER__SHUTDOWN_GRACE_SECS", "0"),
            ("OCRD_WORKER__LEASE_SECS", "600"),
        ],
    );
    let task = install.submit_file(&pages[1].0).await;
    wait_for(Duration::from_secs(300), "the task to start", || async {
        (install.task(&task.id).await.status == TaskStatus::Processing).then_some(())
    })
    .await;
    hasty.signal("TERM");
    assert_eq!(hasty.wait_exit(Duration::from_secs(60)).await, Some(0));
    let after = install.task(&task.id).await;
    if after.status != TaskStatus::Completed {
        assert_eq!(
            after.status,
            TaskStatus::Queued,
            "released, not left processing: {after:?}"
        );
        assert!(after.lease_owner.is_none());
        let _next = install.spawn_worker("next", &[("OCRD_WORKER__LEASE_SECS", "600")]);
        let done = install
            .wait_finished(std::slice::from_ref(&task.id), Duration::from_secs(300))
            .await;
        assert_eq!(done[0].status, TaskStatus::Completed);
    }
    install.assert_temp_empty_soon().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_the_queue_keeps_redelivering_is_poison() {
    let install = Install::distributed(|c| c.worker.max_deliveries = 2).await;
    let task = install.submit_file(&sample_pages()[0].0).await;
    vanishing_consumers(&install, &task.id).await;
    let _turn = one_at_a_time().await;
    let _worker = install.spawn_worker("w", &[]);
    let done = install
        .wait_finished(std::slice::from_ref(&task.id), Duration::from_secs(120))
        .await;
    assert_eq!(done[0].status, TaskStatus::Failed);
    assert_eq!(
        done[0].error_code.as_deref(),
        Some("poison"),
        "{:?}",
        done[0]
    );
    assert_eq!(done[0].attempts, 0, "never claimed");
}

/// Three consumers take the task's entry and vanish without a trace: 3 deliveries.
async fn vanishing_consumers(install: &Install, task_id: &str) {
    for ghost in ["ghost-1", "ghost-2", "ghost-3"] {
        let got = install
            .app
            .queue
            .pop(ghost, Duration::ZERO, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(got.map(|d| d.task_id).as_deref(), Some(task_id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_runs_stored_pages_earns_more_deliveries() {
    let install = Install::distributed(|c| c.worker.max_deliveries = 2).await;
    let task = install.submit_file(&sample_pages()[1].0).await;
    // Earlier runs stored three pages: three more deliveries than max_deliveries are allowed.
    {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use ocrd::db::schema::tasks;
        let mut conn = install.app.db.get().await.unwrap();
        ocrd::with_conn!(&mut conn, |c| diesel::update(tasks::table.find(&task.id))
            .set(tasks::pages_done.eq(3))
            .execute(c)
            .await)
        .unwrap();
    }
    vanishing_consumers(&install, &task.id).await;
    let _turn = one_at_a_time().await;
    let _worker = install.spawn_worker("w", &[]);
    let done = install
        .wait_finished(std::slice::from_ref(&task.id), Duration::from_secs(300))
        .await;
    assert_eq!(done[0].status, TaskStatus::Completed, "{:?}", done[0]);
}

#[test]
fn gpus_without_cuda_is_a_clear_error() {
    let out = std::process::Command::new(crate::install::ocrd_bin())
        .args(["work", "--gpus", "0"])
        .env("OCRD_REDIS__URL", crate::support::redis_url())
        .env("OCRD_OCR__MODELS_DIR", crate::install::models_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("GPU 0 requested"), "{stderr}");
    assert!(stderr.contains("CUDA"), "{stderr}");
    assert!(stderr.contains("fetch-models.sh --gpu"), "{stderr}");
}

#[test]
fn work_without_redis_points_to_all_in_one() {
    let out = std::process::Command::new(crate::install::ocrd_bin())
        .arg("work")
        .env("OCRD_REDIS__URL", "")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("all-in-one"), "{stderr}");
}
