//! `ocrd work` (a worker of a distributed install) and `ocrd all-in-one` (everything in one
//! process on the embedded defaults).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::app::{App, AppError};
use crate::blobs::BlobError;
use crate::config::{Config, EngineKind};
use crate::ocr::{self, Engine, runtime::Device};
use crate::outage::Outage;
use crate::web::Scope;
use crate::worker::{Worker, WorkerOptions, backoff};

#[derive(Debug, clap::Args)]
pub struct WorkArgs {
    /// Tasks processed at once; default `worker.concurrency` (0: the engine's parallelism).
    #[arg(long)]
    pub concurrency: Option<usize>,

    /// The engine; default `ocr.engine`.
    #[arg(long, value_parser = super::parse_engine)]
    pub engine: Option<EngineKind>,

    /// The Qwen3-VL export to load; default `ocr.qwen3vl.model_dir`.
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<std::path::PathBuf>,

    /// CUDA devices, e.g. `0,1`: one engine per device, tasks spread across them.
    /// Default `ocr.gpus`; none runs on the CPU.
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    pub gpus: Option<Vec<u32>>,

    /// Health server address (/healthz, /readyz, /metrics); default `worker.health_addr`.
    #[arg(long, value_name = "ADDR")]
    pub health_addr: Option<String>,
}

pub fn work(mut config: Config, args: WorkArgs) -> anyhow::Result<()> {
    if let Some(n) = args.concurrency {
        config.worker.concurrency = n;
    }
    if let Some(engine) = args.engine {
        config.ocr.engine = engine;
    }
    if let Some(dir) = args.model_dir {
        config.ocr.qwen3vl.model_dir = Some(dir);
    }
    if let Some(gpus) = args.gpus {
        config.ocr.gpus = gpus;
    }
    if let Some(addr) = args.health_addr {
        config.worker.health_addr = addr;
    }
    anyhow::ensure!(
        config.redis_url()?.is_some(),
        "`ocrd work` needs redis.url (OCRD_REDIS__URL): without Redis the queue lives inside one \
         process, which is what `ocrd all-in-one` is for"
    );
    // Models first: a worker that cannot recognise anything should fail before it connects.
    let engines = load_engines(&config)?;
    let health_addr = config.worker.health_addr.clone();
    super::runtime()?.block_on(async move {
        let app = build_app(config).await.context("starting the worker")?;
        run(
            app,
            Some(engines),
            &health_addr,
            Scope::Operations,
            "worker",
        )
        .await
    })
}

pub fn all_in_one(config: Config) -> anyhow::Result<()> {
    let engines = load_engines(&config)?;
    let bind = config.server.bind.clone();
    super::runtime()?.block_on(async move {
        let app = build_app(config).await.context("starting ocrd")?;
        tracing::info!(
            database = app.db.backend(),
            queue = if app.redis.is_some() {
                "redis"
            } else {
                "in-process"
            },
            "all-in-one"
        );
        run(app, Some(engines), &bind, Scope::Full, "all-in-one").await
    })
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on; default `server.bind`.
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
}

pub fn serve(mut config: Config, args: ServeArgs) -> anyhow::Result<()> {
    if let Some(bind) = args.bind {
        config.server.bind = bind;
    }
    let bind = config.server.bind.clone();
    super::runtime()?.block_on(async move {
        let app = build_app(config).await.context("starting the server")?;
        if app.redis.is_none() {
            tracing::warn!(
                "redis.url is empty: tasks are queued in this process, where no worker runs; \
                 set redis.url for `ocrd work` processes, or run `ocrd all-in-one`"
            );
        }
        run(app, None, &bind, Scope::Full, "serve").await
    })
}

