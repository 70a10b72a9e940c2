//! The command line: one `Command` per mode, each with its own `run`.
//!
//! See DESIGN.md for the full interface.

mod admin;
mod backup;
mod ocr;
mod work;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{Config, DatabaseTarget};
use crate::db::DbPool;
use crate::telemetry;

#[derive(Debug, Parser)]
#[command(name = "ocrd", version, about = "Self-hosted OCR platform", long_about = None)]
pub struct Cli {
    /// Configuration file (TOML). Default: config/ocrd.toml when it exists.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "OCRD_CONFIG",
        value_name = "PATH"
    )]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending database migrations, then exit.
    Migrate,
    /// Print the effective configuration, secrets redacted.
    Config,
    /// Recognise image files locally, without a server.
    Ocr(ocr::OcrArgs),
    /// Serve the API, the WebSocket and the docs (no worker).
    Serve(work::ServeArgs),
    /// Process tasks from the queue (needs Redis): a worker of a distributed install.
    Work(work::WorkArgs),
    /// Everything in one process, on the embedded defaults (SQLite, in-process queue, local
    /// files) unless configured otherwise.
    AllInOne,
    /// Administration: accounts, and the database role servers and workers run as.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Backups: create an archive of the database and the blobs, verify one, restore one.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
}

impl Cli {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let config = Config::load(self.config.as_deref())?;
        telemetry::init(&config.log);
        match self.command {
            Command::Config => {
                print!("{}", config.to_redacted_toml());
                runtime()?.block_on(print_runtime_settings(&config));
                Ok(ExitCode::SUCCESS)
            }
            Command::Migrate => runtime()?
                .block_on(migrate(config))
                .map(|()| ExitCode::SUCCESS),
            Command::Ocr(args) => ocr::run(&config, args),
            Command::Serve(args) => work::serve(config, args).map(|()| ExitCode::SUCCESS),
            Command::Work(args) => work::work(config, args).map(|()| ExitCode::SUCCESS),
            Command::Admin(command) => admin::run(config, command).map(|()| ExitCode::SUCCESS),
            Command::Backup(command) => backup::run(config, command),
            Command::AllInOne => work::all_in_one(config).map(|()| ExitCode::SUCCESS),
        }
    }
}

fn parse_engine(s: &str) -> Result<crate::config::EngineKind, String> {
    s.parse()
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The runtime settings stored in the database, which win over the file's values above; a note
/// instead when the database cannot be read.
async fn print_runtime_settings(config: &Config) {
    let stored = async {
        if let DatabaseTarget::Sqlite(path) = config.database_target()?
            && !path.exists()
        {
            anyhow::bail!("{} does not exist yet", path.display());
        }
        let db = DbPool::from_config(config)?;
        anyhow::Ok(crate::settings::stored(&db).await?)
    };
    // The file's values are printed already: an unreachable database costs a note, not a wait.
    let stored = tokio::time::timeout(std::time::Duration::from_secs(3), stored)
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within 3 s")));
    match stored {
        Ok(stored) => {
            println!(
                "\n# Runtime settings stored in the database: these win over the values above."
            );
            if stored.is_empty() {
                println!("# (none: every setting has the value above)");
            }
            for (key, value) in stored {
                println!("# {key} = {value}");
            }
        }
        Err(e) => println!("\n# Runtime settings: the database could not be read ({e:#})."),
    }
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let target = match config.database_target()? {
        DatabaseTarget::Postgres(url) => format!("PostgreSQL {}", url.redacted()),
        DatabaseTarget::Sqlite(path) => format!("SQLite {}", path.display()),
    };
    let db = DbPool::from_config(&config)?;
    let applied = db
        .migrate()
        .await
        .with_context(|| format!("migrating {target}"))?;
    if applied.is_empty() {
        println!("{target}: up to date");
    } else {
        println!("{target}: applied {}", applied.join(", "));
    }
    Ok(())
}
