//! Logging, set up once per process: an `EnvFilter` from `RUST_LOG` or `log.level` (INFO by
//! default), human-readable or JSON lines on stderr.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. A second call (tests) leaves the first in place.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        // ONNX Runtime reports its start-up at INFO through `ort`, and actix its worker
        // threads: noise for users, who get one "ocrd is ready" line instead.
        .or_else(|_| EnvFilter::try_new(format!("{},ort=warn,actix_server=warn", config.level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal, not for log files and collectors.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
