//! Backups: `ocrd backup create | verify | restore`.
//!
//! An archive is one tar file, written under a temporary name and renamed once complete:
//!
//! - `database/ocrd.sqlite` (`VACUUM INTO`) or `database/ocrd.pgdump` (`pg_dump`, custom
//!   format): the database as it was at one instant;
//! - `blobs/{key}`: every blob, when storage is a local directory;
//! - `manifest.json`, last: ocrd's version, the schema version, and every member's size and
//!   sha256. With S3 storage it lists the bucket's keys, sizes and sha256 instead: the blobs
//!   stay in the bucket, which versioning or replication protects, and restore checks that
//!   they are all still there.
//!
//! Blobs are copied after the database: a blob written in between is in the archive without a
//! row (harmless), and a blob deleted in between is missing along with a row that is gone too.
//! Restore verifies the whole archive before it changes anything, and then only into an empty
//! install unless forced.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::blobs::{BlobError, BlobKey, Blobs};
use crate::config::{Config, ConfigError, DatabaseTarget, StorageKind};
use crate::db::models::Backup;
use crate::db::{DbError, DbPool};

/// The archive layout this binary writes and reads.
pub const FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";
const BLOBS_DIR: &str = "blobs/";
/// A manifest larger than this is not one of ours (a million blobs take about 200 MB).
const MAX_MANIFEST_BYTES: u64 = 1 << 30;

/// What an archive holds, written as its last member.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub ocrd_version: String,
    /// The newest migration applied to the database when it was copied.
    pub schema_version: String,
    pub created_at: DateTime<Utc>,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The database's member in the archive.
    pub database: Entry,
    /// Where the blobs were: `local` (then they are in the archive) or `s3` (then only
    /// listed, and left in the bucket).
    pub storage: StorageKind,
    /// Every blob, by key.
    pub blobs: Vec<Entry>,
}

