//! The HTTP API over real HTTP: `ocrd::web` on a random port (and real `ocrd serve` processes
//! where a process is the point), real PostgreSQL, Redis and moto, and a real `ocrd work`.

use std::time::Duration;

use futures::StreamExt;
use ocrd::blobs::{BlobError, BlobKey};
use ocrd::db::DbError;
use ocrd::db::models::{File, Task, TaskResult};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use crate::install::{Install, free_port, sample_pages, wait_for};
use crate::support::unique;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The API of an install, served in process on a random port.
struct Api {
    install: Install,
    base: String,
}

impl Api {
    async fn start(tweak: impl FnOnce(&mut ocrd::config::Config)) -> Api {
        let install = Install::distributed(tweak).await;
        let addr = install.serve();
        Api {
            install,
            base: format!("http://{addr}"),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A browser-like client: keeps cookies.
    fn browser(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap()
    }

    /// Registers and signs in a new user; the client holds the session cookie.
    async fn signed_in(&self) -> User {
        let client = self.browser();
        let email = format!("{}@example.com", unique("user"));
        let password = "a long enough passphrase";
        let response = client
            .post(self.url("/api/auth/register"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{}",
            response.text().await.unwrap()
        );
        let login: Value = self
            .login(&client, &email, password)
            .await
            .json()
            .await
            .unwrap();
        User {
            client,
            email,
            id: login["user"]["id"].as_str().unwrap().to_owned(),
            csrf: login["csrf_token"].as_str().unwrap().to_owned(),
        }
    }

    async fn login(
        &self,
        client: &reqwest::Client,
        email: &str,
        password: &str,
    ) -> reqwest::Response {
        client
            .post(self.url("/api/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap()
    }

    fn ws_url(&self) -> String {
        format!("{}/ws", self.base.replace("http://", "ws://"))
    }

    async fn socket(&self, header: (&str, String)) -> Socket {
        let mut request = self.ws_url().into_client_request().unwrap();
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(header.0.as_bytes()).unwrap(),
            header.1.parse().unwrap(),
        );
        tokio_tungstenite::connect_async(request)
            .await
            .expect("WebSocket upgrade")
            .0
    }

    /// The session cookie the browser client holds, as a `Cookie` header value.
    fn cookie_header(&self, response_cookie: &str) -> (&'static str, String) {
        ("Cookie", format!("ocrd_session={response_cookie}"))
    }
}

struct User {
    client: reqwest::Client,
    email: String,
    id: String,
    csrf: String,
}

impl User {
    /// `GET` with this user's session.
    async fn get(&self, url: String) -> reqwest::Response {
        self.client.get(url).send().await.unwrap()
    }

    /// `POST /api/tasks` with this user's session and CSRF token.
    async fn upload(&self, tasks_url: String, name: &str, bytes: Vec<u8>) -> reqwest::Response {
        self.client
            .post(tasks_url)
            .header("X-CSRF-Token", &self.csrf)
            .multipart(page_form(name, bytes))
            .send()
            .await
            .unwrap()
    }
}

fn page_form(name: &str, bytes: Vec<u8>) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .text("formats", "html,txt,json")
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
        )
}

fn sample_page() -> (Vec<u8>, String) {
    let (path, truth) = sample_pages().into_iter().next().unwrap();
    (std::fs::read(path).unwrap(), truth)
}

/// The next `task.updated` event for `task_id` on the socket, if one comes within `wait`.
async fn next_event(socket: &mut Socket, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .ok()??
            .ok()?;
        if let tungstenite::Message::Text(text) = message {
            return Some(serde_json::from_str(&text).unwrap());
        }
    }
}

/// Reads events until `task_id` reaches `completed` (or fails); returns its statuses in order.
async fn statuses_until_done(socket: &mut Socket, task_id: &str) -> Vec<String> {
    let mut statuses: Vec<String> = Vec::new();
    while let Some(event) = next_event(socket, Duration::from_secs(300)).await {
        assert_eq!(event["type"], "task.updated");
        if event["task"]["id"] != task_id {
            continue;
        }
        let status = event["task"]["status"].as_str().unwrap().to_owned();
        if statuses.last() != Some(&status) {
            statuses.push(status.clone());
        }
        if status == "completed" || status == "failed" {
            return statuses;
        }
    }
    panic!("the socket closed or went quiet; statuses so far: {statuses:?}");
}

/// Upload → live events → result with CER ≤ 0.01 → delete → blobs and rows gone.
async fn journey(
    api: &Api,
    client: &reqwest::Client,
    auth: Vec<(&'static str, String)>,
    socket: &mut Socket,
) {
    let (bytes, truth) = sample_page();
    let mut upload = client
        .post(api.url("/api/tasks"))
        .multipart(page_form("page one.png", bytes));
    for (name, value) in &auth {
        upload = upload.header(*name, value);
    }
    let response = upload.send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "{}",
        response.text().await.unwrap()
    );
    let task: Value = response.json().await.unwrap();
    let id = task["id"].as_str().unwrap().to_owned();
    assert_eq!(task["status"], "queued");
    assert_eq!(task["filename"], "page one.png");

    let statuses = statuses_until_done(socket, &id).await;
    assert_eq!(statuses, ["queued", "processing", "completed"]);

    let with_auth = |mut r: reqwest::RequestBuilder| {
        for (name, value) in &auth {
            r = r.header(*name, value);
        }
        r
    };
    let task: Value = with_auth(client.get(api.url(&format!("/api/tasks/{id}"))))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(task["requested_formats"], json!(["html", "txt", "json"]));
    // Any format downloads once completed: those not asked for are made on demand.
    assert_eq!(
        task["formats"],
        json!(["html", "txt", "json", "pdf", "xml"])
    );
    let text = with_auth(client.get(api.url(&format!("/api/tasks/{id}/result?format=txt"))))
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), StatusCode::OK);
    assert!(
        text.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let cer = ocrd::eval::cer(&text.text().await.unwrap(), &truth);
    println!("journey CER {cer:.4}");
    assert!(cer <= 0.01, "CER {cer}");

    // What the task owns in storage and in the database, before it goes.
    let app = &api.install.app;
    let mut conn = app.db.get().await.unwrap();
    let stored = Task::find(&mut conn, &id).await.unwrap();
    let result = TaskResult::find_by_task(&mut conn, &id).await.unwrap();
    let file = File::find(&mut conn, &stored.file_id).await.unwrap();
    drop(conn);
    let mut keys: Vec<String> = result.blob_keys.0.values().cloned().collect();
    keys.push(file.blob_key.clone());

    let deleted = with_auth(client.delete(api.url(&format!("/api/tasks/{id}"))))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    for key in keys {
        let head = app.blobs.head(&BlobKey::parse(&key).unwrap()).await;
        assert!(
            matches!(head, Err(BlobError::NotFound(_))),
            "{key} is still stored: {head:?}"
        );
    }
    let mut conn = app.db.get().await.unwrap();
    assert!(matches!(
        Task::find(&mut conn, &id).await,
        Err(DbError::NotFound)
    ));
    assert!(matches!(
        TaskResult::find_by_task(&mut conn, &id).await,
        Err(DbError::NotFound)
    ));
    assert!(matches!(
        File::find(&mut conn, &file.id).await,
        Err(DbError::NotFound)
    ));
    let gone = with_auth(client.get(api.url(&format!("/api/tasks/{id}"))))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

fn session_cookie(response: &reqwest::Response) -> String {
    let header = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("ocrd_session=") || v.starts_with("__Host-ocrd_session="))
        .expect("a session cookie");
    header
        .split_once('=')
        .unwrap()
        .1
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journey_with_a_session_cookie() {
    let _turn = crate::worker::one_at_a_time().await;
    let api = Api::start(|_| {}).await;
    let _worker = api.install.spawn_worker("w", &[]);
    let client = api.browser();
    let email = format!("{}@example.com", unique("mia"));
    let registered = client
        .post(api.url("/api/auth/register"))
        .json(&json!({"email": email, "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);
    let login = api.login(&client, &email, "correct horse battery").await;
    assert_eq!(login.status(), StatusCode::OK);
    let cookie = session_cookie(&login);
    let set_cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );
    assert!(
        !set_cookie.contains("Secure"),
        "plain http install: {set_cookie}"
    );
    let csrf = login.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut socket = api.socket(api.cookie_header(&cookie)).await;
    journey(&api, &client, vec![("X-CSRF-Token", csrf)], &mut socket).await;

    // Heartbeats both ways, and a clean close handshake.
    use futures::SinkExt;
    socket
        .send(tungstenite::Message::Ping(b"hi".to_vec().into()))
        .await
        .unwrap();
    let pong = loop {
        match tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .unwrap()
        {
            Some(Ok(tungstenite::Message::Pong(bytes))) => break bytes,
            Some(Ok(_)) => continue,
            other => panic!("no pong: {other:?}"),
        }
    };
    assert_eq!(&pong[..], b"hi");
    socket.close(None).await.unwrap();
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .unwrap()
        {
            Some(Ok(tungstenite::Message::Close(_))) | None => break true,
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("unclean close: {e}"),
        }
    };
    assert!(closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journey_with_an_api_token_and_no_cookie() {
    let _turn = crate::worker::one_at_a_time().await;
    let api = Api::start(|_| {}).await;
    let _worker = api.install.spawn_worker("w", &[]);
    let user = api.signed_in().await;
    let created = user
        .client
        .post(api.url("/api/tokens"))
        .header("X-CSRF-Token", &user.csrf)
        .json(&json!({"name": "scanner"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let token = created.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(token.starts_with("ocrd_"));

    // A fresh client: no cookie store at all.
    let bare = reqwest::Client::new();
    let bearer = ("Authorization", format!("Bearer {token}"));
    let mut socket = api.socket(bearer.clone()).await;
    journey(&api, &bare, vec![bearer.clone()], &mut socket).await;

    // The token's use is recorded, and the token itself is never listed.
    let listed: Value = bare
        .get(api.url("/api/tokens"))
        .header(bearer.0, &bearer.1)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["tokens"][0]["name"], "scanner");
    assert!(listed["tokens"][0]["last_used_at"].is_string());
    assert!(!listed.to_string().contains(&token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_cases() {
    let _turn = crate::worker::one_at_a_time().await;
    let api = Api::start(|c| c.limits.max_upload_bytes = 1 << 20).await;
    let _worker = api.install.spawn_worker("w", &[]);
    let (a, b) = (api.signed_in().await, api.signed_in().await);

    // B listens while A works.
    let b_login = api
        .login(
            &reqwest::Client::new(),
            &b.email,
            "a long enough passphrase",
        )
        .await;
    let mut b_socket = api
        .socket(api.cookie_header(&session_cookie(&b_login)))
        .await;
    let a_login = api
        .login(&a.client, &a.email, "a long enough passphrase")
        .await;
    let a_csrf = a_login.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // A `<script>` file name comes back as JSON that never reads as markup.
    let (bytes, _) = sample_page();
    let name = "<script>alert(1)</script>.png";
    let created = a
        .client
        .post(api.url("/api/tasks"))
        .header("X-CSRF-Token", &a_csrf)
        .multipart(page_form(name, bytes.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::ACCEPTED);
    assert_eq!(created.headers()["content-type"], "application/json");
    let raw = created.text().await.unwrap();
    assert!(!raw.contains("<script>"), "{raw}");
    let task: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(task["filename"], name);
    let id = task["id"].as_str().unwrap().to_owned();
    let done = api
        .install
        .wait_finished(std::slice::from_ref(&id), Duration::from_secs(300))
        .await;
    assert_eq!(done[0].status, ocrd::db::models::TaskStatus::Completed);

    // hOCR is an attachment under a sandbox, never a page of this origin.
    let hocr = a
        .client
        .get(api.url(&format!("/api/tasks/{id}/result?format=html")))
        .send()
        .await
        .unwrap();
    assert_eq!(hocr.status(), StatusCode::OK);
    let disposition = hocr.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert!(!disposition.contains('<'), "{disposition}");
    assert!(
        hocr.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    assert_eq!(hocr.headers()["x-content-type-options"], "nosniff");

    // B: 404 on A's task, result and delete; B's socket saw none of A's events.
    for (method, path) in [
        ("GET", format!("/api/tasks/{id}")),
        ("GET", format!("/api/tasks/{id}/result?format=txt")),
        ("DELETE", format!("/api/tasks/{id}")),
    ] {
        let request = b
            .client
            .request(method.parse().unwrap(), api.url(&path))
            .header("X-CSRF-Token", &b.csrf);
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(
            response.json::<Value>().await.unwrap()["error"]["code"],
            "task_not_found"
        );
    }
    assert_eq!(
        next_event(&mut b_socket, Duration::from_secs(2)).await,
        None,
        "B saw an event of A's"
    );
    assert_eq!(
        api.install.task(&id).await.status,
        ocrd::db::models::TaskStatus::Completed
    );

    // A cookie-authenticated change without the CSRF token is refused.
    let no_csrf = a
        .client
        .delete(api.url(&format!("/api/tasks/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        no_csrf.json::<Value>().await.unwrap()["error"]["code"],
        "csrf_failed"
    );

    // SQL in query parameters is data, not SQL.
    for query in [
        "status=completed'%20OR%20'1'='1",
        "limit=1;DROP%20TABLE%20tasks",
        "status=queued%22;--",
    ] {
        let response = b
            .client
            .get(api.url(&format!("/api/tasks?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
    }
    let injected = b
        .client
        .get(api.url("/api/tasks?cursor=%27%20OR%20%271%27%3D%271"))
        .send()
        .await
        .unwrap();
    // Not a task id, so never part of a query.
    assert_eq!(injected.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        injected.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_request"
    );
    let foreign = b
        .client
        .get(api.url(&format!("/api/tasks?cursor={id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::OK);
    assert_eq!(
        foreign.json::<Value>().await.unwrap()["tasks"],
        json!([]),
        "B sees nothing of A's"
    );
    assert_eq!(
        api.install.task(&id).await.status,
        ocrd::db::models::TaskStatus::Completed,
        "tables intact"
    );

    // Too large: 413, and nothing stored. Wrong type: 415.
    let mut big = b"\x89PNG\r\n\x1a\n".to_vec();
    big.resize(3 << 20, 0);
    let too_big = b.upload(api.url("/api/tasks"), "big.png", big).await;
    assert_eq!(too_big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let text = b
        .upload(
            api.url("/api/tasks"),
            "notes.png",
            b"plain text, not an image".to_vec(),
        )
        .await;
    assert_eq!(text.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let b_uploads = api
        .install
        .app
        .blobs
        .list(&format!("uploads/{}", b.id))
        .await
        .unwrap();
    assert!(b_uploads.is_empty(), "{b_uploads:?}");

    // No credentials; a revoked token; a logged-out session: 401.
    let anonymous = reqwest::Client::new();
    assert_eq!(
        anonymous
            .get(api.url("/api/tasks"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let token: Value = b
        .client
        .post(api.url("/api/tokens"))
        .header("X-CSRF-Token", &b.csrf)
        .json(&json!({"name": "t"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = format!("Bearer {}", token["token"].as_str().unwrap());
    assert_eq!(
        anonymous
            .get(api.url("/api/tasks"))
            .header("Authorization", &bearer)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let revoked = b
        .client
        .delete(api.url(&format!("/api/tokens/{}", token["id"].as_str().unwrap())))
        .header("X-CSRF-Token", &b.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        anonymous
            .get(api.url("/api/tasks"))
            .header("Authorization", &bearer)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let fresh = api
        .login(
            &reqwest::Client::new(),
            &b.email,
            "a long enough passphrase",
        )
        .await;
    let old_cookie = format!("ocrd_session={}", session_cookie(&fresh));
    let old_csrf = fresh.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let logout = anonymous
        .post(api.url("/api/auth/logout"))
        .header("Cookie", &old_cookie)
        .header("X-CSRF-Token", &old_csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        anonymous
            .get(api.url("/api/tasks"))
            .header("Cookie", &old_cookie)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // A cookie-authenticated socket opened by another site's page is refused (cross-site
    // WebSocket hijacking); the same cookie from our own origin is fine.
    let b_cookie = session_cookie(
        &api.login(
            &reqwest::Client::new(),
            &b.email,
            "a long enough passphrase",
        )
        .await,
    );
    let mut foreign = api.ws_url().into_client_request().unwrap();
    foreign.headers_mut().insert(
        "Cookie",
        format!("ocrd_session={b_cookie}").parse().unwrap(),
    );
    foreign
        .headers_mut()
        .insert("Origin", "https://evil.example.net".parse().unwrap());
    match tokio_tungstenite::connect_async(foreign).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("a foreign origin must get 403: {other:?}"),
    }
    let mut own = api.ws_url().into_client_request().unwrap();
    own.headers_mut().insert(
        "Cookie",
        format!("ocrd_session={b_cookie}").parse().unwrap(),
    );
    own.headers_mut()
        .insert("Origin", api.base.parse().unwrap());
    assert!(tokio_tungstenite::connect_async(own).await.is_ok());
    // A socket without credentials is refused.
    let refused = tokio_tungstenite::connect_async(api.ws_url()).await;
    match refused {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("an unauthenticated upgrade must get 401: {other:?}"),
    }

    // The 6th bad login within the window is 429 with Retry-After.
    let guesser = reqwest::Client::new();
    for attempt in 1..=5 {
        let response = api.login(&guesser, &a.email, "wrong password!").await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    let blocked = api
        .login(&guesser, &a.email, "a long enough passphrase")
        .await;
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = blocked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_twice_is_one_task_one_blob_one_entry() {
    let api = Api::start(|_| {}).await;
    let user = api.signed_in().await;
    let (bytes, _) = sample_page();
    let mut ids = Vec::new();
    for expected in [StatusCode::ACCEPTED, StatusCode::OK] {
        let response = user
            .client
            .post(api.url("/api/tasks"))
            .header("X-CSRF-Token", &user.csrf)
            .header("Idempotency-Key", "scan-2026-11-29-001")
            .multipart(page_form("scan.png", bytes.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected);
        ids.push(
            response.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(ids[0], ids[1]);
    let uploads = api
        .install
        .app
        .blobs
        .list(&format!("uploads/{}", user.id))
        .await
        .unwrap();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(
        api.install.app.queue.waiting().await.unwrap(),
        1,
        "one queue entry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_both_deliver_events() {
    let install = Install::distributed(|_| {}).await;
    let ports = [free_port(), free_port()];
    let mut servers: Vec<std::process::Child> = ports
        .iter()
        .map(|port| {
            std::process::Command::new(crate::install::ocrd_bin())
                .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
                .current_dir(install.data_dir.path())
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .envs(install.env())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for port in ports {
        wait_for(
            Duration::from_secs(60),
            "ocrd serve to answer",
            || async move {
                reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
                    .await
                    .ok()
                    .filter(|r| r.status() == 200)
            },
        )
        .await;
    }
    let one = Api {
        install,
        base: format!("http://127.0.0.1:{}", ports[0]),
    };
    let user = one.signed_in().await;
    let login = one
        .login(
            &reqwest::Client::new(),
            &user.email,
            "a long enough passphrase",
        )
        .await;
    let cookie = session_cookie(&login);
    // The socket is on the other instance; the upload goes to the first.
    let two = format!("ws://127.0.0.1:{}/ws", ports[1]);
    let mut request = two.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Cookie", format!("ocrd_session={cookie}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    // Its subscription to Redis is asynchronous: upload until an event arrives.
    let (bytes, _) = sample_page();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let event = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no event reached the other instance"
        );
        let response = user
            .upload(one.url("/api/tasks"), "p.png", bytes.clone())
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        if let Some(event) = next_event(&mut socket, Duration::from_secs(2)).await {
            break event;
        }
    };
    assert_eq!(event["type"], "task.updated");
    assert_eq!(event["task"]["status"], "queued");
    assert_eq!(event["task"]["user_id"], user.id.as_str());
    for server in &mut servers {
        let _ = server.kill();
        let _ = server.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_in_the_openapi_document_and_the_docs_need_no_cdn() {
    let api = Api::start(|c| c.server.cors_origins = vec!["https://app.example.com".into()]).await;
    let doc: Value = reqwest::get(api.url("/api/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    for (method, path) in ocrd::web::ROUTES {
        let operation = &doc["paths"][*path][*method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        // A path parameter is one the path names; everything else is query or header.
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            let (name, place) = (
                parameter["name"].as_str().unwrap(),
                parameter["in"].as_str().unwrap(),
            );
            let in_path = path.contains(&format!("{{{name}}}"));
            assert_eq!(
                place == "path",
                in_path,
                "{method} {path}: `{name}` is declared in: {place}"
            );
        }
    }
    // An independent validator of the OpenAPI 3.1 schema (openapi-spec-validator, PyPI).
    let validator = crate::ocr::repo().join("target/test-venv/bin/openapi-spec-validator");
    assert!(
        validator.exists(),
        "{} is missing: run the tests with `make test` (scripts/test.sh installs tests/requirements.txt)",
        validator.display()
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = std::process::Command::new(&validator)
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the OpenAPI document is invalid: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let documented: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented,
        ocrd::web::ROUTES.len(),
        "the document lists routes that do not exist"
    );
    assert!(
        doc["info"]["description"]
            .as_str()
            .unwrap()
            .contains("`task_not_found`"),
        "the error-code table"
    );

    let page = reqwest::get(api.url("/api/docs")).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let script = reqwest::get(api.url("/api/docs.js"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for text in [&html, &script] {
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "no external resources"
        );
    }
    assert!(html.contains("<script src=\"/api/docs.js\">"));

    // A route with other methods answers 405 and says which (TRACE included); no route, 404.
    let http = reqwest::Client::new();
    for (method, path, allow) in [
        ("TRACE", "/api/tasks", Some("POST, GET")),
        (
            "PUT",
            "/api/tasks/0123456789abcdef0123456789abcdef",
            Some("GET, DELETE"),
        ),
        ("DELETE", "/api/tokens", Some("POST, GET")),
        ("PATCH", "/api/no-such-route", None),
    ] {
        let response = http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                api.url(path),
            )
            .send()
            .await
            .unwrap();
        match allow {
            Some(allow) => {
                assert_eq!(
                    response.status(),
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}"
                );
                assert_eq!(response.headers()["allow"], allow, "{method} {path}");
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"]["code"], "method_not_allowed");
            }
            None => assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}"),
        }
    }

    // Text responses are compressed for clients that ask.
    let gzipped = reqwest::Client::new()
        .get(api.url("/api/openapi.json"))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let brotli = reqwest::Client::new()
        .get(api.url("/api/openapi.json"))
        .header("Accept-Encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(brotli.headers()["content-encoding"], "br");

    // CORS: only configured origins get an allowing answer.
    let preflight = |origin: &'static str| {
        reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, api.url("/api/tasks"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let other = preflight("https://evil.example.net").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // Operations: health, readiness, and request metrics by route.
    assert_eq!(
        reqwest::get(api.url("/healthz")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        reqwest::get(api.url("/readyz")).await.unwrap().status(),
        StatusCode::OK
    );
    let unknown = reqwest::get(api.url("/no/such/route")).await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
    let metrics = reqwest::get(api.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "ocrd_http_requests_total{method=\"GET\",route=\"/api/openapi.json\",status=\"200\"} 3"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "ocrd_http_request_duration_seconds_count{method=\"GET\",route=\"/healthz\"}"
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_policies_first_admin_and_session_rotation() {
    let api = Api::start(|c| {
        c.auth.registration = ocrd::config::Registration::Invite;
        c.auth.invite_code = ocrd::config::Secret::new("let-me-in");
        c.server.public_url = Some("https://ocr.example.com".into());
    })
    .await;
    // An install without accounts (the harness made one; it goes).
    let mut conn = api.install.app.db.get().await.unwrap();
    ocrd::db::models::User::delete(&mut conn, &api.install.user.id)
        .await
        .unwrap();
    drop(conn);
    let client = api.browser();
    let register = |email: &str, password: &str, invite: Option<&str>| {
        client
            .post(api.url("/api/auth/register"))
            .json(&json!({"email": email, "password": password, "invite_code": invite}))
            .send()
    };
    let no_invite = register("first@example.com", "a long enough passphrase", None)
        .await
        .unwrap();
    assert_eq!(no_invite.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        no_invite.json::<Value>().await.unwrap()["error"]["code"],
        "registration_closed"
    );
    let weak = register("first@example.com", "password123", Some("let-me-in"))
        .await
        .unwrap();
    assert_eq!(
        weak.json::<Value>().await.unwrap()["error"]["code"],
        "weak_password"
    );
    let first: Value = register(
        "First@Example.com",
        "a long enough passphrase",
        Some("let-me-in"),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        first["user"]["role"], "admin",
        "the first account administers the install"
    );
    assert_eq!(first["user"]["email"], "first@example.com");
    let second: Value = register(
        "second@example.com",
        "another long passphrase",
        Some("let-me-in"),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(second["user"]["role"], "user");
    let taken = register(
        "FIRST@example.com",
        "a long enough passphrase",
        Some("let-me-in"),
    )
    .await
    .unwrap();
    assert_eq!(taken.status(), StatusCode::CONFLICT);

    // Over https the cookie is Secure, with the __Host- prefix; every login gets a new session
    // and ends the old one.
    let first_login = api
        .login(&client, "first@example.com", "a long enough passphrase")
        .await;
    assert!(
        first_login.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Secure")
    );
    assert!(
        first_login.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("__Host-ocrd_session=")
    );
    let old = session_cookie(&first_login);
    let again = client
        .post(api.url("/api/auth/login"))
        .header("Cookie", format!("__Host-ocrd_session={old}"))
        .json(&json!({"email": "first@example.com", "password": "a long enough passphrase"}))
        .send()
        .await
        .unwrap();
    let new = session_cookie(&again);
    assert_ne!(old, new);
    let with = |cookie: &str| {
        reqwest::Client::new()
            .get(api.url("/api/auth/me"))
            .header("Cookie", format!("__Host-ocrd_session={cookie}"))
            .send()
    };
    assert_eq!(with(&old).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(with(&new).await.unwrap().status(), StatusCode::OK);
}

#[test]
fn admin_create_user_reads_the_password_from_stdin() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: &str| {
        let mut child = std::process::Command::new(crate::install::ocrd_bin())
            .args(args)
            .current_dir(dir.path())
            .env("OCRD_DATA_DIR", dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let created = run(
        &[
            "admin",
            "create-user",
            "--email",
            "Root@Example.com",
            "--admin",
        ],
        "a long enough passphrase\n",
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    assert!(String::from_utf8_lossy(&created.stdout).contains("root@example.com (admin)"));
    let weak = run(
        &["admin", "create-user", "--email", "b@example.com"],
        "123456\n",
    );
    assert!(!weak.status.success());
    assert!(
        String::from_utf8_lossy(&weak.stderr).contains("at least"),
        "{}",
        String::from_utf8_lossy(&weak.stderr)
    );
    let listed = run(&["admin", "list-users"], "");
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.contains("root@example.com\tadmin\tactive"),
        "{listed}"
    );
    assert!(!listed.contains("b@example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_redirect_to_presigned_urls_when_configured() {
    let _turn = crate::worker::one_at_a_time().await;
    let api = Api::start(|c| c.storage.presign_ttl_secs = 60).await;
    let _worker = api.install.spawn_worker("w", &[]);
    let user = api.signed_in().await;
    let (bytes, truth) = sample_page();
    let created: Value = user
        .upload(api.url("/api/tasks"), "p.png", bytes)
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    api.install
        .wait_finished(std::slice::from_ref(&id), Duration::from_secs(300))
        .await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    let token: Value = user
        .client
        .post(api.url("/api/tokens"))
        .header("X-CSRF-Token", &user.csrf)
        .json(&json!({"name": "t"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let response = no_redirects
        .get(api.url(&format!("/api/tasks/{id}/result?format=txt")))
        .bearer_auth(token["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("X-Amz-Signature="), "{location}");
    let fetched = reqwest::get(&location).await.unwrap();
    assert_eq!(fetched.headers()["x-amz-server-side-encryption"], "aws:kms");
    assert!(ocrd::eval::cer(&fetched.text().await.unwrap(), &truth) <= 0.01);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_running_task_cancels_it_and_leaves_nothing_behind() {
    let _turn = crate::worker::one_at_a_time().await;
    let api = Api::start(|_| {}).await;
    let worker = api.install.spawn_worker("w", &[]);
    let user = api.signed_in().await;
    let (bytes, _) = sample_page();
    let created: Value = user
        .upload(api.url("/api/tasks"), "p.png", bytes)
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    wait_for(Duration::from_secs(300), "the task to start", || async {
        (api.install.task(&id).await.status != ocrd::db::models::TaskStatus::Queued).then_some(())
    })
    .await;
    let deleted = user
        .client
        .delete(api.url(&format!("/api/tasks/{id}")))
        .header("X-CSRF-Token", &user.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    // Whatever the worker was doing, nothing of the task stays: no rows, no objects.
    let prefixes = [
        format!("uploads/{}", user.id),
        format!("results/{}", user.id),
    ];
    wait_for(
        Duration::from_secs(60),
        "the task's objects to be gone",
        || async {
            let mut left = Vec::new();
            for prefix in &prefixes {
                left.extend(api.install.app.blobs.list(prefix).await.unwrap());
            }
            left.is_empty().then_some(())
        },
    )
    .await;
    // And they stay gone once the worker has noticed and stopped: it notices at once, but
    // stops at its next page boundary, which on a busy machine can be minutes away.
    wait_for(
        Duration::from_secs(300),
        "the worker to drop the task",
        || async {
            worker
                .log_text()
                .contains("lease lost (cancelled, deleted or taken over); stopped")
                .then_some(())
        },
    )
    .await;
    for prefix in &prefixes {
        assert!(
            api.install.app.blobs.list(prefix).await.unwrap().is_empty(),
            "{prefix}"
        );
    }
    let mut conn = api.install.app.db.get().await.unwrap();
    assert!(matches!(
        Task::find(&mut conn, &id).await,
        Err(DbError::NotFound)
    ));
    api.install.assert_temp_empty_soon().await;
    // The steps it took after the deletion had no timeline to go to, and that is no warning.
    let log = worker.log_text();
    assert!(
        !log.contains("could not add to the task's timeline"),
        "{log}"
    );
}

/// `POST /api/auth/password` as `user`.
async fn change_password(api: &Api, user: &User, current: &str, new: &str) -> reqwest::Response {
    user.client
        .post(api.url("/api/auth/password"))
        .header("X-CSRF-Token", &user.csrf)
        .json(&json!({"current_password": current, "new_password": new}))
        .send()
        .await
        .unwrap()
}

async fn me_status(api: &Api, client: &reqwest::Client) -> StatusCode {
    client
        .get(api.url("/api/auth/me"))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_or_resetting_a_password_ends_every_earlier_session() {
    let api = Api::start(|_| {}).await;
    let mut user = api.signed_in().await;
    let old = "a long enough passphrase";
    let elsewhere = api.browser();
    assert_eq!(api.login(&elsewhere, &user.email, old).await.status(), 200);

    let app = &api.install.app;
    let account = {
        let mut conn = app.db.get().await.unwrap();
        ocrd::db::models::User::find(&mut conn, &user.id)
            .await
            .unwrap()
    };
    let (early_link, _) = ocrd::auth::issue_reset_link(app, &account, chrono::TimeDelta::hours(1))
        .await
        .unwrap();

    let wrong = change_password(&api, &user, "not my password", "another long passphrase").await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_credentials"
    );
    let weak = change_password(&api, &user, old, "short").await;
    assert_eq!(
        weak.json::<Value>().await.unwrap()["error"]["code"],
        "weak_password"
    );
    let changed = change_password(&api, &user, old, "another long passphrase").await;
    assert_eq!(changed.status(), 200);
    let body: Value = changed.json().await.unwrap();
    assert_ne!(body["csrf_token"], json!(user.csrf), "a new session");
    user.csrf = body["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(
        me_status(&api, &user.client).await,
        200,
        "this browser stays signed in"
    );
    assert_eq!(
        me_status(&api, &elsewhere).await,
        401,
        "the other session ended"
    );
    let early_token = early_link.rsplit_once("/reset/").unwrap().1;
    let early = api
        .browser()
        .post(api.url("/api/auth/reset"))
        .json(&json!({"token": early_token, "password": "an attacker's passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(early.status(), 404, "a link from before the change is void");

    // An administrator's one-time link, from the CLI.
    let output = std::process::Command::new(crate::install::ocrd_bin())
        .args([
            "admin",
            "reset-password",
            "--email",
            &user.email.to_uppercase(),
        ])
        .envs(api.install.env())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let link = String::from_utf8(output.stdout).unwrap();
    let token = link.trim().rsplit_once("/reset/").unwrap().1.to_owned();
    let form = api
        .browser()
        .get(api.url(&format!("/reset/{token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    assert!(form.text().await.unwrap().contains("reset-form"));

    let reset = |password: &'static str| {
        let client = api.browser();
        let url = api.url("/api/auth/reset");
        let token = token.clone();
        async move {
            client
                .post(url)
                .json(&json!({"token": token, "password": password}))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(reset("short").await.status(), 400);
    assert_eq!(reset("a third long passphrase").await.status(), 204);
    let again = reset("a fourth long passphrase").await;
    assert_eq!(again.status(), 404);
    assert_eq!(
        again.json::<Value>().await.unwrap()["error"]["code"],
        "reset_link_invalid"
    );
    let used = api
        .browser()
        .get(api.url(&format!("/reset/{token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(used.status(), 404, "a used link shows the error page");

    assert_eq!(
        me_status(&api, &user.client).await,
        401,
        "the reset ended the session"
    );
    let fresh = api.browser();
    assert_eq!(
        api.login(&fresh, &user.email, "another long passphrase")
            .await
            .status(),
        401
    );
    assert_eq!(
        api.login(&fresh, &user.email, "a third long passphrase")
            .await
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_requeues_a_cancelled_task_and_page_images_are_served() {
    let api = Api::start(|_| {}).await;
    let user = api.signed_in().await;
    let (png, _) = sample_page();
    let task: Value = user
        .upload(api.url("/api/tasks"), "page.png", png.clone())
        .await
        .json()
        .await
        .unwrap();
    let id = task["id"].as_str().unwrap();
    let retry_url = api.url(&format!("/api/tasks/{id}/retry"));
    let retry = || {
        user.client
            .post(&retry_url)
            .header("X-CSRF-Token", &user.csrf)
            .send()
    };
    let queued = retry().await.unwrap();
    assert_eq!(queued.status(), 409);
    assert_eq!(
        queued.json::<Value>().await.unwrap()["error"]["code"],
        "not_retryable"
    );
    {
        let mut conn = api.install.app.db.get().await.unwrap();
        Task::cancel(&mut conn, id).await.unwrap().unwrap();
    }
    let retried = retry().await.unwrap();
    assert_eq!(retried.status(), 202);
    assert_eq!(retried.json::<Value>().await.unwrap()["status"], "queued");
    let other = api.signed_in().await;
    let stranger = other
        .client
        .post(&retry_url)
        .header("X-CSRF-Token", &other.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), 404);

    // A PNG is served as uploaded; a TIFF page is converted to PNG; no page 2.
    let image = user
        .client
        .get(api.url(&format!("/api/tasks/{id}/pages/1/image")))
        .send()
        .await
        .unwrap();
    assert_eq!(image.headers()["content-type"], "image/png");
    assert_eq!(image.bytes().await.unwrap().as_ref(), png.as_slice());
    let missing = user
        .client
        .get(api.url(&format!("/api/tasks/{id}/pages/2/image")))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["error"]["code"],
        "page_not_found"
    );
    let decoded = image::load_from_memory(&png).unwrap();
    let mut tiff = Vec::new();
    decoded
        .write_to(
            &mut std::io::Cursor::new(&mut tiff),
            image::ImageFormat::Tiff,
        )
        .unwrap();
    let task: Value = user
        .upload(api.url("/api/tasks"), "page.tiff", tiff)
        .await
        .json()
        .await
        .unwrap();
    let converted = user
        .client
        .get(api.url(&format!(
            "/api/tasks/{}/pages/1/image",
            task["id"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(converted.headers()["content-type"], "image/png");
    let page = image::load_from_memory(&converted.bytes().await.unwrap()).unwrap();
    let scale = decoded.width().max(decoded.height()) as f64 / 2400.0;
    let expect = |side: u32| {
        if scale > 1.0 {
            (side as f64 / scale).round() as u32
        } else {
            side
        }
    };
    assert!(
        page.width().abs_diff(expect(decoded.width())) <= 1,
        "{}",
        page.width()
    );
    assert!(
        page.height().abs_diff(expect(decoded.height())) <= 1,
        "{}",
        page.height()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protected_pdf_uploads_with_its_password_and_comes_back_as_searchable_pdf_and_alto() {
    let _turn = crate::worker::one_at_a_time().await;
    let api = Api::start(|_| {}).await;
    let _worker = api.install.spawn_worker("w", &[]);
    let user = api.signed_in().await;
    let pdf =
        std::fs::read(crate::ocr::repo().join("tests/fixtures/pdf/encrypted_text.pdf")).unwrap();
    // Workers run the configured engine: another is refused at the door.
    let other = reqwest::multipart::Form::new()
        .text("engine", "qwen3vl")
        .part(
            "file",
            reqwest::multipart::Part::bytes(pdf.clone()).file_name("minutes.pdf"),
        );
    let refused = user
        .client
        .post(api.url("/api/tasks"))
        .header("X-CSRF-Token", &user.csrf)
        .multipart(other)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "invalid_request");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`qwen3vl` is not served here"),
        "{refused}"
    );
    let form = reqwest::multipart::Form::new()
        .text("formats", "txt,pdf,alto")
        .text("password", "secret")
        .part(
            "file",
            reqwest::multipart::Part::bytes(pdf).file_name("minutes.pdf"),
        );
    let created = user
        .client
        .post(api.url("/api/tasks"))
        .header("X-CSRF-Token", &user.csrf)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::ACCEPTED);
    let raw = created.text().await.unwrap();
    assert!(
        !raw.contains("secret"),
        "the password is never sent back: {raw}"
    );
    let id = serde_json::from_str::<Value>(&raw).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    api.install
        .wait_finished(std::slice::from_ref(&id), Duration::from_secs(300))
        .await;

    let task: Value = user
        .get(api.url(&format!("/api/tasks/{id}")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["requested_formats"], json!(["txt", "pdf", "xml"]));
    assert_eq!(task["warnings"], json!([]), "no page failed");
    assert!(!task.to_string().contains("secret"));

    let alto = user
        .get(api.url(&format!("/api/tasks/{id}/result?format=xml")))
        .await;
    assert_eq!(alto.status(), StatusCode::OK);
    assert_eq!(
        alto.headers()["content-type"],
        "application/xml; charset=utf-8"
    );
    let alto = alto.text().await.unwrap();
    assert!(
        alto.contains("CONTENT=\"Confidential\"") && alto.contains("CONTENT=\"48,500\""),
        "{alto}"
    );

    let pdf = user
        .get(api.url(&format!("/api/tasks/{id}/result?format=pdf")))
        .await;
    assert_eq!(pdf.status(), StatusCode::OK);
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    let disposition = pdf.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.starts_with("attachment") && disposition.contains("minutes.pdf"),
        "{disposition}"
    );
    let body = pdf.bytes().await.unwrap();
    assert!(body.starts_with(b"%PDF-"));
    // Decrypted: it opens without the password.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &body).unwrap();
    let reading = ocrd::document::ReadOptions::policy(ocrd::document::OcrPolicy::Skip);
    let page = ocrd::document::open(file.path(), Default::default(), &reading)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let ocrd::document::PageInput::Text(page) = page else {
        panic!("a text page")
    };
    assert_eq!(
        page.lines().next().unwrap().text(),
        "Confidential minutes of 12 March 2024"
    );
}

/// `lang` at upload: checked at the door, carried to the worker, and used there. Masked to
/// Latin (the default), a receipt has none of the full-width strays the unmasked decoder reads
/// on it; a script the models lack fails the task with a message that says so. The JSON
/// result of a page turned sideways and skewed says how it was read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_choose_the_scripts_read_and_the_json_reports_orientation_and_skew() {
    let _turn = crate::worker::one_at_a_time().await;
    let api = Api::start(|_| {}).await;
    let _worker = api.install.spawn_worker("w", &[]);
    let user = api.signed_in().await;
    let eval = crate::ocr::repo().join("../shared/eval");
    let receipt = std::fs::read(eval.join("real-public/001.jpg")).unwrap();
    let turned = std::fs::read(eval.join("skew/page_005.png")).unwrap();
    let submit = |lang: Option<String>, name: &'static str, bytes: Vec<u8>| {
        let mut form = reqwest::multipart::Form::new().text("formats", "txt,json");
        if let Some(lang) = lang {
            form = form.text("lang", lang);
        }
        let form = form.part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name),
        );
        user.client
            .post(api.url("/api/tasks"))
            .header("X-CSRF-Token", &user.csrf)
            .multipart(form)
            .send()
    };

    // Unknown, empty, broken and hostile names are refused before anything is stored, and
    // the message echoes none of their control or bidi characters.
    for bad in [
        "klingon".to_owned(),
        String::new(),
        ",".to_owned(),
        "latin,,greek".to_owned(),
        "lat\u{0}in".to_owned(),
        "\u{202e}cjk".to_owned(),
        "latin,".repeat(100),
    ] {
        let refused = submit(Some(bad.clone()), "r.jpg", receipt.clone())
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        let refused: Value = refused.json().await.unwrap();
        assert_eq!(refused["error"]["code"], "invalid_request", "{refused}");
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(
            message
                .to_lowercase()
                .contains("lang must be latin, english"),
            "{bad:?}: {refused}"
        );
        assert!(!message.contains(['\u{0}', '\u{202e}']), "{refused}");
    }
    let listed: Value = user.get(api.url("/api/tasks")).await.json().await.unwrap();
    assert_eq!(listed["tasks"], json!([]), "nothing was stored: {listed}");

    let mut ids = Vec::new();
    for (lang, name, bytes) in [
        (None, "receipt.jpg", receipt.clone()),
        (Some("all"), "receipt.jpg", receipt.clone()),
        (Some("cyrillic"), "receipt.jpg", receipt),
        (None, "sideways.png", turned),
    ] {
        let created = submit(lang.map(str::to_owned), name, bytes).await.unwrap();
        assert_eq!(created.status(), StatusCode::ACCEPTED);
        let created: Value = created.json().await.unwrap();
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    api.install
        .wait_finished(&ids, Duration::from_secs(300))
        .await;
    let text = |id: String| {
        let user = &user;
        let url = api.url(&format!("/api/tasks/{id}/result?format=txt"));
        async move { user.get(url).await.text().await.unwrap() }
    };
    let full_width = |s: &str| s.chars().any(|c| ('\u{3000}'..='\u{ffef}').contains(&c));
    let (latin, all) = (text(ids[0].clone()).await, text(ids[1].clone()).await);
    assert!(latin.contains("TIME"), "{latin}");
    assert!(!full_width(&latin), "read as Latin:\n{latin}");
    assert!(
        full_width(&all),
        "read unmasked, the receipt has strays:\n{all}"
    );

    let cyrillic: Value = user
        .get(api.url(&format!("/api/tasks/{}", ids[2])))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        cyrillic
            .to_string()
            .contains("reads no cyrillic characters"),
        "{cyrillic}"
    );

    let json: Value = user
        .get(api.url(&format!("/api/tasks/{}/result?format=json", ids[3])))
        .await
        .json()
        .await
        .unwrap();
    let page = &json["pages"][0];
    assert_eq!(page["rotation"], 90, "{page}");
    let skew = page["skew"].as_f64().unwrap();
    assert!((skew - -0.44).abs() < 0.3, "skew {skew}");
}

/// Owners cancel a running task: it stops at its next page, ends `cancelled` with its
/// checkpoints gone, and the owner hears it live. A completed task downloads in every format
/// (one not asked for is rendered once, then served stored), has a thumbnail, counts its
/// text-layer pages and gives back its original; a repeat upload names the earlier task; and
/// deleting the task removes what was made on demand too. On PostgreSQL, Redis and S3, with a
/// real `ocrd work`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_cancel_running_tasks_and_download_any_format_the_thumbnail_and_the_original() {
    let _turn = crate::worker::one_at_a_time().await;
    let api = Api::start(|_| {}).await;
    let worker = api.install.spawn_worker("w", &[]);
    let user = api.signed_in().await;
    let token = crate::support::create_token(&api.base, &user.client, &user.csrf, "ws").await;
    let bearer = ("Authorization", format!("Bearer {token}"));
    let mut socket = api.socket(bearer).await;
    let other = api.signed_in().await;
    let post = |who: &User, path: String| {
        who.client
            .post(api.url(&path))
            .header("X-CSRF-Token", &who.csrf)
            .send()
    };

    // A born-digital PDF, asking for text only.
    let pdf = std::fs::read(crate::ocr::repo().join("../shared/eval/pdf/born_digital_01.pdf"))
        .expect("the shared eval set's born-digital PDF");
    let upload = |bytes: Vec<u8>| {
        user.client
            .post(api.url("/api/tasks"))
            .header("X-CSRF-Token", &user.csrf)
            .multipart(reqwest::multipart::Form::new().text("formats", "txt").part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name("born.pdf"),
            ))
            .send()
    };
    let first: Value = upload(pdf.clone()).await.unwrap().json().await.unwrap();
    let id = first["id"].as_str().unwrap().to_owned();
    assert!(first.get("duplicate_of").is_none(), "{first}");
    let done = api
        .install
        .wait_finished(std::slice::from_ref(&id), Duration::from_secs(300))
        .await;
    assert_eq!(done[0].status, ocrd::db::models::TaskStatus::Completed);
    let view: Value = user
        .get(api.url(&format!("/api/tasks/{id}")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["requested_formats"], json!(["txt"]), "{view}");
    assert_eq!(
        view["formats"],
        json!(["html", "txt", "json", "pdf", "xml"]),
        "{view}"
    );
    assert_eq!(view["content_type"], "application/pdf");
    assert_eq!(view["file_size"], json!(pdf.len()));
    assert_eq!(view["thumbnail"], json!(true), "{view}");
    assert!(view["text_layer_pages"].as_i64().unwrap() >= 1, "{view}");
    assert!(view["mean_confidence"].as_f64().is_some(), "{view}");

    // hOCR was not asked for: rendered on the first download, then the same bytes stored.
    let stored = |ext: &str| {
        let ext = ext.to_owned();
        let (blobs, user_id, id) = (api.install.app.blobs.clone(), user.id.clone(), id.clone());
        async move {
            blobs
                .list(&format!("results/{user_id}"))
                .await
                .unwrap()
                .into_iter()
                .any(|k| k.ends_with(&format!("{id}/result.{ext}")))
        }
    };
    assert!(!stored("html").await);
    let hocr_url = api.url(&format!("/api/tasks/{id}/result?format=hocr"));
    let hocr = user.get(hocr_url.clone()).await;
    assert_eq!(hocr.status(), 200);
    assert!(
        hocr.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"born.html\"")
    );
    let hocr = hocr.text().await.unwrap();
    assert!(hocr.contains("ocrx_word"), "{hocr}");
    assert!(stored("html").await, "the rendered hOCR is stored");
    api.install.assert_no_orphans().await;
    assert_eq!(user.get(hocr_url).await.text().await.unwrap(), hocr);
    let searchable = user
        .get(api.url(&format!("/api/tasks/{id}/result?format=pdf&stream=true")))
        .await;
    assert_eq!(searchable.status(), 200);
    assert!(searchable.bytes().await.unwrap().starts_with(b"%PDF-"));
    let thumbnail = user
        .get(api.url(&format!("/api/tasks/{id}/thumbnail")))
        .await;
    assert_eq!(thumbnail.headers()["content-type"], "image/jpeg");
    let picture = image::load_from_memory(&thumbnail.bytes().await.unwrap()).unwrap();
    assert_eq!(picture.width().max(picture.height()), 240);
    let original = user.get(api.url(&format!("/api/tasks/{id}/file"))).await;
    assert_eq!(original.status(), 200);
    assert_eq!(original.headers()["content-type"], "application/pdf");
    assert_eq!(
        original.headers()["content-disposition"],
        "attachment; filename=\"born.pdf\""
    );
    assert_eq!(original.bytes().await.unwrap().as_ref(), pdf.as_slice());
    for path in ["file", "thumbnail", "result?format=pdf"] {
        let stranger = other.get(api.url(&format!("/api/tasks/{id}/{path}"))).await;
        assert_eq!(stranger.status(), 404, "{path}");
    }
    let refused = post(&user, format!("/api/tasks/{id}/cancel"))
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"]["code"],
        "not_cancellable"
    );
    let stranger = post(&other, format!("/api/tasks/{id}/cancel"))
        .await
        .unwrap();
    assert_eq!(stranger.status(), 404);

    // The same bytes again: accepted, naming the earlier task.
    let again: Value = upload(pdf.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(again["duplicate_of"], json!(id), "{again}");

    // A six-page scan, cancelled once its first page is done.
    let page = image::open(&sample_pages()[0].0).unwrap().to_rgb8();
    let scan = crate::pdf::image_pdf(&vec![page; 6], 200.0);
    let running: Value = upload(scan).await.unwrap().json().await.unwrap();
    let running = running["id"].as_str().unwrap().to_owned();
    wait_for(
        Duration::from_secs(300),
        "the first page of the scan",
        || async { (api.install.task(&running).await.pages_done >= 1).then_some(()) },
    )
    .await;
    let cancelled = post(&user, format!("/api/tasks/{running}/cancel"))
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 200);
    assert_eq!(
        cancelled.json::<Value>().await.unwrap()["status"],
        "cancelled"
    );
    let mut heard = false;
    while let Some(event) = next_event(&mut socket, Duration::from_secs(30)).await {
        if event["task"]["id"] == running.as_str() && event["task"]["status"] == "cancelled" {
            heard = true;
            break;
        }
    }
    assert!(heard, "the owner hears of the cancellation live");
    wait_for(
        Duration::from_secs(120),
        "the worker to stop the task",
        || async { worker.log_text().contains("lease lost").then_some(()) },
    )
    .await;
    let task = api.install.task(&running).await;
    assert_eq!(task.status, ocrd::db::models::TaskStatus::Cancelled);
    assert!(
        task.pages_done < 6,
        "it stopped early: {} pages",
        task.pages_done
    );
    let checkpoints = BlobKey::checkpoints(&task.user_id, task.created_at, &task.id);
    wait_for(
        Duration::from_secs(60),
        "the checkpoints to be removed",
        || async {
            api.install
                .app
                .blobs
                .list(&checkpoints)
                .await
                .unwrap()
                .is_empty()
                .then_some(())
        },
    )
    .await;

    // Deleting the first task removes what was made on demand as well.
    let deleted = user
        .client
        .delete(api.url(&format!("/api/tasks/{id}")))
        .header("X-CSRF-Token", &user.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    for ext in ["html", "pdf", "txt", "json", "thumb.jpg"] {
        assert!(!stored(ext).await, "{ext} left behind");
    }
}

/// One request that breaks one documented rule.
struct Violation {
    /// The rule, as [`documented_constraints`] names it.
    rule: &'static str,
    method: &'static str,
    /// The route as the document lists it, and the path actually requested.
    route: &'static str,
    path: String,
    body: Option<Body>,
}

enum Body {
    Json(Value),
    Form(Vec<(&'static str, String)>),
}

/// Every rule the document states about requests: `Schema.property.keyword` for the schemas
/// of request bodies (and the enums they use), `operation.parameter.keyword` for parameters.
fn documented_constraints(doc: &Value) -> std::collections::BTreeSet<String> {
    const KEYWORDS: [&str; 5] = ["minLength", "maxLength", "pattern", "minimum", "maximum"];
    let schemas = &doc["components"]["schemas"];
    let name_of = |reference: &Value| {
        reference
            .as_str()
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .map(str::to_owned)
    };
    // A `$ref` anywhere under a schema (through `oneOf`, `items`, …) names the schema used.
    fn refs(value: &Value, found: &mut Vec<Value>) {
        match value {
            Value::Object(map) => {
                if let Some(r) = map.get("$ref") {
                    found.push(r.clone());
                }
                map.values().for_each(|v| refs(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
            _ => {}
        }
    }
    let mut rules = std::collections::BTreeSet::new();
    let enum_rule = |schema: &str, rules: &mut std::collections::BTreeSet<String>| {
        if schemas[schema]["enum"].is_array() {
            rules.insert(format!("{schema}.enum"));
        }
    };
    for item in doc["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            let name = operation["operationId"].as_str().unwrap_or_default();
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let schema = &parameter["schema"];
                for keyword in KEYWORDS {
                    // utoipa states `minimum: 0` for every unsigned number: no rule.
                    if !schema[keyword].is_null() && schema[keyword] != json!(0) {
                        rules.insert(format!(
                            "{name}.{}.{keyword}",
                            parameter["name"].as_str().unwrap()
                        ));
                    }
                }
                let mut found = Vec::new();
                refs(schema, &mut found);
                for r in found.iter().filter_map(name_of) {
                    enum_rule(&r, &mut rules);
                }
            }
            let mut bodies = Vec::new();
            refs(&operation["requestBody"], &mut bodies);
            // A body's schemas, and the object schemas its properties use (nested objects).
            let mut pending: Vec<String> = bodies.iter().filter_map(name_of).collect();
            let mut seen = std::collections::BTreeSet::new();
            while let Some(body) = pending.pop() {
                let Some(properties) = schemas[&body]["properties"].as_object() else {
                    continue;
                };
                if !seen.insert(body.clone()) {
                    continue;
                }
                for (property, schema) in properties {
                    for keyword in KEYWORDS {
                        // utoipa states `minimum: 0` for every unsigned number: no rule.
                        if !schema[keyword].is_null() && schema[keyword] != json!(0) {
                            rules.insert(format!("{body}.{property}.{keyword}"));
                        }
                    }
                    let mut found = Vec::new();
                    refs(schema, &mut found);
                    for r in found.iter().filter_map(name_of) {
                        enum_rule(&r, &mut rules);
                        pending.push(r);
                    }
                }
            }
        }
    }
    rules
}

/// The OpenAPI document is the contract, both ways: every rule it states about a request is
/// enforced (a request breaking just that rule is refused with 4xx), and every answer the
/// server gives to bad requests (no credentials, wrong content type, malformed JSON, unknown
/// ids, broken rules) has its status documented for that operation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_the_contract_both_ways() {
    let api = Api::start(|c| {
        // Dozens of refused sign-ins and registrations: no throttle may answer for the rules.
        c.rate_limits.auth_per_minute = 0;
        c.rate_limits.api_per_second = 0;
        // A webhook endpoint on loopback, for the rules of its routes.
        c.webhooks.allow_private_targets = true;
    })
    .await;
    let doc: Value = reqwest::get(api.url("/api/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user = api.signed_in().await;
    {
        // An admin, so that the admin routes' rules are reached.
        let mut conn = api.install.app.db.get().await.unwrap();
        ocrd::db::models::User::set_role(&mut conn, &user.id, ocrd::db::models::Role::Admin)
            .await
            .unwrap();
    }
    let task: Value = user
        .upload(
            api.url("/api/tasks"),
            "page.png",
            crate::support::tiny_png(),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = task["id"].as_str().unwrap().to_owned();
    let hook: Value = user
        .client
        .post(api.url("/api/webhooks"))
        .header("X-CSRF-Token", &user.csrf)
        .json(&json!({"url": "http://127.0.0.1:9/hook", "events": ["task.completed"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hook = hook["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{hook}"))
        .to_owned();
    let account = {
        let mut conn = api.install.app.db.get().await.unwrap();
        ocrd::db::models::User::find(&mut conn, &user.id)
            .await
            .unwrap()
    };
    let (link, _) =
        ocrd::auth::issue_reset_link(&api.install.app, &account, chrono::TimeDelta::hours(1))
            .await
            .unwrap();
    let reset_token = link.rsplit_once("/reset/").unwrap().1.to_owned();
    let min = api.install.app.config.auth.min_password_length;
    let good = "a long enough passphrase";
    let (short, long) = ("ab".repeat(min / 2 - 1), "ab".repeat(513));
    let fresh = || format!("{}@example.com", unique("contract"));
    let json = |v: Value| Some(Body::Json(v));
    let form = |field: &'static str, value: &str| Some(Body::Form(vec![(field, value.to_owned())]));
    let v = |rule, method, route, path: String, body| Violation {
        rule,
        method,
        route,
        path,
        body,
    };
    let violations = vec![
        v(
            "RegisterRequest.email.pattern",
            "post",
            "/api/auth/register",
            "/api/auth/register".into(),
            json(json!({"email": "no-at-sign.example.com", "password": good})),
        ),
        v(
            "RegisterRequest.email.maxLength",
            "post",
            "/api/auth/register",
            "/api/auth/register".into(),
            json(json!({"email": format!("{}@example.com", "a".repeat(250)), "password": good})),
        ),
        v(
            "RegisterRequest.password.minLength",
            "post",
            "/api/auth/register",
            "/api/auth/register".into(),
            json(json!({"email": fresh(), "password": short})),
        ),
        v(
            "RegisterRequest.password.maxLength",
            "post",
            "/api/auth/register",
            "/api/auth/register".into(),
            json(json!({"email": fresh(), "password": long})),
        ),
        v(
            "ChangePasswordRequest.new_password.minLength",
            "post",
            "/api/auth/password",
            "/api/auth/password".into(),
            json(json!({"current_password": good, "new_password": short})),
        ),
        v(
            "ChangePasswordRequest.new_password.maxLength",
            "post",
            "/api/auth/password",
            "/api/auth/password".into(),
            json(json!({"current_password": good, "new_password": long})),
        ),
        v(
            "ResetPasswordRequest.password.minLength",
            "post",
            "/api/auth/reset",
            "/api/auth/reset".into(),
            json(json!({"token": reset_token, "password": short})),
        ),
        v(
            "ResetPasswordRequest.password.maxLength",
            "post",
            "/api/auth/reset",
            "/api/auth/reset".into(),
            json(json!({"token": reset_token, "password": long})),
        ),
        v(
            "CreateTokenRequest.name.minLength",
            "post",
            "/api/tokens",
            "/api/tokens".into(),
            json(json!({"name": ""})),
        ),
        v(
            "CreateTokenRequest.name.maxLength",
            "post",
            "/api/tokens",
            "/api/tokens".into(),
            json(json!({"name": "a".repeat(101)})),
        ),
        v(
            "CreateTokenRequest.name.pattern",
            "post",
            "/api/tokens",
            "/api/tokens".into(),
            json(json!({"name": "   "})),
        ),
        v(
            "CreateTokenRequest.expires_in_days.minimum",
            "post",
            "/api/tokens",
            "/api/tokens".into(),
            json(json!({"name": "t", "expires_in_days": 0})),
        ),
        v(
            "CreateTokenRequest.expires_in_days.maximum",
            "post",
            "/api/tokens",
            "/api/tokens".into(),
            json(json!({"name": "t", "expires_in_days": 3651})),
        ),
        v(
            "TokenScope.enum",
            "post",
            "/api/tokens",
            "/api/tokens".into(),
            json(json!({"name": "t", "scopes": ["everything"]})),
        ),
        v(
            "UploadForm.formats.pattern",
            "post",
            "/api/tasks",
            "/api/tasks".into(),
            form("formats", "txt,,word"),
        ),
        v(
            "EngineKind.enum",
            "post",
            "/api/tasks",
            "/api/tasks".into(),
            form("engine", "tesseract"),
        ),
        v(
            "UploadForm.callback_url.maxLength",
            "post",
            "/api/tasks",
            "/api/tasks".into(),
            form(
                "callback_url",
                &format!("http://example.com/{}", "a".repeat(2000)),
            ),
        ),
        v(
            "CreateWebhookRequest.url.minLength",
            "post",
            "/api/webhooks",
            "/api/webhooks".into(),
            json(json!({"url": "", "events": ["task.completed"]})),
        ),
        v(
            "CreateWebhookRequest.url.maxLength",
            "post",
            "/api/webhooks",
            "/api/webhooks".into(),
            json(
                json!({"url": format!("http://127.0.0.1/{}", "a".repeat(2000)), "events": ["task.completed"]}),
            ),
        ),
        v(
            "WebhookEventName.enum",
            "post",
            "/api/webhooks",
            "/api/webhooks".into(),
            json(json!({"url": "http://127.0.0.1:9/hook", "events": ["task.deleted"]})),
        ),
        v(
            "RedeliverRequest.delivery_id.pattern",
            "post",
            "/api/webhooks/{id}/redeliver",
            format!("/api/webhooks/{hook}/redeliver"),
            json(json!({"delivery_id": "msg_NOT-HEX"})),
        ),
        v(
            "UploadForm.retention_days.maximum",
            "post",
            "/api/tasks",
            "/api/tasks".into(),
            form("retention_days", "36501"),
        ),
        v(
            "OcrPolicy.enum",
            "post",
            "/api/tasks",
            "/api/tasks".into(),
            form("ocr", "sometimes"),
        ),
        v(
            "list_tasks.limit.minimum",
            "get",
            "/api/tasks",
            "/api/tasks?limit=0".into(),
            None,
        ),
        v(
            "list_tasks.limit.maximum",
            "get",
            "/api/tasks",
            "/api/tasks?limit=101".into(),
            None,
        ),
        v(
            "list_tasks.cursor.pattern",
            "get",
            "/api/tasks",
            "/api/tasks?cursor=page-2".into(),
            None,
        ),
        v(
            "StatusName.enum",
            "get",
            "/api/tasks",
            "/api/tasks?status=done".into(),
            None,
        ),
        v(
            "FormatName.enum",
            "get",
            "/api/tasks/{id}/result",
            format!("/api/tasks/{id}/result?format=docx"),
            None,
        ),
        v(
            "page_image.page.minimum",
            "get",
            "/api/tasks/{id}/pages/{page}/image",
            format!("/api/tasks/{id}/pages/0/image"),
            None,
        ),
        v(
            "admin_list_tasks.user.maxLength",
            "get",
            "/api/admin/tasks",
            format!("/api/admin/tasks?user={}@example.com", "a".repeat(250)),
            None,
        ),
        v(
            "admin_list_tasks.engine.maxLength",
            "get",
            "/api/admin/tasks",
            format!("/api/admin/tasks?engine={}", "a".repeat(33)),
            None,
        ),
        v(
            "admin_list_tasks.error.maxLength",
            "get",
            "/api/admin/tasks",
            format!("/api/admin/tasks?error={}", "a".repeat(65)),
            None,
        ),
        v(
            "admin_list_tasks.filename.minLength",
            "get",
            "/api/admin/tasks",
            "/api/admin/tasks?filename=".into(),
            None,
        ),
        v(
            "admin_list_tasks.filename.maxLength",
            "get",
            "/api/admin/tasks",
            format!("/api/admin/tasks?filename={}", "a".repeat(256)),
            None,
        ),
        v(
            "admin_list_tasks.id.pattern",
            "get",
            "/api/admin/tasks",
            "/api/admin/tasks?id=not-hex".into(),
            None,
        ),
        v(
            "admin_list_tasks.limit.minimum",
            "get",
            "/api/admin/tasks",
            "/api/admin/tasks?limit=0".into(),
            None,
        ),
        v(
            "admin_list_tasks.limit.maximum",
            "get",
            "/api/admin/tasks",
            "/api/admin/tasks?limit=201".into(),
            None,
        ),
        v(
            "admin_list_tasks.cursor.pattern",
            "get",
            "/api/admin/tasks",
            "/api/admin/tasks?cursor=page-2".into(),
            None,
        ),
        v(
            "OrderName.enum",
            "get",
            "/api/admin/tasks",
            "/api/admin/tasks?order=random".into(),
            None,
        ),
        v(
            "BulkAction.enum",
            "post",
            "/api/admin/tasks/bulk",
            "/api/admin/tasks/bulk".into(),
            json(json!({"action": "explode", "dry_run": true})),
        ),
        v(
            "admin_audit.before.minimum",
            "get",
            "/api/admin/audit",
            "/api/admin/audit?before=0".into(),
            None,
        ),
        v(
            "admin_audit.action.pattern",
            "get",
            "/api/admin/audit",
            "/api/admin/audit?action=DROP%20TABLE".into(),
            None,
        ),
        v(
            "admin_audit.limit.minimum",
            "get",
            "/api/admin/audit",
            "/api/admin/audit?limit=0".into(),
            None,
        ),
        v(
            "admin_audit.limit.maximum",
            "get",
            "/api/admin/audit",
            "/api/admin/audit?limit=501".into(),
            None,
        ),
        v(
            "search.q.minLength",
            "get",
            "/api/search",
            "/api/search?q=".into(),
            None,
        ),
        v(
            "search.q.maxLength",
            "get",
            "/api/search",
            format!("/api/search?q={}", "w".repeat(257)),
            None,
        ),
        v(
            "search.limit.minimum",
            "get",
            "/api/search",
            "/api/search?q=x&limit=0".into(),
            None,
        ),
        v(
            "search.limit.maximum",
            "get",
            "/api/search",
            "/api/search?q=x&limit=51".into(),
            None,
        ),
        v(
            "search.cursor.pattern",
            "get",
            "/api/search",
            "/api/search?q=x&cursor=page-2".into(),
            None,
        ),
        v(
            "admin_search.q.minLength",
            "get",
            "/api/admin/search",
            "/api/admin/search?q=".into(),
            None,
        ),
        v(
            "admin_search.q.maxLength",
            "get",
            "/api/admin/search",
            format!("/api/admin/search?q={}", "w".repeat(257)),
            None,
        ),
        v(
            "admin_search.limit.minimum",
            "get",
            "/api/admin/search",
            "/api/admin/search?q=x&limit=0".into(),
            None,
        ),
        v(
            "admin_search.limit.maximum",
            "get",
            "/api/admin/search",
            "/api/admin/search?q=x&limit=51".into(),
            None,
        ),
        v(
            "admin_search.cursor.pattern",
            "get",
            "/api/admin/search",
            "/api/admin/search?q=x&cursor=page-2".into(),
            None,
        ),
        v(
            "admin_list_users.search.minLength",
            "get",
            "/api/admin/users",
            "/api/admin/users?search=".into(),
            None,
        ),
        v(
            "admin_list_users.search.maxLength",
            "get",
            "/api/admin/users",
            format!("/api/admin/users?search={}", "a".repeat(255)),
            None,
        ),
        v(
            "admin_list_users.limit.minimum",
            "get",
            "/api/admin/users",
            "/api/admin/users?limit=0".into(),
            None,
        ),
        v(
            "admin_list_users.limit.maximum",
            "get",
            "/api/admin/users",
            "/api/admin/users?limit=201".into(),
            None,
        ),
        v(
            "admin_list_users.cursor.pattern",
            "get",
            "/api/admin/users",
            "/api/admin/users?cursor=next".into(),
            None,
        ),
        v(
            "CreateInviteRequest.email.maxLength",
            "post",
            "/api/admin/invites",
            "/api/admin/invites".into(),
            json(json!({"email": format!("{}@example.com", "a".repeat(250))})),
        ),
        v(
            "CreateInviteRequest.days.minimum",
            "post",
            "/api/admin/invites",
            "/api/admin/invites".into(),
            json(json!({"days": 0})),
        ),
        v(
            "CreateInviteRequest.days.maximum",
            "post",
            "/api/admin/invites",
            "/api/admin/invites".into(),
            json(json!({"days": 31})),
        ),
        v(
            "LogLevel.enum",
            "get",
            "/api/admin/logs",
            "/api/admin/logs?level=DEBUG".into(),
            None,
        ),
        v(
            "admin_logs.before.pattern",
            "get",
            "/api/admin/logs",
            "/api/admin/logs?before=yesterday".into(),
            None,
        ),
        v(
            "admin_logs.limit.minimum",
            "get",
            "/api/admin/logs",
            "/api/admin/logs?limit=0".into(),
            None,
        ),
        v(
            "admin_logs.limit.maximum",
            "get",
            "/api/admin/logs",
            "/api/admin/logs?limit=501".into(),
            None,
        ),
        v(
            "PriorityRequest.priority.minimum",
            "post",
            "/api/admin/tasks/{id}/priority",
            format!("/api/admin/tasks/{id}/priority"),
            json(json!({"priority": -101})),
        ),
        v(
            "PriorityRequest.priority.maximum",
            "post",
            "/api/admin/tasks/{id}/priority",
            format!("/api/admin/tasks/{id}/priority"),
            json(json!({"priority": 101})),
        ),
        v(
            "Window.enum",
            "get",
            "/api/admin/stats",
            "/api/admin/stats?window=1d".into(),
            None,
        ),
        v(
            "RoleName.enum",
            "patch",
            "/api/admin/users/{id}",
            format!("/api/admin/users/{}", api.install.user.id),
            json(json!({"role": "king"})),
        ),
        v(
            "UpdateUserRequest.retention_days.maximum",
            "patch",
            "/api/admin/users/{id}",
            format!("/api/admin/users/{}", api.install.user.id),
            json(json!({"retention_days": 36_501})),
        ),
        v(
            "FilterParams.user.maxLength",
            "post",
            "/api/admin/tasks/bulk",
            "/api/admin/tasks/bulk".into(),
            json(json!({"action": "retry", "dry_run": true, "filter": {"user": "a".repeat(255)}})),
        ),
        v(
            "FilterParams.engine.maxLength",
            "post",
            "/api/admin/tasks/bulk",
            "/api/admin/tasks/bulk".into(),
            json(json!({"action": "retry", "dry_run": true, "filter": {"engine": "e".repeat(33)}})),
        ),
        v(
            "FilterParams.error.maxLength",
            "post",
            "/api/admin/tasks/bulk",
            "/api/admin/tasks/bulk".into(),
            json(json!({"action": "retry", "dry_run": true, "filter": {"error": "e".repeat(65)}})),
        ),
        v(
            "FilterParams.filename.minLength",
            "post",
            "/api/admin/tasks/bulk",
            "/api/admin/tasks/bulk".into(),
            json(json!({"action": "retry", "dry_run": true, "filter": {"filename": ""}})),
        ),
        v(
            "FilterParams.filename.maxLength",
            "post",
            "/api/admin/tasks/bulk",
            "/api/admin/tasks/bulk".into(),
            json(
                json!({"action": "retry", "dry_run": true, "filter": {"filename": "f".repeat(256)}}),
            ),
        ),
        v(
            "FilterParams.id.pattern",
            "post",
            "/api/admin/tasks/bulk",
            "/api/admin/tasks/bulk".into(),
            json(json!({"action": "retry", "dry_run": true, "filter": {"id": "not-an-id!"}})),
        ),
        v(
            "QuotaChange.pages_per_month.maximum",
            "patch",
            "/api/admin/users/{id}",
            format!("/api/admin/users/{}", api.install.user.id),
            json(json!({"quota": {"pages_per_month": 9_223_372_036_854_775_808_u64}})),
        ),
        v(
            "QuotaChange.stored_bytes.maximum",
            "patch",
            "/api/admin/users/{id}",
            format!("/api/admin/users/{}", api.install.user.id),
            json(json!({"quota": {"stored_bytes": 9_223_372_036_854_775_808_u64}})),
        ),
        v(
            "QuotaChange.concurrent_tasks.maximum",
            "patch",
            "/api/admin/users/{id}",
            format!("/api/admin/users/{}", api.install.user.id),
            json(json!({"quota": {"concurrent_tasks": 9_223_372_036_854_775_808_u64}})),
        ),
        v(
            "QuotaChange.max_upload_bytes.maximum",
            "patch",
            "/api/admin/users/{id}",
            format!("/api/admin/users/{}", api.install.user.id),
            json(json!({"quota": {"max_upload_bytes": 9_223_372_036_854_775_808_u64}})),
        ),
    ];
    let stated = documented_constraints(&doc);
    let covered: std::collections::BTreeSet<String> =
        violations.iter().map(|v| v.rule.to_owned()).collect();
    assert_eq!(
        stated, covered,
        "a rule without a violating request here, or a case for a rule the document no longer states"
    );

    let documented = |method: &str, route: &str| -> Vec<u16> {
        let responses = &doc["paths"][route][method]["responses"];
        assert!(responses.is_object(), "{method} {route} is not documented");
        responses
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.parse().unwrap())
            .collect()
    };
    let send = |method: &str,
                path: &str,
                body: &Option<Body>,
                client: &reqwest::Client,
                csrf: Option<&str>| {
        let mut request = client.request(method.to_uppercase().parse().unwrap(), api.url(path));
        if let Some(csrf) = csrf {
            request = request.header("X-CSRF-Token", csrf);
        }
        match body {
            Some(Body::Json(value)) => request = request.json(value),
            Some(Body::Form(fields)) => {
                let mut form = reqwest::multipart::Form::new();
                for (name, value) in fields {
                    form = form.text(*name, value.clone());
                }
                form = form.part(
                    "file",
                    reqwest::multipart::Part::bytes(crate::support::tiny_png()).file_name("p.png"),
                );
                request = request.multipart(form);
            }
            None => {}
        }
        request.send()
    };
    let mut undocumented = Vec::new();
    for case in &violations {
        let response = send(
            case.method,
            &case.path,
            &case.body,
            &user.client,
            Some(&user.csrf),
        )
        .await
        .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert!(
            (400..500).contains(&status),
            "{}: {} {} was accepted ({status}): {text}",
            case.rule,
            case.method,
            case.path
        );
        if !documented(case.method, case.route).contains(&status) {
            undocumented.push(format!(
                "{} {} ({}): {status}",
                case.method, case.route, case.rule
            ));
        }
    }

    // Generic bad requests on every route: no credentials, a body that is not JSON, malformed
    // JSON, unknown and malformed ids.
    let anonymous = reqwest::Client::new();
    let other_id = "00000000-0000-7000-8000-000000000000";
    for (method, route) in ocrd::web::ROUTES {
        let concrete = |task: &str| route.replace("{id}", task).replace("{page}", "1");
        let json_body =
            doc["paths"][*route][*method]["requestBody"]["content"]["application/json"].is_object();
        let mut cases: Vec<(String, Option<Body>, bool)> = vec![
            (concrete(&id), None, false),
            (concrete(other_id), None, true),
            (concrete("not-an-id"), None, true),
        ];
        if route.contains("{page}") {
            cases.push((
                route.replace("{id}", &id).replace("{page}", "many"),
                None,
                true,
            ));
        }
        if json_body {
            cases.push((
                concrete(&id),
                Some(Body::Json(json!("not an object"))),
                true,
            ));
            cases.push((concrete(&id), Some(Body::Json(json!({}))), true));
        }
        for (path, body, signed_in) in cases {
            if signed_in && *route == "/api/auth/logout" {
                // It would end the session the other cases use.
                continue;
            }
            let clients: Vec<(&reqwest::Client, Option<&str>)> = if signed_in {
                vec![(&user.client, Some(user.csrf.as_str()))]
            } else {
                vec![(&anonymous, None), (&user.client, None)]
            };
            for (client, csrf) in clients {
                let status = send(method, &path, &body, client, csrf)
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
                if status != 101 && !documented(method, route).contains(&status) {
                    undocumented.push(format!("{method} {path}: {status}"));
                }
            }
        }
        if json_body {
            let status = user
                .client
                .request(
                    method.to_uppercase().parse().unwrap(),
                    api.url(&concrete(&id)),
                )
                .header("X-CSRF-Token", &user.csrf)
                .header("Content-Type", "text/plain")
                .body("{}")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            assert_eq!(status, 415, "{method} {route} with a text/plain body");
            if !documented(method, route).contains(&status) {
                undocumented.push(format!("{method} {route} (text/plain): {status}"));
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "answers the document does not list:\n{}",
        undocumented.join("\n")
    );
}

/// A client generated from the served document alone (openapi-python-client, PyPI) registers,
/// uploads a page with options sent after the file (as generated clients send them), waits for
/// the task and downloads its text, on PostgreSQL, Redis, S3 and a real `ocrd work`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_generated_from_the_openapi_document_completes_the_journey() {
    let _turn = crate::worker::one_at_a_time().await;
    let api = Api::start(|_| {}).await;
    let _worker = api.install.spawn_worker("w", &[]);
    let venv = crate::ocr::repo().join("target/test-venv/bin");
    let generator = venv.join("openapi-python-client");
    assert!(
        generator.exists(),
        "{} is missing: run the tests with `make test` (scripts/test.sh installs tests/requirements.txt)",
        generator.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("openapi.json");
    std::fs::write(
        &doc,
        reqwest::get(api.url("/api/openapi.json"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    let (page, truth) = sample_pages().into_iter().next().unwrap();
    let script = crate::ocr::repo().join("tests/scripts/openapi_client_journey.py");
    let mut command = std::process::Command::new(venv.join("python"));
    command
        .arg(&script)
        .arg(&api.base)
        .arg(&doc)
        .arg(&page)
        .arg(dir.path())
        .env(
            "PATH",
            format!(
                "{}:{}",
                venv.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    // The journey waits on the server this runtime serves: off its threads.
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the generated client's journey failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no report ({e}):\n{stdout}"));
    assert_eq!(
        report["requested_formats"],
        json!(["txt", "json"]),
        "{report}"
    );
    assert_eq!(report["status"], "completed", "{report}");
    let cer = ocrd::eval::cer(report["text"].as_str().unwrap(), &truth);
    assert!(
        cer <= 0.02,
        "the text downloaded by the generated client has CER {cer}"
    );
}

/// Fields after the file are read once it is stored: a bad one, or a second file, refuses
/// the upload and keeps nothing of it; a good one is what the task records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_after_the_file_are_checked_and_a_bad_one_keeps_nothing() {
    let api = Api::start(|_| {}).await;
    let user = api.signed_in().await;
    let file = || reqwest::multipart::Part::bytes(crate::support::tiny_png()).file_name("p.png");
    let send = |form: reqwest::multipart::Form| {
        user.client
            .post(api.url("/api/tasks"))
            .header("X-CSRF-Token", &user.csrf)
            .multipart(form)
            .send()
    };
    for (form, words) in [
        (
            reqwest::multipart::Form::new()
                .part("file", file())
                .text("formats", "txt,docx"),
            "unknown format `docx`",
        ),
        (
            reqwest::multipart::Form::new()
                .part("file", file())
                .text("colour", "blue"),
            "form field `colour`",
        ),
        (
            reqwest::multipart::Form::new()
                .part("file", file())
                .part("file", file()),
            "ne file per upload",
        ),
    ] {
        let refused = send(form).await.unwrap();
        assert_eq!(refused.status(), 400);
        let body: Value = refused.json().await.unwrap();
        assert!(
            body["error"]["message"].as_str().unwrap().contains(words),
            "{body}"
        );
    }
    let uploads = format!("uploads/{}", user.id);
    assert!(
        api.install
            .app
            .blobs
            .list(&uploads)
            .await
            .unwrap()
            .is_empty(),
        "nothing kept"
    );
    let accepted: Value = send(
        reqwest::multipart::Form::new()
            .part("file", file())
            .text("formats", "alto")
            .text("ocr", "force"),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(accepted["requested_formats"], json!(["xml"]), "{accepted}");
    assert_eq!(accepted["ocr"], "force");
}
