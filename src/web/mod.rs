//! The HTTP server of `ocrd serve` and `ocrd all-in-one`: the web pages, the REST API, the
//! WebSocket, the OpenAPI document and the operational endpoints.
//!
//! [`bind`] binds the listener and builds the server without running it (port 0 picks a free
//! port, which tests use); awaiting the returned server runs it.

mod api;
mod assets;
mod metrics;
pub mod openapi;
mod ops;
mod pages;
mod previews;
mod ws;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{App as HttpApp, HttpMessage, HttpServer, middleware, web};
use tracing::Instrument;

use crate::app::App;
use crate::error::{ApiError, Code};
pub use metrics::ServerMetrics;

/// Largest JSON body the API reads (uploads are multipart and limited separately).
const JSON_LIMIT: usize = 64 << 10;
/// Longest path and query string, and most header bytes, a request may have (actix's own
/// limits are far higher).
const MAX_URI: usize = 8 << 10;
const MAX_HEADER_BYTES: usize = 32 << 10;

/// What every handler can reach besides the `App`.
#[derive(Clone)]
pub struct WebState {
    pub metrics: Arc<ServerMetrics>,
    /// The worker's metrics when it runs in the same process (all-in-one).
    pub worker_metrics: Option<Arc<crate::worker::Metrics>>,
    /// The one event subscription of this process, fanned out to its sockets.
    pub events: tokio::sync::broadcast::Sender<crate::events::Event>,
    /// What this server offers.
    pub scope: Scope,
}

/// What a server offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The API, the WebSocket, the docs and the operational endpoints (`serve`, all-in-one).
    Full,
    /// `/healthz`, `/readyz` and `/metrics` only: the health server of `ocrd work`.
    Operations,
}

/// Binds `addr` and builds the server (HTTPS when `server.tls_cert` is set and this is the
/// full server). Returns it (to be awaited) and the bound address.
pub fn bind(
    addr: &str,
    app: App,
    worker_metrics: Option<Arc<crate::worker::Metrics>>,
    scope: Scope,
) -> std::io::Result<(Server, SocketAddr)> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    Ok((serve(listener, app, worker_metrics, scope)?, bound))
}

pub fn serve(
    listener: TcpListener,
    app: App,
    worker_metrics: Option<Arc<crate::worker::Metrics>>,
    scope: Scope,
) -> std::io::Result<Server> {
    crate::admin::health::mark_started();
    let events = match scope {
        Scope::Full => ws::fan_out(&app.events),
        // No sockets: no event subscription either.
        Scope::Operations => tokio::sync::broadcast::channel(1).0,
    };
    let state = WebState {
        metrics: app.server_metrics.clone(),
        worker_metrics,
        events,
        scope,
    };
    let server_config = &app.config.server;
    let tls = match scope {
        Scope::Full if server_config.tls() => Some(
            crate::edge::tls::configure(server_config)
                .map_err(|e| std::io::Error::other(format!("TLS: {e}")))?,
        ),
        _ => None,
    };
    let edge = match scope {
        Scope::Full => crate::edge::Edge::public(server_config, tls.is_some()),
        Scope::Operations => crate::edge::Edge::operations(server_config),
    }
    .map_err(std::io::Error::other)?;
    let edge = web::Data::new(edge);
    let keep_alive = Duration::from_secs(server_config.keep_alive_secs);
    let max_connections = server_config.max_connections;
    let max_tls_handshakes = server_config.max_tls_handshakes;
    // Built now, so that the first login of an unknown email is not slower than the others.
    let _ = crate::auth::password::dummy_hash();
    let assets = assets::Assets::new(app.config.server.dev_assets_dir.clone())
        .map_err(|e| std::io::Error::other(format!("web templates: {e}")))?
        .with_settings(app.settings.clone());
    let assets = web::Data::new(assets);
    let previews = web::Data::new(previews::Previews::default());
    let client_request_timeout = Duration::from_secs(app.config.server.client_request_timeout_secs);
    let app = web::Data::new(app);
    let server = HttpServer::new(move || {
        let cors = cors(&app.config.server.cors_origins);
        HttpApp::new()
            .app_data(app.clone())
            .app_data(assets.clone())
            .app_data(previews.clone())
            .app_data(web::Data::new(state.clone()))
            .app_data(edge.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(JSON_LIMIT)
                    .error_handler(json_error),
            )
            .app_data(
                web::QueryConfig::default()
                    .error_handler(|e, _| ApiError::invalid(format!("invalid query: {e}")).into()),
            )
            .app_data(
                web::PathConfig::default()
                    .error_handler(|e, _| ApiError::invalid(format!("invalid path: {e}")).into()),
            )
            .configure(match scope {
                Scope::Full => |cfg: &mut web::ServiceConfig| {
                    routes(cfg);
                    pages::routes(cfg);
                },
                Scope::Operations => operations,
            })
            .default_service(web::to(|req: actix_web::HttpRequest| async move {
                if let Some(error) = wrong_method(&req) {
                    return Err(error);
                }
                match pages::not_found_page(&req) {
                    Some(page) => Ok(page),
                    None => Err(ApiError::new(Code::NotFound, "There is no such route.")),
                }
            }))
            .wrap(cors)
            .wrap(middleware::Compress::default())
            .wrap(middleware::from_fn(limit_request_head))
            .wrap(middleware::from_fn(crate::edge::guard))
            .wrap(middleware::from_fn(observe))
    })
    .disable_signals()
    // Headers must arrive within this (slow-header clients get 408 and are cut off); an idle
    // keep-alive connection is closed after keep_alive_secs.
    .client_request_timeout(client_request_timeout)
    .keep_alive(keep_alive)
    .max_connections(max_connections)
    .max_connection_rate(max_tls_handshakes);
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}

