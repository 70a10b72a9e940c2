//! Logging an outage of a dependency once when it starts and once when it ends, however many
//! attempts fail in between: a worker retrying every second must not flood the log.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug)]
pub struct Outage {
    what: &'static str,
    down: AtomicBool,
}

impl Outage {
    pub const fn new(what: &'static str) -> Outage {
        Outage {
            what,
            down: AtomicBool::new(false),
        }
    }

    /// Records a failure; logs only the first of an outage.
    pub fn down(&self, error: &dyn Display) {
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %error, "{} unavailable; waiting and retrying", self.what);
        }
    }

    /// Records a success; logs the end of an outage.
    pub fn up(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("{} is back", self.what);
        }
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }
}
