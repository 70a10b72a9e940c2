//! The OpenAPI 3.1 document, generated from the handlers' annotations, and a small docs page
//! served from the binary (no CDN): `static/api-docs.js` renders the document.

use actix_web::HttpResponse;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::api::{self, auth, tasks, tokens};
use super::{ops, ws};
use crate::error::Code;

#[derive(OpenApi)]
#[openapi(
    info(title = "ocrd API", description = "Self-hosted OCR. Authenticate with the session cookie from `POST /api/auth/login` (and send its CSRF token as `X-CSRF-Token` on changes) or with `Authorization: Bearer <API token>`."),
    paths(
        auth::register, auth::login, auth::logout, auth::me, auth::change_password,
        auth::reset_password,
        tokens::create, tokens::list, tokens::delete,
        tasks::create, tasks::list, tasks::get, tasks::result, tasks::delete, tasks::retry,
        tasks::page_image,
        ws::connect, document, docs_page, docs_script,
        ops::healthz, ops::readyz, ops::metrics,
    ),
    components(schemas(
        api::UserView, api::TaskView, api::ErrorView, auth::RegisterRequest, auth::LoginRequest,
        auth::SessionResponse, auth::ChangePasswordRequest,
        auth::ResetPasswordRequest, tokens::CreateTokenRequest, tokens::TokenView,
        tokens::CreatedToken, tokens::TokenList, tasks::TaskList, tasks::UploadForm,
        crate::tasks::OcrPolicy, crate::tasks::PageWarning,
    )),
    modifiers(&Security, &ErrorCodes),
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

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "documentation", responses((status = 200, description = "OpenAPI 3.1 JSON")))]
pub async fn document() -> HttpResponse {
    match ApiDoc::openapi().to_json() {
        Ok(json) => HttpResponse::Ok()
            .content_type("application/json")
            .body(json),
        Err(e) => actix_web::ResponseError::error_response(&crate::error::ApiError::internal(e)),
    }
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
