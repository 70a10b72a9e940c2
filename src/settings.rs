//! Runtime settings: the values admins change while ocrd runs, without a restart.
//!
//! **Precedence.** Each setting has the name of its configuration key (`limits.max_upload_bytes`).
//! The configuration file and `OCRD_*` give its default; a value set at runtime
//! (`PATCH /api/admin/settings`, `ocrd admin settings set`) is stored in the database under the
//! same name and wins; resetting it returns to the file's value. `ocrd config` shows both.
//!
//! **Freshness.** Every instance reloads the stored values every [`REFRESH`] in the background,
//! so readers take them without a query ([`Settings::get`]) and a change reaches every `serve`
//! and `work` within seconds; the instance that made it applies it at once. A value stored by
//! a newer version, or edited by hand into something invalid, is ignored with a warning.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use futures::FutureExt;
use serde::Serialize;
use serde_json::Value;

use crate::config::{Config, Registration};
use crate::db::models::Setting;
use crate::db::{DbError, DbPool};
use crate::document::Limits;
use crate::render::Format;
use crate::tasks::{OcrPolicy, TaskOptions};

/// How old the values an instance acts on may be.
pub const REFRESH: Duration = Duration::from_secs(2);

/// The effective value of every setting.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Values {
    pub registration: Registration,
    pub max_upload_bytes: u64,
    pub max_pages: usize,
    pub max_pixels: u64,
    /// The result formats made at upload when a task names none.
    pub formats: Vec<Format>,
    /// The OCR policy of a task that names none.
    pub ocr: OcrPolicy,
    /// Days a finished task and its files are kept; 0 keeps them until deleted.
    pub retention_days: u32,
    /// Each account's allowance unless it has its own; 0 is no limit.
    pub quota: crate::quota::Limits,
    /// Shown on top of every page when not empty.
    pub banner: String,
    /// Uploads are refused while this is on.
    pub read_only: bool,
}

impl Values {
    pub fn from_config(config: &Config) -> Values {
        Values {
            registration: config.auth.registration,
            max_upload_bytes: config.limits.max_upload_bytes,
            max_pages: config.limits.max_pages,
            max_pixels: config.limits.max_pixels,
            formats: config.tasks.formats.clone(),
            ocr: config.tasks.ocr,
            retention_days: config.retention.days,
            quota: crate::quota::Limits {
                pages_per_month: config.quota.pages_per_month,
                stored_bytes: config.quota.stored_bytes,
                concurrent_tasks: config.quota.concurrent_tasks,
                max_upload_bytes: config.quota.max_upload_bytes,
            },
            banner: config.maintenance.banner.clone(),
            read_only: config.maintenance.read_only,
        }
    }

    /// The limits documents are read under; `base` gives what is not a setting (the PDF
    /// resolution).
    pub fn document_limits(&self, base: Limits) -> Limits {
        Limits {
            max_pages: self.max_pages,
            max_pixels: self.max_pixels,
            ..base
        }
    }

    /// The options of a task whose upload names none.
    pub fn task_options(&self) -> TaskOptions {
        TaskOptions {
            formats: self.formats.clone(),
            ocr: self.ocr,
            ..TaskOptions::default()
        }
    }

    /// Checks every value against the rules a runtime change must pass: the configuration
    /// file's are held to the same.
    pub fn check(&self) -> Result<(), SettingsError> {
        let mut copy = self.clone();
        for key in Key::ALL {
            key.apply(&mut copy, key.get(self))?;
        }
        Ok(())
    }
}

/// One setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Registration,
    MaxUploadBytes,
    MaxPages,
    MaxPixels,
    Formats,
    Ocr,
    RetentionDays,
    QuotaPages,
    QuotaStoredBytes,
    QuotaConcurrentTasks,
    QuotaMaxUploadBytes,
    Banner,
    ReadOnly,
}

