//! The console's queries on a big install: seeds `OCRDBENCH_TASKS` tasks (default 1,000,000)
//! with their files over 1,000 accounts and 60 days on PostgreSQL, then times the admin task
//! list (unfiltered, by each filter, the next page by keyset), the file-name search and the
//! statistics (from the rollup, and from the tasks table alone as the baseline), through the
//! same functions the API calls. Prints p50 and p95 of each against the target of 100 ms. Run with `make bench-admin`, which brings up PostgreSQL.

mod support;

use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures::FutureExt;
use ocrd::admin::stats::{Source, Window, compute_from};
use ocrd::app::App;
use ocrd::db::models::{Order, TaskFilter, TaskStatus, now};
use support::time;

const TARGET: Duration = Duration::from_millis(100);

/// Accounts, files and tasks made in the database itself: ids shaped like UUIDs in creation
/// order (as UUIDv7 are), 90 % completed, 5 % failed with three codes, the rest cancelled,
/// queued or processing; one file name in a hundred an invoice.
const SEED: &str = r#"
INSERT INTO users (id, email, password_hash, role, created_at, updated_at)
SELECT 'u' || g, 'user' || g || '@example.com', 'x', 'user', now(), now()
FROM generate_series(1, 1000) g;

INSERT INTO files (id, user_id, blob_key, filename, content_type, size_bytes, sha256, created_at)
SELECT 'f' || g, 'u' || (g % 1000 + 1), 'uploads/' || g,
       CASE WHEN g % 100 = 0 THEN 'Invoice-' || g || '.pdf' ELSE 'scan-' || g || '.png' END,
       'image/png', 100000, md5(g::text), now()
FROM generate_series(1, {n}) g;

INSERT INTO tasks (id, user_id, file_id, status, engine, max_attempts, pages_done, pages_total,
                   error_code, error_message, created_at, updated_at, started_at, finished_at)
SELECT
  lpad(to_hex(g), 8, '0') || '-0000-7000-8000-' || lpad(to_hex(g), 12, '0'),
  'u' || (g % 1000 + 1), 'f' || g,
  s.status,
  CASE WHEN g % 20 = 0 THEN 'qwen3vl' ELSE 'ppocr' END,
  3,
  CASE WHEN s.status = 'completed' THEN 1 + g % 5 ELSE 0 END,
  1 + g % 5,
  CASE WHEN s.status = 'failed' THEN (ARRAY['undecodable', 'engine_error', 'page_timeout'])[1 + g % 3] END,
  CASE WHEN s.status = 'failed' THEN 'It failed.' END,
  t.created, t.created,
  CASE WHEN s.status IN ('completed', 'failed', 'processing') THEN t.created + interval '2 seconds' END,
  CASE WHEN s.status IN ('completed', 'failed', 'cancelled')
       THEN t.created + interval '2 seconds' + (g % 60) * interval '1 second' END
FROM generate_series(1, {n}) g,
LATERAL (SELECT CASE
    WHEN g % 100 < 90 THEN 'completed' WHEN g % 100 < 95 THEN 'failed'
    WHEN g % 100 < 97 THEN 'cancelled' WHEN g % 100 < 99 THEN 'queued'
    ELSE 'processing' END AS status) s,
LATERAL (SELECT now() AT TIME ZONE 'UTC' - interval '60 days' + (g::float8 / {n}) * interval '60 days' AS created) t;
"#;

