//! The worker registry: every worker process registers with what it runs, heartbeats its
//! progress and reads back whether operators asked it to drain; `lost` is a worker whose
//! heartbeat stopped for two intervals.

use std::time::Duration;

use futures::FutureExt;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::App;
use crate::db::DbError;
use crate::db::models::{Beat, HeldTask, WorkerRow, WorkerState, now, utc_time};

/// Stopped workers stay listed this long.
const KEEP_STOPPED: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// A worker as operators see it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WorkerView {
    pub id: String,
    pub host: String,
    pub pid: i32,
    pub version: String,
    pub engine: String,
    /// `cpu`, or the GPU ordinals.
    pub devices: String,
    pub concurrency: i32,
    #[serde(with = "utc_time")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: chrono::NaiveDateTime,
    /// Seconds since its last heartbeat.
    pub heartbeat_age_secs: f64,
    /// `running`, `draining` (asked to stop taking work, finishing what runs), `lost` (no
    /// heartbeat for two intervals) or `stopped` (exited cleanly).
    pub state: String,
    /// An operator asked it to drain; `state` says `draining` once the worker has seen it.
    pub drain_requested: bool,
    pub pages_done: i64,
    pub pages_per_sec: f64,
    /// Resident memory, in bytes.
    pub rss_bytes: i64,
    /// The tasks it holds now.
    pub tasks: Vec<HeldTask>,
}

impl WorkerView {
    fn new(row: WorkerRow, tasks: Vec<HeldTask>, interval: Duration) -> WorkerView {
        let age = (now() - row.heartbeat_at).as_seconds_f64().max(0.0);
        // As the worker last said: `draining` once it has seen the request (it takes nothing
        // new from then on), not when an operator asked.
        let state = match row.state {
            WorkerState::Stopped => "stopped",
            _ if age > 2.0 * interval.as_secs_f64() => "lost",
            state => state.as_str(),
        };
        WorkerView {
            id: row.id,
            host: row.host,
            pid: row.pid,
            version: row.version,
            engine: row.engine,
            devices: row.devices,
            concurrency: row.concurrency,
            started_at: row.started_at,
            heartbeat_age_secs: age,
            state: state.to_owned(),
            drain_requested: row.drain,
            pages_done: row.pages_done,
            pages_per_sec: row.pages_per_sec,
            rss_bytes: row.rss_bytes,
            tasks,
        }
    }
}

/// How often workers report (`worker.report_secs`).
pub fn interval(app: &App) -> Duration {
    Duration::from_secs(app.config.worker.report_secs.max(1))
}

/// Every worker, newest first, with the tasks each holds.
pub async fn list(app: &App) -> Result<Vec<WorkerView>, DbError> {
    let interval = interval(app);
    app.db
        .read(move |c| {
            async move {
                let rows = WorkerRow::list(c, "work", KEEP_STOPPED).await?;
                let mut views = Vec::with_capacity(rows.len());
                for row in rows {
                    let tasks = WorkerRow::held_tasks(c, &row.id).await?;
                    views.push(WorkerView::new(row, tasks, interval));
                }
                Ok(views)
            }
            .boxed()
        })
        .await
}

/// Every `serve` process, newest first, with its version, start and state.
pub async fn servers(app: &App) -> Result<Vec<WorkerView>, DbError> {
    let interval = interval(app);
    let rows = app
        .db
        .run(move |c| async move { WorkerRow::list(c, "serve", KEEP_STOPPED).await }.boxed())
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| WorkerView::new(row, Vec::new(), interval))
        .collect())
}

/// Registers this `serve` process and heartbeats every `worker.report_secs` until `shutdown`,
/// then reports it stopped. An unreachable database is retried at the next beat.
pub async fn serve_heartbeat(app: App, shutdown: tokio_util::sync::CancellationToken) {
    let at = now();
    let id = format!(
        "serve-{}-{}-{:04x}",
        crate::process::hostname(),
        std::process::id(),
        fastrand::u16(..)
    );
    let row = WorkerRow {
        id: id.clone(),
        host: crate::process::hostname(),
        pid: std::process::id() as i32,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        engine: String::new(),
        devices: String::new(),
        concurrency: 0,
        started_at: at,
        heartbeat_at: at,
        state: WorkerState::Running,
        drain: false,
        pages_done: 0,
        pages_per_sec: 0.0,
        rss_bytes: rss_bytes(),
        role: "serve".into(),
    };
    let mut registered = false;
    let every = interval(&app);
    loop {
        let stopping = shutdown.is_cancelled();
        if !registered {
            registered = register(&app, row.clone()).await.is_ok();
        }
        let state = if stopping {
            WorkerState::Stopped
        } else {
            WorkerState::Running
        };
        let beat_now = Beat {
            state,
            pages_done: 0,
            pages_per_sec: 0.0,
            rss_bytes: rss_bytes(),
        };
        if registered && let Ok(None) = beat(&app, &id, beat_now).await {
            // Removed by hand: register again.
            registered = false;
        }
        if stopping {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Asks a worker to drain or to take work again; `NotFound` for an unknown id.
pub async fn set_drain(app: &App, id: &str, drain: bool) -> Result<WorkerView, DbError> {
    let interval = interval(app);
    let id = id.to_owned();
    app.db
        .run(move |c| {
            async move {
                if !WorkerRow::set_drain(c, &id, drain).await? {
                    return Err(DbError::NotFound);
                }
                let row = WorkerRow::find(c, &id).await?;
                let tasks = WorkerRow::held_tasks(c, &id).await?;
                Ok(WorkerView::new(row, tasks, interval))
            }
            .boxed()
        })
        .await
}

/// Registers a starting worker.
pub async fn register(app: &App, row: WorkerRow) -> Result<(), DbError> {
    app.db
        .run(move |c| async move { WorkerRow::register(c, row).await }.boxed())
        .await
}

/// Records a heartbeat; returns whether the worker is asked to drain (`None`: its row is gone).
pub async fn beat(app: &App, id: &str, beat: Beat) -> Result<Option<bool>, DbError> {
    let id = id.to_owned();
    app.db
        .run(move |c| async move { WorkerRow::beat(c, &id, beat).await }.boxed())
        .await
}

/// This process's resident memory in bytes (Linux; 0 elsewhere).
pub fn rss_bytes() -> i64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<i64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(0) as i64
}
