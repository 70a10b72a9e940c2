//! One claimed task, from its uploaded file to its committed result.
//!
//! Two stages, each retried on transient failures within the task's attempt budget:
//! 1. recognise: download the file into a private temp dir (removed on every path: success,
//!    error, panic or abort, because it is dropped), then read pages one at a time on a thread
//!    of their own and recognise each, publishing progress per page; the file stays until the
//!    results are rendered (the searchable PDF is made of its pages);
//! 2. store: upload each rendered format under the task's fixed result keys (SSE-KMS on S3),
//!    then write the result row and `completed` in one transaction.
//!
//! Rendering sits between the two and runs once, so a storage outage does not redo the OCR.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::FutureExt;
use image::RgbImage;
use tokio::sync::mpsc;

use super::{Held, Worker};
use crate::blobs::{BlobError, BlobKey};
use crate::db::DbError;
use crate::db::models::{BlobKeys, File, NewTaskResult, Task, TaskStatus};
use crate::document::{self, DocumentError, Limits, PageInput, ReadOptions};
use crate::ocr::{Engine, PageOptions, PageResult, PageSource};
use crate::render::{DocumentInfo, Format, PdfError, thumbnail, txt};
use crate::tasks::{PageWarning, TaskOptions};

/// Why a task did not complete. `code`s are stable: clients and the UI rely on them.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// Retrying cannot help (bad input, a bug): the task fails at once.
    #[error("{code}: {message}")]
    Permanent {
        code: Cow<'static, str>,
        message: String,
    },
    /// A dependency is unavailable: retried with backoff while attempts remain.
    #[error("{code}: {message}")]
    Transient {
        code: Cow<'static, str>,
        message: String,
    },
    /// This worker no longer holds the task; whoever does will finish it.
    #[error("lease lost")]
    LeaseLost,
}

