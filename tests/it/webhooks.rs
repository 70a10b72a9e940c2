//! Webhooks: endpoints and per-task callbacks signed as Standard Webhooks says (checked by the
//! specification's reference library), the retry schedule on a compressed clock, Retry-After,
//! 410 and 5 days of failures disabling an endpoint, redelivery, erasure with the task, and the
//! SSRF guard (private addresses refused at registration and at every attempt, no redirects).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::TimeDelta;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use ocrd::db::models::{Role, WebhookEndpoint, now};
use ocrd::db::schema::{tasks, webhook_deliveries, webhook_endpoints};
use serde_json::{Value, json};

use crate::admin::{Caller, served};
use crate::install::{Install, sample_pages, wait_for};

/// What the receiver answers.
#[derive(Clone)]
pub(crate) struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
}

impl Answer {
    pub(crate) fn status(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
        }
    }
}

/// One request the receiver got.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    at: Instant,
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

impl Received {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    fn id(&self) -> &str {
        &self.headers["webhook-id"]
    }
}

#[derive(Default)]
struct Script {
    received: Vec<Received>,
    /// Answers given in turn; then `usual`.
    next: VecDeque<Answer>,
    usual: Option<Answer>,
}

/// A webhook receiver on a random loopback port, answering as scripted.
#[derive(Clone)]
pub(crate) struct Receiver {
    addr: std::net::SocketAddr,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    pub(crate) fn start(usual: Answer) -> Receiver {
        let script = Arc::new(Mutex::new(Script {
            usual: Some(usual),
            ..Script::default()
        }));
        let shared = script.clone();
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(web::Data::new(shared.clone()))
                .default_service(web::to(receive))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let addr = server.addrs()[0];
        tokio::spawn(server.run());
        Receiver { addr, script }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn answer_next(&self, answers: &[Answer]) {
        self.script
            .lock()
            .unwrap()
            .next
            .extend(answers.iter().cloned());
    }

    fn answer_usually(&self, answer: Answer) {
        self.script.lock().unwrap().usual = Some(answer);
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }

    /// Waits until `n` requests came, and returns them.
    async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        wait_for(timeout, &format!("{n} webhook requests"), || async {
            let got = self.received();
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    script: web::Data<Arc<Mutex<Script>>>,
) -> HttpResponse {
    let mut script = script.lock().unwrap();
    script.received.push(Received {
        at: Instant::now(),
        path: req.path().to_owned(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let answer = script
        .next
        .pop_front()
        .or_else(|| script.usual.clone())
        .unwrap();
    let mut response =
        HttpResponse::build(actix_web::http::StatusCode::from_u16(answer.status).unwrap());
    for (name, value) in answer.headers {
        response.insert_header((name, value));
    }
    // A NUL byte (which PostgreSQL text refuses) and markup, as a hostile receiver might send:
    // the delivery log must still record the attempt, and show it as text.
    response.body("ok\0<img src=x onerror=alert(1)>")
}

/// Verifies each request against its secret with the `standardwebhooks` package (the
/// specification's reference library), and checks that a changed body fails.
fn verify_with_reference_library(cases: &[(&Received, &str)]) {
    let venv = crate::ocr::repo().join("target/test-venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run the tests through scripts/test.sh (make test), which installs tests/requirements.txt",
        venv.display()
    );
    let cases: Vec<Value> = cases
        .iter()
        .map(|(r, secret)| json!({"secret": secret, "headers": r.headers, "body": r.body}))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cases.json");
    std::fs::write(&file, serde_json::to_vec(&cases).unwrap()).unwrap();
    let script = r#"
import json, sys
from standardwebhooks import Webhook, WebhookVerificationError
cases = json.load(open(sys.argv[1]))
for case in cases:
    Webhook(case["secret"]).verify(case["body"], case["headers"])
    try:
        Webhook(case["secret"]).verify(case["body"] + " ", case["headers"])
        sys.exit("a changed body verified")
    except WebhookVerificationError:
        pass
print("verified", len(cases))
"#;
    let out = std::process::Command::new(&venv)
        .args(["-c", script])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "standardwebhooks refused a signature: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("verified {}", cases.len())
    );
}

async fn create_endpoint(caller: &Caller, base: &str, url: &str, events: &[&str]) -> Value {
    let created = caller
        .post(
            format!("{base}/api/webhooks"),
            json!({"url": url, "events": events}),
        )
        .await;
    assert_eq!(created.status(), 201);
    created.json().await.unwrap()
}

async fn endpoints(caller: &Caller, base: &str) -> Value {
    caller
        .get(format!("{base}/api/webhooks"))
        .await
        .json()
        .await
        .unwrap()
}

async fn deliveries(caller: &Caller, base: &str, endpoint: &str) -> Vec<Value> {
    let log: Value = caller
        .get(format!("{base}/api/webhooks/{endpoint}/deliveries"))
        .await
        .json()
        .await
        .unwrap();
    log["deliveries"].as_array().unwrap().clone()
}

/// Waits until the endpoint's delivery `id` has left `pending`; returns it.
async fn settled(caller: &Caller, base: &str, endpoint: &str, id: &str) -> Value {
    wait_for(
        Duration::from_secs(90),
        "the delivery to settle",
        || async {
            deliveries(caller, base, endpoint)
                .await
                .into_iter()
                .find(|d| d["id"] == id && d["status"] != "pending")
        },
    )
    .await
}

/// Sends the endpoint a test event and waits for its first attempt; the delivery as logged.
async fn tested_once(caller: &Caller, base: &str, endpoint: &str) -> Value {
    let id = send_test(caller, base, endpoint).await;
    wait_for(
        Duration::from_secs(60),
        "the test event's first attempt",
        || async {
            deliveries(caller, base, endpoint)
                .await
                .into_iter()
                .find(|d| d["id"] == id.as_str() && !d["attempts"].as_array().unwrap().is_empty())
        },
    )
    .await
}

async fn send_test(caller: &Caller, base: &str, endpoint: &str) -> String {
    let queued = caller
        .post(format!("{base}/api/webhooks/{endpoint}/test"), json!({}))
        .await;
    assert_eq!(queued.status(), 202);
    let queued: Value = queued.json().await.unwrap();
    queued["delivery_id"].as_str().unwrap().to_owned()
}

async fn delivery_rows_of_task(install: &Install, task: &str) -> i64 {
    let mut conn = install.app.db.get().await.unwrap();
    let query = webhook_deliveries::table
        .filter(webhook_deliveries::task_id.eq(task.to_owned()))
        .count();
    ocrd::with_conn!(&mut conn, |c| query.get_result::<i64>(c).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_events_and_callbacks_are_signed_as_the_reference_library_verifies_on_both_backends() {
    let page = std::fs::read(&sample_pages()[0].0).unwrap();
    let mut broken = crate::support::tiny_png();
    broken.truncate(40);
    // The workers' recovery round, which runs the purge, comes every second in tests.
    let tweak = |c: &mut ocrd::config::Config| c.webhooks.allow_private_targets = true;
    for install in [
        Install::embedded(tweak).await,
        Install::distributed(tweak).await,
    ] {
        let base = served(&install).await;
        let user = Caller::new(&install, &base, Role::User).await;
        let receiver = Receiver::start(Answer::status(200));
        let ends = create_endpoint(
            &user,
            &base,
            &receiver.url("/ends"),
            &["task.completed", "task.failed"],
        )
        .await;
        let ends_secret = ends["secret"].as_str().unwrap().to_owned();
        assert!(ends_secret.starts_with("whsec_"), "{ends}");
        let cancels =
            create_endpoint(&user, &base, &receiver.url("/cancels"), &["task.cancelled"]).await;
        let listed = endpoints(&user, &base).await;
        assert_eq!(listed["webhooks"].as_array().unwrap().len(), 2);
        assert!(listed["webhooks"][0].get("secret").is_none(), "{listed}");

        // A completed task with its own callback, and a failed one; then one cancelled while
        // queued (by the server, with no worker running): its event goes out once one runs.
        let form = reqwest::multipart::Form::new()
            .text("callback_url", receiver.url("/callback"))
            .part(
                "file",
                reqwest::multipart::Part::bytes(page.clone()).file_name("page.png"),
            );
        let uploaded = user.upload_form(&base, form).await;
        assert_eq!(uploaded.status(), 202);
        let uploaded: Value = uploaded.json().await.unwrap();
        let good = uploaded["id"].as_str().unwrap().to_owned();
        let callback_secret = uploaded["callback_secret"].as_str().unwrap().to_owned();
        assert_eq!(uploaded["callback_url"], receiver.url("/callback"));
        let shown: Value = user
            .get(format!("{base}/api/tasks/{good}"))
            .await
            .json()
            .await
            .unwrap();
        assert!(
            shown.get("callback_secret").is_none(),
            "shown once: {shown}"
        );
        let bad = install
            .submit_bytes_as(&user.id, "bad.png", broken.clone())
            .await
            .id;
        let cancelled = install
            .submit_bytes_as(&user.id, "cancel.png", page.clone())
            .await
            .id;
        let cancel = user
            .post(format!("{base}/api/tasks/{cancelled}/cancel"), json!({}))
            .await;
        assert_eq!(cancel.status(), 200);

        let (stop, worker) = crate::all_in_one::start_worker(&install, crate::ocr::engine());
        let got = receiver.wait_for(4, Duration::from_secs(120)).await;
        let by_path = |path: &str| -> Vec<Received> {
            got.iter().filter(|r| r.path == path).cloned().collect()
        };
        let (ends_got, cancels_got, callback_got) =
            (by_path("/ends"), by_path("/cancels"), by_path("/callback"));
        assert_eq!(
            (ends_got.len(), cancels_got.len(), callback_got.len()),
            (2, 1, 1),
            "{got:#?}"
        );
        let event_of = |r: &Received| {
            let body = r.json();
            (
                body["type"].as_str().unwrap().to_owned(),
                body["data"]["id"].as_str().unwrap().to_owned(),
            )
        };
        let mut ends_events: Vec<(String, String)> = ends_got.iter().map(event_of).collect();
        ends_events.sort();
        assert_eq!(
            ends_events,
            [
                ("task.completed".to_owned(), good.clone()),
                ("task.failed".to_owned(), bad.clone())
            ]
        );
        assert_eq!(
            event_of(&cancels_got[0]),
            ("task.cancelled".to_owned(), cancelled.clone())
        );
        assert_eq!(
            event_of(&callback_got[0]),
            ("task.completed".to_owned(), good.clone())
        );
        let failed = ends_got
            .iter()
            .find(|r| r.json()["type"] == "task.failed")
            .unwrap()
            .json();
        assert_eq!(failed["data"]["status"], "failed");
        assert_eq!(failed["data"]["error"]["code"], "undecodable", "{failed}");
        for r in &got {
            assert!(r.id().starts_with("msg_"), "{r:?}");
            assert_eq!(r.headers["content-type"], "application/json");
        }
        let cancels_secret = cancels["secret"].as_str().unwrap();
        let mut cases: Vec<(&Received, &str)> =
            ends_got.iter().map(|r| (r, ends_secret.as_str())).collect();
        cases.push((&cancels_got[0], cancels_secret));
        cases.push((&callback_got[0], callback_secret.as_str()));
        verify_with_reference_library(&cases);

        // The log shows each delivery with its attempt.
        let ends_id = ends["id"].as_str().unwrap();
        let log = deliveries(&user, &base, ends_id).await;
        assert_eq!(log.len(), 2, "{log:?}");
        for delivery in &log {
            assert_eq!(delivery["status"], "delivered", "{delivery}");
            assert_eq!(delivery["attempts"][0]["status_code"], 200, "{delivery}");
        }

        // Rotation: both secrets sign for a while, and each verifies on its own.
        let rotated: Value = user
            .post(format!("{base}/api/webhooks/{ends_id}/rotate"), json!({}))
            .await
            .json()
            .await
            .unwrap();
        let new_secret = rotated["secret"].as_str().unwrap().to_owned();
        assert_ne!(new_secret, ends_secret);
        assert!(rotated["previous_secret_until"].is_string(), "{rotated}");
        let test_id = send_test(&user, &base, ends_id).await;
        let got = receiver.wait_for(5, Duration::from_secs(60)).await;
        let test = got.iter().find(|r| r.id() == test_id).unwrap();
        assert_eq!(test.json()["type"], "webhook.test");
        assert_eq!(
            test.headers["webhook-signature"].split(' ').count(),
            2,
            "{test:?}"
        );
        verify_with_reference_library(&[(test, &new_secret), (test, &ends_secret)]);

        // Erasing a task erases its payloads: by its owner, and by the retention purge (with
        // an audit record).
        assert_eq!(delivery_rows_of_task(&install, &good).await, 2);
        let deleted = user
            .client
            .delete(format!("{base}/api/tasks/{good}"))
            .header("X-CSRF-Token", &user.csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), 204);
        assert_eq!(delivery_rows_of_task(&install, &good).await, 0);
        assert_eq!(delivery_rows_of_task(&install, &bad).await, 1);
        {
            let mut conn = install.app.db.get().await.unwrap();
            let expire = diesel::update(tasks::table.find(bad.clone())).set((
                tasks::retention_days.eq(Some(1)),
                tasks::finished_at.eq(Some(now() - TimeDelta::days(2))),
            ));
            ocrd::with_conn!(&mut conn, |c| expire.execute(c).await).unwrap();
        }
        wait_for(Duration::from_secs(60), "the purge", || async {
            (user.get(format!("{base}/api/tasks/{bad}")).await.status() == 404).then_some(())
        })
        .await;
        assert_eq!(delivery_rows_of_task(&install, &bad).await, 0);
        let admin = Caller::new(&install, &base, Role::Admin).await;
        let audit: Value = admin
            .get(format!("{base}/api/admin/audit?action=task.purge"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(audit["entries"][0]["target"], json!(bad), "{audit}");

        stop.cancel();
        worker.await.unwrap();
        install.assert_no_orphans().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_follow_the_schedule_and_endpoints_that_keep_failing_are_disabled() {
    // 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h become 0.5 ms … 3.6 s; 5 days 43.2 s.
    const SCALE: f64 = 0.0001;
    let install = Install::distributed(|c| {
        c.webhooks.allow_private_targets = true;
        c.webhooks.clock_scale = SCALE;
    })
    .await;
    let base = served(&install).await;
    let user = Caller::new(&install, &base, Role::User).await;
    let receiver = Receiver::start(Answer::status(500));
    let endpoint = create_endpoint(&user, &base, &receiver.url("/hook"), &["task.completed"]).await;
    let endpoint = endpoint["id"].as_str().unwrap().to_owned();
    let (stop, worker) = crate::all_in_one::start_worker(&install, crate::ocr::engine());

    // Eight tries, each after the planned wait (give or take 10 %), then it has failed.
    let failing = send_test(&user, &base, &endpoint).await;
    let delivery = settled(&user, &base, &endpoint, &failing).await;
    assert_eq!(delivery["status"], "failed", "{delivery}");
    let attempts = delivery["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 8, "{delivery}");
    assert!(
        attempts.iter().all(|a| a["status_code"] == 500),
        "{delivery}"
    );
    assert_eq!(
        attempts[0]["response"], "ok\u{fffd}<img src=x onerror=alert(1)>",
        "{delivery}"
    );
    assert!(
        attempts[..7]
            .iter()
            .all(|a| a["next_attempt_at"].is_string())
    );
    assert!(attempts[7]["next_attempt_at"].is_null(), "{delivery}");
    let got = receiver.received();
    assert_eq!(got.len(), 8);
    assert!(
        got.iter().all(|r| r.id() == failing),
        "one webhook-id on every try"
    );
    let planned = [5.0, 300.0, 1800.0, 7200.0, 18_000.0, 36_000.0, 36_000.0];
    for (i, pair) in got.windows(2).enumerate() {
        let gap = (pair[1].at - pair[0].at).as_secs_f64();
        let wait = planned[i] * SCALE;
        assert!(
            gap >= wait * 0.9 - 0.005 && gap <= wait * 1.1 + 2.0,
            "try {}: {gap:.3} s after the one before, planned {wait:.4} s",
            i + 2
        );
    }

    // Redelivery starts again, with the same webhook-id, and succeeds.
    receiver.answer_usually(Answer::status(204));
    let again = user
        .post(
            format!("{base}/api/webhooks/{endpoint}/redeliver"),
            json!({"delivery_id": failing}),
        )
        .await;
    assert_eq!(again.status(), 202);
    wait_for(Duration::from_secs(60), "the redelivery", || async {
        deliveries(&user, &base, &endpoint)
            .await
            .into_iter()
            .find(|d| d["id"] == failing.as_str() && d["status"] == "delivered")
    })
    .await;
    assert_eq!(receiver.received().last().unwrap().id(), failing);

    // Retry-After is honoured: an hour is 0.36 s here, against 0.5 ms planned.
    receiver.answer_next(&[Answer {
        status: 429,
        headers: vec![("retry-after", "3600".into())],
    }]);
    let throttled = send_test(&user, &base, &endpoint).await;
    // While it is pending (at least 0.36 s), another test and its redelivery wait.
    let second = user
        .post(format!("{base}/api/webhooks/{endpoint}/test"), json!({}))
        .await;
    assert_eq!(second.status(), 409);
    let early = user
        .post(
            format!("{base}/api/webhooks/{endpoint}/redeliver"),
            json!({"delivery_id": throttled}),
        )
        .await;
    assert_eq!(early.status(), 409);
    let delivery = settled(&user, &base, &endpoint, &throttled).await;
    assert_eq!(delivery["status"], "delivered", "{delivery}");
    let tries: Vec<Received> = receiver
        .received()
        .into_iter()
        .filter(|r| r.id() == throttled)
        .collect();
    assert_eq!(tries.len(), 2);
    let gap = (tries[1].at - tries[0].at).as_secs_f64();
    assert!(gap >= 3600.0 * SCALE * 0.99, "retried after {gap:.3} s");

    // Failing for 5 days (43.2 s here) disables the endpoint at the next failure.
    receiver.answer_usually(Answer::status(503));
    {
        let mut conn = install.app.db.get().await.unwrap();
        let since = now() - TimeDelta::seconds(50);
        let update = diesel::update(webhook_endpoints::table.find(endpoint.clone()))
            .set(webhook_endpoints::failing_since.eq(Some(since)));
        ocrd::with_conn!(&mut conn, |c| update.execute(c).await).unwrap();
    }
    let last = send_test(&user, &base, &endpoint).await;
    let delivery = settled(&user, &base, &endpoint, &last).await;
    assert_eq!(delivery["status"], "failed", "{delivery}");
    let listed = endpoints(&user, &base).await;
    let hook = &listed["webhooks"][0];
    assert!(hook["disabled_at"].is_string(), "{hook}");
    assert_eq!(hook["disabled_reason"], "Every delivery failed for 5 days.");
    let refused = user
        .post(format!("{base}/api/webhooks/{endpoint}/test"), json!({}))
        .await;
    assert_eq!(refused.status(), 400);

    // Enabled again, a 410 Gone disables it at once, without retries.
    let enabled = user
        .post(format!("{base}/api/webhooks/{endpoint}/enable"), json!({}))
        .await;
    assert_eq!(enabled.status(), 200);
    receiver.answer_usually(Answer::status(410));
    let gone = send_test(&user, &base, &endpoint).await;
    let delivery = settled(&user, &base, &endpoint, &gone).await;
    assert_eq!(
        delivery["attempts"].as_array().unwrap().len(),
        1,
        "{delivery}"
    );
    let listed = endpoints(&user, &base).await;
    assert_eq!(
        listed["webhooks"][0]["disabled_reason"],
        "The endpoint answered 410 Gone."
    );

    // Another user sees none of it.
    let other = Caller::new(&install, &base, Role::User).await;
    let theirs = other
        .get(format!("{base}/api/webhooks/{endpoint}/deliveries"))
        .await;
    assert_eq!(theirs.status(), 404);
    let body: Value = theirs.json().await.unwrap();
    assert_eq!(body["error"]["code"], "webhook_not_found");
    stop.cancel();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_never_reach_private_addresses_or_follow_redirects() {
    let install = Install::embedded(|_| {}).await;
    let base = served(&install).await;
    let user = Caller::new(&install, &base, Role::User).await;
    let receiver = Receiver::start(Answer::status(200));
    let port = receiver.addr.port();

    // Refused when registered: loopback, the metadata service, IPv6 loopback, a name that
    // resolves to loopback, a private network.
    for url in [
        format!("http://127.0.0.1:{port}/hook"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("http://[::1]:{port}/hook"),
        format!("http://localhost:{port}/hook"),
        "https://10.0.0.7/hook".to_owned(),
        "http://[::ffff:127.0.0.1]/hook".to_owned(),
    ] {
        let refused = user
            .post(
                format!("{base}/api/webhooks"),
                json!({"url": url, "events": ["task.completed"]}),
            )
            .await;
        assert_eq!(refused.status(), 422, "{url}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "webhook_target_refused", "{url}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("may not reach"),
            "{body}"
        );
    }
    for (url, events) in [
        ("ftp://example.com/hook", json!(["task.completed"])),
        ("not a url", json!(["task.completed"])),
        (
            "http://user:secret@example.com/hook",
            json!(["task.completed"]),
        ),
        ("https://example.com/hook", json!([])),
        ("https://example.com/hook", json!(["task.deleted"])),
    ] {
        let refused = user
            .post(
                format!("{base}/api/webhooks"),
                json!({"url": url, "events": events}),
            )
            .await;
        assert_eq!(refused.status(), 400, "{url} {events}");
    }
    let listed = endpoints(&user, &base).await;
    assert_eq!(listed["webhooks"], json!([]));

    // A callback to the metadata service is refused before anything is stored.
    let form = reqwest::multipart::Form::new()
        .text("callback_url", "http://169.254.169.254/latest/meta-data/")
        .part(
            "file",
            reqwest::multipart::Part::bytes(crate::support::tiny_png()).file_name("p.png"),
        );
    let refused = user.upload_form(&base, form).await;
    assert_eq!(refused.status(), 422);
    let tasks: Value = user
        .get(format!("{base}/api/tasks"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tasks["tasks"], json!([]));

    // Checked again at every attempt: an endpoint stored with a loopback URL (as one whose
    // name later resolves there would be) is refused by the sender, and nothing arrives.
    let smuggled = {
        let mut conn = install.app.db.get().await.unwrap();
        WebhookEndpoint::create(
            &mut conn,
            &user.id,
            &receiver.url("/smuggled"),
            "task.completed",
            &ocrd::webhooks::signing::new_secret(),
        )
        .await
        .unwrap()
    };
    let named = {
        let mut conn = install.app.db.get().await.unwrap();
        WebhookEndpoint::create(
            &mut conn,
            &user.id,
            &format!("http://localhost:{port}/named"),
            "task.completed",
            &ocrd::webhooks::signing::new_secret(),
        )
        .await
        .unwrap()
    };
    let (stop, worker) = crate::all_in_one::start_worker(&install, crate::ocr::engine());
    for endpoint in [&smuggled.id, &named.id] {
        let log = tested_once(&user, &base, endpoint).await;
        let attempt = &log["attempts"][0];
        assert!(attempt["status_code"].is_null(), "{log}");
        assert!(
            attempt["error"].as_str().unwrap().starts_with("Refused:"),
            "{log}"
        );
    }
    assert!(receiver.received().is_empty(), "{:?}", receiver.received());
    stop.cancel();
    worker.await.unwrap();

    // No redirect is followed, to a private address or anywhere: a 302 is a failed attempt.
    let open = Install::embedded(|c| {
        c.webhooks.allow_private_targets = true;
        c.webhooks.timeout_secs = 1;
    })
    .await;
    let base = served(&open).await;
    let user = Caller::new(&open, &base, Role::User).await;
    let target = Receiver::start(Answer::status(200));
    let redirecting = Receiver::start(Answer {
        status: 302,
        headers: vec![("location", target.url("/inside"))],
    });
    let endpoint = create_endpoint(&user, &base, &redirecting.url("/hook"), &["task.failed"]).await;
    let endpoint = endpoint["id"].as_str().unwrap().to_owned();
    let (stop, worker) = crate::all_in_one::start_worker(&open, crate::ocr::engine());
    let log = tested_once(&user, &base, &endpoint).await;
    assert_eq!(log["attempts"][0]["status_code"], 302, "{log}");
    assert_eq!(log["status"], "pending", "tried again later: {log}");
    assert_eq!(redirecting.received().len(), 1);
    assert!(target.received().is_empty(), "the redirect was followed");

    // A receiver that takes the connection and never answers: the attempt ends at
    // webhooks.timeout_secs (1 s here), logged as no answer, and is tried again.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/hook", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            open.push(connection);
        }
    });
    let endpoint = create_endpoint(&user, &base, &silent_url, &["task.failed"]).await;
    let endpoint = endpoint["id"].as_str().unwrap().to_owned();
    let log = tested_once(&user, &base, &endpoint).await;
    let attempt = &log["attempts"][0];
    assert!(attempt["status_code"].is_null(), "{log}");
    assert_eq!(
        attempt["error"], "No answer within webhooks.timeout_secs.",
        "{log}"
    );
    assert!(attempt["latency_ms"].as_i64().unwrap() >= 1000, "{log}");
    assert_eq!(log["status"], "pending", "tried again later: {log}");
    held.abort();

    // One callback per upload: a second `callback_url` field is refused, nothing stored.
    let form = reqwest::multipart::Form::new()
        .text("callback_url", target.url("/one"))
        .text("callback_url", target.url("/two"))
        .part(
            "file",
            reqwest::multipart::Part::bytes(crate::support::tiny_png()).file_name("p.png"),
        );
    let refused = user.upload_form(&base, form).await;
    assert_eq!(refused.status(), 400);
    let tasks: Value = user
        .get(format!("{base}/api/tasks"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tasks["tasks"], json!([]));
    stop.cancel();
    worker.await.unwrap();
}
