//! Many instances as one: two `ocrd serve` processes behind the shipped nginx configuration
//! (`least_conn`) and two `ocrd work` processes, on one PostgreSQL, one Redis and moto. A
//! session made through one serve works on the other, events reach a client on either serve
//! whichever worker did the task, rate limits are global, and a serve killed mid-run costs its
//! clients a reconnect, not their tasks or their events.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::edge::{Ca, KillOnDrop, Tls, local_nginx_config, nginx_socket, start_nginx};
use crate::install::{Install, free_port, ocrd_bin, wait_for};
use crate::support::{metric, unique};

type Socket = tokio_tungstenite::WebSocketStream<Tls>;

/// The uploads one account (and one address) may make per minute, across every instance.
const UPLOADS_PER_MINUTE: usize = 6;

/// One serve directly, bypassing nginx.
fn serve_base(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

fn spawn_serve(install: &Install, port: u16) -> KillOnDrop {
    let child = Command::new(ocrd_bin())
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .current_dir(install.data_dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(install.env())
        .env("OCRD_SERVER__TRUSTED_PROXIES", "[\"127.0.0.1/32\"]")
        .env("OCRD_SERVER__PUBLIC_URL", "https://localhost")
        .env(
            "OCRD_RATE_LIMITS__UPLOADS_PER_MINUTE",
            UPLOADS_PER_MINUTE.to_string(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting ocrd serve");
    KillOnDrop(child)
}

/// A browser-like client through nginx (https, the test CA), from `source` (a loopback
/// address: nginx passes it on as the client's).
fn client(ca: &Ca, source: [u8; 4]) -> reqwest::Client {
    let ca_pem = reqwest::Certificate::from_pem(&std::fs::read(&ca.cert).unwrap()).unwrap();
    reqwest::Client::builder()
        .cookie_store(true)
        .tls_certs_only([ca_pem])
        .local_address(std::net::IpAddr::from(source))
        .build()
        .unwrap()
}

/// Reads `socket` until every task in `ids` was announced `completed`.
async fn completions(socket: &mut Socket, ids: &BTreeSet<String>) {
    let mut done = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while !ids.is_subset(&done) {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .unwrap_or_else(|_| panic!("completions missing: {:?}", ids.difference(&done)))
            .expect("the socket closed")
            .expect("a WebSocket error");
        if let Message::Text(text) = message {
            let event: Value = serde_json::from_str(&text).unwrap();
            if event["task"]["status"] == "completed" {
                done.insert(event["task"]["id"].as_str().unwrap().to_owned());
            }
        }
    }
}

/// `GET /api/auth/me` ten times through nginx, which spreads them over the serves: each 200.
async fn signed_in_ten_times(client: &reqwest::Client, base: &str, failure: &str) {
    for _ in 0..10 {
        let answer = client
            .get(format!("{base}/api/auth/me"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{failure}");
    }
}

async fn upload(client: &reqwest::Client, base: &str, token: &str) -> reqwest::Response {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(crate::support::tiny_png()).file_name("p.png"),
    );
    client
        .post(format!("{base}/api/tasks"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

async fn upload_ok(client: &reqwest::Client, base: &str, token: &str) -> String {
    let response = upload(client, base, token).await;
    assert_eq!(response.status(), 202);
    let task: Value = response.json().await.unwrap();
    task["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_and_two_work_processes_behind_nginx_act_as_one() {
    let _turn = crate::worker::one_at_a_time().await;
    let install = Install::distributed(|_| {}).await;
    let ports = [free_port(), free_port()];
    let mut serves: Vec<KillOnDrop> = ports.iter().map(|p| spawn_serve(&install, *p)).collect();
    for port in ports {
        wait_for(
            Duration::from_secs(60),
            "ocrd serve to be ready",
            || async move {
                let ready = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await;
                ready.ok().filter(|r| r.status() == 200)
            },
        )
        .await;
    }
    let _workers = [
        install.spawn_worker("scale-a", &[]),
        install.spawn_worker("scale-b", &[]),
    ];
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path());
    let (cert, key) = ca.issue("nginx");
    let (https, http_port) = (free_port(), free_port());
    let upstreams = ports.map(|port| std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    let conf = local_nginx_config(upstreams, https, http_port, (&cert, &key));
    let _nginx = start_nginx(&conf);
    let base = format!("https://localhost:{https}");
    let browser = client(&ca, [127, 0, 0, 1]);
    wait_for(Duration::from_secs(30), "nginx to answer", || {
        let (browser, base) = (browser.clone(), base.clone());
        async move { browser.get(format!("{base}/healthz")).send().await.ok() }
    })
    .await;

    // A session made through one serve works on the other: nginx spreads these requests
    // over both, and each serve answers some of them for that session.
    let email = format!("{}@example.com", unique("scale"));
    let csrf = crate::support::register_and_sign_in(&base, &browser, &email).await;
    let me = "ocrd_http_requests_total{method=\"GET\",route=\"/api/auth/me\",status=\"200\"}";
    signed_in_ten_times(&browser, &base, "a session refused on one serve").await;
    for port in ports {
        assert!(
            metric(&serve_base(port), me).await >= 1.0,
            "serve on {port} answered no session"
        );
    }
    let token = crate::support::create_token(&base, &browser, &csrf, "scale").await;

    // Events reach a client on either serve, whichever worker did the task. The second socket
    // goes to the serve with fewer connections: the other one.
    let open = "ocrd_websocket_connections";
    let first = nginx_socket(&ca, https, &token).await;
    let first_on = wait_for(Duration::from_secs(30), "the first socket", || async {
        for port in ports {
            if metric(&serve_base(port), open).await == 1.0 {
                return Some(port);
            }
        }
        None
    })
    .await;
    let mut sockets = [first, nginx_socket(&ca, https, &token).await];
    wait_for(
        Duration::from_secs(30),
        "one socket on each serve",
        || async {
            let counts = [
                metric(&serve_base(ports[0]), open).await,
                metric(&serve_base(ports[1]), open).await,
            ];
            (counts == [1.0, 1.0]).then_some(())
        },
    )
    .await;
    let ids: BTreeSet<String> = [
        upload_ok(&browser, &base, &token).await,
        upload_ok(&browser, &base, &token).await,
    ]
    .into();
    for socket in &mut sockets {
        completions(socket, &ids).await;
    }

    // Rate limits are global: another account, from another address, gets its uploads per
    // minute across both serves together, not per serve.
    let other = client(&ca, [127, 0, 0, 2]);
    let other_csrf = crate::support::register_and_sign_in(
        &base,
        &other,
        &format!("{}@example.com", unique("scale")),
    )
    .await;
    let other_token = crate::support::create_token(&base, &other, &other_csrf, "o").await;
    let mut accepted = 0;
    for _ in 0..UPLOADS_PER_MINUTE * 2 {
        match upload(&other, &base, &other_token).await.status().as_u16() {
            202 => accepted += 1,
            429 => {}
            other => panic!("upload answered {other}"),
        }
    }
    // One more may come from the bucket refilling (one every 10 s) while the loop runs.
    assert!(
        (UPLOADS_PER_MINUTE..=UPLOADS_PER_MINUTE + 1).contains(&accepted),
        "{accepted} uploads accepted; per-instance limits would take {}",
        UPLOADS_PER_MINUTE * 2
    );

    // Both serves refused some: each counted against the one shared limit.
    let refused = "ocrd_http_requests_total{method=\"POST\",route=\"/api/tasks\",status=\"429\"}";
    for port in ports {
        assert!(
            metric(&serve_base(port), refused).await >= 1.0,
            "serve on {port} refused no upload"
        );
    }

    // A serve killed mid-run: its client reconnects (to the other), and loses neither its
    // tasks nor their events.
    let killed: BTreeSet<String> = [
        upload_ok(&browser, &base, &token).await,
        upload_ok(&browser, &base, &token).await,
    ]
    .into();
    serves[0].0.kill().unwrap();
    let _ = serves[0].0.wait();
    // The client on the killed serve sees its socket end; the other keeps receiving.
    let [first, second] = &mut sockets;
    let survivor = if first_on == ports[0] { second } else { first };
    completions(survivor, &killed).await;
    let mut again = nginx_socket(&ca, https, &token).await;
    signed_in_ten_times(&browser, &base, "a request failed after the kill").await;
    for id in &killed {
        let task: Value = browser
            .get(format!("{base}/api/tasks/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(task["status"], "completed", "{task}");
        assert_eq!(task["attempts"], 1, "{task}");
    }
    let after = upload_ok(&browser, &base, &token).await;
    completions(&mut again, &[after].into()).await;
}
