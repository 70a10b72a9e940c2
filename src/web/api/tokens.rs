//! API tokens: created (and shown) once, stored hashed, revoked by id.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::json;
use crate::app::App;
use crate::auth::{CurrentUser, new_token, token_hash};
use crate::db::DbError;
use crate::db::models::{ApiToken, NewApiToken, utc_time};
use crate::error::{ApiError, Code};

#[derive(Deserialize, ToSchema)]
pub struct CreateTokenRequest {
    /// What the token is for, e.g. "scanner script".
    pub name: String,
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
}

impl From<&ApiToken> for TokenView {
    fn from(t: &ApiToken) -> Self {
        TokenView {
            id: t.id.clone(),
            name: t.name.clone(),
            prefix: t.prefix.clone(),
            created_at: t.created_at,
            last_used_at: t.last_used_at,
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

/// Creates an API token for the signed-in user.
#[utoipa::path(post, path = "/api/tokens", tag = "tokens", request_body = CreateTokenRequest, responses(
    (status = 201, body = CreatedToken), (status = 400), (status = 401),
))]
pub async fn create(
    app: web::Data<App>,
    current: CurrentUser,
    body: web::Json<CreateTokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let name = crate::names::clean(&body.name, usize::MAX);
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid("name: 1 to 100 characters"));
    }
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
                    expires_at: None,
                };
                ApiToken::create(c, new).await
            }
            .boxed()
        })
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
#[utoipa::path(get, path = "/api/tokens", tag = "tokens", responses((status = 200, body = TokenList), (status = 401)))]
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
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "tokens", params(("id" = String, Path)), responses(
    (status = 204), (status = 401), (status = 404, description = "`token_not_found`"),
))]
pub async fn delete(
    app: web::Data<App>,
    current: CurrentUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (user_id, id) = (current.user.id.clone(), id.into_inner());
    if !crate::db::models::is_id(&id) {
        return Err(ApiError::new(Code::TokenNotFound, "no such token"));
    }
    let deleted = app
        .db
        .run(move |c| async move { ApiToken::delete(c, &user_id, &id).await }.boxed())
        .await;
    match deleted {
        Ok(()) => Ok(HttpResponse::NoContent().finish()),
        Err(DbError::NotFound) => Err(ApiError::new(Code::TokenNotFound, "no such token")),
        Err(e) => Err(e.into()),
    }
}
