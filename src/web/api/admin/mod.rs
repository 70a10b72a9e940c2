//! The operators' API under `/api/admin`: every task (search, retry, cancel, bulk), the
//! workers (list, drain, resume) and the queue (pause, resume). Operators and admins only;
//! the logic lives in `crate::admin`.

pub mod invites;
pub mod logs;
pub mod settings;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{StatusName, TaskView, json};
use crate::admin::tasks::{BulkAction, BulkOutcome};
use crate::admin::workers::WorkerView;
use crate::app::App;
use crate::auth::{Administrator, Operator};
use crate::db::DbError;
use crate::db::models::{FoundTask, Order, Task, TaskFilter, TaskStatus, is_id, normalize_email};
use crate::error::{ApiError, Code};

/// Filters of the admin task list and of bulk actions; each one given narrows the match.
#[derive(Clone, Debug, Default, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct FilterParams {
    /// Only tasks in this status.
    #[param(value_type = Option<StatusName>)]
    #[schema(value_type = Option<StatusName>)]
    status: Option<String>,
    /// The owner's email.
    #[param(max_length = 254)]
    #[schema(max_length = 254)]
    user: Option<String>,
    /// `ppocr` or `qwen3vl`.
    #[param(max_length = 32)]
    #[schema(max_length = 32)]
    engine: Option<String>,
    /// A failure code, e.g. `undecodable`.
    #[param(max_length = 64)]
    #[schema(max_length = 64)]
    error: Option<String>,
    /// Created at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    #[schema(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// Created before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    #[schema(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
    /// A part of the file name, in any letter case.
    #[param(min_length = 1, max_length = 255)]
    #[schema(min_length = 1, max_length = 255)]
    filename: Option<String>,
    /// The start of the task id.
    #[param(pattern = "^[0-9a-fA-F-]{1,36}$")]
    #[schema(pattern = "^[0-9a-fA-F-]{1,36}$")]
    id: Option<String>,
}

fn time(field: &str, value: &Option<String>) -> Result<Option<chrono::NaiveDateTime>, ApiError> {
    value
        .as_deref()
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| t.naive_utc())
                .map_err(|_| {
                    ApiError::invalid(format!(
                        "{field}: an RFC 3339 time, e.g. 2026-12-01T00:00:00Z"
                    ))
                })
        })
        .transpose()
}

