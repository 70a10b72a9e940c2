//! HTTPS on the server's own listener: rustls with the Mozilla *intermediate* profile (TLS
//! 1.2 and 1.3; ECDHE with AES-GCM or ChaCha20-Poly1305; X25519MLKEM768, X25519, P-256,
//! P-384), and the certificate reloaded without a restart.
//!
//! The certificate sits behind a resolver that every handshake asks, so a reload changes what
//! the next connection gets and leaves open ones alone. [`watch`] reloads when the files change
//! (certbot renews by replacing them) or on SIGHUP; a broken new pair is logged and the old
//! one stays in service.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, NamedGroup};

/// How often the files are looked at.
const POLL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("server.tls_cert and server.tls_key are both needed")]
    Missing,
    #[error("reading {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{0}: no certificate in the file")]
    NoCertificate(PathBuf),
    #[error("{path}: the key cannot be used: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the key in {key} does not belong to the certificate in {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
}

/// The Mozilla intermediate profile on the aws-lc-rs provider.
fn provider() -> CryptoProvider {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.retain(|suite| {
        matches!(
            suite.suite(),
            CipherSuite::TLS13_AES_128_GCM_SHA256
                | CipherSuite::TLS13_AES_256_GCM_SHA384
                | CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
                | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                | CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        )
    });
    provider.kx_groups.retain(|group| {
        matches!(
            group.name(),
            NamedGroup::X25519MLKEM768
                | NamedGroup::X25519
                | NamedGroup::secp256r1
                | NamedGroup::secp384r1
        )
    });
    provider
}

/// The certificate in service, swapped on reload.
#[derive(Debug)]
pub struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

impl Certificates {
    pub fn load(cert: &Path, key: &Path) -> Result<Certificates, TlsError> {
        let current = load_pair(cert, key)?;
        Ok(Certificates {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(Arc::new(current)),
        })
    }

    /// Loads the files again; on failure the old pair stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load_pair(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
        Ok(())
    }

    fn stamp(&self) -> Option<[(SystemTime, u64); 2]> {
        let stamp = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        };
        Some([stamp(&self.cert)?, stamp(&self.key)?])
    }
}

fn load_pair(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| TlsError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    };
    let chain = CertificateDer::pem_slice_iter(&read(cert_path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Read {
            path: cert_path.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert_path.to_owned()));
    }
    let key_error = |reason: String| TlsError::Key {
        path: key_path.to_owned(),
        reason,
    };
    let key =
        PrivateKeyDer::from_pem_slice(&read(key_path)?).map_err(|e| key_error(e.to_string()))?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| key_error(e.to_string()))?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match().map_err(|_| TlsError::Mismatch {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
    })?;
    Ok(pair)
}

/// The TLS configuration of `server.tls_cert` and `tls_key`, reloaded while the server runs.
pub fn configure(server: &crate::config::ServerConfig) -> Result<rustls::ServerConfig, TlsError> {
    let (Some(cert), Some(key)) = (&server.tls_cert, &server.tls_key) else {
        return Err(TlsError::Missing);
    };
    let certificates = Arc::new(Certificates::load(cert, key)?);
    watch(&certificates);
    Ok(server_config(certificates))
}

/// The server's TLS configuration around `certificates`.
pub fn server_config(certificates: Arc<Certificates>) -> rustls::ServerConfig {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the intermediate profile is a valid rustls configuration");
    let mut config = config
        .with_no_client_auth()
        .with_cert_resolver(certificates);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// Reloads `certificates` when their files change or on SIGHUP, until nothing else holds them
/// (the server stopped).
pub fn watch(certificates: &Arc<Certificates>) {
    let weak: Weak<Certificates> = Arc::downgrade(certificates);
    let mut seen = certificates.stamp();
    tokio::spawn(async move {
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            let signalled = tokio::select! {
                _ = tokio::time::sleep(POLL) => false,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            };
            let Some(certificates) = weak.upgrade() else {
                return;
            };
            let stamp = certificates.stamp();
            if !signalled && stamp == seen {
                continue;
            }
            seen = stamp;
            match certificates.reload() {
                Ok(()) => {
                    tracing::info!(cert = %certificates.cert.display(), "TLS certificate reloaded")
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate not reloaded; the previous one stays in service")
                }
            }
        }
    });
}
