//! The REST API under `/api`: JSON in, JSON out, errors as [`ApiError`].

pub mod account;
pub mod admin;
pub mod auth;
pub mod search;
pub mod tasks;
pub mod tokens;
pub mod webhooks;

use std::collections::{HashMap, HashSet};

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::models::{FileSummary, Task, TaskResult, TaskStatus, User, utc_time};
use crate::error::{ApiError, escape_markup};
use crate::render::Format;
use crate::tasks::{OcrPolicy, PageWarning, TaskOptions};

/// JSON with `<`, `>` and `&` escaped as `\u003c`, `\u003e`, `\u0026`: a value a user chose
/// (a file name) can never read as markup, even where a client mishandles the content type.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> HttpResponse {
    match serde_json::to_string(value) {
        Ok(text) => HttpResponse::build(status)
            .content_type("application/json")
            .body(escape_markup(&text)),
        Err(e) => actix_web::ResponseError::error_response(&ApiError::internal(e)),
    }
}

/// A page size from the query: `default` when absent, else 1 to `max`.
pub fn page_limit(asked: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    let limit = asked.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::invalid(format!("limit: 1 to {max}")));
    }
    Ok(limit)
}

/// A keyset cursor from the query: the last id of the previous page, if any.
pub fn page_cursor(asked: Option<&str>) -> Result<Option<String>, ApiError> {
    match asked {
        Some(c) if !crate::db::models::is_id(c) => Err(ApiError::invalid(
            "cursor: pass next_cursor of the previous page",
        )),
        other => Ok(other.map(str::to_owned)),
    }
}

/// Records a change or an access by `user` in the audit log. What cannot be recorded is not
/// done or served: the error goes back to the caller.
pub async fn audit(
    req: &actix_web::HttpRequest,
    app: &crate::app::App,
    user: &User,
    action: &str,
    target: &str,
    detail: Option<serde_json::Value>,
) -> Result<(), ApiError> {
    let actor = crate::audit::Actor::of(req, Some(user));
    crate::audit::record(
        app,
        &actor,
        action,
        Some(target),
        crate::audit::Outcome::Success,
        detail,
    )
    .await
    .map_err(ApiError::from)
}

#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub email: String,
    /// `user` or `admin`.
    pub role: String,
    #[serde(with = "utc_time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: chrono::NaiveDateTime,
}

impl From<&User> for UserView {
    fn from(user: &User) -> Self {
        UserView {
            id: user.id.clone(),
            email: user.email.clone(),
            role: user.role.as_str().to_owned(),
            created_at: user.created_at,
        }
    }
}

/// A task status, as filters name it.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum StatusName {
    Queued,
    Processing,
    Completed,
    Failed,
    Cancelled,
}

/// A result format, as downloads name it (with the aliases accepted).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum FormatName {
    Html,
    Hocr,
    Txt,
    Text,
    Json,
    Pdf,
    Alto,
    Xml,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorView {
    pub code: String,
    pub message: String,
}

