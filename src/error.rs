//! The HTTP error type and the table of stable error codes.
//!
//! Policy: every API error is JSON `{"error":{"code","message"}}`. The `code` is stable and
//! documented (clients branch on it); the `message` is for people and may change. Internal
//! details (SQL, storage errors) are logged with the request id and never sent: the client
//! gets `internal` or `unavailable`. Another user's resource is `*_not_found`, never
//! forbidden, so ids cannot be probed.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::db::DbError;

macro_rules! codes {
    ($($variant:ident => ($status:ident, $code:literal, $meaning:literal),)*) => {
        /// Stable API error codes.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Code { $($variant),* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code),* }
            }

            pub fn status(self) -> StatusCode {
                match self { $(Code::$variant => StatusCode::$status),* }
            }

            /// What the code means, for the API documentation.
            pub fn meaning(self) -> &'static str {
                match self { $(Code::$variant => $meaning),* }
            }
        }
    };
}

codes! {
    InvalidRequest => (BAD_REQUEST, "invalid_request", "The request is malformed or a field is invalid."),
    WeakPassword => (BAD_REQUEST, "weak_password", "The password is too short or too common."),
    EmptyFile => (BAD_REQUEST, "empty_file", "The uploaded file is empty."),
    Unauthenticated => (UNAUTHORIZED, "unauthenticated", "No valid session cookie or API token."),
    InvalidCredentials => (UNAUTHORIZED, "invalid_credentials", "Wrong email or password."),
    CsrfFailed => (FORBIDDEN, "csrf_failed", "A cookie-authenticated change needs the X-CSRF-Token header."),
    Forbidden => (FORBIDDEN, "forbidden", "The account may not do this (admins only, or disabled)."),
    RegistrationClosed => (FORBIDDEN, "registration_closed", "Accounts are created by an administrator, or need an invite code."),
    NotFound => (NOT_FOUND, "not_found", "No such route or resource."),
    MethodNotAllowed => (METHOD_NOT_ALLOWED, "method_not_allowed", "The route exists, but not for this method; the Allow header lists those it has."),
    TaskNotFound => (NOT_FOUND, "task_not_found", "No such task for this account."),
    TokenNotFound => (NOT_FOUND, "token_not_found", "No such API token for this account."),
    ResultNotFound => (NOT_FOUND, "result_not_found", "The task has no result in this format (yet)."),
    ResetLinkInvalid => (NOT_FOUND, "reset_link_invalid", "The password reset link is unknown, used or expired."),
    PageNotFound => (NOT_FOUND, "page_not_found", "The document has no page with this number."),
    EmailTaken => (CONFLICT, "email_taken", "An account with this email exists."),
    Conflict => (CONFLICT, "conflict", "The change is refused as it stands (e.g. an admin demoting their own account)."),
    NotRetryable => (CONFLICT, "not_retryable", "Only a failed or cancelled task can be retried."),
    NotCancellable => (CONFLICT, "not_cancellable", "Only a queued or processing task can be cancelled."),
    WebhookNotFound => (NOT_FOUND, "webhook_not_found", "No such webhook endpoint (or delivery) for this account."),
    WebhookTargetRefused => (UNPROCESSABLE_ENTITY, "webhook_target_refused", "The webhook URL's host resolves to a loopback, private, link-local or reserved address, which webhooks may not reach."),
    WorkerNotFound => (NOT_FOUND, "worker_not_found", "No worker with this id is registered."),
    HostNotAllowed => (MISDIRECTED_REQUEST, "host_not_allowed", "The Host header names a host this server does not answer for (server.allowed_hosts)."),
    RequestTimeout => (REQUEST_TIMEOUT, "request_timeout", "The upload stalled for longer than server.upload_idle_secs; nothing was kept."),
    UriTooLong => (URI_TOO_LONG, "uri_too_long", "The path and query are longer than 8 KiB."),
    HeadersTooLarge => (REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large", "The request's headers are larger than 32 KiB together."),
    PayloadTooLarge => (PAYLOAD_TOO_LARGE, "payload_too_large", "The upload is larger than limits.max_upload_bytes."),
    UnsupportedType => (UNSUPPORTED_MEDIA_TYPE, "unsupported_type", "Not PNG, JPEG, TIFF, WebP, BMP or PDF (sniffed from the bytes)."),
    Undecodable => (UNPROCESSABLE_ENTITY, "undecodable", "The document cannot be decoded."),
    TooManyRequests => (TOO_MANY_REQUESTS, "too_many_requests", "Too many attempts; retry after Retry-After seconds."),
    QuotaExceeded => (TOO_MANY_REQUESTS, "quota_exceeded", "Over the account's quota of pages per month or of tasks at once; the message names it and the use, Retry-After says when to try again."),
    StorageQuotaExceeded => (FORBIDDEN, "storage_quota_exceeded", "The account's storage quota is used up, or this upload would cross it; nothing was kept. Delete tasks to make room."),
    ReadOnly => (SERVICE_UNAVAILABLE, "read_only", "Uploads are refused for maintenance (the maintenance.read_only setting); everything else works."),
    Unavailable => (SERVICE_UNAVAILABLE, "unavailable", "A dependency (database, queue, storage) is unavailable; retry later."),
    Internal => (INTERNAL_SERVER_ERROR, "internal", "An unexpected error; it was logged."),
}

#[derive(Debug, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
    /// More headers for the answer (a rate limit's `RateLimit`, …).
    pub headers: Vec<(&'static str, String)>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// `message` becomes a full sentence (a capital first letter, a closing full stop),
    /// whichever module wrote it: one style in every answer.
    pub fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: sentence(message.into()),
            retry_after: None,
            headers: Vec::new(),
        }
    }

    pub fn unauthenticated() -> ApiError {
        ApiError::new(
            Code::Unauthenticated,
            "sign in, or send an API token as Authorization: Bearer",
        )
    }

    pub fn task_not_found() -> ApiError {
        ApiError::new(Code::TaskNotFound, "no such task")
    }

    /// A retry of a task in `status` (not failed or cancelled).
    pub fn not_retryable(status: &str) -> ApiError {
        ApiError::new(
            Code::NotRetryable,
            format!("the task is {status}; only failed or cancelled tasks can be retried"),
        )
    }

    /// A cancel of a task in `status` (not queued or processing).
    pub fn not_cancellable(status: &str) -> ApiError {
        ApiError::new(
            Code::NotCancellable,
            format!("the task is {status}; only queued or processing tasks can be cancelled"),
        )
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::InvalidRequest, message)
    }

    /// Logs the cause and hides it from the client.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            Code::Internal,
            "an unexpected error occurred; it was logged",
        )
    }
}

