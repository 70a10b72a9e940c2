//! The web UI in a real browser: Debian's Chromium, headless, driven through chromedriver
//! (WebDriver) by fantoccini, against `ocrd::web` with an in-process worker running the real
//! PP-OCR engine on the embedded defaults.
//!
//! Screenshots of the main pages at desktop and phone width land in
//! `target/tmp/screenshots/` (`docs/screenshots/` holds a committed copy for the README).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use fantoccini::{Client, ClientBuilder, Locator};
use ocrd::db::models::Task;
use serde_json::{Value, json};

use crate::all_in_one::start_worker;
use crate::install::{Install, free_port, sample_pages, wait_for};
use crate::support::unique;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);
/// Page loads and OCR on a busy 2-core machine: generous.
const DEADLINE: Duration = Duration::from_secs(120);
const PASSWORD: &str = "a long enough passphrase";

/// `POST /session/{id}/se/log`: chromedriver's console log since the last call.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

/// A headless Chromium session and the server it browses.
struct Browser {
    client: Client,
    driver: Child,
    base: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(base: String) -> Browser {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: the browser tests need Debian's {package} \
                 (`apt-get install -y chromium chromium-driver`; `make test` installs it)"
            );
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let webdriver = format!("http://127.0.0.1:{port}");
        let status = format!("{webdriver}/status");
        wait_for(Duration::from_secs(60), "chromedriver to answer", || {
            let status = status.clone();
            async move {
                reqwest::get(&status)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
            }
        })
        .await;
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--no-first-run",
                    "--disable-dev-shm-usage",
                    format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&webdriver)
            .await
            .expect("a Chromium session through chromedriver");
        Browser {
            client,
            driver,
            base,
            _profile: profile,
        }
    }

    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// Runs a script (a returned promise is awaited) and returns its value.
    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Waits until the script returns something truthy, and returns it.
    async fn until(&self, what: &str, script: &str) -> Value {
        wait_for(DEADLINE, what, || async {
            let value = self.client.execute(script, vec![]).await.ok()?;
            let truthy = !matches!(&value, Value::Null | Value::Bool(false))
                && value != json!(0)
                && value != json!("");
            truthy.then_some(value)
        })
        .await
    }

    async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.client
            .wait()
            .at_most(DEADLINE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Console messages at error level since the last call (failed loads, CSP violations,
    /// uncaught exceptions).
    async fn console_errors(&self) -> Vec<String> {
        let entries = self.client.issue_cmd(BrowserLog).await.unwrap();
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    async fn assert_no_console_errors(&self, page: &str) {
        let errors = self.console_errors().await;
        assert!(errors.is_empty(), "console errors on {page}: {errors:#?}");
    }

    /// Saves a screenshot at desktop and phone width as `{name}-desktop.png`, `{name}-phone.png`.
    async fn screenshots(&self, name: &str) {
        let dir = screenshot_dir();
        for (size, (width, height)) in [("desktop", DESKTOP), ("phone", PHONE)] {
            self.client.set_window_size(width, height).await.unwrap();
            // Let the layout settle at the new width before the capture.
            self.js("return new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))")
                .await;
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(dir.join(format!("{name}-{size}.png")), png).unwrap();
        }
        self.client
            .set_window_size(DESKTOP.0, DESKTOP.1)
            .await
            .unwrap();
    }

    /// Runs axe-core (vendored, tests only) over the page as it is now and fails on any
    /// violation, naming the rule and the elements.
    async fn assert_accessible(&self, state: &str) {
        let script = axe_source();
        self.client.execute(script, vec![]).await.unwrap();
        let violations = self
            .js(
                "return axe.run(document, {resultTypes: ['violations']}).then((r) => \
                 r.violations.map((v) => ({rule: v.id, impact: v.impact, help: v.help, \
                   nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' '))})))",
            )
            .await;
        assert_eq!(
            violations,
            json!([]),
            "axe-core found accessibility violations on {state}"
        );
    }

    async fn register(&self, email: &str, password: &str) {
        self.goto("/register").await;
        self.fill("#email", email).await;
        self.fill("#password", password).await;
        self.click("#register-form button[type=submit]").await;
        self.until(
            "the dashboard after registering",
            "return location.pathname === '/' && document.querySelector('#tasks-state') !== null",
        )
        .await;
    }

    /// Registers a new account with a fresh email; returns the email.
    async fn register_new(&self) -> String {
        let email = format!("{}@example.com", unique("web"));
        self.register(&email, PASSWORD).await;
        email
    }

    async fn close(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `tests/vendor/axe-core/axe.min.js`, checked against the digest its README records.
fn axe_source() -> &'static str {
    static SOURCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SOURCE.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vendor/axe-core/axe.min.js"
        );
        let source = std::fs::read_to_string(path).expect("the vendored axe-core");
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(source.as_bytes()));
        assert_eq!(
            digest, "e9e5863c33a874f09bc01acd9234b7e3c871479f5eef8802fa582544465e6d01",
            "{path} is not the axe-core 4.11.0 its README names"
        );
        source
    })
}

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The web UI and API of an embedded install on a random port; the worker is started by the
/// test when it wants tasks to run.
async fn serve(tweak: impl FnOnce(&mut ocrd::config::Config)) -> (Install, String, ServerHandle) {
    let install = Install::embedded(tweak).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let handle = spawn_server(&install, listener);
    (install, base, handle)
}

