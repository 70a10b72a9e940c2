//! Configuration loading and validation, without a process.

use figment::providers::{Format, Toml};
use ocrd::config::{Config, ConfigError, DatabaseTarget, Secret, StorageKind};

fn from_toml(text: &str) -> Result<Config, ConfigError> {
    Config::from_figment(Config::figment(None).unwrap().merge(Toml::string(text)))
}

#[test]
fn defaults_are_the_embedded_ones() {
    let config = from_toml("").unwrap();
    assert_eq!(
        config.database_target().unwrap(),
        DatabaseTarget::Sqlite("./data/ocrd.db".into())
    );
    assert_eq!(config.redis_url().unwrap(), None);
    assert_eq!(config.storage.kind, StorageKind::Local);
    assert_eq!(
        config.local_blob_dir(),
        std::path::PathBuf::from("./data/blobs")
    );
}

#[test]
fn the_shipped_config_file_is_valid_and_all_defaults() {
    let shipped = Config::from_figment(
        Config::figment(Some(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/ocrd.toml"
        ))))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        shipped.to_redacted_toml(),
        Config::default().to_redacted_toml()
    );
}

#[test]
fn unknown_keys_are_rejected() {
    let err = from_toml("[storage]\nbukket = \"x\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("bukket"), "{err}");
}

#[test]
fn secrets_never_show_in_debug_or_output() {
    let config = from_toml(
        "[database]\nurl = \"postgres://u:pg-secret@h/db\"\n[redis]\nurl = \"redis://:redis-secret@h:6379\"\n\
         [storage]\nkind = \"s3\"\nbucket = \"b\"\nsecret_access_key = \"aws-secret\"\n",
    )
    .unwrap();
    let debug = format!("{config:?}");
    let shown = config.to_redacted_toml();
    for secret in ["pg-secret", "redis-secret", "aws-secret"] {
        assert!(!debug.contains(secret), "{secret} in Debug: {debug}");
        assert!(!shown.contains(secret), "{secret} in output: {shown}");
    }
    assert_eq!(
        config.redis_url().unwrap(),
        Some("redis://:redis-secret@h:6379")
    );
    assert_eq!(Secret::new("plain-token").redacted(), "[redacted]");
    let query = Secret::new("postgres://u@h/db?sslmode=require&password=q-secret").redacted();
    assert_eq!(query, "postgres://u@h/db?sslmode=require&password=REDACTED");
}

#[test]
fn s3_needs_a_bucket_and_a_sane_endpoint() {
    let err = from_toml("[storage]\nkind = \"s3\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("storage.bucket"), "{err}");
    let err =
        from_toml("[storage]\nkind = \"s3\"\nbucket = \"b\"\nendpoint = \"http://minio:9000\"\n")
            .unwrap_err()
            .to_string();
    assert!(err.contains("allow_http"), "{err}");
    from_toml("[storage]\nkind = \"s3\"\nbucket = \"b\"\nendpoint = \"http://minio:9000\"\nallow_http = true\n").unwrap();
}
