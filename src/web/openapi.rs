//! The OpenAPI 3.1 document, generated from the handlers' annotations, and a small docs page
//! served from the binary (no CDN): `static/api-docs.js` renders the document.

use actix_web::HttpResponse;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::api::{self, account, admin, auth, search, tasks, tokens, webhooks};
use super::{ops, ws};
use crate::error::Code;

#[derive(OpenApi)]
#[openapi(
    info(title = "ocrd API", description = "Self-hosted OCR. Authenticate with the session cookie from `POST /api/auth/login` (and send its CSRF token as `X-CSRF-Token` on changes) or with `Authorization: Bearer <API token>`."),
    paths(
        auth::register, auth::login, auth::logout, auth::me, auth::change_password,
        auth::reset_password, account::usage,
        tokens::create, tokens::list, tokens::delete,
        tasks::create, tasks::list, tasks::get, tasks::result, tasks::delete, tasks::retry,
        tasks::page_image, tasks::cancel, tasks::file, tasks::thumbnail, tasks::timeline,
        search::search, search::search_all,
        webhooks::create, webhooks::list, webhooks::delete, webhooks::test, webhooks::rotate,
        webhooks::enable, webhooks::deliveries, webhooks::redeliver,
        admin::list_tasks, admin::bulk, admin::task_detail, admin::retry_task, admin::cancel_task,
        admin::task_priority,
        admin::list_workers, admin::drain_worker, admin::resume_worker,
        admin::queue, admin::pause_queue, admin::resume_queue, admin::audit_log,
        admin::health, admin::list_users, admin::update_user, admin::erase_user,
        admin::settings::list, admin::settings::update, admin::stats,
        admin::invites::create, admin::invites::list, admin::invites::revoke,
        admin::logs::list,
        ws::connect, document, docs_page, docs_script,
        ops::healthz, ops::readyz, ops::metrics,
    ),
    components(schemas(
        api::UserView, api::TaskView, api::ErrorView, auth::RegisterRequest, auth::LoginRequest,
        auth::SessionResponse, auth::ChangePasswordRequest,
        auth::ResetPasswordRequest, tokens::CreateTokenRequest, tokens::TokenView,
        tokens::CreatedToken, tokens::TokenList, tasks::TaskList, tasks::UploadForm,
        search::SearchResults, crate::search::Hit, crate::search::Segment,
        webhooks::WebhookEventName, webhooks::CreateWebhookRequest, webhooks::RedeliverRequest,
        webhooks::WebhookView, webhooks::WebhookWithSecret, webhooks::WebhookList,
        webhooks::AttemptView, webhooks::DeliveryView, webhooks::DeliveryList,
        webhooks::QueuedDelivery,
        account::AccountUsage, account::OwnLimits, crate::quota::Limits, crate::quota::Usage,
        crate::quota::Overrides, admin::QuotaChange,
        crate::tasks::OcrPolicy, crate::tasks::PageWarning, api::StatusName, api::FormatName,
        crate::config::EngineKind, admin::FilterParams, admin::BulkRequest, admin::AdminTaskView,
        admin::AdminTaskList, admin::WorkerList, admin::QueueView, admin::OrderName,
        crate::admin::tasks::BulkAction, crate::admin::tasks::BulkOutcome,
        crate::admin::workers::WorkerView, crate::db::models::HeldTask, admin::AuditPage,
        crate::db::models::AuditRow, crate::admin::health::Health,
        crate::admin::health::Dependency, crate::admin::health::Disk, crate::queue::QueueStats,
        admin::settings::SettingList, crate::settings::SettingView,
        admin::invites::CreateInviteRequest, admin::invites::CreatedInvite,
        admin::invites::InviteList, crate::db::models::Invite,
        admin::logs::LogPage, admin::logs::LogLevel, crate::logs::LogRecord,
        crate::admin::stats::Stats, crate::admin::stats::Window, crate::admin::stats::Point,
        crate::admin::stats::Percentiles, crate::admin::stats::QueueFigures,
        crate::admin::stats::EngineFigures, crate::admin::stats::UserFigures,
        admin::PriorityRequest, tasks::Timeline, tasks::TimelineStep, admin::AdminTaskDetail, crate::db::models::TaskEvent,
        admin::AdminUserView, admin::AdminUserList, admin::UpdateUserRequest, admin::RoleName,
    )),
    modifiers(&Security, &ErrorCodes, &Contract),
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::auth::SESSION_COOKIE,
            ))),
        );
    }
}

