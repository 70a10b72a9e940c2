//! Invite links for `auth.registration = "invite"`: an admin makes one (optionally for one
//! email), hands over the link, and it makes one account before it expires. The install's
//! shared `auth.invite_code` still works beside them.

use chrono::TimeDelta;
use futures::FutureExt;

use super::{AccountError, constant_time_eq, create_user, sessions, token_hash};
use crate::app::App;
use crate::db::DbError;
use crate::db::models::{Invite, User, now};

/// Longest an invite may stay valid.
pub const MAX_DAYS: u32 = 30;

/// Makes an invite valid for `days`, by `creator` (none: the shell): the link to hand over (its
/// token is shown only here) and the invite.
pub async fn issue(
    app: &App,
    creator: Option<&User>,
    email: Option<String>,
    days: u32,
) -> Result<(String, Invite), DbError> {
    let token = sessions::random_token();
    let hash = token_hash(&token);
    let creator = creator.map(|u| u.id.clone());
    let expires_at = now() + TimeDelta::days(i64::from(days.clamp(1, MAX_DAYS)));
    let invite = app
        .db
        .run(move |c| {
            async move {
                Invite::create(c, &hash, email.as_deref(), creator.as_deref(), expires_at).await
            }
            .boxed()
        })
        .await?;
    let link = format!("{}/register?invite={token}", app.config.server.base_url());
    Ok((link, invite))
}

/// Why a registration with a code was refused.
#[derive(Debug, thiserror::Error)]
pub enum InviteError {
    #[error(
        "registration needs a valid invite: this one is unknown, used, expired or for another email"
    )]
    Invalid,
    #[error(transparent)]
    Account(#[from] AccountError),
}

impl From<DbError> for InviteError {
    fn from(e: DbError) -> Self {
        InviteError::Account(AccountError::Db(e))
    }
}

/// Creates an account with `code`: the install's shared invite code, or an invite link's
/// token, which this uses up. A failed account creation leaves the invite usable.
pub async fn register(
    app: &App,
    code: &str,
    email: &str,
    password: &str,
) -> Result<(User, Option<Invite>), InviteError> {
    let shared = app.config.auth.invite_code.expose();
    if !shared.is_empty() && constant_time_eq(code.as_bytes(), shared.as_bytes()) {
        return Ok((create_user(app, email, password, None).await?, None));
    }
    if code.is_empty() {
        return Err(InviteError::Invalid);
    }
    let (hash, owned_email) = (token_hash(code), email.to_owned());
    let claimed = app
        .db
        .run(move |c| async move { Invite::claim(c, &hash, &owned_email).await }.boxed())
        .await?
        .ok_or(InviteError::Invalid)?;
    let created = create_user(app, email, password, None).await;
    let (id, used_by) = (
        claimed.id.clone(),
        created.as_ref().ok().map(|u| u.id.clone()),
    );
    app.db
        .run(move |c| async move { Invite::settle(c, &id, used_by.as_deref()).await }.boxed())
        .await?;
    Ok((created?, Some(claimed)))
}
