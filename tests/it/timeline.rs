//! Each task's timeline (owner's and operators' views), the statistics over a window on both
//! backends, and the retention sweep, with a real `ocrd work`.

use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use ocrd::admin::stats::{Source, Window, compute_from};
use ocrd::db::models::{JobLease, Role, now};
use ocrd::db::schema::tasks;
use serde_json::{Value, json};

use crate::admin::{Caller, served};
use crate::install::{Install, sample_pages, wait_for};

/// Sets a task's outcome and times directly, as if it had run.
struct Outcome<'a> {
    status: &'a str,
    created: NaiveDateTime,
    started: Option<NaiveDateTime>,
    finished: Option<NaiveDateTime>,
    pages: i32,
    error: Option<&'a str>,
}

async fn set_outcome(install: &Install, id: &str, o: Outcome<'_>) {
    let mut conn = install.app.db.get().await.unwrap();
    let update = diesel::update(tasks::table.find(id.to_owned())).set((
        tasks::status.eq(o.status.to_owned()),
        tasks::created_at.eq(o.created),
        tasks::started_at.eq(o.started),
        tasks::finished_at.eq(o.finished),
        tasks::pages_done.eq(o.pages),
        tasks::pages_total.eq(Some(o.pages)),
        tasks::error_code.eq(o.error.map(str::to_owned)),
    ));
    let changed = ocrd::with_conn!(&mut conn, |c| update.execute(c).await).unwrap();
    assert_eq!(changed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_over_a_window_agree_on_both_backends() {
    for install in [
        Install::embedded(|_| {}).await,
        Install::distributed(|_| {}).await,
    ] {
        let base = served(&install).await;
        let operator = Caller::new(&install, &base, Role::Operator).await;
        let png = crate::support::tiny_png();
        let mut ids = Vec::new();
        for i in 0..17 {
            ids.push(
                install
                    .submit_bytes(&format!("s{i}.png"), png.clone())
                    .await
                    .id,
            );
        }
        let t = now();
        let ago = |secs: i64| t - TimeDelta::seconds(secs);
        // Ten completed in the last hour, taking 1 to 10 s over 2 pages each.
        for (i, id) in ids[..10].iter().enumerate() {
            let finished = ago(300);
            let started = finished - TimeDelta::seconds(i as i64 + 1);
            let o = Outcome {
                status: "completed",
                created: ago(400),
                started: Some(started),
                finished: Some(finished),
                pages: 2,
                error: None,
            };
            set_outcome(&install, id, o).await;
        }
        for (id, code) in [
            (&ids[10], "undecodable"),
            (&ids[11], "undecodable"),
            (&ids[12], "engine_error"),
        ] {
            let o = Outcome {
                status: "failed",
                created: ago(400),
                started: Some(ago(350)),
                finished: Some(ago(300)),
                pages: 0,
                error: Some(code),
            };
            set_outcome(&install, id, o).await;
        }
        let o = Outcome {
            status: "cancelled",
            created: ago(400),
            started: None,
            finished: Some(ago(200)),
            pages: 0,
            error: None,
        };
        set_outcome(&install, &ids[13], o).await;
        // Two waiting, the oldest for ten minutes.
        let o = Outcome {
            status: "queued",
            created: ago(600),
            started: None,
            finished: None,
            pages: 0,
            error: None,
        };
        set_outcome(&install, &ids[14], o).await;
        // One completed two days ago: in the week, not in the day.
        let two_days = 2 * 86_400;
        let two_days_ago = |pages| Outcome {
            status: "completed",
            created: ago(two_days + 60),
            started: Some(ago(two_days + 30)),
            finished: Some(ago(two_days)),
            pages,
            error: None,
        };
        set_outcome(&install, &ids[16], two_days_ago(5)).await;

        let stats = |window: &str| {
            let url = format!("{base}/api/admin/stats?window={window}");
            let operator = &operator;
            async move {
                let response = operator.get(url).await;
                assert_eq!(response.status(), 200);
                response.json::<Value>().await.unwrap()
            }
        };
        // The first look sums the closed hours and days: four at once sum each once.
        let days = futures::future::join_all((0..4).map(|_| stats("24h"))).await;
        let same = |v: &Value| {
            let keys = [
                "by_status",
                "task_seconds",
                "page_seconds",
                "failures",
                "engines",
            ];
            keys.map(|k| v[k].clone())
        };
        for other in &days[1..] {
            assert_eq!(same(other), same(&days[0]));
        }
        let day = days.into_iter().next().unwrap();
        assert_eq!(day["window"], "24h");
        assert_eq!(day["bucket_secs"], 3600);
        assert_eq!(
            day["by_status"],
            json!({"completed": 10, "failed": 3, "cancelled": 1, "queued": 2}),
            "{day}"
        );
        let series = day["series"].as_array().unwrap();
        assert!((24..=25).contains(&series.len()), "{}", series.len());
        let sum = |key: &str| series.iter().map(|p| p[key].as_i64().unwrap()).sum::<i64>();
        assert_eq!(
            (
                sum("created"),
                sum("completed"),
                sum("failed"),
                sum("cancelled"),
                sum("pages")
            ),
            (16, 10, 3, 1, 20)
        );
        assert_eq!(series.last().unwrap()["backlog"], 2, "the two waiting now");
        let p = &day["task_seconds"];
        assert_eq!(p["count"], 10);
        let within = |v: &Value, lo: f64, hi: f64| {
            let v = v.as_f64().unwrap_or_else(|| panic!("{day}"));
            assert!((lo..=hi).contains(&v), "{v} not in {lo}..={hi}: {day}");
        };
        // The nearest ranks (5, 10, 10 s; 2.5 s a page), within the histogram's 3 %.
        within(&p["p50"], 4.85, 5.15);
        within(&p["p95"], 9.7, 10.3);
        within(&p["p99"], 9.7, 10.3);
        within(&day["page_seconds"]["p50"], 2.42, 2.58);
        assert_eq!(
            day["failures"],
            json!({"undecodable": 2, "engine_error": 1})
        );
        assert_eq!(day["queue"]["queued"], 2);
        assert!(
            day["queue"]["oldest_queued_secs"].as_i64().unwrap() >= 600,
            "{day}"
        );
        assert_eq!(day["queue"]["paused"], false);
        let engine = &day["engines"][0];
        assert_eq!(
            (
                engine["engine"].as_str(),
                engine["completed"].as_i64(),
                engine["failed"].as_i64(),
                engine["pages"].as_i64()
            ),
            (Some("ppocr"), Some(10), Some(3), Some(20))
        );
        within(&engine["page_seconds"], 2.74, 2.76);
        let top = &day["top_users"][0];
        assert_eq!(
            (
                top["email"].as_str(),
                top["pages"].as_i64(),
                top["tasks"].as_i64()
            ),
            (Some(install.user.email.as_str()), Some(20), Some(14))
        );

        let week = stats("7d").await;
        assert_eq!(week["task_seconds"]["count"], 11);
        assert_eq!(week["by_status"]["completed"], 11);
        assert_eq!(week["engines"][0]["pages"], 25, "{week}");
        assert_eq!(week["top_users"][0]["pages"], 25, "{week}");
        // The same figures as from the tasks table alone.
        let tasks_only = compute_from(&install.app, Window::Week, Source::Tasks)
            .await
            .unwrap();
        let tasks_only = serde_json::to_value(tasks_only).unwrap();
        assert_eq!(same(&tasks_only), same(&week));
        assert_eq!(tasks_only["top_users"], week["top_users"]);
        let month = stats("30d").await;
        assert_eq!(
            (
                month["bucket_secs"].as_i64(),
                month["by_status"]["completed"].as_i64()
            ),
            (Some(86_400), Some(11))
        );
        // A closed hour is summed once, and read from its sums: the task rewritten since
        // (which no worker does) still counts as it was.
        set_outcome(&install, &ids[16], two_days_ago(50)).await;
        let again = stats("7d").await;
        assert_eq!(same(&again), same(&week));
        assert_eq!(again["top_users"], week["top_users"]);
        let hour = stats("1h").await;
        assert_eq!(hour["series"].as_array().unwrap().len(), 61);
        let bad = operator
            .get(format!("{base}/api/admin/stats?window=1d"))
            .await;
        assert_eq!(bad.status(), 400);

        // On this backend too: a task's detail with its timeline, its priority, and the logs.
        let waiting = &ids[14];
        let prioritised: Value = operator
            .post(
                format!("{base}/api/admin/tasks/{waiting}/priority"),
                json!({"priority": 5}),
            )
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(prioritised["priority"], 5);
        let detail: Value = operator
            .get(format!("{base}/api/admin/tasks/{waiting}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            (detail["priority"].as_i64(), detail["status"].as_str()),
            (Some(5), Some("queued"))
        );
        assert_eq!(steps(&detail["timeline"]), ["queued"], "{detail}");
        let logs = operator.get(format!("{base}/api/admin/logs?limit=5")).await;
        assert_eq!(logs.status(), 200);
        let logs: Value = logs.json().await.unwrap();
        assert!(logs["records"].is_array(), "{logs}");

        let output = install.run_ocrd(&["admin", "stats", "--window", "7d"]);
        let shell: Value = serde_json::from_str(&output).unwrap();
        assert_eq!(shell["task_seconds"]["count"], 11);
    }
}

async fn timeline(caller: &Caller, base: &str, id: &str) -> reqwest::Response {
    caller.get(format!("{base}/api/tasks/{id}/timeline")).await
}

/// The owner's timeline of a finished task, once it shows the end. The worker adds the last step
/// just after the commit that `wait_finished` sees, so a read at once may miss it.
async fn ended_timeline(caller: &Caller, base: &str, id: &str) -> Value {
    wait_for(
        Duration::from_secs(30),
        "the timeline's last step",
        || async {
            let answer: Value = timeline(caller, base, id).await.json().await.ok()?;
            let last = steps(&answer["steps"]).last()?.clone();
            ["completed", "failed", "cancelled"]
                .contains(&last.as_str())
                .then_some(answer)
        },
    )
    .await
}

/// The kinds of a timeline's steps, in order.
fn steps(timeline: &Value) -> Vec<String> {
    timeline
        .as_array()
        .unwrap_or_else(|| panic!("{timeline}"))
        .iter()
        .map(|s| s["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_timeline_shows_its_owner_and_operators_what_happened_and_old_ones_expire() {
    let _turn = crate::worker::one_at_a_time().await;
    let install = Install::distributed(|_| {}).await;
    let base = served(&install).await;
    let owner = Caller::new(&install, &base, Role::User).await;
    let stranger = Caller::new(&install, &base, Role::User).await;
    let admin = Caller::new(&install, &base, Role::Admin).await;
    let page = std::fs::read(&sample_pages()[0].0).unwrap();
    let mut broken = crate::support::tiny_png();
    broken.truncate(40);

    let good = install
        .submit_bytes_as(&owner.id, "good.png", page.clone())
        .await
        .id;
    let bad = install
        .submit_bytes_as(&owner.id, "bad.png", broken)
        .await
        .id;
    let mut worker = install.spawn_worker("timeline", &[]);
    let finished = install
        .wait_finished(&[good.clone(), bad.clone()], Duration::from_secs(120))
        .await;
    assert_eq!(
        finished[0].status.as_str(),
        "completed",
        "{}",
        worker.log_text()
    );
    assert_eq!(finished[1].status.as_str(), "failed");

    // The owner: what happened, in words, without workers or error detail.
    let mine = ended_timeline(&owner, &base, &good).await;
    assert_eq!(
        steps(&mine["steps"]),
        ["queued", "started", "page", "completed"],
        "{mine}"
    );
    for step in mine["steps"].as_array().unwrap() {
        let keys: Vec<&String> = step.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["at", "kind", "message"], "{step}");
    }
    assert_eq!(mine["steps"][2]["message"], "Page 1 of 1 done.");
    assert_eq!(
        timeline(&stranger, &base, &good).await.status(),
        404,
        "another's task"
    );
    let failed = ended_timeline(&owner, &base, &bad).await;
    assert_eq!(steps(&failed["steps"]).last().unwrap(), "failed");

    // Operators: the worker, the attempt and the error code.
    let detail: Value = admin
        .get(format!("{base}/api/admin/tasks/{good}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["attempts"], 1);
    assert_eq!(detail["owner_email"], owner.email.as_str());
    let started = &detail["timeline"][1];
    assert_eq!(started["kind"], "started");
    assert_eq!(started["attempt"], 1);
    let worker_id = started["worker"]
        .as_str()
        .unwrap_or_else(|| panic!("{detail}"));
    assert!(
        worker_id.contains(&format!("-{}-", worker.pid())),
        "{worker_id}"
    );
    let bad_detail: Value = admin
        .get(format!("{base}/api/admin/tasks/{bad}"))
        .await
        .json()
        .await
        .unwrap();
    let last = bad_detail["timeline"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["kind"].as_str(), last["detail"].as_str()),
        (Some("failed"), Some("undecodable")),
        "{bad_detail}"
    );
    let unknown = admin
        .get(format!(
            "{base}/api/admin/tasks/00000000-0000-7000-8000-000000000000"
        ))
        .await;
    assert_eq!(unknown.status(), 404);

    // Cancelled while queued (no worker runs), retried, then run: each step in order.
    worker.kill();
    let third = install
        .submit_bytes_as(&owner.id, "third.png", page.clone())
        .await
        .id;
    let cancelled = admin
        .post(format!("{base}/api/admin/tasks/{third}/cancel"), json!({}))
        .await;
    assert_eq!(cancelled.status(), 200);
    let retried = owner
        .post(format!("{base}/api/tasks/{third}/retry"), json!({}))
        .await;
    assert_eq!(retried.status(), 202);
    let mut worker = install.spawn_worker("timeline-2", &[]);
    install
        .wait_finished(std::slice::from_ref(&third), Duration::from_secs(120))
        .await;
    let third_steps = ended_timeline(&owner, &base, &third).await;
    assert_eq!(
        steps(&third_steps["steps"]),
        [
            "queued",
            "cancelled",
            "queued",
            "started",
            "page",
            "completed"
        ]
    );

    // Retention: a task that ended more than `retention.days` ago is erased with its files by
    // the worker's sweep; newer ones stay.
    let result_keys = install.result(&good).await.blob_keys;
    let long_ago = now() - TimeDelta::days(3);
    {
        let mut conn = install.app.db.get().await.unwrap();
        let update = diesel::update(tasks::table.find(good.clone()))
            .set(tasks::finished_at.eq(Some(long_ago)));
        ocrd::with_conn!(&mut conn, |c| update.execute(c).await).unwrap();
    }
    let set = admin
        .patch(
            format!("{base}/api/admin/settings"),
            json!({"retention.days": 2}),
        )
        .await;
    assert_eq!(set.status(), 200);
    // The rows go first, then the objects: wait for both.
    let keys: Vec<ocrd::blobs::BlobKey> = result_keys
        .0
        .values()
        .map(|key| ocrd::blobs::BlobKey::parse(key).unwrap())
        .collect();
    wait_for(
        Duration::from_secs(60),
        "the expired task and its files to be erased",
        || async {
            if owner.get(format!("{base}/api/tasks/{good}")).await.status() != 404 {
                return None;
            }
            for key in &keys {
                if install.app.blobs.get(key).await.is_ok() {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    assert_eq!(
        owner
            .get(format!("{base}/api/tasks/{third}"))
            .await
            .status(),
        200,
        "a recent task stays"
    );
    assert_eq!(
        owner.get(format!("{base}/api/tasks/{bad}")).await.status(),
        200
    );
    install.assert_no_orphans().await;
    // The worker that erased it counted it, and the audit log names it.
    let (_, metrics) = worker.health("/metrics").await;
    assert!(metrics.contains("ocrd_tasks_purged_total 1"), "{metrics}");
    let audit: Value = admin
        .get(format!("{base}/api/admin/audit?action=task.purge"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["entries"][0]["target"], json!(good), "{audit}");
    assert_eq!(audit["entries"][0]["actor"], "retention", "{audit}");
    worker.kill();
}

/// `GET /api/tasks/{id}` as `caller`: the status, and the body when it is JSON.
async fn task_of(caller: &Caller, base: &str, id: &str) -> (u16, Value) {
    let response = caller.get(format!("{base}/api/tasks/{id}")).await;
    let status = response.status().as_u16();
    (
        status,
        response.json::<Value>().await.unwrap_or(Value::Null),
    )
}

/// Uploads a small page through the API with a `retention_days` field.
async fn upload_keeping(caller: &Caller, base: &str, days: &str) -> reqwest::Response {
    let form = reqwest::multipart::Form::new()
        .text("retention_days", days.to_owned())
        .part(
            "file",
            reqwest::multipart::Part::bytes(crate::support::tiny_png()).file_name("kept.png"),
        );
    caller.upload_form(base, form).await
}

/// Retention per task (chosen at upload) and per account (set by an admin) over the install's
/// `retention.days`: the purge erases each expired task with its files, audits it, runs in one
/// process at a time, and the task page says when a task goes. On both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_per_task_and_per_account_purges_what_expired_and_audits_it() {
    for install in [
        Install::embedded(|_| {}).await,
        Install::distributed(|_| {}).await,
    ] {
        let base = served(&install).await;
        let admin = Caller::new(&install, &base, Role::Admin).await;
        let alice = Caller::new(&install, &base, Role::User).await;
        let bob = Caller::new(&install, &base, Role::User).await;

        // At upload: a number of days from 0 to 36,500, or a 400 naming the rule.
        for bad in ["-1", "36501", "a week", ""] {
            let refused = upload_keeping(&bob, &base, bad).await;
            assert_eq!(refused.status(), 400, "{bad:?}");
            let body: Value = refused.json().await.unwrap();
            let message = body["error"]["message"].as_str().unwrap().to_owned();
            assert!(
                message.contains("etention_days: a whole number"),
                "{message}"
            );
        }
        let uploaded = upload_keeping(&bob, &base, "1").await;
        assert_eq!(uploaded.status(), 202);
        let uploaded: Value = uploaded.json().await.unwrap();
        assert_eq!(uploaded["retention_days"], 1);
        let b_one_day = uploaded["id"].as_str().unwrap().to_owned();
        let b_three_days = {
            let response = upload_keeping(&bob, &base, "3").await;
            let body: Value = response.json().await.unwrap();
            body["id"].as_str().unwrap().to_owned()
        };
        let png = crate::support::tiny_png();
        let b_default = install
            .submit_bytes_as(&bob.id, "b.png", png.clone())
            .await
            .id;
        let a_default = install
            .submit_bytes_as(&alice.id, "a.png", png.clone())
            .await
            .id;
        let keep = ocrd::tasks::TaskOptions {
            retention_days: Some(0),
            ..Default::default()
        };
        let a_forever = install
            .submit_with(&alice.id, "a0.png", png.clone(), keep)
            .await
            .id;

        // An admin keeps Alice's tasks a day; nonsense is refused.
        let url = format!("{base}/api/admin/users/{}", alice.id);
        let refused = admin
            .patch(url.clone(), json!({"retention_days": -5}))
            .await;
        assert_eq!(refused.status(), 400);
        let set = admin.patch(url.clone(), json!({"retention_days": 1})).await;
        assert_eq!(set.status(), 200);
        let set: Value = set.json().await.unwrap();
        assert_eq!(
            (set["retention_days"].as_i64(), set["role"].as_str()),
            (Some(1), Some("user"))
        );

        // All five finished two days ago.
        let finished = now() - TimeDelta::days(2);
        for id in [
            &b_one_day,
            &b_three_days,
            &b_default,
            &a_default,
            &a_forever,
        ] {
            let o = Outcome {
                status: "completed",
                created: finished - TimeDelta::seconds(60),
                started: Some(finished - TimeDelta::seconds(30)),
                finished: Some(finished),
                pages: 1,
                error: None,
            };
            set_outcome(&install, id, o).await;
        }
        let (_, three) = task_of(&bob, &base, &b_three_days).await;
        let expires = chrono::DateTime::parse_from_rfc3339(three["expires_at"].as_str().unwrap())
            .unwrap()
            .naive_utc();
        assert!(
            (expires - (finished + TimeDelta::days(3)))
                .num_seconds()
                .abs()
                <= 1,
            "{three}"
        );
        let (_, kept) = task_of(&bob, &base, &b_default).await;
        assert_eq!(
            kept["expires_at"],
            Value::Null,
            "the install keeps tasks: {kept}"
        );

        // Another process holds the purge: this one waits its turn.
        let mut conn = install.app.db.get().await.unwrap();
        let held = JobLease::take(&mut conn, "retention", "elsewhere", TimeDelta::minutes(1))
            .await
            .unwrap();
        assert!(held);
        assert_eq!(
            ocrd::retention::purge(&install.app, "here", TimeDelta::minutes(1))
                .await
                .unwrap(),
            None
        );
        assert_eq!(task_of(&alice, &base, &a_default).await.0, 200);
        // Its lease lapses (it died): this one takes over.
        let lapsed = JobLease::take(&mut conn, "retention", "elsewhere", TimeDelta::seconds(-1))
            .await
            .unwrap();
        assert!(lapsed);
        drop(conn);
        assert_eq!(
            ocrd::retention::purge(&install.app, "here", TimeDelta::minutes(1))
                .await
                .unwrap(),
            Some(2)
        );
        for (caller, id, status) in [
            (&bob, &b_one_day, 404),
            (&alice, &a_default, 404),
            (&bob, &b_three_days, 200),
            (&bob, &b_default, 200),
            (&alice, &a_forever, 200),
        ] {
            assert_eq!(task_of(caller, &base, id).await.0, status, "{id}");
        }
        let uploads = install
            .app
            .blobs
            .list(&format!("uploads/{}", alice.id))
            .await
            .unwrap();
        assert_eq!(
            uploads.len(),
            1,
            "only the kept task's upload is left: {uploads:?}"
        );
        let audit: Value = admin
            .get(format!("{base}/api/admin/audit?action=task.purge"))
            .await
            .json()
            .await
            .unwrap();
        let mut purged: Vec<&str> = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["target"].as_str().unwrap())
            .collect();
        purged.sort();
        let mut expected = [b_one_day.as_str(), a_default.as_str()];
        expected.sort();
        assert_eq!(purged, expected, "{audit}");

        // The install now keeps tasks a day: Bob's default task goes, the task that chose
        // three days and the one kept until deleted stay.
        let set = admin
            .patch(
                format!("{base}/api/admin/settings"),
                json!({"retention.days": 1}),
            )
            .await;
        assert_eq!(set.status(), 200);
        assert_eq!(
            ocrd::retention::purge(&install.app, "here", TimeDelta::minutes(1))
                .await
                .unwrap(),
            Some(1)
        );
        assert_eq!(task_of(&bob, &base, &b_default).await.0, 404);
        assert_eq!(task_of(&bob, &base, &b_three_days).await.0, 200);
        assert_eq!(task_of(&alice, &base, &a_forever).await.0, 200);
        // Alice back on the install's: her task that chose "until deleted" still stays.
        let reset = admin.patch(url, json!({"retention_days": null})).await;
        let reset: Value = reset.json().await.unwrap();
        assert_eq!(reset["retention_days"], Value::Null);
        assert_eq!(
            ocrd::retention::purge(&install.app, "here", TimeDelta::minutes(1))
                .await
                .unwrap(),
            Some(0)
        );
        assert_eq!(task_of(&alice, &base, &a_forever).await.0, 200);
        install.assert_no_orphans().await;
    }
}
