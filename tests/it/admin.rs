//! The operators' API (`/api/admin`): the role matrix, every task searched, retried,
//! cancelled and acted on in bulk on both backends, the queue's pause, and the worker registry
//! with real `ocrd work` processes (drain, resume, lost after SIGKILL).

use std::time::Duration;

use ocrd::db::models::{Role, Task, User};
use serde_json::{Value, json};

use crate::install::{Install, sample_pages, wait_for};
use crate::support::{register_and_sign_in, unique};

/// A signed-in account of a served install, with a role.
pub struct Caller {
    pub client: reqwest::Client,
    pub csrf: String,
    pub id: String,
    pub email: String,
}

impl Caller {
    pub async fn new(install: &Install, base: &str, role: Role) -> Caller {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let email = format!("{}@example.com", unique("admin"));
        let csrf = register_and_sign_in(base, &client, &email).await;
        let mut conn = install.app.db.get().await.unwrap();
        let user = User::find_by_email(&mut conn, &email)
            .await
            .unwrap()
            .unwrap();
        User::set_role(&mut conn, &user.id, role).await.unwrap();
        Caller {
            client,
            csrf,
            id: user.id,
            email,
        }
    }

    pub async fn get(&self, url: String) -> reqwest::Response {
        self.client.get(url).send().await.unwrap()
    }

