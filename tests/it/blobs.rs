//! Blob storage on the moto S3 server (with SSE-KMS) and on a local directory.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use ocrd::blobs::{BlobError, BlobKey, Blobs, PART_SIZE};
use ocrd::db::models::now;
use sha2::{Digest, Sha256};

use crate::support::{s3_config, s3_server, unique};

/// Deterministic pseudo-random bytes (xorshift), so a failure is reproducible.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn chunked(
    data: &[u8],
    size: usize,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + use<> {
    let chunks: Vec<_> = data
        .chunks(size)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(chunks)
}

async fn read_all(blobs: &Blobs, key: &BlobKey) -> Vec<u8> {
    let got = blobs.get(key).await.unwrap();
    let mut body = got.body;
    let mut out = Vec::with_capacity(got.size as usize);
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(out.len() as u64, got.size);
    out
}

/// What S3 says about an object's encryption, read over HTTP through a presigned GET
/// (`ObjectMeta` does not carry the SSE headers).
pub async fn sse_headers(blobs: &Blobs, key: &BlobKey) -> (String, String) {
    let url = blobs
        .presign_get(key, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let response = reqwest::get(url).await.unwrap();
    assert!(
        response.status().is_success(),
        "presigned GET: {}",
        response.status()
    );
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    (
        header("x-amz-server-side-encryption"),
        header("x-amz-server-side-encryption-aws-kms-key-id"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_put_is_kms_encrypted_then_get_head_delete() {
    let config = s3_config().await;
    let blobs = Blobs::from_config(&config).unwrap();
    blobs.check().await.unwrap();
    let key = BlobKey::upload(&unique("u"), now(), &unique("f"), "Scan 01 (final).png");
    assert!(key.as_str().ends_with("/Scan_01_final_.png"), "{key}");

    let data = noise(200_000, 1);
    let stored = blobs
        .put_stream(&key, chunked(&data, 64 << 10))
        .await
        .unwrap();
    assert_eq!(stored.size, data.len() as u64);
    assert_eq!(stored.sha256, hex::encode(Sha256::digest(&data)));

    let (sse, key_id) = sse_headers(&blobs, &key).await;
    assert_eq!(sse, "aws:kms");
    assert_eq!(key_id, s3_server().kms_key_id);

    assert_eq!(read_all(&blobs, &key).await, data);
    assert_eq!(blobs.head(&key).await.unwrap(), data.len() as u64);
    blobs.delete(&key).await.unwrap();
    assert!(matches!(blobs.get(&key).await, Err(BlobError::NotFound(_))));
    assert!(matches!(
        blobs.head(&key).await,
        Err(BlobError::NotFound(_))
    ));
    blobs.delete(&key).await.expect("deleting twice is fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_multipart_put_of_12_mb_streams_and_is_encrypted() {
    let config = s3_config().await;
    let blobs = Blobs::from_config(&config).unwrap();
    let key = BlobKey::result(&unique("u"), now(), &unique("t"), "pdf");
    let data = noise(12 << 20, 2);
    assert!(data.len() > 2 * PART_SIZE, "must take the multipart path");

    let stored = blobs
        .put_stream(&key, chunked(&data, 256 << 10))
        .await
        .unwrap();
    assert_eq!(stored.sha256, hex::encode(Sha256::digest(&data)));
    let (sse, key_id) = sse_headers(&blobs, &key).await;
    assert_eq!(
        (sse.as_str(), key_id.as_str()),
        ("aws:kms", s3_server().kms_key_id.as_str())
    );
    assert!(
        read_all(&blobs, &key).await == data,
        "multipart round trip changed the bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_failed_body_leaves_no_object() {
    let config = s3_config().await;
    let blobs = Blobs::from_config(&config).unwrap();
    let key = BlobKey::upload("u", now(), &unique("f"), "big.pdf");
    let good = noise(PART_SIZE + 1024, 3);
    let body = chunked(&good, 1 << 20).chain(futures::stream::iter([Err(std::io::Error::other(
        "client went away",
    ))]));
    let err = blobs.put_stream(&key, body).await.unwrap_err();
    assert!(matches!(err, BlobError::Body(_)), "{err}");
    assert!(matches!(
        blobs.head(&key).await,
        Err(BlobError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_check_fails_for_a_missing_bucket() {
    let mut config = s3_config().await;
    config.storage.bucket = Some(unique("missing-"));
    let blobs = Blobs::from_config(&config).unwrap();
    assert!(blobs.check().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_store_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::local(&dir.path().join("blobs")).unwrap();
    blobs.check().await.unwrap();
    let key = BlobKey::result("user-1", now(), "task-1", "txt");
    let data = noise(PART_SIZE * 2 + 7, 4);
    let stored = blobs
        .put_stream(&key, chunked(&data, 1 << 20))
        .await
        .unwrap();
    assert_eq!(stored.size, data.len() as u64);
    assert!(dir.path().join("blobs").join(key.as_str()).is_file());
    assert!(read_all(&blobs, &key).await == data);
    assert!(
        blobs
            .presign_get(&key, Duration::from_secs(60))
            .await
            .unwrap()
            .is_none()
    );
    let small = BlobKey::result("user-1", now(), "task-1", "json");
    blobs
        .put_bytes(&small, Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert_eq!(blobs.get_bytes(&small).await.unwrap().as_ref(), b"{}");
    blobs.delete(&key).await.unwrap();
    assert!(matches!(blobs.get(&key).await, Err(BlobError::NotFound(_))));
    blobs.delete(&key).await.unwrap();
}