/// `text` with a capital first letter and a closing full stop, unless it has them.
fn sentence(text: String) -> String {
    let mut chars = text.chars();
    let Some(first) = chars.next() else {
        return text;
    };
    let mut out: String = first.to_uppercase().chain(chars).collect();
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound => ApiError::new(Code::NotFound, "not found"),
            e if e.is_transient() => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::new(
                    Code::Unavailable,
                    "the database is unavailable; retry later",
                )
            }
            e => ApiError::internal(e),
        }
    }
}

impl From<crate::admin::AdminError> for ApiError {
    fn from(e: crate::admin::AdminError) -> Self {
        match e {
            crate::admin::AdminError::Db(e) => e.into(),
            crate::admin::AdminError::Blob(e) => e.into(),
        }
    }
}

impl From<crate::blobs::BlobError> for ApiError {
    fn from(e: crate::blobs::BlobError) -> Self {
        match e {
            crate::blobs::BlobError::NotFound(_) => {
                ApiError::new(Code::ResultNotFound, "the stored object is gone")
            }
            crate::blobs::BlobError::Local(e) => ApiError::internal(e),
            e => {
                tracing::warn!(error = %e, "storage error");
                ApiError::new(Code::Unavailable, "storage is unavailable; retry later")
            }
        }
    }
}

/// A quota refused: 429 `quota_exceeded` (pages, tasks at once) with `Retry-After`, 403
/// `storage_quota_exceeded`, 413 for an upload over the account's size; each with the
/// `RateLimit-Policy` and `RateLimit` headers of the limit.
impl From<crate::quota::Refusal> for ApiError {
    fn from(refusal: crate::quota::Refusal) -> Self {
        use crate::quota::Refusal;
        let at = crate::db::models::now();
        let code = match refusal {
            Refusal::Storage { .. } => Code::StorageQuotaExceeded,
            Refusal::UploadSize { .. } => Code::PayloadTooLarge,
            _ => Code::QuotaExceeded,
        };
        let mut error = ApiError::new(code, refusal.to_string());
        error.retry_after = refusal.retry_after(at);
        error.headers.extend(refusal.headers(at));
        error
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Some(secs) = self.retry_after {
            response.insert_header(("Retry-After", secs.to_string()));
        }
        for (name, value) in &self.headers {
            response.insert_header((*name, value.as_str()));
        }
        let body = Body {
            error: Inner {
                code: self.code.as_str(),
                message: &self.message,
            },
        };
        let text = serde_json::to_string(&body).unwrap_or_else(|_| "{}".into());
        response
            .content_type("application/json")
            .body(escape_markup(&text))
    }
}

/// JSON text with `<`, `>` and `&` escaped as `\u003c`, `\u003e`, `\u0026` (still the same
/// JSON value): a value a user chose, such as a file name, never reads as markup.
pub fn escape_markup(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_are_full_sentences() {
        let said = |m: &str| super::ApiError::invalid(m).message;
        assert_eq!(said("wrong email or password"), "Wrong email or password.");
        assert_eq!(
            said("Too many requests; try again in 3 s."),
            "Too many requests; try again in 3 s."
        );
        assert_eq!(said("`x` is unknown"), "`x` is unknown.");
        assert_eq!(said(""), "");
    }

    use super::*;

    #[test]
    fn codes_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            assert!(seen.insert(code.as_str()), "{code:?} twice");
            assert!(
                code.as_str()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_')
            );
            assert!(code.status().is_client_error() || code.status().is_server_error());
        }
    }
}
