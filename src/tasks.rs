//! Submitting documents: the one path from an upload to a queued task, shared by the HTTP API
//! and by library callers.
//!
//! The body streams straight to blob storage (sha256 and size computed on the way); the type
//! is sniffed from the first bytes, never taken from the client. The file and task rows are
//! written in one transaction, then the task id is pushed and an event published. A failed
//! push loses nothing: the task is `queued` in the database and the reconciler pushes it.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::blobs::{BlobError, BlobKey};
use crate::config::EngineKind;
use crate::db::DbError;
use crate::db::models::{NewFile, NewTask, Task, new_id, now};
use crate::document::Kind;
use crate::render::Format;

/// Per-task options, stored with the task as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskOptions {
    /// The result formats to produce.
    pub formats: Vec<Format>,
}

impl Default for TaskOptions {
    fn default() -> Self {
        TaskOptions {
            formats: vec![Format::Hocr, Format::Txt, Format::Json],
        }
    }
}

impl TaskOptions {
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
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Db(#[from] DbError),
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
pub async fn submit<S, E>(
    app: &App,
    submission: Submission<'_>,
    body: S,
) -> Result<(Task, bool), SubmitError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Some(key) = submission.idempotency_key {
        let mut conn = app.db.get().await?;
        if let Some(task) =
            Task::find_by_idempotency_key(&mut conn, submission.user_id, key).await?
        {
            return Ok((task, false));
        }
    }
    let file_id = new_id();
    let at = now();
    let key = BlobKey::upload(submission.user_id, at, &file_id, submission.filename);
    // The first bytes, kept on the way through for sniffing.
    let mut head = Vec::with_capacity(16);
    let body = body.map(|chunk| {
        if let Ok(bytes) = &chunk
            && head.len() < 16
        {
            let take = (16 - head.len()).min(bytes.len());
            head.extend_from_slice(&bytes[..take]);
        }
        chunk
    });
    let stored = app.blobs.put_stream(&key, body).await?;
    let kind = match (stored.size, Kind::sniff(&head)) {
        (0, _) => Err(SubmitError::Empty),
        (_, None) => Err(SubmitError::UnsupportedType),
        (_, Some(kind)) => Ok(kind),
    };
    let kind = match kind {
        Ok(kind) => kind,
        Err(e) => {
            delete_quietly(app, &key).await;
            return Err(e);
        }
    };
    let file = NewFile {
        id: file_id,
        user_id: submission.user_id.to_owned(),
        blob_key: key.to_string(),
        filename: submission.filename.to_owned(),
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
        submission.idempotency_key,
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
    let options = options.to_json();
    let new = NewTask {
        engine: engine.as_str(),
        options: &options,
        priority: 0,
        max_attempts: app.config.worker.max_attempts as i32,
        idempotency_key,
    };
    let mut conn = app.db.get().await?;
    let (task, created) = Task::create(&mut conn, file, new).await?;
    drop(conn);
    if created {
        if let Err(e) = app.queue.push(&task.id).await {
            tracing::warn!(task = %task.id, error = %e, "task queued in the database only; the reconciler will push it");
        }
        app.events.task_updated(&task).await;
    }
    Ok((task, created))
}

async fn delete_quietly(app: &App, key: &BlobKey) {
    if let Err(e) = app.blobs.delete(key).await {
        tracing::warn!(key = %key, error = %e, "could not delete an unused upload");
    }
}
