//! Running the fleet: the worker registry, the queue's pause, health, statistics, the
//! operators' view of every task (search, retry, cancel, bulk actions) and, for admins,
//! accounts.
//! `web::api::admin` and `ocrd admin` call it.

pub mod health;
pub mod queue;
pub mod stats;
pub mod tasks;
pub mod users;
pub mod workers;

use crate::blobs::BlobError;
use crate::db::DbError;

/// What can go wrong running the fleet: the database or storage answered with an error.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Blob(#[from] BlobError),
}
