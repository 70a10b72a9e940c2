//! Hostile clients against a real server: malformed requests on every route, clients that hang
//! up mid-request or mid-upload, slow and greedy clients, decompression bombs on the page-image
//! route, and what is left on disk. Each runs on the embedded defaults (all-in-one: SQLite,
//! local files) and on the distributed parts (serve: PostgreSQL, Redis, S3 with KMS).
//!
//! A panic on a server thread is the failure this file exists for: a panic hook counts them, and
//! every test ends by asserting that none happened and that the server still answers.

use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use ocrd::config::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::install::{Install, sample_pages, wait_for};
use crate::support::unique;

/// Panics on the server's threads (actix workers and runtimes) since the process started.
static SERVER_PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_server_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            if thread.name().is_some_and(|n| n.contains("actix")) {
                SERVER_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    /// all-in-one's embedded defaults.
    Embedded,
    /// serve's PostgreSQL, Redis and S3.
    Distributed,
}

/// A server on a random port, with one signed-in user holding a session and an API token.
struct Server {
    install: Install,
    addr: std::net::SocketAddr,
    browser: reqwest::Client,
    csrf: String,
    session: String,
    token: String,
    /// A task of this user (queued: no worker runs).
    task_id: String,
}

impl Server {
    async fn start(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Server {
        count_server_panics();
        let install = match backend {
            Backend::Embedded => Install::embedded(tweak).await,
            Backend::Distributed => Install::distributed(tweak).await,
        };
        let addr = install.serve();
        let base = format!("http://{addr}");
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let (email, password) = (
            format!("{}@example.com", unique("h")),
            "a long enough passphrase",
        );
        let credentials = json!({"email": email, "password": password});
        let registered = browser
            .post(format!("{base}/api/auth/register"))
            .json(&credentials)
            .send()
            .await
            .unwrap();
        assert_eq!(registered.status(), StatusCode::CREATED);
        let login = browser
            .post(format!("{base}/api/auth/login"))
            .json(&credentials)
            .send()
            .await
            .unwrap();
        let session = login
            .cookies()
            .find(|c| c.name() == "ocrd_session")
            .expect("a session cookie")
            .value()
            .to_owned();
        let login: Value = login.json().await.unwrap();
        let csrf = login["csrf_token"].as_str().unwrap().to_owned();
        let token = crate::support::create_token(&base, &browser, &csrf, "probe").await;
        let (page, _) = sample_pages().into_iter().next().unwrap();
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(std::fs::read(page).unwrap()).file_name("page.png"),
        );
        let task: Value = browser
            .post(format!("{base}/api/tasks"))
            .header("X-CSRF-Token", &csrf)
            .multipart(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Server {
            install,
            addr,
            browser,
            csrf,
            session,
            token,
            task_id: task["id"].as_str().unwrap().to_owned(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A JSON `POST` with the browser's session and CSRF token.
    async fn post_json(&self, path: &str, body: Value) -> reqwest::Response {
        self.browser
            .post(self.url(path))
            .header("X-CSRF-Token", &self.csrf)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// The server answers an ordinary request, and no server thread has panicked.
    async fn assert_healthy(&self) {
        assert_eq!(
            SERVER_PANICS.load(Ordering::SeqCst),
            0,
            "a server thread panicked (see the panic message above)"
        );
        let me = reqwest::Client::new()
            .get(self.url("/api/auth/me"))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("the server still answers");
        assert_eq!(me.status(), StatusCode::OK, "{}", me.text().await.unwrap());
    }

    /// Uploads in storage: the one of the set-up task, once aborted uploads are cleaned up.
    async fn assert_only_the_setup_upload_is_stored(&self) {
        let blobs = &self.install.app.blobs;
        wait_for(Duration::from_secs(30), "aborted uploads to go", || async {
            let stored = blobs.list("uploads/").await.unwrap();
            (stored.len() == 1).then_some(())
        })
        .await;
    }
}

/// How a probe authenticates.
#[derive(Clone, Copy, Debug)]
enum Auth {
    Cookie,
    Token,
    /// A made-up token: the request fails authentication, and must still fail cleanly.
    Bogus,
}

/// One request of the malformed-request suite, and what it was.
struct Probe {
    method: reqwest::Method,
    path: String,
    auth: Auth,
    body: Body,
}

#[derive(Clone, Debug)]
enum Body {
    None,
    Json(&'static str),
    /// Valid JSON sent as another content type.
    WrongType,
    Form,
}

/// Values for each path parameter that are wrong in some way, and one that is right.
fn path_values(name: &str, task_id: &str) -> Vec<String> {
    let mut values: Vec<String> = [
        "0",
        "-1",
        "%00",
        "..%2F..%2Fetc%2Fpasswd",
        "%E2%80%AE",
        "%FF%FE",
        "1e999",
        "99999999999999999999",
        "null",
        "%20",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    values.push("a".repeat(300));
    values.push(uuid::Uuid::new_v4().to_string());
    if name == "id" {
        values.push(task_id.to_owned());
    }
    values
}

fn probes(task_id: &str) -> Vec<Probe> {
    let bodies = [
        Body::None,
        Body::Json("{"),
        Body::Json("[]"),
        Body::Json("{\"email\": 5, \"password\": [], \"name\": {\"x\": null}}"),
        Body::Json("\"\u{0}\""),
        Body::Json(
            "{\"email\":\"a\\u0000b@example.com\",\"password\":\"a\\u0000 long passphrase\",\
             \"current_password\":\"\\u0000\",\"new_password\":\"\\u0000\\u202e\",\
             \"name\":\"\\u0000\",\"token\":\"\\u0000\",\"invite_code\":\"\\u0000\"}",
        ),
        Body::WrongType,
        Body::Form,
    ];
    let mut probes = Vec::new();
    for (method, pattern) in ocrd::web::ROUTES {
        let method: reqwest::Method = method.to_uppercase().parse().unwrap();
        // The set-up task and session must outlive the probes: deletes name another task.
        let other = uuid::Uuid::new_v4().to_string();
        let task_id = if method == reqwest::Method::DELETE {
            other.as_str()
        } else {
            task_id
        };
        // Every combination of wrong path values would be thousands: vary one parameter at a
        // time, the others set to the task's real id or page 1.
        let params: Vec<&str> = pattern
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let mut paths = vec![fill(pattern, |p| default_value(p, task_id))];
        for param in &params {
            for value in path_values(param, task_id) {
                paths.push(fill(pattern, |p| {
                    if p == *param {
                        value.clone()
                    } else {
                        default_value(p, task_id)
                    }
                }));
            }
        }
        // Bad queries on every path: unknown, repeated, wrong types, and junk.
        let queries = [
            "",
            "?limit=-1&limit=5",
            "?limit=abc&status=%00&cursor=%FF",
            "?format=exe&stream=maybe",
            "?format=txt&format=json",
            "?stream=1&format",
            "?%zz=1",
        ];
        for auth in [Auth::Cookie, Auth::Token, Auth::Bogus] {
            if matches!(auth, Auth::Cookie) && *pattern == "/api/auth/logout" {
                continue;
            }
            for (i, path) in paths.iter().enumerate() {
                let query = queries[i % queries.len()];
                let query = if i == 0 { "?cursor=%00&limit=2" } else { query };
                for body in &bodies {
                    probes.push(Probe {
                        method: method.clone(),
                        path: format!("{path}{query}"),
                        auth,
                        body: body.clone(),
                    });
                }
            }
        }
    }
    probes
}

fn default_value(param: &str, task_id: &str) -> String {
    match param {
        "page" => "1".into(),
        _ => task_id.to_owned(),
    }
}

fn fill(pattern: &str, value: impl Fn(&str) -> String) -> String {
    pattern
        .split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(param) => value(param),
                None => segment.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

impl Server {
    async fn send(&self, client: &reqwest::Client, probe: &Probe) -> (StatusCode, String, String) {
        let mut request = client.request(probe.method.clone(), self.url(&probe.path));
        request = match probe.auth {
            Auth::Cookie => request
                .header("Cookie", format!("ocrd_session={}", self.session))
                .header("X-CSRF-Token", &self.csrf),
            Auth::Token => request.bearer_auth(&self.token),
            Auth::Bogus => request.bearer_auth("ocrd_x"),
        };
        request = match &probe.body {
            Body::None => request,
            Body::Json(text) => request
                .header("Content-Type", "application/json")
                .body(*text),
            Body::WrongType => request
                .header("Content-Type", "text/plain")
                .body("{\"name\":\"x\"}"),
            Body::Form => request
                .header("Content-Type", "multipart/form-data; boundary=zz")
                .body("--zz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n\u{0}\u{1}--zz--"),
        };
        let response = request.send().await.unwrap_or_else(|e| {
            panic!(
                "{} {} ({:?}, {:?}): no response: {e}",
                probe.method, probe.path, probe.auth, probe.body
            )
        });
        let status = response.status();
        let kind = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (status, kind, response.text().await.unwrap_or_default())
    }
}

/// An error answer must be JSON with a code from the table, except where a page or the
/// WebSocket endpoint answers.
fn check_answer(probe: &Probe, status: StatusCode, kind: &str, body: &str) -> Result<(), String> {
    let what = format!(
        "{} {} ({:?}, {:?}) answered {status}: {}",
        probe.method,
        probe.path.chars().take(120).collect::<String>(),
        probe.auth,
        probe.body,
        body.chars().take(300).collect::<String>()
    );
    if status.is_server_error() {
        return Err(what);
    }
    let api = probe.path.starts_with("/api/") || probe.path.starts_with("/ws");
    if status.is_client_error() && api {
        let value: Value = serde_json::from_str(body).map_err(|_| what.clone())?;
        let code = value["error"]["code"].as_str().unwrap_or_default();
        if !kind.starts_with("application/json")
            || !ocrd::error::Code::ALL.iter().any(|c| c.as_str() == code)
            || value["error"]["message"].as_str().is_none_or(str::is_empty)
        {
            return Err(what);
        }
    }
    Ok(())
}

async fn malformed_requests(backend: Backend) {
    let server = Server::start(backend, |c| {
        // Hundreds of probes in a few seconds from one address: the `api` rate limit would
        // answer most of them (edge tests cover it); here the handlers must.
        c.rate_limits.api_per_second = 0;
    })
    .await;
    let client = reqwest::Client::new();
    let probes = probes(&server.task_id);
    let total = probes.len();
    let failures: Vec<String> = futures::stream::iter(probes.iter())
        .map(|probe| async {
            let (status, kind, body) = server.send(&client, probe).await;
            check_answer(probe, status, &kind, &body).err()
        })
        .buffer_unordered(16)
        .filter_map(|f| async { f })
        .collect()
        .await;
    assert!(
        failures.is_empty(),
        "{} of {total} probes answered wrongly:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
    // The four requests of the original report, each once more on its own.
    let uuid = uuid::Uuid::new_v4();
    for (method, path) in [
        (
            reqwest::Method::GET,
            "/api/tasks/0/pages/-1/image".to_owned(),
        ),
        (reqwest::Method::POST, "/api/auth/password".to_owned()),
        (reqwest::Method::POST, "/api/tokens".to_owned()),
        (reqwest::Method::GET, format!("/api/tasks/{uuid}/result")),
    ] {
        for auth in [Auth::Token, Auth::Bogus] {
            let probe = Probe {
                method: method.clone(),
                path: path.clone(),
                auth,
                body: Body::None,
            };
            let (status, kind, body) = server.send(&client, &probe).await;
            assert!(status.is_client_error(), "{path}: {status} {body}");
            check_answer(&probe, status, &kind, &body).unwrap();
        }
    }
    // Protocol-level abuse: huge headers and a 100 KB query string.
    let long_query = format!("/api/tasks?cursor={}", "a".repeat(100 << 10));
    let huge_header = "x".repeat(64 << 10);
    for (path, extra) in [
        (long_query.as_str(), String::new()),
        ("/api/tasks", format!("X-Junk: {huge_header}\r\n")),
        ("/api/tasks", "X-Junk: a\r\n".repeat(500)),
    ] {
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n{extra}\r\n",
            server.token
        );
        let answer = raw_exchange(server.addr, head.as_bytes(), Duration::from_secs(20)).await;
        let status = status_of(&answer);
        assert!(
            (400..500).contains(&status),
            "{} bytes of request head: {}",
            head.len(),
            String::from_utf8_lossy(&answer[..answer.len().min(300)])
        );
    }
    server.assert_healthy().await;
    server.assert_only_the_setup_upload_is_stored().await;
    eprintln!("malformed requests ({backend:?}): {total} probes, all answered 2xx-4xx as JSON");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_on_all_in_one() {
    malformed_requests(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_on_serve() {
    malformed_requests(Backend::Distributed).await;
}

/// Writes `request`, then reads until the server closes or `wait` passes.
async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8], wait: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before the whole request is written.
    let _ = stream.write_all(request).await;
    read_answer(&mut stream, wait).await
}

async fn read_answer(stream: &mut TcpStream, wait: Duration) -> Vec<u8> {
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return answer,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                // One answer is enough: stop at the end of a JSON or empty body.
                if let Some(end) = find(&answer, b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok());
                    if length.is_some_and(|n| answer.len() >= end + 4 + n) {
                        return answer;
                    }
                }
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn status_of(answer: &[u8]) -> u16 {
    String::from_utf8_lossy(answer)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn body_of(answer: &[u8]) -> Value {
    let start = find(answer, b"\r\n\r\n").map_or(answer.len(), |i| i + 4);
    serde_json::from_slice(&answer[start..]).unwrap_or(Value::Null)
}

/// A multipart upload's head and the first part of its body; the rest is never sent.
fn upload_head(server: &Server, declared: u64) -> (Vec<u8>, Vec<u8>) {
    let (page, _) = sample_pages().into_iter().next().unwrap();
    let bytes = std::fs::read(page).unwrap();
    let mut body = b"--zz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.png\"\r\nContent-Type: image/png\r\n\r\n".to_vec();
    body.extend_from_slice(&bytes[..bytes.len() / 2]);
    let head = format!(
        "POST /api/tasks HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary=zz\r\nContent-Length: {declared}\r\n\r\n",
        server.token
    );
    (head.into_bytes(), body)
}

async fn clients_that_hang_up(backend: Backend) {
    // Many requests in a burst from one address: the handlers are under test, not the `api`
    // rate limit.
    let server = Server::start(backend, |c| c.rate_limits.api_per_second = 0).await;
    let uuid = uuid::Uuid::new_v4();
    let cut_heads = [
        "GET /api/tasks HTTP/1.1\r\nHost: localhost\r\nAuthor".to_owned(),
        format!(
            "POST /api/auth/password HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"current\":",
            server.token
        ),
        format!(
            "GET /api/tasks/{uuid}/result?format=txt HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\r\n",
            server.token
        ),
        format!(
            "GET /api/tasks/{}/pages/1/image HTTP/1.1\r\nHost: localhost\r\nCookie: ocrd_session={}\r\n\r\n",
            server.task_id, server.session
        ),
    ];
    // Hang up after sending, at once or a little later, many at a time: the server sees the
    // client go while its handler (and its database query) is in flight.
    let attempts: Vec<(Vec<u8>, u64)> = (0..200)
        .map(|i| match i % 5 {
            4 => {
                let (head, body) = upload_head(&server, 1 << 20);
                ([head, body].concat(), i % 3 * 20)
            }
            n => (cut_heads[n as usize].as_bytes().to_vec(), i % 3 * 20),
        })
        .collect();
    futures::stream::iter(attempts)
        .map(|(bytes, after_ms)| async move {
            let mut stream = TcpStream::connect(server.addr).await.unwrap();
            let _ = stream.write_all(&bytes).await;
            tokio::time::sleep(Duration::from_millis(after_ms)).await;
            drop(stream);
        })
        .buffer_unordered(24)
        .collect::<Vec<()>>()
        .await;
    server.assert_healthy().await;
    server.assert_only_the_setup_upload_is_stored().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_hang_up_mid_request_on_all_in_one() {
    clients_that_hang_up(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_hang_up_mid_request_on_serve() {
    clients_that_hang_up(Backend::Distributed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_upload_is_refused_before_its_body_is_read() {
    let server = Server::start(Backend::Embedded, |c| c.limits.max_upload_bytes = 1 << 20).await;
    // 10 GB declared, not a byte of it sent: the answer must come anyway.
    let (head, _) = upload_head(&server, 10 << 30);
    let answer = raw_exchange(server.addr, &head, Duration::from_secs(20)).await;
    assert_eq!(
        status_of(&answer),
        413,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(body_of(&answer)["error"]["code"], "payload_too_large");
    server.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_is_cut_off_and_nothing_is_kept() {
    for backend in [Backend::Embedded, Backend::Distributed] {
        let server = Server::start(backend, |c| c.server.upload_idle_secs = 2).await;
        let (head, body) = upload_head(&server, 1 << 20);
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(&head).await.unwrap();
        stream.write_all(&body).await.unwrap();
        // Then nothing: the server must give up on its own.
        let started = Instant::now();
        let answer = read_answer(&mut stream, Duration::from_secs(30)).await;
        assert_eq!(
            status_of(&answer),
            408,
            "{backend:?}: {}",
            String::from_utf8_lossy(&answer)
        );
        assert_eq!(body_of(&answer)["error"]["code"], "request_timeout");
        assert!(started.elapsed() < Duration::from_secs(25));
        server.assert_only_the_setup_upload_is_stored().await;
        server.assert_healthy().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_sent_a_byte_a_second_are_cut_off() {
    let server = Server::start(Backend::Embedded, |c| {
        c.server.client_request_timeout_secs = 2
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = b"GET /api/tasks HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let mut cut = false;
    for byte in head.iter() {
        if stream.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        // The server answers 408 and closes: a read sees it.
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            Ok(Ok(n)) => {
                assert_eq!(
                    status_of(&buf[..n]),
                    408,
                    "{}",
                    String::from_utf8_lossy(&buf[..n])
                );
                cut = true;
                break;
            }
            Err(_) => {}
        }
    }
    assert!(cut, "the server waited for all {} bytes", head.len());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "cut after {:?}",
        started.elapsed()
    );
    server.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_and_sockets_leave_room_for_more() {
    // Client and server share this process: 8000 descriptors and more.
    let limit = ocrd::process::raise_open_files_limit().unwrap();
    assert!(
        limit >= 10_000,
        "the hard limit on open files is {limit}; raise it (ulimit -Hn) to run this test"
    );
    // Thousands of sockets of one account from one address: capacity, not the `ws` limit.
    let server = Server::start(Backend::Embedded, |c| {
        c.rate_limits.ws_per_address = 0;
        c.rate_limits.ws_per_user = 0;
    })
    .await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut idle = Vec::new();
    for _ in 0..2000 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let answer = read_answer(&mut stream, Duration::from_secs(20)).await;
        assert_eq!(status_of(&answer), 200);
        idle.push(stream);
    }
    let ws = format!("ws://{}/ws", server.addr);
    let mut sockets = Vec::new();
    for _ in 0..2000 {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = ws.as_str().into_client_request().unwrap();
        request.headers_mut().insert(
            "Authorization",
            format!("Bearer {}", server.token).parse().unwrap(),
        );
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("WebSocket upgrade");
        sockets.push(socket);
    }
    server.assert_healthy().await;
    let listed = server
        .browser
        .get(server.url("/api/tasks"))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    drop((idle, sockets));
}

/// A 1-bit CCITT Group 4 TIFF of `width` × `height` white pixels: each row is one bit (V0
/// against the white row above), so a 9000 × 9000 page is about 1 KB.
pub fn blank_g4_tiff(width: u32, height: u32) -> Vec<u8> {
    let mut data = vec![0xFFu8; height as usize / 8];
    let rest = height % 8;
    let mut bits: Vec<bool> = (0..rest).map(|_| true).collect();
    // EOFB: two EOL codes, 000000000001 twice.
    for _ in 0..2 {
        bits.extend(std::iter::repeat_n(false, 11));
        bits.push(true);
    }
    for chunk in bits.chunks(8) {
        let mut byte = 0u8;
        for (i, &bit) in chunk.iter().enumerate() {
            byte |= u8::from(bit) << (7 - i);
        }
        data.push(byte);
    }
    let entries: [(u16, u16, u32); 8] = [
        (256, 4, width),
        (257, 4, height),
        (258, 3, 1),
        (259, 3, 4),
        (262, 3, 0),
        (273, 4, 8 + 2 + 8 * 12 + 4),
        (278, 4, height),
        (279, 4, data.len() as u32),
    ];
    let mut tiff = b"II*\0".to_vec();
    tiff.extend_from_slice(&8u32.to_le_bytes());
    tiff.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, kind, value) in entries {
        tiff.extend_from_slice(&tag.to_le_bytes());
        tiff.extend_from_slice(&kind.to_le_bytes());
        tiff.extend_from_slice(&1u32.to_le_bytes());
        tiff.extend_from_slice(&value.to_le_bytes());
    }
    tiff.extend_from_slice(&0u32.to_le_bytes());
    tiff.extend_from_slice(&data);
    tiff
}

/// A real `ocrd serve` on the embedded defaults (no worker: only the server's memory counts).
struct ServeProcess {
    child: std::process::Child,
    base: String,
    token: String,
    data_dir: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl ServeProcess {
    async fn start() -> ServeProcess {
        let dir = tempfile::tempdir().unwrap();
        // As an older version left it: readable by everyone.
        let data_dir = dir.path().join("data");
        std::fs::create_dir(&data_dir).unwrap();
        std::fs::set_permissions(
            &data_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let port = crate::install::free_port();
        let child = std::process::Command::new(crate::install::ocrd_bin())
            .arg("serve")
            .current_dir(dir.path())
            .env("OCRD_DATA_DIR", &data_dir)
            .env("OCRD_SERVER__BIND", format!("127.0.0.1:{port}"))
            .env("OCRD_OCR__MODELS_DIR", crate::install::models_dir())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        wait_for(
            Duration::from_secs(120),
            "ocrd serve to be ready",
            || async {
                let response = reqwest::get(format!("{base}/readyz")).await.ok()?;
                (response.status() == 200).then_some(())
            },
        )
        .await;
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let credentials =
            json!({"email": "owner@example.com", "password": "a long enough passphrase"});
        for step in ["register", "login"] {
            let answer = browser
                .post(format!("{base}/api/auth/{step}"))
                .json(&credentials)
                .send()
                .await
                .unwrap();
            assert!(answer.status().is_success(), "{step}: {}", answer.status());
        }
        let me: Value = browser
            .get(format!("{base}/api/auth/me"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let csrf = me["csrf_token"].as_str().unwrap_or_default().to_owned();
        let token = crate::support::create_token(&base, &browser, &csrf, "rss").await;
        ServeProcess {
            child,
            base,
            token,
            data_dir,
            _dir: dir,
        }
    }

    async fn upload(&self, name: &str, bytes: Vec<u8>) -> Value {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
        );
        let answer = reqwest::Client::new()
            .post(format!("{}/api/tasks", self.base))
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::ACCEPTED);
        answer.json().await.unwrap()
    }

    /// `count` requests for page 1's image, `parallel` at a time; their statuses.
    async fn page_images(&self, task_id: &str, count: usize, parallel: usize) -> Vec<u16> {
        let client = reqwest::Client::new();
        let url = format!("{}/api/tasks/{task_id}/pages/1/image", self.base);
        futures::stream::iter(0..count)
            .map(|_| {
                let request = client.get(&url).bearer_auth(&self.token).send();
                async move {
                    let answer = request.await.unwrap();
                    let status = answer.status().as_u16();
                    let _ = answer.bytes().await;
                    status
                }
            })
            .buffer_unordered(parallel)
            .collect()
            .await
    }

    fn peak_rss_mib(&self) -> f64 {
        ocrd::eval::peak_rss_mib(&self.child.id().to_string()).expect("VmHWM of ocrd serve")
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The attack of the report: a few KB of Group 4 TIFF claiming 81 MP, its page image asked
/// for 16 times, 8 at a time (it took a server from 0.36 GB to 5.07 GB). Then the same with a
/// page just within `limits.max_pixels`, which is converted: two at a time, once, then cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_image_route_stays_within_bounded_memory() {
    /// The stated bound on the server's peak RSS through both attacks.
    const BOUND_MIB: f64 = 500.0;
    let server = ServeProcess::start().await;
    let bomb = blank_g4_tiff(9000, 9000);
    assert!(bomb.len() < 6000, "{} bytes", bomb.len());
    let task = server.upload("bomb.tif", bomb).await;
    let statuses = server
        .page_images(task["id"].as_str().unwrap(), 16, 8)
        .await;
    assert!(statuses.iter().all(|&s| s == 422), "{statuses:?}");
    let after_bomb = server.peak_rss_mib();

    // 6000 × 7000 = 42 MP, under the default 48 MP: a real (blank) scan, converted.
    let large = server.upload("large.tif", blank_g4_tiff(6000, 7000)).await;
    let started = Instant::now();
    let statuses = server
        .page_images(large["id"].as_str().unwrap(), 16, 8)
        .await;
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let peak = server.peak_rss_mib();
    eprintln!(
        "page-image attack: peak RSS {after_bomb:.0} MiB after 16 × an 81 MP bomb (refused), \
         {peak:.0} MiB after 16 × a 42 MP page ({:.1} s); bound {BOUND_MIB} MiB",
        started.elapsed().as_secs_f64()
    );
    assert!(peak < BOUND_MIB, "peak RSS {peak:.0} MiB");
}

/// Mode bits of everything under `dir` that others could read or enter.
fn open_to_others(dir: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut open = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            open.push(format!("{} {mode:o}", path.display()));
        }
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    open
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_and_its_files_are_private() {
    let server = ServeProcess::start().await;
    let (page, _) = sample_pages().into_iter().next().unwrap();
    server
        .upload("page.png", std::fs::read(page).unwrap())
        .await;
    let files: Vec<String> = crate::support::walk(&server.data_dir)
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with("ocrd.db"))
            && files.iter().any(|f| f.ends_with("page.png")),
        "{files:?}"
    );
    let open = open_to_others(&server.data_dir);
    assert!(open.is_empty(), "readable by others: {open:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_and_token_names_lose_control_and_bidi_characters() {
    let server = Server::start(Backend::Embedded, |_| {}).await;
    let (page, _) = sample_pages().into_iter().next().unwrap();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(std::fs::read(page).unwrap())
            .file_name("evil\u{202e}gnp.exe"),
    );
    let task: Value = server
        .browser
        .post(server.url("/api/tasks"))
        .header("X-CSRF-Token", &server.csrf)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(task["filename"], "evilgnp.exe", "{task}");
    let token: Value = server
        .post_json("/api/tokens", json!({"name": "ci\u{0}bot\u{2066}\u{7}"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(token["name"], "cibot", "{token}");
    let only_controls = server
        .post_json("/api/tokens", json!({"name": "\u{0}\u{202e}"}))
        .await;
    assert_eq!(only_controls.status(), StatusCode::BAD_REQUEST);
    server.assert_healthy().await;
}
