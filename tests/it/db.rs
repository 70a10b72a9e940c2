//! The data layer, on PostgreSQL and SQLite alike.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use ocrd::db::models::*;
use ocrd::db::{DbConn, DbError};
use ocrd::with_conn;

use crate::both_backends;
use crate::support::TestDb;

async fn user(conn: &mut DbConn, email: &str) -> User {
    User::create(
        conn,
        NewUser {
            email,
            password_hash: "$argon2id$test",
            role: Role::User,
        },
    )
    .await
    .unwrap()
}

fn new_file(user: &User) -> NewFile {
    let id = new_id();
    File {
        blob_key: format!("uploads/{}/2026/11/29/{id}/scan.png", user.id),
        id,
        user_id: user.id.clone(),
        filename: "scan.png".into(),
        content_type: "image/png".into(),
        size_bytes: 1234,
        sha256: "ab".repeat(32),
        page_count: None,
        created_at: now(),
    }
}

fn new_task(key: Option<&str>) -> NewTask<'_> {
    NewTask {
        engine: "ppocr",
        options: r#"{"formats":["txt"]}"#,
        priority: 0,
        max_attempts: 3,
        idempotency_key: key,
        retention_days: None,
        callback: None,
    }
}

async fn queued_task(conn: &mut DbConn, owner: &User) -> Task {
    let (task, created) = Task::create(conn, &new_file(owner), new_task(None))
        .await
        .unwrap();
    assert!(created);
    task
}

fn result_for(owner: &User) -> NewTaskResult {
    NewTaskResult {
        user_id: owner.id.clone(),
        blob_keys: BlobKeys(BTreeMap::from([(
            "txt".to_string(),
            "results/x/result.txt".to_string(),
        )])),
        page_count: 1,
        mean_confidence: Some(0.97),
        text: "hello".into(),
        text_layer_pages: 0,
    }
}

