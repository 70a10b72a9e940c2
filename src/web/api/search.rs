//! Full-text search: `GET /api/search` over the caller's own tasks, and `GET /api/admin/search`
//! over everyone's (admins only, and audited). The work is the search port's (`crate::search`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::json;
use crate::app::App;
use crate::auth::{Administrator, CurrentUser};
use crate::db::DbError;
use crate::error::ApiError;
use crate::search::{self, Hit, Query, Scope};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Words to find, all of them; `"a phrase"`; `prefix*`; `-word` to leave out; `OR` (in
    /// capitals) between alternatives.
    #[param(min_length = 1, max_length = 256)]
    q: String,
    /// 1 to 50, default 20.
    #[param(minimum = 1, maximum = 50)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,4}$")]
    cursor: Option<String>,
}

/// Matching pages, best first.
#[derive(Serialize, ToSchema)]
pub struct SearchResults {
    pub hits: Vec<Hit>,
    /// The words to mark on a page, lower-case; a prefix ends in `*`.
    pub terms: Vec<String>,
    /// Pass as `cursor` for the next page; `null` on the last. Only the newest 1,000 matching
    /// pages are ranked: a search matching more should be narrowed.
    pub next_cursor: Option<String>,
}

/// Searches the text of the caller's own results, one hit per page.
#[utoipa::path(get, path = "/api/search", operation_id = "search", tag = "tasks", params(SearchParams), responses(
    (status = 200, body = SearchResults, description = "OK"),
    (status = 400, description = "`invalid_request`: an empty or too long search, or a bad limit or cursor"),
    (status = 401, description = "`unauthenticated`"),
))]
pub async fn search(
    app: web::Data<App>,
    current: CurrentUser,
    params: web::Query<SearchParams>,
) -> Result<HttpResponse, ApiError> {
    let query = parse(&params)?;
    respond(&app, Some(current.user.id), query, &params).await
}

fn parse(params: &SearchParams) -> Result<Query, ApiError> {
    Query::parse(&params.q).map_err(|e| ApiError::invalid(e.to_string()))
}

/// Searches the text of every account's results. Each search is recorded in the audit log.
#[utoipa::path(get, path = "/api/admin/search", operation_id = "admin_search", tag = "admin", params(SearchParams), responses(
    (status = 200, body = SearchResults, description = "OK"),
    (status = 400, description = "`invalid_request`"),
    (status = 401, description = "`unauthenticated`"), (status = 403, description = "`forbidden`: not an admin"),
))]
pub async fn search_all(
    req: HttpRequest,
    app: web::Data<App>,
    Administrator(current): Administrator,
    params: web::Query<SearchParams>,
) -> Result<HttpResponse, ApiError> {
    // Validated before it is recorded: the audit log holds searches that ran.
    let query = parse(&params)?;
    let detail = serde_json::json!({ "q": params.q });
    super::audit(
        &req,
        &app,
        &current.user,
        "search.all",
        "search",
        Some(detail),
    )
    .await?;
    respond(&app, None, query, &params).await
}

async fn respond(
    app: &App,
    owner: Option<String>,
    query: Query,
    params: &SearchParams,
) -> Result<HttpResponse, ApiError> {
    let limit = super::page_limit(params.limit, 20, 50)?;
    let offset = match params.cursor.as_deref() {
        None => 0,
        Some(c) => c
            .parse::<i64>()
            .ok()
            .filter(|_| c.len() <= 4 && c.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| ApiError::invalid("cursor: pass next_cursor of the previous page"))?,
    };
    let terms = query.highlight_terms();
    let mut hits = app
        .db
        .read(move |c| {
            async move {
                let scope = Scope::of(owner.as_deref());
                // One more than asked tells whether there is a next page.
                search::search(c, scope, &query, limit + 1, offset).await
            }
            .boxed()
        })
        .await
        .map_err(|e: DbError| ApiError::from(e))?;
    let next_cursor = (hits.len() as i64 > limit).then(|| (offset + limit).to_string());
    hits.truncate(limit as usize);
    Ok(json(
        StatusCode::OK,
        &SearchResults {
            hits,
            terms,
            next_cursor,
        },
    ))
}
