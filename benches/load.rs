//! `make bench-load`: what one `ocrd serve` process carries, on loopback, with bounded work.
//! - **API:** `GET /api/tasks/{id}` with a token under wrk, on `ocrd serve` (PostgreSQL +
//!   Redis; the task queued) and on `ocrd all-in-one` (SQLite; the task completed, so its result
//!   is read too), each against its own `/healthz` (no I/O) as the baseline, and
//!   `GET /api/auth/me`, the token lookup alone, to show where the time goes. Target: 10,000
//!   req/s on both.
//! - **WebSockets:** `OCRDBENCH_SOCKETS` (5,000) clients on one serve, one event published
//!   through Redis to all of them; p50 and p99 from publish to receipt. Target: p99 ≤ 250 ms.
//! - **Memory:** serve's resident set idle (target ≤ 60 MB) and with every socket open.
//! - **Overhead:** on all-in-one, `OCRDBENCH_TASKS` (30) small uploads one after another, each
//!   timed from the upload's first byte to its `completed` event on a WebSocket, less the time
//!   the engine spent on its page (the worker's `ocrd_page_duration_seconds_sum`, read before
//!   and after: one task runs at a time). Target: p50 ≤ 25 ms.
//!
//! The servers are the release binary, run as separate processes; the clients, wrk and the
//! publisher run here. `make bench-load` brings up PostgreSQL and Redis and installs wrk.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use ocrd::app::App;
use ocrd::config::{Config, Secret};
use support::{CONNECTIONS, DURATION, wrk};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

/// An `ocrd` process, killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `ocrd {role}` on `config`, listening on a free port; returns once it is ready.
    async fn start(role: &str, config: &Config) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut env = vec![
            ("OCRD_DATA_DIR", config.data_dir.display().to_string()),
            (
                "OCRD_DATABASE__URL",
                config.database.url.expose().to_owned(),
            ),
            ("OCRD_REDIS__URL", config.redis.url.expose().to_owned()),
            ("OCRD_REDIS__KEY_PREFIX", config.redis.key_prefix.clone()),
            ("OCRD_SERVER__BIND", format!("127.0.0.1:{port}")),
            ("OCRD_RATE_LIMITS__API_PER_SECOND", "0".into()),
            ("OCRD_RATE_LIMITS__WS_PER_USER", "0".into()),
            ("OCRD_RATE_LIMITS__WS_PER_ADDRESS", "0".into()),
            ("OCRD_RATE_LIMITS__UPLOADS_PER_MINUTE", "0".into()),
            ("OCRD_RATE_LIMITS__UPLOAD_BYTES_PER_MINUTE", "0".into()),
            ("OCRD_LOG__LEVEL", "warn".into()),
        ];
        if role == "all-in-one" {
            let models = concat!(env!("CARGO_MANIFEST_DIR"), "/models");
            env.push(("OCRD_OCR__MODELS_DIR", models.into()));
        }
        let child = Command::new(env!("CARGO_BIN_EXE_ocrd"))
            .arg(role)
            .current_dir(&config.data_dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting ocrd {role}: {e}"));
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ready = reqwest::get(format!("{}/readyz", server.base)).await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "ocrd {role} did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The process's resident set, in MB.
    fn rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb / 1024.0
    }

    /// A sample of its `/metrics`; 0 when absent.
    async fn metric(&self, series: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }

    async fn socket(&self, token: &str) -> Socket {
        let url = format!("{}/ws", self.base.replace("http://", "ws://"));
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse().unwrap());
        tokio_tungstenite::connect_async(request)
            .await
            .expect("a WebSocket")
            .0
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A small page with a few words: the engine's part stays small next to the rest.
fn small_page() -> Vec<u8> {
    let mut page = image::GrayImage::from_pixel(240, 60, image::Luma([255]));
    for x in (20..220).step_by(12) {
        for y in 20..40 {
            for dx in 0..6 {
                page.put_pixel(x + dx, y, image::Luma([0]));
            }
        }
    }
    let mut png = Vec::new();
    page.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png
}

/// Upload-to-`completed` time less the engine's, per task, sorted.
async fn overheads(server: &Server, token: &str, tasks: usize) -> Vec<Duration> {
    let engine = "ocrd_page_duration_seconds_sum";
    let mut socket = server.socket(token).await;
    let client = reqwest::Client::new();
    let page = small_page();
    let mut out = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        let engine_before = server.metric(engine).await;
        let started = Instant::now();
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(page.clone()).file_name("p.png"),
        );
        let answer = client
            .post(format!("{}/api/tasks", server.base))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202, "upload refused");
        let id = answer.json::<serde_json::Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(60), socket.next())
                .await
                .expect("no completed event within 60 s")
                .expect("the socket closed")
                .unwrap();
            if let Message::Text(text) = message {
                let event: serde_json::Value = serde_json::from_str(&text).unwrap();
                if event["task"]["id"] == id.as_str() && event["task"]["status"] == "completed" {
                    break;
                }
            }
        }
        let took = started.elapsed();
        let engine_secs = (server.metric(engine).await - engine_before).max(0.0);
        out.push(took.saturating_sub(Duration::from_secs_f64(engine_secs)));
    }
    out.sort();
    out
}

/// As many open files as the hard limit allows: each socket is one here and one in serve.
fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// wrk on the task read, on `/api/auth/me` (the token lookup alone: where the time goes) and
/// on `/healthz`.
struct Api {
    read: support::Figures,
    token_only: support::Figures,
    healthz: support::Figures,
}

