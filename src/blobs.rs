//! The blob port: uploads and results in S3 (with SSE-KMS) or in a local directory.
//!
//! Everything goes through [`Blobs`], built once from the configuration; nothing else knows which
//! store is behind it. Keys are typed ([`BlobKey`]) so their layout lives in one place. Bodies
//! stream in both directions: a put never holds more than a few multipart parts in memory.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{Datelike, NaiveDateTime};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};
use sha2::{Digest, Sha256};
use url::Url;

use crate::config::{Config, StorageKind};

/// Bodies up to this size go up in one PUT; larger ones as multipart parts of this size.
pub const PART_SIZE: usize = 5 << 20;
/// Parts in flight at once during a multipart upload (bounds memory to about this many parts).
const PARTS_IN_FLIGHT: usize = 2;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {0} not found")]
    NotFound(String),
    #[error("invalid storage configuration: {0}")]
    Config(String),
    /// The body being uploaded failed (client went away, a size limit was hit…).
    #[error("upload body: {0}")]
    Body(BoxError),
    #[error("blob storage: {0}")]
    Store(object_store::Error),
    /// Writing the local copy of a blob failed (the disk, not the store).
    #[error("local copy: {0}")]
    Local(std::io::Error),
}

impl From<object_store::Error> for BlobError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { path, .. } => BlobError::NotFound(path),
            e => BlobError::Store(e),
        }
    }
}

/// Where a blob lives. Constructed only by the layouts below or from a key stored in the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobKey(Path);

impl BlobKey {
    /// `uploads/{user_id}/{yyyy}/{mm}/{dd}/{file_id}/{sanitized filename}`
    pub fn upload(user_id: &str, at: NaiveDateTime, file_id: &str, filename: &str) -> BlobKey {
        Self::dated(
            "uploads",
            user_id,
            at,
            file_id,
            &sanitize_filename(filename),
        )
    }

    /// `results/{user_id}/{yyyy}/{mm}/{dd}/{task_id}/result.{ext}`
    pub fn result(user_id: &str, at: NaiveDateTime, task_id: &str, ext: &str) -> BlobKey {
        Self::dated("results", user_id, at, task_id, &format!("result.{ext}"))
    }

    /// `results/{user_id}/{yyyy}/{mm}/{dd}/{task_id}/pages/{page:05}.json`: a finished page of a
    /// task still running, so that a resumed task starts after it. Pages count from 1.
    pub fn checkpoint(user_id: &str, at: NaiveDateTime, task_id: &str, page: usize) -> BlobKey {
        let dir = Self::checkpoints(user_id, at, task_id);
        BlobKey(Path::from(format!("{dir}{page:05}.json")))
    }

    /// The prefix of a task's checkpoints, ending in `/`.
    pub fn checkpoints(user_id: &str, at: NaiveDateTime, task_id: &str) -> String {
        let result = Self::dated("results", user_id, at, task_id, "pages");
        format!("{}/", result.as_str())
    }

    fn dated(root: &str, user: &str, at: NaiveDateTime, id: &str, name: &str) -> BlobKey {
        BlobKey(Path::from_iter([
            root,
            user,
            &format!("{:04}", at.year()),
            &format!("{:02}", at.month()),
            &format!("{:02}", at.day()),
            id,
            name,
        ]))
    }

    /// A key read back from the database.
    pub fn parse(key: &str) -> Result<BlobKey, BlobError> {
        Path::parse(key)
            .map(BlobKey)
            .map_err(|e| BlobError::Config(format!("bad blob key {key:?}: {e}")))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_ref()
    }
}

impl std::fmt::Display for BlobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A file name safe in any object store and shell: ASCII letters, digits, `.`, `-` and `_`,
/// at most 100 characters, never hidden, never empty. The original name is kept in the database.
pub fn sanitize_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let mut clean = String::with_capacity(base.len());
    for ch in base.chars() {
        let ch = if ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_') {
            ch
        } else {
            '_'
        };
        // Collapse runs of replacement characters.
        if !(ch == '_' && clean.ends_with('_')) {
            clean.push(ch);
        }
    }
    let clean = clean.trim_start_matches('.');
    let clean = if clean.len() > 100 {
        // Keep the extension, which tells people (and tools) what the file is.
        match clean.rfind('.').filter(|&dot| clean.len() - dot <= 10) {
            Some(dot) => format!("{}{}", &clean[..100 - (clean.len() - dot)], &clean[dot..]),
            None => clean[..100].to_string(),
        }
    } else {
        clean.to_string()
    };
    if clean.is_empty() || clean.chars().all(|c| c == '.') {
        "file".into()
    } else {
        clean
    }
}

