//! Results of completed tasks: where each format's object is, and the formats nobody asked for
//! at upload, rendered from `result.json` (the whole page model) on first download and stored
//! beside the others.

use futures::FutureExt;

use crate::app::App;
use crate::blobs::{BlobError, BlobKey};
use crate::db::DbError;
use crate::db::models::{File, Task, TaskResult, TaskStatus};
use crate::render::{DocumentInfo, Format, PdfError, json};
use crate::tasks::TaskOptions;

#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    /// The format cannot be had: the message says why.
    #[error("{0}")]
    Missing(String),
    /// The stored page model or document could not be rendered.
    #[error("{0}")]
    Render(String),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The result row of a completed task; `None` before completion.
pub async fn of_completed(app: &App, task: &Task) -> Result<Option<TaskResult>, DbError> {
    if task.status != TaskStatus::Completed {
        return Ok(None);
    }
    let task_id = task.id.clone();
    match app
        .db
        .run(move |c| async move { TaskResult::find_by_task(c, &task_id).await }.boxed())
        .await
    {
        Ok(result) => Ok(Some(result)),
        Err(DbError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The object holding `format` of a completed task: the stored one, or one rendered now.
pub async fn object(
    app: &App,
    task: &Task,
    result: &TaskResult,
    format: Format,
) -> Result<BlobKey, ResultError> {
    let ext = format.extension();
    if let Some(key) = result.blob_keys.0.get(ext) {
        return Ok(BlobKey::parse(key)?);
    }
    // Rendered earlier on demand: a fixed key per format, which deleting the task removes.
    let key = BlobKey::result(&task.user_id, task.created_at, &task.id, ext);
    match app.blobs.head(&key).await {
        Ok(_) => return Ok(key),
        Err(BlobError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let model = result
        .blob_keys
        .0
        .get(Format::Json.extension())
        .ok_or_else(|| {
            ResultError::Missing(format!(
                "this task was completed before other formats could be made later; it has {} only",
                result
                    .blob_keys
                    .0
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let model = app.blobs.get_bytes(&BlobKey::parse(model)?).await?;
    let file_id = task.file_id.clone();
    let file = app
        .db
        .run(move |c| async move { File::find(c, &file_id).await }.boxed())
        .await?;
    // The searchable PDF is drawn from the document's pages; the others need the model only.
    let source = tempfile::NamedTempFile::new().map_err(|e| ResultError::Render(e.to_string()))?;
    if format == Format::Pdf {
        app.blobs
            .download_to(&BlobKey::parse(&file.blob_key)?, source.path())
            .await?;
    }
    let password = TaskOptions::parse(&task.options)
        .unwrap_or_default()
        .password;
    let limits = app.config.document_limits();
    let body = tokio::task::spawn_blocking(move || {
        let parsed =
            json::parse(&model).map_err(|e| ResultError::Render(format!("result.json: {e}")))?;
        let languages: Vec<&str> = parsed.languages.iter().map(String::as_str).collect();
        let info = DocumentInfo {
            source_name: &file.filename,
            engine: &parsed.engine,
            languages: &languages,
            source: source.path(),
            limits,
            password: password.as_ref(),
        };
        format
            .render(&parsed.pages, &info)
            .map_err(|e: PdfError| ResultError::Render(e.to_string()))
    })
    .await
    .map_err(|_| ResultError::Render("rendering crashed".into()))??;
    app.blobs.put_bytes(&key, body.into()).await?;
    // Recorded with the others (backups, orphan checks); a task deleted while rendering has
    // no row to record it in, and its deletion has already removed the fixed keys.
    let (id, path) = (task.id.clone(), key.to_string());
    let recorded = app
        .db
        .run(move |c| async move { TaskResult::add_blob_key(c, &id, ext, &path).await }.boxed())
        .await?;
    if !recorded {
        let _ = app.blobs.delete(&key).await;
        return Err(ResultError::Missing("the task was deleted".into()));
    }
    Ok(key)
}
