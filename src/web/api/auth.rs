//! Accounts and sessions: register, login, logout, whoami.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{UserView, json};
use crate::app::App;
use crate::audit::Outcome;
use crate::auth::invites::{self, InviteError};
use crate::auth::{CurrentUser, Via, password};
use crate::config::Registration;
use crate::db::models::{PasswordReset, User, normalize_email};
use crate::edge::{Class, Client};
use crate::error::{ApiError, Code};

/// Counts a sign-in, registration or reset against its client address (`rate_limits.auth`):
/// each costs an argon2 hash, and invite codes must not be guessed at full speed.
async fn auth_rate(app: &App, client: &Client) -> Result<(), ApiError> {
    let keys = [format!("ip:{}", client.address_key())];
    app.limiter
        .check(
            Class::Auth,
            &keys,
            1,
            "sign-in, registration and reset attempts",
        )
        .await
        .map(drop)
}

#[derive(Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// One `@`, a domain with a dot neither first nor last, no spaces or control characters.
    #[schema(
        max_length = 254,
        pattern = "^[^@\\s\\u0000-\\u001f\\u007f-\\u009f]+@[^.@\\s\\u0000-\\u001f\\u007f-\\u009f][^@\\s\\u0000-\\u001f\\u007f-\\u009f]*\\.[^@\\s\\u0000-\\u001f\\u007f-\\u009f]*[^.@\\s\\u0000-\\u001f\\u007f-\\u009f]$"
    )]
    pub email: String,
    /// At least `auth.min_password_length` characters (the served document states the
    /// install's value), and not a common password or the email.
    #[schema(max_length = 1024)]
    pub password: String,
    /// Required when the server's registration is `invite`: the install's invite code, or the
    /// token of an invite link (`/register?invite=…`), which it uses up.
    pub invite_code: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct SessionResponse {
    pub user: UserView,
    /// Send as `X-CSRF-Token` on every cookie-authenticated POST, PATCH and DELETE.
    /// `null` when authenticated by token.
    pub csrf_token: Option<String>,
}

/// The rule `RegisterRequest`'s schema states as a pattern: one `@` after a non-empty local
/// part, a domain with a dot that is neither its first nor its last character, no whitespace or
/// control characters, at most 254 characters.
fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.chars().count() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

/// Creates an account and signs it in (sets the session cookie, like login). The first
/// account of an install becomes its admin. Registering is not a sign-in attempt: the login
/// throttle of the client's address does not apply to it (the auth rate limit does).
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = RegisterRequest, responses(
    (status = 201, body = SessionResponse, description = "Created, and signed in: sets the `ocrd_session` cookie"),
    (status = 400, description = "`invalid_request`, `weak_password`"),
    (status = 403, description = "`registration_closed`"),
    (status = 409, description = "`email_taken`"),
    (status = 429, description = "`too_many_requests`, with Retry-After"),
))]
pub async fn register(
    req: HttpRequest,
    app: web::Data<App>,
    body: web::Json<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    auth_rate(&app, &Client::of(&req)).await?;
    let registration = app.settings.get().registration;
    if registration == Registration::Closed {
        return Err(ApiError::new(
            Code::RegistrationClosed,
            "registration is closed; ask an administrator for an account",
        ));
    }
    let email = normalize_email(&body.email);
    if !valid_email(&email) {
        return Err(ApiError::invalid("email: not a valid address"));
    }
    check_password(&app, &body.password, &email)?;
    let (user, invite) = if registration == Registration::Invite {
        let code = body.invite_code.as_deref().unwrap_or("").trim();
        invites::register(&app, code, &email, &body.password)
            .await
            .map_err(|e| match e {
                InviteError::Invalid => ApiError::new(Code::RegistrationClosed, e.to_string()),
                InviteError::Account(e) => e.into(),
            })?
    } else {
        let user = crate::auth::create_user(&app, &email, &body.password, None).await?;
        (user, None)
    };
    let detail = invite.map(|i| serde_json::json!({"invite": i.id}));
    super::audit(&req, &app, &user, "register", &user.id, detail).await?;
    signed_in(&req, &app, &user, StatusCode::CREATED).await
}

