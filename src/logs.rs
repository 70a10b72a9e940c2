//! The recent log records of every process, for the console: a tracing layer keeps each
//! record at INFO or above in a ring in memory and, where Redis is configured, ships it to one
//! length-capped Redis stream that every `serve` and `work` writes to. `GET /api/admin/logs`
//! reads the stream (or the ring, in all-in-one), and the console's live tail follows it over
//! the WebSocket.
//!
//! Logging never waits on this: a record that finds the shipping queue full is dropped from
//! the stream (it still went to stderr), and counted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;

/// Records kept in memory per process.
const RING: usize = 2000;
/// Records kept in the Redis stream (approximately: trimmed with `~`).
const STREAM_LEN: usize = 20_000;
/// Longest message kept, in characters.
const MAX_MESSAGE: usize = 2000;

/// One log record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogRecord {
    /// Increasing: the Redis stream entry id, or a counter in all-in-one.
    pub id: String,
    /// RFC 3339, UTC.
    pub at: String,
    /// `ERROR`, `WARN` or `INFO`.
    pub level: String,
    /// The module that logged it.
    pub target: String,
    pub message: String,
    /// The process: its role, host and pid, e.g. `work@gpu-1:4711`.
    pub process: String,
    /// The task it is about, when it names one.
    pub task: Option<String>,
    /// The record's other fields.
    #[schema(value_type = Object)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl LogRecord {
    fn rank(&self) -> u8 {
        rank(&self.level)
    }
}

fn rank(level: &str) -> u8 {
    match level {
        "ERROR" => 3,
        "WARN" => 2,
        _ => 1,
    }
}

/// This process's records: the ring, the live feed, and the queue to the shipper.
struct Sink {
    ring: Mutex<VecDeque<LogRecord>>,
    live: broadcast::Sender<LogRecord>,
    ship: OnceLock<mpsc::Sender<LogRecord>>,
    process: OnceLock<String>,
    counter: AtomicU64,
    dropped: AtomicU64,
}

fn sink() -> &'static Sink {
    static SINK: OnceLock<Sink> = OnceLock::new();
    SINK.get_or_init(|| Sink {
        ring: Mutex::new(VecDeque::with_capacity(RING)),
        live: broadcast::channel(1024).0,
        ship: OnceLock::new(),
        process: OnceLock::new(),
        counter: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
    })
}

/// Names this process in its records: its role (`serve`, `work`, `all-in-one`), host and pid.
pub fn set_process(role: &str) {
    let _ = sink().process.set(format!(
        "{role}@{}:{}",
        crate::process::hostname(),
        std::process::id()
    ));
}

/// Records shipped to nowhere because the shipping queue was full.
pub fn dropped() -> u64 {
    sink().dropped.load(Ordering::Relaxed)
}

