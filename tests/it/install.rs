//! A private ocrd install for one test: its own PostgreSQL database, Redis key prefix, S3
//! bucket and data directory, with real `ocrd work` processes and an in-process `App` for
//! submitting tasks and checking the outcome.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ocrd::app::App;
use ocrd::config::{Config, Secret};
use ocrd::db::models::{NewUser, Role, Task, TaskResult, TaskStatus, User};
use ocrd::tasks::{Submission, TaskOptions};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{self, HOW_TO_RUN, TestDb, unique};

pub fn ocrd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ocrd")
}

pub fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// Polls `check` until it returns `Some`, failing with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Serves `app`'s pages and API in process on a random port (another `serve` instance, or one
/// with other settings); its address.
pub fn serve_app(app: App) -> std::net::SocketAddr {
    let (server, addr) = ocrd::web::bind("127.0.0.1:0", app, None, ocrd::web::Scope::Full).unwrap();
    tokio::spawn(server);
    addr
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Install {
    pub db: TestDb,
    pub config: Config,
    pub app: App,
    pub user: User,
    pub data_dir: tempfile::TempDir,
}

impl Install {
    /// PostgreSQL, Redis and moto S3 with SSE-KMS; workers use `tweak`ed settings.
    pub async fn distributed(tweak: impl FnOnce(&mut Config)) -> Install {
        let db = TestDb::postgres().await;
        let mut config = support::s3_config().await;
        config.database.url = Secret::new(db.url.clone());
        config.redis.url = Secret::new(support::redis_url());
        config.redis.key_prefix = format!("{}:", unique("ocrdtest-"));
        Self::finish(db, config, tweak).await
    }

    /// The embedded defaults of all-in-one: SQLite, in-process queue and events, local blobs.
    pub async fn embedded(tweak: impl FnOnce(&mut Config)) -> Install {
        let db = TestDb::sqlite().await;
        let mut config = Config::default();
        config.database.url = Secret::new(db.url.clone());
        Self::finish(db, config, tweak).await
    }

    async fn finish(db: TestDb, mut config: Config, tweak: impl FnOnce(&mut Config)) -> Install {
        let data_dir = tempfile::tempdir().unwrap();
        config.data_dir = data_dir.path().to_path_buf();
        config.ocr.models_dir = models_dir();
        config.ocr.threads = 1;
        config.worker.lease_secs = 3;
        config.worker.recover_secs = 1;
        config.worker.retry_base_ms = 200;
        config.worker.retry_max_secs = 2;
        tweak(&mut config);
        let app = App::build(config.clone())
            .await
            .unwrap_or_else(|e| panic!("cannot build the test install: {e}\n  {HOW_TO_RUN}"));
        let mut conn = app.db.get().await.unwrap();
        let user = User::create(
            &mut conn,
            NewUser {
                email: &format!("{}@example.com", unique("u")),
                password_hash: "not-a-real-hash",
                role: Role::User,
            },
        )
        .await
        .unwrap();
        drop(conn);
        Install {
            db,
            config,
            app,
            user,
            data_dir,
        }
    }

    /// Serves this install's pages and API in process on a random port; its address.
    pub fn serve(&self) -> std::net::SocketAddr {
        serve_app(self.app.clone())
    }

    pub fn temp_root(&self) -> PathBuf {
        self.config.worker_temp_dir()
    }

    /// The `OCRD_*` variables that give a process this install's configuration.
    pub fn env(&self) -> Vec<(String, String)> {
        let c = &self.config;
        let s = &c.storage;
        let mut env = vec![
            ("OCRD_DATA_DIR", c.data_dir.display().to_string()),
            ("OCRD_DATABASE__URL", self.db.url.clone()),
            ("OCRD_DATABASE__POOL_SIZE", "4".into()),
            ("OCRD_REDIS__URL", c.redis.url.expose().to_owned()),
            ("OCRD_REDIS__KEY_PREFIX", c.redis.key_prefix.clone()),
            (
                "OCRD_OCR__MODELS_DIR",
                c.ocr.models_dir.display().to_string(),
            ),
            ("OCRD_OCR__THREADS", c.ocr.threads.to_string()),
            ("OCRD_WORKER__CONCURRENCY", "1".into()),
            ("OCRD_WORKER__LEASE_SECS", c.worker.lease_secs.to_string()),
            (
                "OCRD_WORKER__RECOVER_SECS",
                c.worker.recover_secs.to_string(),
            ),
            (
                "OCRD_WORKER__MAX_ATTEMPTS",
                c.worker.max_attempts.to_string(),
            ),
            (
                "OCRD_WORKER__MAX_DELIVERIES",
                c.worker.max_deliveries.to_string(),
            ),
            (
                "OCRD_WORKER__RETRY_BASE_MS",
                c.worker.retry_base_ms.to_string(),
            ),
            (
                "OCRD_WORKER__RETRY_MAX_SECS",
                c.worker.retry_max_secs.to_string(),
            ),
            (
                "OCRD_WORKER__SHUTDOWN_GRACE_SECS",
                c.worker.shutdown_grace_secs.to_string(),
            ),
            ("OCRD_WORKER__REPORT_SECS", c.worker.report_secs.to_string()),
            ("OCRD_LOG__LEVEL", "info".into()),
        ];
        if c.storage.kind == ocrd::config::StorageKind::S3 {
            env.extend([
                ("OCRD_STORAGE__KIND", "s3".to_owned()),
                ("OCRD_STORAGE__BUCKET", s.bucket.clone().unwrap()),
                ("OCRD_STORAGE__ENDPOINT", s.endpoint.clone().unwrap()),
                ("OCRD_STORAGE__REGION", s.region.clone().unwrap()),
                ("OCRD_STORAGE__KMS_KEY_ID", s.kms_key_id.clone().unwrap()),
                ("OCRD_STORAGE__PATH_STYLE", "true".into()),
                ("OCRD_STORAGE__ALLOW_HTTP", "true".into()),
                ("OCRD_STORAGE__ACCESS_KEY_ID", "test".into()),
                ("OCRD_STORAGE__SECRET_ACCESS_KEY", "test".into()),
            ]);
        }
        env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// The `ocrd` binary with this install's configuration (and nothing else from the
    /// environment but `PATH`), in its data directory: add the arguments.
    pub fn ocrd_command(&self) -> Command {
        let mut command = Command::new(ocrd_bin());
        command
            .current_dir(self.data_dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env())
            .stdin(Stdio::null());
        command
    }

    /// Runs `ocrd ARGS…` on this install to success; its standard output.
    pub fn run_ocrd(&self, args: &[&str]) -> String {
        let output = self.ocrd_command().args(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "ocrd {args:?}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Starts `ocrd work` on this install; `extra` env overrides come last.
    pub fn spawn_worker(&self, name: &str, extra: &[(&str, &str)]) -> WorkerProcess {
        let log = self
            .data_dir
            .path()
            .join(format!("{name}-{}.log", unique("")));
        let health_port = free_port();
        let mut command = Command::new(ocrd_bin());
        command
            .arg("work")
            .arg("--health-addr")
            .arg(format!("127.0.0.1:{health_port}"))
            .current_dir(self.data_dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env())
            .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = command.spawn().expect("starting ocrd work");
        WorkerProcess {
            name: name.to_owned(),
            child,
            log,
            health_port,
        }
    }

    pub async fn submit_bytes(&self, filename: &str, body: Vec<u8>) -> Task {
        self.submit_bytes_as(&self.user.id, filename, body).await
    }

    /// Submits as another account of this install.
    pub async fn submit_bytes_as(&self, user_id: &str, filename: &str, body: Vec<u8>) -> Task {
        self.submit_with(user_id, filename, body, TaskOptions::default())
            .await
    }

    pub async fn submit_with(
        &self,
        user_id: &str,
        filename: &str,
        body: Vec<u8>,
        options: TaskOptions,
    ) -> Task {
        let submission = Submission {
            user_id,
            filename,
            engine: None,
            options,
            idempotency_key: None,
        };
        let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(body))]);
        ocrd::tasks::submit(&self.app, submission, body)
            .await
            .unwrap_or_else(|e| panic!("submitting {filename}: {e}"))
            .0
    }

    pub async fn submit_file(&self, path: &Path) -> Task {
        self.submit_file_as(&self.user.id, path).await
    }

    pub async fn submit_file_as(&self, user_id: &str, path: &Path) -> Task {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        self.submit_bytes_as(user_id, &name, std::fs::read(path).unwrap())
            .await
    }

    pub async fn task(&self, id: &str) -> Task {
        let mut conn = self.app.db.get().await.unwrap();
        Task::find(&mut conn, id).await.unwrap()
    }

    pub async fn tasks(&self, ids: &[String]) -> Vec<Task> {
        let mut out = Vec::new();
        for id in ids {
            out.push(self.task(id).await);
        }
        out
    }

    /// Waits until every task has finished (any terminal status), and returns them.
    pub async fn wait_finished(&self, ids: &[String], timeout: Duration) -> Vec<Task> {
        wait_for(timeout, "every task to finish", || async {
            let tasks = self.tasks(ids).await;
            let open: Vec<&Task> = tasks
                .iter()
                .filter(|t| matches!(t.status, TaskStatus::Queued | TaskStatus::Processing))
                .collect();
            if open.is_empty() { Some(tasks) } else { None }
        })
        .await
    }

    pub async fn result(&self, task_id: &str) -> TaskResult {
        let mut conn = self.app.db.get().await.unwrap();
        TaskResult::find_by_task(&mut conn, task_id).await.unwrap()
    }

    pub async fn result_text(&self, task_id: &str) -> String {
        self.result_file(task_id, "txt").await
    }

    /// A stored result format (`txt`, `json`, `html`) as text.
    pub async fn result_file(&self, task_id: &str, format: &str) -> String {
        String::from_utf8(self.result_bytes(task_id, format).await).unwrap()
    }

    /// A stored result format, as it is stored.
    pub async fn result_bytes(&self, task_id: &str, format: &str) -> Vec<u8> {
        let result = self.result(task_id).await;
        let key = ocrd::blobs::BlobKey::parse(&result.blob_keys.0[format]).unwrap();
        self.app.blobs.get_bytes(&key).await.unwrap().to_vec()
    }

    /// Rows per table for this install's tasks: (results rows, results rows per task).
    pub async fn result_rows_per_task(&self) -> BTreeMap<String, i64> {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use ocrd::db::schema::results;
        let mut conn = self.app.db.get().await.unwrap();
        let rows: Vec<(String, i64)> = ocrd::with_conn!(&mut conn, |c| results::table
            .group_by(results::task_id)
            .select((results::task_id, diesel::dsl::count_star()))
            .load(c)
            .await)
        .unwrap();
        rows.into_iter().collect()
    }

    /// Every object in storage is an upload some file row points at, or a result some result
    /// row points at: nothing orphaned.
    pub async fn assert_no_orphans(&self) {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use ocrd::db::schema::{files, results, search_pages};
        let mut conn = self.app.db.get().await.unwrap();
        // Search rows only for results that exist (they go with their task).
        let indexed: Vec<String> = ocrd::with_conn!(&mut conn, |c| search_pages::table
            .select(search_pages::task_id)
            .distinct()
            .load(c)
            .await)
        .unwrap();
        let completed: std::collections::HashSet<String> =
            ocrd::with_conn!(&mut conn, |c| results::table
                .select(results::task_id)
                .load(c)
                .await)
            .unwrap()
            .into_iter()
            .collect();
        let stray: Vec<&String> = indexed.iter().filter(|t| !completed.contains(*t)).collect();
        assert!(
            stray.is_empty(),
            "search rows of tasks without a result: {stray:?}"
        );
        let file_keys: Vec<String> = ocrd::with_conn!(&mut conn, |c| files::table
            .select(files::blob_key)
            .load(c)
            .await)
        .unwrap();
        let result_keys: Vec<String> = ocrd::with_conn!(&mut conn, |c| results::table
            .select(results::blob_keys)
            .load(c)
            .await)
        .unwrap();
        let mut known: std::collections::HashSet<String> = file_keys.into_iter().collect();
        for keys in result_keys {
            let map: BTreeMap<String, String> = serde_json::from_str(&keys).unwrap();
            known.extend(map.into_values());
        }
        let stored = self.app.blobs.list("").await.unwrap();
        let orphans: Vec<&String> = stored.iter().filter(|k| !known.contains(*k)).collect();
        assert!(orphans.is_empty(), "orphaned objects: {orphans:?}");
        for key in &known {
            assert!(stored.contains(key), "{key} is referenced but not stored");
        }
    }

    /// The temp root holds nothing once every worker has cleaned up (or been swept).
    pub async fn assert_temp_empty_soon(&self) {
        let root = self.temp_root();
        wait_for(
            Duration::from_secs(30),
            "the temp dir to be empty",
            || async {
                let left: Vec<PathBuf> = match std::fs::read_dir(&root) {
                    Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
                    Err(_) => Vec::new(),
                };
                left.is_empty().then_some(())
            },
        )
        .await;
    }
}

pub struct WorkerProcess {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
    pub health_port: u16,
}

impl WorkerProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let what = format!("{} to exit", self.name);
        wait_for(timeout, &what, || {
            let status = self.child.try_wait().unwrap();
            async move { status }
        })
        .await
        .code()
    }

    /// GET on the health server, once it answers.
    pub async fn health(&self, path: &str) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}{path}", self.health_port);
        wait_for(
            Duration::from_secs(60),
            &format!("{url} to answer"),
            || async {
                let response = reqwest::get(&url).await.ok()?;
                let status = response.status().as_u16();
                Some((status, response.text().await.ok()?))
            },
        )
        .await
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP forwarder to `target` that can cut every connection and refuse new ones: a storage
/// outage, without losing what the server holds.
pub struct Outage {
    pub addr: std::net::SocketAddr,
    down: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Outage {
    pub async fn proxy(target: &str) -> Outage {
        let target = target.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (down2, cut2) = (down.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if down2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let mut cut = cut2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Outage { addr, down, cut }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn start(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn end(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

/// A Redis server of the test's own, which the test can kill and restart.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub async fn start() -> PrivateRedis {
        let mut redis = PrivateRedis {
            port: free_port(),
            child: None,
        };
        redis.restart().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it again on the same port, empty: nothing is persisted.
    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server (apt-get install redis-server): {e}")
            });
        self.child = Some(child);
        let url = self.url();
        wait_for(
            Duration::from_secs(20),
            "the private redis-server",
            || async {
                let pool = ocrd::redis_pool::pool(&url, 1).ok()?;
                ocrd::redis_pool::ping(&pool).await.ok()
            },
        )
        .await;
    }

    /// Kills it: every key is lost.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The ten sample pages, sorted, with their ground truth.
pub fn sample_pages() -> Vec<(PathBuf, String)> {
    crate::ocr::eval_set("public")
}
