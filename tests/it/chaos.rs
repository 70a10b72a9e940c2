//! The kill storm: two `ocrd work` processes on PostgreSQL, Redis and moto S3 work through
//! images, multi-page scanned PDFs, born-digital PDFs and broken files while a random worker is
//! SIGKILLed and restarted again and again, Redis is restarted empty twice, and storage is cut
//! for 10 s. Nothing may be lost or done twice.
//!
//! `make test` runs a short storm (40 tasks, 15 kills); `make chaos` the full one (200 tasks,
//! 100 kills), through OCRD_CHAOS_TASKS and OCRD_CHAOS_KILLS.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use ocrd::config::Secret;
use ocrd::db::models::TaskStatus;

use crate::install::{Install, Outage, PrivateRedis, WorkerProcess, sample_pages};
use crate::worker::{enqueue_raw, one_at_a_time};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One kind of document in the storm: its bytes, and how it must end.
struct Document {
    name: String,
    bytes: Vec<u8>,
    /// `None`: completed; `Some(code)`: failed with this permanent code.
    fails_with: Option<&'static str>,
    /// Broken files that uploads refuse are put in storage directly, as a bad upload would be.
    raw: bool,
}

fn documents() -> Vec<Document> {
    let pages = sample_pages();
    let mut documents: Vec<Document> = pages
        .iter()
        .map(|(path, _)| Document {
            name: path.file_name().unwrap().to_string_lossy().into_owned(),
            bytes: std::fs::read(path).unwrap(),
            fails_with: None,
            raw: false,
        })
        .collect();
    let scans: Vec<image::RgbImage> = pages
        .iter()
        .take(3)
        .map(|(path, _)| image::open(path).unwrap().to_rgb8())
        .collect();
    documents.push(Document {
        name: "scan-3-pages.pdf".into(),
        bytes: crate::pdf::image_pdf(&scans, 150.0),
        fails_with: None,
        raw: false,
    });
    documents.push(Document {
        name: "scan-2-pages.pdf".into(),
        bytes: crate::pdf::image_pdf(&scans[1..], 150.0),
        fails_with: None,
        raw: false,
    });
    documents.push(Document {
        name: "born-digital.pdf".into(),
        bytes: std::fs::read(crate::ocr::repo().join("../shared/eval/pdf/born_digital_01.pdf"))
            .unwrap(),
        fails_with: None,
        raw: false,
    });
    let good = &documents[0].bytes;
    let broken = [
        (
            "truncated.png",
            good[..good.len() / 3].to_vec(),
            "undecodable",
            false,
        ),
        (
            "bomb.png",
            crate::support::png_bomb(30_000, 30_000),
            "too_many_pixels",
            false,
        ),
        ("empty.png", Vec::new(), "empty_file", true),
        (
            "notes.png",
            b"just text, no image".to_vec(),
            "unsupported_type",
            true,
        ),
        (
            "locked.pdf",
            std::fs::read(crate::ocr::repo().join("tests/fixtures/pdf/encrypted.pdf")).unwrap(),
            "encrypted",
            false,
        ),
    ];
    for (name, bytes, code, raw) in broken {
        documents.push(Document {
            name: name.into(),
            bytes,
            fails_with: Some(code),
            raw,
        });
    }
    documents
}

async fn submit(install: &Install, document: &Document) -> String {
    if document.raw {
        enqueue_raw(install, &document.name, document.bytes.clone()).await
    } else {
        install
            .submit_bytes(&document.name, document.bytes.clone())
            .await
            .id
    }
}

