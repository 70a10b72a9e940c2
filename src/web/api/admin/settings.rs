//! `/api/admin/settings`: the runtime settings. Operators read them; admins change them, each
//! change audited with its old and new value. The rules live in `crate::settings`.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::super::json;
use crate::app::App;
use crate::auth::{Administrator, Operator};
use crate::error::ApiError;
use crate::settings::{SettingView, SettingsError};

#[derive(Serialize, ToSchema)]
pub struct SettingList {
    pub settings: Vec<SettingView>,
}

impl From<SettingsError> for ApiError {
    fn from(e: SettingsError) -> ApiError {
        match e {
            SettingsError::Db(e) => e.into(),
            e => ApiError::invalid(e.to_string()),
        }
    }
}

/// Every runtime setting with the value instances act on, the configuration's default and
/// whether it is overridden.
#[utoipa::path(get, path = "/api/admin/settings", operation_id = "admin_settings", tag = "admin", responses(
    (status = 200, body = SettingList, description = "OK"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`"),
))]
pub async fn list(app: web::Data<App>, _: Operator) -> Result<HttpResponse, ApiError> {
    let settings = app.settings.views().await?;
    Ok(json(StatusCode::OK, &SettingList { settings }))
}

/// Changes settings: a JSON object of keys and new values, where `null` resets a key to the
/// configuration's value. One invalid value changes nothing. Every instance applies the change
/// within two seconds, without a restart.
#[utoipa::path(patch, path = "/api/admin/settings", operation_id = "admin_update_settings", tag = "admin",
    request_body(content = Object, description = "e.g. `{\"limits.max_upload_bytes\": 10485760, \"maintenance.banner\": null}`"),
    responses(
        (status = 200, body = SettingList, description = "Changed"),
        (status = 400, description = "`invalid_request`: an unknown key or a value against the setting's rule"),
        (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`, `csrf_failed`"),
    ))]
pub async fn update(
    req: HttpRequest,
    app: web::Data<App>,
    Administrator(current): Administrator,
    body: web::Json<BTreeMap<String, serde_json::Value>>,
) -> Result<HttpResponse, ApiError> {
    if body.is_empty() {
        return Err(ApiError::invalid(
            "name at least one setting to change, e.g. {\"maintenance.read_only\": true}",
        ));
    }
    let changes = app.settings.update(&body).await?;
    for change in &changes {
        let detail = serde_json::json!({"old": change.old, "new": change.new});
        super::super::audit(
            &req,
            &app,
            &current.user,
            "settings.update",
            change.key,
            Some(detail),
        )
        .await?;
    }
    let settings = app.settings.views().await?;
    Ok(json(StatusCode::OK, &SettingList { settings }))
}
