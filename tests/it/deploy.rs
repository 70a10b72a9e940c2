//! The deployment artefacts in `deploy/`, checked with their own ecosystem's tools.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// Each unit with the highest `systemd-analyze security` exposure it may have.
const UNITS: [(&str, f32); 4] = [
    ("ocrd-serve.service", 2.0),
    ("ocrd-migrate.service", 2.0),
    ("ocrd-backup.service", 2.0),
    ("ocrd-work@.service", 3.0),
];

/// A tool's whole answer: its standard output, then its standard error.
fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The tool succeeded; `what` and its answer otherwise.
fn assert_succeeded(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}: {}", said(out));
}

/// The tool succeeded and said nothing (a check with no finding).
fn assert_silent_success(out: &Output, what: &str) {
    let said = said(out);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "{what}: {said}"
    );
}

fn systemd_analyze(args: &[&str], dir: &Path) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("systemd-analyze is not installed (Debian package `systemd`; scripts/test-services.sh installs it)")
}

#[test]
fn systemd_units_verify_clean_and_stay_within_their_exposure() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = crate::ocr::repo().join("deploy/systemd");
    let mut names = Vec::new();
    for (unit, _) in UNITS {
        let text = std::fs::read_to_string(shipped.join(unit)).unwrap();
        assert!(
            text.contains("ExecStart=/usr/local/bin/ocrd "),
            "{unit}: ExecStart moved"
        );
        // verify checks that ExecStart is executable: point it at the binary under test.
        let text = text.replace("/usr/local/bin/ocrd", crate::install::ocrd_bin());
        // A template is verified as an instance of it.
        let name = unit.replace("@.", "@0.");
        std::fs::write(dir.path().join(&name), text).unwrap();
        names.push(format!("./{name}"));
    }
    // The timer is verified beside the service it starts.
    std::fs::copy(
        shipped.join("ocrd-backup.timer"),
        dir.path().join("ocrd-backup.timer"),
    )
    .unwrap();
    names.push("./ocrd-backup.timer".into());
    let mut args = vec!["verify", "--man=no"];
    args.extend(names.iter().map(String::as_str));
    assert_silent_success(
        &systemd_analyze(&args, dir.path()),
        "systemd-analyze verify",
    );

    for ((unit, most), name) in UNITS.iter().zip(&names[..UNITS.len()]) {
        let out = systemd_analyze(&["security", "--offline=yes", name], dir.path());
        let text = String::from_utf8_lossy(&out.stdout);
        let exposure: f32 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|l| l.split(": ").nth(1))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{unit}: no exposure in\n{text}"));
        eprintln!(
            "systemd-analyze security --offline=yes {unit}: exposure {exposure:.1} (at most {most:.1})"
        );
        assert!(
            exposure <= *most,
            "{unit}: exposure {exposure} over {most}\n{text}"
        );
    }
}

