//! Submitting documents: the one path from an upload to a queued task, shared by the HTTP API
//! and by library callers.
//!
//! The body streams straight to blob storage (sha256 and size computed on the way); the type
//! is sniffed from the first bytes, never taken from the client. The file and task rows are
//! written in one transaction, then the task id is pushed and an event published. A failed
//! push loses nothing: the task is `queued` in the database and the reconciler pushes it.

use bytes::Bytes;
use futures::{FutureExt, Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::blobs::{BlobError, BlobKey};
use crate::config::EngineKind;
use crate::db::DbError;
use crate::db::models::{NewFile, NewTask, Task, new_id, now};
use crate::document::Kind;
use crate::ocr::lang::Lang;
use crate::render::Format;

/// Per-task options, stored with the task as JSON. Fields unknown to this version are ignored,
/// so that during a rolling upgrade an older worker still runs tasks a newer server stored
/// (it reads them with its defaults for what it does not know).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskOptions {
    /// The result formats to produce.
    pub formats: Vec<Format>,
    pub ocr: OcrPolicy,
    /// The password of an encrypted PDF, kept with the task so that any worker can open it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Password>,
    /// The scripts the document is written in; `None` takes the worker's `ocr.lang`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<Lang>,
    /// Days the task is kept once finished; `None`: its owner's. Kept in its own column.
    #[serde(skip)]
    pub retention_days: Option<i32>,
    /// A one-off webhook for the task's end; kept in its own columns.
    #[serde(skip)]
    pub callback: Option<Callback>,
}

/// Where a task's end is posted, and the secret that signs it (`crate::webhooks`).
#[derive(Clone, PartialEq, Eq)]
pub struct Callback {
    pub url: String,
    pub secret: String,
}

impl std::fmt::Debug for Callback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Callback({})", self.url)
    }
}

impl Default for TaskOptions {
    fn default() -> Self {
        TaskOptions {
            formats: vec![Format::Hocr, Format::Txt, Format::Json],
            ocr: OcrPolicy::Auto,
            password: None,
            lang: None,
            retention_days: None,
            callback: None,
        }
    }
}

/// A document password: stored as it is, never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    pub fn new(value: impl Into<String>) -> Password {
        Password(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A page that failed in a task that still completed: its number (from 1) and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PageWarning {
    pub page: u32,
    /// A stable code: `page_timeout`, `engine_error`, `undecodable`, …
    pub code: String,
    pub message: String,
}

/// Whether to OCR pages that already carry text (born-digital PDFs). Images always have to be
/// read, so for them the three are the same.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OcrPolicy {
    /// Use a page's text layer where it has real text, OCR the others.
    #[default]
    Auto,
    /// OCR every page.
    Force,
    /// Text layers only.
    Skip,
}

impl std::str::FromStr for OcrPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(OcrPolicy::Auto),
            "force" => Ok(OcrPolicy::Force),
            "skip" => Ok(OcrPolicy::Skip),
            other => Err(format!("ocr must be auto, force or skip, not `{other}`")),
        }
    }
}

impl TaskOptions {
    /// How the task's document is read.
    pub fn read_options(&self) -> crate::document::ReadOptions {
        crate::document::ReadOptions {
            policy: self.ocr,
            password: self.password.clone(),
        }
    }

    /// What the engine is asked for each page.
    pub fn page_options(&self) -> crate::ocr::PageOptions {
        crate::ocr::PageOptions {
            lang: self.lang.clone(),
        }
    }