impl Key {
    pub const ALL: [Key; 13] = [
        Key::Registration,
        Key::MaxUploadBytes,
        Key::MaxPages,
        Key::MaxPixels,
        Key::Formats,
        Key::Ocr,
        Key::RetentionDays,
        Key::QuotaPages,
        Key::QuotaStoredBytes,
        Key::QuotaConcurrentTasks,
        Key::QuotaMaxUploadBytes,
        Key::Banner,
        Key::ReadOnly,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Key::Registration => "auth.registration",
            Key::MaxUploadBytes => "limits.max_upload_bytes",
            Key::MaxPages => "limits.max_pages",
            Key::MaxPixels => "limits.max_pixels",
            Key::Formats => "tasks.formats",
            Key::Ocr => "tasks.ocr",
            Key::RetentionDays => "retention.days",
            Key::QuotaPages => "quota.pages_per_month",
            Key::QuotaStoredBytes => "quota.stored_bytes",
            Key::QuotaConcurrentTasks => "quota.concurrent_tasks",
            Key::QuotaMaxUploadBytes => "quota.max_upload_bytes",
            Key::Banner => "maintenance.banner",
            Key::ReadOnly => "maintenance.read_only",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Key::Registration => {
                "Who may create an account: open (anyone), invite (with an invite link or code) or closed."
            }
            Key::MaxUploadBytes => "The largest upload, in bytes.",
            Key::MaxPages => "The most pages one document may have.",
            Key::MaxPixels => "The largest page, in pixels; larger pages are refused unread.",
            Key::Formats => "The result formats made at upload when a task names none.",
            Key::Ocr => {
                "What to do with pages that already carry text when a task does not say: auto, force or skip."
            }
            Key::RetentionDays => {
                "Days a finished task and its files are kept before they are erased; 0 keeps them until deleted."
            }
            Key::QuotaPages => {
                "Pages each account may have read per calendar month (UTC), unless it has its own quota; 0 is no limit."
            }
            Key::QuotaStoredBytes => {
                "Bytes of uploaded files each account may keep, unless it has its own quota; 0 is no limit."
            }
            Key::QuotaConcurrentTasks => {
                "Tasks each account may have queued or running at once, unless it has its own quota; 0 is no limit."
            }
            Key::QuotaMaxUploadBytes => {
                "The largest upload of each account, in bytes, unless it has its own quota; 0 leaves limits.max_upload_bytes alone."
            }
            Key::Banner => "A notice shown on top of every page; empty shows none.",
            Key::ReadOnly => {
                "Maintenance: refuse new uploads with a clear message; everything else works."
            }
        }
    }

    /// The values a setting can take, where they are few.
    pub fn choices(self) -> Option<&'static [&'static str]> {
        match self {
            Key::Registration => Some(&["open", "invite", "closed"]),
            Key::Formats => Some(&["hocr", "txt", "json", "pdf", "alto"]),
            Key::Ocr => Some(&["auto", "force", "skip"]),
            _ => None,
        }
    }

    pub fn parse(name: &str) -> Result<Key, SettingsError> {
        Key::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| SettingsError::Unknown(name.to_owned()))
    }

    fn get(self, v: &Values) -> Value {
        let value = match self {
            Key::Registration => serde_json::to_value(v.registration),
            Key::MaxUploadBytes => Ok(v.max_upload_bytes.into()),
            Key::MaxPages => Ok(v.max_pages.into()),
            Key::MaxPixels => Ok(v.max_pixels.into()),
            Key::Formats => serde_json::to_value(&v.formats),
            Key::Ocr => serde_json::to_value(v.ocr),
            Key::RetentionDays => Ok(v.retention_days.into()),
            Key::QuotaPages => Ok(v.quota.pages_per_month.into()),
            Key::QuotaStoredBytes => Ok(v.quota.stored_bytes.into()),
            Key::QuotaConcurrentTasks => Ok(v.quota.concurrent_tasks.into()),
            Key::QuotaMaxUploadBytes => Ok(v.quota.max_upload_bytes.into()),
            Key::Banner => Ok(v.banner.clone().into()),
            Key::ReadOnly => Ok(v.read_only.into()),
        };
        value.unwrap_or(Value::Null)
    }

    /// Validates `value` and sets it in `values`.
    fn apply(self, values: &mut Values, value: Value) -> Result<(), SettingsError> {
        let invalid = |reason: String| SettingsError::Invalid {
            key: self.name(),
            reason,
        };
        let number = |min: u64, max: u64| {
            value
                .as_u64()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| invalid(format!("must be a whole number from {min} to {max}")))
        };
        match self {
            Key::Registration => {
                values.registration = serde_json::from_value(value.clone())
                    .map_err(|_| invalid("must be open, invite or closed".into()))?
            }
            Key::MaxUploadBytes => values.max_upload_bytes = number(1 << 10, 1 << 40)?,
            Key::MaxPages => values.max_pages = number(1, 100_000)? as usize,
            Key::MaxPixels => values.max_pixels = number(1_000_000, 1_000_000_000)?,
            Key::Formats => {
                let names = value
                    .as_array()
                    .ok_or_else(|| invalid("must be a list of format names".into()))?;
                let mut formats = Vec::new();
                for name in names {
                    let format: Format = name
                        .as_str()
                        .ok_or_else(|| invalid("must be a list of format names".into()))?
                        .parse()
                        .map_err(invalid)?;
                    if !formats.contains(&format) {
                        formats.push(format);
                    }
                }
                if formats.is_empty() {
                    return Err(invalid("must name at least one format".into()));
                }
                values.formats = formats;
            }
            Key::Ocr => {
                values.ocr = serde_json::from_value(value.clone())
                    .map_err(|_| invalid("must be auto, force or skip".into()))?
            }
            Key::RetentionDays => values.retention_days = number(0, 36_500)? as u32,
            Key::QuotaPages => values.quota.pages_per_month = number(0, crate::quota::MAX)?,
            Key::QuotaStoredBytes => values.quota.stored_bytes = number(0, crate::quota::MAX)?,
            Key::QuotaConcurrentTasks => {
                values.quota.concurrent_tasks = number(0, crate::quota::MAX)?
            }
            Key::QuotaMaxUploadBytes => {
                values.quota.max_upload_bytes = number(0, crate::quota::MAX)?
            }
            Key::Banner => {
                let text = value
                    .as_str()
                    .ok_or_else(|| invalid("must be text".into()))?
                    .trim();
                if text.chars().count() > 500 || text.chars().any(char::is_control) {
                    return Err(invalid("must be one line of at most 500 characters".into()));
                }
                values.banner = text.to_owned();
            }
            Key::ReadOnly => {
                values.read_only = value
                    .as_bool()
                    .ok_or_else(|| invalid("must be true or false".into()))?
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("there is no setting `{0}`")]
    Unknown(String),
    #[error("`{key}` {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A setting as the console shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SettingView {
    /// The configuration key it overrides, e.g. `limits.max_upload_bytes`.
    pub key: &'static str,
    /// What every instance acts on.
    #[schema(value_type = Object)]
    pub value: Value,
    /// The value from the configuration file (or built in).
    #[schema(value_type = Object)]
    pub default: Value,
    /// Whether a value stored at runtime replaces the default.
    pub overridden: bool,
    pub description: &'static str,
    /// The values it can take, where they are few.
    pub choices: Option<&'static [&'static str]>,
}

