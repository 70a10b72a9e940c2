//! Authentication: who is calling, by session cookie or API token.
//!
//! [`CurrentUser`] is the extractor every authenticated route takes. A Bearer token wins over
//! a cookie. Cookie-authenticated unsafe requests (POST, PUT, PATCH, DELETE) must carry the
//! session's CSRF token in `X-CSRF-Token`; token requests need none, since a browser never
//! attaches them by itself.

pub mod invites;
pub mod password;
pub mod sessions;
pub mod throttle;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use futures::FutureExt;
use futures::future::LocalBoxFuture;
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::db::DbError;
use crate::db::models::{ApiToken, NewUser, PasswordReset, Role, User};
use crate::error::{ApiError, Code};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "ocrd_session";
/// Its name over TLS: browsers keep a `__Host-` cookie only if it is `Secure`, for `/`, and
/// bound to this host, so a sibling subdomain cannot plant or shadow it.
pub const SECURE_SESSION_COOKIE: &str = "__Host-ocrd_session";

/// The header carrying the CSRF token.
pub const CSRF_HEADER: &str = "X-CSRF-Token";
/// API tokens start with this, so leaked ones are easy to spot and scan for.
pub const TOKEN_PREFIX: &str = "ocrd_";

/// The session cookie a request carries: over https only the `__Host-` one, which nothing
/// but this host can have set (a plain `ocrd_session` there may be planted).
pub fn session_cookie(req: &HttpRequest, app: &App) -> Option<actix_web::cookie::Cookie<'static>> {
    if secure_cookies(req, app) {
        req.cookie(SECURE_SESSION_COOKIE)
    } else {
        req.cookie(SESSION_COOKIE)
    }
}

/// The token of an `Authorization: Bearer …` header (the scheme in any case).
pub fn bearer_token(header: &actix_web::http::header::HeaderValue) -> Option<&str> {
    header
        .to_str()
        .ok()
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// Whether cookies for this request must be `Secure` (and `__Host-`): it came over TLS, here
/// or at a trusted proxy, or the install is served over HTTPS.
pub fn secure_cookies(req: &HttpRequest, app: &App) -> bool {
    crate::edge::Client::of(req).https || app.config.server.is_https()
}

/// A session cookie with `value`; secure ones get the `__Host-` name.
pub fn session_cookie_named(value: String, secure: bool) -> actix_web::cookie::Cookie<'static> {
    use actix_web::cookie::{Cookie, SameSite};
    let name = if secure {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    };
    Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .finish()
}

/// How a request proved who it is.
#[derive(Clone, Debug)]
pub enum Via {
    /// The SHA-256 of the token, to check it again later (WebSocket), and whether it may
    /// use the account's admin rights (its `admin` scope).
    Token {
        hash: String,
        admin: bool,
    },
    Session {
        id: String,
        csrf_token: String,
    },
}

#[derive(Clone, Debug)]
pub struct CurrentUser {
    pub user: User,
    pub via: Via,
}

/// The stored form of an API token: its SHA-256. Tokens are 256 random bits, so a fast hash is
/// enough (nothing to brute-force), and lookups stay one indexed query.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new API token: `ocrd_` and 64 hex digits.
pub fn new_token() -> String {
    format!("{TOKEN_PREFIX}{}", sessions::random_token())
}

/// Compares secrets without an early exit, so timing does not tell how much of a guess was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequest for CurrentUser {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<CurrentUser, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authenticate(&req).await })
    }
}

/// A caller who runs the fleet: an operator or an admin (a token needs its `admin` scope).
/// Anyone else signed in is 403 `forbidden`.
#[derive(Clone, Debug)]
pub struct Operator(pub CurrentUser);

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Operator, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let current = authenticate(&req).await?;
            if !current.user.can_operate() {
                // A user knocking on the operators' door is worth a line in the audit log.
                let actor = crate::audit::Actor::of(&req, Some(&current.user));
                if let Some(app) = req.app_data::<web::Data<App>>() {
                    let target = req.path().to_owned();
                    let denied = crate::audit::Outcome::Denied;
                    if let Err(e) = crate::audit::record(
                        app,
                        &actor,
                        "admin.access",
                        Some(&target),
                        denied,
                        None,
                    )
                    .await
                    {
                        tracing::error!(error = %e, "a refused admin request could not be audited");
                    }
                }
                return Err(ApiError::new(
                    Code::Forbidden,
                    "this needs an operator or admin account (and, with a token, its admin scope)",
                ));
            }
            Ok(Operator(current))
        })
    }
}

