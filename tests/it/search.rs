//! Full-text search over results, on both backends: hits, phrases, prefixes, exclusions, OR,
//! snippets, paging, scoping (one account never sees another's text, by hit or by snippet),
//! hostile queries, the admins' search (audited), deletion, reindexing and the upgrade that
//! indexes the results made before search existed.

use std::time::Duration;

use diesel::sql_types::{BigInt, Text};
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use ocrd::db::DbConn;
use ocrd::db::models::{BlobKeys, NewTaskResult, Role, Task};
use serde_json::Value;

use crate::admin::{Caller, served};
use crate::install::Install;

/// A task of `owner`'s, completed with `text` as its result (pages split by form feeds),
/// through the same `Task::complete` a worker calls.
async fn completed(install: &Install, owner: &str, name: &str, text: &str) -> String {
    let task = install
        .submit_bytes_as(owner, name, crate::support::tiny_png())
        .await;
    let mut conn = install.app.db.get().await.unwrap();
    Task::claim(&mut conn, &task.id, "w#1", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("the task is claimed");
    let result = NewTaskResult {
        user_id: owner.to_owned(),
        blob_keys: BlobKeys::default(),
        page_count: text.split('\u{c}').count() as i32,
        mean_confidence: None,
        text: text.to_owned(),
        text_layer_pages: 0,
    };
    Task::complete(&mut conn, &task.id, "w#1", result, &[])
        .await
        .unwrap()
        .expect("the task completes");
    task.id
}

async fn search(caller: &Caller, base: &str, path: &str, q: &str, extra: &str) -> (u16, Value) {
    let url = reqwest::Url::parse_with_params(&format!("{base}{path}"), [("q", q)]).unwrap();
    let response = caller.get(format!("{url}{extra}")).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// `(task id, page)` of each hit.
fn pages(body: &Value) -> Vec<(String, i64)> {
    body["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits in {body}"))
        .iter()
        .map(|h| {
            (
                h["task_id"].as_str().unwrap().to_owned(),
                h["page"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// A hit's snippet as text, matches in [brackets].
fn snippet(hit: &Value) -> String {
    hit["snippet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let text = s["text"].as_str().unwrap();
            if s["match"].as_bool().unwrap() {
                format!("[{text}]")
            } else {
                text.to_owned()
            }
        })
        .collect()
}

/// The words a snippet marks (a phrase may be marked as one piece or word by word).
fn marked(hit: &Value) -> Vec<String> {
    hit["snippet"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["match"].as_bool().unwrap())
        .flat_map(|s| {
            s["text"]
                .as_str()
                .unwrap()
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Rows of `search_pages` for a task, and on SQLite the index's entries for a word as well
/// (an external-content FTS5 table could keep entries its rows lost).
async fn indexed(install: &Install, task_id: &str, word: &str) -> i64 {
    let mut conn = install.app.db.get().await.unwrap();
    let rows: Count = match &mut conn {
        DbConn::Postgres(c) => diesel::sql_query(
            "SELECT count(*) AS n FROM search_pages WHERE task_id = $1 OR tsv @@ plainto_tsquery('simple', $2)",
        )
        .bind::<Text, _>(task_id)
        .bind::<Text, _>(word)
        .get_result(&mut **c)
        .await
        .unwrap(),
        DbConn::Sqlite(c) => diesel::sql_query(
            "SELECT (SELECT count(*) FROM search_pages WHERE task_id = ?) \
                  + (SELECT count(*) FROM search_fts WHERE search_fts MATCH ?) AS n",
        )
        .bind::<Text, _>(task_id)
        .bind::<Text, _>(format!("\"{word}\""))
        .get_result(&mut **c)
        .await
        .unwrap(),
    };
    rows.n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_finds_words_phrases_and_prefixes_and_only_the_callers_own() {
    for install in [
        Install::embedded(|_| {}).await,
        Install::distributed(|_| {}).await,
    ] {
        let base = served(&install).await;
        let alice = Caller::new(&install, &base, Role::User).await;
        let bob = Caller::new(&install, &base, Role::User).await;
        let admin = Caller::new(&install, &base, Role::Admin).await;
        let invoice = completed(
            &install,
            &alice.id,
            "invoice-4711.png",
            "Invoice number 4711\nACME Corporation\nNet total 120.50 EUR\u{c}\
             Second page: delivery note for the warehouse\u{c}\u{c}Fourth page",
        )
        .await;
        let receipt = completed(
            &install,
            &alice.id,
            "receipt.png",
            "Receipt from the bakery\nbread and butter",
        )
        .await;
        let secret = completed(
            &install,
            &bob.id,
            "globex.png",
            "Invoice from Globex about project zeta, net total 99",
        )
        .await;
        let own = |q: &'static str| search(&alice, &base, "/api/search", q, "");

        // Words, case-insensitive, on the page they are on; the snippet marks them.
        let (status, body) = own("INVOICE").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(pages(&body), [(invoice.clone(), 1)], "{body}");
        let hit = &body["hits"][0];
        assert_eq!(hit["filename"], "invoice-4711.png");
        assert_eq!(hit["user_id"], alice.id.as_str());
        assert!(hit["task_created_at"].as_str().unwrap().ends_with('Z'));
        assert!(snippet(hit).contains("[Invoice] number 4711"), "{hit}");
        assert_eq!(body["terms"], serde_json::json!(["invoice"]));
        assert_eq!(body["next_cursor"], Value::Null);
        // Every word must appear, anywhere on the page.
        assert_eq!(pages(&own("eur acme").await.1), [(invoice.clone(), 1)]);
        assert!(pages(&own("acme bakery").await.1).is_empty());
        // Phrases, in order.
        let (_, body) = own("\"net total\"").await;
        assert_eq!(pages(&body), [(invoice.clone(), 1)]);
        assert_eq!(marked(&body["hits"][0]), ["Net", "total"], "{body}");
        assert!(pages(&own("\"total net\"").await.1).is_empty());
        // Prefixes, on the page they are on; a word is whole without the star.
        let (_, body) = own("warehou*").await;
        assert_eq!(pages(&body), [(invoice.clone(), 2)]);
        assert_eq!(body["terms"], serde_json::json!(["warehou*"]));
        assert!(snippet(&body["hits"][0]).contains("[warehouse]"), "{body}");
        assert!(pages(&own("warehou").await.1).is_empty());
        // Exclusions and alternatives.
        assert!(pages(&own("invoice -acme").await.1).is_empty());
        assert_eq!(pages(&own("bread -acme").await.1), [(receipt.clone(), 1)]);
        let (_, both) = own("bakery OR delivery").await;
        let mut found = pages(&both);
        found.sort();
        let mut expected = vec![(invoice.clone(), 2), (receipt.clone(), 1)];
        expected.sort();
        assert_eq!(found, expected);
        // Numbers with punctuation are found as written.
        assert_eq!(pages(&own("120.50").await.1), [(invoice.clone(), 1)]);

        // Pages of one: no hit twice, none lost, the last page says so.
        let first = search(
            &alice,
            &base,
            "/api/search",
            "bakery OR delivery",
            "&limit=1",
        )
        .await
        .1;
        assert_eq!(first["next_cursor"], "1", "{first}");
        let second = search(
            &alice,
            &base,
            "/api/search",
            "bakery OR delivery",
            "&limit=1&cursor=1",
        )
        .await
        .1;
        assert_eq!(second["next_cursor"], Value::Null, "{second}");
        assert_eq!([pages(&first), pages(&second)].concat(), pages(&both));

        // Scoping: Bob's words are not Alice's to find, nor Alice's his, by hit or snippet.
        for q in ["globex", "zeta", "\"project zeta\"", "glob*"] {
            let (status, body) = own(q).await;
            assert_eq!(status, 200);
            assert!(pages(&body).is_empty(), "{q}: {body}");
        }
        // Account ids are not words of the text: neither one's own nor another's finds pages.
        for id in [&alice.id, &bob.id] {
            let (status, body) = search(&alice, &base, "/api/search", id, "").await;
            assert_eq!(status, 200);
            assert!(pages(&body).is_empty(), "{id}: {body}");
        }
        let (_, body) = search(
            &bob,
            &base,
            "/api/search",
            "invoice OR acme OR warehouse",
            "",
        )
        .await;
        assert_eq!(pages(&body), [(secret.clone(), 1)], "{body}");
        let shown = body["hits"].to_string();
        assert!(
            !shown.to_lowercase().contains("acme") && !shown.contains("invoice-4711"),
            "{body}"
        );

        // Admins search everyone's, and each such search is audited; a user may not.
        let (status, body) = search(&admin, &base, "/api/admin/search", "invoice", "").await;
        assert_eq!(status, 200, "{body}");
        let mut found = pages(&body);
        found.sort();
        let mut expected = vec![(invoice.clone(), 1), (secret.clone(), 1)];
        expected.sort();
        assert_eq!(found, expected);
        let (status, _) = search(&alice, &base, "/api/admin/search", "invoice", "").await;
        assert_eq!(status, 403);
        let audit: Value = admin
            .get(format!("{base}/api/admin/audit?action=search.all"))
            .await
            .json()
            .await
            .unwrap();
        let entries = audit["entries"].as_array().expect("audit entries");
        assert_eq!(entries.len(), 1, "{audit}");
        let detail: Value = serde_json::from_str(entries[0]["detail"].as_str().unwrap()).unwrap();
        assert_eq!(detail["q"], "invoice", "{audit}");

        // Bad requests are refused with a sentence; hostile ones are plain words.
        for (q, extra, needle) in [
            ("", "", "Type a word"),
            ("   ", "", "Type a word"),
            ("\"", "", "Type a word"),
            ("* ... ?!", "", "Type a word"),
            ("-acme", "", "not only words to leave out"),
            ("invoice", "&limit=0", "limit"),
            ("invoice", "&limit=51", "limit"),
            ("invoice", "&cursor=abc", "cursor"),
            ("invoice", "&cursor=-1", "cursor"),
            ("invoice", "&cursor=12345", "cursor"),
        ] {
            let (status, body) = search(&alice, &base, "/api/search", q, extra).await;
            assert_eq!(status, 400, "{q:?}{extra}: {body}");
            assert_eq!(body["error"]["code"], "invalid_request");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                message.to_lowercase().contains(&needle.to_lowercase()),
                "{q:?}{extra}: {message}"
            );
        }
        let long = "w".repeat(257);
        let (status, body) = search(&alice, &base, "/api/search", &long, "").await;
        assert_eq!(status, 400, "{body}");
        for q in [
            "NEAR(invoice acme)",
            "body:invoice",
            "invoice\"",
            "inv*oice",
            "') OR 1=1 --",
            "invoice\u{0}acme",
            "!!invoice & | <->",
            "OR OR invoice",
            "ünïcödé 漢字 😀",
        ] {
            let (status, body) = own(q).await;
            assert_eq!(status, 200, "{q:?}: {body}");
            assert!(body["hits"].is_array(), "{q:?}: {body}");
        }
        // A cursor beyond the ranked matches is an empty page, not an error.
        let (status, body) = search(&alice, &base, "/api/search", "invoice", "&cursor=9999").await;
        assert_eq!((status, pages(&body).len()), (200, 0), "{body}");

        // Deleting a task takes its pages out of the index.
        assert!(indexed(&install, &invoice, "acme").await >= 2);
        let deleted = alice
            .client
            .delete(format!("{base}/api/tasks/{invoice}"))
            .header("X-CSRF-Token", &alice.csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), 204);
        assert_eq!(indexed(&install, &invoice, "acme").await, 0);
        assert!(pages(&own("invoice OR warehouse").await.1).is_empty());
        assert_eq!(pages(&own("bakery").await.1), [(receipt.clone(), 1)]);
    }
}

/// `ocrd admin search reindex` rebuilds the index from the results (rows lost or edited by
/// hand come back as they should be), and the upgrade to search indexes the results made
/// before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reindex_and_the_upgrade_index_what_the_results_hold() {
    for install in [
        Install::embedded(|_| {}).await,
        Install::distributed(|_| {}).await,
    ] {
        let base = served(&install).await;
        let alice = Caller::new(&install, &base, Role::User).await;
        let mut ids = Vec::new();
        for n in 0..3 {
            let text = format!("Ledger {n}\nquarterly figures\u{c}appendix {n} with tables");
            ids.push(completed(&install, &alice.id, &format!("ledger-{n}.png"), &text).await);
        }
        let found = |q: &'static str| {
            let (alice, base) = (&alice, &base);
            async move {
                let (status, body) = search(alice, base, "/api/search", q, "").await;
                assert_eq!(status, 200, "{body}");
                pages(&body).len()
            }
        };
        assert_eq!(found("quarterly").await, 3);
        assert_eq!(found("appendix").await, 3);

        // Rows lost, and one edited by hand.
        {
            let mut conn = install.app.db.get().await.unwrap();
            let (lose, edit) = (
                format!("DELETE FROM search_pages WHERE task_id <> '{}'", ids[0]),
                format!(
                    "UPDATE search_pages SET body = 'vandalised' WHERE task_id = '{}' AND page = 1",
                    ids[0]
                ),
            );
            match &mut conn {
                DbConn::Postgres(c) => c.batch_execute(&format!("{lose}; {edit}")).await.unwrap(),
                DbConn::Sqlite(c) => c.batch_execute(&format!("{lose}; {edit}")).await.unwrap(),
            }
        }
        assert_eq!(found("quarterly").await, 0);
        assert_eq!(found("appendix").await, 1);
        assert_eq!(found("vandalised").await, 1);
        let out = install.run_ocrd(&["admin", "search", "reindex"]);
        assert!(out.contains("reindexed 6 pages of 3 results"), "{out}");
        assert_eq!(found("quarterly").await, 3);
        assert_eq!(found("appendix").await, 3);
        assert_eq!(found("vandalised").await, 0);
        let stats: Value =
            serde_json::from_str(&install.run_ocrd(&["admin", "search", "stats"])).unwrap();
        assert_eq!(stats["pages"], 6, "{stats}");
        assert!(stats["text_bytes"].as_i64().unwrap() > 100, "{stats}");
        assert!(stats["index_bytes"].as_i64().unwrap() > 0, "{stats}");

        // The upgrade: undo the search migration (its own down.sql), then migrate again.
        let backend = match install.app.db.get().await.unwrap() {
            DbConn::Postgres(_) => "postgres",
            DbConn::Sqlite(_) => "sqlite",
        };
        let down = std::fs::read_to_string(format!(
            "{}/migrations/{backend}/2026-12-10-000001_search/down.sql",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let forget = format!(
            "{down}; DELETE FROM __diesel_schema_migrations WHERE version = '20261210000001'"
        );
        match &mut install.app.db.get().await.unwrap() {
            DbConn::Postgres(c) => c.batch_execute(&forget).await.unwrap(),
            DbConn::Sqlite(c) => c.batch_execute(&forget).await.unwrap(),
        }
        let applied = install.app.db.migrate().await.unwrap();
        assert_eq!(applied, ["20261210000001"]);
        assert_eq!(found("quarterly").await, 3);
        assert_eq!(found("appendix").await, 3);
    }
}
