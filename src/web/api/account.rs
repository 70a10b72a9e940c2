//! The caller's own account: `GET /api/account/usage`, its quotas and what it uses.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use chrono::NaiveDateTime;
use serde::Serialize;
use utoipa::ToSchema;

use super::json;
use crate::app::App;
use crate::auth::CurrentUser;
use crate::db::models::{now, utc_time};
use crate::error::ApiError;
use crate::quota::{Limits, Usage};

#[derive(Serialize, ToSchema)]
pub struct AccountUsage {
    /// The limits that apply: the account's own where an admin set them, else the install's;
    /// 0 is no limit.
    pub limits: Limits,
    /// Which limits are the account's own.
    pub own: OwnLimits,
    pub usage: Usage,
    /// The month the pages count in (UTC), e.g. `2026-12`.
    pub month: String,
    /// When the monthly pages start again.
    #[serde(with = "utc_time")]
    #[schema(value_type = String, format = DateTime)]
    pub resets_at: NaiveDateTime,
}

/// Whether each limit is set for this account alone.
#[derive(Serialize, ToSchema)]
pub struct OwnLimits {
    pub pages_per_month: bool,
    pub stored_bytes: bool,
    pub concurrent_tasks: bool,
    pub max_upload_bytes: bool,
}

/// The caller's quotas and what they use: pages this month (read, and held by unfinished
/// tasks), stored bytes, tasks at once.
#[utoipa::path(get, path = "/api/account/usage", operation_id = "account_usage", tag = "auth", responses(
    (status = 200, body = AccountUsage, description = "OK"),
    (status = 401, description = "`unauthenticated`"),
))]
pub async fn usage(app: web::Data<App>, current: CurrentUser) -> Result<HttpResponse, ApiError> {
    let (limits, own, usage) = crate::quota::standing(&app, &current.user.id).await?;
    let at = now();
    Ok(json(
        StatusCode::OK,
        &AccountUsage {
            limits,
            own: OwnLimits {
                pages_per_month: own.pages_per_month.is_some(),
                stored_bytes: own.stored_bytes.is_some(),
                concurrent_tasks: own.concurrent_tasks.is_some(),
                max_upload_bytes: own.max_upload_bytes.is_some(),
            },
            usage,
            month: crate::quota::month(at),
            resets_at: crate::quota::month_end(at),
        },
    ))
}