fn spawn_server(install: &Install, listener: std::net::TcpListener) -> ServerHandle {
    let server =
        ocrd::web::serve(listener, install.app.clone(), None, ocrd::web::Scope::Full).unwrap();
    let handle = server.handle();
    tokio::spawn(server);
    handle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_upload_watch_it_complete_view_words_and_download_the_text() {
    let (install, base, _) = serve(|_| {}).await;
    let browser = Browser::start(base.clone()).await;
    let (page, truth) = sample_pages().into_iter().next().unwrap();

    // Signed out, the dashboard sends people to the login page.
    browser.goto("/").await;
    assert_eq!(browser.path().await, "/login");
    browser.assert_no_console_errors("/login").await;

    browser.register_new().await;
    browser
        .until(
            "the empty state of a new account",
            "return !document.getElementById('empty').hidden",
        )
        .await;
    browser.assert_no_console_errors("/ (empty)").await;

    // Upload through the file input; no worker runs yet, so the task stays queued.
    browser.click("nav a[href='/upload']").await;
    browser
        .until("the upload page", "return location.pathname === '/upload'")
        .await;
    let input = browser.client.find(Locator::Css("#files")).await.unwrap();
    let page = page.canonicalize().unwrap();
    input.send_keys(page.to_str().unwrap()).await.unwrap();
    browser
        .until(
            "the upload to finish",
            "return document.querySelector('.upload[data-state=done]') !== null",
        )
        .await;
    let progress = browser
        .js("return document.querySelector('.upload progress').value")
        .await;
    assert_eq!(progress, json!(100), "the progress bar ends full");
    browser.screenshots("upload").await;
    browser.assert_no_console_errors("/upload").await;

    // The dashboard shows it queued; then a worker starts and the row turns completed with
    // no reload (the marker set on this page survives).
    browser.goto("/").await;
    let status = browser
        .until(
            "the task row",
            "return document.querySelector('#tasks tbody tr')?.dataset.status",
        )
        .await;
    assert_eq!(status, json!("queued"));
    browser.js("window.sameDocument = 'yes'; return true").await;
    browser
        .until(
            "the live connection",
            "return document.body.dataset.live === 'connected'",
        )
        .await;
    let (stop, worker) = start_worker(&install, crate::ocr::engine());
    browser
        .until(
            "the row to reach completed live",
            "return document.querySelector('#tasks tbody tr')?.dataset.status === 'completed'",
        )
        .await;
    assert_eq!(
        browser.js("return window.sameDocument").await,
        json!("yes"),
        "the dashboard was reloaded"
    );
    let badge = browser
        .js("return document.querySelector('#tasks tbody tr .badge').textContent")
        .await;
    assert_eq!(badge, json!("Completed"));
    browser.screenshots("dashboard").await;
    browser.assert_no_console_errors("/ (live)").await;

    // The viewer draws the word boxes; clicking a box marks its word in the text and back.
    browser
        .click("#tasks tbody tr a.button[href$='/view']")
        .await;
    let boxes = browser
        .until(
            "word boxes",
            "const img = document.getElementById('page-image'); \
             return img.complete && img.naturalWidth > 0 && document.querySelectorAll('#boxes rect.word').length",
        )
        .await;
    let boxes = boxes.as_u64().unwrap();
    assert!(boxes >= 50, "only {boxes} word boxes drawn");
    let rect = browser
        .client
        .find(Locator::Css("#boxes rect.word[data-i='7']"))
        .await
        .unwrap();
    rect.click().await.unwrap();
    let chosen = browser
        .js("const w = document.querySelector('#text .w.selected'); \
             return w && {i: w.dataset.i, text: w.textContent, \
               boxSelected: document.querySelector('#boxes rect.word.selected')?.dataset.i}")
        .await;
    assert_eq!(chosen["i"], json!("7"), "{chosen}");
    assert_eq!(chosen["boxSelected"], json!("7"), "{chosen}");
    let title = browser
        .js("return document.querySelector(\"#boxes rect.word[data-i='7'] title\").textContent")
        .await;
    let word = chosen["text"].as_str().unwrap();
    assert!(!word.is_empty() && title.as_str().unwrap().starts_with(word));
    // And the other way round: a word in the text marks its box.
    browser.click("#text .w[data-i='12']").await;
    let marked = browser
        .js("return document.querySelector('#boxes rect.word.selected')?.dataset.i")
        .await;
    assert_eq!(marked, json!("12"));
    // The words are one tab stop, moved with the arrow keys (not one per word); the page
    // buttons' accessible names are their visible text.
    let stops = browser
        .js("return document.querySelectorAll('#text .w[tabindex=\"0\"]').length")
        .await;
    assert_eq!(stops, json!(1), "tab stops among the words");
    let moved = browser
        .js(
            "const w = document.querySelector('#text .w[tabindex=\"0\"]'); w.focus(); \
             w.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowRight', bubbles: true})); \
             const now = document.activeElement; \
             return [now.dataset.i, Number(w.dataset.i) + 1 + '', \
               document.querySelectorAll('#text .w[tabindex=\"0\"]').length]",
        )
        .await;
    assert_eq!(
        moved[0], moved[1],
        "ArrowRight moves to the next word: {moved}"
    );
    assert_eq!(moved[2], json!(1), "{moved}");
    let names = browser
        .js(
            "return ['prev', 'next'].map((id) => { const b = document.getElementById(id); \
             return [b.getAttribute('aria-label'), b.textContent]; })",
        )
        .await;
    assert_eq!(names, json!([[null, "‹ Previous"], [null, "Next ›"]]));
    browser.click("#shade").await;
    browser.screenshots("viewer").await;
    browser.assert_no_console_errors("the viewer").await;

    // The txt download is the recognised text of the page.
    let href = browser
        .js("return document.querySelector('#downloads a[data-format=txt]').href")
        .await;
    let text = browser
        .js(&format!(
            "return fetch({href}).then((r) => r.ok ? r.text() : 'HTTP ' + r.status)"
        ))
        .await;
    let cer = ocrd::eval::cer(text.as_str().unwrap(), &truth);
    assert!(cer <= 0.02, "the downloaded text has CER {cer}");

    // Search from the dashboard: results come as the word is typed, marked in a snippet; the
    // hit opens the viewer on its page with the word marked on the image and in the text.
    let word = text
        .as_str()
        .unwrap()
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| w.chars().count() >= 6)
        .max_by_key(|w| w.chars().count())
        .expect("a long word in the page")
        .to_lowercase();
    browser.goto("/").await;
    let prefix: String = word.chars().take(4).collect();
    browser.fill("#search", &prefix).await;
    let marked = browser
        .until(
            "search results while typing",
            "return !document.getElementById('task-list').hidden ? null :              document.querySelector('#hits li mark')?.textContent",
        )
        .await;
    assert!(
        marked.as_str().unwrap().to_lowercase().starts_with(&prefix),
        "{marked} marked for {prefix}"
    );
    browser.fill("#search", &word).await;
    browser
        .until(
            "the whole word's results",
            &format!(
                "return [...document.querySelectorAll('#hits li a')].some((a) =>                  a.search.includes('terms={word}'))"
            ),
        )
        .await;
    browser.assert_accessible("the search results").await;
    browser.screenshots("search").await;
    browser.click("#hits li a").await;
    let found = browser
        .until(
            "the viewer with the word marked",
            "return document.querySelectorAll('#boxes rect.word.hit').length &&              {boxes: document.querySelectorAll('#boxes rect.word.hit').length,               words: [...document.querySelectorAll('#text .w.hit')].map((w) => w.textContent),               label: document.getElementById('hit-label').textContent,               query: location.search}",
        )
        .await;
    let words = found["words"].as_array().unwrap();
    assert!(!words.is_empty(), "{found}");
    for w in words {
        assert!(
            w.as_str().unwrap().to_lowercase().contains(&word),
            "{found}"
        );
    }
    assert_eq!(found["boxes"], json!(words.len()), "{found}");
    assert!(
        found["query"].as_str().unwrap().contains("page=1"),
        "{found}"
    );
    assert!(
        found["label"].as_str().unwrap().ends_with("on this page"),
        "{found}"
    );
    // Back from the hit returns to the search and its results.
    browser.client.back().await.unwrap();
    let back = browser
        .until(
            "the search again after Back",
            "return document.querySelectorAll('#hits li').length > 0 && \
             document.getElementById('search').value",
        )
        .await;
    assert_eq!(back, json!(word));
    browser
        .assert_no_console_errors("the search and the viewer")
        .await;

    stop.cancel();
    worker.await.unwrap();
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_task_is_a_404_page_and_signing_out_returns_to_login() {
    let (install, base, _) = serve(|_| {}).await;
    // The install's own user has a task.
    let (page, _) = sample_pages().into_iter().next().unwrap();
    let theirs = install.submit_file(&page).await;

    let browser = Browser::start(base.clone()).await;
    browser.register_new().await;
    for path in [
        format!("/tasks/{}", theirs.id),
        format!("/tasks/{}/view", theirs.id),
    ] {
        browser.goto(&path).await;
        let heading = browser
            .js("return document.querySelector('h1')?.textContent")
            .await;
        assert_eq!(heading, json!("Not found"), "{path}");
        let code = browser
            .js("return document.querySelector('code')?.textContent")
            .await;
        assert_eq!(code, json!("task_not_found"));
        let text = browser.js("return document.body.innerText").await;
        let name = page.file_name().unwrap().to_str().unwrap();
        assert!(
            !text.as_str().unwrap().contains(name),
            "the page shows their file name"
        );
    }
    // The page answers 404 too, not 200 with a message.
    let status = browser
        .js(&format!(
            "return fetch('/tasks/{}', {{headers: {{Accept: 'text/html'}}}}).then((r) => r.status)",
            theirs.id
        ))
        .await;
    assert_eq!(status, json!(404));
    // 404 pages (in the browser, the console reports the 404 document itself; nothing else).
    let errors = browser.console_errors().await;
    assert!(
        errors.iter().all(|e| e.contains("404")),
        "console errors other than the 404 status: {errors:#?}"
    );

    browser.goto("/account").await;
    browser
        .until(
            "the account page to load",
            "return document.getElementById('tokens-state').textContent === 'No tokens yet.'",
        )
        .await;
    browser.click("#logout").await;
    browser
        .until("the login page", "return location.pathname === '/login'")
        .await;
    browser.goto("/").await;
    assert_eq!(browser.path().await, "/login", "signed out for real");
    browser.assert_no_console_errors("after signing out").await;
    browser.close().await;
}

/// Pages carry a strict Content-Security-Policy: scripts from this origin only, no inline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_send_a_csp_without_unsafe_inline() {
    let (_install, base, _) = serve(|_| {}).await;
    for path in ["/login", "/register"] {
        let response = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(response.status(), 200);
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        let script_src = csp
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("script-src"))
            .unwrap_or_else(|| panic!("no script-src in {csp}"));
        assert_eq!(script_src, "script-src 'self'");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        let html = response.text().await.unwrap();
        assert!(
            !html.contains("<script>") && !html.contains(" style="),
            "inline script or style on {path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_errors_show_next_to_each_file() {
    let (_install, base, _) = serve(|c| c.limits.max_upload_bytes = 200_000).await;
    let browser = Browser::start(base).await;
    browser.register_new().await;
    let dir = tempfile::tempdir().unwrap();
    // Too large (refused before sending), not an image despite its name (refused by the
    // server's sniffing), a text file (refused by name) and a good small page.
    let big = dir.path().join("big.png");
    std::fs::write(&big, vec![0u8; 300_000]).unwrap();
    let fake = dir.path().join("fake.png");
    std::fs::write(&fake, b"this is not an image").unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, b"hello").unwrap();
    let good = dir.path().join("good.png");
    image::RgbImage::from_pixel(64, 32, image::Rgb([255, 255, 255]))
        .save(&good)
        .unwrap();
    browser.goto("/upload").await;
    let files: Vec<String> = [&big, &fake, &notes, &good]
        .iter()
        .map(|p| p.to_str().unwrap().to_owned())
        .collect();
    let input = browser.client.find(Locator::Css("#files")).await.unwrap();
    input.send_keys(&files.join("\n")).await.unwrap();
    let outcome = browser
        .until(
            "every upload to settle",
            "const rows = [...document.querySelectorAll('.upload')]; \
             if (rows.length < 4 || rows.some((r) => ['waiting', 'uploading'].includes(r.dataset.state))) return null; \
             return rows.map((r) => [r.querySelector('.filename').textContent, r.dataset.state, \
               r.querySelector('.upload-status').textContent]);",
        )
        .await;
    let outcome: Vec<(String, String, String)> = serde_json::from_value(outcome).unwrap();
    let find = |name: &str| {
        outcome
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no row for {name}: {outcome:?}"))
            .clone()
    };
    let (_, state, message) = find("big.png");
    assert_eq!(state, "error");
    assert!(message.contains("Too large"), "{message}");
    let (_, state, message) = find("fake.png");
    assert_eq!(state, "error");
    assert!(
        message.contains("Not a supported document type"),
        "{message}"
    );
    let (_, state, message) = find("notes.txt");
    assert_eq!(state, "error");
    assert!(message.contains("Not a supported type"), "{message}");
    let (_, state, _) = find("good.png");
    assert_eq!(state, "done");
    // The server's 415 shows in the console as a failed request; nothing else may.
    let errors = browser.console_errors().await;
    assert!(
        errors.iter().all(|e| e.contains("415")),
        "console errors: {errors:#?}"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_view_shows_when_offline_and_catches_up_after_reconnecting() {
    let (install, base, handle) = serve(|_| {}).await;
    let addr = base.trim_start_matches("http://").to_owned();
    let browser = Browser::start(base).await;
    browser.register_new().await;
    browser
        .until(
            "the empty state",
            "return !document.getElementById('empty').hidden",
        )
        .await;
    browser.js("window.sameDocument = 'yes'; return true").await;

    handle.stop(false).await;
    browser
        .until(
            "the offline notice",
            "const live = document.getElementById('live'); return !live.hidden && live.textContent",
        )
        .await;
    // While the page is offline, a task of this user is created; the page cannot hear of it.
    let user_id = {
        let mut conn = install.app.db.get().await.unwrap();
        let email = browser
            .js("return document.querySelector('.who').textContent")
            .await;
        ocrd::db::models::User::find_by_email(&mut conn, email.as_str().unwrap())
            .await
            .unwrap()
            .unwrap()
            .id
    };
    let (page, _) = sample_pages().into_iter().next().unwrap();
    let task = install.submit_file_as(&user_id, &page).await;

    // Back on the same port: the page reconnects, hides the notice and reloads its list.
    let listener = wait_for(
        Duration::from_secs(30),
        "the port to be free again",
        || async { std::net::TcpListener::bind(&addr).ok() },
    )
    .await;
    spawn_server(&install, listener);
    browser
        .until(
            "the missed task to appear",
            &format!(
                "return document.getElementById('live').hidden && \
                 document.querySelector('#tasks tbody tr[data-id=\"{}\"]') !== null",
                task.id
            ),
        )
        .await;
    assert_eq!(browser.js("return window.sameDocument").await, json!("yes"));
    // Only the connections the stopped server refused or cut may show in the console.
    let errors = browser.console_errors().await;
    assert!(
        errors.iter().all(|e| e.contains("WebSocket")
            || e.contains("ERR_CONNECTION_REFUSED")
            || e.contains("ERR_CONNECTION_RESET")),
        "console errors: {errors:#?}"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_page_adds_a_webhook_sends_a_test_event_and_shows_it_in_the_log() {
    use crate::webhooks::{Answer, Receiver};
    let (install, base, _) = serve(|c| c.webhooks.allow_private_targets = true).await;
    let (stop, worker) = crate::all_in_one::start_worker(&install, crate::ocr::engine());
    let receiver = Receiver::start(Answer::status(200));
    let browser = Browser::start(base.clone()).await;
    browser.register_new().await;
    browser.goto("/account").await;
    browser
        .until(
            "the webhook list",
            "return document.getElementById('webhooks-state').textContent === 'No webhooks yet.'",
        )
        .await;
    // Refused targets are explained in the form.
    browser.fill("#webhook-url", "ftp://example.com/").await;
    browser.click("#webhook-form button[type=submit]").await;
    let error = browser
        .until(
            "the refusal",
            "const e = document.getElementById('webhook-error'); return !e.hidden && e.textContent",
        )
        .await;
    assert!(error.as_str().unwrap().contains("http://"), "{error}");

    browser
        .js("document.getElementById('webhook-url').value = ''; return true")
        .await;
    browser.fill("#webhook-url", &receiver.url("/events")).await;
    browser.click("#webhook-form button[type=submit]").await;
    let secret = browser
        .until(
            "the new endpoint and its secret",
            "return !document.getElementById('new-secret').hidden && \
             document.querySelectorAll('#webhooks li.webhook').length === 1 && \
             document.getElementById('new-secret-value').textContent",
        )
        .await;
    assert!(secret.as_str().unwrap().starts_with("whsec_"), "{secret}");
    browser
        .assert_accessible("the account page with a webhook")
        .await;

    // The test event goes out through a worker and shows in the endpoint's log.
    browser
        .click("#webhooks li.webhook .row-actions button")
        .await;
    let answer = browser
        .until(
            "the delivery in the log",
            "const cell = document.querySelector('#webhooks tr[data-status=delivered] .attempt-result'); \
             if (!cell) { document.querySelectorAll('#webhooks .row-actions button')[1].click(); return null; } \
             return cell.textContent",
        )
        .await;
    assert!(answer.as_str().unwrap().starts_with("200 in "), "{answer}");
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["type"], "webhook.test");
    browser.assert_no_console_errors("/account").await;
    stop.cancel();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_page_creates_shows_once_and_revokes_tokens_and_changes_the_password() {
    let (install, base, _) = serve(|_| {}).await;
    let browser = Browser::start(base.clone()).await;
    let email = browser.register_new().await;
    {
        // The account's own quotas: 100 pages a month and 1 MiB stored.
        let mut conn = install.app.db.get().await.unwrap();
        let user = ocrd::db::models::User::find_by_email(&mut conn, &email)
            .await
            .unwrap()
            .unwrap();
        let change = ocrd::quota::Change {
            pages_per_month: Some(Some(100)),
            stored_bytes: Some(Some(1 << 20)),
            ..Default::default()
        };
        ocrd::quota::set_overrides(&mut conn, &user.id, change)
            .await
            .unwrap();
    }
    browser.goto("/account").await;
    // Usage against the quotas, a meter where there is a limit.
    let usage = browser
        .until(
            "the usage table",
            "const t = document.getElementById('usage'); return !t.hidden &&              [...t.querySelectorAll('tbody tr')].map((r) => ({                quota: r.querySelector('th').textContent,                cells: [...r.querySelectorAll('td')].map((c) => c.textContent.trim()),                meter: r.querySelector('meter')?.getAttribute('max') ?? null }))",
        )
        .await;
    let month = ocrd::quota::month(ocrd::db::models::now());
    assert_eq!(
        usage[0]["quota"],
        json!(format!("Pages in {month}")),
        "{usage}"
    );
    assert_eq!(usage[0]["cells"], json!(["0", "100"]), "{usage}");
    assert_eq!(usage[0]["meter"], json!("100"), "{usage}");
    assert_eq!(usage[1]["meter"], json!("1048576"), "{usage}");
    assert_eq!(usage[2]["cells"], json!(["0", "no limit"]), "{usage}");
    assert_eq!(usage[2]["meter"], Value::Null, "{usage}");
    browser
        .assert_accessible("the account page with quotas")
        .await;
    // The page says who is signed in, and whether that account administers this install.
    let role = browser
        .js("return document.getElementById('account-role').textContent")
        .await;
    let role = role.as_str().unwrap().to_owned();
    assert!(
        role.contains(&email) && !role.contains("administrator"),
        "{role}"
    );
    {
        use ocrd::db::models::{Role, User};
        let mut conn = install.app.db.get().await.unwrap();
        let user = User::find_by_email(&mut conn, &email)
            .await
            .unwrap()
            .unwrap();
        User::set_role(&mut conn, &user.id, Role::Admin)
            .await
            .unwrap();
    }
    browser.goto("/account").await;
    let role = browser
        .js("return document.getElementById('account-role').textContent")
        .await;
    assert!(
        role.as_str().unwrap().contains("an administrator"),
        "{role}"
    );
    browser
        .until(
            "the token list",
            "return document.getElementById('tokens-state').textContent === 'No tokens yet.'",
        )
        .await;
    browser.fill("#token-name", "scanner").await;
    browser.click("#token-form button[type=submit]").await;
    let token = browser
        .until(
            "the new token",
            "return !document.getElementById('new-token').hidden && \
             document.querySelectorAll('#tokens tbody tr').length === 1 && \
             document.getElementById('new-token-value').textContent",
        )
        .await;
    let token = token.as_str().unwrap().to_owned();
    assert!(token.starts_with("ocrd_"), "{token}");
    // The token works for the API, and the list shows only its first characters.
    let me = reqwest::Client::new()
        .get(format!("{base}/api/auth/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let listed = browser
        .js("return document.querySelector('#tokens tbody').innerText")
        .await;
    let listed = listed.as_str().unwrap();
    assert!(!listed.contains(&token), "the list shows the whole token");
    // What it may do and when it expires (90 days, the form's default).
    assert!(listed.contains("read, write"), "{listed}");
    let expires = browser
        .js("return document.querySelector('#tokens tbody td[data-label=Expires] time').getAttribute('datetime')")
        .await;
    let expires = chrono::DateTime::parse_from_rfc3339(expires.as_str().unwrap()).unwrap();
    let days = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_days();
    assert!((89..=90).contains(&days), "expires in {days} days");

    // Revoking asks first (accepted here), then the token stops working.
    browser.js("window.confirm = () => true; return true").await;
    browser.click("#tokens tbody tr button").await;
    browser
        .until(
            "the token to be gone",
            "return document.querySelectorAll('#tokens tbody tr').length === 0 && \
             !document.getElementById('tokens-state').hidden",
        )
        .await;
    let me = reqwest::Client::new()
        .get(format!("{base}/api/auth/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);
    // The revoked token is no longer offered for copying.
    let shown = browser
        .js("return [document.getElementById('new-token').hidden, document.getElementById('new-token-value').textContent]")
        .await;
    assert_eq!(shown, json!([true, ""]), "the revoked token is still shown");

    // Changing the password keeps this browser signed in with a renewed session.
    browser.fill("#current", PASSWORD).await;
    browser.fill("#new", "another long passphrase").await;
    browser.fill("#confirm", "another long passphrase").await;
    browser.click("#password-form button[type=submit]").await;
    browser
        .until(
            "the password change",
            "return !document.getElementById('password-done').hidden",
        )
        .await;
    // A change after the renewal still passes the CSRF check.
    browser.fill("#token-name", "second").await;
    browser.click("#token-form button[type=submit]").await;
    browser
        .until(
            "a token made with the renewed session",
            "return document.querySelectorAll('#tokens tbody tr').length === 1",
        )
        .await;
    browser.assert_no_console_errors("/account").await;
    let login = reqwest::Client::new()
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": email, "password": "another long passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    browser.close().await;
}

/// Someone else's wrong passwords from this address lock sign-ins from it; registering is not
/// a sign-in attempt, and the new account lands on its dashboard signed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_signs_in_even_when_this_address_is_throttled() {
    let (_install, base, _) = serve(|c| c.auth.login_attempts_per_address = 3).await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = http
            .post(format!("{base}/api/auth/login"))
            .json(&json!({"email": "somebody@example.com", "password": "wrong"}))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let browser = Browser::start(base.clone()).await;
    // Waits for the dashboard, signed in.
    let email = browser.register_new().await;
    let me = browser
        .js("return fetch('/api/auth/me').then((r) => r.json()).then((me) => me.user.email)")
        .await;
    assert_eq!(me, json!(email));
    browser.assert_no_console_errors("/register").await;
    browser.close().await;
}

/// A task that failed because of its file (it cannot be decoded) offers no Retry: running it
/// again ends the same way. One that failed in the engine does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_is_offered_only_where_retrying_can_help() {
    let (install, base, _) = serve(|_| {}).await;
    let browser = Browser::start(base.clone()).await;
    browser.register_new().await;
    let user = browser
        .js("return fetch('/api/auth/me').then((r) => r.json()).then((me) => me.user.id)")
        .await;
    let user = user.as_str().unwrap();
    let mut pages = Vec::new();
    for (code, retry) in [
        ("undecodable", false),
        ("engine_error", true),
        ("encrypted", false),
    ] {
        let task = install
            .submit_bytes_as(user, "page.png", crate::support::tiny_png())
            .await;
        let mut conn = install.app.db.get().await.unwrap();
        let lease = std::time::Duration::from_secs(60);
        Task::claim(&mut conn, &task.id, "w", lease)
            .await
            .unwrap()
            .unwrap();
        Task::fail(&mut conn, &task.id, "w", code, "It failed.")
            .await
            .unwrap()
            .unwrap();
        pages.push((task.id, code, retry));
    }
    for (id, code, retry) in pages {
        browser.goto(&format!("/tasks/{id}")).await;
        browser
            .until(
                "the task's error",
                &format!("return document.getElementById('error-code').textContent === '{code}'"),
            )
            .await;
        let hidden = browser
            .js("return document.getElementById('retry').hidden")
            .await;
        assert_eq!(hidden, json!(!retry), "{code}: Retry shown = {}", !retry);
    }
    browser.assert_no_console_errors("/tasks").await;
    browser.close().await;
}

/// A throttled sign-in says how long to wait, as its Retry-After does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_sign_in_says_how_long_to_wait() {
    let (_install, base, _) = serve(|c| c.auth.login_attempts = 1).await;
    let browser = Browser::start(base.clone()).await;
    browser.goto("/login").await;
    let mut said = Value::Null;
    for attempt in 0..2 {
        browser.fill("#email", "nobody@example.com").await;
        browser.fill("#password", "not the password").await;
        browser.click("#login-form button[type=submit]").await;
        said = browser
            .until(
                "the sign-in error",
                &format!(
                    "const e = document.getElementById('form-error'); \
                     const b = document.querySelector('#login-form button[type=submit]'); \
                     return !e.hidden && !b.disabled && e.textContent.length > 0 && \
                       ({attempt} === 0 || /wait|again/i.test(e.textContent)) && e.textContent"
                ),
            )
            .await;
    }
    let said = said.as_str().unwrap();
    let secs: Vec<u64> = said
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(
        said.contains("try again in") && secs.iter().any(|&s| s > 0),
        "the message does not say how long: {said}"
    );
    browser.close().await;
}

/// /api/docs renders the document's Markdown: the error-code table is a table, code is code,
/// and no raw Markdown (a `pre` block, backticks, table pipes) is left on the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_docs_render_their_markdown() {
    let (_install, base, _) = serve(|_| {}).await;
    let browser = Browser::start(base.clone()).await;
    browser.goto("/api/docs").await;
    browser
        .until(
            "the operations",
            "return document.querySelectorAll('#docs h2').length > 3",
        )
        .await;
    let page = browser
        .js("const docs = document.getElementById('docs'); \
             const codes = [...docs.querySelectorAll('table')].find((t) => \
               t.querySelector('th')?.textContent === 'code'); \
             return {pre: docs.querySelectorAll('pre').length, \
               codeRows: codes ? codes.querySelectorAll('tr td:first-child code').length : 0, \
               backticks: (docs.innerText.match(/`/g) || []).length, \
               pipes: docs.innerText.includes('|---')}")
        .await;
    assert_eq!(page["pre"], json!(0), "{page}");
    assert!(page["codeRows"].as_u64().unwrap() >= 10, "{page}");
    assert_eq!(page["backticks"], json!(0), "{page}");
    assert_eq!(page["pipes"], json!(false), "{page}");
    browser.assert_no_console_errors("/api/docs").await;
    browser.close().await;
}

/// The second pass over the UI (issue 22), on real tasks in every status, with axe-core run
/// over each page and state: uploads keep their order, follow their tasks live and flag a
/// repeat; the dashboard has thumbnails and fits five tasks on a phone; the task page has its
/// details and a Cancel button; the viewer zooms (buttons, fit, Ctrl+wheel, keys, pinch), pans
/// by dragging and hides its boxes; any format downloads, asked for or not, and so does the
/// original file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_and_task_state_is_accessible_and_the_task_tools_work() {
    use fantoccini::actions::{
        InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction, TouchActions,
    };

    let (install, base, _) = serve(|_| {}).await;
    let browser = Browser::start(base.clone()).await;
    let ready = "return document.readyState === 'complete'";
    for (path, state) in [
        ("/login", "the sign-in page"),
        ("/register", "the registration page"),
        ("/reset/not-a-real-token", "the password reset page"),
    ] {
        browser.goto(path).await;
        browser.until(path, ready).await;
        browser.assert_accessible(state).await;
    }
    // The unknown reset link is answered 404, which the console reports; nothing else may.
    let errors = browser.console_errors().await;
    assert!(
        errors
            .iter()
            .all(|e| e.contains("/reset/not-a-real-token") && e.contains("404")),
        "{errors:#?}"
    );
    browser.register_new().await;
    browser
        .until(
            "the empty dashboard",
            "return !document.getElementById('empty').hidden",
        )
        .await;
    browser.assert_accessible("the empty dashboard").await;

    // Files: a real page, a file that claims to be a PNG and is not, a blank page and a copy
    // of it under another name, and two more blank pages to cancel and to hold "processing".
    let dir = tempfile::tempdir().unwrap();
    let blank = |name: &str, height: u32| {
        let path = dir.path().join(name);
        image::RgbImage::from_pixel(96, height, image::Rgb([255, 255, 255]))
            .save(&path)
            .unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (later, held) = (blank("later.png", 40), blank("held.png", 41));
    let (blank_a, blank_copy) = (blank("blank-a.png", 42), dir.path().join("blank-copy.png"));
    std::fs::copy(&blank_a, &blank_copy).unwrap();
    let broken = dir.path().join("broken.png");
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\nnot really a png at all").unwrap();
    let sample = sample_pages()
        .into_iter()
        .next()
        .unwrap()
        .0
        .canonicalize()
        .unwrap();
    let sample_size = std::fs::metadata(&sample).unwrap().len();

    browser.goto("/upload").await;
    browser.until("the upload page", ready).await;
    browser.assert_accessible("the upload page").await;
    let limit = browser
        .js("return document.getElementById('max-size').textContent")
        .await;
    assert!(
        limit.as_str().unwrap().ends_with("MiB"),
        "binary units: {limit}"
    );
    // On a phone, choosing files comes first and the options are folded.
    browser
        .client
        .set_window_size(PHONE.0, PHONE.1)
        .await
        .unwrap();
    browser.goto("/upload").await;
    let phone = browser
        .until(
            "the upload page on a phone",
            "const o = document.getElementById('options-box'); \
             return document.readyState === 'complete' && [o.open, \
               document.getElementById('drop').getBoundingClientRect().bottom <= o.getBoundingClientRect().top]",
        )
        .await;
    assert_eq!(
        phone,
        json!([false, true]),
        "folded options below the file picker"
    );
    browser
        .assert_accessible("the upload page on a phone")
        .await;
    browser
        .client
        .set_window_size(DESKTOP.0, DESKTOP.1)
        .await
        .unwrap();
    browser.goto("/upload").await;
    browser.until("the upload page", ready).await;
    assert_eq!(
        browser
            .js("return document.getElementById('options-box').open")
            .await,
        json!(true),
        "options open on a desktop"
    );
    let pick = |files: Vec<String>| {
        let browser = &browser;
        async move {
            let input = browser.client.find(Locator::Css("#files")).await.unwrap();
            input.send_keys(&files.join("\n")).await.unwrap();
        }
    };
    let settled = |count: usize| {
        format!(
            "const rows = [...document.querySelectorAll('.upload')]; \
             if (rows.length < {count} || rows.some((r) => !r.dataset.taskStatus)) return null; \
             return rows.map((r) => [r.querySelector('.filename').textContent, r.dataset.task, r.dataset.taskStatus]);"
        )
    };
    pick(vec![later, held]).await;
    let rows = browser.until("two queued uploads", &settled(2)).await;
    let (later_id, held_id) = (
        rows[0][1].as_str().unwrap().to_owned(),
        rows[1][1].as_str().unwrap().to_owned(),
    );
    assert_eq!(rows[0][2], json!("queued"), "{rows}");

    // One is held by a worker that never finishes (a long lease): it stays "processing".
    let mut conn = install.app.db.get().await.unwrap();
    Task::claim(
        &mut conn,
        &held_id,
        "held-by-test",
        Duration::from_secs(3600),
    )
    .await
    .unwrap()
    .expect("the queued task is claimed");
    drop(conn);
    browser.goto(&format!("/tasks/{held_id}")).await;
    browser
        .until(
            "a processing task",
            "return document.getElementById('status').dataset.status === 'processing'",
        )
        .await;
    browser.assert_accessible("a processing task").await;

    // The other is cancelled from its page.
    browser.goto(&format!("/tasks/{later_id}")).await;
    browser
        .until(
            "a queued task",
            "return document.getElementById('status').dataset.status === 'queued'",
        )
        .await;
    browser.assert_accessible("a queued task").await;
    browser.click("#cancel").await;
    browser
        .until(
            "the task to be cancelled",
            "return document.getElementById('status').dataset.status === 'cancelled'",
        )
        .await;
    assert_eq!(
        browser
            .js("return document.getElementById('cancel').hidden")
            .await,
        json!(true)
    );
    assert_eq!(
        browser
            .js("return document.getElementById('retry').hidden")
            .await,
        json!(false)
    );
    browser.assert_accessible("a cancelled task").await;

    // Four more in one pick: they keep the order picked, the repeat is flagged with a link to
    // the first, and each row follows its task to the end once a worker runs.
    browser.goto("/upload").await;
    browser.until("the upload page", ready).await;
    pick(vec![
        sample.to_str().unwrap().to_owned(),
        broken.to_str().unwrap().to_owned(),
        blank_a,
        blank_copy.to_str().unwrap().to_owned(),
    ])
    .await;
    let rows = browser.until("four queued uploads", &settled(4)).await;
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap())
        .collect();
    let sample_name = sample.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        names,
        [sample_name, "broken.png", "blank-a.png", "blank-copy.png"]
    );
    let ids: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[1].as_str().unwrap().to_owned())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "tasks queued in the order picked: {ids:?}"
    );
    let repeat = browser
        .js("return [...document.querySelectorAll('.upload')].map((r) => r.querySelector('.upload-note a')?.getAttribute('href') ?? null)")
        .await;
    assert_eq!(
        repeat,
        json!([null, null, null, format!("/tasks/{}", ids[2])])
    );
    let (stop, worker) = start_worker(&install, crate::ocr::engine());
    let ended = browser
        .until(
            "every upload's task to end, followed live",
            "const rows = [...document.querySelectorAll('.upload')]; \
             const states = rows.map((r) => r.dataset.taskStatus); \
             return states.every((s) => s === 'completed' || s === 'failed') && states",
        )
        .await;
    assert_eq!(
        ended,
        json!(["completed", "failed", "completed", "completed"])
    );
    let view = browser
        .js("return document.querySelector('.upload a[href$=\"/view\"]').getAttribute('href')")
        .await;
    assert_eq!(view, json!(format!("/tasks/{}/view", ids[0])));
    browser.screenshots("upload-followed").await;

    // The dashboard: thumbnails of the completed tasks, and at least five rows on a phone.
    browser.goto("/").await;
    browser
        .until(
            "thumbnails of the three completed tasks",
            "return [...document.querySelectorAll('#tasks img.thumb')].filter((i) => i.complete && i.naturalWidth > 0).length >= 3",
        )
        .await;
    browser.assert_accessible("the dashboard with tasks").await;
    browser.screenshots("dashboard-full").await;
    browser
        .client
        .set_window_size(PHONE.0, PHONE.1)
        .await
        .unwrap();
    let visible = browser
        .until(
            "the phone layout",
            "const rows = [...document.querySelectorAll('#tasks tbody tr')]; \
             return rows.length === 6 && window.innerWidth <= 390 \
               && rows.filter((r) => r.getBoundingClientRect().bottom <= 844).length",
        )
        .await;
    assert!(
        visible.as_u64().unwrap() >= 5,
        "{visible} task rows fit on a 390×844 screen"
    );
    browser.assert_accessible("the dashboard on a phone").await;
    browser
        .client
        .set_window_size(DESKTOP.0, DESKTOP.1)
        .await
        .unwrap();

    // The completed page: details, durations, thumbnail; no Cancel.
    browser.goto(&format!("/tasks/{}", ids[0])).await;
    let facts = browser
        .until(
            "the task's details and thumbnail",
            "const t = document.getElementById('thumbnail'); \
             if (t.hidden || !t.naturalWidth) return null; \
             return Object.fromEntries([...document.querySelectorAll('#details dd')].map((d) => [d.dataset.fact, d.textContent]))",
        )
        .await;
    let fact = |name: &str| facts[name].as_str().unwrap_or_default().to_owned();
    assert!(
        fact("File").starts_with("PNG image, ") && fact("File").ends_with("iB"),
        "{facts}"
    );
    assert_eq!(fact("Pages"), "1", "{facts}");
    assert_eq!(fact("Engine"), "ppocr", "{facts}");
    assert_eq!(fact("Formats asked for"), "Text, hOCR, JSON", "{facts}");
    assert!(fact("Mean confidence").ends_with('%'), "{facts}");
    let timeline = browser
        .js("return document.getElementById('timeline').textContent")
        .await;
    let timeline = timeline.as_str().unwrap();
    assert!(
        timeline.contains("queued for") && timeline.contains("processing took"),
        "{timeline}"
    );
    assert_eq!(
        browser
            .js("return document.getElementById('cancel').hidden")
            .await,
        json!(true)
    );
    browser.assert_accessible("a completed task").await;
    browser.screenshots("task").await;
    browser.goto(&format!("/tasks/{}", ids[1])).await;
    browser
        .until(
            "a failed task",
            "return !document.getElementById('error').hidden",
        )
        .await;
    browser.assert_accessible("a failed task").await;

    // The viewer.
    browser.goto(&format!("/tasks/{}/view", ids[0])).await;
    browser
        .until(
            "word boxes",
            "const img = document.getElementById('page-image'); \
             return img.complete && img.naturalWidth > 0 && document.querySelectorAll('#boxes rect.word').length > 20",
        )
        .await;
    browser.assert_accessible("the viewer").await;
    let frame = "const s = document.getElementById('scroll'), f = document.getElementById('frame'); \
                 return {w: f.offsetWidth, h: f.offsetHeight, sw: s.clientWidth, sh: s.clientHeight, \
                   left: s.scrollLeft, top: s.scrollTop, level: document.getElementById('zoom-level').textContent, \
                   width: document.getElementById('fit-width').getAttribute('aria-pressed'), \
                   page: document.getElementById('fit-page').getAttribute('aria-pressed')}";
    let fitted = browser.js(frame).await;
    let num = |v: &Value, k: &str| v[k].as_f64().unwrap();
    assert!(
        (num(&fitted, "w") - (num(&fitted, "sw") - 2.0)).abs() <= 2.0,
        "fits the width: {fitted}"
    );
    assert_eq!(fitted["width"], json!("true"));
    browser.click("#zoom-in").await;
    let zoomed = browser.js(frame).await;
    let ratio = num(&zoomed, "w") / num(&fitted, "w");
    assert!(
        (ratio - 1.25).abs() < 0.02,
        "zoom in ×1.25: {fitted} → {zoomed}"
    );
    assert_eq!(zoomed["width"], json!("false"), "{zoomed}");
    browser.click("#fit-page").await;
    let whole = browser.js(frame).await;
    assert!(
        num(&whole, "h") <= num(&whole, "sh") && num(&whole, "w") <= num(&whole, "sw"),
        "{whole}"
    );
    assert_eq!(whole["page"], json!("true"));
    // Ctrl+wheel zooms about the pointer; the keys zoom and fit.
    let wheel = browser
        .js("const s = document.getElementById('scroll'), r = s.getBoundingClientRect(); \
             const before = document.getElementById('frame').offsetWidth; \
             s.dispatchEvent(new WheelEvent('wheel', {deltaY: -300, ctrlKey: true, bubbles: true, cancelable: true, \
               clientX: r.left + 50, clientY: r.top + 50})); \
             return document.getElementById('frame').offsetWidth / before")
        .await;
    assert!(
        wheel.as_f64().unwrap() > 1.5,
        "Ctrl+wheel zooms in: ×{wheel}"
    );
    let keys = browser
        .js("const press = (key) => document.body.dispatchEvent(new KeyboardEvent('keydown', {key, bubbles: true})); \
             press('w'); const fit = document.getElementById('frame').offsetWidth; \
             press('+'); const bigger = document.getElementById('frame').offsetWidth; \
             press('-'); const back = document.getElementById('frame').offsetWidth; \
             press('0'); return [fit, bigger, back, document.getElementById('fit-page').getAttribute('aria-pressed')]")
        .await;
    let k: Vec<f64> = keys.as_array().unwrap()[..3]
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        k[1] > k[0] * 1.2 && (k[2] - k[0]).abs() <= 2.0,
        "+ and − zoom: {keys}"
    );
    assert_eq!(keys[3], json!("true"), "0 fits the page: {keys}");
    // Dragging with the mouse pans the zoomed page.
    browser
        .js("const z = document.getElementById('zoom-in'); z.click(); z.click(); z.click(); z.click(); z.click(); return true")
        .await;
    let before = browser.js(frame).await;
    let scroll = browser.client.find(Locator::Css("#scroll")).await.unwrap();
    let drag = MouseActions::new("mouse".into())
        .then(PointerAction::MoveToElement {
            element: scroll.clone(),
            duration: None,
            x: 0.0,
            y: 0.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::MoveBy {
            duration: Some(Duration::from_millis(200)),
            x: -120.0,
            y: -150.0,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    browser.client.perform_actions(drag).await.unwrap();
    let after = browser.js(frame).await;
    assert!(
        num(&after, "left") - num(&before, "left") >= 100.0
            && num(&after, "top") - num(&before, "top") >= 100.0,
        "dragging pans: {before} → {after}"
    );
    // Two fingers moving apart zoom in.
    browser.click("#fit-width").await;
    let before = browser.js(frame).await;
    let finger = |id: &str, dx: f64| {
        TouchActions::new(id.into())
            .then(PointerAction::MoveToElement {
                element: scroll.clone(),
                duration: None,
                x: dx,
                y: 0.0,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            })
            .then(PointerAction::MoveBy {
                duration: Some(Duration::from_millis(300)),
                x: dx * 2.0,
                y: 0.0,
            })
            .then(PointerAction::Up {
                button: MOUSE_BUTTON_LEFT,
            })
    };
    browser
        .client
        .perform_actions(vec![finger("one", -40.0), finger("two", 40.0)])
        .await
        .unwrap();
    let after = browser.js(frame).await;
    assert!(
        num(&after, "w") > num(&before, "w") * 1.5,
        "pinching zooms in: {before} → {after}"
    );
    // Hidden boxes stay hidden but for the selected word; B shows them again. Choosing the
    // last word in the image scrolls the text panel to it.
    browser.click("#fit-width").await;
    browser.click("#show-boxes").await;
    let hidden = browser
        .js("return getComputedStyle(document.querySelector('#boxes rect.word')).visibility")
        .await;
    assert_eq!(hidden, json!("hidden"));
    browser
        .js("document.body.dispatchEvent(new KeyboardEvent('keydown', {key: 'b', bubbles: true})); return true")
        .await;
    let shown = browser
        .js("return [getComputedStyle(document.querySelector('#boxes rect.word')).visibility, document.getElementById('show-boxes').checked]")
        .await;
    assert_eq!(shown, json!(["visible", true]));
    browser
        .js("document.querySelector('#boxes rect.word:last-of-type').dispatchEvent(new MouseEvent('click', {bubbles: true})); return true")
        .await;
    let in_view = browser
        .js("const w = document.querySelector('#text .w.selected'), p = document.querySelector('.text-panel'); \
             const a = w.getBoundingClientRect(), b = p.getBoundingClientRect(); \
             return [p.scrollHeight > p.clientHeight, a.top >= b.top && a.bottom <= b.bottom]")
        .await;
    assert_eq!(
        in_view[1],
        json!(true),
        "the selected word is scrolled into the text panel: {in_view}"
    );
    // On a phone the page comes before the downloads, which are one menu.
    browser
        .client
        .set_window_size(PHONE.0, PHONE.1)
        .await
        .unwrap();
    let order = browser
        .until(
            "the phone layout",
            "const m = document.querySelector('.downloads-menu').getBoundingClientRect(); \
             const s = document.getElementById('scroll').getBoundingClientRect(); \
             return window.innerWidth < 500 && [m.top > s.bottom, document.querySelectorAll('.downloads-menu #downloads a').length]",
        )
        .await;
    assert_eq!(
        order,
        json!([true, 6]),
        "menu after the page, with five formats and the original"
    );
    browser.assert_accessible("the viewer on a phone").await;
    browser
        .client
        .set_window_size(DESKTOP.0, DESKTOP.1)
        .await
        .unwrap();
    browser.screenshots("viewer-zoom").await;

    // Formats not asked for are made on first download (and served stored afterwards); the
    // original comes back byte for byte, as an attachment.
    let fetch = |format: &str| {
        format!(
            "return fetch(document.querySelector('#downloads a[data-format={format}]').href) \
             .then(async (r) => {{ const b = new Uint8Array(await r.arrayBuffer()); \
               return [r.status, r.headers.get('content-type'), r.headers.get('content-disposition'), b.length, \
                 new TextDecoder().decode(b.slice(0, 200))]; }})"
        )
    };
    for _ in 0..2 {
        let pdf = browser.js(&fetch("pdf")).await;
        assert_eq!(pdf[0], json!(200), "{pdf}");
        assert!(pdf[4].as_str().unwrap().starts_with("%PDF-"), "{pdf}");
        assert!(pdf[2].as_str().unwrap().starts_with("attachment"), "{pdf}");
    }
    let alto = browser.js(&fetch("xml")).await;
    assert_eq!(alto[0], json!(200), "{alto}");
    assert!(alto[4].as_str().unwrap().contains("<alto"), "{alto}");
    let original = browser.js(&fetch("original")).await;
    assert_eq!(original[0], json!(200), "{original}");
    assert_eq!(original[1], json!("image/png"), "{original}");
    assert_eq!(original[3], json!(sample_size), "{original}");
    assert!(
        original[2]
            .as_str()
            .unwrap()
            .starts_with(&format!("attachment; filename=\"{sample_name}\"")),
        "{original}"
    );

    browser.goto("/account").await;
    browser.until("the account page", ready).await;
    browser.assert_accessible("the account page").await;
    browser
        .assert_no_console_errors("the second-pass journey")
        .await;
    browser.goto("/tasks/no-such-task").await;
    browser.until("the error page", ready).await;
    browser.assert_accessible("the error page").await;

    stop.cancel();
    worker.await.unwrap();
    browser.close().await;
}

/// The operators' console in Chromium: the overview shows the queue and the live worker, the
/// queue pauses (an upload waits) and resumes from a button, a failed task is found by filter
/// and retried to completion live, a bulk action says how many tasks it would touch before it
/// acts, and the audit log lists what happened; axe-core finds nothing on each page. A user
/// gets the 403 page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_runs_the_queue_workers_and_tasks() {
    let (install, base, _) = serve(|c| c.worker.report_secs = 1).await;
    let browser = Browser::start(base.clone()).await;
    let email = browser.register_new().await;
    let operator = {
        let mut conn = install.app.db.get().await.unwrap();
        let user = ocrd::db::models::User::find_by_email(&mut conn, &email)
            .await
            .unwrap()
            .unwrap();
        ocrd::db::models::User::set_role(&mut conn, &user.id, ocrd::db::models::Role::Operator)
            .await
            .unwrap()
    };
    // A failed task of another account, to find and retry.
    let failed = install
        .submit_bytes_as(
            &install.user.id,
            "failed-scan.png",
            crate::support::tiny_png(),
        )
        .await
        .id;
    {
        let mut conn = install.app.db.get().await.unwrap();
        Task::claim(&mut conn, &failed, "w#1", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        Task::fail(&mut conn, &failed, "w#1", "engine_error", "It failed.")
            .await
            .unwrap()
            .unwrap();
    }

    browser.goto("/admin").await;
    browser
        .until(
            "the console's overview",
            "return document.getElementById('queue-pause') && !document.getElementById('queue-pause').hidden",
        )
        .await;
    assert_eq!(
        browser
            .js("return document.querySelector('nav a[href=\"/admin\"]')?.getAttribute('aria-current')")
            .await,
        json!("page")
    );
    let tiles = browser
        .until(
            "the health tiles",
            "const t = [...document.querySelectorAll('#health .tile')]; \
             return t.length >= 4 && t.map((x) => [x.querySelector('strong').textContent, x.dataset.ok])",
        )
        .await;
    for name in ["Database", "Storage", "Queue", "Disk: data_dir"] {
        assert!(
            tiles
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t[0] == name && t[1] == "true"),
            "{name} is not healthy: {tiles}"
        );
    }
    browser
        .assert_accessible("the console without workers")
        .await;
    browser.click("#queue-pause").await;
    browser
        .until(
            "the queue to show paused",
            "return document.getElementById('queue-state').dataset.paused === 'true'",
        )
        .await;
    let (stop, worker) = start_worker(&install, crate::ocr::engine());
    browser
        .until(
            "the live worker",
            "return document.querySelector('#workers tbody tr[data-state=running]') !== null",
        )
        .await;
    let page = std::fs::read(&sample_pages()[0].0).unwrap();
    let waiting = install
        .submit_bytes_as(&operator.id, "waiting.png", page)
        .await
        .id;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        install.task(&waiting).await.status.as_str(),
        "queued",
        "a paused queue starts nothing"
    );
    browser.assert_accessible("the console with a worker").await;
    browser.screenshots("admin").await;
    browser.click("#queue-resume").await;
    install
        .wait_finished(std::slice::from_ref(&waiting), DEADLINE)
        .await;

    // Every task: the failed one by filter, retried, completed live.
    browser.goto("/admin/tasks").await;
    browser
        .until(
            "the task list",
            "return document.querySelectorAll('#tasks tbody tr').length >= 2",
        )
        .await;
    browser.assert_accessible("the console's tasks").await;
    browser
        .client
        .find(Locator::Css("#f-status"))
        .await
        .unwrap()
        .select_by_value("failed")
        .await
        .unwrap();
    browser.click("#filters button[type=submit]").await;
    browser
        .until(
            "the failed task alone",
            &format!(
                "const rows = document.querySelectorAll('#tasks tbody tr'); \
                 return rows.length === 1 && rows[0].dataset.id === '{failed}'"
            ),
        )
        .await;
    browser
        .click(&format!("button[data-retry='{failed}']"))
        .await;
    browser
        .until(
            "the retried task to complete, live",
            &format!(
                "return document.querySelector(\"#tasks tbody tr[data-id='{failed}']\")?.dataset.status === 'completed'"
            ),
        )
        .await;

    // A bulk action says how many tasks it would touch, and nothing happens when declined.
    browser
        .client
        .find(Locator::Css("#f-status"))
        .await
        .unwrap()
        .select_by_value("completed")
        .await
        .unwrap();
    browser.click("#bulk-run").await;
    let text = browser
        .until(
            "the bulk confirmation",
            "const d = document.getElementById('confirm-bulk'); return d.open && document.getElementById('confirm-bulk-text').textContent",
        )
        .await;
    assert_eq!(
        text,
        json!("This will retry 2 tasks matching the filters."),
        "{text}"
    );
    browser.assert_accessible("the bulk confirmation").await;
    browser.click("#confirm-bulk button[value=cancel]").await;
    browser.screenshots("admin-tasks").await;

    // The audit log has it all.
    browser.goto("/admin/audit").await;
    let actions = browser
        .until(
            "the audit log",
            "const rows = [...document.querySelectorAll('#audit tbody tr')]; \
             return rows.length > 0 && rows.map((r) => r.dataset.action)",
        )
        .await;
    for action in ["register", "queue.pause", "queue.resume", "task.retry"] {
        assert!(
            actions.as_array().unwrap().iter().any(|a| a == action),
            "{action} missing from {actions}"
        );
    }
    browser.assert_accessible("the audit log").await;
    browser.assert_no_console_errors("the console").await;

    // A user is turned away.
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    crate::support::register_and_sign_in(
        &base,
        &client,
        &format!("{}@example.com", unique("plain")),
    )
    .await;
    let refused = client
        .get(format!("{base}/admin"))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    stop.cancel();
    worker.await.unwrap();
    browser.close().await;
}

