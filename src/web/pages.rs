//! The web pages: server-rendered Tera templates with small plain-JS modules that talk to the
//! JSON API and the WebSocket.
//!
//! Pages are GET only; every change goes through `/api` with the session's CSRF token, which
//! each page carries in `<meta name="csrf-token">`. Pages send a strict Content-Security-Policy
//! (`script-src 'self'`, no inline script or style), so data a page needs rides in
//! `<script type="application/json">` islands, which are never executed.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use futures::FutureExt;
use serde::Serialize;

use super::api::TaskView;
use super::assets::Assets;
use crate::app::App;
use crate::auth::{CurrentUser, Via, authenticate};
use crate::config::Registration;
use crate::db::DbError;
use crate::db::models::{PasswordReset, Task};
use crate::error::{ApiError, Code, escape_markup};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(dashboard))
        .route("/login", web::get().to(login))
        .route("/register", web::get().to(register))
        .route("/reset/{token}", web::get().to(reset))
        .route("/upload", web::get().to(upload))
        .route("/tasks/{id}", web::get().to(task))
        .route("/tasks/{id}/view", web::get().to(viewer))
        .route("/account", web::get().to(account))
        .route("/admin", web::get().to(admin_overview))
        .route("/admin/tasks", web::get().to(admin_tasks))
        .route("/admin/tasks/{id}", web::get().to(admin_task))
        .route("/admin/users", web::get().to(admin_users))
        .route("/admin/settings", web::get().to(admin_settings))
        .route("/admin/logs", web::get().to(admin_logs))
        .route("/admin/audit", web::get().to(admin_audit))
        .route(
            "/static/{path:.*}",
            web::get().to(super::assets::serve_static),
        );
}

/// The signed-in browser behind a page request, or the answer to send instead: the login page
/// (remembering where to return) or an error page.
async fn signed_in(req: &HttpRequest, assets: &Assets) -> Result<CurrentUser, HttpResponse> {
    match authenticate(req).await {
        Ok(current) => Ok(current),
        Err(e) if e.code == Code::Unauthenticated => {
            let next = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            let target = if next == "/" {
                "/login".to_owned()
            } else {
                format!(
                    "/login?next={}",
                    url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                )
            };
            Err(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, target))
                .finish())
        }
        Err(e) => Err(error_page(assets, None, &e)),
    }
}

#[derive(Serialize)]
struct Viewer<'a> {
    id: &'a str,
    email: &'a str,
    admin: bool,
    /// Operators and admins: the console's link.
    operator: bool,
}

/// A page: the template, the signed-in user (if any) and the page's own values.
fn page(
    assets: &Assets,
    status: StatusCode,
    name: &str,
    current: Option<&CurrentUser>,
    mut context: tera::Context,
) -> HttpResponse {
    if let Some(current) = current {
        context.insert(
            "viewer",
            &Viewer {
                id: &current.user.id,
                email: &current.user.email,
                admin: current.user.is_admin(),
                operator: current.user.can_operate(),
            },
        );
        if let Via::Session { csrf_token, .. } = &current.via {
            context.insert("csrf_token", csrf_token);
        }
    }
    match assets.render(name, &context) {
        Ok(html) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header(("Content-Security-Policy", crate::edge::CSP))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(html),
        Err(e) => {
            tracing::error!(template = name, error = ?e, "rendering a page");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("The page could not be rendered; the error was logged.")
        }
    }
}

/// The error page for an API error: its status, code and message in plain words.
pub fn error_page(
    assets: &Assets,
    current: Option<&CurrentUser>,
    error: &ApiError,
) -> HttpResponse {
    let mut context = tera::Context::new();
    let title = match error.code.status() {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::SERVICE_UNAVAILABLE => "Temporarily unavailable",
        s if s.is_server_error() => "Something went wrong",
        _ => "This did not work",
    };
    context.insert("title", title);
    context.insert("code", error.code.as_str());
    context.insert("message", &error.message);
    page(assets, error.code.status(), "error.html", current, context)
}

/// The 404 page for a browser; `None` where the client wants JSON (the API, scripts).
pub fn not_found_page(req: &HttpRequest) -> Option<HttpResponse> {
    let path = req.path();
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if path.starts_with("/api/") || path == "/ws" || !wants_html {
        return None;
    }
    let assets = req.app_data::<web::Data<Assets>>()?;
    let error = ApiError::new(Code::NotFound, "There is no page at this address.");
    Some(error_page(assets, None, &error))
}

/// A template context from `"key" => value` pairs.
macro_rules! context {
    ($($key:literal => $value:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut context = tera::Context::new();
        $(context.insert($key, &$value);)*
        context
    }};
}

async fn dashboard(req: HttpRequest, assets: web::Data<Assets>) -> HttpResponse {
    match signed_in(&req, &assets).await {
        Ok(current) => page(
            &assets,
            StatusCode::OK,
            "dashboard.html",
            Some(&current),
            context! {"nav" => "tasks"},
        ),
        Err(response) => response,
    }
}