/// `ocrd admin db grant-app-role`: the server and a worker run the whole journey as a role
/// with DML rights only, and that role cannot change the schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_role_runs_the_journey_and_cannot_change_the_schema() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
    use serde_json::Value;

    let _turn = crate::worker::one_at_a_time().await;
    let install = crate::install::Install::distributed(|_| {}).await;
    let role = crate::support::unique("ocrd_app_");
    let mut admin = crate::support::admin_connection().await;
    admin
        .batch_execute(&format!("CREATE ROLE {role} LOGIN"))
        .await
        .unwrap();
    // As an operator would, with the owner's configuration.
    let grant = |role: &str| {
        install
            .ocrd_command()
            .args(["admin", "db", "grant-app-role", role])
            .output()
            .unwrap()
    };
    // A name that would be SQL, and a role that does not exist, are refused with the reason.
    for (bad, reason) in [
        ("x\"; DROP TABLE users; --", "is not a plain role name"),
        ("ocrd_no_such_role_9f1c", "does not exist"),
    ] {
        let out = grant(bad);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && said.contains(reason),
            "{bad}: {said}"
        );
    }
    assert_succeeded(&grant(&role), "grant-app-role");
    let mut app_url = url::Url::parse(&install.db.url).unwrap();
    app_url.set_username(&role).unwrap();
    app_url.set_password(None).unwrap();
    let app_url = app_url.to_string();

    // A server and a worker as the application role.
    let mut config = install.config.clone();
    config.database.url = ocrd::config::Secret::new(app_url.clone());
    config.database.migrate_on_start = false;
    let app = ocrd::app::App::build(config)
        .await
        .expect("the server as the app role");
    let addr = crate::install::serve_app(app);
    let _worker = install.spawn_worker(
        "app-role",
        &[
            ("OCRD_DATABASE__URL", &app_url),
            ("OCRD_DATABASE__MIGRATE_ON_START", "false"),
        ],
    );
    let base = format!("http://{addr}");
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let email = format!("{}@example.com", crate::support::unique("role"));
    let csrf = crate::support::register_and_sign_in(&base, &browser, &email).await;
    let page = std::fs::read(crate::ocr::repo().join("../shared/eval/skew/page_005.png")).unwrap();
    let form = reqwest::multipart::Form::new().text("formats", "txt").part(
        "file",
        reqwest::multipart::Part::bytes(page).file_name("page.png"),
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
    let id = task["id"].as_str().unwrap().to_owned();
    let done = crate::install::wait_for(
        std::time::Duration::from_secs(180),
        "the task as the app role",
        || {
            let (browser, url) = (browser.clone(), format!("{base}/api/tasks/{id}"));
            async move {
                let task: Value = browser.get(url).send().await.ok()?.json().await.ok()?;
                matches!(task["status"].as_str(), Some("completed" | "failed")).then_some(task)
            }
        },
    )
    .await;
    assert_eq!(done["status"], "completed", "{done}");
    let text = browser
        .get(format!("{base}/api/tasks/{id}/result?format=txt"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.trim().is_empty());

    // The daily backup runs as the application role too (ocrd-backup.service reads ocrd.env).
    let backups = tempfile::tempdir().unwrap();
    let out = install
        .ocrd_command()
        .args(["backup", "create", "--output"])
        .arg(backups.path())
        .env("OCRD_DATABASE__URL", &app_url)
        .output()
        .unwrap();
    assert_succeeded(&out, "backup create as the app role");

    // The schema is the owner's.
    let mut conn = AsyncPgConnection::establish(&app_url).await.unwrap();
    for ddl in [
        "CREATE TABLE intruder (id int)",
        "DROP TABLE tasks",
        "ALTER TABLE users ADD COLUMN intruder int",
        "DELETE FROM __diesel_schema_migrations",
    ] {
        let refused = conn.batch_execute(ddl).await.expect_err(ddl).to_string();
        assert!(
            refused.contains("permission denied") || refused.contains("must be owner"),
            "{ddl}: {refused}"
        );
    }
    drop(conn);
    let mut owner = AsyncPgConnection::establish(&install.db.url).await.unwrap();
    owner
        .batch_execute(&format!("DROP OWNED BY {role}"))
        .await
        .unwrap();
    drop(owner);
    drop(install);
    let _ = admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await;
}

/// `promtool check metrics` (Debian's `prometheus`) finds nothing wrong with `text`.
pub fn assert_promtool_clean(what: &str, text: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is not installed (Debian package `prometheus`; scripts/test-services.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_silent_success(&out, &format!("promtool check metrics, {what} ({text})"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_of_serve_and_work_pass_promtool() {
    // One sign-in a minute: the second is refused, so the rate-limit series exists too.
    let install = crate::install::Install::distributed(|c| c.rate_limits.auth_per_minute = 1).await;
    let base = format!("http://{}", install.serve());
    let http = reqwest::Client::new();
    for path in ["/healthz", "/api/tasks", "/nope"] {
        http.get(format!("{base}{path}")).send().await.unwrap();
    }
    for _ in 0..2 {
        http.post(format!("{base}/api/auth/login"))
            .json(&serde_json::json!({"email": "nobody@example.com", "password": "wrong"}))
            .send()
            .await
            .unwrap();
    }
    // A task that fails (a decompression bomb), so that failures by code are exported.
    install
        .submit_bytes("bomb.png", crate::support::png_bomb(100_000, 100_000))
        .await;
    let response = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains("# TYPE ocrd_http_requests_total counter"),
        "{text}"
    );
    assert_promtool_clean("serve", &text);
    // Prometheus itself asks for OpenMetrics, and gets it.
    let response = http
        .get(format!("{base}/metrics"))
        .header(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(response.text().await.unwrap().trim_end().ends_with("# EOF"));

    // The worker's health server, with the task and queue series.
    let worker = install.spawn_worker("metrics", &[]);
    let text = crate::install::wait_for(
        Duration::from_secs(120),
        "the failed task in the worker's metrics",
        || async {
            let (status, text) = worker.health("/metrics").await;
            assert_eq!(status, 200);
            text.contains("ocrd_tasks_failed_total{").then_some(text)
        },
    )
    .await;
    assert!(text.contains("ocrd_queue_waiting_tasks"), "{text}");
    assert_promtool_clean("work", &text);

    // The dashboard and the alerts query only series that serve, work or Prometheus have.
    let serve = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "ocrd_websocket_connections",
        "ocrd_db_pool_connections",
        "ocrd_db_pool_waiting",
        "ocrd_backup_last_success_timestamp_seconds",
    ] {
        assert!(
            serve.contains(&format!("# TYPE {name} gauge")),
            "{name} in\n{serve}"
        );
    }
    let exported = exported_series(&[&serve, &text]);
    let repo = crate::ocr::repo();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo.join("deploy/grafana/ocrd.json")).unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(exprs.len() >= 14, "{exprs:?}");
    let alerts = std::fs::read_to_string(repo.join("deploy/prometheus/alerts.yml")).unwrap();
    for (what, text) in exprs
        .iter()
        .map(|e| ("deploy/grafana/ocrd.json", e.as_str()))
        .chain([("deploy/prometheus/alerts.yml", alerts.as_str())])
    {
        for name in metric_names(text) {
            assert!(
                exported.contains(&name),
                "{what} queries {name}, which nothing exports"
            );
        }
    }
    // Each panel's query is valid PromQL: promtool checks them as recording rules.
    let dir = tempfile::tempdir().unwrap();
    let rules: Vec<serde_json::Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| serde_json::json!({"record": format!("ocrd:panel_{i}"), "expr": e}))
        .collect();
    let file = dir.path().join("panels.yml");
    std::fs::write(
        &file,
        serde_json::json!({"groups": [{"name": "panels", "rules": rules}]}).to_string(),
    )
    .unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert_succeeded(&out, "promtool check rules, the dashboard's queries");
}

/// The series names `texts` (Prometheus text) export, with `up` and node_exporter's
/// filesystem series (the disk alert) that Prometheus has besides.
fn exported_series(texts: &[&str]) -> std::collections::HashSet<String> {
    let mut names: std::collections::HashSet<String> = [
        "up",
        "node_filesystem_avail_bytes",
        "node_filesystem_size_bytes",
    ]
    .map(String::from)
    .into();
    for line in texts.iter().flat_map(|t| t.lines()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_whitespace().next().unwrap_or("");
            let base = name.strip_suffix("_total").unwrap_or(name);
            for suffix in ["", "_total", "_bucket", "_sum", "_count"] {
                names.insert(format!("{base}{suffix}"));
            }
        }
    }
    names
}

/// The `ocrd_*`, `up` and `node_*` names in a query or rule file.
fn metric_names(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("ocrd_") || w.starts_with("node_filesystem") || *w == "up")
        .map(String::from)
        .collect()
}

