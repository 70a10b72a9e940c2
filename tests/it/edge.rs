//! The edge over real sockets: built-in TLS (rustls clients, a hand-made TLS 1.1 hello, a
//! certificate replaced on disk), security headers, trusted proxies and forged headers, the
//! Host allowlist, rate limits per class (and shared by two servers on one Redis), login
//! lockout, token scopes, the operations listener, and a real nginx in front.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};

use crate::install::{Install, free_port, ocrd_bin, wait_for};
use crate::support::unique;

const SECURITY_HEADERS: [&str; 7] = [
    "content-security-policy",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "permissions-policy",
    "cross-origin-opener-policy",
    "cross-origin-resource-policy",
];

// ---------------------------------------------------------------------------------------
// Certificates, made with the openssl command line.

pub(crate) struct Ca {
    dir: PathBuf,
    pub(crate) cert: PathBuf,
    key: PathBuf,
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("running openssl (Debian package `openssl`), needed to make test certificates");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Ca {
    pub(crate) fn new(dir: &Path) -> Ca {
        let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
            "-days",
            "2",
            "-subj",
            "/CN=ocrd test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        Ca {
            dir: dir.to_owned(),
            cert,
            key,
        }
    }

    /// A server certificate for localhost and 127.0.0.1: (certificate, key) paths.
    pub(crate) fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let d = &self.dir;
        let (cert, key, csr, ext) = (
            d.join(format!("{name}.pem")),
            d.join(format!("{name}.key")),
            d.join(format!("{name}.csr")),
            d.join(format!("{name}.ext")),
        );
        std::fs::write(
            &ext,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            csr.to_str().unwrap(),
            "-subj",
            "/CN=localhost",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            csr.to_str().unwrap(),
            "-CA",
            self.cert.to_str().unwrap(),
            "-CAkey",
            self.key.to_str().unwrap(),
            "-CAcreateserial",
            "-out",
            cert.to_str().unwrap(),
            "-days",
            "2",
            "-extfile",
            ext.to_str().unwrap(),
        ]);
        (cert, key)
    }

    pub(crate) fn client_config(
        &self,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(&self.cert).unwrap();
        use rustls::pki_types::pem::PemObject;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[version])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

pub(crate) type Tls = tokio_rustls::client::TlsStream<TcpStream>;