async fn upload(req: HttpRequest, app: web::Data<App>, assets: web::Data<Assets>) -> HttpResponse {
    match signed_in(&req, &assets).await {
        Ok(current) => {
            // Workers run the configured engine only.
            let served = app.config.ocr.engine;
            let engines = vec![(served.as_str(), served.description())];
            let context = context! {
                "nav" => "upload",
                "max_upload_bytes" => app.settings.get().max_upload_bytes,
                "engines" => engines,
                "default_engine" => app.config.ocr.engine.as_str(),
                "default_lang" => app.config.ocr.lang.to_string(),
            };
            page(
                &assets,
                StatusCode::OK,
                "upload.html",
                Some(&current),
                context,
            )
        }
        Err(response) => response,
    }
}

async fn account(req: HttpRequest, app: web::Data<App>, assets: web::Data<Assets>) -> HttpResponse {
    match signed_in(&req, &assets).await {
        Ok(current) => {
            let context = context! {
                "nav" => "account",
                "min_password_length" => app.config.auth.min_password_length,
            };
            page(
                &assets,
                StatusCode::OK,
                "account.html",
                Some(&current),
                context,
            )
        }
        Err(response) => response,
    }
}

/// Who may open a console page.
#[derive(Clone, Copy, PartialEq)]
enum Console {
    Operators,
    Admins,
}

/// A page of the operators' console: anyone else gets the 403 page.
async fn console_page(
    req: &HttpRequest,
    assets: &Assets,
    template: &str,
    section: &str,
    who: Console,
    mut context: tera::Context,
) -> HttpResponse {
    let current = match signed_in(req, assets).await {
        Ok(current) => current,
        Err(response) => return response,
    };
    let refused = match who {
        Console::Operators if !current.user.can_operate() => {
            Some("the console is for operators and administrators")
        }
        Console::Admins if !current.user.is_admin() => Some("this page is for administrators"),
        _ => None,
    };
    if let Some(message) = refused {
        let error = ApiError::new(Code::Forbidden, message);
        return error_page(assets, Some(&current), &error);
    }
    context.insert("nav", "admin");
    context.insert("section", section);
    page(assets, StatusCode::OK, template, Some(&current), context)
}

async fn admin_overview(req: HttpRequest, assets: web::Data<Assets>) -> HttpResponse {
    let (template, who) = ("admin.html", Console::Operators);
    console_page(
        &req,
        &assets,
        template,
        "overview",
        who,
        tera::Context::new(),
    )
    .await
}

async fn admin_tasks(req: HttpRequest, assets: web::Data<Assets>) -> HttpResponse {
    let (template, who) = ("admin-tasks.html", Console::Operators);
    console_page(&req, &assets, template, "tasks", who, tera::Context::new()).await
}

/// One task with its timeline; the page asks the API for it, which answers 404 for an unknown
/// one.
async fn admin_task(req: HttpRequest, assets: web::Data<Assets>) -> HttpResponse {
    let id = req.match_info().get("id").unwrap_or_default();
    if !crate::db::models::is_id(id) {
        return error_page(&assets, None, &ApiError::task_not_found());
    }
    let context = context! {"task_id" => id};
    let (template, who) = ("admin-task.html", Console::Operators);
    console_page(&req, &assets, template, "tasks", who, context).await
}

async fn admin_users(req: HttpRequest, assets: web::Data<Assets>) -> HttpResponse {
    let (template, who) = ("admin-users.html", Console::Admins);
    console_page(&req, &assets, template, "users", who, tera::Context::new()).await
}

/// Operators see the settings; only admins can change them.
async fn admin_settings(req: HttpRequest, assets: web::Data<Assets>) -> HttpResponse {
    let (template, who) = ("admin-settings.html", Console::Operators);
    console_page(
        &req,
        &assets,
        template,
        "settings",
        who,
        tera::Context::new(),
    )
    .await
}

async fn admin_logs(req: HttpRequest, assets: web::Data<Assets>) -> HttpResponse {
    let (template, who) = ("admin-logs.html", Console::Operators);
    console_page(&req, &assets, template, "logs", who, tera::Context::new()).await
}

async fn admin_audit(req: HttpRequest, assets: web::Data<Assets>) -> HttpResponse {
    let (template, who) = ("admin-audit.html", Console::Operators);
    console_page(&req, &assets, template, "audit", who, tera::Context::new()).await
}

