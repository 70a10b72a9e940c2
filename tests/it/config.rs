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
         [server]\nmetrics_token = \"scrape-secret\"\n[storage]\nkind = \"s3\"\nbucket = \"b\"\nsecret_access_key = \"aws-secret\"\n",
    )
    .unwrap();
    let debug = format!("{config:?}");
    let shown = config.to_redacted_toml();
    for secret in ["pg-secret", "redis-secret", "aws-secret", "scrape-secret"] {
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

#[test]
fn bad_edge_settings_are_refused_naming_their_key() {
    for (toml, key) in [
        (
            "[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
            "server.trusted_proxies",
        ),
        (
            "[server]\ntrusted_proxies = [\"nginx\"]\n",
            "server.trusted_proxies",
        ),
        ("[server]\ntls_cert = \"cert.pem\"\n", "server.tls_key"),
        (
            "[server]\nredirect_http = \"0.0.0.0:80\"\n",
            "server.redirect_http",
        ),
        (
            "[server]\ntls_cert = \"c\"\ntls_key = \"k\"\nredirect_http = \"0.0.0.0:80\"\npublic_url = \"http://ocr.example.com\"\n",
            "server.redirect_http",
        ),
        (
            "[server]\npublic_url = \"ocr.example.com\"\n",
            "server.public_url",
        ),
        (
            "[server]\npublic_url = \"ftp://ocr.example.com\"\n",
            "server.public_url",
        ),
        (
            "[server]\nallowed_hosts = [\" \"]\n",
            "server.allowed_hosts",
        ),
        ("[rate_limits]\napi_burst = 0\n", "rate_limits.api_burst"),
        (
            "[rate_limits]\nupload_bytes_per_minute = 1000\n",
            "rate_limits.upload_bytes_per_minute",
        ),
        // The switch that trusted_proxies replaced is gone, not silently ignored.
        (
            "[server]\ntrust_proxy_headers = true\n",
            "trust_proxy_headers",
        ),
        ("[server]\nproxy_headers = \"x-real-ip\"\n", "x-real-ip"),
    ] {
        let err = from_toml(toml).unwrap_err().to_string();
        assert!(err.contains(key), "{toml}: {err}");
    }
    // A bare address is one host; 0 turns a limit off.
    let config = from_toml(
        "[server]\ntrusted_proxies = [\"127.0.0.1\", \"::1\", \"10.0.0.0/8\"]\n[rate_limits]\napi_per_second = 0\napi_burst = 0\nupload_bytes_per_minute = 0\n",
    )
    .unwrap();
    assert_eq!(config.server.proxy_nets().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_broken_certificate_stops_the_server_from_starting_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let install = crate::install::Install::embedded(|c| {
        c.server.tls_cert = Some(cert.clone());
        c.server.tls_key = Some(key.clone());
    })
    .await;
    let start = || {
        ocrd::web::bind(
            "127.0.0.1:0",
            install.app.clone(),
            None,
            ocrd::web::Scope::Full,
        )
    };
    let err = start()
        .err()
        .expect("started without a certificate")
        .to_string();
    assert!(err.contains("cert.pem"), "{err}");
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(&key, "not a key").unwrap();
    let err = start()
        .err()
        .expect("started with a broken pair")
        .to_string();
    assert!(err.contains("TLS"), "{err}");
}
