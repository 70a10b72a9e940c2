//! Test harness: a private database per test (PostgreSQL cloned from a migrated template, or a
//! temporary SQLite file), a private bucket on the moto S3 server, a private Redis key prefix.
//!
//! `make test` brings the services up and exports where they are. A missing service fails the
//! test with a message that says how to bring it up; nothing is skipped.

use std::path::PathBuf;
use std::sync::OnceLock;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use ocrd::config::{Config, Secret, StorageKind};
use ocrd::db::DbPool;
use sha2::{Digest, Sha256};

pub const HOW_TO_RUN: &str = "run the suite with `make test`, which starts or finds the services";

pub fn postgres_admin_url() -> String {
    std::env::var("OCRDTEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("OCRDTEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A short random name part, safe in database, bucket and key names.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

fn with_database(url: &str, db: &str) -> String {
    let mut url = url::Url::parse(url).expect("OCRDTEST_DATABASE_URL is a URL");
    url.set_path(db);
    url.to_string()
}

pub async fn admin_connection() -> AsyncPgConnection {
    let url = postgres_admin_url();
    AsyncPgConnection::establish(&url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {url}: {e}\n  {HOW_TO_RUN}"))
}

/// The template database name changes whenever a migration does.
fn template_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
        let mut files: Vec<PathBuf> = walk(&dir);
        files.sort();
        let mut hash = Sha256::new();
        for f in files {
            hash.update(f.strip_prefix(&dir).unwrap().to_string_lossy().as_bytes());
            hash.update(std::fs::read(&f).unwrap());
        }
        format!("ocrd_test_tmpl_{}", &hex::encode(hash.finalize())[..16])
    })
}

/// Every file below `dir`.
pub fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Creates the migrated template once. An advisory lock makes this safe across test processes.
async fn ensure_template(admin: &mut AsyncPgConnection) {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    let name = template_name();
    admin
        .batch_execute("SELECT pg_advisory_lock(727274)")
        .await
        .unwrap();
    let exists: i64 = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM pg_database WHERE datname = '{name}'"
    ))
    .get_result::<Count>(admin)
    .await
    .unwrap()
    .n;
    if exists == 0 {
        let building = format!("{name}_building");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {building}"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {building}"))
            .await
            .unwrap();
        let pool = DbPool::postgres(&with_database(&postgres_admin_url(), &building), 1).unwrap();
        pool.migrate()
            .await
            .expect("migrating the template database");
        drop(pool);
        admin
            .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {name}"))
            .await
            .unwrap();
    }
    admin
        .batch_execute("SELECT pg_advisory_unlock(727274)")
        .await
        .unwrap();

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
}

/// A private, migrated database for one test, removed when dropped.
pub struct TestDb {
    pub pool: DbPool,
    /// What `database.url` would be set to, for processes that use this database.
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Postgres(String),
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
}

impl TestDb {
    pub async fn postgres() -> TestDb {
        let mut admin = admin_connection().await;
        ensure_template(&mut admin).await;
        let name = unique("ocrd_test_");
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {name} TEMPLATE {}",
                template_name()
            ))
            .await
            .unwrap();
        let url = with_database(&postgres_admin_url(), &name);
        TestDb {
            pool: DbPool::postgres(&url, 4).unwrap(),
            url,
            cleanup: Cleanup::Postgres(name),
        }
    }

    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ocrd.db");
        let pool = DbPool::sqlite(&path, 4).unwrap();
        pool.migrate().await.expect("migrating SQLite");
        TestDb {
            pool,
            url: format!("sqlite://{}", path.display()),
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// An empty PostgreSQL database (not migrated), dropped with the returned guard.
    pub async fn postgres_empty() -> (String, TestDb) {
        let mut admin = admin_connection().await;
        let name = unique("ocrd_test_empty_");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = with_database(&postgres_admin_url(), &name);
        let guard = TestDb {
            pool: DbPool::postgres(&url, 1).unwrap(),
            url: url.clone(),
            cleanup: Cleanup::Postgres(name),
        };
        (url, guard)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Cleanup::Postgres(name) = &self.cleanup {
            let name = name.clone();
            // Drop runs inside the test's runtime; do the async work on a thread of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let mut admin = admin_connection().await;
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                });
            })
            .join();
        }
    }
}

