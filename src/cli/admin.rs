//! `ocrd admin …`: account administration from the server's shell, for closed installs, and
//! the database's application role.

use std::io::Read;

use anyhow::Context;
use futures::FutureExt;

use crate::app::App;
use crate::auth::password;
use crate::config::Config;
use crate::db::models::{Role, User, normalize_email};

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
    /// Database roles (PostgreSQL).
    #[command(subcommand)]
    Db(DbCommand),
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
