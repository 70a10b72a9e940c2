//! The health of an install as operators see it: each dependency with its status, latency and
//! detail (the database and its migration level, Redis, a real storage round trip, the
//! queue), the worker processes, and the free disk space where ocrd writes.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::workers::WorkerView;
use crate::app::App;
use crate::blobs::BlobKey;
use crate::db::models::new_id;

/// When this process started serving (set by `web::serve`).
static STARTED: OnceLock<Instant> = OnceLock::new();

pub fn mark_started() {
    STARTED.get_or_init(Instant::now);
}

/// One dependency's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct Dependency {
    /// `database`, `redis`, `storage` or `queue`.
    pub name: &'static str,
    /// `ok` or `down`.
    pub status: &'static str,
    pub latency_ms: f64,
    /// What it said about itself (versions, sizes, counts).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    /// Why it is down.
    pub error: Option<String>,
}

/// Free space on a file system ocrd writes to.
#[derive(Debug, Serialize, ToSchema)]
pub struct Disk {
    /// `data_dir` or `temp_dir`.
    pub name: &'static str,
    pub path: String,
    pub free_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
}

/// The install's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when a dependency is down or a worker is lost.
    pub status: &'static str,
    pub dependencies: Vec<Dependency>,
    /// The `serve` process that answered.
    #[schema(value_type = Object)]
    pub server: serde_json::Value,
    /// Every registered worker process.
    pub workers: Vec<WorkerView>,
    /// Every registered `serve` process (engine, devices and tasks empty).
    pub servers: Vec<WorkerView>,
    pub disks: Vec<Disk>,
}

async fn timed<T, E: std::fmt::Display>(
    name: &'static str,
    check: impl Future<Output = Result<T, E>>,
    detail: impl FnOnce(T) -> serde_json::Value,
) -> Dependency {
    let started = Instant::now();
    let outcome = check.await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match outcome {
        Ok(found) => Dependency {
            name,
            status: "ok",
            latency_ms,
            detail: detail(found),
            error: None,
        },
        Err(e) => Dependency {
            name,
            status: "down",
            latency_ms,
            detail: json!({}),
            error: Some(e.to_string()),
        },
    }
}

/// Checks everything; a dependency that is down is reported, not an error.
pub async fn check(app: &App) -> Health {
    let mut dependencies = Vec::new();
    let binary = app.db.latest_schema();
    dependencies.push(
        timed(
            "database",
            async {
                let version = app.db.server_version().await?;
                let applied = app.db.schema_version().await?;
                Ok::<_, crate::db::DbError>((version, applied))
            },
            |(version, applied)| {
                json!({
                    "backend": app.db.backend(),
                    "server_version": version,
                    "migration": {"applied": applied, "binary": binary},
                })
            },
        )
        .await,
    );
    if let Some(redis) = &app.redis {
        dependencies.push(timed("redis", redis_info(redis), |info| info).await);
    }
    dependencies.push(
        timed("storage", storage_round_trip(app), |bytes| {
            json!({
                "kind": format!("{:?}", app.config.storage.kind).to_lowercase(),
                "sse_kms": app.config.storage.kms_key_id.is_some(),
                "probe_bytes": bytes,
            })
        })
        .await,
    );
    dependencies.push(
        timed(
            "queue",
            async {
                let stats = app.queue.stats().await.map_err(|e| e.to_string())?;
                let paused = super::queue::paused(app).await.map_err(|e| e.to_string())?;
                Ok::<_, String>((stats, paused))
            },
            |(stats, paused)| json!({"paused": paused, "waiting": stats.waiting, "pending": stats.pending, "consumers": stats.consumers}),
        )
        .await,
    );
    let workers = super::workers::list(app).await.unwrap_or_default();
    let servers = super::workers::servers(app).await.unwrap_or_default();
    let degraded = dependencies.iter().any(|d| d.status != "ok")
        || workers.iter().chain(&servers).any(|w| w.state == "lost");
    let uptime = STARTED.get().map(|at| at.elapsed().as_secs_f64());
    Health {
        status: if degraded { "degraded" } else { "ok" },
        dependencies,
        server: json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "uptime_secs": uptime,
        }),
        workers,
        servers,
        disks: vec![
            disk("data_dir", &app.config.data_dir),
            disk("temp_dir", &app.config.worker_temp_dir()),
        ],
    }
}

/// Redis' own view: version, memory, clients.
async fn redis_info(pool: &deadpool_redis::Pool) -> Result<serde_json::Value, String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let info: String = deadpool_redis::redis::cmd("INFO")
        .query_async(&mut *conn)
        .await
        .map_err(|e| e.to_string())?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
            .map(str::to_owned)
    };
    let number = |name: &str| field(name).and_then(|v| v.parse::<u64>().ok());
    Ok(json!({
        "version": field("redis_version"),
        "used_memory_bytes": number("used_memory"),
        "connected_clients": number("connected_clients"),
        "cluster": field("cluster_enabled").as_deref() == Some("1"),
    }))
}

/// Writes a probe object (with the install's SSE-KMS settings), reads it back and deletes it.
async fn storage_round_trip(app: &App) -> Result<usize, String> {
    let key = BlobKey::parse(&format!("health/probe-{}", new_id())).map_err(|e| e.to_string())?;
    let body = bytes::Bytes::from(format!("ocrd health probe {}", new_id()));
    app.blobs
        .put_bytes(&key, body.clone())
        .await
        .map_err(|e| format!("put: {e}"))?;
    let read = app.blobs.get_bytes(&key).await;
    let deleted = app.blobs.delete(&key).await;
    let read = read.map_err(|e| format!("get: {e}"))?;
    deleted.map_err(|e| format!("delete: {e}"))?;
    if read != body {
        return Err("the probe came back different".into());
    }
    Ok(body.len())
}

fn disk(name: &'static str, path: &Path) -> Disk {
    // A directory made only once needed (the temp dir) is on its nearest existing parent's
    // file system.
    let existing = path.ancestors().find(|p| p.exists()).unwrap_or(path);
    let (free_bytes, total_bytes) = match statvfs(existing) {
        Some((free, total)) => (Some(free), Some(total)),
        None => (None, None),
    };
    Disk {
        name,
        path: path.display().to_string(),
        free_bytes,
        total_bytes,
    }
}

/// Free and total bytes of the file system holding `path`.
fn statvfs(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid C string and `stat` is written by statvfs before it is read.
    let stat = unsafe {
        if libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) != 0 {
            return None;
        }
        stat.assume_init()
    };
    let block = stat.f_frsize as u64;
    Some((stat.f_bavail as u64 * block, stat.f_blocks as u64 * block))
}