/// One applied change, for the audit log.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    pub key: &'static str,
    pub old: Value,
    pub new: Value,
}

/// The overrides stored in `db`, by key (`ocrd config` reads them without starting the
/// reloading).
pub async fn stored(db: &DbPool) -> Result<BTreeMap<String, Value>, DbError> {
    let rows = db
        .run(|c| async move { Setting::all(c).await }.boxed())
        .await?;
    Ok(rows
        .into_iter()
        .filter(|row| Key::parse(&row.key).is_ok())
        .filter_map(|row| match serde_json::from_str(&row.value) {
            Ok(value) => Some((row.key, value)),
            Err(_) => {
                tracing::warn!(key = %row.key, "ignoring a stored setting that is not JSON");
                None
            }
        })
        .collect())
}

/// The settings of this instance: the configuration's defaults, the stored overrides, and the
/// values they make, kept fresh in the background.
#[derive(Clone, Debug)]
pub struct Settings {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: DbPool,
    defaults: Values,
    current: RwLock<Arc<Values>>,
}

impl Settings {
    /// Loads the stored values once and keeps reloading them while the handle lives.
    pub async fn start(db: DbPool, config: &Config) -> Settings {
        let defaults = Values::from_config(config);
        let settings = Settings {
            inner: Arc::new(Inner {
                db,
                current: RwLock::new(Arc::new(defaults.clone())),
                defaults,
            }),
        };
        settings.reload().await;
        let weak: Weak<Inner> = Arc::downgrade(&settings.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REFRESH).await;
                let Some(inner) = weak.upgrade() else { break };
                Settings { inner }.reload().await;
            }
        });
        settings
    }

    /// The values to act on now.
    pub fn get(&self) -> Arc<Values> {
        self.inner
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The configuration's values, before any override.
    pub fn defaults(&self) -> &Values {
        &self.inner.defaults
    }

    async fn reload(&self) {
        match self.stored().await {
            Ok(stored) => {
                let values = Arc::new(self.merge(&stored));
                *self
                    .inner
                    .current
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = values;
            }
            // The last values stay; the database being away is reported by its own checks.
            Err(e) => tracing::debug!(error = %e, "cannot reload the runtime settings"),
        }
    }

    /// The overrides stored in the database, by key.
    pub async fn stored(&self) -> Result<BTreeMap<String, Value>, DbError> {
        stored(&self.inner.db).await
    }

    fn merge(&self, stored: &BTreeMap<String, Value>) -> Values {
        let mut values = self.inner.defaults.clone();
        for key in Key::ALL {
            if let Some(value) = stored.get(key.name())
                && let Err(e) = key.apply(&mut values, value.clone())
            {
                tracing::warn!(error = %e, "ignoring a stored setting");
            }
        }
        values
    }

    /// Every setting with its value, default and whether it is overridden.
    pub async fn views(&self) -> Result<Vec<SettingView>, DbError> {
        let stored = self.stored().await?;
        let values = self.merge(&stored);
        Ok(Key::ALL
            .into_iter()
            .map(|key| SettingView {
                key: key.name(),
                value: key.get(&values),
                default: key.get(&self.inner.defaults),
                // A stored value the rules refuse (edited by hand) is ignored: not in force.
                overridden: stored
                    .get(key.name())
                    .is_some_and(|v| key.apply(&mut values.clone(), v.clone()).is_ok()),
                description: key.description(),
                choices: key.choices(),
            })
            .collect())
    }

    /// Applies `changes` (a `null` value resets a setting to its default) after checking all of
    /// them: one invalid change applies none. Returns what changed.
    pub async fn update(
        &self,
        changes: &BTreeMap<String, Value>,
    ) -> Result<Vec<Change>, SettingsError> {
        let stored = self.stored().await?;
        let before = self.merge(&stored);
        let mut writes = Vec::new();
        for (name, value) in changes {
            let key = Key::parse(name)?;
            let mut values = before.clone();
            let write = if value.is_null() {
                None
            } else {
                key.apply(&mut values, value.clone())?;
                // Stored as the rules read it (trimmed, deduplicated).
                Some(key.get(&values).to_string())
            };
            writes.push((key, write));
        }
        let db_writes: Vec<(&'static str, Option<String>)> = writes
            .iter()
            .map(|(key, write)| (key.name(), write.clone()))
            .collect();
        self.inner
            .db
            .run(move |c| async move { Setting::write_all(c, &db_writes).await }.boxed())
            .await?;
        self.reload().await;
        let after = self.get();
        Ok(writes
            .into_iter()
            .map(|(key, _)| Change {
                key: key.name(),
                old: key.get(&before),
                new: key.get(&after),
            })
            .filter(|c| c.old != c.new)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_defaults_pass_the_runtime_rules() {
        Values::from_config(&Config::default()).check().unwrap();
    }

    #[test]
    fn every_key_reads_back_what_it_was_set_to() {
        let mut values = Values::from_config(&Config::default());
        let examples = [
            (Key::Registration, serde_json::json!("invite")),
            (Key::MaxUploadBytes, serde_json::json!(5000)),
            (Key::MaxPages, serde_json::json!(3)),
            (Key::MaxPixels, serde_json::json!(2_000_000)),
            (Key::Formats, serde_json::json!(["pdf", "txt"])),
            (Key::Ocr, serde_json::json!("force")),
            (Key::RetentionDays, serde_json::json!(30)),
            (Key::QuotaPages, serde_json::json!(500)),
            (Key::QuotaStoredBytes, serde_json::json!(1_000_000_000)),
            (Key::QuotaConcurrentTasks, serde_json::json!(4)),
            (Key::QuotaMaxUploadBytes, serde_json::json!(0)),
            (Key::Banner, serde_json::json!("Upgrade at 18:00 UTC")),
            (Key::ReadOnly, serde_json::json!(true)),
        ];
        assert_eq!(examples.len(), Key::ALL.len());
        for (key, value) in examples {
            key.apply(&mut values, value.clone()).unwrap();
            assert_eq!(key.get(&values), value, "{}", key.name());
            assert_eq!(Key::parse(key.name()).unwrap(), key);
        }
    }

    #[test]
    fn invalid_values_are_refused_with_the_key_and_the_rule() {
        let mut values = Values::from_config(&Config::default());
        let cases = [
            (Key::Registration, serde_json::json!("sometimes")),
            (Key::MaxUploadBytes, serde_json::json!(-1)),
            (Key::MaxUploadBytes, serde_json::json!("10MB")),
            (Key::MaxPages, serde_json::json!(0)),
            (Key::MaxPixels, serde_json::json!(10)),
            (Key::Formats, serde_json::json!([])),
            (Key::Formats, serde_json::json!(["docx"])),
            (Key::Ocr, serde_json::json!(1)),
            (Key::RetentionDays, serde_json::json!(1.5)),
            (Key::Banner, serde_json::json!("two\nlines")),
            (Key::ReadOnly, serde_json::json!("yes")),
        ];
        let before = values.clone();
        for (key, value) in cases {
            let e = key.apply(&mut values, value.clone()).unwrap_err();
            assert!(e.to_string().contains(key.name()), "{e}");
        }
        assert_eq!(values, before, "a refused value changes nothing");
    }
}
