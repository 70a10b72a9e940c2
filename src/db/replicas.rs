//! PostgreSQL read replicas (`database.read_urls`), for [`super::DbPool::read`].
//!
//! **Where reads go.** Lists, search, statistics and the console's lists read through
//! `DbPool::read`: a replica, taken in turn among the healthy ones. Everything else uses
//! `DbPool::run` on the primary: writes, claims and leases, and every read a caller needs to
//! see its own write in (a task just uploaded, cancelled or retried; sign-in and sessions;
//! quota checks; a task's page right after its upload). A replica's lag is bounded, not zero:
//! a list read just after an upload may miss that upload for up to the lag (the live updates
//! bring it).
//!
//! **Health.** A watcher asks every replica each [`CHECK_EVERY`] how far it is behind (0 when it
//! has replayed all it received, else the age of the last transaction it replayed). A replica
//! that does not answer, or lags more than `database.max_replica_lag_secs`, takes no reads until
//! it is back; a checkout that fails marks it down at once. With none healthy, reads go to the
//! primary: a replica going away costs nothing but load on the primary.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::Double;
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::DbError;

/// How often each replica's health and lag are checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long a read waits for a replica's connection before it goes to the primary.
const CHECKOUT: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadTarget {
    /// `replica` or `primary`.
    target: &'static str,
}

/// Reads by where they ran.
pub type ReadCounter = Family<ReadTarget, Counter>;

struct Replica {
    /// The URL without its password, for logs.
    name: String,
    pool: Pool<AsyncPgConnection>,
    healthy: AtomicBool,
}

pub(super) struct Replicas {
    list: Vec<Replica>,
    next: AtomicUsize,
    max_lag: Duration,
    reads: ReadCounter,
}

impl Replicas {
    pub(super) fn none() -> Replicas {
        Replicas {
            list: Vec::new(),
            next: AtomicUsize::new(0),
            max_lag: Duration::ZERO,
            reads: ReadCounter::default(),
        }
    }

    /// Pools for `urls`; nothing connects until the watcher's first check.
    pub(super) fn open(urls: &[&str], size: usize, max_lag: Duration) -> Result<Replicas, DbError> {
        let mut list = Vec::with_capacity(urls.len());
        for url in urls {
            let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(*url);
            let pool = Pool::builder(manager)
                .max_size(size)
                .wait_timeout(Some(CHECKOUT))
                .create_timeout(Some(CHECKOUT))
                .runtime(deadpool::Runtime::Tokio1)
                .build()
                .map_err(|e| DbError::Connect(e.to_string()))?;
            list.push(Replica {
                name: redacted(url),
                pool,
                // Until the first check says otherwise.
                healthy: AtomicBool::new(false),
            });
        }
        Ok(Replicas {
            list,
            max_lag,
            ..Replicas::none()
        })
    }

    pub(super) fn any(&self) -> bool {
        !self.list.is_empty()
    }

    pub(super) fn counter(&self) -> ReadCounter {
        self.reads.clone()
    }

    /// A connection to the next healthy replica, or `None` (read from the primary).
    pub(super) async fn checkout(&self) -> Option<Object<AsyncPgConnection>> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.list.len() {
            let replica = &self.list[(start + i) % self.list.len()];
            if !replica.healthy.load(Ordering::Relaxed) {
                continue;
            }
            match replica.pool.get().await {
                Ok(conn) => {
                    self.count("replica");
                    return Some(conn);
                }
                Err(e) => replica.set_health(false, &format!("no connection: {e}")),
            }
        }
        self.count("primary");
        None
    }

    fn count(&self, target: &'static str) {
        self.reads.get_or_create(&ReadTarget { target }).inc();
    }
}

impl Replica {
    fn set_health(&self, healthy: bool, why: &str) {
        if self.healthy.swap(healthy, Ordering::Relaxed) != healthy {
            if healthy {
                tracing::info!(replica = %self.name, "read replica in use");
            } else {
                tracing::warn!(replica = %self.name, why, "read replica not used; reads go to the primary");
            }
        }
    }

    /// Seconds behind the primary: 0 when everything received is replayed.
    async fn lag(&self) -> Result<Duration, String> {
        use diesel_async::RunQueryDsl;
        #[derive(QueryableByName)]
        struct Lag {
            #[diesel(sql_type = Double)]
            seconds: f64,
        }
        let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
        let lag: Lag = diesel::sql_query(
            "SELECT CASE WHEN NOT pg_is_in_recovery() \
                           OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
                    ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) \
                    END::float8 AS seconds",
        )
        .get_result(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
        Ok(Duration::from_secs_f64(lag.seconds.max(0.0)))
    }
}

/// Checks every replica each [`CHECK_EVERY`] for as long as the pool lives.
pub(super) fn watch(replicas: &Arc<Replicas>, runtime: &tokio::runtime::Handle) {
    let weak: Weak<Replicas> = Arc::downgrade(replicas);
    runtime.spawn(async move {
        loop {
            let Some(replicas) = weak.upgrade() else {
                return;
            };
            for replica in &replicas.list {
                match tokio::time::timeout(CHECK_EVERY * 2, replica.lag()).await {
                    Ok(Ok(lag)) if lag <= replicas.max_lag => replica.set_health(true, ""),
                    Ok(Ok(lag)) => {
                        replica.set_health(false, &format!("{:.1} s behind", lag.as_secs_f64()))
                    }
                    Ok(Err(e)) => replica.set_health(false, &e),
                    Err(_) => replica.set_health(false, "no answer"),
                }
            }
            drop(replicas);
            tokio::time::sleep(CHECK_EVERY).await;
        }
    });
}

/// `postgres://user@host:port/db`, without the password.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => "(an unreadable URL)".to_owned(),
    }
}
