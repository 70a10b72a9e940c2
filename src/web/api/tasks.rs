//! Tasks: upload a document (multipart, streamed to storage), list, read, download results,
//! delete. Another user's task is `task_not_found` on every route.

use std::time::Duration;

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::{HttpRequest, HttpResponse, web};
use futures::{FutureExt, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{TaskView, json};
use crate::app::App;
use crate::auth::CurrentUser;
use crate::blobs::{BlobKey, sanitize_filename};
use crate::config::EngineKind;
use crate::db::DbError;
use crate::db::models::{File, FileSummary, Task, TaskResult, TaskStatus, is_id};
use crate::edge::Class;
use crate::error::{ApiError, Code};
use crate::render::{Format, thumbnail};
use crate::results::ResultError;
use crate::tasks::{
    Callback, DeleteError, OcrPolicy, Password, Submission, SubmitError, TaskOptions, Trailer,
};
use crate::web::previews::{PreviewError, Previews};

/// Longest value of a non-file form field, and most such fields.
const FIELD_LIMIT: usize = 1024;
const MAX_FIELDS: usize = 16;
/// What a multipart body may add to the file: boundaries, part headers and the other fields.
const FORM_OVERHEAD: u64 = (FIELD_LIMIT * MAX_FIELDS) as u64 + (64 << 10);

/// The multipart form of `POST /api/tasks`: one `file`, and the options before or after it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The document: PNG, JPEG, TIFF, WebP, BMP or PDF (sniffed from its bytes).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// The server's `ocr.engine` (`ppocr` or `qwen3vl`), the default; another is refused.
    #[schema(value_type = Option<EngineKind>)]
    engine: Option<String>,
    /// Comma-separated result formats made at once: `html` (hOCR), `txt`, `json`, `pdf`
    /// (searchable PDF), `alto` (ALTO XML v4, downloaded as `format=xml`). Default: the
    /// `tasks.formats` setting (html, txt and json unless changed). Any other can be downloaded later.
    #[schema(
        pattern = "^\\s*(html|hocr|txt|text|json|pdf|alto|xml)\\s*(,\\s*(html|hocr|txt|text|json|pdf|alto|xml)\\s*)*$"
    )]
    formats: Option<String>,
    ocr: Option<OcrPolicy>,
    /// The scripts the document is written in: `latin`, `english` (Latin without accents),
    /// `greek`, `cyrillic`, `cjk`, a comma-separated mix, or `all`. Default: the server's `ocr.lang` (`latin` unless
    /// configured). PP-OCR decodes only these scripts' characters, plus digits, punctuation and
    /// symbols; Qwen3-VL ignores it.
    lang: Option<String>,
    /// The password of an encrypted PDF. It is kept with the task; the searchable PDF comes
    /// out without it.
    password: Option<String>,
    /// Days the task and its results are kept once it has finished, then erased: 0 keeps them
    /// until deleted. Default: the account's retention, else the `retention.days` setting.
    #[schema(minimum = 0, maximum = 36500)]
    retention_days: Option<i32>,
    /// A URL to post this task's end to (`task.completed`, `task.failed` or `task.cancelled`),
    /// signed as the account's webhooks are, with a secret answered once, in `callback_secret`.
    #[schema(max_length = 2000)]
    callback_url: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TaskList {
    pub tasks: Vec<TaskView>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only tasks in this status.
    #[param(value_type = Option<super::StatusName>)]
    status: Option<String>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResultQuery {
    /// `html` or `hocr` (hOCR), `txt` or `text`, `json`, `pdf` (searchable PDF), `alto` or
    /// `xml` (ALTO XML). Any format of a completed task: one not asked for at upload is made
    /// on its first download.
    #[param(value_type = super::FormatName)]
    format: String,
    /// Stream through ocrd even where presigned redirects are configured (the web viewer
    /// reads the JSON this way, as a same-origin request).
    #[serde(default)]
    stream: bool,
}

/// Page images a browser shows as they are; other kinds (TIFF) are converted to PNG.
const BROWSER_IMAGES: [&str; 4] = ["image/png", "image/jpeg", "image/webp", "image/bmp"];
/// Longest side of a converted page image: enough for the viewer, small enough to send.
const PAGE_IMAGE_MAX_SIDE: u32 = 2400;

/// The next item of a multipart stream, or `request_timeout` once it has sent nothing for
/// `idle`.
async fn next_within<S: futures::Stream + Unpin>(
    stream: &mut S,
    idle: Duration,
) -> Result<Option<S::Item>, ApiError> {
    tokio::time::timeout(idle, stream.next())
        .await
        .map_err(|_| stalled(idle))
}

fn stalled(idle: Duration) -> ApiError {
    ApiError::new(
        Code::RequestTimeout,
        format!(
            "the upload sent nothing for {} s and was cut off; nothing was kept",
            idle.as_secs()
        ),
    )
}

async fn read_field(
    field: &mut actix_multipart::Field,
    name: &str,
    idle: Duration,
) -> Result<String, ApiError> {
    let mut value = Vec::new();
    while let Some(chunk) = next_within(field, idle).await? {
        let chunk = chunk.map_err(|e| ApiError::invalid(format!("multipart: {e}")))?;
        if value.len() + chunk.len() > FIELD_LIMIT {
            return Err(ApiError::invalid(format!(
                "{name}: longer than {FIELD_LIMIT} bytes"
            )));
        }
        value.extend_from_slice(&chunk);
    }
    String::from_utf8(value).map_err(|_| ApiError::invalid(format!("{name}: not UTF-8")))
}

fn parse_formats(value: &str) -> Result<Vec<Format>, ApiError> {
    let mut formats = Vec::new();
    for name in value.split(',').map(str::trim) {
        let format: Format = name
            .parse()
            .map_err(|e: String| ApiError::invalid(format!("formats: {e}")))?;
        if !formats.contains(&format) {
            formats.push(format);
        }
    }
    if formats.is_empty() {
        return Err(ApiError::invalid(
            "formats: name at least one of html, txt, json, pdf, alto",
        ));
    }
    Ok(formats)
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("Idempotency-Key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 200)
        .ok_or_else(|| ApiError::invalid("Idempotency-Key: 1 to 200 visible ASCII characters"))?;
    Ok(Some(key.to_owned()))
}

/// Why the file part of an upload ended early.
#[derive(Debug, thiserror::Error)]
enum UploadError {
    #[error("{0}")]
    Multipart(String),
    #[error("no bytes for {0:?}")]
    Stalled(Duration),
}

fn submit_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::Empty => ApiError::new(Code::EmptyFile, "the file is empty"),
        SubmitError::UnsupportedType => ApiError::new(Code::UnsupportedType, e.to_string()),
        SubmitError::TooLarge(_) => ApiError::new(Code::PayloadTooLarge, e.to_string()),
        SubmitError::ReadOnly => ApiError::new(Code::ReadOnly, e.to_string()),
        SubmitError::Body(e) if e.is::<ApiError>() => match e.downcast::<ApiError>() {
            Ok(e) => *e,
            Err(e) => ApiError::invalid(format!("reading the upload: {e}")),
        },
        SubmitError::Body(e) => match e.downcast::<UploadError>().map(|e| *e) {
            Ok(UploadError::Stalled(idle)) => stalled(idle),
            Ok(e) => ApiError::invalid(format!("reading the upload: {e}")),
            Err(e) => ApiError::invalid(format!("reading the upload: {e}")),
        },
        SubmitError::Aborted(e) => ApiError::internal(e),
        SubmitError::Blob(e) => e.into(),
        SubmitError::Db(e) => e.into(),
        SubmitError::Quota(refusal) => refusal.into(),
    }
}

