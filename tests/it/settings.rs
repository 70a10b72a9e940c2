//! Runtime settings (`/api/admin/settings`, `ocrd admin settings`, `ocrd config`): validated,
//! stored in the database, applied on every instance without a restart, and audited; on both
//! backends.

use std::time::Duration;

use ocrd::db::models::Role;
use serde_json::{Value, json};

use crate::admin::{Caller, served};
use crate::install::{Install, wait_for};

impl Caller {
    pub async fn patch(&self, url: String, body: Value) -> reqwest::Response {
        self.client
            .patch(url)
            .header("X-CSRF-Token", &self.csrf)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Uploads `bytes` through the API: the answer's status and JSON.
    async fn upload(&self, base: &str, name: &str, bytes: Vec<u8>) -> (u16, Value) {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
        );
        let response = self.upload_form(base, form).await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// The settings as the API lists them, by key.
async fn settings(caller: &Caller, base: &str) -> serde_json::Map<String, Value> {
    let response = caller.get(format!("{base}/api/admin/settings")).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["key"].as_str().unwrap().to_owned(), s.clone()))
        .collect()
}

/// A PNG larger than `bytes`: noise does not compress.
fn png_over(bytes: usize) -> Vec<u8> {
    let side = ((bytes as f64 / 3.0).sqrt() as u32) + 8;
    let image = image::RgbImage::from_fn(side, side, |x, y| {
        let v = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) as u8;
        image::Rgb([v, v.wrapping_mul(7), v.wrapping_add(y as u8)])
    });
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    assert!(png.len() > bytes, "{} bytes", png.len());
    png
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_settings_apply_on_every_instance_without_a_restart() {
    for install in [
        Install::embedded(|_| {}).await,
        Install::distributed(|_| {}).await,
    ] {
        let base = served(&install).await;
        let operator = Caller::new(&install, &base, Role::Operator).await;
        let admin = Caller::new(&install, &base, Role::Admin).await;
        // A second instance on the same database: it must follow without a restart.
        let other = ocrd::app::App::build(install.config.clone()).await.unwrap();
        let other_base = format!("http://{}", crate::install::serve_app(other));
        let small = crate::support::tiny_png();
        let big = png_over(8 << 10);

        // Operators read them; everything comes from the configuration at first.
        let listed = settings(&operator, &base).await;
        assert_eq!(listed.len(), ocrd::settings::Key::ALL.len(), "{listed:?}");
        let upload_limit = &listed["limits.max_upload_bytes"];
        assert_eq!(
            upload_limit["value"],
            install.config.limits.max_upload_bytes
        );
        assert_eq!(upload_limit["default"], upload_limit["value"]);
        assert_eq!(upload_limit["overridden"], false);
        assert_eq!(
            listed["auth.registration"]["choices"],
            json!(["open", "invite", "closed"])
        );

        // Only admins change them; one bad value changes nothing.
        let url = format!("{base}/api/admin/settings");
        let by_operator = operator
            .patch(url.clone(), json!({"maintenance.banner": "x"}))
            .await;
        assert_eq!(by_operator.status(), 403);
        for (body, names) in [
            (
                json!({"maintenance.banner": "fine", "limits.max_upload_bytes": "10MB"}),
                "limits.max_upload_bytes",
            ),
            (json!({"limits.max_pages": 0}), "limits.max_pages"),
            (json!({"tasks.formats": ["docx"]}), "tasks.formats"),
            (
                json!({"maintenance.banner": "two\nlines"}),
                "maintenance.banner",
            ),
            (json!({"no.such": 1}), "no.such"),
            (json!({}), "setting"),
        ] {
            let response = admin.patch(url.clone(), body.clone()).await;
            assert_eq!(response.status(), 400, "{body}");
            let error: Value = response.json().await.unwrap();
            assert_eq!(error["error"]["code"], "invalid_request");
            let message = error["error"]["message"].as_str().unwrap();
            assert!(message.contains(names), "{body}: {message}");
        }
        assert_eq!(
            settings(&admin, &base).await["maintenance.banner"]["value"],
            ""
        );

        // A lower upload limit: refused here at once, and on the other instance within seconds.
        let (status, _) = admin.upload(&base, "big.png", big.clone()).await;
        assert_eq!(status, 202, "the default limit takes it");
        let changed = admin
            .patch(url.clone(), json!({"limits.max_upload_bytes": 4096}))
            .await;
        assert_eq!(changed.status(), 200);
        let (status, body) = admin.upload(&base, "big.png", big.clone()).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (413, &json!("payload_too_large")),
            "{body}"
        );
        // A token: all-in-one keeps sessions in its process, tokens are in the database.
        let token: Value = admin
            .post(format!("{base}/api/tokens"), json!({"name": "other"}))
            .await
            .json()
            .await
            .unwrap();
        let token = token["token"].as_str().unwrap().to_owned();
        wait_for(
            Duration::from_secs(20),
            "the other instance to apply the limit",
            || async {
                let form = reqwest::multipart::Form::new().part(
                    "file",
                    reqwest::multipart::Part::bytes(big.clone()).file_name("big.png"),
                );
                let response = reqwest::Client::new()
                    .post(format!("{other_base}/api/tasks"))
                    .bearer_auth(&token)
                    .multipart(form)
                    .send()
                    .await
                    .unwrap();
                (response.status() == 413).then_some(())
            },
        )
        .await;
        let (status, _) = admin.upload(&base, "small.png", small.clone()).await;
        assert_eq!(status, 202, "a file under the new limit");
        let page = admin
            .get(format!("{base}/upload"))
            .await
            .text()
            .await
            .unwrap();
        assert!(page.contains("4096"), "the upload page states the limit");

        // Defaults for new tasks.
        admin
            .patch(
                url.clone(),
                json!({"tasks.formats": ["txt", "txt"], "tasks.ocr": "force"}),
            )
            .await;
        let (status, task) = admin.upload(&base, "small.png", small.clone()).await;
        assert_eq!(status, 202);
        assert_eq!(task["requested_formats"], json!(["txt"]), "{task}");
        assert_eq!(task["ocr"], "force", "{task}");

        // Maintenance: a banner on every page, and uploads refused while read-only.
        let banner = "Upgrade at 18:00 UTC";
        admin
            .patch(url.clone(), json!({"maintenance.banner": format!("  {banner} "), "maintenance.read_only": true}))
            .await;
        let (status, body) = admin.upload(&base, "small.png", small.clone()).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (503, &json!("read_only")),
            "{body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("read-only")
        );
        let dashboard = admin.get(format!("{base}/")).await.text().await.unwrap();
        assert!(
            dashboard.contains(banner) && dashboard.contains("Read-only"),
            "{dashboard}"
        );
        let login = reqwest::get(format!("{base}/login"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(login.contains(banner), "signed-out pages show it too");

        // Registration closed at runtime.
        admin
            .patch(url.clone(), json!({"auth.registration": "closed"}))
            .await;
        let refused = reqwest::Client::new()
            .post(format!("{base}/api/auth/register"))
            .json(&json!({"email": "late@example.com", "password": crate::support::PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403);

        // Reset returns to the configuration's value.
        let reset: Value = admin
            .patch(
                url.clone(),
                json!({"maintenance.read_only": null, "auth.registration": null}),
            )
            .await
            .json()
            .await
            .unwrap();
        let read_only = reset["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == "maintenance.read_only")
            .unwrap()
            .clone();
        assert_eq!(
            (read_only["value"].clone(), read_only["overridden"].clone()),
            (json!(false), json!(false))
        );
        let (status, _) = admin.upload(&base, "small.png", small.clone()).await;
        assert_eq!(status, 202, "writable again");

        // Every change is audited with its old and new value.
        let audit: Value = admin
            .get(format!(
                "{base}/api/admin/audit?action=settings.update&limit=50"
            ))
            .await
            .json()
            .await
            .unwrap();
        let entries = audit["entries"].as_array().unwrap();
        let limit_change = entries
            .iter()
            .find(|e| e["target"] == "limits.max_upload_bytes")
            .unwrap_or_else(|| panic!("{audit}"));
        let detail: Value = serde_json::from_str(limit_change["detail"].as_str().unwrap()).unwrap();
        assert_eq!(
            detail,
            json!({"old": install.config.limits.max_upload_bytes, "new": 4096})
        );
        assert_eq!(limit_change["actor"], admin.email.as_str());
        assert!(entries.iter().all(|e| e["action"] == "settings.update"));
        // Read-only on, then reset: two rows; the formats twice (deduplicated) once.
        let targets: Vec<&str> = entries
            .iter()
            .map(|e| e["target"].as_str().unwrap())
            .collect();
        assert_eq!(
            targets
                .iter()
                .filter(|t| **t == "maintenance.read_only")
                .count(),
            2,
            "{targets:?}"
        );

        // The shell: the same settings, and `ocrd config` shows the file's values and the
        // stored ones.
        let run = |args: &[&str]| install.run_ocrd(args);
        let set = run(&[
            "admin",
            "settings",
            "set",
            "maintenance.banner",
            "From the shell",
        ]);
        assert!(
            set.contains(r#"maintenance.banner: "Upgrade at 18:00 UTC" -> "From the shell""#),
            "{set}"
        );
        let got = run(&["admin", "settings", "get", "limits.max_upload_bytes"]);
        assert!(
            got.contains("limits.max_upload_bytes = 4096  (set at runtime"),
            "{got}"
        );
        let bad = install
            .ocrd_command()
            .args(["admin", "settings", "set", "limits.max_pages", "0"])
            .output()
            .unwrap();
        assert!(!bad.status.success());
        assert!(String::from_utf8_lossy(&bad.stderr).contains("limits.max_pages"));
        let users = run(&["admin", "users", "list"]);
        assert!(
            users.contains(&format!("{}\tadmin\tactive", admin.email)),
            "{users}"
        );
        let demoted = run(&[
            "admin",
            "users",
            "set-role",
            "--email",
            &operator.email,
            "--role",
            "user",
        ]);
        assert!(demoted.contains("is now user"), "{demoted}");
        let config = run(&["config"]);
        assert!(config.contains("max_upload_bytes = "), "{config}");
        assert!(
            config.contains("# limits.max_upload_bytes = 4096"),
            "{config}"
        );
        assert!(
            config.contains(r#"# maintenance.banner = "From the shell""#),
            "{config}"
        );
    }
}

/// Registers `email` with `code` as its invite: the status and the error code, if any.
async fn register_with(base: &str, email: &str, code: Option<&str>) -> (u16, Value) {
    let mut body = json!({"email": email, "password": crate::support::PASSWORD});
    if let Some(code) = code {
        body["invite_code"] = json!(code);
    }
    let response = reqwest::Client::new()
        .post(format!("{base}/api/auth/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["error"]["code"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_links_make_one_account_each() {
    invite_links_on(Install::embedded(|_| {}).await).await;
    invite_links_on(Install::distributed(|_| {}).await).await;
}

async fn invite_links_on(install: Install) {
    let base = served(&install).await;
    let admin = Caller::new(&install, &base, Role::Admin).await;
    let fresh = |name: &str| format!("{}@example.com", crate::support::unique(name));
    let invite = |body: Value| {
        let admin = &admin;
        let url = format!("{base}/api/admin/invites");
        async move {
            let response = admin.post(url, body).await;
            assert_eq!(response.status(), 201);
            let made: Value = response.json().await.unwrap();
            let link = made["link"].as_str().unwrap().to_owned();
            let token = link.rsplit_once("invite=").unwrap().1.to_owned();
            (made, link, token)
        }
    };
    let closed = json!("registration_closed");
    let set = admin
        .patch(
            format!("{base}/api/admin/settings"),
            json!({"auth.registration": "invite"}),
        )
        .await;
    assert_eq!(set.status(), 200);
    assert_eq!(
        register_with(&base, &fresh("none"), None).await,
        (403, closed.clone())
    );

    // A link for anyone: the page fills it in, and it makes one account.
    let (made, link, token) = invite(json!({})).await;
    assert!(
        link.starts_with("http") && link.contains("/register?invite="),
        "{link}"
    );
    assert_eq!(made["email"], Value::Null);
    let page = reqwest::get(format!("{base}/register?invite={token}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&format!("value=\"{token}\"")), "{page}");
    // A taken email fails the account, not the invite.
    let taken = register_with(&base, &admin.email, Some(&token)).await;
    assert_eq!(taken, (409, json!("email_taken")));
    let first = fresh("first");
    assert_eq!(register_with(&base, &first, Some(&token)).await.0, 201);
    assert_eq!(
        register_with(&base, &fresh("second"), Some(&token)).await,
        (403, closed.clone()),
        "used up"
    );
    assert_eq!(
        register_with(&base, &fresh("guess"), Some("0123abcd")).await,
        (403, closed.clone())
    );

    // A link for one email (in any letter case).
    let bound = fresh("bound");
    let (_, _, token) = invite(json!({"email": bound.to_uppercase(), "days": 1})).await;
    assert_eq!(
        register_with(&base, &fresh("other"), Some(&token)).await,
        (403, closed.clone())
    );
    assert_eq!(
        register_with(&base, &bound.to_uppercase(), Some(&token))
            .await
            .0,
        201
    );

    // Revoked, it makes nothing; the list holds only pending invites.
    let (made, _, token) = invite(json!({})).await;
    let pending: Value = admin
        .get(format!("{base}/api/admin/invites"))
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = pending["invites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [made["id"].as_str().unwrap()],
        "used invites are not pending"
    );
    let revoked = admin
        .client
        .delete(format!(
            "{base}/api/admin/invites/{}",
            made["id"].as_str().unwrap()
        ))
        .header("X-CSRF-Token", &admin.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    assert_eq!(
        register_with(&base, &fresh("late"), Some(&token)).await,
        (403, closed.clone())
    );

    // The shell makes them too; the audit log has every step.
    let link = install.run_ocrd(&["admin", "invite", "--days", "2"]);
    let token = link.trim().rsplit_once("invite=").unwrap().1.to_owned();
    assert_eq!(
        register_with(&base, &fresh("shell"), Some(&token)).await.0,
        201
    );
    let audit: Value = admin
        .get(format!("{base}/api/admin/audit?action=invite.create"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["entries"].as_array().unwrap().len(), 4, "{audit}");
    let registered: Value = admin
        .get(format!("{base}/api/admin/audit?action=register"))
        .await
        .json()
        .await
        .unwrap();
    let with_invite = registered["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["detail"].as_str().is_some_and(|d| d.contains("invite")))
        .count();
    assert_eq!(with_invite, 3, "{registered}");
}

/// Rows someone edited by hand, and a write the database refuses half-way: the settings in
/// force stay whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_stored_rows_are_ignored_and_a_failed_write_changes_nothing() {
    use diesel_async::SimpleAsyncConnection;
    let install = Install::distributed(|_| {}).await;
    let base = served(&install).await;
    let admin = Caller::new(&install, &base, Role::Admin).await;
    let url = format!("{base}/api/admin/settings");
    let mut conn = install.app.db.get().await.unwrap();
    let ocrd::db::DbConn::Postgres(pg) = &mut conn else {
        panic!("the distributed install runs on PostgreSQL");
    };
    pg.batch_execute(
        "INSERT INTO settings (key, value, updated_at) VALUES \
         ('limits.max_pages', '\"lots\"', now()), \
         ('maintenance.banner', '{not json', now()), \
         ('no.such.setting', '1', now())",
    )
    .await
    .unwrap();
    // Each instance reloads every 2 s; the list reads the rows itself.
    let listed = settings(&admin, &base).await;
    assert_eq!(
        listed.len(),
        ocrd::settings::Key::ALL.len(),
        "an unknown key is not listed: {listed:?}"
    );
    for key in ["limits.max_pages", "maintenance.banner"] {
        assert_eq!(listed[key]["value"], listed[key]["default"], "{key}");
        assert_eq!(listed[key]["overridden"], false, "{key}");
    }
    // Uploads go on under the configuration's limits.
    let (status, _) = admin
        .upload(&base, "fine.png", crate::support::tiny_png())
        .await;
    assert_eq!(status, 202);
    // Setting the key again replaces the bad row.
    let fixed = admin
        .patch(url.clone(), json!({"limits.max_pages": 40}))
        .await;
    assert_eq!(fixed.status(), 200);
    assert_eq!(
        settings(&admin, &base).await["limits.max_pages"]["value"],
        40
    );

    // The database refuses the second of two writes (as a full disk or a dropped connection
    // would): the first is not kept either.
    pg.batch_execute(
        "CREATE FUNCTION refuse_banner() RETURNS trigger AS $$ BEGIN \
           IF NEW.key = 'maintenance.banner' THEN RAISE EXCEPTION 'refused'; END IF; \
           RETURN NEW; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER refuse_banner BEFORE INSERT OR UPDATE ON settings \
           FOR EACH ROW EXECUTE FUNCTION refuse_banner();",
    )
    .await
    .unwrap();
    let both = json!({"auth.registration": "closed", "maintenance.banner": "Back soon."});
    let refused = admin.patch(url.clone(), both.clone()).await;
    assert_eq!(refused.status(), 500);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "internal", "{body}");
    let listed = settings(&admin, &base).await;
    assert_eq!(listed["auth.registration"]["overridden"], false);
    assert_eq!(listed["maintenance.banner"]["overridden"], false);
    pg.batch_execute("DROP TRIGGER refuse_banner ON settings")
        .await
        .unwrap();
    let applied = admin.patch(url, both).await;
    assert_eq!(applied.status(), 200);
    let listed = settings(&admin, &base).await;
    assert_eq!(listed["auth.registration"]["value"], "closed");
    assert_eq!(listed["maintenance.banner"]["value"], "Back soon.");
}