both_backends! {
    async fn users_insert_get_list_and_update(db: &TestDb) {
        let mut conn = db.pool.get().await.unwrap();
        let alice = user(&mut conn, "  Alice@Example.COM ").await;
        assert_eq!(alice.email, "alice@example.com");
        assert_eq!(alice.role, Role::User);
        assert!(!alice.disabled);

        let found = User::find(&mut conn, &alice.id).await.unwrap();
        assert_eq!(found.email, alice.email);
        let by_email = User::find_by_email(&mut conn, "ALICE@example.com").await.unwrap();
        assert_eq!(by_email.map(|u| u.id), Some(alice.id.clone()));
        assert!(User::find_by_email(&mut conn, "nobody@example.com").await.unwrap().is_none());
        assert!(matches!(User::find(&mut conn, "missing").await, Err(DbError::NotFound)));

        let bob = user(&mut conn, "bob@example.com").await;
        let all = User::list(&mut conn, 10, None).await.unwrap();
        assert_eq!(all.iter().map(|u| &u.id).collect::<Vec<_>>(), [&alice.id, &bob.id]);
        let after_alice = User::list(&mut conn, 10, Some(&alice.id)).await.unwrap();
        assert_eq!(after_alice.len(), 1);
        assert_eq!(User::count(&mut conn).await.unwrap(), 2);

        assert_eq!(User::set_role(&mut conn, &bob.id, Role::Admin).await.unwrap().role, Role::Admin);
        assert!(User::set_disabled(&mut conn, &bob.id, true).await.unwrap().disabled);
        User::set_password_hash(&mut conn, &bob.id, "$argon2id$new").await.unwrap();
        assert_eq!(User::find(&mut conn, &bob.id).await.unwrap().password_hash, "$argon2id$new");
        assert!(matches!(
            User::set_password_hash(&mut conn, "missing", "x").await,
            Err(DbError::NotFound)
        ));
    }

    async fn user_email_is_unique_in_any_case(db: &TestDb) {
        let mut conn = db.pool.get().await.unwrap();
        user(&mut conn, "carol@example.com").await;
        let again = User::create(
            &mut conn,
            NewUser { email: "CAROL@Example.com", password_hash: "x", role: Role::User },
        )
        .await;
        assert!(matches!(again, Err(DbError::Conflict("email"))), "{again:?}");

        // The database enforces it too, whatever the code above it does.
        let raw = with_conn!(&mut conn, |c| diesel::sql_query(
            "INSERT INTO users (id, email, password_hash, role, disabled, created_at, updated_at) \
             VALUES ('raw', 'Carol@EXAMPLE.com', 'x', 'user', false, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
        )
        .execute(c)
        .await);
        assert!(raw.is_err(), "a mixed-case duplicate email was accepted");
    }

    async fn api_tokens_authenticate_expire_and_revoke(db: &TestDb) {
        let mut conn = db.pool.get().await.unwrap();
        let dave = user(&mut conn, "dave@example.com").await;
        let erin = user(&mut conn, "erin@example.com").await;
        let token = ApiToken::create(&mut conn, NewApiToken {
            user_id: &dave.id, name: "ci", prefix: "ocrd_ab", token_hash: "hash-1", expires_at: None, scopes: "read,write",
        }).await.unwrap();
        assert!(token.last_used_at.is_none());
        ApiToken::create(&mut conn, NewApiToken {
            user_id: &dave.id, name: "old", prefix: "ocrd_cd", token_hash: "hash-2",
            expires_at: Some(now() - chrono::TimeDelta::minutes(1)), scopes: "read",
        }).await.unwrap();
        let dup = ApiToken::create(&mut conn, NewApiToken {
            user_id: &erin.id, name: "dup", prefix: "ocrd_ab", token_hash: "hash-1", expires_at: None, scopes: "read,write",
        }).await;
        assert!(matches!(dup, Err(DbError::Conflict("token"))), "{dup:?}");

        let (found, owner) = ApiToken::authenticate(&mut conn, "hash-1").await.unwrap().unwrap();
        assert_eq!((found.id.as_str(), owner.id.as_str()), (token.id.as_str(), dave.id.as_str()));
        assert!(ApiToken::authenticate(&mut conn, "hash-2").await.unwrap().is_none(), "expired token accepted");
        assert!(ApiToken::authenticate(&mut conn, "nope").await.unwrap().is_none());

        ApiToken::touch(&mut conn, &token.id).await.unwrap();
        let listed = ApiToken::list_for_user(&mut conn, &dave.id).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().find(|t| t.id == token.id).unwrap().last_used_at.is_some());

        User::set_disabled(&mut conn, &dave.id, true).await.unwrap();
        assert!(ApiToken::authenticate(&mut conn, "hash-1").await.unwrap().is_none(), "disabled user's token accepted");

        // Another user cannot revoke it; its owner can.
        assert!(matches!(ApiToken::delete(&mut conn, &erin.id, &token.id).await, Err(DbError::NotFound)));
        ApiToken::delete(&mut conn, &dave.id, &token.id).await.unwrap();
        assert_eq!(ApiToken::list_for_user(&mut conn, &dave.id).await.unwrap().len(), 1);
    }

    async fn files_and_tasks_insert_get_list(db: &TestDb) {
        let mut conn = db.pool.get().await.unwrap();
        let frank = user(&mut conn, "frank@example.com").await;
        let grace = user(&mut conn, "grace@example.com").await;
        let file = new_file(&frank);
        let (task, created) = Task::create(&mut conn, &file, new_task(None)).await.unwrap();
        assert!(created);
        assert_eq!(task.status, TaskStatus::Queued);
        assert_eq!((task.attempts, task.pages_done, task.max_attempts), (0, 0, 3));
        assert_eq!(task.file_id, file.id);

        let stored = File::find(&mut conn, &file.id).await.unwrap();
        assert_eq!((stored.size_bytes, stored.sha256.as_str()), (1234, file.sha256.as_str()));
        File::set_page_count(&mut conn, &file.id, 5).await.unwrap();
        assert_eq!(File::find(&mut conn, &file.id).await.unwrap().page_count, Some(5));

        assert_eq!(Task::find(&mut conn, &task.id).await.unwrap().id, task.id);
        assert_eq!(Task::find_for_user(&mut conn, &frank.id, &task.id).await.unwrap().id, task.id);
        assert!(
            matches!(Task::find_for_user(&mut conn, &grace.id, &task.id).await, Err(DbError::NotFound)),
            "another user's task must look absent"
        );

        // Newest first, paged by cursor, filtered by status.
        let second = queued_task(&mut conn, &frank).await;
        let third = queued_task(&mut conn, &frank).await;
        queued_task(&mut conn, &grace).await;
        let page = Task::list_for_user(&mut conn, &frank.id, None, 2, None).await.unwrap();
        assert_eq!(page.iter().map(|t| &t.id).collect::<Vec<_>>(), [&third.id, &second.id]);
        let rest = Task::list_for_user(&mut conn, &frank.id, None, 2, Some(&second.id)).await.unwrap();
        assert_eq!(rest.iter().map(|t| &t.id).collect::<Vec<_>>(), [&task.id]);
        Task::cancel(&mut conn, &second.id).await.unwrap().unwrap();
        let cancelled = Task::list_for_user(&mut conn, &frank.id, Some(TaskStatus::Cancelled), 10, None)
            .await
            .unwrap();
        assert_eq!(cancelled.iter().map(|t| &t.id).collect::<Vec<_>>(), [&second.id]);
        assert_eq!(Task::queued_ids(&mut conn, ocrd::db::models::now() + chrono::TimeDelta::seconds(1), 10).await.unwrap().len(), 3);
    }

    async fn idempotency_key_is_unique_per_user(db: &TestDb) {
        let mut conn = db.pool.get().await.unwrap();
        let heidi = user(&mut conn, "heidi@example.com").await;
        let ivan = user(&mut conn, "ivan@example.com").await;
        let first_file = new_file(&heidi);
        let (first, created) = Task::create(&mut conn, &first_file, new_task(Some("k-1"))).await.unwrap();
        assert!(created);
        let second_file = new_file(&heidi);
        let (again, created) = Task::create(&mut conn, &second_file, new_task(Some("k-1"))).await.unwrap();
        assert!(!created);
        assert_eq!(again.id, first.id);
        assert!(matches!(File::find(&mut conn, &second_file.id).await, Err(DbError::NotFound)),
            "a repeated request must not record a second file");

        // The same key from another user is another task.
        let (other, created) = Task::create(&mut conn, &new_file(&ivan), new_task(Some("k-1"))).await.unwrap();
        assert!(created);
        assert_ne!(other.id, first.id);

        // The constraint holds in the database itself.
        let raw = with_conn!(&mut conn, |c| diesel::sql_query(format!(
            "INSERT INTO tasks (id, user_id, file_id, status, engine, options, max_attempts, idempotency_key, created_at, updated_at) \
             VALUES ('dup', '{}', '{}', 'queued', 'ppocr', '{{}}', 3, 'k-1', '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
            heidi.id, first_file.id
        ))
        .execute(c)
        .await);
        assert!(raw.is_err(), "a duplicate idempotency key was accepted");
    }

    async fn claim_succeeds_once(db: &TestDb) {
        let mut conn = db.pool.get().await.unwrap();
        let judy = user(&mut conn, "judy@example.com").await;
        let task = queued_task(&mut conn, &judy).await;
        let lease = Duration::from_secs(60);

        let claimed = Task::claim(&mut conn, &task.id, "worker-a", lease).await.unwrap().unwrap();
        assert_eq!(claimed.status, TaskStatus::Processing);
        assert_eq!(claimed.lease_owner.as_deref(), Some("worker-a"));
        assert_eq!(claimed.attempts, 1);
        assert!(claimed.started_at.is_some());
        assert!(claimed.lease_expires_at.unwrap() > now());
        assert!(Task::claim(&mut conn, &task.id, "worker-b", lease).await.unwrap().is_none(),
            "a second claim must affect no row");

        // Only the lease holder may extend it or report progress.
        assert!(Task::heartbeat(&mut conn, &task.id, "worker-a", lease).await.unwrap());
        assert!(!Task::heartbeat(&mut conn, &task.id, "worker-b", lease).await.unwrap());
        let progressed = Task::set_progress(&mut conn, &task.id, "worker-a", 2, Some(5)).await.unwrap().unwrap();
        assert_eq!((progressed.pages_done, progressed.pages_total), (2, Some(5)));
        assert!(Task::set_progress(&mut conn, &task.id, "worker-b", 3, Some(5)).await.unwrap().is_none());
    }

    async fn concurrent_claims_have_one_winner(db: &TestDb) {
        let owner = {
            let mut conn = db.pool.get().await.unwrap();
            user(&mut conn, "kim@example.com").await
        };
        let task = queued_task(&mut db.pool.get().await.unwrap(), &owner).await;
        let claims = (0..4).map(|i| {
            let pool = db.pool.clone();
            let id = task.id.clone();
            tokio::spawn(async move {
                let mut conn = pool.get().await.unwrap();
                Task::claim(&mut conn, &id, &format!("worker-{i}"), Duration::from_secs(60)).await.unwrap()
            })
        });
        let winners = futures::future::join_all(claims)
            .await
            .into_iter()
            .filter(|r| r.as_ref().unwrap().is_some())
            .count();
        assert_eq!(winners, 1);
    }

    async fn complete_writes_result_once(db: &TestDb) {
        let mut conn = db.pool.get().await.unwrap();
        let leo = user(&mut conn, "leo@example.com").await;
        let task = queued_task(&mut conn, &leo).await;
        Task::claim(&mut conn, &task.id, "w", Duration::from_secs(60)).await.unwrap().unwrap();

        assert!(Task::complete(&mut conn, &task.id, "intruder", result_for(&leo), &[]).await.unwrap().is_none(),
            "a worker without the lease cannot complete");
        assert!(matches!(TaskResult::find_by_task(&mut conn, &task.id).await, Err(DbError::NotFound)));

        let (done, result) = Task::complete(&mut conn, &task.id, "w", result_for(&leo), &[]).await.unwrap().unwrap();
        assert_eq!(done.status, TaskStatus::Completed);
        assert!(done.finished_at.is_some() && done.lease_owner.is_none());
        assert_eq!(result.blob_keys.0["txt"], "results/x/result.txt");
        assert_eq!(result.mean_confidence, Some(0.97));
        let stored = TaskResult::find_by_task(&mut conn, &task.id).await.unwrap();
        assert_eq!((stored.id.as_str(), stored.text.as_str()), (result.id.as_str(), "hello"));

        // A second completion (a redelivered task) writes nothing.
        assert!(Task::complete(&mut conn, &task.id, "w", result_for(&leo), &[]).await.unwrap().is_none());
        let n: i64 = with_conn!(&mut conn, |c| ocrd::db::schema::results::table.count().get_result(c).await).unwrap();
        assert_eq!(n, 1);
    }

    async fn fail_release_reap_cancel_retry(db: &TestDb) {
        let mut conn = db.pool.get().await.unwrap();
        let mia = user(&mut conn, "mia@example.com").await;
        let long = Duration::from_secs(60);

        let a = queued_task(&mut conn, &mia).await;
        Task::claim(&mut conn, &a.id, "w", long).await.unwrap().unwrap();
        assert!(Task::fail(&mut conn, &a.id, "other", "x", "y").await.unwrap().is_none());
        let failed = Task::fail(&mut conn, &a.id, "w", "unsupported_type", "not an image").await.unwrap().unwrap();
        assert_eq!(failed.status, TaskStatus::Failed);
        assert_eq!(failed.error_code.as_deref(), Some("unsupported_type"));
        assert!(Task::cancel(&mut conn, &a.id).await.unwrap().is_none(), "a finished task cannot be cancelled");
        let retried = Task::retry(&mut conn, &a.id).await.unwrap().unwrap();
        assert_eq!((retried.status, retried.attempts), (TaskStatus::Queued, 0));
        assert!(retried.error_code.is_none());
        assert!(Task::retry(&mut conn, &a.id).await.unwrap().is_none(), "a queued task is not retryable");

        let b = queued_task(&mut conn, &mia).await;
        Task::claim(&mut conn, &b.id, "w", long).await.unwrap().unwrap();
        let released = Task::release(&mut conn, &b.id, "w").await.unwrap().unwrap();
        assert_eq!(released.status, TaskStatus::Queued);
        assert!(released.lease_owner.is_none());
        let again = Task::claim(&mut conn, &b.id, "w2", long).await.unwrap().unwrap();
        assert_eq!(again.attempts, 1, "a task handed back does not use up an attempt");
        assert_eq!(again.started_at, Task::find(&mut conn, &b.id).await.unwrap().started_at);

        // The reaper takes back expired leases only.
        let c = queued_task(&mut conn, &mia).await;
        Task::claim(&mut conn, &c.id, "dead-worker", Duration::ZERO).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let reaped = Task::requeue_expired(&mut conn).await.unwrap();
        assert_eq!(reaped.iter().map(|t| &t.id).collect::<Vec<_>>(), [&c.id]);
        assert_eq!(Task::find(&mut conn, &c.id).await.unwrap().status, TaskStatus::Queued);
        assert_eq!(Task::find(&mut conn, &b.id).await.unwrap().status, TaskStatus::Processing);

        // Cancelling a running task ends its lease: the worker's next heartbeat fails.
        let cancelled = Task::cancel(&mut conn, &b.id).await.unwrap().unwrap();
        assert_eq!(cancelled.status, TaskStatus::Cancelled);
        assert!(!Task::heartbeat(&mut conn, &b.id, "w2", long).await.unwrap());
    }

    async fn deletes_cascade(db: &TestDb) {
        let mut conn = db.pool.get().await.unwrap();
        let nia = user(&mut conn, "nia@example.com").await;
        let oscar = user(&mut conn, "oscar@example.com").await;
        let task = queued_task(&mut conn, &nia).await;
        Task::claim(&mut conn, &task.id, "w", Duration::from_secs(60)).await.unwrap().unwrap();
        Task::complete(&mut conn, &task.id, "w", result_for(&nia), &[]).await.unwrap().unwrap();

        assert!(matches!(Task::delete_for_user(&mut conn, &oscar.id, &task.id).await, Err(DbError::NotFound)));
        let (deleted, result, file) = Task::delete_for_user(&mut conn, &nia.id, &task.id).await.unwrap();
        assert_eq!(deleted.id, task.id);
        assert!(result.is_some(), "the result is returned so its blobs can be removed");
        let file = file.expect("the file had no other task, so it goes too");
        assert!(matches!(File::find(&mut conn, &file.id).await, Err(DbError::NotFound)));
        assert!(matches!(TaskResult::find_by_task(&mut conn, &task.id).await, Err(DbError::NotFound)));

        // Deleting a user removes everything of theirs, and nothing of anyone else's.
        let kept = queued_task(&mut conn, &oscar).await;
        let t2 = queued_task(&mut conn, &nia).await;
        ApiToken::create(&mut conn, NewApiToken {
            user_id: &nia.id, name: "t", prefix: "p", token_hash: "h-nia", expires_at: None, scopes: "read",
        }).await.unwrap();
        User::delete(&mut conn, &nia.id).await.unwrap();
        assert!(matches!(Task::find(&mut conn, &t2.id).await, Err(DbError::NotFound)));
        assert!(matches!(File::find(&mut conn, &t2.file_id).await, Err(DbError::NotFound)));
        assert!(ApiToken::authenticate(&mut conn, "h-nia").await.unwrap().is_none());
        assert_eq!(Task::find(&mut conn, &kept.id).await.unwrap().id, kept.id);
        assert!(matches!(User::delete(&mut conn, &nia.id).await, Err(DbError::NotFound)));
    }

    async fn migrate_twice_is_a_no_op(db: &TestDb) {
        assert!(db.pool.migrate().await.unwrap().is_empty());
        db.pool.ping().await.unwrap();
    }
}