/// The HTTP→HTTPS listener of `server.redirect_http`: every request gets a 301 to the same
/// path on `public_url`. The target's host comes from the configuration, never the request.
pub fn bind_redirect(addr: &str, public_url: &str) -> std::io::Result<(Server, SocketAddr)> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let base = public_url.trim_end_matches('/').to_owned();
    let server = HttpServer::new(move || {
        let base = base.clone();
        HttpApp::new().default_service(web::to(move |req: actix_web::HttpRequest| {
            let target = format!(
                "{base}{}",
                req.uri().path_and_query().map_or("/", |p| p.as_str())
            );
            async move {
                let mut response = actix_web::HttpResponse::MovedPermanently()
                    .insert_header((actix_web::http::header::LOCATION, target))
                    .finish();
                crate::edge::security_headers(response.headers_mut());
                response
            }
        }))
    })
    .disable_signals()
    .workers(1)
    .client_request_timeout(Duration::from_secs(10))
    .keep_alive(Duration::from_secs(5))
    .listen(listener)?
    .run();
    Ok((server, bound))
}

/// 405 with `Allow` when an API route exists for the path but not for the request's method.
fn wrong_method(req: &actix_web::HttpRequest) -> Option<ApiError> {
    /// [`ROUTES`] as matchers, parsed once.
    static MATCHERS: std::sync::LazyLock<Vec<(String, actix_web::dev::ResourceDef)>> =
        std::sync::LazyLock::new(|| {
            ROUTES
                .iter()
                .map(|(method, pattern)| {
                    let matcher = actix_web::dev::ResourceDef::new(*pattern);
                    (method.to_ascii_uppercase(), matcher)
                })
                .collect()
        });
    let path = req.match_info().as_str();
    let allowed: Vec<&str> = MATCHERS
        .iter()
        .filter(|(_, matcher)| matcher.is_match(path))
        .map(|(method, _)| method.as_str())
        .collect();
    if allowed.is_empty() {
        return None;
    }
    let allow = allowed.join(", ");
    let mut error = ApiError::new(
        Code::MethodNotAllowed,
        format!(
            "{} is not allowed here; this route takes {allow}.",
            req.method()
        ),
    );
    error.headers.push(("allow", allow));
    Some(error)
}

/// A bad JSON body: 413 when too large, 415 when not JSON, 400 otherwise.
fn json_error(
    e: actix_web::error::JsonPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    let code = match &e {
        E::Overflow { .. } | E::OverflowKnownLength { .. } => Code::PayloadTooLarge,
        E::ContentType => Code::UnsupportedType,
        _ => Code::InvalidRequest,
    };
    ApiError::new(code, format!("JSON body: {e}")).into()
}

/// Every request: an id (`X-Request-Id`, and on every log line of the request through its
/// span), one log line when answered, and the route's metrics.
async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let state = req.app_data::<web::Data<WebState>>().cloned();
    let span = tracing::info_span!("request", id = %id, method = %req.method(), path = %loggable(req.match_info().as_str()));
    let mut response = next.call(req).instrument(span.clone()).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    let status = response.status().as_u16();
    let took = started.elapsed();
    if let Some(state) = state {
        let method = response.request().method().as_str();
        state.metrics.observe(method, &route, status, took);
    }
    // The client as the edge resolved it (behind trusted proxies, the forwarded address).
    let client = response
        .request()
        .extensions()
        .get::<crate::edge::Client>()
        .map(|c| c.address_key())
        .unwrap_or_default();
    span.in_scope(|| {
        tracing::info!(status, route = %route, client = %client, ms = took.as_millis() as u64, "handled");
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    Ok(response)
}

/// Refuses a request with a path and query over [`MAX_URI`] or headers over
/// [`MAX_HEADER_BYTES`] before any handler or extractor sees it.
async fn limit_request_head(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    let refused = if uri > MAX_URI {
        Some(ApiError::new(
            Code::UriTooLong,
            format!("the path and query are {uri} bytes; at most {MAX_URI} are read"),
        ))
    } else if headers > MAX_HEADER_BYTES {
        Some(ApiError::new(
            Code::HeadersTooLarge,
            format!("the headers are {headers} bytes; at most {MAX_HEADER_BYTES} are read"),
        ))
    } else {
        None
    };
    match refused {
        Some(error) => Ok(req.error_response(error)),
        None => Ok(next.call(req).await?.map_into_boxed_body()),
    }
}

/// A path as logs may show it: a password reset link's token is a credential.
fn loggable(path: &str) -> &str {
    if path.starts_with("/reset/") {
        "/reset/…"
    } else {
        path
    }
}

fn cors(origins: &[String]) -> actix_cors::Cors {
    let mut cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "DELETE", "PATCH"])
        .allowed_headers([
            "Authorization",
            "Content-Type",
            "Idempotency-Key",
            "X-CSRF-Token",
        ])
        .supports_credentials()
        .max_age(3600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

/// Registers the routes and lists them in [`ROUTES`] from one table, so that a route cannot
/// exist without being listed; a test checks the list against the OpenAPI document.
macro_rules! routes {
    ($($method:ident $path:literal => $handler:path,)*) => {
        /// Every route as (method, path).
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        pub fn routes(cfg: &mut web::ServiceConfig) {
            $(cfg.route($path, web::$method().to($handler));)*
        }
    };
}

/// The operational routes alone (also part of [`routes`]).
fn operations(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(ops::healthz))
        .route("/readyz", web::get().to(ops::readyz))
        .route("/metrics", web::get().to(ops::metrics));
}