/// Uploads a document and queues it. The body streams to storage as it arrives.
#[utoipa::path(post, path = "/api/tasks", operation_id = "create_task", tag = "tasks",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    params(("Idempotency-Key" = Option<String>, Header, description = "A repeat with the same key returns the original task")),
    responses(
        (status = 202, body = TaskView, description = "Queued"),
        (status = 200, body = TaskView, description = "A repeat of an Idempotency-Key: the original task"),
        (status = 400, description = "`invalid_request`, `empty_file`"),
        (status = 401, description = "`unauthenticated`"), (status = 403, description = "`csrf_failed`"),
        (status = 413, description = "`payload_too_large`"),
        (status = 415, description = "`unsupported_type`"),
        (status = 422, description = "`webhook_target_refused`: the `callback_url`'s host resolves to a private, loopback, link-local or reserved address"),
        (status = 429, description = "`too_many_requests`: over `rate_limits.uploads_per_minute` or `upload_bytes_per_minute`, with Retry-After"),
        (status = 503, description = "`read_only`: uploads are refused for maintenance; `unavailable`"),
    ))]
pub async fn create(
    req: HttpRequest,
    app: web::Data<App>,
    current: CurrentUser,
    mut form: Multipart,
) -> Result<HttpResponse, ApiError> {
    let settings = app.settings.get();
    if settings.read_only {
        return Err(submit_error(SubmitError::ReadOnly));
    }
    // A declared length over the limit is refused before a byte of the body is read.
    let max = settings.max_upload_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max.saturating_add(FORM_OVERHEAD)) {
        return Err(submit_error(SubmitError::TooLarge(max)));
    }
    // Counted per address and per account before a byte is read; a body of unknown length
    // (chunked) is charged as the largest upload.
    let client = crate::edge::Client::of(&req);
    let keys = [
        format!("ip:{}", client.address_key()),
        format!("user:{}", current.user.id),
    ];
    let limiter = &app.limiter;
    limiter.check(Class::Uploads, &keys, 1, "uploads").await?;
    let bytes = declared.unwrap_or(max);
    limiter
        .check(Class::UploadBytes, &keys, bytes, "uploaded bytes")
        .await?;
    let idle = Duration::from_secs(app.config.server.upload_idle_secs);
    let key = idempotency_key(&req)?;
    let mut fields = FormFields::new(settings.task_options(), &app.config, idle);
    while let Some(field) = fields.next(&mut form).await? {
        if field.name() != Some("file") {
            fields.read_option(field).await?;
            continue;
        }
        let filename = field
            .content_disposition()
            .and_then(|d| d.get_filename())
            .map(|n| crate::names::clean(n, 255))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "upload".into());
        let submission = Submission {
            user_id: &current.user.id,
            filename: &filename,
            engine: fields.engine,
            options: fields.options.clone(),
            idempotency_key: key.as_deref(),
        };
        // A stalled upload ends in an error, which aborts what was stored of it.
        let body = futures::stream::unfold(field, move |mut field| async move {
            match tokio::time::timeout(idle, field.next()).await {
                Ok(Some(chunk)) => Some((
                    chunk.map_err(|e| UploadError::Multipart(e.to_string())),
                    field,
                )),
                Ok(None) => None,
                Err(_) => Some((Err(UploadError::Stalled(idle)), field)),
            }
        });
        // Fields may follow the file (clients generated from the OpenAPI document send the
        // file first): they are read once it has been stored, before the task is recorded.
        let trailer = async {
            let mut any = false;
            while let Some(field) = fields.next(&mut form).await? {
                if field.name() == Some("file") {
                    return Err(ApiError::invalid("send one file per upload"));
                }
                fields.read_option(field).await?;
                any = true;
            }
            Ok(any.then(|| Trailer {
                engine: fields.engine,
                options: fields.options.clone(),
            }))
        };
        let trailer = trailer.map(|read| read.map_err(|e: ApiError| Box::new(e) as _));
        let (task, created) = crate::tasks::submit_then(&app, submission, body, trailer)
            .await
            .map_err(submit_error)?;
        let mut view = uploaded_view(&app, &task).await?;
        let status = if created {
            // Shown this once: a repeated Idempotency-Key answers without it.
            view.callback_secret = fields.options.callback.map(|c| c.secret);
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        };
        return Ok(json(status, &view));
    }
    Err(ApiError::invalid("no `file` field in the form"))
}