impl FilterParams {
    fn into_filter(self) -> Result<TaskFilter, ApiError> {
        let status = self
            .status
            .as_deref()
            .map(|s| {
                s.parse::<TaskStatus>().map_err(|_| {
                    ApiError::invalid(
                        "status: one of queued, processing, completed, failed, cancelled",
                    )
                })
            })
            .transpose()?;
        let bounded = |field: &str, value: &Option<String>, max: usize| match value {
            Some(v) if v.chars().count() > max => Err(ApiError::invalid(format!(
                "{field}: at most {max} characters"
            ))),
            _ => Ok(()),
        };
        bounded("user", &self.user, 254)?;
        bounded("engine", &self.engine, 32)?;
        bounded("error", &self.error, 64)?;
        bounded("filename", &self.filename, 255)?;
        if self.filename.as_deref() == Some("") {
            return Err(ApiError::invalid("filename: at least one character"));
        }
        if let Some(id) = &self.id
            && (id.is_empty()
                || id.len() > 36
                || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
        {
            return Err(ApiError::invalid(
                "id: 1 to 36 hexadecimal digits and dashes",
            ));
        }
        Ok(TaskFilter {
            status,
            user_email: self.user.as_deref().map(normalize_email),
            engine: self.engine,
            error_code: self.error,
            from: time("from", &self.from)?,
            to: time("to", &self.to)?,
            filename: self.filename,
            id_prefix: self.id.map(|id| id.to_ascii_lowercase()),
        })
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// `newest` (default) or `oldest` first.
    #[param(value_type = Option<OrderName>)]
    order: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    cursor: Option<String>,
}

/// The order of the admin task list.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum OrderName {
    Newest,
    Oldest,
}

/// A task as operators see it: the owner's view, its owner, and the worker holding it.
#[derive(Serialize, ToSchema)]
pub struct AdminTaskView {
    #[serde(flatten)]
    pub task: TaskView,
    pub owner_email: String,
    /// The worker holding it (while processing).
    pub worker: Option<String>,
    pub priority: i32,
}

impl From<&FoundTask> for AdminTaskView {
    fn from(found: &FoundTask) -> Self {
        AdminTaskView {
            task: TaskView::new(&found.task, &found.file),
            owner_email: found.owner_email.clone(),
            worker: found
                .task
                .lease_owner
                .as_deref()
                .map(|owner| owner.split('#').next().unwrap_or(owner).to_owned()),
            priority: found.task.priority,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AdminTaskList {
    pub tasks: Vec<AdminTaskView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Every account's tasks, filtered, a page at a time (keyset: no count per page).
#[utoipa::path(get, path = "/api/admin/tasks", operation_id = "admin_list_tasks", tag = "admin", params(FilterParams, PageParams), responses(
    (status = 200, body = AdminTaskList, description = "OK"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`: not an operator or admin"),
))]
pub async fn list_tasks(
    app: web::Data<App>,
    _: Operator,
    filter: web::Query<FilterParams>,
    page: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let filter = filter.into_inner().into_filter()?;
    let order = match page.order.as_deref() {
        None | Some("newest") => Order::Newest,
        Some("oldest") => Order::Oldest,
        Some(_) => return Err(ApiError::invalid("order: newest or oldest")),
    };
    let limit = super::page_limit(page.limit, 50, 200)?;
    let cursor = super::page_cursor(page.cursor.as_deref())?;
    let (found, next_cursor) =
        crate::admin::tasks::search(&app, filter, order, limit, cursor).await?;
    Ok(json(
        StatusCode::OK,
        &AdminTaskList {
            tasks: found.iter().map(AdminTaskView::from).collect(),
            next_cursor,
        },
    ))
}

async fn found(app: &App, id: &str) -> Result<FoundTask, ApiError> {
    let filter = TaskFilter {
        id_prefix: Some(id.to_owned()),
        ..TaskFilter::default()
    };
    if !is_id(id) {
        return Err(ApiError::task_not_found());
    }
    let (found, _) = crate::admin::tasks::search(app, filter, Order::Newest, 1, None).await?;
    found
        .into_iter()
        .next()
        .ok_or_else(ApiError::task_not_found)
}

/// A task as operators see it, with its whole timeline: workers, attempts and error detail.
#[derive(Serialize, ToSchema)]
pub struct AdminTaskDetail {
    #[serde(flatten)]
    pub task: AdminTaskView,
    pub attempts: i32,
    pub max_attempts: i32,
    pub timeline: Vec<crate::db::models::TaskEvent>,
}

/// Any account's task, with its timeline.
#[utoipa::path(get, path = "/api/admin/tasks/{id}", operation_id = "admin_task", tag = "admin", params(("id" = String, Path)), responses(
    (status = 200, body = AdminTaskDetail, description = "OK"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`"),
    (status = 404, description = "`task_not_found`"),
))]
pub async fn task_detail(
    app: web::Data<App>,
    _: Operator,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let found = found(&app, &id).await?;
    let timeline = crate::timeline::of(&app, &found.task.id).await?;
    let detail = AdminTaskDetail {
        attempts: found.task.attempts,
        max_attempts: found.task.max_attempts,
        task: AdminTaskView::from(&found),
        timeline,
    };
    Ok(json(StatusCode::OK, &detail))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriorityRequest {
    /// -100 to 100; 0 is every task's at upload. A queued task with a higher priority starts
    /// before those with a lower one.
    #[schema(minimum = -100, maximum = 100)]
    pub priority: i32,
}

/// Reprioritises any account's task: while it is queued, the next free worker takes it before
/// every task of a lower priority.
#[utoipa::path(post, path = "/api/admin/tasks/{id}/priority", operation_id = "admin_task_priority", tag = "admin", params(("id" = String, Path)), request_body = PriorityRequest, responses(
    (status = 200, body = AdminTaskView, description = "Changed"),
    (status = 400, description = "`invalid_request`"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`, `csrf_failed`"),
    (status = 404, description = "`task_not_found`"),
))]
pub async fn task_priority(
    req: actix_web::HttpRequest,
    app: web::Data<App>,
    Operator(current): Operator,
    id: web::Path<String>,
    body: web::Json<PriorityRequest>,
) -> Result<HttpResponse, ApiError> {
    let priority = body.priority;
    if !(-100..=100).contains(&priority) {
        return Err(ApiError::invalid("priority: -100 to 100"));
    }
    let task = found(&app, &id).await?;
    let old = task.task.priority;
    let task_id = task.task.id.clone();
    app.db
        .run(move |c| {
            futures::FutureExt::boxed(
                async move { Task::set_priority(c, &task_id, priority).await },
            )
        })
        .await?
        .ok_or_else(ApiError::task_not_found)?;
    let detail = serde_json::json!({"old": old, "new": priority});
    super::audit(
        &req,
        &app,
        &current.user,
        "task.priority",
        &task.task.id,
        Some(detail),
    )
    .await?;
    Ok(json(
        StatusCode::OK,
        &AdminTaskView::from(&found(&app, &id).await?),
    ))
}

/// Queues any account's failed or cancelled task again.
#[utoipa::path(post, path = "/api/admin/tasks/{id}/retry", operation_id = "admin_retry_task", tag = "admin", params(("id" = String, Path)), responses(
    (status = 202, body = AdminTaskView, description = "Queued again"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`, `csrf_failed`"),
    (status = 404, description = "`task_not_found`"), (status = 409, description = "`not_retryable`"),
))]
pub async fn retry_task(
    req: actix_web::HttpRequest,
    app: web::Data<App>,
    Operator(current): Operator,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let task = found(&app, &id).await?;
    crate::tasks::retry(&app, &task.task.id)
        .await?
        .ok_or_else(|| ApiError::not_retryable(task.task.status.as_str()))?;
    super::audit(&req, &app, &current.user, "task.retry", &task.task.id, None).await?;
    Ok(json(
        StatusCode::ACCEPTED,
        &AdminTaskView::from(&found(&app, &id).await?),
    ))
}

/// Cancels any account's queued or processing task.
#[utoipa::path(post, path = "/api/admin/tasks/{id}/cancel", operation_id = "admin_cancel_task", tag = "admin", params(("id" = String, Path)), responses(
    (status = 200, body = AdminTaskView, description = "Cancelled"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`, `csrf_failed`"),
    (status = 404, description = "`task_not_found`"), (status = 409, description = "`not_cancellable`"),
))]
pub async fn cancel_task(
    req: actix_web::HttpRequest,
    app: web::Data<App>,
    Operator(current): Operator,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let task = found(&app, &id).await?;
    crate::tasks::cancel(&app, &task.task.id)
        .await?
        .ok_or_else(|| ApiError::not_cancellable(task.task.status.as_str()))?;
    super::audit(
        &req,
        &app,
        &current.user,
        "task.cancel",
        &task.task.id,
        None,
    )
    .await?;
    Ok(json(
        StatusCode::OK,
        &AdminTaskView::from(&found(&app, &id).await?),
    ))
}

/// The names of [`FilterParams`]' fields: a bulk filter naming anything else is refused, so
/// that a misspelt filter can never widen an action to every task.
const FILTERS: [&str; 8] = [
    "status", "user", "engine", "error", "from", "to", "filename", "id",
];

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// Which tasks: the list's filters. `{}` matches every task.
    #[serde(default)]
    #[schema(value_type = FilterParams)]
    pub filter: serde_json::Map<String, serde_json::Value>,
    pub action: BulkAction,
    /// Only count what would be touched.
    #[serde(default)]
    pub dry_run: bool,
}

/// Retries, cancels or deletes every task a filter matches, not just one page. Try it with
/// `dry_run` first: it says how many tasks the action would go through.
#[utoipa::path(post, path = "/api/admin/tasks/bulk", operation_id = "admin_bulk_tasks", tag = "admin", request_body = BulkRequest, responses(
    (status = 200, body = BulkOutcome, description = "Done (or counted, for a dry run)"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`, `csrf_failed`"),
))]
pub async fn bulk(
    req: actix_web::HttpRequest,
    app: web::Data<App>,
    Operator(current): Operator,
    body: web::Json<BulkRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if let Some(unknown) = body.filter.keys().find(|k| !FILTERS.contains(&k.as_str())) {
        return Err(ApiError::invalid(format!(
            "filter: there is no filter `{unknown}`; the filters are {}",
            FILTERS.join(", ")
        )));
    }
    let asked = serde_json::Value::Object(body.filter);
    let filter: FilterParams = serde_json::from_value(asked.clone())
        .map_err(|e| ApiError::invalid(format!("filter: {e}")))?;
    let filter = filter.into_filter()?;
    let outcome = crate::admin::tasks::bulk(&app, filter, body.action, body.dry_run).await?;
    if !body.dry_run {
        let detail = serde_json::json!({
            "filter": asked, "action": body.action,
            "matched": outcome.matched, "changed": outcome.changed,
        });
        super::audit(
            &req,
            &app,
            &current.user,
            "tasks.bulk",
            "tasks",
            Some(detail),
        )
        .await?;
    }
    Ok(json(StatusCode::OK, &outcome))
}

