//! All-in-one: the worker in the same process as the library API, on the embedded defaults
//! (SQLite, in-process queue and events, local blobs); and the `ocrd all-in-one` command.

use std::sync::Arc;
use std::time::Duration;

use image::RgbImage;
use ocrd::db::models::TaskStatus;
use ocrd::events::Event;
use ocrd::ocr::{Engine, OcrError, PageOptions, PageResult};
use ocrd::worker::{Worker, WorkerOptions};
use tokio_util::sync::CancellationToken;

use crate::install::{Install, free_port, sample_pages, wait_for};

/// Runs a worker inside the test process until the returned token is cancelled.
pub fn start_worker(
    install: &Install,
    engine: Arc<dyn Engine>,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let worker = Arc::new(Worker::new(
        install.app.clone(),
        vec![engine],
        WorkerOptions::from_config(&install.config),
    ));
    let token = CancellationToken::new();
    let handle = tokio::spawn(worker.run(token.clone()));
    (token, handle)
}

/// Runs a worker with `engine` until every task in `ids` has finished (or `timeout`), then
/// stops it; the tasks as they ended.
pub async fn run_worker_until_finished(
    install: &Install,
    engine: Arc<dyn Engine>,
    ids: &[String],
    timeout: std::time::Duration,
) -> Vec<ocrd::db::models::Task> {
    let (stop, worker) = start_worker(install, engine);
    let done = install.wait_finished(ids, timeout).await;
    stop.cancel();
    worker.await.unwrap();
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_tasks_complete_on_the_embedded_defaults() {
    let install = Install::embedded(|_| {}).await;
    assert!(install.app.redis.is_none());
    let mut events = install.app.events.subscribe();
    let pages = sample_pages();
    let mut submitted = Vec::new();
    for i in 0..50 {
        let (path, truth) = &pages[i % pages.len()];
        submitted.push((install.submit_file(path).await.id, truth.clone()));
    }
    let ids: Vec<String> = submitted.iter().map(|(id, _)| id.clone()).collect();
    let (stop, running) = start_worker(&install, crate::ocr::engine());

    let tasks = install.wait_finished(&ids, Duration::from_secs(900)).await;
    assert!(
        tasks.iter().all(|t| t.status == TaskStatus::Completed),
        "{tasks:?}"
    );
    let rows = install.result_rows_per_task().await;
    assert_eq!(rows.len(), 50);
    assert!(rows.values().all(|&n| n == 1));
    let mut cers = Vec::new();
    for (id, truth) in &submitted {
        cers.push(ocrd::eval::cer(&install.result_text(id).await, truth));
    }
    let mean = cers.iter().sum::<f64>() / cers.len() as f64;
    println!("all-in-one: mean CER {mean:.4} over 50 tasks");
    assert!(mean <= 0.01);
    // Three formats and the first page's thumbnail per task.
    assert_eq!(install.app.blobs.list("results/").await.unwrap().len(), 200);
    install.assert_no_orphans().await;

    // The in-process events told the whole story of each task, in order.
    let mut seen: std::collections::HashMap<String, Vec<String>> = Default::default();
    while let Ok(Event::TaskUpdated { task }) = events.try_recv() {
        seen.entry(task.id).or_default().push(task.status);
    }
    for id in &ids {
        let statuses = &seen[id];
        assert_eq!(
            statuses.first().map(String::as_str),
            Some("queued"),
            "{statuses:?}"
        );
        assert!(statuses.iter().any(|s| s == "processing"), "{statuses:?}");
        assert_eq!(
            statuses.last().map(String::as_str),
            Some("completed"),
            "{statuses:?}"
        );
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .unwrap()
        .unwrap();
    install.assert_temp_empty_soon().await;
}

/// The real engine, with faults injected by page width: one width panics, another hangs.
struct Faulty {
    inner: Arc<dyn Engine>,
}

const PANIC_WIDTH: u32 = 333;
const HANG_WIDTH: u32 = 334;

impl Engine for Faulty {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn languages(&self) -> &[&'static str] {
        self.inner.languages()
    }
    fn recognize(&self, page: &RgbImage, options: &PageOptions) -> Result<PageResult, OcrError> {
        match page.width() {
            PANIC_WIDTH => panic!("injected engine panic"),
            HANG_WIDTH => {
                std::thread::sleep(Duration::from_secs(600));
                self.inner.recognize(page, options)
            }
            _ => self.inner.recognize(page, options),
        }
    }
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_panic_or_hang_fails_that_task_and_the_worker_goes_on() {
    // A real page takes a few seconds in a debug build on a busy machine; the hang, minutes.
    let install = Install::embedded(|c| c.worker.page_timeout_secs = 20).await;
    let engine: Arc<dyn Engine> = Arc::new(Faulty {
        inner: crate::ocr::engine(),
    });
    let (stop, running) = start_worker(&install, engine);

    let panics = install
        .submit_bytes("panic.png", png(PANIC_WIDTH, 100))
        .await;
    let hangs = install.submit_bytes("hang.png", png(HANG_WIDTH, 100)).await;
    let fine = install.submit_file(&sample_pages()[2].0).await;
    let ids = [panics.id.clone(), hangs.id.clone(), fine.id.clone()];
    let tasks = install.wait_finished(&ids, Duration::from_secs(300)).await;

    assert_eq!(tasks[0].status, TaskStatus::Failed);
    assert_eq!(
        tasks[0].error_code.as_deref(),
        Some("internal"),
        "{:?}",
        tasks[0]
    );
    assert!(
        tasks[0]
            .error_message
            .as_deref()
            .unwrap()
            .contains("crashed on page 1")
    );
    assert!(
        tasks[1]
            .error_message
            .as_deref()
            .unwrap()
            .contains("longer than 20 s")
    );
    assert_eq!(tasks[1].status, TaskStatus::Failed);
    assert_eq!(
        tasks[1].error_code.as_deref(),
        Some("page_timeout"),
        "{:?}",
        tasks[1]
    );
    assert_eq!(tasks[2].status, TaskStatus::Completed, "{:?}", tasks[2]);
    assert!(!running.is_finished(), "the worker keeps serving");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .unwrap()
        .unwrap();
    install.assert_temp_empty_soon().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_tasks_survive_a_restart_of_all_in_one() {
    // Tasks queued in SQLite while nothing ran (the in-process queue died with its process)
    // are found by the reconciler of the next start.
    let install = Install::embedded(|_| {}).await;
    let task = install.submit_file(&sample_pages()[3].0).await;
    let fresh = ocrd::app::App::build(install.config.clone()).await.unwrap();
    assert!(
        fresh.queue.task_ids().await.unwrap().is_empty(),
        "a new process, an empty queue"
    );
    let worker = Arc::new(Worker::new(
        fresh,
        vec![crate::ocr::engine() as Arc<dyn Engine>],
        WorkerOptions::from_config(&install.config),
    ));
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker.run(stop.clone()));
    let done = install
        .wait_finished(std::slice::from_ref(&task.id), Duration::from_secs(300))
        .await;
    assert_eq!(done[0].status, TaskStatus::Completed);
    stop.cancel();
    running.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_all_in_one_command_serves_health_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = std::process::Command::new(crate::install::ocrd_bin())
        .arg("all-in-one")
        .current_dir(dir.path())
        .env("OCRD_DATA_DIR", dir.path())
        .env("OCRD_SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("OCRD_OCR__MODELS_DIR", crate::install::models_dir())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let ready = wait_for(
        Duration::from_secs(120),
        "all-in-one to be ready",
        || async {
            let response = reqwest::get(format!("{url}/readyz")).await.ok()?;
            (response.status() == 200).then_some(response.text().await.ok()?)
        },
    )
    .await;
    assert!(ready.contains("ready"));
    assert!(
        dir.path().join("ocrd.db").exists(),
        "the embedded SQLite database"
    );
    assert!(dir.path().join("blobs").is_dir(), "local blob storage");
    let metrics = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("ocrd_tasks_completed_total 0"),
        "{metrics}"
    );

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = wait_for(Duration::from_secs(60), "all-in-one to exit", || {
        let exited = child.try_wait().unwrap();
        async move { exited }
    })
    .await;
    assert_eq!(code.code(), Some(0));
}
