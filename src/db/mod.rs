//! The database port: PostgreSQL in production, SQLite as the embedded default.
//!
//! Both run through diesel-async. A [`DbPool`] holds one of two pools, and every query body is
//! written once inside [`with_conn!`], which expands it for whichever connection type the pool
//! holds. Models (in [`models`]) are associated async functions taking `&mut DbConn`.
//!
//! **Cancel safety.** Request and worker code reach a connection through [`DbPool::run`],
//! which runs the whole operation (checkout, queries, return to the pool) as a task of its own
//! on the multi-threaded runtime that built the pool. A caller that is dropped mid-query (a client
//! that hangs up, an extractor that failed beside it, a timeout, a `select!`) only stops
//! waiting: the operation finishes and the connection goes back whole. This matters most for
//! SQLite, whose diesel-async wrapper blocks the thread when an unfinished query future is
//! dropped, and panics doing so on actix's current-thread workers.

pub mod models;
pub mod replicas;
pub mod schema;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use diesel::SqliteConnection;
use diesel::result::DatabaseErrorKind;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{
    AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, SimpleAsyncConnection,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::config::{Config, DatabaseTarget};

pub type SqliteConn = SyncConnectionWrapper<SqliteConnection>;

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// The migration that adds full-text search: the results before it are indexed once it ran.
const SEARCH_MIGRATION: &str = "20261210000001";

/// How long a caller waits for a free connection before the request fails.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the write; the string says which value clashed.
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("database query failed: {0}")]
    Query(diesel::result::Error),
    #[error("cannot get a database connection: {0}")]
    Pool(String),
    #[error("cannot open the database: {0}")]
    Connect(String),
    #[error("database migration failed: {0}")]
    Migration(String),
    /// The operation's task panicked or its runtime is shutting down.
    #[error("database operation aborted: {0}")]
    Aborted(String),
    /// A request the database cannot carry out as asked.
    #[error("{0}")]
    Invalid(String),
}

/// A pool's connections at one moment (see [`DbPool::status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStatus {
    pub max: usize,
    pub open: usize,
    pub idle: usize,
    pub waiting: usize,
}

/// A role name that needs no quoting rules beyond double quotes: `[a-z_][a-z0-9_]*`, at
/// most 63 bytes (PostgreSQL's limit).
pub fn is_role_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

impl From<diesel::result::Error> for DbError {
    fn from(e: diesel::result::Error) -> Self {
        match e {
            diesel::result::Error::NotFound => DbError::NotFound,
            e => DbError::Query(e),
        }
    }
}

/// `Ok` when an update or delete touched a row, `NotFound` when it touched none.
pub fn affected(rows: usize) -> Result<(), DbError> {
    if rows == 0 {
        Err(DbError::NotFound)
    } else {
        Ok(())
    }
}

impl DbError {
    /// Maps a unique violation to [`DbError::Conflict`] naming `what`; other errors pass through.
    pub fn on_unique(what: &'static str) -> impl Fn(diesel::result::Error) -> DbError {
        move |e| match e {
            diesel::result::Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                DbError::Conflict(what)
            }
            e => e.into(),
        }
    }

    /// Errors that a retry may cure: the server went away, or no connection was free.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Pool(_) | DbError::Connect(_) => true,
            DbError::Query(diesel::result::Error::DatabaseError(kind, info)) => match kind {
                DatabaseErrorKind::ClosedConnection
                | DatabaseErrorKind::UnableToSendCommand
                | DatabaseErrorKind::SerializationFailure => true,
                // The server shutting down or restarting (PostgreSQL), a write lock held too
                // long (SQLite): messages are all the drivers give for these.
                DatabaseErrorKind::Unknown => {
                    let message = info.message();
                    [
                        "terminating connection",
                        "the database system is",
                        "database is locked",
                        "deadlock detected",
                    ]
                    .iter()
                    .any(|m| message.contains(m))
                }
                _ => false,
            },
            _ => false,
        }
    }
}

/// A deadpool of `size` connections that gives up waiting for one after `CHECKOUT_TIMEOUT`.
fn build_pool<M: deadpool::managed::Manager>(
    manager: M,
    size: usize,
) -> Result<deadpool::managed::Pool<M>, DbError> {
    deadpool::managed::Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(CHECKOUT_TIMEOUT))
        .create_timeout(Some(CHECKOUT_TIMEOUT))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| DbError::Connect(e.to_string()))
}

/// A pool of connections to one of the two backends, and the runtime its operations run on;
/// with PostgreSQL, optionally read replicas for [`DbPool::read`].
#[derive(Clone)]
pub struct DbPool {
    pools: Pools,
    replicas: Arc<replicas::Replicas>,
    runtime: tokio::runtime::Handle,
}