/// Signs in: sets the session cookie (a new session id on every login) and returns the CSRF
/// token. Failed attempts are throttled per account from each client address, and per
/// address: an attacker's failures lock the attacker out, not the account's owner.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, body = SessionResponse, description = "Sets the `ocrd_session` cookie"),
    (status = 401, description = "`invalid_credentials`"),
    (status = 429, description = "`too_many_requests`, with Retry-After"),
))]
pub async fn login(
    req: HttpRequest,
    app: web::Data<App>,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let client = Client::of(&req);
    auth_rate(&app, &client).await?;
    let email = normalize_email(&body.email);
    let address = format!("ip:{}", client.address_key());
    let account = format!("account:{email}:{address}");
    let limits = &app.config.auth;
    for (key, limit) in [
        (&account, limits.login_attempts),
        (&address, limits.login_attempts_per_address),
    ] {
        if let Err(retry_after) = app.login_throttle.attempt(key, limit).await {
            let actor = crate::audit::Actor::of(&req, None);
            let detail = serde_json::json!({"retry_after_secs": retry_after});
            audit_quietly(&app, &actor, None, Outcome::Denied, detail).await;
            let mut error = ApiError::new(
                Code::TooManyRequests,
                format!("Too many failed sign-ins; try again in {retry_after} s."),
            );
            error.retry_after = Some(retry_after);
            return Err(error);
        }
    }
    let user = {
        let email = email.clone();
        app.db
            .run(move |c| async move { User::find_by_email(c, &email).await }.boxed())
            .await?
    };
    // Verify against a dummy hash for unknown emails: the answer takes as long either way.
    let stored = user.as_ref().map_or_else(
        || password::dummy_hash().to_owned(),
        |u| u.password_hash.clone(),
    );
    let matches = password::verify_async(body.password.clone(), stored)
        .await
        .map_err(ApiError::internal)?;
    let user = match user {
        Some(user) if matches && !user.disabled => user,
        // The attempt stays counted against the account and the address. The log line is
        // what fail2ban matches (deploy/fail2ban): keep its words and the client field. No
        // email: whatever a stranger types is not for the logs.
        _ => {
            let actor = crate::audit::Actor::of(&req, None);
            let (target, why) = match &user {
                Some(user) if user.disabled => (Some(user.id.as_str()), "disabled account"),
                Some(user) => (Some(user.id.as_str()), "wrong password"),
                None => (None, "unknown email"),
            };
            let detail = serde_json::json!({"reason": why});
            audit_quietly(&app, &actor, target, Outcome::Failure, detail).await;
            tracing::warn!(client = %client.ip.map_or_else(String::new, |ip| ip.to_string()), "login failed");
            return Err(ApiError::new(
                Code::InvalidCredentials,
                "wrong email or password",
            ));
        }
    };
    app.login_throttle.reset(&account).await;
    app.login_throttle.forgive(&address).await;
    super::audit(&req, &app, &user, "login", &user.id, None).await?;
    signed_in(&req, &app, &user, StatusCode::OK).await
}

/// A refused sign-in in the audit log. The refusal stands whether or not it is recorded.
async fn audit_quietly(
    app: &App,
    actor: &crate::audit::Actor,
    target: Option<&str>,
    outcome: Outcome,
    detail: serde_json::Value,
) {
    if let Err(e) = crate::audit::record(app, actor, "login", target, outcome, Some(detail)).await {
        tracing::error!(error = %e, "a refused sign-in could not be written to the audit log");
    }
}

/// Starts a session for `user`: the answer sets its cookie and carries its CSRF token.
/// Whatever session this browser had ends here (a new session id on every sign-in).
async fn signed_in(
    req: &HttpRequest,
    app: &App,
    user: &User,
    status: StatusCode,
) -> Result<HttpResponse, ApiError> {
    if let Some(old) = crate::auth::session_cookie(req, app) {
        let _ = app.sessions.delete(old.value()).await;
    }
    let secure = crate::auth::secure_cookies(req, app);
    let (cookie, session) = crate::auth::start_session(app, user, secure).await?;
    let mut response = json(
        status,
        &SessionResponse {
            user: user.into(),
            csrf_token: Some(session.csrf_token),
        },
    );
    response.add_cookie(&cookie).map_err(ApiError::internal)?;
    Ok(response)
}

/// Signs out: the session is revoked on the server and the cookie cleared.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", responses(
    (status = 204, description = "Signed out"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`csrf_failed`"),
))]
pub async fn logout(
    req: HttpRequest,
    app: web::Data<App>,
    current: CurrentUser,
) -> Result<HttpResponse, ApiError> {
    if let Via::Session { id, .. } = &current.via {
        app.sessions
            .delete(id)
            .await
            .map_err(crate::auth::sessions_unavailable)?;
    }
    let secure = crate::auth::secure_cookies(&req, &app);
    let mut gone = crate::auth::session_cookie_named(String::new(), secure);
    gone.make_removal();
    let mut response = HttpResponse::NoContent().finish();
    response.add_cookie(&gone).map_err(ApiError::internal)?;
    Ok(response)
}

/// Who is signed in, with the session's CSRF token.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth", responses((status = 200, body = SessionResponse, description = "OK"), (status = 401, description = "`unauthenticated`")))]
pub async fn me(current: CurrentUser) -> HttpResponse {
    let csrf_token = match current.via {
        Via::Session { csrf_token, .. } => Some(csrf_token),
        Via::Token { .. } => None,
    };
    json(
        StatusCode::OK,
        &SessionResponse {
            user: (&current.user).into(),
            csrf_token,
        },
    )
}

#[derive(Deserialize, ToSchema)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    /// The same rules as at registration.
    #[schema(max_length = 1024)]
    pub new_password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct ResetPasswordRequest {
    /// The token from the reset link (`/reset/{token}`).
    pub token: String,
    /// The same rules as at registration.
    #[schema(max_length = 1024)]
    pub password: String,
}