#[test]
fn the_prometheus_alerts_are_valid_and_fire_when_they_should() {
    let dir = crate::ocr::repo().join("deploy/prometheus");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool is not installed (Debian package `prometheus`; scripts/test-services.sh installs it)");
        assert_succeeded(&out, &format!("promtool {}", args.join(" ")));
    }
}

/// The shipped fail2ban filter, run by `fail2ban-regex` over the log of a real server (both
/// log formats): every failed sign-in matches with the client's address, and nothing else
/// does, not even an email address crafted to look like a failure from another address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail2ban_filter_matches_failed_sign_ins_in_a_real_log() {
    let filter = crate::ocr::repo().join("deploy/fail2ban/filter.d/ocrd.conf");
    for format in ["pretty", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::install::free_port();
        let (_server, _, log) = crate::edge::spawn_all_in_one(
            dir.path(),
            &[
                ("OCRD_SERVER__BIND", format!("127.0.0.1:{port}")),
                ("OCRD_LOG__FORMAT", format.to_owned()),
            ],
        );
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        crate::install::wait_for(Duration::from_secs(120), "ocrd to answer", || async {
            client.get(format!("{base}/healthz")).send().await.ok()
        })
        .await;
        let email = format!("{}@example.com", crate::support::unique("f2b"));
        crate::support::register_and_sign_in(&base, &client, &email).await;
        let forged = "x\" login failed client=10.9.9.9 email=\"@example.com";
        for (who, password) in [
            (email.as_str(), "wrong"),
            ("nobody@example.com", "wrong"),
            (forged, "wrong"),
        ] {
            let response = client
                .post(format!("{base}/api/auth/login"))
                .json(&serde_json::json!({"email": who, "password": password}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 401);
        }
        let text =
            crate::install::wait_for(Duration::from_secs(30), "three failures logged", || async {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                (text.matches("login failed").count() >= 3).then_some(text)
            })
            .await;
        let out = Command::new("fail2ban-regex")
            .args(["--print-all-matched", "--raw"])
            .arg(&log)
            .arg(&filter)
            .output()
            .expect("fail2ban-regex is not installed (Debian package `fail2ban`; scripts/test-services.sh installs it)");
        assert_succeeded(&out, "fail2ban-regex");
        let said = String::from_utf8_lossy(&out.stdout);
        let matched: usize = said
            .lines()
            .find_map(|l| l.trim().strip_prefix("Lines: "))
            .and_then(|l| l.split(", ").find_map(|p| p.strip_suffix(" matched")))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no match count in\n{said}"));
        eprintln!("fail2ban-regex ({format} log): {matched} of 3 failed sign-ins matched");
        assert_eq!(matched, 3, "{format} log:\n{text}\nfail2ban-regex:\n{said}");
        assert!(
            said.contains("127.0.0.1") && !said.contains("10.9.9.9"),
            "{said}"
        );
    }
}