/// Builds the ports, waiting with backoff while the database or storage is unreachable, so a
/// supervisor restarting the process does not turn an outage into a crash loop.
async fn build_app(config: Config) -> Result<App, AppError> {
    crate::process::prepare(&config.data_dir).map_err(|e| {
        AppError::Config(crate::config::ConfigError::Invalid {
            key: "data_dir",
            reason: format!("{}: {e}", config.data_dir.display()),
        })
    })?;
    let outage = Outage::new("a dependency (database or storage)");
    let mut failures = 0;
    loop {
        match App::build(config.clone()).await {
            Ok(app) => {
                outage.up();
                return Ok(app);
            }
            Err(e) if is_outage(&e) => {
                outage.down(&e);
                failures += 1;
                let wait = backoff(
                    Duration::from_millis(500),
                    Duration::from_secs(15),
                    failures,
                );
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    signal = shutdown_signal() => {
                        tracing::info!("{signal} while waiting; exiting");
                        return Err(e);
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
}

fn is_outage(e: &AppError) -> bool {
    match e {
        AppError::Db(e) => e.is_transient(),
        AppError::Blobs(BlobError::Store(_)) => true,
        _ => false,
    }
}

/// One engine per requested GPU, or one on the CPU.
fn load_engines(config: &Config) -> anyhow::Result<Vec<Arc<dyn Engine>>> {
    if config.ocr.gpus.is_empty() {
        return Ok(vec![ocr::load_engine(&config.ocr, Device::Cpu)?]);
    }
    config
        .ocr
        .gpus
        .iter()
        .map(|&id| {
            ocr::load_engine(&config.ocr, Device::Cuda(id)).with_context(|| {
                format!(
                    "GPU {id} requested (--gpus / ocr.gpus), but CUDA cannot be used; \
                     install the GPU runtime with `scripts/fetch-models.sh --gpu`, or leave \
                     --gpus out to run on the CPU"
                )
            })
        })
        .collect()
}

/// Runs the HTTP server, and the worker when there are engines, until a signal; then shuts
/// down gracefully.
async fn run(
    app: App,
    engines: Option<Vec<Arc<dyn Engine>>>,
    http_addr: &str,
    scope: Scope,
    mode: &str,
) -> anyhow::Result<()> {
    // The console's log view reads every process's records from one Redis stream.
    crate::logs::set_process(if mode == "worker" { "work" } else { mode });
    if let Some(pool) = &app.redis {
        crate::logs::ship(pool.clone(), &app.config.redis.key_prefix);
    }
    let worker = engines.map(|engines| {
        Arc::new(Worker::new(
            app.clone(),
            engines,
            WorkerOptions::from_config(&app.config),
        ))
    });
    let worker_metrics = worker.as_ref().map(|w| w.metrics());
    let config = app.config.clone();
    let bound = crate::web::bind(http_addr, app.clone(), worker_metrics.clone(), scope);
    let (server, bound) = bound.with_context(|| format!("binding {http_addr}"))?;
    let scheme = if scope == Scope::Full && config.server.tls() {
        "https"
    } else {
        "http"
    };
    tracing::info!(addr = %bound, "{mode}: listening ({scheme})");
    let mut handles = vec![server.handle()];
    let mut server = tokio::spawn(server);
    if scope == Scope::Full {
        warn_if_exposed(&config.server, bound);
        warn_if_public_url_elsewhere(&config.server, bound);
        let mut extra = Vec::new();
        if let (Some(addr), Some(public_url)) =
            (&config.server.redirect_http, &config.server.public_url)
        {
            let (redirect, at) = crate::web::bind_redirect(addr, public_url)
                .with_context(|| format!("binding server.redirect_http {addr}"))?;
            tracing::info!(addr = %at, to = %public_url, "redirecting HTTP to HTTPS");
            extra.push(redirect);
        }
        if let Some(addr) = &config.server.ops_bind {
            let (ops, at) = crate::web::bind(addr, app.clone(), worker_metrics, Scope::Operations)
                .with_context(|| format!("binding server.ops_bind {addr}"))?;
            tracing::info!(addr = %at, "operations listener (/healthz, /readyz, /metrics)");
            extra.push(ops);
        }
        for listener in extra {
            handles.push(listener.handle());
            tokio::spawn(listener);
        }
        announce_ready(&app, bound).await;
    }
    let shutdown = CancellationToken::new();
    // Health lists every web server with its version and uptime, as it lists workers.
    let registry = (scope == Scope::Full).then(|| {
        tokio::spawn(crate::admin::workers::serve_heartbeat(
            app.clone(),
            shutdown.clone(),
        ))
    });
    drop(app);

    let mut work = match worker {
        Some(worker) => tokio::spawn(worker.run(shutdown.clone())),
        // Without a worker, "the worker ended" means "shutdown was requested".
        None => tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.cancelled().await }
        }),
    };
    let ended = tokio::select! {
        signal = shutdown_signal() => {
            tracing::info!("{signal}: stopping; running tasks get worker.shutdown_grace_secs to finish");
            shutdown.cancel();
            // A second signal stops at once; leases then expire and other workers take over.
            tokio::select! {
                _ = &mut work => "worker",
                signal = shutdown_signal() => {
                    tracing::warn!("{signal} again: exiting without waiting");
                    "signal"
                }
            }
        }
        _ = &mut work => "worker",
        _ = &mut server => "server",
    };
    tracing::info!("{mode}: {ended} ended; stopping");
    shutdown.cancel();
    if ended == "server" {
        // Let running tasks finish or be handed back before the process ends.
        let _ = work.await;
    }
    for handle in handles {
        handle.stop(true).await;
    }
    if let Some(registry) = registry {
        // Reports this server stopped.
        let _ = registry.await;
    }
    Ok(())
}

/// A listener on a public address that neither speaks TLS nor sits behind a configured proxy
/// sends passwords and session cookies in the clear.
fn warn_if_exposed(server: &crate::config::ServerConfig, bound: std::net::SocketAddr) {
    if !bound.ip().is_loopback() && !server.tls() && server.trusted_proxies.is_empty() {
        tracing::warn!(
            addr = %bound,
            "listening on a non-loopback address without TLS and without trusted proxies: \
             passwords and session cookies cross the network in the clear. Set server.tls_cert \
             and server.tls_key, or put a TLS proxy in front and list it in \
             server.trusted_proxies, or bind to 127.0.0.1"
        );
    }
}

/// `server.public_url` on this machine (localhost, a loopback address) with another port than
/// the one bound: password-reset links and redirects would lead nowhere.
fn warn_if_public_url_elsewhere(server: &crate::config::ServerConfig, bound: std::net::SocketAddr) {
    let Some(url) = server
        .public_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
    else {
        return;
    };
    let on_this_machine = match url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if on_this_machine
        && bound.ip().is_loopback()
        && url.port_or_known_default() != Some(bound.port())
    {
        tracing::warn!(
            public_url = %url,
            addr = %bound,
            "server.public_url names another port than the one ocrd listens on: password-reset \
             links and redirects will point there. Leave it unset (it then follows server.bind) \
             or correct it"
        );
    }
}

/// One plain line for the person who started ocrd: where to open it and, on a new install,
/// how the first admin account comes about.
async fn announce_ready(app: &App, bound: std::net::SocketAddr) {
    use futures::FutureExt;
    let server = &app.config.server;
    let url = match &server.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            // A wildcard bind answers on loopback too: that is what a person here can open.
            let ip = match bound.ip() {
                std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
                    std::net::Ipv4Addr::LOCALHOST.into()
                }
                std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
                    std::net::Ipv6Addr::LOCALHOST.into()
                }
                ip => ip,
            };
            let scheme = if server.tls() { "https" } else { "http" };
            format!("{scheme}://{}", std::net::SocketAddr::new(ip, bound.port()))
        }
    };
    let accounts = app
        .db
        .run(|c| async move { crate::db::models::User::count(c).await }.boxed())
        .await;
    let first = match (accounts, &app.config.auth.registration) {
        (Ok(0), crate::config::Registration::Closed) => {
            " — registration is closed: create the first admin with `ocrd admin create-user --email EMAIL --admin`"
        }
        (Ok(0), _) => " — the first account you register becomes the admin",
        _ => "",
    };
    println!("ocrd is ready: open {url}{first}");
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process still stops on the default action.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