/// What the storm did, for the closing figures.
#[derive(Default)]
struct Storm {
    kills: usize,
    /// Kills of a worker that held a task at that moment.
    kills_mid_task: usize,
    redis_restarts: usize,
    storage_cuts: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_storm_loses_nothing_and_does_nothing_twice() {
    let _turn = one_at_a_time().await;
    let (task_count, kill_count) = (
        setting("OCRD_CHAOS_TASKS", 40),
        setting("OCRD_CHAOS_KILLS", 15),
    );
    let started = Instant::now();
    let mut redis = PrivateRedis::start().await;
    let s3 = crate::support::s3_server();
    let outage = Outage::proxy(&s3.endpoint).await;
    let redis_url = redis.url();
    let install = Install::distributed(|c| {
        c.redis.url = Secret::new(redis_url);
        // Kills cost attempts and deliveries: at a kill every 2 s or so, a task may be
        // killed many times before it ends (production's defaults, 3 and 5, are for rarer
        // deaths, and would rightly call such a task poison).
        c.worker.max_attempts = 30;
        c.worker.max_deliveries = 30;
    })
    .await;
    let through_outage = [("OCRD_STORAGE__ENDPOINT", outage.endpoint())];
    let env: Vec<(&str, &str)> = through_outage
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();

    // The reference: each document once, by a worker nobody disturbs.
    let documents = documents();
    let mut reference: HashMap<usize, String> = HashMap::new();
    {
        let calm = install.spawn_worker("calm", &env);
        let mut ids = Vec::new();
        for document in &documents {
            ids.push(submit(&install, document).await);
        }
        install.wait_finished(&ids, Duration::from_secs(600)).await;
        for (i, id) in ids.iter().enumerate() {
            if documents[i].fails_with.is_none() {
                reference.insert(i, install.result_text(id).await);
            }
        }
        drop(calm);
    }

    // The storm's tasks: the documents in turn, broken ones included.
    let mut tasks: Vec<(String, usize)> = Vec::new();
    for n in 0..task_count {
        let which = n % documents.len();
        tasks.push((submit(&install, &documents[which]).await, which));
    }
    let ids: Vec<String> = tasks.iter().map(|(id, _)| id.clone()).collect();
    let mut workers: Vec<WorkerProcess> = (0..2)
        .map(|i| install.spawn_worker(&format!("w{i}-0"), &env))
        .collect();
    let mut storm = Storm::default();
    let mut rng = fastrand::Rng::with_seed(
        std::env::var("OCRD_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(7),
    );
    while storm.kills < kill_count {
        tokio::time::sleep(Duration::from_millis(rng.u64(500..4000))).await;
        let victim = rng.usize(..workers.len());
        let pid = workers[victim].pid().to_string();
        let holding = install.tasks(&ids).await.iter().any(|t| {
            t.status == TaskStatus::Processing
                && t.lease_owner
                    .as_deref()
                    .is_some_and(|o| o.contains(&format!("-{pid}-")))
        });
        workers[victim].kill();
        storm.kills += 1;
        storm.kills_mid_task += usize::from(holding);
        workers[victim] = install.spawn_worker(&format!("w{victim}-{}", storm.kills), &env);

        if storm.redis_restarts < 2 && storm.kills >= (storm.redis_restarts + 1) * kill_count / 3 {
            redis.kill();
            redis.restart().await;
            storm.redis_restarts += 1;
        }
        if storm.storage_cuts == 0 && storm.kills >= kill_count / 2 {
            outage.start();
            tokio::time::sleep(Duration::from_secs(10)).await;
            outage.end();
            storm.storage_cuts += 1;
        }
    }

    let finished = install
        .wait_finished(&ids, Duration::from_secs(60 * 60))
        .await;
    let wall = started.elapsed();
    drop(workers);

    // Every task ended as its document must, and the completed ones read as the reference.
    let mut lost = Vec::new();
    let mut wrong_text = Vec::new();
    let by_id: HashMap<&str, usize> = tasks.iter().map(|(id, i)| (id.as_str(), *i)).collect();
    for task in &finished {
        let document = &documents[by_id[task.id.as_str()]];
        match document.fails_with {
            None if task.status != TaskStatus::Completed => {
                lost.push(format!("{} ({}): {task:?}", task.id, document.name))
            }
            None => {
                let text = install.result_text(&task.id).await;
                if text != reference[&by_id[task.id.as_str()]] {
                    wrong_text.push(format!("{} ({})", task.id, document.name));
                }
            }
            Some(code) => assert!(
                task.status == TaskStatus::Failed && task.error_code.as_deref() == Some(code),
                "{} must fail with {code}: {task:?}",
                document.name
            ),
        }
    }
    // Exactly one result row per completed task, and none for a failed one.
    let rows: BTreeMap<String, i64> = install.result_rows_per_task().await;
    let duplicated: Vec<&String> = rows
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    let wrong_rows: Vec<String> = finished
        .iter()
        .filter_map(|task| {
            let expected = i64::from(task.status == TaskStatus::Completed);
            let has = rows.get(&task.id).copied().unwrap_or(0);
            (has != expected).then(|| format!("{} ({:?}): {has} result rows", task.id, task.status))
        })
        .collect();
    // Every referenced object is stored, nothing else is, and no checkpoint is left.
    install.assert_no_orphans().await;
    let checkpoints: Vec<String> = install
        .app
        .blobs
        .list("results/")
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.contains("/pages/"))
        .collect();
    println!(
        "kill storm: {} tasks ({} broken), {} kills ({} mid-task), {} Redis restarts, {} storage cut of 10 s; \
         lost {}, duplicated {}, wrong text {}; wall {:.0} s",
        ids.len(),
        tasks
            .iter()
            .filter(|(_, i)| documents[*i].fails_with.is_some())
            .count(),
        storm.kills,
        storm.kills_mid_task,
        storm.redis_restarts,
        storm.storage_cuts,
        lost.len(),
        duplicated.len(),
        wrong_text.len(),
        wall.as_secs_f64()
    );
    assert!(lost.is_empty(), "lost: {lost:#?}");
    assert!(duplicated.is_empty(), "duplicated results: {duplicated:?}");
    assert!(wrong_rows.is_empty(), "{wrong_rows:#?}");
    assert!(
        wrong_text.is_empty(),
        "text differs from the reference: {wrong_text:#?}"
    );
    assert!(checkpoints.is_empty(), "checkpoints left: {checkpoints:?}");
    assert_eq!(storm.redis_restarts, 2);
    assert_eq!(storm.storage_cuts, 1);
    assert!(
        finished
            .iter()
            .all(|t| !matches!(t.status, TaskStatus::Processing | TaskStatus::Queued))
    );
    install.assert_temp_empty_soon().await;
}