/// deploy/iam/ocrd-policy.json on a moto server that enforces IAM: an IAM user holding only
/// that policy runs the whole journey (upload, recognition, results, download, deletion), and
/// is refused everything else: other prefixes, the bucket itself, managing keys, IAM. (moto
/// checks KMS actions but not their key scope: see tests/scripts/iam_on_moto.py.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_iam_policy_allows_the_journey_and_nothing_more() {
    let repo = crate::ocr::repo();
    let venv = repo.join("target/test-venv/bin");
    let port = crate::install::free_port();
    let dir = tempfile::tempdir().unwrap();
    let _moto = crate::edge::KillOnDrop(
        Command::new(venv.join("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // The setup's first four requests make an administrator; IAM applies from then on.
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "4")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("moto.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "moto_server in {}: {e}\n  {}",
                    venv.display(),
                    crate::support::HOW_TO_RUN
                )
            }),
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    // A TCP connect, not a request: requests count towards the unauthenticated four.
    crate::install::wait_for(Duration::from_secs(60), "moto to listen", || async {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .await;
    let bucket = crate::support::unique("ocrd-iam-");
    let out = Command::new(venv.join("python"))
        .arg(repo.join("tests/scripts/iam_on_moto.py"))
        .arg(&endpoint)
        .arg(repo.join("deploy/iam/ocrd-policy.json"))
        .arg(&bucket)
        .output()
        .unwrap();
    assert_succeeded(&out, "tests/scripts/iam_on_moto.py");
    let setup: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (what, answer) in setup["answers"].as_object().unwrap() {
        let want_allowed = what.starts_with("put under uploads/")
            || what.starts_with("generate a data key with the key");
        eprintln!("IAM policy: {what}: {answer}");
        if want_allowed {
            assert_eq!(answer, "allowed", "{what}");
        } else {
            // moto's KMS answers a bare 403 where AWS says AccessDeniedException.
            let code = answer.as_str().unwrap();
            assert!(code.contains("Denied") || code == "403", "{what}: {answer}");
        }
    }

    let text = |key: &str| setup[key].as_str().unwrap().to_owned();
    let install = crate::install::Install::distributed(|c| {
        c.storage.endpoint = Some(endpoint.clone());
        c.storage.bucket = Some(text("bucket"));
        c.storage.kms_key_id = Some(text("kms_key_arn"));
        c.storage.access_key_id = Some(text("access_key_id"));
        c.storage.secret_access_key = ocrd::config::Secret::new(text("secret_access_key"));
    })
    .await;
    let (page, _) = &crate::install::sample_pages()[0];
    let task = install.submit_file(page).await;
    {
        let _turn = crate::worker::one_at_a_time().await;
        let done = crate::all_in_one::run_worker_until_finished(
            &install,
            crate::ocr::engine(),
            std::slice::from_ref(&task.id),
            Duration::from_secs(600),
        )
        .await;
        assert_eq!(
            done[0].status,
            ocrd::db::models::TaskStatus::Completed,
            "{done:?}"
        );
    }
    assert!(!install.result_text(&task.id).await.trim().is_empty());
    let blobs = &install.app.blobs;
    assert!(blobs.list("").await.unwrap().len() >= 3);
    let elsewhere = ocrd::blobs::BlobKey::parse("elsewhere/y").unwrap();
    let refused = blobs
        .put_bytes(&elsewhere, bytes::Bytes::from_static(b"y"))
        .await;
    assert!(
        refused.is_err(),
        "a put outside uploads/ and results/ was allowed"
    );
    ocrd::tasks::delete(&install.app, &install.user.id, &task.id)
        .await
        .unwrap();
    let left: Vec<String> = blobs
        .list("")
        .await
        .unwrap()
        .into_iter()
        .filter(|k| !k.starts_with("elsewhere/"))
        .collect();
    assert!(left.is_empty(), "deleting the task left {left:?}");
}

/// `log.format = "json"`, as production runs: every line is one JSON object; a request's
/// lines carry its id (the one answered in `X-Request-Id`), and a task's lines its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_request_and_task_ids_on_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::install::free_port();
    let _turn = crate::worker::one_at_a_time().await;
    let (_server, _, log) = crate::edge::spawn_all_in_one(
        dir.path(),
        &[
            ("OCRD_SERVER__BIND", format!("127.0.0.1:{port}")),
            ("OCRD_LOG__FORMAT", "json".to_owned()),
        ],
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    crate::install::wait_for(Duration::from_secs(120), "ocrd to answer", || async {
        client.get(format!("{base}/healthz")).send().await.ok()
    })
    .await;
    let email = format!("{}@example.com", crate::support::unique("logs"));
    let csrf = crate::support::register_and_sign_in(&base, &client, &email).await;
    let (page, _) = &crate::install::sample_pages()[0];
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(std::fs::read(page).unwrap()).file_name("page.png"),
    );
    let response = client
        .post(format!("{base}/api/tasks"))
        .header("X-CSRF-Token", &csrf)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let task: serde_json::Value = response.json().await.unwrap();
    let task_id = task["id"].as_str().unwrap().to_owned();

    let lines: Vec<serde_json::Value> = crate::install::wait_for(
        Duration::from_secs(300),
        "the task's completion logged",
        || async {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains("\"completed\"").then(|| {
                text.lines()
                    .map(|l| {
                        serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))
                    })
                    .collect()
            })
        },
    )
    .await;
    let span_id = |line: &serde_json::Value, name: &str| {
        line["spans"]
            .as_array()
            .and_then(|spans| spans.iter().find(|s| s["name"] == name))
            .and_then(|s| s["id"].as_str())
            .map(str::to_owned)
    };
    let upload: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| span_id(l, "request").as_deref() == Some(request_id.as_str()))
        .collect();
    assert!(
        upload
            .iter()
            .any(|l| l["message"] == "handled" && l["route"] == "/api/tasks"),
        "no line of request {request_id}: {lines:?}"
    );
    let of_task: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| ["processing", "completed"].contains(&l["message"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(of_task.len(), 2, "{lines:?}");
    for line in of_task {
        assert_eq!(
            span_id(line, "task").as_deref(),
            Some(task_id.as_str()),
            "{line}"
        );
    }
    // Every request line has its id, and a line without a request or task is the process's own.
    for line in &lines {
        if line["message"] == "handled" {
            assert!(
                span_id(line, "request").is_some_and(|id| id.len() == 32),
                "{line}"
            );
        }
    }
}

/// deploy/compose.yaml against the Compose Specification's schema (check-jsonschema's bundled
/// copy), and the services the distributed stack needs, each waiting on what it uses.
#[test]
fn the_compose_file_follows_the_compose_specification() {
    let repo = crate::ocr::repo();
    let file = repo.join("deploy/compose.yaml");
    let out = Command::new(repo.join("target/test-venv/bin/check-jsonschema"))
        .args(["--builtin-schema", "vendor.compose-spec"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("check-jsonschema: {e}\n  {}", crate::support::HOW_TO_RUN));
    assert_succeeded(&out, "check-jsonschema, the Compose Specification");
    let text = std::fs::read_to_string(&file).unwrap();
    for service in [
        "postgres:",
        "redis:",
        "s3:",
        "migrate:",
        "serve-1:",
        "serve-2:",
        "work:",
        "nginx:",
    ] {
        assert!(
            text.contains(&format!("\n  {service}")),
            "no service {service}"
        );
    }
    for condition in ["service_healthy", "service_completed_successfully"] {
        assert!(
            text.contains(condition),
            "no depends_on condition {condition}"
        );
    }
}
