//! Typed configuration.
//!
//! Sources, later ones win: built-in defaults, then `config/ocrd.toml` (or the file given with
//! `--config`), then `OCRD_*` environment variables where `__` separates the key path
//! (`OCRD_DATABASE__URL` sets `database.url`). The raw values are deserialised with figment and
//! then validated into these types, so every error names the key it is about.
//!
//! Every key is documented in `config/ocrd.toml`. Secrets (`database.url`, `redis.url`,
//! `storage.secret_access_key`) are wrapped in [`Secret`], which never prints its value.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize, Serializer};
use url::Url;

/// The config file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "config/ocrd.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Parse(Box<figment::Error>),
    #[error("invalid configuration: `{key}` {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl ConfigError {
    fn invalid(key: &'static str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key,
            reason: reason.into(),
        }
    }
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        ConfigError::Parse(Box::new(e))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Embedded database, local blobs and temporary files live here.
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub storage: StorageConfig,
    pub ocr: OcrConfig,
    pub worker: WorkerConfig,
    pub limits: LimitsConfig,
    pub rate_limits: RateLimitConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub tasks: TasksConfig,
    pub retention: RetentionConfig,
    pub quota: QuotaConfig,
    pub webhooks: WebhooksConfig,
    pub maintenance: MaintenanceConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            redis: RedisConfig::default(),
            storage: StorageConfig::default(),
            ocr: OcrConfig::default(),
            worker: WorkerConfig::default(),
            limits: LimitsConfig::default(),
            rate_limits: RateLimitConfig::default(),
            auth: AuthConfig::default(),
            log: LogConfig::default(),
            tasks: TasksConfig::default(),
            retention: RetentionConfig::default(),
            quota: QuotaConfig::default(),
            webhooks: WebhooksConfig::default(),
            maintenance: MaintenanceConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the HTTP server listens on (`serve`, `all-in-one`).
    pub bind: String,
    /// The address people reach ocrd at, e.g. `https://ocr.example.com`: links in mails and
    /// the target of the HTTP→HTTPS redirect. Default: derived from `bind`.
    pub public_url: Option<String>,
    /// Serve HTTPS on `bind` with this certificate chain (PEM, leaf first) and key (PEM).
    /// Both files are watched and reloaded when they change or on SIGHUP.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// With TLS: also listen here (e.g. `0.0.0.0:80`) and answer every request with a 301 to
    /// the same path on `public_url`.
    pub redirect_http: Option<String>,
    /// `Strict-Transport-Security: max-age=…` sent on HTTPS responses; 0 sends none.
    pub hsts_max_age_secs: u64,
    /// Reverse proxies (CIDRs) whose `X-Forwarded-For`, `X-Forwarded-Proto`,
    /// `X-Forwarded-Host` and `Forwarded` headers are believed. Empty: none, the peer is the
    /// client.
    pub trusted_proxies: Vec<String>,
    /// Which forwarding headers the trusted proxies set: `x-forwarded` (`X-Forwarded-For`,
    /// `-Proto`, `-Host`; nginx, HAProxy, most load balancers) or `forwarded` (RFC 7239). Only
    /// that family is read: the other could be the client's own, passed through untouched.
    pub proxy_headers: ProxyHeaders,
    /// Host names (optionally `host:port`) requests may name in `Host`; others get 421.
    /// Empty: the host of `public_url`, the host of `bind`, and `localhost` on a loopback bind
    /// (IP addresses too on a wildcard bind).
    pub allowed_hosts: Vec<String>,
    /// When set, `/metrics` and `/readyz` on the public listener need
    /// `Authorization: Bearer <metrics_token>`. Secret.
    pub metrics_token: Secret,
    /// When set, `/metrics` and `/readyz` move to a listener of their own here (e.g.
    /// `127.0.0.1:9090`) and leave the public one.
    pub ops_bind: Option<String>,
    /// Origins allowed to call the API from a browser (CORS), e.g. `https://app.example.com`.
    /// Empty: same origin only.
    pub cors_origins: Vec<String>,
    /// Development: read `templates/` and `static/` from this directory on every request
    /// instead of the copies built into the binary, so edits show on reload. Empty: built in.
    pub dev_assets_dir: Option<PathBuf>,
    /// Seconds a client has to send a request's headers; a slower one gets 408 and is cut off.
    pub client_request_timeout_secs: u64,
    /// Seconds an upload may send nothing before it is cut off (408); what it sent is dropped.
    pub upload_idle_secs: u64,
    /// Seconds an idle keep-alive connection stays open.
    pub keep_alive_secs: u64,
    /// Most open connections per server thread (one thread per core); more wait to be accepted.
    pub max_connections: usize,
    /// Most TLS handshakes in progress per server thread.
    pub max_tls_handshakes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "127.0.0.1:8080".into(),
            public_url: None,
            tls_cert: None,
            tls_key: None,
            redirect_http: None,
            hsts_max_age_secs: 63_072_000,
            trusted_proxies: Vec::new(),
            proxy_headers: ProxyHeaders::XForwarded,
            allowed_hosts: Vec::new(),
            metrics_token: Secret::default(),
            ops_bind: None,
            cors_origins: Vec::new(),
            dev_assets_dir: None,
            client_request_timeout_secs: 10,
            upload_idle_secs: 30,
            keep_alive_secs: 15,
            max_connections: 10_000,
            max_tls_handshakes: 256,
        }
    }
}

