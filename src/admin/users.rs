//! Accounts, for admins: search with what each uses, change a role or disable an account
//! (its tokens are revoked and its sessions refused at once), and erase one with everything
//! it owns.

use futures::FutureExt;

use super::AdminError;
use crate::app::App;
use crate::db::DbError;
use crate::db::models::{ApiToken, Role, Task, Usage, User};

/// A page of accounts (emails containing `search`), what each uses, and the next cursor.
pub async fn list(
    app: &App,
    search: Option<String>,
    limit: i64,
    after: Option<String>,
) -> Result<(Vec<(User, Usage)>, Option<String>), DbError> {
    let at = crate::db::models::now();
    app.db
        .read(move |c| {
            async move {
                let mut users =
                    User::search(c, search.as_deref(), limit + 1, after.as_deref()).await?;
                let next = if users.len() as i64 > limit {
                    users.truncate(limit as usize);
                    users.last().map(|u| u.id.clone())
                } else {
                    None
                };
                let ids: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
                let mut usage = User::usage(c, &ids, at).await?;
                let rows = users
                    .into_iter()
                    .map(|u| {
                        let used = usage.remove(&u.id).unwrap_or_default();
                        (u, used)
                    })
                    .collect();
                Ok((rows, next))
            }
            .boxed()
        })
        .await
}

/// What an admin changes about an account; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct UserChange {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    /// The account's retention in days; `Some(None)` returns it to the install's.
    pub retention_days: Option<Option<i32>>,
    /// The account's own quotas.
    pub quota: Option<crate::quota::Change>,
}

/// Changes an account's role, whether it is disabled, its retention and its quotas. Disabling revokes
/// its API tokens; its sessions are refused from the next request on (every request reads the
/// account).
pub async fn update(app: &App, id: &str, change: UserChange) -> Result<User, DbError> {
    let id = id.to_owned();
    app.db
        .run(move |c| {
            async move {
                let mut user = User::find(c, &id).await?;
                if let Some(role) = change.role {
                    user = User::set_role(c, &id, role).await?;
                }
                if let Some(disabled) = change.disabled {
                    user = User::set_disabled(c, &id, disabled).await?;
                    if disabled {
                        ApiToken::delete_all_for_user(c, &id).await?;
                    }
                }
                if let Some(days) = change.retention_days {
                    user = User::set_retention(c, &id, days).await?;
                }
                if let Some(quota) = change.quota {
                    crate::quota::set_overrides(c, &id, quota).await?;
                }
                Ok(user)
            }
            .boxed()
        })
        .await
}

/// Erases an account: every task with its results and upload, then the account with its
/// tokens and sessions' grounds. Returns how many tasks went.
pub async fn erase(app: &App, id: &str) -> Result<i64, AdminError> {
    let mut erased = 0;
    loop {
        let owner = id.to_owned();
        let batch = app
            .db
            .run(move |c| {
                async move { Task::list_for_user(c, &owner, None, 200, None).await }.boxed()
            })
            .await?;
        if batch.is_empty() {
            break;
        }
        for task in batch {
            match crate::tasks::delete(app, id, &task.id).await {
                Ok(()) | Err(crate::tasks::DeleteError::NotFound) => erased += 1,
                Err(crate::tasks::DeleteError::Db(e)) => return Err(e.into()),
                Err(crate::tasks::DeleteError::Blob(e)) => return Err(e.into()),
            }
        }
    }
    let id = id.to_owned();
    app.db
        .run(move |c| async move { User::delete(c, &id).await }.boxed())
        .await?;
    Ok(erased)
}