#[derive(Clone)]
enum Pools {
    Postgres(Pool<AsyncPgConnection>),
    Sqlite(Pool<SqliteConn>),
}

/// A pooled connection, lent by [`DbPool::run`]; use it through [`with_conn!`].
// Connections are checked out briefly, one per request or job: boxing the larger variant would
// cost an allocation per checkout to save a few hundred bytes of stack.
#[allow(clippy::large_enum_variant)]
pub enum DbConn {
    Postgres(Object<AsyncPgConnection>),
    Sqlite(Object<SqliteConn>),
}

impl DbConn {
    /// Raw SQL written with `?` placeholders (SQLite's), as this backend takes it: numbered
    /// `$1`, `$2`, … for PostgreSQL. The SQL must hold no `?` inside a literal.
    pub fn placeholders(&self, sql: &str) -> String {
        match self {
            DbConn::Postgres(_) => numbered_placeholders(sql),
            DbConn::Sqlite(_) => sql.to_owned(),
        }
    }
}

/// `sql` with each `?` numbered `$1`, `$2`, … as PostgreSQL takes them (no `?` may stand inside
/// a literal).
pub fn numbered_placeholders(sql: &str) -> String {
    let mut numbered = String::with_capacity(sql.len() + 8);
    for (n, part) in sql.split('?').enumerate() {
        if n > 0 {
            numbered.push_str(&format!("${n}"));
        }
        numbered.push_str(part);
    }
    numbered
}

/// Runs `$body` with `$c` bound to `&mut` the concrete connection, whichever backend it is.
#[macro_export]
macro_rules! with_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConn::Postgres(pooled) => {
                let $c: &mut ::diesel_async::AsyncPgConnection = &mut **pooled;
                $body
            }
            $crate::db::DbConn::Sqlite(pooled) => {
                let $c: &mut $crate::db::SqliteConn = &mut **pooled;
                $body
            }
        }
    };
}

impl std::fmt::Debug for DbPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.backend())
    }
}

impl DbPool {
    /// Opens the pool the configuration selects. Nothing connects until first use.
    pub fn from_config(config: &Config) -> Result<DbPool, DbError> {
        let target = config
            .database_target()
            .map_err(|e| DbError::Connect(e.to_string()))?;
        let database = &config.database;
        match target {
            DatabaseTarget::Postgres(url) => {
                let mut pool = Self::postgres(url.expose(), database.pool_size)?;
                if !database.read_urls.is_empty() {
                    let urls: Vec<&str> = database.read_urls.iter().map(|u| u.expose()).collect();
                    let max_lag = Duration::from_secs(database.max_replica_lag_secs);
                    pool.replicas = Arc::new(replicas::Replicas::open(
                        &urls,
                        database.pool_size,
                        max_lag,
                    )?);
                    replicas::watch(&pool.replicas, &pool.runtime);
                }
                Ok(pool)
            }
            DatabaseTarget::Sqlite(path) => Self::sqlite(&path, database.pool_size),
        }
    }

    pub fn postgres(url: &str, size: usize) -> Result<DbPool, DbError> {
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
        Self::new(Pools::Postgres(build_pool(manager, size)?))
    }