/// A task page (detail or viewer) of the signed-in user; another user's task is the 404 page.
async fn task_page(req: &HttpRequest, app: &App, assets: &Assets, template: &str) -> HttpResponse {
    let current = match signed_in(req, assets).await {
        Ok(current) => current,
        Err(response) => return response,
    };
    let id = req.match_info().get("id").unwrap_or_default().to_owned();
    let user_id = current.user.id.clone();
    let found = if crate::db::models::is_id(&id) {
        app.db
            .run(move |c| async move { Task::find_named_for_user(c, &user_id, &id).await }.boxed())
            .await
    } else {
        Err(DbError::NotFound)
    };
    let (task, file) = match found {
        Ok(found) => found,
        Err(DbError::NotFound) => {
            return error_page(assets, Some(&current), &ApiError::task_not_found());
        }
        Err(e) => return error_page(assets, Some(&current), &e.into()),
    };
    let view = TaskView::new(&task, &file);
    // The page works without the result's details; the API fills them in on refresh.
    let view = match crate::results::of_completed(app, &task).await {
        Ok(Some(result)) => view.with_result(&result),
        _ => view,
    };
    let island = escape_markup(&serde_json::to_string(&view).unwrap_or_else(|_| "null".into()));
    let context = context! {"nav" => "tasks", "task" => view, "task_json" => island};
    page(assets, StatusCode::OK, template, Some(&current), context)
}

async fn task(req: HttpRequest, app: web::Data<App>, assets: web::Data<Assets>) -> HttpResponse {
    task_page(&req, &app, &assets, "task.html").await
}

async fn viewer(req: HttpRequest, app: web::Data<App>, assets: web::Data<Assets>) -> HttpResponse {
    task_page(&req, &app, &assets, "viewer.html").await
}

/// Sign-in and registration: a signed-in browser goes to its dashboard instead.
async fn signed_out_page(
    req: &HttpRequest,
    app: &App,
    assets: &Assets,
    template: &str,
) -> HttpResponse {
    if authenticate(req).await.is_ok() {
        return HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/"))
            .finish();
    }
    let registration = match app.settings.get().registration {
        Registration::Open => "open",
        Registration::Closed => "closed",
        Registration::Invite => "invite",
    };
    // An invite link (`/register?invite=…`) fills in its code.
    let invite = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(key, _)| key == "invite")
        .map(|(_, value)| value.chars().take(128).collect::<String>())
        .unwrap_or_default();
    let context = context! {
        "registration" => registration,
        "min_password_length" => app.config.auth.min_password_length,
        "invite" => invite,
    };
    page(assets, StatusCode::OK, template, None, context)
}

async fn login(req: HttpRequest, app: web::Data<App>, assets: web::Data<Assets>) -> HttpResponse {
    signed_out_page(&req, &app, &assets, "login.html").await
}

async fn register(
    req: HttpRequest,
    app: web::Data<App>,
    assets: web::Data<Assets>,
) -> HttpResponse {
    signed_out_page(&req, &app, &assets, "register.html").await
}

/// The form of a password reset link; says so at once when the link is no longer valid.
async fn reset(
    app: web::Data<App>,
    assets: web::Data<Assets>,
    token: web::Path<String>,
) -> HttpResponse {
    let hash = crate::auth::token_hash(token.trim());
    let valid = app
        .db
        .run(move |c| async move { PasswordReset::user_of(c, &hash).await }.boxed())
        .await;
    match valid {
        Ok(Some(_)) => {
            let context = context! {"token" => token.as_str(), "min_password_length" => app.config.auth.min_password_length};
            page(&assets, StatusCode::OK, "reset.html", None, context)
        }
        Ok(None) => error_page(
            &assets,
            None,
            &ApiError::new(
                Code::ResetLinkInvalid,
                "This reset link is unknown, used or expired. Ask an administrator for a new one.",
            ),
        ),
        Err(e) => error_page(&assets, None, &e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every template renders from the built-in copies, signed in and out.
    #[test]
    fn every_template_renders() {
        let assets = Assets::new(None).unwrap();
        let task = serde_json::json!({"id": "t1", "filename": "scan.png", "status": "completed"});
        let viewer = serde_json::json!({"id": "u1", "email": "a@example.com", "admin": false});
        for name in [
            "login.html",
            "register.html",
            "reset.html",
            "dashboard.html",
            "upload.html",
            "task.html",
            "viewer.html",
            "account.html",
            "error.html",
        ] {
            for signed_in in [false, true] {
                let mut context = context! {
                    "registration" => "open", "min_password_length" => 10, "token" => "x",
                    "max_upload_bytes" => 1000, "default_engine" => "ppocr", "default_lang" => "latin",
                    "engines" => [("ppocr", "PP-OCR")], "task" => task,
                    "task_json" => "{}", "title" => "Not found", "code" => "not_found",
                    "message" => "<gone>",
                };
                if signed_in {
                    context.insert("viewer", &viewer);
                    context.insert("csrf_token", "c");
                }
                let html = assets
                    .render(name, &context)
                    .unwrap_or_else(|e| panic!("{name}: {e:?}"));
                assert!(html.contains("</html>"), "{name}");
                assert!(!html.contains("<gone>"), "{name}: not escaped");
            }
        }
    }
}