/// A caller who administers the install: an admin (a token needs its `admin` scope). Anyone
/// else signed in is 403 `forbidden`.
#[derive(Clone, Debug)]
pub struct Administrator(pub CurrentUser);

impl FromRequest for Administrator {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Administrator, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let operator = Operator::from_request(req, payload);
        Box::pin(async move {
            let Operator(current) = operator.await?;
            if !current.user.is_admin() {
                return Err(ApiError::new(
                    Code::Forbidden,
                    "this needs an admin account (and, with a token, its admin scope)",
                ));
            }
            Ok(Administrator(current))
        })
    }
}

pub async fn authenticate(req: &HttpRequest) -> Result<CurrentUser, ApiError> {
    let app = req
        .app_data::<web::Data<App>>()
        .ok_or_else(|| ApiError::internal("no App in the request"))?;
    if let Some(header) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        // The scheme is case-insensitive (RFC 9110).
        let token = bearer_token(header).ok_or_else(ApiError::unauthenticated)?;
        let hash = token_hash(token);
        let found = hash.clone();
        let (token, mut user) = app
            .db
            .run(move |c| {
                async move {
                    let Some((token, user)) = ApiToken::authenticate(c, &found).await? else {
                        return Ok(None);
                    };
                    // Last use to the minute: no write on every request.
                    let stale = token.last_used_at.is_none_or(|at| {
                        crate::db::models::now() - at > chrono::TimeDelta::seconds(60)
                    });
                    if stale && let Err(e) = ApiToken::touch(c, &token.id).await {
                        tracing::debug!(error = %e, "could not record the token's last use");
                    }
                    Ok::<_, DbError>(Some((token, user)))
                }
                .boxed()
            })
            .await?
            .ok_or_else(ApiError::unauthenticated)?;
        let needed = if req.method().is_safe() {
            "read"
        } else {
            "write"
        };
        if !token.allows(needed) {
            return Err(ApiError::new(
                Code::Forbidden,
                format!("This API token lacks the `{needed}` scope."),
            ));
        }
        let admin = token.allows("admin");
        user.role = effective_role(user.role, admin);
        return Ok(CurrentUser {
            user,
            via: Via::Token { hash, admin },
        });
    }
    let cookie = session_cookie(req, app).ok_or_else(ApiError::unauthenticated)?;
    let session_id = cookie.value().to_owned();
    let session = app
        .sessions
        .get(&session_id)
        .await
        .map_err(sessions_unavailable)?
        .ok_or_else(ApiError::unauthenticated)?;
    let user_id = session.user_id.clone();
    let user = match app
        .db
        .run(move |c| async move { User::find(c, &user_id).await }.boxed())
        .await
    {
        Ok(user) if session_holds(&session, &user) => user,
        Ok(_) | Err(DbError::NotFound) => return Err(ApiError::unauthenticated()),
        Err(e) => return Err(e.into()),
    };
    if !req.method().is_safe() {
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !constant_time_eq(sent, session.csrf_token.as_bytes()) {
            return Err(ApiError::new(
                Code::CsrfFailed,
                "missing or wrong X-CSRF-Token (it comes with the login response)",
            ));
        }
    }
    Ok(CurrentUser {
        user,
        via: Via::Session {
            id: session_id,
            csrf_token: session.csrf_token,
        },
    })
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("an account with this email exists")]
    EmailTaken,
    #[error(transparent)]
    Db(DbError),
    #[error("hashing the password: {0}")]
    Hash(String),
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::EmailTaken => ApiError::new(Code::EmailTaken, e.to_string()),
            AccountError::Db(e) => e.into(),
            AccountError::Hash(e) => ApiError::internal(e),
        }
    }
}