#[derive(QueryableByName)]
struct ColumnRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    table_name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    column_name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    data_type: String,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    not_null: bool,
}

/// (table, column, portable type, NOT NULL) for every column of the application's tables.
async fn columns(conn: &mut DbConn) -> BTreeSet<(String, String, String, bool)> {
    let rows: Vec<ColumnRow> = match conn {
        DbConn::Postgres(c) => diesel::sql_query(
            "SELECT table_name::text, column_name::text, data_type::text, (is_nullable = 'NO') AS not_null \
             FROM information_schema.columns WHERE table_schema = 'public'",
        )
        .load(&mut **c)
        .await
        .unwrap(),
        DbConn::Sqlite(c) => diesel::sql_query(
            // An INTEGER PRIMARY KEY is SQLite's 64-bit rowid: PostgreSQL's BIGSERIAL.
            "SELECT m.name AS table_name, p.name AS column_name, \
                    CASE WHEN p.pk = 1 AND upper(p.type) = 'INTEGER' THEN 'bigint' ELSE p.type END AS data_type, \
                    (p.\"notnull\" = 1 OR p.pk = 1) AS not_null \
             FROM sqlite_master m JOIN pragma_table_info(m.name) p WHERE m.type = 'table'",
        )
        .load(&mut **c)
        .await
        .unwrap(),
    };
    rows.into_iter()
        .filter(|r| !r.table_name.starts_with("__diesel") && !r.table_name.starts_with("sqlite_"))
        // Each backend's own full-text index: PostgreSQL's tsvector column, SQLite's FTS5
        // table and its shadow tables.
        .filter(|r| {
            let tsv = r.table_name == "search_pages" && r.column_name == "tsv";
            !(tsv || r.table_name.starts_with("search_fts"))
        })
        .map(|r| {
            let ty = match r.data_type.to_lowercase().as_str() {
                "timestamp without time zone" => "timestamp".to_string(),
                "double precision" => "double".to_string(),
                other => other.to_string(),
            };
            (r.table_name, r.column_name, ty, r.not_null)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_match() {
    let pg = TestDb::postgres().await;
    let lite = TestDb::sqlite().await;
    let pg_columns = columns(&mut pg.pool.get().await.unwrap()).await;
    let sqlite_columns = columns(&mut lite.pool.get().await.unwrap()).await;
    assert!(
        pg_columns.len() > 40,
        "too few columns read: {pg_columns:?}"
    );
    let only_pg: Vec<_> = pg_columns.difference(&sqlite_columns).collect();
    let only_sqlite: Vec<_> = sqlite_columns.difference(&pg_columns).collect();
    assert!(
        only_pg.is_empty() && only_sqlite.is_empty(),
        "the migration folders disagree:\n only in postgres: {only_pg:?}\n only in sqlite: {only_sqlite:?}"
    );
}