    /// The options stored with a task; a row written by another version falls back to the
    /// defaults for what it lacks.
    pub fn parse(json: &str) -> Result<TaskOptions, serde_json::Error> {
        serde_json::from_str(json)
    }

    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the file is empty")]
    Empty,
    #[error("not a supported document type (PNG, JPEG, TIFF, WebP, BMP or PDF)")]
    UnsupportedType,
    #[error("the file is larger than {0} bytes")]
    TooLarge(u64),
    /// Maintenance: `maintenance.read_only` is on.
    #[error("ocrd is read-only for maintenance and accepts no uploads for now; try again later")]
    ReadOnly,
    /// The client's body failed (disconnected, malformed multipart).
    #[error("reading the upload: {0}")]
    Body(BoxError),
    #[error(transparent)]
    Blob(BlobError),
    #[error(transparent)]
    Db(#[from] DbError),
    /// The storing task panicked, or the runtime is shutting down.
    #[error("storing the upload was aborted: {0}")]
    Aborted(String),
    /// Over one of the account's quotas: nothing was kept.
    #[error(transparent)]
    Quota(#[from] crate::quota::Refusal),
}

impl From<crate::quota::QuotaError> for SubmitError {
    fn from(e: crate::quota::QuotaError) -> Self {
        match e {
            crate::quota::QuotaError::Refused(refusal) => SubmitError::Quota(refusal),
            crate::quota::QuotaError::Db(e) => SubmitError::Db(e),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl From<BlobError> for SubmitError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::Body(e) => match e.downcast::<SubmitError>() {
                Ok(ours) => *ours,
                Err(theirs) => SubmitError::Body(theirs),
            },
            e => SubmitError::Blob(e),
        }
    }
}

/// What is being submitted, besides the body.
#[derive(Clone, Debug)]
pub struct Submission<'a> {
    pub user_id: &'a str,
    /// The client's file name: kept in the database, sanitised in the blob key.
    pub filename: &'a str,
    /// Default: `ocr.engine`.
    pub engine: Option<EngineKind>,
    pub options: TaskOptions,
    pub idempotency_key: Option<&'a str>,
}

/// Stores the body and queues a task for it. With an idempotency key the user already used,
/// nothing is uploaded and the original task is returned with `false`.
///
/// The type is sniffed from the first bytes before anything is stored, so an unsupported or
/// empty file leaves nothing behind; a body over the `limits.max_upload_bytes` setting is cut off and its
/// partial upload aborted.
///
/// Storing and recording run as a task of their own, fed the body through a channel: a caller
/// dropped mid-upload (a client that hangs up) ends the body with an error, so the partial
/// upload is aborted; a caller dropped after the last byte leaves a complete, recorded task.
/// Either way nothing is left half-written.
pub async fn submit<S, E>(
    app: &App,
    submission: Submission<'_>,
    body: S,
) -> Result<(Task, bool), SubmitError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Into<BoxError>,
{
    submit_then(app, submission, body, std::future::ready(Ok(None))).await
}

/// What a form sent after its file: the engine and options to record instead of those given
/// with the [`Submission`].
#[derive(Clone, Debug)]
pub struct Trailer {
    pub engine: Option<EngineKind>,
    pub options: TaskOptions,
}

/// [`submit`] for a form whose fields may follow the file (generated clients send the file
/// first): `trailer` runs once the body has ended, and what it returns is recorded. Its error
/// aborts the upload like a body error.
pub async fn submit_then<S, E, T>(
    app: &App,
    submission: Submission<'_>,
    body: S,
    trailer: T,
) -> Result<(Task, bool), SubmitError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Into<BoxError>,
    T: Future<Output = Result<Option<Trailer>, BoxError>>,
{
    if app.settings.get().read_only {
        return Err(SubmitError::ReadOnly);
    }
    if let Some(key) = submission.idempotency_key {
        let (user_id, key) = (submission.user_id.to_owned(), key.to_owned());
        let found = app
            .db
            .run(move |c| {
                async move { Task::find_by_idempotency_key(c, &user_id, &key).await }.boxed()
            })
            .await?;
        if let Some(task) = found {
            return Ok((task, false));
        }
    }
    // Before a byte is stored; the body is then cut at what the account may still hold.
    let allowance = crate::quota::check_upload(app, submission.user_id).await?;
    let (sender, chunks) = tokio::sync::mpsc::channel::<Chunk>(2);
    let (trailer_sender, trailer_received) = tokio::sync::oneshot::channel();
    let owned = OwnedSubmission::from(&submission);
    let detached = app.clone();
    let stored = app.finish(async move {
        store_and_record(
            &detached,
            owned,
            allowance,
            body_of(chunks),
            trailer_received,
        )
        .await
    });
    let mut body = std::pin::pin!(body);
    let mut stored = std::pin::pin!(stored);
    let mut trailer = std::pin::pin!(trailer);
    let mut trailer_sender = Some(trailer_sender);
    loop {
        // Pump the client's body into the channel until it ends, or until the stored side
        // answers early (a wrong type, too large, a storage error).
        let chunk = tokio::select! {
            outcome = &mut stored => return joined(outcome),
            chunk = body.next() => chunk,
        };
        let item = match chunk {
            Some(Ok(bytes)) => Chunk::Data(bytes),
            Some(Err(e)) => Chunk::Failed(e.into()),
            None => {
                // The fields after the file, read before the storing side is told the body
                // is complete; it records what they say.
                let read = tokio::select! {
                    outcome = &mut stored => return joined(outcome),
                    read = &mut trailer => read,
                };
                match read {
                    Ok(read) => {
                        if let Some(sender) = trailer_sender.take() {
                            let _ = sender.send(read);
                        }
                        Chunk::End
                    }
                    Err(e) => Chunk::Failed(e),
                }
            }
        };
        let last = !matches!(item, Chunk::Data(_));
        tokio::select! {
            outcome = &mut stored => return joined(outcome),
            sent = sender.send(item) => if sent.is_err() { break },
        }
        if last {
            break;
        }
    }
    joined(stored.await)
}

type Submitted = Result<(Task, bool), SubmitError>;

/// The storing task's outcome; a panic in it is an error like the others.
fn joined(outcome: Result<Submitted, tokio::task::JoinError>) -> Submitted {
    outcome.unwrap_or_else(|e| Err(SubmitError::Aborted(e.to_string())))
}

/// One message from the caller's body to the storing task.
enum Chunk {
    Data(Bytes),
    Failed(BoxError),
    End,
}

/// The body as the storing task reads it: a channel closed without [`Chunk::End`] means the
/// caller went away, which is an error, never a shorter file.
fn body_of(
    chunks: tokio::sync::mpsc::Receiver<Chunk>,
) -> impl Stream<Item = Result<Bytes, BoxError>> + Send + 'static {
    futures::stream::unfold(Some(chunks), |chunks| async move {
        let mut chunks = chunks?;
        match chunks.recv().await {
            Some(Chunk::Data(bytes)) => Some((Ok(bytes), Some(chunks))),
            Some(Chunk::Failed(e)) => Some((Err(e), None)),
            Some(Chunk::End) => None,
            None => Some((Err("the client went away mid-upload".into()), None)),
        }
    })
}

