//! What the benches share: a database of their own on the PostgreSQL that `make test` and the
//! bench targets bring up, and a configuration with a private data directory.

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use ocrd::config::{Config, Secret};

/// A fresh PostgreSQL database, dropped by [`BenchDb::drop`].
pub struct BenchDb {
    /// Unique per run: also a safe Redis key prefix.
    pub name: String,
    pub url: url::Url,
    admin: AsyncPgConnection,
}

impl BenchDb {
    pub async fn create() -> BenchDb {
        let admin_url = std::env::var("OCRDTEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("ocrd_bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = AsyncPgConnection::establish(&admin_url)
            .await
            .expect("PostgreSQL at OCRDTEST_DATABASE_URL (the make bench targets start one)");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&name);
        BenchDb { name, url, admin }
    }

    /// `config` (see [`config`]) on this database.
    pub fn config(&self, dir: &tempfile::TempDir) -> Config {
        let mut config = config(dir);
        config.database.url = Secret::new(self.url.to_string());
        config
    }

    pub async fn drop(mut self) {
        self.admin
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .unwrap();
    }
}

/// The embedded defaults, with their data in `dir`.
pub fn config(dir: &tempfile::TempDir) -> Config {
    Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    }
}