impl TaskError {
    fn permanent(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> TaskError {
        TaskError::Permanent {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl From<DbError> for TaskError {
    fn from(e: DbError) -> Self {
        if e.is_transient() {
            TaskError::Transient {
                code: "database_unavailable".into(),
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
                code: "storage_unavailable".into(),
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
    if task.engine != engine.name() {
        return Err(TaskError::permanent(
            "engine_unavailable",
            format!(
                "the task asks for the {} engine; this worker runs {}",
                task.engine,
                engine.name()
            ),
        ));
    }
    // Claims count as attempts too: a task taken over after a crash has fewer retries left.
    let mut attempt = task.attempts.max(1) as u32;
    let (file, source, pages) = retrying(worker, task, &mut attempt, || {
        recognise(worker, engine, task, owner, &options)
    })
    .await?;
    let checkpoints = BlobKey::checkpoints(&task.user_id, task.created_at, &task.id);

    // Off the async threads: the searchable PDF reads and encodes the document again.
    let (pages, rendered, thumbnail) = {
        // JSON always: it holds the whole page model, from which the server renders the
        // formats nobody asked for at upload when they are first downloaded.
        let mut formats = options.formats.clone();
        if !formats.contains(&Format::Json) {
            formats.push(Format::Json);
        }
        let engine = engine.clone();
        let password = options.password.clone();
        let (filename, limits) = (file.filename.clone(), worker.limits());
        tokio::task::spawn_blocking(move || {
            let info = DocumentInfo {
                source_name: &filename,
                engine: engine.name(),
                languages: engine.languages(),
                source: &source.path,
                limits,
                password: password.as_ref(),
            };
            let rendered = formats
                .iter()
                .map(|&format| Ok((format, Bytes::from(format.render(&pages, &info)?))))
                .collect::<Result<Vec<(Format, Bytes)>, PdfError>>();
            // A picture for the lists; the task is complete without it.
            let thumbnail = thumbnail::render(&source.path, limits, password)
                .inspect_err(|e| tracing::warn!(error = %e, "no thumbnail for this document"))
                .ok()
                .map(Bytes::from);
            rendered.map(|rendered| (pages, rendered, thumbnail))
        })
        .await
        .map_err(|_| TaskError::permanent("internal", "rendering the results crashed"))?
        .map_err(|e| match e {
            PdfError::Document(e) => TaskError::from(e),
            e => TaskError::permanent("render_failed", e.to_string()),
        })?
    };
    let text = txt::render(&pages);
    let text_layer_pages = pages
        .iter()
        .filter(|page| page.source == PageSource::TextLayer)
        .count() as i32;
    let warnings: Vec<PageWarning> = pages
        .iter()
        .enumerate()
        .filter_map(|(i, page)| {
            page.failure.as_ref().map(|f| PageWarning {
                page: i as u32 + 1,
                code: f.code.clone(),
                message: f.message.clone(),
            })
        })
        .collect();
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
        if let Some(jpeg) = &thumbnail {
            let key = BlobKey::result(
                &task.user_id,
                task.created_at,
                &task.id,
                thumbnail::EXTENSION,
            );
            worker.app.blobs.put_bytes(&key, jpeg.clone()).await?;
            keys.0
                .insert(thumbnail::EXTENSION.to_owned(), key.to_string());
        }
        let result = NewTaskResult {
            user_id: task.user_id.clone(),
            blob_keys: keys.clone(),
            page_count: pages.len() as i32,
            mean_confidence,
            text: text.clone(),
            text_layer_pages,
        };
        // Before the commit: a crash after it must not leave checkpoints nobody removes (a
        // crash before it only costs the next holder the pages).
        delete_checkpoints(worker, &checkpoints).await;
        let (id, holder, warnings) = (task.id.clone(), owner.to_owned(), warnings.clone());
        let completed = worker
            .app
            .db
            .run(move |c| {
                async move { Task::complete(c, &id, &holder, result, &warnings).await }.boxed()
            })
            .await?;
        match completed {
            Some((done, _)) => Ok(done),
            None => {
                // Deleted or cancelled meanwhile: nobody will ever point at these objects.
                // (Taken over instead: the new holder writes the same keys.)
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
                tracing::warn!(task = %task.id, code = %code, message, attempt = *attempt, retry_in = ?wait, "transient failure; retrying");
                worker.metrics.retries.inc();
                tokio::time::sleep(wait).await;
                *attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// The downloaded document, in a private temp dir that goes with it.
struct Source {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

/// Downloads the file and recognises its pages, in order. The download stays for rendering.
async fn recognise(
    worker: &Worker,
    engine: &Arc<dyn Engine>,
    task: &Task,
    owner: &str,
    options: &TaskOptions,
) -> Result<(File, Source, Vec<PageResult>), TaskError> {
    let file = {
        let id = task.file_id.clone();
        let found = worker
            .app
            .db
            .run(move |c| async move { File::find(c, &id).await }.boxed())
            .await;
        match found {
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

    // Pages a previous attempt finished (a crash, a lost lease) are not recognised again.
    let mut pages = load_checkpoints(worker, task).await?;
    if !pages.is_empty() {
        tracing::info!(task = %task.id, pages = pages.len(), "resuming after the stored pages");
    }
    let start_reader = |done: usize| {
        let (tx, rx) = mpsc::channel(1);
        let limits = worker.limits();
        let reading = (options.read_options(), options.page_options());
        read_pages(engine.clone(), source.clone(), limits, reading, done, tx).map(|()| rx)
    };
    let mut rx = start_reader(pages.len())?;
    // Known from the start for PDFs and single images, at the end for TIFF.
    let mut known_total = None;
    let mut started = Instant::now();
    loop {
        let message = match tokio::time::timeout(worker.options.page_timeout, rx.recv()).await {
            Ok(message) => message,
            Err(_) => {
                // The page thread is stuck on this page. It is left to finish it unheard (it
                // stops then, as nobody listens), and a fresh one goes on from the next page.
                let message = format!(
                    "page {} took longer than {} s",
                    pages.len() + 1,
                    worker.options.page_timeout.as_secs()
                );
                let failed = PageResult::failed("page_timeout", &message);
                store_page(worker, task, owner, &mut pages, failed, known_total).await?;
                rx = start_reader(pages.len())?;
                started = Instant::now();
                continue;
            }
        };
        let page = match message {
            Some(PageMessage::Total(total)) => {
                known_total = Some(total);
                reserve_pages(worker, task, total as u64).await?;
                publish_progress(worker, task, owner, pages.len(), known_total).await?;
                continue;
            }
            Some(PageMessage::Page(Ok(page))) => page,
            // A page that cannot be read costs the document that page, within the ratio.
            Some(PageMessage::Page(Err(TaskError::Permanent { code, message }))) => {
                PageResult::failed(&code, &message)
            }
            Some(PageMessage::Page(Err(e))) | Some(PageMessage::End(Err(e))) => return Err(e),
            Some(PageMessage::End(Ok(()))) => break,
            None => return Err(TaskError::permanent("internal", "the page reader stopped")),
        };
        worker.metrics.page_done(started.elapsed());
        started = Instant::now();
        store_page(worker, task, owner, &mut pages, page, known_total).await?;
    }
    if pages.is_empty() {
        return Err(TaskError::permanent(
            "undecodable",
            "the document has no pages",
        ));
    }
    check_failed_pages(worker, &pages, pages.len())?;
    let total = pages.len() as i32;
    let (id, holder, file_id) = (task.id.clone(), owner.to_owned(), file.id.clone());
    let held = worker
        .app
        .db
        .run(move |c| {
            async move {
                let held = Task::set_progress(c, &id, &holder, total, Some(total)).await?;
                if held.is_some() {
                    File::set_page_count(c, &file_id, total).await?;
                }
                Ok::<_, DbError>(held.is_some())
            }
            .boxed()
        })
        .await?;
    if !held {
        return Err(lease_lost(worker, task).await);
    }
    // A TIFF's pages are counted only now; the others' were reserved when the count came.
    reserve_pages(worker, task, total as u64).await?;
    // `dir` goes with the result, and is dropped on every early return above.
    Ok((
        file,
        Source {
            path: source,
            _dir: dir,
        },
        pages,
    ))
}

/// Stores a finished (or failed) page as a checkpoint, adds it to `pages` and publishes the
/// progress. Fails the task once more pages have failed than the ratio allows.
async fn store_page(
    worker: &Worker,
    task: &Task,
    owner: &str,
    pages: &mut Vec<PageResult>,
    page: PageResult,
    known_total: Option<usize>,
) -> Result<(), TaskError> {
    if let Some(failure) = &page.failure {
        tracing::warn!(task = %task.id, page = pages.len() + 1, code = %failure.code, message = %failure.message, "page failed");
    }
    let key = BlobKey::checkpoint(&task.user_id, task.created_at, &task.id, pages.len() + 1);
    let json =
        serde_json::to_vec(&page).map_err(|e| TaskError::permanent("internal", e.to_string()))?;
    worker.app.blobs.put_bytes(&key, Bytes::from(json)).await?;
    pages.push(page);
    if let Some(total) = known_total {
        check_failed_pages(worker, pages, total)?;
    }
    let updated = publish_progress(worker, task, owner, pages.len(), known_total).await?;
    let step = crate::timeline::Step::page(&updated, &worker.id);
    crate::timeline::record(&worker.app, &task.id, step).await;
    Ok(())
}

/// Records `done` of `total` pages on the task and tells the listeners; fails once this worker
/// no longer holds the task.
async fn publish_progress(
    worker: &Worker,
    task: &Task,
    owner: &str,
    done: usize,
    total: Option<usize>,
) -> Result<Task, TaskError> {
    let (done, total) = (done as i32, total.map(|t| t as i32));
    let (id, holder) = (task.id.clone(), owner.to_owned());
    let updated = worker
        .app
        .db
        .run(move |c| async move { Task::set_progress(c, &id, &holder, done, total).await }.boxed())
        .await?;
    match updated {
        Some(updated) => {
            worker.app.events.task_updated(&updated).await;
            Ok(updated)
        }
        None => Err(lease_lost(worker, task).await),
    }
}

/// Fails the task when more of its `total` pages failed than `max_failed_page_ratio` allows,
/// with the code of the last failed page.
fn check_failed_pages(
    worker: &Worker,
    pages: &[PageResult],
    total: usize,
) -> Result<(), TaskError> {
    let mut failures = pages.iter().filter_map(|p| p.failure.as_ref());
    let Some(last) = failures.next_back() else {
        return Ok(());
    };
    let failed = failures.count() + 1;
    if failed as f64 <= worker.options.max_failed_page_ratio * total as f64 {
        return Ok(());
    }
    let mut message = last.message.clone();
    if total > 1 {
        message += &format!(" ({failed} of {total} pages failed)");
    }
    Err(TaskError::permanent(last.code.clone(), message))
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
    let id = task.id.clone();
    let found = worker
        .app
        .db
        .run(move |c| async move { Task::find(c, &id).await }.boxed())
        .await;
    match found {
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

/// One page through the engine; an error or a crash is that page's failure.
fn recognise_page(
    engine: &dyn Engine,
    image: &RgbImage,
    options: &PageOptions,
    index: usize,
) -> Result<PageResult, TaskError> {
    let recognise = || engine.recognize(image, options);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(recognise)) {
        Ok(Ok(page)) => Ok(page),
        Ok(Err(e)) => Err(TaskError::permanent(
            "engine_error",
            format!("page {}: {e}", index + 1),
        )),
        Err(_) => Err(TaskError::permanent(
            "internal",
            format!("the engine crashed on page {}", index + 1),
        )),
    }
}

/// The document's pages held against its owner's monthly quota, in place of the one held
/// since upload; a document with more pages than are left fails here (`crate::quota::reserve`).
async fn reserve_pages(worker: &Worker, task: &Task, pages: u64) -> Result<(), TaskError> {
    let (id, user_id) = (task.id.clone(), task.user_id.clone());
    let install = worker.app.settings.get().quota;
    let reserved = worker
        .app
        .db
        .run(move |c| {
            async move { crate::quota::reserve(c, &id, &user_id, pages, install).await }.boxed()
        })
        .await?;
    reserved.map_err(|refusal| TaskError::permanent("quota_exceeded", refusal.to_string()))
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
    (reading, page_options): (ReadOptions, PageOptions),
    done: usize,
    tx: mpsc::Sender<PageMessage>,
) -> Result<(), TaskError> {
    let spawned = std::thread::Builder::new()
        .name("ocrd-pages".into())
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut pages = document::open(&source, limits, &reading)?;
                if let Some(total) = pages.page_count()
                    && tx.blocking_send(PageMessage::Total(total)).is_err()
                {
                    return Ok(());
                }
                pages.skip_pages(done)?;
                let independent = pages.pages_fail_alone();
                for (index, page) in pages.enumerate().map(|(i, page)| (i + done, page)) {
                    let result = match page {
                        // A born-digital page: its own text, no OCR.
                        Ok(PageInput::Text(text)) => Ok(text),
                        Ok(PageInput::Image(image)) => {
                            recognise_page(&*engine, &image, &page_options, index)
                        }
                        // A PDF page that cannot be drawn costs that page; a TIFF that breaks
                        // ends there.
                        Err(e) if independent => Err(TaskError::permanent(
                            e.code(),
                            format!("page {}: {e}", index + 1),
                        )),
                        Err(e) => return Err(e.into()),
                    };
                    if tx.blocking_send(PageMessage::Page(result)).is_err() {
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
        code: "internal".into(),
        message: format!("cannot start a page thread: {e}"),
    })
}