impl ServerConfig {
    /// `trusted_proxies` parsed; a bare address is one host.
    pub fn proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        ConfigError::invalid(
                            "server.trusted_proxies",
                            format!("`{entry}` is not an address or CIDR like 10.0.0.0/8"),
                        )
                    })
            })
            .collect()
    }

    /// Whether `bind` serves HTTPS itself.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some()
    }

    /// Whether browsers reach ocrd over TLS (here or at a proxy), so cookies can be `Secure`.
    pub fn is_https(&self) -> bool {
        self.tls()
            || self
                .public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"))
    }

    /// Where people reach ocrd, without a trailing slash: `public_url`, else the bind address
    /// (`bound`, the address really bound, when known: port 0 picks one).
    pub fn base_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let scheme = if self.tls() { "https" } else { "http" };
                format!("{scheme}://{}", self.bind)
            }
        }
    }
}

/// The forwarding headers trusted proxies set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyHeaders {
    #[default]
    XForwarded,
    Forwarded,
}

/// Requests a client may make, per class; 0 turns a limit off. Counted per client address and
/// per account or token, in Redis when configured (so every `serve` shares them), else in
/// process. Over a limit: 429 with `Retry-After`, `RateLimit` and `RateLimit-Policy`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// `api`: sustained requests per second under `/api`, and the burst allowed above it.
    pub api_per_second: u32,
    pub api_burst: u32,
    /// `uploads`: files per minute, and bytes per minute (at least `limits.max_upload_bytes`).
    pub uploads_per_minute: u32,
    pub upload_bytes_per_minute: u64,
    /// `auth`: sign-ins, registrations and password resets per minute per client address.
    pub auth_per_minute: u32,
    /// `ws`: WebSocket connections open at once per client address and per account.
    pub ws_per_address: u32,
    pub ws_per_user: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            api_per_second: 20,
            api_burst: 100,
            uploads_per_minute: 60,
            upload_bytes_per_minute: 1 << 30,
            auth_per_minute: 20,
            ws_per_address: 50,
            ws_per_user: 20,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Anyone can create an account.
    #[default]
    Open,
    /// Only admins create accounts (`ocrd admin create-user`).
    Closed,
    /// Registration needs an invite link made by an admin, or `auth.invite_code`.
    Invite,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub registration: Registration,
    /// The code new users give when `registration = "invite"`. Secret.
    pub invite_code: Secret,
    /// Lifetime of a login session.
    pub session_ttl_secs: u64,
    /// Failed logins allowed per account from one client address within `login_window_secs`;
    /// the next attempt from that address gets 429, for twice as long each time it goes on.
    /// Other addresses (the owner's) still get in.
    pub login_attempts: u32,
    /// Failed logins allowed per client address, whatever the accounts, in the same window.
    pub login_attempts_per_address: u32,
    pub login_window_secs: u64,
    /// Shortest password accepted.
    pub min_password_length: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            registration: Registration::Open,
            invite_code: Secret::default(),
            session_ttl_secs: 7 * 24 * 3600,
            login_attempts: 5,
            login_attempts_per_address: 20,
            login_window_secs: 60,
            min_password_length: 10,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Empty: SQLite at `{data_dir}/ocrd.db`. `postgres://…`: PostgreSQL.
    pub url: Secret,
    pub pool_size: usize,
    /// Apply pending migrations when a mode starts.
    pub migrate_on_start: bool,
    /// PostgreSQL read replicas (`postgres://…`, streaming from `url`): lists, search,
    /// statistics and the console's lists read from them; see `src/db/replicas.rs`.
    pub read_urls: Vec<Secret>,
    /// A replica further behind than this takes no reads until it catches up.
    pub max_replica_lag_secs: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: Secret::default(),
            pool_size: 8,
            migrate_on_start: true,
            read_urls: Vec::new(),
            max_replica_lag_secs: 5,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Empty: in-process queue, events and sessions. `redis://…`: Redis.
    pub url: Secret,
    /// Prefix of every Redis key ocrd writes, so several installs can share one server.
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: Secret::default(),
            key_prefix: "ocrd:".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    #[default]
    Local,
    S3,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub kind: StorageKind,
    /// Local directory; default `{data_dir}/blobs`.
    pub path: Option<PathBuf>,
    pub bucket: Option<String>,
    /// Default: `AWS_REGION`, then `us-east-1`.
    pub region: Option<String>,
    /// Any S3-compatible endpoint; default: AWS.
    pub endpoint: Option<String>,
    /// KMS key id or ARN for SSE-KMS. Empty: the bucket's default encryption applies.
    pub kms_key_id: Option<String>,
    pub path_style: bool,
    pub allow_http: bool,
    /// Default: `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// Default: `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Secret,
    /// Lifetime of presigned result URLs; 0 streams results through ocrd instead.
    pub presign_ttl_secs: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            kind: StorageKind::Local,
            path: None,
            bucket: None,
            region: None,
            endpoint: None,
            kms_key_id: None,
            path_style: false,
            allow_http: false,
            access_key_id: None,
            secret_access_key: Secret::default(),
            presign_ttl_secs: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// PP-OCR detection + recognition: the fast CPU default.
    #[default]
    Ppocr,
    /// A Qwen3-VL vision-language model exported to ONNX: the highest quality, for GPUs.
    Qwen3vl,
}

