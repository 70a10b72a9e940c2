//! API tokens: created (and shown) once, stored hashed, revoked by id.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::json;
use crate::app::App;
use crate::auth::{CurrentUser, Via, new_token, token_hash};
use crate::db::DbError;
use crate::db::models::{ApiToken, NewApiToken, utc_time};
use crate::error::{ApiError, Code};

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    /// Read: GET requests and the WebSocket.
    Read,
    /// Change: uploads, deletes, retries and other POST, PATCH and DELETE requests.
    Write,
    /// Use the account's operator or admin rights (operators and admins only).
    Admin,
}

impl TokenScope {
    fn as_str(self) -> &'static str {
        match self {
            TokenScope::Read => "read",
            TokenScope::Write => "write",
            TokenScope::Admin => "admin",
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct CreateTokenRequest {
    /// What the token is for, e.g. "scanner script".
    /// At least one visible character.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "[^\\s\\u0000-\\u001f\\u007f-\\u009f]"
    )]
    pub name: String,
    /// Days until the token stops working, 1 to 3650; absent: it never expires.
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<u32>,
    /// What it may do; default `["read", "write"]`.
    pub scopes: Option<Vec<TokenScope>>,
}

#[derive(Serialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    /// The first characters of the token, to tell tokens apart.
    pub prefix: String,
    #[serde(with = "utc_time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: chrono::NaiveDateTime,
    #[serde(with = "utc_time::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<chrono::NaiveDateTime>,
    /// When it stops working; `null`: never.
    #[serde(with = "utc_time::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<chrono::NaiveDateTime>,
    pub scopes: Vec<String>,
}

impl From<&ApiToken> for TokenView {
    fn from(t: &ApiToken) -> Self {
        TokenView {
            id: t.id.clone(),
            name: t.name.clone(),
            prefix: t.prefix.clone(),
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            expires_at: t.expires_at,
            scopes: t.scopes.split(',').map(str::to_owned).collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    /// The token itself: shown this once, never again. Send it as `Authorization: Bearer …`.
    pub token: String,
    #[serde(flatten)]
    pub info: TokenView,
}

#[derive(Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

/// Creates an API token for the signed-in user. Only a signed-in session may: a token
/// cannot make more tokens (a leaked one must not outlive its revocation).
#[utoipa::path(post, path = "/api/tokens", operation_id = "create_token", tag = "tokens", request_body = CreateTokenRequest, responses(
    (status = 201, body = CreatedToken, description = "Created"), (status = 400, description = "`invalid_request`"), (status = 401, description = "`unauthenticated`"),
    (status = 403, description = "`forbidden`: called with a token, or the `admin` scope without admin rights"),
))]
pub async fn create(
    req: actix_web::HttpRequest,
    app: web::Data<App>,
    current: CurrentUser,
    body: web::Json<CreateTokenRequest>,
) -> Result<HttpResponse, ApiError> {
    if !matches!(current.via, Via::Session { .. }) {
        return Err(ApiError::new(
            Code::Forbidden,
            "API tokens are created from a signed-in session, not with another token.",
        ));
    }
    let name = crate::names::clean(&body.name, usize::MAX);
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid("name: 1 to 100 characters"));
    }
    let expires_at = match body.expires_in_days {
        None => None,
        Some(days @ 1..=3650) => {
            Some(crate::db::models::now() + chrono::TimeDelta::days(days as i64))
        }
        Some(_) => return Err(ApiError::invalid("expires_in_days: 1 to 3650")),
    };
    let mut scopes = body
        .scopes
        .clone()
        .unwrap_or_else(|| vec![TokenScope::Read, TokenScope::Write]);
    scopes.sort_by_key(|s| *s as u8);
    scopes.dedup();
    if scopes.is_empty() {
        return Err(ApiError::invalid(
            "scopes: at least one of read, write, admin",
        ));
    }
    if scopes.contains(&TokenScope::Admin) && !current.user.can_operate() {
        return Err(ApiError::new(
            Code::Forbidden,
            "Only an operator or an admin can give a token the admin scope.",
        ));
    }
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let scopes = scopes.join(",");
    let token = new_token();
    let prefix: String = token.chars().take(12).collect();
    let (user_id, name, hash) = (current.user.id.clone(), name, token_hash(&token));
    let created = app
        .db
        .run(move |c| {
            async move {
                let new = NewApiToken {
                    user_id: &user_id,
                    name: &name,
                    prefix: &prefix,
                    token_hash: &hash,
                    expires_at,
                    scopes: &scopes,
                };
                ApiToken::create(c, new).await
            }
            .boxed()
        })
        .await?;
    let detail = serde_json::json!({"name": created.name, "scopes": created.scopes});
    super::audit(
        &req,
        &app,
        &current.user,
        "token.create",
        &created.id,
        Some(detail),
    )
    .await?;
    Ok(json(
        StatusCode::CREATED,
        &CreatedToken {
            token,
            info: (&created).into(),
        },
    ))
}

/// The signed-in user's tokens (never the tokens themselves).
#[utoipa::path(get, path = "/api/tokens", operation_id = "list_tokens", tag = "tokens", responses((status = 200, body = TokenList, description = "OK"), (status = 401, description = "`unauthenticated`")))]
pub async fn list(app: web::Data<App>, current: CurrentUser) -> Result<HttpResponse, ApiError> {
    let user_id = current.user.id.clone();
    let tokens = app
        .db
        .run(move |c| async move { ApiToken::list_for_user(c, &user_id).await }.boxed())
        .await?;
    Ok(json(
        StatusCode::OK,
        &TokenList {
            tokens: tokens.iter().map(TokenView::from).collect(),
        },
    ))
}

/// Revokes a token; it stops working at once.
#[utoipa::path(delete, path = "/api/tokens/{id}", operation_id = "delete_token", tag = "tokens", params(("id" = String, Path)), responses(
    (status = 204, description = "Done"), (status = 401, description = "`unauthenticated`"), (status = 403, description = "`csrf_failed`"), (status = 404, description = "`token_not_found`"),
))]
pub async fn delete(
    req: actix_web::HttpRequest,
    app: web::Data<App>,
    current: CurrentUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (user_id, id) = (current.user.id.clone(), id.into_inner());
    if !crate::db::models::is_id(&id) {
        return Err(ApiError::new(Code::TokenNotFound, "no such token"));
    }
    let revoked = id.clone();
    let deleted = app
        .db
        .run(move |c| async move { ApiToken::delete(c, &user_id, &revoked).await }.boxed())
        .await;
    match deleted {
        Ok(()) => {
            super::audit(&req, &app, &current.user, "token.revoke", &id, None).await?;
            Ok(HttpResponse::NoContent().finish())
        }
        Err(DbError::NotFound) => Err(ApiError::new(Code::TokenNotFound, "no such token")),
        Err(e) => Err(e.into()),
    }
}