pub(crate) async fn tls_connect(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Tls {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// One HTTP/1.1 GET over any stream: (status line, whole response).
async fn raw_get<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    path: &str,
) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A ClientHello for ECDHE-ECDSA-AES128-GCM (and an old CBC suite) with `version` as the only
/// version offered (no supported_versions extension): 0x0302 is TLS 1.1, 0x0303 TLS 1.2.
fn client_hello(version: u16) -> Vec<u8> {
    let mut extensions = Vec::new();
    let mut ext = |kind: u16, body: &[u8]| {
        extensions.extend(kind.to_be_bytes());
        extensions.extend((body.len() as u16).to_be_bytes());
        extensions.extend(body);
    };
    let host = b"localhost";
    let mut sni = vec![0, (host.len() + 3) as u8, 0, 0, host.len() as u8];
    sni.extend(host);
    ext(0x0000, &sni);
    ext(0x000a, &[0, 4, 0x00, 0x1d, 0x00, 0x17]); // groups: x25519, secp256r1
    ext(0x000b, &[1, 0]); // point formats: uncompressed
    ext(0x000d, &[0, 4, 0x04, 0x03, 0x08, 0x04]); // signatures: ecdsa_p256_sha256, rsa_pss_sha256
    ext(0xff01, &[0]); // renegotiation_info
    let mut hello = Vec::new();
    hello.extend(version.to_be_bytes());
    hello.extend([7u8; 32]); // random
    hello.push(0); // session id
    hello.extend([0, 4, 0xc0, 0x2b, 0xc0, 0x09]); // suites
    hello.extend([1, 0]); // compression: null
    hello.extend((extensions.len() as u16).to_be_bytes());
    hello.extend(extensions);
    let mut handshake = vec![1, 0, (hello.len() >> 8) as u8, hello.len() as u8];
    handshake.extend(hello);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

/// The first byte the server answers `hello` with: 0x16 a handshake (ServerHello), 0x15 an
/// alert, `None` a closed connection.
async fn answer_to(addr: std::net::SocketAddr, hello: &[u8]) -> Option<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(hello).await.unwrap();
    let mut first = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut first)).await {
        Ok(Ok(1)) => Some(first[0]),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_tls_speaks_1_3_and_1_2_only_and_reloads_its_certificate_under_open_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path());
    let (first_cert, first_key) = ca.issue("first");
    let (cert, key) = (dir.path().join("live.pem"), dir.path().join("live.key"));
    std::fs::copy(&first_cert, &cert).unwrap();
    std::fs::copy(&first_key, &key).unwrap();
    let install = Install::embedded(|c| {
        c.server.tls_cert = Some(cert.clone());
        c.server.tls_key = Some(key.clone());
    })
    .await;
    let addr = install.serve();

    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut tls = tls_connect(addr, ca.client_config(version)).await;
        assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
        let answer = raw_get(&mut tls, "/healthz").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{version:?}: {answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("strict-transport-security: max-age=63072000"),
            "{answer}"
        );
    }
    // The same hello, once as TLS 1.2 (answered) and once as TLS 1.1 (refused with an alert).
    assert_eq!(
        answer_to(addr, &client_hello(0x0303)).await,
        Some(0x16),
        "a TLS 1.2 hello gets a ServerHello"
    );
    let old = answer_to(addr, &client_hello(0x0302)).await;
    assert!(
        old != Some(0x16),
        "TLS 1.1 must be refused, got record type {old:?}"
    );
    // Garbage where a hello belongs: the connection ends, the listener stays.
    let mut junk = TcpStream::connect(addr).await.unwrap();
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _ = junk
        .write_all(&[&[0x16, 0x03, 0x01, 0x10, 0x00][..], &garbage].concat())
        .await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), junk.read_to_end(&mut rest)).await;
    assert!(
        rest.first().is_none_or(|b| *b == 0x15),
        "garbage got {rest:?}"
    );
    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    let answer = raw_get(&mut plain, "/healthz").await;
    assert!(
        !answer.starts_with("HTTP/"),
        "plain HTTP was answered: {answer}"
    );

    // A WebSocket over TLS, open while the certificate is replaced on disk.
    let token = crate::edge::token_for(&install, "read,write").await;
    let tls = tls_connect(addr, ca.client_config(&rustls::version::TLS13)).await;
    let served = |tls: &Tls| {
        tls.get_ref().1.peer_certificates().unwrap()[0]
            .clone()
            .into_owned()
    };
    let original = served(&tls);
    let mut request = "wss://localhost/ws".into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::client_async(request, tls)
        .await
        .expect("WebSocket over TLS");

    let (second_cert, second_key) = ca.issue("second");
    // As certbot does: new files moved into place.
    for (from, to) in [(&second_key, &key), (&second_cert, &cert)] {
        let staged = to.with_extension("new");
        std::fs::copy(from, &staged).unwrap();
        std::fs::rename(&staged, to).unwrap();
    }
    let config = ca.client_config(&rustls::version::TLS13);
    wait_for(
        Duration::from_secs(30),
        "the new certificate on new connections",
        || {
            let config = config.clone();
            let original = original.clone();
            async move {
                let tls = tls_connect(addr, config).await;
                (served(&tls) != original).then_some(())
            }
        },
    )
    .await;
    // The socket opened under the old certificate still answers.
    socket
        .send(Message::Ping(b"still there?".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(message) = socket.next().await {
            if let Ok(Message::Pong(body)) = message {
                return body.to_vec();
            }
        }
        Vec::new()
    })
    .await
    .expect("a pong on the old socket");
    assert_eq!(pong, b"still there?");

    // A broken pair is refused and the working certificate stays.
    std::fs::write(&key, "not a key").unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut tls = tls_connect(addr, ca.client_config(&rustls::version::TLS13)).await;
    assert!(
        raw_get(&mut tls, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_of_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path());
    let (cert, key) = (dir.path().join("live.pem"), dir.path().join("live.key"));
    let (first_cert, first_key) = ca.issue("first");
    std::fs::copy(&first_cert, &cert).unwrap();
    std::fs::copy(&first_key, &key).unwrap();
    // A second pair whose files have the same sizes, put in place with the old times: the file
    // watcher sees nothing, so only the signal can load it.
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    let (second_cert, second_key) = (1..=40)
        .map(|i| ca.issue(&format!("second{i}")))
        .find(|(c, k)| size(c) == size(&cert) && size(k) == size(&key))
        .expect("a certificate of the same size within 40 tries");
    let port = free_port();
    let (cert_path, key_path) = (cert.display().to_string(), key.display().to_string());
    let (_child, pid, log) = spawn_all_in_one(
        dir.path(),
        &[
            ("OCRD_SERVER__BIND", format!("127.0.0.1:{port}")),
            ("OCRD_SERVER__TLS_CERT", cert_path),
            ("OCRD_SERVER__TLS_KEY", key_path),
        ],
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = ca.client_config(&rustls::version::TLS13);
    let served = |config: Arc<rustls::ClientConfig>| async move {
        let tcp = TcpStream::connect(addr).await.ok()?;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .ok()?;
        Some(tls.get_ref().1.peer_certificates()?[0].clone().into_owned())
    };
    let original = wait_for(Duration::from_secs(120), "the TLS server to answer", || {
        served(config.clone())
    })
    .await;
    for (from, to) in [(&second_key, &key), (&second_cert, &cert)] {
        let staged = to.with_extension("new");
        std::fs::copy(from, &staged).unwrap();
        let old = std::fs::File::open(to)
            .unwrap()
            .metadata()
            .unwrap()
            .modified()
            .unwrap();
        std::fs::File::options()
            .write(true)
            .open(&staged)
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::fs::rename(&staged, to).unwrap();
    }
    // Two polls of the watcher: still the old certificate.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        served(config.clone()).await.as_ref(),
        Some(&original),
        "reloaded without the signal"
    );
    let status = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for(
        Duration::from_secs(30),
        "the new certificate after SIGHUP",
        || {
            let (config, original) = (config.clone(), original.clone());
            async move { served(config).await.filter(|c| *c != original).map(drop) }
        },
    )
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("TLS certificate reloaded"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redirect_listener_sends_browsers_to_the_configured_https_url() {
    let (server, addr) =
        ocrd::web::bind_redirect("127.0.0.1:0", "https://ocr.example.com").unwrap();
    tokio::spawn(server);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .get(format!("http://{addr}/tasks/abc?page=2"))
        .header("Host", "rebind.evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        response.headers()["location"],
        "https://ocr.example.com/tasks/abc?page=2",
        "the target host comes from public_url, never from the request"
    );
    assert_secure_headers("the redirect", &response);
}

// ---------------------------------------------------------------------------------------
// Plain HTTP: headers, hosts, forwarded headers, limits.

/// An API token of the install's user with `scopes`, made in the database.
pub async fn token_for(install: &Install, scopes: &str) -> String {
    let token = ocrd::auth::new_token();
    let mut conn = install.app.db.get().await.unwrap();
    ocrd::db::models::ApiToken::create(
        &mut conn,
        ocrd::db::models::NewApiToken {
            user_id: &install.user.id,
            name: "test",
            prefix: &token[..12],
            token_hash: &ocrd::auth::token_hash(&token),
            expires_at: None,
            scopes,
        },
    )
    .await
    .unwrap();
    token
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn assert_secure_headers(what: &str, response: &reqwest::Response) {
    for name in SECURITY_HEADERS {
        assert_eq!(
            response.headers().get_all(name).iter().count(),
            1,
            "{what}: {name} once; headers: {:?}",
            response.headers()
        );
    }
    if let Some(server) = response.headers().get("server") {
        let server = server.to_str().unwrap();
        assert!(
            !server.chars().any(|c| c.is_ascii_digit()),
            "{what}: Server names a version: {server}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers_and_secrets_are_never_cached() {
    let install =
        Install::embedded(|c| c.server.trusted_proxies = vec!["127.0.0.1/32".into()]).await;
    let base = format!("http://{}", install.serve());
    let client = client();
    for path in [
        "/",
        "/login",
        "/register",
        "/api/docs",
        "/api/openapi.json",
        "/api/tasks",
        "/static/css/app.css",
        "/no-such-page",
        "/api/no-such-route",
        "/healthz",
        "/metrics",
    ] {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_secure_headers(path, &response);
        assert!(
            response
                .headers()
                .get("strict-transport-security")
                .is_none(),
            "{path}: HSTS over plain HTTP"
        );
    }
    let docs = client.get(format!("{base}/api/docs")).send().await.unwrap();
    let csp = docs.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    for part in ["frame-ancestors 'none'", "object-src 'none'"] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");

    let csrf = crate::support::register_and_sign_in(
        &base,
        &client,
        &format!("{}@example.com", unique("h")),
    )
    .await;
    for (path, method) in [("/api/auth/me", "GET"), ("/api/tokens", "POST")] {
        let request = match method {
            "GET" => client.get(format!("{base}{path}")),
            _ => client
                .post(format!("{base}{path}"))
                .header("X-CSRF-Token", &csrf)
                .json(&json!({"name": "ci"})),
        };
        let response = request.send().await.unwrap();
        assert!(response.status().is_success(), "{path}");
        assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
    }
    // Through a trusted proxy that ended TLS: HSTS, and a Secure __Host- session cookie.
    let response = reqwest::Client::new()
        .post(format!("{base}/api/auth/login"))
        .header("X-Forwarded-Proto", "https")
        .json(&json!({"email": "nobody@example.com", "password": "wrong password here"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=63072000"
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    let email = format!("{}@example.com", unique("tls"));
    reqwest::Client::new()
        .post(format!("{base}/api/auth/register"))
        .json(&json!({"email": email, "password": crate::support::PASSWORD}))
        .send()
        .await
        .unwrap();
    let response = reqwest::Client::new()
        .post(format!("{base}/api/auth/login"))
        .header("X-Forwarded-Proto", "https")
        .json(&json!({"email": email, "password": crate::support::PASSWORD}))
        .send()
        .await
        .unwrap();
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("__Host-ocrd_session="), "{cookie}");
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly") && cookie.contains("Path=/"),
        "{cookie}"
    );
    // Over https only the __Host- cookie counts: a plain one could have been planted by a
    // sibling subdomain or over plain HTTP.
    let session = cookie["__Host-ocrd_session=".len()..]
        .split(';')
        .next()
        .unwrap();
    for (name, expected) in [
        ("__Host-ocrd_session", StatusCode::OK),
        ("ocrd_session", StatusCode::UNAUTHORIZED),
    ] {
        let response = reqwest::Client::new()
            .get(format!("{base}/api/auth/me"))
            .header("X-Forwarded-Proto", "https")
            .header("Cookie", format!("{name}={session}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebinding_host_is_refused_and_creates_no_account() {
    let install = Install::embedded(|_| {}).await;
    let addr = install.serve();
    let base = format!("http://{addr}");
    let client = client();
    let response = client
        .post(format!("{base}/api/auth/register"))
        .header("Host", format!("rebind.evil.example:{}", addr.port()))
        .json(&json!({"email": "first@example.com", "password": crate::support::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
    assert_secure_headers("421", &response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "host_not_allowed");
    let mut conn = install.app.db.get().await.unwrap();
    assert!(
        ocrd::db::models::User::find_by_email(&mut conn, "first@example.com")
            .await
            .unwrap()
            .is_none(),
        "the refused registration made an account"
    );
    // A page too, and a forged X-Forwarded-Host from an untrusted peer changes nothing.
    for (host, forwarded) in [("evil.example", None), ("127.0.0.1", Some("evil.example"))] {
        let mut request = client.get(format!("{base}/login")).header("Host", host);
        if let Some(f) = forwarded {
            request = request.header("X-Forwarded-Host", f);
        }
        let status = request.send().await.unwrap().status();
        let expected = if forwarded.is_some() {
            StatusCode::OK
        } else {
            StatusCode::MISDIRECTED_REQUEST
        };
        assert_eq!(
            status, expected,
            "Host {host}, X-Forwarded-Host {forwarded:?}"
        );
    }
    for host in [
        format!("localhost:{}", addr.port()),
        format!("127.0.0.1:{}", addr.port()),
    ] {
        let response = client
            .get(format!("{base}/login"))
            .header("Host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{host}");
    }
    // Probes answer whatever the Host.
    let response = client
        .get(format!("{base}/healthz"))
        .header("Host", "10.1.2.3:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

async fn login(
    base: &str,
    email: &str,
    password: &str,
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": email, "password": password}));
    if let Some(ip) = forwarded_for {
        request = request.header("X-Forwarded-For", ip);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_forwarding_headers_buy_no_relief_and_open_no_socket() {
    let install = Install::embedded(|c| c.rate_limits.auth_per_minute = 0).await;
    let addr = install.serve();
    let base = format!("http://{addr}");
    let attempts = install.config.auth.login_attempts;
    let victim = format!("{}@example.com", unique("v"));
    let mut last = StatusCode::OK;
    for i in 0..=attempts {
        // Each guess claims another client address; none is believed.
        let forged = format!("198.51.100.{}", i + 1);
        last = login(&base, &victim, "wrong password guess", Some(&forged))
            .await
            .status();
    }
    assert_eq!(
        last,
        StatusCode::TOO_MANY_REQUESTS,
        "X-Forwarded-For from a stranger reset the count"
    );

    // A cookie session from a foreign origin that forges the host it came through.
    let browser = client();
    let email = format!("{}@example.com", unique("ws"));
    crate::support::register_and_sign_in(&base, &browser, &email).await;
    let login = browser
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": email, "password": crate::support::PASSWORD}))
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    for forged in [
        ("X-Forwarded-Host", "evil.example"),
        ("Forwarded", "host=evil.example;proto=http"),
    ] {
        let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
        let headers = request.headers_mut();
        headers.insert("Cookie", cookie.parse().unwrap());
        headers.insert("Origin", "http://evil.example".parse().unwrap());
        headers.insert(
            tungstenite::http::HeaderName::from_static(if forged.0 == "Forwarded" {
                "forwarded"
            } else {
                "x-forwarded-host"
            }),
            forged.1.parse().unwrap(),
        );
        match tokio_tungstenite::connect_async(request).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403, "{forged:?}")
            }
            other => panic!(
                "{forged:?}: a foreign origin was upgraded: {:?}",
                other.map(|r| r.1.status())
            ),
        }
    }
    // Our own origin still works.
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Cookie", cookie.parse().unwrap());
    request
        .headers_mut()
        .insert("Origin", format!("http://{addr}").parse().unwrap());
    tokio_tungstenite::connect_async(request)
        .await
        .expect("own origin upgraded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_cannot_lock_the_owner_out() {
    let install = Install::distributed(|c| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".into()];
        c.rate_limits.auth_per_minute = 0;
    })
    .await;
    let base = format!("http://{}", install.serve());
    let owner = format!("{}@example.com", unique("owner"));
    crate::support::register_and_sign_in(&base, &client(), &owner).await;
    let attacker = Some("203.0.113.66");
    for i in 0..5 {
        login(
            &base,
            &format!("random{i}@example.com"),
            "guess guess guess",
            attacker,
        )
        .await;
    }
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(
            login(&base, &owner, "guess guess guess", attacker)
                .await
                .status(),
        );
    }
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let locked = login(&base, &owner, crate::support::PASSWORD, attacker).await;
    assert_eq!(
        locked.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the attacker's address stays locked even with the right password"
    );
    let retry: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        retry > install.config.auth.login_window_secs,
        "the lock grows: {retry} s"
    );
    let body: Value = locked.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{retry} s")),
        "{body}"
    );
    // The owner, from home.
    let response = login(
        &base,
        &owner,
        crate::support::PASSWORD,
        Some("198.51.100.20"),
    )
    .await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the owner was locked out by someone else's guesses"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_rate_limits_are_global_across_servers_and_retry_after_is_honest() {
    let install = Install::distributed(|c| {
        c.rate_limits.api_per_second = 1;
        c.rate_limits.api_burst = 6;
        c.server.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    let first = format!("http://{}", install.serve());
    // A second server process's worth: its own App on the same Redis.
    let other_app = ocrd::app::App::build(install.config.clone()).await.unwrap();
    let second = format!("http://{}", crate::install::serve_app(other_app));
    let token = token_for(&install, "read,write").await;
    let http = reqwest::Client::new();
    let mut refused = None;
    for i in 0..12 {
        // Each request from another address, so only the token's bucket can stop them: spelling
        // the header or the path differently must not give it a fresh one.
        let base = if i % 2 == 0 { &first } else { &second };
        let path = if i % 3 == 0 {
            "/%61pi/tasks"
        } else {
            "/api/tasks"
        };
        let scheme = if i % 2 == 0 { "Bearer" } else { "bearer " };
        let response = http
            .get(format!("{base}{path}"))
            .header("Authorization", format!("{scheme} {token}"))
            .header("X-Forwarded-For", format!("198.51.100.{}", i + 1))
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some((i, response));
            break;
        }
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers().contains_key("ratelimit"),
            "{:?}",
            response.headers()
        );
        assert_eq!(response.headers()["ratelimit-policy"], "\"api\";q=6;w=6");
        assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
    }
    let (i, response) = refused.expect("the burst of 6 ran out across both servers");
    assert!(
        i <= 7,
        "allowed {i} requests: each server counted on its own"
    );
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        response.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"api\";r=0;")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_requests");
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let response = http
        .get(format!("{second}/api/tasks"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "a request after Retry-After was refused"
    );
    let metrics = http
        .get(format!("{first}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("ocrd_rate_limited_total{class=\"api\"} "),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_auth_and_socket_limits_refuse_with_429() {
    let install = Install::distributed(|c| {
        c.rate_limits.uploads_per_minute = 2;
        c.rate_limits.auth_per_minute = 4;
        c.rate_limits.ws_per_user = 2;
    })
    .await;
    let addr = install.serve();
    let base = format!("http://{addr}");
    let token = token_for(&install, "read,write").await;
    let http = reqwest::Client::new();
    let page = std::fs::read(crate::ocr::repo().join("../shared/eval/skew/page_005.png")).unwrap();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(page.clone()).file_name("p.png"),
        );
        let response = http
            .post(format!("{base}/api/tasks"))
            .bearer_auth(&token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        statuses.push(response.status());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(response.headers().contains_key("retry-after"));
            assert!(
                response.headers()["ratelimit-policy"]
                    .to_str()
                    .unwrap()
                    .starts_with("\"uploads\";q=2;w=60")
            );
        }
    }
    assert_eq!(
        statuses,
        [
            StatusCode::ACCEPTED,
            StatusCode::ACCEPTED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    let mut conn = install.app.db.get().await.unwrap();
    let tasks = ocrd::db::models::Task::list_for_user(&mut conn, &install.user.id, None, 10, None)
        .await
        .unwrap();
    assert_eq!(tasks.len(), 2, "the refused upload was stored");
    drop(conn);

    // Registrations (each an argon2 hash; invite codes would be guessed the same way).
    let mut statuses = Vec::new();
    for i in 0..5 {
        let response = http
            .post(format!("{base}/api/auth/register"))
            .json(
                &json!({"email": format!("{}-{i}@example.com", unique("r")), "password": crate::support::PASSWORD}),
            )
            .send()
            .await
            .unwrap();
        statuses.push(response.status());
    }
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        4
    );

    // Sockets: two at once for this account; a third waits for one to close.
    let open = || async {
        let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse().unwrap());
        tokio_tungstenite::connect_async(request).await
    };
    let mut first = open().await.expect("first socket").0;
    let _second = open().await.expect("second socket").0;
    match open().await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 429),
        other => panic!(
            "a third socket was allowed: {:?}",
            other.map(|r| r.1.status())
        ),
    }
    first.close(None).await.unwrap();
    while first.next().await.is_some() {}
    wait_for(
        Duration::from_secs(20),
        "a socket slot freed by the close",
        || async { open().await.ok().map(drop) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_have_scopes_and_expiry_and_only_sessions_make_them() {
    let install = Install::embedded(|_| {}).await;
    let base = format!("http://{}", install.serve());
    let browser = client();
    let csrf = crate::support::register_and_sign_in(
        &base,
        &browser,
        &format!("{}@example.com", unique("t")),
    )
    .await;
    let created: Value = browser
        .post(format!("{base}/api/tokens"))
        .header("X-CSRF-Token", &csrf)
        .json(&json!({"name": "reader", "scopes": ["read"], "expires_in_days": 30}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["scopes"], json!(["read"]));
    let expires = created["expires_at"].as_str().expect("an expiry");
    let expires = chrono::DateTime::parse_from_rfc3339(expires).unwrap();
    let days = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((29.9..=30.1).contains(&days), "{days}");
    let reader = created["token"].as_str().unwrap();
    let http = reqwest::Client::new();
    let response = http
        .get(format!("{base}/api/tasks"))
        .bearer_auth(reader)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = http
        .delete(format!("{base}/api/tasks/00000000000000000000000000"))
        .bearer_auth(reader)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "a read-only token changed something"
    );
    // A token cannot make tokens.
    let response = http
        .post(format!("{base}/api/tokens"))
        .bearer_auth(reader)
        .json(&json!({"name": "child"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let writer = token_for(&install, "read,write").await;
    let response = http
        .post(format!("{base}/api/tokens"))
        .bearer_auth(&writer)
        .json(&json!({"name": "child"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // Bad values.
    for body in [
        json!({"name": "x", "expires_in_days": 0}),
        json!({"name": "x", "expires_in_days": 5000}),
        json!({"name": "x", "scopes": []}),
        json!({"name": "x", "scopes": ["root"]}),
    ] {
        let response = browser
            .post(format!("{base}/api/tokens"))
            .header("X-CSRF-Token", &csrf)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    // An expired token is refused.
    let expired = ocrd::auth::new_token();
    let mut conn = install.app.db.get().await.unwrap();
    ocrd::db::models::ApiToken::create(
        &mut conn,
        ocrd::db::models::NewApiToken {
            user_id: &install.user.id,
            name: "old",
            prefix: &expired[..12],
            token_hash: &ocrd::auth::token_hash(&expired),
            expires_at: Some(ocrd::db::models::now() - chrono::TimeDelta::seconds(1)),
            scopes: "read,write",
        },
    )
    .await
    .unwrap();
    let response = http
        .get(format!("{base}/api/tasks"))
        .bearer_auth(&expired)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_readiness_sit_behind_a_token_or_move_to_the_operations_listener() {
    let install = Install::embedded(|c| {
        c.server.metrics_token = ocrd::config::Secret::new("scrape-secret".to_owned())
    })
    .await;
    let base = format!("http://{}", install.serve());
    let http = reqwest::Client::new();
    for path in ["/metrics", "/readyz"] {
        let response = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        let response = http
            .get(format!("{base}{path}"))
            .bearer_auth("scrape-secret")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // `ocrd all-in-one` on a public address with an operations listener: a warning, and the
    // operational routes on their own port only.
    let dir = tempfile::tempdir().unwrap();
    let (port, ops) = (free_port(), free_port());
    let (mut child, _, log) = spawn_all_in_one(
        dir.path(),
        &[
            ("OCRD_SERVER__BIND", format!("0.0.0.0:{port}")),
            ("OCRD_SERVER__OPS_BIND", format!("127.0.0.1:{ops}")),
        ],
    );
    let ready = wait_for(Duration::from_secs(120), "all-in-one to answer", || {
        let http = http.clone();
        async move {
            http.get(format!("http://127.0.0.1:{port}/healthz"))
                .send()
                .await
                .ok()
        }
    })
    .await;
    assert_eq!(ready.status(), StatusCode::OK);
    let metrics = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::NOT_FOUND);
    let metrics = http
        .get(format!("http://127.0.0.1:{ops}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("ocrd_http_requests_total"));
    // All-in-one's one document, the server's series and the worker's.
    assert!(text.contains("ocrd_queue_waiting_tasks"), "{text}");
    crate::deploy::assert_promtool_clean("all-in-one", &text);
    child.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("without TLS and without trusted proxies"),
        "{text}"
    );
}

/// A child process that dies with the test, even when the test fails first.
pub struct KillOnDrop(pub std::process::Child);

impl KillOnDrop {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `ocrd all-in-one` in `dir` on the embedded defaults with `env` on top, logging to
/// `dir/ocrd.log`: the process (killed with the test), its pid and the log's path.
pub fn spawn_all_in_one(dir: &Path, env: &[(&str, String)]) -> (KillOnDrop, u32, PathBuf) {
    let log = dir.join("ocrd.log");
    let child = Command::new(ocrd_bin())
        .arg("all-in-one")
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("OCRD_DATA_DIR", dir.join("data"))
        .env("OCRD_OCR__MODELS_DIR", crate::install::models_dir())
        .env("OCRD_OCR__THREADS", "1")
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("starting ocrd all-in-one");
    let pid = child.id();
    (KillOnDrop(child), pid, log)
}

#[test]
fn every_listener_defaults_to_loopback() {
    let config = ocrd::config::Config::default();
    for addr in [&config.server.bind, &config.worker.health_addr] {
        let ip: std::net::SocketAddr = addr.parse().unwrap();
        assert!(ip.ip().is_loopback(), "{addr}");
    }
    assert!(config.server.ops_bind.is_none() && config.server.redirect_http.is_none());
    assert!(config.server.trusted_proxies.is_empty());
}

// ---------------------------------------------------------------------------------------
// nginx in front: the shipped deploy/nginx/ocrd.conf with test ports, paths and certificate.

/// nginx as one process (`master_process off`), so that killing it leaves no workers behind.
pub(crate) struct Nginx {
    prefix: tempfile::TempDir,
    _process: KillOnDrop,
}

/// The shipped configuration, with each production value replaced; every replacement must
/// apply, so the test follows the file.
fn shipped_nginx_config(replacements: &[(&str, String)]) -> String {
    let mut conf =
        std::fs::read_to_string(crate::ocr::repo().join("deploy/nginx/ocrd.conf")).unwrap();
    for (from, to) in replacements {
        assert!(
            conf.contains(from),
            "deploy/nginx/ocrd.conf no longer has `{from}`"
        );
        conf = conf.replace(from, to);
    }
    conf
}

/// The shipped configuration on loopback: HTTPS on `https` with `tls` (certificate, key) for
/// `localhost`, plain HTTP on `http` redirecting to it, and `upstreams` as its two servers.
pub(crate) fn local_nginx_config(
    upstreams: [std::net::SocketAddr; 2],
    https: u16,
    http: u16,
    tls: (&Path, &Path),
) -> String {
    shipped_nginx_config(&[
        (
            "listen 443 ssl http2;",
            format!("listen 127.0.0.1:{https} ssl http2;"),
        ),
        ("listen [::]:443 ssl http2;\n", String::new()),
        ("listen 80;", format!("listen 127.0.0.1:{http};")),
        ("listen [::]:80;\n", String::new()),
        ("server 127.0.0.1:8080", format!("server {}", upstreams[0])),
        ("server 127.0.0.1:8081", format!("server {}", upstreams[1])),
        (
            "server_name ocr.example.com;",
            "server_name localhost;".into(),
        ),
        (
            "return 301 https://ocr.example.com$request_uri;",
            format!("return 301 https://localhost:{https}$request_uri;"),
        ),
        (
            "/etc/letsencrypt/live/ocr.example.com/fullchain.pem",
            tls.0.display().to_string(),
        ),
        (
            "/etc/letsencrypt/live/ocr.example.com/privkey.pem",
            tls.1.display().to_string(),
        ),
    ])
}

/// A WebSocket (wss) to `/ws` through nginx on `https`, authenticated with `token`.
pub(crate) async fn nginx_socket(
    ca: &Ca,
    https: u16,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<Tls> {
    let tls = tls_connect(
        format!("127.0.0.1:{https}").parse().unwrap(),
        ca.client_config(&rustls::version::TLS13),
    )
    .await;
    let mut request = format!("wss://localhost:{https}/ws")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::client_async(request, tls)
        .await
        .expect("WebSocket through nginx")
        .0
}

pub(crate) fn start_nginx(conf: &str) -> Nginx {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("nginx is not installed: apt-get install nginx (scripts/test-services.sh does)");
    let prefix = tempfile::tempdir().unwrap();
    let p = prefix.path();
    std::fs::create_dir_all(p.join("body")).unwrap();
    std::fs::write(p.join("ocrd.conf"), conf).unwrap();
    let main = format!(
        "master_process off;\npid {pid};\nerror_log {err} info;\ndaemon off;\nevents {{ worker_connections 512; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {body};\n  proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n  include {conf};\n}}\n",
        pid = p.join("nginx.pid").display(),
        err = p.join("error.log").display(),
        body = p.join("body").display(),
        p = p.display(),
        conf = p.join("ocrd.conf").display(),
    );
    std::fs::write(p.join("nginx.conf"), main).unwrap();
    let check = Command::new(nginx)
        .args(["-t", "-p"])
        .arg(p)
        .arg("-c")
        .arg(p.join("nginx.conf"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let child = Command::new(nginx)
        .arg("-p")
        .arg(p)
        .arg("-c")
        .arg(p.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Nginx {
        prefix,
        _process: KillOnDrop(child),
    }
}

/// A 100 MB PDF: one page, and a stream of incompressible bytes nobody reads.
fn big_pdf(size: usize) -> Vec<u8> {
    let mut pdf = b"%PDF-1.4\n1 0 obj <</Type/Catalog/Pages 2 0 R>> endobj\n2 0 obj <</Type/Pages/Kids[3 0 R]/Count 1>> endobj\n3 0 obj <</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]>> endobj\n".to_vec();
    let filler = size.saturating_sub(pdf.len() + 200);
    pdf.extend(format!("4 0 obj <</Length {filler}>> stream\n").as_bytes());
    let mut state = 0x2545_f491_4f6c_dd1du64;
    pdf.extend((0..filler).map(|_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    }));
    pdf.extend(b"\nendstream endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n");
    pdf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_in_front_redirects_streams_uploads_carries_events_and_limits_bursts() {
    let install = Install::embedded(|c| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".into(), "::1/128".into()];
        c.server.public_url = Some("https://localhost".into());
        c.rate_limits.api_per_second = 1000;
        c.rate_limits.api_burst = 1000;
    })
    .await;
    // Two serve instances behind the upstream, as shipped.
    let first = install.serve();
    let second = install.serve();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path());
    let (cert, key) = ca.issue("nginx");
    let (https, http_port) = (free_port(), free_port());
    let conf = local_nginx_config([first, second], https, http_port, (&cert, &key));
    let nginx = start_nginx(&conf);
    let ca_pem = reqwest::Certificate::from_pem(&std::fs::read(&ca.cert).unwrap()).unwrap();
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_only([ca_pem])
        .build()
        .unwrap();
    let base = format!("https://localhost:{https}");
    wait_for(Duration::from_secs(30), "nginx to answer", || {
        let (browser, base) = (browser.clone(), base.clone());
        async move { browser.get(format!("{base}/healthz")).send().await.ok() }
    })
    .await;

    // http → 301 → https, to the configured name.
    let response = browser
        .get(format!("http://127.0.0.1:{http_port}/tasks?x=1"))
        .header("Host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        response.headers()["location"],
        format!("https://localhost:{https}/tasks?x=1")
    );

    // Register and sign in; the session cookie is Secure because nginx said https.
    let email = format!("{}@example.com", unique("nginx"));
    let csrf = crate::support::register_and_sign_in(&base, &browser, &email).await;
    for path in [
        "/",
        "/api/auth/me",
        "/api/openapi.json",
        "/static/css/app.css",
        "/nope",
    ] {
        let response = browser.get(format!("{base}{path}")).send().await.unwrap();
        assert_secure_headers(path, &response);
        assert_eq!(
            response
                .headers()
                .get_all("strict-transport-security")
                .iter()
                .count(),
            1,
            "{path}"
        );
        let server = response
            .headers()
            .get("server")
            .map(|s| s.to_str().unwrap().to_owned());
        assert_eq!(server.as_deref(), Some("nginx"), "{path}: no version");
    }
    let token = crate::support::create_token(&base, &browser, &csrf, "through nginx").await;

    // Events over a WebSocket through nginx (wss).
    let mut socket = nginx_socket(&ca, https, &token).await;

    // A 100 MB PDF whose last megabyte is held back until ocrd shows it has the rest: with
    // request buffering on, nginx would pass nothing on before the end, and the test fails.
    let pdf = big_pdf(100 << 20);
    let total = pdf.len() as u64;
    let mut chunks: Vec<Vec<u8>> = pdf.chunks(1 << 20).map(<[u8]>::to_vec).collect();
    drop(pdf);
    let last = chunks.pop().unwrap();
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let (arrived_tx, arrived) = tokio::sync::oneshot::channel::<()>();
    let sender = tokio::spawn(async move {
        for chunk in chunks {
            tx.send(Ok(chunk)).await.unwrap();
        }
        let _ = tokio::time::timeout(Duration::from_secs(90), arrived).await;
        tx.send(Ok(last)).await.unwrap();
    });
    let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(rx), total)
        .file_name("big.pdf")
        .mime_str("application/pdf")
        .unwrap();
    let form = reqwest::multipart::Form::new().part("file", part);
    let upload = tokio::spawn({
        let (browser, base, token) = (browser.clone(), base.clone(), token.clone());
        async move {
            browser
                .post(format!("{base}/api/tasks"))
                .bearer_auth(&token)
                .multipart(form)
                .send()
                .await
                .unwrap()
        }
    });
    let data_dir = install.data_dir.path().to_owned();
    let nginx_body = nginx.prefix.path().join("body");
    let on_disk = |dir: &Path| -> u64 {
        crate::support::walk(dir)
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    };
    let mut arrived_tx = Some(arrived_tx);
    let mut received = 0;
    while !upload.is_finished() {
        assert_eq!(on_disk(&nginx_body), 0, "nginx buffered the upload to disk");
        if arrived_tx.is_some() {
            received = on_disk(&data_dir);
            if received > 50 << 20 {
                arrived_tx.take().map(|tx| tx.send(()));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sender.await.unwrap();
    let response = upload.await.unwrap();
    assert!(
        arrived_tx.is_none(),
        "ocrd held {received} bytes while the end of the upload was held back: nginx did not stream it"
    );
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let task: Value = response.json().await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Text(text) = message {
                let event: Value = serde_json::from_str(&text).unwrap();
                if event["task"]["id"] == task["id"] {
                    return event;
                }
            }
        }
        panic!("the socket closed");
    })
    .await
    .expect("the task's event through nginx");
    assert_eq!(event["type"], "task.updated");

    // A client's own Forwarded header through nginx buys no fresh address: the sixth wrong
    // password for one account from this client is refused whatever it claims.
    let victim = format!("{}@example.com", unique("victim"));
    let mut last = StatusCode::OK;
    for i in 0..6 {
        last = browser
            .post(format!("{base}/api/auth/login"))
            .header(
                "Forwarded",
                format!("for=203.0.113.{i};host=localhost;proto=https"),
            )
            .json(&json!({"email": victim, "password": "wrong password guess"}))
            .send()
            .await
            .unwrap()
            .status();
    }
    assert_eq!(
        last,
        StatusCode::TOO_MANY_REQUESTS,
        "a forged Forwarded header through nginx reset the count"
    );
    // A body over nginx's client_max_body_size: nginx's own 413, in ocrd's format and headers.
    let response = browser
        .post(format!("{base}/api/auth/login"))
        .header("Content-Type", "application/json")
        .body(vec![b' '; 2 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_secure_headers("nginx's 413", &response);

    // A burst beyond nginx's API zone (30 r/s, burst 60) gets 429 in ocrd's error format.
    let burst = futures::future::join_all(
        (0..150).map(|_| browser.get(format!("{base}/api/auth/me")).send()),
    )
    .await;
    let limited: Vec<_> = burst
        .into_iter()
        .filter_map(Result::ok)
        .filter(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert!(!limited.is_empty(), "150 requests at once, none limited");
    assert_eq!(limited[0].headers()["retry-after"], "1");
    assert_secure_headers("nginx's 429", &limited[0]);
}

#[test]
fn the_shipped_nginx_configuration_passes_gixy() {
    let gixy = crate::ocr::repo().join("target/test-venv/bin/gixy");
    assert!(
        gixy.exists(),
        "{} is missing: run the tests with `make test` (scripts/test.sh installs tests/requirements.txt)",
        gixy.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("nginx.conf");
    let shipped = crate::ocr::repo().join("deploy/nginx/ocrd.conf");
    std::fs::write(
        &main,
        format!(
            "worker_processes auto;\nevents {{}}\nhttp {{\n    include {};\n}}\n",
            shipped.display()
        ),
    )
    .unwrap();
    let out = Command::new(&gixy).arg(&main).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && report.contains("No issues found"),
        "gixy: {report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_lets_requests_through_and_the_limits_return_with_it() {
    let redis = url::Url::parse(&crate::support::redis_url()).unwrap();
    let target = format!(
        "{}:{}",
        redis.host_str().unwrap(),
        redis.port().unwrap_or(6379)
    );
    let outage = crate::install::Outage::proxy(&target).await;
    let install = Install::distributed(|c| {
        c.redis.url = ocrd::config::Secret::new(format!("redis://{}", outage.addr));
        c.rate_limits.api_per_second = 1;
        c.rate_limits.api_burst = 3;
    })
    .await;
    let base = format!("http://{}", install.serve());
    let token = token_for(&install, "read").await;
    let http = reqwest::Client::new();
    let get = || {
        http.get(format!("{base}/api/tasks"))
            .bearer_auth(&token)
            .send()
    };
    let response = get().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("ratelimit"));

    // Redis gone: the limiter cannot count, and a brake must not become an outage.
    outage.start();
    for i in 0..6 {
        let response = get().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "request {i} during the outage"
        );
        assert!(!response.headers().contains_key("ratelimit"));
    }
    // Back: the bucket of 3 runs out again.
    outage.end();
    let statuses = wait_for(
        Duration::from_secs(30),
        "the limit to apply again",
        || async {
            let mut statuses = Vec::new();
            for _ in 0..4 {
                statuses.push(get().await.ok()?.status());
            }
            statuses
                .contains(&StatusCode::TOO_MANY_REQUESTS)
                .then_some(statuses)
        },
    )
    .await;
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}
