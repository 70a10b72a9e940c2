//! `GET /api/admin/logs`: the recent log records of every process, filtered. The logic lives in
//! `crate::logs`; the live tail is on the WebSocket.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::super::json;
use crate::app::App;
use crate::auth::Operator;
use crate::error::ApiError;
use crate::logs::{LogFilter, LogRecord};

/// A level, as the log filter takes it: this one and the more severe.
#[derive(ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
pub enum LogLevel {
    ERROR,
    WARN,
    INFO,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// At least this level (default `INFO`: everything kept).
    #[param(value_type = Option<LogLevel>)]
    level: Option<String>,
    /// A part of the process name, e.g. `work` or a host name.
    process: Option<String>,
    /// Records about this task.
    task: Option<String>,
    /// `next_before` of the previous page: older records.
    #[param(pattern = "^[0-9]+(-[0-9]+)?$")]
    before: Option<String>,
    /// 1 to 500, default 200.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct LogPage {
    /// Newest first.
    pub records: Vec<LogRecord>,
    /// Pass as `before` for older records; `null` when there are none.
    pub next_before: Option<String>,
}

/// The recent log records (INFO and above) of every `serve` and `work` process, newest first.
/// Follow new ones live by sending `{"subscribe":"logs"}` on the WebSocket.
#[utoipa::path(get, path = "/api/admin/logs", operation_id = "admin_logs", tag = "admin", params(LogParams), responses(
    (status = 200, body = LogPage, description = "OK"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`"),
    (status = 503, description = "`unavailable`: Redis cannot be read"),
))]
pub async fn list(
    app: web::Data<App>,
    _: Operator,
    query: web::Query<LogParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = super::super::page_limit(query.limit, 200, 500)? as usize;
    let level = match query.level.as_deref() {
        None => None,
        Some(l @ ("ERROR" | "WARN" | "INFO")) => Some(l.to_owned()),
        Some(_) => return Err(ApiError::invalid("level: ERROR, WARN or INFO")),
    };
    if query.before.as_deref().is_some_and(|b| !is_record_id(b)) {
        return Err(ApiError::invalid(
            "before: the next_before of the previous page",
        ));
    }
    let filter = LogFilter {
        level,
        process: query.process.clone().filter(|p| !p.is_empty()),
        task: query.task.clone().filter(|t| !t.is_empty()),
        before: query.before.clone(),
    };
    let redis = app
        .redis
        .as_ref()
        .map(|pool| (pool, app.config.redis.key_prefix.as_str()));
    let records = crate::logs::recent(redis, &filter, limit)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "reading the log stream");
            ApiError::new(
                crate::error::Code::Unavailable,
                "the log stream cannot be read now; try again",
            )
        })?;
    let next_before = (records.len() == limit)
        .then(|| records.last().map(|r| r.id.clone()))
        .flatten();
    Ok(json(
        StatusCode::OK,
        &LogPage {
            records,
            next_before,
        },
    ))
}

/// A record id: a Redis stream id (`1700000000000-0`) or a counter.
fn is_record_id(id: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|c| c.is_ascii_digit());
    match id.split_once('-') {
        Some((ms, seq)) => digits(ms) && digits(seq),
        None => digits(id),
    }
}