/// The fields of an upload form, in whatever order they come.
struct FormFields {
    options: TaskOptions,
    engine: Option<EngineKind>,
    served: EngineKind,
    /// `webhooks.allow_private_targets`, for a `callback_url`.
    allow_private: bool,
    idle: Duration,
    count: usize,
}

impl FormFields {
    fn new(defaults: TaskOptions, config: &crate::config::Config, idle: Duration) -> FormFields {
        FormFields {
            options: defaults,
            engine: None,
            served: config.ocr.engine,
            allow_private: config.webhooks.allow_private_targets,
            idle,
            count: 0,
        }
    }

    /// The next field, or `None` at the end of the form.
    async fn next(
        &mut self,
        form: &mut Multipart,
    ) -> Result<Option<actix_multipart::Field>, ApiError> {
        let Some(field) = next_within(form, self.idle).await? else {
            return Ok(None);
        };
        let field = field.map_err(|e| ApiError::invalid(format!("multipart: {e}")))?;
        self.count += 1;
        if self.count > MAX_FIELDS {
            return Err(ApiError::invalid("too many form fields"));
        }
        Ok(Some(field))
    }

    /// Reads an option field into the options.
    async fn read_option(&mut self, mut field: actix_multipart::Field) -> Result<(), ApiError> {
        let name = field.name().unwrap_or_default().to_owned();
        let idle = self.idle;
        match name.as_str() {
            "engine" => {
                let value = read_field(&mut field, "engine", idle).await?;
                let chosen: EngineKind = value
                    .trim()
                    .parse()
                    .map_err(|e: String| ApiError::invalid(format!("engine: {e}")))?;
                // One queue feeds every worker, and they all run the configured engine.
                if chosen != self.served {
                    return Err(ApiError::invalid(format!(
                        "engine: `{}` is not served here; this install's workers run `{}` (ocr.engine)",
                        chosen.as_str(),
                        self.served.as_str()
                    )));
                }
                self.engine = Some(chosen);
            }
            "formats" => {
                self.options.formats =
                    parse_formats(&read_field(&mut field, "formats", idle).await?)?
            }
            "ocr" => {
                let value = read_field(&mut field, "ocr", idle).await?;
                self.options.ocr = value.trim().parse().map_err(ApiError::invalid)?;
            }
            "lang" => {
                let value = read_field(&mut field, "lang", idle).await?;
                let lang = value.parse().map_err(|e: String| ApiError::invalid(e))?;
                self.options.lang = Some(lang);
            }
            "retention_days" => {
                let value = read_field(&mut field, "retention_days", idle).await?;
                let days = crate::retention::parse(&value).map_err(ApiError::invalid)?;
                self.options.retention_days = Some(days);
            }
            "callback_url" => {
                if self.options.callback.is_some() {
                    return Err(ApiError::invalid("send one callback_url per upload"));
                }
                let value = read_field(&mut field, "callback_url", idle).await?;
                let url = crate::webhooks::target::check(value.trim(), self.allow_private)
                    .await
                    .map_err(|e| ApiError::from(crate::webhooks::WebhookError::from(e)))?;
                self.options.callback = Some(Callback {
                    url: url.to_string(),
                    secret: crate::webhooks::signing::new_secret(),
                });
            }
            "password" => {
                let value = read_field(&mut field, "password", idle).await?;
                self.options.password = (!value.is_empty()).then(|| Password::new(value));
            }
            other => return Err(ApiError::invalid(format!("unknown form field `{other}`"))),
        }
        Ok(())
    }
}