impl EngineKind {
    pub const ALL: [EngineKind; 2] = [EngineKind::Ppocr, EngineKind::Qwen3vl];

    /// The name used in configuration and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Ppocr => "ppocr",
            EngineKind::Qwen3vl => "qwen3vl",
        }
    }

    /// What it is, in a few words for people choosing one (the upload page).
    pub fn description(self) -> &'static str {
        match self {
            EngineKind::Ppocr => "PP-OCR: fast, on CPUs",
            EngineKind::Qwen3vl => "Qwen3-VL: highest quality, on GPUs",
        }
    }
}

impl std::str::FromStr for EngineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EngineKind::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = EngineKind::ALL.iter().map(|e| e.as_str()).collect();
                format!("unknown engine `{s}` (available: {})", names.join(", "))
            })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OcrConfig {
    pub engine: EngineKind,
    /// Where `scripts/fetch-models.sh` puts the models and the ONNX Runtime library.
    pub models_dir: PathBuf,
    /// PP-OCR model set under `{models_dir}/ppocr/`.
    pub model_set: String,
    /// The ONNX Runtime shared library; default `{models_dir}/runtime/libonnxruntime.so`.
    pub runtime: Option<PathBuf>,
    /// Inference threads; 0 uses every core.
    pub threads: usize,
    /// Also classify every line as upright or upside down (PP-OCR's 0°/180° classifier), for
    /// pages that mix both; whole pages are turned without it.
    pub classify_orientation: bool,
    /// The scripts pages are read in, unless a task asks for others: `latin` (default),
    /// `greek`, `cyrillic`, `cjk`, a comma-separated mix, or `all`. PP-OCR only decodes
    /// characters of these scripts (and digits, punctuation and symbols).
    pub lang: crate::ocr::lang::Lang,
    /// CUDA device ids for workers; empty runs on the CPU. `ocrd work --gpus` overrides it.
    pub gpus: Vec<u32>,
    /// Resolution PDF pages are rendered at for OCR (lowered for pages over
    /// `limits.max_pixels`).
    pub pdf_dpi: u32,
    /// The Qwen3-VL engine (`engine = "qwen3vl"`).
    pub qwen3vl: Qwen3VlConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Qwen3VlConfig {
    /// The exported model directory (`tools/qwen3vl_export`); default `{models_dir}/qwen3vl`.
    pub model_dir: Option<PathBuf>,
    /// Largest image the model sees, in pixels; bigger pages are scaled down (the model's own
    /// limit applies too). Memory and time grow with it.
    pub max_pixels: u64,
    /// Most tokens generated for one page.
    pub max_new_tokens: usize,
    /// The instruction; empty uses the model's default (`qwenvl html`: HTML with boxes).
    pub prompt: String,
}

impl Default for Qwen3VlConfig {
    fn default() -> Self {
        Qwen3VlConfig {
            model_dir: None,
            max_pixels: 1_048_576,
            max_new_tokens: 2048,
            prompt: String::new(),
        }
    }
}

impl Default for OcrConfig {
    fn default() -> Self {
        OcrConfig {
            engine: EngineKind::Ppocr,
            models_dir: PathBuf::from("models"),
            model_set: "v6-tiny".into(),
            runtime: None,
            threads: 0,
            classify_orientation: false,
            lang: crate::ocr::lang::Lang::default(),
            gpus: Vec::new(),
            pdf_dpi: 300,
            qwen3vl: Qwen3VlConfig::default(),
        }
    }
}

impl OcrConfig {
    pub fn qwen3vl_dir(&self) -> PathBuf {
        self.qwen3vl
            .model_dir
            .clone()
            .unwrap_or_else(|| self.models_dir.join("qwen3vl"))
    }

    /// `ocr.runtime`; by default the GPU runtime of `scripts/fetch-models.sh --gpu` when GPUs
    /// are requested and it is there, else the CPU one.
    pub fn runtime_library(&self) -> PathBuf {
        if let Some(runtime) = &self.runtime {
            return runtime.clone();
        }
        let gpu = crate::ocr::runtime::default_gpu_library(&self.models_dir);
        if !self.gpus.is_empty() && gpu.exists() {
            gpu
        } else {
            crate::ocr::runtime::default_library(&self.models_dir)
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Tasks processed at once; 0 matches the engine's parallelism (one per core for PP-OCR).
    pub concurrency: usize,
    /// Health server of `ocrd work`: /healthz, /readyz, /metrics. Loopback by default.
    pub health_addr: String,
    /// A claimed task's lease; the heartbeat renews it every third of this. A worker that dies
    /// loses its tasks to another worker this long after its last heartbeat.
    pub lease_secs: u64,
    /// Attempts per task: claims after interrupted runs, and retries after transient failures
    /// (database, queue or storage unavailable).
    pub max_attempts: u32,
    /// A task delivered by the queue more often than this (plus one per page its earlier
    /// runs stored) is failed with code `poison`.
    pub max_deliveries: u32,
    /// First retry delay after a transient failure; it doubles per attempt, with jitter.
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_max_secs: u64,
    /// Longest time one page may take (drawing and recognition); the page fails with
    /// `page_timeout`.
    pub page_timeout_secs: u64,
    /// Share of a document's pages that may fail (a timeout, an engine error, a PDF page that
    /// cannot be drawn) with the task still completing, with a warning per failed page. Above
    /// it, the task fails with the code of the last failed page. 0 fails on the first one.
    pub max_failed_page_ratio: f64,
    /// On SIGTERM/SIGINT, how long running tasks may take to finish before their leases are
    /// released for another worker.
    pub shutdown_grace_secs: u64,
    /// How often the reaper (expired leases) and the reconciler (queued tasks missing from the
    /// queue) run.
    pub recover_secs: u64,
    /// How often a worker reports to the registry (heartbeat, progress, memory) and reads back
    /// whether it is asked to drain and whether the queue is paused. Silent for two of these,
    /// it shows as `lost`.
    pub report_secs: u64,
    /// Private per-task temporary directories; default `{data_dir}/tmp`.
    pub temp_dir: Option<PathBuf>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 0,
            health_addr: "127.0.0.1:5000".into(),
            lease_secs: 60,
            max_attempts: 3,
            max_deliveries: 5,
            retry_base_ms: 1000,
            retry_max_secs: 60,
            page_timeout_secs: 300,
            max_failed_page_ratio: 0.1,
            shutdown_grace_secs: 30,
            recover_secs: 15,
            report_secs: 5,
            temp_dir: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest upload, in bytes; a larger one is refused with 413 and nothing is kept.
    pub max_upload_bytes: u64,
    /// Largest page, in pixels; larger images are refused before they are decoded. The
    /// default takes a US Legal page at 600 dpi (42.8 MP; A4 is 34.8 MP) and refuses
    /// decompression bombs (a 10 KB PNG can claim 81 MP).
    pub max_pixels: u64,
    /// Most pages in one document.
    pub max_pages: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_upload_bytes: 200 << 20,
            max_pixels: 48_000_000,
            max_pages: 1000,
        }
    }
}

/// What a task gets when its upload does not say. Runtime settings (`tasks.*`) override these.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TasksConfig {
    /// The result formats made at upload: `hocr`, `txt`, `json`, `pdf`, `alto`.
    pub formats: Vec<crate::render::Format>,
    /// Pages that already carry text: `auto` (use the text layer), `force` (OCR them), `skip`.
    pub ocr: crate::tasks::OcrPolicy,
}

