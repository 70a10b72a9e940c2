//! Pausing the queue: workers stop claiming while uploads are still accepted and queued. The
//! flag is a runtime setting in the database, so it holds across every worker and restart.

use futures::FutureExt;

use crate::app::App;
use crate::db::DbError;
use crate::db::models::Setting;

const PAUSED: &str = "queue.paused";

/// Whether operators paused the queue.
pub async fn paused(app: &App) -> Result<bool, DbError> {
    let found = app
        .db
        .run(|c| async move { Setting::get(c, PAUSED).await }.boxed())
        .await?;
    Ok(found.is_some_and(|s| s.value == "true"))
}

pub async fn set_paused(app: &App, paused: bool) -> Result<(), DbError> {
    let value = if paused { "true" } else { "false" };
    app.db
        .run(move |c| async move { Setting::put(c, PAUSED, value).await }.boxed())
        .await?;
    tracing::info!(
        paused,
        "queue {}",
        if paused { "paused" } else { "resumed" }
    );
    Ok(())
}