#[derive(Serialize, ToSchema)]
pub struct WorkerList {
    pub workers: Vec<WorkerView>,
}

/// Every worker process: what it runs, its heartbeat, its tasks and its state.
#[utoipa::path(get, path = "/api/admin/workers", operation_id = "admin_list_workers", tag = "admin", responses(
    (status = 200, body = WorkerList, description = "OK"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`"),
))]
pub async fn list_workers(app: web::Data<App>, _: Operator) -> Result<HttpResponse, ApiError> {
    let workers = crate::admin::workers::list(&app).await?;
    Ok(json(StatusCode::OK, &WorkerList { workers }))
}

async fn drain(
    req: &actix_web::HttpRequest,
    app: &App,
    current: &crate::auth::CurrentUser,
    id: &str,
    drain: bool,
) -> Result<HttpResponse, ApiError> {
    match crate::admin::workers::set_drain(app, id, drain).await {
        Ok(worker) => {
            let action = if drain {
                "worker.drain"
            } else {
                "worker.resume"
            };
            super::audit(req, app, &current.user, action, id, None).await?;
            Ok(json(StatusCode::OK, &worker))
        }
        Err(DbError::NotFound) => Err(ApiError::new(
            Code::WorkerNotFound,
            format!("no worker {id:?} is registered"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Asks a worker to take no new work and finish what it runs (within one report interval).
#[utoipa::path(post, path = "/api/admin/workers/{id}/drain", operation_id = "admin_drain_worker", tag = "admin", params(("id" = String, Path)), responses(
    (status = 200, body = WorkerView, description = "Asked to drain"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`, `csrf_failed`"),
    (status = 404, description = "`worker_not_found`"),
))]
pub async fn drain_worker(
    req: actix_web::HttpRequest,
    app: web::Data<App>,
    Operator(current): Operator,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    drain(&req, &app, &current, &id, true).await
}

