//! Each task's timeline: what happened to it and when, in the `task_events` table. The owner
//! sees the messages on the task page; operators also see the worker, the attempt and the
//! error detail.
//!
//! A step is written after the change it describes has committed, and a failure to write it
//! is logged, never passed on: the timeline explains a task, the task row is its truth.

use futures::FutureExt;

use crate::app::App;
use crate::db::DbError;
use crate::db::models::{NewTaskEvent, Task, TaskEvent, now};

/// The most steps one timeline answer holds (a long document has one per page).
pub const MAX_STEPS: i64 = 5000;

/// One step, built with the `Step::…` constructors.
#[derive(Clone, Debug)]
pub struct Step {
    kind: &'static str,
    message: String,
    worker: Option<String>,
    attempt: Option<i32>,
    detail: Option<String>,
}

impl Step {
    fn new(kind: &'static str, message: impl Into<String>) -> Step {
        Step {
            kind,
            message: message.into(),
            worker: None,
            attempt: None,
            detail: None,
        }
    }

    pub fn queued() -> Step {
        Step::new("queued", "Uploaded and queued.")
    }

    pub fn retried() -> Step {
        Step::new("queued", "Queued again for another try.")
    }

    pub fn started(task: &Task, worker: &str) -> Step {
        let message = match task.attempts {
            1 => "Processing started.".to_owned(),
            n => format!("Processing started again (attempt {n})."),
        };
        Step {
            worker: Some(worker.to_owned()),
            attempt: Some(task.attempts),
            ..Step::new("started", message)
        }
    }

    pub fn page(task: &Task, worker: &str) -> Step {
        let message = match task.pages_total {
            Some(total) => format!("Page {} of {total} done.", task.pages_done),
            None => format!("Page {} done.", task.pages_done),
        };
        Step {
            worker: Some(worker.to_owned()),
            attempt: Some(task.attempts),
            ..Step::new("page", message)
        }
    }

    pub fn completed(task: &Task, worker: &str) -> Step {
        let message = match task.pages_done {
            1 => "Completed: 1 page.".to_owned(),
            n => format!("Completed: {n} pages."),
        };
        Step {
            worker: Some(worker.to_owned()),
            attempt: Some(task.attempts),
            ..Step::new("completed", message)
        }
    }

    /// The task failed for good; its message is the one the task shows.
    pub fn failed(task: &Task, worker: Option<&str>) -> Step {
        let message = task
            .error_message
            .clone()
            .unwrap_or_else(|| "Failed.".into());
        Step {
            worker: worker.map(str::to_owned),
            attempt: Some(task.attempts),
            detail: task.error_code.clone(),
            ..Step::new("failed", format!("Failed: {message}"))
        }
    }

    /// Back to the queue without a result: `why` in words for the owner.
    pub fn requeued(task: &Task, why: &str, worker: Option<&str>) -> Step {
        Step {
            worker: worker.map(str::to_owned),
            attempt: Some(task.attempts),
            ..Step::new("requeued", why)
        }
    }

    pub fn cancelled() -> Step {
        Step::new("cancelled", "Cancelled.")
    }
}

/// Appends `step` to the timeline of `task_id`.
pub async fn record(app: &App, task_id: &str, step: Step) {
    let event = NewTaskEvent {
        task_id: task_id.to_owned(),
        at: now(),
        kind: step.kind.to_owned(),
        message: step.message,
        worker: step.worker,
        attempt: step.attempt,
        detail: step.detail,
    };
    let written = app
        .db
        .run(move |c| async move { TaskEvent::insert(c, &event).await }.boxed())
        .await;
    if let Err(e) = written {
        // A task deleted meanwhile has no timeline to add to.
        let gone = matches!(
            &e,
            DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                _
            ))
        );
        if !gone {
            tracing::warn!(task = %task_id, error = %e, "could not add to the task's timeline");
        }
    }
}

/// The timeline of `task_id`, oldest first.
pub async fn of(app: &App, task_id: &str) -> Result<Vec<TaskEvent>, DbError> {
    let id = task_id.to_owned();
    app.db
        .run(move |c| async move { TaskEvent::for_task(c, &id, MAX_STEPS).await }.boxed())
        .await
}