fn main() {
    let n = support::size("OCRDBENCH_TASKS", 1_000_000);
    support::main(|| async {
        let db = support::BenchDb::create().await;
        let dir = tempfile::tempdir().unwrap();
        let config = db.config(&dir);
        let app = App::build(config).await.unwrap();

        let seeding = Instant::now();
        let mut conn = AsyncPgConnection::establish(db.url.as_str()).await.unwrap();
        conn.batch_execute(&SEED.replace("{n}", &n.to_string()))
            .await
            .unwrap();
        // As autovacuum leaves a table that has settled: statistics and the visibility map.
        conn.batch_execute("VACUUM ANALYZE").await.unwrap();
        println!("seeded {n} tasks in {:.0?}", seeding.elapsed());

        let list = |filter: TaskFilter, after: Option<String>| {
            let app = app.clone();
            async move {
                ocrd::admin::tasks::search(&app, filter, Order::Newest, 50, after)
                    .await
                    .unwrap()
                    .0
                    .len()
            }
        };
        let first =
            ocrd::admin::tasks::search(&app, TaskFilter::default(), Order::Newest, 50, None)
                .await
                .unwrap()
                .1;
        let by = |f: fn(&mut TaskFilter)| {
            let mut filter = TaskFilter::default();
            f(&mut filter);
            filter
        };
        let mut results = vec![
            time("tasks, unfiltered", || list(TaskFilter::default(), None)).await,
            time("tasks, next page (keyset)", || {
                list(TaskFilter::default(), first.clone())
            })
            .await,
            time("tasks, status = failed", || {
                list(by(|f| f.status = Some(TaskStatus::Failed)), None)
            })
            .await,
            time("tasks, status = queued", || {
                list(by(|f| f.status = Some(TaskStatus::Queued)), None)
            })
            .await,
            time("tasks, one owner", || {
                list(
                    by(|f| f.user_email = Some("user7@example.com".into())),
                    None,
                )
            })
            .await,
            time("tasks, error = page_timeout", || {
                list(by(|f| f.error_code = Some("page_timeout".into())), None)
            })
            .await,
            time("tasks, engine = qwen3vl", || {
                list(by(|f| f.engine = Some("qwen3vl".into())), None)
            })
            .await,
            time("file name contains 'invoice'", || {
                list(by(|f| f.filename = Some("invoice".into())), None)
            })
            .await,
            time("file name contains 'scan-12345.' (one match)", || {
                list(by(|f| f.filename = Some("scan-12345.".into())), None)
            })
            .await,
        ];
        // The first look after an upgrade sums the 31 days before it once (the workers'
        // recovery round does it too).
        let summing = Instant::now();
        app.db
            .run(|c| async move { ocrd::admin::stats::catch_up(c, now()).await }.boxed())
            .await
            .unwrap();
        println!(
            "summed 31 days into the rollup in {:.1?}, once",
            summing.elapsed()
        );
        let mut ratios = Vec::new();
        for (label, window) in [
            ("stats, 24h", Window::Day),
            ("stats, 7d", Window::Week),
            ("stats, 30d", Window::Month),
        ] {
            let mut pair = Vec::new();
            for (source, suffix) in [(Source::Tasks, " (tasks table only)"), (Source::Rollup, "")] {
                let timed = time(&format!("{label}{suffix}"), || {
                    let app = app.clone();
                    async move {
                        let stats = compute_from(&app, window, source).await.unwrap();
                        stats.task_seconds.count as usize
                    }
                })
                .await;
                pair.push(timed.p50);
                results.push(timed);
            }
            ratios.push((label, pair[0].as_secs_f64() / pair[1].as_secs_f64()));
        }

        println!(
            "\n{:<48} {:>10} {:>10} {:>8}  target {} ms",
            "query",
            "p50 ms",
            "p95 ms",
            "rows",
            TARGET.as_millis()
        );
        for r in &results {
            let verdict = if r.p95 <= TARGET { "ok" } else { "OVER" };
            println!(
                "{:<48} {:>10.1} {:>10.1} {:>8}  {verdict}",
                r.name,
                r.p50.as_secs_f64() * 1000.0,
                r.p95.as_secs_f64() * 1000.0,
                r.found
            );
        }
        for (label, ratio) in ratios {
            println!("{label}: the rollup is {ratio:.1}x faster than the tasks table alone (p50)");
        }
        drop(conn);
        drop(app);
        db.drop().await;
    });
}