/// Lets a drained worker take work again.
#[utoipa::path(post, path = "/api/admin/workers/{id}/resume", operation_id = "admin_resume_worker", tag = "admin", params(("id" = String, Path)), responses(
    (status = 200, body = WorkerView, description = "Taking work again"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`, `csrf_failed`"),
    (status = 404, description = "`worker_not_found`"),
))]
pub async fn resume_worker(
    req: actix_web::HttpRequest,
    app: web::Data<App>,
    Operator(current): Operator,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    drain(&req, &app, &current, &id, false).await
}

#[derive(Serialize, ToSchema)]
pub struct QueueView {
    /// Workers take no new work while it is paused; uploads are still accepted and queued.
    pub paused: bool,
    /// Tasks waiting.
    pub queued: i64,
    /// How long the oldest waiting task has waited, in seconds.
    pub oldest_queued_secs: Option<f64>,
}

async fn queue_view(app: &App) -> Result<QueueView, ApiError> {
    let paused = crate::admin::queue::paused(app).await?;
    let (queued, oldest) = app
        .db
        .run(|c| futures::FutureExt::boxed(async move { Task::queue_stats(c).await }))
        .await?;
    Ok(QueueView {
        paused,
        queued,
        oldest_queued_secs: oldest
            .map(|at| (crate::db::models::now() - at).as_seconds_f64().max(0.0)),
    })
}

/// Whether the queue is paused, how many tasks wait and for how long.
#[utoipa::path(get, path = "/api/admin/queue", operation_id = "admin_queue", tag = "admin", responses(
    (status = 200, body = QueueView, description = "OK"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`"),
))]
pub async fn queue(app: web::Data<App>, _: Operator) -> Result<HttpResponse, ApiError> {
    Ok(json(StatusCode::OK, &queue_view(&app).await?))
}

