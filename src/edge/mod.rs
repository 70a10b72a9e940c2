//! The edge: everything between the network and the handlers. TLS ([`tls`]), who the client
//! is ([`client`]), which hosts we answer for ([`hosts`]), rate limits ([`ratelimit`]), and the
//! security headers every response carries ([`guard`]).

pub mod client;
pub mod hosts;
pub mod ratelimit;
pub mod tls;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use sha2::{Digest, Sha256};

pub use client::{Client, Proxies};
pub use hosts::Hosts;
pub use ratelimit::{Class, Limiter};

use crate::app::App;
use crate::config::{ConfigError, ServerConfig};
use crate::error::{ApiError, Code};

/// The Content-Security-Policy of every response that does not set a stricter one: our own
/// scripts, styles and images only, no plugins, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' blob: data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// Paths that answer whatever the `Host`: probes and scrapers address the server by IP.
const PROBES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// What the edge middleware needs, built once per server.
#[derive(Clone, Debug)]
pub struct Edge {
    proxies: Proxies,
    /// `None`: any host (the operations listener, which has no pages and no cookies).
    hosts: Option<Hosts>,
    /// Whether this listener is TLS.
    tls: bool,
    hsts: Option<HeaderValue>,
}

impl Edge {
    /// The public listener's edge (`tls`: whether it serves HTTPS itself).
    pub fn public(server: &ServerConfig, tls: bool) -> Result<Edge, ConfigError> {
        Ok(Edge {
            proxies: Proxies {
                nets: server.proxy_nets()?,
                headers: server.proxy_headers,
            },
            hosts: Some(Hosts::from_config(server)),
            tls,
            hsts: (server.hsts_max_age_secs > 0)
                .then(|| format!("max-age={}", server.hsts_max_age_secs))
                .and_then(|v| HeaderValue::from_str(&v).ok()),
        })
    }

    /// The operations listener's edge: no host check.
    pub fn operations(server: &ServerConfig) -> Result<Edge, ConfigError> {
        Ok(Edge {
            hosts: None,
            ..Edge::public(server, false)?
        })
    }

    /// The security headers, on every response; stricter ones a handler set stay.
    fn secure(&self, client: &Client, path: &str, headers: &mut HeaderMap) {
        security_headers(headers);
        // Answers of the API carry accounts, tokens and documents: no cache keeps them.
        if path.starts_with("/api/") && !headers.contains_key(header::CACHE_CONTROL) {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        if client.https
            && let Some(hsts) = &self.hsts
        {
            headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        headers.remove(header::SERVER);
    }
}

/// The headers every response carries whatever it is (a handler's stricter CSP stays).
pub fn security_headers(headers: &mut HeaderMap) {
    const FIXED: [(&str, &str); 6] = [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        (
            "permissions-policy",
            "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()",
        ),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ];
    for (name, value) in FIXED {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
}

/// The keys a request's API rate counts under: its address, and its token or session (the
/// token as the API reads it, so spelling the header differently buys no fresh bucket).
fn api_keys(req: &ServiceRequest, app: &App, client: &Client) -> Vec<String> {
    let mut keys = vec![format!("ip:{}", client.address_key())];
    let credential = match req.headers().get(header::AUTHORIZATION) {
        Some(value) => Some(match crate::auth::bearer_token(value) {
            Some(token) => format!("tok:{}", crate::auth::token_hash(token)),
            None => format!("raw:{}", hex::encode(Sha256::digest(value.as_bytes()))),
        }),
        None => crate::auth::session_cookie(req.request(), app)
            .map(|c| format!("ses:{}", hex::encode(Sha256::digest(c.value().as_bytes())))),
    };
    // The kind and 96 bits of the hash: unique enough for a bucket, short in Redis.
    keys.extend(credential.map(|c| c[..28].to_owned()));
    keys
}

/// The `api` rate of a request under `/api`: its standing, or the 429 that refuses it.
async fn api_rate(
    req: &ServiceRequest,
    client: &Client,
) -> Result<Option<ratelimit::Standing>, ApiError> {
    let Some(app) = req.app_data::<web::Data<App>>() else {
        return Ok(None);
    };
    let keys = api_keys(req, app, client);
    app.limiter.check(Class::Api, &keys, 1, "requests").await
}

/// Every request on a server with an [`Edge`]: resolves the [`Client`], refuses hosts we do
/// not answer for (421) and API rates over the limit (429), and sets the security headers on
/// whatever answers, errors included.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(edge) = req.app_data::<web::Data<Edge>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let peer = req.peer_addr().map(|a| a.ip());
    let client = Client::resolve(peer, edge.tls, req.headers(), &edge.proxies);
    // The path as the router matches it (`/%61pi/` is `/api/`).
    let path = req.match_info().as_str().to_owned();
    req.extensions_mut().insert(client.clone());
    let mut standing = None;
    let refused = match &edge.hosts {
        Some(hosts) if !PROBES.contains(&path.as_str()) && !hosts.allows(&client.host) => {
            Some(ApiError::new(
                Code::HostNotAllowed,
                "This server does not answer for that host name. If it is yours, add it to server.allowed_hosts.",
            ))
        }
        _ if path.starts_with("/api/") => match api_rate(&req, &client).await {
            Ok(s) => {
                standing = s;
                None
            }
            Err(error) => Some(error),
        },
        _ => None,
    };
    let mut response = match refused {
        Some(error) => req.error_response(error),
        None => next.call(req).await?.map_into_boxed_body(),
    };
    let headers = response.headers_mut();
    // A class the handler limited (uploads, auth) reports its own standing instead.
    if let Some(standing) = standing.filter(|_| !headers.contains_key("ratelimit")) {
        for (name, value) in standing.headers() {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
    }
    edge.secure(&client, &path, headers);
    Ok(response)
}