/// Changes the caller's password. Every session of the account ends, this one included: the
/// answer carries a new session cookie and CSRF token. API tokens stay valid.
#[utoipa::path(post, path = "/api/auth/password", tag = "auth", request_body = ChangePasswordRequest, responses(
    (status = 200, body = SessionResponse, description = "Changed; a new `ocrd_session` cookie"),
    (status = 400, description = "`weak_password`"),
    (status = 401, description = "`unauthenticated`, `invalid_credentials` (wrong current password)"),
    (status = 403, description = "`csrf_failed`"),
    (status = 429, description = "`too_many_requests`"),
))]
pub async fn change_password(
    req: HttpRequest,
    app: web::Data<App>,
    current: CurrentUser,
    body: web::Json<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    let account = format!("password:{}", current.user.id);
    let limit = app.config.auth.login_attempts;
    if let Err(retry_after) = app.login_throttle.attempt(&account, limit).await {
        let mut error = ApiError::new(
            Code::TooManyRequests,
            format!("Too many wrong passwords; try again in {retry_after} s."),
        );
        error.retry_after = Some(retry_after);
        return Err(error);
    }
    let matches = password::verify_async(
        body.current_password.clone(),
        current.user.password_hash.clone(),
    )
    .await
    .map_err(ApiError::internal)?;
    if !matches {
        return Err(ApiError::new(
            Code::InvalidCredentials,
            "the current password is wrong",
        ));
    }
    app.login_throttle.reset(&account).await;
    let user = set_password(&app, &current.user.id, &body.new_password).await?;
    if let Via::Session { id, .. } = &current.via {
        let _ = app.sessions.delete(id).await;
    }
    signed_in(&req, &app, &user, StatusCode::OK).await
}

/// The password policy, as the API answers it: `weak_password` with the reason.
fn check_password(app: &App, plain: &str, email: &str) -> Result<(), ApiError> {
    password::check_policy(plain, app.config.auth.min_password_length, email)
        .map_err(|e| ApiError::new(Code::WeakPassword, e.to_string()))
}

/// Checks the policy, hashes and stores a new password for an account.
async fn set_password(app: &App, user_id: &str, plain: &str) -> Result<User, ApiError> {
    let id = user_id.to_owned();
    let user = app
        .db
        .run(move |c| async move { User::find(c, &id).await }.boxed())
        .await?;
    check_password(app, plain, &user.email)?;
    let hash = password::hash_async(plain.to_owned())
        .await
        .map_err(ApiError::internal)?;
    let id = user_id.to_owned();
    let user = app
        .db
        .run(move |c| {
            async move {
                User::set_password_hash(c, &id, &hash).await?;
                // A reset link issued before must not undo the change.
                PasswordReset::delete_for_user(c, &id).await?;
                User::find(c, &id).await
            }
            .boxed()
        })
        .await?;
    Ok(user)
}

/// Sets a new password with a one-time link from `ocrd admin reset-password`. The link is used
/// up, and every session of the account ends.
#[utoipa::path(post, path = "/api/auth/reset", tag = "auth", request_body = ResetPasswordRequest, responses(
    (status = 204, description = "Password set; sign in with it"),
    (status = 400, description = "`weak_password`"),
    (status = 404, description = "`reset_link_invalid`: unknown, used or expired"),
    (status = 429, description = "`too_many_requests`, with Retry-After"),
))]
pub async fn reset_password(
    req: HttpRequest,
    app: web::Data<App>,
    body: web::Json<ResetPasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    auth_rate(&app, &Client::of(&req)).await?;
    let hash = crate::auth::token_hash(body.token.trim());
    let invalid = || {
        ApiError::new(
            Code::ResetLinkInvalid,
            "this reset link is unknown, used or expired; ask an administrator for a new one",
        )
    };
    let link = hash.clone();
    let user = app
        .db
        .run(move |c| {
            async move {
                match PasswordReset::user_of(c, &link).await? {
                    Some(user_id) => User::find(c, &user_id).await.map(Some),
                    None => Ok(None),
                }
            }
            .boxed()
        })
        .await?
        .ok_or_else(invalid)?;
    check_password(&app, &body.password, &user.email)?;
    let new_hash = password::hash_async(body.password.clone())
        .await
        .map_err(ApiError::internal)?;
    app.db
        .run(move |c| async move { PasswordReset::consume(c, &hash, &new_hash).await }.boxed())
        .await?
        .ok_or_else(invalid)?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    #[test]
    fn emails_are_checked_loosely_but_sanely() {
        for ok in ["a@b.co", "mia.keller+ocr@example.com"] {
            assert!(super::valid_email(ok), "{ok}");
        }
        for bad in ["", "a", "a@b", "@b.co", "a@.co", "a b@c.de", "a@b.co."] {
            assert!(!super::valid_email(bad), "{bad}");
        }
    }
}
