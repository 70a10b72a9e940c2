//! One claimed task, from its uploaded file to its committed result.
//!
//! Two stages, each retried on transient failures within the task's attempt budget:
//! 1. recognise: download the file into a private temp dir (removed on every path: success,
//!    error, panic or abort, because it is dropped), then read pages one at a time on a thread
//!    of their own and recognise each, publishing progress per page;
//! 2. store: upload each rendered format under the task's fixed result keys (SSE-KMS on S3),
//!    then write the result row and `completed` in one transaction.
//!
//! Rendering sits between the two and runs once, so a storage outage does not redo the OCR.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Held, Worker};
use crate::blobs::{BlobError, BlobKey};
use crate::db::DbError;
use crate::db::models::{BlobKeys, File, NewTaskResult, Task, TaskStatus};
use crate::document::{self, DocumentError, Limits, OcrPolicy, PageInput};
use crate::ocr::{Engine, PageResult};
use crate::render::{DocumentInfo, Format};
use crate::tasks::TaskOptions;

/// Why a task did not complete. `code`s are stable: clients and the UI rely on them.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// Retrying cannot help (bad input, a bug): the task fails at once.
    #[error("{code}: {message}")]
    Permanent { code: &'static str, message: String },
    /// A dependency is unavailable: retried with backoff while attempts remain.
    #[error("{code}: {message}")]
    Transient { code: &'static str, message: String },
    /// This worker no longer holds the task; whoever does will finish it.
    #[error("lease lost")]
    LeaseLost,
}

impl TaskError {
    fn permanent(code: &'static str, message: impl Into<String>) -> TaskError {
        TaskError::Permanent {
            code,
            message: message.into(),
        }
    }
}

impl From<DbError> for TaskError {
    fn from(e: DbError) -> Self {
        if e.is_transient() {
            TaskError::Transient {
                code: "database_unavailable",
                message: e.to_string(),
            }
        } else {
            TaskError::permanent("internal", e.to_string())
        }
    }
}

impl From<BlobError> for TaskError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::NotFound(key) => TaskError::permanent(
                "source_missing",
                format!("the uploaded file is gone from storage ({key})"),
            ),
            BlobError::Local(e) => TaskError::permanent("internal", format!("temp file: {e}")),
            e => TaskError::Transient {
                code: "storage_unavailable",
                message: e.to_string(),
            },
        }
    }
}

impl From<DocumentError> for TaskError {
    fn from(e: DocumentError) -> Self {
        TaskError::permanent(e.code(), e.to_string())
    }
}

/// Runs a claimed task to its committed result.
pub(super) async fn run(
    worker: &Worker,
    engine: &Arc<dyn Engine>,
    held: &Held<'_>,
) -> Result<Task, TaskError> {
    let (task, owner) = (held.task, held.owner);
    let options = TaskOptions::parse(&task.options)
        .map_err(|e| TaskError::permanent("bad_options", format!("task options: {e}")))?;
    // Claims count as attempts too: a task taken over after a crash has fewer retries left.
    let mut attempt = task.attempts.max(1) as u32;
    let (file, pages) = retrying(worker, task, &mut attempt, || {
        recognise(worker, engine, task, owner, options.ocr)
    })
    .await?;
    let checkpoints = BlobKey::checkpoints(&task.user_id, task.created_at, &task.id);

    let info = DocumentInfo {
        source_name: &file.filename,
        engine: engine.name(),
        languages: engine.languages(),
    };
    let rendered: Vec<(Format, Bytes)> = options
        .formats
        .iter()
        .map(|&format| (format, Bytes::from(format.render(&pages, &info))))
        .collect();
    let text = Format::Txt.render(&pages, &info);
    let confidences: Vec<f32> = pages
        .iter()
        .filter_map(PageResult::mean_confidence)
        .collect();
    let mean_confidence = (!confidences.is_empty())
        .then(|| confidences.iter().map(|&c| c as f64).sum::<f64>() / confidences.len() as f64);

    retrying(worker, task, &mut attempt, || async {
        let mut keys = BlobKeys::default();
        for (format, body) in &rendered {
            let ext = format.extension();
            let key = BlobKey::result(&task.user_id, task.created_at, &task.id, ext);
            worker.app.blobs.put_bytes(&key, body.clone()).await?;
            keys.0.insert(ext.to_owned(), key.to_string());
        }
        let result = NewTaskResult {
            user_id: task.user_id.clone(),
            blob_keys: keys.clone(),
            page_count: pages.len() as i32,
            mean_confidence,
            text: text.clone(),
        };
        // Before the commit: a crash after it must not leave checkpoints nobody removes (a
        // crash before it only costs the next holder the pages).
        delete_checkpoints(worker, &checkpoints).await;
        let mut conn = worker.app.db.get().await?;
        match Task::complete(&mut conn, &task.id, owner, result).await? {
            Some((done, _)) => Ok(done),
            None => {
                // Deleted or cancelled meanwhile: nobody will ever point at these objects.
                // (Taken over instead: the new holder writes the same keys.)
                drop(conn);
                if deleted_or_cancelled(worker, task).await {
                    for key in keys.0.values() {
                        if let Ok(key) = BlobKey::parse(key) {
                            let _ = worker.app.blobs.delete(&key).await;
                        }
                    }
                    delete_checkpoints(worker, &checkpoints).await;
                }
                Err(TaskError::LeaseLost)
            }
        }
    })
    .await
}