    /// Posts a multipart upload form to `base`'s `/api/tasks`.
    pub async fn upload_form(
        &self,
        base: &str,
        form: reqwest::multipart::Form,
    ) -> reqwest::Response {
        self.client
            .post(format!("{base}/api/tasks"))
            .header("X-CSRF-Token", &self.csrf)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, url: String, body: Value) -> reqwest::Response {
        self.client
            .post(url)
            .header("X-CSRF-Token", &self.csrf)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

pub async fn served(install: &Install) -> String {
    format!("http://{}", install.serve())
}

/// Every admin route: no credentials 401, a user 403, operators and admins in. An admin's
/// token without its admin scope is a user's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_checks_the_role() {
    // Four callers on every route at once: no rate limit may answer for the roles.
    let install = Install::embedded(|c| c.rate_limits.api_per_second = 0).await;
    let base = served(&install).await;
    let user = Caller::new(&install, &base, Role::User).await;
    let operator = Caller::new(&install, &base, Role::Operator).await;
    let admin = Caller::new(&install, &base, Role::Admin).await;
    let scoped = |scopes: Value| {
        let (client, csrf, base) = (&admin.client, &admin.csrf, &base);
        async move {
            let created: Value = client
                .post(format!("{base}/api/tokens"))
                .header("X-CSRF-Token", csrf)
                .json(&json!({"name": "t", "scopes": scopes}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            created["token"]
                .as_str()
                .unwrap_or_else(|| panic!("no token: {created}"))
                .to_owned()
        }
    };
    let plain_token = scoped(json!(["read", "write"])).await;
    let admin_token = scoped(json!(["read", "write", "admin"])).await;
    let anonymous = reqwest::Client::new();
    let unknown = "00000000-0000-7000-8000-000000000000";
    let routes: Vec<&(&str, &str)> = ocrd::web::ROUTES
        .iter()
        .filter(|(_, path)| path.starts_with("/api/admin/"))
        .collect();
    assert!(routes.len() >= 10, "{routes:?}");
    for (method, path) in routes {
        let mut url = format!("{base}{}", path.replace("{id}", unknown));
        // A query the route requires: without it the extractor answers 400 first.
        if path.ends_with("/search") {
            url.push_str("?q=invoice");
        }
        // Bodies the routes accept: a body the extractor refuses can answer 400 before the
        // role is checked (the extractors run together).
        let body = if path.ends_with("/bulk") {
            json!({"action": "retry", "dry_run": true})
        } else if path.ends_with("/priority") {
            json!({"priority": 0})
        } else {
            json!({})
        };
        let send = |client: &reqwest::Client, csrf: Option<&str>, bearer: Option<&str>| {
            let mut request = client.request(method.to_uppercase().parse().unwrap(), &url);
            if let Some(csrf) = csrf {
                request = request.header("X-CSRF-Token", csrf);
            }
            if let Some(token) = bearer {
                request = request.bearer_auth(token);
            }
            if matches!(*method, "post" | "patch") {
                request = request.json(&body);
            }
            request.send()
        };
        let status = |r: reqwest::Response| r.status();
        assert_eq!(
            status(send(&anonymous, None, None).await.unwrap()),
            401,
            "{method} {path}: nobody"
        );
        assert_eq!(
            status(send(&user.client, Some(&user.csrf), None).await.unwrap()),
            403,
            "{method} {path}: a user"
        );
        assert_eq!(
            status(send(&anonymous, None, Some(&plain_token)).await.unwrap()),
            403,
            "{method} {path}: an admin's token without the admin scope"
        );
        // Accounts are the admins' alone.
        let admins_only = path.starts_with("/api/admin/users")
            || path.starts_with("/api/admin/invites")
            || path.starts_with("/api/admin/search")
            || (*method == "patch" && *path == "/api/admin/settings");
        let by_operator = send(&operator.client, Some(&operator.csrf), None)
            .await
            .unwrap();
        if admins_only {
            assert_eq!(by_operator.status(), 403, "{method} {path}: an operator");
        }
        let operator_in = (!admins_only).then_some(("an operator", by_operator));
        for (who, response) in operator_in.into_iter().chain([
            (
                "an admin",
                send(&admin.client, Some(&admin.csrf), None).await.unwrap(),
            ),
            (
                "an admin's token with the admin scope",
                send(&anonymous, None, Some(&admin_token)).await.unwrap(),
            ),
        ]) {
            let code = response.status();
            assert!(
                code != 401 && code != 403,
                "{method} {path}: {who} got {code}: {}",
                response.text().await.unwrap()
            );
        }
    }
}

/// Operators find any account's tasks by each filter, page through them by keyset, retry and
/// cancel one, and act on everything a filter matches, after a dry run: on SQLite and on
/// PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_search_retry_cancel_and_act_in_bulk_on_both_backends() {
    for install in [
        Install::embedded(|_| {}).await,
        Install::distributed(|_| {}).await,
    ] {
        let base = served(&install).await;
        let operator = Caller::new(&install, &base, Role::Operator).await;
        let png = crate::support::tiny_png();
        // Two owners; names in mixed case; some failed, one cancelled, the rest queued.
        let mut ids = Vec::new();
        for (owner, name) in [
            (&install.user.id, "Invoice-March.png"),
            (&install.user.id, "receipt-1.png"),
            (&operator.id, "INVOICE-april.png"),
            (&operator.id, "letter_50%.png"),
            (&install.user.id, "receipt-2.png"),
        ] {
            ids.push(install.submit_bytes_as(owner, name, png.clone()).await.id);
        }
        {
            let mut conn = install.app.db.get().await.unwrap();
            for (id, code) in [(&ids[1], "undecodable"), (&ids[4], "engine_error")] {
                Task::claim(&mut conn, id, "w#1", Duration::from_secs(60))
                    .await
                    .unwrap()
                    .unwrap();
                Task::fail(&mut conn, id, "w#1", code, "It failed.")
                    .await
                    .unwrap()
                    .unwrap();
            }
            Task::cancel(&mut conn, &ids[3]).await.unwrap().unwrap();
        }
        let list = |query: &str| {
            let url = format!("{base}/api/admin/tasks?{query}");
            let query = query.to_owned();
            let operator = &operator;
            async move {
                let response = operator.get(url).await;
                assert_eq!(response.status(), 200, "{query}");
                let body: Value = response.json().await.unwrap();
                let ids: Vec<String> = body["tasks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["id"].as_str().unwrap().to_owned())
                    .collect();
                (ids, body)
            }
        };
        let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
        assert_eq!(list("").await.0, newest_first);
        assert_eq!(list("order=oldest").await.0, ids);
        assert_eq!(
            list("status=failed").await.0,
            vec![ids[4].clone(), ids[1].clone()]
        );
        assert_eq!(list("error=undecodable").await.0, vec![ids[1].clone()]);
        assert_eq!(
            list("filename=invoice").await.0,
            vec![ids[2].clone(), ids[0].clone()]
        );
        assert_eq!(
            list("filename=50%25").await.0,
            vec![ids[3].clone()],
            "% is literal"
        );
        assert_eq!(
            list(&format!("user={}", operator.email.to_uppercase()))
                .await
                .0,
            vec![ids[3].clone(), ids[2].clone()]
        );
        assert_eq!(list("engine=ppocr").await.0.len(), 5);
        assert_eq!(list("engine=qwen3vl").await.0.len(), 0);
        assert_eq!(
            list(&format!("id={}", &ids[2][..30])).await.0,
            vec![ids[2].clone()]
        );
        assert_eq!(
            list("from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z")
                .await
                .0
                .len(),
            0
        );
        assert_eq!(list("from=2000-01-01T00:00:00Z").await.0.len(), 5);
        let (_, one) = list("status=failed").await;
        assert_eq!(one["tasks"][0]["owner_email"], json!(install.user.email));
        // Keyset pages: no overlap, no gap.
        let (first, body) = list("limit=2").await;
        let cursor = body["next_cursor"].as_str().unwrap();
        let (second, body) = list(&format!("limit=2&cursor={cursor}")).await;
        let (third, body_last) = list(&format!(
            "limit=2&cursor={}",
            body["next_cursor"].as_str().unwrap()
        ))
        .await;
        assert_eq!([first, second, third].concat(), newest_first);
        assert!(body_last["next_cursor"].is_null());
        for bad in [
            "status=done",
            "limit=0",
            "limit=201",
            "from=yesterday",
            "id=xyz",
            "order=random",
            "cursor=2",
            "filename=",
        ] {
            let response = operator.get(format!("{base}/api/admin/tasks?{bad}")).await;
            assert_eq!(response.status(), 400, "{bad}");
        }

        // One task: retry a failed one, cancel a queued one; the wrong state is 409.
        let retried = operator
            .post(
                format!("{base}/api/admin/tasks/{}/retry", ids[1]),
                json!({}),
            )
            .await;
        assert_eq!(retried.status(), 202);
        assert_eq!(retried.json::<Value>().await.unwrap()["status"], "queued");
        let again = operator
            .post(
                format!("{base}/api/admin/tasks/{}/retry", ids[1]),
                json!({}),
            )
            .await;
        assert_eq!(again.status(), 409);
        let cancelled = operator
            .post(
                format!("{base}/api/admin/tasks/{}/cancel", ids[0]),
                json!({}),
            )
            .await;
        assert_eq!(cancelled.status(), 200);
        assert_eq!(
            cancelled.json::<Value>().await.unwrap()["status"],
            "cancelled"
        );
        let missing = operator
            .post(
                format!("{base}/api/admin/tasks/00000000-0000-7000-8000-000000000000/cancel"),
                json!({}),
            )
            .await;
        assert_eq!(missing.status(), 404);

        // Bulk: the dry run counts what the filter matches and changes nothing.
        let bulk = |body: Value| operator.post(format!("{base}/api/admin/tasks/bulk"), body);
        let dry: Value =
            bulk(json!({"filter": {"filename": "receipt"}, "action": "cancel", "dry_run": true}))
                .await
                .json()
                .await
                .unwrap();
        assert_eq!(dry, json!({"matched": 2, "changed": 0}));
        assert_eq!(install.task(&ids[1]).await.status.as_str(), "queued");
        // Cancel matches both receipts; only the queued one changes (the other failed).
        let done: Value = bulk(json!({"filter": {"filename": "receipt"}, "action": "cancel"}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(done, json!({"matched": 2, "changed": 1}));
        // Retry everything cancelled: three tasks.
        let done: Value = bulk(json!({"filter": {"status": "cancelled"}, "action": "retry"}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(done, json!({"matched": 3, "changed": 3}));
        assert_eq!(list("status=queued").await.0.len(), 4);
        // Delete the operator's own two; the others stay.
        let done: Value = bulk(json!({"filter": {"user": operator.email}, "action": "delete"}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(done, json!({"matched": 2, "changed": 2}));
        assert_eq!(list("").await.0.len(), 3);
        install.assert_no_orphans().await;
        let bad = bulk(json!({"filter": {"status": "done"}, "action": "retry"})).await;
        assert_eq!(bad.status(), 400);
        let bad = bulk(json!({"action": "explode"})).await;
        assert_eq!(bad.status(), 400);
        // A misspelt filter is refused, never read as "every task".
        let bad = bulk(json!({"filter": {"stauts": "failed"}, "action": "delete"})).await;
        assert_eq!(bad.status(), 400);
        assert_eq!(list("").await.0.len(), 3);
    }
}

/// The queue's pause holds on every worker and across their restarts; uploads still queue
/// and run once it is resumed. A drained worker finishes its task and takes no new one; a
/// worker killed with SIGKILL shows as `lost` within two report intervals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_the_queue_draining_workers_and_a_lost_worker() {
    let _turn = crate::worker::one_at_a_time().await;
    let install = Install::distributed(|c| c.worker.report_secs = 1).await;
    let base = served(&install).await;
    let operator = Caller::new(&install, &base, Role::Operator).await;
    let page = std::fs::read(&sample_pages()[0].0).unwrap();
    let workers = || async {
        let body: Value = operator
            .get(format!("{base}/api/admin/workers"))
            .await
            .json()
            .await
            .unwrap();
        body["workers"].as_array().unwrap().clone()
    };
    let state_of = |id: String| {
        let workers = &workers;
        async move {
            workers()
                .await
                .into_iter()
                .find(|w| w["id"] == id.as_str())
                .map(|w| w["state"].as_str().unwrap().to_owned())
        }
    };

    // Paused before any worker starts: a new worker reads it before its first claim.
    let paused: Value = operator
        .post(format!("{base}/api/admin/queue/pause"), json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(paused["paused"], true);
    let mut first = install.spawn_worker("first", &[]);
    let first_id = wait_for(
        Duration::from_secs(60),
        "the worker to register",
        || async {
            workers()
                .await
                .into_iter()
                .find(|w| w["pid"] == first.pid())
                .map(|w| w["id"].as_str().unwrap().to_owned())
        },
    )
    .await;
    let waiting = install.submit_bytes("paused.png", page.clone()).await.id;
    // Several report intervals with the worker up: the task stays queued.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        install.task(&waiting).await.status.as_str(),
        "queued",
        "a paused queue starts nothing"
    );
    let queue: Value = operator
        .get(format!("{base}/api/admin/queue"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(queue["paused"], true);
    assert_eq!(queue["queued"], 1);
    operator
        .post(format!("{base}/api/admin/queue/resume"), json!({}))
        .await;
    install
        .wait_finished(std::slice::from_ref(&waiting), Duration::from_secs(300))
        .await;
    assert_eq!(install.task(&waiting).await.status.as_str(), "completed");

    // Drain while a task runs: it completes, the next one waits.
    let long = {
        let image = image::open(&sample_pages()[0].0).unwrap().to_rgb8();
        crate::pdf::image_pdf(&vec![image; 3], 200.0)
    };
    let running = install.submit_bytes("three.pdf", long).await.id;
    wait_for(Duration::from_secs(120), "the task to start", || async {
        (install.task(&running).await.status.as_str() == "processing").then_some(())
    })
    .await;
    let holding = wait_for(
        Duration::from_secs(30),
        "the worker to list its task",
        || async {
            workers().await.into_iter().find(|w| {
                w["id"] == first_id.as_str() && w["tasks"].as_array().is_some_and(|t| !t.is_empty())
            })
        },
    )
    .await;
    assert_eq!(holding["tasks"][0]["id"], json!(running), "{holding}");
    let drained = operator
        .post(
            format!("{base}/api/admin/workers/{first_id}/drain"),
            json!({}),
        )
        .await;
    assert_eq!(drained.status(), 200);
    assert_eq!(
        drained.json::<Value>().await.unwrap()["drain_requested"],
        true
    );
    let listed = wait_for(
        Duration::from_secs(30),
        "the worker to see the drain",
        || async {
            workers()
                .await
                .into_iter()
                .find(|w| w["id"] == first_id.as_str() && w["state"] == "draining")
        },
    )
    .await;
    assert_eq!(listed["engine"], "ppocr");
    let next = install.submit_bytes("next.png", page.clone()).await.id;
    install
        .wait_finished(std::slice::from_ref(&running), Duration::from_secs(300))
        .await;
    assert_eq!(
        install.task(&running).await.status.as_str(),
        "completed",
        "a draining worker finishes its task"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        install.task(&next).await.status.as_str(),
        "queued",
        "and takes no new one"
    );
    operator
        .post(
            format!("{base}/api/admin/workers/{first_id}/resume"),
            json!({}),
        )
        .await;
    install
        .wait_finished(std::slice::from_ref(&next), Duration::from_secs(300))
        .await;
    assert_eq!(state_of(first_id.clone()).await.as_deref(), Some("running"));
    let unknown = operator
        .post(format!("{base}/api/admin/workers/nobody/drain"), json!({}))
        .await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.json::<Value>().await.unwrap()["error"]["code"],
        "worker_not_found"
    );

    // SIGKILL: no goodbye; two silent intervals later it is lost.
    first.kill();
    let lost = wait_for(
        Duration::from_secs(30),
        "the killed worker to show as lost",
        || async {
            workers()
                .await
                .into_iter()
                .find(|w| w["id"] == first_id.as_str() && w["state"] == "lost")
        },
    )
    .await;
    let age = lost["heartbeat_age_secs"].as_f64().unwrap();
    assert!(age > 2.0, "lost only after two silent intervals: {lost}");
    // A clean exit says stopped.
    let mut second = install.spawn_worker("second", &[]);
    let second_id = wait_for(
        Duration::from_secs(60),
        "the second worker to register",
        || async {
            workers()
                .await
                .into_iter()
                .find(|w| w["pid"] == second.pid())
                .map(|w| w["id"].as_str().unwrap().to_owned())
        },
    )
    .await;
    second.signal("TERM");
    second.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(state_of(second_id).await.as_deref(), Some("stopped"));
}

/// `ocrd admin` from the shell, on the install's own configuration: roles, the queue, tasks
/// (list, dry run, retry by filter) and workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shell_runs_roles_tasks_workers_and_the_queue() {
    let install = Install::distributed(|_| {}).await;
    let admin = |args: &[&str]| {
        let out = install
            .ocrd_command()
            .arg("admin")
            .args(args)
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        (out.status.success(), stdout, stderr)
    };
    let email = install.user.email.clone();
    let (ok, out, err) = admin(&["set-role", "--email", &email, "--role", "operator"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("is now operator"), "{out}");
    let mut conn = install.app.db.get().await.unwrap();
    assert_eq!(
        User::find(&mut conn, &install.user.id).await.unwrap().role,
        Role::Operator
    );
    let (ok, _, err) = admin(&["set-role", "--email", &email, "--role", "king"]);
    assert!(!ok && err.contains("user, operator or admin"), "{err}");
    let (ok, _, err) = admin(&[
        "set-role",
        "--email",
        "nobody@example.com",
        "--role",
        "admin",
    ]);
    assert!(!ok && err.contains("no account"), "{err}");

    let (ok, out, err) = admin(&["queue", "pause"]);
    assert!(ok && out.contains("paused"), "{out}{err}");
    assert!(ocrd::admin::queue::paused(&install.app).await.unwrap());
    let (ok, out, _) = admin(&["queue", "resume"]);
    assert!(ok && out.contains("running"), "{out}");
    assert!(!ocrd::admin::queue::paused(&install.app).await.unwrap());

    let png = crate::support::tiny_png();
    let failed = install
        .submit_bytes("broken-scan.png", png.clone())
        .await
        .id;
    let queued = install.submit_bytes("fine.png", png).await.id;
    Task::claim(&mut conn, &failed, "w#1", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    Task::fail(&mut conn, &failed, "w#1", "undecodable", "It failed.")
        .await
        .unwrap()
        .unwrap();
    drop(conn);
    let (ok, out, err) = admin(&["tasks", "list", "--status", "failed"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&failed) && !out.contains(&queued) && out.contains("undecodable"),
        "{out}"
    );
    let (ok, out, _) = admin(&["tasks", "list", "--filename", "SCAN"]);
    assert!(
        ok && out.lines().count() == 1 && out.contains(&failed),
        "{out}"
    );
    let (ok, out, _) = admin(&["tasks", "retry", "--status", "failed", "--dry-run"]);
    assert!(
        ok && out.contains("1 task(s) match; nothing was changed"),
        "{out}"
    );
    assert_eq!(install.task(&failed).await.status.as_str(), "failed");
    let (ok, out, _) = admin(&["tasks", "retry", "--status", "failed"]);
    assert!(ok && out.contains("1 task(s) matched, 1 changed"), "{out}");
    assert_eq!(install.task(&failed).await.status.as_str(), "queued");
    let (ok, out, _) = admin(&["tasks", "cancel", "--id", &queued]);
    assert!(ok && out.contains("1 changed"), "{out}");
    assert_eq!(install.task(&queued).await.status.as_str(), "cancelled");
    let (ok, _, err) = admin(&["tasks", "list", "--status", "done"]);
    assert!(!ok && err.contains("--status"), "{err}");

    let (ok, out, err) = admin(&["disable-user", "--email", &email]);
    assert!(ok && out.contains("disabled"), "{out}{err}");
    let (ok, out, _) = admin(&["disable-user", "--email", &email, "--enable"]);
    assert!(ok && out.contains("enabled"), "{out}");
    let (ok, _, err) = admin(&["erase-user", "--email", &email]);
    assert!(!ok && err.contains("--yes"), "{err}");
    let (ok, out, err) = admin(&["workers", "list"]);
    assert!(ok && out.is_empty(), "no workers yet: {out}{err}");
    let (ok, _, err) = admin(&["workers", "drain", "nobody"]);
    assert!(!ok && err.contains("nobody"), "{err}");
    let (ok, out, err) = admin(&["erase-user", "--email", &email, "--yes"]);
    assert!(ok && out.contains("2 task(s)"), "{out}{err}");
    install.assert_no_orphans().await;
}

/// The audit log records sign-ins (and refusals), tokens, refused admin requests, operator
/// actions from the API and the shell, and document access, with who, from where, on what and
/// how it ended; `ocrd admin audit verify` passes, and after one row is edited, the newest is
/// removed, or one is deleted, it fails naming that row. On SQLite and on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_records_who_did_what_and_verify_finds_tampering() {
    for install in [
        Install::embedded(|_| {}).await,
        Install::distributed(|_| {}).await,
    ] {
        let base = served(&install).await;
        let user = Caller::new(&install, &base, Role::User).await;
        let operator = Caller::new(&install, &base, Role::Operator).await;
        let wrong = reqwest::Client::new()
            .post(format!("{base}/api/auth/login"))
            .header("User-Agent", "guesser/1.0")
            .json(&json!({"email": user.email, "password": "not the password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);
        let token: Value = user
            .post(format!("{base}/api/tokens"), json!({"name": "script"}))
            .await
            .json()
            .await
            .unwrap();
        let token_id = token["id"].as_str().unwrap().to_owned();
        let revoked = user
            .client
            .delete(format!("{base}/api/tokens/{token_id}"))
            .header("X-CSRF-Token", &user.csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(revoked.status(), 204);
        assert_eq!(
            user.get(format!("{base}/api/admin/workers")).await.status(),
            403
        );
        let task = install
            .submit_bytes_as(&user.id, "page.png", crate::support::tiny_png())
            .await
            .id;
        assert_eq!(
            user.get(format!("{base}/api/tasks/{task}/pages/1/image"))
                .await
                .status(),
            200
        );
        operator
            .post(format!("{base}/api/admin/queue/pause"), json!({}))
            .await;
        operator
            .post(format!("{base}/api/admin/queue/resume"), json!({}))
            .await;
        let out = install
            .ocrd_command()
            .args(["admin", "queue", "pause"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let deleted = user
            .client
            .delete(format!("{base}/api/tasks/{task}"))
            .header("X-CSRF-Token", &user.csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), 204);

        let page: Value = operator
            .get(format!("{base}/api/admin/audit?limit=500"))
            .await
            .json()
            .await
            .unwrap();
        let mut entries = page["entries"].as_array().unwrap().clone();
        entries.reverse();
        let seen: Vec<(String, String, String)> = entries
            .iter()
            .map(|e| {
                let s = |k: &str| e[k].as_str().unwrap_or("-").to_owned();
                (s("action"), s("actor"), s("outcome"))
            })
            .collect();
        let expect = [
            ("register", user.email.as_str(), "success"),
            ("login", user.email.as_str(), "success"),
            ("register", operator.email.as_str(), "success"),
            ("login", operator.email.as_str(), "success"),
            ("login", "anonymous", "failure"),
            ("token.create", user.email.as_str(), "success"),
            ("token.revoke", user.email.as_str(), "success"),
            ("admin.access", user.email.as_str(), "denied"),
            ("page.view", user.email.as_str(), "success"),
            ("queue.pause", operator.email.as_str(), "success"),
            ("queue.resume", operator.email.as_str(), "success"),
            ("queue.pause", "shell", "success"),
            ("task.delete", user.email.as_str(), "success"),
        ];
        let expect: Vec<(String, String, String)> = expect
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        assert_eq!(seen, expect);
        let failed = &entries[4];
        assert_eq!(
            failed["target"],
            json!(user.id),
            "a failed sign-in names the account"
        );
        assert_eq!(failed["client"], "127.0.0.1");
        assert_eq!(failed["user_agent"], "guesser/1.0");
        assert_eq!(entries[8]["target"], json!(task));
        assert_eq!(entries[8]["detail"], json!("{\"page\":1}"));
        assert_eq!(entries[7]["target"], "/api/admin/workers");

        let shell = |args: &[&str]| {
            let out = install
                .ocrd_command()
                .arg("admin")
                .arg("audit")
                .args(args)
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (ok, out, err) = shell(&["verify"]);
        assert!(ok && out.contains("intact: 13 rows"), "{out}{err}");
        let (ok, out, _) = shell(&["export"]);
        assert!(ok);
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 13);
        assert_eq!(lines[0]["seq"], 1);
        assert_eq!(lines[12]["action"], "task.delete");

        // Tampering: an edited row, then (with the edit undone) a removed one.
        let sql = |statement: &'static str| {
            let db = install.app.db.clone();
            async move {
                use diesel_async::RunQueryDsl;
                let mut conn = db.get().await.unwrap();
                ocrd::with_conn!(&mut conn, |c| diesel::sql_query(statement).execute(c).await)
                    .unwrap();
            }
        };
        sql("UPDATE audit_log SET outcome = 'success' WHERE seq = 5").await;
        let (ok, _, err) = shell(&["verify"]);
        assert!(
            !ok && err.contains("broken at row 5") && err.contains("edited"),
            "{err}"
        );
        sql("UPDATE audit_log SET outcome = 'failure' WHERE seq = 5").await;
        let (ok, _, err) = shell(&["verify"]);
        assert!(ok, "{err}");
        // The newest row removed: the head recorded by its append still names it.
        sql("DELETE FROM audit_log WHERE seq = 13").await;
        let (ok, _, err) = shell(&["verify"]);
        assert!(
            !ok && err.contains("broken at row 13") && err.contains("removed from the end"),
            "{err}"
        );
        // The record of the newest row emptied as well: that is found too.
        sql("DELETE FROM audit_head").await;
        let (ok, _, err) = shell(&["verify"]);
        assert!(
            !ok && err.contains("broken at row 12") && err.contains("audit_head was emptied"),
            "{err}"
        );
        sql("DELETE FROM audit_log WHERE seq = 7").await;
        let (ok, _, err) = shell(&["verify"]);
        assert!(
            !ok && err.contains("broken at row 7") && err.contains("missing"),
            "{err}"
        );
    }
}

/// `GET /api/admin/health`: the database (its migration level against the binary's), Redis,
/// a real storage round trip (SSE-KMS on S3), the queue, the workers and free disk space; a
/// lost worker makes it `degraded`. On the embedded defaults and on a distributed install.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_every_dependency_and_a_lost_worker_degrades_it() {
    for (install, distributed) in [
        (Install::embedded(|_| {}).await, false),
        (Install::distributed(|_| {}).await, true),
    ] {
        let base = served(&install).await;
        let operator = Caller::new(&install, &base, Role::Operator).await;
        let health = || async {
            let response = operator.get(format!("{base}/api/admin/health")).await;
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        };
        let report = health().await;
        assert_eq!(report["status"], "ok", "{report}");
        let dependency = |name: &str| {
            report["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["name"] == name)
                .cloned()
        };
        let db = dependency("database").unwrap();
        assert_eq!(db["status"], "ok");
        assert_eq!(
            db["detail"]["migration"]["applied"],
            db["detail"]["migration"]["binary"]
        );
        let version = db["detail"]["server_version"].as_str().unwrap();
        assert!(
            version.starts_with(if distributed { "PostgreSQL" } else { "SQLite" }),
            "{version}"
        );
        let storage = dependency("storage").unwrap();
        assert_eq!(storage["status"], "ok", "{storage}");
        assert_eq!(storage["detail"]["sse_kms"], json!(distributed));
        assert_eq!(dependency("queue").unwrap()["detail"]["paused"], false);
        match dependency("redis") {
            Some(redis) => {
                assert!(distributed);
                assert!(redis["detail"]["version"].as_str().is_some(), "{redis}");
                assert!(redis["detail"]["connected_clients"].as_u64().unwrap() >= 1);
            }
            None => assert!(!distributed, "Redis is checked where it is configured"),
        }
        for disk in report["disks"].as_array().unwrap() {
            assert!(disk["free_bytes"].as_u64().unwrap() > 0, "{disk}");
            assert!(disk["total_bytes"].as_u64() >= disk["free_bytes"].as_u64());
        }
        // Nothing of the probe stays behind.
        assert!(install.app.blobs.list("health/").await.unwrap().is_empty());

        // A worker that stopped reporting long ago is lost, and the install degraded.
        let mut conn = install.app.db.get().await.unwrap();
        let long_ago = ocrd::db::models::now() - chrono::TimeDelta::minutes(10);
        ocrd::db::models::WorkerRow::register(
            &mut conn,
            ocrd::db::models::WorkerRow {
                id: "gone-1-abcd".into(),
                host: "gone".into(),
                pid: 1,
                version: "0".into(),
                engine: "ppocr".into(),
                devices: "cpu".into(),
                concurrency: 1,
                started_at: long_ago,
                heartbeat_at: long_ago,
                state: ocrd::db::models::WorkerState::Running,
                drain: false,
                pages_done: 0,
                pages_per_sec: 0.0,
                rss_bytes: 0,
                role: "work".into(),
            },
        )
        .await
        .unwrap();
        drop(conn);
        let report = health().await;
        assert_eq!(report["status"], "degraded", "{report}");
        assert_eq!(report["workers"][0]["state"], "lost");
        assert_eq!(
            report["servers"],
            json!([]),
            "in-process servers do not register"
        );

        // A real `ocrd serve` lists itself with its version and uptime, and is lost within two
        // report intervals of a SIGKILL.
        if distributed {
            let port = crate::install::free_port();
            let mut serve = install
                .ocrd_command()
                .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
                .env("OCRD_WORKER__REPORT_SECS", "1")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let pid = serve.id();
            let server = wait_for(
                Duration::from_secs(60),
                "the serve process in health",
                || async {
                    let report = health().await;
                    report["servers"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|s| s["pid"] == pid && s["state"] == "running")
                        .cloned()
                },
            )
            .await;
            assert_eq!(server["version"], env!("CARGO_PKG_VERSION"));
            assert!(
                server["id"].as_str().unwrap().starts_with("serve-"),
                "{server}"
            );
            serve.kill().unwrap();
            serve.wait().unwrap();
            let lost = std::time::Instant::now();
            wait_for(
                Duration::from_secs(30),
                "the killed serve process to be lost",
                || async {
                    let report = health().await;
                    report["servers"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|s| s["pid"] == pid && s["state"] == "lost")
                        .then_some(())
                },
            )
            .await;
            println!("serve process lost {:?} after SIGKILL", lost.elapsed());
        }
    }
}

/// Admins list accounts with what each uses, change roles, disable an account (its session
/// and its token are refused on their next request; enabled again, the session works), and
/// erase one with everything it owns after typing its email; nobody demotes or erases
/// themselves. On both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_manage_accounts() {
    for install in [
        Install::embedded(|_| {}).await,
        Install::distributed(|_| {}).await,
    ] {
        let base = served(&install).await;
        let admin = Caller::new(&install, &base, Role::Admin).await;
        let member = Caller::new(&install, &base, Role::User).await;
        let token: Value = member
            .post(format!("{base}/api/tokens"), json!({"name": "script"}))
            .await
            .json()
            .await
            .unwrap();
        let token = token["token"].as_str().unwrap().to_owned();
        let png = crate::support::tiny_png();
        for name in ["a.png", "b.png"] {
            install.submit_bytes_as(&member.id, name, png.clone()).await;
        }

        let listed: Value = admin
            .get(format!(
                "{base}/api/admin/users?search={}",
                member.email.to_uppercase()
            ))
            .await
            .json()
            .await
            .unwrap();
        let row = &listed["users"][0];
        assert_eq!(listed["users"].as_array().unwrap().len(), 1, "{listed}");
        assert_eq!(row["email"], json!(member.email));
        assert_eq!(row["tasks"], 2);
        assert_eq!(row["stored_bytes"], json!(2 * png.len()));
        assert_eq!(row["role"], "user");
        assert!(row["last_login"].is_string(), "{row}");
        let everyone: Value = admin
            .get(format!("{base}/api/admin/users?limit=1"))
            .await
            .json()
            .await
            .unwrap();
        assert!(everyone["next_cursor"].is_string());

        let patch = |id: &str, body: Value| {
            admin
                .client
                .patch(format!("{base}/api/admin/users/{id}"))
                .header("X-CSRF-Token", &admin.csrf)
                .json(&body)
                .send()
        };
        let promoted: Value = patch(&member.id, json!({"role": "operator"}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(promoted["role"], "operator");
        assert_eq!(
            member
                .get(format!("{base}/api/admin/workers"))
                .await
                .status(),
            200
        );

        // Disabled: the session and the token are refused at once.
        let disabled = patch(&member.id, json!({"disabled": true})).await.unwrap();
        assert_eq!(disabled.status(), 200);
        assert_eq!(
            member.get(format!("{base}/api/auth/me")).await.status(),
            401
        );
        let with_token = reqwest::Client::new()
            .get(format!("{base}/api/tasks"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(with_token.status(), 401, "the token is revoked");
        patch(&member.id, json!({"disabled": false})).await.unwrap();
        assert_eq!(
            member.get(format!("{base}/api/auth/me")).await.status(),
            200
        );
        let revoked = reqwest::Client::new()
            .get(format!("{base}/api/tasks"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            revoked.status(),
            401,
            "enabling again does not bring the token back"
        );

        // Nobody demotes, disables or erases themselves.
        assert_eq!(
            patch(&admin.id, json!({"role": "user"}))
                .await
                .unwrap()
                .status(),
            409
        );
        assert_eq!(
            patch(&admin.id, json!({"disabled": true}))
                .await
                .unwrap()
                .status(),
            409
        );
        assert_eq!(
            patch(&admin.id, json!({"rank": "high"}))
                .await
                .unwrap()
                .status(),
            400
        );

        // Erase: the email typed again, then every task, object and token go.
        let erase = |confirm: &str| {
            admin
                .client
                .delete(format!(
                    "{base}/api/admin/users/{}?confirm={confirm}",
                    member.id
                ))
                .header("X-CSRF-Token", &admin.csrf)
                .send()
        };
        assert_eq!(erase("someone@else.example").await.unwrap().status(), 400);
        assert_eq!(erase(&member.email).await.unwrap().status(), 204);
        assert_eq!(
            member.get(format!("{base}/api/auth/me")).await.status(),
            401
        );
        let mut conn = install.app.db.get().await.unwrap();
        assert!(matches!(
            User::find(&mut conn, &member.id).await,
            Err(ocrd::db::DbError::NotFound)
        ));
        drop(conn);
        assert!(
            install
                .app
                .blobs
                .list(&format!("uploads/{}", member.id))
                .await
                .unwrap()
                .is_empty()
        );
        install.assert_no_orphans().await;
        let gone = admin
            .client
            .delete(format!("{base}/api/admin/users/{}?confirm=x", admin.id))
            .header("X-CSRF-Token", &admin.csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(gone.status(), 409, "nobody erases themselves");
        let audit: Value = admin
            .get(format!("{base}/api/admin/audit"))
            .await
            .json()
            .await
            .unwrap();
        let actions: Vec<&str> = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert!(
            actions.contains(&"user.erase") && actions.contains(&"user.update"),
            "{actions:?}"
        );
    }
}

/// A queued task given a higher priority starts before the others; the change is audited and
/// bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prioritised_task_runs_first() {
    let _turn = crate::worker::one_at_a_time().await;
    let install = Install::distributed(|_| {}).await;
    let base = served(&install).await;
    let operator = Caller::new(&install, &base, Role::Operator).await;
    let page = std::fs::read(&sample_pages()[0].0).unwrap();
    // Queued while no worker runs: without priorities they would run in this order.
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            install
                .submit_bytes(&format!("p{i}.png"), page.clone())
                .await
                .id,
        );
    }
    let last = &ids[2];
    let url = format!("{base}/api/admin/tasks/{last}/priority");
    for bad in [
        json!({"priority": 101}),
        json!({"priority": "high"}),
        json!({}),
    ] {
        assert_eq!(
            operator.post(url.clone(), bad.clone()).await.status(),
            400,
            "{bad}"
        );
    }
    let changed: Value = operator
        .post(url, json!({"priority": 10}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(changed["priority"], 10);

    let mut worker = install.spawn_worker("priority", &[]);
    let done = install.wait_finished(&ids, Duration::from_secs(180)).await;
    assert!(
        done.iter().all(|t| t.status.as_str() == "completed"),
        "{}",
        worker.log_text()
    );
    let started = |i: usize| done[i].started_at.unwrap();
    assert!(
        started(2) < started(0) && started(2) < started(1),
        "the prioritised task went first: {:?}",
        done.iter().map(|t| t.started_at).collect::<Vec<_>>()
    );
    let audit: Value = operator
        .get(format!("{base}/api/admin/audit?action=task.priority"))
        .await
        .json()
        .await
        .unwrap();
    let entry = &audit["entries"][0];
    assert_eq!(entry["target"], last.as_str());
    assert_eq!(entry["detail"], r#"{"new":10,"old":0}"#);
    install.assert_no_orphans().await;
    worker.kill();
}

/// A file-name search past the first tasks walked ([`WALK`] in `task_filter.rs`, 10,000): a
/// common name fills its pages from the newest tasks, a rare one is found however old, in
/// either order and across pages. On both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_name_search_finds_common_and_rare_names_beyond_the_first_ten_thousand() {
    use diesel_async::RunQueryDsl;
    use ocrd::db::models::{Order, TaskFilter};
    const TASKS: usize = 10_080;
    for install in [
        Install::embedded(|_| {}).await,
        Install::distributed(|_| {}).await,
    ] {
        let id = |i: usize| format!("{i:08x}-0000-7000-8000-{i:012x}");
        // Every third task is a "Common" scan; two are "Rare", the oldest and one in the middle.
        let name = |i: usize| match i {
            3 | 4_000 => format!("Rare-{i}.png"),
            i if i % 3 == 0 => format!("Common-{i}.png"),
            i => format!("other-{i}.png"),
        };
        let mut conn = install.app.db.get().await.unwrap();
        let user = install.user.id.clone();
        let rows: Vec<(String, String)> = (1..=TASKS).map(|i| (id(i), name(i))).collect();
        ocrd::with_conn!(&mut conn, |c| {
            use diesel_async::AsyncConnection;
            c.transaction::<_, diesel::result::Error, _>(async |tx| {
                for (task, filename) in &rows {
                    let statement = format!(
                        "INSERT INTO files (id, user_id, blob_key, filename, content_type, size_bytes, sha256, created_at) \
                         VALUES ('f{task}', '{user}', 'uploads/{task}', '{filename}', 'image/png', 1, '{task}', CURRENT_TIMESTAMP)"
                    );
                    diesel::sql_query(statement).execute(tx).await?;
                    let statement = format!(
                        "INSERT INTO tasks (id, user_id, file_id, status, engine, max_attempts, created_at, updated_at) \
                         VALUES ('{task}', '{user}', 'f{task}', 'completed', 'ppocr', 3, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                    );
                    diesel::sql_query(statement).execute(tx).await?;
                }
                Ok(())
            })
            .await
        })
        .unwrap();
        drop(conn);
        let search = |filename: &str, order: Order, after: Option<String>| {
            let filter = TaskFilter {
                filename: Some(filename.to_owned()),
                ..TaskFilter::default()
            };
            let app = install.app.clone();
            async move {
                let (found, next) = ocrd::admin::tasks::search(&app, filter, order, 50, after)
                    .await
                    .unwrap();
                let ids: Vec<String> = found.into_iter().map(|f| f.task.id).collect();
                (ids, next)
            }
        };
        // Rare: past the walk, found through the index, newest first or oldest first.
        let (rare, _) = search("rare-", Order::Newest, None).await;
        assert_eq!(rare, [id(4_000), id(3)]);
        let (rare, _) = search("RARE", Order::Oldest, None).await;
        assert_eq!(rare, [id(3), id(4_000)]);
        // Common: each page is the next 50 common names, newest first, page after page.
        let common: Vec<String> = (1..=TASKS)
            .rev()
            .filter(|i| i % 3 == 0 && *i != 3)
            .map(id)
            .collect();
        let (first, next) = search("common-", Order::Newest, None).await;
        assert_eq!(first, common[..50]);
        let (second, _) = search("common-", Order::Newest, next).await;
        assert_eq!(second, common[50..100]);
        // Near the end of the table the walk has less than 10,000 left: still every match.
        let (last, next) = search(
            "common-",
            Order::Newest,
            Some(common[common.len() - 3].clone()),
        )
        .await;
        assert_eq!(last, common[common.len() - 2..]);
        assert_eq!(next, None);
    }
}