/// The tracing layer that feeds the sink.
pub struct LogLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        // The shipper's own troubles would feed themselves.
        if *meta.level() > tracing::Level::INFO || meta.target().starts_with("ocrd::logs") {
            return;
        }
        let mut visitor = Fields::default();
        event.record(&mut visitor);
        let sink = sink();
        let n = sink.counter.fetch_add(1, Ordering::Relaxed) + 1;
        let record = LogRecord {
            id: format!("{n:020}"),
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            level: meta.level().to_string(),
            target: meta.target().to_owned(),
            message: visitor.message,
            process: sink
                .process
                .get()
                .cloned()
                .unwrap_or_else(|| format!("ocrd@{}", std::process::id())),
            task: visitor.task,
            fields: visitor.fields,
        };
        if let Some(ship) = sink.ship.get() {
            if ship.try_send(record.clone()).is_err() {
                sink.dropped.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            // Without Redis the ring is what the console reads, and this process is all there
            // is to tail.
            let _ = sink.live.send(record.clone());
        }
        let mut ring = sink.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() == RING {
            ring.pop_front();
        }
        ring.push_back(record);
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    task: Option<String>,
    fields: serde_json::Map<String, serde_json::Value>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        match (field.name(), value) {
            ("message", serde_json::Value::String(s)) => {
                self.message = s.chars().take(MAX_MESSAGE).collect()
            }
            ("task", serde_json::Value::String(s)) => self.task = Some(s),
            (name, value) => {
                self.fields.insert(name.to_owned(), value);
            }
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text: String = format!("{value:?}").chars().take(MAX_MESSAGE).collect();
        self.put(field, text.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(
            field,
            value.chars().take(MAX_MESSAGE).collect::<String>().into(),
        );
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
}

fn stream_key(prefix: &str) -> String {
    format!("{prefix}logs")
}

/// A stream entry as Redis returns it: its id and field-value pairs.
type Entry = (String, Vec<(String, String)>);

/// The record a stream entry holds (field `r`), with the entry's id.
fn decode((id, fields): Entry) -> Option<LogRecord> {
    let (_, json) = fields.into_iter().find(|(k, _)| k == "r")?;
    let mut record: LogRecord = serde_json::from_str(&json).ok()?;
    record.id = id;
    Some(record)
}

/// Ships this process's records to the Redis stream from now on. Call once, in a mode that
/// runs (`serve`, `work`, `all-in-one` with Redis).
pub fn ship(pool: deadpool_redis::Pool, key_prefix: &str) {
    let (tx, mut rx) = mpsc::channel::<LogRecord>(4096);
    if sink().ship.set(tx).is_err() {
        return;
    }
    let key = stream_key(key_prefix);
    tokio::spawn(async move {
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, 256).await > 0 {
            let mut pipe = redis::pipe();
            for record in batch.drain(..) {
                let json = serde_json::to_string(&record).unwrap_or_default();
                pipe.cmd("XADD")
                    .arg(&key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(STREAM_LEN)
                    .arg("*")
                    .arg("r")
                    .arg(json)
                    .ignore();
            }
            let sent = async {
                let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                pipe.query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| e.to_string())
            };
            if let Err(e) = sent.await {
                // Not logged as a warning: that record would come back here.
                tracing::debug!(error = %e, "cannot ship log records");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
}

/// Which records to read.
#[derive(Clone, Debug, Default)]
pub struct LogFilter {
    /// At least this level: `ERROR`, `WARN` or `INFO` (default).
    pub level: Option<String>,
    /// A part of the process name, e.g. `work` or a host.
    pub process: Option<String>,
    pub task: Option<String>,
    /// Only records older than this id.
    pub before: Option<String>,
}

impl LogFilter {
    pub fn matches(&self, record: &LogRecord) -> bool {
        self.level
            .as_deref()
            .is_none_or(|level| record.rank() >= rank(level))
            && self
                .process
                .as_deref()
                .is_none_or(|p| record.process.contains(p))
            && self
                .task
                .as_deref()
                .is_none_or(|t| record.task.as_deref() == Some(t))
    }
}

/// Records scanned per request at most, so a filter that matches little stays cheap.
const SCAN: usize = 10_000;

/// The newest records matching `filter`, newest first, at most `limit`, from the Redis stream
/// where there is one, else from this process's ring.
pub async fn recent(
    redis: Option<(&deadpool_redis::Pool, &str)>,
    filter: &LogFilter,
    limit: usize,
) -> Result<Vec<LogRecord>, String> {
    let Some((pool, prefix)) = redis else {
        let ring = sink().ring.lock().unwrap_or_else(|e| e.into_inner());
        return Ok(ring
            .iter()
            .rev()
            .filter(|r| filter.before.as_deref().is_none_or(|b| r.id.as_str() < b))
            .filter(|r| filter.matches(r))
            .take(limit)
            .cloned()
            .collect());
    };
    let key = stream_key(prefix);
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let mut found = Vec::new();
    // XREVRANGE's end is inclusive: `(id` makes it exclusive.
    let mut end = filter
        .before
        .as_deref()
        .map_or_else(|| "+".to_owned(), |b| format!("({b}"));
    let mut scanned = 0;
    while found.len() < limit && scanned < SCAN {
        let page: Vec<Entry> = redis::cmd("XREVRANGE")
            .arg(&key)
            .arg(&end)
            .arg("-")
            .arg("COUNT")
            .arg(500)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let Some((last, _)) = page.last() else { break };
        end = format!("({last}");
        scanned += page.len();
        for record in page.into_iter().filter_map(decode) {
            if filter.matches(&record) && found.len() < limit {
                found.push(record);
            }
        }
    }
    Ok(found)
}

/// The live feed of new records for this process's sockets: in all-in-one straight from the
/// layer, with Redis from the stream (one reader per process, started on first use).
pub fn live(redis_url: Option<&str>, key_prefix: &str) -> broadcast::Receiver<LogRecord> {
    let sink = sink();
    if let Some(url) = redis_url {
        // One reader per stream (a process serves one; tests run several installs).
        static TAILED: Mutex<Vec<String>> = Mutex::new(Vec::new());
        let key = stream_key(key_prefix);
        let mut tailed = TAILED.lock().unwrap_or_else(|e| e.into_inner());
        if !tailed.contains(&key) {
            tailed.push(key.clone());
            tokio::spawn(tail(url.to_owned(), key));
        }
    }
    sink.live.subscribe()
}

/// Follows the Redis stream from its end into the live feed, reconnecting after an outage.
async fn tail(url: String, key: String) {
    let mut last = "$".to_owned();
    loop {
        let followed = async {
            let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| e.to_string())?;
            loop {
                let read: Option<Vec<(String, Vec<Entry>)>> = redis::cmd("XREAD")
                    .arg("BLOCK")
                    .arg(5000)
                    .arg("COUNT")
                    .arg(200)
                    .arg("STREAMS")
                    .arg(&key)
                    .arg(&last)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                for (_, entries) in read.unwrap_or_default() {
                    for entry in entries {
                        last = entry.0.clone();
                        if let Some(record) = decode(entry) {
                            let _ = sink().live.send(record);
                        }
                    }
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), String>(())
        };
        if let Err(e) = followed.await {
            tracing::debug!(error = %e, "the log tail lost Redis; reconnecting");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(level: &str, process: &str, task: Option<&str>) -> LogRecord {
        LogRecord {
            id: "1".into(),
            at: String::new(),
            level: level.into(),
            target: "t".into(),
            message: "m".into(),
            process: process.into(),
            task: task.map(str::to_owned),
            fields: Default::default(),
        }
    }

    #[tokio::test]
    async fn records_go_to_the_ring_and_the_live_feed_without_redis() {
        use tracing_subscriber::layer::SubscriberExt;
        let mut feed = live(None, "");
        let marker = format!("marker-{}", std::process::id());
        let subscriber = tracing_subscriber::registry().with(LogLayer);
        tracing::subscriber::with_default(subscriber, || {
            // Not under `ocrd::logs`, whose records are not kept.
            tracing::info!(target: "ocrd::elsewhere", task = "t-1", pages = 3, "{marker}");
            tracing::debug!(target: "ocrd::elsewhere", "below INFO: not kept");
        });
        let found = recent(None, &LogFilter::default(), RING).await.unwrap();
        let record = found
            .iter()
            .find(|r| r.message == marker)
            .expect("in the ring");
        assert_eq!(record.task.as_deref(), Some("t-1"));
        assert_eq!(record.fields["pages"], 3);
        assert!(!found.iter().any(|r| r.message.contains("below INFO")));
        let heard = loop {
            let r = feed.recv().await.unwrap();
            if r.message == marker {
                break r;
            }
        };
        assert_eq!(heard.id, record.id);
    }

    #[test]
    fn the_filter_takes_a_minimum_level_a_process_part_and_a_task() {
        let warn = LogFilter {
            level: Some("WARN".into()),
            ..LogFilter::default()
        };
        assert!(warn.matches(&record("ERROR", "work@a:1", None)));
        assert!(warn.matches(&record("WARN", "work@a:1", None)));
        assert!(!warn.matches(&record("INFO", "work@a:1", None)));
        let work_on_a = LogFilter {
            process: Some("work@a".into()),
            task: Some("t1".into()),
            ..LogFilter::default()
        };
        assert!(work_on_a.matches(&record("INFO", "work@a:1", Some("t1"))));
        assert!(!work_on_a.matches(&record("INFO", "serve@a:1", Some("t1"))));
        assert!(!work_on_a.matches(&record("INFO", "work@a:1", Some("t2"))));
    }
}
