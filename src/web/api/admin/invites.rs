//! `/api/admin/invites`: invite links for `auth.registration = "invite"`. Admins only; the
//! logic lives in `crate::auth::invites`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::super::json;
use crate::app::App;
use crate::auth::Administrator;
use crate::auth::invites::{self, MAX_DAYS};
use crate::db::models::{Invite, normalize_email};
use crate::error::{ApiError, Code};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInviteRequest {
    /// Only this email may use it; leave out for anyone with the link.
    #[schema(max_length = 254)]
    pub email: Option<String>,
    /// Days it stays valid: 1 to 30, default 7.
    #[schema(minimum = 1, maximum = 30)]
    pub days: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedInvite {
    #[serde(flatten)]
    pub invite: Invite,
    /// The link to hand over, shown only now.
    pub link: String,
}

#[derive(Serialize, ToSchema)]
pub struct InviteList {
    /// Neither used nor expired, newest first.
    pub invites: Vec<Invite>,
}

/// Makes an invite link. Registration takes it while `auth.registration` is `invite`.
#[utoipa::path(post, path = "/api/admin/invites", operation_id = "admin_create_invite", tag = "admin", request_body = CreateInviteRequest, responses(
    (status = 201, body = CreatedInvite, description = "Made; the link is shown only now"),
    (status = 400, description = "`invalid_request`"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`, `csrf_failed`"),
))]
pub async fn create(
    req: HttpRequest,
    app: web::Data<App>,
    Administrator(current): Administrator,
    body: web::Json<CreateInviteRequest>,
) -> Result<HttpResponse, ApiError> {
    let days = body.days.unwrap_or(7);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(ApiError::invalid("days: 1 to 30"));
    }
    let email = body.email.as_deref().map(normalize_email);
    if email
        .as_deref()
        .is_some_and(|e| e.chars().count() > 254 || !e.contains('@'))
    {
        return Err(ApiError::invalid("email: not a valid address"));
    }
    let (link, invite) = invites::issue(&app, Some(&current.user), email, days).await?;
    let detail = serde_json::json!({"email": invite.email, "expires_at": invite.expires_at.and_utc().to_rfc3339()});
    super::super::audit(
        &req,
        &app,
        &current.user,
        "invite.create",
        &invite.id,
        Some(detail),
    )
    .await?;
    Ok(json(StatusCode::CREATED, &CreatedInvite { invite, link }))
}

/// Invites neither used nor expired.
#[utoipa::path(get, path = "/api/admin/invites", operation_id = "admin_invites", tag = "admin", responses(
    (status = 200, body = InviteList, description = "OK"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`"),
))]
pub async fn list(app: web::Data<App>, _: Administrator) -> Result<HttpResponse, ApiError> {
    let invites = app
        .db
        .run(|c| async move { Invite::pending(c, 200).await }.boxed())
        .await?;
    Ok(json(StatusCode::OK, &InviteList { invites }))
}

/// Revokes an invite: its link makes no account.
#[utoipa::path(delete, path = "/api/admin/invites/{id}", operation_id = "admin_revoke_invite", tag = "admin", params(("id" = String, Path)), responses(
    (status = 204, description = "Revoked"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`, `csrf_failed`"),
    (status = 404, description = "`not_found`"),
))]
pub async fn revoke(
    req: HttpRequest,
    app: web::Data<App>,
    Administrator(current): Administrator,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let owned = id.clone();
    let deleted = app
        .db
        .run(move |c| async move { Invite::delete(c, &owned).await }.boxed())
        .await?;
    if !deleted {
        return Err(ApiError::new(
            Code::NotFound,
            "there is no invite with this id",
        ));
    }
    super::super::audit(&req, &app, &current.user, "invite.revoke", &id, None).await?;
    Ok(HttpResponse::NoContent().finish())
}