/// The moto S3 server `make test` started, with its KMS key.
pub struct S3Server {
    pub endpoint: String,
    pub kms_key_id: String,
}

pub fn s3_server() -> S3Server {
    let get = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set, so there is no S3 test server (moto).\n  {HOW_TO_RUN}")
        })
    };
    S3Server {
        endpoint: get("OCRDTEST_S3_ENDPOINT"),
        kms_key_id: get("OCRDTEST_KMS_KEY_ID"),
    }
}

/// A configuration on a fresh bucket of the moto server, with SSE-KMS under its key.
pub async fn s3_config() -> Config {
    let server = s3_server();
    let bucket = unique("ocrd-test-");
    let response = reqwest::Client::new()
        .put(format!("{}/{bucket}", server.endpoint))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "moto at {} is not answering: {e}\n  {HOW_TO_RUN}",
                server.endpoint
            )
        });
    assert!(
        response.status().is_success(),
        "creating bucket {bucket}: {}",
        response.status()
    );
    let mut config = Config::default();
    config.storage.kind = StorageKind::S3;
    config.storage.bucket = Some(bucket);
    config.storage.endpoint = Some(server.endpoint);
    config.storage.region = Some("us-east-1".into());
    config.storage.kms_key_id = Some(server.kms_key_id);
    config.storage.path_style = true;
    config.storage.allow_http = true;
    config.storage.access_key_id = Some("test".into());
    config.storage.secret_access_key = Secret::new("test");
    config
}

/// Runs one async test body against both database backends.
#[macro_export]
macro_rules! both_backends {
    ($(async fn $name:ident($db:ident: &TestDb) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn body($db: &$crate::support::TestDb) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    body(&$crate::support::TestDb::postgres().await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    body(&$crate::support::TestDb::sqlite().await).await;
                }
            }
        )*
    };
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A well-formed PNG declaring `width`×`height` whose data is a single byte: a decompression
/// bomb in miniature. A decoder that trusts the header allocates width × height × 3 bytes.
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    fn chunk(png: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let body = [kind, data].concat();
        png.extend_from_slice(&body);
        png.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    // zlib: header, one stored block holding one zero byte, Adler-32 of that byte.
    chunk(
        &mut png,
        b"IDAT",
        &[
            0x78, 0x01, 0x01, 0x01, 0x00, 0xfe, 0xff, 0x00, 0x00, 0x01, 0x00, 0x01,
        ],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

/// The password the tests' accounts register with.
pub const PASSWORD: &str = "a long enough passphrase";

/// Registers `email` at `base` and signs in with `client` (which keeps the cookie); the
/// session's CSRF token.
pub async fn register_and_sign_in(base: &str, client: &reqwest::Client, email: &str) -> String {
    let response = client
        .post(format!("{base}/api/auth/register"))
        .json(&serde_json::json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let response = client
        .post(format!("{base}/api/auth/login"))
        .json(&serde_json::json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    body["csrf_token"].as_str().unwrap().to_owned()
}

/// Creates an API token named `name` from a signed-in `client` (its CSRF token `csrf`); the
/// token.
pub async fn create_token(base: &str, client: &reqwest::Client, csrf: &str, name: &str) -> String {
    let created: serde_json::Value = client
        .post(format!("{base}/api/tokens"))
        .header("X-CSRF-Token", csrf)
        .json(&serde_json::json!({"name": name}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {created}"))
        .to_owned()
}

/// A small white PNG: a valid upload that needs no recognition time.
pub fn tiny_png() -> Vec<u8> {
    let image = image::RgbImage::from_pixel(8, 8, image::Rgb([255, 255, 255]));
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png
}

/// `GET url` with `client`, answered as JSON.
pub async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

/// Keeps this test process's log records for the console's log view, as `ocrd` processes do
/// (`ocrd::telemetry::init`), without printing them.
pub fn keep_logs() {
    use tracing_subscriber::layer::SubscriberExt;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::registry().with(ocrd::logs::LogLayer);
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// A sample of the server at `base`'s `/metrics` (`name{labels}` as printed); 0 when absent.
pub async fn metric(base: &str, series: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}
