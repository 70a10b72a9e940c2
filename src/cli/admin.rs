//! `ocrd admin …`: account administration from the server's shell, for closed installs, the
//! fleet (tasks, workers, the queue) and the database's application role.

use std::io::Read;

use anyhow::Context;
use futures::FutureExt;

use crate::admin::tasks::BulkAction;
use crate::app::App;
use crate::auth::password;
use crate::config::Config;
use crate::db::models::{Order, Role, TaskFilter, TaskStatus, User, normalize_email};

#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Create an account. The password is read from standard input (one line).
    CreateUser {
        #[arg(long)]
        email: String,
        /// Make the account an administrator.
        #[arg(long)]
        admin: bool,
    },
    /// List accounts.
    ListUsers,
    /// Print a one-time link that lets the account's owner set a new password (no email
    /// server needed: hand the link over yourself). Using it ends all their sessions.
    ResetPassword {
        #[arg(long)]
        email: String,
        /// How long the link stays valid.
        #[arg(long, default_value_t = 24)]
        hours: u32,
    },
    /// Give an account a role: `user`, `operator` (runs tasks, workers and the queue) or
    /// `admin`.
    SetRole {
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: String,
    },
    /// Disable an account (its API tokens are revoked and its sessions refused at once), or
    /// enable it again with `--enable`.
    DisableUser {
        #[arg(long)]
        email: String,
        #[arg(long)]
        enable: bool,
    },
    /// Erase an account with all its tasks, results, uploads and tokens, for good.
    EraseUser {
        #[arg(long)]
        email: String,
        /// Needed: there is no undo.
        #[arg(long)]
        yes: bool,
    },
    /// Print an invite link that makes one account while `auth.registration` is `invite`.
    Invite {
        /// Only this email may use it.
        #[arg(long)]
        email: Option<String>,
        /// Days it stays valid (1 to 30).
        #[arg(long, default_value_t = 7)]
        days: u32,
    },
    /// Accounts: `list`, `set-role`, `disable`, `delete` (the commands above, grouped).
    #[command(subcommand)]
    Users(UsersCommand),
    /// Every account's tasks.
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// The worker processes.
    #[command(subcommand)]
    Workers(WorkersCommand),
    /// The queue.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Throughput, durations, failures and the queue over a window, as JSON.
    Stats {
        /// 1h, 24h, 7d or 30d.
        #[arg(long, default_value = "24h")]
        window: String,
    },
    /// Runtime settings: stored in the database, over the configuration file's values.
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The full-text search index.
    #[command(subcommand)]
    Search(SearchCommand),
    /// Database roles (PostgreSQL).
    #[command(subcommand)]
    Db(DbCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum UsersCommand {
    /// List accounts.
    List,
    /// Give an account a role: `user`, `operator` or `admin`.
    SetRole {
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: String,
    },
    /// Disable an account (tokens revoked, sessions refused at once), or enable it with
    /// `--enable`.
    Disable {
        #[arg(long)]
        email: String,
        #[arg(long)]
        enable: bool,
    },
    /// Erase an account with all its tasks, results, uploads and tokens.
    Delete {
        #[arg(long)]
        email: String,
        /// Needed: there is no undo.
        #[arg(long)]
        yes: bool,
    },
}

impl From<UsersCommand> for AdminCommand {
    fn from(command: UsersCommand) -> AdminCommand {
        match command {
            UsersCommand::List => AdminCommand::ListUsers,
            UsersCommand::SetRole { email, role } => AdminCommand::SetRole { email, role },
            UsersCommand::Disable { email, enable } => AdminCommand::DisableUser { email, enable },
            UsersCommand::Delete { email, yes } => AdminCommand::EraseUser { email, yes },
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum SettingsCommand {
    /// Every setting (or one) with its value and where it comes from.
    Get { key: Option<String> },
    /// Override a setting on every instance, e.g. `set limits.max_upload_bytes 10485760` or
    /// `set maintenance.banner "Upgrade at 18:00 UTC"`. The value is JSON where it parses as
    /// JSON, text otherwise.
    Set { key: String, value: String },
    /// Return a setting to the configuration file's value.
    Reset { key: String },
}

/// Which tasks: every filter given narrows the match.
#[derive(Debug, Clone, clap::Args)]
pub struct FilterArgs {
    /// queued, processing, completed, failed or cancelled.
    #[arg(long)]
    status: Option<String>,
    /// The owner's email.
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    engine: Option<String>,
    /// A failure code.
    #[arg(long)]
    error: Option<String>,
    /// A part of the file name.
    #[arg(long)]
    filename: Option<String>,
    /// A task id or its start.
    #[arg(long)]
    id: Option<String>,
}

impl FilterArgs {
    fn filter(self) -> anyhow::Result<TaskFilter> {
        let status = self
            .status
            .map(|s| s.parse::<TaskStatus>())
            .transpose()
            .context("--status: queued, processing, completed, failed or cancelled")?;
        Ok(TaskFilter {
            status,
            user_email: self.user.as_deref().map(normalize_email),
            engine: self.engine,
            error_code: self.error,
            filename: self.filename,
            id_prefix: self.id.map(|id| id.to_ascii_lowercase()),
            ..TaskFilter::default()
        })
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum TasksCommand {
    /// List matching tasks, newest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Queue every matching failed or cancelled task again.
    Retry {
        #[command(flatten)]
        filter: FilterArgs,
        /// Only say how many tasks match.
        #[arg(long)]
        dry_run: bool,
    },
    /// Cancel every matching queued or processing task.
    Cancel {
        #[command(flatten)]
        filter: FilterArgs,
        /// Only say how many tasks match.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum WorkersCommand {
    /// Every worker with its state, heartbeat and tasks.
    List,
    /// Let the worker finish what it runs and take nothing new.
    Drain { id: String },
    /// Let a drained worker take work again.
    Resume { id: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check every row's hash and link; exits non-zero naming the first row that was edited
    /// or removed.
    Verify,
    /// Write the whole log as JSON lines, oldest first, to standard output.
    Export,
}

#[derive(Debug, clap::Subcommand)]
pub enum SearchCommand {
    /// Rebuild the index from the stored results, a batch at a time; search keeps working
    /// meanwhile.
    Reindex,
    /// Pages indexed, and the index's size next to the text's, as JSON.
    Stats,
}

#[derive(Debug, clap::Subcommand)]
pub enum QueueCommand {
    /// Whether the queue is paused.
    Status,
    /// Workers take no new work (on every worker, across restarts); uploads still queue.
    Pause,
    Resume,
}

#[derive(Debug, clap::Subcommand)]
pub enum DbCommand {
    /// Let ROLE (which must exist) run `serve` and `work`: read and write ocrd's rows, no
    /// DDL. Run it as the database's owner, the role `ocrd migrate` runs as; give the
    /// servers and workers ROLE's URL with `database.migrate_on_start = false`.
    GrantAppRole {
        /// The application role, e.g. `ocrd_app`.
        role: String,
    },
}

pub fn run(config: Config, command: AdminCommand) -> anyhow::Result<()> {
    super::runtime()?.block_on(async move {
        let app = App::build(config).await.context("connecting")?;
        let command = match command {
            AdminCommand::Users(users) => users.into(),
            other => other,
        };
        match command {
            AdminCommand::CreateUser { email, admin } => {
                let mut input = String::new();
                std::io::stdin()
                    .take(4096)
                    .read_to_string(&mut input)
                    .context("reading the password from standard input")?;
                let plain = input.lines().next().unwrap_or("").to_owned();
                let email = normalize_email(&email);
                password::check_policy(&plain, app.config.auth.min_password_length, &email)?;
                let role = if admin { Role::Admin } else { Role::User };
                let user = crate::auth::create_user(&app, &email, &plain, Some(role)).await?;
                println!(
                    "created {} ({}) {}",
                    user.email,
                    user.role.as_str(),
                    user.id
                );
            }
            AdminCommand::ListUsers => {
                let users = app
                    .db
                    .run(|c| async move { User::list(c, 1000, None).await }.boxed())
                    .await?;
                for user in users {
                    let state = if user.disabled { "disabled" } else { "active" };
                    println!(
                        "{}\t{}\t{}\t{state}",
                        user.id,
                        user.email,
                        user.role.as_str()
                    );
                }
            }
            AdminCommand::ResetPassword { email, hours } => {
                let email = normalize_email(&email);
                let found = email.clone();
                let user = app
                    .db
                    .run(move |c| async move { User::find_by_email(c, &found).await }.boxed())
                    .await?
                    .with_context(|| format!("no account with email {email}"))?;
                let ttl = chrono::TimeDelta::hours(i64::from(hours.clamp(1, 24 * 30)));
                let (url, expires_at) = crate::auth::issue_reset_link(&app, &user, ttl).await?;
                println!("{url}");
                eprintln!(
                    "one-time link for {}, valid until {} UTC",
                    user.email,
                    expires_at.format("%Y-%m-%d %H:%M")
                );
            }
            AdminCommand::SetRole { email, role } => {
                let role: Role = role
                    .parse()
                    .ok()
                    .context("--role: user, operator or admin")?;
                let email = normalize_email(&email);
                let found = email.clone();
                let user = app
                    .db
                    .run(move |c| {
                        async move {
                            let Some(user) = User::find_by_email(c, &found).await? else {
                                return Ok(None);
                            };
                            User::set_role(c, &user.id, role).await.map(Some)
                        }
                        .boxed()
                    })
                    .await?
                    .with_context(|| format!("no account with email {email}"))?;
                let detail = serde_json::json!({"role": user.role.as_str()});
                shell_audit(&app, "user.role", &user.id, Some(detail)).await?;
                println!("{} is now {}", user.email, user.role.as_str());
            }
            AdminCommand::DisableUser { email, enable } => {
                let user = account(&app, &email).await?;
                let change = crate::admin::users::UserChange {
                    disabled: Some(!enable),
                    ..Default::default()
                };
                let user = crate::admin::users::update(&app, &user.id, change).await?;
                let detail = serde_json::json!({"disabled": user.disabled});
                shell_audit(&app, "user.update", &user.id, Some(detail)).await?;
                let state = if user.disabled {
                    "disabled: its tokens are revoked"
                } else {
                    "enabled"
                };
                println!("{} is {state}", user.email);
            }
            AdminCommand::EraseUser { email, yes } => {
                let user = account(&app, &email).await?;
                anyhow::ensure!(yes, "erasing {} cannot be undone: add --yes", user.email);
                let tasks = crate::admin::users::erase(&app, &user.id).await?;
                let detail = serde_json::json!({"email": user.email, "tasks": tasks});
                shell_audit(&app, "user.erase", &user.id, Some(detail)).await?;
                println!("erased {} and {tasks} task(s)", user.email);
            }
            AdminCommand::Tasks(TasksCommand::List { filter, limit }) => {
                let (found, more) = crate::admin::tasks::search(
                    &app,
                    filter.filter()?,
                    Order::Newest,
                    limit.clamp(1, 10_000),
                    None,
                )
                .await?;
                for t in &found {
                    println!(
                        "{}	{}	{}	{}	{}	{}",
                        t.task.id,
                        t.task.status.as_str(),
                        t.owner_email,
                        t.file.filename,
                        t.task.error_code.as_deref().unwrap_or("-"),
                        t.task.created_at.format("%Y-%m-%d %H:%M:%S"),
                    );
                }
                if more.is_some() {
                    eprintln!("(more match: raise --limit or narrow the filter)");
                }
            }
            AdminCommand::Tasks(TasksCommand::Retry { filter, dry_run }) => {
                bulk(&app, filter, BulkAction::Retry, dry_run).await?
            }
            AdminCommand::Tasks(TasksCommand::Cancel { filter, dry_run }) => {
                bulk(&app, filter, BulkAction::Cancel, dry_run).await?
            }
            AdminCommand::Workers(WorkersCommand::List) => {
                for w in crate::admin::workers::list(&app).await? {
                    let tasks: Vec<String> = w
                        .tasks
                        .iter()
                        .map(|t| {
                            format!("{} ({}/{})", t.id, t.pages_done, t.pages_total.unwrap_or(0))
                        })
                        .collect();
                    println!(
                        "{}	{}	{}	heartbeat {:.0} s ago	{} pages	{}",
                        w.id,
                        w.state,
                        w.engine,
                        w.heartbeat_age_secs,
                        w.pages_done,
                        tasks.join(", ")
                    );
                }
            }
            AdminCommand::Workers(WorkersCommand::Drain { id }) => {
                let w = crate::admin::workers::set_drain(&app, &id, true)
                    .await
                    .with_context(|| format!("draining worker {id}"))?;
                shell_audit(&app, "worker.drain", &w.id, None).await?;
                println!(
                    "{} will take no new work; it finishes {} running task(s)",
                    w.id,
                    w.tasks.len()
                );
            }
            AdminCommand::Workers(WorkersCommand::Resume { id }) => {
                let w = crate::admin::workers::set_drain(&app, &id, false)
                    .await
                    .with_context(|| format!("resuming worker {id}"))?;
                shell_audit(&app, "worker.resume", &w.id, None).await?;
                println!("{} takes work again", w.id);
            }
            AdminCommand::Queue(command) => {
                match command {
                    QueueCommand::Status => {}
                    QueueCommand::Pause => {
                        crate::admin::queue::set_paused(&app, true).await?;
                        shell_audit(&app, "queue.pause", "queue", None).await?;
                    }
                    QueueCommand::Resume => {
                        crate::admin::queue::set_paused(&app, false).await?;
                        shell_audit(&app, "queue.resume", "queue", None).await?;
                    }
                }
                let paused = crate::admin::queue::paused(&app).await?;
                println!("the queue is {}", if paused { "paused" } else { "running" });
            }
            AdminCommand::Users(_) => unreachable!("turned into the account commands above"),
            AdminCommand::Settings(command) => settings(&app, command).await?,
            AdminCommand::Invite { email, days } => {
                anyhow::ensure!(
                    (1..=crate::auth::invites::MAX_DAYS).contains(&days),
                    "--days: 1 to 30"
                );
                let email = email.as_deref().map(normalize_email);
                let (link, invite) = crate::auth::invites::issue(&app, None, email, days).await?;
                shell_audit(&app, "invite.create", &invite.id, None).await?;
                println!("{link}");
                eprintln!(
                    "valid until {} UTC, for {}",
                    invite.expires_at.format("%Y-%m-%d %H:%M"),
                    invite.email.as_deref().unwrap_or("anyone with the link")
                );
            }
            AdminCommand::Stats { window } => {
                let window = crate::admin::stats::Window::parse(&window)
                    .context("--window: one of 1h, 24h, 7d, 30d")?;
                let stats = crate::admin::stats::compute(&app, window).await?;
                println!("{}", serde_json::to_string_pretty(&stats)?);
            }
            AdminCommand::Audit(AuditCommand::Verify) => {
                let verified = crate::audit::verify(&app).await?;
                match verified.broken {
                    None => println!("the audit log is intact: {} rows", verified.rows),
                    Some((seq, why)) => anyhow::bail!(
                        "the audit log is broken at row {seq}: {why} ({} rows read)",
                        verified.rows
                    ),
                }
            }
            AdminCommand::Audit(AuditCommand::Export) => {
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                let rows = crate::audit::export(&app, &mut out).await?;
                std::io::Write::flush(&mut out)?;
                eprintln!("{rows} rows");
            }
            AdminCommand::Search(SearchCommand::Reindex) => {
                let started = std::time::Instant::now();
                let done = crate::search::reindex(&app.db, |so_far| {
                    eprintln!("{} results, {} pages…", so_far.tasks, so_far.pages);
                })
                .await?;
                let detail = serde_json::json!({ "tasks": done.tasks, "pages": done.pages });
                shell_audit(&app, "search.reindex", "search", Some(detail)).await?;
                println!(
                    "reindexed {} pages of {} results in {:.1} s",
                    done.pages,
                    done.tasks,
                    started.elapsed().as_secs_f64()
                );
            }
            AdminCommand::Search(SearchCommand::Stats) => {
                let size = app
                    .db
                    .run(|c| async move { crate::search::size(c).await }.boxed())
                    .await?;
                println!("{}", serde_json::to_string_pretty(&size)?);
            }
            AdminCommand::Db(DbCommand::GrantAppRole { role }) => {
                app.db
                    .grant_app_role(&role)
                    .await
                    .with_context(|| format!("granting the application rights to {role}"))?;
                println!(
                    "{role} may now read and write ocrd's tables (no DDL); run serve and work \
                     as {role} with database.migrate_on_start = false"
                );
            }
        }
        Ok(())
    })
}

/// A bulk action from the shell: what matched and what changed.
async fn bulk(
    app: &App,
    filter: FilterArgs,
    action: BulkAction,
    dry_run: bool,
) -> anyhow::Result<()> {
    let filter = filter.filter()?;
    let asked = format!("{filter:?}");
    let outcome = crate::admin::tasks::bulk(app, filter, action, dry_run).await?;
    if !dry_run {
        let detail = serde_json::json!({
            "filter": asked, "action": action,
            "matched": outcome.matched, "changed": outcome.changed,
        });
        shell_audit(app, "tasks.bulk", "tasks", Some(detail)).await?;
    }
    if dry_run {
        println!(
            "{} task(s) match; nothing was changed (--dry-run)",
            outcome.matched
        );
    } else {
        println!(
            "{} task(s) matched, {} changed",
            outcome.matched, outcome.changed
        );
    }
    Ok(())
}

async fn settings(app: &App, command: SettingsCommand) -> anyhow::Result<()> {
    let (key, value) = match command {
        SettingsCommand::Get { key } => {
            if let Some(key) = &key {
                crate::settings::Key::parse(key)?;
            }
            for view in app.settings.views().await? {
                if key.as_deref().is_none_or(|k| k == view.key) {
                    let source = if view.overridden {
                        format!("set at runtime; the configuration says {}", view.default)
                    } else {
                        "from the configuration".to_owned()
                    };
                    println!("{} = {}  ({source})", view.key, view.value);
                }
            }
            return Ok(());
        }
        SettingsCommand::Set { key, value } => {
            let value = serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value));
            (key, value)
        }
        SettingsCommand::Reset { key } => (key, serde_json::Value::Null),
    };
    let changes = app
        .settings
        .update(&[(key.clone(), value)].into_iter().collect())
        .await?;
    for change in &changes {
        let detail = serde_json::json!({"old": change.old, "new": change.new});
        shell_audit(app, "settings.update", change.key, Some(detail)).await?;
        println!("{}: {} -> {}", change.key, change.old, change.new);
    }
    if changes.is_empty() {
        println!("{key}: unchanged");
    }
    Ok(())
}

/// Records what an administrator did from the shell.
async fn shell_audit(
    app: &App,
    action: &str,
    target: &str,
    detail: Option<serde_json::Value>,
) -> anyhow::Result<()> {
    let actor = crate::audit::Actor::shell();
    let outcome = crate::audit::Outcome::Success;
    crate::audit::record(app, &actor, action, Some(target), outcome, detail)
        .await
        .context("writing the audit log")
}

/// The account with this email.
async fn account(app: &App, email: &str) -> anyhow::Result<User> {
    let email = normalize_email(email);
    let found = email.clone();
    app.db
        .run(move |c| async move { User::find_by_email(c, &found).await }.boxed())
        .await?
        .with_context(|| format!("no account with email {email}"))
}
