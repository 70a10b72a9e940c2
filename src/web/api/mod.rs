//! The REST API under `/api`: JSON in, JSON out, errors as [`ApiError`].

pub mod auth;
pub mod tasks;
pub mod tokens;

use std::collections::HashMap;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::models::{Task, TaskStatus, User, utc_time};
use crate::error::{ApiError, escape_markup};
use crate::tasks::{PageWarning, TaskOptions};

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
    pub engine: String,
    pub pages_done: i32,
    pub pages_total: Option<i32>,
    pub attempts: i32,
    pub error: Option<ErrorView>,
    /// Pages that could not be read in a task that still completed (see
    /// `worker.max_failed_page_ratio`).
    pub warnings: Vec<PageWarning>,
    /// Result formats available for download (`html`, `txt`, `json`); empty until completed.
    pub formats: Vec<String>,
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
    pub fn new(task: &Task, filename: &str) -> TaskView {
        let formats = if task.status == TaskStatus::Completed {
            TaskOptions::parse(&task.options)
                .unwrap_or_default()
                .formats
                .iter()
                .map(|f| f.extension().to_owned())
                .collect()
        } else {
            Vec::new()
        };
        TaskView {
            id: task.id.clone(),
            status: task.status.as_str().to_owned(),
            filename: filename.to_owned(),
            engine: task.engine.clone(),
            pages_done: task.pages_done,
            pages_total: task.pages_total,
            attempts: task.attempts,
            error: task.error_code.as_ref().map(|code| ErrorView {
                code: code.clone(),
                message: task.error_message.clone().unwrap_or_default(),
            }),
            warnings: task.page_warnings(),
            formats,
            created_at: task.created_at,
            updated_at: task.updated_at,
            started_at: task.started_at,
            finished_at: task.finished_at,
        }
    }

    pub fn with_names(tasks: &[Task], names: &HashMap<String, String>) -> Vec<TaskView> {
        tasks
            .iter()
            .map(|t| TaskView::new(t, names.get(&t.file_id).map_or("", String::as_str)))
            .collect()
    }
}