routes! {
    post "/api/auth/register" => api::auth::register,
    post "/api/auth/login" => api::auth::login,
    post "/api/auth/logout" => api::auth::logout,
    get "/api/auth/me" => api::auth::me,
    get "/api/account/usage" => api::account::usage,
    post "/api/auth/password" => api::auth::change_password,
    post "/api/auth/reset" => api::auth::reset_password,
    post "/api/tokens" => api::tokens::create,
    get "/api/tokens" => api::tokens::list,
    delete "/api/tokens/{id}" => api::tokens::delete,
    post "/api/tasks" => api::tasks::create,
    get "/api/tasks" => api::tasks::list,
    get "/api/tasks/{id}" => api::tasks::get,
    get "/api/tasks/{id}/result" => api::tasks::result,
    delete "/api/tasks/{id}" => api::tasks::delete,
    post "/api/tasks/{id}/retry" => api::tasks::retry,
    post "/api/tasks/{id}/cancel" => api::tasks::cancel,
    get "/api/tasks/{id}/file" => api::tasks::file,
    get "/api/tasks/{id}/timeline" => api::tasks::timeline,
    get "/api/tasks/{id}/thumbnail" => api::tasks::thumbnail,
    get "/api/tasks/{id}/pages/{page}/image" => api::tasks::page_image,
    post "/api/webhooks" => api::webhooks::create,
    get "/api/webhooks" => api::webhooks::list,
    delete "/api/webhooks/{id}" => api::webhooks::delete,
    post "/api/webhooks/{id}/test" => api::webhooks::test,
    post "/api/webhooks/{id}/rotate" => api::webhooks::rotate,
    post "/api/webhooks/{id}/enable" => api::webhooks::enable,
    get "/api/webhooks/{id}/deliveries" => api::webhooks::deliveries,
    post "/api/webhooks/{id}/redeliver" => api::webhooks::redeliver,
    get "/api/search" => api::search::search,
    get "/api/admin/search" => api::search::search_all,
    get "/api/admin/tasks" => api::admin::list_tasks,
    post "/api/admin/tasks/bulk" => api::admin::bulk,
    get "/api/admin/tasks/{id}" => api::admin::task_detail,
    post "/api/admin/tasks/{id}/retry" => api::admin::retry_task,
    post "/api/admin/tasks/{id}/priority" => api::admin::task_priority,
    post "/api/admin/tasks/{id}/cancel" => api::admin::cancel_task,
    get "/api/admin/workers" => api::admin::list_workers,
    post "/api/admin/workers/{id}/drain" => api::admin::drain_worker,
    post "/api/admin/workers/{id}/resume" => api::admin::resume_worker,
    get "/api/admin/queue" => api::admin::queue,
    post "/api/admin/queue/pause" => api::admin::pause_queue,
    post "/api/admin/queue/resume" => api::admin::resume_queue,
    get "/api/admin/audit" => api::admin::audit_log,
    get "/api/admin/health" => api::admin::health,
    get "/api/admin/stats" => api::admin::stats,
    get "/api/admin/users" => api::admin::list_users,
    patch "/api/admin/users/{id}" => api::admin::update_user,
    delete "/api/admin/users/{id}" => api::admin::erase_user,
    get "/api/admin/logs" => api::admin::logs::list,
    get "/api/admin/invites" => api::admin::invites::list,
    post "/api/admin/invites" => api::admin::invites::create,
    delete "/api/admin/invites/{id}" => api::admin::invites::revoke,
    get "/api/admin/settings" => api::admin::settings::list,
    patch "/api/admin/settings" => api::admin::settings::update,
    get "/ws" => ws::connect,
    get "/api/openapi.json" => openapi::document,
    get "/api/docs" => openapi::docs_page,
    get "/api/docs.js" => openapi::docs_script,
    get "/healthz" => ops::healthz,
    get "/readyz" => ops::readyz,
    get "/metrics" => ops::metrics,
}