/// Size and digest of a blob that was just written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub size: u64,
    pub sha256: String,
}

/// A blob being read: its size, and its bytes as a stream.
pub struct BlobStream {
    pub size: u64,
    pub body: BoxStream<'static, Result<Bytes, BlobError>>,
}

#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// Set on S3, which can presign URLs.
    s3: Option<Arc<AmazonS3>>,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blobs({})", self.store)
    }
}

impl Blobs {
    pub fn from_config(config: &Config) -> Result<Blobs, BlobError> {
        match config.storage.kind {
            StorageKind::Local => Self::local(&config.local_blob_dir()),
            StorageKind::S3 => Self::s3(config),
        }
    }

    /// A local directory, created if missing.
    pub fn local(dir: &std::path::Path) -> Result<Blobs, BlobError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| BlobError::Config(format!("storage.path {}: {e}", dir.display())))?;
        let store = LocalFileSystem::new_with_prefix(dir)?.with_automatic_cleanup(true);
        Ok(Blobs {
            store: Arc::new(store),
            s3: None,
        })
    }

    /// S3 or any S3-compatible endpoint. Standard `AWS_*` variables fill in what the
    /// configuration leaves out (credentials, region).
    pub fn s3(config: &Config) -> Result<Blobs, BlobError> {
        let s = &config.storage;
        let bucket = s
            .bucket
            .as_deref()
            .filter(|b| !b.trim().is_empty())
            .ok_or_else(|| BlobError::Config("storage.bucket is required for S3".into()))?;
        // A short retry budget inside the client: the worker retries whole steps with its own
        // configured backoff, and an upload request should not hang for minutes.
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 3,
            retry_timeout: Duration::from_secs(15),
        };
        let client = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(120));
        let mut builder = AmazonS3Builder::from_env()
            .with_retry(retry)
            .with_client_options(client)
            .with_bucket_name(bucket)
            .with_virtual_hosted_style_request(!s.path_style)
            // ocrd deletes one key at a time: a plain DELETE is one request either way, and
            // needs only s3:DeleteObject on that key on every S3-compatible store (some lack
            // multi-object delete, or authorise it against the bucket).
            .with_disable_bulk_delete(true)
            .with_allow_http(s.allow_http);
        if let Some(region) = &s.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &s.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(key_id) = &s.access_key_id {
            builder = builder.with_access_key_id(key_id);
        }
        if !s.secret_access_key.is_empty() {
            builder = builder.with_secret_access_key(s.secret_access_key.expose());
        }
        if let Some(kms_key) = s.kms_key_id.as_deref().filter(|k| !k.is_empty()) {
            builder = builder.with_sse_kms_encryption(kms_key);
        }
        let s3 = Arc::new(builder.build()?);
        Ok(Blobs {
            store: s3.clone(),
            s3: Some(s3),
        })
    }

    /// Fails unless the bucket (or directory) can be listed: a start-up and readiness check.
    pub async fn check(&self) -> Result<(), BlobError> {
        let probe = Path::from("ocrd-readiness-probe");
        match self.store.list(Some(&probe)).next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(e.into()),
        }
    }

    /// Streams `body` into `key`, computing its size and sha256 on the way. Small bodies go up in
    /// one PUT, larger ones as a multipart upload that is aborted if the body fails.
    pub async fn put_stream<S, E>(&self, key: &BlobKey, body: S) -> Result<Stored, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: Into<BoxError>,
    {
        let mut body = std::pin::pin!(body);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut pending: Vec<Bytes> = Vec::new();
        let mut pending_len = 0usize;
        let mut upload: Option<WriteMultipart> = None;

        let outcome: Result<(), BlobError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| BlobError::Body(e.into()))?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                if let Some(writer) = upload.as_mut() {
                    writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                    writer.put(chunk);
                    continue;
                }
                pending_len += chunk.len();
                pending.push(chunk);
                if pending_len >= PART_SIZE {
                    let parts = self.store.put_multipart(&key.0).await?;
                    let mut writer = WriteMultipart::new_with_chunk_size(parts, PART_SIZE);
                    for chunk in pending.drain(..) {
                        writer.put(chunk);
                    }
                    upload = Some(writer);
                }
            }
            Ok(())
        }
        .await;

        match (outcome, upload) {
            (Err(e), Some(writer)) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(key = %key, error = %abort, "could not abort multipart upload");
                }
                return Err(e);
            }
            (Err(e), None) => return Err(e),
            (Ok(()), Some(writer)) => {
                writer.finish().await?;
            }
            (Ok(()), None) => {
                self.store
                    .put(&key.0, PutPayload::from_iter(pending))
                    .await?;
            }
        }
        Ok(Stored {
            size,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    pub async fn put_bytes(&self, key: &BlobKey, bytes: Bytes) -> Result<Stored, BlobError> {
        self.put_stream(key, futures::stream::iter([Ok::<_, BoxError>(bytes)]))
            .await
    }

    pub async fn get(&self, key: &BlobKey) -> Result<BlobStream, BlobError> {
        let got = self.store.get(&key.0).await?;
        let size = got.meta.size;
        Ok(BlobStream {
            size,
            body: got.into_stream().map_err(BlobError::from).boxed(),
        })
    }

    /// Streams a blob into a local file (created or truncated), without holding it in memory.
    pub async fn download_to(&self, key: &BlobKey, to: &std::path::Path) -> Result<(), BlobError> {
        use tokio::io::AsyncWriteExt;
        let mut blob = self.get(key).await?;
        let mut out = tokio::fs::File::create(to)
            .await
            .map_err(BlobError::Local)?;
        while let Some(chunk) = blob.body.next().await {
            out.write_all(&chunk?).await.map_err(BlobError::Local)?;
        }
        out.flush().await.map_err(BlobError::Local)
    }

    /// Reads a whole blob; for results and other small objects only.
    pub async fn get_bytes(&self, key: &BlobKey) -> Result<Bytes, BlobError> {
        Ok(self.store.get(&key.0).await?.bytes().await?)
    }

    pub async fn head(&self, key: &BlobKey) -> Result<u64, BlobError> {
        Ok(self.store.head(&key.0).await?.size)
    }

    /// Deletes the blob; deleting one that is already gone succeeds.
    pub async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        match self.store.delete(&key.0).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every key under `prefix` (all keys for `""`): for audits and tests, not hot paths.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        let prefix = (!prefix.is_empty()).then(|| Path::from(prefix));
        self.store
            .list(prefix.as_ref())
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .map_err(BlobError::from)
    }

    /// A presigned GET URL valid for `ttl`, on S3; `None` where the store cannot presign.
    pub async fn presign_get(
        &self,
        key: &BlobKey,
        ttl: Duration,
    ) -> Result<Option<Url>, BlobError> {
        match &self.s3 {
            Some(s3) => Ok(Some(
                s3.signed_url(object_store::signer::Method::GET, &key.0, ttl)
                    .await?,
            )),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 3, 7)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap()
    }

    #[test]
    fn key_layouts() {
        assert_eq!(
            BlobKey::upload("u1", at(), "f1", "My Scan.PDF").as_str(),
            "uploads/u1/2026/03/07/f1/My_Scan.PDF"
        );
        assert_eq!(
            BlobKey::result("u1", at(), "t1", "html").as_str(),
            "results/u1/2026/03/07/t1/result.html"
        );
        let parsed = BlobKey::parse("results/u1/2026/03/07/t1/result.html").unwrap();
        assert_eq!(parsed, BlobKey::result("u1", at(), "t1", "html"));
    }

    #[test]
    fn filenames_are_sanitized() {
        assert_eq!(sanitize_filename("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_filename("C:\\Users\\me\\scan 1.png"), "scan_1.png");
        assert_eq!(sanitize_filename(".hidden"), "hidden");
        assert_eq!(sanitize_filename("résumé (v2).pdf"), "r_sum_v2_.pdf");
        assert_eq!(sanitize_filename(""), "file");
        assert_eq!(sanitize_filename(".."), "file");
        assert_eq!(sanitize_filename("文書.tiff"), "_.tiff");
        let long = format!("{}.jpeg", "a".repeat(300));
        let clean = sanitize_filename(&long);
        assert_eq!(clean.len(), 100);
        assert!(clean.ends_with("a.jpeg"));
        assert_eq!(sanitize_filename(&"b".repeat(300)).len(), 100);
    }
}