impl Default for TasksConfig {
    fn default() -> Self {
        let defaults = crate::tasks::TaskOptions::default();
        TasksConfig {
            formats: defaults.formats,
            ocr: defaults.ocr,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days a finished task and its files are kept before workers erase them; 0 keeps them
    /// until deleted.
    pub days: u32,
}

/// Each account's allowance, unless an admin set the account's own; 0 is no limit.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    /// Pages read per calendar month (UTC).
    pub pages_per_month: u64,
    /// Bytes of uploaded files kept.
    pub stored_bytes: u64,
    /// Tasks queued or running at once.
    pub concurrent_tasks: u64,
    /// The largest upload, in bytes (within `limits.max_upload_bytes`).
    pub max_upload_bytes: u64,
}

/// Webhook deliveries (`crate::webhooks`), sent by workers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Let webhooks reach loopback, private, link-local and metadata addresses. Off on the
    /// internet: a user's URL must not reach the servers' own network. For tests and
    /// development only.
    pub allow_private_targets: bool,
    /// Seconds one attempt may take, connection included.
    pub timeout_secs: u64,
    /// The retry schedule's clock: 1 is real time; tests compress it (0.0001 turns 5 hours
    /// into 1.8 seconds).
    pub clock_scale: f64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            allow_private_targets: false,
            timeout_secs: 15,
            clock_scale: 1.0,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// A notice shown on top of every page; empty shows none.
    pub banner: String,
    /// Refuse new uploads (503 `read_only`); everything else works.
    pub read_only: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

/// Which database the configuration selects, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseTarget {
    Postgres(Secret),
    Sqlite(PathBuf),
}