/// The user's tasks, newest first.
#[utoipa::path(get, path = "/api/tasks", operation_id = "list_tasks", tag = "tasks", params(ListQuery), responses(
    (status = 200, body = TaskList, description = "OK"), (status = 400, description = "`invalid_request`"), (status = 401, description = "`unauthenticated`"),
))]
pub async fn list(
    app: web::Data<App>,
    current: CurrentUser,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let status = match query.status.as_deref() {
        Some(s) => Some(s.parse::<TaskStatus>().map_err(|_| {
            ApiError::invalid("status: one of queued, processing, completed, failed, cancelled")
        })?),
        None => None,
    };
    let limit = super::page_limit(query.limit, 20, 100)?;
    let cursor = super::page_cursor(query.cursor.as_deref())?;
    let user_id = current.user.id.clone();
    let (tasks, files, thumbnails, next_cursor) = app
        .db
        .read(move |c| {
            async move {
                // One more than asked tells whether there is a next page.
                let mut tasks =
                    Task::list_for_user(c, &user_id, status, limit + 1, cursor.as_deref()).await?;
                let next_cursor = if tasks.len() as i64 > limit {
                    tasks.truncate(limit as usize);
                    tasks.last().map(|t| t.id.clone())
                } else {
                    None
                };
                let ids: Vec<&str> = tasks.iter().map(|t| t.file_id.as_str()).collect();
                let files = File::summaries(c, &ids).await?;
                let done: Vec<&str> = tasks
                    .iter()
                    .filter(|t| t.status == TaskStatus::Completed)
                    .map(|t| t.id.as_str())
                    .collect();
                let thumbnails = TaskResult::with_thumbnails(c, &done).await?;
                Ok::<_, DbError>((tasks, files, thumbnails, next_cursor))
            }
            .boxed()
        })
        .await?;
    Ok(json(
        StatusCode::OK,
        &TaskList {
            tasks: TaskView::with_files(&tasks, &files, &thumbnails),
            next_cursor,
        },
    ))
}

