//! The deployment artefacts in `deploy/`, checked with their own ecosystem's tools.

use std::path::Path;
use std::process::Command;

/// Each unit with the highest `systemd-analyze security` exposure it may have.
const UNITS: [(&str, f32); 3] = [
    ("ocrd-serve.service", 2.0),
    ("ocrd-migrate.service", 2.0),
    ("ocrd-work@.service", 3.0),
];

fn systemd_analyze(args: &[&str], dir: &Path) -> std::process::Output {
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
    let mut args = vec!["verify", "--man=no"];
    args.extend(names.iter().map(String::as_str));
    let out = systemd_analyze(&args, dir.path());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );

    for ((unit, most), name) in UNITS.iter().zip(&names) {
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
        Command::new(crate::install::ocrd_bin())
            .args(["admin", "db", "grant-app-role", role])
            .current_dir(install.data_dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(install.env())
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
    let out = grant(&role);
    assert!(
        out.status.success(),
        "grant-app-role: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics, {what}: {said}\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_of_serve_and_work_pass_promtool() {
    let install = crate::install::Install::distributed(|_| {}).await;
    let base = format!("http://{}", install.serve());
    let http = reqwest::Client::new();
    for path in ["/healthz", "/api/tasks", "/nope"] {
        http.get(format!("{base}{path}")).send().await.unwrap();
    }
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
    let (status, text) = worker.health("/metrics").await;
    assert_eq!(status, 200);
    assert!(text.contains("ocrd_queue_waiting_tasks"), "{text}");
    assert_promtool_clean("work", &text);
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
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