    /// Operations run on the current runtime, which must be multi-threaded: a query of a
    /// runtime's last moments is then still finished (or dropped) where blocking is allowed.
    fn new(pools: Pools) -> Result<DbPool, DbError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| DbError::Connect(format!("no tokio runtime: {e}")))?;
        if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return Err(DbError::Connect(
                "the database pool needs a multi-threaded tokio runtime".into(),
            ));
        }
        Ok(DbPool {
            pools,
            replicas: Arc::new(replicas::Replicas::none()),
            runtime,
        })
    }

    /// SQLite in WAL mode with foreign keys on; the file and its directory are created.
    pub fn sqlite(path: &Path, size: usize) -> Result<DbPool, DbError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| DbError::Connect(format!("{}: {e}", dir.display())))?;
        }
        let url = path
            .to_str()
            .ok_or_else(|| DbError::Connect(format!("{} is not UTF-8", path.display())))?;
        let mut config = ManagerConfig::<SqliteConn>::default();
        config.custom_setup = Box::new(|url| {
            async move {
                let mut conn = SqliteConn::establish(url).await?;
                conn.batch_execute(
                    // busy_timeout first, so that switching to WAL waits for other connections.
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                )
                .await
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(conn)
            }
            .boxed()
        });
        let manager = AsyncDieselConnectionManager::<SqliteConn>::new_with_config(url, config);
        Self::new(Pools::Sqlite(build_pool(manager, size)?))
    }

    pub fn backend(&self) -> &'static str {
        match self.pools {
            Pools::Postgres(_) => "postgres",
            Pools::Sqlite(_) => "sqlite",
        }
    }

    /// A connection held by the caller. Only for code that is never cancelled midway on a
    /// current-thread runtime (tests, one-off tools); everything else uses [`DbPool::run`].
    pub async fn get(&self) -> Result<DbConn, DbError> {
        match &self.pools {
            Pools::Postgres(pool) => pool.get().await.map(DbConn::Postgres),
            Pools::Sqlite(pool) => pool.get().await.map(DbConn::Sqlite),
        }
        .map_err(|e| DbError::Pool(e.to_string()))
    }

    /// Runs `op` on a pooled connection, to completion even if the caller stops waiting (see
    /// the module doc). Write it as `move |c| async move { Model::f(c, &arg).await }.boxed()`.
    pub async fn run<T, E, F>(&self, op: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(&'c mut DbConn) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let pool = self.clone();
        let task = self.runtime.spawn(async move {
            let mut conn = pool.get().await?;
            op(&mut conn).await
        });
        match task.await {
            Ok(result) => result,
            Err(e) => Err(DbError::Aborted(e.to_string()).into()),
        }
    }

    /// [`DbPool::run`] for reads that may be a little behind: on a read replica when one is
    /// configured, healthy and within `database.max_replica_lag_secs`, else on the primary.
    /// Never for a read that must see the caller's own write (see `replicas`).
    pub async fn read<T, E, F>(&self, op: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(&'c mut DbConn) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        if !self.replicas.any() {
            return self.run(op).await;
        }
        let pool = self.clone();
        let task = self.runtime.spawn(async move {
            let mut conn = match pool.replicas.checkout().await {
                Some(conn) => DbConn::Postgres(conn),
                None => pool.get().await?,
            };
            op(&mut conn).await
        });
        match task.await {
            Ok(result) => result,
            Err(e) => Err(DbError::Aborted(e.to_string()).into()),
        }
    }

    /// Reads served so far, by where they ran (`ocrd_db_reads_total`).
    pub fn read_counter(&self) -> replicas::ReadCounter {
        self.replicas.counter()
    }

    /// Applies pending migrations and returns the versions it applied.
    ///
    /// diesel's migration harness is synchronous: diesel-async runs it with `block_in_place`,
    /// so call this on a multi-threaded tokio runtime.
    pub async fn migrate(&self) -> Result<Vec<String>, DbError> {
        fn run<C>(conn: C, migrations: EmbeddedMigrations) -> Result<Vec<String>, DbError>
        where
            C: AsyncConnection + 'static,
            AsyncMigrationHarness<C>: MigrationHarness<C::Backend>,
        {
            let mut harness = AsyncMigrationHarness::new(conn);
            harness
                .run_pending_migrations(migrations)
                .map(|versions| versions.iter().map(|v| v.to_string()).collect())
                .map_err(|e| DbError::Migration(e.to_string()))
        }
        let pool = self.clone();
        let task = self.runtime.spawn(async move {
            match pool.get().await? {
                DbConn::Postgres(conn) => run(conn, POSTGRES_MIGRATIONS),
                DbConn::Sqlite(conn) => run(conn, SQLITE_MIGRATIONS),
            }
        });
        let applied = task
            .await
            .unwrap_or_else(|e| Err(DbError::Aborted(e.to_string())))?;
        // Data the new tables need from what came before them.
        if applied.iter().any(|v| v == SEARCH_MIGRATION) {
            let indexed = crate::search::reindex(self, |_| {}).await?;
            tracing::info!(
                tasks = indexed.tasks,
                pages = indexed.pages,
                "indexed the existing results for search"
            );
        }
        Ok(applied)
    }

    /// Lets `role` run `ocrd serve` and `ocrd work` on this PostgreSQL database and nothing
    /// more: reading and writing ocrd's rows (in the tables of later migrations too, which
    /// this owner will create), reading the migration level, and no DDL. `role` must be a
    /// plain lowercase identifier (checked by [`is_role_name`]).
    pub async fn grant_app_role(&self, role: &str) -> Result<(), DbError> {
        if !is_role_name(role) {
            return Err(DbError::Invalid(format!(
                "`{role}` is not a plain role name (lowercase letters, digits, _)"
            )));
        }
        let sql = format!(
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC; \
             GRANT USAGE ON SCHEMA public TO \"{role}\"; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO \"{role}\"; \
             GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO \"{role}\"; \
             ALTER DEFAULT PRIVILEGES IN SCHEMA public \
                 GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO \"{role}\"; \
             ALTER DEFAULT PRIVILEGES IN SCHEMA public \
                 GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO \"{role}\"; \
             REVOKE INSERT, UPDATE, DELETE ON __diesel_schema_migrations FROM \"{role}\";"
        );
        match self.get().await? {
            DbConn::Postgres(mut conn) => Ok(conn.batch_execute(&sql).await?),
            DbConn::Sqlite(_) => Err(DbError::Invalid(
                "SQLite has no roles: the file's permissions are its access control".into(),
            )),
        }
    }

    /// The newest migration this binary carries (e.g. `20261206000001`): the schema version
    /// that `migrate` brings a database to.
    pub fn latest_schema(&self) -> String {
        use diesel::migration::MigrationSource;
        fn newest<DB: diesel::backend::Backend>(source: &EmbeddedMigrations) -> String
        where
            EmbeddedMigrations: MigrationSource<DB>,
        {
            // Embedded at compile time: listing them cannot fail at run time.
            source
                .migrations()
                .map(|ms| ms.iter().map(|m| m.name().version().to_string()).max())
                .ok()
                .flatten()
                .unwrap_or_default()
        }
        match self.pools {
            Pools::Postgres(_) => newest::<diesel::pg::Pg>(&POSTGRES_MIGRATIONS),
            Pools::Sqlite(_) => newest::<diesel::sqlite::Sqlite>(&SQLITE_MIGRATIONS),
        }
    }

    /// The database server's version, e.g. `PostgreSQL 16.4 …` or `SQLite 3.46.0`.
    pub async fn server_version(&self) -> Result<String, DbError> {
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Version {
            #[diesel(sql_type = diesel::sql_types::Text)]
            version: String,
        }
        self.run(|conn| {
            async move {
                let found: Version = match conn {
                    DbConn::Postgres(c) => {
                        diesel::sql_query("SELECT version() AS version")
                            .get_result(&mut **c)
                            .await?
                    }
                    DbConn::Sqlite(c) => {
                        diesel::sql_query("SELECT 'SQLite ' || sqlite_version() AS version")
                            .get_result(&mut **c)
                            .await?
                    }
                };
                Ok(found.version)
            }
            .boxed()
        })
        .await
    }

    /// The newest migration applied to the database; `None` for a database never migrated.
    /// Only reads: the application role (no DDL) may ask too.
    pub async fn schema_version(&self) -> Result<Option<String>, DbError> {
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Version {
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
            version: Option<String>,
        }
        self.run(|conn| {
            async move {
                let table = match conn {
                    DbConn::Postgres(_) => {
                        "SELECT to_regclass('__diesel_schema_migrations')::text AS version"
                    }
                    DbConn::Sqlite(_) => {
                        "SELECT MAX(name) AS version FROM sqlite_master \
                         WHERE type = 'table' AND name = '__diesel_schema_migrations'"
                    }
                };
                let exists = with_conn!(conn, |c| diesel::sql_query(table)
                    .get_result::<Version>(c)
                    .await)?;
                if exists.version.is_none() {
                    return Ok(None);
                }
                let newest = "SELECT MAX(version) AS version FROM __diesel_schema_migrations";
                let newest = with_conn!(conn, |c| diesel::sql_query(newest)
                    .get_result::<Version>(c)
                    .await)?;
                Ok(newest.version)
            }
            .boxed()
        })
        .await
    }

    /// A consistent copy of a SQLite database in the new file `to`, taken while others go on
    /// reading and writing (`VACUUM INTO`, one read transaction).
    pub async fn snapshot_sqlite(&self, to: &Path) -> Result<(), DbError> {
        let target = to
            .to_str()
            .ok_or_else(|| DbError::Invalid(format!("{} is not UTF-8", to.display())))?
            .replace('\'', "''");
        self.run(move |conn| {
            async move {
                match conn {
                    DbConn::Sqlite(c) => {
                        Ok(c.batch_execute(&format!("VACUUM INTO '{target}'")).await?)
                    }
                    DbConn::Postgres(_) => Err(DbError::Invalid(
                        "VACUUM INTO is SQLite's; PostgreSQL is copied with pg_dump".into(),
                    )),
                }
            }
            .boxed()
        })
        .await
    }

    /// Connections: open, idle, and callers waiting for one.
    pub fn status(&self) -> PoolStatus {
        let status = match &self.pools {
            Pools::Postgres(pool) => pool.status(),
            Pools::Sqlite(pool) => pool.status(),
        };
        PoolStatus {
            max: status.max_size,
            open: status.size,
            idle: status.available,
            waiting: status.waiting,
        }
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.run(|conn| {
            async move {
                with_conn!(conn, |c| c.batch_execute("SELECT 1").await)?;
                Ok(())
            }
            .boxed()
        })
        .await
    }
}