/// Creates an account with an argon2id hash of `password` (checked against the policy by the
/// caller). `role` `None` makes the install's first account an admin and later ones users.
pub async fn create_user(
    app: &App,
    email: &str,
    password: &str,
    role: Option<Role>,
) -> Result<User, AccountError> {
    let hash = password::hash_async(password.to_owned())
        .await
        .map_err(AccountError::Hash)?;
    let email = email.to_owned();
    let created = app
        .db
        .run(move |c| {
            async move {
                let role = match role {
                    Some(role) => role,
                    None if User::count(c).await? == 0 => Role::Admin,
                    None => Role::User,
                };
                let new = NewUser {
                    email: &email,
                    password_hash: &hash,
                    role,
                };
                User::create(c, new).await
            }
            .boxed()
        })
        .await;
    match created {
        Ok(user) => Ok(user),
        Err(DbError::Conflict(_)) => Err(AccountError::EmailTaken),
        Err(e) => Err(AccountError::Db(e)),
    }
}

/// A short fingerprint of the account's password hash. Sessions carry the one from their
/// login, so changing or resetting the password ends all earlier sessions (the hash has a new
/// salt each time) without a per-user index of sessions.
pub fn credential_stamp(password_hash: &str) -> String {
    hex::encode(&Sha256::digest(password_hash.as_bytes())[..16])
}

/// Whether a session still speaks for `user`: enabled, and no password change since login.
fn session_holds(session: &sessions::Session, user: &User) -> bool {
    !user.disabled
        && constant_time_eq(
            session.stamp.as_bytes(),
            credential_stamp(&user.password_hash).as_bytes(),
        )
}

/// Starts a session for `user`: the cookie to set (`Secure` and `__Host-` when `secure`), and
/// the session (with its CSRF token).
pub async fn start_session(
    app: &App,
    user: &User,
    secure: bool,
) -> Result<(actix_web::cookie::Cookie<'static>, sessions::Session), ApiError> {
    let (id, session) = app
        .sessions
        .create(&user.id, credential_stamp(&user.password_hash))
        .await
        .map_err(sessions_unavailable)?;
    let mut cookie = session_cookie_named(id, secure);
    cookie.set_max_age(actix_web::cookie::time::Duration::seconds(
        app.sessions.ttl().as_secs() as i64,
    ));
    Ok((cookie, session))
}

pub fn sessions_unavailable(e: sessions::SessionError) -> ApiError {
    tracing::warn!(error = %e, "session store");
    ApiError::new(Code::Unavailable, "sessions are unavailable; retry later")
}

/// Issues a one-time password reset link for `user`, valid for `ttl`: the URL to hand over and
/// when it expires. The token is shown only here; the database keeps its hash.
pub async fn issue_reset_link(
    app: &App,
    user: &User,
    ttl: chrono::TimeDelta,
) -> Result<(String, chrono::NaiveDateTime), DbError> {
    let token = sessions::random_token();
    let (user_id, hash) = (user.id.clone(), token_hash(&token));
    let expires_at = app
        .db
        .run(move |c| async move { PasswordReset::create(c, &user_id, &hash, ttl).await }.boxed())
        .await?;
    Ok((
        format!("{}/reset/{token}", app.config.server.base_url()),
        expires_at,
    ))
}

/// The role a token acts with: without its `admin` scope, an admin's token is a user's.
fn effective_role(role: Role, admin_scope: bool) -> Role {
    if admin_scope { role } else { Role::User }
}

/// Whether the credentials a request came with still hold (a session not logged out, a token
/// not revoked, an account not disabled): long-lived connections check this periodically.
pub async fn still_valid(app: &App, current: &CurrentUser) -> bool {
    let find_user = |id: String| {
        app.db
            .run(move |c| async move { User::find(c, &id).await }.boxed())
    };
    // An outage is not a reason to drop live views: only a definite "no" ends them.
    let valid = match &current.via {
        Via::Session { id, .. } => match app.sessions.get(id).await {
            Ok(Some(session)) => match find_user(session.user_id.clone()).await {
                Ok(user) => session_holds(&session, &user),
                Err(e) => !matches!(e, DbError::NotFound),
            },
            Ok(None) => false,
            Err(_) => true,
        },
        Via::Token { hash, .. } => {
            let hash = hash.clone();
            let found = app
                .db
                .run(move |c| async move { ApiToken::authenticate(c, &hash).await }.boxed())
                .await;
            !matches!(found, Ok(None))
        }
    };
    if !valid {
        return false;
    }
    let admin_scope = match current.via {
        Via::Token { admin, .. } => admin,
        Via::Session { .. } => true,
    };
    match find_user(current.user.id.clone()).await {
        Ok(user) => !user.disabled && effective_role(user.role, admin_scope) == current.user.role,
        Err(e) => !matches!(e, DbError::NotFound),
    }
}