/// A file's name (an archive path, or a blob key), size and SHA-256.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Blobs(#[from] BlobError),
    /// The archive is not what its manifest says.
    #[error("{archive}: {member}: {problem}")]
    Damaged {
        archive: PathBuf,
        member: String,
        problem: String,
    },
    /// A restore that would lose or mix data; the message says why and what to do.
    #[error("{0}")]
    Refused(String),
    #[error("{tool} failed: {message}")]
    Tool { tool: &'static str, message: String },
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A finished `create`.
#[derive(Debug)]
pub struct Created {
    pub archive: PathBuf,
    pub bytes: u64,
    pub blobs: usize,
    pub took: Duration,
}

/// Writes a new archive into `dir` and records it in the database.
pub async fn create(
    config: &Config,
    db: &DbPool,
    blobs: &Blobs,
    dir: &Path,
) -> Result<Created, BackupError> {
    let started = Instant::now();
    let created_at = Utc::now();
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    let schema_version = db.schema_version().await?.ok_or_else(|| {
        BackupError::Refused("The database was never migrated: there is nothing to back up.".into())
    })?;
    // Work next to the archive, so the final rename stays on one file system; a crash leaves
    // only this hidden directory behind, never a partial archive under the real name.
    let staging = tempfile::Builder::new()
        .prefix(".ocrd-backup-")
        .tempdir_in(dir)
        .map_err(io_at(dir))?;
    let name = format!(
        "ocrd-backup-{}.tar",
        created_at.format("%Y%m%dT%H%M%S%.3fZ")
    );
    let partial = staging.path().join(&name);
    let file = std::fs::File::create(&partial).map_err(io_at(&partial))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));

    let dump = staging.path().join("database");
    let (backend, member) = match config.database_target()? {
        DatabaseTarget::Sqlite(_) => {
            db.snapshot_sqlite(&dump).await?;
            ("sqlite", "database/ocrd.sqlite")
        }
        DatabaseTarget::Postgres(url) => {
            let args = ["--format=custom", "--no-owner", "--no-privileges"];
            let file = format!("--file={}", dump.display());
            pg_tool(
                "pg_dump",
                url.expose(),
                &[&args[..], &[file.as_str()]].concat(),
            )
            .await?;
            ("postgres", "database/ocrd.pgdump")
        }
    };
    let database = append_file(&mut tar, member, &dump)?;
    std::fs::remove_file(&dump).map_err(io_at(&dump))?;

    let mut keys = blobs.list("").await?;
    keys.sort();
    let mut entries = Vec::with_capacity(keys.len());
    let copy = staging.path().join("blob");
    for key in keys {
        let key = BlobKey::parse(&key)?;
        let entry = match config.storage.kind {
            StorageKind::Local => match blobs.download_to(&key, &copy).await {
                Ok(()) => append_file(&mut tar, &format!("{BLOBS_DIR}{key}"), &copy)?,
                // Deleted since it was listed (with its task, after the database copy).
                Err(BlobError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            },
            StorageKind::S3 => match digest_blob(blobs, &key).await {
                Ok(entry) => entry,
                Err(BlobError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            },
        };
        entries.push(Entry {
            name: key.to_string(),
            ..entry
        });
    }

    let manifest = Manifest {
        format: FORMAT,
        ocrd_version: env!("CARGO_PKG_VERSION").to_owned(),
        schema_version: schema_version.clone(),
        created_at,
        backend: backend.to_owned(),
        database,
        storage: config.storage.kind,
        blobs: entries,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Io {
        path: partial.clone(),
        source: e.into(),
    })?;
    append(&mut tar, MANIFEST, json.len() as u64, json.as_slice())?;
    let file = tar
        .into_inner()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .map_err(io_at(&partial))?;
    file.sync_all().map_err(io_at(&partial))?;
    let bytes = file.metadata().map_err(io_at(&partial))?.len();
    let archive = dir.join(&name);
    std::fs::rename(&partial, &archive).map_err(io_at(&archive))?;

    let record = Backup {
        id: crate::db::models::new_id(),
        created_at: created_at.naive_utc(),
        archive: archive.display().to_string(),
        bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
        blobs: manifest.blobs.len() as i64,
        schema_version,
    };
    db.run(move |c| async move { Backup::record(c, record).await }.boxed())
        .await?;
    Ok(Created {
        archive,
        bytes,
        blobs: manifest.blobs.len(),
        took: started.elapsed(),
    })
}

/// Deletes all but the newest `keep` archives in `dir` (by the time in their names, which
/// sorts); the paths it removed.
pub fn prune(dir: &Path, keep: usize) -> Result<Vec<PathBuf>, BackupError> {
    let mut archives: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_at(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ocrd-backup-") && n.ends_with(".tar"))
        })
        .collect();
    archives.sort();
    let old = archives.len().saturating_sub(keep);
    let removed: Vec<PathBuf> = archives.drain(..old).collect();
    for path in &removed {
        std::fs::remove_file(path).map_err(io_at(path))?;
    }
    Ok(removed)
}

