//! The audit log: an append-only record of security-relevant events (sign-ins, tokens, roles,
//! every operator action, access to documents), with who acted, from where, on what, and how
//! it ended. HIPAA's audit controls (§164.312(b)) are why it exists.
//!
//! Rows are hash-chained: each row's `hash` is the SHA-256 of its own fields and the previous
//! row's hash, and `seq` counts 1, 2, 3, … without gaps, so that [`verify`] finds a row that
//! was edited or deleted and names it. Each append also records the newest row in
//! `audit_head`, in its transaction, so that rows removed from the end are found too. (Someone
//! who can write the database at will can rewrite a chain and its head alike: copies exported
//! with `ocrd admin audit export` to write-once storage are the answer to that.) Appends from
//! many `serve` processes race for the next `seq`; the loser reads the new head and tries
//! again.

use actix_web::HttpRequest;
use futures::FutureExt;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::db::DbError;
use crate::db::models::{AuditRow, User, now};

/// The `prev_hash` of the first row.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Appends lost to other writers before giving up.
const TRIES: usize = 32;

/// Who acted, and from where.
#[derive(Clone, Debug, Default)]
pub struct Actor {
    pub id: Option<String>,
    /// An email, `shell` or `anonymous`.
    pub name: String,
    pub client: Option<String>,
    pub user_agent: Option<String>,
}

impl Actor {
    /// The caller of `req`, signed in as `user` or not.
    pub fn of(req: &HttpRequest, user: Option<&User>) -> Actor {
        let client = crate::edge::Client::of(req).ip.map(|ip| ip.to_string());
        let user_agent = req
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| crate::names::clean(v, 256));
        Actor {
            id: user.map(|u| u.id.clone()),
            name: user.map_or_else(|| "anonymous".to_owned(), |u| u.email.clone()),
            client,
            user_agent,
        }
    }

    /// `ocrd admin` on the server's shell.
    pub fn shell() -> Actor {
        Actor::system("shell")
    }

    /// ocrd itself, doing a job (`retention`).
    pub fn system(name: &str) -> Actor {
        Actor {
            name: name.into(),
            ..Actor::default()
        }
    }
}

/// How an audited action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// Appends one event. A caller that cannot record an access does not serve it: the error
/// comes back to it.
pub async fn record(
    app: &App,
    actor: &Actor,
    action: &str,
    target: Option<&str>,
    outcome: Outcome,
    detail: Option<serde_json::Value>,
) -> Result<(), DbError> {
    let template = AuditRow {
        seq: 0,
        at: now(),
        actor_id: actor.id.clone(),
        actor: actor.name.clone(),
        client: actor.client.clone(),
        user_agent: actor.user_agent.clone(),
        action: action.to_owned(),
        target: target.map(str::to_owned),
        outcome: outcome.as_str().to_owned(),
        detail: detail.map(|d| d.to_string()),
        prev_hash: String::new(),
        hash: String::new(),
    };
    app.db
        .run(move |c| {
            async move {
                for _ in 0..TRIES {
                    let head = AuditRow::last(c).await?;
                    let mut row = template.clone();
                    (row.seq, row.prev_hash) = match head {
                        Some(head) => (head.seq + 1, head.hash),
                        None => (1, GENESIS.to_owned()),
                    };
                    row.hash = hash(&row);
                    if AuditRow::append(c, &row).await? {
                        return Ok(());
                    }
                }
                Err(DbError::Invalid(
                    "the audit log is too busy: another writer won every try".into(),
                ))
            }
            .boxed()
        })
        .await
}

/// The row's hash: SHA-256 over its fields and the previous row's hash, as one JSON array.
pub fn hash(row: &AuditRow) -> String {
    let fields = serde_json::json!([
        row.seq,
        row.at.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        row.actor_id,
        row.actor,
        row.client,
        row.user_agent,
        row.action,
        row.target,
        row.outcome,
        row.detail,
        row.prev_hash,
    ]);
    hex::encode(Sha256::digest(fields.to_string().as_bytes()))
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// Rows checked.
    pub rows: i64,
    /// The first row that breaks the chain, and how; `None`: the log is intact.
    pub broken: Option<(i64, String)>,
}

/// Walks the whole log in order and checks every link: `seq` without gaps, each `prev_hash`
/// the hash before it, each `hash` its own fields'.
pub async fn verify(app: &App) -> Result<Verified, DbError> {
    let mut rows = 0;
    let (mut expected_seq, mut prev) = (1, GENESIS.to_owned());
    loop {
        let after = expected_seq - 1;
        let page = app
            .db
            .run(move |c| async move { AuditRow::page(c, after, 1000).await }.boxed())
            .await?;
        if page.is_empty() {
            let head = app
                .db
                .run(|c| async move { AuditRow::head(c).await }.boxed())
                .await?;
            let broken = end_broken(after, &prev, head);
            return Ok(Verified { rows, broken });
        }
        for row in page {
            rows += 1;
            let broken = if row.seq != expected_seq {
                Some(format!(
                    "row {expected_seq} is missing (the next one is {})",
                    row.seq
                ))
            } else if row.prev_hash != prev {
                Some("its prev_hash is not the hash of the row before (a row before it was changed or removed)".to_owned())
            } else if hash(&row) != row.hash {
                Some("its fields do not match its hash (it was edited)".to_owned())
            } else {
                None
            };
            if let Some(why) = broken {
                return Ok(Verified {
                    rows,
                    broken: Some((expected_seq.min(row.seq), why)),
                });
            }
            prev = row.hash.clone();
            expected_seq += 1;
        }
    }
}

/// Whether the chain, walked to row `last` (0: none) ending in `hash`, ends where the last
/// append recorded.
fn end_broken(last: i64, hash: &str, head: Option<(i64, String)>) -> Option<(i64, String)> {
    match head {
        None if last == 0 => None,
        None => Some((
            last,
            "the record of the newest row is gone (audit_head was emptied)".to_owned(),
        )),
        Some((seq, _)) if seq > last => Some((
            last + 1,
            format!("rows {} to {seq} were removed from the end", last + 1),
        )),
        Some((seq, recorded)) if seq == last && recorded == hash => None,
        Some((seq, _)) => Some((
            seq.min(last),
            format!("the newest rows are not the ones appended (the last append was row {seq})"),
        )),
    }
}

/// Writes the whole log, oldest first, one JSON object per line.
pub async fn export(app: &App, out: &mut impl std::io::Write) -> Result<i64, AuditExportError> {
    let mut after = 0;
    let mut written = 0;
    loop {
        let page = app
            .db
            .run(move |c| async move { AuditRow::page(c, after, 1000).await }.boxed())
            .await?;
        let Some(last) = page.last() else {
            return Ok(written);
        };
        after = last.seq;
        for row in &page {
            serde_json::to_writer(&mut *out, row).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
            written += 1;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditExportError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
}