/// Runs `stage` until it succeeds, fails permanently, or the task's attempts run out. Retries
/// are logged one line each: they are events of one task, not of the whole worker.
async fn retrying<T, F, Fut>(
    worker: &Worker,
    task: &Task,
    attempt: &mut u32,
    mut stage: F,
) -> Result<T, TaskError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TaskError>>,
{
    let budget = task.max_attempts.max(1) as u32;
    loop {
        match stage().await {
            Err(TaskError::Transient { code, message }) if *attempt < budget => {
                let wait = super::backoff(
                    worker.options.retry_base,
                    worker.options.retry_max,
                    *attempt,
                );
                tracing::warn!(task = %task.id, code, message, attempt = *attempt, retry_in = ?wait, "transient failure; retrying");
                worker.metrics.retries.inc();
                tokio::time::sleep(wait).await;
                *attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// Downloads the file and recognises its pages, in order.
async fn recognise(
    worker: &Worker,
    engine: &Arc<dyn Engine>,
    task: &Task,
    owner: &str,
    policy: OcrPolicy,
) -> Result<(File, Vec<PageResult>), TaskError> {
    let file = {
        let mut conn = worker.app.db.get().await?;
        match File::find(&mut conn, &task.file_id).await {
            Err(DbError::NotFound) => {
                return Err(TaskError::permanent(
                    "source_missing",
                    "the task's file record is gone",
                ));
            }
            found => found?,
        }
    };
    let dir = tempfile::Builder::new()
        .prefix(&super::recovery::temp_dir_prefix(&task.id))
        .tempdir_in(&worker.options.temp_root)
        .map_err(|e| TaskError::permanent("internal", format!("cannot create a temp dir: {e}")))?;
    let source = dir.path().join("source");
    download(worker, &file, &source).await?;

    let (tx, mut rx) = mpsc::channel(1);
    // Pages a previous attempt finished (a crash, a lost lease) are not recognised again.
    let mut pages = load_checkpoints(worker, task).await?;
    if !pages.is_empty() {
        tracing::info!(task = %task.id, pages = pages.len(), "resuming after the stored pages");
    }
    read_pages(
        engine.clone(),
        source,
        worker.options.limits,
        policy,
        pages.len(),
        tx,
    )?;
    // Known from the start for PDFs and single images, at the end for TIFF.
    let mut known_total = None;
    let mut started = Instant::now();
    loop {
        let message = tokio::time::timeout(worker.options.page_timeout, rx.recv())
            .await
            .map_err(|_| {
                TaskError::permanent(
                    "page_timeout",
                    format!(
                        "page {} took longer than {} s",
                        pages.len() + 1,
                        worker.options.page_timeout.as_secs()
                    ),
                )
            })?;
        match message {
            Some(PageMessage::Total(total)) => {
                known_total = Some(total as i32);
                let mut conn = worker.app.db.get().await?;
                let done = pages.len() as i32;
                match Task::set_progress(&mut conn, &task.id, owner, done, known_total).await? {
                    Some(updated) => worker.app.events.task_updated(&updated).await,
                    None => return Err(lease_lost(worker, task).await),
                }
            }
            Some(PageMessage::Page(result)) => {
                worker.metrics.page_done(started.elapsed());
                started = Instant::now();
                let page = result?;
                let key =
                    BlobKey::checkpoint(&task.user_id, task.created_at, &task.id, pages.len() + 1);
                let json = serde_json::to_vec(&page)
                    .map_err(|e| TaskError::permanent("internal", e.to_string()))?;
                worker.app.blobs.put_bytes(&key, Bytes::from(json)).await?;
                pages.push(page);
                let mut conn = worker.app.db.get().await?;
                let done = pages.len() as i32;
                match Task::set_progress(&mut conn, &task.id, owner, done, known_total).await? {
                    Some(updated) => worker.app.events.task_updated(&updated).await,
                    None => return Err(lease_lost(worker, task).await),
                }
            }
            Some(PageMessage::End(Ok(()))) => break,
            Some(PageMessage::End(Err(e))) => return Err(e),
            None => return Err(TaskError::permanent("internal", "the page reader stopped")),
        }
    }
    if pages.is_empty() {
        return Err(TaskError::permanent(
            "undecodable",
            "the document has no pages",
        ));
    }
    let total = pages.len() as i32;
    let mut conn = worker.app.db.get().await?;
    if Task::set_progress(&mut conn, &task.id, owner, total, Some(total))
        .await?
        .is_none()
    {
        return Err(lease_lost(worker, task).await);
    }
    File::set_page_count(&mut conn, &file.id, total).await?;
    // `dir` is dropped here, and on every early return above.
    drop(dir);
    Ok((file, pages))
}

/// The pages earlier attempts stored, in order: the run of checkpoints from page 1 on. One
/// that cannot be read ends the run; its page is recognised again.
async fn load_checkpoints(worker: &Worker, task: &Task) -> Result<Vec<PageResult>, TaskError> {
    let prefix = BlobKey::checkpoints(&task.user_id, task.created_at, &task.id);
    let stored = worker.app.blobs.list(&prefix).await?;
    let mut pages = Vec::new();
    loop {
        let key = BlobKey::checkpoint(&task.user_id, task.created_at, &task.id, pages.len() + 1);
        if !stored.iter().any(|k| k == key.as_str()) {
            return Ok(pages);
        }
        let bytes = worker.app.blobs.get_bytes(&key).await?;
        match serde_json::from_slice::<PageResult>(&bytes) {
            Ok(page) => pages.push(page),
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "unreadable checkpoint; recognising from it on");
                return Ok(pages);
            }
        }
    }
}

/// Whether the task was deleted or cancelled (rather than taken over by another worker).
async fn deleted_or_cancelled(worker: &Worker, task: &Task) -> bool {
    let Ok(mut conn) = worker.app.db.get().await else {
        return false;
    };
    match Task::find(&mut conn, &task.id).await {
        Err(DbError::NotFound) => true,
        Ok(now) => now.status == TaskStatus::Cancelled,
        Err(_) => false,
    }
}

/// The task took no more progress from this worker. If it was deleted or cancelled, the
/// checkpoint just written goes too; if another worker holds it now, the checkpoints are its
/// head start.
async fn lease_lost(worker: &Worker, task: &Task) -> TaskError {
    if deleted_or_cancelled(worker, task).await {
        let prefix = BlobKey::checkpoints(&task.user_id, task.created_at, &task.id);
        delete_checkpoints(worker, &prefix).await;
    }
    TaskError::LeaseLost
}

/// Removes the checkpoints of a task about to fail for good.
pub(super) async fn drop_checkpoints(worker: &Worker, task: &Task) {
    let prefix = BlobKey::checkpoints(&task.user_id, task.created_at, &task.id);
    delete_checkpoints(worker, &prefix).await;
}

/// Removes a task's checkpoints; one left behind only costs storage.
async fn delete_checkpoints(worker: &Worker, prefix: &str) {
    let Ok(keys) = worker.app.blobs.list(prefix).await else {
        return;
    };
    for key in keys {
        if let Ok(key) = BlobKey::parse(&key)
            && let Err(e) = worker.app.blobs.delete(&key).await
        {
            tracing::warn!(key = %key, error = %e, "could not delete a checkpoint");
        }
    }
}

async fn download(worker: &Worker, file: &File, to: &Path) -> Result<(), TaskError> {
    let key = BlobKey::parse(&file.blob_key)
        .map_err(|e| TaskError::permanent("source_missing", e.to_string()))?;
    worker.app.blobs.download_to(&key, to).await?;
    Ok(())
}

enum PageMessage {
    /// The page count, where the format tells it up front.
    Total(usize),
    Page(Result<PageResult, TaskError>),
    End(Result<(), TaskError>),
}

/// Decodes and recognises pages one at a time on a thread of its own, so that the async side
/// can time each page out. The channel holds one page, which bounds memory; when the receiver
/// gives up, the thread stops after the page it is on.
fn read_pages(
    engine: Arc<dyn Engine>,
    source: PathBuf,
    limits: Limits,
    policy: OcrPolicy,
    done: usize,
    tx: mpsc::Sender<PageMessage>,
) -> Result<(), TaskError> {
    let spawned = std::thread::Builder::new()
        .name("ocrd-pages".into())
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut pages = document::open(&source, limits, policy)?;
                if let Some(total) = pages.page_count()
                    && tx.blocking_send(PageMessage::Total(total)).is_err()
                {
                    return Ok(());
                }
                pages.skip_pages(done)?;
                for (index, page) in pages.enumerate().map(|(i, page)| (i + done, page)) {
                    let image = match page? {
                        PageInput::Image(image) => image,
                        // A born-digital page: its own text, no OCR.
                        PageInput::Text(text) => {
                            if tx.blocking_send(PageMessage::Page(Ok(text))).is_err() {
                                return Ok(());
                            }
                            continue;
                        }
                    };
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        engine.recognize(&image)
                    }));
                    let result = match result {
                        Ok(Ok(page)) => Ok(page),
                        Ok(Err(e)) => Err(TaskError::permanent(
                            "engine_error",
                            format!("page {}: {e}", index + 1),
                        )),
                        Err(_) => Err(TaskError::permanent(
                            "internal",
                            format!("the engine crashed on page {}", index + 1),
                        )),
                    };
                    let failed = result.is_err();
                    if tx.blocking_send(PageMessage::Page(result)).is_err() || failed {
                        return Ok(());
                    }
                }
                Ok::<(), TaskError>(())
            }));
            let end = outcome.unwrap_or_else(|_| {
                Err(TaskError::permanent(
                    "internal",
                    "reading the document crashed",
                ))
            });
            let _ = tx.blocking_send(PageMessage::End(end));
        });
    spawned.map(drop).map_err(|e| TaskError::Transient {
        code: "internal",
        message: format!("cannot start a page thread: {e}"),
    })
}