async fn api_figures(base: &str, task: &str, token: &str) -> Api {
    let (base, task, token) = (base.to_owned(), task.to_owned(), token.to_owned());
    tokio::task::spawn_blocking(move || Api {
        healthz: wrk(&format!("{base}/healthz"), None),
        token_only: wrk(&format!("{base}/api/auth/me"), Some(&token)),
        read: wrk(&format!("{base}/api/tasks/{task}"), Some(&token)),
    })
    .await
    .unwrap()
}

fn api_rows(name: &str, api: &Api) {
    for (request, figures, target) in [
        ("GET /api/tasks/{id}", &api.read, "≥ 10,000"),
        (
            "GET /api/auth/me (the token lookup alone)",
            &api.token_only,
            "",
        ),
    ] {
        println!(
            "| {name}: {request} | {:.0} | {:.2} ms | {:.0} | {:.2}× | {target} |",
            figures.requests_per_sec,
            figures.p99_ms,
            api.healthz.requests_per_sec,
            figures.requests_per_sec / api.healthz.requests_per_sec
        );
    }
}

fn main() {
    support::main(|| async {
        raise_open_files();
        let sockets = support::size("OCRDBENCH_SOCKETS", 5000) as usize;
        let redis_url =
            std::env::var("OCRDTEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());

        // serve, on PostgreSQL and Redis.
        let db = support::BenchDb::create().await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = db.config(&dir);
        config.redis.url = Secret::new(redis_url);
        config.redis.key_prefix = format!("{}:", db.name);
        let app = App::build(config.clone()).await.unwrap();
        let (user, token) = support::user_with_token(&app).await;
        let task = support::one_task(&app, &user.id).await;
        let serve = Server::start("serve", &config).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle_mb = serve.rss_mb();
        let serve_api = api_figures(&serve.base, &task.id, &token).await;

        // Sockets, all of one account, so each gets the one event.
        let started = Instant::now();
        let clients: Vec<Socket> = futures::stream::iter(0..sockets)
            .map(|_| serve.socket(&token))
            .buffer_unordered(200)
            .collect()
            .await;
        let connect_secs = started.elapsed().as_secs_f64();
        while serve.metric("ocrd_websocket_connections").await < sockets as f64 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let sockets_mb = serve.rss_mb();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for mut client in clients {
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(Ok(message)) = client.next().await {
                    if let Message::Text(text) = message
                        && text.contains("task.updated")
                    {
                        let _ = tx.send(Instant::now());
                        break;
                    }
                }
                // Held open until every client has its event.
                let _ = client.next().await;
            });
        }
        drop(tx);
        let published = Instant::now();
        app.events.task_updated(&task).await;
        let mut latencies = Vec::with_capacity(sockets);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while latencies.len() < sockets {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(at)) => latencies.push(at - published),
                _ => break,
            }
        }
        latencies.sort();
        drop(serve);

        // all-in-one, on SQLite.
        let embedded_dir = tempfile::tempdir().unwrap();
        let embedded = support::config(&embedded_dir);
        let embedded_app = App::build(embedded.clone()).await.unwrap();
        let (embedded_user, embedded_token) = support::user_with_token(&embedded_app).await;
        let embedded_task = support::one_task(&embedded_app, &embedded_user.id).await;
        let all_in_one = Server::start("all-in-one", &embedded).await;
        let embedded_api = api_figures(&all_in_one.base, &embedded_task.id, &embedded_token).await;
        let tasks = support::size("OCRDBENCH_TASKS", 30) as usize;
        let overhead = overheads(&all_in_one, &embedded_token, tasks).await;
        drop(all_in_one);

        println!(
            "release build, loopback, wrk -t2 -c{CONNECTIONS} -d{DURATION}; servers are separate processes"
        );
        println!("| request | req/s | p99 | /healthz req/s (baseline) | ratio | target |");
        println!("|---|---|---|---|---|---|");
        api_rows("serve (PostgreSQL + Redis)", &serve_api);
        api_rows("all-in-one (SQLite)", &embedded_api);
        println!();
        println!(
            "| WebSockets | clients | received | p50 | p99 | target |\n|---|---|---|---|---|---|"
        );
        let (p50, p99) = if latencies.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            (percentile(&latencies, 0.5), percentile(&latencies, 0.99))
        };
        println!(
            "| one event through Redis to every client | {sockets} (connected in {connect_secs:.1} s) | {} | {p50:.1} ms | {p99:.1} ms | p99 ≤ 250 ms |",
            latencies.len()
        );
        println!();
        println!("| serve memory (resident) | MB | target |\n|---|---|---|");
        println!("| idle | {idle_mb:.1} | ≤ 60 |");
        println!(
            "| {sockets} WebSockets open | {sockets_mb:.1} ({:.1} KB per socket) | |",
            (sockets_mb - idle_mb) * 1024.0 / sockets as f64
        );
        println!();
        println!(
            "| all-in-one overhead: upload to completed, less the engine | tasks | p50 | p95 | target |\n|---|---|---|---|---|"
        );
        println!(
            "| one small page at a time | {tasks} | {:.1} ms | {:.1} ms | p50 ≤ 25 ms |",
            percentile(&overhead, 0.5),
            percentile(&overhead, 0.95)
        );
        db.drop().await;
    });
}