async fn own_task(
    app: &App,
    current: &CurrentUser,
    id: &str,
) -> Result<(Task, FileSummary), ApiError> {
    if !is_id(id) {
        return Err(ApiError::task_not_found());
    }
    let (user_id, id) = (current.user.id.clone(), id.to_owned());
    let found = app
        .db
        .run(move |c| async move { Task::find_named_for_user(c, &user_id, &id).await }.boxed())
        .await;
    match found {
        Ok(found) => Ok(found),
        Err(DbError::NotFound) => Err(ApiError::task_not_found()),
        Err(e) => Err(e.into()),
    }
}

/// The answer to an upload: the task, and the user's earlier task of the same bytes if any.
async fn uploaded_view(app: &App, task: &Task) -> Result<TaskView, ApiError> {
    let (user_id, id) = (task.user_id.clone(), task.id.clone());
    let (task, file, earlier) = app
        .db
        .run(move |c| {
            async move {
                let (task, file) = Task::find_named_for_user(c, &user_id, &id).await?;
                let earlier = Task::earlier_upload(c, &user_id, &id, &file.sha256).await?;
                Ok::<_, DbError>((task, file, earlier))
            }
            .boxed()
        })
        .await?;
    let mut view = TaskView::new(&task, &file);
    view.duplicate_of = earlier;
    Ok(view)
}

async fn find_file(app: &App, id: &str) -> Result<File, DbError> {
    let id = id.to_owned();
    app.db
        .run(move |c| async move { File::find(c, &id).await }.boxed())
        .await
}

/// `Content-Disposition` naming a download after the uploaded file, with `ext` for its
/// extension (none: the file's own). The name is reduced to safe ASCII characters.
fn disposition(kind: DispositionType, filename: &str, ext: Option<&str>) -> ContentDisposition {
    let name = sanitize_filename(filename);
    let name = match ext {
        Some(ext) => {
            let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s);
            format!("{stem}.{ext}")
        }
        None => name,
    };
    ContentDisposition {
        disposition: kind,
        parameters: vec![DispositionParam::Filename(name)],
    }
}

/// A stored object, streamed to the client with the headers that keep it inert here.
fn stream_blob(
    blob: crate::blobs::BlobStream,
    media_type: &str,
    disposition: ContentDisposition,
    cache: &str,
) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(media_type)
        .insert_header(disposition)
        .insert_header((header::CONTENT_LENGTH, blob.size.to_string()))
        .insert_header(("Content-Security-Policy", "sandbox; default-src 'none'"))
        .insert_header((header::CACHE_CONTROL, cache.to_owned()))
        .streaming(blob.body.map_err(|e| std::io::Error::other(e.to_string())))
}

/// One task.
#[utoipa::path(get, path = "/api/tasks/{id}", operation_id = "get_task", tag = "tasks", params(("id" = String, Path)), responses(
    (status = 200, body = TaskView, description = "OK"), (status = 401, description = "`unauthenticated`"), (status = 404, description = "`task_not_found`"),
))]
pub async fn get(
    app: web::Data<App>,
    current: CurrentUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (task, file) = own_task(&app, &current, &id).await?;
    let install = app.settings.get().retention_days;
    let view = TaskView::new(&task, &file).with_expiry(crate::retention::expires_at(
        &task,
        current.user.retention_days,
        install,
    ));
    let view = match crate::results::of_completed(&app, &task).await? {
        Some(result) => view.with_result(&result),
        None => view,
    };
    Ok(json(StatusCode::OK, &view))
}

