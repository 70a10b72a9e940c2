//! `ocrd admin …`: account administration from the server's shell, for closed installs.

use std::io::Read;

use anyhow::Context;

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
                let mut conn = app.db.get().await?;
                for user in User::list(&mut conn, 1000, None).await? {
                    let state = if user.disabled { "disabled" } else { "active" };
                    println!(
                        "{}\t{}\t{}\t{state}",
                        user.id,
                        user.email,
                        user.role.as_str()
                    );
                }
            }
        }
        Ok(())
    })
}