/// Pauses the queue on every worker, across restarts: running tasks finish, nothing new starts.
#[utoipa::path(post, path = "/api/admin/queue/pause", operation_id = "admin_pause_queue", tag = "admin", responses(
    (status = 200, body = QueueView, description = "Paused"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`, `csrf_failed`"),
))]
pub async fn pause_queue(
    req: actix_web::HttpRequest,
    app: web::Data<App>,
    Operator(current): Operator,
) -> Result<HttpResponse, ApiError> {
    set_queue(&req, &app, &current, true).await
}

/// Lets workers take work again.
#[utoipa::path(post, path = "/api/admin/queue/resume", operation_id = "admin_resume_queue", tag = "admin", responses(
    (status = 200, body = QueueView, description = "Running"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`, `csrf_failed`"),
))]
pub async fn resume_queue(
    req: actix_web::HttpRequest,
    app: web::Data<App>,
    Operator(current): Operator,
) -> Result<HttpResponse, ApiError> {
    set_queue(&req, &app, &current, false).await
}

async fn set_queue(
    req: &actix_web::HttpRequest,
    app: &App,
    current: &crate::auth::CurrentUser,
    paused: bool,
) -> Result<HttpResponse, ApiError> {
    crate::admin::queue::set_paused(app, paused).await?;
    let action = if paused {
        "queue.pause"
    } else {
        "queue.resume"
    };
    super::audit(req, app, &current.user, action, "queue", None).await?;
    Ok(json(StatusCode::OK, &queue_view(app).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// `1h`, `24h` (default), `7d` or `30d`.
    #[param(value_type = Option<crate::admin::stats::Window>)]
    window: Option<String>,
}

/// Throughput, durations, failures, the queue, engines and top users over a window, from the
/// database (they survive restarts).
#[utoipa::path(get, path = "/api/admin/stats", operation_id = "admin_stats", tag = "admin", params(StatsQuery), responses(
    (status = 200, body = crate::admin::stats::Stats, description = "OK"),
    (status = 400, description = "`invalid_request`: an unknown window"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`"),
))]
pub async fn stats(
    app: web::Data<App>,
    _: Operator,
    query: web::Query<StatsQuery>,
) -> Result<HttpResponse, ApiError> {
    let window = match query.window.as_deref() {
        None => crate::admin::stats::Window::Day,
        Some(w) => crate::admin::stats::Window::parse(w)
            .ok_or_else(|| ApiError::invalid("window: one of 1h, 24h, 7d, 30d"))?,
    };
    let stats = crate::admin::stats::compute(&app, window).await?;
    Ok(json(StatusCode::OK, &stats))
}

/// Each dependency with its status, latency and detail, the worker processes, and free disk
/// space. A dependency that is down is reported with 200 and `status: degraded`.
#[utoipa::path(get, path = "/api/admin/health", operation_id = "admin_health", tag = "admin", responses(
    (status = 200, body = crate::admin::health::Health, description = "OK"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`"),
))]
pub async fn health(app: web::Data<App>, _: Operator) -> Result<HttpResponse, ApiError> {
    Ok(json(
        StatusCode::OK,
        &crate::admin::health::check(&app).await,
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// `next_before` of the previous page: older rows.
    #[param(minimum = 1)]
    before: Option<i64>,
    /// 1 to 500, default 100.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// Only this action, e.g. `settings.update` or `login`.
    #[param(pattern = "^[a-z_.]{1,64}$")]
    action: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<crate::db::models::AuditRow>,
    /// Pass as `before` for older rows; `null` at the first row.
    pub next_before: Option<i64>,
}

/// The audit log, newest first: sign-ins, tokens, roles, operator actions and document access.
#[utoipa::path(get, path = "/api/admin/audit", operation_id = "admin_audit", tag = "admin", params(AuditParams), responses(
    (status = 200, body = AuditPage, description = "OK"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`"),
))]
pub async fn audit_log(
    app: web::Data<App>,
    _: Operator,
    query: web::Query<AuditParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = super::page_limit(query.limit, 100, 500)?;
    if query.before.is_some_and(|b| b < 1) {
        return Err(ApiError::invalid("before: 1 or more"));
    }
    let action = query.action.clone();
    if action.as_deref().is_some_and(|a| {
        a.is_empty()
            || a.len() > 64
            || !a
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
    }) {
        return Err(ApiError::invalid(
            "action: an action name such as settings.update",
        ));
    }
    let before = query.before;
    let entries = app
        .db
        .read(move |c| {
            futures::FutureExt::boxed(async move {
                crate::db::models::AuditRow::newest(c, before, action.as_deref(), limit).await
            })
        })
        .await?;
    let next_before = entries.last().map(|e| e.seq).filter(|&seq| seq > 1);
    Ok(json(
        StatusCode::OK,
        &AuditPage {
            entries,
            next_before,
        },
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserParams {
    /// A part of the email, in any letter case.
    #[param(min_length = 1, max_length = 254)]
    search: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    cursor: Option<String>,
}

/// An account as admins see it.
#[derive(Serialize, ToSchema)]
pub struct AdminUserView {
    #[serde(flatten)]
    pub user: super::UserView,
    pub disabled: bool,
    pub tasks: i64,
    /// Pages counted against this month's quota (UTC): read by tasks that ended this month,
    /// and held by unfinished ones.
    pub pages_this_month: i64,
    /// Bytes of uploads stored.
    pub stored_bytes: i64,
    #[serde(with = "crate::db::models::utc_time::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_login: Option<chrono::NaiveDateTime>,
    /// Days the account's finished tasks are kept (0: until deleted); `null`: the
    /// `retention.days` setting.
    pub retention_days: Option<i32>,
    /// The account's own quotas (0: no limit); `null` takes the install's `quota.*` setting.
    pub quota: crate::quota::Overrides,
}

impl AdminUserView {
    fn new(
        user: &crate::db::models::User,
        usage: crate::db::models::Usage,
        quota: crate::quota::Overrides,
    ) -> AdminUserView {
        AdminUserView {
            user: user.into(),
            disabled: user.disabled,
            tasks: usage.tasks,
            pages_this_month: usage.pages_this_month,
            stored_bytes: usage.stored_bytes,
            last_login: usage.last_login,
            retention_days: user.retention_days,
            quota,
        }
    }
}

/// The own quotas of these accounts, by id.
async fn own_quotas(
    app: &App,
    ids: Vec<String>,
) -> Result<std::collections::HashMap<String, crate::quota::Overrides>, ApiError> {
    Ok(app
        .db
        .run(move |c| {
            futures::FutureExt::boxed(async move {
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                crate::quota::overrides(c, &ids).await
            })
        })
        .await?)
}

#[derive(Serialize, ToSchema)]
pub struct AdminUserList {
    pub users: Vec<AdminUserView>,
    pub next_cursor: Option<String>,
}

/// Accounts, with what each uses and when it last signed in. Admins only.
#[utoipa::path(get, path = "/api/admin/users", operation_id = "admin_list_users", tag = "admin", params(UserParams), responses(
    (status = 200, body = AdminUserList, description = "OK"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`: not an admin"),
))]
pub async fn list_users(
    app: web::Data<App>,
    _: Administrator,
    query: web::Query<UserParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = super::page_limit(query.limit, 50, 200)?;
    if let Some(search) = &query.search
        && (search.is_empty() || search.chars().count() > 254)
    {
        return Err(ApiError::invalid("search: 1 to 254 characters"));
    }
    let cursor = super::page_cursor(query.cursor.as_deref())?;
    let (rows, next_cursor) =
        crate::admin::users::list(&app, query.search.clone(), limit, cursor).await?;
    let quotas = own_quotas(&app, rows.iter().map(|(u, _)| u.id.clone()).collect()).await?;
    let users = rows
        .iter()
        .map(|(u, used)| {
            AdminUserView::new(u, *used, quotas.get(&u.id).copied().unwrap_or_default())
        })
        .collect();
    Ok(json(StatusCode::OK, &AdminUserList { users, next_cursor }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    /// `user`, `operator` or `admin`.
    #[schema(value_type = Option<RoleName>)]
    pub role: Option<String>,
    /// Disabling revokes the account's API tokens and refuses its sessions at once.
    pub disabled: Option<bool>,
    /// Days the account's finished tasks are kept (0: until deleted); `null` returns it to the
    /// `retention.days` setting. A task's own choice at upload comes first.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i32>, minimum = 0, maximum = 36500)]
    pub retention_days: Option<Option<i32>>,
    /// The account's own quotas: each field given replaces that limit (0: no limit), `null`
    /// returns it to the install's `quota.*` setting.
    pub quota: Option<QuotaChange>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaChange {
    /// Pages read per calendar month (UTC).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>, maximum = 9223372036854775807_u64)]
    pub pages_per_month: Option<Option<u64>>,
    /// Bytes of uploaded files kept.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>, maximum = 9223372036854775807_u64)]
    pub stored_bytes: Option<Option<u64>>,
    /// Tasks queued or running at once.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>, maximum = 9223372036854775807_u64)]
    pub concurrent_tasks: Option<Option<u64>>,
    /// The largest upload, in bytes (within `limits.max_upload_bytes`).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>, maximum = 9223372036854775807_u64)]
    pub max_upload_bytes: Option<Option<u64>>,
}

impl QuotaChange {
    fn checked(&self) -> Result<crate::quota::Change, ApiError> {
        let check = |name: &str, v: Option<Option<u64>>| match v {
            Some(Some(n)) if n > crate::quota::MAX => Err(ApiError::invalid(format!(
                "quota.{name}: 0 to {}",
                crate::quota::MAX
            ))),
            other => Ok(other),
        };
        Ok(crate::quota::Change {
            pages_per_month: check("pages_per_month", self.pages_per_month)?,
            stored_bytes: check("stored_bytes", self.stored_bytes)?,
            concurrent_tasks: check("concurrent_tasks", self.concurrent_tasks)?,
            max_upload_bytes: check("max_upload_bytes", self.max_upload_bytes)?,
        })
    }
}

/// A field that may be `null`: present (`Some`, holding `None` for `null`) or absent (`None`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A role, as admins give it.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum RoleName {
    User,
    Operator,
    Admin,
}

fn user_not_found() -> ApiError {
    ApiError::new(Code::NotFound, "there is no account with this id")
}

/// Changes an account's role or disables it (or enables it again). Admins only; an admin
/// cannot demote or disable their own account.
#[utoipa::path(patch, path = "/api/admin/users/{id}", operation_id = "admin_update_user", tag = "admin", params(("id" = String, Path)), request_body = UpdateUserRequest, responses(
    (status = 200, body = AdminUserView, description = "Changed"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`, `csrf_failed`"),
    (status = 404, description = "`not_found`"), (status = 409, description = "`conflict`: your own account"),
))]
pub async fn update_user(
    req: actix_web::HttpRequest,
    app: web::Data<App>,
    Administrator(current): Administrator,
    id: web::Path<String>,
    body: web::Json<UpdateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    let role = body
        .role
        .as_deref()
        .map(|r| {
            r.parse::<crate::db::models::Role>()
                .map_err(|_| ApiError::invalid("role: user, operator or admin"))
        })
        .transpose()?;
    if !is_id(&id) {
        return Err(user_not_found());
    }
    if *id == current.user.id
        && (body.disabled == Some(true)
            || role.is_some_and(|r| r != crate::db::models::Role::Admin))
    {
        return Err(ApiError::new(
            Code::Conflict,
            "you cannot demote or disable your own account; ask another admin",
        ));
    }
    let retention_days = match body.retention_days {
        Some(Some(days)) => Some(Some(
            crate::retention::check(days.into()).map_err(ApiError::invalid)?,
        )),
        other => other,
    };
    let quota = body.quota.as_ref().map(QuotaChange::checked).transpose()?;
    let change = crate::admin::users::UserChange {
        role,
        disabled: body.disabled,
        retention_days,
        quota,
    };
    let user = match crate::admin::users::update(&app, &id, change).await {
        Err(DbError::NotFound) => return Err(user_not_found()),
        other => other?,
    };
    let mut detail =
        serde_json::json!({"role": role.map(|r| r.as_str()), "disabled": body.disabled});
    if let Some(days) = retention_days {
        detail["retention_days"] = serde_json::json!(days);
    }
    if let Some(quota) = &body.quota {
        detail["quota"] = serde_json::json!({
            "pages_per_month": quota.pages_per_month,
            "stored_bytes": quota.stored_bytes,
            "concurrent_tasks": quota.concurrent_tasks,
            "max_upload_bytes": quota.max_upload_bytes,
        });
    }
    super::audit(
        &req,
        &app,
        &current.user,
        "user.update",
        &user.id,
        Some(detail),
    )
    .await?;
    let (mut rows, _) = crate::admin::users::list(&app, Some(user.email.clone()), 1, None).await?;
    let used = rows.pop().map(|(_, used)| used).unwrap_or_default();
    let quota = own_quotas(&app, vec![user.id.clone()]).await?;
    let quota = quota.get(&user.id).copied().unwrap_or_default();
    Ok(json(
        StatusCode::OK,
        &AdminUserView::new(&user, used, quota),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EraseParams {
    /// The account's email, typed again: the confirmation (required; checked after the
    /// caller's rights, so that nobody learns more than 401 or 403 without them).
    confirm: Option<String>,
}

/// Erases an account with all its tasks, results, uploads and tokens, for good. Admins only;
/// `confirm` must be the account's email.
#[utoipa::path(delete, path = "/api/admin/users/{id}", operation_id = "admin_erase_user", tag = "admin", params(("id" = String, Path), EraseParams), responses(
    (status = 204, description = "Erased"),
    (status = 400, description = "`invalid_request`: `confirm` is not the account's email"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`, `csrf_failed`"),
    (status = 404, description = "`not_found`"), (status = 409, description = "`conflict`: your own account"),
))]
pub async fn erase_user(
    req: actix_web::HttpRequest,
    app: web::Data<App>,
    Administrator(current): Administrator,
    id: web::Path<String>,
    query: web::Query<EraseParams>,
) -> Result<HttpResponse, ApiError> {
    if !is_id(&id) {
        return Err(user_not_found());
    }
    if *id == current.user.id {
        return Err(ApiError::new(
            Code::Conflict,
            "you cannot erase your own account",
        ));
    }
    let found = id.clone();
    let user = match app
        .db
        .run(move |c| {
            futures::FutureExt::boxed(async move { crate::db::models::User::find(c, &found).await })
        })
        .await
    {
        Err(DbError::NotFound) => return Err(user_not_found()),
        other => other?,
    };
    if query.confirm.as_deref().map(normalize_email).as_deref() != Some(user.email.as_str()) {
        return Err(ApiError::invalid(
            "confirm: type the account's email to erase it",
        ));
    }
    let tasks = crate::admin::users::erase(&app, &user.id).await?;
    let detail = serde_json::json!({"email": user.email, "tasks": tasks});
    super::audit(
        &req,
        &app,
        &current.user,
        "user.erase",
        &user.id,
        Some(detail),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;

    #[test]
    fn the_bulk_filter_names_are_the_filter_fields() {
        let schema = serde_json::to_value(super::FilterParams::schema()).unwrap();
        let mut fields: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut names = super::FILTERS.to_vec();
        fields.sort_unstable();
        names.sort_unstable();
        assert_eq!(fields, names);
    }
}
