//! Logging, set up once per process: an `EnvFilter` from `RUST_LOG` or `log.level` (INFO by
//! default), human-readable or JSON lines on stderr, and the console's copy of each record
//! (`crate::logs`).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. A second call (tests) leaves the first in place.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        // ONNX Runtime reports its start-up at INFO through `ort`, and actix its worker
        // threads: noise for users, who get one "ocrd is ready" line instead.
        .or_else(|_| EnvFilter::try_new(format!("{},ort=warn,actix_server=warn", config.level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal, not for log files and collectors.
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(crate::logs::LogLayer);
    let _ = match config.format {
        LogFormat::Pretty => registry.with(stderr).try_init(),
        LogFormat::Json => registry.with(stderr.json().flatten_event(true)).try_init(),
    };
}