impl Config {
    /// Loads defaults, then the config file, then `OCRD_*` variables from the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        // `OCRD_CONFIG` names the file (the `--config` flag); it is not a key.
        let env = Env::prefixed("OCRD_").ignore(&["config"]).split("__");
        Self::from_figment(Self::figment(file)?.merge(env))
    }

    /// The layered sources without the environment, so tests can add their own.
    pub fn figment(file: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) if !path.exists() => return Err(ConfigError::MissingFile(path.into())),
            Some(path) => figment = figment.merge(Toml::file(path)),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                figment = figment.merge(Toml::file(DEFAULT_CONFIG_FILE))
            }
            None => {}
        }
        Ok(figment)
    }

    pub fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let config: Config = figment.extract()?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.database_target()?;
        self.redis_url()?;
        if self.database.pool_size == 0 {
            return Err(ConfigError::invalid(
                "database.pool_size",
                "must be at least 1",
            ));
        }
        // Values that are also runtime settings obey the same rules here.
        crate::settings::Values::from_config(self)
            .check()
            .map_err(|e| match e {
                crate::settings::SettingsError::Invalid { key, reason } => {
                    ConfigError::invalid(key, reason)
                }
                other => ConfigError::invalid("settings", other.to_string()),
            })?;
        let primary_is_postgres = matches!(self.database_target()?, DatabaseTarget::Postgres(_));
        for url in &self.database.read_urls {
            let scheme = Url::parse(url.expose().trim()).map(|u| u.scheme().to_owned());
            if !primary_is_postgres || !matches!(scheme.as_deref(), Ok("postgres" | "postgresql")) {
                return Err(ConfigError::invalid(
                    "database.read_urls",
                    "take postgres:// URLs of replicas of a PostgreSQL database.url",
                ));
            }
        }
        if !(1..=120).contains(&self.webhooks.timeout_secs) {
            return Err(ConfigError::invalid(
                "webhooks.timeout_secs",
                "must be between 1 and 120",
            ));
        }
        if !(self.webhooks.clock_scale > 0.0 && self.webhooks.clock_scale <= 1.0) {
            return Err(ConfigError::invalid(
                "webhooks.clock_scale",
                "must be above 0 and at most 1 (real time)",
            ));
        }
        if !(36..=1200).contains(&self.ocr.pdf_dpi) {
            return Err(ConfigError::invalid(
                "ocr.pdf_dpi",
                "must be between 36 and 1200 (300 suits OCR)",
            ));
        }
        self.server.proxy_nets()?;
        let server = &self.server;
        if server.tls_cert.is_some() != server.tls_key.is_some() {
            return Err(ConfigError::invalid(
                "server.tls_key",
                "and server.tls_cert go together: set both for HTTPS, or neither",
            ));
        }
        if server.redirect_http.is_some()
            && !(server.tls()
                && server
                    .public_url
                    .as_deref()
                    .is_some_and(|u| u.starts_with("https://")))
        {
            return Err(ConfigError::invalid(
                "server.redirect_http",
                "needs TLS (server.tls_cert) and an https:// server.public_url to redirect to",
            ));
        }
        if let Some(url) = &server.public_url {
            let parsed = Url::parse(url).map_err(|e| {
                ConfigError::invalid("server.public_url", format!("is not a URL: {e}"))
            })?;
            if !matches!(parsed.scheme(), "http" | "https") || !parsed.has_host() {
                return Err(ConfigError::invalid(
                    "server.public_url",
                    "must be an http:// or https:// URL with a host",
                ));
            }
        }
        if server.allowed_hosts.iter().any(|h| h.trim().is_empty()) {
            return Err(ConfigError::invalid(
                "server.allowed_hosts",
                "has an empty entry",
            ));
        }
        let limits = &self.rate_limits;
        if limits.api_per_second > 0 && limits.api_burst == 0 {
            return Err(ConfigError::invalid(
                "rate_limits.api_burst",
                "must be at least 1 while rate_limits.api_per_second is on",
            ));
        }
        if limits.upload_bytes_per_minute > 0
            && limits.upload_bytes_per_minute < self.limits.max_upload_bytes
        {
            return Err(ConfigError::invalid(
                "rate_limits.upload_bytes_per_minute",
                "must be at least limits.max_upload_bytes (or 0 for no limit), or the largest uploads could never pass",
            ));
        }
        for origin in &self.server.cors_origins {
            let parsed = Url::parse(origin).ok();
            let bare = parsed.as_ref().is_some_and(|u| {
                u.has_host() && u.path() == "/" && u.query().is_none() && !origin.ends_with('/')
            });
            if !bare {
                return Err(ConfigError::invalid(
                    "server.cors_origins",
                    format!(
                        "`{origin}` is not an origin like https://app.example.com (scheme, host, optional port, no path)"
                    ),
                ));
            }
        }
        let w = &self.worker;
        for (key, value) in [
            ("worker.lease_secs", w.lease_secs),
            ("worker.max_attempts", w.max_attempts as u64),
            ("worker.max_deliveries", w.max_deliveries as u64),
            ("worker.page_timeout_secs", w.page_timeout_secs),
            ("worker.recover_secs", w.recover_secs),
            ("worker.report_secs", w.report_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        if !(0.0..1.0).contains(&w.max_failed_page_ratio) {
            return Err(ConfigError::invalid(
                "worker.max_failed_page_ratio",
                "must be at least 0 and below 1",
            ));
        }
        if self.auth.registration == Registration::Invite && self.auth.invite_code.is_empty() {
            return Err(ConfigError::invalid(
                "auth.invite_code",
                "is required when auth.registration = \"invite\"",
            ));
        }
        if self.auth.min_password_length < 8 {
            return Err(ConfigError::invalid(
                "auth.min_password_length",
                "must be at least 8",
            ));
        }
        if self.storage.kind == StorageKind::S3 {
            let bucket = self.storage.bucket.as_deref().unwrap_or("");
            if bucket.trim().is_empty() {
                return Err(ConfigError::invalid(
                    "storage.bucket",
                    "is required when storage.kind = \"s3\"",
                ));
            }
            if let Some(endpoint) = &self.storage.endpoint {
                let url = Url::parse(endpoint).map_err(|e| {
                    ConfigError::invalid("storage.endpoint", format!("is not a URL: {e}"))
                })?;
                if url.scheme() == "http" && !self.storage.allow_http {
                    return Err(ConfigError::invalid(
                        "storage.endpoint",
                        "uses http:// but storage.allow_http is false",
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn database_target(&self) -> Result<DatabaseTarget, ConfigError> {
        let raw = self.database.url.expose().trim();
        if raw.is_empty() {
            return Ok(DatabaseTarget::Sqlite(self.data_dir.join("ocrd.db")));
        }
        if let Some(path) = raw.strip_prefix("sqlite://") {
            return Ok(DatabaseTarget::Sqlite(PathBuf::from(path)));
        }
        let url = Url::parse(raw).map_err(|e| {
            ConfigError::invalid("database.url", format!("is not a valid URL: {e}"))
        })?;
        match url.scheme() {
            "postgres" | "postgresql" if url.host_str().is_some() => {
                Ok(DatabaseTarget::Postgres(self.database.url.clone()))
            }
            "postgres" | "postgresql" => Err(ConfigError::invalid(
                "database.url",
                "has no host (expected postgres://user@host:port/db)",
            )),
            other => Err(ConfigError::invalid(
                "database.url",
                format!(
                    "has unsupported scheme `{other}` (expected postgres:// or sqlite://, or empty for the embedded SQLite)"
                ),
            )),
        }
    }

    /// `None` selects the in-process adapters.
    pub fn redis_url(&self) -> Result<Option<&str>, ConfigError> {
        let raw = self.redis.url.expose().trim();
        if raw.is_empty() {
            return Ok(None);
        }
        let url = Url::parse(raw)
            .map_err(|e| ConfigError::invalid("redis.url", format!("is not a valid URL: {e}")))?;
        match url.scheme() {
            "redis" | "rediss" => Ok(Some(raw)),
            other => Err(ConfigError::invalid(
                "redis.url",
                format!("has unsupported scheme `{other}` (expected redis:// or rediss://)"),
            )),
        }
    }

    /// How documents are read: the page limits and the PDF resolution.
    pub fn document_limits(&self) -> crate::document::Limits {
        crate::document::Limits {
            max_pixels: self.limits.max_pixels,
            max_pages: self.limits.max_pages,
            pdf_dpi: self.ocr.pdf_dpi,
        }
    }

    pub fn worker_temp_dir(&self) -> PathBuf {
        self.worker
            .temp_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("tmp"))
    }

    pub fn local_blob_dir(&self) -> PathBuf {
        self.storage
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("blobs"))
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// A configuration value that must never reach a log line or `Debug` output.
///
/// It serialises redacted, too: a URL keeps everything but its password, anything else becomes
/// `[redacted]`. Only [`Secret::expose`] gives the value.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }

    pub fn redacted(&self) -> String {
        if self.0.is_empty() {
            return String::new();
        }
        match Url::parse(&self.0) {
            Ok(mut url) if url.has_host() => {
                if url.password().is_some() {
                    let _ = url.set_password(Some("REDACTED"));
                }
                // Drivers also take credentials as query parameters (`?password=…`).
                let secret_key = |k: &str| {
                    let k = k.to_ascii_lowercase();
                    ["pass", "secret", "token", "key"]
                        .iter()
                        .any(|s| k.contains(s))
                };
                if url.query_pairs().any(|(k, _)| secret_key(&k)) {
                    let pairs: Vec<(String, String)> = url
                        .query_pairs()
                        .map(|(k, v)| {
                            let v = if secret_key(&k) {
                                "REDACTED".into()
                            } else {
                                v.into_owned()
                            };
                            (k.into_owned(), v)
                        })
                        .collect();
                    url.query_pairs_mut().clear().extend_pairs(pairs);
                }
                url.to_string()
            }
            _ => "[redacted]".into(),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({:?})", self.redacted())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}
