//! Per-account quotas on both backends: each of the four limits refuses an upload before
//! anything is stored, with its status, code, message, `Retry-After` and `RateLimit` headers;
//! admins set an account's own; the account sees its use; a document with more pages than are
//! left fails once they are counted, and its reservation is settled. (A worker SIGKILLed
//! mid-document keeping its task's reservation is in `pdf::a_worker_killed_mid_document…`.)

use std::time::Duration;

use ocrd::db::models::{Role, TaskStatus};
use serde_json::{Value, json};

use crate::admin::{Caller, served};
use crate::install::{Install, wait_for};

async fn upload(caller: &Caller, base: &str, name: &str, bytes: Vec<u8>) -> reqwest::Response {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
    );
    caller.upload_form(base, form).await
}

/// What is stored of `user`'s: upload objects and task rows.
async fn stored(install: &Install, user: &str) -> (usize, usize) {
    let objects = install
        .app
        .blobs
        .list(&format!("uploads/{user}/"))
        .await
        .unwrap()
        .len();
    let mut conn = install.app.db.get().await.unwrap();
    let tasks = ocrd::db::models::Task::list_for_user(&mut conn, user, None, 100, None)
        .await
        .unwrap()
        .len();
    (objects, tasks)
}

async fn usage(caller: &Caller, base: &str) -> Value {
    let response = caller.get(format!("{base}/api/account/usage")).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// A refusal: its status and code, a message naming `needle`, and the `RateLimit` headers of
/// the limit `name`; returns `Retry-After`, if any.
async fn refused(
    response: reqwest::Response,
    status: u16,
    code: &str,
    name: &str,
    needle: &str,
) -> Option<u64> {
    assert_eq!(response.status(), status);
    let headers = response.headers().clone();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(needle), "{message}");
    let policy = headers["ratelimit-policy"].to_str().unwrap();
    assert!(policy.starts_with(&format!("\"{name}\";q=")), "{policy}");
    let standing = headers["ratelimit"].to_str().unwrap();
    assert!(
        standing.starts_with(&format!("\"{name}\";r=")),
        "{standing}"
    );
    headers
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_quota_refuses_an_upload_before_anything_is_stored_on_both_backends() {
    for install in [
        Install::embedded(|_| {}).await,
        Install::distributed(|_| {}).await,
    ] {
        let base = served(&install).await;
        let alice = Caller::new(&install, &base, Role::User).await;
        let admin = Caller::new(&install, &base, Role::Admin).await;
        let png = crate::support::tiny_png();
        let set = |quota: Value| {
            let (admin, url) = (&admin, format!("{base}/api/admin/users/{}", alice.id));
            async move {
                let response = admin.patch(url, json!({ "quota": quota })).await;
                let status = response.status();
                let body: Value = response.json().await.unwrap();
                assert_eq!(status, 200, "{body}");
                body
            }
        };

        // No limits by default.
        let seen = usage(&alice, &base).await;
        assert_eq!(seen["limits"]["pages_per_month"], 0, "{seen}");
        assert_eq!(seen["own"]["pages_per_month"], false, "{seen}");

        // Tasks at once: the third waiting upload is refused, with nothing stored.
        let view = set(json!({"concurrent_tasks": 2})).await;
        assert_eq!(view["quota"]["concurrent_tasks"], 2, "{view}");
        assert_eq!(view["quota"]["pages_per_month"], Value::Null, "{view}");
        for n in 0..2 {
            assert_eq!(
                upload(&alice, &base, &format!("{n}.png"), png.clone())
                    .await
                    .status(),
                202
            );
        }
        let before = stored(&install, &alice.id).await;
        assert_eq!(before, (2, 2));
        let retry = refused(
            upload(&alice, &base, "third.png", png.clone()).await,
            429,
            "quota_exceeded",
            "concurrent",
            "2 tasks at once",
        )
        .await;
        assert_eq!(retry, Some(30));
        assert_eq!(stored(&install, &alice.id).await, before);
        let seen = usage(&alice, &base).await;
        assert_eq!(seen["limits"]["concurrent_tasks"], 2, "{seen}");
        assert_eq!(seen["own"]["concurrent_tasks"], true, "{seen}");
        assert_eq!(seen["usage"]["concurrent_tasks"], 2, "{seen}");
        assert_eq!(
            seen["usage"]["pages_reserved"], 2,
            "one page each until counted: {seen}"
        );
        let used = seen["usage"]["stored_bytes"].as_u64().unwrap();
        assert_eq!(used, 2 * png.len() as u64);

        // Storage: room for one more file exactly, then none; a file that would cross the
        // limit is cut off mid-upload and nothing of it kept.
        set(json!({"concurrent_tasks": null, "stored_bytes": used + png.len() as u64})).await;
        assert_eq!(
            upload(&alice, &base, "fits.png", png.clone())
                .await
                .status(),
            202
        );
        let before = stored(&install, &alice.id).await;
        let retry = refused(
            upload(&alice, &base, "full.png", png.clone()).await,
            403,
            "storage_quota_exceeded",
            "storage",
            "no room for this upload",
        )
        .await;
        assert_eq!(retry, None);
        set(json!({"stored_bytes": used + png.len() as u64 + 10})).await;
        refused(
            upload(&alice, &base, "crosses.png", png.clone()).await,
            403,
            "storage_quota_exceeded",
            "storage",
            "are kept: there is no room",
        )
        .await;
        assert_eq!(stored(&install, &alice.id).await, before);

        // The largest upload.
        set(json!({"stored_bytes": null, "max_upload_bytes": 10})).await;
        refused(
            upload(&alice, &base, "big.png", png.clone()).await,
            413,
            "payload_too_large",
            "upload",
            "quota of 10 bytes",
        )
        .await;
        assert_eq!(stored(&install, &alice.id).await, before);

        // Pages this month: three held by the three waiting tasks.
        set(json!({"max_upload_bytes": null, "pages_per_month": 3})).await;
        let retry = refused(
            upload(&alice, &base, "month.png", png.clone()).await,
            429,
            "quota_exceeded",
            "pages",
            "3 of 3 pages",
        )
        .await
        .expect("Retry-After until the month's end");
        let month_end = ocrd::quota::month_end(ocrd::db::models::now());
        let until = (month_end - ocrd::db::models::now()).num_seconds() as u64;
        assert!(retry.abs_diff(until) <= 5, "{retry} s against {until} s");
        assert_eq!(stored(&install, &alice.id).await, before);
        // 0 is no limit for this account, whatever the install says.
        set(json!({"pages_per_month": 0})).await;
        assert_eq!(
            upload(&alice, &base, "free.png", png.clone())
                .await
                .status(),
            202
        );

        // Bad values are refused and change nothing; the audit log has the changes.
        let url = format!("{base}/api/admin/users/{}", alice.id);
        for bad in [
            json!({"quota": {"pages_per_month": -1}}),
            json!({"quota": {"stored_bytes": 9_223_372_036_854_775_808_u64}}),
            json!({"quota": {"pages": 5}}),
            json!({"quota": {"pages_per_month": "many"}}),
        ] {
            assert_eq!(
                admin.patch(url.clone(), bad.clone()).await.status(),
                400,
                "{bad}"
            );
        }
        let view = set(json!({})).await;
        assert_eq!(view["quota"]["pages_per_month"], 0, "{view}");
        let audit: Value = admin
            .get(format!("{base}/api/admin/audit?action=user.update"))
            .await
            .json()
            .await
            .unwrap();
        let details: Vec<String> = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["detail"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert!(
            details
                .iter()
                .any(|d| d.contains("\"max_upload_bytes\":10")),
            "{details:?}"
        );
        // A user may neither read nor set another's quotas.
        assert_eq!(
            alice
                .patch(url, json!({"quota": {"pages_per_month": 0}}))
                .await
                .status(),
            403
        );

        // A running task deleted after reading two of its pages: they stay counted, and it
        // holds nothing any more.
        let before = usage(&alice, &base).await["usage"].clone();
        let running = install
            .submit_bytes_as(&alice.id, "running.png", png.clone())
            .await;
        {
            let mut conn = install.app.db.get().await.unwrap();
            ocrd::db::models::Task::claim(&mut conn, &running.id, "w#1", Duration::from_secs(60))
                .await
                .unwrap()
                .unwrap();
            ocrd::db::models::Task::set_progress(&mut conn, &running.id, "w#1", 2, Some(3))
                .await
                .unwrap()
                .unwrap();
        }
        ocrd::tasks::delete(&install.app, &alice.id, &running.id)
            .await
            .unwrap();
        let after = usage(&alice, &base).await["usage"].clone();
        assert_eq!(
            after["pages_this_month"].as_u64().unwrap(),
            before["pages_this_month"].as_u64().unwrap() + 2,
            "{before} → {after}"
        );
        assert_eq!(
            after["pages_reserved"], before["pages_reserved"],
            "{before} → {after}"
        );
        // The console's "pages this month" is what the quota counts.
        let listed: Value = admin
            .get(format!("{base}/api/admin/users?search={}", alice.email))
            .await
            .json()
            .await
            .unwrap();
        let counted =
            after["pages_this_month"].as_u64().unwrap() + after["pages_reserved"].as_u64().unwrap();
        assert_eq!(listed["users"][0]["pages_this_month"], counted, "{listed}");
    }
}

/// A document with more pages than the month has left fails once they are counted, with the
/// numbers; its reservation is settled, and what was read before stays counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_over_the_pages_left_fails_once_counted_and_is_settled() {
    for install in [
        Install::embedded(|c| c.quota.pages_per_month = 4).await,
        Install::distributed(|c| c.quota.pages_per_month = 4).await,
    ] {
        let typed: [&str; 1] = ["Pack my box with five dozen liquor jugs."];
        use crate::pdf::TestPage::Text;
        let three = crate::pdf::mixed_pdf(&[Text(&typed), Text(&typed), Text(&typed)], 300.0);
        let (stop, worker) = crate::all_in_one::start_worker(&install, crate::ocr::engine());
        let first = install.submit_bytes("three.pdf", three.clone()).await;
        let done = install
            .wait_finished(std::slice::from_ref(&first.id), Duration::from_secs(300))
            .await;
        assert_eq!(done[0].status, TaskStatus::Completed, "{:?}", done[0]);
        let user = install.user.id.clone();
        let standing = || async {
            let mut conn = install.app.db.get().await.unwrap();
            ocrd::quota::usage(&mut conn, &user, ocrd::db::models::now())
                .await
                .unwrap()
        };
        // The worker settles its task: three pages read, nothing held.
        wait_for(
            Duration::from_secs(60),
            "the first task settled",
            || async {
                let used = standing().await;
                (used.pages_this_month == 3 && used.pages_reserved == 0).then_some(())
            },
        )
        .await;

        // One page left: the upload is taken (a page is free), the document is refused once
        // its three pages are counted.
        let second = install.submit_bytes("again.pdf", three).await;
        let done = install
            .wait_finished(std::slice::from_ref(&second.id), Duration::from_secs(300))
            .await;
        let failed = &done[0];
        assert_eq!(failed.status, TaskStatus::Failed, "{failed:?}");
        assert_eq!(failed.error_code.as_deref(), Some("quota_exceeded"));
        let message = failed.error_message.clone().unwrap_or_default();
        assert!(
            message.contains("has 3 pages, and 1 of the 4 pages"),
            "{message}"
        );
        assert_eq!(failed.pages_done, 0);
        wait_for(
            Duration::from_secs(60),
            "the refused task settled",
            || async {
                let used = standing().await;
                (used.pages_this_month == 3 && used.pages_reserved == 0).then_some(())
            },
        )
        .await;
        // Deleting the read task keeps its pages counted.
        ocrd::tasks::delete(&install.app, &user, &first.id)
            .await
            .unwrap();
        assert_eq!(standing().await.pages_this_month, 3);
        stop.cancel();
        worker.await.unwrap();
    }
}
