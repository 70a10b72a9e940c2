//! Every account's tasks, for operators: search with filters, retry and cancel one, or act on
//! everything a filter matches (bulk), with a dry run that says how many it would touch.

use futures::FutureExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AdminError;
use crate::app::App;
use crate::db::DbError;
use crate::db::models::{FoundTask, Order, Task, TaskFilter};
use crate::tasks::DeleteError;

/// Ids handled per round of a bulk action.
const BATCH: i64 = 200;

/// What a bulk action does to each task it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BulkAction {
    /// Failed and cancelled tasks run again; others are left as they are.
    Retry,
    /// Queued and processing tasks stop; others are left as they are.
    Cancel,
    /// Tasks are removed with their results and uploads (running ones are cancelled first).
    Delete,
}

/// What a bulk action matched and changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct BulkOutcome {
    /// Tasks the filter matches (for a dry run, what the action would go through).
    pub matched: i64,
    /// Tasks the action changed (0 for a dry run): a retry skips tasks that did not fail.
    pub changed: i64,
}

/// A page of tasks matching `filter`, and the cursor of the next page.
pub async fn search(
    app: &App,
    filter: TaskFilter,
    order: Order,
    limit: i64,
    after: Option<String>,
) -> Result<(Vec<FoundTask>, Option<String>), DbError> {
    let mut found = app
        .db
        .read(move |c| {
            async move { Task::search(c, &filter, order, limit + 1, after.as_deref()).await }
                .boxed()
        })
        .await?;
    // One more than asked tells whether there is a next page.
    let next = if found.len() as i64 > limit {
        found.truncate(limit as usize);
        found.last().map(|t| t.task.id.clone())
    } else {
        None
    };
    Ok((found, next))
}

/// Applies `action` to every task matching `filter`, in batches, to the end even if the
/// caller stops waiting. A dry run only counts.
pub async fn bulk(
    app: &App,
    filter: TaskFilter,
    action: BulkAction,
    dry_run: bool,
) -> Result<BulkOutcome, AdminError> {
    if dry_run {
        let matched = app
            .db
            .run(move |c| async move { Task::count_matching(c, &filter).await }.boxed())
            .await?;
        return Ok(BulkOutcome {
            matched,
            changed: 0,
        });
    }
    let detached = app.clone();
    app.finish(async move { bulk_detached(&detached, filter, action).await })
        .await
        .unwrap_or_else(|e| Err(DbError::Aborted(e.to_string()).into()))
}

async fn bulk_detached(
    app: &App,
    filter: TaskFilter,
    action: BulkAction,
) -> Result<BulkOutcome, AdminError> {
    let mut outcome = BulkOutcome::default();
    let mut after: Option<String> = None;
    loop {
        let (batch_filter, cursor) = (filter.clone(), after.clone());
        let ids = app
            .db
            .run(move |c| {
                async move { Task::matching_ids(c, &batch_filter, BATCH, cursor.as_deref()).await }
                    .boxed()
            })
            .await?;
        let Some(last) = ids.last().cloned() else {
            break;
        };
        for id in &ids {
            outcome.matched += 1;
            if apply(app, id, action).await? {
                outcome.changed += 1;
            }
        }
        after = Some(last);
    }
    tracing::info!(
        ?action,
        matched = outcome.matched,
        changed = outcome.changed,
        "bulk action done"
    );
    Ok(outcome)
}

/// One task of a bulk action; whether it changed.
async fn apply(app: &App, id: &str, action: BulkAction) -> Result<bool, AdminError> {
    match action {
        BulkAction::Retry => Ok(crate::tasks::retry(app, id).await?.is_some()),
        BulkAction::Cancel => Ok(crate::tasks::cancel(app, id).await?.is_some()),
        BulkAction::Delete => {
            let owner = {
                let id = id.to_owned();
                match app
                    .db
                    .run(move |c| async move { Task::find(c, &id).await }.boxed())
                    .await
                {
                    Ok(task) => task.user_id,
                    // Deleted meanwhile.
                    Err(DbError::NotFound) => return Ok(false),
                    Err(e) => return Err(e.into()),
                }
            };
            match crate::tasks::delete(app, &owner, id).await {
                Ok(()) => Ok(true),
                Err(DeleteError::NotFound) => Ok(false),
                Err(DeleteError::Db(e)) => Err(e.into()),
                Err(DeleteError::Blob(e)) => Err(e.into()),
            }
        }
    }
}