/// Reads the whole archive and checks every member against the manifest: present, the same
/// size and the same SHA-256, and nothing else. Blocking; the manifest when all is well.
pub fn verify(archive: &Path) -> Result<Manifest, BackupError> {
    let mut found = BTreeMap::new();
    let mut manifest = None;
    for_each_member(archive, |name, body| {
        if name == MANIFEST {
            let mut json = Vec::new();
            body.take(MAX_MANIFEST_BYTES).read_to_end(&mut json)?;
            manifest = Some(json);
        } else {
            let mut digest = Digesting::new(body);
            std::io::copy(&mut digest, &mut std::io::sink())?;
            found.insert(name.to_owned(), digest.entry(name));
        }
        Ok(())
    })?;
    let damaged = |member: &str, problem: String| BackupError::Damaged {
        archive: archive.to_owned(),
        member: member.to_owned(),
        problem,
    };
    let json = manifest.ok_or_else(|| {
        damaged(
            MANIFEST,
            "missing: the archive is incomplete or not an ocrd backup".into(),
        )
    })?;
    let manifest: Manifest = serde_json::from_slice(&json)
        .map_err(|e| damaged(MANIFEST, format!("unreadable ({e})")))?;
    if manifest.format != FORMAT {
        return Err(damaged(
            MANIFEST,
            format!(
                "archive format {} (ocrd {}); this ocrd reads format {FORMAT}",
                manifest.format, manifest.ocrd_version
            ),
        ));
    }
    let in_archive = manifest.storage == StorageKind::Local;
    let expected = std::iter::once(manifest.database.clone()).chain(
        manifest.blobs.iter().filter(|_| in_archive).map(|b| Entry {
            name: format!("{BLOBS_DIR}{}", b.name),
            ..b.clone()
        }),
    );
    for want in expected {
        match found.remove(&want.name) {
            None => return Err(damaged(&want.name, "missing from the archive".into())),
            Some(got) if got != want => {
                return Err(damaged(
                    &want.name,
                    format!(
                        "{} bytes with sha256 {}, but the manifest says {} bytes with sha256 {}: the file is corrupt",
                        got.bytes, got.sha256, want.bytes, want.sha256
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = found.keys().next() {
        return Err(damaged(extra, "not listed in the manifest".into()));
    }
    Ok(manifest)
}

/// A finished `restore`.
#[derive(Debug)]
pub struct Restored {
    pub manifest: Manifest,
    pub accounts: i64,
    pub tasks: i64,
    pub blobs: usize,
    /// Migrations applied after the restore, to bring an older archive up to this ocrd.
    pub migrated: Vec<String>,
    pub took: Duration,
}

/// Restores `archive` into the configured install. Refuses an archive from a newer schema or
/// of the other database backend, and an install that holds data unless `force`. Stop every
/// `serve`, `work` and `all-in-one` of the install first.
pub async fn restore(
    config: &Config,
    archive: &Path,
    force: bool,
) -> Result<Restored, BackupError> {
    let started = Instant::now();
    let manifest = {
        let archive = archive.to_owned();
        tokio::task::spawn_blocking(move || verify(&archive))
            .await
            .map_err(|e| DbError::Aborted(e.to_string()))??
    };
    let target = config.database_target()?;
    let backend = match target {
        DatabaseTarget::Sqlite(_) => "sqlite",
        DatabaseTarget::Postgres(_) => "postgres",
    };
    if manifest.backend != backend {
        return Err(BackupError::Refused(format!(
            "The archive holds a {} database and this install is configured for {backend}: restore it into a {} install.",
            manifest.backend, manifest.backend
        )));
    }
    if manifest.storage == StorageKind::S3 && config.storage.kind != StorageKind::S3 {
        return Err(BackupError::Refused(
            "The archive lists blobs kept in S3, and this install stores blobs locally: configure the bucket (storage.kind = \"s3\") to restore it.".into(),
        ));
    }
    let db = DbPool::from_config(config)?;
    let latest = db.latest_schema();
    if manifest.schema_version > latest {
        return Err(BackupError::Refused(format!(
            "The archive's schema {} is newer than this ocrd knows ({latest}): restore it with ocrd {} or later.",
            manifest.schema_version, manifest.ocrd_version
        )));
    }
    let blobs = Blobs::from_config(config)?;
    if !force {
        refuse_unless_empty(&db, &blobs, &manifest).await?;
    }
    if manifest.storage == StorageKind::S3 {
        check_bucket(&blobs, &manifest, force).await?;
    }

    let parent = archive
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new()
        .prefix(".ocrd-restore-")
        .tempdir_in(parent)
        .map_err(io_at(parent))?;
    let extracted = {
        let (archive, staging, manifest) = (
            archive.to_owned(),
            staging.path().to_owned(),
            manifest.clone(),
        );
        tokio::task::spawn_blocking(move || extract(&archive, &manifest, &staging))
            .await
            .map_err(|e| DbError::Aborted(e.to_string()))??
    };

    match target {
        DatabaseTarget::Sqlite(path) => {
            // Every connection closes before the file is replaced.
            drop(db);
            replace_sqlite(&extracted.database, &path)?;
        }
        DatabaseTarget::Postgres(url) => {
            drop(db);
            let args = [
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-privileges",
                "--single-transaction",
                "--exit-on-error",
            ];
            let file = extracted.database.display().to_string();
            pg_tool(
                "pg_restore",
                url.expose(),
                &[&args[..], &[file.as_str()]].concat(),
            )
            .await?;
        }
    }
    for (key, file) in &extracted.blobs {
        let body = tokio::fs::File::open(file).await.map_err(io_at(file))?;
        blobs
            .put_stream(key, tokio_util::io::ReaderStream::new(body))
            .await?;
    }
    let db = DbPool::from_config(config)?;
    let migrated = db.migrate().await?;
    let (accounts, tasks) = db
        .run(|c| async move { Backup::install_rows(c).await }.boxed())
        .await?;
    Ok(Restored {
        blobs: extracted.blobs.len(),
        manifest,
        accounts,
        tasks,
        migrated,
        took: started.elapsed(),
    })
}

async fn refuse_unless_empty(
    db: &DbPool,
    blobs: &Blobs,
    manifest: &Manifest,
) -> Result<(), BackupError> {
    if db.schema_version().await?.is_some() {
        let (accounts, tasks) = db
            .run(|c| async move { Backup::install_rows(c).await }.boxed())
            .await?;
        if accounts + tasks > 0 {
            return Err(BackupError::Refused(format!(
                "This install already holds {accounts} accounts and {tasks} tasks: restore into an empty install, or pass --force to replace its database."
            )));
        }
    }
    if manifest.storage == StorageKind::Local {
        let present = blobs.list("").await?.len();
        if present > 0 {
            return Err(BackupError::Refused(format!(
                "This install's storage already holds {present} blobs: restore into empty storage, or pass --force to write the archive's blobs over it."
            )));
        }
    }
    Ok(())
}

/// An S3 archive only lists the blobs: each must still be in the bucket, at its size.
async fn check_bucket(blobs: &Blobs, manifest: &Manifest, force: bool) -> Result<(), BackupError> {
    let mut missing = Vec::new();
    for entry in &manifest.blobs {
        let key = BlobKey::parse(&entry.name)?;
        match blobs.head(&key).await {
            Ok(size) if size == entry.bytes => {}
            Ok(_) | Err(BlobError::NotFound(_)) => missing.push(entry.name.as_str()),
            Err(e) => return Err(e.into()),
        }
    }
    if missing.is_empty() || force {
        return Ok(());
    }
    Err(BackupError::Refused(format!(
        "The bucket lacks {} of the archive's {} blobs, or holds other versions of them (first: {}): restore them from the bucket's versions or replica first, or pass --force to restore the database without them.",
        missing.len(),
        manifest.blobs.len(),
        missing[..missing.len().min(3)].join(", ")
    )))
}

struct Extracted {
    database: PathBuf,
    blobs: Vec<(BlobKey, PathBuf)>,
}

/// Unpacks the database and the blobs into `staging` (blob files by number: keys are not
/// file names to trust), checking each against the manifest again as it goes.
fn extract(archive: &Path, manifest: &Manifest, staging: &Path) -> Result<Extracted, BackupError> {
    let database = staging.join("database");
    let wanted: BTreeMap<String, &Entry> = manifest
        .blobs
        .iter()
        .map(|e| (format!("{BLOBS_DIR}{}", e.name), e))
        .collect();
    let mut blobs = Vec::new();
    let mut changed = None;
    for_each_member(archive, |name, body| {
        let to = if name == manifest.database.name {
            database.clone()
        } else if wanted.contains_key(name) {
            staging.join(format!("blob-{}", blobs.len()))
        } else {
            return Ok(());
        };
        let mut digest = Digesting::new(body);
        let mut out = std::fs::File::create(&to)?;
        std::io::copy(&mut digest, &mut out)?;
        out.sync_all()?;
        let want = wanted.get(name).copied().unwrap_or(&manifest.database);
        if digest.entry(&want.name) != *want && changed.is_none() {
            changed = Some(name.to_owned());
        }
        if let Some(key) = name.strip_prefix(BLOBS_DIR) {
            // Parsed before (the manifest was verified), so this cannot fail on our archives.
            match BlobKey::parse(key) {
                Ok(key) => blobs.push((key, to)),
                Err(_) => changed = changed.take().or_else(|| Some(name.to_owned())),
            }
        }
        Ok(())
    })?;
    if let Some(member) = changed {
        return Err(BackupError::Damaged {
            archive: archive.to_owned(),
            member,
            problem: "changed while it was being restored".into(),
        });
    }
    Ok(Extracted { database, blobs })
}

/// Puts the restored SQLite file in place: the old write-ahead log goes first (it belongs
/// to the old database), then the new file is renamed over the old one.
fn replace_sqlite(restored: &Path, path: &Path) -> Result<(), BackupError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    }
    let incoming = path.with_extension("restoring");
    std::fs::copy(restored, &incoming).map_err(io_at(&incoming))?;
    std::fs::File::open(&incoming)
        .and_then(|f| f.sync_all())
        .map_err(io_at(&incoming))?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let side = PathBuf::from(side);
        match std::fs::remove_file(&side) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(&side)(e)),
        }
    }
    std::fs::rename(&incoming, path).map_err(io_at(path))
}

/// Runs `pg_dump` or `pg_restore` against `url`. The password goes in `PGPASSWORD`, not on
/// the command line, where every local user could read it.
async fn pg_tool(tool: &'static str, url: &str, args: &[&str]) -> Result<(), BackupError> {
    let mut url = url::Url::parse(url).map_err(|e| BackupError::Tool {
        tool,
        message: format!("database.url is not a URL: {e}"),
    })?;
    let password = url.password().map(|p| {
        percent_encoding::percent_decode_str(p)
            .decode_utf8_lossy()
            .into_owned()
    });
    let _ = url.set_password(None);
    let mut command = std::process::Command::new(tool);
    command.args(args).arg(format!("--dbname={url}"));
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .map_err(|e| DbError::Aborted(e.to_string()))?
        .map_err(|e| BackupError::Tool {
            tool,
            message: if e.kind() == std::io::ErrorKind::NotFound {
                "not found on PATH: install PostgreSQL's client tools (Debian: postgresql-client), of the server's major version or newer".into()
            } else {
                e.to_string()
            },
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(BackupError::Tool {
        tool,
        message: format!("{} ({})", stderr.trim(), output.status),
    })
}

/// Size and SHA-256 of a blob in the store, read as a stream.
async fn digest_blob(blobs: &Blobs, key: &BlobKey) -> Result<Entry, BlobError> {
    let mut blob = blobs.get(key).await?;
    let mut hash = Sha256::new();
    let mut bytes = 0u64;
    while let Some(chunk) = blob.body.next().await {
        let chunk = chunk?;
        hash.update(&chunk);
        bytes += chunk.len() as u64;
    }
    Ok(Entry {
        name: key.to_string(),
        bytes,
        sha256: hex::encode(hash.finalize()),
    })
}

fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    path: &Path,
) -> Result<Entry, BackupError> {
    let file = std::fs::File::open(path).map_err(io_at(path))?;
    let size = file.metadata().map_err(io_at(path))?.len();
    append(tar, name, size, file)
}

/// Appends `size` bytes of `body` as the member `name` (long names use GNU extensions).
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    body: impl Read,
) -> Result<Entry, BackupError> {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(Utc::now().timestamp().max(0) as u64);
    let mut digest = Digesting::new(body.take(size));
    tar.append_data(&mut header, name, &mut digest)
        .map_err(|source| BackupError::Io {
            path: PathBuf::from(name),
            source,
        })?;
    let entry = digest.entry(name);
    if entry.bytes != size {
        return Err(BackupError::Io {
            path: PathBuf::from(name),
            source: std::io::Error::other("the file changed size while it was being archived"),
        });
    }
    Ok(entry)
}

/// Calls `f` with each member's name and body, in archive order.
fn for_each_member(
    archive: &Path,
    mut f: impl FnMut(&str, &mut dyn Read) -> std::io::Result<()>,
) -> Result<(), BackupError> {
    let file = std::fs::File::open(archive).map_err(io_at(archive))?;
    let mut tar = tar::Archive::new(std::io::BufReader::new(file));
    let mut last = String::from("the start of the archive");
    let damaged = |after: &str, e: std::io::Error| BackupError::Damaged {
        archive: archive.to_owned(),
        member: format!("the tar header after {after}"),
        problem: e.to_string(),
    };
    for member in tar.entries().map_err(|e| damaged(&last, e))? {
        let mut member = member.map_err(|e| damaged(&last, e))?;
        let name = member
            .path()
            .map_err(|e| damaged(&last, e))?
            .to_string_lossy()
            .into_owned();
        f(&name, &mut member).map_err(|e| BackupError::Damaged {
            archive: archive.to_owned(),
            member: name.clone(),
            problem: e.to_string(),
        })?;
        last = name;
    }
    Ok(())
}

/// A reader that hashes and counts what passes through it.
struct Digesting<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R: Read> Digesting<R> {
    fn new(inner: R) -> Self {
        Digesting {
            inner,
            hash: Sha256::new(),
            bytes: 0,
        }
    }

    fn entry(&self, name: &str) -> Entry {
        Entry {
            name: name.to_owned(),
            bytes: self.bytes,
            sha256: hex::encode(self.hash.clone().finalize()),
        }
    }
}

impl<R: Read> Read for Digesting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}