/// The error-code table, from the code itself, in the document's description.
struct ErrorCodes;

impl utoipa::Modify for ErrorCodes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let mut table = String::from(
            "\n\nErrors are `{\"error\":{\"code\":…,\"message\":…}}`. Codes:\n\n| code | status | meaning |\n|---|---|---|\n",
        );
        for code in Code::ALL {
            table.push_str(&format!(
                "| `{}` | {} | {} |\n",
                code.as_str(),
                code.status().as_u16(),
                code.meaning()
            ));
        }
        let description = doc.info.description.get_or_insert_with(String::new);
        description.push_str(&table);
    }
}

/// The answers the edge, the extractors and the error type give on any route, added to each
/// operation that can give them, so that the document lists every status a route returns.
struct Contract;

impl utoipa::Modify for Contract {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{HttpMethod, ResponseBuilder};
        for (path, item) in doc.paths.paths.iter_mut() {
            let api = path.starts_with("/api/")
                && !path.starts_with("/api/docs")
                && path != "/api/openapi.json";
            for method in [
                HttpMethod::Get,
                HttpMethod::Post,
                HttpMethod::Patch,
                HttpMethod::Delete,
            ] {
                let operation = match method {
                    HttpMethod::Get => item.get.as_mut(),
                    HttpMethod::Post => item.post.as_mut(),
                    HttpMethod::Patch => item.patch.as_mut(),
                    _ => item.delete.as_mut(),
                };
                let Some(operation) = operation else { continue };
                let parameters = path.contains('{')
                    || operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
                let body = operation.request_body.as_ref();
                let json = body.is_some_and(|b| {
                    matches!(b, utoipa::openapi::RefOr::T(b) if b.content.contains_key("application/json"))
                });
                let mut common: Vec<(&str, &str)> = vec![
                    ("414", "`uri_too_long`"),
                    ("421", "`host_not_allowed`"),
                    ("431", "`headers_too_large`"),
                    ("500", "`internal`"),
                ];
                if parameters || body.is_some() {
                    common.push(("400", "`invalid_request`: a parameter or the body breaks a rule this document states"));
                }
                if json {
                    common.push(("413", "`payload_too_large`: a JSON body over 64 KiB"));
                    common.push((
                        "415",
                        "`unsupported_type`: the body is not `application/json`",
                    ));
                }
                if api || path == "/ws" {
                    common.push(("429", "`too_many_requests`: over `rate_limits.api_per_second` and `api_burst` (or the route's own limit), with Retry-After"));
                    common.push((
                        "503",
                        "`unavailable`: the database, queue or storage cannot be reached",
                    ));
                }
                for (status, description) in common {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| {
                            ResponseBuilder::new()
                                .description(description)
                                .build()
                                .into()
                        });
                }
            }
        }
    }
}

/// This document, with the install's own values where a rule depends on the configuration.
#[utoipa::path(get, path = "/api/openapi.json", tag = "documentation", responses((status = 200, description = "OpenAPI 3.1 JSON")))]
pub async fn document(app: actix_web::web::Data<crate::app::App>) -> HttpResponse {
    match served(&app.config) {
        Ok(json) => HttpResponse::Ok()
            .content_type("application/json")
            .body(json),
        Err(e) => actix_web::ResponseError::error_response(&crate::error::ApiError::internal(e)),
    }
}

/// The document as served by an install with `config`.
pub fn served(config: &crate::config::Config) -> Result<String, serde_json::Error> {
    let mut doc = serde_json::to_value(ApiDoc::openapi())?;
    let min = config.auth.min_password_length;
    for (schema, field) in [
        ("RegisterRequest", "password"),
        ("ChangePasswordRequest", "new_password"),
        ("ResetPasswordRequest", "password"),
    ] {
        doc["components"]["schemas"][schema]["properties"][field]["minLength"] = min.into();
    }
    serde_json::to_string(&doc)
}

const DOCS_HTML: &str = include_str!("../../static/api-docs.html");
const DOCS_JS: &str = include_str!("../../static/api-docs.js");

/// A readable page of this document.
#[utoipa::path(get, path = "/api/docs", tag = "documentation", responses((status = 200, description = "HTML", content_type = "text/html")))]
pub async fn docs_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
        ))
        .body(DOCS_HTML)
}

/// The docs page's script.
#[utoipa::path(get, path = "/api/docs.js", tag = "documentation", responses((status = 200, description = "JavaScript", content_type = "text/javascript")))]
pub async fn docs_script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(DOCS_JS)
}
