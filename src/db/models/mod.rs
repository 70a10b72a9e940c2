//! Rows and their queries, as associated async functions on the row types.
//!
//! Status changes happen only through conditional updates (`… WHERE status = 'queued'`), so two
//! workers, or a worker and a user cancelling, can never both win. Multi-row writes run in a
//! transaction.

mod api_token;
mod audit;
mod backup;
mod file;
mod invite;
mod job_lease;
mod password_reset;
mod setting;
mod task;
mod task_event;
mod task_filter;
mod task_result;
mod user;
mod webhook;
mod worker;

pub use api_token::{ApiToken, NewApiToken};
pub use audit::AuditRow;
pub use backup::Backup;
pub use file::{File, FileSummary, NewFile};
pub use invite::Invite;
pub use job_lease::JobLease;
pub use password_reset::PasswordReset;
pub use setting::Setting;
pub use task::{NewTask, Task, TaskStatus};
pub use task_event::{NewTaskEvent, TaskEvent};
pub use task_filter::{FoundTask, Order, TaskFilter};
pub use task_result::{BlobKeys, NewTaskResult, TaskResult};
pub use user::{NewUser, Role, Usage, User, normalize_email};
pub use webhook::{
    AfterAttempt, DeliveryStatus, NewAttempt, NewDelivery, WebhookAttempt, WebhookDelivery,
    WebhookEndpoint,
};
pub use worker::{Beat, HeldTask, WorkerRow, WorkerState};

use chrono::{NaiveDateTime, SubsecRound, Utc};

/// A new row id: UUIDv7, so ids sort by creation time and serve as pagination cursors.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Whether `s` could be an id of ours. Ids from clients are checked before a query: no row
/// has any other, and PostgreSQL refuses some strings outright (a NUL byte).
pub fn is_id(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

/// The current UTC time at the precision both backends store (microseconds).
pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(6)
}

/// A stored enum value the code does not know: the database was written by another version.
#[derive(Debug, thiserror::Error)]
#[error("unknown {kind} `{value}` in the database")]
pub struct UnknownValue {
    kind: &'static str,
    value: String,
}

/// Serialises the naive UTC timestamps the schema stores as RFC 3339 with a `Z`.
pub mod utc_time {
    use chrono::NaiveDateTime;
    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(
            &t.and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        )
    }

    pub mod option {
        use chrono::NaiveDateTime;
        use serde::Serializer;

        pub fn serialize<S: Serializer>(
            t: &Option<NaiveDateTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }
    }
}

/// A string-backed enum stored as text: `as_str` for writes, `TryFrom<String>` for reads.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::db::models::UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::db::models::UnknownValue { kind: $kind, value: other.to_string() }),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::db::models::UnknownValue;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use text_enum;
