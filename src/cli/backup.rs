//! `ocrd backup …`: archives of the database and the blobs (see [`crate::backup`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::backup;
use crate::blobs::Blobs;
use crate::config::Config;
use crate::db::DbPool;

#[derive(Debug, clap::Subcommand)]
pub enum BackupCommand {
    /// Write a new archive (`ocrd-backup-<time>.tar`) of the database and the blobs. Safe
    /// while ocrd runs: the database is copied at one instant.
    Create {
        /// Where to write it. Default: `{data_dir}/backups`.
        #[arg(long, short, value_name = "DIR")]
        output: Option<PathBuf>,
        /// Then delete all but the newest N archives in DIR (0: keep every one).
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep: usize,
    },
    /// Read a whole archive and check every file in it against its manifest.
    Verify { archive: PathBuf },
    /// Restore an archive into this install. Stop its servers and workers first. Refuses an
    /// install that already holds accounts, tasks or blobs, unless forced.
    Restore {
        archive: PathBuf,
        /// Replace the database, and write the blobs over what storage holds.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(config: Config, command: BackupCommand) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async move {
        match command {
            BackupCommand::Create { output, keep } => {
                let dir = output.unwrap_or_else(|| config.data_dir.join("backups"));
                let db = DbPool::from_config(&config)?;
                let blobs = Blobs::from_config(&config)?;
                let created = backup::create(&config, &db, &blobs, &dir)
                    .await
                    .context("backup failed")?;
                println!(
                    "{}: {} bytes, {} blobs, in {:.1} s",
                    created.archive.display(),
                    created.bytes,
                    created.blobs,
                    created.took.as_secs_f64()
                );
                if keep > 0 {
                    for old in backup::prune(&dir, keep).context("removing old archives")? {
                        println!("removed {}", old.display());
                    }
                }
            }
            BackupCommand::Verify { archive } => {
                let manifest = {
                    let archive = archive.clone();
                    tokio::task::spawn_blocking(move || backup::verify(&archive)).await??
                };
                println!(
                    "{}: intact; ocrd {}, schema {}, {} database, {} blobs ({}), made {}",
                    archive.display(),
                    manifest.ocrd_version,
                    manifest.schema_version,
                    manifest.backend,
                    manifest.blobs.len(),
                    match manifest.storage {
                        crate::config::StorageKind::Local => "in the archive",
                        crate::config::StorageKind::S3 => "listed; kept in the bucket",
                    },
                    manifest.created_at.to_rfc3339()
                );
            }
            BackupCommand::Restore { archive, force } => {
                let restored = backup::restore(&config, &archive, force)
                    .await
                    .context("restore failed")?;
                println!(
                    "restored {} (schema {}): {} accounts, {} tasks, {} blobs, in {:.1} s",
                    archive.display(),
                    restored.manifest.schema_version,
                    restored.accounts,
                    restored.tasks,
                    restored.blobs,
                    restored.took.as_secs_f64()
                );
                if !restored.migrated.is_empty() {
                    println!("migrated to this ocrd: {}", restored.migrated.join(", "));
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