/// Downloads a result. hOCR is HTML written from untrusted input, so it is always an
/// attachment under a sandboxing Content-Security-Policy, never a page of this origin. With
/// `storage.presign_ttl_secs` on S3 the answer is a redirect to a presigned URL.
#[utoipa::path(get, path = "/api/tasks/{id}/result", tag = "tasks", params(("id" = String, Path), ResultQuery), responses(
    (status = 200, description = "The result, streamed"),
    (status = 302, description = "Redirect to a presigned URL"),
    (status = 400, description = "`invalid_request`"), (status = 401, description = "`unauthenticated`"), (status = 404, description = "`task_not_found`, `result_not_found`"),
))]
pub async fn result(
    req: HttpRequest,
    app: web::Data<App>,
    current: CurrentUser,
    id: web::Path<String>,
    query: web::Query<ResultQuery>,
) -> Result<HttpResponse, ApiError> {
    let format: Format = query
        .format
        .parse()
        .map_err(|e: String| ApiError::invalid(format!("format: {e}")))?;
    let (task, file) = own_task(&app, &current, &id).await?;
    let result = crate::results::of_completed(&app, &task)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                Code::ResultNotFound,
                format!(
                    "the task is {}; results exist once it has completed",
                    task.status.as_str()
                ),
            )
        })?;
    let key = crate::results::object(&app, &task, &result, format)
        .await
        .map_err(|e| match e {
            ResultError::Missing(message) => ApiError::new(Code::ResultNotFound, message),
            ResultError::Render(message) => ApiError::internal(message),
            ResultError::Blob(e) => e.into(),
            ResultError::Db(e) => e.into(),
        })?;
    let detail = serde_json::json!({"format": format.extension()});
    super::audit(
        &req,
        &app,
        &current.user,
        "result.download",
        &task.id,
        Some(detail),
    )
    .await?;

    // hOCR is never handed to another origin without the headers that keep it inert; it and
    // the PDF are downloads, as the sandbox would keep a browser's PDF viewer from showing it.
    let ttl = app.config.storage.presign_ttl_secs;
    if ttl > 0
        && !query.stream
        && format != Format::Hocr
        && let Some(url) = app
            .blobs
            .presign_get(&key, Duration::from_secs(ttl))
            .await?
    {
        return Ok(HttpResponse::Found()
            .insert_header((header::LOCATION, url.to_string()))
            .finish());
    }
    let blob = app.blobs.get(&key).await?;
    let kind = if matches!(format, Format::Hocr | Format::Pdf) {
        DispositionType::Attachment
    } else {
        DispositionType::Inline
    };
    Ok(stream_blob(
        blob,
        format.media_type(),
        disposition(kind, &file.filename, Some(format.extension())),
        "private, no-store",
    ))
}

/// One step of a task's timeline, as its owner sees it.
#[derive(Serialize, ToSchema)]
pub struct TimelineStep {
    #[serde(with = "crate::db::models::utc_time")]
    #[schema(value_type = String, format = DateTime)]
    pub at: chrono::NaiveDateTime,
    /// `queued`, `started`, `page`, `requeued`, `completed`, `failed` or `cancelled`.
    pub kind: String,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct Timeline {
    /// Oldest first.
    pub steps: Vec<TimelineStep>,
}

/// What happened to the task and when: queued, started, each page, retries, the end.
#[utoipa::path(get, path = "/api/tasks/{id}/timeline", operation_id = "task_timeline", tag = "tasks", params(("id" = String, Path)), responses(
    (status = 200, body = Timeline, description = "OK"),
    (status = 401, description = "`unauthenticated`"), (status = 404, description = "`task_not_found`"),
))]
pub async fn timeline(
    app: web::Data<App>,
    current: CurrentUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (task, _) = own_task(&app, &current, &id).await?;
    let steps = crate::timeline::of(&app, &task.id)
        .await?
        .into_iter()
        .map(|e| TimelineStep {
            at: e.at,
            kind: e.kind,
            message: e.message,
        })
        .collect();
    Ok(json(StatusCode::OK, &Timeline { steps }))
}