/// A task as clients see it.
#[derive(Serialize, ToSchema)]
pub struct TaskView {
    pub id: String,
    /// `queued`, `processing`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// The uploaded file's name, as the client sent it.
    pub filename: String,
    /// The uploaded file's size in bytes.
    pub file_size: i64,
    /// The uploaded file's media type, sniffed from its bytes.
    pub content_type: String,
    pub engine: String,
    /// Whether pages with a text layer were read from it (`auto`), always recognised
    /// (`force`), or only read from it (`skip`).
    pub ocr: OcrPolicy,
    /// The scripts asked for; `null`: the server's `ocr.lang`.
    pub lang: Option<String>,
    /// The formats asked for at upload.
    pub requested_formats: Vec<String>,
    pub pages_done: i32,
    pub pages_total: Option<i32>,
    /// Pages read from a PDF's own text layer; only on `GET /api/tasks/{id}` of a completed
    /// task.
    pub text_layer_pages: Option<i32>,
    /// The mean word confidence (0 to 1); only on `GET /api/tasks/{id}` of a completed task.
    pub mean_confidence: Option<f64>,
    pub attempts: i32,
    pub error: Option<ErrorView>,
    /// Pages that could not be read in a task that still completed (see
    /// `worker.max_failed_page_ratio`).
    pub warnings: Vec<PageWarning>,
    /// Result formats downloadable now: every format once completed (those not asked for are
    /// rendered on first download), none before.
    pub formats: Vec<String>,
    /// Whether `GET /api/tasks/{id}/thumbnail` has a picture of the first page.
    pub thumbnail: bool,
    /// Days the task is kept once finished, as chosen at upload (0: until deleted); `null`:
    /// the account's retention, else the install's.
    pub retention_days: Option<i32>,
    /// When the task and its results will be erased; only on `GET /api/tasks/{id}` of a
    /// finished task that is not kept until deleted.
    #[serde(with = "utc_time::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<chrono::NaiveDateTime>,
    /// Only in the answer to an upload: the user's latest earlier task of a file with the same
    /// bytes (sha256).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
    /// Where the task's end is posted, as given at upload.
    pub callback_url: Option<String>,
    /// Only in the answer to an upload with a `callback_url`: the `whsec_…` secret that signs
    /// its callbacks. Shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_secret: Option<String>,
    #[serde(with = "utc_time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: chrono::NaiveDateTime,
    #[serde(with = "utc_time")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: chrono::NaiveDateTime,
    #[serde(with = "utc_time::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<chrono::NaiveDateTime>,
    #[serde(with = "utc_time::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<chrono::NaiveDateTime>,
}

impl TaskView {
    pub fn new(task: &Task, file: &FileSummary) -> TaskView {
        let options = TaskOptions::parse(&task.options).unwrap_or_default();
        let formats = if task.status == TaskStatus::Completed {
            Format::ALL
                .iter()
                .map(|f| f.extension().to_owned())
                .collect()
        } else {
            Vec::new()
        };
        TaskView {
            id: task.id.clone(),
            status: task.status.as_str().to_owned(),
            filename: file.filename.clone(),
            file_size: file.size_bytes,
            content_type: file.content_type.clone(),
            engine: task.engine.clone(),
            ocr: options.ocr,
            lang: options.lang.as_ref().map(ToString::to_string),
            requested_formats: options
                .formats
                .iter()
                .map(|f| f.extension().to_owned())
                .collect(),
            pages_done: task.pages_done,
            pages_total: task.pages_total,
            text_layer_pages: None,
            mean_confidence: None,
            attempts: task.attempts,
            error: task.error_code.as_ref().map(|code| ErrorView {
                code: code.clone(),
                message: task.error_message.clone().unwrap_or_default(),
            }),
            warnings: task.page_warnings(),
            formats,
            thumbnail: false,
            retention_days: task.retention_days,
            expires_at: None,
            duplicate_of: None,
            callback_url: task.callback_url.clone(),
            callback_secret: None,
            created_at: task.created_at,
            updated_at: task.updated_at,
            started_at: task.started_at,
            finished_at: task.finished_at,
        }
    }

    /// Adds when the task will be erased (`crate::retention::expires_at`).
    pub fn with_expiry(mut self, at: Option<chrono::NaiveDateTime>) -> TaskView {
        self.expires_at = at;
        self
    }

    /// Adds what only the result row knows.
    pub fn with_result(mut self, result: &TaskResult) -> TaskView {
        self.text_layer_pages = Some(result.text_layer_pages);
        self.mean_confidence = result.mean_confidence;
        self.thumbnail = result.has_thumbnail();
        self
    }

    /// Views of a page of tasks: `files` by file id, and the ids of those with a thumbnail.
    pub fn with_files(
        tasks: &[Task],
        files: &HashMap<String, FileSummary>,
        thumbnails: &HashSet<String>,
    ) -> Vec<TaskView> {
        let unknown = FileSummary::default();
        tasks
            .iter()
            .map(|t| {
                let mut view = TaskView::new(t, files.get(&t.file_id).unwrap_or(&unknown));
                view.thumbnail = thumbnails.contains(&t.id);
                view
            })
            .collect()
    }
}