/// An admin, in the browser: cancels a running 10-page PDF (its worker stops within 5 s of the
/// click), lowers the upload limit on the settings page (the upload page refuses a larger file
/// at once, no restart), disables an account whose open session is refused on its next
/// request, and finds all of it in the audit log, which `ocrd admin audit verify` passes until
/// a row is edited. Screenshots of the task, settings, users and logs pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_cancels_a_long_task_lowers_the_upload_limit_and_disables_an_account() {
    // Small renders: pages go by quickly, so the cancel lands mid-document.
    let (install, base, _) = serve(|c| {
        c.ocr.pdf_dpi = 100;
        c.worker.report_secs = 1;
    })
    .await;
    let browser = Browser::start(base.clone()).await;
    let email = browser.register_new().await;
    {
        let mut conn = install.app.db.get().await.unwrap();
        let user = ocrd::db::models::User::find_by_email(&mut conn, &email)
            .await
            .unwrap()
            .unwrap();
        ocrd::db::models::User::set_role(&mut conn, &user.id, ocrd::db::models::Role::Admin)
            .await
            .unwrap();
    }

    // 1. A running 10-page PDF, cancelled from its console page.
    let images: Vec<image::RgbImage> = sample_pages()
        .into_iter()
        .cycle()
        .take(10)
        .map(|(path, _)| image::open(path).unwrap().to_rgb8())
        .collect();
    let pdf = crate::pdf::image_pdf(&images, 300.0);
    let long = install.submit_bytes("ten-pages.pdf", pdf).await.id;
    let (stop, worker) = start_worker(&install, crate::ocr::engine());
    wait_for(DEADLINE, "the first page of the PDF", || async {
        let task = install.task(&long).await;
        (task.status.as_str() == "processing" && task.pages_done >= 1).then_some(())
    })
    .await;
    browser.goto(&format!("/admin/tasks/{long}")).await;
    browser
        .until(
            "the task's page with its timeline",
            "return !document.getElementById('task-cancel').hidden && document.querySelectorAll('#steps tr[data-kind=page]').length >= 1",
        )
        .await;
    browser.assert_accessible("the console's task page").await;
    browser.screenshots("admin-task").await;
    browser.click("#task-cancel").await;
    let clicked = std::time::Instant::now();
    let root = install.temp_root();
    wait_for(
        Duration::from_secs(5),
        "the worker to stop the cancelled task",
        || async {
            let task = install.task(&long).await;
            let idle = std::fs::read_dir(&root).map_or(true, |mut d| d.next().is_none());
            (task.status.as_str() == "cancelled" && idle).then_some(())
        },
    )
    .await;
    let stopped_after = clicked.elapsed();
    let done = install.task(&long).await.pages_done;
    assert!(done < 10, "cancelled mid-document, after {done} pages");
    println!("cancel: stopped {stopped_after:?} after the click, at page {done} of 10");
    browser
        .until(
            "the timeline to show the cancel, live",
            "return document.querySelector('#steps tr[data-kind=cancelled]') !== null",
        )
        .await;

    // 2. A lower upload limit applies to the upload page at once.
    browser.goto("/admin/settings").await;
    browser
        .until(
            "the settings",
            "return !document.getElementById('settings').hidden",
        )
        .await;
    browser.assert_accessible("the settings page").await;
    browser.screenshots("admin-settings").await;
    browser
        .fill("#setting-limits-max_upload_bytes", "100000")
        .await;
    browser.click("#settings button[type=submit]").await;
    browser
        .until(
            "the override to show",
            "return document.querySelector('.setting[data-key=\"limits.max_upload_bytes\"]').dataset.overridden === 'true'",
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.png");
    std::fs::copy(&sample_pages()[0].0, &big).unwrap();
    assert!(std::fs::metadata(&big).unwrap().len() > 100_000);
    browser.goto("/upload").await;
    let input = browser.client.find(Locator::Css("#files")).await.unwrap();
    input.send_keys(big.to_str().unwrap()).await.unwrap();
    let refused = browser
        .until(
            "the upload page to refuse the file",
            "const row = document.querySelector('.upload'); \
             return row && row.dataset.state === 'error' && row.querySelector('.upload-status').textContent",
        )
        .await;
    assert!(refused.as_str().unwrap().contains("Too large"), "{refused}");

    // 3. A disabled account's open session is refused on its next request.
    let someone = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let someone_email = format!("{}@example.com", unique("someone"));
    crate::support::register_and_sign_in(&base, &someone, &someone_email).await;
    assert_eq!(
        someone
            .get(format!("{base}/api/tasks"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    browser.goto("/admin/users").await;
    let row = format!("#users tbody tr[data-email='{someone_email}']");
    browser
        .until(
            "the account in the list",
            &format!("return document.querySelector(\"{row}\") !== null"),
        )
        .await;
    browser.assert_accessible("the users page").await;
    browser.screenshots("admin-users").await;
    // The account's own quotas, set in the row's form: 50 pages a month, 2 MiB an upload.
    browser.click(&format!("{row} details.quota summary")).await;
    browser
        .fill(&format!("{row} input[name=pages_per_month]"), "50")
        .await;
    browser
        .fill(&format!("{row} input[name=max_upload_bytes]"), "2")
        .await;
    browser
        .click(&format!("{row} form[data-quota] button[type=submit]"))
        .await;
    browser
        .until(
            "the quotas saved",
            &format!(
                "return document.querySelector(\"{row} details.quota summary\")?.textContent \
                 === 'Pages a month: 50, Largest upload MiB: 2'"
            ),
        )
        .await;
    {
        let mut conn = install.app.db.get().await.unwrap();
        let someone_id = ocrd::db::models::User::find_by_email(&mut conn, &someone_email)
            .await
            .unwrap()
            .unwrap()
            .id;
        let own = ocrd::quota::overrides(&mut conn, &[&someone_id])
            .await
            .unwrap()[&someone_id];
        assert_eq!(
            (own.pages_per_month, own.max_upload_bytes, own.stored_bytes),
            (Some(50), Some(2 << 20), None)
        );
    }
    browser.click(&format!("{row} button[data-disable]")).await;
    browser
        .until(
            "the account to show disabled",
            &format!("return document.querySelector(\"{row}\")?.dataset.disabled === 'true'"),
        )
        .await;
    assert_eq!(
        someone
            .get(format!("{base}/api/tasks"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // The logs page lists the worker's records (kept by the layer every ocrd process installs;
    // this test's in-process server needs it installed here).
    crate::support::keep_logs();
    tracing::info!(target: "ocrd::browser_test", task = %long, "a record for the logs page");
    browser.goto("/admin/logs").await;
    browser
        .until(
            "log records",
            "return document.querySelectorAll('#logs tbody tr').length > 0",
        )
        .await;
    browser.assert_accessible("the logs page").await;
    browser.screenshots("admin-logs").await;

    // 4. The audit log has every step; verify passes, then names an edited row.
    browser.goto("/admin/audit").await;
    let actions = browser
        .until(
            "the audit log",
            "const rows = [...document.querySelectorAll('#audit tbody tr')]; \
             return rows.length > 0 && rows.map((r) => r.dataset.action)",
        )
        .await;
    for action in ["task.cancel", "settings.update", "user.update"] {
        assert!(
            actions.as_array().unwrap().iter().any(|a| a == action),
            "{action} missing from {actions}"
        );
    }
    browser
        .assert_no_console_errors("the admin's journey")
        .await;
    let verify = || {
        install
            .ocrd_command()
            .args(["admin", "audit", "verify"])
            .output()
            .unwrap()
    };
    let passed = verify();
    assert!(
        passed.status.success(),
        "{}",
        String::from_utf8_lossy(&passed.stderr)
    );
    let row: i64 = {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use ocrd::db::schema::audit_log;
        let mut conn = install.app.db.get().await.unwrap();
        let seq: i64 = ocrd::with_conn!(&mut conn, |c| audit_log::table
            .filter(audit_log::action.eq("settings.update"))
            .select(audit_log::seq)
            .first(c)
            .await)
        .unwrap();
        let edit =
            diesel::update(audit_log::table.find(seq)).set(audit_log::actor.eq("someone else"));
        ocrd::with_conn!(&mut conn, |c| edit.execute(c).await).unwrap();
        seq
    };
    let failed = verify();
    assert!(!failed.status.success());
    let said = String::from_utf8_lossy(&failed.stderr);
    assert!(said.contains(&format!("row {row}")), "{said}");
    stop.cancel();
    worker.await.unwrap();
    browser.close().await;
}