/// Downloads the uploaded file itself, always as an attachment.
#[utoipa::path(get, path = "/api/tasks/{id}/file", operation_id = "download_file", tag = "tasks", params(("id" = String, Path)), responses(
    (status = 200, description = "The uploaded file, streamed"),
    (status = 401, description = "`unauthenticated`"), (status = 404, description = "`task_not_found`"),
))]
pub async fn file(
    req: HttpRequest,
    app: web::Data<App>,
    current: CurrentUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (task, _) = own_task(&app, &current, &id).await?;
    let file = find_file(&app, &task.file_id).await?;
    super::audit(&req, &app, &current.user, "file.download", &task.id, None).await?;
    let blob = app
        .blobs
        .get(&BlobKey::parse(&file.blob_key).map_err(ApiError::internal)?)
        .await?;
    Ok(stream_blob(
        blob,
        &file.content_type,
        disposition(DispositionType::Attachment, &file.filename, None),
        "private, no-store",
    ))
}

/// A small JPEG of the first page, made when the task completed.
#[utoipa::path(get, path = "/api/tasks/{id}/thumbnail", operation_id = "get_thumbnail", tag = "tasks", params(("id" = String, Path)), responses(
    (status = 200, description = "JPEG, at most 240 pixels on its longer side", content_type = "image/jpeg"),
    (status = 401, description = "`unauthenticated`"), (status = 404, description = "`task_not_found`, `result_not_found`: not completed, or no picture could be made"),
))]
pub async fn thumbnail(
    app: web::Data<App>,
    current: CurrentUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (task, file) = own_task(&app, &current, &id).await?;
    let none = || ApiError::new(Code::ResultNotFound, "this task has no thumbnail");
    let result = crate::results::of_completed(&app, &task)
        .await?
        .ok_or_else(none)?;
    let key = result
        .blob_keys
        .0
        .get(thumbnail::EXTENSION)
        .ok_or_else(none)?;
    let blob = app
        .blobs
        .get(&BlobKey::parse(key).map_err(ApiError::internal)?)
        .await?;
    Ok(stream_blob(
        blob,
        thumbnail::MEDIA_TYPE,
        disposition(DispositionType::Inline, &file.filename, Some("jpg")),
        "private, max-age=3600",
    ))
}

/// Cancels a queued or processing task. A running task stops at its next page; what it
/// stored so far is removed. Retry starts it again.
#[utoipa::path(post, path = "/api/tasks/{id}/cancel", operation_id = "cancel_task", tag = "tasks", params(("id" = String, Path)), responses(
    (status = 200, body = TaskView, description = "Cancelled"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`csrf_failed`"), (status = 404, description = "`task_not_found`"),
    (status = 409, description = "`not_cancellable`: completed, failed or cancelled already"),
))]
pub async fn cancel(
    req: HttpRequest,
    app: web::Data<App>,
    current: CurrentUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (task, file) = own_task(&app, &current, &id).await?;
    let cancelled = crate::tasks::cancel(&app, &task.id).await?;
    let cancelled = cancelled.ok_or_else(|| ApiError::not_cancellable(task.status.as_str()))?;
    super::audit(
        &req,
        &app,
        &current.user,
        "task.cancel",
        &cancelled.id,
        None,
    )
    .await?;
    Ok(json(StatusCode::OK, &TaskView::new(&cancelled, &file)))
}

/// Deletes a task: cancels it if it is running, then removes its results, its upload and its
/// rows.
#[utoipa::path(delete, path = "/api/tasks/{id}", operation_id = "delete_task", tag = "tasks", params(("id" = String, Path)), responses(
    (status = 204, description = "Done"), (status = 401, description = "`unauthenticated`"), (status = 403, description = "`csrf_failed`"), (status = 404, description = "`task_not_found`"),
))]
pub async fn delete(
    req: HttpRequest,
    app: web::Data<App>,
    current: CurrentUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    match crate::tasks::delete(&app, &current.user.id, &id).await {
        Ok(()) => {
            super::audit(&req, &app, &current.user, "task.delete", &id, None).await?;
            Ok(HttpResponse::NoContent().finish())
        }
        Err(DeleteError::NotFound) => Err(ApiError::task_not_found()),
        Err(DeleteError::Db(e)) => Err(e.into()),
        Err(DeleteError::Blob(e)) => Err(e.into()),
    }
}