/// [`Submission`] with its own strings, for the storing task.
struct OwnedSubmission {
    user_id: String,
    filename: String,
    engine: Option<EngineKind>,
    options: TaskOptions,
    idempotency_key: Option<String>,
}

impl From<&Submission<'_>> for OwnedSubmission {
    fn from(s: &Submission<'_>) -> Self {
        OwnedSubmission {
            user_id: s.user_id.to_owned(),
            filename: Some(crate::names::clean(s.filename, 255))
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "upload".into()),
            engine: s.engine,
            options: s.options.clone(),
            idempotency_key: s.idempotency_key.map(str::to_owned),
        }
    }
}

async fn store_and_record(
    app: &App,
    mut submission: OwnedSubmission,
    allowance: crate::quota::Allowance,
    body: impl Stream<Item = Result<Bytes, BoxError>> + Send,
    trailer: tokio::sync::oneshot::Receiver<Option<Trailer>>,
) -> Result<(Task, bool), SubmitError> {
    let mut body = std::pin::pin!(body);
    // Enough of the head to sniff the type.
    let mut head: Vec<Bytes> = Vec::new();
    let mut head_len = 0;
    while head_len < 16 {
        match body.next().await {
            Some(chunk) => {
                let chunk = chunk.map_err(SubmitError::Body)?;
                head_len += chunk.len();
                head.push(chunk);
            }
            None => break,
        }
    }
    let first: Vec<u8> = head
        .iter()
        .flat_map(|c| c.iter().copied())
        .take(16)
        .collect();
    let kind = match (head_len, Kind::sniff(&first)) {
        (0, _) => return Err(SubmitError::Empty),
        (_, None) => return Err(SubmitError::UnsupportedType),
        (_, Some(kind)) => kind,
    };

    let max = app.settings.get().max_upload_bytes;
    let mut seen = 0u64;
    let limited = futures::stream::iter(head.into_iter().map(Ok))
        .chain(body)
        .map(move |chunk: Result<Bytes, BoxError>| {
            let chunk = chunk?;
            seen += chunk.len() as u64;
            if seen > max {
                return Err(Box::new(SubmitError::TooLarge(max)) as BoxError);
            }
            if let Some(refusal) = allowance.exceeded_by(seen) {
                return Err(Box::new(SubmitError::Quota(refusal)) as BoxError);
            }
            Ok(chunk)
        });

    let file_id = new_id();
    let at = now();
    let key = BlobKey::upload(&submission.user_id, at, &file_id, &submission.filename);
    let stored = app.blobs.put_stream(&key, limited).await?;
    // Sent before the body's end, so it is here unless the caller went away meanwhile.
    match trailer.await {
        Ok(Some(trailer)) => {
            submission.engine = trailer.engine;
            submission.options = trailer.options;
        }
        Ok(None) => {}
        Err(_) => {
            delete_quietly(app, &key).await;
            return Err(SubmitError::Body("the client went away mid-upload".into()));
        }
    }
    let file = NewFile {
        id: file_id,
        user_id: submission.user_id,
        blob_key: key.to_string(),
        filename: submission.filename,
        content_type: kind.media_type().to_owned(),
        size_bytes: stored.size as i64,
        sha256: stored.sha256,
        page_count: None,
        created_at: at,
    };
    let engine = submission.engine.unwrap_or(app.config.ocr.engine);
    let queued = enqueue(
        app,
        &file,
        engine,
        &submission.options,
        submission.idempotency_key.as_deref(),
    )
    .await;
    match &queued {
        // A concurrent request with the same key won: its upload stays, this one goes.
        Ok((_, false)) | Err(_) => delete_quietly(app, &key).await,
        Ok((_, true)) => {}
    }
    queued
}

