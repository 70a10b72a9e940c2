//! Tasks across every account, as operators search them: by status, owner, engine, error,
//! creation time, file name and id, a page at a time by keyset (never a count per page).

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use super::{FileSummary, Task, TaskStatus};
use crate::db::schema::{files, tasks, users};
use crate::db::{DbConn, DbError};
use crate::with_conn;

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// What operators filter tasks by; every field narrows the match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    /// The owner's email (already normalised).
    pub user_email: Option<String>,
    pub engine: Option<String>,
    pub error_code: Option<String>,
    /// Created at or after.
    pub from: Option<NaiveDateTime>,
    /// Created before.
    pub to: Option<NaiveDateTime>,
    /// A substring of the file name, in any letter case.
    pub filename: Option<String>,
    /// The start of the task id.
    pub id_prefix: Option<String>,
}

/// The order of a listing: ids are UUIDv7, so by id is by creation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    #[default]
    Newest,
    Oldest,
}

/// A task with what operators see beside it.
#[derive(Clone, Debug)]
pub struct FoundTask {
    pub task: Task,
    pub file: FileSummary,
    pub owner_email: String,
}

/// `LIKE` text with its wildcards taken literally (escaped with `\`).
fn literal(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

// One filter, for both backends' boxed queries (each arm of `with_conn!` builds its own).
macro_rules! filtered {
    ($query:expr, $filter:expr) => {{
        let filter: &TaskFilter = $filter;
        let mut query = $query;
        if let Some(status) = filter.status {
            query = query.filter(tasks::status.eq(status.as_str()));
        }
        if let Some(email) = &filter.user_email {
            query = query.filter(users::email.eq(email.clone()));
        }
        if let Some(engine) = &filter.engine {
            query = query.filter(tasks::engine.eq(engine.clone()));
        }
        if let Some(code) = &filter.error_code {
            query = query.filter(tasks::error_code.eq(code.clone()));
        }
        if let Some(from) = filter.from {
            query = query.filter(tasks::created_at.ge(from));
        }
        if let Some(to) = filter.to {
            query = query.filter(tasks::created_at.lt(to));
        }
        if let Some(name) = &filter.filename {
            let pattern = format!("%{}%", literal(&name.to_lowercase()));
            query = query.filter(lower(files::filename).like(pattern).escape('\\'));
        }
        if let Some(prefix) = &filter.id_prefix {
            query = query.filter(tasks::id.like(format!("{}%", literal(prefix))).escape('\\'));
        }
        query
    }};
}

/// Plans the rest of a transaction for one page of rows: afresh for each search (a cached
/// generic plan cannot tell a common file name from a rare one, and reads every match of a
/// common one before sorting), and without parallel workers (a page never gains from them,
/// and starting them costs more than the scan). SQLite plans each query afresh and has no
/// parallel workers.
///
/// A file-name search is where a plan chosen from estimates goes wrong: the planner guesses
/// how common a substring is from a sample, and a common name searched through the trigram
/// index reads every match before sorting (196 ms against 20 ms at 1,000,000 tasks, a name in
/// 1 % of them, one run in three). So it runs in two steps: first the newest [`WALK`] tasks
/// are walked in id order, each file looked up by its key (the plan fixed), which fills a page
/// of any common name; only when that page is short does the planner choose, for a name rare
/// among the newest tasks, and it then reads the trigram index.
trait PagePlan {
    async fn plan_for_a_page(&mut self) -> diesel::QueryResult<()>;
    /// Walk the tasks in id order, looking each file and owner up by key: no bitmap scans
    /// (the trigram index), sequential scans, hash or merge joins.
    async fn walk(&mut self) -> diesel::QueryResult<()>;
    /// Back to the planner's choice.
    async fn plan_freely(&mut self) -> diesel::QueryResult<()>;
}

/// Tasks walked for a page of a file-name search before the trigram index is read.
const WALK: i64 = 10_000;

impl PagePlan for AsyncPgConnection {
    async fn plan_for_a_page(&mut self) -> diesel::QueryResult<()> {
        self.batch_execute(
            "SET LOCAL max_parallel_workers_per_gather = 0; \
             SET LOCAL plan_cache_mode = force_custom_plan",
        )
        .await
    }

    async fn walk(&mut self) -> diesel::QueryResult<()> {
        self.batch_execute(
            "SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off; \
             SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off",
        )
        .await
    }

    async fn plan_freely(&mut self) -> diesel::QueryResult<()> {
        self.batch_execute(
            "SET LOCAL enable_bitmapscan TO DEFAULT; SET LOCAL enable_seqscan TO DEFAULT; \
             SET LOCAL enable_hashjoin TO DEFAULT; SET LOCAL enable_mergejoin TO DEFAULT",
        )
        .await
    }
}

impl PagePlan for crate::db::SqliteConn {
    async fn plan_for_a_page(&mut self) -> diesel::QueryResult<()> {
        Ok(())
    }

    async fn walk(&mut self) -> diesel::QueryResult<()> {
        Ok(())
    }

    async fn plan_freely(&mut self) -> diesel::QueryResult<()> {
        Ok(())
    }
}

impl Task {
    /// A page of the tasks matching `filter` after the cursor (a task id) in `order`.
    pub async fn search(
        conn: &mut DbConn,
        filter: &TaskFilter,
        order: Order,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<FoundTask>, DbError> {
        let rows: Vec<(Task, FileSummary, String)> = with_conn!(conn, |c| c
            .transaction::<_, diesel::result::Error, _>(async |tx| {
                tx.plan_for_a_page().await?;
                let page = |within: Option<String>| {
                    let query = tasks::table
                        .inner_join(files::table)
                        .inner_join(users::table.on(users::id.eq(tasks::user_id)))
                        .select((Task::as_select(), FileSummary::as_select(), users::email))
                        .limit(limit)
                        .into_boxed();
                    let mut query = filtered!(query, filter);
                    query = match (order, after) {
                        (Order::Newest, Some(id)) => query.filter(tasks::id.lt(id.to_owned())),
                        (Order::Oldest, Some(id)) => query.filter(tasks::id.gt(id.to_owned())),
                        (_, None) => query,
                    };
                    // The walk's far end: the page's rows are the first matches before it.
                    query = match (order, within) {
                        (Order::Newest, Some(end)) => query.filter(tasks::id.ge(end)),
                        (Order::Oldest, Some(end)) => query.filter(tasks::id.le(end)),
                        (_, None) => query,
                    };
                    match order {
                        Order::Newest => query.order(tasks::id.desc()),
                        Order::Oldest => query.order(tasks::id.asc()),
                    }
                };
                if filter.filename.is_none() {
                    return page(None).load(tx).await;
                }
                // The id `WALK` tasks on from the cursor; none: fewer tasks than that are left.
                let mut ends = tasks::table
                    .select(tasks::id)
                    .offset(WALK - 1)
                    .limit(1)
                    .into_boxed();
                ends = match (order, after) {
                    (Order::Newest, Some(id)) => ends.filter(tasks::id.lt(id.to_owned())),
                    (Order::Oldest, Some(id)) => ends.filter(tasks::id.gt(id.to_owned())),
                    (_, None) => ends,
                };
                ends = match order {
                    Order::Newest => ends.order(tasks::id.desc()),
                    Order::Oldest => ends.order(tasks::id.asc()),
                };
                let end: Option<String> = ends.first(tx).await.optional()?;
                tx.walk().await?;
                let walked = page(end.clone()).load(tx).await?;
                if end.is_none() || walked.len() as i64 >= limit {
                    return Ok(walked);
                }
                tx.plan_freely().await?;
                page(None).load(tx).await
            })
            .await)?;
        Ok(rows
            .into_iter()
            .map(|(task, file, owner_email)| FoundTask {
                task,
                file,
                owner_email,
            })
            .collect())
    }

    /// Ids of the tasks matching `filter`, oldest first, `limit` after the id `after`: what a
    /// bulk action walks through in batches.
    pub async fn matching_ids(
        conn: &mut DbConn,
        filter: &TaskFilter,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<String>, DbError> {
        Ok(with_conn!(conn, |c| {
            let query = tasks::table
                .inner_join(files::table)
                .inner_join(users::table.on(users::id.eq(tasks::user_id)))
                .select(tasks::id)
                .order(tasks::id.asc())
                .limit(limit)
                .into_boxed();
            let mut query = filtered!(query, filter);
            if let Some(after) = after {
                query = query.filter(tasks::id.gt(after.to_owned()));
            }
            query.load(c).await
        })?)
    }

    /// How many tasks match `filter` (for a bulk action's dry run, not for list pages).
    pub async fn count_matching(conn: &mut DbConn, filter: &TaskFilter) -> Result<i64, DbError> {
        Ok(with_conn!(conn, |c| {
            let query = tasks::table
                .inner_join(files::table)
                .inner_join(users::table.on(users::id.eq(tasks::user_id)))
                .count()
                .into_boxed();
            filtered!(query, filter).get_result(c).await
        })?)
    }
}