/// Re-queues a failed or cancelled task with a fresh attempt budget (the same file and
/// options).
#[utoipa::path(post, path = "/api/tasks/{id}/retry", tag = "tasks", params(("id" = String, Path)), responses(
    (status = 202, body = TaskView, description = "Queued again"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`csrf_failed`"), (status = 404, description = "`task_not_found`"),
    (status = 409, description = "`not_retryable`: queued, processing or completed"),
))]
pub async fn retry(
    req: HttpRequest,
    app: web::Data<App>,
    current: CurrentUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (task, file) = own_task(&app, &current, &id).await?;
    let retried = crate::tasks::retry(&app, &task.id).await?;
    let task = retried.ok_or_else(|| ApiError::not_retryable(task.status.as_str()))?;
    super::audit(&req, &app, &current.user, "task.retry", &task.id, None).await?;
    Ok(json(StatusCode::ACCEPTED, &TaskView::new(&task, &file)))
}

/// The image of one page (1-based) of the uploaded document, for viewing results: the upload
/// itself where browsers show it, otherwise the page converted to PNG.
#[utoipa::path(get, path = "/api/tasks/{id}/pages/{page}/image", tag = "tasks", params(("id" = String, Path), ("page" = u32, Path, minimum = 1)), responses(
    (status = 200, description = "The page image"),
    (status = 401, description = "`unauthenticated`"), (status = 404, description = "`task_not_found`, `page_not_found`"),
    (status = 422, description = "`undecodable`: the document cannot be read"),
))]
pub async fn page_image(
    req: HttpRequest,
    app: web::Data<App>,
    previews: web::Data<Previews>,
    current: CurrentUser,
    path: web::Path<(String, u32)>,
) -> Result<HttpResponse, ApiError> {
    let (id, page) = path.into_inner();
    let (task, _) = own_task(&app, &current, &id).await?;
    let file = find_file(&app, &task.file_id).await?;
    let no_page = move || {
        ApiError::new(
            Code::PageNotFound,
            format!("the document has no page {page}"),
        )
    };
    let pages = task.pages_total.or(file.page_count).unwrap_or(1).max(1) as u32;
    if page == 0 || page > pages {
        return Err(no_page());
    }
    let detail = serde_json::json!({"page": page});
    super::audit(
        &req,
        &app,
        &current.user,
        "page.view",
        &task.id,
        Some(detail),
    )
    .await?;
    let key = BlobKey::parse(&file.blob_key).map_err(ApiError::internal)?;
    let mut response = HttpResponse::Ok();
    response
        .insert_header(("Content-Security-Policy", "sandbox; default-src 'none'"))
        .insert_header((header::CACHE_CONTROL, "private, max-age=3600"));
    if page == 1 && BROWSER_IMAGES.contains(&file.content_type.as_str()) {
        let blob = app.blobs.get(&key).await?;
        return Ok(response
            .content_type(file.content_type.as_str())
            .insert_header((header::CONTENT_LENGTH, blob.size.to_string()))
            .streaming(blob.body.map_err(|e| std::io::Error::other(e.to_string()))));
    }
    // Converted: the upload streams to a private temp file, and one page is decoded from it.
    let limits = app.config.document_limits();
    let password = TaskOptions::parse(&task.options)
        .unwrap_or_default()
        .password;
    let fetch = async {
        let temp = tempfile::NamedTempFile::new().map_err(ApiError::internal)?;
        app.blobs.download_to(&key, temp.path()).await?;
        Ok(temp)
    };
    let convert = move |temp: tempfile::NamedTempFile| {
        page_png(temp.path(), page, limits, password).map_err(|e| match e {
            None => no_page(),
            Some(e) => ApiError::new(Code::Undecodable, e.to_string()),
        })
    };
    let png = previews
        .get_or_make(format!("{}:{page}", file.id), fetch, convert)
        .await
        .map_err(|e| match e {
            PreviewError::Failed(e) => e,
            PreviewError::Panicked(e) => ApiError::internal(e),
        })?;
    Ok(response.content_type("image/png").body(png))
}

/// Page `page` of a document as PNG, scaled down to [`PAGE_IMAGE_MAX_SIDE`]. `None`: no such
/// page.
fn page_png(
    path: &std::path::Path,
    page: u32,
    limits: crate::document::Limits,
    password: Option<Password>,
) -> Result<Vec<u8>, Option<crate::document::DocumentError>> {
    let image = crate::document::page_image(path, page, limits, password, PAGE_IMAGE_MAX_SIDE)?
        .ok_or(None)?;
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| Some(crate::document::DocumentError::Undecodable(e.to_string())))?;
    Ok(png)
}