/// Records a stored file and its queued task, pushes the task id and publishes the event.
/// The second half of [`submit`], for files already in blob storage.
pub async fn enqueue(
    app: &App,
    file: &NewFile,
    engine: EngineKind,
    options: &TaskOptions,
    idempotency_key: Option<&str>,
) -> Result<(Task, bool), SubmitError> {
    let retention_days = options.retention_days;
    let callback = options.callback.clone();
    let options = options.to_json();
    let max_attempts = app.config.worker.max_attempts as i32;
    let (file, idempotency_key) = (file.clone(), idempotency_key.map(str::to_owned));
    let (task, created) = app
        .db
        .run(move |c| {
            async move {
                let new = NewTask {
                    engine: engine.as_str(),
                    options: &options,
                    priority: 0,
                    max_attempts,
                    idempotency_key: idempotency_key.as_deref(),
                    retention_days,
                    callback: callback
                        .as_ref()
                        .map(|c| (c.url.as_str(), c.secret.as_str())),
                };
                Task::create(c, &file, new).await
            }
            .boxed()
        })
        .await?;
    if created {
        crate::timeline::record(app, &task.id, crate::timeline::Step::queued()).await;
        announce_queued(app, &task).await;
    }
    Ok((task, created))
}

/// Cancels a queued or processing task and tells its watchers; a running task's worker stops
/// at its next page and removes what it stored. `None`: the task was in no state to cancel.
pub async fn cancel(app: &App, task_id: &str) -> Result<Option<Task>, DbError> {
    let id = task_id.to_owned();
    let cancelled = app
        .db
        .run(move |c| async move { Task::cancel(c, &id).await }.boxed())
        .await?;
    if let Some(task) = &cancelled {
        crate::timeline::record(app, &task.id, crate::timeline::Step::cancelled()).await;
        app.events.task_updated(task).await;
    }
    Ok(cancelled)
}

/// Queues a failed or cancelled task again with a fresh attempt budget. `None`: the task was
/// in no state to retry.
pub async fn retry(app: &App, task_id: &str) -> Result<Option<Task>, DbError> {
    let id = task_id.to_owned();
    let retried = app
        .db
        .run(move |c| {
            async move {
                // What the last run read is counted before its pages are reserved again.
                crate::quota::settle(c, Some(&id)).await?;
                Task::retry(c, &id).await
            }
            .boxed()
        })
        .await?;
    if let Some(task) = &retried {
        crate::timeline::record(app, &task.id, crate::timeline::Step::retried()).await;
        announce_queued(app, task).await;
    }
    Ok(retried)
}

/// Tells the workers and the task's watchers that a task is (again) `queued` in the database.
/// A queue outage is not an error: the reconciler pushes what the queue lost.
pub async fn announce_queued(app: &App, task: &Task) {
    if let Err(e) = app.queue.push(&task.id).await {
        tracing::warn!(task = %task.id, error = %e, "task queued in the database only; the reconciler will push it");
    }
    app.events.task_updated(task).await;
}

async fn delete_quietly(app: &App, key: &BlobKey) {
    if let Err(e) = app.blobs.delete(key).await {
        tracing::warn!(key = %key, error = %e, "could not delete an unused upload");
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("no such task")]
    NotFound,
    #[error(transparent)]
    Db(DbError),
    #[error(transparent)]
    Blob(#[from] BlobError),
}

impl From<DbError> for DeleteError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound => DeleteError::NotFound,
            e => DeleteError::Db(e),
        }
    }
}

/// Deletes a user's task: cancels it if it is still running (its worker stops at the next
/// heartbeat and cleans up what it uploads after this), then removes its rows, its result
/// objects and, when no other task uses it, the uploaded file.
///
/// It runs to the end as a task of its own, even if the caller stops waiting, so that rows are
/// never gone while their objects stay.
pub async fn delete(app: &App, user_id: &str, task_id: &str) -> Result<(), DeleteError> {
    if !crate::db::models::is_id(task_id) {
        return Err(DeleteError::NotFound);
    }
    let (detached, user_id, task_id) = (app.clone(), user_id.to_owned(), task_id.to_owned());
    app.finish(async move { delete_detached(&detached, user_id, task_id).await })
        .await
        .unwrap_or_else(|e| Err(DeleteError::Db(DbError::Aborted(e.to_string()))))
}

async fn delete_detached(app: &App, user_id: String, task_id: String) -> Result<(), DeleteError> {
    let (task, cancelled) = {
        let (user_id, task_id) = (user_id.clone(), task_id.clone());
        app.db
            .run(move |c| {
                async move {
                    let task = Task::find_for_user(c, &user_id, &task_id).await?;
                    let cancelled = Task::cancel(c, &task.id).await?;
                    // The pages it read stay counted against its owner's month.
                    crate::quota::settle(c, Some(&task.id)).await?;
                    Ok::<_, DbError>((task, cancelled))
                }
                .boxed()
            })
            .await?
    };
    if let Some(cancelled) = cancelled {
        app.events.task_updated(&cancelled).await;
    }
    let (task, result, file) = app
        .db
        .run(move |c| async move { Task::delete_for_user(c, &user_id, &task.id).await }.boxed())
        .await?;
    // Every format's key, not only those recorded: a worker may have uploaded some before
    // it noticed the cancellation.
    let mut keys: Vec<BlobKey> = Format::ALL
        .iter()
        .map(|f| BlobKey::result(&task.user_id, task.created_at, &task.id, f.extension()))
        .collect();
    if let Some(result) = result {
        keys.extend(
            result
                .blob_keys
                .0
                .values()
                .filter_map(|k| BlobKey::parse(k).ok()),
        );
    }
    if let Some(file) = file {
        keys.push(BlobKey::parse(&file.blob_key)?);
    }
    // Page checkpoints of a task that was still running.
    let checkpoints = BlobKey::checkpoints(&task.user_id, task.created_at, &task.id);
    match app.blobs.list(&checkpoints).await {
        Ok(found) => keys.extend(found.iter().filter_map(|k| BlobKey::parse(k).ok())),
        Err(e) => {
            tracing::error!(prefix = %checkpoints, error = %e, "could not list a deleted task's checkpoints")
        }
    }
    // The rows are gone, so the task is gone for the user whatever storage says now; an
    // object that cannot be deleted is logged for the operator rather than failing the call.
    for key in &keys {
        if let Err(e) = app.blobs.delete(key).await {
            tracing::error!(key = %key, error = %e, "could not delete a deleted task's object; remove it by hand");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip_and_tolerate_fields_of_newer_versions() {
        let options = TaskOptions {
            lang: Some("latin,greek".parse().expect("valid")),
            ..TaskOptions::default()
        };
        let json = options.to_json();
        assert!(json.contains(r#""lang":"latin,greek""#), "{json}");
        assert_eq!(TaskOptions::parse(&json).expect("parses"), options);
        // Written by a newer server: what this worker does not know is left out.
        let newer = r#"{"formats":["txt"],"lang":"english","priority":5}"#;
        let parsed = TaskOptions::parse(newer).expect("parses");
        assert_eq!(parsed.formats, vec![Format::Txt]);
        assert_eq!(
            parsed.page_options().lang,
            Some("english".parse().expect("valid"))
        );
        // Written before `lang` existed: the worker's own `ocr.lang` applies.
        assert_eq!(TaskOptions::parse("{}").expect("parses").lang, None);
        assert!(TaskOptions::parse(r#"{"lang":"klingon"}"#).is_err());
    }
}
